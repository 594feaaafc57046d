#!/usr/bin/python3
"""Crash and power-loss harness for casdisk.

Each iteration runs the randomized workload of driver.py against a
captive nbdkit serving two disks of one store, crashes it, recovers, and
checks that every block holds a value the model allows, then that
`casdisk check` passes.  Crash kinds:

  kill9       kill -9 of nbdkit: the store directory as the kernel has it
  powerloss   kill -9 with CASDISK_IOLOG, then the store is rebuilt from
              the baseline copy plus the log, with unsynced operations
              randomly kept, dropped or torn (powerloss.py)

Kinds that add injected I/O errors (CASDISK_FAULT, lib/storage/io.c) or a
second run:

  fault       nbdkit runs with a fault (EIO or ENOSPC, on the journal or
              the data file, the Nth call, once or sticky), armed from the
              start of the workload or from the shutdown; then a kill -9 or
              a power loss as above.  A flush that failed covers nothing;
              one that succeeded must still hold.
  krp         kill -9, restart, power loss: the first run's I/O log is cut
              just before a journal fdatasync and applied whole (a kill
              there), nbdkit opens that state (recovery) with a second I/O
              log and is killed; then a power loss over both logs, in
              which the first run's unsynced writes are durable only if
              the recovery synced their file
  fullfs      a file system that stays full: sticky ENOSPC on data writes
              during the workload and during the recovery run (which gets
              a few client writes too), then a kill -9 or a power loss of
              the recovery run, and the final recovery without the fault

and crash moments (for either kind):

  workload    a random time into the workload (GC runs: gc-delay=0)
  flush       just after the K-th flush is issued, often while it runs
  open        a random time after nbdkit starts: during open / recovery
  close       during the clean shutdown (SIGTERM, then kill -9)

The store lives on from one iteration to the next (what survived becomes
the next iteration's starting content), and is replaced by a fresh one
(random block size 4K or 64K, random compression) every --new-store-every
iterations and after a violation.

Prints one summary line:
  crash: N iterations, K kill -9, P power-loss, F fault, R krp, S fullfs, V violations,
  recovery median X ms max Y ms
and exits 1 if V > 0 (the evidence is kept in --keep-dir, path printed).
"""

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True          # no __pycache__ in the source tree
sys.path.insert(0, HERE)
import driver      # noqa: E402
import powerloss   # noqa: E402

PY = "/usr/bin/python3"
LIVE = set()        # nbdkit processes started and not yet reaped


def reap_all():
    for p in list(LIVE):
        if p.poll() is None:
            p.kill()
        p.wait()
    LIVE.clear()


class Fail(Exception):
    def __init__(self, msg, cls="harness"):
        super().__init__(msg)
        self.cls = cls


