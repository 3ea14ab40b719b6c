"""Sans-I/O Q.921 (LAPD) and Q.931 codec, for tracing the PRI D-channel.

libpri speaks the protocol; this module only reads and writes its frames, so that the demo
can print a ladder, debug logs on a real board can say what crossed the D-channel, and tests
can assert facts such as "ALERTING carries progress indicator #8". No I/O, no clock.

- :class:`LapdFrame` is one Q.921 frame (ITU-T Q.921 3.3-3.6) **without the 2 FCS octets**:
  DAHDI's HDLC-FCS channels deliver them at the end of each read and libpri writes 2 spare
  octets there, so pass ``fcs=True`` to :meth:`LapdFrame.parse` for such buffers.
  :meth:`LapdFrame.q931` decodes the Q.931 message in an I or UI frame on SAPI 0.
- :class:`Message` is one Q.931 message (Q.931 4): header and information elements in wire
  order, unknown and other-codeset IEs kept raw (see :mod:`uascall.dahdi.q931_ie` for the
  typed IE codecs). ``Message.parse(data).serialize() == data`` for anything that parses.
- :func:`describe` makes one short line of a message or frame; :class:`Ladder` draws them.

Q.931 has no length field, so a message cut between two IEs is itself a valid, shorter
message (and an I frame cut after its control field a valid empty one); any other cut
raises :class:`Q931DecodeError` saying what was truncated and where. Decoding raises
nothing else, whatever the input; :func:`describe` and :class:`Ladder` never raise on
frame contents at all.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeVar

from uascall.dahdi.q931_ie import (
    CAUSE_NAMES,
    IE,
    LAYER1_NAMES,
    PROGRESS_NAMES,
    RESTART_CLASS_NAMES,
    TRANSFER_CAPABILITY_NAMES,
    TYPED_IES,
    BearerCapability,
    CalledPartyNumber,
    CallingPartyNumber,
    Cause,
    ChannelIdentification,
    Display,
    InformationElement,
    ProgressIndicator,
    Q931DecodeError,
    RestartIndicator,
    TypedIE,
    cause_name,
    ie_name,
)
from uascall.errors import ArgumentError

__all__ = [
    "CAUSE_NAMES", "IE", "LAYER1_NAMES", "PROGRESS_NAMES", "Q931_PD", "RESTART_CLASS_NAMES",
    "TRANSFER_CAPABILITY_NAMES", "TYPED_IES", "BearerCapability", "CalledPartyNumber",
    "CallingPartyNumber", "Cause", "ChannelIdentification", "Display", "FrameKind",
    "InformationElement", "Ladder", "LapdFrame", "Message", "MessageType",
    "ProgressIndicator", "Q931DecodeError", "RestartIndicator", "TypedIE", "cause_name",
    "describe", "ie_name", "message_type_name",
]

_T = TypeVar("_T", bound=TypedIE)

Q931_PD = 0x08                      # protocol discriminator of Q.931 call control
MAINTENANCE_PDS = (0x03, 0x43)      # national maintenance (SERVICE), as libpri knows them
FCS_LEN = 2


# ======================================================================== Q.921 (LAPD)
class FrameKind(enum.StrEnum):
    I = "I"  # noqa: E741  (Q.921's name for the information frame)
    RR = "RR"
    RNR = "RNR"
    REJ = "REJ"
    SABME = "SABME"
    DM = "DM"
    UI = "UI"
    DISC = "DISC"
    UA = "UA"
    FRMR = "FRMR"
    XID = "XID"


_S_CONTROL = {0x01: FrameKind.RR, 0x05: FrameKind.RNR, 0x09: FrameKind.REJ}
_U_CONTROL = {0x6F: FrameKind.SABME, 0x0F: FrameKind.DM, 0x03: FrameKind.UI,
              0x43: FrameKind.DISC, 0x63: FrameKind.UA, 0x87: FrameKind.FRMR,
              0xAF: FrameKind.XID}
_S_BITS = {kind: bits for bits, kind in _S_CONTROL.items()}
_U_BITS = {kind: bits for bits, kind in _U_CONTROL.items()}
_WITH_INFO = (FrameKind.I, FrameKind.UI, FrameKind.FRMR, FrameKind.XID)
_PF_BIT = 0x10                      # P/F in a one-octet (U format) control field


@dataclass(frozen=True, slots=True)
class LapdFrame:
    """One Q.921 frame, without FCS.

    ``cr`` is the C/R bit as seen on the wire: a command from the network side and a
    response from the user side carry 1 (Q.921 table 1); see :meth:`is_command`.
    ``n_s`` is set for I frames, ``n_r`` for I and supervisory frames, None otherwise.
    ``info`` is the information field of I, UI, FRMR and XID frames.
    """

    kind: FrameKind
    sapi: int = 0
    tei: int = 0
    cr: int = 0
    n_s: int | None = None
    n_r: int | None = None
    pf: bool = False
    info: bytes = b""

    def __post_init__(self) -> None:
        try:
            kind = FrameKind(self.kind)
        except ValueError:
            raise ArgumentError(f"LAPD frame kind {self.kind!r}; expected one of"
                                f" {', '.join(FrameKind)}") from None
        object.__setattr__(self, "kind", kind)
        for name, value, top in (("SAPI", self.sapi, 63), ("TEI", self.tei, 127),
                                 ("C/R bit", self.cr, 1)):
            if not 0 <= value <= top:
                raise ArgumentError(f"LAPD {name} {value} out of range 0..{top}")
        needs = {"n_s": kind is FrameKind.I, "n_r": kind is FrameKind.I or kind in _S_BITS}
        for name, needed in needs.items():
            value = getattr(self, name)
            if needed and not (isinstance(value, int) and 0 <= value <= 127):
                raise ArgumentError(f"LAPD {kind} frame needs {name} in 0..127, got {value!r}")
            if not needed and value is not None:
                raise ArgumentError(f"LAPD {kind} frame has no {name}; got {value!r}")
        if self.info and kind not in _WITH_INFO:
            raise ArgumentError(f"LAPD {kind} frame cannot carry an information field")

    def is_command(self, *, from_network: bool) -> bool:
        """Whether this frame is a command, given which side sent it (Q.921 3.3.2)."""
        return self.cr == (1 if from_network else 0)

    @classmethod
    def parse(cls, data: bytes, *, fcs: bool = False) -> LapdFrame:
        """Decode one frame; with ``fcs=True`` the last 2 octets (FCS) are dropped unchecked.

        Raises :class:`Q931DecodeError` for a truncated or undefined frame.
        """
        data = bytes(data)
        if fcs:
            if len(data) < FCS_LEN:
                raise Q931DecodeError(f"LAPD frame is truncated: {len(data)} octets, not even"
                                      " the 2 FCS octets", offset=len(data))
            data = data[:-FCS_LEN]
        if len(data) < 2:
            raise Q931DecodeError(f"LAPD frame has truncated address field: {len(data)} of 2"
                                  " octets at offset 0", offset=len(data))
        a1, a2 = data[0], data[1]
        if a1 & 0x01 or not a2 & 0x01:
            raise Q931DecodeError(f"LAPD frame has invalid address extension bits in"
                                  f" {a1:02x} {a2:02x} at offset 0 (expected EA 0, 1)",
                                  offset=0)
        address = {"sapi": a1 >> 2, "cr": (a1 >> 1) & 1, "tei": a2 >> 1}
        if len(data) < 3:
            raise Q931DecodeError("LAPD frame has truncated control field at offset 2",
                                  offset=2)
        c1 = data[2]
        if c1 & 0x03 == 0x03:                                   # U format, one octet
            kind = _U_CONTROL.get(c1 & ~_PF_BIT)
            if kind is None:
                raise Q931DecodeError(f"LAPD frame has undefined unnumbered control field"
                                      f" 0x{c1:02x} at offset 2", offset=2)
            frame = {"kind": kind, "pf": bool(c1 & _PF_BIT)}
            pos = 3
        else:                                                   # I or S format, two octets
            fmt = "I" if c1 & 0x01 == 0 else "supervisory"
            if len(data) < 4:
                raise Q931DecodeError(f"LAPD {fmt} frame has truncated control field: 1 of"
                                      " 2 octets at offset 2", offset=3)
            c2 = data[3]
            if fmt == "I":
                frame = {"kind": FrameKind.I, "n_s": c1 >> 1}
            elif c1 in _S_CONTROL:
                frame = {"kind": _S_CONTROL[c1]}
            else:
                raise Q931DecodeError(f"LAPD frame has undefined supervisory control field"
                                      f" 0x{c1:02x} at offset 2", offset=2)
            frame.update(n_r=c2 >> 1, pf=bool(c2 & 0x01))
            pos = 4
        info = data[pos:]
        if info and frame["kind"] not in _WITH_INFO:
            hint = " (FCS octets not stripped?)" if len(info) == FCS_LEN else ""
            raise Q931DecodeError(f"LAPD {frame['kind']} frame has {len(info)} unexpected"
                                  f" octets after the control field at offset {pos}{hint}",
                                  offset=pos)
        return cls(info=info, **address, **frame)

    def serialize(self, *, fcs: bool = False) -> bytes:
        """The frame's octets; ``fcs=True`` appends 2 spare octets for an HDLC-FCS driver."""
        out = bytearray([self.sapi << 2 | self.cr << 1, self.tei << 1 | 1])
        if self.kind is FrameKind.I:
            out += bytes([self.n_s << 1, self.n_r << 1 | self.pf])
        elif self.kind in _S_BITS:
            out += bytes([_S_BITS[self.kind], self.n_r << 1 | self.pf])
        else:
            out.append(_U_BITS[self.kind] | (_PF_BIT if self.pf else 0))
        return bytes(out + self.info) + (bytes(FCS_LEN) if fcs else b"")

    def q931(self) -> Message | None:
        """The Q.931 message in an I or UI frame on SAPI 0; None for other frames.

        Raises :class:`Q931DecodeError` if the information field is not a Q.931 message.
        """
        if self.sapi != 0 or self.kind not in (FrameKind.I, FrameKind.UI) or not self.info:
            return None
        return Message.parse(self.info)


