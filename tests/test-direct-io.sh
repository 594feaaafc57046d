#!/bin/bash
# direct-io=true: the data path reads and writes the data file with
# O_DIRECT and libaio.  The server really holds an O_DIRECT descriptor of
# the data file; an image goes in and out byte for byte (qemu-img); small
# unaligned writes and reads agree with a model (random-io.py, and 4 KiB
# writes at odd offsets checked by reads); trimmed space comes back
# through the recycler (its copies, and secure-erase's zeroes, written
# with O_DIRECT too) while the kept data still reads back; the store
# survives a restart and checks clean; the first server runs with a small
# block cache (cache=SIZE).  A file system that cannot do direct I/O
# (tmpfs) is refused with the numbers.
. "${top_builddir:-.}/tests/functions.sh"
requires qemu-img cmp
requires_python_nbd

# Skip only if the test directory's file system refuses direct I/O.
env $(nbdkit_env) $NBDKIT -U - "$PLUGIN" store="$tmp/probe" size=1M direct-io=true \
  --run true >"$tmp/probe.log" 2>&1
if grep -q "direct-io: the file system of" "$tmp/probe.log"; then
  echo "SKIP: the file system of $tmp cannot do direct I/O for casdisk:"
  cat "$tmp/probe.log"
  exit 77
fi
grep -q . "$tmp/probe.log" && { cat "$tmp/probe.log"; fail "direct-io=true did not start"; }
rm -rf "$tmp/probe"

st=$tmp/store
# With a block cache smaller than the data (so blocks are evicted and read
# again from the file); the second server below runs without one.
start_nbdkit store=$st size=256M direct-io=true cache=2M gc-delay=1 compact-after=10

