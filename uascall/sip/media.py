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

Incoming packets are read when the socket is readable, and only from the far end: the
address and port its SDP gave. A far end behind NAT, or with several addresses, sends from
elsewhere than its SDP says (baresip on loopback names its LAN address): so the first
packet from the host its SDP names or its SIP comes from, at whatever port, is taken
instead, once, and answered there (symmetric RTP, RFC 4961); with ``symmetric`` the first
packet from anywhere is. Anything else is dropped and counted, so a stranger cannot inject
audio or digits. Telephone-events
(RFC 4733) become key presses through :class:`~uascall.sip.rtp.DtmfReceiver`; audio goes
through a :class:`~uascall.sip.jitter.JitterBuffer` to ``on_audio``, the call's receive
path; every packet from the far end refreshes the time of the last one heard, which the
call's RTP-inactivity timer checks.

Out of band DTMF (:meth:`RtpStream.send_digit`) takes the place of the audio on the
ticker's grid while it lasts: one telephone-event packet per 20 ms, the end packet three
times, in the audio's own numbering (RFC 4733 2.5).
"""

from __future__ import annotations

import collections
import errno
import logging
import random
import socket
from collections.abc import Callable

from uascall.backend import MediaPort
from uascall.engine import Engine, TimerHandle
from uascall.errors import Error
from uascall.media import g711
from uascall.media.dtmf import HeldKey
from uascall.media.source import FRAME_SECONDS
from uascall.sip.jitter import JitterBuffer
from uascall.sip.rtp import DtmfReceiver, RtpError, RtpPacket, RtpSender
from uascall.sip.sdp import Negotiated
from uascall.sip.spare import SpareSockets
from uascall.sip.transport import (
    Address,
    IPNetwork,
    TransportError,
    UdpEndpoint,
    format_hostport,
    same_address,
    same_host,
)

log = logging.getLogger(__name__)

#: frames a stream queues ahead of the ticker: the player's lead (3) plus slack for phase
QUEUE_FRAMES = 5
#: the fewest packets a key held on the stream's ticker lasts, and the pause after it: 60 ms,
#: above Q.24's 40 ms that every receiver must take
KEY_EDGE_PACKETS = 3
#: a telephone-event key with no packet for this long has ended, its end packets all lost:
#: a sender updates an event every 50 ms or every packet (RFC 4733 2.5.1.2), so this is ten
#: updates or more gone. Without it the key stayed down until the next one.
KEY_LOST_AFTER = 0.5
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
            # phase 0 of the engine's 20 ms grid: the media clock pumps the players just
            # after (MEDIA_PHASE), so its pass over them never makes a packet late
            self._next = self.engine.next_on_grid(FRAME_SECONDS)
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
        # While a trace listens to datagrams, every packet goes through UdpEndpoint.send,
        # which shows it to the tap; else the common case takes its own short path.
        traced = self.engine.taps.datagram is not None
        for stream in list(self._streams):
            try:
                if traced:
                    stream._send_general()
                else:
                    stream._send_next()
            except Exception as exc:
                # One stream's failure must not cost every call its media (raised out of
                # here, it left the ticker unarmed: all RTP stopped for good): that stream
                # stops sending, the failure is counted.
                self._streams.pop(stream, None)
                self.engine.faults.record("sending a stream's RTP", exc, stream)
        if not self._streams:
            self._timer = None
            return
        self._next = self.engine.next_tick(self._next, now, FRAME_SECONDS)
        self._timer = self.engine.call_at(self._next, self._tick)


class RtpStream(MediaPort):
    """One call's RTP: the socket, the outgoing queue, DTMF and the last time heard."""

    #: where the far end takes no telephone-events, keys go in band, played by the
    #: stream's own ticker while held (start_digit): frames the bridge wrote one by one
    #: could leave a tick without a frame in the middle of a key, and the far end hear two
    #: keys or none
    sounds_digits = True

    def __init__(self, engine: Engine, ticker: RtpTicker, endpoint_address: Address, *,
                 allow: list[IPNetwork] | None, name: str, symmetric: bool = False,
                 make_socket: Callable[[int], socket.socket] | None = None) -> None:
        self.engine = engine
        self.ticker = ticker
        self.name = name
        self.symmetric = symmetric
        self.endpoint = UdpEndpoint(engine, endpoint_address, self._received, allow=allow,
                                    max_size=2048, name=name, make_socket=make_socket)
        # the socket's own methods and counts, for the per-packet paths (see _send_next)
        self._sendto = self.endpoint.sock.sendto
        self._fileno = self.endpoint.sock.fileno  # below 0 once closed
        self._udp_stats = self.endpoint.stats
        self.local: Address = self.endpoint.address
        self.law = "ulaw"
        self.remote: Address | None = None
        #: where RTP is taken from: the far end's SDP address, or the source latched once
        self.peer: Address | None = None
        #: the host the far end's SIP comes from (its RTP may too, behind NAT)
        self.signalling_host: str | None = None
        self._latched = False
        self._sdp_peer: Address | None = None
        self._sender: RtpSender | None = None
        self._silence = b""
        self._queue: collections.deque[bytes] = collections.deque()
        self._queue_limit = QUEUE_FRAMES
        self._events: collections.deque[list[bytes]] = collections.deque()  # per tick
        self._key: HeldKey | None = None  # a key held down: its tone, tick by tick
        # key downs (a HeldKey) and ups (None) not yet in what was sent, and the count of
        # packets sent when the last one was
        self._key_edges: collections.deque[HeldKey | None] = collections.deque()
        self._key_edge_at = -KEY_EDGE_PACKETS
        self._dtmf: DtmfReceiver | None = None
        self._key_heard_at = 0.0  # when the latest telephone-event packet came
        self._key_watch: TimerHandle | None = None  # gives up on a key whose end is lost
        self._jitter: JitterBuffer | None = None
        #: the jitter buffer holds packets back for missing ones: each tick expires them
        self._reordering = False
        self._pt = -1
        self.sending = False
        #: called with (digit, ended) as a telephone-event's key goes down, then up
        self.on_digit: Callable[[str, bool], None] | None = None
        #: the receive path: called with the far end's audio, in order, gaps filled
        self.on_audio: Callable[[bytes], None] | None = None
        self.last_heard: float | None = None
        self.packets_sent = 0
        self.packets_received = 0
        #: packets dropped for coming from elsewhere than the far end's media address
        self.packets_refused = 0
        self.underruns = 0

    def __repr__(self) -> str:
        return f"<RtpStream {self.name} {self.local} -> {self.remote}>"

    def open(self, negotiated: Negotiated) -> None:
        """*Engine thread*: apply what offer/answer agreed and start receiving (and
        sending, unless the far end is on hold or must not be sent to)."""
        if self._latched and same_address(negotiated.peer, self._sdp_peer):
            pass  # the same offer again: the latched source stays
        else:
            self.peer, self._latched = negotiated.peer, False
            self.remote = negotiated.remote
        self._sdp_peer = negotiated.peer
        if self._sender is None or self._pt != negotiated.payload_type:
            self._sender = RtpSender(negotiated.payload_type)
            self._pt = negotiated.payload_type
        codec = g711.codec(negotiated.law)
        if self._jitter is None or negotiated.law != self.law:
            self._jitter = JitterBuffer(codec.silence)
            self._reordering = False
        self.law = negotiated.law
        self._silence = codec.silence_frame
        te = negotiated.telephone_event
        if self._dtmf is not None and self._dtmf.payload_type != te:
            # its events are no longer ours to hear: a key down on them, whose end now
            # cannot come, is let up here
            digit = self._dtmf.give_up()
            if digit is not None and self.on_digit is not None:
                self.on_digit(digit, True)
        if te is None:
            self._dtmf = None
        elif self._dtmf is None or self._dtmf.payload_type != te:
            self._dtmf = DtmfReceiver(te)
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
        """*Engine thread*: stop sending and close the socket (idempotent).

        It also lets go of its callbacks: the call's methods it calls hold the call, which
        holds the stream, and the endpoint's on_datagram holds the stream. Reference cycles
        like these make a finished call garbage that only the cyclic GC frees, a hundred
        objects a call that every one of its passes scans until then."""
        self.sending = False
        self.ticker.remove(self)
        self._queue.clear()
        self._events.clear()
        self._key = None
        self._key_edges.clear()
        if self._key_watch is not None:
            self._key_watch.cancel()
            self._key_watch = None
        self.endpoint.close()
        self.on_digit = None
        self.on_audio = None

    @property
    def closed(self) -> bool:
        return self.endpoint.closed

    # ------------------------------------------------------------------ MediaPort
    def write(self, frame: bytes) -> bool:
        # (called for every frame of every call: the common case first, in few steps)
        if self.sending:  # so not closed: close() stops the sending first
            queue = self._queue
            if len(queue) >= self._queue_limit:
                return False
            queue.append(frame)
            return True
        if self._fileno() < 0:
            raise OSError(f"{self.name}: the call's RTP stream is closed")
        return True  # the far end holds the call: what plays goes nowhere, in time

    def flush(self) -> None:
        self._queue.clear()

    def queued(self) -> int | None:
        return len(self._queue)

    def limit_queue(self, frames: int | None) -> None:
        self._queue_limit = QUEUE_FRAMES if frames is None else max(2, frames)
        while len(self._queue) > self._queue_limit:
            self._queue.popleft()

    @property
    def telephone_events(self) -> bool:  # type: ignore[override]
        return self._dtmf is not None

    def send_digit(self, digit: str, duration_ms: int) -> None:
        """Send ``digit`` as RFC 4733 telephone-events from the next tick on (nothing
        while the far end holds the call: a digit is not kept for later)."""
        if self._dtmf is None or self._sender is None:
            super().send_digit(digit, duration_ms)
        if not self.sending:
            return
        assert self._dtmf is not None and self._sender is not None
        packets = self._sender.event_packets(digit, duration_ms,
                                             telephone_event_pt=self._dtmf.payload_type)
        # one packet per frame time, the last three (the end, twice repeated) together
        self._events.extend([packet] for packet in packets[:-3])
        self._events.append(packets[-3:])

    def start_digit(self, digit: str) -> bool:
        """Play ``digit``'s tone in band from the next packet on, in place of the audio
        queued, until :meth:`stop_digit`. A key and the pause after it last at least
        :data:`KEY_EDGE_PACKETS` packets whatever the engine does: the ticker skips the
        ticks a late engine missed, and the far end, which plays packets by their
        timestamps, would hear a key held across a stall that much shorter. While the
        far end holds the call it goes nowhere, as what is written does."""
        if self.sending:  # (else the far end holds the call: the key goes nowhere, in time)
            self._key_edges.append(HeldKey(digit, self.law))
        return True

    def stop_digit(self) -> None:
        if self.sending:
            self._key_edges.append(None)
        else:  # nothing of a key is kept for when the far end takes the call back
            self._key = None
            self._key_edges.clear()

    def _take_key_edge(self) -> None:
        """The next key edge, once the key or the pause before it has lasted long enough
        (one edge a packet)."""
        if self.packets_sent - self._key_edge_at >= KEY_EDGE_PACKETS:
            self._key = self._key_edges.popleft()
            self._key_edge_at = self.packets_sent
            if self._key is not None:
                self._queue.clear()

    @property
    def sending_digit(self) -> bool:
        """Whether telephone-events are still to go out."""
        return bool(self._events)

    def _send_next(self) -> None:
        """This tick's packet, no trace listening. The common case (the next frame or
        silence, nothing held in the jitter buffer, no telephone-event) is done here, with
        UdpEndpoint.send's work (send, count, say why it failed) in line: at 2,000
        streams the calls of the general path were a third of the ticker's time."""
        if self._events or self._reordering or self._key is not None or self._key_edges:
            self._send_general()
            return
        sender, remote = self._sender, self.remote
        if sender is None or remote is None:
            return
        queue = self._queue
        if queue:
            frame = queue.popleft()
        else:
            frame = self._silence
            self.underruns += 1
        try:
            self._sendto(sender.packet(frame), remote)
        except OSError as exc:
            self._udp_stats.send_errors += 1
            log.debug("%s: sendto %s failed: %s", self.name, format_hostport(remote), exc)
            return
        self._udp_stats.sent += 1
        self.packets_sent += 1

    def _send_general(self) -> None:
        """This tick's packet, whatever the case: expire what the jitter buffer holds,
        send a telephone-event instead of the audio while one lasts."""
        jitter = self._jitter
        if jitter is not None and jitter.waiting:
            self._deliver(jitter.expire(self.engine.time()))
            self._reordering = jitter.waiting > 0
        sender, remote = self._sender, self.remote
        if sender is None or remote is None:
            return
        if self._events:
            for packet in self._events.popleft():
                if self.endpoint.send(packet, remote):
                    self.packets_sent += 1
            if self._queue:
                self._queue.popleft()  # the event takes this frame's place
            return
        if self._key_edges:
            self._take_key_edge()
        if self._key is not None:
            frame = self._key.next_frame()
            if self._queue:
                self._queue.popleft()  # the key takes this frame's place
        elif self._queue:
            frame = self._queue.popleft()
        else:
            frame = self._silence
            self.underruns += 1
        if self.endpoint.send(sender.packet(frame), remote):
            self.packets_sent += 1

    # ------------------------------------------------------------------ receiving
    def _received(self, data: bytes, source: Address) -> None:
        if source != self.peer and not self._from_far_end(source):  # (the same, or not)
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpError as exc:
            log.debug("%s: not RTP from %s: %s", self.name, source, exc)
            return
        self.packets_received += 1
        now = self.last_heard = self.engine.time()
        dtmf, jitter = self._dtmf, self._jitter
        if dtmf is not None and packet.payload_type == dtmf.payload_type:
            down, up = dtmf.receive(packet)
            self._key_heard_at = now
            if dtmf.key_down and self._key_watch is None:
                self._key_watch = self.engine.call_later(KEY_LOST_AFTER, self._watch_key)
            if self.on_digit is not None:
                if down is not None:
                    self.on_digit(down, False)
                if up is not None:
                    self.on_digit(up, True)
            if jitter is not None:  # in the audio's numbering: not a lost audio packet
                self._deliver(jitter.skip(packet, now))
                self._reordering = jitter.waiting > 0
            return
        if packet.payload_type == self._pt and jitter is not None:
            self._deliver(jitter.push(packet, now))
            self._reordering = jitter.waiting > 0

    def _watch_key(self) -> None:
        self._key_watch = None
        dtmf = self._dtmf
        if dtmf is None or not dtmf.key_down:
            return
        quiet_until = self._key_heard_at + KEY_LOST_AFTER
        if self.engine.time() < quiet_until:  # packets still come: look again then
            self._key_watch = self.engine.call_at(quiet_until, self._watch_key)
            return
        digit = dtmf.give_up()
        log.info("%s: telephone-event %s heard nothing for %.1f s: its end was lost; the "
                 "key is taken as up", self.name, digit, KEY_LOST_AFTER)
        if digit is not None and self.on_digit is not None:
            self.on_digit(digit, True)

    def _deliver(self, blocks: list[bytes]) -> None:
        on_audio = self.on_audio
        if on_audio is not None:
            for block in blocks:
                on_audio(block)

    def _from_far_end(self, source: Address) -> bool:
        peer = self.peer
        if peer is not None and same_address(source, peer):
            return True
        if not self._latched and (self.symmetric or same_host(source[0], self.signalling_host)
                                  or (peer is not None and same_host(source[0], peer[0]))):
            # RFC 4961's symmetric RTP behind a NAT: the far end's packets come from where
            # its SDP cannot say; the first source heard is taken, once, and answered
            log.info("%s: RTP from %s, not %s as its SDP said: taking it (symmetric RTP)",
                     self.name, source, peer)
            self.peer = source
            if self.remote is not None:
                self.remote = source
            self._latched = True
            return True
        self.packets_refused += 1
        if self.packets_refused in (1, 100, 10000):
            log.warning("%s: RTP from %s refused (%d so far); expected it from %s",
                        self.name, source, self.packets_refused, peer)
        return False


