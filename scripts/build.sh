#!/bin/bash
# Build casdisk out of tree, in build/.  Extra arguments go to configure
# (only when build/ is configured for the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f config.status ]; then
  # Automake refuses out-of-tree builds of a source tree configured in place.
  echo "build: this source tree was configured in place (an in-tree build);" >&2
  echo "build: run 'make distclean' here first, or use a fresh clone" >&2
  exit 1
fi
[ -x configure ] || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure "$@"
make -j"$(nproc)"
