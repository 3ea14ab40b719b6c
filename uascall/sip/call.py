"""One SIP call as a :class:`~uascall.backend.CallLeg`: the INVITE's transaction user.

Theory of operation
-------------------
A :class:`SipCall` is made by the :class:`~uascall.sip.useragent.UserAgent` for each new
INVITE it receives (after sending 100 Trying) or places. The channel drives it with
``alert``/``answer``/``release``; the user agent feeds it what comes from the wire
(responses to its requests, ACK, CANCEL, BYE, re-INVITEs) and the timers it asked for.
Everything runs on the engine thread.

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
"""

from __future__ import annotations

import enum
import functools
import logging
import random
from collections.abc import Callable
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
from uascall.engine import TimerHandle
from uascall.errors import Error
from uascall.sip import causes
from uascall.sip.dialog import Dialog
from uascall.sip.media import RtpStream
from uascall.sip.message import (
    REASONS,
    Headers,
    Request,
    Response,
    SipParseError,
    make_response,
    new_tag,
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
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteServerTransaction,
    Transaction,
)

if TYPE_CHECKING:
    from uascall.sip.useragent import UserAgent

log = logging.getLogger(__name__)

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

SDP = "application/sdp"


class Phase(enum.Enum):
    INCOMING = "incoming"
    EARLY = "early"
    ANSWERING = "answering"
    OUTGOING = "outgoing"
    PROCEEDING = "proceeding"
    CONFIRMED = "confirmed"
    ENDING = "ending"
    ENDED = "ended"


@enum.unique
class _Timer(enum.Enum):
    RETRANSMIT_2XX = "2xx retransmission"
    NO_ACK = "no ACK"
    RTP_CHECK = "RTP inactivity"
    CANCEL_GIVE_UP = "no final response after CANCEL"


