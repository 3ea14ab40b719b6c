#!/usr/bin/env bash
# Runs inside the guest, chrooted into the host's root (read-only 9p), as root, with the
# DAHDI modules loaded: sets up the environment tests rely on (tests/hw/README.md, "Guest
# environment") and runs the command vm-rig.sh wrote into the run directory.
#
#   guest-run.sh RUN_DIR
#
# RUN_DIR/guest.env (shell variables: repo, pkgroot, env) and RUN_DIR/argv (the command,
# NUL-separated) come from the host. The command's stdout and stderr go to the second serial
# port, which the host streams to its terminal; its exit status goes to RUN_DIR/rc.
set -uo pipefail
run=$1
mark() { echo "@@vm $* (uptime $(cut -d' ' -f1 /proc/uptime) s)"; }
fail() { echo "@@vm fail $*"; exit 1; }

repo='' pkgroot='' env=()
# shellcheck source=/dev/null
. "$run/guest.env" || fail "guest-setup: cannot read $run/guest.env"
[[ -n $repo && -n $pkgroot ]] || fail "guest-setup: $run/guest.env lacks repo= or pkgroot="
mapfile -d '' argv <"$run/argv" || fail "guest-setup: cannot read $run/argv"
((${#argv[@]})) || fail "guest-setup: empty command"

# dahdi_cfg from the unpacked dahdi package, with its library path in the wrapper only: a
# test process with LD_LIBRARY_PATH set would load those libraries into everything it runs.
tools=/run/uascall-vm
mkdir -p "$tools"
lib=$pkgroot/usr/lib/x86_64-linux-gnu:$pkgroot/lib/x86_64-linux-gnu
printf '#!/bin/sh\nLD_LIBRARY_PATH=%q exec %q "$@"\n' "$lib" "$pkgroot/usr/sbin/dahdi_cfg" \
  >"$tools/dahdi_cfg"
chmod 0755 "$tools/dahdi_cfg"
# udevadm from the unpacked udev package (its libraries are the host's); the guest runs no
# udev daemon, but `udevadm test` applies rules to a device as udevd would.
printf '#!/bin/sh\nexec %q "$@"\n' "$pkgroot/bin/udevadm" >"$tools/udevadm"
chmod 0755 "$tools/udevadm"

# The command's output: the second serial port, without the tty's \n -> \r\n mapping (the
# host keeps a log of it) and without echo (keys typed on the host's terminal reach it).
out=/dev/ttyS1
stty -F "$out" -opost -echo || fail "guest-setup: stty on $out failed"

mkdir -p /run/tmp/uascall-cache
environment=(
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  HOME=/run/tmp TMPDIR=/run/tmp LANG=C.UTF-8 TERM=dumb
  PYTHONDONTWRITEBYTECODE=1
  UASCALL_RIG=vm
  UASCALL_CACHE=/run/tmp/uascall-cache
  UASCALL_DAHDI_CFG="$tools/dahdi_cfg"
  UASCALL_UDEVADM="$tools/udevadm"
  UASCALL_VM_RUN="$run"   # writable, and kept on the host: for files the command leaves
  "${env[@]}"
)
cd "$repo" || fail "guest-setup: cannot cd to $repo"
mark command-start
env -i "${environment[@]}" "${argv[@]}" </dev/null >"$out" 2>&1
rc=$?
mark "command-end $rc"
dmesg >"$run/dmesg.txt" 2>&1
echo "$rc" >"$run/rc"
