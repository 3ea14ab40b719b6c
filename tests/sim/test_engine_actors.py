"""The engine's actor pool (Engine.run_actor): reused threads, one task per thread at a
time, actors from the first instruction, failures recorded, idle threads ended."""

from __future__ import annotations

import threading
import time

import pytest

from uascall import engine as engine_module
from uascall.engine import Engine, VirtualClock


def test_a_task_runs_on_a_reused_thread_named_after_it():
    with Engine() as engine:
        seen: list[tuple[int, str]] = []

        def task() -> None:
            me = threading.current_thread()
            seen.append((me.ident or 0, me.name))

        first = engine.run_actor(task, name="app one")
        first.join(5)
        assert not first.is_alive()
        time.sleep(0.05)  # the thread goes back to waiting for a task
        second = engine.run_actor(task, name="app two")
        second.join(5)
    assert [name for _, name in seen] == ["app one", "app two"]
    assert seen[0][0] == seen[1][0], "the idle thread was not reused"


def test_tasks_that_run_at_once_each_have_a_thread_of_their_own():
    with Engine() as engine:
        started = threading.Barrier(3, timeout=5)  # would time out on a shared thread
        idents: set[int] = set()

        def task() -> None:
            idents.add(threading.get_ident())
            started.wait()

        tasks = [engine.run_actor(task) for _ in range(2)]
        started.wait()
        for task_ in tasks:
            task_.join(5)
    assert len(idents) == 2


def test_threads_the_engine_needs_are_started_by_the_pool_not_by_the_engine(
        monkeypatch: pytest.MonkeyPatch):
    # Thread.start waits until the new thread has run: on the engine thread, time in which
    # no packet goes out. Tasks run from there get their threads from the pool's spawner;
    # from an application's thread, the start is done there, as before.
    starters: list[str] = []
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        starters.append(threading.current_thread().name)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    with Engine(name="pool-test") as engine:
        release = threading.Event()
        ran: list[str] = []

        def task(number: int) -> None:
            ran.append(threading.current_thread().name)
            release.wait(5)  # all at once: each needs a thread of its own

        tasks = engine.run(lambda: [engine.run_actor(task, n, name=f"app {n}")
                                    for n in range(20)])
        deadline = time.monotonic() + 5
        while len(ran) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        for task_ in tasks:
            task_.join(5)
        assert sorted(ran) == sorted(f"app {n}" for n in range(20))
        assert starters.count("pool-test") == 1  # the spawner, once: no task's thread
        assert starters.count("pool-test-spawner") == 20
        before = len(starters)
        engine.run_actor(lambda: None).join(5)  # from this thread: an idle one serves it
        assert len(starters) == before


def test_a_thread_that_cannot_be_started_is_tried_again_and_its_task_runs(
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(engine_module, "SPAWN_RETRY", 0.01)
    failures = [RuntimeError("can't start new thread")] * 3
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        if thread.name == "uascall-actor" and failures:
            raise failures.pop()
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    with Engine() as engine:
        done = threading.Event()
        engine.run(lambda: engine.run_actor(done.set))
        assert done.wait(5)
        assert engine.faults.total() == 3  # each failure recorded


def test_a_spawner_that_cannot_be_started_is_tried_again(monkeypatch: pytest.MonkeyPatch):
    # (helper-32) it used to stay a thread never started: no task run from the engine
    # thread got a thread again, and virtual time stood still for them
    monkeypatch.setattr(engine_module, "SPAWN_RETRY", 0.01)
    real_start = threading.Thread.start
    failures = [RuntimeError("can't start new thread")]

    def start(thread: threading.Thread) -> None:
        if thread.name.endswith("-spawner") and failures:
            raise failures.pop()
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    with Engine(VirtualClock()) as engine, engine.actor():
        first, second = threading.Event(), threading.Event()
        engine.run(lambda: engine.run_actor(first.set))
        engine.run(lambda: engine.run_actor(second.set))
        assert first.wait(5) and second.wait(5)
        engine.sleep(1.0)  # virtual time runs again once the tasks are done
        assert engine.faults.total() == 1


def test_tasks_no_thread_could_be_started_for_end_unrun_when_the_engine_stops(
        monkeypatch: pytest.MonkeyPatch):
    # (helper-32) they used to stay queued: join() never returned, and a later task's new
    # thread ran the oldest of them instead of its own
    monkeypatch.setattr(engine_module, "SPAWN_RETRY", 0.01)
    real_start = threading.Thread.start
    failing = [True]

    def start(thread: threading.Thread) -> None:
        if failing[0] and thread.name == "uascall-actor":
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    ran: list[str] = []
    engine = Engine().start()
    task = engine.run(lambda: engine.run_actor(ran.append, "queued"))
    time.sleep(0.05)  # the spawner has failed and is trying again
    engine.stop()
    task.join(5)
    assert not task.is_alive() and ran == []
    failing[0] = False
    later = engine._actors.run(ran.append, ("later",), None)  # as run_actor after a stop
    later.join(5)
    assert ran == ["later"]


def test_virtual_time_waits_for_a_task_from_before_it_is_picked_up():
    clock = VirtualClock()
    fired = threading.Event()
    seen: list[tuple[float, bool]] = []
    with Engine(clock) as engine:
        def task() -> None:
            time.sleep(0.2)  # real work: no virtual time may pass meanwhile
            seen.append((engine.time(), fired.is_set()))
            engine.sleep(5.0)
            seen.append((engine.time(), fired.is_set()))

        def start() -> object:
            done = engine.run_actor(task)
            engine.call_later(1.0, fired.set)  # due at once were the task not counted
            return done

        done = engine.run(start)
        done.join(10)
        assert not done.is_alive()
    assert seen == [(0.0, False), (5.0, True)]


def test_a_failing_task_is_recorded_and_its_thread_serves_the_next():
    with Engine() as engine:
        idents: list[int] = []

        def bad() -> None:
            idents.append(threading.get_ident())
            raise RuntimeError("the application broke")

        engine.run_actor(bad).join(5)
        time.sleep(0.05)
        engine.run_actor(lambda: idents.append(threading.get_ident())).join(5)
        assert engine.faults.total() == 1
    assert idents[0] == idents[1]


def test_an_idle_thread_ends_after_a_while(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(engine_module, "ACTOR_IDLE", 0.1)
    with Engine() as engine:
        threads: list[threading.Thread] = []
        engine.run_actor(lambda: threads.append(threading.current_thread())).join(5)
        threads[0].join(5)
        assert not threads[0].is_alive()
        # and a task after that starts a new thread
        engine.run_actor(lambda: threads.append(threading.current_thread())).join(5)
    assert len(threads) == 2 and threads[1] is not threads[0]


def test_posts_from_threads_wake_an_idle_engine_every_time():
    """The engine writes no eventfd for posts while it runs (issue 15: a system call and a
    GIL hand-off for each of a call's round trips); one that comes as it is about to block
    must still wake it. No timers: a lost wake-up would hang the round trip."""
    with Engine() as engine:
        failures: list[BaseException] = []

        def round_trips() -> None:
            try:
                for n in range(2000):
                    assert engine.run(lambda n=n: n, timeout=5) == n
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=round_trips) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
        assert failures == []
