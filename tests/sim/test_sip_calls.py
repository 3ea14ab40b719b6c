"""The channel API over the SIP backend, against a scripted caller on real UDP sockets.

The timers are shrunk (T1 = 50 ms, T2 = 400 ms, so 64*T1 = 3.2 s) so that retransmission
and give-up behaviour shows in a second or two of real time; the sequence of messages is
what RFC 3261 asks for at any T1.
"""

from __future__ import annotations

import itertools
import logging
import queue
import secrets
import threading
import time

import pytest

from tests.audio import decode, dominant_frequency
from tests.sim.sip_peer import (
    SipPeer,
    Uas,
    answer_through,
    answered,
    calling_scripted_callee,
    incoming,
    sdp_formats,
    sdp_offer,
    settled,
)
from uascall.backend import Cause
from uascall.channel import State, UASCallChannel
from uascall.errors import Error, Hangup
from uascall.sip.call import SipCall
from uascall.sip.message import Request, Response
from uascall.sip.transaction import DEFAULT_TIMERS
from uascall.sip.useragent import MAX_LAG


# ---------------------------------------------------------------------- ringing
def test_100_trying_comes_before_the_application_sees_the_call(uas, peer):
    peer.invite()
    trying = peer.expect(100)
    assert trying.to.tag is None  # 100 carries no To-tag (RFC 3261 8.2.6.1)
    channel = uas.channel()
    assert channel.state() is State.CALL_INCOMING
    assert channel.Details.call_from == "peer" and channel.Details.call_to == "service"


def test_ring_without_early_media_sends_180(uas, peer):
    channel = incoming(uas, peer)
    assert channel.ring() is State.RING_INCOMING
    ringing = peer.expect(180)
    assert ringing.body == b"" and ringing.to.tag
    assert peer.rtp_packets(0.2) == []


@pytest.mark.parametrize(("codecs", "payload_type", "law"), [
    (None, 8, "alaw"), ("g711a;g711u", 8, "alaw"), ("g711u;g711a", 0, "ulaw"),
    ("g711u", 0, "ulaw")])
def test_early_media_183_with_our_codec_choice_and_the_ringtone_in_rtp(
        uas, peer, codecs, payload_type, law):
    channel = incoming(uas, peer)  # offered: 0 8 101, PCMU first
    channel.ring(negotiate_early_media=True, custom_ringtone="RINGBACK_EU",
                 loop_ringtone=True, codecs=codecs)
    progress = peer.expect(183)
    assert progress.headers.get("Content-Type") == "application/sdp"
    assert sdp_formats(progress.body) == [str(payload_type), "101"]  # telephone-event kept
    packets = peer.rtp_packets(1.2)
    assert len(packets) >= 50
    assert {p.payload_type for p in packets} == {payload_type}
    assert all(len(p.payload) == 160 for p in packets)
    sequences = [p.sequence for p in packets]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(sequences))
    samples = decode(b"".join(p.payload for p in packets[:40]), law)
    assert abs(dominant_frequency(samples) - 425) < 3  # RINGBACK_EU: 425 Hz, 1 s on
    channel.hang_up()


def test_answer_sends_the_same_sdp_as_the_183_and_ack_makes_it_answered(uas, peer):
    channel = incoming(uas, peer)
    channel.ring(negotiate_early_media=True)
    progress = peer.expect(183)
    result: list[State] = []
    thread = threading.Thread(target=lambda: result.append(channel.answer()))
    thread.start()
    ok = peer.expect(200, method="INVITE")
    assert ok.body == progress.body
    assert ok.to.tag == progress.to.tag
    assert channel.state() is State.ANSWERING
    peer.ack(ok)
    thread.join(5)
    assert result == [State.ANSWERED]


def test_ring_blocks_for_the_ringtone_and_returns_idle_when_the_caller_cancels(uas, peer):
    channel = incoming(uas, peer)
    got: list[State] = []
    thread = threading.Thread(target=lambda: got.append(channel.ring(
        seconds_ringtime=None, negotiate_early_media=True, custom_ringtone="RINGBACK_EU",
        loop_ringtone=False)))
    thread.start()
    peer.expect(183)
    time.sleep(0.3)
    assert thread.is_alive()  # blocked for the length of the ringtone (a 5 s cadence)
    peer.cancel()
    ok = peer.expect(200, method="CANCEL")
    terminated = peer.expect(487, method="INVITE")
    assert ok.to.tag == terminated.to.tag  # the same tag for both (RFC 3261 9.2)
    thread.join(2)
    assert got == [State.IDLE]
    assert channel.cause() is Cause.NORMAL
    with pytest.raises(Hangup):
        channel.answer()


