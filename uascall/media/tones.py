"""Call-progress tones: UAS's ``ToneManager`` and a phase-continuous, table-driven renderer.

How it works
------------
A :class:`Tone` is a cadence of segments; each segment sounds one or two sinusoids (summed,
or the first amplitude-modulated by the second) or is a pause, for a whole number of
milliseconds. Rendering follows three rules:

* **Absolute phase.** Every sinusoid is ``A·sin(2π·f·n/8000)`` of the sample index ``n``
  counted from the start of the source, never restarted. A frequency that carries on across
  a frame, segment or loop boundary therefore carries on without a jump.
* **Exact cadence.** A segment lasts exactly ``duration_ms * 8`` samples and segments are
  laid end to end by sample count, so a cadence never drifts however long it loops.
* **Tables, not trigonometry.** With whole-number frequencies the sound of a segment
  repeats every ``8000 / gcd(8000, f1, f2)`` samples (at most 8000). That one period is
  computed once per (sound, law), G.711-encoded, extended by a frame so no slice wraps, and
  shared by every source. Sample ``n`` of a segment is byte ``n mod period`` of its table,
  so a frame inside a segment is one ``bytes`` slice.

Where the sound changes (tone to pause, pause to tone, one tone to another) the first
:data:`CROSSFADE_SAMPLES` samples of the new segment cross-fade from the old sound to the new
with a raised-cosine weight, both still at absolute phase; the end of a finite source fades
out over its last :data:`CROSSFADE_SAMPLES` samples. That keeps keyed edges free of clicks
without moving any segment boundary; only these few samples are computed per sample.

Levels are in dBm0. 0 dBm0 is the level of the ITU-T G.711 digital milliwatt: the RMS of
its 8-sample sequence decoded with the law in use (see :func:`reference_rms`), so a tone
"at -13 dBm0" has RMS ``reference_rms(law) · 10^(-13/20)``.
"""

from __future__ import annotations

import enum
import functools
import logging
import math
import numbers
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from uascall.errors import ArgumentError, Error
from uascall.media import g711
from uascall.media.source import FRAME_SAMPLES, FrameSource

__all__ = [
    "CROSSFADE_SAMPLES",
    "Component",
    "Segment",
    "Tone",
    "ToneManager",
    "ToneSource",
    "parse_tone",
    "reference_rms",
]

_log = logging.getLogger(__name__)

RATE = g711.SAMPLE_RATE
SAMPLES_PER_MS = RATE // 1000
#: cross-fade (and final fade-out) length: 4 ms, short against any cadence element, long
#: enough that the envelope adds < 15 % to the sample-to-sample step of a 425 Hz tone
CROSSFADE_SAMPLES = 32

MAX_FREQUENCY = 9999  # Hz, UAS's range for 'frequency'
MAX_ATTENUATION = 99  # UAS's 'amplitude' is 0..99, read as -dBm0
MAX_DURATION_MS = 9999
SUMMATION = "summation"
MODULATION = "modulation"

#: ITU-T G.711 digital milliwatt (1 kHz at 0 dBm0), one 8-sample period per law
DIGITAL_MILLIWATT = {
    "ulaw": bytes.fromhex("1E0B0B1E9E8B8B9E"),
    "alaw": bytes.fromhex("34212134B4A1A1B4"),
}
# Largest magnitude each law decodes to; a peak above it would be clipped.
_LAW_MAX = {"ulaw": 32124, "alaw": 32256}


def reference_rms(law: str) -> float:
    """RMS (in s16 units) of 0 dBm0 for ``law``: the decoded digital milliwatt's RMS."""
    codec = g711.codec(law)
    samples = codec.decode(DIGITAL_MILLIWATT[codec.name])
    return math.sqrt(sum(s * s for s in samples) / len(samples))


_REF_PEAK = {law: reference_rms(law) * math.sqrt(2.0) for law in DIGITAL_MILLIWATT}
# The largest sum of linear component gains (1.0 = a 0 dBm0 sine) neither law clips:
# about 1.413, so two tones at -3 dBm0 each are refused and -3/-4 dBm0 are accepted.
MAX_GAIN_SUM = min(_LAW_MAX[law] / _REF_PEAK[law] for law in DIGITAL_MILLIWATT)


