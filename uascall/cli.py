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
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from uascall import __version__
from uascall.app import INBOUND, OUTBOUND, AppHost, Application, ApplicationError, CallRecord
from uascall.backend import Backend, open_backend
from uascall.callgen import CallGenerator, Progress
from uascall.channel import (
    ChannelEvent,
    DigitReceived,
    MediaEnded,
    MediaStarted,
    State,
    UASCallChannel,
)
from uascall.dahdi import q931
from uascall.dahdi.analog import AnalogSettings
from uascall.engine import Engine, VirtualClock
from uascall.errors import UascallError
from uascall.extra import MAX_EXTRA_CHANNELS
from uascall.media import wav
from uascall.routing import RoutingBackend
from uascall.sim.backend import SimBackend
from uascall.sim.caller import CallerScript
from uascall.sim.farend import FarEndCall
from uascall.sip.transport import LOOPBACK

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
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


def _sim_calls(host: AppHost, backend: SimBackend, args: argparse.Namespace,
               ladder: q931.Ladder | None = None) -> list[FarEndCall]:
    """Let the simulated exchange place the calls and wait until every one has cleared;
    with ``ladder``, draw on it the Q.931 messages and what the application plays and
    hears between them."""
    engine = host.engine
    script = args.caller if args.caller is not None else host.application.sim_caller
    if script:
        law = "alaw" if backend.kind == "E1" else "ulaw"
        # a voice of its own, so that its message played back is told from the prompts
        rendered = CallerScript.parse(script).render(law, voice="en+f2")
    if not engine.wait_until(lambda: backend.up, 10):
        raise UascallError("the simulated D-channels did not come up")
    start = engine.time()
    if ladder is not None:
        def trace(direction: str, frame: bytes) -> None:
            try:
                item = q931.LapdFrame.parse(frame)
            except q931.Q931DecodeError as exc:
                log.warning("undecodable D-channel frame %s: %s", frame.hex(), exc)
                return
            ladder.add(engine.time() - start, "->" if direction == "tx" else "<-", item)
        assert backend.loop is not None
        backend.loop.cpe.frame_listeners.append(trace)

        def annotate(channel: UASCallChannel, event: ChannelEvent) -> None:
            at = engine.time() - start
            if isinstance(event, MediaStarted):
                where = "in band" if channel.state() is not State.ANSWERED else "on the call"
                ladder.note(at, f"~ {where}: {event.what} ~")
            elif isinstance(event, DigitReceived):
                ladder.note(at, f"~ heard in band: key {event.digit} ~")
            elif isinstance(event, MediaEnded) and event.reason == "bargein":
                ladder.note(at, f"~ barge-in: {event.what} stopped ~")

        host.on_channel = lambda channel: channel.listeners.append(annotate)
    calls = []
    assert backend.far_end is not None
    if script:
        backend.far_end.script = rendered
    for n in range(args.calls):
        calls.append(engine.run(backend.far_end.dial, args.called, calling=args.calling,
                                calling_name=args.calling_name))
        if n + 1 < args.calls and args.interval:
            engine.sleep(args.interval)
    if not engine.wait_until(lambda: all(c.cleared for c in calls), args.timeout):
        raise UascallError(f"the calls did not end within {args.timeout} s")
    host.join(10)
    engine.sleep(0.05)  # let the last RELEASE COMPLETE cross, for the ladder
    return calls


