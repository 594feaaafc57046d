#!/bin/bash
# Fuzz the metadata parsers for SECONDS (default 30): build the target,
# seed the corpus from a real store, run libFuzzer, fail on any finding.
#   run.sh [SECONDS] [CORPUS_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
secs=${1:-30}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
corpus=${2:-$work/corpus}
mkdir -p "$corpus"
bash "$here/build.sh" "$work/fuzz-metadata"
CASDISK_FUZZ_SEEDS="$corpus" "$work/fuzz-metadata"
cd "$work"
echo "fuzzing the metadata parsers for $secs s (corpus: $corpus)"
if ! "$work/fuzz-metadata" -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 \
     -print_final_stats=1 "$corpus" > fuzz.log 2>&1; then
  tail -60 fuzz.log
  echo "the fuzzer found a crash, leak or timeout" >&2
  exit 1
fi
grep -E '^stat::number_of_executed_units|^Done' fuzz.log || true
ls crash-* leak-* timeout-* oom-* 2>/dev/null && exit 1
echo "ok: no crash, leak or timeout"
