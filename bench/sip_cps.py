"""SIP call rate and RTP stream capacity on loopback: uascall beside SIPp and sippy.

Four measurements, side by side in one run (SIPp and the server under test share this
machine's cores, so every figure includes that contention):

1. ``sip_cps``: calls per second the uascall SIP backend sustains with zero failed calls.
   SIPp is the caller (``tests/interop/scenarios/uac_early_media.xml``, ``hold_ms 0``, no
   RTP echo); each call is INVITE, 100, 183+SDP, 200+SDP, ACK, BYE, 200. The server is a
   separate ``uascall run bench/sip_cps_app.py --backend sip`` process: a UAS-style
   application with a thread per call that rings with early media (its RTP goes to
   SIPp's media port), answers, and waits for the caller's BYE.
2. ``sipp_uas_cps``: the same ladder against SIPp's own UAS
   (``tests/interop/scenarios/uas_183.xml``): the harness's ceiling.
3. ``sippy_cps``: the same ladder against a sippy 2.x UAS (183 + SDP, then 200), installed
   into its own venv under ``~/.cache/uascall/bench-sippy-venv`` (never into ours).
4. ``rtp_streams``: in this process, N concurrent 20 ms G.711 streams on one engine (one
   :class:`~uascall.sip.media.RtpTicker`), each fed by a :class:`~uascall.media.player.Player`
   playing a looped ringback tone as a real call does (each source starts at its own point
   of the cadence, as calls that began at different times do; ``--silence`` leaves the
   players out), sent to a sink process that counts packets (reading every millisecond:
   a reader asleep in recv is woken by each datagram from within our sendto, a cost of
   loopback, not of sending RTP). The largest N with no tick late by more than 5 ms and
   no packet lost.

Each rate runs ``--seconds`` seconds (``-m rate*seconds`` calls); the ladder stops at the
first rate with a failed call or that SIPp could not offer (under 95 % of it), and the
result is the highest rate before that. 503s (the backend's overload control) count as
failures and are shown on their own. CPU is read from ``/proc/PID/stat`` (user + system
time of every thread) and given as a share of one core over the SIPp run's wall time.
A rate can pass while the server falls behind (SIPp retransmits, and the last calls end
long after the last was offered): the row says so, and a last comment line gives, per
server, the highest rate without a single retransmission. ``--profile RATE`` runs the
uascall server once more at RATE under py-spy (``--gil``) and prints what dominates.
``--gc`` times the server's cyclic GC passes (``gc.callbacks``, through a wrapper that
starts ``uascall``) and prints, for the whole ladder, how many passes each generation
made, how long they took in all and the longest, and how many unreachable objects (garbage
in reference cycles, which only the collector frees) they found: a full pass over tens of
thousands of lingering transactions holds the engine long enough for overload control to
refuse calls.

``--app examples/early_media.py`` measures a real application instead of the bare one
(``app_cps`` in place of ``sip_cps``): SIPp calls with ``uac_callee_bye.xml`` (the
application rings with its greeting and ringback as early media, answers, plays a file
and hangs up itself, about ``--call-seconds`` a call, so hundreds of calls and RTP
streams are up at once); a rung passes with every call successful and no 20 ms tick of
the server's (its RTP ticker's, its media clock's) more than 5 ms late, read through its
control socket after each rung. Such calls are being set up (not yet answered and ACKed)
for most of their time, so the server runs with ``--max-setups`` APP_MAX_SETUPS: with the
default 2,000, from 1,000 calls ringing at once (about 200 calls/s of the example) the
flood defence gives a caller none of whose calls has completed a share only, and SIPp's
first calls complete only when the first answer comes, seconds in.

    python bench/sip_cps.py [--seconds 10] [--rates 200,400,...] [--streams 250,500,...]
                            [--skip sippy,rtp] [--quick] [--profile RATE] [--gc]
                            [--app PATH [--call-seconds 10]]

Last line: ``RESULT sip_cps=<n> sipp_uas_cps=<n> sippy_cps=<n> rtp_streams=<n>``
(``app_cps=<n>`` in place of ``sip_cps`` with ``--app``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import datetime
import gc
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCENARIOS = ROOT / "tests" / "interop" / "scenarios"
UAC_SCENARIO = SCENARIOS / "uac_early_media.xml"
UAS_SCENARIO = SCENARIOS / "uas_183.xml"
#: --app: the application hangs up itself (its own BYE, which SIPp answers)
CALLEE_BYE_SCENARIO = SCENARIOS / "uac_callee_bye.xml"
APP = HERE / "sip_cps_app.py"
SIPPY_VENV = Path.home() / ".cache" / "uascall" / "bench-sippy-venv"
SIPPY_REQUIREMENT = "sippy>=2,<3"

# up to where SIPp's own UAS, or SIPp calling it, gives out (it passed 20,000 on a 2-core
# Xeon); 1,400 and 1,500 because uascall's limit (and issue 15's goal) lies there
DEFAULT_RATES = ("200,400,600,800,1000,1200,1400,1500,1600,2000,2500,3000,4000,5000,6500,"
                 "8000,10000,13000,16000,20000,25000,32000,40000,50000")
DEFAULT_STREAMS = "250,500,1000,1500,2000,2500,3000"
QUICK_RATES = "200,800"
QUICK_STREAMS = "250,1000"
QUICK_SECONDS = 3.0
HOST = "127.0.0.1"
#: SIPp's socket buffers (-buff_size); the kernel caps it at net.core.rmem_max/wmem_max
SIPP_BUFFER = 4 * 1024 * 1024
#: concurrent calls SIPp may have open (-l)
SIPP_LIMIT = 5000
#: share of the offered rate SIPp must reach for a rate to count
REACHED = 0.95
#: RtpTicker's "late" threshold, for the table's heading (uascall.sip.media.LATE_TICK)
LATE_MS = 5
#: --app: calls being set up at once before the server refuses new ones (its --max-setups)
APP_MAX_SETUPS = 10000
CLK_TCK = os.sysconf("SC_CLK_TCK")
PARTS = ("uascall", "sipp", "sippy", "rtp")


# ---------------------------------------------------------------------------------- processes
class Processes:
    """Every process the benchmark starts, each in a session (process group) of its own, so
    that stopping one ends whatever it started too."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []

    def start(self, argv: list[str], **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(argv, start_new_session=True, **kwargs)
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen, sig: int = signal.SIGTERM,
             timeout: float = 10.0) -> int | None:
        """Signal ``process``'s group, wait ``timeout`` s, then SIGKILL the group."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with contextlib.suppress(ProcessLookupError):  # stragglers it started
            os.killpg(process.pid, signal.SIGKILL)
        if process in self.running:
            self.running.remove(process)
        return process.returncode

    def stop_all(self) -> None:
        for process in list(self.running):
            self.stop(process, timeout=5.0)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that clean up


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def free_ports(singles: int, pairs: int = 0) -> list[int]:
    """Free UDP ports on 127.0.0.1, all different: ``singles`` ports, then ``pairs`` even
    ports whose odd neighbours are free too (SIPp binds media and media+1). The sockets are
    held until all are chosen, so the kernel cannot hand out one port twice."""
    with contextlib.ExitStack() as stack:
        def bind(port: int) -> int:
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            s.bind((HOST, port))
            return s.getsockname()[1]

        chosen = [bind(0) for _ in range(singles)]
        for _ in range(pairs):
            for _attempt in range(100):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    probe.bind((HOST, 0))
                    port = probe.getsockname()[1] & ~1
                try:
                    bind(port)
                    bind(port + 1)
                except OSError:
                    continue
                chosen.append(port)
                break
            else:
                raise RuntimeError("no free pair of UDP ports on 127.0.0.1")
        return chosen


def udp_bound(port: int) -> bool:
    needle = f"{socket.inet_aton(HOST)[::-1].hex().upper()}:{port:04X}"
    with open("/proc/net/udp") as f:
        return any(line.split()[1] == needle for line in list(f)[1:])


def wait_ready(process: subprocess.Popen, port: int, name: str, *, probe: bool,
               timeout: float = 30.0) -> None:
    """Until ``port`` is bound (and, with ``probe``, an OPTIONS gets any answer)."""
    deadline = time.monotonic() + timeout
    while not udp_bound(port):
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} before listening")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not bind udp {HOST}:{port} in {timeout} s")
        time.sleep(0.05)
    if not probe:
        time.sleep(0.5)
        return
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        s.settimeout(0.2)
        me = s.getsockname()[1]
        n = 0
        while time.monotonic() < deadline:
            n += 1
            s.sendto((f"OPTIONS sip:probe@{HOST}:{port} SIP/2.0\r\n"
                      f"Via: SIP/2.0/UDP {HOST}:{me};branch=z9hG4bK-probe-{n}\r\n"
                      f"From: <sip:bench@{HOST}:{me}>;tag=probe\r\n"
                      f"To: <sip:probe@{HOST}:{port}>\r\nCall-ID: probe-{n}@bench\r\n"
                      "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                      ).encode(), (HOST, port))
            with contextlib.suppress(TimeoutError):
                if s.recv(65535).startswith(b"SIP/2.0 "):
                    return
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}")
    raise RuntimeError(f"{name} does not answer OPTIONS on {HOST}:{port}")


# ---------------------------------------------------------------------------------- SIPp runs
@dataclass
class RateResult:
    rate: int
    calls: int
    ok: int = 0
    failed: int = 0
    created: int = 0
    rc: int = 0
    wall: float = 0.0
    offered_cps: float = 0.0  # the rate SIPp managed to create calls at
    retransmissions: int = 0
    unexpected: int = 0
    max_retrans: int = 0
    timeouts: int = 0
    r503: int = 0
    server_cpu: float = 0.0  # CPU seconds of the server during the run
    sipp_cpu: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def reached(self) -> bool:
        return self.offered_cps >= REACHED * self.rate

    late_ticks: int = 0  # --app: 20 ms ticks run more than 5 ms late during the run

    @property
    def passed(self) -> bool:
        return (self.failed == 0 and self.ok == self.calls and self.reached
                and not self.late_ticks)

    def row(self) -> str:
        server = 100 * self.server_cpu / self.wall if self.wall else 0.0
        sipp = 100 * self.sipp_cpu / self.wall if self.wall else 0.0
        per_call = 1e3 * self.server_cpu / self.ok if self.ok else 0.0
        broken = (self.failed or self.rc not in (0, 1) or self.ok + self.failed < self.calls
                  or self.late_ticks)
        mark = "ok" if self.passed else ("FAIL" if broken else "not offered")
        return (f"{self.rate:6d} {self.offered_cps:8.0f} {self.calls:7d} {self.ok:7d} "
                f"{self.failed:6d} {self.r503:5d} {self.retransmissions:7d} {server:7.1f} "
                f"{per_call:8.3f} {sipp:7.1f} {self.wall:6.1f}  {mark}"
                + (f"  ({'; '.join(self.notes)})" if self.notes else ""))


TABLE_HEAD = (f"{'rate':>6} {'offered':>8} {'calls':>7} {'ok':>7} {'failed':>6} {'503s':>5} "
              f"{'retrans':>7} {'srv CPU':>7} {'ms/call':>8} {'SIPp':>7} {'wall':>6}")
TABLE_UNITS = (f"{'cps':>6} {'cps':>8} {'':>7} {'':>7} {'':>6} {'':>5} {'':>7} "
               f"{'% core':>7} {'srv CPU':>8} {'% core':>7} {'s':>6}")

RE_REFUSED = re.compile(r"answering a new INVITE 503 \((\d+) refused since")
RE_503 = re.compile(rb"Aborting call on unexpected message[^\n]*received 'SIP/2\.0 503 ")


def _stat_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [row for row in csv.DictReader(f, delimiter=";") if row.get("StartTime")]


def _epoch(stamp: str) -> float:
    return float(stamp.split("\t")[-1])


def run_sipp_uac(procs: Processes, workdir: Path, target_port: int, rate: int,
                 seconds: float, server_pid: int | None, *, scenario: Path = UAC_SCENARIO,
                 call_seconds: float = 0.0) -> RateResult:
    """One rung of the ladder: SIPp calls ``target_port`` at ``rate`` for ``seconds``
    (``scenario``; ``call_seconds``: how long the server holds each call)."""
    calls = max(1, round(rate * seconds))
    result = RateResult(rate, calls)
    rundir = workdir / f"uac-{target_port}-{rate}"
    rundir.mkdir(parents=True, exist_ok=True)
    stat = rundir / "stat.csv"
    local_port, media_port = free_ports(1, 1)
    deadline = 2 * seconds + 60 + 2 * call_seconds
    # the load settings of a scenario that takes them (its <Global variables=...>)
    declared = re.search(r'<Global variables="([^"]*)"', scenario.read_text())
    names = declared.group(1).split(",") if declared else []
    variables = [word for name in ("hold_ms", "ack_delay_ms") if name in names
                 for word in ("-set", name, "0")]
    argv = ["sipp", f"{HOST}:{target_port}", "-sf", str(scenario), *variables,
            "-i", HOST, "-p", str(local_port), "-mi", HOST, "-mp", str(media_port),
            "-r", str(rate), "-m", str(calls), "-l", str(SIPP_LIMIT),
            "-buff_size", str(SIPP_BUFFER), "-timeout", f"{deadline:.0f}s", "-timeout_error",
            "-nostdin", "-trace_err", "-trace_stat", "-stf", str(stat), "-fd", "1",
            "-trace_screen", "-screen_file", str(rundir / "screen.txt")]
    server0 = cpu_seconds(server_pid) if server_pid else 0.0
    sipp0 = children_cpu()
    t0 = time.monotonic()
    process = procs.start(argv, cwd=rundir, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=(rundir / "stderr").open("wb"))
    try:
        result.rc = process.wait(deadline + 30)
    except subprocess.TimeoutExpired:
        result.notes.append("SIPp hung; killed")
    procs.stop(process)
    result.wall = time.monotonic() - t0
    result.sipp_cpu = children_cpu() - sipp0
    if server_pid:
        with contextlib.suppress(OSError):
            result.server_cpu = cpu_seconds(server_pid) - server0
    rows = _stat_rows(stat)
    if not rows:
        err = (rundir / "stderr").read_text(errors="replace").strip().splitlines()
        result.failed = calls
        result.notes.append(f"SIPp wrote no statistics (rc {result.rc}): "
                            f"{err[-1] if err else 'no message'}")
        return result
    last = rows[-1]

    def count(name: str) -> int:
        return int(last.get(f"{name}(C)", "0") or 0)

    result.ok = count("SuccessfulCall")
    result.failed = count("FailedCall")
    result.created = count("OutgoingCall")
    result.retransmissions = count("Retransmissions")
    result.unexpected = count("FailedUnexpectedMessage")
    result.max_retrans = count("FailedMaxUDPRetrans")
    result.timeouts = count("FailedTimeoutOnRecv") + count("FailedTimeoutOnSend")
    # The rate SIPp offered: calls created by the last one-second sample taken while it was
    # still creating, over the time since its start (all of them if it finished in 1 s).
    start = _epoch(rows[0]["StartTime"])
    result.offered_cps = float(rate)
    for row in rows:
        created = int(row.get("OutgoingCall(C)", "0") or 0)
        elapsed = _epoch(row["CurrentTime"]) - start
        if 0 < created < calls and elapsed >= 1.0:
            result.offered_cps = created / elapsed
    if result.created < calls:
        result.offered_cps = min(result.offered_cps, result.created / seconds)
    for log in rundir.glob("*_errors.log"):
        with log.open("rb") as f:
            result.r503 += sum(1 for line in f if RE_503.search(line))
    if result.ok + result.failed < calls:
        result.notes.append(f"{calls - result.ok - result.failed} calls unfinished")
    if result.unexpected:
        result.notes.append(f"{result.unexpected} unexpected messages")
    if result.max_retrans or result.timeouts:
        result.notes.append(f"{result.max_retrans} retransmission give-ups, "
                            f"{result.timeouts} timeouts")
    if result.rc not in (0, 1):
        result.notes.append(f"SIPp exit code {result.rc}")
    behind = result.wall - calls / rate - call_seconds
    if behind > max(2.0, 0.2 * seconds):
        result.notes.append(f"the last calls ended {behind:.0f} s after the last was offered")
    return result


def ladder(name: str, rates: list[int], seconds: float, procs: Processes, workdir: Path,
           port: int, server_pid: int | None, settle: float = 2.0,
           server_alive: Callable[[], bool] = lambda: True, *,
           scenario: Path = UAC_SCENARIO, call_seconds: float = 0.0,
           checked: Callable[[RateResult], None] | None = None
           ) -> tuple[int, list[RateResult]]:
    """Run the rates in order until one fails; (the best passing rate, the results).
    ``checked`` looks at each rung's result before it is judged (it may add a failure)."""
    print(f"\n## {name}\n{TABLE_HEAD}\n{TABLE_UNITS}", flush=True)
    best, results = 0, []
    for rate in rates:
        if not server_alive():
            print(f"{rate:6d}  the server is no longer running; stopping", flush=True)
            break
        result = run_sipp_uac(procs, workdir, port, rate, seconds, server_pid,
                              scenario=scenario, call_seconds=call_seconds)
        if checked is not None:
            checked(result)
        results.append(result)
        print(result.row(), flush=True)
        if not result.passed:
            break
        best = rate
        time.sleep(settle)  # let the server finish its last calls before the next rung
    return best, results


