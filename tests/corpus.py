"""Signals for testing and benchmarking DTMF receivers, built without uascall's DTMF code.

Shared by tests/sim/test_dtmf_standard.py and bench/dtmf.py. Everything is 8 kHz, and
levels are in dBm0 with the code base's reference: a sine at ``L`` dBm0 has RMS
``reference_rms(law) * 10**(L/20)`` in s16 units (:func:`amplitude` gives its peak).
Nothing here uses :mod:`uascall.media.dtmf`; G.711 comes from :mod:`uascall.media.g711`
(as lookup tables applied with numpy).

What is here
------------
* **DTMF generator** (:class:`Builder`, :func:`dtmf`): ITU-T Q.23 digits with a per-tone
  level, a per-tone frequency offset (percent and/or Hz), hard-keyed (or ramped) bursts of
  any length at a random start phase, an optional third tone, drop-outs inside a burst,
  optional white noise at a given SNR and optional dial tone at a level relative to the
  digits. :func:`line` passes samples through G.711 (encode, then decode) as a line does.
* **Conditions** (:func:`standard_conditions`): every figure of the acceptance table of
  ``reference/dtmf.md`` (the shared DTMF reference) as signals cut into *trials*, each
  with the digits a receiver must report in it. tests/sim/test_dtmf_standard.py and
  bench/dtmf.py judge detectors on exactly these; :func:`judge` charges each detection
  to a trial.
* **Talk-off material**: :func:`speech_corpus` (espeak-ng, a dozen languages, 25 voice
  settings, cached on disk), :func:`music_corpus` (chords with harmonics, arpeggios,
  sweeps, bells) and :func:`own_media` (the project's ringback and call-progress tones,
  Caller ID spills, the example prompt file and TTS prompts).
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import json
import math
import os
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uascall.media import g711
from uascall.media.tones import reference_rms

RATE = 8000
FRAME = 160  # samples in 20 ms: what a channel delivers at a time
MS = RATE // 1000
LAWS = ("alaw", "ulaw")

# ITU-T Q.23
LOW_HZ = (697, 770, 852, 941)  # rows
HIGH_HZ = (1209, 1336, 1477, 1633)  # columns
KEYPAD = ("123A", "456B", "789C", "*0#D")
DIGITS = "0123456789*#ABCD"
#: digit -> (row Hz, column Hz)
FREQUENCIES = {key: (LOW_HZ[r], HIGH_HZ[c]) for r, row in enumerate(KEYPAD)
               for c, key in enumerate(row)}
_DIGIT_OF = {pair: key for key, pair in FREQUENCIES.items()}
DIAL_TONE_HZ = (350, 440)

REPO = Path(__file__).resolve().parents[1]


def digit_of(low_hz: int, high_hz: int) -> str:
    """The digit of a nominal row and column frequency."""
    return _DIGIT_OF[low_hz, high_hz]


def seed_of(*parts: object) -> int:
    """A stable seed from a description (Python's ``hash`` of a str is salted per run)."""
    return zlib.crc32(repr(parts).encode("utf-8"))


# --------------------------------------------------------------------------- levels, G.711

@functools.cache
def amplitude(level_dbm0: float, law: str = "ulaw") -> float:
    """Peak (s16 units) of a sine at ``level_dbm0``."""
    return reference_rms(law) * math.sqrt(2.0) * 10.0 ** (level_dbm0 / 20.0)


def to_int16(x: np.ndarray) -> np.ndarray:
    """Round to s16, saturating (no wrap-around)."""
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


@functools.cache
def _g711_tables(law: str) -> tuple[np.ndarray, np.ndarray]:
    codec = g711.codec(law)
    every = np.arange(-32768, 32768, dtype=np.int16)
    enc = np.frombuffer(codec.encode(every.tolist()), dtype=np.uint8)  # index: value+32768
    dec = np.array(codec.decode(bytes(range(256))), dtype=np.int16)
    return enc, dec


def encode(samples: np.ndarray, law: str) -> bytes:
    """s16 samples -> G.711 bytes of ``law`` (uascall.media.g711's tables)."""
    enc, _ = _g711_tables(law)
    return enc[np.asarray(samples, dtype=np.int16).astype(np.int32) + 32768].tobytes()


def decode(data: bytes, law: str) -> np.ndarray:
    """G.711 bytes of ``law`` -> s16 samples."""
    _, dec = _g711_tables(law)
    return dec[np.frombuffer(data, dtype=np.uint8)]


def line(samples: np.ndarray, law: str) -> np.ndarray:
    """What arrives after a G.711 line of ``law``: encode, then decode (saturates at the
    law's largest value, about +3.1 dBm0 peak)."""
    enc, dec = _g711_tables(law)
    return dec[enc[np.asarray(samples, dtype=np.int16).astype(np.int32) + 32768]]


def gain(samples: np.ndarray, db: float) -> np.ndarray:
    """``samples`` scaled by ``db``, saturated to s16 (G.711 then clips what it must)."""
    if db == 0:
        return np.asarray(samples, dtype=np.int16)
    return to_int16(np.asarray(samples, dtype=np.float64) * 10.0 ** (db / 20.0))


def rms_dbm0(samples: np.ndarray, law: str = "ulaw") -> float:
    x = np.asarray(samples, dtype=np.float64)
    return 20.0 * math.log10(max(float(np.sqrt(np.mean(x * x))), 1e-9) / reference_rms(law))


def frames(samples: np.ndarray, size: int = FRAME) -> list[np.ndarray]:
    """``samples`` cut into chunks of ``size`` (the last may be shorter)."""
    return [samples[i:i + size] for i in range(0, len(samples), size)]


# --------------------------------------------------------------------------- generator

@dataclass(frozen=True)
class Pair:
    """How a digit sounds: the level (dBm0) and frequency offset of each tone, an optional
    third tone, and the keying. A tone's frequency is ``nominal * (1 + percent/100) + hz``.
    ``ramp_ms`` 0 keys the burst on and off hard (the duration is then exact)."""

    low_dbm0: float = -10.0
    high_dbm0: float = -10.0
    low_percent: float = 0.0
    low_hz: float = 0.0
    high_percent: float = 0.0
    high_hz: float = 0.0
    third_hz: float | None = None
    third_dbm0: float | None = None
    ramp_ms: float = 0.0

    def frequencies(self, digit: str) -> tuple[float, float]:
        low, high = FREQUENCIES[digit]
        return (low * (1.0 + self.low_percent / 100.0) + self.low_hz,
                high * (1.0 + self.high_percent / 100.0) + self.high_hz)

    def power(self, law: str = "ulaw") -> float:
        """Mean-square power of the two DTMF tones (s16 units squared)."""
        return (amplitude(self.low_dbm0, law) ** 2 + amplitude(self.high_dbm0, law) ** 2) / 2


@dataclass(frozen=True)
class Trial:
    """A stretch of a signal and the digits a receiver must report in it (``""``: none).
    ``onset``/``end``: where its first burst starts and its last one ends (samples)."""

    expected: str
    onset: int
    end: int
    note: str


@dataclass
class Signal:
    samples: np.ndarray  # int16
    trials: list[Trial]

    @property
    def seconds(self) -> float:
        return len(self.samples) / RATE


class Builder:
    """Lays out silences and bursts one after another and records trials.

    ``trial(expected, note)`` opens a trial; everything added until the next ``trial`` (or
    :meth:`build`) belongs to it. Start phases are random (uniform), from ``seed``.
    """

    def __init__(self, law: str = "ulaw", seed: int = 0) -> None:
        self.law = law
        self.rng = np.random.default_rng(seed)
        self._parts: list[np.ndarray] = []
        self._n = 0
        self.trials: list[Trial] = []
        self._open: tuple[str, str] | None = None
        self._onset: int | None = None
        self._end = 0

    @property
    def position(self) -> int:
        return self._n

    def _add(self, x: np.ndarray) -> None:
        self._parts.append(x)
        self._n += len(x)

    def _close(self) -> None:
        if self._open is not None:
            onset = self._n if self._onset is None else self._onset
            end = max(self._end, onset)
            self.trials.append(Trial(self._open[0], onset, end, self._open[1]))
        self._open, self._onset = None, None

    def trial(self, expected: str, note: str) -> None:
        self._close()
        self._open = (expected, note)

    def silence(self, ms: float = 0.0, samples: int = 0) -> None:
        self._add(np.zeros(round(ms * MS) + samples))

    def random_lead(self, ms: float) -> int:
        """Silence of ``ms`` plus 0..159 samples (every alignment against a 20 ms frame
        and any analysis block); returns the samples added."""
        extra = int(self.rng.integers(0, FRAME))
        self.silence(ms, extra)
        return round(ms * MS) + extra

    def tones(self, freqs: Sequence[tuple[float, float]], ms: float, *,
              ramp_ms: float = 0.0, mute: tuple[float, float] | None = None) -> None:
        """A burst of sines ``(hz, dBm0)``, each at a random start phase. ``mute=(at_ms,
        length_ms)`` silences part of it (a drop-out; the tones keep their phase)."""
        n = round(ms * MS)
        t = np.arange(n)
        x = np.zeros(n)
        for hz, level in freqs:
            phase = self.rng.uniform(0.0, 2.0 * math.pi)
            x += amplitude(level, self.law) * np.sin(2.0 * math.pi * hz / RATE * t + phase)
        ramp = min(round(ramp_ms * MS), n // 2)
        if ramp:
            w = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
            x[:ramp] *= w
            x[n - ramp:] *= w[::-1]
        if mute is not None:
            a = round(mute[0] * MS)
            x[a:a + round(mute[1] * MS)] = 0.0
        if n:
            if self._onset is None:
                self._onset = self._n
            self._end = self._n + n
        self._add(x)

    def burst(self, digit: str, ms: float, pair: Pair = Pair(), *,
              mute: tuple[float, float] | None = None) -> None:
        """``digit`` for ``ms`` as ``pair`` describes (plus its third tone, if any)."""
        low, high = pair.frequencies(digit)
        freqs = [(low, pair.low_dbm0), (high, pair.high_dbm0)]
        if pair.third_hz is not None:
            freqs.append((pair.third_hz, pair.third_dbm0 if pair.third_dbm0 is not None
                          else max(pair.low_dbm0, pair.high_dbm0)))
        self.tones(freqs, ms, ramp_ms=pair.ramp_ms, mute=mute)

    def build(self, *, tail_ms: float = 200.0, snr_db: float | None = None,
              dial_tone_db: float | None = None, reference: Pair = Pair(),
              through_line: bool = True) -> Signal:
        """The signal: ``tail_ms`` of silence appended, white noise at ``snr_db`` and dial
        tone at ``dial_tone_db`` added over the whole of it (both relative to the power of
        ``reference``'s two tones), rounded to s16 and, if ``through_line``, passed through
        G.711 of the builder's law. See :func:`add_noise` and :func:`add_dial_tone`."""
        self._close()
        self.silence(tail_ms)
        x = np.concatenate(self._parts) if self._parts else np.zeros(0)
        if dial_tone_db is not None:
            x = add_dial_tone(x, reference.power(self.law) * 10.0 ** (dial_tone_db / 10.0),
                              self.rng, self.law)
        if snr_db is not None:
            x = add_noise(x, reference.power(self.law) / 10.0 ** (snr_db / 10.0), self.rng)
        samples = to_int16(x)
        if through_line:
            samples = line(samples, self.law)
        return Signal(samples, list(self.trials))


def add_noise(x: np.ndarray, power: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` plus Gaussian white noise of mean-square ``power`` (s16 units squared).

    SNR in this module is the power of the DTMF pair (both tones, while they sound) over
    the power of this noise, which is white across the whole 0-4 kHz band of the 8 kHz
    signal (no band-limiting: all of it lies in the band a G.711 channel carries). It is
    added everywhere, pauses included."""
    return x + rng.normal(0.0, math.sqrt(power), len(x))


def add_dial_tone(x: np.ndarray, power: float, rng: np.random.Generator,
                  law: str = "ulaw") -> np.ndarray:
    """``x`` plus continuous dial tone (350 + 440 Hz, equal levels) of total mean-square
    ``power``: "10 dB below the DTMF" is the dial tone's two tones 10 dB below the DTMF's
    two (each tone 10 dB below when both pairs are balanced)."""
    t = np.arange(len(x))
    a = math.sqrt(power)  # two sines of amplitude a: power a^2/2 each, a^2 in all
    out = x.copy()
    for hz in DIAL_TONE_HZ:
        out += a * np.sin(2.0 * math.pi * hz / RATE * t + rng.uniform(0.0, 2.0 * math.pi))
    return out


def dtmf(digits: str, *, on_ms: float = 50.0, off_ms: float = 50.0, lead_ms: float = 0.0,
         pair: Pair = Pair(), snr_db: float | None = None, dial_tone_db: float | None = None,
         law: str = "ulaw", seed: int = 0, through_line: bool = False) -> np.ndarray:
    """s16 samples of ``digits``: ``lead_ms`` of silence, then each digit for ``on_ms``
    followed by ``off_ms`` of silence, as ``pair`` describes; with noise / dial tone as in
    :meth:`Builder.build` (levels referred to ``law``). Pass the result through :func:`line`
    (or set ``through_line``) to hear it as a line delivers it."""
    b = Builder(law, seed)
    b.silence(lead_ms)
    for digit in digits:
        b.burst(digit, on_ms, pair)
        b.silence(off_ms)
    return b.build(tail_ms=0.0, snr_db=snr_db, dial_tone_db=dial_tone_db, reference=pair,
                   through_line=through_line).samples


# --------------------------------------------------------------------------- judging

def judge(signal: Signal, detections: Iterable[tuple[str, int]]) -> list[str]:
    """The digits charged to each trial of ``signal``.

    A detection is ``(digit, sample)``, the sample being where the detector places the
    digit (uascall: the event's ``start``; spandsp: the start of the 20 ms chunk in which
    it reported it). Trials own the signal from the middle of the silence before their
    first burst to the middle of the silence after their last, so a start estimate a few
    ms early, or a report some tens of ms late, still lands in its own trial."""
    trials = signal.trials
    bounds = [0]
    for prev, cur in itertools.pairwise(trials):
        bounds.append((prev.end + cur.onset) // 2)
    got = [""] * len(trials)
    for digit, at in detections:
        i = max(bisect.bisect_right(bounds, at) - 1, 0)
        if trials:
            got[i] += digit
    return got


def failures(signal: Signal, got: list[str]) -> list[tuple[Trial, str]]:
    return [(t, g) for t, g in zip(signal.trials, got, strict=True) if g != t.expected]


# --------------------------------------------------------------------------- conditions

@dataclass(frozen=True)
class Condition:
    """One line of the standard under test: a signal in trials, each trial's digits."""

    figure: str  # the reference table's row
    name: str  # unique; the pytest id
    must_detect: bool  # a "must" (detect) or a "must not" (reject) condition
    law: str
    make: Callable[[], Signal] = field(repr=False, compare=False)
    kind: str = ""  # which test asserts it (e.g. "offset-accept", "talkoff-speech")
    requirement: str = ""  # the reference's words for it
    #: not a requirement of the reference: the benchmark shows it, the test does not assert
    info: bool = False
    slow: bool = False
    #: the benchmark's table row (the name without what it aggregates: law, frequency...)
    group: str = ""

    def __post_init__(self) -> None:
        if not self.group:
            object.__setattr__(self, "group", self.name.removesuffix(f" {self.law}"))


def _offset_condition(freq: int, percent: float, hz: float, level: float, law: str,
                      must: bool, info: bool = False) -> Condition:
    is_low = freq in LOW_HZ
    label = f"{percent:+g}%" + (f"{hz:+g}Hz" if hz else "")
    name = f"offset {freq}Hz {label} {level:g}dBm0 {law}"

    def make() -> Signal:
        b = Builder(law, seed_of(name))
        partners = HIGH_HZ if is_low else LOW_HZ
        for rep in range(2):
            for p in partners:
                digit = digit_of(freq, p) if is_low else digit_of(p, freq)
                if is_low:
                    pair = Pair(level, level, low_percent=percent, low_hz=hz)
                else:
                    pair = Pair(level, level, high_percent=percent, high_hz=hz)
                f1, f2 = pair.frequencies(digit)
                b.trial(digit if must else "",
                        f"{digit} rep {rep}: {f1:.1f} + {f2:.1f} Hz at {level:g} dBm0")
                b.random_lead(100)
                b.burst(digit, 100, pair)
        return b.build()

    if info:
        kind, req = "offset-info", "ETSI: accept ±(1.5 % + 2 Hz) (not in the reference)"
    elif must:
        kind, req = "offset-accept", "detect within ±1.5 % of nominal"
    else:
        kind, req = "offset-reject", "must not detect beyond ±3.5 % (3.5 % included here)"
    return Condition("frequency offset", name, must, law, make, kind, req, info=info,
                     group=f"offset {label} {level:g}dBm0")


def _digits_condition(figure: str, kind: str, requirement: str, name: str, law: str,
                      must: bool, pair: Pair, *, reps: int = 1, on_ms: float = 100.0,
                      lead_ms: float = 100.0,
                      snr_db: float | None = None, dial_tone_db: float | None = None,
                      slow: bool = False, note: str = "", group: str = "") -> Condition:
    """Every digit ``reps`` times, each a trial of its own, as ``pair`` describes."""

    def make() -> Signal:
        b = Builder(law, seed_of(name))
        for rep in range(reps):
            for digit in DIGITS:
                lead = b.random_lead(lead_ms)
                b.trial(digit if must else "", f"{digit} rep {rep} (lead {lead} samples)"
                        f"{note}")
                b.burst(digit, on_ms, pair)
        return b.build(snr_db=snr_db, dial_tone_db=dial_tone_db, reference=pair)

    return Condition(figure, name, must, law, make, kind, requirement, slow=slow,
                     group=group)


def _third_tone_condition(rel_db: float, law: str) -> Condition:
    name = f"third tone {rel_db:g}dB below {law}"

    def make() -> Signal:
        b = Builder(law, seed_of(name))
        for digit in DIGITS:
            low, high = FREQUENCIES[digit]
            for third in LOW_HZ + HIGH_HZ:
                if third in (low, high):
                    continue
                pair = Pair(-10.0, -10.0, third_hz=third, third_dbm0=-10.0 - rel_db)
                b.random_lead(100)
                b.trial("", f"{digit} + {third} Hz at {-10 - rel_db:g} dBm0 (pair at -10)")
                b.burst(digit, 100, pair)
        return b.build()

    return Condition("other tones", name, False, law, make, "third-tone",
                     "must not detect when a third row/column tone is within 8 dB of the "
                     "strongest", slow=True)


def _duration_condition(ms: float, level: float, law: str, reps: int, must: bool) -> Condition:
    name = f"duration {ms:g}ms {level:g}dBm0 {law}"

    def make() -> Signal:
        b = Builder(law, seed_of(name))
        lead_ms = 100.0 if ms < 500 else 200.0
        for rep in range(reps):
            for digit in DIGITS:
                lead = b.random_lead(lead_ms)
                b.trial(digit if must else "", f"{digit} rep {rep} (lead {lead} samples)")
                b.burst(digit, ms, Pair(level, level))
        return b.build()

    kind, req = (("duration-accept", "detect a tone of 40 ms or longer") if must else
                 ("duration-reject", "must not detect a tone under 20 ms"))
    return Condition("duration", name, must, law, make, kind, req, slow=reps * 16 * ms > 4000)


def _gap_condition(gap_ms: float, kind: str, law: str, reps: int) -> Condition:
    """60 ms, ``gap_ms`` of silence, 60 ms. ``kind``: "same"/"different" digit after a pause
    (two digits expected), or "dropout"/"dropout-rephased" (one digit expected: the same
    digit, its tones keeping their phase across the gap, or restarting at random ones)."""
    name = f"gap {gap_ms:g}ms {kind} {law}"
    must = kind in ("same", "different")

    def make() -> Signal:
        b = Builder(law, seed_of(name))
        pair = Pair(-10.0, -10.0)
        for rep in range(reps):
            for i, digit in enumerate(DIGITS):
                lead = b.random_lead(100)
                if kind == "dropout":
                    b.trial(digit, f"{digit} rep {rep}: 60 ms, {gap_ms:g} ms drop-out, 60 ms "
                                   f"(phase kept; lead {lead})")
                    b.burst(digit, 120 + gap_ms, pair, mute=(60, gap_ms))
                    continue
                second = digit
                if kind == "different":
                    second = DIGITS[(i + 1 + 5 * rep) % len(DIGITS)]
                expected = digit + second if must else digit
                b.trial(expected, f"{digit} 60 ms, {gap_ms:g} ms silence, {second} 60 ms "
                                  f"(rep {rep}, lead {lead})")
                b.burst(digit, 60, pair)
                b.silence(gap_ms)
                b.burst(second, 60, pair)
        return b.build()

    kind, req = (("gap-separate", "separate digits with a 40 ms gap") if must else
                 ("gap-bridge", "must not split one digit on a gap under 20 ms"))
    return Condition("gap between digits", name, must, law, make, kind, req)


def _rate_condition(order: str, law: str) -> Condition:
    name = f"rate 10/s {order} {law}"

    def make() -> Signal:
        b = Builder(law, seed_of(name))
        sequence = list(DIGITS * 10)
        if order == "shuffled":
            b.rng.shuffle(sequence)
        pair = Pair(-4.0, -4.0)
        b.silence(100)
        for k, digit in enumerate(sequence):
            b.trial(digit, f"digit #{k} {digit}")
            if k:
                b.silence(50)
            b.burst(digit, 50, pair)
        return b.build(tail_ms=150)

    return Condition("rate", name, True, law, make, "rate",
                     "10 digits/s (50 ms on, 50 ms off) all decoded")


def _talkoff_condition(kind: str, law: str, gain_db: float) -> Condition:
    name = f"talk-off {kind} {gain_db:+g}dB {law}"

    def make() -> Signal:
        if kind == "speech":
            segments = speech_corpus()
        elif kind == "music":
            segments = music_corpus()
        else:
            segments = own_media(law)
        return talkoff_signal(segments, law, gain_db)

    return Condition("talk-off", name, False, law, make, "talkoff-" + kind.replace(" ", "-"),
                     "no false digit on speech, music or the project's own sounds "
                     "(target 0)", slow=True)


def talkoff_signal(segments: Sequence[tuple[str, np.ndarray]], law: str,
                   gain_db: float = 0.0) -> Signal:
    """``segments`` one after another (100 ms of silence between), scaled by ``gain_db``
    and passed through a ``law`` line; one trial per segment, no digit expected."""
    parts, trials, n = [], [], 0
    gap = np.zeros(100 * MS, dtype=np.int16)
    for name, samples in segments:
        x = line(gain(samples, gain_db), law)
        trials.append(Trial("", n, n + len(x), name))
        parts += [x, gap]
        n += len(x) + len(gap)
    return Signal(np.concatenate(parts), trials)


TALKOFF_GAINS_DB = (0.0, -10.0, 6.0)


def standard_conditions() -> list[Condition]:
    """Every condition of the reference's acceptance table, for both G.711 laws. Building
    the list is cheap; each condition makes its signal when asked (``make()``)."""
    out: list[Condition] = []
    for law in LAWS:
        # frequency offset: within ±1.5 % detect, ±3.5 % and beyond reject; -17 dBm0 per
        # tone (spandsp's sweep) and a loud -4 dBm0. ±(1.5 % + 2 Hz) (ETSI) is shown by the
        # benchmark only: the reference's figure is ±1.5 %.
        for level in (-17.0, -4.0):
            for freq in LOW_HZ + HIGH_HZ:
                for pct in (-1.5, -0.75, 0.75, 1.5):
                    out.append(_offset_condition(freq, pct, 0.0, level, law, True))
                for pct in (-6.0, -4.5, -3.5, 3.5, 4.5, 6.0):
                    out.append(_offset_condition(freq, pct, 0.0, level, law, False))
                for sign in (-1, 1):
                    out.append(_offset_condition(freq, 1.5 * sign, 2.0 * sign, level, law,
                                                 True, info=True))
        # twist: stronger group at -10 dBm0, the other group 0..8 dB (normal) or 0..4 dB
        # (reverse) below it
        for db in range(0, 9):
            out.append(_digits_condition("twist", "twist-normal", "detect normal twist "
                                         "(low group louder) up to 8 dB",
                                         f"twist normal {db}dB {law}", law, True,
                                         Pair(-10.0, -10.0 - db)))
        for db in range(0, 5):
            out.append(_digits_condition("twist", "twist-reverse", "detect reverse twist "
                                         "(high group louder) up to 4 dB",
                                         f"twist reverse {db}dB {law}", law, True,
                                         Pair(-10.0 - db, -10.0)))
        # duration: 40 ms at every alignment, long tones once; under 20 ms never
        out.append(_duration_condition(40, -10.0, law, 25, True))
        out.append(_duration_condition(1000, -10.0, law, 1, True))
        for ms in (10, 15, 19):
            for level in (-4.0, -10.0):
                out.append(_duration_condition(ms, level, law, 25, False))
        # gaps: a 40 ms pause separates; a gap under 20 ms does not split
        out.append(_gap_condition(40, "same", law, 3))
        out.append(_gap_condition(40, "different", law, 3))
        for gap in (1, 5, 10, 15, 19):
            out.append(_gap_condition(gap, "dropout", law, 3))
            out.append(_gap_condition(gap, "dropout-rephased", law, 3))
        # rate: 16 digits x 10 at 50/50 ms, -4 dBm0 per tone
        out.append(_rate_condition("in order", law))
        out.append(_rate_condition("shuffled", law))
        # level: -3 to -36 dBm0 per tone
        for level in range(-3, -37, -3):
            out.append(_digits_condition("level", "level", "detect from -3 to -36 dBm0 "
                                         "per tone", f"level {level}dBm0 {law}", law, True,
                                         Pair(float(level), float(level)), reps=2))
        # noise: 15 dB SNR, white, several seeds
        for level in (-10.0, -25.0):
            for seed in (1, 2, 3):
                out.append(_digits_condition(
                    "noise", "noise", "detect at 15 dB SNR (white noise)",
                    f"noise 15dB SNR {level:g}dBm0 seed{seed} {law}", law, True,
                    Pair(level, level), snr_db=15.0, note=f", 15 dB SNR seed {seed}",
                    group=f"noise 15dB SNR {level:g}dBm0"))
        # other tones: dial tone 10 dB below detect; a third tone within 8 dB reject
        for level in (-10.0, -25.0):
            out.append(_digits_condition(
                "other tones", "dial-tone", "detect with dial tone 10 dB below the DTMF",
                f"dial tone 10dB below {level:g}dBm0 {law}", law, True,
                Pair(level, level), reps=2, dial_tone_db=-10.0,
                note=", dial tone 10 dB below"))
        for rel in (0, 2, 4, 6, 8):
            out.append(_third_tone_condition(rel, law))
        # talk-off
        for kind in ("speech", "music", "own media"):
            for g in TALKOFF_GAINS_DB:
                out.append(_talkoff_condition(kind, law, g))
    names = [c.name for c in out]
    assert len(names) == len(set(names)), "condition names must be unique"
    return out


# --------------------------------------------------------------------------- speech

class ToolMissing(RuntimeError):
    """A program the corpus needs is not installed."""


#: texts per language key: deterministic, with numbers and digits (talk-off material)
TEXTS: dict[str, tuple[str, ...]] = {
    "en": (
        "Good morning, and thank you for calling. Your call is important to us. Please "
        "have your account number ready; you will find it at the top of your bill, for "
        "example 4 7 1 1, 0 8 1 5. For billing questions, press 1. For technical support, "
        "press 2. To hear these options again, press 9, or stay on the line and an agent "
        "will be with you shortly.",
        "Here is the weather and travel news at 7 o'clock. Tomorrow will be cloudy, with "
        "showers in the afternoon and highs of 17 degrees in the north and 23 in the "
        "south. On the M25 between junctions 12 and 14 there is a queue of about 5 miles "
        "after an accident; allow an extra 25 minutes. The number you have dialled, 0 2 0, "
        "7 9 4 6, 0 0 5 8, is not available. Your balance is 1,234 pounds and 56 pence.",
    ),
    "en-us": (
        "Hi there, and welcome to the automated assistant. Please say or enter your ten "
        "digit phone number, starting with the area code: for example 2 1 2, 5 5 5, "
        "0 1 9 9. If you are calling about an order, press star. If you are calling about "
        "a refund, press pound. Your estimated wait time is 3 minutes and 40 seconds.",
        "In sports tonight, the home team won 98 to 87 after a strong fourth quarter, and "
        "the game in Boston went into overtime. Gas prices fell 6 cents to 3 dollars and "
        "19 cents a gallon. Flight 1 7 4 3 to Chicago now departs from gate B 22 at "
        "6 45 pm. Thanks for listening, and have a great evening.",
    ),
    "de": (
        "Guten Tag und herzlich willkommen bei unserem Kundenservice. Bitte halten Sie "
        "Ihre Kundennummer bereit, zum Beispiel 3 8 2 7, 1 9 0 4. Für Fragen zu Ihrer "
        "Rechnung drücken Sie die 1. Für technische Unterstützung drücken Sie die 2. "
        "Möchten Sie diese Auswahl noch einmal hören, drücken Sie die Raute-Taste.",
        "Und nun das Wetter: Morgen ist es meist bewölkt, am Nachmittag gibt es einzelne "
        "Schauer bei 14 bis 19 Grad. Auf der A 7 zwischen Hamburg und Hannover staut sich "
        "der Verkehr auf 12 Kilometern. Ihr Kontostand beträgt 2345 Euro und 67 Cent. Die "
        "gewählte Rufnummer 0 3 0, 4 5 6 7 8 9 ist nicht vergeben.",
    ),
    "fr": (
        "Bonjour et bienvenue sur notre service client. Votre appel est important pour "
        "nous. Veuillez composer votre numéro de client à huit chiffres, par exemple "
        "5 2 9 1, 3 0 7 4, suivi de la touche dièse. Pour toute question sur votre "
        "facture, tapez 1. Pour l'assistance technique, tapez 2. Pour réécouter ce "
        "message, tapez étoile.",
        "Voici la météo pour demain : un temps nuageux le matin, quelques averses "
        "l'après-midi, et des températures comprises entre 12 et 21 degrés. Le train "
        "numéro 6 2 1 3 à destination de Lyon partira du quai 4 à 18 heures 35. Le solde "
        "de votre compte est de 1876 euros et 40 centimes. Merci de votre appel et à "
        "bientôt.",
    ),
    "es": (
        "Buenos días y gracias por llamar. Todos nuestros operadores están ocupados en "
        "este momento. Por favor, marque su número de cliente, por ejemplo 6 4 8 2, "
        "0 3 1 7, y a continuación pulse la tecla almohadilla. Para consultas sobre "
        "facturación, pulse 1. Para soporte técnico, pulse 2. Para volver al menú "
        "principal, pulse asterisco.",
        "El tiempo para mañana: cielos despejados por la mañana y tormentas por la tarde, "
        "con temperaturas entre 18 y 31 grados. El vuelo 2 5 9 4 con destino a Madrid "
        "saldrá por la puerta 12 a las 7 y cuarto. Su saldo actual es de 3456 euros con "
        "78 céntimos. Gracias por su llamada.",
    ),
    "it": (
        "Buongiorno e benvenuti nel servizio clienti. La sua chiamata è importante per "
        "noi. Per favore, digiti il suo codice cliente, per esempio 7 3 0 5, 9 1 8 2, "
        "seguito dal tasto cancelletto. Per informazioni sulla bolletta, prema 1. Per "
        "l'assistenza tecnica, prema 2. Per riascoltare le opzioni, prema asterisco.",
        "Le previsioni del tempo per domani: sole al mattino, nuvole e qualche pioggia "
        "nel pomeriggio, temperature tra 15 e 26 gradi. Il treno regionale 4 1 7 8 per "
        "Firenze partirà dal binario 9 alle ore 16 e 50. Il saldo del suo conto è di 987 "
        "euro e 65 centesimi. Grazie per aver chiamato e arrivederci.",
    ),
    "nl": (
        "Goedemiddag en welkom bij onze klantenservice. Al onze medewerkers zijn in "
        "gesprek. Toets uw klantnummer in, bijvoorbeeld 8 2 6 4, 5 0 3 9, gevolgd door "
        "een hekje. Voor vragen over uw rekening, toets 1. Voor technische ondersteuning, "
        "toets 2. Om deze keuzes opnieuw te beluisteren, toets sterretje.",
        "Het weerbericht voor morgen: veel bewolking en af en toe regen, met temperaturen "
        "tussen 9 en 16 graden. Op de A 2 tussen Utrecht en Amsterdam staat een file van "
        "11 kilometer. Uw saldo bedraagt 4321 euro en 12 cent. Het nummer 0 2 0, 6 2 4, "
        "1 1 1 1 is op dit moment niet bereikbaar. Dank u wel en tot ziens.",
    ),
    "pl": (
        "Dzień dobry, dziękujemy za telefon. Wszyscy konsultanci są obecnie zajęci. "
        "Prosimy wpisać numer klienta, na przykład 9 4 7 1, 2 6 0 8, a następnie nacisnąć "
        "krzyżyk. W sprawie rachunku prosimy nacisnąć 1. W sprawie pomocy technicznej "
        "prosimy nacisnąć 2. Aby wysłuchać opcji ponownie, prosimy nacisnąć gwiazdkę.",
        "Prognoza pogody na jutro: rano słonecznie, po południu przelotne opady deszczu, "
        "temperatura od 11 do 22 stopni. Pociąg numer 3 8 5 2 do Krakowa odjedzie z "
        "peronu 5 o godzinie 14 20. Stan konta wynosi 5678 złotych i 90 groszy. "
        "Dziękujemy i do usłyszenia.",
    ),
    "pt": (
        "Bom dia e obrigado por ligar. A sua chamada é importante para nós. Por favor, "
        "marque o seu número de cliente, por exemplo 1 5 9 3, 7 2 8 6, seguido da tecla "
        "cardinal. Para questões sobre faturação, prima 1. Para apoio técnico, prima 2. "
        "Para ouvir novamente as opções, prima asterisco.",
        "A previsão do tempo para amanhã: céu pouco nublado, com aguaceiros fracos à "
        "tarde e temperaturas entre 13 e 24 graus. O comboio 5 3 1 0 para o Porto parte "
        "da linha 3 às 9 horas e 25 minutos. O saldo da sua conta é de 765 euros e 43 "
        "cêntimos. Obrigado e até breve.",
    ),
    "ru": (
        "Здравствуйте, спасибо за звонок. Все операторы сейчас заняты. Пожалуйста, "  # noqa: RUF001
        "наберите номер вашего договора, например 2 7 4 9, 8 1 3 0, и нажмите решётку. "
        "Для вопросов по оплате нажмите 1. Для технической поддержки нажмите 2. Чтобы "
        "прослушать меню ещё раз, нажмите звёздочку.",
        "Прогноз погоды на завтра: облачно с прояснениями, днём небольшой дождь, "  # noqa: RUF001
        "температура от 8 до 15 градусов. Поезд номер 6 0 2 7 до Санкт-Петербурга "
        "отправляется с третьего пути в 22 часа 10 минут. Баланс вашего счёта составляет "  # noqa: RUF001
        "4321 рубль 50 копеек. Спасибо за звонок, до свидания.",
    ),
    "sv": (
        "God dag och välkommen till vår kundtjänst. Alla våra handläggare är upptagna "
        "just nu. Slå ditt kundnummer, till exempel 3 6 1 8, 4 9 5 2, följt av fyrkant. "
        "För frågor om din faktura, tryck 1. För teknisk support, tryck 2. För att höra "
        "alternativen igen, tryck stjärna.",
        "Väderprognosen för i morgon: mestadels molnigt med regnskurar på eftermiddagen "
        "och temperaturer mellan 7 och 14 grader. Tåg nummer 4 4 0 6 mot Göteborg avgår "
        "från spår 8 klockan 17 och 05. Ditt saldo är 2468 kronor och 13 öre. Tack för "
        "att du ringde och välkommen åter.",
    ),
}

#: (text key, espeak-ng voice, words per minute, pitch 0-99): 12 languages, variants
#: (female/male/croak/whisper/klatt), speeds 150-230 wpm, pitches 25-85
VOICES: tuple[tuple[str, str, int, int], ...] = (
    ("en", "en-gb", 175, 50), ("en", "en-gb+f2", 150, 70), ("en", "en-gb+croak", 210, 35),
    ("en-us", "en-us", 175, 50), ("en-us", "en-us+m3", 230, 40),
    ("en-us", "en-us+whisper", 160, 50), ("en-us", "en-us+f4", 190, 85),
    ("de", "de", 170, 45), ("de", "de+f3", 155, 65),
    ("fr", "fr-fr", 180, 50), ("fr", "fr-fr+m2", 150, 30),
    ("es", "es", 185, 55), ("es", "es+f5", 170, 75),
    ("it", "it", 175, 50), ("it", "it+klatt", 165, 40),
    ("nl", "nl", 170, 50), ("nl", "nl+f1", 200, 60),
    ("pl", "pl", 160, 45), ("pl", "pl+m7", 180, 25),
    ("pt", "pt", 170, 50), ("pt", "pt-br+f2", 175, 70),
    ("ru", "ru", 165, 50), ("ru", "ru+m4", 185, 35),
    ("sv", "sv", 170, 55), ("sv", "sv+f3", 150, 80),
)
SPEECH_MIN_SECONDS = 600.0
_SPEECH_FORMAT = 1  # bump when what is cached for a key changes
ESPEAK = "espeak-ng"
ESPEAK_HINT = ("the talk-off speech corpus needs espeak-ng (apt-get install espeak-ng, or "
               "bash scripts/setup.sh)")


def cache_directory() -> Path:
    """Where the rendered speech corpus is kept: ``$UASCALL_TALKOFF_CACHE``, else
    ``$XDG_CACHE_HOME/uascall/talkoff``, else ``~/.cache/uascall/talkoff``. (Not under
    ``$UASCALL_CACHE``, which the test suite points at a fresh temporary directory per
    session: the corpus takes tens of seconds to render and is the same every run.)"""
    own = os.environ.get("UASCALL_TALKOFF_CACHE")
    if own:
        return Path(own)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "uascall" / "talkoff"
    return Path.home() / ".cache" / "uascall" / "talkoff"


def _espeak() -> tuple[str, str]:
    exe = shutil.which(ESPEAK)
    if exe is None:
        raise ToolMissing(ESPEAK_HINT)
    out = subprocess.run([exe, "--version"], capture_output=True, check=True, timeout=30)
    return exe, out.stdout.decode("utf-8", "replace").strip().splitlines()[0]


def _resample_to_8k(x: np.ndarray, rate: int) -> np.ndarray:
    """Band-limit and resample by FFT: the spectrum cut at 4 kHz with a raised-cosine
    roll-off from 3.6 kHz (espeak-ng's output starts and ends in silence, so the
    transform's wrap-around is harmless)."""
    if rate == RATE:
        return x.astype(np.float64)
    n_out = round(len(x) * RATE / rate)
    spectrum = np.fft.rfft(x.astype(np.float64))
    keep = n_out // 2 + 1
    spectrum = spectrum[:keep].copy()
    if len(spectrum) < keep:
        spectrum = np.concatenate([spectrum, np.zeros(keep - len(spectrum), complex)])
    hz = np.arange(keep) * rate / len(x)
    roll = (hz > 3600.0) & (hz < 4000.0)
    spectrum[roll] *= 0.5 + 0.5 * np.cos(np.pi * (hz[roll] - 3600.0) / 400.0)
    spectrum[hz >= 4000.0] = 0.0
    return np.fft.irfft(spectrum, n_out) * (n_out / len(x))


def _render(exe: str, text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    from uascall.media.wav import parse_wav

    with tempfile.TemporaryDirectory(prefix="uascall-talkoff-") as tmp:
        out = os.path.join(tmp, "speech.wav")
        argv = [exe, "-b", "1", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", out,
                "--stdin"]
        proc = subprocess.run(argv, input=text.encode("utf-8"), capture_output=True,
                              timeout=120, check=False)
        if proc.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"espeak-ng {' '.join(argv[1:])} failed: "
                               f"{proc.stderr.decode('utf-8', 'replace').strip()}")
        with open(out, "rb") as f:
            audio = parse_wav(f.read(), f"espeak-ng {voice}")
    x = np.array(audio.samples, dtype=np.float64)
    return to_int16(_resample_to_8k(x, audio.rate))


@functools.cache
def speech_corpus() -> tuple[tuple[str, np.ndarray], ...]:
    """The synthetic speech corpus: every text of :data:`TEXTS` spoken by each of its
    :data:`VOICES`, at 8 kHz, at espeak-ng's own level (about -14 dBm0 RMS); at least
    :data:`SPEECH_MIN_SECONDS` in all. ``(name, int16 samples)`` per rendering.

    Rendered once and cached under :func:`cache_directory`, keyed by a SHA-256 of
    (format, espeak-ng version, voices, texts). Raises :class:`ToolMissing` without
    espeak-ng."""
    exe, version = _espeak()
    blob = json.dumps([_SPEECH_FORMAT, version, VOICES, TEXTS], ensure_ascii=False)
    key = hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]
    path = cache_directory() / f"speech-{key}.npz"
    names = [f"{voice} {speed}wpm pitch {pitch}" for _, voice, speed, pitch in VOICES]
    if path.is_file():
        try:
            with np.load(path) as data:
                segments = tuple((n, data[f"s{i}"]) for i, n in enumerate(names))
            return segments
        except (OSError, KeyError, ValueError):
            pass  # a damaged file: render again
    segments = tuple((n, _render(exe, "\n\n".join(TEXTS[key_]), voice, speed, pitch))
                     for n, (key_, voice, speed, pitch) in zip(names, VOICES, strict=True))
    total = sum(len(s) for _, s in segments) / RATE
    if total < SPEECH_MIN_SECONDS:
        raise RuntimeError(f"speech corpus is {total:.0f} s; expected at least "
                           f"{SPEECH_MIN_SECONDS:.0f} s")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".speech-", suffix=".npz", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{f"s{i}": s for i, (_, s) in enumerate(segments)})
        os.replace(tmp, path)
    except OSError:
        pass  # no cache: render again next time
    return segments


# --------------------------------------------------------------------------- music

def _note_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _harmonic_note(f0: float, n: int, rng: np.random.Generator, *, bright: float,
                   decay_s: float, vibrato: float = 0.0) -> np.ndarray:
    """A note of ``n`` samples at ``f0``: harmonics up to 3.9 kHz, the h-th at
    ``h**-bright``, random phases, 10 ms attack, exponential decay, optional vibrato."""
    t = np.arange(n) / RATE
    env = np.minimum(1.0, t / 0.010) * np.exp(-t / decay_s)
    drift = vibrato * np.sin(2 * math.pi * 5.5 * t)  # relative frequency deviation
    phase0 = 2 * math.pi * np.cumsum(f0 * (1.0 + drift)) / RATE
    x = np.zeros(n)
    h = 1
    while h * f0 < 3900.0:
        x += h ** -bright * np.sin(h * phase0 + rng.uniform(0, 2 * math.pi))
        h += 1
    return x * env


def _chords(seed: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shapes = [(0, 4, 7), (0, 3, 7), (0, 4, 7, 11), (0, 3, 7, 10), (0, 5, 7), (0, 4, 7, 14),
              (0, 7, 12, 16), (0, 4, 10)]
    bright = (0.8, 1.0, 1.5, 2.0)[seed % 4]
    n = round(seconds * RATE)
    x = np.zeros(n + RATE)
    at = 0
    while at < n:
        length = int(rng.integers(2, 9)) * RATE // 8  # 0.25 .. 1 s
        root = int(rng.integers(40, 68))
        for step in shapes[int(rng.integers(len(shapes)))]:
            ring = length + RATE // 4
            note = _harmonic_note(_note_hz(root + step), ring, rng, bright=bright,
                                  decay_s=float(rng.uniform(0.3, 1.5)),
                                  vibrato=0.004 if seed % 3 == 0 else 0.0)
            x[at:at + ring] += note[:len(x) - at]
        at += length
    return x[:n]


def _arpeggio(seed: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(100 + seed)
    scale = [0, 2, 4, 5, 7, 9, 11]
    n = round(seconds * RATE)
    x = np.zeros(n + RATE)
    at = 0
    root = 48 + 5 * seed
    while at < n:
        step = int(rng.integers(len(scale)))
        octave = int(rng.integers(0, 3))
        note = _harmonic_note(_note_hz(root + 12 * octave + scale[step]), RATE // 2, rng,
                              bright=1.2, decay_s=0.25)
        x[at:at + RATE // 2] += note
        at += int(rng.integers(60, 200)) * MS
    return x[:n]


def _sweep(f_start: float, f_end: float, seconds: float, *, log: bool = False,
           harmonics: int = 1) -> np.ndarray:
    n = round(seconds * RATE)
    u = np.arange(n) / n
    f = f_start * (f_end / f_start) ** u if log else f_start + (f_end - f_start) * u
    phase = 2 * math.pi * np.cumsum(f) / RATE
    x = np.zeros(n)
    for h in range(1, harmonics + 1):
        x += np.where(h * f < 3900.0, np.sin(h * phase) / h, 0.0)
    return x


def _siren(seconds: float) -> np.ndarray:
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    f = 1000.0 + 400.0 * np.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * np.cumsum(f) / RATE
    return np.sin(phase) + 0.3 * np.sin(2 * phase)


def _bells(seed: int, seconds: float) -> np.ndarray:
    """FM bells (carrier : modulator 1 : 1.4, decaying index): inharmonic partials."""
    rng = np.random.default_rng(200 + seed)
    n = round(seconds * RATE)
    x = np.zeros(n + 2 * RATE)
    at = 0
    while at < n:
        fc = _note_hz(int(rng.integers(60, 84)))
        t = np.arange(2 * RATE) / RATE
        index = 4.0 * np.exp(-t / 0.6)
        note = np.sin(2 * math.pi * fc * t + index * np.sin(2 * math.pi * 1.4 * fc * t))
        x[at:at + 2 * RATE] += note * np.exp(-t / 0.8)
        at += int(rng.integers(2, 6)) * RATE // 8
    return x[:n]


MUSIC_DBM0 = -15.0  # RMS each music item is scaled to before the talk-off gains


@functools.cache
def music_corpus() -> tuple[tuple[str, np.ndarray], ...]:
    """Music-like signals, deterministic (fixed seeds), a few seconds each, each scaled to
    :data:`MUSIC_DBM0` RMS: chord progressions with harmonics (bright to mellow, some with
    vibrato), arpeggios whose notes ring into each other, sine and harmonic sweeps, a
    siren and FM bells. ``(name, int16 samples)`` per item."""
    items: list[tuple[str, np.ndarray]] = []
    for seed in range(8):
        items.append((f"chords seed {seed}", _chords(seed, 5.0)))
    for seed in range(3):
        items.append((f"arpeggio seed {seed}", _arpeggio(seed, 4.0)))
    items += [
        ("sine sweep 200-3600 Hz linear", _sweep(200.0, 3600.0, 5.0)),
        ("sine sweep 100-3800 Hz log", _sweep(100.0, 3800.0, 5.0, log=True)),
        ("harmonic sweep 80-600 Hz, 12 partials", _sweep(80.0, 600.0, 5.0, harmonics=12)),
        ("harmonic sweep 600-150 Hz, 6 partials", _sweep(600.0, 150.0, 4.0, log=True,
                                                         harmonics=6)),
        ("siren 600-1400 Hz", _siren(4.0)),
    ]
    for seed in range(2):
        items.append((f"FM bells seed {seed}", _bells(seed, 4.0)))
    target = reference_rms("ulaw") * 10.0 ** (MUSIC_DBM0 / 20.0)
    out = []
    for name, x in items:
        rms = float(np.sqrt(np.mean(x * x)))
        out.append((name, to_int16(x * (target / rms))))
    return tuple(out)


# --------------------------------------------------------------------------- own media

PROMPTS = (
    ("Thank you for calling. Please hold.", None),
    ("Your call is important to us. All our agents are busy; please stay on the line.",
     "en-us"),
    ("Please enter your PIN, followed by the hash key. Press star to start again.", "en+f3"),
    ("Bitte wählen Sie jetzt die Durchwahl, zum Beispiel 2 3 4.", "de"),
)


def _tone_samples(tone: object, law: str, seconds: float) -> np.ndarray:
    src = tone.source(law, loop=True, seconds=seconds)  # type: ignore[attr-defined]
    data = b""
    while (frame := src.next_frame()) is not None:
        data += frame
    return decode(data, law)


@functools.cache
def own_media(law: str) -> tuple[tuple[str, np.ndarray], ...]:
    """The project's own sounds as a ``law`` channel carries them: the predefined ringback
    tones and the call-progress tones of each zone family (one cycle, at least 4 s),
    Caller ID spills (Bell MDMF and SDMF, ETSI), examples/media/goodbye.wav and a few TTS
    prompts. ``(name, int16 samples)`` per item. The prompts need espeak-ng (raises
    :class:`ToolMissing` without it)."""
    from uascall.media.callerid import CallerId, spill
    from uascall.media.resample import resample
    from uascall.media.tones import CALL_PROGRESS_TONES, ToneManager, call_progress_tone
    from uascall.media.tts import synthesize
    from uascall.media.wav import read_wav

    items: list[tuple[str, np.ndarray]] = []
    seen = set()
    manager = ToneManager(None)
    tones = [(name, manager.get(name)) for name in manager.names()]
    for zone in ("us", "uk", "de", "fr", "au", "nl"):
        for kind in CALL_PROGRESS_TONES:
            tones.append((f"{kind} ({zone})", call_progress_tone(kind, zone)))
    for name, tone in tones:
        if tone.segments in seen:
            continue
        seen.add(tone.segments)
        items.append((f"tone {name}", _tone_samples(tone, law,
                                                    max(tone.cycle_seconds, 4.0))))
    cid = CallerId(number="01234567890", name="A N Other", month=12, day=24, hour=18,
                   minute=30)
    sdmf = CallerId(number="5551234", month=1, day=2, hour=3, minute=4)
    for label, std, fmt, who in (("Bell MDMF", "bell", None, cid),
                                 ("Bell SDMF", "bell", "sdmf", sdmf),
                                 ("ETSI", "etsi", None, cid)):
        x = np.array(spill(who, std, format=fmt, law=law), dtype=np.int16)
        items.append((f"Caller ID {label}", line(x, law)))
    wav = read_wav(REPO / "examples" / "media" / "goodbye.wav")
    samples = wav.samples if wav.rate == RATE else resample(wav.samples, wav.rate, RATE)
    items.append(("examples/media/goodbye.wav", line(np.array(samples, np.int16), law)))
    if shutil.which(ESPEAK) is None:
        raise ToolMissing(ESPEAK_HINT)
    for text, voice in PROMPTS:
        cache = cache_directory() / "tts"
        x = np.array(synthesize(text, voice=voice, cache_dir=cache), dtype=np.int16)
        items.append((f"TTS {voice or 'default'}: {text[:30]}...", line(x, law)))
    return tuple(items)


def corpus_seconds() -> dict[str, float]:
    """Seconds of each talk-off corpus (renders the speech if it is not cached)."""
    return {
        "speech": sum(len(s) for _, s in speech_corpus()) / RATE,
        "music": sum(len(s) for _, s in music_corpus()) / RATE,
        "own media": sum(len(s) for _, s in own_media("ulaw")) / RATE,
    }

