"""A SIP call's phases as one declared table (uascall.sip.call.TRANSITIONS / ABSORBED):
every transition it allows, what it refuses and whose fault that is, and a far end's
messages out of phase answered as RFC 3261 asks."""

from __future__ import annotations

import re
import threading
import time

import pytest

from tests.sim.sip_peer import held_by, incoming, settled
from uascall.channel import State
from uascall.errors import LocalProtocolError, RemoteProtocolError
from uascall.sip.call import ABSORBED, REFUSAL_STATUS, TRANSITIONS, Event, Phase, SipCall
from uascall.sip.message import Response

UAS_PHASES = {Phase.INCOMING, Phase.EARLY, Phase.ANSWERING}
UAC_PHASES = {Phase.OUTGOING, Phase.PROCEEDING}


def a_call(uas, phase: Phase) -> SipCall:
    """A call of the user agent's in ``phase`` (engine thread), set there directly: these
    tests are of the table, not of the way there."""
    call = SipCall(uas.backend.ua.call_host, incoming=phase not in UAC_PHASES,
                   call_id=f"phases-{time.monotonic_ns()}")
    call.phase = phase
    return call


ALLOWED = [(event, phase, target) for event, table in TRANSITIONS.items()
           for phase, target in table.items()]


def test_every_event_has_a_row_and_nothing_is_both_taken_and_absorbed() -> None:
    assert set(TRANSITIONS) == set(Event)
    for event, phases in ABSORBED.items():
        assert not phases & set(TRANSITIONS[event]), event
    for event, statuses in REFUSAL_STATUS.items():
        assert event.remote and not set(statuses) & set(TRANSITIONS[event]), event
    # the UAS's and the UAC's set-up phases never lead into each other's
    for event, table in TRANSITIONS.items():
        for phase, target in table.items():
            assert not (phase in UAS_PHASES and target in UAC_PHASES), (event, phase)
            assert not (phase in UAC_PHASES and target in UAS_PHASES), (event, phase)


@pytest.mark.parametrize(("event", "phase", "target"), ALLOWED,
                         ids=[f"{e.name}-{p.name}" for e, p, _t in ALLOWED])
def test_every_allowed_transition_leads_where_the_table_says(uas, event, phase, target):
    def step() -> tuple[bool, Phase]:
        call = a_call(uas, phase)
        return call._step(event), call.phase

    assert uas.engine.run(step) == (True, target)
    assert uas.engine.run(held_by, uas.backend.ua) == []  # ENDED took it off the tables


ABSORBED_PAIRS = [(event, phase) for event, phases in ABSORBED.items()
                  for phase in sorted(phases, key=list(Phase).index)]


@pytest.mark.parametrize(("event", "phase"), ABSORBED_PAIRS,
                         ids=[f"{e.name}-{p.name}" for e, p in ABSORBED_PAIRS])
def test_an_absorbed_event_changes_nothing(uas, event, phase):
    def step() -> tuple[bool, Phase]:
        call = a_call(uas, phase)
        return call._step(event), call.phase

    assert uas.engine.run(step) == (False, phase)


@pytest.mark.parametrize(("event", "phase", "text"), [
    (Event.SEND_2XX, Phase.ANSWERING, r"send the answer \(200\) in phase ANSWERING; expected "
                                      r"in INCOMING or EARLY"),
    (Event.SEND_2XX, Phase.OUTGOING, r"in phase OUTGOING; expected in INCOMING or EARLY"),
    (Event.SEND_BYE, Phase.EARLY, r"send a BYE in phase EARLY; expected in CONFIRMED"),
    (Event.SEND_PROVISIONAL, Phase.PROCEEDING, r"provisional .* in phase PROCEEDING"),
    (Event.CANCEL_GAVE_UP, Phase.CONFIRMED, r"CANCEL in phase CONFIRMED; expected in "
                                            r"PROCEEDING"),
    (Event.CONFIRM_WITHOUT_ACK, Phase.ENDING, r"in phase ENDING; expected in ANSWERING"),
])
def test_a_refused_step_of_ours_is_a_local_protocol_error_and_changes_nothing(
        uas, event, phase, text):
    def step() -> tuple[Exception, Phase]:
        call = a_call(uas, phase)
        with pytest.raises(LocalProtocolError) as refused:
            call._step(event)
        return refused.value, call.phase

    error, after = uas.engine.run(step)
    assert after is phase
    assert error.state is phase and error.event is event
    message = str(error)
    assert "<SipCall phases-" in message  # names the call
    assert "ours, not the far end's" in message
    assert re.search(text, message), message