# --------------------------------------------------------------------------- description

@dataclass(frozen=True, slots=True)
class Component:
    """One sinusoid: ``frequency`` in Hz (> 0) at ``level_dbm0`` (0 or negative)."""

    frequency: int
    level_dbm0: float

    @property
    def gain(self) -> float:
        """Peak amplitude relative to a 0 dBm0 sine."""
        return 10.0 ** (self.level_dbm0 / 20.0)


@dataclass(frozen=True, slots=True)
class Segment:
    """One cadence element. ``first``/``second`` are None when silent; both None is a pause.

    With ``add == "modulation"`` the output is ``A1·(1 + m·sin(2π·f2·n/8000))·sin(2π·f1·n/8000)``
    with depth ``m = A2/A1`` (linear amplitudes of the two levels, so ``m <= 1`` is required):
    a carrier at ``f1`` and two side tones at ``f1 ± f2``, each ``A2/2`` (6.02 dB below the
    second level). The peak is ``A1 + A2`` in both modes.
    """

    first: Component | None
    second: Component | None
    duration_ms: int
    add: str = SUMMATION

    @property
    def samples(self) -> int:
        return self.duration_ms * SAMPLES_PER_MS

    @property
    def is_pause(self) -> bool:
        return self.first is None and self.second is None

    def _sound(self) -> tuple | None:
        """A hashable key for what the segment sounds like (None: silence)."""
        first, second, add = self.first, self.second, self.add
        if add == MODULATION and second is None:
            add = SUMMATION  # a carrier modulated by nothing is the carrier alone
        if first is None and second is None:
            return None
        return (add, first, second)


@dataclass(frozen=True, slots=True)
class Tone:
    """A named, immutable cadence; :meth:`source` renders it for one G.711 law."""

    name: str
    segments: tuple[Segment, ...]

    @property
    def cycle_samples(self) -> int:
        return sum(seg.samples for seg in self.segments)

    @property
    def cycle_seconds(self) -> float:
        """Seconds one pass of the cadence lasts."""
        return self.cycle_samples / RATE

    def source(self, law: str, *, loop: bool, seconds: float | None = None) -> ToneSource:
        """Frames of this tone in ``law``: one pass (``loop=False``), ``seconds`` of it
        (cut at exactly ``round(seconds * 8000)`` samples, and never more than one pass
        unless ``loop``), or without end (``loop=True``, ``seconds=None``).

        Raises ArgumentError for an unknown law or a negative or non-finite ``seconds``.
        """
        try:
            name = g711.codec(law).name
        except ValueError as exc:
            raise ArgumentError(str(exc)) from None
        end: int | None = None
        if seconds is not None:
            if (isinstance(seconds, bool) or not isinstance(seconds, numbers.Real)
                    or not math.isfinite(seconds) or seconds < 0):
                raise ArgumentError(f"seconds must be a finite number >= 0 or None; "
                                    f"got {seconds!r}")
            samples = seconds * RATE
            end = round(samples) if math.isfinite(samples) else None  # longer than time
        if not loop:
            end = self.cycle_samples if end is None else min(end, self.cycle_samples)
        return ToneSource(self, _plan(self.segments, name), name, end)


# --------------------------------------------------------------------------- rendering

