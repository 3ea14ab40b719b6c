"""Full PRI calls per second through the span driver on the simulated loop.

Each call is complete Q.931 signalling between two PriSpans running the real
uascall.dahdi code over the simulated kernel: the exchange (libpri NETWORK) sends SETUP,
we answer CALL PROCEEDING, ALERTING, CONNECT; CONNECT ACKNOWLEDGE; the exchange clears
(DISCONNECT, RELEASE, RELEASE COMPLETE). A call counts when both sides have freed it.
Everything runs in one process on one engine thread, in virtual time: the simulated
D-channel carries 64 kbit/s on the engine's clock, so calls per second of engine time are
what the line allows (a real 64 kbit/s D-channel carries about 60 call setups per second
per span), and calls per second of wall-clock time what one core of Python + libpri + the
simulator sustains, the binding's cost (libpri's own timers run on the wall clock, but
none expires in a busy run).

    python bench/pri_calls.py [--calls 5000] [--in-flight 1,10,30] [--kind E1|T1]

Last line: ``RESULT pri_calls_per_s=<n> pri_calls_per_line_s=<n>`` (the best of the
in-flight settings: per wall-clock second, and per second of the line's time).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import platform
import time

from uascall.dahdi.pri import CallCleared, CallConnected, PriCall
from uascall.engine import Engine, VirtualClock
from uascall.sim.farend import PriLoop


def run(loop: PriLoop, engine: Engine, calls: int,
        in_flight: int) -> tuple[float, float, float]:
    """Place ``calls`` calls with ``in_flight`` at a time; return (wall s, CPU s, engine s)."""
    done: concurrent.futures.Future = concurrent.futures.Future()
    state = {"placed": 0, "finished": 0, "failed": 0}

    def on_incoming(call: PriCall) -> None:
        call.alerting(False)
        call.answer()

    def on_far_event(call: PriCall, event: object) -> None:
        if isinstance(event, CallConnected):
            call.hangup(16)
        elif isinstance(event, CallCleared):
            # The exchange has its RELEASE and sends RELEASE COMPLETE: the call is done.
            state["finished"] += 1
            state["failed"] += event.cause != 16
            place_more()
            if state["finished"] == calls:
                done.set_result(None)

    def place_more() -> None:
        while state["placed"] < calls and state["placed"] - state["finished"] < in_flight:
            state["placed"] += 1
            call = loop.net.call("5551000", calling="5552000")
            call.listeners.append(on_far_event)

    loop.cpe.on_incoming = on_incoming
    cpu0, t0, engine0 = time.process_time(), time.perf_counter(), engine.time()
    engine.run(place_more)
    engine.wait(done, 60 + calls / 10)  # engine time: the line carries about 60 calls/s
    if not engine.wait_until(lambda: not loop.cpe.calls and not loop.net.calls, 5):
        raise SystemExit("calls were left behind on the spans")
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if state["failed"]:
        raise SystemExit(f"{state['failed']} calls were not cleared normally")
    return wall, cpu, engine.time() - engine0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--in-flight", default="1,10,30")
    parser.add_argument("--kind", choices=("E1", "T1"), default="E1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"# {platform.machine()}, Python {platform.python_version()}, {args.calls} calls "
          f"per setting, {args.kind} loop (in flight is capped at its B-channel count)")
    best = best_line = 0.0
    with Engine(VirtualClock()) as engine, engine.actor():
        loop = PriLoop.create(engine, args.kind)
        if not engine.wait_until(lambda: loop.up, 5):
            raise SystemExit("the simulated D-channels did not come up")
        run(loop, engine, 200, 10)  # warm-up
        channels = len(loop.cpe.layout.bchannels)
        for in_flight in sorted({min(int(n), channels) for n in args.in_flight.split(",")}):
            wall, cpu, line = run(loop, engine, args.calls, in_flight)
            rate, line_rate = args.calls / wall, args.calls / line
            best, best_line = max(best, rate), max(best_line, line_rate)
            print(f"in flight {in_flight:3d}: {rate:8.0f} calls/s  "
                  f"({1e3 * wall / args.calls:.3f} ms/call, CPU {100 * cpu / wall:.0f} %); "
                  f"the line: {line_rate:.0f} calls/s")
    print(f"RESULT pri_calls_per_s={best:.0f} pri_calls_per_line_s={best_line:.0f}")


if __name__ == "__main__":
    main()
