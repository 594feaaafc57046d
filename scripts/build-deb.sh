#!/bin/bash
# Build the Debian package of casdisk (debian/) without touching the
# source tree: copy it to OUTDIR/src, run dpkg-buildpackage -us -uc -b
# there, and leave the .deb (and .buildinfo, .changes) in OUTDIR.
#   bash scripts/build-deb.sh [SRCDIR [OUTDIR]]    (default: . and ./deb)
# `make deb` runs it with OUTDIR = the build tree's deb/.  The build
# dependencies are in debian/control (scripts/install-deps.sh --test
# installs them).
set -euo pipefail
src=$(cd "${1:-$(dirname "$0")/..}" && pwd)
out=${2:-$src/deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out/src" "$out"/casdisk*_*.deb "$out"/casdisk_*.buildinfo "$out"/casdisk_*.changes
mkdir "$out/src"

# The tracked (and new, not ignored) files: the build trees, autotools
# output and earlier packages stay behind.
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$src" && git ls-files -z --cached --others --exclude-standard |
     while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
     tar --null -T - -cf -) | tar -C "$out/src" -xf -
else
  tar -C "$src" --exclude=./.git --exclude='./build*' --exclude=./deb --exclude=./autom4te.cache \
      --exclude=./config.status --exclude=./config.log -cf - . | tar -C "$out/src" -xf -
fi

# dpkg-buildpackage writes the package beside the tree it builds: in OUTDIR.
cd "$out/src"
# The test suite needs root, qemu and a guest kernel: scripts/test.sh runs
# it; the package build does not.
export DEB_BUILD_OPTIONS="nocheck ${DEB_BUILD_OPTIONS:-}"
dpkg-buildpackage -us -uc -b >"$out/build.log" 2>&1 || {
  tail -40 "$out/build.log"; echo "build-deb: dpkg-buildpackage failed (log: $out/build.log)" >&2; exit 1; }
rm -rf "$out/src"
ls "$out"/casdisk_*.deb
