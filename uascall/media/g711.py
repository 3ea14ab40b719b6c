"""G.711 mu-law and A-law, by table, bit-exact with the ITU-T/Sun reference coders.

The encoders follow the reference: the 16-bit sample is cut to 14 bits (mu-law) or 13 bits
(A-law) and companded; A-law bytes are transmitted with the even bits inverted (XOR 0x55),
mu-law bytes all inverted. Each law is computed once into a 65,536-entry encode table and a
256-entry decode table, so converting a frame is a table lookup per sample.
"""

from __future__ import annotations

import array
import sys
from collections.abc import Callable

SAMPLE_RATE = 8000
#: bytes in one 20 ms frame of G.711
FRAME_BYTES = 160
#: the byte a silent line carries (the code for 0)
ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5

_ULAW_BIAS = 0x84  # 132: puts the segment boundaries on powers of two
_ULAW_CLIP_14 = 8159  # the largest 14-bit magnitude the coder represents
# upper bounds of the eight segments, for 14-bit mu-law and 13-bit A-law magnitudes
_ULAW_SEGMENT_ENDS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEGMENT_ENDS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for seg, end in enumerate(ends):
        if value <= end:
            return seg
    return len(ends)


def _ulaw_encode(sample: int) -> int:
    sample >>= 2  # the reference coder works on 14-bit samples
    if sample < 0:
        sample = -sample
        mask = 0x7F
    else:
        mask = 0xFF
    sample = min(sample, _ULAW_CLIP_14) + (_ULAW_BIAS >> 2)
    seg = _segment(sample, _ULAW_SEGMENT_ENDS)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((sample >> (seg + 1)) & 0x0F)) ^ mask


def _ulaw_decode(code: int) -> int:
    code = ~code & 0xFF
    magnitude = ((code & 0x0F) << 3) + _ULAW_BIAS
    magnitude <<= (code & 0x70) >> 4
    return _ULAW_BIAS - magnitude if code & 0x80 else magnitude - _ULAW_BIAS


def _alaw_encode(sample: int) -> int:
    sample >>= 3  # 13-bit samples
    if sample >= 0:
        mask = 0xD5  # sign bit set, even bits inverted
    else:
        mask = 0x55
        sample = -sample - 1
    seg = _segment(sample, _ALAW_SEGMENT_ENDS)
    if seg >= 8:
        return 0x7F ^ mask
    shift = 1 if seg < 2 else seg
    return ((seg << 4) | ((sample >> shift) & 0x0F)) ^ mask


def _alaw_decode(code: int) -> int:
    code ^= 0x55
    magnitude = (code & 0x0F) << 4
    seg = (code & 0x70) >> 4
    if seg == 0:
        magnitude += 8
    elif seg == 1:
        magnitude += 0x108
    else:
        magnitude = (magnitude + 0x108) << (seg - 1)
    return magnitude if code & 0x80 else -magnitude


def _tables(encode: Callable[[int], int],
            decode: Callable[[int], int]) -> tuple[bytes, array.array]:
    # Indexed by the sample's unsigned 16-bit pattern, so a signed array maps straight in.
    enc = bytes(encode(i - 65536 if i >= 32768 else i) for i in range(65536))
    dec = array.array("h", (decode(c) for c in range(256)))
    return enc, dec


_ULAW_ENC, _ULAW_DEC = _tables(_ulaw_encode, _ulaw_decode)
_ALAW_ENC, _ALAW_DEC = _tables(_alaw_encode, _alaw_decode)
_LITTLE = sys.byteorder == "little"


class Codec:
    """One G.711 law: ``encode`` s16 samples to bytes, ``decode`` bytes to s16 samples."""

    def __init__(self, name: str, enc: bytes, dec: array.array, silence: int) -> None:
        self.name = name
        self._enc = enc
        self._dec = dec
        self.silence = silence
        self.silence_frame = bytes([silence]) * FRAME_BYTES

    def encode_sample(self, sample: int) -> int:
        return self._enc[sample & 0xFFFF]

    def decode_sample(self, code: int) -> int:
        return self._dec[code]

    def encode(self, samples: array.array | list[int]) -> bytes:
        """Signed 16-bit samples (an ``array('h')`` or ints) → one byte per sample."""
        enc = self._enc
        return bytes([enc[s & 0xFFFF] for s in samples])

    def decode(self, data: bytes) -> array.array:
        """Bytes → an ``array('h')`` of signed 16-bit samples."""
        dec = self._dec
        return array.array("h", [dec[b] for b in data])

    def encode_s16le(self, pcm: bytes) -> bytes:
        """Little-endian s16 bytes (what DAHDI_SETLINEAR uses) → law bytes."""
        samples = array.array("h")
        samples.frombytes(pcm[: len(pcm) & ~1])
        if not _LITTLE:
            samples.byteswap()
        return self.encode(samples)

    def decode_s16le(self, data: bytes) -> bytes:
        samples = self.decode(data)
        if not _LITTLE:
            samples.byteswap()
        return samples.tobytes()

    def __repr__(self) -> str:
        return f"<G.711 {self.name}>"


ULAW = Codec("ulaw", _ULAW_ENC, _ULAW_DEC, ULAW_SILENCE)
ALAW = Codec("alaw", _ALAW_ENC, _ALAW_DEC, ALAW_SILENCE)


def codec(name: str) -> Codec:
    """``"ulaw"``/``"mulaw"``/``"pcmu"``/``"g711u"`` or ``"alaw"``/``"pcma"``/``"g711a"``."""
    key = name.lower()
    if key in ("ulaw", "mulaw", "pcmu", "g711u", "mu-law", "u-law"):
        return ULAW
    if key in ("alaw", "pcma", "g711a", "a-law"):
        return ALAW
    raise ValueError(f"unknown G.711 law {name!r}; expected 'ulaw' or 'alaw'")


_TRANSCODERS: dict[tuple[str, str], bytes] = {}


def transcoder(from_law: str, to_law: str) -> bytes | None:
    """A 256-byte table for ``bytes.translate`` that turns ``from_law`` codes into
    ``to_law`` codes (each code decoded and encoded again: a code of one law maps to the
    nearest of the other), or None when the laws are the same and nothing is to be done."""
    source, target = codec(from_law), codec(to_law)
    if source is target:
        return None
    key = (source.name, target.name)
    table = _TRANSCODERS.get(key)
    if table is None:
        table = _TRANSCODERS[key] = bytes(target.encode_sample(source.decode_sample(code))
                                          for code in range(256))
    return table
