"""Calls that garbage on the D-channel left on the spans for good (issue 12, found by
bench/fuzz_q931.py).

libpri 1.6 ends some calls without any event: a SETUP or RESTART with a mandatory IE
missing that carries a live call's reference frees that call's record (after a RELEASE
COMPLETE or a STATUS to the far end), a RESTART ACKNOWLEDGE on it puts it in the Null
state, where the next hangup frees it sending nothing. Our span kept such calls, with
their B-channels, for ever, and later handed the freed pointer back to libpri (which
logged "Called with invalid call ptr"), by then possibly another call's record: malloc
gives the address to the next call. A span now checks, after every frame and timer, that
libpri still holds each call's record (the pointer in its pool with the call reference it
had), and clears a lost call with cause 41 and RESTARTs its B-channel, since the far end
may still hold a call there. When T308 expires twice (Q.931 5.3.4.3) the B-channel goes to
maintenance and is restarted too, and a call whose clearing is not over within T305 +
2 x T308 and one layer 2 re-establishment is released by the span, whatever libpri does.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest

from uascall.dahdi import q931
from uascall.dahdi.pri import CallCleared, CallProceeding, PriCall
from uascall.dahdi.q931_ie import ChannelIdentification, RestartIndicator

from .helpers import T, wait_for_libpri

#: small Q.931 clearing timers, so that T305 and T308 run out within a test
TIMERS = {"T305": 300, "T308": 200, "T200": 100, "N200": 2, "T203": 2000}
TEMPORARY_FAILURE = 41
#: a maintenance message (protocol discriminator 3) that the binding keeps from libpri
MAINTENANCE_MESSAGE = bytes([0x03, 0x00, 0x01])


def ui_frame(message: q931.Message) -> bytes:
    """``message`` in an unnumbered frame from the exchange (a command from the network
    side): libpri hands it to Q.931 whatever the link's sequence numbers."""
    return q931.LapdFrame(kind="UI", sapi=0, tei=0, cr=1, info=message.serialize()).serialize()


@pytest.fixture
def engine(rig):
    with rig.engine(virtual=False) as engine:  # libpri's timers are wall-clock ones
        yield engine


@pytest.fixture
def loop(rig, engine):
    return rig.pri_loop(engine, "E1", timers=TIMERS)


def wire_of(engine, loop) -> list[tuple[str, q931.Message]]:
    """Every Q.931 message that crosses the loop from now on, with its sender."""
    seen: list[tuple[str, q931.Message]] = []

    def tap(record) -> None:
        try:
            message = q931.LapdFrame.parse(record.frame).q931()
        except q931.Q931DecodeError:
            return
        if message is not None:
            sender = "cpe" if record.from_channel == loop.cpe.layout.dchannel else "net"
            seen.append((sender, message))

    engine.run(loop.tap.frame_taps.append, tap)
    return seen


def restarts(seen, sender: str) -> list[int | None]:
    return [m.channel for who, m in seen if who == sender and m.name == "RESTART"]


def call_out_proceeding(engine, loop) -> tuple[PriCall, list]:
    """A call from our span that the exchange takes (CALL PROCEEDING) but never answers."""
    taken: list[PriCall] = []
    loop.net.on_incoming = taken.append
    events: list = []
    call = engine.run(lambda: loop.cpe.call("5551000", calling="5552000"))
    call.listeners.append(lambda _call, event: events.append(event))
    assert engine.wait_until(lambda: any(isinstance(e, CallProceeding) for e in events)
                             and taken, T)
    return call, taken


def libpri_complaints(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "invalid call ptr" in r.getMessage()
            and "pri_get_crv" not in r.getMessage()]  # our own check


