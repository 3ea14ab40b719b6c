"""The ``uascall`` command.

``uascall demo`` is the main job: a simulated PRI span pair, a real libpri exchange that
calls us, and our span answering it, with the Q.931 exchange printed as a ladder.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence

from uascall import __version__
from uascall.dahdi import abi, libpri, q931
from uascall.dahdi.pri import CallCleared, CallConnected, CallState, PriCall
from uascall.engine import Engine
from uascall.errors import UascallError
from uascall.sim.farend import PriLoop

log = logging.getLogger(__name__)


def _demo(args: argparse.Namespace) -> int:
    kind = "E1" if args.law == "alaw" else "T1"
    out = sys.stdout
    with Engine() as engine:
        loop = PriLoop.create(engine, kind)
        if not engine.wait_until(lambda: loop.up, 5):
            print("uascall demo: the simulated D-channels did not come up", file=sys.stderr)
            return 1
        switch = loop.cpe.switch.name
        print(f"uascall {__version__} demo: a simulated {kind} PRI span ({switch}, "
              f"{args.law}); a real libpri exchange (NETWORK) calls our span (CPE)\n", file=out)
        start = engine.time()
        ladder = q931.Ladder("uascall (CPE)", "exchange (NET)", show_layer2=args.layer2,
                             span=80, brief=False)
        finished = threading.Event()
        ours: list[PriCall] = []

        def trace(direction: str, frame: bytes) -> None:
            try:
                item = q931.LapdFrame.parse(frame)
            except q931.Q931DecodeError as exc:
                log.warning("undecodable D-channel frame %s: %s", frame.hex(), exc)
                return
            ladder.add(engine.time() - start, "->" if direction == "tx" else "<-", item)

        def on_incoming(call: PriCall) -> None:
            ours.append(call)
            call.listeners.append(on_our_event)
            # Early media: ALERTING with progress indicator #8, the B-channel open for audio.
            call.alerting(inband=True)
            call.open_media()
            engine.call_later(args.ring, call.answer)

        def on_our_event(call: PriCall, event: object) -> None:
            if isinstance(event, CallConnected):
                engine.call_later(args.talk, far.hangup, libpri.PRI_CAUSE_NORMAL_CLEARING)
            elif isinstance(event, CallCleared):
                engine.call_later(0.05, finished.set)  # let RELEASE COMPLETE cross too

        loop.cpe.frame_listeners.append(trace)
        loop.cpe.on_incoming = on_incoming
        far = engine.run(loop.net.call, args.called, calling=args.calling,
                         calling_name="Demo Caller")
        if not finished.wait(args.ring + args.talk + 10):
            print("uascall demo: the call did not complete", file=sys.stderr)
            return 1
        print(ladder.render(), file=out)
        call = ours[0]
        print(f"call: {call.calling} -> {call.called} on B-channel {call.chanpos} "
              f"(DAHDI channel {call.channo}), {call.law}", file=out)
        print(f"cleared by the {'exchange' if call.cleared_by == 'remote' else call.cleared_by}"
              f": cause {call.cause} ({libpri.cause_text(call.cause or 0)})", file=out)
        stats = loop.kernel.stats(loop.cpe.layout.dchannel)
        print(f"D-channel frames: {stats.frames_sent} sent, {stats.frames_received} received; "
              f"span alarms: {abi.alarm_names(loop.cpe.alarms) or 'none'}", file=out)
        ok = call.state is CallState.CLEARED and call.cause == libpri.PRI_CAUSE_NORMAL_CLEARING
        return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uascall", description="uascall: UAS-style "
                                     "telephony channels over DAHDI, SIP and a simulator")
    parser.add_argument("--version", action="version", version=f"uascall {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more (-v info, -vv debug)")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="a PRI call on the simulator, with its Q.931 "
                               "exchange printed as a ladder")
    demo.add_argument("--law", choices=("alaw", "ulaw"), default="alaw",
                      help="alaw: an E1 span with EuroISDN; ulaw: a T1 span with NI2")
    demo.add_argument("--called", default="5551000", help="the number the exchange dials")
    demo.add_argument("--calling", default="5552000", help="the caller's number")
    demo.add_argument("--ring", type=float, default=1.0, metavar="SECONDS",
                      help="how long we ring before answering")
    demo.add_argument("--talk", type=float, default=1.0, metavar="SECONDS",
                      help="how long the call lasts before the exchange clears it")
    demo.add_argument("--layer2", action="store_true",
                      help="show Q.921 frames (SABME, UA, RR) in the ladder too")
    demo.set_defaults(func=_demo)
    return parser


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
