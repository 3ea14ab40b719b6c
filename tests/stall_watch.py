"""How long the test process could not run: the vm rig's measure of a starved guest.

The vm rig's guests are emulated (TCG), three of them on CI's two cores, and the host
now and then leaves one off the CPU for a few hundred ms. Real-time audio has a budget
(a port's receive buffers hold 80 ms, a player keeps 60 ms queued): a process held
longer than that loses audio whatever the code under test does. A daemon thread sleeps
:data:`PERIOD` at a time and keeps the worst lateness of its wake-ups since
:meth:`StallWatch.reset`: a guest held off its CPU, or an interpreter held by one
thread, shows as a wake-up that late.
"""

from __future__ import annotations

import threading
import time

PERIOD = 0.010
BUDGET = 0.060  # what a player keeps queued on a DAHDI channel; receive buffers hold 80 ms


class StallWatch:
    def __init__(self, period: float = PERIOD) -> None:
        self.period = period
        self._worst = 0.0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="stall-watch",
                                            daemon=True)
            self._thread.start()

    def reset(self) -> None:
        with self._lock:
            self._worst = 0.0

    @property
    def worst(self) -> float:
        """The longest the watch woke late since :meth:`reset`, in seconds."""
        with self._lock:
            return self._worst

    def _watch(self) -> None:
        while True:
            due = time.monotonic() + self.period
            time.sleep(self.period)
            late = time.monotonic() - due
            with self._lock:
                self._worst = max(self._worst, late)
