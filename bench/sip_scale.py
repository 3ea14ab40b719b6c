"""SIP calls per second through Kamailio to 1, 2 and N uascall workers, and one killed.

What a user puts together to go past one process (issue 15): one Kamailio in front
(``deploy/kamailio/kamailio.cfg`` as shipped, its settings given with ``-A``: dispatcher
round robin, OPTIONS probes, record-routing) and ``uascall run bench/sip_cps_app.py
--backend sip --workers N`` behind it (uascall/workers.py's supervisor: N processes, each
its own engine and port; with N = 1 ``uascall run`` serves in its own process). SIPp
calls the proxy. All of it runs on loopback on this machine, Kamailio unprivileged in the
foreground as the interop tests start it (``tests/interop/kamailio.py``); SIPp runs and
is judged as in ``bench/sip_cps.py``, whose helpers this uses.

1. ``kamailio_N``: for each N of ``--workers``, the calls per second the chain sustains
   with zero failed calls: sip_cps.py's ladder (``--seconds`` per rate, ``-m
   rate*seconds``; a rate passes with every call successful and 95 % of it offered) and
   its scenario (``uac_early_media.xml``, hold 0: INVITE, 100, 183+SDP, 200+SDP, ACK,
   BYE, 200), with the ACK and BYE sent along the 200's Record-Route as RFC 3261 wants,
   so that they pass the proxy too. Each rung gives the CPU per call of the workers, of
   Kamailio (all its processes) and of SIPp (``/proc/PID/stat``), that of every other
   process that ran through the rung (tests others run, this script; short-lived ones are
   missed) and the datagrams the kernel dropped for full receive buffers (machine-wide);
   a failed rung says what SIPp got instead.
2. ``failover_lost_after_kill``: N = 2 (``--failover-workers``), SIPp at
   ``--failover-rate`` (default half of ``kamailio_1``, at most 200: one worker alone
   must carry it) with each call held 1 s, so that calls are up on every worker;
   ``--kill-after`` seconds in, one worker gets SIGKILL. The calls up on it are lost
   (the caller's BYE gets the proxy's 408); a new call sent to it before the dispatcher
   knows is retried on the other after ``FR_TIMER``. The figure is the number of failed
   calls whose INVITE was sent after the kill (the goal: 0). SIPp's message trace gives
   each call's INVITE time and outcome; Kamailio's log (a line per call with its Call-ID
   and node) shows which node the lost calls were on; the dispatcher's view (``kamcmd
   dispatcher.list``, polled, and the log's lines) and the worker's pid on its port give
   the timeline: down, started again by the supervisor, up, and the calls it took after.
3. The scaling: each part's CPU per call, what this machine allows, and an estimate of
   what a machine with a core for each worker would give.

Kamailio runs with one UDP receiver process (``CHILDREN=1``): with more, two responses of
one call sent microseconds apart (the 183 and 200 of an application that answers at
once) are relayed by two processes in parallel and may reach SIPp in the other order,
which SIPp's scenario counts as a failed call (a UAC ignores a 183 after the 200). One
receiver is enough here (see Kamailio's CPU per call); a real deployment keeps the
shipped ``CHILDREN=4``. ``LOG_LEVEL=1`` for the ladders (no line per call), the shipped
2 for the failover run; ``PING_INTERVAL`` and ``FR_TIMER`` as shipped (2 s, 1500 ms).

    python bench/sip_scale.py [--workers 1,2,3] [--seconds 5] [--rates 200,400,...]
                              [--failover-rate CPS] [--skip ladders|failover] [--smoke]

``--smoke``: workers 1 and 2 at 40 calls/s for 2 s each and a failover run at 20 calls/s
(about 30 s in all). The exit status is 1 when something is broken rather than slow: a
ladder whose lowest rate failed, or a killed worker the dispatcher never showed down and
up again. Needs ``sipp`` and ``kamailio`` (Debian: sip-tester, kamailio;
``scripts/setup.sh test`` installs both).

Last line: ``RESULT kamailio_1=<n> kamailio_2=<n> [kamailio_N=<n> ...]
failover_lost_after_kill=<n>``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sip_cps from anywhere
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # tests.interop

import sip_cps
from sip_cps import HOST, REACHED, ROOT, SIPP_BUFFER, SIPP_LIMIT, Processes, RateResult

from tests.interop import kamailio, peers

APP = sip_cps.APP
DEFAULT_WORKERS = "1,2,3"
DEFAULT_RATES = ("200,400,500,600,700,800,900,1000,1100,1200,1400,1600,1800,2000,"
                 "2500,3000")
DEFAULT_SECONDS = 5.0
#: the shipped configuration's probe interval (s) and time a node has to answer (ms)
PING_INTERVAL = 2
FR_TIMER_MS = 1500
#: Kamailio's shared memory (MB): its transactions, kept a few seconds after their end
SHARED_MB = 256
FAILOVER_HOLD_MS = 1000
#: the failover run traces every message (each call's INVITE time and outcome): its
#: default rate stays below this, so that SIPp's tracing does not become the load
MAX_FAILOVER_RATE = 200
#: seconds after the kill the restarted worker gets to be up at the proxy again
BACK_WITHIN = 30.0
SMOKE = {"workers": "1,2", "rates": "40", "seconds": 2.0, "failover_rate": 20,
         "kill_after": 3.0, "failover_seconds": 14.0}


# ------------------------------------------------------------------------------ the chain
@dataclass
class Cpu:
    """CPU seconds of the workers and of Kamailio at one moment, per pid."""

    workers: dict[int, float]
    kamailio: dict[int, float]

    @staticmethod
    def _read(pids: list[int]) -> dict[int, float]:
        out = {}
        for pid in pids:
            with contextlib.suppress(OSError):
                out[pid] = sip_cps.cpu_seconds(pid)
        return out

    def since(self, earlier: Cpu) -> tuple[float, float]:
        """(workers, Kamailio) CPU seconds used since ``earlier`` (a process that
        exited in between counts up to its last reading, one started from zero)."""
        def delta(now: dict[int, float], before: dict[int, float]) -> float:
            return sum(value - before.get(pid, 0.0) for pid, value in now.items())
        return delta(self.workers, earlier.workers), delta(self.kamailio, earlier.kamailio)


class Chain:
    """Kamailio in front of ``uascall run APP --backend sip --workers N``: started and
    stopped together (``with``)."""

    def __init__(self, procs: Processes, workdir: Path, workers: int, *, log_level: int,
                 app: Path = APP, options: Sequence[str] = ()) -> None:
        self.procs = procs
        self.workdir = workdir / f"chain-{workers}-{log_level}"
        self.workdir.mkdir(parents=True)
        self.count = workers
        self.log_level = log_level
        self.app = app
        self.options = list(options)
        # uascall/workers.py gives worker I the control socket PATH.wI
        self.control = self.workdir / "uascall.control"
        self.base = peers.free_udp_port(HOST, span=workers)
        self.ports = list(range(self.base, self.base + workers))
        self.supervisor: subprocess.Popen | None = None
        self.kam: kamailio.Kamailio | None = None
        self.seen_workers: set[int] = set()

    def address(self, port: int) -> str:
        return f"{HOST}:{port}"

    def __enter__(self) -> Chain:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self) -> None:
        argv = [sys.executable, "-m", "uascall", "run", str(self.app), "--backend", "sip",
                "--workers", str(self.count), "--listen", self.address(self.base),
                "--control", str(self.control), *self.options]
        with open(self.workdir / "supervisor.log", "wb") as log:
            self.supervisor = self.procs.start(argv, cwd=ROOT, stdin=subprocess.DEVNULL,
                                               stdout=log, stderr=log)
        for port in self.ports:
            sip_cps.wait_ready(self.supervisor, port, f"uascall worker on {port}", probe=True)
        self.workers()
        self.kam = kamailio.Kamailio(
            self.workdir, [self.address(port) for port in self.ports],
            ping_interval=PING_INTERVAL, fr_timer_ms=FR_TIMER_MS, children=1,
            shared_mb=SHARED_MB, defines=[f"LOG_LEVEL={self.log_level}"]).start()
        deadline = time.monotonic() + 15
        while set(self.view().values()) != {"AP"} or len(self.view()) != self.count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kamailio does not see every worker up: {self.view()}")
            time.sleep(0.2)

    def workers(self) -> dict[int, int]:
        """SIP port -> pid of each live worker."""
        assert self.supervisor is not None
        if self.count == 1:  # --workers 1: uascall run serves in its own process
            alive = self.supervisor.poll() is None
            return {self.base: self.supervisor.pid} if alive else {}
        found = kamailio.workers_by_port(self.supervisor.pid)
        self.seen_workers.update(found.values())
        return found

    def controls(self) -> list[Path]:
        """Each worker's control socket."""
        if self.count == 1:
            return [self.control]
        return [self.control.with_name(f"{self.control.name}.w{n}") for n in range(self.count)]

    def view(self) -> dict[str, str]:
        assert self.kam is not None
        return self.kam.dispatcher_view()

    def alive(self) -> bool:
        return (self.supervisor is not None and self.supervisor.poll() is None
                and self.kam is not None and self.kam.proc is not None
                and self.kam.proc.poll() is None)

    def cpu(self) -> Cpu:
        assert self.kam is not None
        return Cpu(Cpu._read(list(self.workers().values())), Cpu._read(self.kam.pids()))

    def drops(self) -> tuple[int, int, int]:
        """Datagrams dropped so far: Kamailio's socket, the workers', machine-wide."""
        assert self.kam is not None
        return (socket_drops([self.kam.port]), socket_drops(self.ports),
                sip_cps.udp_rcvbuf_errors())

    def stop(self) -> None:
        if self.kam is not None:
            self.kam.stop()
        if self.supervisor is not None:
            # SIGINT: the supervisor passes it on, each worker hangs up and exits
            self.procs.stop(self.supervisor, signal.SIGINT, timeout=30.0)
        # The workers run in sessions of their own: had the supervisor to be killed,
        # they would be left; end those we saw, by pid, if still there and still ours.
        for pid in self.seen_workers:
            with contextlib.suppress(OSError):
                if b"uascall" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------ the ladders
