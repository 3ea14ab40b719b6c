"""The channel listens, on PRI: the caller's keys in band, barge-in, recordings, our own DTMF.

Scenarios on the ``rig`` fixture: they run on the simulator (in virtual time) and again on
the real DAHDI driver in the vm rig. The caller is the simulated exchange's libpri side,
which presses keys and talks in band on its B-channel (``FarEndCall.press``/``say``); what
it hears back is analysed by the test's own Goertzel filters (``tests/audio.py``), never
by uascall's detector.
"""

from __future__ import annotations

import math
import threading
import time
import wave
from contextlib import nullcontext

import pytest

from tests import audio
from uascall import PlayableMedia
from uascall.channel import (
    MAX_BUFFERED_DIGITS,
    DigitReceived,
    MediaEnded,
    MediaStarted,
    State,
)
from uascall.errors import ArgumentError, Error, Hangup

from .helpers import T, World, with_tones


def answered(world: World):
    channel, far = world.incoming()
    assert channel.answer() is State.ANSWERED
    return channel, far


def tone(freq: float, seconds: float, level_dbm0: float, law: str) -> list[int]:
    peak = audio.reference_rms(law) * math.sqrt(2) * 10 ** (level_dbm0 / 20)
    return [round(peak * math.sin(2 * math.pi * freq * n / 8000))
            for n in range(round(seconds * 8000))]


def events_of(channel) -> list[tuple[float, object]]:
    """The channel's events from now on, with the engine time each came at."""
    seen: list[tuple[float, object]] = []
    engine = channel._engine
    channel.listeners.append(lambda _channel, event: seen.append((engine.time(), event)))
    return seen


def press(world: World, far, digits: str, **kwargs) -> float:
    return world.engine.run(lambda: far.press(digits, **kwargs))


# --------------------------------------------------------------------------- digits

def test_keys_pressed_in_band_are_collected(world):
    channel, far = answered(world)
    press(world, far, "1234567890*#ABCD")
    digits = channel.DTMFDetector.get_digits(count=16, seconds_predigits_timeout=T,
                                             seconds_interdigit_timeout=T)
    assert digits == "1234567890*#ABCD"
    assert channel.DTMFDetector.cause() is channel.DTMFDetector.Cause.COUNT


def test_get_digits_ends_on_the_end_digit_and_keeps_the_rest(world):
    channel, far = answered(world)
    press(world, far, "42#7")
    assert channel.DTMFDetector.get_digits(end="#", seconds_predigits_timeout=T,
                                           seconds_interdigit_timeout=T) == "42"
    assert channel.DTMFDetector.cause() is channel.DTMFDetector.Cause.END
    assert channel.DTMFDetector.get_digits(count=1, seconds_predigits_timeout=T) == "7"


def test_keys_at_ten_a_second_are_all_collected(world):
    channel, far = answered(world)
    press(world, far, "0123456789" * 2, on_ms=50, off_ms=50)
    assert channel.DTMFDetector.get_digits(count=20, seconds_predigits_timeout=T,
                                           seconds_interdigit_timeout=T) == "0123456789" * 2


def test_keys_during_early_media_wait_for_the_answer_unless_listening_early(world):
    """Before the answer a network connects only our side of the B-channel (Q.931 Annex
    K): keys pressed then are not heard, those after the answer are. With listen_early
    (a network that connects both sides early) they are heard as they come."""
    channel, far = world.incoming()
    with_tones(channel)
    channel.ring(negotiate_early_media=True, custom_ringtone="RINGBACK_EU", loop_ringtone=True)
    press(world, far, "9")
    world.engine.sleep(0.5)
    assert channel.DTMFDetector.get_digits() == ""
    assert channel.answer() is State.ANSWERED
    press(world, far, "8")
    assert channel.DTMFDetector.get_digits(count=1, seconds_predigits_timeout=T) == "8"
    world.backend.listen_early = True
    channel, far = world.incoming()
    with_tones(channel)
    channel.ring(negotiate_early_media=True, custom_ringtone="RINGBACK_EU", loop_ringtone=True)
    press(world, far, "7")
    assert channel.DTMFDetector.get_digits(count=1, seconds_predigits_timeout=T) == "7"
    assert channel.answer() is State.ANSWERED


