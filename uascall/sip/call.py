"""One SIP call as a :class:`~uascall.backend.CallLeg`: the INVITE's transaction user.

Theory of operation
-------------------
A :class:`SipCall` is made by the :class:`~uascall.sip.useragent.UserAgent` for each new
INVITE it receives (after sending 100 Trying) or places. The channel drives it with
``alert``/``answer``/``release``; the user agent feeds it what comes from the wire
(responses to its requests, ACK, CANCEL, BYE, re-INVITEs) and the timers it asked for.
Everything runs on the engine thread. All a call asks of its user agent goes through a
:class:`CallHost` (sending, transactions, the user agent's tables and overload count,
RTP ports, our address): nothing else of the user agent is reachable from here.

Incoming (we are the UAS):

=============  =====================================================================
INCOMING       100 sent. ``alert``: 180, or 183 + SDP answer with RTP (early media)
EARLY          a provisional sent; ``alert`` again may upgrade 180 to 183 + SDP
ANSWERING      200 + SDP sent (the same answer as the 183), retransmitted T1, 2T1...
               capped at T2 until the ACK; no ACK in 64*T1: BYE, the call fails
CONFIRMED      ACK received: :class:`LegAnswered`. RTP-inactivity timer running
=============  =====================================================================

CANCEL in INCOMING/EARLY answers the INVITE 487 (after the user agent's 200 for the
CANCEL); a BYE is answered 200; both clear the call with the caller as its author.
``release`` before the answer sends the final failure response (the Cause mapped by
:mod:`uascall.sip.causes`, or the raw SIP status), after it a BYE (deferred until the ACK
if it has not come yet, as RFC 3261 15 asks).

Outgoing (we are the UAC): OUTGOING (INVITE sent, Timer A/B), PROCEEDING (a provisional:
:class:`LegAlerting`, with in-band media when a 183 carried SDP), then CONFIRMED on a 2xx
(which we ACK, and ACK again for each retransmission); a failure response clears the call
with its Cause. ``release`` before the answer CANCELs (once a provisional has come, per
RFC 3261 9.1), and a 2xx that crosses the CANCEL is ACKed and BYEd.

Both end in ENDING (our BYE sent, its response awaited) and ENDED.

The phase table
---------------
The phases and what moves a call between them are one declared table,
:data:`TRANSITIONS`: for each :class:`Event` the phases it is taken in and the phase it
leads to. :data:`ABSORBED` lists where an event changes nothing and is no error (a
retransmitted ACK, a CANCEL after the answer, RFC 3261 9.2; a response that comes
after the call ended). Anywhere else the event is refused and the phase stays:

- an event of ours (the channel's ``answer()`` on a call already answering, a timer in
  the wrong phase) raises :class:`~uascall.errors.LocalProtocolError`, which names the
  call, the phase, the event and says it is our fault; from the engine's side the
  call is then ended (``_ends_the_call_on_failure``), never left in a wrong phase;
- a message from the far end raises :class:`~uascall.errors.RemoteProtocolError`
  (the far end's fault), with the status a request is answered with as RFC 3261 asks:
  a re-INVITE before our final response 500 + Retry-After (14.2), while an INVITE
  transaction of ours is pending 491, after our BYE 481; a misplaced ACK or response is
  dropped (nothing answers it). The call goes on.

Only :meth:`SipCall._enter` sets the phase; entering ENDING stops the call's timers and
media, entering ENDED also takes it off the user agent's tables.
"""

from __future__ import annotations

import enum
import functools
import itertools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from uascall.backend import (
    CallLeg,
    Cause,
    LegAlerting,
    LegAnswered,
    LegCleared,
    LegDigit,
    MediaPort,
)
from uascall.engine import Engine, TimerHandle
from uascall.errors import Error, LocalProtocolError, RemoteProtocolError
from uascall.sip import causes
from uascall.sip.dialog import Dialog
from uascall.sip.info import HookFlash, InfoRefused, parse_dtmf_info
from uascall.sip.media import RtpStream
from uascall.sip.message import (
    REASONS,
    Headers,
    NameAddr,
    Request,
    Response,
    SipParseError,
    make_response,
    new_branch,
    new_tag,
    parse_name_addr,
    warning,
)
from uascall.sip.sdp import (
    CODECS,
    Negotiated,
    NoCommonCodec,
    SdpError,
    SessionDescription,
    answer_offer,
    make_offer,
    parse_sdp,
    read_answer,
)
from uascall.sip.transaction import (
    ClientTransaction,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
    Transaction,
)
from uascall.sip.transport import Address, format_hostport

if TYPE_CHECKING:
    from uascall.sip.useragent import SipSettings

log = logging.getLogger(__name__)

#: the methods a call serves in its dialog (the Allow header of our 1xx/2xx)
ALLOWED = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO")
ALLOW_HEADER = ", ".join(ALLOWED)
SDP = "application/sdp"
#: early dialogs kept for one outgoing call (forks answering 18x with their own tags): a
#: far end that sends 18x with a new tag each time must not grow the call without bound
MAX_EARLY_DIALOGS = 8

_Step = TypeVar("_Step", bound=Callable[..., Any])


def _ends_the_call_on_failure(step: _Step) -> _Step:
    """Whatever goes wrong in one of a call's steps (a message from the network, a timer)
    ends that call there and then, with everything it holds (its tables, slot, timers and
    media): a failure must never leave a call half-way, holding them for ever."""
    @functools.wraps(step)
    def guarded(self: SipCall, *args: Any, **kwargs: Any) -> Any:
        try:
            return step(self, *args, **kwargs)
        except Exception as exc:
            self._abort(step.__name__, exc)
            return None
    return guarded  # type: ignore[return-value]


# --------------------------------------------------------------------------- the table
#: Enum.__hash__ is Python code (it hashes the name); the table's lookups, a few a
#: message, take the members' identity instead, which is as good for singletons.
_identity_hash = object.__hash__


class Phase(enum.Enum):
    __hash__ = _identity_hash

    INCOMING = "incoming"      # UAS: INVITE received, 100 Trying sent
    EARLY = "early"            # UAS: a provisional with our To-tag sent
    ANSWERING = "answering"    # UAS: 200 sent, retransmitted until its ACK
    OUTGOING = "outgoing"      # UAC: INVITE sent
    PROCEEDING = "proceeding"  # UAC: a provisional received
    CONFIRMED = "confirmed"    # the dialog is confirmed (ACK received, or 2xx ACKed)
    ENDING = "ending"          # our BYE sent, its final response awaited
    ENDED = "ended"