def test_487_is_retransmitted_until_the_ack_and_the_ack_is_absorbed(uas, peer):
    channel = incoming(uas, peer)
    channel.ring()
    peer.expect(180)
    peer.cancel()
    first = peer.expect(487, method="INVITE")
    later = [r for r in peer.poll(0.4) if isinstance(r.message, Response)
             and r.message.status == 487]
    assert len(later) >= 2  # Timer G: T1, 2*T1 ...
    peer.ack(first)
    peer.poll(0.1)
    assert [r for r in peer.poll(0.5) if isinstance(r.message, Response)] == []
    assert channel.wait_for_idle(1) is State.IDLE


def test_a_retransmitted_invite_gets_the_last_provisional_and_no_second_call(uas, peer):
    channel = incoming(uas, peer)
    channel.ring(negotiate_early_media=True)
    first = peer.expect(183)
    peer.send(peer.invite_text)
    again = peer.expect(183)
    assert again.body == first.body and again.to.tag == first.to.tag
    with pytest.raises(queue.Empty):
        uas.calls.get(timeout=0.3)
    channel.hang_up()


def test_a_merged_invite_from_another_branch_gets_482_and_no_second_call(uas, peer):
    """RFC 3261 8.2.2.2: the same INVITE (Call-ID, From tag, CSeq, no To-tag) under
    another Via branch, as when a proxy forked it and both branches reached us, is a
    merged request: 482, while a retransmission on the first branch is still absorbed."""
    channel = incoming(uas, peer)
    channel.ring()
    peer.expect(180)
    first_branch = peer.branch
    merged = peer.invite_text.replace(first_branch, "z9hG4bK" + secrets.token_hex(6))
    peer.send(merged)
    loop = peer.expect(482)
    assert "merged request" in loop.headers.get("Warning", "") and loop.to.tag
    peer.send(peer.invite_text)  # the first branch again: a retransmission
    peer.expect(180)
    with pytest.raises(queue.Empty):
        uas.calls.get(timeout=0.3)
    answer_through(channel, peer)
    peer.send(merged)  # the first is answered, its transaction still there
    peer.expect(482)
    channel.hang_up()


def _without_contact(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True)
                   if not line.startswith("Contact:"))


@pytest.mark.parametrize(("contact", "why"), [
    (None, "INVITE has no Contact"),
    ("*", "Contact '*'"),
    ("<tel:+15551234567>", "is a tel: URI"),
    ("<sip:a@127.0.0.1:5070>, <sip:b@127.0.0.1:5071>", "has 2 Contact URIs"),
    ("<sip:a@127.0.0.1:5070>\r\nContact: <sip:b@127.0.0.1:5071>",  # two header fields
     "has 2 Contact URIs"),
])
def test_an_invite_whose_contact_is_not_one_sip_uri_gets_400_saying_why(
        uas, peer, contact, why):
    """RFC 3261 8.1.1.8: a dialog-creating request MUST have exactly one SIP or SIPS URI
    in Contact; it is where our BYE goes. Taken, the BYE went to the From URI, a tel:
    URI or the first of two."""
    body = sdp_offer(peer.host, peer.rtp_port)
    text = peer.request("INVITE", body=body, contact=contact)
    peer.send(_without_contact(text) if contact is None else text)
    refused = peer.expect(400)
    warning = refused.headers.get("Warning") or ""
    assert why in warning and "expected exactly one SIP or SIPS URI" in warning, warning
    assert refused.to.tag
    with pytest.raises(queue.Empty):
        uas.calls.get(timeout=0.3)


@pytest.mark.parametrize("contact", [
    "*", "<tel:+15551234567>", "<sip:a@127.0.0.1:5070>, <sip:b@127.0.0.1:5071>"])
def test_a_reinvite_whose_contact_is_not_one_sip_uri_gets_400_and_the_call_goes_on(
        uas, peer, contact):
    """A re-INVITE refreshes the target (RFC 3261 12.2.2): one whose Contact could not be
    a target is refused 400 and changes nothing; our BYE still goes to the first Contact.
    (A re-INVITE without Contact keeps the target: 12.2.1.1 says SHOULD.)"""
    channel = answered(uas, peer)
    peer.cseq += 1
    branch = "z9hG4bK" + secrets.token_hex(6)
    peer.send(peer.request("INVITE", branch=branch, cseq=peer.cseq, to_tag=peer.to_tag,
                           body=sdp_offer(peer.host, peer.rtp_port), contact=contact))
    refused = peer.expect(400, method="INVITE")
    assert "expected exactly one SIP or SIPS URI" in (refused.headers.get("Warning") or "")
    peer.send(peer.request("ACK", branch=branch, cseq=peer.cseq, to_tag=peer.to_tag))
    assert channel.state() is State.ANSWERED
    hung = threading.Thread(target=channel.hang_up)
    hung.start()
    bye = peer.expect("BYE")
    assert bye.uri == f"sip:peer@{peer.hostport}"
    peer.respond_to(bye, 200)
    hung.join(5)
    assert channel.state() is State.IDLE


