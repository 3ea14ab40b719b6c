"""bench/stalls.py's canary: it notes a stall of its CPU, and nothing when there is none.

A stall is made by stopping the canary (SIGSTOP) for 80 ms: to it, that is a CPU taken
away. It runs at SCHED_FIFO, which CI's root may set.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from stalls import Stall, StallWatch, stalled_near, summary  # bench/stalls.py


@pytest.fixture
def cpu() -> int:
    return max(os.sched_getaffinity(0))


def test_a_cpu_taken_away_is_noted_when_and_for_how_long(cpu):
    watch = StallWatch(cpu).start()
    assert watch._process is not None
    time.sleep(0.2)
    stopped_at = time.monotonic()
    os.kill(watch._process.pid, signal.SIGSTOP)
    time.sleep(0.08)
    os.kill(watch._process.pid, signal.SIGCONT)
    time.sleep(0.2)
    stalls = watch.stop()
    longest = max(stalls, key=lambda stall: stall.seconds)
    assert longest.cpu == cpu
    assert 0.07 < longest.seconds < 1.0
    assert abs(longest.at - stopped_at) < 0.05
    assert summary(stalls)["count"] >= 1
    assert stalled_near(stopped_at + 0.1, stalls)
    assert not stalled_near(stopped_at + 0.5, stalls)


def test_a_canary_that_cannot_start_says_why():
    with pytest.raises(RuntimeError, match="did not start"):
        StallWatch(cpu=100_000).start()


def test_the_summary_counts_only_what_is_over_the_threshold():
    stalls = [Stall(0, 1.0, 0.001), Stall(0, 2.0, 0.006), Stall(0, 3.0, 0.020)]
    assert summary(stalls) == {"count": 2, "longest": 0.020, "total": pytest.approx(0.027)}
    assert summary([]) == {"count": 0, "longest": 0.0, "total": 0}
