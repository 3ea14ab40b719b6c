"""Analog ports on the engine: the device, timers, detectors and tones around
:mod:`uascall.dahdi.analog`'s state machines, and the call legs they offer.

An :class:`AnalogPort` keeps its channel open for as long as it runs: the kernel queues
its hook events there, and a line carries audio in every hook state, so the port reads
every 20 ms block (the caller ID, DTMF or call-progress detector gets them when the machine
listens, and the call's leg, its receive path, while the line is connected: off hook) and
plays its tones (dial tone, ringback, the caller ID spill, the digits an FXO port dials in
DTMF) with a player of its own. Whatever the call itself plays replaces the port's tone,
as a write cancels a kernel tone.

An FXO port dials with the kernel's DAHDI_DIAL, as chan_dahdi does: DTMF ("T" digits,
the tone zone's DTMF at 100 ms on and 100 ms off) and pulses ("P" digits). The kernel
makes both on its own clock: a loop break must last 60 ms and a make 40 ms to the
millisecond, which only its 1 ms signalling tick keeps, and a DTMF digit our engine
wrote would break in two wherever the engine ran late by more than the channel's write
buffers (a few ms late on a loaded machine, hundreds under emulation), which the far
end's detector would count as two digits. The port writes nothing while the kernel
dials, since a write would stop it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Callable

from uascall.backend import (
    CallLeg,
    Cause,
    LegAlerting,
    LegAnswered,
    LegCleared,
    MediaPort,
)
from uascall.dahdi import abi, analog
from uascall.dahdi.analog import AnalogSettings, FxoPort, FxoState, FxsPort
from uascall.dahdi.config import ConfigError
from uascall.dahdi.device import (
    DEV_DIR,
    Channel,
    DeviceIO,
    start_digit,
    stop_digit,
)
from uascall.dahdi.reopen import Reopener
from uascall.engine import EPOLLIN, EPOLLPRI, DescriptorDropped, Engine, TimerHandle
from uascall.errors import DeviceError, Error
from uascall.media import callerid, g711
from uascall.media.dtmf import DtmfDetector
from uascall.media.player import MediaClock, Player
from uascall.media.progress import ProgressDetector
from uascall.media.source import BufferSource
from uascall.media.tones import call_progress_tone

log = logging.getLogger(__name__)

FRAME = 160
NUMBUFS = 4  # the player keeps three frames queued ahead
#: pulse dialling, 10 pulses a second: ms of loop break and make (60/40, the usual
#: ratio), and between digits (the kernel's own default)
PULSE_BREAK_MS, PULSE_MAKE_MS, PULSE_PAUSE_MS = 60, 40, 750


class AnalogPort:
    """One FXO (``fxsks``) or FXS (``fxoks``) port on a DAHDI channel (engine thread)."""

    def __init__(self, engine: Engine, channo: int, *, clock: MediaClock,
                 settings: AnalogSettings | None = None, io: DeviceIO | None = None,
                 dev_dir: str = DEV_DIR) -> None:
        self.engine = engine
        self.channo = channo
        self.clock = clock
        self.settings = settings or AnalogSettings()
        self._io = io
        self._dev_dir = dev_dir
        self.machine: FxoPort | FxsPort | None = None
        self.channel: Channel | None = None
        self.law = "ulaw"
        self.leg: AnalogLeg | None = None
        #: called with each new incoming leg (the backend offers it to the application)
        self.on_incoming: Callable[[AnalogLeg], None] | None = None
        self._timers: dict[str, TimerHandle] = {}
        self._listening: tuple[str | None, tuple[str, ...]] = (None, ())
        self._detector: (DtmfDetector | callerid.CallerIdReceiver | ProgressDetector
                         | None) = None
        self._tone = Player(clock, _ToneSink(self), name=f"port {channo} tones")
        # after a device error: the retry to open the channel again, and its delay
        self._reopener = Reopener(engine, start=self._start_again, stop=self.stop,
                                  name=repr(self))

    def __repr__(self) -> str:
        return f"<AnalogPort {self.kind} channel {self.channo}>"

    @property
    def kind(self) -> str:
        return "FXS" if isinstance(self.machine, FxsPort) else "FXO"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        channel = Channel.open(self.channo, io=self._io, dev_dir=self._dev_dir)
        try:
            params = channel.params()
            if params.sigtype == abi.DAHDI_SIG_FXSKS:
                self.machine = FxoPort(self.settings, name=str(self.channo))
            elif params.sigtype == abi.DAHDI_SIG_FXOKS:
                self.machine = FxsPort(self.settings, name=str(self.channo))
            else:
                raise ConfigError(f"channel {self.channo} is {abi.sig_name(params.sigtype)}; "
                                  "expected fxsks (an FXO port) or fxoks (an FXS port) in "
                                  "system.conf")
            self.law = "alaw" if params.curlaw == abi.DAHDI_LAW_ALAW else "ulaw"
            if isinstance(self.machine, FxoPort):
                params.pulsebreaktime, params.pulsemaketime = PULSE_BREAK_MS, PULSE_MAKE_MS
                params.pulseaftertime = PULSE_PAUSE_MS
                channel.set_params(params)  # an open resets them: ours from here on
            channel.set_blocksize(FRAME)
            channel.set_buffers(numbufs=NUMBUFS)
            channel.on_event = self._on_kernel_event
            self.engine.add_fd(channel.fileno(), EPOLLIN | EPOLLPRI, self._ready,
                               on_error=self._handler_failed)
        except BaseException:
            channel.close()
            raise
        self.channel = channel
        self._reopener.opened()
        self.engine.add_shutdown_callback(self.stop)
        log.info("%r started (%s)", self, self.law)

    def stop(self) -> None:
        self._reopener.cancel()
        self._close()

    def _close(self, why: str = "port-stopped") -> None:
        channel, self.channel = self.channel, None
        if channel is None:
            return
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._tone.stop()
        if self.leg is not None:
            self.leg._ended(Cause.OUTOFORDER, why, "span")
        self.engine.remove_fd(channel.fileno())
        self.engine.remove_shutdown_callback(self.stop)
        with contextlib.suppress(OSError):  # a device that failed may fail to close too
            channel.close()  # on hook: a call still up is cleared with a kewl

    # ------------------------------------------------------------------ the device
    def _ready(self, revents: int) -> None:
        if self.channel is None:
            return
        try:
            self.channel.service(revents, self._heard)
        except DeviceError as exc:  # the card or its driver went away
            self._device_failed(exc)

    def _handler_failed(self, exc: BaseException) -> None:
        if isinstance(exc, DescriptorDropped):  # failing on every wake-up: as a dead device
            self._device_failed(exc)

    def _device_failed(self, exc: Exception) -> None:
        """The channel's device failed: the call on it ends (OUTOFORDER), the port closes
        and tries to open again, waiting longer each time, logging once per change."""
        if self.channel is None:
            return
        log.error("%r: the device failed (%s); the port is closed, its call cleared; "
                  "opening it again in %g s", self, exc, self._reopener.first_delay())
        self._close("device-error")
        self._reopener.schedule()

    def _start_again(self) -> None:
        self.start()
        log.warning("%r: opened again", self)

    def _on_kernel_event(self, code: int) -> None:
        self._run(analog.HookEvent(code))

    def _heard(self, block: bytes) -> None:
        leg = self.leg
        if leg is not None and leg.hears:
            leg._received(block, self.law)
        detector = self._detector
        if detector is None:
            return
        samples = g711.codec(self.law).decode(block)
        if isinstance(detector, DtmfDetector):
            for event in detector.feed(samples):
                self._run(analog.DigitHeard(event.digit))
        elif isinstance(detector, ProgressDetector):
            for tone in detector.feed(samples):
                log.info("%r: %s heard", self, tone.kind)
                self._run(analog.ToneHeard(tone.kind))
                if self._detector is not detector:
                    break  # the machine listens for something else now
        else:
            for heard in detector.feed(samples):
                if heard.caller_id is not None:
                    self._run(analog.CallerIdHeard(heard.caller_id))
                elif heard.error is not None:
                    log.info("%r: caller ID not understood: %s", self, heard.error)

    def write(self, frame: bytes) -> bool:
        channel = self.channel
        if channel is None:
            raise DeviceError(errno.ENODEV, f"channel {self.channo}", "write",
                              "the port is stopped")
        return channel.write_frame(frame) == len(frame)

    # ------------------------------------------------------------------ the machine
    def _run(self, event: analog.Input) -> None:
        machine = self.machine
        if machine is None:
            return
        self._apply(machine.handle(event))

    def command(self, step: str, *args: object) -> None:
        """Run a command of the machine (answer, hang_up, place_call...) and its actions."""
        machine = self.machine
        if machine is None or self.channel is None:
            raise Error(f"{self!r} is not started")
        self._apply(getattr(machine, step)(*args))

    def _apply(self, outputs: list[analog.Output]) -> None:
        for out in outputs:
            if isinstance(out, analog.SetHook):
                self._set_hook(out.operation)
            elif isinstance(out, analog.StartTimer):
                self._cancel_timer(out.name)
                self._timers[out.name] = self.engine.call_later(
                    out.seconds, self._timer_expired, out.name)
            elif isinstance(out, analog.CancelTimer):
                self._cancel_timer(out.name)
            elif isinstance(out, analog.Listen):
                self._listen(out.what, out.expect)
            elif isinstance(out, analog.Dial):
                self._dial(out.digits, out.method)
            elif isinstance(out, analog.PlayTone):
                self._play_tone(out.kind)
            elif isinstance(out, analog.SendCallerId):
                spill = callerid.spill(out.caller, self.settings.callerid or "bell")
                self._tone.play(BufferSource(g711.codec(self.law).encode(spill), self.law))
            elif isinstance(out, analog.CheckHook):
                assert self.channel is not None
                self._run(analog.HookChecked(self.channel.hook_state().rx_off_hook))
            else:
                self._call_event(out)

    def _set_hook(self, operation: int) -> None:
        assert self.channel is not None
        try:
            self.channel.hook(operation)
        except DeviceError as exc:
            if exc.errno != errno.EBUSY:  # the device failed: not a call that goes on
                self._device_failed(exc)
                return
            # EBUSY: the kernel is still settling an earlier hook change (a kewl); the
            # machine's next step (a hook check, a timeout) will find the line as it is.
            log.warning("%r: DAHDI_HOOK %d refused: %s", self, operation, exc)

    def _timer_expired(self, name: str) -> None:
        self._timers.pop(name, None)
        self._run(analog.TimerExpired(name))

    def _cancel_timer(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _listen(self, what: str | None, expect: tuple[str, ...] = ()) -> None:
        if (what, expect) == self._listening:
            return
        self._listening = (what, expect)
        if what == "dtmf":
            self._detector = DtmfDetector()
        elif what == "progress":
            self._detector = ProgressDetector(self.settings.zone, expect)
        elif what == "callerid":
            self._detector = callerid.CallerIdReceiver(self.settings.callerid or "bell")
        else:
            self._detector = None

    def _play_tone(self, kind: str | None) -> None:
        if kind is None:
            self._tone.stop()
            return
        tone = call_progress_tone(kind, self.settings.zone)
        self._tone.play(tone.source(self.law, loop=True))

    def _dial(self, digits: str, method: str) -> None:
        """Send ``digits`` (DTMF or pulses) by the kernel; DIALCOMPLETE follows."""
        log.info("%r: dialling %s (%s)", self, digits, method)
        assert self.channel is not None
        mode = "P" if method == "pulse" else "T"
        self._tone.stop()  # a write would stop the kernel's dialling
        try:
            self.channel.dial(mode + digits.replace(",", "W"))
        except DeviceError as exc:  # the device failed: not a call that goes on
            self._device_failed(exc)

    def stop_tone(self) -> None:
        """The call plays something: the port's own tone gives way."""
        if self._tone.playing:
            self._tone.stop()

    def _call_event(self, event: analog.Output) -> None:
        if isinstance(event, analog.CallOffered):
            leg = AnalogLeg(self, incoming=True, call_from=event.calling,
                            call_to=event.called, calling_name=event.calling_name)
            self.leg = leg
            if self.on_incoming is None:
                log.warning("%r: nobody takes calls; letting it go", self)
                self.command("hang_up")
            else:
                self.on_incoming(leg)
            return
        leg = self.leg
        if leg is None:
            return
        if isinstance(event, analog.CallAlerting):
            leg._emit(LegAlerting(event.inband))
        elif isinstance(event, analog.CallAnswered):
            leg._answered = True
            leg._emit(LegAnswered())
        elif isinstance(event, analog.CallEnded):
            cause = event.cause or leg._release_cause or Cause.NORMAL
            raw = "" if event.by == "local" else event.raw
            leg._ended(cause, raw, event.by)

    # ------------------------------------------------------------------ calls
    def place_call(self, call_to: str, call_from: str = "", calling_name: str = ""
                   ) -> AnalogLeg:
        """A call out of this port: on an FXS port, ring the phone; on an FXO port,
        seize the line and dial ``call_to`` (ArgumentError for a number the port's
        dialling cannot carry)."""
        if self.leg is not None:
            raise Error(f"{self!r} already has a call")
        leg = AnalogLeg(self, incoming=False, call_from=call_from, call_to=call_to,
                        calling_name=calling_name)
        caller = (callerid.CallerId(number=call_from or None, name=calling_name or None)
                  if call_from or calling_name else None)
        self.leg = leg
        try:
            if isinstance(self.machine, FxsPort):
                self.command("place_call", caller)
            else:
                self.command("place_call", call_to)
        except Error:  # the machine refused it (a busy port, a number it cannot dial)
            self.leg = None
            raise
        return leg

    @property
    def idle(self) -> bool:
        machine = self.machine
        return machine is not None and self.leg is None and machine.state.name == "IDLE"


