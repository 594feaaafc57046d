#!/bin/bash
# Clones, snapshots and deletes through real clients: a clone shares every
# block (casdisk info) and is isolated both ways; a snapshot is listed as
# the read-only export disk@snap, refuses writes, and reads the same while
# another connection rewrites its disk; deleting releases the space; and
# kill -9 of the tool right after each operation leaves a store that
# opens with the right content and checks clean.
. "${top_builddir:-.}/tests/functions.sh"
requires nbdinfo cmp
requires_python_nbd

mib=$((1 << 20))
st=$tmp/store
"$CASDISK" create "$st" --size 32M --block-size 4K --disk vm >/dev/null || fail "create"


# 8 MiB of random data in vm, through nbdkit.
head -c 8M /dev/urandom >"$tmp/a"
start_nbdkit store=$st
$PYTHON - "$(uri vm)" "$tmp/a" <<'EOF' || fail "fill vm"
import sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(open(sys.argv[2], "rb").read(), 4 << 20)
h.flush()
EOF
stop_nbdkit

blocks=$(info nblocks); stored=$(info stored_bytes); end=$(info data_file_end)
out=$("$CASDISK" disk clone "$st" vm vm2) || fail "disk clone"
pass "$out"
[ "$(info nblocks)" -eq "$blocks" ] && [ "$(info stored_bytes)" -eq "$stored" ] &&
  [ "$(info data_file_end)" -eq "$end" ] || fail "the clone stored or wrote blocks"
[ "$(info logical_bytes vm2)" -eq $((8 * mib)) ] || fail "vm2 does not map 8 MiB"
[ "$(info exclusive_bytes vm)" -eq 0 ] && [ "$(info exclusive_bytes vm2)" -eq 0 ] ||
  fail "vm and vm2 do not share every block"
pass "the clone shares all $blocks blocks ($stored stored bytes, data file unchanged)"
"$CASDISK" disk clone "$st" vm vm2 2>/dev/null && fail "cloned onto an existing disk"
"$CASDISK" disk clone "$st" nosuch x 2>/dev/null && fail "cloned a missing disk"

"$CASDISK" snapshot create "$st" vm s1 >"$tmp/out" || fail "snapshot create"
pass "$(cat "$tmp/out")"
"$CASDISK" snapshot list "$st" vm | grep -q "^s1 .*vm@s1" || fail "snapshot list"
"$CASDISK" snapshot list "$st" vm --json | grep -q '"export": "vm@s1"' || fail "snapshot list --json"
"$CASDISK" disk list "$st" | grep -q "@" && fail "disk list shows snapshots"

start_nbdkit store=$st
nbdinfo --list --json "$(uri)" >"$tmp/list" || fail "nbdinfo --list"
$PYTHON - "$tmp/list" <<'EOF' || { cat "$tmp/list"; fail "export list"; }
import json, sys
j = json.load(open(sys.argv[1]))
e = {x["export-name"]: x for x in j["exports"]}
assert sorted(e) == ["vm", "vm2", "vm@s1"], sorted(e)
assert e["vm@s1"]["is_read_only"] is True, e["vm@s1"]
assert e["vm"]["is_read_only"] is False
EOF
pass "nbdinfo --list shows vm, vm2 and the read-only vm@s1"

# Isolation both ways, and the snapshot under a rewrite of its disk.
$PYTHON - "$(uri vm)" "$(uri vm2)" "$(uri vm@s1)" "$tmp/a" <<'EOF' || fail "isolation"
import sys, nbd, os
vm, vm2, snap = (nbd.NBD() for _ in range(3))
vm.connect_uri(sys.argv[1]); vm2.connect_uri(sys.argv[2]); snap.connect_uri(sys.argv[3])
a = open(sys.argv[4], "rb").read()
assert snap.is_read_only() and not vm.is_read_only()
try:
    snap.pwrite(b"x" * 4096, 0)
    sys.exit("a write to the snapshot succeeded")
except nbd.Error as e:
    print("write to vm@s1 refused:", e.string)
# The server refuses too, when the client does not check first.
snap.set_strict_mode(0)
for op in (lambda: snap.pwrite(b"x" * 4096, 0), lambda: snap.trim(4096, 0),
           lambda: snap.zero(4096, 0)):
    try:
        op()
        sys.exit("the server accepted a write, trim or zero on the snapshot")
    except nbd.Error as e:
        assert e.errnum in (1, 30), e    # EPERM or EROFS
print("the server refuses writes, trims and zeroes on vm@s1")
b, c = os.urandom(1 << 20), os.urandom(1 << 20)
vm2.pwrite(b, 5 << 20)
vm.pwrite(c, 6 << 20)
vm.trim(1 << 20, 4 << 20)
assert vm.pread(1 << 20, 5 << 20) == a[1 << 20:2 << 20], "vm2's write showed in vm"
assert vm2.pread(1 << 20, 6 << 20) == a[2 << 20:3 << 20], "vm's write showed in vm2"
assert vm2.pread(1 << 20, 4 << 20) == a[:1 << 20], "vm's trim showed in vm2"
# Rewrite all of vm while reading the snapshot on another connection.
for i in range(32):
    vm.pwrite(os.urandom(1 << 20), i << 20)
    if i % 4 == 0:
        assert snap.pread(8 << 20, 4 << 20) == a, "the snapshot changed at step %d" % i