@dataclass
class Rung:
    sipp: RateResult
    workers_cpu: float
    kamailio_cpu: float
    #: CPU seconds of every process that ran through the rung (the workers, Kamailio,
    #: tests others run, this script; not SIPp, nor processes that came and went)
    lasting_cpu: float
    #: datagrams the kernel dropped for a full receive buffer: at Kamailio's socket, at
    #: the workers' SIP sockets, and machine-wide (SIPp's, the RTP sockets, others')
    drops: tuple[int, int, int]
    nodes_down: int
    failures: str = ""

    def per_call_ms(self, cpu: float) -> float:
        return 1e3 * cpu / self.sipp.ok if self.sipp.ok else 0.0

    def share(self, cpu: float) -> float:
        return 100 * cpu / self.sipp.wall if self.sipp.wall else 0.0

    @property
    def others_cpu(self) -> float:
        """CPU seconds of everything else on the machine (tests, the benchmark itself)."""
        return max(0.0, self.lasting_cpu - self.workers_cpu - self.kamailio_cpu)

    def row(self) -> str:
        r = self.sipp
        cells = [f"{self.share(cpu):6.1f} {self.per_call_ms(cpu):7.3f}"
                 for cpu in (self.workers_cpu, self.kamailio_cpu, r.sipp_cpu)]
        mark = "ok" if r.passed else ("not offered" if not r.reached and not r.failed
                                      and r.ok == r.calls else "FAIL")
        notes = list(r.notes)
        if self.failures:
            notes.append(self.failures)
        if self.nodes_down:
            notes.append(f"the dispatcher took a node out {self.nodes_down} times")
        return (f"{r.rate:6d} {r.offered_cps:8.0f} {r.calls:7d} {r.ok:7d} {r.failed:6d} "
                f"{r.r503:5d} {r.retransmissions:7d}  {'  '.join(cells)} "
                f"{self.share(self.others_cpu):6.1f} {'/'.join(map(str, self.drops)):>14} "
                f"{r.wall:6.1f}  {mark}"
                + (f"  ({'; '.join(notes)})" if notes else ""))


