#!/bin/bash
# A short slice of `make bench-images`: bench/images.py --smoke builds two
# small ext4 images from files of /usr/share (no network, no mmdebstrap),
# stores them and a copy of the second as raw, qcow2, offline-compressed
# qcow2 and casdisk at every block size, measures index memory with
# bench/engine and runs the offline models of finer-grained dedup (and of
# a sparse index).  Every
# column must be there and sane: casdisk stores something, dedup >= 1, the
# copy adds almost nothing to a casdisk store, and the offline model of
# today's store agrees with the measured stores.  (No speed is asserted.)
. "${top_builddir:-.}/tests/functions.sh"
requires mke2fs qemu-img
[ "${CASDISK_SANITIZERS:-}" = yes ] &&
  { echo "SKIP: benchmark slices run in the normal build (timings under ASan mean nothing)"; exit 77; }
[ -d /usr/share/doc ] || { echo "SKIP: no /usr/share/doc to build the smoke images from"; exit 77; }
[ -x "$top_builddir/bench/engine" ] || fail "bench/engine was not built"

r=0
CASDISK_TOOL=$CASDISK CASDISK_ENGINE_BENCH=$top_builddir/bench/engine \
  timeout 120 $PYTHON "$top_srcdir/bench/images.py" --smoke --cache "$tmp/cache" --tmp "$tmp" \
  --out "$tmp/res" >"$tmp/out" 2>"$tmp/err" || r=$?
cat "$tmp/err"
[ $r -eq 77 ] && { echo "SKIP: a tool the smoke run needs is missing"; exit 77; }
[ $r -eq 0 ] || { cat "$tmp/out"; fail "bench/images.py --smoke exited $r"; }
cat "$tmp/out"
for h in "## Measured: bytes on disk" "## Measured: casdisk by block size" \
         "## Estimated offline" "## Trade-off" "Goal of issue 15"; do
  grep -Fq "$h" "$tmp/out" || fail "the report has no section '$h'"
done
ls "$tmp"/res/*-images-smoke.md "$tmp"/res/*-images-smoke.json >/dev/null || fail "no result files"
grep -q "$tmp" "$tmp"/res/*-images-smoke.md && fail "the report names a scratch path"

$PYTHON - "$tmp"/res/*-images-smoke.json <<'PYEOF' || fail "the smoke run's figures are not sane"
import json, sys
res = json.load(open(sys.argv[1]))
bad = []
def check(cond, what):
    if not cond:
        bad.append(what)
imgs = res["images"]
check(len(imgs) == 3 and imgs[2] == imgs[1] + "-copy", "images: %s" % imgs)
rows = {r["name"]: r for r in res["summary"]}
need = ["raw", "qcow2", "qcow2-c"] + ["casdisk-%dK" % k for k in (4, 8, 16, 32, 64)] + \
       ["4K identity, 64K frames", "16K identity, 64K frames",
        "4K identity, 64K frames, 1 in 16 keys", "4K identity, 64K frames, 1 in 64 keys"]
for n in need:
    check(n in rows, "no row %s" % n)
for n, r in rows.items():
    check(r["allocated"] > 0, "%s: allocated %s" % (n, r["allocated"]))
    check(r["x_qcow2c"] > 0, "%s: x qcow2-c %s" % (n, r["x_qcow2c"]))
    if r["measured"]:
        check(len(r["seconds"]) == 3 and all(s > 0 for s in r["seconds"]), "%s: times %s" % (n, r["seconds"]))
    if n.startswith("casdisk") or not r["measured"]:
        check(r["dedup"] >= 1.0, "%s: dedup %s" % (n, r["dedup"]))
        check(r["compression"] >= 1.0, "%s: compression %s" % (n, r["compression"]))
        check(r["nblocks"] > 0 and r["entries_per_tib"] > 0, "%s: entries" % n)
        check(r["ram_per_tib"] > 0 and r["index_bytes"] > 0, "%s: RAM %s" % (n, r["ram_per_tib"]))
    if n.startswith("casdisk"):
        # The copy is the second image again: deduplicated whole.
        check(r["copy_adds"] < 0.02 * r["allocated"], "%s: the copy added %d bytes" % (n, r["copy_adds"]))
        check(r["dedup"] > 1.3, "%s: dedup %.2f with a copy in the corpus" % (n, r["dedup"]))
        check(r["stored"] > 0 and r["allocated"] >= r["stored"], "%s: stored %d allocated %d" % (n, r["stored"], r["allocated"]))
# A raw copy costs what the image costs; the casdisk stores are smaller than raw.
check(rows["raw"]["copy_adds"] > 0.5 * res["backends"][0]["images"][1]["allocated"], "raw copy")
for k in (4, 8, 16, 32, 64):
    check(rows["casdisk-%dK" % k]["allocated"] < rows["raw"]["allocated"], "casdisk-%dK >= raw" % k)
# The model of today's store (piece = frame) matches the measured store.
for m in res["offline"]["models"]:
    if m["identity"] != m["frame"]:
        continue
    st = rows["casdisk-%dK" % (m["identity"] // 1024)]
    check(abs(m["unique_pieces"] - st["nblocks"]) <= 2, "model %d: %d unique, store %d blocks" % (m["identity"], m["unique_pieces"], st["nblocks"]))
    check(abs(m["stored_bytes"] - st["stored"]) <= 0.02 * st["stored"], "model %d: stored %d, store %d" % (m["identity"], m["stored_bytes"], st["stored"]))
# A sparse index finds at most every duplicate, so stores at least the full model's pieces.
full = rows["4K identity, 64K frames"]
for n in (16, 64):
    r = rows["4K identity, 64K frames, 1 in %d keys" % n]
    check(0 < r["found_fraction"] <= 1, "sparse 1/%d: found %s" % (n, r["found_fraction"]))
    check(r["nblocks"] >= full["nblocks"], "sparse 1/%d: %d pieces < %d" % (n, r["nblocks"], full["nblocks"]))
    check(r["ram_per_tib"] * n <= full["ram_per_tib"] * 1.001, "sparse 1/%d: RAM" % n)
for m in res["memory"]:
    check(m["bytes_per_block_marginal"] > 0, "memory %d: %s" % (m["block_size"], m["bytes_per_block_marginal"]))
check(len(res["memory"]) == 5, "memory measured for %d block sizes" % len(res["memory"]))
if bad:
    print("\n".join(bad))
    sys.exit(1)
PYEOF
pass "bench/images.py --smoke: every column produced; the copy adds almost nothing; the model of today's store matches the stores"
