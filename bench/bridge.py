"""Bridged call pairs on one core: connect() joining E1 (A-law) calls to T1 (mu-law) calls.

For each N, N calls come in from the simulated exchange on E1 spans (EuroISDN, A-law) and
are answered, N calls go out through uascall on T1 spans (NI2, mu-law) and are answered
by the exchange, and each pair is joined with ``UASCallChannel.connect()``: the real
channel, bridge, PRI and DAHDI code, over the simulated kernel. Both kinds of span are on
one simulated kernel (one card's clock, as a gateway's spans share). Then every far end
talks without a pause (speech, ``examples/media/goodbye.wav`` looped, each call at its
own offset; the first pair sends tones instead, which its far ends must hear, converted),
so 20 ms frames cross every bridge both ways and every frame is converted between the
laws. The DTMF detector of every call stays on, as it does for a connected call. It all
runs on one engine thread, in real time, for ``--seconds`` after a warm-up, with
``gc.freeze()`` after set-up as a long-running server does.

CPU is the engine thread's own time (``time.thread_time`` read on it), split by timing
parts of it: the **simulated kernel** (its line clock, moving every B-channel's bytes
once each 20 ms: a card and the kernel's interrupt on boards, not this process; and
the device calls, our reads and writes through the simulated kernel, which are system
calls on boards), the **far ends** (after the line has taken from a far end's
B-channel, it is topped up to two frames: the load generator), the **measuring** (the
delay taps, and the timers' own cost), and the rest, which is **uascall**: the engine
loop and epoll, the receive path, the DTMF bank, the bridge's law conversion and writes,
the PRI spans. The line's parts are timed with ``thread_time``; the device calls and
taps, 100,000 a second, with ``perf_counter`` (a tenth of the cost; the wrappers' own
cost, measured at start, is charged to measuring). The figure judged is **uascall with
the device calls**, the conservative one; without them is what uascall itself costs.

A **late frame** is any of: a frame the bridge wrote more than 20 ms after the simulated
kernel made its block readable (every frame of every eighth pair: the line stamps the
blocks it completes, the tap behind the bridge's takes the stamp; the line takes the
frame at the other channel's next turn); a block lost because it was read too late
(receive overruns); a frame the bridge dropped (a slip: both lines share one clock here, so none
is due to clocks); a 20 ms slot one of our B-channels had to send with nothing written
for it (transmit underruns). A setting passes with no late frame, every call up, the
first pair's tones heard at the right frequency, and uascall's share at most
``--budget`` of a core.

The line's clock keeps a fixed grid, as a card's crystal does. On a card the interrupt
runs every millisecond and a channel's block completes when it has 160 bytes, counted
from when the channel was opened, so the channels of a busy span become readable spread
over the 20 ms; the simulated kernel does the same with ``--phases 20`` (its own
default), serving each channel at the millisecond it was opened in. This benchmark
runs with ``--phases 1`` unless told otherwise: every channel's block readable at the
same moment, once each 20 ms, as its figures before 2026-12-06 were measured. The
thread must then pass every frame on in one burst, and a burst that ends a few ms late
leaves frames for the next; with 20 phases it wakes 1,000 times a second for a twentieth
of the channels, which costs this Python process more (the figures in BENCHMARKS.md).

What the result is bound by: the simulated kernel runs on the engine thread too, so
frames are late when the whole thread, uascall and simulator, is too busy to keep the
line's 20 ms, whatever uascall's own share. On a shared machine other
processes hold the thread off its core (the engine thread's time runnable but waiting,
from ``/proc/self/task/TID/schedstat``, is shown): ``--realtime`` runs the engine thread
at SCHED_FIFO priority, as a telephony server would (a stall of the virtual machine
itself, its host's doing, it cannot prevent). With ``--realtime`` the engine thread is
pinned to the last CPU, and a canary (``bench/stalls.py``: a process of its own at a
higher SCHED_FIFO priority on that CPU, waking every millisecond) notes when the CPU
itself was not there: the result line says how often it woke more than 5 ms late, and
how many of the late frames were written within 0.1 s of such a stall.

    python bench/bridge.py [--pairs 60,120,240,360,480,600] [--seconds 10] [--realtime]
    python bench/bridge.py --smoke      # 15 pairs for 1 s: a check that it runs

Last line: ``RESULT bridged_pairs_per_core=<largest N that passed> uascall_pct_at_<N>=...``
(uascall's share of a core, with and without the device calls, at the largest N run).
"""

