"""connect(), ring(custom_ringtone=channel) and retrievable_transfer() under odd timings.

Scenarios on the simulator's looped PRI pair (``world``): the bad input and the races the
issue names (a call joined to itself, to a call in another bridge, to a ringing call,
after a hang-up; two threads at once; a far end clearing in the same step), each checked
for the documented result and for what it must not leave behind: a half-bridged call,
audio reaching a third call, a tap or listener on another call, a port whose queue stays
shortened, an engine fault.
"""

from __future__ import annotations

import threading

import pytest

from tests import audio
from uascall import faultlog
from uascall.backend import Cause
from uascall.channel import Disconnected, State, StateChanged, UASCallChannel
from uascall.dahdi.device import MEDIA_NUMBUFS
from uascall.errors import Error, Hangup
from uascall.media import g711
from uascall.media.bridge import DIGIT_MS, AudioLink
from uascall.media.dtmf import detect_digits, dtmf_samples
from uascall.media.player import MediaClock
from uascall.sip.media import QUEUE_FRAMES

from .helpers import MEDIA, T, World, with_tones
from .test_bridge import QueuePort
from .test_connect_sip import Box, Phone, pri_to_sip
from .test_listening import events_of, tone

# The races here are set up to the engine step (a listener acting in the step a far end
# answers, two threads released together): the simulator's virtual time makes them
# exact; on the real driver, in real time, they are not the same scenarios.
pytestmark = pytest.mark.sim_only


@pytest.fixture
def clean(world):
    """``world``, checked at the end for engine faults and faults counted by the process."""
    before = dict(faultlog.PROCESS.counts())
    yield world
    assert world.engine.faults.counts() == {}
    assert dict(faultlog.PROCESS.counts()) == before


def answered_in(world: World) -> tuple[UASCallChannel, object]:
    channel, far = world.incoming()
    assert channel.answer() is State.ANSWERED
    return channel, far


def outbound(world: World) -> UASCallChannel:
    return UASCallChannel(world.engine, backend=world.backend, route="pri",
                          media_clock=MediaClock(world.engine), media_dir=MEDIA)


def answered_out(world: World, number: str = "5559000") -> tuple[UASCallChannel, object]:
    world.backend.far_end.answer_after = 0.2
    channel = outbound(world)
    assert channel.call(number, call_from="5551000", seconds_timeout=T) is State.ANSWERED
    return channel, world.backend.far_end.incoming[-1]


def heard_since(far, mark: int, law: str) -> list[int]:
    return audio.decode(bytes(far.heard[mark:]), law)


def numbufs(channel: UASCallChannel) -> int:
    return channel._engine.run(lambda: channel._leg.media().channel.buffer_info().numbufs)


def no_taps_left(channel: UASCallChannel) -> bool:
    hearing = channel._hearing
    return not channel._followers and (hearing is None or not hearing.taps)


# --------------------------------------------------------------------------- probes

def test_connect_disconnect_again_and_again_gives_the_ports_back(clean):
    world = clean
    a, _far_a = answered_in(world)
    b, _far_b = answered_out(world)
    assert numbufs(a) == numbufs(b) == MEDIA_NUMBUFS
    for _ in range(20):
        assert a.connect(b) is True
        assert numbufs(a) == numbufs(b) == 3
        assert (b.disconnect() if _ % 2 else a.disconnect()) is True
        assert numbufs(a) == numbufs(b) == MEDIA_NUMBUFS
        assert no_taps_left(a) and no_taps_left(b)
    assert a.disconnect() is False and b.disconnect() is False
    a.hang_up()
    b.hang_up()


def test_both_far_ends_hang_up_in_one_step(clean):
    world = clean
    a, far_a = answered_in(world)
    b, far_b = answered_out(world)
    assert a.connect(b)
    seen_a, seen_b = events_of(a), events_of(b)
    world.engine.run(lambda: (far_a.hangup(17), far_b.hangup(16)))
    assert a.wait_for_idle(T) in (State.ANSWERED, State.IDLE)
    assert a.wait_for_idle(T) is State.IDLE and b.wait_for_idle(T) is State.IDLE
    assert a.Details.connected_id == b.Details.connected_id == ""
    disconnected = [e for _, e in seen_a + seen_b if isinstance(e, Disconnected)]
    assert len(disconnected) == 2
    assert not a._waiters and not b._waiters


