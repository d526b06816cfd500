#!/usr/bin/env bash
# The whole test suite, as CI runs it:
#   1. the static aarch64 (Raspberry Pi 4) cross build, its tests under qemu-user;
#   2. the README's release build (the shipped static binary) and its tests, including a
#      distributed run with an aarch64 worker under qemu beside x86-64 devices; then that build
#      installed into a temporary prefix and apps/examples built against it with
#      find_package(edgeband) and run (a photo classified; HALP over two local workers); then the
#      same binary across network namespaces over kernel-shaped links (tests/testbed_netns.sh);
#   3. the suite again under AddressSanitizer + UndefinedBehaviorSanitizer, then a soak of an
#      authenticated, encrypting worker (hosts, rude hosts, garbage clients; LeakSanitizer at its exit);
#   4. the distributed tests under ThreadSanitizer;
#   5. a short libFuzzer smoke run of every decoder and of the worker handshake (clang, ASan+UBSan).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
[ -d ../shared ] || echo "note: ../shared is missing: real-weights tests will report SKIPPED"
# Each stage prints its own wall time, so a slow stage is visible in the CI log.
t0=$SECONDS; tstage=-1
stage() {
  [ "$tstage" -lt 0 ] || echo "   (stage took $((SECONDS - tstage)) s, total $((SECONDS - t0)) s)"
  tstage=$SECONDS
  echo "== $1 =="
}

stage "aarch64 cross build + tests under qemu"
# Debian's arm64 libsodium.a, extracted (not installed) into the build tree.
bash cmake/fetch-arm64-sysroot.sh build-aarch64/sysroot
cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-rpi4.cmake -DEDGEBAND_WERROR=ON >/dev/null
cmake --build build-aarch64 -j"$jobs"
file build-aarch64/edgeband | grep -q "ARM aarch64.*statically linked" || { echo "aarch64 edgeband is not a static aarch64 binary"; exit 1; }
ctest --test-dir build-aarch64 --output-on-failure -j"$jobs"

stage "release build + tests"
# The README's build as it is, so it is not compiled twice; the foreign worker is a test's
# environment variable. Its warnings are not errors here: the aarch64 build (the same Release
# flags) and the sanitized ones (x86 kernels at -O2) build every source with -Werror.
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release \
  -DEDGEBAND_FOREIGN_WORKER="qemu-aarch64-static -cpu cortex-a72 $PWD/build-aarch64/edgeband" >/dev/null
cmake --build build -j"$jobs"
file build/edgeband | grep -q "statically linked" || { echo "edgeband is not static"; exit 1; }
ctest --test-dir build --output-on-failure -j"$jobs"

stage "installed package: find_package(edgeband), both examples built and run"
bash tests/examples.sh build

stage "testbed: separate processes in network namespaces, kernel-shaped links (tbf)"
# Needs root and network namespaces (CI's machines have both); elsewhere it says why not.
if [ "$(id -u)" -eq 0 ] && command -v ip >/dev/null && command -v tc >/dev/null &&
  ip netns add "ebprobe$$" 2>/dev/null; then
  ip netns del "ebprobe$$"
  # VGG-16 at 64x64 on emulated Pi-class devices (--dilate 4: about what `--board pi4`
  # calibrates on this VM), a heterogeneous LAN: one board 2x slower (--dilate 8), one link at
  # 50 Mbit/s. -c checks that --link measure finds each worker's tbf rate, that the output
  # equals local, and that the slow board and the slow link get no more rows than the others.
  bash tests/testbed_netns.sh -b build/edgeband -m vgg16:64 -n 4 -r 100mbit,100mbit,50mbit \
    -d 4,4,8,4 -k 1 -c -- --runs 2
else
  echo "testbed not run: it needs root, iproute2 (ip, tc) and network namespaces"
fi

stage "ASan + UBSan build + tests"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDGEBAND_WERROR=ON \
  -DEDGEBAND_SANITIZE=address,undefined >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs"

stage "soak: an authenticated worker under load, rude hosts and garbage clients (LeakSanitizer)"
# A small quarantine: ASan's default keeps up to 256 MiB of freed memory, which would read as
# RSS growth in the soak's flat-memory check.
ASAN_OPTIONS=detect_leaks=1:quarantine_size_mb=8 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ./build-asan/tests/edgeband_soak --seconds "${EDGEBAND_SOAK_SECONDS:-40}"

stage "ThreadSanitizer build + distributed tests"
# libgomp is not instrumented: one OpenMP thread keeps TSan's reports about our own threads.
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDGEBAND_WERROR=ON \
  -DEDGEBAND_SANITIZE=thread >/dev/null
cmake --build build-tsan -j"$jobs" --target edgeband edgeband_tests
# memory_limit_mb: TSan keeps the shadow of memory freed and reused, and the loopback tests
# (model after model) grew to 19 GB; past the limit it resets the shadow (2.6 GB, no slower).
OMP_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:memory_limit_mb=3000 \
  ctest --test-dir build-tsan --output-on-failure -j"$jobs" -R '^dist'

stage "libFuzzer smoke run"
bash tests/fuzz/run.sh "${EDGEBAND_FUZZ_SECONDS:-10}"
stage "all tests passed"
