"""ToneManager and the tone renderer, measured with tests/audio.py.

The renderer's output is checked three ways: by measurement (frequency, level, cadence,
clicks), against a slow per-sample oracle that follows the documented rules (absolute
phase, exact segment lengths, raised-cosine cross-fades), and by bytes over long loops.
"""

from __future__ import annotations

import itertools
import logging
import math
import sys

import pytest

from tests import audio
from uascall.errors import ArgumentError, Error
from uascall.media import g711
from uascall.media.source import FRAME_SAMPLES
from uascall.media.tones import CROSSFADE_SAMPLES, Tone, ToneManager

LAWS = ("ulaw", "alaw")
R = CROSSFADE_SAMPLES

# What the module documents: per component (Hz, dBm0), and the cadence (on, seconds).
DOCUMENTED = {
    "RINGBACK_EU": ([(425, -13.0)], [(True, 1.0), (False, 4.0)]),
    "RINGBACK_UK": ([(400, -19.0), (450, -19.0)],
                    [(True, 0.4), (False, 0.2), (True, 0.4), (False, 2.0)]),
    "RINGBACK": ([(440, -19.0), (480, -19.0)], [(True, 2.0), (False, 4.0)]),
}


def render(tone: Tone, law: str, *, loop: bool = True, seconds: float | None = None,
           frames: int | None = None) -> bytes:
    src = tone.source(law, loop=loop, seconds=seconds)
    out = []
    while frames is None or len(out) < frames:
        frame = src.next_frame()
        if frame is None:
            break
        assert len(frame) == FRAME_SAMPLES
        out.append(frame)
    return b"".join(out)


def peak(level_dbm0: float, law: str) -> float:
    return audio.reference_rms(law) * math.sqrt(2.0) * 10.0 ** (level_dbm0 / 20.0)


def sound_value(seg, n: int, law: str) -> float:
    """The documented value of a segment's sound at absolute sample ``n``."""
    w = 2.0 * math.pi * n / 8000.0
    first = peak(seg.first.level_dbm0, law) * math.sin(seg.first.frequency * w) \
        if seg.first else 0.0
    if seg.add == "modulation" and seg.second:
        depth = seg.second.gain / seg.first.gain
        return first * (1.0 + depth * math.sin(seg.second.frequency * w))
    second = peak(seg.second.level_dbm0, law) * math.sin(seg.second.frequency * w) \
        if seg.second else 0.0
    return first + second


def sound_key(seg):
    if seg.first is None and seg.second is None:
        return None
    return (seg.add if seg.second else "summation", seg.first, seg.second)


def oracle(tone: Tone, law: str, start: int, stop: int, end: int | None = None) -> list[float]:
    """Samples start..stop-1 computed one by one from the documented rules."""
    segs = [s for s in tone.segments if s.samples]
    offsets = [sum(s.samples for s in segs[:i]) for i in range(len(segs))]
    cycle = sum(s.samples for s in segs)
    out = []
    for n in range(start, stop):
        k, r = divmod(n, cycle)
        i = max(j for j in range(len(segs)) if offsets[j] <= r)
        seg = segs[i]
        v = sound_value(seg, n, law)
        prev = segs[i - 1] if i else (segs[-1] if k else None)
        into = r - offsets[i]
        xf = min(R, seg.samples)
        prev_key = sound_key(prev) if prev is not None else None
        if into < xf and prev_key != sound_key(seg):
            wgt = 0.5 - 0.5 * math.cos(math.pi * (into + 0.5) / xf)
            pv = sound_value(prev, n, law) if prev is not None else 0.0
            v = wgt * v + (1.0 - wgt) * pv
        if end is not None and n >= end - min(R, end):
            fall = min(R, end)
            v *= 0.5 - 0.5 * math.cos(math.pi * (end - 1 - n + 0.5) / fall)
        out.append(v)
    return out


def assert_matches_oracle(data: bytes, tone: Tone, law: str, start: int = 0,
                          end: int | None = None) -> None:
    got = audio.decode(data, law)
    want = oracle(tone, law, start, start + len(got), end)
    for n, (g, w) in enumerate(zip(got, want, strict=True), start):
        # G.711 quantisation: half a step is under 1/32 of the magnitude (+ the low segments)
        assert abs(g - w) <= 0.04 * abs(w) + 12, f"sample {n}: got {g}, expected {w:.1f}"


