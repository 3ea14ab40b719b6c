"""The `uascall` command: the demo (the main job) and `run` on the simulator."""

from __future__ import annotations

import functools
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests import audio
from uascall import backend as backends
from uascall.cli import main
from uascall.media import wav
from uascall.sim.backend import SimBackend


@pytest.mark.parametrize("law, kind, bearer", [("alaw", "E1", "A-law"), ("ulaw", "T1", "mu-law")])
def test_demo_rings_with_early_media_and_records_what_the_caller_heard(capsys, tmp_path, law,
                                                                        kind, bearer):
    out_wav = tmp_path / "heard.wav"
    assert main(["demo", "--virtual", "--law", law, "--wav", str(out_wav), "--param", "1"]) == 0
    out = capsys.readouterr().out
    assert f"simulated {kind} span" in out
    sequence = ["SETUP", "CALL PROCEEDING", "ALERTING PI #8", "CONNECT B",
                "CONNECT ACKNOWLEDGE", "DISCONNECT cause 16", "RELEASE cause 16",
                "RELEASE COMPLETE cause 16"]
    lines = [line for line in out.splitlines() if "|" in line and "~" not in line]
    assert [next(s for s in sequence if s in line) for line in lines] == sequence
    assert bearer in lines[0]
    notes = [line.split("~")[1].strip() for line in out.splitlines() if "|" in line
             and "~" in line]
    assert notes == ["in band: PlayableMedia(text 'Thank you for calling. Please hold.')",
                     "in band: tone RINGBACK_EU", "on the call: PlayableMedia(file "
                     "'goodbye.wav')"]
    assert "return code 0, cause NORMAL (16)" in out
    recording = wav.read_wav(out_wav)
    assert recording.rate == 8000 and recording.encoding == law
    # greeting (speech), 1 s of looped 425 Hz ringback, then the goodbye message
    assert 5.0 < recording.duration < 12.0
    assert audio.component_level_dbm0(list(recording.samples), 425, law) > -40


def test_run_serves_several_calls_and_keeps_records(capsys, tmp_path):
    records = tmp_path / "calls.sqlite3"
    assert main(["run", "examples/early_media.py", "--virtual", "--calls", "2",
                 "--param", "0.5", "--records", str(records), "--wav-dir",
                 str(tmp_path / "heard")]) == 0
    out = capsys.readouterr().out
    assert out.count("return code 0, cause NORMAL (16)") == 2
    with sqlite3.connect(records) as db:
        rows = db.execute("SELECT return_code, caller, called, cause FROM calls").fetchall()
    assert rows == [(0, "5552000", "5551000", "NORMAL")] * 2
    assert sorted(p.name for p in (tmp_path / "heard").iterdir()) == ["call1.wav", "call2.wav"]


def test_run_reports_an_invalid_application(capsys, tmp_path):
    app = tmp_path / "broken.py"
    app.write_text("__uas_identify__ = 'common'\n")
    assert main(["run", str(app), "--backend", "sim"]) == 1
    assert "__uas_identify__ is 'common'; expected 'application'" in capsys.readouterr().err


def test_unknown_backend_lists_the_known_ones(capsys):
    assert main(["run", "examples/early_media.py", "--backend", "carrier-pigeon"]) == 1
    assert "unknown backend 'carrier-pigeon'; expected one of dahdi, modem, sim" in \
        capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("uascall ")


