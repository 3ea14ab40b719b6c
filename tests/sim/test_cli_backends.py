"""The `uascall` command knows backends by name only: a backend installed from another
package (entry point ``uascall.backends``) brings its own options, in a group of its own
in --help, builds its own constructor arguments from them, and may bring a far end that
calls the application in `uascall run`, as the simulator's exchange does."""

from __future__ import annotations

import argparse
import logging
import textwrap
from pathlib import Path

import pytest

from uascall import backend as backends
from uascall.cli import _BackendGroup, build_parser, main
from uascall.engine import Engine
from uascall.errors import ArgumentError, Error

from .plugin_backend import RefusingBackend

ROOT = Path(__file__).resolve().parents[2]
DIALLER = str(ROOT / "examples" / "dialler.py")


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """tests.sim.plugin_backend installed as a distribution of its own: its dist-info,
    with the entry point, on sys.path (what pip leaves in site-packages)."""
    site = tmp_path / "site"
    dist = site / "uascall_refuser-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: uascall-refuser\n"
                                   "Version: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[uascall.backends]\nrefuser = tests.sim.plugin_backend:RefusingBackend\n")
    monkeypatch.syspath_prepend(str(site))
    RefusingBackend.opened.clear()
    assert backends.known_backends()["refuser"] == \
        "tests.sim.plugin_backend:RefusingBackend"