# ============================================================================ Q.931
class MessageType(enum.IntEnum):
    """Q.931 table 4-2 (and Q.932 for FACILITY, HOLD, RETRIEVE ...), protocol 0x08."""

    ALERTING = 0x01
    CALL_PROCEEDING = 0x02
    PROGRESS = 0x03
    SETUP = 0x05
    CONNECT = 0x07
    SETUP_ACKNOWLEDGE = 0x0D
    CONNECT_ACKNOWLEDGE = 0x0F
    USER_INFORMATION = 0x20
    SUSPEND_REJECT = 0x21
    RESUME_REJECT = 0x22
    HOLD = 0x24
    SUSPEND = 0x25
    RESUME = 0x26
    HOLD_ACKNOWLEDGE = 0x28
    SUSPEND_ACKNOWLEDGE = 0x2D
    RESUME_ACKNOWLEDGE = 0x2E
    HOLD_REJECT = 0x30
    RETRIEVE = 0x31
    RETRIEVE_ACKNOWLEDGE = 0x33
    RETRIEVE_REJECT = 0x37
    DISCONNECT = 0x45
    RESTART = 0x46
    RELEASE = 0x4D
    RESTART_ACKNOWLEDGE = 0x4E
    RELEASE_COMPLETE = 0x5A
    SEGMENT = 0x60
    FACILITY = 0x62
    REGISTER = 0x64
    NOTIFY = 0x6E
    STATUS_ENQUIRY = 0x75
    CONGESTION_CONTROL = 0x79
    INFORMATION = 0x7B
    STATUS = 0x7D


