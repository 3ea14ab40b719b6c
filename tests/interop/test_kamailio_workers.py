"""Workers: one supervisor, N ``uascall run`` processes (uascall/workers.py), behind
deploy/kamailio's dispatcher.

The supervisor runs as a user would (``python -m uascall.workers N run ...``, what
``uascall run --workers N`` calls): each worker on its own port and records file; the
calls through Kamailio are spread over them; a worker killed is started again on its port
by the supervisor and takes calls again; Ctrl-C (SIGINT) to the supervisor stops every
worker and it exits 0.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.interop import kamailio, peers
from tests.interop.test_kamailio_dispatcher import _calls
from uascall.errors import ArgumentError
from uascall.workers import worker_argv

ROOT = Path(__file__).resolve().parents[2]
#: seconds a restarted worker may take to be up at the proxy again (and stay up for
#: wait_node's settle, 1.5 s, while it answers the probes)
BACK_WITHIN = 15.0


# ---------------------------------------------------------------------- the commands
def test_each_worker_gets_its_port_records_trace_metrics_and_control_socket() -> None:
    argv = ["-v", "run", "app.py", "--backend", "sip", "--listen", "127.0.0.1:5071",
            "--listen=[::1]:5071", "--workers", "3", "--records", "/var/calls.sqlite",
            "--trace=/tmp/t.pcapng", "--metrics", "0.0.0.0:9100", "--control", "/run/c.sock"]
    assert worker_argv(argv, 2) == [
        "-v", "run", "app.py", "--backend", "sip", "--listen", "127.0.0.1:5073",
        "--listen=[::1]:5073", "--records", "/var/calls.w2.sqlite",
        "--trace=/tmp/t.w2.pcapng", "--metrics", "0.0.0.0:9102", "--control",
        "/run/c.sock.w2"]
    # no --listen: the default port and up; no --control: the first worker's default
    assert worker_argv(["run", "a.py", "--backend=sip", "--workers=2"], 0) == [
        "run", "a.py", "--backend=sip", "--listen", "127.0.0.1:5060"]
    assert worker_argv(["run", "a.py", "--backend=sip", "--workers=2"], 1) == [
        "run", "a.py", "--backend=sip", "--listen", "127.0.0.1:5061", "--control", "none"]


@pytest.mark.parametrize(("argv", "expected"), [
    (["run", "a.py", "--workers", "2"], "--backend sip alone"),
    (["run", "a.py", "--backend", "sip", "--backend", "sim"], "--backend sip alone"),
    (["call", "a.py", "--backend", "sip"], "an option of `uascall run`"),
    (["run", "a.py", "--backend", "sip", "--listen", "h:65535"], "below 65536"),
])
def test_commands_that_cannot_be_split_are_refused(argv: list[str], expected: str) -> None:
    with pytest.raises(ArgumentError, match=expected):
        worker_argv(argv, 1)


# ---------------------------------------------------------------------- for real
def _records(path: Path) -> int:
    """Calls recorded with return code 0 in a worker's SQLite file."""
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM calls WHERE return_code = 0").fetchone()[0]


