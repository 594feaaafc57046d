#!/bin/bash
# The control channel of a running store (docs/control.md):
#  - a stale socket file from a crash is replaced at start;
#  - casdisk status counts what a client does: requests and bytes per
#    operation, as the client counted them;
#  - metrics (the request and DIR/metrics.prom) parse as Prometheus text
#    and agree with the client;
#  - compact --now keeps blocks younger than gc-delay, then shrinks the
#    store once they are older, while the server runs;
#  - an online scrub finds a bit flipped in the data file under the server;
#  - another user is refused, both by the socket's mode and by SO_PEERCRED;
#  - stuck clients do not block others; a full server says so; a silent
#    client is timed out; protocol errors are answered;
#  - commands without an online form say the store is in use;
#  - the socket and the metrics file are removed at exit.
. "${top_builddir:-.}/tests/functions.sh"
requires_python_nbd

st=$tmp/store
"$CASDISK" create "$st" --size 256M --block-size 4K >/dev/null || fail "create"

# A stale socket, as a crashed server leaves it: bound, nobody listening.
$PYTHON -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' \
  "$st/control.sock" || fail "make a stale socket"
[ -S "$st/control.sock" ] || fail "no stale socket"
"$CASDISK" status "$st" >"$tmp/out" 2>&1 && fail "status answered without a server"
grep -q "no server is serving" "$tmp/out" || { cat "$tmp/out"; fail "status: no clear message"; }
"$CASDISK" info "$st" >/dev/null || fail "info on an idle store with a stale socket"

# gc-pressure=off: the compaction below checks that young dead blocks wait
# for gc-delay, which pressure (more dead than a quarter of the live data)
# would shorten.
start_nbdkit store="$st" gc-delay=4 gc-pressure=off compact-after=100 metrics=true metrics-interval=1
wait_control
[ "$(stat -c %a "$st/control.sock")" = 600 ] || fail "socket mode is $(stat -c %a "$st/control.sock")"
"$CASDISK" status "$st" >"$tmp/status.txt" || { cat "$tmp/status.txt"; fail "status"; }
grep -q "^disk disk0" "$tmp/status.txt" || fail "status shows no disk"
pass "a stale socket is replaced; status answers"

# ---- status counts what the client does ----
"$CASDISK" status "$st" --json >"$tmp/s0.json" || fail "status --json"
$PYTHON - "$(uri)" "$tmp/counts.json" <<'EOF2' || fail "client I/O"
import json, random, sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
rng = random.Random(5)
c = {"write": [0, 0], "read": [0, 0], "zero": [0, 0], "flush": [0, 0]}
for i in range(300):
    n = rng.randrange(1, 200000)
    off = rng.randrange(0, 200 << 20)
    h.pwrite(rng.randbytes(n), off); c["write"][0] += 1; c["write"][1] += n
for i in range(50):
    n = rng.randrange(1, 100000)
    h.pread(n, rng.randrange(0, 200 << 20)); c["read"][0] += 1; c["read"][1] += n
for i in range(20):
    n = rng.randrange(1, 1 << 20)
    h.trim(n, rng.randrange(0, 200 << 20)); c["zero"][0] += 1; c["zero"][1] += n
for i in range(7):
    h.flush(); c["flush"][0] += 1
json.dump(c, open(sys.argv[2], "w"))
EOF2
"$CASDISK" status "$st" --json >"$tmp/s1.json" || fail "status --json"
$PYTHON - "$tmp/s0.json" "$tmp/s1.json" "$tmp/counts.json" <<'EOF2' || fail "status figures"
import json, sys
s0, s1, c = (json.load(open(f)) for f in sys.argv[1:4])
d0, d1 = s0["disks"][0], s1["disks"][0]
assert d1["name"] == "disk0"
for op, (n, nbytes) in c.items():
    for a, b, where in ((s0["store"], s1["store"], "store"), (d0, d1, "disk0")):
        got_n = b[op + "_requests"] - a[op + "_requests"]
        got_b = b[op + "_bytes"] - a[op + "_bytes"]
        assert got_n == n, "%s %s requests: %d, the client made %d" % (where, op, got_n, n)
        assert got_b == nbytes, "%s %s bytes: %d, the client sent %d" % (where, op, got_b, nbytes)
        assert b[op + "_errors"] == 0, "%s %s errors" % (where, op)
