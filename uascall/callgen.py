"""The call generator behind ``uascall call``: many instances of an outbound application.

Each call is one instance of the application (:meth:`AppHost.start_outbound`): its
``main`` gets the destination as ``outbound_parameters`` and places the call itself. The
generator starts ``calls`` instances, ``rate`` new ones a second, never more than
``concurrent`` running at once (when that many run, the next start waits for one to end,
and the rate counts on from there: no burst to catch up). It reports progress (started,
running, answered, ended, the rate) while it runs and returns a :class:`Summary`: how
many calls ended with each channel cause and each return code, how many were answered,
and the setup times (from the call's start to its answer) as percentiles.

Time is the engine's: on a virtual clock the whole run takes no real time (the thread
calling :meth:`CallGenerator.run` must be an actor then, as ``uascall call --virtual``'s
is). A ``stop`` event (Ctrl-C) ends the starting, hangs up the calls still up and waits
for their instances (:meth:`AppHost.shutdown`).
"""

from __future__ import annotations

import collections
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from uascall.app import AppHost, CallRecord
from uascall.channel import ChannelEvent, State, StateChanged, UASCallChannel
from uascall.errors import ArgumentError

log = logging.getLogger(__name__)

#: longest a wait of the generator lasts before it looks at ``stop`` and the progress
#: again (engine time)
SLICE = 0.25


@dataclass(frozen=True)
class Progress:
    """Where a run is, for a progress line."""

    planned: int
    started: int
    running: int
    answered: int
    ended: int
    elapsed: float

    def line(self) -> str:
        rate = self.started / self.elapsed if self.elapsed > 0 else 0.0
        return (f"started {self.started}/{self.planned}, running {self.running}, answered "
                f"{self.answered}, ended {self.ended}; {rate:.1f} calls/s, "
                f"{self.elapsed:.1f} s")


@dataclass
class Summary:
    """What a run did. ``failures`` counts the instances that returned a negative code."""

    planned: int
    started: int = 0
    ended: int = 0
    answered: int = 0
    failures: int = 0
    #: seconds from the first start to the last one, and to the last instance's end
    starting: float = 0.0
    elapsed: float = 0.0
    peak_running: int = 0
    interrupted: bool = False
    by_cause: collections.Counter[str] = field(default_factory=collections.Counter)
    by_return_code: collections.Counter[int] = field(default_factory=collections.Counter)
    #: seconds from each answered call's start to its answer (engine time)
    setup_times: list[float] = field(default_factory=list)

    def percentile(self, fraction: float) -> float | None:
        """The setup time ``fraction`` (0..1) of the answered calls took at most
        (nearest rank); None when none was answered."""
        times = sorted(self.setup_times)
        if not times:
            return None
        rank = max(1, math.ceil(fraction * len(times)))
        return times[rank - 1]

    def render(self) -> str:
        rate = (self.started - 1) / self.starting if self.starting > 0 else 0.0
        lines = [f"{self.started} of {self.planned} calls started in {self.starting:.1f} s "
                 f"({rate:.1f} calls/s), at most {self.peak_running} at once; "
                 f"{self.ended} ended after {self.elapsed:.1f} s"]
        if self.interrupted:
            lines.append("interrupted: no more calls started, the calls up were hung up")
        lines.append(f"answered: {self.answered}, not answered: {self.ended - self.answered}")
        lines.append("by cause:")
        lines += [f"  {cause:<14} {count}" for cause, count in
                  sorted(self.by_cause.items(), key=lambda item: (-item[1], item[0]))]
        lines.append("by return code:")
        lines += [f"  {rc:<14} {count}" for rc, count in sorted(self.by_return_code.items())]
        if self.setup_times:
            points = ", ".join(f"p{round(p * 100)} {self.percentile(p):.3f} s"
                               for p in (0.5, 0.9, 0.99))
            lines.append(f"setup time (call to answer): {points}, max "
                         f"{max(self.setup_times):.3f} s")
        return "\n".join(lines)


def _positive(name: str, value: float | None, *, whole: bool) -> None:
    if value is None:
        return
    kind = int if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0 \
            or not math.isfinite(value):
        raise ArgumentError(f"{name}={value!r}; expected a {'whole ' if whole else ''}"
                            "number > 0" + ("" if whole else " (or None: no limit)"))