def components_of(tone: Tone, law: str) -> list[tuple[float, float]]:
    comps = {}
    for seg in tone.segments:
        for c in (seg.first, seg.second):
            if c is not None:
                comps[c.frequency] = max(comps.get(c.frequency, 0.0), peak(c.level_dbm0, law))
    return sorted(comps.items())


@pytest.fixture(scope="module")
def manager():
    return ToneManager()


# --------------------------------------------------------------------------- predefined

@pytest.mark.parametrize("law", LAWS)
@pytest.mark.parametrize("name", list(DOCUMENTED))
def test_predefined_tone_frequency_level_cadence_and_continuity(manager, name, law):
    tone = manager.get(getattr(ToneManager.PredefinedTones, name))
    components, cadence = DOCUMENTED[name]
    assert tone.cycle_seconds == pytest.approx(sum(s for _, s in cadence))
    assert [(not seg.is_pause, seg.duration_ms / 1000) for seg in tone.segments] == cadence
    cycles = 3
    data = render(tone, law, seconds=cycles * tone.cycle_seconds)
    assert len(data) == cycles * tone.cycle_samples  # cycles are whole frames here
    samples = audio.decode(data, law)

    # frequency and level of every component, in the steady part of every burst
    start = 0
    for seg in tone.segments * cycles:
        if not seg.is_pause:
            burst = samples[start + R:start + seg.samples][:4000]
            freqs = [f for f, _ in components]
            edges = [freqs[0] - 40, *((a + b) / 2 for a, b in itertools.pairwise(freqs)),
                     freqs[-1] + 40]
            for (freq, level), (lo, hi) in zip(components, itertools.pairwise(edges),
                                               strict=True):
                measured = audio.dominant_frequency(burst, lo, hi)
                assert abs(measured - freq) / freq < 0.005, (freq, measured)
                assert abs(audio.component_level_dbm0(burst, freq, law) - level) < 0.5
        start += seg.samples

    # cadence, frame by frame: each edge within one 20 ms frame
    runs = audio.on_off_segments(samples, law=law)
    assert [on for on, _ in runs] == [on for on, _ in cadence * cycles]
    for (_, got), (_, want) in zip(runs, cadence * cycles, strict=True):
        assert abs(got - want) <= 0.02 + 1e-9

    # cadence and phase, sample by sample: the oracle over three cycles
    assert_matches_oracle(data, tone, law, end=len(samples))

    # no click anywhere: frame, segment and loop boundaries, and the final fade
    assert audio.clicks(samples, components_of(tone, law), law, ramp_samples=R) == []


@pytest.mark.parametrize("law", LAWS)
def test_pauses_are_exact_digital_silence(manager, law):
    tone = manager.get("RINGBACK_UK")
    data = render(tone, law, seconds=2 * tone.cycle_seconds)
    silence = bytes([g711.codec(law).silence])
    start = 0
    for seg in tone.segments * 2:
        if seg.is_pause:  # after the cross-fade out of the tone, silence to the last sample
            assert data[start + R:start + seg.samples] == silence * (seg.samples - R)
        start += seg.samples


# --------------------------------------------------------------------------- continuity

