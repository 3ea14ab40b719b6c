"""HDLC as DAHDI runs it on D-channels: the frame check sequence (CRC-16/X.25), and how
long a frame holds the line.

A DAHDI HDLCFCS channel takes ``frame + 2 spare bytes`` on write and overwrites the spare
bytes with the FCS; the reader gets ``frame + FCS``. The FCS is the ones' complement of a
reflected CRC-16 (polynomial x^16 + x^12 + x^5 + 1, preset to all ones), sent low byte
first, so that running the CRC over frame and FCS together leaves the constant 0xF0B8.

On the line each frame is its octets and FCS, least significant bit first, with a 0 bit
stuffed after every five 1 bits in a row (so that no flag appears inside), and a flag
(01111110) between frames: :func:`line_bits` counts them.
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


FLAG_BITS = 8


def _stuffing_table() -> tuple[tuple[tuple[int, int], ...], ...]:
    """``table[ones][octet]``: (zeros stuffed into ``octet``, 1 bits in a row after it),
    for an octet sent after ``ones`` (0-4) 1 bits in a row."""
    table = []
    for ones_before in range(5):
        row = []
        for octet in range(256):
            ones, stuffed = ones_before, 0
            for bit in range(8):  # least significant bit first
                if octet >> bit & 1:
                    ones += 1
                    if ones == 5:
                        stuffed += 1
                        ones = 0
                else:
                    ones = 0
            row.append((stuffed, ones))
        table.append(tuple(row))
    return tuple(table)


_STUFFING = _stuffing_table()


def line_bits(frame_with_fcs: bytes) -> int:
    """Bits the frame holds the line for: its octets (FCS included), the zeros stuffed
    into them, and one flag (flags between back-to-back frames are shared)."""
    ones, stuffed = 0, 0
    for octet in frame_with_fcs:
        extra, ones = _STUFFING[ones][octet]
        stuffed += extra
    return FLAG_BITS + 8 * len(frame_with_fcs) + stuffed
