"""Scale-out behind Kamailio's dispatcher (deploy/kamailio/), for real.

Kamailio runs the shipped configuration (probes every second, a node that does not answer
within 1 s is dead), in front of uascall nodes on loopback ports; SIPp calls through it.

- ``uascall run examples/early_media.py --backend sip`` processes, as a user runs them:
  the calls are spread over the nodes (round robin); a node killed with SIGKILL is out of
  the set within seconds (Kamailio logs it down) and every call after that succeeds on the
  others; the node restarted on its port is up again and takes calls; with every node
  down, a new call is answered 503 by the proxy.
- a node that drains (``UserAgent.drain``, what uascall does on SIGTERM) answers the
  probes 503: the dispatcher takes it out and the calls go to the other node, while the
  call it has up goes on to its end.
"""

from __future__ import annotations

import collections
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop import kamailio, peers
from tests.interop.test_uascall_sip import CALLER_HUNG_UP, WE_HUNG_UP, Service
from tests.sim.sip_peer import SipPeer
from uascall.sip.message import Response

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "early_media.py"
#: how soon a dead or draining node must be out of the set (probes every 1 s, 1 s to
#: answer): seconds
OUT_WITHIN = 5.0


@pytest.fixture(autouse=True)
def _needs_kamailio() -> None:
    kamailio.require()


class Node:
    """``uascall run examples/early_media.py --backend sip`` on a loopback port."""

    def __init__(self, workdir: Path, name: str, port: int | None = None) -> None:
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or peers.free_udp_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"{peers.LOCALHOST}:{self.port}"

    def start(self) -> Node:
        self.starts += 1
        command = [sys.executable, "-m", "uascall", "run", str(EXAMPLE), "--backend", "sip",
                   "--listen", self.address, "--param", "0.5", "--control", "none",
                   "--records", str(self.workdir / f"records{self.starts}.sqlite")]
        with open(self.workdir / "uascall.log", "ab") as log:
            self.proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
        peers.wait_bound(self.port, self.proc, 20.0)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        peers._stop(self.proc, (signal.SIGINT, 10.0))


@pytest.fixture
def nodes(workdir: Path) -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        node.stop()


def _start_nodes(workdir: Path, started: list[Node], count: int) -> list[Node]:
    made = [Node(workdir, f"node{i}") for i in range(count)]
    started.extend(made)
    threads = [threading.Thread(target=node.start) for node in made]  # in parallel
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for node in made:
        assert node.proc is not None and node.proc.poll() is None, node.workdir
    return made


def _calls(kam: kamailio.Kamailio, workdir: Path, count: int) -> collections.Counter:
    """``count`` calls through the proxy (the example's: early media, answer, our BYE),
    all of which must succeed; how many each node took (by its port), from the proxy's
    log."""
    before = len(kam.lines("new call from"))
    result = peers.run_sipp(kamailio.proxied_scenario("uac_callee_bye.xml", workdir),
                            kam.target, calls=count, rate=10, limit=count, rtp_echo=True,
                            trace_messages=False, cwd=workdir, timeout=40)
    assert result.ok and (result.successful, result.failed) == (count, 0), (
        result.describe() + "\n" + kam.log()[-3000:])
    lines = kam.lines("new call from")[before:]
    return collections.Counter(re.search(r"to node sip:[\d.]+:(\d+)", line).group(1)
                               for line in lines if "to node" in line)


def test_calls_spread_over_the_nodes_a_dead_node_is_out_and_back(nodes, workdir: Path
                                                                  ) -> None:
    a, b, c = _start_nodes(workdir, nodes, 3)
    with kamailio.Kamailio(workdir, [a.address, b.address, c.address]) as kam:
        spread = _calls(kam, workdir, 6)
        assert spread == {str(n.port): 2 for n in (a, b, c)}, (spread, kam.log()[-2000:])

        assert set(kam.dispatcher_view().values()) == {"AP"}, kam.dispatcher_view()
        c.kill()
        assert kam.wait_node(c.address, "down", OUT_WITHIN) <= OUT_WITHIN
        assert kam.dispatcher_view()[f"sip:{c.address}"] == "IP"  # inactive, probed
        spread = _calls(kam, workdir, 6)
        assert str(c.port) not in spread and sum(spread.values()) == 6, spread

        c.start()  # the same port again
        assert kam.wait_node(c.address, "up", OUT_WITHIN) <= OUT_WITHIN
        assert kam.dispatcher_view()[f"sip:{c.address}"] == "AP"
        spread = _calls(kam, workdir, 6)
        assert spread[str(c.port)] >= 1 and sum(spread.values()) == 6, spread


