"""uascall's DTMF receiver beside spandsp's, on the standard's conditions, talk-off and CPU.

Both detectors get identical int16 samples (tests/corpus.py, through a G.711 line) in
20 ms chunks of 160 samples: uascall's ``DtmfDetector.feed`` (then ``flush``), and
spandsp's ``dtmf_rx`` from ``libspandsp.so.2`` through ctypes with spandsp's defaults
(``dtmf_rx_init(NULL, callback, NULL)``, no ``dtmf_rx_parms``; Debian: ``apt-get install
libspandsp2``). Four parts:

1. **The standard** (tests/sim/test_dtmf_standard.py's conditions, one row per group, both
   laws pooled): the share of trials each detector got exactly right. That is the
   detection rate on "must" rows and the rejection rate on "must not" rows (a trial of a
   "gap under 20 ms" row is right when it gives one digit); talk-off rows count false
   digits. Rows marked ``info`` are not requirements of the reference (e.g. ETSI's
   ±(1.5 % + 2 Hz)). Detections are charged to trials as :func:`tests.corpus.judge` says:
   uascall's by the event's start, spandsp's by the start of the chunk it reported in.
2. **Characterisation** (sweeps, mu-law): the accepted frequency band of each of the 8
   tones (0.1 % steps to ±6 % at -17 dBm0, spandsp's procedure), twist limits (0.1 dB
   steps), the lowest level detected, the shortest tone detected and the longest drop-out
   bridged.
3. **Talk-off detail**: where each detector heard digits in speech, music or our sounds.
4. **CPU**: per channel-second of audio, with ``time.process_time()``, on speech, music,
   DTMF, white noise and silence. uascall's production path: a ``DtmfBank`` with
   ``--streams`` streams whose frames arrive spread over each 20 ms (a DAHDI card's 1 ms
   tick, channels at random phases) and ``bank.process()`` every 5 ms, as
   :class:`uascall.media.inbound.InboundDsp` runs it, on what arrived since; fed
   mu-law bytes (``stream.feed_law``, as uascall.media.inbound feeds each call: the
   headline) and int16 (``stream.feed``). Without ``DtmfBank`` the same schedule drives
   one ``DtmfDetector`` per stream, and the output says so. CPU time counts every thread
   of the process (numpy's BLAS threads included). Also shown: one ``DtmfDetector`` fed 20
   ms frames (``array('h')`` and numpy), and spandsp on the same schedule (one ``dtmf_rx``
   state per stream; each call goes through ctypes, a microsecond or so a frame that C
   callers would not pay). A bank gets cheaper per stream the more streams share each
   ``process()``, so uascall's channels per core is found on a ladder of 30, 120, 480...
   streams on its slowest input, refined by three geometric steps between the last N that
   fits and the first that does not: the largest N whose N streams fit in one core (max over
   the N tried of min(N, capacity at N)). spandsp's cost per stream does not depend on N:
   its figure is its capacity on its slowest input.

    python bench/dtmf.py [--seconds 10] [--streams 120] [--quick]

``--quick``: coarse sweeps, 3 s x 30 streams of CPU measurement, talk-off speech at 0 dB
only. Last line: ``RESULT dtmf_talkoff_false=<n> dtmf_detect_rate=<fraction>
dtmf_channels_per_core=<n> spandsp_talkoff_false=<n> spandsp_channels_per_core=<n>``
(dtmf_* are uascall's; the detect rate is over every must-detect trial of part 1; the
talk-off counts are false digits over speech, music and own media, both laws, every gain).
"""

from __future__ import annotations

import argparse
import array
import ctypes
import gc
import math
import platform
import subprocess
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.corpus

import uascall.media.dtmf as dtmf
from tests import corpus
from uascall.media.inbound import PROCESS_INTERVAL

FRAME = corpus.FRAME
Detections = list[tuple[str, int]]


# --------------------------------------------------------------------------- detectors

def run_uascall(samples: np.ndarray) -> Detections:
    detector = dtmf.DtmfDetector()
    buf = array.array("h", np.asarray(samples, dtype=np.int16).tobytes())
    events = []
    for i in range(0, len(buf), FRAME):
        events += detector.feed(buf[i:i + FRAME])
    events += detector.flush()
    return [(e.digit, e.start) for e in events]


