"""Far ends for the simulator: looped PRI span pairs whose far side is real libpri.

:class:`PriLoop` wires pairs of simulated spans back to back, configures them as dahdi_cfg
would from :func:`pri_loop_conf`, and puts a :class:`~uascall.dahdi.pri.PriSpan` on each
side: ``cpe_spans`` (odd spans, user side: the side an application drives) and
``net_spans`` (even spans, real libpri instances in NETWORK mode playing the exchange).
Both run the real :mod:`uascall.dahdi` code over the simulated kernel, so whatever crosses
between them is genuine Q.921/Q.931 that libpri produced and accepted.

:class:`FarEnd` places calls from the exchange side and records, frame by frame, what each
caller hears on its B-channel: the in-band ringback, announcement or conversation an
application plays. Its callers also talk: :meth:`FarEndCall.send` plays audio in band
towards the application (:meth:`FarEndCall.press` a keypad's DTMF, :meth:`FarEndCall.say`
a tone or speech), paced as a line carries it, and :attr:`FarEndCall.echo` sends back
what it hears, as a far end with a poor hybrid or a phone on speaker would.
"""

from __future__ import annotations

import array
import logging
from collections.abc import Callable, Collection

from uascall.dahdi import abi, libpri, q931
from uascall.dahdi.backend import BChannelPort
from uascall.dahdi.config import SystemConf
from uascall.dahdi.device import MEDIA_NUMBUFS, DeviceIO
from uascall.dahdi.pri import CallCleared, CallConnected, CallEvent, PriCall, PriSpan
from uascall.dahdi.q931_ie import RestartIndicator
from uascall.engine import Engine
from uascall.media import g711
from uascall.media.dtmf import dtmf_samples
from uascall.media.player import DEFAULT_LEAD, MediaClock, Player
from uascall.media.source import BufferSource
from uascall.sim.caller import CallerScript, Rendered
from uascall.sim.kernel import SimKernel
from uascall.sim.model import SPAN_KINDS
from uascall.sim.wiretap import WireTap
from uascall.trace.device import tap_devices

log = logging.getLogger(__name__)

#: Q.931 restart indicator classes (4.5.25) for a RESTART without a channel
RESTART_SINGLE_INTERFACE = 6
RESTART_ALL_INTERFACES = 7
DEFAULT_SWITCH = {"E1": libpri.Switch.EUROISDN_E1, "T1": libpri.Switch.NI2}
_LAYOUT = {
    # kind: (channels, D-channel position, framing line, zone)
    "E1": (31, 16, "ccs,hdb3,crc4", "nl"),
    "T1": (24, 24, "esf,b8zs", "us"),
}


def pri_loop_conf(kind: str = "E1", pairs: int = 1, *, dynamic: bool = False,
                  spans: Collection[int] | None = None, first_span: int = 1,
                  first_channel: int = 1) -> str:
    """system.conf for ``pairs`` looped pairs of PRI spans (spans 1..2*pairs).

    With ``dynamic`` the spans are ``dahdi_dynamic_loc`` pairs, which the real driver
    loops itself (the vm rig's configuration): E1 and T1 then differ only in their
    channel count, D-channel position and law (``alaw=`` lines, since loc spans default
    to mu-law). ``spans`` keeps only the lines of those spans: dahdi_cfg given them
    makes again the dynamic spans among them that are gone, and touches no other span.

    ``first_span`` and ``first_channel`` number the spans from ``first_span`` and their
    channels from ``first_channel`` on, for a system.conf whose other spans come first
    (their lines before these: the kernel numbers dynamic spans and their channels in
    line order). A loc pair's key is ``(first span + 1) // 2`` as without them, so pairs
    that start on odd spans never share a key.
    """
    if kind not in _LAYOUT:
        raise ValueError(f"span kind {kind!r}; expected one of {sorted(SPAN_KINDS)}")
    if first_span < 1 or first_channel < 1:
        raise ValueError(f"first_span={first_span}, first_channel={first_channel}; "
                         "expected numbers from 1")
    first_key = (first_span + 1) // 2
    if dynamic and first_key + pairs - 1 > 9:
        raise ValueError(f"{pairs} dynamic pairs from span {first_span}; expected loc keys "
                         f"{first_key}..{first_key + pairs - 1} to be digits (at most 9)")
    every = range(first_span, first_span + 2 * pairs)
    chosen = list(every) if spans is None else sorted(spans)
    if not chosen or not set(chosen) <= set(every):
        raise ValueError(f"spans {sorted(spans or [])}; expected some of "
                         f"{every[0]}..{every[-1]}")
    count, dpos, framing, zone = _LAYOUT[kind]
    law = "A-law" if kind == "E1" else "mu-law"

    def base(spanno: int) -> int:  # the channel before the span's first
        return first_channel - 1 + (spanno - first_span) * count

    lines = [f"# {2 * pairs} {kind} spans looped back to back in pairs ({law})"]
    if spans is not None:
        lines.append(f"# only span(s) {', '.join(map(str, chosen))}")
    for spanno in chosen:
        if dynamic:
            pair, side = divmod(spanno - first_span, 2)
            lines.append(f"dynamic=loc,{first_key + pair}:{side},{count},0")
        else:
            lines.append(f"span={spanno},{1 if spanno == first_span else 0},0,{framing}")
    if dynamic and kind == "E1" and spans is None:
        lines.append(f"alaw={base(first_span) + 1}-{base(first_span) + 2 * pairs * count}")
    elif dynamic and kind == "E1":
        lines += [f"alaw={base(n) + 1}-{base(n) + count}" for n in chosen]
    for spanno in chosen:
        dchan = base(spanno) + dpos
        ranges = [f"{base(spanno) + 1}-{dchan - 1}"]
        if dpos < count:
            ranges.append(f"{dchan + 1}-{base(spanno) + count}")
        lines.append(f"bchan={','.join(ranges)}")
        lines.append(f"dchan={dchan}")
    lines += [f"loadzone={zone}", f"defaultzone={zone}", ""]
    return "\n".join(lines)


