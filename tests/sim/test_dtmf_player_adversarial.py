"""DTMFPlayer on a DAHDI channel, under the timings and uses that could break it.

Since ade97ad a key played on a B-channel or an analog port is held down by the kernel's
generator (DAHDI_FLUSH_WRITE, DAHDI_SENDTONE of the digit's DTMF tone; key up
DAHDI_TONE_STOP), paced by the engine's timers, 80 ms on and 80 ms off; where the kernel
refuses, the keys go as frames. The scenarios here stop a play mid-key (and before its
first key) from another thread; hang up mid-key at either end, on PRI and on both analog
ports, or lose the span to a RED alarm, then check that the next call on the line starts
silent; play every key, lower case, commas and the longest string; let the line echo our
keys (PRI, FXS, FXO) and press a key of the far end's meanwhile; stall the engine in each
key on analog ports; take the tone zone away; play on SIP without telephone-event; race
plays against each other, other players, connect() and a transfer; play right after a
prompt; and count the reference cycles calls that played keys leave. What the far ends
hear is analysed with the test's own filters (``tests/audio.py``), never uascall's
detector.
"""

from __future__ import annotations

import array
import itertools
import logging
import threading
import time
import wave

import pytest

from tests import audio
from uascall import faultlog
from uascall.channel import State
from uascall.dahdi import abi
from uascall.dahdi.analog import AnalogSettings
from uascall.errors import Error, Hangup

from .helpers import T, World, wait_for_libpri, with_tones
from .sip_peer import answered as answered_sip
from .test_analog_calls import answered_fxo, build, phone_calls
from .test_call_garbage import cycles_after, sip_calls
from .test_connect import answered_in, answered_out, outbound_channel
from .test_listening import answered, both_at_once, both_returned, tone
from .test_sip_listening import received_events

# The simulator only: key edges are measured against its virtual time, and the tone zone
# is taken out of its kernel.
pytestmark = pytest.mark.sim_only

KEYS = "0123456789*#ABCD"


def heard(world: World, far, mark: int) -> list[int]:
    return audio.decode(bytes(far.heard[mark:]), world.law)


def mark_of(world: World, far) -> int:
    return world.engine.run(lambda: len(far.heard))


def in_thread(world: World, fn, *args):
    """Run ``fn(*args)`` on an actor thread of its own; its outcome (a result or the
    exception raised) lands in the returned list."""
    outcome: list = []

    def body() -> None:
        try:
            outcome.append(fn(*args))
        except Exception as exc:  # the outcome under test
            outcome.append(exc)

    thread = world.engine.start_actor_thread(body, name="player")
    return thread, outcome


def finish(world: World, thread: threading.Thread, outcome: list) -> object:
    assert world.engine.wait_until(lambda: bool(outcome), T), "the play did not return"
    thread.join(T)
    return outcome[0]


def tones_and_pauses(samples, law: str) -> tuple[list[float], list[float]]:
    """The milliseconds of each tone and of each pause between them, to 5 ms (-30 dBm0
    judged over 5 ms windows)."""
    runs = [(loud, seconds * 1000)
            for loud, seconds in audio.on_off_segments(samples, -30, frame=40, law=law)]
    while runs and not runs[0][0]:
        runs.pop(0)
    while runs and not runs[-1][0]:
        runs.pop()
    return [ms for loud, ms in runs if loud], [ms for loud, ms in runs if not loud]


def silent_after(world: World, far, at: float) -> bool:
    """Whether ``far`` heard nothing loud from ``at`` on, but the blocks in flight then
    (one each way)."""
    index = max(i for i, (when, _) in enumerate(far.heard_at) if when <= at)
    tail = audio.decode(bytes(far.heard[far.heard_at[index][1] + 320:]), world.law)
    return len(tail) >= 800 and audio.level_dbm0(tail, world.law) < -50


# --------------------------------------------------------------------------- stop()

@pytest.mark.parametrize("after_ms", [0, 10, 40, 79, 80, 120])
def test_stop_from_another_thread_mid_key_ends_the_play_and_the_tone(world, after_ms):
    """stop() ``after_ms`` into the second key (from 80 ms on, in the pause after it;
    0 and 80 at the very moment of its key down and key up) ends the play at once
    (DTMFPlayer has no ABORTED: a stopped play is ERROR), the tone with it, and a prompt
    played next is heard whole, with no key left down."""
    channel, far = answered(world)
    with_tones(channel)
    mark = mark_of(world, far)
    thread, outcome = in_thread(world, channel.DTMFPlayer.play, "1234567890")
    world.engine.sleep(0.16 + after_ms / 1000)
    stopped_at = world.engine.time()
    channel.DTMFPlayer.stop()
    cause = finish(world, thread, outcome)
    assert cause is channel.DTMFPlayer.Cause.ERROR
    assert world.engine.time() - stopped_at < 0.005
    assert channel.DTMFPlayer.state() is channel.DTMFPlayer.State.IDLE
    world.engine.sleep(0.3)
    samples = heard(world, far, mark)
    tones, _pauses = tones_and_pauses(samples, world.law)
    # the second key sounded until the stop, or whole when the stop came after it
    assert tones[0] == pytest.approx(80, abs=6), tones
    second = min(after_ms, 80)
    if second == 0:  # the stop and the key down at one moment: at most a click of it
        assert len(tones) == 1 or (len(tones) == 2 and tones[1] <= 5), tones
    else:
        assert len(tones) == 2 and tones[1] == pytest.approx(second, abs=6), tones
    # a 40 ms piece of a key may or may not fill two of the filter's blocks
    keys = audio.dtmf_keys(samples, world.law)
    expected = ("1",) if after_ms < 40 else ("1", "12") if after_ms < 60 else ("12",)
    assert keys in expected, keys
    # nothing sounds after the stop (a block in flight at most)
    assert silent_after(world, far, stopped_at), "the key went on after stop()"
    assert not world.engine.run(channel._leg.media().channel.dialing)  # no key down
    # the next play goes out whole
    mark = mark_of(world, far)
    assert channel.TonePlayer.play("RINGBACK_EU", 1.0) is channel.TonePlayer.Cause.NORMAL
    world.engine.sleep(0.2)
    on = audio.steady(heard(world, far, mark), 425.0, world.law)
    assert len(on) / 8000 >= 0.94, f"{len(on) / 8000:.3f} s of the tone after the stop"
    # and so do keys
    mark = mark_of(world, far)
    assert channel.DTMFPlayer.play("#9") is channel.DTMFPlayer.Cause.NORMAL
    world.engine.sleep(0.2)
    assert audio.dtmf_keys(heard(world, far, mark), world.law) == "#9"
    channel.hang_up()


