#!/bin/bash
# The throwaway Ceph cluster of the remote tier (scripts/ceph-cluster.sh,
# docs/ceph-test-cluster.md): it starts, stores and reads back an object,
# and a client facing a stopped or killed OSD gets an error within the
# configured op timeout instead of hanging.  The test toolchain installs
# Ceph (scripts/install-deps.sh --test), so missing binaries fail the
# test rather than skip it.
. "${top_builddir:-.}/tests/functions.sh"

for c in ceph ceph-mon ceph-osd ceph-authtool monmaptool rados; do
  command -v "$c" >/dev/null 2>&1 || fail "$c is not installed (bash scripts/install-deps.sh --test)"
done

cluster=$top_srcdir/scripts/ceph-cluster.sh
cdir=$tmp/ceph
timeout_s=5
export CEPH_OP_TIMEOUT=$timeout_s CEPH_POOL=casdisk-test
stop_cluster () { bash "$cluster" stop "$cdir"; cleanup; }
trap stop_cluster EXIT

t0=$(date +%s)
conf=$(timeout 120 bash "$cluster" start "$cdir" 2>"$tmp/start.err") ||
  { cat "$tmp/start.err"; tail -20 "$cdir"/log/*.log 2>/dev/null; fail "the cluster did not start"; }
[ "$conf" = "$cdir/ceph.conf" ] || fail "start printed '$conf', not $cdir/ceph.conf"
pass "cluster started in $(( $(date +%s) - t0 )) s: $(cat "$tmp/start.err")"
eval "$(bash "$cluster" env "$cdir")"
[ "$CEPH_CONF" = "$cdir/ceph.conf" ] || fail "env gives CEPH_CONF=$CEPH_CONF"
bash "$cluster" status "$cdir" >"$tmp/status" 2>&1 || { cat "$tmp/status"; fail "status"; }
grep -q "osd: 1 osds: 1 up" "$tmp/status" || { cat "$tmp/status"; fail "status: osd not up"; }
pass "status: $(grep -c running "$tmp/status") daemons running, $(grep 'osd:' "$tmp/status" | xargs)"
grep -q "size 1 min_size 1" <(timeout 30 ceph osd pool ls detail) || fail "pool $CEPH_POOL is not of size 1"

# An object in, and back.
head -c 65536 /dev/urandom >"$tmp/obj"
timeout 30 rados -p "$CEPH_POOL" put block-1 "$tmp/obj" || fail "rados put"
timeout 30 rados -p "$CEPH_POOL" get block-1 "$tmp/back" || fail "rados get"
cmp "$tmp/obj" "$tmp/back" || fail "the object read back differs"
timeout 30 rados -p "$CEPH_POOL" stat block-1 >"$tmp/stat" || fail "rados stat"
grep -q "size 65536$" "$tmp/stat" || { cat "$tmp/stat"; fail "rados stat size"; }
pass "put, get, stat: $(cat "$tmp/stat")"

# The probe of create-or-reference schemes, a short run (the full one is
# in docs/ceph-test-cluster.md).
probe=$top_builddir/tests/helpers/rados-probe
if [ "${CASDISK_HAVE_RADOS:-no}" = yes ]; then
  [ -x "$probe" ] || fail "configure found librados but $probe is not built"
  timeout 120 "$probe" -n 20 >"$tmp/probe" 2>&1 ||
    { cat "$tmp/probe"; fail "rados-probe"; }
  grep -q FAILED "$tmp/probe" && { cat "$tmp/probe"; fail "rados-probe: a check failed"; }
  pass "rados-probe -n 20: $(grep -c '| ok' "$tmp/probe") rows ok"
else
  echo "note: configure did not find librados; rados-probe not built"
fi

# expect_timeout WHAT: a write must fail, with ETIMEDOUT, after about the
# op timeout; `timeout` catches a hang.
expect_timeout () {
  local t rc
  t=$(date +%s.%N)
  timeout $(( timeout_s * 4 + 10 )) rados -p "$CEPH_POOL" put block-2 "$tmp/obj" >"$tmp/err" 2>&1
  rc=$?
  t=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  [ "$rc" -ne 124 ] || fail "$1: rados put hung (killed after $t s)"
  [ "$rc" -ne 0 ] || fail "$1: rados put succeeded"
  grep -q "timed out" "$tmp/err" || { cat "$tmp/err"; fail "$1: not a timeout"; }
  awk -v t="$t" -v m="$timeout_s" 'BEGIN { exit !(t >= m - 1 && t <= m + 10) }' ||
    fail "$1: failed after $t s, the op timeout is $timeout_s s"
  pass "$1: rados put failed after $t s: $(tail -1 "$tmp/err")"
}

# A stopped OSD (TERM: memstore saves its objects to files).
bash "$cluster" stop-osd "$cdir" || fail "stop-osd"
expect_timeout "OSD stopped"
bash "$cluster" start-osd "$cdir" 2>"$tmp/start.err" || { cat "$tmp/start.err"; fail "start-osd"; }
timeout 30 rados -p "$CEPH_POOL" get block-1 "$tmp/back" || fail "rados get after the OSD restart"
cmp "$tmp/obj" "$tmp/back" || fail "the object differs after the OSD restart"
pass "OSD restarted ($(cat "$tmp/start.err")); block-1 kept across a clean stop"

# A killed OSD: the map still shows it up, and the client still gets a
# timeout.  memstore restarts with what its last clean stop saved.
timeout 30 rados -p "$CEPH_POOL" put block-3 "$tmp/obj" || fail "rados put block-3"
kill -KILL "$(cat "$cdir/run/osd.0.pid")" || fail "kill the OSD"
expect_timeout "OSD killed"
bash "$cluster" start-osd "$cdir" 2>"$tmp/start.err" || { cat "$tmp/start.err"; fail "start-osd after KILL"; }
timeout 30 rados -p "$CEPH_POOL" stat block-1 >/dev/null || fail "block-1 lost after KILL"
timeout 30 rados -p "$CEPH_POOL" stat block-3 >/dev/null 2>&1 &&
  fail "block-3, written after the last clean stop, survived a KILL of memstore (docs say it does not)"
pass "after KILL: block-1 (saved by the clean stop) back, block-3 gone, as documented"

# stop is idempotent, and leaves no daemon behind.
pids="$(cat "$cdir"/run/*.pid)"
bash "$cluster" stop "$cdir" || fail "stop"
bash "$cluster" stop "$cdir" || fail "second stop"
for p in $pids; do
  if [ -e "/proc/$p/stat" ] && [ "$(sed 's/.*) //' "/proc/$p/stat" | cut -d' ' -f1)" != Z ]; then
    fail "pid $p still runs after stop"
  fi
done
bash "$cluster" status "$cdir" >/dev/null 2>&1 && fail "status says running after stop"
pass "stopped (twice), no daemon left"
