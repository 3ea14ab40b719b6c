"""DTMF (ITU-T Q.23): digit generation, and a detector that watches many channels at once.

Both work on 8 kHz signed 16-bit linear samples. Levels are in dBm0 with the code base's
one reference (:func:`uascall.media.tones.reference_rms`: the RMS of the decoded G.711
digital milliwatt), so a tone "at -9 dBm0" has RMS ``reference_rms(law) · 10^(-9/20)``.
The figures a receiver must meet are collected in ``reference/dtmf.md`` (Q.24, ETSI ES 201
235-3, and the AT&T figures quoted by spandsp and Asterisk); ``tests/sim/test_dtmf_standard.py``
checks each of them.

Generation
----------
:func:`dtmf_samples` renders a digit string; :func:`dtmf_source` wraps it as a
:class:`~uascall.media.source.FrameSource` for a player. Defaults, per frequency:

* **-9 dBm0 low group, -7 dBm0 high group.** ETSI ES 201 235-2 gives the transmitter's
  nominal levels at the line as -11 dBV (low) and -9 dBV (high), about -8.8 and -6.8 dBm
  in 600 ohms; taken at a 0 dBr point and rounded, that is -9/-7 dBm0, with the usual
  2 dB pre-emphasis of the high group. (These figures are as commonly quoted for
  ES 201 235-2, not re-checked against the primary text.) The pair peaks at 0.80 of a
  0 dBm0 sine, far from clipping either law.
* **80 ms on, 80 ms off**: twice the 40 ms minimum tone and pause a Q.24 / ES 201 235-3
  receiver must accept, so about six digits a second.
* Each tone burst starts and ends with a :data:`RAMP_SAMPLES` raised-cosine ramp (inside
  the on-time), which keeps the keyed edges from splattering energy across the band.

Detection
---------
:class:`DtmfBank` analyses many streams (every channel an engine listens to) in one
vectorised pass with numpy: each stream queues its 20 ms frames, and :meth:`DtmfBank.process`
correlates every queued window of every stream against the eight frequencies in one matrix
product. :class:`DtmfDetector` is a bank of one, fed samples in chunks of any size, for
single signals (an FXS port collecting a dialled number, tests). Results never depend on
how the audio was cut into chunks or batched with other streams. The analysis:

* **Rectangular windows of 102 samples (12.75 ms) every 40 samples (5 ms)**, four per
  20 ms frame. At 102 samples the DFT's nulls fall about one row (or column) spacing
  apart, so a tone leaks at most -15 dB into its group's other frequencies within the
  accepted band: what the relative-peak check below needs, and why the classic receivers
  (spandsp, Asterisk) use this length. The 5 ms step gives the time resolution to tell a
  40 ms tone from a 20 ms one, and a 40 ms pause from a 20 ms drop-out.
* **The share of the window's power held by the two tones**, at least
  :data:`MIN_TONE_SHARE` (80 %). Speech and music spread their power over many harmonics
  and formants and fail this even when two partials sit on a row and a column; a
  harmonic of the tones, or a third tone, is power outside the pair, so this is also the
  classic second-harmonic check. A window the tone fills only partly (the rest silence)
  has a share equal to the filled fraction, so only windows at least 80 % full count:
  that is what places a digit's edges, and what makes the duration rules below exact.
* **Frequency by phase, not by bin width.** A 102-sample window cannot resolve 1.5 % from
  3.5 % at 697 Hz (12 Hz against 24 Hz; a bin is 78 Hz). The phase advance of each
  group's strongest frequency between two consecutive windows (40 samples apart)
  measures the tone's offset from nominal directly, unambiguously up to ±100 Hz. Q.24
  and ES 201 235-3 ask a receiver to accept ±(1.5 % + 2 Hz) and to reject ±3.5 %; the
  boundary here is halfway: ±(2.5 % + 1 Hz) (:data:`FREQUENCY_TOLERANCE`). The measured
  offset also undoes the window's scalloping loss, so an offset tone's level and share
  are those of the tone, not of the bin.
* **Relative peaks:** the second-strongest frequency of each group must be more than
  :data:`RELATIVE_PEAK_DB` (8 dB) below the strongest, so a third tone within 8 dB of a
  pair is not a digit. Measured on the rectangular window, whose nulls fall near the
  group's other frequencies.
* **Level:** each frequency at least :data:`MIN_LEVEL_DBM0` (-42 dBm0, spandsp's
  threshold), so -36 dBm0 per frequency is detected with margin, and -46 dBm0 is not.
  No upper limit short of G.711 clipping.
* **Twist:** the low group may be up to 8 dB above the high group ("normal twist", the
  high-frequency loss of a long line) and the high group up to 4 dB above the low group
  ("reverse twist"): the AT&T receiver figures quoted with spandsp's and Asterisk's
  detectors. Levels are measured on a Hann-weighted window, whose sidelobes keep one
  group's tone out of the other group's frequencies (the rectangular window's let a
  strong tone move a weak one's measured level by a dB or two). A figure is met with
  :data:`MEASUREMENT_MARGIN_DB` (1 dB) to spare for what G.711 adds: 8 dB of twist is
  accepted, 9 dB not; a third tone 8 dB below is refused, one 10 dB below not.
* **Timing:** a digit starts after :data:`HITS_TO_START` (4) consecutive windows accept
  it and ends after :data:`MISSES_TO_END` (8) consecutive windows do not. A clean tone
  fills at least 80 % of one window per 5 ms from 2.5 ms after its start, so (measured
  at every alignment against the hop) tones of 30 ms and more are always accepted and
  tones of 20 ms and less never; drop-outs of up to 25 ms are bridged, and pauses of
  35 ms and more separate two digits. A digit is recognised about 30 ms after it starts
  (``on_start``), in time for barge-in.
* Reported start and end samples are within a few ms of the tone's edges: the window
  positions, refined by the filled fraction of the first and last windows.

What it does not do: it does not reject a digit for being too long, nor suppress a digit
that follows another with no pause at all (it is reported once the first one ends).
"""

