#!/bin/bash
# A real Linux guest on casdisk, end to end (tests/guest/README.md).
#
# A Debian kernel with a busybox initramfs boots under qemu-system-x86_64
# (TCG, no KVM) with its disk served by nbdkit's casdisk plugin through
# qemu's own NBD client, with discard on, as a VM host attaches it.
#
# Scenario 1: the guest makes ext4, writes files (half incompressible,
# half text), records their checksums on the disk; a second boot checks
# them, deletes most, runs fstrim; the recycler shrinks the store's
# allocated and apparent sizes; a third boot, on a restarted nbdkit,
# checks what remains.  Scenario 2: two guests boot from clones of one
# golden disk and write different data: the store holds the shared
# blocks once, and each guest finds its own data and not the other's.
#
# GUEST_FULL=1 (make check-guest) writes tens of MiB; the default, run by
# make check, is the same with less data.
. "${top_builddir:-.}/tests/functions.sh"
# Only a machine without qemu's PC emulator cannot run this test.  Anything
# else missing is an error: scripts/install-deps.sh installs it.
command -v qemu-system-x86_64 >/dev/null ||
  { echo "SKIP: qemu-system-x86_64 is not installed (Debian: qemu-system-x86)"; exit 77; }
command -v nbdcopy >/dev/null || fail "nbdcopy is not installed (Debian: libnbd-bin)"

mib=$((1 << 20))
if [ "${GUEST_FULL:-0}" = 1 ]; then
  s1_count=24 s1_size=$((2 * mib))      # scenario 1: 48 MiB in 24 files
  s2_count=16 s2_size=$((2 * mib))      # scenario 2: a 32 MiB golden image
  s2_own=4                              # and 8 MiB of each guest's own
  reread=20                             # scenario 1 rereads for 20 s
  version=full
else
  s1_count=10 s1_size=$mib
  s2_count=8 s2_size=$mib
  s2_own=2
  version=short
fi
keep=5                                  # scenario 1 keeps f0, f5, f10 ...
reread=10                               # and rereads them for 10 s after fstrim
boot_timeout=${GUEST_BOOT_TIMEOUT:-600}
echo "guest test, $version version"

# The guest, cached in the build tree: only the first run builds it.
guest=$top_builddir/tests/guest
mkdir -p "$guest"
flock "$guest/.lock" bash "$top_srcdir/tests/guest/build.sh" "$guest" ||
  fail "building the guest (scripts/install-deps.sh installs what it needs)"
GEN=$guest/gen