class CallGenerator:
    """Starts ``calls`` instances of ``host``'s outbound application with
    ``outbound_parameters``, ``rate`` a second (None: as fast as ``concurrent`` allows),
    at most ``concurrent`` at once (None: no limit). ``progress`` is called every
    ``progress_interval`` seconds of engine time, and once at the end, on the thread
    that runs the generator. It hooks the host's ``on_channel`` and ``on_record``."""

    def __init__(self, host: AppHost, outbound_parameters: str, *, calls: int,
                 rate: float | None = None, concurrent: int | None = None,
                 progress: Callable[[Progress], None] | None = None,
                 progress_interval: float = 1.0) -> None:
        _positive("calls", calls, whole=True)
        _positive("rate", rate, whole=False)
        _positive("concurrent", concurrent, whole=True)
        _positive("progress_interval", progress_interval, whole=False)
        self.host = host
        self.outbound_parameters = outbound_parameters
        self.calls = calls
        self.rate = rate
        self.concurrent = concurrent
        self.progress = progress
        self.progress_interval = progress_interval
        self.summary = Summary(calls)
        self._lock = threading.Lock()
        self._start = 0.0
        earlier_channel, earlier_record = host.on_channel, host.on_record

        def on_channel(channel: UASCallChannel) -> None:
            if earlier_channel is not None:
                earlier_channel(channel)
            self._follow(channel)

        def on_record(record: CallRecord) -> None:
            if earlier_record is not None:
                earlier_record(record)
            self._ended(record)

        host.on_channel, host.on_record = on_channel, on_record

    def _follow(self, channel: UASCallChannel) -> None:
        """Hear when the instance's call starts and is answered (engine thread)."""
        engine = self.host.engine
        placed: list[float] = []

        def listener(_channel: UASCallChannel, event: ChannelEvent) -> None:
            if not isinstance(event, StateChanged):
                return
            if event.state is State.CALL_OUTGOING:
                placed[:] = [engine.time()]
            elif event.state is State.ANSWERED and placed:
                # only this thread writes these two, so no lock (nothing blocks the engine)
                if not answered:  # an instance that calls twice counts once
                    self.summary.answered += 1
                    answered.append(True)
                self.summary.setup_times.append(round(engine.time() - placed.pop(), 6))

        answered: list[bool] = []
        channel.listeners.append(listener)

    def _ended(self, record: CallRecord) -> None:
        with self._lock:
            summary = self.summary
            summary.ended += 1
            summary.by_cause[record.cause] += 1
            summary.by_return_code[record.return_code] += 1
            if record.return_code < 0:
                summary.failures += 1
            summary.elapsed = self.host.engine.time() - self._start

    # ------------------------------------------------------------------ running
    def run(self, stop: threading.Event | None = None, *,
            shutdown_timeout: float = 10.0) -> Summary:
        """Start the calls and wait for every instance to end; returns the summary. When
        ``stop`` is set meanwhile, no more are started and the host is shut down: the
        calls up are hung up and instances that do not return within
        ``shutdown_timeout`` are recorded with -9 (and the backend stopped)."""
        stop = stop or threading.Event()
        engine = self.host.engine
        summary = self.summary
        self._start = engine.time()
        self._next_progress = self._start + self.progress_interval
        interval = 1.0 / self.rate if self.rate else 0.0
        next_at = self._start
        while summary.started < self.calls and not stop.is_set():
            if self.concurrent is not None and self.host.running_count >= self.concurrent:
                self._wait(lambda: self.host.running_count < self.concurrent)
                next_at = max(next_at, engine.time())
                continue
            now = engine.time()
            if now < next_at:
                self._pause(min(next_at - now, SLICE), stop)
                continue
            self.host.start_outbound(self.outbound_parameters)
            with self._lock:
                summary.started += 1
                summary.starting = engine.time() - self._start
                summary.peak_running = max(summary.peak_running, self.host.running_count)
            next_at += interval
            self._report()
        while not stop.is_set() and self._ended_count() < summary.started:
            self._wait(lambda: self._ended_count() >= summary.started)
        if stop.is_set():
            summary.interrupted = True
            log.info("stopped after %d of %d calls; hanging up the calls still up",
                     summary.started, self.calls)
            self.host.shutdown(shutdown_timeout)
        with self._lock:
            summary.elapsed = engine.time() - self._start
        self._report(final=True)
        return summary

    def _ended_count(self) -> int:
        return self.summary.ended

    def _wait(self, condition: Callable[[], bool]) -> None:
        """Until ``condition`` (checked on the engine thread) holds, the next progress
        report, or a slice passes."""
        engine = self.host.engine
        limit = SLICE
        if self.progress is not None:
            limit = max(0.0, min(SLICE, self._next_progress - engine.time()))
        engine.wait_until(condition, limit)
        self._report()

    def _pause(self, seconds: float, stop: threading.Event) -> None:
        engine = self.host.engine
        if engine.clock.virtual:
            engine.sleep(seconds)
        else:
            stop.wait(seconds)  # Ctrl-C ends it at once
        self._report()

    def _report(self, final: bool = False) -> None:
        if self.progress is None:
            return
        now = self.host.engine.time()
        if not final and now < self._next_progress:
            return
        self._next_progress = now + self.progress_interval
        with self._lock:
            summary = self.summary
            progress = Progress(self.calls, summary.started, self.host.running_count,
                                summary.answered, summary.ended, now - self._start)
        try:
            self.progress(progress)
        except Exception:
            log.exception("the progress report failed")