vm.flush(); vm2.flush()
assert snap.pread(8 << 20, 4 << 20) == a
assert snap.pread(4 << 20, 0) == bytes(4 << 20)
EOF
pass "writes to vm and vm2 never show in the other; vm@s1 stays the same while vm is rewritten"
stop_nbdkit
check_store "$st"

# Delete releases space.  vm has a snapshot: refused until it is deleted.
"$CASDISK" disk delete "$st" vm 2>"$tmp/err" && fail "deleted a disk with snapshots"
grep -q "has snapshots" "$tmp/err" || { cat "$tmp/err"; fail "no message"; }
blocks=$(info nblocks); du0=$(du_bytes "$st")
"$CASDISK" snapshot delete "$st" vm s1 >/dev/null || fail "snapshot delete"
"$CASDISK" disk delete "$st" vm >/dev/null || fail "disk delete"
"$CASDISK" disk delete "$st" vm 2>/dev/null && fail "deleted vm twice"
dead=$(info dead_blocks)
[ "$dead" -gt 0 ] || fail "no block became unreferenced"
pass "deleting vm@s1 and vm left $dead of $blocks blocks unreferenced (for the delayed GC)"
start_nbdkit store=$st gc-delay=1
for _ in $(seq 100); do    # the GC frees and punches them a second later; up to 20 s
  sleep 0.2
  [ "$(du_bytes "$st")" -lt $((du0 - dead * 2048)) ] && break
done
stop_nbdkit
[ "$(info dead_blocks)" -eq 0 ] || fail "$(info dead_blocks) dead blocks left after the GC"
[ "$(info nblocks)" -eq $((blocks - dead)) ] || fail "nblocks $(info nblocks), expected $((blocks - dead))"
du1=$(du_bytes "$st")
[ "$du1" -lt $((du0 - dead * 2048)) ] || fail "the store allocates $du1 bytes, was $du0"
pass "the GC freed them: $blocks -> $(info nblocks) blocks, $du0 -> $du1 bytes allocated"
check_store "$st"
"$CASDISK" disk list "$st" | grep -q "^vm " && fail "vm is still listed"
"$CASDISK" disk add "$st" vm 4M >/dev/null || fail "the name vm cannot be reused"

