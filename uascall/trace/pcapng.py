"""pcapng blocks and the packets uascall's traces hold, each with ``parse`` and ``serialize``.

A trace is one pcapng section: a Section Header Block, an Interface Description Block per
interface (link type 177, LINUX_LAPD, for a span's D-channel; 101, RAW IP, for SIP and
RTP and for the B-channels' audio), then an Enhanced Packet Block per packet naming its
interface. Blocks are little-endian here (the byte-order magic says so to any reader) and
32-bit aligned; options end with opt_endofopt. Timestamps are in microseconds (pcapng's
default resolution) since the epoch.

Packets:

- **LAPD**: :func:`lapd_packet` puts the 16-byte LINUX_LAPD pseudo-header before the
  Q.921 frame (without FCS): packet type 0 (received by us) or 4 (sent by us), protocol
  0x0030, and the first address byte 1 when we are the network side. Wireshark uses the
  direction and that flag to read the C/R bit, and decodes SAPI 0 as Q.931.
- **IP/UDP**: :func:`udp_packet` builds an IPv4 or IPv6 header and a UDP header (checksum 0,
  "none", which IPv4 allows; on IPv6 it is computed, as IPv6 requires it).

:func:`read` parses a whole file back into :class:`Packet` objects (every section, every
interface), for tests and for tools that draw a trace.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from uascall.errors import Error

BLOCK_SHB = 0x0A0D0D0A
BLOCK_IDB = 0x00000001
BLOCK_EPB = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D

LINKTYPE_RAW = 101
LINKTYPE_LINUX_LAPD = 177

OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_USERAPPL = 4
IF_NAME = 2
IF_DESCRIPTION = 3
EPB_FLAGS = 2
#: epb_flags bits 0-1: the packet's direction
FLAG_INBOUND = 1
FLAG_OUTBOUND = 2

LAPD_RECEIVED = 0  # the pseudo-header's packet types (Linux's PACKET_HOST, PACKET_OUTGOING)
LAPD_SENT = 4
LAPD_PROTOCOL = 0x0030  # ETH_P_LAPD
LAPD_HEADER = struct.Struct(">HHH8sH")

_BLOCK_HEAD = struct.Struct("<II")
_U32 = struct.Struct("<I")
_SHB_BODY = struct.Struct("<IHHq")
_IDB_BODY = struct.Struct("<HHI")
_EPB_BODY = struct.Struct("<IIIII")
_OPTION = struct.Struct("<HH")
_IPV4 = struct.Struct(">BBHHHBBH4s4s")
_IPV6 = struct.Struct(">IHBB16s16s")
_UDP = struct.Struct(">HHHH")
_UNLIMITED_SECTION = -1


class PcapngError(Error, ValueError):
    """A pcapng file or packet is malformed (says which block or field, and where)."""


def _pad(length: int) -> int:
    return -length % 4


def _options(options: list[tuple[int, bytes]]) -> bytes:
    if not options:
        return b""
    parts = []
    for code, value in options:
        parts.append(_OPTION.pack(code, len(value)))
        parts.append(value + bytes(_pad(len(value))))
    parts.append(_OPTION.pack(OPT_ENDOFOPT, 0))
    return b"".join(parts)


def _parse_options(data: bytes, offset: int, end: int, where: str
                   ) -> list[tuple[int, bytes]]:
    options = []
    while offset + 4 <= end:
        code, length = _OPTION.unpack_from(data, offset)
        offset += 4
        if code == OPT_ENDOFOPT:
            break
        if offset + length > end:
            raise PcapngError(f"{where}: option {code} of {length} bytes runs past the "
                              f"block's end ({end - offset} bytes left)")
        options.append((code, data[offset:offset + length]))
        offset += length + _pad(length)
    return options


def _block(kind: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return _BLOCK_HEAD.pack(kind, total) + body + _U32.pack(total)


@dataclass(frozen=True, slots=True)
class SectionHeader:
    """A Section Header Block: the start of a section (of a file, for our traces)."""

    application: str = ""

    def serialize(self) -> bytes:
        options = [(SHB_USERAPPL, self.application.encode())] if self.application else []
        return _block(BLOCK_SHB, _SHB_BODY.pack(BYTE_ORDER_MAGIC, 1, 0, _UNLIMITED_SECTION)
                      + _options(options))

    @classmethod
    def parse(cls, body: bytes, where: str) -> SectionHeader:
        if len(body) < _SHB_BODY.size:
            raise PcapngError(f"{where}: section header body is {len(body)} bytes; "
                              f"expected at least {_SHB_BODY.size}")
        _magic, major, _minor, _length = _SHB_BODY.unpack_from(body)
        if major != 1:
            raise PcapngError(f"{where}: pcapng version {major}; expected 1")
        options = dict(_parse_options(body, _SHB_BODY.size, len(body), where))
        return cls(options.get(SHB_USERAPPL, b"").decode(errors="replace"))


@dataclass(frozen=True, slots=True)
class Interface:
    """An Interface Description Block: a link type, a name and what it carries."""

    linktype: int
    name: str = ""
    description: str = ""
    snaplen: int = 0  # 0: no limit

    def serialize(self) -> bytes:
        options = []
        if self.name:
            options.append((IF_NAME, self.name.encode()))
        if self.description:
            options.append((IF_DESCRIPTION, self.description.encode()))
        return _block(BLOCK_IDB, _IDB_BODY.pack(self.linktype, 0, self.snaplen)
                      + _options(options))

    @classmethod
    def parse(cls, body: bytes, where: str) -> Interface:
        if len(body) < _IDB_BODY.size:
            raise PcapngError(f"{where}: interface block body is {len(body)} bytes; "
                              f"expected at least {_IDB_BODY.size}")
        linktype, _reserved, snaplen = _IDB_BODY.unpack_from(body)
        options = dict(_parse_options(body, _IDB_BODY.size, len(body), where))
        return cls(linktype, options.get(IF_NAME, b"").decode(errors="replace"),
                   options.get(IF_DESCRIPTION, b"").decode(errors="replace"), snaplen)


@dataclass(frozen=True, slots=True)
class EnhancedPacket:
    """An Enhanced Packet Block: one packet on interface ``interface`` (its index in the
    section), ``timestamp`` in microseconds since the epoch, ``flags`` (epb_flags: the
    direction in bits 0-1, 0 for none)."""

    interface: int
    timestamp: int
    data: bytes
    flags: int = 0
    comment: str = ""

    def serialize(self) -> bytes:
        length = len(self.data)
        options = []
        if self.flags:
            options.append((EPB_FLAGS, _U32.pack(self.flags)))
        if self.comment:
            options.append((OPT_COMMENT, self.comment.encode()))
        return _block(BLOCK_EPB, _EPB_BODY.pack(self.interface, self.timestamp >> 32,
                                                self.timestamp & 0xFFFFFFFF, length, length)
                      + self.data + bytes(_pad(length)) + _options(options))

    @classmethod
    def parse(cls, body: bytes, where: str) -> EnhancedPacket:
        if len(body) < _EPB_BODY.size:
            raise PcapngError(f"{where}: packet block body is {len(body)} bytes; expected "
                              f"at least {_EPB_BODY.size}")
        interface, high, low, captured, _original = _EPB_BODY.unpack_from(body)
        start = _EPB_BODY.size
        end = start + captured
        if end > len(body):
            raise PcapngError(f"{where}: packet of {captured} bytes runs past the block's "
                              f"end ({len(body) - start} bytes left)")
        options = dict(_parse_options(body, end + _pad(captured), len(body), where))
        flags = options.get(EPB_FLAGS)
        return cls(interface, high << 32 | low, body[start:end],
                   _U32.unpack(flags)[0] if flags and len(flags) == 4 else 0,
                   options.get(OPT_COMMENT, b"").decode(errors="replace"))


@dataclass(frozen=True, slots=True)
class Packet:
    """A packet read back from a trace, with its interface."""

    interface: Interface
    timestamp: float  # seconds since the epoch
    data: bytes
    flags: int = 0
    comment: str = ""

    @property
    def sent(self) -> bool | None:
        """Whether we sent it (the LAPD pseudo-header, else epb_flags); None: not said."""
        if self.interface.linktype == LINKTYPE_LINUX_LAPD:
            return parse_lapd(self.data)[0]
        return {FLAG_INBOUND: False, FLAG_OUTBOUND: True}.get(self.flags & 3)


@dataclass
class Trace:
    """A whole file: its sections' application names, interfaces and packets."""

    applications: list[str] = field(default_factory=list)
    packets: list[Packet] = field(default_factory=list)