class PriLoop:
    """PRI span pairs: ``cpe`` (ours) and ``net`` (the exchange), on a simulated kernel
    of their own or on a ``kernel`` configured with ``conf`` beforehand (the real driver
    in the vm rig, or a simulated kernel configured like it).

    Build it on the engine thread (``PriLoop(engine)``) or from any thread with
    :meth:`create`; :meth:`stop` closes every span. ``cpe``/``net`` are the first pair's.
    The spans' device I/O goes through :attr:`tap`, a :class:`WireTap` on the D-channels;
    ours also through the engine's device taps when a trace asked for them before the
    loop was built (:func:`~uascall.trace.device.tap_devices`).
    """

    def __init__(self, engine: Engine, kind: str = "E1", *, pairs: int = 1,
                 switch: libpri.Switch | None = None, tick: float = 0.020,
                 timers: dict[str, int] | None = None,
                 kernel: DeviceIO | None = None, conf: str | None = None) -> None:
        self.engine = engine
        self.kind = kind
        if kernel is None:
            sim = SimKernel(engine, tick=tick)
            for _ in range(pairs):
                sim.add_loop(kind)
            self.conf = SystemConf.parse(pri_loop_conf(kind, pairs),
                                         source=f"simulated {kind} loop")
            sim.configure(self.conf)
            kernel = sim
        elif conf is None:
            raise ValueError("PriLoop on a kernel of the caller's needs the conf it was "
                             "configured with")
        else:
            self.conf = SystemConf.parse(conf, source=f"{kind} loop on {kernel.describe()}")
        self.kernel = kernel
        layouts = self.conf.pri_spans()
        if len(layouts) != 2 * pairs:
            raise ValueError(f"{self.conf.source} has {len(layouts)} PRI spans; expected "
                             f"{2 * pairs}")
        peers = {}
        for ours, theirs in zip(layouts[::2], layouts[1::2], strict=True):
            peers[ours.dchannel], peers[theirs.dchannel] = theirs.dchannel, ours.dchannel
        self.tap = WireTap(kernel, peers, engine.time)
        # our spans' devices, tapped when the engine's taps ask for it (a trace); the
        # exchange's are the far end's, and stay out of it
        ours_io = tap_devices(self.tap, engine, network=False)
        switch = switch or DEFAULT_SWITCH[kind]
        self.cpe_spans: list[PriSpan] = []
        self.net_spans: list[PriSpan] = []
        for n, (ours, theirs) in enumerate(zip(layouts[::2], layouts[1::2], strict=True)):
            suffix = f"-{n + 1}" if pairs > 1 else ""
            self.cpe_spans.append(PriSpan(engine, ours, node=libpri.Node.CPE, switch=switch,
                                          io=ours_io, timers=timers,
                                          name=f"uascall{suffix}"))
            self.net_spans.append(PriSpan(engine, theirs, node=libpri.Node.NETWORK,
                                          switch=switch, io=self.tap, timers=timers,
                                          name=f"exchange{suffix}"))
        for span in self.cpe_spans + self.net_spans:
            span.start()
        self.cpe = self.cpe_spans[0]
        self.net = self.net_spans[0]

    @classmethod
    def create(cls, engine: Engine, kind: str = "E1", **kwargs: object) -> PriLoop:
        """Build the loop on the engine thread from any thread."""
        return engine.run(cls, engine, kind, **kwargs)

    @property
    def up(self) -> bool:
        return all(span.up for span in self.cpe_spans + self.net_spans)

    def stop(self) -> None:
        """Close every span (engine thread)."""
        for span in self.cpe_spans + self.net_spans:
            span.stop()

    def restart_interface(self, pair: int = 0, restart_class: int = RESTART_ALL_INTERFACES
                          ) -> None:
        """Engine thread: the exchange of ``pair`` restarts the whole interface: it drops
        its own calls there and sends RESTART with no channel, restart class 7 (all
        interfaces) or 6 (a single interface). libpri 1.6 cannot send that (its
        ``pri_restart()`` does nothing), so the message goes onto the D-channel in a UI
        frame, which libpri takes as it takes an I frame; its acknowledgement comes back
        to the exchange's libpri, which ignores it."""
        if restart_class not in (RESTART_ALL_INTERFACES, RESTART_SINGLE_INTERFACE):
            raise ValueError(f"restart class {restart_class}; expected 6 (single "
                             "interface) or 7 (all interfaces)")
        self.net_spans[pair].drop_calls()
        message = q931.Message(q931.MessageType.RESTART, call_reference=0,
                               ies=(RestartIndicator(restart_class).to_ie(),))
        frame = q931.LapdFrame(kind="UI", sapi=0, tei=0, cr=1, info=message.serialize())
        self.tap.inject_frame(self.cpe_spans[pair].layout.dchannel, frame.serialize())


