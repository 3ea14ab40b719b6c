"""Far ends for analog ports: the exchange behind an FXO port, the phone behind an FXS port.

On a looped pair of spans configured by :func:`analog_loop_conf`, channel *n* of span 1 is
``fxoks`` (an exchange's line card, or our FXS port facing a phone) and channel *n* of
span 2 is ``fxsks`` (a phone or a PBX's line port: our FXO port). Both far ends here drive
real DAHDI channels through :mod:`uascall.dahdi.device`, so they run on the simulated
kernel and on the real driver alike.

The pair is a pair of ``dahdi_dynamic_loc`` spans (the vm rig's, whose lines carry hook
state and audio but no polarity), or with ``dynamic=False`` the simulator's analog card
pair (``SimKernel.add_loop("ANALOG")``), whose lines also carry polarity reversals.
"""

from __future__ import annotations

import array
import logging
from dataclasses import dataclass
from typing import Any

from uascall.dahdi import abi
from uascall.dahdi.device import DEV_DIR, Channel, DeviceIO
from uascall.engine import EPOLLIN, EPOLLPRI, Engine, TimerHandle
from uascall.errors import DeviceError
from uascall.media import callerid, g711
from uascall.media.callerid import CallerId
from uascall.media.dtmf import DtmfDetector
from uascall.media.player import MediaClock, Player
from uascall.media.source import BufferSource
from uascall.media.tones import call_progress_tone

log = logging.getLogger(__name__)

FRAME = 160


def analog_loop_conf(channels: int = 24, *, law: str = "ulaw", dynamic: bool = True) -> str:
    """system.conf for one looped pair of analog ports: channels 1..``channels`` fxoks
    (span 1), the next ``channels`` fxsks (span 2), wired 1 to 1. The pair is two
    dahdi_dynamic_loc spans, or without ``dynamic`` the spans already there (the
    simulator's analog cards: ``SimKernel.add_loop("ANALOG", channels=channels)``)."""
    if not 1 <= channels <= 48:
        raise ValueError(f"{channels} channels; expected 1..48")
    last = 2 * channels
    lines = [
        f"# {channels} analog lines looped: fxoks (exchange side) <-> fxsks (phone side)",
        *([f"dynamic=loc,1:0,{channels},0", f"dynamic=loc,1:1,{channels},0"] if dynamic
          else []),
        f"fxoks=1-{channels}",
        f"fxsks={channels + 1}-{last}",
    ]
    if law == "alaw":
        lines.append(f"alaw=1-{last}")
    elif law != "ulaw":
        raise ValueError(f"law {law!r}; expected 'alaw' or 'ulaw'")
    lines += ["loadzone=us", "defaultzone=us", ""]
    return "\n".join(lines)


