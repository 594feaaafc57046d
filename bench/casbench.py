#!/usr/bin/python3
"""casdisk benchmark driver.  Run it through bench/run.sh.

Three NBD servers side by side, interleaved, on the same file system:
  casdisk  nbdkit + the casdisk plugin, fresh store per run
  qcow2    qemu-nbd on a fresh qcow2 image per run
  file     nbdkit file on a fresh raw sparse file per run
fio (nbd engine) drives the throughput/latency workloads; a libnbd
client drives the space workload.  See bench/README.md.
"""

import argparse
import array
import datetime
import hashlib
import json
import os
import random
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRC = os.path.dirname(HERE)
TOP_BUILD = os.path.abspath(os.environ.get("top_builddir") or TOP_SRC)
MiB = 1 << 20
GiB = 1 << 30
CLK_TCK = os.sysconf("SC_CLK_TCK")
BACKENDS = ["casdisk", "qcow2", "file"]
# --casdisk-direct adds this one after "casdisk": the same plugin with
# direct-io=true (the data file read and written with O_DIRECT and libaio).
DIRECT = "casdisk-direct"
# --casdisk-direct-cache SIZE adds this one: direct-io=true cache=SIZE.
DCACHE = "casdisk-dcache"
CASDISKS = ("casdisk", DIRECT, DCACHE)

# name -> (fio options, needs a prefill, description)
WORKLOADS = {
    "seq-write-1M-qd4": (
        dict(rw="write", bs="1M", iodepth=4), False,
        "sequential write, 1 MiB requests, queue depth 4, unique random data"),
    "seq-read-1M-qd4": (
        dict(rw="read", bs="1M", iodepth=4), True,
        "sequential read, 1 MiB, QD4, of a prefilled region"),
    "rand-write-4K-qd16": (
        dict(rw="randwrite", bs="4k", iodepth=16), False,
        "random write, 4 KiB, QD16, unique random data"),
    "rand-read-4K-qd16": (
        dict(rw="randread", bs="4k", iodepth=16), True,
        "random read, 4 KiB, QD16, of a prefilled region"),
    "rand-write-64K-qd16": (
        dict(rw="randwrite", bs="64k", iodepth=16), False,
        "random write, 64 KiB, QD16, unique random data"),
    "dedup90-write-64K-qd16": (
        dict(rw="randwrite", bs="64k", iodepth=16, dedupe_percentage=90), False,
        "random write, 64 KiB, QD16, 90% of the buffers repeat an earlier one"),
    "compress60-write-64K-qd16": (
        dict(rw="randwrite", bs="64k", iodepth=16, buffer_compress_percentage=60), False,
        "random write, 64 KiB, QD16, buffers 60% compressible"),
    "rand-write-4K-qd16-2conn": (
        dict(rw="randwrite", bs="4k", iodepth=16, numjobs=2), False,
        "random write, 4 KiB, QD16 on each of 2 connections (numjobs=2)"),
}

MODES = {
    # reps, fio runtime (s), disk size, write region, read (prefill) region,
    # space chunk, seconds to wait for the recycler, time budget (s)
    # memory_mib: unique data for casdisk's memory measurement (bench/engine);
    # reopen_mib: data written before the simulated crash of the reopen
    # measurement (a 100 GiB disk); clone_mib: size of the clone workload's
    # file-system image (0 = skip).
    "smoke": dict(reps=1, runtime=1, disk=256 * MiB, wregion=128 * MiB,
                  rregion=32 * MiB, chunk=4 * MiB, gc_wait=3, budget=120,
                  memory_mib=1024, reopen_mib=64, clone_mib=0,
                  workloads=["seq-write-1M-qd4", "rand-read-4K-qd16"]),
    "quick": dict(reps=1, runtime=2, disk=1 * GiB, wregion=1 * GiB,
                  rregion=256 * MiB, chunk=32 * MiB, gc_wait=10, budget=900,
                  memory_mib=2048, reopen_mib=512, clone_mib=400,
                  workloads=list(WORKLOADS)),
    "full": dict(reps=3, runtime=5, disk=4 * GiB, wregion=4 * GiB,
                 rregion=512 * MiB, chunk=64 * MiB, gc_wait=10, budget=2700,
                 memory_mib=65536, reopen_mib=4096, clone_mib=600,
                 workloads=list(WORKLOADS)),
}

TARGETS_DOC = "bench/README.md"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def first_line(cmd):
    try:
        r = sh(cmd, timeout=20)
        out = (r.stdout or r.stderr).strip().splitlines()
        return out[0] if out else "?"
    except Exception as e:  # noqa: BLE001
        return "? (%s)" % e


