#!/usr/bin/python3
"""Random writes with a flush every N requests, N in flight, over NBD.

    flushload.py --uri URI --bs 4096 --qd 32 --flush-every 64 \
                 --region BYTES --runtime SECONDS

bench/casbench.py runs it for the workloads that flush every N writes:
fio 3.33's --fsync=N with --iodepth above 1 issues a flush for nearly every
free queue slot once the write count reaches a multiple of N (at QD32 and
--fsync=64 it sent 2229 flushes for 6400 writes, the server counting the
same), so it cannot express "a flush every 64 requests".  Here the flush
is queued after every N-th write, with the other requests still in flight,
as a guest's file system does; it is counted in the time, as is the final
flush.  Every write carries unique data (random bytes with the request's
sequence number stamped in them), at a random offset aligned to its size,
uniformly over the region.  Prints one JSON object (latencies in ns).
"""

import argparse
import json
import os
import random
import resource
import struct
import sys
import time

import nbd


def pct(sorted_v, p):
    if not sorted_v:
        return None
    return sorted_v[min(len(sorted_v) - 1, int(p / 100.0 * len(sorted_v)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", required=True)
    ap.add_argument("--bs", type=int, required=True)
    ap.add_argument("--qd", type=int, required=True)
    ap.add_argument("--flush-every", type=int, required=True)
    ap.add_argument("--region", type=int, required=True)
    ap.add_argument("--runtime", type=float, required=True)
    ap.add_argument("--seed", type=int, default=12)
    a = ap.parse_args()
    h = nbd.NBD()
    h.connect_uri(a.uri)
    if not h.can_flush():
        sys.exit("flushload: the server does not support flush")
    rnd = random.Random(a.seed)
    nblk = a.region // a.bs
    base = [bytearray(os.urandom(a.bs)) for _ in range(256)]
    lat_w, lat_f = [], []
    st = {"inflight": 0, "errors": 0}

    def done(lat, t0, err):
        lat.append(time.monotonic() - t0)
        st["inflight"] -= 1
        if err.value:
            st["errors"] += 1
        return 1

    writes = 0
    flushed_at = 0
    c0 = resource.getrusage(resource.RUSAGE_SELF)
    t_start = time.monotonic()
    deadline = t_start + a.runtime
    while time.monotonic() < deadline:
        while st["inflight"] < a.qd:
            t0 = time.monotonic()
            if writes and writes % a.flush_every == 0 and flushed_at != writes:
                flushed_at = writes
                h.aio_flush(completion=lambda e, t0=t0: done(lat_f, t0, e))
            else:
                b = base[writes & 255]
                struct.pack_into("<QQ", b, 0, writes, a.seed)
                buf = nbd.Buffer.from_bytearray(b)
                h.aio_pwrite(buf, rnd.randrange(nblk) * a.bs,
                             completion=lambda e, t0=t0, buf=buf: done(lat_w, t0, e))
                writes += 1
            st["inflight"] += 1
        h.poll(-1)
    while st["inflight"] > 0:
        h.poll(-1)
    t0 = time.monotonic()
    h.flush()
    lat_f.append(time.monotonic() - t0)
    t_end = time.monotonic()
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    h.shutdown()
    el = t_end - t_start
    lat_w.sort()
    ns = lambda v: None if v is None else v * 1e9
    print(json.dumps({
        "writes": len(lat_w), "flushes": len(lat_f), "errors": st["errors"],
        "io_bytes": len(lat_w) * a.bs, "runtime_ms": round(el * 1000),
        "iops": len(lat_w) / el, "bw_KiBps": len(lat_w) * a.bs / 1024.0 / el,
        "clat_ns_mean": ns(sum(lat_w) / len(lat_w)) if lat_w else None,
        "clat_ns_p50": ns(pct(lat_w, 50)), "clat_ns_p99": ns(pct(lat_w, 99)),
        "clat_ns_p99.9": ns(pct(lat_w, 99.9)),
        "flush_ns_mean": ns(sum(lat_f) / len(lat_f)),
        "end_flush_ms": round((t_end - t0) * 1000, 1),
        "client_cpu_s": round((c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime), 3),
    }))
    if st["errors"]:
        sys.exit("flushload: %d requests failed" % st["errors"])


if __name__ == "__main__":
    main()
