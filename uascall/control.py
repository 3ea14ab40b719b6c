"""The control socket of a running ``uascall run`` (or ``uascall call``): what ``uascall
channels`` and ``uascall monitor`` read.

Where
-----
A Unix stream socket, by default ``/run/uascall/control.sock`` for root and
``$XDG_RUNTIME_DIR/uascall/control.sock`` (else ``/tmp/uascall-UID/control.sock``) for
another user; ``--control PATH`` chooses another, ``--control none`` opens none. The
socket has mode 0660 and belongs to the group ``dahdi`` when that group exists (the
group that may use DAHDI's devices: see udev/), so only root, the user running uascall
and the group's members can connect. The server checks the peer's credentials too
(``SO_PEERCRED``) and answers anyone else with an error before closing.

Protocol
--------
JSON lines, UTF-8: the client sends one request object a line, the server answers each
with one object a line, in order, and the client may send more on the same connection.

Requests::

    {"cmd": "channels"}     spans, channels and calls: uascall.status's snapshot
    {"cmd": "ping"}         {"ok": true, "pid": 4242, "version": "0.2.0"}

Answers carry ``"ok": true`` and the data, or ``"ok": false`` and ``"error"`` (what was
wrong, what was expected)::

    -> {"cmd": "channels"}
    <- {"ok": true, "source": "uascall run (pid 4242)", "spans": [...],
        "channels": [...], "calls": [...]}
    -> {"cmd": "reboot"}
    <- {"ok": false, "error": "unknown cmd 'reboot'; expected one of channels, ping"}

A request line may be at most 64 KiB. The server reads the state on the engine thread
through :meth:`Engine.run` (the engine's one cross-thread call), from a thread of its
own for each connection, so a slow or stuck client never holds the engine up.
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from uascall import __version__
from uascall.errors import UascallError

log = logging.getLogger(__name__)

#: the group that may read the state (the one that may use DAHDI's devices)
GROUP = "dahdi"
MAX_LINE = 64 * 1024
#: seconds a request waits for the engine before it is answered with an error
ENGINE_TIMEOUT = 5.0


def default_path() -> Path:
    """Where the control socket is by default, for this user."""
    if os.geteuid() == 0:
        return Path("/run/uascall/control.sock")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "uascall" / "control.sock"
    return Path(f"/tmp/uascall-{os.geteuid()}") / "control.sock"


def _group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _peer_groups(pid: int, gid: int) -> set[int]:
    """The peer's primary and supplementary groups (from /proc; its primary one only when
    /proc cannot tell)."""
    groups = {gid}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Groups:"):
                groups.update(int(g) for g in line.split()[1:])
    except (OSError, ValueError):
        pass
    return groups


class ControlServer:
    """Serves the control socket at ``path`` with ``commands`` (name → a function of the
    request returning the answer's data, called on the connection's thread).

    ``group``: the socket's group, when it exists (else the process's own). Raises
    UascallError when the path is taken by a live server or cannot be made."""

    def __init__(self, path: str | os.PathLike[str],
                 commands: dict[str, Callable[[dict[str, Any]], dict[str, Any]]], *,
                 group: str = GROUP) -> None:
        self.path = Path(path)
        self.commands = dict(commands)
        self.commands.setdefault("ping", lambda request: {"pid": os.getpid(),
                                                          "version": __version__})
        self.gid = _group_id(group)
        self.group = group
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def start(self) -> ControlServer:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if _alive(self.path):
                raise UascallError(f"{self.path}: another uascall serves this control "
                                   "socket; expected a path of this one's own (--control)")
            self.path.unlink()  # left by a uascall that did not end cleanly
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # No window in which others may connect before the mode and group are set: bind
        # under a umask that leaves the socket to its owner.
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        except OSError as exc:
            sock.close()
            raise UascallError(f"cannot make the control socket {self.path}: {exc}") from None
        finally:
            os.umask(old_umask)
        try:
            if self.gid is not None:
                try:
                    os.chown(self.path, -1, self.gid)
                except PermissionError:
                    # a user outside the group may not give it away: the socket stays
                    # the user's own (and its own group's), still mode 0660
                    log.warning("control socket %s: cannot give it to group %s (not a "
                                "member); only this user can use it", self.path, self.group)
                    self.gid = None
            os.chmod(self.path, 0o660)
        except OSError as exc:
            sock.close()
            self.path.unlink(missing_ok=True)
            raise UascallError(f"cannot give the control socket {self.path} to group "
                               f"{self.group} with mode 0660: {exc}") from None
        sock.listen(16)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept, name="uascall-control",
                                        daemon=True)
        self._thread.start()
        log.info("control socket %s (group %s, mode 0660)", self.path,
                 self.group if self.gid is not None else "of the process")
        return self

    def close(self) -> None:
        if self._sock is None:
            return
        self._closed.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
        if self._thread is not None:
            self._thread.join(2)
        self._sock = None

    def __enter__(self) -> ControlServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ serving
    def _accept(self) -> None:
        assert self._sock is not None
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._closed.is_set():
                    return
                continue
            threading.Thread(target=self._serve, args=(conn,), name="uascall-control-conn",
                             daemon=True).start()

    def _allowed(self, conn: socket.socket) -> str | None:
        """None when the peer may read the state, else why not."""
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", creds)
        if uid in (0, os.geteuid()):
            return None
        if self.gid is not None and self.gid in _peer_groups(pid, gid):
            return None
        return (f"permission denied: uid {uid} is not root, not uascall's user and not in "
                f"group {self.group}")

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            refused = self._allowed(conn)
            if refused is not None:
                log.warning("control socket: refused a connection: %s", refused)
                with contextlib.suppress(OSError):
                    conn.sendall(_line({"ok": False, "error": refused}))
                    # Read what the client sent before closing: closed with its request
                    # unread, the socket would be reset and the answer lost to it.
                    conn.shutdown(socket.SHUT_WR)
                    conn.settimeout(2.0)
                    while conn.recv(4096):
                        pass
                return
            reader = conn.makefile("rb")
            while True:
                try:
                    raw = reader.readline(MAX_LINE + 1)
                except OSError:
                    return
                if not raw:
                    return
                if len(raw) > MAX_LINE:
                    conn.sendall(_line({"ok": False, "error": f"request longer than "
                                        f"{MAX_LINE} bytes; expected one JSON object a "
                                        "line"}))
                    return
                try:
                    conn.sendall(_line(self._answer(raw)))
                except OSError:
                    return

    def _answer(self, raw: bytes) -> dict[str, Any]:
        try:
            request = json.loads(raw)
        except ValueError as exc:
            return {"ok": False, "error": f"not JSON ({exc}); expected an object such as "
                    '{"cmd": "channels"}'}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return {"ok": False, "error": 'expected an object with "cmd", such as '
                    '{"cmd": "channels"}'}
        command = self.commands.get(request["cmd"])
        if command is None:
            return {"ok": False, "error": f"unknown cmd {request['cmd']!r}; expected one of "
                    f"{', '.join(sorted(self.commands))}"}
        try:
            return {"ok": True, **command(request)}
        except Exception as exc:  # the server goes on; the client is told
            log.warning("control socket: %s failed: %s", request["cmd"], exc)
            return {"ok": False, "error": f"{request['cmd']} failed: {exc}"}


def _line(answer: dict[str, Any]) -> bytes:
    return json.dumps(answer, separators=(",", ":")).encode() + b"\n"


def _alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            return False
        except OSError:
            return True  # someone's, and not ours to remove (permission denied...)
        return True


# --------------------------------------------------------------------------- client
class NotRunning(UascallError):
    """No uascall serves the control socket at that path."""


class ControlClient:
    """A connection to a running uascall's control socket. Raises :class:`NotRunning`
    when nothing serves it, UascallError when it may not be used (permission)."""

    def __init__(self, path: str | os.PathLike[str] | None = None,
                 timeout: float = 10.0) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError):
            self.sock.close()
            raise NotRunning(f"no uascall serves {self.path}") from None
        except PermissionError:
            self.sock.close()
            raise UascallError(f"{self.path}: permission denied; expected root or a member "
                               f"of group {GROUP} (the control socket's group)") from None
        except OSError as exc:
            self.sock.close()
            raise UascallError(f"cannot connect to {self.path}: {exc}") from None
        self._reader = self.sock.makefile("rb")

    def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send one request and return the answer's data; UascallError for an error
        answer or a connection that ended."""
        try:
            self.sock.sendall(_line({"cmd": cmd, **fields}))
        except OSError:
            pass  # the server may have answered and closed already (a refusal): read it
        try:
            raw = self._reader.readline()
        except OSError as exc:
            raise UascallError(f"{self.path}: {exc}") from None
        if not raw:
            raise UascallError(f"{self.path}: the uascall process closed the connection")
        answer = json.loads(raw)
        if not answer.get("ok"):
            raise UascallError(f"{self.path}: {answer.get('error', 'refused')}")
        return answer

    def close(self) -> None:
        self._reader.close()
        self.sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
