"""SDP (RFC 4566) parsing and serialization, and the offer/answer model (RFC 3264) for one
G.711 audio stream.

Theory of operation
-------------------
:func:`parse_sdp` reads a session description line by line. Every line is ``<letter>=<value>``;
lines before the first ``m=`` describe the session, lines after an ``m=`` belong to that
media description. Only what negotiation needs is kept (``v o s c t a m``); the informational
and bandwidth lines (``i u e p b z k r``) and unknown letters are skipped, so a parse and a
serialize of a description that has them drops them. Parsing is tolerant of what real user
agents send (LF-only line ends, trailing blanks, unknown attributes) and strict where a
mistake would misroute media: a missing or garbled ``o=``, ``m=`` or ``c=`` raises
:class:`SdpError` naming the line number and what was expected. A garbled ``a=rtpmap``
only makes its payload format unusable (RFC 4475's torture INVITEs carry
``a=rtpmap:31 LPC``, and a call must not fail over a codec nobody picks).

:func:`answer_offer` is the UAS side. RFC 3264 section 6 asks for one answer ``m=`` line per
offered one, in the same order. The first offered audio stream over ``RTP/AVP`` that carries
one of *our* codecs is accepted; every other stream is rejected with port 0 (we run one
audio stream per call, and do not do SRTP). The codec is chosen by *our* priority, the
order of the ``codecs`` argument, not by the offerer's: a gateway configured for A-law
should get A-law from a phone that happens to list mu-law first. We send with the
offerer's payload type for that codec (it said how it wants to receive it), and the
answer lists only that codec, plus ``telephone-event`` when both sides do RFC 4733.
Directions mirror (``sendonly`` is answered ``recvonly``), and a ``c=`` of ``0.0.0.0``
(the RFC 2543 way of putting a call on hold) means "do not send".

:func:`make_offer` and :func:`read_answer` are the UAC side of the same exchange.

Both sides produce a :class:`Negotiated`: the facts the RTP stream needs.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from uascall.errors import Error

log = logging.getLogger(__name__)

#: codec names of our API (uascall's ``codecs`` argument, "g711a;g711u") ->
#: (rtpmap encoding name, static payload type, law of :mod:`uascall.media.g711`)
CODECS: dict[str, tuple[str, int, str]] = {
    "g711a": ("PCMA", 8, "alaw"),
    "g711u": ("PCMU", 0, "ulaw"),
}

#: RFC 3551 static payload types a description may use without an a=rtpmap line:
#: payload type -> (encoding name, clock rate)
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int]] = {
    0: ("PCMU", 8000),
    3: ("GSM", 8000),
    4: ("G723", 8000),
    8: ("PCMA", 8000),
    # RFC 3551 4.5.2: G.722 samples at 16 kHz but its RTP clock is 8 kHz, by an old mistake
    9: ("G722", 8000),
    18: ("G729", 8000),
}

TELEPHONE_EVENT = "telephone-event"
#: our telephone-event payload type in offers (dynamic range, the usual choice)
OFFER_TELEPHONE_EVENT_PT = 101
#: the events we offer to receive: DTMF 0-15 and flash (16)
OFFER_TELEPHONE_EVENTS = "0-16"
DEFAULT_PTIME = 20

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
# (we send, we receive) for each direction attribute
_DIRECTION_FLAGS = {
    "sendrecv": (True, True),
    "sendonly": (True, False),
    "recvonly": (False, True),
    "inactive": (False, False),
}
_FLAGS_DIRECTION = {flags: name for name, flags in _DIRECTION_FLAGS.items()}
_MIRROR = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly",
           "inactive": "inactive"}
# addresses that say "no address": RFC 3264 8.4 (legacy hold) and its IPv6 equivalent
_UNSPECIFIED = frozenset({"0.0.0.0", "::"})
# RTP profiles whose m= formats are payload type numbers
_RTP_PROTOS = ("RTP/AVP", "RTP/SAVP", "RTP/AVPF", "RTP/SAVPF")
# the only profile we accept: plain RTP, no SRTP key exchange, no AVPF feedback
_ACCEPTED_PROTO = "RTP/AVP"


class SdpError(Error, ValueError):
    """A session description is malformed, or not a usable offer or answer."""

    #: the Warning code a 488 for it carries (RFC 3261 20.43: miscellaneous)
    warn_code = 399


class NoCommonCodec(Error):
    """The offer (or the answer) has no codec we accept; a UAS answers 488 Not Acceptable Here."""

    #: the Warning code a 488 for it carries (RFC 3261 20.43: incompatible media format)
    warn_code = 305


class IncompatibleAddress(NoCommonCodec):
    """The offer's audio that we could take is on an address family we do not receive on
    (IPv6 to an IPv4 server, or the reverse): no RTP could flow; a UAS answers 488."""

    warn_code = 301  # incompatible network address formats


@dataclass(slots=True)
class Codec:
    """One RTP payload format of a media description, resolved through a=rtpmap/a=fmtp."""

    payload_type: int
    name: str  # encoding name as in rtpmap, e.g. "PCMA", "PCMU", "telephone-event"
    clock_rate: int = 8000
    channels: int = 1
    fmtp: str | None = None

    def is_named(self, name: str, clock_rate: int = 8000) -> bool:
        """Whether this is encoding *name* at *clock_rate*, mono (names are case-insensitive)."""
        return (
            self.name.upper() == name.upper()
            and self.clock_rate == clock_rate
            and self.channels == 1
        )

    def describe(self) -> str:
        """``PCMA/8000 (PT 8)``: for log lines and error messages."""
        channels = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.name}/{self.clock_rate}{channels} (PT {self.payload_type})"


@dataclass(slots=True)
class MediaDescription:
    """One ``m=`` line and the ``c=``/``a=`` lines under it."""

    media: str  # "audio"
    port: int
    proto: str  # "RTP/AVP"
    formats: list[str]  # as in the m= line (strings: non-RTP protos use tokens)
    connection: tuple[str, str] | None = None  # (addrtype, address) from a media-level c=
    attributes: list[tuple[str, str | None]] = field(default_factory=list)

    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=name:value`` line, or None."""
        for key, value in self.attributes:
            if key == name:
                return value
        return None

    def codecs(self) -> list[Codec]:
        """The payload formats in ``m=`` order, with their rtpmap and fmtp.

        A format with neither an a=rtpmap line nor a static assignment cannot be used and
        is left out, as are formats of a non-RTP profile and malformed rtpmap lines.
        """
        rtpmaps: dict[int, tuple[str, int, int]] = {}
        fmtps: dict[int, str] = {}
        for name, value in self.attributes:
            if value is None:
                continue
            if name == "rtpmap":
                try:
                    pt, encoding, rate, channels = _parse_rtpmap(value)
                except ValueError as exc:
                    log.debug("ignoring a=rtpmap:%s: %s", value, exc)
                    continue
                rtpmaps.setdefault(pt, (encoding, rate, channels))
            elif name == "fmtp":
                pt_text, _, params = value.partition(" ")
                if pt_text.isdigit():
                    fmtps.setdefault(int(pt_text), params.strip())
        result = []
        for fmt in self.formats:
            if not fmt.isdigit():
                continue
            pt = int(fmt)
            if pt in rtpmaps:
                encoding, rate, channels = rtpmaps[pt]
            elif pt in STATIC_PAYLOAD_TYPES:
                encoding, rate = STATIC_PAYLOAD_TYPES[pt]
                channels = 1
            else:
                continue
            result.append(Codec(pt, encoding, rate, channels, fmtps.get(pt)))
        return result

    @property
    def direction(self) -> str:
        """The media-level direction attribute; "sendrecv" when there is none.

        A session-level direction applies to media without their own; negotiation takes
        that into account, this property does not know the session.
        """
        return _direction_of(self.attributes) or "sendrecv"

    @property
    def ptime(self) -> int | None:
        """a=ptime in milliseconds (some agents write "20.0"), or None."""
        value = self.attribute("ptime")
        if value is None:
            return None
        try:
            ptime = round(float(value))
        except ValueError:
            return None
        return ptime if ptime > 0 else None


