"""The channel listens on SIP: in-band DTMF in G.711 RTP, RFC 4733, both at once, the
jitter buffer, RTP only from the far end, DTMFPlayer both ways, barge-in and recording.

A scripted caller (``tests/sim/sip_peer.py``) sends RTP on real UDP sockets in real time;
what it receives is parsed by the test itself.
"""

from __future__ import annotations

import math
import random
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from tests import audio
from tests.sim.sip_peer import FAST, SipPeer, Uas, answered, sdp_offer
from uascall.app import AppHost, Application
from uascall.backend import open_backend
from uascall.channel import State
from uascall.engine import Engine
from uascall.media import g711
from uascall.media.dtmf import dtmf_samples
from uascall.media.wav import read_wav
from uascall.sim.caller import CallerScript
from uascall.sip.rtp import RtpSender

ALAW = g711.ALAW
ROOT = Path(__file__).resolve().parents[2]


def frames(data: bytes) -> list[bytes]:
    data += bytes([ALAW.silence]) * (-len(data) % 160)
    return [data[at:at + 160] for at in range(0, len(data), 160)]


def keys_in_band(digits: str, on_ms: float = 80, off_ms: float = 80) -> bytes:
    return ALAW.encode(dtmf_samples(digits, on_ms=on_ms, off_ms=off_ms, law="alaw"))


def silence(seconds: float) -> bytes:
    return bytes([ALAW.silence]) * round(seconds * 8000)


def tone(freq: float, seconds: float, level_dbm0: float = -15) -> bytes:
    peak = audio.reference_rms("alaw") * math.sqrt(2) * 10 ** (level_dbm0 / 20)
    return ALAW.encode([round(peak * math.sin(2 * math.pi * freq * n / 8000))
                        for n in range(round(seconds * 8000))])


def talk(peer: SipPeer, data: bytes, sender: RtpSender | None = None,
         order=None) -> RtpSender:
    """Send ``data`` (A-law) as 20 ms RTP packets at 20 ms intervals, in real time;
    ``order`` may rearrange, drop or repeat the packets (a list of indices)."""
    sender = sender or RtpSender(8)
    packets = [sender.packet(frame) for frame in frames(data)]
    for index in (range(len(packets)) if order is None else order(len(packets))):
        peer.send_rtp([packets[index]])
        time.sleep(0.02)
    return sender


def answered_alaw(uas, peer):
    channel = answered(uas, peer)
    assert channel._leg.media().law == "alaw"
    return channel


# --------------------------------------------------------------------------- digits

def test_keys_in_band_in_rtp_are_collected(uas, peer):
    channel = answered_alaw(uas, peer)
    talk(peer, silence(0.1) + keys_in_band("159#") + silence(0.1))
    assert channel.DTMFDetector.get_digits(count=4, seconds_predigits_timeout=3) == "159#"


def test_a_press_sent_in_band_and_as_telephone_events_is_one_digit(uas, peer):
    channel = answered_alaw(uas, peer)
    sender = RtpSender(8)
    # A gateway that sends both: the tones stay in the audio and the events go in the
    # same numbering, the audio packets giving way to them (RFC 4733 2.5).
    for digit in "7337":
        audio_packets = [sender.packet(f) for f in frames(keys_in_band(digit, 100, 100))]
        events = sender.event_packets(digit, 100, telephone_event_pt=101)
        for packet in audio_packets[:5] + events + audio_packets[5:]:
            peer.send_rtp([packet])
            time.sleep(0.02)
    assert channel.DTMFDetector.get_digits(count=5, seconds_predigits_timeout=3,
                                           seconds_interdigit_timeout=1) == "7337"


def test_telephone_events_alone_and_in_band_alone(uas, peer):
    channel = answered_alaw(uas, peer)
    peer.send_digits("12")
    talk(peer, silence(0.1) + keys_in_band("34") + silence(0.1))
    peer.send_digits("5")
    assert channel.DTMFDetector.get_digits(count=5, seconds_predigits_timeout=3,
                                           seconds_interdigit_timeout=2) == "12345"


def test_rtp_from_a_stranger_is_refused(uas, peer):
    channel = answered_alaw(uas, peer)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.2", 0))  # another host (the allow-list takes all loopback)
    try:
        sender = RtpSender(8)
        for frame in frames(keys_in_band("666")):
            stranger.sendto(sender.packet(frame), peer.remote_rtp)
        for packet in RtpSender(8).event_packets("9", 60, telephone_event_pt=101):
            stranger.sendto(packet, peer.remote_rtp)
        time.sleep(0.3)
        assert channel.DTMFDetector.get_digits() == ""
        stream = channel._leg.media()
        assert stream.packets_refused >= 10
        peer.send_digits("1")  # the far end itself still gets through
        assert channel.DTMFDetector.get_digits(count=1, seconds_predigits_timeout=2) == "1"
    finally:
        stranger.close()


