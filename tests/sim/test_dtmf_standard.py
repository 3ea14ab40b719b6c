"""The DTMF receiver against the standard: every figure of the acceptance table in
/work/shared/reference/dtmf.md (ITU-T Q.23/Q.24, ETSI ES 201 235-3, as spandsp and Asterisk
quote them), one parameterised test per row and column.

The signals come from tests/corpus.py, written independently of uascall.media.dtmf, and
reach the receiver as a line delivers them: G.711 encoded and decoded (both laws), fed in
20 ms chunks of 160 samples to the public API (``DtmfDetector.feed`` + ``flush``). Each
condition is a series of trials (one digit, or a pair of bursts, or a stretch of speech)
with the digits a receiver must report in it; a test passes when every trial gets exactly
its digits. Detections are charged to trials by the event's ``start`` (see
:func:`tests.corpus.judge`). What is tested, per row of the table:

* frequency offset: each of the 8 frequencies, its partner nominal, at ±0.75 % and ±1.5 %
  must be detected and at ±3.5, ±4.5 and ±6 % must not, at -17 dBm0 per tone (spandsp's
  sweep level) and at -4 dBm0. The reference's figure is ±1.5 %; ETSI's ±(1.5 % + 2 Hz) is
  not asserted here (bench/dtmf.py shows it).
* twist: low group louder by 0..8 dB, high group louder by 0..4 dB, 1 dB steps, every digit.
  Larger twists are not tested: the reference puts nothing in the "must not" column.
* duration: 40 ms tones of every digit, 25 times each at random alignments and phases, and
  1 s tones, each exactly one digit; 10, 15 and 19 ms tones (at -4 and -10 dBm0, 400 each)
  never. 20-40 ms may go either way: not tested.
* gaps: 60 ms + 40 ms pause + 60 ms is two digits (same digit twice, and two different);
  60 ms + a gap of 1, 5, 10, 15 or 19 ms + 60 ms of the same digit is one digit (the table's
  "must not split one digit on a gap under 20 ms"), with the tones keeping their phase
  across the gap and with new random phases after it.
* rate: all 16 digits x 10 at 50 ms on / 50 ms off, -4 dBm0 per tone, in order and shuffled.
* level: every digit at -3, -6 ... -36 dBm0 per tone.
* noise: every digit at 15 dB SNR (white noise over 0-4 kHz against the pair's power), at
  -10 and -25 dBm0 per tone, three noise seeds each.
* other tones: every digit with dial tone 10 dB below the DTMF (detect); every digit with a
  third row or column tone (each of the other six) 0, 2, 4, 6 or 8 dB below the pair's
  tones (must not detect).
* talk-off: no digit over the speech corpus (espeak-ng, >= 10 min, 12 languages), the
  music-like signals and the project's own tones, spills and prompts, each through both
  laws at gains of 0, -10 and +6 dB (G.711 saturates what it must).

The tests reach the detector through the module (``dtmf.DtmfDetector``) when they run, so
a replacement patched in for a check of the tests themselves is the one measured.
"""

from __future__ import annotations

import array

import numpy as np
import pytest

import uascall.media.dtmf as dtmf
from tests import corpus, in_ci

CONDITIONS = corpus.standard_conditions()
MAX_LISTED = 12  # failing trials quoted in an assertion message


def detect(samples: np.ndarray) -> list:
    """The receiver's events for ``samples``, fed in 160-sample chunks, then flushed."""
    detector = dtmf.DtmfDetector()
    buf = array.array("h", np.asarray(samples, dtype=np.int16).tobytes())
    events = []
    for i in range(0, len(buf), corpus.FRAME):
        events += detector.feed(buf[i:i + corpus.FRAME])
    events += detector.flush()
    return events


def _tool_missing(exc: Exception) -> None:
    if in_ci():
        pytest.fail(f"{exc} (under CI a missing tool fails the test)")
    pytest.skip(str(exc))


