"""Call-progress tones heard on a line: dial tone, busy, congestion (reorder), ringback.

An FXO port that places a call listens to the line as a person would: it waits for dial
tone before dialling, then tells ringback from busy and congestion. :class:`ProgressDetector`
does that listening, sans-I/O: it is fed 8 kHz samples (or G.711 bytes) in chunks of any
size, analyses them in 20 ms frames, and returns :class:`ProgressEvent` objects. It knows
no clock but the samples it was fed.

The tones are the zone's own, from :func:`uascall.media.tones.call_progress_tone`: the
table our FXS ports play (North America's precise tones, the UK's SIN 350 tones, the
CEPT 425 Hz family elsewhere), so the two ends of a line agree on what a zone sounds like.

How it works
------------
* **One least-squares fit per frame and frequency set.** Each 20 ms frame is fitted with a
  sine and a cosine at each frequency of a tone (350 + 440 Hz, 425 Hz...). The fit gives
  each component's amplitude and the *share* of the frame's power the tone explains. A
  frame has the tone when the share is at least :data:`MIN_SHARE`, every component is
  at least :data:`MIN_LEVEL_DBM0` and within :data:`MAX_TWIST_DB` of the strongest.
  Fitting the frequencies together, not one filter each, is what tells 440 + 480 Hz
  (ringback) from 350 + 440 Hz (dial tone) in a window whose bins are 50 Hz wide: a
  lone 440 Hz tone fits the 440 + 480 pair with a 480 Hz component 14 dB down, and a
  pair fitted with the wrong pair explains under half the frame. A tone ±1.5 % off its
  frequency still explains over 90 % of a frame; speech and music, whose power is spread
  over harmonics and formants, rarely explain 80 % for one frame and never for the
  hundreds of milliseconds a cadence needs.
* **Cadence, per frequency set.** The frames of each frequency set form a run of "tone"
  and "no tone" segments. A steady tone (dial tone) is recognised once it has sounded
  :data:`STEADY_MS`. A cadenced tone is recognised when the segments since the tone
  began match its cadence (on, off, on... from the zone's table) within
  ±:data:`CADENCE_TOLERANCE` of each duration plus one frame of measurement: busy and
  congestion after a whole cycle from any of its bursts and the next burst reaching its
  shortest length (US busy: about 1.4 s; reorder 0.7 s); ringback after the bursts of
  its first cycle and :data:`RINGBACK_OFF_MS` of its long pause (US: 3 s). A segment no
  cadence can continue starts the matching afresh.
* Each kind is reported once per unbroken run of its tone; a caller that wants it again
  after acting on it calls :meth:`ProgressDetector.reset`.

Only the kinds asked for (``expect``) are looked for: a port waiting for dial tone asks
for "dialtone" alone, and once it has dialled for "busy", "congestion" and "ringback". In
the CEPT zones every tone is 425 Hz, so the burst of a ringback is a steady tone for its
first second: asking for "dialtone" and "ringback" together would report both.

Levels are dBm0 with the code base's reference (:func:`uascall.media.tones.reference_rms`).
"""

from __future__ import annotations

import array
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from uascall.errors import ArgumentError
from uascall.media import g711
from uascall.media.tones import call_progress_tone, reference_rms

log = logging.getLogger(__name__)

RATE = g711.SAMPLE_RATE
FRAME = 160  # 20 ms: one analysis window, and the unit every duration is measured in
FRAME_MS = 1000 * FRAME // RATE

#: what a frame's fit must explain of its power for the tone to be there
MIN_SHARE = 0.80
#: the quietest component a tone may have (the weakest tones specified are -24 dBm0 per
#: component; a line takes several dB off them)
MIN_LEVEL_DBM0 = -36.0
#: how far below the strongest component another may be
MAX_TWIST_DB = 10.0
#: how long a steady tone (dial tone) sounds before it is recognised
STEADY_MS = 300
#: how far a segment may be from its nominal duration (plus one frame of measurement)
CADENCE_TOLERANCE = 0.20
#: how much of ringback's long pause must have passed for ringback to be recognised
#: (longer than any busy or congestion pause, shorter than any ringback's)
RINGBACK_OFF_MS = 1000

#: the kinds reported, and the tone of :func:`~uascall.media.tones.call_progress_tone`
#: each one is
KINDS = {"dialtone": "dial", "busy": "busy", "congestion": "congestion",
         "ringback": "ringback"}

#: completed segments kept per frequency set (the matching needs a cycle or two)
_KEEP_SEGMENTS = 32