def test_a_reinvite_offering_only_another_codec_gets_488_and_the_call_keeps_its_own(
        uas, peer):
    """Deliberate (README, SIP): a re-INVITE is answered with the codec the call uses;
    one offering only another (PCMU, which we support) gets 488 saying why, and the call
    goes on unchanged (RFC 3261 14.2); an offer that includes ours is answered with it."""
    channel = answered(uas, peer)  # offered 0 8 101: we chose PCMA (8)
    for formats, status in (("0 101", 488), ("0 8 101", 200)):
        peer.cseq += 1
        branch = "z9hG4bK" + secrets.token_hex(6)
        peer.send(peer.request("INVITE", branch=branch, cseq=peer.cseq, to_tag=peer.to_tag,
                               body=sdp_offer(peer.host, peer.rtp_port, formats)))
        answer = peer.expect(status, method="INVITE")
        if status == 488:
            warning = answer.headers.get("Warning") or ""
            assert warning.startswith("305 ") and "we accept" in warning, warning
            peer.send(peer.request("ACK", branch=branch, cseq=peer.cseq, to_tag=peer.to_tag))
        else:
            assert sdp_formats(answer.body) == ["8", "101"]
            peer.ack(answer)
        assert channel.state() is State.ANSWERED
    channel.hang_up()


def test_the_200_is_retransmitted_until_the_ack(uas, peer):
    channel = incoming(uas, peer)
    thread = threading.Thread(target=channel.answer)
    thread.start()
    ok = peer.expect(200, method="INVITE")
    again = [item for item in peer.poll(0.6) if isinstance(item.message, Response)
             and item.message.status == 200]
    # T1 doubling: 50, 150, 350 ms after the first (the exact schedule is checked without
    # sockets in test_sip_transaction.py; here the machine may be busy)
    assert len(again) >= 2
    # byte for byte the first one: a caller (SIPp) recognises retransmissions by a hash
    first = next(item.data for item in peer.received if item.message is ok)
    assert all(item.data == first for item in again)
    peer.ack(ok)
    thread.join(2)
    assert channel.state() is State.ANSWERED
    peer.poll(0.1)
    assert [r for r in peer.poll(0.6) if isinstance(r.message, Response)] == []


def test_no_ack_within_64_t1_ends_the_call_with_bye(uas, peer):
    channel = incoming(uas, peer)
    got: list[State] = []
    thread = threading.Thread(target=lambda: got.append(channel.answer()))
    thread.start()
    peer.expect(200, method="INVITE")
    bye = peer.expect("BYE", timeout=5)
    peer.respond_to(bye, 200)
    thread.join(2)
    assert got == [State.IDLE]
    assert channel.cause() is Cause.FAILED


# ---------------------------------------------------------------------- clearing
def test_caller_bye_clears_the_call(uas, peer):
    channel = answered(uas, peer)
    peer.bye()
    assert peer.expect(200, method="BYE")
    assert channel.wait_for_idle(2) is State.IDLE
    assert channel.cause() is Cause.NORMAL
    assert channel.Details.raw_cause == "BYE"


def test_bye_with_a_q850_reason_gives_its_cause(uas, peer):
    channel = answered(uas, peer)
    peer.cseq += 1
    peer.send(peer.request("BYE", cseq=peer.cseq, to_tag=peer.to_tag,
                           extra="Reason: Q.850;cause=17\r\n"))
    peer.expect(200, method="BYE")
    assert channel.wait_for_idle(2) is State.IDLE
    assert channel.cause() is Cause.BUSY


def test_hang_up_sends_bye_and_waits_for_its_200(uas, peer):
    channel = answered(uas, peer)
    got: list[State] = []
    thread = threading.Thread(target=lambda: got.append(channel.hang_up()))
    thread.start()
    bye = peer.expect("BYE")
    assert bye.to.tag == peer.from_tag  # our To is the caller's From
    peer.respond_to(bye, 200)
    thread.join(2)
    assert got == [State.IDLE] and channel.cause() is Cause.NORMAL


