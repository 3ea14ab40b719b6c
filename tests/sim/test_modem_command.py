"""``uascall run APP --backend modem --modem DEV`` against ``python -m
uascall.modem.emulator`` (an emulated CX93001 on a pty, rung by a simulated exchange with
caller ID): both as the processes a user starts, the application unchanged."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Processes:
    """The emulator (a caller rings its modem once) and ``uascall run APP`` on it."""

    def __init__(self, tmp_path: Path, app: str, *emulator_args: str,
                 media_dir: Path | None = None) -> None:
        self.link = tmp_path / "ttyMODEM"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.emulator = subprocess.Popen(
            [sys.executable, "-m", "uascall.modem.emulator", "--link", str(self.link),
             "--calls", "1", "--delay", "5", *emulator_args], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.host: subprocess.Popen | None = None
        pty_path = self.emulator.stdout.readline().strip()
        assert pty_path.startswith("/dev/pts/"), self.emulator.stderr.read()
        self.host = subprocess.Popen(
            [sys.executable, "-m", "uascall", "-v", "run", app, "--backend", "modem",
             "--modem", str(self.link), "--control", str(tmp_path / "control.sock"),
             *(["--media-dir", str(media_dir)] if media_dir else [])],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def report(self, within: float) -> str:
        """The emulator's line for its call, once the call is over."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            line = self.emulator.stdout.readline()
            if line.startswith("call 1:"):
                return line
            if not line and self.emulator.poll() is not None:
                break
        raise AssertionError("the emulated modem's caller reported no answered call")

    def stop(self) -> tuple[str, str]:
        """Ctrl-C to both; the host's output (it must end cleanly)."""
        out = err = ""
        if self.host is not None:
            self.host.send_signal(signal.SIGINT)
            out, err = self.host.communicate(timeout=30)
        self.emulator.send_signal(signal.SIGINT)
        self.emulator.communicate(timeout=30)
        assert self.host is not None and self.host.returncode == 0, err
        assert "Traceback" not in err, err
        return out, err


def test_uascall_run_serves_the_early_media_example_on_an_emulated_modem(tmp_path):
    processes = Processes(tmp_path, "examples/early_media.py", "--hold", "30")
    try:
        report = processes.report(60)
        # the caller heard the recorded message (goodbye.wav, 5.2 s of speech and its
        # pauses) and the application hung up, not the caller
        match = re.match(r"call 1: answered after ([\d.]+) s; heard ([\d.]+) s of sound "
                         r"in ([\d.]+) s; cleared by the modem", report)
        assert match, report
        assert float(match.group(2)) > 2.0
        assert 4.5 <= float(match.group(3)) < 8.0  # the line up for the 5.2 s message
    finally:
        out, err = processes.stop()
    # the caller ID the modem read, the application's return code and the cause
    assert re.search(r"early_media-[a-z2-7]{6}-1: 5552000 -> .*return code 0, cause NORMAL", out), \
        out + err


def test_uascall_run_serves_the_ivr_example_its_caller_pressing_keys_and_speaking(
        tmp_path):
    # the caller does what the example's own __uas_sim_caller__ says: menu 2, PIN
    # 1234#, a spoken message, then it waits for the playback and the goodbye
    (tmp_path / "recordings").mkdir()
    processes = Processes(tmp_path, "examples/ivr.py", "--hold", "60", "--script",
                          "examples/ivr.py", media_dir=tmp_path)
    try:
        report = processes.report(90)
        assert "cleared by the modem" in report, report  # the application hung up
    finally:
        out, err = processes.stop()
    assert "menu: '2'" in err, err
    assert "PIN: '1234'" in err, err
    assert re.search(r"message recordings/message-\S+\.wav: SILENCE", err), err
    assert re.search(r"ivr-[a-z2-7]{6}-1: .*5552000 -> .*return code 0, cause NORMAL", out), out
