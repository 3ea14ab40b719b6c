"""The engine thread: epoll with EPOLLPRI, timers, submission, virtual time, shutdown."""

from __future__ import annotations

import concurrent.futures
import errno
import itertools
import os
import resource
import socket
import threading
import time

import pytest

from uascall.engine import EPOLLIN, EPOLLPRI, Engine, VirtualClock
from uascall.errors import ArgumentError, Error, Hangup


def open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def test_submit_runs_on_engine_thread_and_returns_result():
    with Engine() as engine:
        name = engine.run(lambda: threading.current_thread().name)
        assert name == "uascall-engine"
        assert engine.submit(lambda a, b: a * b, 6, 7).result(5) == 42


def test_exception_in_submitted_work_reaches_the_caller_and_engine_goes_on():
    with Engine() as engine:
        with pytest.raises(ZeroDivisionError):
            engine.run(lambda: 1 / 0)
        assert engine.run(lambda: "still alive") == "still alive"


def test_failing_timer_and_fd_handler_are_logged_not_fatal(caplog):
    errors: list[BaseException] = []
    a, b = socket.socketpair()
    try:
        with Engine() as engine:
            def bad_handler(_revents: int) -> None:
                engine.remove_fd(a.fileno())
                raise RuntimeError("malformed input")

            engine.run(engine.add_fd, a.fileno(), EPOLLIN, bad_handler, on_error=errors.append)
            engine.run(engine.call_later, 0, lambda: 1 / 0)
            b.send(b"x")
            assert engine.wait_until(lambda: bool(errors), timeout=5)
            assert engine.run(lambda: 2 + 2) == 4
    finally:
        a.close()
        b.close()
    assert isinstance(errors[0], RuntimeError)
    assert "the handler of an fd (test_failing_timer_and_fd_handler_are_logged_not_fatal" \
        ".<locals>.bad_handler)" in caplog.text
    assert "ZeroDivisionError" in caplog.text


def test_timers_run_in_order_and_cancel():
    order: list[str] = []
    done = threading.Event()
    with Engine() as engine:
        def schedule() -> None:
            engine.call_later(0.03, order.append, "c")
            engine.call_later(0.01, order.append, "a")
            engine.call_later(0.02, order.append, "b")
            engine.call_later(0.015, order.append, "cancelled").cancel()
            engine.call_later(0.04, done.set)

        engine.run(schedule)
        assert done.wait(5)
    assert order == ["a", "b", "c"]


