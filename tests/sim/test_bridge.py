"""The bridge's audio links on their own: clock slip over an hour, law conversion, keys.

A link is fed and drained by two clocks that differ, as two lines' (or a line's and this
machine's) do; the port is a model of a media port with a bounded queue that sends one
frame per tick of its own clock (as a DAHDI channel's kernel buffers and a SIP stream's
ticker do).
"""

from __future__ import annotations

import heapq
import math

import pytest

from tests import audio
from uascall.media import g711
from uascall.media.bridge import (
    BRIDGE_DEPTH,
    DIGIT_MS,
    KEY_MIN_OFF,
    KEY_MIN_ON,
    SETTLE_FRAMES,
    AudioLink,
)

FRAME = 0.020


class QueuePort:
    """A media port: ``limit_queue`` frames at most, one sent per tick of its clock."""

    def __init__(self, law: str = "ulaw", *, telephone_events: bool = False) -> None:
        self.law = law
        self.telephone_events = telephone_events
        self.limit = 5
        self.queue: list[bytes] = []
        self.sent: list[bytes] = []
        self.underruns = 0
        self.max_depth = 0
        self.digits: list[tuple[str, int]] = []
        self.knows_depth = True
        self.depths: list[int] = []  # before each frame written

    def limit_queue(self, frames: int | None) -> None:
        self.limit = 5 if frames is None else max(2, frames)

    def queued(self) -> int | None:
        return len(self.queue) if self.knows_depth else None

    def write(self, frame: bytes) -> bool:
        self.depths.append(len(self.queue))
        if len(self.queue) >= self.limit:
            return False
        self.queue.append(frame)
        self.max_depth = max(self.max_depth, len(self.queue))
        return True

    def tick(self) -> None:
        if self.queue:
            self.sent.append(self.queue.pop(0))
        else:
            self.underruns += 1

    def send_digit(self, digit: str, duration_ms: int) -> None:
        self.digits.append((digit, duration_ms))

    sounds_digits = False  # no tone generator of its own: the bridge plays the key

    def start_digit(self, digit: str) -> bool:
        return False

    def stop_digit(self) -> None:
        pass


class KeyingPort(QueuePort):
    """A port whose line sounds a key itself while it is held down, as a DAHDI channel's
    kernel does (DAHDI_SENDTONE): from the key down, in place of the queue (which it
    drops), until the key up or a write, which stops it; ``line`` is what it sent, tick
    by tick ("4" for a key's frame)."""

    sounds_digits = True

    def __init__(self, law: str = "alaw") -> None:
        super().__init__(law)
        self.pressed: list[str] = []
        self.down: str | None = None
        self.cut = 0  # keys a write stopped
        self.line: list[bytes | str] = []

    def start_digit(self, digit: str) -> bool:
        self.pressed.append(digit)
        self.queue.clear()  # DAHDI_FLUSH_WRITE: the key starts at once
        self.down = digit
        return True

    def stop_digit(self) -> None:
        self.down = None

    def write(self, frame: bytes) -> bool:
        if self.down is not None:
            self.cut += 1
            self.down = None
        return super().write(frame)

    def tick(self) -> None:
        if self.queue:  # the kernel sends what is written before any tone
            self.line.append(self.queue[0])
            super().tick()
        elif self.down is not None:
            self.line.append(self.down)
        else:
            self.line.append(b"")
            self.underruns += 1


def numbered(n: int) -> bytes:
    """A frame that says which it was (its first bytes)."""
    return n.to_bytes(4, "big") + bytes(156)


def run(link: AudioLink, port: QueuePort, seconds: float, source_ppm: float,
        sink_ppm: float, *, phase: float = 0.0077) -> int:
    """Feed ``link`` from a clock ``source_ppm`` off and drain ``port`` by one
    ``sink_ppm`` off, for ``seconds``; returns the frames fed."""
    source_period = FRAME * (1 + source_ppm * 1e-6)
    sink_period = FRAME * (1 + sink_ppm * 1e-6)
    events = [(0.0, 0, "source"), (phase, 1, "sink")]
    fed = 0
    while events:
        at, _order, what = heapq.heappop(events)
        if at > seconds:
            break
        if what == "source":
            link.heard(numbered(fed), port.law)
            fed += 1
            heapq.heappush(events, (fed * source_period, 0, "source"))
        else:
            port.tick()
            heapq.heappush(events, (at + sink_period, 1, "sink"))
    return fed


