"""The application host: a UAS-style application runs once per call.

An application is a Python file with ``__uas_identify__ = "application"`` and a ``main``
returning an int. An **inbound** application's is
``main(channel, application_instance_id, file_man, my_log, application_parameters)``: for
each call the backend offers, the host creates a :class:`~uascall.channel.UASCallChannel`
and runs ``main`` on a thread of its own while the call lasts (an engine actor, so virtual
time waits for it; a thread of the engine's pool, reused by later calls).
An **outbound** application's ``main`` takes a sixth parameter, ``outbound_parameters``
(a string: what the instance was started with, usually the number or SIP URI it calls):
:meth:`AppHost.start_outbound` runs it on an outbound channel (IDLE, with ``call()`` and
``start_call()``), and ``uascall call`` starts such instances at a chosen rate. The host
tells the two apart by ``main``'s signature: one that can take five arguments is inbound,
one that needs six is outbound; ``__uas_direction__ = "outbound"`` (or ``"inbound"``)
says it outright, for a ``main`` that could take either.

Every instance's channel has ``channel.ExtraChannel[0..2]``, outbound channels on the same
backend (:mod:`uascall.extra`). When ``main`` returns, a call it left up on any of them is
hung up, and a call record goes into a SQLite file.

Return codes follow UAS: positive or zero is success, ``-100`` and below are the
application's own errors, and -1..-99 are reserved for the host: -1 ``main`` did not
return an int (typically an uncaught exception, or ``sys.exit()``; an int that does not fit
a 64-bit record counts as not an int too), -2 an inbound call was aborted before the
application could start (its caller cleared before ``main`` was called, which then is
not), -3 there is no such application (no such file), -4 the application is not valid,
-5 it returned a reserved value, -6 wrong direction (an outbound application offered an
incoming call, which is rejected, or an inbound one started as outbound, which places no
call; ``main`` is not called), -9 the host itself failed (or shut down before ``main``
returned).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import importlib.util
import inspect
import itertools
import logging
import os
import secrets
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
from uascall.engine import ActorTask, Engine
from uascall.errors import ArgumentError, Error, Hangup
from uascall.extra import MAX_EXTRA_CHANNELS, ExtraChannels, check_count
from uascall.media.player import MediaClock

log = logging.getLogger(__name__)

RC_NOT_INT = -1
RC_ABORTED = -2
RC_NO_APP = -3
RC_INVALID_APP = -4
RC_RESERVED = -5
RC_WRONG_DIRECTION = -6
RC_HOST_ERROR = -9
RC_RANGE = (-(2**63), 2**63 - 1)  # what a call record (SQLite INTEGER) holds
#: call records AppHost.results keeps, the most recent ones (the SQLite file keeps all):
#: a view's worth; each costs about 700 bytes, so 10,000 were 7 MB of a server's memory
KEEP_RESULTS = 1000
MAIN_PARAMETERS = ("channel", "application_instance_id", "file_man", "my_log",
                   "application_parameters")
OUTBOUND_MAIN_PARAMETERS = (*MAIN_PARAMETERS, "outbound_parameters")
INBOUND, OUTBOUND = "inbound", "outbound"
#: what an outbound instance's record has for the caller (UAS's ADR: NA for outbound)
NO_CALLER = "NA"


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
    #: "inbound" (main takes five parameters) or "outbound" (six, the last
    #: outbound_parameters)
    direction: str = INBOUND

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Application:
        path = Path(path)
        if not path.is_file():
            raise ApplicationError(f"application {path}: no such file", RC_NO_APP)
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
                                   f"{', '.join(MAIN_PARAMETERS)}) (inbound) or main("
                                   f"{', '.join(OUTBOUND_MAIN_PARAMETERS)}) (outbound)",
                                   RC_INVALID_APP)
        direction = cls._direction(path, main, getattr(module, "__uas_direction__", None))
        sim_caller = getattr(module, "__uas_sim_caller__", "")
        if not isinstance(sim_caller, str):
            raise ApplicationError(f"application {path}: __uas_sim_caller__ is "
                                   f"{sim_caller!r}; expected a caller script (a string)",
                                   RC_INVALID_APP)
        return cls(path, name, str(getattr(module, "__uas_version__", "")), main, sim_caller,
                   direction)

    @staticmethod
    def _direction(path: Path, main: Callable[..., Any], declared: object) -> str:
        """Inbound or outbound: as ``__uas_direction__`` says, else by what main takes."""
        try:
            signature = inspect.signature(main)
        except (TypeError, ValueError):
            raise ApplicationError(f"application {path}: the signature of main cannot be "
                                   "read; expected a Python function", RC_INVALID_APP) from None

        def takes(parameters: tuple[str, ...]) -> bool:
            try:
                signature.bind(*parameters)
            except TypeError:
                return False
            return True

        wanted = {INBOUND: MAIN_PARAMETERS, OUTBOUND: OUTBOUND_MAIN_PARAMETERS}
        if declared is not None:
            if declared not in wanted:
                raise ApplicationError(f"application {path}: __uas_direction__ is "
                                       f"{declared!r}; expected 'inbound' or 'outbound'",
                                       RC_INVALID_APP)
            direction = str(declared)
            if not takes(wanted[direction]):
                raise ApplicationError(
                    f"application {path}: main{signature} cannot take "
                    f"({', '.join(wanted[direction])}), which an {direction} application "
                    "(its __uas_direction__) is called with", RC_INVALID_APP)
            return direction
        if takes(MAIN_PARAMETERS):
            return INBOUND
        if takes(OUTBOUND_MAIN_PARAMETERS):
            return OUTBOUND
        raise ApplicationError(f"application {path}: main{signature} cannot take "
                               f"({', '.join(MAIN_PARAMETERS)}) (an inbound application) "
                               f"or ({', '.join(OUTBOUND_MAIN_PARAMETERS)}) (outbound)",
                               RC_INVALID_APP)


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
    """One application instance's record (UAS's ADR).

    ``direction`` is "inbound" or "outbound"; ``caller`` the calling number of an inbound
    call, "NA" for an outbound instance (as UAS's ADR has it); ``called`` the number called
    (an outbound instance's: its primary channel's last call, "" if it placed none);
    ``cause``/``raw_cause`` the primary call's; ``outbound_parameters`` what an outbound
    instance was started with; ``extra_calls`` the calls placed on its extra channels, a
    JSON list of ``{"channel", "call_to", "answered", "cause", "raw_cause", "seconds"}``.
    """

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
    outbound_parameters: str = ""
    extra_calls: str = "[]"


class CallRecords:
    """Call records in a SQLite file (thread-safe: one short connection per write, so that
    other processes can read the file while calls run).

    A file written by an earlier release, without the later columns, gets them added
    (with their defaults for the old rows) when it is opened."""

    SCHEMA = """CREATE TABLE IF NOT EXISTS calls (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        application TEXT NOT NULL, instance_id TEXT NOT NULL, direction TEXT NOT NULL,
        start REAL NOT NULL, duration REAL NOT NULL, return_code INTEGER NOT NULL,
        caller TEXT NOT NULL, called TEXT NOT NULL, cause TEXT NOT NULL,
        raw_cause TEXT NOT NULL, outbound_parameters TEXT NOT NULL DEFAULT '',
        extra_calls TEXT NOT NULL DEFAULT '[]')"""
    #: columns added since the first schema, with their definitions (issue 13)
    ADDED_COLUMNS = {"outbound_parameters": "TEXT NOT NULL DEFAULT ''",
                     "extra_calls": "TEXT NOT NULL DEFAULT '[]'"}

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._transaction() as db:
                db.execute(self.SCHEMA)
                have = {row[1] for row in db.execute("PRAGMA table_info(calls)")}
                for column, definition in self.ADDED_COLUMNS.items():
                    if column in have:
                        continue
                    try:
                        db.execute(f"ALTER TABLE calls ADD COLUMN {column} {definition}")
                    except sqlite3.OperationalError as exc:
                        # another process opening the same old file added it first
                        if "duplicate column" not in str(exc):
                            raise
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


#: how often a drained host looks whether the proxy in front has been told (seconds)
DRAIN_POLL = 0.1


def new_run_id() -> str:
    """Six random letters and digits (30 bits) naming one run of a host: in its instances'
    ids, so that two runs (a restart, the workers of ``--workers``) never give two
    instances one id, and the files an application names by it never overwrite another's."""
    return base64.b32encode(secrets.token_bytes(4)).decode().lower()[:6]


class AppHost:
    """Runs ``application``: an inbound one for every call ``backend`` offers, an outbound
    one each time :meth:`start_outbound` is called.

    Each instance's id is ``NAME-RUN-N``: the application's name, :attr:`run_id` (random,
    one per host) and a count from 1. Applications name files by it (``examples/ivr.py``
    its recordings), so it must not come again after a restart or in another worker.

    ``media_dir`` holds the application's files (default: the application's own folder,
    ``media`` beside it if that exists); ``records`` is the SQLite file for call records
    (None: none written). :attr:`results` keeps the last ``keep_results`` records, and
    :attr:`total_calls` / :attr:`total_failures` count them all (a server runs for months).
    Each instance gets ``extra_channels`` extra channels (0 to 3); ``route`` is where the
    host's outbound channels (an outbound instance's, and every extra channel) place their
    calls, in the backend's terms (``Backend.place_call``), None for its default.
    """

    def __init__(self, engine: Engine, backend: Backend, application: Application, *,
                 application_parameters: str = "",
                 media_dir: str | os.PathLike[str] | None = None,
                 records: str | os.PathLike[str] | None = None,
                 tts_voice: str | None = None, keep_results: int = KEEP_RESULTS,
                 extra_channels: int = MAX_EXTRA_CHANNELS, route: str | None = None) -> None:
        if isinstance(keep_results, bool) or not isinstance(keep_results, int) \
                or keep_results < 0:
            raise ArgumentError(f"keep_results={keep_results!r}; expected a number of call "
                                "records >= 0")
        self.extra_channels = check_count(extra_channels)
        self.route = route
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
        #: called with each new primary channel before its main() starts: on the engine
        #: thread for an incoming call, on start_outbound()'s thread for an outbound one
        self.on_channel: Callable[[UASCallChannel], None] | None = None
        #: called with each record once it is made (on the thread that made it: the
        #: instance's, or shutdown()'s); what it raises is logged, never lost in a thread
        self.on_record: Callable[[CallRecord], None] | None = None
        #: names this host's run in its instances' ids (:func:`new_run_id`)
        self.run_id = new_run_id()
        self._ids = itertools.count(1)
        self._running: dict[str, _Instance] = {}
        self._lock = threading.Lock()
        self._hanging_up: set[UASCallChannel] = set()  # shutdown's clearings under way
        self._wrong_direction_told = False

    def start(self, *, take_calls: bool = True) -> None:
        """Engine thread: take the backend's calls (or, without ``take_calls``, refuse
        them: a host that only starts outbound instances) and start it."""
        if take_calls:
            self.take_calls()
        else:
            self.backend.on_incoming = self._refuse
        self.backend.start()

    def take_calls(self) -> None:
        """Engine thread: take the calls of a backend that runs already."""
        self.backend.on_incoming = self._incoming

    def _incoming(self, leg: CallLeg) -> None:
        channel = UASCallChannel(self.engine, leg, media_clock=self.media_clock,
                                 media_dir=self.file_man.media_dir, tts_voice=self.tts_voice)
        instance = self._new_instance(channel, INBOUND)
        if self.on_channel is not None:
            self.on_channel(channel)
        self._start(instance)

    def start_outbound(self, outbound_parameters: str = "") -> str:
        """Any thread but the engine's: start one instance of the (outbound) application
        with ``outbound_parameters`` (a string, usually where it is to call) and return
        its id. Its channel is an outbound channel on the host's backend, IDLE; ``main``
        places the call itself. An inbound application is not run: the instance is
        recorded at once with return code -6 (wrong direction), no call placed."""
        if not isinstance(outbound_parameters, str):
            raise ArgumentError(f"outbound_parameters={outbound_parameters!r}; expected a "
                                "string")
        channel = UASCallChannel(self.engine, backend=self.backend, route=self.route,
                                 media_clock=self.media_clock,
                                 media_dir=self.file_man.media_dir, tts_voice=self.tts_voice)
        instance = self._new_instance(channel, OUTBOUND, outbound_parameters)
        if self.application.direction != OUTBOUND:
            self._tell_wrong_direction(OUTBOUND)
            self._record(instance, RC_WRONG_DIRECTION)
            return instance.instance_id
        if self.on_channel is not None:
            self.on_channel(channel)
        self._start(instance)
        return instance.instance_id

    def _new_instance(self, channel: UASCallChannel, direction: str,
                      outbound_parameters: str = "") -> _Instance:
        instance_id = f"{self.application.name}-{self.run_id}-{next(self._ids)}"
        extras = ExtraChannels(self.engine, self.backend, self.extra_channels,
                               media_clock=self.media_clock,
                               media_dir=self.file_man.media_dir, tts_voice=self.tts_voice,
                               route=self.route, name=instance_id)
        channel.ExtraChannel = extras
        instance = _Instance(instance_id, channel, time.time(), self.engine.time(),
                             direction, outbound_parameters, extras)
        with self._lock:
            self._running[instance_id] = instance
        return instance

    def _start(self, instance: _Instance) -> None:
        # A thread of the engine's pool: starting a thread per call made the engine wait
        # for each new one to be scheduled.
        instance.task = self.engine.run_actor(self._run, instance,
                                              name=f"app {instance.instance_id}")

    def _tell_wrong_direction(self, direction: str) -> None:
        if self._wrong_direction_told:
            return
        self._wrong_direction_told = True
        self.log.error("%s is an %s application; an %s instance cannot run it: every one "
                       "is recorded with return code -6 (wrong direction)%s",
                       self.application.path, self.application.direction, direction,
                       ", its call rejected" if direction == INBOUND else ", no call placed")

    def _run(self, instance: _Instance) -> None:
        instance_id, channel = instance.instance_id, instance.channel
        my_log = logging.LoggerAdapter(self.log, {"instance": instance_id})
        try:
            if instance.direction != self.application.direction:
                self._tell_wrong_direction(instance.direction)
                channel.reject(Cause.REJECTED)
                rc = RC_WRONG_DIRECTION
            elif instance.direction == INBOUND and channel.state() is State.IDLE:
                self.log.info("%s: the caller cleared (cause %s) before main() could start; "
                              "not started", instance_id, channel.cause().name)
                rc = RC_ABORTED
            else:
                rc = self._call_main(channel, instance_id, my_log,
                                     instance.outbound_parameters)
            if channel.state() is not State.IDLE:
                self.log.info("%s: main() returned with the call up; hanging up", instance_id)
                channel.hang_up()
            if any(extra.state() is not State.IDLE for extra in instance.extras.created()):
                self.log.info("%s: main() returned with calls up on its extra channels; "
                              "hanging up", instance_id)
            instance.extras.close()
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
        outbound = instance.direction == OUTBOUND
        record = CallRecord(self.application.name, instance.instance_id,
                            instance.direction, instance.start_wall,
                            round(self.engine.time() - instance.start, 3), rc,
                            NO_CALLER if outbound else channel.Details.call_from,
                            channel.Details.call_to, channel.cause().name,
                            channel.Details.raw_cause, instance.outbound_parameters,
                            instance.extras.calls_json())
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
        if self.on_record is not None:
            try:
                self.on_record(record)
            except Exception:
                self.log.exception("%s: on_record failed", instance.instance_id)
        with self._lock:  # only now: join() returns once every record is in
            self._running.pop(instance.instance_id, None)

    def _call_main(self, channel: UASCallChannel, instance_id: str,
                   my_log: logging.LoggerAdapter, outbound_parameters: str) -> int:
        arguments = [channel, instance_id, self.file_man, my_log,
                     self.application_parameters]
        if self.application.direction == OUTBOUND:
            arguments.append(outbound_parameters)
        try:
            rc = self.application.main(*arguments)
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

    def running_instances(self) -> list[tuple[str, UASCallChannel, float]]:
        """(instance id, its channel, when it started on the engine's clock) of each
        instance whose ``main()`` has not returned yet: what ``uascall channels`` shows."""
        with self._lock:
            return [(instance.instance_id, instance.channel, instance.start)
                    for instance in self._running.values()]

    @property
    def running_count(self) -> int:
        """How many instances have not returned (or been recorded) yet; safe on any
        thread, the engine's too (no lock: a dict's length is read at once)."""
        return len(self._running)

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
                tasks = [i.task for i in self._running.values() if i.task is not None]
            if not tasks:
                return True
            for task in tasks:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                task.join(left)
                if task.is_alive():
                    return False

    def _all_returned(self) -> bool:
        with self._lock:
            return not any(i.task is not None for i in self._running.values())

    def drain(self, timeout: float) -> bool:
        """Application thread: take no new calls (the backend drains, so that a proxy in
        front stops sending them; one that comes all the same is refused) and wait up to
        ``timeout`` seconds for the calls up to end by themselves, and for the proxy to
        have been told (:meth:`Backend.drain_announced`: an idle node gone before the
        proxy's next probe would be sent the next call all the same). True if no call is
        left; :meth:`shutdown` then ends the service."""
        def stop_taking_calls() -> None:
            self.backend.on_incoming = self._refuse
            self.backend.drain()
        deadline = time.monotonic() + timeout
        self.engine.run(stop_taking_calls)
        if not self.join(timeout):
            return False
        while not self.engine.run(self.backend.drain_announced):
            if time.monotonic() >= deadline:
                self.log.info("drained, but no probe of the proxy in front was answered "
                              "503 within %g s: it may send a call or two here before it "
                              "finds this node gone", timeout)
                break
            time.sleep(DRAIN_POLL)
        return True

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Application thread: end the service without losing a call or a record.

        Stops taking calls, hangs up every call still up, on the instances' channels and
        their extra channels (so that the network is told, and the applications blocked on
        them return), waits up to ``timeout`` seconds for the applications to finish,
        records any that did not with RC_HOST_ERROR, and stops the backend. True if every
        application finished by itself. A call an application places meanwhile is hung up
        too, by a second pass a second later.
        """
        self.engine.run(setattr, self.backend, "on_incoming", self._refuse)
        self._hang_up_running()
        first = min(1.0, timeout)
        finished = self.join(first)
        if not finished:
            self._hang_up_running()
            finished = self.join(timeout - first)
        with self._lock:
            unfinished = list(self._running.values())
        for instance in unfinished:
            self.log.error("%s: main() had not returned %.1f s after its call was hung up; "
                           "recorded as a host error", instance.instance_id, timeout)
            self._record(instance, RC_HOST_ERROR)
        self.engine.run(self.stop)
        return finished

    def _hang_up_running(self) -> None:
        """Start clearing every call still up, all at once, each on a thread of its own:
        clearing one call can take long (a lost RELEASE waits for T305, a 200 not yet
        acknowledged for its ACK), and shutdown's timeout is for all of them together."""
        with self._lock:
            instances = list(self._running.values())
        for instance in instances:
            for channel in (instance.channel, *instance.extras.created()):
                if channel.state() is State.IDLE or channel in self._hanging_up:
                    continue
                self._hanging_up.add(channel)
                self.engine.start_actor_thread(self._hang_up, channel,
                                               name=f"uascall-hang-up {instance.instance_id}")

    def _hang_up(self, channel: UASCallChannel) -> None:
        try:
            channel.hang_up()
        except (Error, Hangup) as exc:
            self.log.warning("shutdown: cannot hang up %s: %s", channel, exc)

    def _refuse(self, leg: CallLeg) -> None:
        self.log.info("not taking calls (shutting down, or starting only outbound "
                      "instances): refusing a call from %r", leg.call_from)
        leg.release(Cause.CONGESTION, None)

    def stop(self) -> None:
        """Engine thread: stop the backend (calls still up are dropped)."""
        self.backend.stop()


@dataclass
class _Instance:
    """One run of the application: its call, its task on the engine's actor pool, when it
    started."""

    instance_id: str
    channel: UASCallChannel
    start_wall: float
    start: float
    direction: str
    outbound_parameters: str
    extras: ExtraChannels
    task: ActorTask | None = None
    recorded: bool = False
