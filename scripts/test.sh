#!/bin/bash
# Install what is needed, build with warnings as errors, and run the whole
# test suite twice, both out of tree: a normal build in build/, then a
# build with AddressSanitizer and UndefinedBehaviorSanitizer in build-san/.
# Prints "N passed, N failed" over both runs at the end; exits non-zero if
# anything failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
top=$PWD
bash scripts/install-deps.sh --test || exit 1
export PATH=/usr/bin:$PATH     # the tests need Debian's python3 (it has the nbd module)

if [ -f config.status ]; then
  # Automake refuses out-of-tree builds of a source tree configured in place.
  echo "test: this source tree was configured in place (an in-tree build);" >&2
  echo "test: run 'make distclean' here first, or use a fresh clone" >&2
  exit 1
fi
autoreconf -fi || exit 1
pass=0 fail=0 rc=0

run_suite () {   # DIR LABEL CONFIGURE-ARGS...
  local dir=$1 label=$2; shift 2
  mkdir -p "$dir"
  echo "== $label: configure and build in ${dir#"$top"/}"
  ( cd "$dir" && "$top/configure" --enable-werror "$@" >configure.out 2>&1 ) ||
    { tail -40 "$dir/configure.out"; echo "$label: configure FAILED"; fail=$((fail + 1)); return 1; }
  make -C "$dir" -j"$(nproc)" >"$dir/build.out" 2>&1 ||
    { grep -E 'error|warning' "$dir/build.out" | head -40; tail -20 "$dir/build.out"
      echo "$label: build FAILED"; fail=$((fail + 1)); return 1; }
  echo "== $label: make check"
  make -C "$dir" -j2 check 2>&1 | tee "$dir/check.out" | grep -E '^(PASS|FAIL|ERROR|SKIP|XFAIL|XPASS):'
  local status=${PIPESTATUS[0]} p f
  p=$(grep -cE '^(PASS|XFAIL):' "$dir/check.out")
  f=$(grep -cE '^(FAIL|ERROR|XPASS):' "$dir/check.out")
  pass=$((pass + p)); fail=$((fail + f))
  if [ "$status" -ne 0 ] || [ "$f" -ne 0 ]; then
    [ "$f" -ne 0 ] || fail=$((fail + 1))     # make check failed outside a test
    if [ -f "$dir/test-suite.log" ]; then
      echo "---- $label: test-suite.log"
      head -n 2000 "$dir/test-suite.log"
    else
      tail -40 "$dir/check.out"
    fi
    echo "$label: FAILED"
    return 1
  fi
  echo "$label: all tests passed"
}

run_suite "$top/build" "default build" || rc=1
run_suite "$top/build-san" "sanitizer build" --enable-sanitizers || rc=1

echo "$pass passed, $fail failed"
exit $rc
