"""What ``bench/flood_sip.py`` and ``bench/fuzz_sip.py`` share: a SIP caller that behaves,
an OPTIONS prober, and the server's memory read from /proc.

The caller (:class:`Caller`) is a plain RFC 3261 UAC over one UDP socket of its own:
INVITE retransmitted on Timer A until a response, any provisional, the 200 ACKed, a BYE
after ``hold`` seconds (retransmitted on Timer E) and its 200; a final failure is ACKed
and ends the attempt. The prober (:class:`OptionsProber`) sends an OPTIONS every
``interval`` seconds from its own socket, each a new transaction with no retransmission,
and keeps each one's round trip (or its loss: no answer within ``lost_after``).

Both run on threads of the benchmark's process, which is not the server's: the server
under test is a separate ``uascall run`` process (``sip_cps.uascall_server``).
"""

from __future__ import annotations

import contextlib
import secrets
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

T1 = 0.5
T2 = 4.0


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (VmRSS), 0.0 once it has gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def sdp(host: str, port: int) -> str:
    return (f"v=0\r\no=bench 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\n"
            "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
            "a=fmtp:101 0-15\r\na=sendrecv\r\n")


def request(method: str, target: tuple[str, int], local: tuple[str, int], *, call_id: str,
            from_tag: str, cseq: int, branch: str, to_tag: str | None = None,
            body: str = "") -> bytes:
    host, port = target
    me = f"{local[0]}:{local[1]}"
    to = f"<sip:service@{host}:{port}>" + (f";tag={to_tag}" if to_tag else "")
    text = (f"{method} sip:service@{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {me};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:bench@{me}>;tag={from_tag}\r\n"
            f"To: {to}\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:bench@{me}>\r\n")
    if body:
        text += "Content-Type: application/sdp\r\n"
    text += f"Content-Length: {len(body)}\r\n\r\n{body}"
    return text.encode()


def status_of(data: bytes) -> int | None:
    if not data.startswith(b"SIP/2.0 "):
        return None
    try:
        return int(data[8:11])
    except ValueError:
        return None


def receive_datagrams(selector: selectors.BaseSelector, timeout: float,
                      on_datagram: Callable[[bytes], None], rtp: socket.socket,
                      counts: dict[str, int]) -> None:
    """Read what has arrived on the sockets of ``selector`` within ``timeout``: up to 256
    datagrams a socket per call, RTP (on ``rtp``) counted in ``counts["rtp"]``, the rest
    handed to ``on_datagram``."""
    for key, _ in selector.select(timeout):
        sock = key.fileobj
        assert isinstance(sock, socket.socket)
        for _ in range(256):
            try:
                data = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            if sock is rtp:
                counts["rtp"] += 1
            else:
                on_datagram(data)


def header(data: bytes, name: bytes) -> bytes | None:
    """The first value of header ``name`` (full name, as we send them; compact forms too
    for To and Via) or None."""
    names = {b"to": (b"to", b"t"), b"via": (b"via", b"v"), b"cseq": (b"cseq",),
             b"call-id": (b"call-id", b"i")}.get(name.lower(), (name.lower(),))
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() in names:
            return value.strip()
    return None


def to_tag(data: bytes) -> str | None:
    to = header(data, b"to") or b""
    _, sep, rest = to.partition(b";tag=")
    return rest.split(b";")[0].decode() if sep else None


@dataclass
class CallResult:
    started: float
    outcome: str = "unfinished"  # ok, or what went wrong ("503", "timeout", "bye 481")
    setup_s: float = 0.0  # INVITE to 200
    invite_retransmissions: int = 0


