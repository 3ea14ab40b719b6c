"""Span faults, as an application on the span sees them: an alarm on the line, a D-channel
that goes down, RESTART from the far end, and a B-channel the far end says it cannot use.

Every scenario takes the ``rig`` fixture, so it runs on the simulator and, in
``tests/hw/vm-rig.sh``, on the real DAHDI driver, where the alarm is the real one: the
exchange's dynamic span is destroyed and dahdi_dynamic raises RED on ours when it hears
nothing more. A call that ends under an application ends as a caller's hang-up does: a
blocked ``ring()`` returns IDLE, a play returns HANGUP, ``get_digits()`` stops with
HANGUP, and everything after that raises Hangup.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.rigs import Rig
from uascall.backend import Cause
from uascall.channel import DTMFDetector, FilePlayer, State, UASCallChannel
from uascall.dahdi import abi
from uascall.engine import Engine
from uascall.errors import Hangup
from uascall.media.player import MediaClock
from uascall.sim.backend import SimBackend
from uascall.sim.farend import FarEndCall, PriLoop, pri_loop_conf

from .helpers import MEDIA, Wire, with_tones

#: short layer 2 timers and T309, so that a lost link is noticed in a second, not 20
TIMERS = {"T200": 100, "T203": 300, "N200": 2, "T309": 500}
#: for the alarms: an idle link noticed lost after 4 s, later than the real driver's RED
#: (1-2 s after the far span goes silent), as on a real line, whose framer sees a loss of
#: signal within milliseconds and libpri's idle link only after T203 (10 s)
ALARM_TIMERS = {**TIMERS, "T203": 4000}
RED, YELLOW, BLUE = abi.DAHDI_ALARM_RED, abi.DAHDI_ALARM_YELLOW, abi.DAHDI_ALARM_BLUE
#: a step on the line (a link coming up, an alarm the real driver notices after 1-2 s)
PATIENCE = 20.0


@dataclasses.dataclass
class Lines:
    """Our spans and the exchange on a rig, channels for the calls it offers us."""

    rig: Rig
    engine: Engine
    backend: SimBackend
    offered: list[UASCallChannel]
    wire: Wire

    @property
    def loop(self) -> PriLoop:
        assert self.backend.loop is not None
        return self.backend.loop

    def incoming(self, called: str = "5551000") -> tuple[UASCallChannel, FarEndCall]:
        before = len(self.offered)
        assert self.backend.far_end is not None
        far = self.engine.run(self.backend.far_end.dial, called)
        assert self.engine.wait_until(lambda: len(self.offered) > before, PATIENCE)
        return self.offered[-1], far

    def outbound(self, route: str | None = "pri") -> UASCallChannel:
        return UASCallChannel(self.engine, backend=self.backend, route=route,
                              media_clock=MediaClock(self.engine), media_dir=MEDIA)

    def in_service(self) -> bool:
        """Every span up and out of alarm, ours and the exchange's."""
        spans = self.loop.cpe_spans + self.loop.net_spans
        return all(span.up and not span.alarms for span in spans)


@pytest.fixture
def lines(rig, request):
    kind, pairs, timers = getattr(request, "param", ("E1", 1, TIMERS))
    # real time: libpri's timers, which bring layer 2 back, are wall-clock ones
    with rig.engine(virtual=False) as engine:
        conf = pri_loop_conf(kind, pairs, dynamic=True)
        backend = SimBackend(engine, kind=kind, pairs=pairs, timers=timers,
                             kernel=rig.kernel(engine, conf), conf=conf)
        clock = MediaClock(engine)
        offered: list[UASCallChannel] = []
        backend.on_incoming = lambda leg: offered.append(
            UASCallChannel(engine, leg, media_clock=clock, media_dir=MEDIA))
        engine.run(backend.start)
        assert engine.wait_until(lambda: backend.up, PATIENCE)
        assert backend.loop is not None
        world = Lines(rig, engine, backend, offered,
                      Wire(backend.loop.tap, backend.loop.cpe.layout.dchannel))
        yield world
        engine.run(backend.stop)