_REF_PEAK = reference_rms("ulaw") * math.sqrt(2.0)  # A-law's is 0.07 dB higher
_MIN_AMPLITUDE = _REF_PEAK * 10.0 ** (MIN_LEVEL_DBM0 / 20.0)
_TWIST = 10.0 ** (-MAX_TWIST_DB / 20.0)


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """A tone recognised: ``kind`` is "dialtone", "busy", "congestion" or "ringback";
    ``sample`` is how many samples had been fed when it was (its time on the line)."""

    kind: str
    sample: int

    @property
    def seconds(self) -> float:
        return self.sample / RATE


@dataclass(frozen=True)
class ProgressTone:
    """What the detector looks for: a kind's frequencies and cadence (ms on, off, on,
    off...; empty for a steady tone)."""

    kind: str
    frequencies: tuple[int, ...]
    cadence: tuple[int, ...]

    @classmethod
    def of_zone(cls, kind: str, zone: str) -> ProgressTone:
        """The ``kind`` tone of tone zone ``zone``, from the zone table of
        :mod:`uascall.media.tones`."""
        tone = call_progress_tone(KINDS[kind], zone)
        freqs: set[int] = set()
        cadence: list[int] = []  # alternating on, off, on, off, starting with on
        for segment in tone.segments:
            if not segment.duration_ms:
                continue
            sounding = not segment.is_pause
            for component in (segment.first, segment.second):
                if component is not None:
                    freqs.add(component.frequency)
            if cadence and (len(cadence) % 2 == 1) == sounding:
                cadence[-1] += segment.duration_ms  # same state: one longer segment
            elif not cadence and not sounding:
                continue  # a leading pause belongs at the end of the cycle
            else:
                cadence.append(segment.duration_ms)
        if len(cadence) == 1:  # on for ever
            cadence = []
        elif len(cadence) % 2:  # ends sounding: that is the start of the next burst
            cadence[0] += cadence.pop()
        return cls(kind, tuple(sorted(freqs)), tuple(cadence))

    @property
    def steady(self) -> bool:
        return not self.cadence


