#!/bin/bash
# casdisk import and export of raw images: a round trip byte for byte,
# holes and zero blocks not stored on import and left as holes on export,
# import --existing over a disk with content, and qcow2 in and out of a
# running export with qemu-img convert (what casdisk(1) documents for
# other formats).
. "${top_builddir:-.}/tests/functions.sh"
requires qemu-img cmp truncate
requires_python_nbd

mib=$((1 << 20))
st=$tmp/store
"$CASDISK" create "$st" --size 1M --block-size 4K >/dev/null || fail "create"

# A 64 MiB image: 6 MiB of random data in three places, 4 MiB of written
# zeroes (allocated, not a hole), the rest holes; one block duplicated.
img=$tmp/in.img
truncate -s 64M "$img"
dd if=/dev/urandom of="$img" bs=1M count=2 seek=1 conv=notrunc status=none
dd if=/dev/urandom of="$img" bs=1M count=3 seek=20 conv=notrunc status=none
dd if=/dev/urandom of="$img" bs=4k count=257 seek=15000 conv=notrunc status=none
dd if=/dev/zero of="$img" bs=1M count=4 seek=40 conv=notrunc status=none
dd if="$img" of="$img" bs=4k count=1 skip=300 seek=9000 conv=notrunc status=none
data_bytes=$(( 5 * mib + 257 * 4096 + 4096 ))

"$CASDISK" import "$st" vm "$img" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "import"; }
pass "$(tail -1 "$tmp/out")"
"$CASDISK" disk list "$st" | grep -q "^vm .*64.0 MiB" || fail "import did not create a 64 MiB disk"

logical=$(info logical_bytes vm)
[ "$logical" -eq "$data_bytes" ] ||
  fail "disk vm maps $logical bytes, expected $data_bytes (holes and zeroes must not be stored)"
unique=$(info unique_bytes vm)
[ "$unique" -eq $((data_bytes - 4096)) ] || fail "unique bytes $unique: the duplicated block was stored twice"
pass "import stored only the non-zero blocks: $logical bytes mapped, $unique unique"

# Data and holes at 4 KiB granularity inside 64 KiB blocks: each block is
# stored once, whole (a block split at a hole was stored once per piece,
# leaving dead copies behind).
st64=$tmp/store64
"$CASDISK" create "$st64" --size 1M --block-size 64K >/dev/null || fail "create (64K)"
img4=$tmp/holes.img
truncate -s 8M "$img4"
for b in 0 2 5 17 18 40 100 101 103 500; do
  dd if=/dev/urandom of="$img4" bs=4k count=1 seek=$b conv=notrunc status=none
done
"$CASDISK" import "$st64" vm "$img4" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "import (64K)"; }
dead=$(st=$st64 info dead_blocks)
[ "$dead" -eq 0 ] || fail "import into 64 KiB blocks left $dead dead blocks (blocks stored piece by piece)"
blocks=$(st=$st64 info nblocks)
[ "$blocks" -eq 5 ] || fail "import stored $blocks blocks, expected 5 (one per 64 KiB block with data)"
"$CASDISK" export "$st64" vm "$tmp/holes.out" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "export (64K)"; }
cmp "$img4" "$tmp/holes.out" || fail "the 64 KiB-block round trip differs"
pass "import of 4 KiB data runs into 64 KiB blocks: 5 blocks, none dead, round trip equal"

"$CASDISK" export "$st" vm "$tmp/out.img" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "export"; }
pass "$(tail -1 "$tmp/out")"
cmp "$img" "$tmp/out.img" || fail "the exported image differs from the imported one"
[ "$(stat -c %s "$tmp/out.img")" -eq $((64 * mib)) ] || fail "exported image has the wrong size"
alloc=$(du -B1 "$tmp/out.img" | cut -f1)
[ "$alloc" -lt $((data_bytes + 2 * mib)) ] ||
  fail "exported image allocates $alloc bytes for $data_bytes of data: not sparse"
pass "round trip byte for byte; the export allocates $alloc of 64 MiB (sparse)"

