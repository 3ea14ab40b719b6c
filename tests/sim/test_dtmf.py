"""DTMF generation and detection (uascall.media.dtmf), measured with tests/audio.py.

Test signals are built here from plain sines (:func:`pair`), not with the module's own
generator, except where the generator itself is under test. Every detection claim in the
module docstring has a test: levels, frequency tolerance, durations, pauses and drop-outs,
twist, noise, talk-off (speech and music), G.711 and chunking.
"""

from __future__ import annotations

import array
import math
import random

import pytest

from tests import audio
from uascall.errors import ArgumentError
from uascall.media import g711
from uascall.media.dtmf import (
    DIGITS,
    FREQUENCIES,
    HIGH_FREQUENCIES,
    LOW_FREQUENCIES,
    DtmfBank,
    DtmfDetector,
    DtmfEvent,
    detect_digits,
    dtmf_samples,
    dtmf_source,
)
from uascall.media.source import FRAME_SAMPLES

RATE = 8000
MS = RATE // 1000


def peak(level_dbm0: float, law: str = "ulaw") -> float:
    return audio.reference_rms(law) * math.sqrt(2.0) * 10.0 ** (level_dbm0 / 20.0)


def pair(low_hz: float, high_hz: float, ms: float, low_dbm0: float = -9.0,
         high_dbm0: float = -7.0, rng: random.Random | None = None) -> list[float]:
    """Two sines at random phases (keyed on and off hard: no ramps)."""
    rng = rng or random.Random(1)
    n = round(ms * MS)
    a, b = peak(low_dbm0), peak(high_dbm0)
    pa, pb = rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)
    wa, wb = 2 * math.pi * low_hz / RATE, 2 * math.pi * high_hz / RATE
    return [a * math.sin(wa * i + pa) + b * math.sin(wb * i + pb) for i in range(n)]


def silence(ms: float) -> list[float]:
    return [0.0] * round(ms * MS)


def s16(values: list[float]) -> list[int]:
    return [max(-32768, min(32767, round(v))) for v in values]


def digits_of(samples: list[float] | array.array, **kwargs) -> str:
    return "".join(e.digit for e in detect_digits(s16(list(samples)), **kwargs))


# --------------------------------------------------------------------------- generation

