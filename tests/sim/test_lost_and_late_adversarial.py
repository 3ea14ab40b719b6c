"""Adversarial probes (helper-28) of three things that decide on what did not come: the
INVITEs refused 503 and remembered (RefusedInvites), an RFC 4733 key whose end packets
were lost (KEY_LOST_AFTER), and the modem's stall check and command timeouts when the
engine runs late (STALL_CHECK_LATE). The second and third sections failed first: a key
left down forever, one press counted twice, a dead modem never failed under load."""

from __future__ import annotations

import socket
import time

import pytest

from tests.sim.sip_peer import SipPeer, Uas, incoming, refused_while_draining
from tests.sim.test_modem import bench, fxs_calls_the_modem  # noqa: F401 (a fixture)
from tests.sim.test_rtp_stream import (  # noqa: F401 (fixtures)
    engine,
    event_packet,
    far_end,
    open_stream,
)
from uascall.channel import State
from uascall.sip.media import KEY_LOST_AFTER, RtpTicker
from uascall.sip.sdp import Negotiated


# ----------------------------------------------------------------- 1. RefusedInvites
def test_drain_refusal_then_resume_new_branch_same_call_id_is_taken_2543_and_cancel():
    server = Uas()
    peer = SipPeer(server.address)
    try:
        invite, busy = refused_while_draining(server, peer)
        assert "draining" in busy.headers.get("Warning")
        # a CANCEL of the refused INVITE: no transaction to cancel
        peer.cancel()
        peer.expect(481)
        server.engine.run(server.backend.ua.resume)
        peer.send(invite)  # retransmission after resume: refused again
        peer.expect(503)
        # the same INVITE from another source port (NAT rebinding): still a retransmission
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other.bind(("127.0.0.1", 0))
        other.settimeout(2)
        other.sendto(invite.encode(), server.address)
        assert b"503" in other.recv(4096).split(b"\r\n")[0]
        other.close()
        peer.ack(busy)
        assert peer.poll(0.3) == [] and server.calls.empty()
        # a genuinely new INVITE, same Call-ID, new branch and CSeq: taken
        peer.cseq += 1
        assert incoming(server, peer).state() is State.CALL_INCOMING
    finally:
        peer.close()
        server.close()


def test_rfc2543_branchless_invite_refused_then_retransmitted_then_new_cseq_taken():
    server = Uas()
    peer = SipPeer(server.address)
    try:
        server.engine.run(server.backend.ua.drain)
        text = peer.request("INVITE", branch="1234abcd")  # RFC 2543: no magic cookie
        peer.send(text)
        peer.expect(503)
        server.engine.run(server.backend.ua.resume)
        peer.send(text)
        peer.expect(503)
        peer.cseq += 1
        peer.send(peer.request("INVITE", branch="1234abce"))
        peer.expect(100)
        assert server.channel().state() is State.CALL_INCOMING
    finally:
        peer.close()
        server.close()


# ----------------------------------------------------------------- 2. lost-end watch
def _keys(rtp_engine, stream):
    keys: list[tuple[str, bool]] = []
    rtp_engine.run(setattr, stream, "on_digit",
                   lambda digit, ended: keys.append((digit, ended)))
    return keys


@pytest.mark.parametrize("new_te", [96, None])
def test_a_key_down_when_the_stream_is_reopened_without_its_payload_type_is_still_let_up(
        engine, far_end, new_te):  # noqa: F811
    """'5' goes down (PT 101); a re-INVITE changes telephone-event to PT 96 (or drops it):
    the old key's end packets (PT 101) can no longer be heard, so the stream lets it up
    as it changes receivers. Failed before: the watch found the new receiver with no key
    down, and '5' stayed down for good (a bridge held its tone 30 s)."""
    ticker = RtpTicker(engine)
    stream = open_stream(engine, ticker, far_end, telephone_event=101)
    keys = _keys(engine, stream)
    far_end.sendto(event_packet(0, 5, 400), stream.local)
    assert engine.wait_until(lambda: keys == [("5", False)], 1.0)
    negotiated = Negotiated(law="alaw", payload_type=8, telephone_event=new_te,
                            remote=far_end.getsockname(), direction="sendrecv",
                            peer=far_end.getsockname())
    engine.run(stream.open, negotiated)
    engine.sleep(3 * KEY_LOST_AFTER)
    try:
        assert keys == [("5", False), ("5", True)], keys
    finally:
        engine.run(stream.close)