HEAD = (f"{'rate':>6} {'offered':>8} {'calls':>7} {'ok':>7} {'failed':>6} {'503s':>5} "
        f"{'retrans':>7}  {'uascall workers':>14}  {'Kamailio':>14}  {'SIPp':>14} "
        f"{'others':>6} {'kernel drops':>14} {'wall':>6}")
UNITS = (f"{'cps':>6} {'cps':>8} {'':>7} {'':>7} {'':>6} {'':>5} {'':>7}  "
         + "  ".join(f"{'% core':>6} {'ms/call':>7}" for _ in range(3))
         + f" {'% core':>6} {'kam/workers/all':>14} {'s':>6}")


def every_process_cpu() -> dict[int, float]:
    """CPU seconds of every process on the machine so far, by pid. (Not /proc/stat's
    busy time: sampled at the timer tick, it misses work that a tick's timer wakes, and
    read 30 % under the sum of these processes here.)"""
    return Cpu._read([int(name) for name in os.listdir("/proc") if name.isdigit()])


def cpu_since(before: dict[int, float]) -> float:
    """CPU seconds the processes of ``before`` that still run used since."""
    now = every_process_cpu()
    return sum(now[pid] - before[pid] for pid in now.keys() & before.keys())


def socket_drops(ports: list[int]) -> int:
    """Datagrams the kernel dropped at the UDP sockets on 127.0.0.1 ``ports`` since they
    were opened (the ``drops`` column of /proc/net/udp)."""
    wanted = {f"0100007F:{port:04X}" for port in ports}
    with open("/proc/net/udp") as f:
        return sum(int(line.split()[-1]) for line in list(f)[1:]
                   if line.split()[1] in wanted)


