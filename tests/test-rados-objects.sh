#!/bin/bash
# The remote tier's block objects (lib/remote/objects.h) against a real
# throwaway Ceph cluster (scripts/ceph-cluster.sh): tests/unit/test-rados
# with CEPH_CONF and CEPH_POOL set (none of its tests may be skipped), then
# faults through tests/helpers/rados-objects: a monitor that does not
# answer, a stopped OSD (every op, single or batched, fails with ETIMEDOUT
# after the op timeout instead of hanging), the block kept across the
# OSD's restart; a short run of the measurements of
# docs/remote-objects.md; and a full OSD, in a second, small cluster
# (put_ref fails with ENOSPC at once; get_ref and put still work).  Missing Ceph commands, or a build with librados
# but without these programs, fail the test rather than skip it.
. "${top_builddir:-.}/tests/functions.sh"

for c in ceph ceph-mon ceph-osd ceph-authtool monmaptool rados; do
  command -v "$c" >/dev/null 2>&1 || fail "$c is not installed (bash scripts/install-deps.sh --test)"
done
if [ "${CASDISK_HAVE_RADOS:-no}" != yes ]; then
  [ "${CI:-}" = true ] && fail "configure did not find librados (scripts/install-deps.sh --test installs librados-dev)"
  echo "SKIP: configure did not find librados: lib/remote/ is not built"
  exit 77
fi
unit=$top_builddir/tests/unit/test-rados
helper=$top_builddir/tests/helpers/rados-objects
[ -x "$unit" ] || fail "configure found librados but $unit is not built (is Criterion installed?)"
[ -x "$helper" ] || fail "configure found librados but $helper is not built"

cluster=$top_srcdir/scripts/ceph-cluster.sh
cdir=$tmp/ceph
fdir=$tmp/ceph-full
timeout_s=5
export CEPH_OP_TIMEOUT=$timeout_s CEPH_POOL=casdisk-objects
stop_cluster () {
  bash "$cluster" stop "$cdir"
  [ ! -d "$fdir" ] || bash "$cluster" stop "$fdir"
  cleanup
}
trap stop_cluster EXIT