@dataclass(slots=True)
class SessionDescription:
    """A session description: the session-level lines and the media descriptions."""

    # username, sess-id, sess-version, nettype, addrtype, address
    origin: tuple[str, int, int, str, str, str]
    session_name: str = "-"
    connection: tuple[str, str] | None = None  # session-level c=: (addrtype, address)
    timing: tuple[int, int] = (0, 0)
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)

    def serialize(self) -> bytes:
        """The description in RFC 4566 order, CRLF line ends."""
        username, session_id, version, nettype, addrtype, address = self.origin
        lines = [
            "v=0",
            f"o={username} {session_id} {version} {nettype} {addrtype} {address}",
            f"s={self.session_name or '-'}",
        ]
        if self.connection is not None:
            lines.append(f"c=IN {self.connection[0]} {self.connection[1]}")
        lines.append(f"t={self.timing[0]} {self.timing[1]}")
        lines.extend(_attribute_lines(self.attributes))
        for media in self.media:
            lines.append(
                f"m={media.media} {media.port} {media.proto} {' '.join(media.formats)}".rstrip()
            )
            if media.connection is not None:
                lines.append(f"c=IN {media.connection[0]} {media.connection[1]}")
            lines.extend(_attribute_lines(media.attributes))
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")

    def connection_for(self, media: MediaDescription) -> tuple[str, str] | None:
        """The connection data for *media*: its own c= line, else the session's."""
        return media.connection or self.connection


