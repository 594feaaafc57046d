#!/bin/bash
# Install what is needed, build, and serve a disk over NBD from a casdisk
# store (created on first use).  Stop it with Ctrl-C; the data stays.
#   STORE=/var/tmp/casdisk-store SIZE=10G SOCKET=/tmp/casdisk.sock bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh --enable-werror

store=${STORE:-/var/tmp/casdisk-store}
size=${SIZE:-10G}
sock=${SOCKET:-/tmp/casdisk.sock}
plugin=$PWD/build/plugin/.libs/nbdkit-casdisk-plugin.so

cat <<MSG

casdisk: serving disk 'disk0' of store $store ($size) on $sock
  NBD URI:   nbd+unix:///disk0?socket=$sock
  inspect:   nbdinfo 'nbd+unix:///disk0?socket=$sock'
  a VM:      qemu-system-x86_64 -m 1G -drive file=nbd+unix:///disk0?socket=$sock,format=raw,if=virtio,discard=unmap
  the store: $PWD/build/tools/casdisk info $store   (after stopping the server)
Press Ctrl-C to stop.

MSG
exec nbdkit -f -U "$sock" "$plugin" store="$store" size="$size"
