"""Sample-rate conversion with libsoxr (the ``soxr`` package), whole buffers or streamed.

Every path that changes a rate goes through here: WAV files at other rates than 8 kHz,
espeak-ng's 22,050 Hz speech. libsoxr at its very-high quality setting is linear phase
with its delay compensated (output sample ``n`` is the input at time ``n / rate_out``),
flat (within 0.01 dB) to about 0.92 of the lower Nyquist frequency (3.7 kHz for 8 kHz
telephony), half power at 0.95, and stops whatever lies above that Nyquist frequency
below 16-bit resolution, so nothing aliases into the telephone band (measured in
``tests/sim/test_resample.py``).

Samples are converted as 32-bit floats and rounded (not dithered) to 16 bits at the end,
with clipping: a constant passes unchanged, and a :class:`Resampler` fed in chunks of
any size gives exactly the samples one call on the whole buffer gives (``resample`` is
that one call). Resampling 20 s of speech from 22,050 Hz takes a few milliseconds
(``bench/tts.py``; the pure-Python polyphase filter this replaced took half a second).
"""

from __future__ import annotations

import array
from collections.abc import Sequence

import numpy as np
import soxr

from uascall.errors import ArgumentError

#: libsoxr's quality recipe: "VHQ", its highest (28-bit precision)
QUALITY = "VHQ"

_EMPTY = np.zeros(0, dtype=np.float32)


def _check_rate(label: str, rate: object) -> int:
    if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
        raise ArgumentError(f"{label}={rate!r}; expected a positive int sample rate")
    return rate


def _as_float(samples: Sequence[int] | np.ndarray) -> np.ndarray:
    if isinstance(samples, array.array) and samples.typecode == "h":
        data = np.frombuffer(samples, dtype=np.int16) if len(samples) else _EMPTY
    else:
        data = np.asarray(samples)
    return data.astype(np.float32)


def _to_s16(values: np.ndarray) -> array.array:
    out = array.array("h")
    if len(values):
        out.frombytes(np.clip(np.rint(values), -32768, 32767).astype(np.int16).tobytes())
    return out


class Resampler:
    """Converts one stream of signed 16-bit samples from ``rate_in`` to ``rate_out`` Hz,
    chunk by chunk as the audio arrives.

    :meth:`process` returns what is ready of the output so far; the last call passes
    ``last=True`` to flush what the filter holds back. The chunks together are exactly
    :func:`resample` of the whole. Not thread-safe: one stream, one thread at a time.

    Raises :class:`~uascall.errors.ArgumentError` if a rate is not a positive int.
    """

    def __init__(self, rate_in: int, rate_out: int) -> None:
        self.rate_in = _check_rate("rate_in", rate_in)
        self.rate_out = _check_rate("rate_out", rate_out)
        self._stream = None if rate_in == rate_out else soxr.ResampleStream(
            rate_in, rate_out, 1, dtype="float32", quality=QUALITY)
        self._ended = False

    def process(self, samples: Sequence[int] | np.ndarray, *, last: bool = False
                ) -> array.array:
        """Feed ``samples`` (an ``array('h')``, a numpy array or ints); a new
        ``array('h')`` of the output they complete. Raises ArgumentError after the
        ``last`` chunk."""
        if self._ended:
            raise ArgumentError("Resampler.process() after the last chunk; expected a new "
                                "Resampler for a new stream")
        self._ended = last
        if self._stream is None:
            return array.array("h", samples)
        return _to_s16(self._stream.resample_chunk(_as_float(samples), last=last))


def resample(samples: Sequence[int] | np.ndarray, rate_in: int, rate_out: int) -> array.array:
    """Convert signed 16-bit ``samples`` from ``rate_in`` to ``rate_out`` Hz.

    Returns a new ``array('h')`` of about ``len(samples) * rate_out / rate_in`` samples
    (rounded to the nearest), rounded and clipped to 16 bits; equal rates return a copy.
    Thread-safe (each call has its own filter state).

    Raises :class:`~uascall.errors.ArgumentError` if a rate is not a positive int.
    """
    return Resampler(rate_in, rate_out).process(samples, last=True)