def _wait_records(path: Path, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _records(path) < count:
        assert time.monotonic() < deadline, f"{path}: {_records(path)} records, not {count}"
        time.sleep(0.1)


def _served(kam: kamailio.Kamailio) -> collections.Counter:
    """How many calls each node (by port) took, from the proxy's log: the node each
    Call-ID was sent to last. Round robin chooses a node for each new call; a node that
    refuses it with 503 (overload control: its engine ran late) has the proxy retry it
    on the next, which then takes it."""
    last: dict[str, str] = {}
    for line in kam.lines(r"new call from .* (to|retried on) node"):
        found = re.search(r"node sip:[\d.]+:(\d+) \(Call-ID (\S+)\)", line)
        if found:
            last[found.group(2)] = found.group(1)
    return collections.Counter(last.values())


def _wait_children(pid: int, ports: set[int], timeout: float, *, gone: int | None = None
                   ) -> dict[int, int]:
    """The workers once one is up on each of ``ports`` (``gone`` no longer among them)."""
    deadline = time.monotonic() + timeout
    while True:
        children = kamailio.workers_by_port(pid)
        if (set(children) == ports and gone not in children.values()
                and all(peers._udp_bound(port) for port in ports)):
            return children
        if time.monotonic() > deadline:
            raise AssertionError(f"workers on {sorted(ports)} not up within {timeout} s: "
                                 f"{children}")
        time.sleep(0.1)


def test_workers_behind_kamailio_one_killed_is_restarted_ctrl_c_stops_all(
        workdir: Path) -> None:
    kamailio.require()
    base = peers.free_udp_port(span=2)
    records = workdir / "calls.sqlite"
    command = [sys.executable, "-m", "uascall", "run", "--workers", "2",
               str(ROOT / "examples/early_media.py"), "--backend", "sip",
               "--listen", f"127.0.0.1:{base}", "--param", "0.5", "--control", "none",
               "--records", str(records)]
    with open(workdir / "supervisor.log", "wb") as log:
        supervisor = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL,
                                      stdout=log, stderr=log)
    try:
        ports = {base, base + 1}
        first = _wait_children(supervisor.pid, ports, 20)
        nodes = [f"127.0.0.1:{port}" for port in sorted(ports)]
        # Probes every 2 s with 1 s to answer (README: FR_TIMER below the interval, as
        # shipped), so that the probe sent while the worker was dead has timed out before
        # the next; WITH_PROBE_LOG: each probe's result in the log, for why it went down.
        with kamailio.Kamailio(workdir, nodes, ping_interval=2,
                               defines=["WITH_PROBE_LOG"]) as kam:
            spread = _calls(kam, workdir, 4)
            assert spread == {str(port): 2 for port in ports}, spread

            victim = base + 1
            _wait_records(workdir / "calls.w1.sqlite", _served(kam)[str(victim)])
            os.kill(first[victim], signal.SIGKILL)
            again = _wait_children(supervisor.pid, ports, 15, gone=first[victim])
            assert again[victim] != first[victim] and again[base] == first[base]
            # Up in the dispatcher itself (kamcmd), not by the order of its log lines
            # (Kamailio.node_view: they can say "down" last while the node is up), once
            # the new worker answers the probes: its start (a Python process, under CI's
            # load a few seconds) and a probe or two after it. It stays up while it
            # answers them and takes its share of the calls.
            kam.wait_node(f"127.0.0.1:{victim}", "up", BACK_WITHIN)
            served_before = _served(kam)
            spread = _calls(kam, workdir, 4)
            assert spread == {str(port): 2 for port in ports}, spread
            assert kam.node_view(f"127.0.0.1:{victim}") == "up", kam.dispatcher_view()
            served = _served(kam)
            assert served[str(victim)] > served_before[str(victim)], (served, kam.log()[-3000:])

        supervisor.send_signal(signal.SIGINT)
        assert supervisor.wait(timeout=20) == 0, (workdir / "supervisor.log").read_text()
        assert not any(Path(f"/proc/{pid}").exists() for pid in again.values())
    finally:
        peers._stop(supervisor, (signal.SIGINT, 10.0), (signal.SIGTERM, 5.0))
    log_text = (workdir / "supervisor.log").read_text()
    assert "worker 1 exited with SIGKILL" in log_text, log_text
    # each worker's records: the calls it took, before and after the kill (one file);
    # 4 each unless one refused a call, which the other then took
    assert sum(served.values()) == 8, served
    assert [_records(workdir / f"calls.w{number}.sqlite") for number in (0, 1)] == [
        served[str(base)], served[str(victim)]], (served, log_text)


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie that its new parent has not reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def test_workers_stop_when_the_supervisor_is_killed(workdir: Path) -> None:
    """A supervisor killed outright (SIGKILL, the OOM killer) cannot pass a stop on: its
    workers get SIGTERM from the kernel instead (they drain and exit), rather than keep
    their ports, so that the supervisor started again can bind them."""
    base = peers.free_udp_port(span=2)
    command = [sys.executable, "-m", "uascall.workers", "2", "run",
               str(ROOT / "examples/early_media.py"), "--backend", "sip",
               "--listen", f"127.0.0.1:{base}", "--control", "none",
               "--shutdown-timeout", "2"]
    with open(workdir / "supervisor.log", "wb") as log:
        supervisor = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL,
                                      stdout=log, stderr=log)
    workers: dict[int, int] = {}
    try:
        workers = _wait_children(supervisor.pid, {base, base + 1}, 20)
        supervisor.kill()
        supervisor.wait()
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in workers.values()):
            assert time.monotonic() < deadline, (
                f"workers {sorted(workers.values())} still run 10 s after their supervisor "
                "was killed")
            time.sleep(0.1)
        assert not any(peers._udp_bound(port) for port in workers)
    finally:
        peers._stop(supervisor)
        for pid in workers.values():  # left by the supervisor: by pid, if still there
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
