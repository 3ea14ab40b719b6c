"""A trace of an engine's taps in a pcapng file, written without ever holding the engine up.

Theory of operation
-------------------
:class:`Tracer` listens to ``engine.taps`` (see :mod:`uascall.trace.taps`). On the engine
thread its listeners format nothing: each appends the record it was given to a bounded
queue or, when the queue is full (the disk is slower than the calls), drops it and counts
it in :attr:`TraceStats.dropped`. A writer thread of its own wakes every
:data:`FLUSH_INTERVAL`, turns the records into pcapng blocks (:mod:`uascall.trace.pcapng`)
and writes them.

What a file holds:

- a **LINUX_LAPD** interface (link type 177) per span, named ``span<N>-dchan``: each
  D-channel frame with the pseudo-header's direction and our side's role (network or
  user), so that Wireshark decodes Q.921 and Q.931 with the C/R bit read the right way;
- a **RAW IP** interface (101), ``udp``: every SIP datagram and RTP packet as our UDP
  endpoints sent and received them, with their real addresses (an endpoint bound to a
  wildcard address shows as sent from 0.0.0.0 or ::);
- with ``audio``, a **RAW IP** interface ``bchan-audio``: what each B-channel (or analog
  port) carried, as synthetic RTP over IPv4/UDP, one stream per direction and per opening
  of the channel (a call): payload type 8 (A-law) or 0 (mu-law; a channel in linear mode
  is encoded A-law), 160 bytes per 20 ms packet, SSRC ``0x55430000 + 2 * stream`` for
  what the line sent us and that ``+ 1`` for what we sent to the line, marker on the first
  packet (after a gap the RTP timestamp jumps by the frames missed, with the marker:
  the player puts the audio when it was on the line). The line's side of span S,
  position C is 198.18.S.C and ours 198.19.S.C (the RFC 2544 benchmarking range, never a
  real peer's), both on UDP port ``10000 + 2 * (stream % 20000)``. Wireshark has no SDP
  for these: decode them with
  "Decode As... RTP" or the ``rtp_udp`` heuristic (``tshark --enable-heuristic rtp_udp``);
  the RTP player then plays what was in band on the timeslot.

Timestamps are the engine's clock carried onto the wall clock of the moment the trace
started (so a virtual-time run has the timing of its calls, not of the CPU).

Size limit and rotation: with ``max_bytes``, once a file would grow past it the writer
closes it and starts another, each a complete pcapng (section header and every interface
again): ``trace.pcapng`` is always the newest, ``trace.1.pcapng`` the one before, up to
``files`` files in all; the oldest is deleted (``files=1``: the file starts again).

Failures: an error writing the file (a full disk: ENOSPC) stops the trace with one
warning, and the calls go on; so does a bug in the writer. :attr:`Tracer.stats` says how
far it got. A write the disk took only part of is taken back: the file is cut to the end
of its last whole block (pcapng readers refuse a file that ends inside one), and since it
is written unbuffered nothing of that write is left in a buffer to come out at close.
"""

from __future__ import annotations

import array
import bisect
import collections
import errno
import itertools
import logging
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from uascall import __version__
from uascall.engine import Engine
from uascall.media import g711
from uascall.trace import pcapng

log = logging.getLogger(__name__)

#: seconds between the writer's turns (records wait in the queue meanwhile)
FLUSH_INTERVAL = 0.05
#: records the queue holds before the taps drop them: 960 channels' audio both ways is
#: about 96 000 a second, so this is a second of it
QUEUE_LIMIT = 100_000
FRAME_BYTES = 160  # one 20 ms G.711 RTP packet
FRAME_MICROSECONDS = 20_000
_GAP = 2 * FRAME_MICROSECONDS  # later than this after the frames before: a gap
AUDIO_PORT_BASE = 10000
SSRC_BASE = 0x55430000
_FRAME, _AUDIO, _DATAGRAM = 0, 1, 2
_RTP = struct.Struct("!BBHII")
# An audio packet's Enhanced Packet Block: its head, then IPv4, UDP, RTP and 160 bytes
# (200, already 32-bit aligned), then its flags option, the end of options and its length.
_AUDIO_EPB = struct.Struct("<IIIIIII")
_AUDIO_PACKET_LENGTH = 20 + 8 + 12 + FRAME_BYTES
_AUDIO_BLOCK_LENGTH = _AUDIO_EPB.size + _AUDIO_PACKET_LENGTH + 8 + 4 + 4
_AUDIO_TAIL = {flags: struct.pack("<HHIHHI", pcapng.EPB_FLAGS, 4, flags, 0, 0,
                                  _AUDIO_BLOCK_LENGTH)
               for flags in (pcapng.FLAG_INBOUND, pcapng.FLAG_OUTBOUND)}
