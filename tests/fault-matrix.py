#!/usr/bin/python3
"""Fault-injection matrix: every fault site crossed with every phase of
the background work (run by tests/test-fault-matrix.sh).

  fault-matrix.py --nbdkit NBDKIT --plugin PLUGIN --casdisk CASDISK --workdir DIR
                  [--full] [--only SUBSTRING] [--keep-dir DIR] [-v]

A cell is (phase, fault).  The fault is a CASDISK_FAULT spec (lib/storage/io.c)
held back by CASDISK_FAULT_ARM until the workload reaches the phase:

  flush       a client's writes and flushes
  gc          the delayed GC (gc-delay=0): trimmed blocks killed, BLOCK_DEL
              journaled, their space settled and erased (punched)
  recycle     a recycler pass (compact-after=5): blocks moved from the end
              of the data file into the space the GC freed, BLOCK_MOVE
              journaled, the old places erased, the file cut
  checkpoint  a background checkpoint (checkpoint-after=64K)
  close       the clean shutdown (SIGTERM): final flush, checkpoint, tidy
  gc-close    armed before an unflushed trim; one GC tick (kills the
              blocks, journals BLOCK_DEL), then the shutdown

For each cell: a fresh store, nbdkit with the fault, a workload that
writes known data and flushes (the model records which writes a
successful flush covered), the phase, then SIGTERM (kill -9 after 15 s);
then nbdkit again without the fault, and:

  * the store opens;
  * every block holds a value the model allows: the last version a
    successful flush covered, or a later one (a write or trim that was
    issued; a failed flush covers nothing, a failed write may or may not
    have happened); trimmed blocks read as zeroes unless the trim was not
    flushed, when the old data is allowed too;
  * reads do not fail, the recovered nbdkit stops cleanly (exit 0);
  * `casdisk check STORE` exits 0;
  * the fault fired (nbdkit's log has "(injected)"): a cell that did not
    inject anything proves nothing and fails.

The phase's background step is looked for in the I/O log (CASDISK_IOLOG:
the X records, see lib/storage/io.c) and reported.  Prints one line per cell and
  fault-matrix: N cells, P passed, F failed
and exits 1 if a cell failed.  Evidence of failed cells (the store before
and after recovery, logs, info.json) goes to --keep-dir.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

BS = 4096
SIZE = 4 << 20
NB = SIZE // BS

# The fault sites of each phase: what that phase does (a site the phase
# never uses would inject nothing).  (op, file).
SITES = {
    "flush": [("write", "data"), ("sync", "data"), ("write", "journal"), ("sync", "journal"),
              ("read", "data")],
    "gc": [("punch", "data"), ("sync", "data"), ("write", "journal"), ("sync", "journal")],
    "recycle": [("read", "data"), ("write", "data"), ("sync", "data"), ("write", "journal"),
                ("sync", "journal"), ("punch", "data")],
    "checkpoint": [("write", "checkpoint"), ("sync", "checkpoint"), ("create", "checkpoint"),
                   ("rename", "checkpoint"), ("write", "journal"), ("sync", "journal"),
                   ("dirsync", "dir")],
    "close": [("write", "journal"), ("sync", "journal"), ("sync", "data"),
              ("write", "checkpoint"), ("sync", "checkpoint"), ("rename", "checkpoint"),
              ("punch", "data"), ("truncate", "data")],
    "gc-close": [("write", "journal"), ("sync", "journal"), ("punch", "data")],
}
KEYS = {
    "flush": ["gc-delay=30", "compact-after=100"],
    "gc": ["gc-delay=0", "compact-after=100"],
    "recycle": ["gc-delay=0", "compact-after=5", "recycle-tranquility=0"],
    "checkpoint": ["gc-delay=30", "compact-after=100", "checkpoint-after=64K"],
    "close": ["gc-delay=0", "compact-after=100"],
    "gc-close": ["gc-delay=0", "compact-after=100"],
}
# The background step (I/O log X record) each phase is about.
STEP = {"gc": "erase", "recycle": "move", "checkpoint": "checkpoint"}
# ENOSPC-prone sites: the ones that allocate space.
ENOSPC_SITES = {("write", "data"), ("write", "journal"), ("write", "checkpoint"),
                ("create", "checkpoint"), ("truncate", "data")}


def cells(full):
    out = []
    for phase, sites in SITES.items():
        for op, f in sites:
            if full:
                variants = ["%d:eio:%s" % (n, w) for n in (1, 2, 4) for w in ("once", "sticky")]
                if (op, f) in ENOSPC_SITES:
                    variants += ["%d:enospc:sticky" % n for n in (1, 2, 4)]
            else:
                variants = ["1:eio:once"]
                if (op, f) in ENOSPC_SITES:
                    variants.append("1:enospc:sticky")
                elif phase in ("close", "gc-close") or (op, f) == ("sync", "journal"):
                    variants.append("1:eio:sticky")
                if (op, f) == ("write", "journal"):
                    variants.append("1:eio:sticky")     # the original write:journal:1
            for v in variants:
                out.append((phase, "%s:%s:%s" % (op, f, v)))
    return out


def bhash(b):
    return hashlib.blake2b(b, digest_size=8).hexdigest()


class Model:
    """Per block: the versions issued (v0 = zeroes), the last acked one,
    and the floor (the last one a successful flush covered)."""

    def __init__(self):
        z = bhash(bytes(BS))
        self.vers = [[z] for _ in range(NB)]
        self.acked = [0] * NB
        self.floor = [0] * NB
        self.data = {}

    def issue(self, b, data):
        h = bhash(data)
        self.data[h] = data
        self.vers[b].append(h)
        return len(self.vers[b]) - 1

    def ack(self, b, i):
        self.acked[b] = max(self.acked[b], i)

    def flushed(self, snap):
        for b in range(NB):
            self.floor[b] = max(self.floor[b], snap[b])

    def allowed(self, b):
        return self.vers[b][self.floor[b]:]


class Cell:
    def __init__(self, m, phase, spec, idx):
        self.m = m
        self.a = m.a
        self.phase = phase
        self.spec = spec
        self.dir = os.path.join(self.a.workdir, "cell-%03d" % idx)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.store = os.path.join(self.dir, "store")
        self.arm = os.path.join(self.dir, "arm")
        self.iolog = os.path.join(self.dir, "iolog")
        self.sock = os.path.join(self.dir, "sock")
        self.model = Model()
        self.rng = random.Random("%s %s" % (phase, spec))
        self.info = {"phase": phase, "fault": spec, "ops": {}, "errors": []}
        self.h = None

    # ---------------------------------------------------------- nbdkit

    def start(self, tag, fault):
        env = dict(os.environ)
        env.update(self.m.san_env)
        for k in ("CASDISK_FAULT", "CASDISK_FAULT_ARM", "CASDISK_IOLOG"):
            env.pop(k, None)
        keys = ["store=" + self.store, "size=%d" % SIZE, "block-size=4K", "compression=off",
                "runtime-asserts=true"] + KEYS[self.phase]
        if fault:
            env["CASDISK_FAULT"] = self.spec
            env["CASDISK_FAULT_ARM"] = self.arm
            env["CASDISK_IOLOG"] = self.iolog
        else:
            keys = ["store=" + self.store, "runtime-asserts=true"]
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        log = open(os.path.join(self.dir, "nbdkit-%s.log" % tag), "ab")
        p = subprocess.Popen([self.a.nbdkit, "-f", "-U", self.sock, self.a.plugin] + keys,
                             env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.m.live.add(p)
        import nbd
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if p.poll() is not None:
                self.m.live.discard(p)
                return None, "nbdkit exited with status %d at start" % p.returncode
            if os.path.exists(self.sock):
                try:
                    h = nbd.NBD()
                    h.connect_uri("nbd+unix:///?socket=" + self.sock)
                    return p, h
                except nbd.Error:
                    pass
            time.sleep(0.01)
        self.kill(p)
        return None, "nbdkit not ready within 20 s"

    def kill(self, p):
        if p.poll() is None:
            p.kill()
        p.wait()
        self.m.live.discard(p)

    def stop(self, p, timeout=15):
        """SIGTERM, then kill -9 after TIMEOUT s: (exit status, how)."""
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            rc = p.poll()
            if rc is not None:
                self.m.live.discard(p)
                return rc, "exit"
            # With the sanitizers, glibc can hang in exit() under the
            # preloaded libasan after many error messages (see
            # tests/functions.sh): once the store's lock is free the close
            # has finished and the hang is not ours.
            if (self.m.san_env and time.monotonic() - t0 > 2 and subprocess.run(
                    ["flock", "-n", os.path.join(self.store, "superblock"), "true"]).returncode == 0):
                self.kill(p)
                return None, "asan-exit-hang"
            time.sleep(0.05)
        self.kill(p)
        return None, "killed after %d s" % timeout

    # ---------------------------------------------------------- client ops

    def op(self, what, fn):
        import nbd
        try:
            fn()
            self.info["ops"][what + " ok"] = self.info["ops"].get(what + " ok", 0) + 1
            return True
        except nbd.Error as e:
            self.info["ops"][what + " failed"] = self.info["ops"].get(what + " failed", 0) + 1
            if len(self.info["errors"]) < 5:
                self.info["errors"].append("%s: %s" % (what, e))
            return False

    def write(self, b, n=1, data=None):
        if data is None:
            data = b"".join(self.rng.randbytes(BS) if self.rng.random() < 0.8
                            else bytes([(b + k) % 251 + 1]) * BS for k in range(n))
        idx = [self.model.issue(b + k, data[k * BS:(k + 1) * BS]) for k in range(n)]
        if self.op("write", lambda: self.h.pwrite(data, b * BS)):
            for k in range(n):
                self.model.ack(b + k, idx[k])
            return True
        return False

    def trim(self, b, n):
        z = bytes(BS)
        idx = [self.model.issue(b + k, z) for k in range(n)]
        if self.op("trim", lambda: self.h.trim(n * BS, b * BS)):
            for k in range(n):
                self.model.ack(b + k, idx[k])
            return True
        return False

    def flush(self):
        snap = list(self.model.acked)
        if self.op("flush", self.h.flush):
            self.model.flushed(snap)
            return True
        return False

    # ---------------------------------------------------------- evidence

    def log_has(self, tag, needle):
        try:
            with open(os.path.join(self.dir, "nbdkit-%s.log" % tag), "rb") as f:
                return f.read().count(needle.encode())
        except OSError:
            return 0

    def steps_after_arm(self):
        """X records of the I/O log after the arm point."""
        try:
            with open(self.iolog, "rb") as f:
                f.seek(self.arm_at)
                log = f.read()
        except (OSError, AttributeError):
            return set()
        out = set()
        pos = 0
        while True:
            i = log.find(b"\nX ", pos)
            if i < 0:
                break
            j = log.find(b"\n", i + 1)
            if j < 0:
                break
            out.add(log[i + 3:j].decode("ascii", "replace"))
            pos = j
        return out

    def do_arm(self):
        try:
            self.arm_at = os.path.getsize(self.iolog)
        except OSError:
            self.arm_at = 0
        open(self.arm, "w").close()

    def wait_for(self, step, timeout, poke=None):
        """Until the phase's background step appears after the arm point
        (or the fault fired and a second passed), at most TIMEOUT s."""
        deadline = time.monotonic() + timeout
        fired_at = None
        while time.monotonic() < deadline:
            if step in self.steps_after_arm():
                time.sleep(0.3)          # let the step finish (or fail)
                return True
            if fired_at is None and self.log_has("run", "(injected)"):
                fired_at = time.monotonic()
            if fired_at is not None and time.monotonic() - fired_at > 1.5:
                return False
            if poke:
                poke()
            time.sleep(0.05)
        return False

    # ---------------------------------------------------------- the cell

    def workload(self):
        ph = self.phase
        # Seed: known data, flushed (must survive whatever follows).
        nseed = 512 if ph == "recycle" else 256
        for b in range(0, nseed, 32):
            self.write(b, 32)
        if not self.flush():
            raise RuntimeError("the seed flush failed before the fault was armed")
        if ph == "close":
            # The GC frees something before the shutdown, and the close has
            # unflushed work to do: a trim, overwrites.
            # The trimmed tail (blocks 192..255, written last) leaves free
            # space at the end of the data file for the close to cut.
            self.trim(0, 32)
            self.trim(192, 64)
            self.flush()
            time.sleep(1.3)
            self.trim(64, 32)
            self.write(96, 4)
            self.do_arm()
            return
        if ph == "gc-close":
            self.do_arm()
            self.trim(0, 64)
            self.write(600, 16)
            time.sleep(1.3)             # one GC tick: kills, BLOCK_DEL, settle
            return
        self.do_arm()
        if ph == "flush":
            for r in range(4):
                self.write(256 + 32 * r, 32)
                self.write(self.rng.randrange(0, 224), 8)
                self.flush()
        elif ph == "gc":
            self.trim(0, 128)
            self.flush()
            self.info["step_seen"] = self.wait_for("erase", 5)
            self.write(700, 8)
            self.flush()
        elif ph == "recycle":
            self.trim(0, 384)
            self.flush()
            self.info["step_seen"] = self.wait_for("move", 8)
            self.write(800, 8)
            self.flush()
        elif ph == "checkpoint":
            r = [0]

            def poke():
                if r[0] < 80:
                    self.write(256 + (r[0] * 16) % 512, 16)
                    self.flush()
                    r[0] += 1
            self.info["step_seen"] = self.wait_for("checkpoint", 8, poke)
            self.write(900, 8)
            self.flush()

    def verify(self, h):
        import nbd
        bad = []
        read_errors = 0
        for b0 in range(0, NB, 16):
            try:
                buf = h.pread(16 * BS, b0 * BS)
            except nbd.Error:
                buf = None
            for k in range(16):
                b = b0 + k
                if buf is None:
                    try:
                        d = h.pread(BS, b * BS)
                    except nbd.Error as e:
                        read_errors += 1
                        if len(bad) < 8:
                            bad.append("block %d: read error: %s" % (b, e))
                        continue
                else:
                    d = buf[k * BS:(k + 1) * BS]
                hh = bhash(d)
                if hh not in self.model.allowed(b):
                    what = "zeroes" if d == bytes(BS) else "other data"
                    if hh in self.model.vers[b]:
                        what = "v%d, older than the flushed v%d" % (
                            self.model.vers[b].index(hh), self.model.floor[b])
                    if len(bad) < 8:
                        bad.append("block %d: %s (allowed v%d..v%d)" % (
                            b, what, self.model.floor[b], len(self.model.vers[b]) - 1))
                    bad.append(None)
        nbad = sum(1 for x in bad if x is None) + read_errors
        return [x for x in bad if x is not None], nbad, read_errors

    def run(self):
        fails = []
        p, h = self.start("run", True)
        if p is None:
            return ["start with the fault: %s" % h]
        self.h = h
        try:
            self.workload()
        except Exception as e:
            fails.append("workload: %s: %s" % (type(e).__name__, e))
        self.info["steps"] = sorted(self.steps_after_arm())
        try:
            h.shutdown()
        except Exception:
            pass
        self.h = None
        del h
        rc, how = self.stop(p)
        self.info["run_exit"] = [rc, how]
        fired = self.log_has("run", "(injected)")
        self.info["fired"] = fired
        if not fired:
            fails.append("vacuous: the fault never fired")
        self.copy("store-before-recovery")
        # Recovery without the fault.
        p, h = self.start("recover", False)
        if p is None:
            fails.append("open-failed: %s: %s" % (h, self.tail("recover")))
        else:
            bad, nbad, nre = self.verify(h)
            if nbad:
                fails.append("content: %d blocks wrong or unreadable (%d read errors): %s"
                             % (nbad, nre, "; ".join(bad)))
            try:
                h.shutdown()
            except Exception:
                pass
            del h
            rc, how = self.stop(p)
            if how == "asan-exit-hang":
                pass
            elif rc != 0:
                fails.append("shutdown: recovered nbdkit exited %s (%s): %s"
                             % (rc, how, self.tail("recover")))
        env = dict(os.environ)
        env.update({k: v for k, v in self.m.san_env.items() if k != "LD_PRELOAD"})
        r = subprocess.run([self.a.casdisk, "check", self.store], capture_output=True,
                           text=True, timeout=120, env=env)
        self.info["check_rc"] = r.returncode
        if r.returncode != 0:
            fails.append("check: casdisk check exited %d: %s" % (
                r.returncode, " | ".join((r.stdout + r.stderr).strip().splitlines()[-4:])))
        return fails

    def copy(self, name):
        if os.path.isdir(self.store):
            subprocess.run(["cp", "-a", "--sparse=always", self.store,
                            os.path.join(self.dir, name)], check=False)

    def tail(self, tag, n=3):
        try:
            with open(os.path.join(self.dir, "nbdkit-%s.log" % tag), "rb") as f:
                lines = f.read().decode("utf-8", "replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])


class Matrix:
    def __init__(self, a):
        self.a = a
        self.live = set()
        self.san_env = {}
        if os.environ.get("CASDISK_SANITIZERS") == "yes":
            libs = [subprocess.run(["gcc", "-print-file-name=" + l], capture_output=True,
                                   text=True).stdout.strip() for l in ("libasan.so", "libubsan.so")]
            self.san_env = {"LD_PRELOAD": ":".join(libs),
                            "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
                            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}

    def run(self):
        a = self.a
        todo = [c for c in cells(a.full) if not a.only or any(o in "%s %s" % c for o in a.only)]
        print("fault-matrix: %d cells (%d phases x fault sites x variants%s)"
              % (len(todo), len(SITES), ", full" if a.full else ""), flush=True)
        t0 = time.monotonic()
        failed = []
        results = []
        for i, (phase, spec) in enumerate(todo):
            if a.time_limit and time.monotonic() - t0 > a.time_limit:
                print("fault-matrix: time limit reached after %d cells" % i, flush=True)
                break
            c = Cell(self, phase, spec, i)
            t = time.monotonic()
            try:
                fails = c.run()
            except Exception as e:
                fails = ["harness: %s: %s" % (type(e).__name__, e)]
            finally:
                for p in list(self.live):
                    c.kill(p)
            c.info["seconds"] = round(time.monotonic() - t, 2)
            c.info["fails"] = fails
            results.append(c.info)
            step = STEP.get(phase)
            seen = "" if step is None else (" step %s %s" % (step, "seen" if step in c.info.get(
                "steps", []) else "NOT seen"))
            status = "ok" if not fails else "FAIL"
            print("fault-matrix: %-4s %-10s %-32s fired %d%s, run exit %s, ops %s (%.1f s)%s"
                  % (status, phase, spec, c.info.get("fired", 0), seen,
                     c.info.get("run_exit", ["?"])[0],
                     ",".join("%s %d" % kv for kv in sorted(c.info["ops"].items())
                              if "failed" in kv[0]) or "no errors",
                     c.info["seconds"], "" if not fails else "\n    " + "\n    ".join(fails)),
                  flush=True)
            if a.verbose and c.info["errors"]:
                print("    client errors: %s" % c.info["errors"], flush=True)
            if fails:
                failed.append((phase, spec))
                if a.keep_dir:
                    dst = os.path.join(a.keep_dir, "fault-%d-%03d-%s-%s" % (
                        os.getpid(), i, phase, spec.replace(":", "_")))
                    os.makedirs(a.keep_dir, exist_ok=True)
                    for junk in ("sock", "arm"):
                        if os.path.exists(os.path.join(c.dir, junk)):
                            os.unlink(os.path.join(c.dir, junk))
                    subprocess.run(["cp", "-a", "--sparse=always", c.dir, dst], check=False)
                    with open(os.path.join(dst, "info.json"), "w") as f:
                        json.dump(c.info, f, indent=1)
                    print("    kept in %s" % dst, flush=True)
            shutil.rmtree(c.dir, ignore_errors=True)
        n = len(results)
        print("fault-matrix: %d cells, %d passed, %d failed (%.0f s)"
              % (n, n - len(failed), len(failed), time.monotonic() - t0), flush=True)
        if failed:
            by = {}
            for ph, sp in failed:
                by.setdefault(ph, []).append(sp)
            print("fault-matrix: failed cells: " +
                  "; ".join("%s: %s" % (ph, ", ".join(v)) for ph, v in by.items()), flush=True)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=1)
        return 1 if failed or n < len(todo) else 0


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nbdkit", default="nbdkit")
    p.add_argument("--plugin", required=True)
    p.add_argument("--casdisk", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--full", action="store_true", default=os.environ.get("FAULT_MATRIX_FULL") == "1",
                   help="more N values and modes (also FAULT_MATRIX_FULL=1)")
    p.add_argument("--only", action="append", default=[],
                   help="run only the cells whose 'phase spec' contains this")
    p.add_argument("--keep-dir", help="copy the evidence of failed cells here")
    p.add_argument("--json", help="write every cell's results here")
    p.add_argument("--time-limit", type=float, default=0)
    p.add_argument("--list", action="store_true", help="print the cells and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args()
    if a.list:
        for c in cells(a.full):
            print("%s %s" % c)
        return 0
    os.makedirs(a.workdir, exist_ok=True)
    m = Matrix(a)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return m.run()
    finally:
        for pr in list(m.live):
            if pr.poll() is None:
                pr.kill()
            pr.wait()


if __name__ == "__main__":
    sys.exit(main())