RE_UNEXPECTED = re.compile(r"while expecting '([^']*)'[^\n]*?, received '(SIP/2\.0 \d+|\S+)")


def failure_kinds(errors: str) -> str:
    """What SIPp's error log says the failed calls got instead ("12 x 200 before the
    183": the 183 was lost, or overtaken by the 200)."""
    kinds: dict[str, int] = {}
    for expected, got in RE_UNEXPECTED.findall(errors):
        got = got.removeprefix("SIP/2.0 ")
        what = (f"{got} before the 183" if got == "200" and expected in ("180", "183")
                else f"{got} while expecting {expected}")
        kinds[what] = kinds.get(what, 0) + 1
    return ", ".join(f"{n} x {what}" for what, n in sorted(kinds.items(),
                                                          key=lambda item: -item[1]))


def ladder(procs: Processes, workdir: Path, workers: int, rates: list[int], seconds: float,
           app: Path | None = None, call_seconds: float = 0.0, realtime: bool = False
           ) -> tuple[int, Rung | None]:
    """The rates in order through Kamailio to ``workers`` workers until one fails;
    (the best passing rate, its rung). ``app``: that application instead of the bare
    one, called as ``sip_cps.py --app`` calls it (its own BYE after about
    ``call_seconds``; a rung fails on a late tick of any worker too)."""
    shown = (app or APP).relative_to(ROOT) if (app or APP).is_relative_to(ROOT) else app
    print(f"\n## {'app_' if app else ''}kamailio_{workers}: SIPp -> Kamailio (one receiver, "
          f"LOG_LEVEL 1) -> {workers} uascall worker{'s' if workers > 1 else ''} ({shown}"
          + (f", --max-setups {sip_cps.APP_MAX_SETUPS}, a rung fails on a 20 ms tick more "
             f"than {sip_cps.LATE_MS} ms late in any worker too" if app else "")
          + (", engine threads SCHED_FIFO (--realtime)" if realtime else "")
          + f")\n{HEAD}\n{UNITS}", flush=True)
    best, best_rung = 0, None
    options = ["--max-setups", str(sip_cps.APP_MAX_SETUPS)] if app else []
    if realtime:
        options.append("--realtime")
    with Chain(procs, workdir, workers, log_level=1, app=app or APP,
               options=options) as chain:
        assert chain.kam is not None
        # sip_cps's scenario, its ACK (and the bare one's BYE) along the route set
        scenario = kamailio.proxied_scenario(
            (sip_cps.CALLEE_BYE_SCENARIO if app else sip_cps.UAC_SCENARIO).name,
            chain.workdir)
        late = sip_cps.LateTicks(*chain.controls()) if app else None
        for rate in rates:
            if not chain.alive():
                print(f"{rate:6d}  the supervisor or Kamailio is no longer running; stopping")
                break
            downs = len(chain.kam.lines(r"dispatcher: node \S+ down"))
            before, everyone, drops0 = chain.cpu(), every_process_cpu(), chain.drops()
            result = sip_cps.run_sipp_uac(procs, chain.workdir, chain.kam.port, rate,
                                          seconds, None, scenario=scenario,
                                          call_seconds=call_seconds)
            if late is not None:
                late.check(result)
            workers_cpu, kamailio_cpu = chain.cpu().since(before)
            result.server_cpu = workers_cpu
            rung = Rung(result, workers_cpu, kamailio_cpu, cpu_since(everyone),
                        tuple(b - a for a, b in zip(drops0, chain.drops(), strict=True)),
                        len(chain.kam.lines(r"dispatcher: node \S+ down")) - downs)
            if result.failed:
                # run_sipp_uac's directory for the rung
                rundir = chain.workdir / f"uac-{chain.kam.port}-{rate}"
                rung.failures = failure_kinds("".join(
                    log.read_text(errors="replace") for log in rundir.glob("*_errors.log")))
            print(rung.row(), flush=True)
            if not result.passed:
                break
            best, best_rung = rate, rung
            time.sleep(call_seconds + 2.0)  # the last calls end before the next rung
    return best, best_rung


