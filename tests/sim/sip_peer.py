"""A scripted SIP caller over real UDP, for tests that need to misbehave on purpose.

It sends exactly what a test tells it (retransmissions, a withheld ACK, a CANCEL at a
chosen moment) and records every datagram it receives with its arrival time, so tests
can check what our user agent sent and when. Messages are built as text and parsed with
:mod:`uascall.sip.message`; RTP is read on a second socket.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from uascall.backend import open_backend
from uascall.channel import State, UASCallChannel
from uascall.engine import Engine
from uascall.media.player import MediaClock
from uascall.media.tones import ToneManager
from uascall.sip.message import Request, Response, parse_message
from uascall.sip.rtp import RtpPacket, RtpSender
from uascall.sip.transaction import Timers
from uascall.sip.useragent import UserAgent


@dataclass
class Received:
    at: float
    message: Request | Response
    data: bytes  # as it came off the wire


def held_by(ua: UserAgent) -> list[str]:
    """What ``ua`` still holds: calls, dialogs, RTP streams, calls being set up (in all
    and by source); [] once the calls of a test have left nothing behind. Call it on the
    engine thread."""
    return [f"{what}: {value}" for what, value in (
        ("calls", sorted(map(repr, ua.calls))), ("dialogs", len(ua.dialogs)),
        ("RTP streams", ua.ticker.active), ("setups", ua.setups),
        ("setups by source", dict(ua.setups_by_source))) if value]


def settled(uas: Uas, timeout: float = 2.0) -> bool:
    """True once ``uas`` holds no call, dialog or RTP stream any more (see
    :func:`held_by`), waiting up to ``timeout`` for what the far end sent last to be
    handled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not uas.engine.run(held_by, uas.backend.ua):
            return True
        time.sleep(0.02)
    return False


def sdp_offer(host: str, port: int, formats: str = "0 8 101", *, direction: str = "sendrecv"
              ) -> str:
    family = "IP6" if ":" in host else "IP4"
    lines = ["v=0", f"o=peer 1 1 IN {family} {host}", "s=-", f"c=IN {family} {host}",
             "t=0 0", f"m=audio {port} RTP/AVP {formats}", "a=rtpmap:0 PCMU/8000",
             "a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15",
             f"a={direction}"]
    return "\r\n".join(lines) + "\r\n"