@pytest.mark.parametrize("message", [
    # a SETUP with no IE: libpri sends RELEASE COMPLETE (cause 96) and frees the call
    lambda cref, chan: q931.Message(q931.MessageType.SETUP, cref, True),
    # a RESTART without its Restart indicator: libpri sends STATUS and frees the call;
    # the exchange is told nothing and still holds its side
    lambda cref, chan: q931.Message(q931.MessageType.RESTART, cref, True),
    # a RESTART ACKNOWLEDGE: libpri puts the call in the Null state, and our hangup frees
    # it sending nothing
    lambda cref, chan: q931.Message(
        q931.MessageType.RESTART_ACKNOWLEDGE, cref, True,
        (ChannelIdentification(channels=(chan,)).to_ie(), RestartIndicator(0).to_ie())),
], ids=["setup-missing-ies", "restart-missing-ies", "restart-acknowledge"])
def test_a_call_libpri_drops_without_an_event_is_cleared_and_its_channel_restarted(
        engine, loop, message, caplog):
    caplog.set_level(logging.DEBUG, logger="uascall.dahdi")
    call, taken = call_out_proceeding(engine, loop)
    seen = wire_of(engine, loop)
    frame = ui_frame(message(call.cref, call.chanpos))
    engine.run(loop.tap.inject_frame, loop.cpe.layout.dchannel, frame)
    engine.sleep(0.1)  # the frame crosses the line (about 1 ms) and libpri takes it
    engine.run(call.hangup)  # the application hangs up: harmless on a lost call
    assert wait_for_libpri(engine, lambda: call.cleared and not loop.cpe.calls, T), \
        f"{call!r} still on the span: {loop.cpe.calls}"
    assert call.cleared_by in ("span", "local")
    # the B-channel is restarted, which clears whatever the exchange still holds there,
    # and comes back into our choice with the acknowledgement
    assert wait_for_libpri(engine, lambda: call.chanpos in restarts(seen, "cpe")
                           and call.chanpos not in loop.cpe.out_of_service
                           and taken[0].cleared and not loop.net.calls, T)
    assert not libpri_complaints(caplog)  # no freed pointer handed back to libpri
    lost = [r for r in caplog.records if r.name == "uascall.dahdi.pri"
            and r.levelno == logging.WARNING and repr(call).split(" ")[2] in r.getMessage()
            and "lost" in r.getMessage()]
    assert len(lost) <= 1  # logged once, never silently: either lost, or cleared by us
    # and the channel carries a call again
    again = engine.run(lambda: loop.cpe.call("5551000", chanpos=call.chanpos))
    assert engine.wait_until(lambda: len(taken) == 2, T)
    engine.run(again.hangup)
    assert wait_for_libpri(engine, lambda: not loop.cpe.calls and not loop.net.calls, T)


def test_a_live_call_libpri_freed_is_found_without_anyone_touching_it(engine, loop, caplog):
    """Nobody hangs up: the span notices by itself that libpri dropped the call."""
    caplog.set_level(logging.WARNING, logger="uascall.dahdi.pri")
    call, _taken = call_out_proceeding(engine, loop)
    cleared: list = []
    call.listeners.append(lambda _call, event: cleared.append(event))
    frame = ui_frame(q931.Message(q931.MessageType.SETUP, call.cref, True))
    engine.run(loop.tap.inject_frame, loop.cpe.layout.dchannel, frame)
    assert wait_for_libpri(engine, lambda: call.cleared and not loop.cpe.calls, T)
    assert cleared == [CallCleared(TEMPORARY_FAILURE, "span")]
    assert [r for r in caplog.records if "lost" in r.getMessage()]


def test_t308_twice_puts_the_b_channel_in_maintenance_and_restarts_it(engine, loop, caplog):
    """Q.931 5.3.4.3: our RELEASE unanswered twice, the call reference is released and
    the B-channel restarted; it is offered again once the RESTART is acknowledged."""
    caplog.set_level(logging.INFO, logger="uascall.dahdi.pri")
    call, _taken = call_out_proceeding(engine, loop)
    seen = wire_of(engine, loop)
    cref = call.cref

    def lose_the_calls_messages_from_the_exchange(channo: int, frame: bytes):
        # The I frame still crosses (losing it would stop layer 2, which delivers in
        # order); its message becomes a maintenance one, which Q.931 never sees.
        if channo != loop.net.layout.dchannel:
            return frame
        try:
            lapd = q931.LapdFrame.parse(frame)
            message = lapd.q931()
        except q931.Q931DecodeError:
            return frame
        if message is None or message.call_reference != cref:
            return frame
        return dataclasses.replace(lapd, info=MAINTENANCE_MESSAGE).serialize()

    engine.run(setattr, loop.tap, "frame_filter", lose_the_calls_messages_from_the_exchange)
    engine.run(call.hangup)
    assert wait_for_libpri(engine, lambda: call.cleared and not loop.cpe.calls, T)
    names = [m.name for who, m in seen if who == "cpe" and m.call_reference == cref]
    assert names.count("RELEASE") == 2  # T305 ran out, then T308 once
    assert wait_for_libpri(engine, lambda: call.chanpos in restarts(seen, "cpe")
                           and call.chanpos not in loop.cpe.out_of_service, T)
    assert any("T308 twice" in r.getMessage() for r in caplog.records)
    engine.run(setattr, loop.tap, "frame_filter", None)
    assert wait_for_libpri(engine, lambda: not loop.net.calls, T)
