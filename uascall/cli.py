"""The ``uascall`` command.

- ``uascall demo``: the main job. A simulated E1 (or T1) span, a real libpri exchange that
  calls in, and ``examples/early_media.py`` ringing with early media, answering, playing a
  file and hanging up; the Q.931 exchange is printed as a ladder and what the caller heard
  is written to a WAV file.
- ``uascall run APP.py --backend sim|dahdi|sip``: serve a UAS-style (inbound)
  application. On ``sim`` the simulated exchange places ``--calls`` calls and the command
  ends when they have; on ``dahdi`` and ``sip`` it serves calls until interrupted.
  ``--backend`` may be given more than once (or as a comma list): the host then takes
  calls from every backend and places its calls by destination (:mod:`uascall.routing`).
- ``uascall call APP.py --to NUMBER --calls N --rate R --concurrent M``: a call generator.
  Each call is an instance of an outbound application, whose ``main`` gets ``--to`` as
  ``outbound_parameters`` and places the call; a progress line while it runs, a summary
  by cause at the end (:mod:`uascall.callgen`). It takes the same backend options.

The command knows backends by name only (:mod:`uascall.backend`'s registry and its
``uascall.backends`` entry points): each adds its own options, in a group of its own in
``--help`` (:meth:`~uascall.backend.Backend.add_arguments`), builds its constructor's
arguments from them, and may bring a far end that calls the application from the command
line (:meth:`~uascall.backend.Backend.command_line_far_end`: the simulator's exchange,
which ``uascall demo`` uses too), so a backend installed from another package is
configured and driven like the built-in ones.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from uascall import __version__
from uascall.app import INBOUND, OUTBOUND, AppHost, Application, ApplicationError, CallRecord
from uascall.backend import Backend, FarEndDriver, backend_class, known_backends, open_backend
from uascall.callgen import CallGenerator, Progress
from uascall.collector import INTERVAL, FullPasses
from uascall.control import ENGINE_TIMEOUT, ControlClient, ControlServer, NotRunning, default_path
from uascall.engine import (
    REALTIME_PRIORITY,
    Engine,
    VirtualClock,
    check_realtime,
    realtime_priority,
)
from uascall.errors import ArgumentError, UascallError
from uascall.extra import MAX_EXTRA_CHANNELS
from uascall.routing import RoutingBackend
from uascall.stats import RunStats
from uascall.status import Snapshot, render, snapshot
from uascall.trace.command import add_trace_options, tracing
from uascall.trace.ladder_command import add_ladder_command

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
#: the backend whose far end calls the application in ``uascall demo``
DEMO_BACKEND = "sim"
#: seconds the applications get to return once `run` has hung up the calls left after
#: --shutdown-timeout
SHUTDOWN_GRACE = 5.0
EXAMPLE_DIRS = (HERE.parent / "examples", Path(sys.prefix) / "share" / "uascall" / "examples")


def _example(name: str) -> Path:
    for folder in EXAMPLE_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise UascallError(f"cannot find examples/{name} (looked in "
                       f"{', '.join(str(d) for d in EXAMPLE_DIRS)}); pass --app")


def _summary(record: CallRecord) -> str:
    return (f"{record.instance_id}: {record.caller} -> {record.called}, {record.duration:.1f}"
            f" s, return code {record.return_code}, cause {record.cause}"
            f" ({record.raw_cause or 'no raw cause'})")


def _print_results(host: AppHost) -> int:
    """Print the records the host kept (and the totals when it dropped older ones); the
    exit code: 1 if any call, listed or not, had a negative return code."""
    records, calls, failures = host.result_totals()
    for record in records:
        print(_summary(record))
    if calls > len(records):
        print(f"{calls} calls in all, {failures} with a negative return code; the first "
              f"{calls - len(records)} are not listed above")
    return 1 if failures else 0


def _demo(args: argparse.Namespace) -> int:
    """One call from the demo backend's far end (the simulator's exchange) to the
    application, with what that far end shows of it (the ladder, what the caller heard)."""
    app = Application.load(args.app or _example("early_media.py"))
    with _engine(args) as engine, tracing(engine, args) as trace:
        backend = open_backend(DEMO_BACKEND, engine, **_backend_options(DEMO_BACKEND, args))
        trace.attach(backend)
        driver = backend.command_line_far_end(args, "demo")
        if driver is None:
            raise UascallError(f"the {DEMO_BACKEND} backend has no far end to call the demo")
        host = AppHost(engine, backend, app, application_parameters=args.param)
        intro = driver.intro(host)
        if intro:
            print(intro)
        engine.run(host.start)
        driver.place_calls(host)
    driver.report()
    failed = _print_results(host)
    epilogue = driver.epilogue()
    if epilogue:
        print(epilogue)
    return 0 if host.total_calls and not failed else 1


def _load(path: str, command: str) -> Application:
    """The application, or the reason it cannot run, with its UAS return code."""
    try:
        app = Application.load(path)
    except ApplicationError as exc:
        raise UascallError(f"{exc} (UAS return code {exc.rc})") from None
    wanted = INBOUND if command == "run" else OUTBOUND
    if app.direction != wanted:
        other = "call" if command == "run" else "run"
        what = ("each incoming call is rejected" if command == "run"
                else "no call is placed")
        takes = ("six parameters, the last outbound_parameters" if app.direction == OUTBOUND
                 else "five parameters")
        print(f"uascall: {app.path} is an {app.direction} application (its main takes "
              f"{takes}); uascall {command} runs {wanted} ones, so {what} and recorded with "
              f"return code -6 (wrong direction); expected uascall {other}", file=sys.stderr)
    return app


def _backend_names(args: argparse.Namespace) -> list[str]:
    names = [name.strip() for given in (args.backend or ["sim"])
             for name in given.split(",") if name.strip()]
    if not names:
        raise UascallError("--backend is empty; expected sim, dahdi or sip (or several)")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UascallError(f"--backend {', '.join(repeated)} given twice; expected each "
                           "backend once")
    return names


def _backend_options(name: str, args: argparse.Namespace) -> dict[str, object]:
    """The constructor's keyword arguments for backend ``name``, which builds them from
    the parsed command line itself."""
    return backend_class(name).options_from_arguments(args, args.command)


def _open_backends(engine: Engine, args: argparse.Namespace
                   ) -> tuple[Backend, list[Backend]]:
    """The backend (a RoutingBackend over several), and the backends themselves."""
    names = _backend_names(args)
    if args.virtual:
        real = [name for name in names if not backend_class(name).virtual_time]
        if real:
            virtual = [name for name in known_backends() if _virtual_time(name)]
            raise UascallError(f"--virtual needs --backend {' or '.join(virtual)} alone: "
                               f"{', '.join(real)} {'keeps' if len(real) == 1 else 'keep'} "
                               "real time")
    backends = [open_backend(name, engine, **_backend_options(name, args)) for name in names]
    if len(backends) == 1:
        return backends[0], backends
    return RoutingBackend(engine, backends), backends


def _virtual_time(name: str) -> bool:
    try:
        return backend_class(name).virtual_time
    except UascallError:  # not installed here: it runs in no time at all
        return False


def _host(engine: Engine, backend: Backend, app: Application,
          args: argparse.Namespace) -> AppHost:
    return AppHost(engine, backend, app, application_parameters=args.param,
                   media_dir=args.media_dir, records=args.records, tts_voice=args.voice,
                   extra_channels=args.extra_channels, route=args.route)


def _run(args: argparse.Namespace) -> int:
    app = _load(args.app, "run")
    with _engine(args) as engine, tracing(engine, args) as trace:
        backend, backends = _open_backends(engine, args)
        trace.attach(backend)
        host = _host(engine, backend, app, args)
        drivers = [driver for driver in (b.command_line_far_end(args, "run")
                                         for b in backends) if driver is not None]
        with _observed(args, engine, host, backends, "run"):
            _serve(args, engine, host, drivers)
        return _print_results(host)


def _serve(args: argparse.Namespace, engine: Engine, host: AppHost,
           drivers: list[FarEndDriver]) -> None:
    """`uascall run`'s calls: a far end's (the simulated exchange's), until they have
    ended or a signal stops them, or whatever comes until Ctrl-C or SIGTERM."""
    if drivers:
        # a far end's calls (the simulated exchange's), with whatever serves beside it;
        # a signal stops them as it stops a server, without losing a call's record
        with _until_interrupted() as stopped:
            engine.run(host.start)
            for driver in drivers:
                driver.stopped = stopped
                if not stopped.is_set():
                    driver.place_calls(host)
            if stopped.signum is not None:
                _stop_placing(args, host, stopped.signum)
            else:
                engine.run(host.stop)
        for driver in drivers:
            driver.report()
    else:
        with _until_interrupted() as stopped:
            engine.run(host.start)
            # What start-up made (modules, the backend, the application) lives as long
            # as the server: out of the collector's sight, so that its full passes,
            # which stop every thread, scan only what calls leave behind.
            gc.collect()
            gc.freeze()
            log.info("serving calls; stop with Ctrl-C")
            with _full_gc_passes(args, host) as passes:
                while not stopped.wait(1.0):
                    passes.poll()
            timeout = args.shutdown_timeout
            drained = False
            if stopped.signum == signal.SIGTERM:
                # A node leaving a pool: the proxy in front learns it from our 503s to its
                # OPTIONS probes and sends the new calls elsewhere; the calls up go on.
                print(f"uascall: SIGTERM: taking no new calls; the calls up have {timeout:g} "
                      "s to end (a second signal ends them at once)", file=sys.stderr)
                drained = host.drain(timeout)
                if drained:
                    timeout = SHUTDOWN_GRACE
            print("uascall: drained; stopping" if drained
                  else "uascall: stopping; hanging up the calls still up", file=sys.stderr)
            if not host.shutdown(timeout):
                print("uascall: some applications had not returned; recorded with "
                      "return code -9", file=sys.stderr)


def _stop_placing(args: argparse.Namespace, host: AppHost, signum: int) -> None:
    """After SIGINT or SIGTERM stopped a far end placing calls: the calls up get
    --shutdown-timeout to end by themselves, then are hung up, and every instance is
    recorded. Unlike a server's Ctrl-C, SIGINT waits too: these calls are a test's,
    whose end (the caller's hang-up, the application's last words) is what it is for."""
    timeout = args.shutdown_timeout
    name = signal.Signals(signum).name
    print(f"uascall: {name}: placing no new calls; the calls up have {timeout:g} s to end, "
          "then are hung up (a second signal ends them at once)", file=sys.stderr)
    if host.drain(timeout):
        timeout = SHUTDOWN_GRACE
    if not host.shutdown(timeout):
        print("uascall: some applications had not returned; recorded with return code -9",
              file=sys.stderr)


@contextlib.contextmanager
def _full_gc_passes(args: argparse.Namespace, host: AppHost) -> Iterator[FullPasses]:
    """The collector's full passes at quiet moments (:mod:`uascall.collector`), or with
    --full-gc-every 0 as Python runs them (a FullPasses never entered never runs one)."""
    passes = FullPasses(lambda: host.running_count, lambda: host.total_calls,
                        interval=args.full_gc_every or INTERVAL)
    if not args.full_gc_every:
        yield passes
        return
    with passes:
        yield passes


@contextlib.contextmanager
def _observed(args: argparse.Namespace, engine: Engine, host: AppHost,
              backends: list[Backend], command: str) -> Iterator[RunStats]:
    """While the host runs: its counters (:class:`~uascall.stats.RunStats`), the control
    socket (:mod:`uascall.control`) unless --control none, and with --metrics the
    Prometheus endpoint (:mod:`uascall.metrics`). The default control path taken by
    another uascall is no reason to stop: this one then has none, with a warning; a path
    given that cannot be served is."""
    source = f"uascall {command} (pid {os.getpid()})"
    if args.levels:
        engine.taps.devices = True  # before the backends start: their devices tapped
    stats = RunStats(engine, host, backends, source=source, levels=args.levels)
    with contextlib.ExitStack() as stack:
        if args.metrics:
            from uascall.metrics import MetricsServer  # prometheus-client only here
            stack.callback(MetricsServer(args.metrics, stats).start().close)
        if args.control != "none":
            server = _control_server(args, engine, host, backends, stats)
            if server is not None:
                stack.callback(server.close)
        engine.run(stats.attach)
        try:
            yield stats
        finally:
            if engine.running:
                engine.run(stats.detach)


def _control_server(args: argparse.Namespace, engine: Engine, host: AppHost,
                    backends: list[Backend], stats: RunStats) -> ControlServer | None:
    path = args.control or default_path()

    def channels(request: dict[str, object]) -> Snapshot:
        return engine.run(snapshot, host, backends, stats.source, timeout=ENGINE_TIMEOUT)

    def monitor(request: dict[str, object]) -> Snapshot:
        return engine.run(stats.snapshot, timeout=ENGINE_TIMEOUT)

    try:
        return ControlServer(path, {"channels": channels, "monitor": monitor}).start()
    except UascallError as exc:
        if args.control:
            raise
        log.warning("no control socket: %s", exc)
        return None


class _ProgressLine:
    """The generator's progress on ``stream``: one line rewritten in place on a terminal,
    a line each report otherwise (a log, a pipe)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._width = 0

    def __call__(self, progress: Progress) -> None:
        line = progress.line()
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()


def _call(args: argparse.Namespace) -> int:
    app = _load(args.app, "call")
    progress = _ProgressLine(sys.stderr)
    interval = args.progress if args.progress is not None else (1.0 if progress.tty
                                                                 else 5.0)
    with _engine(args) as engine, tracing(engine, args) as trace:
        backend, backends = _open_backends(engine, args)
        trace.attach(backend)
        host = _host(engine, backend, app, args)
        generator = CallGenerator(host, args.to, calls=args.calls, rate=args.rate,
                                  concurrent=args.concurrent,
                                  progress=progress if interval > 0 else None,
                                  progress_interval=interval if interval > 0 else 1.0)
        with _until_interrupted() as stopped, \
                _observed(args, engine, host, backends, "call"):
            engine.run(host.start, take_calls=False)
            # a simulated span's first call waits for its D-channel, as the exchange's do
            if not engine.wait_until(lambda: all(b.ready for b in backends), 10):
                waiting = [b.name for b in backends if not b.ready]
                raise UascallError(f"backend {', '.join(waiting)} not ready to place calls "
                                   "within 10 s (a simulated span: its D-channel did not "
                                   "come up)")
            try:
                summary = generator.run(stopped, shutdown_timeout=args.shutdown_timeout)
            finally:
                progress.close()
        if not summary.interrupted:
            engine.run(host.stop)
    print(summary.render())
    return 1 if summary.failures else 0


def _channels(args: argparse.Namespace) -> int:
    snap = None
    if not args.offline:
        try:
            with ControlClient(args.control) as client:
                snap = client.request("channels")
                snap.pop("ok", None)
        except NotRunning as exc:
            log.info("%s; reading what the kernel shows", exc)
    if snap is None:
        snap = _offline_status(args)
        if snap is None:
            path = args.control or default_path()
            raise UascallError(f"no uascall runs (nothing serves {path}) and no backend "
                               "has anything to show without one (no DAHDI driver loaded: "
                               "no DAHDI buses in sysfs, no /proc/dahdi)")
    print(json.dumps(snap, indent=1) if args.json else render(snap))
    return 0


def _monitor(args: argparse.Namespace) -> int:
    from uascall import monitor  # rich is needed here only
    if not args.interval > 0:
        raise UascallError(f"--interval {args.interval}; expected seconds > 0")
    return monitor.run(args.control, once=args.once, interval=args.interval)


def _offline_status(args: argparse.Namespace) -> Snapshot | None:
    """Every backend's offline part (:meth:`Backend.offline_status`), merged."""
    merged: Snapshot | None = None
    for name in known_backends():
        try:
            part = backend_class(name).offline_status(args)
        except UascallError:
            continue  # not installed here
        if part is None:
            continue
        if merged is None:
            merged = {"source": part.get("source", name), "spans": [], "channels": [],
                      "calls": []}
        else:
            merged["source"] += f", {part.get('source', name)}"
        for key in ("spans", "channels", "calls"):
            merged[key] += part.get(key, [])
    return merged


@contextlib.contextmanager
def _engine(args: argparse.Namespace) -> Iterator[Engine]:
    """The engine, in virtual time with --virtual (this thread an actor, so that time waits
    for it), its thread at SCHED_FIFO with --realtime."""
    with Engine(VirtualClock() if args.virtual else None) as engine:
        realtime = _realtime(args)
        if realtime is not None:
            if args.virtual:
                raise UascallError("--realtime with --virtual: virtual time runs as fast "
                                   "as the CPU allows, it has no deadline to keep; expected "
                                   "one or the other")
            engine.run_realtime(realtime)
        with engine.actor() if args.virtual else contextlib.nullcontext():
            yield engine


def _realtime_priority(text: str) -> int:
    try:
        return realtime_priority(int(text))
    except (ValueError, ArgumentError):  # (ArgumentError is a ValueError too)
        raise argparse.ArgumentTypeError(f"{text!r}: expected 1 to 99 (SCHED_FIFO's range "
                                         "on Linux)") from None


def _realtime(args: argparse.Namespace) -> int | None:
    """The engine thread's SCHED_FIFO priority asked for, or None (`demo` has no such
    option)."""
    priority = getattr(args, "realtime_priority", None)
    if priority is None and getattr(args, "realtime", False):
        priority = REALTIME_PRIORITY
    return priority


class _Stopped(threading.Event):
    """Set by a signal; ``signum`` says which."""

    signum: int | None = None


@contextlib.contextmanager
def _until_interrupted() -> Iterator[_Stopped]:
    """An event set by the first SIGINT or SIGTERM; a second one ends the process at once
    (the shutdown is then cut short). The previous handlers come back afterwards."""
    stopped = _Stopped()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in signals}

    def first(signum: int, frame: object) -> None:
        stopped.signum = signum
        stopped.set()
        for again in signals:
            signal.signal(again, signal.SIG_DFL)

    for signum in signals:
        signal.signal(signum, first)
    try:
        yield stopped
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _BackendGroup:
    """One backend's argument group in a command's ``--help``, as
    :meth:`Backend.add_arguments` gets it: ``add_argument`` as argparse's. An option
    another backend added with the same flags and the same settings is shared (added
    once, with the first one's help); one whose flags clash with another's, or with the
    command's own, is left out with a warning, so that one backend cannot break the
    command for the others."""

    def __init__(self, name: str, group: argparse._ArgumentGroup,
                 added: dict[str, tuple[str, dict[str, object]]]) -> None:
        self.name = name
        self.group = group
        self._added = added  # flag -> (backend, its settings but the help), per command

    def add_argument(self, *flags: str, **settings: object) -> argparse.Action | None:
        compared = {key: value for key, value in settings.items() if key != "help"}
        for flag in flags:
            if flag in self._added:
                owner, theirs = self._added[flag]
                if theirs == compared:
                    return None  # shared: added by ``owner`` already
                log.warning("backend %r: option %s left out: backend %r added it with "
                            "other settings", self.name, flag, owner)
                return None
        try:
            action = self.group.add_argument(*flags, **settings)  # type: ignore[arg-type]
        except argparse.ArgumentError as exc:
            log.warning("backend %r: option %s left out: %s", self.name, "/".join(flags),
                        exc)
            return None
        for flag in action.option_strings:
            self._added[flag] = (self.name, compared)
        return action


