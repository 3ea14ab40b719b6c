"""RTP streams on the engine: one socket per call, one shared 20 ms ticker for them all.

Theory of operation
-------------------
A call's :class:`RtpStream` is its :class:`~uascall.backend.MediaPort`: the channel's
player writes G.711 frames into a short queue (``write`` says False when it is full, and
the player tries again on its next pump), and the :class:`RtpTicker`, one per backend,
sends exactly one packet per active stream every 20 ms: the next queued frame, or
silence when the queue is empty, so that the far end hears a continuous stream as it
would from a TDM channel, and its own RTP timeout never fires on a quiet call. The ticker
keeps to a fixed 20 ms grid on the engine clock; a tick that runs late sends one packet
per stream, not a burst, and is counted in :attr:`RtpTicker.late_ticks` (more than 5 ms
late), which the benchmark reads.

Incoming packets are read when the socket is readable: telephone-events (RFC 4733) become
digits through :class:`~uascall.sip.rtp.DtmfReceiver`, audio payloads go to an optional
tap (tests and recorders), and every packet from the far end refreshes the time of the
last one heard, which the call's RTP-inactivity timer checks.
"""

from __future__ import annotations

import collections
import logging
import random
from collections.abc import Callable

from uascall.backend import MediaPort
from uascall.engine import Engine, TimerHandle
from uascall.errors import Error
from uascall.media import g711
from uascall.media.source import FRAME_SECONDS
from uascall.sip.rtp import DtmfReceiver, RtpError, RtpPacket, RtpSender
from uascall.sip.sdp import Negotiated
from uascall.sip.transport import Address, IPNetwork, TransportError, UdpEndpoint

log = logging.getLogger(__name__)

#: frames a stream queues ahead of the ticker: the player's lead (3) plus slack for phase
QUEUE_FRAMES = 5
#: a tick later than this counts as late (the benchmark's "no tick late by more than 5 ms")
LATE_TICK = 0.005


