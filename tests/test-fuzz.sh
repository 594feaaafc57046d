#!/bin/bash
# A short fuzzing run of the metadata parsers (make fuzz runs a long one).
command -v clang >/dev/null || { echo "SKIP: clang is not installed"; exit 77; }
exec bash "${top_srcdir:-.}/tests/fuzz/run.sh" "${FUZZ_SECONDS:-30}"
