#!/usr/bin/python3
"""Damage a casdisk store on purpose, for tests of casdisk check and of the
errors nbdkit gives.  The damage keeps every checksum valid where the point
is to test a deeper check (a wrong refcount must be found by counting, not
by a checksum).

  damage.py refcount STORE   add one to the refcount of the first block
                             in the checkpoint (checksums recomputed)
  damage.py version STORE    claim a newer format version in the superblock
                             (checksum recomputed)
  damage.py flip FILE OFFSET flip one bit of FILE at OFFSET

Offsets follow docs/format.md.
"""
import struct
import sys

def crc32c(data, crc=0):
    table = crc32c.table
    if table is None:
        table = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            table.append(c)
        crc32c.table = table
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF
crc32c.table = None

CKPT_HDR, CKPT_DISK, CKPT_BLOCK = 64, 96, 64

def damage_refcount(store):
    path = store + "/checkpoint"
    buf = bytearray(open(path, "rb").read())
    ndisks = struct.unpack_from("<I", buf, 32)[0]
    nblocks = struct.unpack_from("<Q", buf, 40)[0]
    if nblocks == 0:
        sys.exit("damage.py: the checkpoint has no block to damage")
    rec = CKPT_HDR + ndisks * CKPT_DISK
    ref = struct.unpack_from("<I", buf, rec + 56)[0]
    struct.pack_into("<I", buf, rec + 56, ref + 1)
    struct.pack_into("<I", buf, 36, crc32c(buf[CKPT_HDR:]))
    struct.pack_into("<I", buf, 12, 0)
    struct.pack_into("<I", buf, 12, crc32c(buf[:CKPT_HDR]))
    open(path, "wb").write(buf)
    print("block id %d: refcount %d -> %d" %
          (struct.unpack_from("<Q", buf, rec)[0], ref, ref + 1))

def damage_version(store):
    path = store + "/superblock"
    buf = bytearray(open(path, "rb").read())
    struct.pack_into("<I", buf, 8, 99)
    struct.pack_into("<I", buf, 12, 0)
    struct.pack_into("<I", buf, 12, crc32c(buf))
    open(path, "wb").write(buf)

def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x10]))

if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "refcount":
        damage_refcount(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "version":
        damage_version(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "flip":
        flip(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(__doc__)
