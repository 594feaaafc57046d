#!/bin/bash
# A full file system: writes fail with ENOSPC cleanly, nothing flushed is
# lost, the store stays consistent, and after trims and the delayed GC free
# space, writes succeed again.  Runs the store on a 48 MiB tmpfs (needs
# root to mount; skipped otherwise).
. "${top_builddir:-.}/tests/functions.sh"
requires_python_nbd
mnt=$tmp/mnt
mkdir -p "$mnt"
mount -t tmpfs -o size=48m tmpfs "$mnt" 2>/dev/null || { echo "SKIP: cannot mount a tmpfs (not root?)"; exit 77; }
umount_it () { stop_nbdkit 2>/dev/null; umount "$mnt" 2>/dev/null; cleanup; }
trap umount_it EXIT

st=$mnt/store
start_nbdkit store=$st size=256M gc-delay=1
$PYTHON - "$(uri)" <<'EOF2' || fail "full file system"
import errno, os, sys, time, nbd
h = nbd.NBD(); h.connect_uri(sys.argv[1])
M = 2**20
flushed = 0
written = {}
# Fill with incompressible data until the file system is full.
for i in range(200):
    data = os.urandom(M)
    try:
        h.pwrite(data, i * M)
        h.flush()
    except nbd.Error as e:
        assert "ENOSPC" in str(e), "expected ENOSPC, got %s" % e
        print("ENOSPC after %d MiB flushed" % flushed)
        break
    written[i] = data
    flushed += 1
else:
    raise SystemExit("never ran out of space")
assert flushed >= 20, "only %d MiB fitted on a 48 MiB file system" % flushed
# Everything flushed reads back.
for i, data in written.items():
    assert h.pread(M, i * M) == data, "MiB %d lost" % i
print("all %d flushed MiB read back" % flushed)
# Free half of it; the GC (gc-delay=1) gives the space back.
for i in range(0, flushed, 2):
    h.trim(M, i * M)
    del written[i]
h.flush()
# Writes succeed again once the space is back (bounded wait).
deadline = time.monotonic() + 30
n = 0
while n < flushed // 4 and time.monotonic() < deadline:
    data = os.urandom(M)
    try:
        h.pwrite(data, (1 + 2 * n) * M - M)     # the trimmed slots
        h.flush()
        written[2 * n] = data
        n += 1
    except nbd.Error as e:
        assert "ENOSPC" in str(e), e
        time.sleep(1)
assert n >= flushed // 4, "only %d MiB could be rewritten after freeing" % n
for i, data in written.items():
    assert h.pread(M, i * M) == data, "MiB %d lost after the rewrite" % i
print("rewrote %d MiB into freed space; everything reads back" % n)
EOF2
stop_nbdkit
check_store "$st"
pass "ENOSPC is clean, nothing flushed is lost, space comes back"
