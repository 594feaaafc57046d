#!/bin/bash
# fio's nbd engine: random writes with crc32c verification at iodepth 16,
# two jobs on two connections at once, then a verify pass after a restart.
. "${top_builddir:-.}/tests/functions.sh"
requires fio
fio --enghelp 2>/dev/null | grep -qw nbd || { echo "SKIP: fio has no nbd engine"; exit 77; }

st=$tmp/store
start_nbdkit store=$st size=128M block-size=4K gc-delay=0
fio_job () {   # RW VERIFY_ONLY
  fio --name=casdisk --ioengine=nbd --uri="$(uri)" --rw="$1" --bs=4k,64k \
      --iodepth=16 --numjobs=2 --size=32M --offset_increment=48M \
      --verify=crc32c --verify_fatal=1 --do_verify=1 ${2:+--verify_only} \
      --refill_buffers --randseed=1234 --verify_state_save=0 --group_reporting --output="$tmp/fio.out"
}
fio_job randwrite || { cat "$tmp/fio.out"; fail "fio randwrite + verify"; }
grep -E "WRITE:|READ:" "$tmp/fio.out" | sed 's/^ */fio /'
pass "fio randwrite verified, two connections, iodepth 16"
stop_nbdkit
start_nbdkit store=$st
fio_job randwrite 1 || { cat "$tmp/fio.out"; fail "fio verify after restart"; }
pass "fio data verified after a restart"
stop_nbdkit
check_store "$st"
