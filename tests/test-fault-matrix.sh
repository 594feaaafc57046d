#!/bin/bash
# Fault-injection matrix (tests/fault-matrix.py): every fault site (read,
# write, sync of the data file, the journal and the checkpoint; hole
# punch, truncate, create, rename, directory sync; EIO once, EIO sticky,
# ENOSPC sticky) crossed with each phase of the work (a client flush, the
# GC's erase, a recycler pass, a background checkpoint, the shutdown, a
# GC tick followed by the shutdown).  Each cell: a fresh store, nbdkit
# with CASDISK_FAULT aimed at the phase (CASDISK_FAULT_ARM), a workload of
# known writes, flushes and trims, SIGTERM (kill -9 after 15 s), then a
# restart without the fault: the store opens, every flushed write reads
# back, casdisk check passes, and the fault did fire.
# FAULT_MATRIX_FULL=1 (make check-fault-matrix) runs more N values and modes.
. "${top_builddir:-.}/tests/functions.sh"
requires_python_nbd
requires flock

keep=${FAULT_MATRIX_KEEP_DIR:-$top_builddir/tests/fault-kept}
limit=170
[ "${CASDISK_SANITIZERS:-}" = yes ] && limit=600
[ "${FAULT_MATRIX_FULL:-}" = 1 ] && limit=3000
$PYTHON "$top_srcdir/tests/fault-matrix.py" --nbdkit "$NBDKIT" --plugin "$PLUGIN" \
  --casdisk "$CASDISK" --workdir "$tmp/matrix" --keep-dir "$keep" --time-limit $limit ||
  fail "fault matrix: cells failed (evidence in $keep)"
pass "fault matrix"