def _attribute_lines(attributes: list[tuple[str, str | None]]) -> list[str]:
    return [f"a={name}" if value is None else f"a={name}:{value}" for name, value in attributes]


def _direction_of(attributes: list[tuple[str, str | None]]) -> str | None:
    # the last one wins if an agent sends several; RFC 3264 allows at most one
    found = None
    for name, value in attributes:
        if value is None and name in _DIRECTION_FLAGS:
            found = name
    return found


def _parse_rtpmap(value: str) -> tuple[int, str, int, int]:
    """``96 opus/48000/2`` -> (96, "opus", 48000, 2); ValueError saying what is wrong."""
    pt_text, _, encoding = value.strip().partition(" ")
    if not pt_text.isdigit() or int(pt_text) > 127:
        raise ValueError(f"payload type {pt_text!r} is not an integer 0-127")
    parts = encoding.strip().split("/")
    if len(parts) not in (2, 3) or not parts[0]:
        raise ValueError(f"{encoding.strip()!r} is not <encoding name>/<clock rate>[/<channels>]")
    if not parts[1].isdigit() or int(parts[1]) == 0:
        raise ValueError(f"clock rate {parts[1]!r} is not a positive integer")
    channels = 1
    if len(parts) == 3:
        if not parts[2].isdigit() or int(parts[2]) == 0:
            raise ValueError(f"channel count {parts[2]!r} is not a positive integer")
        channels = int(parts[2])
    return int(pt_text), parts[0], int(parts[1]), channels


# ---------------------------------------------------------------------------------------------
# parsing


def _show(line: str) -> str:
    # a garbage body can be one enormous "line"; the message only needs its start
    return repr(line if len(line) <= 80 else line[:77] + "...")


def _parse_connection(value: str) -> tuple[str, str]:
    parts = value.split()
    if len(parts) != 3:
        raise ValueError("expected 'IN <IP4|IP6> <address>'")
    nettype, addrtype, address = parts
    if nettype != "IN":
        raise ValueError(f"network type {nettype!r} is not IN")
    if addrtype not in ("IP4", "IP6"):
        raise ValueError(f"address type {addrtype!r} is not IP4 or IP6")
    if addrtype == "IP4" and ":" in address:  # (an IP4 host name holds no colon either)
        raise ValueError(f"address {address!r} is not an IP4 address")
    # multicast addresses carry /ttl and /count suffixes; the address is what routes media
    return addrtype, address.split("/", 1)[0]


