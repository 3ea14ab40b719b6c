"""Defects bench/fuzz_sip.py found, each kept here as the datagram that showed it."""

from __future__ import annotations

import pytest

from tests.sim.sip_peer import SipPeer, incoming, sdp_offer
from uascall.channel import State
from uascall.sip.sdp import answer_offer, make_offer, parse_sdp, read_answer


def offer_to(host: bytes) -> bytes:
    return (b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 " + host +
            b"\r\nt=0 0\r\nm=audio 5000 RTP/AVP 8\r\n")


@pytest.mark.parametrize("host", ["a\u202eb".encode(), b"example.invalid", b"localhost",
                                  b"a..b", b"1.2.3.4.5", b"x" * 300])
def test_rtp_goes_only_to_an_ip_address(host):
    """An SDP connection address that is not an IP address is no usable address: sending
    RTP there made the kernel call look the name up on the engine thread (a slow resolver
    stalls every call), and bytes no host name has (seed 2, datagram of an INVITE whose
    c= line got a right-to-left override) raised TypeError out of sendto in the RTP ticker."""
    _, negotiated = answer_offer(parse_sdp(offer_to(host)), ["g711a"], address="10.0.0.1",
                                 port=20000, session_id=1)
    assert (negotiated.remote, negotiated.peer) == (None, None)
    ours = make_offer(["g711a"], address="10.0.0.1", port=20000, session_id=1)
    assert read_answer(ours, parse_sdp(offer_to(host))).remote is None


def test_ip_addresses_are_still_taken():
    for host, family, ours in ((b"192.0.2.9", b"IP4", "10.0.0.1"),
                               (b"2001:db8::9", b"IP6", "2001:db8::1")):
        offer = offer_to(host).replace(b"IN IP4 " + host, b"IN " + family + b" " + host)
        _, negotiated = answer_offer(parse_sdp(offer), ["g711a"], address=ours,
                                     port=20000, session_id=1)
        assert negotiated.remote == (host.decode(), 5000)


def test_one_streams_failure_does_not_stop_the_others_rtp(uas):
    """Whatever one stream raises when its packet is due, the ticker goes on for the
    others (the TypeError above left the ticker unarmed: every call's RTP stopped for
    good); the failing stream stops sending, and the failure is counted once."""
    first, second = SipPeer(uas.address), SipPeer(uas.address)
    try:
        channels = []
        for peer in (first, second):
            channel = incoming(uas, peer)
            assert channel.ring(negotiate_early_media=True) is State.RING_INCOMING
            peer.expect(183)
            channels.append(channel)
        ua = uas.backend.ua
        broken = uas.engine.run(lambda: next(call.stream for call in ua.calls
                                             if call.source[1] == first.port))

        def fails() -> None:
            raise RuntimeError("a stream that cannot send")

        uas.engine.run(setattr, broken, "_send_next", fails)
        second.drain_rtp()
        assert len(second.rtp_packets(0.5)) >= 15
        first.drain_rtp()
        assert first.rtp_packets(0.2) == []
        counts = uas.engine.run(uas.engine.faults.counts)
        assert sum(n for cause, n in counts.items() if "cannot send" in cause
                   or "RuntimeError" in cause) >= 1
    finally:
        first.close()
        second.close()


def test_a_call_whose_sdp_names_no_ip_address_is_taken_without_rtp(uas, peer):
    """The call itself goes on (answered with our SDP); no RTP is sent to the name."""
    offer = sdp_offer("127.0.0.1", peer.rtp_port).replace("c=IN IP4 127.0.0.1",
                                                           "c=IN IP4 localhost")
    peer.send(peer.request("INVITE", branch="z9hG4bKnamed", body=offer))
    peer.expect(100)
    channel = uas.channel()
    assert channel.ring(negotiate_early_media=True) is State.RING_INCOMING
    peer.expect(183)
    assert peer.rtp_packets(0.3) == []
