"""The media clock and players, in virtual time: pacing, a full port, replacing a source,
and one broken call not silencing the others."""

from __future__ import annotations

import pytest

from uascall.engine import Engine, VirtualClock
from uascall.media.player import DEFAULT_LEAD, MediaClock, Player
from uascall.media.source import BufferSource, FrameSource

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
