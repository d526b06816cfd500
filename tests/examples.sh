#!/usr/bin/env bash
# Installs a build of edgeband into a temporary prefix, builds apps/examples against it as a
# separate project (find_package(edgeband)) and runs both examples: `classify` on a photo, and
# `halp_host` as the host of HALP over two `edgeband worker` processes on 127.0.0.1 (which
# exits 1 unless the distributed output equals the local one bit for bit).
#   bash tests/examples.sh BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S apps/examples -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror" >/dev/null
cmake --build "$work/build" -j"$(nproc 2>/dev/null || echo 2)"

# A photo: one of ../shared's when present, else a generated 64x64 grey BMP (the image reader
# takes JPEG, PNG and BMP; a PPM here failed every clone made away from ../shared): a 54-byte
# header (24 bits per pixel, bottom-up rows of 192 bytes), then the pixels.
photo=../shared/images/grace_hopper.bmp
if [ ! -f "$photo" ]; then
  photo=$work/photo.bmp
  { printf 'BM\x36\x30\0\0\0\0\0\0\x36\0\0\0'
    printf '\x28\0\0\0\x40\0\0\0\x40\0\0\0\x01\0\x18\0\0\0\0\0\0\x30\0\0'
    printf '\x13\x0b\0\0\x13\x0b\0\0\0\0\0\0\0\0\0\0'
    head -c 12288 /dev/zero | tr '\0' '\177'; } >"$photo"
fi
"$work/build/classify" "$photo" mobilenet_v1:0.25:128

# Two workers on ports the kernel picks; each prints its port once it listens.
addrs=""
for i in 1 2; do
  OMP_NUM_THREADS=1 "$work/prefix/bin/edgeband" worker --listen 127.0.0.1:0 --threads 1 \
    2>"$work/w$i.log" &
  pids+=($!)
  for _ in $(seq 100); do grep -q "listening on port" "$work/w$i.log" && break; sleep 0.1; done
  port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$work/w$i.log")
  [ -n "$port" ] || { echo "worker $i did not start:"; cat "$work/w$i.log"; exit 1; }
  addrs+=" 127.0.0.1:$port"
done
# VGG-16 at 32x32: a HALP plan that uses all three devices on any machine.
# shellcheck disable=SC2086
OMP_NUM_THREADS=1 "$work/build/halp_host" "$photo" vgg16:32 $addrs | tee "$work/host.log"
grep -q "on 3 devices" "$work/host.log" || { echo "the HALP plan did not use both workers"; exit 1; }
echo "examples: both ran against the installed package"
