#!/bin/bash
# casdisk benchmark: casdisk vs qcow2 (qemu-nbd) vs raw file (nbdkit file),
# interleaved, on the same file system.  See bench/README.md.
#   bench/run.sh            full run (3 reps, ~15-20 min)
#   bench/run.sh --quick    1 rep, small sizes (~2-3 min)
#   bench/run.sh --smoke    checks the benchmark itself works (<40 s), writes no results
# Results: markdown on stdout, and (except --smoke) bench/results/YYYY-MM-DD-HHMM[-quick].{md,json}
# Environment: top_builddir (where plugin/ and tools/ were built),
# CASDISK_PLUGIN, CASDISK_TOOL to override the paths.
here=$(cd "$(dirname "$0")" && pwd)
export CASBENCH_CMD="bench/run.sh${*:+ $*}"
exec /usr/bin/python3 "$here/casbench.py" "$@"