assert s1["store"]["logical_bytes"] > 0 and s1["store"]["stored_bytes"] > 0
assert s1["store"]["blocks"] > s0["store"]["blocks"]
print("status: %d write requests, %d bytes, as the client counted" % tuple(c["write"]))
EOF2
pass "status counts requests and bytes per operation as the client does"

# ---- metrics ----
cat >"$tmp/promparse.py" <<'EOF2'
# Parse Prometheus text exposition format strictly enough to catch
# mistakes: HELP and TYPE once per family, before its samples; sample
# names belong to the family; label syntax; float values.
import re, sys
def parse(text):
    fam, types, helps, samples = None, {}, {}, {}
    name_re = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
    for line in text.splitlines():
        if not line.strip():
            continue
        m = re.fullmatch(r"# (HELP|TYPE) (%s) (.+)" % name_re, line)
        if m:
            kind, name, rest = m.groups()
            d = helps if kind == "HELP" else types
            assert name not in d, "second %s for %s" % (kind, name)
            if kind == "TYPE":
                assert rest in ("counter", "gauge"), line
                assert name in helps, "TYPE before HELP: " + name
            d[name] = rest
            fam = name
            continue
        assert not line.startswith("#"), "stray comment: " + line
        m = re.fullmatch(r"(%s)(\{[^}]*\})? (\S+)" % name_re, line)
        assert m, "bad sample line: " + line
        name, labels, value = m.groups()
        assert name == fam and fam in types, "sample %s outside its family" % name
        assert name.startswith("casdisk_"), name
        if types[name] == "counter":
            assert name.endswith("_total"), "counter without _total: " + name
        lab = {}
        if labels:
            for part in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"(?:,|\})', labels):
                lab[part[0]] = part[1]
            assert labels == "{" + ",".join('%s="%s"' % kv for kv in lab.items()) + "}", line
        v = float(value)
        assert v >= 0 or name.endswith("_ratio"), line
        key = (name, tuple(sorted(lab.items())))
        assert key not in samples, "duplicate sample " + line
        samples[key] = v
    return types, samples
EOF2
"$CASDISK" metrics "$st" >"$tmp/metrics.txt" || fail "casdisk metrics"
for src in "$tmp/metrics.txt" "$st/metrics.prom"; do
  $PYTHON - "$src" "$tmp/counts.json" "$tmp/promparse.py" <<'EOF2' || fail "metrics in $src"
import json, sys, time
exec(open(sys.argv[3]).read())
c = json.load(open(sys.argv[2]))
want = c["write"][1]
deadline = time.monotonic() + 10
while True:                      # the file is rewritten every second
    types, samples = parse(open(sys.argv[1]).read())
    got = samples[("casdisk_request_bytes_total", (("disk", "disk0"), ("op", "write")))]
    flushes = samples[("casdisk_requests_total", (("disk", "disk0"), ("op", "flush")))]
    if (got >= want and flushes >= c["flush"][0]) or time.monotonic() > deadline:
        break
    time.sleep(0.5)
assert got == want, "metrics: %d write bytes, the client sent %d" % (got, want)
assert flushes == c["flush"][0], "metrics: %d flushes, the client sent %d" % (flushes, c["flush"][0])
for name in ("casdisk_uptime_seconds", "casdisk_stored_bytes", "casdisk_dedup_ratio",
             "casdisk_quarantined_blocks", "casdisk_gc_freed_blocks_total"):
    assert (name, ()) in samples, name + " missing"