class LineEnd:
    """The far end of an analog line: a channel we drive as a person or an exchange would,
    recording its events (with their times) and everything it hears. Engine thread."""

    def __init__(self, engine: Engine, channo: int, *, clock: MediaClock,
                 io: DeviceIO | None = None, dev_dir: str = DEV_DIR) -> None:
        self.engine = engine
        self.channo = channo
        self.events: list[tuple[float, int]] = []
        #: the law bytes this end heard, from start() on
        self.heard = bytearray()
        self._io = io
        self._dev_dir = dev_dir
        self.channel: Channel | None = None
        self.law = "ulaw"
        self._player = Player(clock, self, name=f"{type(self).__name__} {channo}")

    def start(self) -> None:
        channel = Channel.open(self.channo, io=self._io, dev_dir=self._dev_dir)
        channel.set_blocksize(FRAME)
        channel.set_buffers(numbufs=8)
        channel.on_event = self._event
        params = channel.params()
        self.law = "alaw" if params.curlaw == abi.DAHDI_LAW_ALAW else "ulaw"
        self.engine.add_fd(channel.fileno(), EPOLLIN | EPOLLPRI, self._ready)
        self.channel = channel
        # A real kernel keeps a span with an open channel: close with the engine.
        self.engine.add_shutdown_callback(self.stop)

    def stop(self) -> None:
        channel, self.channel = self.channel, None
        if channel is not None:
            self._player.stop()
            self.engine.remove_fd(channel.fileno())
            self.engine.remove_shutdown_callback(self.stop)
            channel.close()

    def _ready(self, revents: int) -> None:
        if self.channel is not None:
            self.channel.service(revents, self._block)

    def _block(self, block: bytes) -> None:
        self.heard += block
        self._heard(block)

    def _event(self, code: int) -> None:
        self.events.append((self.engine.time(), code))
        log.debug("%s %d: %s", type(self).__name__, self.channo, abi.event_name(code))
        self._on_event(code)

    def _on_event(self, code: int) -> None:
        """What this end does about a kernel event."""

    def _heard(self, block: bytes) -> None:
        """What this end does with a block it heard."""

    def hook(self, operation: int) -> None:
        assert self.channel is not None
        self.channel.hook(operation)

    def play(self, samples: array.array) -> None:
        """Send 8 kHz samples down the line, paced as a person or an exchange would."""
        codec = g711.codec(self.law)
        self._player.play(BufferSource(codec.encode(samples), codec.name))

    def press(self, digits: str) -> None:
        """Key ``digits`` (0-9 * # A-D) on the phone at this end: the kernel sounds them
        (DAHDI_DIAL), as a keypad does in hardware, each 100 ms on and 100 ms off,
        whatever this thread's timing."""
        assert self.channel is not None
        self._player.stop()  # a write would stop the kernel's dialling
        self.channel.dial("T" + digits)

    def write(self, frame: bytes) -> bool:  # the player's sink
        assert self.channel is not None
        return self.channel.write_frame(frame) == len(frame)

    def names(self, since: float = 0.0) -> list[str]:
        return [abi.event_name(code) for t, code in self.events if t >= since]

    def count(self, code: int) -> int:
        return sum(1 for _, c in self.events if c == code)

    def heard_pcm(self, since_byte: int = 0) -> array.array:
        return g711.codec(self.law).decode(bytes(self.heard[since_byte:]))


@dataclass(frozen=True)
class Destination:
    """What the exchange does with a call to one of its numbers: ``action`` "answer" (the
    called party answers after ``answer_after`` seconds of ringing, the line reversed at
    the answer when ``polarity``), "ring" (rings and is never answered), "busy" or
    "congestion"."""

    action: str = "answer"
    answer_after: float = 3.0
    polarity: bool = True

    def __post_init__(self) -> None:
        if self.action not in ("answer", "ring", "busy", "congestion"):
            raise ValueError(f"action {self.action!r}; expected 'answer', 'ring', 'busy' "
                             "or 'congestion'")


