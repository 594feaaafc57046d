#!/bin/bash
# A real file system image goes into an export and comes back out
# byte for byte (qemu-img convert both ways), survives a restart, and the
# store is consistent afterwards.
. "${top_builddir:-.}/tests/functions.sh"
requires qemu-img mke2fs cmp

# An ext4 image from a directory tree: text, binaries, duplicates, holes.
mkdir -p "$tmp/tree"
cp -r "$top_srcdir/lib" "$top_srcdir/docs" "$tmp/tree/"
for d in /usr/share/doc/libc6 /usr/share/doc/bash /usr/share/common-licenses; do
  [ -d "$d" ] && cp -rL "$d" "$tmp/tree/" 2>/dev/null
done
head -c 3M /dev/urandom >"$tmp/tree/random.bin"
cp "$tmp/tree/random.bin" "$tmp/tree/random-copy.bin"
mke2fs -q -t ext4 -d "$tmp/tree" "$tmp/fs.img" 64M || fail "mke2fs"

st=$tmp/store
start_nbdkit store=$st size=64M
qemu-img convert -n -f raw -O raw "$tmp/fs.img" "$(uri)" || fail "convert into the export"
qemu-img convert -f raw -O raw "$(uri)" "$tmp/out.img" || fail "convert out of the export"
cmp "$tmp/fs.img" "$tmp/out.img" || fail "the image came back different"
pass "64 MiB ext4 image round trip is byte for byte"
stop_nbdkit

start_nbdkit store=$st
qemu-img convert -f raw -O raw "$(uri)" "$tmp/out2.img" || fail "convert after restart"
cmp "$tmp/fs.img" "$tmp/out2.img" || fail "the image changed across a restart"
pass "identical after a restart"
stop_nbdkit

"$CASDISK" info "$st" --json >"$tmp/info.json" || fail "casdisk info"
stored=$($PYTHON -c 'import json,sys; print(json.load(open(sys.argv[1]))["store"]["stored_bytes"])' "$tmp/info.json")
[ "$stored" -lt $((64 << 20)) ] || fail "stored $stored bytes for a 64 MiB sparse image"
pass "stored bytes: $stored for a 64 MiB image"
check_store "$st"