class Blocked:
    """An application call blocked in its own thread, and what it returned."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.result = call()
        except BaseException as exc:  # handed to the test thread by outcome()
            self.error = exc

    def outcome(self, timeout: float = PATIENCE) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the application call is still blocked"
        if self.error is not None:
            raise self.error
        return self.result


def span_log(caplog, span_name: str, words: str) -> list[str]:
    """Our span driver's log lines about ``span_name`` that contain ``words``."""
    return [r.getMessage() for r in caplog.records
            if r.name == "uascall.dahdi.pri" and r.getMessage().startswith(f"{span_name}:")
            and words in r.getMessage()]


def three_calls(lines: Lines) -> dict[str, tuple[UASCallChannel, Blocked]]:
    """A call ringing with early media, one playing a prompt and one collecting digits,
    each application blocked in that call."""
    ringing, _ = lines.incoming("5551000")
    playing, _ = lines.incoming("5551001")
    collecting, _ = lines.incoming("5551002")
    with_tones(ringing)
    assert playing.answer() is State.ANSWERED and collecting.answer() is State.ANSWERED
    blocked = {
        "ring": (ringing, Blocked(lambda: ringing.ring(
            seconds_ringtime=60, negotiate_early_media=True, custom_ringtone="RINGBACK_EU",
            loop_ringtone=True))),
        "play": (playing, Blocked(lambda: with_tones(playing).TonePlayer.play(
            "RINGBACK_EU", seconds_duration=60))),
        "digits": (collecting, Blocked(lambda: collecting.DTMFDetector.get_digits(
            count=4, seconds_predigits_timeout=60, seconds_timeout=60))),
    }
    lines.engine.sleep(0.5)  # all three under way
    return blocked


def assert_ended(blocked: dict[str, tuple[UASCallChannel, Blocked]], cause: Cause) -> None:
    """Every blocked call came back as a hang-up ends it, with ``cause``."""
    ringing, ring = blocked["ring"]
    assert ring.outcome() is State.IDLE
    playing, play = blocked["play"]
    assert play.outcome() is FilePlayer.Cause.HANGUP
    collecting, digits = blocked["digits"]
    assert digits.outcome() == ""
    assert collecting.DTMFDetector.cause() is DTMFDetector.Cause.HANGUP
    for channel, _ in blocked.values():
        assert channel.state() is State.IDLE and channel.cause() is cause, channel
    with pytest.raises(Hangup):
        playing.TonePlayer.play("RINGBACK_EU", seconds_duration=1)
    with pytest.raises(Hangup):
        ringing.answer()


def call_out(lines: Lines, route: str = "pri") -> tuple[UASCallChannel, State]:
    channel = lines.outbound(route)
    return channel, channel.call("5559000", seconds_timeout=PATIENCE)


# ------------------------------------------------------------------------------ alarms
@pytest.mark.parametrize("lines", [("E1", 1, ALARM_TIMERS), ("T1", 1, ALARM_TIMERS)],
                         indirect=True,
                         ids=["E1", "T1"])
@pytest.mark.parametrize("alarm", [
    RED,
    # The loc driver of the vm rig cannot hold a span in these: it raises only RED (a
    # peer that went silent) and YELLOW for the instant between a destroyed peer's
    # re-creation and its first frame.
    pytest.param(YELLOW, marks=pytest.mark.sim_only),
    pytest.param(BLUE, marks=pytest.mark.sim_only),
], ids=["RED", "YELLOW", "BLUE"])
def test_an_alarm_ends_the_spans_calls_refuses_new_ones_and_the_span_recovers(
        lines, alarm, caplog):
    caplog.set_level(logging.INFO, logger="uascall.dahdi.pri")
    engine, loop, far_end = lines.engine, lines.loop, lines.backend.far_end
    far_end.answer_after = 0.2
    blocked = three_calls(lines)
    caplog.clear()
    lines.rig.raise_alarm(engine, loop, alarm)
    assert engine.wait_until(lambda: loop.cpe.alarms & alarm, PATIENCE)
    assert_ended(blocked, Cause.OUTOFORDER)
    for ended, _ in blocked.values():  # network out of order, at once: not the link's
        assert ended.Details.raw_cause == "38"  # loss (27), a second later
    channel, state = call_out(lines)  # nothing else carries it: refused at once
    assert state is State.IDLE and channel.cause() is Cause.NOCHANNELS
    assert abi.alarm_names(alarm)[0] in channel.Details.raw_cause
    engine.sleep(1.0)  # the alarm stands: nothing more is logged about it
    assert len(span_log(caplog, loop.cpe.name, "span alarms")) == 1
    lines.rig.clear_alarm(engine, loop)
    assert engine.wait_until(lines.in_service, PATIENCE)
    engine.sleep(0.5)
    assert span_log(caplog, loop.cpe.name, "span alarms")[1:] == [
        f"{loop.cpe.name}: span alarms cleared"]
    incoming, _far = lines.incoming()
    assert incoming.answer() is State.ANSWERED
    channel, state = call_out(lines)
    assert state is State.ANSWERED
    for call in (incoming, channel):
        call.hang_up()