_PAYLOAD_TYPES = {"alaw": 8, "ulaw": 0}


@dataclass
class TraceStats:
    """How a trace went."""

    records: int = 0  # packets written
    dropped: int = 0  # records the full queue refused (the writer was behind)
    bytes: int = 0  # written to the current file
    files: int = 0  # files started (rotation makes more than one)
    failure: str = ""  # why the trace stopped early, or ""


class _AudioStream:
    """One direction of one opening of a channel, as RTP."""

    __slots__ = ("header", "marker", "next_at", "payload_type", "pending", "sequence",
                 "ssrc", "timestamp")

    def __init__(self, stream: int, span: int, chanpos: int, sent: bool, law: str) -> None:
        self.ssrc = (SSRC_BASE + 2 * stream + sent) & 0xFFFFFFFF
        self.payload_type = _PAYLOAD_TYPES.get(law, 8)
        self.sequence = 0
        self.timestamp = 0
        self.marker = True
        self.pending = b""
        #: when the line plays the next frame (µs): after those written before it
        self.next_at = 0
        line = f"198.18.{span & 0xFF}.{chanpos & 0xFF}"
        ours = f"198.19.{span & 0xFF}.{chanpos & 0xFF}"
        port = AUDIO_PORT_BASE + 2 * (stream % 20000)
        source, destination = ((ours, port), (line, port)) if sent else ((line, port),
                                                                          (ours, port))
        # Every full packet has the same IP and UDP headers (no IP ID, no UDP checksum):
        # built once, so that a second of 960 channels' audio costs little to write.
        self.header = pcapng.udp_packet(bytes(_RTP.size + FRAME_BYTES), source,
                                        destination)[:-(_RTP.size + FRAME_BYTES)]

    def follow_time(self, stamp: int, frames: int) -> None:
        """``frames`` frames come at ``stamp`` (µs): when nothing came for more than two
        frames, the line carried no audio of ours meanwhile (a player that stopped, a
        reader that did not read), so the RTP timestamp jumps by as many frames and the
        marker starts a new talkspurt: a player puts the audio when it was on the line."""
        if self.next_at and stamp > self.next_at + _GAP:
            missed = (stamp - self.next_at) // FRAME_MICROSECONDS
            self.timestamp = (self.timestamp + missed * FRAME_BYTES) & 0xFFFFFFFF
            self.marker = True
            self.next_at += missed * FRAME_MICROSECONDS
        self.next_at = max(self.next_at, stamp) + frames * FRAME_MICROSECONDS

    def packets(self, payload: bytes) -> list[bytes]:
        data = self.pending + payload if self.pending else payload
        out = []
        offset = 0
        while len(data) - offset >= FRAME_BYTES:
            out.append(self._packet(data[offset:offset + FRAME_BYTES]))
            offset += FRAME_BYTES
        self.pending = data[offset:]
        return out

    def flush(self) -> bytes | None:
        if not self.pending:
            return None
        payload, self.pending = self.pending, b""
        packet = self._packet(payload)
        return packet

    def block(self, interface: int, timestamp: int, payload: bytes, flags: bytes) -> bytes:
        """The Enhanced Packet Block of the next full frame, built in one go."""
        second = self.payload_type | (0x80 if self.marker else 0)
        self.marker = False
        sequence, stamp = self.sequence, self.timestamp
        self.sequence = (sequence + 1) & 0xFFFF
        self.timestamp = (stamp + FRAME_BYTES) & 0xFFFFFFFF
        return b"".join((_AUDIO_EPB.pack(pcapng.BLOCK_EPB, _AUDIO_BLOCK_LENGTH, interface,
                                         timestamp >> 32, timestamp & 0xFFFFFFFF,
                                         _AUDIO_PACKET_LENGTH, _AUDIO_PACKET_LENGTH),
                         self.header, _RTP.pack(0x80, second, sequence, stamp, self.ssrc),
                         payload, flags))

    def _packet(self, payload: bytes) -> bytes:
        second = self.payload_type | (0x80 if self.marker else 0)
        self.marker = False
        rtp = _RTP.pack(0x80, second, self.sequence, self.timestamp, self.ssrc)
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + len(payload)) & 0xFFFFFFFF
        if len(payload) == FRAME_BYTES:
            return self.header + rtp + payload
        # a short last packet: headers of its own length
        ip = pcapng.parse_udp(self.header + bytes(_RTP.size + FRAME_BYTES))
        return pcapng.udp_packet(rtp + payload, ip[0], ip[1])


