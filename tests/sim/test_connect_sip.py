"""A PRI call joined to a SIP call: early media passed on, law conversion, keys both ways.

The box is one engine (real time: SIP is real UDP) with a simulated E1 span (A-law; the
exchange is a real libpri instance in network mode) and a SIP backend. The SIP far end is
a phone: another uascall SIP user agent on an engine of its own, which takes mu-law only,
so every frame is converted. The exchange and the phone record what they hear; the test
analyses it with its own filters (``tests/audio.py``).
"""

from __future__ import annotations

import math
import queue
import time
import wave

import pytest

from tests import audio
from uascall.backend import Cause, open_backend
from uascall.channel import State, UASCallChannel
from uascall.engine import Engine
from uascall.media.player import MediaClock
from uascall.media.tones import ToneManager
from uascall.sim.backend import SimBackend

from .helpers import T, Wire
from .sip_peer import FAST

LAW = "alaw"  # the E1 span's; the phone speaks mu-law


def tone_manager() -> ToneManager:
    tones = ToneManager()
    # steady tones, one for each direction, told apart by frequency
    tones.create_tone([({"frequency": 1209, "amplitude": 16}, {}, {"duration": 9999})],
                      "PHONE_TONE")
    tones.create_tone([({"frequency": 1633, "amplitude": 12}, {}, {"duration": 9999})],
                      "EARLY_TONE")
    return tones


class Phone:
    """A SIP phone: a uascall SIP user agent whose calls come to :meth:`call`."""

    def __init__(self, media_dir) -> None:
        self.engine = Engine().start()
        self.backend = open_backend("sip", self.engine, listen="127.0.0.1:0", timers=FAST,
                                    codecs="g711u")
        self.clock = MediaClock(self.engine)
        self.calls: queue.Queue[UASCallChannel] = queue.Queue()
        self.media_dir = media_dir

        def incoming(leg) -> None:
            channel = UASCallChannel(self.engine, leg, media_clock=self.clock,
                                     media_dir=media_dir)
            channel.create_tone_player(tone_manager())
            self.calls.put(channel)

        self.backend.on_incoming = incoming
        self.engine.run(self.backend.start)

    @property
    def uri(self) -> str:
        host, port = self.backend.addresses[0]
        return f"sip:phone@{host}:{port}"

    def call(self) -> UASCallChannel:
        return self.calls.get(timeout=T)

    def close(self) -> None:
        self.engine.run(self.backend.stop)
        self.engine.stop()


class Box:
    """The gateway box: a simulated E1 span and a SIP backend on one engine."""

    def __init__(self) -> None:
        self.engine = Engine().start()
        self.clock = MediaClock(self.engine)
        self.sim = SimBackend(self.engine, kind="E1")
        self.sip = open_backend("sip", self.engine, listen="127.0.0.1:0", timers=FAST)
        self.incoming: queue.Queue[UASCallChannel] = queue.Queue()

        def incoming(leg) -> None:
            channel = UASCallChannel(self.engine, leg, media_clock=self.clock)
            channel.create_tone_player(ToneManager())
            self.incoming.put(channel)

        self.sim.on_incoming = self.sip.on_incoming = incoming
        self.engine.run(self.sim.start)
        self.engine.run(self.sip.start)
        assert self.engine.wait_until(lambda: self.sim.up, T)
        assert self.sim.loop is not None
        self.wire = Wire(self.sim.loop.tap, self.sim.loop.cpe.layout.dchannel)

    def outbound(self, backend=None, route: str | None = None) -> UASCallChannel:
        return UASCallChannel(self.engine, backend=backend or self.sip, route=route,
                              media_clock=self.clock)

    @property
    def uri(self) -> str:
        host, port = self.sip.addresses[0]
        return f"sip:service@{host}:{port}"

    def exchange_calls(self):
        far = self.engine.run(self.sim.far_end.dial, "5551000")
        return self.incoming.get(timeout=T), far

    def close(self) -> None:
        self.engine.run(self.sip.stop)
        self.engine.run(self.sim.stop)
        self.engine.stop()


