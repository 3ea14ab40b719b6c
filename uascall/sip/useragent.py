"""The SIP user agent: transactions, calls and the requests no call owns, on the engine.

Theory of operation
-------------------
Datagrams from :class:`~uascall.sip.transport.UdpEndpoint` are parsed
(:func:`~uascall.sip.message.parse_message`) and routed:

- a request that matches a server transaction (same branch, sent-by and method; ACK
  matched to its INVITE) is a retransmission, and the transaction answers it;
- an ACK for a 2xx goes to its call through the dialog (Call-ID and To-tag);
- CANCEL finds the INVITE's transaction: 200 for the CANCEL, then the call answers the
  INVITE 487 (481 when there is no such INVITE);
- a new INVITE passes the checks RFC 3261 8.2 puts in order (method 405/501, URI scheme
  416, merged request 482, Require 420, Content-Type 415, Accept 406, then 400 unless its
  Contact is exactly one SIP or SIPS URI, RFC 3261 8.1.1.8, or absent from an RFC 2543
  INVITE), overload control
  (503 + Retry-After, below) and the SDP offer check (400 for bad SDP, 488 when no codec
  we have was offered); it then gets 100 Trying at once and becomes a
  :class:`~uascall.sip.call.SipCall` offered to the backend's listener. A merged request
  is one with no To-tag whose Call-ID, From tag and CSeq are those of a transaction we
  hold, under another branch (a request a proxy forked, come twice): 482 (RFC 3261
  8.2.2.2), never a second call;
- BYE, re-INVITE and INFO (keys: :mod:`uascall.sip.info`) go to their call through the
  dialog (481 when there is none);
  OPTIONS is answered 200 with what we allow and accept, in or out of a dialog (503 +
  Retry-After outside a dialog while draining, below);
- a response goes to its client transaction (top Via branch and CSeq method).

A request answered at once with a final response, nothing set up for it (the refusals
of the 8.2 checks and of overload control, 400 for bad SDP, OPTIONS and 481 outside a
dialog), is answered **statelessly** (RFC 3261 8.2.7): no server transaction, so nothing
is retransmitted; a retransmission of the request is answered again,
with the same To-tag (a keyed hash of the request's transaction identifiers), and the ACK
for a refused INVITE matches nothing and is dropped. Under a flood of INVITEs this is the
difference between forgetting each one at once and keeping each for 64*T1 while its 503
is resent ten times (80,000 INVITEs drew 564,254 retransmitted 503s and 385 MB). What
is kept of a 503 is the INVITE's transaction key for 64*T1 (:class:`RefusedInvites`, a
bounded table), so that a retransmission that comes once the load has passed is refused
again rather than taken as a new call its sender has already ended.

Draining
--------
:meth:`UserAgent.drain` (a node leaving a pool behind a proxy, e.g. on SIGTERM) stops
taking calls while the calls up go on: from then on every new INVITE and every OPTIONS
outside a dialog is answered 503 + Retry-After, statelessly. A dispatcher that probes its
nodes with OPTIONS (Kamailio's, deploy/kamailio/) then takes the node out of its set and
sends it no new calls; requests within the dialogs up (ACK, BYE, re-INVITE, OPTIONS) are
served as before. :meth:`UserAgent.resume` takes calls again.

Overload control
----------------
A new INVITE is refused with 503 + Retry-After (one warning a second at most, with the
count) when one of these holds, checked in this order:

- ``max_setups`` calls are being set up (incoming, not yet ACKed or ended);
- under pressure (half of ``max_setups`` in use, or the engine more than half
  ``max_lag`` late), its source host has completed no call (none of its calls reached
  the ACK of our 2xx) and either holds ``max_source_setups`` calls being set up already,
  or such sources hold nine tenths of ``max_setups`` together (the last tenth is kept
  for the others);
- the engine runs late by more than ``max_lag`` (its timers, or datagrams waiting in the
  kernel); twice that for a source with completed calls (still below T1 by default).

Nothing else refuses a call: not the CPU the process uses, nor how many calls one
caller has ringing while the engine keeps up. So a flood from one source (never ACKed:
it completes nothing) holds half of ``max_setups`` at most (from there the shares apply,
and it holds more than its ``max_source_setups``) and gets stateless 503s for the rest,
while a source that completed calls before is still served, and requests within a
dialog (ACK, BYE, re-INVITE) are never refused for load. The hosts with completed calls
are remembered in a table of at most :data:`KNOWN_SOURCES` (the least recent forgotten
first); a source whose 200 goes unACKed for 64*T1 is forgotten there. Only a real round
trip (the ACK names our To-tag) earns a place, so a flood from forged addresses cannot
fill the table or displace it; the per-source counts exist only for hosts with calls
being set up, so they are bounded by ``max_setups``.

A message that does not parse never raises out of here: a request whose Via, Call-ID,
CSeq, From and To could still be read gets a stateless 400 (or 505), anything else is
dropped and logged at debug level. Responses that do not parse are dropped silently, as
RFC 4475 asks.

Transactions are the sans-I/O machines of :mod:`uascall.sip.transaction`; this class
carries out their actions (send, arm and cancel timers on the engine, hand over to the
call, forget).

Calls
-----
A :class:`~uascall.sip.call.SipCall` reaches the user agent only through
:attr:`UserAgent.call_host` (a :class:`~uascall.sip.call.CallHost` of bound methods, one
for all calls): send a response in a transaction, start or abandon a client transaction,
send bytes outside one, our address towards a peer, an RTP stream, its dialog entry, the
end of its set-up (the overload count) and its end. What the user agent reads of a call
is its identity (Call-ID, tags, dialog, INVITE transaction, source) and
``counted_setup``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import secrets
import socket
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from uascall import __version__
from uascall.engine import Engine, TimerHandle
from uascall.errors import ArgumentError
from uascall.sip.call import ALLOW_HEADER, ALLOWED, CallHost, SipCall, codec_names
from uascall.sip.dialog import DialogError, contact_target, resolve
from uascall.sip.info import DTMF_BODIES
from uascall.sip.media import RtpPorts, RtpStream, RtpTicker
from uascall.sip.message import (
    Headers,
    Request,
    Response,
    SipParseError,
    Via,
    make_response,
    media_type,
    parse_message,
    warning,
)
from uascall.sip.sdp import CODECS, SdpError, parse_sdp
from uascall.sip.spare import SpareSockets
from uascall.sip.transaction import (
    DEFAULT_TIMERS,
    Action,
    CancelTimer,
    ClientTransaction,
    ExpiryQueue,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    RefusedInvites,
    Send,
    ServerTransaction,
    SetTimer,
    Terminated,
    TimedOut,
    Timers,
    ToUser,
    Transaction,
    client_key,
    server_key,
)
from uascall.sip.transport import (
    LOOPBACK,
    SIGNALLING_RCVBUF,
    Address,
    UdpEndpoint,
    format_hostport,
    parse_networks,
)

log = logging.getLogger(__name__)

#: methods we know of but do not serve (405 rather than 501)
KNOWN = ("REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH", "REFER", "MESSAGE", "UPDATE")
SUPPORTED_EXTENSIONS: tuple[str, ...] = ()
ACCEPTABLE_BODIES = ("application/sdp",)
#: how often the engine's lateness is measured (seconds)
LAG_PROBE = 0.1
#: default overload threshold on that lateness: below T1 (500 ms), so that we refuse new
#: calls before callers start retransmitting INVITEs, which only adds to the load
MAX_LAG = 0.2
#: at most one overload warning per this many seconds; it counts the INVITEs refused since
OVERLOAD_LOG_INTERVAL = 1.0
#: source hosts remembered as having completed calls (overload control prefers them)
KNOWN_SOURCES = 4096
#: ``max_source_setups`` when not given: this fraction of ``max_setups``
SOURCE_SHARE = 20
#: INVITEs refused 503 remembered for 64*T1, to refuse their retransmissions again (about
#: 1.2 MB when full). A flood's refusals beyond it are remembered for less: 1 s at 8,000
#: INVITEs a second, which still covers the first retransmission (T1, 0.5 s); later
#: ones come while the flood lasts, and the load refuses them anyway.
REFUSED_REMEMBERED = 8192


@dataclass
class SipSettings:
    """How the SIP backend listens and behaves (see :class:`~uascall.sip.backend.SipBackend`)."""

    listen: list[Address] = field(default_factory=lambda: [("127.0.0.1", 5060)])
    allow: tuple[str, ...] = LOOPBACK
    codecs: tuple[str, ...] = ("g711a", "g711u")
    rtp_ports: tuple[int, int] = (16384, 32767)
    rtp_timeout: float = 60.0
    symmetric_rtp: bool = False
    max_message_size: int = 16384
    max_setups: int = 2000
    #: calls being set up one source host without completed calls may hold (None:
    #: max_setups // SOURCE_SHARE, at least 1)
    max_source_setups: int | None = None
    max_lag: float = MAX_LAG
    retry_after: int = 5
    user_agent: str = f"uascall/{__version__}"
    rcvbuf: int = SIGNALLING_RCVBUF
    timers: Timers = DEFAULT_TIMERS


@dataclass
class UaStats:
    requests: int = 0
    responses: int = 0
    malformed: int = 0
    stateless_errors: int = 0
    overloaded: int = 0
    #: requests answered with no transaction kept (RFC 3261 8.2.7)
    stateless: int = 0
    #: retransmitted INVITEs refused 503 again because the first was (RefusedInvites)
    refused_again: int = 0
    calls: int = 0


class UserAgent:
    """Everything SIP on one engine (engine thread only, apart from construction)."""

    def __init__(self, engine: Engine, settings: SipSettings,
                 on_call: Callable[[SipCall], bool]) -> None:
        self.engine = engine
        self.settings = settings
        self.on_call = on_call
        self.timers = settings.timers
        self.allow = parse_networks(settings.allow)
        for name in settings.codecs:
            if name not in CODECS:
                raise ArgumentError(f"codec {name!r}; expected one of {', '.join(CODECS)}")
        self.endpoints: list[UdpEndpoint] = []
        try:
            for index, address in enumerate(settings.listen):
                self.endpoints.append(UdpEndpoint(
                    engine, address, self._make_receiver(index), allow=self.allow,
                    max_size=settings.max_message_size, rcvbuf=settings.rcvbuf,
                    measure_delay=True, name=f"sip {format_hostport(address)}"))
                _refuse_wildcard(address, self.endpoints[-1].address)
        except BaseException:  # one address in use: the sockets opened so far go too
            for endpoint in self.endpoints:
                endpoint.close()
            raise
        self.ticker = RtpTicker(engine)
        self.rtp_ports = RtpPorts(*settings.rtp_ports, spare=SpareSockets())
        self.server_tx: dict[tuple[str, str, str], ServerTransaction] = {}
        self.client_tx: dict[tuple[str, str], ClientTransaction] = {}
        #: (Call-ID, From tag, CSeq number, method) -> the server transaction of a request
        #: without a To-tag, to tell merged requests (RFC 3261 8.2.2.2)
        self.merge_keys: dict[tuple[str, str, int, str], ServerTransaction] = {}
        self.dialogs: dict[tuple[str, str], SipCall] = {}
        self.calls: set[SipCall] = set()
        self.setups = 0  # incoming calls not yet answered or cleared
        #: host -> its calls among ``setups`` (hosts with none are not kept)
        self.setups_by_source: dict[str, int] = {}
        #: hosts that completed calls, the most recent last (at most KNOWN_SOURCES)
        self.known_sources: OrderedDict[str, None] = OrderedDict()
        self.max_source_setups = (settings.max_source_setups
                                  if settings.max_source_setups is not None
                                  else max(1, settings.max_setups // SOURCE_SHARE))
        self._unproven_setups = settings.max_setups - settings.max_setups // 10
        self._tag_key = secrets.token_bytes(16)  # for the To-tags of stateless responses
        self.stats = UaStats()
        self.allow_header = ALLOW_HEADER
        self._lag = 0.0
        self._lag_timer: TimerHandle | None = None
        self._lag_due = 0.0
        self._refused_unlogged = 0  # INVITEs answered 503 since the last overload warning
        self._overload_logged = -OVERLOAD_LOG_INTERVAL  # engine time of that warning
        self._overload_reason = ""
        #: not taking new calls (see the module docstring's "Draining")
        self.draining = False
        #: an OPTIONS came from outside a dialog: a proxy in front probes us
        self.probed = False
        #: one was answered 503 since drain(): the proxy knows we take no new calls
        self.drain_told = False
        # one bound method for every transaction timer, not one object more per timer
        self._fire_timer = self._fire
        # the lingering transactions' last timers (64*T1, tens of thousands at once): one
        # queue and one engine timer, not a timer each for the cyclic GC to scan
        self._lingering = ExpiryQueue(64 * self.timers.t1)
        self._lingering_timer: TimerHandle | None = None
        self._refused = RefusedInvites(64 * self.timers.t1, REFUSED_REMEMBERED)
        #: all a call may ask of us (see "Calls" in the module docstring)
        self.call_host = CallHost(
            engine=engine, settings=settings, respond=self.respond,
            start_client=self.start_client, abandon=self.abandon, send=self.send_to,
            local_address=self.local_address, open_stream=self.open_stream,
            register_dialog=self.register_dialog, setup_over=self.setup_over,
            forget=self.forget)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        for endpoint in self.endpoints:
            endpoint.start()
            log.info("SIP listening on udp %s", format_hostport(endpoint.address))
        self._probe_lag()

    def stop(self) -> None:
        for call in list(self.calls):
            call.shutdown()
        for tx in list(self.server_tx.values()) + list(self.client_tx.values()):
            self._cancel_timers(tx)
        self.server_tx.clear()
        self.client_tx.clear()
        self.merge_keys.clear()
        if self._lag_timer is not None:
            self._lag_timer.cancel()
        if self._lingering_timer is not None:
            self._lingering_timer.cancel()
            self._lingering_timer = None
        self._lingering.clear()
        self._refused.clear()
        if self._refused_unlogged:  # not to lose the last count
            self._log_overload(self.engine.time(), force=True)
        for endpoint in self.endpoints:
            endpoint.close()
        if self.rtp_ports.spare is not None:
            self.rtp_ports.spare.close()

    def drain(self) -> None:
        """Stop taking calls (503 to new INVITEs and to OPTIONS outside a dialog), the
        calls up going on (engine thread)."""
        if not self.draining:
            log.info("draining: new calls and OPTIONS are answered 503 from now on; %d "
                     "calls up go on", len(self.calls))
            self.drain_told = False
        self.draining = True

    @property
    def drain_announced(self) -> bool:
        """After :meth:`drain`: whether a proxy that probes us has had a 503 since (True
        when none has ever probed)."""
        return not self.probed or self.drain_told

    def resume(self) -> None:
        """Take calls again after :meth:`drain` (engine thread)."""
        if self.draining:
            log.info("taking calls again")
        self.draining = False

    @property
    def addresses(self) -> list[Address]:
        return [endpoint.address for endpoint in self.endpoints]

    # ------------------------------------------------------------------ overload
    def _probe_lag(self) -> None:
        """Our measure of overload: how late the engine runs a timer, or how long the
        oldest SIP datagram had queued in the kernel before it was read (whichever is
        more), since the last probe; it decays by a fifth a probe."""
        now = self.engine.time()
        queued = 0.0
        for endpoint in self.endpoints:
            queued = max(queued, endpoint.queue_delay)
            endpoint.queue_delay = 0.0
        if self._lag_timer is not None:
            lateness = max(0.0, now - self._lag_due, queued)
            self._lag = max(lateness, self._lag * 0.8)
        if self._refused_unlogged:
            self._log_overload(now)  # the refusals after the last warning, once it is due
        self._lag_due = now + LAG_PROBE
        self._lag_timer = self.engine.call_at(self._lag_due, self._probe_lag)

    def overloaded(self, host: str | None = None) -> str | None:
        """Why a new INVITE from ``host`` would be refused now (see the module docstring),
        or None; without a host, for a source with no completed call."""
        settings = self.settings
        if self.setups >= settings.max_setups:
            return f"{self.setups} calls being set up (limit {settings.max_setups})"
        known = host is not None and host in self.known_sources
        if not known and self._under_pressure():
            held = self.setups_by_source.get(host, 0) if host is not None else 0
            if held >= self.max_source_setups:
                return (f"{host} holds {held} calls being set up (limit "
                        f"{self.max_source_setups} for a source with no completed call)")
            if self.setups >= self._unproven_setups:
                return (f"{self.setups} calls being set up (limit {self._unproven_setups} "
                        "for sources with no completed call)")
        max_lag = 2 * settings.max_lag if known else settings.max_lag
        if self._lag > max_lag:
            whose = " for a source with completed calls" if known else ""
            return (f"the engine runs {self._lag * 1000:.0f} ms late (limit "
                    f"{max_lag * 1000:.0f} ms{whose})")
        return None

    def _under_pressure(self) -> bool:
        """Whether the shares of sources with no completed call apply: half of
        ``max_setups`` is in use, or the engine runs more than half ``max_lag`` late.
        Before that a new source may set up as many calls as it likes (a caller whose
        first calls ring for seconds has completed none yet: SIPp placing calls to an
        application with early media was refused 503 at a fifth of a core)."""
        settings = self.settings
        return (2 * self.setups >= settings.max_setups
                or 2 * self._lag > settings.max_lag)

    def _refused_overloaded(self, why: str) -> None:
        self.stats.overloaded += 1
        self._refused_unlogged += 1
        self._overload_reason = why
        self._log_overload(self.engine.time())

    def _log_overload(self, now: float, *, force: bool = False) -> None:
        # Overload comes as a flood of INVITEs: a line for each would add disk I/O and
        # formatting to an engine that is already late, and bury everything else.
        if now - self._overload_logged < OVERLOAD_LOG_INTERVAL and not force:
            return
        log.warning("overload: %s; answering a new INVITE 503 (%d refused since the last "
                    "warning)", self._overload_reason, self._refused_unlogged)
        self._overload_logged = now
        self._refused_unlogged = 0

    # ------------------------------------------------------------------ receiving
    def _make_receiver(self, index: int) -> Callable[[bytes, Address], None]:
        def receive(data: bytes, source: Address) -> None:
            self._datagram(data, source, self.endpoints[index])
        return receive

    def _datagram(self, data: bytes, source: Address, endpoint: UdpEndpoint) -> None:
        if not data.strip(b"\r\n"):
            return  # a keep-alive (RFC 5626 CRLF ping)
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self.stats.malformed += 1
            self._malformed(exc, source, endpoint)
            return
        if isinstance(message, Request):
            self.stats.requests += 1
            try:
                self._request(message, source, endpoint)
            except SipParseError as exc:  # a header the checks let through, read later
                self.stats.malformed += 1
                self._malformed(exc, source, endpoint, message.headers)
        else:
            self.stats.responses += 1
            try:
                self._response(message)
            except SipParseError as exc:
                log.debug("dropping a response from %s: %s", source, exc)

    def _malformed(self, exc: SipParseError, source: Address, endpoint: UdpEndpoint,
                   headers: Headers | None = None) -> None:
        headers = headers or exc.headers
        if not exc.is_request or headers is None:
            log.debug("dropping a malformed message from %s: %s", source, exc.reason)
            return
        # Via and CSeq are what the sender needs to match our answer to its request; the
        # others are copied when present (RFC 4475 3.3.1: answer 400 even without them).
        if headers.get("Via") is None or headers.get("CSeq") is None:
            log.info("dropping a malformed request from %s (too broken to answer): %s",
                     format_hostport(source), exc.reason)
            return
        reply = Headers()
        for via in headers.get_all("Via"):
            reply.add("Via", via)
        for name in ("From", "To", "Call-ID", "CSeq"):
            value = headers.get(name)
            if name == "To" and value is not None and not _has_tag(value):
                value += f";tag={self._malformed_tag(headers)}"  # RFC 3261 8.2.6.2
            if value is not None:
                reply.add(name, value)
        reply.add(*warning(exc.reason))
        reason = "Version Not Supported" if exc.status == 505 else "Bad Request"
        response = Response(exc.status, reason, reply)
        log.info("answering a malformed request from %s with %d: %s",
                 format_hostport(source), exc.status, exc.reason)
        self.stats.stateless_errors += 1
        endpoint.send(response.serialize(), source)

    def _request(self, request: Request, source: Address, endpoint: UdpEndpoint) -> None:
        method = request.method
        key = server_key(request)
        tx = self.server_tx.get(key)
        if method == "ACK":
            if tx is not None:
                self._run(tx, tx.receive(request))  # the ACK for our failure response
                return
            call = self.dialogs.get((request.call_id, request.to.tag or ""))
            if call is not None:
                call.ack_received(request)
            return
        if tx is not None:
            self._run(tx, tx.receive(request))
            return
        self._note_source(request, source)
        refusal = self._refusal(request)
        if refusal is not None:
            self._answer_statelessly(request, refusal, source, endpoint)
            return
        if method == "CANCEL":
            tx = self._server_tx(request, source, endpoint, key)
            self._cancel(request, tx, key)
            return
        to_tag = request.to.tag
        if to_tag:
            self._in_dialog(request, source, endpoint, key, to_tag)
            return
        if method == "INVITE":
            self._new_call(request, source, endpoint, key)
        elif method == "OPTIONS":
            self.probed = True
            if self.draining:
                answer = self._unavailable(request)
                self.drain_told = True
            else:
                answer = self._options_answer(request)
            self._answer_statelessly(request, answer, source, endpoint)
        else:  # BYE or INFO without a dialog
            self._answer_statelessly(request, self._reply(request, 481), source, endpoint)

    def _server_tx(self, request: Request, source: Address, endpoint: UdpEndpoint,
                   key: tuple[str, str, str]) -> ServerTransaction:
        tx: ServerTransaction
        if request.method == "INVITE":
            tx = InviteServerTransaction(request, self.timers)
        else:
            tx = NonInviteServerTransaction(request, self.timers)
        tx.peer, tx.endpoint, tx.key = source, endpoint, key
        self.server_tx[key] = tx
        if request.method != "CANCEL" and not request.to.tag:
            tx.merge_key = _merge_key(request)
            self.merge_keys[tx.merge_key] = tx
        return tx

    def _answer_statelessly(self, request: Request, response: Response, source: Address,
                            endpoint: UdpEndpoint) -> None:
        """RFC 3261 8.2.7: send ``response`` and keep nothing; a retransmission of
        ``request`` comes through here again and gets the same answer."""
        if self.settings.user_agent and "Server" not in response.headers:
            response.headers.add("Server", self.settings.user_agent)
        self.stats.stateless += 1
        endpoint.send(response.serialize(), source)

    def _reply(self, request: Request, status: int,
               headers: list[tuple[str, str]] | None = None) -> Response:
        """A final response sent statelessly, with the To-tag that request always gets."""
        return make_response(request, status, to_tag=self._stateless_tag(request),
                             headers=headers or ())

    def _malformed_tag(self, headers: Headers) -> str:
        # as _stateless_tag, from the raw headers: the request did not parse
        return self._keyed_tag(headers.get(name) or ""
                               for name in ("Via", "Call-ID", "From", "CSeq"))

    def _stateless_tag(self, request: Request) -> str:
        via = request.top_via
        return self._keyed_tag((via.branch or "", via.host, str(via.port), request.call_id,
                                request.from_.tag or "", str(request.cseq[0]),
                                request.method))

    def _keyed_tag(self, parts: Iterable[str]) -> str:
        # The same tag for a request and its retransmissions (RFC 3261 8.2.7), which no
        # one can predict for a request of their choosing (keyed with a secret).
        text = "\0".join(parts)
        return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8,
                               key=self._tag_key).hexdigest()

    def _refusal(self, request: Request) -> Response | None:
        """The checks of RFC 3261 8.2.1-8.2.3, in that order; None when the request passes."""
        method = request.method
        if method not in ALLOWED:
            status = 405 if method in KNOWN else 501
            return self._reply(request, status, [("Allow", self.allow_header)])
        try:
            scheme = request.parsed_uri.scheme
        except SipParseError:
            return self._reply(request, 400, [warning("bad Request-URI")])
        if scheme == "sips":
            # RFC 3261 26.2.2: SIPS asks for TLS on every hop, and we listen on UDP only;
            # taking it would answer a secure request insecurely (and owe a sips Contact)
            return self._reply(request, 416, [warning("sips: needs TLS, which this user "
                                                      "agent does not offer; use sip:")])
        if scheme != "sip":
            return self._reply(request, 416)
        if method != "CANCEL" and not request.to.tag:
            merged = self.merge_keys.get(_merge_key(request))
            if merged is not None:
                # RFC 3261 8.2.2.2: the same request come again by another path (a proxy
                # forked it and the branches met here; its retransmissions match the
                # transaction and never get here). Taken, it would be a second call.
                return self._reply(request, 482, [warning(
                    "merged request: the same Call-ID, From tag and CSeq as a request "
                    "being served, under another Via branch; expected one copy only")])
        if method not in ("ACK", "CANCEL"):
            unsupported = [tag for tag in request.headers.get_all("Require")
                           if tag.strip() and tag.strip() not in SUPPORTED_EXTENSIONS]
            if unsupported:
                return self._reply(request, 420, [("Unsupported", ", ".join(
                    tag.strip() for tag in unsupported))])
        if method == "INVITE":
            content_type = media_type(request.headers.get("Content-Type"))
            encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
            if request.body and (content_type not in ACCEPTABLE_BODIES
                                 or encoding != "identity"):
                return self._reply(request, 415, [
                    ("Accept", ", ".join(ACCEPTABLE_BODIES)), ("Accept-Encoding", "identity")])
            accept = request.headers.get_all("Accept")
            if accept and not any(_accepts_sdp(value) for value in accept):
                return self._reply(request, 406, [
                    warning("only application/sdp bodies are supported")])
            if not request.to.tag:  # (a re-INVITE's: its dialog checks it, keeping it)
                return self._contact_refusal(request)
        return None

    def _contact_refusal(self, invite: Request) -> Response | None:
        """400 for a new INVITE whose Contact is not exactly one SIP or SIPS URI (RFC 3261
        8.1.1.8): it is where our requests in the dialog (BYE) go, and the From URI, a
        tel: URI or the first of two would be a guess. An RFC 2543 INVITE (no magic cookie
        in its branch) may lack one, its From URI the target then (RFC 4475 3.4.1)."""
        try:
            target = contact_target(invite)
        except DialogError as exc:
            return self._reply(invite, 400, [warning(str(exc))])
        if target is None and (invite.top_via.branch or "").startswith("z9hG4bK"):
            return self._reply(invite, 400, [warning(
                "INVITE has no Contact; expected exactly one SIP or SIPS URI, where "
                "requests in this dialog go (RFC 3261 8.1.1.8)")])
        return None

    def _note_source(self, request: Request, source: Address) -> None:
        """RFC 3261 18.2.1 and RFC 3581: record where the request really came from in its
        top Via, so responses copy it (we answer to the source address and port)."""
        via = request.top_via
        host, port = source
        wants_rport = "rport" in via.params
        if via.host.strip("[]") == host and not wants_rport:
            return
        # A new Via: the parsed one is the request's cached view, shared by its readers.
        params = {**via.params, "received": host}
        if wants_rport:
            params["rport"] = str(port)
        via = Via(via.transport, via.host, via.port, params)
        vias = request.headers.get_all("Via")
        request.headers.remove("Via")
        request.headers.add("Via", str(via))
        for value in vias[1:]:
            request.headers.add("Via", value)

    def _unavailable(self, request: Request) -> Response:
        """503 (RFC 3261 21.5.4), with when to try again, and why while draining."""
        retry = [("Retry-After", str(self.settings.retry_after))]
        if self.draining:
            retry.append(warning("draining: not taking new calls"))
        return self._reply(request, 503, retry)

    def _options_answer(self, request: Request) -> Response:
        return self._reply(request, 200, [
            # the bodies of every request we take: an INVITE's SDP, an INFO's key
            ("Allow", self.allow_header),
            ("Accept", ", ".join((*ACCEPTABLE_BODIES, *DTMF_BODIES))),
            ("Accept-Encoding", "identity"), ("Accept-Language", "en"),
            ("Supported", ", ".join(SUPPORTED_EXTENSIONS)),
            ("User-Agent", self.settings.user_agent)])

    def _cancel(self, cancel: Request, tx: ServerTransaction, key: tuple[str, str, str]
                ) -> None:
        invite_tx = self.server_tx.get((key[0], key[1], "INVITE"))
        call = invite_tx.user if invite_tx is not None else None
        if isinstance(call, _EndedCall):  # too late to have an effect (RFC 3261 9.2)
            self.respond(tx, make_response(cancel, 200, to_tag=call.local_tag))
            return
        if not isinstance(call, SipCall):
            self.respond(tx, make_response(cancel, 481))
            return
        # The same To-tag as the 487 that follows (RFC 3261 9.2).
        self.respond(tx, make_response(cancel, 200, to_tag=call.local_tag))
        call.cancelled(cancel)

    def _in_dialog(self, request: Request, source: Address, endpoint: UdpEndpoint,
                   key: tuple[str, str, str], to_tag: str) -> None:
        call = self.dialogs.get((request.call_id, to_tag))
        # (RFC 3261 12.2.2: the remote tag is part of the dialog's identity)
        dialog = call.dialog_for(request.from_.tag) if call is not None else None
        if call is None or dialog is None:
            answer = (self._options_answer(request) if request.method == "OPTIONS"
                      else self._reply(request, 481))
            self._answer_statelessly(request, answer, source, endpoint)
            return
        tx = self._server_tx(request, source, endpoint, key)
        try:
            dialog.check_request(request)
        except DialogError as exc:
            self.respond(tx, make_response(request, exc.status, headers=[
                warning(str(exc))]))
            return
        if request.method == "BYE":
            assert isinstance(tx, NonInviteServerTransaction)
            call.bye_received(request, tx)
        elif request.method == "INVITE":
            assert isinstance(tx, InviteServerTransaction)
            tx.user = call
            call.reinvite_received(request, tx)
        elif request.method == "INFO":
            assert isinstance(tx, NonInviteServerTransaction)
            call.info_received(request, tx)
        else:  # OPTIONS in a dialog
            self.respond(tx, self._options_answer(request))

    def _new_call(self, invite: Request, source: Address, endpoint: UdpEndpoint,
                  key: tuple[str, str, str]) -> None:
        now = self.engine.time()
        if self._refused.refused(key, now):  # a retransmission: its sender has our 503
            self.stats.refused_again += 1
            self._answer_statelessly(invite, self._unavailable(invite), source, endpoint)
            return
        if self.draining:
            self._refused.add(key, now)
            self._answer_statelessly(invite, self._unavailable(invite), source, endpoint)
            return
        host = source[0]
        busy = self.overloaded(host)
        if busy is not None:
            self._refused_overloaded(busy)
            self._refused.add(key, now)
            self._answer_statelessly(invite, self._unavailable(invite), source, endpoint)
            return
        offer = None
        if invite.body:
            try:
                offer = parse_sdp(invite.body)
            except SdpError as exc:
                self._answer_statelessly(invite, self._reply(invite, 400, [
                    warning(f"malformed SDP: {exc}")]),
                    source, endpoint)
                return
        tx = self._server_tx(invite, source, endpoint, key)
        assert isinstance(tx, InviteServerTransaction)
        self.respond(tx, make_response(invite, 100))
        call = SipCall.incoming_call(self.call_host, invite, tx, offer)
        tx.user = call
        self.calls.add(call)
        self.register_dialog(call)
        self.setups += 1
        self.setups_by_source[host] = self.setups_by_source.get(host, 0) + 1
        call.counted_setup = True
        self.stats.calls += 1
        if not self.on_call(call):
            call.release_unwanted()

    # ------------------------------------------------------------------ responses in
    def _response(self, response: Response) -> None:
        tx = self.client_tx.get(client_key(response))
        if tx is None:
            log.debug("a response matching no transaction: %d %s", response.status,
                      response.cseq[1])
            if response.cseq[1] == "INVITE" and 200 <= response.status < 300:
                # A 2xx retransmitted after Timer M: the call ACKs it again.
                call = self.dialogs.get((response.call_id, response.from_.tag or ""))
                if call is not None:
                    call.response_received(None, response)  # type: ignore[arg-type]
            return
        self._run(tx, tx.receive(response))

    # ------------------------------------------------------------------ transactions
    def respond(self, tx: ServerTransaction, response: Response) -> None:
        if self.settings.user_agent and "Server" not in response.headers:
            response.headers.add("Server", self.settings.user_agent)
        self._run(tx, tx.respond(response))  # type: ignore[attr-defined]
        if response.status >= 200 and not tx.terminated:
            # The transaction lingers 64*T1 to absorb retransmissions, with the final
            # response's bytes: the parsed messages would only lengthen the cyclic GC's
            # passes meanwhile.
            tx.shed()

    def start_client(self, request: Request, peer: Address, user: SipCall | None
                     ) -> ClientTransaction:
        if self.settings.user_agent and "User-Agent" not in request.headers:
            request.headers.add("User-Agent", self.settings.user_agent)
        tx: ClientTransaction
        if request.method == "INVITE":
            tx = InviteClientTransaction(request, self.timers)
        else:
            tx = NonInviteClientTransaction(request, self.timers)
        tx.peer, tx.endpoint, tx.user = peer, self.endpoint_for(peer[0]), user
        self.client_tx[tx.key] = tx
        self._run(tx, tx.start())
        return tx

    def _run(self, tx: Transaction, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                tx.endpoint.send(action.data, tx.peer)
            elif isinstance(action, SetTimer) and self._lingering.accepts(action):
                first_due = self._lingering.add(self.engine.time(), tx, action.name)
                if first_due is not None:
                    self._lingering_timer = self.engine.call_at(first_due, self._expire)
            elif isinstance(action, SetTimer):
                old = tx.handles.pop(action.name, None)
                if old is not None:
                    old.cancel()
                tx.handles[action.name] = self.engine.call_later(action.delay,
                                                                 self._fire_timer, tx,
                                                                 action.name)
            elif isinstance(action, CancelTimer):
                handle = tx.handles.pop(action.name, None)
                if handle is not None:
                    handle.cancel()
            elif isinstance(action, ToUser):
                user = tx.user
                if isinstance(action.message, Response) and isinstance(user, SipCall):
                    user.response_received(tx, action.message)
            elif isinstance(action, TimedOut):
                if isinstance(tx.user, SipCall):
                    tx.user.transaction_timed_out(tx)
            elif isinstance(action, Terminated):
                self._forget_tx(tx)

    def abandon(self, tx: Transaction) -> None:
        """Forget a transaction its user has given up on (timers cancelled)."""
        self._forget_tx(tx)

    def _expire(self) -> None:
        due, next_due = self._lingering.expire(self.engine.time())
        self._lingering_timer = (self.engine.call_at(next_due, self._expire)
                                 if next_due is not None else None)
        for tx, name in due:
            self._run(tx, tx.fire(name))

    def _fire(self, tx: Transaction, name: str) -> None:
        tx.handles.pop(name, None)
        self._run(tx, tx.fire(name))

    def _forget_tx(self, tx: Transaction) -> None:
        self._cancel_timers(tx)
        if isinstance(tx, ServerTransaction):
            key = tx.key if tx.key is not None else server_key(tx.request)
            if self.server_tx.get(key) is tx:
                del self.server_tx[key]
            if tx.merge_key is not None and self.merge_keys.get(tx.merge_key) is tx:
                del self.merge_keys[tx.merge_key]
        elif isinstance(tx, ClientTransaction) and self.client_tx.get(tx.key) is tx:
            del self.client_tx[tx.key]

    @staticmethod
    def _cancel_timers(tx: Transaction) -> None:
        for handle in tx.handles.values():
            handle.cancel()
        tx.handles.clear()

    # ------------------------------------------------------------------ for calls (call_host)
    def send_to(self, data: bytes, peer: Address) -> None:
        self.endpoint_for(peer[0]).send(data, peer)

    def endpoint_for(self, host: str) -> UdpEndpoint:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for endpoint in self.endpoints:
            if endpoint.family == family:
                return endpoint
        return self.endpoints[0]

    def register_dialog(self, call: SipCall) -> None:
        """Requests in the call's dialogs (its early ones too) reach it."""
        self.dialogs[call.dialog_key] = call

    def forget(self, call: SipCall) -> None:
        """A call is over: drop it from the tables (its transactions finish on their own)."""
        if call.counted_setup:
            self._setup_over(call, completed=False)
        self.calls.discard(call)
        if self.dialogs.get(call.dialog_key) is call:
            del self.dialogs[call.dialog_key]
        tx = call.invite_tx
        if tx is not None and tx.user is call:
            # The transaction lingers 64*T1 for retransmissions. Holding the call (channel,
            # media, SDP: a hundred objects) that long made the cyclic GC's full passes scan
            # every call of the last half minute: at hundreds of calls a second, pauses of
            # 100 ms and more. All it needs of the call now is the To-tag, for a CANCEL.
            tx.user = _EndedCall(call.local_tag)

    def setup_over(self, call: SipCall, acked: bool) -> None:
        """An incoming call is no longer being set up. ``acked``: the ACK for our 2xx came
        (for overload control: its source has now completed a call); else our 2xx went
        unACKed for 64*T1 (the call ends with a BYE), and its source, which did not
        behave, loses its standing."""
        if call.counted_setup:
            self._setup_over(call, completed=acked, unacked=not acked)

    def _setup_over(self, call: SipCall, *, completed: bool, unacked: bool = False) -> None:
        call.counted_setup = False
        self.setups -= 1
        host = call.source[0] if call.source is not None else ""
        held = self.setups_by_source.get(host, 0) - 1
        if held > 0:
            self.setups_by_source[host] = held
        else:
            self.setups_by_source.pop(host, None)
        known = self.known_sources
        if completed:
            known[host] = None
            known.move_to_end(host)
            while len(known) > KNOWN_SOURCES:
                known.popitem(last=False)
        elif unacked and host in known:
            del known[host]
            log.info("%s: our 200 was never ACKed; no longer counted as a source with "
                     "completed calls", host)

    def open_stream(self, host: str, call: SipCall) -> RtpStream:
        return self.rtp_ports.open(self.engine, self.ticker, host, allow=self.allow,
                                   name=f"rtp {call.call_id[:16]}",
                                   symmetric=self.settings.symmetric_rtp)

    def codec_preference(self, laws: list[str] | None) -> list[str]:
        """A leg's codecs (laws, in priority order) as SDP codec names; None → ours."""
        return codec_names(laws, self.settings.codecs)

    def local_address(self, peer: Address | None) -> Address:
        """Our signalling address towards ``peer`` (its address family's endpoint); None:
        the first we listen on."""
        return self.endpoint_for(peer[0]).address if peer else self.endpoints[0].address


