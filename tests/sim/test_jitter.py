"""The SIP receive side's jitter buffer, driven bare: order, loss, lateness, SSRC, wrap."""

from __future__ import annotations

import pytest

from uascall.sip.jitter import MAX_FILL, SLACK, JitterBuffer
from uascall.sip.rtp import RtpPacket

SILENCE = 0xD5


def packet(seq: int, ts: int | None = None, *, ssrc: int = 1, size: int = 160,
           fill: int | None = None, pt: int = 8) -> RtpPacket:
    ts = seq * size if ts is None else ts
    payload = bytes([seq % 200 if fill is None else fill]) * size
    return RtpPacket(payload_type=pt, sequence=seq % 65536, timestamp=ts % 2**32, ssrc=ssrc,
                     payload=payload)


def run(buffer: JitterBuffer, seqs, *, step: float = 0.02, **kw) -> list[bytes]:
    out = []
    now = 0.0
    for seq in seqs:
        out += buffer.push(packet(seq, **kw), now)
        now += step
    return out


def tags(blocks: list[bytes]) -> list[int]:
    """Each 160-byte frame's first byte (the packet's number, or the silence code)."""
    data = b"".join(blocks)
    return [data[at] for at in range(0, len(data), 160)]


def test_in_order_packets_come_out_at_once():
    buffer = JitterBuffer(SILENCE)
    assert tags(buffer.push(packet(10), 0.0)) == [10]
    assert tags(buffer.push(packet(11), 0.02)) == [11]
    assert buffer.waiting == 0


def test_a_swapped_pair_is_put_back_in_order():
    buffer = JitterBuffer(SILENCE)
    assert tags(run(buffer, [1, 3, 2, 4])) == [1, 2, 3, 4]


def test_late_and_duplicate_packets_are_dropped():
    buffer = JitterBuffer(SILENCE)
    out = run(buffer, [1, 2, 2, 4, 4, 3, 1])
    assert tags(out) == [1, 2, 3, 4]
    assert (buffer.late, buffer.duplicates) == (2, 1)


def test_a_lost_packet_becomes_silence_after_the_wait_or_the_depth():
    buffer = JitterBuffer(SILENCE, depth=3, wait=0.06)
    out = buffer.push(packet(1), 0.0)
    out += buffer.push(packet(3), 0.02)  # 2 is missing
    assert buffer.waiting == 1
    out += buffer.expire(0.05)
    assert buffer.waiting == 1  # not yet
    out += buffer.expire(0.081)
    assert tags(out) == [1, SILENCE, 3] and buffer.lost == 1
    deep = JitterBuffer(SILENCE, depth=2, wait=10)
    assert tags(run(deep, [1, 3, 4, 5])) == [1, SILENCE, 3, 4, 5]


def test_silence_for_a_pause_is_bounded_by_the_time_that_passed():
    buffer = JitterBuffer(SILENCE)
    buffer.push(packet(1, 160), 0.0)
    # the next packet claims ten minutes later, but arrives 0.1 s later: silence up to real
    # time (plus the slack), then its own audio
    out = buffer.push(packet(2, 160 + 160 + 8000 * 600), 0.1)
    assert [len(block) for block in out] == [round((0.1 + SLACK) * 8000) - 320, 160]
    later = buffer.push(packet(3, 160 * 10**7), 5000.0)
    assert len(later[0]) == MAX_FILL * 8000  # a long pause: its silence, at most MAX_FILL


def test_nothing_comes_out_faster_than_real_time():
    """A far end that sends faster than it talks (forged timestamps, oversized payloads,
    plain packets too often, a new SSRC each time) gets no more out than the time that
    passed, plus the slack."""
    for make, audio_dropped in (
            (lambda i: packet(i, i * 8000, size=1), False),  # timestamps a second apart
            (lambda i: packet(i, i * 2000, size=2000), True),  # oversized payloads
            (lambda i: packet(i), True),  # well-formed, but one a millisecond
            (lambda i: packet(i * 7, i * 12345, ssrc=i), True)):  # a new SSRC every time
        buffer = JitterBuffer(SILENCE)
        out = []
        for i in range(1000):
            out += buffer.push(make(i), i * 0.001)
        assert sum(map(len, out)) <= (1.0 + SLACK) * 8000
        assert (buffer.excess > 0) is audio_dropped


def test_a_new_ssrc_starts_afresh_and_a_big_jump_too():
    buffer = JitterBuffer(SILENCE)
    out = run(buffer, [1, 2, 4])  # 4 waits for 3
    out += buffer.push(packet(500, ssrc=2), 0.1)
    assert tags(out) == [1, 2, SILENCE, 4, 500 % 200]
    out = buffer.push(packet(501, ssrc=2), 0.12) + buffer.push(packet(9000, ssrc=2), 0.14)
    assert tags(out) == [501 % 200, 9000 % 200] and buffer.restarts == 2


def test_sequence_and_timestamp_wrap_around():
    buffer = JitterBuffer(SILENCE)
    seqs = [65534, 65535, 0, 1]
    out = []
    for i, seq in enumerate(seqs):
        out += buffer.push(packet(seq, ts=2**32 - 320 + i * 160, fill=i), i * 0.02)
    assert tags(out) == [0, 1, 2, 3]


def test_events_take_their_numbers_without_sound():
    buffer = JitterBuffer(SILENCE)
    out = buffer.push(packet(1), 0.0)
    out += buffer.skip(packet(2, ts=160, pt=101), 0.02)  # an event in the audio's numbering
    out += buffer.push(packet(3, ts=480), 0.04)
    assert tags(out) == [1, SILENCE, 3]  # the event's 20 ms is silence, nothing waits
    assert buffer.lost == 0
    assert buffer.skip(packet(9, ssrc=99, pt=101), 0.05) == []  # another source's events


@pytest.mark.parametrize("bad", [{"depth": 0}, {"wait": 0}])
def test_bad_settings(bad):
    with pytest.raises(ValueError):
        JitterBuffer(SILENCE, **bad)