def blocks(data: bytes) -> Iterator[tuple[int, bytes, int]]:
    """(block type, body, offset) of each block of a little-endian pcapng file."""
    offset = 0
    size = len(data)
    while offset < size:
        if offset + 12 > size:
            raise PcapngError(f"block at byte {offset}: {size - offset} bytes left; "
                              "expected at least 12 (a truncated file?)")
        kind, total = _BLOCK_HEAD.unpack_from(data, offset)
        if kind == BLOCK_SHB and _U32.unpack_from(data, offset + 8)[0] != BYTE_ORDER_MAGIC:
            raise PcapngError(f"section at byte {offset} is big-endian or damaged; "
                              "expected the little-endian byte-order magic")
        if total < 12 or total % 4 or offset + total > size:
            raise PcapngError(f"block at byte {offset}: length {total} does not fit a "
                              f"file of {size} bytes (expected a multiple of 4, at least 12)")
        if _U32.unpack_from(data, offset + total - 4)[0] != total:
            raise PcapngError(f"block at byte {offset}: its trailing length differs from "
                              f"its leading one ({total})")
        yield kind, data[offset + 8:offset + total - 4], offset
        offset += total


def parse(data: bytes) -> Trace:
    """Every section, interface and packet of a pcapng file's bytes."""
    trace = Trace()
    interfaces: list[Interface] = []
    for kind, body, offset in blocks(data):
        where = f"block at byte {offset}"
        if kind == BLOCK_SHB:
            trace.applications.append(SectionHeader.parse(body, where).application)
            interfaces = []  # interface numbers start again in each section
        elif kind == BLOCK_IDB:
            interfaces.append(Interface.parse(body, where))
        elif kind == BLOCK_EPB:
            block = EnhancedPacket.parse(body, where)
            if block.interface >= len(interfaces):
                raise PcapngError(f"{where}: packet on interface {block.interface}; only "
                                  f"{len(interfaces)} described before it")
            trace.packets.append(Packet(interfaces[block.interface], block.timestamp / 1e6,
                                        block.data, block.flags, block.comment))
    return trace


