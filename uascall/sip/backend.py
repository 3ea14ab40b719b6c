"""The ``sip`` backend: the channel API over SIP/RTP (UDP, IPv4 and IPv6).

Incoming INVITEs become :class:`~uascall.sip.call.SipCall` legs: ``ring()`` is 180
Ringing, or with early media 183 Session Progress with our SDP answer and RTP carrying the
ringtone; ``answer()`` is 200 OK with the same answer, the call ANSWERED on the ACK;
``hang_up()`` is BYE; ``reject()`` the final response for the Cause (or the raw SIP
status). Outgoing calls (:meth:`SipBackend.place_call`) send an INVITE with our offer.

Options (``uascall.open_backend("sip", engine, **options)``):

``listen``
    where to receive SIP: ``"127.0.0.1:5080"``, ``"[::1]:5080"``, or a list of them
    (one UDP socket each; IPv4 and IPv6 side by side). Default ``127.0.0.1:5060``. It is
    the address we advertise (Contact, Via, SDP), so a wildcard (``0.0.0.0``, ``::``) is
    refused: give the address the far ends reach.
``allow``
    the networks whose datagrams we accept (signalling and RTP), e.g.
    ``["192.0.2.0/24", "::1/128"]``; default loopback only. Others are dropped and logged
    once per address.
``codecs``
    our codec priority, ``"g711a;g711u"`` (default) or a list; ``ring()``/``answer()``
    can override it per call.
``rtp_ports``
    the range RTP ports come from, default ``(16384, 32767)``.
``rtp_timeout``
    seconds without RTP from the far end after which an answered call is ended with BYE
    (its BYE was lost); default 60, 0 turns it off.
``symmetric_rtp``
    RTP is taken only from the address and port the far end's SDP gave, or, once per
    call, from the first source on the host its SDP names or its SIP comes from (a far end
    behind NAT, or that names another of its addresses), which our RTP then goes back to
    (RFC 4961). With True, the first source from anywhere is taken so (a far end whose
    RTP leaves by another public address than its SIP). Default False.
``max_setups`` / ``max_source_setups`` / ``max_lag`` / ``retry_after``
    overload control: new INVITEs get 503 with ``Retry-After: retry_after``, sent
    statelessly (nothing kept, nothing retransmitted), while ``max_setups`` calls (2000)
    are being set up (not yet ACKed), or the engine runs ``max_lag`` seconds late (0.2,
    below T1 so that callers are refused before they retransmit): a timer fires that late,
    or a SIP datagram waited that long in the kernel before it was read. A source host
    that has not completed a call (none ACKed our 200) may hold at most
    ``max_source_setups`` of those calls (default a twentieth of ``max_setups``), and such
    sources together nine tenths; one that has is refused only at ``max_setups`` or twice
    ``max_lag``. So a flood from one address cannot take the calls of the others (see
    :mod:`uascall.sip.useragent`). The warning this logs comes at most once a second, with
    the number refused since the last.
``max_message_size``
    datagrams longer than this are dropped (default 16384).
``timers``
    RFC 3261's T1/T2/T4 (:class:`~uascall.sip.transaction.Timers`); tests shrink them.
``outbound``
    where calls to a bare number go: ``"host:port"`` (``call("1234")`` → ``sip:1234@host:port``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from uascall.backend import Backend, CallLeg
from uascall.engine import Engine
from uascall.errors import ArgumentError
from uascall.sip.call import SipCall
from uascall.sip.message import SipParseError, new_call_id, parse_uri
from uascall.sip.sdp import CODECS
from uascall.sip.transaction import DEFAULT_TIMERS, Timers
from uascall.sip.transport import LOOPBACK, Address, format_hostport, parse_hostport
from uascall.sip.useragent import MAX_LAG, SipSettings, UserAgent, lookup, resolve

log = logging.getLogger(__name__)


def _codec_list(codecs: str | Sequence[str]) -> tuple[str, ...]:
    names = codecs.split(";") if isinstance(codecs, str) else list(codecs)
    cleaned = tuple(dict.fromkeys(name.strip().lower() for name in names if name.strip()))
    unknown = [name for name in cleaned if name not in CODECS]
    if unknown or not cleaned:
        raise ArgumentError(f"codecs {codecs!r}: unknown {', '.join(unknown) or 'empty list'}"
                            f"; expected a ';'-separated list of {', '.join(CODECS)}")
    return cleaned


class SipBackend(Backend):
    """Calls over SIP; see the module docstring for the options."""

    name = "sip"

    def __init__(self, engine: Engine, *, listen: str | Sequence[str] = "127.0.0.1:5060",
                 allow: Sequence[str] = LOOPBACK, codecs: str | Sequence[str] = "g711a;g711u",
                 rtp_ports: tuple[int, int] = (16384, 32767), rtp_timeout: float = 60.0,
                 symmetric_rtp: bool = False, max_setups: int = 2000,
                 max_source_setups: int | None = None, max_lag: float = MAX_LAG,
                 retry_after: int = 5,
                 max_message_size: int = 16384, outbound: str | None = None,
                 timers: Timers = DEFAULT_TIMERS, **unknown: Any) -> None:
        super().__init__(engine)
        if unknown:
            raise ArgumentError(f"sip backend: unknown option(s) {', '.join(sorted(unknown))};"
                                " expected listen, allow, codecs, rtp_ports, rtp_timeout, "
                                "symmetric_rtp, max_setups, max_source_setups, max_lag, "
                                "retry_after, max_message_size, outbound, timers")
        listens = [listen] if isinstance(listen, str) else list(listen)
        if not listens:
            raise ArgumentError("sip backend: listen is empty; expected at least one "
                                "host:port")
        if int(max_setups) < 0:
            raise ArgumentError(f"sip backend: max_setups {max_setups!r}: expected a "
                                "number of calls, 0 or more (0 refuses every new call)")
        self.settings = SipSettings(
            listen=[parse_hostport(text, 5060) for text in listens], allow=tuple(allow),
            codecs=_codec_list(codecs), rtp_ports=tuple(rtp_ports),  # type: ignore[arg-type]
            rtp_timeout=float(rtp_timeout), symmetric_rtp=bool(symmetric_rtp),
            max_message_size=int(max_message_size),
            max_setups=int(max_setups), max_source_setups=(
                None if max_source_setups is None else int(max_source_setups)),
            max_lag=float(max_lag), retry_after=int(retry_after),
            timers=timers)
        self.outbound = parse_hostport(outbound, 5060) if outbound else None
        # Sockets open here, on the caller's thread, so a port in use fails at once.
        self.ua = UserAgent(engine, self.settings, self._incoming)

    # the command line's part: what `uascall run/call --backend sip` takes
    @classmethod
    def add_arguments(cls, group: Any, command: str) -> None:
        if command not in ("run", "call"):
            return
        group.add_argument("--listen", action="append", metavar="HOST:PORT",
                           help="where to receive SIP over UDP (repeatable, e.g. "
                           "127.0.0.1:5080 and [::1]:5080; default 127.0.0.1:5060 for run, "
                           "any free port for call); an address the far ends reach, not "
                           "0.0.0.0 or [::]: it goes into Contact, Via and SDP")
        group.add_argument("--allow", action="append", metavar="NETWORK",
                           help="accept SIP and RTP from this network (repeatable, e.g. "
                           "192.0.2.0/24; default loopback only)")
        group.add_argument("--codecs", default="g711a;g711u",
                           help="codec priority (default %(default)s)")
        group.add_argument("--rtp-timeout", type=float, default=60.0, metavar="SECONDS",
                           help="end an answered call after this long without RTP from the "
                           "far end (default %(default)s; 0: never)")
        group.add_argument("--outbound", metavar="HOST:PORT",
                           help="where outgoing calls to bare numbers go")
        group.add_argument("--max-setups", type=int, default=2000, metavar="N",
                           help="incoming calls being set up at once (not yet answered "
                           "and ACKed) before new INVITEs get 503; from half of it, a "
                           "caller none of whose calls has completed yet gets a share "
                           "only (default %(default)s). An application that rings for "
                           "seconds holds rate x seconds: size it for that")

    @classmethod
    def options_from_arguments(cls, args: Any, command: str) -> dict[str, Any]:
        # a call generator needs no well-known port: any free one will do
        listen = args.listen or ["127.0.0.1:5060" if command == "run" else "127.0.0.1:0"]
        return {"listen": listen, "allow": args.allow or list(LOOPBACK),
                "codecs": args.codecs, "rtp_timeout": args.rtp_timeout,
                "outbound": args.outbound, "max_setups": args.max_setups}

    def owns(self, leg: CallLeg) -> bool:
        return isinstance(leg, SipCall) and leg.host is self.ua.call_host

    def status(self, calls: dict[CallLeg, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        from uascall.status import channel_row, with_call
        channels = []
        for call in sorted(self.ua.calls, key=lambda c: c.call_id):
            negotiated = call.negotiated
            far = call.source or (negotiated.remote if negotiated is not None else None)
            row = channel_row(self.name, call.call_id, signalling="SIP", in_use=True,
                              state=call.phase.value,
                              direction="inbound" if call.incoming else "outbound",
                              far_end=call.call_from if call.incoming else call.call_to,
                              address=format_hostport(far) if far else "",
                              codec=negotiated.law if negotiated is not None else "")
            channels.append(with_call(row, calls.get(call)))
        stats = self.ua.stats
        streams = [call.stream for call in self.ua.calls if call.stream is not None]
        return {"spans": [], "channels": channels, "counters": {
            "setups_refused": stats.overloaded, "requests": stats.requests,
            "malformed": stats.malformed, "calls": stats.calls,
            # of the streams up now: a stream's counts go with it
            "media_underruns": sum(stream.underruns for stream in streams),
            "late_ticks": self.ua.ticker.late_ticks,
            "max_tick_lateness_ms": round(self.ua.ticker.max_lateness * 1000, 1)}}

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where we listen (with the ports the kernel chose for ``:0``)."""
        return self.ua.addresses

    def start(self) -> None:
        self.ua.start()

    def stop(self) -> None:
        self.ua.stop()

    def drain(self) -> None:
        self.ua.drain()

    def drain_announced(self) -> bool:
        return self.ua.drain_announced

    def _incoming(self, call: SipCall) -> bool:
        return self._offer(call)

    def _target(self, call_to: str, route: str | None) -> tuple[str, tuple[str, int]]:
        """The request URI for ``call_to`` and the (host, port) to send it to."""
        uri_text = call_to.strip()
        if not uri_text.startswith(("sip:", "sips:")):
            target = parse_hostport(route, 5060) if route else self.outbound
            if target is None:
                raise ArgumentError(f"call_to {call_to!r} is not a SIP URI and there is no "
                                    "route; expected 'sip:user@host[:port]', or "
                                    "route='host:port', or the backend's outbound option")
            uri_text = f"sip:{uri_text}@{format_hostport(target)}"
        try:
            uri = parse_uri(uri_text)
        except SipParseError as exc:
            raise ArgumentError(f"call_to {call_to!r}: {exc.reason}; expected a SIP URI "
                                "such as sip:1234@127.0.0.1:5060") from None
        if route and call_to.strip().startswith(("sip:", "sips:")):
            return str(uri), parse_hostport(route, 5060)
        return str(uri), (uri.host, uri.port or 5060)

    def prepare_call(self, call_to: str, route: str | None = None) -> tuple[str, Address]:
        """The request URI and the address to send the INVITE to, a host name looked up
        here (the application's thread: a slow resolver must not stall the engine)."""
        uri, (host, port) = self._target(call_to, route)
        try:
            return uri, lookup(host, port)
        except (OSError, ValueError) as exc:
            raise ArgumentError(f"call_to {call_to!r}: cannot resolve {host!r}: {exc}; "
                                "expected an IP address or a name the resolver knows"
                                ) from None

    def place_call(self, call_to: str, call_from: str = "", *, route: str | None = None,
                   codecs: list[str] | None = None,
                   headers: list[tuple[str, str]] | None = None,
                   prepared: tuple[str, Address] | None = None) -> CallLeg:
        """Engine thread: an INVITE to ``call_to``: a ``sip:`` URI (``sip:1234@192.0.2.1:5060``),
        or a bare number sent to ``route`` ("host:port") or the backend's ``outbound``.
        A host name must have been looked up by :meth:`prepare_call` (a channel's call()
        does that on its own thread): on the engine thread only IP addresses are taken."""
        if prepared is not None:
            uri, address = prepared
        else:
            uri, (host, port) = self._target(call_to, route)
            try:
                address = resolve(host, port)
            except (OSError, ValueError):
                raise ArgumentError(f"call_to {call_to!r}: {host!r} is not an IP address; "
                                    "names are looked up off the engine thread: expected "
                                    "prepare_call() first (a channel's call() does it)"
                                    ) from None
        call = SipCall(self.ua.call_host, incoming=False,
                       call_id=new_call_id(self.ua.endpoint_for(address[0]).address[0]))
        self.ua.calls.add(call)
        call.headers_to_send = list(headers or [])
        call.place(uri, call_from, self.ua.codec_preference(codecs), address,
                   self.ua.endpoint_for(address[0]).address[0])
        return call
