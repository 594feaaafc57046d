#!/bin/bash
# A short slice of `make bench`: bench/run.sh --smoke runs casdisk, qcow2
# and the file plugin through fio and the space workload, and bench/engine
# measures memory per GiB and the reopen time after a crash; a slice of
# `make bench-import` (bench/import.py, 64 MiB, one repetition); every run
# must produce numbers.  (No speed is asserted: targets live in bench/.)
. "${top_builddir:-.}/tests/functions.sh"
requires_python_nbd fio
[ "${CASDISK_SANITIZERS:-}" = yes ] &&
  { echo "SKIP: benchmark slices run in the normal build (timings under ASan mean nothing)"; exit 77; }
[ -x "$top_builddir/bench/engine" ] || fail "bench/engine was not built"

r=0
CASDISK_PLUGIN=$PLUGIN CASDISK_TOOL=$CASDISK CASDISK_ENGINE_BENCH=$top_builddir/bench/engine \
  timeout 300 bash "$top_srcdir/bench/run.sh" --smoke --tmpdir "$tmp" >"$tmp/out" 2>"$tmp/err" || r=$?
cat "$tmp/err"
[ $r -eq 77 ] && { echo "SKIP: a benchmark tool is missing"; exit 77; }
[ $r -eq 0 ] || { cat "$tmp/out"; fail "bench/run.sh --smoke exited $r"; }
grep -Eq "resident memory per GiB of unique data: -?[0-9.]+ MiB" "$tmp/out" ||
  { cat "$tmp/out"; fail "no memory figure"; }
grep -Eq "reopen after a crash: [0-9.]+ s per 100 GiB" "$tmp/out" ||
  { cat "$tmp/out"; fail "no reopen figure"; }
pass "bench/run.sh --smoke: every run produced numbers, memory and reopen measured"

top_builddir=$top_builddir timeout 120 /usr/bin/python3 "$top_srcdir/bench/import.py" --reps 1 --size 64 \
  --tmp "$tmp" >"$tmp/import.out" 2>&1 || { cat "$tmp/import.out"; fail "bench/import.py failed"; }
for who in casdisk-1 "casdisk-[0-9]+" qcow2 raw; do
  grep -Eq "^\| $who \| [0-9]+ \([0-9]+\) \| [0-9.]+ \| [0-9.]+ \|" "$tmp/import.out" ||
    { cat "$tmp/import.out"; fail "bench/import.py: no figures for $who"; }
done
pass "bench/import.py: casdisk import with and without the pool, qcow2 and raw measured"
