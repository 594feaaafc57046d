#!/bin/bash
# Build the libFuzzer target tests/fuzz/fuzz-metadata with clang, from the
# engine's sources (the main build may use gcc).  Usage: build.sh OUTPUT
set -euo pipefail
srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
builddir=${top_builddir:-$srcdir}
out=$1
command -v clang >/dev/null || { echo "clang is not installed" >&2; exit 77; }
# The engine without the remote tier (lib/remote/ needs librados, and the
# metadata parsers do not reach it).
srcs=()
for f in "$srcdir"/lib/*/*.c; do
  case $f in "$srcdir"/lib/remote/*) ;; *) srcs+=("$f") ;; esac
done
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$builddir" -I"$srcdir/lib" \
  "${srcs[@]}" "$srcdir/tests/fuzz/fuzz-metadata.c" \
  $(pkg-config --cflags --libs libzstd liburcu-bp liburcu-cds libcrypto) -laio -lpthread \
  -o "$out"