def _write_heard(call: FarEndCall, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    wav.write_wav(path, call.heard_pcm(), 8000, call.law)


def _demo(args: argparse.Namespace) -> int:
    kind = "E1" if args.law == "alaw" else "T1"
    app = Application.load(args.app or _example("early_media.py"))
    args.calls, args.interval, args.timeout = 1, 0.0, 120.0
    args.calling_name = "Demo Caller"
    flavour = "EuroISDN, A-law" if kind == "E1" else "NI2, mu-law"
    print(f"uascall {__version__} demo: {app.path.name} answers a call from a real libpri "
          f"exchange on a simulated {kind} span ({flavour})\n")
    ladder = q931.Ladder("uascall (CPE)", "exchange (NET)", show_layer2=args.layer2,
                         span=80, brief=False)
    with _engine(args) as engine:
        backend = SimBackend(engine, kind=kind)
        host = AppHost(engine, backend, app, application_parameters=args.param)
        engine.run(host.start)
        calls = _sim_calls(host, backend, args, ladder)
    print(ladder.render())
    failed = _print_results(host)
    heard = calls[0]
    _write_heard(heard, Path(args.wav))
    seconds = len(heard.heard) / 8000
    print(f"what the caller heard ({seconds:.1f} s, {heard.law}): {args.wav}")
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
    if name == "sim":
        return {"kind": "E1" if args.law == "alaw" else "T1",
                "listen_early": args.listen_early}
    if name == "dahdi":
        return {"system_conf": args.system_conf, "spans": args.span or None,
                "listen_early": args.listen_early,
                "node": args.node, "switch": args.switch, "ports": args.port or None,
                "analog": AnalogSettings(
                    callerid=None if args.callerid == "none" else args.callerid,
                    zone=args.zone, ring_timeout=args.ring_timeout, dialing=args.dialing,
                    answer_supervision=args.answer_supervision,
                    dial_tone_timeout=args.dial_tone_timeout)}
    if name == "sip":
        # a call generator needs no well-known port: any free one will do
        listen = args.listen or ["127.0.0.1:5060" if args.command == "run" else "127.0.0.1:0"]
        return {"listen": listen, "allow": args.allow or list(LOOPBACK),
                "codecs": args.codecs, "rtp_timeout": args.rtp_timeout,
                "outbound": args.outbound}
    return {}


def _open_backends(engine: Engine, args: argparse.Namespace
                   ) -> tuple[Backend, SimBackend | None]:
    """The backend (a RoutingBackend over several), and the simulator among them, whose
    exchange ``uascall run`` lets place calls."""
    names = _backend_names(args)
    if args.virtual and names != ["sim"]:
        raise UascallError("--virtual needs --backend sim alone: real boards and SIP keep "
                           "real time")
    backends = [open_backend(name, engine, **_backend_options(name, args)) for name in names]
    sim = backends[names.index("sim")] if "sim" in names else None
    assert sim is None or isinstance(sim, SimBackend)
    if len(backends) == 1:
        return backends[0], sim
    return RoutingBackend(engine, backends), sim


def _host(engine: Engine, backend: Backend, app: Application,
          args: argparse.Namespace) -> AppHost:
    return AppHost(engine, backend, app, application_parameters=args.param,
                   media_dir=args.media_dir, records=args.records, tts_voice=args.voice,
                   extra_channels=args.extra_channels, route=args.route)


def _run(args: argparse.Namespace) -> int:
    app = _load(args.app, "run")
    with _engine(args) as engine:
        backend, sim = _open_backends(engine, args)
        host = _host(engine, backend, app, args)
        if sim is not None:
            # the simulated exchange's calls, with whatever else serves beside it
            engine.run(host.start)
            ladder = None
            if args.ladder:
                ladder = q931.Ladder("uascall (CPE)", "exchange (NET)", span=80, brief=False)
            calls = _sim_calls(host, sim, args, ladder)
            engine.run(host.stop)
            if ladder is not None:
                print(ladder.render())
            if args.wav_dir:
                for n, call in enumerate(calls, 1):
                    _write_heard(call, Path(args.wav_dir) / f"call{n}.wav")
        else:
            with _until_interrupted() as stopped:
                engine.run(host.start)
                # What start-up made (modules, the backend, the application) lives as long
                # as the server: out of the collector's sight, so that its full passes,
                # which stop every thread, scan only what calls leave behind.
                gc.collect()
                gc.freeze()
                log.info("serving calls; stop with Ctrl-C")
                while not stopped.wait(1.0):
                    pass
                print("uascall: stopping; hanging up the calls still up", file=sys.stderr)
                if not host.shutdown(args.shutdown_timeout):
                    print("uascall: some applications had not returned; recorded with "
                          "return code -9", file=sys.stderr)
        return _print_results(host)


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
    with _engine(args) as engine:
        backend, _sim = _open_backends(engine, args)
        host = _host(engine, backend, app, args)
        generator = CallGenerator(host, args.to, calls=args.calls, rate=args.rate,
                                  concurrent=args.concurrent,
                                  progress=progress if interval > 0 else None,
                                  progress_interval=interval if interval > 0 else 1.0)
        with _until_interrupted() as stopped:
            engine.run(host.start, take_calls=False)
            # a simulated span's first call waits for its D-channel, as the exchange's do
            simulated = [b for b in getattr(backend, "backends", [backend])
                         if isinstance(b, SimBackend)]
            if not engine.wait_until(lambda: all(b.up for b in simulated), 10):
                raise UascallError("the simulated D-channels did not come up")
            try:
                summary = generator.run(stopped, shutdown_timeout=args.shutdown_timeout)
            finally:
                progress.close()
        if not summary.interrupted:
            engine.run(host.stop)
    print(summary.render())
    return 1 if summary.failures else 0


@contextlib.contextmanager
def _engine(args: argparse.Namespace) -> Iterator[Engine]:
    """The engine, in virtual time with --virtual (this thread an actor, so that time waits
    for it)."""
    with Engine(VirtualClock() if args.virtual else None) as engine:
        with engine.actor() if args.virtual else contextlib.nullcontext():
            yield engine


@contextlib.contextmanager
def _until_interrupted() -> Iterator[threading.Event]:
    """An event set by the first SIGINT or SIGTERM; a second one ends the process at once
    (the shutdown is then cut short). The previous handlers come back afterwards."""
    stopped = threading.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in signals}

    def first(signum: int, frame: object) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uascall", description="uascall: UAS-style "
                                     "telephony channels over DAHDI, SIP and a simulator")
    parser.add_argument("--version", action="version", version=f"uascall {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v info, -vv debug)")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="an early-media call on the simulator: the Q.931 "
                               "ladder, and what the caller heard in a WAV file")
    demo.add_argument("--law", choices=("alaw", "ulaw"), default="alaw",
                      help="alaw: an E1 span with EuroISDN; ulaw: a T1 span with NI2")
    demo.add_argument("--wav", default="demo-out/caller.wav", metavar="PATH",
                      help="where to write what the caller heard (default %(default)s)")
    demo.add_argument("--layer2", action="store_true",
                      help="show Q.921 frames (SABME, UA, RR) in the ladder too")
    demo.add_argument("--app", help="another application than examples/early_media.py")
    demo.add_argument("--param", default="", help="application_parameters for main()")
    demo.add_argument("--caller", metavar="SCRIPT", help="what the caller does once "
                      "answered: 'wait 2; press 1; say Hello; hangup' (default: the "
                      "application's __uas_sim_caller__, else nothing)")
    demo.add_argument("--called", default="5551000")
    demo.add_argument("--calling", default="5552000")
    demo.add_argument("--virtual", action="store_true", help="run in virtual time, as fast "
                      "as the CPU allows (timestamps are still those of the call)")
    demo.set_defaults(func=_demo)

    run = commands.add_parser("run", help="serve a UAS-style (inbound) application")
    run.add_argument("app", help="the application file (with main(channel, ...))")
    groups = _add_host_options(run)
    sim = groups["sim"]
    sim.add_argument("--calls", type=int, default=1, help="calls the exchange places")
    sim.add_argument("--interval", type=float, default=0.0, help="seconds between calls")
    sim.add_argument("--timeout", type=float, default=600.0, help="give up after this long")
    sim.add_argument("--called", default="5551000")
    sim.add_argument("--calling", default="5552000")
    sim.add_argument("--calling-name", default="")
    sim.add_argument("--wav-dir", help="write what each caller heard here (callN.wav)")
    sim.add_argument("--caller", metavar="SCRIPT", help="what each caller does once "
                     "answered: 'wait 2; press 1; say Hello; hangup' (default: the "
                     "application's __uas_sim_caller__, else nothing)")
    sim.add_argument("--ladder", action="store_true",
                     help="print the Q.931 ladder with what was played and heard")
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
    _add_host_options(call)
    call.set_defaults(func=_call)
    return parser