def test_a_long_key_given_up_mid_segment_is_not_a_second_press_at_the_next_segment(
        engine, far_end):  # noqa: F811
    """RFC 4733 2.5.1.3: a key held past 0xFFFF samples goes on in a new segment at
    timestamp + 0xFFFF. 0.6 s of its updates lost near the end of the first segment: the
    watch lets it up; the rest of that segment, and the next segment, are the same press
    coming late, not new ones. Failed before: the next segment was a second '5'."""
    ticker = RtpTicker(engine)
    stream = open_stream(engine, ticker, far_end, telephone_event=101)
    keys = _keys(engine, stream)
    far_end.sendto(event_packet(0, 5, 60000), stream.local)  # well into the first segment
    assert engine.wait_until(lambda: stream.packets_received == 1, 1.0)
    engine.sleep(KEY_LOST_AFTER + 0.1)  # updates lost: given up
    assert keys == [("5", False), ("5", True)]
    far_end.sendto(event_packet(1, 5, 65535), stream.local)  # the segment's last, late
    assert engine.wait_until(lambda: stream.packets_received == 2, 1.0)
    assert keys == [("5", False), ("5", True)]  # same segment: not a new press
    far_end.sendto(event_packet(2, 5, 400, timestamp=8000 + 0xFFFF), stream.local)
    assert engine.wait_until(lambda: stream.packets_received == 3, 1.0)
    engine.sleep(0.05)
    try:
        assert keys == [("5", False), ("5", True)], keys  # one press, not two
    finally:
        engine.run(stream.close)


# ----------------------------------------------------------------- 3. modem late re-check


def test_a_mute_modem_is_failed_even_while_the_engine_keeps_running_late(bench):  # noqa: F811
    """The modem goes mute mid-call and the engine is then blocked 0.35 s out of every
    0.55 s (a loaded process: it runs, it reads the tty, finds nothing). A late stall
    check gets one second look only, so the dead modem's call is cleared while the load
    lasts. Failed before: each check ran late and looked again, forever (16 times, the
    modem failed only once the load stopped, 'no voice data for 12.5 s')."""
    fxs_calls_the_modem(bench)
    modem = bench.modem(bench.phone_modem)
    loop = bench.engine
    bench.phone_modem.fault = "mute"
    loop.run(lambda: setattr(bench.phone_modem, "mode", "command"))  # no audio
    hogging = {"on": True, "handle": None}

    def hog() -> None:
        time.sleep(0.35)  # the engine held (sleeping: no CPU burnt)
        if hogging["on"]:
            hogging["handle"] = loop.call_later(0.2, hog)

    def hold_then_hog() -> None:
        time.sleep(4.0)  # the stall comes due while held (as in the existing test)
        hogging["handle"] = loop.call_later(0.2, hog)

    loop.run(hold_then_hog)
    start = time.monotonic()
    cleared = loop.wait_until(lambda: modem.state != "connected", 8.0)
    waited = time.monotonic() - start

    def stop() -> None:
        hogging["on"] = False
        if hogging["handle"] is not None:
            hogging["handle"].cancel()

    loop.run(stop)
    after = loop.wait_until(lambda: modem.state != "connected", 3.0)
    assert cleared, (f"mute modem still {modem.state!r} after {waited:.1f} s of a late "
                     f"engine (cleared once the load stopped: {after}); "
                     f"last_error={modem.last_error!r}")