def top_of_ladder(best: int, rates: list[int], name: str, notes: list[str]) -> None:
    if best and best == max(rates):
        notes.append(f"{name}={best} is the top of the ladder: the real limit is higher")


def clean_rate(runs: list[RateResult]) -> int:
    """The highest rate of the ladder's first rungs that passed without a retransmission."""
    best = 0
    for run in runs:
        if not run.passed or run.retransmissions:
            break
        best = run.rate
    return best


# ---------------------------------------------------------------------------------- servers
#: --gc: runs ``uascall`` with the cyclic GC's passes timed (gc.callbacks), their counts,
#: total and longest per generation, and the unreachable (cyclic garbage) objects each freed,
#: written to argv[1] as JSON every half second. CPU time
#: of the thread the pass ran on, not wall time: on a shared machine a pass preempted by
#: other processes would look longer than it is
GC_WRAPPER = """\
import gc, json, os, runpy, sys, threading, time
path = sys.argv[1]
stats = {"collections": [0, 0, 0], "seconds": [0.0, 0.0, 0.0], "longest": [0.0, 0.0, 0.0],
         "collected": [0, 0, 0]}
started = [0.0]
def timed(phase, info):
    if phase == "start":
        started[0] = time.thread_time()
        return
    g, took = info["generation"], time.thread_time() - started[0]
    stats["collections"][g] += 1
    stats["seconds"][g] += took
    stats["longest"][g] = max(stats["longest"][g], took)
    stats["collected"][g] += info["collected"]
def dump():
    while True:
        time.sleep(0.5)
        with open(path + ".tmp", "w") as f:
            json.dump(stats, f)
        os.replace(path + ".tmp", path)
gc.callbacks.append(timed)
threading.Thread(target=dump, daemon=True).start()
sys.argv = ["uascall", *sys.argv[2:]]
runpy.run_module("uascall.cli", run_name="__main__")
"""


