#!/bin/bash
# A short slice of `make bench-recycler`: the benchmark of guest throughput
# with and without the recycler runs end to end and reports its ratios.
# (No speed is asserted here: performance targets live in bench/.)
. "${top_builddir:-.}/tests/functions.sh"
requires_python_nbd fio
fio --enghelp 2>/dev/null | grep -qw nbd || { echo "SKIP: fio has no nbd engine"; exit 77; }
[ "${CASDISK_SANITIZERS:-}" = yes ] &&
  { echo "SKIP: benchmark slices run in the normal build (timings under ASan mean nothing)"; exit 77; }

NBDKIT=$NBDKIT CASDISK_PLUGIN=$PLUGIN $PYTHON "$top_srcdir/bench/recycler.py" --smoke \
  --workdir "$tmp" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "bench/recycler.py --smoke"; }
cat "$tmp/out"
for w in randwrite-64k randread-4k; do
  grep -Eq "^\| $w \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|" "$tmp/out" || fail "no result row for $w"
done
grep -q "worst ratio" "$tmp/out" || fail "no summary line"
pass "bench/recycler.py --smoke reported both workloads"
