#!/usr/bin/python3
"""Sequential 1 MiB writes through nbdkit with the worker pool off and on.

For each repetition, and within it each kind of data (random, 60%
compressible) and queue depth (1, 4), the runs with workers=1 (off) and
workers=N (on) follow each other, so that both see the same machine.
Each run: a fresh store, fio writes --size bytes sequentially in 1 MiB
requests, the server is stopped.  Reported per run: throughput, mean and
p99 completion latency, the server's CPU per GiB written, and how many
cores the rest of the machine kept busy meanwhile (the helpers can only
use idle cores).  Medians per configuration at the end.

    top_builddir=build /usr/bin/python3 bench/workers.py [--reps 3] [--size 1024]
"""

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 1 << 20


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def machine_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / CLK_TCK


def children_cpu():
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return c.ru_utime + c.ru_stime


def run_one(args, plugin, tmp, data, qd, workers):
    d = tempfile.mkdtemp(prefix="run-", dir=tmp)
    sock, pidf = os.path.join(d, "sock"), os.path.join(d, "pid")
    argv = [args.nbdkit, "-f", "-U", sock, "-P", pidf, plugin,
            "store=" + os.path.join(d, "store"), "size=%dM" % (args.size + 64),
            "workers=%d" % workers]
    log = open(os.path.join(d, "server.log"), "wb")
    srv = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (os.path.exists(pidf) and os.path.getsize(pidf) > 0):
            if srv.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("nbdkit did not start: see %s" % d)
            time.sleep(0.05)
        fio = ["fio", "--name=seq", "--ioengine=nbd", "--uri=nbd+unix:///?socket=" + sock,
               "--rw=write", "--bs=1M", "--iodepth=%d" % qd, "--size=%dM" % args.size,
               "--refill_buffers", "--direct=0", "--output-format=json"]
        if data == "compressible":
            fio.append("--buffer_compress_percentage=60")
        c0, m0, f0, t0 = proc_cpu(srv.pid), machine_busy(), children_cpu(), time.monotonic()
        r = subprocess.run(fio, capture_output=True, text=True, timeout=600)
        t = time.monotonic() - t0
        srv_cpu, fio_cpu = proc_cpu(srv.pid) - c0, children_cpu() - f0
        others = max(0.0, machine_busy() - m0 - srv_cpu - fio_cpu) / t
        if r.returncode:
            raise RuntimeError("fio failed: " + r.stderr[-400:])
        job = json.loads(r.stdout[r.stdout.index("{"):])["jobs"][0]["write"]
        clat = job["clat_ns"]
        return {
            "data": data, "qd": qd, "workers": workers,
            "mib_s": job["bw_bytes"] / MiB,
            "clat_mean_ms": clat["mean"] / 1e6,
            "clat_p99_ms": clat["percentile"]["99.000000"] / 1e6,
            "server_cpu_s_per_gib": srv_cpu / (args.size / 1024.0),
            "fio_cpu_s": fio_cpu, "others_busy_cores": others, "wall_s": t,
        }
    finally:
        if srv.poll() is None:
            srv.send_signal(signal.SIGTERM)
            try:
                srv.wait(60)
            except subprocess.TimeoutExpired:
                srv.kill()
                srv.wait(10)
        log.close()
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--size", type=int, default=1024, help="MiB written per run")
    ap.add_argument("--workers", type=int, default=2, help="the 'on' setting")
    ap.add_argument("--qd", default="1,4")
    ap.add_argument("--data", default="random,compressible")
    ap.add_argument("--tmp", default="/var/tmp")
    ap.add_argument("--json", help="write every run here")
    ap.add_argument("--nbdkit", default="nbdkit")
    args = ap.parse_args()
    top = os.path.abspath(os.environ.get("top_builddir", "build"))
    plugin = os.path.join(top, "plugin", ".libs", "nbdkit-casdisk-plugin.so")
    if not os.path.exists(plugin):
        sys.exit("no plugin at %s (set top_builddir)" % plugin)
    tmp = tempfile.mkdtemp(prefix="casdisk-workers-", dir=args.tmp)
    runs = []
    try:
        for rep in range(args.reps):
            for data in args.data.split(","):
                for qd in [int(q) for q in args.qd.split(",")]:
                    for w in (1, args.workers):
                        r = run_one(args, plugin, tmp, data, qd, w)
                        r["rep"] = rep + 1
                        runs.append(r)
                        print("rep %d %-12s qd%d workers=%d: %6.1f MiB/s  clat mean %6.2f ms"
                              "  p99 %6.2f ms  server %.2f cpu-s/GiB  others busy %.2f cores"
                              % (rep + 1, data, qd, w, r["mib_s"], r["clat_mean_ms"],
                                 r["clat_p99_ms"], r["server_cpu_s_per_gib"],
                                 r["others_busy_cores"]), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)
    print("\n| data | QD | workers | MiB/s (median; each run) | clat mean ms | p99 ms |"
          " server cpu-s/GiB | others busy (cores) |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    keys = []
    for r in runs:
        k = (r["data"], r["qd"], r["workers"])
        if k not in keys:
            keys.append(k)
    for k in keys:
        rs = [r for r in runs if (r["data"], r["qd"], r["workers"]) == k]

        def med(f):
            return statistics.median(r[f] for r in rs)
        print("| %s | %d | %d | %.0f (%s) | %.2f | %.2f | %.2f | %.2f |" % (
            k[0], k[1], k[2], med("mib_s"), ", ".join("%.0f" % r["mib_s"] for r in rs),
            med("clat_mean_ms"), med("clat_p99_ms"), med("server_cpu_s_per_gib"),
            med("others_busy_cores")))


if __name__ == "__main__":
    main()
