"""uascall behind a real record-routing proxy: SIPp calls through Kamailio.

Kamailio runs deploy/kamailio/kamailio.cfg (record_route() on every new call, loose_route()
for requests in a dialog, a request in a dialog without a Route to it answered 404), its
dispatcher sending the calls to one uascall node: ``apps/scripted.py`` on the ``sip``
backend in this process. SIPp's requests in the dialog carry the route set it learnt from
our 200's Record-Route (``[routes]``), so they pass the proxy only if we copied it
(RFC 3261 12.1.1); our BYE passes only if we send it along the INVITE's Record-Route
(12.2.1.1). Kamailio logs every request it relays in a dialog, with its source: the BYE
from our port is seen there, i.e. it went through the proxy and not straight to SIPp.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop import kamailio, peers
from tests.interop.test_uascall_sip import (
    CALLER_HUNG_UP,
    CANCELLED_WHILE_RINGING,
    WE_HUNG_UP,
    ladder,
)
from tests.interop.test_uascall_sip import serve as serve  # a fixture


@pytest.fixture(autouse=True)
def _needs_kamailio() -> None:
    kamailio.require()


@pytest.fixture
def proxy(workdir: Path):
    proxies: list[kamailio.Kamailio] = []

    def start(*nodes: str) -> kamailio.Kamailio:
        server = kamailio.Kamailio(workdir, nodes)
        proxies.append(server)
        return server.start()

    yield start
    for server in proxies:
        server.stop()


def _node(service) -> str:
    return service.target


def test_early_media_and_the_callers_bye_through_the_proxy(serve, proxy, workdir: Path
                                                           ) -> None:
    service = serve("ring=1 early=1")
    kam = proxy(_node(service))
    result = peers.run_sipp(kamailio.proxied_scenario("uac_early_media.xml", workdir),
                            kam.target, extra_vars={"hold_ms": 500, "ack_delay_ms": 0},
                            cwd=workdir)
    assert result.ok and (result.successful, result.failed) == (1, 0), (
        result.describe() + "\n" + kam.log()[-3000:])
    assert ladder(result) == ["S INVITE", "R 100 INVITE", "R 183 INVITE", "R 200 INVITE",
                              "S ACK", "S BYE", "R 200 BYE"], result.describe()
    assert "200 ct=application/sdp pt=8 " in "\n".join(result.log_lines())
    # The 200's Record-Route reached SIPp, whose ACK and BYE followed it through the proxy.
    kam.wait_for(r"in-dialog ACK from 127\.0\.0\.1:\d+ to sip:uascall@", 2)
    kam.wait_for(r"in-dialog BYE from 127\.0\.0\.1:\d+ to sip:uascall@", 2)
    assert not kam.lines("without a route"), kam.log()
    assert [r.return_code for r in service.records(1)] == [CALLER_HUNG_UP]
    assert service.settled(), service.leftovers()


def test_our_bye_goes_through_the_proxy(serve, proxy, workdir: Path) -> None:
    service = serve("ring=0.3 early=1 hold=1")
    kam = proxy(_node(service))
    result = peers.run_sipp(kamailio.proxied_scenario("uac_callee_bye.xml", workdir),
                            kam.target, cwd=workdir)
    assert result.ok, result.describe() + "\n" + kam.log()[-3000:]
    assert ladder(result)[-2:] == ["R BYE", "S 200 BYE"], result.describe()
    # Sent by our user agent (its port) to the proxy, relayed to SIPp's Contact.
    port = service.target.rsplit(":", 1)[1]
    kam.wait_for(rf"in-dialog BYE from 127\.0\.0\.1:{port} to sip:sipp@", 2)
    records = service.records(1)
    assert [(r.return_code, r.cause) for r in records] == [(WE_HUNG_UP, "NORMAL")], records
    assert service.settled(), service.leftovers()


def test_cancel_during_early_media_through_the_proxy(serve, proxy, workdir: Path) -> None:
    service = serve("ring=none early=1")
    kam = proxy(_node(service))
    result = peers.run_sipp("uac_early_media_cancel.xml", kam.target,
                            extra_vars={"cancel_ms": 800}, cwd=workdir)
    assert result.ok and result.successful == 1, result.describe() + "\n" + kam.log()[-3000:]
    assert sorted(ladder(result)) == sorted(
        ["S INVITE", "R 100 INVITE", "R 183 INVITE", "S CANCEL", "R 200 CANCEL",
         "R 487 INVITE", "S ACK"]), result.describe()
    kam.wait_for(r"CANCEL from 127\.0\.0\.1:\d+ relayed", 2)
    records = service.records(1)
    assert [r.return_code for r in records] == [CANCELLED_WHILE_RINGING], records
    assert service.settled(), service.leftovers()