@contextlib.contextmanager
def uascall_server(procs: Processes, workdir: Path, ringtone: str, app: Path = APP,
                   control: Path | None = None, gc_stats: Path | None = None,
                   options: Sequence[str] = ()) -> Iterator[tuple[subprocess.Popen, int, Path]]:
    port, = free_ports(1)
    exe = Path(sys.executable).with_name("uascall")
    if gc_stats is not None:
        argv = [sys.executable, "-c", GC_WRAPPER, str(gc_stats)]
    else:
        argv = ([str(exe)] if exe.exists() else [sys.executable, "-m", "uascall.cli"])
    argv += ["run", str(app), "--backend", "sip", "--listen", f"{HOST}:{port}",
             "--control", str(control) if control is not None else "none", *options]
    if ringtone:
        argv += ["--param", ringtone]
    stderr = workdir / "uascall.stderr"
    process = procs.start(argv, cwd=ROOT, stdin=subprocess.DEVNULL,
                          stdout=(workdir / "uascall.stdout").open("wb"),
                          stderr=stderr.open("wb"))
    try:
        wait_ready(process, port, "uascall", probe=True)
        yield process, port, stderr
    finally:
        procs.stop(process, timeout=30.0)


@contextlib.contextmanager
def sipp_server(procs: Processes, workdir: Path) -> Iterator[tuple[subprocess.Popen, int]]:
    port, media_port = free_ports(1, 1)
    rundir = workdir / "sipp-uas"
    rundir.mkdir(exist_ok=True)
    argv = ["sipp", "-sf", str(UAS_SCENARIO), "-i", HOST, "-p", str(port), "-mi", HOST,
            "-mp", str(media_port), "-set", "answer_ms", "0",
            "-buff_size", str(SIPP_BUFFER), "-nostdin", "-trace_err"]
    process = procs.start(argv, cwd=rundir, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=(rundir / "stderr").open("wb"))
    try:
        wait_ready(process, port, "SIPp UAS", probe=False)
        yield process, port
    finally:
        procs.stop(process, signal.SIGUSR1)  # SIPp's "quit now"


