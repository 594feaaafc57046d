#!/usr/bin/python3
"""Guest throughput while the recycler runs, against the same with the
recycler off (the target: at least 80%).

  bench/recycler.py [--reps N] [--fill-mib N] [--runtime S] [--smoke]

Each run serves a fresh store, writes FILL MiB of unique data into region A
and 256 MiB into region B, flushes, trims 60% of region A (which gives the
recycler FILL * 0.6 MiB of holes to compact), and at once runs one fio
workload on region B for RUNTIME seconds:

  randwrite-64k   random 64 KiB writes, QD16, unique data
  randread-4k     random 4 KiB reads, QD16

"with" runs have the recycler on (gc-delay=0 compact-after=10, the default
recycle-rate); "without" runs have compaction off (compact-after=100; the
GC still frees the trimmed blocks).  Runs are interleaved (with, without,
without, with, ...) so that a noisy machine hurts both alike.  Reports the
median MiB/s of each, the ratio, and how much the data file shrank during
the fio window during the read workload (proof that the recycler was busy
then; during the write workload fio's own writes grow the file).

Environment: NBDKIT (default nbdkit), CASDISK_PLUGIN (the plugin .so).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import nbd

M = 1 << 20
WORKLOADS = {
    "randwrite-64k": ["--rw=randwrite", "--bs=64k", "--iodepth=16", "--refill_buffers"],
    "randread-4k": ["--rw=randread", "--bs=4k", "--iodepth=16"],
}


def data_size(store):
    st = os.stat(os.path.join(store, "data"))
    return st.st_size, st.st_blocks * 512


def one_run(a, work, mode, workload):
    store = os.path.join(work, "store")
    shutil.rmtree(store, ignore_errors=True)
    sock = os.path.join(work, "sock")
    pidfile = os.path.join(work, "pid")
    for f in (sock, pidfile):
        if os.path.exists(f):
            os.unlink(f)
    keys = ["store=" + store, "size=%dM" % (a.fill_mib + 512), "gc-delay=0",
            "compact-after=%d" % (10 if mode == "with" else 100)] + a.keys
    log = open(os.path.join(work, "nbdkit.log"), "ab")
    p = subprocess.Popen([a.nbdkit, "-f", "-U", sock, "-P", pidfile, a.plugin] + keys, stdout=log, stderr=log)
    try:
        t0 = time.monotonic()
        while not (os.path.exists(sock) and os.path.exists(pidfile)):
            if p.poll() is not None or time.monotonic() - t0 > 20:
                raise SystemExit("nbdkit did not start (see %s/nbdkit.log)" % work)
            time.sleep(0.05)
        uri = "nbd+unix:///?socket=" + sock
        h = nbd.NBD()
        h.connect_uri(uri)
        for i in range(a.fill_mib):
            h.pwrite(os.urandom(M), i * M)
        b_off = a.fill_mib * M
        for i in range(256):
            h.pwrite(os.urandom(M), b_off + i * M)
        h.flush()
        for i in range(a.fill_mib):
            if i % 5 in (1, 2, 3):
                h.trim(M, i * M)
        h.flush()
        before = data_size(store)
        out = os.path.join(work, "fio.json")
        subprocess.run(["fio", "--name=" + workload, "--ioengine=nbd", "--uri=" + uri,
                        "--offset=%d" % b_off, "--size=256M", "--time_based",
                        "--runtime=%d" % a.runtime, "--output-format=json",
                        "--output=" + out] + WORKLOADS[workload], check=True)
        after = data_size(store)
        with open(out) as f:
            job = json.load(f)["jobs"][0]
        side = job["write"] if "write" in workload else job["read"]
        h.shutdown()
        return side["bw_bytes"] / M, (before[0] - after[0]) / M
    finally:
        p.terminate()
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--fill-mib", type=int, default=1024)
    ap.add_argument("--runtime", type=int, default=8)
    ap.add_argument("--smoke", action="store_true", help="one short run of each (checks the script)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--key", dest="keys", action="append", default=[],
                    help="an extra plugin key for every run, e.g. recycle-tranquility=0")
    a = ap.parse_args()
    if a.smoke:
        a.reps, a.fill_mib, a.runtime = 1, 128, 2
    a.nbdkit = os.environ.get("NBDKIT", "nbdkit")
    a.plugin = os.environ.get("CASDISK_PLUGIN")
    if not a.plugin:
        raise SystemExit("set CASDISK_PLUGIN to the plugin's .so")
    work = a.workdir or tempfile.mkdtemp(prefix="casdisk-recycler-bench-")
    results = {}
    try:
        for w in WORKLOADS:
            for r in range(a.reps):
                order = ("with", "without") if r % 2 == 0 else ("without", "with")
                for mode in order:
                    bw, shrunk = one_run(a, work, mode, w)
                    results.setdefault((w, mode), []).append((bw, shrunk))
                    print("%-14s %-8s rep %d: %8.1f MiB/s, data file size change %+6.0f MiB "
                          "during the run" % (w, mode, r + 1, bw, -shrunk), flush=True)
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print("| workload | with recycler MiB/s | without MiB/s | ratio | shrunk during the run (MiB) |")
    print("|---|---|---|---|---|")
    worst = None
    for w in WORKLOADS:
        wi = statistics.median(x[0] for x in results[(w, "with")])
        wo = statistics.median(x[0] for x in results[(w, "without")])
        sh = statistics.median(x[1] for x in results[(w, "with")])
        ratio = wi / wo if wo else 0
        worst = ratio if worst is None else min(worst, ratio)
        shown = "%.0f" % sh if "read" in w else "- (fio writes grow it)"
        print("| %s | %.1f | %.1f | %.2f | %s |" % (w, wi, wo, ratio, shown))
    print("\nrecycler: worst ratio %.2f (target >= 0.80); %d reps, %d MiB of region A, "
          "60%% trimmed, fio for %d s" % (worst, a.reps, a.fill_mib, a.runtime))
    return 0


if __name__ == "__main__":
    sys.exit(main())
