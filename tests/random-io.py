#!/usr/bin/python3
"""Random reads, writes, trims and zeroes through NBD against an in-memory
model; every read is verified.  Writes mix aligned and unaligned, partial
and multi-block, repeated content (dedup) and compressible content.

  random-io.py URI SIZE BLOCK_SIZE SECONDS SEED
"""
import os
import random
import sys
import time

import nbd

uri, size, bs, secs, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    float(sys.argv[4]), int(sys.argv[5])
rng = random.Random(seed)
h = nbd.NBD()
h.connect_uri(uri)
assert h.get_size() == size, "export size %d, expected %d" % (h.get_size(), size)
model = bytearray(size)
palette = [os.urandom(bs) for _ in range(4)] + [b"casdisk " * (bs // 8)]

def data(n):
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(n)
    if kind == 1:                       # repeated content: deduplicates
        p = rng.choice(palette)
        return (p * (n // len(p) + 1))[:n]
    if kind == 2:                       # compressible text
        return (b"the quick brown fox %d " % rng.randrange(100) * (n // 20 + 1))[:n]
    return bytes(n)                     # zeroes written as data

def span():
    if rng.random() < 0.5:              # block aligned
        start = rng.randrange(size // bs) * bs
        n = min(rng.randrange(1, 5) * bs, size - start)
    else:
        start = rng.randrange(size)
        n = rng.randrange(1, min(3 * bs, size - start) + 1)
    return start, n

deadline = time.monotonic() + secs
ops = {"read": 0, "write": 0, "trim": 0, "zero": 0, "flush": 0}
while time.monotonic() < deadline:
    r = rng.random()
    start, n = span()
    if r < 0.35:
        buf = data(n)
        h.pwrite(buf, start)
        model[start:start + n] = buf
        ops["write"] += 1
    elif r < 0.45:
        h.trim(n, start)
        model[start:start + n] = bytes(n)
        ops["trim"] += 1
    elif r < 0.55:
        h.zero(n, start)
        model[start:start + n] = bytes(n)
        ops["zero"] += 1
    elif r < 0.6:
        h.flush()
        ops["flush"] += 1
    else:
        got = h.pread(n, start)
        if got != model[start:start + n]:
            for i in range(n):
                if got[i] != model[start + i]:
                    break
            sys.exit("MISMATCH reading [%d, +%d): first difference at offset %d"
                     % (start, n, start + i))
        ops["read"] += 1
# Finally every byte.
for off in range(0, size, 1 << 20):
    n = min(1 << 20, size - off)
    if h.pread(n, off) != model[off:off + n]:
        sys.exit("MISMATCH in the final full read at [%d, +%d)" % (off, n))
h.flush()
h.shutdown()
print("ok: %s, final full read verified" %
      ", ".join("%d %ss" % (v, k) for k, v in ops.items()))
