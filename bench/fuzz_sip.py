"""The SIP backend fed mutated datagrams: it must stay up, answer OPTIONS and take calls.

The server under test is a separate ``uascall run bench/sip_cps_app.py --backend sip``
process (ring with early media, answer, wait for the BYE). Against it, at once:

- the **fuzzer** (this file with ``--fuzzer``, a process of its own) sends ``--count``
  datagrams (200,000) at ``--rate`` a second (2,000) from 127.0.0.1, each a seed message
  with one to three mutations. Seeds: the 49 RFC 4475 torture messages
  (``/work/shared/testdata/rfc4475``, or ``tests/sim/data/rfc4475``), and real INVITE
  (with SDP), OPTIONS, CANCEL, REGISTER and responses, and requests within the dialogs
  the fuzzer holds open (BYE, re-INVITE with SDP, ACK, OPTIONS, INFO: a few real calls it
  made and ACKed, renewed when they end). Mutations: byte flips, truncation, a header
  duplicated (up to 200 times), a line dropped or two swapped, a huge value (up to 12 KB)
  or a huge number, Content-Length wrong, bad encodings (invalid UTF-8, NUL, bare CR or
  LF, overlong sequences), stray separators, the start line's token replaced, SDP lines
  broken, two messages spliced. It also behaves enough for the calls its mutants start
  to end: a 2xx to an INVITE is ACKed and the call hung up with BYE (these two sometimes
  mutated too), a request from the server is answered 200 (sometimes after a mutated
  response). Datagram ``i`` of seed ``s`` is the same on every run (``--show I`` prints
  it; the dialog's tags in it differ);
- **OPTIONS probes** from 127.0.0.3 every 50 ms, each a new transaction: lost without an
  answer in 2 s; p50/p99/max round trip;
- a **caller that behaves** (127.0.0.2) places a call every 2 s during the fuzzing
  (INVITE/100/183/200/ACK/BYE/200, retransmitting as RFC 3261 says), and ``--calls`` (10)
  one after the other at the end: each must succeed.

Afterwards the server's stderr (kept in the run's directory) is read: every ERROR line
and traceback is counted (``fuzz_server_errors``: each one a defect to fix) and the
distinct ones printed. The server must still be running.

    python bench/fuzz_sip.py [--count 200000] [--rate 2000] [--seed 1] [--calls 10]
                             [--smoke] [--show I]

``--smoke`` sends 2,000 datagrams and makes 2 calls (a few seconds). Last line:
``RESULT fuzz_datagrams=<n> fuzz_server_errors=<n> fuzz_options_lost=<n>
fuzz_options_p99_ms=<ms> fuzz_calls_during=<ok>/<n> fuzz_calls_ok=<ok>/<n> ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import re
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sip_client import (
    Caller,
    CallResult,
    OptionsProber,
    header,
    receive_datagrams,
    sdp,
    status_of,
    summary,
    to_tag,
)
from sip_cps import Processes, _terminate, cpu_seconds, uascall_server

HERE = Path(__file__).resolve().parent
TORTURE = [Path("/work/shared/testdata/rfc4475"),
           HERE.parent / "tests" / "sim" / "data" / "rfc4475"]
SERVER_HOST = "127.0.0.1"
FUZZ_HOST = "127.0.0.1"
CALLER_HOST = "127.0.0.2"
PROBE_HOST = "127.0.0.3"
#: dialogs the fuzzer keeps open for in-dialog seeds
DIALOGS = 3
#: the fuzzer's sending tick (seconds)
TICK = 0.005


# ---------------------------------------------------------------------------------- seeds
def torture_seeds() -> list[bytes]:
    for directory in TORTURE:
        files = sorted(directory.glob("*.dat"))
        if files:
            return [path.read_bytes() for path in files]
    return []


class Seeds:
    """Real messages to mutate, aimed at the server; in-dialog ones need a dialog."""

    def __init__(self, target: tuple[str, int], local: tuple[str, int], rtp_port: int) -> None:
        self.target = target
        self.local = local
        self.me = f"{local[0]}:{local[1]}"
        self.there = f"{target[0]}:{target[1]}"
        self.sdp = sdp(local[0], rtp_port)
        self.torture = torture_seeds()

    def request(self, method: str, rng: random.Random, *, call_id: str | None = None,
                from_tag: str | None = None, to: str | None = None, cseq: int | None = None,
                body: str = "", extra: str = "") -> str:
        call_id = call_id or f"fz{rng.getrandbits(48):x}@{self.local[0]}"
        from_tag = from_tag or f"{rng.getrandbits(32):x}"
        to = to or f"<sip:service@{self.there}>"
        text = (f"{method} sip:service@{self.there} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {self.me};branch=z9hG4bK{rng.getrandbits(48):x};rport\r\n"
                "Max-Forwards: 70\r\n"
                f"From: \"Fuzz\" <sip:fuzz@{self.me}>;tag={from_tag}\r\n"
                f"To: {to}\r\n"
                f"Call-ID: {call_id}\r\n"
                f"CSeq: {cseq if cseq is not None else rng.randint(1, 1000)} {method}\r\n"
                f"Contact: <sip:fuzz@{self.me}>\r\n"
                f"User-Agent: fuzz_sip\r\n{extra}")
        if body:
            text += "Content-Type: application/sdp\r\n"
        return text + f"Content-Length: {len(body.encode())}\r\n\r\n{body}"

    def response(self, rng: random.Random) -> str:
        status = rng.choice([100, 180, 183, 200, 202, 302, 404, 481, 486, 487, 500, 603])
        method = rng.choice(["INVITE", "BYE", "OPTIONS", "CANCEL"])
        return (f"SIP/2.0 {status} Whatever\r\n"
                f"Via: SIP/2.0/UDP {self.there};branch=z9hG4bK{rng.getrandbits(48):x}\r\n"
                f"From: <sip:uascall@{self.there}>;tag={rng.getrandbits(32):x}\r\n"
                f"To: <sip:fuzz@{self.me}>;tag={rng.getrandbits(32):x}\r\n"
                f"Call-ID: {rng.getrandbits(64):x}@{self.target[0]}\r\n"
                f"CSeq: {rng.randint(1, 10)} {method}\r\n"
                f"Contact: <sip:fuzz@{self.me}>\r\n"
                + (f"Content-Type: application/sdp\r\nContent-Length: {len(self.sdp)}\r\n\r\n"
                   f"{self.sdp}" if status in (183, 200) and method == "INVITE"
                   else "Content-Length: 0\r\n\r\n"))

    def pick(self, rng: random.Random, dialogs: list[Dialog]) -> bytes:
        roll = rng.random()
        if roll < 0.2 and self.torture:
            return rng.choice(self.torture)
        if roll < 0.35:
            return self.request("INVITE", rng, body=self.sdp if rng.random() < 0.9 else ""
                                ).encode()
        if roll < 0.55:
            return self.request("OPTIONS", rng).encode()
        if roll < 0.6:
            return self.request(rng.choice(["CANCEL", "REGISTER", "BYE", "ACK", "PRACK"]),
                                rng).encode()
        if roll < 0.7:
            return self.response(rng).encode()
        if dialogs:
            dialog = rng.choice(dialogs)
            method = rng.choice(["BYE", "INVITE", "INVITE", "ACK", "OPTIONS", "INFO"])
            dialog.cseq += 1
            return self.request(method, rng, call_id=dialog.call_id, from_tag=dialog.from_tag,
                                to=dialog.to, cseq=dialog.cseq,
                                body=self.sdp if method == "INVITE" else "").encode()
        return self.request("INVITE", rng, body=self.sdp).encode()


class Dialog:
    def __init__(self, call_id: str, from_tag: str, to: str, cseq: int) -> None:
        self.call_id, self.from_tag, self.to, self.cseq = call_id, from_tag, to, cseq


# ---------------------------------------------------------------------------------- mutations
JUNK = [b"\xff\xfe", b"\x00", b"\r", b"\n", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
        b"%00", b"\\", b'"', b";", b",", b"<", b">", b":", b"=", b"@", b"[", b"]", b" ",
        b"\t", b"\r\n ", b"\r\n\r\n", b";tag=", b";branch=", b";rport", b";received=",
        b"sip:", b"tel:", b"\xe2\x80\xae", b"%", b"%zz", b"::", b"[::1", b"0x", b"-1"]
NUMBERS = [b"0", b"-1", b"4294967296", b"18446744073709551616", b"9" * 40, b"1e9", b"0x10",
           b"00000000000000000001", b"2147483648", b"-0", b" 1", b"NaN"]
SDP_BREAK = [b"m=audio 0 RTP/AVP 0\r\n", b"m=audio 70000 RTP/AVP 8\r\n",
             b"m=audio 5004 RTP/AVP\r\n", b"m=video 5004 RTP/AVP 96\r\n",
             b"c=IN IP4 999.1.1.1\r\n", b"c=IN IP6 ::ffff:1.2.3.4\r\n", b"c=IN IP4 a..b\r\n",
             b"a=rtpmap:8 PCMA/0\r\n", b"a=rtpmap:101 telephone-event/8000/2/3\r\n",
             b"a=fmtp:101 0-99999\r\n", b"a=ptime:0\r\n", b"a=ptime:-20\r\n",
             b"a=sendonly\r\na=recvonly\r\n", b"m=audio 5004 RTP/AVP 8 8 8 8 8 8\r\n",
             b"o=- x y IN IP4 1.1.1.1\r\n", b"v=1\r\n", b"c=IN IP4 224.0.0.1/0\r\n",
             b"m=audio 5004/2 RTP/AVP 8\r\n", b"a=rtpmap:96 PCMA/8000\r\nm=audio 1 RTP/AVP 96\r\n"]


def _lines(data: bytes) -> tuple[list[bytes], bytes]:
    head, sep, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body if sep else b""


def _join(lines: list[bytes], body: bytes) -> bytes:
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def mutate(data: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    """One mutation of ``data``."""
    kind = rng.randrange(13)
    if kind == 0 and data:  # flip bytes
        buf = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        return bytes(buf)
    if kind == 1:  # truncate
        return data[:rng.randrange(len(data) + 1)]
    lines, body = _lines(data)
    if kind == 2 and len(lines) > 1:  # duplicate a header
        i = rng.randrange(1, len(lines))
        lines[i:i] = [lines[i]] * rng.choice([1, 2, 5, 50, 200])
        return _join(lines, body)
    if kind == 3 and len(lines) > 1:  # drop or swap lines
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        if rng.random() < 0.5:
            del lines[i]
        else:
            lines[i], lines[j] = lines[j], lines[i]
        return _join(lines, body)
    if kind == 4 and len(lines) > 1:  # a huge value
        i = rng.randrange(len(lines))
        name, _, value = lines[i].partition(b":")
        filler = rng.choice([b"a", b"9", b";x=y", b",", b"<sip:a@b>,", b"\\\"", b"%41"])
        size = rng.choice([100, 1000, 4000, 12000])
        lines[i] = name + b":" + value + filler * (size // len(filler))
        return _join(lines, body)
    if kind == 5:  # a number out of range
        numbers = list(re.finditer(rb"\d+", data))
        if numbers:
            m = rng.choice(numbers)
            return data[:m.start()] + rng.choice(NUMBERS) + data[m.end():]
    if kind == 6:  # Content-Length wrong
        wrong = rng.choice([b"0", b"-5", b"99999", str(len(body) + rng.randint(-20, 20)).encode(),
                            b"1 1", b"abc"])
        return re.sub(rb"(?im)^(content-length|l)\s*:[^\r\n]*", b"Content-Length: " + wrong,
                      data, count=1)
    if kind in (7, 8) and data:  # junk, bad encodings, separators
        i = rng.randrange(len(data) + 1)
        return data[:i] + rng.choice(JUNK) * rng.choice([1, 1, 2, 10]) + data[i:]
    if kind == 9 and lines:  # the start line's token
        parts = lines[0].split(b" ")
        k = rng.randrange(len(parts))
        parts[k] = rng.choice([b"", b"INVITE", b"SIP/2.0", b"SIP/3.0", b"sip/2.0", b"999",
                               b"1000", b"I\xffNVITE", b"sip:", b"<sip:a@b>", b"ACK", b"BYE",
                               b"x" * rng.choice([1, 100, 5000])])
        lines[0] = b" ".join(parts)
        return _join(lines, body)
    if kind == 10 and body:  # break the SDP
        sdp_lines = body.split(b"\r\n")
        i = rng.randrange(len(sdp_lines) + 1)
        if rng.random() < 0.3 and sdp_lines:
            del sdp_lines[rng.randrange(len(sdp_lines))]
        else:
            sdp_lines.insert(i, rng.choice(SDP_BREAK).rstrip(b"\r\n"))
        new = b"\r\n".join(sdp_lines)
        return re.sub(rb"(?im)^content-length\s*:[^\r\n]*",
                      b"Content-Length: " + str(len(new)).encode(), _join(lines, b""),
                      count=1) + new
    if kind == 11:  # splice with another seed
        other = rng.choice(seeds)
        return data[:rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1):]
    if kind == 12 and len(lines) > 1:  # compact forms and odd spacing
        i = rng.randrange(1, len(lines))
        name, sep, value = lines[i].partition(b":")
        lines[i] = name + rng.choice([b" ", b"\t", b"  \r\n "]) + sep + rng.choice(
            [b"", b" ", b"\r\n\t"]) + value
        return _join(lines, body)
    buf = bytearray(data)  # a fallback: one flipped byte
    if buf:
        buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    return bytes(buf)


def datagram(seed: int, index: int, seeds: Seeds, dialogs: list[Dialog]) -> bytes:
    """Datagram ``index`` of the run with ``seed``: a seed message mutated 1-3 times (a
    tenth of them sent unmutated, so valid messages keep the calls going)."""
    rng = random.Random(seed * 1_000_003 + index)
    data = seeds.pick(rng, dialogs)
    if rng.random() < 0.1:
        return data
    pool = seeds.torture or [data]
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        data = mutate(data, rng, pool)
    return data[:20000]


# ---------------------------------------------------------------------------------- fuzzer
def fuzzer(target: tuple[str, int], count: int, rate: float, seed: int) -> dict[str, object]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind((FUZZ_HOST, 0))
    sock.setblocking(False)
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind((FUZZ_HOST, 0))
    rtp.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(rtp, selectors.EVENT_READ)
    seeds = Seeds(target, sock.getsockname(), rtp.getsockname()[1])
    rng = random.Random(seed)  # for the fuzzer's own choices (which answers to mutate)
    dialogs: list[Dialog] = []
    counts = {"sent": 0, "send_errors": 0, "answers": 0, "requests": 0, "rtp": 0,
              "acked": 0, "dialogs": 0}
    by_class: dict[str, int] = {}
    pending_dialog: dict[str, float] = {}  # Call-ID of an INVITE made to be held open

    def send(data: bytes) -> None:
        try:
            sock.sendto(data, target)
        except OSError:
            counts["send_errors"] += 1

    def on_datagram(data: bytes) -> None:
        status = status_of(data)
        if status is None:
            counts["requests"] += 1
            method = data.split(b" ", 1)[0]
            if method == b"ACK":
                return
            reply = _answer(data, 200)
            if rng.random() < 0.2:
                send(mutate(_answer(data, rng.choice([100, 200, 481, 500])), rng, [reply]))
            send(reply)
            if method == b"BYE":
                call_id = (header(data, b"call-id") or b"").decode(errors="replace")
                dialogs[:] = [d for d in dialogs if d.call_id != call_id]
            return
        counts["answers"] += 1
        key = f"{status // 100}xx"
        by_class[key] = by_class.get(key, 0) + 1
        cseq = header(data, b"cseq") or b""
        if not (200 <= status < 300 and cseq.endswith(b"INVITE")):
            return
        # A 2xx to an INVITE (one of ours, mutated or not): ACK it, then hang up unless it
        # is a dialog we hold open for in-dialog seeds.
        tag = to_tag(data)
        call_id = (header(data, b"call-id") or b"").decode(errors="replace")
        if tag is None:
            return
        number = cseq.split()[0] if cseq.split() else b"1"
        ack = _in_dialog(data, b"ACK", number)
        send(mutate(ack, rng, [ack]) if rng.random() < 0.05 else ack)
        counts["acked"] += 1
        if call_id in pending_dialog:
            del pending_dialog[call_id]
            to = (header(data, b"to") or b"").decode(errors="replace")
            from_tag = (header(data, b"from") or b"").decode(errors="replace")
            from_tag = from_tag.partition(";tag=")[2].split(";")[0]
            dialogs.append(Dialog(call_id, from_tag, to, int(number or 1) + 1))
            counts["dialogs"] += 1
            return
        with contextlib.suppress(ValueError):
            bye = _in_dialog(data, b"BYE", str(int(number) + 1).encode())
            send(mutate(bye, rng, [bye]) if rng.random() < 0.05 else bye)

    def receive(timeout: float) -> None:
        receive_datagrams(selector, timeout, on_datagram, rtp, counts)

    start = time.monotonic()
    print(json.dumps({"started": start}), flush=True)
    marks = []
    n = 0
    while n < count:
        now = time.monotonic()
        if len(dialogs) + len(pending_dialog) < DIALOGS:
            dialog_rng = random.Random(seed * 7 + n)
            invite = seeds.request("INVITE", dialog_rng, body=seeds.sdp, cseq=1)
            pending_dialog[invite.split("Call-ID: ")[1].split("\r\n")[0]] = now
            send(invite.encode())
        for call_id, since in list(pending_dialog.items()):
            if now - since > 10:
                del pending_dialog[call_id]
        due = min(int((now - start) * rate) - n, 500, count - n)
        for _ in range(max(0, due)):
            send(datagram(seed, n, seeds, dialogs))
            counts["sent"] += 1
            n += 1
            if n % 10000 == 0:
                marks.append((n, time.monotonic()))
        receive(TICK)
    stopped = time.monotonic()
    while time.monotonic() < stopped + 3.0:
        receive(0.05)
    for dialog in dialogs:  # hang up what we held open
        send(seeds.request("BYE", rng, call_id=dialog.call_id, from_tag=dialog.from_tag,
                           to=dialog.to, cseq=dialog.cseq + 1).encode())
    receive(0.5)
    return {"started": start, "stopped": stopped, "marks": marks, "by_class": by_class,
            **counts}


def _answer(request: bytes, status: int) -> bytes:
    """A response to ``request`` (Via, From, To, Call-ID, CSeq copied as they came)."""
    head = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    keep = [line for line in head[1:] if line.split(b":", 1)[0].strip().lower() in (
        b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq")]
    return b"\r\n".join([b"SIP/2.0 %d Answer" % status, *keep, b"Content-Length: 0"]
                        ) + b"\r\n\r\n"


def _in_dialog(response: bytes, method: bytes, cseq: bytes) -> bytes:
    """ACK or BYE in the dialog a 2xx set up (its From, To and Call-ID as they came)."""
    head = response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    out = [b"%s %s SIP/2.0" % (method, _contact_uri(head))]
    via = None
    for line in head[1:]:
        name = line.split(b":", 1)[0].strip().lower()
        if name in (b"from", b"f", b"to", b"t", b"call-id", b"i"):
            out.append(line)
        elif name in (b"via", b"v") and via is None:
            via = line.split(b":", 1)[1].strip().split(b";")[0]
            out.append(b"Via: %s;branch=z9hG4bK%s" % (via, secrets.token_hex(6).encode()))
    out += [b"CSeq: %s %s" % (cseq, method), b"Max-Forwards: 70", b"Content-Length: 0"]
    return b"\r\n".join(out) + b"\r\n\r\n"


def _contact_uri(head: list[bytes]) -> bytes:
    for line in head[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"contact", b"m"):
            m = re.search(rb"<([^>]*)>", value)
            if m:
                return m.group(1)
    return b"sip:uascall@127.0.0.1"


# ---------------------------------------------------------------------------------- the run
RE_ERROR = re.compile(r"^\S+ \S+ (ERROR|CRITICAL) ")


def server_errors(text: str) -> list[str]:
    """ERROR lines and tracebacks of the server's log."""
    found = [line for line in text.splitlines() if RE_ERROR.match(line)]
    return found + ["Traceback"] * max(0, text.count("Traceback") - len(
        [line for line in found if "Traceback" in line]))


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="uascall-fuzz-"))
    procs = Processes()
    signal.signal(signal.SIGTERM, _terminate)
    print(f"# {datetime.date.today()} {platform.node()} {platform.machine()} "
          f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f}; "
          f"seed {args.seed}; work directory {workdir}", flush=True)
    try:
        with uascall_server(procs, workdir, "") as (server, port, stderr):
            return measure(args, procs, server, (SERVER_HOST, port), stderr)
    finally:
        procs.stop_all()


