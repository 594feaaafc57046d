#!/usr/bin/python3
"""Power-loss simulation from the engine's I/O log (CASDISK_IOLOG).

  powerloss.py BASELINE_DIR IOLOG OUT_DIR [--seed N] [--cut BYTES] [--keep-all]

BASELINE_DIR is a copy of the store taken before nbdkit started; IOLOG is
the log nbdkit wrote (every mutating operation on a store file, logged
before it was performed; see lib/storage/io.c); OUT_DIR receives one state the
store could be in after a power loss at the moment nbdkit died.

The model (see README.md for what it cannot do):

* Files are inodes; names are directory entries.  The process's view
  (every operation applied) resolves the names in the log to inodes: after
  a rename the log names the inode by its new name, after an unlink as
  "NAME (deleted)".
* A write (W), truncate (T) or hole punch (P) is durable when a later
  fdatasync (S) of the same inode follows it.  Durable ones are applied.
* A non-durable W is applied whole, dropped, or torn, with equal chances;
  torn means a 512-byte-aligned prefix of its sectors, or a random subset
  of them (sector boundaries are absolute file offsets).  A non-durable T
  or P is applied with probability 1/2.
* Creating a new file (C of a name that does not exist) is durable when a
  later S of that inode or a later directory fsync (D) follows; an unlink
  (U) or rename (R) when a later D follows.  Non-durable ones are applied
  with probability 1/2.  C of an existing name truncates that inode to 0
  (a content operation: durable with a later S of it, or a later D).
* Everything is applied in log order, so a later operation is applied on
  top of the earlier ones that were kept.
"""

import argparse
import json
import os
import random

SECTOR = 512


class Inode:
    __slots__ = ("data", "ino")

    def __init__(self, ino, data=b""):
        self.ino = ino
        self.data = bytearray(data)


def parse(log, starts=None):
    """Return the records (op, args, data) of the log bytes, stopping at an
    incomplete record (cut by the kill), and the number of bytes used.
    If STARTS is a list, the byte offset of each record is appended to it."""
    recs = []
    pos = 0
    n = len(log)
    while pos < n:
        if starts is not None:
            starts.append(pos)
        nl = log.find(b"\n", pos)
        if nl < 0:
            break
        hdr = log[pos:nl].decode("utf-8", "surrogateescape")
        op = hdr[:1]
        rest = hdr[2:]
        pos = nl + 1
        if op == "W":
            name, off, ln = rest.rsplit(" ", 2)
            off, ln = int(off), int(ln)
            if pos + ln > n:
                break
            recs.append(("W", (name, off, ln), log[pos:pos + ln]))
            pos += ln
        elif op == "P":
            name, off, ln = rest.rsplit(" ", 2)
            recs.append(("P", (name, int(off), int(ln)), None))
        elif op == "T":
            name, size = rest.rsplit(" ", 1)
            recs.append(("T", (name, int(size)), None))
        elif op in "SCU":
            recs.append((op, (rest,), None))
        elif op == "R":
            a, b = rest.split(" ")
            recs.append(("R", (a, b), None))
        elif op == "D":
            recs.append(("D", (), None))
        elif op == "X":
            recs.append(("X", (rest,), None))
        else:
            raise ValueError("bad I/O log record %r at byte %d" % (hdr, pos))
    if starts is not None:
        del starts[len(recs):]
    return recs, pos


def cut_points(log, rng, end_prob=0.5):
    """Choose where the simulated power cut happens: a byte offset of the log
    (a record boundary: the process died just before that record).  With
    probability END_PROB the end (the real kill); else half the time just
    before a sync of a journal (its last batch written, not synced: the
    flush window); otherwise just before or after another record that
    matters (a sync, a journal or checkpoint write, a create, a rename, an
    unlink, a directory sync, a truncate), or anywhere.  Half of the
    points that are not the end fall inside a step of the background work
    (the X records: erase, move, settle, cut, checkpoint), when the log has
    any.  The description ends with the background step the cut falls in."""
    starts = []
    recs, used = parse(log, starts)
    ctx = contexts(recs)
    if not recs or rng.random() < end_prob:
        return used, "end [bg %s]" % ctx[len(recs)]
    k, where = pick_cut(recs, ctx, rng)
    return starts[k] if k < len(recs) else used, "%s [bg %s]" % (where, ctx[k])


def contexts(recs):
    """ctx[k]: the background step in progress just before record k ("-" =
    none), for k in 0 .. len(recs)."""
    ctx = ["-"]
    for op, args, _ in recs:
        ctx.append(args[0] if op == "X" else ctx[-1])
    return ctx


