#!/bin/bash
# A short slice of the crash and power-loss harness (tests/crash/): a few
# iterations of a randomized two-disk, four-connection workload crashed by
# kill -9 or by a simulated power loss (the engine's I/O log replayed with
# unsynced writes lost or torn), each followed by recovery, a check of
# every block against the model of what may survive, and casdisk check.
# The long run is `make crash-soak` (CRASH_ITERATIONS, default 1000).
. "${top_builddir:-.}/tests/functions.sh"
requires_python_nbd

iterations=${CRASH_CHECK_ITERATIONS:-8}
keep=${CRASH_KEEP_DIR:-$top_builddir/tests/crash-kept}
$PYTHON "$top_srcdir/tests/crash/harness.py" \
  --iterations "$iterations" --time-limit 100 --workdir "$tmp/crash" --keep-dir "$keep" \
  --nbdkit "$NBDKIT" --plugin "$PLUGIN" --casdisk "$CASDISK" \
  --moment-weights 2,2,1,1 --max-workload 1 ||
  fail "crash harness found violations (evidence kept in $keep, see tests/crash/README.md)"
pass "$iterations crash iterations, no violation"
