"""Outbound applications and `uascall call` on the simulator: the instances, their
records and return codes (-2, -3, -4, -6 among them), the generator's rate and
concurrency, and its summary by cause."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from uascall import backend as backends
from uascall.app import AppHost, Application, ApplicationError, CallRecords
from uascall.callgen import CallGenerator
from uascall.channel import State
from uascall.cli import main
from uascall.engine import Engine, VirtualClock
from uascall.errors import ArgumentError
from uascall.sim.backend import SimBackend

from .helpers import T

ROOT = Path(__file__).resolve().parents[2]
DIALLER = str(ROOT / "examples" / "dialler.py")


def write_app(tmp_path: Path, body: str, name: str = "app") -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text('__uas_identify__ = "application"\n' + textwrap.dedent(body))
    return path


class Sim:
    """A host on the simulator in virtual time, with the test's thread an actor."""

    def __init__(self, engine: Engine, app: Application, **host_options) -> None:
        self.engine = engine
        self.backend = SimBackend(engine)
        self.host = AppHost(engine, self.backend, app, **host_options)
        engine.run(self.host.start)
        assert engine.wait_until(lambda: self.backend.up, T)
        self.far_end = self.backend.far_end

    def most_calls_at_once(self) -> list[int]:
        """Engine thread: the exchange's calls from us that are up, sampled every 5 ms;
        the returned list gets the highest count seen so far."""
        peak = [0]

        def sample() -> None:
            up = sum(1 for call in self.far_end.incoming if not call.cleared)
            peak[0] = max(peak[0], up)
            self.engine.call_later(0.005, sample)

        self.engine.run(sample)
        return peak


@pytest.fixture
def virtual():
    with Engine(VirtualClock()) as engine, engine.actor():
        yield engine


# ------------------------------------------------------------------ uascall call


def test_uascall_call_places_the_calls_and_prints_the_summary(capsys, tmp_path):
    records = tmp_path / "calls.sqlite3"
    assert main(["call", DIALLER, "--to", "5559000", "--calls", "20", "--rate", "10",
                 "--concurrent", "5", "--virtual", "--records", str(records),
                 "--progress", "1"]) == 0
    out, err = capsys.readouterr()
    assert "20 of 20 calls started" in out and "at most 5 at once" in out
    assert "answered: 20, not answered: 0" in out
    lines = out.splitlines()
    causes = lines[lines.index("by cause:") + 1:lines.index("by return code:")]
    assert [line.split() for line in causes] == [["NORMAL", "20"]]
    codes = lines[lines.index("by return code:") + 1:]
    assert codes[0].split() == ["1", "20"]
    # the exchange answers after a second: setup times of one second
    assert codes[1].startswith("setup time (call to answer): p50 1.0")
    # not a terminal: plain progress lines, no carriage return
    progress = err.splitlines()
    assert progress and "\r" not in err and progress[-1].startswith("started 20/20, "
                                                                     "running 0, answered 20")
    with sqlite3.connect(records) as db:
        rows = db.execute("SELECT direction, caller, called, return_code, cause, raw_cause, "
                          "outbound_parameters, extra_calls FROM calls").fetchall()
    assert rows == [("outbound", "NA", "5559000", 1, "NORMAL", "16", "5559000", "[]")] * 20