def check(condition: corpus.Condition) -> None:
    try:
        signal = condition.make()
    except corpus.ToolMissing as exc:
        _tool_missing(exc)
    events = detect(signal.samples)
    got = corpus.judge(signal, [(e.digit, e.start) for e in events])
    bad = corpus.failures(signal, got)
    if not bad:
        return
    lines = [f"{condition.name}: {condition.requirement}; {len(bad)} of "
             f"{len(signal.trials)} trials wrong:"]
    for trial, digits in bad[:MAX_LISTED]:
        lines.append(f"  {trial.note} [samples {trial.onset}-{trial.end}]: expected "
                     f"{trial.expected!r}, detected {digits!r}")
    if len(bad) > MAX_LISTED:
        lines.append(f"  ... and {len(bad) - MAX_LISTED} more")
    detected = "".join(e.digit for e in events)
    expected = "".join(t.expected for t in signal.trials)
    lines.append(f"  in all: sent {expected[:80]!r}{'...' if len(expected) > 80 else ''} "
                 f"({len(expected)} digits), detected {detected[:80]!r}"
                 f"{'...' if len(detected) > 80 else ''} ({len(detected)} digits)")
    pytest.fail("\n".join(lines), pytrace=False)


def cases(kind: str) -> list:
    return [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.slow else [])
            for c in CONDITIONS if c.kind == kind]


# --------------------------------------------------------------------------- the table

@pytest.mark.parametrize("condition", cases("offset-accept"))
def test_frequency_offset_within_1_5_percent_is_detected(condition):
    check(condition)


@pytest.mark.parametrize("condition", cases("offset-reject"))
def test_frequency_offset_of_3_5_percent_or_more_is_not_detected(condition):
    check(condition)


@pytest.mark.parametrize("condition", cases("twist-normal"))
def test_normal_twist_up_to_8db_is_detected(condition):
    check(condition)


@pytest.mark.parametrize("condition", cases("twist-reverse"))
def test_reverse_twist_up_to_4db_is_detected(condition):
    check(condition)


@pytest.mark.parametrize("condition", cases("duration-accept"))
def test_tones_of_40ms_or_longer_are_detected_once(condition):
    check(condition)


@pytest.mark.parametrize("condition", cases("duration-reject"))
def test_tones_under_20ms_are_not_detected(condition):
    check(condition)


@pytest.mark.parametrize("condition", cases("gap-separate"))
def test_a_40ms_pause_separates_two_digits(condition):
    check(condition)


@pytest.mark.parametrize("condition", cases("gap-bridge"))
def test_a_gap_under_20ms_does_not_split_a_digit(condition):
    check(condition)


@pytest.mark.parametrize("condition", cases("rate"))
def test_ten_digits_a_second_are_all_decoded(condition):
    check(condition)


@pytest.mark.parametrize("condition", cases("level"))
def test_every_level_from_minus_3_to_minus_36_dbm0_is_detected(condition):
    check(condition)


@pytest.mark.parametrize("condition", cases("noise"))
def test_digits_are_detected_at_15db_snr(condition):
    check(condition)


@pytest.mark.parametrize("condition", cases("dial-tone"))
def test_digits_are_detected_with_dial_tone_10db_below(condition):
    check(condition)


@pytest.mark.parametrize("condition", cases("third-tone"))
def test_a_third_tone_within_8db_prevents_detection(condition):
    check(condition)


@pytest.mark.parametrize("condition", cases("talkoff-speech"))
def test_talk_off_speech_gives_no_digit(condition):
    check(condition)


@pytest.mark.parametrize("condition", cases("talkoff-music"))
def test_talk_off_music_gives_no_digit(condition):
    check(condition)


@pytest.mark.parametrize("condition", cases("talkoff-own-media"))
def test_talk_off_own_tones_and_media_give_no_digit(condition):
    check(condition)