@pytest.mark.parametrize("lines", [("E1", 2, ALARM_TIMERS)], indirect=True, ids=["E1x2"])
def test_calls_out_take_a_span_in_service_or_end_with_nochannels(lines):
    engine, loop, far_end = lines.engine, lines.loop, lines.backend.far_end
    far_end.answer_after = 0.2
    lines.rig.raise_alarm(engine, loop, RED, pair=0)
    assert engine.wait_until(lambda: loop.cpe_spans[0].alarms & RED, PATIENCE)
    first, state = call_out(lines, "pri")  # the first span is in alarm: the second one
    assert state is State.ANSWERED
    assert far_end.incoming[-1].call.span is loop.net_spans[1]
    named, state = call_out(lines, f"pri:{loop.cpe_spans[0].layout.spanno}")
    assert state is State.IDLE and named.cause() is Cause.NOCHANNELS
    assert "RED" in named.Details.raw_cause
    lines.rig.raise_alarm(engine, loop, RED, pair=1)
    assert first.wait_for_idle(PATIENCE) is State.IDLE
    assert first.cause() is Cause.OUTOFORDER
    none, state = call_out(lines, "pri")
    assert state is State.IDLE and none.cause() is Cause.NOCHANNELS
    for pair in (0, 1):
        lines.rig.clear_alarm(engine, loop, pair=pair)
    assert engine.wait_until(lines.in_service, PATIENCE)
    again, state = call_out(lines, "pri")
    assert state is State.ANSWERED
    assert far_end.incoming[-1].call.span is loop.net_spans[0]
    again.hang_up()


# ------------------------------------------------------------------------------ layer 2
def test_a_d_channel_that_goes_down_ends_the_calls_and_refuses_new_ones_until_it_is_back(
        lines, caplog):
    """Layer 2 lost with layer 1 up (the far end's signalling stopped): libpri clears the
    calls not yet answered when it cannot bring the link back, and the answered ones
    after T309 (0.5 s here), both with cause 27, destination out of order."""
    caplog.set_level(logging.INFO, logger="uascall.dahdi.pri")
    engine, loop = lines.engine, lines.loop
    lines.backend.far_end.answer_after = 0.2
    blocked = three_calls(lines)
    caplog.clear()
    engine.run(loop.tap.cut, loop.cpe.layout.dchannel)
    assert engine.wait_until(lambda: not loop.cpe.up, PATIENCE)
    channel, state = call_out(lines)
    assert state is State.IDLE and channel.cause() is Cause.NOCHANNELS
    assert "down" in channel.Details.raw_cause
    assert_ended(blocked, Cause.OUTOFORDER)
    for channel_, _ in blocked.values():
        assert channel_.Details.raw_cause == "27"
    engine.sleep(1.0)  # the link stays down: libpri keeps trying, we say it once
    assert len(span_log(caplog, loop.cpe.name, "D-channel down")) == 1
    engine.run(loop.tap.cut, loop.cpe.layout.dchannel, False)
    assert engine.wait_until(lines.in_service, PATIENCE)
    assert len(span_log(caplog, loop.cpe.name, "D-channel up")) == 1
    incoming, _far = lines.incoming()
    assert incoming.answer() is State.ANSWERED
    incoming.hang_up()


