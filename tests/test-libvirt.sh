#!/bin/bash
# docs/libvirt.md and docs/libvirt-domain.xml:
#  - virt-xml-validate accepts the domain (and rejects it with a bad
#    discard= value, so that a pass means something);
#  - the <disk> shown in docs/libvirt.md is the domain's <disk>;
#  - what that disk asks of qemu works against casdisk: the NBD export
#    over a unix socket with cache=none (no O_DIRECT trouble on NBD) and
#    discard=unmap, through qemu-io (writes, flush, read back; a discard
#    that empties the store's logical bytes), and the -blockdev command
#    line of the page in qemu-system-x86_64, which must connect and stay
#    up (stopped before the guest runs, -S).
. "${top_builddir:-.}/tests/functions.sh"
requires virt-xml-validate qemu-io
domain=$top_srcdir/docs/libvirt-domain.xml
doc=$top_srcdir/docs/libvirt.md

virt-xml-validate "$domain" domain >"$tmp/validate.out" 2>&1 ||
  { cat "$tmp/validate.out"; fail "virt-xml-validate rejects docs/libvirt-domain.xml"; }
sed "s/discard='unmap'/discard='sometimes'/" "$domain" >"$tmp/bad.xml"
virt-xml-validate "$tmp/bad.xml" domain >"$tmp/validate-bad.out" 2>&1 &&
  fail "virt-xml-validate accepted discard='sometimes'"
pass "virt-xml-validate: the domain validates (a bad discard= does not)"

$PYTHON - "$doc" "$domain" <<'PY' || fail "docs/libvirt.md and docs/libvirt-domain.xml differ"
import re, sys
md, xml = (open(f).read() for f in sys.argv[1:3])
norm = lambda s: [l.strip() for l in s.strip().splitlines()]
shown = re.search(r"```xml\n(.*?)```", md, re.S).group(1)
disk = re.search(r"(<disk .*?</disk>)", xml, re.S).group(1)
assert norm(shown) == norm(disk), (norm(shown), norm(disk))
for want in ("protocol='nbd'", "transport='unix'", "discard='unmap'", "cache='none'", "type='raw'"):
    assert want in disk, want
PY
pass "docs/libvirt.md shows the domain's <disk> (nbd, unix socket, raw, cache=none, discard=unmap)"

# ---- what the disk asks of qemu ----
st=$tmp/store
start_nbdkit store="$st" size=64M
opts="driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=$sock,file.export=disk0"
qemu-io --image-opts -t none -d unmap "$opts" -c 'write -P 0xab 0 4M' -c flush -c 'read -P 0xab 0 4M' \
  >"$tmp/qemu-io.out" 2>&1 || { cat "$tmp/qemu-io.out"; fail "qemu-io -t none -d unmap: write, flush, read"; }
grep -q "Pattern verification failed" "$tmp/qemu-io.out" && fail "qemu-io read back other data"
logical () { "$CASDISK" status "$st" --json | $PYTHON -c 'import json,sys; print(json.load(sys.stdin)["store"]["logical_bytes"])'; }
for _ in $(seq 100); do "$CASDISK" status "$st" >/dev/null 2>&1 && break; sleep 0.1; done
[ "$(logical)" = $((4 << 20)) ] || fail "logical bytes $(logical) after a 4 MiB write"
qemu-io --image-opts -t none -d unmap "$opts" -c 'discard 0 4M' -c flush >"$tmp/qemu-io.out" 2>&1 ||
  { cat "$tmp/qemu-io.out"; fail "qemu-io discard"; }
[ "$(logical)" = 0 ] || fail "logical bytes $(logical) after discarding everything"
pass "qemu with cache=none, discard=unmap over the unix socket: written, read back, discarded (store empty)"

if command -v qemu-system-x86_64 >/dev/null 2>&1; then
  bd=$(sed -n 's/^ *-blockdev \(driver=nbd,[^ ]*\).*/\1/p' "$doc")
  raw=$(sed -n 's/^ *-blockdev \(driver=raw,[^ ]*\).*/\1/p' "$doc")
  [ -n "$bd" ] && [ -n "$raw" ] || fail "no -blockdev lines in docs/libvirt.md"
  bd=${bd//\/run\/casdisk\/vm1.sock/$sock}
  qemu-system-x86_64 -machine q35 -accel tcg -S -nodefaults -display none -monitor none -serial none \
    -blockdev "$bd" -blockdev "$raw" -device virtio-blk-pci,drive=vda >"$tmp/qemu.out" 2>&1 &
  qpid=$!
  sleep 3
  kill -0 "$qpid" 2>/dev/null || { cat "$tmp/qemu.out"; fail "qemu-system-x86_64 with the page's -blockdev exited"; }
  kill "$qpid"; wait "$qpid" 2>/dev/null
  pass "qemu-system-x86_64 with the page's -blockdev lines opened the export"
fi
stop_nbdkit
check_store "$st"