def test_hang_up_before_the_ack_waits_for_it_then_sends_bye(uas, peer):
    channel = incoming(uas, peer)
    threading.Thread(target=channel.answer).start()
    ok = peer.expect(200, method="INVITE")
    hung = threading.Thread(target=channel.hang_up)
    hung.start()
    time.sleep(0.2)
    assert not [r for r in peer.received if getattr(r.message, "method", "") == "BYE"]
    peer.ack(ok)
    bye = peer.expect("BYE")
    peer.respond_to(bye, 200)
    hung.join(2)
    assert channel.state() is State.IDLE


@pytest.mark.parametrize(("cause", "raw", "status", "q850"), [
    (Cause.BUSY, None, 486, "17"), (Cause.REJECTED, None, 603, "21"),
    (Cause.NOCHANNELS, None, 503, "34"), (Cause.CONGESTION, None, 503, "42"),
    (Cause.UNOBTAINABLE, None, 404, None), (None, 404, 404, None), (None, "480", 480, None),
    (Cause.BUSY, 699, 699, None)])
def test_reject_sends_the_mapped_final_response(uas, peer, cause, raw, status, q850):
    channel = incoming(uas, peer)
    assert channel.reject(cause, raw) is State.IDLE
    final = peer.expect(status, method="INVITE")
    reason = final.headers.get("Reason")
    if q850:
        assert reason == f"Q.850;cause={q850}"
    peer.ack(final)


@pytest.mark.parametrize("raw", [302, "301", "abc", 200, 183])
def test_reject_with_a_raw_cause_sip_cannot_send_leaves_state_error(uas, peer, raw):
    channel = incoming(uas, peer)
    assert channel.reject(raw_cause=raw) is State.ERROR
    assert channel.reject(Cause.BUSY) is State.IDLE
    peer.expect(486)


# ---------------------------------------------------------------------- media, DTMF
def test_telephone_events_become_digits(uas, peer):
    channel = answered(uas, peer)
    peer.send_digits("12#")
    assert channel.DTMFDetector.get_digits(count=3, seconds_predigits_timeout=2) == "12#"
    assert channel.DTMFDetector.cause() is channel.DTMFDetector.Cause.COUNT
    peer.send_digits("9*")
    assert channel.DTMFDetector.get_digits(end="*", seconds_predigits_timeout=2) == "9"
    assert channel.DTMFDetector.cause() is channel.DTMFDetector.Cause.END
    assert channel.DTMFDetector.get_digits() == ""
    assert channel.DTMFDetector.cause() is channel.DTMFDetector.Cause.TIMEOUT


def test_rtp_inactivity_ends_an_answered_call():
    server = Uas(rtp_timeout=0.5)
    caller = SipPeer(server.address)
    try:
        channel = answered(server, caller)
        bye = caller.expect("BYE", timeout=3)  # the caller never sends RTP
        caller.respond_to(bye, 200)
        assert channel.wait_for_idle(2) is State.IDLE
        assert channel.cause() is Cause.FAILED
    finally:
        caller.close()
        server.close()


def test_offerless_invite_gets_our_offer_in_the_200_and_the_answer_in_the_ack(uas, peer):
    channel = incoming(uas, peer, offer=False)
    assert channel.ring(negotiate_early_media=True) is State.RING_INCOMING
    peer.expect(180)  # no early media without an offer (that would need PRACK)
    thread = threading.Thread(target=channel.answer)
    thread.start()
    ok = peer.expect(200, method="INVITE")
    assert sdp_formats(ok.body)[:2] == ["8", "0"]
    from tests.sim.sip_peer import sdp_offer
    peer.ack(ok, body=sdp_offer(peer.host, peer.rtp_port, "8 101"))
    thread.join(2)
    assert channel.state() is State.ANSWERED
    channel.FilePlayer  # noqa: B018
    assert len(peer.rtp_packets(0.3)) >= 10


