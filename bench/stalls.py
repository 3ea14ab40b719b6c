"""Stalls of the machine itself, seen by a canary outside the process being measured.

A benchmark thread that runs late may have been slow, or may not have had its CPU at all:
on a virtual machine the host can take a vCPU away for milliseconds, and a guest kernel
without steal accounting counts that time as the thread's own. A canary tells the two
apart. It is a separate process (so it never waits for the measured process's GIL) pinned
to the CPU the measured thread is pinned to, at a SCHED_FIFO priority above it, that
sleeps to a 1 ms grid and notes how late it wakes. Above every other thread on that CPU,
it is late only when the CPU itself was not there to run it (or the kernel ran something
that cannot be pre-empted), and then the measured thread could not run either.

    watch = StallWatch(cpu=1).start()
    ...
    stalls = watch.stop()          # [Stall(at, seconds)], the canary's late wakes
    summary(stalls, threshold=0.005)

The canary costs its CPU about a thousand wake-ups a second, some 2 % of it.
Run as ``python bench/stalls.py CPU PRIORITY`` it is the canary itself.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

#: how often the canary wakes (seconds)
PERIOD = 0.001
#: a wake later than this is noted (the canary's own wake-up latency is about 0.1 ms)
NOTED = 0.0005
#: the canary's SCHED_FIFO priority: above the measured thread's (10, as --realtime sets)
PRIORITY = 50


@dataclass(frozen=True)
class Stall:
    """The canary on ``cpu`` was due at ``at`` (``time.monotonic``) and woke ``seconds``
    late."""

    cpu: int
    at: float
    seconds: float


class StallWatch:
    """A canary on ``cpu``, from :meth:`start` to :meth:`stop`."""

    def __init__(self, cpu: int, priority: int = PRIORITY) -> None:
        self.cpu = cpu
        self.priority = priority
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> StallWatch:
        self._process = subprocess.Popen(
            [sys.executable, __file__, str(self.cpu), str(self.priority)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = self._process.stdout.readline()  # type: ignore[union-attr]
        if ready.strip() != "ready":
            error = self._process.communicate(timeout=5)[1].strip()
            raise RuntimeError(f"the canary on CPU {self.cpu} did not start: "
                               f"{error or ready.strip() or 'no output'}")
        return self

    def stop(self) -> list[Stall]:
        """Stop the canary: its late wakes, in order."""
        if self._process is None:
            raise RuntimeError("the canary was not started")
        self._process.send_signal(signal.SIGTERM)
        out, err = self._process.communicate(timeout=10)
        self._process = None
        try:
            wakes = json.loads(out)
        except ValueError:
            raise RuntimeError(f"the canary on CPU {self.cpu} said {out[:200]!r} "
                               f"{err.strip()[:200]!r}; expected its late wakes as JSON") \
                from None
        return [Stall(self.cpu, at, seconds) for at, seconds in wakes]


def summary(stalls: list[Stall], threshold: float = 0.005) -> dict[str, Any]:
    """How many wakes were later than ``threshold``, the latest, and the CPU time they
    took away in all (every noted wake's lateness), in seconds."""
    over = [s for s in stalls if s.seconds > threshold]
    return {"count": len(over), "longest": max((s.seconds for s in stalls), default=0.0),
            "total": sum(s.seconds for s in stalls)}


def stalled_near(when: float, stalls: list[Stall], threshold: float = 0.005,
                 within: float = 0.1) -> bool:
    """Whether a stall longer than ``threshold`` ended up to ``within`` s before ``when``
    (or was under way then): a frame late then waited for the CPU."""
    return any(s.seconds > threshold and s.at <= when <= s.at + s.seconds + within
               for s in stalls)


def canary(cpu: int, priority: int) -> None:
    os.sched_setaffinity(0, {cpu})
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    stopping = False

    def stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True
    signal.signal(signal.SIGTERM, stop)
    gc.disable()  # a collection of its own would look like a stall
    wakes: list[tuple[float, float]] = []
    print("ready", flush=True)
    due = time.monotonic()
    while not stopping:
        due += PERIOD
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        late = time.monotonic() - due
        if late > NOTED:
            wakes.append((due, late))
            if late > PERIOD:
                due = time.monotonic()  # back on a grid from now, not a burst to catch up
    json.dump(wakes, sys.stdout)


if __name__ == "__main__":
    canary(int(sys.argv[1]), int(sys.argv[2]))
