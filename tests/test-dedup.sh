#!/bin/bash
# Deduplication: the same 64 MiB written at 4 offsets of one disk, and into
# a second disk, costs one copy, in casdisk info and in du of the store.
. "${top_builddir:-.}/tests/functions.sh"
requires_python_nbd

st=$tmp/store
mib=$((1 << 20))
"$CASDISK" create "$st" --size 512M >/dev/null || fail "create"
"$CASDISK" disk add "$st" other 128M >/dev/null || fail "disk add"
head -c $((64 * mib)) /dev/urandom >"$tmp/blob"

start_nbdkit store=$st
$PYTHON - "$(uri disk0)" "$(uri other)" "$tmp/blob" <<'EOF2' || fail "writes"
import sys, nbd
blob = open(sys.argv[3], "rb").read()
a = nbd.NBD(); a.connect_uri(sys.argv[1])
b = nbd.NBD(); b.connect_uri(sys.argv[2])
for i in range(4):                    # 4 offsets of disk0, one unaligned to a block
    off = i * 100 * 2**20 + (4096 * 16 if i == 3 else 0)
    for k in range(0, len(blob), 2**22):
        a.pwrite(blob[k:k + 2**22], off + k)
for k in range(0, len(blob), 2**22):  # and once into the other disk
    b.pwrite(blob[k:k + 2**22], k)
a.flush()
assert a.pread(4096, 3 * 100 * 2**20 + 4096 * 16) == blob[:4096]
assert b.pread(4096, 2**20) == blob[2**20:2**20 + 4096]
EOF2
stop_nbdkit

"$CASDISK" info "$st" --json >"$tmp/info.json" || fail "info"
read -r logical unique stored alloc <<<"$($PYTHON -c '
import json, sys
s = json.load(open(sys.argv[1]))["store"]
print(s["logical_bytes"], s["unique_bytes"], s["stored_bytes"], s["physical_allocated"])' "$tmp/info.json")"
du=$(du_bytes "$st")
echo "logical $logical, unique $unique, stored $stored, allocated $alloc, du $du"
[ "$logical" -ge $((320 * mib)) ] || fail "logical bytes $logical < 320 MiB"
[ "$unique" -le $((66 * mib)) ] || fail "unique bytes $unique: more than one copy of 64 MiB"
[ "$stored" -le $((66 * mib)) ] || fail "stored bytes $stored: more than one copy"
[ "$du" -le $((72 * mib)) ] || fail "du of the store is $du bytes: more than one copy"
pass "5 copies of 64 MiB (4 offsets + another disk) cost $((du / mib)) MiB on disk"
check_store "$st"
