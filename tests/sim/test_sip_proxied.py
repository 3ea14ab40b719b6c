"""The SIP backend behind a record-routing proxy, and draining, against a scripted caller.

RFC 3261 12.1.1: the responses that make the dialog (1xx with a To-tag, 2xx) carry the
INVITE's Record-Route, in order; 12.2.1.1: our requests in the dialog go along the route
set (loose routing: Route headers, the remote target as Request-URI, sent to the first
route). The "proxy" here is a bare UDP socket named in the Record-Route, so that what we
send to it can be read. The real proxy (Kamailio) is in tests/interop/test_kamailio*.py.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.sim.sip_peer import SipPeer, Uas, answer_through, answered, incoming
from uascall.app import AppHost, Application
from uascall.channel import State
from uascall.sip.message import Request, Response, parse_message

RECORD_ROUTE = ("Record-Route: <sip:p2.example.com;lr;ftag=x>, <sip:p1.example.com;lr>\r\n"
                "Record-Route: <sip:127.0.0.1:{port};lr;r2=on>\r\n")


@pytest.fixture
def proxy():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5.0)
    yield sock
    sock.close()


def _record_route(proxy: socket.socket) -> str:
    return RECORD_ROUTE.format(port=proxy.getsockname()[1])


def test_record_route_is_copied_into_the_183_and_the_200_in_order(uas, peer, proxy):
    channel = incoming(uas, peer, extra=_record_route(proxy))
    channel.ring(negotiate_early_media=True)
    progress = peer.expect(183)
    result: list[State] = []
    thread = threading.Thread(target=lambda: result.append(channel.answer()))
    thread.start()
    ok = peer.expect(200, method="INVITE")
    expected = ["<sip:p2.example.com;lr;ftag=x>", "<sip:p1.example.com;lr>",
                f"<sip:127.0.0.1:{proxy.getsockname()[1]};lr;r2=on>"]
    for response in (progress, ok):
        assert [value.strip() for line in response.headers.get_all("Record-Route")
                for value in line.split(",")] == expected
    peer.ack(ok)
    thread.join(5)
    assert result == [State.ANSWERED]
    channel.hang_up()


def test_180_carries_record_route_and_a_refusal_does_not(uas, peer, proxy):
    channel = incoming(uas, peer, extra=_record_route(proxy))
    channel.ring()
    assert peer.expect(180).headers.get_all("Record-Route")
    channel.hang_up()  # before the answer: a failure response, which makes no dialog
    final = [r.message for r in peer.poll(0.5) if isinstance(r.message, Response)
             and r.message.status >= 300]
    assert final and all(not m.headers.get_all("Record-Route") for m in final)


def test_our_bye_goes_to_the_first_route_with_the_route_set_and_the_contact_as_uri(
        proxy):
    uas = Uas()
    peer = SipPeer(uas.address)
    try:
        # The first route is the proxy's socket: the BYE must arrive there, not at the
        # caller's address, which the INVITE came from.
        record_route = (f"Record-Route: <sip:127.0.0.1:{proxy.getsockname()[1]};lr;ftag=x>,"
                        " <sip:p1.example.com;lr>\r\n")
        peer.invite(extra=record_route, contact="<sip:caller@192.0.2.7:5099;transport=udp>")
        peer.expect(100)
        channel = uas.channel()
        ok = answer_through(channel, peer)
        channel.hang_up()
        data, _source = proxy.recvfrom(65536)
        bye = parse_message(data)
        assert isinstance(bye, Request) and bye.method == "BYE"
        assert bye.uri == "sip:caller@192.0.2.7:5099;transport=udp"  # the remote target
        assert bye.headers.get_all("Route") == [
            f"<sip:127.0.0.1:{proxy.getsockname()[1]};lr;ftag=x>", "<sip:p1.example.com;lr>"]
        assert bye.max_forwards == 70
        assert bye.to.tag == peer.from_tag and bye.from_.tag == ok.to.tag
        assert "rport" in bye.top_via.params
        assert [r for r in peer.poll(0.3) if isinstance(r.message, Request)] == []
    finally:
        peer.close()
        uas.close()


def test_via_gets_received_and_rport_from_where_the_request_came(uas, peer):
    # A Via that names another address than the packet's source, asking for rport.
    text = peer.request("OPTIONS").replace(
        f"Via: SIP/2.0/UDP {peer.hostport};branch=",
        "Via: SIP/2.0/UDP 192.0.2.99:5070;rport;branch=")
    peer.send(text)
    ok = peer.expect(200, method="OPTIONS")
    via = ok.top_via
    assert via.params["received"] == "127.0.0.1" and via.params["rport"] == str(peer.port)


def test_a_response_goes_to_the_source_port_even_without_rport(uas, peer):
    # Deliberate (README, SIP): RFC 3261 18.2.2 sends to the Via sent-by port when there
    # is no rport; we answer where the request came from, as RFC 3581 does, so that a far
    # end behind NAT (its sent-by a private address and port) hears us.
    text = peer.request("OPTIONS").replace(
        f"Via: SIP/2.0/UDP {peer.hostport};branch=",
        f"Via: SIP/2.0/UDP {peer.host}:9;branch=")  # the discard port: nobody there
    peer.send(text)
    ok = peer.expect(200, method="OPTIONS")  # came to peer.port, the source
    assert ok.top_via.port == 9
    assert "rport" not in ok.top_via.params and "received" not in ok.top_via.params


def test_an_invite_with_max_forwards_0_is_served_as_it_has_arrived(uas, peer):
    # Max-Forwards limits forwarding (RFC 3261 16.3 step 3, a proxy's check): a request
    # that reaches its destination with 0 left is served, not answered 483.
    text = peer.request("INVITE").replace("Max-Forwards: 70", "Max-Forwards: 0")
    peer.send(text)
    peer.expect(100)
    channel = uas.channel()
    assert channel.state() is State.CALL_INCOMING
    channel.hang_up()


# ---------------------------------------------------------------------- draining
def drained_host(tmp_path) -> tuple[Uas, AppHost]:
    app = tmp_path / "answers.py"
    app.write_text('__uas_identify__ = "application"\n'
                   "def main(channel, application_instance_id, file_man, my_log, params):\n"
                   "    channel.answer()\n"
                   "    return 0\n")
    uas = Uas()
    host = AppHost(uas.engine, uas.backend, Application.load(app), media_dir=tmp_path)
    uas.engine.run(host.take_calls)
    return uas, host


def test_a_drained_node_waits_for_the_proxys_probe_to_see_503_before_it_goes(tmp_path):
    """An idle node told to drain (SIGTERM) must not go before the proxy that probes it
    has had a 503: gone first, it is still up in the proxy's view, and the next call is
    sent to a closed port (a stock Kamailio waits out fr_timer, 30 s, then answers 408)."""
    uas, host = drained_host(tmp_path)
    prober = SipPeer(uas.address)
    try:
        prober.send(prober.request("OPTIONS"))
        prober.expect(200, method="OPTIONS")
        drained: list[bool] = []
        waiting = threading.Thread(target=lambda: drained.append(host.drain(5.0)))
        waiting.start()
        time.sleep(0.5)
        assert not drained  # no call is up, but the proxy does not know yet
        prober.send(prober.request("OPTIONS", cseq=2))
        prober.expect(503, method="OPTIONS")
        waiting.join(2.0)
        assert drained == [True]
    finally:
        prober.close()
        uas.close()


def test_a_drained_node_nobody_probes_goes_at_once_and_a_silent_proxy_only_so_long(
        tmp_path):
    uas, host = drained_host(tmp_path)
    try:
        started = time.monotonic()
        assert host.drain(5.0) is True
        assert time.monotonic() - started < 1.0
    finally:
        uas.close()
    uas, host = drained_host(tmp_path)
    prober = SipPeer(uas.address)
    try:
        prober.send(prober.request("OPTIONS"))
        prober.expect(200, method="OPTIONS")
        started = time.monotonic()
        assert host.drain(0.5) is True  # the proxy probed once, then never again
        assert 0.5 <= time.monotonic() - started < 1.5
    finally:
        prober.close()
        uas.close()


def test_draining_answers_options_and_new_invites_503_and_serves_the_calls_up(uas, peer):
    channel = answered(uas, peer)
    uas.engine.run(uas.backend.ua.drain)
    prober = SipPeer(uas.address)
    caller = SipPeer(uas.address)
    try:
        prober.send(prober.request("OPTIONS"))
        busy = prober.expect(503, method="OPTIONS")
        assert busy.headers.get("Retry-After") == "5"
        caller.invite()
        refused = caller.expect(503, method="INVITE")
        assert refused.headers.get("Retry-After") == "5"
        assert uas.calls.empty()
        # the call up goes on: an OPTIONS in its dialog, then the caller's BYE
        peer.send(peer.request("OPTIONS", cseq=2, to_tag=peer.to_tag))
        peer.expect(200, method="OPTIONS")
        peer.cseq = 2
        peer.bye()
        peer.expect(200, method="BYE")
        assert channel.wait_for_idle(2) is State.IDLE
        uas.engine.run(uas.backend.ua.resume)
        prober.send(prober.request("OPTIONS", cseq=2))
        prober.expect(200, method="OPTIONS")
    finally:
        prober.close()
        caller.close()