@pytest.mark.parametrize("knows_depth", [True, False], ids=["sip-like", "dahdi-like"])
@pytest.mark.parametrize("source_ppm, sink_ppm", [(100, -100), (-100, 100), (0, 0),
                                                  (32, 0)])
def test_an_hour_of_two_clocks_never_grows_the_queue(source_ppm, sink_ppm, knows_depth):
    port = QueuePort()
    port.knows_depth = knows_depth
    link = AudioLink(port)
    link.open()
    fed = run(link, port, 3600.0, source_ppm, sink_ppm)
    assert port.limit == BRIDGE_DEPTH and port.max_depth <= BRIDGE_DEPTH
    # what the two clocks differ by over the hour, in frames, is what slips (either way)
    drift = 3600.0 * abs(source_ppm - sink_ppm) * 1e-6 / FRAME
    if knows_depth:
        # a frame waits behind another only until the bridge sees the source is ahead
        assert sum(depth > 1 for depth in port.depths) <= (drift + 2) * SETTLE_FRAMES
    if source_ppm < sink_ppm:  # the source's frames come faster than the port sends
        assert link.slips == pytest.approx(drift, abs=2)
        assert port.underruns <= 1
    else:
        assert link.slips == 0
        assert port.underruns == pytest.approx(drift, abs=2)
    # in order, nothing repeated; each frame is late by at most the depth
    order = [int.from_bytes(frame[:4], "big") for frame in port.sent]
    assert order == sorted(set(order))
    assert fed - len(port.sent) - link.slips <= BRIDGE_DEPTH
    link.close()
    assert port.limit == 5  # the port's own queue again


def test_a_burst_of_two_frames_fits_behind_the_one_going_out():
    port = QueuePort()
    link = AudioLink(port)
    link.open()
    for n in range(3):  # one waiting, then two that a late engine iteration delivers at once
        link.heard(numbered(n), "ulaw")
    assert link.slips == 0 and len(port.queue) == 3
    link.heard(numbered(3), "ulaw")
    assert link.slips == 1  # the fourth would be 60 ms late: it slips


@pytest.mark.parametrize("source, target", [("alaw", "ulaw"), ("ulaw", "alaw")])
def test_frames_are_converted_where_the_laws_differ(source, target):
    port = QueuePort(target)
    port.limit = 100
    link = AudioLink(port)
    tone = [round(8000 * math.sin(2 * math.pi * 1004 * n / 8000)) for n in range(8000)]
    sent = g711.codec(source).encode(tone)
    for at in range(0, 8000, 160):
        link.heard(sent[at:at + 160], source)
    link.heard(g711.codec(target).encode(tone[:160]), target)  # the same law: as it is
    assert port.queue[-1] == g711.codec(target).encode(tone[:160])
    heard = audio.decode(b"".join(port.queue[:-1]), target)
    before = audio.decode(sent, source)
    # the same signal, give or take the second law's quantisation: where the two laws'
    # steps lie half a step apart (as they do here) a level moves by up to 0.2 dB
    assert audio.db(audio.rms(heard) / audio.rms(before)) == pytest.approx(0.0, abs=0.25)
    assert max(abs(a - b) for a, b in zip(heard, before, strict=True)) <= 256
    assert audio.dominant_frequency(heard) == pytest.approx(1004, abs=2)


def test_a_key_heard_in_band_goes_on_in_band_to_a_port_without_events():
    port = QueuePort()
    link = AudioLink(port)
    link.key("5", in_band=True)
    assert port.digits == [] and not port.queue  # the tone itself is in the audio


