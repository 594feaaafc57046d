#!/bin/bash
# Install every Debian package casdisk needs to build, run and test.
# Run as root on Debian 12 (no sudo needed or used).  When every package is
# installed already it does nothing, without touching apt, so that repeated
# runs are fast.
set -euo pipefail

packages=(
  # build
  build-essential autoconf automake libtool pkg-config
  nbdkit nbdkit-plugin-dev libzstd-dev liburcu-dev libaio-dev libssl-dev
  # unit tests
  libcriterion-dev
  # integration tests: NBD clients, images, fio, file systems
  qemu-utils libnbd-bin python3 python3-libnbd fio e2fsprogs
  util-linux procps coreutils
  # the bench-images slice (tests/test-bench-images.sh): zstd for its
  # offline model (bench/images.py falls back to the zstd CLI without it)
  python3-zstandard
  # the guest test (tests/guest): qemu's PC emulator, a Debian kernel and
  # a static busybox for the guest's initramfs
  qemu-system-x86 linux-image-amd64 busybox-static
  # the fuzzing test: clang with libFuzzer (only recommended by clang,
  # so named here: we install without recommends)
  clang libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages are installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run this script as root to install them" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