class SipCall(CallLeg):
    """One call's signalling and media (engine thread only)."""

    def __init__(self, ua: UserAgent, *, incoming: bool, call_id: str) -> None:
        self.ua = ua
        self.engine = ua.engine
        self.incoming = incoming
        self.call_id = call_id
        self.phase = Phase.INCOMING if incoming else Phase.OUTGOING
        self.dialog: Dialog | None = None
        self.local_tag = new_tag()
        self.stream: RtpStream | None = None
        self.negotiated: Negotiated | None = None
        self._answer_sdp: bytes | None = None   # our SDP in 183/200 (UAS) or INVITE (UAC)
        self._offer: SessionDescription | None = None
        self._timers: dict[_Timer, TimerHandle] = {}
        self._cleared = False
        self._release_after_ack: tuple[Cause, str | None] | None = None
        # UAS
        self.invite: Request | None = None
        self.invite_tx: InviteServerTransaction | None = None
        self.source: tuple[str, int] | None = None
        self._provisional: int | None = None
        self._ok: bytes | None = None
        self._ok_interval = ua.timers.t1
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
    def incoming_call(cls, ua: UserAgent, invite: Request, tx: InviteServerTransaction,
                      offer: SessionDescription | None) -> SipCall:
        call = cls(ua, incoming=True, call_id=invite.call_id)
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

    # ------------------------------------------------------------------ CallLeg (UAS)
    def alert(self, early_media: bool, codecs: list[str] | None = None) -> bool:
        if self.phase not in (Phase.INCOMING, Phase.EARLY) or not self.incoming:
            return self.stream is not None
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
        if not self.incoming or self.phase not in (Phase.INCOMING, Phase.EARLY):
            raise Error(f"{self!r}: answer in phase {self.phase.name}; expected INCOMING or "
                        "EARLY")
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
        self.phase = Phase.ANSWERING
        self.ua.respond(self.invite_tx, response)
        # After respond(), which adds our Server header: a retransmission must be the same
        # bytes, or the caller takes it for a new response (SIPp aborts on it).
        self._ok = response.serialize()
        if self._offer is not None:
            self._open_media()
        timers = self.ua.timers
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
        if self.phase in (Phase.ENDING, Phase.ENDED):
            return cause
        if self.incoming and self.phase in (Phase.INCOMING, Phase.EARLY):
            self._reject(status or causes.CAUSE_TO_STATUS[cause], cause)
            self._clear(cause, str(status or causes.CAUSE_TO_STATUS[cause]), "local")
            return cause
        if self.phase is Phase.ANSWERING:
            self._release_after_ack = (cause, raw_cause)  # BYE once the ACK is in (RFC 3261 15)
            return cause
        if self.phase in (Phase.OUTGOING, Phase.PROCEEDING):
            self._cancel_wanted = (cause, raw_cause)
            if self.phase is Phase.PROCEEDING:
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
        if self.phase is not Phase.ANSWERING:
            return  # a retransmitted ACK
        self._disarm(_Timer.RETRANSMIT_2XX, _Timer.NO_ACK)
        if self._offer is None:
            if not self._take_answer_from(ack):
                return
        self.phase = Phase.CONFIRMED
        self.ua.answered(self)
        self._start_rtp_check()
        self._emit(LegAnswered())
        if self._release_after_ack is not None:
            cause, raw = self._release_after_ack
            self._send_bye(cause, "local", causes.sendable_status(raw) if raw else None)

    @_ends_the_call_on_failure
    def cancelled(self, cancel: Request) -> None:
        """The caller CANCELled the INVITE (the 200 for the CANCEL is already sent)."""
        if self.phase not in (Phase.INCOMING, Phase.EARLY):
            return  # answered already: the CANCEL has no effect (RFC 3261 9.2)
        self._reject(487, Cause.NORMAL)
        reason = cancel.headers.get("Reason")
        self._clear(_remote_cause(reason), reason or "CANCEL", "remote")

    @_ends_the_call_on_failure
    def bye_received(self, bye: Request, tx: NonInviteServerTransaction) -> None:
        self.ua.respond(tx, make_response(bye, 200))
        if self.phase is Phase.ENDED:
            return
        if self.phase is Phase.ANSWERING:
            self._disarm(_Timer.RETRANSMIT_2XX, _Timer.NO_ACK)
        if self.invite_tx is not None and self.phase in (Phase.INCOMING, Phase.EARLY):
            # A BYE before the answer (allowed once a To-tag was sent): the INVITE ends too.
            self._reject(487, Cause.NORMAL)
        reason = bye.headers.get("Reason")
        self._clear(_remote_cause(reason), reason or "BYE", "remote")
        if self.phase is not Phase.ENDING:  # crossing BYEs: ours is still to be answered
            self._finish()

    @_ends_the_call_on_failure
    def reinvite_received(self, invite: Request, tx: InviteServerTransaction) -> None:
        """A re-INVITE (hold, resume, a new address): answered with the same codec."""
        if self.phase is not Phase.CONFIRMED or self.stream is None:
            self.ua.respond(tx, make_response(invite, 491 if self.phase is Phase.ANSWERING
                                              else 488, to_tag=self.local_tag))
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
                    port=self.stream.local[1], session_id=self.ua.session_id(self),
                    session_version=self._next_version())
            except (SdpError, NoCommonCodec) as exc:
                self.ua.respond(tx, make_response(invite, 488, to_tag=self.local_tag,
                                                  headers=[("Warning", f'399 uascall "{exc}"')]))
                return
            self.negotiated = negotiated
            self.stream.open(negotiated)
            answer = sdp.serialize()
            self._answer_sdp = answer
        response = make_response(invite, 200, to_tag=self.local_tag,
                                 headers=self._contact_headers(), body=answer)
        response.headers.add("Content-Type", SDP)
        self.ua.respond(tx, response)

    @_ends_the_call_on_failure
    def response_received(self, tx: Transaction, response: Response) -> None:
        """A response to one of our requests (INVITE, CANCEL, BYE)."""
        method = response.cseq[1]
        if method == "INVITE":
            self._invite_response(response)
        elif method == "BYE" and response.status >= 200 and self.phase is Phase.ENDING:
            self._finish()

    @_ends_the_call_on_failure
    def transaction_timed_out(self, tx: Transaction) -> None:
        if isinstance(tx, InviteServerTransaction):
            return  # no ACK for our failure response: the call was already cleared
        if isinstance(tx, InviteClientTransaction):
            log.info("%r: no response to the INVITE within 64*T1", self)
            self._clear(Cause.TIMEOUT, "408", "network")
            self._close_media()
            self.phase = Phase.ENDED
            self.ua.forget(self)
            return
        if tx.method == "BYE":
            self._finish()

    # ------------------------------------------------------------------ UAC
    def place(self, call_to_uri: str, call_from: str, codecs: list[str], peer: tuple[str, int],
              endpoint_host: str) -> None:
        """Send the INVITE (the user agent has resolved ``peer``)."""
        self.call_to = call_to_uri
        self.call_from = call_from
        self._open_stream(endpoint_host)
        assert self.stream is not None
        offer = make_offer(codecs, address=self.stream.local[0], port=self.stream.local[1],
                           session_id=self.ua.session_id(self))
        self._offer = offer
        self._answer_sdp = offer.serialize()
        ua = self.ua
        local = ua.local_name_addr(call_from, self.local_tag)
        headers = Headers()
        headers.add("Via", ua.via(peer))
        headers.add("Max-Forwards", "70")
        headers.add("From", str(local))
        headers.add("To", f"<{call_to_uri}>")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{random.randrange(1, 2**16)} INVITE")
        for name, value in [*self._contact_headers(peer), *self.headers_to_send]:
            headers.add(name, value)
        headers.add("Content-Type", SDP)
        self.invite = Request("INVITE", call_to_uri, headers, self._answer_sdp)
        self.client_tx = ua.start_client(self.invite, peer, self)

    def _invite_response(self, response: Response) -> None:
        status = response.status
        if self.phase in (Phase.ENDED,) and not 200 <= status < 300:
            return
        if status < 200:
            if status == 100:
                return
            if self.phase is Phase.OUTGOING:
                self.phase = Phase.PROCEEDING
                if self._cancel_wanted is not None:
                    self._send_cancel()
                    return
            inband = bool(response.body) and self._take_answer_from(response, early=True)
            if not self._alerted_out or (inband and self.stream is not None):
                self._alerted_out = True
                self._emit(LegAlerting(inband=inband))
            return
        if status < 300:
            self._invite_accepted(response)
            return
        if self.phase in (Phase.OUTGOING, Phase.PROCEEDING):
            reason = response.headers.get("Reason")
            cause = causes.cause_of_status(status, reason)
            if self._cancel_wanted is not None and status == 487:
                cause = self._cancel_wanted[0]
                self._clear(cause, str(status), "local")
            else:
                self._clear(cause, str(status), "remote")
            self._close_media()
            self.phase = Phase.ENDED
            self.ua.forget(self)

    def _invite_accepted(self, response: Response) -> None:
        assert self.invite is not None
        if self._ack is not None:
            self.ua.send_to(self._ack, self._dialog_peer())  # a 2xx retransmission
            return
        self.dialog = Dialog.for_uac(self.invite, response)
        self.ua.register_dialog(self)
        ack = self.dialog.request("ACK", self.ua.via(self._dialog_peer()),
                                  cseq=self.invite.cseq[0])
        self._ack = ack.serialize()
        self.ua.send_to(self._ack, self._dialog_peer())
        if self.phase is Phase.ENDED or self._cancel_wanted is not None:
            cause, raw = self._cancel_wanted or (Cause.NORMAL, None)
            self.phase = Phase.CONFIRMED
            self._send_bye(cause, "local", causes.sendable_status(raw) if raw else None)
            return
        if self.negotiated is None and not self._take_answer_from(response):
            return
        self.phase = Phase.CONFIRMED
        self._start_rtp_check()
        self._emit(LegAnswered())

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
        self.ua.start_client(Request("CANCEL", invite.uri, headers), self.client_tx.peer,
                             None)
        # RFC 3261 9.1: no final response to the INVITE within 64*T1 of the CANCEL and the
        # call is over all the same.
        self._arm(_Timer.CANCEL_GIVE_UP, 64 * self.ua.timers.t1)

    # ------------------------------------------------------------------ common
    def _send_bye(self, cause: Cause, by: str, status: int | None) -> None:
        if self.dialog is None:
            self._clear(cause, str(status or "BYE"), by)
            self._finish()
            return
        self.phase = Phase.ENDING
        self._disarm(*list(self._timers))
        self._close_media()
        reason = causes.reason_header(cause)
        if status is not None:
            reason = f'SIP;cause={status};text="{REASONS.get(status, "")}"'
        peer = self._dialog_peer()
        bye = self.dialog.request("BYE", self.ua.via(peer), extra=(("Reason", reason),))
        self._clear(cause, str(status) if status else "BYE", by)
        self.ua.start_client(bye, peer, self)

    def _finish(self) -> None:
        self._close_media()
        self._disarm(*list(self._timers))
        self.phase = Phase.ENDED
        self.ua.forget(self)

    def _abort(self, step: str, exc: Exception) -> None:
        """A step failed unexpectedly: the call is over, whatever its phase."""
        log.error("%r: %s failed (%s: %s); the call is ended", self, step,
                  type(exc).__name__, exc, exc_info=exc)
        for last_step in (lambda: self._clear(Cause.FAILED, "500", "local"), self._finish):
            try:
                last_step()
            except Exception as exc:
                self.engine.faults.record("ending a SIP call after a failure", exc, self)
        self.phase = Phase.ENDED
        self.ua.forget(self)
    def _reject(self, status: int, cause: Cause) -> None:
        """Answer the INVITE with a final failure (UAS, before the answer)."""
        assert self.invite is not None and self.invite_tx is not None
        headers = [("Reason", causes.reason_header(cause))] if status in (503, 403, 603,
                                                                          480, 486) else []
        if status == 503:
            headers.append(("Retry-After", str(self.ua.settings.retry_after)))
        self.ua.respond(self.invite_tx, make_response(self.invite, status,
                                                      to_tag=self.local_tag, headers=headers))
        self._close_media()
        self.phase = Phase.ENDED
        self.ua.forget(self)

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
        self.phase = Phase.EARLY
        self.ua.respond(self.invite_tx, response)

    def _negotiate(self, codecs: list[str] | None) -> bool:
        """Answer the caller's offer with our codec choice; on failure reject with 488."""
        if self._answer_sdp is not None:
            return True
        assert self._offer is not None
        wanted = self.ua.codec_preference(codecs)
        if self.stream is None:
            self._open_stream(self.ua.media_host(self))
        assert self.stream is not None
        try:
            sdp, negotiated = answer_offer(self._offer, wanted, address=self.stream.local[0],
                                           port=self.stream.local[1],
                                           session_id=self.ua.session_id(self))
        except (NoCommonCodec, SdpError) as exc:
            log.info("%r: %s; rejecting with 488", self, exc)
            self._reject(488, Cause.FAILED)
            self._clear(Cause.FAILED, "488", "local")
            return False
        self.negotiated = negotiated
        self._answer_sdp = sdp.serialize()
        return True

    def _make_own_offer(self, codecs: list[str] | None) -> None:
        if self._answer_sdp is not None:
            return
        if self.stream is None:
            self._open_stream(self.ua.media_host(self))
        assert self.stream is not None
        offer = make_offer(self.ua.codec_preference(codecs), address=self.stream.local[0],
                           port=self.stream.local[1], session_id=self.ua.session_id(self))
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
        self.phase = Phase.CONFIRMED
        self._send_bye(Cause.FAILED, "local", 488)

    def _open_stream(self, host: str) -> None:
        self.stream = self.ua.open_stream(host, self)
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

    def _contact_headers(self, peer: tuple[str, int] | None = None) -> list[tuple[str, str]]:
        return [("Contact", self.ua.contact(peer or self.source)),
                ("Allow", self.ua.allow_header)]

    def _dialog_peer(self) -> tuple[str, int]:
        assert self.dialog is not None
        fallback = self.source or (self.client_tx.peer if self.client_tx else None)
        return self.ua.route_address(self.dialog, fallback)

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
        if which is _Timer.RETRANSMIT_2XX and self.phase is Phase.ANSWERING and self._ok:
            self.ua.send_to(self._ok, self.source or ("", 0))
            self._ok_interval = min(2 * self._ok_interval, self.ua.timers.t2)
            self._arm(_Timer.RETRANSMIT_2XX, self._ok_interval)
        elif which is _Timer.NO_ACK and self.phase is Phase.ANSWERING:
            log.info("%r: no ACK for our 200 within 64*T1; ending the call with BYE", self)
            self._disarm(_Timer.RETRANSMIT_2XX)
            self.phase = Phase.CONFIRMED
            self.ua.never_acked(self)
            if self._release_after_ack is not None:  # the application hung up meanwhile
                cause, raw = self._release_after_ack
                self._send_bye(cause, "local", causes.sendable_status(raw) if raw else None)
            else:
                self._send_bye(Cause.FAILED, "network", None)
        elif which is _Timer.RTP_CHECK:
            self._check_rtp()
        elif which is _Timer.CANCEL_GIVE_UP and self.phase is Phase.PROCEEDING:
            log.info("%r: no final response within 64*T1 of our CANCEL; the call is over",
                     self)
            cause = self._cancel_wanted[0] if self._cancel_wanted else Cause.NORMAL
            self._clear(cause, "408", "local")
            if self.client_tx is not None:
                self.ua.abandon(self.client_tx)
            self._finish()

    def _start_rtp_check(self) -> None:
        timeout = self.ua.settings.rtp_timeout
        if timeout and self.stream is not None:
            self._arm(_Timer.RTP_CHECK, timeout)

    def _check_rtp(self) -> None:
        stream = self.stream
        timeout = self.ua.settings.rtp_timeout
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
        if self.phase in (Phase.INCOMING, Phase.EARLY) and self.incoming:
            self._reject(503, Cause.OUTOFORDER)
            self._clear(Cause.OUTOFORDER, "503", "local")
        elif self.phase in (Phase.ANSWERING, Phase.CONFIRMED):
            self.phase = Phase.CONFIRMED
            self._send_bye(Cause.NORMAL, "local", None)
        elif self.phase in (Phase.OUTGOING, Phase.PROCEEDING):
            self._cancel_wanted = (Cause.NORMAL, None)
            self._send_cancel()
            self._clear(Cause.NORMAL, "CANCEL", "local")
        self._finish()


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


__all__ = ["Phase", "SipCall", "SipParseError"]
