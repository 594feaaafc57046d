#!/bin/bash
# The systemd units (systemd/), without systemd as PID 1:
#  - systemd-analyze verify accepts casdisk@.service and casdisk@.socket
#    (an instance of each) without a warning, and systemd-analyze security
#    rates the service's hardening "OK" or better (exposure below 2.0);
#  - the socket unit listens on /run/casdisk/NAME.sock and the service
#    reads /etc/casdisk/NAME.conf and runs nbdkit without -U (it takes
#    systemd's socket);
#  - socket activation: the service's own ExecStart line (paths moved
#    into the test's directory, settings from a NAME.conf) runs under
#    systemd-socket-activate: nothing runs until the first client; nbdinfo
#    connects through the socket and starts it, which creates the store;
#    nbdsh writes, reads back and flushes on two connections;
#  - a clean stop: SIGTERM (what systemctl stop sends) ends nbdkit with
#    status 0 and leaves the store closed and checkpointed: an empty
#    journal of the next generation, no control socket, casdisk check clean;
#    activation again serves the data written before.
. "${top_builddir:-.}/tests/functions.sh"
requires_python_nbd
requires systemd-analyze systemd-socket-activate nbdinfo nbdsh

units=$top_srcdir/systemd
mkdir -p "$tmp/units"
cp "$units/casdisk@.service" "$units/casdisk@.socket" "$tmp/units/"

# ---- systemd-analyze ----
# --man=no: the man pages the units name are those of the package,
# perhaps not installed here.
systemd-analyze verify --man=no "$tmp/units/casdisk@vm1.service" "$tmp/units/casdisk@vm1.socket" \
  >"$tmp/verify.out" 2>&1 || { cat "$tmp/verify.out"; fail "systemd-analyze verify"; }
[ ! -s "$tmp/verify.out" ] || { cat "$tmp/verify.out"; fail "systemd-analyze verify warns"; }
# The check itself must catch a bad line (else an empty output says nothing).
sed 's/^RestrictAddressFamilies=.*/RestrictAddressFamilies=AF_UNX/' "$units/casdisk@.service" \
  >"$tmp/units/casdisk@.service"
systemd-analyze verify --man=no "$tmp/units/casdisk@vm1.service" >"$tmp/verify-bad.out" 2>&1
grep -q "AF_UNX" "$tmp/verify-bad.out" || { cat "$tmp/verify-bad.out"; fail "verify did not catch a bad line"; }
cp "$units/casdisk@.service" "$tmp/units/"
pass "systemd-analyze verify: the units are clean (and a bad line is caught)"

if systemd-analyze security --help 2>&1 | grep -q -- --offline; then
  systemd-analyze security --offline=yes --no-pager "$tmp/units/casdisk@vm1.service" \
    >"$tmp/security.out" 2>&1 || { cat "$tmp/security.out"; fail "systemd-analyze security"; }
  exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$tmp/security.out")
  [ -n "$exposure" ] || { cat "$tmp/security.out"; fail "no exposure level"; }
  awk -v e="$exposure" 'BEGIN { exit !(e < 2.0) }' ||
    { cat "$tmp/security.out"; fail "exposure level $exposure (want < 2.0)"; }
  pass "systemd-analyze security: exposure $exposure"
fi

# ---- what the units say ----
key () { sed -n "s/^$1=//p" "$2"; }
[ "$(key ListenStream "$units/casdisk@.socket")" = "/run/casdisk/%i.sock" ] || fail "ListenStream"
[ "$(key EnvironmentFile "$units/casdisk@.service")" = "-/etc/casdisk/%i.conf" ] || fail "EnvironmentFile"
[ "$(key Restart "$units/casdisk@.service")" = on-failure ] || fail "Restart"
for k in ProtectSystem=strict PrivateTmp=yes NoNewPrivileges=yes RestrictAddressFamilies=AF_UNIX \
         User=casdisk StateDirectory=casdisk/%i; do
  grep -qx "$k" "$units/casdisk@.service" || fail "casdisk@.service has no $k"
done
exec_start=$(key ExecStart "$units/casdisk@.service")
case " $exec_start " in *" -U "*|*" --unix"*|*" -p "*|*" --port"*) fail "ExecStart listens itself: $exec_start" ;; esac
pass "the units: socket /run/casdisk/NAME.sock, /etc/casdisk/NAME.conf, restart on failure, hardening"