# ---------------------------------------------------------------------- the user agent
def test_options_is_answered_with_what_we_allow(uas, peer):
    peer.send(peer.request("OPTIONS"))
    ok = peer.expect(200, method="OPTIONS")
    assert set(ok.headers.get("Allow").replace(" ", "").split(",")) >= {
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"}
    # an INVITE's body, and an INFO's (keys)
    assert ok.headers.get("Accept") == (
        "application/sdp, application/dtmf-relay, application/dtmf")


def test_bye_for_an_unknown_dialog_gets_481(uas, peer):
    peer.send(peer.request("BYE", to_tag="nosuchtag"))
    peer.expect(481)


def test_overload_answers_new_invites_503_with_retry_after():
    server = Uas(max_setups=1, retry_after=7)
    first, second = SipPeer(server.address), SipPeer(server.address)
    try:
        channel = incoming(server, first)
        second.invite()
        busy = second.expect(503)
        assert busy.headers.get("Retry-After") == "7"
        channel.reject(Cause.BUSY)
        third = SipPeer(server.address)
        incoming(server, third).reject()
        third.close()
    finally:
        first.close()
        second.close()
        server.close()


def test_datagrams_from_outside_the_allow_list_are_dropped():
    server = Uas(allow=["192.0.2.0/24"])
    caller = SipPeer(server.address)
    try:
        caller.invite()
        assert caller.poll(0.5) == []
        assert server.backend.ua.endpoints[0].stats.dropped_not_allowed == 1
    finally:
        caller.close()
        server.close()


def test_datagrams_over_the_size_limit_are_dropped():
    server = Uas(max_message_size=1000)
    caller = SipPeer(server.address)
    try:
        caller.send(caller.request("OPTIONS", extra=f"X-Padding: {'a' * 1200}\r\n"))
        assert caller.poll(0.4) == []
        caller.send(caller.request("OPTIONS"))
        caller.expect(200)
    finally:
        caller.close()
        server.close()


def test_ipv6():
    server = Uas(listen="[::1]:0")
    caller = SipPeer(server.address, host="::1")
    try:
        channel = incoming(server, caller)
        channel.ring(negotiate_early_media=True)
        progress = caller.expect(183)
        assert b"c=IN IP6 ::1" in progress.body
        assert len(caller.rtp_packets(0.3)) >= 10
        channel.hang_up()
    finally:
        caller.close()
        server.close()


def test_malformed_datagrams_never_stop_the_engine(uas, peer):
    for junk in (b"\x00\xff" * 40, b"INVITE\r\n\r\n", b"SIP/2.0 200\r\n\r\n",
                 b"INVITE sip:x SIP/2.0\r\nVia: garbage\r\nCall-ID: 1\r\n\r\n"):
        peer.send(junk)
    peer.send(peer.request("OPTIONS"))
    peer.expect(200)
    assert uas.engine.running


# ---------------------------------------------------------------------- calls out
def test_outgoing_call_is_answered_by_another_sip_backend(uas):
    caller = Uas()
    try:
        host, port = uas.address
        channel = UASCallChannel(caller.engine, backend=caller.backend,
                                 media_clock=caller.clock)
        got: list[State] = []
        thread = threading.Thread(target=lambda: got.append(
            channel.call(f"sip:100@{host}:{port}", "200", seconds_timeout=5)))
        thread.start()
        callee = uas.channel()
        callee.ring(negotiate_early_media=True, custom_ringtone="RINGBACK_EU")
        time.sleep(0.2)
        assert channel.state() is State.RING_OUTGOING
        callee.answer()
        thread.join(5)
        assert got == [State.ANSWERED]
        channel.hang_up()
        assert callee.wait_for_idle(2) is State.IDLE
        assert channel.state() is State.IDLE
        assert settled(caller) and settled(uas)
    finally:
        caller.close()


@pytest.mark.parametrize(("cause", "expected"), [
    (Cause.BUSY, Cause.BUSY), (Cause.UNOBTAINABLE, Cause.UNOBTAINABLE),
    (Cause.CONGESTION, Cause.CONGESTION), (Cause.REJECTED, Cause.REJECTED)])
def test_outgoing_call_refused_gives_the_mapped_cause(uas, cause, expected):
    caller = Uas()
    try:
        host, port = uas.address
        channel = UASCallChannel(caller.engine, backend=caller.backend,
                                 media_clock=caller.clock)
        channel.start_call(f"sip:100@{host}:{port}")
        uas.channel().reject(cause)
        assert channel.wait_for_idle(3) is State.IDLE
        assert channel.cause() is expected
        assert settled(caller) and settled(uas)
    finally:
        caller.close()


def test_outgoing_call_not_answered_in_time_is_cancelled(uas):
    caller = Uas()
    try:
        host, port = uas.address
        channel = UASCallChannel(caller.engine, backend=caller.backend,
                                 media_clock=caller.clock)
        got: list[State] = []
        thread = threading.Thread(target=lambda: got.append(
            channel.call(f"sip:100@{host}:{port}", seconds_timeout=0.5)))
        thread.start()
        callee = uas.channel()
        callee.ring()
        thread.join(5)
        assert got == [State.IDLE] and channel.cause() is Cause.NOANSWER
        assert callee.wait_for_idle(2) is State.IDLE
        assert settled(caller) and settled(uas)
    finally:
        caller.close()


def test_call_to_a_bare_number_needs_a_route(uas):
    channel = UASCallChannel(uas.engine, backend=uas.backend, media_clock=uas.clock)
    with pytest.raises(Error, match="not a SIP URI"):
        channel.call("1234")


# ---------------------------------------------------------------------- header fields
def test_x_header_fields_go_out_with_the_answer_and_incoming_ones_can_be_read(uas, peer):
    from uascall.sipfields import SIPHeaderField

    peer.invite(extra="X-Account: 42\r\nX-Account: 43\r\nSubject: hello\r\n")
    peer.expect(100)
    channel = uas.channel()
    assert channel.SIP.request_header_field("x-account").get_values() == ["42", "43"]
    assert channel.SIP.request_header_field("s").get_values() == ["hello"]  # compact form
    assert channel.SIP.request_header_field("X-None") is None
    field = SIPHeaderField("X-Queue", "sales")
    field.add_value("priority")
    channel.SIP.HeaderFieldsToSend.append(field)
    thread = threading.Thread(target=channel.answer)
    thread.start()
    ok = peer.expect(200, method="INVITE")
    assert ok.headers.get_all("X-Queue") == ["sales", "priority"]
    peer.ack(ok)
    thread.join(2)


def test_only_custom_x_header_fields_can_be_sent(uas, peer):
    from uascall.sipfields import SIPHeaderField

    channel = incoming(uas, peer)
    channel.SIP.HeaderFieldsToSend.append(SIPHeaderField("Contact", "<sip:evil@x>"))
    with pytest.raises(Error, match="expected a custom field"):
        channel.answer()
    assert channel.state() is State.CALL_INCOMING
    with pytest.raises(Error, match="expected letters"):
        SIPHeaderField("X Bad")
    with pytest.raises(Error, match="one line"):
        SIPHeaderField("X-Ok", "two\r\nlines")
    channel.reject()


def test_x_header_fields_go_out_with_an_outgoing_call(uas):
    from uascall.sipfields import SIPHeaderField

    caller = Uas()
    try:
        host, port = uas.address
        channel = UASCallChannel(caller.engine, backend=caller.backend,
                                 media_clock=caller.clock)
        channel.SIP.HeaderFieldsToSend.append(SIPHeaderField("X-Campaign", "7"))
        channel.start_call(f"sip:100@{host}:{port}")
        callee = uas.channel()
        assert callee.SIP.request_header_field("X-Campaign").get_values() == ["7"]
        callee.reject(Cause.BUSY)
        assert channel.wait_for_idle(2) is State.IDLE
    finally:
        caller.close()


# ---------------------------------------------------------------------- DTMF detector
def test_get_digits_waits_for_a_first_digit_then_stops_on_the_interdigit_timeout(uas, peer):
    channel = answered(uas, peer)
    threading.Timer(0.2, peer.send_digits, ("47",)).start()
    digits = channel.DTMFDetector.get_digits(seconds_predigits_timeout=3,
                                             seconds_interdigit_timeout=0.5)
    assert digits == "47"
    assert channel.DTMFDetector.cause() is channel.DTMFDetector.Cause.TIMEOUT


def test_get_digits_keeps_what_is_beyond_count_and_clear_drops_it(uas, peer):
    channel = answered(uas, peer)
    peer.send_digits("1234")
    time.sleep(0.3)
    assert channel.DTMFDetector.get_digits(count=2) == "12"
    assert channel.DTMFDetector.get_digits(count=2) == "34"
    peer.send_digits("56")
    time.sleep(0.3)
    assert channel.DTMFDetector.get_digits(clear=True, count=1) == ""
    assert channel.DTMFDetector.cause() is channel.DTMFDetector.Cause.TIMEOUT


def test_get_digits_returns_on_hang_up_and_raises_once_idle(uas, peer):
    channel = answered(uas, peer)
    threading.Timer(0.2, peer.bye).start()
    assert channel.DTMFDetector.get_digits(seconds_predigits_timeout=5) == ""
    assert channel.DTMFDetector.cause() is channel.DTMFDetector.Cause.HANGUP
    with pytest.raises(Hangup):
        channel.DTMFDetector.get_digits()
    with pytest.raises(Error, match="one DTMF digit"):
        channel.DTMFDetector.get_digits(end="x")


# ---------------------------------------------------------------------- nothing left over
def _caller_bye(uas, peer):
    channel = answered(uas, peer)
    peer.bye()
    peer.expect(200, method="BYE")
    channel.wait_for_idle(2)


def _hang_up(uas, peer):
    channel = answered(uas, peer)
    threading.Thread(target=channel.hang_up).start()
    peer.respond_to(peer.expect("BYE"), 200)
    channel.wait_for_idle(2)


def _cancel(uas, peer):
    channel = incoming(uas, peer)
    channel.ring(negotiate_early_media=True)
    peer.expect(183)
    peer.cancel()
    peer.ack(peer.expect(487))
    channel.wait_for_idle(2)


def _reject(uas, peer):
    incoming(uas, peer).reject(Cause.BUSY)
    peer.ack(peer.expect(486))


def _no_ack(uas, peer):
    channel = incoming(uas, peer)
    threading.Thread(target=channel.answer).start()
    peer.expect(200, method="INVITE")
    peer.respond_to(peer.expect("BYE", timeout=5), 200)
    channel.wait_for_idle(2)


@pytest.mark.parametrize("ending", [_caller_bye, _hang_up, _cancel, _reject, _no_ack])
def test_a_call_that_ended_leaves_no_call_dialog_or_rtp_behind(uas, peer, ending):
    ending(uas, peer)
    assert settled(uas)
    peer.drain_rtp()
    assert peer.rtp_packets(0.15) == []  # the stream stopped sending


# ---------------------------------------------------------------------- overload, memory
def test_the_default_lag_limit_is_below_t1():
    server = Uas(timers=DEFAULT_TIMERS)
    try:
        assert server.backend.settings.max_lag == MAX_LAG < DEFAULT_TIMERS.t1
    finally:
        server.close()


def overload_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("overload:")]