def test_stop_while_the_first_key_waits_for_the_prompt_before_it(world):
    """The first key waits for the end of what the prompt before it queued: a stop() in
    that wait ends the play with no key sounded at all, and the prompt is not cut."""
    channel, far = answered(world)
    with_tones(channel)
    mark = mark_of(world, far)
    started = threading.Event()

    def prompt_then_keys():
        channel.TonePlayer.play("RINGBACK_EU", 0.5)
        started.set()
        return channel.DTMFPlayer.play("123")

    thread, outcome = in_thread(world, prompt_then_keys)
    assert world.engine.wait_until(lambda: channel.DTMFPlayer.state().name == "PLAYING", T)
    channel.DTMFPlayer.stop()
    assert finish(world, thread, outcome) is channel.DTMFPlayer.Cause.ERROR
    world.engine.sleep(0.3)
    samples = heard(world, far, mark)
    assert audio.dtmf_keys(samples, world.law) == ""
    assert tones_and_pauses(samples, world.law)[0] == [pytest.approx(500, abs=6)]
    channel.hang_up()


# --------------------------------------------------------------------------- hang-ups

def no_faults(world: World, before: dict) -> bool:
    return world.engine.faults.counts() == {} and dict(faultlog.PROCESS.counts()) == before


def complaints(caplog) -> list[str]:
    return [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records
            if r.levelno >= logging.WARNING]


def next_call(world: World):
    """The exchange's next call, once both ends have released the last one: on the first
    B-channel again (the network side hunts upwards)."""
    loop = world.backend.loop
    assert wait_for_libpri(world.engine, lambda: not loop.net_spans[0].calls
                           and not loop.cpe_spans[0].calls)
    return world.incoming()


@pytest.mark.parametrize("after_ms", [0, 30, 79, 100])
def test_the_far_end_hanging_up_mid_key_ends_the_play_and_frees_the_b_channel(
        world, after_ms, caplog):
    """The far end hangs up ``after_ms`` into the second key: play() returns HANGUP, the
    engine records no fault, and the next call on the same B-channel starts silent (no key
    left down on it) and can play keys of its own."""
    caplog.set_level(logging.DEBUG)
    before = dict(faultlog.PROCESS.counts())
    channel, far = answered(world)
    bchannel = far.call.chanpos
    world.engine.run(world.engine.call_later, 0.16 + after_ms / 1000, far.hangup)
    thread, outcome = in_thread(world, channel.DTMFPlayer.play, "1234567890")
    assert finish(world, thread, outcome) is channel.DTMFPlayer.Cause.HANGUP
    assert channel.wait_for_idle(T) is State.IDLE
    assert no_faults(world, before)
    assert complaints(caplog) == []
    again, far_again = next_call(world)
    assert far_again.call.chanpos == bchannel  # the B-channel the key was down on
    mark = mark_of(world, far_again)
    assert again.answer() is State.ANSWERED
    world.engine.sleep(0.5)
    samples = heard(world, far_again, mark)
    assert audio.dtmf_keys(samples, world.law) == ""
    assert audio.level_dbm0(samples, world.law) < -50, "the new call starts with a tone"
    mark = mark_of(world, far_again)
    assert again.DTMFPlayer.play("4") is again.DTMFPlayer.Cause.NORMAL
    world.engine.sleep(0.2)
    assert audio.dtmf_keys(heard(world, far_again, mark), world.law) == "4"
    again.hang_up()


def test_a_red_alarm_mid_key_ends_the_play_and_the_span_comes_back(world, rig, caplog):
    """The span loses its line during a key: the call ends (HANGUP for the play), no
    fault; once the line is back, a call on the same B-channel starts silent."""
    caplog.set_level(logging.DEBUG)
    before = dict(faultlog.PROCESS.counts())
    channel, _far = answered(world)
    loop = world.backend.loop
    world.engine.run(world.engine.call_later, 0.2, rig.raise_alarm, world.engine, loop,
                     abi.DAHDI_ALARM_RED)
    thread, outcome = in_thread(world, channel.DTMFPlayer.play, "1234567890")
    assert finish(world, thread, outcome) is channel.DTMFPlayer.Cause.HANGUP
    assert channel.wait_for_idle(T) is State.IDLE
    assert no_faults(world, before)
    rig.clear_alarm(world.engine, loop)
    assert world.engine.wait_until(lambda: world.backend.up and loop.cpe.in_service, T)
    # The next call comes while virtual time stood still (libpri's timers run on the wall
    # clock): its first blocks hold nothing of the key, which the kernel dropped with
    # the channel's close, as it drops what was written (close_channel; it heard 20 ms
    # of the key before 5829638).
    again, far_again = next_call(world)
    assert far_again.call.chanpos == 1
    mark = mark_of(world, far_again)
    assert again.answer() is State.ANSWERED
    world.engine.sleep(0.5)
    assert audio.dtmf_blocks(heard(world, far_again, 0), world.law)[:2] == [None, None]
    assert audio.level_dbm0(heard(world, far_again, mark), world.law) < -50
    again.hang_up()


