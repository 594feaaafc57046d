#!/bin/bash
# Sparseness: unwritten, zeroed and trimmed ranges are holes in
# nbdinfo --map (and in qemu-img map), and cost nothing on disk.
. "${top_builddir:-.}/tests/functions.sh"
requires nbdinfo qemu-img
requires_python_nbd

st=$tmp/store
mib=$((1 << 20))
start_nbdkit store=$st size=1G
$PYTHON - "$(uri)" <<'EOF2' || fail "writes"
import os, sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(os.urandom(4 * 2**20), 0)              # data at 0..4M
h.pwrite(os.urandom(2 * 2**20), 512 * 2**20)    # data at 512M..514M
h.pwrite(bytes(2**20), 700 * 2**20)             # zeroes written as data
h.zero(2**20, 1 * 2**20)                        # zero 1M..2M
h.trim(2**20, 512 * 2**20)                      # trim 512M..513M
h.flush()
EOF2
nbdinfo --map "$(uri)" >"$tmp/map" || fail "nbdinfo --map"
cat "$tmp/map"
# Expected: data 0-1M, hole 1M-2M, data 2M-4M, hole to 513M, data 513M-514M, hole to the end.
$PYTHON - "$tmp/map" <<'EOF2' || fail "the map is not as expected"
import sys
M = 2**20
runs = []
for line in open(sys.argv[1]):
    off, length, typ = line.split()[:3]
    runs.append((int(off), int(off) + int(length), int(typ) & 1 == 1))
def hole_at(x):
    for a, b, h in runs:
        if a <= x < b:
            return h
    raise SystemExit("offset %d not in the map" % x)
for x, want in [(0, False), (M + 5, True), (3 * M, False), (100 * M, True),
                (512 * M + 10, True), (513 * M + 10, False), (700 * M, True), (1023 * M, True)]:
    assert hole_at(x) == want, "offset %d: hole=%s, expected %s" % (x, hole_at(x), want)
assert runs[0][0] == 0 and runs[-1][1] == 1024 * M
EOF2
pass "nbdinfo --map shows holes for unwritten, zeroed, trimmed and all-zero ranges"
qemu-img map --output=json -f raw "$(uri)" | grep -c '"data": true' >"$tmp/n"
[ "$(cat "$tmp/n")" -ge 2 ] || fail "qemu-img map shows no data"
pass "qemu-img map agrees ($(cat "$tmp/n") data runs)"
stop_nbdkit
du=$(du_bytes "$st")
[ "$du" -lt $((8 * mib)) ] || fail "a 1 GiB disk with 5 MiB of data uses $du bytes"
pass "the store uses $((du / 1024)) KiB for a 1 GiB disk holding 5 MiB"
check_store "$st"