def read(path: str) -> Trace:
    """:func:`parse` of the file at ``path``."""
    with open(path, "rb") as file:
        return parse(file.read())


# --------------------------------------------------------------------------- packets
def lapd_packet(frame: bytes, *, sent: bool, network: bool) -> bytes:
    """A LINUX_LAPD packet: the pseudo-header and ``frame`` (Q.921, without FCS)."""
    address = b"\x01" + bytes(7) if network else bytes(8)
    return LAPD_HEADER.pack(LAPD_SENT if sent else LAPD_RECEIVED, 0, 0, address,
                            LAPD_PROTOCOL) + frame


def parse_lapd(data: bytes) -> tuple[bool, bool, bytes]:
    """(sent, network, frame) of a LINUX_LAPD packet."""
    if len(data) < LAPD_HEADER.size:
        raise PcapngError(f"LAPD packet is {len(data)} bytes; expected at least "
                          f"{LAPD_HEADER.size} for its pseudo-header")
    kind, _hatype, _halen, address, protocol = LAPD_HEADER.unpack_from(data)
    if protocol != LAPD_PROTOCOL:
        raise PcapngError(f"LAPD packet has protocol {protocol:#06x}; expected "
                          f"{LAPD_PROTOCOL:#06x}")
    return kind == LAPD_SENT, address[0] != 0, data[LAPD_HEADER.size:]


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_packet(payload: bytes, source: tuple[str, int], destination: tuple[str, int]
               ) -> bytes:
    """An IPv4 or IPv6 packet (as ``source``'s host is) carrying ``payload`` in UDP."""
    src = ipaddress.ip_address(source[0].partition("%")[0])
    dst = ipaddress.ip_address(destination[0].partition("%")[0])
    if src.version != dst.version:  # a v4-mapped peer on a v6 socket: say it in v6
        src, dst = (ipaddress.IPv6Address(f"::ffff:{a}") if a.version == 4 else a
                    for a in (src, dst))
    length = _UDP.size + len(payload)
    if src.version == 4:
        total = min(_IPV4.size + length, 0xFFFF)
        header = _IPV4.pack(0x45, 0, total, 0, 0x4000, 64, 17, 0, src.packed, dst.packed)
        header = header[:10] + struct.pack(">H", _checksum(header)) + header[12:]
        return header + _UDP.pack(source[1], destination[1], min(length, 0xFFFF), 0) + payload
    header = _IPV6.pack(6 << 28, length, 17, 64, src.packed, dst.packed)
    pseudo = src.packed + dst.packed + struct.pack(">IxxxB", length, 17)
    udp = _UDP.pack(source[1], destination[1], length, 0)
    checksum = _checksum(pseudo + udp + payload) or 0xFFFF
    return header + _UDP.pack(source[1], destination[1], length, checksum) + payload


def parse_udp(data: bytes) -> tuple[tuple[str, int], tuple[str, int], bytes]:
    """(source, destination, payload) of an IPv4 or IPv6 packet carrying UDP."""
    if not data:
        raise PcapngError("IP packet is empty")
    version = data[0] >> 4
    if version == 4:
        if len(data) < _IPV4.size:
            raise PcapngError(f"IPv4 packet is {len(data)} bytes; expected at least 20")
        header_length = (data[0] & 0x0F) * 4
        protocol = data[9]
        src, dst = (str(ipaddress.IPv4Address(data[12:16])),
                    str(ipaddress.IPv4Address(data[16:20])))
    elif version == 6:
        if len(data) < _IPV6.size:
            raise PcapngError(f"IPv6 packet is {len(data)} bytes; expected at least 40")
        header_length, protocol = _IPV6.size, data[6]
        src, dst = (str(ipaddress.IPv6Address(data[8:24])),
                    str(ipaddress.IPv6Address(data[24:40])))
    else:
        raise PcapngError(f"IP version {version}; expected 4 or 6")
    if protocol != 17 or len(data) < header_length + _UDP.size:
        raise PcapngError(f"IP packet carries protocol {protocol} in {len(data)} bytes; "
                          "expected UDP (17)")
    sport, dport, _length, _sum = _UDP.unpack_from(data, header_length)
    return (src, sport), (dst, dport), data[header_length + _UDP.size:]
