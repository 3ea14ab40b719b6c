"""RTP packets (RFC 3550) and telephone-events (RFC 4733), sans-I/O.

Theory of operation
-------------------
:class:`RtpPacket` is one packet: :meth:`RtpPacket.parse` checks the fixed header, the CSRC
list, the header extension and the padding against the packet's length and says exactly
which part is cut short; it raises :class:`RtpError` and nothing else, whatever the bytes.
:meth:`RtpPacket.serialize` writes the packet without padding (we never need to pad: no
SRTP block ciphers here). Both run for every 20 ms frame of every call, so the common case
(no CSRCs, no extension, no padding) is one precompiled ``struct`` call and a slice.

:class:`RtpSender` owns the numbering of one outgoing stream: the SSRC, a sequence number
that goes up by one per packet, and a timestamp that goes up by the frame's samples per
frame, whether or not a packet was sent for it (:meth:`RtpSender.skip`). The first packet
after a gap carries the marker bit, which tells the far end's jitter buffer it may re-time
playout there. :meth:`RtpSender.event_packets` renders a DTMF digit as RFC 4733 packets in
the same numbering.

:class:`DtmfReceiver` turns received telephone-event packets into digits. An RFC 4733 event
is identified by its RTP timestamp (the time the key went down); the sender repeats
updates with a growing duration and sends the end packet three times, and any of them may
be lost or reordered. So a digit is reported on the first packet seen with a new, later
timestamp, whatever kind it is, and everything else about that event, or about an older
one, is ignored.

Nothing here reads a clock, sends or sleeps: the caller says when a frame is due.
"""

from __future__ import annotations

import logging
import secrets
import struct
from dataclasses import dataclass, field

from uascall.errors import Error

log = logging.getLogger(__name__)

RTP_VERSION = 2
HEADER_SIZE = 12
#: events 0..15 of RFC 4733 3.2 are DTMF digits; 16 is flash, which is not a digit
EVENT_DIGITS = "0123456789*#ABCD"
EVENT_FLASH = 16

# V(2) P(1) X(1) CC(4) | M(1) PT(7) | sequence | timestamp | SSRC
_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")  # profile-defined, length in 32-bit words
# event | E(1) R(1) volume(6) | duration
_EVENT = struct.Struct("!BBH")
_WORD = struct.Struct("!I")

_SEQUENCE_MOD = 1 << 16
_TIMESTAMP_MOD = 1 << 32
_HALF_TIMESTAMP = 1 << 31
# RFC 4733 2.5.1.3: an event longer than the 16-bit duration field goes on in a new segment
# whose timestamp is the previous segment's plus the maximum duration
_MAX_EVENT_DURATION = 0xFFFF