def test_epollpri_is_delivered_with_its_own_bit():
    """DAHDI signals queued events as POLLPRI; a TCP urgent byte raises the same bit."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    seen: list[int] = []
    try:
        with Engine() as engine:
            def on_ready(revents: int) -> None:
                seen.append(revents)
                if revents & EPOLLPRI:
                    server.recv(1, socket.MSG_OOB)

            engine.run(engine.add_fd, server.fileno(), EPOLLIN | EPOLLPRI, on_ready)
            client.send(b"!", socket.MSG_OOB)
            assert engine.wait_until(lambda: any(r & EPOLLPRI for r in seen), timeout=5)
            engine.run(engine.remove_fd, server.fileno())
    finally:
        for s in (listener, client, server):
            s.close()


def test_stop_leaves_no_thread_and_no_fd_and_runs_shutdown_callbacks():
    before_fds = open_fds()
    before_threads = threading.active_count()
    closed: list[str] = []
    engine = Engine().start()
    engine.run(engine.add_shutdown_callback, lambda: closed.append("first added"))
    engine.run(engine.add_shutdown_callback, lambda: closed.append("last added"))
    engine.stop()
    assert closed == ["last added", "first added"]
    assert threading.active_count() == before_threads
    assert open_fds() == before_fds
    with pytest.raises(Error, match="not running"):
        engine.submit(lambda: None)
    engine.stop()  # twice is fine


def test_stop_wakes_threads_waiting_in_virtual_time():
    engine = Engine(VirtualClock()).start()
    woke = threading.Event()

    def sleeper() -> None:
        with engine.actor():
            engine.sleep(3600)
        woke.set()

    thread = threading.Thread(target=sleeper)
    thread.start()
    time.sleep(0.05)
    engine.stop()
    thread.join(5)
    assert woke.is_set()


def test_virtual_time_jumps_when_idle_and_actors_wait():
    clock = VirtualClock()
    with Engine(clock) as engine, engine.actor():
        start = time.monotonic()
        t0 = engine.time()
        engine.sleep(3600.0)
        assert engine.time() - t0 == pytest.approx(3600.0)
        assert time.monotonic() - start < 5


def test_virtual_time_runs_every_tick_in_order():
    clock = VirtualClock()
    ticks: list[float] = []
    with Engine(clock) as engine, engine.actor():
        def tick() -> None:
            ticks.append(engine.time())
            if len(ticks) < 500:
                engine.call_later(0.02, tick)

        engine.run(tick)
        engine.sleep(20.0)
    assert len(ticks) == 500
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert steps == {0.02}


def test_next_on_grid_is_the_first_moment_after_now_on_the_grid():
    with Engine(VirtualClock()) as engine, engine.actor():
        engine.sleep(0.013)
        assert engine.next_on_grid(0.02) == pytest.approx(0.02)
        assert engine.next_on_grid(0.02, 0.001) == pytest.approx(0.021)
        assert engine.next_on_grid(0.02, 0.015) == pytest.approx(0.015)
        engine.sleep(0.027)  # on the grid itself: the next moment, not now
        assert engine.next_on_grid(0.02) == pytest.approx(0.06)
        for period, phase in [(0.0, 0.0), (-0.02, 0.0), (float("nan"), 0.0),
                              (0.02, 0.02), (0.02, -0.001), (float("inf"), 0.0)]:
            with pytest.raises(ArgumentError, match="expected a period above 0"):
                engine.next_on_grid(period, phase)


def test_next_tick_keeps_the_grid_and_skips_what_a_stall_missed():
    with Engine(VirtualClock()) as engine, engine.actor():
        engine.sleep(0.045)  # a tick due at 0.04 runs 5 ms late: the next is not pushed back
        assert engine.next_tick(0.04, engine.time(), 0.02) == pytest.approx(0.06)
        engine.sleep(0.1)  # at 0.145: the tick due at 0.06 ran 85 ms late
        assert engine.next_tick(0.06, engine.time(), 0.02, 0.001) == pytest.approx(0.141)


def test_virtual_time_holds_while_an_actor_runs():
    clock = VirtualClock()
    fired = threading.Event()
    with Engine(clock) as engine, engine.actor():
        engine.run(engine.call_later, 1.0, fired.set)
        time.sleep(0.2)  # real time passes while this actor works: virtual time must not
        assert not fired.is_set()
        assert engine.time() == 0.0
        engine.sleep(1.0)
        assert fired.is_set()


def test_real_timers_stay_real_in_virtual_mode():
    """libpri's deadlines are wall-clock; they must not fire early when virtual time jumps."""
    clock = VirtualClock()
    fired_at: list[float] = []
    with Engine(clock) as engine, engine.actor():
        start = time.monotonic()
        engine.run(engine.call_later_real, 0.2, lambda: fired_at.append(time.monotonic()))
        engine.sleep(100.0)  # virtual
        assert not fired_at
        assert engine.wait_until(lambda: bool(fired_at), timeout=None)
    assert fired_at[0] - start >= 0.19


def test_wait_timeout_in_engine_time():
    clock = VirtualClock()
    with Engine(clock) as engine, engine.actor():
        never = engine.submit(lambda: None)
        never.result(5)
        import concurrent.futures
        pending: concurrent.futures.Future = concurrent.futures.Future()
        t0 = engine.time()
        with pytest.raises(TimeoutError):
            engine.wait(pending, 7.5)
        assert engine.time() - t0 == pytest.approx(7.5)