def measure(args: argparse.Namespace, procs: Processes, server: subprocess.Popen,
            target: tuple[str, int], stderr: Path) -> int:
    caller = Caller(target, CALLER_HOST)
    prober = OptionsProber(target, PROBE_HOST).start()
    cpu0 = cpu_seconds(server.pid)
    argv = [sys.executable, str(Path(__file__).resolve()), "--fuzzer", str(target[1]),
            "--count", str(args.count), "--rate", str(args.rate), "--seed", str(args.seed)]
    fuzz = procs.start(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    assert fuzz.stdout is not None
    started = json.loads(fuzz.stdout.readline())["started"]
    print(f"fuzzing: {args.count} datagrams at {args.rate:.0f}/s", flush=True)
    during: list[CallResult] = []
    threads = []
    reader: list[str] = []
    reading = threading.Thread(target=lambda: reader.append(fuzz.stdout.readline()),
                               daemon=True)
    reading.start()
    next_call = time.monotonic() + 1.0
    while reading.is_alive():
        if time.monotonic() >= next_call:
            result = CallResult(time.monotonic())
            during.append(result)

            def place(result: CallResult = result) -> None:
                got = caller.call(hold=0.2, setup_timeout=8.0)
                result.outcome, result.setup_s = got.outcome, got.setup_s

            thread = threading.Thread(target=place, daemon=True)
            thread.start()
            threads.append(thread)
            next_call += 2.0
        reading.join(0.1)
        if server.poll() is not None:
            break
    ended = time.monotonic()
    for thread in threads:
        thread.join(40)
    cpu = cpu_seconds(server.pid) - cpu0 if server.poll() is None else 0.0
    report = json.loads(reader[0]) if reader and reader[0] else {}
    procs.stop(fuzz)
    after = [caller.call(hold=0.1, setup_timeout=8.0) for _ in range(args.calls)]
    prober.stop()
    alive = server.poll() is None
    procs.stop(server, timeout=5.0)
    probes = prober.between(started, ended + 60)
    sent, lost, p50, p99, worst = summary(probes)
    errors = server_errors(stderr.read_text(errors="replace"))
    distinct: dict[str, int] = {}
    for line in errors:
        key = re.sub(r"^\S+ \S+ ", "", line)[:160]
        distinct[key] = distinct.get(key, 0) + 1
    good_during = sum(r.outcome == "ok" for r in during)
    good_after = sum(r.outcome == "ok" for r in after)
    seconds = max(1e-9, report.get("stopped", ended) - started)
    print(f"\nfuzzer: sent {report.get('sent', 0)} datagrams in {seconds:.1f} s "
          f"({report.get('send_errors', 0)} send errors); answers by class "
          f"{report.get('by_class', {})}; {report.get('requests', 0)} requests from the "
          f"server, {report.get('acked', 0)} 2xx ACKed, {report.get('dialogs', 0)} dialogs "
          f"held, {report.get('rtp', 0)} RTP packets")
    print(f"server: {'alive' if alive else 'DEAD'}; CPU {100 * cpu / seconds:.0f} % of a core "
          f"while fuzzed; {len(errors)} ERROR lines or tracebacks in its log")
    for line, n in sorted(distinct.items(), key=lambda item: -item[1])[:20]:
        print(f"  {n:6d} x {line}")
    print(f"OPTIONS: {sent} sent, {lost} lost, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"max {worst:.1f} ms")
    outcomes: dict[str, int] = {}
    for r in [*during, *after]:
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
    print(f"calls from {CALLER_HOST}: {good_during}/{len(during)} good during the fuzzing, "
          f"{good_after}/{len(after)} after it ({outcomes})")
    print(f"RESULT fuzz_datagrams={report.get('sent', 0)} fuzz_server_errors={len(errors)} "
          f"fuzz_alive={int(alive)} fuzz_options_lost={lost} fuzz_options_p99_ms={p99:.1f} "
          f"fuzz_calls_during={good_during}/{len(during)} "
          f"fuzz_calls_ok={good_after}/{len(after)} "
          f"fuzz_server_cpu_pct={100 * cpu / seconds:.0f}")
    return 0 if alive else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200_000, help="datagrams to send")
    parser.add_argument("--rate", type=float, default=2000.0, help="datagrams a second")
    parser.add_argument("--seed", type=int, default=1, help="the mutator's seed")
    parser.add_argument("--calls", type=int, default=10, help="calls made at the end")
    parser.add_argument("--smoke", action="store_true", help="a few seconds (for CI)")
    parser.add_argument("--show", type=int, metavar="I", help="print datagram I and exit")
    parser.add_argument("--fuzzer", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.show is not None:
        seeds = Seeds((SERVER_HOST, 5060), (FUZZ_HOST, 40000), 40002)
        dialogs = [Dialog("held@127.0.0.1", "fromtag", "<sip:service@127.0.0.1>;tag=totag",
                          2)]
        print(repr(datagram(args.seed, args.show, seeds, dialogs)))
        return 0
    if args.fuzzer:
        report = fuzzer((SERVER_HOST, args.fuzzer), args.count, args.rate, args.seed)
        print(json.dumps(report), flush=True)
        return 0
    if args.smoke:
        args.count, args.calls = 2000, 2
    return run(args)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
