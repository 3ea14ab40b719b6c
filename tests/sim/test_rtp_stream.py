"""A call's RTP stream and the ticker that paces every stream (uascall.sip.media).

What goes out on each tick, whichever way the ticker takes to send it: the common case
(a frame or silence, sent straight on the socket) and the general one (a jitter buffer
holding packets back, a telephone-event, a trace listening) give the same packets and
the same counts. The engine runs on virtual time; the packets are real datagrams on
loopback.
"""

from __future__ import annotations

import socket
import time

import pytest

from uascall.engine import Engine, VirtualClock
from uascall.media.dtmf import HeldKey
from uascall.media.player import MEDIA_PHASE, MediaClock, Player
from uascall.media.source import FRAME_SECONDS, BufferSource
from uascall.sip.media import KEY_LOST_AFTER, RtpPorts, RtpStream, RtpTicker
from uascall.sip.rtp import RtpPacket, RtpSender, TelephoneEvent
from uascall.sip.sdp import Negotiated

HOST = "127.0.0.1"
SILENCE_ALAW = b"\xd5" * 160


@pytest.fixture
def engine():
    with Engine(VirtualClock(), name="rtp-test") as engine, engine.actor():
        yield engine


@pytest.fixture
def far_end():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(2.0)
    yield sock
    sock.close()


def received(sock: socket.socket, count: int) -> list[RtpPacket]:
    return [RtpPacket.parse(sock.recv(2048)) for _ in range(count)]