def _add_backend_options(command: argparse.ArgumentParser, command_name: str,
                         names: Sequence[str]) -> None:
    """Each backend's options in a group of its own, added by the backend itself; a
    backend that cannot be imported here gets a group that says why."""
    added: dict[str, tuple[str, dict[str, object]]] = {}
    for name in names:
        try:
            cls = backend_class(name)
        except UascallError as exc:
            command.add_argument_group(f"{name} backend", f"not available here: {exc}")
            continue
        group = command.add_argument_group(f"{name} backend")
        cls.add_arguments(_BackendGroup(name, group, added), command_name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uascall", description="uascall: UAS-style "
                                     "telephony channels over DAHDI, SIP and a simulator")
    parser.add_argument("--version", action="version", version=f"uascall {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v info, -vv debug)")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="an early-media call on the simulator: the Q.931 "
                               "ladder, and what the caller heard in a WAV file")
    demo.add_argument("--app", help="another application than examples/early_media.py")
    demo.add_argument("--param", default="", help="application_parameters for main()")
    demo.add_argument("--virtual", action="store_true", help="run in virtual time, as fast "
                      "as the CPU allows (timestamps are still those of the call)")
    _add_backend_options(demo, "demo", [DEMO_BACKEND])
    add_trace_options(demo)
    demo.set_defaults(func=_demo)

    run = commands.add_parser("run", help="serve a UAS-style (inbound) application")
    run.add_argument("app", help="the application file (with main(channel, ...))")
    _add_host_options(run, "run")
    run.add_argument("--workers", type=int, default=1, metavar="N",
                     help="run N processes of this command (--backend sip only), each on "
                     "the next port of every --listen and with its own --records file, "
                     "behind a proxy that spreads the calls (deploy/kamailio); one "
                     "supervisor starts a worker that dies again (default %(default)s)")
    run.add_argument("--full-gc-every", type=_seconds_or_zero, default=INTERVAL, metavar="SECONDS",
                     help="the cyclic GC's full passes, which hold every call's media while "
                     "they scan the calls up, run when no call is up, and at least this "
                     "often; 0 leaves them to Python (default %(default)g)")
    run.set_defaults(func=_run)

    call = commands.add_parser("call", help="a call generator: instances of an outbound "
                               "application, each placing a call, with a summary by cause")
    call.add_argument("app", help="the outbound application file (with main(channel, ..., "
                      "application_parameters, outbound_parameters))")
    call.add_argument("--to", required=True, metavar="DESTINATION",
                      help="outbound_parameters for main(): where each instance calls (a "
                      "number, tel:NUMBER or sip:user@host:port)")
    call.add_argument("--calls", type=int, default=1, help="instances (calls) in all "
                      "(default %(default)s)")
    call.add_argument("--rate", type=float, default=10.0, metavar="PER_SECOND",
                      help="new instances a second (default %(default)s)")
    call.add_argument("--concurrent", type=int, default=10, metavar="M",
                      help="at most M instances at once; the rate waits (default "
                      "%(default)s)")
    call.add_argument("--progress", type=float, metavar="SECONDS",
                      help="seconds between progress reports on stderr (default 1 on a "
                      "terminal, 5 otherwise; 0: none)")
    _add_host_options(call, "call")
    call.set_defaults(func=_call)

    channels = commands.add_parser(
        "channels", help="spans and channels, and the call on each: from a running "
        "uascall's control socket, else from sysfs and /proc/dahdi")
    channels.add_argument("--control", metavar="PATH", help="the running uascall's control "
                          f"socket (default {default_path()})")
    channels.add_argument("--offline", action="store_true", help="do not ask a running "
                          "uascall: what the kernel shows (sysfs, /proc/dahdi)")
    channels.add_argument("--json", action="store_true", help="the listing as one JSON "
                          "object (the control socket's answer)")
    _add_backend_options(channels, "channels", list(known_backends()))
    channels.set_defaults(func=_channels)

    monitor = commands.add_parser(
        "monitor", help="a live view of a running uascall: calls with state, duration, "
        "levels and keys, spans with alarms, counters (q or Ctrl-C ends it)")
    monitor.add_argument("--control", metavar="PATH", help="the running uascall's control "
                         f"socket (default {default_path()})")
    monitor.add_argument("--interval", type=float, default=0.25, metavar="SECONDS",
                         help="seconds between refreshes (default %(default)s)")
    monitor.add_argument("--once", action="store_true", help="print one screen and end "
                         "(status 1 when no uascall answers)")
    monitor.set_defaults(func=_monitor)

    add_ladder_command(commands)

    selftest = commands.add_parser(
        "selftest", help="an installer's line check: a DAHDI analog port and the voice "
        "modem on its line ring, answer, hear tones and keys both ways and hang up, "
        "each step PASS or FAIL")
    selftest.add_argument("--port", type=int, required=True, metavar="CHANNEL",
                          help="the DAHDI channel of the FXS or FXO port")
    selftest.add_argument("--modem", required=True, metavar="DEV",
                          help="the voice modem on the port's line (its serial device)")
    selftest.add_argument("--number", default="", help="FXO ports: the number the modem "
                          "dials to reach the port's line")
    selftest.add_argument("--system-conf", default="/etc/dahdi/system.conf",
                          metavar="PATH", help="the spans' configuration (default "
                          "%(default)s)")
    selftest.add_argument("--patience", type=float, default=10.0, metavar="SECONDS",
                          help="how long each step may take (default %(default)s)")
    selftest.set_defaults(func=_selftest)
    return parser