def pick_cut(recs, ctx, rng):
    """Choose record K to cut before (K == len(recs): after the last one)."""
    by_step = {}                   # background step -> the records inside it
    for i in range(len(recs)):
        if recs[i][0] != "X" and ctx[i] != "-":
            by_step.setdefault(ctx[i], []).append(i)
    if by_step and rng.random() < 1 / 2:
        # Each step equally likely, however many records it has.
        k = rng.choice(by_step[rng.choice(sorted(by_step))])
        if rng.random() < 0.3:
            k += 1
        return k, "in %s: before %s #%d" % (ctx[k], recs[k][0] if k < len(recs) else "end", k)
    r = rng.random()
    if r < 0.5:
        idx = [i for i, x in enumerate(recs) if x[0] == "S" and x[1][0].startswith("journal")]
        if idx:
            k = rng.choice(idx)
            return k, "before S %s #%d" % (recs[k][1][0], k)
    def interesting(x):
        op, args, _ = x
        if op in "SRUDCT":
            return True
        return op == "W" and not args[0].startswith("data")
    idx = [i for i, x in enumerate(recs) if interesting(x)]
    if idx and r < 0.8:
        k = rng.choice(idx)
        if rng.random() < 0.3 and k + 1 < len(recs):
            return k + 1, "after %s %s #%d" % (recs[k][0], " ".join(map(str, recs[k][1][:1])), k)
        return k, "before %s %s #%d" % (recs[k][0], " ".join(map(str, recs[k][1][:1])), k)
    k = rng.randrange(len(recs))
    return k, "before %s #%d" % (recs[k][0], k)


JREC_NAMES = {1: "BLOCK_NEW", 2: "BLOCK_DEL", 3: "MAP_SET", 4: "MAP_ZERO", 5: "DISK_ADD",
              6: "BLOCK_MOVE", 7: "BATCH", 8: "DISK_CLONE", 9: "DISK_DEL", 10: "PATCH"}


def journal_stats(recs):
    """Count the journal records written (by type), and the other operations:
    what the run exercised (GC: BLOCK_DEL, recycler: BLOCK_MOVE, ...)."""
    out = {}
    for op, args, data in recs:
        if op == "W" and args[0].startswith("journal."):
            p = 64 if args[1] == 0 else 0          # skip a journal header
            while p + 16 <= len(data):
                t = data[p + 4] | data[p + 5] << 8
                ln = data[p + 6] | data[p + 7] << 8
                if t == 0:
                    break
                name = JREC_NAMES.get(t, "type%d" % t)
                out[name] = out.get(name, 0) + 1
                p += (16 + ln + 7) // 8 * 8
        else:
            if op == "X":
                if args[0] != "-":
                    key = "step " + args[0]
                    out[key] = out.get(key, 0) + 1
                continue
            key = {"W": "write", "S": "sync", "T": "truncate", "P": "punch", "C": "create",
                   "U": "unlink", "R": "rename", "D": "dirsync"}[op]
            if op in "WSTP":
                key += " " + args[0].split(".")[0]
            out[key] = out.get(key, 0) + 1
    return out


DELETED = " (deleted)"


