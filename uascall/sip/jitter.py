"""The receive side of an RTP audio stream: packets back in order, gaps filled, sans-I/O.

Theory of operation
-------------------
What the far end sends reaches the channel as one continuous stream of G.711 samples,
whatever the network did to the packets on the way:

* **In order, without added delay.** A packet that is the next one expected (by sequence
  number) is released at once, with whatever it unblocks. A packet from further ahead
  waits in a small reorder buffer for the ones missing before it: until
  :attr:`JitterBuffer.depth` packets are waiting, or the oldest has waited
  :attr:`JitterBuffer.wait` seconds (:meth:`JitterBuffer.expire`, called on every packet
  and every tick). Then the missing packets are given up as lost.
* **Late and duplicate packets are dropped**: one whose sequence number was released or
  given up already, or that is waiting already.
* **A lost packet becomes silence** of its length, from the timestamps: the gap between
  the last sample released and the next packet's timestamp. So does a pause in sending
  (silence suppression), but never more than :data:`MAX_FILL` seconds at once.
* **Never more than real time.** What comes out, audio and silence together, is at most
  what the time since the first packet holds, plus :data:`SLACK` for a late burst: a far
  end that sends faster than it talks (forged timestamps, oversized payloads, or plain
  packets too often) has the excess dropped and counted (:attr:`JitterBuffer.excess`),
  so it cannot make a recording grow beyond the time the call lasted.
* **Packets of the stream that carry no audio** (telephone-events in the audio's own
  numbering, RFC 4733 2.5) are not missing: :meth:`JitterBuffer.skip` takes their
  sequence numbers, and the time they stand for is silence like any other pause.
* **A new SSRC** (the far end restarted its stream, or a media server took over) releases
  what waited for the old one and starts afresh from the new one's first packet; so does
  a jump in sequence numbers too large to be reordering (:data:`MAX_JUMP`).

Sequence numbers (16 bits) and timestamps (32 bits) are compared modulo their size, so
wrap-around is seamless. Nothing here reads a clock: the caller passes arrival times.
"""

from __future__ import annotations

import logging

from uascall.sip.rtp import RtpPacket

log = logging.getLogger(__name__)

_SEQUENCE_MOD = 1 << 16
_HALF_SEQUENCE = 1 << 15
_TIMESTAMP_MOD = 1 << 32
_HALF_TIMESTAMP = 1 << 31
RATE = 8000
#: the most silence one gap may add, in seconds (what real time allows is less, anyway)
MAX_FILL = 10.0
#: a sequence jump beyond this many packets is a restart, not reordering or loss
MAX_JUMP = 100
#: how far ahead of real time the audio released may run (a burst after a stall), seconds
SLACK = 0.3