class RtpPorts:
    """Hands out even UDP ports from a range (RTP on even, RTCP on odd: RFC 3550 11),
    their sockets made ahead by ``spare`` where given (:mod:`uascall.sip.spare`)."""

    def __init__(self, first: int = 16384, last: int = 32767, *,
                 spare: SpareSockets | None = None) -> None:
        if not (1024 <= first < last <= 65535):
            raise Error(f"RTP port range {first}-{last}; expected 1024 <= first < last "
                        "<= 65535")
        self.first = first + (first % 2)
        self.last = last
        self.spare = spare

    def open(self, engine: Engine, ticker: RtpTicker, host: str, *,
             allow: list[IPNetwork] | None, name: str, symmetric: bool = False) -> RtpStream:
        """A stream bound to a free even port on ``host`` (tries random ports first)."""
        span = (self.last - self.first) // 2 + 1
        start = random.randrange(span)
        tries = min(span, 64)
        make_socket = self.spare.take if self.spare is not None else None
        for attempt in range(tries):
            port = self.first + 2 * ((start + attempt * 7919) % span)
            try:
                return RtpStream(engine, ticker, (host, port), allow=allow, name=name,
                                 symmetric=symmetric, make_socket=make_socket)
            except TransportError as exc:
                if getattr(exc.__cause__, "errno", None) != errno.EADDRINUSE:
                    raise  # no other port does better: no descriptor left, no such address
        raise TransportError(f"{name}: no free RTP port in {self.first}-{self.last} on "
                             f"{host} after {tries} tries")