def at_once(engine, *calls) -> list:
    """Run ``calls`` in actor threads released together; what each returned, or the
    type of what it raised."""
    barrier = threading.Barrier(len(calls))
    outcomes: list = [None] * len(calls)

    def run(index: int, call) -> None:
        barrier.wait()
        try:
            outcomes[index] = call()
        except Exception as exc:
            outcomes[index] = type(exc)

    threads = [engine.start_actor_thread(run, n, call) for n, call in enumerate(calls)]
    assert engine.wait_until(lambda: not any(t.is_alive() for t in threads), 3 * T)
    return outcomes


def test_connect_and_disconnect_from_both_threads_at_once(clean):
    world = clean
    a, _far_a = answered_in(world)
    b, _far_b = answered_out(world)
    for _round in range(10):
        outcomes = at_once(world.engine, lambda: a.connect(b), lambda: b.connect(a))
        assert sorted(outcomes, key=str) == sorted([True, Error], key=str)
        assert a.Details.connected_id == b.Details.call_id
        assert b.Details.connected_id == a.Details.call_id
        assert sorted(at_once(world.engine, a.disconnect, b.disconnect)) == [False, True]
        assert numbufs(a) == numbufs(b) == MEDIA_NUMBUFS
    a.hang_up()
    b.hang_up()


def test_an_unsendable_raw_cause_on_a_connected_call(clean):
    """reject(raw_cause=...) that PRI cannot send leaves the call up, in ERROR: bridged
    still, or not at all, never one way only; a reject() that works then ends it."""
    world = clean
    a, far_a = answered_in(world)
    b, far_b = answered_out(world)
    assert a.connect(b)
    assert a.reject(raw_cause="not-a-cause") is State.ERROR
    state_bridged = a.Details.connected_id
    mark = len(far_b.heard)
    world.engine.run(far_a.say, tone(697.0, 0.5, -10.0, world.law))
    world.engine.sleep(0.8)
    level = audio.component_level_dbm0(heard_since(far_b, mark, world.law), 697.0, world.law)
    assert a.reject() is State.IDLE
    assert b.wait_for_idle(T) is State.ANSWERED
    assert (state_bridged, level > -40) in (("", False), (b.Details.call_id, True))
    b.hang_up()


def test_connect_to_an_extra_channel_whose_call_was_rejected(clean):
    world = clean
    a, _far_a = answered_in(world)
    extra = outbound(world)
    world.backend.far_end.reject_cause = 17
    assert extra.call("5559000", seconds_timeout=T) is State.IDLE
    assert extra.cause() is Cause.BUSY
    assert a.connect(extra) is False
    with pytest.raises(Hangup):
        extra.connect(a)
    assert extra.disconnect() is False
    # an extra channel that never called
    fresh = outbound(world)
    assert a.connect(fresh) is False
    with pytest.raises(Hangup):
        fresh.connect(a)
    assert fresh.wait_for_ringing(0) is State.IDLE
    a.hang_up()


@pytest.mark.parametrize("state", ["CALL_INCOMING", "RING_INCOMING", "CALL_OUTGOING",
                                   "RING_OUTGOING"])
def test_connect_from_and_to_a_call_not_answered(clean, state):
    world = clean
    a, _far_a = answered_in(world)
    world.backend.far_end.answer_after = None
    if state.startswith("CALL_OUTGOING") or state.startswith("RING_OUT"):
        other = outbound(world)
        other.start_call("5559000")
        if state == "RING_OUTGOING":
            assert other.wait_for_ringing(T) is State.RING_OUTGOING
        else:
            assert other.state() is State.CALL_OUTGOING
    else:
        other, _far = world.incoming()
        if state == "RING_INCOMING":
            other.ring()
    assert other.state() is State[state]
    assert a.connect(other) is False
    with pytest.raises(Error, match=state):
        other.connect(a)
    assert a.Details.connected_id == other.Details.connected_id == ""
    assert no_taps_left(a)
    other.hang_up()
    a.hang_up()


