"""The SIP backend under an INVITE flood: memory, OPTIONS, a caller that behaves, recovery.

The server under test is a separate ``uascall run bench/sip_cps_app.py --backend sip``
process (ring with early media, answer, wait for the BYE: about 400 calls/s on this
machine, see ``bench/sip_cps.py``). Against it, at once:

- the **flood**: a sender process (this file with ``--flooder``) sends ``--rate`` new
  INVITEs a second (4,000: ten times capacity) for ``--seconds`` (20) from one source
  (127.0.0.1; ``--sources N`` spreads it over N loopback addresses, as a spoofed flood
  would be), each a new call with an SDP offer, and never ACKs, retransmits or answers
  anything. It counts what comes back: 503s, retransmitted 503s (a second one for the same
  Call-ID), 100/18x/200 (flood calls the server took), BYEs;
- a **caller that behaves** (:class:`sip_client.Caller` from 127.0.0.2): it completes
  ``--warm`` calls before the flood (so it is a source with a record of completed calls),
  holds one call open across the flood start and hangs it up half-way through (its BYE
  must be answered 200), and places a call every ``--call-interval`` s during the flood and
  after it, each INVITE/100/183/200/ACK/BYE/200 with RFC 3261 retransmissions. A call
  counts as good when it ended with the BYE's 200; one answered 503 is refused;
- **OPTIONS probes** from 127.0.0.3 every 50 ms, no retransmission: a probe is lost
  without an answer in 2 s; round trips during the flood and after it (p50, p99, max);
- the server's **RSS** (``/proc/PID/status`` VmRSS) every 100 ms: at the start (after the
  warm-up calls), its peak, and at the end (``--after`` s after the flood stopped: 60,
  by when the flood's calls are over, each 64*T1 = 32 s waiting for its ACK and as long
  for the BYE the flood never answers);
- **recovery**: from the flood's end to the end of the last probe or call attempt that
  went wrong (lost or later than 100 ms, refused or failed); 0 when nothing went wrong
  after the flood.

The server's stderr is kept in the run's directory; its tracebacks are counted
(``flood_server_errors``, which must be 0). The issue's goals: peak RSS under 100 MB,
back within 10 % of the start after, no retransmitted 503, OPTIONS answered promptly,
calls of the caller that behaves getting through.

    python bench/flood_sip.py [--rate 4000] [--seconds 20] [--after 60] [--sources 1]
                              [--call-interval 0.5] [--smoke]

``--smoke`` floods at 500/s for 1.5 s and waits 3 s (a few seconds in all; its figures
mean nothing). Last line: ``RESULT flood_peak_rss_mb=<MB> flood_after_rss_pct=<%>
flood_options_lost=<n> flood_options_p99_ms=<ms> flood_good_calls=<ok>/<n> ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
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
    receive_datagrams,
    rss_mb,
    sdp,
    status_of,
    summary,
)
from sip_cps import Processes, _terminate, cpu_seconds, uascall_server

HERE = Path(__file__).resolve().parent
SERVER_HOST = "127.0.0.1"
FLOOD_HOST = "127.0.0.1"
CALLER_HOST = "127.0.0.2"
PROBE_HOST = "127.0.0.3"
#: a probe or call slower than this is "not normal" (for the recovery time)
NORMAL_MS = 100.0
#: the flooder's sending tick (seconds)
TICK = 0.005


# ---------------------------------------------------------------------------------- flooder
def flooder(target: tuple[str, int], rate: float, seconds: float, drain: float,
            sources: int) -> dict[str, object]:
    """Send the flood; then keep counting what comes back for ``drain`` s."""
    socks = []
    for i in range(sources):
        host = FLOOD_HOST if sources == 1 else f"127.1.{i // 250}.{i % 250 + 1}"
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind((host, 0))
        sock.setblocking(False)
        socks.append(sock)
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind((FLOOD_HOST, 0))
    rtp.setblocking(False)
    selector = selectors.DefaultSelector()
    for sock in [*socks, rtp]:
        selector.register(sock, selectors.EVENT_READ)
    body = sdp(FLOOD_HOST, rtp.getsockname()[1]).encode()
    host, port = target
    templates = []
    for sock in socks:
        me = "{}:{}".format(*sock.getsockname())
        templates.append((
            f"INVITE sip:flood@{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {me};branch=z9hG4bKfl%d{secrets.token_hex(3)};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:flood@{me}>;tag=f%d\r\n"
            f"To: <sip:service@{host}:{port}>\r\n"
            "Call-ID: flood-%d@bench\r\n"
            "CSeq: 1 INVITE\r\n"
            f"Contact: <sip:flood@{me}>\r\n"
            "Content-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    counts = {"sent": 0, "send_errors": 0, "503": 0, "503_retransmissions": 0,
              "100": 0, "18x": 0, "200": 0, "other": 0, "bye": 0, "rtp": 0}
    refused: set[bytes] = set()

    def on_datagram(data: bytes) -> None:
        status = status_of(data)
        if status == 503:
            call_id = data.partition(b"Call-ID: ")[2].partition(b"\r\n")[0]
            if call_id in refused:
                counts["503_retransmissions"] += 1
            else:
                refused.add(call_id)
                counts["503"] += 1
        elif status == 100:
            counts["100"] += 1
        elif status is not None and 180 <= status < 190:
            counts["18x"] += 1
        elif status == 200:
            counts["200"] += 1
        elif data.startswith(b"BYE "):
            counts["bye"] += 1
        else:
            counts["other"] += 1

    def receive(timeout: float) -> None:
        receive_datagrams(selector, timeout, on_datagram, rtp, counts)

    start = time.monotonic()
    end = start + seconds
    print(json.dumps({"started": start}), flush=True)
    n = 0
    while (now := time.monotonic()) < end:
        due = min(int((now - start) * rate) - n, 1000)
        for _ in range(max(0, due)):
            sock = socks[n % sources]
            try:
                sock.sendto(templates[n % sources] % (n, n, n), target)
                counts["sent"] += 1
            except OSError:
                counts["send_errors"] += 1
            n += 1
        receive(max(0.0, min(TICK, end - time.monotonic())))
    stopped = time.monotonic()
    while time.monotonic() < stopped + drain:
        receive(0.05)
    return {"started": start, "stopped": stopped, **counts}


# ---------------------------------------------------------------------------------- the run
class Sampler:
    """The server's RSS every 100 ms on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append((time.monotonic(), rss_mb(self.pid)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self) -> float:
        return max((mb for _, mb in self.samples), default=0.0)