class Harness:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.work = a.workdir
        os.makedirs(self.work, exist_ok=True)
        self.env_extra = sanitizer_env()
        self.env_extra.update(e.split("=", 1) for e in a.env)
        self.n = self.nkill9 = self.nkill9cut = self.npower = self.violations = 0
        self.nfault = self.nkrp = self.nfullfs = 0
        self.fault_specs = {}       # fault kinds: "eio once", "enospc sticky", ... -> count
        self.fault_fired = 0        # fault iterations whose fault fired
        self.anomalies = 0
        self.recovery_ms = []
        self.moments = {}
        self.store_iter = 0
        self.epoch = 0
        self.kept = []
        self.classes = {}
        self.ops_total = {}
        self.bg_steps = {}          # crash points by background step (I/O-logged runs)

    # -------------------------------------------------------------- helpers

    def log(self, *msg):
        if self.a.verbose:
            print(*msg, flush=True)

    def new_store(self):
        self.epoch += 1
        self.store_iter = 0
        self.bs = self.rng.choice(self.a.block_sizes)
        self.comp = self.rng.choice(("3", "3", "1", "off"))
        self.store = os.path.join(self.work, "store")
        self.images = os.path.join(self.work, "images")
        for p in (self.store, self.images):
            shutil.rmtree(p, ignore_errors=True)
        os.makedirs(self.images)
        size = self.a.size
        self.run_tool(["create", self.store, "--size", str(size), "--block-size", str(self.bs),
                       "--compression", self.comp, "--disk", "a"])
        self.run_tool(["disk", "add", self.store, "b", str(size)])
        self.log("new store: block size %d, compression %s" % (self.bs, self.comp))

    def run_tool(self, args, check=True):
        r = subprocess.run([self.a.casdisk] + args, capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise Fail("casdisk %s: exit %d: %s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def start_nbdkit(self, it, tag, iolog=None, fault=None, arm=None):
        sock = os.path.join(it, "sock")
        pidf = os.path.join(it, "pid")
        for p in (sock, pidf):
            if os.path.exists(p):
                os.unlink(p)
        env = dict(os.environ)
        env.update(self.env_extra)
        for k in ("CASDISK_IOLOG", "CASDISK_FAULT", "CASDISK_FAULT_ARM"):
            env.pop(k, None)
        if iolog:
            env["CASDISK_IOLOG"] = iolog
        if fault:
            env["CASDISK_FAULT"] = fault
            if arm:
                env["CASDISK_FAULT_ARM"] = arm
        args = [self.a.nbdkit, "-f", "-U", sock, "-P", pidf, self.a.plugin,
                "store=" + self.store, "gc-delay=%d" % self.gc_delay] + self.extra_keys
        logf = open(os.path.join(it, "nbdkit-%s.log" % tag), "ab")
        t0 = time.monotonic()
        p = subprocess.Popen(args, env=env, stdout=logf, stderr=subprocess.STDOUT)
        LIVE.add(p)
        logf.close()
        return p, sock, t0

    def wait_ready(self, p, sock, t0, timeout=30):
        """Wait until the socket accepts and a first read succeeds; returns ms."""
        import nbd
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise Fail("nbdkit exited with status %d at start" % p.returncode, "open-failed")
            if os.path.exists(sock):
                try:
                    h = nbd.NBD()
                    h.connect_uri(driver.uri_of(sock, "a"))
                    h.pread(512, 0)
                    ms = (time.monotonic() - t0) * 1000
                    h.shutdown()
                    del h
                    return ms
                except nbd.Error:
                    pass
            time.sleep(0.002)
        raise Fail("nbdkit not ready within %d s" % timeout, "open-failed")

    def stop_nbdkit(self, p, timeout=60):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            LIVE.discard(p)
            return "nbdkit did not stop within %d s of SIGTERM" % timeout
        LIVE.discard(p)
        if rc != 0:
            return "nbdkit exited with status %d at shutdown" % rc
        return None

    def kill9(self, p):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.wait()
        LIVE.discard(p)

    # ------------------------------------------------------------ iteration

    def crash_run(self, it, tag, kind, action, info, fault=None, arm=None):
        """Run nbdkit on the store, let ACTION(p, sock, t0) crash it, and
        leave the crashed (kill9) or simulated (powerloss) state in the store."""
        iolog = None
        if kind in ("powerloss", "kill9-cut", "krp"):
            iolog = os.path.join(it, "iolog-" + tag)
            copy_tree(self.store, os.path.join(it, "baseline-" + tag))
        self.cur_iolog = iolog
        p, sock, t0 = self.start_nbdkit(it, tag, iolog, fault, arm)
        try:
            action(p, sock, t0)
        finally:
            if p.poll() is None:
                self.kill9(p)
        info["exit-" + tag] = p.returncode
        if kind == "krp":
            self.krp_first(it, tag, iolog, info)
        elif kind in ("powerloss", "kill9-cut"):
            log = b""                    # killed before the engine opened its log
            if os.path.exists(iolog):
                with open(iolog, "rb") as f:
                    log = f.read()
            sim = os.path.join(it, "simulated-" + tag)
            if self.a.self_test:
                cut, where = len(log), "end"
            else:
                cut, where = powerloss.cut_points(log, self.rng,
                                                  0.5 if kind == "powerloss" else 0.1)
            info["cut-" + tag] = [cut, where]
            bg = where.rsplit("[bg ", 1)[-1].rstrip("]") if "[bg " in where else "-"
            self.bg_steps[bg] = self.bg_steps.get(bg, 0) + 1
            st = powerloss.simulate(os.path.join(it, "baseline-" + tag), log[:cut], sim,
                                    random.Random(self.rng.randrange(1 << 30)),
                                    sabotage=self.a.self_test, keep_all=kind == "kill9-cut")
            info["powerloss-" + tag] = st
            for k, v in st["ops"].items():
                self.ops_total[k] = self.ops_total.get(k, 0) + v
            shutil.rmtree(self.store)
            copy_tree(sim, self.store)
        else:
            copy_tree(self.store, os.path.join(it, "crashed-" + tag))

    def krp_first(self, it, tag, iolog, info):
        """kill -9 between a journal write and its fdatasync: the log of the
        run cut just before one of its journal syncs, applied whole."""
        log = b""
        if os.path.exists(iolog):
            with open(iolog, "rb") as f:
                log = f.read()
        starts = []
        recs, used = powerloss.parse(log, starts)
        idx = [k for k, x in enumerate(recs) if x[0] == "S" and x[1][0].startswith("journal")]
        if idx:
            k = self.rng.choice(idx)
            cut, where = starts[k], "before S %s #%d (kill)" % (recs[k][1][0], k)
        else:
            cut, where = used, "end (no journal sync)"
        info["cut-" + tag] = [cut, where]
        self.krp_log = log[:cut]
        sim = os.path.join(it, "killed-" + tag)
        st = powerloss.simulate(os.path.join(it, "baseline-" + tag), log[:cut], sim,
                                random.Random(self.rng.randrange(1 << 30)), keep_all=True)
        info["powerloss-" + tag] = st
        shutil.rmtree(self.store)
        copy_tree(sim, self.store)

    def krp_restart(self, it, info):
        """The restart (recovery) with its own I/O log, killed; then a power
        loss over both logs: the first run's writes after its last sync of
        a file are durable only if the recovery synced that file."""
        iolog2 = os.path.join(it, "iolog-restart")
        p, sock, t0 = self.start_nbdkit(it, "restart", iolog2)
        try:
            try:
                self.wait_ready(p, sock, t0)
            except Fail as e:
                info["restart"] = str(e)  # the final recovery will tell
            time.sleep(self.rng.random() * 0.5)
        finally:
            self.kill9(p)
        log2 = b""
        if os.path.exists(iolog2):
            with open(iolog2, "rb") as f:
                log2 = f.read()
        cut2, where = powerloss.cut_points(log2, self.rng, 0.3)
        info["cut-restart"] = [cut2, where]
        bg = where.rsplit("[bg ", 1)[-1].rstrip("]") if "[bg " in where else "-"
        self.bg_steps[bg] = self.bg_steps.get(bg, 0) + 1
        sim = os.path.join(it, "simulated-restart")
        st = powerloss.simulate(os.path.join(it, "baseline-run"), self.krp_log + log2[:cut2], sim,
                                random.Random(self.rng.randrange(1 << 30)))
        info["powerloss-restart"] = st
        for k, v in st["ops"].items():
            self.ops_total[k] = self.ops_total.get(k, 0) + v
        shutil.rmtree(self.store)
        copy_tree(sim, self.store)

    def fullfs_restart(self, it, info):
        """The recovery run on a file system still full (sticky ENOSPC on
        every data write, from the start): open, the background work
        (erasing with secure-erase, moves), crashed by kill -9 or a power
        loss, at a random time or during the shutdown."""
        kind = "powerloss" if self.rng.random() < 0.5 else "kill9"
        info["fullfs-restart"] = kind
        rng = self.rng

        def action(p, sock, t0):
            self.wait_ready(p, sock, t0)
            time.sleep(rng.random() * 1.5)
            if rng.random() < 0.5:
                p.send_signal(signal.SIGTERM)
                time.sleep(rng.random() * 0.5)
            self.kill9(p)
        self.crash_run(it, "fullfs", kind, action, info, "write:data:1:enospc:sticky")
        info["fault_fired_restart"] = count_in(os.path.join(it, "nbdkit-fullfs.log"), b"(injected)")

    def iteration(self, i, info):
        a = self.a
        rng = self.rng
        it = os.path.join(self.work, "it")
        shutil.rmtree(it, ignore_errors=True)
        os.makedirs(it)
        kind = "powerloss" if rng.random() < a.power_fraction else "kill9"
        if kind == "kill9" and rng.random() < a.cut_fraction:
            kind = "kill9-cut"
        moment = rng.choices(("workload", "flush", "open", "close"), a.moment_weights)[0]
        double = rng.random() < a.double_fraction
        # The kinds with injected faults or a second run (see the docstring).
        special = None
        r = rng.random()
        for name, frac in (("fault", a.fault_fraction), ("krp", a.krp_fraction),
                           ("fullfs", a.fullfs_fraction)):
            if r < frac:
                special = name
                break
            r -= frac
        fault = arm = None
        if special:
            double = False
            if moment == "open":
                moment = "workload"
            arm = os.path.join(it, "arm")
        if special == "fault":
            op = rng.choice(("write", "write", "sync"))
            f = rng.choice(("journal", "data"))
            err = rng.choice(("eio", "enospc")) if op == "write" else "eio"
            when = rng.choice(("once", "sticky"))
            fault = "%s:%s:%d:%s:%s" % (op, f, rng.choice((1, 1, 2, 3, 5, 10, 30)), err, when)
            self.fault_specs[err + " " + when] = self.fault_specs.get(err + " " + when, 0) + 1
        elif special == "krp":
            kind, moment = "krp", rng.choice(("workload", "flush"))
        elif special == "fullfs":
            kind, moment = "kill9", "workload"
            fault = "write:data:%d:enospc:sticky" % rng.choice((1, 5, 20, 100, 400))
        self.gc_delay = rng.choice((0, 0, 0, 1))
        self.extra_keys = []
        if self.has_recycler:
            self.extra_keys = ["compact-after=%d" % rng.choice((0, 5, 20))]
        if self.has_space_map:
            # Background checkpoints inside the crash window, erasing with
            # and without keep-erased, zeroes, and the space map verified
            # after every step of the background work.
            self.extra_keys += ["runtime-asserts=true",
                                "checkpoint-after=%s" % rng.choice(("64K", "256K", "1M", "64M")),
                                "keep-erased=%s" % rng.choice(("all", "all", "1M")),
                                "secure-erase=%s" % rng.choice(("false", "false", "true"))]
        seed = rng.randrange(1 << 30)
        # Online snapshots of disk a during the workload, in half of the runs.
        snap_every = rng.choice((0, 0.2, 0.5)) if self.has_snapshots and not special else 0
        info.update({"iteration": i, "kind": kind, "moment": moment, "double": double,
                     "special": special, "fault": fault,
                     "keys": self.extra_keys, "snapshot_every": snap_every,
                     "seed": seed, "block_size": self.bs, "compression": self.comp,
                     "size": a.size, "gc_delay": self.gc_delay, "epoch": self.epoch,
                     "store_iteration": self.store_iter})
        model = os.path.join(it, "model.log")
        images0 = os.path.join(it, "images-start")
        shutil.copytree(self.images, images0)
        drv = None

        # 1. run the workload and crash
        def workload(p, sock, t0):
            nonlocal drv
            if moment == "open":
                time.sleep(rng.random() * a.open_window)
                self.kill9(p)
                return
            self.wait_ready(p, sock, t0)
            dargs = [PY, os.path.join(HERE, "driver.py"), "run", "--sock", sock,
                     "--block-size", str(self.bs), "--size", str(a.size),
                     "--images", self.images, "--model", model, "--seed", str(seed),
                     "--flush-prob", str(rng.choice((0.003, 0.02, 0.07)))]
            if self.cur_iolog:
                dargs += ["--iolog", self.cur_iolog]
            if fault:
                dargs += ["--tolerate-errors"]
                if moment != "close":
                    open(arm, "w").close()      # the fault from the workload on
            if snap_every:
                dargs += ["--snapshot-every", str(snap_every), "--casdisk", a.casdisk,
                          "--store", self.store]
            if moment == "close":
                dargs += ["--duration", "%.3f" % (0.1 + rng.random() * a.max_workload)]
            elif moment == "flush":
                dargs += ["--duration", str(a.max_workload + 5), "--kill-pid", str(p.pid),
                          "--kill-at-flush", str(rng.randrange(0, 12)),
                          "--kill-jitter", "%.4f" % rng.choice((0, 0.0005, 0.002, 0.01))]
            else:
                dargs += ["--duration", str(a.max_workload + 5), "--kill-pid", str(p.pid),
                          "--kill-after", "%.3f" % (rng.random() * a.max_workload)]
            r = subprocess.run(dargs, capture_output=True, text=True,
                               timeout=a.max_workload + 60)
            try:
                drv = json.loads(r.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                drv = {"raw": r.stdout[-2000:], "stderr": r.stderr[-2000:]}
            info["driver"] = drv
            if r.returncode != 0:
                raise Fail("driver (workload) exited with status %d: %s %s" %
                           (r.returncode, r.stdout[-1500:], r.stderr[-1500:]), "driver")
            if moment == "close":
                if fault:
                    open(arm, "w").close()      # the fault during the shutdown
                p.send_signal(signal.SIGTERM)
                time.sleep(rng.random() * a.close_window)
            self.kill9(p)
        self.crash_run(it, "run", kind, workload, info, fault, arm)
        if fault:
            info["fault_fired"] = count_in(os.path.join(it, "nbdkit-run.log"), b"(injected)")
            if special == "fault" and info["fault_fired"]:
                self.fault_fired += 1
        if special == "krp":
            self.krp_restart(it, info)
        elif special == "fullfs":
            self.fullfs_restart(it, info)

        # 2. optionally crash again, during the recovery (open) itself
        if double:
            def early(p, sock, t0):
                time.sleep(rng.random() * a.open_window)
                self.kill9(p)
            self.crash_run(it, "reopen", kind, early, info)

        # 3. recover, verify, stop, check
        viol = []
        out_images = None
        p, sock, t0 = self.start_nbdkit(it, "recover")
        try:
            try:
                ms = self.wait_ready(p, sock, t0)
            except Fail as e:
                viol.append({"class": "open-failed", "what": "recovery: %s" % e,
                             "log": tail(os.path.join(it, "nbdkit-recover.log"))})
            else:
                self.recovery_ms.append(ms)
                info["recovery_ms"] = round(ms, 1)
                out_images = os.path.join(it, "images-after")
                os.makedirs(out_images)
                cut = info.get("cut-run")
                v, counts = driver.verify(sock, self.bs, a.size, images0, model, out_images,
                                          a.strict_fua, cut[0] if cut else None)
                info["model"] = counts
                viol += v
                err = self.stop_nbdkit(p)
                if err:
                    viol.append({"class": "shutdown", "what": err,
                                 "log": tail(os.path.join(it, "nbdkit-recover.log"))})
        finally:
            if p.poll() is None:
                self.kill9(p)
        r = self.run_tool(["check", self.store], check=False)
        info["check_rc"] = r.returncode
        if r.returncode != 0:
            viol.append({"class": "check", "what": "casdisk check exited %d" % r.returncode,
                         "output": (r.stdout + r.stderr)[-3000:]})
        self.drop_snapshots(viol)
        if drv and drv.get("read_mismatch"):
            viol.append({"class": "online-read", "what": "online read mismatch",
                         "detail": drv["read_mismatch"]})
        return viol, out_images

    def drop_snapshots(self, viol):
        """Delete the snapshots of this iteration (offline), so that the next
        one starts with disks a and b alone: deleting releases their blocks
        through the GC of the next run."""
        if not self.has_snapshots:
            return
        r = self.run_tool(["snapshot", "list", self.store, "a", "--json"], check=False)
        try:
            snaps = json.loads(r.stdout) if r.returncode == 0 else None
        except ValueError:
            snaps = None
        if snaps is None:
            viol.append({"class": "snapshot", "what": "snapshot list failed: %s%s" % (r.stdout, r.stderr)})
            return
        for sn in snaps:
            r = self.run_tool(["snapshot", "delete", self.store, "a", sn["name"]], check=False)
            if r.returncode != 0:
                viol.append({"class": "snapshot", "what": "snapshot delete %s failed: %s%s" %
                             (sn["name"], r.stdout, r.stderr)})

    def keep(self, i, info, err):
        dst = os.path.join(self.a.keep_dir, "crash-%d-%d-%s" % (os.getpid(), i, info.get("kind")))
        os.makedirs(self.a.keep_dir, exist_ok=True)
        for junk in ("sock", "pid"):
            if os.path.exists(os.path.join(self.work, "it", junk)):
                os.unlink(os.path.join(self.work, "it", junk))
        copy_tree(os.path.join(self.work, "it"), dst)
        if os.path.isdir(self.store):
            copy_tree(self.store, os.path.join(dst, "store-after"))
        if self.a.copy_binaries:
            shutil.copytree(os.path.dirname(self.a.plugin), os.path.join(dst, "bin"))
        info["error"] = err
        with open(os.path.join(dst, "info.json"), "w") as f:
            json.dump(info, f, indent=1, default=str)
        with open(os.path.join(dst, "REPRO"), "w") as f:
            f.write(repro_text(self, info))
        self.kept.append(dst)
        return dst

    def run(self):
        a = self.a
        if a.copy_binaries:
            # Private copies: a rebuild of the tree must not pull them away mid-run.
            bindir = os.path.join(self.work, "bin")
            os.makedirs(bindir, exist_ok=True)
            for attr in ("plugin", "casdisk"):
                dst = os.path.join(bindir, os.path.basename(getattr(a, attr)))
                shutil.copy2(getattr(a, attr), dst)
                setattr(a, attr, dst)
        hp = subprocess.run([a.nbdkit, a.plugin, "--help"], capture_output=True, text=True)
        self.has_recycler = "compact-after" in hp.stdout
        self.has_space_map = "runtime-asserts" in hp.stdout
        ht = subprocess.run([a.casdisk, "--help"], capture_output=True, text=True)
        self.has_snapshots = "snapshot create" in ht.stdout + ht.stderr
        self.extra_keys = []
        self.snaps_logged = self.snaps_verified = 0
        self.new_store()
        t_end = time.monotonic() + a.time_limit if a.time_limit else None
        t0 = time.monotonic()
        i = 0
        while i < a.iterations:
            if t_end and time.monotonic() > t_end:
                print("crash: time limit reached after %d iterations" % i, flush=True)
                break
            if self.store_iter >= a.new_store_every:
                self.new_store()
            info = {"iteration": i}
            try:
                viol, out_images = self.iteration(i, info)
            except Exception as e:
                if not isinstance(e, Fail):
                    traceback.print_exc()
                viol, out_images = [{"class": getattr(e, "cls", "harness"),
                                     "what": "%s: %s" % (type(e).__name__, e)}], None
                info.setdefault("error", str(e))
            self.n += 1
            if info.get("kind") == "powerloss":
                self.npower += 1
            elif info.get("kind") in ("kill9", "kill9-cut", "krp"):
                self.nkill9 += 1
                if info["kind"] == "kill9-cut":
                    self.nkill9cut += 1
            sp = info.get("special")
            if sp == "fault":
                self.nfault += 1
            elif sp == "krp":
                self.nkrp += 1
            elif sp == "fullfs":
                self.nfullfs += 1
            m = info.get("moment")
            self.moments[m] = self.moments.get(m, 0) + 1
            mc = info.get("model") or {}
            self.snaps_logged += mc.get("snapshots", 0)
            self.snaps_verified += mc.get("snapshots_found", 0)
            if viol and a.self_test:
                self.violations += 1
                print("crash: self-test: sabotage detected in iteration %d: %s" %
                      (i, json.dumps(viol[:1], default=str)[:300]), flush=True)
                self.new_store()
            elif viol:
                self.violations += 1
                for c in sorted({v.get("class", "?") for v in viol}):
                    self.classes[c] = self.classes.get(c, 0) + 1
                dst = self.keep(i, info, viol)
                print("crash: VIOLATION in iteration %d (%s at %s): %s\n  kept in %s" %
                      (i, info.get("kind"), info.get("moment"),
                       json.dumps(viol[:3], default=str)[:1500], dst), flush=True)
                self.new_store()
            else:
                shutil.rmtree(self.images)
                shutil.copytree(out_images, self.images)
                self.store_iter += 1
            i += 1
            if a.progress and (i % a.progress == 0 or i == a.iterations):
                rec = sorted(self.recovery_ms)
                print("crash: %d/%d iterations, %d violations, %.0f s, recovery median %.0f ms" %
                      (i, a.iterations, self.violations, time.monotonic() - t0,
                       statistics.median(rec) if rec else 0), flush=True)
            self.log(json.dumps({k: v for k, v in info.items()
                                 if k not in ("seed", "epoch", "compression", "size")},
                                default=str))
        rec = self.recovery_ms
        med = statistics.median(rec) if rec else 0
        mx = max(rec) if rec else 0
        print("crash: %d iterations, %d kill -9, %d power-loss, %d fault, %d krp, %d fullfs, "
              "%d violations, recovery median %.0f ms max %.0f ms" %
              (self.n, self.nkill9, self.npower, self.nfault, self.nkrp, self.nfullfs,
               self.violations, med, mx), flush=True)
        if self.nfault or self.nkrp or self.nfullfs:
            print("crash: fault iterations %d (fault fired in %d; %s), kill-restart-power-loss %d, "
                  "full file system across a restart %d" %
                  (self.nfault, self.fault_fired,
                   ", ".join("%s %d" % kv for kv in sorted(self.fault_specs.items())) or "-",
                   self.nkrp, self.nfullfs), flush=True)
        print("crash: of the kill -9, %d replayed the I/O log up to a chosen operation "
              "(the process dying just before it)" % self.nkill9cut)
        if self.bg_steps:
            print("crash: I/O-logged crash points by background step in progress "
                  "(- = none): %s" % ", ".join("%s %d" % kv for kv in sorted(self.bg_steps.items())))
        if self.ops_total:
            print("crash: operations in the I/O-logged runs (up to the cut): %s" %
                  ", ".join("%s %d" % kv for kv in sorted(self.ops_total.items())))
        if self.snaps_logged:
            print("crash: online snapshots: %d requested during the workloads, %d found after "
                  "the crash and verified block by block" % (self.snaps_logged, self.snaps_verified))
        if self.classes:
            print("crash: iterations with violations, by class: %s" % json.dumps(self.classes))
        if self.kept:
            print("crash: evidence kept in:\n  " + "\n  ".join(self.kept))
        if a.verbose:
            print("crash: moments %s" % json.dumps(self.moments))
        if a.self_test:
            print("crash: self-test: %d of %d sabotaged runs detected" % (self.violations, self.n))
            return 0 if self.violations else 1
        return 1 if self.violations else 0


def count_in(path, needle):
    try:
        with open(path, "rb") as f:
            return f.read().count(needle)
    except OSError:
        return 0


def copy_tree(src, dst):
    """Copy a directory keeping holes (stores are sparse)."""
    subprocess.run(["cp", "-a", "--sparse=always", src, dst], check=True)


def tail(path, n=1500):
    try:
        with open(path, "rb") as f:
            return f.read()[-n:].decode("utf-8", "replace")
    except OSError:
        return ""


def sanitizer_env():
    """nbdkit is not built with the sanitizers: a sanitized plugin needs
    their runtime preloaded (as tests/functions.sh does)."""
    if os.environ.get("CASDISK_SANITIZERS") != "yes":
        return {}
    libs = [subprocess.run(["gcc", "-print-file-name=" + l], capture_output=True,
                           text=True).stdout.strip() for l in ("libasan.so", "libubsan.so")]
    return {"LD_PRELOAD": ":".join(libs),
            "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}


def repro_text(h, info):
    cut = info.get("cut-run")
    return """Crash-harness violation, iteration %(iteration)s (%(kind)s at %(moment)s)

info.json        what ran (seed, block size, keys, cut points), the driver's
                 stats, the violations
model.log        the driver's model (see driver.py)
images-start/    disk contents before the workload (a.img, b.img)
images-after/    what was read after recovery (if it got that far)
Phases: "run" (the workload, crashed), "reopen" (if info.json says
double: a second crash during the recovery's open), "recover" (verified).
baseline-PHASE/  (power loss, kill9-cut) the store before nbdkit started
iolog-PHASE      (power loss, kill9-cut) the engine's I/O log, whole: info.json's
                 cut-PHASE is the byte offset where the simulated crash happened
simulated-PHASE/ (power loss, kill9-cut) the store rebuilt by powerloss.py
crashed-PHASE/   (kill9) the store as the kill left it
                 (both: before the next phase's recovery)
store-after/     the store after the recovery run
bin/             the plugin and casdisk tool that ran
nbdkit-PHASE.log nbdkit's output

Re-run the recovery on a copy (from this directory):
  cp -a --sparse=always simulated-run /tmp/s     (or crashed-run, or the -reopen one)
  nbdkit -f -U /tmp/s.sock $PWD/bin/nbdkit-casdisk-plugin.so store=/tmp/s &
  /usr/bin/python3 %(here)s/driver.py verify --sock /tmp/s.sock --block-size %(bs)s \\
      --size %(size)s --images images-start --model model.log%(cutarg)s
  kill %%1; bin/casdisk check /tmp/s
Rebuild another crash state from the same log:
  /usr/bin/python3 %(here)s/powerloss.py baseline-run iolog-run /tmp/s2 --seed N%(cutarg2)s%(keepall)s
""" % dict(info, here=HERE, bs=info.get("block_size"), size=h.a.size,
           cutarg=" --iolog-cut %d" % cut[0] if cut else "",
           cutarg2=" --cut %d" % cut[0] if cut else "",
           keepall=" --keep-all" if info.get("kind") == "kill9-cut" else "")


def main():
    top = os.environ.get("top_builddir") or os.path.abspath(os.path.join(HERE, "..", ".."))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=int(os.environ.get("CRASH_ITERATIONS", 100)))
    p.add_argument("--seed", type=int, default=int(os.environ.get("CRASH_SEED", 0)) or None)
    p.add_argument("--workdir", help="scratch directory (default: a new one in $TMPDIR)")
    p.add_argument("--keep-dir", default=os.environ.get("CRASH_KEEP_DIR",
                                                         os.path.join(top, "tests", "crash-kept")))
    p.add_argument("--size", type=driver.parse_size, default="8M", help="size of each disk")
    p.add_argument("--block-sizes", default="4096,4096,65536",
                   help="block sizes to pick from for new stores")
    p.add_argument("--power-fraction", type=float, default=0.5)
    p.add_argument("--cut-fraction", type=float, default=0.4,
                   help="fraction of the kill -9 iterations that end the process at a chosen "
                        "I/O log record (replaying the log up to it) rather than at the kill")
    p.add_argument("--max-workload", type=float, default=1.5, help="seconds")
    p.add_argument("--open-window", type=float, default=0.1, help="seconds")
    p.add_argument("--close-window", type=float, default=0.05, help="seconds")
    p.add_argument("--new-store-every", type=int, default=25)
    p.add_argument("--double-fraction", type=float, default=0.2,
                   help="fraction of iterations that crash again during recovery")
    p.add_argument("--moment-weights", default="4,3,1,1",
                   help="weights of the crash moments workload,flush,open,close")
    p.add_argument("--fault-fraction", type=float, default=0.1,
                   help="fraction of iterations with an injected fault (CASDISK_FAULT)")
    p.add_argument("--krp-fraction", type=float, default=0.05,
                   help="fraction of kill -9 / restart / power-loss iterations")
    p.add_argument("--fullfs-fraction", type=float, default=0.05,
                   help="fraction of iterations with a file system that stays full")
    p.add_argument("--self-test", action="store_true",
                   help="sabotage the power-loss simulation (forget the last journal sync): "
                        "violations must be found")
    p.add_argument("--strict-fua", default="yes", choices=("yes", "no"))
    p.add_argument("--time-limit", type=float, default=0, help="stop after this many seconds")
    p.add_argument("--progress", type=int, default=0, help="print progress every N iterations")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for nbdkit")
    p.add_argument("--nbdkit", default="nbdkit")
    p.add_argument("--plugin", default=os.path.join(top, "plugin", ".libs", "nbdkit-casdisk-plugin.so"))
    p.add_argument("--casdisk", default=os.path.join(top, "tools", "casdisk"))
    p.add_argument("--copy-binaries", default="yes", choices=("yes", "no"),
                   help="run private copies of the plugin and the tool (default yes)")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args()
    if a.seed is None:
        a.seed = random.randrange(1 << 30)
    a.block_sizes = [driver.parse_size(x) for x in a.block_sizes.split(",")]
    a.strict_fua = a.strict_fua == "yes"
    a.copy_binaries = a.copy_binaries == "yes"
    a.moment_weights = [float(x) for x in a.moment_weights.split(",")]
    if a.self_test:
        a.power_fraction, a.double_fraction, a.moment_weights = 1, 0, [1, 1, 0, 0]
        a.fault_fraction = a.krp_fraction = a.fullfs_fraction = 0
    tmp = None
    if not a.workdir:
        tmp = a.workdir = __import__("tempfile").mkdtemp(prefix="casdisk-crash.")
    print("crash: seed %d, %d iterations, workdir %s" % (a.seed, a.iterations, a.workdir), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        rc = Harness(a).run()
    finally:
        reap_all()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