# --------------------------------------------------------------------------- ringtones

def in_thread(engine, fn, *args, **kwargs) -> dict:
    result: dict = {}

    def run():
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the test
            result["error"] = exc

    result["thread"] = engine.start_actor_thread(run)
    return result


def finished(engine, result: dict):
    """What the call in_thread() started returned, waiting on the engine (a plain join
    would hold virtual time still)."""
    assert engine.wait_until(lambda: "value" in result or "error" in result, 3 * T), \
        "the blocking call did not return"
    result["thread"].join(T)
    if "error" in result:
        raise result["error"]
    return result["value"]


def ringing_extra(world: World, *, inband: bool = True) -> tuple[UASCallChannel, object]:
    world.backend.far_end.answer_after = None
    world.backend.far_end.inband = inband
    extra = outbound(world)
    extra.start_call("5559000", call_from="5551000")
    assert extra.wait_for_ringing(T) is State.RING_OUTGOING
    return extra, world.backend.far_end.incoming[-1]


def test_ringing_with_a_call_whose_caller_hangs_up(clean):
    world = clean
    a, far_a = world.incoming()
    with_tones(a)
    extra, target = ringing_extra(world)
    world.engine.run(target.say, tone(425.0, 3.0, -13.0, world.law))
    ringing = in_thread(world.engine, a.ring, None, negotiate_early_media=True,
                        custom_ringtone=extra)
    world.engine.sleep(1.0)
    assert extra._followers  # the ringtone follows the extra call
    world.engine.run(far_a.hangup)
    assert finished(world.engine, ringing) is State.IDLE
    assert no_taps_left(extra)
    assert extra.state() is State.RING_OUTGOING
    extra.hang_up()


def test_ringing_with_a_call_that_fails(clean):
    world = clean
    a, _far_a = world.incoming()
    with_tones(a)
    extra, target = ringing_extra(world)
    ringing = in_thread(world.engine, a.ring, None, negotiate_early_media=True,
                        custom_ringtone=extra)
    world.engine.sleep(1.0)
    world.engine.run(target.hangup, 17)
    assert finished(world.engine, ringing) is State.RING_INCOMING
    assert extra.wait_for_idle(T) is State.IDLE and extra.cause() is Cause.BUSY
    assert no_taps_left(extra)
    assert a.answer() is State.ANSWERED
    assert a.connect(extra) is False
    a.hang_up()


def test_ringing_for_n_seconds_with_a_call_answered_meanwhile(clean):
    world = clean
    a, far_a = world.incoming()
    with_tones(a)
    extra, target = ringing_extra(world)
    world.engine.call_later(1.0, target.call.answer)
    state, took = world.elapsed(a.ring, 3, negotiate_early_media=True,
                                custom_ringtone=extra)
    assert state is State.RING_INCOMING and took == world.approx(3.0, 0.05)
    assert extra.state() is State.ANSWERED and no_taps_left(extra)
    assert a.answer() is State.ANSWERED
    assert a.connect(extra) is True
    mark = len(target.heard)
    world.engine.run(far_a.say, tone(697.0, 0.5, -10.0, world.law))
    world.engine.sleep(0.8)
    assert audio.steady(heard_since(target, mark, world.law), 697.0, world.law)
    a.hang_up()
    assert extra.wait_for_idle(T) is State.ANSWERED
    extra.hang_up()