def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="uascall-flood-"))
    procs = Processes()
    signal.signal(signal.SIGTERM, _terminate)
    print(f"# {datetime.date.today()} {platform.node()} {platform.machine()} "
          f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f}; "
          f"work directory {workdir}", flush=True)
    try:
        with uascall_server(procs, workdir, "") as (server, port, stderr):
            target = (SERVER_HOST, port)
            return measure(args, procs, server, target, stderr)
    finally:
        procs.stop_all()


def measure(args: argparse.Namespace, procs: Processes, server: subprocess.Popen,
            target: tuple[str, int], stderr: Path) -> int:
    caller = Caller(target, CALLER_HOST)
    warm = [caller.call(hold=0.05) for _ in range(args.warm)]
    print(f"warm-up calls from {CALLER_HOST}: "
          f"{sum(r.outcome == 'ok' for r in warm)}/{len(warm)} ok", flush=True)
    hang_up = threading.Event()
    held: list[CallResult] = []
    held_thread = threading.Thread(target=lambda: held.append(caller.call(held=hang_up)))
    held_thread.start()
    time.sleep(1.0)
    start_rss = rss_mb(server.pid)
    sampler = Sampler(server.pid)
    prober = OptionsProber(target, PROBE_HOST).start()
    time.sleep(1.0)
    cpu0 = cpu_seconds(server.pid)
    argv = [sys.executable, str(Path(__file__).resolve()), "--flooder", f"{target[1]}",
            "--rate", str(args.rate), "--seconds", str(args.seconds), "--after",
            str(args.after), "--sources", str(args.sources)]
    flood = procs.start(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    assert flood.stdout is not None
    flood_start = json.loads(flood.stdout.readline())["started"]
    flood_end = flood_start + args.seconds
    print(f"flooding {args.rate}/s for {args.seconds} s from {args.sources} source(s); "
          f"server RSS {start_rss:.1f} MB", flush=True)
    attempts: list[CallResult] = []
    threads: list[threading.Thread] = []
    next_call = time.monotonic()
    end = flood_end + args.after
    cpu_flood = None
    while (now := time.monotonic()) < end:
        if not hang_up.is_set() and now >= flood_start + args.seconds / 2:
            hang_up.set()
        if cpu_flood is None and now >= flood_end:
            cpu_flood = cpu_seconds(server.pid) - cpu0
        if now >= next_call and (now < flood_end or now < end - 8.0):
            result = CallResult(now)
            attempts.append(result)

            def place(result: CallResult = result) -> None:
                got = caller.call(hold=0.2, setup_timeout=8.0)
                result.outcome, result.setup_s = got.outcome, got.setup_s
                result.invite_retransmissions = got.invite_retransmissions

            thread = threading.Thread(target=place, daemon=True)
            thread.start()
            threads.append(thread)
            next_call += args.call_interval
        time.sleep(0.02)
    hang_up.set()
    for thread in [*threads, held_thread]:
        thread.join(40)
    prober.stop()
    sampler.stop()
    report = json.loads(flood.stdout.readline() or "{}")
    procs.stop(flood)
    after_rss = rss_mb(server.pid)
    alive = server.poll() is None
    # Calls of the flood still waiting for their ACK would hold a graceful stop for 64*T1.
    procs.stop(server, timeout=5.0)
    return print_results(args, start_rss, sampler, after_rss, prober, attempts, held,
                         flood_start, flood_end, report, cpu_flood or 0.0, alive, stderr)


def print_results(args: argparse.Namespace, start_rss: float, sampler: Sampler,
                  after_rss: float, prober: OptionsProber, attempts: list[CallResult],
                  held: list[CallResult], flood_start: float, flood_end: float,
                  report: dict, cpu_flood: float, alive: bool, stderr: Path) -> int:
    during = prober.between(flood_start, flood_end)
    after = prober.between(flood_end, flood_end + args.after)
    sent, lost, p50, p99, worst = summary(during)
    a_sent, a_lost, a_p50, a_p99, a_worst = summary(after)
    in_flood = [r for r in attempts if flood_start <= r.started < flood_end]
    later = [r for r in attempts if r.started >= flood_end]
    good = sum(r.outcome == "ok" for r in in_flood)
    outcomes: dict[str, int] = {}
    for r in in_flood:
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
    # Recovery: the end of the last thing after the flood that was not normal.
    bad_until = flood_end
    for probe in after:
        if probe.rtt is None or probe.rtt * 1e3 > NORMAL_MS:
            bad_until = max(bad_until, probe.sent + (probe.rtt or prober.lost_after))
    for r in later:
        if r.outcome != "ok" or r.setup_s * 1e3 > NORMAL_MS:
            bad_until = max(bad_until, r.started + max(r.setup_s, args.call_interval))
    recovery = bad_until - flood_end
    text = stderr.read_text(errors="replace")
    errors = text.count("Traceback") + text.count("unexpected error")
    retrans = sum(r.invite_retransmissions for r in in_flood)
    print(f"\nflood: sent {report.get('sent', 0)} INVITEs ({report.get('send_errors', 0)} "
          f"send errors); answered 503 {report.get('503', 0)} times, "
          f"{report.get('503_retransmissions', 0)} retransmitted 503s; "
          f"{report.get('100', 0)} x 100, {report.get('18x', 0)} x 18x, "
          f"{report.get('200', 0)} x 200, {report.get('bye', 0)} BYEs, "
          f"{report.get('rtp', 0)} RTP packets, {report.get('other', 0)} other")
    print(f"server RSS: {start_rss:.1f} MB at the start, peak {sampler.peak():.1f} MB, "
          f"{after_rss:.1f} MB {args.after:.0f} s after the flood; CPU during the flood "
          f"{100 * cpu_flood / args.seconds:.0f} % of a core; "
          f"{'alive' if alive else 'DEAD'}; {errors} tracebacks in its log")
    print(f"OPTIONS during the flood: {sent} sent, {lost} lost, p50 {p50:.1f} ms, "
          f"p99 {p99:.1f} ms, max {worst:.1f} ms")
    slow = sorted((p for p in during if p.rtt is None or p.rtt * 1e3 > NORMAL_MS),
                  key=lambda p: p.sent)
    if slow:
        print("  slower than {:.0f} ms or lost, at (s into the flood): {}".format(
            NORMAL_MS, ", ".join(f"{p.sent - flood_start:.2f}" for p in slow[:20])))
    print(f"OPTIONS after the flood: {a_sent} sent, {a_lost} lost, p50 {a_p50:.1f} ms, "
          f"p99 {a_p99:.1f} ms, max {a_worst:.1f} ms")
    print(f"calls from {CALLER_HOST} during the flood: {good}/{len(in_flood)} good "
          f"({', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))}; "
          f"{retrans} INVITE retransmissions); after it: "
          f"{sum(r.outcome == 'ok' for r in later)}/{len(later)}; the call held across the "
          f"flood start: {held[0].outcome if held else 'unfinished'}")
    print(f"recovery: {recovery:.1f} s after the flood's end")
    after_pct = 100 * (after_rss - start_rss) / start_rss if start_rss else 0.0
    print(f"RESULT flood_peak_rss_mb={sampler.peak():.1f} flood_start_rss_mb={start_rss:.1f} "
          f"flood_after_rss_pct={after_pct:.1f} flood_options_lost={lost} "
          f"flood_options_p99_ms={p99:.1f} flood_options_after_p99_ms={a_p99:.1f} "
          f"flood_good_calls={good}/{len(in_flood)} "
          f"flood_bye_ok={int(bool(held) and held[0].outcome == 'ok')} "
          f"flood_503s={report.get('503', 0)} "
          f"flood_503_retransmissions={report.get('503_retransmissions', 0)} "
          f"flood_accepted={report.get('100', 0)} flood_recovery_s={recovery:.1f} "
          f"flood_server_cpu_pct={100 * cpu_flood / args.seconds:.0f} "
          f"flood_server_errors={errors}")
    return 0 if alive else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=4000.0, help="INVITEs a second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the flood lasts")
    parser.add_argument("--after", type=float, default=60.0,
                        help="seconds measured after the flood (RSS at the end of them)")
    parser.add_argument("--sources", type=int, default=1,
                        help="loopback addresses the flood comes from (default 1)")
    parser.add_argument("--warm", type=int, default=5,
                        help="calls the caller that behaves completes before the flood")
    parser.add_argument("--call-interval", type=float, default=0.5,
                        help="seconds between that caller's calls during and after")
    parser.add_argument("--smoke", action="store_true", help="a few seconds (for CI)")
    parser.add_argument("--flooder", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flooder:
        report = flooder((SERVER_HOST, args.flooder), args.rate, args.seconds, args.after,
                         args.sources)
        print(json.dumps(report), flush=True)
        return 0
    if args.smoke:
        args.rate, args.seconds, args.after, args.warm = 500.0, 1.5, 3.0, 1
    return run(args)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
