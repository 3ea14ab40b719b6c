"""A PRI span on the engine: its D-channel driven by libpri, its B-channels opened on demand.

Theory of operation
-------------------
:class:`PriSpan` owns one D-channel device and one :class:`~uascall.dahdi.libpri.Pri`.
The engine watches the D-channel for ``EPOLLIN | EPOLLPRI``: queued DAHDI events (alarms)
are drained first, then libpri reads frames through our callbacks, one frame and at most
one event per ``check_event``. libpri's timers are wall-clock deadlines, kept with the
engine's real-time timers in every clock mode, and run until they yield no more events.
Calls are :class:`~uascall.dahdi.pri_call.PriCall` objects, keyed by libpri's call
pointer while libpri holds them; their state table lives in :mod:`uascall.dahdi.pri_call`.

Rules learnt from libpri 1.6 that shape this module:

- An incoming SETUP is answered with CALL PROCEEDING at once, on an explicit B-channel:
  until we have responded libpri sends nothing for most clearing causes, and a caller that
  gives up can vanish without an event.
- ALERTING and PROGRESS carry progress indicator #8 when early media is in band;
  ``PROGRESS`` always does (without it the far end's libpri refuses the message).
- CONNECT ACKNOWLEDGE is reported (the answering side learns when the call is really
  connected; the calling side sends it itself on ANSWER), and clearing follows Q.931
  5.3.2 (libpri's "hangup fix"): RELEASE COMPLETE only before any other message.
- Clearing: after the far end's DISCONNECT we release (HANGUP_REQ → ``hangup``); every
  HANGUP needs one more ``hangup`` to free the call; after HANGUP_ACK the pointer is dead.
  libpri acts first and listeners hear of it after, so that a call placed from a listener
  cannot overtake our RELEASE on the wire.
- libpri must not be re-entered from its own callbacks: DAHDI events drained while libpri
  reads a frame (alarms) are handled on the next engine iteration.
- A span in alarm (RED, YELLOW, BLUE, LOS, ...: :data:`SPAN_DOWN_ALARMS`) carries nothing
  both ways: its calls are cleared at once with cause 38 (network out of order) and their
  libpri records dropped; no call is placed or taken on it until the alarm clears
  (:attr:`PriSpan.in_service`). D-channel loss alone is left to libpri, as Q.931 5.8.8
  asks: unanswered calls end with cause 27 when layer 2 cannot be re-established,
  answered ones after T309, so a short outage does not drop conversations; no call is
  placed meanwhile.
- An incoming RESTART is acknowledged by libpri, which does not clear the calls on the
  restarted channels: we drop them with cause 41 (temporary failure: try again at once).
- A B-channel the far end refuses for our call with cause 44 (requested circuit/channel
  not available) is restarted, once until a call on it connects: most often the far end
  still holds a call there that we no longer have, and RESTART clears it at both ends
  (Asterisk's force_restart_unavailable_chans). Refused again, it is left out of our
  channel choice until a RESTART for it or for the interface, from either end
  (:attr:`PriSpan.out_of_service`): offered again at once, it would be refused again.
- libpri ends some calls without any event (a SETUP or RESTART with a mandatory IE missing
  on a live call's reference frees it; a RESTART ACKNOWLEDGE on it leaves it Null, and the
  next hangup frees it sending nothing), and malloc gives a freed record's address to the
  next call. So a call is known by its pointer *and* libpri's call reference for it
  (``pri_get_crv``); after every frame and timer the span checks that libpri still holds
  each call, and a lost one is cleared with cause 41 and its B-channel restarted. A freed
  pointer is never handed back to libpri.
- Clearing is bounded: a call whose clearing began (our DISCONNECT, or our RELEASE after the
  far end's) and is not over after T305 + 2 x T308 + one layer 2 re-establishment
  (:meth:`PriSpan.clearing_bound`) is released by the span, logged once. When T308 expires
  the second time (libpri's HANGUP_ACK from a timer) the B-channel goes to maintenance and
  is restarted, as Q.931 5.3.4.3 says; both cases RESTART the channel, which is out of our
  choice until the RESTART is acknowledged (sent again every T316, 120 s, until it is).

Everything here runs on the engine thread.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from uascall.dahdi import abi, libpri
from uascall.dahdi.config import ConfigError, SpanLayout
from uascall.dahdi.device import DEV_DIR, Channel, ControlDevice, DeviceIO
from uascall.dahdi.pri_call import (
    TRANSITIONS,
    CallAlerting,
    CallCleared,
    CallConnected,
    CallEvent,
    CallProceeding,
    CallProgress,
    CallState,
    PriCall,
)
from uascall.dahdi.reopen import Reopener
from uascall.engine import EPOLLIN, EPOLLPRI, DescriptorDropped, Engine, TimerHandle
from uascall.errors import DeviceError, Error

__all__ = [
    "CallAlerting", "CallCleared", "CallConnected", "CallEvent", "CallProceeding",
    "CallProgress", "CallState", "PriCall", "PriSpan", "SpanEvent",
]

log = logging.getLogger(__name__)

#: alarms under which a span carries no call: the line is down (RED, LOS, loss of frame or
#: multiframe alignment), the far end says it lost us (YELLOW) or sends all ones (BLUE), or
#: the driver has not opened the span (NOTOPEN). RECOVER (coming out of alarm) and
#: LOOPBACK (a maintenance loop someone set up on purpose) are only logged.
SPAN_DOWN_ALARMS = (abi.DAHDI_ALARM_RED | abi.DAHDI_ALARM_YELLOW | abi.DAHDI_ALARM_BLUE
                    | abi.DAHDI_ALARM_NOTOPEN | abi.DAHDI_ALARM_LOS | abi.DAHDI_ALARM_LFA
                    | abi.DAHDI_ALARM_LMFA)
_HDLC_SIGNALLING = (abi.DAHDI_SIG_HDLCFCS, abi.DAHDI_SIG_HARDHDLC)
_MAX_FRAMES_PER_WAKEUP = 64  # fairness towards the other descriptors
_INBAND = libpri.PRI_PROG_INBAND_AVAILABLE | libpri.PRI_PROG_CALL_NOT_E2E_ISDN
#: causes libpri clears with RELEASE COMPLETE (freeing the call at once, with no event)
#: when nothing else was sent for the call yet (Q.931 5.3.2 a)
_RELEASE_COMPLETE_CAUSES = frozenset({1, 34, 44, 81, 82, 88})
_TEMPORARY_FAILURE = libpri.PRI_CAUSE_NORMAL_TEMPORARY_FAILURE
#: Q.931's T316 default: a RESTART not acknowledged this long (seconds) is sent again
RESTART_AGAIN_AFTER = 120.0


@dataclass(frozen=True, slots=True)
class SpanEvent:
    """Something that happened to the span: D-channel up/down or an alarm change."""

    kind: str  # "dchannel-up", "dchannel-down", "alarm", "config-error", "device-error",
    # "reopened"
    alarms: int = 0
    detail: str = ""


def _timer_settings(timers: Mapping[str, int]) -> dict[libpri.Timer, int]:
    settings = {}
    for name, value in timers.items():
        try:
            settings[libpri.Timer[name.upper()]] = value
        except KeyError:
            known = ", ".join(timer.name for timer in libpri.Timer)
            raise ConfigError(f"unknown libpri timer {name!r}; expected one of {known}"
                              ) from None
    return settings


def _cause_or(cause: int, default: int) -> int:
    """libpri reports -1 when a message carried no cause."""
    return cause if 1 <= cause <= 127 else default


class PriSpan:
    """One ISDN PRI span: D-channel signalling through libpri, calls and their B-channels.

    Create it, then call :meth:`start` on the engine thread. ``on_incoming`` is called with
    each new incoming :class:`PriCall` (already answered with CALL PROCEEDING); without it,
    incoming calls are refused with cause 21. ``timers`` maps libpri timer names ("T309",
    "T200", ...) to milliseconds.
    """

    def __init__(self, engine: Engine, layout: SpanLayout, *,
                 node: libpri.Node = libpri.Node.CPE,
                 switch: libpri.Switch = libpri.Switch.EUROISDN_E1,
                 io: DeviceIO | None = None, dev_dir: str = DEV_DIR, law: str | None = None,
                 timers: Mapping[str, int] | None = None, name: str | None = None) -> None:
        self.engine = engine
        self.layout = layout
        self.node = libpri.Node(node)
        self.switch = libpri.Switch(switch)
        self.law = law or layout.law
        self.name = name or f"span{layout.spanno}-{self.node.name.lower()}"
        self._io = io
        self._dev_dir = dev_dir
        self._timers = _timer_settings(timers or {})
        self.on_incoming: Callable[[PriCall], None] | None = None
        self.listeners: list[Callable[[SpanEvent], None]] = []
        self.up = False
        self.alarms = 0
        self._dchan: Channel | None = None
        self._pri: libpri.Pri | None = None
        self._base = 0  # global number of the span's first channel
        self._chanpos: tuple[int, ...] = ()
        self._calls: dict[int, PriCall] = {}    # libpri pointer → call, while libpri has it
        self._busy: dict[int, PriCall] = {}     # chanpos → call using it
        self._out_of_service: set[int] = set()  # chanpos the far end refused (cause 44)
        # chanpos in maintenance: left out of our choice until our RESTART for it is
        # acknowledged (sent as soon as no call of ours holds the channel)
        self._maintenance: set[int] = set()
        self._restart_unsent: set[int] = set()
        self._restart_timer: TimerHandle | None = None
        # chanpos we restarted after a cause 44, until a call on them connects
        self._restarted_after_44: set[int] = set()
        self._timer: TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._alarm_check_pending = False
        # after a device error: the error, and the retry to open the D-channel again
        self._failure: Exception | None = None
        self._reopener = Reopener(engine, start=self._start_again, stop=self.stop,
                                  name=f"{self.name}: the D-channel")
        #: frames libpri wrote while every D-channel transmit buffer was full (lost, as
        #: on a line that is busy: Q.921 retransmits its I frames)
        self.frames_not_sent = 0
        self._line_full = False
        self._config_errors: set[str] = set()  # each logged once at ERROR

    def __repr__(self) -> str:
        state = "up" if self.up else "down"
        return f"<PriSpan {self.name} {self.switch.name} {state} calls={len(self.calls)}>"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Open the D-channel, check the layout against the kernel, start libpri."""
        dchan = Channel.open(self.layout.dchannel, io=self._io, dev_dir=self._dev_dir)
        try:
            self._check_layout(dchan)
            dchan.set_buffers(numbufs=32, bufsize=1024)
            dchan.on_event = self._on_dchannel_event
            self.alarms = dchan.span_status().alarms
            self._dchan = dchan
            self._pri = libpri.Pri(self.node, self.switch, read=self._read_frame,
                                   write=self._write_frame, fd=dchan.fileno(), name=self.name)
            self._pri.connect_ack_enable(True)
            self._pri.hangup_fix_enable(True)
            for timer, value in self._timers.items():
                self._pri.set_timer(timer, value)
            self.engine.add_fd(dchan.fileno(), EPOLLIN | EPOLLPRI, self._on_dchannel_ready,
                               on_error=self._dchannel_handler_failed)
            self.engine.add_shutdown_callback(self.stop)
        except BaseException:
            self._dchan = None
            dchan.close()
            raise
        self._reschedule()
        self._reopener.opened()
        log.info("%s: started on D-channel %d (%s, %s, %d B-channels, %s)", self.name,
                 self.layout.dchannel, self.node.name, self.switch.name, len(self._chanpos),
                 self.law)

    def stop(self) -> None:
        """Drop every call without signalling (cause 41) and close the span's devices."""
        self._reopener.cancel()
        self._close(_TEMPORARY_FAILURE)

    def _close(self, cause: int) -> None:
        dchan = self._dchan
        if dchan is None:
            return
        # Down first: listeners told of the dropped calls must not be able to dial again.
        self.up = False
        self._dchan = None
        for call in list(self._busy.values()):
            self._drop(call, cause)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._restart_timer is not None:
            self._restart_timer.cancel()
            self._restart_timer = None
        self._pri = None
        self.engine.remove_fd(dchan.fileno())
        self.engine.remove_shutdown_callback(self.stop)
        with contextlib.suppress(OSError):  # a device that failed may fail to close too
            dchan.close()

    # ------------------------------------------------------------------ device errors
    def _dchannel_handler_failed(self, exc: BaseException) -> None:
        if isinstance(exc, DescriptorDropped):  # failing on every wake-up: as a dead device
            self._device_failed(exc)

    def _device_failed(self, exc: Exception) -> None:
        """The D-channel's device failed (EIO: a card gone, a driver unloaded): noted
        here, possibly inside a libpri call; the span goes down on the next iteration."""
        if self._failure is None:
            self._failure = exc
            self.engine.call_soon(self._go_down)

    def _go_down(self) -> None:
        exc, self._failure = self._failure, None
        if self._dchan is None or exc is None:
            return
        log.error("%s: the D-channel failed (%s); the span is down, its calls cleared; "
                  "opening it again in %g s", self.name, exc, self._reopener.first_delay())
        self._close(libpri.PRI_CAUSE_NETWORK_OUT_OF_ORDER)
        self._emit_span(SpanEvent("device-error", self.alarms, str(exc)))
        self._reopener.schedule()

    def _start_again(self) -> None:
        self.start()
        log.warning("%s: the D-channel opened again; the span comes up with layer 2",
                    self.name)
        self._emit_span(SpanEvent("reopened", self.alarms))

    def _check_layout(self, dchan: Channel) -> None:
        params = dchan.params()
        if params.sigtype not in _HDLC_SIGNALLING:
            raise ConfigError(f"{self.name}: channel {self.layout.dchannel} is "
                              f"{abi.sig_name(params.sigtype)}, expected a D-channel "
                              f"(dchan={self.layout.dchannel} in system.conf)")
        self._base = params.channo - params.chanpos + 1
        ctl = ControlDevice.open(io=self._io, dev_dir=self._dev_dir)
        try:
            positions = []
            for channo in self.layout.bchannels:
                bparams = ctl.channel_params(channo)
                if bparams.spanno != params.spanno or bparams.sigtype != abi.DAHDI_SIG_CLEAR:
                    raise ConfigError(
                        f"{self.name}: B-channel {channo} is {abi.sig_name(bparams.sigtype)} "
                        f"on span {bparams.spanno}; expected a bchan= channel on span "
                        f"{params.spanno}, the D-channel's")
                positions.append(bparams.chanpos)
        finally:
            ctl.close()
        self._chanpos = tuple(positions)

    def channo_of(self, chanpos: int) -> int:
        return self._base + chanpos - 1

    @property
    def in_service(self) -> bool:
        """Whether the span can carry calls: started, layer 2 up and not in alarm."""
        return self._dchan is not None and self.up and not self.alarms & SPAN_DOWN_ALARMS

    @property
    def out_of_service(self) -> frozenset[int]:
        """B-channels (positions) the far end said it cannot use (cause 44), left out of
        our choice until a RESTART for them or for the interface, and those in
        maintenance until our RESTART for them is acknowledged."""
        return frozenset(self._out_of_service | self._maintenance)

    def _why_not_in_service(self) -> str:
        if self.alarms & SPAN_DOWN_ALARMS:
            return f"in alarm ({', '.join(abi.alarm_names(self.alarms))})"
        return "down (its D-channel is not up)" if self._dchan is not None else "not started"

    @property
    def calls(self) -> list[PriCall]:
        """Calls holding a B-channel, cleared ones included until RELEASE COMPLETE."""
        return list(self._busy.values())

    # ------------------------------------------------------------------ operations
    def call(self, called: str, *, calling: str = "", calling_name: str = "",
             chanpos: int | None = None, law: str | None = None) -> PriCall:
        """Place a call (SETUP). Raises Error when the span cannot carry one now."""
        if self._pri is None or self._dchan is None:
            raise Error(f"{self.name}: call() on a span that is not started; expected start()")
        if not self.in_service:
            raise Error(f"{self.name}: the span is {self._why_not_in_service()}; expected "
                        "an established link and no alarm")
        if chanpos is None:
            chanpos = self._free_channel()
            if chanpos is None:
                raise Error(f"{self.name}: all {len(self._chanpos)} B-channels are busy")
        elif chanpos not in self._chanpos or chanpos in self._busy:
            raise Error(f"{self.name}: B-channel {chanpos} is busy or not on this span")
        law = law or self.law
        ref = self._pri.new_call()
        if ref in self._calls:  # libpri freed that call without telling us
            self._lost(self._calls[ref], "its record was given to a new call")
        layer1 = libpri.PRI_LAYER_1_ALAW if law == "alaw" else libpri.PRI_LAYER_1_ULAW
        try:
            self._pri.setup(ref, called=called, calling=calling, calling_name=calling_name,
                            channel=chanpos, exclusive=self.node is libpri.Node.NETWORK,
                            layer1=layer1)
        except BaseException:
            self._pri.destroy_call(ref)
            raise
        call = PriCall(self, ref, incoming=False, chanpos=chanpos, law=law, called=called,
                       calling=calling, calling_name=calling_name)
        call._libpri_cr = self._pri.call_reference(ref)
        self._calls[ref] = call
        self._busy[chanpos] = call
        self._reschedule()
        log.info("%s: SETUP %r", self.name, call)
        return call

    def restart(self, chanpos: int) -> None:
        """Send RESTART for one B-channel, dropping our own call on it first (cause 41)."""
        if self._pri is None or self._dchan is None or chanpos not in self._chanpos:
            raise Error(f"{self.name}: restart({chanpos}): not a B-channel of a started span")
        victim = self._busy.get(chanpos)
        if victim is not None:
            self._forget(victim, destroy=True)
        self._pri.restart(chanpos)
        self._reschedule()
        if victim is not None:  # told only now: a call placed from a listener comes after
            victim._clear(_TEMPORARY_FAILURE, "span")

    def has_free_channel(self) -> bool:
        """Whether a call could be placed on this span now (a B-channel is free)."""
        return self._free_channel() is not None

    def _free_channel(self, preferred: int | None = None) -> int | None:
        unusable = self._out_of_service | self._maintenance
        if preferred in self._chanpos and preferred not in self._busy \
                and preferred not in unusable:
            return preferred
        # The network hunts upwards and the user side downwards, so that both ends rarely
        # pick the same channel at the same moment (glare).
        order = self._chanpos if self.node is libpri.Node.NETWORK else self._chanpos[::-1]
        return next((pos for pos in order
                     if pos not in self._busy and pos not in unusable), None)

    def _refused_channel(self, call: PriCall, cause: int) -> None:
        """The far end cleared our call with ``cause``: with 44 it cannot use the
        B-channel we asked for (out of service at its end, or stuck), so leave it alone."""
        if (call.incoming or cause != libpri.PRI_CAUSE_REQUESTED_CHAN_UNAVAIL
                or call.chanpos in self._out_of_service or call.chanpos in self._maintenance):
            return
        if call.chanpos not in self._restarted_after_44:
            # Most often the far end still holds a call there that we no longer have (a
            # release lost on the way): a RESTART clears it at both ends. Once only, until
            # a call on the channel connects: refused again, the channel is unusable there.
            self._restarted_after_44.add(call.chanpos)
            self._to_maintenance(call.chanpos, "the far end cannot use it (cause 44)")
            return
        self._out_of_service.add(call.chanpos)
        log.warning("%s: B-channel %d: the far end cannot use it (cause 44) even after a "
                    "RESTART; not offered again until it is restarted", self.name,
                    call.chanpos)

    def _back_in_service(self, chanpos: int | None, why: str) -> None:
        """A RESTART (``chanpos`` None: of the interface) puts refused channels back."""
        unusable = self._out_of_service | self._maintenance
        back = set(unusable) if chanpos is None else unusable & {chanpos}
        for pos in sorted(back):
            self._out_of_service.discard(pos)
            self._maintenance.discard(pos)
            self._restart_unsent.discard(pos)
            log.info("%s: B-channel %d is in service again (%s)", self.name, pos, why)
        if not self._maintenance and self._restart_timer is not None:
            self._restart_timer.cancel()
            self._restart_timer = None

    # ------------------------------------------------------------------ libpri I/O
    def _read_frame(self) -> bytes | None:
        dchan = self._dchan
        if dchan is None or self._failure is not None:
            return None
        try:
            frame = dchan.read_frame()
        except DeviceError as exc:
            self._device_failed(exc)
            return None
        return frame

    def _write_frame(self, data: bytes) -> bool:
        dchan = self._dchan
        if dchan is None:
            raise DeviceError(errno.EBADF, self.name, "write", "the span was stopped")
        if self._failure is not None:
            return True  # going down: the frame is lost with the link
        try:
            written = dchan.write_frame(data)
        except DeviceError as exc:
            self._device_failed(exc)
            return True
        if written != len(data):
            # Every transmit buffer holds a frame the line has not carried yet (a far end
            # that floods us with requests, a line slower than libpri's bursts). The frame
            # is lost as on a busy line; libpri is told and Q.921 retransmits.
            self.frames_not_sent += 1
            if not self._line_full:
                self._line_full = True
                log.warning("%s: every D-channel transmit buffer is full; frames are lost "
                            "until the line drains", self.name)
            return False
        if self._line_full:
            self._line_full = False
            log.warning("%s: the D-channel transmits again (%d frames lost so far while it "
                        "was full)", self.name, self.frames_not_sent)
        return True


    def _on_dchannel_ready(self, revents: int) -> None:
        dchan, pri = self._dchan, self._pri
        if dchan is None or pri is None or self._failure is not None:
            return
        try:
            if revents & EPOLLPRI:
                dchan.drain_events()
        except DeviceError as exc:
            self._device_failed(exc)
            return
        for _ in range(_MAX_FRAMES_PER_WAKEUP):
            if self._dchan is None or self._failure is not None:
                return
            self._handle(pri.check_event())
            if pri.drained:
                break
        self._run_timers()
        self._audit()

    def _pri_call(self, call: PriCall, operation: Callable[..., None], *args: object) -> bool:
        """``operation(pri, call, *args)``; if libpri refuses, the call is cleared with
        cause 41 (the far end told, if libpri will still send that) and the answer is False.
        """
        assert self._pri is not None
        try:
            operation(self._pri, call._ref, *args)
            return True
        except libpri.LibpriError as exc:
            if call._ref in self._calls and not self._holds(call):
                self._lost(call, f"{operation.__name__}() found no such call")
                return False
            log.error("%s: %s on %r failed: %s", self.name, operation.__name__, call, exc)
            if call.live and operation is not libpri.Pri.hangup:
                self._hang_up(call, _TEMPORARY_FAILURE, "span")
            else:
                self._drop(call, _TEMPORARY_FAILURE)
            return False
        finally:
            self._reschedule()

    # ------------------------------------------------------------------ timers
    def _reschedule(self) -> None:
        if self._pri is None or self._dchan is None:
            return
        deadline = self._pri.schedule_next()
        if deadline == self._timer_deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_deadline = deadline
        if deadline is not None:
            delay = max(0.0, deadline - time.time())
            self._timer = self.engine.call_later_real(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline = None
        self._run_timers()
        self._audit()

    def _run_timers(self) -> None:
        pri = self._pri
        while pri is not None and self._dchan is not None:
            event = pri.schedule_run()
            if event is None:
                break
            if (isinstance(event, libpri.HangupAck) and self.up
                    and event.cause != libpri.PRI_CAUSE_DESTINATION_OUT_OF_ORDER):
                # A HANGUP_ACK from a timer, the link up: T308 expired twice (Q.931
                # 5.3.4.3), the far end never confirmed the release.
                call = self._calls.get(event.call)
                if call is not None:
                    self._to_maintenance(call.chanpos, f"{call!r}: no RELEASE COMPLETE "
                                         "after T308 twice")
            self._handle(event)
        self._reschedule()

    # ------------------------------------------------------------------ libpri's records
    def _holds(self, call: PriCall) -> bool:
        """Whether libpri still has ``call``'s record: the pointer is in its pool and
        carries the call reference it had when the call began."""
        return (self._pri is not None and call._libpri_cr is not None
                and self._pri.call_reference(call._ref) == call._libpri_cr)

    def _audit(self) -> None:
        """Clear every call whose record libpri freed without an event (after frames
        and timers: garbage with a call's reference can make it do so)."""
        if self._pri is None:
            return
        for call in list(self._calls.values()):
            if not self._holds(call):
                self._lost(call, "libpri freed it without an event")

    def _lost(self, call: PriCall, why: str) -> None:
        """libpri dropped ``call`` without telling us (``why``): it ends here, and its
        B-channel is restarted, since the far end may still hold a call there."""
        if self._calls.get(call._ref) is not call:
            return
        del self._calls[call._ref]
        log.warning("%s: %r lost: %s; cleared here, B-channel %d restarted", self.name,
                    call, why, call.chanpos)
        self._to_maintenance(call.chanpos, f"{call!r} was lost", quiet=True)
        self._forget(call)
        call._clear(_TEMPORARY_FAILURE, "span")

    # ------------------------------------------------------------------ clearing bound
    def clearing_bound(self) -> float:
        """The longest a call may take from the start of its clearing to its end
        (seconds): T305 (our DISCONNECT unanswered, libpri sends RELEASE), T308 twice
        (RELEASE sent again, then libpri gives up: Q.931 5.3.4.3), and one re-establishment
        of layer 2 ((N200 + 1) x T200) on the way."""
        assert self._pri is not None

        def timer(which: libpri.Timer, default: int) -> float:
            value = self._pri.get_timer(which) if self._pri is not None else -1
            return (value if value > 0 else default) / 1000.0

        t200 = timer(libpri.Timer.T200, 1000)
        n200 = self._pri.get_timer(libpri.Timer.N200)
        return (timer(libpri.Timer.T305, 30000) + 2 * timer(libpri.Timer.T308, 4000)
                + (max(n200, 1) + 1) * t200)

    def _bound_clearing(self, call: PriCall) -> None:
        """``call`` is clearing and libpri still holds it: it must end within
        :meth:`clearing_bound`, whatever libpri does meanwhile."""
        if call._clearing_deadline is None and call._ref in self._calls:
            call._clearing_deadline = self.engine.call_later_real(
                self.clearing_bound(), self._clearing_overdue, call)

    def _clearing_overdue(self, call: PriCall) -> None:
        call._clearing_deadline = None
        if self._calls.get(call._ref) is not call:
            return
        log.warning("%s: %r still clearing after %.1f s (T305 + 2 x T308 + a layer 2 "
                    "re-establishment): released here, B-channel %d restarted", self.name,
                    call, self.clearing_bound(), call.chanpos)
        self._to_maintenance(call.chanpos, f"{call!r} did not clear", quiet=True)
        self._forget(call, destroy=True)
        call._clear(_TEMPORARY_FAILURE, "span")

    # ------------------------------------------------------------------ maintenance
    def _to_maintenance(self, chanpos: int, why: str, *, quiet: bool = False) -> None:
        """Take a B-channel out of our choice and RESTART it (as soon as no call of ours
        holds it), so that both ends agree it is idle; it is back on the RESTART's
        acknowledgement (or a RESTART from the far end)."""
        if chanpos not in self._chanpos or chanpos in self._maintenance:
            return
        self._maintenance.add(chanpos)
        self._restart_unsent.add(chanpos)
        if not quiet:
            log.warning("%s: B-channel %d to maintenance (%s); restarting it", self.name,
                        chanpos, why)
        self._send_restarts()

    def _send_restarts(self) -> None:
        if self._pri is None or not self.in_service:
            return  # sent when the link is back (_on_dchan_up)
        for chanpos in sorted(self._restart_unsent):
            if chanpos in self._busy:
                continue  # sent once the call on it is gone (_forget)
            self._restart_unsent.discard(chanpos)
            try:
                self._pri.restart(chanpos)
            except libpri.LibpriError as exc:
                log.error("%s: RESTART for B-channel %d not sent: %s", self.name, chanpos,
                          exc)
        self._reschedule()
        if self._maintenance and self._restart_timer is None:
            self._restart_timer = self.engine.call_later_real(RESTART_AGAIN_AFTER,
                                                              self._restart_again)

    def _restart_again(self) -> None:
        """T316: RESTARTs not acknowledged yet go out again."""
        self._restart_timer = None
        if self._maintenance:
            log.warning("%s: no RESTART ACKNOWLEDGE for B-channel(s) %s in %g s; sending "
                        "RESTART again", self.name, sorted(self._maintenance),
                        RESTART_AGAIN_AFTER)
            self._restart_unsent |= self._maintenance
            self._send_restarts()

    # ------------------------------------------------------------------ clearing
    def _hang_up(self, call: PriCall, cause: int, by: str) -> None:
        """Start clearing a live call: DISCONNECT, or RELEASE COMPLETE where Q.931 says."""
        at_once = cause in _RELEASE_COMPLETE_CAUSES and call.state in (CallState.OFFERED,
                                                                        CallState.DIALING)
        if cause == libpri.PRI_CAUSE_INVALID_CALL_REFERENCE:
            at_once = True
        call.cause, call.cleared_by = cause, by
        call.close_media()
        call.state = CallState.CLEARING
        if self._pri_call(call, libpri.Pri.hangup, cause):
            if at_once:
                # RELEASE COMPLETE went out and libpri freed the call: no event follows.
                self._forget(call)
                call._clear(cause, by)
            elif not self._holds(call):
                # libpri freed a record that garbage had put in the Null state, sending
                # nothing: the far end may still hold the call
                self._lost(call, "libpri freed it at our hangup without clearing")
            else:
                self._bound_clearing(call)

    def _fail(self, call: PriCall, cause: int) -> None:
        """Clear a call that went wrong on our side or on the wire, telling the far end."""
        if call.live:
            self._hang_up(call, cause, "span")

    def _drop(self, call: PriCall, cause: int) -> None:
        """Drop a call without signalling: free its libpri record and B-channel now."""
        self._forget(call, destroy=True)
        call._clear(cause, "span")

    def _forget(self, call: PriCall, *, destroy: bool = False) -> None:
        """libpri no longer has the call (or must drop it now): free its B-channel.
        Only a record that is still this call's is destroyed: a freed one's address may
        be another call's by now."""
        if self._calls.get(call._ref) is call:
            if destroy and self._holds(call):
                assert self._pri is not None
                self._pri.destroy_call(call._ref)
            del self._calls[call._ref]
        if call._clearing_deadline is not None:
            call._clearing_deadline.cancel()
            call._clearing_deadline = None
        if self._busy.get(call.chanpos) is call:
            del self._busy[call.chanpos]
            if call.chanpos in self._restart_unsent:
                self._send_restarts()

    def drop_calls(self, cause: int = _TEMPORARY_FAILURE) -> None:
        """Drop every call without signalling, as a RESTART of the whole interface does
        (the far end is told by the RESTART, or cannot be told: an alarm)."""
        for call in list(self._busy.values()):
            self._drop(call, cause)

    # ------------------------------------------------------------------ events
    def _handle(self, event: libpri.Event | None) -> None:
        if event is None:
            return
        handler = _EVENT_HANDLERS.get(type(event))
        call = self._calls.get(getattr(event, "call", 0) or 0)
        if call is not None and not isinstance(event, libpri.Ring) and not self._holds(call):
            # an event for another record at a freed call's address (HANGUP_ACK comes
            # after libpri's final hangup freed the record: it is ours all the same)
            if not isinstance(event, libpri.HangupAck):
                self._lost(call, "its record was given to another call")
                call = None
        try:
            if handler is None:
                log.info("%s: %s ignored", self.name, event)
            elif call is None and hasattr(event, "call") and not isinstance(event,
                                                                            libpri.Ring):
                log.debug("%s: %s for a call we no longer have", self.name, event)
            elif (call is not None and not call.live
                  and not isinstance(event, _CLEARING_EVENTS)):
                log.debug("%s: %s for %r, which is already clearing", self.name, event, call)
            else:
                handler(self, event, call)
        except Exception as exc:
            self.engine.faults.record(f"{self.name}: handling a libpri event", exc, event)
            if call is not None:
                self._fail(call, _TEMPORARY_FAILURE)

    def _transition(self, call: PriCall, step: str) -> bool:
        table = TRANSITIONS[call.direction].get(step, {})
        if call.state not in table:
            log.warning("%s: %s for %s %r; clearing with cause 111", self.name, step,
                        call.direction, call)
            self._fail(call, libpri.PRI_CAUSE_PROTOCOL_ERROR)
            return False
        call.state = table[call.state]
        return True

    def _emit_span(self, event: SpanEvent) -> None:
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception as exc:
                self.engine.faults.record(f"{self.name}: a span listener", exc, event)

    def _on_dchannel_event(self, event: int) -> None:
        # Called from drain_events(), possibly inside libpri's read callback: only note it.
        if event in (abi.DAHDI_EVENT_ALARM, abi.DAHDI_EVENT_NOALARM):
            if not self._alarm_check_pending:
                self._alarm_check_pending = True
                self.engine.call_soon(self._check_alarms)
        else:
            log.info("%s: D-channel event %s", self.name, abi.event_name(event))

    def _check_alarms(self) -> None:
        self._alarm_check_pending = False
        if self._dchan is None:
            return
        alarms = self._dchan.span_status().alarms
        if alarms == self.alarms:
            return
        self.alarms = alarms
        log.warning("%s: span alarms %s", self.name, abi.alarm_names(alarms) or "cleared")
        if alarms & SPAN_DOWN_ALARMS:
            self.drop_calls(libpri.PRI_CAUSE_NETWORK_OUT_OF_ORDER)
        self._emit_span(SpanEvent("alarm", alarms))

    def _on_dchan_up(self, event: libpri.DchanUp, call: None) -> None:
        self.up = True
        log.info("%s: D-channel up", self.name)
        self._emit_span(SpanEvent("dchannel-up", self.alarms))
        if self._restart_unsent:
            self._send_restarts()

    def _on_dchan_down(self, event: libpri.DchanDown, call: None) -> None:
        # Calls are libpri's to clear: cause 27 when layer 2 stays down, after T309 for
        # answered ones.
        self.up = False
        log.warning("%s: D-channel down", self.name)
        self._emit_span(SpanEvent("dchannel-down", self.alarms))

    def _on_ring(self, event: libpri.Ring, _call: None) -> None:
        assert self._pri is not None
        if event.call in self._calls:  # libpri freed that call without telling us
            self._lost(self._calls[event.call], "its record was given to a new call")
        requested = libpri.b_channel(event.channel)
        chanpos: int | None = None
        refuse = None
        if self.alarms & SPAN_DOWN_ALARMS:  # what we send may never reach the caller
            refuse = (libpri.PRI_CAUSE_NORMAL_CIRCUIT_CONGESTION, "the span is in alarm")
        elif event.ctype not in (libpri.PRI_TRANS_CAP_SPEECH,
                                 libpri.PRI_TRANS_CAP_3_1K_AUDIO):
            refuse = (libpri.PRI_CAUSE_INCOMPATIBLE_DESTINATION, "not a voice call")
        elif requested is not None and requested not in self._chanpos:
            refuse = (libpri.PRI_CAUSE_IDENTIFIED_CHANNEL_NOTEXIST, "no such B-channel")
        elif requested is not None and not event.flexible:
            chanpos = requested if requested not in self._busy else None
            if chanpos is None:
                refuse = (libpri.PRI_CAUSE_REQUESTED_CHAN_UNAVAIL, "B-channel busy")
        else:
            chanpos = self._free_channel(requested)
            if chanpos is None:
                refuse = (libpri.PRI_CAUSE_NORMAL_CIRCUIT_CONGESTION, "no free B-channel")
        if refuse is not None or chanpos is None:
            cause, why = refuse or (libpri.PRI_CAUSE_NORMAL_CIRCUIT_CONGESTION, "no channel")
            # Before any response these causes go out as RELEASE COMPLETE and free the call.
            log.warning("%s: refusing SETUP %s <- %s: %s (cause %d)", self.name,
                        event.called_number, event.calling_number, why, cause)
            self._pri.hangup(event.call, cause)
            return
        law = {libpri.PRI_LAYER_1_ALAW: "alaw", libpri.PRI_LAYER_1_ULAW: "ulaw"}.get(
            event.layer1, self.law)
        call = PriCall(self, event.call, incoming=True, chanpos=chanpos, law=law,
                       called=event.called_number, calling=event.calling_number,
                       calling_name=event.calling_name, cref=event.cref & 0x7FFF)
        call.progress_mask = event.progress_mask
        call._libpri_cr = self._pri.call_reference(event.call)
        self._calls[event.call] = call
        self._busy[chanpos] = call
        log.info("%s: incoming %r", self.name, call)
        call.proceeding()
        if not call.live:
            return
        if self.on_incoming is None:
            log.warning("%s: no handler for incoming calls; refusing %r", self.name, call)
            call.hangup(libpri.PRI_CAUSE_CALL_REJECTED)
            return
        try:
            self.on_incoming(call)
        except Exception as exc:
            self.engine.faults.record(f"{self.name}: the incoming-call handler", exc, call)
            self._fail(call, _TEMPORARY_FAILURE)

    def _follow_channel(self, call: PriCall, channel: int) -> bool:
        """The network may put our outgoing call on another B-channel than we asked for;
        False when it chose one we cannot use (the call is then being cleared)."""
        chanpos = libpri.b_channel(channel)
        if chanpos is None or chanpos == call.chanpos:
            return True
        if chanpos not in self._chanpos or chanpos in self._busy:
            log.warning("%s: network moved %r to unusable B-channel %d", self.name, call,
                        chanpos)
            self._fail(call, libpri.PRI_CAUSE_REQUESTED_CHAN_UNAVAIL)
            return False
        del self._busy[call.chanpos]
        call.chanpos = chanpos
        self._busy[chanpos] = call
        return True

    def _on_proceeding(self, event: libpri.Proceeding | libpri.SetupAck,
                       call: PriCall) -> None:
        if isinstance(event, libpri.Proceeding):
            call.cref = event.cref & 0x7FFF
        if self._transition(call, type(event).__name__) and self._follow_channel(
                call, event.channel):
            call.progress_mask |= event.progress_mask
            call._emit(CallProceeding(bool(event.progress_mask & _INBAND)))

    def _on_ringing(self, event: libpri.Ringing, call: PriCall) -> None:
        if self._transition(call, "Ringing") and self._follow_channel(call, event.channel):
            call.progress_mask |= event.progress_mask
            call._emit(CallAlerting(bool(event.progress_mask & _INBAND)))

    def _on_progress(self, event: libpri.Progress, call: PriCall) -> None:
        if self._transition(call, "Progress"):
            call.progress_mask |= event.progress_mask
            call._emit(CallProgress(bool(event.progress_mask & libpri.PRI_PROG_INBAND_AVAILABLE),
                                    event.cause))

    def _on_answer(self, event: libpri.Answer, call: PriCall) -> None:
        if self._transition(call, "Answer") and self._follow_channel(call, event.channel):
            if self._pri_call(call, libpri.Pri.connect_ack, call.chanpos):
                self._restarted_after_44.discard(call.chanpos)  # the channel works
                call._emit(CallConnected())

    def _on_connect_ack(self, event: libpri.ConnectAck, call: PriCall) -> None:
        was = call.state
        if self._transition(call, "ConnectAck") and was is CallState.CONNECTING:
            call._emit(CallConnected())

    def _on_hangup_req(self, event: libpri.HangupReq, call: PriCall) -> None:
        # The far end sent DISCONNECT: release (RELEASE); HANGUP_ACK frees the record.
        cause = _cause_or(event.cause, libpri.PRI_CAUSE_NORMAL_UNSPECIFIED)
        self._refused_channel(call, cause)
        if self._pri_call(call, libpri.Pri.hangup, cause):
            self._bound_clearing(call)
            call._clear(cause, "remote")

    def _on_hangup(self, event: libpri.Hangup, call: PriCall) -> None:
        # RELEASE (or a timer, or layer 2 gone for good): one more hangup frees the record.
        cause = _cause_or(event.cause, libpri.PRI_CAUSE_NORMAL_UNSPECIFIED)
        if call.live:  # cleared by the far end's RELEASE (COMPLETE), not after ours
            self._refused_channel(call, cause)
        if not self._pri_call(call, libpri.Pri.hangup, cause):
            return
        self._forget(call)
        lost = cause == libpri.PRI_CAUSE_DESTINATION_OUT_OF_ORDER and not self.up
        call._clear(cause, "span" if lost else "remote")

    def _on_hangup_ack(self, event: libpri.HangupAck, call: PriCall) -> None:
        self._forget(call)
        call._clear(_cause_or(event.cause, libpri.PRI_CAUSE_NORMAL_UNSPECIFIED), "remote")

    def _on_restart(self, event: libpri.Restart, call: None) -> None:
        chanpos = libpri.b_channel(event.channel)
        log.warning("%s: far end restarted %s", self.name,
                    "every B-channel" if chanpos is None else f"B-channel {chanpos}")
        for victim in list(self._busy.values()):
            if chanpos is None or victim.chanpos == chanpos:
                self._drop(victim, _TEMPORARY_FAILURE)
        self._back_in_service(chanpos, "restarted by the far end")

    def _on_restart_ack(self, event: libpri.RestartAck, call: None) -> None:
        self._back_in_service(libpri.b_channel(event.channel), "restarted")

    def _on_config_error(self, event: libpri.ConfigError, call: None) -> None:
        # libpri says this for every frame whose C/R bit is the wrong way round: a
        # misconfigured far end sends nothing else, garbage now and then.
        level = logging.DEBUG if event.message in self._config_errors else logging.ERROR
        self._config_errors.add(event.message)
        log.log(level, "%s: libpri configuration error: %s", self.name, event.message)
        self._emit_span(SpanEvent("config-error", self.alarms, event.message))

    def _on_informational(self, event: libpri.Event, call: PriCall | None) -> None:
        log.debug("%s: %s", self.name, event)

    # ------------------------------------------------------------------ B-channels
    def _open_bchannel(self, call: PriCall, numbufs: int) -> Channel:
        media = Channel.open(call.channo, io=self._io, dev_dir=self._dev_dir)
        try:
            media.set_blocksize(Channel.FRAME)
            media.set_buffers(numbufs=numbufs)
            # Audio mode first: the law and linear ioctls are refused on a raw clear channel.
            media.set_audio_mode(True)
            media.set_law(abi.DAHDI_LAW_ALAW if call.law == "alaw" else abi.DAHDI_LAW_MULAW)
            media.on_event = lambda event: log.debug("%r: B-channel event %s", call,
                                                     abi.event_name(event))
        except BaseException:
            media.close()
            raise
        call.media = media
        # a partial, not a lambda: one Python call less for each of 50 blocks a second
        self.engine.add_fd(media.fileno(), EPOLLPRI,
                           functools.partial(self._on_media_ready, call, media),
                           on_error=lambda _exc: self._fail(call, _TEMPORARY_FAILURE))
        self._watch_media(call)
        return media

    def _watch_media(self, call: PriCall) -> None:
        if call.media is not None:
            mask = EPOLLPRI | (EPOLLIN if call._on_media is not None else 0)
            self.engine.modify_fd(call.media.fileno(), mask)

    def _on_media_ready(self, call: PriCall, media: Channel, revents: int) -> None:
        # Span alarms are handled on the D-channel; B-channel events are only logged.
        if revents & EPOLLPRI:
            media.drain_events()
        for _ in range(8):
            # The callback may hang up or close the media: stop as soon as it is not ours.
            if call.media is not media or call._on_media is None:
                break
            block = media.read_frame()
            if block is None:
                break
            call._on_media(block)
            # where the device knows nothing more is waiting (the simulator), stop without
            # the read that would fail with EAGAIN; on a board, read on until it does
            if not media.closed and not media.may_read():
                break


_CLEARING_EVENTS = (libpri.HangupReq, libpri.Hangup, libpri.HangupAck)
_EVENT_HANDLERS: dict[type, Callable[[PriSpan, libpri.Event, PriCall | None], None]] = {
    libpri.DchanUp: PriSpan._on_dchan_up,
    libpri.DchanDown: PriSpan._on_dchan_down,
    libpri.Ring: PriSpan._on_ring,
    libpri.Proceeding: PriSpan._on_proceeding,
    libpri.SetupAck: PriSpan._on_proceeding,
    libpri.Ringing: PriSpan._on_ringing,
    libpri.Progress: PriSpan._on_progress,
    libpri.Answer: PriSpan._on_answer,
    libpri.ConnectAck: PriSpan._on_connect_ack,
    libpri.HangupReq: PriSpan._on_hangup_req,
    libpri.Hangup: PriSpan._on_hangup,
    libpri.HangupAck: PriSpan._on_hangup_ack,
    libpri.Restart: PriSpan._on_restart,
    libpri.RestartAck: PriSpan._on_restart_ack,
    libpri.ConfigError: PriSpan._on_config_error,
    libpri.InfoReceived: PriSpan._on_informational,
    libpri.KeypadDigit: PriSpan._on_informational,
    libpri.Notify: PriSpan._on_informational,
}
