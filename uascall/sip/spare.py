"""UDP sockets made ahead of need, on a thread of their own, for the engine's RTP streams.

Making a socket is a system call, and CPython lets go of the GIL around it. On the engine
thread, with hundreds of application threads about, one of them takes the GIL then and the
engine waits to get it back: the 183 of an ``examples/early_media.py`` call, 0.3 ms of
CPU, took the engine 5-31 ms at 250 calls/s over two workers, almost all of it in making
the RTP socket, and every call's 20 ms tick was late by as much (BENCHMARKS.md). Here a
thread of its own keeps a few sockets made (unbound: they hold no port and receive
nothing), and the engine takes one; only when they run out does it make one itself.
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time

log = logging.getLogger(__name__)

#: sockets kept made, for each address family in use
SPARE = 64
#: how often the filling thread tops them up (seconds): at 20 ms, 64 sockets last
#: through 3,200 new streams a second
REFILL_EVERY = 0.020
FAMILIES = (socket.AF_INET, socket.AF_INET6)


class SpareSockets:
    """Unbound UDP sockets made ahead on a daemon thread; :meth:`take` them from any
    thread, :meth:`close` to end the thread and the sockets not taken."""

    def __init__(self, spare: int = SPARE, interval: float = REFILL_EVERY) -> None:
        if spare < 1 or not interval > 0:
            raise ValueError(f"SpareSockets({spare!r}, {interval!r}): expected at least one "
                             "socket and an interval above 0")
        self.spare = spare
        self.interval = interval
        self._ready: dict[int, collections.deque[socket.socket]] = {
            family: collections.deque() for family in FAMILIES}
        self._wanted: set[int] = set()  # the families asked for so far
        self._thread: threading.Thread | None = None
        self._closed = False
        #: sockets taken made ahead, and made on the spot because none was ready
        self.taken = 0
        self.made_on_the_spot = 0

    def take(self, family: int) -> socket.socket:
        """A new UDP socket of ``family``: one made ahead when one is ready."""
        ready = self._ready.get(family)
        if ready is not None and not self._closed:
            if family not in self._wanted:
                self._wanted.add(family)
                self._start()
            try:
                sock = ready.popleft()
            except IndexError:
                pass
            else:
                self.taken += 1
                return sock
            self.made_on_the_spot += 1
        return socket.socket(family, socket.SOCK_DGRAM)

    def close(self) -> None:
        """Stop making sockets and close those not taken (idempotent)."""
        self._closed = True
        self._close_ready()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._fill, daemon=True,
                                            name="uascall-spare-sockets")
            self._thread.start()

    def _fill(self) -> None:
        failed = False
        while not self._closed:
            for family in tuple(self._wanted):
                ready = self._ready[family]
                while len(ready) < self.spare and not self._closed:
                    try:
                        ready.append(socket.socket(family, socket.SOCK_DGRAM))
                    except OSError as exc:  # out of descriptors: the engine's own try says so
                        if not failed:
                            log.warning("no UDP socket made ahead: %s; the engine makes its "
                                        "own until this passes", exc)
                        failed = True
                        break
                else:
                    failed = False
            time.sleep(self.interval)
        self._close_ready()  # any made after close() began

    def _close_ready(self) -> None:
        for ready in self._ready.values():
            while ready:
                try:
                    sock = ready.popleft()
                except IndexError:  # the other thread took the last
                    break
                sock.close()