class RtpError(Error, ValueError):
    """An RTP packet or telephone-event payload is malformed, or a field is out of range."""


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 5.1)."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: list[int] = field(default_factory=list)
    extension: tuple[int, bytes] | None = None  # (profile-defined 16 bits, data)
    padding: int = 0  # padding bytes (count included) found by parse; serialize never pads

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one packet; :class:`RtpError` says what was wrong with it."""
        if type(data) is not bytes:
            data = bytes(data)  # a bytearray or memoryview: slices below must be bytes
        size = len(data)
        if size < HEADER_SIZE:
            raise RtpError(f"RTP packet is {size} bytes; expected at least {HEADER_SIZE}")
        first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RtpError(f"RTP packet has version {first >> 6}; expected {RTP_VERSION}")
        if not first & 0x3F:
            # the common case: no padding, no extension, no CSRCs
            return cls(second & 0x7F, sequence, timestamp, ssrc, data[HEADER_SIZE:],
                       bool(second & 0x80))

        end = size
        padding = 0
        if first & 0x20:
            padding = data[-1]
            if padding == 0:
                raise RtpError("RTP packet has padding count 0; expected at least 1 (itself)")
        count = first & 0x0F
        offset = HEADER_SIZE + 4 * count
        if offset > size:
            raise RtpError(
                f"RTP packet has truncated CSRC list: {count} CSRCs need {offset} bytes, "
                f"packet is {size}"
            )
        csrc = [_WORD.unpack_from(data, HEADER_SIZE + 4 * i)[0] for i in range(count)]
        extension = None
        if first & 0x10:
            if offset + 4 > size:
                raise RtpError(
                    f"RTP packet has truncated extension header: it needs bytes "
                    f"{offset}-{offset + 3}, packet is {size}"
                )
            profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
            start = offset + 4
            offset = start + 4 * words
            if offset > size:
                raise RtpError(
                    f"RTP packet has truncated extension: {words} words need bytes "
                    f"{start}-{offset - 1}, packet is {size}"
                )
            extension = (profile, data[start:offset])
        if padding:
            if offset + padding > size:
                raise RtpError(
                    f"RTP packet has {padding} bytes of padding but only {size - offset} "
                    f"bytes after its {offset}-byte header; expected at most that many"
                )
            end = size - padding
        return cls(second & 0x7F, sequence, timestamp, ssrc, data[offset:end],
                   bool(second & 0x80), csrc, extension, padding)

    def serialize(self) -> bytes:
        """The packet's bytes, without padding."""
        first = 0x80
        count = len(self.csrc)
        if count > 15:
            raise RtpError(f"RTP packet has {count} CSRCs; expected at most 15")
        if not 0 <= self.payload_type <= 127:
            raise RtpError(f"RTP payload type is {self.payload_type}; expected 0-127")
        if self.extension is not None:
            first |= 0x10
        first |= count
        try:
            parts = [
                _HEADER.pack(first, self.payload_type | (0x80 if self.marker else 0),
                             self.sequence, self.timestamp, self.ssrc)
            ]
            parts.extend(_WORD.pack(source) for source in self.csrc)
        except struct.error:
            raise RtpError(
                f"RTP header field out of range: sequence {self.sequence} (expected 0-65535), "
                f"timestamp {self.timestamp}, SSRC {self.ssrc}, CSRCs {self.csrc} "
                "(expected 0-4294967295)"
            ) from None
        if self.extension is not None:
            profile, data = self.extension
            if len(data) % 4:
                raise RtpError(
                    f"RTP extension data is {len(data)} bytes; expected a multiple of 4"
                )
            if not 0 <= profile <= 0xFFFF or len(data) > 4 * 0xFFFF:
                raise RtpError(
                    f"RTP extension has profile {profile} and {len(data)} bytes; expected "
                    f"0-65535 and at most {4 * 0xFFFF} bytes"
                )
            parts.append(_EXTENSION_HEADER.pack(profile, len(data) // 4))
            parts.append(data)
        parts.append(self.payload)
        return b"".join(parts)


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 named-event payload (section 2.3)."""

    event: int
    end: bool
    volume: int  # power level, in -dBm0 (0 loudest, 63 quietest)
    duration: int  # in RTP timestamp units since the event's timestamp

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) != _EVENT.size:
            raise RtpError(
                f"telephone-event payload is {len(payload)} bytes; expected {_EVENT.size}"
            )
        event, flags, duration = _EVENT.unpack(payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def serialize(self) -> bytes:
        if not 0 <= self.event <= 255 or not 0 <= self.volume <= 63:
            raise RtpError(
                f"telephone-event {self.event} volume {self.volume}; expected event 0-255 "
                "and volume 0-63"
            )
        if not 0 <= self.duration <= 0xFFFF:
            raise RtpError(f"telephone-event duration is {self.duration}; expected 0-65535")
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)


class DtmfReceiver:
    """Turns a stream of telephone-event packets into digits, once each.

    :meth:`feed` takes every received packet (of any payload type) and returns a digit on
    the first packet of a new event. The state is the SSRC and the timestamp of the latest
    event: an earlier timestamp is an old event arriving late, an equal one a repeat.
    """

    __slots__ = ("_duration", "_ended", "_event", "_given_up", "_ssrc", "_timestamp",
                 "payload_type")

    def __init__(self, payload_type: int) -> None:
        self.payload_type = payload_type
        self._ssrc: int | None = None
        self._timestamp = 0
        self._event = -1
        self._ended = False
        self._given_up = False  # ended by give_up(), not by an end packet
        self._duration = 0

    def feed(self, packet: RtpPacket) -> str | None:
        """The digit when *packet* starts a new DTMF event, else None. Never raises."""
        return self.receive(packet)[0]

    def receive(self, packet: RtpPacket) -> tuple[str | None, str | None]:
        """(the digit whose key went down, the digit whose key came up) with *packet*:
        each at most once per event (the up only for an event whose end packet arrives).
        Never raises."""
        if packet.payload_type != self.payload_type:
            return None, None
        try:
            event = TelephoneEvent.parse(packet.payload)
        except RtpError as exc:
            log.debug("ignoring telephone-event packet seq %d: %s", packet.sequence, exc)
            return None, None
        timestamp = packet.timestamp
        if packet.ssrc == self._ssrc:
            delta = (timestamp - self._timestamp) % _TIMESTAMP_MOD
            if delta == 0:
                self._duration = max(self._duration, event.duration)
                if event.end and not self._ended:
                    self._ended = True
                    return None, self._digit()
                return None, None
            if delta >= _HALF_TIMESTAMP:
                return None, None  # an event older than the latest: reordered or long delayed
            if (
                delta == _MAX_EVENT_DURATION
                and event.event == self._event
                and (not self._ended or self._given_up)
            ):
                # the next segment of one long key press, not a second press (nor, for a
                # key given up on, a press at all: its packets were only late)
                self._timestamp = timestamp
                self._duration = event.duration
                if self._given_up:
                    return None, None
                self._ended = event.end
                return None, self._digit() if event.end else None
        # a new source (first packet, or the far end restarted its stream) or a new event
        self._ssrc = packet.ssrc
        self._timestamp = timestamp
        self._event = event.event
        self._ended = event.end
        self._given_up = False
        self._duration = event.duration
        digit = self._digit()
        return digit, digit if event.end else None

    @property
    def key_down(self) -> bool:
        """Whether an event has begun and no end of it has come (nor been given up on)."""
        return self._ssrc is not None and not self._ended

    def give_up(self) -> str | None:
        """The current event's end packets were all lost: it ends now. Its digit, or None
        when none is going on; an end packet that comes after all is then a repeat."""
        if not self.key_down:
            return None
        self._ended = self._given_up = True
        return self._digit()

    def _digit(self) -> str | None:
        return EVENT_DIGITS[self._event] if 0 <= self._event < len(EVENT_DIGITS) else None


class RtpSender:
    """Sequence numbers, timestamps and SSRC for one outgoing stream."""

    __slots__ = ("_marker", "payload_type", "samples_per_frame", "sequence", "ssrc", "timestamp")

    def __init__(
        self,
        payload_type: int,
        *,
        ssrc: int | None = None,
        sequence: int | None = None,
        timestamp: int | None = None,
        samples_per_frame: int = 160,
    ) -> None:
        if not 0 <= payload_type <= 127:
            raise ValueError(f"payload type is {payload_type}; expected 0-127")
        if samples_per_frame <= 0:
            raise ValueError(f"samples_per_frame is {samples_per_frame}; expected more than 0")
        self.payload_type = payload_type
        # RFC 3550 5.1: random starting points make known-plaintext attacks on an encrypted
        # stream harder, and a random SSRC makes collisions unlikely
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc % _TIMESTAMP_MOD
        #: the sequence number of the next packet
        self.sequence = secrets.randbits(16) if sequence is None else sequence % _SEQUENCE_MOD
        #: the timestamp of the next frame
        self.timestamp = secrets.randbits(32) if timestamp is None else timestamp % _TIMESTAMP_MOD
        self.samples_per_frame = samples_per_frame
        self._marker = True  # the first packet starts a talkspurt

    def packet(self, payload: bytes, *, marker: bool = False) -> bytes:
        """The serialized packet for the next frame; the numbering moves on by one frame."""
        sequence = self.sequence
        timestamp = self.timestamp
        second = self.payload_type
        if marker or self._marker:
            second |= 0x80
            self._marker = False
        self.sequence = (sequence + 1) & 0xFFFF
        self.timestamp = (timestamp + self.samples_per_frame) & 0xFFFFFFFF
        return _HEADER.pack(0x80, second, sequence, timestamp, self.ssrc) + payload

    def skip(self, frames: int = 1) -> None:
        """*frames* frames pass with nothing sent: the timestamp moves on, the sequence not."""
        if frames < 0:
            raise ValueError(f"cannot skip {frames} frames; expected 0 or more")
        if frames:
            self.timestamp = (self.timestamp + frames * self.samples_per_frame) % _TIMESTAMP_MOD
            self._marker = True

    def event_packets(
        self,
        digit: str,
        duration_ms: int = 100,
        *,
        volume: int = 10,
        telephone_event_pt: int,
    ) -> list[bytes]:
        """RFC 4733 2.5 packets for *digit*, pressed for *duration_ms*, from the next frame on.

        Send one packet per frame time: packet *i* when frame *i* would be due, the last
        three (the end packet and its two retransmissions, RFC 4733 2.5.1.4) together at
        the last frame. All share the event's timestamp, the first has the marker, the
        duration grows by a frame per packet, and each packet has its own sequence number.
        Media resumes at the frame after the event, as the start of a new talkspurt.
        """
        index = EVENT_DIGITS.find(digit.upper()) if len(digit) == 1 else -1
        if index < 0:
            raise ValueError(f"digit {digit!r} is not a DTMF digit; expected one of {EVENT_DIGITS}")
        if not 0 <= telephone_event_pt <= 127:
            raise ValueError(f"telephone_event_pt is {telephone_event_pt}; expected 0-127")
        if not 0 <= volume <= 63:
            raise ValueError(f"volume is {volume}; expected 0-63 (-dBm0)")
        total = duration_ms * 8  # telephone-event runs at the 8 kHz clock of the G.711 it goes with
        if not 0 < total <= _MAX_EVENT_DURATION:
            raise ValueError(
                f"duration_ms is {duration_ms}; expected 1-{_MAX_EVENT_DURATION // 8} "
                "(one event segment)"
            )
        step = self.samples_per_frame
        frames = -(-total // step)  # frames the event spans, the last one maybe partly
        durations = [step * k for k in range(1, frames)]
        packets = []
        start = self.timestamp
        sequence = self.sequence
        for k, duration in enumerate(durations):
            packets.append(
                _HEADER.pack(0x80, telephone_event_pt | (0x80 if k == 0 else 0), sequence, start,
                             self.ssrc)
                + _EVENT.pack(index, volume, duration)
            )
            sequence = (sequence + 1) & 0xFFFF
        for k in range(3):
            first = not durations and k == 0
            packets.append(
                _HEADER.pack(0x80, telephone_event_pt | (0x80 if first else 0), sequence, start,
                             self.ssrc)
                + _EVENT.pack(index, 0x80 | volume, total)
            )
            sequence = (sequence + 1) & 0xFFFF
        self.sequence = sequence
        self.timestamp = (start + frames * step) % _TIMESTAMP_MOD
        self._marker = True
        return packets
