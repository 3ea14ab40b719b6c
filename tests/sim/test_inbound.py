"""What a call hears, bare: one digit per press from two sources, the echo guard, batching."""

from __future__ import annotations

import pytest

from uascall.engine import Engine, VirtualClock
from uascall.media import g711
from uascall.media.dtmf import dtmf_samples
from uascall.media.inbound import Hearing, InboundDsp, KeyPresses

LAW = "alaw"
CODEC = g711.codec(LAW)


def frames(samples) -> list[bytes]:
    data = CODEC.encode(list(samples))
    data += bytes([CODEC.silence]) * (-len(data) % 160)
    return [data[at:at + 160] for at in range(0, len(data), 160)]


# --------------------------------------------------------------------------- KeyPresses

@pytest.fixture
def keys():
    heard: list[str] = []
    return KeyPresses(heard.append), heard


def test_one_press_reported_twice_is_one_digit(keys):
    presses, heard = keys
    assert presses.down("rfc4733", "5", 0.020, 0.020)
    assert not presses.down("inband", "5", 0.000, 0.035)  # in band: recognised later
    presses.up("rfc4733", "5", 0.090)
    presses.up("inband", "5", 0.080)
    assert heard == ["5"]


def test_the_same_key_twice_from_two_sources_is_two_digits(keys):
    presses, heard = keys
    # 1 pressed at 0 and at 100 ms, 50 ms each; the events come 20 ms after the tones
    presses.down("rfc4733", "1", 0.020, 0.020)
    presses.down("inband", "1", 0.000, 0.030)
    presses.up("rfc4733", "1", 0.070)
    presses.up("inband", "1", 0.050)
    presses.down("rfc4733", "1", 0.120, 0.120)
    presses.down("inband", "1", 0.100, 0.130)
    assert heard == ["1", "1"]


def test_in_band_first_then_a_slow_gateways_event(keys):
    presses, heard = keys
    presses.down("inband", "9", 0.000, 0.030)
    presses.up("inband", "9", 0.060)
    assert not presses.down("rfc4733", "9", 0.080, 0.080)  # 60 ms behind the tones
    assert heard == ["9"]


def test_different_keys_and_one_source_alone_are_all_digits(keys):
    presses, heard = keys
    presses.down("inband", "1", 0.0, 0.03)
    presses.down("rfc4733", "2", 0.01, 0.01)
    presses.down("rfc4733", "2", 0.2, 0.2)
    presses.down("rfc4733", "2", 0.4, 0.4)
    assert heard == ["1", "2", "2", "2"]


def test_a_press_long_over_is_not_merged_with_a_new_one(keys):
    presses, heard = keys
    presses.down("inband", "4", 0.0, 0.03)
    presses.up("inband", "4", 0.08)
    presses.down("rfc4733", "4", 0.9, 0.9)
    assert heard == ["4", "4"]


def test_events_a_few_hundred_ms_behind_the_tones_are_still_the_same_presses(keys):
    presses, heard = keys
    for n, key in enumerate("1212"):  # 80 ms on, 80 off; the events 300 ms behind
        start = n * 0.16
        presses.down("inband", key, start, start + 0.03)
        presses.up("inband", key, start + 0.08)
        presses.down("rfc4733", key, start + 0.3, start + 0.3)
        presses.up("rfc4733", key, start + 0.38)
    assert heard == list("1212")


# --------------------------------------------------------------------------- Hearing

@pytest.fixture
def engine():
    with Engine(VirtualClock()) as engine, engine.actor():
        yield engine


def listen(engine, *, echo_delay_frames: int | None = None, send: str = "",
           receive: str = "", lead_frames: int = 5):
    """A Hearing that is sent ``send`` as DTMF (in band) and hears ``receive``, or, with
    ``echo_delay_frames``, its own audio coming back that many frames later."""
    keys: list[str] = []

    def run() -> None:
        hearing = Hearing(InboundDsp.of(engine), keys.append, name="test")
        out = frames(dtmf_samples(send, law=LAW)) if send else []
        back = frames(dtmf_samples(receive, law=LAW)) if receive else []
        silent = bytes([CODEC.silence]) * 160
        total = max(len(out), len(back)) + (echo_delay_frames or 0) + lead_frames + 20
        for tick in range(total):
            def step(tick=tick) -> None:
                if tick < len(out):
                    hearing.sent(out[tick], LAW)
                if echo_delay_frames is not None:
                    at = tick - echo_delay_frames
                    hearing.heard(out[at] if 0 <= at < len(out) else silent, LAW)
                else:
                    at = tick - lead_frames
                    hearing.heard(back[at] if 0 <= at < len(back) else silent, LAW)
            engine.call_later(0.02 * tick, step)

    engine.run(run)
    engine.sleep(0.02 * 200)
    return keys


@pytest.mark.parametrize("delay_frames", [0, 1, 5, 20, 40])
def test_our_own_dtmf_coming_back_is_not_a_key(engine, delay_frames):
    assert listen(engine, echo_delay_frames=delay_frames, send="1593#") == []


def test_keys_the_far_end_presses_while_we_send_other_digits_count(engine):
    assert listen(engine, send="1111", receive="2") == ["2"]


def test_the_guard_goes_by_time_a_key_long_after_ours_counts(engine):
    # We send 5 in band, then say nothing; 2 s later (beyond ECHO_SECONDS) the far end
    # presses 5 itself: our old frames are still kept (the guard keeps the latest frames,
    # not only the last 1.2 s) but are too old to be its echo.
    keys: list[str] = []
    out = frames(dtmf_samples("5", law=LAW))
    back = frames(dtmf_samples("5", law=LAW))
    silent = bytes([CODEC.silence]) * 160
    press_at = len(out) + 100  # frames: 2 s after our tone ended

    def run() -> None:
        hearing = Hearing(InboundDsp.of(engine), keys.append, name="test")
        for tick in range(press_at + len(back) + 20):
            def step(tick=tick) -> None:
                if tick < len(out):
                    hearing.sent(out[tick], LAW)
                at = tick - press_at
                hearing.heard(back[at] if 0 <= at < len(back) else silent, LAW)
            engine.call_later(0.02 * tick, step)

    engine.run(run)
    engine.sleep(0.02 * (press_at + len(back) + 40))
    assert keys == ["5"]


def test_the_bank_batches_streams_and_processes_within_5_ms(engine):
    dsp = InboundDsp.of(engine)
    assert InboundDsp.of(engine) is dsp
    starts: list[tuple[float, str]] = []
    signal = frames(dtmf_samples("7", on_ms=100, law=LAW))

    def run() -> None:
        hearings = [Hearing(dsp, lambda d: starts.append((engine.time(), d)))
                    for _ in range(50)]
        for tick, frame in enumerate(signal):
            for hearing in hearings:
                engine.call_later(0.02 * tick, hearing.heard, frame, LAW)

    engine.run(run)
    engine.sleep(1.0)
    assert [d for _, d in starts] == ["7"] * 50
    # all in one pass, within 5 ms of the second frame (at 20 ms), which completes the
    # 30 ms of tone a digit needs
    assert len({t for t, _ in starts}) == 1
    assert 0.02 <= starts[0][0] <= 0.025
