#!/bin/bash
# Compression: text-like data takes clearly less space on disk than its
# logical size; incompressible data is stored raw (no expansion).
. "${top_builddir:-.}/tests/functions.sh"
requires_python_nbd

st=$tmp/store
mib=$((1 << 20))
start_nbdkit store=$st size=128M
$PYTHON - "$(uri)" <<'EOF2' || fail "writes"
import random, sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
rng = random.Random(7)
words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randrange(2, 10)))
         for _ in range(5000)]
text = bytearray()
while len(text) < 32 * 2**20:       # 32 MiB of unique, text-like lines
    text += b" ".join(rng.choice(words) for _ in range(12)) + b".\n"
h.pwrite(bytes(text[:32 * 2**20]), 0)
h.pwrite(rng.randbytes(8 * 2**20), 64 * 2**20)   # 8 MiB incompressible
h.flush()
EOF2
stop_nbdkit
du=$(du_bytes "$st")
echo "40 MiB logical (32 MiB text + 8 MiB random), du $du bytes"
[ "$du" -lt $((8 * mib + 32 * mib * 60 / 100)) ] || fail "text did not compress: du $du"
[ "$du" -gt $((8 * mib)) ] || fail "du $du is below the incompressible part: accounting is wrong"
"$CASDISK" info "$st" | grep -E "compression ratio|stored bytes" | head -2
pass "text-like data compressed: $((du / mib)) MiB on disk for 40 MiB"
check_store "$st"
