#!/usr/bin/python3
"""Real VM images, side by side: what each backend stores for a corpus of
separately built Debian images (issue 15), and what finer-grained dedup
would store.

The corpus: Debian 12 roots made with `mmdebstrap --variant=minbase
bookworm` (plain; with python3, openssh-server, curl and vim-tiny; with
nginx and postgresql-client), each laid into a 2 GiB ext4 image with
`mke2fs -t ext4 -d ROOT IMG 2G`, and the second image once more (a copy).
Roots and images are built once into a cache directory ($BENCH_CACHE, or
--cache; `make bench-images` uses bench-images-cache/ in the build tree)
and reused while their recipe is unchanged.  mmdebstrap, e2fsprogs,
qemu-utils and python3-zstandard are installed with apt-get when missing
(root; mmdebstrap needs the Debian archive).

Measured, for the four images together (one run, in this order per
repetition):

  raw       sparse raw files (cp --sparse=always of each image)
  qcow2     qemu-img convert -O qcow2
  qcow2-c   qemu-img convert -c -O qcow2 -o compression_type=zstd (offline)
  casdisk   at block sizes 4K..64K: a fresh store per block size
            (casdisk create --block-size BS), each image imported into its
            own disk (casdisk import), casdisk info --json after each

Bytes on disk are allocated (st_blocks x 512) and apparent (st_size) of
every file of the backend's storage.  Import time per image is the
command's wall time plus syncfs of its directory; every image is read into
the page cache first.  Index memory: bench/engine -b BS memory measures
the resident bytes each further block costs at every block size; the
store's index is that times its blocks.

Estimated offline (not measured on a store): identity per 4 KiB (or
16 KiB) piece, compression per 64 KiB frame of unique pieces: every
non-zero piece of the corpus, in corpus order, is keyed by SHA-256; the
first copy of each key goes into the current frame; a full frame (64 KiB)
is compressed with zstd at the store's level and kept if that saves an
eighth, as casdisk keeps blocks.  The same model with pieces = frames = the
block size (4 KiB and 64 KiB) is computed too, to compare the model with
the measured stores.

    top_builddir=build /usr/bin/python3 bench/images.py [--reps N] [--cache DIR]
    (make bench-images; --smoke: two small roots copied from /usr/share,
    64 MiB images, no network, no results written unless --out is given)
"""

import argparse
import datetime
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
GRANULE = 512                   # the data file's allocation unit (lib/format.h)
PIECE_CRC = 4096                # sectored raw blocks: a CRC-32C per 4 KiB piece
BLOCK_SIZES = [4 * KiB, 8 * KiB, 16 * KiB, 32 * KiB, 64 * KiB]
# Offline models: (identity piece, compression frame).
# The candidates first, then today's store at the same piece sizes (piece =
# frame), which the measured stores check the model against.
MODELS = [(4 * KiB, 64 * KiB), (16 * KiB, 64 * KiB),
          (4 * KiB, 4 * KiB), (16 * KiB, 16 * KiB), (64 * KiB, 64 * KiB)]
# bytes per block entry documented in docs/performance.md ("Memory"):
# struct cas_block 48, hash buckets 2..4, a map entry 8 per mapped block.
DOC_ENTRY, DOC_MAP = 52, 8
# The sparse-index model: one key in N kept in memory (4 KiB identity,
# 64 KiB frames, chapters of 256 pieces (1 MiB of stored data), the last 4
# loaded chapters cached: a window far smaller than the store).
SPARSE_SAMPLES = [16, 64]
MEMORY_BLOCKS = 1 << 20         # blocks bench/engine memory writes per block size (as docs/performance.md)

# The full corpus: roots (name, packages included) and images in import order.
FULL_ROOTS = [
    ("plain", []),
    ("server", ["python3", "openssh-server", "curl", "vim-tiny"]),
    ("web", ["nginx", "postgresql-client"]),
]
# The smoke corpus: roots copied from the machine's /usr/share (no network).
SMOKE_ROOTS = [
    ("docs", [("/usr/share/doc", 10 * MiB)]),
    ("docs-more", [("/usr/share/doc", 10 * MiB), ("/usr/share/perl5", 6 * MiB),
                   ("/usr/share/zoneinfo", 3 * MiB)]),
]
SUITE, VARIANT = "bookworm", "minbase"

TOP_SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, timeout, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if r.returncode:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), r.returncode,
                                                  (r.stderr or r.stdout)[-600:]))
    return r.stdout


def first_line(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        out = (r.stdout or r.stderr).strip().splitlines()
        return out[0] if out else "?"
    except Exception as e:  # noqa: BLE001
        return "? (%s)" % e


def space(path):
    """(allocated, apparent) bytes of a file, or of every file under a dir."""
    files = [path]
    if os.path.isdir(path):
        files = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
    alloc = app = 0
    for p in files:
        st = os.lstat(p)
        if os.path.isfile(p) and not os.path.islink(p):
            alloc += st.st_blocks * 512
            app += st.st_size
    return alloc, app


def tree_bytes(root):
    """Bytes of the regular files of a tree (as `du --apparent-size` counts them)."""
    n = 0
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            if os.path.isfile(p) and not os.path.islink(p):
                n += os.lstat(p).st_size
    return n


def cpu_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu():
    import resource
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def load_avg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---- tools ----
def ensure_tools(smoke):
    """Install what the full run needs with apt-get; the smoke run installs
    nothing and exits 77 when a tool is missing."""
    need = {"mke2fs": "e2fsprogs", "qemu-img": "qemu-utils"}
    if not smoke:
        need["mmdebstrap"] = "mmdebstrap"
    missing = [pkg for cmd, pkg in need.items() if shutil.which(cmd) is None]
    try:
        import zstandard  # noqa: F401
    except ImportError:
        if not smoke:
            missing.append("python3-zstandard")
        elif shutil.which("zstd") is None:
            missing.append("zstd")
    if not missing:
        return
    if smoke:
        log("SKIP: missing %s" % ", ".join(missing))
        sys.exit(77)
    if os.geteuid() != 0:
        sys.exit("bench/images.py: %s missing, and installing needs root" % ", ".join(missing))
    log("installing %s" % " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-q"], 600, env=env)
    run(["apt-get", "install", "-y", "-q"] + missing, 1200, env=env)