class JitterBuffer:
    """Reorders one stream's packets and turns them into a gap-free run of samples.

    ``silence`` is the G.711 byte for silence in the stream's law. :meth:`push` and
    :meth:`expire` return the payloads (and silence fills) released, in order.
    """

    def __init__(self, silence: int, *, depth: int = 3, wait: float = 0.06) -> None:
        if depth < 1 or wait <= 0:
            raise ValueError(f"depth {depth}, wait {wait}; expected depth >= 1 and wait > 0")
        self.silence = silence
        self.depth = depth
        self.wait = wait
        self._ssrc: int | None = None
        self._next_sequence = 0  # the sequence number released next
        self._next_timestamp = 0  # the timestamp of the next sample released
        self._last_arrival = 0.0  # when the last released packet arrived
        self._since: float | None = None  # when the first packet arrived
        self._samples_out = 0  # audio and silence released so far
        # sequence -> (packet, arrival, whether its payload is audio)
        self._held: dict[int, tuple[RtpPacket, float, bool]] = {}
        self.released = 0
        self.excess = 0  # samples dropped for running ahead of real time
        self.lost = 0
        self.late = 0
        self.duplicates = 0
        self.restarts = 0

    @property
    def waiting(self) -> int:
        """Packets held back for a missing one before them."""
        return len(self._held)

    def push(self, packet: RtpPacket, now: float) -> list[bytes]:
        """Take one received packet of the stream's audio payload type."""
        if (packet.sequence == self._next_sequence and not self._held
                and packet.ssrc == self._ssrc):
            # the common case, the next packet with nothing waiting: what _take does then,
            # without its tests (every received packet of every call comes here)
            out: list[bytes] = []
            self._release(packet, now, True, out)
            return out
        return self._take(packet, now, True)

    def skip(self, packet: RtpPacket, now: float) -> list[bytes]:
        """Take one received packet of the stream that carries no audio (a
        telephone-event): its sequence number is taken, nothing is played for it."""
        return self._take(packet, now, False)

    def _take(self, packet: RtpPacket, now: float, audio: bool) -> list[bytes]:
        out: list[bytes] = []
        if self._since is None:
            self._since = now
        if not audio and packet.ssrc != self._ssrc:
            return out  # events of a source of their own: nothing to do with the audio's
        if packet.ssrc != self._ssrc:
            if self._ssrc is not None:
                log.debug("RTP SSRC changed from %#010x to %#010x", self._ssrc, packet.ssrc)
                self.restarts += 1
                self._drain(out)
            self._start(packet, now)
        ahead = (packet.sequence - self._next_sequence) % _SEQUENCE_MOD
        if ahead >= _HALF_SEQUENCE:
            self.late += 1  # released or given up already
        elif packet.sequence in self._held:
            self.duplicates += 1
        elif ahead > MAX_JUMP:
            log.debug("RTP sequence jumped by %d; starting afresh", ahead)
            self.restarts += 1
            self._drain(out)
            self._start(packet, now)
            self._release(packet, now, audio, out)
        elif ahead == 0:
            self._release(packet, now, audio, out)
            self._release_following(out)
        else:
            self._held[packet.sequence] = (packet, now, audio)
            if len(self._held) > self.depth:
                self._give_up(out)
        self.expire(now, out)
        return out

    def expire(self, now: float, out: list[bytes] | None = None) -> list[bytes]:
        """Give up on missing packets that the oldest waiting one has waited ``wait``
        seconds for; release what that unblocks."""
        if out is None:
            out = []
        while self._held and min(held[1] for held in self._held.values()) + self.wait <= now:
            self._give_up(out)
        return out

    def _start(self, packet: RtpPacket, now: float) -> None:
        self._ssrc = packet.ssrc
        self._next_sequence = packet.sequence
        self._next_timestamp = packet.timestamp
        self._last_arrival = now

    def _release(self, packet: RtpPacket, arrival: float, audio: bool, out: list[bytes]
                 ) -> None:
        if not audio:
            self._next_sequence = (packet.sequence + 1) % _SEQUENCE_MOD
            return
        gap = (packet.timestamp - self._next_timestamp) % _TIMESTAMP_MOD
        room = self._room(arrival)
        if 0 < gap < _HALF_TIMESTAMP:
            # samples nobody sent (lost packets, silence suppression): silence, for at
            # most MAX_FILL, and leaving room for the packet's own audio
            fill = min(gap, round(MAX_FILL * RATE), room - len(packet.payload))
            if fill > 0:
                out.append(bytes([self.silence]) * fill)
                self._samples_out += fill
                room -= fill
        # (a timestamp behind the last one released overlaps it: the payload is taken as
        # it comes, the timeline moves on from it)
        payload = packet.payload
        if len(payload) > room:
            self.excess += len(payload) - room
            payload = payload[:room]
        if payload:
            out.append(payload)
            self._samples_out += len(payload)
        self.released += 1
        self._next_sequence = (packet.sequence + 1) % _SEQUENCE_MOD
        self._next_timestamp = (packet.timestamp + len(packet.payload)) % _TIMESTAMP_MOD
        self._last_arrival = arrival

    def _room(self, now: float) -> int:
        """Samples that may still come out by ``now``: real time since the first packet,
        plus the slack, less what came out."""
        since = self._since if self._since is not None else now
        return max(0, round((now - since + SLACK) * RATE) - self._samples_out)

    def _release_following(self, out: list[bytes]) -> None:
        while self._next_sequence in self._held:
            packet, arrival, audio = self._held.pop(self._next_sequence)
            self._release(packet, arrival, audio, out)

    def _give_up(self, out: list[bytes]) -> None:
        """The packets missing before the first one waiting are lost: move on to it."""
        first = min(self._held, key=lambda seq: (seq - self._next_sequence) % _SEQUENCE_MOD)
        self.lost += (first - self._next_sequence) % _SEQUENCE_MOD
        packet, arrival, audio = self._held.pop(first)
        self._release(packet, arrival, audio, out)
        self._release_following(out)

    def _drain(self, out: list[bytes]) -> None:
        while self._held:
            self._give_up(out)
