#!/bin/bash
# The Debian package (debian/): build it with dpkg-buildpackage (through
# scripts/build-deb.sh, in a copy of the source tree), check it with
# lintian (no errors), install it with apt, then with the installed files
# only:
#  - nbdkit finds the plugin by name and serves a new store; nbdsh writes,
#    reads back and flushes; a restart of the server keeps the data;
#  - the casdisk tool checks the store, and man opens both pages;
#  - the bash completion, the systemd units and the casdisk user are there;
# and remove the package (purge) again, whatever happens.
# Skips unless root with dpkg-buildpackage, apt-get and lintian; skips too
# if a casdisk package is installed already (it is not the test's to
# replace).
. "${top_builddir:-.}/tests/functions.sh"
requires_python_nbd
requires dpkg-buildpackage apt-get lintian man nbdsh
[ "$(id -u)" -eq 0 ] || { echo "SKIP: installing a package needs root"; exit 77; }
if dpkg-query -W -f='${Status}\n' casdisk 2>/dev/null | grep -q "ok installed"; then
  echo "SKIP: a casdisk package is installed already"
  exit 77
fi

apt_lock=(-o DPkg::Lock::Timeout=120)
installed=
remove_package () {
  [ -n "$installed" ] || return 0
  DEBIAN_FRONTEND=noninteractive apt-get "${apt_lock[@]}" purge -y casdisk >"$tmp/purge.log" 2>&1 ||
    { cat "$tmp/purge.log"; echo "FAIL: apt-get purge casdisk" >&2; return 1; }
  installed=
}
trap 'remove_package; cleanup' EXIT

# ---- build, lintian ----
t0=$(date +%s)
bash "$top_srcdir/scripts/build-deb.sh" "$top_srcdir" "$tmp/deb" >"$tmp/build-deb.out" 2>&1 ||
  { cat "$tmp/build-deb.out"; fail "building the package"; }
deb=$(ls "$tmp"/deb/casdisk_*.deb)
pass "dpkg-buildpackage built $(basename "$deb") in $(( $(date +%s) - t0 )) s"
lintian --fail-on error "$deb" >"$tmp/lintian.out" 2>&1 ||
  { cat "$tmp/lintian.out"; fail "lintian reports errors"; }
pass "lintian: no errors ($(grep -c '^[EW]:' "$tmp/lintian.out") warnings)"

plugindir=$(pkg-config --variable=plugindir nbdkit)
dpkg-deb -c "$deb" >"$tmp/contents"
for f in "./usr/bin/casdisk" ".${plugindir}/nbdkit-casdisk-plugin.so" \
         ./usr/share/man/man1/casdisk.1.gz ./usr/share/man/man1/nbdkit-casdisk-plugin.1.gz \
         ./usr/share/bash-completion/completions/casdisk \
         ./lib/systemd/system/casdisk@.service ./lib/systemd/system/casdisk@.socket \
         ./usr/lib/sysusers.d/casdisk.conf; do
  grep -q " $f\$" "$tmp/contents" || { cat "$tmp/contents"; fail "the package has no $f"; }
done
pass "the package holds the plugin (in $plugindir), the tool, the man pages, completion, units"

# ---- install ----
installed=yes
DEBIAN_FRONTEND=noninteractive apt-get "${apt_lock[@]}" install -y --no-install-recommends "$deb" \
  >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "apt-get install $deb"; }
dpkg-query -W -f='${Status}\n' casdisk | grep -q "ok installed" || fail "casdisk is not installed"
[ "$(command -v casdisk)" = /usr/bin/casdisk ] || fail "casdisk is not /usr/bin/casdisk"
getent passwd casdisk >/dev/null || fail "the package made no casdisk user"
pass "apt-get install: installed; the casdisk user exists"

# ---- the installed plugin, by name ----
st=$tmp/store
nbdkit --dump-plugin casdisk >"$tmp/dump" 2>&1 || { cat "$tmp/dump"; fail "nbdkit --dump-plugin casdisk"; }
grep -q "^path=$plugindir/nbdkit-casdisk-plugin.so\$" "$tmp/dump" || { cat "$tmp/dump"; fail "plugin path"; }
serve () {
  rm -f "$sock" "$pidfile"
  nbdkit -f -U "$sock" -P "$pidfile" casdisk "$@" >>"$tmp/nbdkit.log" 2>&1 &
  nbdkit_pid=$!
  for _ in $(seq 200); do
    [ -S "$sock" ] && [ -s "$pidfile" ] && return 0
    kill -0 "$nbdkit_pid" 2>/dev/null || { cat "$tmp/nbdkit.log"; fail "nbdkit casdisk exited at start"; }
    sleep 0.1
  done
  fail "nbdkit casdisk did not start within 20 s"
}
serve store="$st" size=64M
nbdsh -u "$(uri)" -c '
assert h.get_size() == 64 << 20, h.get_size()
import random
block = random.Random(1).randbytes(1 << 20)
h.pwrite(block, 1 << 20)
h.pwrite(block, 17 << 20)        # the same content: stored once
h.flush()
assert h.pread(len(block), 17 << 20) == block
' || fail "nbdsh through the installed plugin"
stop_nbdkit
serve store="$st"
nbdsh -u "$(uri)" -c 'import random; assert h.pread(1 << 20, 1 << 20) == random.Random(1).randbytes(1 << 20)' ||
  fail "the data after a restart of the installed plugin"
stop_nbdkit
casdisk check "$st" >"$tmp/check.out" 2>&1 || { cat "$tmp/check.out"; fail "casdisk check"; }
[ "$(casdisk info "$st" --json | $PYTHON -c 'import json,sys; print(json.load(sys.stdin)["store"]["dedup_ratio"])')" = 2.0 ] ||
  fail "the installed tool does not see the dedup"
pass "nbdkit casdisk store=... size=...: served, written, read back after a restart; casdisk check clean"

# ---- man pages, completion ----
for page in casdisk nbdkit-casdisk-plugin; do
  MANPAGER=cat MANWIDTH=80 man "$page" >"$tmp/man.out" 2>&1 || { cat "$tmp/man.out"; fail "man $page"; }
  grep -qi "^NAME" "$tmp/man.out" && grep -q "$page" "$tmp/man.out" || { head "$tmp/man.out"; fail "man $page: no page"; }
done
bash -c '. /usr/share/bash-completion/bash_completion 2>/dev/null || exit 3
. /usr/share/bash-completion/completions/casdisk
complete_line () {   # LINE EXPECTED: what completing the last word of LINE offers
  COMP_LINE=$1; COMP_POINT=${#1}; read -ra COMP_WORDS <<<"$1"; COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=(); _casdisk
  [ "${COMPREPLY[*]}" = "$2" ] || { echo "completing \"$1\": \"${COMPREPLY[*]}\", not \"$2\""; exit 1; }
}
complete_line "casdisk sna" snapshot
complete_line "casdisk disk c" clone
complete_line "casdisk check /tmp --r" --repair
complete_line "casdisk top /tmp --c" --count'
case $? in
  0) pass "man casdisk and man nbdkit-casdisk-plugin open; bash completes commands and options" ;;
  3) pass "man casdisk and man nbdkit-casdisk-plugin open (bash-completion is not installed: completion not tried)" ;;
  *) fail "the bash completion" ;;
esac

# ---- remove ----
remove_package || fail "removing the package"
[ ! -e "$plugindir/nbdkit-casdisk-plugin.so" ] && [ ! -e /usr/bin/casdisk ] &&
  [ ! -e /lib/systemd/system/casdisk@.service ] || fail "files left after apt-get purge"
pass "apt-get purge casdisk removed the files"
