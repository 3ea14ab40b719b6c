"""The ``dahdi`` backend: PRI spans and analog ports from ``/etc/dahdi/system.conf``.

Each :class:`~uascall.dahdi.pri_call.PriCall` becomes a :class:`PriLeg`: ``alert`` is
ALERTING (with progress indicator #8 and the B-channel opened when early media is asked
for; on an already alerted call, PROGRESS with #8), ``answer`` is CONNECT, ``release``
clears with a Q.850 cause, and the media port writes G.711 frames straight to the
B-channel's device in the call's law. ``fxsks`` channels become FXO ports and ``fxoks``
channels FXS ports (:mod:`uascall.dahdi.analog_port`), whose calls are
:class:`~uascall.dahdi.analog_port.AnalogLeg`.

Calls out (:meth:`DahdiBackend.place_call`) take a ``route``: ``"pri"`` (the first PRI
span in service, out of alarm with its D-channel up, that has a free B-channel),
``"pri:N"`` (span N), ``"fxs"`` (the first idle FXS port: rings its phone),
``"fxs:N"`` (the FXS port on channel N), ``"fxo"`` (the first idle FXO port: dials the
number on its line) or ``"fxo:N"`` (the FXO port on channel N); None tries PRI, then
FXS.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from uascall.backend import (
    Backend,
    CallLeg,
    Cause,
    LegAlerting,
    LegAnswered,
    LegCleared,
    LegEvent,
    MediaPort,
    NoRoute,
)
from uascall.dahdi import abi, libpri
from uascall.dahdi.analog import AnalogSettings
from uascall.dahdi.analog_port import AnalogLeg, AnalogPort
from uascall.dahdi.config import DEFAULT_PATH, SystemConf
from uascall.dahdi.device import (
    DEV_DIR,
    Channel,
    DeviceIO,
    start_digit,
    stop_digit,
)
from uascall.dahdi.pri import PriSpan
from uascall.dahdi.pri_call import (
    CallAlerting,
    CallCleared,
    CallConnected,
    CallEvent,
    CallProgress,
    CallState,
    PriCall,
)
from uascall.engine import Engine
from uascall.errors import ArgumentError, Error
from uascall.media.player import MediaClock

log = logging.getLogger(__name__)

#: Q.850 cause → channel Cause (anything else is OTHER, with the number in raw_cause)
Q850_TO_CAUSE = {
    16: Cause.NORMAL, 31: Cause.NORMAL, 17: Cause.BUSY, 18: Cause.NOANSWER,
    19: Cause.NOANSWER, 1: Cause.UNOBTAINABLE, 3: Cause.UNOBTAINABLE, 22: Cause.CHANGED,
    27: Cause.OUTOFORDER, 38: Cause.OUTOFORDER, 21: Cause.REJECTED, 53: Cause.BARRED,
    55: Cause.BARRED, 34: Cause.NOCHANNELS, 44: Cause.NOCHANNELS, 42: Cause.CONGESTION,
    41: Cause.FAILED, 102: Cause.TIMEOUT,
}
#: channel Cause → the Q.850 cause we send for it
CAUSE_TO_Q850 = {
    Cause.NORMAL: 16, Cause.BUSY: 17, Cause.NOANSWER: 19, Cause.UNOBTAINABLE: 1,
    Cause.CHANGED: 22, Cause.OUTOFORDER: 27, Cause.BARRED: 55, Cause.REJECTED: 21,
    Cause.NOCHANNELS: 34, Cause.CONGESTION: 42, Cause.FAILED: 41, Cause.OTHER: 31,
    Cause.TIMEOUT: 102, Cause.ERROR: 41,
}
SWITCHES = {
    "euroisdn_e1": libpri.Switch.EUROISDN_E1, "euroisdn_t1": libpri.Switch.EUROISDN_T1,
    "ni2": libpri.Switch.NI2, "ni1": libpri.Switch.NI1, "dms100": libpri.Switch.DMS100,
    "5ess": libpri.Switch.LUCENT5E, "4ess": libpri.Switch.ATT4ESS,
    "qsig": libpri.Switch.QSIG,
}
NODES = {"cpe": libpri.Node.CPE, "net": libpri.Node.NETWORK, "network": libpri.Node.NETWORK}


def _route_number(route: str | None, number: str) -> int | None:
    if not number:
        return None
    if not number.isdigit():
        raise ArgumentError(f"route {route!r}: {number!r} is not a span or channel number")
    return int(number)


def _span_state(span: PriSpan) -> str:
    if span.alarms:
        return f"in alarm ({', '.join(abi.alarm_names(span.alarms))})"
    if not span.up:
        return "D-channel down"
    refused = len(span.out_of_service)
    return f"up ({refused} B-channels out of service)" if refused else "up"


def q850_of(raw_cause: str | int) -> int | None:
    """A raw cause as a Q.850 number (1..127), or None when it is not one."""
    try:
        cause = int(str(raw_cause).strip())
    except ValueError:
        return None
    return cause if 1 <= cause <= 127 else None


class BChannelPort(MediaPort):
    """A call's B-channel: frames go to the device as they are, in the call's law."""

    sounds_digits = keys_keep_time = True  # the kernel's DAHDI_SENDTONE

    def __init__(self, channel: Channel, law: str) -> None:
        self.channel = channel
        self.law = law

    def write(self, frame: bytes) -> bool:
        return self.channel.write_frame(frame) == len(frame)

    def flush(self) -> None:
        self.channel.flush(abi.DAHDI_FLUSH_WRITE)

    def limit_queue(self, frames: int | None) -> None:
        self.channel.limit_write_queue(frames)

    def start_digit(self, digit: str) -> bool:
        return start_digit(self.channel, digit)

    def stop_digit(self) -> None:
        stop_digit(self.channel)


class PriLeg(CallLeg):
    """A PRI call as a channel leg (engine thread only).

    Its receive path is the B-channel: while the leg is listened to and the far end's
    side of the B-channel carries something to hear, every 20 ms block the span reads
    from it goes to :meth:`_received`. That is from the answer on, and for an outgoing
    call as soon as the far end says it plays something in band (progress indicator #1
    or #8). Before the answer of an incoming call (early media) a network has to connect
    only the backward side of the B-channel, ours to the caller (Q.931 Annex K), so the
    caller's side is read then only with ``listen_early`` (for networks that connect
    both ways early, and applications that take keys before they answer); otherwise a
    call ringing with early media costs the writes alone.
    """

    def __init__(self, call: PriCall, *, listen_early: bool = False) -> None:
        self.call = call
        self.incoming = call.incoming
        self.call_from = call.calling
        self.call_to = call.called
        self.early_media = False
        self.listen_early = listen_early
        self._port: BChannelPort | None = None
        self._reading = False
        call.listeners.append(self._on_call_event)

    def describe(self) -> str:
        call = self.call
        return f"span {call.span.layout.spanno} B-channel {call.chanpos} ({call.law})"

    @property
    def live(self) -> bool:
        return self.call.live

    def alert(self, early_media: bool, codecs: list[str] | None = None) -> bool:
        call = self.call
        if early_media and not self.early_media:
            # The B-channel is ready before the far end starts listening; if it cannot be
            # opened, early media is not available and the call rings without it.
            try:
                self.media()
            except (OSError, Error) as exc:
                log.warning("%s: no early media, the B-channel did not open: %s",
                            self.describe(), exc)
                early_media = False
        if call.state in (CallState.OFFERED, CallState.PROCEEDING):
            call.alerting(inband=early_media)
        elif early_media and not self.early_media:
            call.progress()  # PROGRESS with progress indicator #8 on an alerted call
        self.early_media = self.early_media or early_media
        return self.early_media

    def answer(self, codecs: list[str] | None = None) -> None:
        self.call.answer()
        self._open_to_listen()  # the caller's side is connected from the CONNECT on

    def release(self, cause: Cause, raw_cause: str | None = None) -> Cause | None:
        if raw_cause is not None:
            q850 = q850_of(raw_cause)
            if q850 is None:
                return None
            cause = Q850_TO_CAUSE.get(q850, Cause.OTHER)
        else:
            q850 = CAUSE_TO_Q850[cause]
        self.call.hangup(q850)
        return cause

    def media(self) -> MediaPort:
        if self._port is None:
            if not self.call.live:
                raise Error(f"{self.describe()}: the call is {self.call.state.name}; it has "
                            "no media path")
            self._port = BChannelPort(self.call.open_media(), self.call.law)
        return self._port

    def listen(self, receiver: Callable[[bytes, str], None] | None) -> None:
        super().listen(receiver)
        call = self.call
        if receiver is None:
            if self._reading:
                self._reading = False
                call.on_media(None)
        elif (call.state in (CallState.CONNECTING, CallState.CONNECTED)
              or (not call.incoming and call.inband)
              or (self.early_media and self.listen_early)):
            self._open_to_listen()

    def _open_to_listen(self) -> None:
        """Read the far end's side of the B-channel from now on (what it sent before is
        dropped: it was not for this listener)."""
        if self._receiver is None or self._reading or not self.call.live:
            return
        try:
            port = self.media()
            assert isinstance(port, BChannelPort)
            port.channel.flush(abi.DAHDI_FLUSH_READ)
        except (OSError, Error) as exc:
            log.warning("%s: the B-channel did not open to listen: %s", self.describe(), exc)
            return
        self._reading = True
        # straight to the receive path (a call's law does not change): 50 blocks a second
        self.call.on_media(functools.partial(self._received, law=self.call.law))

    def _on_call_event(self, call: PriCall, event: CallEvent) -> None:
        translated: LegEvent | None = None
        if isinstance(event, CallConnected):
            self._open_to_listen()
            translated = LegAnswered()
        elif isinstance(event, CallProgress | CallAlerting) and event.inband \
                and not call.incoming:
            self._open_to_listen()  # the far end plays ringback or an announcement
        if isinstance(event, CallAlerting):
            translated = LegAlerting(event.inband)
        elif isinstance(event, CallCleared):
            self._port = None
            cause = Q850_TO_CAUSE.get(event.cause, Cause.OTHER)
            translated = LegCleared(cause, str(event.cause), event.by)
        if translated is not None:
            self._emit(translated)


#: the analog states (their values) in which a port is off hook, for `uascall channels`:
#: an FXO port's own hook, the phone's on an FXS port
_OFF_HOOK_STATES = {
    "FXO": frozenset({"connected", "closing", "seizing", "dialling", "proceeding"}),
    "FXS": frozenset({"dialling", "offered", "connected", "parked"}),
}


class DahdiBackend(Backend):
    """PRI spans and analog ports on DAHDI boards.

    ``system_conf`` is dahdi_cfg's file (a path, or a parsed
    :class:`~uascall.dahdi.config.SystemConf`). ``spans`` picks PRI span numbers from it
    (default: every span with a D-channel); ``node`` ("cpe" or "net") and ``switch``
    ("euroisdn_e1", "ni2", "dms100", "5ess", "4ess", "qsig", ...) apply to all of them;
    ``timers`` are libpri timers in ms; ``listen_early`` reads the caller's side of a
    B-channel during early media too (see :class:`PriLeg`). ``ports`` picks analog
    channels (default: every fxsks and fxoks channel), ``analog`` how they behave.
    """

    name = "dahdi"

    def __init__(self, engine: Engine, *,
                 system_conf: str | os.PathLike[str] | SystemConf = DEFAULT_PATH,
                 spans: Sequence[int] | None = None, node: str = "cpe",
                 switch: str = "euroisdn_e1", timers: dict[str, int] | None = None,
                 ports: Sequence[int] | None = None, analog: AnalogSettings | None = None,
                 io: DeviceIO | None = None, dev_dir: str = DEV_DIR,
                 listen_early: bool = False) -> None:
        super().__init__(engine)
        if node.lower() not in NODES:
            raise ArgumentError(f"node {node!r}; expected one of {', '.join(NODES)}")
        if switch.lower() not in SWITCHES:
            raise ArgumentError(f"switch {switch!r}; expected one of {', '.join(SWITCHES)}")
        self.system_conf = system_conf
        self.span_numbers = list(spans) if spans is not None else None
        self.node = NODES[node.lower()]
        self.switch = SWITCHES[switch.lower()]
        self.timers = timers
        self.listen_early = listen_early
        self.io = io
        self.dev_dir = dev_dir
        self.port_numbers = list(ports) if ports is not None else None
        self.analog = analog or AnalogSettings()
        self.spans: list[PriSpan] = []
        self.ports: list[AnalogPort] = []
        self.media_clock = MediaClock(engine)  # paces the analog ports' own tones

    # the command line's part: what `uascall run/call --backend dahdi` takes
    @classmethod
    def add_arguments(cls, group: Any, command: str) -> None:
        if command == "channels":
            group.add_argument("--sysfs", default="/sys", metavar="DIR",
                               help="where sysfs is, for the spans when no uascall runs "
                               "(default %(default)s)")
            group.add_argument("--proc", default="/proc", metavar="DIR",
                               help="where procfs is: /proc/dahdi when sysfs has no DAHDI "
                               "buses (default %(default)s)")
            return
        if command not in ("run", "call"):
            return
        group.add_argument("--system-conf", default=DEFAULT_PATH)
        group.add_argument("--span", type=int, action="append", help="a span to serve "
                           "(repeatable; default: every span with a dchan=)")
        group.add_argument("--node", default="cpe", help="cpe (default) or net")
        group.add_argument("--listen-early", action="store_true",
                           help="PRI (and sim): hear the caller during early media too "
                           "(keys before the answer), where the network connects that side "
                           "early")
        group.add_argument("--switch", default="euroisdn_e1",
                           help="euroisdn_e1 (default), euroisdn_t1, ni2, ni1, dms100, "
                           "5ess, 4ess, qsig")
        group.add_argument("--port", type=int, action="append", metavar="CHANNEL",
                           help="an analog port to serve (repeatable; default: every fxsks "
                           "and fxoks channel)")
        group.add_argument("--callerid", choices=("bell", "etsi", "none"), default="bell",
                           help="caller ID FSK on analog ports: bell (Bell 202, default), "
                           "etsi (V.23) or none")
        group.add_argument("--zone", default="us", help="tone zone for analog ports' dial "
                           "tone and ringback (us, uk, de, nl...; default us)")
        group.add_argument("--ring-timeout", type=float, default=8.0, metavar="SECONDS",
                           help="an unanswered call on an FXO port has ended this long "
                           "after its last ring (default %(default)s)")
        group.add_argument("--dialing", choices=("dtmf", "pulse"), default="dtmf",
                           help="how calls out of FXO ports dial: dtmf (default) or pulse "
                           "(loop breaks, 10 a second)")
        group.add_argument("--answer-supervision", choices=("none", "polarity"),
                           default="none", help="how an FXO call out knows it is answered: "
                           "none (default: answered once dialled) or polarity (the line's "
                           "reversal)")
        group.add_argument("--dial-tone-timeout", type=float, default=5.0,
                           metavar="SECONDS", help="an FXO line without dial tone this long "
                           "after going off hook is dead (default %(default)s)")

    @classmethod
    def options_from_arguments(cls, args: Any, command: str) -> dict[str, Any]:
        return {"system_conf": args.system_conf, "spans": args.span or None,
                "listen_early": args.listen_early,
                "node": args.node, "switch": args.switch, "ports": args.port or None,
                "analog": AnalogSettings(
                    callerid=None if args.callerid == "none" else args.callerid,
                    zone=args.zone, ring_timeout=args.ring_timeout, dialing=args.dialing,
                    answer_supervision=args.answer_supervision,
                    dial_tone_timeout=args.dial_tone_timeout)}

    def owns(self, leg: CallLeg) -> bool:
        if isinstance(leg, PriLeg):
            return leg.call.span in self.spans
        return isinstance(leg, AnalogLeg) and leg.port in self.ports

    @classmethod
    def offline_status(cls, args: Any) -> dict[str, Any] | None:
        from uascall.dahdi import sysfs
        return sysfs.read(args.sysfs, args.proc)

    def status(self, calls: dict[CallLeg, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        from uascall.status import channel_row, span_row, with_call
        by_pri_call = {leg.call: info for leg, info in calls.items()
                       if isinstance(leg, PriLeg)}
        spans, channels = [], []
        for span in self.spans:
            layout = span.layout
            spans.append(span_row(
                self.name, layout.spanno, name=span.name, kind=layout.kind, law=span.law,
                switch=span.switch.name.lower(), node=span.node.name.lower(),
                dchannel="up" if span.up else "down",
                alarms=abi.alarm_names(span.alarms)))
            rows = [channel_row(
                self.name, layout.dchannel, span=layout.spanno, signalling="PRI D",
                in_use=True, state="up" if span.up else "down",
                alarms=abi.alarm_names(span.alarms))]
            by_channel = {}
            for call in span.calls:
                if call.chanpos:
                    by_channel[span.channo_of(call.chanpos)] = call
            out_of_service = {span.channo_of(pos) for pos in span.out_of_service}
            for channo in layout.bchannels:
                call = by_channel.get(channo)
                row = channel_row(self.name, channo, span=layout.spanno,
                                  chanpos=channo - span.channo_of(1) + 1,
                                  signalling="PRI B",
                                  state="out of service" if channo in out_of_service
                                  else "idle")
                if call is not None:
                    row.update(in_use=True, state=call.state.value, codec=call.law,
                               direction="inbound" if call.incoming else "outbound",
                               far_end=call.calling if call.incoming else call.called)
                    with_call(row, by_pri_call.get(call))
                rows.append(row)
            channels += sorted(rows, key=lambda row: row["channel"])
        for port in self.ports:
            state = getattr(port.machine, "state", None)
            value = state.value if state is not None else ""
            # FXO: our own hook; FXS: the phone's
            off_hook = _OFF_HOOK_STATES.get(port.kind, frozenset())
            row = channel_row(self.name, port.channo, signalling=port.kind,
                              hook="" if state is None else (
                                  "off" if value in off_hook else "on"),
                              state=value, in_use=port.leg is not None, codec=port.law)
            if port.leg is not None:
                row.update(far_end=port.leg.call_from if port.leg.incoming
                           else port.leg.call_to)
                with_call(row, calls.get(port.leg))
            channels.append(row)
        return {"spans": spans, "channels": channels,
                "counters": {"late_ticks": self.media_clock.late_ticks,
                             "frames_not_sent": sum(s.frames_not_sent for s in self.spans),
                             "spans_in_alarm": sum(1 for s in self.spans if s.alarms),
                             "dchannels_up": sum(1 for s in self.spans if s.up)}}

    def start(self) -> None:
        conf = (self.system_conf if isinstance(self.system_conf, SystemConf)
                else SystemConf.read(self.system_conf))
        layouts = conf.pri_spans()
        if self.span_numbers is not None:
            layouts = [conf.pri_span(n) for n in self.span_numbers]
        analog = sorted(n for n, kind in conf.signalling.items()
                        if kind in ("fxsks", "fxoks"))
        if self.port_numbers is not None:
            unknown = sorted(set(self.port_numbers) - set(analog))
            if unknown:
                raise Error(f"{conf.source}: channels {unknown} are not fxsks or fxoks; "
                            f"analog channels there: {analog or 'none'}")
            analog = list(self.port_numbers)
        if not layouts and not analog:
            raise Error(f"{conf.source} has no PRI span (dchan=) and no analog port "
                        "(fxsks=, fxoks=); expected at least one for the dahdi backend")
        for layout in layouts:
            span = PriSpan(self.engine, layout, node=self.node, switch=self.switch,
                           io=self.io, dev_dir=self.dev_dir, timers=self.timers)
            self.attach(span)
            span.start()
        for channo in analog:
            port = AnalogPort(self.engine, channo, clock=self.media_clock,
                              settings=self.analog, io=self.io, dev_dir=self.dev_dir)
            port.on_incoming = self._offer_analog
            port.start()
            self.ports.append(port)

    def attach(self, span: PriSpan) -> None:
        """Take the incoming calls of ``span`` (started by the caller or by :meth:`start`)."""
        span.on_incoming = self._incoming
        self.spans.append(span)

    def stop(self) -> None:
        for span in self.spans:
            span.stop()
        for port in self.ports:
            port.stop()

    def _offer_analog(self, leg: AnalogLeg) -> None:
        if not self._offer(leg):
            log.warning("%s: nobody takes calls; letting %s go", self.name, leg.describe())
            leg.release(Cause.REJECTED)

    # ------------------------------------------------------------------ calls out
    def place_call(self, call_to: str, call_from: str = "", *, route: str | None = None,
                   codecs: list[str] | None = None,
                   headers: list[tuple[str, str]] | None = None,
                   prepared: object = None) -> CallLeg:
        kind, _, number = (route or "").partition(":")
        if kind not in ("", "pri", "fxs", "fxo"):
            raise ArgumentError(f"route {route!r}; expected 'pri', 'pri:SPAN', 'fxs', "
                                "'fxs:CHANNEL', 'fxo', 'fxo:CHANNEL' or None")
        which = _route_number(route, number)
        if kind in ("", "pri"):
            for span in self.spans:
                if which is not None and span.layout.spanno != which:
                    continue
                if span.in_service and span.has_free_channel():
                    law = self._law_for(span, codecs)
                    return PriLeg(span.call(call_to, calling=call_from, law=law),
                                  listen_early=self.listen_early)
            if kind == "pri" or not self.ports:
                raise NoRoute(f"no PRI span can place a call to {call_to!r} now "
                              f"({self._describe_spans(which)})")
        analog = "FXO" if kind == "fxo" else "FXS"
        for port in self.ports:
            if port.kind != analog or (which is not None and port.channo != which):
                continue
            if port.idle:
                return port.place_call(call_to, call_from)
        raise NoRoute(f"no idle {analog} port for a call to {call_to!r}"
                      + (f" (channel {which})" if which is not None else ""))

    @staticmethod
    def _law_for(span: PriSpan, codecs: list[str] | None) -> str:
        # On TDM the span's law is what the line carries; codecs only says what is
        # acceptable, and the span's law must be among them.
        if codecs and span.law not in codecs:
            raise ArgumentError(f"codecs {codecs}: span {span.layout.spanno} carries "
                                f"{span.law}; expected it among the codecs")
        return span.law

    def _describe_spans(self, which: int | None) -> str:
        spans = [s for s in self.spans if which is None or s.layout.spanno == which]
        if not spans:
            return f"there is no PRI span {which}" if which else "there is no PRI span"
        return ", ".join(f"span {s.layout.spanno} {_span_state(s)}, {len(s.calls)} calls"
                         for s in spans)

    def _incoming(self, call: PriCall) -> None:
        if not self._offer(PriLeg(call, listen_early=self.listen_early)):
            log.warning("%s: nobody takes calls; refusing %r", self.name, call)
            call.hangup(libpri.PRI_CAUSE_CALL_REJECTED)