class RtpTicker:
    """Sends one packet per active stream every 20 ms (engine thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._streams: dict[RtpStream, None] = {}
        self._timer: TimerHandle | None = None
        self._next = 0.0
        self.ticks = 0
        self.late_ticks = 0
        self.max_lateness = 0.0

    @property
    def active(self) -> int:
        return len(self._streams)

    def add(self, stream: RtpStream) -> None:
        self._streams[stream] = None
        if self._timer is None:
            self._next = self.engine.time() + FRAME_SECONDS
            self._timer = self.engine.call_at(self._next, self._tick)

    def remove(self, stream: RtpStream) -> None:
        self._streams.pop(stream, None)

    def _tick(self) -> None:
        now = self.engine.time()
        lateness = now - self._next
        self.ticks += 1
        if lateness > LATE_TICK:
            self.late_ticks += 1
        if lateness > self.max_lateness:
            self.max_lateness = lateness
        for stream in list(self._streams):
            stream._send_next()
        if not self._streams:
            self._timer = None
            return
        # A fixed grid; after a long stall, skip the missed ticks rather than burst them.
        self._next += FRAME_SECONDS
        if self._next < now - FRAME_SECONDS:
            self._next = now
        self._timer = self.engine.call_at(self._next, self._tick)


class RtpStream(MediaPort):
    """One call's RTP: the socket, the outgoing queue, DTMF and the last time heard."""

    def __init__(self, engine: Engine, ticker: RtpTicker, endpoint_address: Address, *,
                 allow: list[IPNetwork] | None, name: str) -> None:
        self.engine = engine
        self.ticker = ticker
        self.name = name
        self.endpoint = UdpEndpoint(engine, endpoint_address, self._received, allow=allow,
                                    max_size=2048, name=name)
        self.local: Address = self.endpoint.address
        self.law = "ulaw"
        self.remote: Address | None = None
        self._sender: RtpSender | None = None
        self._silence = b""
        self._queue: collections.deque[bytes] = collections.deque()
        self._dtmf: DtmfReceiver | None = None
        self._pt = -1
        self.sending = False
        #: called with each digit received as a telephone-event
        self.on_digit: Callable[[str], None] | None = None
        #: called with each audio payload received (tests, recorders)
        self.on_audio: Callable[[bytes], None] | None = None
        self.last_heard: float | None = None
        self.packets_sent = 0
        self.packets_received = 0
        self.underruns = 0

    def __repr__(self) -> str:
        return f"<RtpStream {self.name} {self.local} -> {self.remote}>"

    def open(self, negotiated: Negotiated) -> None:
        """*Engine thread*: apply what offer/answer agreed and start receiving (and
        sending, unless the far end is on hold or must not be sent to)."""
        self.law = negotiated.law
        self.remote = negotiated.remote
        if self._sender is None or self._pt != negotiated.payload_type:
            self._sender = RtpSender(negotiated.payload_type)
            self._pt = negotiated.payload_type
        self._silence = g711.codec(self.law).silence_frame
        te = negotiated.telephone_event
        self._dtmf = DtmfReceiver(te) if te is not None else None
        self.endpoint.start()
        if self.last_heard is None:
            self.last_heard = self.engine.time()
        want = self.remote is not None and negotiated.direction in ("sendrecv", "sendonly")
        if want and not self.sending:
            self.sending = True
            self.ticker.add(self)
        elif not want and self.sending:
            self.sending = False
            self.ticker.remove(self)

    def close(self) -> None:
        """*Engine thread*: stop sending and close the socket (idempotent)."""
        self.sending = False
        self.ticker.remove(self)
        self._queue.clear()
        self.endpoint.close()

    @property
    def closed(self) -> bool:
        return self.endpoint.closed

    # ------------------------------------------------------------------ MediaPort
    def write(self, frame: bytes) -> bool:
        if self.endpoint.closed:
            raise OSError(f"{self.name}: the call's RTP stream is closed")
        if len(self._queue) >= QUEUE_FRAMES:
            return False
        self._queue.append(frame)
        return True

    def _send_next(self) -> None:
        sender, remote = self._sender, self.remote
        if sender is None or remote is None:
            return
        if self._queue:
            frame = self._queue.popleft()
        else:
            frame = self._silence
            self.underruns += 1
        if self.endpoint.send(sender.packet(frame), remote):
            self.packets_sent += 1

    # ------------------------------------------------------------------ receiving
    def _received(self, data: bytes, source: Address) -> None:
        try:
            packet = RtpPacket.parse(data)
        except RtpError as exc:
            log.debug("%s: not RTP from %s: %s", self.name, source, exc)
            return
        self.packets_received += 1
        self.last_heard = self.engine.time()
        dtmf = self._dtmf
        if dtmf is not None and packet.payload_type == dtmf.payload_type:
            digit = dtmf.feed(packet)
            if digit is not None and self.on_digit is not None:
                self.on_digit(digit)
            return
        if packet.payload_type == self._pt and self.on_audio is not None:
            self.on_audio(packet.payload)


class RtpPorts:
    """Hands out even UDP ports from a range (RTP on even, RTCP on odd: RFC 3550 11)."""

    def __init__(self, first: int = 16384, last: int = 32767) -> None:
        if not (1024 <= first < last <= 65535):
            raise Error(f"RTP port range {first}-{last}; expected 1024 <= first < last "
                        "<= 65535")
        self.first = first + (first % 2)
        self.last = last

    def open(self, engine: Engine, ticker: RtpTicker, host: str, *,
             allow: list[IPNetwork] | None, name: str) -> RtpStream:
        """A stream bound to a free even port on ``host`` (tries random ports first)."""
        span = (self.last - self.first) // 2 + 1
        start = random.randrange(span)
        for attempt in range(min(span, 64)):
            port = self.first + 2 * ((start + attempt * 7919) % span)
            try:
                return RtpStream(engine, ticker, (host, port), allow=allow, name=name)
            except TransportError:
                continue
        raise TransportError(f"{name}: no free RTP port in {self.first}-{self.last} on "
                             f"{host} after 64 tries")
