#!/usr/bin/python3
"""Importing a raw image: casdisk import against its peers, side by side.

The image is a mix like a VM's: a third incompressible, a third
compressible (half of each 4 KiB random, half a repeated word list), a
sixth zeroes written out, a sixth a hole, and a tenth of the data blocks
repeat earlier ones.  For each repetition, one after the other:

  casdisk-1    casdisk import --workers 1 (no worker pool)
  casdisk-N    casdisk import --workers N (the default: online CPUs)
  qcow2        qemu-img convert -O qcow2 (a qcow2 host's import)
  raw          qemu-img convert -O raw (what the file plugin serves)

Each run writes into a fresh directory and ends with syncfs of it, so
every backend pays for getting its data to the disk.  The image is read
once before the runs, so all of them read it from the page cache.
Reported: MiB/s of image per second (median and each run), CPU seconds
per GiB of image, bytes allocated, and the ratios to qcow2 and raw.

    top_builddir=build /usr/bin/python3 bench/import.py [--reps 3] [--size 1024]
    (make bench-import)
"""

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20
BLK = 64 << 10


def make_image(path, size_mib, seed=7):
    rng = random.Random(seed)
    words = b" ".join(b"%s%d" % (w, i) for i, w in enumerate(
        [b"kernel", b"module", b"usr", b"lib", b"share", b"doc", b"bin", b"etc"] * 64))
    data_blocks = []
    with open(path, "wb") as f:
        f.truncate(size_mib * MiB)
        for i in range(size_mib * MiB // BLK):
            kind = i % 6
            if kind == 5:                       # a hole
                continue
            if kind == 4:
                b = bytes(BLK)                  # zeroes, written out
            elif data_blocks and rng.random() < 0.1:
                b = rng.choice(data_blocks)     # a repeat
            elif kind < 2:
                b = os.urandom(BLK)
            else:
                parts = []
                for _ in range(BLK // 4096):
                    parts.append(os.urandom(2048))
                    parts.append((words * 2)[rng.randrange(1024):][:2048])
                b = b"".join(parts)
            if kind != 4 and len(data_blocks) < 256:
                data_blocks.append(b)
            f.seek(i * BLK)
            f.write(b)


def children_cpu():
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return c.ru_utime + c.ru_stime


def allocated(d):
    total = 0
    for root, _, files in os.walk(d):
        for name in files:
            total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total


def run_one(args, casdisk, img, tmp, backend, workers):
    d = tempfile.mkdtemp(prefix="run-", dir=tmp)
    try:
        if backend == "casdisk":
            st = os.path.join(d, "store")
            subprocess.run([casdisk, "create", st, "--size", "1M"], check=True,
                           stdout=subprocess.DEVNULL)
            cmd = [casdisk, "import", st, "vm", img, "--workers", str(workers)]
        else:
            fmt = "qcow2" if backend == "qcow2" else "raw"
            cmd = ["qemu-img", "convert", "-f", "raw", "-O", fmt, img,
                   os.path.join(d, "disk." + fmt)]
        c0, t0 = children_cpu(), time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if r.returncode:
            raise RuntimeError("%s failed: %s" % (" ".join(cmd), r.stderr[-400:]))
        subprocess.run(["sync", "-f", d], check=True)
        t = time.monotonic() - t0
        cpu = children_cpu() - c0
        return {"backend": backend if backend != "casdisk" else "casdisk-%d" % workers,
                "mib_s": args.size / t, "wall_s": t,
                "cpu_s_per_gib": cpu / (args.size / 1024.0),
                "allocated_mib": allocated(d) / MiB}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--size", type=int, default=1024, help="MiB of image")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="casdisk-N's pool (default: online CPUs)")
    ap.add_argument("--tmp", default="/var/tmp")
    ap.add_argument("--json", help="write every run here")
    args = ap.parse_args()
    top = os.path.abspath(os.environ.get("top_builddir", "build"))
    casdisk = os.path.join(top, "tools", "casdisk")
    if not os.path.exists(casdisk):
        sys.exit("no casdisk tool at %s (set top_builddir)" % casdisk)
    tmp = tempfile.mkdtemp(prefix="casdisk-import-", dir=args.tmp)
    runs = []
    try:
        img = os.path.join(tmp, "image.raw")
        make_image(img, args.size)
        with open(img, "rb") as f:              # into the page cache
            while f.read(16 * MiB):
                pass
        plan = [("casdisk", 1), ("casdisk", args.workers), ("qcow2", 0), ("raw", 0)]
        for rep in range(args.reps):
            for backend, w in plan:
                r = run_one(args, casdisk, img, tmp, backend, w)
                r["rep"] = rep + 1
                runs.append(r)
                print("rep %d %-10s %7.1f MiB/s  %5.2f cpu-s/GiB  %7.1f MiB allocated"
                      % (rep + 1, r["backend"], r["mib_s"], r["cpu_s_per_gib"],
                         r["allocated_mib"]), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)
    names = []
    for r in runs:
        if r["backend"] not in names:
            names.append(r["backend"])

    def med(name, field):
        return statistics.median(r[field] for r in runs if r["backend"] == name)
    print("\nimport of a %d MiB raw image, %d repetitions, medians\n" % (args.size, args.reps))
    print("| importer | MiB/s (each run) | ÷ qcow2 | ÷ raw | cpu-s/GiB | allocated MiB |")
    print("|---|---|---:|---:|---:|---:|")
    for n in names:
        each = ", ".join("%.0f" % r["mib_s"] for r in runs if r["backend"] == n)
        print("| %s | %.0f (%s) | %.2f | %.2f | %.2f | %.1f |" % (
            n, med(n, "mib_s"), each, med(n, "mib_s") / med("qcow2", "mib_s"),
            med(n, "mib_s") / med("raw", "mib_s"), med(n, "cpu_s_per_gib"),
            med(n, "allocated_mib")))


if __name__ == "__main__":
    main()
