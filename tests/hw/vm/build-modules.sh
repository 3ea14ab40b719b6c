#!/usr/bin/env bash
# Build the DAHDI kernel modules from Debian's dahdi-dkms source, out of tree, against the
# unpacked Debian kernel headers. Nothing is installed or loaded on this machine.
#
#   build-modules.sh OUT PKGS
#
# PKGS is a fetch.sh directory (PKGS/KVER, PKGS/root/usr/src/{dahdi-*,linux-headers-*});
# the .ko files land in OUT, the build tree in OUT/build (deleted on success).
set -euo pipefail
mkdir -p "$1"
out=$(cd "$1" && pwd)
pkgs=$(cd "$2" && pwd)
kver=$(cat "$pkgs/KVER")
headers=$pkgs/root/usr/src/linux-headers-$kver
src=$(find "$pkgs/root/usr/src" -maxdepth 1 -type d -name 'dahdi-*' | head -n1)
[ -n "$src" ] || { echo "build-modules: no dahdi-* source under $pkgs/root/usr/src" >&2; exit 1; }

# The modules the rig loads: the core (/dev/dahdi), the dynamic span framework, and its
# local loopback driver, which pairs two spans back to back inside the kernel. DAHDI's
# Kbuild builds every driver unless DAHDI_BUILD_ALL is empty; then CONFIG_<name>=m picks.
modules=(dahdi dahdi_dynamic dahdi_dynamic_loc)
configs=(CONFIG_DAHDI=m CONFIG_DAHDI_DYNAMIC=m CONFIG_DAHDI_DYNAMIC_LOC=m)

build=$out/build
rm -rf "$build"
cp -a "$src" "$build"   # a copy: the unpacked source stays pristine for the next build
echo "build-modules: $src against $headers ($(gcc --version | head -n1))"
make -C "$build" -s include/dahdi/version.h
make -C "$headers" M="$build/drivers/dahdi" -j"$(nproc)" \
  DAHDI_INCLUDE="$build/include" DAHDI_BUILD_ALL= "${configs[@]}" modules

for name in "${modules[@]}"; do
  ko=$build/drivers/dahdi/$name.ko
  [ -f "$ko" ] || { echo "build-modules: $name.ko was not built" >&2; exit 1; }
  magic=$(modinfo -F vermagic "$ko")
  case $magic in
    "$kver "*) ;;
    *) echo "build-modules: $name.ko has vermagic '$magic', expected $kver" >&2; exit 1 ;;
  esac
  # Ours are unsigned anyway; only the debug info goes (the initramfs stays small).
  strip --strip-debug -o "$out/$name.ko" "$ko"
  echo "build-modules: $name.ko ($magic)"
done
rm -rf "$build"
