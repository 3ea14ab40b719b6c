"""connect() and disconnect() on PRI: two calls of the exchange joined through uascall.

Scenarios on the ``rig`` fixture (the simulator in virtual time, and the real DAHDI driver
in the vm rig). One call comes in from the exchange and is answered, the other goes out to
the exchange and is answered there; the two far ends are the exchange's libpri side, which
talks and presses keys on its B-channels and records what it hears. What each far end
heard is analysed with the test's own filters (``tests/audio.py``).
"""

from __future__ import annotations

import time

import pytest

from tests import audio
from uascall.backend import Cause
from uascall.channel import Connected, Disconnected, State, UASCallChannel
from uascall.errors import ArgumentError, Error, Hangup
from uascall.media.player import MediaClock

from .helpers import MEDIA, T, World, with_tones
from .test_listening import events_of, tone


def answered_in(world: World):
    channel, far = world.incoming()
    assert channel.answer() is State.ANSWERED
    return channel, far


def answered_out(world: World, number: str = "5559000"):
    world.backend.far_end.answer_after = 0.2
    channel = UASCallChannel(world.engine, backend=world.backend, route="pri",
                             media_clock=MediaClock(world.engine), media_dir=MEDIA)
    assert channel.call(number, call_from="5551000", seconds_timeout=T) is State.ANSWERED
    return channel, world.backend.far_end.incoming[-1]


def joined(world: World):
    a, far_a = answered_in(world)
    b, far_b = answered_out(world)
    assert a.connect(b) is True
    return a, far_a, b, far_b


def heard_since(far, mark: int, law: str) -> list[int]:
    return audio.decode(bytes(far.heard[mark:]), law)


def keys_heard(world: World, far, mark: int) -> str:
    """The keys ``far`` heard in band since ``mark``, a second after the last was pressed
    (the real driver's path is slower than the simulator's). Analysed once: the test's
    own detector is plain Python, slow under emulation."""
    world.engine.sleep(1.0)
    return audio.dtmf_keys(heard_since(far, mark, world.law), world.law)