from __future__ import annotations

import argparse
import collections
import gc
import logging
import math
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from uascall.channel import State, UASCallChannel
from uascall.dahdi.device import DeviceIO
from uascall.engine import Engine
from uascall.media import g711
from uascall.media.player import MediaClock
from uascall.media.resample import resample
from uascall.media.tones import reference_rms
from uascall.media.wav import parse_wav
from uascall.sim.backend import SimBackend
from uascall.sim.farend import FarEndCall
from uascall.sim.kernel import SimKernel

sys.path.insert(0, str(Path(__file__).resolve().parent))  # stalls from anywhere
from stalls import StallWatch, stalled_near, summary  # bench/stalls.py

FRAME = 160
TICK = 0.020
#: a frame written on later than this after its block became readable is late
LATE = 0.020
#: one pair in this many has the delay of each of its frames measured
SAMPLE_EVERY = 8
E1_CHANNELS, T1_CHANNELS = 30, 23
SPEECH = Path(__file__).resolve().parent.parent / "examples" / "media" / "goodbye.wav"


class Meter:
    """Time the engine thread spends inside the callables it wraps: its CPU time
    (``thread_time``, 0.6 µs a reading here) or, for calls made 100,000 times a second,
    the clock (``perf_counter``, 0.05 µs)."""

    def __init__(self, clock: Callable[[], float] = time.thread_time) -> None:
        self.clock = clock
        self.seconds = 0.0
        self.calls = 0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock = self.clock

        def timed(*args: Any) -> Any:
            start = clock()
            try:
                return fn(*args)
            finally:
                self.seconds += clock() - start
                self.calls += 1
        return timed


def wrapper_cost() -> float:
    """CPU seconds a ``perf_counter`` wrapper adds to a call, outside the time it
    measures (what the measured code is not charged and the measuring is)."""
    meter = Meter(time.perf_counter)

    def nothing(*_args: Any) -> None:
        return None
    timed = meter.wrap(nothing)
    n = 200_000
    bare = wrapped = math.inf  # the quickest of five runs of each: the least disturbed
    for _ in range(5):
        start = time.thread_time()
        for _ in range(n):
            nothing(1, 2)
        bare = min(bare, time.thread_time() - start)
        meter.seconds = 0.0
        start = time.thread_time()
        for _ in range(n):
            timed(1, 2)
        wrapped = min(wrapped, time.thread_time() - start - meter.seconds)
    return max((wrapped - bare) / n, 0.0)


def speech_frames(law: str) -> list[bytes]:
    """The example prompt, at 8 kHz in ``law``, its silences cut, as 20 ms frames."""
    wav = parse_wav(SPEECH.read_bytes(), SPEECH.name)
    samples = np.asarray(resample(wav.samples, wav.rate, 8000), dtype=np.int16)
    loud = np.flatnonzero(np.abs(samples) > 300)
    samples = samples[loud[0]:loud[-1] + 1]
    data = g711.codec(law).encode(samples.tolist())
    data = data[:len(data) - len(data) % FRAME]
    return [data[at:at + FRAME] for at in range(0, len(data), FRAME)]


def tone_frames(hz: float, dbm0: float, law: str) -> list[bytes]:
    """One second of a steady tone, as 20 ms frames (whole cycles: it loops without a seam)."""
    peak = reference_rms(law) * math.sqrt(2) * 10 ** (dbm0 / 20)
    t = np.arange(8000) / 8000
    data = g711.codec(law).encode(np.round(peak * np.sin(2 * np.pi * hz * t)).astype(int)
                                  .tolist())
    return [data[at:at + FRAME] for at in range(0, len(data), FRAME)]


