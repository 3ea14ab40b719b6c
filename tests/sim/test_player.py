"""The media clock and players, in virtual time: pacing, a full port, replacing a source,
one broken call not silencing the others, sources closed when done, and audio played as
it is made (GrowingSource)."""

from __future__ import annotations

import pytest

from uascall.engine import Engine, VirtualClock
from uascall.errors import Error
from uascall.media.player import DEFAULT_LEAD, MEDIA_PHASE, MediaClock, Player
from uascall.media.source import FRAME_SECONDS, BufferSource, FrameSource, GrowingSource

FRAME = 160


class Sink:
    """Takes frames; refuses while ``full``; raises ``fail`` once ``fail_at`` were taken."""

    def __init__(self, fail_at: int | None = None, fail: type[Exception] = ValueError) -> None:
        self.frames: list[bytes] = []
        self.full = False
        self.fail_at, self.fail = fail_at, fail

    def write(self, frame: bytes) -> bool:
        if self.fail_at is not None and len(self.frames) == self.fail_at:
            raise self.fail(f"sink broke after {self.fail_at} frames")
        if self.full:
            return False
        self.frames.append(frame)
        return True


class Numbered(FrameSource):
    """Frames that say which they are; raises at frame ``fail_at``."""

    law = "alaw"

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count, self.fail_at, self.n = count, fail_at, 0

    @property
    def duration(self) -> float:
        return self.count * 0.02

    def next_frame(self) -> bytes | None:
        if self.n == self.fail_at:
            raise RuntimeError("decoder bug")
        if self.n == self.count:
            return None
        self.n += 1
        return self.n.to_bytes(4, "big") * (FRAME // 4)


HALF = 0.01  # sleeps end between ticks: a tick due at the very same instant may run either side


@pytest.fixture
def engine():
    with Engine(VirtualClock()) as engine, engine.actor():
        # The media clock ticks on the engine's 20 ms grid (at MEDIA_PHASE): a test that
        # starts there has its ticks 20, 40, 60... ms after its first play starts.
        engine.sleep(engine.next_on_grid(FRAME_SECONDS, MEDIA_PHASE) - engine.time())
        yield engine


def frames(count: int) -> BufferSource:
    return BufferSource(b"\x55" * FRAME * count, "alaw")


def test_frames_go_out_at_50_per_second_plus_the_lead(engine):
    clock, sink = MediaClock(engine), Sink()
    player = Player(clock, sink)
    engine.run(player.play, frames(1000))
    assert len(sink.frames) == DEFAULT_LEAD  # the first frames leave at once
    engine.sleep(2.0 + HALF)
    assert len(sink.frames) == 100 + DEFAULT_LEAD
    engine.sleep(8.0)
    assert len(sink.frames) == 500 + DEFAULT_LEAD


def test_a_full_port_gets_the_same_frame_again_later(engine):
    clock, sink = MediaClock(engine), Sink()
    player = Player(clock, sink)
    engine.run(player.play, Numbered(100))
    sink.full = True
    engine.sleep(0.2)
    sink.full = False
    engine.sleep(0.1)
    numbers = [int.from_bytes(f[:4], "big") for f in sink.frames]
    assert numbers == list(range(1, len(numbers) + 1))  # nothing lost, nothing twice
    assert len(numbers) == 15 + DEFAULT_LEAD  # caught up with the timeline at once


def test_replacing_keeps_the_timeline_and_reports_why_each_ended(engine):
    clock, sink = MediaClock(engine), Sink()
    player = Player(clock, sink)
    ended: list[tuple[str, str]] = []
    engine.run(player.play, frames(1000), lambda why: ended.append(("first", why)))
    engine.sleep(1.0 + HALF)
    assert len(sink.frames) == 50 + DEFAULT_LEAD
    engine.run(player.play, frames(10), lambda why: ended.append(("second", why)))
    # the new source goes on from the old one's timeline: 1.01 s in, frame 51 is due, so
    # one frame more, not a fresh lead
    assert len(sink.frames) == 51 + DEFAULT_LEAD
    engine.sleep(1.0)
    assert ended == [("first", "replaced"), ("second", "finished")]
    assert not player.playing and clock.active == 0
    engine.run(player.play, frames(1000), lambda why: ended.append(("third", why)))
    engine.run(player.stop)
    assert ended[-1] == ("third", "stopped")


@pytest.mark.parametrize("broken", ["sink", "source"])
def test_one_broken_player_does_not_silence_the_others(engine, broken):
    clock = MediaClock(engine)
    good_sink = Sink()
    bad_sink = Sink(fail_at=5) if broken == "sink" else Sink()
    good, bad = Player(clock, good_sink, name="good"), Player(clock, bad_sink, name="bad")
    ended: list[str] = []
    engine.run(good.play, frames(500))
    engine.run(bad.play, frames(500) if broken == "sink" else Numbered(500, fail_at=10),
               ended.append)
    engine.sleep(2.0 + HALF)
    assert ended == ["failed"] and not bad.playing
    assert len(good_sink.frames) == 100 + DEFAULT_LEAD
    later_sink = Sink()  # a player started afterwards is paced too
    engine.run(Player(clock, later_sink).play, frames(500))
    engine.sleep(1.0)
    assert len(later_sink.frames) == 50 + DEFAULT_LEAD


def test_a_port_gone_for_good_ends_the_play(engine):
    clock, sink = MediaClock(engine), Sink(fail_at=20, fail=OSError)
    player = Player(clock, sink)
    ended: list[str] = []
    engine.run(player.play, frames(500), ended.append)
    engine.sleep(1.0)
    assert ended == ["failed"] and len(sink.frames) == 20 and clock.active == 0


def test_a_source_that_fails_at_once_ends_the_play_not_the_caller(engine):
    clock, sink = MediaClock(engine), Sink()
    player = Player(clock, sink)
    ended: list[str] = []
    engine.run(player.play, Numbered(10, fail_at=0), ended.append)  # does not raise
    assert ended == ["failed"] and not player.playing and clock.active == 0


# -- audio that is still being made (speech as espeak-ng renders it) ----------------------------


class GrowingFeed:
    """A Feed whose audio a test adds piece by piece (law bytes, as a rendering has)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.complete = False
        self.error: Exception | None = None
        self.closed = 0

    @property
    def available(self) -> int:
        return len(self.data)

    def encoded(self, law: str, start: int = 0, stop: int | None = None) -> bytes:
        return bytes(self.data[start:stop])

    def close(self) -> None:
        self.closed += 1


def test_growing_source_plays_silence_while_late_and_skips_nothing():
    feed = GrowingFeed()
    source = GrowingSource(feed, "alaw")
    silence = bytes([0xD5]) * FRAME
    assert source.next_frame() == silence  # nothing rendered yet: a gap
    feed.data += bytes(range(200))  # a frame and a bit
    assert source.next_frame() == bytes(range(160))
    assert source.next_frame() == silence  # the bit waits for the rest of its frame
    feed.data += bytes(range(200, 256)) + bytes(range(64))
    assert source.next_frame() == bytes(range(160, 256)) + bytes(range(64))
    assert not source.complete and source.duration == (2 * FRAME + 320) / 8000
    feed.data += b"\x01" * 10
    feed.complete = True  # the last frame is padded, and it ends
    assert source.complete and source.next_frame() == b"\x01" * 10 + silence[:150]
    assert source.next_frame() is None
    assert source.gap_frames == 2 and source.duration == (2 * FRAME + 330) / 8000
    source.close()
    assert feed.closed == 1


def test_growing_source_loops_once_complete_and_raises_the_feed_error():
    feed = GrowingFeed()
    looped = GrowingSource(feed, "ulaw", loop=True)
    feed.data += bytes(range(240))
    assert looped.next_frame() == bytes(range(160))
    feed.complete = True
    assert looped.next_frame() == bytes(range(160, 240)) + bytes(range(80))
    assert looped.duration is None
    failing = GrowingSource(GrowingFeed(), "alaw")
    failing._feed.error = Error("espeak-ng failed (exit status -9)")
    with pytest.raises(Error, match="exit status -9"):
        failing.next_frame()


class Closing(Numbered):
    closed = 0

    def close(self) -> None:
        self.closed += 1


def test_the_player_closes_every_source_it_is_done_with(engine):
    """Finished, replaced, stopped or failed: the source is closed once (what it holds,
    a rendering under way, is let go)."""
    player = Player(MediaClock(engine), Sink(), name="closing")
    finished, replaced, stopped, failing = Closing(2), Closing(100), Closing(100), \
        Closing(100, fail_at=1)
    engine.run(player.play, finished)
    engine.sleep(0.1)
    engine.run(player.play, replaced)
    engine.run(player.play, stopped)
    engine.run(player.stop)
    engine.run(player.play, failing)
    engine.sleep(0.1)
    assert [s.closed for s in (finished, replaced, stopped, failing)] == [1, 1, 1, 1]