# kill -9 of the tool right after each operation says it is done (before
# it closes the store): the operation is durable, the store recovers.
"$CASDISK" export "$st" vm2 "$tmp/vm2.img" >/dev/null || fail "export vm2"
run_and_kill () {  # WORD COMMAND...: kill -9 as soon as it prints "WORD ..."
  local word=$1; shift
  : >"$tmp/killed.out"   # emptied here, before the child starts: no stale output
  "$@" >>"$tmp/killed.out" 2>&1 &   # the tool prints its result before it closes
  local pid=$!
  for _ in $(seq 200); do
    [ -s "$tmp/killed.out" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.05
  done
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  grep -q "^$word " "$tmp/killed.out" || { cat "$tmp/killed.out"; fail "$*"; }
}
run_and_kill cloned "$CASDISK" disk clone "$st" vm2 vm3
run_and_kill created "$CASDISK" snapshot create "$st" vm3 before
run_and_kill deleted "$CASDISK" disk delete "$st" vm
"$CASDISK" export "$st" vm3 "$tmp/vm3.img" >/dev/null || fail "export vm3 after kill -9"
"$CASDISK" export "$st" vm3@before "$tmp/snap.img" >/dev/null || fail "export vm3@before"
cmp "$tmp/vm2.img" "$tmp/vm3.img" && cmp "$tmp/vm2.img" "$tmp/snap.img" ||
  fail "a clone or snapshot has the wrong content after kill -9"
"$CASDISK" disk list "$st" | grep -q "^vm " && fail "the deleted disk came back after kill -9"
pass "clone, snapshot and delete each survived kill -9 of the tool"
check_store "$st"

# Online: snapshot and clone while a client rewrites vm2 block after block,
# round after round (each block says its round); both must show one point
# in time: along the blocks, the rounds drop by one at most once.
start_nbdkit store=$st
cat >"$tmp/rounds.py" <<'EOF'
import sys, nbd, struct, time, hashlib, os
W = 256                                   # 4 KiB blocks: the first MiB of vm2
def block(i, r): return struct.pack("<QQ", r, i) * 256
def writer(uri, stop):
    h = nbd.NBD(); h.connect_uri(uri)
    deadline = time.time() + 120
    r = 0
    while not os.path.exists(stop) and time.time() < deadline:
        r += 1
        for i in range(W):
            h.pwrite(block(i, r), i * 4096)
    print(r, "rounds written")
def verify(uri, out):
    h = nbd.NBD(); h.connect_uri(uri)
    data = h.pread(W * 4096, 0)
    rounds = []
    for i in range(W):
        b = data[i * 4096:(i + 1) * 4096]
        r, j = struct.unpack_from("<QQ", b)
        assert b == block(j, r) and j == i, "block %d is not a whole block of one round" % i
        rounds.append(r)
    drops = [k for k in range(1, W) if rounds[k] != rounds[k - 1]]
    assert len(drops) <= 1 and all(rounds[k] + 1 == rounds[k - 1] for k in drops), \
        "not one point in time: rounds %s" % rounds
    assert rounds[0] > 0
    open(out, "w").write(hashlib.sha256(data).hexdigest())
    print(uri.split("?")[0], "round", rounds[0], "then", rounds[-1])
def same(uri, want):
    h = nbd.NBD(); h.connect_uri(uri)
    assert hashlib.sha256(h.pread(W * 4096, 0)).hexdigest() == open(want).read(), uri
{"writer": writer, "verify": verify, "same": same}[sys.argv[1]](*sys.argv[2:])
EOF
$PYTHON "$tmp/rounds.py" writer "$(uri vm2)" "$tmp/stop" >"$tmp/writer.out" 2>&1 &
writer=$!
sleep 1
"$CASDISK" snapshot create "$st" vm2 live >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "online snapshot"; }
grep -q "served, taken at a flush point" "$tmp/out" || { cat "$tmp/out"; fail "the snapshot was not taken online"; }
pass "$(cat "$tmp/out")"
sleep 0.5
"$CASDISK" disk clone "$st" vm2 live2 >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "online clone"; }
pass "$(cat "$tmp/out")"
sleep 0.5
touch "$tmp/stop"
wait $writer || { cat "$tmp/writer.out"; fail "the writer failed"; }
$PYTHON "$tmp/rounds.py" verify "$(uri vm2@live)" "$tmp/live.sum" || fail "vm2@live"
$PYTHON "$tmp/rounds.py" verify "$(uri live2)" "$tmp/live2.sum" || fail "live2"
pass "writer: $(cat "$tmp/writer.out"); vm2@live and live2 are each one point in time"
"$CASDISK" snapshot list "$st" vm2 | grep -q "^live .*vm2@live" || fail "online snapshot list"
"$CASDISK" disk list "$st" | grep -q "^live2 " || fail "online disk list does not show live2"
kill9_nbdkit
start_nbdkit store=$st
$PYTHON "$tmp/rounds.py" same "$(uri vm2@live)" "$tmp/live.sum" || fail "vm2@live changed across kill -9"
$PYTHON "$tmp/rounds.py" same "$(uri live2)" "$tmp/live2.sum" || fail "live2 changed across kill -9"
pass "after kill -9 of nbdkit: vm2@live and live2 read the same"
"$CASDISK" disk delete "$st" live2 >/dev/null || fail "online disk delete"
"$CASDISK" snapshot delete "$st" vm2 live >/dev/null || fail "online snapshot delete"
nbdinfo --list "$(uri)" >"$tmp/list" 2>&1 || fail "nbdinfo --list"
grep -q "live" "$tmp/list" && { cat "$tmp/list"; fail "deleted disks are still exported"; }
kill9_nbdkit
start_nbdkit store=$st
nbdinfo --list "$(uri)" >"$tmp/list" 2>&1 || fail "nbdinfo --list"
grep -q "live" "$tmp/list" && { cat "$tmp/list"; fail "online deletes did not survive kill -9"; }
pass "online disk delete and snapshot delete: gone at once, and after kill -9"
stop_nbdkit

# The empty export name serves the default disk by name: deleted online, it
# fails with a clear message (not I/O errors); added again, it serves again.
start_nbdkit store=$st disk=dflt size=1M
nbdinfo --size "$(uri)" >/dev/null || fail "default export"
"$CASDISK" disk delete "$st" dflt >/dev/null || fail "online delete of the default disk"
nbdinfo --size "$(uri)" >"$tmp/out" 2>&1 && { cat "$tmp/out"; fail "the deleted default disk is still served"; }
grep -q "default disk 'dflt' was deleted" "$tmp/nbdkit.log" ||
  { cat "$tmp/nbdkit.log"; fail "no clear message for the deleted default disk"; }
nbdinfo --size "$(uri vm2)" >/dev/null || fail "a named export after the default disk was deleted"
"$CASDISK" disk add "$st" dflt 2M >/dev/null || fail "online disk add of the default name"
[ "$(nbdinfo --size "$(uri)")" = 2097152 ] || fail "the default export does not serve the new 'dflt'"
pass "default disk deleted online: a clear error, then served again once re-added"
stop_nbdkit
check_store "$st"