def test_the_buffer_is_cleared_and_a_hangup_ends_the_wait(world):
    channel, far = answered(world)
    press(world, far, "55")
    assert world.engine.wait_until(lambda: channel._digits == "55", T)
    channel.DTMFDetector.clear_digits()
    assert channel.DTMFDetector.get_digits() == ""
    world.engine.run(world.engine.call_later, 0.5, far.hangup)
    assert channel.DTMFDetector.get_digits(seconds_predigits_timeout=T) == ""
    assert channel.DTMFDetector.cause() is channel.DTMFDetector.Cause.HANGUP
    with pytest.raises(Hangup):
        channel.DTMFDetector.get_digits()


def test_our_own_dtmf_echoed_back_is_not_a_key(world):
    channel, far = answered(world)
    far.echo = True
    assert channel.DTMFPlayer.play("123#") is channel.DTMFPlayer.Cause.NORMAL
    world.engine.sleep(0.5)
    assert channel.DTMFDetector.get_digits() == ""
    far.echo = False
    assert audio.dtmf_keys(audio.decode(bytes(far.heard), world.law), world.law) == "123#"
    # and a real key pressed after the echo has died away counts
    press(world, far, "7", lead_ms=300)
    assert channel.DTMFDetector.get_digits(count=1, seconds_predigits_timeout=T) == "7"


# --------------------------------------------------------------------------- barge-in

LONG_PROMPT = "Welcome. For sales press one. For support press two. To hear this again, " \
    "stay on the line."


def barge_in_scenario(world, prepare):
    """A prompt plays with barge-in; the caller presses 2 half a second in. ``prepare``
    readies the prompt (rendering speech takes a while under emulation) and returns what
    plays it."""
    channel, far = answered(world)
    play = prepare(channel)
    seen = events_of(channel)
    world.engine.run(world.engine.call_later, 0.5, far.press, "2")
    cause = play()
    assert channel.DTMFDetector.get_digits() == "2"  # the key stays for get_digits()
    keys = [at for at, e in seen if isinstance(e, DigitReceived)]
    stops = [(at, e.reason) for at, e in seen if isinstance(e, MediaEnded)]
    assert len(keys) == 1 and stops[-1][1] == "bargein"
    return channel, far, cause, stops[-1][0]


@pytest.mark.parametrize("player", ["file", "tone"])
def test_barge_in_stops_the_prompt_on_the_first_key(world, player):
    def prepare(channel):
        if player == "file":
            prompt = PlayableMedia(text_to_say=LONG_PROMPT, channel=channel)
            prompt.duration  # noqa: B018 - rendered before the clock runs
            return lambda: channel.FilePlayer.play(prompt, barge_in=True)
        with_tones(channel)
        return lambda: channel.TonePlayer.play("RINGBACK_UK", seconds_duration=10,
                                               barge_in=True)

    _channel, far, cause, stopped_at = barge_in_scenario(world, prepare)
    assert cause.name == "BARGEIN"
    world.engine.sleep(0.3 + world.slack)
    # What the caller heard after the prompt stopped: nothing of it, once the frames in
    # flight on the line (one block each way) have gone; on an engine in real time
    # (the real driver in an emulated guest) the stop's time is known to its slack only.
    stop_index = max(i for i, (at, _) in enumerate(far.heard_at) if at <= stopped_at)
    in_flight = 320 + int(world.slack * 8000)
    tail = audio.decode(bytes(far.heard[far.heard_at[stop_index][1] + in_flight:]),
                        world.law)
    assert audio.level_dbm0(tail, world.law) < -50, "the prompt went on after the key"


def test_barge_in_latency_from_the_key_to_the_prompt_stopping(world):
    channel, far = answered(world)
    prompt = PlayableMedia(text_to_say=LONG_PROMPT, channel=channel)
    prompt.duration  # noqa: B018
    arrivals: list[tuple[float, bytes]] = []
    seen = events_of(channel)
    engine = world.engine

    def tap_when_listening():
        channel._hearing.taps.append(lambda frame, law: arrivals.append((engine.time(), frame)))

    engine.run(tap_when_listening)
    engine.run(engine.call_later, 0.7, far.press, "8")
    assert channel.FilePlayer.play(prompt, barge_in=True).name == "BARGEIN"
    # the taps have a frame once the DTMF bank's pass that found the key is over, which
    # may be after the play has returned here: let the engine finish that pass
    engine.run(lambda: None)
    stopped = [at for at, e in seen if isinstance(e, MediaEnded)][-1]
    # The key's onset on our side, found by the test's own filter in what we received:
    # the first block holding the digit, back to where in it the tone starts.
    blocks = audio.dtmf_blocks(audio.decode(b"".join(f for _, f in arrivals), world.law),
                               world.law)
    first = blocks.index("8")
    onset = arrivals[first][0] - 0.020  # the block's first sample arrived 20 ms before it
    if first and blocks[first - 1] is None:
        onset = arrivals[first - 1][0]  # the tone may have started in the block before
    assert stopped - onset <= 0.060 + world.slack, f"barge-in took {stopped - onset:.3f} s"


