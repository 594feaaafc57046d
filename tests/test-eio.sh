#!/bin/bash
# I/O errors from the backing storage (injected with CASDISK_FAULT) reach
# the client as errors, never as wrong data, and corrupt nothing: after
# each run the store checks clean and holds the writes it acknowledged.
# A failed sync of the data file stops the store (writes and flushes fail
# until a restart; see lib/meta/journal.c): then what survives is the last
# successful flush plus any later acknowledged writes, block by block.
# Reads and writes of the data file fail the same way with direct-io=true.
. "${top_builddir:-.}/tests/functions.sh"
requires_python_nbd

st=$tmp/store
model=$tmp/model
run () {   # PHASE MODE: random I/O against the model kept in $model
  $PYTHON - "$(uri)" "$model" "$1" "$2" <<'EOF2'
import os, pickle, random, sys, nbd
uri, path, phase, mode = sys.argv[1:]
h = nbd.NBD(); h.connect_uri(uri)
bs, n = 4096, 1024
if os.path.exists(path):
    model, allowed = pickle.load(open(path, "rb"))
else:
    model, allowed = [bytes(bs)] * n, [{bytes(bs)} for _ in range(n)]
def read_retry(i):          # past injected read errors
    for _ in range(20):
        try:
            return bytes(h.pread(bs, i * bs))
        except nbd.Error:
            pass
    raise SystemExit("block %d: 20 read errors in a row" % i)
# First, what survived the previous run must be allowed; adopt it.
for i in range(n):
    got = read_retry(i)
    if mode == "strict":
        assert got == model[i], "block %d lost an acknowledged write" % i
    else:
        assert got in allowed[i], "block %d holds data never written there" % i
    model[i], allowed[i] = got, {got}
rng = random.Random(phase)
errors = {"read": 0, "write": 0, "flush": 0}
ok = {"read": 0, "write": 0, "flush": 0}
for _ in range(1500):
    i = rng.randrange(n)
    r = rng.random()
    op = "write" if r < 0.5 else "flush" if r < 0.55 else "read"
    try:
        if op == "write":
            data = rng.randbytes(bs) if rng.random() < 0.7 else bytes([i % 251]) * bs
            allowed[i].add(data)            # may survive even if the write fails
            h.pwrite(data, i * bs)
            model[i] = data                 # acknowledged
        elif op == "flush":
            h.flush()
            allowed = [{m} for m in model]  # durable now
        else:
            assert bytes(h.pread(bs, i * bs)) == model[i], "block %d: wrong data" % i
        ok[op] += 1
    except nbd.Error as e:
        errors[op] += 1
        if op == "write":                   # old or new content: adopt what is there
            model[i] = read_retry(i)
for _ in range(5):
    try:
        h.flush(); allowed = [{m} for m in model]; break
    except nbd.Error:
        errors["flush"] += 1
pickle.dump((model, allowed), open(path, "wb"))
print("%s: ok %s, injected errors seen %s" % (phase, ok, errors))
EOF2
}

start_nbdkit store=$st size=4M block-size=4K
run baseline strict || fail "baseline run"
stop_nbdkit

for fault in read:data:7 write:data:5 write:journal:4 sync:journal:3 sync:data:3; do
  mode=strict
  [ "$fault" = sync:data:3 ] && mode=after-failure
  CASDISK_FAULT=$fault start_nbdkit store=$st
  run "$fault" strict >"$tmp/run.out" 2>&1 || { cat "$tmp/run.out"; fail "with CASDISK_FAULT=$fault"; }
  cat "$tmp/run.out"
  grep -q "injected errors seen {'read': 0, 'write': 0, 'flush': 0}" "$tmp/run.out" &&
    fail "CASDISK_FAULT=$fault injected nothing"
  stop_nbdkit
  if [ $mode != strict ]; then
    # The store stopped writing: open it once so that it recovers.
    start_nbdkit store=$st; stop_nbdkit
    grep -q "stopped after an I/O error" "$tmp/nbdkit.log" || fail "no message about the failed store"
  fi
  check_store "$st"
  start_nbdkit store=$st
  run "verify after $fault" $mode >"$tmp/run.out" 2>&1 || { cat "$tmp/run.out"; fail "data after $fault"; }
  stop_nbdkit
  pass "CASDISK_FAULT=$fault: errors reached the client, acknowledged data intact ($mode), store clean"
done

# The same faults on the direct-I/O path (lib/storage/dio.c injects them per
# transfer), where the file system can do direct I/O.
if env $(nbdkit_env) $NBDKIT -U - "$PLUGIN" store="$st" direct-io=true --run true \
     >"$tmp/dio-probe.log" 2>&1; then
  for fault in read:data:7 write:data:5; do
    CASDISK_FAULT=$fault start_nbdkit store=$st direct-io=true
    run "direct-io $fault" strict >"$tmp/run.out" 2>&1 ||
      { cat "$tmp/run.out"; fail "direct-io with CASDISK_FAULT=$fault"; }
    cat "$tmp/run.out"
    grep -q "injected errors seen {'read': 0, 'write': 0, 'flush': 0}" "$tmp/run.out" &&
      fail "direct-io: CASDISK_FAULT=$fault injected nothing"
    stop_nbdkit
    check_store "$st"
    start_nbdkit store=$st direct-io=true
    run "verify after direct-io $fault" strict >"$tmp/run.out" 2>&1 ||
      { cat "$tmp/run.out"; fail "data after direct-io $fault"; }
    stop_nbdkit
    pass "direct-io, CASDISK_FAULT=$fault: errors reached the client, acknowledged data intact"
  done
else
  echo "note: direct-io is not possible here, its fault runs skipped: $(head -1 "$tmp/dio-probe.log")"
fi
