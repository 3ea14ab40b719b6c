"""One call on a PRI span: its state table, its events and the steps an owner may take.

The state machine is :data:`TRANSITIONS`, one table per direction. Local steps (methods
of :class:`PriCall`, lower case) and libpri events (named after their class) each list the
states they are valid in and the state they lead to. A local step that is not valid raises
:class:`~uascall.errors.LocalProtocolError` and changes nothing; a remote one that is not
valid makes the span clear the call with cause 111 (protocol error).

A call is *cleared* for its users as soon as the clearing is decided (the far end's
DISCONNECT, our RELEASE COMPLETE, an alarm); its libpri record may live a little longer,
until RELEASE COMPLETE has crossed, and keeps its B-channel reserved until then.

Everything here runs on the engine thread; :class:`~uascall.dahdi.pri.PriSpan` creates
calls and drives them from libpri's events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from uascall import faultlog
from uascall.dahdi import libpri
from uascall.dahdi.device import MEDIA_NUMBUFS
from uascall.errors import ArgumentError, LocalProtocolError

if TYPE_CHECKING:
    from uascall.dahdi.device import Channel
    from uascall.dahdi.pri import PriSpan
    from uascall.engine import TimerHandle

log = logging.getLogger(__name__)

CAUSE_NORMAL = libpri.PRI_CAUSE_NORMAL_CLEARING


class CallState(Enum):
    DIALING = "dialing"          # outgoing: SETUP sent
    OFFERED = "offered"          # incoming: SETUP received
    PROCEEDING = "proceeding"    # CALL PROCEEDING sent (incoming) or received (outgoing)
    ALERTING = "alerting"        # ALERTING sent or received
    CONNECTING = "connecting"    # incoming: CONNECT sent, CONNECT ACKNOWLEDGE awaited
    CONNECTED = "connected"
    CLEARING = "clearing"        # we sent DISCONNECT; the far end's RELEASE is awaited
    CLEARED = "cleared"


LIVE = frozenset(CallState) - {CallState.CLEARING, CallState.CLEARED}
_S = CallState
_LIVE_TO_CLEARING = {state: _S.CLEARING for state in LIVE}

#: direction → step → {state it is valid in: state it leads to}. A step missing from a
#: direction's table is never valid for such a call.
TRANSITIONS: dict[str, dict[str, dict[CallState, CallState]]] = {
    "incoming": {
        "proceeding": {_S.OFFERED: _S.PROCEEDING},
        "progress": {_S.PROCEEDING: _S.PROCEEDING, _S.ALERTING: _S.ALERTING},
        "alerting": {_S.OFFERED: _S.ALERTING, _S.PROCEEDING: _S.ALERTING},
        "answer": {_S.OFFERED: _S.CONNECTING, _S.PROCEEDING: _S.CONNECTING,
                   _S.ALERTING: _S.CONNECTING},
        # A NET side is connected as soon as it has sent CONNECT (the user's CONNECT
        # ACKNOWLEDGE is optional, Q.931 5.1.8), so one may still arrive when CONNECTED.
        "ConnectAck": {_S.CONNECTING: _S.CONNECTED, _S.CONNECTED: _S.CONNECTED},
        "hangup": _LIVE_TO_CLEARING,
    },
    "outgoing": {
        "Proceeding": {_S.DIALING: _S.PROCEEDING},
        "SetupAck": {_S.DIALING: _S.PROCEEDING},
        "Ringing": {_S.DIALING: _S.ALERTING, _S.PROCEEDING: _S.ALERTING},
        "Progress": {_S.DIALING: _S.DIALING, _S.PROCEEDING: _S.PROCEEDING,
                     _S.ALERTING: _S.ALERTING},
        "Answer": {_S.DIALING: _S.CONNECTED, _S.PROCEEDING: _S.CONNECTED,
                   _S.ALERTING: _S.CONNECTED},
        "hangup": _LIVE_TO_CLEARING,
    },
}


# --------------------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class CallEvent:
    """Something that happened to a call; delivered to its listeners."""


@dataclass(frozen=True, slots=True)
class CallProceeding(CallEvent):
    inband: bool


@dataclass(frozen=True, slots=True)
class CallAlerting(CallEvent):
    #: progress indicator #1 or #8: the far end plays ringback or an announcement in band
    inband: bool


@dataclass(frozen=True, slots=True)
class CallProgress(CallEvent):
    inband: bool
    cause: int | None


@dataclass(frozen=True, slots=True)
class CallConnected(CallEvent):
    """Outgoing: the far end answered. Incoming: our CONNECT was acknowledged."""


@dataclass(frozen=True, slots=True)
class CallCleared(CallEvent):
    cause: int
    #: "remote" (the far end), "local" (we hung up) or "span" (alarm, restart, an error)
    by: str


CallListener = Callable[["PriCall", CallEvent], None]


def check_cause(cause: int) -> int:
    if not 1 <= cause <= 127:
        raise ArgumentError(f"cause {cause!r} is not a Q.850 cause; expected 1..127")
    return cause


class PriCall:
    """One call on a PRI span, incoming or outgoing (engine thread only)."""

    def __init__(self, span: PriSpan, ref: int, *, incoming: bool, chanpos: int, law: str,
                 called: str, calling: str, calling_name: str = "",
                 cref: int | None = None) -> None:
        self.span = span
        self._ref = ref
        #: libpri's call reference for ``_ref`` (pri_get_crv), checked with the pointer
        #: to tell our record from another that malloc later put at the same address
        self._libpri_cr: int | None = None
        #: the span's bound on clearing (see PriSpan.clearing_bound), while it runs
        self._clearing_deadline: TimerHandle | None = None
        #: the Q.931 call reference value (without the flag bit), for traces
        self.cref = cref
        self.incoming = incoming
        self.chanpos = chanpos
        self.law = law
        self.called = called
        self.calling = calling
        self.calling_name = calling_name
        self.state = CallState.OFFERED if incoming else CallState.DIALING
        self.cause: int | None = None
        self.cleared_by: str | None = None
        #: progress indicators the far end sent (libpri PRI_PROG_* bits), accumulated
        self.progress_mask = 0
        self.media: Channel | None = None
        self.listeners: list[CallListener] = []
        self._on_media: Callable[[bytes], None] | None = None

    def __repr__(self) -> str:
        way = "in" if self.incoming else "out"
        return (f"<PriCall span {self.span.layout.spanno} B{self.chanpos} {way} "
                f"{self.calling or '?'}->{self.called} {self.state.value}>")

    @property
    def direction(self) -> str:
        return "incoming" if self.incoming else "outgoing"

    @property
    def channo(self) -> int:
        """The B-channel's global DAHDI channel number."""
        return self.span.channo_of(self.chanpos)

    @property
    def live(self) -> bool:
        """Neither clearing nor cleared."""
        return self.state in LIVE

    @property
    def cleared(self) -> bool:
        return self.state is CallState.CLEARED

    @property
    def inband(self) -> bool:
        """Whether the far end said in-band information is available (PI #1 or #8)."""
        return bool(self.progress_mask & (libpri.PRI_PROG_INBAND_AVAILABLE
                                          | libpri.PRI_PROG_CALL_NOT_E2E_ISDN))

    # ------------------------------------------------------------------ local steps
    def next_state(self, step: str) -> CallState:
        """The state ``step`` leads to; LocalProtocolError if it is not valid now."""
        table = TRANSITIONS[self.direction].get(step)
        if table is None:
            raise LocalProtocolError(f"{step}() on {self!r}: not a step an {self.direction} "
                                     "call takes", state=self.state, event=step)
        if self.state not in table:
            expected = " or ".join(s.name for s in table)
            raise LocalProtocolError(f"{step}() on {self!r}: the call is {self.state.name}; "
                                     f"expected {expected}", state=self.state, event=step)
        return table[self.state]

    def _local(self, step: str, operation: Callable[..., None], *args: object) -> None:
        new = self.next_state(step)
        if self.span._pri_call(self, operation, self.chanpos, *args):
            self.state = new

    def proceeding(self) -> None:
        """CALL PROCEEDING (sent by the span as soon as a SETUP is accepted)."""
        self._local("proceeding", libpri.Pri.proceeding, False)

    def alerting(self, inband: bool) -> None:
        """ALERTING; with ``inband`` it carries progress indicator #8 (early media)."""
        self._local("alerting", libpri.Pri.acknowledge, inband)

    def progress(self, cause: int | None = None) -> None:
        """PROGRESS with progress indicator #8: in-band audio is on the B-channel now."""
        if cause is not None:
            check_cause(cause)
        self._local("progress", libpri.Pri.progress, True, cause)

    def answer(self) -> None:
        """CONNECT. On the user side the call is CONNECTED when the network's CONNECT
        ACKNOWLEDGE comes; on the network side at once, since the user need not send one."""
        self._local("answer", libpri.Pri.answer)
        if self.state is CallState.CONNECTING and self.span.node is libpri.Node.NETWORK:
            self.state = CallState.CONNECTED
            self._emit(CallConnected())

    def hangup(self, cause: int = CAUSE_NORMAL) -> None:
        """Clear the call with a Q.850 cause. Harmless once it is clearing.

        Usually DISCONNECT; before any response to our SETUP, causes 1, 34, 44, 81, 82 and
        88 clear with RELEASE COMPLETE and the call is cleared at once. Raises
        ArgumentError for a cause outside 1..127, before anything changes.
        """
        check_cause(cause)
        if self.live:
            self.span._hang_up(self, cause, "local")

    # ------------------------------------------------------------------ media
    def open_media(self, *, numbufs: int = MEDIA_NUMBUFS) -> Channel:
        """Open the B-channel for voice: 160-byte (20 ms) blocks in the call's law."""
        if self.media is None:
            if not self.live:
                raise LocalProtocolError(f"open_media() on {self!r}: the call is "
                                         f"{self.state.name}; expected a live call",
                                         state=self.state, event="open_media")
            self.media = self.span._open_bchannel(self, numbufs)
        return self.media

    def on_media(self, callback: Callable[[bytes], None] | None) -> None:
        """Deliver every block read from the B-channel to ``callback`` (None stops it)."""
        self._on_media = callback
        if self.media is not None:
            self.span._watch_media(self)

    def close_media(self) -> None:
        media, self.media = self.media, None
        if media is not None:
            self.span.engine.remove_fd(media.fileno())
            media.close()

    # ------------------------------------------------------------------ from the span
    def _emit(self, event: CallEvent) -> None:
        for listener in list(self.listeners):
            try:
                listener(self, event)
            except Exception as exc:
                faultlog.record("a PRI call's listener", exc, f"{self!r}, {event}")

    def _clear(self, cause: int, by: str) -> None:
        """The call is over for its users (the libpri record may live a little longer).

        Whoever cleared first keeps the credit: after our DISCONNECT, the far end's RELEASE
        does not turn a local clearing into a remote one.
        """
        if self.state is CallState.CLEARED:
            return
        if self.cleared_by is None:
            self.cause, self.cleared_by = cause, by
        self.close_media()
        self.state = CallState.CLEARED
        log.info("%r cleared by %s, cause %d (%s)", self, self.cleared_by, self.cause,
                 libpri.cause_text(self.cause))
        self._emit(CallCleared(self.cause, self.cleared_by))
        # nothing more will happen to it: its listeners (a leg that holds the call) are let
        # go, so that a finished call is no reference cycle for the collector to find
        self.listeners.clear()
