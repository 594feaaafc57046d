#!/bin/bash
# Export names select disks: the empty name is the default disk (disk=, else
# disk0, else the first disk), every disk is listed, an unknown name is
# refused, and disk= with size= adds a disk to an existing store.  Also the
# create-only keys on an existing store, and the engine's debug flag.
. "${top_builddir:-.}/tests/functions.sh"
requires nbdinfo
requires_python_nbd

mib=$((1 << 20))
st=$tmp/store
"$CASDISK" create "$st" --size 4M --block-size 4K --compression 5 >/dev/null || fail "create"
"$CASDISK" disk add "$st" other 2M >/dev/null || fail "disk add"

# captive KEY=VALUE... -- COMMAND: run COMMAND against a captive nbdkit.
captive () {
  local args=()
  while [ "$1" != -- ]; do args+=("$1"); shift; done; shift
  env $(nbdkit_env) $NBDKIT -U - "$PLUGIN" "${args[@]}" --run "$*" >"$tmp/out" 2>&1
}

captive store=$st -- 'nbdinfo --size "$uri"' || { cat "$tmp/out"; fail "default export"; }
[ "$(tail -1 "$tmp/out")" = $((4 * mib)) ] || { cat "$tmp/out"; fail "default export is not disk0"; }
pass "the empty export name serves disk0 (4 MiB)"

captive store=$st disk=other -- 'nbdinfo --size "$uri"' || { cat "$tmp/out"; fail "disk=other"; }
[ "$(tail -1 "$tmp/out")" = $((2 * mib)) ] || { cat "$tmp/out"; fail "disk=other not served by default"; }
pass "disk=other serves 'other' (2 MiB) as the default export"

captive store=$st -- 'nbdinfo --list --json "$uri"' || { cat "$tmp/out"; fail "nbdinfo --list"; }
$PYTHON - "$tmp/out" <<'EOF2' || { cat "$tmp/out"; fail "export list"; }
import json, sys
text = open(sys.argv[1]).read()
j = json.loads(text[text.index("{"):])
names = sorted(e["export-name"] for e in j["exports"])
assert names == ["disk0", "other"], names
sizes = {e["export-name"]: e["export-size"] for e in j["exports"]}
assert sizes == {"disk0": 4 << 20, "other": 2 << 20}, sizes
EOF2
pass "nbdinfo --list shows disk0 and other with their sizes"

captive store=$st -- 'nbdinfo --size "nbd+unix:///nosuch?socket=$unixsocket"' &&
  { cat "$tmp/out"; fail "an unknown export name was served"; }
grep -q "no disk named 'nosuch'" "$tmp/out" || { cat "$tmp/out"; fail "no message for an unknown export"; }
pass "unknown export refused: $(grep -m1 "no disk named" "$tmp/out")"

# Writes to one export land in that disk only.
start_nbdkit store=$st
$PYTHON - "$(uri)" "$(uri other)" "$(uri disk0)" <<'EOF2' || fail "per-disk data"
import sys, nbd
d, o, d0 = (nbd.NBD() for _ in range(3))
d.connect_uri(sys.argv[1]); o.connect_uri(sys.argv[2]); d0.connect_uri(sys.argv[3])
d.pwrite(b"A" * 10000, 123)
o.pwrite(b"B" * 10000, 123)
d.flush()
assert d0.pread(10000, 123) == b"A" * 10000   # "" and "disk0" are the same disk
assert o.pread(10000, 123) == b"B" * 10000
assert o.pread(123, 0) == bytes(123)
EOF2
pass "the empty name and 'disk0' are one disk; 'other' is separate"
stop_nbdkit

# disk= and size= add a disk to an existing store.
captive store=$st disk=new size=3M -- 'nbdinfo --size "$uri"' || { cat "$tmp/out"; fail "disk=new size=3M"; }
"$CASDISK" disk list "$st" | grep -q new || fail "disk 'new' was not added"
pass "disk=new size=3M added a disk: $("$CASDISK" disk list "$st" | grep new)"

# The create-only keys: equal to the store's settings is fine, different is not.
captive store=$st block-size=4K compression=5 -- true || { cat "$tmp/out"; fail "equal create keys refused"; }
captive store=$st compression=5 -- true || { cat "$tmp/out"; fail "compression=5 alone refused"; }
pass "block-size/compression equal to the store's settings are accepted"
captive store=$st compression=3 -- true && fail "compression=3 accepted on a level-5 store"
grep -q "apply only when creating" "$tmp/out" || { cat "$tmp/out"; fail "message"; }
pass "a different compression level is refused"

# A store with no disk0 serves its first disk.
"$CASDISK" create "$tmp/s2" --size 1M --disk first >/dev/null || fail "create --disk first"
captive store=$tmp/s2 -- 'nbdinfo --size "$uri"' || { cat "$tmp/out"; fail "store without disk0"; }
[ "$(tail -1 "$tmp/out")" = $mib ] || { cat "$tmp/out"; fail "the first disk is not the default"; }
pass "without disk0 the first disk is the default export"

# -D casdisk.engine=1 turns on the engine's debug messages.
env $(nbdkit_env) $NBDKIT -v -D casdisk.engine=1 -U - "$PLUGIN" store=$st --run true >"$tmp/out" 2>&1 ||
  { cat "$tmp/out"; fail "nbdkit -D casdisk.engine=1"; }
grep -q "opened .*disks" "$tmp/out" || { grep casdisk "$tmp/out"; fail "no engine debug message"; }
pass "-D casdisk.engine=1: $(grep -m1 -o "opened .*" "$tmp/out")"

# readonly=true: a shared lock (two read-only servers at once), read-only
# exports, and the store's files untouched.
sum_store () { (cd "$1" && find . -type f ! -name control.sock -print0 | sort -z | xargs -0 sha256sum); }
sum_store "$st" >"$tmp/before"
captive store=$st readonly=true -- '
  nbdinfo --json "$uri" >"'"$tmp"'/ro.json" &&
  nbdkit -U - '"$PLUGIN"' store='"$st"' readonly=true --run "nbdinfo --size \"\$uri\"" &&
  "'"$CASDISK"'" info "'"$st"'" >/dev/null &&
  ! nbdsh -u "$uri" -c "h.pwrite(b\"x\" * 512, 0)" 2>/dev/null' ||
  { cat "$tmp/out"; fail "readonly=true: a second read-only server, info, or a refused write"; }
grep -q '"is_read_only": true' "$tmp/ro.json" || { cat "$tmp/ro.json"; fail "export not read-only"; }
sum_store "$st" >"$tmp/after"
cmp -s "$tmp/before" "$tmp/after" || { diff "$tmp/before" "$tmp/after"; fail "readonly=true changed the store"; }
captive store=$tmp/none readonly=true -- true && fail "readonly=true created a store"
grep -q "readonly=true cannot create" "$tmp/out" || { cat "$tmp/out"; fail "message"; }
pass "readonly=true: shared lock (a second read-only server and casdisk info meanwhile), read-only export, store unchanged"

check_store "$st"
check_store "$tmp/s2"
