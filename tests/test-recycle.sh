#!/bin/bash
# The recycler gives the space back online.  (1) Write 1 GiB of unique
# data, trim 60% of it: within 60 s the data file's allocated bytes and
# apparent size both fall to within 10% of the live data, while fio writes
# and verifies another region of the same disk.  (2) Ten cycles of write,
# trim and rewrite: no creeping growth.  (3) Offline casdisk compact.
. "${top_builddir:-.}/tests/functions.sh"
requires_python_nbd fio
fio --enghelp 2>/dev/null | grep -qw nbd || { echo "SKIP: fio has no nbd engine"; exit 77; }

st=$tmp/store
start_nbdkit store=$st size=2G gc-delay=2 compact-after=10
$PYTHON - "$(uri)" "$st" "$tmp" <<'EOF2' || fail "shrink under load"
import os, subprocess, sys, time, nbd
uri, st, tmp = sys.argv[1:]
M = 2**20
h = nbd.NBD(); h.connect_uri(uri)
keep = {}
for i in range(1024):                      # 1 GiB of unique data
    b = os.urandom(M)
    h.pwrite(b, i * M)
    if i % 5 == 0:
        keep[i] = b
h.flush()
def usage():
    d = os.stat(st + "/data")
    meta = sum(os.stat(os.path.join(st, f)).st_size for f in os.listdir(st) if f != "data")
    return d.st_blocks * 512, d.st_size, meta
a, p, meta = usage()
print("written: allocated %d MiB, apparent %d MiB" % (a // M, p // M))
# fio writes and verifies 128 MiB at 1.5 GiB meanwhile.
fio = subprocess.Popen(["fio", "--name=verify", "--ioengine=nbd", "--uri=" + uri,
                        "--rw=randwrite", "--bs=64k", "--iodepth=8", "--size=128M",
                        "--offset=1536M", "--verify=crc32c", "--verify_fatal=1",
                        "--do_verify=1", "--refill_buffers", "--loops=3",
                        "--verify_state_save=0", "--output=" + tmp + "/fio.out"])
t0 = time.monotonic()
for i in range(1024):                      # trim 60%
    if i % 5 in (1, 2, 3):
        h.trim(M, i * M)
h.flush()
live = 410 * M + 128 * M                   # what is left, plus fio's region
while True:
    a, p, meta = usage()
    if a <= 1.1 * (live + meta) and p <= 1.1 * (live + meta):
        break
    if time.monotonic() - t0 > 60:
        raise SystemExit("after 60 s: allocated %d MiB, apparent %d MiB, live %d MiB"
                         % (a // M, p // M, live // M))
    time.sleep(1)
print("shrunk in %.0f s: allocated %d MiB, apparent %d MiB, live %d MiB + %d KiB metadata"
      % (time.monotonic() - t0, a // M, p // M, live // M, meta // 1024))
if fio.wait(timeout=300) != 0:
    raise SystemExit("fio verify failed: " + open(tmp + "/fio.out").read())
print("fio verified its region throughout")
for i, b in keep.items():
    if i % 5 not in (1, 2, 3):
        assert h.pread(M, i * M) == b, "MiB %d lost" % i
print("the kept data reads back")

# Ten cycles of write 128 MiB / trim it / rewrite.
h.trim(1024 * M, 0)
h.flush()
for cycle in range(10):
    for i in range(128):
        h.pwrite(os.urandom(M), i * M)
    h.trim(128 * M, 0)
    for i in range(64):
        h.pwrite(os.urandom(M), i * M)
    h.flush()
live = 64 * M + 128 * M                   # the rewrite, plus fio's region
t0 = time.monotonic()
while True:
    a, p, meta = usage()
    if a <= 1.1 * (live + meta) and p <= 1.1 * (live + meta):
        break
    if time.monotonic() - t0 > 60:
        raise SystemExit("after ten cycles: allocated %d MiB, apparent %d MiB, live %d MiB"
                         % (a // M, p // M, live // M))
    time.sleep(1)
print("after ten cycles: allocated %d MiB, apparent %d MiB for %d MiB live"
      % (a // M, p // M, live // M))
EOF2
stop_nbdkit
check_store "$st"

# Offline: casdisk compact on a store left with holes, stopped before the
# delayed GC or the recycler could run: compact frees the dead blocks too.
st2=$tmp/store2
start_nbdkit store=$st2 size=512M gc-delay=600 compact-after=100
$PYTHON - "$(uri)" <<'EOF2' || fail "writes"
import os, sys, time, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
for i in range(128):
    h.pwrite(os.urandom(2**20), i * 2**20)
h.flush()
for i in range(0, 128, 2):
    h.trim(2**20, i * 2**20)
h.flush()
EOF2
stop_nbdkit
before=$(stat -c %s "$st2/data")
"$CASDISK" compact "$st2" || fail "casdisk compact"
after=$(stat -c %s "$st2/data")
echo "offline compact: apparent $before -> $after bytes"
[ "$after" -le $((64 * 1024 * 1024 * 11 / 10)) ] || fail "compact left $after bytes for 64 MiB live"
check_store "$st2"
pass "the recycler shrinks the store online and offline"