class Exchange(LineEnd):
    """An exchange on the fxoks end of a line into an FXO port.

    Calls to the line: it rings (with caller ID after the first ring), connects when the
    port answers, and clears (:meth:`hang_up`, a kewl).

    Calls from the line: when the port goes off hook the exchange goes off hook too and,
    ``dial_tone_delay`` later, plays the zone's dial tone (none at all while ``dead``);
    it collects the number in DTMF (heard in the line's audio) or in pulses (the loop
    breaks its kernel counts), recording each digit in :attr:`digits_heard`, until the
    digits are one of :attr:`numbers` or ``digit_timeout`` passes after the last; then it
    does what the number's :class:`Destination` says, in the zone's tones (a number it
    does not know gets congestion). After the answer the called party is this object:
    :meth:`play` is what it says, :attr:`heard` what it hears, :meth:`hang_up` its
    hanging up. The port going on hook clears the call; the exchange notes when
    (:attr:`released_at`, after its 1.25 s on-hook debounce).
    """

    #: the exchange's own off-hook debounce is 600 ms: dial tone must wait for it, or the
    #: first pulses dialled would fall into it and be lost
    DIAL_TONE_DELAY = 0.7
    FIRST_DIGIT_TIMEOUT = 10.0

    def __init__(self, engine: Engine, channo: int, *, zone: str = "us",
                 numbers: dict[str, Destination] | None = None,
                 dial_tone_delay: float = DIAL_TONE_DELAY, digit_timeout: float = 3.0,
                 **kwargs: Any) -> None:
        super().__init__(engine, channo, **kwargs)
        self.state = "idle"
        self.zone = zone
        self.numbers: dict[str, Destination] = dict(numbers or {})
        self.dial_tone_delay = dial_tone_delay
        self.digit_timeout = digit_timeout
        #: a dead line: a seizure gets no dial tone
        self.dead = False
        #: the number dialled on the current (or last) call, and each digit as it came
        self.dialled = ""
        self.digits_heard: list[tuple[str, str]] = []
        self.seized_at: float | None = None
        self.answered_at: float | None = None
        self.released_at: float | None = None
        #: the line is reversed; why a reversal was refused (ENOTTY on a dynamic span)
        self.polarity_reversed = False
        self.polarity_error: DeviceError | None = None
        self._caller: CallerId | None = None
        self._standard = "bell"
        self._timer: TimerHandle | None = None
        self._detector: DtmfDetector | None = None

    def stop(self) -> None:
        self._cancel_timer()
        self._detector = None
        super().stop()

    # ------------------------------------------------------------------ calls to the line
    def ring(self, caller: CallerId | None = None, *, standard: str = "bell") -> None:
        """Ring the line; the caller's number goes as FSK after the first ring."""
        self._caller, self._standard = caller, standard
        self.state = "ringing"
        self.hook(abi.DAHDI_RING)

    def give_up(self) -> None:
        """The caller hangs up before the answer: the ringing stops, nothing else."""
        self.hook(abi.DAHDI_RINGOFF)
        self.state = "idle"

    def hang_up(self) -> None:
        """The far party hangs up after the answer: battery drops (kewlstart)."""
        self._quiet()
        self._set_polarity(False)
        self.hook(abi.DAHDI_ONHOOK)
        self.state = "idle"

    # ------------------------------------------------------------------ the line's events
    def _on_event(self, code: int) -> None:
        if code == abi.DAHDI_EVENT_RINGEROFF and self._caller is not None:
            caller, self._caller = self._caller, None
            self.play(callerid.spill(caller, self._standard))
        elif code == abi.DAHDI_EVENT_RINGOFFHOOK and self.state == "ringing":
            self.hook(abi.DAHDI_OFFHOOK)  # the line answered: stop ringing, connect
            self.state = "connected"
        elif code == abi.DAHDI_EVENT_RINGOFFHOOK and self.state == "idle":
            self._seized()
        elif code == abi.DAHDI_EVENT_PULSE_START and self.state == "dialling":
            self._player.stop()  # dial tone stops at the first break
        elif code & abi.DAHDI_EVENT_PULSEDIGIT and self.state == "dialling":
            self._digit(chr(code & 0xFF), "pulse")
        elif code == abi.DAHDI_EVENT_ONHOOK and self.state not in ("idle", "ringing"):
            self._released()  # the line hung up

    def _heard(self, block: bytes) -> None:
        detector = self._detector
        if detector is None:
            return
        for event in detector.feed(g711.codec(self.law).decode(block)):
            self._digit(event.digit, "dtmf")

    # ------------------------------------------------------------------ calls from the line
    def _seized(self) -> None:
        self.seized_at = self.engine.time()
        self.dialled, self.digits_heard = "", []
        self.answered_at = self.released_at = None
        if self.dead:
            self.state = "dead"
            log.info("exchange %d: line seized, but it is dead", self.channo)
            return
        self.hook(abi.DAHDI_OFFHOOK)
        self.state = "seized"
        self._after(self.dial_tone_delay, self._give_dial_tone)

    def _give_dial_tone(self) -> None:
        self.state = "dialling"
        self.tone("dial")
        self._detector = DtmfDetector()
        self._after(self.FIRST_DIGIT_TIMEOUT, self._route)

    def _digit(self, digit: str, how: str) -> None:
        if self.state != "dialling":
            return
        if not self.dialled:
            self._player.stop()  # dial tone stops at the first digit
        self.dialled += digit
        self.digits_heard.append((digit, how))
        log.debug("exchange %d: %s digit %s", self.channo, how, digit)
        if self.dialled in self.numbers:
            self._route()
        else:
            self._after(self.digit_timeout, self._route)

    def _route(self) -> None:
        self._cancel_timer()
        self._detector = None
        destination = self.numbers.get(self.dialled, Destination("congestion"))
        log.info("exchange %d: call to %r: %s", self.channo, self.dialled,
                 destination.action)
        if destination.action in ("busy", "congestion"):
            self.state = destination.action
            self.tone(destination.action)
            return
        self.state = "ringback"
        self.tone("ringback")
        if destination.action == "answer":
            self._after(destination.answer_after, self._answer, destination)

    def _answer(self, destination: Destination) -> None:
        self._timer = None
        self._player.stop()
        self.state = "connected"
        self.answered_at = self.engine.time()
        if destination.polarity:
            self._set_polarity(True)

    def _released(self) -> None:
        self._quiet()
        self._set_polarity(False)
        self.state = "idle"
        self.released_at = self.engine.time()
        self.hook(abi.DAHDI_ONHOOK)

    # ------------------------------------------------------------------ helpers
    def _set_polarity(self, reverse: bool) -> None:
        if reverse == self.polarity_reversed or self.channel is None:
            return
        try:
            self.channel.set_polarity(reverse)
        except DeviceError as exc:  # a line that cannot reverse (a dynamic span)
            self.polarity_error = exc
            log.info("exchange %d: no polarity reversal: %s", self.channo, exc)
            return
        self.polarity_reversed = reverse

    def tone(self, kind: str) -> None:
        """Play the zone's ``kind`` tone ("dial", "ringback", "busy", "congestion") on
        the line, looped, until something else plays (as an exchange does after the
        called party cleared, the loop left closed)."""
        tone = call_progress_tone(kind, self.zone)
        self._player.play(tone.source(self.law, loop=True))

    def _after(self, seconds: float, action: Any, *args: Any) -> None:
        self._cancel_timer()
        self._timer = self.engine.call_later(seconds, action, *args)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _quiet(self) -> None:
        self._cancel_timer()
        self._detector = None
        self._player.stop()


