"""Real descriptors whose poll readiness the simulator sets: POLLIN and POLLPRI on demand.

The simulated kernel keeps a channel's data in Python, but the engine must wait for it
with the same ``epoll`` call it uses on a board, so every simulated open file is backed by
the user end of an ``AF_UNIX`` stream socketpair whose readiness the simulator controls:

- POLLIN: one byte sits in the user end's receive queue;
- POLLPRI: one out-of-band byte is pending (``MSG_OOB``, Linux 5.15 and later).

Nobody ever reads these sockets except this module: the binding's reads and writes go
through the simulator's seam, never to the socket itself.

Linux keeps a consumed out-of-band byte in the queue until a normal read passes it, which
would leave a stale POLLIN; so whenever POLLPRI is involved the queue is emptied and the
wanted state written again, instead of being edited in place. Because the simulator runs
on the engine thread, the engine never polls in the middle of such an update.

One difference from DAHDI is inherent: a pending out-of-band byte is queued data, so
POLLPRI always comes with POLLIN here, where the kernel can raise POLLPRI alone. Code that
answers POLLIN by reading handles it: the read fails with ELAST and the events are drained.
"""

from __future__ import annotations

import contextlib
import select
import socket

from uascall.errors import BackendUnavailable

_probed = False


def _probe_oob() -> None:
    """Fail early, with the reason, on a kernel without AF_UNIX out-of-band data."""
    global _probed
    if _probed:
        return
    user, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        kernel.send(b"!", socket.MSG_OOB)
        poller = select.poll()
        poller.register(user, select.POLLPRI)
        if not poller.poll(0):
            raise OSError("no POLLPRI after MSG_OOB")
    except OSError as exc:
        raise BackendUnavailable(
            "the simulated DAHDI kernel needs AF_UNIX out-of-band data to signal POLLPRI "
            f"on real descriptors (Linux 5.15+, CONFIG_AF_UNIX_OOB); this kernel said: {exc}"
        ) from None
    finally:
        user.close()
        kernel.close()
    _probed = True


class ReadinessFd:
    """A real fd whose POLLIN/POLLPRI state is whatever :meth:`update` last said."""

    __slots__ = ("_kernel", "_priority", "_readable", "_user")

    def __init__(self) -> None:
        _probe_oob()
        self._user, self._kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._user.setblocking(False)
        self._kernel.setblocking(False)
        self._readable = False
        self._priority = False

    def fileno(self) -> int:
        return self._user.fileno()

    def update(self, readable: bool, priority: bool) -> None:
        if readable == self._readable and priority == self._priority:
            return
        user, kernel = self._user, self._kernel
        if not priority and not self._priority:
            # The common case, data readiness alone: one byte in or out.
            if readable:
                kernel.send(b"r")
            else:
                user.recv(16)
            self._readable = readable
            return
        if self._priority:
            with contextlib.suppress(OSError):
                user.recv(1, socket.MSG_OOB)
        while True:
            try:
                user.recv(64)  # also drops the consumed out-of-band remnant
            except BlockingIOError:
                break
        if readable:
            kernel.send(b"r")
        if priority:
            kernel.send(b"p", socket.MSG_OOB)
        self._readable = readable
        self._priority = priority

    def close(self) -> None:
        self._user.close()
        self._kernel.close()