def _parse_origin(value: str) -> tuple[str, int, int, str, str, str]:
    parts = value.split()
    if len(parts) != 6:
        raise ValueError(
            f"has {len(parts)} fields; expected 6: "
            "<username> <sess-id> <sess-version> IN <IP4|IP6> <address>"
        )
    username, session_id, version, nettype, addrtype, address = parts
    for label, text in (("sess-id", session_id), ("sess-version", version)):
        if not text.isdigit():
            raise ValueError(f"{label} {text!r} is not a decimal integer")
    return username, int(session_id), int(version), nettype, addrtype, address


def _parse_media(value: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 4:
        raise ValueError("expected '<media> <port> <proto> <format> ...'")
    media, port_text, proto, *formats = parts
    port_text = port_text.split("/", 1)[0]  # "port/count" (hierarchical encoding): keep the base
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"port {port_text!r} is not an integer 0-65535")
    if proto.upper() in _RTP_PROTOS:
        for fmt in formats:
            if not fmt.isdigit() or int(fmt) > 127:
                raise ValueError(f"format {fmt!r} of {proto} is not a payload type 0-127")
    return MediaDescription(media, int(port_text), proto, formats)


def _parse_timing(value: str) -> tuple[int, int]:
    parts = value.split()
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise ValueError("expected '<start time> <stop time>', two decimal integers")
    return int(parts[0]), int(parts[1])


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse a session description; :class:`SdpError` says which line is wrong and how."""
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpError(f"SDP is not UTF-8 text ({exc}); expected UTF-8 (RFC 4566 5)") from None
    else:
        text = data

    origin: tuple[str, int, int, str, str, str] | None = None
    session_name = "-"
    connection: tuple[str, str] | None = None
    timing: tuple[int, int] | None = None
    attributes: list[tuple[str, str | None]] = []
    media: list[MediaDescription] = []
    media_lines: list[int] = []  # the line number of each m=, for errors found at the end
    seen_version = False

    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip(" \t\r")
        if not line:
            continue  # the final CRLF, or blank lines some agents add
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise SdpError(f"SDP line {number} {_show(line)} is not <type>=<value>; "
                           "expected a letter, '=' and the value")
        kind, value = line[0], line[2:]
        current = media[-1] if media else None

        if not seen_version:
            if kind != "v" or value.strip() != "0":
                raise SdpError(f"SDP line {number} {_show(line)}: expected v=0 first")
            seen_version = True
            continue
        try:
            if kind == "o":
                if current is not None:
                    raise ValueError("o= belongs before the first m= line")
                origin = _parse_origin(value)
            elif kind == "s":
                if current is None:
                    session_name = value or "-"
            elif kind == "c":
                parsed = _parse_connection(value)
                if current is None:
                    connection = parsed
                else:
                    current.connection = parsed
            elif kind == "t":
                # only one timing is kept: a phone call is "now" (t=0 0); repeats are skipped
                if timing is None:
                    timing = _parse_timing(value)
            elif kind == "a":
                name, colon, attr_value = value.partition(":")
                if not name:
                    raise ValueError("the attribute has no name")
                (attributes if current is None else current.attributes).append(
                    (name, attr_value if colon else None)
                )
            elif kind == "m":
                media.append(_parse_media(value))
                media_lines.append(number)
            elif kind == "v":
                raise ValueError("v= may appear only once, first")
            # i= u= e= p= b= z= k= r= and unknown letters carry nothing negotiation uses
        except ValueError as exc:
            raise SdpError(f"SDP line {number} {_show(line)}: {exc}") from None

    if not seen_version:
        raise SdpError("SDP is empty; expected v=0, o=, s=, t= and m= lines")
    if origin is None:
        raise SdpError("SDP has no o= line; expected one before the first m= line")
    if not media:
        raise SdpError("SDP has no m= line; expected at least one media description")
    for number, description in zip(media_lines, media, strict=True):
        # a rejected stream (port 0) goes nowhere, so it may do without an address
        if description.port != 0 and description.connection is None and connection is None:
            raise SdpError(
                f"SDP line {number} (m={description.media} {description.port} ...) has no c= "
                "line and neither has the session; expected one of them"
            )
    return SessionDescription(
        origin=origin,
        session_name=session_name,
        connection=connection,
        timing=timing or (0, 0),
        attributes=attributes,
        media=media,
    )


# ---------------------------------------------------------------------------------------------
# offer/answer


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What offer/answer settled for our audio stream."""

    law: str  # "alaw" or "ulaw"
    payload_type: int  # the PT to send with: the PT the other side listed for the codec
    telephone_event: int | None  # PT of telephone-event if both sides have it, else None
    # where to send RTP (address, port); None if the port is 0, the address is 0.0.0.0
    # (hold) or the direction forbids our sending
    remote: tuple[str, int] | None
    direction: str  # OUR direction: "sendrecv", "sendonly", "recvonly", "inactive"
    ptime: int = DEFAULT_PTIME
    # where the far end said its RTP is (address, port), whatever the direction: where it
    # sends from as well, with symmetric RTP (RFC 4961); None if it gave no usable address
    peer: tuple[str, int] | None = None