class Event(enum.Enum):
    """What moves a call from phase to phase. ``remote`` events are the far end's
    messages (refused: RemoteProtocolError); the others are our own steps and timers
    (refused: LocalProtocolError)."""

    __hash__ = _identity_hash

    # ours (the channel's steps, our timers, the backend)
    SEND_PROVISIONAL = ("send a provisional response (180/183)", False)
    SEND_2XX = ("send the answer (200)", False)
    REJECT = ("answer the INVITE with a final failure", False)
    CONFIRM_WITHOUT_ACK = ("take the dialog as confirmed without the ACK", False)
    SEND_BYE = ("send a BYE", False)
    INVITE_TIMED_OUT = ("no final response to our INVITE (Timer B)", False)
    CANCEL_GAVE_UP = ("no final response within 64*T1 of our CANCEL", False)
    BYE_TIMED_OUT = ("no final response to our BYE", False)
    SHUTDOWN = ("the backend stops", False)
    ABORT = ("a step failed", False)
    # the far end's
    RECEIVE_ACK = ("an ACK for our 2xx", True)
    RECEIVE_CANCEL = ("a CANCEL", True)
    RECEIVE_BYE = ("a BYE", True)
    RECEIVE_REINVITE = ("a re-INVITE", True)
    RECEIVE_INFO = ("an INFO", True)
    RECEIVE_PROVISIONAL = ("a provisional response to our INVITE", True)
    RECEIVE_2XX = ("a 2xx to our INVITE", True)
    RECEIVE_FAILURE = ("a failure response to our INVITE", True)
    BYE_ANSWERED = ("a final response to our BYE", True)

    def __init__(self, text: str, remote: bool) -> None:
        self.text = text
        self.remote = remote


_P = Phase
_E = Event
_EVERY_PHASE_TO_ENDED = {phase: _P.ENDED for phase in Phase}

#: event -> {phase it is taken in: phase it leads to}
TRANSITIONS: dict[Event, dict[Phase, Phase]] = {
    # the UAS's answers to the INVITE
    _E.SEND_PROVISIONAL: {_P.INCOMING: _P.EARLY, _P.EARLY: _P.EARLY},
    _E.SEND_2XX: {_P.INCOMING: _P.ANSWERING, _P.EARLY: _P.ANSWERING},
    _E.REJECT: {_P.INCOMING: _P.ENDED, _P.EARLY: _P.ENDED},
    _E.RECEIVE_CANCEL: {_P.INCOMING: _P.ENDED, _P.EARLY: _P.ENDED},
    _E.RECEIVE_ACK: {_P.ANSWERING: _P.CONFIRMED},
    # RFC 3261 13.3.1.4: no ACK in 64*T1 confirms the dialog, which is then ended (BYE);
    # the backend stopping does the same without waiting
    _E.CONFIRM_WITHOUT_ACK: {_P.ANSWERING: _P.CONFIRMED},
    # the UAC's INVITE; a 2xx after we gave up (ENDED) still makes a dialog, which we
    # ACK and end with a BYE (RFC 3261 9.1, 13.2.2.4)
    _E.RECEIVE_PROVISIONAL: {_P.OUTGOING: _P.PROCEEDING, _P.PROCEEDING: _P.PROCEEDING},
    _E.RECEIVE_2XX: {_P.OUTGOING: _P.CONFIRMED, _P.PROCEEDING: _P.CONFIRMED,
                     _P.ENDED: _P.CONFIRMED},
    _E.RECEIVE_FAILURE: {_P.OUTGOING: _P.ENDED, _P.PROCEEDING: _P.ENDED},
    _E.INVITE_TIMED_OUT: {_P.OUTGOING: _P.ENDED, _P.PROCEEDING: _P.ENDED},
    _E.CANCEL_GAVE_UP: {_P.PROCEEDING: _P.ENDED},
    # the dialog
    _E.RECEIVE_REINVITE: {_P.CONFIRMED: _P.CONFIRMED},
    # keys sent as INFO, in an early dialog too (RFC 6086 4.2.1): ours as the UAS, or
    # one a provisional response to our INVITE made
    _E.RECEIVE_INFO: {_P.EARLY: _P.EARLY, _P.ANSWERING: _P.ANSWERING,
                      _P.PROCEEDING: _P.PROCEEDING, _P.CONFIRMED: _P.CONFIRMED},
    _E.SEND_BYE: {_P.CONFIRMED: _P.ENDING},
    # the caller may BYE an early dialog (RFC 3261 15: the INVITE is then answered 487)
    # and a dialog whose ACK has not come; crossing BYEs: ours is still to be answered
    _E.RECEIVE_BYE: {_P.INCOMING: _P.ENDED, _P.EARLY: _P.ENDED, _P.ANSWERING: _P.ENDED,
                     _P.CONFIRMED: _P.ENDED, _P.ENDING: _P.ENDING},
    _E.BYE_ANSWERED: {_P.ENDING: _P.ENDED},
    _E.BYE_TIMED_OUT: {_P.ENDING: _P.ENDED},
    _E.SHUTDOWN: _EVERY_PHASE_TO_ENDED,
    _E.ABORT: _EVERY_PHASE_TO_ENDED,
}

_AFTER_THE_ANSWER = frozenset({_P.ANSWERING, _P.CONFIRMED, _P.ENDING, _P.ENDED})
_AFTER_THE_INVITE = frozenset({_P.CONFIRMED, _P.ENDING, _P.ENDED})

#: event -> the phases where it changes nothing and is no error
ABSORBED: dict[Event, frozenset[Phase]] = {
    # alert() again once answered or over: the channel's ring() raced the far end
    _E.SEND_PROVISIONAL: _AFTER_THE_ANSWER,
    _E.RECEIVE_ACK: _AFTER_THE_INVITE,                # a retransmitted or late ACK
    _E.RECEIVE_CANCEL: _AFTER_THE_ANSWER,             # too late to act (RFC 3261 9.2)
    _E.RECEIVE_BYE: frozenset({_P.ENDED}),            # answered 200 all the same
    _E.RECEIVE_PROVISIONAL: _AFTER_THE_INVITE,        # reordered, or after we gave up
    _E.RECEIVE_FAILURE: _AFTER_THE_INVITE,
    _E.INVITE_TIMED_OUT: frozenset({_P.ENDED}),       # we had given up already
    _E.BYE_ANSWERED: frozenset({_P.ENDED}),
    _E.BYE_TIMED_OUT: frozenset({_P.ENDED}),
}