def simulate(baseline, log, out, rng, sabotage=False, keep_all=False):
    recs, used = parse(log)
    # Load the baseline.
    inodes = []
    view = {}                      # the process's view: name -> inode
    for name in sorted(os.listdir(baseline)):
        p = os.path.join(baseline, name)
        if os.path.isfile(p):
            with open(p, "rb") as f:
                ino = Inode(len(inodes), f.read())
            inodes.append(ino)
            view[name] = ino
    sim = dict(view)               # the simulated directory after the power loss
    deleted = {}                   # "name (deleted)" -> inode

    def resolve(name):
        if name.endswith(DELETED):
            return deleted.get(name[:-len(DELETED)])
        return view.get(name)

    # Pass 1: resolve every record to inodes (process view: everything applied).
    res = []
    for op, args, data in recs:
        if op in "WPTS":
            ino = resolve(args[0])
            if ino is None:
                raise ValueError("I/O log names %r, which does not exist" % args[0])
            res.append((ino, False))
        elif op == "C":
            ino = view.get(args[0])
            if ino is not None:
                res.append((ino, False))          # O_TRUNC of an existing file
            else:
                ino = Inode(len(inodes))
                inodes.append(ino)
                view[args[0]] = ino
                res.append((ino, True))
        elif op == "U":
            ino = view.pop(args[0], None)
            if ino is not None:
                deleted[args[0]] = ino
            res.append((ino, False))
        elif op == "R":
            ino = view.pop(args[0], None)
            if ino is None:
                raise ValueError("I/O log renames %r, which does not exist" % args[0])
            old = view.get(args[1])
            if old is not None:
                deleted[args[1]] = old
            view[args[1]] = ino
            res.append((ino, False))
        else:
            res.append((None, False))

    # Sabotage (the harness's self-test): forget the last sync of a journal,
    # so its last batch, which a completed flush may have covered, can be lost.
    ignore = -1
    if sabotage:
        for i in range(len(recs) - 1, -1, -1):
            if recs[i][0] == "S" and recs[i][1][0].startswith("journal."):
                ignore = i
                break

    # Pass 2 (backwards): durability.  keep_all: no power loss, every
    # operation before the cut happened (a kill -9 just before the cut).
    durable = [keep_all] * len(recs)
    synced = set()                 # inodes with an S later on
    dsync = False                  # a D later on
    for i in range(len(recs) - 1, -1, -1):
        op = recs[i][0]
        ino, new = res[i]
        if op == "S" and i != ignore:
            synced.add(ino.ino)
        elif op == "D":
            dsync = True
        elif keep_all:
            pass
        elif op in "WTP":
            durable[i] = ino.ino in synced
        elif op == "C":
            durable[i] = ino.ino in synced or dsync
        elif op in "UR":
            durable[i] = dsync

    # Pass 3: apply.
    st = {"records": len(recs), "log_bytes": len(log), "log_used": used,
          "durable_writes": 0, "writes_applied": 0, "writes_dropped": 0, "writes_torn": 0,
          "meta_applied": 0, "meta_skipped": 0}

    def write(ino, off, data):
        d = ino.data
        end = off + len(data)
        if end > len(d):
            d.extend(bytes(end - len(d)))
        d[off:end] = data

    for i, (op, args, data) in enumerate(recs):
        ino, new = res[i]
        dur = durable[i]
        if op == "W":
            off = args[1]
            if dur:
                write(ino, off, data)
                st["durable_writes"] += 1
                continue
            choice = rng.randrange(3)
            if choice == 0:
                write(ino, off, data)
                st["writes_applied"] += 1
            elif choice == 1:
                st["writes_dropped"] += 1
            else:
                st["writes_torn"] += 1
                # pieces split at absolute sector boundaries
                pieces = []
                p = off
                end = off + len(data)
                while p < end:
                    q = min(end, (p // SECTOR + 1) * SECTOR)
                    pieces.append((p, q))
                    p = q
                if rng.random() < 0.5:
                    keep = pieces[:rng.randrange(len(pieces) + 1)]
                else:
                    keep = [x for x in pieces if rng.random() < 0.5]
                for p, q in keep:
                    write(ino, p, data[p - off:q - off])
        elif op == "T":
            if dur or rng.random() < 0.5:
                size = args[1]
                if size < len(ino.data):
                    del ino.data[size:]
                else:
                    ino.data.extend(bytes(size - len(ino.data)))
                st["meta_applied"] += 1
            else:
                st["meta_skipped"] += 1
        elif op == "P":
            if dur or rng.random() < 0.5:
                off, ln = args[1], args[2]
                end = min(off + ln, len(ino.data))
                if end > off:
                    ino.data[off:end] = bytes(end - off)
                st["meta_applied"] += 1
            else:
                st["meta_skipped"] += 1
        elif op == "C":
            if not (dur or rng.random() < 0.5):
                st["meta_skipped"] += 1
                continue
            st["meta_applied"] += 1
            if new:
                sim[args[0]] = ino
            else:
                del ino.data[:]
        elif op == "U":
            if ino is None:
                continue
            if dur or rng.random() < 0.5:
                if sim.get(args[0]) is ino:
                    del sim[args[0]]
                st["meta_applied"] += 1
            else:
                st["meta_skipped"] += 1
        elif op == "R":
            if dur or rng.random() < 0.5:
                if sim.get(args[0]) is ino:
                    del sim[args[0]]
                sim[args[1]] = ino
                st["meta_applied"] += 1
            else:
                st["meta_skipped"] += 1

    # Write OUT_DIR (sparse: all-zero 4 KiB runs become holes).
    os.makedirs(out, exist_ok=True)
    for name, ino in sim.items():
        p = os.path.join(out, name)
        d = ino.data
        zero = bytes(4096)
        with open(p, "wb") as f:
            for o in range(0, len(d), 4096):
                chunk = d[o:o + 4096]
                if chunk != zero[:len(chunk)]:
                    f.seek(o)
                    f.write(chunk)
            f.truncate(len(d))
        os.chmod(p, 0o600)
    st["files"] = sorted(sim)
    st["ops"] = journal_stats(recs)
    return st


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("baseline")
    p.add_argument("iolog")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cut", type=int, help="use the log up to this byte offset (a record boundary)")
    p.add_argument("--keep-all", action="store_true",
                   help="no power loss: apply every operation (a kill -9 at the cut)")
    a = p.parse_args()
    with open(a.iolog, "rb") as f:
        log = f.read()
    if a.cut is not None:
        log = log[:a.cut]
    st = simulate(a.baseline, log, a.out, random.Random(a.seed), keep_all=a.keep_all)
    print(json.dumps(st))


if __name__ == "__main__":
    main()
