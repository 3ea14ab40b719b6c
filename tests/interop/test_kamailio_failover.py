"""A node that dies between two probes, found out by a call (deploy/kamailio/).

The dispatcher learns that a node is dead in two ways: its OPTIONS probe gets no answer,
or a new call sent to the node gets none within FR_TIMER (the failure route marks the
node down with ``ds_mark_dst`` and retries the call on the next node). Either way
Kamailio's log and ``kamcmd dispatcher.list`` must name that node as down, the log in the
form the probe's uses (``dispatcher: node sip:HOST:PORT down``), so that whoever watches
the log (and tests/interop/kamailio.py's ``node_state``) sees the same thing whichever
found it; the call itself succeeds on the other node. (``node_state`` reads the log's
last line about a node; ``node_view`` the dispatcher's state itself.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop import kamailio, peers
from tests.interop.test_uascall_sip import CALLER_HUNG_UP, Service


@pytest.fixture(autouse=True)
def _needs_kamailio() -> None:
    kamailio.require()


def test_a_node_found_dead_by_a_call_is_logged_down_by_its_own_uri(workdir: Path) -> None:
    services = [Service("ring=0 early=1") for _ in range(2)]
    alive, dead = services
    try:
        # probes every 60 s: none is sent while the test runs, only the calls find out
        with kamailio.Kamailio(workdir, [s.target for s in services], ping_interval=60,
                               fr_timer_ms=1000) as kam:
            dead.close()
            result = peers.run_sipp(kamailio.proxied_scenario("uac_early_media.xml", workdir),
                                    kam.target, calls=4, rate=10, limit=4, cwd=workdir,
                                    extra_vars={"hold_ms": 100, "ack_delay_ms": 0})
            assert result.ok and result.successful == 4, (result.describe() + "\n"
                                                          + kam.log()[-3000:])
            kam.wait_for(rf"node sip:{dead.target} did not answer.*; marked down", 2)
            kam.wait_for(r"retried on node sip:" + alive.target, 2)
            assert kam.node_state(dead.target) == "down", kam.log()[-3000:]
            assert not kam.lines(r"dispatcher: node sip:service@"), kam.log()[-3000:]
            assert kam.dispatcher_view() == {f"sip:{alive.target}": "AP",
                                             f"sip:{dead.target}": "IP"}
        assert [r.return_code for r in alive.records(4)] == [CALLER_HUNG_UP] * 4
    finally:
        for service in services:
            service.close()
