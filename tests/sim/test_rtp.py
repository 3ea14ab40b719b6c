"""RTP packets, the sender's numbering and RFC 4733 DTMF (uascall.sip.rtp)."""

from __future__ import annotations

import struct

import pytest

from uascall.sip.rtp import (
    EVENT_DIGITS,
    DtmfReceiver,
    RtpError,
    RtpPacket,
    RtpSender,
    TelephoneEvent,
)

EVENT_PT = 101
SSRC = 0x11223344


def full_packet() -> RtpPacket:
    return RtpPacket(
        payload_type=8,
        sequence=65535,
        timestamp=0xFFFFFF00,
        ssrc=SSRC,
        payload=bytes(range(20)),
        marker=True,
        csrc=[1, 0xFFFFFFFF],
        extension=(0xBEDE, b"\x10\xaa\x00\x00"),
    )


# ---------------------------------------------------------------------------------------------
# RtpPacket


def test_minimal_packet_bytes():
    data = RtpPacket(0, 1, 2, 3, b"\xff" * 4).serialize()
    assert data == bytes.fromhex("80000001 00000002 00000003 ffffffff")
    assert RtpPacket.parse(data) == RtpPacket(0, 1, 2, 3, b"\xff" * 4)


def test_round_trip_with_csrc_and_extension():
    packet = full_packet()
    data = packet.serialize()
    assert data[0] == 0x80 | 0x10 | 2
    assert data[1] == 0x80 | 8
    assert len(data) == 12 + 8 + 4 + 4 + 20
    assert RtpPacket.parse(data) == packet
    assert RtpPacket.parse(bytearray(data)) == packet
    assert RtpPacket.parse(memoryview(data)) == packet


def test_parse_padding():
    packet = full_packet()
    data = bytearray(packet.serialize() + b"\x00\x00\x03")
    data[0] |= 0x20
    parsed = RtpPacket.parse(bytes(data))
    assert parsed.padding == 3
    assert parsed.payload == packet.payload
    # serialize never pads: the packet comes back without it
    parsed.padding = 0
    assert parsed == packet
    assert RtpPacket.parse(parsed.serialize()) == packet


def test_padding_of_a_whole_payload():
    data = bytes([0xA0, 0]) + bytes(10) + b"\x00\x00\x00\x04"
    parsed = RtpPacket.parse(data)
    assert (parsed.payload, parsed.padding) == (b"", 4)


@pytest.mark.parametrize(("count", "words"), [(0, "padding count 0"), (9, "9 bytes of padding")])
def test_bad_padding(count, words):
    data = bytes([0xA0, 0]) + bytes(10) + b"\x00\x00\x00" + bytes([count])
    with pytest.raises(RtpError, match=words):
        RtpPacket.parse(data)


def test_every_truncated_header_is_an_rtp_error():
    data = full_packet().serialize()
    header = 12 + 8 + 4 + 4
    messages = set()
    for size in range(header):
        with pytest.raises(RtpError) as caught:
            RtpPacket.parse(data[:size])
        messages.add(str(caught.value).split(":")[0])
    assert messages == {
        f"RTP packet is {size} bytes; expected at least 12" for size in range(12)
    } | {
        "RTP packet has truncated CSRC list",
        "RTP packet has truncated extension header",
        "RTP packet has truncated extension",
    }
    # cut in the payload, it is still a packet, with less payload
    assert RtpPacket.parse(data[:header]).payload == b""
    assert RtpPacket.parse(data[: header + 5]).payload == bytes(range(5))


def test_truncated_messages_say_where():
    data = full_packet().serialize()
    with pytest.raises(RtpError, match="2 CSRCs need 20 bytes, packet is 19"):
        RtpPacket.parse(data[:19])
    with pytest.raises(RtpError, match="needs bytes 20-23, packet is 22"):
        RtpPacket.parse(data[:22])
    with pytest.raises(RtpError, match="1 words need bytes 24-27, packet is 26"):
        RtpPacket.parse(data[:26])