def test_a_key_from_out_of_band_is_played_in_band_where_events_are_not_taken():
    port = QueuePort("alaw")
    link = AudioLink(port)
    link.key("7", in_band=False)
    silence = g711.codec("ulaw").silence_frame
    for _ in range(10):
        link.heard(silence, "ulaw")
    heard = audio.decode(b"".join(port.queue), "alaw")
    assert audio.dtmf_keys(heard, "alaw") == "7"
    runs = audio.on_off_segments(heard, law="alaw")
    assert runs[0] == (True, pytest.approx(DIGIT_MS / 1000, abs=0.021))


class Clock:
    """The engine's time for a link, moved on by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def runs_of(line: list[bytes | str]) -> list[tuple[bytes | str, int]]:
    """What a port sent, as (what, ticks) runs."""
    runs: list[tuple[bytes | str, int]] = []
    for item in line:
        if runs and runs[-1][0] == item:
            runs[-1] = (item, runs[-1][1] + 1)
        else:
            runs.append((item, 1))
    return runs


def test_a_key_from_out_of_band_is_sounded_by_a_port_that_has_a_generator():
    """Towards a DAHDI channel the kernel sounds the key at once (the audio queued is
    dropped), held down for KEY_MIN_ON where the key's end is not known; nothing is
    written while it sounds (a write would stop it), however many frames arrive meanwhile
    (a late engine's burst); two keys in a row go in turn, KEY_MIN_OFF apart, the
    destination call told of each (its echo guard), and the audio comes back after."""
    port = KeyingPort("alaw")
    clock = Clock()
    told: list[tuple[str, float]] = []
    link = AudioLink(port, sent_key=lambda digit, at: told.append((digit, at)), now=clock)
    link.open()
    speech = numbered(1)
    link.heard(speech, "alaw")
    link.key("4", in_band=False)
    link.key("#", in_band=False)
    assert port.queue == [] and port.down == "4"
    for _ in range(20):  # a burst: no time has passed
        link.heard(speech, "alaw")
    assert port.queue == [] and link.frames_in == 21
    for _ in range(20):
        clock.now += FRAME
        port.tick()
        link.heard(speech, "alaw")
    # 4 for KEY_MIN_ON (to the next frame), the pause for KEY_MIN_OFF (speech written in
    # it goes out), # for KEY_MIN_ON, then speech again
    on, off = math.ceil(KEY_MIN_ON / FRAME - 1e-9), math.ceil(KEY_MIN_OFF / FRAME - 1e-9)
    assert port.pressed == ["4", "#"] and port.cut == 0
    assert told == [("4", 0.0), ("#", pytest.approx((on + off) * FRAME))]
    assert [(what if isinstance(what, str) else "audio", ticks)
            for what, ticks in runs_of(port.line)][:4] == [
        ("4", on), ("audio", off), ("#", on), ("audio", 20 - 2 * on - off)]
    assert port.queue == [speech] and link.slips == 0


def test_a_key_heard_in_band_is_sounded_by_a_port_that_has_a_generator_while_held():
    """A key heard in band towards a DAHDI channel is not passed on frame by frame, which
    a late engine breaks in two or cuts short (the vm rig: '1559#' and '15#' for '159#'):
    the kernel sounds it from its recognition for as long as the far end holds it (300 ms
    here), the frames that carried its start and were still queued are dropped, so the
    far end hears the kernel's tone right after what it heard of the first one, and talk
    goes on as soon as the key is up."""
    port = KeyingPort("ulaw")
    clock = Clock()
    told: list[str] = []
    held = [False]
    link = AudioLink(port, key_held=lambda: held[0], key_down=lambda: held[0],
                     sent_key=lambda digit, _at: told.append(digit), now=clock)
    link.open()
    speech, tone = numbered(1), numbered(2)
    link.heard(speech, "ulaw")
    clock.now += FRAME
    port.tick()
    link.heard(tone, "ulaw")  # the key's start, before the detector knew it
    held[0] = True
    link.key("9", in_band=True)
    for _ in range(15):  # the key held 300 ms: its tone is never written
        clock.now += FRAME
        port.tick()
        link.heard(tone, "ulaw")
    assert port.line == [speech] + ["9"] * 15 and port.queue == []
    held[0] = False
    clock.now += FRAME
    port.tick()
    link.heard(speech, "ulaw")
    assert port.down is None and port.queue == [speech]
    assert told == ["9"] and port.pressed == ["9"] and port.cut == 0


def test_a_quick_key_is_held_long_enough_and_the_next_waits_for_its_pause():
    """A key let go 20 ms after it was recognised is still held KEY_MIN_ON, and one
    pressed right after it waits KEY_MIN_OFF: every receiver takes each (Q.24: 40 ms)."""
    port = KeyingPort("ulaw")
    clock = Clock()
    held = [True]
    link = AudioLink(port, key_held=lambda: held[0], key_down=lambda: held[0], now=clock)
    link.open()
    silence = g711.codec("ulaw").silence_frame
    link.key("1", in_band=True)
    clock.now += FRAME
    held[0] = False
    link.heard(silence, "ulaw")
    assert port.down == "1"  # 20 ms: too short to let go
    held[0] = True
    link.key("2", in_band=True)
    for _ in range(12):
        clock.now += FRAME
        port.tick()
        link.heard(silence, "ulaw")
    held[0] = False
    for _ in range(6):
        clock.now += FRAME
        port.tick()
        link.heard(silence, "ulaw")
    runs = [(what if isinstance(what, str) else "pause", ticks)
            for what, ticks in runs_of(port.line)]
    # the first tick is 20 ms after the key went down
    on, off = math.ceil(KEY_MIN_ON / FRAME - 1e-9), math.ceil(KEY_MIN_OFF / FRAME - 1e-9)
    assert runs[0] == ("1", on - 1) and runs[1] == ("pause", off) and runs[2][0] == "2", runs
    assert port.pressed == ["1", "2"] and port.cut == 0


def test_a_key_goes_as_an_event_where_the_port_takes_them_and_its_tone_is_muted():
    port = QueuePort(telephone_events=True)
    told: list[str] = []
    held = [False]
    link = AudioLink(port, key_held=lambda: held[0],
                     sent_key=lambda digit, _at: told.append(digit))
    tone = g711.codec("ulaw").encode(
        [round(6000 * math.sin(2 * math.pi * 770 * n / 8000)) for n in range(160)])
    link.heard(tone, "ulaw")  # before the detector knew: it goes through
    held[0] = True
    link.key("5", in_band=True)
    link.heard(tone, "ulaw")
    link.heard(tone, "ulaw")
    held[0] = False
    link.heard(tone, "ulaw")  # the key is up: audio again
    assert port.digits == [("5", DIGIT_MS)] and told == ["5"]
    silence = g711.codec("ulaw").silence_frame
    assert port.queue[1:3] == [silence, silence]
    assert port.queue[0] == port.queue[3] == tone


def test_a_key_from_out_of_band_is_relayed_as_an_event():
    port = QueuePort(telephone_events=True)
    link = AudioLink(port)
    link.key("#", in_band=False)
    assert port.digits == [("#", DIGIT_MS)]


def test_a_closed_link_writes_nothing():
    port = QueuePort()
    link = AudioLink(port)
    link.open()
    link.close()
    link.heard(g711.codec("ulaw").silence_frame, "ulaw")
    link.key("1", in_band=False)
    assert port.queue == [] and port.digits == []


def test_a_key_played_in_band_is_not_lost_when_the_port_is_full():
    """Frames come twice as fast as the port sends (a burst): audio slips, the key's
    tone does not, so the far end hears all of it."""
    port = QueuePort("ulaw")
    link = AudioLink(port)
    link.open()
    silence = g711.codec("ulaw").silence_frame
    for _ in range(BRIDGE_DEPTH):
        link.heard(silence, "ulaw")  # the port is full
    link.key("9", in_band=False)
    for n in range(30):
        link.heard(silence, "ulaw")
        if n % 2:
            port.tick()
    heard = audio.decode(b"".join(port.sent + port.queue), "ulaw")
    assert audio.dtmf_keys(heard, "ulaw") == "9"
    runs = audio.on_off_segments(heard)
    assert runs[1] == (True, pytest.approx(DIGIT_MS / 1000, abs=0.001)), runs