def test_wait_on_engine_thread_is_refused():
    with Engine() as engine:
        with pytest.raises(Error, match="deadlock"):
            engine.run(lambda: engine.wait(engine.submit(lambda: None)))


def test_wakeups_are_never_lost_while_virtual_time_runs():
    """A result that arrives just as the waiting actor parks must still wake it at once.

    Regression: the done-callback used to be registered after parking, so virtual time
    could run past the result and the actor slept until its timeout.
    """
    clock = VirtualClock()
    late = 0
    with Engine(clock) as engine, engine.actor():
        ticks = []

        def tick() -> None:
            ticks.append(engine.time())
            engine.call_later(0.02, tick)

        engine.run(tick)
        for _ in range(200):
            target = len(ticks) + 3
            t0 = engine.time()
            assert engine.wait_until(lambda target=target: len(ticks) >= target, timeout=10)
            late += engine.time() - t0 > 0.1
    assert late == 0


def test_an_interrupted_wait_leaves_the_actor_counted_as_running():
    import concurrent.futures
    import signal

    fired = threading.Event()
    with Engine(VirtualClock()) as engine, engine.actor():
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            engine.wait(concurrent.futures.Future())  # no timeout: only the interrupt ends it
        engine.run(engine.call_later, 1.0, fired.set)
        time.sleep(0.2)  # this actor is running: virtual time must stand still
        assert not fired.is_set()


def test_system_exit_in_a_callback_does_not_end_the_engine(caplog):
    import sys

    with Engine() as engine:
        engine.run(engine.call_soon, sys.exit, 3)
        assert engine.run(lambda: "alive") == "alive"
    assert "SystemExit" in caplog.text


def test_restarted_timers_do_not_pile_up():
    """A protocol timer moved on every frame must not leave its old deadlines behind."""
    fired = []
    with Engine() as engine:
        def restart_many() -> int:
            handle = engine.call_later(10.0, fired.append, "stale")
            for _ in range(10_000):
                handle.cancel()
                handle = engine.call_later(10.0, fired.append, "live")
            engine.call_later(0.0, handle.cancel)
            return len(engine._timers)

        assert engine.run(restart_many) < 200
    assert fired == []


def test_a_timeout_of_centuries_is_no_limit():
    """A finite but huge timeout (the argument checks take it) must not reach threading,
    which cannot wait that long (OverflowError)."""
    with Engine() as engine:
        future: concurrent.futures.Future = concurrent.futures.Future()
        engine.run(engine.call_later, 0.05, future.set_result, "done")
        assert engine.wait(future, 1e10) == "done"
        flag = threading.Event()
        engine.run(engine.call_later, 0.05, flag.set)
        assert engine.wait_until(flag.is_set, 1e10)


@pytest.mark.parametrize("virtual", [False, True])
def test_threads_waiting_on_a_stopping_engine_wake_with_hangup(virtual):
    """An application thread blocked in a wait with no limit (a play, get_digits) wakes
    with Hangup when the engine stops: nothing it waits for will happen now."""
    engine = Engine(VirtualClock() if virtual else None).start()
    never: concurrent.futures.Future = concurrent.futures.Future()
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            engine.wait(never)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.1)
    engine.stop()
    thread.join(5)
    assert not thread.is_alive() and isinstance(outcome[0], Hangup)
    with pytest.raises(Hangup):
        engine.wait(concurrent.futures.Future())