@pytest.mark.parametrize(("event", "phase", "status"), [
    (Event.RECEIVE_ACK, Phase.EARLY, 481),
    (Event.RECEIVE_REINVITE, Phase.INCOMING, 500),
    (Event.RECEIVE_REINVITE, Phase.EARLY, 500),
    (Event.RECEIVE_REINVITE, Phase.ANSWERING, 491),
    (Event.RECEIVE_REINVITE, Phase.PROCEEDING, 491),
    (Event.RECEIVE_REINVITE, Phase.ENDING, 481),
    (Event.RECEIVE_BYE, Phase.PROCEEDING, 481),
    (Event.RECEIVE_2XX, Phase.ENDING, 481),
    (Event.BYE_ANSWERED, Phase.CONFIRMED, 481),
])
def test_a_far_ends_message_out_of_phase_is_a_remote_protocol_error(uas, event, phase, status):
    def step() -> tuple[RemoteProtocolError, Phase]:
        call = a_call(uas, phase)
        with pytest.raises(RemoteProtocolError) as refused:
            call._step(event)
        return refused.value, call.phase

    error, after = uas.engine.run(step)
    assert after is phase
    assert error.status == status
    message = str(error)
    assert f"the far end sent {event.text} in phase {phase.name}; expected only in" in message
    assert "the far end's fault" in message


# --------------------------------------------------------------------------- on the wire
def ringing(uas, peer):
    """An incoming call rung with 180 (an early dialog: the caller has our To-tag)."""
    channel = incoming(uas, peer)
    assert channel.ring() is State.RING_INCOMING
    peer.expect(180)
    return channel


def only_responses(peer, seconds: float) -> list[Response]:
    return [r.message for r in peer.poll(seconds) if isinstance(r.message, Response)]


def reinvite(peer) -> None:
    peer.cseq += 1
    peer.send(peer.request("INVITE", cseq=peer.cseq, to_tag=peer.to_tag))


def test_a_bye_before_the_ack_ends_the_call_and_the_200s_retransmissions(uas, peer):
    """RFC 3261 15: the caller may BYE a dialog whose ACK it has not sent (or that is
    lost): 200 for the BYE, our 2xx retransmissions stop, a late ACK is absorbed."""
    channel = incoming(uas, peer)
    got: list[State] = []
    thread = threading.Thread(target=lambda: got.append(channel.answer()))
    thread.start()
    ok = peer.expect(200, method="INVITE")
    peer.bye()
    peer.expect(200, method="BYE")
    thread.join(5)
    assert got == [State.IDLE] and channel.Details.raw_cause == "BYE"
    peer.poll(0.1)  # a retransmission that crossed the BYE
    assert only_responses(peer, 0.6) == []  # T1 = 50 ms: four would have come
    peer.ack(ok)
    assert only_responses(peer, 0.3) == []
    assert uas.engine.run(held_by, uas.backend.ua) == []


def test_a_bye_in_the_early_dialog_answers_the_invite_487(uas, peer):
    """RFC 3261 15.1.2: the caller's BYE before our final response: 200 for it, 487 for
    the INVITE, and the call is cleared by the caller."""
    channel = ringing(uas, peer)
    peer.bye()
    peer.expect(200, method="BYE")
    peer.expect(487, method="INVITE")
    assert channel.wait_for_idle(2) is State.IDLE
    assert channel.Details.raw_cause == "BYE"
    assert uas.engine.run(held_by, uas.backend.ua) == []


