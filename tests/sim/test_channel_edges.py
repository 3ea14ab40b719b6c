"""UASCallChannel where calls go wrong or threads race: a ringtone that cannot be played
but is not needed, a leg that clears while a step runs, the window between our DISCONNECT
and the far end's RELEASE, a second thread answering between ring()'s two steps, a
B-channel that does not open, and the order of media events.
"""

from __future__ import annotations

import array
import errno

import pytest

from tests import audio
from uascall import PlayableMedia
from uascall.backend import Cause
from uascall.channel import MediaEnded, MediaStarted, State, UASCallChannel
from uascall.dahdi import libpri
from uascall.dahdi.pri import PriSpan
from uascall.errors import ArgumentError, DeviceError, Hangup
from uascall.media import tts
from uascall.media.player import MediaClock
from uascall.media.wav import write_wav

from .helpers import MEDIA, T, drop_message, wait_for_libpri, with_tones


def test_ring_does_not_look_at_a_ringtone_it_will_not_play(world):
    """Without early media custom_ringtone is ignored, even one that could not be played."""
    channel, _far = world.incoming()
    assert channel.ring(1, custom_ringtone="RINGBACK") is State.RING_INCOMING  # no tone player
    with_tones(channel)
    assert channel.ring(1, custom_ringtone="NO_SUCH_TONE") is State.RING_INCOMING
    missing = PlayableMedia(file_to_play="no-such.wav", channel=channel)
    assert channel.ring(1, custom_ringtone=missing) is State.RING_INCOMING
    assert [m.progress_descriptions for m in world.alertings()] == [[]]
    with pytest.raises(ArgumentError, match="expected a tone name, a PlayableMedia or a channel"):
        channel.ring(custom_ringtone=42)  # the wrong type is a bug whatever is asked


def refuse(function: str):
    def refused(*_args, **_kwargs):
        raise libpri.LibpriError(f"{function} returned -1", function=function)
    return refused


@pytest.mark.parametrize("method, step", [("answer", "answer"), ("ring", "acknowledge")])
def test_a_call_that_clears_inside_a_step_stays_idle(world, monkeypatch, method, step):
    """libpri refusing ALERTING or CONNECT drops the call inside the step; the state the
    step was heading for must not overwrite IDLE."""
    channel, far = world.incoming()
    monkeypatch.setattr(libpri.Pri, step, refuse(f"pri_{step}"))
    try:
        result = getattr(channel, method)()
    except libpri.LibpriError:
        result = channel.state()
    assert result is State.IDLE is channel.state()
    assert channel.cause() is Cause.FAILED and channel.Details.raw_cause == "41"
    assert channel.hang_up() is State.IDLE
    with pytest.raises(Hangup):
        channel.ring()
    # the caller is told: DISCONNECT, temporary failure
    assert world.engine.wait_until(lambda: far.cleared, T) and far.call.cause == 41


def test_while_our_disconnect_waits_for_release_the_call_is_being_cleared(world):
    channel, far = world.incoming()
    with_tones(channel)
    channel.answer()
    wire = world.backend.loop.tap
    wire.frame_filter = drop_message("RELEASE")  # the far end's RELEASE is lost: T305 runs
    hanging_up = world.engine.start_actor_thread(channel.hang_up)
    world.engine.sleep(0.5)
    assert channel._leg.call.state.name == "CLEARING"
    with pytest.raises(Hangup, match="being cleared"):
        channel.FilePlayer.play("goodbye.wav")
    with pytest.raises(Hangup, match="being cleared"):
        channel.TonePlayer.play("RINGBACK", 1)
    with pytest.raises(Hangup, match="being cleared"):
        channel.answer()
    wire.frame_filter = None
    # libpri sends RELEASE again when its T308 (wall clock) runs out
    assert wait_for_libpri(world.engine, lambda: channel.state() is State.IDLE)
    hanging_up.join(T)
    assert channel.state() is State.IDLE and channel.cause() is Cause.NORMAL
    assert far.cleared


def test_answer_between_rings_two_steps_starts_no_ringtone(world, monkeypatch):
    """Another thread's answer() can land after ring() alerted and before it plays."""
    channel, far = world.incoming()
    with_tones(channel)
    alert = UASCallChannel._engine_alert

    def alert_then_answered(self, early_media, codecs):
        result = alert(self, early_media, codecs)
        self._engine_answer(None)  # what the other thread's answer() does on the engine
        return result

    monkeypatch.setattr(UASCallChannel, "_engine_alert", alert_then_answered)
    channel.ring(0, negotiate_early_media=True, custom_ringtone="RINGBACK",
                 loop_ringtone=True)
    world.engine.sleep(3)
    assert channel.state() is State.ANSWERED
    samples = audio.decode(bytes(far.heard), world.law)
    assert audio.component_level_dbm0(samples, 425, world.law) < -60  # no ringback at all