def write_app(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "app.py"
    path.write_text('__uas_identify__ = "application"\n' + textwrap.dedent(body))
    return path


def test_a_backend_not_installed_is_unknown_and_has_no_options(capsys):
    assert "refuser" not in backends.known_backends()
    assert main(["call", DIALLER, "--to", "1", "--backend", "refuser"]) == 1
    assert "unknown backend 'refuser'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["call", DIALLER, "--to", "1", "--refuser-cause", "busy"])
    assert "unrecognized arguments: --refuser-cause" in capsys.readouterr().err


def test_an_installed_backend_has_its_options_in_a_group_of_its_own(installed, capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    groups = [line.rstrip(":") for line in out.splitlines() if line.endswith(" backend:")]
    # the built-in ones first, in the registry's order, then the installed one
    assert groups[-1] == "refuser backend"
    assert {"dahdi backend", "sim backend", "sip backend"} <= set(groups[:-1])
    refuser = out[out.index("refuser backend:"):]
    assert "--refuser-cause" in refuser and "--refuser-calls N" in refuser
    assert "sip, refuser (default sim)" in " ".join(out.split())
    with pytest.raises(SystemExit):
        main(["call", "--help"])
    refuser = capsys.readouterr().out.split("refuser backend:")[1]
    assert "--refuser-cause" in refuser and "--refuser-calls" not in refuser


def test_uascall_call_configures_an_installed_backend(installed, capsys, tmp_path):
    assert main(["call", DIALLER, "--to", "5559000", "--backend", "refuser",
                 "--refuser-cause", "congestion", "--calls", "3", "--virtual",
                 "--progress", "0"]) == 1  # every call refused: return code -100
    assert RefusingBackend.opened == [{"cause": "congestion", "calls": 0, "hold": 0.5}]
    out = capsys.readouterr().out
    assert "answered: 0, not answered: 3" in out
    assert "  CONGESTION     3" in out.splitlines()


def test_uascall_run_lets_an_installed_backends_far_end_call(installed, capsys, tmp_path):
    app = write_app(tmp_path, """\
        def main(channel, application_instance_id, file_man, my_log, params):
            channel.answer()
            return 3 if channel.wait_for_idle() is channel.State.IDLE else 4
        """)
    assert main(["run", str(app), "--backend", "refuser", "--refuser-calls", "2",
                 "--refuser-hold", "1.5", "--virtual"]) == 0
    assert RefusingBackend.opened == [{"cause": "busy", "calls": 2, "hold": 1.5}]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "refuser: 2 calls placed"
    results = out[1:]
    assert len(results) == 2
    for line in results:
        assert "-> 100, 1.5 s, return code 3, cause NORMAL" in line


def test_an_installed_backend_beside_the_simulator(installed, capsys, tmp_path):
    """Both far ends call; both backends' options reach them, and --virtual is refused
    only for a backend that keeps real time."""
    app = write_app(tmp_path, """\
        def main(channel, application_instance_id, file_man, my_log, params):
            channel.answer()
            channel.wait_for_idle(seconds_timeout=1)
            channel.hang_up()
            return 0
        """)
    assert main(["run", str(app), "--backend", "sim,refuser", "--refuser-calls", "1",
                 "--calls", "2", "--law", "ulaw", "--virtual"]) == 0
    out = capsys.readouterr().out
    assert out.count("return code 0") == 3 and "refuser: 1 calls placed" in out
    assert main(["run", str(app), "--backend", "refuser,sip", "--virtual"]) == 1
    assert "--virtual needs --backend sim or refuser alone: sip keeps real time" in \
        capsys.readouterr().err


def test_backends_share_an_option_they_add_alike_and_cannot_take_the_commands(caplog):
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls")
    added: dict = {}
    first = _BackendGroup("a", parser.add_argument_group("a backend"), added)
    second = _BackendGroup("b", parser.add_argument_group("b backend"), added)
    assert first.add_argument("--early", action="store_true", help="a's words") is not None
    with caplog.at_level(logging.WARNING, logger="uascall.cli"):
        assert second.add_argument("--early", action="store_true", help="b's") is None
        assert not caplog.records
        assert second.add_argument("--early", type=int) is None
        assert second.add_argument("--calls", type=int) is None
        assert second.add_argument("--b-own", type=int) is not None
    warnings = [record.getMessage() for record in caplog.records]
    assert warnings[0] == ("backend 'b': option --early left out: backend 'a' added it "
                           "with other settings")
    assert warnings[1].startswith("backend 'b': option --calls left out: argument --calls:"
                                  " conflicting option string")
    args = parser.parse_args(["--early", "--b-own", "3"])
    assert (args.early, args.b_own, args.calls) == (True, 3, None)


def test_each_backend_builds_its_own_options():
    args = build_parser().parse_args(["run", "app.py", "--backend", "sip,sim", "--listen",
                                      "127.0.0.1:5999", "--law", "ulaw", "--listen-early"])
    sip = backends.backend_class("sip").options_from_arguments(args, "run")
    assert sip["listen"] == ["127.0.0.1:5999"] and sip["allow"] == ["127.0.0.0/8", "::1/128"]
    assert sip["max_setups"] == 2000
    sim = backends.backend_class("sim").options_from_arguments(args, "run")
    assert sim == {"kind": "T1", "listen_early": True}
    args = build_parser().parse_args(["call", "app.py", "--to", "1", "--backend", "sip"])
    assert backends.backend_class("sip").options_from_arguments(args, "call")["listen"] == \
        ["127.0.0.1:0"]


def test_max_setups_reaches_the_user_agent_and_a_bad_one_is_refused():
    args = build_parser().parse_args(["run", "app.py", "--backend", "sip", "--listen",
                                      "127.0.0.1:0", "--max-setups", "6000"])
    options = backends.backend_class("sip").options_from_arguments(args, "run")
    with Engine() as engine:
        backend = backends.open_backend("sip", engine, **options)
        try:
            assert backend.ua.settings.max_setups == 6000
        finally:
            engine.run(backend.stop)
        with pytest.raises(ArgumentError, match="max_setups -1: expected a number of calls"):
            backends.open_backend("sip", engine, **{**options, "max_setups": -1})


def test_realtime_refuses_a_bad_priority_and_virtual_time_before_serving(capsys):
    app = str(ROOT / "examples" / "early_media.py")
    for bad in ("0", "100", "ten"):
        with pytest.raises(SystemExit):
            main(["run", app, "--backend", "sim", "--realtime-priority", bad])
        assert "expected 1 to 99" in capsys.readouterr().err
    assert main(["run", app, "--backend", "sim", "--control", "none", "--virtual",
                 "--realtime"]) == 1
    assert "--realtime with --virtual" in capsys.readouterr().err


def test_workers_are_not_started_when_the_realtime_they_ask_for_is_refused(
        monkeypatch, capsys):
    from uascall import cli, workers

    def refused(priority: int) -> None:
        raise Error(f"the engine thread cannot run at SCHED_FIFO priority {priority}: "
                    "Operation not permitted")
    started = []
    monkeypatch.setattr(cli, "check_realtime", refused)
    monkeypatch.setattr(workers, "supervise", lambda *args: started.append(args) or 0)
    app = str(ROOT / "examples" / "early_media.py")
    assert main(["run", app, "--backend", "sip", "--workers", "2", "--realtime-priority",
                 "20"]) == 1
    assert "SCHED_FIFO priority 20: Operation not permitted" in capsys.readouterr().err
    assert not started
