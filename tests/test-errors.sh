#!/bin/bash
# Bad configuration and damaged stores give a one-line error naming the
# problem and a non-zero exit, never a crash.
. "${top_builddir:-.}/tests/functions.sh"
requires nbdkit

st=$tmp/store
expect_error "store=DIR is required"
expect_error "unknown parameter 'bogus'" store=$st bogus=1
expect_error "cannot parse '12Q' as a size" store=$st size=12Q
expect_error "out of range" store=$st size=0
expect_error "not a power of two" store=$st size=1G block-size=3000
expect_error "control: 'maybe' is not a boolean" store=$st size=1G control=maybe
expect_error "is not a number of seconds (1 to 86400)" store=$st size=1G metrics=true metrics-interval=0
expect_error "metrics-interval needs metrics=true" store=$st size=1G metrics-interval=5
expect_error "drop control=false" store=$st size=1G metrics=true control=false
expect_error "not 'off' or a zstd level" store=$st size=1G compression=99
expect_error "give size=SIZE" store=$st
expect_error "cannot parse 'lots' as a size" store=$st size=1G keep-erased=lots
expect_error "secure-erase: 'maybe' is not a boolean" store=$st size=1G secure-erase=maybe
expect_error "runtime-asserts: '2x' is not a boolean" store=$st size=1G runtime-asserts=2x
expect_error "below the minimum of 64K" store=$st size=1G checkpoint-after=4K
expect_error "recycle-tranquility: '101' is not a number from 0 to 100" store=$st size=1G recycle-tranquility=101
expect_error "workers: '65' is not a number of threads (0 to 64)" store=$st size=1G workers=65
expect_error "workers: 'many' is not a number of threads" store=$st size=1G workers=many
mkdir -p "$tmp/junk" && echo hello >"$tmp/junk/notes.txt"
expect_error "not empty and not a casdisk store" store=$tmp/junk size=1G
expect_error "not a casdisk store yet" store=$tmp/junk

# A real store, then damage it in every way.
"$CASDISK" create "$st" --size 64M >/dev/null || fail "create"
expect_error "is 67108864 bytes, not size=" store=$st size=1G
expect_error "block-size and compression apply only when creating" store=$st block-size=4K
damage () {   # NAME COMMAND...: copy the store, damage it, expect PATTERN
  rm -rf "$tmp/d"; cp -a "$st" "$tmp/d"
}
damage; : >"$tmp/d/superblock"
expect_error "not a casdisk store (bad superblock magic)" store=$tmp/d
damage; $PYTHON "$top_srcdir/tests/helpers/damage.py" flip "$tmp/d/superblock" 40
expect_error "superblock checksum mismatch" store=$tmp/d
damage; $PYTHON "$top_srcdir/tests/helpers/damage.py" version "$tmp/d"
expect_error "format version 99 is newer than this casdisk supports" store=$tmp/d
damage; truncate -s 100 "$tmp/d/superblock"
expect_error "superblock is truncated" store=$tmp/d
damage; truncate -s 70 "$tmp/d/checkpoint"
expect_error "checkpoint" store=$tmp/d
damage; $PYTHON "$top_srcdir/tests/helpers/damage.py" flip "$tmp/d/checkpoint" 70
expect_error "checkpoint: body checksum mismatch" store=$tmp/d
damage; rm "$tmp/d/checkpoint"
expect_error "the checkpoint file is missing" store=$tmp/d
damage; rm "$tmp/d/data"
expect_error "the data file is missing" store=$tmp/d
damage; head -c 4096 /dev/urandom >"$tmp/d/checkpoint"
expect_error "not a casdisk checkpoint" store=$tmp/d

# The casdisk tool refuses them too.
damage; $PYTHON "$top_srcdir/tests/helpers/damage.py" flip "$tmp/d/checkpoint" 70
"$CASDISK" info "$tmp/d" >"$tmp/err" 2>&1 && fail "casdisk info accepted a damaged store"
grep -q "checksum mismatch" "$tmp/err" || { cat "$tmp/err"; fail "casdisk info message"; }
pass "casdisk info: $(head -1 "$tmp/err")"

# A store in use is locked.  (With its control socket on, the tool would
# ask the server instead: test-control.sh.)
start_nbdkit store=$st control=false
[ -e "$st/control.sock" ] && fail "control=false still made a socket"
"$CASDISK" disk add "$st" extra 1M >"$tmp/err" 2>&1 && fail "a second writer was allowed"
grep -q "in use by another process" "$tmp/err" || { cat "$tmp/err"; fail "lock message"; }
pass "second writer refused: $(head -1 "$tmp/err")"
expect_error "in use by another process" store=$st
stop_nbdkit
check_store "$st"
