#!/bin/bash
# Build casdisk out of tree, in build/.  Extra arguments go to configure.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x configure ] || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure "$@"
make -j"$(nproc)"
