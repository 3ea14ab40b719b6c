"""The HDLC frame check sequence DAHDI computes on D-channels (CRC-16/X.25).

A DAHDI HDLCFCS channel takes ``frame + 2 spare bytes`` on write and overwrites the spare
bytes with the FCS; the reader gets ``frame + FCS``. The FCS is the ones' complement of a
reflected CRC-16 (polynomial x^16 + x^12 + x^5 + 1, preset to all ones), sent low byte
first, so that running the CRC over frame and FCS together leaves the constant 0xF0B8.
"""

from __future__ import annotations

GOOD_RESIDUE = 0xF0B8


def _table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _table()


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    table = _TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def fcs(frame: bytes) -> bytes:
    """The two FCS bytes for ``frame``, in transmission order."""
    value = crc16(frame) ^ 0xFFFF
    return bytes((value & 0xFF, value >> 8))


def check(frame_with_fcs: bytes) -> bool:
    """True when the last two bytes are the right FCS for the rest."""
    return len(frame_with_fcs) >= 2 and crc16(frame_with_fcs) == GOOD_RESIDUE