class Talkers:
    """The far ends' voices, clocked by the line: after each tick of the simulated kernel,
    every far end's B-channel is topped up to two frames queued with the next frames of
    its loop (a far end on the network's clock never starves its line, nor runs ahead).
    They write to the simulated kernel directly. What the far ends of recorded calls
    hear is kept."""

    def __init__(self, kernel: SimKernel) -> None:
        self.kernel = kernel
        self.meter = Meter()
        # by the phase of the line at which each far end's channel is sent from (its
        # peer's): [fd, kernel channel, frames, next index]
        self._voices: list[list[list[Any]]] = [[] for _ in range(kernel.phases)]
        self.heard: dict[int, bytearray] = {}
        self.talking = True

    def add(self, far: FarEndCall, frames: list[bytes], offset: int, *,
            record: bool = False) -> None:
        media = far.call.open_media()
        if record:
            heard = self.heard.setdefault(id(far), bytearray())
            far.call.on_media(heard.extend)
        chan = self.kernel.channels[far.call.channo]
        sent_at = self.kernel._peer_chan(chan).line_phase  # type: ignore[union-attr]
        self._voices[sent_at].append([media.fileno(), chan, frames, offset])

    def top_up(self, phase: int | None = None) -> None:
        """After the line served ``phase`` (None: every phase), the far ends it took
        from."""
        write = self.kernel.write
        groups = self._voices if phase is None else [self._voices[phase]]
        for voice in (voice for group in groups for voice in group):
            fd, chan, frames, at = voice
            while len(chan.tx) < 2:
                write(fd, frames[at % len(frames)])
                at += 1
            voice[3] = at


class Arrivals:
    """How long after its block became readable each frame of the sampled calls was
    written on. After each tick of the simulated kernel, the blocks it completed on each
    sampled B-channel (from its byte counters) are stamped with the engine time; a tap
    behind the bridge's on the call's receive path takes the oldest stamp when the frame
    has been written (the bridge writes just before, in the same call)."""

    def __init__(self, engine: Engine, kernel: SimKernel, meter: Meter) -> None:
        self.engine = engine
        self.kernel = kernel
        self.meter = meter
        # by the phase of the line at which each channel is served: (kernel channel,
        # its whole blocks before measuring, stamps, [blocks counted])
        self._chans: list[list[tuple[Any, int, collections.deque[float], list[int]]]] = [
            [] for _ in range(kernel.phases)]
        self.delays: list[float] = []
        self.late = 0
        self.late_at: list[float] = []  # when each late frame was written
        self.frames = 0
        self.worst = 0.0
        self.unmatched = 0

    def follow(self, channel: UASCallChannel) -> None:
        """Engine thread, between ticks: measure every frame ``channel`` hears from now."""
        chan = self.kernel.channels[channel._leg.call.channo]
        now = self.engine.time()
        stamps: collections.deque[float] = collections.deque([now] * len(chan.rx))
        origin = chan.stats.rx_bytes - len(chan.rx_partial)  # whole blocks before now
        self._chans[chan.line_phase].append((chan, origin, stamps, [-chan.stats.rx_overruns]))
        heard = self.meter.wrap(self._heard)
        assert channel._hearing is not None
        channel._hearing.taps.append(lambda _frame, _law: heard(stamps))

    def after_phase(self, phase: int) -> None:
        now = self.engine.time()
        for chan, origin, stamps, done in self._chans[phase]:
            # blocks completed, less those lost because every read buffer was full
            blocks = ((chan.stats.rx_bytes - len(chan.rx_partial) - origin) // FRAME
                      - chan.stats.rx_overruns)
            if blocks > done[0]:
                stamps.extend([now] * (blocks - done[0]))
                done[0] = blocks

    def _heard(self, stamps: collections.deque[float]) -> None:
        if not stamps:
            self.unmatched += 1
            return
        now = self.engine.time()
        delay = now - stamps.popleft()
        self.frames += 1
        if delay > LATE:
            self.late += 1
            self.late_at.append(now)
        if delay > self.worst:
            self.worst = delay
        if len(self.delays) < 500_000:
            self.delays.append(delay)

    def reset(self) -> None:
        self.delays.clear()
        self.late_at.clear()
        self.worst = 0.0