def test_rtp_from_the_callers_host_at_another_port_is_taken_once(uas, peer):
    """A far end behind NAT (or baresip, whose SDP names its LAN address): its RTP comes
    from the host its SIP comes from, at another port. The first such source is taken
    and answered; another port after it is not."""
    channel = answered_alaw(uas, peer)
    nat = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    nat.bind(("127.0.0.1", 0))
    later = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    later.bind(("127.0.0.1", 0))
    try:
        for packet in RtpSender(8).event_packets("4", 60, telephone_event_pt=101):
            nat.sendto(packet, peer.remote_rtp)
        assert channel.DTMFDetector.get_digits(count=1, seconds_predigits_timeout=2) == "4"
        nat.settimeout(1.0)
        assert nat.recvfrom(2048)  # our RTP now goes there, not to the SDP's port
        for packet in RtpSender(8).event_packets("5", 60, telephone_event_pt=101):
            later.sendto(packet, peer.remote_rtp)
            peer.send_rtp([packet])  # nor the SDP's own port, once another was taken
        time.sleep(0.3)
        assert channel.DTMFDetector.get_digits() == ""
    finally:
        nat.close()
        later.close()


def test_symmetric_rtp_takes_the_first_source_from_anywhere_once():
    server = Uas(symmetric_rtp=True)
    peer = SipPeer(server.address)
    elsewhere = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # another public address
    elsewhere.bind(("127.0.0.3", 0))
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.4", 0))
    try:
        channel = answered(server, peer)
        for packet in RtpSender(8).event_packets("4", 60, telephone_event_pt=101):
            elsewhere.sendto(packet, peer.remote_rtp)
        assert channel.DTMFDetector.get_digits(count=1, seconds_predigits_timeout=2) == "4"
        for packet in RtpSender(8).event_packets("5", 60, telephone_event_pt=101):
            stranger.sendto(packet, peer.remote_rtp)
        time.sleep(0.3)
        assert channel.DTMFDetector.get_digits() == ""
    finally:
        elsewhere.close()
        stranger.close()
        peer.close()
        server.close()


def test_a_key_in_a_flood_of_random_rtp(uas, peer):
    channel = answered_alaw(uas, peer)
    rng = random.Random(4)
    sender = RtpSender(8)
    key = frames(silence(0.06) + keys_in_band("8") + silence(0.06))
    for index in range(400):
        kind = rng.randrange(4)
        if kind == 0:  # garbage
            peer.send_rtp([rng.randbytes(rng.randrange(0, 300))])
        elif kind == 1:  # a valid header, a payload type nobody negotiated
            peer.send_rtp([struct.pack("!BBHII", 0x80, rng.randrange(128) | 0x80,
                                       rng.randrange(65536), rng.randrange(2 ** 32), 7)
                           + rng.randbytes(160)])
        elif kind == 2:  # telephone-event packets that are too short or nonsense
            peer.send_rtp([struct.pack("!BBHII", 0x80, 101, index, 9, 9)
                           + rng.randbytes(rng.choice((0, 2, 3)))])
        if index % 4 == 3 and key:  # and the caller's audio with one key press
            peer.send_rtp([sender.packet(key.pop(0))])
            time.sleep(0.02)
    assert channel.DTMFDetector.get_digits(count=1, seconds_predigits_timeout=2) == "8"
    assert channel.DTMFDetector.get_digits(seconds_predigits_timeout=0.3) == ""
    assert channel.state() is State.ANSWERED
    assert uas.engine.running


# --------------------------------------------------------------------------- jitter

def test_the_jitter_buffer_reorders_drops_duplicates_and_fills_a_loss(uas, peer, tmp_path):
    channel = answered_alaw(uas, peer)
    channel.media_dir = str(tmp_path)

    def shuffled(count: int) -> list[int]:
        order = [0]
        for at in range(1, count - 1, 2):
            order += [at + 1, at]  # every pair after the first swapped
        order.insert(2, 2)  # a duplicate of a packet waiting for the one before it
        order += [5, 5, 9]  # packets played already, arriving again late
        return [i for i in order if i != 30]  # one lost

    result = {}
    thread = threading.Thread(target=lambda: result.update(
        cause=channel.FileRecorder.record("jitter.wav", seconds_timeout=2.0,
                                          milliseconds_max_silence=0)))
    thread.start()
    time.sleep(0.1)
    talk(peer, tone(1000, 1.2, -15), order=shuffled)
    thread.join(5)
    assert result["cause"] is channel.FileRecorder.Cause.TIMEOUT
    samples = list(read_wav(tmp_path / "jitter.wav").samples)
    loud = [is_on for is_on in audio.dtmf_blocks(samples, "alaw")]  # nothing like DTMF
    assert not any(loud)
    runs = audio.on_off_segments(samples, threshold_dbm0=-40, law="alaw", frame=160)
    on = [seconds for is_on, seconds in runs if is_on]
    # 1.2 s of tone in order, with one 20 ms packet lost in it: two runs, 0.6 + 0.58 s
    assert len(on) == 2 and sum(on) == pytest.approx(1.18, abs=0.045)
    stream = channel._leg.media()
    jitter = stream._jitter
    assert (jitter.duplicates, jitter.late, jitter.lost) == (1, 3, 1)