SIPPY_UAS = '''\
"""A sippy UAS for bench/sip_cps.py: 100, 183 + SDP, 200 + SDP, then BYE -> 200."""
import sys

from sippy.CCEvents import CCEventConnect, CCEventRing, CCEventTry
from sippy.Core.EventDispatcher import ED2
from sippy.MsgBody import MsgBody
from sippy.SipConf import SipConf
from sippy.SipLogger import SipLogger
from sippy.SipTransactionManager import SipTransactionManager
from sippy.Time.Timeout import Timeout
from sippy.UA import UA
from sippy.Udp_server import Udp_server_opts

HOST, PORT, MEDIA_PORT = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
SDP = ("v=0\\r\\no=- 4242 4242 IN IP4 %s\\r\\ns=-\\r\\nc=IN IP4 %s\\r\\nt=0 0\\r\\n"
       "m=audio %d RTP/AVP 8 101\\r\\na=rtpmap:8 PCMA/8000\\r\\n"
       "a=rtpmap:101 telephone-event/8000\\r\\na=fmtp:101 0-15\\r\\na=ptime:20\\r\\n"
       "a=sendrecv\\r\\n") % (HOST, HOST, MEDIA_PORT)


class Call:
    def __init__(self, config):
        self.ua = UA(config, self.event)

    def event(self, event, ua):
        if isinstance(event, CCEventTry):
            # From the next loop turn: answered synchronously, sippy sends the 183 before
            # its own 100 Trying.
            Timeout(self.progress, 0)

    def progress(self):
        self.ua.recvEvent(CCEventRing((183, "Session Progress", MsgBody(SDP))))
        self.ua.recvEvent(CCEventConnect((200, "OK", MsgBody(SDP))))


class Calls:
    def __init__(self, config):
        self.config = config

    def request(self, req, sip_t):
        if req.getHFBody("to").getTag() is not None:
            return (req.genResponse(481, "Call Leg/Transaction Does Not Exist"), None, None)
        if req.getMethod() == "INVITE":
            return Call(self.config).ua.recvRequest(req, sip_t)
        if req.getMethod() == "OPTIONS":
            return (req.genResponse(200, "OK"), None, None)
        return (req.genResponse(501, "Not Implemented"), None, None)


def main():
    # One sender thread: with the default three, a 183 and a 200 queued in the same loop
    # turn leave in either order, and SIPp fails the call.
    Udp_server_opts.nworkers = 1
    SipConf.my_uaname = "sippy UAS (uascall bench)"
    config = {"_sip_address": HOST, "_sip_port": PORT, "_sip_logger": SipLogger("sippy_uas")}
    config["_sip_tm"] = SipTransactionManager(config, Calls(config).request)
    ED2.loop()


main()
'''


