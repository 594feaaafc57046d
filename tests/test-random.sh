#!/bin/bash
# Random I/O through NBD against an in-memory model, at the smallest and
# the default block size, with the delayed GC running (gc-delay=0).
. "${top_builddir:-.}/tests/functions.sh"
requires_python_nbd

for bs in 4K 64K; do
  st=$tmp/store-$bs
  start_nbdkit store=$st size=8M block-size=$bs gc-delay=0
  bytes=$("$CASDISK" --version >/dev/null; echo $(( ${bs%K} * 1024 )))
  $PYTHON "$top_srcdir/tests/random-io.py" "$(uri)" $((8 << 20)) "$bytes" 20 42 ||
    fail "random I/O with block-size=$bs"
  stop_nbdkit
  check_store "$st"
done