class Phone(LineEnd):
    """A phone on the fxsks end of a line from an FXS port: it rings, reads caller ID
    between rings, answers (by itself after ``answer_after`` rings, if set), goes off
    hook to call, dials DTMF, and hangs up."""

    def __init__(self, engine: Engine, channo: int, *, standard: str = "bell",
                 answer_after: int | None = None, **kwargs: Any) -> None:
        super().__init__(engine, channo, **kwargs)
        self.off_hook = False
        self.rings = 0
        self.answer_after = answer_after
        #: caller IDs read between rings
        self.callers: list[CallerId] = []
        #: when the exchange dropped battery on us (it cleared the call)
        self.disconnected_at: float | None = None
        self._receiver = callerid.CallerIdReceiver(standard)

    def answer(self) -> None:
        self.hook(abi.DAHDI_OFFHOOK)
        self.off_hook = True

    lift = answer  # off hook, to make a call

    dial = LineEnd.press  # the number, on the keypad

    def hang_up(self) -> None:
        self.hook(abi.DAHDI_ONHOOK)
        self.off_hook = False

    def _on_event(self, code: int) -> None:
        if code == abi.DAHDI_EVENT_RINGBEGIN and not self.off_hook:
            self.rings += 1
        elif code == abi.DAHDI_EVENT_RINGOFFHOOK and not self.off_hook:
            if self.answer_after is not None and self.rings >= self.answer_after:
                self.answer()
        elif code == abi.DAHDI_EVENT_ONHOOK and self.off_hook:
            self.disconnected_at = self.engine.time()

    def _heard(self, block: bytes) -> None:
        if self.off_hook:
            return
        for event in self._receiver.feed(g711.codec(self.law).decode(block)):
            if event.caller_id is not None:
                self.callers.append(event.caller_id)