conf=$(timeout 120 bash "$cluster" start "$cdir" 2>"$tmp/start.err") ||
  { cat "$tmp/start.err"; tail -20 "$cdir"/log/*.log 2>/dev/null; fail "the cluster did not start"; }
pass "cluster started: $(cat "$tmp/start.err")"
eval "$(bash "$cluster" env "$cdir")"
[ "$CEPH_CONF" = "$cdir/ceph.conf" ] && [ -n "$CEPH_POOL" ] || fail "env gives CEPH_CONF=$CEPH_CONF CEPH_POOL=$CEPH_POOL"

# The unit tests, with the cluster: TAP output, so that skipped tests
# show (CEPH_CONF is set: none may be).
timeout 900 "$unit" --jobs 2 --tap="$tmp/unit.tap" >"$tmp/unit.out" 2>&1
rc=$?
[ "$rc" -ne 124 ] || { cat "$tmp/unit.out"; fail "test-rados hung (killed after 900 s)"; }
[ "$rc" -eq 0 ] || { cat "$tmp/unit.out" "$tmp/unit.tap"; fail "test-rados failed (exit $rc)"; }
n_ok=$(grep -c '^ok ' "$tmp/unit.tap")
n_skip=$(grep -c '# SKIP' "$tmp/unit.tap")
n_bad=$(grep -c '^not ok ' "$tmp/unit.tap")
[ "$n_skip" -eq 0 ] || { grep '# SKIP' "$tmp/unit.tap"; fail "test-rados skipped $n_skip tests with CEPH_CONF set"; }
[ "$n_bad" -eq 0 ] && [ "$n_ok" -ge 15 ] || { cat "$tmp/unit.tap"; fail "test-rados: $n_ok ok, $n_bad not ok"; }
pass "test-rados against the cluster: $n_ok tests ok, none skipped"

# helper OP ARGS...: the helper with the test's op timeout, itself under a
# timeout that catches a hang.
helper () {
  timeout $(( timeout_s * 4 + 20 )) "$helper" -t "$timeout_s" "$@"
}

# expect_timeout WHAT ARGS...: the helper must fail with ETIMEDOUT after
# about the op timeout.
expect_timeout () {
  local what=$1 t rc; shift
  t=$(date +%s.%N)
  helper "$@" >"$tmp/out" 2>&1
  rc=$?
  t=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  [ "$rc" -ne 124 ] || { cat "$tmp/out"; fail "$what: hung (killed after $t s)"; }
  [ "$rc" -ne 0 ] || { cat "$tmp/out"; fail "$what: succeeded"; }
  grep -q "failed after .*: ETIMEDOUT" "$tmp/out" || { cat "$tmp/out"; fail "$what: not ETIMEDOUT"; }
  awk -v t="$t" -v m="$timeout_s" 'BEGIN { exit !(t >= m - 1 && t <= m + 10) }' ||
    { cat "$tmp/out"; fail "$what: failed after $t s, the op timeout is $timeout_s s"; }
  pass "$what: ETIMEDOUT after $t s: $(grep 'failed after' "$tmp/out" | tail -1)"
}

# A monitor that does not answer: the connect gives up after the timeout.
port=$($PYTHON -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed "s|^mon_host = .*|mon_host = v2:127.0.0.1:$port|" "$CEPH_CONF" >"$tmp/dead.conf"
grep -q "127.0.0.1:$port" "$tmp/dead.conf" || fail "could not write a configuration with a dead monitor"
expect_timeout "connect to a dead monitor" -c "$tmp/dead.conf" connect
grep -q "remote rados:$CEPH_POOL: cannot connect (conf $tmp/dead.conf" "$tmp/out" ||
  { cat "$tmp/out"; fail "the connect error does not name the pool and the configuration"; }

# A block in, before the fault.
helper put-ref -S kept >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "put-ref"; }
grep -q "created: yes" "$tmp/out" || { cat "$tmp/out"; fail "put-ref did not create the block"; }
helper read -S kept >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "read"; }
pass "put-ref and read of the block 'kept'"

# A stopped OSD: each op, and a batch of 8, fails within the op timeout.
bash "$cluster" stop-osd "$cdir" || fail "stop-osd"
expect_timeout "put-ref, OSD stopped" put-ref -S during
expect_timeout "read, OSD stopped" read -S kept
expect_timeout "put, OSD stopped" put -S kept
expect_timeout "batch of 8 put-ref, OSD stopped" put-ref -S batch -b 8
grep -q "batch: 8 of 8 failed" "$tmp/out" || { cat "$tmp/out"; fail "the batch did not report 8 failures"; }
bash "$cluster" start-osd "$cdir" 2>"$tmp/start.err" || { cat "$tmp/start.err"; fail "start-osd"; }

# Back: the block survived the clean stop, and the timed-out ops changed
# nothing (the put did not drop the reference).
helper read -S kept >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "read after the OSD restart"; }
helper put-ref -S kept -H disk.other >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "put-ref after restart"; }
grep -q "created: no" "$tmp/out" || { cat "$tmp/out"; fail "put-ref of the kept block created it again"; }
helper put -S kept >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "put after restart"; }
grep -q "removed: no" "$tmp/out" || { cat "$tmp/out"; fail "the first put removed the block"; }
helper put -S kept -H disk.other >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "last put"; }
grep -q "removed: yes" "$tmp/out" || { cat "$tmp/out"; fail "the last put did not remove the block"; }
helper read -S kept >"$tmp/out" 2>&1 && { cat "$tmp/out"; fail "read after the last put succeeded"; }
grep -q "failed after .*: ENOENT" "$tmp/out" || { cat "$tmp/out"; fail "read after the last put: not ENOENT"; }
pass "after the OSD restart ($(cat "$tmp/start.err")): the block was kept, then its two references dropped"

# The measurements, short.
helper bench -n 20 >"$tmp/bench" 2>&1 || { cat "$tmp/bench"; fail "bench -n 20"; }
[ "$(grep -v "| operation" "$tmp/bench" | grep -c "^| [a-z]")" -eq 7 ] || { cat "$tmp/bench"; fail "bench: not 7 rows"; }
pass "bench -n 20: 7 rows"

# A full OSD, in a cluster of its own (memstore of 64 MiB, whose failsafe
# engages after a few seconds of writes): put_ref fails with ENOSPC at
# once, not after the op timeout (the ops carry FULL_TRY); a reference
# without data (get_ref) and dropping references still work.  At most 20000 blocks
# (1.3 GB): a failsafe that never engaged fails the test.
bash "$cluster" stop "$cdir" || fail "stop"
CEPH_MEMSTORE_BYTES=$((64 << 20)) timeout 120 bash "$cluster" start "$fdir" >/dev/null 2>"$tmp/start.err" ||
  { cat "$tmp/start.err"; fail "the small cluster did not start"; }
eval "$(bash "$cluster" env "$fdir")"
timeout 400 "$helper" -t "$timeout_s" fill -n 20000 >"$tmp/fill" 2>&1 || { cat "$tmp/fill"; fail "fill"; }
grep -q "^put-ref: failed after .*: ENOSPC" "$tmp/fill" || { cat "$tmp/fill"; fail "the full OSD did not answer ENOSPC"; }
t=$(sed -n 's/^put-ref: failed after \([0-9.]*\) s.*/\1/p' "$tmp/fill")
awk -v t="$t" 'BEGIN { exit !(t < 2) }' || { cat "$tmp/fill"; fail "ENOSPC took $t s"; }
grep -q "^get-ref: ok" "$tmp/fill" || { cat "$tmp/fill"; fail "get_ref on a full OSD"; }
[ "$(grep -A1 "^removed: no" "$tmp/fill" | grep -c "^put (a reference stays): ok")" -eq 2 ] &&
  grep -A1 "^removed: yes" "$tmp/fill" | grep -q "^put (the last reference): ok" ||
  { cat "$tmp/fill"; fail "dropping references on a full OSD"; }
pass "full OSD: $(grep '^fill:' "$tmp/fill"), then ENOSPC after $t s; get_ref and 3 puts ok"