@pytest.mark.parametrize("after_ms", [0, 5, 40])
def test_the_far_end_hanging_up_while_the_first_key_waits_for_the_prompt(world, after_ms):
    """The prompt's play returns with its last frames still queued; the far end hangs
    up ``after_ms`` later, while the keys' play waits for them: HANGUP, no fault."""
    before = dict(faultlog.PROCESS.counts())
    channel, far = answered(world)
    with_tones(channel)

    def prompt_then_keys():
        channel.TonePlayer.play("RINGBACK_EU", 0.5)
        world.engine.run(world.engine.call_later, after_ms / 1000, far.hangup)
        return channel.DTMFPlayer.play("123")

    thread, outcome = in_thread(world, prompt_then_keys)
    assert finish(world, thread, outcome) is channel.DTMFPlayer.Cause.HANGUP
    assert channel.wait_for_idle(T) is State.IDLE
    assert channel.DTMFPlayer.state() is channel.DTMFPlayer.State.IDLE
    assert no_faults(world, before)


@pytest.mark.parametrize("after_ms", [0, 30, 100])
def test_hanging_up_from_another_thread_mid_key(world, after_ms, caplog):
    """The application's other thread hangs up during a key: the play returns HANGUP,
    the far end hears the key stop with the call, no fault."""
    caplog.set_level(logging.DEBUG)
    before = dict(faultlog.PROCESS.counts())
    channel, _far = answered(world)
    thread, outcome = in_thread(world, channel.DTMFPlayer.play, "1234567890")
    world.engine.sleep(0.16 + after_ms / 1000)
    assert channel.hang_up() is State.IDLE
    assert finish(world, thread, outcome) is channel.DTMFPlayer.Cause.HANGUP
    assert no_faults(world, before)
    assert complaints(caplog) == []
    again, far_again = next_call(world)
    assert far_again.call.chanpos == 1
    mark = mark_of(world, far_again)
    assert again.answer() is State.ANSWERED
    world.engine.sleep(0.5)
    assert audio.level_dbm0(heard(world, far_again, mark), world.law) < -50
    again.hang_up()


# --------------------------------------------------------------------------- after a prompt

def write_tone_wav(path, freq: float, seconds: float) -> None:
    samples = tone(freq, seconds, -10.0, "ulaw")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(array.array("h", samples).tobytes())


@pytest.mark.parametrize("player", ["file", "tone"])
def test_keys_right_after_a_prompt_do_not_cut_its_end(world, player, tmp_path):
    """A prompt (a 1 kHz file, or the EU ringback's 425 Hz) and keys played at once after
    it: the prompt's last frames, still queued when its play returned, are heard whole
    before the first key (whose flush drops what is queued: it cut the prompt's last 20 ms
    before 5829638), and the keys are exact."""
    channel, far = answered(world)
    with_tones(channel)
    write_tone_wav(tmp_path / "beep.wav", 1000.0, 0.5)
    channel.media_dir = str(tmp_path)
    mark = mark_of(world, far)
    if player == "file":
        assert channel.FilePlayer.play("beep.wav") is channel.FilePlayer.Cause.NORMAL
        freq = 1000.0
    else:
        assert channel.TonePlayer.play("RINGBACK_EU", 0.5) is channel.TonePlayer.Cause.NORMAL
        freq = 425.0
    assert channel.DTMFPlayer.play("5D") is channel.DTMFPlayer.Cause.NORMAL
    world.engine.sleep(0.3)
    samples = heard(world, far, mark)
    assert audio.dtmf_keys(samples, world.law) == "5D"
    tones, pauses = tones_and_pauses(samples, world.law)
    # the prompt, then the keys: the prompt's end may touch the first key (one run of
    # tone then), never lose any of its 500 ms (each run reads up to 5 ms long)
    assert tones[0] >= 495 and sum(tones) >= 500 + 2 * 80, (tones, pauses)
    onset = next(i for i, key in enumerate(audio.dtmf_blocks(samples, world.law)) if key)
    prompt = samples[:onset * 160]
    assert audio.component_level_dbm0(prompt, freq, world.law) > -20
    channel.hang_up()


# --------------------------------------------------------------------------- strings

@pytest.mark.parametrize("digits, expected", [
    (KEYS, KEYS),
    ("abcd", "ABCD"),                              # lower case is the same key
    ("1,2,,3", "123"),
    (",5", "5"),                                   # a pause first
    ("9,", "9"),                                   # a pause last
    ("0" * 32, "0" * 32),                          # the longest, one digit repeated
    ("D*#0" * 8, "D*#0" * 8),
])
def test_every_key_and_pause_sounds_80_ms_on_80_ms_off(world, digits, expected):
    """Each key is a tone of 80 ms with 80 ms after it, a comma 0.5 s more; the far end's
    filter reads exactly the keys (a repeated digit is as many keys, never merged)."""
    channel, far = answered(world)
    mark = mark_of(world, far)
    cause, took = world.elapsed(channel.DTMFPlayer.play, digits)
    assert cause is channel.DTMFPlayer.Cause.NORMAL
    pauses = digits.count(",")
    assert took == world.approx(0.16 * len(expected) + 0.5 * pauses, 0.021)
    world.engine.sleep(0.3)
    samples = heard(world, far, mark)
    assert audio.dtmf_keys(samples, world.law) == expected
    tones, gaps = tones_and_pauses(samples, world.law)
    assert len(tones) == len(expected), tones
    assert all(ms == pytest.approx(80, abs=6) for ms in tones), tones
    # between keys 80 ms, and 580 ms (or 1080) where commas stand
    between = [80 + 500 * n for n in (len(part) for part in _commas_between(digits))]
    assert gaps == [pytest.approx(ms, abs=6) for ms in between], gaps