@pytest.mark.parametrize("which", ["itself", "inbound", "idle", "answered"])
def test_ringing_with_a_channel_that_places_no_call(clean, which):
    world = clean
    a, _far_a = world.incoming()
    with_tones(a)
    others = {"itself": lambda: a, "inbound": lambda: world.incoming()[0],
              "idle": lambda: outbound(world), "answered": lambda: answered_out(world)[0]}
    other = others[which]()
    if which == "itself":
        with pytest.raises(Error, match="another channel"):
            a.ring(None, negotiate_early_media=True, custom_ringtone=other)
        assert a.state() is State.CALL_INCOMING and not world.alertings()
    else:
        state, took = world.elapsed(a.ring, None, negotiate_early_media=True,
                                    custom_ringtone=other)
        assert state is State.RING_INCOMING and took < 0.1
    assert no_taps_left(other)
    assert a._player is None or not a._player.playing
    assert a.answer() is State.ANSWERED
    a.hang_up()
    if other is not a:
        other.hang_up()


def test_a_ring_with_a_channel_without_early_media_takes_no_tap(clean):
    world = clean
    a, _far_a = world.incoming()
    extra, _target = ringing_extra(world)
    assert a.ring(1, custom_ringtone=extra) is State.RING_INCOMING
    assert no_taps_left(extra)
    a.hang_up()
    extra.hang_up()


# --------------------------------------------------------------------------- transfers

def transferring(world: World, answer_after: float | None = None
                 ) -> tuple[UASCallChannel, object, UASCallChannel]:
    a, far_a = answered_in(world)
    with_tones(a)
    world.backend.far_end.answer_after = answer_after
    return a, far_a, outbound(world)


def no_transfer_listener(a: UASCallChannel, extra: UASCallChannel) -> bool:
    return a._transfer_news not in extra.listeners


def test_the_target_answers_at_the_timeout_instant(clean):
    world = clean
    a, _far_a, extra = transferring(world, answer_after=3.0)
    # how long the answer takes to reach us, measured first (virtual time repeats it)
    state, took = world.elapsed(a.retrievable_transfer, extra, "5559000", seconds_timeout=10)
    assert state is State.TRANSFERRED
    assert extra.hang_up() is State.IDLE and a.state() is State.ANSWERED
    state, took_again = world.elapsed(a.retrievable_transfer, extra, "5559000",
                                      seconds_timeout=took)
    far_b = world.backend.far_end.incoming[-1]
    assert no_transfer_listener(a, extra) and took_again == world.approx(took)
    if state is State.TRANSFERRED:
        assert a.transfer_cause() is a.TransferCause.NORMAL
        assert extra.state() is State.ANSWERED
        assert a.Details.connected_id == extra.Details.call_id
        assert a.hang_up() is State.IDLE
    else:
        assert state is State.ANSWERED and a.transfer_cause() is a.TransferCause.TIMEOUT
        assert a.Details.connected_id == ""
        a.hang_up()
    assert extra.wait_for_idle(T) is State.IDLE
    assert world.engine.wait_until(lambda: far_b.cleared, T)


def test_the_caller_hangs_up_as_the_target_answers(clean):
    world = clean
    a, far_a, extra = transferring(world, answer_after=1.0)

    def on_answer(channel, event):
        if isinstance(event, StateChanged) and event.state is State.ANSWERED:
            far_a.hangup()

    extra.listeners.append(on_answer)
    state = a.retrievable_transfer(extra, "5559000")
    assert state in (State.TRANSFERRED, State.IDLE)
    assert a.wait_for_idle(T) is State.IDLE
    assert extra.wait_for_idle(T) is State.IDLE
    assert world.engine.wait_until(lambda: world.backend.far_end.incoming[-1].cleared, T)
    assert no_transfer_listener(a, extra) and no_taps_left(extra)


def test_the_target_rejects_after_ringing(clean):
    world = clean
    a, far_a, extra = transferring(world)
    world.engine.call_later(1.5, lambda: world.backend.far_end.incoming[-1].hangup(17))
    mark = len(far_a.heard)
    assert a.retrievable_transfer(extra, "5559000") is State.ANSWERED
    assert a.transfer_cause() is a.TransferCause.TARGETREJECT
    assert extra.state() is State.IDLE and no_transfer_listener(a, extra)
    # the ringback stopped with the attempt
    world.engine.sleep(0.5)
    after = heard_since(far_a, mark, world.law)[-2400:]
    assert audio.component_level_dbm0(after, 440, world.law) < -50
    with_tones(a)
    assert a.TonePlayer.play("RINGBACK", seconds_duration=0.2) is a.TonePlayer.Cause.NORMAL
    a.hang_up()