@pytest.fixture
def box():
    gateway = Box()
    yield gateway
    gateway.close()


@pytest.fixture
def phone(tmp_path):
    far = Phone(tmp_path)
    yield far
    far.close()


def tone(freq: float, seconds: float, level_dbm0: float, law: str) -> list[int]:
    peak = audio.reference_rms(law) * math.sqrt(2) * 10 ** (level_dbm0 / 20)
    return [round(peak * math.sin(2 * math.pi * freq * n / 8000))
            for n in range(round(seconds * 8000))]


def median_level(samples: list[int], freq: float, law: str) -> float:
    """The level of ``freq`` in the middle 20 ms frame of ``samples``, ranked: a frame a
    late engine slipped or filled with silence (real time, a loaded machine) moves the
    mean of a second, not the median."""
    levels = sorted(audio.component_level_dbm0(samples[n:n + 160], freq, law)
                    for n in range(0, len(samples) - 159, 160))
    return levels[len(levels) // 2]


def recording_started(path) -> None:
    """Wait until a recording's file exists: the recorder hears from then on (the thread
    that starts it may start late on a loaded machine)."""
    deadline = time.monotonic() + T
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name}: the recording never started"
        time.sleep(0.01)


def in_thread(engine: Engine, fn, *args, **kwargs) -> dict:
    result: dict = {}
    result["thread"] = engine.start_actor_thread(
        lambda: result.setdefault("value", fn(*args, **kwargs)))
    return result


def finished(result: dict):
    result["thread"].join(T)
    assert "value" in result, "the blocking call did not return"
    return result["value"]


def pri_to_sip(box: Box, phone: Phone):
    """The exchange calls the box, which calls the phone and passes its early media on
    until it answers; then the two are connected. Returns (ours in, exchange's call,
    ours out, the phone's channel) and the index of what the exchange heard at CONNECT."""
    ours, far = box.exchange_calls()
    out = box.outbound()
    assert out.start_call(phone.uri, call_from="5552000") is State.CALL_OUTGOING
    theirs = phone.call()
    ringing = in_thread(phone.engine, theirs.ring, 0, negotiate_early_media=True,
                        custom_ringtone="EARLY_TONE", loop_ringtone=True)
    assert finished(ringing) is State.RING_INCOMING
    assert out.wait_for_ringing(T) is State.RING_OUTGOING
    rung = in_thread(box.engine, ours.ring, None, negotiate_early_media=True,
                     custom_ringtone=out)
    box.engine.sleep(1.5)
    answered = in_thread(phone.engine, theirs.answer)
    assert finished(rung) is State.RING_INCOMING  # ring(None) ends with the answer
    assert finished(answered) is State.ANSWERED
    assert out.wait_for_answer(T) is State.ANSWERED
    assert ours.answer() is State.ANSWERED
    at_connect = len(far.heard)
    assert ours.connect(out) is True
    return ours, far, out, theirs, at_connect