# ------------------------------------------------------------------------------ failover
@dataclass
class Failover:
    rate: int
    calls: int = 0
    ok: int = 0
    lost_before_kill: int = 0  # failed calls whose INVITE was sent before the kill
    lost_after_kill: int = 0
    lost_on_victim: int = 0  # of lost_before_kill, those Kamailio had sent to the victim
    retried: int = 0  # new calls sent to the dead worker and retried on another
    after_up: int = 0  # calls the restarted worker took after it was up again
    why: str = ""  # what the failed calls got instead
    timeline: list[tuple[float, str]] = field(default_factory=list)
    down_at: float | None = None
    restarted_at: float | None = None
    up_at: float | None = None
    notes: list[str] = field(default_factory=list)


def _call_outcomes(result: peers.SippResult) -> tuple[dict[str, float], set[str]]:
    """From SIPp's message trace: each call's first INVITE time, and the calls that got
    the 200 for their BYE."""
    invited: dict[str, float] = {}
    done: set[str] = set()
    for message in result.messages():
        if message.direction == "S" and message.first_line.startswith("INVITE "):
            invited.setdefault(message.call_id, message.time)
        elif message.direction == "R" and message.status == 200 and message.method == "BYE":
            done.add(message.call_id)
    return invited, done


def watch(out: Failover, chain: Chain, log: BinaryIO, pid: int, port: int,
          killed: float, caller: threading.Thread) -> None:
    """Until SIPp is done and the killed worker is up again (or BACK_WITHIN has passed):
    the timeline of the dispatcher's view (kamcmd), Kamailio's log and the worker's pid."""
    uri = f"sip:{chain.address(port)}"
    view, new_pid, marked, pending = "AP", None, False, b""
    deadline = time.monotonic() + BACK_WITHIN
    while caller.is_alive() or (out.up_at is None and time.monotonic() < deadline):
        now = time.time() - killed
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            flags = chain.view().get(uri, "?")
            if flags != view:
                view = flags
                out.timeline.append((now, f"kamcmd dispatcher.list: {uri} {flags}"))
                if flags.startswith("I") and out.down_at is None:
                    out.down_at = now
                elif flags.startswith("A") and out.down_at is not None and out.up_at is None:
                    out.up_at = now
        *lines, pending = (pending + log.read()).split(b"\n")
        for line in (raw.decode(errors="replace") for raw in lines):
            if (line.endswith((f"node {uri} up", f"node {uri} down"))
                    or (f"node {uri} did not answer" in line and not marked)):
                marked = marked or "did not answer" in line
                out.timeline.append((now, "Kamailio's log: " + line.split(": ", 2)[-1]))
        current = chain.workers().get(port)
        if current not in (None, pid, new_pid):
            new_pid = current
            out.restarted_at = now
            out.timeline.append((now, f"the supervisor started it again (pid {current})"))
        time.sleep(0.2)