def test_disconnect_on_transferred_takes_the_call_back_and_leaves_the_target_up(clean):
    world = clean
    a, far_a, extra = transferring(world, answer_after=0.5)
    assert a.retrievable_transfer(extra, "5559000") is State.TRANSFERRED
    far_b = world.backend.far_end.incoming[-1]
    waiting = in_thread(world.engine, a.wait_for_idle, 2.0)
    assert a.disconnect() is True
    assert a.state() is State.ANSWERED and a.transfer_cause() is a.TransferCause.NORMAL
    assert extra.state() is State.ANSWERED and extra.Details.connected_id == ""
    assert finished(world.engine, waiting) is State.ANSWERED
    assert numbufs(a) == numbufs(extra) == MEDIA_NUMBUFS
    with pytest.raises(Error, match="IDLE"):
        a.retrievable_transfer(extra, "5559000")
    assert a.connect(extra) is True  # joined again, now as a plain connection
    mark = len(far_b.heard)
    world.engine.run(far_a.say, tone(697.0, 0.5, -10.0, world.law))
    world.engine.sleep(0.8)
    assert audio.steady(heard_since(far_b, mark, world.law), 697.0, world.law)
    extra.hang_up()
    assert a.wait_for_idle(T) is State.ANSWERED and a.state() is State.ANSWERED
    a.hang_up()


def test_hanging_up_the_extra_channel_while_transferred_takes_the_call_back(clean):
    world = clean
    a, far_a, extra = transferring(world, answer_after=0.5)
    assert a.retrievable_transfer(extra, "5559000") is State.TRANSFERRED
    waiting = in_thread(world.engine, a.wait_for_idle, T)
    assert extra.hang_up() is State.IDLE
    assert finished(world.engine, waiting) is State.ANSWERED
    assert a.transfer_cause() is a.TransferCause.TARGETHANGUP
    assert a.Details.disconnect_cause is Cause.NORMAL
    assert numbufs(a) == MEDIA_NUMBUFS
    # and transferred again on the same extra channel
    assert a.retrievable_transfer(extra, "5559001") is State.TRANSFERRED
    assert world.backend.far_end.incoming[-1].call.called == "5559001"
    world.engine.run(far_a.hangup)
    assert a.wait_for_idle(T) is State.IDLE
    assert extra.wait_for_idle(T) is State.IDLE and extra.cause() is Cause.NORMAL
    assert no_transfer_listener(a, extra)


def test_what_a_transferring_call_refuses(clean):
    world = clean
    a, _far_a, extra = transferring(world)
    c, _far_c = answered_in(world)
    transfer = in_thread(world.engine, a.retrievable_transfer, extra, "5559000",
                         seconds_timeout=5)
    assert world.engine.wait_until(lambda: extra.state() is not State.IDLE, T)
    assert a.state() is State.TRANSFERRING
    assert c.connect(a) is False
    with pytest.raises(Error, match="TRANSFERRING"):
        a.connect(c)
    assert extra.wait_for_ringing(T) is State.RING_OUTGOING
    assert c.connect(extra) is False
    with pytest.raises(Error, match="TRANSFERRING"):
        a.TonePlayer.play("RINGBACK", seconds_duration=1)
    with pytest.raises(Error, match="TRANSFERRING"):
        a.retrievable_transfer(outbound(world), "5559001")
    assert a.disconnect() is False
    assert finished(world.engine, transfer) is State.ANSWERED
    assert a.transfer_cause() is a.TransferCause.TIMEOUT
    assert no_transfer_listener(a, extra) and no_taps_left(extra)
    a.hang_up()
    c.hang_up()


