#!/bin/bash
# A short slice of `make bench`: bench/run.sh --smoke runs casdisk (its
# defaults, buffered, and direct-io=true), qcow2 (--cache=none and
# --cache=writeback) and the file plugin through fio and bench/flushload.py
# and the space workload, and bench/engine measures memory per GiB and the
# reopen time after a crash; a slice of `make bench-import` (bench/import.py,
# 64 MiB, one repetition).  Every run must produce numbers, and the method
# must be the one bench/README.md describes: write jobs end with a flush in
# their time, write amplification and the peak size are measured for every
# backend, reads start after the page cache was dropped.  (No speed is
# asserted: targets live in bench/.)
. "${top_builddir:-.}/tests/functions.sh"
requires_python_nbd fio
[ "${CASDISK_SANITIZERS:-}" = yes ] &&
  { echo "SKIP: benchmark slices run in the normal build (timings under ASan mean nothing)"; exit 77; }
[ -x "$top_builddir/bench/engine" ] || fail "bench/engine was not built"

# The benchmark's direct-io backend needs a file system that does O_DIRECT:
# where the test directory is a tmpfs, its scratch goes to /var/tmp.
bdir=$tmp
if [ "$(stat -f -c %T "$tmp")" = tmpfs ]; then
  bdir=$(mktemp -d /var/tmp/cdb.XXXXXX)   # short: sockets live under it
  trap 'rm -rf "$bdir"; cleanup' EXIT
fi
r=0
CASDISK_PLUGIN=$PLUGIN CASDISK_TOOL=$CASDISK CASDISK_ENGINE_BENCH=$top_builddir/bench/engine \
  timeout 300 bash "$top_srcdir/bench/run.sh" --smoke --tmpdir "$bdir" --out "$tmp/res" \
  >"$tmp/out" 2>"$tmp/err" || r=$?
cat "$tmp/err"
[ $r -eq 77 ] && { echo "SKIP: a benchmark tool is missing"; exit 77; }
[ $r -eq 0 ] || { cat "$tmp/out"; fail "bench/run.sh --smoke exited $r"; }
grep -Eq "resident memory per GiB of unique data: -?[0-9.]+ MiB" "$tmp/out" ||
  { cat "$tmp/out"; fail "no memory figure"; }
grep -Eq "reopen after a crash: [0-9.]+ s per 100 GiB" "$tmp/out" ||
  { cat "$tmp/out"; fail "no reopen figure"; }
pass "bench/run.sh --smoke: every run produced numbers, memory and reopen measured"

for h in "## Ratios, like against like" "## Write amplification and peak size" \
         "## Page cache dropped before the prefilled-region jobs"; do
  grep -Fq "$h" "$tmp/out" || { cat "$tmp/out"; fail "the report has no section '$h'"; }