def _our_codecs(codecs: Sequence[str]) -> list[tuple[str, int, str]]:
    if isinstance(codecs, str):
        # "g711a" would otherwise be read as the codecs "g", "7", ...
        raise TypeError(f"codecs is the string {codecs!r}; expected a sequence of codec names")
    result: list[tuple[str, int, str]] = []
    for name in codecs:
        entry = CODECS.get(name.strip().lower())
        if entry is None:
            raise ValueError(f"unknown codec {name!r}; expected one of {', '.join(CODECS)}")
        if entry not in result:
            result.append(entry)
    if not result:
        raise ValueError(f"no codecs given; expected one or more of {', '.join(CODECS)}")
    return result


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _peer(address: tuple[str, str] | None, port: int) -> tuple[str, int] | None:
    if address is None or port == 0 or address[1] in _UNSPECIFIED:
        return None
    host = address[1]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        # A name (RFC 4566 allows one) would be looked up by the kernel's sendto on the
        # engine thread, where nothing may wait for a resolver; text no host has made
        # sendto raise. Neither is an address we can send to.
        log.info("SDP connection address %r is not an IP address: no RTP is sent there",
                 host[:100])
        return None
    return host, port


def _remote(peer: tuple[str, int] | None, direction: str) -> tuple[str, int] | None:
    return peer if _DIRECTION_FLAGS[direction][0] else None


def _find_telephone_event(codecs: list[Codec], clock_rate: int = 8000) -> Codec | None:
    # RFC 4733 7.1.1: events use the clock rate of the audio codec they go with
    for codec in codecs:
        if codec.is_named(TELEPHONE_EVENT, clock_rate):
            return codec
    return None


def _describe_offer(offer: SessionDescription) -> str:
    parts = []
    for media in offer.media:
        listed = ", ".join(codec.describe() for codec in media.codecs()) or " ".join(media.formats)
        disabled = " (port 0)" if media.port == 0 else ""
        parts.append(f"m={media.media} {media.proto}{disabled}: {listed}")
    return "; ".join(parts)


def _describe_ours(ours: list[tuple[str, int, str]]) -> str:
    return ", ".join(f"{name}/8000" for name, _, _ in ours) + " over " + _ACCEPTED_PROTO


