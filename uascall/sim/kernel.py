"""A simulated DAHDI kernel at the device seam, so the real :mod:`uascall.dahdi` runs on it.

:class:`SimKernel` implements :class:`~uascall.dahdi.device.DeviceIO` (open, close, read,
write, ioctl) with the rules of dahdi-base.c, over real descriptors whose POLLIN/POLLPRI
readiness it sets for the engine (:mod:`uascall.sim.readiness`), so the binding waits on
them as it does on boards, registered with the engine. It runs on the engine thread and
keeps time with the engine's clock, real or virtual.

What it models
--------------
- Spans in back-to-back pairs, like ``dahdi_dynamic_loc``: channel *n* of one span is
  wired to channel *n* of its peer. ``add_loop("E1")`` adds two 31-channel spans,
  ``add_loop("T1")`` two 24-channel ones; :meth:`SimKernel.configure` gives channels
  their signalling from system.conf text, as dahdi_cfg does, and creates the spans of
  ``dynamic=loc,...`` lines as dahdi_dynamic_loc does (the configuration the vm rig uses
  on the real driver).
- Opening: ``/dev/dahdi/channel`` + DAHDI_SPECIFY, ``/dev/dahdi/chan/SSS/CCC``,
  ``/dev/dahdi/N`` and ``/dev/dahdi/ctl``; ENXIO for a channel without signalling, EBUSY
  for one already open, ENOENT for a node that does not exist. Opening resets the
  channel as ``initialize_channel`` does (block size 1024, two buffers, immediate policy,
  the span's law, no linear mode, audio mode off).
- B-channels (CLEAR) paced at 8,000 bytes/s on the engine's clock: once every ``tick``
  seconds each open channel receives what its peer's write buffers put on the line since
  the last time (``8000 * tick`` bytes), in read buffers that become readable block by
  block. The clock keeps a fixed grid (a tick that runs late moves all that was due, as
  a card's crystal would not wait) and ``phases`` moments in each tick (20: a card's
  1 ms interrupt). A channel is served at the phase it was opened in, as the driver
  counts a channel's blocks from its opening, so that the channels of a busy span become
  readable spread over the tick, not all at once; a clock that ran late serves each
  phase it missed once, with what the line had carried by that phase's moment. A
  stream written to an idle channel starts at the line's next millisecond plus a phase
  fixed per channel, so a reader's blocks do not line up with the writer's frames.
  Buffer counts and sizes, the IMMEDIATE / WHEN_FULL / HALF_FULL transmit policies,
  underruns (silence goes out in audio mode, 0xFF otherwise, and WRITE_UNDERRUN is
  queued with DAHDI_BUFFER_EVENTS), overruns (a block
  that finds every read buffer full is dropped; READ_OVERRUN once per episode with
  DAHDI_BUFFER_EVENTS), linear mode (s16 converted with the channel's law by the
  kernel's own tables, :mod:`uascall.sim.linear`, in audio mode only) are as in the kernel.
- D-channels (HDLCFCS): a write is one frame whose last two bytes the kernel overwrites
  with the FCS; the peer reads frame + FCS. The line carries 64 kbit/s on the engine's
  clock: a frame holds it for a flag, its octets and FCS and the zeros stuffed into them
  (:func:`uascall.sim.hdlc.line_bits`), after the frames written before it, and reaches
  the peer when its last bit has crossed. Until then it holds one of the channel's write
  buffers: a write that finds all ``numbufs`` of them holding frames fails with EAGAIN,
  as the driver's does (the 32 buffers libpri users ask for hold 32 frames, about 40 ms
  of the line for the shortest). A frame with a bad FCS, or as long as the
  receiver's block size, is not delivered and BADFCS or OVERRUN is queued instead (not in
  alarm); a frame that finds every read buffer full is lost without a word. After an
  overrun the receiver hunts for a flag from where it stopped, so a frame that followed
  the long one back to back (written before it had left, with no idle flags between) is
  lost with BADFCS too, as on the real driver.
- Events: a queue of at most 63 per channel (newer ones are dropped when it is full),
  read and write fail with ELAST while any are queued, POLLPRI is raised.
- Alarms: :meth:`set_alarm` puts a span in alarm; nothing crosses the line while either
  side of a pair is in RED, its peer shows YELLOW, and every channel of both gets ALARM
  (NOALARM when it clears), as dahdi_alarm_notify does. :meth:`cut_dchannel` loses the
  D-channel frames of a pair without an alarm (layer 2 breaks, layer 1 stays up).

What it does not model
----------------------
Most kernel-generated tones (SENDTONE needs a tone zone: ENODATA without one, and with one
a zone tone is accepted but produces no audio, while a DTMF tone sounds until it is
stopped; DAHDI_DIAL's MF digits take the kernel's time but
sound nothing, while its DTMF digits sound and its pulse digits are made for real:
:mod:`uascall.sim.cas`), conferencing, echo
cancellers (ECHOCANCEL_PARAMS is accepted and does nothing, like a kernel without an
echocanceller= module), gains (stored, not applied), blocking reads and writes (they
fail with EAGAIN as if O_NONBLOCK were set: the simulator must never block the engine),
and POLLOUT (a write that finds no free buffer fails with EAGAIN, as on the kernel). Analog
hook signalling is dahdi-base's robbed-bit machinery (:mod:`uascall.sim.cas`) on every
span; ``add_loop("ANALOG")`` is an FXS card wired to an FXO card, whose lines also carry
polarity (DAHDI_SETPOLARITY), which nothing else does.

Test hooks beyond the kernel: :meth:`SimKernel.set_alarm`, :meth:`SimKernel.cut_dchannel`,
:meth:`SimKernel.corrupt_next_frame`, :meth:`SimKernel.inject_frame` (straight into a
reader, not over the line),
:attr:`SimKernel.frame_filter` (rewrite or lose frames on the wire), ``frame_taps`` and
per-channel :class:`ChannelStats`.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
from collections.abc import Callable

from uascall.dahdi import abi
from uascall.dahdi.config import SystemConf
from uascall.dahdi.device import DeviceIO, IoctlArg
from uascall.engine import Engine, TimerHandle
from uascall.sim import hdlc, ioctls
from uascall.sim.cas import CasLines
from uascall.sim.linear import kernel_law
from uascall.sim.model import (
    DCHANNEL_BITS_PER_SECOND,
    DYNAMIC,
    LINE_DOWN,
    MAX_QUEUED_EVENTS,
    SAMPLE_RATE,
    SIGNALLING,
    SPAN_KINDS,
    ChannelStats,
    FrameRecord,
    OpenFile,
    SimChannel,
    SimSpan,
    oserror,
)
from uascall.sim.readiness import ReadinessFd

log = logging.getLogger(__name__)


class SimKernel(DeviceIO):
    """The simulated kernel. Create it with the engine it runs on, then add spans."""

    def __init__(self, engine: Engine, *, tick: float = 0.020, phases: int = 20,
                 dev_dir: str = "/dev/dahdi") -> None:
        if tick <= 0 or round(tick * SAMPLE_RATE) < 1:
            raise ValueError(f"tick {tick} s carries no samples; expected at least 1/8000 s")
        if not isinstance(phases, int) or not 1 <= phases <= round(tick * SAMPLE_RATE):
            raise ValueError(f"phases {phases!r} for a {tick} s tick; expected a whole number "
                             f"from 1 to {round(tick * SAMPLE_RATE)} (a phase carries a sample)")
        self.engine = engine
        self.tick = tick
        self.phases = phases
        self._period = tick / phases  # between two phases of the line's clock
        #: called with a phase's number after the line has served that phase's channels
        self.after_phase: list[Callable[[int], None]] = []
        self.dev_dir = dev_dir.rstrip("/")
        self.spans: list[SimSpan] = []
        self.channels: dict[int, SimChannel] = {}
        self.zones: list[str] = []
        self.default_zone: str | None = None
        self.cas = CasLines(self)
        self.frame_taps: list[Callable[[FrameRecord], None]] = []
        #: ``filter(channo, frame) -> frame or None``: rewrites (or with None, loses) each
        #: D-channel frame written on ``channo`` before the kernel adds its FCS
        self.frame_filter: Callable[[int, bytes], bytes | None] | None = None
        self._files: dict[int, OpenFile] = {}
        # open channels the line clock moves, each with the channel wired to it (fixed
        # while it is open: spans are only replaced while their channels are closed)
        self._open_audio: dict[SimChannel, SimChannel | None] = {}
        # the same, by the phase of the line's tick at which each channel is served
        self._phase_members: list[dict[SimChannel, SimChannel | None]] = [
            {} for _ in range(phases)]
        self._tick_timer: TimerHandle | None = None
        self._ticking_since: float | None = None  # when the B-channel clock started
        self._phases_done = 0  # phases of the line clock served since it started
        self._bytes_moved = 0  # the bytes the line had carried at the last phase served
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
            span = SimSpan(spanno, f"SIM/loop{(spanno + 1) // 2}:{side}", kind, law, lineconfig)
            first = len(self.channels) + 1
            for pos in range(1, count + 1):
                chan = SimChannel(first + pos - 1, span, pos)
                span.channels.append(chan)
                self.channels[chan.channo] = chan
            self.spans.append(span)
            pair.append(span)
        pair[0].peer, pair[1].peer = pair[1], pair[0]
        log.debug("added %s loop: spans %d and %d", kind, pair[0].spanno, pair[1].spanno)
        return pair[0].spanno, pair[1].spanno

    def configure(self, conf: SystemConf | str) -> None:
        """Give channels their signalling and law, and load zones, like dahdi_cfg.

        ``dynamic=loc,KEY:ID,N,TIMING`` lines create spans as dahdi_dynamic_loc does: N
        channels each, mu-law by default, the two spans of a key wired back to back. Like
        dahdi_cfg, a configuration with dynamic lines replaces the dynamic spans there were.
        """
        if isinstance(conf, str):
            conf = SystemConf.parse(conf, source="simulated system.conf")
        if conf.dynamic:
            self._create_dynamic_spans(conf)
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
        # dahdi_cfg loads the "us" zone when system.conf names none
        self.zones = list(conf.zones) or ["us"]
        self.default_zone = conf.default_zone or self.zones[0]
        self.cas.configure(list(self.channels.values()))

    def _create_dynamic_spans(self, conf: SystemConf) -> None:
        fixed = [span for span in self.spans if span.kind != DYNAMIC]
        for chan in self.channels.values():
            if chan.span.kind == DYNAMIC and chan.file is not None:
                raise ValueError(f"channel {chan.channo} is open; dahdi_cfg cannot replace "
                                 "the dynamic spans under it")
        self.spans = fixed
        self.channels = {c.channo: c for span in fixed for c in span.channels}
        keys: dict[str, list[SimSpan]] = {}
        for line in conf.dynamic:
            if line.driver != "loc":
                raise ValueError(f"{conf.source}: dynamic={line.driver},...: only the 'loc' "
                                 "driver is simulated (two spans with one key, looped)")
            key, _, ident = line.address.partition(":")
            if not ident.isdigit():
                raise ValueError(f"{conf.source}: dynamic loc address {line.address!r}; "
                                 "expected KEY:ID (ID 0 or 1)")
            spanno = len(self.spans) + 1
            span = SimSpan(spanno, f"DYN/loc/{line.address}", DYNAMIC, abi.DAHDI_LAW_MULAW, 0)
            first = len(self.channels) + 1
            for pos in range(1, line.channels + 1):
                chan = SimChannel(first + pos - 1, span, pos)
                span.channels.append(chan)
                self.channels[chan.channo] = chan
            self.spans.append(span)
            keys.setdefault(key, []).append(span)
        for key, spans in keys.items():
            if len(spans) != 2 or len(spans[0].channels) != len(spans[1].channels):
                raise ValueError(f"{conf.source}: dynamic loc key {key} has {len(spans)} "
                                 "spans; expected two of the same size (the simulator only "
                                 "loops pairs)")
            spans[0].peer, spans[1].peer = spans[1], spans[0]

    def _span(self, spanno: int) -> SimSpan:
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

    def _set_span_alarms(self, span: SimSpan, alarms: int) -> None:
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
        """Deliver ``frame`` (without FCS) to D-channel ``channo``'s reader at once, as if
        it came from the peer, without taking the line's time: for feeding malformed Q.931
        to the layer above."""
        chan = self._chan(channo)
        self._receive_frame(chan, frame + hdlc.fcs(frame))

    def stats(self, channo: int) -> ChannelStats:
        return self._chan(channo).stats

    def _chan(self, channo: int) -> SimChannel:
        chan = self.channels.get(channo)
        if chan is None:
            raise ValueError(f"channel {channo} does not exist in the simulator")
        return chan

    # ================================================================== the seam
    def open(self, path: str, flags: int) -> int:
        kind, chan = self._resolve(path)
        file = OpenFile(ReadinessFd(self.engine), kind, bool(flags & os.O_NONBLOCK))
        try:
            if chan is not None:
                self._open_channel(file, chan)
        except OSError:
            file.readiness.close()
            raise
        self._files[file.fd] = file
        return file.fd

    def _resolve(self, path: str) -> tuple[str, SimChannel | None]:
        prefix = self.dev_dir + "/"
        if not path.startswith(prefix) or not self.spans:
            raise oserror(errno.ENOENT, path)
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
            raise oserror(errno.ENOENT, path)
        if name.isdigit() and int(name) in self.channels:
            return "channel", self.channels[int(name)]
        raise oserror(errno.ENOENT, path)

    def _open_channel(self, file: OpenFile, chan: SimChannel) -> None:
        if not chan.sig:
            raise oserror(errno.ENXIO, chan.name)
        if chan.file is not None:
            raise oserror(errno.EBUSY, chan.name)
        chan.reset()
        chan.file = file
        file.kind = "channel"
        file.chan = chan
        self.cas.opened(chan)
        if chan.carries_audio:
            self._start_ticking()
            peer = self._peer_chan(chan)
            self._open_audio[chan] = peer
            # The channel is served at the phase just past, from now on once a tick: its
            # blocks complete a tick after it opened, as the driver's count from open.
            chan.line_phase = self._phases_done % self.phases
            chan.line_moved = self._bytes_moved
            self._phase_members[chan.line_phase][chan] = peer

    def close(self, fd: int) -> None:
        file = self._files.pop(fd, None)
        if file is None:
            raise oserror(errno.EBADF, f"fd {fd}")
        chan = file.chan
        if chan is not None:
            chan.file = None
            self.cas.closed(chan)
            chan.flush(read=True, write=True)  # unsent data is lost, as in close_channel
            chan.events.clear()
            chan.linear = False
            chan.law = chan.deflaw or chan.span.deflaw
            if chan in self._open_audio:
                del self._open_audio[chan]
                del self._phase_members[chan.line_phase][chan]
        file.readiness.close()

    def read(self, fd: int, size: int) -> bytes:
        file = self._files.get(fd)
        chan = file.chan if file is not None else None
        if chan is None:
            chan = self._channel_of(fd, "read")  # raises EBADF or ENOSYS
        if size < 1:
            raise oserror(errno.EINVAL, chan.name)
        if chan.events:
            raise oserror(abi.ELAST, chan.name)
        rx = chan.rx
        if not rx:
            raise oserror(errno.EAGAIN, chan.name)
        block = rx.popleft()
        if file is not None:
            file.readiness.update(bool(rx), False)  # no events queued: ELAST above
        if chan.linear:
            return kernel_law(chan.codec().name).decode_s16le(block)[:size & ~1]
        return block[:size]

    def may_read(self, fd: int) -> bool:
        """False when a read would fail with EAGAIN (the binding then need not try)."""
        file = self._files.get(fd)
        chan = file.chan if file is not None else None
        return chan is None or bool(chan.rx or chan.events)

    def write(self, fd: int, data: bytes) -> int:
        file = self._files.get(fd)
        chan = file.chan if file is not None else None
        if chan is None:
            chan = self._channel_of(fd, "write")  # raises EBADF or ENOSYS
        if len(data) < 1:
            raise oserror(errno.EINVAL, chan.name)
        if chan.events:
            raise oserror(abi.ELAST, chan.name)
        if len(chan.tx) >= chan.numbufs:
            raise oserror(errno.EAGAIN, chan.name)
        self.cas.written(chan)  # a write stops the kernel's dialling
        if chan.linear:
            data = kernel_law(chan.codec().name).encode_s16le(bytes(data[: chan.blocksize * 2]))
        else:
            data = bytes(data[: chan.blocksize])
        if chan.is_hdlc:
            if len(chan.hdlc_tx) >= chan.numbufs:  # each buffer holds a frame until sent
                raise oserror(errno.EAGAIN, chan.name)
            self._transmit_frame(chan, data)
            return len(data)
        if not chan.tx and not chan.flowing and chan.tx_starts_at is None:
            # A stream starts at the line's next 1 ms chunk. In virtual time writes come at
            # the ticks, so each channel also gets a phase of its own (0-19 ms, the same in
            # every run): the real driver's blocks are never aligned with the writer's.
            chunk = 0.001
            phase = (chan.channo * 7) % 20
            chan.tx_starts_at = (math.ceil(round(self.engine.time() / chunk, 6)) + phase) * chunk
        chan.tx.append(data)
        if chan.txdisable and self._tx_may_start(chan):
            chan.txdisable = False
        return len(data) * (2 if chan.linear else 1)

    def ioctl(self, fd: int, request: int, arg: IoctlArg = 0) -> int:
        file = self._files.get(fd)
        if file is None:
            raise oserror(errno.EBADF, f"fd {fd}")
        name = abi.IOCTL_NAMES.get(request, hex(request))
        # Each kind of open file has its own ioctl table in dahdi-base.c.
        if file.kind == "unspecified":
            if request != abi.DAHDI_SPECIFY:
                raise oserror(errno.ENOSYS, f"{name} before DAHDI_SPECIFY")
        elif file.kind == "ctl":
            if request not in ioctls.CTL_IOCTLS:
                raise oserror(errno.ENOTTY, f"{name} on /dev/dahdi/ctl")
        elif request in ioctls.CTL_ONLY_IOCTLS:
            raise oserror(errno.ENOTTY, f"{name} on a channel")
        handler = ioctls.HANDLERS.get(request)
        if handler is None:
            raise oserror(errno.ENOTTY, name)
        return handler(self, file, arg)

    def _channel_of(self, fd: int, operation: str) -> SimChannel:
        file = self._files.get(fd)
        if file is None:
            raise oserror(errno.EBADF, f"fd {fd}")
        if file.chan is None:
            raise oserror(errno.ENOSYS, f"{operation} on {file.kind} fd {fd}")
        return file.chan

    # ================================================================== events, readiness
    def _queue_event(self, chan: SimChannel, event: int) -> None:
        if len(chan.events) >= MAX_QUEUED_EVENTS:
            log.warning("%s: event queue full, %s dropped", chan.name, abi.event_name(event))
            return
        chan.events.append(event)
        self._update_readiness(chan)

    def _update_readiness(self, chan: SimChannel) -> None:
        file = chan.file
        if file is not None:
            file.readiness.update(bool(chan.rx), bool(chan.events))

    # ================================================================== B-channels
    def _start_ticking(self) -> None:
        if self._tick_timer is None:
            if self._ticking_since is None:
                self._ticking_since = self.engine.time()
                self._phases_done = 0
                self._bytes_moved = 0
            # on a fixed grid, as a card's crystal keeps it whatever this thread is doing
            self._tick_timer = self.engine.call_at(
                self._ticking_since + (self._phases_done + 1) * self._period, self._on_tick)

    def _on_tick(self) -> None:
        """The line clock: serve the phases whose moment has come. Each channel is served
        once a tick, at its phase: it receives what its peer sent since its last time, in
        blocks that become readable then."""
        self._tick_timer = None
        if not self._open_audio:
            self._ticking_since = None
            return
        assert self._ticking_since is not None
        since, period, phases = self._ticking_since, self._period, self.phases
        reached = max(self._phases_done + 1,
                      math.floor(round((self.engine.time() - since) / period, 6)))
        # A clock that ran late serves each phase it missed once, with what the line
        # carried up to that phase's own moment, so that blocks keep their phase.
        for done in range(max(self._phases_done + 1, reached - phases + 1), reached + 1):
            at = since + done * period
            due = round(done * period * SAMPLE_RATE)
            self._phases_done = done
            self._bytes_moved = due
            phase = done % phases
            members = self._phase_members[phase]
            if members:
                self._serve(members, due, at)
            for hook in self.after_phase:
                try:
                    hook(phase)
                except Exception:  # the line's clock must go on whatever a hook does
                    log.exception("simulated kernel: a hook after phase %d failed", phase)
        self._start_ticking()

    def _serve(self, members: dict[SimChannel, SimChannel | None], due: int,
               at: float) -> None:
        """One phase: each channel in ``members`` receives what its peer put on the line
        since it was last served, up to ``due`` bytes of the line's clock at ``at``; a
        channel whose peer is not open sends into nothing and hears the peer's idle."""
        open_audio = self._open_audio
        take, complete = self._take_tx, self._complete_blocks
        for chan, peer in members.items():
            sender = peer if peer is not None and peer in open_audio else chan
            nbytes = min(due - sender.line_moved, SAMPLE_RATE)  # at most a second in one go
            sender.line_moved = due
            if nbytes <= 0:
                continue
            # _take_tx's common case, inline (a thousand channels a tick): a stream going,
            # the window's bytes in the rest of the first block and part of the second
            tx = sender.tx
            data = None
            if len(tx) > 1 and not sender.txdisable and sender.tx_starts_at is None:
                offset = sender.tx_offset
                head = tx[0]
                rest = offset + nbytes - len(head)  # what the second block gives
                if 0 < rest < len(tx[1]):
                    tx.popleft()
                    sender.tx_offset = rest
                    sender.stats.tx_bytes += nbytes
                    sender.underrun_flag = False
                    sender.flowing = True
                    data = (head[offset:] if offset else head) + tx[0][:rest]
            if data is None:
                data = take(sender, nbytes, at - nbytes / SAMPLE_RATE)
            if peer is None or chan.span.alarms & LINE_DOWN or peer.span.alarms & LINE_DOWN:
                continue  # a span in RED receives nothing at all (span.line_up())
            if sender is chan:  # a closed transmitter still sends its idle pattern
                data = bytes([peer.idle_byte()]) * nbytes if peer.sig else b"\xff" * nbytes
            # the peer's bytes received; the common cases inline: a tick on time brings
            # exactly a block, which needs no copying (nothing waits to be completed), or
            # at most one block completed, with room for it
            chan.stats.rx_bytes += len(data)
            partial = chan.rx_partial
            blocksize = chan.blocksize
            rx = chan.rx
            if not partial and len(data) == blocksize and len(rx) < chan.numbufs:
                chan.overrun_flag = False
                rx.append(data)
                if chan.file is not None:
                    chan.file.readiness.update(True, bool(chan.events))
                continue
            partial += data
            if len(partial) < blocksize:
                continue
            if len(partial) < 2 * blocksize:
                if len(chan.rx) < chan.numbufs:
                    chan.overrun_flag = False
                    chan.rx.append(bytes(partial[:blocksize]))
                    del partial[:blocksize]
                    if chan.file is not None:
                        chan.file.readiness.update(True, bool(chan.events))
                    continue
                if chan.overrun_flag:  # a reader that does not read: the block is lost
                    chan.stats.rx_overruns += 1
                    del partial[:blocksize]
                    continue
            complete(chan)

    def _peer_chan(self, chan: SimChannel) -> SimChannel | None:
        peer = chan.span.peer
        if peer is None or chan.chanpos > len(peer.channels):
            return None
        return peer.channels[chan.chanpos - 1]

    def _tx_may_start(self, chan: SimChannel) -> bool:
        if chan.txpolicy == abi.DAHDI_POLICY_WHEN_FULL:
            return len(chan.tx) >= chan.numbufs
        if chan.txpolicy == abi.DAHDI_POLICY_HALF_FULL:
            return len(chan.tx) >= chan.numbufs // 2
        return True

    def tx_queued(self, chan: SimChannel) -> int:
        """Bytes written to the channel that have not gone out on the line yet."""
        if chan.txdisable or not chan.tx:
            return 0
        return sum(map(len, chan.tx)) - chan.tx_offset

    def _take_tx(self, chan: SimChannel, nbytes: int, window_start: float) -> bytes:
        """The ``nbytes`` the channel puts on the line in the window that began at
        ``window_start``: idle until a stream written meanwhile starts, then its data."""
        tx = chan.tx
        if tx and not chan.txdisable and chan.tx_starts_at is None:
            # The common case, a stream going: the window's bytes are in the first block or
            # two written, each taken whole when it can be (no copy).
            offset = chan.tx_offset
            head = tx[0]
            end = offset + nbytes
            if end < len(head):
                chan.tx_offset = end
                chan.stats.tx_bytes += nbytes
                chan.underrun_flag = False
                chan.flowing = True
                return head[offset:end]
            if len(tx) > 1:
                rest = end - len(head)  # what the second block gives
                second = tx[1]
                if rest < len(second) or (rest == len(second) and (
                        len(tx) > 2 or chan.txpolicy == abi.DAHDI_POLICY_IMMEDIATE)):
                    tx.popleft()
                    first = head[offset:] if offset else head
                    if rest == len(second):
                        tx.popleft()
                        rest = 0
                        out = first + second
                    else:
                        out = first + second[:rest] if rest else first
                    chan.tx_offset = rest
                    chan.stats.tx_bytes += nbytes
                    chan.underrun_flag = False
                    chan.flowing = True
                    return out
        return self._take_tx_slowly(chan, nbytes, window_start)

    def _take_tx_slowly(self, chan: SimChannel, nbytes: int, window_start: float) -> bytes:
        out = bytearray()
        lead = 0
        if chan.tx_starts_at is not None and not chan.txdisable:
            lead = max(round((chan.tx_starts_at - window_start) * SAMPLE_RATE), 0)
            # until the stream starts, the line has idle, or the kernel's tone (one
            # stopped by the write, up to when it stopped)
            before = self.cas.tone_bytes(chan, window_start, min(lead, nbytes))
            if lead >= nbytes:  # the stream starts in a later window
                return before or bytes([chan.idle_byte()]) * nbytes
            out += before or bytes([chan.idle_byte()]) * lead
            chan.tx_starts_at = None
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
        chan.stats.tx_bytes += sent - lead
        if sent < nbytes:
            # the kernel's tone generator sends while the write buffers are empty
            tone = self.cas.tone_bytes(chan, window_start + sent / SAMPLE_RATE,
                                       nbytes - sent)
            if tone is not None:
                # what is written next starts a stream of its own, once written: never
                # in the time the tone had (that would cut the tone's end short)
                chan.flowing = False
                return bytes(out) + tone
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

    def _complete_blocks(self, chan: SimChannel) -> None:
        """Move the whole blocks received (``rx_partial``) to the read buffers."""
        partial = chan.rx_partial
        blocksize = chan.blocksize
        rx = chan.rx
        numbufs = chan.numbufs
        whole = len(partial) - len(partial) % blocksize
        got_block = False
        for at in range(0, whole, blocksize):
            if len(rx) >= numbufs:
                # Every read buffer is full: the new block is lost, once noted per episode.
                chan.stats.rx_overruns += 1
                if not chan.overrun_flag:
                    chan.overrun_flag = True
                    if chan.buffer_events:
                        self._queue_event(chan, abi.DAHDI_EVENT_READ_OVERRUN)
                continue
            chan.overrun_flag = False
            rx.append(bytes(partial[at:at + blocksize]))
            got_block = True
        del partial[:whole]
        if got_block and chan.file is not None:
            chan.file.readiness.update(True, bool(chan.events))

    # ================================================================== D-channels
    def _transmit_frame(self, chan: SimChannel, data: bytes) -> None:
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
        now = self.engine.time()
        back_to_back = chan.hdlc_tx_free_at > now
        wire = frame + fcs
        arrives = (max(now, chan.hdlc_tx_free_at)
                   + hdlc.line_bits(wire) / DCHANNEL_BITS_PER_SECOND)
        chan.hdlc_tx_free_at = arrives
        chan.hdlc_tx.append((arrives, wire, back_to_back))
        if chan.hdlc_timer is None:
            chan.hdlc_timer = self.engine.call_at(arrives, self._frames_across, chan)

    def _frames_across(self, chan: SimChannel) -> None:
        """The first frames on ``chan``'s line have crossed: deliver them (every one due,
        when the engine ran late) and wait for the next."""
        chan.hdlc_timer = None
        now = self.engine.time()
        while chan.hdlc_tx and chan.hdlc_tx[0][0] <= now:
            arrived, frame, back_to_back = chan.hdlc_tx.popleft()
            peer = self._peer_chan(chan)
            delivered = (peer is not None and chan.span.line_up()
                         and not chan.span.dchannel_cut and peer.is_hdlc)
            record = FrameRecord(arrived, chan.channo,
                                 peer.channo if peer is not None else 0, frame[:-2], delivered)
            for tap in self.frame_taps:
                try:
                    tap(record)
                except Exception:
                    log.exception("frame tap %r failed", tap)
            if delivered:
                assert peer is not None
                self._receive_frame(peer, frame, back_to_back)
        if chan.hdlc_tx and chan.hdlc_timer is None:
            chan.hdlc_timer = self.engine.call_at(chan.hdlc_tx[0][0], self._frames_across,
                                                  chan)

    def _receive_frame(self, chan: SimChannel, frame: bytes,
                       back_to_back: bool = False) -> None:
        if chan.file is None:
            return  # nobody has the D-channel open: the kernel keeps nothing for later
        if len(chan.rx) >= chan.numbufs:  # the ring is full: the bytes are not even decoded
            chan.stats.frames_dropped += 1
            return
        error = None
        hunting, chan.hdlc_rx_hunting = chan.hdlc_rx_hunting, False
        if not hdlc.check(frame) or (hunting and back_to_back):
            error = abi.DAHDI_EVENT_BADFCS
        elif len(frame) >= chan.blocksize:  # the receiver ran out of buffer mid-frame
            error = abi.DAHDI_EVENT_OVERRUN
            chan.hdlc_rx_hunting = True
        if error is not None:
            chan.stats.frames_dropped += 1
            if not chan.span.alarms:  # the kernel keeps quiet about bad frames in alarm
                self._queue_event(chan, error)
            return
        chan.stats.frames_received += 1
        chan.rx.append(frame[: chan.blocksize])
        self._update_readiness(chan)
