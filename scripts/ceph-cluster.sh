#!/bin/bash
# A throwaway single-node Ceph cluster for tests: one monitor, one OSD, no
# manager, cephx, msgr2 on 127.0.0.1, everything under one directory.
# Built from Debian 12's packages (Ceph 16.2: ceph-mon, ceph-osd,
# ceph-common).  See docs/ceph-test-cluster.md.
#
#   ceph-cluster.sh start DIR      create the cluster in DIR (empty or
#                                  missing) and start it; prints ceph.conf
#   ceph-cluster.sh stop DIR       stop every daemon (TERM, then KILL);
#                                  idempotent.  DIR stays, for its logs.
#   ceph-cluster.sh status DIR     which daemons run, and `ceph -s`
#   ceph-cluster.sh env DIR        shell lines for eval: CEPH_CONF, CEPH_POOL,
#                                  CEPH_ARGS (empty: all is in ceph.conf)
#   ceph-cluster.sh stop-osd DIR   stop only the OSD (a fault test)
#   ceph-cluster.sh start-osd DIR  start it again and wait until it is up
#
# Environment, read by start:
#   CEPH_POOL           the pool to create (default casdisk)
#   CEPH_PG_NUM         its placement groups (default 8)
#   CEPH_OSD_STORE      memstore (default) or bluestore
#   CEPH_MEMSTORE_BYTES memstore's size (default 1 GiB)
#   CEPH_BLUESTORE_BYTES size of bluestore's sparse block file (default 4 GiB)
#   CEPH_OP_TIMEOUT     the client's rados_osd_op_timeout,
#                       rados_mon_op_timeout and client_mount_timeout in
#                       seconds (default 10)
#   CEPH_START_TIMEOUT  how long start and start-osd wait (default 60 s)
#   CEPH_STOP_TIMEOUT   how long stop waits after TERM before KILL (default 20 s)
#
# memstore keeps objects in the OSD's memory: a clean stop (TERM) writes
# them to files in the OSD's directory and the next start reads them back,
# but an OSD killed with KILL restarts with what the last clean stop (or
# mkfs) saved.  CEPH_OSD_STORE=bluestore keeps every acknowledged write
# across any restart, in a sparse file.
set -euo pipefail

die () { echo "ceph-cluster: $*" >&2; exit 1; }
usage () { sed -n '7,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[ $# -eq 2 ] || usage
cmd=$1
[ -n "$2" ] || usage
dir=$2

pool=${CEPH_POOL:-casdisk}
pg_num=${CEPH_PG_NUM:-8}
store=${CEPH_OSD_STORE:-memstore}
memstore_bytes=${CEPH_MEMSTORE_BYTES:-1073741824}
bluestore_bytes=${CEPH_BLUESTORE_BYTES:-4294967296}
op_timeout=${CEPH_OP_TIMEOUT:-10}
start_timeout=${CEPH_START_TIMEOUT:-60}
stop_timeout=${CEPH_STOP_TIMEOUT:-20}
PY=/usr/bin/python3

now () { date +%s.%N; }
elapsed () { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# The cluster's commands, always against DIR's configuration.
ceph_ () { ceph --conf "$dir/ceph.conf" "$@"; }
rados_ () { rados --conf "$dir/ceph.conf" "$@"; }

# running PID: PID is a live process (a zombie, killed and not yet
# reaped, does not count).
running () {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "${st%% *}" != Z ]
}

# alive NAME: the daemon NAME (mon.a, osd.0) runs, by the PID in its pid
# file, and that PID is still a ceph daemon (not a recycled PID).
alive () {
  local pid
  pid=$(cat "$dir/run/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && running "$pid" || return 1
  grep -q '^ceph-' "/proc/$pid/comm" 2>/dev/null
}

# stop_daemon NAME: TERM, then KILL after CEPH_STOP_TIMEOUT; fine when it
# does not run.  Returns 1 when it was not running or needed KILL (it
# did not tell the monitor it stops).
stop_daemon () {
  local name=$1 pidfile=$dir/run/$1.pid pid i
  if ! alive "$name"; then rm -f "$pidfile"; return 1; fi
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < stop_timeout * 10; i++)); do
    running "$pid" || { rm -f "$pidfile"; return 0; }
    sleep 0.1
  done
  echo "ceph-cluster: $name (pid $pid) still runs ${stop_timeout} s after TERM; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do running "$pid" || break; sleep 0.1; done
  rm -f "$pidfile"
  return 1
}

