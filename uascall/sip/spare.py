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
import errno
import logging
import math
import socket
import threading
import time

log = logging.getLogger(__name__)

#: sockets kept made, for each address family in use
SPARE = 32
#: how often the filling thread tops them up (seconds): at 20 ms, 32 sockets last
#: through 1,600 new streams a second
REFILL_EVERY = 0.020
#: after the process ran out of descriptors, how long the spare ones stay given back
#: (seconds): held while descriptors are short, they would be what files, pipes and the
#: control socket need once calls end
BACK_OFF = 5.0
#: how soon a filling thread that could not be started is tried again (seconds)
RETRY_START = 1.0
FAMILIES = (socket.AF_INET, socket.AF_INET6)


class SpareSockets:
    """Unbound UDP sockets made ahead on a daemon thread; :meth:`take` them from any
    thread, :meth:`close` to end the thread and the sockets not taken."""

    def __init__(self, spare: int = SPARE, interval: float = REFILL_EVERY, *,
                 back_off: float = BACK_OFF) -> None:
        if spare < 1 or not interval > 0 or not back_off >= 0:
            raise ValueError(f"SpareSockets({spare!r}, {interval!r}, back_off={back_off!r})"
                             ": expected at least one socket, an interval above 0 and a "
                             "back-off of 0 or more")
        self.spare = spare
        self.interval = interval
        self.back_off = back_off
        self._ready: dict[int, collections.deque[socket.socket]] = {
            family: collections.deque() for family in FAMILIES}
        self._wanted: set[int] = set()  # the families asked for so far
        self._lock = threading.Lock()  # _wanted and the thread's start
        self._thread: threading.Thread | None = None
        self._start_failed_at = -math.inf
        self._closed = False
        #: sockets taken made ahead, and made on the spot because none was ready
        self.taken = 0
        self.made_on_the_spot = 0

    def take(self, family: int) -> socket.socket:
        """A new UDP socket of ``family``: one made ahead when one is ready."""
        ready = self._ready.get(family)
        if ready is not None and not self._closed:
            if family not in self._wanted or self._thread is None:
                self._want(family)
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
        """Stop making sockets and close those not taken (idempotent). One the thread is
        making meanwhile is closed by the thread, within an interval."""
        self._closed = True
        self._close_ready()

    def _want(self, family: int) -> None:
        with self._lock:
            self._wanted.add(family)
            now = time.monotonic()
            if self._thread is not None or now - self._start_failed_at < RETRY_START:
                return
            thread = threading.Thread(target=self._fill, daemon=True,
                                      name="uascall-spare-sockets")
            try:
                thread.start()
            except RuntimeError as exc:  # at the process's thread limit: made on the spot
                self._start_failed_at = now
                log.warning("no thread to make RTP sockets ahead (%s): the engine makes "
                            "them itself; tried again in %g s", exc, RETRY_START)
                return
            self._thread = thread

    def _fill(self) -> None:
        short = False  # out of descriptors: warned, the spare ones given back
        while not self._closed:
            made = self._top_up()
            if made is None:
                if not short:
                    log.warning("out of descriptors for RTP sockets made ahead: the %d "
                                "spare ones given back for %g s", self.spare, self.back_off)
                short = True
                self._close_ready()
                self._sleep(self.back_off)
                continue
            if made and short:
                log.info("RTP sockets are made ahead again")
                short = False
            time.sleep(self.interval)
        self._close_ready()  # any made after close() began

    def _top_up(self) -> int | None:
        """Fill every family asked for; the sockets made, or None when the process is
        out of descriptors."""
        made = 0
        for family in tuple(self._wanted):
            ready = self._ready[family]
            while len(ready) < self.spare and not self._closed:
                try:
                    ready.append(socket.socket(family, socket.SOCK_DGRAM))
                except OSError as exc:
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        return None
                    # not for want of descriptors: the family may be missing here (IPv6
                    # in a container without it). Not asked for again until a take(),
                    # whose own try says why.
                    log.debug("no UDP socket of family %d made ahead: %s", family, exc)
                    with self._lock:
                        self._wanted.discard(family)
                    break
                made += 1
        return made

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._closed and time.monotonic() < deadline:
            time.sleep(min(self.interval, seconds))

    def _close_ready(self) -> None:
        for ready in self._ready.values():
            while ready:
                try:
                    sock = ready.popleft()
                except IndexError:  # the other thread took the last
                    break
                sock.close()
