"""Outbound channels on a PRI span: call(), start_call(), and how calls out end."""

from __future__ import annotations

import pytest

from tests import audio
from uascall.backend import Cause
from uascall.channel import State, UASCallChannel
from uascall.errors import ArgumentError, Error
from uascall.media.player import MediaClock

from .helpers import MEDIA, T


def outbound(world, route: str | None = "pri") -> UASCallChannel:
    return UASCallChannel(world.engine, backend=world.backend, route=route,
                          media_clock=MediaClock(world.engine), media_dir=MEDIA)


def test_a_call_out_rings_is_answered_and_hangs_up(world):
    far_end = world.backend.far_end
    far_end.answer_after = 2.0
    channel = outbound(world)
    seen = []
    world.engine.run(channel.listeners.append, lambda ch, event: seen.append(event))
    state, took = world.elapsed(channel.call, "5559000", call_from="5551000")
    assert state is State.ANSWERED and took == world.approx(2.0, 0.05)
    assert [e.state for e in seen if hasattr(e, "state")] == [
        State.CALL_OUTGOING, State.RING_OUTGOING, State.ANSWERED]
    far = far_end.incoming[-1]
    assert (far.call.called, far.call.calling) == ("5559000", "5551000")
    setup = world.wire.find("cpe", "SETUP")
    assert setup.called_number == "5559000" and setup.layer1_law == world.law
    mark = len(far.heard)
    channel.FilePlayer.play("goodbye.wav")  # the far end hears the application
    heard = audio.decode(bytes(far.heard[mark:]), world.law)
    assert len(heard) > 2 * 8000 and audio.level_dbm0(heard, world.law) > -35
    assert channel.hang_up() is State.IDLE and channel.cause() is Cause.NORMAL
    assert world.engine.wait_until(lambda: far.cleared, T) and far.call.cause == 16
    assert channel.Details.direction == "outbound"


@pytest.mark.parametrize("q850, cause", [(17, Cause.BUSY), (1, Cause.UNOBTAINABLE),
                                         (34, Cause.NOCHANNELS)])
def test_a_refused_call_out_ends_with_the_far_ends_cause(world, q850, cause):
    world.backend.far_end.reject_cause = q850
    channel = outbound(world)
    assert channel.call("5559000") is State.IDLE
    assert channel.cause() is cause and channel.Details.raw_cause == str(q850)


def test_no_answer_in_time_is_noanswer_and_the_channel_calls_again(world):
    far_end = world.backend.far_end
    far_end.answer_after = None
    channel = outbound(world)
    state, took = world.elapsed(channel.call, "5559000", seconds_timeout=5)
    assert state is State.IDLE and took == world.approx(5.0, 0.05)
    assert channel.cause() is Cause.NOANSWER  # it was ringing
    assert world.engine.wait_until(lambda: far_end.incoming[-1].cleared, T)
    assert far_end.incoming[-1].call.cause == 19  # no answer from user (user alerted)
    far_end.answer_after = 0.5
    assert channel.call("5559001") is State.ANSWERED  # an outbound channel is reusable
    assert channel.Details.call_to == "5559001" and channel.cause() is Cause.NORMAL
    channel.hang_up()


def test_start_call_returns_at_once_and_wait_for_answer_follows_it(world):
    world.backend.far_end.answer_after = 1.0
    channel = outbound(world)
    state, took = world.elapsed(channel.start_call, "5559000")
    assert state in (State.CALL_OUTGOING, State.RING_OUTGOING) and took < 0.1 + world.slack
    assert channel.wait_for_answer(T) is State.ANSWERED
    channel.hang_up()


def test_no_free_channel_ends_the_call_at_once_with_nochannels(world):
    world.backend.far_end.answer_after = None
    busy = [outbound(world) for _ in range(len(world.backend.loop.cpe.layout.bchannels))]
    for channel in busy:
        assert channel.start_call("5559000") in (State.CALL_OUTGOING, State.RING_OUTGOING)
    extra = outbound(world)
    seen = []
    world.engine.run(extra.listeners.append, lambda ch, event: seen.append(event))
    assert extra.call("5559000") is State.IDLE
    assert extra.cause() is Cause.NOCHANNELS and "no PRI span" in extra.Details.raw_cause
    # listeners see the call asked for and its end, as for any other call
    assert [e.state for e in seen] == [State.CALL_OUTGOING, State.IDLE]
    for channel in busy:
        channel.hang_up()


def test_call_refusals(world):
    channel, _far = world.incoming()
    with pytest.raises(Error, match=r"call\(\) on an inbound call's channel"):
        channel.call("123")
    out = outbound(world)
    for bad in ("", "   ", 42):
        with pytest.raises(ArgumentError, match="call_to"):
            out.call(bad)
    with pytest.raises(Error, match="live speaker detection is not available"):
        out.call("123", live_speaker_detect=object())
    with pytest.raises(ArgumentError, match="g729"):
        out.call("123", codecs="g729")
    with pytest.raises(ArgumentError, match="route 'isdn'"):
        outbound(world, route="isdn").call("123")
    rerouted = outbound(world, route="isdn")
    rerouted.route = "pri"  # one channel's calls may go another way, call by call
    assert rerouted.route == "pri"
    for bad in ("", 5):
        with pytest.raises(ArgumentError, match="route="):
            rerouted.route = bad
    world.backend.far_end.answer_after = 0.5
    assert out.call("123") is State.ANSWERED
    with pytest.raises(Error, match=r"call\(\) in state ANSWERED; expected IDLE"):
        out.call("124")
    with pytest.raises(ArgumentError, match=r"needs a leg .* or a backend"):
        UASCallChannel(world.engine, media_clock=MediaClock(world.engine))
