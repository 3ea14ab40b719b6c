"""UASCallChannel on the simulator: every rule of ring(), the other call-control methods,
what the far end received on the D-channel and what the caller heard on the B-channel.

Everything runs in virtual time: a ring(10) takes milliseconds, and blocking times are
measured on the engine's clock, exactly.
"""

from __future__ import annotations

import pytest

from tests import audio
from uascall import PlayableMedia
from uascall.backend import Cause
from uascall.channel import State, UASCallChannel
from uascall.dahdi.pri import CallAlerting, CallProgress
from uascall.engine import Engine
from uascall.errors import ArgumentError, Error, Hangup
from uascall.media import g711
from uascall.media.player import MediaClock
from uascall.sim.backend import SimBackend

from .helpers import MEDIA, T, World, with_tones

EU = "RINGBACK_EU"  # 425 Hz at -13 dBm0, 1 s on / 4 s off
GREETING = "Thank you for calling."


IDLE = 0xFF  # what a B-channel carries until its user opens it (A-law: a constant +848)


def heard(world: World, far, since: float = 0.0) -> list[int]:
    """What the caller heard, decoded, from ``since`` seconds after the SETUP. The idle
    before our side opened the B-channel counts as the silence it is: on the real driver
    its end falls anywhere in a 20 ms frame, and a frame that steps from +848 to A-law
    silence would otherwise sound like a click."""
    raw = bytes(far.heard)
    opened = len(raw) - len(raw.lstrip(bytes([IDLE])))
    raw = g711.codec(world.law).encode([0]) * opened + raw[opened:]
    return audio.decode(raw[int(since * 8000):], world.law)


def ac(samples: list[int]) -> list[int]:
    """Each 20 ms frame without its DC: an idle A-law line that nobody opened carries 0xFF,
    a constant +848, which is no sound at all."""
    out = []
    for i in range(0, len(samples), 160):
        frame = samples[i:i + 160]
        mean = sum(frame) // len(frame)
        out.extend(s - mean for s in frame)
    return out


def sounding(samples: list[int], law: str) -> list[tuple[bool, float]]:
    return audio.on_off_segments(ac(samples), threshold_dbm0=-45, law=law)


# --------------------------------------------------------------------------- ring() rules
TTS = object()  # placeholder for "a PlayableMedia with text_to_say" in the table

RING_RULES = [
    # id, ring() keyword arguments, blocks (s; TTS: the speech's length), PI #8, audio
    ("plain", {}, 0.0, False, None),
    ("ringtime", {"seconds_ringtime": 2}, 2.0, False, None),
    ("none-without-early-media-is-0", {"seconds_ringtime": None}, 0.0, False, None),
    ("none-blocks-for-the-speech",
     {"seconds_ringtime": None, "negotiate_early_media": True, "custom_ringtone": TTS},
     TTS, True, "speech"),
    ("none-forces-loop-off",
     {"seconds_ringtime": None, "negotiate_early_media": True, "custom_ringtone": EU,
      "loop_ringtone": True}, 5.0, True, "tone"),
    ("zero-does-not-block",
     {"seconds_ringtime": 0, "negotiate_early_media": True, "custom_ringtone": EU,
      "loop_ringtone": True}, 0.0, True, "tone"),
    ("ringtime-with-tone",
     {"seconds_ringtime": 3, "negotiate_early_media": True, "custom_ringtone": EU},
     3.0, True, "tone"),
    ("ringtone-ignored-without-early-media",
     {"seconds_ringtime": 3, "custom_ringtone": EU}, 3.0, False, None),
    ("early-media-without-ringtone",
     {"seconds_ringtime": None, "negotiate_early_media": True}, 0.0, True, None),
    ("codecs-accepted",
     {"seconds_ringtime": 1, "codecs": "g711a;g711u"}, 1.0, False, None),
]


@pytest.mark.parametrize("name, kwargs, blocks, pi8, sound", RING_RULES,
                         ids=[row[0] for row in RING_RULES])