def _commas_between(digits: str) -> list[str]:
    """The runs of commas between one key and the next (empty where none)."""
    keys_at = [i for i, ch in enumerate(digits) if ch != ","]
    return [digits[a + 1:b] for a, b in itertools.pairwise(keys_at)]


def test_levels_of_the_kernel_keys_on_both_tones_of_every_key(world):
    channel, far = answered(world)
    mark = mark_of(world, far)
    assert channel.DTMFPlayer.play(KEYS) is channel.DTMFPlayer.Cause.NORMAL
    world.engine.sleep(0.2)
    samples = heard(world, far, mark)
    blocks = audio.dtmf_blocks(samples, world.law)
    rows, columns = (697, 770, 852, 941), (1209, 1336, 1477, 1633)
    pad = ("123A", "456B", "789C", "*0#D")
    for key in KEYS:
        first = blocks.index(key)
        burst = samples[first * 160:first * 160 + 320]
        row = next(r for r, keys in zip(rows, pad, strict=True) if key in keys)
        column = columns[next(keys.index(key) for keys in pad if key in keys)]
        for freq in (row, column):
            level = audio.component_level_dbm0(burst, freq, world.law)
            assert level == pytest.approx(-10, abs=1.5), (key, freq, level)


# ------------------------------------------------------------ our own echo, the far end's keys

def receiving(engine, channel):
    """What ``channel`` receives from now on, as samples, when the returned function is
    called (the frames its DTMF bank has looked at)."""
    frames: list[tuple[bytes, str]] = []
    engine.run(lambda: channel._hearing.taps.append(lambda frame, law: frames.append(
        (frame, law))))
    return lambda: engine.run(lambda: [x for frame, law in frames
                                       for x in audio.decode(frame, law)])


@pytest.mark.parametrize("digits, delay", [(KEYS, 0.0), ("5555", 0.0), ("1" * 32, 0.0),
                                           ("1590*#", 0.3), ("5555", 0.6)])
def test_our_keys_echoed_back_on_pri_are_not_the_far_ends(world, digits, delay):
    """The far end sends back all it hears, at once (a poor hybrid) or ``delay`` seconds
    later (a long network path): every key we play comes back in band, none of them is
    taken for the far end's, also a digit repeated for 5 s; a key the far end really
    presses once the echo died away counts."""
    channel, far = answered(world)
    received = receiving(world.engine, channel)
    echo = {"on": True}

    def heard_and_echoed(block: bytes, heard_by=far._heard) -> None:
        heard_by(block)
        if echo["on"]:
            world.engine.call_later(delay, lambda: far.call.live and
                                    far.call.media.write_frame(block))

    world.engine.run(far.call.on_media, heard_and_echoed)
    assert channel.DTMFPlayer.play(digits) is channel.DTMFPlayer.Cause.NORMAL
    world.engine.sleep(0.6 + delay)
    assert audio.dtmf_keys(received(), world.law) == digits  # the echo came back
    assert channel.DTMFDetector.get_digits() == ""
    echo["on"] = False
    world.engine.sleep(1.5 + delay)  # the guard's memory of our keys runs out
    world.engine.run(far.press, "7")
    assert channel.DTMFDetector.get_digits(count=1, seconds_predigits_timeout=T) == "7"
    channel.hang_up()


def test_a_key_the_far_end_presses_while_we_play_keys_is_collected(world):
    """Double talk: the far end presses 9 in the middle of our eight 1s (no echo): the 9
    is the far end's, our keys are not."""
    channel, far = answered(world)
    mark = mark_of(world, far)
    world.engine.run(world.engine.call_later, 0.5, far.press, "9")
    assert channel.DTMFPlayer.play("1" * 8) is channel.DTMFPlayer.Cause.NORMAL
    world.engine.sleep(0.5)
    assert channel.DTMFDetector.get_digits() == "9"
    assert audio.dtmf_keys(heard(world, far, mark), world.law) == "1" * 8
    channel.hang_up()


# --------------------------------------------------------------------------- analog ports

@pytest.fixture
def lines(rig):
    engine_cm, world = build(rig, AnalogSettings())
    yield world
    engine_cm.__exit__(None, None, None)


def analog_call(lines, port: str):
    """An answered call on our FXO port (the exchange's caller) or our FXS port (the
    phone, which dialled); returns our channel and the line's far end."""
    if port == "fxo":
        return answered_fxo(lines), lines.exchange
    channel = phone_calls(lines, "7#")
    assert channel.answer() is State.ANSWERED
    return channel, lines.phone


def echoing(end) -> None:
    """The line's far end sends back what it hears, as a poor 2-wire hybrid does."""
    heard_by = end._heard

    def echo(block: bytes) -> None:
        heard_by(block)
        if end.channel is not None:
            end.channel.write_frame(block)

    end._heard = echo


@pytest.mark.parametrize("port", ["fxs", "fxo"])
def test_keys_from_an_analog_port_are_exact_and_their_echo_is_not_a_key(lines, port):
    channel, end = analog_call(lines, port)
    engine = lines.engine
    engine.sleep(0.3)
    mark = len(end.heard)
    received = receiving(engine, channel)
    engine.run(echoing, end)
    assert channel.DTMFPlayer.play(KEYS + ",5555") is channel.DTMFPlayer.Cause.NORMAL
    engine.sleep(0.6)
    assert audio.dtmf_keys(received(), end.law) == KEYS + "5555"  # the echo came back
    samples = end.heard_pcm(mark)
    assert audio.dtmf_keys(samples, end.law) == KEYS + "5555"
    tones, _gaps = tones_and_pauses(list(samples), end.law)
    assert all(ms == pytest.approx(80, abs=6) for ms in tones), tones
    assert channel.DTMFDetector.get_digits() == ""
    channel.hang_up()