def test_a_reinvite_in_the_early_dialog_is_refused_500_and_the_call_goes_on(uas, peer):
    """RFC 3261 14.2: a second INVITE before our final response to the first: 500 with a
    Retry-After of 0 to 10 s. The first INVITE is still ours to answer."""
    channel = ringing(uas, peer)
    reinvite(peer)
    refused = peer.expect(500, method="INVITE")
    assert 0 <= int(refused.headers.get("Retry-After") or "-1") <= 10
    assert refused.to.tag == peer.to_tag
    assert "in phase EARLY" in (refused.headers.get("Warning") or "")
    peer.cseq -= 1  # the ACK for the 200 is the first INVITE's
    result: list[State] = []
    thread = threading.Thread(target=lambda: result.append(channel.answer()))
    thread.start()
    peer.ack(peer.expect(200, method="INVITE"))
    thread.join(5)
    assert result == [State.ANSWERED]


def test_a_reinvite_before_the_ack_is_refused_491(uas, peer):
    """Our 200's offer/answer is not complete until the ACK: a re-INVITE then is 491."""
    channel = incoming(uas, peer)
    result: list[State] = []
    thread = threading.Thread(target=lambda: result.append(channel.answer()))
    thread.start()
    ok = peer.expect(200, method="INVITE")
    reinvite(peer)
    peer.expect(491, method="INVITE")
    peer.cseq -= 1
    peer.ack(ok)
    thread.join(5)
    assert result == [State.ANSWERED]


def test_a_reinvite_while_our_bye_is_pending_is_refused_481(uas, peer):
    """After our BYE the session is over (RFC 3261 15.1.1): a re-INVITE crossing it is
    481, as for a dialog that is gone; the BYE's 200 then ends the call."""
    channel = incoming(uas, peer)
    result: list[State] = []
    thread = threading.Thread(target=lambda: result.append(channel.answer()))
    thread.start()
    peer.ack(peer.expect(200, method="INVITE"))
    thread.join(5)
    hung = threading.Thread(target=channel.hang_up)
    hung.start()
    bye = peer.expect("BYE")
    reinvite(peer)
    peer.expect(481, method="INVITE")
    peer.respond_to(bye, 200)
    hung.join(5)
    assert channel.state() is State.IDLE  # since our BYE (the call ENDING until its 200)
    # the 200 may still be on its way to the engine: wait for it to end the call
    assert settled(uas), uas.engine.run(held_by, uas.backend.ua)


def test_an_ack_before_any_2xx_is_dropped_and_the_call_rings_on(uas, peer):
    """An ACK in the early dialog acknowledges nothing: dropped (an ACK is never
    answered), the call unchanged."""
    channel = ringing(uas, peer)
    peer.send(peer.request("ACK", to_tag=peer.to_tag))
    assert only_responses(peer, 0.3) == []
    call, = uas.engine.run(lambda: list(uas.backend.ua.calls))
    assert call.phase is Phase.EARLY
    channel.hang_up()
    peer.expect(480, method="INVITE")


def test_answering_twice_is_our_error_naming_the_call_and_phase(uas, peer):
    """The leg refuses a second answer() (the channel's own checks come first): a
    LocalProtocolError naming the call and its phase; nothing is sent."""
    channel = incoming(uas, peer)
    result: list[State] = []
    thread = threading.Thread(target=lambda: result.append(channel.answer()))
    thread.start()
    ok = peer.expect(200, method="INVITE")
    call, = uas.engine.run(lambda: list(uas.backend.ua.calls))
    with pytest.raises(LocalProtocolError, match=r"<SipCall .* ANSWERING>: send the answer "
                                                 r"\(200\) in phase ANSWERING; expected in "
                                                 r"INCOMING or EARLY"):
        uas.engine.run(call.answer)
    assert call.phase is Phase.ANSWERING
    peer.ack(ok)
    thread.join(5)
    assert result == [State.ANSWERED]
