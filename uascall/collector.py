"""The cyclic garbage collector in a call server: its full passes when they cost no call.

A full pass (generation 2) looks at every object the collector tracks and holds every
thread while it does. With a thousand calls up that is 25-75 ms (BENCHMARKS.md,
``--app examples/early_media.py``), beyond the 5 ms a media tick may run late and close
to the 60 ms a player keeps queued on a DAHDI channel: the RTP and the B-channels of every
call go late together. Python starts such a pass by itself whenever a quarter more
objects have lived long than at the last one, which under steady load is every few
seconds.

Those passes find next to nothing. A finished call leaves no objects in reference
cycles: reference counting frees it (``tests/sim/test_call_garbage.py``), and what start-up
leaves, ``uascall run`` freezes. So :class:`FullPasses` keeps the young generations as
Python runs them (each pass bounded by what was allocated since the last: 1-2 ms) and
takes over the full passes: one at a quiet moment, when no call is up and calls have come
and gone since the last pass, and one at least every ``interval`` seconds whatever the
load, so that any cycles a long busy spell leaves are still freed, at one pause per
interval, logged with its length.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: the default most seconds between two full passes while calls are up
INTERVAL = 600.0
#: generation 2's threshold while the passes are ours: more generation-1 passes than
#: a process makes in years
NEVER = 1 << 30


class FullPasses:
    """The full passes of a server whose ``calls_up()`` calls are up and which has taken
    ``calls_seen()`` calls in all. Use it as a context manager, on the thread that polls
    (:meth:`poll`, about once a second); on leaving, Python's own thresholds are back."""

    def __init__(self, calls_up: Callable[[], int], calls_seen: Callable[[], int], *,
                 interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not interval > 0:
            raise ValueError(f"full GC passes every {interval!r} s; expected a positive "
                             "number of seconds")
        self.calls_up = calls_up
        self.calls_seen = calls_seen
        self.interval = interval
        self.clock = clock
        self.passes = 0
        self._thresholds: tuple[int, int, int] | None = None
        self._last = 0.0
        self._seen_at_last = 0

    def __enter__(self) -> FullPasses:
        self._thresholds = gc.get_threshold()
        young, middle, _ = self._thresholds
        gc.set_threshold(young, middle, NEVER)
        self._last = self.clock()
        self._seen_at_last = self.calls_seen()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    def poll(self) -> float | None:
        """Run a full pass if one is due; how long it took, or None. Outside the context
        the passes are Python's: none is run here."""
        if self._thresholds is None:
            return None
        now = self.clock()
        seen = self.calls_seen()
        if self.calls_up() == 0 and seen != self._seen_at_last:
            why = "no call up"
        elif now - self._last >= self.interval:
            why = f"{self.interval:g} s since the last"
        else:
            return None
        started = time.perf_counter()
        found = gc.collect()
        took = time.perf_counter() - started
        self.passes += 1
        self._last = self.clock()
        self._seen_at_last = seen
        log.debug("full GC pass (%s): %.1f ms, %d objects in cycles freed", why,
                  took * 1000, found)
        return took