def nothing_more(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        sock.recv(2048)
    except TimeoutError:
        return True
    return False


def open_stream(engine: Engine, ticker: RtpTicker, far_end: socket.socket, *,
                remote: tuple[str, int] | None = None, telephone_event: int | None = None,
                name: str = "rtp test") -> RtpStream:
    address = remote or far_end.getsockname()
    negotiated = Negotiated(law="alaw", payload_type=8, telephone_event=telephone_event,
                            remote=address, direction="sendrecv", peer=far_end.getsockname())

    def make() -> RtpStream:
        stream = RtpPorts(20000, 60000).open(engine, ticker, HOST, allow=None, name=name)
        stream.open(negotiated)
        return stream

    return engine.run(make)


def test_each_tick_sends_the_next_frame_or_silence_in_one_numbering(engine, far_end):
    ticker = RtpTicker(engine)
    stream = open_stream(engine, ticker, far_end)
    frames = [bytes([n]) * 160 for n in range(1, 4)]
    assert engine.run(lambda: [stream.write(frame) for frame in frames]) == [True] * 3
    engine.sleep(0.11)  # five ticks: three frames, then silence
    packets = received(far_end, 5)
    assert [p.payload for p in packets] == frames + [SILENCE_ALAW] * 2
    first = packets[0]
    assert [p.sequence for p in packets] == [(first.sequence + k) & 0xFFFF for k in range(5)]
    assert [p.timestamp for p in packets] == [(first.timestamp + 160 * k) & 0xFFFFFFFF
                                              for k in range(5)]
    assert [p.marker for p in packets] == [True, False, False, False, False]
    assert {p.ssrc for p in packets} == {first.ssrc}
    assert {p.payload_type for p in packets} == {8}
    counts = engine.run(lambda: (stream.packets_sent, stream.endpoint.stats.sent,
                                 stream.underruns, ticker.ticks))
    assert counts == (5, 5, 2, 5)
    engine.run(stream.close)


def test_packets_go_out_on_the_grid_and_the_players_are_pumped_just_after(engine, far_end):
    # Started at odd moments, the ticker and the media clock still tick on the engine's
    # 20 ms grid, in one order: every packet first, then every player's next frame. Before,
    # each ticked 20 ms after its first user came, and one's pass over every call could
    # fall due in the middle of the other's, making it late by a random amount.
    ticker, clock = RtpTicker(engine), MediaClock(engine)
    sends: list[float] = []
    pumps: list[float] = []

    def timed(what, into):
        def tick():
            into.append(engine.time())
            what()
        return tick

    # recorded at the instant each pass starts (the timers hold the bound methods)
    ticker._tick = timed(ticker._tick, sends)
    clock._tick = timed(clock._tick, pumps)
    engine.sleep(0.0137)
    stream = open_stream(engine, ticker, far_end)
    engine.sleep(0.0251)
    player = Player(clock, stream)
    engine.run(player.play, BufferSource(b"\x55" * 160 * 50, "alaw"))
    engine.sleep(0.2)
    assert len(sends) >= 10 and len(pumps) >= 9
    for start, phase in [(sends, 0.0), (pumps, MEDIA_PHASE)]:
        offsets = {round((t - phase) / FRAME_SECONDS, 6) % 1 for t in start}
        assert offsets == {0.0}, f"ticks off the grid at phase {phase}: {start}"
    engine.run(player.stop)
    engine.run(stream.close)


def test_a_send_the_kernel_refuses_is_counted_and_the_others_go_on(engine, far_end):
    ticker = RtpTicker(engine)
    refused = open_stream(engine, ticker, far_end, remote=(HOST, 0), name="port 0")
    fine = open_stream(engine, ticker, far_end)
    engine.sleep(0.07)  # three ticks
    assert len(received(far_end, 3)) == 3
    counts = engine.run(lambda: (refused.packets_sent, refused.endpoint.stats.sent,
                                 refused.endpoint.stats.send_errors, fine.packets_sent,
                                 ticker.active))
    assert counts == (0, 0, 3, 3, 2)
    engine.run(refused.close)
    engine.run(fine.close)


def test_a_trace_listening_sees_every_packet_sent(engine, far_end):
    ticker = RtpTicker(engine)
    stream = open_stream(engine, ticker, far_end)
    seen: list[tuple[bool, bytes]] = []

    def tap(_at, sent, data, _source, _destination):
        seen.append((sent, data))

    engine.sleep(0.05)  # two ticks (each sleep ends between ticks)
    engine.run(engine.taps.listen, "datagram", tap)
    engine.sleep(0.06)  # three
    engine.run(engine.taps.unlisten, "datagram", tap)
    engine.sleep(0.04)  # two
    packets = received(far_end, 7)
    assert [data for _sent, data in seen] == [p.serialize() for p in packets[2:5]]
    assert all(sent for sent, _data in seen)
    assert [p.sequence for p in packets] == [(packets[0].sequence + k) & 0xFFFF
                                             for k in range(7)]
    assert engine.run(lambda: (stream.packets_sent, stream.endpoint.stats.sent)) == (7, 7)
    engine.run(stream.close)


def test_a_telephone_event_takes_the_audios_place_then_audio_resumes(engine, far_end):
    ticker = RtpTicker(engine)
    stream = open_stream(engine, ticker, far_end, telephone_event=101)
    engine.sleep(0.03)  # one tick of audio
    engine.run(stream.send_digit, "5", 60)  # three frames: two updates, the end three times
    engine.sleep(0.08)
    packets = received(far_end, 1 + 2 + 3 + 1)
    assert nothing_more(far_end)
    audio, events, after = packets[0], packets[1:6], packets[6]
    assert [p.payload_type for p in events] == [101] * 5
    assert {p.timestamp for p in events} == {(audio.timestamp + 160) & 0xFFFFFFFF}
    assert [p.sequence for p in packets] == [(audio.sequence + k) & 0xFFFF for k in range(7)]
    assert after.payload_type == 8 and after.marker
    assert after.timestamp == (audio.timestamp + 4 * 160) & 0xFFFFFFFF
    assert engine.run(lambda: (stream.packets_sent, stream.sending_digit)) == (7, False)
    engine.run(stream.close)


def test_packets_held_for_a_lost_one_are_released_on_the_ticks(engine, far_end):
    """Nothing arrives after the gap: only the ticks can give the lost packet up."""
    ticker = RtpTicker(engine)
    stream = open_stream(engine, ticker, far_end)
    heard: list[bytes] = []
    engine.run(setattr, stream, "on_audio", heard.append)
    sender = RtpSender(8, sequence=10, timestamp=1000)
    first, lost, third = (sender.packet(bytes([n]) * 160) for n in (1, 2, 3))
    del lost
    far_end.sendto(first, stream.local)
    far_end.sendto(third, stream.local)
    assert engine.wait_until(lambda: stream.packets_received == 2, 1.0)
    assert heard == [b"\x01" * 160]  # the third waits for the second
    engine.sleep(0.1)  # the jitter buffer waits 60 ms for a missing packet
    assert heard == [b"\x01" * 160, b"\xd5" * 160, b"\x03" * 160]
    engine.run(stream.close)


def test_writing_to_a_closed_stream_is_an_error_and_to_a_held_one_goes_nowhere(engine,
                                                                              far_end):
    ticker = RtpTicker(engine)
    stream = open_stream(engine, ticker, far_end)
    held = Negotiated(law="alaw", payload_type=8, telephone_event=None, remote=None,
                      direction="recvonly", peer=far_end.getsockname())
    engine.run(stream.open, held)
    assert engine.run(stream.write, b"\x01" * 160) is True
    assert engine.run(stream.queued) == 0
    engine.run(stream.close)
    with pytest.raises(OSError, match="closed"):
        engine.run(stream.write, b"\x01" * 160)


def test_a_key_held_on_the_ticker_lasts_three_packets_and_so_does_its_pause(engine,
                                                                            far_end):
    """A key let go at once (a late engine's key up), and the next pressed at once after
    it, still give the far end three packets of each tone with three packets between:
    it plays packets by their timestamps, and 60 ms is above what Q.24 asks it to
    take. The key replaces the audio queued, and the audio comes back after it."""
    ticker = RtpTicker(engine)
    stream = open_stream(engine, ticker, far_end)
    speech = b"\x01" * 160

    def keys() -> None:
        stream.write(speech)
        stream.start_digit("1")
        stream.stop_digit()
        stream.start_digit("2")
        stream.stop_digit()

    engine.run(keys)
    engine.sleep(0.2)  # ten ticks
    payloads = [p.payload for p in received(far_end, 10)]
    one, two = (HeldKey(digit, "alaw") for digit in "12")
    assert payloads == ([one.next_frame() for _ in range(3)] + [SILENCE_ALAW] * 3
                        + [two.next_frame() for _ in range(3)] + [SILENCE_ALAW])
    engine.run(stream.close)


def test_a_key_while_the_far_end_holds_the_call_is_not_kept_for_later(engine, far_end):
    ticker = RtpTicker(engine)
    stream = open_stream(engine, ticker, far_end)
    held = Negotiated(law="alaw", payload_type=8, telephone_event=None, remote=None,
                      direction="recvonly", peer=far_end.getsockname())
    engine.run(stream.open, held)
    assert engine.run(stream.start_digit, "5") is True
    engine.run(stream.stop_digit)
    engine.run(stream.open, Negotiated(law="alaw", payload_type=8, telephone_event=None,
                                       remote=far_end.getsockname(), direction="sendrecv",
                                       peer=far_end.getsockname()))
    engine.sleep(0.07)
    assert {p.payload for p in received(far_end, 3)} == {SILENCE_ALAW}
    engine.run(stream.close)


def event_packet(sequence: int, digit_event: int, duration: int, *, end: bool = False,
                 timestamp: int = 8000) -> bytes:
    payload = TelephoneEvent(digit_event, end, 10, duration).serialize()
    return RtpPacket(101, sequence, timestamp, 0x1234, payload).serialize()


def test_a_telephone_event_whose_end_packets_are_all_lost_ends_after_half_a_second(
        engine, far_end):
    """RFC 4733 keys whose three end packets were all lost: the key is taken as up once no
    packet of it has come for KEY_LOST_AFTER (it stayed down until the next key, and a
    bridge held its tone for 30 s); a key whose updates keep coming stays down however
    long; an end packet that comes after the key was given up is not a second release."""
    ticker = RtpTicker(engine)
    stream = open_stream(engine, ticker, far_end, telephone_event=101)
    keys: list[tuple[float, str, bool]] = []
    engine.run(setattr, stream, "on_digit",
               lambda digit, ended: keys.append((engine.time(), digit, ended)))
    start = engine.time()
    for n in range(20):  # '5' held 1 s, updated every 50 ms
        far_end.sendto(event_packet(n, 5, 400 * (n + 1)), stream.local)
        assert engine.wait_until(lambda n=n: stream.packets_received == n + 1, 1.0)
        engine.sleep(0.05)
    assert [(digit, ended) for _, digit, ended in keys] == [("5", False)]
    engine.sleep(KEY_LOST_AFTER)  # then nothing: the end packets are lost
    assert [(digit, ended) for _, digit, ended in keys] == [("5", False), ("5", True)]
    assert keys[1][0] - start == pytest.approx(1.0 + KEY_LOST_AFTER, abs=0.06)
    far_end.sendto(event_packet(20, 5, 8000, end=True), stream.local)  # late after all
    assert engine.wait_until(lambda: stream.packets_received == 21, 1.0)
    engine.sleep(0.1)
    assert len(keys) == 2
    far_end.sendto(event_packet(21, 9, 400, timestamp=24000), stream.local)  # a new key
    far_end.sendto(event_packet(22, 9, 800, end=True, timestamp=24000), stream.local)
    assert engine.wait_until(lambda: len(keys) == 4, 1.0)
    assert [(digit, ended) for _, digit, ended in keys[2:]] == [("9", False), ("9", True)]
    engine.sleep(2 * KEY_LOST_AFTER)
    assert len(keys) == 4  # ended by its own packet: nothing given up
    engine.run(stream.close)


def test_a_key_is_not_given_up_while_its_packets_wait_unread_behind_a_held_engine(
        engine, far_end):
    """The engine held up for 2 s (virtual) while the far end still holds '7' and its
    updates queue in the socket: when it runs again the watch is long due, but the engine
    reads the ready socket before it runs due timers, so the updates are heard first and
    the key stays down until its own end packet."""
    ticker = RtpTicker(engine)
    stream = open_stream(engine, ticker, far_end, telephone_event=101)
    keys: list[tuple[str, bool]] = []
    engine.run(setattr, stream, "on_digit", lambda digit, ended: keys.append((digit, ended)))
    far_end.sendto(event_packet(0, 7, 400), stream.local)
    assert engine.wait_until(lambda: stream.packets_received == 1, 1.0)
    engine.sleep(0.2)

    def held() -> None:  # updates arrive meanwhile, unread: the engine is busy
        for n in range(1, 6):
            far_end.sendto(event_packet(n, 7, 400 + 3200 * n), stream.local)
        time.sleep(0.1)  # (real time: let the datagrams reach the socket)
        engine.clock.advance_to(engine.time() + 2.0)

    engine.run(held)
    assert engine.wait_until(lambda: stream.packets_received == 6, 1.0)
    engine.sleep(0.2)
    assert keys == [("7", False)]  # still down: its updates came, late
    far_end.sendto(event_packet(6, 7, 20000, end=True), stream.local)
    assert engine.wait_until(lambda: len(keys) == 2, 1.0)
    assert keys == [("7", False), ("7", True)]
    engine.run(stream.close)