class ServedSim(SimBackend):
    """A simulated span served like boards (until Ctrl-C): once the D-channel is up the
    exchange places a call, and when our side has answered it, the process gets SIGINT."""

    calls: list = []

    def __init__(self, engine, **dahdi_options) -> None:
        super().__init__(engine)

    def command_line_far_end(self, args, command):
        return None  # not the exchange's --calls: served like boards, until Ctrl-C

    def start(self) -> None:
        super().start()
        threading.Thread(target=self._drive, daemon=True).start()

    def _drive(self) -> None:
        assert self.engine.wait_until(lambda: self.up, 5)
        call = self.engine.run(self.far_end.dial, "5551000")
        self.calls.append(call)
        assert self.engine.wait_until(lambda: call.call.state.name == "CONNECTED", 5)
        os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_hangs_up_the_calls_and_keeps_their_records(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(backends.BACKENDS, "served-sim", f"{__name__}:ServedSim")
    app = tmp_path / "waits.py"
    app.write_text('__uas_identify__ = "application"\n'
                   "def main(channel, application_instance_id, file_man, my_log, params):\n"
                   "    channel.answer()\n"
                   "    return 7 if channel.wait_for_idle() is channel.State.IDLE else 8\n")
    records = tmp_path / "calls.sqlite3"
    before = signal.getsignal(signal.SIGINT)
    assert main(["run", str(app), "--backend", "served-sim", "--records", str(records)]) == 0
    assert signal.getsignal(signal.SIGINT) is before
    out, err = capsys.readouterr()
    assert "stopping; hanging up the calls still up" in err
    assert "return code 7, cause NORMAL" in out
    far = ServedSim.calls[-1]
    assert far.cleared and far.call.cleared_by == "remote" and far.call.cause == 16
    with sqlite3.connect(records) as db:
        assert db.execute("SELECT return_code, cause FROM calls").fetchall() == [(7, "NORMAL")]


def test_run_exits_1_for_a_failed_call_whose_record_was_not_kept(capsys, tmp_path,
                                                                   monkeypatch):
    from uascall import app as app_module
    from uascall import cli

    monkeypatch.setattr(cli, "AppHost", functools.partial(app_module.AppHost, keep_results=1))
    script = tmp_path / "first_fails.py"
    script.write_text("__uas_identify__ = 'application'\n"
                      "import itertools\nnumbers = itertools.count(1)\n"
                      "def main(channel, iid, file_man, my_log, params):\n"
                      "    channel.reject()\n"
                      "    return -101 if next(numbers) == 1 else 0\n")
    assert main(["run", str(script), "--virtual", "--calls", "3", "--interval", "1"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and "return code 0" in out[0]
    assert out[1] == ("3 calls in all, 1 with a negative return code; the first 2 are not "
                      "listed above")


@pytest.mark.parametrize("virtual", [True, False])
def test_the_ivr_example_on_the_simulator_with_its_caller(capsys, tmp_path, virtual):
    """examples/ivr.py unchanged, its simulated caller pressing keys in band: the ladder
    shows the keys and the barge-ins, the message recorded is the caller's speech."""
    media = tmp_path / "media"
    media.mkdir()
    for name in os.listdir("examples/media"):
        if name.endswith(".wav"):
            (media / name).write_bytes((Path("examples/media") / name).read_bytes())
    args = ["run", "examples/ivr.py", "--ladder", "--media-dir", str(media),
            "--wav-dir", str(tmp_path / "heard")]
    assert main(args + (["--virtual"] if virtual else [])) == 0
    out = capsys.readouterr().out
    notes = [line.split("~")[1].strip() for line in out.splitlines() if "~" in line]
    keys = [note.rsplit(" ", 1)[1] for note in notes if note.startswith("heard in band")]
    assert keys == ["2", "1", "2", "3", "4", "#"]
    assert sum(note.startswith("barge-in:") for note in notes) == 2  # menu, PIN prompt
    assert "return code 0, cause NORMAL (16)" in out
    [recording] = (media / "recordings").glob("message-ivr-*-1.wav")  # ivr-RUN-1's
    message = wav.read_wav(recording)
    assert message.encoding == "alaw"
    # the caller's 3.4 s of speech, from about 0.5 s into the recording, and 0.2 s after
    assert 3.6 < message.duration < 4.6
    # and what the caller heard at the end: its own message played back to it
    heard = wav.read_wav(tmp_path / "heard" / "call1.wav")
    assert heard.duration > 20


def test_analog_options_reach_the_dahdi_backends_settings():
    from uascall.cli import _backend_options, build_parser
    args = build_parser().parse_args(
        ["run", "app.py", "--backend", "dahdi", "--dialing", "pulse",
         "--answer-supervision", "polarity", "--dial-tone-timeout", "2.5", "--zone", "de"])
    analog = _backend_options("dahdi", args)["analog"]
    assert (analog.dialing, analog.answer_supervision, analog.dial_tone_timeout,
            analog.zone) == ("pulse", "polarity", 2.5, "de")
    default = _backend_options("dahdi", build_parser().parse_args(["run", "app.py"]))
    assert (default["analog"].dialing, default["analog"].answer_supervision) == (
        "dtmf", "none")


LONG_CALL_APP = """\
__uas_identify__ = "application"
import pathlib

def main(channel, application_instance_id, file_man, my_log, params):
    channel.answer()
    pathlib.Path(params).write_text("answered")  # the test's cue: the call is up
    return 7 if channel.wait_for_idle() is channel.State.IDLE else 8
"""


def start_long_call(tmp_path, *options: str) -> tuple[subprocess.Popen, Path]:
    """`uascall run` on the simulator in a process of its own, its one call up (the
    caller plays a tone for 20 s and stays on the line): the process and its records."""
    app = tmp_path / "long.py"
    app.write_text(LONG_CALL_APP)
    answered = tmp_path / "answered"
    records = tmp_path / "calls.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-m", "uascall", "run", str(app), "--backend", "sim", "--calls",
         "1", "--caller", "tone 1000 20", "--records", str(records), "--param",
         str(answered), "--control", "none", *options],
        cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        # a test run in the background may have SIGINT ignored, and its children with it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 30
    while not answered.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            out, err = child.communicate()
            pytest.fail(f"the call was not answered (rc {child.returncode}): {out}{err}")
        time.sleep(0.05)
    return child, records


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_simulators_calls_and_keeps_their_records(tmp_path, signum):
    child, records = start_long_call(tmp_path, "--shutdown-timeout", "1")
    try:
        sent = time.monotonic()
        child.send_signal(signum)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    # the call had 1 s to end, then was hung up: the application saw it and returned
    assert child.returncode == 0, err
    assert time.monotonic() - sent < 10
    assert "Traceback" not in err
    assert err.count(f"uascall: {signum.name}: placing no new calls; the calls up have 1 s "
                     "to end, then are hung up") == 1, err
    assert "return code 7, cause NORMAL (16)" in out
    with sqlite3.connect(records) as db:
        assert db.execute("SELECT return_code, cause FROM calls").fetchall() == [
            (7, "NORMAL")]


def test_a_second_signal_ends_the_simulators_run_at_once(tmp_path):
    child, _records = start_long_call(tmp_path, "--shutdown-timeout", "60")
    try:
        child.send_signal(signal.SIGTERM)
        for line in child.stderr:  # until the first one is taken
            if "placing no new calls" in line:
                break
        else:
            pytest.fail(f"the first SIGTERM was not taken (rc {child.wait()})")
        sent = time.monotonic()
        child.send_signal(signal.SIGTERM)
        child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == -signal.SIGTERM and time.monotonic() - sent < 10
