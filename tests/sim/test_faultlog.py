"""The engine's own guard: a callback that fails is logged once per distinct cause with a
count, never once per occurrence, and an fd whose handler keeps failing is unregistered
and its owner told (issue 12: a failing D-channel wrote a traceback per read, 48 MB of log
in 8 s, at 100 % CPU)."""

from __future__ import annotations

import ipaddress
import logging
import socket

import pytest

from uascall import faultlog
from uascall.engine import EPOLLIN, MAX_FD_FAILURES, DescriptorDropped, Engine
from uascall.faultlog import FaultLog
from uascall.sip import transport


def errors_logged(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_callback_failing_ten_thousand_times_is_logged_once_with_a_count(caplog):
    def bad(n: int) -> None:
        raise ValueError(f"bad input #{n}")

    with Engine() as engine:
        def schedule() -> None:
            for n in range(10_000):
                engine.call_soon(bad, n)

        engine.run(schedule)
        engine.run(lambda: None)  # after every one of them
        counts = engine.run(engine.faults.counts)
    assert list(counts.values()) == [10_000]
    (cause,) = counts
    assert "callback test_a_callback_failing" in cause and "ValueError" in cause \
        and "test_faultlog.py" in cause
    logged = errors_logged(caplog)
    # the first with its traceback, and at the stop one line with the rest's count
    assert len(logged) == 2, [r.getMessage() for r in logged]
    assert logged[0].exc_info is not None and "bad input #0" in logged[0].getMessage()
    assert "9999 more time(s)" in logged[1].getMessage()


def test_distinct_causes_are_each_logged(caplog):
    def bad_value() -> None:
        raise ValueError("a")

    def bad_key() -> None:
        raise KeyError("b")

    with Engine() as engine:
        for _ in range(3):
            engine.run(engine.call_soon, bad_value)
            engine.run(engine.call_soon, bad_key)
        engine.run(lambda: None)
        assert sorted(engine.run(engine.faults.counts).values()) == [3, 3]
    firsts = [r for r in errors_logged(caplog) if r.exc_info]
    assert len(firsts) == 2


def test_repeats_are_summed_up_at_most_once_per_interval(caplog):
    now = [0.0]
    faults = FaultLog("test", clock=lambda: now[0])
    for second in range(0, 300):
        now[0] = float(second)
        for _ in range(100):  # a hundred a second for five minutes
            try:
                raise OSError("EIO")
            except OSError as exc:
                faults.record("fd handler", exc)
    lines = errors_logged(caplog)
    # the first, then one summary a minute: 1 + 4 (at 60, 120, 180, 240 s)
    assert len(lines) == 1 + 4, [r.getMessage() for r in lines]
    assert "6000 more time(s) in the last 60 s" in lines[1].getMessage()
    assert faults.total() == 30_000


def test_the_table_of_causes_is_bounded(monkeypatch):
    monkeypatch.setattr(faultlog, "MAX_CAUSES", 8)
    faults = FaultLog("test")
    for n in range(100):
        kind = type(f"Error{n}", (Exception,), {})  # a new type each time: a new cause
        faults.record("callback", kind())
    counts = faults.counts()
    assert len(counts) == 9 and counts["(other causes)"] == 92 and faults.total() == 100


def test_an_fd_whose_handler_keeps_failing_is_dropped_and_its_owner_told(caplog):
    """A readable socket whose handler raises before reading is ready again at once: the
    engine gives it up after MAX_FD_FAILURES failures in a row instead of spinning."""
    a, b = socket.socketpair()
    told: list[BaseException] = []
    calls = [0]

    def handler(_revents: int) -> None:
        calls[0] += 1
        raise RuntimeError("a bug before the read")

    try:
        with Engine() as engine:
            engine.run(engine.add_fd, a.fileno(), EPOLLIN, handler, on_error=told.append)
            b.send(b"x")
            assert engine.wait_until(lambda: any(isinstance(e, DescriptorDropped)
                                                 for e in told), 5)
            engine.run(lambda: None)
            assert calls[0] == MAX_FD_FAILURES and len(told) == MAX_FD_FAILURES
            assert isinstance(told[-1].__cause__, RuntimeError)
            assert a.fileno() not in engine.run(lambda: set(engine._fds))
            # the engine goes on, and the owner may register the fd again
            engine.run(engine.add_fd, a.fileno(), EPOLLIN, lambda _r: a.recv(10))
            assert engine.run(lambda: 2 + 2) == 4
            engine.run(engine.remove_fd, a.fileno())
    finally:
        a.close()
        b.close()
    dropped = [r for r in caplog.records if "unregistered" in r.getMessage()]
    assert len(dropped) == 1 and "failed 5 times in a row" in dropped[0].getMessage()
    # the first failure with its traceback, and the count of the rest at the stop
    assert len(errors_logged(caplog)) == 2


def test_an_fd_whose_handler_fails_now_and_then_stays(caplog):
    a, b = socket.socketpair()
    calls = [0]

    def handler(_revents: int) -> None:
        calls[0] += 1
        a.recv(1)
        if calls[0] % 2:
            raise RuntimeError("every other datagram is bad")

    try:
        with Engine() as engine:
            engine.run(engine.add_fd, a.fileno(), EPOLLIN, handler)
            for n in range(4 * MAX_FD_FAILURES):
                b.send(b"x")
                assert engine.wait_until(lambda n=n: calls[0] > n, 5)
            assert calls[0] == 4 * MAX_FD_FAILURES
            assert a.fileno() in engine.run(lambda: set(engine._fds))
            engine.run(engine.remove_fd, a.fileno())
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt()])
def test_even_a_system_exit_in_a_callback_leaves_the_engine_running(exc):
    def bad() -> None:
        raise exc

    with Engine() as engine:
        engine.run(engine.call_soon, bad)
        assert engine.run(lambda: "alive") == "alive"
        assert engine.run(engine.faults.total) == 1


def test_a_sip_socket_the_engine_gave_up_on_listens_again(monkeypatch):
    """A UDP endpoint whose receive handler fails on every wake-up (a bug reached by a
    datagram before the per-datagram guard): the engine drops the fd, the endpoint
    registers it again after RELISTEN_AFTER, and datagrams are delivered once more."""
    monkeypatch.setattr(transport, "RELISTEN_AFTER", 0.2)
    got: list[bytes] = []
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with Engine() as engine:
        endpoint = engine.run(lambda: transport.UdpEndpoint(
            engine, ("127.0.0.1", 0), lambda data, _source: got.append(data),
            allow=[ipaddress.ip_network("127.0.0.0/8")]))
        engine.run(endpoint.start)
        broken = [True]
        real_allowed = endpoint.allowed

        def allowed(host: str) -> bool:
            if broken[0]:
                raise RuntimeError("a bug in the allow-list")
            return real_allowed(host)

        endpoint.allowed = allowed
        for n in range(MAX_FD_FAILURES * 3):
            sender.sendto(b"bad %d" % n, endpoint.address)
        assert engine.wait_until(lambda: not endpoint._registered, 5)
        broken[0] = False
        assert engine.wait_until(lambda: endpoint._registered, 5)
        sender.sendto(b"good", endpoint.address)
        assert engine.wait_until(lambda: b"good" in got, 5)
        engine.run(endpoint.close)
    sender.close()