def test_the_generator_keeps_its_rate_and_its_limit(virtual, tmp_path):
    sim = Sim(virtual, Application.load(DIALLER))
    starts: list[float] = []
    sim.host.on_channel = lambda channel: starts.append(virtual.time())
    peak = sim.most_calls_at_once()
    generator = CallGenerator(sim.host, "5559000", calls=12, rate=10, concurrent=5)
    t0 = virtual.time()
    summary = generator.run()
    offsets = [round(at - t0, 3) for at in starts]
    # ten a second while fewer than five run: 0, 0.1 ... 0.4
    assert offsets[:5] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4], abs=0.002)
    # then each start waits for an instance to end (answered after 1 s, a 0.5 s beep):
    # the sixth comes when the first ends, not 0.1 s after the fifth
    first = next(r for r in sim.host.results if r.instance_id == f"dialler-{sim.host.run_id}-1")
    assert first.duration > 1.4 and offsets[5] == pytest.approx(first.duration, abs=0.005)
    assert all(b - a >= 0.1 - 0.002 for a, b in itertools.pairwise(offsets))
    assert peak[0] == 5 and summary.peak_running == 5
    assert (summary.started, summary.ended, summary.answered, summary.failures) == (
        12, 12, 12, 0)
    assert summary.by_cause == {"NORMAL": 12} and summary.by_return_code == {1: 12}
    assert summary.percentile(0.5) == pytest.approx(1.0, abs=0.02)
    assert len(sim.far_end.incoming) == 12
    assert all(far.call.cleared_by == "remote" and far.call.cause == 16
               for far in sim.far_end.incoming)


def test_calls_refused_are_counted_by_cause_and_fail_the_run(virtual):
    sim = Sim(virtual, Application.load(DIALLER))
    sim.far_end.reject_cause = 17  # user busy
    summary = CallGenerator(sim.host, "5559000", calls=4, rate=100, concurrent=2).run()
    assert summary.by_cause == {"BUSY": 4} and summary.by_return_code == {-100: 4}
    assert (summary.answered, summary.failures) == (0, 4)
    assert "not answered: 4" in summary.render() and "setup time" not in summary.render()
    records = list(sim.host.results)
    assert {(r.cause, r.raw_cause, r.called) for r in records} == {("BUSY", "17", "5559000")}


def test_stopping_the_generator_hangs_up_the_calls_and_records_them(virtual):
    """What Ctrl-C does: no more starts, the calls up hung up, every instance recorded."""
    sim = Sim(virtual, Application.load(DIALLER))
    sim.far_end.answer_after = None  # they ring for ever (the dialler waits 30 s)
    stop = threading.Event()
    virtual.run(virtual.call_later, 2.0, stop.set)
    summary = CallGenerator(sim.host, "5559000", calls=50, rate=10, concurrent=5).run(stop)
    assert summary.interrupted and summary.started == 5 and summary.ended == 5
    assert summary.by_return_code == {-100: 5} and summary.by_cause == {"NORMAL": 5}
    assert "interrupted" in summary.render()
    assert len(sim.far_end.incoming) == 5
    assert all(far.cleared and far.call.cleared_by == "remote"
               for far in sim.far_end.incoming)