# --------------------------------------------------------------------------- DTMFPlayer

def received_events(peer: SipPeer, seconds: float) -> list[tuple[int, int, bool]]:
    """(timestamp, event, end) of the telephone-event packets the caller receives."""
    out = []
    for packet in peer.rtp_packets(seconds):
        if packet.payload_type == 101 and len(packet.payload) == 4:
            event, flags, _duration = struct.unpack("!BBH", packet.payload)
            out.append((packet.timestamp, event, bool(flags & 0x80)))
    return out


def test_dtmf_player_sends_telephone_events_when_offered(uas, peer):
    channel = answered_alaw(uas, peer)
    peer.drain_rtp()
    result = {}
    thread = threading.Thread(target=lambda: result.update(cause=channel.DTMFPlayer.play("1#9")))
    thread.start()
    events = received_events(peer, 1.2)
    thread.join(5)
    assert result["cause"] is channel.DTMFPlayer.Cause.NORMAL
    pressed = []
    for timestamp, event, end in events:
        if not pressed or pressed[-1][0] != timestamp:
            pressed.append((timestamp, event, 0))
        if end:
            pressed[-1] = (timestamp, event, pressed[-1][2] + 1)
    assert [(e, ends) for _, e, ends in pressed] == [(1, 3), (11, 3), (9, 3)]


def test_dtmf_player_in_band_when_the_far_end_has_no_telephone_event(uas, peer):
    peer.invite(formats="8")
    peer.expect(100)
    channel = uas.channel()
    thread = threading.Thread(target=channel.answer)
    thread.start()
    peer.ack(peer.expect(200, method="INVITE"))
    thread.join(5)
    peer.drain_rtp()
    result = {}
    thread = threading.Thread(target=lambda: result.update(cause=channel.DTMFPlayer.play("24")))
    thread.start()
    packets = peer.rtp_packets(0.8)
    thread.join(5)
    assert result["cause"] is channel.DTMFPlayer.Cause.NORMAL
    assert {p.payload_type for p in packets} == {8}
    heard = audio.decode(b"".join(p.payload for p in packets), "alaw")
    assert audio.dtmf_keys(heard, "alaw") == "24"


# --------------------------------------------------------------------------- barge-in

def test_barge_in_by_telephone_event_stops_the_rtp_prompt(uas, peer):
    channel = answered_alaw(uas, peer)
    result = {}
    thread = threading.Thread(target=lambda: result.update(
        cause=channel.TonePlayer.play("RINGBACK_UK", seconds_duration=10, barge_in=True)))
    thread.start()
    time.sleep(0.5)
    peer.drain_rtp()
    peer.send_digits("3")
    packets = peer.rtp_packets(0.5)
    thread.join(5)
    assert result["cause"] is channel.TonePlayer.Cause.BARGEIN
    assert channel.DTMFDetector.get_digits() == "3"
    # the ringtone stops at once: after the first few packets (those in flight) silence
    payloads = [p.payload for p in packets if p.payload_type == 8]
    assert all(set(payload) == {ALAW.silence} for payload in payloads[4:])


def test_recording_on_sip_and_a_bye_in_the_middle(uas, peer, tmp_path):
    channel = answered_alaw(uas, peer)
    channel.media_dir = str(tmp_path)
    result = {}
    thread = threading.Thread(target=lambda: result.update(
        cause=channel.FileRecorder.record("sip.wav", milliseconds_max_silence=0)))
    thread.start()
    talk(peer, tone(600, 0.6))
    peer.bye()
    thread.join(5)
    assert result["cause"] is channel.FileRecorder.Cause.HANGUP
    samples = list(read_wav(tmp_path / "sip.wav").samples)
    assert audio.dominant_frequency(samples[800:4000]) == pytest.approx(600, abs=2)


