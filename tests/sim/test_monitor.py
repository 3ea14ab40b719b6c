"""`uascall monitor` in a real pseudo-terminal of 80x24 (pexpect), its screen read back
as a terminal would draw it (pyte): a sim `uascall run`'s call ringing, then answered,
then gone; q or Ctrl-C ends it with status 0."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pexpect
import pyte
import pytest

from tests.sim.test_channels import APP  # the same call: ringing, answered, gone
from uascall.cli import main

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
#: the first call's row: the application "rings", a run of its host, call 1
FIRST_CALL = re.compile(r"rings-[a-z2-7]{6}-1 ")



class Terminal:
    """The monitor in a pseudo-terminal, and the screen it draws."""

    def __init__(self, *args: str) -> None:
        self.screen = pyte.Screen(80, 24)
        self.stream = pyte.ByteStream(self.screen)
        self.child = pexpect.spawn(PYTHON, ["-m", "uascall", "monitor", *args], cwd=str(ROOT),
                                   dimensions=(24, 80), env={**os.environ,
                                                             "TERM": "xterm-256color",
                                                             "PYTHONPATH": str(ROOT)})

    def read(self, seconds: float = 0.2) -> None:
        try:
            self.stream.feed(self.child.read_nonblocking(65536, timeout=seconds))
        except pexpect.TIMEOUT:
            pass

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def wait_for(self, predicate, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read()
            if predicate(self.text()):
                return self.text()
        raise AssertionError(f"the screen never showed it; it shows:\n{self.text()}")

    def ends_with_status(self, key: str) -> int:
        self.child.send(key)
        self.child.expect(pexpect.EOF, timeout=10)
        self.child.close()
        return self.child.exitstatus


@pytest.fixture
def control():
    folder = Path(tempfile.mkdtemp(prefix="uascall-monitor-"))
    yield folder / "control.sock"
    shutil.rmtree(folder, ignore_errors=True)


def call_row(screen: str) -> str | None:
    rows = [line for line in screen.splitlines() if FIRST_CALL.match(line)]
    return rows[0] if rows else None


def test_the_screen_shows_a_call_ringing_answered_and_gone(control, tmp_path):
    app = tmp_path / "rings.py"
    app.write_text(textwrap.dedent(APP))
    terminal = Terminal("--control", str(control), "--interval", "0.2")
    first = terminal.wait_for(lambda text: "waiting" in text)
    assert "no uascall serves" in first and str(control)[:40] in first.replace("\n", "")
    # a second call 8 s after the first keeps uascall running once the first is gone
    run = subprocess.Popen([PYTHON, "-m", "uascall", "run", str(app), "--calls", "2",
                            "--interval", "8", "--control", str(control), "--levels"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        ringing = terminal.wait_for(lambda text: "ring_incoming" in (call_row(text) or ""))
        # answered, and the caller's level measured: the screens before the first
        # measurement show the row with the level blank (the far end's number then
        # follows the duration), so the In column is looked for as what it is, in dBm0
        answered = terminal.wait_for(lambda text: re.search(
            r" answered +\d+:\d\d +-\d+ ", call_row(text) or "") is not None)
        gone = terminal.wait_for(lambda text: "By cause: NORMAL 1" in text
                                 and call_row(text) is None)
        assert terminal.ends_with_status("q") == 0
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        terminal.child.close(force=True)
    assert run.returncode == 0, err
    for screen in (ringing, answered, gone):
        assert "uascall run (pid" in screen.splitlines()[0]
        [span] = [line for line in screen.splitlines() if line.startswith("1 ")]
        assert span.split() == ["1", "sim", "E1", "alaw", "euroisdn_e1", "up", "OK"]
        assert "engine lag" in screen and "503s 0" in screen
        assert max(len(line.rstrip()) for line in screen.splitlines()) <= 80
    ring_row = call_row(ringing).split()
    assert ring_row[1:3] == ["1", "ring_incoming"] and ring_row[-1] == "5552000"
    answer_row = call_row(answered)
    assert answer_row.split()[1:3] == ["1", "answered"]
    # what the exchange's caller sends is measured (silence from the simulator: low)
    assert int(answer_row.split()[4]) < -40
    assert "Calls up 0, ended 1" in gone


def test_keys_heard_show_on_the_call(control, tmp_path):
    app = tmp_path / "rings.py"
    app.write_text(textwrap.dedent(APP))
    terminal = Terminal("--control", str(control), "--interval", "0.2")
    run = subprocess.Popen([PYTHON, "-m", "uascall", "run", str(app), "--calls", "1",
                            "--control", str(control), "--caller",
                            "wait 0.3; press 4; press 2; wait 3"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        screen = terminal.wait_for(lambda text: " 42 " in (call_row(text) or ""))
        assert "answered" in call_row(screen)
        assert terminal.ends_with_status("\x03") == 0  # Ctrl-C
        run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        terminal.child.close(force=True)


def test_once_without_a_uascall(tmp_path, capsys):
    assert main(["monitor", "--once", "--control", str(tmp_path / "none.sock")]) == 1
    assert "no uascall serves" in capsys.readouterr().out