now () { date +%s.%N; }
since () { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# boot NAME EXPORT STEPS: boot the guest on disk EXPORT of the running
# nbdkit, run STEPS (see tests/guest/init), wait for it to power off.
# Its console is $tmp/NAME.log.  Runs in the foreground; for guests side
# by side, run it in the background and call booted NAME after waiting
# for it (by its PID: nbdkit is a background job too).
boot () {
  local name=$1 export=$2 steps=$3 t0 q ready=
  t0=$(now)
  timeout "$boot_timeout" qemu-system-x86_64 -accel tcg -cpu max -m 512 -smp 1 \
    -nodefaults -display none -no-reboot -no-user-config \
    -serial "file:$tmp/$name.log" \
    -kernel "$guest/vmlinuz" -initrd "$guest/initramfs.cpio" \
    -append "console=ttyS0 panic=-1 quiet guest.steps=$steps" \
    -drive "file=nbd:unix:$sock:exportname=$export,format=raw,if=virtio,discard=unmap,cache=none" \
    >"$tmp/$name.qemu" 2>&1 &
  q=$!
  # The boot time, on the host's clock (the guest's runs unevenly under
  # TCG): until the guest has its disk.  timeout bounds the loop.
  while kill -0 "$q" 2>/dev/null; do
    [ -z "$ready" ] && grep -q GUEST-READY "$tmp/$name.log" 2>/dev/null && ready=$(since "$t0")
    sleep 0.2
  done
  wait "$q"
  echo $? >"$tmp/$name.rc"
  echo "${ready:-?} $(since "$t0")" >"$tmp/$name.time"
}

# booted NAME: the boot succeeded: qemu exited 0, every step passed.
booted () {
  local name=$1 rc ready total
  rc=$(cat "$tmp/$name.rc")
  tr -d '\r' <"$tmp/$name.log" >"$tmp/$name.out"
  if [ "$rc" -ne 0 ] || grep -q '^GUEST-FAIL' "$tmp/$name.out" ||
     ! grep -q '^GUEST-DONE' "$tmp/$name.out"; then
    cat "$tmp/$name.qemu" "$tmp/$name.out"
    [ "$rc" -eq 124 ] && fail "guest $name: no power-off within $boot_timeout s"
    fail "guest $name: $(grep -m1 '^GUEST-FAIL' "$tmp/$name.out" || echo "qemu exited $rc, no GUEST-DONE")"
  fi
  read -r ready total <"$tmp/$name.time"
  pass "guest $name: booted in $ready s, $(grep -c '^GUEST-OK' "$tmp/$name.out") steps," \
       "powered off after $total s"
}

run_guest () { boot "$@"; booted "$1"; }

# sums_match NAME DIR SEED COUNT SIZE: the checksums the guest printed for
# DIR are those of gen's output computed here, on the host.
sums_match () {
  local name=$1 dir=$2 seed=$3 count=$4 size=$5 i mode want have
  [ "$(grep -c "^GUEST-SUM: .*  $dir/f" "$tmp/$name.out")" -eq "$count" ] ||
    fail "guest $name printed $(grep -c "^GUEST-SUM: .*  $dir/f" "$tmp/$name.out") checksums for $dir, not $count"
  for ((i = 0; i < count; i++)); do
    mode=random; [ $((i % 2)) -eq 1 ] && mode=text
    want=$("$GEN" $((seed + i)) "$size" $mode | sha256sum | cut -d' ' -f1)
    have=$(sed -n "s|^GUEST-SUM: \([0-9a-f]*\)  $dir/f$i\$|\1|p" "$tmp/$name.out")
    [ "$want" = "$have" ] || fail "guest $name: $dir/f$i has sha256 '$have', the host computes $want"
  done
  pass "the $count checksums guest $name recorded for $dir match the host's"
}

# sizes DIR: "allocated apparent" bytes of the store's files.
sizes () { echo "$(du -s -B1 "$1" | cut -f1) $(du -s -B1 --apparent-size "$1" | cut -f1)"; }

# info DIR EXPR: a value from casdisk info --json (s: the store, d: disks by name).
info () {
  "$CASDISK" info "$1" --json >"$tmp/info.json" || fail "casdisk info $1"
  $PYTHON -c '
import json, sys
j = json.load(open(sys.argv[1]))
s, d = j["store"], {x["name"]: x for x in j["disks"]}
print(eval(sys.argv[2]))' "$tmp/info.json" "$2"
}

# ---------------------------------------------------------------------------
# Scenario 1: write, trim, the store shrinks, the rest reads back.
st=$tmp/store1
start_nbdkit store=$st size=512M gc-delay=2 compact-after=10
run_guest s1-write disk0 "mkfs;write,data,1,$s1_count,$s1_size;sums,data"
sums_match s1-write data 1 "$s1_count" "$s1_size"
read -r alloc0 app0 <<<"$(sizes "$st")"
echo "after writing $((s1_count * s1_size / mib)) MiB: allocated $alloc0, apparent $app0 bytes"

# The guest deletes most files and trims, then rereads the rest from the
# disk (page cache dropped) for $reread s while the recycler compacts.
boot s1-trim disk0 "mount;sumcheck,data;same,data,1,$s1_count,$s1_size;delete,data,$keep;gone,data,$keep;fstrim;reread,data,1,$s1_count,$s1_size,$reread" &
p1=$!
while ! grep -q GUEST-FSTRIM "$tmp/s1-trim.log" 2>/dev/null && kill -0 $p1 2>/dev/null; do
  sleep 0.2
done
t0=$(now)
while :; do
  read -r alloc app <<<"$(sizes "$st")"
  [ "$alloc" -le $((alloc0 / 2)) ] && [ "$app" -le $((app0 / 2)) ] && break
  [ "$(awk -v t="$(since "$t0")" 'BEGIN { print (t > 120) }')" = 1 ] &&
    { wait $p1; cat "$tmp/s1-trim.log"; fail "120 s after the trim: allocated $alloc (was $alloc0), apparent $app (was $app0) bytes"; }
  sleep 0.5
done
shrink_time=$(since "$t0")
running=no
kill -0 $p1 2>/dev/null && running=yes
wait $p1
booted s1-trim
grep '^GUEST-FSTRIM\|^GUEST-REREAD' "$tmp/s1-trim.out"
pass "the store shrank in $shrink_time s after the guest's fstrim (guest still running: $running):" \
     "allocated $alloc0 -> $alloc, apparent $app0 -> $app bytes"
stop_nbdkit

# What is left is the live data: the data file holds little more than
# the stored bytes of the blocks the guest still uses.
stored=$(info "$st" 's["stored_bytes"]')
dfile=$(info "$st" 's["data_file_end"]')
echo "stored bytes $stored, data file $dfile bytes"
[ "$dfile" -le $((stored * 115 / 100 + mib)) ] ||
  fail "the data file ($dfile bytes) is not compacted to the stored bytes ($stored)"

start_nbdkit store=$st gc-delay=2 compact-after=10
run_guest s1-verify disk0 \
  "mount;sumcheck,data;same,data,1,$s1_count,$s1_size;gone,data,$keep"
grep -c ': OK$' "$tmp/s1-verify.out" | grep -qx $(((s1_count + keep - 1) / keep)) ||
  fail "sha256sum -c checked $(grep -c ': OK$' "$tmp/s1-verify.out") files, not $(((s1_count + keep - 1) / keep))"
stop_nbdkit
check_store "$st"
pass "scenario 1: the remaining $(((s1_count + keep - 1) / keep)) files read back after fstrim, compaction and a restart"

# ---------------------------------------------------------------------------
# Scenario 2: two guests from clones of one golden disk.
st=$tmp/store2
"$CASDISK" create "$st" --size 512M --disk golden >/dev/null || fail "casdisk create"

# clone_disk SRC DST: DST becomes a copy of SRC (nbdkit stopped), sharing
# every block of it.
clone_disk () {
  "$CASDISK" disk clone "$st" "$1" "$2" >/dev/null || fail "casdisk disk clone $st $1 $2"
}

start_nbdkit store=$st gc-delay=2
run_guest s2-golden golden "mkfs;write,base,100,$s2_count,$s2_size;sums,base"
sums_match s2-golden base 100 "$s2_count" "$s2_size"
stop_nbdkit
golden_stored=$(info "$st" 's["stored_bytes"]')
clone_disk golden vm1
clone_disk golden vm2
read -r stored logical <<<"$(info "$st" '"%d %d" % (s["stored_bytes"], s["logical_bytes"])')"
echo "golden image: $golden_stored stored bytes; with two clones: $stored stored, $logical logical"
[ "$stored" -eq "$golden_stored" ] ||
  fail "two clones of the golden disk added $((stored - golden_stored)) stored bytes"

start_nbdkit store=$st gc-delay=2
golden_sum=$(nbdcopy "$(uri golden)" - | sha256sum | cut -d' ' -f1)
own="write,own,SEED,$s2_own,$s2_size;sums,own"
boot s2-vm1 vm1 "mount;sumcheck,base;same,base,100,$s2_count,$s2_size;${own/SEED/1000}" &
p1=$!
boot s2-vm2 vm2 "mount;sumcheck,base;same,base,100,$s2_count,$s2_size;${own/SEED/2000}" &
p2=$!
wait $p1 $p2
booted s2-vm1
booted s2-vm2
sums_match s2-vm1 own 1000 "$s2_own" "$s2_size"
sums_match s2-vm2 own 2000 "$s2_own" "$s2_size"
[ "$(nbdcopy "$(uri golden)" - | sha256sum | cut -d' ' -f1)" = "$golden_sum" ] ||
  fail "the golden disk changed while its clones were written"
pass "the golden disk is unchanged"
stop_nbdkit

read -r stored logical e1 e2 <<<"$(info "$st" \
  '"%d %d %d %d" % (s["stored_bytes"], s["logical_bytes"], d["vm1"]["exclusive_bytes"], d["vm2"]["exclusive_bytes"])')"
own_bytes=$((s2_own * s2_size))
echo "scenario 2: golden $golden_stored stored bytes; three disks: $logical logical," \
     "$stored stored; only in vm1 $e1, only in vm2 $e2 bytes"
# Each guest's own data is half random: its exclusive bytes are at least
# that, at most its own data and the file system blocks it changed.
for e in "$e1" "$e2"; do
  [ "$e" -ge $((own_bytes / 2)) ] && [ "$e" -le $((own_bytes + 2 * mib)) ] ||
    fail "a clone holds $e bytes of its own, for $own_bytes bytes written"
done
[ "$stored" -le $((golden_stored + e1 + e2 + mib / 4)) ] ||
  fail "the store holds $stored bytes: more than the golden image once plus each guest's own"
# One guest's image is the golden one and its own data; two, unshared,
# would cost twice that.
image=$((golden_stored + (e1 > e2 ? e1 : e2)))
[ "$stored" -lt $((2 * image * 3 / 4)) ] ||
  fail "$stored stored bytes is not much less than two images ($((2 * image)))"
pass "the store holds the shared blocks once: $stored stored bytes for two guests of $image" \
     "bytes each ($((stored * 100 / (2 * image)))% of two images), $logical logical bytes in three disks"

start_nbdkit store=$st gc-delay=2
check="mount;sumcheck,base;sumcheck,own;same,base,100,$s2_count,$s2_size"
boot s2-vm1-check vm1 "$check;same,own,1000,$s2_own,$s2_size;differs,own,2000,$s2_own,$s2_size" &
p1=$!
boot s2-vm2-check vm2 "$check;same,own,2000,$s2_own,$s2_size;differs,own,1000,$s2_own,$s2_size" &
p2=$!
wait $p1 $p2
booted s2-vm1-check
booted s2-vm2-check
stop_nbdkit
check_store "$st"
pass "scenario 2: each guest reads its own data and not the other's"
