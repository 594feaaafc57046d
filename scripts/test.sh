#!/bin/bash
# Install what is needed, build with warnings as errors, and run the whole
# test suite twice: a normal build, then a build with AddressSanitizer and
# UndefinedBehaviorSanitizer.  Prints "N passed, N failed" at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD
bash scripts/install-deps.sh || exit 1
export PATH=/usr/bin:$PATH     # Debian's python3 has the nbd module

autoreconf -fi || exit 1
pass=0 fail=0 rc=0

run_suite () {   # DIR LABEL CONFIGURE-ARGS...
  local dir=$1 label=$2; shift 2
  mkdir -p "$dir"
  ( cd "$dir" && "$top/configure" --enable-werror "$@" >configure.out 2>&1 ) ||
    { cat "$dir/configure.out"; echo "$label: configure failed"; return 1; }
  make -C "$dir" -j"$(nproc)" >"$dir/build.out" 2>&1 ||
    { tail -50 "$dir/build.out"; echo "$label: build failed"; return 1; }
  echo "== $label: make check"
  make -C "$dir" -j2 check 2>&1 | tee "$dir/check.out" | grep -E '^(PASS|FAIL|ERROR|SKIP|XFAIL|XPASS):'
  local status=${PIPESTATUS[0]}
  local p f
  p=$(grep -cE '^(PASS|XFAIL):' "$dir/check.out")
  f=$(grep -cE '^(FAIL|ERROR|XPASS):' "$dir/check.out")
  pass=$((pass + p)); fail=$((fail + f))
  if [ "$status" -ne 0 ] || [ "$f" -ne 0 ]; then
    for log in $(grep -lE '^:test-result: (FAIL|ERROR)' $(find "$dir/tests" -name '*.trs') 2>/dev/null); do
      echo "---- ${log%.trs}.log"; tail -60 "${log%.trs}.log"
    done
    echo "$label: FAILED"
    return 1
  fi
  echo "$label: all tests passed"
}

# The source tree stays unconfigured: both builds are out of tree.
run_suite "$top/build" "default build" || rc=1
run_suite "$top/build-san" "sanitizer build" --enable-sanitizers || rc=1

echo "$pass passed, $fail failed"
exit $rc
