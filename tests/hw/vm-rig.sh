#!/usr/bin/env bash
# The vm rig: run a command against the real DAHDI kernel driver in a qemu guest.
#
#   tests/hw/vm-rig.sh [options] [-- command args...]
#
# Boots Debian 12's kernel under qemu (TCG), loads DAHDI 2.11 built from Debian's dahdi-dkms
# (dahdi, dahdi_dynamic, dahdi_dynamic_loc), and runs the command as root in the guest,
# chrooted into this machine's root (read-only), from the repository root. Everything it
# downloads or builds goes to a cache outside the checkout; nothing is installed into, or
# loaded into, this machine's kernel, /boot, /lib/modules or /usr/src. Only the host tools
# (qemu, cpio, kmod, a compiler) are installed with apt when missing. tests/hw/README.md has
# the details and the environment the command gets.
#
# Default command: .venv/bin/python -m pytest -p no:cacheprovider -q --rig vm tests
#
# Exit status: the command's; 124 if it ran out of time (--timeout); 125 if the rig itself
# failed (the message names the step and its log).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: tests/hw/vm-rig.sh [options] [-- command args...]

Runs the command (default: .venv/bin/python -m pytest -p no:cacheprovider -q --rig vm tests)
in a qemu guest with the real DAHDI driver loaded, from the repository root.

options:
  --cache DIR           cache directory (default: $UASCALL_VM_CACHE, else
                        ${XDG_CACHE_HOME:-~/.cache}/uascall/vm)
  --fresh               wipe the cache first (download and build everything again)
  --timeout SECONDS     stop the guest if the command runs longer (default 900)
  --boot-timeout SECS   give up if the guest has not started the command by then (default 120)
  --jobs N              boot N guests at once, guest K running the command with
                        UASCALL_SHARD=K/N, so that pytest runs its K-th share of the tests
                        (default 1; for the default command, the number of cores, at
                        most 6 and as many as the free memory holds: more guests than
                        cores leave the guests' engines hundreds of ms late)
  --smp N               virtual CPUs per guest (default 1)
  --mem MIB             memory per guest (default 768)
  -e, --env NAME=VALUE  add a variable to the command's environment (repeatable)
  -h, --help            this text

exit status: the command's; 124 when it timed out; 125 when the rig failed.
EOF
}

TIMED_OUT=124
RIG_FAILED=125

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
vm=$here/vm
repo=$(cd "$here/../.." && pwd)

say() { printf 'vm-rig: %s\n' "$*" >&2; }
rig_fail() { say "FAILED: $*"; exit "$RIG_FAILED"; }
# Microseconds since the epoch, and seconds since such a stamp, without forking date or bc.
now() { local t=${EPOCHREALTIME/[.,]/}; printf '%s' "$t"; }
since() {
  local d=$(($(now) - $1))
  printf '%d.%d' $((d / 1000000)) $((d / 100000 % 10))
}