def test_every_condition_is_asserted_by_a_test():
    """Each condition but the benchmark's informational ones has a test above."""
    asserted = {"offset-accept", "offset-reject", "twist-normal", "twist-reverse",
                "duration-accept", "duration-reject", "gap-separate", "gap-bridge", "rate",
                "level", "noise", "dial-tone", "third-tone", "talkoff-speech",
                "talkoff-music", "talkoff-own-media"}
    missed = {c.name for c in CONDITIONS if not c.info and c.kind not in asserted}
    assert not missed, f"conditions no test asserts: {sorted(missed)}"


# --------------------------------------------------------------------------- the corpus

def _spectrum_peak(x: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """(frequency, amplitude) of the strongest component between lo and hi Hz (a 1 s
    window, zero-padded 8x, Hann-weighted)."""
    n = len(x)
    w = np.hanning(n)
    spectrum = np.abs(np.fft.rfft(x * w, 8 * n)) * 2 / w.sum()
    hz = np.fft.rfftfreq(8 * n, 1 / corpus.RATE)
    band = (hz >= lo) & (hz <= hi)
    i = np.argmax(np.where(band, spectrum, 0))
    return float(hz[i]), float(spectrum[i])


@pytest.mark.parametrize("law", corpus.LAWS)
def test_corpus_generator_frequencies_and_levels(law):
    """The generator's tones are where and as loud as asked (measured by FFT, not by the
    detector under test): a -1.5 % row at -7 dBm0 and a +3.5 % + 2 Hz column at -13."""
    pair = corpus.Pair(-7.0, -13.0, low_percent=-1.5, high_percent=3.5, high_hz=2.0)
    x = corpus.line(corpus.dtmf("5", on_ms=1000, off_ms=0, pair=pair, law=law), law)
    (f1, a1), (f2, a2) = (_spectrum_peak(x.astype(float), 600, 1000),
                          _spectrum_peak(x.astype(float), 1100, 1800))
    assert abs(f1 - 770 * 0.985) < 1.0 and abs(f2 - (1336 * 1.035 + 2)) < 1.0, (f1, f2)
    levels = [20 * np.log10(a / corpus.amplitude(0.0, law)) for a in (a1, a2)]
    assert abs(levels[0] + 7) < 0.3 and abs(levels[1] + 13) < 0.3, levels


def test_corpus_noise_and_dial_tone_levels():
    """SNR is the pair's power over the white noise's (whole band); dial tone 10 dB below
    is 10 dB less power than the pair."""
    pair = corpus.Pair(-10.0, -10.0)
    clean = corpus.dtmf("1", on_ms=2000, off_ms=0, pair=pair).astype(float)
    noisy = corpus.dtmf("1", on_ms=2000, off_ms=0, pair=pair, snr_db=15.0).astype(float)
    noise = noisy - clean
    snr = 10 * np.log10(np.mean(clean ** 2) / np.mean(noise ** 2))
    assert abs(snr - 15.0) < 0.3, snr
    dial = corpus.dtmf("1", on_ms=2000, off_ms=0, pair=pair, dial_tone_db=-10.0)
    extra = dial.astype(float) - clean
    rel = 10 * np.log10(np.mean(extra ** 2) / np.mean(clean ** 2))
    assert abs(rel + 10.0) < 0.3, rel
    f, _ = _spectrum_peak(extra, 300, 500)
    assert abs(f - 350) < 1 or abs(f - 440) < 1, f


def test_corpus_bursts_last_exactly_as_long_as_asked():
    b = corpus.Builder("ulaw", 1)
    b.trial("5", "one")
    b.silence(samples=37)
    b.burst("5", 19)
    b.silence(40)
    b.trial("", "two")
    b.burst("D", 40, mute=None)
    signal = b.build(through_line=False)
    nonzero = np.flatnonzero(signal.samples)
    assert nonzero[0] >= 37 and nonzero[0] <= 38
    first, second = signal.trials
    assert (first.onset, first.end) == (37, 37 + 152)
    assert (second.onset, second.end) == (37 + 152 + 320, 37 + 152 + 320 + 320)
    assert corpus.judge(signal, [("5", 40), ("D", 37 + 152 + 300)]) == ["5", "D"]