class _ToneSink:
    """Where the port's own tones go: straight to the device."""

    def __init__(self, port: AnalogPort) -> None:
        self.port = port

    def write(self, frame: bytes) -> bool:
        return self.port.write(frame)


class PortAudio(MediaPort):
    """The call's audio path on an analog port: writing stops the port's own tone."""

    sounds_digits = keys_keep_time = True  # the kernel's DAHDI_SENDTONE

    def __init__(self, port: AnalogPort) -> None:
        self.port = port
        self.law = port.law

    def write(self, frame: bytes) -> bool:
        self.port.stop_tone()
        return self.port.write(frame)

    def flush(self) -> None:
        if self.port.channel is not None:
            self.port.channel.flush(abi.DAHDI_FLUSH_WRITE)

    def limit_queue(self, frames: int | None) -> None:
        if self.port.channel is not None:
            self.port.channel.limit_write_queue(frames)

    def start_digit(self, digit: str) -> bool:
        if self.port.channel is None:
            return False
        self.port.stop_tone()  # its writes would stop the kernel's tone
        return start_digit(self.port.channel, digit)

    def stop_digit(self) -> None:
        if self.port.channel is not None:
            stop_digit(self.port.channel)


class AnalogLeg(CallLeg):
    """A call on an analog port as a channel leg (engine thread only)."""

    def __init__(self, port: AnalogPort, *, incoming: bool, call_from: str, call_to: str,
                 calling_name: str = "") -> None:
        self.port = port
        self.incoming = incoming
        self.call_from = call_from
        self.call_to = call_to
        self.calling_name = calling_name
        self._release_cause: Cause | None = None
        self._over = False
        self._answered = False
        self._audio: PortAudio | None = None

    def describe(self) -> str:
        return f"{self.port.kind} port channel {self.port.channo} ({self.port.law})"

    @property
    def live(self) -> bool:
        return not self._over and self._release_cause is None

    @property
    def hears(self) -> bool:
        """Whether the line carries the far end's audio to the call now: from the answer
        on, from the start for a phone that called us (it is off hook), and on a call
        out of an FXO port from the number dialled (the exchange's ringback or busy tone
        is the call's early media; dial tone and our own digits are not)."""
        if self._over:
            return False
        if self._answered:
            return True
        machine = self.port.machine
        if self.incoming:
            return isinstance(machine, FxsPort)
        return isinstance(machine, FxoPort) and machine.state is FxoState.PROCEEDING

    def alert(self, early_media: bool, codecs: list[str] | None = None) -> bool:
        """On an FXO port the exchange plays the ringback: nothing to signal, no early
        media. On an FXS port we are the exchange: ringback goes in band, or, with early
        media asked for, the call's own ringtone in its place (without, a ringtone is
        ignored, as on any call without early media). The port's ringback is not started
        for a ringtone to replace: the caller heard its first 80 ms (more on a loaded
        machine) while the ringtone was made."""
        if isinstance(self.port.machine, FxsPort):
            self.port.command("ringback", not early_media)
            return early_media
        return False

    def answer(self, codecs: list[str] | None = None) -> None:
        self.port.command("answer")
        self._answered = True

    def release(self, cause: Cause, raw_cause: str | None = None) -> Cause | None:
        if raw_cause is not None:
            return None  # an analog line carries no cause
        self._release_cause = cause
        self.port.command("hang_up")
        return cause

    def media(self) -> MediaPort:
        if self._over:
            raise Error(f"{self.describe()}: the call is over; it has no media path")
        if isinstance(self.port.machine, FxoPort) and not self._answered:
            raise Error(f"{self.describe()}: an FXO port has no audio path before the "
                        "answer (the exchange plays the ringback)")
        if self._audio is None:
            self._audio = PortAudio(self.port)
        return self._audio

    def _ended(self, cause: Cause, raw: str, by: str) -> None:
        if self._over:
            return
        self._over = True
        if self.port.leg is self:
            self.port.leg = None
        self._emit(LegCleared(cause, raw, by))