def span_confs(e1_pairs: int, t1_pairs: int) -> tuple[str, str, str]:
    """system.conf for one simulated kernel with ``e1_pairs`` looped E1 span pairs, then
    ``t1_pairs`` T1 pairs: the whole of it, and the E1 and T1 parts for their backends
    (each lists every span, for the channel numbering, but the D- and B-channels of its
    own spans only)."""
    spans: list[str] = []
    parts: dict[str, list[str]] = {"E1": [], "T1": []}
    first = 1
    for n in range(2 * (e1_pairs + t1_pairs)):
        spanno = n + 1
        if n < 2 * e1_pairs:
            spans.append(f"span={spanno},{1 if spanno == 1 else 0},0,ccs,hdb3,crc4")
            dchan = first + 15
            parts["E1"] += [f"bchan={first}-{dchan - 1},{dchan + 1}-{first + 30}",
                            f"dchan={dchan}"]
            first += 31
        else:
            spans.append(f"span={spanno},0,0,esf,b8zs")
            parts["T1"] += [f"bchan={first}-{first + 22}", f"dchan={first + 23}"]
            first += 24
    tail = ["loadzone=us", "defaultzone=us", ""]
    return ("\n".join(spans + parts["E1"] + parts["T1"] + tail),
            "\n".join(spans + parts["E1"] + tail), "\n".join(spans + parts["T1"] + tail))


class MeteredIO(DeviceIO):
    """``io``'s reads and writes, timed by ``meter``."""

    def __init__(self, io: DeviceIO, meter: Meter) -> None:
        self.read = meter.wrap(io.read)  # type: ignore[method-assign]
        self.write = meter.wrap(io.write)  # type: ignore[method-assign]
        self.may_read = io.may_read  # type: ignore[method-assign]


def meter_device_calls(channels: list[UASCallChannel], loops: list[Any],
                       meter: Meter) -> None:
    """Time every read and write of our B-channels (each device reads and writes through
    the kernel, DeviceIO.data_io) and, through each span loop's tap, of our D-channels;
    the far ends call the kernel themselves."""
    for channel in channels:
        device = channel._leg.call.media
        device._data_io = MeteredIO(device._data_io, meter)
    for loop in loops:
        loop.tap.read = meter.wrap(loop.tap.read)
        loop.tap.write = meter.wrap(loop.tap.write)