def test_overload_warnings_come_once_a_second_with_the_number_refused(caplog):
    server = Uas(max_setups=0)  # every new INVITE is one too many
    callers = [SipPeer(server.address) for _ in range(5)]
    try:
        with caplog.at_level(logging.WARNING, logger="uascall.sip.useragent"):
            for caller in callers:
                caller.invite()
            for caller in callers:
                assert caller.expect(503).headers.get("Retry-After") == "5"
            first = overload_warnings(caplog)
            assert len(first) == 1 and "(1 refused since the last warning)" in first[0]
            deadline = time.monotonic() + 3
            while len(overload_warnings(caplog)) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            later = overload_warnings(caplog)
            assert len(later) == 2 and "(4 refused since the last warning)" in later[1]
        assert server.backend.ua.stats.overloaded == 5
    finally:
        for caller in callers:
            caller.close()
        server.close()


def test_refusals_not_yet_reported_are_reported_when_the_backend_stops(caplog):
    server = Uas(max_setups=0)
    callers = [SipPeer(server.address) for _ in range(3)]
    try:
        with caplog.at_level(logging.WARNING, logger="uascall.sip.useragent"):
            for caller in callers:
                caller.invite()
                caller.expect(503)
            server.close()
        assert [w.split("(")[-1] for w in overload_warnings(caplog)] == [
            "1 refused since the last warning)", "2 refused since the last warning)"]
    finally:
        for caller in callers:
            caller.close()
        server.close()