def rotated_name(path: str, index: int) -> str:
    """``trace.pcapng`` -> ``trace.<index>.pcapng`` (the newest is index 0, ``path``)."""
    if index == 0:
        return path
    stem, dot, ext = path.rpartition(".")
    if dot and "/" not in ext and stem and not stem.endswith("/"):
        return f"{stem}.{index}.{ext}"
    return f"{path}.{index}"


class Tracer:
    """Traces ``engine``'s taps to ``path`` (see the module's docstring).

    Call :meth:`start` before the backends start (their devices are tapped only if they
    open them after it) and :meth:`stop` at the end (it writes what is queued). ``audio``
    adds the B-channels' audio. ``opener(path)`` opens a file for writing, unbuffered as
    the default one (a buffer would keep part of a failed write to write at close); tests
    give a file that fails.
    """

    def __init__(self, engine: Engine, path: str, *, max_bytes: int | None = None,
                 files: int = 2, audio: bool = False, queue_limit: int = QUEUE_LIMIT,
                 opener: Callable[[str], IO[bytes]] | None = None) -> None:
        if files < 1:
            raise ValueError(f"files={files}; expected 1 or more")
        if max_bytes is not None and max_bytes < 1024:
            raise ValueError(f"max_bytes={max_bytes}; expected at least 1024")
        self.engine = engine
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        self.files = files
        self.audio = audio
        self.queue_limit = queue_limit
        self.stats = TraceStats()
        # unbuffered: a write that fails leaves nothing in a buffer to come out later,
        # after the file was cut back to its last whole block (each write is a batch of
        # blocks, so this costs no more system calls than a buffer would)
        self._opener = opener or (lambda name: open(name, "wb", buffering=0))
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._file: IO[bytes] | None = None
        self._interfaces: dict[tuple[Any, ...], int] = {}
        self._interface_blocks: list[bytes] = []
        self._streams: dict[tuple[int, bool], _AudioStream] = {}
        self._wall0 = 0.0
        self._at0 = 0.0
        self._listening = False
        self._header_bytes = 0
        self._devices_before = False
        self._described = 0  # interfaces the current file has described

    # ------------------------------------------------------------------ life
    def start(self) -> Tracer:
        """Open the file, listen to the taps and start the writer (any thread)."""
        self._wall0 = time.time()
        self._at0 = self.engine.time()
        self._open_file()  # an unwritable path fails here, at once, with its reason
        taps = self.engine.taps
        self._devices_before = taps.devices  # another listener may have asked for them too
        taps.devices = True
        taps.listen("frame", self._on_frame, guarded=True)
        taps.listen("datagram", self._on_datagram, guarded=True)
        if self.audio:
            taps.listen("audio", self._on_audio, guarded=True)
        self._listening = True
        self._thread = threading.Thread(target=self._run, name="uascall-trace", daemon=True)
        self._thread.start()
        log.info("tracing to %s", self.path)
        return self

    def stop(self) -> TraceStats:
        """Stop listening, write what is queued, close the file; the stats."""
        self._unlisten()
        self.engine.taps.devices = self._devices_before
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        if self.stats.dropped:
            log.warning("trace %s: %d records dropped: the writer could not keep up",
                        self.path, self.stats.dropped)
        return self.stats

    def __enter__(self) -> Tracer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._listening

    def _unlisten(self) -> None:
        if self._listening:
            self._listening = False
            taps = self.engine.taps
            taps.unlisten("frame", self._on_frame)
            taps.unlisten("datagram", self._on_datagram)
            taps.unlisten("audio", self._on_audio)

    # ------------------------------------------------------------------ the taps (engine thread)
    # Each catches everything (they are listened to unguarded): a failure stops the trace.
    def _on_frame(self, *record: Any) -> None:
        try:
            if len(self._queue) < self.queue_limit:
                self._queue.append((_FRAME, *record))
            else:
                self.stats.dropped += 1
        except Exception as exc:
            self._tap_failed(exc)

    def _on_audio(self, *record: Any) -> None:
        try:
            if len(self._queue) < self.queue_limit:
                self._queue.append((_AUDIO, *record))
            else:
                self.stats.dropped += 1
        except Exception as exc:
            self._tap_failed(exc)

    def _on_datagram(self, *record: Any) -> None:
        try:
            if len(self._queue) < self.queue_limit:
                self._queue.append((_DATAGRAM, *record))
            else:
                self.stats.dropped += 1
        except Exception as exc:
            self._tap_failed(exc)

    def _tap_failed(self, exc: Exception) -> None:
        if self._listening:
            log.error("trace %s: queueing a record failed (%r); tracing stopped", self.path,
                      exc)
            self.stats.failure = f"queueing a record failed: {exc!r}"
            self._unlisten()

    # ------------------------------------------------------------------ the writer thread
    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(FLUSH_INTERVAL)
                stopping = self._stopping
                self._drain()
                if stopping:
                    self._flush_streams()
                    break
        except OSError as exc:
            self._fail(f"cannot write: {exc.strerror or exc}")
        except Exception as exc:
            log.exception("trace %s: the writer failed", self.path)
            self._fail(f"the writer failed: {exc!r}")
        finally:
            self._close_file()

    def _fail(self, reason: str) -> None:
        self.stats.failure = reason
        self._unlisten()
        self._queue.clear()
        log.warning("trace %s: %s; tracing stopped (the calls go on)", self.path, reason)

    def _drain(self) -> None:
        queue = self._queue
        out: list[bytes] = []
        while queue:
            record = queue.popleft()
            kind = record[0]
            if kind == _AUDIO:
                self._audio(record, out)
            elif kind == _FRAME:
                self._frame(record, out)
            else:
                self._datagram(record, out)
            if len(out) >= 1024:
                self._write(out)
                out = []
        if out:
            self._write(out)
        if self._file is not None:
            self._file.flush()

    def _timestamp(self, at: float) -> int:
        return int((self._wall0 + at - self._at0) * 1e6)

    def _interface(self, key: tuple[Any, ...], interface: pcapng.Interface,
                   out: list[bytes]) -> int:
        index = self._interfaces.get(key)
        if index is None:
            index = self._interfaces[key] = len(self._interface_blocks)
            block = interface.serialize()
            self._interface_blocks.append(block)
            out.append(block)
        return index

    def _frame(self, record: tuple[Any, ...], out: list[bytes]) -> None:
        _kind, at, span, channo, sent, network, frame = record
        key = ("lapd", span)
        index = self._interfaces.get(key)
        if index is None:
            side = "network" if network else "user"
            index = self._interface(key, pcapng.Interface(
                pcapng.LINKTYPE_LINUX_LAPD, f"span{span}-dchan",
                f"span {span}'s D-channel (channel {channo}); uascall is the {side} side"),
                out)
        out.append(pcapng.EnhancedPacket(
            index, self._timestamp(at), pcapng.lapd_packet(frame, sent=sent, network=network),
            pcapng.FLAG_OUTBOUND if sent else pcapng.FLAG_INBOUND).serialize())

    def _datagram(self, record: tuple[Any, ...], out: list[bytes]) -> None:
        _kind, at, sent, data, source, destination = record
        index = self._interfaces.get(("udp",))
        if index is None:
            index = self._interface(("udp",), pcapng.Interface(
                pcapng.LINKTYPE_RAW, "udp", "SIP and RTP at uascall's UDP endpoints"), out)
        out.append(pcapng.EnhancedPacket(
            index, self._timestamp(at), pcapng.udp_packet(data, source, destination),
            pcapng.FLAG_OUTBOUND if sent else pcapng.FLAG_INBOUND).serialize())

    def _audio(self, record: tuple[Any, ...], out: list[bytes]) -> None:
        _kind, at, stream, span, chanpos, sent, law, data = record
        index = self._interfaces.get(("audio",))
        if index is None:
            index = self._interface(("audio",), pcapng.Interface(
                pcapng.LINKTYPE_RAW, "bchan-audio", "B-channel audio as RTP: line "
                "198.18.SPAN.POSITION, uascall 198.19.SPAN.POSITION"), out)
        rtp = self._streams.get((stream, sent))
        if rtp is None:
            rtp = self._streams[(stream, sent)] = _AudioStream(
                stream, span, chanpos, sent, "alaw" if law == "s16le" else law)
        if law == "s16le":
            samples = array.array("h")
            samples.frombytes(data[:len(data) & ~1])
            data = g711.codec("alaw").encode(samples)
        flags = pcapng.FLAG_OUTBOUND if sent else pcapng.FLAG_INBOUND
        stamp = self._timestamp(at)
        if len(data) == FRAME_BYTES and not rtp.pending:  # the common case, made quick
            rtp.follow_time(stamp, 1)
            out.append(rtp.block(index, stamp, data, _AUDIO_TAIL[flags]))
            return
        rtp.follow_time(stamp, (len(rtp.pending) + len(data)) // FRAME_BYTES)
        for n, packet in enumerate(rtp.packets(data)):
            # a block of several frames written at once is heard one frame after another
            out.append(pcapng.EnhancedPacket(index, stamp + FRAME_MICROSECONDS * n, packet,
                                             flags).serialize())

    def _flush_streams(self) -> None:
        index = self._interfaces.get(("audio",))
        out = []
        stamp = self._timestamp(self.engine.time())
        for (_stream, sent), rtp in self._streams.items():
            packet = rtp.flush()
            if packet is not None and index is not None:
                out.append(pcapng.EnhancedPacket(
                    index, stamp, packet,
                    pcapng.FLAG_OUTBOUND if sent else pcapng.FLAG_INBOUND).serialize())
        if out:
            self._write(out)

    # ------------------------------------------------------------------ files
    def _write(self, blocks: list[bytes]) -> None:
        if self._file is None:
            return
        if self.max_bytes is None and len(self._interface_blocks) == self._described:
            # no limit to watch and no interface to describe: every block is a packet
            self._put(blocks, len(blocks))
            return
        batch: list[bytes] = []  # for the current file, written in one go
        packets = 0
        size = self.stats.bytes
        for block in blocks:
            kind = block[:4]
            if kind == _IDB_TYPE:
                index = self._interface_blocks.index(block)
                if index < self._described:
                    continue  # the file was started after it, with it in its header
                self._described = index + 1
            elif kind == _EPB_TYPE:
                if (self.max_bytes is not None and size + len(block) > self.max_bytes
                        and size > self._header_bytes):
                    self._put(batch, packets)
                    batch, packets = [], 0
                    self._rotate()
                    size = self.stats.bytes
                packets += 1
            batch.append(block)
            size += len(block)
        self._put(batch, packets)

    def _put(self, blocks: list[bytes], packets: int) -> None:
        """Write ``blocks`` (``packets`` of them packets) at the end of the current file.
        When the disk takes only part of them (a full disk: a short write, then ENOSPC),
        the file is cut back to the end of its last whole block and the error raised."""
        if not blocks:
            return
        file = self._file
        assert file is not None
        data = blocks[0] if len(blocks) == 1 else b"".join(blocks)
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                written = file.write(view[done:])
                if not written:  # None: a non-blocking file that would block; 0: no room
                    raise OSError(errno.EIO, "the file took none of the bytes written")
                done += written
        except OSError:
            self._take_back(blocks, done)
            raise
        self.stats.bytes += len(data)
        self.stats.records += packets

    def _take_back(self, blocks: list[bytes], done: int) -> None:
        """After a write of ``blocks`` that failed ``done`` bytes in: keep the blocks it
        wrote whole and cut the file after them (best effort: the disk that refused the
        write may refuse this too)."""
        ends = list(itertools.accumulate(map(len, blocks)))
        whole = bisect.bisect_right(ends, done)  # blocks written whole
        if whole:
            self.stats.bytes += ends[whole - 1]
            self.stats.records += sum(block[:4] == _EPB_TYPE for block in blocks[:whole])
        if done == (ends[whole - 1] if whole else 0):
            return  # it failed between two blocks: nothing to cut
        assert self._file is not None
        try:
            self._file.truncate(self.stats.bytes)
        except (OSError, ValueError) as exc:
            log.warning("trace %s: could not cut the file back to its last whole block "
                        "(at byte %d): %s; readers will find it cut short", self.path,
                        self.stats.bytes, getattr(exc, "strerror", None) or exc)

    def _open_file(self) -> None:
        self._file = self._opener(self.path)
        self.stats.files += 1
        self.stats.bytes = 0
        header = pcapng.SectionHeader(f"uascall {__version__}").serialize()
        # every file is complete: the interfaces described so far are described again
        self._described = len(self._interface_blocks)
        self._put([header, *self._interface_blocks], 0)
        self._header_bytes = self.stats.bytes

    def _rotate(self) -> None:
        self._close_file()
        if self.files > 1:
            oldest = rotated_name(self.path, self.files - 1)
            if os.path.exists(oldest):
                os.remove(oldest)
            for index in range(self.files - 2, -1, -1):
                name = rotated_name(self.path, index)
                if os.path.exists(name):
                    os.replace(name, rotated_name(self.path, index + 1))
        self._open_file()

    def _close_file(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError as exc:
                if not self.stats.failure:
                    self._fail(f"cannot write: {exc.strerror or exc}")


_EPB_TYPE = struct.pack("<I", pcapng.BLOCK_EPB)
_IDB_TYPE = struct.pack("<I", pcapng.BLOCK_IDB)