def answer_offer(
    offer: SessionDescription,
    codecs: Sequence[str],
    *,
    address: str,
    port: int,
    session_id: int,
    session_version: int = 0,
    username: str = "uascall",
    telephone_event: bool = True,
) -> tuple[SessionDescription, Negotiated]:
    """Answer *offer* (RFC 3264 6) with one audio stream in the first of *codecs* it offers.

    *codecs* are names of :data:`CODECS` in our order of preference; *address* and *port*
    are where we receive RTP. Raises :class:`NoCommonCodec` when no audio stream offers
    one of them (the UAS answers 488), :class:`IncompatibleAddress` when those that do are
    all on another address family than *address*, :class:`SdpError` when the offer has no
    m= line.
    """
    ours = _our_codecs(codecs)
    if not offer.media:
        raise SdpError("SDP offer has no m= line; expected at least one media description")

    accepted: tuple[int, Codec, Codec | None] | None = None
    elsewhere: list[str] = []  # streams we could take, on an address family we are not on
    for index, media in enumerate(offer.media):
        if media.media != "audio" or media.proto.upper() != _ACCEPTED_PROTO or media.port == 0:
            continue
        offered = media.codecs()
        for encoding, _, _ in ours:
            chosen = next((codec for codec in offered if codec.is_named(encoding)), None)
            if chosen is not None:
                connection = offer.connection_for(media)
                if connection is not None and connection[0] != _addrtype(address):
                    elsewhere.append(f"{connection[0]} {connection[1]}")
                    break
                event = _find_telephone_event(offered) if telephone_event else None
                accepted = (index, chosen, event)
                break
        if accepted is not None:
            break
    if accepted is None and elsewhere:
        raise IncompatibleAddress(
            f"the offer's audio is on {', '.join(elsewhere)}; we receive RTP on "
            f"{_addrtype(address)} {address} only")
    if accepted is None:
        raise NoCommonCodec(
            f"no audio stream in the offer has a codec we accept: offered "
            f"{_describe_offer(offer)}; we accept {_describe_ours(ours)}"
        )

    index, chosen, event = accepted
    offered_media = offer.media[index]
    offered_direction = (
        _direction_of(offered_media.attributes) or _direction_of(offer.attributes) or "sendrecv"
    )
    direction = _MIRROR[offered_direction]
    ptime = offered_media.ptime

    formats = [str(chosen.payload_type)]
    attributes: list[tuple[str, str | None]] = [
        ("rtpmap", f"{chosen.payload_type} {chosen.name}/{chosen.clock_rate}")
    ]
    if event is not None:
        formats.append(str(event.payload_type))
        attributes.append(("rtpmap", f"{event.payload_type} {event.name}/{event.clock_rate}"))
        # the events it offered to receive are the ones it understands; without an fmtp
        # RFC 4733 means 0-15, and we say what we take
        attributes.append(("fmtp", f"{event.payload_type} {event.fmtp or OFFER_TELEPHONE_EVENTS}"))
    if ptime is not None:
        attributes.append(("ptime", str(ptime)))
    attributes.append((direction, None))

    answer_media = []
    for i, media in enumerate(offer.media):
        if i == index:
            answer_media.append(
                MediaDescription("audio", port, media.proto, formats, attributes=attributes)
            )
        else:
            # RFC 3264 6: a rejected stream keeps its line, with port 0
            answer_media.append(MediaDescription(media.media, 0, media.proto, list(media.formats)))

    addrtype = _addrtype(address)
    answer = SessionDescription(
        origin=(username, session_id, session_version, "IN", addrtype, address),
        connection=(addrtype, address),
        media=answer_media,
    )
    law = next(law for encoding, _, law in ours if chosen.is_named(encoding))
    peer = _peer(offer.connection_for(offered_media), offered_media.port)
    negotiated = Negotiated(
        law=law,
        payload_type=chosen.payload_type,
        telephone_event=event.payload_type if event is not None else None,
        remote=_remote(peer, direction),
        direction=direction,
        ptime=ptime or DEFAULT_PTIME,
        peer=peer,
    )
    return answer, negotiated


