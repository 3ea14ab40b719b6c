"""DLE shielding of voice data (V.253 clause 4.6), both ways, and the sample formats.

In a voice data state every byte is audio except DLE (0x10), which starts a two-byte
code: DLE DLE is one audio byte 0x10; any other second byte is an event (from the modem:
a DTMF digit, ``b`` busy, ``d`` dial tone...) or a command (to the modem: ETX ends the
transmission, CAN clears it, ``!`` ends reception). :class:`DleReader` splits a stream
into audio and codes incrementally, so that a DLE cut from its second byte by a read
boundary is completed by the next read.
"""

from __future__ import annotations

from uascall.media import g711

DLE = 0x10
ETX = 0x03
CAN = 0x18
#: DLE ETX: the end of a voice data stream (either way)
END = bytes((DLE, ETX))

#: the formats a modem's samples may be in, by our name: 8-bit codes per sample
FORMATS = ("ulaw", "alaw", "u8", "s8")


def shield(audio: bytes) -> bytes:
    """Audio bytes as they go inside a voice data stream: each 0x10 doubled."""
    return audio.replace(b"\x10", b"\x10\x10")


class DleReader:
    """Splits a shielded stream into audio and DLE codes (bytes in, events out)."""

    def __init__(self) -> None:
        self._dle_pending = False

    def reset(self) -> None:
        self._dle_pending = False

    def feed(self, data: bytes) -> list[bytes | int]:
        """``data`` as a list of audio runs (bytes) and codes (the int after a DLE), in
        stream order."""
        out: list[bytes | int] = []
        start = 0
        if self._dle_pending and data:
            self._dle_pending = False
            if data[0] == DLE:
                out.append(b"\x10")
            else:
                out.append(data[0])
            start = 1
        while True:
            at = data.find(b"\x10", start)
            if at < 0:
                if start < len(data):
                    out.append(data[start:])
                return out
            if at > start:
                out.append(data[start:at])
            if at + 1 >= len(data):
                self._dle_pending = True  # the code is in the next read
                return out
            code = data[at + 1]
            out.append(b"\x10" if code == DLE else code)
            start = at + 2


def _table(convert) -> bytes:
    return bytes(convert(code) for code in range(256))


def converter(from_format: str, to_format: str) -> bytes | None:
    """A bytes.translate table from one 8-bit sample format to another (None: the same).
    Linear 8-bit formats keep the top 8 bits of the 16-bit sample (what an 8-bit voice
    modem's codec has)."""
    if from_format == to_format:
        return None
    if from_format in ("ulaw", "alaw") and to_format in ("ulaw", "alaw"):
        return g711.transcoder(from_format, to_format)
    if from_format in ("ulaw", "alaw"):
        decode = g711.codec(from_format).decode_sample
        if to_format == "u8":
            return _table(lambda c: max(0, min(255, (decode(c) >> 8) + 128)))
        return _table(lambda c: (decode(c) >> 8) & 0xFF)
    if to_format in ("ulaw", "alaw"):
        encode = g711.codec(to_format).encode_sample
        if from_format == "u8":
            return _table(lambda v: encode((v - 128) << 8))
        return _table(lambda v: encode((v - 256 if v > 127 else v) << 8))
    # u8 <-> s8: the sign bit flipped
    return _table(lambda v: v ^ 0x80)