def test_ring_rules(world, name, kwargs, blocks, pi8, sound):
    channel, far = world.incoming()
    with_tones(channel)
    kwargs = dict(kwargs)
    if kwargs.get("custom_ringtone") is TTS:
        kwargs["custom_ringtone"] = PlayableMedia(text_to_say=GREETING, channel=channel)
        blocks = round(kwargs["custom_ringtone"].duration, 6)
    assert channel.state() is State.CALL_INCOMING
    state, elapsed = world.elapsed(channel.ring, **kwargs)
    assert state is State.RING_INCOMING is channel.state()
    assert elapsed == world.approx(blocks)
    world.engine.sleep(6.0)  # listen a little longer: what keeps playing after ring()?
    alertings = world.alertings()
    assert len(alertings) == 1
    assert alertings[0].progress_descriptions == ([8] if pi8 else [])
    inband = [e for _, e in far.events if isinstance(e, CallAlerting)]
    assert inband == [CallAlerting(pi8)]
    on = [seconds for is_on, seconds in sounding(heard(world, far), world.law) if is_on]
    if sound is None:
        assert on == []
    elif sound == "speech":
        assert sum(on) > 0.5 * blocks
    else:
        assert on[0] == pytest.approx(1.0, abs=world.run_tolerance)
        # looped, the ringtone goes on after ring() returned (bursts at 0 s and 5 s);
        # forced off by seconds_ringtime=None, or not asked for, it plays one cycle
        assert len(on) == (2 if name == "zero-does-not-block" else 1)


def test_ring_refuses_wrong_states_and_bad_arguments(world):
    channel, far = world.incoming()
    with pytest.raises(ArgumentError, match=r"g729.*expected a ';'-separated list of g711a, "
                                            r"g711u"):
        channel.ring(codecs="g729;g711a")
    with pytest.raises(ArgumentError, match="empty list"):
        channel.ring(codecs=" ; ")
    with pytest.raises(Error, match=r"has no tone player; expected channel\.create_tone_player"):
        channel.ring(negotiate_early_media=True, custom_ringtone=EU)
    with_tones(channel)
    with pytest.raises(Error, match="RINGBACK_XX"):
        channel.ring(negotiate_early_media=True, custom_ringtone="RINGBACK_XX")
    with pytest.raises(ArgumentError, match="expected a tone name, a PlayableMedia or a channel"):
        channel.ring(custom_ringtone=42)
    for bad in (-1, "5", True, float("nan")):
        with pytest.raises(ArgumentError, match="seconds_ringtime"):
            channel.ring(seconds_ringtime=bad)
    missing = PlayableMedia(file_to_play="no-such-file.wav", channel=channel)
    with pytest.raises(Error, match=r"no-such-file\.wav"):
        channel.ring(negotiate_early_media=True, custom_ringtone=missing)
    assert world.alertings() == []  # nothing was signalled by any refused call
    assert channel.state() is State.CALL_INCOMING
    assert channel.answer() is State.ANSWERED
    with pytest.raises(Error, match=r"ring\(\) in state ANSWERED; expected CALL_INCOMING or "
                                    r"RING_INCOMING"):
        channel.ring()
    assert channel.hang_up() is State.IDLE
    with pytest.raises(Hangup, match="IDLE"):
        channel.ring()
    assert far.cleared


def test_second_ring_replaces_the_ringtone_without_a_second_alerting(world):
    """The documentation's second example: a greeting, then another ringtone."""
    channel, far = world.incoming()
    with_tones(channel)
    greeting = PlayableMedia(text_to_say=GREETING, channel=channel)
    greeting.duration  # noqa: B018 - rendered before the clock starts (slow under emulation)
    state, first = world.elapsed(channel.ring, seconds_ringtime=None,
                                 negotiate_early_media=True, custom_ringtone=greeting)
    assert state is State.RING_INCOMING and first == world.approx(greeting.duration)
    # no negotiate_early_media: what the first ring() negotiated is still in effect
    state, second = world.elapsed(channel.ring, seconds_ringtime=2, custom_ringtone=EU)
    assert state is State.RING_INCOMING and second == world.approx(2.0)
    assert len(world.alertings()) == 1
    samples = heard(world, far)
    # the greeting began some ms after the SETUP in real time; the ringtone follows it
    began = first_sound(samples) / 8000
    tone = dominant_after(samples, began + greeting.duration + 0.05, 0.5)
    assert tone == pytest.approx(425, rel=0.01)