def test_digits_already_waiting_do_not_barge_in(world):
    channel, far = answered(world)
    press(world, far, "3")
    assert world.engine.wait_until(lambda: channel._digits == "3", T)
    cause = channel.FilePlayer.play("goodbye.wav", barge_in=True)
    assert cause is channel.FilePlayer.Cause.NORMAL


def test_stop_from_another_thread_aborts_only_that_play(world):
    channel, _far = answered(world)
    with_tones(channel)
    result = {}

    def play_then_stop():
        result["first"] = channel.TonePlayer.play("RINGBACK_EU", seconds_duration=30)

    thread = threading.Thread(target=play_then_stop)
    with world.engine.actor():
        thread.start()
        assert world.engine.wait_until(lambda: channel.TonePlayer.state().name == "PLAYING", T)
    channel.TonePlayer.stop()
    thread.join(T)
    assert result["first"].name == "ABORTED"
    # a stop() that comes after its play has ended does nothing to the next one
    channel.TonePlayer.stop()
    assert channel.TonePlayer.play("RINGBACK_EU", seconds_duration=1).name == "NORMAL"


def test_one_player_at_a_time(world):
    channel, _far = answered(world)
    with_tones(channel)
    thread = threading.Thread(target=channel.TonePlayer.play, args=("RINGBACK_EU", 5))
    with world.engine.actor():
        thread.start()
        assert world.engine.wait_until(lambda: channel.TonePlayer.state().name == "PLAYING", T)
    with pytest.raises(Error, match="while the TonePlayer plays"):
        channel.FilePlayer.play("goodbye.wav")
    with pytest.raises(Error, match="while the TonePlayer plays"):
        channel.DTMFPlayer.play("1")
    channel.TonePlayer.stop()
    thread.join(T)


def test_a_play_starting_on_another_thread_already_holds_the_channel(world, monkeypatch):
    """A play is PLAYING from its claim, before the engine makes it the channel's player:
    a second play asked for in between is refused (it could start first and play over
    the other, which then failed in its own thread)."""
    channel, _far = answered(world)
    with_tones(channel)
    held = threading.Event()
    go_on = threading.Event()
    port = type(channel.TonePlayer)._port

    def slow_port(self, what):
        held.set()
        go_on.wait(T)
        return port(self, what)

    monkeypatch.setattr(type(channel.TonePlayer), "_port", slow_port)
    thread = threading.Thread(target=channel.TonePlayer.play, args=("RINGBACK_EU", 1))
    thread.start()
    assert held.wait(T)
    with pytest.raises(Error, match="while the TonePlayer plays"):
        channel.FilePlayer.play("goodbye.wav")
    go_on.set()
    thread.join(T)


# --------------------------------------------------------------------------- recording

def read_wav(path) -> tuple[str, list[int]]:
    from uascall.media.wav import read_wav as read
    audio_ = read(path)
    return audio_.encoding, list(audio_.samples)


def test_recording_ends_after_silence_and_holds_what_the_caller_said(world, tmp_path):
    channel, far = answered(world)
    channel.media_dir = str(tmp_path)
    said = tone(1000, 1.5, -15, world.law)
    world.engine.run(far.say, said)
    cause = channel.FileRecorder.record("message.wav", milliseconds_max_silence=2000)
    assert cause is channel.FileRecorder.Cause.SILENCE
    assert channel.FileRecorder.audio_detected_in_recording() is True
    encoding, samples = read_wav(tmp_path / "message.wav")
    assert encoding == "alaw"
    loud = audio.on_off_segments(samples, threshold_dbm0=-40, law=world.law)
    on = [seconds for is_on, seconds in loud if is_on]
    assert on == [pytest.approx(1.5, abs=world.run_tolerance + 0.02)]
    # the 2 s of silence that ended it are cut to 0.2 s
    assert loud[-1] == (False, pytest.approx(0.2, abs=0.05))
    steady = samples[int(0.2 * 8000):int(0.2 * 8000) + 4000]
    assert audio.dominant_frequency(steady) == pytest.approx(1000, abs=2)


