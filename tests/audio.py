"""Audio analysis for tests: levels, frequencies, cadence and clicks on 8 kHz s16 samples.

Pure Python (no numpy). ``samples`` is any sequence of ints (an ``array('h')``, a list);
use :func:`decode` to turn G.711 bytes into one. Levels are in dBm0, referred to the ITU-T
G.711 digital milliwatt of the law in question (:func:`reference_rms`), independently of
uascall's tone generator. Each function's docstring says how accurate it is.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable, Sequence

from uascall.media import g711

RATE = 8000
#: one period of the G.711 digital milliwatt (0 dBm0 at 1 kHz) per law
DIGITAL_MILLIWATT = {
    "ulaw": bytes.fromhex("1E0B0B1E9E8B8B9E"),
    "alaw": bytes.fromhex("34212134B4A1A1B4"),
}


def decode(data: bytes, law: str) -> list[int]:
    """G.711 bytes of ``law`` ('ulaw'/'alaw' or an alias) → s16 sample values (exact)."""
    return list(g711.codec(law).decode(data))


@functools.cache
def reference_rms(law: str) -> float:
    """RMS of 0 dBm0 in s16 units: the digital milliwatt decoded with ``law`` (exact).

    About 16017 for mu-law and 16139 for A-law (they differ by 0.07 dB).
    """
    name = g711.codec(law).name
    samples = decode(DIGITAL_MILLIWATT[name], name)
    return math.sqrt(sum(s * s for s in samples) / len(samples))


def _db(ratio: float) -> float:
    return 10.0 * math.log10(ratio) if ratio > 0 else -math.inf


def amplitude_at(samples: Sequence[float], freq: float, rate: int = RATE) -> float:
    """Peak amplitude of the component at ``freq``, one rectangular-window DFT bin: exact
    when the window holds whole periods of it (the resampling tests pick such windows)."""
    c = s = 0.0
    w = 2 * math.pi * freq / rate
    for i, v in enumerate(samples):
        c += v * math.cos(w * i)
        s += v * math.sin(w * i)
    return 2 * math.hypot(c, s) / len(samples)


def rms(samples: Sequence[float]) -> float:
    return math.sqrt(sum(v * v for v in samples) / len(samples))


def db(ratio: float) -> float:
    """An amplitude ratio in dB."""
    return 20 * math.log10(ratio) if ratio > 0 else -math.inf


def level_dbm0(samples: Sequence[int], law: str) -> float:
    """RMS level of ``samples`` in dBm0 (-inf for digital silence).

    Exact as an RMS; for a steady tone the window edge adds at most one partial period,
    i.e. < 0.05 dB for windows of 0.1 s or more above 300 Hz.
    """
    if not samples:
        raise ValueError("level_dbm0 needs at least one sample")
    mean_square = sum(s * s for s in samples) / len(samples)
    return _db(mean_square / reference_rms(law) ** 2)


def goertzel_power(samples: Sequence[float], freq: float, rate: int = RATE) -> float:
    """``|X(freq)|²``: squared magnitude of the DFT of ``samples`` at any (non-bin) frequency.

    Unwindowed, so a sinusoid of amplitude A gives ``(A·N/2)²`` exactly when the window
    holds whole periods, and otherwise leaks to and from other components (up to
    ``1/(π·Δbins)`` of their amplitude); :func:`component_amplitude` windows first.
    """
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


@functools.cache
def _hann(n: int) -> tuple[float, ...]:
    return tuple(0.5 - 0.5 * math.cos(2.0 * math.pi * (i + 0.5) / n) for i in range(n))


def _windowed(samples: Sequence[float]) -> list[float]:
    return [w * x for w, x in zip(_hann(len(samples)), samples, strict=True)]


def component_amplitude(samples: Sequence[int], freq: float, rate: int = RATE) -> float:
    """Peak amplitude (s16 units) of the sinusoidal component at ``freq``.

    Hann-windowed Goertzel divided by the window's coherent gain. For a window of N samples
    the result is within 0.3 % (0.03 dB) when every other component is at least 8·rate/N
    away (40 Hz for 0.2 s) and ``freq`` is within 0.1·rate/N of the true frequency.
    """
    n = len(samples)
    if n < 16:
        raise ValueError("component_amplitude needs at least 16 samples")
    window = _hann(n)
    power = goertzel_power(_windowed(samples), freq, rate)
    return 2.0 * math.sqrt(max(power, 0.0)) / sum(window)


def component_level_dbm0(samples: Sequence[int], freq: float, law: str,
                         rate: int = RATE) -> float:
    """Level in dBm0 of the one component at ``freq`` (see :func:`component_amplitude`).

    Works on sums of tones, e.g. each half of 440 + 480 Hz; accuracy as there (~0.03 dB)
    plus the G.711 quantisation noise falling in the bin (negligible above -50 dBm0).
    """
    amplitude = component_amplitude(samples, freq, rate)
    return _db((amplitude / math.sqrt(2.0) / reference_rms(law)) ** 2)


def _argmax_scan(xw: Sequence[float], lo: float, hi: float, step: float,
                 rate: int) -> tuple[float, list[tuple[float, float]]]:
    points = []
    f = lo
    while f <= hi + 1e-9:
        points.append((f, goertzel_power(xw, f, rate)))
        f += step
    best = max(range(len(points)), key=lambda i: points[i][1])
    return points[best][0], points[max(0, best - 1):best + 2]


def dominant_frequency(samples: Sequence[int], lo: float = 50.0, hi: float = 3950.0,
                       rate: int = RATE) -> float:
    """Frequency (Hz) of the strongest sinusoid between ``lo`` and ``hi``.

    A coarse Hann-windowed Goertzel scan of the first 512 samples finds the region; a scan
    of the whole window at half-bin steps (rate/2N) around it finds the peak, and a parabola
    through the log power of the three best points refines it. For 0.4 s or more of a
    tone above -50 dBm0 the error is below 0.05 % (the requirement is 0.2 %); with 0.1 s,
    below 0.2 %. Components closer than ~4·rate/N to the peak bias it.
    """
    n = len(samples)
    if n < 64:
        raise ValueError("dominant_frequency needs at least 64 samples")
    if not 0 < lo < hi < rate / 2:
        raise ValueError(f"need 0 < lo < hi < {rate / 2}; got lo={lo}, hi={hi}")
    m = min(n, 512)
    coarse, _ = _argmax_scan(_windowed(samples[:m]), lo, hi, rate / m / 2, rate)
    span = 2.0 * rate / m  # half the Hann main lobe of the coarse window
    xw = _windowed(samples)
    step = rate / n / 2
    flo, fhi = max(lo, coarse - span), min(hi, coarse + span)
    best, around = _argmax_scan(xw, flo, fhi, step, rate)
    if len(around) == 3 and around[1][0] == best:
        (_, p0), (_, p1), (_, p2) = ((f, math.log(max(p, 1e-30))) for f, p in around)
        denom = p0 - 2.0 * p1 + p2
        if denom < 0:
            best += step * 0.5 * (p0 - p2) / denom
    return best


def on_off_segments(samples: Sequence[int], threshold_dbm0: float = -40.0,
                    frame: int = 160, law: str = "ulaw",
                    rate: int = RATE) -> list[tuple[bool, float]]:
    """Runs of tone and silence as ``[(on, seconds), ...]``, judged frame by frame.

    A frame (default 20 ms) is "on" when its level is at or above ``threshold_dbm0``.
    Run lengths are multiples of the frame (a trailing part frame counts for its length),
    so each edge is placed within one frame of where it is.
    """
    runs: list[tuple[bool, float]] = []
    ref2 = reference_rms(law) ** 2
    threshold = ref2 * 10.0 ** (threshold_dbm0 / 10.0)
    for start in range(0, len(samples), frame):
        chunk = samples[start:start + frame]
        on = sum(s * s for s in chunk) / len(chunk) >= threshold
        seconds = len(chunk) / rate
        if runs and runs[-1][0] == on:
            runs[-1] = (on, runs[-1][1] + seconds)
        else:
            runs.append((on, seconds))
    return [(on, round(seconds, 9)) for on, seconds in runs]


def max_step(samples: Sequence[int]) -> int:
    """Largest ``|x[n+1] - x[n]|`` (exact); 0 for fewer than two samples."""
    return max((abs(b - a) for a, b in itertools.pairwise(samples)), default=0)


@functools.cache
def _quantisation_error(law: str, peak: int) -> int:
    """Largest ``|decode(encode(v)) - v|`` over ``|v| <= peak`` for ``law``."""
    codec = g711.codec(law)
    values = range(-peak, peak + 1)
    decoded = codec.decode(codec.encode(values))
    return max(abs(d - v) for d, v in zip(decoded, values, strict=True))


def step_limit(components: Iterable[tuple[float, float]], law: str | None = None,
               ramp_samples: int = 0, rate: int = RATE) -> float:
    """The largest sample-to-sample step a sum of sinusoids can legitimately make.

    ``components`` are ``(frequency Hz, peak amplitude)``. A sinusoid's step is at most
    ``2·A·sin(π·f/rate)`` (≈ 2π·f·A/rate); the bound adds them (exact for the worst phase)
    and one unit for rounding to integers.
    ``law`` adds twice the G.711 quantisation error at the summed peak; ``ramp_samples``
    allows a raised-cosine envelope of that length (``π/(2·ramp)`` of the peak per sample).
    A discontinuity (phase jump, restarted table, hard cut) shows up as steps above this;
    smooth envelopes and continuous phase stay below it. The test is sensitive for
    call-progress tones (a jump larger than about 2π·f/rate of the peak, i.e. ~0.35·A at
    440 Hz, is seen) and blunt above ~1 kHz, where a sinusoid's own steps are large.
    """
    components = list(components)
    peak = sum(a for _, a in components)
    # + 1: two samples each rounded to an integer by up to half a unit
    limit = 1.0 + sum(2.0 * a * math.sin(math.pi * f / rate) for f, a in components)
    if ramp_samples:
        limit += peak * math.pi / (2.0 * ramp_samples)
    if law is not None:
        limit += 2 * _quantisation_error(g711.codec(law).name, min(32767, math.ceil(peak)))
    return limit


def clicks(samples: Sequence[int], components: Iterable[tuple[float, float]],
           law: str | None = None, ramp_samples: int = 0) -> list[int]:
    """Indices ``n`` where the step ``x[n] → x[n+1]`` exceeds :func:`step_limit`.

    An empty list means no click. Exact given the bound; see :func:`step_limit`.
    """
    limit = step_limit(components, law, ramp_samples)
    return [i for i, (a, b) in enumerate(itertools.pairwise(samples))
            if abs(b - a) > limit]


_DTMF_ROWS = (697, 770, 852, 941)
_DTMF_COLUMNS = (1209, 1336, 1477, 1633)
_DTMF_KEYPAD = ("123A", "456B", "789C", "*0#D")


def dtmf_blocks(samples: Sequence[int], law: str = "ulaw", block: int = 160
                ) -> list[str | None]:
    """The DTMF digit each ``block``-sample block holds, or None: a Goertzel filter per
    frequency (the test's own, independent of uascall's detector), the strongest row and
    column each at -30 dBm0 or more and 10 dB above the others of their group, holding
    70 % of the block's power between them."""
    out: list[str | None] = []
    ref = reference_rms(law) ** 2
    for at in range(0, len(samples) - block + 1, block):
        xs = samples[at:at + block]
        power = sum(x * x for x in xs) / block
        # |X|^2 of a sine of amplitude A over N samples is (A N / 2)^2; its power A^2 / 2
        tones = [goertzel_power(xs, f) * 2 / (block * block) for f in _DTMF_ROWS + _DTMF_COLUMNS]
        rows, cols = tones[:4], tones[4:]
        r, c = rows.index(max(rows)), cols.index(max(cols))
        ok = (power > 0 and min(rows[r], cols[c]) >= ref * 10 ** -3.0
              and all(v * 10 <= rows[r] for i, v in enumerate(rows) if i != r)
              and all(v * 10 <= cols[c] for i, v in enumerate(cols) if i != c)
              and rows[r] + cols[c] >= 0.7 * power)
        out.append(_DTMF_KEYPAD[r][c] if ok else None)
    return out