def proc_cpu_seconds(pid):
    """user+sys CPU seconds of a process (all its threads) from /proc."""
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def sys_cpu_busy():
    """Machine-wide busy CPU seconds (all cores) from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    total = sum(v[:8])
    idle = v[3] + v[4]
    return (total - idle) / CLK_TCK


def our_cpu():
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def space_of(path):
    """(allocated, apparent) bytes of a file or of all files under a dir."""
    files = []
    if os.path.isdir(path):
        for d, _, fs in os.walk(path):
            files += [os.path.join(d, f) for f in fs]
    else:
        files = [path]
    alloc = app = 0
    for f in files:
        st = os.lstat(f)
        alloc += st.st_blocks * 512
        app += st.st_size
    return alloc, app


def top_processes(n=6):
    r = sh(["ps", "-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"], timeout=10)
    return [" ".join(l.split()) for l in r.stdout.splitlines()[:n]]


class Server:
    """One NBD server process on a unix socket."""

    def __init__(self, name, argv, sock, pidfile):
        self.name, self.argv, self.sock, self.pidfile = name, argv, sock, pidfile
        self.uri = "nbd+unix:///?socket=" + sock
        self.proc = None

    def start(self, logf, timeout=30):
        self.logf = logf
        for p in (self.sock, self.pidfile):
            if os.path.exists(p):
                os.unlink(p)
        with open(logf, "ab") as lf:
            self.proc = subprocess.Popen(self.argv, stdout=lf, stderr=lf,
                                         stdin=subprocess.DEVNULL)
        RUNNING.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s: %s" % (
                    self.name, self.proc.returncode, tail(logf)))
            # nbdkit and qemu-nbd write the pid file once they listen.
            if os.path.exists(self.pidfile) and os.path.getsize(self.pidfile) > 0:
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("%s did not start in %ds" % (self.name, timeout))

    def cpu(self):
        return proc_cpu_seconds(self.proc.pid)

    def stop(self, timeout=60):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log("WARNING: %s (pid %d) ignored SIGTERM for %ds; killing it"
                    % (self.name, self.proc.pid, timeout))
                self.proc.kill()
                self.proc.wait(10)
        if self in RUNNING:
            RUNNING.remove(self)
        self.proc = None


RUNNING = []


def tail(path, n=5):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(f.read().strip().splitlines()[-n:])
    except OSError:
        return ""


class Bench:
    def __init__(self, args, mode):
        self.args = args
        self.mode = mode
        self.m = dict(MODES[mode])
        if args.reps:
            self.m["reps"] = args.reps
        if args.runtime:
            self.m["runtime"] = args.runtime
        if args.workloads:
            self.m["workloads"] = args.workloads.split(",")
        base = args.tmpdir or "/var/tmp"
        self.tmp = tempfile.mkdtemp(prefix="casdisk-bench.", dir=base)
        self.deadline = time.monotonic() + self.m["budget"]
        self.qcow2_cache = "none"
        self.qcow2_note = ""
        self.fio_lines = []
        self.runs = []
        self.seq = 0
        self.warnings = []
        plugin = os.environ.get("CASDISK_PLUGIN") or os.path.join(
            TOP_BUILD, "plugin", ".libs", "nbdkit-casdisk-plugin.so")
        tool = os.environ.get("CASDISK_TOOL") or os.path.join(TOP_BUILD, "tools", "casdisk")
        if not os.path.exists(plugin):
            raise SystemExit("casdisk plugin not found: %s (run make)" % plugin)
        # Snapshot the plugin: a rebuild during the run must not change it.
        self.plugin = os.path.join(self.tmp, "nbdkit-casdisk-plugin.so")
        shutil.copy2(plugin, self.plugin)
        self.plugin_src = plugin
        self.tool = None
        if os.path.exists(tool):
            self.tool = os.path.join(self.tmp, "casdisk")
            shutil.copy2(tool, self.tool)
        engine = os.environ.get("CASDISK_ENGINE_BENCH") or os.path.join(TOP_BUILD, "bench", "engine")
        self.engine = None
        if os.path.exists(engine):
            self.engine = os.path.join(self.tmp, "engine")
            shutil.copy2(engine, self.engine)
        with open(plugin, "rb") as f:
            blob = f.read()
        self.plugin_sha = hashlib.sha256(blob).hexdigest()[:16]
        if b"__asan_init" in blob or b"__ubsan_handle" in blob:
            shutil.rmtree(self.tmp, ignore_errors=True)
            log("%s: the plugin is built with sanitizers; benchmark an ordinary build"
                % ("SKIP" if mode == "smoke" else "ERROR"))
            sys.exit(77 if mode == "smoke" else 1)

    # ---- servers ----
    def server(self, backend, d, size, gc_delay=None):
        os.makedirs(d, exist_ok=True)
        sock = os.path.join(d, "sock")
        pidfile = os.path.join(d, "pid")
        if backend in CASDISKS:
            argv = ["nbdkit", "-f", "-U", sock, "-P", pidfile,
                    self.plugin, "store=" + os.path.join(d, "store"),
                    "size=%d" % size]
            if backend in (DIRECT, DCACHE):
                argv.append("direct-io=true")
            if backend == DCACHE:
                argv.append("cache=" + self.args.casdisk_direct_cache)
            if self.args.block_size:
                argv.append("block-size=" + self.args.block_size)
            if gc_delay is not None:
                argv.append("gc-delay=%d" % gc_delay)
        elif backend == "qcow2":
            img = os.path.join(d, "disk.qcow2")
            if not os.path.exists(img):
                r = sh(["qemu-img", "create", "-q", "-f", "qcow2", img, str(size)], timeout=60)
                if r.returncode:
                    raise RuntimeError("qemu-img create: " + r.stderr)
            # -t: keep serving after a client disconnects (prefill, then run);
            # -e 4: allow the 2-connection workload (qemu-nbd's default is 1).
            argv = ["qemu-nbd", "--cache=" + self.qcow2_cache, "--discard=unmap",
                    "--detect-zeroes=unmap", "-f", "qcow2", "-t", "-e", "4",
                    "--pid-file", pidfile, "-k", sock, img]
        else:
            raw = os.path.join(d, "disk.raw")
            if not os.path.exists(raw):
                with open(raw, "wb") as f:
                    f.truncate(size)
            argv = ["nbdkit", "-f", "-U", sock, "-P", pidfile,
                    "file", raw]
        return Server(backend, argv, sock, pidfile).start(os.path.join(d, "server.log"))

    def storage_path(self, backend, d):
        return {"casdisk": os.path.join(d, "store"), DIRECT: os.path.join(d, "store"),
                DCACHE: os.path.join(d, "store"),
                "qcow2": os.path.join(d, "disk.qcow2"),
                "file": os.path.join(d, "disk.raw")}[backend]

    def probe_qcow2(self):
        d = os.path.join(self.tmp, "probe-qcow2")
        try:
            s = self.server("qcow2", d, 64 * MiB)
            s.stop()
        except RuntimeError as e:
            self.qcow2_cache = "writeback"
            self.qcow2_note = ("qemu-nbd --cache=none failed on this file system "
                               "(%s); fell back to --cache=writeback" % e)
            log("NOTE: " + self.qcow2_note)
            s = self.server("qcow2", d + "2", 64 * MiB)
            s.stop()
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(d + "2", ignore_errors=True)

    # ---- fio ----
    def fio(self, uri, name, opts, size, time_based, outfile):
        argv = ["fio", "--name=" + name, "--ioengine=nbd", "--uri=" + uri,
                "--size=%d" % size, "--refill_buffers", "--direct=0",
                "--group_reporting", "--output-format=json"]
        for k, v in opts.items():
            argv.append("--%s=%s" % (k, v))
        if time_based:
            argv += ["--time_based", "--runtime=%d" % self.m["runtime"]]
        budget = (self.m["runtime"] + 120) if time_based else 600
        r = sh(argv, timeout=budget)
        with open(outfile, "w") as f:
            f.write(r.stdout)
        if r.returncode:
            raise RuntimeError("fio %s failed (%d): %s %s" % (
                name, r.returncode, r.stderr.strip()[-400:], r.stdout.strip()[-400:]))
        out = r.stdout
        j = json.loads(out[out.index("{"):])
        return argv, j

    def run_one(self, wl, backend, rep):
        opts, prefill, _ = WORKLOADS[wl]
        self.seq += 1
        d = os.path.join(self.tmp, "%03d-%s-%s-r%d" % (self.seq, wl, backend, rep))
        size = self.m["rregion"] if prefill else self.m["wregion"]
        # Start with no dirty pages of the previous run: their writeback
        # would otherwise slow whichever backend runs next (most of all
        # those that bypass the page cache: qcow2 cache=none, direct-io).
        os.sync()
        ts = time.monotonic()
        srv = self.server(backend, d, self.m["disk"])
        try:
            tp = time.monotonic()
            if prefill:
                self.fio(srv.uri, "prefill", dict(rw="write", bs="1M", iodepth=4),
                         size, False, os.path.join(d, "prefill.json"))
            c0 = srv.cpu()
            t0 = time.monotonic()
            argv, j = self.fio(srv.uri, wl, opts, size, True, os.path.join(d, "fio.json"))
            t1 = time.monotonic()
            c1 = srv.cpu()
        finally:
            srv.stop()
        t2 = time.monotonic()
        job = j["jobs"][0]
        if job.get("error"):
            raise RuntimeError("fio reported error %s for %s/%s" % (job["error"], wl, backend))
        side = "read" if "read" in opts["rw"] else "write"
        s = job[side]
        pct = s["clat_ns"].get("percentile", {})
        fio_line = {
            "workload": wl, "backend": backend, "rep": rep,
            "fio_version": j.get("fio version"), "jobname": job["jobname"],
            "rw": opts["rw"], "bs": opts["bs"], "iodepth": opts["iodepth"],
            "numjobs": opts.get("numjobs", 1), "side": side,
            "io_bytes": s["io_bytes"], "bw_KiBps": s["bw"], "iops": s["iops"],
            "runtime_ms": s["runtime"], "clat_ns_mean": s["clat_ns"]["mean"],
            "clat_ns_p50": pct.get("50.000000"), "clat_ns_p99": pct.get("99.000000"),
            "clat_ns_p99.9": pct.get("99.900000"),
            "usr_cpu": job["usr_cpu"], "sys_cpu": job["sys_cpu"],
            "error": job["error"],
        }
        self.fio_lines.append(fio_line)
        gib = s["io_bytes"] / GiB
        run = {
            "workload": wl, "backend": backend, "rep": rep,
            "mib_s": s["bw"] / 1024.0, "iops": s["iops"],
            "p99_us": (pct.get("99.000000") or 0) / 1000.0,
            "server_cpu_s": c1 - c0,
            "cpu_s_per_gib": (c1 - c0) / gib if gib > 0 else None,
            "io_bytes": s["io_bytes"], "start_s": round(tp - ts, 2),
            "prefill_s": round(t0 - tp, 2), "fio_s": round(t1 - t0, 2), "stop_s": round(t2 - t1, 2),
            "fio_cmd": " ".join(shlex.quote(a) for a in argv),
        }
        self.runs.append(run)
        log("  %-26s %-7s rep %d: %8.1f MiB/s %9.0f IOPS p99 %8.0f us  cpu %.2f s/GiB"
            "  [start %.1f prefill %.1f fio %.1f stop %.1f s]" % (
                wl, backend, rep, run["mib_s"], run["iops"], run["p99_us"],
                run["cpu_s_per_gib"] or 0, run["start_s"], run["prefill_s"],
                run["fio_s"], run["stop_s"]))
        if not self.args.keep:
            shutil.rmtree(d, ignore_errors=True)
        run["cleanup_s"] = round(time.monotonic() - t2, 2)

    # ---- space workload ----
    # The space workload's mixes: COPIES identical chunks of random data,
    # then one chunk each of text, zeroes and unique random data.  The
    # targets are judged on the VM-host mix (what six VMs cloned from one
    # image share, next to data of their own); the balanced mix (two copies)
    # is reported too: it cannot reach 3x at all (its bound is computed).
    SPACE_MIXES = (("VM-host mix", 6), ("balanced mix", 2))

    def space_data(self, copies):
        c = self.m["chunk"]
        dup = os.urandom(c)   # same bytes for every backend within a run
        uniq = os.urandom(c)
        rnd = random.Random(20260505)
        # Compressible text: words from a fixed vocabulary with zipf-like
        # frequencies (a 65536-entry lookup table indexed by 16-bit random
        # numbers), one word in 12 ends a line.
        letters = "etaoinshrdlucmfwypvbgkjqxz"
        vocab = ["".join(rnd.choices(letters, k=rnd.randint(2, 9))) for _ in range(4000)]
        total = sum(1.0 / (i + 1) for i in range(len(vocab)))
        table, acc, w = [], 0.0, 0
        for k in range(65536):
            while w < len(vocab) - 1 and acc + 1.0 / (w + 1) < (k + 0.5) / 65536 * total:
                acc += 1.0 / (w + 1)
                w += 1
            table.append(vocab[w] + (".\n" if k % 12 == 11 else " "))
        idx = array.array("H", rnd.randbytes(2 * (c // 5)))
        text = "".join(map(table.__getitem__, idx)).encode()[:c]
        if len(text) < c:
            raise RuntimeError("space: generated text too short")
        zero = bytes(c)
        plan = [("random copy %d" % (i + 1), i * c, dup) for i in range(copies)]
        plan += [("text", copies * c, text), ("zeroes", (copies + 1) * c, zero),
                 ("unique random", (copies + 2) * c, uniq)]
        r = subprocess.run(["zstd", "-3", "-c", "-q"], input=text, capture_output=True, timeout=60)
        ratio = len(text) / len(r.stdout) if r.returncode == 0 and r.stdout else None
        # What perfect dedup + zstd -3 of the text as one stream would store
        # (no metadata, no per-block overhead): a bound, not a measurement.
        ideal = 2 * c + len(r.stdout) if ratio else None
        return plan, ratio, ideal

    def space(self, mix, copies):
        import nbd  # python3-libnbd
        tg = time.monotonic()
        plan, text_ratio, ideal = self.space_data(copies)
        log("  space (%s): generated the data in %.1f s" % (mix, time.monotonic() - tg))
        c = self.m["chunk"]
        step = 1 * MiB
        written = (copies + 3) * c
        res = {"mix": mix, "copies": copies, "chunk_bytes": c, "written_bytes": written,
               "layout": [(n, off, len(b)) for n, off, b in plan],
               "text_zstd3_ratio": text_ratio, "ideal_dedup_zstd_bytes": ideal, "trim": "every other 1 MiB (even MiB) of all written ranges",
               "gc_delay": 2, "gc_wait_s": self.m["gc_wait"], "backends": {}}
        dirs = {b: os.path.join(self.tmp, "space-" + b) for b in BACKENDS}
        size = max(self.m["disk"], (copies + 4) * c)
        # Phase 1: write the mix, flush, stop.
        for b in BACKENDS:
            srv = self.server(b, dirs[b], size, gc_delay=2)
            try:
                h = nbd.NBD()
                h.connect_uri(srv.uri)
                t0 = time.monotonic()
                for _, off, buf in plan:
                    mv = memoryview(buf)
                    for i in range(0, len(buf), step):
                        h.pwrite(bytes(mv[i:i + step]), off + i)
                h.flush()
                wt = time.monotonic() - t0
                h.shutdown()
                del h
            finally:
                srv.stop()
            alloc, app = space_of(self.storage_path(b, dirs[b]))
            res["backends"][b] = {"after_write": {"allocated": alloc, "apparent": app,
                                                  "write_s": wt}}
            if b in CASDISKS:
                res["backends"][b]["after_write"]["info"] = self.cas_info(dirs[b])
            log("  space %-7s after write: allocated %d apparent %d" % (b, alloc, app))
        # Phase 2: trim half, flush, wait (recycler), stop.
        for b in BACKENDS:
            srv = self.server(b, dirs[b], size, gc_delay=2)
            try:
                h = nbd.NBD()
                h.connect_uri(srv.uri)
                trimmed = 0
                for off in range(0, written, 2 * step):
                    h.trim(step, off)
                    trimmed += step
                h.flush()
                # Sanity: an untrimmed MiB of each range reads back intact.
                for name, off, buf in plan:
                    got = h.pread(step, off + step)
                    if got != buf[step:2 * step]:
                        raise RuntimeError("space: %s read back wrong data in %s" % (b, name))
                h.shutdown()
                del h
                if b in CASDISKS:
                    time.sleep(self.m["gc_wait"])
            finally:
                srv.stop()
            alloc, app = space_of(self.storage_path(b, dirs[b]))
            res["backends"][b]["after_trim"] = {"allocated": alloc, "apparent": app,
                                                "trimmed_bytes": trimmed}
            if b in CASDISKS:
                res["backends"][b]["after_trim"]["info"] = self.cas_info(dirs[b])
            log("  space %-7s after trim:  allocated %d apparent %d" % (b, alloc, app))
        if not self.args.keep:
            for d in dirs.values():
                shutil.rmtree(d, ignore_errors=True)
        return res

    def cas_info(self, d):
        if not self.tool:
            return None
        try:
            r = sh([self.tool, "info", os.path.join(d, "store"), "--json"], timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            return {"error": str(e)}
        if r.returncode:
            return {"error": r.stderr.strip()}
        try:
            return json.loads(r.stdout)["store"]
        except ValueError:
            return {"error": "unparsable: " + r.stdout[:200]}

    # ---- casdisk alone: memory, reopen after a crash (bench/engine) ----
    def engine_run(self, args, pattern, timeout):
        if not self.engine:
            return {"error": "bench/engine not built (make bench/engine)"}
        argv = [self.engine, "-t", self.tmp] + args
        try:
            r = sh(argv, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": "timed out after %d s" % timeout, "cmd": " ".join(argv)}
        m = re.search(pattern, r.stdout)
        if r.returncode or not m:
            return {"error": (r.stderr or r.stdout).strip()[-300:], "cmd": " ".join(argv)}
        d = {k: float(v) for k, v in m.groupdict().items()}
        d["line"] = r.stdout.strip()
        d["cmd"] = "bench/engine " + " ".join(args)
        return d

    def casdisk_alone(self):
        res = {}
        log("  casdisk memory: %d MiB of unique blocks" % self.m["memory_mib"])
        res["memory"] = self.engine_run(
            ["-s", str(self.m["memory_mib"]), "memory"],
            r"memory: (?P<gib>[\d.]+) GiB unique in (?P<blocks>\d+) blocks.*: "
            r"(?P<mib_per_gib>[\d.]+) MiB per GiB unique, (?P<bytes_per_block>[\d.]+) bytes per block; "
            r"marginal (?P<marginal_mib_per_gib>-?[\d.]+) MiB per GiB, (?P<marginal_bytes>-?[\d.]+) bytes",
            timeout=1200)
        log("  casdisk reopen after a crash: %d MiB written to a 100 GiB disk" % self.m["reopen_mib"])
        res["reopen"] = self.engine_run(
            ["-n", str(self.m["reopen_mib"]), "reopen"],
            r"journals (?P<journal_mib>[\d.]+) MiB.*took (?P<open_s>[\d.]+) s, "
            r"(?P<s_per_100gib>[\d.]+) s per 100 GiB",
            timeout=600)
        return res

    # ---- clone workload ----
    def clone(self):
        """A file-system image written into 4 disks, each with its own 8 MiB
        of differences: stored bytes per disk for casdisk (one store, 4
        disks), qcow2 as 4 independent images, qcow2 as a golden image with
        4 overlays (qemu-img convert -B), and 4 raw files."""
        size = self.m["clone_mib"] * MiB
        tree = os.environ.get("BENCH_TREE", "/usr/share/doc")
        d = os.path.join(self.tmp, "clone")
        os.makedirs(d, exist_ok=True)
        base = os.path.join(d, "base.raw")
        t0 = time.monotonic()
        r = sh(["mke2fs", "-q", "-F", "-t", "ext4", "-d", tree, base, "%dM" % self.m["clone_mib"]],
               timeout=300)
        if r.returncode:
            return {"error": "mke2fs -d %s: %s" % (tree, r.stderr.strip()[-300:])}
        rng = random.Random(42)
        variants, diffs = [], []
        for i in range(4):
            v = os.path.join(d, "v%d.raw" % i)
            sh(["cp", "--sparse=always", base, v], timeout=120, check=True)
            diff = rng.randbytes(8 * MiB)
            dpath = os.path.join(d, "diff%d.bin" % i)
            with open(dpath, "wb") as f:
                f.write(diff)
            with open(v, "r+b") as f:
                f.seek((64 + 48 * i) * MiB)
                f.write(diff)
            variants.append(v)
            diffs.append((dpath, (64 + 48 * i) * MiB))
        res = {"tree": tree, "image_bytes": size, "image_allocated": space_of(base)[0],
               "difference_bytes_per_disk": 8 * MiB, "disks": 4, "backends": {}}
        log("  clone: image of %s, %d MiB (%.1f s)" % (tree, size // MiB, time.monotonic() - t0))
        # casdisk: one store, disk0..disk3, written through NBD with nbdcopy.
        cd = os.path.join(d, "casdisk")
        srv = self.server("casdisk", cd, size)
        srv.stop()
        if not self.tool:
            return {"error": "the casdisk tool is needed to add disks"}
        for i in range(1, 4):
            sh([self.tool, "disk", "add", os.path.join(cd, "store"), "disk%d" % i, str(size)],
               timeout=60, check=True)
        srv = self.server("casdisk", cd, size)
        try:
            t0 = time.monotonic()
            for i, v in enumerate(variants):
                uri = "nbd+unix:///disk%d?socket=%s" % (i, srv.sock)
                sh(["nbdcopy", v, uri], timeout=600, check=True)
            wt = time.monotonic() - t0
        finally:
            srv.stop()
        res["backends"]["casdisk copies"] = {"allocated": space_of(os.path.join(cd, "store"))[0],
                                      "write_s": round(wt, 2),
                                      "info": self.cas_info(cd)}
        # casdisk, a golden disk and four clones (casdisk disk clone), each
        # clone given its 8 MiB: what the qcow2 overlays below do.
        gd = os.path.join(d, "casdisk-clones")
        srv = self.server("casdisk", gd, size)
        try:
            sh(["nbdcopy", base, srv.uri], timeout=600, check=True)
        finally:
            srv.stop()
        st = os.path.join(gd, "store")
        t0 = time.monotonic()
        for i in range(4):
            sh([self.tool, "disk", "clone", st, "disk0", "vm%d" % i], timeout=120, check=True)
        clone_s = time.monotonic() - t0
        import nbd  # python3-libnbd
        srv = self.server("casdisk", gd, size)
        try:
            for i, (dpath, off) in enumerate(diffs):
                h = nbd.NBD()
                h.set_export_name("vm%d" % i)
                h.connect_unix(srv.sock)
                with open(dpath, "rb") as f:
                    data = f.read()
                for k in range(0, len(data), MiB):
                    h.pwrite(data[k:k + MiB], off + k)
                h.flush()
                h.shutdown()
        finally:
            srv.stop()
        res["backends"]["casdisk golden + clones"] = {"allocated": space_of(st)[0],
                                                      "clone_s": round(clone_s, 2)}
        # qcow2, independent images.
        alloc = 0
        for i, v in enumerate(variants):
            out = os.path.join(d, "c%d.qcow2" % i)
            sh(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", v, out], timeout=600, check=True)
            alloc += space_of(out)[0]
        res["backends"]["qcow2 copies"] = {"allocated": alloc}
        # qcow2, a golden image and four overlays holding what differs
        # (each overlay gets its 8 MiB written with qemu-io).
        gold = os.path.join(d, "gold.qcow2")
        sh(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", base, gold], timeout=600, check=True)
        alloc = space_of(gold)[0]
        for i, (dpath, off) in enumerate(diffs):
            out = os.path.join(d, "o%d.qcow2" % i)
            sh(["qemu-img", "create", "-q", "-f", "qcow2", "-b", gold, "-F", "qcow2", out],
               timeout=60, check=True)
            sh(["qemu-io", "-f", "qcow2", "-c", "write -s %s %d %d" % (dpath, off, 8 * MiB), out],
               timeout=120, check=True)
            alloc += space_of(out)[0]
        res["backends"]["qcow2 golden + overlays"] = {"allocated": alloc}
        res["backends"]["file"] = {"allocated": sum(space_of(v)[0] for v in variants)}
        for b, x in res["backends"].items():
            x["per_disk"] = x["allocated"] / 4     # the golden disk or image is shared
            log("  clone %-24s %d bytes per disk" % (b, x["per_disk"]))
        if not self.args.keep:
            shutil.rmtree(d, ignore_errors=True)
        return res

    # ---- main ----
    def run(self):
        self.meta = machine_info()
        self.meta.update({
            "mode": self.mode, "command": os.environ.get("CASBENCH_CMD") or
            " ".join(shlex.quote(a) for a in sys.argv),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "tmpdir": self.tmp, "plugin": self.plugin_src, "plugin_sha256_16": self.plugin_sha,
            "git": git_info(), "params": {k: v for k, v in self.m.items()},
            "block_size": self.args.block_size or "default (64K)",
            "direct_cache": self.args.casdisk_direct_cache,
            "loadavg_start": open("/proc/loadavg").read().strip(),
            "top_processes_start": top_processes(),
        })
        busy0, ours0, wall0 = sys_cpu_busy(), our_cpu(), time.monotonic()
        self.probe_qcow2()
        self.meta["qcow2_cache"] = self.qcow2_cache
        self.meta["qcow2_note"] = self.qcow2_note
        for wl in self.m["workloads"]:
            if wl not in WORKLOADS:
                raise SystemExit("unknown workload %s" % wl)
        self.meta["incomplete"] = None
        for wl in self.m["workloads"]:
            for rep in range(1, self.m["reps"] + 1):
                for b in BACKENDS:
                    if time.monotonic() > self.deadline:
                        self.meta["incomplete"] = (
                            "time budget of %d s exceeded before %s rep %d %s; "
                            "the remaining runs were skipped" % (self.m["budget"], wl, rep, b))
                        log("WARNING: " + self.meta["incomplete"])
                        break
                    self.run_one(wl, b, rep)
                if self.meta["incomplete"]:
                    break
            if self.meta["incomplete"]:
                break
        self.space_all = [] if self.args.no_space else [self.space(m, k) for m, k in self.SPACE_MIXES]
        self.space_res = self.space_all[0] if self.space_all else None
        self.alone_res = self.casdisk_alone()
        self.clone_res = None
        if self.m["clone_mib"] and not self.args.no_space:
            try:
                self.clone_res = self.clone()
            except (RuntimeError, subprocess.SubprocessError, OSError) as e:
                self.clone_res = {"error": str(e)}
        busy1, ours1, wall1 = sys_cpu_busy(), our_cpu(), time.monotonic()
        wall = wall1 - wall0
        other = max(0.0, (busy1 - busy0) - (ours1 - ours0))
        self.meta.update({
            "wall_s": round(wall, 1),
            "machine_busy_core_s": round(busy1 - busy0, 1),
            "bench_core_s": round(ours1 - ours0, 1),
            "other_core_s": round(other, 1),
            "other_cores_avg": round(other / wall, 2) if wall > 0 else None,
            "loadavg_end": open("/proc/loadavg").read().strip(),
            "top_processes_end": top_processes(),
        })
        self.meta["other_jobs_running"] = bool(
            self.meta["other_cores_avg"] and self.meta["other_cores_avg"] > 0.15)
        return self.summarize()

    def summarize(self):
        med = {}
        for wl in self.m["workloads"]:
            med[wl] = {}
            for b in BACKENDS:
                rs = [r for r in self.runs if r["workload"] == wl and r["backend"] == b]
                if not rs:
                    continue
                def m(k):
                    v = [r[k] for r in rs if r[k] is not None]
                    return statistics.median(v) if v else None
                med[wl][b] = {"mib_s": m("mib_s"), "iops": m("iops"), "p99_us": m("p99_us"),
                              "cpu_s_per_gib": m("cpu_s_per_gib"), "reps": len(rs)}
        ratios = {}
        for wl, bm in med.items():
            c = bm.get("casdisk")
            ratios[wl] = {}
            for peer in ("qcow2", "file"):
                p = bm.get(peer)
                if not c or not p:
                    continue
                ratios[wl][peer] = {
                    "throughput": c["mib_s"] / p["mib_s"] if p["mib_s"] else None,
                    "p99": c["p99_us"] / p["p99_us"] if p["p99_us"] else None}
        # casdisk with direct-io against the others, when it ran.
        direct = {}
        for wl, bm in med.items():
            for var in (DIRECT, DCACHE):
                c = bm.get(var)
                if not c:
                    continue
                direct.setdefault(var, {})[wl] = {}
                for peer in ("casdisk", "qcow2", "file"):
                    p = bm.get(peer)
                    if p:
                        direct[var][wl][peer] = {
                            "throughput": c["mib_s"] / p["mib_s"] if p["mib_s"] else None,
                            "p99": c["p99_us"] / p["p99_us"] if p["p99_us"] else None}
        self.medians, self.ratios = med, ratios
        self.targets = evaluate_targets(ratios, self.space_res)
        mem = (self.alone_res or {}).get("memory", {})
        if "marginal_mib_per_gib" in mem:
            v = mem["marginal_mib_per_gib"]
            self.targets.append({"target": "memory: casdisk MiB resident per further GiB unique <= 1.0",
                                 "value": round(v, 3), "met": v <= 1.0})
        return {"meta": self.meta, "medians": med, "ratios": ratios, "direct_ratios": direct,
                "space": self.space_res, "space_mixes": self.space_all, "targets": self.targets,
                "casdisk_alone": self.alone_res, "clone": self.clone_res,
                "runs": self.runs, "fio_summary_lines": self.fio_lines}


def ratio_target(ratios, wl, peer, key, op, bound, label):
    r = ratios.get(wl, {}).get(peer, {}).get(key)
    if r is None:
        return {"target": label, "value": None, "met": None}
    met = r >= bound if op == ">=" else r <= bound
    return {"target": label, "value": round(r, 3), "met": met}


def evaluate_targets(ratios, space):
    T = []
    T.append(ratio_target(ratios, "rand-read-4K-qd16", "qcow2", "throughput", ">=", 1.0,
                          "rand read 4K QD16: casdisk/qcow2 >= 1.0"))
    T.append(ratio_target(ratios, "rand-read-4K-qd16", "file", "throughput", ">=", 0.8,
                          "rand read 4K QD16: casdisk/file >= 0.8"))
    T.append(ratio_target(ratios, "seq-read-1M-qd4", "qcow2", "throughput", ">=", 1.0,
                          "seq read 1M: casdisk/qcow2 >= 1.0"))
    T.append(ratio_target(ratios, "rand-write-4K-qd16", "qcow2", "throughput", ">=", 1.0,
                          "rand write 4K unique: casdisk/qcow2 >= 1.0"))
    T.append(ratio_target(ratios, "seq-write-1M-qd4", "qcow2", "throughput", ">=", 0.8,
                          "seq write 1M unique: casdisk/qcow2 >= 0.8"))
    T.append(ratio_target(ratios, "rand-write-64K-qd16", "qcow2", "throughput", ">=", 0.8,
                          "rand write 64K: casdisk/qcow2 >= 0.8"))
    T.append(ratio_target(ratios, "dedup90-write-64K-qd16", "qcow2", "throughput", ">=", 2.0,
                          "dedup-heavy write: casdisk/qcow2 >= 2.0"))
    for wl in ratios:
        T.append(ratio_target(ratios, wl, "qcow2", "p99", "<=", 2.0,
                              "%s: p99 casdisk/qcow2 <= 2.0" % wl))
    if space:
        c = space["backends"]["casdisk"]
        q = space["backends"]["qcow2"]
        def t(label, num, den, bound):
            v = num / den if den else None
            T.append({"target": label, "value": round(v, 3) if v is not None else None,
                      "met": (v >= bound) if v is not None else None})
        t("space after write: qcow2 allocated / casdisk allocated >= 3",
          q["after_write"]["allocated"], c["after_write"]["allocated"], 3.0)
        t("after trim+recycler: qcow2 allocated / casdisk allocated >= 1.8",
          q["after_trim"]["allocated"], c["after_trim"]["allocated"], 1.8)
        t("after trim+recycler: qcow2 apparent / casdisk apparent >= 4",
          q["after_trim"]["apparent"], c["after_trim"]["apparent"], 4.0)
    return T


def git_info():
    r = sh(["git", "-C", TOP_SRC, "rev-parse", "--short", "HEAD"], timeout=20)
    head = r.stdout.strip() or "?"
    r = sh(["git", "-C", TOP_SRC, "status", "--porcelain", "--", "lib", "plugin"], timeout=20)
    return head + (" (lib/ or plugin/ modified)" if r.stdout.strip() else "")


def machine_info():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for l in f:
            if l.startswith("model name"):
                model = l.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for l in f:
            if l.startswith("MemTotal"):
                mem = l.split(":", 1)[1].strip()
    fs = sh(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", "/var/tmp"], timeout=10).stdout.strip()
    libzstd = sh(["dpkg-query", "-W", "-f", "${Version}", "libzstd1"], timeout=10).stdout.strip()
    return {
        "nproc": os.cpu_count(), "cpu_model": model, "mem_total": mem,
        "kernel": os.uname().release, "filesystem": fs,
        "nbdkit": first_line(["nbdkit", "--version"]),
        "qemu": first_line(["qemu-img", "--version"]),
        "fio": first_line(["fio", "--version"]),
        "zstd": first_line(["zstd", "--version"]) + "; libzstd1 " + (libzstd or "?"),
        "python_libnbd": first_line(["/usr/bin/python3", "-c", "import nbd; print(nbd.NBD().get_version())"]),
    }


# ---- report ----
def f1(v, fmt="%.1f"):
    return "-" if v is None else fmt % v


def markdown(res):
    meta, med, ratios = res["meta"], res["medians"], res["ratios"]
    o = []
    title = {"smoke": "smoke run", "quick": "quick run", "full": "full run"}[meta["mode"]]
    o.append("# casdisk benchmark, %s, %s\n" % (title, meta["started"]))
    o.append("Command: `%s`  " % meta["command"])
    o.append("Git: %s; plugin %s (sha256 %s…)  " % (meta["git"], meta["plugin"], meta["plugin_sha256_16"]))
    p = meta["params"]
    o.append("Parameters: %d repetition(s) (median shown), fio runtime %d s per run, disk %d MiB, "
             "write region %d MiB, read region %d MiB (prefilled with 1 MiB sequential writes), "
             "casdisk block size %s, qcow2 cache=%s.\n" % (
                 p["reps"], p["runtime"], p["disk"] // MiB, p["wregion"] // MiB,
                 p["rregion"] // MiB, meta["block_size"], meta["qcow2_cache"]))
    if meta.get("incomplete"):
        o.append("**Incomplete run:** %s.\n" % meta["incomplete"])
    if meta.get("qcow2_note"):
        o.append("**Note:** %s\n" % meta["qcow2_note"])
    o.append("## Machine\n")
    o.append("- nproc %s, %s, %s RAM, kernel %s, /var/tmp on %s" % (
        meta["nproc"], meta["cpu_model"], meta["mem_total"], meta["kernel"], meta["filesystem"]))
    o.append("- %s; %s; %s; zstd: %s; libnbd %s" % (
        meta["nbdkit"], meta["qemu"], meta["fio"], meta["zstd"], meta["python_libnbd"]))
    o.append("- load average at start: %s; at end: %s" % (meta["loadavg_start"], meta["loadavg_end"]))
    o.append("- wall %s s; machine busy %s core-s, of which this benchmark (servers, fio, clients) %s "
             "core-s, other processes %s core-s (%s cores on average)" % (
                 meta["wall_s"], meta["machine_busy_core_s"], meta["bench_core_s"],
                 meta["other_core_s"], meta["other_cores_avg"]))
    if meta["other_jobs_running"]:
        o.append("- **Other jobs were running during this benchmark** (builds/tests on the same "
                 "machine); numbers are noisy. Top processes at start: %s" % "; ".join(meta["top_processes_start"][:4]))
    else:
        o.append("- the machine looked quiet (other processes < 0.15 cores on average)")
    if meta.get("note"):
        o.append("- note: %s" % meta["note"])
    o.append("")
    o.append("## Throughput and latency (medians)\n")
    o.append("Server CPU = user+sys of the server process during the fio run, per GiB moved.\n")
    o.append("| workload | backend | MiB/s | IOPS | p99 clat µs | server CPU s/GiB | reps |")
    o.append("|---|---|---:|---:|---:|---:|---:|")
    for wl, bm in med.items():
        for b in BACKENDS:
            if b in bm:
                x = bm[b]
                o.append("| %s | %s | %s | %s | %s | %s | %d |" % (
                    wl, b, f1(x["mib_s"]), f1(x["iops"], "%.0f"), f1(x["p99_us"], "%.0f"),
                    f1(x["cpu_s_per_gib"], "%.2f"), x["reps"]))
    o.append("")
    o.append("## casdisk relative to its peers\n")
    o.append("Throughput ratio = casdisk MiB/s ÷ peer MiB/s (higher is better for casdisk); "
             "p99 ratio = casdisk p99 ÷ peer p99 (lower is better).\n")
    o.append("| workload | thr vs qcow2 | thr vs file | p99 vs qcow2 | p99 vs file |")
    o.append("|---|---:|---:|---:|---:|")
    for wl, r in ratios.items():
        g = lambda peer, k: f1(r.get(peer, {}).get(k), "%.2f")
        o.append("| %s | %s | %s | %s | %s |" % (wl, g("qcow2", "throughput"), g("file", "throughput"),
                                                 g("qcow2", "p99"), g("file", "p99")))
    o.append("")
    for var, rr in (res.get("direct_ratios") or {}).items():
        o.append("## %s relative to the others\n" % var)
        o.append("%s is the same plugin with `%s`. Throughput ratio = "
                 "its MiB/s ÷ peer MiB/s; p99 ratio = its p99 ÷ peer p99.\n" % (
                     var, "direct-io=true" if var == DIRECT
                     else "direct-io=true cache=%s" % meta.get("direct_cache")))
        o.append("| workload | thr vs casdisk | thr vs qcow2 | thr vs file | p99 vs casdisk | p99 vs qcow2 |")
        o.append("|---|---:|---:|---:|---:|---:|")
        for wl, r in rr.items():
            g = lambda peer, k: f1(r.get(peer, {}).get(k), "%.2f")
            o.append("| %s | %s | %s | %s | %s | %s |" % (
                wl, g("casdisk", "throughput"), g("qcow2", "throughput"), g("file", "throughput"),
                g("casdisk", "p99"), g("qcow2", "p99")))
        o.append("")
    mixes = res.get("space_mixes") or ([res["space"]] if res.get("space") else [])
    for k, sp in enumerate(mixes):
        o.append("## Space: %s (%d identical copies)%s\n" % (
            sp.get("mix", "mix"), sp.get("copies", 2),
            ": the space targets are judged on this one" if k == 0 else ""))
        o.append("Written with a libnbd client in 1 MiB requests, then flush: %s. "
                 "(text compresses %.2fx with zstd -3). Then trimmed %s (%d MiB), flushed, "
                 "casdisk kept serving %d s with gc-delay=%d, servers stopped.\n" % (
                     ", ".join("%s %d MiB @%d MiB" % (n, l // MiB, off // MiB) for n, off, l in sp["layout"]),
                     sp["text_zstd3_ratio"] or 0, sp["trim"],
                     sp["backends"]["casdisk"]["after_trim"]["trimmed_bytes"] // MiB,
                     sp["gc_wait_s"], sp["gc_delay"]))
        o.append("| backend | allocated after write | apparent after write | allocated after trim | apparent after trim |")
        o.append("|---|---:|---:|---:|---:|")
        for b in BACKENDS:
            x = sp["backends"][b]
            o.append("| %s | %d (%.1f MiB) | %d (%.1f MiB) | %d (%.1f MiB) | %d (%.1f MiB) |" % (
                b, x["after_write"]["allocated"], x["after_write"]["allocated"] / MiB,
                x["after_write"]["apparent"], x["after_write"]["apparent"] / MiB,
                x["after_trim"]["allocated"], x["after_trim"]["allocated"] / MiB,
                x["after_trim"]["apparent"], x["after_trim"]["apparent"] / MiB))
        if sp.get("ideal_dedup_zstd_bytes"):
            o.append("\nFor scale: perfect dedup plus zstd -3 of the text as one stream would store "
                     "%d bytes (%.1f MiB) of this mix, so the best possible qcow2/casdisk allocated "
                     "ratio after the write is about %.2f (computed, not measured)." % (
                         sp["ideal_dedup_zstd_bytes"], sp["ideal_dedup_zstd_bytes"] / MiB,
                         sp["backends"]["qcow2"]["after_write"]["allocated"] / sp["ideal_dedup_zstd_bytes"]))
        ci = sp["backends"]["casdisk"]
        for ph in ("after_write", "after_trim"):
            inf = ci[ph].get("info")
            if inf and "error" not in inf:
                o.append("\ncasdisk info %s: logical %s, unique %s, stored %s, dead %s, "
                         "physical allocated %s, apparent %s" % (
                             ph.replace("_", " "), inf.get("logical_bytes"), inf.get("unique_bytes"),
                             inf.get("stored_bytes"), inf.get("dead_bytes"),
                             inf.get("physical_allocated"), inf.get("physical_apparent")))
        o.append("")
    alone = res.get("casdisk_alone") or {}
    if alone:
        o.append("## casdisk alone: memory and reopen after a crash\n")
        o.append("Measured with `bench/engine` (the engine without nbdkit; see docs/performance.md).\n")
        mem = alone.get("memory", {})
        if "error" in mem:
            o.append("- memory: not measured (%s)" % mem["error"])
        else:
            o.append("- **resident memory per GiB of unique data: %.2f MiB** (%.1f bytes per 64 KiB "
                     "block, i.e. %.2f GiB per TiB) for each further GiB (growth over the last three "
                     "quarters); %.2f MiB per GiB (%.1f bytes per block) counting everything the "
                     "process holds, fixed costs included. After writing %.1f GiB of unique blocks "
                     "(%d blocks), each a block-number stamp and zeroes so the data file stays small. "
                     "Target: <= 1 MiB per GiB. `%s`" % (
                         mem["marginal_mib_per_gib"], mem["marginal_bytes"], mem["marginal_mib_per_gib"],
                         mem["mib_per_gib"], mem["bytes_per_block"],
                         mem["gib"], mem["blocks"], mem["cmd"]))
        ro = alone.get("reopen", {})
        if "error" in ro:
            o.append("- reopen after a crash: not measured (%s)" % ro["error"])
        else:
            o.append("- **reopen after a crash: %.3f s per 100 GiB of virtual size** (a 100 GiB disk; "
                     "%s MiB written across it and flushed, 64 MiB more written and not flushed, then "
                     "the writer exited without closing the store; opening replays %.1f MiB of "
                     "journal, rebuilds free space, punches the unreferenced space and writes a "
                     "checkpoint). `%s`" % (ro["s_per_100gib"], res["meta"]["params"]["reopen_mib"],
                                            ro["journal_mib"], ro["cmd"]))
        o.append("")
    cl = res.get("clone")
    if cl:
        o.append("## Clone workload\n")
        if "error" in cl:
            o.append("Not measured: %s\n" % cl["error"])
        else:
            o.append("An ext4 image of %d MiB made with `mke2fs -d %s` (%.1f MiB allocated), "
                     "written into %d disks, each with its own 8 MiB of random data written over "
                     "it (at a different offset per disk). casdisk: one store, one disk per copy, "
                     "written with nbdcopy; or the image written once into a golden disk, four "
                     "clones of it (`casdisk disk clone`) and each clone's 8 MiB written into it; qcow2: `qemu-img convert` of each copy, or a golden "
                     "image plus one overlay per copy holding what differs (`qemu-img create -b`, "
                     "then the 8 MiB written with `qemu-io`); "
                     "file: sparse raw copies.\n" % (
                         cl["image_bytes"] // MiB, cl["tree"], cl["image_allocated"] / MiB, cl["disks"]))
            o.append("| backend | allocated, all disks | stored per disk | casdisk ÷ this |")
            o.append("|---|---:|---:|---:|")
            c = cl["backends"]["casdisk golden + clones"]["allocated"]
            for b, x in cl["backends"].items():
                o.append("| %s | %d (%.1f MiB) | %.1f MiB | %s |" % (
                    b, x["allocated"], x["allocated"] / MiB, x["per_disk"] / MiB,
                    "%.2f" % (c / x["allocated"]) if x["allocated"] else "-"))
            o.append("")
    o.append("## Targets (bench/README.md)\n")
    o.append("| target | measured | met |")
    o.append("|---|---:|---|")
    for t in res["targets"]:
        o.append("| %s | %s | %s |" % (t["target"], "-" if t["value"] is None else t["value"],
                                      {True: "yes", False: "**no**", None: "n/a"}[t["met"]]))
    o.append("")
    o.append("## Raw fio json summary lines\n")
    o.append("Fields copied from fio's json output (bw in KiB/s, latencies in ns).\n")
    o.append("```")
    for l in res["fio_summary_lines"]:
        o.append(json.dumps(l, sort_keys=False))
    o.append("```")
    o.append("")
    o.append("Example fio command: `%s`" % (res["runs"][0]["fio_cmd"] if res["runs"] else "-"))
    return "\n".join(o) + "\n"


def main():
    ap = argparse.ArgumentParser(description="casdisk vs qcow2 vs file benchmark")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="1 repetition, small sizes (~2 min)")
    g.add_argument("--smoke", action="store_true", help="check the benchmark itself works (<40 s)")
    ap.add_argument("--reps", type=int, help="override the number of repetitions")
    ap.add_argument("--runtime", type=int, help="override fio runtime per run (seconds)")
    ap.add_argument("--workloads", help="comma-separated subset of: " + ",".join(WORKLOADS))
    ap.add_argument("--block-size", help="casdisk block-size for new stores (default: plugin default)")
    ap.add_argument("--no-space", action="store_true", help="skip the space workload")
    ap.add_argument("--out", help="results directory (default bench/results; smoke: none)")
    ap.add_argument("--tmpdir", help="parent of the scratch directory (default /var/tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--note", help="free text added to the results")
    ap.add_argument("--casdisk-direct", action="store_true",
                    help="add a backend: casdisk with direct-io=true")
    ap.add_argument("--casdisk-direct-cache", metavar="SIZE",
                    help="add a backend: casdisk with direct-io=true cache=SIZE")
    args = ap.parse_args()
    if args.casdisk_direct_cache:
        BACKENDS.insert(1, DCACHE)
    if args.casdisk_direct:
        BACKENDS.insert(1, DIRECT)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    for t in ("nbdkit", "qemu-nbd", "qemu-img", "fio"):
        if not shutil.which(t):
            log("SKIP: %s not installed" % t)
            sys.exit(77)
    try:
        import nbd  # noqa: F401
    except ImportError:
        log("SKIP: python3 libnbd bindings (python3-libnbd) missing")
        sys.exit(77)
    r = sh(["fio", "--enghelp"], timeout=20)
    if "nbd" not in r.stdout.split():
        log("SKIP: fio has no nbd engine")
        sys.exit(77)

    b = Bench(args, mode)
    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        res = b.run()
        if args.note:
            res["meta"]["note"] = args.note
    finally:
        for s in list(RUNNING):
            s.stop()
        if not args.keep:
            shutil.rmtree(b.tmp, ignore_errors=True)
        else:
            log("scratch directory kept: " + b.tmp)
    md = markdown(res)
    sys.stdout.write(md)
    out = args.out or (None if mode == "smoke" else os.path.join(HERE, "results"))
    if out:
        os.makedirs(out, exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
        base = os.path.join(out, stamp + ("" if mode == "full" else "-" + mode))
        with open(base + ".md", "w") as f:
            f.write(md)
        with open(base + ".json", "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
        log("results: %s.md and %s.json" % (base, base))
    if mode == "smoke":
        # The benchmark works if every run produced numbers.
        bad = [r for r in res["runs"] if not (r["mib_s"] > 0 and r["iops"] > 0 and r["p99_us"] > 0)]
        want = len(b.m["workloads"]) * len(BACKENDS) * b.m["reps"]
        if bad or len(res["runs"]) != want or (res["space"] is None and not args.no_space):
            log("FAIL: smoke: %d runs, %d without numbers" % (len(res["runs"]), len(bad)))
            sys.exit(1)
        log("PASS: benchmark smoke test")


if __name__ == "__main__":
    main()