class SipPeer:
    """A caller on ``host`` talking to the user agent at ``target``."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.target = target
        self.host = host
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.rtp = socket.socket(family, socket.SOCK_DGRAM)
        self.rtp.bind((host, 0))
        self.rtp_port = self.rtp.getsockname()[1]
        self.received: list[Received] = []
        self.call_id = f"{secrets.token_hex(8)}@{host}"
        self.from_tag = secrets.token_hex(4)
        self.cseq = 1
        self.branch = ""
        self.invite_text = ""
        self.to_tag: str | None = None
        self.remote_rtp: tuple[str, int] | None = None

    def close(self) -> None:
        self.sock.close()
        self.rtp.close()

    @property
    def hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def target_hostport(self) -> str:
        host, port = self.target
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # ------------------------------------------------------------------ sending
    def send(self, data: str | bytes) -> None:
        self.sock.sendto(data.encode() if isinstance(data, str) else data, self.target)

    def request(self, method: str, *, branch: str | None = None, cseq: int | None = None,
                to_tag: str | None = None, body: str = "", extra: str = "",
                uri: str | None = None, content_type: str = "application/sdp",
                contact: str | None = None) -> str:
        branch = branch or "z9hG4bK" + secrets.token_hex(6)
        to = f"<sip:service@{self.target_hostport}>" + (f";tag={to_tag}" if to_tag else "")
        number = self.cseq if cseq is None else cseq
        text = (f"{method} {uri or f'sip:service@{self.target_hostport}'} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {self.hostport};branch={branch}\r\n"
                f"Max-Forwards: 70\r\n"
                f"From: \"Peer\" <sip:peer@{self.hostport}>;tag={self.from_tag}\r\n"
                f"To: {to}\r\n"
                f"Call-ID: {self.call_id}\r\n"
                f"CSeq: {number} {method}\r\n"
                f"Contact: {contact or f'<sip:peer@{self.hostport}>'}\r\n{extra}")
        if body:
            text += f"Content-Type: {content_type}\r\n"
        text += f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
        return text

    def invite(self, *, formats: str = "0 8 101", offer: bool = True, extra: str = "",
               direction: str = "sendrecv", contact: str | None = None) -> str:
        self.branch = "z9hG4bK" + secrets.token_hex(6)
        body = sdp_offer(self.host, self.rtp_port, formats, direction=direction) if offer else ""
        self.invite_text = self.request("INVITE", branch=self.branch, body=body, extra=extra,
                                        contact=contact)
        self.send(self.invite_text)
        return self.invite_text

    def ack(self, response: Response, body: str = "") -> None:
        """ACK a 2xx (new branch, in the dialog) or a failure (the INVITE's branch)."""
        tag = response.to.tag
        if response.status >= 300:
            self.send(self.request("ACK", branch=self.branch, cseq=self.cseq, to_tag=tag))
        else:
            self.send(self.request("ACK", cseq=self.cseq, to_tag=tag, body=body))

    def cancel(self) -> None:
        self.send(self.request("CANCEL", branch=self.branch, cseq=self.cseq))

    def bye(self) -> str:
        self.cseq += 1
        text = self.request("BYE", cseq=self.cseq, to_tag=self.to_tag)
        self.send(text)
        return text

    def respond_to(self, request: Request, status: int, reason: str = "OK") -> None:
        lines = [f"SIP/2.0 {status} {reason}"]
        for name, value in request.headers:
            if name in ("Via", "From", "To", "Call-ID", "CSeq"):
                lines.append(f"{name}: {value}")
        lines.append("Content-Length: 0")
        self.send("\r\n".join(lines) + "\r\n\r\n")

    # ------------------------------------------------------------------ receiving
    def poll(self, seconds: float) -> list[Received]:
        """Everything that arrives within ``seconds``."""
        got: list[Received] = []
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                return got
            item = Received(time.monotonic(), parse_message(data), data)
            self.received.append(item)
            got.append(item)

    def expect(self, status: int | str, timeout: float = 5.0, *, method: str | None = None
               ) -> Request | Response:
        """The next message that is a response with ``status`` (for ``method`` if given) or
        a request of method ``status``; other messages are recorded and skipped."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in self.poll(min(0.05, max(0.0, deadline - time.monotonic()))):
                message = item.message
                if isinstance(message, Response) and message.status == status and (
                        method is None or message.cseq[1] == method):
                    self._note(message)
                    return message
                if isinstance(message, Request) and message.method == status:
                    return message
        seen = [_describe(item.message) for item in self.received]
        raise AssertionError(f"no {status} within {timeout} s; received: {seen}")

    def _note(self, response: Response) -> None:
        if response.to.tag and response.cseq[1] == "INVITE":
            self.to_tag = response.to.tag
        if response.body and b"m=audio" in response.body:
            self.remote_rtp = sdp_address(response.body)

    # ------------------------------------------------------------------ RTP
    def rtp_packets(self, seconds: float) -> list[RtpPacket]:
        packets = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.rtp.settimeout(left)
            try:
                data, _ = self.rtp.recvfrom(2048)
            except TimeoutError:
                break
            packets.append(RtpPacket.parse(data))
        return packets

    def drain_rtp(self) -> None:
        self.rtp.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                self.rtp.recvfrom(2048)
        self.rtp.setblocking(True)

    def send_rtp(self, packets: list[bytes], interval: float = 0.0) -> None:
        assert self.remote_rtp is not None, "no SDP from the user agent yet"
        for packet in packets:
            self.rtp.sendto(packet, self.remote_rtp)
            if interval:
                time.sleep(interval)

    def send_digits(self, digits: str, payload_type: int = 101) -> None:
        sender = RtpSender(8)
        for digit in digits:
            self.send_rtp(sender.event_packets(digit, 60, telephone_event_pt=payload_type),
                          0.002)


class ScriptedCallee:
    """The callee of one of our calls, scripted on a raw socket: it answers our INVITE as
    it is told, as one fork or several (each its own tag), and sends requests in the
    dialog a tag makes."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(3.0)
        self.port = self.sock.getsockname()[1]
        self.invite: Request | None = None
        self.source: tuple[str, int] | None = None

    def receive(self) -> Request | Response:
        data, self.source = self.sock.recvfrom(65535)
        return parse_message(data)

    def take_invite(self) -> Request:
        message = self.receive()
        assert isinstance(message, Request) and message.method == "INVITE"
        self.invite = message
        return message

    def respond(self, status: int, tag: str, body: str = "") -> None:
        assert self.invite is not None and self.source is not None
        headers = "".join(f"{name}: {value}\r\n" for name, value in self.invite.headers
                          if name in ("Via", "From", "Call-ID", "CSeq"))
        sdp = "Content-Type: application/sdp\r\n" if body else ""
        self.sock.sendto((f"SIP/2.0 {status} Status\r\n{headers}"
                          f"To: {self.invite.headers.get('To')};tag={tag}\r\n"
                          f"Contact: <sip:100@127.0.0.1:{self.port}>\r\n{sdp}"
                          f"Content-Length: {len(body)}\r\n\r\n{body}").encode(), self.source)

    def info(self, tag: str, cseq: int, signal: str) -> Response:
        """An INFO from the fork with ``tag``; the answer to it."""
        assert self.invite is not None and self.source is not None
        body = f"Signal={signal}\r\nDuration=100\r\n"
        self.sock.sendto((
            f"INFO {self.invite.headers.get('Contact').strip('<>')} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{secrets.token_hex(6)}\r\n"
            f"From: {self.invite.headers.get('To')};tag={tag}\r\n"
            f"To: {self.invite.headers.get('From')}\r\n"
            f"Call-ID: {self.invite.call_id}\r\nCSeq: {cseq} INFO\r\nMax-Forwards: 70\r\n"
            f"Content-Type: application/dtmf-relay\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        ).encode(), self.source)
        while True:
            message = self.receive()
            if isinstance(message, Response) and message.cseq == (cseq, "INFO"):
                return message

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def calling_scripted_callee(uas: Uas) -> Iterator[tuple[ScriptedCallee, UASCallChannel]]:
    """An outgoing call of ``uas``'s to a :class:`ScriptedCallee`, which has taken our
    INVITE; hung up (if still up) and closed afterwards."""
    far = ScriptedCallee()
    channel = UASCallChannel(uas.engine, backend=uas.backend, media_clock=uas.clock)
    try:
        channel.start_call(f"sip:100@127.0.0.1:{far.port}")
        far.take_invite()
        yield far, channel
    finally:
        with contextlib.suppress(Exception):
            channel.hang_up()
        far.close()


def sdp_address(body: bytes) -> tuple[str, int]:
    host, port = "", 0
    for line in body.decode().splitlines():
        if line.startswith("c=IN "):
            host = line.split()[-1]
        elif line.startswith("m=audio "):
            port = int(line.split()[1])
    return host, port


def sdp_formats(body: bytes) -> list[str]:
    for line in body.decode().splitlines():
        if line.startswith("m=audio "):
            return line.split()[3:]
    return []


def _describe(message: Request | Response) -> str:
    if isinstance(message, Response):
        return f"{message.status} ({message.cseq[1]})"
    return message.method


# --------------------------------------------------------------------------- the user agent
FAST = Timers(t1=0.05, t2=0.4, t4=0.5)


class Uas:
    """A SIP backend on an engine; each incoming call becomes a channel in :attr:`calls`."""

    def __init__(self, **options) -> None:
        self.engine = Engine().start()
        self.clock = MediaClock(self.engine)
        options.setdefault("listen", "127.0.0.1:0")
        options.setdefault("timers", FAST)
        self.backend = open_backend("sip", self.engine, **options)
        self.calls: queue.Queue[UASCallChannel] = queue.Queue()
        self.backend.on_incoming = self._incoming
        self.engine.run(self.backend.start)

    def _incoming(self, leg) -> None:
        channel = UASCallChannel(self.engine, leg, media_clock=self.clock)
        channel.create_tone_player(ToneManager(logging.getLogger("tones")))
        self.calls.put(channel)

    @property
    def address(self) -> tuple[str, int]:
        return self.backend.addresses[0]

    def channel(self, timeout: float = 5.0) -> UASCallChannel:
        return self.calls.get(timeout=timeout)

    def close(self) -> None:
        if self.engine.running:
            self.engine.run(self.backend.stop)
            self.engine.stop()


def incoming(uas: Uas, peer: SipPeer, **invite) -> UASCallChannel:
    peer.invite(**invite)
    peer.expect(100)
    return uas.channel()


def refused_while_draining(uas: Uas, peer: SipPeer) -> tuple[str, Response]:
    """``uas`` drains, and ``peer``'s INVITE is refused: (the INVITE sent, its 503)."""
    uas.engine.run(uas.backend.ua.drain)
    invite = peer.invite()
    return invite, peer.expect(503)


def answered(uas: Uas, peer: SipPeer, **invite) -> UASCallChannel:
    channel = incoming(uas, peer, **invite)
    answer_through(channel, peer)
    return channel


def answer_through(channel: UASCallChannel, peer: SipPeer) -> Response:
    """``channel`` answered (on a thread of its own) and ``peer``, its caller, acknowledging
    the 200; returns that 200."""
    result: list[State] = []
    thread = threading.Thread(target=lambda: result.append(channel.answer()))
    thread.start()
    ok = peer.expect(200, method="INVITE")
    peer.ack(ok)
    thread.join(5)
    assert result == [State.ANSWERED]
    return ok