#: event -> {phase: status}: how a far end's request refused in that phase is answered
#: (481 where not listed)
REFUSAL_STATUS: dict[Event, dict[Phase, int]] = {
    # RFC 3261 14.2: before our final response to the INVITE, 500 + Retry-After; while
    # an INVITE exchange is not over (our 200 not yet ACKed, which may carry the answer
    # to our offer; our own INVITE pending), 491
    _E.RECEIVE_REINVITE: {_P.INCOMING: 500, _P.EARLY: 500, _P.ANSWERING: 491,
                          _P.OUTGOING: 491, _P.PROCEEDING: 491},
}


@enum.unique
class _Timer(enum.Enum):
    __hash__ = _identity_hash

    RETRANSMIT_2XX = "2xx retransmission"
    NO_ACK = "no ACK"
    RTP_CHECK = "RTP inactivity"
    CANCEL_GIVE_UP = "no final response after CANCEL"
    INFO_KEY_UP = "the end of a key sent by INFO"


# --------------------------------------------------------------------------- the host
@dataclass(frozen=True, slots=True)
class CallHost:
    """All a :class:`SipCall` may ask of its user agent, and nothing more.

    The user agent makes one for all its calls (its bound methods; see
    :class:`~uascall.sip.useragent.UserAgent`). A proxy in front or a worker process of
    many changes what is behind these, not the call.
    """

    engine: Engine
    #: the backend's settings (read: timers, rtp_timeout, retry_after, codecs)
    settings: SipSettings
    #: send a response in a server transaction (the Server header added)
    respond: Callable[[ServerTransaction, Response], None]
    #: start a client transaction for a request; ``call`` gets its responses and timeout
    start_client: Callable[[Request, Address, SipCall | None], ClientTransaction]
    #: forget a client transaction the call has given up on
    abandon: Callable[[Transaction], None]
    #: send bytes outside a transaction (the ACK for a 2xx, our 2xx's retransmissions)
    send: Callable[[bytes, Address], None]
    #: our signalling address towards a peer (None: the first we listen on)
    local_address: Callable[[Address | None], Address]
    #: an RTP stream on a free port pair at that host
    open_stream: Callable[[str, SipCall], RtpStream]
    #: the call has a dialog now (an early one too): in-dialog requests find it by the
    #: key all its dialogs share (SipCall.dialog_key)
    register_dialog: Callable[[SipCall], None]
    #: an incoming call's set-up is over: ACKed (True) or our 2xx never was (False)
    setup_over: Callable[[SipCall, bool], None]
    #: the call is over: off every table (its transactions finish on their own)
    forget: Callable[[SipCall], None]


#: SDP session ids (RFC 4566 o=): one a call, unique in this process
_session_ids = itertools.count(random.randrange(1, 2**31))


def codec_names(laws: list[str] | None, default: tuple[str, ...]) -> list[str]:
    """A leg's codecs (laws, in priority order) as SDP codec names; None: ``default``."""
    if not laws:
        return list(default)
    by_law = {law: name for name, (_rtpmap, _pt, law) in CODECS.items()}
    return [by_law[law] for law in laws if law in by_law]