class _Table:
    """One period of a sound in one law: linear samples and encoded bytes (+ a frame)."""

    __slots__ = ("ext", "key", "lin", "period")

    def __init__(self, key: tuple | None, lin: list[int], codec: g711.Codec) -> None:
        self.key = key
        self.lin = lin
        self.period = len(lin)
        encoded = codec.encode(lin)
        reps = 1 + -(-FRAME_SAMPLES // self.period)
        self.ext = (encoded * reps)[: self.period + FRAME_SAMPLES]


@functools.lru_cache(maxsize=512)
def _table(key: tuple | None, law: str) -> _Table:
    codec = g711.codec(law)
    if key is None:
        return _Table(None, [0], codec)
    add, first, second = key
    freqs = [c.frequency for c in (first, second) if c is not None]
    period = RATE // math.gcd(RATE, *freqs)
    peak = _REF_PEAK[law]
    a1 = first.gain * peak if first is not None else 0.0
    a2 = second.gain * peak if second is not None else 0.0
    f1 = first.frequency if first is not None else 0
    f2 = second.frequency if second is not None else 0
    w = 2.0 * math.pi / RATE
    lin = []
    for n in range(period):
        # reduce f·n modulo the rate first: keeps the sine's argument small and exact
        s1 = math.sin(w * (f1 * n % RATE))
        s2 = math.sin(w * (f2 * n % RATE))
        if add == MODULATION:
            value = (a1 + a2 * s2) * s1  # = A1·(1 + m·s2)·s1 with m = A2/A1
        else:
            value = a1 * s1 + a2 * s2
        lin.append(round(value))
    return _Table(key, lin, codec)


@functools.lru_cache(maxsize=64)
def _ramp(length: int) -> tuple[float, ...]:
    """Raised-cosine weights rising from ~0 to ~1 over ``length`` samples."""
    return tuple(0.5 - 0.5 * math.cos(math.pi * (i + 0.5) / length) for i in range(length))


@functools.lru_cache(maxsize=256)
def _plan(segments: tuple[Segment, ...], law: str) -> tuple[tuple[_Table, int], ...]:
    # zero-length segments sound nothing and must not count as a change of sound
    return tuple((_table(seg._sound(), law), seg.samples) for seg in segments if seg.samples)


class ToneSource(FrameSource):
    """Frames of a :class:`Tone`; made by :meth:`Tone.source`.

    The common case, a frame wholly inside the steady part of a segment, is one slice of a
    shared table; frames that touch a cross-fade or the final fade are assembled in pieces.
    """

    def __init__(self, tone: Tone, plan: tuple[tuple[_Table, int], ...], law: str,
                 end: int | None) -> None:
        self.law = law
        self.tone = tone
        self._codec = g711.codec(law)
        self._plan = plan
        self._end = end
        self._fade_from = None if end is None else end - min(CROSSFADE_SAMPLES, end)
        self._n = 0
        self._i = -1
        self._seg_end = 0
        self._table = _table(None, law)
        self._enter_next()

    @property
    def duration(self) -> float | None:
        return None if self._end is None else self._end / RATE

    @property
    def position(self) -> int:
        """Samples produced so far (the absolute index of the next sample)."""
        return self._n

    def _enter_next(self) -> None:
        prev = self._table
        self._i = (self._i + 1) % len(self._plan)
        table, length = self._plan[self._i]
        self._prev = prev
        self._table = table
        start = self._seg_end
        self._seg_start = start
        self._seg_end = start + length
        self._xf = 0 if table.key == prev.key else min(CROSSFADE_SAMPLES, length)
        self._fast_start = start + self._xf
        fast_end = self._seg_end
        if self._fade_from is not None and self._fade_from < fast_end:
            fast_end = self._fade_from
        self._fast_end = fast_end

    def next_frame(self) -> bytes | None:
        # The steady zone ends at the final fade, which starts before the end, so this path
        # never runs past a finite end; the slow path is the only one that returns None.
        n = self._n
        stop = n + FRAME_SAMPLES
        if self._fast_start <= n and stop <= self._fast_end:
            table = self._table
            p = n % table.period
            self._n = stop
            if stop == self._seg_end:
                self._enter_next()
            return table.ext[p:p + FRAME_SAMPLES]
        return self._slow_frame()

    def _slow_frame(self) -> bytes | None:
        n = self._n
        limit = n + FRAME_SAMPLES
        if self._end is not None:
            if n >= self._end:
                return None
            limit = min(limit, self._end)
        parts = []
        while n < limit:
            seg_end = self._seg_end
            stop = min(limit, seg_end)
            plain_from = max(n, min(stop, self._fast_start))
            plain_to = min(stop, max(plain_from, self._fast_end))
            if n < plain_from:
                parts.append(self._compute(n, plain_from))
            if plain_from < plain_to:
                table = self._table
                p = plain_from % table.period
                parts.append(table.ext[p:p + plain_to - plain_from])
            if plain_to < stop:
                parts.append(self._compute(plain_to, stop))
            n = stop
            if n == seg_end:
                self._enter_next()
        self._n = n
        frame = b"".join(parts)
        if len(frame) < FRAME_SAMPLES:
            frame += bytes([self._codec.silence]) * (FRAME_SAMPLES - len(frame))
        return frame

    def _compute(self, a: int, b: int) -> bytes:
        """Samples ``a..b-1`` of the current segment, with cross-fade and final fade."""
        table, prev = self._table, self._prev
        edge = (table, prev, self._xf, a - self._seg_start, b - a, a % table.period,
                a % prev.period)
        end, fade_from = self._end, self._fade_from
        if end is None or fade_from is None or b <= fade_from:
            # A cross-fade alone depends on its place in the edge and on the phases of the
            # two sounds, which recur at every edge of a looped cadence and in every source
            # of the tone: it is computed once, not for each edge of each call.
            return _crossfade(*edge, self.law)
        values = _mix(*edge)
        fall = _ramp(end - fade_from)
        for k in range(max(a, fade_from) - a, b - a):
            values[k] *= fall[end - 1 - (a + k)]
        return self._codec.encode([round(v) for v in values])


def _mix(table: _Table, prev: _Table, xf: int, offset: int, count: int, phase: int,
         prev_phase: int) -> list[float]:
    """``count`` samples of ``table`` cross-faded from ``prev`` over ``xf`` samples, starting
    ``offset`` samples into the fade, at those phases of the two tables' periods (unrounded:
    a final fade may still scale them)."""
    lin, period = table.lin, table.period
    plin, pperiod = prev.lin, prev.period
    rise = _ramp(xf) if xf else ()
    values: list[float] = []
    for k in range(count):
        v: float = lin[(phase + k) % period]
        i = offset + k
        if i < xf:
            w = rise[i]
            v = w * v + (1.0 - w) * plin[(prev_phase + k) % pperiod]
        values.append(v)
    return values


@functools.lru_cache(maxsize=1024)
def _crossfade(table: _Table, prev: _Table, xf: int, offset: int, count: int, phase: int,
               prev_phase: int, law: str) -> bytes:
    """:func:`_mix` encoded, for stretches without the final fade (kept: they recur)."""
    return g711.codec(law).encode([round(v) for v in _mix(table, prev, xf, offset, count,
                                                          phase, prev_phase)])


# --------------------------------------------------------------------------- validation

_COMPONENT_KEYS = ("frequency", "amplitude")
_TIMING_KEYS = ("duration", "add")


def _whole(value: Any) -> int | None:
    """``value`` as an int if it is a whole number (not a bool), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _parse_component(where: str, spec: Any, log: Any) -> Component | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise ArgumentError(f"{where}: expected a dict with 'frequency' and 'amplitude' "
                            f"(or an empty dict for no tone); got {spec!r}")
    unknown = sorted(str(k) for k in spec if k not in _COMPONENT_KEYS)
    if unknown:
        raise ArgumentError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                            "expected 'frequency' and 'amplitude'")
    if not spec:
        return None
    if "frequency" not in spec:
        raise ArgumentError(f"{where}: 'frequency' is missing; expected Hz from 0 to "
                            f"{MAX_FREQUENCY} (0 for no tone)")
    freq = _whole(spec["frequency"])
    if freq is None or not 0 <= freq <= MAX_FREQUENCY:
        raise ArgumentError(f"{where}: 'frequency' must be a whole number of Hz from 0 to "
                            f"{MAX_FREQUENCY}; got {spec['frequency']!r}")
    amp = spec.get("amplitude")
    if amp is None and freq:
        raise ArgumentError(f"{where}: 'amplitude' is missing; expected 0 to "
                            f"{MAX_ATTENUATION} (read as -dBm0)")
    if amp is not None and (isinstance(amp, bool) or not isinstance(amp, numbers.Real)
                            or not math.isfinite(amp) or not 0 <= amp <= MAX_ATTENUATION):
        raise ArgumentError(f"{where}: 'amplitude' must be a number from 0 to "
                            f"{MAX_ATTENUATION} (read as -dBm0); got {amp!r}")
    if freq == 0:
        return None
    if 2 * freq >= RATE:
        alias = abs(freq - RATE * round(freq / RATE))
        log.warning(f"{where}: {freq} Hz is not below the 4000 Hz limit of 8 kHz audio; "
                    f"it sounds at {alias} Hz")
    return Component(freq, -float(amp))


def _parse_segment(index: int, spec: Any, log: Any) -> Segment:
    where = f"segment {index}"
    if isinstance(spec, str | bytes) or not isinstance(spec, Sequence) or len(spec) != 3:
        raise ArgumentError(f"{where}: expected a 3-tuple (tone1, tone2, timing); "
                            f"got {spec!r}")
    first = _parse_component(f"{where}, first tone", spec[0], log)
    second = _parse_component(f"{where}, second tone", spec[1], log)
    timing = spec[2]
    if not isinstance(timing, Mapping):
        raise ArgumentError(f"{where}: timing must be a dict with 'duration' (ms) and 'add'; "
                            f"got {timing!r}")
    unknown = sorted(str(k) for k in timing if k not in _TIMING_KEYS)
    if unknown:
        raise ArgumentError(f"{where}, timing: unknown key(s) "
                            f"{', '.join(map(repr, unknown))}; expected 'duration' and 'add'")
    if "duration" not in timing:
        raise ArgumentError(f"{where}, timing: 'duration' is missing; expected ms from 0 "
                            f"to {MAX_DURATION_MS}")
    duration = _whole(timing["duration"])
    if duration is None or not 0 <= duration <= MAX_DURATION_MS:
        raise ArgumentError(f"{where}, timing: 'duration' must be a whole number of ms "
                            f"from 0 to {MAX_DURATION_MS}; got {timing['duration']!r}")
    add = timing.get("add", SUMMATION)
    if add not in (SUMMATION, MODULATION):
        raise ArgumentError(f"{where}, timing: 'add' must be 'summation' or 'modulation'; "
                            f"got {add!r}")
    if add == MODULATION and second is not None:
        if first is None:
            raise ArgumentError(f"{where}: 'modulation' needs a first tone (the carrier); "
                                "the first tone is silent")
        if second.level_dbm0 > first.level_dbm0:
            raise ArgumentError(
                f"{where}: 'modulation' depth is the second amplitude relative to the first "
                f"and must not exceed 100 %; the second 'amplitude' "
                f"({-second.level_dbm0:g}) must be >= the first ({-first.level_dbm0:g})")
    gain_sum = sum(c.gain for c in (first, second) if c is not None)
    if gain_sum > MAX_GAIN_SUM:
        levels = " and ".join(f"{c.level_dbm0:g} dBm0" for c in (first, second) if c)
        raise ArgumentError(
            f"{where}: tones at {levels} peak at {20 * math.log10(gain_sum):+.2f} dB over a "
            f"0 dBm0 sine and would clip G.711 (limit {20 * math.log10(MAX_GAIN_SUM):+.2f} "
            "dB); raise an 'amplitude'")
    return Segment(first, second, duration, add)


def parse_tone(tone_info: Any, name: str, log: Any = None) -> Tone:
    """Validate UAS ``tone_info`` (see :meth:`ToneManager.create_tone`) into a :class:`Tone`.

    Raises ArgumentError naming the segment index, the key and the allowed range.
    """
    log = log if log is not None else _log
    if not isinstance(name, str) or not name:
        raise ArgumentError(f"tone name must be a non-empty string; got {name!r}")
    if isinstance(tone_info, str | bytes | Mapping) or not isinstance(tone_info, Sequence):
        raise ArgumentError("tone_info must be a list of (tone1, tone2, timing) tuples; "
                            f"got {type(tone_info).__name__}")
    if not tone_info:
        raise ArgumentError("tone_info is empty; expected at least one "
                            "(tone1, tone2, timing) segment")
    segments = tuple(_parse_segment(i, spec, log) for i, spec in enumerate(tone_info))
    if not any(seg.samples for seg in segments):
        raise ArgumentError(f"tone {name!r} lasts 0 ms; expected at least one segment with "
                            "a 'duration' above 0")
    return Tone(name, segments)


# --------------------------------------------------------------------------- manager

# Levels, per component, of the predefined tones:
# * RINGBACK_EU, 425 Hz, 1 s on / 4 s off, -13 dBm0: the CEPT/ETSI harmonised ringing tone
#   (ETSI TR 101 041-2 lists the national variants; E.180 leaves the level to each
#   administration). -13 dBm0 is the nominal commonly quoted for it, not re-checked here
#   against a primary text.
# * RINGBACK_UK, 400 + 450 Hz, 0.4/0.2/0.4/2.0 s, -19 dBm0 each: BT SIN 350's ring tone;
#   the level is as commonly quoted for SIN 350, not re-checked against the document.
# * RINGBACK (US), 440 + 480 Hz, 2 s on / 4 s off, -19 dBm0 each: the North American
#   Precise Tone Plan audible ringing tone (ITU-T E.300-series Supplement 3, "North
#   American precise audible tone plan"; Telcordia GR-506).
def _on(freqs: tuple[int, ...], attenuation: int, ms: int) -> tuple[dict, dict, dict]:
    tones = [{"frequency": f, "amplitude": attenuation} for f in freqs] + [{}]
    return tones[0], tones[1], {"duration": ms, "add": SUMMATION}


def _off(ms: int) -> tuple[dict, dict, dict]:
    return {}, {}, {"duration": ms, "add": SUMMATION}


_PREDEFINED_INFO = {
    "RINGBACK_EU": [_on((425,), 13, 1000), _off(4000)],
    "RINGBACK_UK": [_on((400, 450), 19, 400), _off(200), _on((400, 450), 19, 400), _off(2000)],
    "RINGBACK": [_on((440, 480), 19, 2000), _off(4000)],
}
_PREDEFINED = {name: parse_tone(info, name) for name, info in _PREDEFINED_INFO.items()}

# Call-progress tones an exchange plays on an analog line (our FXS ports), per tone zone as
# dahdi-tools names them. North America: the Precise Tone Plan (dial 350 + 440 Hz at -13
# dBm0, busy 480 + 620 Hz 0.5/0.5 s and reorder 0.25/0.25 s at -24 dBm0); the UK: SIN 350
# (dial 350 + 440 Hz, busy 400 Hz 0.375/0.375 s, congestion 400 Hz 0.4/0.35/0.225/0.525 s);
# elsewhere in Europe the CEPT 425 Hz family (dial continuous, busy 0.5/0.5 s, congestion
# 0.25/0.25 s). A continuous tone is one second looped: the renderer is phase-continuous.
_CALL_PROGRESS_INFO = {
    "us": {
        "dial": [_on((350, 440), 13, 1000)],
        "ringback": _PREDEFINED_INFO["RINGBACK"],
        "busy": [_on((480, 620), 24, 500), _off(500)],
        "congestion": [_on((480, 620), 24, 250), _off(250)],
    },
    "uk": {
        "dial": [_on((350, 440), 13, 1000)],
        "ringback": _PREDEFINED_INFO["RINGBACK_UK"],
        "busy": [_on((400,), 13, 375), _off(375)],
        "congestion": [_on((400,), 13, 400), _off(350), _on((400,), 19, 225), _off(525)],
    },
    "cept": {
        "dial": [_on((425,), 13, 1000)],
        "ringback": _PREDEFINED_INFO["RINGBACK_EU"],
        "busy": [_on((425,), 13, 500), _off(500)],
        "congestion": [_on((425,), 13, 250), _off(250)],
    },
}
_ZONE_FAMILY = {"us": "us", "ca": "us", "uk": "uk", "au": "uk", "nz": "uk"}
CALL_PROGRESS_TONES = ("dial", "ringback", "busy", "congestion")
_CALL_PROGRESS = {
    family: {kind: parse_tone(info, f"{kind.upper()}_{family.upper()}")
             for kind, info in kinds.items()}
    for family, kinds in _CALL_PROGRESS_INFO.items()
}


def call_progress_tone(kind: str, zone: str | None = "us") -> Tone:
    """The ``kind`` tone ("dial", "ringback", "busy" or "congestion") of tone zone
    ``zone`` ("us", "uk", "de", "nl"...; zones not listed get the CEPT 425 Hz tones)."""
    if kind not in CALL_PROGRESS_TONES:
        raise ArgumentError(f"call-progress tone {kind!r}; expected one of "
                            f"{', '.join(CALL_PROGRESS_TONES)}")
    family = _ZONE_FAMILY.get((zone or "us").lower(), "cept")
    return _CALL_PROGRESS[family][kind]


class ToneManager:
    """Named tones for ringback and tone players, as UAS's ``ToneManager(log)``.

    Holds the predefined tones under their member names, any tones made with
    :meth:`create_tone`, and the choice of default ringback (``get("DEFAULT")``), which is
    ``PredefinedTones.RINGBACK`` until :meth:`set_default` changes it. Safe to share between
    threads.
    """

    class PredefinedTones(enum.Enum):
        RINGBACK_EU = "RINGBACK_EU"  # 425 Hz, 1 s on / 4 s off, -13 dBm0
        RINGBACK_UK = "RINGBACK_UK"  # 400 + 450 Hz, 0.4/0.2/0.4/2.0 s, -19 dBm0 each
        RINGBACK = "RINGBACK"  # US: 440 + 480 Hz, 2 s on / 4 s off, -19 dBm0 each

    #: the name :meth:`get` resolves to the default ringback
    DEFAULT = "DEFAULT"

    def __init__(self, log: Any = None) -> None:
        # UAS hands over the application's log object; only .info/.warning(str) are used,
        # with the message already formatted, so a non-logging logger works as well.
        self._log = log if log is not None else _log
        self._lock = threading.Lock()
        self._tones: dict[str, Tone] = dict(_PREDEFINED)
        self._default = self.PredefinedTones.RINGBACK.value

    def create_tone(self, tone_info: Any, tone_name: str) -> Tone:
        """Register ``tone_info`` as ``tone_name`` (replacing a tone of that name).

        ``tone_info`` is a list of segments, each a 3-tuple ``(tone1, tone2, timing)``:
        ``tone1``/``tone2`` are ``{'frequency': 0..9999 Hz, 'amplitude': 0..99}`` with the
        amplitude read as negative dBm0 (frequency 0 or ``{}``: that tone is silent; both
        silent: a pause); ``timing`` is ``{'duration': 0..9999 ms, 'add': 'summation' |
        'modulation'}`` ('add' defaults to summation). 'modulation' modulates the first tone
        by the second with depth = second amplitude / first amplitude (linear, at most
        100 %). A segment whose peak would clip G.711 (its two linear amplitudes summing to
        over about +3.0 dB above a 0 dBm0 sine, e.g. -3 and -3 dBm0) is refused.

        Returns the new Tone. Raises ArgumentError naming the segment, key and range.
        """
        if tone_name == self.DEFAULT:
            raise ArgumentError(f"tone name {self.DEFAULT!r} is reserved for the default "
                                "ringback; choose another name")
        tone = parse_tone(tone_info, tone_name, self._log)
        with self._lock:
            old = self._tones.get(tone_name)
            self._tones[tone_name] = tone
        if old is not None:
            kind = "predefined tone" if tone_name in _PREDEFINED else "tone"
            self._log.info(f"{kind} {tone_name!r} replaced by a new definition")
        return tone

    def set_default(self, tone: PredefinedTones | str) -> None:
        """Choose the default ringback: a :class:`PredefinedTones` member or a tone name.

        Raises Error for a name that is not registered.
        """
        name = self._name(tone)
        if name == self.DEFAULT or name not in self._tones:
            raise Error(self._unknown(name))
        with self._lock:
            self._default = name
        self._log.info(f"default ringback tone is now {name!r}")

    @property
    def default(self) -> Tone:
        """The default ringback tone."""
        return self.get(self.DEFAULT)

    def names(self) -> list[str]:
        """The registered tone names, predefined ones first."""
        return list(self._tones)

    def get(self, name: PredefinedTones | str) -> Tone:
        """The tone called ``name`` (``"DEFAULT"``: the default ringback).

        Raises Error, listing the known names, for an unknown one.
        """
        key = self._name(name)
        if key == self.DEFAULT:
            key = self._default
        try:
            return self._tones[key]
        except KeyError:
            raise Error(self._unknown(key)) from None

    def _name(self, tone: Any) -> str:
        if isinstance(tone, self.PredefinedTones):
            return tone.value
        if not isinstance(tone, str) or not tone:
            raise ArgumentError(f"a tone is a ToneManager.PredefinedTones member or a "
                                f"non-empty tone name; got {tone!r}")
        return tone

    def _unknown(self, name: str) -> str:
        known = ", ".join(self._tones)
        return f"no tone named {name!r}; known tones: {known} (and {self.DEFAULT!r})"
