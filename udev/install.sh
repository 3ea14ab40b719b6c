#!/usr/bin/env bash
# Install uascall's udev rules for /dev/dahdi: group "dahdi", mode 0660.
#
#   sudo bash udev/install.sh [USER...]     # also adds each USER to the group
#
# DESTDIR=/some/root installs into another root (packaging, tests) without touching the
# running system: no group is made, no user added, udev is not reloaded.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rules=61-uascall-dahdi.rules
dest=${DESTDIR:-}

if [ -z "$dest" ] && [ "$(id -u)" -ne 0 ]; then
  echo "udev/install.sh: run as root (sudo bash udev/install.sh $*)" >&2
  exit 1
fi
# A rule that lets everyone at the telephony hardware is never what we ship.
for mode in $(grep -o 'MODE="[0-7]*"' "$here/$rules" | tr -dc '0-7\n'); do
  if (( 8#$mode & 8#002 )); then
    echo "udev/install.sh: $rules gives mode $mode: /dev/dahdi would be world-writable;" \
         "refusing" >&2
    exit 1
  fi
done
install -D -m 0644 "$here/$rules" "$dest/etc/udev/rules.d/$rules"
echo "installed $dest/etc/udev/rules.d/$rules"
[ -n "$dest" ] && exit 0

getent group dahdi >/dev/null || groupadd --system dahdi
for user in "$@"; do
  usermod -a -G dahdi "$user"
  echo "added $user to group dahdi (it takes effect at their next login)"
done
if command -v udevadm >/dev/null && [ -d /run/udev ]; then
  udevadm control --reload
  udevadm trigger --action=add --subsystem-match=dahdi --subsystem-match=dahdi_channels
  echo "udev reloaded; /dev/dahdi now belongs to group dahdi"
fi
