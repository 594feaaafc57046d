#!/bin/bash
# Scrub finds every injected bit flip: N flips at random places inside
# stored blocks (located from the checkpoint's block records) and in every
# metadata file, each on a fresh copy of a cleanly closed store.  Reports
# the detection rate, which must be 100%.
. "${top_builddir:-.}/tests/functions.sh"
requires_python_nbd

flips=${SCRUB_FLIPS:-40}
st=$tmp/store
start_nbdkit store=$st size=16M block-size=4K
$PYTHON - "$(uri)" <<'EOF2' || fail "writes"
import random, sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
rng = random.Random(3)
for i in range(512):
    h.pwrite(rng.randbytes(4096) if i % 2 else (b"text %d " % i) * 512, i * 4096)
h.flush()
EOF2
stop_nbdkit
check_store "$st"

# Where the flips go: (file, offset) pairs.
$PYTHON - "$st" "$flips" >"$tmp/targets" <<'EOF2'
import os, random, struct, sys
st, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(11)
ck = open(st + "/checkpoint", "rb").read()
ndisks, nblocks = struct.unpack_from("<I", ck, 32)[0], struct.unpack_from("<Q", ck, 40)[0]
blocks = [struct.unpack_from("<QQ32sI", ck, 64 + 96 * ndisks + 64 * k) for k in range(nblocks)]
journal = [f for f in os.listdir(st) if f.startswith("journal.")][0]
for k in range(n):
    if k % 2 == 0:                        # half in stored data
        _, off, _, length = rng.choice(blocks)
        print("data", off + rng.randrange(length))
    else:                                 # half in metadata
        f = rng.choice(["superblock", "checkpoint", journal])
        size = os.path.getsize(os.path.join(st, f))
        print(f, rng.randrange(size))
EOF2

found=0 total=0
while read -r file off; do
  rm -rf "$tmp/c"; cp -a "$st" "$tmp/c"
  $PYTHON "$top_srcdir/tests/helpers/damage.py" flip "$tmp/c/$file" "$off"
  total=$((total + 1))
  if "$CASDISK" scrub "$tmp/c" >"$tmp/out" 2>&1; then
    echo "MISSED: flip in $file at $off"; cat "$tmp/out"
  else
    found=$((found + 1))
  fi
done <"$tmp/targets"
echo "scrub detected $found of $total injected bit flips"
[ "$found" -eq "$total" ] || fail "scrub missed $((total - found)) flips"
pass "scrub detection rate 100% ($found/$total: data and metadata)"