def test_each_far_end_hears_the_other(world):
    a, far_a, b, far_b = joined(world)
    assert a.Details.connected_id == b.Details.call_id != ""
    assert b.Details.connected_id == a.Details.call_id
    law = world.law
    marks = len(far_a.heard), len(far_b.heard)
    world.engine.run(far_a.say, tone(697.0, 1.0, -10.0, law))
    world.engine.run(far_b.say, tone(1209.0, 1.0, -16.0, law))
    world.engine.sleep(1.5)
    to_b = heard_since(far_b, marks[1], law)
    to_a = heard_since(far_a, marks[0], law)
    for heard, freq, level in ((to_b, 697.0, -10.0), (to_a, 1209.0, -16.0)):
        on = audio.steady(heard, freq, law)
        # the whole second but its two edge frames (and, on the real driver in real time,
        # a frame a late engine may slip)
        assert 0.94 - world.slack / 5 <= len(on) / 8000 <= 1.0
        assert audio.dominant_frequency(on) == pytest.approx(freq, abs=3)
        # a G.711 path is transparent: the level arrives as it was sent
        levels = sorted(audio.level_dbm0(on[n:n + 160], law) for n in range(0, len(on), 160))
        assert levels[len(levels) // 2] == pytest.approx(level, abs=0.3)
    a.hang_up()
    b.hang_up()


def test_keys_cross_the_bridge_in_band_and_reach_both_detectors(world):
    a, far_a, b, far_b = joined(world)
    mark = len(far_b.heard)
    world.engine.run(lambda: far_a.press("159#"))
    # a's own detector still hears its far end's keys
    assert a.DTMFDetector.get_digits(count=4, seconds_predigits_timeout=T,
                                     seconds_interdigit_timeout=T) == "159#"
    assert keys_heard(world, far_b, mark) == "159#"
    # b's detector does not take the keys it passed on for its own far end's
    assert b.DTMFDetector.get_digits(count=1, seconds_predigits_timeout=0.5) == ""
    a.hang_up()
    b.hang_up()


@pytest.mark.parametrize("offset_ms", [5, 25, 45, 65])
def test_keys_cross_the_bridge_whole_when_the_engine_stalls_during_them(live_world,
                                                                        offset_ms):
    """The engine held up for 70 ms in each key (a loaded or emulated machine; CI's vm
    rig lost and doubled keys so): longer than the bridge's queue towards b, shorter than
    a's read buffers. Each key still reaches b's far end once: the kernel sounds it
    there, on the line's clock, instead of the tone passed on frame by frame, which broke
    in two or was cut short ('1599#', '19#' for '159#' before)."""
    world = live_world
    a, far_a, b, far_b = joined(world)
    mark = len(far_b.heard)

    def press_and_stall() -> None:
        start = far_a.key("159#")  # the exchange's kernel: 100 ms on, 100 ms off
        for key in range(4):
            world.engine.call_at(start + 0.2 * key + offset_ms / 1000, time.sleep, 0.07)

    world.engine.run(press_and_stall)
    assert a.DTMFDetector.get_digits(count=4, seconds_predigits_timeout=T,
                                     seconds_interdigit_timeout=T) == "159#"
    assert keys_heard(world, far_b, mark) == "159#"
    a.hang_up()
    b.hang_up()


def test_the_far_end_hanging_up_disconnects_and_wakes_the_other(world):
    a, _far_a, b, far_b = joined(world)
    seen = events_of(a)
    world.engine.run(far_b.hangup, 17)
    state, took = world.elapsed(a.wait_for_idle, T)
    assert state is State.ANSWERED and took < 1.0 + world.slack
    assert b.wait_for_idle(T) is State.IDLE and b.cause() is Cause.BUSY
    assert a.Details.disconnect_cause is Cause.BUSY and a.Details.connected_id == ""
    assert [e for _, e in seen if isinstance(e, Disconnected)] == [
        Disconnected(b.Details.call_id, Cause.BUSY)]
    # a is free again: it plays
    with_tones(a)
    assert a.TonePlayer.play("RINGBACK", seconds_duration=0.2) is a.TonePlayer.Cause.NORMAL
    a.hang_up()


def test_hanging_up_one_side_tells_the_other_with_normal(world):
    a, far_a, b, _far_b = joined(world)
    assert a.hang_up() is State.IDLE
    assert b.wait_for_idle(T) is State.ANSWERED
    assert b.Details.disconnect_cause is Cause.NORMAL
    assert world.engine.wait_until(lambda: far_a.cleared, T)
    b.hang_up()


def test_disconnect_keeps_both_calls_up_and_either_side_may_do_it(world):
    a, far_a, b, far_b = joined(world)
    seen = events_of(b)
    assert b.disconnect() is True and b.disconnect() is False
    assert a.Details.connected_id == b.Details.connected_id == ""
    assert a.state() is b.state() is State.ANSWERED
    assert a.Details.disconnect_cause is None
    assert [type(e) for _, e in seen] == [Disconnected]
    mark = len(far_b.heard)
    world.engine.run(far_a.say, tone(697.0, 0.5, -10.0, world.law))
    world.engine.sleep(0.6)
    assert audio.component_level_dbm0(heard_since(far_b, mark, world.law), 697.0,
                                      world.law) < -60
    assert a.connect(b) is True  # and again
    assert [type(e) for _, e in seen] == [Disconnected, Connected]
    a.hang_up()
    b.hang_up()


# --------------------------------------------------------------------------- the rules

def test_connecting_to_itself_is_an_error(world):
    a, _far = answered_in(world)
    with pytest.raises(Error, match="itself"):
        a.connect(a)
    with pytest.raises(ArgumentError):
        a.connect("call-1")
    a.hang_up()


def test_connecting_to_a_ringing_call_is_false_and_changes_nothing(world):
    a, _far = answered_in(world)
    world.backend.far_end.answer_after = None
    ringing = UASCallChannel(world.engine, backend=world.backend, route="pri",
                             media_clock=MediaClock(world.engine), media_dir=MEDIA)
    ringing.start_call("5559000")
    assert ringing.wait_for_ringing(T) is State.RING_OUTGOING
    assert a.connect(ringing) is False
    with pytest.raises(Error, match="RING_OUTGOING"):
        ringing.connect(a)
    assert a.Details.connected_id == ""
    with_tones(a)
    assert a.TonePlayer.play("RINGBACK", seconds_duration=0.1) is a.TonePlayer.Cause.NORMAL
    ringing.hang_up()
    a.hang_up()


def test_connecting_after_a_hang_up_is_hangup_or_false(world):
    a, _far_a = answered_in(world)
    b, far_b = answered_out(world)
    world.engine.run(far_b.hangup)
    assert b.wait_for_idle(T) is State.IDLE
    assert a.connect(b) is False
    with pytest.raises(Hangup):
        b.connect(a)
    a.hang_up()


def test_a_call_in_a_bridge_cannot_join_another(world):
    a, far_a, b, far_b = joined(world)
    c, far_c = answered_in(world)
    for first, second in ((c, a), (a, c), (b, c)):
        with pytest.raises(Error, match="already connected"):
            first.connect(second)
    assert a.Details.connected_id == b.Details.call_id and c.Details.connected_id == ""
    # nothing leaks to the third call, and the bridge still carries both ways
    marks = len(far_a.heard), len(far_b.heard), len(far_c.heard)
    world.engine.run(far_a.say, tone(697.0, 0.5, -10.0, world.law))
    world.engine.run(far_b.say, tone(1209.0, 0.5, -10.0, world.law))
    world.engine.sleep(0.8)
    heard_by_c = heard_since(far_c, marks[2], world.law)
    assert audio.component_level_dbm0(heard_by_c, 697.0, world.law) < -60
    assert audio.component_level_dbm0(heard_by_c, 1209.0, world.law) < -60
    assert audio.steady(heard_since(far_b, marks[1], world.law), 697.0, world.law)
    assert audio.steady(heard_since(far_a, marks[0], world.law), 1209.0, world.law)
    for channel in (a, b, c):
        channel.hang_up()


def test_no_play_while_connected_and_no_connect_while_playing(world):
    a, _fa, b, _fb = joined(world)
    with_tones(a)
    with pytest.raises(Error, match="connected"):
        a.FilePlayer.play("goodbye.wav")
    with pytest.raises(Error, match="connected"):
        a.TonePlayer.play("RINGBACK", seconds_duration=1)
    with pytest.raises(Error, match="connected"):
        b.DTMFPlayer.play("1")
    a.disconnect()
    done = []
    player = world.engine.start_actor_thread(lambda: done.append(
        a.TonePlayer.play("RINGBACK", seconds_duration=1.0)))
    assert world.engine.wait_until(lambda: a._playing is not None, T)
    with pytest.raises(Error, match="plays"):
        b.connect(a)
    with pytest.raises(Error, match="plays"):
        a.connect(b)
    assert world.engine.wait_until(lambda: done, T)
    player.join(T)
    assert done == [a.TonePlayer.Cause.NORMAL]
    assert a.connect(b) is True
    a.hang_up()
    b.hang_up()


# --------------------------------------------------------------------------- transfer

def outbound_channel(world: World) -> UASCallChannel:
    return UASCallChannel(world.engine, backend=world.backend, route="pri",
                          media_clock=MediaClock(world.engine), media_dir=MEDIA)


def test_a_retrievable_transfer_rings_back_connects_and_is_taken_back(world):
    a, far_a = answered_in(world)
    with_tones(a)
    leg = outbound_channel(world)
    world.backend.far_end.answer_after = 2.0
    mark = len(far_a.heard)
    state, took = world.elapsed(a.retrievable_transfer, leg, "5559000", call_from="5551000")
    assert state is State.TRANSFERRED and a.transfer_cause() is a.TransferCause.NORMAL
    assert took == world.approx(2.0, 0.1)
    assert leg.state() is State.ANSWERED and a.Details.connected_id == leg.Details.call_id
    # the caller heard US ringback (440 + 480 Hz) while the target rang
    ringback = audio.decode(bytes(far_a.heard[mark:]), world.law)
    assert audio.component_level_dbm0(ringback[2000:14000], 440, world.law) > -25
    assert audio.component_level_dbm0(ringback[2000:14000], 480, world.law) > -25
    far_b = world.backend.far_end.incoming[-1]
    assert far_b.call.called == "5559000"
    # transferred: the two far ends talk
    mark = len(far_b.heard)
    world.engine.run(far_a.say, tone(697.0, 0.5, -10.0, world.law))
    world.engine.sleep(0.8)
    assert audio.dominant_frequency(audio.steady(heard_since(far_b, mark, world.law), 697,
                                                 world.law)) == pytest.approx(697, abs=3)
    with pytest.raises(Error, match="TRANSFERRED"):
        a.FilePlayer.play("goodbye.wav")
    # the target hangs up: the call is ours again
    world.engine.run(far_b.hangup)
    assert a.wait_for_idle(T) is State.ANSWERED
    assert a.transfer_cause() is a.TransferCause.TARGETHANGUP
    assert a.Details.connected_id == "" and leg.wait_for_idle(T) is State.IDLE
    assert a.TonePlayer.play("RINGBACK", seconds_duration=0.2) is a.TonePlayer.Cause.NORMAL
    a.hang_up()


@pytest.mark.parametrize("q850, expected", [(17, "TARGETREJECT"), (34, "FAIL")])
def test_a_transfer_the_target_refuses_leaves_the_call_answered(world, q850, expected):
    a, _far_a = answered_in(world)
    with_tones(a)
    leg = outbound_channel(world)
    world.backend.far_end.reject_cause = q850
    assert a.retrievable_transfer(leg, "5559000") is State.ANSWERED
    assert a.transfer_cause() is a.TransferCause[expected]
    assert leg.state() is State.IDLE and a.Details.connected_id == ""
    world.backend.far_end.reject_cause = None
    assert a.retrievable_transfer(leg, "5559000") is State.TRANSFERRED  # and again
    a.hang_up()
    assert leg.wait_for_idle(T) is State.IDLE  # the caller gone: the target is hung up


def test_a_transfer_not_answered_in_time_is_cancelled(world):
    a, _far_a = answered_in(world)
    with_tones(a)
    leg = outbound_channel(world)
    world.backend.far_end.answer_after = None
    state, took = world.elapsed(a.retrievable_transfer, leg, "5559000", seconds_timeout=3)
    assert state is State.ANSWERED and took == world.approx(3.0, 0.1)
    assert a.transfer_cause() is a.TransferCause.TIMEOUT
    assert leg.wait_for_idle(T) is State.IDLE and leg.cause() is Cause.NOANSWER
    far_b = world.backend.far_end.incoming[-1]
    assert world.engine.wait_until(lambda: far_b.cleared, T)
    a.hang_up()


def test_the_caller_hanging_up_during_a_transfer_cancels_it(world):
    a, far_a = answered_in(world)
    with_tones(a)
    leg = outbound_channel(world)
    world.backend.far_end.answer_after = None
    world.engine.call_later(1.0, far_a.hangup)
    assert a.retrievable_transfer(leg, "5559000") is State.IDLE
    assert a.transfer_cause() is a.TransferCause.HANGUP
    assert leg.wait_for_idle(T) is State.IDLE
    assert world.engine.wait_until(lambda: world.backend.far_end.incoming[-1].cleared, T)


def test_retrievable_transfer_refuses_what_it_cannot_do(world):
    a, far_a = answered_in(world)
    leg = outbound_channel(world)
    with pytest.raises(Error, match="tone player"):
        a.retrievable_transfer(leg, "5559000")
    with_tones(a)
    b, _far_b = answered_in(world)
    with pytest.raises(Error, match="outbound channel"):
        a.retrievable_transfer(b, "5559000")
    with pytest.raises(ArgumentError, match="call_to"):
        a.retrievable_transfer(leg, None)
    with pytest.raises(Error, match="no tone named"):
        a.retrievable_transfer(leg, "5559000", ringback_tone="NO_SUCH_TONE")
    assert a.state() is State.ANSWERED and leg.state() is State.IDLE
    world.engine.run(far_a.hangup)
    assert a.wait_for_idle(T) is State.IDLE
    with pytest.raises(Hangup):
        a.retrievable_transfer(leg, "5559000")
    b.hang_up()