def test_an_ended_call_is_let_go_and_a_late_cancel_still_gets_its_200(uas, peer):
    channel = answered(uas, peer)
    invite_cseq, to_tag = peer.cseq, peer.to_tag
    peer.bye()
    peer.expect(200, method="BYE")
    assert channel.wait_for_idle(2) is State.IDLE
    assert settled(uas)
    ua = uas.backend.ua

    def invite_users() -> list[object]:
        return [tx.user for tx in ua.server_tx.values() if tx.method == "INVITE"]

    users = uas.engine.run(invite_users)
    assert users and not any(isinstance(user, SipCall) for user in users)  # no call kept
    # nor the requests and responses as objects: the transactions only wait to absorb
    # retransmissions, with the final response's bytes
    assert uas.engine.run(lambda: all(tx.request is None and tx.last_response is None
                                      for tx in ua.server_tx.values()))
    peer.send(peer.request("CANCEL", branch=peer.branch, cseq=invite_cseq))
    ok = peer.expect(200, method="CANCEL")
    assert ok.to.tag == to_tag  # too late to cancel anything, but answered (RFC 3261 9.2)


def test_an_offer_with_no_codec_we_take_gets_488_saying_why(uas, peer):
    """RFC 3261 13.3.1.3: a 488 SHOULD say, in a Warning, why the offer was refused."""
    channel = incoming(uas, peer, formats="18")  # G.729 only
    assert channel.answer() is State.IDLE
    assert channel.cause() is Cause.FAILED
    refused = peer.expect(488)
    warning = refused.headers.get("Warning")
    # RFC 3261 20.43: 305, incompatible media format
    assert warning is not None and warning.startswith('305 uascall "'), warning
    assert "codec" in warning, warning
    assert refused.to.tag


