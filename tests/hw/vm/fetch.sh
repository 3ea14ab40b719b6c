#!/usr/bin/env bash
# Download Debian packages and unpack them with dpkg -x into DEST/root: nothing is installed
# on this machine (no dpkg database change, nothing in /boot, /lib/modules or /usr/src).
#
#   fetch.sh DEST KVER PACKAGE...
#
# KVER is the kernel ABI (6.1.0-56-amd64); the packages must include linux-image-KVER and
# its headers. The .debs are deleted once unpacked: the caller keys DEST on their SHA256.
set -euo pipefail
dest=$1 kver=$2
shift 2
mkdir -p "$dest/debs" "$dest/root"
root=$(cd "$dest/root" && pwd)

cd "$dest/debs"
# As root, apt would drop privileges to _apt, which cannot write here; downloading as root
# is what we want (and what the harmless "unsandboxed" warning is about).
apt-get -q -o APT::Sandbox::User=root download "$@"
for deb in *.deb; do
  echo "unpacking $deb"
  dpkg -x "$deb" "$root"
done
sha256sum -- *.deb >"$dest/debs.sha256"   # provenance: what was unpacked
cd "$dest"
rm -rf "$dest/debs"

# The arch headers' Makefile includes the -common headers by their absolute /usr/src path;
# point it at the unpacked copy so that kbuild never reads the host's /usr/src. Relative
# (make runs in the arch directory), so that the tree may be renamed. Their scripts/ and
# tools/ links are relative already.
headers=$root/usr/src/linux-headers-$kver
common=linux-headers-${kver%-*}-common
[ -f "$root/usr/src/$common/Makefile" ] ||
  { echo "fetch: no $common/Makefile in the unpacked headers" >&2; exit 1; }
echo "include ../$common/Makefile" >"$headers/Makefile"

# modules.dep of the unpacked kernel, for `modprobe -d ROOT --show-depends` later. depmod -b
# only writes under ROOT; nothing is loaded.
depmod -b "$root" "$kver"
echo "$kver" >"$dest/KVER"
echo "fetch: $# packages unpacked into $root"
