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
import ctypes
import datetime
import hashlib
import json
import math
import mmap
import os
import random
import re
import resource
import shlex
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time


import plots                    # bench/plots.py: the SVG plots of a report

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRC = os.path.dirname(HERE)
TOP_BUILD = os.path.abspath(os.environ.get("top_builddir") or TOP_SRC)
MiB = 1 << 20
GiB = 1 << 30
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The backends, each a mode of its server.  casdisk's default is
# buffered (the plugin reads and writes its files through the page cache
# unless direct-io=true), so "casdisk" is both the default and the
# buffered mode; it is run once and appears in two pairings.
BACKENDS = ["casdisk", "casdisk-direct", "qcow2", "qcow2-wb", "file"]
DIRECT = "casdisk-direct"       # the plugin with direct-io=true (O_DIRECT, libaio)
# --casdisk-direct-cache SIZE adds this one: direct-io=true cache=SIZE.
DCACHE = "casdisk-dcache"
REWRITE = "casdisk-rewrite"     # the plugin with small-write-log=false
# --baseline PLUGIN adds this one: another build of the plugin, defaults.
BASE = "casdisk-base"
CASDISKS = ("casdisk", DIRECT, DCACHE, REWRITE, BASE)
QCOW2S = ("qcow2", "qcow2-wb")
# The space and clone workloads measure sizes only: one mode per format.
SPACE_BACKENDS = ["casdisk", "qcow2", "file"]
LABELS = {
    "casdisk": "casdisk defaults (buffered; direct-io=false)",
    DIRECT: "casdisk direct-io=true",
    DCACHE: "casdisk direct-io=true cache=SIZE",
    REWRITE: "casdisk small-write-log=false (blocks rebuilt at every small write)",
    BASE: "casdisk defaults, the baseline build (--baseline)",
    "qcow2": "qcow2, qemu-nbd --cache=none",
    "qcow2-wb": "qcow2, qemu-nbd --cache=writeback",
    "file": "nbdkit file (buffered)",
}
# Like against like: (casdisk backend, peer, title).  The first is the
# headline: casdisk as it runs by default against qcow2 as libvirt and
# Proxmox run it.
PAIRINGS = [
    ("casdisk", "qcow2", "casdisk defaults (buffered) vs qcow2 --cache=none (headline)"),
    ("casdisk", "qcow2-wb", "casdisk buffered vs qcow2 --cache=writeback (buffered vs buffered)"),
    (DIRECT, "qcow2", "casdisk direct-io=true vs qcow2 --cache=none (direct vs direct)"),
]
HEADLINE = PAIRINGS[0]

# name -> (fio options, region, description).  region: "fresh" writes a
# never-written disk; "prefill" first writes the read region (untimed,
# 1 MiB sequential, ending with a flush), drops the page cache of the
# backend's files, then runs the job over that region (reads, and writes
# that overwrite existing data as a VM's disk does).  Every write job gets
# end_fsync=1: the flush at its end is inside its time.  Read jobs run
# cold (after the drop, one pass over the region or the runtime, whichever
# ends first) and, with --warm (default), warm before that: right after
# the prefill, time-based, the page cache as the prefill left it.
# flush_every=N: not fio (its --fsync=N at an iodepth above 1 flushes
# after nearly every write once the count reaches a multiple of N) but
# bench/flushload.py, which queues a flush after every N-th write.
WORKLOADS = {
    "seq-write-1M-qd4": (
        dict(rw="write", bs="1M", iodepth=4), "fresh",
        "sequential write, 1 MiB requests, queue depth 4, unique random data, fresh disk"),
    "seq-read-1M-qd4": (
        dict(rw="read", bs="1M", iodepth=4), "prefill",
        "sequential read, 1 MiB, QD4, of a prefilled region"),
    "rand-write-4K-qd16": (
        dict(rw="randwrite", bs="4k", iodepth=16), "prefill",
        "random overwrite, 4 KiB, QD16, unique random data, flush at the end"),
    "rand-write-4K-qd16-fsync32": (
        dict(rw="randwrite", bs="4k", iodepth=16, flush_every=32), "prefill",
        "random overwrite, 4 KiB, QD16, a flush every 32 writes"),
    "rand-read-4K-qd16": (
        dict(rw="randread", bs="4k", iodepth=16), "prefill",
        "random read, 4 KiB, QD16, of a prefilled region"),
    "rand-write-64K-qd16": (
        dict(rw="randwrite", bs="64k", iodepth=16), "prefill",
        "random overwrite, 64 KiB, QD16, unique random data"),
    "dedup90-write-64K-qd16": (
        dict(rw="randwrite", bs="64k", iodepth=16, dedupe_percentage=90), "fresh",
        "random write, 64 KiB, QD16, 90% of the buffers repeat an earlier one"),
    "compress60-write-64K-qd16": (
        dict(rw="randwrite", bs="64k", iodepth=16, buffer_compress_percentage=60), "fresh",
        "random write, 64 KiB, QD16, buffers 60% compressible"),
    "rand-write-4K-qd16-2conn": (
        dict(rw="randwrite", bs="4k", iodepth=16, numjobs=2), "prefill",
        "random overwrite, 4 KiB, QD16 on each of 2 connections (numjobs=2)"),
    "small-write-1K-qd32-fsync64": (
        dict(rw="randwrite", bs="1k", iodepth=32, flush_every=64), "prefill",
        "small writes: random overwrite, 1 KiB, QD32, a flush every 64 writes"),
    "small-write-4K-qd32-fsync64": (
        dict(rw="randwrite", bs="4k", iodepth=32, flush_every=64), "prefill",
        "small writes: random overwrite, 4 KiB, QD32, a flush every 64 writes"),
}
WARM = "-warm"      # suffix of the warm-cache read rows