@dataclass(frozen=True, slots=True)
class _EndedCall:
    """The user of an incoming call's INVITE transaction once the call is over."""

    local_tag: str


def lookup(host: str, port: int) -> Address:
    """:func:`resolve`, or a host name looked up (/etc/hosts, DNS): may block, so never
    on the engine thread."""
    try:
        return resolve(host, port)
    except socket.gaierror:
        info = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_DGRAM)
        address = info[0][4]
        return address[0], address[1]


def _merge_key(request: Request) -> tuple[str, str, int, str]:
    """What a request and its merged copies share (RFC 3261 8.2.2.2)."""
    number, method = request.cseq
    return request.call_id, request.from_.tag or "", number, method


def _refuse_wildcard(asked: Address, bound: Address) -> None:
    """Raise when we listen on a wildcard address (0.0.0.0, ::). The address we listen on
    is the one we advertise (Contact, Via sent-by, SDP o= and c=), and a wildcard there
    tells the far end nothing; in SDP, c=0.0.0.0 even means hold (RFC 3264 8.4). The
    bound address is checked, so a name or a short form that stands for one is caught."""
    try:
        wildcard = ipaddress.ip_address(bound[0].partition("%")[0]).is_unspecified
    except ValueError:
        return
    if wildcard:
        raise ArgumentError(
            f"sip backend: listen {format_hostport(asked)} is a wildcard address; uascall "
            "advertises the address it listens on (Contact, Via, SDP c=, where 0.0.0.0 "
            "means hold), so expected the address the far ends reach this machine at, "
            "e.g. 192.0.2.10:5060 (repeat --listen for each address, IPv4 and IPv6)")


def _accepts_sdp(value: str) -> bool:
    return media_type(value) in ("application/sdp", "application/*", "*/*")


def _has_tag(to: str) -> bool:
    """Whether a raw To header value has a tag parameter (outside its <URI>, if any)."""
    params = to.rpartition(">")[2] if "<" in to else to.partition(";")[2]
    return re.search(r"(?:^|;)\s*tag\s*=", params, re.IGNORECASE) is not None