_MAINTENANCE_TYPES = {0x07: "SERVICE ACKNOWLEDGE", 0x0F: "SERVICE"}


def message_type_name(message_type: int, protocol_discriminator: int = Q931_PD) -> str:
    """``"CALL PROCEEDING"`` for 0x02; unknown types and protocols in hex."""
    if protocol_discriminator == Q931_PD:
        try:
            return MessageType(message_type).name.replace("_", " ")
        except ValueError:
            pass
    if protocol_discriminator in MAINTENANCE_PDS and message_type in _MAINTENANCE_TYPES:
        return _MAINTENANCE_TYPES[message_type]
    text = f"message type 0x{message_type:02x}"
    if protocol_discriminator != Q931_PD:
        text = f"PD 0x{protocol_discriminator:02x} {text}"
    return text


@dataclass(frozen=True, slots=True)
class Message:
    """One Q.931 message.

    ``call_reference_flag`` is False in messages sent by the side that chose the call
    reference, True in those sent to it. ``call_reference_length`` is 2 on PRI, 1 on BRI,
    0 for the dummy call reference. ``ies`` keeps every IE in wire order, Shift IEs too.
    """

    message_type: int
    call_reference: int = 0
    call_reference_flag: bool = False
    ies: tuple[InformationElement, ...] = ()
    call_reference_length: int = 2
    protocol_discriminator: int = Q931_PD

    def __post_init__(self) -> None:
        object.__setattr__(self, "ies", tuple(self.ies))
        for name in ("message_type", "protocol_discriminator"):
            value = int(getattr(self, name))
            if not 0 <= value <= 0xFF:
                raise ArgumentError(f"Q.931 {name} {value} is not an octet (0..255)")
            object.__setattr__(self, name, value)     # plain int, also for MessageType.X
        length = self.call_reference_length
        if not 0 <= length <= 15:
            raise ArgumentError(f"Q.931 call reference length {length} out of range 0..15")
        top = (1 << max(0, 8 * length - 1)) - 1
        if not 0 <= self.call_reference <= top or (length == 0 and self.call_reference_flag):
            raise ArgumentError(f"Q.931 call reference {self.call_reference} (flag"
                                f" {self.call_reference_flag:d}) does not fit {length} octets")
        for ie in self.ies:
            if not isinstance(ie, InformationElement):
                raise ArgumentError(f"Q.931 message IEs must be InformationElement; got {ie!r}")

    @property
    def name(self) -> str:
        return message_type_name(self.message_type, self.protocol_discriminator)

    @classmethod
    def parse(cls, data: bytes) -> Message:
        """Decode a message. Raises :class:`Q931DecodeError` if it is truncated or invalid."""
        data = bytes(data)
        n = len(data)

        def truncated(what: str, offset: int) -> Q931DecodeError:
            return Q931DecodeError(f"Q.931 message has truncated {what} at offset {offset}",
                                   offset=offset, cause=95)

        if n < 1:
            raise truncated("protocol discriminator", 0)
        if n < 2:
            raise truncated("call reference length", 1)
        length = data[1]
        if length & 0xF0:
            raise Q931DecodeError(f"Q.931 message has invalid call reference length octet"
                                  f" 0x{length:02x} at offset 1 (bits 5-8 must be 0)",
                                  offset=1, cause=95)
        if n < 2 + length:
            raise truncated(f"call reference ({n - 2} of {length} octets)", 2)
        raw = int.from_bytes(data[2:2 + length], "big")
        flag_bit = 1 << (8 * length - 1) if length else 0
        pos = 2 + length
        if n <= pos:
            raise truncated("message type", pos)
        message_type = data[pos]
        pos += 1
        ies = []
        locked = codeset = 0
        while pos < n:
            identifier = data[pos]
            if identifier & 0x80:                       # single-octet IE
                ies.append(InformationElement(identifier, b"", codeset))
                pos += 1
                if identifier & 0xF0 == 0x90:           # Shift: 0x08 = non-locking
                    if identifier & 0x08:
                        codeset = identifier & 0x07
                        continue
                    locked = identifier & 0x07
                codeset = locked
                continue
            name = ie_name(identifier, codeset)
            if pos + 1 >= n:
                raise truncated(f"IE 0x{identifier:02x} ({name}): no length octet", pos)
            size = data[pos + 1]
            if pos + 2 + size > n:
                raise truncated(f"IE 0x{identifier:02x} ({name}): length {size} but only"
                                f" {n - pos - 2} octets follow", pos)
            ies.append(InformationElement(identifier, data[pos + 2:pos + 2 + size], codeset))
            pos += 2 + size
            codeset = locked
        return cls(message_type=message_type, call_reference=raw & ~flag_bit,
                   call_reference_flag=bool(raw & flag_bit), ies=tuple(ies),
                   call_reference_length=length, protocol_discriminator=data[0])

    def serialize(self) -> bytes:
        length = self.call_reference_length
        raw = self.call_reference | ((1 << (8 * length - 1)) if self.call_reference_flag else 0)
        head = bytes([self.protocol_discriminator, length]) + raw.to_bytes(length, "big")
        return head + bytes([self.message_type]) + b"".join(ie.serialize() for ie in self.ies)

    # ------------------------------------------------------------------ lookups
    def find_all(self, identifier: int) -> list[InformationElement]:
        """Every codeset-0 IE with this identifier, in wire order."""
        return [ie for ie in self.ies if ie.identifier == identifier and ie.codeset == 0]

    def find(self, identifier: int) -> InformationElement | None:
        found = self.find_all(identifier)
        return found[0] if found else None

    def decoded_all(self, cls: type[_T]) -> list[_T]:
        """Every codeset-0 IE of a typed class, decoded (Q931DecodeError if malformed)."""
        return [cls.parse(ie.contents) for ie in self.find_all(cls.IDENTIFIER)]

    def decoded(self, cls: type[_T]) -> _T | None:
        """The first codeset-0 IE of a typed class, decoded, or None if absent."""
        ie = self.find(cls.IDENTIFIER)
        return None if ie is None else cls.parse(ie.contents)

    # The properties below raise Q931DecodeError if the IE they read is malformed.
    @property
    def progress_descriptions(self) -> list[int]:
        return [pi.description for pi in self.decoded_all(ProgressIndicator)]

    @property
    def cause(self) -> int | None:
        cause = self.decoded(Cause)
        return None if cause is None else cause.value

    @property
    def channel(self) -> int | None:
        ci = self.decoded(ChannelIdentification)
        return None if ci is None else ci.channel

    @property
    def called_number(self) -> str | None:
        number = self.decoded(CalledPartyNumber)
        return None if number is None else number.digits

    @property
    def calling_number(self) -> str | None:
        number = self.decoded(CallingPartyNumber)
        return None if number is None else number.digits

    @property
    def display(self) -> str | None:
        display = self.decoded(Display)
        return None if display is None else display.text

    @property
    def layer1_law(self) -> str | None:
        """``"alaw"``/``"ulaw"`` from the bearer capability's layer-1 protocol, else None."""
        bc = self.decoded(BearerCapability)
        return None if bc is None else bc.law