# ---- socket activation, with the service's own command line ----
# /var/lib/casdisk -> $tmp/lib, /etc/casdisk -> $tmp/etc; nbdkit and the
# plugin of the build tree; %i = vm1.  The settings file is read as
# systemd reads it: KEY="VALUE" lines, the value split into words where
# the command line says $KEY.
mkdir -p "$tmp/lib/vm1" "$tmp/etc" "$tmp/run"
cat >"$tmp/etc/vm1.conf" <<'CONF'
# settings of the test's store
CASDISK_OPTIONS="size=64M gc-delay=5 runtime-asserts=true"
NBDKIT_OPTIONS="--threads=4"
CONF
CASDISK_OPTIONS= NBDKIT_OPTIONS=
while IFS= read -r line; do
  case $line in ''|'#'*) continue ;; esac
  v=${line#*=}; v=${v#\"}; v=${v%\"}
  printf -v "${line%%=*}" '%s' "$v"
done <"$tmp/etc/vm1.conf"
cmd=()
for w in $exec_start; do
  case $w in
    /usr/bin/nbdkit) cmd+=("$NBDKIT") ;;
    casdisk) cmd+=("$PLUGIN") ;;
    '$CASDISK_OPTIONS') cmd+=($CASDISK_OPTIONS) ;;
    '$NBDKIT_OPTIONS') cmd+=($NBDKIT_OPTIONS) ;;
    *) w=${w//%i/vm1}; cmd+=("${w//\/var\/lib\/casdisk/$tmp/lib}") ;;
  esac
done
[ "${cmd[0]}" = "$NBDKIT" ] && [[ " ${cmd[*]} " == *" $PLUGIN store=$tmp/lib/vm1 "* ]] &&
  [[ " ${cmd[*]} " == *" size=64M "* ]] && [[ " ${cmd[*]} " == *" --threads=4 "* ]] ||
  fail "ExecStart did not make the expected command: ${cmd[*]}"
st=$tmp/lib/vm1
vsock=$tmp/run/vm1.sock
vuri="nbd+unix:///?socket=$vsock"

activate () {
  env_args=(-E PATH)
  for e in $(nbdkit_env); do env_args+=(-E "$e"); done
  systemd-socket-activate -l "$vsock" "${env_args[@]}" "${cmd[@]}" >>"$tmp/activate.log" 2>&1 &
  nbdkit_pid=$!
  for _ in $(seq 100); do
    [ -S "$vsock" ] && return 0
    sleep 0.1
  done
  cat "$tmp/activate.log"; fail "systemd-socket-activate did not listen within 10 s"
}

activate
sleep 0.5
[ "$(ps -o comm= -p "$nbdkit_pid")" = systemd-socket- ] || fail "something runs before the first client"
[ ! -e "$st/superblock" ] || fail "the store exists before the first client"
size=$(timeout 30 nbdinfo --size "$vuri") || { cat "$tmp/activate.log"; fail "nbdinfo through the socket"; }
[ "$size" = $((64 << 20)) ] || fail "size $size"
[ "$(ps -o comm= -p "$nbdkit_pid")" = nbdkit ] || fail "the first client did not start nbdkit"
[ -s "$st/superblock" ] || fail "no store after activation"
grep -q "Execing $NBDKIT" "$tmp/activate.log" || { cat "$tmp/activate.log"; fail "not started by socket activation"; }
pass "socket activation: nothing ran until nbdinfo connected; then nbdkit created and served the store"

timeout 60 nbdsh -u "$vuri" -c '
import random, nbd
data = random.Random(7).randbytes(3 << 20)
h.pwrite(data, 5 << 20)
h2 = nbd.NBD(); h2.connect_uri(h.get_uri())   # a second connection, same socket
assert h2.pread(len(data), 5 << 20) == data
h2.trim(1 << 20, 5 << 20)
h2.flush()
assert h.pread(1 << 20, 5 << 20) == bytes(1 << 20)
' || { cat "$tmp/activate.log"; fail "nbdsh through the activated socket"; }
for _ in $(seq 100); do "$CASDISK" status "$st" >/dev/null 2>&1 && break; sleep 0.1; done
gen_before=$("$CASDISK" status "$st" --json | $PYTHON -c 'import json,sys; print(json.load(sys.stdin)["store"]["journal_generation"])') ||
  fail "casdisk status of the activated server"
pass "two connections wrote, read back, trimmed and flushed through it (journal generation $gen_before)"

# ---- a clean stop ----
kill -TERM "$nbdkit_pid"
for _ in $(seq 300); do kill -0 "$nbdkit_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$nbdkit_pid" 2>/dev/null && fail "nbdkit did not stop within 30 s of SIGTERM"
wait "$nbdkit_pid"; rc=$?; nbdkit_pid=
[ "$rc" -eq 0 ] || { cat "$tmp/activate.log"; fail "nbdkit exited with status $rc after SIGTERM"; }
[ ! -e "$st/control.sock" ] || fail "the control socket is left after a clean stop"
journal=$(ls "$st"/journal.* | sort -t. -k2 -n | tail -1)
gen_after=${journal##*.}
[ "$gen_after" -gt "$gen_before" ] || fail "no checkpoint at stop (journal generation $gen_after)"
[ "$(stat -c %s "$journal")" -le 64 ] || fail "the journal after a clean stop holds $(stat -c %s "$journal") bytes"
check_store "$st"
pass "SIGTERM: exit 0, the store closed and checkpointed (journal.$gen_after empty)"

rm -f "$vsock"
activate
timeout 60 nbdsh -u "$vuri" -c '
import random
data = random.Random(7).randbytes(3 << 20)
assert h.pread(2 << 20, 6 << 20) == data[1 << 20:]
' || { cat "$tmp/activate.log"; fail "the data after a second activation"; }
kill -TERM "$nbdkit_pid"
for _ in $(seq 300); do kill -0 "$nbdkit_pid" 2>/dev/null || break; sleep 0.1; done
wait "$nbdkit_pid"; rc=$?; nbdkit_pid=
[ "$rc" -eq 0 ] || fail "second stop: status $rc"
pass "a second activation serves the data written before"