# ------------------------------------------------------------------------------ RESTART
def test_restart_of_one_b_channel_ends_only_the_call_on_it(lines):
    engine, loop = lines.engine, lines.loop
    first, far_first = lines.incoming("5551000")
    second, _far_second = lines.incoming("5551001")
    for channel in (first, second):
        assert channel.answer() is State.ANSWERED
    play = Blocked(lambda: with_tones(first).TonePlayer.play("RINGBACK_EU",
                                                             seconds_duration=60))
    engine.sleep(0.5)
    engine.run(loop.net.restart, far_first.call.chanpos)
    assert play.outcome() is FilePlayer.Cause.HANGUP
    assert first.state() is State.IDLE and first.cause() is Cause.FAILED
    assert first.Details.raw_cause == "41"  # temporary failure: try again at once
    assert second.state() is State.ANSWERED
    assert with_tones(second).TonePlayer.play("RINGBACK_EU", seconds_duration=0.2) is \
        FilePlayer.Cause.NORMAL
    again, far_again = lines.incoming("5551002")  # the exchange takes the channel again
    assert far_again.call.chanpos == far_first.call.chanpos
    assert again.answer() is State.ANSWERED
    for channel in (second, again):
        channel.hang_up()


@pytest.mark.parametrize("restart_class", [7, 6], ids=["all-interfaces", "one-interface"])
def test_restart_of_the_interface_ends_every_call_on_the_span(lines, restart_class):
    engine, loop = lines.engine, lines.loop
    blocked = three_calls(lines)
    engine.run(loop.restart_interface, 0, restart_class)
    assert_ended(blocked, Cause.FAILED)
    assert lines.wire.find("cpe", "RESTART ACKNOWLEDGE")
    assert not engine.run(lambda: loop.cpe.calls)
    incoming, _far = lines.incoming()
    assert incoming.answer() is State.ANSWERED
    incoming.hang_up()


# ------------------------------------------------------------------------------ cause 44
@pytest.mark.parametrize("restart", ["channel", "interface", "ours"])
def test_a_b_channel_the_far_end_cannot_use_is_left_alone_until_it_is_restarted(
        lines, restart, caplog):
    """The exchange clears our call with cause 44 (requested circuit/channel not
    available). The first time we RESTART that B-channel (the far end may still hold a
    call there that we no longer have) and take it again once the RESTART is
    acknowledged; refused again with no call connected on it meanwhile, it is not offered
    again, by us, until a RESTART for it (from either end) or for the interface. Our side
    hunts from the top channel down, so the channel refused first is the one it would
    take next."""
    caplog.set_level(logging.INFO, logger="uascall.dahdi.pri")
    engine, loop, far_end = lines.engine, lines.loop, lines.backend.far_end
    far_end.reject_cause = 44
    refused, state = call_out(lines)
    assert state is State.IDLE and refused.cause() is Cause.NOCHANNELS
    bad = far_end.incoming[-1].call.chanpos
    assert engine.wait_until(lambda: "RESTART" in lines.wire.names("cpe")
                             and bad not in loop.cpe.out_of_service, PATIENCE)
    assert lines.wire.find("cpe", "RESTART").channel == bad
    refused, state = call_out(lines)
    assert state is State.IDLE and refused.cause() is Cause.NOCHANNELS
    assert far_end.incoming[-1].call.chanpos == bad
    assert lines.wire.names("cpe").count("RESTART") == 1  # once only
    far_end.reject_cause = None
    far_end.answer_after = 0.2
    avoided, state = call_out(lines)
    assert lines.wire.find("cpe", "SETUP").channel not in (bad, None)
    assert state is State.ANSWERED
    assert engine.run(lambda: bad in loop.cpe.out_of_service)
    assert len(span_log(caplog, loop.cpe.name, f"B-channel {bad}: the far end")) == 1
    if restart == "channel":
        engine.run(loop.net.restart, bad)
    elif restart == "interface":
        engine.run(loop.restart_interface)  # avoided's call ends with it
        assert avoided.wait_for_idle(PATIENCE) is State.IDLE
    else:
        engine.run(loop.cpe.restart, bad)
    assert engine.wait_until(lambda: bad not in loop.cpe.out_of_service, PATIENCE)
    taken, state = call_out(lines)
    assert state is State.ANSWERED
    assert lines.wire.find("cpe", "SETUP").channel == bad
    for channel in (avoided, taken):
        with contextlib.suppress(Hangup):
            channel.hang_up()