def sippy_python(workdir: Path) -> tuple[Path | None, str]:
    """sippy's own venv (made and filled on first use); (its python, its version) or
    (None, why not)."""
    python = SIPPY_VENV / "bin" / "python"
    check = [str(python), "-c", "import importlib.metadata as m, sippy.UA; "
             "print(m.version('sippy'))"]

    def version() -> str | None:
        if not python.exists():
            return None
        done = subprocess.run(check, capture_output=True, text=True, timeout=60)
        return done.stdout.strip() if done.returncode == 0 else None

    found = version()
    if found:
        return python, found
    print(f"# installing {SIPPY_REQUIREMENT} from PyPI into {SIPPY_VENV}", flush=True)
    log = workdir / "sippy-install.log"
    with log.open("w") as out:
        steps = [[sys.executable, "-m", "venv", "--clear", str(SIPPY_VENV)],
                 [str(python), "-m", "pip", "install", "--disable-pip-version-check",
                  "-q", SIPPY_REQUIREMENT]]
        for step in steps:
            try:
                done = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT,
                                      timeout=600)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return None, f"{' '.join(step[:4])}: {exc}"
            if done.returncode != 0:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                return None, f"{' '.join(step[:4])} exited {done.returncode}: " + " | ".join(
                    tail)
    found = version()
    return (python, found) if found else (None, f"sippy does not import after install; "
                                                 f"see {log}")


@contextlib.contextmanager
def sippy_server(procs: Processes, workdir: Path, python: Path
                 ) -> Iterator[tuple[subprocess.Popen, int]]:
    port, media_port = free_ports(1, 1)
    script = workdir / "sippy_uas.py"
    script.write_text(SIPPY_UAS)
    env = dict(os.environ, SIPLOG_LVL="ERR", SIPLOG_BEND="stderr")
    process = procs.start([str(python), str(script), HOST, str(port), str(media_port)],
                          cwd=workdir, env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=(workdir / "sippy.stderr").open("wb"))
    try:
        wait_ready(process, port, "sippy", probe=True)
        yield process, port
    finally:
        procs.stop(process)


# ---------------------------------------------------------------------------------- profiling
def profile_uascall(procs: Processes, workdir: Path, port: int, pid: int, rate: int,
                    seconds: float) -> None:
    """A run at ``rate`` with py-spy sampling the uascall process; prints what dominates."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("# --profile: py-spy not found (pip install py-spy into a scratch venv)")
        return
    raw = workdir / f"uascall-{rate}.pyspy.txt"
    hz = 100
    duration = seconds + 1
    # --gil: only the thread holding the GIL is sampled, so the shares are of the Python
    # work itself (threads blocked on a lock or on the GIL do not count).
    spy_process = procs.start([spy, "record", "-p", str(pid), "-d", f"{duration:.0f}", "-r",
                               str(hz), "--gil", "-f", "raw", "-o", str(raw)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=(workdir / "py-spy.stderr").open("wb"))
    time.sleep(0.5)
    result = run_sipp_uac(procs, workdir, port, rate, seconds, pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        spy_process.wait(seconds + 30)
    procs.stop(spy_process)
    print(f"\n## profile of the uascall UAS at {rate} cps (py-spy --gil, {hz} Hz)\n"
          f"{TABLE_HEAD}\n{TABLE_UNITS}\n{result.row()}")
    if not raw.exists() or not raw.stat().st_size:
        print("# py-spy wrote nothing; see", workdir / "py-spy.stderr")
        return
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    files: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        total += int(n)
        own[frames[-1]] += int(n)
        files[frames[-1].rpartition("(")[2].rstrip(")") or "?"] += int(n)
        for frame in set(frames):
            inclusive[frame] += int(n)
    if not total:
        print("# py-spy recorded no sample")
        return
    print(f"samples: {total}: the GIL was held {100 * total / (hz * duration):.0f} % of the "
          f"time; raw stacks: {raw}")
    print("own time by file:")
    for name, n in files.most_common(10):
        print(f"  {100 * n / total:5.1f} %  {name}")
    print("top functions by own time:")
    for frame, n in own.most_common(15):
        print(f"  {100 * n / total:5.1f} %  {frame}")
    print("top functions including callees:")
    for frame, n in inclusive.most_common(25):
        print(f"  {100 * n / total:5.1f} %  {frame}")


# ---------------------------------------------------------------------------------- RTP part
SINK = '''\
"""Counts the UDP datagrams sent to it. stdin: "reset" -> zero; "count" -> wait until
nothing has arrived for 0.3 s, then print the count since the last reset.