def test_keys_right_after_the_fxs_ports_own_ringback(lines):
    """The FXS port sounds the zone's ringback to the phone off hook until the answer;
    keys played at once after the answer are exact and nothing of the ringback follows
    them (the port's own tone stopped, the kernel's keys not cut)."""
    engine, phone = lines.engine, lines.phone
    channel = phone_calls(lines, "7#")
    assert channel.ring(1.0) is State.RING_INCOMING
    assert channel.answer() is State.ANSWERED
    mark = len(phone.heard)
    assert channel.DTMFPlayer.play("*0#") is channel.DTMFPlayer.Cause.NORMAL
    engine.sleep(0.5)
    samples = list(phone.heard_pcm(mark))
    assert audio.dtmf_keys(samples, phone.law) == "*0#"
    tones, _gaps = tones_and_pauses(samples, phone.law)
    assert tones == [pytest.approx(80, abs=6)] * 3, tones
    channel.hang_up()


@pytest.mark.parametrize("port", ["fxs", "fxo"])
def test_the_line_hanging_up_mid_key_on_an_analog_port(lines, port, caplog):
    """The phone or the exchange hangs up during a key (the port's channel stays open
    for the next call): the play returns HANGUP, no fault, and the port's next call
    starts without a key left sounding."""
    caplog.set_level(logging.DEBUG)
    before = dict(faultlog.PROCESS.counts())
    engine = lines.engine
    channel, end = analog_call(lines, port)
    # (an fxsks channel ignores the far end's hook while its own off-hook settles, the
    # kernel's DEBOUNCE: the exchange hangs up well after the answer)
    engine.sleep(2.0)
    engine.run(engine.call_later, 0.2, end.hang_up)
    thread, outcome = in_thread(lines, channel.DTMFPlayer.play, "1234567890" * 3)
    assert finish(lines, thread, outcome) is channel.DTMFPlayer.Cause.HANGUP
    assert channel.wait_for_idle(T) is State.IDLE
    assert engine.faults.counts() == {} and dict(faultlog.PROCESS.counts()) == before
    assert complaints(caplog) == []
    engine.sleep(3.0)  # the port is back on hook, the far end idle
    again, end = analog_call(lines, port)
    mark = len(end.heard)
    engine.sleep(0.5)
    samples = list(end.heard_pcm(mark))
    assert audio.dtmf_keys(samples, end.law) == ""
    assert audio.level_dbm0(samples, end.law) < -50, "the new call starts with a tone"
    mark = len(end.heard)
    assert again.DTMFPlayer.play("8") is again.DTMFPlayer.Cause.NORMAL
    engine.sleep(0.2)
    assert audio.dtmf_keys(list(end.heard_pcm(mark)), end.law) == "8"
    again.hang_up()


class _RealTime:
    """``rig`` with its engines in real time (the line's clock keeps going while the
    engine thread is held up, as a card's does)."""

    def __init__(self, rig) -> None:
        self._rig = rig

    def engine(self):
        return self._rig.engine(virtual=False)

    def kernel(self, engine, conf: str):
        return self._rig.kernel(engine, conf)


@pytest.fixture
def live_lines(rig):
    # no caller ID: the exchange's call is offered at its first ring
    engine_cm, world = build(_RealTime(rig), AnalogSettings(callerid=None))
    yield world
    engine_cm.__exit__(None, None, None)


@pytest.mark.parametrize("port, offset_ms", [("fxs", 40), ("fxo", 120)])
def test_analog_keys_stay_whole_when_the_engine_stalls_during_them(live_lines, port,
                                                                   offset_ms):
    """CI's vm rig heard '159900' for '1590*#' from an FXS port: the engine held up 70 ms
    in each key or pause (``offset_ms`` into each 160 ms) must not break a key in two nor
    lose one, on either analog port."""
    lines = live_lines
    channel, end = analog_call(lines, port)
    engine = lines.engine
    time.sleep(0.3)
    mark = engine.run(lambda: len(end.heard))

    def stall_in_each_key() -> None:
        for key in range(6):
            engine.call_later(0.16 * key + offset_ms / 1000, time.sleep, 0.07)

    engine.run(stall_in_each_key)
    assert channel.DTMFPlayer.play("1590*#") is channel.DTMFPlayer.Cause.NORMAL
    time.sleep(0.5)
    samples = list(engine.run(end.heard_pcm, mark))
    assert audio.dtmf_keys(samples, end.law) == "1590*#"
    tones, _gaps = tones_and_pauses(samples, end.law)
    assert len(tones) == 6 and min(tones) >= 75, tones
    channel.hang_up()


# --------------------------------------------------------------------------- no tone zone

def without_zones(world: World) -> None:
    """The kernel has no tone zone loaded (SENDTONE: ENODATA), as a system.conf without
    loadzone would leave a kernel that dahdi_cfg did not give its default."""
    world.engine.run(setattr, world.backend.kernel, "zones", [])


@pytest.mark.parametrize("lose_zone_ms", [None, 100])
def test_keys_go_in_band_when_the_kernel_has_no_tone_zone(world, lose_zone_ms, caplog):
    """SENDTONE refused (no zone from the start, or from the second key on): the keys not
    sounded go as frames, still each once, 80 ms on, 80 ms off, at the in-band levels."""
    caplog.set_level(logging.DEBUG)
    channel, far = answered(world)
    if lose_zone_ms is None:
        without_zones(world)
    else:
        world.engine.run(world.engine.call_later, lose_zone_ms / 1000, without_zones, world)
    mark = mark_of(world, far)
    cause, took = world.elapsed(channel.DTMFPlayer.play, "1590*#")
    assert cause is channel.DTMFPlayer.Cause.NORMAL
    world.engine.sleep(0.3)
    samples = heard(world, far, mark)
    assert audio.dtmf_keys(samples, world.law) == "1590*#"
    tones, gaps = tones_and_pauses(samples, world.law)
    assert tones == [pytest.approx(80, abs=6)] * 6, tones
    assert gaps == [pytest.approx(80, abs=21)] * 5, gaps
    assert took == world.approx(6 * 0.16, 0.061)
    blocks = audio.dtmf_blocks(samples, world.law)
    last = max(i for i, key in enumerate(blocks) if key == "#")
    burst = samples[(last - 1) * 160:(last + 1) * 160]
    assert audio.component_level_dbm0(burst, 941, world.law) == pytest.approx(-9, abs=1.5)
    assert audio.component_level_dbm0(burst, 1477, world.law) == pytest.approx(-7, abs=1.5)
    assert any("goes in band" in r.getMessage() for r in caplog.records)
    assert channel.DTMFDetector.get_digits() == ""
    channel.hang_up()


