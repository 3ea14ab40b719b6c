"""A simulated DAHDI kernel at the device seam, so the real :mod:`uascall.dahdi` runs on it.

:class:`SimKernel` implements :class:`~uascall.dahdi.device.DeviceIO` (open, close, read,
write, ioctl) with the rules of dahdi-base.c, over real descriptors whose POLLIN/POLLPRI
readiness it sets (:mod:`uascall.sim.readiness`), so the engine waits on it with the same
``epoll`` call it uses on boards. It runs on the engine thread and keeps time with the
engine's clock, real or virtual.

What it models
--------------
- Spans in back-to-back pairs, like ``dahdi_dynamic_loc``: channel *n* of one span is
  wired to channel *n* of its peer. ``add_loop("E1")`` adds two 31-channel spans,
  ``add_loop("T1")`` two 24-channel ones; :meth:`SimKernel.configure` gives channels
  their signalling from system.conf text, as dahdi_cfg does.
- Opening: ``/dev/dahdi/channel`` + DAHDI_SPECIFY, ``/dev/dahdi/chan/SSS/CCC``,
  ``/dev/dahdi/N`` and ``/dev/dahdi/ctl``; ENXIO for a channel without signalling, EBUSY
  for one already open, ENOENT for a node that does not exist. Opening resets the
  channel as ``initialize_channel`` does (block size 1024, two buffers, immediate policy,
  the span's law, no linear mode, audio mode off).
- B-channels (CLEAR) paced at 8,000 bytes/s: every ``tick`` seconds each open channel
  sends ``8000 * tick`` bytes from its write buffers to its peer's read buffers, which
  become readable block by block. Buffer counts and sizes, the IMMEDIATE / WHEN_FULL /
  HALF_FULL transmit policies, underruns (silence goes out in audio mode, 0xFF
  otherwise, and WRITE_UNDERRUN is queued with DAHDI_BUFFER_EVENTS), overruns (a block
  that finds every read buffer full is dropped; READ_OVERRUN once per episode with
  DAHDI_BUFFER_EVENTS), linear mode (s16 converted with the channel's law, in audio mode
  only) are as in the kernel.
- D-channels (HDLCFCS): a write is one frame whose last two bytes the kernel overwrites
  with the FCS; the peer reads frame + FCS. A frame with a bad FCS, or as long as the
  receiver's block size, is not delivered and BADFCS or OVERRUN is queued instead (not in
  alarm); a frame that finds every read buffer full is lost without a word. Frames reach
  the peer on the next engine iteration.
- Events: a queue of at most 63 per channel (newer ones are dropped when it is full),
  read and write fail with ELAST while any are queued, POLLPRI is raised.
- Alarms: :meth:`set_alarm` puts a span in alarm; nothing crosses the line while either
  side of a pair is in RED, its peer shows YELLOW, and every channel of both gets ALARM
  (NOALARM when it clears), as dahdi_alarm_notify does. :meth:`cut_dchannel` loses the
  D-channel frames of a pair without an alarm (layer 2 breaks, layer 1 stays up).

What it does not model
----------------------
Kernel-generated tones and dialling (SENDTONE/DIAL need a tone zone: ENODATA without one,
and with one they are accepted but produce no audio), conferencing, echo cancellers
(ECHOCANCEL_PARAMS is accepted and does nothing, like a kernel without an echocanceller=
module), gains (stored, not applied), the D-channel's 64 kbit/s rate, blocking reads and
writes (they fail with EAGAIN as if O_NONBLOCK were set: the simulator must never block
the engine), and POLLOUT (a write that finds no free buffer fails with EAGAIN, as on the
kernel). Analog hook signalling arrives with the analog backend.

Test hooks beyond the kernel: :meth:`SimKernel.set_alarm`, :meth:`SimKernel.cut_dchannel`,
:meth:`SimKernel.corrupt_next_frame`, :meth:`SimKernel.inject_frame`,
:attr:`SimKernel.frame_filter` (rewrite or lose frames on the wire), ``frame_taps`` and
per-channel :class:`ChannelStats`.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from uascall.dahdi import abi
from uascall.dahdi.config import SystemConf
from uascall.dahdi.device import DeviceIO, IoctlArg
from uascall.engine import Engine, TimerHandle
from uascall.media import g711
from uascall.sim import hdlc
from uascall.sim.readiness import ReadinessFd

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
MAX_QUEUED_EVENTS = abi.DAHDI_MAX_EVENTSIZE - 1  # one slot stays empty in the ring
SIGNALLING = {
    "bchan": abi.DAHDI_SIG_CLEAR, "inclear": abi.DAHDI_SIG_CLEAR,
    "clear": abi.DAHDI_SIG_CLEAR, "dchan": abi.DAHDI_SIG_HDLCFCS,
    "fcshdlc": abi.DAHDI_SIG_HDLCFCS, "hardhdlc": abi.DAHDI_SIG_HARDHDLC,
    "fxoks": abi.DAHDI_SIG_FXOKS, "fxsks": abi.DAHDI_SIG_FXSKS,
    "fxols": abi.DAHDI_SIG_FXOLS, "fxsls": abi.DAHDI_SIG_FXSLS,
    "unused": 0,
}
SPAN_KINDS = {
    # kind: (channels, default law, line configuration, description)
    "E1": (31, abi.DAHDI_LAW_ALAW,
           abi.DAHDI_CONFIG_CCS | abi.DAHDI_CONFIG_HDB3 | abi.DAHDI_CONFIG_CRC4, "E1"),
    "T1": (24, abi.DAHDI_LAW_MULAW, abi.DAHDI_CONFIG_ESF | abi.DAHDI_CONFIG_B8ZS, "T1"),
}
LINE_DOWN = abi.DAHDI_ALARM_RED | abi.DAHDI_ALARM_BLUE | abi.DAHDI_ALARM_LOS


@dataclass
class ChannelStats:
    """Counters a test or benchmark can read (the kernel keeps none of these for users)."""

    tx_bytes: int = 0
    rx_bytes: int = 0
    tx_underruns: int = 0
    rx_overruns: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    frames_dropped: int = 0


@dataclass(frozen=True)
class FrameRecord:
    """One HDLC frame crossing a looped pair, for taps (the FCS is not included)."""

    time: float
    from_channel: int
    to_channel: int
    frame: bytes
    delivered: bool


@dataclass(eq=False)
class _Chan:
    channo: int
    span: _Span
    chanpos: int
    sig: int = 0
    deflaw: int = 0
    file: _File | None = None
    # what an open resets (initialize_channel)
    law: int = 0
    linear: bool = False
    audio: bool = False
    blocksize: int = abi.DAHDI_DEFAULT_BLOCKSIZE
    numbufs: int = abi.DAHDI_DEFAULT_NUM_BUFS
    txpolicy: int = abi.DAHDI_POLICY_IMMEDIATE
    buffer_events: bool = False
    txdisable: bool = False
    underrun_flag: bool = False
    overrun_flag: bool = False
    flowing: bool = False
    tx: deque[bytes] = field(default_factory=deque)
    tx_offset: int = 0
    rx: deque[bytes] = field(default_factory=deque)
    rx_partial: bytearray = field(default_factory=bytearray)
    events: deque[int] = field(default_factory=deque)
    gains: bytes = b""
    chan_alarms: int = 0
    stats: ChannelStats = field(default_factory=ChannelStats)

    @property
    def name(self) -> str:
        return f"{self.span.name}/{self.chanpos}"

    @property
    def is_clear(self) -> bool:
        return self.sig == abi.DAHDI_SIG_CLEAR

    @property
    def is_hdlc(self) -> bool:
        return self.sig in (abi.DAHDI_SIG_HDLCFCS, abi.DAHDI_SIG_HARDHDLC)

    def reset(self) -> None:
        self.law = self.deflaw or self.span.deflaw
        self.linear = False
        self.audio = False
        self.blocksize = abi.DAHDI_DEFAULT_BLOCKSIZE
        self.numbufs = abi.DAHDI_DEFAULT_NUM_BUFS
        self.txpolicy = abi.DAHDI_POLICY_IMMEDIATE
        self.txdisable = False
        self.underrun_flag = False
        self.overrun_flag = False
        self.flowing = False
        self.flush(read=True, write=True)
        self.events.clear()

    def flush(self, *, read: bool, write: bool) -> None:
        if read:
            self.rx.clear()
            self.rx_partial.clear()
        if write:
            self.tx.clear()
            self.tx_offset = 0

    def codec(self) -> g711.Codec:
        return g711.ALAW if self.law == abi.DAHDI_LAW_ALAW else g711.ULAW

    def idle_byte(self) -> int:
        return self.codec().silence if self.audio else 0xFF


@dataclass(eq=False)
class _Span:
    spanno: int
    name: str
    kind: str
    deflaw: int
    lineconfig: int
    channels: list[_Chan] = field(default_factory=list)
    peer: _Span | None = None
    #: what the span reports: its own alarms, plus YELLOW while its peer's line is down
    alarms: int = 0
    #: the alarms a test raised on this span itself
    raised: int = 0
    dchannel_cut: bool = False

    def line_up(self) -> bool:
        peer = self.peer
        return (peer is not None and not (self.alarms & LINE_DOWN)
                and not (peer.alarms & LINE_DOWN))


@dataclass(eq=False)
class _File:
    readiness: ReadinessFd
    kind: str  # "ctl", "unspecified" or "channel"
    nonblocking: bool
    chan: _Chan | None = None

    @property
    def fd(self) -> int:
        return self.readiness.fileno()


class SimKernel(DeviceIO):
    """The simulated kernel. Create it with the engine it runs on, then add spans."""

    def __init__(self, engine: Engine, *, tick: float = 0.020,
                 dev_dir: str = "/dev/dahdi") -> None:
        if tick <= 0 or round(tick * SAMPLE_RATE) < 1:
            raise ValueError(f"tick {tick} s carries no samples; expected at least 1/8000 s")
        self.engine = engine
        self.tick = tick
        self.dev_dir = dev_dir.rstrip("/")
        self.spans: list[_Span] = []
        self.channels: dict[int, _Chan] = {}
        self.zones: list[str] = []
        self.frame_taps: list[Callable[[FrameRecord], None]] = []
        #: ``filter(channo, frame) -> frame or None``: rewrites (or with None, loses) each
        #: D-channel frame written on ``channo`` before the kernel adds its FCS
        self.frame_filter: Callable[[int, bytes], bytes | None] | None = None
        self._files: dict[int, _File] = {}
        self._open_clear: list[_Chan] = []
        self._tick_timer: TimerHandle | None = None
        self._tx_frames: deque[tuple[_Chan, bytes]] = deque()
        self._flush_pending = False
        self._corrupt_next: set[int] = set()

    def describe(self) -> str:
        return f"simulated DAHDI kernel ({len(self.spans)} spans)"

    # ================================================================== hardware
    def add_loop(self, kind: str = "E1", *, channels: int | None = None) -> tuple[int, int]:
        """Add two spans wired back to back; returns their span numbers."""
        if kind not in SPAN_KINDS:
            raise ValueError(f"span kind {kind!r}; expected one of {sorted(SPAN_KINDS)}")
        count, law, lineconfig, _desc = SPAN_KINDS[kind]
        count = channels or count
        pair = []
        for side in range(2):
            spanno = len(self.spans) + 1
            span = _Span(spanno, f"SIM/loop{(spanno + 1) // 2}:{side}", kind, law, lineconfig)
            first = len(self.channels) + 1
            for pos in range(1, count + 1):
                chan = _Chan(first + pos - 1, span, pos)
                span.channels.append(chan)
                self.channels[chan.channo] = chan
            self.spans.append(span)
            pair.append(span)
        pair[0].peer, pair[1].peer = pair[1], pair[0]
        log.debug("added %s loop: spans %d and %d", kind, pair[0].spanno, pair[1].spanno)
        return pair[0].spanno, pair[1].spanno

    def configure(self, conf: SystemConf | str) -> None:
        """Give channels their signalling and law, and load zones, like dahdi_cfg."""
        if isinstance(conf, str):
            conf = SystemConf.parse(conf, source="simulated system.conf")
        for span_line in conf.spans:
            span = self._span(span_line.number)
            if span_line.kind != span.kind:
                raise ValueError(f"{conf.source}: span {span.spanno} is {span.kind} but its "
                                 f"span= line configures {span_line.kind} framing")
        for channo, kind in conf.signalling.items():
            chan = self.channels.get(channo)
            if chan is None:
                raise ValueError(f"{conf.source}: channel {channo} does not exist; the "
                                 f"simulator has channels 1..{len(self.channels)}")
            if kind not in SIGNALLING:
                raise ValueError(f"{conf.source}: {kind}= is not simulated; expected one of "
                                 f"{sorted(SIGNALLING)}")
            if chan.file is not None:
                raise ValueError(f"channel {channo} is open; dahdi_cfg cannot reconfigure it")
            chan.sig = SIGNALLING[kind]
        for channo, law in conf.laws.items():
            chan = self.channels[channo]
            chan.deflaw = {"alaw": abi.DAHDI_LAW_ALAW, "mulaw": abi.DAHDI_LAW_MULAW}.get(law, 0)
        self.zones = list(conf.zones)

    def _span(self, spanno: int) -> _Span:
        if not 1 <= spanno <= len(self.spans):
            raise ValueError(f"span {spanno} does not exist; the simulator has spans "
                             f"1..{len(self.spans)}")
        return self.spans[spanno - 1]

    # ================================================================== test controls
    def set_alarm(self, spanno: int, alarms: int) -> None:
        """Put a span in alarm (``abi.DAHDI_ALARM_RED``...), or clear it with 0.

        A span whose peer's line is down (RED, BLUE, LOS) shows YELLOW, the remote alarm a
        framer reports when the far end signals it has lost us.
        """
        span = self._span(spanno)
        span.raised = alarms
        for side in (span, span.peer):
            if side is not None:
                peer_down = side.peer is not None and side.peer.raised & LINE_DOWN
                self._set_span_alarms(side, side.raised | (abi.DAHDI_ALARM_YELLOW
                                                           if peer_down else 0))

    def _set_span_alarms(self, span: _Span, alarms: int) -> None:
        before, span.alarms = span.alarms, alarms
        if bool(before) == bool(alarms):
            return
        event = abi.DAHDI_EVENT_ALARM if alarms else abi.DAHDI_EVENT_NOALARM
        log.info("span %d: alarms %s", span.spanno, abi.alarm_names(alarms) or "cleared")
        # dahdi_alarm_notify: only a change of "in alarm or not" reaches the channels, all of
        # them; a closed channel's event is lost when it is next opened (open empties the queue).
        for chan in span.channels:
            chan.chan_alarms = alarms
            self._queue_event(chan, event)

    def cut_dchannel(self, spanno: int, cut: bool = True) -> None:
        """Lose every D-channel frame between a span and its peer (layer 2 only)."""
        span = self._span(spanno)
        span.dchannel_cut = cut
        if span.peer is not None:
            span.peer.dchannel_cut = cut

    def corrupt_next_frame(self, channo: int) -> None:
        """Damage the FCS of the next frame written on D-channel ``channo``."""
        self._corrupt_next.add(channo)

    def inject_frame(self, channo: int, frame: bytes) -> None:
        """Deliver ``frame`` (without FCS) to D-channel ``channo``'s reader, as if it came
        from the peer: for feeding malformed Q.931 to the layer above."""
        chan = self._chan(channo)
        self._receive_frame(chan, frame + hdlc.fcs(frame))

    def stats(self, channo: int) -> ChannelStats:
        return self._chan(channo).stats

    def _chan(self, channo: int) -> _Chan:
        chan = self.channels.get(channo)
        if chan is None:
            raise ValueError(f"channel {channo} does not exist in the simulator")
        return chan

    # ================================================================== the seam
    def open(self, path: str, flags: int) -> int:
        kind, chan = self._resolve(path)
        file = _File(ReadinessFd(), kind, bool(flags & os.O_NONBLOCK))
        try:
            if chan is not None:
                self._open_channel(file, chan)
        except OSError:
            file.readiness.close()
            raise
        self._files[file.fd] = file
        return file.fd

    def _resolve(self, path: str) -> tuple[str, _Chan | None]:
        prefix = self.dev_dir + "/"
        if not path.startswith(prefix) or not self.spans:
            raise _oserror(errno.ENOENT, path)
        name = path[len(prefix):]
        if name == "ctl":
            return "ctl", None
        if name == "channel":
            return "unspecified", None
        match = re.fullmatch(r"chan/(\d{3})/(\d{3})", name)
        if match:
            spanno, pos = int(match.group(1)), int(match.group(2))
            if 1 <= spanno <= len(self.spans) and 1 <= pos <= len(self.spans[spanno - 1].channels):
                return "channel", self.spans[spanno - 1].channels[pos - 1]
            raise _oserror(errno.ENOENT, path)
        if name.isdigit() and int(name) in self.channels:
            return "channel", self.channels[int(name)]
        raise _oserror(errno.ENOENT, path)

    def _open_channel(self, file: _File, chan: _Chan) -> None:
        if not chan.sig:
            raise _oserror(errno.ENXIO, chan.name)
        if chan.file is not None:
            raise _oserror(errno.EBUSY, chan.name)
        chan.reset()
        chan.file = file
        file.kind = "channel"
        file.chan = chan
        if chan.is_clear:
            self._open_clear.append(chan)
            self._start_ticking()

    def close(self, fd: int) -> None:
        file = self._files.pop(fd, None)
        if file is None:
            raise _oserror(errno.EBADF, f"fd {fd}")
        chan = file.chan
        if chan is not None:
            chan.file = None
            chan.flush(read=True, write=True)  # unsent data is lost, as in close_channel
            chan.events.clear()
            chan.linear = False
            chan.law = chan.deflaw or chan.span.deflaw
            if chan in self._open_clear:
                self._open_clear.remove(chan)
        file.readiness.close()

    def read(self, fd: int, size: int) -> bytes:
        chan = self._channel_of(fd, "read")
        if size < 1:
            raise _oserror(errno.EINVAL, chan.name)
        if chan.events:
            raise _oserror(abi.ELAST, chan.name)
        if not chan.rx:
            raise _oserror(errno.EAGAIN, chan.name)
        block = chan.rx.popleft()
        self._update_readiness(chan)
        if chan.linear:
            return chan.codec().decode_s16le(block)[:size & ~1]
        return block[:size]

    def write(self, fd: int, data: bytes) -> int:
        chan = self._channel_of(fd, "write")
        if len(data) < 1:
            raise _oserror(errno.EINVAL, chan.name)
        if chan.events:
            raise _oserror(abi.ELAST, chan.name)
        if len(chan.tx) >= chan.numbufs:
            raise _oserror(errno.EAGAIN, chan.name)
        if chan.linear:
            data = chan.codec().encode_s16le(bytes(data[: chan.blocksize * 2]))
        else:
            data = bytes(data[: chan.blocksize])
        if chan.is_hdlc:
            self._transmit_frame(chan, data)
            return len(data)
        chan.tx.append(data)
        if chan.txdisable and self._tx_may_start(chan):
            chan.txdisable = False
        return len(data) * (2 if chan.linear else 1)

    def ioctl(self, fd: int, request: int, arg: IoctlArg = 0) -> int:
        file = self._files.get(fd)
        if file is None:
            raise _oserror(errno.EBADF, f"fd {fd}")
        name = abi.IOCTL_NAMES.get(request, hex(request))
        # Each kind of open file has its own ioctl table in dahdi-base.c.
        if file.kind == "unspecified":
            if request != abi.DAHDI_SPECIFY:
                raise _oserror(errno.ENOSYS, f"{name} before DAHDI_SPECIFY")
        elif file.kind == "ctl":
            if request not in _CTL_IOCTLS:
                raise _oserror(errno.ENOTTY, f"{name} on /dev/dahdi/ctl")
        elif request in _CTL_ONLY_IOCTLS:
            raise _oserror(errno.ENOTTY, f"{name} on a channel")
        handler = _IOCTLS.get(request)
        if handler is None:
            raise _oserror(errno.ENOTTY, name)
        return handler(self, file, arg)

    def _channel_of(self, fd: int, operation: str) -> _Chan:
        file = self._files.get(fd)
        if file is None:
            raise _oserror(errno.EBADF, f"fd {fd}")
        if file.chan is None:
            raise _oserror(errno.ENOSYS, f"{operation} on {file.kind} fd {fd}")
        return file.chan

    # ================================================================== events, readiness
    def _queue_event(self, chan: _Chan, event: int) -> None:
        if len(chan.events) >= MAX_QUEUED_EVENTS:
            log.warning("%s: event queue full, %s dropped", chan.name, abi.event_name(event))
            return
        chan.events.append(event)
        self._update_readiness(chan)

    def _update_readiness(self, chan: _Chan) -> None:
        file = chan.file
        if file is not None:
            file.readiness.update(bool(chan.rx), bool(chan.events))

    # ================================================================== B-channels
    def _start_ticking(self) -> None:
        if self._tick_timer is None:
            self._tick_timer = self.engine.call_later(self.tick, self._on_tick)

    def _on_tick(self) -> None:
        self._tick_timer = None
        if not self._open_clear:
            return
        nbytes = round(self.tick * SAMPLE_RATE)
        sent = {chan: self._take_tx(chan, nbytes) for chan in self._open_clear}
        for chan in self._open_clear:
            peer = self._peer_chan(chan)
            if peer is None or not chan.span.line_up():
                continue  # a span in RED receives nothing at all
            if peer in sent:
                data = sent[peer]
            else:  # a closed transmitter still sends its idle pattern
                data = bytes([peer.idle_byte()]) * nbytes if peer.sig else b"\xff" * nbytes
            self._receive_bytes(chan, data)
        self._start_ticking()

    def _peer_chan(self, chan: _Chan) -> _Chan | None:
        peer = chan.span.peer
        if peer is None or chan.chanpos > len(peer.channels):
            return None
        return peer.channels[chan.chanpos - 1]

    def _tx_may_start(self, chan: _Chan) -> bool:
        if chan.txpolicy == abi.DAHDI_POLICY_WHEN_FULL:
            return len(chan.tx) >= chan.numbufs
        if chan.txpolicy == abi.DAHDI_POLICY_HALF_FULL:
            return len(chan.tx) >= chan.numbufs // 2
        return True

    def _take_tx(self, chan: _Chan, nbytes: int) -> bytes:
        out = bytearray()
        if not chan.txdisable:
            while chan.tx and len(out) < nbytes:
                head = chan.tx[0]
                take = head[chan.tx_offset: chan.tx_offset + nbytes - len(out)]
                out += take
                chan.tx_offset += len(take)
                if chan.tx_offset >= len(head):
                    chan.tx.popleft()
                    chan.tx_offset = 0
                    if not chan.tx and chan.txpolicy != abi.DAHDI_POLICY_IMMEDIATE:
                        chan.txdisable = True
        sent = len(out)
        chan.stats.tx_bytes += sent
        if sent < nbytes:
            # Counted for tests and benchmarks: the writer had a stream going and was late.
            if chan.flowing:
                chan.stats.tx_underruns += 1
            chan.flowing = False
            if not chan.underrun_flag:
                chan.underrun_flag = True
                if chan.buffer_events:
                    self._queue_event(chan, abi.DAHDI_EVENT_WRITE_UNDERRUN)
            out += bytes([chan.idle_byte()]) * (nbytes - sent)
        else:
            chan.underrun_flag = False
            chan.flowing = True
        return bytes(out)

    def _receive_bytes(self, chan: _Chan, data: bytes) -> None:
        chan.stats.rx_bytes += len(data)
        partial = chan.rx_partial
        partial += data
        blocksize = chan.blocksize
        got_block = False
        while len(partial) >= blocksize:
            block = bytes(partial[:blocksize])
            del partial[:blocksize]
            if len(chan.rx) >= chan.numbufs:
                # Every read buffer is full: the new block is lost, once noted per episode.
                chan.stats.rx_overruns += 1
                if not chan.overrun_flag:
                    chan.overrun_flag = True
                    if chan.buffer_events:
                        self._queue_event(chan, abi.DAHDI_EVENT_READ_OVERRUN)
                continue
            chan.overrun_flag = False
            chan.rx.append(block)
            got_block = True
        if got_block:
            self._update_readiness(chan)

    # ================================================================== D-channels
    def _transmit_frame(self, chan: _Chan, data: bytes) -> None:
        if len(data) < 2:  # calc_fcs skips it: the byte goes out raw and fails the check
            frame, fcs = b"", data
        else:
            frame = data[:-2]
            if self.frame_filter is not None:
                filtered = self.frame_filter(chan.channo, frame)
                if filtered is None:
                    chan.stats.frames_dropped += 1
                    return
                frame = filtered
            fcs = hdlc.fcs(frame)
        if chan.channo in self._corrupt_next:
            self._corrupt_next.discard(chan.channo)
            fcs = bytes(b ^ 0xFF for b in fcs)
        chan.stats.frames_sent += 1
        self._tx_frames.append((chan, frame + fcs))
        if not self._flush_pending:
            self._flush_pending = True
            self.engine.call_soon(self._flush_frames)

    def _flush_frames(self) -> None:
        self._flush_pending = False
        frames, self._tx_frames = self._tx_frames, deque()
        for chan, frame in frames:
            peer = self._peer_chan(chan)
            delivered = (peer is not None and chan.span.line_up()
                         and not chan.span.dchannel_cut and peer.is_hdlc)
            record = FrameRecord(self.engine.time(), chan.channo,
                                 peer.channo if peer is not None else 0, frame[:-2], delivered)
            for tap in self.frame_taps:
                try:
                    tap(record)
                except Exception:
                    log.exception("frame tap %r failed", tap)
            if delivered:
                assert peer is not None
                self._receive_frame(peer, frame)

    def _receive_frame(self, chan: _Chan, frame: bytes) -> None:
        if chan.file is None:
            return  # nobody has the D-channel open: the kernel keeps nothing for later
        if len(chan.rx) >= chan.numbufs:  # the ring is full: the bytes are not even decoded
            chan.stats.frames_dropped += 1
            return
        error = None
        if not hdlc.check(frame):
            error = abi.DAHDI_EVENT_BADFCS
        elif len(frame) >= chan.blocksize:  # the receiver ran out of buffer mid-frame
            error = abi.DAHDI_EVENT_OVERRUN
        if error is not None:
            chan.stats.frames_dropped += 1
            if not chan.span.alarms:  # the kernel keeps quiet about bad frames in alarm
                self._queue_event(chan, error)
            return
        chan.stats.frames_received += 1
        chan.rx.append(frame[: chan.blocksize])
        self._update_readiness(chan)

    # ================================================================== ioctls
    def _ioctl_specify(self, file: _File, arg: IoctlArg) -> int:
        channo = _int_in(arg)
        chan = self.channels.get(channo)
        if chan is None:
            raise _oserror(errno.EINVAL, f"channel {channo} does not exist")
        self._open_channel(file, chan)
        return 0

    def _ioctl_channo(self, file: _File, arg: IoctlArg) -> int:
        return _int_out(arg, self._need_chan(file).channo)

    def _need_chan(self, file: _File) -> _Chan:
        if file.chan is None:
            raise _oserror(errno.EINVAL, f"{file.kind} fd has no channel")
        return file.chan

    def _ioctl_get_params(self, file: _File, arg: IoctlArg) -> int:
        params = _struct(arg, abi.DahdiParams)
        if file.chan is not None:
            chan = file.chan
        else:
            channo = params.channo & ~abi.DAHDI_GET_PARAMS_RETURN_MASTER
            chan = self.channels.get(channo)
            if chan is None:
                raise _oserror(errno.EINVAL, f"channel {channo}")
        ctypes.memset(ctypes.addressof(params), 0, ctypes.sizeof(params))
        params.channo = chan.channo
        params.spanno = chan.span.spanno
        params.chanpos = chan.chanpos
        params.sigtype = chan.sig
        params.sigcap = (abi.DAHDI_SIG_CLEAR | abi.DAHDI_SIG_HDLCFCS | abi.DAHDI_SIG_HARDHDLC
                         | abi.DAHDI_SIG_FXOKS | abi.DAHDI_SIG_FXSKS)
        params.curlaw = chan.law or chan.deflaw or chan.span.deflaw
        params.name = chan.name.encode()[:39]
        params.chan_alarms = chan.chan_alarms
        return 0

    def _ioctl_spanstat(self, file: _File, arg: IoctlArg) -> int:
        info = _struct(arg, abi.DahdiSpanInfo)
        spanno = info.spanno
        if spanno == 0:
            if file.chan is None:
                raise _oserror(errno.EINVAL, "DAHDI_SPANSTAT of span 0 on a fd without channel")
            spanno = file.chan.span.spanno
        if not 1 <= spanno <= len(self.spans):
            raise _oserror(errno.EINVAL, f"span {spanno}")
        span = self.spans[spanno - 1]
        ctypes.memset(ctypes.addressof(info), 0, ctypes.sizeof(info))
        info.spanno = span.spanno
        info.name = span.name.encode()
        info.desc = f"Simulated {span.kind} span {span.spanno} (looped)".encode()
        info.alarms = span.alarms
        info.numchans = sum(1 for c in span.channels if c.sig)
        info.totalchans = len(span.channels)
        info.totalspans = len(self.spans)
        info.lineconfig = span.lineconfig
        info.spantype = span.kind.encode()
        info.manufacturer = b"uascall"
        info.devicetype = b"simulated DAHDI kernel"
        return 0

    def _ioctl_get_blocksize(self, file: _File, arg: IoctlArg) -> int:
        return _int_out(arg, self._need_chan(file).blocksize)

    def _ioctl_set_blocksize(self, file: _File, arg: IoctlArg) -> int:
        chan = self._need_chan(file)
        size = _int_in(arg)
        if not 16 <= size <= abi.DAHDI_MAX_BLOCKSIZE:
            raise _oserror(errno.EINVAL, f"{chan.name}: block size {size}")
        self._realloc(chan, size, chan.numbufs)
        return 0

    def _realloc(self, chan: _Chan, blocksize: int, numbufs: int) -> None:
        # dahdi_reallocbufs: new buffers, so whatever was queued is gone
        chan.blocksize = blocksize
        chan.numbufs = min(max(numbufs, 2), abi.DAHDI_MAX_NUM_BUFS)
        chan.flush(read=True, write=True)
        chan.txdisable = chan.txpolicy != abi.DAHDI_POLICY_IMMEDIATE
        self._update_readiness(chan)

    def _ioctl_get_bufinfo(self, file: _File, arg: IoctlArg) -> int:
        chan = self._need_chan(file)
        info = _struct(arg, abi.DahdiBufferInfo)
        info.txbufpolicy = chan.txpolicy
        info.rxbufpolicy = abi.DAHDI_POLICY_IMMEDIATE
        info.numbufs = chan.numbufs
        info.bufsize = chan.blocksize
        info.readbufs = -1
        info.writebufs = -1
        return 0

    def _ioctl_set_bufinfo(self, file: _File, arg: IoctlArg) -> int:
        chan = self._need_chan(file)
        info = _struct(arg, abi.DahdiBufferInfo)
        if not 16 <= info.bufsize <= abi.DAHDI_MAX_BLOCKSIZE:
            raise _oserror(errno.EINVAL, f"{chan.name}: buffer size {info.bufsize}")
        if info.bufsize * info.numbufs > abi.DAHDI_MAX_BUF_SPACE:
            raise _oserror(errno.EINVAL, f"{chan.name}: {info.numbufs} x {info.bufsize} bytes")
        chan.txpolicy = info.txbufpolicy & 0x3
        self._realloc(chan, info.bufsize, info.numbufs)
        return 0

    def _ioctl_setlaw(self, file: _File, arg: IoctlArg) -> int:
        chan = self._need_chan(file)
        law = _int_in(arg)
        if law == abi.DAHDI_LAW_DEFAULT:
            chan.law = chan.deflaw or chan.span.deflaw
        elif law in (abi.DAHDI_LAW_MULAW, abi.DAHDI_LAW_ALAW):
            chan.law = law
        else:
            raise _oserror(errno.EINVAL, f"{chan.name}: law {law}")
        return 0

    def _ioctl_setlinear(self, file: _File, arg: IoctlArg) -> int:
        self._need_audio(file).linear = bool(_int_in(arg))
        return 0

    def _need_audio(self, file: _File) -> _Chan:
        chan = self._need_chan(file)
        if not chan.audio:
            raise _oserror(errno.EINVAL, f"{chan.name}: needs DAHDI_AUDIOMODE first")
        return chan

    def _ioctl_audiomode(self, file: _File, arg: IoctlArg) -> int:
        chan = self._need_chan(file)
        if not chan.is_clear:
            raise _oserror(errno.EINVAL, f"{chan.name}: AUDIOMODE on a {abi.sig_name(chan.sig)} "
                           "channel")
        chan.audio = bool(_int_in(arg))
        return 0

    def _ioctl_flush(self, file: _File, arg: IoctlArg) -> int:
        chan = self._need_chan(file)
        which = _int_in(arg)
        chan.flush(read=bool(which & abi.DAHDI_FLUSH_READ),
                   write=bool(which & abi.DAHDI_FLUSH_WRITE))
        if which & abi.DAHDI_FLUSH_EVENT:
            chan.events.clear()
        self._update_readiness(chan)
        return 0

    def _ioctl_getevent(self, file: _File, arg: IoctlArg) -> int:
        chan = self._need_chan(file)
        event = chan.events.popleft() if chan.events else abi.DAHDI_EVENT_NONE
        if event != abi.DAHDI_EVENT_NONE:
            self._update_readiness(chan)
        return _int_out(arg, event)

    def _ioctl_buffer_events(self, file: _File, arg: IoctlArg) -> int:
        self._need_chan(file).buffer_events = bool(_int_in(arg))
        return 0

    def _ioctl_hook(self, file: _File, arg: IoctlArg) -> int:
        chan = self._need_chan(file)
        raise _oserror(errno.EINVAL, f"{chan.name}: DAHDI_HOOK on a {abi.sig_name(chan.sig)} "
                       "channel (analog signalling is not simulated yet)")

    def _ioctl_sendtone(self, file: _File, arg: IoctlArg) -> int:
        self._need_chan(file)
        if _int_in(arg) == abi.DAHDI_TONE_STOP:
            return 0
        return self._ioctl_needs_zone(file, arg)

    def _ioctl_needs_zone(self, file: _File, arg: IoctlArg) -> int:
        chan = self._need_chan(file)
        if not self.zones:
            raise _oserror(errno.ENODATA, f"{chan.name}: no tone zone loaded")
        return 0

    def _ioctl_echocancel_params(self, file: _File, arg: IoctlArg) -> int:
        self._need_audio(file)
        if _struct(arg, abi.DahdiEchoCanParams).param_count > abi.DAHDI_MAX_ECHOCANPARAMS:
            raise _oserror(errno.E2BIG, "echo canceller parameters")
        return 0  # no echocanceller= module attached: the kernel accepts and does nothing

    def _ioctl_getgains(self, file: _File, arg: IoctlArg) -> int:
        self._need_audio(file)
        gains = _struct(arg, abi.DahdiGains)
        for i in range(256):
            gains.rxgain[i] = i
            gains.txgain[i] = i
        return 0

    def _ioctl_setgains(self, file: _File, arg: IoctlArg) -> int:
        chan = self._need_audio(file)
        chan.gains = bytes(_struct(arg, abi.DahdiGains))
        return 0

    def _ioctl_getversion(self, file: _File, arg: IoctlArg) -> int:
        info = _struct(arg, abi.DahdiVersionInfo)
        info.version = b"2.11.1 (uascall simulator)"
        info.echo_canceller = b""
        return 0


def _oserror(err: int, where: str) -> OSError:
    strerror = "Unknown error 500 (ELAST)" if err == abi.ELAST else os.strerror(err)
    return OSError(err, strerror, where)


def _int_in(arg: IoctlArg) -> int:
    if isinstance(arg, int):
        return arg
    if isinstance(arg, ctypes.c_int):
        return arg.value
    return ctypes.c_int.from_buffer(arg).value


def _int_out(arg: IoctlArg, value: int) -> int:
    if isinstance(arg, ctypes.c_int):
        arg.value = value
    elif not isinstance(arg, int):
        ctypes.c_int.from_buffer(arg).value = value
    else:
        raise _oserror(errno.EFAULT, "ioctl needs a pointer to an int")
    return 0


def _struct(arg: IoctlArg, cls: type[ctypes.Structure]) -> ctypes.Structure:
    if isinstance(arg, cls):
        return arg
    if isinstance(arg, int) or ctypes.sizeof(arg) < ctypes.sizeof(cls):  # type: ignore[arg-type]
        raise _oserror(errno.EFAULT, f"ioctl needs a struct {cls._c_name_}")  # type: ignore[attr-defined]
    return cls.from_buffer(arg)


_IOCTLS: dict[int, Callable[[SimKernel, _File, IoctlArg], int]] = {
    abi.DAHDI_SPECIFY: SimKernel._ioctl_specify,
    abi.DAHDI_CHANNO: SimKernel._ioctl_channo,
    abi.DAHDI_GET_PARAMS: SimKernel._ioctl_get_params,
    abi.DAHDI_SPANSTAT: SimKernel._ioctl_spanstat,
    abi.DAHDI_GET_BLOCKSIZE: SimKernel._ioctl_get_blocksize,
    abi.DAHDI_SET_BLOCKSIZE: SimKernel._ioctl_set_blocksize,
    abi.DAHDI_GET_BUFINFO: SimKernel._ioctl_get_bufinfo,
    abi.DAHDI_SET_BUFINFO: SimKernel._ioctl_set_bufinfo,
    abi.DAHDI_SETLAW: SimKernel._ioctl_setlaw,
    abi.DAHDI_SETLINEAR: SimKernel._ioctl_setlinear,
    abi.DAHDI_AUDIOMODE: SimKernel._ioctl_audiomode,
    abi.DAHDI_FLUSH: SimKernel._ioctl_flush,
    abi.DAHDI_GETEVENT: SimKernel._ioctl_getevent,
    abi.DAHDI_BUFFER_EVENTS: SimKernel._ioctl_buffer_events,
    abi.DAHDI_HOOK: SimKernel._ioctl_hook,
    abi.DAHDI_SENDTONE: SimKernel._ioctl_sendtone,
    abi.DAHDI_ECHOCANCEL_PARAMS: SimKernel._ioctl_echocancel_params,
    abi.DAHDI_DIAL: SimKernel._ioctl_needs_zone,
    abi.DAHDI_GETGAINS: SimKernel._ioctl_getgains,
    abi.DAHDI_SETGAINS: SimKernel._ioctl_setgains,
    abi.DAHDI_GETVERSION: SimKernel._ioctl_getversion,
}
_CTL_IOCTLS = frozenset({abi.DAHDI_GET_PARAMS, abi.DAHDI_SPANSTAT, abi.DAHDI_GETVERSION})
_CTL_ONLY_IOCTLS = frozenset({abi.DAHDI_GETVERSION, abi.DAHDI_SPECIFY})