@pytest.mark.parametrize("file_format", ["ulaw", "pcm16"])
def test_recording_formats(world, tmp_path, file_format):
    channel, far = answered(world)
    channel.media_dir = str(tmp_path)
    world.engine.run(far.say, tone(440, 1.0, -20, world.law))
    cause = channel.FileRecorder.record("m.wav", seconds_timeout=0.5, file_format=file_format)
    assert cause is channel.FileRecorder.Cause.TIMEOUT
    got, samples = read_wav(tmp_path / "m.wav")
    assert got == file_format
    with wave.open(str(tmp_path / "m.wav")) if file_format == "pcm16" else nullcontext() as pcm:
        if pcm is not None:  # the standard library's reader takes PCM files only
            assert (pcm.getnchannels(), pcm.getframerate(), pcm.getnframes()) == (
                1, 8000, len(samples))
    assert len(samples) == pytest.approx(4000, abs=160 * (1 if world.slack == 0 else 3))


def test_recording_while_our_prompt_plays_holds_only_the_caller(world, tmp_path):
    channel, far = answered(world)
    channel.media_dir = str(tmp_path)
    with_tones(channel)
    world.engine.run(far.say, tone(1800, 1.0, -20, world.law))
    thread = threading.Thread(target=channel.TonePlayer.play, args=("RINGBACK_EU", 3))
    with world.engine.actor():
        thread.start()
        assert world.engine.wait_until(lambda: channel.TonePlayer.state().name == "PLAYING", T)
    assert channel.FileRecorder.record("both.wav", seconds_timeout=1.5).name == "TIMEOUT"
    channel.TonePlayer.stop()
    thread.join(T)
    _, samples = read_wav(tmp_path / "both.wav")
    assert audio.component_level_dbm0(samples[1600:6400], 1800, world.law) > -23
    assert audio.component_level_dbm0(samples[1600:6400], 425, world.law) < -60


def test_recording_barge_in_keeps_the_digit_and_cuts_its_tone(world, tmp_path):
    channel, far = answered(world)
    channel.media_dir = str(tmp_path)
    world.engine.run(far.say, tone(700, 0.6, -20, world.law))
    world.engine.run(world.engine.call_later, 0.8, far.press, "#")
    cause = channel.FileRecorder.record("m.wav", barge_in=True)
    assert cause is channel.FileRecorder.Cause.BARGEIN
    assert channel.DTMFDetector.get_digits() == "#"
    _, samples = read_wav(tmp_path / "m.wav")
    assert audio.dtmf_keys(samples, world.law) == ""
    assert audio.level_dbm0(samples[-160:], world.law) < -50  # none of the key's tone


def test_recording_survives_the_caller_hanging_up(world, tmp_path):
    channel, far = answered(world)
    channel.media_dir = str(tmp_path)
    world.engine.run(far.say, tone(500, 3.0, -20, world.law))
    world.engine.run(world.engine.call_later, 1.0, far.hangup)
    assert channel.FileRecorder.record("gone.wav").name == "HANGUP"
    _, samples = read_wav(tmp_path / "gone.wav")
    assert len(samples) == pytest.approx(8000, abs=400 + 8000 * world.slack)
    with pytest.raises(Hangup):
        channel.FileRecorder.record("again.wav")