def test_pri_caller_hears_the_sip_sides_early_media_then_talks_both_ways(box, phone):
    ours, far, out, theirs, at_connect = pri_to_sip(box, phone)
    alerting = box.wire.find("cpe", "ALERTING")
    assert alerting.progress_descriptions == [8]  # in-band information now available
    early = audio.decode(bytes(far.heard[:at_connect]), LAW)
    # the phone's early tone, sent in mu-law RTP, heard in A-law on the B-channel
    assert audio.dominant_frequency(early[-8000:]) == pytest.approx(1633, abs=3)
    assert median_level(early[-8000:], 1633, LAW) == pytest.approx(-12.0, abs=0.5)
    assert box.wire.names("cpe").index("ALERTING") < box.wire.names("cpe").index("CONNECT")

    # both ways once connected: the exchange's caller talks, the phone records it
    recording = in_thread(phone.engine, theirs.FileRecorder.record, "heard.wav",
                          milliseconds_max_silence=0, seconds_timeout=2.5,
                          file_format="pcm16")
    recording_started(phone.media_dir / "heard.wav")
    mark = len(far.heard)
    box.engine.run(far.say, tone(697.0, 1.0, -10.0, LAW))
    playing = in_thread(phone.engine, theirs.TonePlayer.play, "PHONE_TONE",
                        seconds_duration=1.0)
    assert finished(playing) is theirs.TonePlayer.Cause.NORMAL
    assert finished(recording) is theirs.FileRecorder.Cause.TIMEOUT
    with wave.open(str(phone.media_dir / "heard.wav")) as wav:
        heard_by_phone = list(memoryview(wav.readframes(wav.getnframes())).cast("h"))
    # the caller's tone, judged on its steady frames (a frame a late engine slips in real
    # time breaks the phase: the median of 100 ms windows is not moved by one)
    tone_heard = audio.steady(heard_by_phone, 697, "ulaw")
    assert len(tone_heard) / 8000 >= 0.9
    windows = sorted(audio.dominant_frequency(tone_heard[n:n + 800])
                     for n in range(0, len(tone_heard) - 799, 800))
    assert windows[len(windows) // 2] == pytest.approx(697, abs=3)
    box.engine.sleep(0.3)
    # (the first 0.1 s may still be the early tone the phone had queued when it answered)
    heard_by_caller = audio.steady(audio.decode(bytes(far.heard[mark:]), LAW), 1209, LAW)
    # the tone's frames but the two at its ends; in real time, with the machine busy, a
    # late engine may cost a frame or two (a slip, an underrun), never more
    assert 0.90 <= len(heard_by_caller) / 8000 <= 1.04
    assert median_level(heard_by_caller, 1209, LAW) == pytest.approx(-16.0, abs=0.5)

    # the phone hangs up: the box is told and clears the caller with the same cause
    assert theirs.hang_up() is State.IDLE
    assert ours.wait_for_idle(T) is State.ANSWERED
    assert ours.Details.disconnect_cause is Cause.NORMAL and out.state() is State.IDLE
    assert ours.hang_up() is State.IDLE
    assert box.engine.wait_until(lambda: far.cleared, T) and far.call.cause == 16


def test_keys_cross_from_pri_in_band_to_sip_as_events_and_back(box, phone):
    _ours, far, out, theirs, _ = pri_to_sip(box, phone)
    assert out._leg.media().telephone_events  # the phone offered telephone-event
    box.engine.run(lambda: far.press("159"))
    assert theirs.DTMFDetector.get_digits(count=3, seconds_predigits_timeout=T,
                                          seconds_interdigit_timeout=T) == "159"
    mark = len(far.heard)
    assert theirs.DTMFPlayer.play("*0#") is theirs.DTMFPlayer.Cause.NORMAL
    box.engine.sleep(0.5)
    assert audio.dtmf_keys(audio.decode(bytes(far.heard[mark:]), LAW), LAW) == "*0#"
    # one digit per press on the phone: the events, not the tone leaking before them too
    assert theirs.DTMFDetector.get_digits(count=1, seconds_predigits_timeout=0.5) == ""
    # and the caller hangs up: the phone's side is told
    box.engine.run(far.hangup)
    assert out.wait_for_idle(T) is State.ANSWERED
    assert out.Details.disconnect_cause is Cause.NORMAL
    out.hang_up()
    assert theirs.wait_for_idle(T) is State.IDLE


def test_a_sip_call_is_transferred_to_the_pri_exchange_and_taken_back(box, phone):
    caller = UASCallChannel(phone.engine, backend=phone.backend, media_clock=phone.clock,
                            media_dir=phone.media_dir)
    dialled = in_thread(phone.engine, caller.call, box.uri, call_from="phone")
    ours = box.incoming.get(timeout=T)
    assert ours.answer() is State.ANSWERED
    assert finished(dialled) is State.ANSWERED
    box.sim.far_end.answer_after = 1.0
    leg = box.outbound(box.sim, route="pri")
    assert ours.retrievable_transfer(leg, "5559000", call_from="5551000",
                                     seconds_timeout=T) is State.TRANSFERRED
    target = box.sim.far_end.incoming[-1]
    # the SIP caller and the PRI target hear each other
    recording = in_thread(phone.engine, caller.FileRecorder.record, "target.wav",
                          milliseconds_max_silence=0, seconds_timeout=1.5,
                          file_format="pcm16")
    recording_started(phone.media_dir / "target.wav")
    box.engine.run(target.say, tone(941.0, 1.0, -12.0, LAW))
    assert finished(recording) is caller.FileRecorder.Cause.TIMEOUT
    with wave.open(str(phone.media_dir / "target.wav")) as wav:
        heard = list(memoryview(wav.readframes(wav.getnframes())).cast("h"))
    # the ringback stopped when the target answered (nothing of it was left queued: it
    # was -19 when the box's stream kept five frames of it). The first 60 ms may hold the
    # last frames of it sent before the answer, from the phone's jitter buffer (depth 3)
    assert audio.component_level_dbm0(heard[480:1280], 440, "ulaw") < -40
    assert audio.dominant_frequency(audio.steady(heard, 941, "ulaw")) == pytest.approx(941, abs=3)
    # the target hangs up: the box has its caller back
    box.engine.run(target.hangup)
    assert ours.wait_for_idle(T) is State.ANSWERED
    assert ours.transfer_cause() is ours.TransferCause.TARGETHANGUP
    assert ours.hang_up() is State.IDLE
    assert caller.wait_for_idle(T) is State.IDLE


def test_a_sip_caller_hears_the_pri_sides_inband_ringback_as_early_media(box, phone):
    caller = UASCallChannel(phone.engine, backend=phone.backend, media_clock=phone.clock,
                            media_dir=phone.media_dir)
    dialled = in_thread(phone.engine, caller.call, box.uri, call_from="phone")
    ours = box.incoming.get(timeout=T)
    early: list[bytes] = []  # what the caller hears before the answer
    phone.engine.run(caller._follow, lambda frame, law: early.append(frame))
    box.sim.far_end.inband = True  # ALERTING with progress indicator #8
    box.sim.far_end.answer_after = None
    leg = box.outbound(box.sim, route="pri")
    leg.start_call("5559000", call_from="5551000")
    assert leg.wait_for_ringing(T) is State.RING_OUTGOING
    target = box.sim.far_end.incoming[-1]
    box.engine.run(target.say, tone(425.0, 3.0, -13.0, LAW))  # the exchange's ringback
    ringing = in_thread(box.engine, ours.ring, None, negotiate_early_media=True,
                        custom_ringtone=leg)
    deadline = time.monotonic() + T
    while len(early) < 75 and time.monotonic() < deadline:  # 1.5 s of early media
        time.sleep(0.05)
    assert caller.state() is State.RING_OUTGOING  # a 183 with SDP
    heard = audio.decode(b"".join(early), "ulaw")
    assert len(heard) > 4000, "no early media reached the SIP caller"
    assert audio.dominant_frequency(heard[-4000:]) == pytest.approx(425, abs=3)
    assert median_level(heard[-4000:], 425, "ulaw") == pytest.approx(-13.0, abs=0.5)
    box.engine.run(target.call.answer)
    assert finished(ringing) is State.RING_INCOMING
    assert ours.answer() is State.ANSWERED and ours.connect(leg)
    assert finished(dialled) is State.ANSWERED
    assert caller.hang_up() is State.IDLE
    assert ours.wait_for_idle(T) is State.IDLE and leg.wait_for_idle(T) is State.ANSWERED
    assert leg.Details.disconnect_cause is Cause.NORMAL
    assert leg.hang_up() is State.IDLE
    assert box.engine.wait_until(lambda: target.cleared, T) and target.call.cause == 16
