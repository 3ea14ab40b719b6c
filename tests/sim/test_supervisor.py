"""The --workers supervisor (uascall.workers.Supervisor): a worker that dies is started
again, one that exits 0 (told to: a SIGTERM of its own, one node taken out of the pool) is
left stopped until SIGHUP revives it. Real child processes, a clock of the test's."""

from __future__ import annotations

import sys
import time

from uascall.workers import RESTART_DELAY, Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def exits(code: int) -> list[str]:
    return [sys.executable, "-c", f"import sys; sys.exit({code})"]


def settle(supervisor: Supervisor) -> None:
    """Until every worker's process has ended and been looked at."""
    deadline = time.monotonic() + 10
    while any(w.proc is not None for w in supervisor.workers):
        assert time.monotonic() < deadline, "a worker did not exit"
        for worker in supervisor.workers:
            if worker.proc is not None:
                worker.proc.wait()
        supervisor.poll()


def test_a_worker_that_exits_0_is_left_stopped_one_that_fails_is_restarted(caplog):
    caplog.set_level("INFO", logger="uascall.workers")
    clock = Clock()
    supervisor = Supervisor([exits(0), exits(3)], clock=clock)
    supervisor.start()
    settle(supervisor)
    clean, failed = supervisor.workers
    assert clean.left and clean.restart_at is None and clean.returncodes == [0]
    assert not failed.left and failed.restart_at == RESTART_DELAY
    assert "worker 0 stopped cleanly" in caplog.text and "SIGHUP" in caplog.text
    clock.now = RESTART_DELAY
    supervisor.poll()
    assert failed.starts == 2 and clean.starts == 1
    assert supervisor.poll() is True  # still supervising: nobody asked it to stop
    settle(supervisor)


def test_sighup_starts_the_workers_left_stopped_and_only_those():
    supervisor = Supervisor([exits(0), [sys.executable, "-c", "import time; time.sleep(30)"]],
                            clock=Clock())
    supervisor.start()
    left, running = supervisor.workers
    assert left.proc is not None
    left.proc.wait()
    supervisor.poll()
    assert left.left and running.alive
    supervisor.revive()
    assert left.starts == 2 and not left.left and running.starts == 1
    supervisor.signal(15)
    for worker in supervisor.workers:
        if worker.proc is not None:
            worker.proc.wait()
    assert supervisor.poll() is False  # stopping, and every worker gone