class FarEndCall:
    """A call the exchange placed, and everything its caller heard (engine thread)."""

    def __init__(self, call: PriCall, *, record: bool, clock: MediaClock | None = None,
                 numbufs: int = MEDIA_NUMBUFS) -> None:
        self.call = call
        self.events: list[tuple[float, CallEvent]] = []
        #: the law bytes that reached the caller's B-channel, from SETUP on
        self.heard = bytearray()
        #: (engine time, len(heard) after it) for each block: when each byte arrived
        self.heard_at: list[tuple[float, int]] = []
        self.record = record
        #: send back what is heard (an echo, as a far end with a poor hybrid would)
        self.echo = False
        self._clock = clock
        self._player: Player | None = None
        self._numbufs = numbufs
        call.listeners.append(self._on_event)
        if record:
            call.open_media(numbufs=numbufs)
            call.on_media(self._heard)

    @property
    def law(self) -> str:
        return self.call.law

    @property
    def cleared(self) -> bool:
        return self.call.cleared

    def heard_pcm(self) -> array.array:
        """What the caller heard, as 8 kHz s16 samples."""
        return g711.codec(self.call.law).decode(bytes(self.heard))

    def time_heard(self, index: int) -> float:
        """When byte ``index`` of :attr:`heard` arrived (its block's arrival, less the
        bytes after it in the block)."""
        for at, end in self.heard_at:
            if end > index:
                return at - (end - 1 - index) / g711.SAMPLE_RATE
        raise IndexError(f"byte {index} of what the caller heard has not arrived")

    def hangup(self, cause: int = libpri.PRI_CAUSE_NORMAL_CLEARING) -> None:
        self.call.hangup(cause)

    # ------------------------------------------------------------------ talking
    def send(self, data: bytes) -> float:
        """Play ``data`` (law bytes) in band towards the application, paced at 8000
        bytes a second, after what is still playing; returns the engine time it starts
        at (now, when nothing else plays)."""
        if self._clock is None:
            raise RuntimeError("this far end has no media clock to pace what it sends")
        media = self.call.open_media(numbufs=self._numbufs)
        if self._player is None:
            self._player = Player(self._clock, BChannelPort(media, self.law),
                                  name=f"far end B{self.call.chanpos}")
        queued = bytes(self._pending_bytes()) + data
        self._player.play(BufferSource(queued, self.law))
        return self.call.span.engine.time()

    def _pending_bytes(self) -> bytes:
        source = self._player._source if self._player is not None else None
        if isinstance(source, BufferSource) and source.duration is not None:
            return source.remaining()
        return b""

    def press(self, digits: str, *, on_ms: float = 80, off_ms: float = 80,
              level_dbm0: float = -9.0, lead_ms: float = 0.0) -> float:
        """Press keys: their DTMF in band (``lead_ms`` of silence first); returns when
        the first tone starts, in engine time."""
        codec = g711.codec(self.law)
        tones = dtmf_samples(digits, on_ms=on_ms, off_ms=off_ms, low_dbm0=level_dbm0,
                             high_dbm0=level_dbm0 + 2.0, law=self.law)
        lead = codec.silence_frame[:1] * round(lead_ms * 8)
        return self.send(lead + codec.encode(tones)) + lead_ms / 1000.0

    def key(self, digits: str) -> float:
        """Key ``digits`` (0-9 * # A-D) on a phone beyond the exchange: the exchange's
        kernel sounds them on the B-channel (DAHDI_DIAL), each 100 ms on and 100 ms off
        at -10 dBm0, whatever this thread's timing, as a keypad beyond a real network
        does. Returns when the first tone starts, in engine time."""
        media = self.call.open_media(numbufs=self._numbufs)
        if self._player is not None:
            self._player.stop()  # a write would stop the kernel's dialling
        media.flush(abi.DAHDI_FLUSH_WRITE)
        media.dial("T" + digits, abi.DAHDI_DIAL_OP_REPLACE)
        return self.call.span.engine.time()

    def say(self, samples: array.array | list[int]) -> float:
        """Send s16 samples (speech, a tone) in band; returns when they start."""
        return self.send(g711.codec(self.law).encode(samples))

    def _heard(self, block: bytes) -> None:
        self.heard.extend(block)
        self.heard_at.append((self.call.span.engine.time(), len(self.heard)))
        if self.echo and self.call.media is not None and self.call.live:
            self.call.media.write_frame(block)

    def _on_event(self, call: PriCall, event: CallEvent) -> None:
        self.events.append((call.span.engine.time(), event))
        if isinstance(event, CallCleared):
            log.debug("far end %r: %s", call, event)
            if self._player is not None:
                self._player.stop("hangup")


