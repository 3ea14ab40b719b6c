"""Random and malformed D-channel frames during real PRI calls: the spans must stay up,
clear what garbage broke, go quiet afterwards and take calls again.

The line is the simulated E1 (or T1) loop of ``uascall.sim``: two real
:class:`~uascall.dahdi.pri.PriSpan` instances, ours (libpri CPE) and the exchange
(libpri NETWORK), over the simulated kernel, whose D-channel carries 64 kbit/s on the
engine's (wall) clock. For ``--seconds`` (60) at once:

- **calls** both ways, ``--in-flight`` (10) at a time: each is answered (ALERTING,
  CONNECT), held 50-500 ms and cleared by whichever side placed it; a caller that has no
  answer in 5 s gives up and hangs up, as a real one would; a call a span refuses at
  once (its D-channel down, no channel free) is an attempt, counted apart, and tried
  again 100 ms later;
- the **fuzzer** puts ``--rate`` (100) frames a second onto the line, half towards each
  side: random octets; frames seen on the wire (real SETUP, CONNECT, RELEASE, RR...) with
  one to three mutations (octets flipped, cut short, extended, an IE duplicated, an IE
  length wrong, the call reference, message type or protocol discriminator replaced);
  well-formed LAPD carrying a random Q.931 message (any message type, a live call's
  reference or a random one, random IEs); and every Q.921 control frame (SABME, DISC, DM,
  UA, FRMR, XID, RR/RNR/REJ, I frames with random N(S)/N(R)) with random SAPI, TEI and
  C/R bits;
- the **wire** itself mutates ``--mangle`` (2 %) of the real frames it carries the same
  ways, so garbage also stands where a call's own message should have been.

Then the fuzzer stops, every call still up is cleared by its owner, and the run checks:
that no call is left on either span once the spans' clearing bound has passed (T305 +
2 x T308 + a layer 2 re-establishment, 42 s with libpri's timers, then 5 s more: a call
whose DISCONNECT the garbage took may need all of it; ``q931_fuzz_stuck_calls``); that
the line goes quiet (``q931_fuzz_idle_frames_per_s`` over ``--idle`` seconds: only
Q.921's own keep-alive, RR every T203 = 10 s, belongs there; a storm of echoes does not);
that
``--calls`` (20) calls made afterwards, both ways, all connect and clear normally
(``q931_fuzz_calls_ok``); and that the engine's guard caught nothing and no traceback was
logged (``q931_fuzz_engine_errors``: each one a defect to fix). ERROR lines that are not
tracebacks (libpri refusing an operation on a call the garbage had already cleared) are
counted apart. Frame ``i`` is the same on every run of a seed.

    python bench/fuzz_q931.py [--seconds 60] [--rate 100] [--mangle 0.02] [--seed 1]
                              [--in-flight 10] [--calls 20] [--idle 10] [--kind E1|T1]
                              [--smoke]

``--smoke`` fuzzes for 3 s, makes 4 calls after and watches 2 s of idle, with T305 = 2 s
and T308 = 1 s so that its clearing bound is 8 s. Last line:
``RESULT q931_fuzz_frames=<n> q931_fuzz_engine_errors=<n> q931_fuzz_calls_during=<ok>/<n>
q931_fuzz_calls_ok=<ok>/<n> q931_fuzz_stuck_calls=<n> q931_fuzz_idle_frames_per_s=<x>
q931_fuzz_idle_cpu_pct=<x>``. The exit status is 1 when an engine error, a stuck call, a
failed call after the fuzzing or a busy idle line was found.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import errno
import logging
import platform
import random
import sys
import time
from collections.abc import Callable

from uascall.dahdi import q931
from uascall.dahdi.pri import CallCleared, CallConnected, PriCall, PriSpan
from uascall.engine import Engine
from uascall.sim.farend import PriLoop
from uascall.sim.model import FrameRecord

NORMAL_CLEARING = 16
#: a caller with no answer after this long hangs up
GIVE_UP_AFTER = 5.0
#: the wait for every call to be cleared once the fuzzing stops, beyond the spans'
#: clearing bound (PriSpan.clearing_bound)
SETTLE_MARGIN = 5.0
#: --smoke's Q.931 clearing timers (ms): short, so that a lost DISCONNECT costs seconds
SMOKE_TIMERS = {"T305": 2000, "T308": 1000}
#: what an idle line may carry: Q.921's RR every T203 (10 s) each way, with margin
IDLE_FRAMES_PER_S_LIMIT = 2.0
#: the fuzzer's sending tick (seconds)
TICK = 0.01
#: real frames kept as seeds for mutation
SEEDS_KEPT = 200
IE_IDENTIFIERS = (0x04, 0x08, 0x18, 0x1C, 0x1E, 0x27, 0x28, 0x29, 0x2C, 0x34, 0x4C, 0x6C,
                  0x6D, 0x70, 0x71, 0x79, 0x7C, 0x7D, 0x7E, 0xA1, 0x96, 0x9F)
CONTROL_KINDS = tuple(q931.FrameKind)


# ------------------------------------------------------------------------ frames to send
class Fuzzer:
    """Makes the frames: random, mutated real ones, random Q.931 in good LAPD, and Q.921
    control frames. Only :meth:`frame` and :meth:`mangle` use the random generator, so a
    seed gives the same sequence of choices (the real frames it mutates depend on
    timing)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seen: collections.deque[bytes] = collections.deque(maxlen=SEEDS_KEPT)
        self.call_refs: collections.deque[int] = collections.deque(maxlen=32)
        self.kinds: collections.Counter[str] = collections.Counter()

    def observe(self, frame: bytes) -> None:
        """A real frame crossed the line: keep it as a seed, and its call reference."""
        self.seen.append(frame)
        try:
            message = q931.LapdFrame.parse(frame).q931()
        except q931.Q931DecodeError:
            return
        # a mangled frame may carry a longer call reference than PRI's two octets: only
        # the ones a random message of ours can carry are kept
        if message is not None and 0 < message.call_reference < 0x8000:
            self.call_refs.append(message.call_reference)

    def frame(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.2 or not self.seen:
            self.kinds["random"] += 1
            return rng.randbytes(rng.randint(1, 60))
        if roll < 0.55:
            self.kinds["mutated"] += 1
            return self.mutate(rng.choice(self.seen))
        if roll < 0.8:
            self.kinds["random-q931"] += 1
            return self.random_q931()
        self.kinds["q921-control"] += 1
        return self.random_control()

    def mangle(self, frame: bytes) -> bytes:
        """A real frame on its way, mutated."""
        return self.mutate(frame)

    def mutate(self, frame: bytes) -> bytes:
        rng = self.rng
        data = bytearray(frame)
        for _ in range(rng.randint(1, 3)):
            how = rng.randrange(9)
            if how == 0 and data:                                   # octets flipped
                for _ in range(rng.randint(1, 4)):
                    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            elif how == 1 and len(data) > 1:                        # cut short
                del data[rng.randrange(1, len(data)):]
            elif how == 2:                                          # extended
                data += rng.randbytes(rng.randint(1, 40))
            elif how == 3 and len(data) > 10:                       # an IE duplicated
                start = rng.randrange(9, len(data))
                piece = data[start:start + rng.randint(2, 12)]
                data[start:start] = piece * rng.randint(1, 20)
            elif how == 4 and len(data) > 10:                       # an IE length wrong
                data[rng.randrange(10, len(data))] = rng.choice((0, 1, 0x7F, 0xFF,
                                                                 rng.randrange(256)))
            elif how == 5 and len(data) > 7:                        # call reference
                data[5:7] = rng.randbytes(2)
            elif how == 6 and len(data) > 7:                        # message type
                data[7] = rng.randrange(256)
            elif how == 7 and len(data) > 4:                        # protocol discriminator
                data[4] = rng.choice((0x03, 0x43, 0x00, 0x09, 0x40, rng.randrange(256)))
            elif how == 8 and len(data) > 5:                        # call reference length
                data[5] = rng.choice((0, 1, 3, 15, 0x12, rng.randrange(256)))
        return bytes(data[:300])

    def random_q931(self) -> bytes:
        rng = self.rng
        ies = []
        for _ in range(rng.randint(0, 8)):
            identifier = rng.choice((*IE_IDENTIFIERS, rng.randrange(256)))
            if identifier & 0x80:
                ies.append(bytes([identifier]))
            else:
                body = rng.randbytes(rng.randint(0, 20))
                ies.append(bytes([identifier, len(body)]) + body)
        if self.call_refs and rng.random() < 0.6:
            ref = rng.choice(self.call_refs)
        else:
            ref = rng.randrange(0x8000)
        flag = rng.randrange(2) << 15
        message_type = rng.choice((*q931.MessageType, rng.randrange(256)))
        info = bytes([q931.Q931_PD, 2]) + (ref | flag).to_bytes(2, "big") \
            + bytes([int(message_type)]) + b"".join(ies)
        kind = rng.choice((q931.FrameKind.I, q931.FrameKind.UI))
        return q931.LapdFrame(kind=kind, sapi=0, tei=0, cr=rng.randrange(2),
                              n_s=rng.randrange(128) if kind is q931.FrameKind.I else None,
                              n_r=rng.randrange(128) if kind is q931.FrameKind.I else None,
                              pf=rng.random() < 0.2, info=info).serialize()

    def random_control(self) -> bytes:
        rng = self.rng
        kind = rng.choice(CONTROL_KINDS)
        numbered = kind is q931.FrameKind.I or kind in (q931.FrameKind.RR, q931.FrameKind.RNR,
                                                         q931.FrameKind.REJ)
        info = b""
        if kind in (q931.FrameKind.I, q931.FrameKind.UI, q931.FrameKind.FRMR,
                    q931.FrameKind.XID):
            info = rng.randbytes(rng.randint(0, 12))
        return q931.LapdFrame(kind=kind, sapi=rng.choice((0, 0, 0, 63, rng.randrange(64))),
                              tei=rng.choice((0, 0, 0, 127, rng.randrange(128))),
                              cr=rng.randrange(2),
                              n_s=rng.randrange(128) if kind is q931.FrameKind.I else None,
                              n_r=rng.randrange(128) if numbered else None,
                              pf=rng.random() < 0.5, info=info).serialize()


# ------------------------------------------------------------------------------ calls
class Calls:
    """Places calls both ways across the loop, ``in_flight`` at a time while ``running``,
    and counts how they end (engine thread)."""

    def __init__(self, engine: Engine, loop: PriLoop, in_flight: int) -> None:
        self.engine = engine
        self.loop = loop
        self.in_flight = in_flight
        self.running = False
        self.rng = random.Random(0)
        self.placed: list[PriCall] = []
        self.up: set[PriCall] = set()
        self.connected: set[PriCall] = set()
        self.ok = self.failed = 0
        self.causes: collections.Counter[int] = collections.Counter()
        self.refused: collections.Counter[str] = collections.Counter()
        self.history: dict[PriCall, list[str]] = {}
        self._retry_pending = False
        for span in (loop.cpe, loop.net):
            span.on_incoming = self._incoming

    def _incoming(self, call: PriCall) -> None:
        self._follow(call)
        call.alerting(False)
        call.answer()

    def start(self) -> None:
        self.running = True
        self.place_more()

    def place_more(self) -> None:
        # once per gap; a call refused at once (no channel free, D-channel down) stops
        # this round, and one retry is pending at a time (one per refusal grew
        # geometrically: millions of attempts and gigabytes while a link was down)
        for _ in range(self.in_flight - len(self.up) if self.running else 0):
            if not self.place(self.loop.net if len(self.placed) % 2 else self.loop.cpe):
                break

    def _retry_later(self) -> None:
        if not self._retry_pending:
            self._retry_pending = True
            self.engine.call_later(0.1, self._retry)

    def _retry(self) -> None:
        self._retry_pending = False
        self.place_more()

    def place(self, span: PriSpan) -> bool:
        try:
            call = span.call("5551000", calling="5552000")
        except Exception as exc:  # the span refused: no channel, D-channel down
            self.refused[str(exc)[:120]] += 1  # an attempt, not a call
            self._retry_later()
            return False
        self.placed.append(call)
        self.up.add(call)
        call.listeners.append(self._event)
        self._follow(call)
        self.engine.call_later(GIVE_UP_AFTER, self._give_up, call)
        return True

    def _give_up(self, call: PriCall) -> None:
        if call in self.up and call.live and call not in self.connected:
            call.hangup(NORMAL_CLEARING)

    def _event(self, call: PriCall, event: object) -> None:
        if isinstance(event, CallConnected):
            self.connected.add(call)
            self.engine.call_later(0.05 + 0.45 * self.rng.random(), self._hang_up, call)
        elif isinstance(event, CallCleared) and call in self.up:
            self.up.discard(call)
            self.causes[event.cause] += 1
            if event.cause == NORMAL_CLEARING and call in self.connected:
                self.ok += 1
                self.engine.call_soon(self.place_more)
            else:
                self.failed += 1
                self._retry_later()
            self.connected.discard(call)

    def _follow(self, call: PriCall) -> None:
        """Keep what happens to ``call``, to show it if the call is left behind."""
        history = self.history.setdefault(call, [f"{self.engine.time():.3f} {call!r}"])

        def note(call: PriCall, event: object) -> None:
            history.append(f"{self.engine.time():.3f} {type(event).__name__} "
                           f"{getattr(event, 'cause', '')} -> {call.state.value}")

        call.listeners.append(note)

    def _hang_up(self, call: PriCall) -> None:
        if call.live:
            call.hangup(NORMAL_CLEARING)

    def hang_up_all(self) -> None:
        """Stop placing calls; every call still up on either side is hung up by its owner
        (the answering side too: its user, hearing nothing, puts the phone down)."""
        self.running = False
        for call in self.loop.cpe.calls + self.loop.net.calls:
            if call.live:
                call.hangup(NORMAL_CLEARING)

    def left_on_spans(self) -> int:
        return len(self.loop.cpe.calls) + len(self.loop.net.calls)


# ---------------------------------------------------------------------------- logging
class ErrorCounter(logging.Handler):
    """Counts ERROR records, tracebacks apart, and keeps the distinct messages."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.tracebacks = 0
        self.lines = 0
        self.distinct: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.tracebacks += 1
        else:
            self.lines += 1
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
        self.distinct[text[:200]] += 1


# ------------------------------------------------------------------------------- run
def pace(engine: Engine, seconds: float, per_tick: Callable[[], None]) -> None:
    """Call ``per_tick`` on the engine every TICK for ``seconds`` (from this thread)."""
    end = time.monotonic() + seconds
    next_tick = time.monotonic()
    while time.monotonic() < end:
        engine.run(per_tick)
        next_tick += TICK
        time.sleep(max(0.0, next_tick - time.monotonic()))


def count_frames_over(engine: Engine, loop: PriLoop, seconds: float) -> tuple[int, float]:
    """Frames that crossed the line in ``seconds`` of quiet, and the CPU share used."""
    seen: list[FrameRecord] = []
    engine.run(loop.tap.frame_taps.append, seen.append)
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    engine.run(loop.tap.frame_taps.remove, seen.append)
    return len(seen), 100 * cpu / wall


def calls_after(engine: Engine, loop: PriLoop, calls: Calls, count: int) -> int:
    """``count`` calls one after another, alternately each way; how many went right."""
    calls.in_flight = 1
    ok_before = calls.ok
    for n in range(count):
        before = len(calls.placed)
        engine.run(calls.place, loop.net if n % 2 else loop.cpe)
        if len(calls.placed) == before:
            continue
        placed = calls.placed[-1]
        engine.wait_until(lambda placed=placed: placed not in calls.up, 15)
    return calls.ok - ok_before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=100.0, help="fuzzed frames a second")
    parser.add_argument("--mangle", type=float, default=0.02,
                        help="share of the real frames mutated on the wire")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--in-flight", type=int, default=10)
    parser.add_argument("--calls", type=int, default=20, help="calls made after the fuzzing")
    parser.add_argument("--idle", type=float, default=10.0,
                        help="seconds of idle line watched afterwards")
    parser.add_argument("--kind", choices=("E1", "T1"), default="E1")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, for CI")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.calls, args.idle = 3.0, 4, 2.0
    logging.basicConfig(level=logging.CRITICAL)  # the counter below sees every ERROR
    errors = ErrorCounter()
    logging.getLogger().addHandler(errors)
    logging.getLogger().setLevel(logging.ERROR)
    print(f"# {platform.machine()}, Python {platform.python_version()}, "
          f"{datetime.date.today()}: {args.kind} loop, {args.seconds:g} s of fuzzing at "
          f"{args.rate:g} frames/s and {100 * args.mangle:g} % of real frames mangled, "
          f"{args.in_flight} calls in flight, seed {args.seed}", flush=True)

    fuzzer = Fuzzer(args.seed)
    sent = {"frames": 0, "line_full": 0}
    with Engine(name="fuzz-q931") as engine:
        loop = PriLoop.create(engine, args.kind, timers=SMOKE_TIMERS if args.smoke else None)
        if not engine.wait_until(lambda: loop.up, 10):
            print("the simulated D-channels did not come up", file=sys.stderr)
            return 1
        dchannels = (loop.cpe.layout.dchannel, loop.net.layout.dchannel)
        calls = engine.run(Calls, engine, loop, args.in_flight)

        def on_wire(record: FrameRecord) -> None:
            fuzzer.observe(record.frame)

        def mangle(channo: int, frame: bytes) -> bytes | None:
            if fuzzer.rng.random() < args.mangle:
                sent["frames"] += 1
                return fuzzer.mangle(frame)
            return frame

        owed = 0.0

        def fuzz_tick() -> None:
            nonlocal owed
            owed += args.rate * TICK
            while owed >= 1:
                owed -= 1
                frame = fuzzer.frame()
                try:
                    loop.tap.inject_frame(fuzzer.rng.choice(dchannels), frame)
                    sent["frames"] += 1
                except OSError as exc:
                    if exc.errno != errno.EAGAIN:
                        raise
                    sent["line_full"] += 1  # every buffer holds a frame: the line is full

        engine.run(loop.tap.frame_taps.append, on_wire)
        engine.run(setattr, loop.tap, "frame_filter", mangle)
        engine.run(calls.start)
        cpu0, wall0 = time.process_time(), time.monotonic()
        pace(engine, args.seconds, fuzz_tick)
        fuzz_cpu = 100 * (time.process_time() - cpu0) / (time.monotonic() - wall0)
        engine.run(setattr, loop.tap, "frame_filter", None)
        engine.run(loop.tap.frame_taps.remove, on_wire)
        during_ok, during = calls.ok, calls.ok + calls.failed
        print(f"fuzzing: {sent['frames']} frames sent ({dict(fuzzer.kinds)}, "
              f"{sent['line_full']} not sent: line full), CPU {fuzz_cpu:.0f} %; calls "
              f"{during_ok}/{during} went right, causes {dict(calls.causes)}; refused: "
              f"{dict(calls.refused.most_common(3))}", flush=True)

        engine.run(calls.hang_up_all)
        settle = max(engine.run(span.clearing_bound) for span in (loop.cpe, loop.net))
        settled = engine.wait_until(lambda: not calls.left_on_spans() and loop.up,
                                    settle + SETTLE_MARGIN)
        stuck = engine.run(calls.left_on_spans)
        for span in (loop.cpe, loop.net):
            for call in engine.run(lambda span=span: list(span.calls)):
                print(f"  left on {span.name}: {call!r}: "
                      + "; ".join(calls.history.get(call, ["(not followed)"])), flush=True)
        print(f"settled: {'yes' if settled else 'NO'}, {stuck} calls left on the spans, "
              f"D-channels {'up' if engine.run(lambda: loop.up) else 'DOWN'}", flush=True)
        idle_frames, idle_cpu = count_frames_over(engine, loop, args.idle)
        idle_rate = idle_frames / args.idle
        print(f"idle: {idle_frames} frames in {args.idle:g} s, CPU {idle_cpu:.1f} %",
              flush=True)
        after_ok = calls_after(engine, loop, calls, args.calls)
        print(f"after: {after_ok}/{args.calls} calls went right", flush=True)
        engine_faults = engine.faults.total()
        fault_counts = engine.faults.counts()
        engine.run(loop.stop)

    engine_errors = engine_faults + errors.tracebacks
    for text, count in errors.distinct.most_common(20):
        print(f"  {count:6d} x {text}")
    for cause, count in fault_counts.items():
        print(f"  {count:6d} x engine fault: {cause}")
    print(f"RESULT q931_fuzz_frames={sent['frames']} q931_fuzz_engine_errors={engine_errors} "
          f"q931_fuzz_error_lines={errors.lines} q931_fuzz_calls_during={during_ok}/{during} "
          f"q931_fuzz_calls_ok={after_ok}/{args.calls} q931_fuzz_stuck_calls={stuck} "
          f"q931_fuzz_idle_frames_per_s={idle_rate:.1f} q931_fuzz_idle_cpu_pct={idle_cpu:.1f}")
    healthy = (engine_errors == 0 and stuck == 0 and after_ok == args.calls
               and idle_rate <= IDLE_FRAMES_PER_S_LIMIT)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
