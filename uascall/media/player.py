"""Pacing frames out: one shared 20 ms ticker, a player per call.

Theory of operation
-------------------
A :class:`MediaClock` (one per engine) ticks every 20 ms while any :class:`Player` is
active and asks each to *pump*: write as many frames as the stream's timeline says are due
by now, plus a small lead (three frames by default) so that the device never runs dry between
ticks. The timeline is counted from when the stream started, so a late tick (the engine was
busy) is caught up with several frames at once and the long-run rate is exact; a port that
is full (the device is ahead of our clock) simply takes the frame on a later tick.

Starting a stream writes its lead frames at once: the first in-band frame leaves the
player in the same engine iteration as the request, not a tick later. Replacing a source
keeps the timeline, so audio never overlaps or leaves a gap beyond the lead. A source the
player is done with (finished, stopped, replaced, failed) is closed at once, so that what
it holds (speech still being rendered) is let go.

Everything here runs on the engine thread.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from uascall.engine import Engine, TimerHandle
from uascall.errors import Error
from uascall.media.source import FRAME_SECONDS, FrameSource

log = logging.getLogger(__name__)

#: frames kept queued ahead of the timeline: 60 ms of slack for a late engine iteration
#: (the device's clock and ours tick out of phase, so one frame of that is spent on phase)
DEFAULT_LEAD = 3

#: where the media clock ticks on the engine's 20 ms grid: just after the RTP ticker (at
#: phase 0), whose packets must leave on time, where the players, three frames ahead,
#: can wait for it to finish
MEDIA_PHASE = 0.001


class FrameSink:
    """Where a player writes: ``write(frame) -> bool`` (False: full, try later)."""

    def write(self, frame: bytes) -> bool:
        raise NotImplementedError


class MediaClock:
    """The 20 ms ticker shared by every active player on an engine."""

    def __init__(self, engine: Engine, *, lead: int = DEFAULT_LEAD) -> None:
        self.engine = engine
        self.lead = lead
        self._active: dict[Player, None] = {}  # insertion-ordered set
        self._timer: TimerHandle | None = None
        self._next_tick = 0.0
        #: ticks that ran later than one frame after they were due (for benchmarks)
        self.late_ticks = 0

    def _activate(self, player: Player) -> None:
        self._active[player] = None
        if self._timer is None:
            self._next_tick = self.engine.next_on_grid(FRAME_SECONDS, MEDIA_PHASE)
            self._timer = self.engine.call_at(self._next_tick, self._tick)

    def _deactivate(self, player: Player) -> None:
        self._active.pop(player, None)

    def _tick(self) -> None:
        now = self.engine.time()
        if now - self._next_tick > FRAME_SECONDS:
            self.late_ticks += 1
        try:
            for player in list(self._active):
                player._pump_guarded(now)
        finally:
            if not self._active:
                self._timer = None
            else:
                self._next_tick = self.engine.next_tick(self._next_tick, now, FRAME_SECONDS,
                                                        MEDIA_PHASE)
                self._timer = self.engine.call_at(self._next_tick, self._tick)

    @property
    def active(self) -> int:
        return len(self._active)


class Player:
    """Plays one :class:`FrameSource` at a time to a sink, paced by a :class:`MediaClock`."""

    def __init__(self, clock: MediaClock, sink: FrameSink, *, name: str = "player") -> None:
        self.clock = clock
        self.sink = sink
        self.name = name
        self._source: FrameSource | None = None
        self._on_done: Callable[[str], None] | None = None
        self._start = 0.0
        self._written = 0
        self._pending: bytes | None = None  # a frame the sink refused, written first later
        self.frames_written = 0

    def __repr__(self) -> str:
        return f"<Player {self.name} {'playing' if self.playing else 'idle'}>"

    @property
    def playing(self) -> bool:
        return self._source is not None

    @property
    def plays_until(self) -> float:
        """When the far end has heard the last frame written (engine time; the past once
        it has): a play just finished still has its lead queued on the device."""
        return self._start + self._written * FRAME_SECONDS

    def play(self, source: FrameSource, on_done: Callable[[str], None] | None = None) -> None:
        """Start ``source`` now, replacing what was playing (its ``on_done`` gets
        "replaced"). ``on_done`` gets "finished", "stopped", "replaced" or "failed"."""
        previous, replaced = self._on_done, self._source
        if self._source is None:
            self._start = self.clock.engine.time()
            self._written = 0
        self._pending = None
        self._source, self._on_done = source, on_done
        if replaced is not None and replaced is not source:
            _close(replaced, self.name)
        if previous is not None:
            previous("replaced")
        self.clock._activate(self)
        self._pump_guarded(self.clock.engine.time())

    def stop(self, reason: str = "stopped") -> None:
        """Stop playing; the frames already queued on the device still go out."""
        if self._source is None:
            return
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        on_done, source = self._on_done, self._source
        self._source = None
        self._on_done = None
        self._pending = None
        self.clock._deactivate(self)
        if source is not None:
            _close(source, self.name)
        if on_done is not None:
            on_done(reason)

    def _pump_guarded(self, now: float) -> None:
        try:
            self._pump(now)
        except Error as exc:  # the source could not go on (speech that failed to render)
            log.warning("%s: playback stops: %s", self.name, exc)
            self._finish("failed")
        except Exception:  # a broken source or port must not silence every other call
            log.exception("%s: playback failed", self.name)
            self._finish("failed")

    def _pump(self, now: float) -> None:
        source = self._source
        if source is None:
            return
        # Frames due: every frame whose play-out starts before now, plus the lead.
        due = math.ceil((now - self._start) / FRAME_SECONDS - 1e-9) + self.clock.lead
        try:
            while self._written < due:
                frame = self._pending
                if frame is None:
                    frame = source.next_frame()
                    if frame is None:
                        self._finish("finished")
                        return
                if not self.sink.write(frame):
                    self._pending = frame  # the device is ahead of our clock: later
                    return
                self._pending = None
                self._written += 1
                self.frames_written += 1
        except OSError as exc:
            log.warning("%s: writing failed (%s); playback stops", self.name, exc)
            self._finish("failed")


def _close(source: FrameSource, name: str) -> None:
    try:
        source.close()
    except Exception:  # closing is letting go: it must not stop the player's bookkeeping
        log.exception("%s: closing %r failed", name, source)