from __future__ import annotations

import array
import functools
import logging
import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from uascall import faultlog
from uascall.errors import ArgumentError
from uascall.media import g711
from uascall.media.source import FRAME_SAMPLES, BufferSource
from uascall.media.tones import MAX_GAIN_SUM, reference_rms

__all__ = [
    "DIGITS",
    "FREQUENCIES",
    "HIGH_FREQUENCIES",
    "LOW_FREQUENCIES",
    "DtmfBank",
    "DtmfDetector",
    "DtmfEvent",
    "DtmfStream",
    "detect_digits",
    "dtmf_samples",
    "dtmf_source",
]

_log = logging.getLogger(__name__)

RATE = g711.SAMPLE_RATE
DIGITS = "0123456789*#ABCD"
LOW_FREQUENCIES = (697, 770, 852, 941)  # rows, Hz (Q.23)
HIGH_FREQUENCIES = (1209, 1336, 1477, 1633)  # columns, Hz
_KEYPAD = ("123A", "456B", "789C", "*0#D")
#: digit -> (low, high) frequency in Hz
FREQUENCIES = {key: (LOW_FREQUENCIES[r], HIGH_FREQUENCIES[c])
               for r, row in enumerate(_KEYPAD) for c, key in enumerate(row)}

DEFAULT_ON_MS = 80.0
DEFAULT_OFF_MS = 80.0
DEFAULT_LOW_DBM0 = -9.0
DEFAULT_HIGH_DBM0 = -7.0
#: raised-cosine rise and fall of each burst, inside its on-time: 2 ms
RAMP_SAMPLES = 16

# --- detector figures (see the module docstring for their sources)
WINDOW = 102  # samples per analysis window (12.75 ms)
HOP = 40  # samples between window starts (5 ms): four windows per 20 ms frame
MIN_LEVEL_DBM0 = -42.0
NORMAL_TWIST_DB = 8.0  # low group above high group
REVERSE_TWIST_DB = 4.0  # high group above low group
RELATIVE_PEAK_DB = 8.0  # a group's second frequency below its strongest
#: what G.711 and the windows may add to a measured level: the twist accepted and the
#: third tone refused are each this much wider than the figures above
MEASUREMENT_MARGIN_DB = 1.0
MIN_TONE_SHARE = 0.80
#: accepted offset from nominal, as (fraction of the frequency, Hz): halfway between the
#: must-accept ±(1.5 % + 2 Hz) and the must-reject ±3.5 %
FREQUENCY_TOLERANCE = (0.025, 1.0)
HITS_TO_START = 4
MISSES_TO_END = 8
#: the largest block a DtmfDetector analyses in one pass (bounds its working memory)
_CHUNK = 4 * RATE
#: windows per matrix product (see DtmfBank._classify)
_PRODUCT_ROWS = 256

_REF_RMS = reference_rms("ulaw")  # A-law's is 0.07 dB higher: immaterial to a receiver


def _peak(level_dbm0: float) -> float:
    """Peak amplitude (s16 units) of a sine at ``level_dbm0``."""
    return _REF_RMS * math.sqrt(2.0) * 10.0 ** (level_dbm0 / 20.0)


# --------------------------------------------------------------------------- generation

def _number(name: str, value: object, lo: float, hi: float) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or not lo <= value <= hi):
        raise ArgumentError(f"{name} must be a number from {lo:g} to {hi:g}; got {value!r}")
    return float(value)


def _digits(digits: object) -> str:
    if not isinstance(digits, str):
        raise ArgumentError(f"digits must be a str of {DIGITS!r}; got {digits!r}")
    upper = digits.upper()
    for i, ch in enumerate(upper):
        if ch not in FREQUENCIES:
            raise ArgumentError(f"digits[{i}] is {digits[i]!r}; expected one of {DIGITS!r}")
    return upper