def make_offer(
    codecs: Sequence[str],
    *,
    address: str,
    port: int,
    session_id: int,
    session_version: int = 0,
    username: str = "uascall",
    telephone_event: bool = True,
) -> SessionDescription:
    """An offer of one sendrecv audio stream: *codecs* in our order, and telephone-event."""
    ours = _our_codecs(codecs)
    formats = [str(pt) for _, pt, _ in ours]
    attributes: list[tuple[str, str | None]] = [
        ("rtpmap", f"{pt} {encoding}/8000") for encoding, pt, _ in ours
    ]
    if telephone_event:
        formats.append(str(OFFER_TELEPHONE_EVENT_PT))
        attributes.append(("rtpmap", f"{OFFER_TELEPHONE_EVENT_PT} {TELEPHONE_EVENT}/8000"))
        attributes.append(("fmtp", f"{OFFER_TELEPHONE_EVENT_PT} {OFFER_TELEPHONE_EVENTS}"))
    attributes.append(("ptime", str(DEFAULT_PTIME)))
    attributes.append(("sendrecv", None))
    addrtype = _addrtype(address)
    return SessionDescription(
        origin=(username, session_id, session_version, "IN", addrtype, address),
        connection=(addrtype, address),
        media=[MediaDescription("audio", port, _ACCEPTED_PROTO, formats, attributes=attributes)],
    )


def read_answer(offer: SessionDescription, answer: SessionDescription) -> Negotiated:
    """The UAC side: what *answer* settled for our *offer*.

    The codec is the answer's first format that names a codec of our offer; we send with
    the answer's payload type for it (the answerer said how it wants to receive it).
    Raises :class:`SdpError` when the answer does not fit the offer (a different number of
    m= lines) and :class:`NoCommonCodec` when it accepted no audio stream or chose only
    codecs we did not offer.
    """
    if len(answer.media) != len(offer.media):
        raise SdpError(
            f"SDP answer has {len(answer.media)} m= lines; expected {len(offer.media)}, "
            "one for each line of the offer (RFC 3264 6)"
        )
    for index, (ours, theirs) in enumerate(zip(offer.media, answer.media, strict=True)):
        if ours.media != theirs.media:
            raise SdpError(
                f"SDP answer m= line {index + 1} is {theirs.media!r}; expected {ours.media!r} "
                "as in the offer (RFC 3264 6)"
            )

    for ours, theirs in zip(offer.media, answer.media, strict=True):
        if ours.media != "audio" or ours.port == 0 or theirs.port == 0:
            continue
        offered = ours.codecs()
        offered_g711 = [
            (codec, law)
            for codec in offered
            for encoding, _, law in CODECS.values()
            if codec.is_named(encoding)
        ]
        if not offered_g711:
            continue
        answered = theirs.codecs()
        chosen: tuple[Codec, str] | None = None
        for codec in answered:
            law = next((law for mine, law in offered_g711 if codec.is_named(mine.name)), None)
            if law is not None:
                chosen = (codec, law)
                break
        if chosen is None:
            raise NoCommonCodec(
                "SDP answer chose "
                + (", ".join(codec.describe() for codec in answered) or " ".join(theirs.formats))
                + ", which we did not offer; we offered "
                + ", ".join(codec.describe() for codec, _ in offered_g711)
            )
        codec, law = chosen
        event = None
        if _find_telephone_event(offered) is not None:
            found = _find_telephone_event(answered)
            event = found.payload_type if found is not None else None
        offered_direction = (
            _direction_of(ours.attributes) or _direction_of(offer.attributes) or "sendrecv"
        )
        answered_direction = (
            _direction_of(theirs.attributes) or _direction_of(answer.attributes) or "sendrecv"
        )
        # we may do only what we offered and what the answerer's mirror image allows
        offered_send, offered_recv = _DIRECTION_FLAGS[offered_direction]
        allowed_send, allowed_recv = _DIRECTION_FLAGS[_MIRROR[answered_direction]]
        direction = _FLAGS_DIRECTION[(offered_send and allowed_send, offered_recv and allowed_recv)]
        peer = _peer(answer.connection_for(theirs), theirs.port)
        return Negotiated(
            law=law,
            payload_type=codec.payload_type,
            telephone_event=event,
            remote=_remote(peer, direction),
            direction=direction,
            ptime=theirs.ptime or ours.ptime or DEFAULT_PTIME,
            peer=peer,
        )
    raise NoCommonCodec(
        f"SDP answer accepted no audio stream we offered G.711 on: answer "
        f"{_describe_offer(answer)}; offer {_describe_offer(offer)}"
    )
