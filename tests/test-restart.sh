#!/bin/bash
# Data survives a clean restart, and kill -9 right after a flush (or a FUA
# write) loses nothing that was acknowledged before it.
. "${top_builddir:-.}/tests/functions.sh"
requires_python_nbd

st=$tmp/store
size=$((16 << 20))
io () {   # SCRIPT: run python with h connected to the default export
  $PYTHON - "$(uri)" "$@" <<PY
import hashlib, random, sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
$(cat)
PY
}
pattern='
def chunk(seed, n):
    return random.Random(seed).randbytes(n)
'

start_nbdkit store=$st size=$size block-size=4K
io <<EOF2 || fail "first writes"
$pattern
for i in range(64):
    h.pwrite(chunk(i, 65536 + 17), i * 200000 + (i % 7) * 513)
h.flush()
EOF2
stop_nbdkit
start_nbdkit store=$st
io <<EOF2 || fail "data lost across a clean restart"
$pattern
for i in range(64):
    assert h.pread(65536 + 17, i * 200000 + (i % 7) * 513) == chunk(i, 65536 + 17), i
EOF2
pass "64 unaligned writes intact after a clean restart"

# Overwrite half, flush, write FUA, then kill -9 at once.
io <<EOF2 || fail "second writes"
$pattern
for i in range(0, 64, 2):
    h.pwrite(chunk(1000 + i, 65536 + 17), i * 200000 + (i % 7) * 513)
h.flush()
h.pwrite(chunk(5000, 4096), $size - 8192, nbd.CMD_FLAG_FUA)
h.trim(1 << 20, $size - (2 << 20))
h.flush()
EOF2
kill9_nbdkit
pass "nbdkit killed with SIGKILL right after the flush"

start_nbdkit store=$st
io <<EOF2 || fail "data lost after kill -9"
$pattern
for i in range(64):
    seed = 1000 + i if i % 2 == 0 else i
    assert h.pread(65536 + 17, i * 200000 + (i % 7) * 513) == chunk(seed, 65536 + 17), i
assert h.pread(4096, $size - 8192) == chunk(5000, 4096), "FUA write"
assert h.pread(1 << 20, $size - (2 << 20)) == bytes(1 << 20), "trimmed range"
EOF2
pass "every flushed and FUA write intact after kill -9"
stop_nbdkit
check_store "$st"
