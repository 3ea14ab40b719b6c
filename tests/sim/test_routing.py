"""A host over several backends (uascall.routing): calls in from all of them, calls out
by destination: sip: URIs to SIP, numbers and tel: to the TDM backend (sim here)."""

from __future__ import annotations

import json
import sqlite3
import sys
import textwrap
import threading

import pytest

from uascall.app import AppHost, Application
from uascall.backend import Cause, NoRoute, open_backend
from uascall.channel import State
from uascall.cli import main
from uascall.engine import Engine
from uascall.errors import ArgumentError
from uascall.routing import RoutingBackend, parse_destination
from uascall.sim.backend import SimBackend

from .helpers import MEDIA, T
from .sip_peer import SipPeer, Uas


@pytest.mark.parametrize("call_to, parsed", [
    ("sip:bob@127.0.0.1:5080", ("sip", "sip:bob@127.0.0.1:5080")),
    ("SIPS:bob@example.com", ("sip", "SIPS:bob@example.com")),
    ("5551000", ("number", "5551000")),
    (" 555-1000 ", ("number", "5551000")),
    ("555-10-00", ("sip", "555-10-00")),  # split more than once: not a number (UAS's rule)
    ("tel:+44 1908 273800", ("number", "+441908273800")),
    ("tel:441908-273800;phone-context=example.com", ("number", "441908273800")),
    ("alice@example.com", ("sip", "sip:alice@example.com")),
    ("alice", ("sip", "alice")),
])
def test_destinations_read_as_uas_reads_them(call_to, parsed):
    assert parse_destination(call_to) == parsed


@pytest.mark.parametrize("call_to, message", [
    ("loc:my_inbound_service", "loc: destinations are Aculab Cloud's"),
    ("webrtc:client", "webrtc: destinations are Aculab Cloud's"),
    ("tel:abc", "expected tel: and a number"),
])
def test_destinations_that_cannot_be_placed(call_to, message):
    with pytest.raises(ArgumentError, match=message):
        parse_destination(call_to)


@pytest.fixture
def routing():
    """sim + sip, started on a real-time engine."""
    with Engine() as engine:
        sim = SimBackend(engine)
        sip = open_backend("sip", engine, listen="127.0.0.1:0", outbound="127.0.0.1:5999")
        backend = RoutingBackend(engine, [sim, sip])
        engine.run(backend.start)
        assert engine.wait_until(lambda: sim.up, T)
        yield backend
        engine.run(backend.stop)


@pytest.mark.parametrize("call_to, route, where", [
    ("sip:bob@127.0.0.1:5080", None, ("sip", "sip:bob@127.0.0.1:5080", None)),
    ("5551000", None, ("sim", "5551000", None)),
    ("555-1000", None, ("sim", "5551000", None)),
    ("tel:+1-555-0100", None, ("sim", "+15550100", None)),
    ("bob@example.com", None, ("sip", "sip:bob@example.com", None)),
    ("5551000", "pri:1", ("sim", "5551000", "pri:1")),
    ("5551000", "fxo", ("sim", "5551000", "fxo")),
    # a TDM route does not take a SIP URI there: it goes to SIP, without the route
    ("sip:bob@127.0.0.1:5080", "fxs:3", ("sip", "sip:bob@127.0.0.1:5080", None)),
    # any other route is SIP's: numbers go there too
    ("5551000", "127.0.0.1:5080", ("sip", "5551000", "127.0.0.1:5080")),
])
def test_the_routing_table(routing, call_to, route, where):
    found = routing.destination(call_to, route)
    assert (found.backend.name, found.call_to, found.route) == where
    assert routing.name == "sim+sip" and routing.tdm.name == "sim"


def test_refusals_say_which_backend_could_not_take_what(routing):
    with pytest.raises(ArgumentError, match=r"sip backend cannot take the call to "
                                            r"'sip:bob@' \(as sip:bob@\): .*expected a SIP"):
        routing.prepare_call("sip:bob@")
    engine = routing.engine
    with pytest.raises(NoRoute, match=r"sim backend cannot take the call to '5551000' \(as "
                                      r"5551000, route 'pri:7'\): no PRI span can place a "
                                      r"call to '5551000' now \(there is no PRI span 7\)"):
        engine.run(routing.place_call, "5551000", route="pri:7")
    with pytest.raises(ArgumentError, match="two sip backends"):
        RoutingBackend(engine, [routing.sip, routing.sip])
    with pytest.raises(ArgumentError, match="expected two or more"):
        RoutingBackend(engine, [routing.sip])


def test_a_destination_for_a_backend_the_host_lacks(routing):
    tdm_only = RoutingBackend(routing.engine, [routing.tdm, SimBackend(routing.engine)])
    assert tdm_only.destination("5551000").backend is routing.tdm  # the first TDM one
    with pytest.raises(ArgumentError, match=r"call_to 'sip:bob@h': a SIP destination needs "
                                            r"the sip backend, and this host has none "
                                            r"\(sim\+sim\)"):
        tdm_only.destination("sip:bob@h")
    with pytest.raises(ArgumentError, match=r"route '127\.0\.0\.1:5080' needs the sip backend"):
        tdm_only.destination("5551000", "127.0.0.1:5080")