@pytest.mark.parametrize("ringtime", [None, 0])
def test_a_hang_up_between_rings_two_steps_returns_the_call_idle(world, monkeypatch, ringtime):
    """Another thread's hang_up() can land after ring() alerted and before it plays: ring()
    returns once the call is cleared, as it does when the hang-up comes while it rings, not
    RING_INCOMING for a call already going (seen on the vm rig, where the far end's
    RELEASE takes a while)."""
    channel, _far = world.incoming()
    with_tones(channel)
    prepare = UASCallChannel._prepare_ringtone

    def hung_up_while_the_source_is_made(self, ringtone, opened):
        make = prepare(self, ringtone, opened)

        def make_then_hung_up(law, loop):
            # what the other thread's hang_up() does on the engine, ring() between its steps
            world.engine.run(self._engine_hang_up)
            return make(law, loop)
        return make_then_hung_up

    monkeypatch.setattr(UASCallChannel, "_prepare_ringtone", hung_up_while_the_source_is_made)
    state = channel.ring(ringtime, negotiate_early_media=True, custom_ringtone="RINGBACK")
    assert state is State.IDLE
    assert channel.state() is State.IDLE


def test_ring_without_early_media_when_the_b_channel_does_not_open(world, monkeypatch):
    """Early media is asked for "if available": a B-channel that cannot be opened makes it
    unavailable, and the call still rings."""
    channel, _far = world.incoming()
    with_tones(channel)

    def busy(self, call, numbufs):
        raise DeviceError(errno.EBUSY, f"channel {call.channo}", "open", "held elsewhere")

    monkeypatch.setattr(PriSpan, "_open_bchannel", busy)
    state = channel.ring(None, negotiate_early_media=True, custom_ringtone="RINGBACK")
    assert state is State.RING_INCOMING
    assert [m.progress_descriptions for m in world.alertings()] == [[]]


@pytest.mark.parametrize("raw, cause", [(17, Cause.BUSY), ("1", Cause.UNOBTAINABLE),
                                        (34, Cause.NOCHANNELS), (88, Cause.OTHER)])
def test_reject_with_a_raw_cause_reports_the_cause_it_maps_to(world, raw, cause):
    channel, far = world.incoming()
    assert channel.reject(raw_cause=raw) is State.IDLE
    assert channel.cause() is cause
    assert world.engine.wait_until(lambda: far.cleared, T) and far.call.cause == int(raw)


def test_media_events_come_in_order_even_for_empty_media(world, tmp_path):
    write_wav(tmp_path / "empty.wav", array.array("h"), 8000)
    channel, _far = world.incoming()
    seen: list[str] = []
    world.engine.run(channel.listeners.append,
                     lambda _channel, event: seen.append(type(event).__name__))
    empty = PlayableMedia(file_to_play="empty.wav", media_dir=tmp_path)
    channel.ring(None, negotiate_early_media=True, custom_ringtone=empty)
    world.engine.sleep(0.1)
    assert [n for n in seen if n in (MediaStarted.__name__, MediaEnded.__name__)] == [
        "MediaStarted", "MediaEnded"]


def test_answer_checks_its_codecs(world):
    channel, _far = world.incoming()
    with pytest.raises(ArgumentError, match="g729"):
        channel.answer(codecs="g729")
    assert channel.state() is State.CALL_INCOMING
    assert channel.answer(codecs="g711u;g711a") is State.ANSWERED


def test_text_that_is_not_unicode_text_is_an_argument_error():
    with pytest.raises(ArgumentError, match="not a character"):
        tts.synthesize("hello \udc80 world")



def test_an_answer_at_the_very_deadline_of_call_is_not_a_timeout(world, monkeypatch):
    """The engine's wait can end by its timer in the same moment as the answer it waited
    for: call() returns ANSWERED, not a NOANSWER clearing of a call that was answered."""
    far_end = world.backend.far_end
    far_end.answer_after = 1.0
    channel = UASCallChannel(world.engine, backend=world.backend, route="pri",
                             media_clock=MediaClock(world.engine), media_dir=MEDIA)
    engine = world.engine
    wait = engine.wait

    def wait_then_time_out(future, timeout=None):
        result = wait(future, T if timeout is None else timeout)
        if timeout != 5:
            return result
        raise TimeoutError(f"no result within {timeout} s")  # the timer fired as it came

    monkeypatch.setattr(engine, "wait", wait_then_time_out)
    assert channel.call("5559000", seconds_timeout=5) is State.ANSWERED
    assert channel.cause() is Cause.NORMAL
    monkeypatch.undo()
    assert channel.hang_up() is State.IDLE
