"""Linear mode (DAHDI_SETLINEAR) as the DAHDI kernel converts it, which is not quite G.711.

dahdi-base converts with tables it builds at load time (``dahdi_conv_init``), and they
differ from the reference codec (:mod:`uascall.media.g711`, bit-exact with ITU-T G.191)
in three ways, all found by the vm rig comparing the real driver with the simulator:

- linear to law looks the sample up with its two low bits dropped, so -1150 is encoded
  as -1152 would be;
- its A-law encoder takes the magnitude of a negative sample as ``-x`` where G.711 takes
  ``-x - 1``, so some negative samples land one step away;
- its A-law decoder returns the bottom of each quantisation step, where G.711 returns the
  middle (the idle pattern 0xFF reads +832, not +848).

Mu-law decoding is the reference's. A channel's law bytes are untouched: only what a
linear-mode reader or writer sees differs.
"""

from __future__ import annotations

import array
import functools
import sys

from uascall.media import g711

_LITTLE = sys.byteorder == "little"
_ULAW_CLIP = 32635
_ULAW_BIAS = 0x84
_ALAW_SEGMENT_ENDS = (0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF)


def _ulaw_encode(sample: int) -> int:
    if sample == -32768:
        # negating it overflows the kernel's short back to -32768, which then encodes as
        # a negative zero: the loudest negative sample comes out silent
        return 0x7F
    negative = sample < 0
    magnitude = min(-sample if negative else sample, _ULAW_CLIP) + _ULAW_BIAS
    exponent = max(magnitude.bit_length() - 8, 0)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    code = ~((0x80 if negative else 0) | (exponent << 4) | mantissa) & 0xFF
    return 0x7F if code == 0xFF else code  # the kernel never sends 0xFF (+0) for a sample


def _alaw_encode(sample: int) -> int:
    mask, magnitude = (0xD5, sample) if sample >= 0 else (0x55, -sample)
    segment = next((n for n, end in enumerate(_ALAW_SEGMENT_ENDS) if magnitude <= end), 8)
    shift = segment + 3 if segment else 4
    # (-32768 has no segment: its code spills into the sign bit and reads +0, as there)
    return (((segment << 4) | ((magnitude >> shift) & 0x0F)) ^ mask) & 0xFF


def _alaw_decode(code: int) -> int:
    code ^= 0x55
    value = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    if segment:
        value = (value + 0x100) << (segment - 1)
    return value if code & 0x80 else -value


class KernelLaw:
    """One law's linear-mode conversions, table for table as the kernel makes them."""

    def __init__(self, name: str) -> None:
        self.name = name
        encode = _alaw_encode if name == "alaw" else _ulaw_encode
        # indexed by the sample as an unsigned 16-bit value, two low bits dropped
        self._from_linear = bytes(encode(((i << 2) ^ 0x8000) - 0x8000) for i in range(16384))
        if name == "alaw":
            self._to_linear = array.array("h", (_alaw_decode(code) for code in range(256)))
        else:  # the kernel's mu-law table is the reference decoder's
            self._to_linear = g711.ULAW.decode(bytes(range(256)))

    def encode_s16le(self, pcm: bytes) -> bytes:
        samples = array.array("H")
        samples.frombytes(pcm[: len(pcm) & ~1])
        if not _LITTLE:
            samples.byteswap()
        table = self._from_linear
        return bytes([table[s >> 2] for s in samples])

    def decode_s16le(self, data: bytes) -> bytes:
        table = self._to_linear
        samples = array.array("h", [table[code] for code in data])
        if not _LITTLE:
            samples.byteswap()
        return samples.tobytes()

    def __repr__(self) -> str:
        return f"<DAHDI kernel linear mode {self.name}>"


@functools.cache
def kernel_law(name: str) -> KernelLaw:
    """The kernel's conversions for "alaw" or "ulaw" (built once per process)."""
    if name not in ("alaw", "ulaw"):
        raise ValueError(f"law {name!r}; expected 'alaw' or 'ulaw'")
    return KernelLaw(name)