GATEWAY = """
import json
from uascall import Hangup
SEEN = []
def main(channel, application_instance_id, file_man, my_log, application_parameters):
    # a small gateway: the destination for each number called, from the parameters
    routes = json.loads(application_parameters)
    channel.answer()
    out = channel.ExtraChannel[0]
    state = out.call(routes[channel.Details.call_to], call_from=channel.Details.call_from)
    SEEN.append((channel.Details.call_to, state, out.Details.channel))
    if state != channel.State.ANSWERED:
        return -100
    out.DTMFPlayer.play("1")
    return 1   # both calls up: the host hangs them up
"""


def answer_one(uas: Uas, seen: list) -> threading.Thread:
    """The SIP far end: answers the next call and waits for its end."""
    def run() -> None:
        channel = uas.channel(T)
        seen.append(channel.Details.call_to)
        channel.answer()
        seen.append(channel.wait_for_idle(T))
        seen.append(channel.cause())
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_pri_call_becomes_a_sip_call_and_a_sip_call_a_pri_call(routing, tmp_path):
    """Incoming calls from both backends reach the one host; each instance's extra channel
    calls out on the other backend, chosen by the destination."""
    uas = Uas()
    try:
        app_file = tmp_path / "gateway_lib.py"
        app_file.write_text('__uas_identify__ = "application"\n' + textwrap.dedent(GATEWAY))
        sip_uri = f"sip:5557000@127.0.0.1:{uas.address[1]}"
        host = AppHost(routing.engine, routing, Application.load(app_file), media_dir=MEDIA,
                       application_parameters=json.dumps({"5551000": sip_uri,
                                                          "service": "5559000"}))
        routing.engine.run(host.take_calls)
        seen: list = []
        far_end_thread = answer_one(uas, seen)
        # PRI in: the exchange calls us; the application calls the SIP side
        far = routing.engine.run(routing.tdm.far_end.dial, "5551000")
        far_end_thread.join(2 * T)
        assert seen[0] == "5557000" and seen[1:] == [State.IDLE, Cause.NORMAL]
        assert routing.engine.wait_until(lambda: far.cleared, T)
        # SIP in: a SIP caller calls us; the application calls the exchange
        peer = SipPeer(routing.sip.addresses[0])
        try:
            peer.invite()
            ok = peer.expect(200, 2 * T, method="INVITE")
            peer.ack(ok)
            bye = peer.expect("BYE", 2 * T)
            peer.respond_to(bye, 200)
        finally:
            peer.close()
        assert host.join(T)
        [pri_out] = routing.tdm.far_end.incoming
        assert pri_out.call.called == "5559000" and pri_out.call.calling == "peer"
        assert routing.engine.wait_until(lambda: pri_out.cleared, T)
        assert pri_out.call.cleared_by == "remote" and pri_out.call.cause == 16
    finally:
        uas.close()
    seen_by_app = sys.modules["uascall_app_gateway_lib"].SEEN
    assert [(to, state) for to, state, _where in seen_by_app] == [
        ("5551000", State.ANSWERED), ("service", State.ANSWERED)]
    assert "span 1 B-channel" in seen_by_app[1][2]
    records = sorted(host.results, key=lambda r: r.instance_id)
    assert [(r.direction, r.return_code, r.caller) for r in records] == [
        ("inbound", 1, "5552000"), ("inbound", 1, "peer")]
    assert [json.loads(r.extra_calls)[0]["call_to"] for r in records] == [
        sip_uri, "5559000"]


def test_uascall_run_with_sim_and_sip(capsys, tmp_path):
    """`uascall run APP --backend sim --backend sip`: the simulated exchange places its
    calls while the SIP backend runs, and the application reaches a SIP far end."""
    uas = Uas()
    records = tmp_path / "calls.sqlite3"
    app_file = tmp_path / "gateway_cli.py"
    app_file.write_text('__uas_identify__ = "application"\n' + textwrap.dedent(GATEWAY))
    seen: list = []
    try:
        far_end_thread = answer_one(uas, seen)
        uri = f"sip:5557000@127.0.0.1:{uas.address[1]}"
        assert main(["run", str(app_file), "--backend", "sim,sip", "--listen",
                     "127.0.0.1:0", "--param", json.dumps({"5551000": uri}),
                     "--media-dir", str(MEDIA), "--records", str(records)]) == 0
        far_end_thread.join(T)
    finally:
        uas.close()
    assert seen == ["5557000", State.IDLE, Cause.NORMAL]
    assert "return code 1, cause NORMAL (16)" in capsys.readouterr().out
    with sqlite3.connect(records) as db:
        [(extra,)] = db.execute("SELECT extra_calls FROM calls").fetchall()
    [noted] = json.loads(extra)
    assert (noted["call_to"], noted["answered"], noted["cause"]) == (uri, True, "NORMAL")


def test_several_backends_are_named_once_and_keep_real_time(capsys):
    assert main(["run", "examples/early_media.py", "--backend", "sim,sip",
                 "--backend", "sim"]) == 1
    assert "--backend sim given twice; expected each backend once" in \
        capsys.readouterr().err
    assert main(["run", "examples/early_media.py", "--backend", "sim,sip", "--virtual"]) == 1
    assert "--virtual needs --backend sim alone" in capsys.readouterr().err

