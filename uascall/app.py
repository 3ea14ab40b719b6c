"""The application host: a UAS-style application runs once per incoming call.

An application is a Python file with ``__uas_identify__ = "application"`` and
``main(channel, application_instance_id, file_man, my_log, application_parameters)``
returning an int. For each call the backend offers, the host creates a
:class:`~uascall.channel.UASCallChannel` and runs ``main`` in a thread of its own (an
engine actor, so virtual time waits for it). When ``main`` returns, a call it left up is
hung up, and a call record goes into a SQLite file.

Return codes follow UAS: positive or zero is success, ``-100`` and below are the
application's own errors, and -1..-99 are reserved for the host: -1 ``main`` did not
return an int (typically an uncaught exception, or ``sys.exit()``; an int that does not fit
a 64-bit record counts as not an int too), -4 the application is not valid, -5 it returned
a reserved value, -9 the host itself failed (or shut down before ``main`` returned).
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import inspect
import itertools
import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from uascall.backend import Backend, CallLeg, Cause
from uascall.channel import State, UASCallChannel
from uascall.engine import Engine
from uascall.errors import ArgumentError, Error, Hangup
from uascall.media.player import MediaClock

log = logging.getLogger(__name__)

RC_NOT_INT = -1
RC_INVALID_APP = -4
RC_RESERVED = -5
RC_HOST_ERROR = -9
RC_RANGE = (-(2**63), 2**63 - 1)  # what a call record (SQLite INTEGER) holds
#: call records AppHost.results keeps, the most recent ones (the SQLite file keeps all):
#: a view's worth; each costs about 700 bytes, so 10,000 were 7 MB of a server's memory
KEEP_RESULTS = 1000
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
    #: what the simulator's caller does once answered (``__uas_sim_caller__``, our
    #: extension: see :mod:`uascall.sim.caller`), or ""
    sim_caller: str = ""

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Application:
        path = Path(path)
        if not path.is_file():
            raise ApplicationError(f"application {path}: no such file", RC_INVALID_APP)
        name = path.stem
        module_name = f"uascall_app_{name}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ApplicationError(f"application {path}: not a Python file", RC_INVALID_APP)
        module = importlib.util.module_from_spec(spec)
        # Registered while it runs, as an import would: dataclasses, pickle and typing look
        # the module up by name.
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
            return cls._check(path, name, module)
        except ApplicationError:
            sys.modules.pop(module_name, None)
            raise
        except BaseException as exc:  # SystemExit too: loading must not end the host
            sys.modules.pop(module_name, None)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise ApplicationError(f"application {path} does not load: "
                                   f"{type(exc).__name__}: {exc}", RC_INVALID_APP) from exc

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
        sim_caller = getattr(module, "__uas_sim_caller__", "")
        if not isinstance(sim_caller, str):
            raise ApplicationError(f"application {path}: __uas_sim_caller__ is "
                                   f"{sim_caller!r}; expected a caller script (a string)",
                                   RC_INVALID_APP)
        return cls(path, name, str(getattr(module, "__uas_version__", "")), main, sim_caller)


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


@dataclass(frozen=True, slots=True)
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
    """Call records in a SQLite file (thread-safe: one short connection per write, so that
    other processes can read the file while calls run)."""

    SCHEMA = """CREATE TABLE IF NOT EXISTS calls (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        application TEXT NOT NULL, instance_id TEXT NOT NULL, direction TEXT NOT NULL,
        start REAL NOT NULL, duration REAL NOT NULL, return_code INTEGER NOT NULL,
        caller TEXT NOT NULL, called TEXT NOT NULL, cause TEXT NOT NULL,
        raw_cause TEXT NOT NULL)"""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._transaction() as db:
                db.execute(self.SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise Error(f"call records {self.path}: {exc}; expected a writable SQLite file "
                        "(or a new file in a writable folder)") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # sqlite3's own context manager commits but does not close
        with contextlib.closing(sqlite3.connect(self.path, timeout=10)) as db, db:
            yield db

    def add(self, record: CallRecord) -> None:
        fields = record.__dataclass_fields__
        with self._lock, self._transaction() as db:
            db.execute(f"INSERT INTO calls ({', '.join(fields)}) VALUES "
                       f"({', '.join('?' * len(fields))})",
                       [getattr(record, name) for name in fields])

    def all(self) -> list[CallRecord]:
        fields = list(CallRecord.__dataclass_fields__)
        with self._transaction() as db:
            rows = db.execute(f"SELECT {', '.join(fields)} FROM calls ORDER BY id").fetchall()
        return [CallRecord(*row) for row in rows]


class AppHost:
    """Runs ``application`` for every call ``backend`` offers.

    ``media_dir`` holds the application's files (default: the application's own folder,
    ``media`` beside it if that exists); ``records`` is the SQLite file for call records
    (None: none written). :attr:`results` keeps the last ``keep_results`` records, and
    :attr:`total_calls` / :attr:`total_failures` count them all (a server runs for months).
    """

    def __init__(self, engine: Engine, backend: Backend, application: Application, *,
                 application_parameters: str = "",
                 media_dir: str | os.PathLike[str] | None = None,
                 records: str | os.PathLike[str] | None = None,
                 tts_voice: str | None = None, keep_results: int = KEEP_RESULTS) -> None:
        if isinstance(keep_results, bool) or not isinstance(keep_results, int) \
                or keep_results < 0:
            raise ArgumentError(f"keep_results={keep_results!r}; expected a number of call "
                                "records >= 0")
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
        #: the most recent call records, oldest first
        self.results: collections.deque[CallRecord] = collections.deque(maxlen=keep_results)
        #: every record made, and those with a negative return code (host or app errors)
        self.total_calls = 0
        self.total_failures = 0
        #: called on the engine thread with each new channel, before its main() starts
        self.on_channel: Callable[[UASCallChannel], None] | None = None
        self._ids = itertools.count(1)
        self._running: dict[str, _Instance] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        """Engine thread: take the backend's calls and start it."""
        self.take_calls()
        self.backend.start()

    def take_calls(self) -> None:
        """Engine thread: take the calls of a backend that runs already."""
        self.backend.on_incoming = self._incoming

    def _incoming(self, leg: CallLeg) -> None:
        channel = UASCallChannel(self.engine, leg, media_clock=self.media_clock,
                                 media_dir=self.file_man.media_dir, tts_voice=self.tts_voice)
        instance = _Instance(f"{self.application.name}-{next(self._ids)}", channel,
                             time.time(), self.engine.time())
        if self.on_channel is not None:
            self.on_channel(channel)
        with self._lock:
            self._running[instance.instance_id] = instance
        instance.thread = self.engine.start_actor_thread(self._run, instance,
                                                         name=f"app {instance.instance_id}")

    def _run(self, instance: _Instance) -> None:
        instance_id, channel = instance.instance_id, instance.channel
        my_log = logging.LoggerAdapter(self.log, {"instance": instance_id})
        try:
            rc = self._call_main(channel, instance_id, my_log)
            if channel.state() is not State.IDLE:
                self.log.info("%s: main() returned with the call up; hanging up", instance_id)
                channel.hang_up()
        except BaseException:  # this thread's last act is the record
            self.log.exception("%s: the host failed", instance_id)
            rc = RC_HOST_ERROR
        self._record(instance, rc)

    def _record(self, instance: _Instance, rc: int) -> None:
        """Write ``instance``'s record, once (shutdown may have written it already)."""
        with self._lock:
            if instance.recorded:
                return
            instance.recorded = True
        channel = instance.channel
        record = CallRecord(self.application.name, instance.instance_id,
                            channel.Details.direction, instance.start_wall,
                            round(self.engine.time() - instance.start, 3), rc,
                            channel.Details.call_from, channel.Details.call_to,
                            channel.cause().name, channel.Details.raw_cause)
        self.log.info("%s: done, rc %d, cause %s", instance.instance_id, rc, record.cause)
        with self._lock:
            self.results.append(record)
            self.total_calls += 1
            if rc < 0:
                self.total_failures += 1
        if self.records is not None:
            try:
                self.records.add(record)
            except (OSError, sqlite3.Error) as exc:
                self.log.error("%s: cannot write its call record to %s: %s (record: %s)",
                               instance.instance_id, self.records.path, exc, record)
        with self._lock:  # only now: join() returns once every record is in
            self._running.pop(instance.instance_id, None)

    def _call_main(self, channel: UASCallChannel, instance_id: str,
                   my_log: logging.LoggerAdapter) -> int:
        try:
            rc = self.application.main(channel, instance_id, self.file_man, my_log,
                                       self.application_parameters)
        except SystemExit as exc:
            self.log.error("%s: main() called sys.exit(%r); expected it to return an int",
                           instance_id, exc.code)
            return RC_NOT_INT
        except BaseException:  # whatever the application does, the host goes on
            self.log.exception("%s: main() raised", instance_id)
            return RC_NOT_INT
        if isinstance(rc, bool) or not isinstance(rc, int):
            self.log.error("%s: main() returned %r; expected an int", instance_id, rc)
            return RC_NOT_INT
        if not RC_RANGE[0] <= rc <= RC_RANGE[1]:
            self.log.error("%s: main() returned %d; expected an int that fits 64 bits",
                           instance_id, rc)
            return RC_NOT_INT
        if -99 <= rc <= -1:
            self.log.error("%s: main() returned %d, which is reserved for the host (-1..-99)",
                           instance_id, rc)
            return RC_RESERVED
        return rc

    def result_totals(self) -> tuple[list[CallRecord], int, int]:
        """(the records kept, calls in all, failures in all), taken together; safe while
        calls still end on other threads (a deque cannot be iterated while it grows)."""
        with self._lock:
            return list(self.results), self.total_calls, self.total_failures

    def running(self) -> list[UASCallChannel]:
        """The channels whose ``main()`` has not returned yet."""
        with self._lock:
            return [instance.channel for instance in self._running.values()]

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the running application instances; False on timeout.

        On a running engine with a virtual clock the caller waits as the engine's actors
        do, ``timeout`` in engine time: blocked in a thread join instead, an actor would
        stop virtual time, and the applications with it (a hang-up waits for the network's
        RELEASE, which takes the D-channel's time to arrive). Otherwise in real time.
        """
        if self.engine.clock.virtual and self.engine.running:
            with contextlib.suppress(Error, Hangup):  # the engine stopped: wait for real
                return self.engine.wait_until(self._all_returned, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                threads = [i.thread for i in self._running.values() if i.thread is not None]
            if not threads:
                return True
            for thread in threads:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(left)
                if thread.is_alive():
                    return False

    def _all_returned(self) -> bool:
        with self._lock:
            return not any(i.thread is not None for i in self._running.values())

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Application thread: end the service without losing a call or a record.

        Stops taking calls, hangs up every call still up (so that the network is told, and
        the applications blocked on them return), waits up to ``timeout`` seconds for the
        applications to finish, records any that did not with RC_HOST_ERROR, and stops the
        backend. True if every application finished by itself.
        """
        self.engine.run(setattr, self.backend, "on_incoming", self._refuse)
        for channel in self.running():
            try:
                channel.hang_up()
            except Error as exc:
                self.log.warning("shutdown: cannot hang up %s: %s", channel, exc)
        finished = self.join(timeout)
        with self._lock:
            unfinished = list(self._running.values())
        for instance in unfinished:
            self.log.error("%s: main() had not returned %.1f s after its call was hung up; "
                           "recorded as a host error", instance.instance_id, timeout)
            self._record(instance, RC_HOST_ERROR)
        self.engine.run(self.stop)
        return finished

    def _refuse(self, leg: CallLeg) -> None:
        self.log.info("shutting down: refusing a new call")
        leg.release(Cause.CONGESTION, None)

    def stop(self) -> None:
        """Engine thread: stop the backend (calls still up are dropped)."""
        self.backend.stop()


@dataclass
class _Instance:
    """One run of the application: its call, its thread, when it started."""

    instance_id: str
    channel: UASCallChannel
    start_wall: float
    start: float
    thread: threading.Thread | None = None
    recorded: bool = False