@pytest.mark.parametrize("law", LAWS)
def test_continuous_dial_tone_has_no_seam_at_segment_or_loop(law):
    tm = ToneManager()
    # 350 + 440 Hz repeats every 800 samples; 700 + 534 ms loops at 9872 samples, which is
    # not a whole number of periods, so a renderer restarting its phase would click there.
    dial = {"frequency": 350, "amplitude": 13}, {"frequency": 440, "amplitude": 13}
    tone = tm.create_tone([(*dial, {"duration": 700, "add": "summation"}),
                           (*dial, {"duration": 534, "add": "summation"})], "DIAL_US")
    cycles = 3
    data = render(tone, law, frames=cycles * tone.cycle_samples // FRAME_SAMPLES + 2)
    samples = audio.decode(data, law)
    comps = [(350, peak(-13, law)), (440, peak(-13, law))]
    assert audio.clicks(samples, comps, law) == []  # no envelope allowance: none is needed
    assert_matches_oracle(data, tone, law)
    # level constant over every frame (no dip at the joins)
    levels = [audio.level_dbm0(samples[i:i + 800], law) for i in range(0, len(samples) - 800, 800)]
    assert max(levels) - min(levels) < 0.2
    assert audio.level_dbm0(samples, law) == pytest.approx(-13 + 10 * math.log10(2), abs=0.3)


@pytest.mark.parametrize("law", LAWS)
def test_change_of_frequency_and_odd_lengths_follow_the_oracle(law):
    tm = ToneManager()
    # segment ends inside frames, a 441 Hz tone (8000-sample period), a change of sound
    # without a pause, a segment shorter than the cross-fade, and a zero-length segment
    tone = tm.create_tone([
        ({"frequency": 441, "amplitude": 10}, {}, {"duration": 333}),
        ({"frequency": 1000, "amplitude": 12}, {"frequency": 1300, "amplitude": 15},
         {"duration": 77, "add": "summation"}),
        ({}, {}, {"duration": 0}),
        ({"frequency": 697, "amplitude": 8}, {}, {"duration": 3}),
        ({}, {}, {"duration": 251}),
    ], "ODD")
    data = render(tone, law, frames=3 * tone.cycle_samples // FRAME_SAMPLES)
    assert_matches_oracle(data, tone, law)


# --------------------------------------------------------------------------- modulation

@pytest.mark.parametrize("law", LAWS)
def test_modulation_makes_sidebands_at_f1_plus_and_minus_f2(law):
    tm = ToneManager()
    mod = tm.create_tone([({"frequency": 1000, "amplitude": 10},
                           {"frequency": 200, "amplitude": 16},
                           {"duration": 1000, "add": "modulation"})], "MOD")
    s = audio.decode(render(mod, law, frames=50), law)[R:R + 4000]
    assert audio.dominant_frequency(s, 900, 1100) == pytest.approx(1000, rel=0.002)
    assert audio.component_level_dbm0(s, 1000, law) == pytest.approx(-10, abs=0.5)
    sideband = -16 - 20 * math.log10(2)  # each side tone is A2/2
    for f in (800, 1200):
        assert audio.dominant_frequency(s, f - 90, f + 90) == pytest.approx(f, rel=0.002)
        assert audio.component_level_dbm0(s, f, law) == pytest.approx(sideband, abs=0.5)
    assert audio.component_level_dbm0(s, 200, law) < -45  # only G.711 distortion there
    # the same two tones summed have the 200 Hz tone and no side tones
    summed = tm.create_tone([({"frequency": 1000, "amplitude": 10},
                              {"frequency": 200, "amplitude": 16},
                              {"duration": 1000, "add": "summation"})], "SUM")
    s = audio.decode(render(summed, law, frames=50), law)[R:R + 4000]
    assert audio.component_level_dbm0(s, 200, law) == pytest.approx(-16, abs=0.5)
    assert audio.component_level_dbm0(s, 800, law) < -45
    assert_matches_oracle(render(mod, law, frames=60), mod, law)


# --------------------------------------------------------------------------- ends

@pytest.mark.parametrize("law", LAWS)
def test_seconds_cuts_at_the_exact_sample_and_pads_with_silence(manager, law):
    tone = manager.get("RINGBACK_EU")
    src = tone.source(law, loop=True, seconds=1.23)
    assert src.duration == pytest.approx(1.23)
    assert src.law == law
    frames = []
    while (frame := src.next_frame()) is not None:
        frames.append(frame)
    assert src.next_frame() is None
    assert len(frames) == 62  # 9840 samples: 61 frames and a half
    data = b"".join(frames)
    silence = bytes([g711.codec(law).silence])
    assert data[9840:] == silence * 80
    assert_matches_oracle(data[:9840], tone, law, end=9840)
    assert audio.clicks(audio.decode(data, law), components_of(tone, law), law, R) == []


@pytest.mark.parametrize("law", LAWS)
def test_one_pass_and_its_limits(manager, law):
    tone = manager.get("RINGBACK")
    src = tone.source(law, loop=False)
    assert src.duration == pytest.approx(6.0)
    assert len(render(tone, law, loop=False)) == tone.cycle_samples
    # without loop, seconds cannot stretch a tone past one pass
    assert len(render(tone, law, loop=False, seconds=60)) == tone.cycle_samples
    assert tone.source(law, loop=True).duration is None
    assert tone.source(law, loop=True, seconds=0).next_frame() is None
    # more seconds than samples can count: without end, not an OverflowError
    longest = tone.source(law, loop=True, seconds=sys.float_info.max)
    assert longest.duration is None and longest.next_frame() is not None
    for bad in (-1, math.nan, math.inf, "1"):
        with pytest.raises(ArgumentError, match="seconds"):
            tone.source(law, loop=True, seconds=bad)
    with pytest.raises(ArgumentError, match="ulaw"):
        tone.source("g729", loop=True)


def test_a_tone_ending_in_sound_fades_out_instead_of_clicking():
    tm = ToneManager()
    beep = tm.create_tone([({"frequency": 1000, "amplitude": 6}, {}, {"duration": 110})],
                          "BEEP")
    data = render(beep, "alaw", loop=False)
    assert len(data) == 960  # 880 samples, padded to 6 frames
    s = audio.decode(data, "alaw")
    assert audio.clicks(s, [(1000, peak(-6, "alaw"))], "alaw", R) == []
    assert_matches_oracle(data[:880], beep, "alaw", end=880)


# --------------------------------------------------------------------------- long loops

@pytest.mark.parametrize("law", LAWS)
def test_ten_minutes_of_loop_keep_an_exact_cadence(manager, law):
    silence = bytes([g711.codec(law).silence])
    tm = ToneManager()
    odd = tm.create_tone([({"frequency": 441, "amplitude": 13}, {}, {"duration": 250}),
                          ({}, {}, {"duration": 1001})], "ODD_CADENCE")
    for tone in (manager.get("RINGBACK"), odd):
        frames = 10 * 60 * 50
        data = render(tone, law, frames=frames)
        assert len(data) == frames * FRAME_SAMPLES
        cycle = tone.cycle_samples
        on = tone.segments[0].samples
        full_cycles = len(data) // cycle
        for k in range(full_cycles):  # every pause exactly where it belongs
            base = k * cycle
            assert data[base + on + R:base + cycle] == silence * (cycle - on - R), k
            assert data[base + R:base + on].count(silence) < on // 4, k
        for k in (1, full_cycles // 2, full_cycles - 1):  # and the tone, at its phase
            base = k * cycle
            assert_matches_oracle(data[base:base + on + R], tone, law, start=base)


# --------------------------------------------------------------------------- audio tools

def test_audio_tools_measure_what_they_claim():
    ref = audio.reference_rms("ulaw")
    assert audio.level_dbm0(audio.decode(audio.DIGITAL_MILLIWATT["alaw"] * 100, "alaw"),
                            "alaw") == pytest.approx(0.0, abs=1e-9)
    a = ref * math.sqrt(2.0) * 10 ** (-13 / 20)
    sine = [round(a * math.sin(2 * math.pi * 1234.5 * n / 8000 + 0.3)) for n in range(4000)]
    assert audio.dominant_frequency(sine) == pytest.approx(1234.5, rel=0.0005)
    assert audio.level_dbm0(sine, "ulaw") == pytest.approx(-13, abs=0.05)
    assert audio.component_level_dbm0(sine, 1234.5, "ulaw") == pytest.approx(-13, abs=0.05)
    assert audio.on_off_segments([0] * 800 + sine[:1600] + [0] * 100) == [
        (False, 0.1), (True, 0.2), (False, 0.0125)]
    assert audio.clicks(sine, [(1234.5, a)]) == []
    # a half-period phase jump at the crest of a 425 Hz tone is a click, found where it is
    tone = [round(a * math.sin(2 * math.pi * 425 * n / 8000)) for n in range(4000)]
    assert audio.clicks(tone, [(425, a)]) == []
    assert audio.clicks(tone[:2000] + [-x for x in tone[2000:]], [(425, a)]) == [1999]
    assert audio.max_step([0, 5, -5]) == 10


# --------------------------------------------------------------------------- manager

def test_manager_names_get_default_and_replacement(caplog):
    log = logging.getLogger("app.tones")
    tm = ToneManager(log)
    assert tm.names() == ["RINGBACK_EU", "RINGBACK_UK", "RINGBACK"]
    assert tm.get("DEFAULT") is tm.get("RINGBACK") is tm.default
    tm.set_default(ToneManager.PredefinedTones.RINGBACK_EU)
    assert tm.default is tm.get(ToneManager.PredefinedTones.RINGBACK_EU)
    info = [({"frequency": 400, "amplitude": 10}, {}, {"duration": 1650, "add": "summation"}),
            ({}, {}, {"duration": 3350, "add": "summation"})]
    first = tm.create_tone(info, "MY_TONE")
    assert first.cycle_seconds == pytest.approx(5.0)
    tm.set_default("MY_TONE")
    assert tm.get("DEFAULT") is first
    with caplog.at_level(logging.INFO, logger="app.tones"):
        second = tm.create_tone(info[:1], "MY_TONE")
    assert tm.get("MY_TONE") is second and tm.default is second  # default follows the name
    assert any(r.name == "app.tones" and "'MY_TONE' replaced" in r.getMessage()
               for r in caplog.records)
    assert tm.names()[-1] == "MY_TONE"
    with pytest.raises(Error, match=r"no tone named 'NOPE'; known tones: RINGBACK_EU, "):
        tm.get("NOPE")
    with pytest.raises(Error, match="MY_TONE"):
        tm.set_default("NOPE")
    with pytest.raises(ArgumentError, match="reserved"):
        tm.create_tone(info, "DEFAULT")
    for bad in ("", None, 3):
        with pytest.raises(ArgumentError, match="tone name"):
            tm.create_tone(info, bad)
    # managers are independent
    assert "MY_TONE" not in ToneManager().names()


def test_tones_are_frozen_and_share_tables_across_sources(manager):
    tone = manager.get("RINGBACK_UK")
    with pytest.raises(AttributeError):
        tone.name = "X"
    a = render(tone, "ulaw", frames=200)
    b = render(tone, "ulaw", frames=200)
    assert a == b
    assert tone.source("ulaw", loop=True)._table is tone.source("ulaw", loop=True)._table


def test_aliasing_frequency_is_accepted_with_a_warning(caplog):
    tm = ToneManager()
    with caplog.at_level(logging.WARNING):
        tm.create_tone([({"frequency": 5000, "amplitude": 10}, {}, {"duration": 100})], "HI")
    assert "sounds at 3000 Hz" in caplog.text


# --------------------------------------------------------------------------- validation

def seg(t1=None, t2=None, timing=None):
    return (t1 if t1 is not None else {"frequency": 425, "amplitude": 13},
            t2 if t2 is not None else {},
            timing if timing is not None else {"duration": 1000, "add": "summation"})


GOOD = seg()


@pytest.mark.parametrize("tone_info, message", [
    ("425", "tone_info must be a list"),
    ({"frequency": 425}, "tone_info must be a list"),
    ([], "tone_info is empty"),
    ([GOOD, (1, 2)], r"segment 1: expected a 3-tuple"),
    ([GOOD, "abc"], r"segment 1: expected a 3-tuple"),
    ([seg(t1=425)], r"segment 0, first tone: expected a dict"),
    ([seg(t1={"freq": 425, "amplitude": 1})], r"segment 0, first tone: unknown key\(s\) 'freq'"),
    ([seg(t1={"amplitude": 1})], r"segment 0, first tone: 'frequency' is missing"),
    ([seg(t1={"frequency": 10000, "amplitude": 1})],
     r"segment 0, first tone: 'frequency' must be a whole number of Hz from 0 to 9999; "
     r"got 10000"),
    ([seg(t1={"frequency": -1, "amplitude": 1})], r"'frequency' must be .* got -1"),
    ([seg(t1={"frequency": 425.5, "amplitude": 1})], r"'frequency' must be .* got 425.5"),
    ([seg(t1={"frequency": True, "amplitude": 1})], r"'frequency' must be .* got True"),
    ([GOOD, seg(t2={"frequency": 425})], r"segment 1, second tone: 'amplitude' is missing"),
    ([seg(t1={"frequency": 425, "amplitude": 100})],
     r"segment 0, first tone: 'amplitude' must be a number from 0 to 99 \(read as -dBm0\); "
     r"got 100"),
    ([seg(t1={"frequency": 425, "amplitude": -1})], r"'amplitude' must be .* got -1"),
    ([seg(t1={"frequency": 425, "amplitude": "13"})], r"'amplitude' must be .* got '13'"),
    ([seg(timing=[1000])], r"segment 0: timing must be a dict"),
    ([seg(timing={"duration": 10, "mode": "x"})], r"segment 0, timing: unknown key\(s\) 'mode'"),
    ([seg(timing={"add": "summation"})], r"segment 0, timing: 'duration' is missing"),
    ([seg(timing={"duration": 10000})],
     r"segment 0, timing: 'duration' must be a whole number of ms from 0 to 9999; got 10000"),
    ([seg(timing={"duration": 1.5})], r"'duration' must be .* got 1.5"),
    ([seg(timing={"duration": 10, "add": "sum"})],
     r"segment 0, timing: 'add' must be 'summation' or 'modulation'; got 'sum'"),
    ([seg(t1={}, t2={"frequency": 25, "amplitude": 10},
          timing={"duration": 10, "add": "modulation"})],
     r"segment 0: 'modulation' needs a first tone"),
    ([seg(t1={"frequency": 400, "amplitude": 10}, t2={"frequency": 25, "amplitude": 9},
          timing={"duration": 10, "add": "modulation"})],
     r"segment 0: 'modulation' depth .* must not exceed 100 %"),
    ([seg(t1={"frequency": 400, "amplitude": 3}, t2={"frequency": 450, "amplitude": 3})],
     r"segment 0: tones at -3 dBm0 and -3 dBm0 peak at \+3\.02 dB .* would clip"),
    ([seg(timing={"duration": 0}), seg(t1={}, timing={"duration": 0})], r"lasts 0 ms"),
])
def test_create_tone_rejects_bad_tone_info(tone_info, message):
    with pytest.raises(ArgumentError, match=message):
        ToneManager().create_tone(tone_info, "BAD")


def test_create_tone_accepts_the_loose_but_sensible():
    tm = ToneManager()
    tone = tm.create_tone([
        [{"frequency": 425.0, "amplitude": 13.5}, {"frequency": 0}, {"duration": 100}],
        ({}, {}, {"duration": 100, "add": "modulation"}),  # a pause: 'add' is irrelevant
        ({"frequency": 400, "amplitude": 3}, {"frequency": 450, "amplitude": 4},
         {"duration": 100, "add": "summation"}),  # -3/-4 dBm0 peaks just below clipping
        ({"frequency": 400, "amplitude": 10}, {"frequency": 25, "amplitude": 10},
         {"duration": 100, "add": "modulation"}),  # 100 % depth
    ], "LOOSE")
    first = tone.segments[0]
    assert (first.first.frequency, first.first.level_dbm0, first.second) == (425, -13.5, None)
    assert tone.segments[1].is_pause
    for law in LAWS:
        data = render(tone, law, loop=False)
        assert_matches_oracle(data[:tone.cycle_samples], tone, law, end=tone.cycle_samples)


@pytest.mark.parametrize("law", LAWS)
def test_cached_cross_fades_are_the_bytes_computed_afresh(law, monkeypatch):
    from uascall.media import tones
    tm = ToneManager()
    # 441 Hz: an 8000-sample period, so its edges fall at a different phase on each loop
    tone = tm.create_tone([
        ({"frequency": 441, "amplitude": 10}, {}, {"duration": 333}),
        ({"frequency": 1000, "amplitude": 12}, {"frequency": 1300, "amplitude": 15},
         {"duration": 77, "add": "summation"}),
        ({}, {}, {"duration": 251}),
    ], "ODD_EDGES")
    frames = 4 * tone.cycle_samples // FRAME_SAMPLES
    with monkeypatch.context() as patched:
        patched.setattr(tones, "_crossfade", tones._crossfade.__wrapped__)  # no cache
        fresh = render(tone, law, frames=frames)
    tones._crossfade.cache_clear()
    warm = tone.source(law, loop=True)
    for _ in range(frames + 7):  # fill the cache from another point of the cadence
        warm.next_frame()
    hits = tones._crossfade.cache_info().hits
    assert render(tone, law, frames=frames) == fresh
    assert tones._crossfade.cache_info().hits > hits
    assert render(tm.get("RINGBACK_EU"), law, frames=600) == render(
        tm.get("RINGBACK_EU"), law, frames=600)