# ========================================================================= describe
def _channel_text(ci: ChannelIdentification, brief: bool) -> str:
    if ci.channels:
        text = "B" + ",".join(str(c) for c in ci.channels)
    elif ci.slot_map is not None:
        text = f"B map {ci.slot_map.hex()}"
    elif ci.channel is not None:
        text = f"B{ci.channel}"
    elif ci.selection == 3:
        return "any channel"
    else:
        return "D-channel" if ci.d_channel else "no channel"
    return text if brief or not ci.exclusive else text + " exclusive"


def _message_parts(m: Message, brief: bool) -> list[str]:
    parts: list[str] = []

    def each(cls: type[TypedIE]) -> list:
        try:
            return m.decoded_all(cls)
        except Q931DecodeError:
            parts.append(f"bad {cls.NAME.lower()}")
            return []

    for ci in each(ChannelIdentification)[:1]:
        parts.append(_channel_text(ci, brief))
    called = [x.digits for x in each(CalledPartyNumber)[:1]]
    calling = [x.digits for x in each(CallingPartyNumber)[:1]]
    names = [] if brief else [f'"{x.text}"' for x in each(Display)[:1]]
    numbers = []
    if called and calling:
        numbers.append(f"{called[0]} <- {calling[0]}")
    elif called or calling:
        numbers.append(f"to {called[0]}" if called else f"from {calling[0]}")
    if numbers or names:
        parts.append(" ".join(numbers + names))
    for pi in each(ProgressIndicator):
        desc = PROGRESS_NAMES.get(pi.description)
        parts.append(f"PI #{pi.description}" + (f" {desc}" if desc else ""))
    parts += [f"cause {c.value} {c.name}" for c in each(Cause)[:1]]
    for bc in [] if brief else each(BearerCapability)[:1]:
        cap = TRANSFER_CAPABILITY_NAMES.get(bc.transfer_capability,
                                            f"capability 0x{bc.transfer_capability:02x}")
        law = "" if bc.layer1 is None else " " + LAYER1_NAMES.get(bc.layer1, f"L1 {bc.layer1}")
        parts.append(cap + law)
    for ri in each(RestartIndicator)[:1]:
        parts.append(RESTART_CLASS_NAMES.get(ri.restart_class, f"class {ri.restart_class}"))
    state = m.find(IE.CALL_STATE)
    if state is not None and state.contents and not brief:
        parts.append(f"state {state.contents[0] & 0x3F}")
    return parts


