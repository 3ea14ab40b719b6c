"""Analog ports, as sans-I/O state machines: an FXO port on a line, an FXS port to a phone.

An **FXO port** (configured ``fxsks``) is a line from an exchange: the exchange rings it,
may send the caller's number as FSK between the first two rings, and drops battery
(kewlstart) when the caller hangs up after the answer. A caller who gives up before the
answer shows only as the rings stopping, so a ring timeout ends the call. There is no
early media: the caller hears the exchange's own ringback.

A call *out* of an FXO port is made as a person with a phone on the line makes it: the port
goes off hook (seizes the line), waits for the exchange's dial tone (no dial tone within
``dial_tone_timeout`` is a dead line: the call ends with OUTOFORDER, raw cause
"no-dial-tone": a fault of the line, as a span alarm's OUTOFORDER is, rather than
NOCHANNELS, which would say another port might carry the call at once), dials the number
(DTMF in band, or pulses: loop breaks the kernel times), and then listens to the line for
the call's progress: ringback (the call is ringing), busy or congestion (the call ends
with BUSY or CONGESTION). How the answer is known is ``answer_supervision`` (see
:class:`AnalogSettings`). The far end dropping loop current ends the call as on a call
in (NORMAL, "loop-current-drop"); hanging up goes on hook at any stage, dialling or not.

An **FXS port** (configured ``fxoks``) faces a phone: we are the exchange. A call to the
phone rings it (with caller ID after the first ring, if enabled) and is answered when the
phone goes off hook. A phone going off hook on its own is a call from it: we play dial
tone and collect digits (DTMF heard in the audio, or pulses the kernel counts) until the
number is complete, then offer the call; ringing it plays ringback in band, since the
phone is already off hook.

The machines are fed what happened (:class:`HookEvent` from the kernel's queue,
:class:`TimerExpired`, :class:`CallerIdHeard`, :class:`DigitHeard`, :class:`HookChecked`,
:class:`ToneHeard`) and commands from the call above (answer, hang
up, ring, place a call); each returns a list of what to do (:class:`SetHook`, timers,
:class:`Listen`, :class:`PlayTone`, :class:`SendCallerId`, :class:`CheckHook`,
:class:`Dial`) and what the call should learn
(:class:`CallOffered`, :class:`CallAlerting`, :class:`CallAnswered`, :class:`CallEnded`).
They never touch a file descriptor or a clock: :mod:`uascall.dahdi.analog_port` does.
A command that does not fit the state raises
:class:`~uascall.errors.LocalProtocolError` and changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum

from uascall.backend import Cause
from uascall.dahdi import abi
from uascall.errors import ArgumentError, LocalProtocolError
from uascall.media.callerid import CallerId

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class AnalogSettings:
    """How a port behaves (defaults as a North American line card would).

    ``ring_timeout``: seconds without a ring after which an unanswered incoming call on an
    FXO port has been abandoned (longer than the zone's ring cadence period).
    ``callerid``: "bell" (Bell 202, North America), "etsi" (V.23, Europe) or None: the FSK
    standard heard on FXO ports and sent on FXS ports. ``callerid_wait``: seconds after the
    first ring that an FXO port waits for caller ID before offering the call without it.
    ``first_digit_timeout``, ``digit_timeout``, ``max_digits``, ``end_digit``: how an FXS
    port collects the number a phone dials. ``zone``: the tone zone for the tones an FXS
    port plays and an FXO port listens for.

    Calls out of an FXO port: ``dialing`` is "dtmf" (digits 0-9 * # A-D, in band, -9/-7
    dBm0, 80 ms on and 80 ms off) or "pulse" (digits 0-9 as loop breaks, 10 a second,
    60 ms break and 40 ms make, 750 ms between digits); a comma in the number pauses 0.5 s
    in either. ``dial_tone_timeout``: seconds off hook without dial tone before the line
    is taken for dead. ``answer_supervision`` says how the far end's answer is known:

    * "polarity": the exchange reverses the line's polarity when the called party answers
      (DAHDI_EVENT_POLARITY). Until then the call is ringing (RING_OUTGOING once ringback
      is heard) and may end with BUSY or CONGESTION, or with NOANSWER when the caller's
      timeout passes. The line must give the reversal (a service some exchanges sell as
      "answer supervision"): on a line without it a call is never answered.
    * "none" (the default, as chan_dahdi's without ``answeronpolarityswitch``): the line
      says nothing, so the call is taken as answered as soon as the number is dialled.
      The port goes on listening: busy or congestion heard at any time during the call
      ends it with BUSY or CONGESTION (an exchange that clears a call plays the same
      tones, so a far end that hung up is reported so too). A call that rings and is
      never answered stays ANSWERED, its ringback on the line for the application to
      hear: NOANSWER cannot be told on such a line.
    """

    ring_timeout: float = 8.0
    callerid: str | None = "bell"
    callerid_wait: float = 4.0
    first_digit_timeout: float = 10.0
    digit_timeout: float = 4.0
    max_digits: int = 20
    end_digit: str = "#"
    zone: str = "us"
    dialing: str = "dtmf"
    dial_tone_timeout: float = 5.0
    answer_supervision: str = "none"

    def __post_init__(self) -> None:
        for name in ("ring_timeout", "callerid_wait", "first_digit_timeout",
                     "digit_timeout", "dial_tone_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ArgumentError(f"{name}={value!r}; expected seconds above 0")
        if self.callerid not in ("bell", "etsi", None):
            raise ArgumentError(f"callerid={self.callerid!r}; expected 'bell', 'etsi' or "
                                "None")
        if not 1 <= self.max_digits <= 64:
            raise ArgumentError(f"max_digits={self.max_digits!r}; expected 1..64")
        if self.end_digit not in ("#", "*", ""):
            raise ArgumentError(f"end_digit={self.end_digit!r}; expected '#', '*' or ''")
        if self.dialing not in DIAL_METHODS:
            raise ArgumentError(f"dialing={self.dialing!r}; expected "
                                f"{' or '.join(map(repr, DIAL_METHODS))}")
        if self.answer_supervision not in ANSWER_SUPERVISION:
            raise ArgumentError(f"answer_supervision={self.answer_supervision!r}; expected "
                                f"{' or '.join(map(repr, ANSWER_SUPERVISION))}")


#: how an FXO port dials, and the characters each carries (a comma is a 0.5 s pause)
DIAL_METHODS = {"dtmf": "0123456789*#ABCD,", "pulse": "0123456789,"}
#: how an FXO port knows a call it placed was answered (see AnalogSettings)
ANSWER_SUPERVISION = ("polarity", "none")


def dial_string(number: str, method: str) -> str:
    """``number`` as the digits ``method`` dials (a-d upper-cased). Raises ArgumentError,
    naming the first character it cannot dial, for anything else or an empty number."""
    digits = number.upper()
    allowed = DIAL_METHODS[method]
    for i, ch in enumerate(digits):
        if ch not in allowed:
            what = ("pulse dialling carries digits 0-9 only" if method == "pulse"
                    else "DTMF carries 0-9 * # A-D")
            raise ArgumentError(f"number {number!r}: {ch!r} at {i} cannot be dialled "
                                f"({what}; a comma pauses)")
    if not digits.strip(","):
        raise ArgumentError(f"number {number!r}: nothing to dial")
    return digits


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True, slots=True)
class HookEvent:
    """An event from the channel's kernel queue (``abi.DAHDI_EVENT_*``)."""

    code: int


@dataclass(frozen=True, slots=True)
class TimerExpired:
    name: str


@dataclass(frozen=True, slots=True)
class CallerIdHeard:
    caller: CallerId


@dataclass(frozen=True, slots=True)
class DigitHeard:
    """A DTMF digit heard in the port's audio."""

    digit: str


@dataclass(frozen=True, slots=True)
class HookChecked:
    """What the kernel says of the far end's hook (after :class:`CheckHook`)."""

    off_hook: bool


@dataclass(frozen=True, slots=True)
class ToneHeard:
    """A call-progress tone heard on the line (:mod:`uascall.media.progress`):
    "dialtone", "busy", "congestion" or "ringback"."""

    kind: str


# --------------------------------------------------------------------------- actions
@dataclass(frozen=True, slots=True)
class SetHook:
    """DAHDI_HOOK with ``operation`` (``abi.DAHDI_ONHOOK``...)."""

    operation: int


@dataclass(frozen=True, slots=True)
class StartTimer:
    """(Re)start timer ``name``; a running one of that name is replaced."""

    name: str
    seconds: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


@dataclass(frozen=True, slots=True)
class Listen:
    """Feed the port's audio to a detector: "callerid", "dtmf", "progress" (the
    call-progress tones named in ``expect``), or None for none."""

    what: str | None
    expect: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PlayTone:
    """Play the zone's "dial", "ringback", "busy" or "congestion" tone, looped; None
    stops the port's tone. Anything the call itself plays replaces it, as a write
    cancels a kernel tone."""

    kind: str | None


@dataclass(frozen=True, slots=True)
class SendCallerId:
    """Send ``caller`` as FSK now (an FXS port, in the silence after the first ring)."""

    caller: CallerId


@dataclass(frozen=True, slots=True)
class CheckHook:
    """Ask the kernel whether the far end is off hook; answer with :class:`HookChecked`."""


@dataclass(frozen=True, slots=True)
class Dial:
    """Dial ``digits`` (from :func:`dial_string`) by ``method`` ("dtmf" or "pulse"): the
    kernel dials them (DAHDI_DIAL) and queues DAHDI_EVENT_DIALCOMPLETE when done."""

    digits: str
    method: str


# --------------------------------------------------------------------------- call events
@dataclass(frozen=True, slots=True)
class CallOffered:
    """An incoming call for the application: who calls (caller ID, if any was heard) and
    whom (the digits a phone dialled)."""

    calling: str = ""
    calling_name: str = ""
    called: str = ""


@dataclass(frozen=True, slots=True)
class CallAlerting:
    """An outgoing call: the phone is ringing (``inband``: we hear the ringback on the
    line, as an FXO port does)."""

    inband: bool = False


@dataclass(frozen=True, slots=True)
class CallAnswered:
    pass


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is over: ``reason`` in words, ``by`` "remote", "local" or "network" (the
    line itself); ``cause`` when the line said why (BUSY...), else None (NORMAL, or what
    our side asked for); ``raw`` the line's own word for it ("loop-current-drop"...)."""

    reason: str
    by: str
    cause: Cause | None = None
    raw: str = ""


Output = (SetHook | StartTimer | CancelTimer | Listen | PlayTone | SendCallerId | CheckHook
          | Dial | CallOffered | CallAlerting | CallAnswered | CallEnded)
Input = HookEvent | TimerExpired | CallerIdHeard | DigitHeard | HookChecked | ToneHeard

RING_TIMER = "ring"
CALLERID_TIMER = "callerid"
DIGIT_TIMER = "digit"
PARKED_TIMER = "parked"
HOLD_TIMER = "hold"
DIALTONE_TIMER = "dialtone"
#: the shortest loop closure an FXO port makes when it answers. The kernel samples the
#: hook bits once per tick and an exchange needs some ms to trip its ringing: an answer
#: followed at once by a hang-up would be a glitch it never sees, and the line would ring
#: on as a new call. 200 ms is well past both.
MIN_ANSWER_HOLD = 0.2
PARKED_CHECK = 1.0  # seconds between hook checks while a phone we cleared stays off hook


class FxoState(Enum):
    IDLE = "idle"
    RINGING = "ringing"            # rings seen, the call not offered yet (caller ID due)
    OFFERED = "offered"            # offered to the application, on hook, still ringing
    CONNECTED = "connected"        # off hook: answered
    DECLINED = "declined"          # the application refused it: on hook until rings stop
    CLOSING = "closing"            # hung up just after going off hook: a moment more
    SEIZING = "seizing"            # a call out: off hook, waiting for dial tone
    DIALLING = "dialling"          # dial tone heard: the number goes out
    PROCEEDING = "proceeding"      # dialled: ringback, busy, congestion or the answer


#: FXO states in which the port is off hook (rings then are the exchange being slow)
_FXO_OFF_HOOK = frozenset({FxoState.CONNECTED, FxoState.CLOSING, FxoState.SEIZING,
                           FxoState.DIALLING, FxoState.PROCEEDING})
#: the cause a tone heard before the answer ends a call with
_TONE_CAUSES = {"busy": Cause.BUSY, "congestion": Cause.CONGESTION}


class FxsState(Enum):
    IDLE = "idle"
    RINGING = "ringing"            # we ring the phone (a call to it)
    DIALLING = "dialling"          # the phone is off hook: dial tone, digits
    OFFERED = "offered"            # the phone's call is offered to the application
    CONNECTED = "connected"
    PARKED = "parked"              # we cleared; the phone is still off hook


def _refuse(machine: object, state: Enum, step: str, expected: str) -> LocalProtocolError:
    return LocalProtocolError(f"{step}() on {machine}: the port is {state.name}; expected "
                              f"{expected}", state=state, event=step)


# --------------------------------------------------------------------------- FXO
@dataclass
class FxoPort:
    """The signalling of an FXO port (an ``fxsks`` channel on a line from an exchange):
    calls in (rings, caller ID, answer) and calls out (seize, dial tone, dial, progress,
    answer supervision)."""

    settings: AnalogSettings = field(default_factory=AnalogSettings)
    name: str = "fxo"
    state: FxoState = FxoState.IDLE
    #: ring bursts seen for the current call
    rings: int = 0
    caller: CallerId | None = None
    #: the loop has not been closed for MIN_ANSWER_HOLD yet
    holding: bool = False
    #: the current call is one we placed; the digits it dials
    outgoing: bool = False
    number: str = ""
    #: ringback was heard (the call was reported alerting)
    alerted: bool = False

    def __str__(self) -> str:
        return f"FXO port {self.name}"

    def handle(self, event: Input) -> list[Output]:
        if isinstance(event, HookEvent):
            return self._hook_event(event.code)
        if isinstance(event, TimerExpired):
            return self._timer(event.name)
        if isinstance(event, CallerIdHeard):
            if self.state is FxoState.RINGING:
                self.caller = event.caller
                return [Listen(None), CancelTimer(CALLERID_TIMER), *self._offer()]
            return []
        if isinstance(event, ToneHeard):
            return self._tone_heard(event.kind)
        return []  # digits and hook checks mean nothing on a line

    def _hook_event(self, code: int) -> list[Output]:
        state = self.state
        if code == abi.DAHDI_EVENT_RINGBEGIN:
            return self._ring_begins()
        if code == abi.DAHDI_EVENT_RINGOFFHOOK:  # on a line: a ring burst has ended
            if state is FxoState.IDLE:  # the burst began before we looked
                return self._ring_begins() + self._ring_ends()
            return self._ring_ends()
        if code == abi.DAHDI_EVENT_ONHOOK and state is FxoState.CLOSING:
            self._reset()
            return [SetHook(abi.DAHDI_ONHOOK), CancelTimer(HOLD_TIMER)]
        if code == abi.DAHDI_EVENT_ONHOOK and state is FxoState.CONNECTED and not self.outgoing:
            # battery dropped (kewlstart): the far end has hung up
            self._reset()
            return [SetHook(abi.DAHDI_ONHOOK), CancelTimer(HOLD_TIMER),
                    CallEnded("the far end hung up (loop current dropped)", "remote",
                              raw="loop-current-drop")]
        if code == abi.DAHDI_EVENT_ONHOOK and state in _FXO_OFF_HOOK and self.outgoing:
            # battery dropped: the far end hung up, or the exchange gave the call up
            self.holding = False  # the exchange has cleared: nothing to hold for
            return self._release(CallEnded("the far end hung up (loop current dropped)",
                                           "remote", raw="loop-current-drop"))
        if code == abi.DAHDI_EVENT_DIALCOMPLETE and state is FxoState.DIALLING:
            return self._dialled()
        if code == abi.DAHDI_EVENT_POLARITY:
            if state is FxoState.PROCEEDING and self.settings.answer_supervision == "polarity":
                return self._answered()  # the called party answered: the line reversed
            log.debug("%s: polarity reversal in state %s (not an answer here)", self,
                      state.name)
        return []

    def _ring_begins(self) -> list[Output]:
        state = self.state
        if state in _FXO_OFF_HOOK:
            return []  # ring bits while off hook: the exchange is slow to stop; ignore
        out: list[Output] = [StartTimer(RING_TIMER, self.settings.ring_timeout)]
        self.rings += 1
        if state is FxoState.IDLE:
            self.state = FxoState.RINGING
            if self.settings.callerid is None:
                out += self._offer()
        elif state is FxoState.RINGING:  # the second ring: caller ID would have come
            out += [Listen(None), CancelTimer(CALLERID_TIMER), *self._offer()]
        return out

    def _ring_ends(self) -> list[Output]:
        if self.state in _FXO_OFF_HOOK:
            return []
        out: list[Output] = [StartTimer(RING_TIMER, self.settings.ring_timeout)]
        if self.state is FxoState.RINGING and self.rings == 1:
            out += [Listen("callerid"),
                    StartTimer(CALLERID_TIMER, self.settings.callerid_wait)]
        return out

    def _offer(self) -> list[Output]:
        self.state = FxoState.OFFERED
        caller = self.caller
        if caller is None:
            return [CallOffered()]
        return [CallOffered(calling=caller.number or "", calling_name=caller.name or "")]

    def _timer(self, name: str) -> list[Output]:
        if name == HOLD_TIMER:
            self.holding = False
            if self.state is FxoState.CLOSING:
                self._reset()
                return [SetHook(abi.DAHDI_ONHOOK)]
            return []
        if name == DIALTONE_TIMER and self.state is FxoState.SEIZING:
            log.warning("%s: no dial tone within %g s; the line is dead", self,
                        self.settings.dial_tone_timeout)
            return self._release(CallEnded("no dial tone", "network", Cause.OUTOFORDER,
                                           "no-dial-tone"))
        if name == CALLERID_TIMER and self.state is FxoState.RINGING:
            return [Listen(None), *self._offer()]
        if name == RING_TIMER and self.state in (FxoState.RINGING, FxoState.OFFERED,
                                                 FxoState.DECLINED):
            was = self.state
            self._reset()
            out: list[Output] = [Listen(None), CancelTimer(CALLERID_TIMER)]
            if was is not FxoState.DECLINED:
                out.append(CallEnded("the caller gave up (the rings stopped)", "remote",
                                     raw="rings-stopped"))
            return out
        return []

    # ------------------------------------------------------------------ calls out
    def place_call(self, number: str) -> list[Output]:
        """Seize the line (off hook) to call ``number``; it is dialled when dial tone is
        heard (:class:`ToneHeard`). Raises ArgumentError for a number the configured
        dialling cannot carry, LocalProtocolError when the line is not idle."""
        if self.state is not FxoState.IDLE:
            raise _refuse(self, self.state, "place_call", "IDLE (no call on the line)")
        digits = dial_string(number, self.settings.dialing)
        self.state = FxoState.SEIZING
        self.outgoing, self.number, self.alerted = True, digits, False
        self.holding = True
        return [SetHook(abi.DAHDI_OFFHOOK), StartTimer(HOLD_TIMER, MIN_ANSWER_HOLD),
                Listen("progress", ("dialtone",)),
                StartTimer(DIALTONE_TIMER, self.settings.dial_tone_timeout)]

    def _tone_heard(self, kind: str) -> list[Output]:
        state = self.state
        if state is FxoState.SEIZING and kind == "dialtone":
            self.state = FxoState.DIALLING
            return [CancelTimer(DIALTONE_TIMER), Listen(None),
                    Dial(self.number, self.settings.dialing)]
        if state is FxoState.PROCEEDING:
            if kind == "ringback" and not self.alerted:
                self.alerted = True
                return [CallAlerting(inband=True)]
            if kind in _TONE_CAUSES:
                return self._release(CallEnded(f"{kind} tone", "remote", _TONE_CAUSES[kind],
                                               f"{kind}-tone"))
        if state is FxoState.CONNECTED and self.outgoing and kind in _TONE_CAUSES:
            # After an answer the line reported, the tone is the exchange clearing the
            # call; when the answer was only assumed, it may as well be a busy line.
            assumed = self.settings.answer_supervision == "none"
            return self._release(CallEnded(
                f"{kind} tone after the answer", "remote",
                _TONE_CAUSES[kind] if assumed else Cause.NORMAL, f"{kind}-tone"))
        return []

    def _dialled(self) -> list[Output]:
        if self.settings.answer_supervision == "none":
            return self._answered()  # the line will not say: answered, by assumption
        self.state = FxoState.PROCEEDING
        return [Listen("progress", ("busy", "congestion", "ringback"))]

    def _answered(self) -> list[Output]:
        self.state = FxoState.CONNECTED
        return [Listen("progress", ("busy", "congestion")), CallAnswered()]

    def _release(self, ended: CallEnded) -> list[Output]:
        """End an outgoing call and go back on hook: at once, or when the loop has been
        closed MIN_ANSWER_HOLD (the exchange must see the seizure)."""
        out: list[Output] = [PlayTone(None), Listen(None), CancelTimer(DIALTONE_TIMER)]
        if self.holding:
            self.state = FxoState.CLOSING
            return [*out, ended]
        self._reset()
        return [SetHook(abi.DAHDI_ONHOOK), CancelTimer(HOLD_TIMER), *out, ended]

    # ------------------------------------------------------------------ commands
    def answer(self) -> list[Output]:
        if self.state is not FxoState.OFFERED:
            raise _refuse(self, self.state, "answer", "OFFERED")
        self.state = FxoState.CONNECTED
        self.holding = True
        return [SetHook(abi.DAHDI_OFFHOOK), CancelTimer(RING_TIMER), Listen(None),
                StartTimer(HOLD_TIMER, MIN_ANSWER_HOLD), CallAnswered()]

    def hang_up(self) -> list[Output]:
        """Clear the call: on hook after an answer (at least MIN_ANSWER_HOLD after it);
        before it, stay on hook and let the line ring out (an FXO port cannot refuse a call
        any other way). A call we placed goes on hook whatever its state (dialling stops)."""
        state = self.state
        if self.outgoing and state in _FXO_OFF_HOOK and state is not FxoState.CLOSING:
            return self._release(CallEnded("we hung up", "local"))
        if state is FxoState.CONNECTED and self.holding:
            self.state = FxoState.CLOSING  # the call is over; the loop opens at HOLD_TIMER
            return [CallEnded("we hung up", "local")]
        if state is FxoState.CONNECTED:
            self._reset()
            return [SetHook(abi.DAHDI_ONHOOK), CallEnded("we hung up", "local")]
        if state in (FxoState.OFFERED, FxoState.RINGING):
            self.state = FxoState.DECLINED
            return [Listen(None), CancelTimer(CALLERID_TIMER),
                    CallEnded("we declined it (the line rings out)", "local")]
        return []

    def _reset(self) -> None:
        self.state = FxoState.IDLE
        self.rings = 0
        self.caller = None
        self.holding = False
        self.outgoing, self.number, self.alerted = False, "", False


# --------------------------------------------------------------------------- FXS
@dataclass
class FxsPort:
    """The signalling of an FXS port (an ``fxoks`` channel facing a phone)."""

    settings: AnalogSettings = field(default_factory=AnalogSettings)
    name: str = "fxs"
    state: FxsState = FxsState.IDLE
    digits: str = ""
    _caller_pending: CallerId | None = None
    _ringer_offs: int = 0

    def __str__(self) -> str:
        return f"FXS port {self.name}"

    # ------------------------------------------------------------------ inputs
    def handle(self, event: Input) -> list[Output]:
        state = self.state
        if isinstance(event, HookEvent):
            return self._hook_event(event.code)
        if isinstance(event, DigitHeard):
            return self._digit(event.digit) if state is FxsState.DIALLING else []
        if isinstance(event, TimerExpired):
            if event.name == DIGIT_TIMER and state is FxsState.DIALLING:
                return self._number_complete()
            if event.name == PARKED_TIMER and state is FxsState.PARKED:
                return [CheckHook()]
            return []
        if isinstance(event, HookChecked) and state is FxsState.PARKED:
            if not event.off_hook:
                self.state = FxsState.IDLE
                return [CancelTimer(PARKED_TIMER)]
            return [StartTimer(PARKED_TIMER, PARKED_CHECK)]
        return []

    def _hook_event(self, code: int) -> list[Output]:
        state = self.state
        if code == abi.DAHDI_EVENT_RINGOFFHOOK:  # the phone went off hook
            if state is FxsState.RINGING:
                self.state = FxsState.CONNECTED
                self._caller_pending = None
                return [SetHook(abi.DAHDI_OFFHOOK), PlayTone(None), CallAnswered()]
            if state is FxsState.IDLE:
                self.state = FxsState.DIALLING
                self.digits = ""
                return [SetHook(abi.DAHDI_OFFHOOK), PlayTone("dial"), Listen("dtmf"),
                        StartTimer(DIGIT_TIMER, self.settings.first_digit_timeout)]
            return []
        if code == abi.DAHDI_EVENT_RINGEROFF and state is FxsState.RINGING:
            self._ringer_offs += 1
            caller, self._caller_pending = self._caller_pending, None
            if caller is not None and self._ringer_offs == 1:
                return [SendCallerId(caller)]
            return []
        if code & abi.DAHDI_EVENT_PULSEDIGIT and state is FxsState.DIALLING:
            return self._digit(chr(code & 0xFF))
        if code == abi.DAHDI_EVENT_ONHOOK:  # the phone hung up
            if state is FxsState.PARKED:
                self.state = FxsState.IDLE
                return [CancelTimer(PARKED_TIMER)]
            if state in (FxsState.DIALLING, FxsState.OFFERED, FxsState.CONNECTED):
                self.state = FxsState.IDLE
                return [PlayTone(None), Listen(None), CancelTimer(DIGIT_TIMER),
                        SetHook(abi.DAHDI_ONHOOK),
                        CallEnded("the phone hung up", "remote", raw="on-hook")]
        if code == abi.DAHDI_EVENT_WINKFLASH:
            log.info("%s: hook flash in state %s (no transfer here; ignored)", self,
                     state.name)
        return []

    def _digit(self, digit: str) -> list[Output]:
        out: list[Output] = []
        if not self.digits:
            out.append(PlayTone(None))  # dial tone stops at the first digit
        if digit == self.settings.end_digit:
            return out + self._number_complete()
        self.digits += digit
        if len(self.digits) >= self.settings.max_digits:
            return out + self._number_complete()
        return [*out, StartTimer(DIGIT_TIMER, self.settings.digit_timeout)]

    def _number_complete(self) -> list[Output]:
        self.state = FxsState.OFFERED
        return [CancelTimer(DIGIT_TIMER), PlayTone(None), Listen(None),
                CallOffered(called=self.digits)]

    # ------------------------------------------------------------------ commands
    def place_call(self, caller: CallerId | None = None) -> list[Output]:
        """Ring the phone; with ``caller`` (and caller ID enabled), send it after the first
        ring."""
        if self.state is not FxsState.IDLE:
            detail = ("the phone is off hook" if self.state is FxsState.PARKED
                      else f"the port is {self.state.name}")
            raise LocalProtocolError(f"place_call() on {self}: {detail}; expected an idle "
                                     "port with the phone on hook", state=self.state,
                                     event="place_call")
        self.state = FxsState.RINGING
        self._ringer_offs = 0
        self._caller_pending = caller if self.settings.callerid else None
        return [SetHook(abi.DAHDI_RING), CallAlerting()]

    def ringback(self, inband: bool = True) -> list[Output]:
        """The application rings the phone's call: ringback in band, or, not ``inband``,
        nothing of ours (the application plays its own ringtone as early media: the
        port's ringback would be heard for the moment before that starts)."""
        if self.state is not FxsState.OFFERED:
            raise _refuse(self, self.state, "ringback", "OFFERED")
        return [PlayTone("ringback")] if inband else []

    def answer(self) -> list[Output]:
        if self.state is not FxsState.OFFERED:
            raise _refuse(self, self.state, "answer", "OFFERED")
        self.state = FxsState.CONNECTED
        return [PlayTone(None), CallAnswered()]

    def hang_up(self) -> list[Output]:
        state = self.state
        if state is FxsState.RINGING:
            self.state = FxsState.IDLE
            self._caller_pending = None
            return [SetHook(abi.DAHDI_ONHOOK), PlayTone(None),
                    CallEnded("we stopped ringing", "local")]
        if state in (FxsState.DIALLING, FxsState.OFFERED, FxsState.CONNECTED):
            # On hook with the phone off hook: the kernel drops battery (kewl), which a
            # phone or a PBX line port reads as the far end clearing.
            self.state = FxsState.PARKED
            return [SetHook(abi.DAHDI_ONHOOK), PlayTone(None), Listen(None),
                    CancelTimer(DIGIT_TIMER), StartTimer(PARKED_TIMER, PARKED_CHECK),
                    CallEnded("we hung up", "local")]
        return []