It reads what has arrived every millisecond, never waiting on the socket: a reader asleep
in recv is woken by each datagram, in the sender's own sendto (on loopback the sender
delivers), which cost the sender a fifth of its time here (perf: sock_def_readable).
The far ends of real calls are on other machines: waking them is not our cost."""
import socket, sys, threading, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:  # SO_RCVBUFFORCE is 33 on Linux; CPython's socket module does not export it
    sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 64 << 20)
except OSError:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), flush=True)
received = [0]
def control():
    base = 0
    for line in sys.stdin:
        if line.strip() == "reset":
            base = received[0]
        elif line.strip() == "count":
            before = -1
            while received[0] != before:
                before = received[0]
                time.sleep(0.3)
            print(received[0] - base, flush=True)
threading.Thread(target=control, daemon=True).start()
sock.setblocking(False)
buf = bytearray(2048)
recv_into = sock.recv_into
n = 0
while True:
    try:
        while True:
            recv_into(buf)
            n += 1
    except BlockingIOError:
        received[0] = n
        time.sleep(0.001)
'''


def udp_rcvbuf_errors() -> int:
    with open("/proc/net/snmp") as f:
        lines = [line.split() for line in f if line.startswith("Udp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("RcvbufErrors")])


@dataclass
class StreamResult:
    streams: int
    ticks: int = 0
    late: int = 0
    max_late_ms: float = 0.0
    sent: int = 0
    received: int = 0
    underruns: int = 0
    cpu: float = 0.0
    sink_cpu: float = 0.0
    kernel_drops: int = 0

    @property
    def lost(self) -> int:
        return self.sent - self.received

    @property
    def passed(self) -> bool:
        return self.late == 0 and self.lost == 0 and self.ticks > 0

    def row(self) -> str:
        return (f"{self.streams:7d} {self.ticks:6d} {self.late:6d} {self.max_late_ms:8.1f} "
                f"{self.underruns:9d} {self.sent:9d} {self.lost:7d} {self.kernel_drops:7d} "
                f"{100 * self.cpu:7.1f} {100 * self.sink_cpu:7.1f}  "
                f"{'ok' if self.passed else 'FAIL'}")


RTP_HEAD = (f"{'streams':>7} {'ticks':>6} {'late':>6} {'max late':>8} {'underruns':>9} "
            f"{'sent':>9} {'lost':>7} {'kdrops':>7} {'CPU':>7} {'sink':>7}")
RTP_UNITS = (f"{'':>7} {'':>6} {f'>{LATE_MS}ms':>6} {'ms':>8} {'':>9} {'packets':>9} "
             f"{'':>7} {'':>7} {'% core':>7} {'% core':>7}")


def run_streams(n: int, seconds: float, sink: subprocess.Popen, sink_port: int,
                feed: bool) -> StreamResult:
    from uascall.engine import Engine
    from uascall.media.player import MediaClock, Player
    from uascall.media.tones import ToneManager
    from uascall.sip.media import RtpPorts, RtpStream, RtpTicker
    from uascall.sip.sdp import Negotiated

    assert sink.stdin is not None and sink.stdout is not None

    def sink_command(command: str) -> str:
        sink.stdin.write(command + "\n")
        sink.stdin.flush()
        return sink.stdout.readline().strip() if command == "count" else ""

    result = StreamResult(n)
    negotiated = Negotiated(law="alaw", payload_type=8, telephone_event=None,
                            remote=(HOST, sink_port), direction="sendrecv")
    tone = ToneManager().get("RINGBACK_EU")
    frames_per_cycle = max(1, round(tone.cycle_seconds / 0.020))
    sink_command("reset")
    with Engine(name="rtp-bench") as engine:
        ticker = RtpTicker(engine)
        clock = MediaClock(engine)
        ports = RtpPorts(16384, 65534)
        streams: list[RtpStream] = []
        players: list[Player] = []

        def stop() -> None:
            for player in players:
                player.stop()
            for stream in streams:
                stream.close()

        # The streams are ours to close, also when the run is cut short (Ctrl-C, or a
        # SIGTERM from a time limit): left open, the engine stopped with all their
        # descriptors still registered and said so.
        engine.add_shutdown_callback(stop)
        for i in range(n):
            streams.append(ports.open(engine, ticker, HOST, allow=None, name=f"rtp {i}"))

        # Each source starts at its own point of the 5 s cadence, as on calls that began
        # at different times: started in step, every 1 s tone edge (whose cross-faded frame
        # is computed sample by sample) would fall on the same tick for all N of them.
        phases = random.Random(n)
        sources = []
        for _ in range(n if feed else 0):
            source = tone.source("alaw", loop=True)
            for _frame in range(phases.randrange(frames_per_cycle)):
                source.next_frame()
            sources.append(source)

        def start() -> None:
            for i, stream in enumerate(streams):
                stream.open(negotiated)
                if feed:
                    player = Player(clock, stream, name=f"player {i}")
                    player.play(sources[i])
                    players.append(player)

        engine.run(start)
        gc.collect()
        gc.freeze()  # as a long-running server does after start-up
        time.sleep(1.0)  # warm-up: the first ticks after a bulk start are not the steady state

        def snapshot(reset: bool) -> tuple[int, int, int]:
            if reset:
                ticker.max_lateness = 0.0
            return ticker.ticks, ticker.late_ticks, sum(s.underruns for s in streams)

        ticks0, late0, under0 = engine.run(snapshot, True)
        drops0 = udp_rcvbuf_errors()
        sink_cpu0 = cpu_seconds(sink.pid)
        cpu0, t0 = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        ticks1, late1, under1 = engine.run(snapshot, False)
        result.max_late_ms = 1e3 * ticker.max_lateness
        engine.run(stop)
        result.sent = sum(s.packets_sent for s in streams)
    gc.unfreeze()
    result.received = int(sink_command("count"))
    result.sink_cpu = (cpu_seconds(sink.pid) - sink_cpu0) / wall
    result.kernel_drops = udp_rcvbuf_errors() - drops0
    result.ticks, result.late = ticks1 - ticks0, late1 - late0
    result.underruns = under1 - under0
    result.cpu = cpu / wall
    return result


def rtp_part(counts: list[int], seconds: float, procs: Processes, workdir: Path,
             feed: bool) -> int:
    script = workdir / "sink.py"
    script.write_text(SINK)
    sink = procs.start([sys.executable, str(script)], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=(workdir / "sink.stderr").open("wb"),
                       text=True)
    assert sink.stdout is not None
    port_text, rcvbuf = sink.stdout.readline().split()
    what = ("each fed by a Player playing looped RINGBACK_EU (each at its own point of the "
            "cadence) through a MediaClock"
            if feed else "no player: the ticker sends silence")
    print(f"\n## rtp_streams: 20 ms PCMA streams on one engine thread, {what}; sink in "
          f"another process (SO_RCVBUF {int(rcvbuf) // 2**20} MiB), {seconds:g} s each after "
          f"1 s of warm-up\n{RTP_HEAD}\n{RTP_UNITS}", flush=True)
    best = 0
    try:
        for n in counts:
            result = run_streams(n, seconds, sink, int(port_text), feed)
            print(result.row(), flush=True)
            if not result.passed:
                break
            best = n
    finally:
        procs.stop(sink)
    return best


# ---------------------------------------------------------------------------------- main
def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    sipp = subprocess.run(["sipp", "-v"], capture_output=True, text=True)
    version = next((line.strip() for line in (sipp.stdout + sipp.stderr).splitlines()
                    if "SIPp" in line), "SIPp ?")
    return (f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, {version.rstrip('.')}")


class LateTicks:
    """--app: the server's 20 ms ticks run more than 5 ms late (its RTP ticker's and its
    media clock's), read through its control socket before and after each rung; with
    several servers (the workers behind a proxy), their sum and the latest of any."""

    def __init__(self, *controls: Path) -> None:
        self.controls = controls
        self.before = self.read()[0]

    def read(self) -> tuple[int, float]:
        """(late ticks so far, the latest tick in ms); a socket that fails adds (0, 0)."""
        sys.path.insert(0, str(ROOT))
        from uascall.control import ControlClient  # the bench runs from a checkout
        late, worst = 0, 0.0
        for control in self.controls:
            try:
                with ControlClient(control) as client:
                    counters = client.request("monitor")["counters"]
            except Exception as exc:  # a benchmark reports, it does not stop for this
                print(f"# cannot read {control}: {exc}", flush=True)
                continue
            late += counters.get("late_ticks", 0)
            for part in counters.values():
                if isinstance(part, dict):
                    late += part.get("late_ticks", 0)
                    worst = max(worst, part.get("max_tick_lateness_ms", 0.0))
        return late, worst

    def check(self, result: RateResult) -> None:
        late, worst = self.read()
        result.late_ticks = late - self.before
        self.before = late
        if result.late_ticks:
            result.notes.append(f"{result.late_ticks} ticks more than {LATE_MS} ms late "
                                f"(the latest so far {worst:.1f} ms)")
        else:
            result.notes.append(f"no late tick (the latest so far {worst:.1f} ms)")


def add_app_arguments(parser: argparse.ArgumentParser, app_help: str) -> None:
    """--app and --call-seconds, as this benchmark and sip_scale.py take them."""
    parser.add_argument("--app", metavar="PATH", default="", help=app_help)
    parser.add_argument("--call-seconds", type=float, default=10.0, metavar="S",
                        help="--app: about how long the application holds a call (default "
                        "%(default)s)")


def print_gc_stats(path: Path) -> None:
    """What --gc's wrapper wrote: the cyclic GC's passes over the whole server run."""
    try:
        stats = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"# --gc: no statistics from the server ({exc})")
        return
    parts = [f"generation {g}: {n} passes, {t:.2f} s, the longest {1000 * worst:.1f} ms, "
             f"{freed} unreachable objects freed"
             for g, (n, t, worst, freed) in enumerate(zip(
                 stats["collections"], stats["seconds"], stats["longest"],
                 stats.get("collected", [0, 0, 0]), strict=True))]
    print(f"uascall cyclic GC over the whole run (--gc, CPU time): "
          f"{sum(stats['seconds']):.2f} s; "
          + "; ".join(parts))


def run_parts(args: argparse.Namespace, skip: set[str], rates: list[int],
              counts: list[int], seconds: float, procs: Processes, workdir: Path,
              results: dict[str, int], clean: dict[str, int], notes: list[str]) -> None:
    """The parts asked for, in order, filling ``results``, ``clean`` and ``notes``."""
    if "uascall" not in skip:
        app = Path(args.app).resolve() if args.app else APP
        control = workdir / "uascall.control" if args.app else None
        if args.app:
            what = (f"{args.app}: its own early media, answer and BYE, about "
                    f"{args.call_seconds:g} s a call, --max-setups {APP_MAX_SETUPS}; a "
                    f"rung fails on a 20 ms tick more than {LATE_MS} ms late too")
            key = "app_cps"
        else:
            tone = f", early media {args.ringtone} looped" if args.ringtone else (
                ", early media RTP carries silence")
            what = (f"{APP.relative_to(ROOT)}, a call per pooled thread, max_setups 2000, "
                    f"max_lag 0.2 s{tone}")
            key = "sip_cps"
        gc_stats = workdir / "uascall.gc.json" if args.gc else None
        options = ["--max-setups", str(APP_MAX_SETUPS)] if args.app else []
        with uascall_server(procs, workdir, args.ringtone, app, control,
                            gc_stats, options) as (server, port, stderr):
            checked = None
            if control is not None:
                checked = LateTicks(control).check
            best, runs = ladder(f"{key}: uascall ({what})", rates, seconds, procs, workdir,
                                port, server.pid, server_alive=lambda: server.poll() is None,
                                scenario=CALLEE_BYE_SCENARIO if args.app else UAC_SCENARIO,
                                call_seconds=args.call_seconds if args.app else 0.0,
                                checked=checked, settle=args.call_seconds + 2 if args.app
                                else 2.0)
            results[key] = best
            top_of_ladder(best, rates, key, notes)
            clean["uascall"] = clean_rate(runs)
            if args.profile and server.poll() is None:
                time.sleep(2.0)
                profile_uascall(procs, workdir, port, server.pid, args.profile, seconds)
        log = stderr.read_text(errors="replace")
        # One warning a second at most, each with the INVITEs refused since the last one.
        refused = sum(int(n) for n in RE_REFUSED.findall(log))
        errors = sum(1 for line in log.splitlines() if " ERROR " in line
                     or line.startswith("Traceback"))
        print(f"uascall log: {refused} INVITEs refused with 503 (overload), {errors} errors"
              + (f"; see {stderr}" if errors else ""))
        if gc_stats is not None:
            print_gc_stats(gc_stats)
    if "sipp" not in skip:
        with sipp_server(procs, workdir) as (server, port):
            best, runs = ladder("sipp_uas_cps: SIPp's own UAS (uas_183.xml, answer_ms 0): "
                                "the harness ceiling", rates, seconds, procs, workdir, port,
                                server.pid, server_alive=lambda: server.poll() is None)
            results["sipp_uas_cps"] = best
            top_of_ladder(best, rates, "sipp_uas_cps", notes)
            clean["SIPp"] = clean_rate(runs)
    if "sippy" not in skip:
        python, version = sippy_python(workdir)
        if python is None:
            print(f"\n## sippy_cps: not measured: sippy could not be installed: {version}")
            notes.append("sippy_cps=0: sippy not installed")
        else:
            with sippy_server(procs, workdir, python) as (server, port):
                best, runs = ladder(f"sippy_cps: sippy {version} UAS (183 + SDP from the "
                                    "next loop turn, then 200; one sender thread; "
                                    "SIPLOG_LVL=ERR; no RTP)", rates, seconds, procs,
                                    workdir, port, server.pid,
                                    server_alive=lambda: server.poll() is None)
                results["sippy_cps"] = best
                top_of_ladder(best, rates, "sippy_cps", notes)
                clean["sippy"] = clean_rate(runs)
    if "rtp" not in skip:
        results["rtp_streams"] = rtp_part(counts, seconds, procs, workdir,
                                          feed=not args.silence)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=None,
                        help="seconds per rate and per stream count (default 10; 3 with "
                        "--quick)")
    parser.add_argument("--rates", default=None, help=f"call rates (default {DEFAULT_RATES})")
    parser.add_argument("--streams", default=None,
                        help=f"stream counts (default {DEFAULT_STREAMS})")
    parser.add_argument("--skip", default="", help=f"parts to leave out: {', '.join(PARTS)}")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: rates {QUICK_RATES}, streams {QUICK_STREAMS}, "
                        f"{QUICK_SECONDS:g} s each")
    parser.add_argument("--ringtone", default="", metavar="TONE",
                        help="uascall's application plays this tone as early media (e.g. "
                        "RINGBACK_EU); default none: RTP carries silence")
    parser.add_argument("--silence", action="store_true",
                        help="rtp_streams without players: the ticker sends silence")
    parser.add_argument("--profile", type=int, default=0, metavar="RATE",
                        help="after the uascall ladder, one more run at RATE with py-spy "
                        "sampling the uascall process")
    add_app_arguments(parser, "measure this application instead (e.g. examples/early_media"
                      ".py): SIPp's scenario is uac_callee_bye.xml (the application hangs "
                      "up); the result is app_cps")
    parser.add_argument("--gc", action="store_true",
                        help="time the uascall server's cyclic GC passes (gc.callbacks) and "
                        "print their counts, total and longest per generation")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (SIPp logs, statistics, profiles)")
    args = parser.parse_args()
    seconds = args.seconds or (QUICK_SECONDS if args.quick else 10.0)
    rates = [int(r) for r in (args.rates or (QUICK_RATES if args.quick else DEFAULT_RATES)
                              ).split(",")]
    counts = [int(n) for n in (args.streams or (QUICK_STREAMS if args.quick
                                                else DEFAULT_STREAMS)).split(",")]
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    if skip - set(PARTS):
        parser.error(f"--skip {args.skip}: expected some of {', '.join(PARTS)}")
    sip_parts = {"uascall", "sipp", "sippy"} - skip
    if sip_parts and not shutil.which("sipp"):
        parser.error("sipp is not installed (Debian: apt-get install sip-tester); "
                     "or --skip uascall,sipp,sippy")
    if args.app and not Path(args.app).exists():
        parser.error(f"--app {args.app}: no such file")
    for scenario in (UAC_SCENARIO, UAS_SCENARIO, CALLEE_BYE_SCENARIO):
        if sip_parts and not scenario.exists():
            parser.error(f"{scenario} is missing")

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with "&"
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    procs = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="sip_cps-"))
    results = {"app_cps" if args.app else "sip_cps": 0, "sipp_uas_cps": 0, "sippy_cps": 0,
               "rtp_streams": 0}
    notes: list[str] = []
    clean: dict[str, int] = {}
    print(f"# {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {machine()}")
    print(f"# loopback only; SIPp and the server under test share the {os.cpu_count()} "
          "cores, so each rate's figures include SIPp's own load")
    print(f"# {seconds:g} s per rate (-m rate*seconds), SIPp -l {SIPP_LIMIT} -buff_size "
          f"{SIPP_BUFFER} (capped by net.core.rmem_max); scenario {UAC_SCENARIO.name} with "
          "hold_ms 0, no -rtp_echo; a rate passes with every call successful and at least "
          f"{100 * REACHED:.0f} % of it offered")
    print("# srv CPU: the server process's user+system time over the SIPp run's wall time "
          "(over 100 % means more than one core); ms/call: server CPU per successful call")
    try:
        run_parts(args, skip, rates, counts, seconds, procs, workdir, results, clean, notes)
    except KeyboardInterrupt:
        print("# interrupted; everything started was stopped", flush=True)
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            print(f"# work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if clean:
        print("# highest rate with no SIPp retransmission at all (the server kept within "
              "T1 = 500 ms): " + ", ".join(f"{name} {rate}" for name, rate in clean.items()))
    for part in sorted(skip):
        notes.append(f"{part}: skipped")
    if notes:
        print("# " + "; ".join(notes))
    print("RESULT " + " ".join(f"{name}={value}" for name, value in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
