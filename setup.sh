#!/usr/bin/env bash
# Installs every Debian 12 package edgeband's build and test suite need (as root, or through sudo).
# Idempotent: packages already present are skipped, so a second run costs a second.
#   ./setup.sh            # then: cmake -S . -B build && cmake --build build -j
set -euo pipefail
cd "$(dirname "$0")"
export DEBIAN_FRONTEND=noninteractive
# build: compiler, CMake, the header-only libraries (xsimd, stb, asio, CLI11, nlohmann-json),
# libsodium; tests: doctest, the aarch64 cross compiler and qemu, clang (sanitizers, libFuzzer),
# iproute2 (the network-namespace testbed), file.
pkgs="cmake g++ make libxsimd-dev libstb-dev libasio-dev libcli11-dev nlohmann-json3-dev
  libsodium-dev doctest-dev file g++-aarch64-linux-gnu qemu-user-static clang libclang-rt-14-dev
  libomp-dev iproute2"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup.sh: run as root (installing:$missing)" >&2; exit 1; }
    SUDO="sudo"
  fi
  echo "setup.sh: installing$missing" >&2
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
echo "setup.sh: all packages present" >&2
