#!/usr/bin/python3
"""Randomized crash workload for casdisk, and the model that judges what
survives a crash.

  driver.py run ...      the workload: writes (aligned, unaligned, partial,
                         duplicate across disks, compressible, random,
                         zero-filled), overwrites, trims, zeroes, FUA writes
                         and flushes, from 4 threads on 4 NBD connections
                         (2 per disk, disks "a" and "b" of one store), until
                         it kills nbdkit (kill -9) or its time is up
  driver.py verify ...   read every block of both disks and check each
                         holds a value the model allows

The model is an append-only log (one os.write per event, written BEFORE
the NBD command it describes is sent, so it is always a superset of what
the server may have done when it was killed):

  N <op> <disk> <blk> <hash>       op writes this new content into block blk
  Z <op> <disk> <blk0> <n> <hash>  same, for n consecutive blocks
  FI <fid>                         a flush (or a FUA command) is issued
  A <op>                           op completed successfully
  FA <fid> [<size>]                the flush / FUA command fid completed; with
                                   --iolog, the I/O log's size at that moment
  E <op> <message>                 op failed
  SI <sid> <disk>                  snapshot <disk>@<sid> is being taken (casdisk
                                   snapshot create, online, through the control
                                   socket)
  SA <sid> [<size>]                it was taken (durable on return); <size> as
                                   for FA
  SO <sid>                         it was taken, but offline: the server had
                                   died and the tool opened the store itself
                                   (not a moment of the workload: not judged)

Each block's contents form a sequence of versions v0 (the base image),
v1, v2, ...: the driver never has two commands in flight on one block, so
the order is the order of issue.  A block may hold, after a crash, any of
v[floor:], where floor only moves when a flush completes: a flush covers
every write COMPLETED (A logged) before it was ISSUED (FI logged), on any
connection and either disk (casdisk's flush is store-wide: docs/design.md,
multi-conn).  A FUA command covers itself, and (invariant 2 of the brief)
every write completed before it was issued, since casdisk implements FUA
as a store-wide flush.  Use --strict-fua=no in verify to judge FUA by the
NBD protocol alone (the command itself).

A snapshot taken while the workload runs holds, in each block, one of the
versions between the last one acknowledged before it was requested and
the last one issued before it returned (v[acked at SI] .. v[issued at
SA]).  After a crash a snapshot whose SA was logged must exist and hold
such versions; one that was still being taken may exist (then the same
holds) or not.
"""

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

DISKS = ("a", "b")


def bhash(b):
    return hashlib.blake2b(b, digest_size=12).hexdigest()


# ---------------------------------------------------------------- model