assert ("casdisk_disk_logical_bytes", (("disk", "disk0"),)) in samples
print("%s: %d families, %d samples parse" % (sys.argv[1].split("/")[-1], len(types), len(samples)))
EOF2
done
[ "$(stat -c %a "$st/metrics.prom")" = 644 ] || fail "metrics.prom mode"
pass "metrics parse as Prometheus text and agree with the client"

# ---- compact --now ----
$PYTHON - "$(uri)" <<'EOF2' || fail "writes for compaction"
import os, sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
M = 1 << 20
h.trim(256 * M, 0)
for i in range(64):                       # 64 MiB of unique data
    h.pwrite(os.urandom(M), i * M)
h.flush()
for i in range(64):                       # trim 3/4 of it, all over the file
    if i % 4:
        h.trim(M, i * M)
h.flush()
EOF2
# At once: the trimmed blocks are younger than gc-delay and must stay.
"$CASDISK" compact "$st" --now --json >"$tmp/c1.json" || fail "compact --now"
sleep 5                                   # past gc-delay=4
"$CASDISK" compact "$st" --now --json >"$tmp/c2.json" || fail "compact --now (2)"
$PYTHON - "$tmp/c1.json" "$tmp/c2.json" "$st/data" <<'EOF2' || fail "compaction"
import json, os, sys
c1, c2 = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
M = 1 << 20
print("first:  moved %d KiB, %d dead blocks wait, apparent %d -> %d MiB"
      % (c1["moved_bytes"] >> 10, c1["dead_blocks"], c1["apparent_before"] // M, c1["apparent_after"] // M))
print("second: moved %d MiB, %d dead blocks wait, apparent %d -> %d MiB, allocated %d -> %d MiB"
      % (c2["moved_bytes"] // M, c2["dead_blocks"], c2["apparent_before"] // M,
         c2["apparent_after"] // M, c2["allocated_before"] // M, c2["allocated_after"] // M))
assert c1["dead_blocks"] >= 48 * 256 * 0.9, "blocks younger than gc-delay were freed"
assert c1["apparent_after"] > 60 * M, "compaction reclaimed blocks younger than gc-delay"
assert c2["dead_blocks"] == 0
assert c2["moved_bytes"] > 0
size = os.stat(sys.argv[3]).st_size
assert size <= 16 * M * 1.1, "data file is %d MiB for 16 MiB live" % (size // M)
assert c2["apparent_after"] < c2["apparent_before"] / 2
EOF2
pass "compact --now respects gc-delay, then shrinks the running store"

# ---- online scrub finds a flipped bit ----
# Locate stored blocks from a checkpoint: restart the server (close writes one).
stop_nbdkit
[ -e "$st/control.sock" ] && fail "socket left after a clean stop"
[ -e "$st/metrics.prom" ] && fail "metrics file left after a clean stop"
pass "the socket and the metrics file are removed at exit"
check_store "$st"
off=$($PYTHON - "$st" <<'EOF2'
import struct, sys
ck = open(sys.argv[1] + "/checkpoint", "rb").read()
ndisks, nblocks = struct.unpack_from("<I", ck, 32)[0], struct.unpack_from("<Q", ck, 40)[0]
blocks = [struct.unpack_from("<QQ32sI", ck, 64 + 96 * ndisks + 64 * k) for k in range(nblocks)]
_, off, _, length = blocks[len(blocks) // 2]
print(off + length // 2)
EOF2
) || fail "find a block"
start_nbdkit store="$st" gc-delay=4 compact-after=100
wait_control
"$CASDISK" scrub "$st" --rate 4M >"$tmp/scrub0.out" 2>&1 || { cat "$tmp/scrub0.out"; fail "clean online scrub"; }
$PYTHON "$top_srcdir/tests/helpers/damage.py" flip "$st/data" "$off"
"$CASDISK" scrub "$st" --rate 4M >"$tmp/scrub.out" 2>"$tmp/scrub.err" &&
  { cat "$tmp/scrub.out"; fail "online scrub missed the flipped bit"; }
cat "$tmp/scrub.out"
grep -q "^problem: .*quarantined" "$tmp/scrub.out" || fail "scrub reported no quarantined block"
grep -q "1 corrupted" "$tmp/scrub.out" || fail "scrub did not count one corrupted block"
grep -q "^scrub: [0-9]*/[0-9]* blocks" "$tmp/scrub.err" || { cat "$tmp/scrub.err"; fail "no progress lines"; }
"$CASDISK" status "$st" --json >"$tmp/s2.json" || fail "status"
$PYTHON -c '
import json, sys
s = json.load(open(sys.argv[1]))["store"]
assert s["quarantined_blocks"] == 1 and s["scrub_corrupted_blocks"] == 1 and s["scrubs"] == 2, s
' "$tmp/s2.json" || fail "status after scrub"
pass "an online scrub finds a corrupted block under the running server"

# ---- other users ----
if [ "$(id -u)" = 0 ]; then
  cp "$CASDISK" "$tmp/casdisk-nobody" && chmod 755 "$tmp/casdisk-nobody"
  as_nobody () { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
  as_nobody "$tmp/casdisk-nobody" status "$st" >"$tmp/nobody.out" 2>&1 &&
    fail "nobody got a status"
  grep -Eq "permission denied|Permission denied" "$tmp/nobody.out" ||
    { cat "$tmp/nobody.out"; fail "nobody: no clear refusal"; }
  # Open the way (a careless chmod): SO_PEERCRED still refuses.
  chmod 711 "$tmp" "$st"; chmod 666 "$st/control.sock"
  as_nobody "$tmp/casdisk-nobody" status "$st" >"$tmp/nobody.out" 2>&1 &&
    fail "nobody got a status through an open socket"
  grep -q "may not control this store" "$tmp/nobody.out" ||
    { cat "$tmp/nobody.out"; fail "nobody: no SO_PEERCRED refusal"; }
  chmod 700 "$tmp" "$st"; chmod 600 "$st/control.sock"
  pass "another user is refused (socket mode, and SO_PEERCRED)"
else
  echo "note: not root: the other-user checks need setpriv as root"
fi

# ---- stuck clients, limits, protocol errors ----
$PYTHON - "$st/control.sock" "$CASDISK" "$st" <<'EOF2' || fail "stuck clients"
import socket, subprocess, sys, time
path, casdisk, st = sys.argv[1:]
def conn():
    s = socket.socket(socket.AF_UNIX); s.connect(path); return s
def send(s, data):
    # A refused client may find the connection closed already; the
    # server's answer is still there to read.
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
def answer(s, timeout=15):
    s.settimeout(timeout); data = b""
    while not any(l.split(b" ")[0] in (b"ok", b"error") for l in data.split(b"\n")):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode()
def status_time():
    t = time.monotonic()
    r = subprocess.run([casdisk, "status", st], capture_output=True, text=True, timeout=30)
    return r.returncode, time.monotonic() - t, r.stderr
# One silent client and one with half a line: others still get answers.
a, b = conn(), conn()
b.send(b"stat")
rc, t, err = status_time()
assert rc == 0 and t < 3, "status took %.1f s with stuck clients: %s" % (t, err)
# Fill every slot: the next client is told, at once.
more = [conn() for _ in range(6)]
time.sleep(0.5)
c = conn(); send(c, b"status\n")
t = time.monotonic(); r = answer(c, 5)
assert r.startswith("error EBUSY"), r
assert time.monotonic() - t < 2
for s in more + [b]:
    s.close()
time.sleep(0.5)
rc, t, err = status_time()
assert rc == 0, err
# The silent client is timed out after 10 s.
r = answer(a, 15)
assert r.startswith("error ETIMEDOUT"), r
# Protocol errors.
for req, want in ((b"frobnicate\n", "error ENOSYS"), (b"x" * 5000 + b"\n", "error E2BIG"),
                  (b"scrub rate=fast\n", "error EINVAL"), (b"status bogus=1\n", "error EINVAL"),
                  (b"help\n", "data ")):
    s = conn(); send(s, req); r = answer(s)
    assert r.startswith(want), (req[:20], r)
    s.close()
print("stuck clients did not block others; a full server answered EBUSY; errors answered")
EOF2
pass "stuck clients, limits and protocol errors"

# ---- commands without an online form ----
"$CASDISK" check "$st" >"$tmp/out" 2>&1 && fail "check ran on a served store"
grep -q "is in use" "$tmp/out" || { cat "$tmp/out"; fail "check: no clear message"; }
"$CASDISK" compact "$st" >"$tmp/out" 2>&1 && fail "compact without --now on a served store"
grep -q -- "--now" "$tmp/out" || { cat "$tmp/out"; fail "compact: no hint about --now"; }
pass "offline-only commands say the store is in use"

# ---- disk add on a served store: clients see the disk at once ----
"$CASDISK" disk add "$st" vm2 8M >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "online disk add"; }
"$CASDISK" disk list "$st" --json | $PYTHON -c '
import json, sys
d = {x["name"]: x["size"] for x in json.load(sys.stdin)}
assert d.get("vm2") == 8 << 20, d
' || fail "disk list does not show the new disk"
$PYTHON - "$(uri vm2)" <<'EOF2' || fail "the new disk is not served"
import sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
assert h.get_size() == 8 << 20
h.pwrite(b"new disk" * 512, 4096); h.flush()
assert h.pread(4096, 4096) == b"new disk" * 512
EOF2
"$CASDISK" disk add "$st" vm2 8M >"$tmp/out" 2>&1 && fail "a second vm2 was added"
grep -q "already exists" "$tmp/out" || { cat "$tmp/out"; fail "disk add: no clear message"; }
pass "disk add on a served store: the disk is served at once"

# ---- a long scrub: seen in status, one at a time, no obstacle to a stop ----
"$CASDISK" scrub "$st" --rate 256K >"$tmp/slow.out" 2>&1 &
slow=$!
sleep 2
"$CASDISK" status "$st" --json >"$tmp/s3.json" || fail "status during a scrub"
$PYTHON -c '
import json, sys
s = json.load(open(sys.argv[1]))["store"]
assert s["scrub_running"] == 1 and 0 < s["scrub_done_blocks"] < s["scrub_total_blocks"], s
print("status during a scrub: %d of %d blocks" % (s["scrub_done_blocks"], s["scrub_total_blocks"]))
' "$tmp/s3.json" || fail "status does not show the running scrub"
"$CASDISK" scrub "$st" >"$tmp/out" 2>&1 && fail "a second scrub ran at once"
grep -q "running already" "$tmp/out" || { cat "$tmp/out"; fail "second scrub: no clear message"; }
t0=$(date +%s)
stop_nbdkit
t1=$(date +%s)
[ $((t1 - t0)) -le 10 ] || fail "the stop took $((t1 - t0)) s with a scrub running"
wait "$slow" && fail "the interrupted scrub reported success"
grep -q "server is stopping\|cancelled\|closed the connection" "$tmp/slow.out" ||
  { cat "$tmp/slow.out"; fail "the interrupted scrub: no clear message"; }
echo "stopped in $((t1 - t0)) s with a scrub running: $(grep -m1 'casdisk:' "$tmp/slow.out")"
start_nbdkit store="$st" gc-delay=4 compact-after=100
wait_control
pass "a long scrub shows in status, runs alone and does not hold up a stop"

# A crash leaves the socket; the next start replaces it.
kill9_nbdkit
[ -S "$st/control.sock" ] || fail "no socket left by a crash"
"$CASDISK" status "$st" >/dev/null 2>&1 && fail "status answered after a crash"
start_nbdkit store="$st"
wait_control
stop_nbdkit
[ -e "$st/control.sock" ] && fail "socket left at exit"
pass "a socket left by a crash is replaced at the next start"
