"""Opening a failed device again, waiting longer each time: what a D-channel and an
analog port do after a device error (EIO: a card pulled, a driver unloaded).

The first retry comes after REOPEN_FIRST, each next one after twice the last, at most
REOPEN_LONGEST. A device that worked for STABLE_FOR before it failed starts again at
REOPEN_FIRST; one that fails as soon as it opens keeps waiting longer each time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from uascall.engine import Engine, TimerHandle
from uascall.errors import Error

log = logging.getLogger(__name__)

REOPEN_FIRST = 1.0
REOPEN_LONGEST = 60.0
STABLE_FOR = 60.0


class Reopener:
    """Retries ``start()`` of a closed device with backoff (engine thread).

    ``start`` opens the device (raising OSError or Error while it cannot), and says so
    itself when it does; ``stop`` is the owner's own stop, registered as a shutdown
    callback while a retry is pending, so that stopping the engine cancels it. ``name``
    (what is opened) goes into the log.
    """

    def __init__(self, engine: Engine, *, start: Callable[[], None],
                 stop: Callable[[], None], name: str) -> None:
        self.engine = engine
        self._start = start
        self._stop = stop
        self._name = name
        self._timer: TimerHandle | None = None
        self._after = REOPEN_FIRST
        self._opened_at = 0.0

    def opened(self) -> None:
        """The device is open now (its stable time counts from here)."""
        self._opened_at = self.engine.time()

    def first_delay(self) -> float:
        """The device failed: how long until the first retry (to say so in the log)."""
        if self.engine.time() - self._opened_at >= STABLE_FOR:
            self._after = REOPEN_FIRST
        return self._after

    def schedule(self) -> None:
        """The failed device is closed now: retry opening it after :meth:`first_delay`,
        then waiting longer each time."""
        self._timer = self.engine.call_later(self._after, self._retry)
        self.engine.add_shutdown_callback(self._stop)
        self._after = min(2 * self._after, REOPEN_LONGEST)

    def cancel(self) -> None:
        """No more retries (the owner is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self.engine.remove_shutdown_callback(self._stop)

    def _retry(self) -> None:
        self._timer = None
        self.engine.remove_shutdown_callback(self._stop)
        try:
            self._start()
        except (OSError, Error) as exc:
            log.debug("%s does not open yet (%s); again in %g s", self._name, exc,
                      self._after)
            self.schedule()