_DIGITS_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int)


class Spandsp:
    """libspandsp's DTMF receiver (``spandsp/dtmf.h``), loaded with ctypes."""

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL("libspandsp.so.2")
        except OSError as exc:
            raise SystemExit(f"bench/dtmf.py needs spandsp's runtime library: {exc}\n"
                             "install it with: apt-get install -y libspandsp2") from None
        lib.dtmf_rx_init.restype = ctypes.c_void_p
        lib.dtmf_rx_init.argtypes = [ctypes.c_void_p, _DIGITS_CB, ctypes.c_void_p]
        lib.dtmf_rx.restype = ctypes.c_int
        lib.dtmf_rx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        lib.dtmf_rx_get.restype = ctypes.c_size_t
        lib.dtmf_rx_get.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.dtmf_rx_free.restype = ctypes.c_int
        lib.dtmf_rx_free.argtypes = [ctypes.c_void_p]
        self.lib = lib

    def receiver(self) -> SpandspRx:
        return SpandspRx(self.lib)

    def run(self, samples: np.ndarray) -> Detections:
        rx = self.receiver()
        x = np.ascontiguousarray(samples, dtype=np.int16)
        try:
            for i in range(0, len(x), FRAME):
                rx.feed(x[i:i + FRAME])
        finally:
            rx.close()
        return rx.detections