class Caller:
    """A caller that behaves, from ``host`` (its own socket per call)."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self.host = host

    def call(self, hold: float = 0.2, setup_timeout: float = 32.0,
             held: threading.Event | None = None) -> CallResult:
        """One call; with ``held``, the BYE waits until that event is set."""
        result = CallResult(time.monotonic())
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((self.host, 0))
            local = sock.getsockname()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtp:
                rtp.bind((self.host, 0))
                self._call(sock, local, rtp.getsockname()[1], result, hold, setup_timeout,
                           held)
        return result

    def _call(self, sock: socket.socket, local: tuple[str, int], rtp_port: int,
              result: CallResult, hold: float, setup_timeout: float,
              held: threading.Event | None) -> None:
        call_id = f"{secrets.token_hex(8)}@{self.host}"
        from_tag = secrets.token_hex(4)
        branch = "z9hG4bK" + secrets.token_hex(8)
        invite = request("INVITE", self.target, local, call_id=call_id, from_tag=from_tag,
                         cseq=1, branch=branch, body=sdp(self.host, rtp_port))
        sock.sendto(invite, self.target)
        start = time.monotonic()
        deadline = start + setup_timeout
        resend_at, interval, provisional = start + T1, T1, False
        while True:
            now = time.monotonic()
            if now >= deadline:
                result.outcome = "timeout"
                return
            if not provisional and now >= resend_at:
                sock.sendto(invite, self.target)
                result.invite_retransmissions += 1
                interval = min(2 * interval, T2)
                resend_at = now + interval
            wake = deadline if provisional else min(deadline, resend_at)
            sock.settimeout(max(0.001, wake - now))
            try:
                data = sock.recv(65535)
            except TimeoutError:
                continue
            status = status_of(data)
            if status is None or b" INVITE" not in (header(data, b"cseq") or b""):
                continue
            if status < 200:
                provisional = True
                continue
            tag = to_tag(data)
            if status >= 300:
                sock.sendto(request("ACK", self.target, local, call_id=call_id,
                                    from_tag=from_tag, cseq=1, branch=branch, to_tag=tag),
                            self.target)
                result.outcome = str(status)
                return
            result.setup_s = time.monotonic() - start
            break
        sock.sendto(request("ACK", self.target, local, call_id=call_id, from_tag=from_tag,
                            cseq=1, branch="z9hG4bK" + secrets.token_hex(8), to_tag=tag),
                    self.target)
        if held is not None:
            held.wait()
        else:
            time.sleep(hold)
        bye = request("BYE", self.target, local, call_id=call_id, from_tag=from_tag, cseq=2,
                      branch="z9hG4bK" + secrets.token_hex(8), to_tag=tag)
        sock.sendto(bye, self.target)
        start = time.monotonic()
        resend_at, interval = start + T1, T1
        while time.monotonic() < start + 64 * T1:
            now = time.monotonic()
            if now >= resend_at:
                sock.sendto(bye, self.target)
                interval = min(2 * interval, T2)
                resend_at = now + interval
            sock.settimeout(max(0.001, resend_at - now))
            try:
                data = sock.recv(65535)
            except TimeoutError:
                continue
            status = status_of(data)
            if status is None:
                continue
            if b" BYE" in (header(data, b"cseq") or b"") and status >= 200:
                result.outcome = "ok" if status == 200 else f"bye {status}"
                return
            if b" INVITE" in (header(data, b"cseq") or b"") and status == 200:
                # our ACK was lost: ACK the retransmitted 200 again
                sock.sendto(request("ACK", self.target, local, call_id=call_id,
                                    from_tag=from_tag, cseq=1,
                                    branch="z9hG4bK" + secrets.token_hex(8), to_tag=tag),
                            self.target)
        result.outcome = "bye timeout"


@dataclass
class Probe:
    sent: float
    rtt: float | None = None  # seconds; None: lost


@dataclass
class OptionsProber:
    """An OPTIONS every ``interval`` s from ``host`` while running (a thread)."""

    target: tuple[str, int]
    host: str = "127.0.0.1"
    interval: float = 0.05
    lost_after: float = 2.0
    probes: list[Probe] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((self.host, 0))
        self._thread = threading.Thread(target=self._run, name="options prober", daemon=True)
        self._lock = threading.Lock()
        self._waiting: dict[str, Probe] = {}

    def start(self) -> OptionsProber:
        self._thread.start()
        return self

    def stop(self) -> None:
        deadline = time.monotonic() + self.lost_after
        while self._waiting and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stop.set()
        self._thread.join()
        self._sock.close()

    def probe_now(self, timeout: float = 2.0) -> float | None:
        """One probe outside the series (its round trip, or None), from another socket."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((self.host, 0))
            local = sock.getsockname()
            branch = "z9hG4bK" + secrets.token_hex(8)
            start = time.monotonic()
            sock.sendto(request("OPTIONS", self.target, local, call_id=branch,
                                from_tag="probe", cseq=1, branch=branch), self.target)
            sock.settimeout(timeout)
            with contextlib.suppress(TimeoutError):
                while True:
                    data = sock.recv(65535)
                    if branch.encode() in data and (status_of(data) or 0) >= 200:
                        return time.monotonic() - start
        return None

    def _run(self) -> None:
        local = self._sock.getsockname()
        self._sock.settimeout(0.005)
        next_at = time.monotonic()
        n = 0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_at:
                n += 1
                branch = f"z9hG4bKprobe{n}x{secrets.token_hex(4)}"
                probe = Probe(now)
                with self._lock:
                    self.probes.append(probe)
                    self._waiting[branch] = probe
                self._sock.sendto(request("OPTIONS", self.target, local,
                                          call_id=f"{branch}@bench", from_tag="prober",
                                          cseq=n, branch=branch), self.target)
                next_at += self.interval
            for branch, probe in list(self._waiting.items()):
                if now - probe.sent > self.lost_after:
                    del self._waiting[branch]
            try:
                data = self._sock.recv(65535)
            except TimeoutError:
                continue
            got = time.monotonic()
            via = header(data, b"via") or b""
            _, sep, rest = via.partition(b"branch=")
            branch = rest.split(b";")[0].decode(errors="replace") if sep else ""
            probe = self._waiting.pop(branch, None)
            if probe is not None and (status_of(data) or 0) >= 200:
                probe.rtt = got - probe.sent

    def between(self, start: float, end: float) -> list[Probe]:
        with self._lock:
            return [p for p in self.probes if start <= p.sent < end]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(probes: list[Probe]) -> tuple[int, int, float, float, float]:
    """(sent, lost, p50 ms, p99 ms, max ms) of a run of probes."""
    rtts = [p.rtt for p in probes if p.rtt is not None]
    lost = len(probes) - len(rtts)
    return (len(probes), lost, 1e3 * percentile(rtts, 0.5), 1e3 * percentile(rtts, 0.99),
            1e3 * max(rtts, default=0.0))