def test_stop_during_keys_gone_in_band_for_want_of_a_zone(world):
    """No tone zone: the keys go as frames; a stop() in the second key still ends the
    play at once and drops what was queued of it."""
    channel, far = answered(world)
    without_zones(world)
    mark = mark_of(world, far)
    thread, outcome = in_thread(world, channel.DTMFPlayer.play, "1234567890")
    world.engine.sleep(0.2)
    stopped_at = world.engine.time()
    channel.DTMFPlayer.stop()
    assert finish(world, thread, outcome) is channel.DTMFPlayer.Cause.ERROR
    world.engine.sleep(0.3)
    assert audio.dtmf_keys(heard(world, far, mark), world.law) in ("1", "12")
    assert silent_after(world, far, stopped_at), "the frames went on after stop()"
    mark = mark_of(world, far)
    assert channel.DTMFPlayer.play("9") is channel.DTMFPlayer.Cause.NORMAL
    world.engine.sleep(0.2)
    assert audio.dtmf_keys(heard(world, far, mark), world.law) == "9"
    channel.hang_up()


# --------------------------------------------------------------------------- SIP

def test_sip_without_telephone_event_gets_the_keys_in_band_as_before(uas, peer):
    """The far end takes no telephone-event: the keys go in band in the call's RTP, each
    80 ms on and 80 ms off, a comma 0.5 s, lower case the same key."""
    channel = answered_sip(uas, peer, formats="8")
    peer.drain_rtp()
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(
        cause=channel.DTMFPlayer.play("1,a#B")))
    thread.start()
    packets = peer.rtp_packets(1.6)
    thread.join(T)
    assert result["cause"] is channel.DTMFPlayer.Cause.NORMAL
    assert {p.payload_type for p in packets} == {8}
    packets.sort(key=lambda p: p.sequence)
    samples = audio.decode(b"".join(p.payload for p in packets), "alaw")
    assert audio.dtmf_keys(samples, "alaw") == "1A#B"
    tones, gaps = tones_and_pauses(samples, "alaw")
    # (to a frame: the engine runs in real time, and may hold a key a tick longer)
    assert tones == [pytest.approx(80, abs=21)] * 4, (tones, gaps)
    assert gaps == [pytest.approx(ms, abs=21) for ms in (580, 80, 80)], (tones, gaps)
    channel.hang_up()


def test_sip_keys_right_after_a_prompt_do_not_cut_its_end(uas, peer):
    """The same on SIP without telephone-event: the prompt's RTP is whole before the
    first key's."""
    channel = answered_sip(uas, peer, formats="8")
    peer.drain_rtp()
    result: dict = {}

    def prompt_then_keys() -> None:
        result["tone"] = channel.TonePlayer.play("RINGBACK_EU", 0.5)
        result["keys"] = channel.DTMFPlayer.play("5D")

    thread = threading.Thread(target=prompt_then_keys)
    thread.start()
    packets = peer.rtp_packets(1.2)
    thread.join(T)
    assert result == {"tone": channel.TonePlayer.Cause.NORMAL,
                      "keys": channel.DTMFPlayer.Cause.NORMAL}
    packets.sort(key=lambda p: p.sequence)
    samples = audio.decode(b"".join(p.payload for p in packets), "alaw")
    assert audio.dtmf_keys(samples, "alaw") == "5D"
    tones, pauses = tones_and_pauses(samples, "alaw")
    assert tones[0] >= 495 and sum(tones) >= 500 + 2 * 80, (tones, pauses)
    channel.hang_up()


def test_stop_during_telephone_events_ends_the_play_and_no_event_is_left_open(uas, peer):
    """SIP with telephone-event: stop() in the second key ends the play at once; the
    events sent are the first two keys, each ended (its end packets sent), none after."""
    channel = answered_sip(uas, peer)
    peer.drain_rtp()
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(
        cause=channel.DTMFPlayer.play("123456")))
    thread.start()
    time.sleep(0.2)
    channel.DTMFPlayer.stop()
    thread.join(T)
    assert result["cause"] is channel.DTMFPlayer.Cause.ERROR
    events = received_events(peer, 0.6)
    assert sorted({event for _, event, _ in events}) == [1, 2]
    assert {event for _, event, end in events if end} == {1, 2}
    channel.hang_up()


# --------------------------------------------------------------------------- one at a time

def test_two_plays_back_to_back_are_heard_as_one_string(world):
    channel, far = answered(world)
    mark = mark_of(world, far)
    assert channel.DTMFPlayer.play("12") is channel.DTMFPlayer.Cause.NORMAL
    assert channel.DTMFPlayer.play("21") is channel.DTMFPlayer.Cause.NORMAL
    assert channel.DTMFPlayer.play("1") is channel.DTMFPlayer.Cause.NORMAL
    world.engine.sleep(0.3)
    samples = heard(world, far, mark)
    assert audio.dtmf_keys(samples, world.law) == "12211"
    tones, gaps = tones_and_pauses(samples, world.law)
    assert tones == [pytest.approx(80, abs=6)] * 5, tones
    assert gaps == [pytest.approx(80, abs=6)] * 4, gaps
    channel.hang_up()