def failover(procs: Processes, workdir: Path, workers: int, rate: int, kill_after: float,
             seconds: float) -> Failover:
    out = Failover(rate)
    out.calls = round(rate * seconds)
    print(f"\n## failover: SIPp at {rate} cps for {seconds:g} s (each call held "
          f"{FAILOVER_HOLD_MS} ms) -> Kamailio (PING_INTERVAL {PING_INTERVAL} s, FR_TIMER "
          f"{FR_TIMER_MS} ms) -> {workers} workers; SIGKILL to the last worker after "
          f"{kill_after:g} s", flush=True)
    with Chain(procs, workdir, workers, log_level=2) as chain:
        assert chain.kam is not None
        kam = chain.kam
        victim_port = chain.ports[-1]
        uri = f"sip:{chain.address(victim_port)}"
        scenario = kamailio.proxied_scenario(sip_cps.UAC_SCENARIO.name, chain.workdir)
        results: list[peers.SippResult] = []
        errors: list[BaseException] = []

        def call() -> None:
            try:
                results.append(peers.run_sipp(
                    scenario, kam.target, calls=out.calls, rate=rate, limit=SIPP_LIMIT,
                    rtp_echo=False, timeout=seconds + 60, trace_logs=False,
                    extra_vars={"hold_ms": FAILOVER_HOLD_MS, "ack_delay_ms": 0},
                    extra_args=["-buff_size", str(SIPP_BUFFER)], cwd=chain.workdir))
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        caller = threading.Thread(target=call, name="sipp")
        caller.start()
        time.sleep(kill_after)
        pid = chain.workers()[victim_port]
        log_mark = kam.log_path.stat().st_size  # what Kamailio logged before the kill
        killed = time.time()
        os.kill(pid, signal.SIGKILL)
        out.timeline.append((0.0, f"worker on {victim_port} (pid {pid}) killed"))
        with kam.log_path.open("rb") as log:
            log.seek(log_mark)
            watch(out, chain, log, pid, victim_port, killed, caller)
        caller.join()
        if errors:
            raise errors[0]
        result = results[0]
        text = kam.log_path.read_bytes()
    before = text[:log_mark].decode(errors="replace").splitlines()
    after = text[log_mark:].decode(errors="replace").splitlines()
    invited, done = _call_outcomes(result)
    routed = re.compile(rf"to node {re.escape(uri)} \(Call-ID (\S+)\)")
    sent_to_victim = {m.group(1) for m in map(routed.search, before) if m}
    for call_id, sent in invited.items():
        if call_id in done:
            continue
        if sent < killed:
            out.lost_before_kill += 1
            out.lost_on_victim += call_id in sent_to_victim
        else:
            out.lost_after_kill += 1
    out.ok = len(done)
    out.why = failure_kinds(result.errors())
    if len(invited) < out.calls:
        out.notes.append(f"SIPp placed {len(invited)} of {out.calls} calls")
    out.retried = sum(1 for line in after if "retried on node" in line)
    up_line = next((i for i, line in enumerate(after)
                    if line.endswith(f"dispatcher: node {uri} up")), None)
    if up_line is not None:
        out.after_up = sum(1 for line in after[up_line:] if f"to node {uri} " in line)
    if out.down_at is None:
        out.notes.append("the dispatcher never showed the killed worker down")
    if out.up_at is None:
        out.notes.append(f"the worker was not up at the proxy again within {BACK_WITHIN:g} s")
    if not result.ok and not out.lost_before_kill + out.lost_after_kill:
        out.notes.append(f"SIPp: {result.exit_meaning}")
    return out


def report_failover(out: Failover) -> None:
    for at, what in sorted(out.timeline, key=lambda item: item[0]):
        print(f"  {at:+6.2f} s  {what}")
    print(f"calls placed {out.calls}, successful {out.ok}; lost: {out.lost_before_kill} "
          f"placed before the kill ({out.lost_on_victim} of them sent to the killed "
          f"worker), {out.lost_after_kill} placed after it"
          + (f" ({out.why})" if out.why else "") + f"; {out.retried} new calls sent "
          f"to the dead worker were retried on another; the restarted worker took "
          f"{out.after_up} calls after it was up" + (f"; {'; '.join(out.notes)}"
                                                     if out.notes else ""), flush=True)