class Model:
    """Replays a model log on top of base images: allowed values per block."""

    def __init__(self, bs, base_hashes, strict_fua=True, iolog_cut=None):
        self.bs = bs
        self.iolog_cut = iolog_cut             # ignore flushes completed past this I/O log offset
        self.base = base_hashes                # disk -> [hash per block]
        self.versions = {}                     # (disk, blk) -> [(hash, op)]
        self.floor = {}                        # (disk, blk) -> index
        self.last_acked = {}                   # (disk, blk) -> index
        self.op_blocks = {}                    # op -> [(key, index)]
        self.acked = set()
        self.failed = set()
        self.flush_snap = {}                   # fid -> dict snapshot
        self.snaps = {}                        # sid -> {disk, lower, upper, done}
        self.strict_fua = strict_fua
        self.counts = {"ops": 0, "flushes": 0, "flushes_done": 0}

    def _vers(self, key):
        v = self.versions.get(key)
        if v is None:
            v = self.versions[key] = [(self.base[key[0]][key[1]], None)]
            self.floor[key] = 0
            self.last_acked[key] = 0
        return v

    def _new(self, op, key, h):
        v = self._vers(key)
        v.append((h, op))
        self.op_blocks.setdefault(op, []).append((key, len(v) - 1))

    def line(self, parts):
        t = parts[0]
        if t == "N":
            self._new(parts[1], (parts[2], int(parts[3])), parts[4])
        elif t == "Z":
            d, b0, n, h = parts[2], int(parts[3]), int(parts[4]), parts[5]
            for b in range(b0, b0 + n):
                self._new(parts[1], (d, b), h)
        elif t == "A":
            op = parts[1]
            self.acked.add(op)
            self.counts["ops"] += 1
            for key, i in self.op_blocks.get(op, ()):
                if i > self.last_acked[key]:
                    self.last_acked[key] = i
        elif t == "E":
            self.failed.add(parts[1])
        elif t == "SI":
            d = parts[2]
            self.snaps[parts[1]] = {"disk": d, "done": False, "upper": None,
                                    "lower": {k: i for k, i in self.last_acked.items() if k[0] == d}}
        elif t == "SA":
            sn = self.snaps[parts[1]]
            sn["upper"] = {k: len(v) - 1 for k, v in self.versions.items() if k[0] == sn["disk"]}
            sn["done"] = not (self.iolog_cut is not None and len(parts) > 2 and
                              int(parts[2]) > self.iolog_cut)
        elif t == "SO":
            self.snaps[parts[1]]["offline"] = True
        elif t == "FI":
            fid = parts[1]
            self.counts["flushes"] += 1
            if fid.startswith("u") and not self.strict_fua:
                self.flush_snap[fid] = {}
            else:
                self.flush_snap[fid] = dict(self.last_acked)
        elif t == "FA":
            fid = parts[1]
            if self.iolog_cut is not None and len(parts) > 2 and int(parts[2]) > self.iolog_cut:
                self.flush_snap.pop(fid, None)   # not complete at the simulated power cut
                self.counts["flushes_after_cut"] = self.counts.get("flushes_after_cut", 0) + 1
                return
            self.counts["flushes_done"] += 1
            for key, i in self.flush_snap.pop(fid, {}).items():
                if i > self.floor[key]:
                    self.floor[key] = i
            if fid.startswith("u"):              # FUA: the command itself
                for key, i in self.op_blocks.get(fid[1:], ()):
                    if i > self.floor[key]:
                        self.floor[key] = i
        else:
            raise ValueError("bad model line %r" % (parts,))

    def load(self, path):
        with open(path, "rb") as f:
            data = f.read()
        # Only complete lines (the driver is never killed mid-line, but be safe).
        end = data.rfind(b"\n")
        for ln in data[:end + 1].decode().splitlines():
            if ln:
                self.line(ln.split(" "))
        return self

    def allowed(self, disk, blk):
        key = (disk, blk)
        v = self.versions.get(key)
        if v is None:
            return [(self.base[disk][blk], None)]
        return v[self.floor[key]:]

    def snap_allowed(self, sid, blk):
        """The contents block blk of snapshot sid may hold."""
        sn = self.snaps[sid]
        key = (sn["disk"], blk)
        v = self.versions.get(key)
        if v is None:
            return [self.base[key[0]][blk]]
        lo = sn["lower"].get(key, 0)
        hi = sn["upper"].get(key, 0) if sn["upper"] is not None else len(v) - 1
        return [h for h, _ in v[lo:hi + 1]]

    def describe(self, disk, blk):
        key = (disk, blk)
        v = self.versions.get(key)
        if v is None:
            return {"base": self.base[disk][blk], "versions": []}
        return {"floor": self.floor[key],
                "versions": [{"hash": h, "op": op,
                              "acked": op is None or op in self.acked}
                             for h, op in v]}

    def find_hash(self, h):
        """Where else does content h appear in the model (garbage vs. another block's data)."""
        hits = []
        for key, v in self.versions.items():
            for i, (vh, op) in enumerate(v):
                if vh == h:
                    hits.append("%s:%d v%d" % (key[0], key[1], i))
                    if len(hits) >= 5:
                        return hits
        return hits