@pytest.mark.slow
def test_the_ivr_example_over_sip(tmp_path):
    """examples/ivr.py, unchanged, served over SIP: the caller sends what the example's
    simulator script says as RTP (keys in band, a spoken message), in real time."""
    engine = Engine().start()
    try:
        backend = open_backend("sip", engine, listen="127.0.0.1:0", timers=FAST)
        app = Application.load(ROOT / "examples" / "ivr.py")
        host = AppHost(engine, backend, app, media_dir=tmp_path)
        engine.run(host.start)
        peer = SipPeer(backend.addresses[0])
        try:
            peer.invite(formats="8")
            peer.ack(peer.expect(200, timeout=10, method="INVITE"))
            talk(peer, CallerScript.parse(app.sim_caller).render("alaw").audio)
            peer.respond_to(peer.expect("BYE", timeout=30), 200)
        finally:
            peer.close()
        assert host.join(10)
        assert [r.return_code for r in host.results] == [0]
        message = read_wav(tmp_path / "recordings" / f"message-ivr-{host.run_id}-1.wav")
        assert 3.0 < message.duration < 5.0
        assert audio.level_dbm0(list(message.samples), "alaw") > -35
    finally:
        engine.stop()


def test_the_echo_of_our_telephone_events_in_band_is_not_a_key(uas, peer):
    """We send 123 as telephone-events; a gateway plays them on its line, whose echo
    comes back in band in the caller's RTP, 150 ms late and 15 dB down."""
    channel = answered_alaw(uas, peer)
    assert channel._leg.media().telephone_events
    echo = ALAW.encode(dtmf_samples("123", on_ms=80, off_ms=80, low_dbm0=-24,
                                    high_dbm0=-22, law="alaw"))
    thread = threading.Thread(target=talk, args=(peer, silence(0.15) + echo + silence(0.2)))
    thread.start()
    assert channel.DTMFPlayer.play("123") is channel.DTMFPlayer.Cause.NORMAL
    thread.join(5)
    assert channel.DTMFDetector.get_digits(seconds_predigits_timeout=0.5) == ""


@pytest.mark.parametrize("skew_ms", [-300, 200, 300])
def test_one_digit_per_press_when_events_lead_or_lag_the_tones(uas, peer, skew_ms):
    """A gateway sending each key in band and as telephone-events (a stream of their own)
    whose events reach us a few hundred milliseconds before or after the tones."""
    channel = answered_alaw(uas, peer)
    tones = silence(0.2) + keys_in_band("1234") + silence(0.6)
    events = RtpSender(101)
    voice = RtpSender(8)
    schedule = [(k * 0.02, voice.packet(f)) for k, f in enumerate(frames(tones))]
    for n, digit in enumerate("1234"):
        start = 0.2 + n * 0.16 + skew_ms / 1000
        packets = events.event_packets(digit, 80, telephone_event_pt=101)
        schedule += [(start + i * 0.02, p) for i, p in enumerate(packets[:-3])]
        schedule += [(start + (len(packets) - 4) * 0.02, p) for p in packets[-3:]]
        events.timestamp += 160 * 8
    t0 = time.monotonic()
    for at, packet in sorted(schedule, key=lambda item: item[0]):
        time.sleep(max(0.0, t0 + max(0.0, at) - time.monotonic()))
        peer.send_rtp([packet])
    assert channel.DTMFDetector.get_digits(seconds_predigits_timeout=1,
                                           seconds_interdigit_timeout=1) == "1234"


def test_plays_go_on_in_time_while_the_caller_holds_the_call(uas, peer):
    """On hold (a re-INVITE with a=sendonly) nothing goes to the caller, but a play ends
    when it would have; telephone-events are not kept for after the hold."""
    channel = answered_alaw(uas, peer)

    def reinvite(direction: str) -> None:
        peer.cseq += 1
        peer.branch = f"z9hG4bK{time.time_ns():x}"
        peer.send(peer.request("INVITE", branch=peer.branch, to_tag=peer.to_tag,
                               body=sdp_offer(peer.host, peer.rtp_port, direction=direction)))
        peer.ack(peer.expect(200, method="INVITE"))

    reinvite("sendonly")
    peer.drain_rtp()
    started = time.monotonic()
    assert channel.DTMFPlayer.play("123") is channel.DTMFPlayer.Cause.NORMAL
    assert channel.TonePlayer.play("RINGBACK_EU", 0.5) is channel.TonePlayer.Cause.NORMAL
    assert time.monotonic() - started < 2.0
    assert peer.rtp_packets(0.3) == []
    reinvite("sendrecv")
    assert all(p.payload_type == 8 for p in peer.rtp_packets(0.3))  # no late events
