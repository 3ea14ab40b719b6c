"""UDP sockets on the engine: SIP signalling and RTP, with the guards a listener needs.

The only I/O in :mod:`uascall.sip`. A :class:`UdpEndpoint` is one non-blocking datagram
socket registered with the engine; when it is readable it drains what the kernel has
queued (a bounded batch, so one busy socket cannot starve the others) and hands each
datagram to its owner. On the way in it applies:

- the **allow-list**: datagrams from addresses outside the configured networks are
  dropped (default: loopback only, so a test box is not an open SIP service by accident);
- the **size limit**: a datagram longer than ``max_size`` is dropped unread (we read one
  byte more than the limit to tell);
- the **tap**: every datagram received (before the checks above) and sent goes to
  ``engine.taps.datagram`` when someone listens (:mod:`uascall.trace.taps`);
- a **large receive buffer**: at thousands of calls a second the default 208 KiB queue
  overflows and ACKs and BYEs are lost in the kernel. As root ``SO_RCVBUFFORCE`` sets it
  regardless of ``net.core.rmem_max``; otherwise ``SO_RCVBUF`` is capped by that sysctl
  (raise it with ``sysctl -w net.core.rmem_max=8388608``), and the size obtained is logged.

Such a buffer holds seconds of traffic, and how long it has queued is invisible to the
engine's timers (a timer runs late by one loop turn, however long the queue behind it). So
a ``measure_delay`` endpoint asks the kernel to stamp each datagram's arrival
(``SO_TIMESTAMPNS``) and keeps in :attr:`UdpEndpoint.queue_delay` the age of the oldest
datagram it found waiting, for the user agent's overload control.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from uascall.engine import EPOLLIN, DescriptorDropped, Engine
from uascall.errors import ArgumentError, Error

log = logging.getLogger(__name__)

Address = tuple[str, int]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: the default allow-list: this machine only
LOOPBACK = ("127.0.0.0/8", "::1/128")
#: datagrams read per wake-up before the engine gets to its other descriptors
BATCH = 64
#: seconds before a socket the engine gave up on (its handler kept failing) listens again
RELISTEN_AFTER = 1.0
#: receive buffer asked for on the signalling socket
SIGNALLING_RCVBUF = 8 * 1024 * 1024
#: source hosts whose allow-list verdict an endpoint remembers (forgotten all at once when
#: full, so a flood from many addresses costs memory no more than this)
ALLOW_CACHE_SIZE = 4096
#: Linux's SO_RCVBUFFORCE (asm-generic/socket.h), which Python's socket module lacks
#: before 3.12
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
#: Linux's SO_TIMESTAMPNS, also the control message type (SCM_TIMESTAMPNS) it brings
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = {16: struct.Struct("=qq"), 8: struct.Struct("=ii")}  # 64- or 32-bit time_t
_TIMESTAMP_SPACE = socket.CMSG_SPACE(16)
#: a queueing delay above this is taken for a step of the wall clock, not a queue
_PLAUSIBLE_DELAY = 60.0


class TransportError(Error):
    """A socket could not be opened or used (names the address and the cause)."""


def parse_hostport(text: str, default_port: int = 5060) -> Address:
    """``"127.0.0.1:5080"``, ``"[::1]:5080"``, ``"::1"`` or ``"host"`` → (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ArgumentError(f"address {text!r}: unbalanced '['; expected [v6addr]:port")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ArgumentError(f"address {text!r}: expected ':port' after ']'")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""  # a bare IPv6 address or a host name
    if not host:
        raise ArgumentError(f"address {text!r}: no host; expected host:port")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ArgumentError(f"address {text!r}: port {port_text!r}; expected 0..65535")
    return host, int(port_text)


def same_address(a: Address | None, b: Address | None) -> bool:
    """Whether two (host, port) pairs name the same transport address: IP addresses are
    compared as addresses (``::ffff:192.0.2.1`` is ``192.0.2.1``, ``::1`` is
    ``0:0::1``), names as written."""
    if a is None or b is None:
        return a is b
    if a[1] != b[1]:
        return False
    return a[0] == b[0] or _ip_key(a[0]) == _ip_key(b[0])


def same_host(a: str | None, b: str | None) -> bool:
    """Whether two hosts are the same address (as :func:`same_address` compares them)."""
    return a is not None and b is not None and (a == b or _ip_key(a) == _ip_key(b))


def _ip_key(host: str) -> object:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host.lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def format_hostport(address: Address) -> str:
    """(host, port) → ``host:port`` with IPv6 hosts in brackets."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_networks(networks: Iterable[str]) -> list[IPNetwork]:
    parsed = []
    for text in networks:
        try:
            parsed.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError as exc:
            raise ArgumentError(f"allow-list entry {text!r}: {exc}; expected a network "
                                "such as 192.0.2.0/24 or ::1/128") from None
    return parsed


@dataclass
class TransportStats:
    received: int = 0
    sent: int = 0
    dropped_not_allowed: int = 0
    dropped_too_big: int = 0
    send_errors: int = 0
    seen_denied: set[str] = field(default_factory=set)


class UdpEndpoint:
    """One UDP socket on the engine (engine thread only, apart from construction)."""

    def __init__(self, engine: Engine, address: Address, on_datagram: Callable[
                 [bytes, Address], None], *, allow: Iterable[IPNetwork] | None = None,
                 max_size: int = 65535, rcvbuf: int | None = None,
                 measure_delay: bool = False, name: str = "udp",
                 make_socket: Callable[[int], socket.socket] | None = None) -> None:
        self.engine = engine
        self.name = name
        self.on_datagram = on_datagram
        self.max_size = max_size
        self.allow = list(allow) if allow is not None else None
        # host -> verdict: ip_address() and the network tests cost more than the rest of a
        # datagram's handling, and the same few peers send nearly every datagram.
        self._allowed: dict[str, bool] = {}
        self.stats = TransportStats()
        #: the longest a datagram had waited in the kernel when a read began (seconds),
        #: with ``measure_delay``; its reader sets it back to 0
        self.queue_delay = 0.0
        self._timestamps = False
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.family = family
        # (make_socket: one made ahead, off the engine thread: uascall/sip/spare.py)
        try:
            sock = (make_socket(family) if make_socket is not None
                    else socket.socket(family, socket.SOCK_DGRAM))
        except OSError as exc:  # out of descriptors, or no such family here
            raise TransportError(f"{name}: cannot make a UDP socket: "
                                 f"{exc.strerror or exc}") from exc
        try:
            sock.setblocking(False)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if rcvbuf:
                self.rcvbuf = _enlarge_rcvbuf(sock, rcvbuf, name)
            if measure_delay:
                self._timestamps = _enable_timestamps(sock, name)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            hint = ""
            if exc.errno == errno.EADDRINUSE:
                hint = " (another program listens there; pick another port)"
            elif exc.errno == errno.EADDRNOTAVAIL:
                hint = " (no interface of this machine has that address)"
            raise TransportError(f"{name}: cannot bind UDP {format_hostport(address)}: "
                                 f"{exc.strerror or exc}{hint}") from exc
        self.sock = sock
        bound = sock.getsockname()
        self.address: Address = (bound[0], bound[1])
        self._fd = sock.fileno()
        self._registered = False

    def start(self) -> None:
        """*Engine thread*: start receiving."""
        if not self._registered:
            self.engine.add_fd(self._fd, EPOLLIN, self._readable, on_error=self._failed)
            self._registered = True

    def close(self) -> None:
        """*Engine thread*: stop and close (idempotent). The owner's handler goes too: it
        usually holds the owner, which holds this endpoint (a reference cycle, which only
        the cyclic GC would free)."""
        if self._registered:
            self.engine.remove_fd(self._fd)
            self._registered = False
        self.sock.close()
        self.on_datagram = _closed

    @property
    def closed(self) -> bool:
        return self.sock.fileno() < 0

    def allowed(self, host: str) -> bool:
        """Whether datagrams from ``host`` (a numeric address) pass the allow-list."""
        if self.allow is None:
            return True
        verdict = self._allowed.get(host)
        if verdict is None:
            if len(self._allowed) >= ALLOW_CACHE_SIZE:
                self._allowed.clear()
            verdict = self._allowed[host] = self._check_allowed(host)
        return verdict

    def _check_allowed(self, host: str) -> bool:
        assert self.allow is not None
        try:
            ip = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.allow)

    def send(self, data: bytes, address: Address) -> bool:
        """Send one datagram; False (logged, counted) when the kernel refuses it."""
        try:
            self.sock.sendto(data, address)
        except OSError as exc:
            self.stats.send_errors += 1
            log.debug("%s: sendto %s failed: %s", self.name, format_hostport(address), exc)
            return False
        self.stats.sent += 1
        tap = self.engine.taps.datagram
        if tap is not None:
            tap(self.engine.time(), True, data, self.address, address)
        return True

    def _readable(self, revents: int) -> None:
        recvfrom = self.sock.recvfrom
        limit = self.max_size
        deliver = self.on_datagram
        stats = self.stats
        stamped = self._timestamps  # the first datagram of a batch is the oldest queued
        taps = self.engine.taps
        for _ in range(BATCH):
            try:
                if stamped:
                    stamped = False
                    data, ancdata, _flags, source = self.sock.recvmsg(limit + 1,
                                                                      _TIMESTAMP_SPACE)
                    self._note_delay(ancdata)
                else:
                    data, source = recvfrom(limit + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # An ICMP port-unreachable from an earlier send shows up here: not fatal.
                log.debug("%s: recvfrom: %s", self.name, exc)
                continue
            stats.received += 1
            host, port = source[0], source[1]
            if taps.datagram is not None:  # what arrived, before any of it is judged
                taps.datagram(self.engine.time(), False, data, (host, port), self.address)
            if self.allow is not None and not self.allowed(host):
                stats.dropped_not_allowed += 1
                if host not in stats.seen_denied and len(stats.seen_denied) < 1000:
                    stats.seen_denied.add(host)
                    log.warning("%s: dropping datagrams from %s: not in the allow-list",
                                self.name, host)
                continue
            if len(data) > limit:
                stats.dropped_too_big += 1
                log.info("%s: dropped a datagram from %s longer than %d bytes", self.name,
                         format_hostport((host, port)), limit)
                continue
            try:
                deliver(data, (host, port))
            except Exception as exc:
                # A bug in a handler must not cost us the socket: count it, go on.
                self.engine.faults.record(f"{self.name}: handling a datagram", exc,
                                          f"a datagram from {format_hostport((host, port))}")

    def _note_delay(self, ancdata: list[tuple[int, int, bytes]]) -> None:
        for level, kind, data in ancdata:
            layout = _TIMESPEC.get(len(data))
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and layout is not None:
                seconds, nanoseconds = layout.unpack(data)
                # The kernel stamps with the wall clock; so must we, not the engine's clock.
                delay = time.time() - (seconds + nanoseconds * 1e-9)
                if self.queue_delay < delay < _PLAUSIBLE_DELAY:
                    self.queue_delay = delay

    def _failed(self, exc: BaseException) -> None:
        if not isinstance(exc, DescriptorDropped) or self.closed:
            return  # counted by the engine; the next datagram is tried as ever
        # The engine gave the socket up (its handler failed on every wake-up): listen again
        # after a pause, so a bug costs a second of service, not the server, nor a hot loop.
        self._registered = False
        log.error("%s: receiving again in %g s", self.name, RELISTEN_AFTER)
        self.engine.call_later(RELISTEN_AFTER, self._relisten)

    def _relisten(self) -> None:
        if not self.closed:
            self.start()


def _closed(data: bytes, source: Address) -> None:
    """A closed endpoint's handler (it cannot be called: nothing reads the socket)."""


def _enable_timestamps(sock: socket.socket, name: str) -> bool:
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError as exc:
        log.info("%s: no arrival timestamps (%s): overload control sees the engine's timers "
                 "only", name, exc)
        return False
    return True


def _enlarge_rcvbuf(sock: socket.socket, size: int, name: str) -> int:
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        # Not root (EPERM): the kernel caps SO_RCVBUF at net.core.rmem_max.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    # Linux doubles the size set (the extra covers its bookkeeping) and reports the double,
    # so a buffer capped by rmem_max at half the request still reads as ``size``.
    if got < 2 * size:
        log.warning("%s: receive buffer is %d bytes, asked for %d: calls may be lost at "
                    "high rates; as root it is forced, otherwise raise net.core.rmem_max",
                    name, got // 2, size)
    return got
