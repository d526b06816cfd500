#!/usr/bin/env bash
# The whole test suite, as CI runs it: a warnings-as-errors release build (the shipped static
# binary), a second build under AddressSanitizer + UndefinedBehaviorSanitizer, and the
# distributed tests under ThreadSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

echo "== release build + tests =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DEDGEBAND_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
file build/edgeband | grep -q "statically linked" || { echo "edgeband is not static"; exit 1; }
ctest --test-dir build --output-on-failure

echo "== ASan + UBSan build + tests =="
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDGEBAND_WERROR=ON \
  -DEDGEBAND_SANITIZE=address,undefined >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure
echo "== ThreadSanitizer build + distributed tests =="
# libgomp is not instrumented: one OpenMP thread keeps TSan's reports about our own threads.
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDGEBAND_WERROR=ON \
  -DEDGEBAND_SANITIZE=thread >/dev/null
cmake --build build-tsan -j"$jobs"
OMP_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
  ctest --test-dir build-tsan --output-on-failure -R '^dist$'
echo "== all tests passed =="