# ------------------------------------------------------------------------------ scaling
def scaling(best: dict[int, int], rungs: dict[int, Rung]) -> None:
    """What the figures say about cores, from each part's CPU per call at each ladder's
    best rate: what this machine allows, and what one with more cores would give."""
    cores = os.cpu_count() or 1
    print(f"\n## scaling: this machine has {cores} cores, shared by SIPp, Kamailio, the "
          "workers and whatever else runs (others)\n"
          f"{'workers':>7} {'cps':>6}  {'uascall':>8} {'Kamailio':>8} {'SIPp':>8}  "
          f"{'uascall':>7} {'Kamailio':>8} {'SIPp':>6} {'others':>6} {'left':>6}\n"
          f"{'':>7} {'':>6}  {'ms/call':>8} {'ms/call':>8} {'ms/call':>8}  "
          f"{'% core':>7} {'% core':>8} {'% core':>6} {'% core':>6} {'% core':>6}")
    per_call: dict[int, tuple[float, float, float]] = {}
    for workers, rung in sorted(rungs.items()):
        parts = (rung.workers_cpu, rung.kamailio_cpu, rung.sipp.sipp_cpu)
        per_call[workers] = w, k, s = tuple(rung.per_call_ms(cpu) for cpu in parts)
        # what no process we saw used: idle, or short-lived processes (tests' tools)
        idle = max(0.0, 100 * cores - rung.share(sum(parts) + rung.others_cpu))
        print(f"{workers:7d} {best[workers]:6d}  {w:8.3f} {k:8.3f} {s:8.3f}  "
              + " ".join(f"{rung.share(cpu):{width}.0f}" for cpu, width in
                         zip((*parts, rung.others_cpu), (7, 8, 6, 6), strict=True))
              + f" {idle:6.0f}")
    if best.get(1) and len(best) > 1:
        print("measured: " + ", ".join(f"{n} workers {best[n] / best[1]:.2f} x one worker"
                                       for n in sorted(best) if n != 1))
    if 1 not in per_call or not all(per_call[1]):
        return
    # One worker's CPU per call at its best rate, Kamailio's and SIPp's at the highest
    # rate any ladder passed (their figures fall as the rate rises: fixed costs spread).
    w = per_call[1][0]
    top = max(rungs, key=lambda n: best[n])
    k, s = per_call[top][1], per_call[top][2]
    print(f"one worker is one engine thread and one GIL: about one core, "
          f"{1e3 / w:.0f} cps at {w:.3f} ms a call; Kamailio {k:.3f} ms a call "
          f"({1e3 / k:.0f} cps for each receiver process, CHILDREN of them), SIPp "
          f"{s:.3f} ms (one thread: {1e3 / s:.0f} cps)")
    print("with a core for each worker and enough for Kamailio and the caller (an "
          "estimate from the CPU per call, assuming nothing else is shared):")
    for n in (1, 2, 4, 8, 16, 32):
        rate = n * 1e3 / w
        if rate >= 1e3 / s:  # one SIPp cannot call faster: more callers, or this is it
            print(f"  {n:2d} workers or more: {1e3 / s:.0f} cps, the limit of one SIPp "
                  "(one thread): more callers needed beyond it")
            break
        kam = max(1, -int(-rate * k // 1e3))
        sipp = max(1, -int(-rate * s // 1e3))
        print(f"  {n:2d} workers: {rate:6.0f} cps on {n + kam + sipp} cores ({n} for the "
              f"workers, {kam} for Kamailio with CHILDREN >= {kam}, {sipp} for SIPp)")


# ------------------------------------------------------------------------------ main
def code_version() -> str:
    """The commit measured, and the files changed on top of it (the tree is shared)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.rstrip() if done.returncode == 0 else ""
    head = git("log", "-1", "--format=%h %cd", "--date=format:%Y-%m-%d %H:%M")
    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no",
                                        "uascall", "bench").splitlines()]
    return (f"commit {head or '?'}" + (f", with uncommitted changes to {', '.join(changed)}"
                                       if changed else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default=None,
                        help=f"the worker counts, each a ladder (default {DEFAULT_WORKERS})")
    parser.add_argument("--rates", default=None, help=f"call rates (default {DEFAULT_RATES})")
    parser.add_argument("--seconds", type=float, default=None,
                        help=f"seconds per rate (default {DEFAULT_SECONDS:g})")
    parser.add_argument("--failover-workers", type=int, default=2)
    parser.add_argument("--failover-rate", type=int, default=0, metavar="CPS",
                        help="the failover run's rate (default: half of kamailio_1, at most "
                        f"{MAX_FAILOVER_RATE}; 100 without the ladders)")
    parser.add_argument("--kill-after", type=float, default=5.0, metavar="SECONDS")
    parser.add_argument("--failover-seconds", type=float, default=25.0, metavar="SECONDS",
                        help="how long SIPp calls in the failover run (default 25)")
    parser.add_argument("--skip", default="", help="leave out: ladders, failover")
    sip_cps.add_app_arguments(parser, "the ladders with this application (e.g. examples/"
                              "early_media.py), as sip_cps.py --app runs it; the results "
                              "are app_kamailio_N and there is no failover run")
    parser.add_argument("--realtime", action="store_true",
                        help="the ladders' workers run their engine threads at SCHED_FIFO "
                        "(uascall run --realtime; root), as a telephony server would")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds, not minutes: workers 1,2 at one low rate, a short "
                        "failover run")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (logs, SIPp traces)")
    args = parser.parse_args()
    if args.smoke:
        for name, value in SMOKE.items():
            if getattr(args, name) in (None, 0, parser.get_default(name)):
                setattr(args, name, value)
    workers = [int(n) for n in (args.workers or DEFAULT_WORKERS).split(",")]
    rates = [int(r) for r in (args.rates or DEFAULT_RATES).split(",")]
    seconds = args.seconds or DEFAULT_SECONDS
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    if skip - {"ladders", "failover"}:
        parser.error(f"--skip {args.skip}: expected ladders and/or failover")
    app = Path(args.app).resolve() if args.app else None
    if app is not None:
        if not app.is_file():
            parser.error(f"--app {args.app}: no such file")
        if "ladders" in skip:
            parser.error("--app measures the ladders: it cannot skip them")
        skip.add("failover")  # the failover run's figures are the bare application's
    for tool in ("sipp", "kamcmd"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (Debian: apt-get install "
                         f"{'sip-tester' if tool == 'sipp' else 'kamailio'}; "
                         "scripts/setup.sh test installs both)")
    why = kamailio.missing()
    if why:
        parser.error(why)

    signal.signal(signal.SIGTERM, sip_cps._terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    procs = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="sip_scale-"))
    best: dict[int, int] = {}
    rungs: dict[int, Rung] = {}
    lost_after_kill = 0
    code = 0
    version = subprocess.run(["kamailio", "-v"], capture_output=True, text=True).stdout
    print(f"# {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {sip_cps.machine()}; "
          f"Kamailio {version.split()[2] if version.startswith('version:') else '?'}")
    print(f"# uascall: {code_version()}")
    print(f"# load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f}; loopback only; {seconds:g} s per rate; a rate passes "
          f"with every call successful and {100 * REACHED:.0f} % of it offered; CPU per "
          "call: user+system time of the process(es) over the successful calls; others: "
          "every other process that ran through the rung; kernel drops: datagrams dropped for "
          "a full receive buffer at Kamailio's socket, the workers' SIP sockets, and on the "
          "whole machine")
    try:
        if "ladders" not in skip:
            for n in workers:
                best[n], rung = ladder(procs, workdir, n, rates, seconds, app,
                                       args.call_seconds if app else 0.0, args.realtime)
                if rung is not None:
                    rungs[n] = rung
                else:  # not a figure: the chain does not work (exit 1, so CI sees it)
                    print(f"# kamailio_{n}: not even {rates[0]} calls/s passed")
                    code = 1
        if "failover" not in skip:
            rate = args.failover_rate or min(best.get(1, 0) // 2, MAX_FAILOVER_RATE) or 100
            out = failover(procs, workdir, args.failover_workers, rate, args.kill_after,
                           args.failover_seconds)
            report_failover(out)
            lost_after_kill = out.lost_after_kill
            if out.down_at is None or out.up_at is None:
                code = 1
        scaling(best, rungs)
    except KeyboardInterrupt:
        print("# interrupted; everything started was stopped", flush=True)
        return 130
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.keep:
        print(f"# work directory kept: {workdir}")
    if app is not None:
        figures = {f"app_kamailio_{n}": best.get(n, 0) for n in workers}
    else:
        figures = {f"kamailio_{n}": best.get(n, 0) for n in sorted({1, 2, *workers})}
        figures["failover_lost_after_kill"] = lost_after_kill
    print("RESULT " + " ".join(f"{name}={value}" for name, value in figures.items()))
    return code


if __name__ == "__main__":
    sys.exit(main())
