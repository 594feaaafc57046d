#!/bin/bash
# casdisk check is clean on a healthy store, finds a deliberately damaged
# refcount, a flipped bit in a stored block and leaked space; --repair
# fixes what it can; scrub finds and quarantines the corrupt block, and a
# read of it returns an I/O error, never data.
. "${top_builddir:-.}/tests/functions.sh"
requires_python_nbd

st=$tmp/store
start_nbdkit store=$st size=32M block-size=4K
$PYTHON - "$(uri)" <<'EOF2' || fail "writes"
import sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
for i in range(256):
    h.pwrite(bytes([i]) * 1024 + bytes(range(256)) * 12, i * 4096)
h.pwrite(bytes([7]) * 4096, 2 * 2**20)     # a second reference to nothing new
h.flush()
EOF2
stop_nbdkit
check_store "$st"

# A wrong refcount with valid checksums: only counting finds it.
cp -a "$st" "$tmp/ref"
$PYTHON "$top_srcdir/tests/helpers/damage.py" refcount "$tmp/ref" || fail "damage.py"
"$CASDISK" check "$tmp/ref" >"$tmp/out" 2>&1 && fail "check passed a store with a wrong refcount"
grep -q "refcount is" "$tmp/out" || { cat "$tmp/out"; fail "no refcount problem reported"; }
pass "wrong refcount found: $(grep -m1 refcount "$tmp/out")"
"$CASDISK" check --json "$tmp/ref" | grep -q '"clean": false' || fail "--json does not say unclean"
"$CASDISK" check --repair "$tmp/ref" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "repair did not fix the refcount"; }
check_store "$tmp/ref"
pass "check --repair recounted the refcount"

# Leaked space: data in the data file that no block owns.
cp -a "$st" "$tmp/leak"
size=$(stat -c %s "$tmp/leak/data")
dd if=/dev/urandom of="$tmp/leak/data" bs=4096 count=8 seek=$(( size / 4096 + 4 )) conv=notrunc status=none
"$CASDISK" check "$tmp/leak" >"$tmp/out" 2>&1 && fail "check passed leaked space"
grep -q "leaked" "$tmp/out" || { cat "$tmp/out"; fail "no leak reported"; }
"$CASDISK" check --repair "$tmp/leak" >/dev/null 2>&1 || fail "repair of leaked space"
check_store "$tmp/leak"
pass "leaked space found and released"

# A flipped bit inside a stored block.
cp -a "$st" "$tmp/flip"
$PYTHON "$top_srcdir/tests/helpers/damage.py" flip "$tmp/flip/data" 100 || fail "damage.py"
"$CASDISK" check "$tmp/flip" >"$tmp/out" 2>&1 && fail "check passed a corrupted block"
grep -q "checksum mismatch" "$tmp/out" || { cat "$tmp/out"; fail "no checksum problem"; }
pass "corrupted block found: $(grep -m1 checksum "$tmp/out")"
"$CASDISK" scrub "$tmp/flip" >"$tmp/out" 2>&1 && fail "scrub passed a corrupted block"
grep -q "quarantined" "$tmp/out" || { cat "$tmp/out"; fail "scrub did not quarantine"; }
pass "scrub quarantined it"
start_nbdkit store=$tmp/flip
$PYTHON - "$(uri)" <<'EOF2' || fail "reads after quarantine"
import sys, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
errors = 0
for i in range(256):
    try:
        assert h.pread(4096, i * 4096) == bytes([i]) * 1024 + bytes(range(256)) * 12
    except nbd.Error as e:
        errors += 1
assert errors == 1, "%d blocks failed to read, expected exactly 1" % errors
# Rewriting the content stores a good copy; the block reads again.
for i in range(256):
    h.pwrite(bytes([i]) * 1024 + bytes(range(256)) * 12, i * 4096)
for i in range(256):
    assert h.pread(4096, i * 4096) == bytes([i]) * 1024 + bytes(range(256)) * 12
h.flush()
print("exactly one read failed with EIO; after a rewrite all read back")
EOF2
stop_nbdkit
