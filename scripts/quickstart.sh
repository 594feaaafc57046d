#!/bin/bash
# Install what is needed, build, and serve a disk over NBD from a casdisk
# store (the plugin creates the store on first use).  Ctrl-C stops the
# server; the data stays in the store.  Settings, all optional:
#   STORE=/var/tmp/casdisk-store SIZE=10G SOCKET=/tmp/casdisk.sock bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh --enable-werror

store=${STORE:-/var/tmp/casdisk-store}
size=${SIZE:-10G}
sock=${SOCKET:-/tmp/casdisk.sock}
plugin=$PWD/build/plugin/.libs/nbdkit-casdisk-plugin.so
tool=$PWD/build/tools/casdisk

# A socket left behind by a server that was killed would block the bind.
if [ -S "$sock" ]; then
  if nbdinfo --size "nbd+unix:///?socket=$sock" >/dev/null 2>&1; then
    echo "quickstart: a server is already listening on $sock" >&2
    exit 1
  fi
  rm -f "$sock"
fi

cat <<MSG

casdisk: serving store $store (disk 'disk0', $size) on $sock
  NBD URI:    nbd+unix:///?socket=$sock
              (the default export is disk0; other disks by name:
               nbd+unix:///NAME?socket=$sock)
  inspect:    nbdinfo 'nbd+unix:///?socket=$sock'
              nbdinfo --map 'nbd+unix:///?socket=$sock'
  a VM:       qemu-system-x86_64 -m 1G -machine accel=kvm:tcg \\
                -drive file=nbd+unix:///disk0?socket=$sock,format=raw,if=virtio,discard=unmap
              (add -cdrom INSTALLER.iso -boot d to install a system on it)
  the store:  $tool info $store   (once the server is stopped)
Press Ctrl-C to stop.

MSG
exec nbdkit -f -U "$sock" "$plugin" store="$store" size="$size"