class FarEnd:
    """The exchange side of a :class:`PriLoop`: places calls towards the application, and
    takes the calls it places: with ``reject_cause`` set they are refused with it;
    otherwise they are alerted (with progress indicator #8 when ``inband``: what is
    then heard in band is what the call's :meth:`FarEndCall.send` plays, a ringback or
    an announcement) and answered after ``answer_after`` seconds (None: never; the
    caller must give up).

    What its callers send is written ``lead`` frames ahead of time into ``numbufs``
    B-channel buffers: more of both let it ride out an engine that runs late (the vm
    rig's emulated guest on a busy host) without a gap in what it sends, at the cost of
    a delay that a caller's voice or keys can bear."""

    def __init__(self, loop: PriLoop, *, record: bool = True, lead: int = DEFAULT_LEAD,
                 numbufs: int = MEDIA_NUMBUFS) -> None:
        if not 1 <= lead < numbufs:
            raise ValueError(f"lead={lead}, numbufs={numbufs}; expected 1 <= lead < "
                             "numbufs (the lead's frames wait in the buffers)")
        self.loop = loop
        self.record = record
        self.numbufs = numbufs
        self.calls: list[FarEndCall] = []
        self.on_call: Callable[[FarEndCall], None] | None = None
        #: calls the application placed towards the exchange
        self.incoming: list[FarEndCall] = []
        self.answer_after: float | None = 1.0
        self.reject_cause: int | None = None
        self.inband = False
        #: paces what the callers send (FarEndCall.send)
        self.clock = MediaClock(loop.engine, lead=lead)
        #: what each caller does once answered (a rendered CallerScript), or None
        self.script: Rendered | None = None
        for span in loop.net_spans:
            span.on_incoming = self._incoming

    def _incoming(self, call: PriCall) -> None:
        far = FarEndCall(call, record=self.record, clock=self.clock, numbufs=self.numbufs)
        self.incoming.append(far)
        if self.reject_cause is not None:
            call.hangup(self.reject_cause)
            return
        call.alerting(inband=self.inband)
        if self.answer_after is not None:
            call.span.engine.call_later(self.answer_after, self._answer, call)

    @staticmethod
    def _answer(call: PriCall) -> None:
        if call.live and not call.cleared:
            call.answer()

    def dial(self, called: str = "5551000", *, calling: str = "5552000",
             calling_name: str = "", span: int = 0) -> FarEndCall:
        """Engine thread: SETUP from the exchange on net span ``span`` (0: the first)."""
        call = self.loop.net_spans[span].call(called, calling=calling,
                                              calling_name=calling_name)
        far = FarEndCall(call, record=self.record, clock=self.clock, numbufs=self.numbufs)
        self.calls.append(far)
        script = self.script
        if script is not None:
            def answered(_call: PriCall, event: CallEvent) -> None:
                if isinstance(event, CallConnected):
                    CallerScript.start(script, far)
            call.listeners.append(answered)
        if self.on_call is not None:
            self.on_call(far)
        return far