class _FrequencySet:
    """The fit for one set of frequencies, and the segments its frames make."""

    def __init__(self, frequencies: tuple[int, ...], tones: list[ProgressTone]) -> None:
        self.frequencies = frequencies
        self.tones = tones
        n = np.arange(FRAME)
        columns = []
        for f in frequencies:
            columns += [np.cos(2 * np.pi * f * n / RATE), np.sin(2 * np.pi * f * n / RATE)]
        self.basis = np.stack(columns, axis=1)  # FRAME x 2k
        self.inverse_gram = np.linalg.inv(self.basis.T @ self.basis)
        #: completed segments since the tone was first heard: (sounding, frames)
        self.segments: list[tuple[bool, int]] = []
        self.current: bool | None = None
        self.run = 0
        self.reported: set[str] = set()

    def reset(self) -> None:
        self.segments.clear()
        self.current = None
        self.run = 0
        self.reported.clear()

    def sounding(self, frames: np.ndarray, power: np.ndarray) -> np.ndarray:
        """Whether each frame (rows of ``frames``) has this tone."""
        projected = frames @ self.basis                        # n x 2k
        coefficients = projected @ self.inverse_gram.T          # n x 2k
        explained = np.einsum("ij,ij->i", projected, coefficients)
        share = np.divide(explained, power, out=np.zeros_like(power), where=power > 0)
        pairs = coefficients.reshape(len(frames), -1, 2)
        amplitude = np.sqrt((pairs ** 2).sum(axis=2))           # n x k
        strongest = amplitude.max(axis=1, keepdims=True)
        return ((share >= MIN_SHARE) & (amplitude >= _MIN_AMPLITUDE).all(axis=1)
                & (amplitude >= _TWIST * strongest).all(axis=1))

    def step(self, on: bool, at: int) -> list[ProgressEvent]:
        """One frame: extend or close the current segment; what is recognised now."""
        if self.current is None:
            if not on:
                return []  # silence before the tone: not part of any cadence
            self.current, self.run = True, 0
        if on != self.current:
            self.segments.append((self.current, self.run))
            self.current, self.run = on, 0
            if not self._continues():
                self._restart()
        self.run += 1
        return self._recognise(at)

    def _restart(self) -> None:
        """The segments so far fit no cadence: keep what the newest could begin."""
        self.reported.clear()
        while self.segments and (not self.segments[0][0] or not self._continues()):
            self.segments.pop(0)

    def _continues(self) -> bool:
        if len(self.segments) > _KEEP_SEGMENTS:  # an hour of busy tone: only the latest
            del self.segments[:len(self.segments) - _KEEP_SEGMENTS // 2]
        return any(not self.segments if tone.steady
                   else _match(tone.cadence, self.segments, None,
                               range(len(tone.cadence)))
                   for tone in self.tones)

    def _recognise(self, at: int) -> list[ProgressEvent]:
        events = []
        ms = self.run * FRAME_MS
        for tone in self.tones:
            if tone.kind in self.reported:
                continue
            if tone.steady:
                heard = (self.current and not self.segments and ms >= STEADY_MS)
            elif tone.kind == "ringback":
                cycle = len(tone.cadence)
                heard = (not self.current and len(self.segments) == cycle - 1
                         and ms >= min(_low(tone.cadence[-1]), RINGBACK_OFF_MS)
                         and _match(tone.cadence, self.segments, None, (0,)))
            else:  # a whole cycle from one of its bursts, and the next burst under way
                cycle = len(tone.cadence)
                heard = (len(self.segments) >= cycle and self.segments[-cycle][0]
                         and _match(tone.cadence, self.segments[-cycle:], ms,
                                    range(0, cycle, 2)))
            if heard:
                self.reported.add(tone.kind)
                events.append(ProgressEvent(tone.kind, at))
        return events


def _low(nominal: int) -> float:
    return nominal * (1 - CADENCE_TOLERANCE) - FRAME_MS


def _high(nominal: int) -> float:
    return nominal * (1 + CADENCE_TOLERANCE) + FRAME_MS


def _match(cadence: Sequence[int], segments: Sequence[tuple[bool, int]],
           current_ms: float | None, starts: Iterable[int]) -> bool:
    """Whether ``segments`` (completed, oldest first) followed by the current segment
    (``current_ms`` so far; None: not counted) fit ``cadence`` from one of the ``starts``
    (positions in its cycle). The current segment only has to be long enough so far."""
    cycle = len(cadence)
    for start in starts:
        ok = True
        for i, (sounding, frames) in enumerate(segments):
            pos = (start + i) % cycle
            if sounding != (pos % 2 == 0) or not (
                    _low(cadence[pos]) <= frames * FRAME_MS <= _high(cadence[pos])):
                ok = False
                break
        if not ok:
            continue
        if current_ms is None:
            return True
        pos = (start + len(segments)) % cycle
        if current_ms >= _low(cadence[pos]):
            return True
    return False


class ProgressDetector:
    """Recognises the call-progress tones of tone zone ``zone`` ("us", "uk", "de"...;
    see :func:`~uascall.media.tones.call_progress_tone`) in what it is fed.

    ``expect`` is the kinds to look for ("dialtone", "busy", "congestion", "ringback").
    Raises ArgumentError for an unknown kind.
    """

    def __init__(self, zone: str = "us",
                 expect: Iterable[str] = ("dialtone", "busy", "congestion", "ringback")
                 ) -> None:
        kinds = tuple(dict.fromkeys(expect))
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise ArgumentError(f"call-progress tones {list(kinds)}; expected some of "
                                f"{', '.join(KINDS)}")
        self.zone = zone
        self.expect = kinds
        by_frequencies: dict[tuple[int, ...], list[ProgressTone]] = {}
        for kind in kinds:
            tone = ProgressTone.of_zone(kind, zone)
            by_frequencies.setdefault(tone.frequencies, []).append(tone)
        self._sets = [_FrequencySet(f, tones) for f, tones in by_frequencies.items()]
        self._pending = np.zeros(0)
        self._fed = 0

    def __repr__(self) -> str:
        return f"<ProgressDetector zone {self.zone} for {', '.join(self.expect)}>"

    @property
    def samples_fed(self) -> int:
        return self._fed + len(self._pending)

    def feed(self, samples: Iterable[int] | np.ndarray) -> list[ProgressEvent]:
        """8 kHz signed 16-bit samples, any amount; returns the tones recognised in the
        whole frames they complete, oldest first."""
        if isinstance(samples, np.ndarray):
            data = samples.astype(np.float64, copy=False)
        elif isinstance(samples, array.array) and samples.typecode == "h":
            data = np.frombuffer(samples, dtype=np.int16).astype(np.float64)
        else:
            data = np.asarray(list(samples), dtype=np.float64)
        data = np.concatenate((self._pending, data)) if len(self._pending) else data
        whole = len(data) - len(data) % FRAME
        self._pending = data[whole:]
        if not whole:
            return []
        frames = data[:whole].reshape(-1, FRAME)
        power = np.einsum("ij,ij->i", frames, frames)
        verdicts = [s.sounding(frames, power) for s in self._sets]
        events: list[ProgressEvent] = []
        for i in range(len(frames)):
            self._fed += FRAME
            for tones, verdict in zip(self._sets, verdicts, strict=True):
                events += tones.step(bool(verdict[i]), self._fed)
        return events

    def feed_law(self, data: bytes, law: str) -> list[ProgressEvent]:
        """G.711 bytes in ``law`` ("ulaw" or "alaw")."""
        return self.feed(g711.codec(law).decode(data))

    def reset(self) -> None:
        """Forget what was heard: every kind may be reported again."""
        for tones in self._sets:
            tones.reset()
