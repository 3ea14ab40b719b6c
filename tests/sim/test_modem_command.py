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


def test_uascall_run_serves_the_early_media_example_on_an_emulated_modem(tmp_path):
    link = tmp_path / "ttyMODEM"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    emulator = subprocess.Popen(
        [sys.executable, "-m", "uascall.modem.emulator", "--link", str(link), "--calls",
         "1", "--hold", "30"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    host = None
    try:
        pty_path = emulator.stdout.readline().strip()
        assert pty_path.startswith("/dev/pts/"), emulator.stderr.read()
        host = subprocess.Popen(
            [sys.executable, "-m", "uascall", "run", "examples/early_media.py",
             "--backend", "modem", "--modem", str(link), "--control",
             str(tmp_path / "control.sock")],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        report = ""
        while time.monotonic() < deadline and not report:
            line = emulator.stdout.readline()
            if line.startswith("call 1:"):
                report = line
            elif not line and emulator.poll() is not None:
                break
        assert report, "the emulated modem's caller reported no answered call"
        # the caller heard the recorded message (goodbye.wav, 5.2 s of speech and its
        # pauses) and the application hung up, not the caller
        match = re.match(r"call 1: answered after ([\d.]+) s; heard ([\d.]+) s of sound "
                         r"in ([\d.]+) s; cleared by the modem", report)
        assert match, report
        assert float(match.group(2)) > 2.0
        assert 5.0 <= float(match.group(3)) < 7.0
    finally:
        if host is not None:
            host.send_signal(signal.SIGINT)
            out, err = host.communicate(timeout=30)
            assert host.returncode == 0, err
            assert "Traceback" not in err, err
            # the caller ID the modem read, the application's return code and the cause
            assert re.search(r"early_media-1: 5552000 -> .*return code 0, cause NORMAL",
                             out), out + err
        emulator.send_signal(signal.SIGINT)
        emulator.communicate(timeout=30)