def test_random_garbage_raises_only_rtp_error():
    import random

    rng = random.Random(4733)
    for _ in range(5000):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        data = bytes([0x80 | (data[0] & 0x3F)]) + data[1:] if data else data
        try:
            RtpPacket.parse(data)
        except RtpError:
            pass


@pytest.mark.parametrize("version", [0, 1, 3])
def test_version_other_than_2_rejected(version):
    data = bytearray(RtpPacket(0, 1, 2, 3).serialize())
    data[0] = (data[0] & 0x3F) | (version << 6)
    with pytest.raises(RtpError, match=f"version {version}; expected 2"):
        RtpPacket.parse(bytes(data))


@pytest.mark.parametrize(
    ("packet", "words"),
    [
        (RtpPacket(128, 0, 0, 0), "payload type is 128"),
        (RtpPacket(0, 65536, 0, 0), "sequence 65536"),
        (RtpPacket(0, 0, 1 << 32, 0), "out of range"),
        (RtpPacket(0, 0, 0, 0, csrc=list(range(16))), "16 CSRCs"),
        (RtpPacket(0, 0, 0, 0, extension=(1, b"abc")), "3 bytes; expected a multiple of 4"),
    ],
)
def test_serialize_rejects_out_of_range(packet, words):
    with pytest.raises(RtpError, match=words):
        packet.serialize()


# ---------------------------------------------------------------------------------------------
# RtpSender


def header(data: bytes) -> tuple[bool, int, int, int, int]:
    first, second, sequence, timestamp, ssrc = struct.unpack_from("!BBHII", data)
    assert first == 0x80
    return bool(second & 0x80), second & 0x7F, sequence, timestamp, ssrc


def test_sender_numbering_wraps():
    sender = RtpSender(8, ssrc=SSRC, sequence=65534, timestamp=0xFFFFFFFF - 159)
    packets = [RtpPacket.parse(sender.packet(bytes([n]) * 160)) for n in range(3)]
    assert [(p.sequence, p.timestamp) for p in packets] == [
        (65534, 0xFFFFFFFF - 159),
        (65535, 0),
        (0, 160),
    ]
    assert [p.marker for p in packets] == [True, False, False]
    assert {(p.payload_type, p.ssrc) for p in packets} == {(8, SSRC)}
    assert packets[2].payload == b"\x02" * 160


def test_sender_marker_after_skip_and_on_request():
    sender = RtpSender(0, ssrc=1, sequence=10, timestamp=1000)
    sender.packet(b"")
    assert header(sender.packet(b"")) == (False, 0, 11, 1160, 1)
    sender.skip(3)
    assert header(sender.packet(b"")) == (True, 0, 12, 1320 + 480, 1)
    assert header(sender.packet(b""))[0] is False
    sender.skip(0)
    assert header(sender.packet(b""))[0] is False
    assert header(sender.packet(b"", marker=True))[0] is True


def test_sender_random_start():
    a, b = RtpSender(0), RtpSender(0)
    assert (a.ssrc, a.sequence, a.timestamp) != (b.ssrc, b.sequence, b.timestamp)
    assert 0 <= a.ssrc < 1 << 32 and 0 <= a.sequence < 1 << 16 and 0 <= a.timestamp < 1 << 32


def test_sender_skip_wraps_timestamp():
    sender = RtpSender(0, ssrc=1, sequence=0, timestamp=0xFFFFFF00, samples_per_frame=160)
    sender.skip(2)
    assert header(sender.packet(b""))[3] == 0xFFFFFF00 + 320 - (1 << 32)


def test_event_packets_follow_rfc_4733():
    sender = RtpSender(8, ssrc=SSRC, sequence=100, timestamp=8000)
    sender.packet(b"\xd5" * 160)
    packets = [RtpPacket.parse(p) for p in sender.event_packets("5", 100, telephone_event_pt=96)]
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [p.sequence for p in packets] == list(range(101, 108))
    assert {p.timestamp for p in packets} == {8160}
    assert {p.payload_type for p in packets} == {96}
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert [(e.event, e.end, e.volume, e.duration) for e in events] == [
        (5, False, 10, 160),
        (5, False, 10, 320),
        (5, False, 10, 480),
        (5, False, 10, 640),
        (5, True, 10, 800),
        (5, True, 10, 800),
        (5, True, 10, 800),
    ]
    # media resumes after the event, as a new talkspurt
    assert header(sender.packet(b"")) == (True, 8, 108, 8160 + 800, SSRC)