class Zstd:
    """zstd compression of one frame: python3-zstandard, else the zstd CLI
    (frames batched into files, one process per batch)."""

    def __init__(self, level):
        self.level = level
        try:
            import zstandard
            self.c = zstandard.ZstdCompressor(level=level, write_checksum=False,
                                              write_content_size=True)
            self.how = "python3-zstandard %s (libzstd %s)" % (
                zstandard.__version__, ".".join(map(str, zstandard.ZSTD_VERSION)))
        except ImportError:
            self.c = None
            self.how = "zstd CLI (%s)" % first_line(["zstd", "--version"])
        self.pending = []       # (frame bytes, callback) for the CLI
        self.tmp = None

    def size(self, data, done):
        """Call done(compressed size of DATA), now or at flush()."""
        if self.c is not None:
            done(len(self.c.compress(data)))
            return
        self.pending.append((data, done))
        if len(self.pending) >= 512:
            self.flush()

    def flush(self):
        if not self.pending:
            return
        if self.tmp is None:
            self.tmp = tempfile.mkdtemp(prefix="zstd-frames-")
        names = []
        for i, (data, _) in enumerate(self.pending):
            p = os.path.join(self.tmp, "f%d" % i)
            with open(p, "wb") as f:
                f.write(data)
            names.append(p)
        run(["zstd", "-q", "-f", "--no-check", "-%d" % self.level] + names, 600)
        for p, (_, done) in zip(names, self.pending):
            done(os.path.getsize(p + ".zst"))
            os.unlink(p)
            os.unlink(p + ".zst")
        self.pending = []

    def close(self):
        self.flush()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---- the corpus ----
def stamp_ok(path, recipe):
    try:
        with open(path) as f:
            return json.load(f) == recipe
    except (OSError, ValueError):
        return False


def write_stamp(path, recipe):
    with open(path + ".new", "w") as f:
        json.dump(recipe, f)
    os.rename(path + ".new", path)


def copy_budget(src, dst, budget):
    """Copy regular files and symlinks of SRC (sorted walk) into DST until
    BUDGET bytes of files are copied."""
    used = 0
    for d, dirs, fs in os.walk(src):
        dirs.sort()
        rel = os.path.relpath(d, src)
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        for f in sorted(fs):
            p, q = os.path.join(d, f), os.path.join(dst, rel, f)
            if os.path.islink(p):
                os.symlink(os.readlink(p), q)
            elif os.path.isfile(p):
                n = os.path.getsize(p)
                if used + n > budget:
                    return
                shutil.copy2(p, q)
                used += n


def build_root(cache, name, spec, smoke):
    """A root directory in the cache, built when its recipe changed."""
    root = os.path.join(cache, "roots", name)
    stamp = root + ".stamp"
    if smoke:
        recipe = {"kind": "copy", "trees": spec}
    else:
        cmd = ["mmdebstrap", "--variant=" + VARIANT, "--mode=root"]
        if spec:
            cmd.append("--include=" + ",".join(spec))
        cmd += [SUITE, "ROOT"]
        recipe = {"kind": "mmdebstrap", "cmd": cmd}
    if stamp_ok(stamp, recipe) and os.path.isdir(root):
        return root, recipe, False
    shutil.rmtree(root, ignore_errors=True)
    if os.path.exists(stamp):
        os.unlink(stamp)
    os.makedirs(os.path.dirname(root), exist_ok=True)
    t0 = time.monotonic()
    if smoke:
        os.makedirs(root)
        for src, budget in spec:
            copy_budget(src, os.path.join(root, src.lstrip("/")), budget)
    else:
        log("building root %s: %s" % (name, " ".join(recipe["cmd"])))
        run([root if a == "ROOT" else a for a in recipe["cmd"]], 1800)
    log("root %s built in %.0f s" % (name, time.monotonic() - t0))
    write_stamp(stamp, recipe)
    return root, recipe, True


def build_image(cache, name, root, root_recipe, size, rebuilt):
    img = os.path.join(cache, "images", "%s-%s.img" % (name, size))
    stamp = img + ".stamp"
    cmd = ["mke2fs", "-q", "-t", "ext4", "-d", "ROOT", "IMG", size]
    recipe = {"root": root_recipe, "cmd": cmd}
    if not rebuilt and stamp_ok(stamp, recipe) and os.path.exists(img):
        return img, cmd
    os.makedirs(os.path.dirname(img), exist_ok=True)
    for p in (img, stamp):
        if os.path.exists(p):
            os.unlink(p)
    run([{"ROOT": root, "IMG": img}.get(a, a) for a in cmd], 1200)
    write_stamp(stamp, recipe)
    return img, cmd