cache=${UASCALL_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/uascall/vm}
fresh=0 timeout=900 boot_timeout=120 mem=768 smp=1 jobs=
extra_env=()
# CI changes how pytest reports (no truncated assertion diffs): the guest sees what we see.
[ -z "${CI:-}" ] || extra_env+=("CI=$CI")
number() { [[ $2 =~ ^[1-9][0-9]*$ ]] || { say "$1 takes a positive integer, got '$2'"; exit "$RIG_FAILED"; }; }
while (($#)); do
  case $1 in
    --) shift; break ;;
    -h | --help) usage; exit 0 ;;
    --fresh) fresh=1; shift; continue ;;
  esac
  case $1 in
    --cache | --timeout | --boot-timeout | --jobs | --smp | --mem | -e | --env)
      (($# >= 2)) || { say "$1 needs a value (see --help)"; exit "$RIG_FAILED"; } ;;
    *) say "unknown option $1 (see --help)"; exit "$RIG_FAILED" ;;
  esac
  case $1 in
    --cache) cache=$2 ;;
    --timeout) number "$1" "$2"; timeout=$2 ;;
    --boot-timeout) number "$1" "$2"; boot_timeout=$2 ;;
    --jobs) number "$1" "$2"; jobs=$2 ;;
    --smp) number "$1" "$2"; smp=$2 ;;
    --mem) number "$1" "$2"; mem=$2 ;;
    -e | --env)
      [[ $2 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || { say "$1 takes NAME=VALUE, got '$2'"; exit "$RIG_FAILED"; }
      extra_env+=("$2") ;;
  esac
  shift 2
done
if (($#)); then
  command=("$@")
  jobs=${jobs:-1}
else
  command=(.venv/bin/python -m pytest -p no:cacheprovider -q --rig vm tests)
  # one guest per core, as far as the memory goes, and no more than 6 (the longest tests
  # would then decide the time anyway). Not more guests than cores: an emulated vCPU that
  # waits for a host core leaves its engine late by hundreds of milliseconds (three
  # guests on two cores: 374 ms), and a DAHDI channel's write buffers (80 ms) run dry
  if [ -z "$jobs" ]; then
    free_mib=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
    jobs=$(nproc)
    ((jobs <= free_mib / (mem + 256))) || jobs=$((free_mib / (mem + 256)))
    ((jobs <= 6)) || jobs=6
    ((jobs >= 1)) || jobs=1
  fi
fi

t_total=$(now)
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
# The cache path goes on the guest's kernel command line (spaces split it) and into qemu
# options (commas separate them).
[[ $cache =~ ^[A-Za-z0-9_./+@:-]+$ ]] ||
  rig_fail "the cache path '$cache' has characters qemu or the kernel command line cannot take; use --cache"

# ---------------------------------------------------------------------------- cache lock
# Runs share the cache: a shared lock while an artefact is used, an exclusive one while one
# is built or removed. Artefacts are directories named after the hash of their inputs and
# renamed into place when complete, so a run never sees half of one.
exec 9>>"$cache/lock"
lock() { # lock -s|-x
  flock -n "$1" 9 && return
  say "waiting for another run's lock on $cache"
  flock "$1" 9
}
if ((fresh)); then
  lock -x
  say "--fresh: wiping $cache"
  find "$cache" -mindepth 1 -maxdepth 1 ! -name lock -exec rm -rf {} +
fi

run_id=$(date +%Y%m%d-%H%M%S)-$$
run=$cache/runs/$run_id
mkdir -p "$run"
ln -sfn "runs/$run_id" "$cache/last"
# Keep the logs of the last 10 runs.
find "$cache/runs" -mindepth 1 -maxdepth 1 -type d | sort | head -n -10 | xargs -r rm -rf
timings=$run/timings.txt
: >"$timings"
record() { printf '%-28s %s s\n' "$1" "$2" >>"$timings"; }

# ---------------------------------------------------------------------------- host tools
as_root=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null && as_root=(sudo)
fi
apt_updated=0
apt_update() {
  ((apt_updated)) && return 1
  apt_updated=1
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$run/apt.log" 2>&1 ||
    rig_fail "apt-get update failed; see $run/apt.log"
}

missing=()
want() { # want PACKAGE TEST...: PACKAGE is missing unless the test succeeds
  local pkg=$1
  shift
  "$@" >/dev/null 2>&1 || [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
}
want qemu-system-x86 command -v qemu-system-x86_64
want qemu-system-data test -e /usr/share/qemu/qboot.rom   # the fast firmware (~0.3 s less boot)
want cpio command -v cpio
want xz-utils command -v xz
want kmod command -v depmod modprobe modinfo
want gcc command -v gcc
want make command -v make
want binutils command -v strip
# kbuild's prebuilt helpers (objtool, modpost) from the unpacked linux-kbuild package link
# these libraries; apt would have pulled them in had we installed it.
want libelf1 test -e /usr/lib/x86_64-linux-gnu/libelf.so.1
want libssl3 test -e /usr/lib/x86_64-linux-gnu/libssl.so.3
t=$(now)
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ] && ((${#as_root[@]} == 0)); then
    rig_fail "host tools missing: run as root, or install: apt-get install ${missing[*]}"
  fi
  say "host tools: installing ${missing[*]}"
  install_tools() {
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$run/apt.log" 2>&1
  }
  install_tools || { apt_update && install_tools; } ||
    rig_fail "host tools: apt-get install ${missing[*]} failed; see $run/apt.log"
  record "host tools install" "$(since "$t")"
  say "host tools: installed in $(since "$t") s"
fi

# ---------------------------------------------------------------------------- inputs
# The kernel behind Debian's linux-image-amd64 and the packages to unpack, as the apt lists
# have them now. Their file names and SHA256 key the cache: new lists with a new kernel or
# DAHDI mean new artefacts, found without touching the network when nothing changed.
[ "$(dpkg --print-architecture)" = amd64 ] || rig_fail "the vm rig needs an amd64 Debian host"
hash_of() { sha256sum | cut -c1-16; }
file_hash() { sha256sum "$1" | cut -c1-16; }
packages_for() { # packages_for KVER
  packages=(
    "linux-image-$1" "linux-headers-$1" "linux-headers-${1%-*}-common"
    "linux-kbuild-${1%.*}"           # 6.1.0-56-amd64 -> linux-kbuild-6.1
    dahdi-dkms                       # the DAHDI kernel source
    dahdi libtonezone2.0             # dahdi_cfg and its one library
    udev                             # udevadm, to try udev/'s rules on the real sysfs
    busybox-static                   # the initramfs' userland
  )
}
# What apt would answer depends only on its lists, sources and preferences (and on what we
# ask): each apt call here costs 0.6 s, so the answer is kept under a hash of those.
apt_state() {
  {
    declare -f packages_for resolve
    stat -c '%n %s %Y' /var/lib/apt/lists/*Packages* /var/lib/apt/lists/*Release* 2>/dev/null
    cat /etc/apt/sources.list /etc/apt/sources.list.d/* /etc/apt/preferences \
      /etc/apt/preferences.d/* 2>/dev/null
  } | hash_of
}
resolve() {
  local memo
  memo=$cache/resolved-$(apt_state)
  if [ -s "$memo" ]; then
    { read -r kver && uris=$(cat); } <"$memo"
    packages_for "$kver"
    return 0
  fi
  kver=$(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null |
    grep -m1 -o 'linux-image-[0-9][^ ,]*' || true)
  kver=${kver#linux-image-}
  [ -n "$kver" ] || return 1
  packages_for "$kver"
  uris=$(apt-get download --print-uris "${packages[@]}" 2>>"$run/apt.log") || return 1
  rm -f "$cache"/resolved-*
  printf '%s\n%s\n' "$kver" "$uris" >"$memo.$$"
  mv "$memo.$$" "$memo"
}
set_keys() {
  # the package files (name_version_arch.deb SHA256:...) and the scripts that use them
  pkgs_inputs="$(awk '{ print $2, $4 }' <<<"$uris" | sort)
fetch.sh $(file_hash "$vm/fetch.sh")"
  pkgs_key=$(hash_of <<<"$pkgs_inputs")
  mods_inputs="pkgs $pkgs_key
build-modules.sh $(file_hash "$vm/build-modules.sh")
$(gcc --version | head -n1)"
  mods_key=$(hash_of <<<"$mods_inputs")
  boot_inputs="pkgs $pkgs_key
modules $mods_key
build-initramfs.sh $(file_hash "$vm/build-initramfs.sh")
init $(file_hash "$vm/init")"
  boot_key=$(hash_of <<<"$boot_inputs")
  pkgs_dir=$cache/pkgs-$pkgs_key mods_dir=$cache/modules-$mods_key boot_dir=$cache/boot-$boot_key
  dahdi_version=$(awk '$2 ~ /^dahdi-dkms_/ { split($2, f, "_"); sub("%3a", ":", f[2]); print f[2] }' <<<"$uris")
}
t=$(now)
resolve || { apt_update && resolve; } ||
  rig_fail "cannot resolve the packages (linux-image-amd64, dahdi-dkms...) from the apt lists; see $run/apt.log"
set_keys
record "resolve packages" "$(since "$t")"

# ---------------------------------------------------------------------------- artefacts
ready() { [ -f "$pkgs_dir/.complete" ] && [ -f "$mods_dir/.complete" ] && [ -f "$boot_dir/.complete" ]; }

# try_build KIND DIR INPUTS LABEL SCRIPT ARGS...: SCRIPT DIR.tmp ARGS... with its output in
# the run's KIND.log; then DIR.tmp becomes DIR and replaces every older KIND-* directory.
try_build() {
  local kind=$1 dir=$2 inputs=$3 label=$4 script=$5 old t
  shift 5
  t=$(now)
  rm -rf "$dir.tmp"
  "$script" "$dir.tmp" "$@" >"$run/$kind.log" 2>&1 || return 1
  cp "$run/$kind.log" "$dir.tmp/$kind.log"
  printf '%s\n' "$inputs" >"$dir.tmp/inputs.txt"
  touch "$dir.tmp/.complete"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
  for old in "$cache/$kind"-*; do
    [ "$old" = "$dir" ] || rm -rf "$old"
  done
  record "$label" "$(since "$t")"
  say "$label: done in $(since "$t") s"
}
build_failed() { # build_failed LABEL KIND
  say "$1 failed; the end of its log, $run/$2.log:"
  tail -n 20 "$run/$2.log" | sed 's/^/  | /' >&2
  rig_fail "$1 (log: $run/$2.log)"
}
build_missing() {
  if [ ! -f "$pkgs_dir/.complete" ]; then
    say "packages: downloading kernel $kver, dahdi-dkms $dahdi_version, dahdi, busybox-static"
    if ! try_build pkgs "$pkgs_dir" "$pkgs_inputs" "packages" "$vm/fetch.sh" "$kver" "${packages[@]}"; then
      # Lists older than the mirror name files it no longer has: refresh them once.
      if ! grep -q '404' "$run/pkgs.log" || ! apt_update || ! resolve; then
        build_failed "packages" pkgs
      fi
      set_keys
      say "packages: apt lists refreshed; now kernel $kver, dahdi-dkms $dahdi_version"
      [ -f "$pkgs_dir/.complete" ] ||
        try_build pkgs "$pkgs_dir" "$pkgs_inputs" "packages" "$vm/fetch.sh" "$kver" "${packages[@]}" ||
        build_failed "packages" pkgs
    fi
  fi
  if [ ! -f "$mods_dir/.complete" ]; then
    say "DAHDI modules: building against $kver"
    try_build modules "$mods_dir" "$mods_inputs" "DAHDI modules" "$vm/build-modules.sh" "$pkgs_dir" ||
      build_failed "DAHDI modules" modules
  fi
  if [ ! -f "$boot_dir/.complete" ]; then
    try_build boot "$boot_dir" "$boot_inputs" "initramfs" "$vm/build-initramfs.sh" "$pkgs_dir" "$mods_dir" ||
      build_failed "initramfs" boot
  fi
}

lock -s
for attempt in 1 2 3; do
  ready && break
  ((attempt < 3)) || rig_fail "other runs keep replacing the cached artefacts in $cache"
  lock -x
  build_missing
  lock -s   # not atomic: another run may get the exclusive lock in between, hence ready()
done
say "kernel $kver, dahdi-dkms $dahdi_version: ready (cache $cache)"

# ---------------------------------------------------------------------------- the guests
# Each guest has a directory of its own in the run directory, which it mounts writable at
# the same path: its runner script, the command, the environment it adds, and what it
# leaves (the exit status, dmesg, files the command writes to $UASCALL_VM_RUN).
declare -a qemu_pids=() started=() outcome=()
# shellcheck disable=SC2317  # run from the EXIT trap
stop_guests() {
  local pid alive
  for pid in "${qemu_pids[@]}"; do
    if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    alive=0
    for pid in "${qemu_pids[@]}"; do
      if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then alive=1; fi
    done
    ((alive)) || return 0
    sleep 0.5
  done
  for pid in "${qemu_pids[@]}"; do
    if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
}
trap stop_guests EXIT
trap 'say "interrupted; stopping the guests"; exit 130' INT TERM

boot_guest() { # boot_guest K: guest K of $jobs, in $run/guest-K
  local k=$1 dir=$run/guest-$1 output
  mkdir -p "$dir"
  cp "$vm/guest-run.sh" "$dir/guest-run.sh"
  printf '%s\0' "${command[@]}" >"$dir/argv"
  {
    printf 'repo=%q\n' "$repo"
    printf 'pkgroot=%q\n' "$pkgs_dir/root"
    printf 'env=('
    ((${#extra_env[@]} == 0)) || printf ' %q' "${extra_env[@]}"
    ((jobs == 1)) || printf ' %q' "UASCALL_SHARD=$k/$jobs"
    printf ' )\n'
  } >"$dir/guest.env"
  # One guest streams the command's output to our stdout; several write it to their logs,
  # shown one after the other when all are done.
  if ((jobs == 1)); then
    output="stdio,id=output,signal=on,logfile=$dir/command.log"
  else
    output="file,id=output,path=$dir/command.log"
  fi
  local qemu=(
    # -cpu max: the host venv's numpy wheels need x86-64-v2 (SSE4.2, POPCNT) at least,
    # which the default qemu64 model lacks ("Illegal instruction" in the guest)
    qemu-system-x86_64 -accel tcg -cpu max -m "$mem" -smp "$smp"
    -nodefaults -no-user-config -display none -monitor none -no-reboot
    -bios /usr/share/qemu/qboot.rom
    -kernel "$boot_dir/kernel" -initrd "$boot_dir/initramfs.cpio.gz"
    # mitigations=off: no speculation to defend against in an emulated CPU, and less work
    -append "console=ttyS0 loglevel=4 panic=-1 mitigations=off uascall.run=$dir"
    # ttyS0: the kernel's and init's messages, to a file
    -chardev "file,id=console,path=$dir/console.log" -serial chardev:console
    # ttyS1: the command's output
    -chardev "$output" -serial chardev:output
    -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
    -virtfs "local,path=$dir,mount_tag=rundir,security_model=none"
  )
  printf '%q ' "${qemu[@]}" >"$dir/qemu-command"
  if ((jobs == 1)); then
    "${qemu[@]}" </dev/null 2>"$dir/qemu.log" &
  else
    "${qemu[@]}" </dev/null >/dev/null 2>"$dir/qemu.log" &
  fi
  qemu_pids[k]=$!
  started[k]='' outcome[k]=''
}

marker() { { grep -a -m1 "^@@vm $2" "$run/guest-$1/console.log" 2>/dev/null || true; } | tr -d '\r'; }

if ((jobs == 1)); then
  say "booting the guest (TCG, $smp vCPU, $mem MiB); logs in $run/guest-1"
else
  say "booting $jobs guests (TCG, $smp vCPU, $mem MiB each), each running a share of the command (UASCALL_SHARD=K/$jobs); logs in $run/guest-K"
fi
t_boot=$(now)
for ((k = 1; k <= jobs; k++)); do boot_guest "$k"; done

# Watch them: each must start its command within --boot-timeout and end within --timeout.
while :; do
  running=0
  for ((k = 1; k <= jobs; k++)); do
    pid=${qemu_pids[k]}
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then continue; fi
    running=1
    if [ -z "${started[k]}" ]; then
      if [ -n "$(marker "$k" command-start)" ]; then
        started[k]=$(now)
        record "guest $k: boot to command" "$(since "$t_boot")"
        say "guest $k up in $(since "$t_boot") s; running: ${command[*]}"
      elif (($(now) - t_boot > boot_timeout * 1000000)); then
        outcome[k]=boot-timeout
        kill -TERM "$pid" 2>/dev/null || true
      fi
    elif (($(now) - started[k] > timeout * 1000000)); then
      outcome[k]=timeout
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  ((running)) || break
  sleep 0.2
done
for ((k = 1; k <= jobs; k++)); do
  wait "${qemu_pids[k]}" 2>/dev/null || true
  qemu_pids[k]=''
done
record "total" "$(since "$t_total")"

# What each guest came to: the command's status, or why there is none.
rc=0
for ((k = 1; k <= jobs; k++)); do
  dir=$run/guest-$k name="guest $k"
  ((jobs > 1)) || name="the guest"
  if ((jobs > 1)); then
    say "---------------- guest $k of $jobs (UASCALL_SHARD=$k/$jobs): $dir/command.log"
    cat "$dir/command.log" 2>/dev/null || true
  fi
  failure=$(marker "$k" fail)
  if [ -n "$failure" ]; then
    say "FAILED: $name: ${failure#@@vm fail } (console: $dir/console.log)"
    k_rc=$RIG_FAILED
  elif [ "${outcome[k]}" = timeout ]; then
    say "TIMEOUT: $name: the command ran longer than $timeout s (--timeout) and was stopped; output: $dir/command.log"
    k_rc=$TIMED_OUT
  elif [ "${outcome[k]}" = boot-timeout ]; then
    say "FAILED: $name did not start the command within $boot_timeout s (--boot-timeout); console: $dir/console.log, qemu: $dir/qemu.log"
    k_rc=$RIG_FAILED
  elif [ ! -s "$dir/rc" ]; then
    if [ -z "${started[k]}" ]; then
      say "FAILED: $name: qemu stopped before the command started; console: $dir/console.log, qemu: $dir/qemu.log"
    else
      say "FAILED: $name stopped without the command's exit status; console: $dir/console.log, output: $dir/command.log"
    fi
    k_rc=$RIG_FAILED
  else
    k_rc=$(cat "$dir/rc")
    say "$name: command exited $k_rc after $(since "${started[k]}") s"
  fi
  printf '%-28s %s\n' "guest $k: exit status" "$k_rc" >>"$timings"
  # The first failure decides; the rig's own failures over the command's.
  if ((rc == 0 || (k_rc >= TIMED_OUT && rc < TIMED_OUT))); then rc=$k_rc; fi
done
say "total $(since "$t_total") s; exit status $rc; logs in $run"
exit "$rc"
