"""The udev rules: what they give, and their installer's refusal of world-writable modes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

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
