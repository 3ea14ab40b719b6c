"""The application host: a UAS-style application runs once per incoming call.

An application is a Python file with ``__uas_identify__ = "application"`` and
``main(channel, application_instance_id, file_man, my_log, application_parameters)``
returning an int. For each call the backend offers, the host creates a
:class:`~uascall.channel.UASCallChannel` and runs ``main`` in a thread of its own (an
engine actor, so virtual time waits for it). When ``main`` returns, a call it left up is
hung up, and a call record goes into a SQLite file.

Return codes follow UAS: positive or zero is success, ``-100`` and below are the
application's own errors, and -1..-99 are reserved for the host: -1 ``main`` did not
return an int (typically an uncaught exception), -4 the application is not valid, -5 it
returned a reserved value, -9 the host itself failed.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from uascall.backend import Backend, CallLeg
from uascall.channel import State, UASCallChannel
from uascall.engine import Engine
from uascall.errors import ArgumentError, Error
from uascall.media.player import MediaClock

log = logging.getLogger(__name__)

RC_NOT_INT = -1
RC_INVALID_APP = -4
RC_RESERVED = -5
RC_HOST_ERROR = -9
MAIN_PARAMETERS = ("channel", "application_instance_id", "file_man", "my_log",
                   "application_parameters")


class ApplicationError(Error):
    """The application file cannot be run; ``rc`` is the UAS return code for it."""

    def __init__(self, message: str, rc: int) -> None:
        super().__init__(message)
        self.rc = rc


@dataclass(frozen=True)
class Application:
    """A loaded application file."""

    path: Path
    name: str
    version: str
    main: Callable[..., Any]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Application:
        path = Path(path)
        if not path.is_file():
            raise ApplicationError(f"application {path}: no such file", RC_INVALID_APP)
        name = path.stem
        spec = importlib.util.spec_from_file_location(f"uascall_app_{name}", path)
        if spec is None or spec.loader is None:
            raise ApplicationError(f"application {path}: not a Python file", RC_INVALID_APP)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ApplicationError(f"application {path} does not load: "
                                   f"{type(exc).__name__}: {exc}", RC_INVALID_APP) from exc
        return cls._check(path, name, module)

    @classmethod
    def _check(cls, path: Path, name: str, module: ModuleType) -> Application:
        identify = getattr(module, "__uas_identify__", None)
        if identify != "application":
            raise ApplicationError(f"application {path}: __uas_identify__ is {identify!r}; "
                                   "expected 'application'", RC_INVALID_APP)
        main = getattr(module, "main", None)
        if not callable(main):
            raise ApplicationError(f"application {path} has no main(); expected main("
                                   f"{', '.join(MAIN_PARAMETERS)})", RC_INVALID_APP)
        try:
            inspect.signature(main).bind(*MAIN_PARAMETERS)
        except TypeError:
            raise ApplicationError(f"application {path}: main{inspect.signature(main)} "
                                   f"cannot take ({', '.join(MAIN_PARAMETERS)})",
                                   RC_INVALID_APP) from None
        return cls(path, name, str(getattr(module, "__uas_version__", "")), main)


class FileManager:
    """The ``file_man`` handed to applications: their media directory (our API)."""

    def __init__(self, media_dir: str | os.PathLike[str]) -> None:
        self.media_dir = Path(media_dir).resolve()

    def path(self, name: str) -> Path:
        """The file ``name`` inside the media directory; Error if it would lie outside."""
        candidate = Path(name)
        resolved = (self.media_dir / candidate).resolve()
        if candidate.is_absolute() or not resolved.is_relative_to(self.media_dir):
            raise ArgumentError(f"media file {name!r} is outside the media directory "
                                f"{self.media_dir}")
        return resolved

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def list(self) -> list[str]:
        return sorted(p.name for p in self.media_dir.iterdir() if p.is_file())


@dataclass(frozen=True)
class CallRecord:
    """One application instance's record (UAS's ADR)."""

    application: str
    instance_id: str
    direction: str
    start: float
    duration: float
    return_code: int
    caller: str
    called: str
    cause: str
    raw_cause: str


class CallRecords:
    """Call records in a SQLite file (thread-safe: one connection per write)."""

    SCHEMA = """CREATE TABLE IF NOT EXISTS calls (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        application TEXT NOT NULL, instance_id TEXT NOT NULL, direction TEXT NOT NULL,
        start REAL NOT NULL, duration REAL NOT NULL, return_code INTEGER NOT NULL,
        caller TEXT NOT NULL, called TEXT NOT NULL, cause TEXT NOT NULL,
        raw_cause TEXT NOT NULL)"""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute(self.SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def add(self, record: CallRecord) -> None:
        fields = record.__dataclass_fields__
        with self._lock, self._connect() as db:
            db.execute(f"INSERT INTO calls ({', '.join(fields)}) VALUES "
                       f"({', '.join('?' * len(fields))})",
                       [getattr(record, name) for name in fields])

    def all(self) -> list[CallRecord]:
        fields = list(CallRecord.__dataclass_fields__)
        with self._connect() as db:
            rows = db.execute(f"SELECT {', '.join(fields)} FROM calls ORDER BY id").fetchall()
        return [CallRecord(*row) for row in rows]


class AppHost:
    """Runs ``application`` for every call ``backend`` offers.

    ``media_dir`` holds the application's files (default: the application's own folder,
    ``media`` beside it if that exists); ``records`` is the SQLite file for call records
    (None: none written).
    """

    def __init__(self, engine: Engine, backend: Backend, application: Application, *,
                 application_parameters: str = "",
                 media_dir: str | os.PathLike[str] | None = None,
                 records: str | os.PathLike[str] | None = None,
                 tts_voice: str | None = None) -> None:
        self.engine = engine
        self.backend = backend
        self.application = application
        self.application_parameters = application_parameters
        if media_dir is None:
            beside = application.path.parent / "media"
            media_dir = beside if beside.is_dir() else application.path.parent
        self.file_man = FileManager(media_dir)
        self.records = CallRecords(records) if records is not None else None
        self.tts_voice = tts_voice
        self.media_clock = MediaClock(engine)
        self.log = logging.getLogger(f"uascall.app.{application.name}")
        self.results: list[CallRecord] = []
        #: called on the engine thread with each new channel, before its main() starts
        self.on_channel: Callable[[UASCallChannel], None] | None = None
        self._ids = itertools.count(1)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Engine thread: take the backend's calls and start it."""
        self.backend.on_incoming = self._incoming
        self.backend.start()

    def _incoming(self, leg: CallLeg) -> None:
        channel = UASCallChannel(self.engine, leg, media_clock=self.media_clock,
                                 media_dir=self.file_man.media_dir, tts_voice=self.tts_voice)
        instance_id = f"{self.application.name}-{next(self._ids)}"
        if self.on_channel is not None:
            self.on_channel(channel)
        thread = self.engine.start_actor_thread(self._run, channel, instance_id,
                                                name=f"app {instance_id}")
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _run(self, channel: UASCallChannel, instance_id: str) -> None:
        start_wall, start = time.time(), self.engine.time()
        my_log = logging.LoggerAdapter(self.log, {"instance": instance_id})
        try:
            rc = self._call_main(channel, instance_id, my_log)
            if channel.state() is not State.IDLE:
                self.log.info("%s: main() returned with the call up; hanging up", instance_id)
                channel.hang_up()
        except Exception:
            self.log.exception("%s: the host failed", instance_id)
            rc = RC_HOST_ERROR
        record = CallRecord(self.application.name, instance_id, channel.Details.direction,
                            start_wall, round(self.engine.time() - start, 3), rc,
                            channel.Details.call_from, channel.Details.call_to,
                            channel.cause().name, channel.Details.raw_cause)
        self.log.info("%s: done, rc %d, cause %s", instance_id, rc, record.cause)
        with self._lock:
            self.results.append(record)
        if self.records is not None:
            self.records.add(record)

    def _call_main(self, channel: UASCallChannel, instance_id: str,
                   my_log: logging.LoggerAdapter) -> int:
        try:
            rc = self.application.main(channel, instance_id, self.file_man, my_log,
                                       self.application_parameters)
        except Exception:
            self.log.exception("%s: main() raised", instance_id)
            return RC_NOT_INT
        if isinstance(rc, bool) or not isinstance(rc, int):
            self.log.error("%s: main() returned %r; expected an int", instance_id, rc)
            return RC_NOT_INT
        if -99 <= rc <= -1:
            self.log.error("%s: main() returned %d, which is reserved for the host (-1..-99)",
                           instance_id, rc)
            return RC_RESERVED
        return rc

    def join(self, timeout: float | None = None) -> bool:
        """Wait (real time) for the running application instances; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
            if thread.is_alive():
                return False
        return True

    def stop(self) -> None:
        """Engine thread: stop the backend (calls still up are dropped)."""
        self.backend.stop()
