"""Real descriptors whose poll readiness the simulator sets: POLLIN and POLLPRI on demand.

The simulated kernel keeps a channel's data in Python, but the binding waits for it the
way it does on a board: it registers the channel's descriptor with the engine
(``Engine.add_fd``) for ``EPOLLIN | EPOLLPRI`` and is called back when it is ready. So every
simulated open file is backed by a real descriptor (an ``eventfd`` nobody writes: a number
of its own, valid until the file is closed, that epoll accepts), and its readiness is
whatever the simulator last said through :meth:`Engine.set_readiness`, which the engine
dispatches level-triggered, as epoll would, with no system call. (Making the descriptor
itself readable, a byte in a socket for POLLIN and an out-of-band byte for POLLPRI, cost
two system calls per channel and 20 ms tick, a quarter of the engine thread at a
thousand channels.)

As on DAHDI, POLLPRI (a queued signalling event) can be ready without POLLIN.

Because the simulator and the engine share the thread, the descriptor is only ready for
the engine it was made for; a program that polls it by other means never sees it ready.
"""

from __future__ import annotations

import os
import select
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uascall.engine import Engine


class ReadinessFd:
    """A real fd whose POLLIN/POLLPRI state, for ``engine``, is what :meth:`update` last
    said."""

    __slots__ = ("_engine", "_events", "_fd")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._events = 0

    def fileno(self) -> int:
        return self._fd

    def update(self, readable: bool, priority: bool) -> None:
        events = (select.EPOLLIN if readable else 0) | (select.EPOLLPRI if priority else 0)
        if events != self._events:
            self._events = events
            self._engine.set_readiness(self._fd, events)

    def close(self) -> None:
        if self._fd < 0:
            return
        if self._events:
            self._engine.set_readiness(self._fd, 0)
        os.close(self._fd)
        self._fd = -1