def test_two_plays_at_once_one_is_refused_and_the_other_is_whole(world):
    channel, far = answered(world)
    mark = mark_of(world, far)
    threads, results = both_at_once(world, lambda: channel.DTMFPlayer.play("1590"),
                                    lambda: channel.DTMFPlayer.play("7777"))
    assert both_returned(world, threads, results)
    refused = [r for r in results if isinstance(r, Error)]
    assert len(refused) == 1 and "already playing" in str(refused[0])
    played = "1590" if results[0] is channel.DTMFPlayer.Cause.NORMAL else "7777"
    assert channel.DTMFPlayer.Cause.NORMAL in results
    world.engine.sleep(0.3)
    assert audio.dtmf_keys(heard(world, far, mark), world.law) == played
    channel.hang_up()


@pytest.mark.parametrize("other", ["file", "tone"])
def test_another_player_while_a_key_is_down_is_refused_and_the_keys_go_on(world, other):
    channel, far = answered(world)
    with_tones(channel)
    mark = mark_of(world, far)
    thread, outcome = in_thread(world, channel.DTMFPlayer.play, "3D")
    world.engine.sleep(0.04)  # the first key is down
    with pytest.raises(Error, match="while the DTMFPlayer plays"):
        if other == "file":
            channel.FilePlayer.play("goodbye.wav")
        else:
            channel.TonePlayer.play("RINGBACK_EU", 1.0)
    assert finish(world, thread, outcome) is channel.DTMFPlayer.Cause.NORMAL
    world.engine.sleep(0.3)
    samples = heard(world, far, mark)
    assert audio.dtmf_keys(samples, world.law) == "3D"
    assert tones_and_pauses(samples, world.law)[0] == [pytest.approx(80, abs=6)] * 2
    channel.hang_up()


@pytest.mark.parametrize("which", ["ours", "theirs"])
def test_connect_while_a_key_is_down_is_refused_and_the_keys_go_on(world, which):
    """connect() (on either channel) while our kernel holds a key down: Error, and the key
    is not cut by a bridge writing into the line; a play on a connected call is an
    Error too, and connect() works once the keys are out."""
    a, far_a = answered_in(world)
    b, _far_b = answered_out(world)
    mark = mark_of(world, far_a)
    thread, outcome = in_thread(world, a.DTMFPlayer.play, "2580")
    world.engine.sleep(0.2)  # the second key is down
    with pytest.raises(Error, match="DTMFPlayer"):
        if which == "ours":
            a.connect(b)
        else:
            b.connect(a)
    assert finish(world, thread, outcome) is a.DTMFPlayer.Cause.NORMAL
    world.engine.sleep(0.3)
    samples = heard(world, far_a, mark)
    assert audio.dtmf_keys(samples, world.law) == "2580"
    assert tones_and_pauses(samples, world.law)[0] == [pytest.approx(80, abs=6)] * 4
    assert a.connect(b) is True
    with pytest.raises(Error, match="connected"):
        a.DTMFPlayer.play("1")
    with pytest.raises(Error, match="connected"):
        b.DTMFPlayer.play("1")
    a.hang_up()
    b.hang_up()


def test_a_transfer_while_a_key_is_down_is_refused_and_the_keys_go_on(world):
    """retrievable_transfer() while our kernel holds a key down: Error, no outbound leg,
    and the keys are not cut by a ringback written into the line."""
    channel, far = answered(world)
    with_tones(channel)
    leg = outbound_channel(world)
    mark = mark_of(world, far)
    thread, outcome = in_thread(world, channel.DTMFPlayer.play, "*#0")
    world.engine.sleep(0.2)  # the second key is down
    with pytest.raises(Error, match="plays"):
        channel.retrievable_transfer(leg, "5559000", call_from="5551000")
    assert leg.state() is State.IDLE
    assert finish(world, thread, outcome) is channel.DTMFPlayer.Cause.NORMAL
    world.engine.sleep(0.3)
    samples = heard(world, far, mark)
    assert audio.dtmf_keys(samples, world.law) == "*#0"
    assert tones_and_pauses(samples, world.law)[0] == [pytest.approx(80, abs=6)] * 3
    channel.hang_up()


def test_no_keys_while_ringing_nor_during_the_ringtone(world):
    """RING_INCOMING, with a ringtone playing in early media: Error, and the ringtone
    plays on; Hangup once the call has gone."""
    channel, far = world.incoming()
    with_tones(channel)
    channel.ring(negotiate_early_media=True, custom_ringtone="RINGBACK_EU",
                 loop_ringtone=True)
    assert channel.state() is State.RING_INCOMING
    with pytest.raises(Error, match="RING_INCOMING"):
        channel.DTMFPlayer.play("1")
    assert channel.DTMFPlayer.state() is channel.DTMFPlayer.State.IDLE
    mark = mark_of(world, far)
    world.engine.sleep(1.2)
    samples = heard(world, far, mark)
    assert audio.component_level_dbm0(samples, 425.0, world.law) > -25
    assert audio.dtmf_keys(samples, world.law) == ""
    world.engine.run(far.hangup)
    assert channel.wait_for_idle(T) is State.IDLE
    with pytest.raises(Hangup):
        channel.DTMFPlayer.play("1")


def test_two_calls_play_keys_at_once_each_far_end_hears_its_own(world):
    """Two channels of one engine hold keys down at the same moments: each far end hears
    exactly its own string, whole."""
    a, far_a = answered(world)
    b, far_b = answered(world)
    marks = mark_of(world, far_a), mark_of(world, far_b)
    threads, results = both_at_once(world, lambda: a.DTMFPlayer.play("1234"),
                                    lambda: b.DTMFPlayer.play("ABCD"))
    assert both_returned(world, threads, results)
    assert results == [a.DTMFPlayer.Cause.NORMAL, b.DTMFPlayer.Cause.NORMAL]
    world.engine.sleep(0.3)
    for far, mark, keys in ((far_a, marks[0], "1234"), (far_b, marks[1], "ABCD")):
        samples = heard(world, far, mark)
        assert audio.dtmf_keys(samples, world.law) == keys
        assert tones_and_pauses(samples, world.law)[0] == [pytest.approx(80, abs=6)] * 4
    a.hang_up()
    b.hang_up()