class RingingSim(SimBackend):
    """The exchange lets our calls ring; once three ring, the process gets SIGINT."""

    def __init__(self, engine, **options) -> None:
        super().__init__(engine)

    def start(self) -> None:
        super().start()
        self.far_end.answer_after = None
        threading.Thread(target=self._interrupt, daemon=True).start()

    def _interrupt(self) -> None:
        def ringing() -> bool:
            return sum(1 for far in self.far_end.incoming if not far.cleared) >= 3
        assert self.engine.wait_until(ringing, 10)
        RingingSim.far_end_seen = self.far_end
        os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_stops_uascall_call_and_prints_the_summary(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(backends.BACKENDS, "ringing-sim", f"{__name__}:RingingSim")
    records = tmp_path / "calls.sqlite3"
    before = signal.getsignal(signal.SIGINT)
    assert main(["call", DIALLER, "--to", "5559000", "--backend", "ringing-sim",
                 "--calls", "100", "--rate", "20", "--concurrent", "3",
                 "--records", str(records), "--progress", "0"]) == 1
    assert signal.getsignal(signal.SIGINT) is before
    out = capsys.readouterr().out
    assert "3 of 100 calls started" in out and "interrupted" in out
    assert "answered: 0, not answered: 3" in out
    assert all(far.cleared and far.call.cleared_by == "remote"
               for far in RingingSim.far_end_seen.incoming)
    with sqlite3.connect(records) as db:
        assert db.execute("SELECT return_code, direction FROM calls").fetchall() == [
            (-100, "outbound")] * 3


@pytest.mark.parametrize("option, value", [("--calls", "0"), ("--rate", "0"),
                                           ("--concurrent", "-1")])
def test_generator_options_must_be_positive(capsys, option, value):
    assert main(["call", DIALLER, "--to", "1", "--virtual", option, value]) == 1
    assert f"{option[2:]}={value}" in capsys.readouterr().err.replace(".0", "")


# ------------------------------------------------------------------ directions


@pytest.mark.parametrize("body, direction", [
    ("def main(channel, iid, file_man, my_log, params):\n    return 0\n", "inbound"),
    ("def main(channel, iid, file_man, my_log, params, outbound):\n    return 0\n",
     "outbound"),
    # a main that could take either is inbound unless it says otherwise
    ("def main(*args):\n    return 0\n", "inbound"),
    ("__uas_direction__ = 'outbound'\ndef main(*args):\n    return 0\n", "outbound"),
    ("def main(channel, iid, file_man, my_log, params, outbound=''):\n    return 0\n",
     "inbound"),
])
def test_the_direction_comes_from_mains_signature(tmp_path, body, direction):
    assert Application.load(write_app(tmp_path, body)).direction == direction


@pytest.mark.parametrize("body, message", [
    ("def main(a, b, c, d, e, f, g):\n    return 0\n",
     r"cannot take \(channel, .*application_parameters\) \(an inbound application\) or "
     r"\(.*outbound_parameters\) \(outbound\)"),
    ("__uas_direction__ = 'outbound'\ndef main(a, b, c, d, e):\n    return 0\n",
     r"cannot take \(.*outbound_parameters\), which an outbound application"),
    ("__uas_direction__ = 'sideways'\ndef main(*args):\n    return 0\n",
     r"__uas_direction__ is 'sideways'; expected 'inbound' or 'outbound'"),
])
def test_a_main_that_fits_no_direction_is_invalid(tmp_path, body, message):
    with pytest.raises(ApplicationError, match=message) as info:
        Application.load(write_app(tmp_path, body))
    assert info.value.rc == -4


def test_an_outbound_application_is_given_its_outbound_parameters(virtual, tmp_path):
    app = Application.load(write_app(tmp_path, """
    def main(channel, application_instance_id, file_man, my_log, application_parameters,
             outbound_parameters):
        assert channel.state() is channel.State.IDLE and application_parameters == "p"
        return len(outbound_parameters)
    """))
    sim = Sim(virtual, app, application_parameters="p", media_dir=tmp_path)
    sim.host.start_outbound("12345")
    sim.host.start_outbound("")
    assert sim.host.join(T)
    records = sorted(sim.host.results, key=lambda r: r.instance_id)
    # no call placed: nothing called, cause NORMAL
    assert [(r.direction, r.caller, r.called, r.return_code, r.outbound_parameters)
            for r in records] == [("outbound", "NA", "", 5, "12345"),
                                  ("outbound", "NA", "", 0, "")]
    with pytest.raises(ArgumentError, match="outbound_parameters=5; expected a string"):
        sim.host.start_outbound(5)


def test_an_inbound_application_started_outbound_is_minus_6_and_calls_no_one(
        virtual, tmp_path, capsys):
    sim = Sim(virtual, Application.load(ROOT / "examples" / "early_media.py"))
    sim.host.start_outbound("5559000")
    assert sim.host.join(T)
    [record] = sim.host.results
    assert (record.return_code, record.direction, record.called) == (-6, "outbound", "")
    assert sim.far_end.incoming == []
    # and what uascall call says about it
    assert main(["call", str(ROOT / "examples" / "early_media.py"), "--to", "5559000",
                 "--calls", "3", "--virtual"]) == 1
    out, err = capsys.readouterr()
    assert "is an inbound application (its main takes five parameters); uascall call " \
           "runs outbound ones, so no call is placed and recorded with return code -6" in err
    assert "by return code:\n  -6             3" in out


def test_an_outbound_application_offered_a_call_rejects_it_with_minus_6(virtual, capsys):
    sim = Sim(virtual, Application.load(DIALLER))
    far = virtual.run(sim.far_end.dial, "5551000")
    assert virtual.wait_until(lambda: far.cleared, T)
    assert sim.host.join(T)
    assert far.call.cleared_by == "remote" and far.call.cause == 21  # call rejected
    [record] = sim.host.results
    assert (record.return_code, record.direction, record.caller, record.cause) == (
        -6, "inbound", "5552000", "REJECTED")
    assert main(["run", DIALLER, "--virtual", "--calls", "2"]) == 1
    out, err = capsys.readouterr()
    assert "is an outbound application (its main takes six parameters, the last " \
           "outbound_parameters); uascall run runs inbound ones, so each incoming call is " \
           "rejected" in err
    assert out.count("return code -6, cause REJECTED (21)") == 2


def test_a_caller_who_clears_before_main_starts_is_minus_2(virtual, tmp_path):
    """The instance's thread is held back (as a loaded machine might) until the caller
    has cleared: main is not called, the record says -2 with the caller's cause."""
    app = Application.load(write_app(tmp_path, """
    started = []
    def main(channel, application_instance_id, file_man, my_log, application_parameters):
        started.append(application_instance_id)
        return 0
    """, name="late"))
    sim = Sim(virtual, app, media_dir=tmp_path)
    run = sim.host._run

    def late(instance) -> None:
        far = sim.far_end.calls[-1]
        virtual.run(far.hangup)
        assert instance.channel.wait_for_idle(T) is State.IDLE
        run(instance)

    sim.host._run = late
    far = virtual.run(sim.far_end.dial, "5551000")
    assert virtual.wait_until(lambda: far.cleared, T) and sim.host.join(T)
    [record] = sim.host.results
    assert (record.return_code, record.cause, record.raw_cause) == (-2, "NORMAL", "16")
    assert sys.modules["uascall_app_late"].started == []


@pytest.mark.parametrize("command", ["call", "run"])
def test_no_such_application_is_minus_3_and_an_invalid_one_minus_4(capsys, tmp_path,
                                                                    command):
    extra = ["--to", "1"] if command == "call" else []
    assert main([command, str(tmp_path / "missing.py"), "--virtual", *extra]) == 1
    assert "missing.py: no such file (UAS return code -3)" in capsys.readouterr().err
    broken = tmp_path / "broken.py"
    broken.write_text("__uas_identify__ = 'application'\ndef main(:\n")
    assert main([command, str(broken), "--virtual", *extra]) == 1
    assert "does not load: SyntaxError" in capsys.readouterr().err
    with pytest.raises(ApplicationError) as info:
        Application.load(tmp_path / "missing.py")
    assert info.value.rc == -3


# ------------------------------------------------------------------ records


def test_a_records_file_from_before_outbound_applications_still_works(virtual, tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("""CREATE TABLE calls (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            application TEXT NOT NULL, instance_id TEXT NOT NULL, direction TEXT NOT NULL,
            start REAL NOT NULL, duration REAL NOT NULL, return_code INTEGER NOT NULL,
            caller TEXT NOT NULL, called TEXT NOT NULL, cause TEXT NOT NULL,
            raw_cause TEXT NOT NULL)""")
        db.execute("INSERT INTO calls (application, instance_id, direction, start, duration,"
                   " return_code, caller, called, cause, raw_cause) VALUES ('old', 'old-1', "
                   "'inbound', 1.0, 2.0, 0, '5552000', '5551000', 'NORMAL', '16')")
    db.close()
    sim = Sim(virtual, Application.load(DIALLER), records=path)
    sim.host.start_outbound("5559000")
    assert sim.host.join(T)
    old, new = CallRecords(path).all()
    assert (old.instance_id, old.outbound_parameters, json.loads(old.extra_calls)) == (
        "old-1", "", [])
    assert (new.direction, new.caller, new.return_code, new.outbound_parameters) == (
        "outbound", "NA", 1, "5559000")