def test_short_event_and_partial_frame():
    sender = RtpSender(0, ssrc=1, sequence=0, timestamp=0)
    packets = [RtpPacket.parse(p) for p in sender.event_packets("#", 10, telephone_event_pt=101)]
    assert [(p.marker, TelephoneEvent.parse(p.payload)) for p in packets] == [
        (True, TelephoneEvent(11, True, 10, 80)),
        (False, TelephoneEvent(11, True, 10, 80)),
        (False, TelephoneEvent(11, True, 10, 80)),
    ]
    assert header(sender.packet(b""))[3] == 160
    packets = sender.event_packets("a", 50, telephone_event_pt=101, volume=0)
    assert [TelephoneEvent.parse(p[12:]).duration for p in packets] == [160, 320, 400, 400, 400]
    assert TelephoneEvent.parse(packets[0][12:]).event == 12
    assert header(sender.packet(b""))[3] == 320 + 480


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("x",), "not a DTMF digit"),
        (("12",), "not a DTMF digit"),
        (("1", 0), "duration_ms is 0"),
        (("1", 9000), "duration_ms is 9000"),
    ],
)
def test_event_packets_bad_arguments(args, words):
    with pytest.raises(ValueError, match=words):
        RtpSender(0).event_packets(*args, telephone_event_pt=101)


# ---------------------------------------------------------------------------------------------
# TelephoneEvent and DtmfReceiver


def test_telephone_event_round_trip():
    event = TelephoneEvent(event=11, end=True, volume=63, duration=0xFFFF)
    assert event.serialize() == bytes([11, 0x80 | 63, 0xFF, 0xFF])
    assert TelephoneEvent.parse(event.serialize()) == event
    # the reserved bit is ignored on receipt
    assert TelephoneEvent.parse(bytes([1, 0x40 | 7, 0, 160])) == TelephoneEvent(1, False, 7, 160)