def _selftest(args: argparse.Namespace) -> int:
    from uascall.modem.selftest import selftest_command  # the dahdi and modem backends

    return selftest_command(args.port, args.modem, number=args.number,
                            system_conf=args.system_conf, patience=args.patience)


def _seconds_or_zero(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds, 0 or more")
    return seconds


def _add_host_options(command: argparse.ArgumentParser, command_name: str) -> None:
    """The options ``run`` and ``call`` share: the application's, and each backend's in a
    group of its own."""
    known = known_backends()
    command.add_argument("--backend", action="append", metavar="NAME",
                         help=f"{', '.join(known)} (default sim); repeat it (or give a "
                         "comma list, sim,sip) for a host over several: calls in from all, "
                         "calls out by destination (sip: URIs to sip, numbers to dahdi or "
                         "sim)")
    command.add_argument("--param", default="", help="application_parameters for main()")
    command.add_argument("--media-dir", help="the application's media files (default: "
                         "media/ beside it, or its own folder)")
    command.add_argument("--records", metavar="FILE", help="SQLite file for call records")
    command.add_argument("--voice", help="espeak-ng voice for text_to_say")
    command.add_argument("--extra-channels", type=int, default=MAX_EXTRA_CHANNELS,
                         choices=range(MAX_EXTRA_CHANNELS + 1), metavar="N",
                         help="extra channels each application instance may use, "
                         "channel.ExtraChannel[0..N-1] (0 to 3, default %(default)s)")
    command.add_argument("--route", help="where the host's outbound channels place calls, "
                         "in the backend's terms: pri, pri:SPAN, fxs, fxs:CHANNEL, fxo... "
                         "on dahdi and sim, host:port on sip (default: the backend's choice)")
    command.add_argument("--shutdown-timeout", type=float, default=10.0, metavar="SECONDS",
                         help="on Ctrl-C, how long the applications get to return after "
                         "their calls are hung up; run on SIGTERM first takes no new calls "
                         "(SIP: 503, to a proxy's OPTIONS probes too) and gives the calls up "
                         "this long to end before it hangs them up, as it does on either "
                         "signal while the simulator places --calls (default %(default)s)")
    command.add_argument("--virtual", action="store_true",
                         help="run in virtual time, as fast as the CPU allows (backends "
                         "with nothing real under them only: sim)")
    command.add_argument("--realtime", action="store_true",
                         help="run the engine thread (every call's signalling and 20 ms "
                         "media) at SCHED_FIFO, ahead of ordinary processes (root or "
                         "CAP_SYS_NICE); application threads stay ordinary")
    command.add_argument("--realtime-priority", type=_realtime_priority, metavar="N",
                         help=f"--realtime at priority N, 1 to 99 (default "
                         f"{REALTIME_PRIORITY}, as asterisk -p)")
    command.add_argument("--control", metavar="PATH",
                         help="the control socket that `uascall channels` and `uascall "
                         f"monitor` read (default {default_path()}; none: no socket)")
    _add_backend_options(command, command_name, list(known))
    command.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus "
                         "metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9464)")
    command.add_argument("--levels", action="store_true",
                         help="measure each B-channel's audio level in and out for `uascall "
                         "monitor` (taps the devices: some CPU per channel)")
    add_trace_options(command)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if getattr(args, "workers", 1) > 1:
            from uascall.workers import supervise
            priority = _realtime(args)
            if priority is not None:  # refused, every worker would be, for ever
                check_realtime(priority)
            return supervise(list(sys.argv[1:] if argv is None else argv), args.workers)
        return args.func(args)
    except UascallError as exc:
        print(f"uascall: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the output went to a pager or head that stopped reading
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
