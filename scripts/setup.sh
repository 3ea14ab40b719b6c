#!/usr/bin/env bash
# Set up everything uascall needs on Debian 12, then run the demo or the test suite.
#
#   bash scripts/setup.sh demo [uascall demo options]   # the main job: a simulated PRI call
#   bash scripts/setup.sh test [pytest options]         # lint and the whole test suite
#
# The test suite has two tiers: every test on the simulated kernel, then the dahdi
# scenarios again on the real DAHDI driver in qemu guests (tests/hw/vm-rig.sh; the first
# run downloads and builds into ~/.cache/uascall/vm; pytest options apply to the first
# tier only). UASCALL_VM_RIG=skip leaves the second tier out; on a machine that cannot run
# it (not amd64 Debian, or qemu missing with neither root nor sudo to install it) it is
# left out with a message saying why.
#
# Installs only what is missing: Debian packages (as root, or through sudo), a virtual
# environment in .venv with uascall installed in editable mode. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:-demo}
shift || true

# Debian packages the library and its tests use (the system python, not a pyenv one, so
# that the VM rig's guest, which chroots into this machine's root, finds the same files).
packages=(
  python3 python3-venv gcc libc6-dev     # the venv; the ABI tests compile C probes
  libpri1.4 libpri-dev                   # libpri for PRI; its header for the layout test
  dahdi-source                           # dahdi/user.h for the ABI test
  espeak-ng                              # text to speech for PlayableMedia(text_to_say=...)
)
if [ "$action" = test ]; then
  # the SIP interop tests' peers: SIPp, a packet capture, a softphone, and sox (the
  # softphone's silent microphone, the analysis of what it recorded)
  packages+=(sip-tester tshark baresip-core sox)
  # the SIP proxy in front (issue 15), and a headless browser for `uascall ladder --html`
  packages+=(kamailio chromium)
fi

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  as_root=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || {
      echo "setup: run this as root, or install sudo: Debian packages missing: ${missing[*]}" >&2
      exit 1
    }
    as_root=(sudo)
  fi
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv=.venv
stamp=$venv/.uascall-installed
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv"
  /usr/bin/python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing uascall and its test tools into $venv"
  # pip's warnings would bury the demo's output; they are shown when it fails
  pip_log=$venv/pip-install.log
  if ! { "$venv/bin/python" -m pip install -q --upgrade pip &&
         "$venv/bin/python" -m pip install -q -e '.[test]'; } >"$pip_log" 2>&1; then
    cat "$pip_log" >&2
    echo "setup: pip could not install uascall (log: $pip_log)" >&2
    exit 1
  fi
  touch "$stamp"
fi

case $action in
  demo)
    exec "$venv/bin/uascall" demo "$@"
    ;;
  test)
    "$venv/bin/ruff" check uascall tests bench
    # a worker per core (pytest-xdist), each test file on one worker: its fixtures,
    # servers and ports are its own
    workers=${UASCALL_TEST_WORKERS:-$(nproc)}
    echo "setup: tier 1: the test suite on the simulated kernel ($workers workers)"
    "$venv/bin/python" -m pytest -n "$workers" --dist loadfile "$@"
    why_not=
    if [ "${UASCALL_VM_RIG:-}" = skip ]; then
      why_not="UASCALL_VM_RIG=skip"
    elif [ "$(dpkg --print-architecture)" != amd64 ]; then
      why_not="the qemu guest runs Debian's amd64 kernel; this machine is $(dpkg --print-architecture)"
    elif [ "$(id -u)" != 0 ] && ! command -v qemu-system-x86_64 >/dev/null &&
      ! sudo -n true 2>/dev/null; then
      why_not="qemu is missing, and installing it needs root or password-less sudo"
    fi
    if [ -n "$why_not" ]; then
      echo "setup: tier 2 (the real DAHDI driver in qemu) NOT RUN: $why_not" >&2
      exit 0
    fi
    echo "setup: tier 2: the dahdi scenarios on the real DAHDI driver (tests/hw/vm-rig.sh)"
    exec bash tests/hw/vm-rig.sh
    ;;
  *)
    echo "usage: bash scripts/setup.sh demo|test [options]" >&2
    exit 2
    ;;
esac