@pytest.mark.parametrize("payload", [b"", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05"])
def test_telephone_event_wrong_size(payload):
    with pytest.raises(RtpError, match=f"is {len(payload)} bytes; expected 4"):
        TelephoneEvent.parse(payload)


def test_telephone_event_out_of_range():
    with pytest.raises(RtpError, match="volume 64"):
        TelephoneEvent(1, False, 64, 0).serialize()
    with pytest.raises(RtpError, match="duration is 65536"):
        TelephoneEvent(1, False, 0, 65536).serialize()


def event_packet(event: int, timestamp: int, duration: int, *, end: bool = False,
                 marker: bool = False, pt: int = EVENT_PT, ssrc: int = SSRC,
                 sequence: int = 0) -> RtpPacket:
    payload = TelephoneEvent(event, end, 10, duration).serialize()
    return RtpPacket(pt, sequence, timestamp, ssrc, payload, marker)


def press(event: int, timestamp: int, updates: int = 4) -> list[RtpPacket]:
    packets = [event_packet(event, timestamp, 160 * (k + 1), marker=k == 0)
               for k in range(updates)]
    packets += [event_packet(event, timestamp, 160 * (updates + 1), end=True)] * 3
    return packets


def feed_all(receiver: DtmfReceiver, packets: list[RtpPacket]) -> list[str]:
    return [digit for packet in packets if (digit := receiver.feed(packet)) is not None]


def test_normal_event_gives_one_digit():
    receiver = DtmfReceiver(EVENT_PT)
    results = [receiver.feed(packet) for packet in press(7, 1000)]
    assert results == ["7", None, None, None, None, None, None]


def test_first_packet_lost():
    assert feed_all(DtmfReceiver(EVENT_PT), press(3, 1000)[1:]) == ["3"]


def test_end_packets_only():
    assert feed_all(DtmfReceiver(EVENT_PT), press(10, 1000)[-3:]) == ["*"]


def test_same_digit_twice():
    packets = press(1, 1000) + press(1, 3000)
    assert feed_all(DtmfReceiver(EVENT_PT), packets) == ["1", "1"]


def test_second_press_with_end_packets_lost():
    packets = press(2, 1000)[:3] + press(2, 3000)
    assert feed_all(DtmfReceiver(EVENT_PT), packets) == ["2", "2"]


def test_reordered_and_late_packets_of_an_old_event_are_ignored():
    first, second = press(4, 1000), press(5, 2000)
    # the end of the first event arrives after the second event began
    packets = first[:3] + second[:2] + first[3:] + second[2:]
    assert feed_all(DtmfReceiver(EVENT_PT), packets) == ["4", "5"]


def test_timestamp_wrap_between_events():
    packets = press(6, 0xFFFFFF00) + press(9, 0x100)
    assert feed_all(DtmfReceiver(EVENT_PT), packets) == ["6", "9"]


def test_new_ssrc_starts_afresh():
    # a re-INVITE may bring a new stream whose timestamps look older
    packets = [*press(8, 50000), event_packet(8, 100, 160, ssrc=SSRC + 1, marker=True)]
    assert feed_all(DtmfReceiver(EVENT_PT), packets) == ["8", "8"]


def test_long_event_segments_are_one_digit():
    # RFC 4733 2.5.1.3: past 0xFFFF units the event goes on with a new timestamp
    packets = [
        event_packet(0, 1000, 0xFF00, marker=True),
        event_packet(0, 1000, 0xFFFF),
        event_packet(0, 1000 + 0xFFFF, 160),
        event_packet(0, 1000 + 0xFFFF, 800, end=True),
    ]
    assert feed_all(DtmfReceiver(EVENT_PT), packets) == ["0"]


def test_other_payload_types_and_flash_ignored():
    receiver = DtmfReceiver(EVENT_PT)
    assert receiver.feed(event_packet(1, 1000, 160, pt=8)) is None
    assert receiver.feed(RtpPacket(0, 1, 1000, SSRC, b"\xff" * 160)) is None
    assert feed_all(receiver, press(16, 2000)) == []
    assert feed_all(receiver, press(200, 3000)) == []
    assert feed_all(receiver, press(15, 4000)) == ["D"]


@pytest.mark.parametrize("payload", [b"", b"\x01", b"\x01\x02\x03\x04\x05\x06", b"\xff" * 160])
def test_garbage_payload_gives_none(payload):
    receiver = DtmfReceiver(EVENT_PT)
    assert receiver.feed(RtpPacket(EVENT_PT, 1, 1000, SSRC, payload, True)) is None
    # and does not disturb what follows
    assert feed_all(receiver, press(2, 1000)) == ["2"]


def test_sender_to_receiver_every_digit():
    sender = RtpSender(8, ssrc=SSRC, sequence=65530, timestamp=0xFFFFF000)
    receiver = DtmfReceiver(EVENT_PT)
    received = []
    for digit in EVENT_DIGITS:
        for _ in range(3):
            assert receiver.feed(RtpPacket.parse(sender.packet(b"\xd5" * 160))) is None
        for data in sender.event_packets(digit, 120, telephone_event_pt=EVENT_PT):
            result = receiver.feed(RtpPacket.parse(data))
            if result is not None:
                received.append(result)
    assert "".join(received) == EVENT_DIGITS


def test_sender_to_receiver_same_digit_back_to_back():
    sender = RtpSender(8, ssrc=SSRC)
    receiver = DtmfReceiver(EVENT_PT)
    packets = sender.event_packets("9", telephone_event_pt=EVENT_PT)
    packets += sender.event_packets("9", telephone_event_pt=EVENT_PT)
    assert feed_all(receiver, [RtpPacket.parse(p) for p in packets]) == ["9", "9"]
