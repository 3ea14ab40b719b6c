"""The udev rules: what they give, and their installer's refusal of world-writable modes;
on the vm rig, the rules applied by udevadm to the real driver's devices."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from uascall.sim.analog_farend import analog_loop_conf

UDEV = Path(__file__).resolve().parents[2] / "udev"
RULES = UDEV / "61-uascall-dahdi.rules"


def rules() -> list[str]:
    return [line.strip() for line in RULES.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_every_dahdi_device_is_for_group_dahdi_and_never_world_writable():
    lines = rules()
    for subsystem in ("dahdi", "dahdi_channels"):
        assert f'SUBSYSTEM=="{subsystem}", GROUP="dahdi", MODE="0660"' in lines
    modes = [int(m, 8) for m in re.findall(r'MODE="([0-7]+)"', RULES.read_text())]
    assert modes and not any(mode & 0o002 for mode in modes)
    # /dev/dahdi/N names the per-channel node by its minor number, the channel number
    assert 'SUBSYSTEM=="dahdi_channels", SYMLINK+="dahdi/%m"' in lines
    assert RULES.name > "60-dahdi.rules"  # applied after Debian's own rules


def test_install_into_a_root_and_refuse_a_world_writable_mode(tmp_path):
    root = tmp_path / "root"
    done = subprocess.run(["bash", str(UDEV / "install.sh")], env={"DESTDIR": str(root),
                          "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    installed = root / "etc/udev/rules.d" / RULES.name
    assert installed.read_text() == RULES.read_text()
    assert installed.stat().st_mode & 0o777 == 0o644
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "install.sh").write_text((UDEV / "install.sh").read_text())
    (bad / RULES.name).write_text(RULES.read_text().replace("0660", "0666"))
    refused = subprocess.run(["bash", str(bad / "install.sh")],
                             env={"DESTDIR": str(tmp_path / "other"),
                                  "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
                             capture_output=True, text=True)
    assert refused.returncode == 1
    assert "mode 0666: /dev/dahdi would be world-writable" in refused.stderr
    assert not (tmp_path / "other").exists()


GID = 990  # the dahdi group the test gives the guest (its /etc/group is the host's)
NOBODY = 65534
OPEN_CHANNEL_1 = """
import sys
from uascall.dahdi.device import Channel
from uascall.errors import DeviceError
try:
    Channel.open(1).close()
    Channel.open(1, dev_dir=sys.argv[1]).close()
except DeviceError as exc:
    print(exc.errno, exc)
else:
    print("opened")
"""


OTHER_RULES = ("/usr/lib/udev/rules.d", "/lib/udev/rules.d", "/etc/udev/rules.d")


@contextlib.contextmanager
def guest_with_only_our_rules():
    """The guest's /etc/group with a dahdi group, our rules where udevd reads them, and
    nobody else's (Debian's dahdi package has rules of its own that also make links).
    Mounts in the guest only: the host's files are read-only to it."""
    mounted = []
    try:
        group = Path("/run/tmp/group")
        group.write_text(Path("/etc/group").read_text() + f"dahdi:x:{GID}:\n")
        subprocess.run(["mount", "--bind", str(group), "/etc/group"], check=True)
        mounted.append("/etc/group")
        for folder in OTHER_RULES:
            if os.path.isdir(folder) and not os.path.islink(folder):
                subprocess.run(["mount", "-t", "tmpfs", "none", folder], check=True)
                mounted.append(folder)
        ours = Path("/run/udev/rules.d")
        ours.mkdir(parents=True, exist_ok=True)
        shutil.copy(RULES, ours / RULES.name)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            (Path("/run/udev/rules.d") / RULES.name).unlink()
        for path in reversed(mounted):
            subprocess.run(["umount", path], check=True)


def open_as(uid: int, groups: list[int]) -> str:
    """Channel.open(1), both ways, in a process of that user: "opened" or the error."""
    def become() -> None:
        os.setgroups(groups)
        os.setgid(groups[0] if groups else NOBODY)
        os.setuid(uid)

    result = subprocess.run([sys.executable, "-c", OPEN_CHANNEL_1, "/dev/dahdi"],
                            capture_output=True, text=True, preexec_fn=become, timeout=60,
                            cwd=Path(__file__).resolve().parents[2])
    return (result.stdout + result.stderr).strip()


@pytest.mark.vm_only
def test_the_rules_give_the_real_devices_to_group_dahdi_and_make_the_numbered_names(rig):
    udevadm = os.environ["UASCALL_UDEVADM"]
    with rig.engine() as engine, guest_with_only_our_rules():
        rig.kernel(engine, analog_loop_conf(4))
        with contextlib.suppress(FileNotFoundError):
            os.unlink("/dev/dahdi/1")  # from an earlier run of udevadm in this guest
        devices = ["/dev/dahdi/ctl", "/dev/dahdi/channel", "/dev/dahdi/chan/001/001"]
        for device in devices:
            rdev = os.stat(device).st_rdev
            syspath = os.path.realpath(f"/sys/dev/char/{os.major(rdev)}:{os.minor(rdev)}")
            subprocess.run([udevadm, "test", "--action=add", syspath], check=True,
                           capture_output=True, timeout=60)
        for device in devices:
            info = os.stat(device)
            assert (info.st_gid, stat.S_IMODE(info.st_mode)) == (GID, 0o660), device
        assert os.path.realpath("/dev/dahdi/1") == "/dev/dahdi/chan/001/001"
        # an ordinary user in the group opens channel 1 by number and by its name; one
        # outside it is told what to do
        assert open_as(NOBODY, [GID]) == "opened"
        refused = open_as(NOBODY, [])
        assert refused.startswith("13 ") and "udev/install.sh" in refused