# The data file is open with O_DIRECT (octal 040000 in fdinfo's flags).
direct=
for f in /proc/$nbdkit_pid/fd/*; do
  [ "$(readlink "$f")" = "$st/data" ] || continue
  flags=$(awk '/^flags:/ { print $2 }' "/proc/$nbdkit_pid/fdinfo/${f##*/}")
  (( 8#$flags & 8#040000 )) && direct=yes
done
[ "$direct" = yes ] || fail "nbdkit holds no O_DIRECT descriptor of $st/data"
pass "the server reads and writes the data file with O_DIRECT"

# An image of random, duplicated, compressible and zero parts, in and out.
$PYTHON - "$tmp/in.img" <<'EOF' || fail "making the image"
import os, sys
M = 2**20
with open(sys.argv[1], "wb") as f:
    r = os.urandom(8 * M)
    f.write(r)                                  # random
    f.write(r[:3 * M])                          # duplicates of it
    f.write(b"\0" * (5 * M))                    # zeroes
    f.write((b"direct I/O test line\n" * 50000)[:6 * M])  # compressible
    f.write(os.urandom(7 * M + 12345))          # random, ends mid-block
    f.truncate(32 * M)
EOF
qemu-img convert -n -f raw -O raw "$tmp/in.img" "$(uri)" || fail "convert into the export"
qemu-img convert -f raw -O raw "$(uri)" "$tmp/out.img" || fail "convert out of the export"
head -c 32M "$tmp/out.img" >"$tmp/out.img.cmp"
cmp "$tmp/in.img" "$tmp/out.img.cmp" || fail "the image came back different"
pass "32 MiB image round trip is byte for byte"

# Small writes at odd offsets into stored blocks (read-modify-write
# through O_DIRECT), each checked by reads of it and of its neighbours.
$PYTHON - "$(uri)" "$tmp/in.img" <<'EOF' || fail "unaligned writes"
import os, random, sys, nbd
uri, img = sys.argv[1:]
h = nbd.NBD(); h.connect_uri(uri)
model = bytearray(open(img, "rb").read())
rng = random.Random(7)
for i in range(300):
    n = rng.choice([4096, 4096, 1, 511, 513, 5000, 70000])
    off = rng.randrange(0, len(model) - n)
    if i % 3 == 0:
        off = off // 4096 * 4096 + rng.choice([1, 511, 512, 3071])
    data = os.urandom(n) if i % 2 else bytes([i % 251]) * n
    h.pwrite(data, off)
    model[off:off + n] = data
    a, b = max(0, off - 6000), min(len(model), off + n + 6000)
    assert h.pread(b - a, a) == model[a:b], "write %d of %d at %d reads back wrong" % (i, n, off)
got = bytearray()
for off in range(0, len(model), 4 * 2**20):
    got += h.pread(4 * 2**20, off)
assert got == model, "the whole region differs from the model"
h.flush()
open(img, "wb").write(model)
print("300 unaligned writes verified")
EOF
pass "unaligned partial writes read back"

# Random reads, writes, trims and zeroes against a model (which starts
# with zeroes).
nbdsh -u "$(uri)" -c 'h.trim(h.get_size(), 0)' || fail "trim the disk"
$PYTHON "$top_srcdir/tests/random-io.py" "$(uri)" $((256 << 20)) 65536 10 11 >"$tmp/rio.out" 2>&1 ||
  { cat "$tmp/rio.out"; fail "random-io.py against a model"; }
pass "random I/O against a model: $(tail -1 "$tmp/rio.out")"
stop_nbdkit

# Trim most of 192 MiB of unique data: the recycler compacts the file.
start_nbdkit store=$st direct-io=true gc-delay=1 compact-after=10 secure-erase=true
$PYTHON - "$(uri)" "$st" <<'EOF' || fail "shrink"
import os, sys, time, nbd
uri, st = sys.argv[1:]
M = 2**20
h = nbd.NBD(); h.connect_uri(uri)
h.trim(256 * M, 0)
keep = {}
for i in range(192):
    b = os.urandom(M)
    h.pwrite(b, i * M)
    if i % 4 == 0:
        keep[i] = b
h.flush()
big = os.stat(st + "/data").st_size
for i in range(192):
    if i % 4:
        h.trim(M, i * M)
h.flush()
t0 = time.monotonic()
while os.stat(st + "/data").st_size > 0.4 * big:
    if time.monotonic() - t0 > 60:
        raise SystemExit("after 60 s the data file is %d of %d bytes" % (
            os.stat(st + "/data").st_size, big))
    time.sleep(0.5)
print("data file %d MiB -> %d MiB in %.1f s" % (
    big // M, os.stat(st + "/data").st_size // M, time.monotonic() - t0))
time.sleep(2)             # let the moves settle, then read what was kept
for i, b in keep.items():
    assert h.pread(M, i * M) == b, "MiB %d lost after compaction" % i
for i in range(192):
    if i % 4:
        assert h.pread(M, i * M) == bytes(M), "trimmed MiB %d is not zero" % i
print("kept data intact, trimmed data zero")
EOF
pass "trim and the recycler's shrink, with the data path on O_DIRECT"
stop_nbdkit
check_store "$st"

# Read-only: the same data through an O_RDONLY | O_DIRECT descriptor.
env $(nbdkit_env) $NBDKIT -r -U - "$PLUGIN" store="$st" readonly=true direct-io=true \
  --run "nbdsh -u \"\$uri\" -c 'assert h.pread(4096, 0) != bytes(4096)'" >"$tmp/ro.log" 2>&1 ||
  { cat "$tmp/ro.log"; fail "a read-only server with direct-io=true"; }
pass "read-only with direct-io"

# casdisk import --direct-io writes a store the same way.
"$CASDISK" import "$st" imported "$tmp/in.img" --direct-io >"$tmp/import.out" 2>&1 ||
  { cat "$tmp/import.out"; fail "casdisk import --direct-io"; }
"$CASDISK" export "$st" imported "$tmp/exported.img" >/dev/null || fail "casdisk export"
cmp "$tmp/in.img" "$tmp/exported.img" || fail "import --direct-io, export: the image differs"
check_store "$st"
pass "casdisk import --direct-io round trip"

# cache=SIZE without direct-io is refused.
env $(nbdkit_env) $NBDKIT -U - "$PLUGIN" store="$st" cache=8M --run true >"$tmp/c.log" 2>&1 &&
  fail "cache=8M without direct-io=true was accepted"
grep -q "cache=SIZE needs direct-io=true" "$tmp/c.log" || { cat "$tmp/c.log"; fail "cache message"; }

# tmpfs does not report a direct I/O alignment: refused with the numbers.
if [ -d /dev/shm ] && [ "$(stat -f -c %T /dev/shm)" = tmpfs ]; then
  shm=$(mktemp -d /dev/shm/casdisk-test.XXXXXX)
  env $(nbdkit_env) $NBDKIT -U - "$PLUGIN" store="$shm/st" size=1M direct-io=true \
    --run true >"$tmp/shm.log" 2>&1
  rc=$?
  rm -rf "$shm"
  [ $rc -ne 0 ] || fail "direct-io=true on tmpfs was accepted"
  grep -q "4096 bytes, more than the data file's 512-byte granule" "$tmp/shm.log" ||
    { cat "$tmp/shm.log"; fail "the refusal on tmpfs does not name the numbers"; }
  pass "tmpfs refused: $(grep -o 'direct-io:.*' "$tmp/shm.log" | head -1)"
fi