def corpus(args):
    """[(image name, path, description)] in import order: the roots' images,
    then the second image again."""
    roots = SMOKE_ROOTS if args.smoke else FULL_ROOTS
    size = "64M" if args.smoke else args.image_size
    out, info = [], []
    for name, spec in roots:
        root, recipe, rebuilt = build_root(args.cache, name, spec, args.smoke)
        img, cmd = build_image(args.cache, name, root, recipe, size, rebuilt)
        if args.smoke:
            what = "files copied from " + ", ".join("%s (up to %d MiB)" % (s, b // MiB)
                                                    for s, b in spec)
        else:
            what = " ".join(recipe["cmd"]).replace(" --mode=root", "")
        alloc, app = space(img)
        info.append({"name": name, "root": what, "root_file_bytes": tree_bytes(root),
                     "image": " ".join(cmd), "size": app, "allocated": alloc})
        out.append((name, img))
    second = out[1]
    out.append((second[0] + "-copy", second[1]))
    return out, info


def warm(path):
    """Read the data of an image (holes skipped) into the page cache."""
    with open(path, "rb") as f:
        for start, end in data_ranges(f.fileno(), os.fstat(f.fileno()).st_size, 4096):
            f.seek(start)
            left = end - start
            while left > 0:
                b = f.read(min(left, 8 * MiB))
                if not b:
                    break
                left -= len(b)


def data_ranges(fd, size, align):
    """The image's data extents (SEEK_DATA/SEEK_HOLE), widened to ALIGN and
    merged."""
    out, off = [], 0
    while off < size:
        try:
            d = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:
            break
        try:
            h = os.lseek(fd, d, os.SEEK_HOLE)
        except OSError:
            h = size
        s, e = d // align * align, min(size, -(-h // align) * align)
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
        off = h
    return out


# ---- the offline model ----
def stored_len(n, c):
    """Bytes casdisk's rule stores for N bytes compressing to C: the frame
    if it fits in 7/8 of N (granules), else raw (with the 4 KiB pieces'
    CRC table above 4 KiB)."""
    if c <= (n - n // 8) // GRANULE * GRANULE:
        return c
    return n + (4 * (n // PIECE_CRC) if n > PIECE_CRC else 0)


class SparseIndex:
    """The 4 KiB-identity, 64 KiB-frame model with an index that keeps only
    one key in SAMPLE in memory (dm-vdo's sparse index, simplified): every
    stored piece has a place in write order, and places are grouped into
    chapters of CHAPTER pieces.  A piece is found as a duplicate if its key
    is a sampled one (the memory index names its place), or if its twin
    lies in one of the last CACHE chapters a sampled hit loaded from disk
    (their keys, in memory for a while), or in the chapter being written.
    A duplicate not found is stored again."""

    def __init__(self, z, sample, g=4 * KiB, frame=64 * KiB, chapter=256, cache=4):
        import collections
        self.z, self.sample, self.g, self.frame = z, sample, g, frame
        self.chapter, self.cache_max = chapter, cache
        self.where = {}                 # key -> latest place (what the disk holds)
        self.cache = collections.OrderedDict()
        self.places = 0
        self.buf = []
        self.found = self.missed = self.hooks = 0
        self.r = {"frames": 0, "stored": 0, "granules": 0}

    def _store(self, p, k):
        self.where[k] = self.places
        self.places += 1
        self.buf.append(p)
        if len(self.buf) * self.g >= self.frame:
            self._frame()

    def _frame(self):
        data, r = b"".join(self.buf), self.r
        self.buf = []
        r["frames"] += 1

        def done(c, n=len(data)):
            st = stored_len(n, c)
            r["stored"] += st
            r["granules"] += -(-st // GRANULE) * GRANULE
        self.z.size(data, done)

    def piece(self, p, k):
        loc = self.where.get(k)
        if loc is None:
            self._store(p, k)
            return
        ch = loc // self.chapter
        if ch == self.places // self.chapter or ch in self.cache:
            self.found += 1
            if ch in self.cache:
                self.cache.move_to_end(ch)
            return
        if int.from_bytes(k[:8], "little") % self.sample == 0:
            self.found += 1
            self.hooks += 1
            self.cache[ch] = True
            if len(self.cache) > self.cache_max:
                self.cache.popitem(last=False)
            return
        self.missed += 1
        self._store(p, k)

    def result(self, unique_pieces):
        if self.buf:
            self._frame()
        dups = self.found + self.missed
        return {"identity": self.g, "frame": self.frame, "sample": self.sample,
                "chapter_pieces": self.chapter, "cached_chapters": self.cache_max,
                "duplicates": dups, "found": self.found, "missed": self.missed,
                "hooks": self.hooks, "found_fraction": self.found / dups if dups else 1.0,
                "stored_pieces": self.places, "unique_pieces": unique_pieces,
                "frames": self.r["frames"], "stored_bytes": self.r["stored"],
                "stored_granules": self.r["granules"]}


def offline_model(images, level):
    z = Zstd(level)
    sparse = [SparseIndex(z, n) for n in SPARSE_SAMPLES]
    t0 = time.monotonic()
    grains = sorted({g for g, _ in MODELS})
    seen = {g: set() for g in grains}
    pieces = {g: 0 for g in grains}          # non-zero pieces in the corpus
    uniq = {g: 0 for g in grains}
    frames = {m: [] for m in MODELS}         # pending unique pieces per model
    res = {m: {"frames": 0, "stored": 0, "granules": 0} for m in MODELS}
    per_image = []
    zeros = {g: bytes(g) for g in grains}

    def add_frame(m, data):
        r = res[m]
        r["frames"] += 1

        def done(c, n=len(data)):
            s = stored_len(n, c)
            r["stored"] += s
            r["granules"] += -(-s // GRANULE) * GRANULE
        z.size(data, done)

    for name, path in images:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            for start, end in data_ranges(f.fileno(), size, max(grains)):
                f.seek(start)
                off = start
                while off < end:
                    chunk = f.read(min(end - off, 4 * MiB))
                    if not chunk:
                        break
                    for g in grains:
                        zero, s = zeros[g], seen[g]
                        ms = [m for m in MODELS if m[0] == g]
                        for i in range(0, len(chunk) - g + 1, g):
                            p = chunk[i:i + g]
                            if p == zero:
                                continue
                            pieces[g] += 1
                            k = hashlib.sha256(p).digest()
                            if g == 4 * KiB:
                                for sp in sparse:
                                    sp.piece(p, k)
                            if k in s:
                                continue
                            s.add(k)
                            uniq[g] += 1
                            for m in ms:
                                fr = frames[m]
                                fr.append(p)
                                if len(fr) * g >= m[1]:
                                    add_frame(m, b"".join(fr))
                                    fr.clear()
                    off += len(chunk)
        per_image.append({"image": name, "unique_pieces": dict((str(g), uniq[g]) for g in grains)})
    for m in MODELS:
        if frames[m]:
            add_frame(m, b"".join(frames[m]))
    sparse_out = [sp.result(uniq[4 * KiB]) for sp in sparse]
    z.close()
    out = []
    for m in MODELS:
        g, fsz = m
        r = res[m]
        out.append({
            "identity": g, "frame": fsz,
            "nonzero_pieces": pieces[g], "unique_pieces": uniq[g],
            "logical_bytes": pieces[g] * g, "unique_bytes": uniq[g] * g,
            "dedup_ratio": pieces[g] / uniq[g] if uniq[g] else 1.0,
            "frames": r["frames"], "stored_bytes": r["stored"],
            "stored_granules": r["granules"],
            "compression_ratio": uniq[g] * g / r["stored"] if r["stored"] else 1.0,
        })
    return {"models": out, "sparse": sparse_out, "per_image": per_image, "zstd": z.how,
            "seconds": time.monotonic() - t0}


# ---- the backends ----
def timed(cmd, d, timeout):
    t0 = time.monotonic()
    run(cmd, timeout)
    run(["sync", "-f", d], 120)
    return time.monotonic() - t0


def measure_file_backend(kind, images, scratch):
    d = tempfile.mkdtemp(prefix=kind + "-", dir=scratch)
    rows = []
    try:
        for name, path in images:
            if kind == "raw":
                out = os.path.join(d, name + ".img")
                cmd = ["cp", "--sparse=always", path, out]
            else:
                out = os.path.join(d, name + ".qcow2")
                cmd = ["qemu-img", "convert", "-f", "raw"]
                if kind == "qcow2-c":
                    cmd += ["-c", "-O", "qcow2", "-o", "compression_type=zstd"]
                else:
                    cmd += ["-O", "qcow2"]
                cmd += [path, out]
            t = timed(cmd, d, 1800)
            alloc, app = space(out)
            rows.append({"image": name, "seconds": t, "allocated": alloc, "apparent": app})
        return {"backend": kind, "images": rows,
                "allocated": sum(r["allocated"] for r in rows),
                "apparent": sum(r["apparent"] for r in rows)}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def casdisk_info(casdisk, store):
    return json.loads(run([casdisk, "info", store, "--json"], 300))


def measure_casdisk(casdisk, bs, images, scratch):
    d = tempfile.mkdtemp(prefix="casdisk-%dk-" % (bs // KiB), dir=scratch)
    store = os.path.join(d, "store")
    rows = []
    try:
        run([casdisk, "create", store, "--size", "1M", "--block-size", str(bs)], 120)
        for name, path in images:
            t = timed([casdisk, "import", store, name, path], d, 1800)
            st = casdisk_info(casdisk, store)["store"]
            alloc, app = space(store)
            rows.append({"image": name, "seconds": t, "allocated": alloc, "apparent": app,
                         "stored_bytes": st["stored_bytes"], "nblocks": st["nblocks"]})
        info = casdisk_info(casdisk, store)
        st = info["store"]
        alloc, app = space(store)
        keep = ("block_size", "compression_level", "key_function", "logical_bytes", "nblocks",
                "dead_blocks",
                "unique_bytes", "stored_bytes", "dedup_ratio", "compression_ratio",
                "data_file_end", "physical_allocated", "physical_apparent", "journal_bytes")
        return {"backend": "casdisk-%dK" % (bs // KiB), "block_size": bs, "images": rows,
                "allocated": alloc, "apparent": app,
                "info": {k: st[k] for k in keep if k in st},
                "disks": [{k: v for k, v in x.items() if k != "dir"} for x in info["disks"]]}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def measure_memory(engine, bs, blocks, scratch):
    """bench/engine -b BS memory: resident bytes per further block."""
    mib = max(1, bs * blocks // MiB)
    cmd = [engine, "-b", str(bs), "-s", str(mib), "-t", scratch, "memory"]
    out = run(cmd, 1200)
    line = [l for l in out.splitlines() if l.startswith("memory:")][-1]
    # "...: X MiB per GiB unique, Y bytes per block; marginal Z MiB per GiB, W bytes per block; ..."
    total = float(line.split(" bytes per block;")[0].rsplit(",", 1)[1])
    marginal = float(line.split("marginal ")[1].split(" MiB per GiB, ")[1].split(" bytes")[0])
    return {"block_size": bs, "command": "bench/engine -b %d -s %d memory" % (bs, mib),
            "bytes_per_block_total": total, "bytes_per_block_marginal": marginal, "line": line}


# ---- report ----
def mib(b):
    return "%.1f" % (b / MiB)


def human_ram(b):
    if b >= GiB:
        return "%.1f GiB" % (b / GiB)
    return "%.1f MiB" % (b / MiB) if b >= MiB else "%.0f KiB" % (b / KiB)


def derive(res):
    """The summary rows: one per backend and candidate."""
    qc = next(b for b in res["backends"] if b["backend"] == "qcow2-c")["allocated"]
    mem = {m["block_size"]: m for m in res["memory"]}
    rows = []
    for b in res["backends"]:
        r = {"name": b["backend"], "measured": True, "allocated": b["allocated"],
             "apparent": b["apparent"], "x_qcow2c": b["allocated"] / qc,
             "seconds": [i["seconds"] for i in b["images"]]}
        if b["backend"].startswith("casdisk"):
            inf, bs = b["info"], b["block_size"]
            r["copy_adds"] = b["images"][-1]["allocated"] - b["images"][-2]["allocated"]
            r.update(block_size=bs, dedup=inf["dedup_ratio"], compression=inf["compression_ratio"],
                     stored=inf["stored_bytes"], unique=inf["unique_bytes"],
                     nblocks=inf["nblocks"] - inf.get("dead_blocks", 0),
                     mapped=inf["logical_bytes"] // bs)
            r["doc_index_bytes"] = r["nblocks"] * DOC_ENTRY + r["mapped"] * DOC_MAP
            r["entries_per_tib"] = TiB // bs
            m = mem.get(bs)
            if m:
                r["entry_bytes"] = m["bytes_per_block_marginal"]
                r["index_bytes"] = r["nblocks"] * m["bytes_per_block_marginal"]
                r["ram_per_tib"] = TiB // bs * m["bytes_per_block_marginal"]
            else:
                r["entry_bytes"] = DOC_ENTRY + DOC_MAP
                r["index_bytes"] = r["doc_index_bytes"]
                r["ram_per_tib"] = TiB // bs * (DOC_ENTRY + DOC_MAP)
        else:
            r["copy_adds"] = b["images"][-1]["allocated"]
        rows.append(r)
    for m in res["offline"]["models"]:
        g = m["identity"]
        meas = next((x for x in rows if x.get("block_size") == g), None)
        same = next(x for x in res["offline"]["models"] if x["identity"] == x["frame"] == g)
        # On disk: the modelled data in granules, plus what the measured
        # store of the piece's block size allocated beyond its modelled data
        # (metadata and preallocation: they grow with the number of pieces).
        overhead = 0
        if meas:
            overhead = max(0, meas["allocated"] - same["stored_granules"])
        r = {"name": "%dK identity, %dK frames" % (g // KiB, m["frame"] // KiB), "measured": False,
             "identity": g, "frame": m["frame"], "stored": m["stored_bytes"],
             "data_on_disk": m["stored_granules"], "overhead": overhead,
             "allocated": m["stored_granules"] + overhead, "dedup": m["dedup_ratio"],
             "compression": m["compression_ratio"], "unique": m["unique_bytes"],
             "nblocks": m["unique_pieces"], "entries_per_tib": TiB // g}
        r["x_qcow2c"] = r["allocated"] / qc
        entry = mem.get(g, {}).get("bytes_per_block_marginal", DOC_ENTRY + DOC_MAP)
        r["entry_bytes"] = entry
        r["ram_per_tib"] = TiB // g * entry
        r["index_bytes"] = m["unique_pieces"] * entry
        rows.append(r)
    m4 = next(x for x in res["offline"]["models"] if x["identity"] == x["frame"] == 4 * KiB)
    meas4 = next((x for x in rows if x.get("block_size") == 4 * KiB), None)
    for sp in res["offline"].get("sparse", []):
        # Metadata grows with the pieces stored: the 4 KiB store's, scaled.
        overhead = 0
        if meas4:
            overhead = max(0, meas4["allocated"] - m4["stored_granules"]) * \
                sp["stored_pieces"] / m4["unique_pieces"]
        entry = mem.get(4 * KiB, {}).get("bytes_per_block_marginal", DOC_ENTRY + DOC_MAP)
        r = {"name": "4K identity, 64K frames, 1 in %d keys" % sp["sample"], "measured": False,
             "identity": 4 * KiB, "frame": sp["frame"], "sample": sp["sample"],
             "stored": sp["stored_bytes"], "data_on_disk": sp["stored_granules"],
             "overhead": overhead, "allocated": sp["stored_granules"] + overhead,
             "dedup": m4["nonzero_pieces"] / sp["stored_pieces"],
             "compression": sp["stored_pieces"] * 4 * KiB / sp["stored_bytes"],
             "unique": sp["stored_pieces"] * 4 * KiB, "nblocks": sp["stored_pieces"],
             "found_fraction": sp["found_fraction"],
             "entries_per_tib": TiB // (4 * KiB) // sp["sample"], "entry_bytes": entry}
        r["x_qcow2c"] = r["allocated"] / qc
        r["ram_per_tib"] = r["entries_per_tib"] * entry
        r["index_bytes"] = sp["stored_pieces"] / sp["sample"] * entry
        rows.append(r)
    return rows


def markdown(res):
    L = []
    meta = res["meta"]
    L.append("# casdisk on real images: %s, %s" % (
        "smoke run" if meta["smoke"] else "Debian 12 corpus", meta["started"]))
    L.append("")
    L.append("Command: `%s`  " % meta["command"])
    L.append("Git: %s; %d repetition(s), import times are medians  " % (meta["git"], meta["reps"]))
    L.append("Machine: %d CPUs, %s, kernel %s; %s; %s; %s  " % (
        meta["nproc"], meta["cpu_model"], meta["kernel"], meta["qemu"], meta["mke2fs"],
        meta["zstd"]))
    L.append("Load average at start %s, at end %s; wall %.0f s; other processes used %.2f cores "
             "on average" % (meta["load_start"], meta["load_end"], meta["wall_s"],
                             meta["other_cores"]))
    L.append("")
    L.append("## The corpus")
    L.append("")
    L.append("| image | root | files in the root, MiB | image | allocated MiB |")
    L.append("|---|---|---:|---|---:|")
    for c in res["corpus"]:
        L.append("| %s | `%s` | %s | `%s` | %s |" % (c["name"], c["root"], mib(c["root_file_bytes"]),
                                                    c["image"], mib(c["allocated"])))
    L.append("| %s | the second image again | | | |" % res["images"][-1])
    L.append("")
    rows = derive(res)
    names = res["images"]
    L.append("## Measured: bytes on disk for the %d images" % len(names))
    L.append("")
    L.append("Allocated = st_blocks x 512 of every file of the backend's storage, apparent = "
             "st_size; × qcow2-c = allocated ÷ the offline-compressed qcow2 images' allocated. "
             "Import: wall time of the command plus syncfs, per image (%s), images in the page "
             "cache." % ", ".join(names))
    L.append("")
    L.append("| backend | allocated MiB | apparent MiB | × qcow2-c | dedup | compression | "
             "copy adds MiB | import s per image |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        if not r["measured"]:
            continue
        L.append("| %s | %s | %s | %.2f | %s | %s | %s | %s |" % (
            r["name"], mib(r["allocated"]), mib(r["apparent"]), r["x_qcow2c"],
            "%.2f" % r["dedup"] if "dedup" in r else "-",
            "%.2f" % r["compression"] if "compression" in r else "-",
            mib(r["copy_adds"]), ", ".join("%.2f" % s for s in r["seconds"])))
    L.append("")
    L.append("## Measured: casdisk by block size")
    L.append("")
    L.append("From `casdisk info --json` after the last import; index RAM = blocks × the "
             "resident bytes each further block cost in `bench/engine -b BS memory` (%d blocks "
             "written; docs/performance.md, \"Memory\"); documented = blocks × %d + mapped "
             "blocks × %d bytes." % (res["memory_blocks"], DOC_ENTRY, DOC_MAP))
    L.append("")
    L.append("| block | blocks | unique MiB | stored MiB | allocated MiB | dedup | compression | "
             "B/block (measured) | index RAM | documented | RAM per TiB unique |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r["measured"] and "block_size" in r:
            L.append("| %d KiB | %d | %s | %s | %s | %.2f | %.2f | %.1f | %s | %s | %s |" % (
                r["block_size"] // KiB, r["nblocks"], mib(r["unique"]), mib(r["stored"]),
                mib(r["allocated"]), r["dedup"], r["compression"], r["entry_bytes"],
                human_ram(r["index_bytes"]), human_ram(r["doc_index_bytes"]),
                human_ram(r["ram_per_tib"])))
    L.append("")
    L.append("## Estimated offline: identity per piece, compression per frame")
    L.append("")
    L.append("Every non-zero piece of the %d images, in import order, keyed by SHA-256; the "
             "first copy of each piece packed into frames of unique pieces in order of first "
             "appearance, each frame compressed with zstd level %d (%s) and kept compressed if "
             "it fits in 7/8 of its size, else raw, as casdisk keeps blocks. Stored = the "
             "frames' bytes; on disk = stored in 512-byte granules plus the metadata the measured "
             "store whose block size is the piece size allocated beyond the data (its allocated "
             "bytes − the granules of the piece = frame model at that size). "
             "Rows with piece = frame model today's store: their unique pieces and stored bytes "
             "are to compare with the measured stores (their on-disk figure equals the "
             "store's allocated bytes by construction). "
             "Not measured: no store was written. Model time %.0f s." % (
                 len(names), res["level"], res["offline"]["zstd"], res["offline"]["seconds"]))
    L.append("")
    L.append("| model | non-zero pieces | unique pieces | unique MiB | dedup | stored MiB | "
             "compression | data in granules MiB | + metadata MiB | on disk MiB (est.) | × qcow2-c | "
             "measured store at this block size: stored MiB, dedup |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r, m in zip([r for r in rows if not r["measured"]], res["offline"]["models"]):
        meas = next((x for x in rows if x.get("block_size") == r["identity"]), None)
        L.append("| %s | %d | %d | %s | %.2f | %s | %.2f | %s | %s | %s | %.2f | %s |" % (
            r["name"], m["nonzero_pieces"], m["unique_pieces"], mib(m["unique_bytes"]),
            r["dedup"], mib(r["stored"]), r["compression"], mib(r["data_on_disk"]),
            mib(r["overhead"]), mib(r["allocated"]), r["x_qcow2c"],
            "%s, %.2f" % (mib(meas["stored"]), meas["dedup"]) if meas else "-"))
    sp_rows = [r for r in rows if "sample" in r]
    if sp_rows:
        sp0 = res["offline"]["sparse"][0]
        L.append("")
        L.append("## Estimated offline: a sparse index (4 KiB identity, 64 KiB frames)")
        L.append("")
        L.append("The model above with only one key in N kept in memory, as dm-vdo's sparse "
                 "index does, simplified: stored pieces have places in write order, grouped "
                 "in chapters of %d pieces; a piece is found as a duplicate if its key is a "
                 "sampled one, or if its twin lies in the chapter being written or in one of "
                 "the last %d chapters whose keys a sampled hit loaded; a duplicate not found "
                 "is stored again. RAM = the sampled keys at today's entry size (the map of "
                 "4 KiB pieces, 8 bytes each, is not reduced by sampling)." % (
                     sp0["chapter_pieces"], sp0["cached_chapters"]))
        L.append("")
        L.append("| keys in memory | duplicates found | stored pieces | dedup | stored MiB | "
                 "on disk MiB (est.) | × qcow2-c | index entries / RAM per TiB unique |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        full = next(r for r in rows if r["name"] == "4K identity, 64K frames")
        L.append("| all | 100%% | %d | %.2f | %s | %s | %.2f | %.0fM / %s |" % (
            full["nblocks"], full["dedup"], mib(full["stored"]), mib(full["allocated"]),
            full["x_qcow2c"], full["entries_per_tib"] / 1e6, human_ram(full["ram_per_tib"])))
        for r in sp_rows:
            L.append("| 1 in %d | %.1f%% | %d | %.2f | %s | %s | %.2f | %.0fM / %s |" % (
                r["sample"], 100 * r["found_fraction"], r["nblocks"], r["dedup"],
                mib(r["stored"]), mib(r["allocated"]), r["x_qcow2c"],
                r["entries_per_tib"] / 1e6, human_ram(r["ram_per_tib"])))
    L.append("")
    L.append("## Trade-off")
    L.append("")
    L.append(tradeoff_table(rows))
    L.append("")
    best = min((r for r in rows if r["name"].startswith("casdisk")), key=lambda r: r["x_qcow2c"])
    dflt = next(r for r in rows if r["name"] == "casdisk-64K")
    L.append("Goal of issue 15: at most 0.55 × the offline-compressed qcow2 at the default "
             "settings. casdisk-64K (the default): %.2f (%s); best measured block size: %s, %.2f." % (
                 dflt["x_qcow2c"], "met" if dflt["x_qcow2c"] <= 0.55 else "not met",
                 best["name"], best["x_qcow2c"]))
    L.append("")
    return "\n".join(L)


def tradeoff_table(rows):
    T = ["| candidate | bytes on disk | × offline qcow2 | dedup ratio | "
         "index entries / RAM per TiB unique | import time, all images (the second) |",
         "|---|---:|---:|---:|---:|---:|"]
    order = ["qcow2-c", "casdisk-64K", "casdisk-16K", "casdisk-4K",
             "4K identity, 64K frames", "4K identity, 64K frames, 1 in 16 keys",
             "4K identity, 64K frames, 1 in 64 keys", "16K identity, 64K frames"]
    label = {"qcow2-c": "qcow2, compressed offline (zstd), reference",
             "casdisk-64K": "64 KiB blocks (today's default)",
             "casdisk-16K": "16 KiB blocks", "casdisk-4K": "4 KiB blocks",
             "4K identity, 64K frames": "4 KiB identity, 64 KiB zstd frames",
             "4K identity, 64K frames, 1 in 16 keys":
                 "4 KiB identity, 64 KiB frames, sparse index (1 key in 16 in RAM)",
             "4K identity, 64K frames, 1 in 64 keys":
                 "4 KiB identity, 64 KiB frames, sparse index (1 key in 64 in RAM)",
             "16K identity, 64K frames": "16 KiB identity, 64 KiB zstd frames"}
    for name in order:
        r = next((x for x in rows if x["name"] == name), None)
        if r is None:
            continue
        est = not r["measured"]
        if name == "qcow2-c":
            ent = "-"
        else:
            ent = "%.0fM / %s%s" % (r["entries_per_tib"] / 1e6, human_ram(r["ram_per_tib"]),
                                    " (at today's entry size)" if est else "")
        T.append("| %s%s | %s MiB%s | %.2f%s | %s | %s | %s |" % (
            label[name], " — estimated offline" if est else " — measured",
            mib(r["allocated"]), " (est.)" if est else "", r["x_qcow2c"], " (est.)" if est else "",
            "%.2f%s" % (r["dedup"], " (est.)" if est else "") if "dedup" in r else "-", ent,
            "not measured" if est else "%.2f s (%.2f s)" % (sum(r["seconds"]), r["seconds"][1])))
    return "\n".join(T)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="small local roots, 64 MiB images")
    ap.add_argument("--reps", type=int, default=1, help="repetitions (import times: medians)")
    ap.add_argument("--cache", default=os.environ.get("BENCH_CACHE"),
                    help="where roots and images are kept (default $BENCH_CACHE, else "
                         "bench-images-cache in top_builddir)")
    ap.add_argument("--tmp", default="/var/tmp", help="scratch space for the backends")
    ap.add_argument("--image-size", default="2G")
    ap.add_argument("--block-sizes", default=",".join(str(b // KiB) for b in BLOCK_SIZES),
                    help="casdisk block sizes in KiB")
    ap.add_argument("--memory-blocks", type=int, default=None,
                    help="blocks bench/engine memory writes per block size (0: skip)")
    ap.add_argument("--out", help="directory for the .md and .json (default bench/results; "
                                  "the smoke run writes none unless given)")
    ap.add_argument("--report", metavar="JSON",
                    help="measure nothing: write the markdown report of a result file again "
                         "(beside it, same name)")
    args = ap.parse_args()
    if args.report:
        with open(args.report) as f:
            res = json.load(f)
        res["summary"] = derive(res)
        md = markdown(res)
        with open(os.path.splitext(args.report)[0] + ".md", "w") as f:
            f.write(md + "\n")
        with open(args.report, "w") as f:
            json.dump(res, f, indent=1)
        print(md)
        return
    top = os.path.abspath(os.environ.get("top_builddir", "build"))
    casdisk = os.environ.get("CASDISK_TOOL", os.path.join(top, "tools", "casdisk"))
    engine = os.environ.get("CASDISK_ENGINE_BENCH", os.path.join(top, "bench", "engine"))
    if not os.path.exists(casdisk):
        sys.exit("no casdisk tool at %s (set top_builddir)" % casdisk)
    if args.cache is None:
        args.cache = os.path.join(top, "bench-images-cache")
    if args.memory_blocks is None:
        args.memory_blocks = 8192 if args.smoke else MEMORY_BLOCKS
    if args.out is None and not args.smoke:
        args.out = os.path.join(TOP_SRC, "bench", "results")
    ensure_tools(args.smoke)
    os.makedirs(args.cache, exist_ok=True)
    block_sizes = [int(x) * KiB for x in args.block_sizes.split(",")]

    started = datetime.datetime.now().replace(microsecond=0)
    t0, busy0, own0, load0 = time.monotonic(), cpu_busy(), own_cpu(), load_avg()
    images, corpus_info = corpus(args)
    log("corpus: %s" % ", ".join("%s (%s MiB allocated)" % (c["name"], mib(c["allocated"]))
                                 for c in corpus_info))
    for _, p in images:
        warm(p)
    scratch = tempfile.mkdtemp(prefix="casdisk-images-", dir=args.tmp)
    try:
        level = casdisk_level(casdisk, scratch)
        log("offline model (zstd level %d)..." % level)
        offline = offline_model(images, level)
        reps = []
        for rep in range(args.reps):
            one = []
            for kind in ("raw", "qcow2", "qcow2-c"):
                one.append(measure_file_backend(kind, images, scratch))
                log("rep %d %-12s %8s MiB allocated" % (rep + 1, kind, mib(one[-1]["allocated"])))
            for bs in block_sizes:
                one.append(measure_casdisk(casdisk, bs, images, scratch))
                log("rep %d %-12s %8s MiB allocated, dedup %.2f, import %s s" % (
                    rep + 1, one[-1]["backend"], mib(one[-1]["allocated"]),
                    one[-1]["info"]["dedup_ratio"],
                    " ".join("%.2f" % i["seconds"] for i in one[-1]["images"])))
            reps.append(one)
        memory = []
        if args.memory_blocks and os.path.exists(engine):
            for bs in block_sizes:
                memory.append(measure_memory(engine, bs, args.memory_blocks, scratch))
                log("memory %2d KiB: %.1f bytes per further block" % (
                    bs // KiB, memory[-1]["bytes_per_block_marginal"]))
        elif args.memory_blocks:
            log("no bench/engine at %s: index RAM from the documented entry size" % engine)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    # Sizes from the last repetition; times: median per image over the repetitions.
    backends = reps[-1]
    for i, b in enumerate(backends):
        for j, im in enumerate(b["images"]):
            im["seconds_each"] = [r[i]["images"][j]["seconds"] for r in reps]
            im["seconds"] = statistics.median(im["seconds_each"])
    wall = time.monotonic() - t0
    other = max(0.0, (cpu_busy() - busy0) - (own_cpu() - own0)) / wall
    res = {
        "meta": {
            "command": public_command(sys.argv[1:]),
            "smoke": args.smoke, "reps": args.reps, "started": started.isoformat(),
            "git": git_head(), "nproc": os.cpu_count(), "cpu_model": cpu_model(),
            "kernel": os.uname().release, "qemu": first_line(["qemu-img", "--version"]),
            "mke2fs": mke2fs_version(),
            "mmdebstrap": first_line(["mmdebstrap", "--version"]) if not args.smoke else None,
            "zstd": offline["zstd"], "load_start": load0, "load_end": load_avg(),
            "wall_s": wall, "other_cores": other,
        },
        "corpus": corpus_info, "images": [n for n, _ in images], "level": level,
        "backends": backends, "memory": memory, "memory_blocks": args.memory_blocks,
        "offline": offline,
    }
    res["summary"] = derive(res)
    md = markdown(res)
    print(md)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        base = os.path.join(args.out, started.strftime("%Y-%m-%d-%H%M") +
                            ("-images-smoke" if args.smoke else "-images"))
        with open(base + ".md", "w") as f:
            f.write(md + "\n")
        with open(base + ".json", "w") as f:
            json.dump(res, f, indent=1)
        log("wrote %s.md and .json" % base)


def public_command(argv):
    """The command line as the report shows it: directories named by their
    option, not by this machine's paths."""
    out, hide = ["bench/images.py"], False
    for a in argv:
        if hide:
            out.append("DIR")
            hide = False
        elif a in ("--cache", "--tmp", "--out"):
            out.append(a)
            hide = True
        elif a.split("=")[0] in ("--cache", "--tmp", "--out"):
            out.append(a.split("=")[0] + "=DIR")
        else:
            out.append(a)
    return " ".join(out)


def casdisk_level(casdisk, scratch):
    st = os.path.join(scratch, "level")
    run([casdisk, "create", st, "--size", "1M"], 60)
    level = casdisk_info(casdisk, st)["store"]["compression_level"]
    shutil.rmtree(st)
    return level


def mke2fs_version():
    r = subprocess.run(["mke2fs", "-V"], capture_output=True, text=True, timeout=20)
    return ((r.stderr or r.stdout).strip().splitlines() or ["?"])[0]


def git_head():
    r = subprocess.run(["git", "-C", TOP_SRC, "rev-parse", "--short", "HEAD"],
                       capture_output=True, text=True, timeout=20)
    head = r.stdout.strip() or "?"
    r = subprocess.run(["git", "-C", TOP_SRC, "status", "--porcelain", "--", "lib", "tools",
                        "bench/images.py", "bench/engine.c"],
                       capture_output=True, text=True, timeout=20)
    return head + (" (lib/, tools/ or the benchmark modified)" if r.stdout.strip() else "")


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for l in f:
            if l.startswith("model name"):
                return l.split(":", 1)[1].strip()
    return "?"


if __name__ == "__main__":
    main()
