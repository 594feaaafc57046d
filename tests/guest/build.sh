#!/bin/bash
# Build the tiny Linux guest of the guest tests into OUTDIR:
#
#   OUTDIR/vmlinuz         the Debian kernel (linux-image-amd64), copied
#   OUTDIR/initramfs.cpio  busybox (busybox-static), the kernel modules for a
#                          virtio disk and ext4, mkfs.ext4, fstrim and
#                          sha256sum with their shared libraries, the data
#                          generator, and tests/guest/init as /init
#   OUTDIR/gen             the data generator, for the host side
#   OUTDIR/stamp           what the guest was built from
#
#   tests/guest/build.sh OUTDIR
#
# Nothing is built when the stamp matches the inputs (kernel version, the
# versions of the packages copied in, and the sources here), so only the
# first run pays.  A missing package is an error, with its name: the
# packages are in scripts/install-deps.sh.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)

missing () { echo "guest build: $*" >&2; exit 1; }

# The newest kernel in /boot that has its modules installed.
kver=
for k in $(ls -v /boot/vmlinuz-* 2>/dev/null); do
  v=${k#/boot/vmlinuz-}
  [ -f "/lib/modules/$v/modules.dep" ] && kver=$v
done
[ -n "$kver" ] || missing "no kernel in /boot with modules (install linux-image-amd64)"
[ -r "/boot/vmlinuz-$kver" ] || missing "/boot/vmlinuz-$kver is not readable"
# busybox-static's busybox: a dynamic one would need its libraries too.
busybox=$(command -v busybox || true)
[ -n "$busybox" ] && { ldd "$busybox" 2>&1 || true; } | grep -q 'not a dynamic executable' ||
  missing "no static busybox (install busybox-static)"
for p in mkfs.ext4 fstrim sha256sum; do
  command -v "$p" >/dev/null || PATH=$PATH:/sbin:/usr/sbin command -v "$p" >/dev/null ||
    missing "$p is not installed"
done
export PATH=$PATH:/sbin:/usr/sbin
command -v gcc >/dev/null || missing "gcc is not installed"

# The modules the guest needs; build.sh adds their dependencies from
# modules.dep and writes the order in which the init script loads them.
modules="virtio_pci virtio_blk crc32c_generic ext4"

stamp_text () {
  echo "kernel $kver"
  dpkg-query -W -f='${Package} ${Version}\n' busybox-static e2fsprogs util-linux \
    coreutils libc6 2>/dev/null || true
  echo "modules $modules"
  cat "$here/build.sh" "$here/init" "$here/gen.c" | sha256sum
}
if [ -f "$out/stamp" ] && [ -f "$out/initramfs.cpio" ] && [ -f "$out/vmlinuz" ] &&
   [ -x "$out/gen" ] && [ "$(stamp_text)" = "$(cat "$out/stamp")" ]; then
  echo "guest build: up to date (kernel $kver)"
  exit 0
fi

echo "guest build: kernel $kver, into $out"
rm -f "$out/stamp"
root=$out/root
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,etc,dev,proc,sys,mnt,tmp,modules}

# busybox, with a link for each applet.
cp "$busybox" "$root/bin/busybox"
for a in $("$busybox" --list); do
  [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
done

# The data generator, static, for the guest and for the host.
gcc -O2 -Wall -Wextra -Werror -static -o "$out/gen" "$here/gen.c"
cp "$out/gen" "$root/bin/gen"

# Real programs (not busybox's applets) with their libraries, from ldd.
copy_with_libs () {
  local src=$1 dst=$2 lib
  cp -L "$src" "$root$dst"
  for lib in $(ldd "$src" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    [ -e "$root$lib" ] || cp -L "$lib" "$root$lib"
  done
}
copy_with_libs "$(command -v mkfs.ext4)" /usr/sbin/mkfs.ext4
copy_with_libs "$(command -v fstrim)" /usr/sbin/fstrim
copy_with_libs "$(command -v sha256sum)" /usr/bin/sha256sum
[ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$root/etc/"

# Kernel modules, uncompressed, each after its dependencies.
dep=/lib/modules/$kver/modules.dep
: >"$root/modules/order"
add_module () {
  local m=$1 line rel d src
  [ -f "$root/modules/$m.ko" ] && return 0
  line=$(grep -E "(^|/)$m\.ko(\.xz|\.zst|\.gz)?:" "$dep" | head -1)
  if [ -z "$line" ]; then
    # Built into this kernel: nothing to load.
    grep -qE "/$m\.ko" "/lib/modules/$kver/modules.builtin" 2>/dev/null ||
      missing "module $m is neither in $dep nor built in"
    return 0
  fi
  rel=${line%%:*}
  for d in ${line#*:}; do
    d=${d##*/}
    add_module "${d%%.ko*}"
  done
  src=/lib/modules/$kver/$rel
  case $src in
    *.ko) cp "$src" "$root/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$src" >"$root/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$src" >"$root/modules/$m.ko" ;;
    *.ko.gz) gzip -dc "$src" >"$root/modules/$m.ko" ;;
  esac
  echo "$m" >>"$root/modules/order"
}
for m in $modules; do
  add_module "$m"
done

cp "$here/init" "$root/init"
chmod 755 "$root/init"
cp "/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
(cd "$root" && find . | LC_ALL=C sort | "$busybox" cpio -o -H newc 2>/dev/null) \
  >"$out/initramfs.cpio.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initramfs.cpio.tmp" "$out/initramfs.cpio"
rm -rf "$root"
stamp_text >"$out/stamp"
echo "guest build: done ($(du -k "$out/initramfs.cpio" | cut -f1) KiB initramfs)"