def _add_host_options(command: argparse.ArgumentParser
                      ) -> dict[str, argparse._ArgumentGroup]:
    """The options ``run`` and ``call`` share: the application's, and each backend's in a
    group of its own (returned by name, for a command's own additions)."""
    command.add_argument("--backend", action="append", metavar="NAME",
                         help="sim (default), dahdi or sip; repeat it (or give a comma "
                         "list, sim,sip) for a host over several: calls in from all, calls "
                         "out by destination (sip: URIs to sip, numbers to dahdi or sim)")
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
                         "their calls are hung up (default %(default)s)")
    sim = command.add_argument_group("sim backend")
    sim.add_argument("--law", choices=("alaw", "ulaw"), default="alaw")
    sim.add_argument("--virtual", action="store_true",
                     help="run in virtual time, as fast as the CPU allows")
    dahdi = command.add_argument_group("dahdi backend")
    dahdi.add_argument("--system-conf", default="/etc/dahdi/system.conf")
    dahdi.add_argument("--span", type=int, action="append", help="a span to serve "
                       "(repeatable; default: every span with a dchan=)")
    dahdi.add_argument("--node", default="cpe", help="cpe (default) or net")
    dahdi.add_argument("--listen-early", action="store_true",
                       help="PRI (and sim): hear the caller during early media too (keys "
                       "before the answer), where the network connects that side early")
    dahdi.add_argument("--switch", default="euroisdn_e1",
                       help="euroisdn_e1 (default), euroisdn_t1, ni2, ni1, dms100, 5ess, "
                       "4ess, qsig")
    dahdi.add_argument("--port", type=int, action="append", metavar="CHANNEL",
                       help="an analog port to serve (repeatable; default: every fxsks "
                       "and fxoks channel)")
    dahdi.add_argument("--callerid", choices=("bell", "etsi", "none"), default="bell",
                       help="caller ID FSK on analog ports: bell (Bell 202, default), "
                       "etsi (V.23) or none")
    dahdi.add_argument("--zone", default="us", help="tone zone for analog ports' dial tone "
                       "and ringback (us, uk, de, nl...; default us)")
    dahdi.add_argument("--ring-timeout", type=float, default=8.0, metavar="SECONDS",
                       help="an unanswered call on an FXO port has ended this long after "
                       "its last ring (default %(default)s)")
    dahdi.add_argument("--dialing", choices=("dtmf", "pulse"), default="dtmf",
                       help="how calls out of FXO ports dial: dtmf (default) or pulse "
                       "(loop breaks, 10 a second)")
    dahdi.add_argument("--answer-supervision", choices=("none", "polarity"), default="none",
                       help="how an FXO call out knows it is answered: none (default: "
                       "answered once dialled) or polarity (the line's reversal)")
    dahdi.add_argument("--dial-tone-timeout", type=float, default=5.0, metavar="SECONDS",
                       help="an FXO line without dial tone this long after going off hook "
                       "is dead (default %(default)s)")
    sip = command.add_argument_group("sip backend")
    sip.add_argument("--listen", action="append", metavar="HOST:PORT",
                     help="where to receive SIP over UDP (repeatable, e.g. 127.0.0.1:5080 and "
                     "[::1]:5080; default 127.0.0.1:5060 for run, any free port for call)")
    sip.add_argument("--allow", action="append", metavar="NETWORK",
                     help="accept SIP and RTP from this network (repeatable, e.g. "
                     "192.0.2.0/24; default loopback only)")
    sip.add_argument("--codecs", default="g711a;g711u",
                     help="codec priority (default %(default)s)")
    sip.add_argument("--rtp-timeout", type=float, default=60.0, metavar="SECONDS",
                     help="end an answered call after this long without RTP from the far "
                     "end (default %(default)s; 0: never)")
    sip.add_argument("--outbound", metavar="HOST:PORT",
                     help="where outgoing calls to bare numbers go")
    return {"sim": sim, "dahdi": dahdi, "sip": sip}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except UascallError as exc:
        print(f"uascall: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the output went to a pager or head that stopped reading
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
