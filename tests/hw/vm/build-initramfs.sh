#!/usr/bin/env bash
# Assemble the guest's boot files: the Debian kernel and an initramfs with busybox-static,
# the virtio/9p modules (to reach the host's root) and the DAHDI modules.
#
#   build-initramfs.sh OUT PKGS MODULES
#
# PKGS is a fetch.sh directory, MODULES a build-modules.sh one. Writes OUT/kernel and
# OUT/initramfs.cpio.gz. The guest's /init is ./init, beside this script.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
pkgs=$(cd "$2" && pwd)
mods=$(cd "$3" && pwd)
kver=$(cat "$pkgs/KVER")
root=$pkgs/root

tree=$out/tree
rm -rf "$tree"
mkdir -p "$tree"/{bin,dev,proc,sys,modules,newroot}
cp "$root/bin/busybox" "$tree/bin/busybox"
# The kernel execs /init with no shell around: it needs an interpreter that exists in the
# initramfs, hence init's "#!/bin/busybox sh" and this /bin/sh for anything else.
ln -s busybox "$tree/bin/sh"
install -m 0755 "$here/init" "$tree/init"

# Debian modules in load order. modprobe only reads the unpacked tree here (-d); "builtin"
# lines are parts of vmlinuz and need nothing.
: >"$tree/modules.list"
for wanted in virtio_pci 9pnet_virtio 9p; do
  modprobe -d "$root" -S "$kver" --show-depends "$wanted"
done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' | while read -r ko; do
  name=$(basename "$ko")
  name=${name%%.ko*}
  # Copied as they are: stripping would drop Debian's module signatures.
  cp "$ko" "$tree/modules/$name.ko"
  echo "$name" >>"$tree/modules.list"
done

# DAHDI last, in dependency order. auto_assign_spans=1: Debian builds dahdi with 0, which
# leaves dynamic spans unassigned, and dahdi_cfg then fails with "DAHDI_CHANCONFIG failed
# on channel 1: Invalid argument".
for name in dahdi dahdi_dynamic dahdi_dynamic_loc; do
  cp "$mods/$name.ko" "$tree/modules/$name.ko"
  if [ "$name" = dahdi ]; then echo "$name auto_assign_spans=1"; else echo "$name"; fi
done >>"$tree/modules.list"

# The kernel, uncompressed when it can be: under TCG the bzImage's own decompressor takes
# about 3 s of every boot, while qemu starts an ELF vmlinux at once through its PVH entry
# point (Xen note 0x12, which Debian's kernel has). Otherwise the bzImage, as it is.
bzimage=$root/boot/vmlinuz-$kver
offset=$(LC_ALL=C grep -aboP '\xFD7zXZ\x00' "$bzimage" | head -n1 | cut -d: -f1)
notes=
if [ -n "$offset" ] &&
  # (xz stops at the end of its stream: tail's SIGPIPE is expected)
  { tail -c "+$((offset + 1))" "$bzimage" || true; } |
  xz -dc --single-stream >"$out/kernel" 2>/dev/null; then
  notes=$(readelf -n "$out/kernel" 2>/dev/null || true)
fi
if grep -Eq 'Xen.*(0x00000012|PHYS32)' <<<"$notes"; then
  echo "build-initramfs: kernel: vmlinux from the bzImage (PVH entry)"
else
  echo "build-initramfs: kernel: bzImage (no xz payload or no PVH entry found)"
  cp "$bzimage" "$out/kernel"
fi
# Fixed timestamps and order: the same inputs give the same image.
find "$tree" -exec touch -h -d @0 {} +
(cd "$tree" && find . -print0 | LC_ALL=C sort -z | cpio -o -0 -H newc -R 0:0 --quiet | gzip -1 -n) \
  >"$out/initramfs.cpio.gz"
echo "build-initramfs: modules $(tr '\n' ' ' <"$tree/modules.list")"
echo "build-initramfs: $(du -k "$out/initramfs.cpio.gz" | cut -f1) KiB initramfs, kernel $kver"
rm -rf "$tree"