def dtmf_samples(digits: str, *, on_ms: float = DEFAULT_ON_MS, off_ms: float = DEFAULT_OFF_MS,
                 low_dbm0: float = DEFAULT_LOW_DBM0, high_dbm0: float = DEFAULT_HIGH_DBM0,
                 law: str = "ulaw") -> array.array:
    """8 kHz s16 samples of ``digits`` (from :data:`DIGITS`; a-d are taken as A-D).

    Each digit sounds for ``on_ms`` and is followed by ``off_ms`` of silence (so the result
    ends in silence); durations are rounded to whole samples. ``low_dbm0``/``high_dbm0``
    are the levels of the row and column tone, referred to the digital milliwatt of
    ``law``. Each tone starts at phase 0 at the start of its burst.

    Raises ArgumentError for an unknown digit, a duration outside 0..10000 ms, a level
    above 0 dBm0 or below -99, levels whose sum would clip G.711, or an unknown law.
    """
    keys = _digits(digits)
    on = round(_number("on_ms", on_ms, 0.0, 10000.0) * RATE / 1000)
    off = round(_number("off_ms", off_ms, 0.0, 10000.0) * RATE / 1000)
    low = _number("low_dbm0", low_dbm0, -99.0, 0.0)
    high = _number("high_dbm0", high_dbm0, -99.0, 0.0)
    try:
        name = g711.codec(law).name
    except ValueError as exc:
        raise ArgumentError(str(exc)) from None
    gain_sum = 10.0 ** (low / 20.0) + 10.0 ** (high / 20.0)
    if gain_sum > MAX_GAIN_SUM:
        raise ArgumentError(f"DTMF at {low:g} and {high:g} dBm0 would clip G.711 (peak "
                            f"{20 * math.log10(gain_sum):+.2f} dB over a 0 dBm0 sine, "
                            f"limit {20 * math.log10(MAX_GAIN_SUM):+.2f} dB); lower a level")
    scale = reference_rms(name) * math.sqrt(2.0)
    a_low, a_high = scale * 10.0 ** (low / 20.0), scale * 10.0 ** (high / 20.0)
    ramp = min(RAMP_SAMPLES, on // 2)
    envelope = [1.0] * on
    for i in range(ramp):
        w = 0.5 - 0.5 * math.cos(math.pi * (i + 0.5) / ramp)
        envelope[i] = envelope[on - 1 - i] = w
    out = array.array("h")
    silence = array.array("h", bytes(2 * off))
    for key in keys:
        f1, f2 = FREQUENCIES[key]
        w1, w2 = 2.0 * math.pi * f1 / RATE, 2.0 * math.pi * f2 / RATE
        out.extend(round(e * (a_low * math.sin(w1 * n) + a_high * math.sin(w2 * n)))
                   for n, e in enumerate(envelope))
        out.extend(silence)
    return out


#: a key as one that relays keys plays it in band (:func:`key_frames`): tone, then a pause
#: that keeps the next key apart (Q.24: a pause of 40 ms is one), ms
KEY_ON_MS = 100
KEY_OFF_MS = 60
_KEY_FRAMES: dict[tuple[str, str], tuple[bytes, ...]] = {}


def key_frames(digit: str, law: str) -> tuple[bytes, ...]:
    """``digit`` as :data:`KEY_ON_MS` of tone and :data:`KEY_OFF_MS` of silence, in
    20 ms frames of ``law``, the last padded with silence (made once)."""
    frames = _KEY_FRAMES.get((digit, law))
    if frames is None:
        codec = g711.codec(law)
        data = codec.encode(dtmf_samples(digit, on_ms=KEY_ON_MS, off_ms=KEY_OFF_MS,
                                         law=law))
        data += bytes([codec.silence]) * (-len(data) % FRAME_SAMPLES)
        frames = _KEY_FRAMES[(digit, law)] = tuple(
            data[at:at + FRAME_SAMPLES] for at in range(0, len(data), FRAME_SAMPLES))
    return frames


class HeldKey:
    """``digit``'s tone for as long as the key is held, 20 ms frames of ``law`` at the
    levels of :func:`key_frames`, each following the last without a break in phase."""

    def __init__(self, digit: str, law: str) -> None:
        self.digit = digit
        self._loop = _held_key_loop(digit, g711.codec(law).name)
        self._at = 0

    def next_frame(self) -> bytes:
        at = self._at
        self._at = (at + FRAME_SAMPLES) % len(self._loop)
        return self._loop[at:at + FRAME_SAMPLES]


@functools.cache
def _held_key_loop(digit: str, law: str) -> bytes:
    # a second: a whole number of cycles of every DTMF frequency and of 20 ms frames, so
    # that it repeats without a seam
    return g711.codec(law).encode(dtmf_samples(digit, on_ms=1000, off_ms=0, law=law))


def dtmf_source(digits: str, law: str, **kwargs: float) -> BufferSource:
    """:func:`dtmf_samples` of ``digits`` as a one-pass frame source in ``law``.

    ``kwargs`` are those of :func:`dtmf_samples`. Raises ArgumentError as it does.
    """
    samples = dtmf_samples(digits, law=law, **kwargs)
    codec = g711.codec(law)
    return BufferSource(codec.encode(samples), codec.name)


# --------------------------------------------------------------------------- detection

@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """One detected digit: ``start`` and ``end`` are sample indices counted from the first
    sample fed to the detector (``end`` is one past the last sample of the tone)."""

    digit: str
    start: int
    end: int

    @property
    def duration(self) -> int:
        """Samples the digit lasted."""
        return self.end - self.start

    @property
    def start_seconds(self) -> float:
        return self.start / RATE

    @property
    def duration_ms(self) -> float:
        return self.duration * 1000.0 / RATE


_FREQS = np.array(LOW_FREQUENCIES + HIGH_FREQUENCIES, dtype=np.float64)
_OFFSETS = np.arange(WINDOW)
_HANN = 0.5 - 0.5 * np.cos(2.0 * np.pi * (_OFFSETS + 0.5) / WINDOW)
_PHASES = 2.0 * np.pi * np.outer(_OFFSETS, _FREQS) / RATE
#: x @ _BASIS gives, per frequency, the real part and minus the imaginary part of the
#: window's DFT at that frequency: rectangular (columns 0-7, 8-15), then Hann-weighted
#: (16-23, 24-31)
_BASIS = np.concatenate([np.cos(_PHASES), np.sin(_PHASES), _HANN[:, None] * np.cos(_PHASES),
                         _HANN[:, None] * np.sin(_PHASES)], axis=1).astype(np.float32)
# |DFT| of a sine of amplitude A right on the frequency is A * (sum of the window) / 2;
# off it by d Hz, less by these gains (the windows' scalloping), tabulated every 0.25 Hz
_GAIN_HZ = np.arange(-120.0, 120.25, 0.25)
_GAIN_RECT = np.abs(np.exp(2j * np.pi * np.outer(_GAIN_HZ, _OFFSETS) / RATE).sum(axis=1)
                    ) / WINDOW
# the Hann-weighted DFT of exp(j 2 pi (f + d) n / RATE) at f, for the same offsets d
_KERNEL_HANN = (_HANN * np.exp(2j * np.pi * np.outer(_GAIN_HZ, _OFFSETS) / RATE)).sum(axis=1)
_GAIN_HANN = np.abs(_KERNEL_HANN) / _HANN.sum()
_OMEGA = 2.0 * np.pi * _FREQS / RATE  # the eight frequencies, in radians a sample


def _dirichlet(delta: np.ndarray) -> np.ndarray:
    """The rectangular window's DFT of exp(j delta n): sum over n < WINDOW of
    exp(-j delta n), for ``delta`` in radians a sample."""
    half = delta / 2.0
    den = np.sin(half)
    near = np.abs(den) < 1e-9
    ratio = np.where(near, float(WINDOW), np.sin(WINDOW * half) / np.where(near, 1.0, den))
    return np.exp(-1j * half * (WINDOW - 1)) * ratio
# undoes the nominal frequency's own phase advance over one hop
_DEROTATE = np.exp(-2j * np.pi * _FREQS * HOP / RATE).astype(np.complex64)
_HZ_PER_RADIAN = RATE / (2.0 * np.pi * HOP)
#: the squared gains of a tone right on its frequency (0 Hz off)
_GAIN_HANN_0 = np.square(np.interp(0.0, _GAIN_HZ, _GAIN_HANN))
_GAIN_RECT_0 = np.square(np.interp(0.0, _GAIN_HZ, _GAIN_RECT))
_TOLERANCE_HZ = FREQUENCY_TOLERANCE[0] * _FREQS + FREQUENCY_TOLERANCE[1]
#: (row, column) -> index of the digit in DIGITS
_DIGIT_INDEX = np.array([[DIGITS.index(key) for key in row] for row in _KEYPAD], dtype=np.int8)
_DECODE = {name: np.array(g711.codec(name)._dec, dtype=np.float32) for name in ("ulaw", "alaw")}
_EMPTY = np.zeros(0, dtype=np.float32)


def _as_float32(samples: Iterable[int] | np.ndarray) -> np.ndarray:
    if isinstance(samples, np.ndarray):
        return samples.astype(np.float32, copy=False).ravel()
    if isinstance(samples, array.array):
        return np.asarray(samples).astype(np.float32)
    return np.fromiter(samples, dtype=np.float32)


class DtmfStream:
    """One stream of a :class:`DtmfBank`: a channel's received audio.

    :meth:`feed_law` (G.711 bytes) and :meth:`feed` (s16 samples) queue audio; the bank's
    :meth:`DtmfBank.process` analyses it and calls ``on_start(digit, start_sample)`` when a
    digit is recognised and ``on_end(event)`` when it has ended. Sample indices count from
    the first sample fed.
    """

    __slots__ = (
        "_after_last",
        "_bank",
        "_digit",
        "_digit_start",
        "_fed",
        "_last_hit",
        "_law",
        "_law_bytes",
        "_misses",
        "_pending",
        "_run",
        "_run_digit",
        "_run_first",
        "_slot",
        "_tail_len",
        "_tail_start",
        "closed",
        "on_end",
        "on_start",
    )

    def __init__(self, bank: DtmfBank, slot: int,
                 on_start: Callable[[str, int], None] | None,
                 on_end: Callable[[DtmfEvent], None] | None) -> None:
        self._bank = bank
        self._slot = slot
        self.on_start = on_start
        self.on_end = on_end
        self.closed = False
        self._pending: list[np.ndarray] = []  # decoded samples queued, in order
        self._law_bytes = bytearray()  # G.711 bytes queued after them, decoded in process()
        self._law = ""
        # the samples from the next window's start on wait in the bank's row for the slot
        self._tail_len = 0
        self._tail_start = 0  # absolute index of the first of them
        self._fed = 0
        self._reset_state()

    def _reset_state(self) -> None:
        self._digit = -1  # index in DIGITS of the digit sounding now, -1: none
        self._digit_start = 0
        self._last_hit = (0, 0.0)  # (start, tone share) of the digit's last window
        self._misses = 0
        self._run_digit = -1  # the digit the latest windows agree on, and how many do
        self._run = 0
        # the run's first window: (start, tone share, (pair, share) of the window before)
        self._run_first: tuple[int, float, tuple[int, float]] = (0, 0.0, (-1, 0.0))
        self._after_last = (-1, 0.0)  # (pair, share) of the window after the last hit
        self._bank._busy[self._slot] = False

    def __repr__(self) -> str:
        return f"<DtmfStream {self._fed} samples, digit {self.active}>"

    @property
    def samples_fed(self) -> int:
        """Samples fed so far (the index the next sample will have)."""
        return self._fed

    @property
    def active(self) -> str | None:
        """The digit sounding now (recognised, not yet ended), or None."""
        return DIGITS[self._digit] if self._digit >= 0 else None

    def feed(self, samples: Iterable[int] | np.ndarray) -> None:
        """Queue s16 samples (any iterable of ints, an ``array('h')``, a numpy array)."""
        if self.closed:
            raise ArgumentError("feed() on a closed DTMF stream")
        block = _as_float32(samples)
        if block.size:
            self._decode_law_bytes()
            self._enqueue()
            self._pending.append(block)
            self._fed += block.size

    def feed_law(self, data: bytes, law: str) -> None:
        """Queue G.711 bytes of ``law`` ("alaw" or "ulaw")."""
        if self.closed:
            raise ArgumentError("feed_law() on a closed DTMF stream")
        if not data:
            return
        if law != self._law:
            if law not in _DECODE:
                law = g711.codec(law).name
            self._decode_law_bytes()
            self._law = law
        if not self._law_bytes and not self._pending:  # _enqueue(), inline: every frame
            self._bank._queued.append(self)
        self._law_bytes += data
        self._fed += len(data)

    def _enqueue(self) -> None:
        if not self._pending and not self._law_bytes:
            self._bank._queued.append(self)

    def _decode_law_bytes(self) -> None:
        """Bytes queued before audio of another kind: decode them now, keeping the order."""
        if self._law_bytes:
            codes = np.frombuffer(bytes(self._law_bytes), dtype=np.uint8)
            self._law_bytes.clear()
            self._pending.append(_DECODE[self._law][codes])

    def close(self) -> None:
        """Stop analysing (a digit in progress is not reported); the slot is reused."""
        if not self.closed:
            self.closed = True
            self._pending.clear()
            self._law_bytes.clear()
            self._bank._release(self)

    def reset(self) -> None:
        """Forget what is queued and any digit in progress (the sample count stays)."""
        self._pending.clear()
        self._law_bytes.clear()
        self._tail_len = 0
        self._tail_start = self._fed
        self._bank._prev_pair[self._slot] = -1
        self._reset_state()

    def flush(self) -> None:
        """End of stream: analyse what is queued, padded with silence, and end a digit
        still sounding (``on_end``). The stream then starts afresh at :attr:`samples_fed`."""
        if self.closed:
            return
        fed = self._fed
        if fed > self._tail_start:
            # with this much silence every window that starts before the end is complete
            self.feed(np.zeros(WINDOW + HOP, dtype=np.float32))
            self._bank.process()
            self._fed = fed
        if self._digit >= 0:
            self._finish()
        self.reset()

    # ------------------------------------------------------------------ timing rules
    def _windows(self, labels: list[int], shares: list[float], pairs: list[int],
                 first_start: int, before: tuple[int, float]) -> None:
        """Run the timing rules over this stream's classified windows, in order.

        ``labels``: the digit each window accepts (-1: none); ``pairs``: the digit its
        strongest row and column would make, accepted or not (-1: too quiet);
        ``shares``: the power share of that pair; ``before``: (pair, share) of the window
        before the first one."""
        start = first_start
        previous = before
        for label, share, pair in zip(labels, shares, pairs, strict=True):
            if label >= 0 and label == self._run_digit:
                self._run += 1
            else:
                self._run_digit, self._run = label, int(label >= 0)
                self._run_first = (start, share, previous)
            if self._digit >= 0:
                if label == self._digit:
                    self._last_hit, self._misses = (start, share), 0
                else:
                    self._misses += 1
                    if self._misses == 1:
                        self._after_last = (pair, share)
                    if self._misses >= MISSES_TO_END:
                        self._finish()
            if self._digit < 0 and self._run >= HITS_TO_START:
                self._begin((start, share))
            if self.closed:
                return
            previous = (pair, share)
            start += HOP
        self._bank._busy[self._slot] = self._digit >= 0 or self._run > 0

    def _begin(self, latest: tuple[int, float]) -> None:
        """The run of windows accepting a digit is long enough; ``latest`` (start, share)
        is its last window."""
        self._digit = digit = self._run_digit
        # A window holds the tone from its start to the window's end, and silence (or
        # whatever came before) ahead of it: the share of its power that the tone holds is
        # the part it fills. The window before the run says where the tone started, if the
        # tone is in it at all; the run's first window otherwise.
        first, share, (pair, share_before) = self._run_first
        if pair == digit:
            first, share = first - HOP, share_before
        self._digit_start = first + round(WINDOW * (1.0 - min(share, 1.0)))
        self._last_hit = latest
        self._misses = 0
        _log.debug("DTMF %s from sample %d", DIGITS[digit], self._digit_start)
        if self.on_start is not None:
            self.on_start(DIGITS[digit], self._digit_start)

    def _finish(self) -> None:
        last, share = self._last_hit
        pair, share_after = self._after_last
        if pair == self._digit:  # the window after the last hit still holds some tone
            last, share = last + HOP, share_after
        end = max(last + round(WINDOW * min(share, 1.0)), self._digit_start + 1)
        event = DtmfEvent(DIGITS[self._digit], self._digit_start, end)
        self._digit, self._misses = -1, 0
        _log.debug("DTMF %s ended: %d samples", event.digit, event.duration)
        if self.on_end is not None:
            self.on_end(event)


class DtmfBank:
    """Many streams analysed together: the receive side of every channel on an engine.

    Sans-I/O: streams queue what they hear, and :meth:`process` analyses everything queued
    in one vectorised pass (one matrix product for all the streams' windows), then runs
    the timing rules of the streams where something happens, whose callbacks fire from
    there. Call it once per engine iteration or per tick: the more streams a pass takes,
    the cheaper each is. Streams that queue the same amount of the same law since their
    last pass (channels fed 20 ms frames) are analysed as one block.

    ``min_level_dbm0``, ``normal_twist_db`` and ``reverse_twist_db`` override the
    defaults described in the module docstring, for every stream of the bank.
    """

    def __init__(self, *, min_level_dbm0: float = MIN_LEVEL_DBM0,
                 normal_twist_db: float = NORMAL_TWIST_DB,
                 reverse_twist_db: float = REVERSE_TWIST_DB) -> None:
        level = _number("min_level_dbm0", min_level_dbm0, -70.0, 0.0)
        normal = _number("normal_twist_db", normal_twist_db, 0.0, 20.0)
        reverse = _number("reverse_twist_db", reverse_twist_db, 0.0, 20.0)
        # |X|^2 of a sine at the minimum level, right on its frequency, Hann-weighted:
        # |X| = A * sum(hann) / 2
        self._min_power = (_peak(level) * float(_HANN.sum()) / 2.0) ** 2
        self._normal = 10.0 ** ((normal + MEASUREMENT_MARGIN_DB) / 10.0)
        self._reverse = 10.0 ** ((reverse + MEASUREMENT_MARGIN_DB) / 10.0)
        self._relative = 10.0 ** ((RELATIVE_PEAK_DB + MEASUREMENT_MARGIN_DB) / 10.0)
        self._queued: list[DtmfStream] = []
        self._open = 0
        self._free: list[int] = []
        # Per slot: the samples waiting for the next window (at most WINDOW - 1 of them);
        # for the phase check of the next window, the last window's DFT values and the
        # digit its strongest row and column would make (-1: too quiet to have a
        # meaningful phase), with that pair's power share; and whether the stream's
        # timing rules must see its next windows even if none accepts a digit.
        self._tails = np.zeros((0, WINDOW), dtype=np.float32)
        self._prev_x = np.zeros((0, 8), dtype=np.complex64)
        self._prev_pair = np.zeros(0, dtype=np.int8)
        self._prev_share = np.zeros(0, dtype=np.float64)
        self._busy = np.zeros(0, dtype=bool)

    @property
    def streams(self) -> int:
        """Streams open."""
        return self._open

    def add(self, on_start: Callable[[str, int], None] | None = None,
            on_end: Callable[[DtmfEvent], None] | None = None) -> DtmfStream:
        """A new stream (see :class:`DtmfStream` for the callbacks)."""
        for name, callback in (("on_start", on_start), ("on_end", on_end)):
            if callback is not None and not callable(callback):
                raise ArgumentError(f"{name} must be callable or None; got {callback!r}")
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self._prev_pair[slot] = -1
        self._open += 1
        return DtmfStream(self, slot, on_start, on_end)

    def _grow(self) -> None:
        size = len(self._busy)
        grow = max(8, size)
        self._tails = np.concatenate([self._tails, np.zeros((grow, WINDOW), np.float32)])
        self._prev_x = np.concatenate([self._prev_x, np.zeros((grow, 8), np.complex64)])
        self._prev_pair = np.concatenate([self._prev_pair, np.full(grow, -1, np.int8)])
        self._prev_share = np.concatenate([self._prev_share, np.zeros(grow)])
        self._busy = np.concatenate([self._busy, np.zeros(grow, bool)])
        self._free.extend(range(size + grow - 1, size - 1, -1))

    def _release(self, stream: DtmfStream) -> None:
        if stream in self._queued:
            self._queued.remove(stream)
        self._free.append(stream._slot)
        self._open -= 1

    def process(self) -> None:
        """Analyse everything the streams have queued; their callbacks fire from here.

        A callback may feed, reset or close any stream, or add one: what each stream had
        queued is taken out of it before the first callback runs, so what a callback
        feeds waits for the next pass, and a stream closed meanwhile is left out. A
        callback that raises is logged; the other streams are not affected."""
        streams = self._queued
        if not streams:
            return
        self._queued = []
        # Streams go in blocks of the same kind of audio queued (a law's bytes, or
        # samples), the same amount of it, and as many samples waiting from before: one
        # array for each block (and one table lookup for a law's bytes).
        blocks: dict[tuple[str, int, int], list[tuple[DtmfStream, bytes | np.ndarray]]] = {}
        for stream in streams:
            if stream.closed:
                continue
            data: bytes | np.ndarray
            if stream._pending:
                stream._decode_law_bytes()
                data = np.concatenate(stream._pending)
                stream._pending = []
                key = ("", data.size, stream._tail_len)
            else:
                data = bytes(stream._law_bytes)
                stream._law_bytes.clear()
                key = (stream._law, len(data), stream._tail_len)
            blocks.setdefault(key, []).append((stream, data))
        for (law, size, tail), entries in blocks.items():
            entries = [(stream, data) for stream, data in entries if not stream.closed]
            if not entries:
                continue
            block = [stream for stream, _ in entries]
            slots = np.array([stream._slot for stream in block])
            if law:
                codes = np.frombuffer(b"".join([data for _, data in entries]),  # bytes here
                                      dtype=np.uint8)
                fresh = _DECODE[law][codes].reshape(len(block), size)
            else:
                fresh = np.stack([np.asarray(data) for _, data in entries])
            rows = np.concatenate([self._tails[slots, :tail], fresh], axis=1) if tail else fresh
            self._analyse(block, slots, rows)

    def _analyse(self, streams: list[DtmfStream], slots: np.ndarray, rows: np.ndarray) -> None:
        """Analyse a block: ``rows[i]`` is what ``streams[i]`` has waiting, all as long."""
        length = rows.shape[1]
        count = (length - WINDOW) // HOP + 1 if length >= WINDOW else 0
        keep = length - count * HOP
        self._tails[slots, :keep] = rows[:, count * HOP:]
        firsts = [stream._tail_start for stream in streams]
        for stream in streams:
            stream._tail_len = keep
            stream._tail_start += count * HOP
        if not count:
            return
        before_pair = self._prev_pair[slots].tolist()
        before_share = self._prev_share[slots].tolist()
        labels, shares, pairs = self._classify(slots, rows, count)
        busy = self._busy[slots] | (labels.max(axis=1) >= 0)
        for i in np.flatnonzero(busy).tolist():
            stream = streams[i]
            if stream.closed:
                continue
            try:
                stream._windows(labels[i].tolist(), shares[i].tolist(), pairs[i].tolist(),
                                firsts[i], (before_pair[i], before_share[i]))
            except Exception as exc:  # a callback's: it must not deafen the other streams
                faultlog.record("a DTMF stream's callback", exc, stream)

    def _classify(self, slots: np.ndarray, rows: np.ndarray, count: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ``count`` windows of each row: the digit each accepts (index in DIGITS, -1
        for none), the share of its power its strongest row and column hold, and the
        digit those two would make (-1: too quiet); arrays of shape (rows, count)."""
        streams = rows.shape[0]
        # The j-th window of every row is a column slice of rows, which the products read
        # in place: gathering the overlapping windows into one array first copied 2.5
        # times the audio, a third of this step's time.
        xs = np.empty((streams, count, _BASIS.shape[1]), dtype=np.float32)
        energy = np.empty((streams, count), dtype=np.float32)
        for j in range(count):
            windows = rows[:, j * HOP:j * HOP + WINDOW]
            # In slices: a large product would have BLAS start threads of its own, which
            # cost more than they bring on a busy engine.
            for at in range(0, streams, _PRODUCT_ROWS):
                np.matmul(windows[at:at + _PRODUCT_ROWS], _BASIS, out=xs[at:at + _PRODUCT_ROWS, j])
            energy[:, j] = np.einsum("ij,ij->i", windows, windows)
        xs = xs.reshape(streams * count, _BASIS.shape[1])
        energy = np.maximum(energy.reshape(streams * count), 1e-9)
        squares = np.square(xs, dtype=np.float64)
        rect = squares[:, 0:8] + squares[:, 8:16]  # |X|^2, rectangular window
        hann = squares[:, 16:24] + squares[:, 24:32]  # |X|^2, Hann window
        x = (xs[:, 16:24] - 1j * xs[:, 24:32]).astype(np.complex64)
        # The Hann window keeps the other group's tone out of a group's frequencies (its
        # sidelobes are 40 dB down where the rectangular window's are 20), so it measures
        # each tone's level and phase; the rectangular one, whose nulls fall on the
        # neighbouring frequencies of the same group, says whether a third tone is there,
        # and how much of the window's power the two tones hold.
        row = hann[:, :4].argmax(axis=1)
        col = hann[:, 4:].argmax(axis=1) + 4
        n = np.arange(row.size)
        h_row, h_col = hann[n, row], hann[n, col]
        loud = (h_row >= 0.3 * self._min_power) & (h_col >= 0.3 * self._min_power)
        pair = np.where(loud, _DIGIT_INDEX[row, col - 4], -1).astype(np.int8)
        # The window before each: the previous one of the same row, or the stream's last
        # one of its previous pass.
        prev_x = np.empty_like(x).reshape(streams, count, 8)
        prev_x[:, 1:] = x.reshape(streams, count, 8)[:, :-1]
        prev_x[:, 0] = self._prev_x[slots]
        prev_x = prev_x.reshape(-1, 8)
        prev_pair = np.empty_like(pair).reshape(streams, count)
        prev_pair[:, 1:] = pair.reshape(streams, count)[:, :-1]
        prev_pair[:, 0] = self._prev_pair[slots]
        prev_pair = prev_pair.ravel()
        # Each tone's offset from nominal: its phase advance since the window before, less
        # the nominal frequency's (without the same pair there, there is no phase to use).
        phased = (pair >= 0) & (prev_pair == pair)
        # Computed for those windows only (in speech, a few): the others are 0 Hz off, whose
        # gains are the constants at 0 Hz.
        at = np.flatnonzero(phased)
        d_row = np.zeros(row.size, dtype=np.float32)
        d_col = np.zeros(row.size, dtype=np.float32)
        gain_hann_row = np.full(row.size, _GAIN_HANN_0)
        gain_hann_col = np.full(row.size, _GAIN_HANN_0)
        gain_rect_row = np.full(row.size, _GAIN_RECT_0)
        gain_rect_col = np.full(row.size, _GAIN_RECT_0)
        if at.size:
            r, c = row[at], col[at]
            d_row[at] = np.angle(x[at, r] * np.conj(prev_x[at, r]) * _DEROTATE[r]) * _HZ_PER_RADIAN
            d_col[at] = np.angle(x[at, c] * np.conj(prev_x[at, c]) * _DEROTATE[c]) * _HZ_PER_RADIAN
            gain_hann_row[at] = np.square(np.interp(d_row[at], _GAIN_HZ, _GAIN_HANN))
            gain_hann_col[at] = np.square(np.interp(d_col[at], _GAIN_HZ, _GAIN_HANN))
            gain_rect_row[at] = np.square(np.interp(d_row[at], _GAIN_HZ, _GAIN_RECT))
            gain_rect_col[at] = np.square(np.interp(d_col[at], _GAIN_HZ, _GAIN_RECT))
        # The tones' own levels: the bins' powers less the loss for a tone that far off.
        h_row = h_row / gain_hann_row
        h_col = h_col / gain_hann_col
        r_row = rect[n, row] / gain_rect_row
        r_col = rect[n, col] / gain_rect_col
        # |X|^2 -> the tone's energy in the window: 2 |X|^2 / N
        share = 2.0 * (r_row + r_col) / WINDOW / energy
        ok = (phased
              & (np.abs(d_row) <= _TOLERANCE_HZ[row]) & (np.abs(d_col) <= _TOLERANCE_HZ[col])
              & (h_row >= self._min_power) & (h_col >= self._min_power)
              & (h_row <= h_col * self._normal) & (h_col <= h_row * self._reverse)
              & (share >= MIN_TONE_SHARE))
        # A third tone: what is left at the other frequencies once the two tones' own
        # contributions (leakage, which a strong tone spreads to the other group's
        # frequencies too) are taken away. Only for the few windows that could be digits.
        maybe = np.flatnonzero(ok)
        if maybe.size:
            ok[maybe] = self._no_third_tone(xs[maybe], x[maybe], row[maybe], col[maybe],
                                            d_row[maybe], d_col[maybe])
        labels = np.where(ok, pair, -1)
        last = np.arange(streams) * count + count - 1
        self._prev_x[slots] = x[last]
        self._prev_pair[slots] = pair[last]
        self._prev_share[slots] = share[last]
        shape = (streams, count)
        return labels.reshape(shape), share.reshape(shape), pair.reshape(shape)

    def _no_third_tone(self, xs: np.ndarray, hann: np.ndarray, row: np.ndarray,
                       col: np.ndarray, d_row: np.ndarray, d_col: np.ndarray) -> np.ndarray:
        """Whether each window holds its two tones and no third one within
        :data:`RELATIVE_PEAK_DB` of the strongest of its group.

        Each tone's complex amplitude comes from the Hann-weighted DFT at its frequency
        (the other group's tone hardly reaches it there), its frequency from the phase
        (``d_row``/``d_col`` Hz off nominal); from those, what the two tones put into the
        rectangular window's DFT at all eight frequencies (both the positive and the
        negative frequency of each real tone) is computed and taken away. What remains at
        a group's other frequencies is a third tone (or noise), measured where the
        rectangular window's nulls keep the group's own tone out."""
        n = np.arange(row.size)
        rect = xs[:, 0:8] - 1j * xs[:, 8:16]
        left = rect.astype(np.complex128)
        for index, offset in ((row, d_row), (col, d_col)):
            kernel = np.interp(offset, _GAIN_HZ, _KERNEL_HANN.real) \
                + 1j * np.interp(offset, _GAIN_HZ, _KERNEL_HANN.imag)
            z = hann[n, index] / kernel  # (A / 2) exp(j phase) of the tone
            omega = (_OMEGA[index] + 2.0 * np.pi * offset / RATE)[:, None]
            left -= z[:, None] * _dirichlet(_OMEGA - omega) \
                + np.conj(z)[:, None] * _dirichlet(_OMEGA + omega)
        residue = np.square(left.real) + np.square(left.imag)
        residue[n, row] = 0.0
        residue[n, col] = 0.0
        power = np.square(rect.real) + np.square(rect.imag)
        return ((residue[:, :4].max(axis=1) * self._relative <= power[n, row])
                & (residue[:, 4:].max(axis=1) * self._relative <= power[n, col]))


class DtmfDetector:
    """Streaming DTMF receiver for one signal: :meth:`feed` samples, get
    :class:`DtmfEvent` back (a :class:`DtmfBank` of one stream).

    Sans-I/O: it keeps no clock and calls nothing but ``on_start``. Results do not depend
    on how the stream is cut into chunks. ``on_start(digit, start_sample)`` is called as
    soon as a digit is recognised (about 30 ms into it); the event for it is returned by
    the :meth:`feed` (or :meth:`flush`) call in which it ends.

    ``min_level_dbm0``, ``normal_twist_db`` and ``reverse_twist_db`` override the
    defaults described in the module docstring.
    """

    def __init__(self, *, on_start: Callable[[str, int], None] | None = None,
                 min_level_dbm0: float = MIN_LEVEL_DBM0,
                 normal_twist_db: float = NORMAL_TWIST_DB,
                 reverse_twist_db: float = REVERSE_TWIST_DB) -> None:
        self._bank = DtmfBank(min_level_dbm0=min_level_dbm0, normal_twist_db=normal_twist_db,
                              reverse_twist_db=reverse_twist_db)
        self._ended: list[DtmfEvent] = []
        self._stream = self._bank.add(on_start, self._ended.append)

    @property
    def samples_fed(self) -> int:
        """Samples fed so far (the index the next sample will have)."""
        return self._stream.samples_fed

    @property
    def active(self) -> str | None:
        """The digit sounding now (recognised, not yet ended), or None."""
        return self._stream.active

    def feed(self, samples: Iterable[int] | np.ndarray) -> list[DtmfEvent]:
        """Analyse ``samples`` (s16 values, any number); return the digits that ended."""
        block = _as_float32(samples)
        for at in range(0, block.size, _CHUNK):
            self._stream.feed(block[at:at + _CHUNK])
            self._bank.process()
        return self._take()

    def flush(self) -> list[DtmfEvent]:
        """End of stream: analyse what is buffered (padded with silence) and report a
        digit still sounding. The detector then starts afresh at :attr:`samples_fed`."""
        self._stream.flush()
        return self._take()

    def reset(self) -> None:
        """Forget everything buffered and any digit in progress (the sample count stays)."""
        self._stream.reset()

    def _take(self) -> list[DtmfEvent]:
        events = self._ended[:]
        self._ended.clear()
        return events


def detect_digits(samples: Iterable[int], **kwargs: object) -> list[DtmfEvent]:
    """Every digit in ``samples`` (a whole recording): feed, then flush.

    ``kwargs`` are :class:`DtmfDetector`'s. Raises ArgumentError as it does.
    """
    detector = DtmfDetector(**kwargs)  # type: ignore[arg-type]
    return detector.feed(samples) + detector.flush()
