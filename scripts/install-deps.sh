#!/bin/bash
# Install every Debian package casdisk needs to build, run and test.
# Run as root on Debian 12.  Does nothing when everything is there already.
set -euo pipefail

packages=(
  # build
  build-essential autoconf automake libtool pkg-config
  nbdkit nbdkit-plugin-dev libzstd-dev liburcu-dev libaio-dev libssl-dev
  libcriterion-dev
  # tests: NBD clients, images, fio, fuzzing
  qemu-utils libnbd-bin python3 python3-libnbd fio e2fsprogs clang
  util-linux procps coreutils
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages are installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run this script as root" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