def run(pairs: int, seconds: float, *, warmup: float = 2.0, phases: int = 1,
        overhead: float = 0.0, realtime: bool = False) -> dict[str, Any]:
    e1_pairs, t1_pairs = math.ceil(pairs / E1_CHANNELS), math.ceil(pairs / T1_CHANNELS)
    whole, e1_conf, t1_conf = span_confs(e1_pairs, t1_pairs)
    with Engine() as engine:
        cpu = max(os.sched_getaffinity(0))
        if realtime:  # the engine thread alone (Linux: the calling thread's policy)
            engine.run(os.sched_setscheduler, 0, os.SCHED_FIFO, os.sched_param(10))
            engine.run(os.sched_setaffinity, 0, {cpu})  # where its canary watches
        def make_kernel() -> SimKernel:
            kernel = SimKernel(engine, phases=phases)
            for _ in range(e1_pairs):
                kernel.add_loop("E1")
            for _ in range(t1_pairs):
                kernel.add_loop("T1")
            kernel.configure(whole)
            return kernel
        kernel = engine.run(make_kernel)
        e1 = SimBackend(engine, kind="E1", pairs=e1_pairs, record=False, kernel=kernel,
                        conf=e1_conf)
        t1 = SimBackend(engine, kind="T1", pairs=t1_pairs, record=False, kernel=kernel,
                        conf=t1_conf)
        clock = MediaClock(engine)
        inbound: list[UASCallChannel] = []

        def on_incoming(leg: Any) -> None:
            inbound.append(UASCallChannel(engine, leg, media_clock=clock))

        e1.on_incoming = on_incoming
        engine.run(e1.start)
        engine.run(t1.start)
        if not engine.wait_until(lambda: e1.up and t1.up, 30):
            raise SystemExit("the simulated D-channels did not come up")
        assert e1.far_end is not None and t1.far_end is not None
        assert e1.loop is not None and t1.loop is not None
        t1.far_end.answer_after = 0.0
        setup_start = time.perf_counter()
        callers = [engine.run(e1.far_end.dial, f"555{n:04d}", span=n // E1_CHANNELS)
                   for n in range(pairs)]
        outbound = [UASCallChannel(engine, backend=t1, route="pri", media_clock=clock)
                    for _ in range(pairs)]
        for n, channel in enumerate(outbound):
            channel.start_call(f"556{n:04d}", call_from=f"555{n:04d}")
        if not engine.wait_until(lambda: len(inbound) == pairs, 120):
            raise SystemExit(f"only {len(inbound)} of {pairs} calls arrived")
        # inbound[n] is the call callers[n] placed (they arrive in any order)
        inbound.sort(key=lambda channel: channel.Details.call_to)
        for channel in inbound:
            if channel.answer() is not State.ANSWERED:
                raise SystemExit(f"{channel!r} was not answered: {channel.cause()}")
        for channel in outbound:
            if channel.wait_for_answer(120) is not State.ANSWERED:
                raise SystemExit(f"{channel!r} was not answered: {channel.cause()}")
        called = {far.call.called: far for far in t1.far_end.incoming}
        answerers = [called[f"556{n:04d}"] for n in range(pairs)]
        for a, b in zip(inbound, outbound, strict=True):
            if a.connect(b) is not True:
                raise SystemExit(f"connect({a!r}, {b!r}) refused")
        setup = time.perf_counter() - setup_start

        talkers = Talkers(kernel)
        line_meter, device_meter = Meter(), Meter(time.perf_counter)
        stamp_meter, tap_meter = Meter(), Meter(time.perf_counter)
        arrivals = Arrivals(engine, kernel, tap_meter)
        speech_a, speech_u = speech_frames("alaw"), speech_frames("ulaw")
        probe = {"alaw": 1004.0, "ulaw": 697.0}

        def instrument() -> None:
            for n, (caller, answerer) in enumerate(zip(callers, answerers, strict=True)):
                if n == 0:  # the first pair carries tones, recorded at each far end
                    talkers.add(caller, tone_frames(probe["alaw"], -10.0, "alaw"), 0,
                                record=True)
                    talkers.add(answerer, tone_frames(probe["ulaw"], -16.0, "ulaw"), 0,
                                record=True)
                else:
                    talkers.add(caller, speech_a, 7 * n)
                    talkers.add(answerer, speech_u, 11 * n + 3)
            talkers.top_up()
            meter_device_calls(inbound + outbound, [e1.loop, t1.loop], device_meter)
            top_up = talkers.meter.wrap(talkers.top_up)
            stamp = stamp_meter.wrap(arrivals.after_phase)

            def after_phase(phase: int) -> None:
                if talkers.talking:
                    top_up(phase)
                stamp(phase)
            kernel.after_phase.append(after_phase)
            # the line's clock timed (less the two above, which it calls), from its next
            # tick on
            kernel._on_tick = line_meter.wrap(kernel._on_tick)
            assert kernel._tick_timer is not None
            kernel._tick_timer.cancel()
            kernel._tick_timer = None
            kernel._start_ticking()
            for n in range(0, pairs, SAMPLE_EVERY):
                arrivals.follow(inbound[n])
                arrivals.follow(outbound[n])
        engine.run(instrument)
        links = [link for channel in inbound
                 for link in channel._bridge.links.values()]  # type: ignore[union-attr]
        ours = [channel._leg.call.channo for channel in inbound + outbound]  # type: ignore[attr-defined]

        schedstat = f"/proc/self/task/{engine.run(threading.get_native_id)}/schedstat"

        def snapshot() -> dict[str, float]:
            with open(schedstat) as f:  # ns on a CPU, ns runnable but waiting for one
                waited = int(f.read().split()[1]) / 1e9
            return {
                "thread": time.thread_time(), "wall": engine.time(), "waited": waited,
                "line": line_meter.seconds - talkers.meter.seconds - stamp_meter.seconds,
                "device": device_meter.seconds,
                "device_calls": device_meter.calls, "talkers": talkers.meter.seconds,
                "stamps": stamp_meter.seconds, "taps": tap_meter.seconds,
                "tap_calls": tap_meter.calls,
                "underruns": sum(kernel.stats(c).tx_underruns for c in ours),
                "overruns": sum(kernel.stats(c).rx_overruns for c in ours),
                "slips": sum(link.slips for link in links),
                "frames_out": sum(link.frames_out for link in links),
                "delay_frames": arrivals.frames, "delay_late": arrivals.late,
                "unmatched": arrivals.unmatched,
            }

        engine.sleep(warmup)
        gc.freeze()  # what a long-running server does after start-up
        engine.run(arrivals.reset)
        watch = StallWatch(cpu).start() if realtime else None
        before = engine.run(snapshot)
        engine.sleep(seconds)
        after = engine.run(snapshot)
        stalls = watch.stop() if watch is not None else None
        d = {k: after[k] - before[k] for k in before}
        late_at = engine.run(lambda: list(arrivals.late_at))
        delays = engine.run(lambda: sorted(arrivals.delays))
        audio = check_audio({k: bytes(v) for k, v in talkers.heard.items()}, callers[0],
                            answerers[0], probe)
        answered = sum(c.state() is State.ANSWERED for c in inbound + outbound)
        talkers.talking = False
        # the spans are closed with their calls up: hanging up 2N calls one by one, each
        # waiting for its RELEASE COMPLETE on a 64 kbit/s D-channel, takes minutes
        engine.run(e1.stop)
        engine.run(t1.stop)
    wall = d["wall"]
    wrappers = overhead * (d["device_calls"] + d["tap_calls"])
    simulator = d["line"] + d["device"]
    measuring = d["stamps"] + d["taps"] + wrappers
    uascall = d["thread"] - simulator - d["talkers"] - measuring
    late = d["delay_late"] + d["overruns"] + d["slips"] + d["underruns"] + d["unmatched"]
    return {
        "pairs": pairs, "setup_s": setup, "wall": wall,
        "thread": d["thread"] / wall, "line": d["line"] / wall, "device": d["device"] / wall,
        "talkers": d["talkers"] / wall, "measuring": measuring / wall,
        "uascall_io": (uascall + d["device"]) / wall, "uascall": uascall / wall,
        "us_per_pair": 1e6 * (uascall + d["device"]) / wall / pairs,
        "frames_out": int(d["frames_out"]), "expected": 2 * pairs * wall / TICK,
        "underruns": int(d["underruns"]), "overruns": int(d["overruns"]),
        "slips": int(d["slips"]), "unmatched": int(d["unmatched"]),
        "delay_frames": int(d["delay_frames"]), "delay_late": int(d["delay_late"]),
        "delay_p50_ms": 1e3 * delays[len(delays) // 2] if delays else 0.0,
        "delay_p99_ms": 1e3 * delays[int(len(delays) * 0.99)] if delays else 0.0,
        "delay_max_ms": 1e3 * delays[-1] if delays else 0.0,
        "late": int(late), "audio": audio, "answered": answered,
        "waited": d["waited"] / wall,
        "stalls": None if stalls is None else summary(stalls),
        "late_in_stalls": None if stalls is None else sum(
            stalled_near(at, stalls) for at in late_at),
        "cpu": cpu,
    }


def check_audio(heard: dict[int, bytes], caller: FarEndCall, answerer: FarEndCall,
                probe: dict[str, float]) -> str:
    """The first pair's far ends each heard the other's tone (the last second of it), in
    their own law: "ok", or what was wrong."""
    wrong = []
    for far, law, hz, name in ((answerer, "ulaw", probe["alaw"], "the T1 end"),
                               (caller, "alaw", probe["ulaw"], "the E1 end")):
        data = heard.get(id(far), b"")[-8000:]
        if len(data) < 8000:
            wrong.append(f"{name} heard {len(data)} bytes")
            continue
        samples = np.asarray(g711.codec(law).decode(data), dtype=float)
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
        peak = float(np.argmax(spectrum)) * 8000 / len(samples)
        if abs(peak - hz) > 5:
            wrong.append(f"{name} heard {peak:.0f} Hz, expected {hz:.0f}")
    return "ok" if not wrong else "; ".join(wrong)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default="60,120,240,360,480,600")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--budget", type=float, default=0.8,
                        help="the most of a core uascall's share may take (0.8)")
    parser.add_argument("--phases", type=int, default=1,
                        help="the phases of the simulated line's 20 ms tick, each serving "
                             "the channels opened in it: 1 (every channel's block at once, "
                             "the default) or 20 (a card's 1 ms interrupt, the simulator's "
                             "default)")
    parser.add_argument("--realtime", action="store_true",
                        help="run the engine thread at SCHED_FIFO priority 10 (root), as a "
                             "telephony server on a shared machine would, so that other "
                             "processes cannot hold it off a core; it is pinned to the last "
                             "CPU, where a canary (bench/stalls.py) notes when the CPU "
                             "itself was not there")
    parser.add_argument("--smoke", action="store_true",
                        help="15 pairs for 1 s: a quick check that the benchmark runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    ladder = [15] if args.smoke else [int(p) for p in args.pairs.split(",")]
    seconds = 1.0 if args.smoke else args.seconds
    overhead = wrapper_cost()
    load = os.getloadavg()
    print(f"# {platform.machine()}, Python {platform.python_version()}, {seconds:g} s per "
          f"setting, E1 A-law calls connected to T1 mu-law calls, "
          f"line in {args.phases} phases"
          f"{', engine thread SCHED_FIFO' if args.realtime else ''}, load average "
          f"{load[0]:.2f}; a meter wrapper costs {1e6 * overhead:.2f} µs")
    best = 0
    last: dict[str, Any] = {}
    for n in ladder:
        r = run(n, seconds, warmup=0.5 if args.smoke else 2.0,
                phases=args.phases, overhead=overhead,
                realtime=args.realtime)
        passed = (r["late"] == 0 and r["uascall_io"] <= args.budget
                  and r["answered"] == 2 * n and r["audio"] == "ok")
        stalls = r["stalls"]
        if stalls is None:
            machine = ""
        else:
            machine = (f"; CPU {r['cpu']} stalled {stalls['count']} times > 5 ms (its "
                       f"canary's latest wake {1e3 * stalls['longest']:.1f} ms late, "
                       f"{1e3 * stalls['total'] / r['wall']:.1f} ms/s lost)")
            if r["delay_late"]:
                machine += (f", {r['late_in_stalls']} of the {r['delay_late']} frames "
                            "> 20 ms written within 0.1 s of a stall")
        print(f"{n:4d} pairs: uascall {100 * r['uascall_io']:5.1f} % of a core with the "
              f"device calls ({r['us_per_pair']:.0f} µs/s a pair), "
              f"{100 * r['uascall']:.1f} % without; engine thread {100 * r['thread']:5.1f} % "
              f"(simulated kernel: line {100 * r['line']:.1f} %, device calls "
              f"{100 * r['device']:.1f} %; far ends {100 * r['talkers']:.1f} %; measuring "
              f"{100 * r['measuring']:.1f} %); frames {r['frames_out']}/{r['expected']:.0f}; "
              f"late {r['late']} (> 20 ms {r['delay_late']} of {r['delay_frames']}, "
              f"overruns {r['overruns']}, slips {r['slips']}, underruns {r['underruns']}); "
              f"delay p50 {r['delay_p50_ms']:.2f} p99 {r['delay_p99_ms']:.2f} max "
              f"{r['delay_max_ms']:.1f} ms; waited for a CPU {1e3 * r['waited']:.0f} ms/s; "
              f"audio {r['audio']}; set-up {r['setup_s']:.1f} s{machine}"
              f"{'' if passed else '  FAIL'}", flush=True)
        if passed:
            best = max(best, n)
        last = r
    print(f"RESULT bridged_pairs_per_core={best} "
          f"uascall_pct_at_{last['pairs']}={100 * last['uascall_io']:.1f} "
          f"uascall_pct_without_device_calls_at_{last['pairs']}={100 * last['uascall']:.1f}")


if __name__ == "__main__":
    main()