def test_generator_sends_each_digit_at_its_frequencies_and_levels():
    for digit in DIGITS:
        low, high = FREQUENCIES[digit]
        samples = list(dtmf_samples(digit, on_ms=200, off_ms=0))
        steady = samples[2 * RATE // 100:-2 * RATE // 100]  # 20 ms in from each ramp
        assert audio.component_level_dbm0(steady, low, "ulaw") == pytest.approx(-9.0, abs=0.1)
        assert audio.component_level_dbm0(steady, high, "ulaw") == pytest.approx(-7.0, abs=0.1)
        others = [f for f in LOW_FREQUENCIES + HIGH_FREQUENCIES if f not in (low, high)]
        for f in others:
            assert audio.component_level_dbm0(steady, f, "ulaw") < -40.0


def test_generator_timing_levels_and_law():
    samples = dtmf_samples("1#", on_ms=80, off_ms=80, low_dbm0=-20, high_dbm0=-18, law="alaw")
    assert len(samples) == 2 * 160 * MS
    runs = audio.on_off_segments(samples, threshold_dbm0=-45, frame=8 * MS, law="alaw")
    assert runs == [(True, 0.08), (False, 0.08), (True, 0.08), (False, 0.08)]
    steady = list(samples[10 * MS:70 * MS])
    assert audio.component_level_dbm0(steady, 697, "alaw") == pytest.approx(-20.0, abs=0.15)
    assert audio.component_level_dbm0(steady, 1209, "alaw") == pytest.approx(-18.0, abs=0.15)
    # keyed edges are ramped, so no sample-to-sample step beyond a smooth sum of the tones
    for digit, burst in (("1", samples[:160 * MS]), ("#", samples[160 * MS:])):
        low, high = FREQUENCIES[digit]
        tones = [(low, peak(-20, "alaw")), (high, peak(-18, "alaw"))]
        assert audio.clicks(burst, tones, ramp_samples=16) == []


def test_generator_accepts_lower_case_letters():
    assert dtmf_samples("abcd") == dtmf_samples("ABCD")


@pytest.mark.parametrize("kwargs", [
    {"digits": "12x"}, {"digits": 5}, {"digits": "1", "on_ms": -1},
    {"digits": "1", "off_ms": math.nan}, {"digits": "1", "low_dbm0": 1.0},
    {"digits": "1", "low_dbm0": -3.0, "high_dbm0": -3.0},  # the peak would clip
    {"digits": "1", "law": "gsm"},
])
def test_generator_rejects_bad_arguments(kwargs):
    digits = kwargs.pop("digits")
    with pytest.raises(ArgumentError):
        dtmf_samples(digits, **kwargs)


def test_dtmf_source_plays_digits_as_frames():
    source = dtmf_source("159", "alaw")
    frames = []
    while (frame := source.next_frame()) is not None:
        assert len(frame) == FRAME_SAMPLES
        frames.append(frame)
    assert source.duration == pytest.approx(3 * 0.16)
    assert digits_of(g711.ALAW.decode(b"".join(frames))) == "159"


# --------------------------------------------------------------------------- levels

@pytest.mark.parametrize("low, high", [(-36, -36), (-30, -28), (-20, -20), (-9, -7), (-4, -4),
                                       (-2, -8), (-5, -2)])
def test_every_digit_round_trips(low, high):
    samples = dtmf_samples(DIGITS, low_dbm0=low, high_dbm0=high)
    events = detect_digits(samples)
    assert "".join(e.digit for e in events) == DIGITS
    for i, event in enumerate(events):
        # the generator's bursts start every 160 ms and last 80 ms (ramps included)
        assert event.start == pytest.approx(i * 160 * MS, abs=3 * MS)
        assert event.duration_ms == pytest.approx(80.0, abs=4.0)


@pytest.mark.parametrize("level", [-46.0, -50.0])
def test_digits_below_the_minimum_level_are_ignored(level):
    assert digits_of(dtmf_samples(DIGITS, low_dbm0=level, high_dbm0=level)) == ""


# --------------------------------------------------------------------------- frequency

@pytest.mark.parametrize("freq", LOW_FREQUENCIES + HIGH_FREQUENCIES)
@pytest.mark.parametrize("sign", [+1, -1])
def test_frequency_deviation_accepted_within_1_5_percent_rejected_beyond_3_5(freq, sign):
    accept = freq * (1 + sign * 0.015) + sign * 2.0
    reject = freq * (1 + sign * 0.035)
    rng = random.Random(freq * sign)
    low = freq in LOW_FREQUENCIES
    other = 1336 if low else 852
    expected = next(d for d, fs in FREQUENCIES.items() if set(fs) == {freq, other})
    for trial in range(3):
        for f, want in ((accept, expected), (reject, "")):
            tones = (f, other) if low else (other, f)
            signal = silence(13) + pair(*tones, 60, rng=rng) + silence(60)
            assert digits_of(signal) == want, f"{f:.1f} Hz (trial {trial})"


# --------------------------------------------------------------------------- timing

@pytest.mark.parametrize("ms, count", [(40, 1), (35, 1), (30, 1), (20, 0), (15, 0)])
def test_tone_duration_40ms_accepted_20ms_rejected_at_any_alignment(ms, count):
    """The documented boundary: 30 ms and longer always accepted, 20 ms and shorter never."""
    rng = random.Random(ms)
    # every alignment against the 40-sample hop (after a first window of silence: the
    # stream's first window has no window before it to compare phases with)
    for lead in range(102, 143, 3):
        signal = [0.0] * lead + pair(941, 1477, ms, rng=rng) + silence(80)
        events = detect_digits(s16(signal))
        assert [e.digit for e in events] == ["#"] * count, f"lead {lead}"
        if count:
            assert events[0].duration_ms == pytest.approx(ms, abs=4.0)
            assert events[0].start == pytest.approx(lead, abs=3 * MS)


def test_generated_40ms_digits_with_40ms_pauses_are_all_detected():
    assert digits_of(dtmf_samples(DIGITS, on_ms=40, off_ms=40)) == DIGITS


@pytest.mark.parametrize("gap_ms", [5, 10, 15, 20])
def test_short_dropout_inside_a_digit_is_bridged(gap_ms):
    rng = random.Random(gap_ms)
    for lead in range(0, 41, 5):
        signal = ([0.0] * lead + pair(770, 1336, 60, rng=rng) + silence(gap_ms)
                  + pair(770, 1336, 60, rng=rng) + silence(80))
        events = detect_digits(s16(signal))
        assert [e.digit for e in events] == ["5"], f"lead {lead}"
        assert events[0].duration_ms == pytest.approx(120 + gap_ms, abs=4.0)


@pytest.mark.parametrize("pause_ms", [40, 35])
@pytest.mark.parametrize("first, second", [("5", "5"), ("5", "9")])
def test_digits_40ms_apart_are_two_digits(first, second, pause_ms):
    rng = random.Random(7)
    for lead in range(0, 41, 5):
        signal = ([0.0] * lead + pair(*FREQUENCIES[first], 50, rng=rng) + silence(pause_ms)
                  + pair(*FREQUENCIES[second], 50, rng=rng) + silence(80))
        events = detect_digits(s16(signal))
        assert [e.digit for e in events] == [first, second], f"lead {lead}"
        assert events[1].start - events[0].end == pytest.approx(pause_ms * MS, abs=5 * MS)


# --------------------------------------------------------------------------- twist

@pytest.mark.parametrize("low, high, want", [
    (-10.0, -18.0, "9"),  # low group 8 dB above high ("normal" twist, 8 dB allowed)
    (-10.0, -20.0, ""),  # 10 dB (beyond the 1 dB measurement margin)
    (-14.0, -10.0, "9"),  # high group 4 dB above low ("reverse" twist, 4 dB allowed)
    (-14.0, -8.0, ""),  # 6 dB
])
def test_twist_limits(low, high, want):
    rng = random.Random(3)
    for _ in range(3):
        signal = silence(10) + pair(852, 1477, 60, low, high, rng) + silence(60)
        assert digits_of(signal) == want


def test_twist_limits_can_be_changed():
    signal = silence(10) + pair(852, 1477, 60, -10, -20) + silence(60)
    assert digits_of(signal) == ""
    assert digits_of(signal, normal_twist_db=10.0) == "9"


# --------------------------------------------------------------------------- noise, G.711

@pytest.mark.parametrize("high", [-7.0, -28.0])
def test_white_noise_at_10db_snr(high):
    """Every digit, 60 ms on / 60 ms off, in white noise 10 dB below the pair's power."""
    rng = random.Random(int(high))
    low = high - 2.0
    signal: list[float] = silence(50)
    for digit in DIGITS:
        signal += pair(*FREQUENCIES[digit], 60, low, high, rng) + silence(60)
    power = (peak(low) ** 2 + peak(high) ** 2) / 2.0
    sigma = math.sqrt(power / 10.0)
    noisy = [v + rng.gauss(0.0, sigma) for v in signal]
    assert digits_of(noisy) == DIGITS


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
@pytest.mark.parametrize("level", [-36.0, -20.0, -4.0])
def test_digits_survive_g711(law, level):
    codec = g711.codec(law)
    samples = dtmf_samples(DIGITS, low_dbm0=level, high_dbm0=level, law=law)
    assert digits_of(codec.decode(codec.encode(samples))) == DIGITS


# --------------------------------------------------------------------------- talk-off

SPEECH = (
    "Thank you for calling. Please listen carefully, as our menu options have changed. "
    "For billing enquiries, press one. To report a fault on your line, press two. For all "
    "other questions, stay on the line and an operator will be with you shortly. Your call "
    "is important to us and may be recorded for training purposes. She sells sea shells on "
    "the sea shore, and the shells she sells are surely sea shells. Peter Piper picked a "
    "peck of pickled peppers. Nine, eight, seven, six, five, four, three, two, one, zero, "
    "star and hash. Good morning, good afternoon and good evening to everyone listening."
)


@pytest.mark.slow
def test_talk_off_speech_produces_no_digits():
    """About 70 s of synthetic speech (two voices, each at three gains): no digit at all.
    The bound is zero: on this material not even one window accepts a digit, and a digit
    needs four in a row."""
    from uascall.media.tts import synthesize

    total = 0
    for voice in (None, "en+f3"):
        speech = synthesize(SPEECH, voice=voice)
        total += len(speech)
        for gain in (0.3, 1.0, 2.0):
            scaled = s16([v * gain for v in speech])
            assert detect_digits(scaled) == [], f"voice {voice}, gain {gain}"
    assert total >= 60 * RATE


def test_talk_off_music_produces_no_digits():
    """30 s of chords (three or four notes of the equal-tempered scale, each with decaying
    harmonics): no digit. Two bare sines a major seventh apart from F5 are the digit 2 by
    definition (698 and 1319 Hz); real instruments add partials, which this has."""
    rng = random.Random(11)
    chords = [(0, 4, 7), (0, 3, 7), (0, 4, 7, 11), (0, 3, 7, 10), (0, 5, 7), (0, 4, 7, 14)]
    music: list[float] = []
    for _ in range(120):  # 250 ms each
        root = rng.randint(35, 70)
        chord = [0.0] * (250 * MS)
        for step in rng.choice(chords):
            f0 = 440.0 * 2.0 ** ((root + step - 49) / 12.0)
            for harmonic, gain in ((1, 1.0), (2, 0.5), (3, 0.3), (4, 0.15)):
                f = f0 * harmonic
                if f < 3800:
                    a, ph, w = peak(-18) * gain, rng.uniform(0, 6.3), 2 * math.pi * f / RATE
                    for i in range(len(chord)):
                        chord[i] += a * math.sin(w * i + ph) * math.exp(-i / 1500.0)
        music += chord
    assert len(music) == 30 * RATE
    assert detect_digits(s16(music)) == []


# --------------------------------------------------------------------------- streaming

def mixed_signal() -> list[int]:
    rng = random.Random(5)
    signal = silence(33) + pair(697, 1209, 45, rng=rng) + silence(41)
    signal += pair(941, 1633, 70, rng=rng) + silence(8) + pair(941, 1633, 50, rng=rng)
    signal += [rng.gauss(0, 300) for _ in range(700)] + list(dtmf_samples("*0#"))
    return s16(signal)


@pytest.mark.parametrize("chunk", [1, 7, 160, 1000])
def test_results_do_not_depend_on_chunk_size(chunk):
    signal = mixed_signal()
    starts: list[tuple[str, int]] = []
    detector = DtmfDetector(on_start=lambda d, s: starts.append((d, s)))
    events: list[DtmfEvent] = []
    for i in range(0, len(signal), chunk):
        events += detector.feed(signal[i:i + chunk])
    events += detector.flush()
    reference = DtmfDetector()
    expected = reference.feed(signal) + reference.flush()
    assert [e.digit for e in expected] == list("1D*0#")
    assert events == expected
    assert starts == [(e.digit, e.start) for e in expected]
    assert detector.samples_fed == len(signal)


def test_start_callback_comes_before_the_event():
    seen: list[tuple[str, int]] = []
    detector = DtmfDetector(on_start=lambda d, s: seen.append((d, s)))
    tone = s16(silence(10) + pair(852, 1633, 200))
    assert detector.feed(tone[:60 * MS]) == []  # 50 ms into the digit: recognised, not ended
    assert seen == [("C", pytest.approx(10 * MS, abs=3 * MS))]
    assert detector.active == "C"
    assert detector.feed(tone[60 * MS:]) == []  # still sounding at the end of the input
    events = detector.flush()  # end of stream: the digit is reported
    assert [(e.digit, e.duration_ms) for e in events] == [("C", pytest.approx(200, abs=4))]
    assert detector.active is None


def test_reset_forgets_a_digit_in_progress():
    detector = DtmfDetector()
    detector.feed(s16(pair(852, 1633, 60)))
    assert detector.active == "C"
    detector.reset()
    assert detector.active is None
    assert detector.feed(s16(silence(100))) == [] and detector.flush() == []


@pytest.mark.parametrize("kwargs", [{"on_start": 3}, {"normal_twist_db": -1},
                                    {"reverse_twist_db": math.inf}, {"min_level_dbm0": 5}])
def test_detector_rejects_bad_arguments(kwargs):
    with pytest.raises(ArgumentError):
        DtmfDetector(**kwargs)


def test_a_bank_survives_what_its_callbacks_do():
    """A callback that closes or feeds another stream waiting in the same pass, or that
    raises, leaves every other stream hearing (a process() that raised half-way left the
    rest of the pass never queued again: deaf for good)."""
    law = g711.ALAW
    key = law.encode(dtmf_samples("5", on_ms=100, off_ms=100, law="alaw"))
    bank = DtmfBank()
    heard: dict[str, list[str]] = {"a": [], "c": [], "d": []}

    def a_start(digit, _sample):
        heard["a"].append(digit)
        b.close()
        d.feed_law(bytes([law.silence]) * 160, "alaw")
        raise RuntimeError("an application's listener went wrong")

    a = bank.add(on_start=a_start)
    b = bank.add()
    c = bank.add(on_start=lambda digit, _sample: heard["c"].append(digit))
    d = bank.add(on_start=lambda digit, _sample: heard["d"].append(digit))
    a.feed_law(key, "alaw")
    b.feed_law(bytes([law.silence]) * 320, "alaw")  # other amounts: later blocks
    c.feed_law(bytes([law.silence]) * 480, "alaw")
    d.feed_law(bytes([law.silence]) * 640, "alaw")
    bank.process()
    assert heard["a"] == ["5"] and b.closed
    for stream in (c, d):
        for _ in range(3):
            for at in range(0, len(key), 160):
                stream.feed_law(key[at:at + 160], "alaw")
                bank.process()
    assert heard["c"] == ["5"] * 3 and heard["d"] == ["5"] * 3
    assert not c._law_bytes and not d._law_bytes
