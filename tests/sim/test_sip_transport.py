"""uascall.sip.transport on real loopback sockets: the allow-list and its cache, the receive
buffer, and the queueing delay it measures for overload control."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import pytest

from uascall.backend import open_backend
from uascall.engine import Engine
from uascall.errors import ArgumentError
from uascall.sip import transport
from uascall.sip.transport import UdpEndpoint, parse_networks

MiB = 1024 * 1024


@pytest.fixture
def engine():
    with Engine() as engine:
        yield engine


def endpoint(engine: Engine, **options) -> tuple[UdpEndpoint, list[tuple[bytes, tuple]]]:
    got: list[tuple[bytes, tuple]] = []
    ep = UdpEndpoint(engine, ("127.0.0.1", 0), lambda data, source: got.append((data, source)),
                     **options)
    engine.run(ep.start)
    return ep, got


def wait_for(predicate, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_the_allow_list_verdict_is_computed_once_per_host(engine, monkeypatch):
    ep, got = endpoint(engine, allow=parse_networks(["127.0.0.0/8", "192.0.2.0/24"]))
    checks: list[str] = []
    real = UdpEndpoint._check_allowed
    monkeypatch.setattr(UdpEndpoint, "_check_allowed",
                        lambda self, host: checks.append(host) or real(self, host))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        for n in range(5):
            peer.sendto(b"hello %d" % n, ep.address)
        assert wait_for(lambda: len(got) == 5)
    assert checks == ["127.0.0.1"]
    assert engine.run(ep.allowed, "192.0.2.77") and not engine.run(ep.allowed, "203.0.113.1")
    assert engine.run(ep.allowed, "::ffff:192.0.2.8")  # an IPv4-mapped address counts as IPv4
    assert checks == ["127.0.0.1", "192.0.2.77", "203.0.113.1", "::ffff:192.0.2.8"]
    engine.run(ep.close)


def test_the_allow_cache_is_bounded(engine, monkeypatch):
    monkeypatch.setattr(transport, "ALLOW_CACHE_SIZE", 4)
    ep, _got = endpoint(engine, allow=parse_networks(["10.0.0.0/8"]))
    verdicts = [engine.run(ep.allowed, f"10.0.0.{n}") for n in range(10)]
    assert all(verdicts) and not engine.run(ep.allowed, "11.0.0.1")
    assert len(ep._allowed) <= 4
    engine.run(ep.close)


def test_datagrams_from_outside_the_allow_list_are_counted_and_dropped(engine):
    ep, got = endpoint(engine, allow=parse_networks(["192.0.2.0/24"]))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        for _ in range(3):
            peer.sendto(b"x", ep.address)
        assert wait_for(lambda: ep.stats.dropped_not_allowed == 3)
    assert got == []
    engine.run(ep.close)


@pytest.mark.skipif(os.geteuid() != 0, reason="SO_RCVBUFFORCE needs root (CAP_NET_ADMIN)")
def test_as_root_the_receive_buffer_is_what_was_asked_whatever_rmem_max(engine, caplog):
    size = 2 * int(Path("/proc/sys/net/core/rmem_max").read_text()) + MiB
    with caplog.at_level(logging.WARNING, logger="uascall.sip.transport"):
        ep, _got = endpoint(engine, rcvbuf=size)
    # Linux reports twice the size set: its bookkeeping is counted in.
    assert ep.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * size == ep.rcvbuf
    assert "receive buffer" not in caplog.text
    engine.run(ep.close)


def test_without_force_the_buffer_is_capped_and_the_shortfall_logged(engine, caplog,
                                                                      monkeypatch):
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    monkeypatch.setattr(transport, "SO_RCVBUFFORCE", -1)  # refused, as for a non-root user
    with caplog.at_level(logging.WARNING, logger="uascall.sip.transport"):
        ep, _got = endpoint(engine, rcvbuf=rmem_max + MiB)
    assert ep.rcvbuf == 2 * rmem_max
    assert f"receive buffer is {rmem_max} bytes, asked for {rmem_max + MiB}" in caplog.text
    engine.run(ep.close)


def test_the_time_a_datagram_queued_in_the_kernel_is_measured(engine):
    ep, got = endpoint(engine, measure_delay=True)
    assert ep.queue_delay == 0.0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.sendto(b"now", ep.address)
        assert wait_for(lambda: len(got) == 1)
        assert engine.run(lambda: ep.queue_delay) < 0.1

        def busy() -> None:  # the engine is late: what arrives meanwhile waits in the kernel
            peer.sendto(b"waits", ep.address)
            time.sleep(0.3)
            ep.queue_delay = 0.0

        engine.run(busy)
        assert wait_for(lambda: len(got) == 2)
    assert 0.25 < engine.run(lambda: ep.queue_delay) < 5
    assert [data for data, _ in got] == [b"now", b"waits"]
    engine.run(ep.close)


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0", "0:0"])
def test_a_wildcard_listen_address_is_refused_at_start_up(engine, listen):
    # We advertise the address we listen on (Contact, Via, SDP o=/c=), and 0.0.0.0 there
    # tells a far end nothing (c=0.0.0.0 even means hold); "0" is 0.0.0.0 once bound.
    with pytest.raises(ArgumentError, match=r"is a wildcard address.*expected the "
                       r"address the far ends reach"):
        open_backend("sip", engine, listen=["127.0.0.1:0", listen])
