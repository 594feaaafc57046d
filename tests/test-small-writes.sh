#!/bin/bash
# The small-write log through nbdkit: its keys are checked, a 4 KiB write
# into a 64 KiB block is logged (no new block; status counts it), reads
# return it, a clean stop merges it, and small-write-log=false rebuilds
# the block at once.
. "${top_builddir:-.}/tests/functions.sh"
requires nbdkit
requires nbdsh

st=$tmp/store

expect_error "below the minimum of 1M" store=$st size=1G small-write-log-size=64K
expect_error "small-write-log: 'maybe' is not a boolean" store=$st size=1G small-write-log=maybe

# status FIELD: a store figure of `casdisk status --json`.
status () {
  "$CASDISK" status "$st" --json | $PYTHON -c '
import json, sys
print(json.load(sys.stdin)["store"][sys.argv[1]])' "$1"
}

# A whole block, flushed; then 4 KiB inside it.
start_nbdkit store="$st" size=64M control=true
wait_control
nbdsh -u "$(uri)" -c '
import random
r = random.Random(7)
h.pwrite(r.randbytes(65536), 0)
h.flush()
' || fail "the first write"
b0=$(status blocks)
nbdsh -u "$(uri)" -c '
import random
r = random.Random(7)
whole = bytearray(r.randbytes(65536))
part = r.randbytes(4096)
h.pwrite(part, 8192)
h.flush()
whole[8192:8192 + 4096] = part
assert h.pread(65536, 0) == whole, "the block does not read back with its small write"
open("'"$tmp"'/want", "wb").write(whole)
' || fail "small write and read back"
[ "$(status small_write_blocks)" = 1 ] || fail "status: small_write_blocks $(status small_write_blocks), expected 1"
[ "$(status blocks)" = "$b0" ] || fail "the small write stored a block ($b0 -> $(status blocks))"
pass "a 4 KiB write into a 64 KiB block is logged: 1 block with small writes, still $b0 blocks"
stop_nbdkit
check_store "$st"

# After a clean stop the block holds the write (merged), and reads it.
start_nbdkit store="$st" size=64M control=true
wait_control
[ "$(status small_write_blocks)" = 0 ] || fail "a clean stop left small writes unmerged"
nbdsh -u "$(uri)" -c '
assert h.pread(65536, 0) == open("'"$tmp"'/want", "rb").read(), "wrong content after the merge"
' || fail "read after restart"
pass "a clean stop merged it; the block reads the same after a restart"
stop_nbdkit

# small-write-log=false: the block is rebuilt at once.
start_nbdkit store="$st" size=64M control=true small-write-log=false
wait_control
b1=$(status blocks)
nbdsh -u "$(uri)" -c 'h.pwrite(b"\x5a" * 4096, 20000); h.flush()' || fail "write with the log off"
[ "$(status small_write_blocks)" = 0 ] || fail "small-write-log=false logged a small write"
[ "$(status blocks)" -gt "$b1" ] || fail "small-write-log=false stored no new block"
pass "small-write-log=false: no small writes logged, a new block stored ($b1 -> $(status blocks))"
stop_nbdkit
check_store "$st"
