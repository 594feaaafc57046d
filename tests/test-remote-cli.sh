#!/bin/bash
# casdisk remote info|check|scrub|gc against a throwaway Ceph cluster
# (scripts/ceph-cluster.sh), on block objects stored from image files by
# tests/helpers/remote-put for the holders disk.a and disk.b: dedup across
# holders, info's figures against the test's own, check clean and then
# leaks once disk.b is gone, gc (grace, dry run, the objects only b used
# removed), scrub clean and then exactly the object whose stored byte was
# flipped, a bad operand, a missing pool, and a stopped OSD (exit 1 after
# about the op timeout).  Without librados: the one-line refusal, then a
# skip.  With librados, anything missing fails the test.
. "${top_builddir:-.}/tests/functions.sh"

if [ "${CASDISK_HAVE_RADOS:-no}" != yes ]; then
  timeout 30 "$CASDISK" remote info rados:x >"$tmp/out" 2>"$tmp/err"
  rc=$?
  [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "built without librados" "$tmp/err" ||
    { cat "$tmp/err"; fail "without librados: exit $rc, not one line saying so"; }
  [ "${CI:-}" = true ] && fail "configure did not find librados (scripts/install-deps.sh --test installs librados-dev)"
  echo "SKIP: configure did not find librados: casdisk remote is not built"
  exit 77
fi
for c in ceph ceph-mon ceph-osd ceph-authtool monmaptool rados; do
  command -v "$c" >/dev/null 2>&1 || fail "$c is not installed (bash scripts/install-deps.sh --test)"
done
put=$top_builddir/tests/helpers/remote-put
[ -x "$put" ] || fail "configure found librados but $put is not built"

cluster=$top_srcdir/scripts/ceph-cluster.sh
cdir=$tmp/ceph
timeout_s=5
export CEPH_OP_TIMEOUT=$timeout_s CEPH_POOL=casdisk-remote-cli CASDISK_RADOS_TIMEOUT=$timeout_s
stop_cluster () {
  bash "$cluster" stop "$cdir"
  cleanup
}
trap stop_cluster EXIT
timeout 120 bash "$cluster" start "$cdir" >/dev/null 2>"$tmp/start.err" ||
  { cat "$tmp/start.err"; tail -20 "$cdir"/log/*.log 2>/dev/null; fail "the cluster did not start"; }
eval "$(bash "$cluster" env "$cdir")"
pool=rados:$CEPH_POOL
pass "cluster started: $(cat "$tmp/start.err")"

# remote ARGS...: casdisk remote, output in $tmp/out and $tmp/err, status
# in $rc; a hang fails the test.
remote () {
  timeout $(( timeout_s * 4 + 30 )) "$CASDISK" remote "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  [ "$rc" -ne 124 ] || { cat "$tmp/err"; fail "casdisk remote $*: hung"; }
}
expect_rc () {   # WANT WHAT
  [ "$rc" -eq "$1" ] || { cat "$tmp/out" "$tmp/err"; fail "$2: exit $rc, expected $1"; }
}
rados_ () { timeout 60 rados -p "$CEPH_POOL" "$@"; }
nblk () { rados_ ls | grep -c '^blk\.'; }
# j EXPR: a value of the JSON in $tmp/out (j is the parsed object).
j () { $PYTHON -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$tmp/out" "$1"; }
expect_eq () {   # GOT WANT WHAT
  [ "$1" = "$2" ] || { cat "$tmp/out"; fail "$3: $1, expected $2"; }
}

# ---- Operands and pools ----
for bad in foo:x rados: casdisk "rados:a b"; do
  remote info "$bad"
  expect_rc 2 "remote info '$bad'"
  [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "is not a pool" "$tmp/err" ||
    { cat "$tmp/err"; fail "remote info '$bad': not one usage line"; }
done
remote check rados:no-such-pool
expect_rc 1 "remote check of a missing pool"
[ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "rados:no-such-pool: cannot open the pool" "$tmp/err" ||
  { cat "$tmp/err"; fail "a missing pool: not one line naming it"; }
pass "bad operands exit 2, a missing pool 1, in one line each"

# ---- Two images' blocks ----
# a.img: 64 blocks of 64 KiB, random but block 5 (text: it compresses,
# stored as a zstd frame) and block 11 (a copy of block 10); b.img: 16
# random blocks.  The test's own figures: unique blocks, names.
$PYTHON - "$tmp" <<'EOF' >"$tmp/figures" || fail "could not make the images"
import hashlib, os, sys
t = sys.argv[1]
B = 65536
a = bytearray(os.urandom(64 * B))
a[5 * B:6 * B] = (b"casdisk remote " * B)[:B]
a[11 * B:12 * B] = a[10 * B:11 * B]
b = os.urandom(16 * B)
open(t + "/a.img", "wb").write(a)
open(t + "/b.img", "wb").write(b)
names = lambda d: ["blk." + hashlib.sha256(d[i:i + B]).hexdigest() for i in range(0, len(d), B)]
na, nb = names(a), names(b)
open(t + "/a.names", "w").write("\n".join(sorted(set(na))) + "\n")
print("ua=%d ub=%d z5=%s raw0=%s" % (len(set(na)), len(set(nb) - set(na)), na[5], na[0]))
EOF
eval "$(cat "$tmp/figures")"
[ "$ua" -eq 63 ] && [ "$ub" -eq 16 ] || fail "figures: $(cat "$tmp/figures")"

timeout 120 "$put" -t "$timeout_s" -z 5 disk.a "$tmp/a.img" >"$tmp/put" 2>&1 || { cat "$tmp/put"; fail "remote-put disk.a a.img"; }
grep -q "disk.a: 64 blocks, 63 created" "$tmp/put" || { cat "$tmp/put"; fail "remote-put disk.a: not 63 created"; }
remote info "$pool" --json
expect_rc 0 "remote info"
expect_eq "$(j 'j["pool"]["block_objects"]')" "$ua" "one holder: block objects"
expect_eq "$(j 'j["pool"]["references"]')" "$ua" "one holder: references"
timeout 120 "$put" -t "$timeout_s" -z 5 disk.b "$tmp/a.img" >"$tmp/put" 2>&1 || { cat "$tmp/put"; fail "remote-put disk.b a.img"; }
grep -q "disk.b: 64 blocks, 0 created" "$tmp/put" || { cat "$tmp/put"; fail "remote-put disk.b a.img created blocks"; }
remote info "$pool" --json
expect_rc 0 "remote info"
expect_eq "$(j 'j["pool"]["block_objects"]')" "$ua" "two holders of one image: block objects"
expect_eq "$(j 'j["pool"]["references"]')" "$((2 * ua))" "two holders of one image: references"
z5_size=$(rados_ stat "$z5" | sed -n 's/.* size \([0-9]*\)$/\1/p')
[ -n "$z5_size" ] && [ "$z5_size" -lt 65536 ] || fail "the compressed block $z5: size '$z5_size'"
expect_eq "$(j 'j["pool"]["stored_bytes"]')" "$(( (ua - 1) * 65536 + z5_size - 32 ))" "stored bytes"
expect_eq "$(j 'j["pool"]["unique_bytes"]')" "$((ua * 65536))" "unique bytes"
expect_eq "$(j 'j["pool"]["logical_bytes"]')" "$((2 * ua * 65536))" "logical bytes"
expect_eq "$(j 'j["pool"]["dedup_ratio"]')" "2.0" "dedup ratio"
expect_eq "$(j '"%.4f" % j["pool"]["compression_ratio"]')" \
  "$($PYTHON -c "print('%.4f' % ($ua * 65536 / (($ua - 1) * 65536 + $z5_size - 32)))")" "compression ratio"
expect_eq "$(j '[(h["name"], h["blocks"]) for h in j["holders"]]')" "[('disk.a', $ua), ('disk.b', $ua)]" "holders"
pass "dedup across holders: $ua objects, $((2 * ua)) references; stored, unique, logical bytes and ratios as computed"

timeout 120 "$put" -t "$timeout_s" disk.b "$tmp/b.img" >"$tmp/put" 2>&1 || { cat "$tmp/put"; fail "remote-put disk.b b.img"; }
remote info "$pool"
expect_rc 0 "remote info (text)"
grep -q "^  block objects  *$((ua + ub))$" "$tmp/out" && grep -q "^  references  *$((2 * ua + ub))$" "$tmp/out" &&
  grep -q "^holder disk.b: $((ua + ub)) blocks" "$tmp/out" || { cat "$tmp/out"; fail "info after b.img"; }
[ "$(nblk)" -eq $((ua + ub)) ] || fail "rados ls: $(nblk) block objects, expected $((ua + ub))"

# ---- check ----
rados_ put disk.a /dev/null && rados_ put disk.b /dev/null || fail "rados put of the holder objects"
remote check "$pool"
expect_rc 0 "check with both holders"
grep -q "^$pool: $((ua + ub)) block objects, $((2 * ua + ub)) references, 2 holders (0 missing); 0 problems (0 leaked references): clean$" "$tmp/out" ||
  { cat "$tmp/out"; fail "check: not the clean summary"; }
pass "check clean: $(cat "$tmp/out")"

# A mark without its reference's twin: reported, then put back.
rados_ rmomapkey "$raw0" ref.disk.a || fail "rmomapkey"
remote check "$pool" --json
expect_rc 1 "check with a missing mark"
expect_eq "$(j 'j["problems"]')" "['$raw0: the cls_cas reference of disk.a has no mark ref.disk.a']" "check's problems, a missing mark"
rados_ setomapval "$raw0" ref.disk.a 1 || fail "setomapval"
remote check "$pool"
expect_rc 0 "check with the mark back"

# ---- scrub, clean: progress, rate, the compressed block decoded ----
t0=$(date +%s.%N)
remote scrub "$pool" --rate 2M
t=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
expect_rc 0 "scrub, clean"
grep -q "^$pool: $((ua + ub)) block objects, [0-9]* bytes read ($((ua + ub - 1)) raw, 1 compressed, 0 sectored), 0 bad: clean$" "$tmp/out" ||
  { cat "$tmp/out"; fail "scrub: not the clean summary"; }
bytes=$(sed -n 's/.* objects, \([0-9]*\) bytes read.*/\1/p' "$tmp/out")
awk -v t="$t" -v b="$bytes" 'BEGIN { exit !(t >= b / 2097152 - 0.5) }' || fail "scrub --rate 2M read $bytes bytes in $t s"
grep -q "^remote scrub: [0-9]*/$((ua + ub)) objects ([0-9]*%)$" "$tmp/err" || { cat "$tmp/err"; fail "scrub: no progress lines"; }
pass "scrub clean in $t s at 2 MiB/s: $(cat "$tmp/out")"

# ---- b goes: leaks ----
rados_ rm disk.b || fail "rados rm disk.b"
remote check "$pool"
expect_rc 1 "check without disk.b"
expect_eq "$(grep -c "^problem: blk\.[0-9a-f]*: leaked reference: its holder disk.b does not exist$" "$tmp/out")" "$((ua + ub))" "leaks reported"
expect_eq "$(grep -c "^problem:" "$tmp/out")" "$((ua + ub))" "problems reported"
grep -q "PROBLEMS FOUND" "$tmp/out" || fail "check: no PROBLEMS FOUND"
pass "check without disk.b: $(tail -1 "$tmp/out")"

# ---- gc ----
remote gc "$pool"
expect_rc 0 "gc, default grace"
grep -q "dropped 0 references of missing holders, removed 0 objects, freed 0 B (0 bytes); $((ua + ub)) kept for the grace period (3600 s); 0 failed$" "$tmp/out" ||
  { cat "$tmp/out"; fail "gc with the default grace dropped something"; }
remote gc "$pool" --grace 0 --dry-run
expect_rc 0 "gc --dry-run"
expect_eq "$(grep -c "^would drop: blk.*: reference of disk.b (no such object)" "$tmp/out")" "$((ua + ub))" "dry run: references"
expect_eq "$(grep -c "would remove the object" "$tmp/out")" "$ub" "dry run: objects"
[ "$(nblk)" -eq $((ua + ub)) ] || fail "gc --dry-run removed objects"
remote info "$pool" --json
expect_eq "$(j 'j["pool"]["references"]')" "$((2 * ua + ub))" "references after the dry run"
pass "gc --grace 3600 and --dry-run change nothing"

remote gc "$pool" --grace 0 --json
expect_rc 0 "gc --grace 0"
expect_eq "$(j 'len(j["dropped"])')" "$((ua + ub))" "gc: references dropped"
expect_eq "$(j 'set(d["holder"] for d in j["dropped"])')" "{'disk.b'}" "gc: holders dropped"
expect_eq "$(j 'j["objects_removed"]')" "$ub" "gc: objects removed"
expect_eq "$(j 'j["bytes_freed"]')" "$((ub * (65536 + 32)))" "gc: bytes freed"
rados_ ls | grep '^blk\.' | sort >"$tmp/left"
cmp -s "$tmp/left" "$tmp/a.names" || { diff "$tmp/left" "$tmp/a.names" | head; fail "after gc: not exactly a.img's blocks left"; }
remote check "$pool"
expect_rc 0 "check after gc"
remote info "$pool" --json
expect_eq "$(j 'j["pool"]["references"]')" "$ua" "references after gc"
expect_eq "$(j '[h["name"] for h in j["holders"]]')" "['disk.a']" "holders after gc"
pass "gc --grace 0: b's $((ua + ub)) references dropped, its $ub own objects removed, a's $ua kept; check clean"

# ---- scrub finds one flipped stored byte ----
rados_ get "$raw0" "$tmp/obj" || fail "rados get"
$PYTHON -c 'import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[32 + 100] ^= 0x40; open(p, "wb").write(b)' "$tmp/obj"
rados_ put "$raw0" "$tmp/obj" || fail "rados put of the damaged copy"
remote scrub "$pool"
expect_rc 1 "scrub of a damaged object"
expect_eq "$(grep -c "^problem:" "$tmp/out")" 1 "scrub: problems"
grep -q "^problem: $raw0: bad frame: bad data CRC" "$tmp/out" || { cat "$tmp/out"; fail "scrub: not the damaged object's CRC"; }
grep -q "1 bad: PROBLEMS FOUND$" "$tmp/out" || { cat "$tmp/out"; fail "scrub: summary"; }
remote scrub "$pool" --json
expect_rc 1 "scrub --json of a damaged object"
expect_eq "$(j 'j["bad"], j["clean"], len(j["problems"])')" "(1, False, 1)" "scrub --json"
pass "scrub: exactly $raw0 reported after a flipped stored byte"

# ---- a stopped OSD: info fails after about the op timeout ----
bash "$cluster" stop-osd "$cdir" || fail "stop-osd"
t0=$(date +%s.%N)
remote info "$pool"
t=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
expect_rc 1 "info with the OSD stopped"
awk -v t="$t" -v m="$timeout_s" 'BEGIN { exit !(t >= m - 1 && t <= 3 * m + 10) }' ||
  { cat "$tmp/err"; fail "info with the OSD stopped failed after $t s (op timeout $timeout_s s)"; }
grep -q "timed out" "$tmp/err" || { cat "$tmp/err"; fail "info with the OSD stopped: not a timeout"; }
[ "$(wc -l <"$tmp/err")" -eq 1 ] || { cat "$tmp/err"; fail "info with the OSD stopped: not one line"; }
pass "info with the OSD stopped: exit 1 after $t s: $(cat "$tmp/err")"
