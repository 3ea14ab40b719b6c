"""The polyphase resampler: passband level, alias rejection, DC gain, lengths, clipping.

Levels are measured by correlating with the expected tone over a window of whole cycles,
away from the ends (where the filter sees the zero padding): a tone that kept its level but
moved in frequency or jittered in time would lose level there.
"""

from __future__ import annotations

import array
import math

import pytest

from tests import audio
from uascall.errors import ArgumentError
from uascall.media import resample as resample_module
from uascall.media.resample import output_length, resample

RATES = [6000, 11025, 16000, 22050, 44100, 48000]


def tone(freq: float, rate: int, n: int, amp: float = 10000.0) -> array.array:
    return array.array("h", (round(amp * math.sin(2 * math.pi * freq * i / rate))
                             for i in range(n)))


def middle(samples, rate: int) -> array.array:
    """0.4 s of whole 1 kHz cycles from the middle of 0.5 s (0.05 s off each end)."""
    start = rate // 20
    return samples[start:start + rate * 2 // 5]


def test_equal_rates_are_the_identity():
    x = tone(1000, 8000, 800)
    y = resample(x, 8000, 8000)
    assert y == x and y is not x and y.typecode == "h"


@pytest.mark.parametrize("rate", RATES)
def test_1khz_keeps_frequency_and_level_to_8k(rate):
    y = resample(tone(1000, rate, rate // 2), rate, 8000)
    assert len(y) == 4000
    part = middle(y, 8000)
    assert abs(audio.db(audio.amplitude_at(part, 1000, 8000) / 10000)) < 0.1
    assert abs(audio.db(audio.rms(part) / (10000 / math.sqrt(2)))) < 0.1  # nothing but the tone


@pytest.mark.parametrize("rate", RATES)
def test_1khz_keeps_frequency_and_level_from_8k(rate):
    y = resample(tone(1000, 8000, 4000), 8000, rate)
    assert len(y) == -(-rate // 2)
    part = middle(y, rate)
    assert abs(audio.db(audio.amplitude_at(part, 1000, rate) / 10000)) < 0.1
    assert abs(audio.db(audio.rms(part) / (10000 / math.sqrt(2)))) < 0.1


@pytest.mark.parametrize("freq", [300, 2000, 3000])
def test_passband_is_flat_to_3khz(freq):
    y = resample(tone(freq, 44100, 22050), 44100, 8000)
    part = middle(y, 8000)
    assert abs(audio.db(audio.amplitude_at(part, freq, 8000) / 10000)) < 0.1


def test_5khz_at_48k_does_not_alias_to_3khz():
    y = resample(tone(5000, 48000, 24000), 48000, 8000)
    part = middle(y, 8000)
    assert audio.db(audio.amplitude_at(part, 3000, 8000) / 10000) < -50
    assert audio.db(audio.rms(part) / (10000 / math.sqrt(2))) < -50


@pytest.mark.parametrize("rate, freq", [(44100, 4400), (44100, 7000), (44100, 12000),
                                        (11025, 4500), (16000, 5000), (22050, 9000)])
def test_above_the_8k_nyquist_is_stopped(rate, freq):
    y = resample(tone(freq, rate, rate // 2), rate, 8000)
    assert audio.db(audio.rms(middle(y, 8000)) / (10000 / math.sqrt(2))) < -50


@pytest.mark.parametrize("rate_in, rate_out", [
    (48000, 8000), (44100, 8000), (11025, 8000), (6000, 8000), (8000, 48000),
    (8000, 11025), (8000, 44100), (9001, 8000),
])
def test_dc_passes_with_unity_gain(rate_in, rate_out):
    y = resample(array.array("h", [12345] * (rate_in // 10)), rate_in, rate_out)
    assert set(y[rate_out // 50:-rate_out // 50]) == {12345}


def test_rates_beyond_max_phases_round_to_the_nearest_phase():
    rate = 9001  # gcd with 8000 is 1: L = 8000 > MAX_PHASES
    assert resample_module._plan(rate, 8000).phases == resample_module.MAX_PHASES
    y = resample(tone(1000, rate, rate // 2), rate, 8000)
    assert abs(audio.db(audio.amplitude_at(middle(y, 8000), 1000, 8000) / 10000)) < 0.1


@pytest.mark.parametrize("n, rate_in, rate_out, expected", [
    (0, 48000, 8000, 0), (1, 48000, 8000, 1), (6, 48000, 8000, 1), (7, 48000, 8000, 2),
    (441, 44100, 8000, 80), (442, 44100, 8000, 81), (3, 8000, 48000, 18),
])
def test_output_length(n, rate_in, rate_out, expected):
    assert output_length(n, rate_in, rate_out) == expected
    assert len(resample(array.array("h", [100] * n), rate_in, rate_out)) == expected


def test_output_is_clipped_to_16_bits():
    # A full-scale square wave overshoots (Gibbs) once band-limited.
    square = array.array("h", ([32767] * 24 + [-32768] * 24) * 200)
    y = resample(square, 48000, 8000)
    assert max(y) == 32767 and min(y) == -32768


def test_filters_are_built_once_per_rate_pair():
    assert resample_module._plan(48000, 8000) is resample_module._plan(48000, 8000)


@pytest.mark.parametrize("rate_in, rate_out", [(0, 8000), (8000, -1), (8000.0, 8000),
                                               (True, 8000), ("8000", 8000)])
def test_bad_rates(rate_in, rate_out):
    with pytest.raises(ArgumentError, match=r"rate_(in|out)=.*expected a positive int"):
        resample([0], rate_in, rate_out)