def test_recording_stop_size_and_bad_requests(world, tmp_path):
    channel, _far = answered(world)
    channel.media_dir = str(tmp_path)
    (tmp_path / "folder").mkdir()
    for name in ("../outside.wav", "/tmp/abs.wav", "missing/folder/x.wav", "folder",
                 "x" * 300 + ".wav", "nul\0.wav", ""):
        with pytest.raises(Error):
            channel.FileRecorder.record(name)
    for kwargs in ({"milliseconds_max_silence": -1}, {"seconds_timeout": -1},
                   {"file_format": "mp3"}, {"max_file_size": 0}):
        with pytest.raises(ArgumentError):
            channel.FileRecorder.record("x.wav", **kwargs)
    assert channel.FileRecorder.record("small.wav", max_file_size=4000,
                                       milliseconds_max_silence=0).name == "SIZE"
    _, samples = read_wav(tmp_path / "small.wav")
    assert len(samples) == 4000
    timer = threading.Timer(0.2, channel.FileRecorder.stop)
    result = {}
    thread = threading.Thread(target=lambda: result.update(
        cause=channel.FileRecorder.record("stopped.wav", milliseconds_max_silence=0)))
    with world.engine.actor():
        thread.start()
        assert world.engine.wait_until(
            lambda: channel.FileRecorder.state().name == "RECORDING", T)
    timer.start()
    thread.join(T)
    timer.join()
    assert result["cause"].name == "ABORTED"
    read_wav(tmp_path / "stopped.wav")  # complete and valid


# --------------------------------------------------------------------------- DTMFPlayer

def test_dtmf_player_sends_in_band_what_the_far_end_decodes(world):
    channel, far = answered(world)
    start = world.engine.run(lambda: len(far.heard))
    assert channel.DTMFPlayer.play("159D*0#") is channel.DTMFPlayer.Cause.NORMAL
    world.engine.sleep(0.3)
    heard = audio.decode(bytes(far.heard[start:]), world.law)
    assert audio.dtmf_keys(heard, world.law) == "159D*0#"
    # levels and timing per reference/dtmf.md: about -10 dBm0 a tone (the kernel's tone
    # zone sounds them), 80 ms on, 80 ms off (longer only where the engine ran late)
    blocks = audio.dtmf_blocks(heard, world.law)
    first = blocks.index("1")
    burst = heard[first * 160:first * 160 + 480]
    assert audio.component_level_dbm0(burst, 697, world.law) == pytest.approx(-10, abs=1.5)
    assert audio.component_level_dbm0(burst, 1209, world.law) == pytest.approx(-10, abs=1.5)
    # (to 5 ms; above -20 dBm0, as below: a key is about -7, and CI's vm rig once heard a
    # 5 ms click above -30 before the first key)
    runs = audio.on_off_segments(heard, -20, frame=40, law=world.law)
    tones = [seconds for loud, seconds in runs if loud]
    pauses = [seconds for loud, seconds in runs[1:-1] if not loud]
    assert len(tones) == 7 and len(pauses) == 6, runs
    assert all(seconds == world.approx(0.08, 0.006) for seconds in tones + pauses), runs


@pytest.mark.parametrize("offset_ms", [10, 40, 70, 120])
def test_dtmf_player_keys_stay_whole_when_the_engine_stalls_during_them(live_world,
                                                                        offset_ms):
    """The engine held up 70 ms in each key or pause (``offset_ms`` into each 160 ms; a
    loaded or emulated machine: CI's vm rig heard '159900' for '1590*#' from an FXS port):
    longer than the audio a player keeps queued. The far end still hears each key once,
    whole: the kernel sounds it on the line's clock, the engine only holds it down and
    lets it go (a late key up lengthens it)."""
    world = live_world
    channel, far = answered(world)
    mark = world.engine.run(lambda: len(far.heard))

    def stall_in_each_key() -> None:
        for key in range(6):
            world.engine.call_later(0.16 * key + offset_ms / 1000, time.sleep, 0.07)

    world.engine.run(stall_in_each_key)
    assert channel.DTMFPlayer.play("1590*#") is channel.DTMFPlayer.Cause.NORMAL
    world.engine.sleep(0.5)
    heard = audio.decode(bytes(far.heard[mark:]), world.law)
    assert audio.dtmf_keys(heard, world.law) == "1590*#"
    # (above -20 dBm0: a key is -7; the vm rig's far end has heard a -26 dBm0 click)
    tones = [seconds for loud, seconds in audio.on_off_segments(heard, -20, frame=40,
                                                                 law=world.law) if loud]
    assert len(tones) == 6 and min(tones) >= 0.075, tones


def test_dtmf_player_comma_pauses_half_a_second(world):
    channel, _far = answered(world)
    _cause, elapsed = world.elapsed(channel.DTMFPlayer.play, "1,2")
    assert elapsed == world.approx(0.16 + 0.5 + 0.16, 0.06)