class SpandspRx:
    """One ``dtmf_rx_state_t``; digits arrive through the callback, stamped with the
    first sample of the chunk in which spandsp reported them."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self.detections: Detections = []
        self.fed = 0
        self._chunk = 0
        self._cb = _DIGITS_CB(self._on_digits)  # kept alive as long as the state
        self.state = lib.dtmf_rx_init(None, self._cb, None)
        if not self.state:
            raise RuntimeError("dtmf_rx_init failed")

    def _on_digits(self, _user: int, digits: bytes, count: int) -> None:
        for ch in digits[:count].decode("ascii"):
            self.detections.append((ch, self._chunk))

    def feed(self, frame: np.ndarray) -> None:
        self._chunk = self.fed
        self.lib.dtmf_rx(self.state, frame.ctypes.data, len(frame))
        self.fed += len(frame)

    def feed_pointer(self, pointer: int, n: int) -> None:
        self.lib.dtmf_rx(self.state, pointer, n)

    def close(self) -> None:
        if self.state:
            self.lib.dtmf_rx_free(self.state)
            self.state = None


# --------------------------------------------------------------------------- part 1

class Tally:
    def __init__(self) -> None:
        self.trials = self.right = self.digits = 0

    def add(self, signal: corpus.Signal, got: list[str]) -> None:
        self.trials += len(got)
        self.right += sum(g == t.expected for g, t in zip(got, signal.trials, strict=True))
        self.digits += sum(len(g) for g in got)

    @property
    def rate(self) -> float:
        return self.right / self.trials if self.trials else math.nan


def standard(conditions: Sequence[corpus.Condition], detectors: dict[str, Callable],
             talkoff_detail: dict[str, list[str]]) -> dict[str, dict[str, Tally]]:
    """Runs every condition through every detector; tallies per group and, under the
    keys "_must" / "_talkoff", the headline totals."""
    groups: OrderedDict[str, dict[str, Tally]] = OrderedDict()
    meta: dict[str, corpus.Condition] = {}
    for condition in conditions:
        signal = condition.make()
        row = groups.setdefault(condition.group, {name: Tally() for name in detectors})
        meta.setdefault(condition.group, condition)
        for name, run in detectors.items():
            got = corpus.judge(signal, run(signal.samples))
            row[name].add(signal, got)
            if condition.figure == "talk-off":
                for trial, digits in zip(signal.trials, got, strict=True):
                    if digits:
                        talkoff_detail[name].append(f"{condition.name}: {trial.note}: "
                                                    f"{digits!r}")
    standard.meta = meta  # type: ignore[attr-defined]
    return groups


def print_standard(groups: dict[str, dict[str, Tally]], meta: dict[str, corpus.Condition],
                   names: Sequence[str]) -> None:
    head = f"{'condition':38} {'must':9} {'trials':>7}" + "".join(f" {n:>10}" for n in names)
    print(head)
    print("-" * len(head))
    figure = None
    for group, row in groups.items():
        c = meta[group]
        if c.figure != figure:
            figure = c.figure
            print(f"[{figure}]")
        tallies = [row[n] for n in names]
        if c.figure == "talk-off":
            kind = "no digit"
            cells = "".join(f" {t.digits:>7} fd" for t in tallies)
            count = f"{tallies[0].trials / 2:.0f}x2"  # segments x laws
        else:
            kind = "info" if c.info else ("detect" if c.must_detect else "must not")
            cells = "".join(f" {100 * t.rate:>9.1f}%" for t in tallies)
            count = str(tallies[0].trials)
        print(f"  {group:36} {kind:9} {count:>7}{cells}")
    print("(% = trials exactly right: detected on 'detect' rows, rejected / not split on "
          "'must not' rows; fd = false digits)")


# --------------------------------------------------------------------------- part 2

def _pass_by_value(signal: corpus.Signal, values: list[float], got: list[str]) -> dict:
    out: dict[float, list[bool]] = OrderedDict()
    for value, trial, g in zip(values, signal.trials, got, strict=True):
        out.setdefault(value, []).append(g == trial.expected)
    return {v: sum(ok) / len(ok) for v, ok in out.items()}


def sweep(build: Callable[[corpus.Builder, list[float]], None], seed: str,
          detectors: dict[str, Callable]) -> dict[str, dict[float, float]]:
    b = corpus.Builder("ulaw", corpus.seed_of(seed))
    values: list[float] = []
    build(b, values)
    signal = b.build()
    return {name: _pass_by_value(signal, values, corpus.judge(signal, run(signal.samples)))
            for name, run in detectors.items()}


def _frange(lo: float, hi: float, step: float) -> list[float]:
    n = round((hi - lo) / step)
    return [round(lo + i * step, 6) for i in range(n + 1)]


def _edge(rates: dict[float, float], values: list[float]) -> float | None:
    """Walking ``values`` in order, the last one before the first that is not all right."""
    last = None
    for v in values:
        if rates.get(v, 0.0) < 1.0:
            break
        last = v
    return last


def characterise(detectors: dict[str, Callable], quick: bool) -> None:
    names = list(detectors)
    step = 0.5 if quick else 0.1
    print("\nAccepted frequency band per tone (partner nominal, -17 dBm0 each, mu-law; "
          "every partner detected; 'band' = low..high edge, centre shift, width):")
    offsets = _frange(-6.0, 6.0, step)
    for freq in corpus.LOW_HZ + corpus.HIGH_HZ:
        is_low = freq in corpus.LOW_HZ

        def build(b: corpus.Builder, values: list[float], freq: int = freq,
                  is_low: bool = is_low) -> None:
            for pct in offsets:
                for p in corpus.HIGH_HZ if is_low else corpus.LOW_HZ:
                    digit = corpus.digit_of(freq, p) if is_low else corpus.digit_of(p, freq)
                    pair = (corpus.Pair(-17, -17, low_percent=pct) if is_low
                            else corpus.Pair(-17, -17, high_percent=pct))
                    b.random_lead(80)
                    b.trial(digit, f"{pct}")
                    b.burst(digit, 80, pair)
                    values.append(pct)

        result = sweep(build, f"band {freq}", detectors)
        cells = []
        for n in names:
            up = _edge(result[n], [v for v in offsets if v >= 0])
            down = _edge(result[n], [v for v in reversed(offsets) if v <= 0])
            if up is None or down is None:
                cells.append(f"{n}: none at 0 %")
            else:
                cells.append(f"{n}: {down:+.1f}..{up:+.1f} % (centre {(up + down) / 2:+.2f}, "
                             f"width {up - down:.1f})")
        print(f"  {freq:5} Hz  " + "   ".join(cells))

    tstep = 0.5 if quick else 0.1
    print("\nTwist (every digit, stronger group at -10 dBm0, mu-law): largest twist with all "
          "16 detected, and the share detected at larger twists:")
    for kind, top in (("normal", 14.0), ("reverse", 12.0)):
        twists = _frange(0.0, top, tstep)

        def build_twist(b: corpus.Builder, values: list[float], kind: str = kind,
                        twists: list[float] = twists) -> None:
            for db in twists:
                pair = (corpus.Pair(-10, -10 - db) if kind == "normal"
                        else corpus.Pair(-10 - db, -10))
                for digit in corpus.DIGITS:
                    b.random_lead(80)
                    b.trial(digit, f"{db}")
                    b.burst(digit, 80, pair)
                    values.append(db)

        result = sweep(build_twist, f"twist {kind}", detectors)
        cells = []
        for n in names:
            edge = _edge(result[n], twists)
            beyond = [f"{v:g}:{100 * r:.0f}%" for v, r in result[n].items()
                      if edge is not None and edge < v <= edge + (2.5 if quick else 1.0)
                      and (quick or round(v * 10) % 2 == 0)]
            cells.append(f"{n}: {edge} dB ({' '.join(beyond)})")
        print(f"  {kind:8} " + "   ".join(cells))

    print("\nLowest level detected (every digit, equal tones, mu-law, 1 dB steps):")
    levels = _frange(-50.0, 0.0, 1.0)[::-1]

    def build_level(b: corpus.Builder, values: list[float]) -> None:
        for level in levels:
            for digit in corpus.DIGITS:
                b.random_lead(80)
                b.trial(digit, f"{level}")
                b.burst(digit, 80, corpus.Pair(level, level))
                values.append(level)

    result = sweep(build_level, "level floor", detectors)
    print("  " + "   ".join(f"{n}: {_edge(result[n], levels)} dBm0 per tone" for n in names))

    print("\nTone duration (-10 dBm0, every digit x 4 at random alignments): shortest with "
          "all detected, longest with none:")
    durations = _frange(10.0, 50.0, 2.0 if quick else 1.0)

    def build_duration(b: corpus.Builder, values: list[float]) -> None:
        for ms in durations:
            for rep in range(4):
                for digit in corpus.DIGITS:
                    b.random_lead(80)
                    b.trial(digit, f"{ms} {rep}")
                    b.burst(digit, ms, corpus.Pair())
                    values.append(ms)

    result = sweep(build_duration, "duration", detectors)
    cells = []
    for n in names:
        shortest = _edge(result[n], durations[::-1])
        none = [v for v in durations if result[n][v] == 0.0]
        longest_none = max((v for v in none if all(result[n][u] == 0 for u in durations
                                                   if u <= v)), default=None)
        cells.append(f"{n}: all from {shortest} ms, none up to {longest_none} ms")
    print("  " + "   ".join(cells))

    print("\nDrop-out inside a digit (60 ms + gap + 60 ms, tones keep phase, -10 dBm0): "
          "longest gap always one digit, shortest always two:")
    gaps = _frange(1.0, 45.0, 2.0 if quick else 1.0)

    def build_gap(b: corpus.Builder, values: list[float]) -> None:
        for gap in gaps:
            for digit in corpus.DIGITS:
                b.random_lead(100)
                b.trial(digit, f"{gap}")
                b.burst(digit, 120 + gap, corpus.Pair(), mute=(60, gap))
                values.append(gap)

    result = sweep(build_gap, "gaps", detectors)
    cells = []
    for n in names:
        bridged = _edge(result[n], gaps)
        # trials expect one digit: a rate of 0 means none gave exactly one (split, mostly)
        split = min((v for v in gaps if all(result[n][u] == 0 for u in gaps if u >= v)),
                    default=None)
        cells.append(f"{n}: one digit up to {bridged} ms, never one from {split} ms")
    print("  " + "   ".join(cells))


# --------------------------------------------------------------------------- part 4

def cpu_inputs(seconds: float) -> dict[str, np.ndarray]:
    """Inputs for the CPU figures, mu-law line, at least ``seconds`` long each."""
    n = int(seconds * corpus.RATE)
    rng = np.random.default_rng(7)

    def fill(x: np.ndarray) -> np.ndarray:
        reps = -(-(n + 40 * FRAME) // len(x))
        return np.tile(x, reps)

    speech = np.concatenate([s for _, s in corpus.speech_corpus()])
    music = np.concatenate([s for _, s in corpus.music_corpus()])
    digits = corpus.dtmf(corpus.DIGITS, on_ms=50, off_ms=50)
    noise = corpus.to_int16(rng.normal(0, corpus.amplitude(-20.0) / math.sqrt(2), n + 8000))
    out = {
        "speech": speech,
        "music": music,
        "DTMF 50/50 ms": digits,
        "white noise -20 dBm0": noise,
        "silence": np.zeros(n, np.int16),
    }
    return {k: corpus.line(fill(v) if len(v) < n + 40 * FRAME else v, "ulaw")
            for k, v in out.items()}


def stream_frames(x: np.ndarray, streams: int, seconds: float) -> list[list[np.ndarray]]:
    """Per stream, ``seconds`` of 160-sample frames from its own offset into ``x``."""
    count = int(seconds * corpus.RATE) // FRAME
    span = count * FRAME
    room = max(len(x) - span, 1)
    out = []
    for i in range(streams):
        start = (i * 7919 * FRAME) % room // FRAME * FRAME
        out.append([x[start + k * FRAME:start + (k + 1) * FRAME] for k in range(count)])
    return out


#: how often the bank is processed: uascall.media.inbound's PROCESS_INTERVAL
PROCESS_MS = round(PROCESS_INTERVAL * 1000)


def schedule(streams: int) -> list[list[int]]:
    """Streams per pass of the bank: each stream's frame arrives at its own phase of
    20 ms (a card's 1 ms tick), and the engine processes the bank at most every
    PROCESS_MS ms, taking every frame that arrived since."""
    rng = np.random.default_rng(20)
    phases = rng.integers(0, 20, streams) // PROCESS_MS
    return [[i for i in range(streams) if phases[i] == t] for t in range(20 // PROCESS_MS)]


def cpu_bank(frames: list[list[np.ndarray]], groups: list[list[int]], *,
             law: bool = False) -> tuple[float, int, str]:
    """uascall's production path (or its fallback) on the tick schedule: CPU seconds,
    digits reported, and what ran. ``law``: frames go in as mu-law bytes (feed_law)."""
    bank_cls = getattr(dtmf, "DtmfBank", None)
    count = len(frames[0])
    if bank_cls is None:
        detectors = [dtmf.DtmfDetector() for _ in frames]
        arrays = [[array.array("h", f.tobytes()) for f in fs] for fs in frames]
        events = 0
        gc.collect()
        start = time.process_time()
        for k in range(count):
            for group in groups:
                for i in group:
                    events += len(detectors[i].feed(arrays[i][k]))
        return time.process_time() - start, events, "DtmfDetector/stream (no DtmfBank)"
    bank = bank_cls()
    ended = [0]

    def on_end(_event: object) -> None:
        ended[0] += 1

    streams = [bank.add(on_start=None, on_end=on_end) for _ in frames]
    if law:
        data = [[corpus.encode(f, "ulaw") for f in fs] for fs in frames]
        gc.collect()
        start = time.process_time()
        for k in range(count):
            for group in groups:
                for i in group:
                    streams[i].feed_law(data[i][k], "ulaw")
                bank.process()
        how = "DtmfBank feed_law(mu-law)"
    else:
        gc.collect()
        start = time.process_time()
        for k in range(count):
            for group in groups:
                for i in group:
                    streams[i].feed(frames[i][k])
                bank.process()
        how = "DtmfBank feed(int16)"
    cpu = time.process_time() - start
    for s in streams:
        s.close()
    return cpu, ended[0], how


def cpu_spandsp(sp: Spandsp, frames: list[list[np.ndarray]],
                groups: list[list[int]]) -> tuple[float, int]:
    rxs = [sp.receiver() for _ in frames]
    pointers = [[f.ctypes.data for f in fs] for fs in frames]
    count = len(frames[0])
    gc.collect()
    start = time.process_time()
    for k in range(count):
        for group in groups:
            for i in group:
                rxs[i].feed_pointer(pointers[i][k], FRAME)
    cpu = time.process_time() - start
    digits = sum(len(rx.detections) for rx in rxs)
    for rx in rxs:
        rx.close()
    return cpu, digits


def cpu_single(frames: list[np.ndarray], kind: str) -> tuple[float, int]:
    detector = dtmf.DtmfDetector()
    feed = detector.feed
    data = [array.array("h", f.tobytes()) for f in frames] if kind == "array" else frames
    events = 0
    gc.collect()
    start = time.process_time()
    for f in data:
        events += len(feed(f))
    return time.process_time() - start, events


LADDER = (30, 120, 480, 1920, 7680)


def measure_cpu(sp: Spandsp, seconds: float, streams: int) -> tuple[int, int]:
    print(f"\nCPU per channel-second of audio (mu-law line; {streams} streams x {seconds:g} s "
          f"per input; frames of 20 ms arriving at random phases, the bank processed every "
          f"{PROCESS_MS} ms, streams at random "
          f"phases; channels per core = 1 / it; digits = reported per channel-second):")
    if not hasattr(dtmf, "DtmfBank"):
        print("  NOTE: uascall.media.dtmf has no DtmfBank yet: the production-path rows are "
              "one DtmfDetector per stream, fed on the same schedule")
    inputs = cpu_inputs(max(seconds, 3.0))
    groups = schedule(streams)
    chans = seconds * streams
    has_bank = hasattr(dtmf, "DtmfBank")
    # the production path: uascall.media.inbound feeds each call's G.711 frames with
    # feed_law; without a bank, one DtmfDetector per stream
    paths = [True, False] if has_bank else [False]
    slowest: dict[bool, tuple[float, str]] = {law: (math.inf, "") for law in paths}
    spandsp_worst = math.inf
    for name, x in inputs.items():
        frames = stream_frames(x, streams, seconds)
        rows = []
        for law in paths:
            cpu, events, how = cpu_bank(frames, groups, law=law)
            rows.append((f"uascall {how}", cpu, events, chans))
            slowest[law] = min(slowest[law], (chans / cpu, name))
        for kind in ("array", "numpy"):
            cpu1, ev1 = cpu_single(frames[0], kind)
            label = "array('h')" if kind == "array" else "numpy int16"
            rows.append((f"uascall DtmfDetector.feed {label}", cpu1, ev1, seconds))
        sp_cpu, sp_digits = cpu_spandsp(sp, frames, groups)
        spandsp_worst = min(spandsp_worst, chans / sp_cpu)
        rows.append(("spandsp dtmf_rx (ctypes)", sp_cpu, sp_digits, chans))
        print(f"  {name}:")
        for label, c, n, ch in rows:
            print(f"    {label:40} {c / ch * 1e6:9.1f} us/ch-s {ch / c:9.0f} ch/core "
                  f"{n / ch:6.2f} digits/ch-s")
    # A bank batches the streams queued at each process(): the more streams, the cheaper
    # each can be. The capacity is where N streams need one core: max over N of
    # min(N, C(N)), on a ladder of N, on the path's slowest input.
    headline = 0.0
    for law in paths:
        name = slowest[law][1]
        best = 0.0
        fits, fails = 0, 0

        def trial(n: int, law: bool = law, name: str = name) -> float:
            frames = stream_frames(inputs[name], n, 3.0)
            cpu, _, how = cpu_bank(frames, schedule(n), law=law)
            capacity = n * 3.0 / cpu
            if n == LADDER[0]:
                print(f"  uascall {how}, capacity by streams on its slowest input ({name}), "
                      f"3 s each:")
            print(f"    {n:5} streams: {cpu / (n * 3.0) * 1e6:9.1f} us/ch-s "
                  f"{capacity:9.0f} ch/core")
            return capacity

        for n in LADDER:
            capacity = trial(n)
            best = max(best, min(n, capacity))
            if capacity < n:
                fails = n
                break
            fits = n
        # between the last N that fits and the first that does not: a few geometric steps
        for _ in range(3 if fits and fails else 0):
            n = round(math.sqrt(fits * fails) / 10) * 10
            if not fits < n < fails:
                break
            capacity = trial(n)
            best = max(best, min(n, capacity))
            fits, fails = (n, fails) if capacity >= n else (fits, n)
        print(f"    => {best:.0f} channels per core")
        if law == paths[0]:
            headline = best
    print(f"  headline: uascall {headline:.0f} channels per core (production path: "
          f"{'DtmfBank feed_law' if has_bank else 'DtmfDetector per stream'}); spandsp "
          f"{spandsp_worst:.0f} (its cost per stream does not depend on N; slowest input)")
    return math.floor(headline), math.floor(spandsp_worst)


# --------------------------------------------------------------------------- main

def spandsp_version() -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libspandsp2"],
                             capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None,
                        help="audio per stream for the CPU figures (default 10, quick 3)")
    parser.add_argument("--streams", type=int, default=None,
                        help="streams for the CPU figures (default 120, quick 30)")
    parser.add_argument("--quick", action="store_true",
                        help="coarse sweeps, short CPU runs, talk-off speech at 0 dB only")
    args = parser.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    streams = args.streams or (30 if args.quick else 120)
    sp = Spandsp()
    print(f"# {platform.machine()}, Python {platform.python_version()}, numpy "
          f"{np.__version__}, spandsp {spandsp_version()} (defaults), uascall "
          f"DtmfBank: {'yes' if hasattr(dtmf, 'DtmfBank') else 'no'}")
    try:
        talk = corpus.corpus_seconds()
    except corpus.ToolMissing as exc:
        raise SystemExit(str(exc)) from None
    print(f"# talk-off corpora: speech {talk['speech']:.0f} s ({len(corpus.VOICES)} "
          f"renderings), music {talk['music']:.0f} s, own media {talk['own media']:.0f} s; "
          f"each through both laws at gains {corpus.TALKOFF_GAINS_DB}")
    detectors: dict[str, Callable] = {"uascall": run_uascall, "spandsp": sp.run}
    conditions = corpus.standard_conditions()
    if args.quick:
        conditions = [c for c in conditions
                      if not (c.kind == "talkoff-speech" and "+0dB" not in c.name)]
        print("# quick: talk-off speech at 0 dB only")
    started = time.monotonic()
    detail: dict[str, list[str]] = {n: [] for n in detectors}
    groups = standard(conditions, detectors, detail)
    print(f"\nThe standard (reference/dtmf.md), both laws ({time.monotonic() - started:.0f} s):")
    print_standard(groups, standard.meta, list(detectors))  # type: ignore[attr-defined]

    must = {n: Tally() for n in detectors}
    talkoff = dict.fromkeys(detectors, 0)
    meta = standard.meta  # type: ignore[attr-defined]
    for group, row in groups.items():
        c = meta[group]
        for n, t in row.items():
            if c.figure == "talk-off":
                talkoff[n] += t.digits
            elif c.must_detect and not c.info:
                must[n].trials += t.trials
                must[n].right += t.right
    for n in detectors:
        print(f"  {n}: must-detect trials right {must[n].right}/{must[n].trials}; "
              f"talk-off false digits {talkoff[n]}")

    characterise(detectors, args.quick)

    print("\nTalk-off detail (condition: segment: digits heard):")
    for n, lines in detail.items():
        print(f"  {n}: {len(lines)} segment(s) with digits")
        for line in lines[:25]:
            print(f"    {line}")
        if len(lines) > 25:
            print(f"    ... and {len(lines) - 25} more")

    ours, theirs = measure_cpu(sp, seconds, streams)
    print(f"RESULT dtmf_talkoff_false={talkoff['uascall']} "
          f"dtmf_detect_rate={must['uascall'].rate:.4f} dtmf_channels_per_core={ours} "
          f"spandsp_talkoff_false={talkoff['spandsp']} spandsp_channels_per_core={theirs}")


if __name__ == "__main__":
    main()
