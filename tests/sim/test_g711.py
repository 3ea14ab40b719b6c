"""G.711 is bit-exact with CPython's audioop (the Sun/CCITT reference coder) over all inputs."""

from __future__ import annotations

import struct
import warnings

import pytest

from uascall.media import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # deprecated since 3.11 but still the reference coder in C


ALL_SAMPLES = struct.pack("<65536h", *range(-32768, 32768))


@pytest.mark.parametrize("codec, lin2law, law2lin", [
    (g711.ULAW, audioop.lin2ulaw, audioop.ulaw2lin),
    (g711.ALAW, audioop.lin2alaw, audioop.alaw2lin),
])
def test_bit_exact_with_reference_over_every_input(codec, lin2law, law2lin):
    assert codec.encode_s16le(ALL_SAMPLES) == lin2law(ALL_SAMPLES, 2)
    every_code = bytes(range(256))
    assert codec.decode_s16le(every_code) == law2lin(every_code, 2)


def test_known_code_points():
    # ITU-T G.711 table values: silence, and the extremes of each law.
    assert g711.ULAW.decode_sample(0xFF) == 0
    assert g711.ULAW.decode_sample(0x00) == -32124
    assert g711.ULAW.decode_sample(0x80) == 32124
    assert g711.ULAW.encode_sample(0) == g711.ULAW_SILENCE
    assert g711.ALAW.decode_sample(0xD5) == 8
    assert g711.ALAW.decode_sample(0x55) == -8
    assert g711.ALAW.decode_sample(0xAA) == 32256
    assert g711.ALAW.encode_sample(0) == g711.ALAW_SILENCE


def test_decode_encode_is_identity_on_codes():
    for codec in (g711.ULAW, g711.ALAW):
        for code in range(256):
            if codec is g711.ULAW and code == 0x7F:
                continue  # mu-law has two zeros (0x7F and 0xFF); both decode to 0
            assert codec.encode_sample(codec.decode_sample(code)) == code


def test_codec_by_name():
    assert g711.codec("PCMA") is g711.ALAW
    assert g711.codec("g711u") is g711.ULAW
    with pytest.raises(ValueError, match="expected 'ulaw' or 'alaw'"):
        g711.codec("g729")


def test_the_kernels_linear_mode_is_not_quite_g711():
    """What uascall.sim.linear pins down (the vm rig checks it against the real driver)."""
    import struct

    from uascall.sim.linear import kernel_law

    alaw, ulaw = kernel_law("alaw"), kernel_law("ulaw")

    def one(law, sample: int) -> int:
        return law.encode_s16le(struct.pack("<h", sample))[0]

    def back(law, code: int) -> int:
        return struct.unpack("<h", law.decode_s16le(bytes([code])))[0]

    assert back(alaw, 0xFF) == 832 and g711.ALAW.decode([0xFF])[0] == 848  # step bottoms
    assert one(alaw, -1150) == one(alaw, -1152)  # two low bits dropped
    differ = [x for x in range(-32768, 32768, 4) if one(alaw, x) != g711.ALAW.encode([x])[0]]
    assert differ and all(x < 0 for x in differ)  # negatives taken as -x, not -x - 1
    assert one(ulaw, 0) == 0x7F and g711.ULAW.encode([0])[0] == 0xFF  # never 0xFF
    assert one(ulaw, -32768) == 0x7F  # the overflow that silences the loudest sample
    assert [back(ulaw, c) for c in range(256)] == list(g711.ULAW.decode(bytes(range(256))))