def dtmf_keys(samples: Sequence[int], law: str = "ulaw") -> str:
    """The keys pressed in ``samples``: runs of at least two 20 ms blocks (40 ms) holding
    the same digit (:func:`dtmf_blocks`), separated by blocks holding none."""
    return keys_in_blocks(dtmf_blocks(samples, law))


def keys_in_blocks(blocks: Sequence[str | None]) -> str:
    """The keys in what :func:`dtmf_blocks` found: runs of at least two blocks holding the
    same digit."""
    keys = []
    run_digit, run = None, 0
    for digit in [*blocks, None]:
        if digit is not None and digit == run_digit:
            run += 1
            continue
        if run_digit is not None and run >= 2:
            keys.append(run_digit)
        run_digit, run = digit, 1
    return "".join(keys)


def steady(samples: Sequence[int], freq: float, law: str = "ulaw",
           threshold_dbm0: float = -40.0) -> list[int]:
    """The 20 ms frames of ``samples`` that carry ``freq`` at ``threshold_dbm0`` or more,
    from the first to the last of them, but those two (where the tone starts and stops
    part-way): the steady part of a tone, whatever idle pattern a line sends around it."""
    frames = [samples[at:at + 160] for at in range(0, len(samples) - 159, 160)]
    on = [n for n, frame in enumerate(frames)
          if component_level_dbm0(frame, freq, law) >= threshold_dbm0]
    if len(on) < 3:
        return []
    return [s for frame in frames[on[0] + 1:on[-1]] for s in frame]