class SipCall(CallLeg):
    """One call's signalling and media (engine thread only)."""

    def __init__(self, host: CallHost, *, incoming: bool, call_id: str) -> None:
        self.host = host
        self.engine = host.engine
        self.incoming = incoming
        self.call_id = call_id
        #: set only by _enter(), as TRANSITIONS says
        self.phase = Phase.INCOMING if incoming else Phase.OUTGOING
        self.dialog: Dialog | None = None
        #: UAC: the early dialogs our INVITE's provisional responses made (RFC 3261
        #: 12.1.2), by the far end's tag (one per fork), until a 2xx makes the dialog
        self._early_dialogs: dict[str, Dialog] = {}
        #: UAC: the ACK (and where it goes) of each fork that answered after the one we
        #: took, by its tag, for its 2xx's retransmissions
        self._other_forks: dict[str, tuple[bytes, Address]] = {}
        self.local_tag = new_tag()
        self.stream: RtpStream | None = None
        self.negotiated: Negotiated | None = None
        self._answer_sdp: bytes | None = None   # our SDP in 183/200 (UAS) or INVITE (UAC)
        self._offer: SessionDescription | None = None
        self._timers: dict[_Timer, TimerHandle] = {}
        self._info_key: str | None = None  # a key an INFO pressed, until its Duration ends
        self._cleared = False
        self._release_after_ack: tuple[Cause, str | None] | None = None
        self._session_id: int | None = None
        # UAS
        self.invite: Request | None = None
        self.invite_tx: InviteServerTransaction | None = None
        self.source: tuple[str, int] | None = None
        self._provisional: int | None = None
        self._ok: bytes | None = None
        self._ok_interval = host.settings.timers.t1
        # UAC
        self.client_tx: InviteClientTransaction | None = None
        self._ack: bytes | None = None
        self._cancel_wanted: tuple[Cause, str | None] | None = None
        self._cancel_sent = False
        self._alerted_out = False
        self._own_offer: SessionDescription | None = None  # UAS, after an offerless INVITE
        self._sdp_version = 0
        #: the INVITE's header fields (channel.SIP.request_header_field)
        self.received_headers: Headers | None = None
        self.counted_setup = False  # the user agent's overload count includes this call

    # ------------------------------------------------------------------ set-up
    @classmethod
    def incoming_call(cls, host: CallHost, invite: Request, tx: InviteServerTransaction,
                      offer: SessionDescription | None) -> SipCall:
        call = cls(host, incoming=True, call_id=invite.call_id)
        call.invite, call.invite_tx, call.source = invite, tx, tx.peer
        call._offer = offer
        call.call_from = _user_or_uri(invite.from_)
        call.call_to = _user_or_uri(invite.to)
        call.dialog = Dialog.for_uas(invite, call.local_tag)
        call.received_headers = invite.headers
        return call

    def describe(self) -> str:
        who = self.source or (self.client_tx.peer if self.client_tx else None)
        peer = f"{who[0]}:{who[1]}" if who else "?"
        return f"SIP {self.call_id[:24]} {peer}"

    def __repr__(self) -> str:
        return f"<SipCall {self.call_id} {self.phase.name}>"

    @property
    def live(self) -> bool:
        return self.phase not in (Phase.ENDING, Phase.ENDED) and not self._cleared

    def received_header(self, name: str) -> list[str]:
        headers = self.received_headers
        return headers.get_all(name) if headers is not None else []

    # ------------------------------------------------------------------ the phase table
    def next_phase(self, event: Event) -> Phase | None:
        """The phase ``event`` leads to now, or None where the phase absorbs it (see
        :data:`ABSORBED`). Refused: LocalProtocolError for our own events,
        RemoteProtocolError (with the status to answer) for the far end's; nothing
        changes then."""
        phase = self.phase
        target = TRANSITIONS[event].get(phase)
        if target is not None:
            return target
        if phase in ABSORBED.get(event, ()):
            return None
        allowed = sorted({*TRANSITIONS[event], *ABSORBED.get(event, ())},
                         key=list(Phase).index)
        expected = " or ".join(p.name for p in allowed)
        if event.remote:
            status = REFUSAL_STATUS.get(event, {}).get(phase, 481)
            raise RemoteProtocolError(
                f"{self!r}: the far end sent {event.text} in phase {phase.name}; expected "
                f"only in {expected} (a remote protocol error: the far end's fault)",
                status=status)
        raise LocalProtocolError(
            f"{self!r}: {event.text} in phase {phase.name}; expected in {expected} (a "
            "local protocol error: ours, not the far end's)", state=phase, event=event)

    def _step(self, event: Event) -> bool:
        """Take ``event`` now: True when the call moved by the table, False when its
        phase absorbed the event; refused as :meth:`next_phase` says."""
        target = self.next_phase(event)
        if target is None:
            return False
        self._enter(target)
        return True

    def _enter(self, phase: Phase) -> None:
        """The only place the phase is set (from a TRANSITIONS entry). ENDING stops the
        call's timers and media; ENDED also takes the call off the user agent's tables."""
        self.phase = phase
        if phase is Phase.ENDING or phase is Phase.ENDED:
            self._disarm(*list(self._timers))
            self._close_media()
            if phase is Phase.ENDED:
                self.host.forget(self)

    def _refused(self, refusal: RemoteProtocolError, request: Request | None = None,
                 tx: ServerTransaction | None = None) -> None:
        """A far end's message out of phase: logged, and a request answered with the
        refusal's status; the call goes on as it was."""
        log.info("%s", refusal)
        if request is None or tx is None or refusal.status is None:
            return
        headers = [warning(f"{request.method} in phase {self.phase.name}")]
        if refusal.status == 500:  # RFC 3261 14.2: with a Retry-After of 0 to 10 s
            headers.append(("Retry-After", str(random.randint(0, 10))))
        self.host.respond(tx, make_response(request, refusal.status, to_tag=self.local_tag,
                                            headers=headers))

    # ------------------------------------------------------------------ CallLeg (UAS)
    def alert(self, early_media: bool, codecs: list[str] | None = None) -> bool:
        if self.next_phase(Event.SEND_PROVISIONAL) is None:
            return self.stream is not None  # answered or over meanwhile
        if early_media and self._offer is not None:
            if self._provisional == 183:
                return True
            if not self._negotiate(codecs):
                return False
            self._send_provisional(183, self._answer_sdp)
            self._open_media()
            return True
        # Without an offer, early media would need reliable provisionals (PRACK): 180.
        if self._provisional is None:
            self._send_provisional(180)
        return self.stream is not None

    def answer(self, codecs: list[str] | None = None) -> None:
        self.next_phase(Event.SEND_2XX)  # before anything is negotiated or sent
        if self._offer is not None:
            if self._answer_sdp is None and not self._negotiate(codecs):
                return
        else:
            # An INVITE without SDP: we offer in the 200, the answer comes in the ACK.
            self._make_own_offer(codecs)
        assert self.invite is not None and self.invite_tx is not None
        response = make_response(self.invite, 200, to_tag=self.local_tag,
                                 headers=[*self._contact_headers(), *self.headers_to_send],
                                 body=self._answer_sdp or b"", record_route=True)
        response.headers.add("Content-Type", SDP)
        self._step(Event.SEND_2XX)
        self.host.respond(self.invite_tx, response)
        # After respond(), which adds our Server header: a retransmission must be the same
        # bytes, or the caller takes it for a new response (SIPp aborts on it).
        self._ok = response.serialize()
        if self._offer is not None:
            self._open_media()
        timers = self.host.settings.timers
        self._ok_interval = timers.t1
        self._arm(_Timer.RETRANSMIT_2XX, timers.t1)
        self._arm(_Timer.NO_ACK, 64 * timers.t1)

    def release(self, cause: Cause, raw_cause: str | None = None) -> Cause | None:
        status: int | None = None
        if raw_cause is not None:
            status = causes.sendable_status(raw_cause)
            if status is None:
                return None
            cause = causes.cause_of_status(status)
        phase = self.phase
        if phase is Phase.ENDING or phase is Phase.ENDED:
            return cause
        if phase is Phase.INCOMING or phase is Phase.EARLY:
            self._reject(status or causes.CAUSE_TO_STATUS[cause], cause)
            self._clear(cause, str(status or causes.CAUSE_TO_STATUS[cause]), "local")
            return cause
        if phase is Phase.ANSWERING:
            self._release_after_ack = (cause, raw_cause)  # BYE once the ACK is in (RFC 3261 15)
            return cause
        if phase is Phase.OUTGOING or phase is Phase.PROCEEDING:
            self._cancel_wanted = (cause, raw_cause)
            if phase is Phase.PROCEEDING:
                self._send_cancel()
            return cause
        self._send_bye(cause, "local", status)
        return cause

    def media(self) -> MediaPort:
        if self.stream is None or self.stream.closed:
            raise Error(f"{self!r} has no media path now (no early media negotiated, not "
                        "answered, or cleared)")
        return self.stream

    # ------------------------------------------------------------------ from the wire
    @_ends_the_call_on_failure
    def ack_received(self, ack: Request) -> None:
        """An ACK for our 2xx (matched by the user agent through the dialog)."""
        try:
            if not self._step(Event.RECEIVE_ACK):
                return  # a retransmitted ACK
        except RemoteProtocolError as refusal:
            self._refused(refusal)  # an ACK is never answered
            return
        self._disarm(_Timer.RETRANSMIT_2XX, _Timer.NO_ACK)
        if self._offer is None and not self._take_answer_from(ack):
            return
        self.host.setup_over(self, True)
        self._start_rtp_check()
        self._emit(LegAnswered())
        if self._release_after_ack is not None:
            cause, raw = self._release_after_ack
            self._send_bye(cause, "local", causes.sendable_status(raw) if raw else None)

    @_ends_the_call_on_failure
    def cancelled(self, cancel: Request) -> None:
        """The caller CANCELled the INVITE (the 200 for the CANCEL is already sent)."""
        try:
            target = self.next_phase(Event.RECEIVE_CANCEL)
        except RemoteProtocolError as refusal:
            self._refused(refusal)  # the CANCEL has had its 200 from the user agent
            return
        if target is None:
            return  # answered already: the CANCEL has no effect (RFC 3261 9.2)
        self._answer_invite(487, Cause.NORMAL)
        self._enter(target)
        reason = cancel.headers.get("Reason")
        self._clear(_remote_cause(reason), reason or "CANCEL", "remote")

    @_ends_the_call_on_failure
    def bye_received(self, bye: Request, tx: NonInviteServerTransaction) -> None:
        try:
            target = self.next_phase(Event.RECEIVE_BYE)
        except RemoteProtocolError as refusal:
            self._refused(refusal, bye, tx)
            return
        self.host.respond(tx, make_response(bye, 200))
        if target is None:
            return
        if self.phase is Phase.ANSWERING:
            self._disarm(_Timer.RETRANSMIT_2XX, _Timer.NO_ACK)
        if self.invite_tx is not None and self.phase in (Phase.INCOMING, Phase.EARLY):
            # A BYE before the answer (allowed once a To-tag was sent): the INVITE ends too
            # (RFC 3261 15.1.2: 487).
            self._answer_invite(487, Cause.NORMAL)
            self._enter(target)
        reason = bye.headers.get("Reason")
        self._clear(_remote_cause(reason), reason or "BYE", "remote")
        if self.phase is not target:  # crossing BYEs stay ENDING: ours is to be answered
            self._enter(target)

    @_ends_the_call_on_failure
    def info_received(self, info: Request, tx: NonInviteServerTransaction) -> None:
        """An INFO in the dialog: a key (``application/dtmf-relay`` or
        ``application/dtmf``), passed on as a telephone-event's would be, held for the
        Duration it gives; one without a body, or with a hook flash (nothing here acts on
        one, as on an FXS port), is answered 200 and nothing more."""
        try:
            self._step(Event.RECEIVE_INFO)
        except RemoteProtocolError as refusal:
            self._refused(refusal, info, tx)
            return
        headers = info.headers
        try:
            key = parse_dtmf_info(headers.get("Content-Type"), info.body,
                                  headers.get("Info-Package"), headers.get("Content-Encoding"))
        except InfoRefused as refusal:
            extra = [warning(str(refusal)), *refusal.headers]
            log.info("%r: INFO refused %d: %s", self, refusal.status, refusal)
            self.host.respond(tx, make_response(info, refusal.status, to_tag=self.local_tag,
                                                headers=extra))
            return
        self.host.respond(tx, make_response(info, 200, to_tag=self.local_tag))
        if key is None:
            return
        if isinstance(key, HookFlash):
            log.info("%r: hook flash in an INFO (no transfer here; ignored)", self)
            return
        if self._info_key is not None:  # the key before it is up once this one is down
            self._disarm(_Timer.INFO_KEY_UP)
            self._info_key_up()
        self._info_key = key.digit
        self._emit(LegDigit(key.digit, False, "info"))
        self._arm(_Timer.INFO_KEY_UP, key.duration_ms / 1000)

    def _info_key_up(self) -> None:
        digit, self._info_key = self._info_key, None
        if digit is not None:
            self._emit(LegDigit(digit, True, "info"))

    @_ends_the_call_on_failure
    def reinvite_received(self, invite: Request, tx: InviteServerTransaction) -> None:
        """A re-INVITE (hold, resume, a new address): answered with the same codec."""
        try:
            self._step(Event.RECEIVE_REINVITE)
        except RemoteProtocolError as refusal:
            self._refused(refusal, invite, tx)
            return
        if self.stream is None:
            self.host.respond(tx, make_response(
                invite, 488, to_tag=self.local_tag,
                headers=[warning("this call has no audio stream to change")]))
            return
        body = invite.body
        if not body:
            answer = self._answer_sdp or b""
        else:
            try:
                offer = parse_sdp(body)
                law = self.negotiated.law if self.negotiated else "alaw"
                sdp, negotiated = answer_offer(
                    offer, [_api_name(law)], address=self.stream.local[0],
                    port=self.stream.local[1], session_id=self._session(),
                    session_version=self._next_version())
            except (SdpError, NoCommonCodec) as exc:
                self.host.respond(tx, make_response(
                    invite, 488, to_tag=self.local_tag,
                    headers=[warning(str(exc), exc.warn_code)]))
                return
            self.negotiated = negotiated
            self.stream.open(negotiated)
            answer = sdp.serialize()
            self._answer_sdp = answer
        response = make_response(invite, 200, to_tag=self.local_tag,
                                 headers=self._contact_headers(), body=answer)
        response.headers.add("Content-Type", SDP)
        self.host.respond(tx, response)

    @_ends_the_call_on_failure
    def response_received(self, tx: Transaction, response: Response) -> None:
        """A response to one of our requests (INVITE, CANCEL, BYE)."""
        method = response.cseq[1]
        try:
            if method == "INVITE":
                self._invite_response(response)
            elif method == "BYE" and response.status >= 200:
                self._step(Event.BYE_ANSWERED)
        except RemoteProtocolError as refusal:
            self._refused(refusal)  # a response is never answered: dropped

    @_ends_the_call_on_failure
    def transaction_timed_out(self, tx: Transaction) -> None:
        if isinstance(tx, InviteServerTransaction):
            return  # no ACK for our failure response: the call was already cleared
        if isinstance(tx, InviteClientTransaction):
            target = self.next_phase(Event.INVITE_TIMED_OUT)
            if target is None:
                return
            log.info("%r: no response to the INVITE within 64*T1", self)
            self._clear(Cause.TIMEOUT, "408", "network")
            self._enter(target)
            return
        if tx.method == "BYE":
            self._step(Event.BYE_TIMED_OUT)

    # ------------------------------------------------------------------ UAC
    def place(self, call_to_uri: str, call_from: str, codecs: list[str], peer: tuple[str, int],
              endpoint_host: str) -> None:
        """Send the INVITE (the user agent has resolved ``peer``)."""
        self.call_to = call_to_uri
        self.call_from = call_from
        self._open_stream(endpoint_host)
        assert self.stream is not None
        offer = make_offer(codecs, address=self.stream.local[0], port=self.stream.local[1],
                           session_id=self._session())
        self._offer = offer
        self._answer_sdp = offer.serialize()
        local = self._local_name_addr(call_from, peer)
        headers = Headers()
        headers.add("Via", self._via(peer))
        headers.add("Max-Forwards", "70")
        headers.add("From", str(local))
        headers.add("To", f"<{call_to_uri}>")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{random.randrange(1, 2**16)} INVITE")
        for name, value in [*self._contact_headers(peer), *self.headers_to_send]:
            headers.add(name, value)
        headers.add("Content-Type", SDP)
        self.invite = Request("INVITE", call_to_uri, headers, self._answer_sdp)
        self.client_tx = self.host.start_client(self.invite, peer, self)  # type: ignore[assignment]

    def _invite_response(self, response: Response) -> None:
        status = response.status
        if status == 100:
            return  # hop by hop: nothing for the call
        if status < 200:
            was = self.phase
            if not self._step(Event.RECEIVE_PROVISIONAL):
                return
            if was is Phase.OUTGOING and self._cancel_wanted is not None:
                self._send_cancel()  # released before this first provisional (9.1)
                return
            self._early_dialog(response)
            inband = bool(response.body) and self._take_answer_from(response, early=True)
            if not self._alerted_out or (inband and self.stream is not None):
                self._alerted_out = True
                self._emit(LegAlerting(inband=inband))
            return
        if status < 300:
            self._invite_accepted(response)
            return
        target = self.next_phase(Event.RECEIVE_FAILURE)
        if target is None:
            return
        reason = response.headers.get("Reason")
        cause = causes.cause_of_status(status, reason)
        if self._cancel_wanted is not None and status == 487:
            cause = self._cancel_wanted[0]
            self._clear(cause, str(status), "local")
        else:
            self._clear(cause, str(status), "remote")
        self._enter(target)

    def _early_dialog(self, response: Response) -> None:
        """A provisional response with a To-tag makes an early dialog (RFC 3261 12.1.2),
        in which the far end may send requests before it answers: keys as INFO (RFC 6086
        allows them there). One per fork, up to MAX_EARLY_DIALOGS."""
        assert self.invite is not None
        tag = response.to.tag
        if not tag or tag in self._early_dialogs:
            return
        if len(self._early_dialogs) >= MAX_EARLY_DIALOGS:
            log.info("%r: a provisional response from one more fork (tag %s) beyond %d: "
                     "its early dialog is not kept", self, tag, MAX_EARLY_DIALOGS)
            return
        self._early_dialogs[tag] = Dialog.for_uac(self.invite, response)
        self.host.register_dialog(self)

    @property
    def dialog_key(self) -> tuple[str, str]:
        """What every dialog of this call is found by: the Call-ID and our tag (RFC 3261
        12: the remote tag tells a call's forks apart, see dialog_for)."""
        return self.call_id, self.local_tag

    def dialog_for(self, remote_tag: str | None) -> Dialog | None:
        """The dialog a request from the far end with this From-tag belongs to: the call's
        dialog, or before the 2xx of our INVITE the early dialog of that fork. The remote
        tag is part of a dialog's identity (RFC 3261 12.2.2)."""
        dialog = self.dialog
        if dialog is not None:
            return dialog if dialog.remote_tag in (None, remote_tag) else None
        return self._early_dialogs.get(remote_tag) if remote_tag else None

    def _invite_accepted(self, response: Response) -> None:
        assert self.invite is not None
        if self._ack is not None:
            if self.dialog is not None and response.to.tag != self.dialog.remote_tag:
                self._other_fork_answered(response)
                return
            self.host.send(self._ack, self._dialog_peer())  # a 2xx retransmission
            return
        target = self.next_phase(Event.RECEIVE_2XX)
        assert target is not None
        given_up = self.phase is Phase.ENDED or self._cancel_wanted is not None
        self.dialog = Dialog.for_uac(self.invite, response)
        early = self._early_dialogs.get(response.to.tag or "")
        if early is not None:  # the far end's requests go on counting from the early ones
            self.dialog.remote_seq = early.remote_seq
        self._early_dialogs.clear()  # the other forks' early dialogs end (13.2.2.4)
        self.host.register_dialog(self)
        ack = self.dialog.request("ACK", self._via(self._dialog_peer()),
                                  cseq=self.invite.cseq[0])
        self._ack = ack.serialize()
        self.host.send(self._ack, self._dialog_peer())
        self._enter(target)
        if given_up:
            cause, raw = self._cancel_wanted or (Cause.NORMAL, None)
            self._send_bye(cause, "local", causes.sendable_status(raw) if raw else None)
            return
        if self.negotiated is None and not self._take_answer_from(response):
            return
        self._start_rtp_check()
        self._emit(LegAnswered())

    def _other_fork_answered(self, response: Response) -> None:
        """A 2xx from another fork after the one we took makes a dialog of its own, which
        we ACK and end at once with a BYE (RFC 3261 13.2.2.4); its retransmissions get
        the same ACK. Forks beyond MAX_EARLY_DIALOGS are ACKed and ended as well but not
        remembered: a far end answering with a new tag each time cannot grow the call."""
        assert self.invite is not None
        tag = response.to.tag or ""
        known = self._other_forks.get(tag)
        if known is not None:
            self.host.send(*known)
            return
        dialog = Dialog.for_uac(self.invite, response)
        peer = self._dialog_peer(dialog)
        ack = dialog.request("ACK", self._via(peer), cseq=self.invite.cseq[0]).serialize()
        self.host.send(ack, peer)
        if len(self._other_forks) < MAX_EARLY_DIALOGS:
            self._other_forks[tag] = (ack, peer)
        log.info("%r: another fork (tag %s) answered too: ACKed and ended with BYE", self,
                 tag)
        self.host.start_client(dialog.request("BYE", self._via(peer)), peer, None)

    def _send_cancel(self) -> None:
        if self._cancel_sent or self.invite is None or self.client_tx is None:
            return
        self._cancel_sent = True
        invite = self.invite
        headers = Headers()
        headers.add("Via", invite.headers.get_all("Via")[0])
        headers.add("Max-Forwards", "70")
        headers.add("From", invite.headers.get("From") or "")
        headers.add("To", invite.headers.get("To") or "")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{invite.cseq[0]} CANCEL")
        if self._cancel_wanted is not None:
            headers.add("Reason", causes.reason_header(self._cancel_wanted[0]))
        self.host.start_client(Request("CANCEL", invite.uri, headers), self.client_tx.peer,
                               None)
        # RFC 3261 9.1: no final response to the INVITE within 64*T1 of the CANCEL and the
        # call is over all the same.
        self._arm(_Timer.CANCEL_GIVE_UP, 64 * self.host.settings.timers.t1)

    # ------------------------------------------------------------------ common
    def _send_bye(self, cause: Cause, by: str, status: int | None) -> None:
        dialog = self.dialog
        if dialog is None:  # every phase a BYE is sent in has one
            raise LocalProtocolError(f"{self!r}: a BYE without a dialog",
                                     state=self.phase, event=Event.SEND_BYE)
        self._step(Event.SEND_BYE)
        reason = causes.reason_header(cause)
        if status is not None:
            reason = f'SIP;cause={status};text="{REASONS.get(status, "")}"'
        peer = self._dialog_peer()
        bye = dialog.request("BYE", self._via(peer), extra=(("Reason", reason),))
        self._clear(cause, str(status) if status else "BYE", by)
        self.host.start_client(bye, peer, self)

    def _abort(self, step: str, exc: Exception) -> None:
        """A step failed unexpectedly: the call is over, whatever its phase."""
        log.error("%r: %s failed (%s: %s); the call is ended", self, step,
                  type(exc).__name__, exc, exc_info=exc)
        for last_step in (lambda: self._clear(Cause.FAILED, "500", "local"),
                          lambda: self._step(Event.ABORT)):
            try:
                last_step()
            except Exception as exc:
                self.engine.faults.record("ending a SIP call after a failure", exc, self)
        self.host.forget(self)  # again: entering ENDED may have failed before it

    def _reject(self, status: int, cause: Cause, why: str = "", warn_code: int = 399) -> None:
        """Answer the INVITE with a final failure (UAS, before the answer): ENDED. ``why``
        goes to the caller in a Warning header with ``warn_code``."""
        target = self.next_phase(Event.REJECT)
        self._answer_invite(status, cause, why, warn_code)
        if target is not None:
            self._enter(target)

    def _answer_invite(self, status: int, cause: Cause, why: str = "",
                       warn_code: int = 399) -> None:
        assert self.invite is not None and self.invite_tx is not None
        headers = [("Reason", causes.reason_header(cause))] if status in (503, 403, 603,
                                                                          480, 486) else []
        if status == 503:
            headers.append(("Retry-After", str(self.host.settings.retry_after)))
        if why:  # RFC 3261 13.3.1.3: a 488 SHOULD say why the offer was not acceptable
            headers.append(warning(why, warn_code))
        self.host.respond(self.invite_tx, make_response(self.invite, status,
                                                        to_tag=self.local_tag,
                                                        headers=headers))

    def _clear(self, cause: Cause, raw: str, by: str) -> None:
        if self._cleared:
            return
        self._cleared = True
        self._emit(LegCleared(cause, raw, by))

    def _send_provisional(self, status: int, sdp: bytes | None = None) -> None:
        assert self.invite is not None and self.invite_tx is not None
        response = make_response(self.invite, status, to_tag=self.local_tag,
                                 headers=self._contact_headers(), body=sdp or b"",
                                 record_route=True)
        if sdp:
            response.headers.add("Content-Type", SDP)
        self._provisional = status
        self._step(Event.SEND_PROVISIONAL)
        self.host.respond(self.invite_tx, response)

    def _negotiate(self, codecs: list[str] | None) -> bool:
        """Answer the caller's offer with our codec choice; on failure reject with 488."""
        if self._answer_sdp is not None:
            return True
        assert self._offer is not None
        wanted = codec_names(codecs, self.host.settings.codecs)
        if self.stream is None:
            self._open_stream(self._media_host())
        assert self.stream is not None
        try:
            sdp, negotiated = answer_offer(self._offer, wanted, address=self.stream.local[0],
                                           port=self.stream.local[1],
                                           session_id=self._session())
        except (NoCommonCodec, SdpError) as exc:
            log.info("%r: %s; rejecting with 488", self, exc)
            self._reject(488, Cause.FAILED, str(exc), exc.warn_code)
            self._clear(Cause.FAILED, "488", "local")
            return False
        self.negotiated = negotiated
        self._answer_sdp = sdp.serialize()
        return True

    def _make_own_offer(self, codecs: list[str] | None) -> None:
        if self._answer_sdp is not None:
            return
        if self.stream is None:
            self._open_stream(self._media_host())
        assert self.stream is not None
        offer = make_offer(codec_names(codecs, self.host.settings.codecs),
                           address=self.stream.local[0], port=self.stream.local[1],
                           session_id=self._session())
        self._own_offer = offer
        self._answer_sdp = offer.serialize()

    def _take_answer_from(self, message: Request | Response, *, early: bool = False) -> bool:
        """Read the far end's SDP answer to our offer (UAC 183/200, or the ACK after an
        offerless INVITE); a bad answer ends the call (BYE or nothing)."""
        offer = self._offer if not self.incoming else self._own_offer
        if offer is None or not message.body:
            if early:
                return False
            log.info("%r: no SDP answer in %s; ending the call", self, _what(message))
            self._fail_media()
            return False
        try:
            negotiated = read_answer(offer, parse_sdp(message.body))
        except (SdpError, NoCommonCodec) as exc:
            log.info("%r: unusable SDP answer in %s: %s", self, _what(message), exc)
            if not early:
                self._fail_media()
            return False
        self.negotiated = negotiated
        if self.stream is not None:
            self._wire_stream()
            self.stream.open(negotiated)
        return True

    def _fail_media(self) -> None:
        """No usable answer in the ACK or the 2xx: the dialog is confirmed; end it."""
        self._send_bye(Cause.FAILED, "local", 488)

    def _media_host(self) -> str:
        """Our address for the media: the signalling address the INVITE came in on, or on
        a user agent that listens on both address families, ours in the family of the
        offer's audio (an IPv4 offer may come over IPv6 signalling)."""
        tx = self.invite_tx
        if tx is None:
            return self.host.local_address(None)[0]
        ours = tx.endpoint.address[0]
        offered = self._offered_host()
        if offered is not None and (":" in offered) != (":" in ours):
            other = self.host.local_address((offered, 0))[0]
            if (":" in other) == (":" in offered):
                return other
        return ours

    def _offered_host(self) -> str | None:
        """Where the offer's first audio stream is (None without an offer or one)."""
        offer = self._offer
        if offer is None:
            return None
        for media in offer.media:
            connection = offer.connection_for(media)
            if media.media == "audio" and media.port and connection is not None:
                return connection[1]
        return None

    def _open_stream(self, host: str) -> None:
        self.stream = self.host.open_stream(host, self)
        self._wire_stream()

    def _wire_stream(self) -> None:
        assert self.stream is not None
        self.stream.on_digit = self._heard_digit
        self.stream.on_audio = self._heard
        # where the far end's SIP comes from: its RTP may come from there too, behind NAT
        signalling = self.source or (self.client_tx.peer if self.client_tx else None)
        self.stream.signalling_host = signalling[0] if signalling else None

    def _heard(self, block: bytes) -> None:
        if self.stream is not None:
            self._received(block, self.stream.law)

    def _heard_digit(self, digit: str, ended: bool) -> None:
        self._emit(LegDigit(digit, ended))

    def _open_media(self) -> None:
        if self.stream is not None and self.negotiated is not None:
            self.stream.open(self.negotiated)

    def _close_media(self) -> None:
        if self.stream is not None:
            self.stream.close()

    # ------------------------------------------------------------------ our addresses
    def _contact_headers(self, peer: tuple[str, int] | None = None) -> list[tuple[str, str]]:
        address = self.host.local_address(peer or self.source)
        return [("Contact", f"<sip:uascall@{format_hostport(address)}>"),
                ("Allow", ALLOW_HEADER)]

    def _via(self, peer: Address) -> str:
        address = format_hostport(self.host.local_address(peer))
        return f"SIP/2.0/UDP {address};branch={new_branch()};rport"

    def _local_name_addr(self, call_from: str, peer: Address) -> NameAddr:
        """Our From: ``call_from`` as given (a URI or name-addr), or a user at our address."""
        text = call_from.strip()
        if text.startswith(("sip:", "sips:", "<", '"')):
            name_addr = parse_name_addr(text)
        else:
            host = format_hostport(self.host.local_address(None))
            name_addr = parse_name_addr(f"<sip:{text or 'uascall'}@{host}>")
        name_addr.params["tag"] = self.local_tag
        return name_addr

    def _dialog_peer(self, dialog: Dialog | None = None) -> tuple[str, int]:
        """Where requests in ``dialog`` (the call's by default) go."""
        dialog = dialog or self.dialog
        assert dialog is not None
        fallback = self.source or (self.client_tx.peer if self.client_tx else None)
        return dialog.next_hop(fallback)

    def _session(self) -> int:
        """This call's SDP session id: one for every SDP it sends (RFC 3264 8: an
        answer to a re-INVITE keeps it and raises the version)."""
        if self._session_id is None:
            self._session_id = next(_session_ids) % 2**62
        return self._session_id

    def _next_version(self) -> int:
        self._sdp_version += 1
        return self._sdp_version

    # ------------------------------------------------------------------ timers
    def _arm(self, which: _Timer, delay: float) -> None:
        old = self._timers.pop(which, None)
        if old is not None:
            old.cancel()
        self._timers[which] = self.engine.call_later(delay, self._fire, which)

    def _disarm(self, *which: _Timer) -> None:
        for timer in which:
            handle = self._timers.pop(timer, None)
            if handle is not None:
                handle.cancel()

    @_ends_the_call_on_failure
    def _fire(self, which: _Timer) -> None:
        self._timers.pop(which, None)
        if which is _Timer.RETRANSMIT_2XX:
            if self.phase is Phase.ANSWERING and self._ok:
                self.host.send(self._ok, self.source or ("", 0))
                self._ok_interval = min(2 * self._ok_interval, self.host.settings.timers.t2)
                self._arm(_Timer.RETRANSMIT_2XX, self._ok_interval)
        elif which is _Timer.NO_ACK:
            self._step(Event.CONFIRM_WITHOUT_ACK)
            log.info("%r: no ACK for our 200 within 64*T1; ending the call with BYE", self)
            self._disarm(_Timer.RETRANSMIT_2XX)
            self.host.setup_over(self, False)
            if self._release_after_ack is not None:  # the application hung up meanwhile
                cause, raw = self._release_after_ack
                self._send_bye(cause, "local", causes.sendable_status(raw) if raw else None)
            else:
                self._send_bye(Cause.FAILED, "network", None)
        elif which is _Timer.RTP_CHECK:
            self._check_rtp()
        elif which is _Timer.INFO_KEY_UP:
            self._info_key_up()
        elif which is _Timer.CANCEL_GIVE_UP:
            target = self.next_phase(Event.CANCEL_GAVE_UP)
            log.info("%r: no final response within 64*T1 of our CANCEL; the call is over",
                     self)
            cause = self._cancel_wanted[0] if self._cancel_wanted else Cause.NORMAL
            self._clear(cause, "408", "local")
            if self.client_tx is not None:
                self.host.abandon(self.client_tx)
            if target is not None:
                self._enter(target)

    def _start_rtp_check(self) -> None:
        timeout = self.host.settings.rtp_timeout
        if timeout and self.stream is not None:
            self._arm(_Timer.RTP_CHECK, timeout)

    def _check_rtp(self) -> None:
        stream = self.stream
        timeout = self.host.settings.rtp_timeout
        if self.phase is not Phase.CONFIRMED or stream is None or not timeout:
            return
        heard = stream.last_heard if stream.last_heard is not None else 0.0
        silent_for = self.engine.time() - heard
        held = self.negotiated is not None and self.negotiated.direction in ("sendonly",
                                                                            "inactive")
        if silent_for >= timeout and not held:
            log.info("%r: no RTP from the far end for %.0f s; ending the call (its BYE may "
                     "have been lost)", self, silent_for)
            self._send_bye(Cause.FAILED, "network", None)
            return
        self._arm(_Timer.RTP_CHECK, max(timeout - silent_for, 1.0) if not held else timeout)

    @_ends_the_call_on_failure
    def release_unwanted(self) -> None:
        """Nobody takes calls now (no application is listening): 480."""
        self._reject(480, Cause.NOANSWER)
        self._clear(Cause.NOANSWER, "480", "local")

    @_ends_the_call_on_failure
    def shutdown(self) -> None:
        """The backend is stopping: end the call the way its phase allows."""
        phase = self.phase
        if phase in (Phase.INCOMING, Phase.EARLY) and self.incoming:
            self._reject(503, Cause.OUTOFORDER)
            self._clear(Cause.OUTOFORDER, "503", "local")
        elif phase in (Phase.ANSWERING, Phase.CONFIRMED):
            if phase is Phase.ANSWERING:
                self._step(Event.CONFIRM_WITHOUT_ACK)  # no waiting for the ACK now
            self._send_bye(Cause.NORMAL, "local", None)
        elif phase in (Phase.OUTGOING, Phase.PROCEEDING):
            self._cancel_wanted = (Cause.NORMAL, None)
            self._send_cancel()
            self._clear(Cause.NORMAL, "CANCEL", "local")
        self._step(Event.SHUTDOWN)


def _remote_cause(reason: str | None) -> Cause:
    q850 = causes.q850_from_reason(reason)
    return causes.Q850_TO_CAUSE.get(q850, Cause.NORMAL) if q850 is not None else Cause.NORMAL


def _user_or_uri(name_addr: object) -> str:
    uri = getattr(name_addr, "uri", None)
    if uri is None:
        return ""
    user = getattr(uri, "user", None)
    return user if user else str(uri)


def _api_name(law: str) -> str:
    for name, (_rtpmap, _pt, codec_law) in CODECS.items():
        if codec_law == law:
            return name
    return "g711a"


def _what(message: Request | Response) -> str:
    if isinstance(message, Response):
        return f"{message.status} {message.reason}"
    return message.method


__all__ = ["ABSORBED", "TRANSITIONS", "CallHost", "Event", "Phase", "SipCall",
           "SipParseError", "codec_names"]