def test_one_extra_channel_for_two_transfers_at_once(clean):
    world = clean
    a, _fa, extra = transferring(world, answer_after=2.0)
    c, _fc = answered_in(world)
    with_tones(c)
    first = in_thread(world.engine, a.retrievable_transfer, extra, "5559000")
    assert world.engine.wait_until(lambda: extra.state() is not State.IDLE, T)
    with pytest.raises(Error, match="IDLE"):
        c.retrievable_transfer(extra, "5559001")
    assert c.state() is State.ANSWERED and no_transfer_listener(c, extra)
    assert finished(world.engine, first) is State.TRANSFERRED
    a.hang_up()
    c.hang_up()
    assert extra.wait_for_idle(T) is State.IDLE


# --------------------------------------------------------------------------- races

def test_a_play_and_a_connect_started_at_once(clean):
    world = clean
    a, _fa = answered_in(world)
    b, _fb = answered_out(world)
    with_tones(a)
    for _round in range(10):
        outcomes = at_once(world.engine,
                           lambda: a.TonePlayer.play("RINGBACK", seconds_duration=0.1),
                           lambda: b.connect(a))
        # one or the other, never a play into a bridge
        assert outcomes in ([a.TonePlayer.Cause.NORMAL, Error], [Error, True]), outcomes
        assert a._playing is None
        b.disconnect()
    a.hang_up()
    b.hang_up()


# --------------------------------------------------------------------------- keys

class DrainedPort(QueuePort):
    """A port whose far end takes each frame as it is written."""

    def write(self, frame: bytes) -> bool:
        accepted = super().write(frame)
        self.tick()
        return accepted


def key_tone(digit: str, law: str, frames: int) -> list[bytes]:
    samples = g711.codec(law).encode(dtmf_samples(digit, on_ms=20 * frames, off_ms=0,
                                                  law=law))
    return [samples[at:at + 160] for at in range(0, len(samples), 160)]


@pytest.mark.parametrize("held_s", [1.0, 2.0, 3.0, 10.0])
def test_a_key_held_in_band_towards_an_events_port_is_one_key(held_s):
    """A PRI caller holds a key ``held_s``; the SIP side takes telephone-events: one
    event, and no tone left in band after the mute (a second key at the SIP side)."""
    port = DrainedPort("ulaw", telephone_events=True)
    frames = key_tone("5", "alaw", round(held_s * 50))
    held = {"now": False}
    link = AudioLink(port, key_held=lambda: held["now"])
    silence = g711.codec("alaw").silence_frame
    for n, frame in enumerate(frames + [silence] * 10):
        held["now"] = 2 <= n < len(frames)  # the detector knows after 40 ms
        if n == 2:
            link.key("5", in_band=True)
        link.heard(frame, "alaw")
    assert port.digits == [("5", DIGIT_MS)]
    leaked = detect_digits(audio.decode(b"".join(port.sent[2:]), "ulaw"))
    assert leaked == [], f"in band after the event: {leaked}"


# --------------------------------------------------------------------------- PRI to SIP

def test_sip_and_pri_ports_get_their_queues_back(tmp_path):
    before = dict(faultlog.PROCESS.counts())
    box, phone = Box(), Phone(tmp_path)
    try:
        sip_and_pri_ports_get_their_queues_back(box, phone)
    finally:
        phone.close()
        box.close()
    assert box.engine.faults.counts() == {} and dict(faultlog.PROCESS.counts()) == before


def sip_and_pri_ports_get_their_queues_back(box: Box, phone: Phone) -> None:
    ours, _far, out, theirs, _ = pri_to_sip(box, phone)
    stream = box.engine.run(out._leg.media)
    assert stream._queue_limit == 3 and numbufs(ours) == 3
    assert ours.disconnect() is True
    assert stream._queue_limit == QUEUE_FRAMES and numbufs(ours) == MEDIA_NUMBUFS
    assert out.connect(ours) is True
    assert stream._queue_limit == 3
    assert theirs.hang_up() is State.IDLE
    assert ours.wait_for_idle(T) is State.ANSWERED
    assert numbufs(ours) == MEDIA_NUMBUFS and no_taps_left(ours)
    assert ours.hang_up() is State.IDLE


