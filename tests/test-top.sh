#!/bin/bash
# casdisk top, the live view of a served store:
#  - not on a terminal: --count N prints N blocks of plain lines, each
#    ended by a blank line, none but the title (the path) over 80 columns; against a client that
#    writes 8 MiB and reads 4 MiB a second in 1 MiB requests, the rates of
#    the later blocks say so (within a wide margin), for disk0 and the store,
#    and an idle disk shows none; dedup, space and error lines are there;
#  - in a terminal (tmux, 80x24): the screen fits, shows the header, the
#    store and the disks, space by state, GC, recycler, scrub and error
#    lines and the key help; it refreshes (the clock moves); with more disks
#    than rows it says how many it does not show; 'q' quits it;
#  - without a server it says so and exits 1; bad options are usage errors.
. "${top_builddir:-.}/tests/functions.sh"
requires_python_nbd
requires tmux

st=$tmp/store
"$CASDISK" top "$st" --count 1 >"$tmp/out" 2>&1 && fail "top without a server succeeded"
grep -q "no server is serving" "$tmp/out" || { cat "$tmp/out"; fail "top without a server: no clear message"; }
start_nbdkit store="$st" size=256M
for _ in $(seq 200); do "$CASDISK" status "$st" >/dev/null 2>&1 && break; sleep 0.1; done
"$CASDISK" disk add "$st" idle 64M >/dev/null || fail "disk add"
"$CASDISK" top "$st" --count 0 >"$tmp/out" 2>&1; [ $? -eq 2 ] || fail "--count 0 is not a usage error"
"$CASDISK" top "$st" --interval x >"$tmp/out" 2>&1; [ $? -eq 2 ] || fail "--interval x is not a usage error"
pass "no server: exit 1 with a message; bad options: exit 2"

# A paced client: every 1/8 s a 1 MiB write (new content) and every 1/4 s
# a 1 MiB read, for at most 25 s, or until $tmp/stop exists.
$PYTHON - "$(uri)" "$tmp/stop" <<'PY' >"$tmp/client.log" 2>&1 &
import os, random, sys, time, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
rng = random.Random(3)
t0 = time.monotonic(); i = 0
while time.monotonic() - t0 < 25 and not os.path.exists(sys.argv[2]):
    h.pwrite(rng.randbytes(1 << 20), (i % 128) << 20)
    if i % 2 == 0:
        h.pread(1 << 20, 0)
    i += 1
    time.sleep(max(0, t0 + i / 8 - time.monotonic()))
h.flush()
PY
client_pid=$!
stop_client () { touch "$tmp/stop"; wait "$client_pid" 2>/dev/null; client_pid=; }
trap 'touch "$tmp/stop"; [ -n "${client_pid:-}" ] && kill "$client_pid" 2>/dev/null; tmux -S "$tmp/tmux" kill-server 2>/dev/null; cleanup' EXIT
sleep 1

# ---- plain lines ----
timeout 30 "$CASDISK" top "$st" --count 4 --interval 1 >"$tmp/plain" 2>&1 ||
  { cat "$tmp/plain"; fail "top --count 4"; }
$PYTHON - "$tmp/plain" <<'PY' || { cat "$tmp/plain"; fail "the plain output"; }
import sys
text = open(sys.argv[1]).read()
assert text.endswith("\n\n"), "the last block is not ended by a blank line"
blocks = text.rstrip("\n").split("\n\n")
assert len(blocks) == 4, "%d blocks, not 4" % len(blocks)
for b in blocks:
    lines = b.split("\n")
    # The title holds the store's path, whatever its length; the rest fits.
    assert all(len(l) <= 80 for l in lines[1:]), [l for l in lines if len(l) > 80]
    assert lines[0].startswith("casdisk top "), lines[0]
    assert "rd MiB/s" in lines[1] and "wr IOPS" in lines[1] and "dedup" in lines[1], lines[1]
    rows = {l.split()[0]: l.split() for l in lines[2:] if l.split() and l.split()[0] in ("store", "disk0", "idle")}
    assert set(rows) == {"store", "disk0", "idle"}, rows.keys()
    for k in ("space    in use", "junk", "erased", "free", "moving", "gc ", "recycler", "scrub", "errors   0 failed"):
        assert k in b, "no %r in a block" % k