def test_dtmf_player_refuses_bad_strings_and_wrong_states(world):
    channel, far = world.incoming()
    with pytest.raises(Error):
        channel.DTMFPlayer.play("1")  # not answered yet
    channel.answer()
    for bad in ("", "12x", "1" * 33, 5, "e"):
        with pytest.raises(Error):
            channel.DTMFPlayer.play(bad)
    world.engine.run(far.hangup)
    assert world.engine.wait_until(lambda: channel.state() is State.IDLE, T)
    with pytest.raises(Hangup):
        channel.DTMFPlayer.play("1")


def test_media_events_name_what_plays(world):
    channel, _far = answered(world)
    seen = events_of(channel)
    channel.DTMFPlayer.play("1")
    started = [e for _, e in seen if isinstance(e, MediaStarted)]
    assert started and started[0].what == "DTMF 1"


@pytest.mark.sim_only  # ten minutes of audio: in virtual time, six seconds
def test_a_ten_megabyte_recording_request_ends_with_a_complete_file(world, tmp_path):
    channel, _far = answered(world)
    channel.media_dir = str(tmp_path)
    cause = channel.FileRecorder.record("big.wav", milliseconds_max_silence=0,
                                        seconds_timeout=None, file_format="pcm16",
                                        max_file_size=10_000_000)
    assert cause is channel.FileRecorder.Cause.SIZE
    from uascall.media.wav import read_wav as read
    recording = read(tmp_path / "big.wav")
    assert len(recording.samples) == 5_000_000  # 10 MB of 16-bit samples: 625 s
    assert channel.FileRecorder.audio_detected_in_recording() is False


def both_at_once(world, first, second):
    """Run ``first`` and ``second`` in two threads released together; their outcomes
    (a result, or the exception raised) in the order given."""
    barrier = threading.Barrier(2)
    results: list = [None, None]

    def run(index, fn):
        barrier.wait()
        try:
            results[index] = fn()
        except Exception as exc:  # the refused one
            results[index] = exc

    threads = [world.engine.start_actor_thread(run, i, fn, name=f"racer {i}")
               for i, fn in enumerate((first, second))]
    return threads, results


def both_returned(world, threads, results) -> bool:
    """Wait (on the engine: virtual time runs only while this thread does) until both
    racers have their outcome, then for their threads to end. An outcome, set while the
    racer is still an actor, is what the engine can see; a thread's end is not: on a
    virtual clock the last racer's exit wakes the engine a moment before is_alive() turns
    False, and time then ran to the deadline."""
    if not world.engine.wait_until(lambda: all(r is not None for r in results), T):
        return False
    for thread in threads:
        thread.join(T)
    return not any(thread.is_alive() for thread in threads)


def test_two_recordings_at_once_one_is_refused_and_the_other_ends(world, tmp_path):
    channel, far = answered(world)
    channel.media_dir = str(tmp_path)
    record = lambda name: lambda: channel.FileRecorder.record(  # noqa: E731
        name, seconds_timeout=None, milliseconds_max_silence=0)
    threads, results = both_at_once(world, record("a.wav"), record("b.wav"))
    assert world.engine.wait_until(lambda: any(isinstance(r, Error) for r in results), T)
    world.engine.run(world.engine.call_later, 0.5, far.hangup)
    assert both_returned(world, threads, results)
    assert sorted(type(r).__name__ for r in results) == ["Cause", "Error"]
    assert channel.FileRecorder.cause() is channel.FileRecorder.Cause.HANGUP


def test_two_plays_at_once_one_is_refused_and_stop_reaches_the_other(world):
    channel, _far = answered(world)
    with_tones(channel)
    play = lambda: channel.TonePlayer.play("RINGBACK_EU", 30)  # noqa: E731
    threads, results = both_at_once(world, play, play)
    assert world.engine.wait_until(lambda: any(isinstance(r, Error) for r in results), T)
    assert channel.TonePlayer.state().name == "PLAYING"
    channel.TonePlayer.stop()
    assert both_returned(world, threads, results)
    assert [r.name for r in results if not isinstance(r, Error)] == ["ABORTED"]


def test_the_digit_buffer_is_bounded(world):
    channel, _far = answered(world)
    world.engine.run(lambda: [channel._on_key("5") for _ in range(MAX_BUFFERED_DIGITS + 50)])
    assert channel.DTMFDetector.get_digits() == "5" * MAX_BUFFERED_DIGITS