MODES = {
    # reps, fio runtime (s), disk size, write region (fresh-disk writes),
    # read region (prefilled: reads and overwrites), space chunk, seconds
    # to wait for the recycler, time budget (s)
    # memory_mib: unique data for casdisk's memory measurement (bench/engine);
    # reopen_mib: data written before the simulated crash of the reopen
    # measurement (a 100 GiB disk); clone_mib: size of the clone workload's
    # file-system image (0 = skip).
    "smoke": dict(reps=1, runtime=1, disk=256 * MiB, wregion=128 * MiB,
                  rregion=32 * MiB, chunk=4 * MiB, gc_wait=3, budget=150,
                  memory_mib=1024, reopen_mib=64, clone_mib=0,
                  workloads=["seq-write-1M-qd4", "rand-read-4K-qd16",
                             "small-write-4K-qd32-fsync64"]),
    "quick": dict(reps=1, runtime=2, disk=1 * GiB, wregion=1 * GiB,
                  rregion=256 * MiB, chunk=32 * MiB, gc_wait=10, budget=1500,
                  memory_mib=2048, reopen_mib=512, clone_mib=400,
                  workloads=list(WORKLOADS)),
    "full": dict(reps=3, runtime=5, disk=4 * GiB, wregion=4 * GiB,
                 rregion=1 * GiB, chunk=64 * MiB, gc_wait=10, budget=4500,
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


def files_of(path):
    """The regular files of a backend's storage: a file, or all under a dir
    (sockets and the like left out)."""
    if not os.path.isdir(path):
        return [path] if os.path.exists(path) else []
    out = []
    for d, _, fs in os.walk(path):
        for f in fs:
            p = os.path.join(d, f)
            try:
                if stat.S_ISREG(os.lstat(p).st_mode):
                    out.append(p)
            except FileNotFoundError:
                pass
    return out


def space_of(path):
    """(allocated, apparent) bytes of a file or of all files under a dir.
    Files that vanish while we look (a server renaming or deleting them)
    are skipped."""
    alloc = app = 0
    for f in files_of(path):
        try:
            st = os.lstat(f)
        except FileNotFoundError:
            continue
        alloc += st.st_blocks * 512
        app += st.st_size
    return alloc, app


PAGE = os.sysconf("SC_PAGE_SIZE")
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
MAP_FAILED = ctypes.c_void_p(-1).value


def resident_bytes(f):
    """Bytes of file F in the page cache (mincore of a mapping of it)."""
    try:
        fd = os.open(f, os.O_RDONLY)
    except FileNotFoundError:
        return 0
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return 0
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr is None or addr == MAP_FAILED:
            return None
        try:
            pages = (size + PAGE - 1) // PAGE
            vec = ctypes.create_string_buffer(pages)
            if _libc.mincore(addr, size, vec) != 0:
                return None
            return sum(1 for c in vec.raw if c & 1) * PAGE
        finally:
            _libc.munmap(addr, size)
    finally:
        os.close(fd)


def resident_of(path):
    tot = 0
    for f in files_of(path):
        r = resident_bytes(f)
        if r is None:
            return None
        tot += r
    return tot


def drop_page_cache(path):
    """fdatasync and posix_fadvise(POSIX_FADV_DONTNEED) every file of a
    backend's storage, so that the next read comes from the device.  Returns
    what was in the page cache before and after (mincore)."""
    t0 = time.monotonic()
    before = resident_of(path)
    fs = files_of(path)
    for f in fs:
        try:
            fd = os.open(f, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    after = resident_of(path)
    return {"files": len(fs), "apparent": space_of(path)[1], "resident_before": before,
            "resident_after": after, "drop_s": round(time.monotonic() - t0, 3)}


def proc_io(pid):
    """/proc/PID/io of a process (all its threads), as a dict of ints."""
    d = {}
    with open("/proc/%d/io" % pid) as f:
        for l in f:
            k, v = l.split(":")
            d[k.strip()] = int(v)
    return d


def device_of(path):
    """(major, minor, name) of the block device holding PATH."""
    st = os.stat(path)
    ma, mi = os.major(st.st_dev), os.minor(st.st_dev)
    name = "?"
    try:
        with open("/sys/dev/block/%d:%d/uevent" % (ma, mi)) as f:
            for l in f:
                if l.startswith("DEVNAME="):
                    name = l.split("=", 1)[1].strip()
    except OSError:
        pass
    return ma, mi, name


def device_written(dev):
    """Bytes written to the device DEV (major, minor, name) so far, from
    /proc/diskstats (sectors of 512 bytes), or None."""
    with open("/proc/diskstats") as f:
        for l in f:
            v = l.split()
            if int(v[0]) == dev[0] and int(v[1]) == dev[1]:
                return int(v[9]) * 512
    return None


class PeakSampler(threading.Thread):
    """Samples the allocated size of a backend's storage every INTERVAL
    seconds until stopped; keeps the peak."""

    def __init__(self, path, interval=0.5):
        super().__init__(daemon=True)
        self.path, self.interval = path, interval
        self.ev = threading.Event()
        self.samples = 0
        self.peak_alloc = self.peak_app = 0
        self.first = self.last = None
        self.series = []        # (time.monotonic(), allocated bytes): bench/plots.py
        self.sample()

    def sample(self):
        alloc, app = space_of(self.path)
        self.series.append((round(time.monotonic(), 2), alloc))
        self.samples += 1
        self.peak_alloc = max(self.peak_alloc, alloc)
        self.peak_app = max(self.peak_app, app)
        if self.first is None:
            self.first = alloc
        self.last = alloc

    def run(self):
        while not self.ev.wait(self.interval):
            self.sample()

    def finish(self):
        self.ev.set()
        self.join(10)
        self.sample()


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
        self.dev = device_of(self.tmp)
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
        self.base_plugin = None
        if args.baseline:
            if not os.path.exists(args.baseline):
                raise SystemExit("baseline plugin not found: %s" % args.baseline)
            self.base_plugin = os.path.join(self.tmp, "nbdkit-casdisk-plugin-base.so")
            shutil.copy2(args.baseline, self.base_plugin)
            with open(args.baseline, "rb") as f:
                self.base_sha = hashlib.sha256(f.read()).hexdigest()[:16]
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
                    self.base_plugin if backend == BASE else self.plugin,
                    "store=" + os.path.join(d, "store"),
                    "size=%d" % size]
            if backend in (DIRECT, DCACHE):
                argv.append("direct-io=true")
            if backend == DCACHE:
                argv.append("cache=" + self.args.casdisk_direct_cache)
            if backend == REWRITE:
                argv.append("small-write-log=false")
            if self.args.block_size:
                argv.append("block-size=" + self.args.block_size)
            if gc_delay is not None:
                argv.append("gc-delay=%d" % gc_delay)
        elif backend in QCOW2S:
            img = os.path.join(d, "disk.qcow2")
            if not os.path.exists(img):
                r = sh(["qemu-img", "create", "-q", "-f", "qcow2", img, str(size)], timeout=60)
                if r.returncode:
                    raise RuntimeError("qemu-img create: " + r.stderr)
            # -t: keep serving after a client disconnects (prefill, then run);
            # -e 4: allow the 2-connection workload (qemu-nbd's default is 1).
            cache = self.qcow2_cache if backend == "qcow2" else "writeback"
            argv = ["qemu-nbd", "--cache=" + cache, "--discard=unmap",
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
        if backend in CASDISKS:
            return os.path.join(d, "store")
        return {"qcow2": os.path.join(d, "disk.qcow2"),
                "qcow2-wb": os.path.join(d, "disk.qcow2"),
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
    def fio(self, uri, name, opts, size, how, outfile):
        """Run fio.  HOW: "time" (time-based, the mode's runtime), "capped"
        (one pass over SIZE, stopped at the runtime if not done) or "size"
        (one pass, no time limit: the prefill)."""
        argv = ["fio", "--name=" + name, "--ioengine=nbd", "--uri=" + uri,
                "--size=%d" % size, "--refill_buffers", "--direct=0",
                "--group_reporting", "--output-format=json"]
        for k, v in opts.items():
            argv.append("--%s=%s" % (k, v))
        if how == "time":
            argv += ["--time_based", "--runtime=%d" % self.m["runtime"]]
        elif how == "capped":
            argv += ["--runtime=%d" % self.m["runtime"]]
        budget = (self.m["runtime"] + 120) if how != "size" else 600
        r = sh(argv, timeout=budget)
        with open(outfile, "w") as f:
            f.write(r.stdout)
        if r.returncode:
            raise RuntimeError("fio %s failed (%d): %s %s" % (
                name, r.returncode, r.stderr.strip()[-400:], r.stdout.strip()[-400:]))
        out = r.stdout
        j = json.loads(out[out.index("{"):])
        return argv, j

    def flushload(self, uri, opts, size, outfile):
        """bench/flushload.py: random writes, a flush queued after every
        N-th, the final flush in the time."""
        bs = {"1k": 1024, "4k": 4096, "64k": 65536}[opts["bs"].lower()]
        argv = ["/usr/bin/python3", os.path.join(HERE, "flushload.py"), "--uri", uri,
                "--bs", str(bs), "--qd", str(opts["iodepth"]),
                "--flush-every", str(opts["flush_every"]), "--region", str(size),
                "--runtime", str(self.m["runtime"])]
        r = sh(argv, timeout=self.m["runtime"] + 120)
        with open(outfile, "w") as f:
            f.write(r.stdout)
        if r.returncode:
            raise RuntimeError("flushload failed (%d): %s" % (r.returncode, r.stderr.strip()[-400:]))
        shown = ["bench/flushload.py"] + argv[2:]
        shown[shown.index("--uri") + 1] = "URI"
        return shown, json.loads(r.stdout)

    def run_one(self, wl, backend, rep):
        opts, region, _ = WORKLOADS[wl]
        side = "read" if "read" in opts["rw"] else "write"
        if side == "write":
            # The flush at the end of every write job is inside its time
            # (fio counts end_fsync in the job's runtime).
            opts = dict(opts, end_fsync=1)
        prefilled = region == "prefill"
        self.seq += 1
        d = os.path.join(self.tmp, "%03d-%s-%s-r%d" % (self.seq, wl, backend, rep))
        size = self.m["rregion"] if prefilled else self.m["wregion"]
        # Start with no dirty pages of the previous run: their writeback
        # would otherwise slow whichever backend runs next (most of all
        # those that bypass the page cache: qcow2 cache=none, direct-io).
        os.sync()
        ts = time.monotonic()
        srv = self.server(backend, d, self.m["disk"])
        path = self.storage_path(backend, d)
        try:
            tp = time.monotonic()
            if prefilled:
                self.fio(srv.uri, "prefill", dict(rw="write", bs="1M", iodepth=4, end_fsync=1),
                         size, "size", os.path.join(d, "prefill.json"))
            pre = dict(start_s=round(tp - ts, 2), prefill_s=round(time.monotonic() - tp, 2))
            if side == "read" and self.args.warm:
                # Warm: the page cache as the prefill left it (the method
                # of the reports before issue 12); reported beside, labelled.
                self.measure(srv, path, wl + WARM, wl, backend, rep, opts, size, "time", d,
                             dict(pre, cache="warm"), None)
            drop = drop_page_cache(path) if prefilled else None
            if drop:
                drop["t"] = time.monotonic()
            live = size if prefilled else None
            run = self.measure(srv, path, wl, wl, backend, rep, opts, size,
                               "capped" if side == "read" else "time", d,
                               dict(pre, cache="cold" if prefilled else "fresh disk"), drop,
                               live=live)
            t1 = time.monotonic()
        finally:
            srv.stop()
        run["stop_s"] = round(time.monotonic() - t1, 2)
        t2 = time.monotonic()
        if not self.args.keep:
            shutil.rmtree(d, ignore_errors=True)
        run["cleanup_s"] = round(time.monotonic() - t2, 2)

    def measure(self, srv, path, name, wl, backend, rep, opts, size, how, d, extra, drop,
                live=None):
        """One timed fio job on a running server: throughput, p99, server
        CPU, and for writes the bytes the server wrote (/proc/PID/io), the
        bytes the device holding the scratch directory wrote
        (/proc/diskstats) and the peak allocated size of the backend's
        files (sampled every 0.5 s)."""
        side = "read" if "read" in opts["rw"] else "write"
        io0, dev0 = proc_io(srv.proc.pid), device_written(self.dev)
        sampler = PeakSampler(path)
        sampler.start()
        c0 = srv.cpu()
        t0 = time.monotonic()
        try:
            if "flush_every" in opts:
                argv, s = self.flushload(srv.uri, opts, size, os.path.join(d, name + ".json"))
            else:
                argv, j = self.fio(srv.uri, wl, opts, size, how,
                                   os.path.join(d, name + ".json"))
        finally:
            t1 = time.monotonic()
            c1 = srv.cpu()
            io1, dev1 = proc_io(srv.proc.pid), device_written(self.dev)
            sampler.finish()
        if "flush_every" in opts:
            jopts = {"end_fsync": "1 (flushload)", "fsync": str(opts["flush_every"])}
            sync = {"total_ios": s["flushes"] - 1}
            pct = {"50.000000": s["clat_ns_p50"], "99.000000": s["clat_ns_p99"],
                   "99.900000": s["clat_ns_p99.9"]}
            s["runtime"], s["bw"], s["clat_ns"] = s["runtime_ms"], s["bw_KiBps"], {
                "mean": s["clat_ns_mean"]}
            job = {"jobname": name, "usr_cpu": None, "sys_cpu": None, "error": 0}
            j = {"fio version": None}
        else:
            job = j["jobs"][0]
            if job.get("error"):
                raise RuntimeError("fio reported error %s for %s/%s" % (job["error"], wl, backend))
            s = job[side]
            pct = s["clat_ns"].get("percentile", {})
            jopts = job.get("job options", {})
            sync = job.get("sync", {})
        fio_line = {
            "workload": name, "backend": backend, "rep": rep,
            "fio_version": j.get("fio version"), "jobname": job["jobname"],
            "rw": opts["rw"], "bs": opts["bs"], "iodepth": opts["iodepth"],
            "numjobs": opts.get("numjobs", 1), "side": side,
            "end_fsync": jopts.get("end_fsync"), "fsync": jopts.get("fsync"),
            "sync_ios": sync.get("total_ios"),
            "io_bytes": s["io_bytes"], "bw_KiBps": s["bw"], "iops": s["iops"],
            "runtime_ms": s["runtime"], "clat_ns_mean": s["clat_ns"]["mean"],
            "clat_ns_p50": pct.get("50.000000"), "clat_ns_p99": pct.get("99.000000"),
            "clat_ns_p99.9": pct.get("99.900000"),
            "usr_cpu": job["usr_cpu"], "sys_cpu": job["sys_cpu"],
            "error": job["error"],
        }
        if "flush_every" in opts:
            fio_line["client"] = "bench/flushload.py"
            fio_line["client_cpu_s"] = s["client_cpu_s"]
        self.fio_lines.append(fio_line)
        gib = s["io_bytes"] / GiB
        run = dict(extra)
        run.update({
            "workload": name, "base_workload": wl, "backend": backend, "rep": rep,
            "side": side, "mib_s": s["bw"] / 1024.0, "iops": s["iops"],
            "p99_us": (pct.get("99.000000") or 0) / 1000.0,
            "server_cpu_s": c1 - c0,
            "cpu_s_per_gib": (c1 - c0) / gib if gib > 0 else None,
            "io_bytes": s["io_bytes"], "runtime_ms": s["runtime"],
            "fio_s": round(t1 - t0, 2), "t_start": t0,
            "fio_cmd": " ".join(shlex.quote(a) for a in argv),
            "drop": drop,
        })
        if side == "write":
            guest = s["io_bytes"]
            srv_bytes = ((io1["write_bytes"] - io0["write_bytes"])
                         - (io1["cancelled_write_bytes"] - io0["cancelled_write_bytes"]))
            dev_bytes = dev1 - dev0 if dev0 is not None and dev1 is not None else None
            # write_bytes is charged when a page is dirtied; with large
            # folios a small write into a cached folio can charge the whole
            # folio, so a buffered server's figure can exceed what reached
            # the device.  It cannot really exceed the whole device's count.
            sane = dev_bytes is None or srv_bytes <= dev_bytes * 1.02 + MiB
            wa_srv = srv_bytes / guest if guest else None
            wa_dev = dev_bytes / guest if guest and dev_bytes is not None else None
            if live is None:
                live = min(guest // max(1, opts.get("numjobs", 1)), size)
            if "flush_every" in opts:
                run["end_flush_ms_est"] = s["end_flush_ms"]
            elif how == "time" and s["runtime"]:
                # time-based: fio's runtime is the set time plus the final flush
                run["end_flush_ms_est"] = max(0, s["runtime"] - 1000 * self.m["runtime"])
            run.update({
                "guest_bytes": guest, "server_write_bytes": srv_bytes,
                "server_wchar": io1["wchar"] - io0["wchar"],
                "device_write_bytes": dev_bytes, "server_io_sane": sane,
                "wa_server": wa_srv, "wa_device": wa_dev,
                "wa": wa_srv if sane else wa_dev,
                "wa_source": "server /proc/PID/io" if sane else "device /proc/diskstats",
                "end_fsync": jopts.get("end_fsync"), "fsync": jopts.get("fsync"),
                "sync_ios": sync.get("total_ios"),
                "live_bytes": live, "alloc_before": sampler.first,
                "alloc_after": sampler.last, "peak_alloc": sampler.peak_alloc,
                "peak_apparent": sampler.peak_app, "peak_samples": sampler.samples,
                "peak_over_live": sampler.peak_alloc / live if live else None,
                "size_series": sampler.series,
            })
        self.runs.append(run)
        msg = ("  %-30s %-14s rep %d: %8.1f MiB/s %9.0f IOPS p99 %8.0f us  cpu %.2f s/GiB" % (
            name, backend, rep, run["mib_s"], run["iops"], run["p99_us"],
            run["cpu_s_per_gib"] or 0))
        if side == "write":
            msg += "  WA %.2f (%s) peak %.0f MiB / live %.0f MiB" % (
                run["wa"] or 0, "srv" if sane else "dev", run["peak_alloc"] / MiB,
                run["live_bytes"] / MiB)
        if drop:
            msg += "  [dropped: cached %.1f -> %.1f MiB]" % (
                (drop["resident_before"] or 0) / MiB, (drop["resident_after"] or 0) / MiB)
        log(msg)
        return run

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
        dirs = {b: os.path.join(self.tmp, "space-" + b) for b in SPACE_BACKENDS}
        size = max(self.m["disk"], (copies + 4) * c)
        # Phase 1: write the mix, flush, stop.
        for b in SPACE_BACKENDS:
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
        for b in SPACE_BACKENDS:
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
            "tmpdir": self.tmp, "plugin": public_path(self.plugin_src),
            "plugin_sha256_16": self.plugin_sha,
            "baseline_sha256_16": self.base_sha if self.base_plugin else None,
            "git": git_info(), "params": {k: v for k, v in self.m.items()},
            "block_size": self.args.block_size or "default (64K)",
            "device": self.dev[2], "backends": {b: LABELS[b] for b in BACKENDS},
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
        self.alone_res = {} if self.args.no_memory else self.casdisk_alone()
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

    def rows(self):
        """Report rows: the workloads, each read one followed by its warm
        variant when that ran."""
        out = []
        for wl in self.m["workloads"]:
            out.append(wl)
            if any(r["workload"] == wl + WARM for r in self.runs):
                out.append(wl + WARM)
        return out

    def summarize(self):
        med = {}
        keys = ("mib_s", "iops", "p99_us", "cpu_s_per_gib", "wa", "wa_server", "wa_device",
                "peak_alloc", "live_bytes", "peak_over_live", "alloc_after", "end_flush_ms_est",
                "sync_ios")
        for row in self.rows():
            med[row] = {}
            for b in BACKENDS:
                rs = [r for r in self.runs if r["workload"] == row and r["backend"] == b]
                if not rs:
                    continue
                x = {"reps": len(rs), "side": rs[0]["side"]}
                for k in keys:
                    v = [r[k] for r in rs if r.get(k) is not None]
                    x[k] = statistics.median(v) if v else None
                if rs[0]["side"] == "write":
                    x["wa_sources"] = sorted({r["wa_source"] for r in rs})
                med[row][b] = x

        def ratio(c, p):
            return {"throughput": c["mib_s"] / p["mib_s"] if p["mib_s"] else None,
                    "p99": c["p99_us"] / p["p99_us"] if p["p99_us"] else None,
                    "wa": (c["wa"] / p["wa"]) if c.get("wa") and p.get("wa") else None}
        pairings = []
        plist = list(PAIRINGS)
        if DCACHE in BACKENDS:
            plist.append((DCACHE, "qcow2", "casdisk direct-io=true cache=%s vs qcow2 --cache=none"
                          % self.args.casdisk_direct_cache))
        if REWRITE in BACKENDS:
            plist.append((REWRITE, "qcow2", "casdisk small-write-log=false vs qcow2 --cache=none"))
            plist.append(("casdisk", REWRITE, "casdisk defaults vs small-write-log=false"))
        if BASE in BACKENDS:
            plist.append((BASE, "qcow2", "the baseline build vs qcow2 --cache=none"))
            plist.append(("casdisk", BASE, "this build vs the baseline build (both defaults)"))
        for cb, peer, title in plist:
            pr = {"casdisk": cb, "peer": peer, "title": title, "ratios": {}}
            for row, bm in med.items():
                if cb in bm and peer in bm:
                    pr["ratios"][row] = ratio(bm[cb], bm[peer])
            pairings.append(pr)
        # casdisk (defaults) against qcow2 --cache=none and the file plugin:
        # what the targets are judged on.
        ratios = {}
        for row, bm in med.items():
            ratios[row] = {}
            c = bm.get("casdisk")
            for peer in ("qcow2", "file"):
                if c and bm.get(peer):
                    ratios[row][peer] = ratio(c, bm[peer])
        self.medians, self.ratios = med, ratios
        self.targets = evaluate_targets(ratios, med, self.space_res)
        mem = (self.alone_res or {}).get("memory", {})
        if "marginal_mib_per_gib" in mem:
            v = mem["marginal_mib_per_gib"]
            self.targets.append({"target": "memory: casdisk MiB resident per further GiB unique <= 1.0",
                                 "value": round(v, 3), "met": v <= 1.0})
        return {"meta": self.meta, "medians": med, "ratios": ratios, "pairings": pairings,
                "space": self.space_res, "space_mixes": self.space_all, "targets": self.targets,
                "casdisk_alone": self.alone_res, "clone": self.clone_res,
                "runs": self.runs, "fio_summary_lines": self.fio_lines}


def ratio_target(ratios, wl, peer, key, op, bound, label):
    r = ratios.get(wl, {}).get(peer, {}).get(key)
    if r is None:
        return {"target": label, "value": None, "met": None}
    met = r >= bound if op == ">=" else r <= bound
    return {"target": label, "value": round(r, 3), "met": met}


def evaluate_targets(ratios, med, space):
    """Issue 12's targets: casdisk with its defaults against qcow2
    --cache=none, in this run."""
    T = []
    for wl, bound, what in (
            ("rand-write-4K-qd16", 1.0, "rand write 4K QD16, end flush"),
            ("rand-write-4K-qd16-fsync32", 1.0, "rand write 4K QD16, flush every 32"),
            ("small-write-1K-qd32-fsync64", 1.0, "1 KiB writes, flush every 64"),
            ("small-write-4K-qd32-fsync64", 1.0, "4 KiB writes, flush every 64"),
            ("rand-write-64K-qd16", 1.0, "rand write 64K QD16"),
            ("seq-write-1M-qd4", 0.9, "seq write 1M QD4, unique"),
            ("seq-read-1M-qd4", 1.0, "seq read 1M QD4, cold"),
            ("rand-read-4K-qd16", 1.0, "rand read 4K QD16, cold"),
            ("dedup90-write-64K-qd16", 2.0, "90% duplicate write")):
        T.append(ratio_target(ratios, wl, "qcow2", "throughput", ">=", bound,
                              "%s: casdisk/qcow2 >= %.1f" % (what, bound)))
    c = med.get("rand-write-4K-qd16", {}).get("casdisk")
    if c and c.get("wa") is not None:
        T.append({"target": "write amplification, rand write 4K: casdisk <= 2.0 device bytes per guest byte",
                  "value": round(c["wa"], 2), "met": c["wa"] <= 2.0})
    peaks = [(bm["casdisk"]["peak_over_live"], row) for row, bm in med.items()
             if bm.get("casdisk", {}).get("peak_over_live") is not None]
    if peaks:
        v, row = max(peaks)
        T.append({"target": "peak allocated size during a write job: casdisk <= 1.5x the live data "
                            "(worst: %s)" % row, "value": round(v, 2), "met": v <= 1.5})
    for wl in ratios:
        if not wl.endswith(WARM):
            T.append(ratio_target(ratios, wl, "qcow2", "p99", "<=", 1.5,
                                  "%s: p99 casdisk/qcow2 <= 1.5" % wl))
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


def public_path(p):
    """P as the report may show it: relative to the build or source tree
    (the project's own layout), never the machine's directories."""
    for top, name in ((TOP_BUILD, "build"), (TOP_SRC, "source")):
        if p.startswith(top + os.sep):
            return "%s tree: %s" % (name, os.path.relpath(p, top))
    return os.path.basename(p)


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
    if meta.get("baseline_sha256_16"):
        o.append("Baseline plugin (`casdisk-base`): sha256 %s…  " % meta["baseline_sha256_16"])
    p = meta["params"]
    o.append("Parameters: %d repetition(s) (median shown), fio runtime %d s per run, disk %d MiB, "
             "write region of the fresh-disk jobs %d MiB, prefilled region %d MiB (reads and "
             "overwrites; prefilled with 1 MiB sequential writes and a flush), casdisk block size "
             "%s, the `qcow2` backend's cache=%s.\n" % (
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
    o.append("## Method\n")
    o.append("- Every write job ends with a flush counted in its time (fio `--end_fsync=1`). "
             "`rand-write-4K-qd16-fsync32` also flushes after every 32nd write, the "
             "`small-write-*` jobs after every 64th; these run with `bench/flushload.py` (libnbd, "
             "the flush queued with the other requests in flight), not fio, whose `--fsync=N` at "
             "an iodepth above 1 flushes after nearly every write once the count reaches a "
             "multiple of N (fio 3.33). The flushes column counts the flushes sent.")
    o.append("- Jobs on a prefilled region (reads, and the overwrite jobs) run after an untimed "
             "1 MiB sequential write of the region ending with a flush, then the page cache of "
             "every file of the backend's storage is dropped (fdatasync + "
             "`posix_fadvise(POSIX_FADV_DONTNEED)`; cached bytes before and after checked with "
             "mincore). Cold reads: one pass over the region, stopped at the runtime. Rows "
             "marked *warm*: the same read, time-based, right after the prefill without the drop "
             "(the method of the reports before this one); they are not what targets are judged on.")
    o.append("- Write amplification (WA) = bytes the server process wrote (`/proc/PID/io` "
             "write_bytes - cancelled_write_bytes, sampled before and after the job, end flush "
             "included) per byte fio wrote. Where that exceeds what the whole device wrote "
             "(`/proc/diskstats` of %s; large folios can charge a small buffered write its whole "
             "folio) the device figure is used and marked (dev). WA device = the whole device's "
             "written bytes per guest byte: it includes file-system journal writes and other "
             "processes' writes." % meta.get("device", "?"))
    o.append("- Peak = largest allocated size (st_blocks x 512) of the backend's files, sampled "
             "every 0.5 s during the job and once after it; live = the data the disk holds: the "
             "prefilled region for overwrite jobs, the distinct bytes written for jobs on a fresh "
             "disk.")
    o.append("- casdisk's default mode is buffered (direct-io=false): the `casdisk` runs serve "
             "both the headline pairing and the buffered one.\n")
    o.append("| backend | server |")
    o.append("|---|---|")
    for b in BACKENDS:
        o.append("| %s | %s |" % (b, LABELS[b].replace("cache=SIZE", "cache=%s" % meta.get("direct_cache"))))
    o.append("")
    o.append("## Ratios, like against like (medians)\n")
    o.append("thr = throughput ratio, casdisk ÷ peer (higher is better for casdisk); p99 = "
             "casdisk p99 ÷ peer p99 (lower is better).\n")
    prs = res.get("pairings") or []
    for k, pr in enumerate(prs):
        o.append("%d. %s: `%s` ÷ `%s`" % (k + 1, pr["title"], pr["casdisk"], pr["peer"]))
    o.append("")
    hdr = "| workload |" + "".join(" %d. thr | %d. p99 |" % (k + 1, k + 1) for k in range(len(prs)))
    o.append(hdr + " casdisk ÷ file thr |")
    o.append("|---|" + "---:|---:|" * len(prs) + "---:|")
    for row in med:
        cells = []
        for pr in prs:
            r = pr["ratios"].get(row, {})
            cells += [f1(r.get("throughput"), "%.2f"), f1(r.get("p99"), "%.2f")]
        fr = ratios.get(row, {}).get("file", {})
        o.append("| %s | %s | %s |" % (row + (" (warm)" if row.endswith(WARM) else ""),
                                       " | ".join(cells), f1(fr.get("throughput"), "%.2f")))
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
    o.append("## Write amplification and peak size (write jobs, medians)\n")
    o.append("| workload | backend | guest MiB written | WA | WA device (whole disk) | "
             "peak allocated MiB | live MiB | peak ÷ live | allocated after MiB | flushes |")
    o.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for wl, bm in med.items():
        for b in BACKENDS:
            x = bm.get(b)
            if not x or x["side"] != "write":
                continue
            rs = [r for r in res["runs"] if r["workload"] == wl and r["backend"] == b]
            guest = statistics.median([r["guest_bytes"] for r in rs])
            dev = any(w.startswith("device") for w in x.get("wa_sources", []))
            o.append("| %s | %s | %.0f | %s%s | %s | %s | %s | %s | %s | %s |" % (
                wl, b, guest / MiB, f1(x["wa"], "%.2f"), " (dev)" if dev else "",
                f1(x["wa_device"], "%.2f"), f1(x["peak_alloc"] and x["peak_alloc"] / MiB, "%.0f"),
                f1(x["live_bytes"] and x["live_bytes"] / MiB, "%.0f"),
                f1(x["peak_over_live"], "%.2f"),
                f1(x["alloc_after"] and x["alloc_after"] / MiB, "%.0f"),
                "%d + end" % x["sync_ios"] if x.get("sync_ios") else "end"))
    o.append("")
    drops = [r for r in res["runs"] if r.get("drop")]
    if drops:
        o.append("## Page cache dropped before the prefilled-region jobs\n")
        o.append("Bytes of the backend's files in the page cache (mincore) just before and after "
                 "the drop; the median over the runs of each row.\n")
        o.append("| workload | backend | files | cached before MiB | cached after MiB |")
        o.append("|---|---|---:|---:|---:|")
        for wl in med:
            for b in BACKENDS:
                rs = [r["drop"] for r in drops if r["workload"] == wl and r["backend"] == b]
                if rs:
                    mb = lambda k: statistics.median([(x[k] or 0) for x in rs]) / MiB
                    o.append("| %s | %s | %d | %.1f | %.1f |" % (
                        wl, b, rs[0]["files"], mb("resident_before"), mb("resident_after")))
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
        for b in SPACE_BACKENDS:
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
                    help="(no effect: casdisk with direct-io=true is always run now)")
    ap.add_argument("--no-warm", dest="warm", action="store_false",
                    help="skip the warm-cache read runs beside the cold ones")
    ap.add_argument("--casdisk-direct-cache", metavar="SIZE",
                    help="add a backend: casdisk with direct-io=true cache=SIZE")
    ap.add_argument("--no-memory", action="store_true",
                    help="skip casdisk's memory and reopen measurements (bench/engine)")
    ap.add_argument("--casdisk-rewrite", action="store_true",
                    help="add a backend: casdisk with small-write-log=false")
    ap.add_argument("--baseline", metavar="PLUGIN",
                    help="add a backend: another build of the plugin (a .so), run with "
                    "its defaults beside this build, interleaved")
    args = ap.parse_args()
    if args.baseline:
        BACKENDS.insert(1, BASE)
    if args.casdisk_direct_cache:
        BACKENDS.insert(2, DCACHE)
    if args.casdisk_rewrite:
        BACKENDS.insert(1, REWRITE)
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
        plots.write(res, base, log)
    if mode == "smoke":
        # The benchmark works if every run produced numbers (the new
        # columns are checked in detail by tests/test-bench.sh).
        bad = [r for r in res["runs"] if not (r["mib_s"] > 0 and r["iops"] > 0 and r["p99_us"] > 0)]
        reads = sum(1 for w in b.m["workloads"] if "read" in WORKLOADS[w][0]["rw"])
        want = (len(b.m["workloads"]) + (reads if args.warm else 0)) * len(BACKENDS) * b.m["reps"]
        if bad or len(res["runs"]) != want or (res["space"] is None and not args.no_space):
            log("FAIL: smoke: %d runs (want %d), %d without numbers" % (
                len(res["runs"]), want, len(bad)))
            sys.exit(1)
        log("PASS: benchmark smoke test")


if __name__ == "__main__":
    main()