def test_a_key_pressed_across_connect_and_disconnect(clean):
    world = clean
    a, far_a = answered_in(world)
    b, far_b = answered_out(world)
    mark = len(far_b.heard)
    world.engine.run(lambda: far_a.press("5", on_ms=300, off_ms=100))
    world.engine.sleep(0.15)
    assert a.connect(b) is True  # mid-key
    world.engine.sleep(0.6)
    assert a.DTMFDetector.get_digits(seconds_predigits_timeout=0) == "5"
    assert b.DTMFDetector.get_digits(seconds_predigits_timeout=0) == ""
    assert audio.dtmf_keys(heard_since(far_b, mark, world.law), world.law) in ("", "5")
    mark = len(far_b.heard)
    world.engine.run(lambda: far_a.press("7", on_ms=300, off_ms=100))
    world.engine.sleep(0.15)
    assert b.disconnect() is True  # mid-key
    world.engine.sleep(0.6)
    assert a.DTMFDetector.get_digits(seconds_predigits_timeout=0) == "7"
    assert b.DTMFDetector.get_digits(seconds_predigits_timeout=0) == ""
    assert audio.dtmf_keys(heard_since(far_b, mark, world.law), world.law) in ("", "7")
    a.hang_up()
    b.hang_up()


# ---------------------------------------------------------------- found by these probes,
# fixed in channel.py and bridge.py (each failed before its fix)

def test_transfer_target_connected_elsewhere_as_it_answers(clean):
    """Another thread of the application joins the extra channel to a third call in the
    moment the target answers, before retrievable_transfer() has connected it."""
    world = clean
    a, far_a = answered_in(world)
    with_tones(a)
    c, far_c = answered_in(world)
    extra = outbound(world)
    world.backend.far_end.answer_after = 1.0

    def on_answer(channel, event):
        if isinstance(event, StateChanged) and event.state is State.ANSWERED:
            c.connect(channel)

    extra.listeners.append(on_answer)
    try:
        state = a.retrievable_transfer(extra, "5559000")
    except Error:
        state = a.state()
    far_b = world.backend.far_end.incoming[-1]
    # the target's voice reaches one caller only (a's, or c's if c's connect won)
    law = world.law
    marks = len(far_a.heard), len(far_c.heard)
    world.engine.run(far_b.say, tone(1633.0, 0.5, -10.0, law))
    world.engine.sleep(0.8)
    hearing = [name for name, far, mark in (("a", far_a, marks[0]), ("c", far_c, marks[1]))
               if audio.component_level_dbm0(heard_since(far, mark, law), 1633.0, law) > -40]
    assert len(hearing) == 1, f"the target is heard by {hearing}"
    # and the two channels agree on who is connected to whom
    if c.Details.connected_id:
        assert extra.Details.connected_id == c.Details.call_id
        assert a.Details.connected_id == "" and state is State.ANSWERED
    else:
        assert extra.Details.connected_id == a.Details.call_id
    for channel in (a, c, extra):
        channel.hang_up()


def test_the_caller_hangs_up_in_the_step_the_target_answers(clean):
    """The caller's clearing reaches us in the very engine step the target's answer does
    (simulated by releasing our side of the caller's call from the answer's listener)."""
    world = clean
    a, _far_a, extra = transferring(world, answer_after=1.0)

    def on_answer(channel, event):
        if isinstance(event, StateChanged) and event.state is State.ANSWERED:
            a._engine_release(Cause.NORMAL, None)

    extra.listeners.append(on_answer)
    # the docstring: "or the caller hangs up (IDLE, HANGUP; the attempt is cancelled)"
    assert a.retrievable_transfer(extra, "5559000") is State.IDLE
    assert a.transfer_cause() is a.TransferCause.HANGUP
    assert extra.wait_for_idle(T) is State.IDLE
    assert a.Details.connected_id == extra.Details.connected_id == ""
    assert no_transfer_listener(a, extra) and no_taps_left(extra)