free_port () {
  $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# osd_up_in: osd.0 is up and in, in the monitor's OSD map.
osd_up_in () {
  ceph_ osd dump --format=json 2>/dev/null | $PY -c '
import json, sys
osds = json.load(sys.stdin)["osds"]
sys.exit(0 if any(o["osd"] == 0 and o["up"] == 1 and o["in"] == 1 for o in osds) else 1)'
}

# wait_for WHAT COMMAND...: run COMMAND until it succeeds, within the
# time left before $deadline.
wait_for () {
  local what=$1; shift
  while :; do
    "$@" >/dev/null 2>&1 && return 0
    [ "$(date +%s)" -lt "$deadline" ] || die "$what: not within ${start_timeout} s (logs in $dir/log)"
    sleep 0.2
  done
}

write_conf () {   # FSID PORT
  cat >"$dir/ceph.conf" <<EOF
# A throwaway test cluster (scripts/ceph-cluster.sh): one mon, one OSD.
[global]
fsid = $1
mon_host = v2:127.0.0.1:$2
mon_initial_members = a
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
ms_bind_msgr1 = false
ms_bind_msgr2 = true
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
run_dir = $dir/run
# one OSD: pools of one replica, no failure domain above the OSD
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
# no manager: the pg autoscaler and the balancer do not run
mon_warn_on_insecure_global_id_reclaim_allowed = false
# a test machine's disk may be fuller than a production one
mon_data_avail_warn = 2
mon_data_avail_crit = 1

[mon]
mon_data = $dir/\$name
keyring = $dir/\$name/keyring
admin_socket = $dir/run/\$name.asok
pid_file = $dir/run/\$name.pid
log_file = $dir/log/\$name.log
mon_cluster_log_file = $dir/log/cluster.log
paxos_propose_interval = 0.1

[osd]
osd_data = $dir/\$name
keyring = $dir/\$name/keyring
admin_socket = $dir/run/\$name.asok
pid_file = $dir/run/\$name.pid
log_file = $dir/log/\$name.log
osd_objectstore = $store
memstore_device_bytes = $memstore_bytes
bluestore_block_size = $bluestore_bytes
bluestore_block_create = true
osd_memory_target = 1073741824
# a stop (TERM) unmounts the store: memstore saves its objects to files
osd_fast_shutdown = false
osd_max_object_name_len = 460
osd_max_object_namespace_len = 64

[client]
keyring = $dir/ceph.client.admin.keyring
# a stopped or full OSD, or a lost monitor, gives ETIMEDOUT, never a hang
rados_osd_op_timeout = $op_timeout
rados_mon_op_timeout = $op_timeout
client_mount_timeout = $op_timeout
EOF
}

start_mon () {
  local port fsid try
  fsid=$(cat /proc/sys/kernel/random/uuid)
  ceph-authtool --create-keyring "$dir/tmp/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$dir/ceph.client.admin.keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
  ceph-authtool "$dir/tmp/mon.keyring" --import-keyring "$dir/ceph.client.admin.keyring" >/dev/null
  # A free port, found by binding port 0; another process may take it
  # before the monitor binds it, so try again with another.
  for try in 1 2 3; do
    port=$(free_port)
    write_conf "$fsid" "$port"
    rm -rf "$dir/mon.a" "$dir/tmp/monmap"
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$dir/tmp/monmap" >/dev/null
    ceph-mon --conf "$dir/ceph.conf" -i a --mkfs --monmap "$dir/tmp/monmap" \
      --keyring "$dir/tmp/mon.keyring" >>"$dir/log/mon.a.out" 2>&1 ||
      die "ceph-mon --mkfs failed: $(tail -3 "$dir/log/mon.a.out")"
    if ceph-mon --conf "$dir/ceph.conf" -i a >>"$dir/log/mon.a.out" 2>&1; then
      # It daemonises; a port taken by another process shows as an exit.
      sleep 0.3
      alive mon.a && return 0
    fi
    echo "ceph-cluster: the monitor did not start on port $port (try $try)" >&2
  done
  die "the monitor did not start: $(tail -3 "$dir/log/mon.a.out")"
}

# osd_down: osd.0 is down in the monitor's OSD map.
osd_down () {
  ceph_ osd dump --format=json 2>/dev/null | $PY -c '
import json, sys
osds = json.load(sys.stdin)["osds"]
sys.exit(0 if all(o["up"] == 0 for o in osds if o["osd"] == 0) else 1)'
}

# osd_status KEY: a field of osd.0's status, from its admin socket.
osd_status () {
  ceph --admin-daemon "$dir/run/osd.0.asok" status 2>/dev/null |
    $PY -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# osd_active: this osd.0 process has booted and the monitor marked it up
# (after a KILL, the map may still show the old process up).
osd_active () { [ "$(osd_status state)" = active ]; }

# recreate_pgs: a memstore OSD killed before any clean stop comes back
# without its placement groups, and the monitor does not create them
# again by itself: ask it to, for every pool (they come back empty).
recreate_pgs () {
  local pg
  for pg in $(ceph_ osd dump --format=json | $PY -c '
import json, sys
for p in json.load(sys.stdin)["pools"]:
    for i in range(p["pg_num"]):
        print("%d.%x" % (p["pool"], i))'); do
    ceph_ osd force-create-pg "$pg" --yes-i-really-mean-it >/dev/null 2>&1 ||
      die "ceph osd force-create-pg $pg failed"
  done
}

# run_osd: start osd.0 (made already), wait until it is up and in and
# every placement group of the pool is active.
run_osd () {
  ceph-osd --conf "$dir/ceph.conf" -i 0 >>"$dir/log/osd.0.out" 2>&1 ||
    die "ceph-osd did not start: $(tail -3 "$dir/log/osd.0.out")"
  wait_for "osd.0 booted" osd_active
  wait_for "osd.0 up and in" osd_up_in
  if [ "$(osd_status num_pgs)" = 0 ] && ceph_ osd pool ls | grep -q .; then
    echo "ceph-cluster: osd.0 came back without its placement groups (memstore killed" \
      "before a clean stop): creating them again, empty" >&2
    recreate_pgs
  fi
  # Listing visits each placement group of the pool.
  wait_for "pool $pool active" rados_ -p "$pool" ls
}

make_osd () {
  local uuid secret
  uuid=$(cat /proc/sys/kernel/random/uuid)
  secret=$(ceph-authtool --gen-print-key)
  mkdir -p "$dir/osd.0"
  printf '{"cephx_secret": "%s"}\n' "$secret" >"$dir/tmp/osd.json"
  ceph_ osd new "$uuid" 0 -i "$dir/tmp/osd.json" >/dev/null
  ceph-authtool --create-keyring "$dir/osd.0/keyring" -n osd.0 --add-key "$secret" >/dev/null
  ceph-osd --conf "$dir/ceph.conf" -i 0 --mkfs --osd-uuid "$uuid" >>"$dir/log/osd.0.out" 2>&1 ||
    die "ceph-osd --mkfs failed: $(tail -3 "$dir/log/osd.0.out")"
}

cmd_start () {
  local t0 deadline
  t0=$(now)
  deadline=$(( $(date +%s) + start_timeout ))
  case $store in memstore|bluestore) ;; *) die "CEPH_OSD_STORE=$store: not memstore or bluestore" ;; esac
  for c in ceph ceph-mon ceph-osd ceph-authtool monmaptool rados; do
    command -v "$c" >/dev/null || die "$c is not installed (bash scripts/install-deps.sh --test)"
  done
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ -z "$(ls -A "$dir")" ] || die "$dir is not empty (stop and remove an old cluster first)"
  # Unix socket paths are limited to 107 bytes.
  [ ${#dir} -le 80 ] || die "$dir: too long a path for the admin sockets (80 bytes at most)"
  mkdir -p "$dir/run" "$dir/log" "$dir/tmp"
  # A start that fails stops what it started.
  trap 'cmd_stop' EXIT
  start_mon
  wait_for "the monitor answering" ceph_ -s
  make_osd
  ceph-osd --conf "$dir/ceph.conf" -i 0 >>"$dir/log/osd.0.out" 2>&1 ||
    die "ceph-osd did not start: $(tail -3 "$dir/log/osd.0.out")"
  wait_for "osd.0 up and in" osd_up_in
  ceph_ osd pool create "$pool" "$pg_num" "$pg_num" replicated >/dev/null 2>&1 ||
    die "ceph osd pool create $pool failed"
  ceph_ osd pool set "$pool" size 1 --yes-i-really-mean-it >/dev/null 2>&1 || die "pool size 1"
  ceph_ osd pool set "$pool" min_size 1 >/dev/null 2>&1 || die "pool min_size 1"
  ceph_ osd pool application enable "$pool" casdisk >/dev/null 2>&1 || die "pool application"
  wait_for "pool $pool active" rados_ -p "$pool" ls
  wait_for "rados df" rados_ df
  rm -rf "$dir/tmp"
  echo "$store" >"$dir/objectstore"
  trap - EXIT
  echo "ceph-cluster: started in $(elapsed "$t0") s ($store, pool $pool)" >&2
  echo "$dir/ceph.conf"
}

cmd_stop () {
  [ -d "$dir" ] || return 0
  stop_daemon osd.0 || true
  stop_daemon mon.a || true
}

cmd_stop_osd () {
  [ -f "$dir/ceph.conf" ] || die "$dir: no cluster here"
  # Clients see it stopped once the monitor marks it down: a clean stop
  # tells the monitor at once.  (A killed OSD, with no peer to report it,
  # stays up in the map for mon_osd_report_timeout, 15 minutes.)
  if stop_daemon osd.0 && alive mon.a; then
    local deadline=$(( $(date +%s) + start_timeout ))
    wait_for "osd.0 marked down" osd_down
  fi
}

cmd_start_osd () {
  local t0 deadline
  t0=$(now)
  deadline=$(( $(date +%s) + start_timeout ))
  [ -f "$dir/ceph.conf" ] || die "$dir: no cluster here"
  dir=$(cd "$dir" && pwd)
  alive mon.a || die "the monitor does not run"
  alive osd.0 && die "osd.0 runs already"
  run_osd
  echo "ceph-cluster: osd.0 up in $(elapsed "$t0") s" >&2
}

cmd_status () {
  [ -f "$dir/ceph.conf" ] || die "$dir: no cluster here"
  local n rc=0
  for n in mon.a osd.0; do
    if alive "$n"; then echo "$n: running, pid $(cat "$dir/run/$n.pid")"
    else echo "$n: not running"; rc=1; fi
  done
  alive mon.a && { timeout 30 ceph --conf "$dir/ceph.conf" -s || rc=1; }
  return $rc
}

cmd_env () {
  [ -f "$dir/ceph.conf" ] || die "$dir: no cluster here"
  dir=$(cd "$dir" && pwd)
  printf 'export CEPH_CONF=%q\n' "$dir/ceph.conf"
  printf 'export CEPH_POOL=%q\n' "$pool"
  # the librados client's own settings need no CEPH_ARGS: they are in
  # the [client] section of CEPH_CONF
  printf 'export CEPH_ARGS=%q\n' ""
}

case $cmd in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  stop-osd) cmd_stop_osd ;;
  start-osd) cmd_start_osd ;;
  *) usage ;;
esac