# Overwrite an existing disk: where the new image has zeroes, the old
# content must go.
"$CASDISK" disk add "$st" other 64M >/dev/null || fail "disk add"
"$CASDISK" import "$st" other "$tmp/out.img" --existing >/dev/null || fail "import into other"
# 8 MiB: data, written zeroes (over other's data at 1-2 MiB), a hole (over
# its data at 2-3 MiB), data.
head -c 1M /dev/urandom >"$tmp/small.img"
dd if=/dev/zero of="$tmp/small.img" bs=1M count=1 seek=1 conv=notrunc status=none
truncate -s 8M "$tmp/small.img"
dd if=/dev/urandom of="$tmp/small.img" bs=1M count=1 seek=7 conv=notrunc status=none
"$CASDISK" import "$st" other "$tmp/small.img" 2>"$tmp/err" && fail "import over an existing disk without --existing"
grep -q "exists already" "$tmp/err" || { cat "$tmp/err"; fail "no message for an existing disk"; }
"$CASDISK" import "$st" other "$tmp/small.img" --existing >/dev/null || fail "import --existing"
"$CASDISK" export "$st" other "$tmp/other.img" >/dev/null || fail "export other"
cmp -n $((8 * mib)) "$tmp/small.img" "$tmp/other.img" || fail "import --existing: the first 8 MiB differ"
cmp -i $((8 * mib)) "$img" "$tmp/other.img" || fail "import --existing changed bytes past the image"
pass "import --existing: the image's bytes (zeroes and holes too) replace the disk's, the rest stays"
"$CASDISK" import "$st" nosuch "$tmp/small.img" --existing 2>/dev/null && fail "--existing created a disk"
"$CASDISK" import "$st" tiny "$tmp/small.img" >/dev/null || fail "import tiny"
"$CASDISK" import "$st" tiny "$img" --existing 2>"$tmp/err" && fail "imported 64 MiB into an 8 MiB disk"
grep -q "is larger than disk" "$tmp/err" || { cat "$tmp/err"; fail "no message for a small disk"; }
pass "import refuses: an existing disk without --existing, a missing one with it, a disk too small"
check_store "$st"

# Other formats: qemu-img convert into and out of a running export.
qemu-img convert -f raw -O qcow2 "$img" "$tmp/in.qcow2" || fail "make a qcow2 image"
"$CASDISK" disk add "$st" fromqcow 64M >/dev/null || fail "disk add fromqcow"
unique_before=$(info unique_bytes)
start_nbdkit store=$st
qemu-img convert -n -f qcow2 -O raw "$tmp/in.qcow2" "$(uri fromqcow)" || fail "qcow2 into the export"
qemu-img convert -f raw -O qcow2 "$(uri fromqcow)" "$tmp/out.qcow2" || fail "export into qcow2"
qemu-img compare -f qcow2 -F qcow2 "$tmp/in.qcow2" "$tmp/out.qcow2" >/dev/null ||
  fail "qcow2 -> casdisk -> qcow2 changed the content"
stop_nbdkit
"$CASDISK" export "$st" fromqcow "$tmp/fromqcow.img" >/dev/null || fail "export fromqcow"
cmp "$img" "$tmp/fromqcow.img" || fail "the qcow2 image's content differs in the disk"
pass "qemu-img convert: qcow2 into a running export and back out to qcow2, identical"
[ "$(info unique_bytes)" -eq "$unique_before" ] ||
  fail "the disk converted from qcow2 did not deduplicate with vm ($unique_before -> $(info unique_bytes))"
pass "the converted disk cost no new block: $unique_before unique bytes in the store before and after"
check_store "$st"

# The worker pool: import hashes and compresses a run of blocks on several
# threads, and the store it writes is the same whatever their number (w3
# is a copy of the new w1: the same key secret).
"$CASDISK" create "$tmp/w1" --size 1M >/dev/null || fail "create w1"
cp -a "$tmp/w1" "$tmp/w3"
for n in 1 3; do
  CASDISK_DEBUG=1 "$CASDISK" import "$tmp/w$n" vm "$img" --workers $n >/dev/null 2>"$tmp/w$n.err" ||
    { cat "$tmp/w$n.err"; fail "import --workers $n"; }
done
grep -q "3 threads prepare the blocks" "$tmp/w3.err" || { cat "$tmp/w3.err"; fail "import --workers 3 ran no pool"; }
grep -q "threads prepare" "$tmp/w1.err" && fail "import --workers 1 started a pool"
cmp "$tmp/w1/data" "$tmp/w3/data" || fail "import --workers 1 and 3 wrote different data files"
"$CASDISK" export "$tmp/w3" vm "$tmp/w3.img" >/dev/null || fail "export w3"
cmp "$img" "$tmp/w3.img" || fail "import --workers 3: the image differs"
for bad in 0 65 x ""; do
  "$CASDISK" import "$tmp/w1" bad "$img" --workers "$bad" 2>"$tmp/err"
  [ $? -eq 2 ] && grep -q "is not a number of threads" "$tmp/err" ||
    { cat "$tmp/err"; fail "import --workers '$bad' was not refused as a usage error"; }
done
pass "import --workers 3 uses the pool and writes the same data file as --workers 1; bad counts refused"