done
# The method, checked on the numbers of every run of every backend.
/usr/bin/python3 - "$tmp"/res/*-smoke.json <<'PYEOF' || { cat "$tmp/out"; fail "the smoke run's method checks failed"; }
import json, math, sys
res = json.load(open(sys.argv[1]))
runs = res["runs"]
backends = ["casdisk", "casdisk-direct", "qcow2", "qcow2-wb", "file"]
bad = []
def check(cond, what):
    if not cond:
        bad.append(what)
workloads = res["meta"]["params"]["workloads"]
kinds = set()
for wl in workloads:
    for b in backends:
        rs = [r for r in runs if r["workload"] == wl and r["backend"] == b]
        check(len(rs) == 1, "%s/%s: %d runs" % (wl, b, len(rs)))
        for r in rs:
            who = "%s/%s" % (wl, b)
            if r["side"] == "write":
                # The flush at the end is part of the job, in its time.
                if "flushload" in r["fio_cmd"]:
                    kinds.add("flush every N")
                    n = int(r["fio_cmd"].split("--flush-every ")[1].split()[0])
                    bs = int(r["fio_cmd"].split("--bs ")[1].split()[0])
                    writes = r["io_bytes"] // bs
                    check(r["sync_ios"] is not None and abs(r["sync_ios"] - writes // n) <= 1,
                          "%s: %s flushes for %d writes, one per %d expected"
                          % (who, r["sync_ios"], writes, n))
                    check(r["end_flush_ms_est"] is not None, who + ": no end flush")
                else:
                    kinds.add("fio end_fsync")
                    check("--end_fsync=1" in r["fio_cmd"] and r["end_fsync"] == "1",
                          who + ": fio job without end_fsync=1")
                for k in ("wa", "wa_server", "wa_device"):
                    v = r.get(k)
                    check(v is not None and v > 0 and math.isfinite(v), "%s: %s = %r" % (who, k, v))
                check(r["peak_samples"] >= 2 and r["peak_alloc"] > 0, who + ": no peak size")
                check(r["live_bytes"] > 0, who + ": no live data")
                if b.startswith("casdisk"):
                    # Incompressible unique data: the store holds at least the live data.
                    check(r["peak_alloc"] >= r["live_bytes"],
                          "%s: peak %d < live %d" % (who, r["peak_alloc"], r["live_bytes"]))
            else:
                kinds.add("cold read")
                d = r.get("drop")
                check(d is not None, who + ": read without a page cache drop")
                if d:
                    check(d["t"] <= r["t_start"], who + ": dropped after the read started")
                    check(d["resident_after"] is not None and
                          d["resident_after"] <= 1048576 + d["apparent"] // 50,
                          "%s: %r bytes still cached after the drop" % (who, d["resident_after"]))
                    if b in ("casdisk", "qcow2-wb", "file"):  # buffered: the prefill was cached
                        check(d["resident_before"] > d["resident_after"],
                              "%s: the drop dropped nothing (%r -> %r)"
                              % (who, d["resident_before"], d["resident_after"]))
                warm = [x for x in runs if x["workload"] == wl + "-warm" and x["backend"] == b]
                check(len(warm) == 1 and warm[0]["mib_s"] > 0, who + ": no warm run beside")
check(kinds == {"flush every N", "fio end_fsync", "cold read"}, "job kinds run: %s" % sorted(kinds))
names = [p["casdisk"] + "/" + p["peer"] for p in res["pairings"]]
check(names[:3] == ["casdisk/qcow2", "casdisk/qcow2-wb", "casdisk-direct/qcow2"],
      "pairings: %s" % names)
for p in res["pairings"][:3]:
    for wl in workloads:
        t = p["ratios"].get(wl, {}).get("throughput")
        check(t is not None and t > 0, "%s: no ratio for %s" % (p["title"], wl))
for x in bad:
    print("FAIL:", x)
print("%d runs checked, %d problems" % (len(runs), len(bad)))
sys.exit(1 if bad else 0)
PYEOF
pass "bench/run.sh --smoke: flush-counted writes, write amplification, peak size and cold reads for every backend"

# The SVG plots beside the report: the ratios of every pairing and
# workload, and the allocated size over time of every backend.
base=$(ls "$tmp"/res/*-smoke.json); base=${base%.json}
for svg in "$base-ratios.svg" "$base-size.svg"; do
  [ -s "$svg" ] || { cat "$tmp/err"; fail "no plot $(basename "$svg")"; }
  grep -q "<svg" "$svg" || fail "$(basename "$svg") is not an SVG file"
done
/usr/bin/python3 - "$base" <<'PYEOF' || fail "the plots do not show what the report measured"
import json, sys, xml.etree.ElementTree as ET
base = sys.argv[1]
res = json.load(open(base + ".json"))
bad = []
def texts(path):
    return " ".join(t for t in ET.parse(path).getroot().itertext())
ratios = texts(base + "-ratios.svg")
for p in res["pairings"]:
    if p["title"] not in ratios:
        bad.append("ratios plot: no bar series for '%s'" % p["title"])
for wl in res["meta"]["params"]["workloads"]:
    if wl not in ratios:
        bad.append("ratios plot: no workload %s" % wl)
size = texts(base + "-size.svg")
for b in sorted({r["backend"] for r in res["runs"] if r["side"] == "write"}):
    if b not in size:
        bad.append("size plot: no line for %s" % b)
for r in res["runs"]:
    if r["side"] == "write" and len(r.get("size_series") or []) < 2:
        bad.append("%s/%s: no size samples" % (r["workload"], r["backend"]))
for x in bad:
    print("FAIL:", x)
sys.exit(1 if bad else 0)
PYEOF
pass "plots: $(basename "$base")-ratios.svg and -size.svg show every pairing, workload and backend"

top_builddir=$top_builddir timeout 120 /usr/bin/python3 "$top_srcdir/bench/import.py" --reps 1 --size 64 \
  --tmp "$tmp" >"$tmp/import.out" 2>&1 || { cat "$tmp/import.out"; fail "bench/import.py failed"; }
for who in casdisk-1 "casdisk-[0-9]+" qcow2 raw; do
  grep -Eq "^\| $who \| [0-9]+ \([0-9]+\) \| [0-9.]+ \| [0-9.]+ \|" "$tmp/import.out" ||
    { cat "$tmp/import.out"; fail "bench/import.py: no figures for $who"; }
done
pass "bench/import.py: casdisk import with and without the pool, qcow2 and raw measured"
