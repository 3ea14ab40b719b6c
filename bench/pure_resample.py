"""The pure-Python polyphase resampler uascall used before libsoxr (issue 12, 9), kept only
so that ``bench/tts.py`` can time it beside :mod:`uascall.media.resample`. Not used by
the library. Its own description follows.

A rational polyphase windowed-sinc filter, in pure Python.

How it works: converting ``rate_in`` to ``rate_out`` is up-sampling by ``L`` and
down-sampling by ``M`` where ``L/M`` is ``rate_out/rate_in`` in lowest terms. Output sample
``n`` sits at input time ``n*M/L``: ``n*M // L`` input samples plus a fraction ``p/L``. Its
value is the input convolved with a low-pass windowed sinc centred on that instant, so there
are only ``L`` distinct sets of taps (the *phases*), computed once per rate pair and cached.
Each output sample is then one dot product, ``sum(map(mul, taps, window))``, the fastest
inner loop CPython offers without numpy.

The filter: cut-off at 0.9 of the lower of the two Nyquist frequencies (3.6 kHz for 8 kHz
telephony), flat to 0.8 and stopping (about 70 dB down) from 1.0 of that Nyquist, so no
alias lands anywhere in the output band; a Kaiser window gives the length those numbers
need. Every phase is scaled to sum exactly to one: DC passes with unity gain and no ripple
between phases. The filter is centred on each output instant, so output is not delayed.

Rate pairs whose ``L`` exceeds :data:`MAX_PHASES` (odd rates with a tiny common divisor)
use the nearest of ``MAX_PHASES`` phases: a timing error below 1/2048 of a sample.
"""

from __future__ import annotations

import array
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from operator import mul

from uascall.errors import ArgumentError

#: filter cut-off (half amplitude) as a fraction of the lower Nyquist frequency
CUTOFF = 0.9
#: full width of the transition band as a fraction of the lower Nyquist frequency
TRANSITION = 0.2
#: stop-band attenuation the Kaiser window is designed for
ATTENUATION_DB = 70.0
#: most filter phases kept per rate pair; beyond it positions are rounded to a phase
MAX_PHASES = 1024


@dataclass(frozen=True, slots=True)
class _Plan:
    up: int  # L
    down: int  # M
    phases: int  # number of tap sets: L, or MAX_PHASES when L is larger
    reach: int  # taps on either side of the output instant (R); each set has 2R+1
    taps: tuple[tuple[float, ...], ...]


def _bessel_i0(x: float) -> float:
    """The modified Bessel function of the first kind, order 0, by its power series."""
    term = total = 1.0
    k = 0
    half = x / 2.0
    while term > total * 1e-17:
        k += 1
        term *= (half / k) ** 2
        total += term
    return total


@functools.lru_cache(maxsize=32)
def _plan(rate_in: int, rate_out: int) -> _Plan:
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    nyquist = min(rate_in, rate_out) / 2.0
    nu = CUTOFF * nyquist / rate_in  # cut-off in cycles per input sample
    width = TRANSITION * nyquist / rate_in
    # Kaiser's formulas: beta for the attenuation, the length (in input samples) for the
    # attenuation and transition width.
    beta = 0.1102 * (ATTENUATION_DB - 8.7)
    half = (ATTENUATION_DB - 7.95) / (2.285 * 2.0 * math.pi * width) / 2.0
    reach = math.ceil(half)
    i0_beta = _bessel_i0(beta)
    phases = min(up, MAX_PHASES)

    def row(frac: float) -> list[float]:
        """Weights of input samples base-R .. base+R for an output at base+frac."""
        weights = []
        for m in range(-reach, reach + 1):
            tau = frac - m
            x = tau / half
            if abs(x) >= 1.0:
                weights.append(0.0)
                continue
            arg = 2.0 * nu * tau
            sinc = 1.0 if arg == 0.0 else math.sin(math.pi * arg) / (math.pi * arg)
            weights.append(sinc * _bessel_i0(beta * math.sqrt(1.0 - x * x)) / i0_beta)
        return weights

    rows = [row(p / phases) for p in range(phases // 2 + 1)]
    # Phase P-p is phase p mirrored (the filter is symmetric): its weight for sample m is
    # phase p's for sample 1-m, and its first weight is zero, as is phase p's first.
    rows += [[0.0, *rows[phases - p][:0:-1]] for p in range(len(rows), phases)]
    tables = []
    for weights in rows:
        total = math.fsum(weights)
        tables.append(tuple(w / total for w in weights))
    return _Plan(up, down, phases, reach, tuple(tables))


def output_length(length: int, rate_in: int, rate_out: int) -> int:
    """How many samples :func:`resample` returns for ``length`` input samples."""
    return -(-length * rate_out // rate_in)


def resample(samples: Sequence[int], rate_in: int, rate_out: int) -> array.array:
    """Convert signed 16-bit ``samples`` from ``rate_in`` to ``rate_out`` Hz.

    Returns a new ``array('h')`` of :func:`output_length` samples, rounded and clipped to
    16 bits; equal rates return a copy. The first use of a rate pair builds its filter
    (milliseconds); later uses reuse it. Thread-safe.

    Raises :class:`~uascall.errors.ArgumentError` if a rate is not a positive int.
    """
    for label, rate in (("rate_in", rate_in), ("rate_out", rate_out)):
        if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
            raise ArgumentError(f"{label}={rate!r}; expected a positive int sample rate")
    if rate_in == rate_out:
        return array.array("h", samples)
    plan = _plan(rate_in, rate_out)
    n_out = output_length(len(samples), rate_in, rate_out)
    reach, up, phases = plan.reach, plan.up, plan.phases
    span = 2 * reach + 1
    pad = [0.0] * reach
    # floats: float*float is the cheapest multiply; one spare sample at the end for a
    # position rounded up past the last input sample
    x = pad + list(map(float, samples)) + pad + [0.0]
    taps = plan.taps
    out: list[float] = []
    append = out.append
    step_base, step_rem = divmod(plan.down, up)
    base = rem = 0
    if up == 1:  # plain decimation: one set of taps, a fixed stride
        only = taps[0]
        for start in range(0, step_base * n_out, step_base):
            append(sum(map(mul, only, x[start:start + span])))
    elif phases == up:
        for _ in range(n_out):
            append(sum(map(mul, taps[rem], x[base:base + span])))
            base += step_base
            rem += step_rem
            if rem >= up:
                rem -= up
                base += 1
    else:
        for _ in range(n_out):
            phase, start = (2 * rem * phases + up) // (2 * up), base
            if phase == phases:  # rounded up to the next input sample
                phase, start = 0, base + 1
            append(sum(map(mul, taps[phase], x[start:start + span])))
            base += step_base
            rem += step_rem
            if rem >= up:
                rem -= up
                base += 1
    return array.array("h", map(_to_s16, out))


def _to_s16(y: float) -> int:
    if y >= 32767.0:
        return 32767
    if y <= -32768.0:
        return -32768
    return round(y)