def test_the_shipped_configuration_and_list_check_in_both_modes(workdir: Path) -> None:
    """kamailio -c passes deploy/kamailio as shipped, round robin and by call load."""
    for defines in ((), ("WITH_CALL_LOAD",)):
        kam = kamailio.Kamailio(workdir, [], defines=defines)
        kam.list_file.write_text((ROOT / "deploy/kamailio/dispatcher.list").read_text())
        checked = kam.check()
        assert checked.returncode == 0, (defines, checked.stderr[-3000:])


def test_no_node_up_the_proxy_answers_503(nodes, workdir: Path) -> None:
    (a,) = _start_nodes(workdir, nodes, 1)
    with kamailio.Kamailio(workdir, [a.address]) as kam:
        a.kill()
        kam.wait_node(a.address, "down", OUT_WITHIN)
        host, port = kam.target.split(":")
        caller = SipPeer((host, int(port)))
        try:
            caller.invite()
            refused = caller.expect(503, method="INVITE")
            assert refused.headers.get("Retry-After") == "5"
        finally:
            caller.close()
        kam.wait_for("refused 503: no node is up", 2)


def test_a_draining_node_is_taken_out_and_its_call_up_goes_on(workdir: Path) -> None:
    services = [Service("ring=0.2 early=1 hold=4") for _ in range(2)]
    try:
        with kamailio.Kamailio(workdir, [s.target for s in services]) as kam:
            # a call up (we hang up after 4 s) on the node that then drains
            long_call: list[peers.SippResult] = []
            thread = threading.Thread(target=lambda: long_call.append(peers.run_sipp(
                kamailio.proxied_scenario("uac_callee_bye.xml", workdir), kam.target,
                cwd=workdir)))
            thread.start()
            port = re.search(r"to node sip:[\d.]+:(\d+)", kam.wait_for("to node", 5)[0])
            draining, = (s for s in services if s.target.endswith(f":{port.group(1)}"))
            staying, = (s for s in services if s is not draining)
            time.sleep(0.5)
            draining.engine.run(draining.backend.ua.drain)
            kam.wait_node(draining.target, "down", OUT_WITHIN)
            result = peers.run_sipp(kamailio.proxied_scenario("uac_early_media.xml", workdir),
                                    kam.target, calls=4, rate=10, limit=4, cwd=workdir,
                                    extra_vars={"hold_ms": 200, "ack_delay_ms": 0})
            assert result.ok and result.successful == 4, result.describe()
            thread.join(30)
            assert long_call and long_call[0].ok, long_call[0].describe()
        # the call up went on to its end (our BYE after 4 s), the others went elsewhere
        assert [r.return_code for r in draining.records(1)] == [WE_HUNG_UP]
        assert [r.return_code for r in staying.records(4)] == [CALLER_HUNG_UP] * 4
        assert draining.settled() and staying.settled()
    finally:
        for service in services:
            service.close()


def test_sigterm_drains_a_node_its_call_ends_then_it_exits(nodes, workdir: Path) -> None:
    """``uascall run`` on SIGTERM: 503 to OPTIONS and new INVITEs at once (the proxy
    takes it out, the next calls go to the other node), the call up goes on to its end
    (the example's own BYE), then the process exits 0 with the call's record."""
    first, second = _start_nodes(workdir, nodes, 2)
    with kamailio.Kamailio(workdir, [first.address, second.address]) as kam:
        long_call: list[peers.SippResult] = []
        thread = threading.Thread(target=lambda: long_call.append(peers.run_sipp(
            kamailio.proxied_scenario("uac_callee_bye.xml", workdir), kam.target,
            cwd=workdir)))
        thread.start()
        port = re.search(r"to node sip:[\d.]+:(\d+)", kam.wait_for("to node", 5)[0]).group(1)
        node, = (n for n in (first, second) if n.port == int(port))
        other, = (n for n in (first, second) if n is not node)
        time.sleep(1.0)  # the example's greeting, in early media
        assert node.proc is not None
        node.proc.send_signal(signal.SIGTERM)
        prober = SipPeer((peers.LOCALHOST, node.port))
        try:
            statuses: list[int] = []
            deadline = time.monotonic() + 3
            while 503 not in statuses and time.monotonic() < deadline:  # signal handled?
                prober.cseq += 1
                prober.send(prober.request("OPTIONS"))
                statuses += [item.message.status for item in prober.poll(0.2)
                             if isinstance(item.message, Response)]
            assert statuses and statuses[-1] == 503, statuses
            prober.invite()
            assert prober.expect(503, method="INVITE").headers.get("Retry-After") == "5"
        finally:
            prober.close()
        kam.wait_node(node.address, "down", OUT_WITHIN)
        spread = _calls(kam, workdir, 2)
        assert spread == {str(other.port): 2}, spread
        thread.join(30)
        assert long_call and long_call[0].ok, long_call[0].describe()
        assert node.proc.wait(timeout=15) == 0
    with sqlite3.connect(node.workdir / "records1.sqlite") as db:
        rows = db.execute("SELECT return_code, cause FROM calls").fetchall()
    assert rows == [(0, "NORMAL")], rows