assert "(rates since open)" in blocks[0] and "(rates since open)" not in blocks[1]
for b in blocks[2:]:
    rows = {l.split()[0]: l.split() for l in b.split("\n")[2:] if l.split()}
    for name in ("store", "disk0"):
        rmib, riops, wmib, wiops = map(float, rows[name][1:5])
        assert 4 <= wmib <= 12, "%s: write %.1f MiB/s, the client writes 8" % (name, wmib)
        assert 4 <= wiops <= 12, "%s: %.0f write IOPS, the client makes 8" % (name, wiops)
        assert 2 <= rmib <= 6 and 2 <= riops <= 6, "%s: read %.1f MiB/s %.0f IOPS, the client reads 4" % (name, rmib, riops)
    assert list(map(float, rows["idle"][1:5])) == [0, 0, 0, 0], rows["idle"]
PY
pass "plain lines: 4 blocks within 80 columns; rates match the client's 8 MiB/s written, 4 read; the idle disk shows 0"

# ---- in a terminal: tmux 80x24 ----
tm () { tmux -S "$tmp/tmux" "$@"; }
tm new-session -d -s top -x 80 -y 24 "$CASDISK top $st; echo EXITED \$?; sleep 30" ||
  fail "tmux new-session"
screen () { tm capture-pane -p -t top >"$tmp/screen.$1"; }
sleep 2.5
screen 1
sleep 1.5
screen 2
$PYTHON - "$tmp/screen.1" "$tmp/screen.2" <<'PY' || { cat "$tmp/screen.1"; fail "the terminal view"; }
import sys
s1, s2 = (open(f).read().rstrip("\n").split("\n") for f in sys.argv[1:3])
for s in (s1, s2):
    assert len(s) <= 24 and all(len(l) <= 80 for l in s), "does not fit 80x24"
    assert s[0].startswith("casdisk top "), s[0]
    names = [l.split()[0] for l in s if l.split()]
    for want in ("store", "disk0", "idle", "space", "gc", "recycler", "scrub", "errors"):
        assert want in names, "no %s line" % want
    assert any("q quits" in l for l in s), "no key help"
    wr = float([l for l in s if l.startswith("disk0")][0].split()[3])
    assert wr > 1, "disk0 write rate %.1f on screen while the client writes" % wr
assert s1[0] != s2[0], "the screen did not refresh (the clock)"
PY
pass "tmux 80x24: fits, shows store, disks, space, GC, recycler, scrub, errors; refreshes"

# More disks than rows: the rest are counted.
for i in $(seq 1 25); do "$CASDISK" disk add "$st" "vm-$i" 16M >/dev/null || fail "disk add vm-$i"; done
sleep 2
screen 3
$PYTHON - "$tmp/screen.3" <<'PY' || { cat "$tmp/screen.3"; fail "the view with 27 disks"; }
import re, sys
s = open(sys.argv[1]).read().rstrip("\n").split("\n")
assert len(s) <= 24 and all(len(l) <= 80 for l in s), "does not fit 80x24"
assert s[0].startswith("casdisk top "), "the title scrolled away: " + s[0]
more = [l for l in s if "more disks" in l]
assert more, "no line for the disks not shown"
shown = len([l for l in s if re.match(r"(disk0|idle|vm-\d+) ", l)])
n = int(re.search(r"and (\d+) more", more[0]).group(1))
assert shown + n == 27, "%d shown + %d more != 27 disks" % (shown, n)
assert any("q quits" in l for l in s) and any(l.startswith("errors") for l in s), "the bottom lines are cut"
PY
pass "27 disks in 24 rows: the ones that fit, a count of the rest, the store's lines kept"

tm send-keys -t top q
for _ in $(seq 50); do
  screen 4
  grep -q "^EXITED" "$tmp/screen.4" && break
  sleep 0.1
done
grep -q "^EXITED 0" "$tmp/screen.4" || { cat "$tmp/screen.4"; fail "'q' did not end top with status 0"; }
tm kill-server
pass "'q' quits (status 0)"

stop_client
stop_nbdkit
