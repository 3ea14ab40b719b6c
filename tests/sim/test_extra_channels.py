"""Extra channels: channel.ExtraChannel[0..2], outbound channels of an application
instance, hung up and released when main returns, and noted in its record."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from uascall.app import AppHost, Application
from uascall.channel import State
from uascall.cli import main
from uascall.engine import Engine, VirtualClock
from uascall.errors import ArgumentError
from uascall.sim.backend import SimBackend

from .helpers import T


def host_for(engine: Engine, tmp_path: Path, body: str, name: str,
             **options) -> tuple[AppHost, SimBackend]:
    path = tmp_path / f"{name}.py"
    path.write_text('__uas_identify__ = "application"\nfrom uascall import Error, Hangup\n'
                    + textwrap.dedent(body))
    backend = SimBackend(engine)
    host = AppHost(engine, backend, Application.load(path), media_dir=tmp_path, **options)
    engine.run(host.start)
    assert engine.wait_until(lambda: backend.up, T)
    return host, backend


def module(name: str):
    return sys.modules[f"uascall_app_{name}"]


def test_an_extra_channel_places_a_call_that_is_hung_up_when_main_returns(tmp_path):
    body = """
    kept = {}
    def main(channel, application_instance_id, file_man, my_log, application_parameters):
        channel.answer()
        extras = channel.ExtraChannel
        kept["extras"], kept["len"] = extras, len(extras)
        kept["errors"] = []
        for bad in (3, -1, "0", True):
            try:
                extras[bad]
            except Error as exc:
                kept["errors"].append(str(exc))
        out = extras[0]
        kept["same"] = out is extras[0] and list(extras)[0] is out
        kept["state"] = out.call("5559000", call_from="5551000")
        kept["direction"] = out.Details.direction
        return 5  # both calls left up: the host hangs them up
    """
    with Engine(VirtualClock()) as engine, engine.actor():
        host, backend = host_for(engine, tmp_path, body, "extra")
        far = engine.run(backend.far_end.dial, "5551000")
        assert engine.wait_until(lambda: far.cleared, 30) and host.join(T)
        kept = module("extra").kept
        assert kept["len"] == 3 and kept["same"] and kept["state"] is State.ANSWERED
        assert kept["direction"] == "outbound"
        assert kept["errors"] == [
            "ExtraChannel[3]: an application has at most 3 extra channels; expected an "
            "index from 0 to 2",
            "ExtraChannel[-1]: an application has at most 3 extra channels; expected an "
            "index from 0 to 2",
            "ExtraChannel['0']: expected an index (an int from 0 to 2)",
            "ExtraChannel[True]: expected an index (an int from 0 to 2)"]
        # the exchange took the extra call, and we hung it up when main returned
        [extra_call] = backend.far_end.incoming
        assert (extra_call.call.called, extra_call.call.calling) == ("5559000", "5551000")
        assert engine.wait_until(lambda: extra_call.cleared, T)
        assert extra_call.call.cleared_by == "remote" and extra_call.call.cause == 16
        assert far.call.cleared_by == "remote" and far.call.cause == 16
    [record] = host.results
    assert record.return_code == 5
    [noted] = json.loads(record.extra_calls)
    assert noted["seconds"] > 0
    assert noted == {"channel": 0, "call_to": "5559000", "answered": True,
                     "cause": "NORMAL", "raw_cause": "16", "seconds": noted["seconds"]}
    # released: the application cannot use them any more
    with pytest.raises(Exception, match=r"ExtraChannel\[0\]: application instance "
                                        rf"extra-{host.run_id}-1 has ended"):
        kept["extras"][0]


@pytest.mark.parametrize("count, index, message", [
    (1, 1, "this host gives each application 1 extra channel (extra_channels=1, uascall's "
           "--extra-channels); expected an index from 0 to 0"),
    (0, 0, "this host gives each application no extra channels (extra_channels=0, "
           "uascall's --extra-channels); expected none to be used"),
])
def test_extra_channels_beyond_the_hosts_count_are_an_error(capsys, tmp_path, count, index,
                                                            message):
    app = tmp_path / f"limited{count}.py"
    app.write_text(textwrap.dedent(f"""\
        __uas_identify__ = "application"
        from uascall import Error
        said = []
        def main(channel, application_instance_id, file_man, my_log, params):
            channel.reject()
            try:
                channel.ExtraChannel[{index}]
            except Error as exc:
                said.append(str(exc))
                return len(channel.ExtraChannel)
            return -100
        """))
    assert main(["run", str(app), "--virtual", "--extra-channels", str(count)]) == 0
    assert f"return code {count}, cause" in capsys.readouterr().out
    assert module(f"limited{count}").said == [f"ExtraChannel[{index}]: {message}"]
    with pytest.raises(SystemExit):
        main(["run", str(app), "--virtual", "--extra-channels", "4"])
    with Engine(VirtualClock()) as engine:
        with pytest.raises(ArgumentError, match="extra_channels=4; expected a number of "
                                                "extra channels from 0 to 3"):
            AppHost(engine, SimBackend(engine), Application.load(app), extra_channels=4)


def test_an_outbound_instance_has_extra_channels_too(tmp_path):
    body = """
    def main(channel, application_instance_id, file_man, my_log, application_parameters,
             outbound_parameters):
        if channel.call(outbound_parameters) != channel.State.ANSWERED:
            return -100
        second = channel.ExtraChannel[2]
        second.call("5559002")
        second.hang_up()
        return 1 if second.call("5559003") == channel.State.ANSWERED else -101
    """
    with Engine(VirtualClock()) as engine, engine.actor():
        host, backend = host_for(engine, tmp_path, body, "outextra")
        host.start_outbound("5559001")
        assert host.join(30)
        far = backend.far_end.incoming
        assert [c.call.called for c in far] == ["5559001", "5559002", "5559003"]
        assert engine.wait_until(lambda: all(c.cleared for c in far), T)
    [record] = host.results
    assert (record.return_code, record.called, record.outbound_parameters) == (
        1, "5559001", "5559001")
    assert [(n["channel"], n["call_to"], n["answered"], n["cause"])
            for n in json.loads(record.extra_calls)] == [
        (2, "5559002", True, "NORMAL"), (2, "5559003", True, "NORMAL")]


def test_an_extra_call_nothing_can_carry_is_noted_with_nochannels(tmp_path):
    body = """
    def main(channel, application_instance_id, file_man, my_log, application_parameters):
        channel.reject()
        state = channel.ExtraChannel[1].call("5559000")
        return 3 if state == channel.State.IDLE else -100
    """
    with Engine(VirtualClock()) as engine, engine.actor():
        host, backend = host_for(engine, tmp_path, body, "noroute", route="pri:7")
        far = engine.run(backend.far_end.dial, "5551000")
        assert engine.wait_until(lambda: far.cleared, T) and host.join(T)
    [record] = host.results
    [noted] = json.loads(record.extra_calls)
    assert record.return_code == 3 and (noted["channel"], noted["answered"],
                                        noted["cause"]) == (1, False, "NOCHANNELS")
    assert noted["raw_cause"] == "no PRI span can place a call to '5559000' now (there is " \
                                 "no PRI span 7)"


def test_a_blocked_extra_call_ends_when_the_host_shuts_down(tmp_path):
    body = """
    def main(channel, application_instance_id, file_man, my_log, application_parameters):
        channel.answer()
        state = channel.ExtraChannel[0].call("5559000", seconds_timeout=None)
        return 7 if state == channel.State.IDLE else -100
    """
    # real time: shutdown() is a server's Ctrl-C
    with Engine() as engine:
        host, backend = host_for(engine, tmp_path, body, "blocked")
        backend.far_end.answer_after = None  # our extra call rings for ever
        far = engine.run(backend.far_end.dial, "5551000")
        assert engine.wait_until(lambda: len(backend.far_end.incoming) == 1, T)
        extra = backend.far_end.incoming[0]
        assert host.shutdown(T) is True
        assert far.cleared and extra.cleared and extra.call.cleared_by == "remote"
    [record] = host.results
    assert record.return_code == 7
    assert [(n["answered"], n["cause"]) for n in json.loads(record.extra_calls)] == [
        (False, "NORMAL")]


def test_a_blocked_extra_call_wakes_when_the_engine_stops(tmp_path):
    """The engine stopping drops the span's calls (FAILED, 41): the blocked call() returns
    IDLE, and main with it (where nothing clears the call, the wait raises Hangup)."""
    body = """
    woke = []
    def main(channel, application_instance_id, file_man, my_log, application_parameters):
        channel.answer()
        try:
            woke.append(channel.ExtraChannel[0].call("5559000", seconds_timeout=None))
        except Hangup as exc:
            woke.append(exc)
        return 0
    """
    engine = Engine().start()
    try:
        host, backend = host_for(engine, tmp_path, body, "stopping")
        backend.far_end.answer_after = None
        engine.run(backend.far_end.dial, "5551000")
        assert engine.wait_until(lambda: len(backend.far_end.incoming) == 1, T)
    finally:
        engine.stop()
    assert host.join(T)
    assert module("stopping").woke == [State.IDLE]
    [record] = host.results
    assert [(n["cause"], n["raw_cause"]) for n in json.loads(record.extra_calls)] == [
        ("FAILED", "41")]