def _frame_text(f: LapdFrame) -> str:
    text = str(f.kind)
    if f.kind is FrameKind.I:
        text += f" N(S)={f.n_s} N(R)={f.n_r}"
    elif f.n_r is not None:
        text += f" N(R)={f.n_r}"
    if f.pf:
        text += " P/F"
    if f.sapi != 0 or f.tei != 0:
        text += f" SAPI {f.sapi} TEI {f.tei}"
    return text + (f", {len(f.info)} octets" if f.info and f.kind is not FrameKind.I else "")


def describe(item: Message | LapdFrame, *, brief: bool = False) -> str:
    """One short line: ``DISCONNECT cause 16 normal call clearing``.

    A frame that carries a Q.931 message is described by its message, any other frame by
    its Q.921 fields (``RR N(R)=2``). ``brief`` leaves out what a ladder has no room for:
    "exclusive", the display text, the bearer and the call state. Never raises on malformed
    contents: they are shown as ``bad cause`` or ``undecodable Q.931 (...)`` instead.
    """
    if isinstance(item, LapdFrame):
        try:
            message = item.q931()
        except Q931DecodeError as exc:
            return f"{_frame_text(item)}, undecodable Q.931 ({exc})"
        if message is None:
            return _frame_text(item)
        item = message
    parts = _message_parts(item, brief)
    return item.name + (" " + ", ".join(parts) if parts else "")