def test_the_engine_stopping_wakes_every_blocked_thread(world):
    """DESIGN.md: when the engine stops, every application thread blocked on it wakes
    with Hangup (or, where the backend's stop cleared its call first, returns IDLE)."""
    a, _fa = answered_in(world)
    b, _fb = answered_out(world)
    assert a.connect(b)
    c, _fc = world.incoming()
    extra, _target = ringing_extra(world)
    x, _fx = answered_in(world)
    with_tones(x)
    spare = outbound(world)
    blocked = {"a.wait_for_idle": in_thread(world.engine, a.wait_for_idle),
               "b.wait_for_idle": in_thread(world.engine, b.wait_for_idle, 100),
               "c.ring(None, custom_ringtone=extra)": in_thread(
                   world.engine, c.ring, None, negotiate_early_media=True,
                   custom_ringtone=extra),
               "x.retrievable_transfer": in_thread(world.engine, x.retrievable_transfer,
                                                   spare, "5559001")}
    world.engine.sleep(1.0)
    assert all("value" not in r and "error" not in r for r in blocked.values())
    world.engine.stop()
    woke = {}
    for name, result in blocked.items():
        result["thread"].join(T)
        assert not result["thread"].is_alive()
        woke[name] = type(result["error"]).__name__ if "error" in result \
            else result["value"].name
    assert woke["a.wait_for_idle"] == woke["b.wait_for_idle"] == "IDLE"
    assert woke["c.ring(None, custom_ringtone=extra)"] in ("IDLE", "Hangup")
    assert woke["x.retrievable_transfer"] in ("IDLE", "Hangup")


def test_after_the_engine_stopped_an_ended_call_answers_as_in_idle(world):
    """After the stop: Hangup, or the harmless results the docstrings promise in IDLE
    (disconnect() False, wait_for_idle() and wait_for_ringing() the state)."""
    a, _fa = answered_in(world)
    b, _fb = answered_out(world)
    assert a.connect(b)
    extra, _target = ringing_extra(world)
    world.engine.stop()
    assert a.state() is b.state() is extra.state() is State.IDLE
    after = {}
    for name, call in (("a.connect(b)", lambda: a.connect(b)),
                       ("a.disconnect()", a.disconnect),
                       ("a.wait_for_idle(1)", lambda: a.wait_for_idle(1)),
                       ("extra.wait_for_ringing(1)", lambda: extra.wait_for_ringing(1)),
                       ("a.hang_up()", a.hang_up)):
        try:
            after[name] = repr(call())
        except Hangup:
            after[name] = "Hangup"
        except Error as exc:
            after[name] = f"Error: {exc}"
    assert after == {"a.connect(b)": "Hangup", "a.disconnect()": "False",
                     "a.wait_for_idle(1)": repr(State.IDLE),
                     "extra.wait_for_ringing(1)": repr(State.IDLE),
                     "a.hang_up()": repr(State.IDLE)}


def test_out_of_band_keys_faster_than_digit_ms_stay_two_keys_in_band():
    """An RFC 4733 far end keying "11" at 60 ms on / 40 ms off (inside Q.24's 40 ms
    minimum tone and pause) towards a TDM call: the far end must hear two keys."""
    port = DrainedPort("alaw")
    link = AudioLink(port)
    silence = g711.codec("ulaw").silence_frame
    for frame in range(30):
        if frame in (0, 5):  # a key down every 100 ms
            link.key("1", in_band=False)
        link.heard(silence, "ulaw")
    heard = audio.decode(b"".join(port.sent), "alaw")
    assert [event.digit for event in detect_digits(heard)] == ["1", "1"]


def test_a_key_held_three_seconds_on_pri_is_one_digit_on_sip(tmp_path):
    box, phone = Box(), Phone(tmp_path)
    try:
        a_key_held_three_seconds(box, phone)
    finally:
        phone.close()
        box.close()


def a_key_held_three_seconds(box: Box, phone: Phone) -> None:
    _ours, far, out, theirs, _ = pri_to_sip(box, phone)
    assert out._leg.media().telephone_events
    theirs.DTMFDetector.clear_digits()
    box.engine.run(lambda: far.press("5", on_ms=3000, off_ms=100))
    phone.engine.sleep(4.0)
    assert theirs.DTMFDetector.get_digits(seconds_predigits_timeout=0) == "5"
    theirs.hang_up()
