"""Q.931 information elements: the generic container and typed codecs for the ones uascall reads.

:class:`InformationElement` is what :meth:`uascall.dahdi.q931.Message.parse` returns for every
IE, known or not: an identifier octet and the raw contents (the octets after the length
octet), plus the codeset it was found in. The typed classes below decode the contents of the
codeset-0 IEs the product cares about and encode them again, so tests can build frames:

=====================  ======  ============================================================
class                  IE      what it carries (ITU-T Q.931 clause)
=====================  ======  ============================================================
BearerCapability       0x04    transfer capability, mode/rate, layer-1 law (4.5.5)
Cause                  0x08    location and Q.850 cause value, diagnostics (4.5.12)
ChannelIdentification  0x18    PRI/BRI, exclusive, D-channel, B-channel numbers (4.5.13)
ProgressIndicator      0x1e    location and progress description (4.5.23)
Display                0x28    IA5 text; ANSI/NI-2 put a display-type octet first (4.5.16)
CallingPartyNumber     0x6c    type, plan, presentation/screening, digits (4.5.10)
CalledPartyNumber      0x70    type, plan, digits (4.5.8)
RestartIndicator       0x79    restart class (4.5.25)
=====================  ======  ============================================================

``X.parse(contents)`` raises :class:`Q931DecodeError` and nothing else, whatever the bytes;
``x.serialize()`` returns the contents again (spare bits written as 0) and ``x.to_ie()``
wraps them in an :class:`InformationElement`. Offsets in error messages count from the first
contents octet (Q.931's octet 3).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from uascall.errors import ArgumentError, RemoteProtocolError


class Q931DecodeError(RemoteProtocolError):
    """A LAPD frame, Q.931 message or information element could not be decoded.

    ``offset`` is where decoding stopped: in the frame, the message, or the IE contents,
    as the message says. ``cause`` is the Q.850 cause a Q.931 entity would clear with.
    """

    def __init__(self, message: str, *, offset: int | None = None,
                 cause: int | None = None) -> None:
        super().__init__(message, cause=cause)
        self.offset = offset


class IE(enum.IntEnum):
    """Information element identifiers of codeset 0 (Q.931 table 4-3, Q.932)."""

    SHIFT = 0x90            # single octet; low nibble: non-locking bit and new codeset
    CONGESTION_LEVEL = 0xB0  # single octet
    REPEAT_INDICATOR = 0xD0  # single octet
    MORE_DATA = 0xA0        # single octet
    SENDING_COMPLETE = 0xA1  # single octet
    SEGMENTED_MESSAGE = 0x00
    BEARER_CAPABILITY = 0x04
    CAUSE = 0x08
    CALL_IDENTITY = 0x10
    CALL_STATE = 0x14
    CHANNEL_IDENTIFICATION = 0x18
    FACILITY = 0x1C
    PROGRESS_INDICATOR = 0x1E
    NETWORK_SPECIFIC_FACILITIES = 0x20
    NOTIFICATION_INDICATOR = 0x27
    DISPLAY = 0x28
    DATE_TIME = 0x29
    KEYPAD_FACILITY = 0x2C
    SIGNAL = 0x34
    INFORMATION_RATE = 0x40
    CONNECTED_NUMBER = 0x4C
    CONNECTED_SUBADDRESS = 0x4D
    CALLING_PARTY_NUMBER = 0x6C
    CALLING_PARTY_SUBADDRESS = 0x6D
    CALLED_PARTY_NUMBER = 0x70
    CALLED_PARTY_SUBADDRESS = 0x71
    REDIRECTING_NUMBER = 0x74
    REDIRECTION_NUMBER = 0x76
    TRANSIT_NETWORK_SELECTION = 0x78
    RESTART_INDICATOR = 0x79
    LOW_LAYER_COMPATIBILITY = 0x7C
    HIGH_LAYER_COMPATIBILITY = 0x7D
    USER_USER = 0x7E
    ESCAPE = 0x7F


def ie_name(identifier: int, codeset: int = 0) -> str:
    """``"Called party number"`` for 0x70; single-octet IEs by their type; others in hex."""
    if codeset == 0:
        key = identifier if identifier < 0x80 or identifier & 0xF0 == 0xA0 else identifier & 0xF0
        try:
            return IE(key).name.replace("_", " ").capitalize()
        except ValueError:
            pass
    if identifier & 0xF0 == 0x90:
        return "Shift"
    return f"codeset {codeset} IE 0x{identifier:02x}" if codeset else f"IE 0x{identifier:02x}"


@dataclass(frozen=True, slots=True)
class InformationElement:
    """One IE as found on the wire.

    A single-octet IE (identifier >= 0x80: Shift, Sending complete, ...) has empty
    ``contents`` and its value in the identifier octet. ``codeset`` is the codeset in force
    where :meth:`Message.parse` found it (after Shift IEs); serialization writes only
    identifier and contents, so the Shift IEs themselves carry the codeset on the wire.
    """

    identifier: int
    contents: bytes = b""
    codeset: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "identifier", int(self.identifier))  # plain int, also for IE.X
        if not 0 <= self.identifier <= 0xFF:
            raise ArgumentError(f"IE identifier {self.identifier} is not an octet (0..255)")
        if not 0 <= self.codeset <= 7:
            raise ArgumentError(f"IE codeset {self.codeset} out of range 0..7")
        if self.identifier & 0x80 and self.contents:
            raise ArgumentError(f"single-octet IE 0x{self.identifier:02x} cannot have contents")
        if len(self.contents) > 255:
            raise ArgumentError(f"IE 0x{self.identifier:02x} contents are {len(self.contents)}"
                                " octets; at most 255 fit the length octet")

    @property
    def single_octet(self) -> bool:
        return bool(self.identifier & 0x80)

    @property
    def name(self) -> str:
        return ie_name(self.identifier, self.codeset)

    def serialize(self) -> bytes:
        if self.single_octet:
            return bytes([self.identifier])
        return bytes([self.identifier, len(self.contents)]) + self.contents

    def decode(self) -> TypedIE | None:
        """The typed view of this IE, or None if uascall has no codec for it.

        Raises :class:`Q931DecodeError` if the contents are malformed.
        """
        cls = TYPED_IES.get(self.identifier) if self.codeset == 0 else None
        return cls.parse(self.contents) if cls is not None else None


class TypedIE:
    """Base of the typed IE codecs: ``parse(contents)``, ``serialize()``, ``to_ie()``."""

    __slots__ = ()
    IDENTIFIER: ClassVar[int]
    NAME: ClassVar[str]

    @classmethod
    def parse(cls, contents: bytes) -> TypedIE:
        raise NotImplementedError

    def serialize(self) -> bytes:
        raise NotImplementedError

    def to_ie(self) -> InformationElement:
        return InformationElement(self.IDENTIFIER, self.serialize())

    @classmethod
    def _error(cls, what: str, offset: int, *, cause: int = 100) -> Q931DecodeError:
        return Q931DecodeError(f"{cls.NAME} IE {what} at contents offset {offset}",
                               offset=offset, cause=cause)

    @classmethod
    def _octet(cls, contents: bytes, offset: int, what: str) -> int:
        if offset >= len(contents):
            raise cls._error(f"is truncated: {what} missing", offset)
        return contents[offset]


def _check(name: str, value: int | None, top: int) -> None:
    if value is not None and not 0 <= value <= top:
        raise ArgumentError(f"{name} {value} out of range 0..{top}")


def _extended(contents: bytes, offset: int, cls: type[TypedIE], what: str) -> int:
    """Offset after a group of octets that ends with the one whose extension bit is 1."""
    while True:
        if cls._octet(contents, offset, what) & 0x80:
            return offset + 1
        offset += 1


# ------------------------------------------------------------------ Bearer capability
TRANSFER_CAPABILITY_NAMES = {0x00: "speech", 0x08: "unrestricted digital",
                             0x09: "restricted digital", 0x10: "3.1 kHz audio",
                             0x11: "7 kHz audio", 0x18: "video"}
LAYER1_ULAW, LAYER1_ALAW = 0x02, 0x03
LAYER1_NAMES = {0x01: "V.110", LAYER1_ULAW: "mu-law", LAYER1_ALAW: "A-law", 0x04: "G.721",
                0x05: "H.221", 0x07: "non-ITU", 0x08: "V.120", 0x09: "X.31"}


@dataclass(frozen=True, slots=True)
class BearerCapability(TypedIE):
    """Q.931 4.5.5. ``layer1`` is octet 5's protocol (2 G.711 mu-law, 3 A-law) or None.

    ``layer1_extra`` holds octets 5a-5d and ``extra`` octets 6 and 7, raw.
    """

    IDENTIFIER: ClassVar[int] = IE.BEARER_CAPABILITY
    NAME: ClassVar[str] = "Bearer capability"

    transfer_capability: int = 0x00
    layer1: int | None = None
    transfer_mode: int = 0
    transfer_rate: int = 0x10
    coding_standard: int = 0
    rate_multiplier: int | None = None
    layer1_extra: bytes = b""
    extra: bytes = b""

    def __post_init__(self) -> None:
        _check("transfer capability", self.transfer_capability, 0x1F)
        _check("layer-1 protocol", self.layer1, 0x1F)
        _check("transfer mode", self.transfer_mode, 3)
        _check("transfer rate", self.transfer_rate, 0x1F)
        _check("coding standard", self.coding_standard, 3)
        _check("rate multiplier", self.rate_multiplier, 0x7F)
        if self.layer1_extra and self.layer1 is None:
            raise ArgumentError("bearer capability octets 5a-5d need a layer-1 protocol")

    @property
    def law(self) -> str | None:
        return {LAYER1_ULAW: "ulaw", LAYER1_ALAW: "alaw"}.get(self.layer1 or -1)

    @classmethod
    def parse(cls, contents: bytes) -> BearerCapability:
        o3 = cls._octet(contents, 0, "transfer capability (octet 3)")
        o4 = cls._octet(contents, 1, "transfer mode/rate (octet 4)")
        for offset, octet in ((0, o3), (1, o4)):
            if not octet & 0x80:
                raise cls._error(f"has extension bit 0 in octet 0x{octet:02x}", offset)
        pos, multiplier = 2, None
        if o4 & 0x1F == 0x18:  # multirate: octet 4.1 follows
            multiplier = cls._octet(contents, 2, "rate multiplier (octet 4.1)") & 0x7F
            pos = 3
        layer1, layer1_extra = None, b""
        if pos < len(contents) and contents[pos] & 0x60 == 0x20:
            layer1 = contents[pos] & 0x1F
            end = _extended(contents, pos, cls, "layer-1 (octet 5a-5d)")
            layer1_extra, pos = contents[pos + 1:end], end
        return cls(transfer_capability=o3 & 0x1F, layer1=layer1, transfer_mode=(o4 >> 5) & 3,
                   transfer_rate=o4 & 0x1F, coding_standard=(o3 >> 5) & 3,
                   rate_multiplier=multiplier, layer1_extra=layer1_extra, extra=contents[pos:])

    def serialize(self) -> bytes:
        out = bytearray([0x80 | self.coding_standard << 5 | self.transfer_capability,
                         0x80 | self.transfer_mode << 5 | self.transfer_rate])
        if self.rate_multiplier is not None:
            out.append(0x80 | self.rate_multiplier)
        if self.layer1 is not None:
            out.append((0 if self.layer1_extra else 0x80) | 0x20 | self.layer1)
            out += self.layer1_extra
        return bytes(out + self.extra)


# ---------------------------------------------------------------------------- Cause
LOCATION_NAMES = {0: "user", 1: "private network serving the local user",
                  2: "public network serving the local user", 3: "transit network",
                  4: "public network serving the remote user",
                  5: "private network serving the remote user", 7: "international network",
                  10: "network beyond the interworking point"}

CAUSE_NAMES = {
    1: "unallocated number", 2: "no route to specified transit network",
    3: "no route to destination", 6: "channel unacceptable",
    7: "call awarded and being delivered in an established channel",
    16: "normal call clearing", 17: "user busy", 18: "no user responding",
    19: "no answer from user", 20: "subscriber absent", 21: "call rejected",
    22: "number changed", 26: "non-selected user clearing", 27: "destination out of order",
    28: "invalid number format", 29: "facility rejected",
    30: "response to STATUS ENQUIRY", 31: "normal, unspecified",
    34: "no circuit/channel available", 38: "network out of order",
    41: "temporary failure", 42: "switching equipment congestion",
    43: "access information discarded", 44: "requested circuit/channel not available",
    47: "resource unavailable, unspecified", 49: "quality of service not available",
    50: "requested facility not subscribed", 57: "bearer capability not authorized",
    58: "bearer capability not presently available",
    63: "service or option not available, unspecified",
    65: "bearer capability not implemented", 66: "channel type not implemented",
    69: "requested facility not implemented",
    79: "service or option not implemented, unspecified",
    81: "invalid call reference value", 82: "identified channel does not exist",
    88: "incompatible destination", 91: "invalid transit network selection",
    95: "invalid message, unspecified", 96: "mandatory information element is missing",
    97: "message type non-existent or not implemented",
    98: "message not compatible with call state or message type non-existent",
    99: "information element non-existent or not implemented",
    100: "invalid information element contents",
    101: "message not compatible with call state", 102: "recovery on timer expiry",
    111: "protocol error, unspecified", 127: "interworking, unspecified",
}


def cause_name(value: int) -> str:
    """Q.850 name of a cause value, ``"cause 55"`` style text for unknown ones."""
    return CAUSE_NAMES.get(value, f"unknown cause {value}")


@dataclass(frozen=True, slots=True)
class Cause(TypedIE):
    """Q.931 4.5.12 / Q.850: ``value`` (16 normal clearing), ``location``, diagnostics raw."""

    IDENTIFIER: ClassVar[int] = IE.CAUSE
    NAME: ClassVar[str] = "Cause"

    value: int
    location: int = 1
    coding_standard: int = 0
    recommendation: int | None = None
    diagnostics: bytes = b""

    def __post_init__(self) -> None:
        _check("cause value", self.value, 0x7F)
        _check("location", self.location, 0x0F)
        _check("coding standard", self.coding_standard, 3)
        _check("recommendation", self.recommendation, 0x7F)

    @property
    def name(self) -> str:
        return cause_name(self.value)

    @classmethod
    def parse(cls, contents: bytes) -> Cause:
        o3 = cls._octet(contents, 0, "location (octet 3)")
        pos, recommendation = 1, None
        if not o3 & 0x80:
            o3a = cls._octet(contents, 1, "recommendation (octet 3a)")
            if not o3a & 0x80:
                raise cls._error("has extension bit 0 in the recommendation octet", 1)
            recommendation, pos = o3a & 0x7F, 2
        o4 = cls._octet(contents, pos, "cause value (octet 4)")
        if not o4 & 0x80:
            raise cls._error(f"has extension bit 0 in the cause value octet 0x{o4:02x}", pos)
        return cls(value=o4 & 0x7F, location=o3 & 0x0F, coding_standard=(o3 >> 5) & 3,
                   recommendation=recommendation, diagnostics=contents[pos + 1:])

    def serialize(self) -> bytes:
        o3 = self.coding_standard << 5 | self.location
        head = [0x80 | o3] if self.recommendation is None else [o3, 0x80 | self.recommendation]
        return bytes([*head, 0x80 | self.value]) + self.diagnostics


# -------------------------------------------------------------- Channel identification
@dataclass(frozen=True, slots=True)
class ChannelIdentification(TypedIE):
    """Q.931 4.5.13. On PRI, ``selection`` 1 means "as in the following octets":
    ``channels`` (numbers) or ``slot_map``; 0 is no channel, 3 any channel. On BRI
    (``primary=False``) the selection itself is B1 (1) or B2 (2).
    """

    IDENTIFIER: ClassVar[int] = IE.CHANNEL_IDENTIFICATION
    NAME: ClassVar[str] = "Channel identification"

    channels: tuple[int, ...] = ()
    exclusive: bool = True
    primary: bool = True
    selection: int = 1
    d_channel: bool = False
    interface_id: bytes | None = None
    coding_standard: int = 0
    channel_type: int = 3   # B-channel units
    slot_map: bytes | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))
        for number in self.channels:
            _check("channel number", number, 0x7F)
        _check("channel selection", self.selection, 3)
        _check("coding standard", self.coding_standard, 3)
        _check("channel type", self.channel_type, 0x0F)
        if self.channels and self.slot_map is not None:
            raise ArgumentError("channel identification takes channel numbers or a slot map,"
                                " not both")
        if (self.channels or self.slot_map is not None) and not (
                self.primary and self.selection == 1):
            raise ArgumentError("channel numbers need a primary interface and selection 1")
        if self.interface_id is not None and (
                not self.interface_id or not self.interface_id[-1] & 0x80):
            raise ArgumentError("interface identifier must end with an extension bit 1")

    @property
    def channel(self) -> int | None:
        """The (first) B-channel, or None for "no channel"/"any channel"."""
        if not self.primary:
            return self.selection if self.selection in (1, 2) else None
        return self.channels[0] if self.channels else None

    @classmethod
    def parse(cls, contents: bytes) -> ChannelIdentification:
        o3 = cls._octet(contents, 0, "interface type (octet 3)")
        if not o3 & 0x80:
            raise cls._error(f"has extension bit 0 in octet 3 (0x{o3:02x})", 0)
        pos, interface_id = 1, None
        if o3 & 0x40:
            end = _extended(contents, 1, cls, "interface identifier (octet 3.1)")
            interface_id, pos = contents[1:end], end
        primary, selection = bool(o3 & 0x20), o3 & 0x03
        coding, ctype, channels, slot_map = 0, 3, (), None
        if primary and selection == 1 and pos < len(contents):
            o32 = contents[pos]
            if not o32 & 0x80:
                raise cls._error(f"has extension bit 0 in octet 3.2 (0x{o32:02x})", pos)
            coding, ctype = (o32 >> 5) & 3, o32 & 0x0F
            if o32 & 0x10:
                slot_map = contents[pos + 1:]
            else:
                end = _extended(contents, pos + 1, cls, "channel number (octet 3.3)")
                channels = tuple(b & 0x7F for b in contents[pos + 1:end])
                if end != len(contents):
                    raise cls._error(f"has {len(contents) - end} octets after the last"
                                     " channel number", end)
        elif pos != len(contents):
            raise cls._error(f"has {len(contents) - pos} unexpected octets", pos)
        return cls(channels=channels, exclusive=bool(o3 & 0x08), primary=primary,
                   selection=selection, d_channel=bool(o3 & 0x04), interface_id=interface_id,
                   coding_standard=coding, channel_type=ctype, slot_map=slot_map)

    def serialize(self) -> bytes:
        out = bytearray([0x80 | (0x40 if self.interface_id is not None else 0)
                         | (0x20 if self.primary else 0) | (0x08 if self.exclusive else 0)
                         | (0x04 if self.d_channel else 0) | self.selection])
        out += self.interface_id or b""
        if self.channels or self.slot_map is not None:
            out.append(0x80 | self.coding_standard << 5
                       | (0x10 if self.slot_map is not None else 0) | self.channel_type)
            if self.slot_map is not None:
                out += self.slot_map
            else:
                out += bytes(self.channels[:-1]) + bytes([0x80 | self.channels[-1]])
        return bytes(out)


# ----------------------------------------------------------------- Progress indicator
PROGRESS_NAMES = {1: "not end-to-end ISDN", 2: "destination address is non-ISDN",
                  3: "origination address is non-ISDN", 4: "call has returned to the ISDN",
                  5: "interworking, service change", 8: "in-band info now available",
                  10: "delay in response at destination", 0x10: "interworking with public network",
                  0x11: "interworking, no release", 0x12: "interworking, no release pre-answer",
                  0x13: "interworking, no release post-answer"}


@dataclass(frozen=True, slots=True)
class ProgressIndicator(TypedIE):
    """Q.931 4.5.23: ``description`` 8 = in-band information now available."""

    IDENTIFIER: ClassVar[int] = IE.PROGRESS_INDICATOR
    NAME: ClassVar[str] = "Progress indicator"

    description: int
    location: int = 1
    coding_standard: int = 0

    def __post_init__(self) -> None:
        _check("progress description", self.description, 0x7F)
        _check("location", self.location, 0x0F)
        _check("coding standard", self.coding_standard, 3)

    @classmethod
    def parse(cls, contents: bytes) -> ProgressIndicator:
        o3 = cls._octet(contents, 0, "location (octet 3)")
        o4 = cls._octet(contents, 1, "progress description (octet 4)")
        for offset, octet in ((0, o3), (1, o4)):
            if not octet & 0x80:
                raise cls._error(f"has extension bit 0 in octet 0x{octet:02x}", offset)
        if len(contents) != 2:
            raise cls._error(f"has {len(contents)} octets; expected 2", 2)
        return cls(description=o4 & 0x7F, location=o3 & 0x0F, coding_standard=(o3 >> 5) & 3)

    def serialize(self) -> bytes:
        return bytes([0x80 | self.coding_standard << 5 | self.location, 0x80 | self.description])


# ------------------------------------------------------------------- Party numbers
def _ia5(cls: type[TypedIE], data: bytes, offset: int) -> str:
    for i, b in enumerate(data):
        if b & 0x80:
            raise cls._error(f"has non-IA5 digit 0x{b:02x}", offset + i)
    return data.decode("ascii")


@dataclass(frozen=True, slots=True)
class CalledPartyNumber(TypedIE):
    """Q.931 4.5.8: type of number (2 national), numbering plan (1 ISDN/E.164), digits."""

    IDENTIFIER: ClassVar[int] = IE.CALLED_PARTY_NUMBER
    NAME: ClassVar[str] = "Called party number"

    digits: str
    type_of_number: int = 0
    numbering_plan: int = 1

    def __post_init__(self) -> None:
        _check("type of number", self.type_of_number, 7)
        _check("numbering plan", self.numbering_plan, 0x0F)
        if not self.digits.isascii():
            raise ArgumentError(f"number {self.digits!r} is not IA5 (ASCII)")

    @classmethod
    def parse(cls, contents: bytes) -> CalledPartyNumber:
        o3 = cls._octet(contents, 0, "type of number (octet 3)")
        if not o3 & 0x80:
            raise cls._error(f"has extension bit 0 in octet 3 (0x{o3:02x})", 0)
        return cls(digits=_ia5(cls, contents[1:], 1), type_of_number=(o3 >> 4) & 7,
                   numbering_plan=o3 & 0x0F)

    def serialize(self) -> bytes:
        o3 = 0x80 | self.type_of_number << 4 | self.numbering_plan
        return bytes([o3]) + self.digits.encode("ascii")


@dataclass(frozen=True, slots=True)
class CallingPartyNumber(TypedIE):
    """Q.931 4.5.10: like the called number, plus octet 3a (presentation 0 allowed,
    1 restricted; screening 0 user-provided not screened ... 3 network provided) if given.
    """

    IDENTIFIER: ClassVar[int] = IE.CALLING_PARTY_NUMBER
    NAME: ClassVar[str] = "Calling party number"

    digits: str
    type_of_number: int = 0
    numbering_plan: int = 1
    presentation: int | None = None
    screening: int | None = None

    def __post_init__(self) -> None:
        _check("type of number", self.type_of_number, 7)
        _check("numbering plan", self.numbering_plan, 0x0F)
        _check("presentation", self.presentation, 3)
        _check("screening", self.screening, 3)
        if (self.presentation is None) != (self.screening is None):
            raise ArgumentError("presentation and screening go together (octet 3a)")
        if not self.digits.isascii():
            raise ArgumentError(f"number {self.digits!r} is not IA5 (ASCII)")

    @classmethod
    def parse(cls, contents: bytes) -> CallingPartyNumber:
        o3 = cls._octet(contents, 0, "type of number (octet 3)")
        presentation = screening = None
        pos = 1
        if not o3 & 0x80:
            o3a = cls._octet(contents, 1, "presentation/screening (octet 3a)")
            if not o3a & 0x80:
                raise cls._error(f"has extension bit 0 in octet 3a (0x{o3a:02x})", 1)
            presentation, screening, pos = (o3a >> 5) & 3, o3a & 3, 2
        return cls(digits=_ia5(cls, contents[pos:], pos), type_of_number=(o3 >> 4) & 7,
                   numbering_plan=o3 & 0x0F, presentation=presentation, screening=screening)

    def serialize(self) -> bytes:
        o3 = self.type_of_number << 4 | self.numbering_plan
        if self.presentation is None or self.screening is None:
            head = [0x80 | o3]
        else:
            head = [o3, 0x80 | self.presentation << 5 | self.screening]
        return bytes(head) + self.digits.encode("ascii")


# ------------------------------------------------------------------------- Display
@dataclass(frozen=True, slots=True)
class Display(TypedIE):
    """Q.931 4.5.16: text (IA5; decoded as Latin-1 so national characters survive).

    ANSI T1.607 / NI-2 put a display-type octet with bit 8 set first (0xb1 "calling party
    name", as libpri sends for NI-2); it is kept in ``display_type``.
    """

    IDENTIFIER: ClassVar[int] = IE.DISPLAY
    NAME: ClassVar[str] = "Display"

    text: str
    display_type: int | None = None

    def __post_init__(self) -> None:
        if self.display_type is not None and not 0x80 <= self.display_type <= 0xFF:
            raise ArgumentError(f"display type 0x{self.display_type:x} must have bit 8 set")
        try:
            self.text.encode("latin-1")
        except UnicodeEncodeError:
            raise ArgumentError(f"display text {self.text!r} is not Latin-1") from None

    @classmethod
    def parse(cls, contents: bytes) -> Display:
        if contents and contents[0] & 0x80:
            return cls(text=contents[1:].decode("latin-1"), display_type=contents[0])
        return cls(text=contents.decode("latin-1"))

    def serialize(self) -> bytes:
        head = b"" if self.display_type is None else bytes([self.display_type])
        return head + self.text.encode("latin-1")


# -------------------------------------------------------------- Restart indicator
RESTART_CLASS_NAMES = {0: "indicated channels", 6: "single interface", 7: "all interfaces"}


@dataclass(frozen=True, slots=True)
class RestartIndicator(TypedIE):
    """Q.931 4.5.25: class 0 indicated channels, 6 single interface, 7 all interfaces."""

    IDENTIFIER: ClassVar[int] = IE.RESTART_INDICATOR
    NAME: ClassVar[str] = "Restart indicator"

    restart_class: int = 0

    def __post_init__(self) -> None:
        _check("restart class", self.restart_class, 7)

    @classmethod
    def parse(cls, contents: bytes) -> RestartIndicator:
        o3 = cls._octet(contents, 0, "class (octet 3)")
        if not o3 & 0x80:
            raise cls._error(f"has extension bit 0 in octet 3 (0x{o3:02x})", 0)
        if len(contents) != 1:
            raise cls._error(f"has {len(contents)} octets; expected 1", 1)
        return cls(restart_class=o3 & 0x07)

    def serialize(self) -> bytes:
        return bytes([0x80 | self.restart_class])


TYPED_IES: dict[int, type[TypedIE]] = {cls.IDENTIFIER: cls for cls in (
    BearerCapability, Cause, ChannelIdentification, ProgressIndicator, CalledPartyNumber,
    CallingPartyNumber, Display, RestartIndicator)}
