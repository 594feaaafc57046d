#!/bin/bash
# Install the Debian packages casdisk needs.  Run as root on Debian 12 (no
# sudo needed or used).
#
#   bash scripts/install-deps.sh          build and serve: compiler, autotools,
#                                         the libraries, nbdkit, nbdinfo
#   bash scripts/install-deps.sh --test   that and the whole test toolchain
#                                         (clients, fio, qemu, a guest kernel,
#                                         clang, packaging and systemd tools,
#                                         a one-node Ceph cluster, librados)
#
# When every package is installed already it does nothing, without touching
# apt, so that repeated runs are fast.
set -euo pipefail

serve=(
  # build
  build-essential autoconf automake libtool pkg-config
  nbdkit nbdkit-plugin-dev libzstd-dev liburcu-dev libaio-dev libssl-dev
  # quickstart.sh: nbdinfo tells a live server from a stale socket
  libnbd-bin
)

test=(
  # unit tests
  libcriterion-dev
  # integration tests: NBD clients, images, fio, file systems
  qemu-utils python3 python3-libnbd fio e2fsprogs
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
  # the Debian package (tests/test-deb.sh): its build dependencies (the
  # build set above), the packaging tools, lintian, man to open the pages
  dpkg-dev debhelper fakeroot lintian man-db bash-completion
  # systemd units and socket activation (tests/test-systemd.sh)
  systemd
  # the libvirt example (tests/test-libvirt.sh): virt-xml-validate, and
  # xmllint, which it runs (only recommended by libvirt-clients)
  libvirt-clients libxml2-utils
  # casdisk top in a terminal (tests/test-top.sh)
  tmux
  # the benchmark's SVG plots (bench/plots.py; tests/test-bench.sh), and
  # the zstd command its space workload and bench/images.py compress with
  gnuplot-nox zstd
  # the remote tier: a throwaway one-node Ceph cluster
  # (scripts/ceph-cluster.sh, tests/test-ceph-cluster.sh) and librados
  # for the probe under tests/helpers
  ceph-mon ceph-osd ceph-common librados-dev
)

case ${1:-} in
  "") packages=("${serve[@]}") ;;
  --test) packages=("${serve[@]}" "${test[@]}") ;;
  *) echo "usage: $0 [--test]" >&2; exit 2 ;;
esac

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