def test_readiness_set_by_a_simulator_is_dispatched_like_epolls():
    """set_readiness: level-triggered (called every iteration while ready), only the
    events watched, nothing for an fd nobody watches, and nothing once cleared, modified
    away or removed; virtual time does not move while something is ready."""
    fd = os.eventfd(0, os.EFD_NONBLOCK)
    calls: list[int] = []
    stop_after = 3

    def ready(revents: int) -> None:
        calls.append(revents)
        if len(calls) == stop_after:
            engine.set_readiness(fd, 0)

    with Engine(VirtualClock()) as engine:
        start = engine.time()
        engine.run(engine.set_readiness, fd, EPOLLIN | EPOLLPRI)  # not watched yet
        engine.sleep(0.1)
        assert calls == []
        engine.run(engine.add_fd, fd, EPOLLPRI, ready)
        assert engine.wait_until(lambda: len(calls) >= stop_after, 1.0)
        # three calls, each with the one event watched, before virtual time moved
        assert calls == [EPOLLPRI] * 3
        assert engine.run(engine.time) == start + 0.1
        engine.sleep(0.1)
        assert len(calls) == 3  # cleared
        engine.run(engine.set_readiness, fd, EPOLLIN)  # not watched: nothing
        engine.sleep(0.1)
        assert len(calls) == 3
        stop_after = 4
        engine.run(engine.modify_fd, fd, EPOLLIN)
        assert engine.wait_until(lambda: len(calls) == 4, 1.0) and calls[-1] == EPOLLIN

        def ready_then_removed() -> None:
            engine.set_readiness(fd, EPOLLIN)
            engine.remove_fd(fd)

        engine.run(ready_then_removed)
        engine.sleep(0.1)
        assert len(calls) == 4
        engine.run(engine.add_fd, fd, EPOLLIN, ready)  # watched again: still ready
        assert engine.wait_until(lambda: len(calls) > 4, 1.0)
        engine.run(engine.remove_fd, fd)
    os.close(fd)


def _policy() -> tuple[int, int]:
    """The calling thread's scheduling policy (without SCHED_RESET_ON_FORK) and priority."""
    return (os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK,
            os.sched_getparam(0).sched_priority)


def test_run_realtime_puts_the_engine_thread_alone_at_sched_fifo():
    if os.geteuid() != 0 and resource.getrlimit(resource.RLIMIT_RTPRIO)[0] < 12:
        pytest.skip("SCHED_FIFO needs root or an RLIMIT_RTPRIO of 12 (CI runs as root)")
    ordinary = _policy()
    with Engine() as engine:
        engine.run_realtime(12)
        assert engine.run(_policy) == (os.SCHED_FIFO, 12)
        assert _policy() == ordinary  # the caller's thread is not the engine's

        def started_here() -> tuple[int, int]:
            seen: list[tuple[int, int]] = []
            thread = threading.Thread(target=lambda: seen.append(_policy()))
            thread.start()
            thread.join()
            return seen[0]
        # threads the engine thread starts (the pool's, an application's) stay ordinary
        assert engine.run(started_here) == (os.SCHED_OTHER, 0)
        pooled: list[tuple[int, int]] = []
        task = engine.run(engine.run_actor, lambda: pooled.append(_policy()))
        task.join(10)
        assert pooled == [(os.SCHED_OTHER, 0)]


@pytest.mark.parametrize("priority", [0, 100, -1, True, 10.0, "10"])
def test_run_realtime_refuses_a_priority_outside_fifos_range(priority):
    with Engine() as engine, pytest.raises(ArgumentError, match="expected 1 to 99"):
        engine.run_realtime(priority)


def test_run_realtime_says_why_the_system_refused(monkeypatch):
    def refused(*_args):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))
    monkeypatch.setattr(os, "sched_setscheduler", refused)
    with Engine() as engine:
        with pytest.raises(Error) as caught:
            engine.run_realtime()
        message = str(caught.value)
        assert "SCHED_FIFO priority 10: Operation not permitted" in message
        assert "RLIMIT_RTPRIO" in message and "ulimit -r" in message
        assert engine.run(_policy)[0] == os.SCHED_OTHER  # and the engine runs on