def image_hashes(path, bs, size):
    out = []
    if not os.path.exists(path):
        z = bhash(bytes(bs))
        return [z] * (size // bs)
    with open(path, "rb") as f:
        data = f.read()
    assert len(data) == size, (path, len(data), size)
    for i in range(0, size, bs):
        out.append(bhash(data[i:i + bs]))
    return out


def uri_of(sock, disk):
    return "nbd+unix:///%s?socket=%s" % (disk, sock)


def verify(sock, bs, size, images, model_path, out_images=None, strict_fua=True,
           iolog_cut=None):
    """Read both disks, check every block against the model.  Returns a
    list of violations (dicts).  Writes what was read to out_images."""
    import nbd
    base = {d: image_hashes(os.path.join(images, d + ".img"), bs, size) for d in DISKS}
    m = Model(bs, base, strict_fua, iolog_cut)
    if model_path and os.path.exists(model_path):
        m.load(model_path)
    viol = []
    chunk = max(bs, 1 << 20)
    for d in DISKS:
        h = nbd.NBD()
        h.connect_uri(uri_of(sock, d))
        if h.get_size() != size:
            viol.append({"class": "content", "disk": d,
                         "what": "size %d, expected %d" % (h.get_size(), size)})
            continue
        img = bytearray(size)
        for off in range(0, size, chunk):
            try:
                buf = h.pread(chunk, off)
            except nbd.Error:
                buf = bytearray(chunk)
                for b in range(off, off + chunk, bs):
                    try:
                        buf[b - off:b - off + bs] = h.pread(bs, b)
                    except nbd.Error as e:
                        viol.append({"class": "read-error", "disk": d, "block": b // bs,
                                     "what": "read error: %s" % e,
                                     "model": m.describe(d, b // bs)})
                        buf[b - off:b - off + bs] = b"\xee" * bs
            img[off:off + chunk] = buf
        h.shutdown()
        del h
        for blk in range(size // bs):
            got = bhash(bytes(img[blk * bs:(blk + 1) * bs]))
            ok = [x for x, _ in m.allowed(d, blk)]
            if got not in ok:
                viol.append({"class": "content", "disk": d, "block": blk, "offset": blk * bs,
                             "what": "content %s not allowed" % got,
                             "zeroes": got == bhash(bytes(bs)),
                             "found_elsewhere": m.find_hash(got),
                             "model": m.describe(d, blk)})
        if out_images:
            tmp = os.path.join(out_images, d + ".img.tmp")
            with open(tmp, "wb") as f:
                f.write(img)
            os.replace(tmp, os.path.join(out_images, d + ".img"))
    viol += verify_snapshots(sock, bs, size, m)
    return viol, m.counts


def verify_snapshots(sock, bs, size, m):
    import nbd
    viol = []
    m.counts["snapshots"] = m.counts["snapshots_found"] = 0
    for sid, sn in sorted(m.snaps.items()):
        m.counts["snapshots"] += 1
        if sn.get("offline"):
            continue
        name = "%s@%s" % (sn["disk"], sid)
        h = nbd.NBD()
        try:
            h.connect_uri(uri_of(sock, name))
        except nbd.Error as e:
            if sn["done"]:
                viol.append({"class": "snapshot", "snapshot": name,
                             "what": "taken (durable on return) but gone: %s" % e})
            continue
        m.counts["snapshots_found"] += 1
        try:
            if h.get_size() != size:
                viol.append({"class": "snapshot", "snapshot": name,
                             "what": "size %d, expected %d" % (h.get_size(), size)})
                continue
            for off in range(0, size, bs):
                try:
                    got = bhash(h.pread(bs, off))
                except nbd.Error as e:
                    viol.append({"class": "snapshot", "snapshot": name, "block": off // bs,
                                 "what": "read error: %s" % e})
                    continue
                if got not in m.snap_allowed(sid, off // bs):
                    viol.append({"class": "snapshot", "snapshot": name, "block": off // bs,
                                 "what": "content %s not one of the versions of its moment" % got,
                                 "found_elsewhere": m.find_hash(got)})
        finally:
            h.shutdown()
    return viol


# ---------------------------------------------------------------- workload

class Workload:
    def __init__(self, args):
        self.a = args
        self.bs = args.block_size
        self.size = args.size
        self.nblk = self.size // self.bs
        self.rng = random.Random(args.seed)
        self.lock = threading.Lock()
        self.cur = {}
        for d in DISKS:
            p = os.path.join(args.images, d + ".img")
            self.cur[d] = bytearray(open(p, "rb").read()) if os.path.exists(p) else bytearray(self.size)
            assert len(self.cur[d]) == self.size
        self.busy = {d: set() for d in DISKS}
        self.fd = os.open(args.model, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.next_op = 0
        self.next_flush = 0
        self.stop = threading.Event()
        self.killed = threading.Event()
        self.flush_issued = threading.Event()
        self.stats = {k: 0 for k in ("write", "write_unaligned", "write_dup", "write_zero",
                                     "fua", "trim", "zero", "flush", "read_check", "snapshot")}
        self.errors = []
        self.read_mismatch = []
        self.tolerated = 0                     # --tolerate-errors: errors logged and passed over
        self.unsure = False                    # a write failed: its blocks' content is unknown
        # --tolerate-errors: blocks a failed command covered.  Their content
        # is one of two (the command happened or not), so the model cannot
        # derive the result of a partial write or zero of them: none is
        # issued until a command covering the whole block succeeds.
        self.tainted = {"a": set(), "b": set()}
        # Content pool for dedup across offsets and disks.
        self.pool = [self.content("random") for _ in range(6)] + \
                    [self.content("text") for _ in range(6)]
        self.recent = []

    def log(self, s):
        os.write(self.fd, s.encode())

    def content(self, kind, n=None, rng=None):
        rng = rng or self.rng
        n = n or self.bs
        if kind == "random":
            return rng.randbytes(n)
        if kind == "text":
            words = [b"casdisk", b"block", b"zstd", b"dedup", b"flush", b"crash",
                     b"journal", b"%d" % rng.randrange(1000)]
            out = bytearray()
            while len(out) < n:
                out += rng.choice(words) + b" "
            return bytes(out[:n])
        if kind == "pattern":
            pat = rng.randbytes(rng.choice((1, 2, 8, 512)))
            return (pat * (n // len(pat) + 1))[:n]
        if kind == "zero":
            return bytes(n)
        raise ValueError(kind)

    # Reserve blocks [b0, b1) of disk d; returns False if any is busy.
    def reserve(self, d, b0, b1):
        busy = self.busy[d]
        if b1 - b0 < len(busy):
            if any(b in busy for b in range(b0, b1)):
                return False
        elif any(b0 <= b < b1 for b in busy):
            return False
        busy.update(range(b0, b1))
        return True

    def choose(self, rng, d):
        """Pick an op for disk d.  Returns (kind, offset, data_or_len, flags)."""
        bs, size = self.bs, self.size
        r = rng.random()
        if r < self.a.flush_prob:
            return ("flush", 0, 0, 0)
        r = rng.random()
        if r < 0.05:
            return ("read_check", *self.rand_range(rng, 4 * bs), 0)
        if r < 0.22:
            # trim / zero: unaligned sometimes, large sometimes (one MAP_ZERO record)
            kind = rng.choice(("trim", "zero"))
            flags = 1 if rng.random() < 0.1 else 0                   # FUA
            if kind == "zero" and rng.random() < 0.2:
                flags |= 2                                          # NO_HOLE
            if rng.random() < 0.15:
                n = rng.randrange(65, max(66, self.nblk // 2)) * bs
                off = rng.randrange(0, (size - n) // bs + 1) * bs
                if rng.random() < 0.3 and off + n + 700 <= size:
                    off, n = off + rng.randrange(1, bs), n + 600
                return (kind, off, min(n, size - off), flags)
            off, n = self.rand_range(rng, 8 * bs)
            return (kind, off, n, flags)
        # writes
        flags = 0
        sub = rng.random()
        if sub < 0.35:            # aligned whole blocks
            nb = rng.randrange(1, 5)
            b0 = self.pick_block(rng, nb)
            off, n = b0 * bs, nb * bs
            kinds = ("random", "text", "pattern", "zero", "pool")
            parts = []
            for _ in range(nb):
                k = rng.choices(kinds, (3, 3, 2, 1, 3))[0]
                parts.append(rng.choice(self.pool) if k == "pool" else self.content(k, bs, rng))
            data = b"".join(parts)
            tag = "write_dup" if k == "pool" else ("write_zero" if k == "zero" else "write")
        elif sub < 0.5:           # the same content at the same offset on the other disk's side
            b0 = self.pick_block(rng, 1)
            off = b0 * bs
            other = "b" if d == "a" else "a"
            with self.lock:
                src = bytes(self.cur[other][off:off + bs])
            data = src if rng.random() < 0.7 else rng.choice(self.pool)
            n, tag = bs, "write_dup"
        else:                     # unaligned / partial
            off, n = self.rand_range(rng, 3 * bs)
            k = rng.choice(("random", "text", "pattern", "zero"))
            data = self.content(k, n, rng)
            tag = "write_unaligned"
        if rng.random() < 0.1:
            flags = 1             # FUA
        return (tag, off, data, flags)

    def pick_block(self, rng, nb):
        if self.recent and rng.random() < 0.3:   # overwrite something recent
            b = rng.choice(self.recent)
        else:
            b = rng.randrange(0, self.nblk)
        return min(b, self.nblk - nb)

    def rand_range(self, rng, maxlen):
        n = rng.randrange(1, maxlen + 1)
        off = rng.randrange(0, self.size - n + 1)
        if rng.random() < 0.3:
            off = off // 512 * 512
        return off, n

    def worker(self, idx, h, d):
        import nbd
        rng = random.Random(self.a.seed * 100 + idx)
        bs = self.bs
        deadline = time.monotonic() + self.a.duration
        while not self.stop.is_set() and time.monotonic() < deadline:
            kind, off, arg, flags = self.choose(rng, d)
            if kind == "flush":
                with self.lock:
                    fid = "f%d" % self.next_flush
                    self.next_flush += 1
                    self.log("FI %s\n" % fid)
                self.flush_issued.set()
                try:
                    h.flush()
                except nbd.Error as e:
                    if self.fail(fid, e):
                        continue
                    return
                with self.lock:
                    self.log("FA %s%s\n" % (fid, self.iolog_size()))
                    self.stats["flush"] += 1
                continue
            n = arg if isinstance(arg, int) else len(arg)
            b0, b1 = off // bs, (off + n + bs - 1) // bs
            part0 = off % bs != 0 or off + n < (b0 + 1) * bs
            part1 = (off + n) % bs != 0
            with self.lock:
                if kind != "read_check" and ((part0 and b0 in self.tainted[d]) or
                                             (part1 and b1 - 1 in self.tainted[d])):
                    continue
                if not self.reserve(d, b0, b1):
                    continue
                if kind == "read_check":
                    expect = bytes(self.cur[d][off:off + n])
                else:
                    op = "%d" % self.next_op
                    self.next_op += 1
                    cur = self.cur[d]
                    if kind in ("trim", "zero"):
                        cur[off:off + n] = bytes(n)
                    else:
                        cur[off:off + n] = arg
                    lines = []
                    zh = bhash(bytes(bs))
                    run0 = None
                    for b in range(b0, b1):
                        hh = bhash(bytes(cur[b * bs:(b + 1) * bs]))
                        if hh == zh:
                            if run0 is None:
                                run0 = b
                            continue
                        if run0 is not None:
                            lines.append("Z %s %s %d %d %s\n" % (op, d, run0, b - run0, zh))
                            run0 = None
                        lines.append("N %s %s %d %s\n" % (op, d, b, hh))
                    if run0 is not None:
                        lines.append("Z %s %s %d %d %s\n" % (op, d, run0, b1 - run0, zh))
                    if flags & 1:
                        lines.append("FI u%s\n" % op)
                    self.log("".join(lines))
                    if len(self.recent) < 64:
                        self.recent.append(b0)
                    else:
                        self.recent[rng.randrange(64)] = b0
            try:
                if kind == "read_check":
                    got = h.pread(n, off)
                elif kind == "trim":
                    h.trim(n, off, flags)
                elif kind == "zero":
                    h.zero(n, off, flags)
                else:
                    h.pwrite(arg, off, flags)
            except nbd.Error as e:
                with self.lock:
                    self.busy[d].difference_update(range(b0, b1))
                    if kind != "read_check":
                        self.tainted[d].update(range(b0, b1))
                if self.fail(None if kind == "read_check" else op, e):
                    continue
                return
            with self.lock:
                self.busy[d].difference_update(range(b0, b1))
                if kind == "read_check":
                    self.stats["read_check"] += 1
                    if got != expect and not self.unsure:
                        self.read_mismatch.append((d, off, n))
                    continue
                self.log("A %s\n%s" % (op, "FA u%s%s\n" % (op, self.iolog_size())
                                        if flags & 1 else ""))
                self.tainted[d].difference_update(range(b0 + part0, b1 - part1))
                self.stats[kind] += 1
                if flags & 1:
                    self.stats["fua"] += 1

    def iolog_size(self):
        """With --iolog: the I/O log's size now, after the reply.  Every
        record of the flush is below it (records are logged before the
        operation), so a power-loss simulation cut at a smaller offset must
        not count this flush as completed."""
        if not self.a.iolog:
            return ""
        try:
            return " %d" % os.stat(self.a.iolog).st_size
        except FileNotFoundError:
            return " 0"

    def fail(self, op, e):
        """Log a failed command.  With --tolerate-errors (injected faults)
        the failure is expected: returns True and the worker goes on (the
        model keeps the command as one that may or may not have happened;
        a failed flush covers nothing).  Else stops the workload."""
        import nbd
        with self.lock:
            if op is not None:
                self.log("E %s %s\n" % (op, str(e).replace("\n", " ")[:200]))
            if self.a.tolerate_errors and isinstance(e, nbd.Error) and not self.killed.is_set():
                self.tolerated += 1
                self.stats["errors_tolerated"] = self.tolerated
                if op is not None and not op.startswith("f"):
                    self.unsure = True         # online reads can no longer be judged
                if self.tolerated % 50 == 0:
                    time.sleep(0.05)           # a sticky fault: do not spin
                return True
            if not self.killed.is_set():
                self.errors.append(str(e))
        self.stop.set()
        return False

    def snapshotter(self):
        """Take snapshots of disk a online while the workers write."""
        a = self.a
        rng = random.Random(a.seed * 7 + 5)
        n = 0
        while not self.stop.wait(rng.random() * 2 * a.snapshot_every):
            sid = "s%d" % n
            n += 1
            with self.lock:
                self.log("SI %s a\n" % sid)
            try:
                r = subprocess.run([a.casdisk, "snapshot", "create", a.store, "a", sid],
                                   capture_output=True, text=True, timeout=60)
            except subprocess.TimeoutExpired:
                r = None
            with self.lock:
                if r is not None and r.returncode == 0 and "(served" not in r.stdout:
                    self.log("SO %s\n" % sid)      # the server had died: see SO above
                    return
                if r is not None and r.returncode == 0:
                    self.log("SA %s%s\n" % (sid, self.iolog_size()))
                    self.stats["snapshot"] += 1
                    continue
            if self.killed.is_set() or self.stop.is_set():
                return          # the server went away under it: allowed
            self.fail(None, RuntimeError("snapshot create %s: %s" % (
                sid, "timed out" if r is None else (r.stdout + r.stderr).strip()[:300])))
            return

    def killer(self):
        a = self.a
        if a.kill_pid is None:
            return
        if a.kill_at_flush is not None:
            # kill right after the k-th flush is issued (often while it runs)
            for _ in range(a.kill_at_flush + 1):
                if not self.flush_issued.wait(a.duration):
                    break
                self.flush_issued.clear()
            time.sleep(self.rng.random() * a.kill_jitter)
        else:
            self.stop.wait(a.kill_after)
        if self.stop.is_set() and self.errors:
            return
        self.killed.set()
        os.kill(a.kill_pid, signal.SIGKILL)
        self.stop.set()

    def run(self):
        import nbd
        handles = []
        for i in range(4):
            d = DISKS[i % 2]
            h = nbd.NBD()
            h.connect_uri(uri_of(self.a.sock, d))
            handles.append((h, d))
        ts = [threading.Thread(target=self.worker, args=(i, h, d))
              for i, (h, d) in enumerate(handles)]
        k = threading.Thread(target=self.killer)
        sn = threading.Thread(target=self.snapshotter) if self.a.snapshot_every > 0 else None
        t0 = time.monotonic()
        for t in ts:
            t.start()
        k.start()
        if sn:
            sn.start()
        for t in ts:
            t.join()
        self.stop.set()
        k.join()
        if sn:
            sn.join()
        if not self.killed.is_set():
            for h, _ in handles:
                try:
                    h.shutdown()
                except Exception:
                    pass
        return {"stats": self.stats, "ops": self.next_op, "flushes": self.next_flush,
                "killed": self.killed.is_set(), "errors": self.errors[:5],
                "read_mismatch": self.read_mismatch[:5],
                "seconds": round(time.monotonic() - t0, 3)}


def parse_size(s):
    s = s.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if s[-1] in mult:
        return int(s[:-1]) * mult[s[-1]]
    return int(s)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("run", "verify"):
        q = sub.add_parser(name)
        q.add_argument("--sock", required=True)
        q.add_argument("--block-size", type=parse_size, required=True)
        q.add_argument("--size", type=parse_size, required=True, help="size of each disk")
        q.add_argument("--images", required=True, help="dir with a.img, b.img: the content at start")
        q.add_argument("--model", required=True)
    r = sub.choices["run"]
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--duration", type=float, default=5.0, help="stop after this many seconds")
    r.add_argument("--flush-prob", type=float, default=0.07, help="share of flushes among the ops")
    r.add_argument("--iolog", help="nbdkit's CASDISK_IOLOG file: log its size with each completed flush")
    r.add_argument("--kill-pid", type=int)
    r.add_argument("--kill-after", type=float, default=1.0)
    r.add_argument("--kill-at-flush", type=int, help="kill right after the K-th flush is issued")
    r.add_argument("--kill-jitter", type=float, default=0.003)
    r.add_argument("--tolerate-errors", action="store_true",
                   help="I/O errors are expected (CASDISK_FAULT): log them and go on")
    r.add_argument("--snapshot-every", type=float, default=0,
                   help="take a snapshot of disk a every this many seconds on average (0 = none)")
    r.add_argument("--casdisk", help="the casdisk tool (for --snapshot-every)")
    r.add_argument("--store", help="the store directory (for --snapshot-every)")
    v = sub.choices["verify"]
    v.add_argument("--out-images")
    v.add_argument("--strict-fua", default="yes", choices=("yes", "no"))
    v.add_argument("--iolog-cut", type=int, help="the power cut's offset in the I/O log")
    a = p.parse_args()
    if a.cmd == "run":
        res = Workload(a).run()
        print(json.dumps(res))
        sys.exit(3 if res["errors"] or res["read_mismatch"] else 0)
    viol, counts = verify(a.sock, a.block_size, a.size, a.images, a.model, a.out_images,
                          a.strict_fua == "yes", a.iolog_cut)
    print(json.dumps({"violations": viol[:20], "nviolations": len(viol), "model": counts}, indent=1))
    sys.exit(1 if viol else 0)


if __name__ == "__main__":
    main()
