"""The resampler (libsoxr): passband level, alias rejection, DC gain, lengths, clipping,
and streamed chunks equal to the whole.

Levels are measured by correlating with the expected tone over a window of whole cycles,
away from the ends (where the filter sees the silence before and after): a tone that kept
its level but moved in frequency or jittered in time would lose level there.
"""

from __future__ import annotations

import array
import math
import random

import numpy as np
import pytest

from tests import audio
from uascall.errors import ArgumentError
from uascall.media.resample import Resampler, resample

RATES = [6000, 11025, 16000, 22050, 44100, 48000]


def tone(freq: float, rate: int, n: int, amp: float = 10000.0) -> array.array:
    return array.array("h", (round(amp * math.sin(2 * math.pi * freq * i / rate))
                             for i in range(n)))


def middle(samples, rate: int) -> array.array:
    """0.4 s of whole 1 kHz cycles from the middle of 0.5 s (0.05 s off each end)."""
    start = rate // 20
    return samples[start:start + rate * 2 // 5]


def db_of_rms(samples, amp: float = 10000.0) -> float:
    return audio.db(audio.rms(samples) / (amp / math.sqrt(2)))


def test_equal_rates_are_the_identity():
    x = tone(1000, 8000, 800)
    y = resample(x, 8000, 8000)
    assert y == x and y is not x and y.typecode == "h"


@pytest.mark.parametrize("rate", RATES)
def test_1khz_keeps_frequency_and_level_to_8k(rate):
    y = resample(tone(1000, rate, rate // 2), rate, 8000)
    assert len(y) == 4000 and y.typecode == "h"
    part = middle(y, 8000)
    assert abs(audio.db(audio.amplitude_at(part, 1000, 8000) / 10000)) < 0.01
    assert abs(db_of_rms(part)) < 0.01  # nothing but the tone


@pytest.mark.parametrize("rate", RATES)
def test_1khz_keeps_frequency_and_level_from_8k(rate):
    y = resample(tone(1000, 8000, 4000), 8000, rate)
    assert len(y) == math.floor(rate / 2 + 0.5)
    part = middle(y, rate)
    assert abs(audio.db(audio.amplitude_at(part, 1000, rate) / 10000)) < 0.01
    assert abs(db_of_rms(part)) < 0.01


@pytest.mark.parametrize("freq", [300, 2000, 3000, 3400, 3600])
def test_passband_is_flat_to_3600hz(freq):
    y = resample(tone(freq, 22050, 11025), 22050, 8000)
    part = middle(y, 8000)
    assert abs(audio.db(audio.amplitude_at(part, freq, 8000) / 10000)) < 0.05


def test_5khz_at_48k_does_not_alias_to_3khz():
    y = resample(tone(5000, 48000, 24000), 48000, 8000)
    part = middle(y, 8000)
    assert audio.db(audio.amplitude_at(part, 3000, 8000) / 10000) < -90
    assert db_of_rms(part) < -80


@pytest.mark.parametrize("rate, freq", [
    (22050, 4000), (22050, 4100), (22050, 4500), (22050, 6000), (22050, 9000),
    (22050, 11000), (44100, 4400), (44100, 7000), (44100, 12000), (11025, 4500),
    (16000, 5000),
])
def test_above_the_8k_nyquist_is_stopped(rate, freq):
    """Nothing above 4 kHz reaches the 8 kHz output, where it would fold back into the
    band (4.1 kHz to 3.9 kHz): less than 16-bit resolution of it is left (-80 dB)."""
    y = resample(tone(freq, rate, rate // 2), rate, 8000)
    assert db_of_rms(middle(y, 8000)) < -80


def test_noise_keeps_its_level_in_band_and_loses_what_lies_above():
    """White noise at espeak-ng's 22,050 Hz: from 300 to 3,400 Hz its power per hertz is
    the same after (within 0.1 dB); above 4 kHz it is dropped, not folded back into the
    band: the output holds only the input's share below 4 kHz (4,000/11,025 of it)."""
    rng = np.random.default_rng(12)
    noise = (rng.standard_normal(22050 * 2) * 3000).clip(-32768, 32767).astype(np.int16)
    y = np.asarray(resample(noise, 22050, 8000), dtype=float)[800:-800]
    x = noise.astype(float)[2205:-2205]

    def density(samples, rate):  # power per hertz from 300 to 3,400 Hz
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
        freqs = np.fft.rfftfreq(len(samples), 1 / rate)
        return float(spectrum[(freqs >= 300) & (freqs < 3400)].mean()) / (len(samples) * rate)

    assert abs(10 * math.log10(density(y, 8000) / density(x, 22050))) < 0.1
    share = np.mean(y ** 2) / np.mean(x ** 2)
    assert share == pytest.approx(4000 / 11025, rel=0.05)


@pytest.mark.parametrize("rate_in, rate_out", [
    (48000, 8000), (44100, 8000), (11025, 8000), (6000, 8000), (8000, 48000),
    (8000, 11025), (8000, 44100), (9001, 8000), (22050, 8000),
])
def test_dc_passes_with_unity_gain(rate_in, rate_out):
    y = resample(array.array("h", [12345] * (rate_in // 10)), rate_in, rate_out)
    assert set(y[rate_out // 50:-rate_out // 50]) == {12345}


@pytest.mark.parametrize("rate_in, rate_out", [(48000, 8000), (44100, 8000), (8000, 11025),
                                               (9001, 8000), (22050, 8000)])
def test_output_length_is_the_nearest_whole_sample(rate_in, rate_out):
    for n in [*range(50), 441, 442, 999, 12345]:
        assert len(resample(array.array("h", [100] * n), rate_in, rate_out)) \
            == math.floor(n * rate_out / rate_in + 0.5)


@pytest.mark.parametrize("rate_in, rate_out", [(22050, 8000), (44100, 8000), (16000, 8000),
                                               (8000, 11025), (9001, 8000), (8000, 8000)])
def test_chunks_give_exactly_the_whole(rate_in, rate_out):
    """Speech arrives from espeak-ng in pieces of any size: resampled as they come, the
    pieces join into exactly what resampling the whole gives."""
    rng = random.Random(rate_in + rate_out)
    x = array.array("h", (rng.randint(-20000, 20000) for _ in range(rate_in)))
    whole = resample(x, rate_in, rate_out)
    resampler = Resampler(rate_in, rate_out)
    out = array.array("h")
    i = 0
    while i < len(x):
        size = rng.choice([0, 1, 2, 7, 160, 441, 4096, 10000])
        out.extend(resampler.process(x[i:i + size]))
        i += size
    out.extend(resampler.process(array.array("h"), last=True))
    assert out == whole
    with pytest.raises(ArgumentError, match="after the last chunk"):
        resampler.process(x)


def test_inputs_of_every_kind():
    x = tone(1000, 16000, 1600)
    expected = resample(x, 16000, 8000)
    assert resample(list(x), 16000, 8000) == expected
    assert resample(np.frombuffer(x, dtype=np.int16), 16000, 8000) == expected
    assert resample(array.array("h"), 16000, 8000) == array.array("h")


def test_output_is_clipped_to_16_bits():
    # A full-scale square wave overshoots (Gibbs) once band-limited.
    square = array.array("h", ([32767] * 24 + [-32768] * 24) * 200)
    y = resample(square, 48000, 8000)
    assert max(y) == 32767 and min(y) == -32768


@pytest.mark.parametrize("rate_in, rate_out", [(0, 8000), (8000, -1), (8000.0, 8000),
                                               (True, 8000), ("8000", 8000)])
def test_bad_rates(rate_in, rate_out):
    with pytest.raises(ArgumentError, match=r"rate_(in|out)=.*expected a positive int"):
        resample([0], rate_in, rate_out)
    with pytest.raises(ArgumentError, match=r"rate_(in|out)=.*expected a positive int"):
        Resampler(rate_in, rate_out)