def test_a_user_agent_on_both_families_answers_an_offer_on_the_other_one():
    """Listening on 127.0.0.1 and [::1]: an IPv4 offer over IPv6 signalling is answered
    with our IPv4 address for the audio, not refused."""
    uas = Uas(listen=["127.0.0.1:0", "[::1]:0"])
    try:
        v6 = next(address for address in uas.backend.addresses if ":" in address[0])
        peer = SipPeer(v6, host="::1")
        try:
            peer.send(peer.request("INVITE", branch="z9hG4bK" + secrets.token_hex(6),
                                   body=sdp_offer("127.0.0.1", 40000)))
            peer.expect(100)
            channel = uas.channel()
            thread = threading.Thread(target=channel.answer)
            thread.start()
            ok = peer.expect(200, method="INVITE")
            peer.ack(ok)
            thread.join(5)
            assert b"c=IN IP4 127.0.0.1" in ok.body
            channel.hang_up()
        finally:
            peer.close()
    finally:
        uas.close()


def test_an_ipv6_offer_to_our_ipv4_address_gets_488_301_not_an_answer_without_audio(
        uas, peer):
    """No RTP could flow between our IPv4 socket and an IPv6-only offer: 488 with Warning
    301 (incompatible network address formats), not a 200 whose audio goes nowhere."""
    peer.send(peer.request("INVITE", branch="z9hG4bK" + secrets.token_hex(6),
                           body=sdp_offer("2001:db8::5", 40000)))
    peer.expect(100)
    channel = uas.channel()
    assert channel.answer() is State.IDLE
    refused = peer.expect(488)
    warning = refused.headers.get("Warning") or ""
    assert warning.startswith('301 uascall "'), warning
    assert "IP6 2001:db8::5" in warning and "IP4 127.0.0.1" in warning, warning


def test_a_sips_request_uri_over_udp_gets_416_saying_tls_is_needed(uas, peer):
    """RFC 3261 26.2.2: SIPS asks for TLS on each hop; over our UDP it is refused, where it
    was taken (and answered with a sip: Contact, which 12.1.1 forbids)."""
    peer.send(peer.request("INVITE", uri=f"sips:service@{peer.target_hostport}",
                           body=sdp_offer(peer.host, peer.rtp_port)))
    refused = peer.expect(416)
    assert "TLS" in refused.headers.get("Warning", "") and refused.to.tag
    assert uas.calls.empty()


def test_a_second_fork_that_answers_is_acked_and_ended_with_bye(uas):
    # RFC 3261 13.2.2.4: each 2xx from another fork is a dialog of its own, which the UAC
    # ACKs and, wanting one call, ends with BYE. We used to resend the first fork's ACK.
    with calling_scripted_callee(uas) as (far, channel):
        far.respond(180, "a")
        far.respond(180, "b")
        far.respond(200, "a", sdp_offer("127.0.0.1", far.port + 1, "8"))
        ack = far.receive()
        assert isinstance(ack, Request) and (ack.method, ack.to.tag) == ("ACK", "a")
        assert channel.wait_for_answer(3) is State.ANSWERED
        far.respond(200, "b", sdp_offer("127.0.0.1", far.port + 2, "8"))
        got = [far.receive(), far.receive()]
        assert sorted((m.method, m.to.tag) for m in got) == [("ACK", "b"), ("BYE", "b")]
        bye = next(m for m in got if m.method == "BYE")
        far.sock.sendto(("SIP/2.0 200 OK\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in bye.headers
            if name in ("Via", "From", "To", "Call-ID", "CSeq"))
            + "Content-Length: 0\r\n\r\n").encode(), far.source)
        far.respond(200, "b", sdp_offer("127.0.0.1", far.port + 2, "8"))  # retransmitted
        again = far.receive()
        assert (again.method, again.to.tag) == ("ACK", "b")  # the same ACK, no new BYE
        assert channel.state() is State.ANSWERED  # the call with the first fork goes on