def test_a_long_stall_in_a_key_lengthens_it_and_nothing_else(live_world):
    """The engine held up 300 ms in the second key (real time, the line's clock going
    on): that key lasts until the engine lets it go, one key still; the others and the
    pauses stay 80 ms."""
    world = live_world
    # the far end reads on the stalled engine too: buffers enough not to lose the stall
    world.backend.far_end.numbufs = 32
    channel, far = answered(world)
    mark = mark_of(world, far)
    world.engine.run(world.engine.call_later, 0.2, time.sleep, 0.3)
    assert channel.DTMFPlayer.play("1590") is channel.DTMFPlayer.Cause.NORMAL
    world.engine.sleep(0.5)
    samples = heard(world, far, mark)
    assert audio.dtmf_keys(samples, world.law) == "1590"
    tones, gaps = tones_and_pauses(samples, world.law)
    assert len(tones) == 4 and tones[1] >= 80 + 240, (tones, gaps)
    assert all(ms >= 75 for ms in tones) and all(ms >= 40 for ms in gaps), (tones, gaps)


# --------------------------------------------------------------------------- garbage

def test_a_pri_call_that_played_keys_is_freed_without_the_collector(world):
    """A call that played keys on the kernel's generator leaves its channel, its players
    and the play's steps to reference counting: none of them in a cycle (the collector's
    passes over thousands of calls' objects hold the engine; test_call_garbage). Before
    5829638 the key steps' closures, calling each other, kept each call's channel in a
    cycle (about 80 objects a call)."""
    def calls(count: int) -> None:
        for _ in range(count):
            channel, _far = answered(world)
            assert channel.DTMFPlayer.play("1,2") is channel.DTMFPlayer.Cause.NORMAL
            channel.hang_up()
            world.engine.sleep(0.5)
            world.channels.clear()
            del channel, _far

    _found, kinds = cycles_after(calls, 5)
    ours = {kind: n for kind, n in kinds.items()
            if kind.startswith("uascall.channel.") or kind in ("builtins.function",
                                                               "builtins.cell")}
    assert ours == {}, f"in reference cycles after 5 calls: {kinds.most_common(12)}"


def test_a_sip_call_that_sent_telephone_events_is_freed_without_the_collector(uas):
    """The same for telephone-events (their steps were closures too, before 5829638)."""
    found, kinds = cycles_after(lambda count: sip_calls(uas, count, keys="12"), 5)
    assert found <= 2 * 5, f"in reference cycles after 5 calls: {kinds.most_common(12)}"


# --------------------------------------------------------------------------- found late

@pytest.mark.parametrize("port", ["fxs", "fxo"])
def test_keys_right_after_a_prompt_on_an_analog_port_do_not_cut_its_end(lines, port):
    """The prompt's last frames, still queued when its play returned, are heard whole
    before the first key on either analog port too (the FXS port's line started the
    prompt 14 ms after its first write: one frame's wait cut 15 ms of it)."""
    channel, end = analog_call(lines, port)
    with_tones(channel)
    lines.engine.sleep(0.3)
    mark = len(end.heard)
    assert channel.TonePlayer.play("RINGBACK_EU", 0.5) is channel.TonePlayer.Cause.NORMAL
    assert channel.DTMFPlayer.play("5D") is channel.DTMFPlayer.Cause.NORMAL
    lines.engine.sleep(0.3)
    samples = list(end.heard_pcm(mark))
    assert audio.dtmf_keys(samples, end.law) == "5D"
    tones, pauses = tones_and_pauses(samples, end.law)
    assert tones[0] >= 495 and sum(tones) >= 500 + 2 * 80, (tones, pauses)
    channel.hang_up()


# --------------------------------------------------------------------------- SIP, a late engine

@pytest.mark.parametrize("offset_ms", [10, 85, 100, 190])
def test_sip_in_band_keys_keep_their_length_when_the_engine_stalls(uas, peer, offset_ms):
    """The far end takes no telephone-event: the keys go in the RTP, whose timestamps
    (not the engine's timing) are what the far end plays them by. The engine held up
    70 ms ``offset_ms`` into "55" (in the first key, in the pause, in the second key)
    must not shorten a key or the pause between the two 5s below 80 ms of RTP time: a
    pause of 20-40 ms can merge them into one key at the far end. Frames, each a packet,
    keep 80/80 exactly; the ticker holding the key by the engine's timers (e1aac3d)
    gave 40-60 ms keys and 20-40 ms pauses, the ticks the stall missed skipped."""
    channel = answered_sip(uas, peer, formats="8")
    peer.drain_rtp()
    result: dict = {}

    def play() -> None:
        uas.engine.call_later(offset_ms / 1000, time.sleep, 0.07)
        result["cause"] = channel.DTMFPlayer.play("55")

    thread = threading.Thread(target=play)
    thread.start()
    packets = peer.rtp_packets(0.9)
    thread.join(5)
    assert result["cause"] is channel.DTMFPlayer.Cause.NORMAL
    packets.sort(key=lambda p: p.sequence)
    first = packets[0].timestamp  # each payload where its timestamp puts it
    line = bytearray(b"\xd5" * (packets[-1].timestamp - first + 160))
    for packet in packets:
        at = packet.timestamp - first
        line[at:at + len(packet.payload)] = packet.payload
    samples = audio.decode(bytes(line), "alaw")
    assert audio.dtmf_keys(samples, "alaw") == "55"
    tones, pauses = tones_and_pauses(samples, "alaw")
    assert len(tones) == 2 and min(tones) >= 75 and min(pauses) >= 75, (tones, pauses)
    channel.hang_up()
