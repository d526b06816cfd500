#!/usr/bin/env bash
# Extracts Debian's arm64 libsodium (libsodium.a and its headers) into DIR, a sysroot folder of
# the aarch64 build tree, without installing any arm64 package: `apt-get install
# libsodium-dev:arm64` would pull libc6:arm64 into /lib/aarch64-linux-gnu, and qemu-aarch64 would
# then load it for the test binaries (they hang). Needs root (dpkg --add-architecture, apt-get
# update) the first time; does nothing when DIR already holds the library.
#   cmake/fetch-arm64-sysroot.sh build-aarch64/sysroot
set -euo pipefail
dir=${1:?usage: fetch-arm64-sysroot.sh DIR}
[ -f "$dir/usr/lib/aarch64-linux-gnu/libsodium.a" ] && exit 0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# libsodium-dev holds the static library and the headers; libsodium.a needs only libc, which
# the cross toolchain brings (libsodium23 is the shared library, not needed for a static link).
(cd "$work" && apt-get download -qq libsodium-dev:arm64 2>/dev/null ||
  { $SUDO apt-get update -qq && apt-get download -qq libsodium-dev:arm64; })
mkdir -p "$dir"
dpkg-deb -x "$work"/libsodium-dev_*_arm64.deb "$dir"
echo "arm64 libsodium extracted into $dir"