# ========================================================================== Ladder
class Ladder:
    """A fixed-width text ladder of a D-channel exchange between ``left`` and ``right``.

    ``add(t, "->", x)`` draws ``x`` (a :class:`Message` or :class:`LapdFrame`) sent by
    the left side at time ``t`` seconds, ``"<-"`` one sent by the right side. Q.921
    frames without a Q.931 message (RR, SABME, UA, ...) are drawn only with
    ``show_layer2``; :meth:`arrow` draws any other labelled arrow. ``span`` is the width
    between the two lifelines; labels that do not fit are cut with ``...``.
    """

    LEAD = 13               # arrow characters before the label
    TIME_WIDTH = 7
    LIFELINE = 14           # column of the left lifeline

    def __init__(self, left: str, right: str, *, show_layer2: bool = False,
                 span: int = 54, brief: bool = True) -> None:
        if span < 20:
            raise ArgumentError(f"ladder span {span} is too narrow; need at least 20")
        self.left, self.right = left, right
        self.show_layer2, self.span, self.brief = show_layer2, span, brief
        self._rows: list[tuple[float, str, str, bool]] = []

    def add(self, t: float, direction: str, item: Message | LapdFrame) -> None:
        """Record one frame or message. Raises ArgumentError for a bad direction or item."""
        if direction not in ("->", "<-"):
            raise ArgumentError(f"ladder direction {direction!r}; expected '->' or '<-'")
        if not isinstance(item, Message | LapdFrame):
            raise ArgumentError(f"ladder item must be a Message or LapdFrame; got {item!r}")
        layer2_only = False
        if isinstance(item, LapdFrame):
            try:
                layer2_only = item.q931() is None
            except Q931DecodeError:
                layer2_only = False     # show the damage, it is not routine layer 2
        self._rows.append((t, direction, describe(item, brief=self.brief), layer2_only))

    def arrow(self, t: float, direction: str, label: str) -> None:
        """An arrow labelled ``label`` at time ``t``: a message of another protocol (SIP)
        or a frame that could not be decoded, drawn as the Q.931 messages are."""
        if direction not in ("->", "<-"):
            raise ArgumentError(f"ladder direction {direction!r}; expected '->' or '<-'")
        self._rows.append((t, direction, label, False))

    def note(self, t: float, text: str) -> None:
        """A line between the lifelines at time ``t``: something that is not a frame, such
        as the audio that starts on the B-channel."""
        self._rows.append((t, "note", text, False))

    def _arrow(self, direction: str, label: str) -> str:
        room = self.span - 4                    # a space either side and 1 dash at the end
        lead = max(3, min(self.LEAD, room - len(label)))
        if len(label) > room - lead:
            label = label[:max(0, room - lead - 3)] + "..."
        fill = self.span - lead - len(label) - 2
        if direction == "->":
            return "-" * lead + f" {label} " + "-" * (fill - 1) + ">"
        return "<" + "-" * (lead - 1) + f" {label} " + "-" * fill

    def render(self) -> str:
        right_line = self.LIFELINE + self.span + 1
        head = "time".rjust(self.TIME_WIDTH) + "  "
        head += self.left.center(max(len(self.left), 2 * (self.LIFELINE - len(head)) + 1))
        head = head.ljust(max(len(head) + 2, right_line - len(self.right) // 2)) + self.right
        lines = [head.rstrip()]
        for t, direction, label, layer2_only in sorted(self._rows, key=lambda row: row[0]):
            if layer2_only and not self.show_layer2:
                continue
            stamp = f"{t:{self.TIME_WIDTH}.3f}".ljust(self.LIFELINE)
            if direction == "note":
                text = label if len(label) <= self.span - 4 else label[:self.span - 7] + "..."
                lines.append(f"{stamp}|{(' ' + text + ' ').center(self.span, ' ')}|")
            else:
                lines.append(f"{stamp}|{self._arrow(direction, label)}|")
        return "\n".join(lines) + "\n"