class SlowToStart(PlayableMedia):
    """A ringtone whose source takes ``delay`` s of engine time to make, as a long file's
    can on a loaded or emulated machine."""

    def __init__(self, engine: Engine, delay: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self._engine, self._delay = engine, delay

    def open(self, **kwargs):
        opened = super().open(**kwargs)
        make = opened.source

        def source(law: str, *, loop: bool = False):
            self._engine.sleep(self._delay)
            return make(law, loop=loop)

        opened.source = source
        return opened


def test_ring_for_n_seconds_counts_them_from_the_ringing_indication(world):
    """Sending the indication and starting the ringtone are inside the N seconds, not
    added to them: the caller is alerted for N seconds, and ring() returns then."""
    channel, far = world.incoming()
    slow = SlowToStart(world.engine, 0.5, text_to_say=GREETING, channel=channel)
    slow.duration  # noqa: B018 - rendered before the clock starts (slow under emulation)
    state, elapsed = world.elapsed(channel.ring, seconds_ringtime=2,
                                   negotiate_early_media=True, custom_ringtone=slow)
    assert state is State.RING_INCOMING and elapsed == world.approx(2.0)
    assert world.alertings()[0].progress_descriptions == [8]
    # what takes longer than N seconds to start is still started, and ring() returns
    # as soon as it has been
    late = SlowToStart(world.engine, 1.5, text_to_say=GREETING, channel=channel)
    late.duration  # noqa: B018
    state, elapsed = world.elapsed(channel.ring, seconds_ringtime=1, custom_ringtone=late)
    assert state is State.RING_INCOMING and elapsed == world.approx(1.5)
    world.engine.sleep(0.5)  # the first greeting ended long ago: what sounds is the second
    assert audio.level_dbm0(ac(heard(world, far))[-3200:], world.law) > -45


def dominant_after(samples: list[int], start: float, seconds: float) -> float:
    """The tone's frequency in a window that starts where it began sounding."""
    i = first_sound(samples, int(start * 8000))
    return audio.dominant_frequency(samples[i:i + int(seconds * 8000)], 300, 600)


def first_sound(samples: list[int], start: int = 0) -> int:
    quiet = ac(samples)
    for i in range(start, len(samples), 160):
        if audio.level_dbm0(quiet[i:i + 160] or [0], "alaw") > -45:
            return i
    raise AssertionError("no sound")


def test_early_media_asked_for_later_sends_progress_with_pi8(world):
    channel, far = world.incoming()
    with_tones(channel)
    channel.ring()  # ALERTING without early media
    channel.ring(seconds_ringtime=1, negotiate_early_media=True, custom_ringtone=EU)
    assert world.alertings()[0].progress_descriptions == []
    assert world.wire.find("cpe", "PROGRESS").progress_descriptions == [8]
    assert any(isinstance(e, CallProgress) and e.inband for _, e in far.events)
    assert [on for on, _ in sounding(heard(world, far), world.law)].count(True) == 1


def test_caller_hanging_up_mid_ring_ends_it_at_once(world):
    channel, far = world.incoming()
    with_tones(channel)
    world.engine.run(world.engine.call_later, 1.0, far.hangup, 16)
    state, elapsed = world.elapsed(channel.ring, seconds_ringtime=10,
                                   negotiate_early_media=True, custom_ringtone=EU,
                                   loop_ringtone=True)
    assert state is State.IDLE and elapsed == world.approx(1.0, 0.021)
    assert channel.cause() is Cause.NORMAL and channel.Details.raw_cause == "16"
    with pytest.raises(Hangup):
        channel.answer()


@pytest.mark.parametrize("cause, q850, named", [
    (None, 21, Cause.REJECTED), (Cause.BUSY, 17, Cause.BUSY),
    (Cause.NOCHANNELS, 34, Cause.NOCHANNELS), (Cause.UNOBTAINABLE, 1, Cause.UNOBTAINABLE),
])
def test_reject_sends_the_mapped_cause(world, cause, q850, named):
    channel, far = world.incoming()
    state = channel.reject() if cause is None else channel.reject(cause)
    assert state is State.IDLE and channel.cause() is named
    assert world.engine.wait_until(lambda: far.cleared, T)
    assert far.call.cause == q850
    assert world.wire.find("cpe", "DISCONNECT").cause == q850


def test_reject_with_a_raw_cause_and_an_unusable_one(world):
    channel, far = world.incoming()
    assert channel.reject(raw_cause="302") is State.ERROR  # not a Q.850 cause
    assert channel.reject(raw_cause="abc") is State.ERROR
    assert channel.reject(raw_cause=88) is State.IDLE  # again, with one PRI can send
    assert world.engine.wait_until(lambda: far.cleared, T) and far.call.cause == 88
    with pytest.raises(ArgumentError, match="expected one of BUSY"):
        channel.reject(Cause.NORMAL)
    assert channel.reject() is State.IDLE  # harmless once IDLE


def test_answer_hang_up_and_wait_for_idle(world):
    channel, far = world.incoming()
    with_tones(channel)
    channel.ring(0, negotiate_early_media=True, custom_ringtone=EU, loop_ringtone=True)
    state, elapsed = world.elapsed(channel.answer)
    assert state is State.ANSWERED and elapsed < 0.1 + world.slack
    assert world.wire.names("cpe")[-1] == "CONNECT"
    with pytest.raises(Error, match=r"answer\(\) in state ANSWERED"):
        channel.answer()
    assert channel.wait_for_idle(2) is State.ANSWERED  # nobody hangs up: timeout
    world.engine.run(world.engine.call_later, 1.5, far.hangup, 17)
    state, elapsed = world.elapsed(channel.wait_for_idle)
    assert state is State.IDLE and elapsed == world.approx(1.5, 0.021)
    assert channel.cause() is Cause.BUSY and channel.hang_up() is State.IDLE


def test_hang_up_clears_with_normal_and_returns_idle(world):
    channel, far = world.incoming()
    channel.ring()
    assert channel.hang_up() is State.IDLE and channel.cause() is Cause.NORMAL
    assert world.engine.wait_until(lambda: far.cleared, T) and far.call.cause == 16


# --------------------------------------------------------------------------- what was heard
def test_ringback_heard_has_the_right_frequency_level_cadence_and_law(world):
    channel, far = world.incoming()
    with_tones(channel)
    channel.ring(seconds_ringtime=12, negotiate_early_media=True, custom_ringtone=EU,
                 loop_ringtone=True)
    samples = heard(world, far)
    start = first_sound(samples)
    tone = samples[start:]
    # 425 Hz within 1 %, at -13 dBm0 within 1 dB, decoded with the call's law
    burst = tone[800:7200]  # inside the first 1 s burst, away from its edges
    assert audio.dominant_frequency(burst, 300, 600) == pytest.approx(425, rel=0.01)
    assert audio.level_dbm0(burst, world.law) == pytest.approx(-13, abs=1.0)
    # the bytes are the call's law: read as the other law, the same tone is far off level
    wrong_law = "ulaw" if world.law == "alaw" else "alaw"
    misread = audio.decode(bytes(far.heard[start + 800:start + 7200]), wrong_law)
    assert abs(audio.level_dbm0(misread, wrong_law) + 13) > 6
    # cadence: 1 s on, 4 s off, each edge within a 20 ms frame, for two full cycles
    runs = sounding(tone[: 10 * 8000], world.law)
    for (on, seconds), expected in zip(runs, [(True, 1.0), (False, 4.0)] * 2, strict=False):
        assert on == expected[0] and seconds == pytest.approx(expected[1],
                                                              abs=world.run_tolerance)
    # no click anywhere, frame and loop boundaries included
    peak = audio.reference_rms(world.law) * 10 ** (-13 / 20) * 2 ** 0.5
    assert audio.clicks(tone[: 11 * 8000], [(425, peak)], law=world.law,
                        ramp_samples=32) == []
    assert far.call.law == world.law
    assert world.wire.find("net", "SETUP").layer1_law == world.law


def test_speech_heard_is_present_and_as_long_as_rendered(world):
    channel, far = world.incoming()
    greeting = PlayableMedia(text_to_say=GREETING, channel=channel)
    channel.ring(seconds_ringtime=None, negotiate_early_media=True, custom_ringtone=greeting)
    world.engine.sleep(1.0)
    rendered = greeting.encoded(world.law)
    assert len(rendered) == round(greeting.duration * 8000)
    assert rendered in bytes(far.heard)  # every sample, in order, nothing lost or added
    start = bytes(far.heard).index(rendered)
    assert audio.level_dbm0(heard(world, far)[start:start + len(rendered)], world.law) > -30


def test_file_player_after_answer(world):
    channel, far = world.incoming()
    channel.ring()
    channel.answer()
    # loaded (into the process's file cache) before the clock starts: what play() takes
    # beyond the message's length is then its own doing, not the decoder's
    message = PlayableMedia(file_to_play="goodbye.wav", channel=channel)
    message.duration  # noqa: B018
    cause, elapsed = world.elapsed(channel.FilePlayer.play, "goodbye.wav")
    assert cause is channel.FilePlayer.Cause.NORMAL
    assert elapsed == world.approx(message.duration, 0.06)
    world.engine.sleep(0.1)
    assert message.encoded(world.law) in bytes(far.heard)
    with pytest.raises(Error, match="outside"):
        channel.FilePlayer.play("../early_media.py")


def test_file_player_returns_hangup_when_the_caller_leaves(world):
    channel, far = world.incoming()
    channel.answer()
    PlayableMedia(file_to_play="goodbye.wav", channel=channel).duration  # noqa: B018
    world.engine.run(world.engine.call_later, 1.0, far.hangup, 16)
    cause, elapsed = world.elapsed(channel.FilePlayer.play, "goodbye.wav")
    assert cause is channel.FilePlayer.Cause.HANGUP and elapsed == world.approx(1.0, 0.03)
    with pytest.raises(Hangup):
        channel.FilePlayer.play("goodbye.wav")


def test_tone_player_plays_for_the_seconds_asked(world):
    channel, far = world.incoming()
    with_tones(channel)
    channel.answer()
    cause, elapsed = world.elapsed(channel.TonePlayer.play, "RINGBACK", 7)
    assert cause is channel.TonePlayer.Cause.NORMAL and elapsed == world.approx(7.0, 0.06)
    samples = heard(world, far)
    start = first_sound(samples)
    runs = sounding(samples[start:start + 7 * 8000], world.law)
    assert [on for on, _ in runs][:3] == [True, False, True]
    assert runs[0][1] == pytest.approx(2.0, abs=world.run_tolerance)  # US: 2 s on, 4 off


def test_early_media_keeps_pace_in_real_time():
    """The same path on the real clock (timings are loose: this is no speed test)."""
    with Engine() as engine:
        backend = SimBackend(engine, kind="E1")
        clock = MediaClock(engine)
        channels: list[UASCallChannel] = []
        backend.on_incoming = lambda leg: channels.append(
            UASCallChannel(engine, leg, media_clock=clock, media_dir=MEDIA))
        engine.run(backend.start)
        assert engine.wait_until(lambda: backend.up, T)
        far = engine.run(backend.far_end.dial, "5551000")
        assert engine.wait_until(lambda: bool(channels), T)
        channel = with_tones(channels[0])
        state, elapsed = World(engine, backend, channels, None, "E1").elapsed(
            channel.ring, seconds_ringtime=1.5, negotiate_early_media=True,
            custom_ringtone="RINGBACK", loop_ringtone=True)
        assert state is State.RING_INCOMING and elapsed == pytest.approx(1.5, abs=0.25)
        on = [s for is_on, s in sounding(audio.decode(bytes(far.heard), "alaw"), "alaw")
              if is_on]
        assert on and on[0] == pytest.approx(1.5, abs=0.25)  # still sounding: 2 s bursts
        first = bytes(far.heard).index(bytes(channel.TonePlayer.tone_manager.get(
            "RINGBACK").source("alaw", loop=False).next_frame()))
        assert len(far.heard) - first >= 1.2 * 8000  # frames kept coming on the real clock
