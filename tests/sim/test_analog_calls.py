"""Calls on analog ports through the channel API, on either rig.

The loop (:func:`analog_loop_conf`, four lines) gives channels 1-4 fxoks and 5-8 fxsks,
wired 1-5, 2-6, 3-7, 4-8. Under test: our FXO port on channel 5, whose line comes from a
simulated exchange on channel 1, and our FXS port on channel 2, with a simulated phone on
channel 6.
"""

from __future__ import annotations

import array
import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

from tests import audio
from uascall import PlayableMedia, ToneManager
from uascall.app import AppHost, Application
from uascall.backend import Cause
from uascall.channel import State, UASCallChannel
from uascall.dahdi import abi
from uascall.dahdi.analog import AnalogSettings
from uascall.dahdi.backend import DahdiBackend
from uascall.dahdi.config import SystemConf
from uascall.engine import Engine
from uascall.media import g711
from uascall.media.callerid import CallerId
from uascall.media.player import MediaClock
from uascall.media.wav import read_wav
from uascall.sim.analog_farend import Exchange, Phone, analog_loop_conf
from uascall.sim.caller import CallerScript

from .helpers import MEDIA, T

ROOT = Path(__file__).resolve().parents[2]
FXO, EXCHANGE = 5, 1
FXS, PHONE = 2, 6
CALLER = CallerId(number="5552000", name="Lab Caller")


@dataclasses.dataclass
class Lines:
    engine: Engine
    backend: DahdiBackend
    exchange: Exchange
    phone: Phone
    channels: list[UASCallChannel]
    clock: MediaClock
    #: the calls incoming() has returned (a call may be offered before it is asked for:
    #: an FXO port without caller ID offers at the ring's first millisecond)
    taken: int = 0

    def incoming(self) -> UASCallChannel:
        """The next call offered that incoming() has not returned yet."""
        assert self.engine.wait_until(lambda: len(self.channels) > self.taken, 3 * T), \
            "no call was offered"
        self.taken += 1
        return self.channels[self.taken - 1]

    def outbound(self) -> UASCallChannel:
        return UASCallChannel(self.engine, backend=self.backend, route=f"fxs:{FXS}",
                              media_clock=self.clock, media_dir=MEDIA)

    def elapsed(self, fn, *args, **kwargs) -> tuple[Any, float]:
        t0 = self.engine.time()
        result = fn(*args, **kwargs)
        return result, self.engine.time() - t0


def build(rig, settings: AnalogSettings):
    """The loop, our two ports, and the far ends, on the rig's kernel."""
    engine_cm = rig.engine()
    engine = engine_cm.__enter__()
    conf = analog_loop_conf(4)
    io = rig.kernel(engine, conf)
    backend = DahdiBackend(engine, system_conf=SystemConf.parse(conf), ports=[FXO, FXS],
                           analog=settings, io=io)
    clock = MediaClock(engine)
    channels: list[UASCallChannel] = []
    backend.on_incoming = lambda leg: channels.append(
        UASCallChannel(engine, leg, media_clock=clock, media_dir=MEDIA))
    exchange = Exchange(engine, EXCHANGE, clock=clock, io=io)
    phone = Phone(engine, PHONE, clock=clock, io=io)

    def start():
        backend.start()
        exchange.start()
        phone.start()

    engine.run(start)
    engine.sleep(2.1)  # rings are not reported for 2 s after a line is opened
    return engine_cm, Lines(engine, backend, exchange, phone, channels, clock)


@pytest.fixture
def lines(rig):
    engine_cm, world = build(rig, AnalogSettings())
    yield world
    engine_cm.__exit__(None, None, None)


@pytest.fixture
def lines_without_callerid(rig):
    engine_cm, world = build(rig, AnalogSettings(callerid=None))
    yield world
    engine_cm.__exit__(None, None, None)


def tone_level(samples, freq: float, law: str = "ulaw") -> float:
    return audio.component_level_dbm0(samples, freq, law)


# --------------------------------------------------------------------------- FXO port
def test_fxo_offers_the_call_with_caller_id_rings_answers_and_the_caller_hangs_up(lines):
    engine, exchange = lines.engine, lines.exchange
    t0 = engine.time()
    engine.run(exchange.ring, CALLER)
    channel = lines.incoming()
    offered = engine.time() - t0
    assert 2.0 < offered < 6.0  # after the first ring and its caller ID, before ring 2
    assert channel.state() is State.CALL_INCOMING
    assert (channel.Details.call_from, channel.Details.call_to) == ("5552000", "")
    assert channel.Details.channel == f"FXO port channel {FXO} (ulaw)"
    # No early media on a line: the ringtone is ignored and ring() just waits.
    with_tones = channel.create_tone_player(ToneManager())
    assert with_tones is channel.TonePlayer
    state, waited = lines.elapsed(channel.ring, 3, negotiate_early_media=True,
                                  custom_ringtone="RINGBACK")
    assert state is State.RING_INCOMING and waited == pytest.approx(3.0, abs=0.2)
    assert channel.answer() is State.ANSWERED
    assert engine.wait_until(lambda: exchange.state == "connected", T)
    # audio both ways: our tone reaches the exchange, the exchange's voice reaches us
    mark = len(exchange.heard)
    assert channel.TonePlayer.play("RINGBACK", 1.0) is channel.TonePlayer.Cause.NORMAL
    engine.sleep(0.2)
    heard = exchange.heard_pcm(mark)
    assert tone_level(heard, 440) > -30 and tone_level(heard, 480) > -30
    engine.run(exchange.hang_up)
    assert channel.wait_for_idle(T) is State.IDLE
    assert channel.cause() is Cause.NORMAL
    assert channel.Details.raw_cause == "loop-current-drop"


def test_fxo_caller_giving_up_ends_the_call_when_the_rings_stop(lines):
    engine, exchange = lines.engine, lines.exchange
    engine.run(exchange.ring, CALLER)
    channel = lines.incoming()
    engine.sleep(4.0)  # into the second ring
    engine.run(exchange.give_up)
    t_gone = engine.time()
    assert channel.wait_for_idle(3 * T) is State.IDLE
    # the last ring event, then the 8 s ring timeout
    assert engine.time() - t_gone == pytest.approx(8.0, abs=2.1)
    assert channel.cause() is Cause.NORMAL
    assert channel.Details.raw_cause == "rings-stopped"
    with pytest.raises(Exception, match="IDLE"):
        channel.answer()


def test_fxo_without_caller_id_offers_at_the_first_ring(lines_without_callerid):
    lines = lines_without_callerid
    engine = lines.engine
    t0 = engine.time()
    engine.run(lines.exchange.ring, CALLER)
    channel = lines.incoming()
    assert engine.time() - t0 < 0.5
    assert channel.Details.call_from == ""
    assert channel.answer() is State.ANSWERED
    assert channel.hang_up() is State.IDLE
    # our port went on hook: the exchange is told (after its 1.25 s on-hook debounce)
    assert engine.wait_until(lambda: lines.exchange.state == "idle", T)


def test_fxo_declining_lets_the_line_ring_out_then_takes_the_next_call(lines):
    engine, exchange = lines.engine, lines.exchange
    engine.run(exchange.ring, CALLER)
    channel = lines.incoming()
    assert channel.reject() is State.IDLE and channel.cause() is Cause.REJECTED
    engine.sleep(7.0)
    assert exchange.state == "ringing"  # an FXO port can only not answer
    engine.run(exchange.give_up)
    engine.sleep(10.0)  # the port waits for the rings to stop
    engine.run(exchange.ring, None)
    again = lines.incoming()
    assert again is not channel and again.state() is State.CALL_INCOMING


# --------------------------------------------------------------------------- FXS port
def test_fxs_rings_the_phone_with_caller_id_and_the_phone_answers(lines):
    engine, phone = lines.engine, lines.phone
    phone.answer_after = 2
    channel = lines.outbound()
    assert channel.state() is State.IDLE
    state, took = lines.elapsed(channel.call, "phone", call_from="5551234")
    assert state is State.ANSWERED
    assert took == pytest.approx(8.05, abs=0.5)  # answered as its second ring ended
    assert [c.number for c in phone.callers] == ["5551234"]
    assert channel.Details.direction == "outbound"
    # audio both ways
    mark = len(phone.heard)
    channel.FilePlayer.play("goodbye.wav")
    assert audio.level_dbm0(phone.heard_pcm(mark), "ulaw") > -40
    engine.run(phone.hang_up)
    t_down = engine.time()
    assert channel.wait_for_idle(T) is State.IDLE
    assert engine.time() - t_down == pytest.approx(1.25, abs=0.1)
    assert channel.cause() is Cause.NORMAL and channel.Details.raw_cause == "on-hook"


def test_fxs_call_not_answered_times_out_and_stops_ringing(lines):
    engine, phone = lines.engine, lines.phone
    channel = lines.outbound()
    state, took = lines.elapsed(channel.call, "phone", seconds_timeout=7)
    assert state is State.IDLE and channel.cause() is Cause.NOANSWER
    assert took == pytest.approx(7.0, abs=0.3)
    rings = phone.rings
    engine.sleep(7.0)
    assert phone.rings == rings  # the ringing stopped
    assert channel.call("phone", seconds_timeout=0.5) is State.IDLE  # the channel again


def test_fxs_phone_dials_out_rings_in_band_is_answered_and_cleared(lines):
    engine, phone = lines.engine, lines.phone
    mark = len(phone.heard)
    engine.run(phone.lift)
    engine.sleep(1.0)
    dial_tone = phone.heard_pcm(mark)[-4000:]
    assert tone_level(dial_tone, 350) > -20 and tone_level(dial_tone, 440) > -20
    engine.run(phone.dial, "5551000#")
    channel = lines.incoming()
    assert channel.Details.call_to == "5551000"
    assert channel.Details.channel == f"FXS port channel {FXS} (ulaw)"
    # ring(): the phone is off hook, so ringing is heard in band: the zone's ringback
    mark = len(phone.heard)
    assert channel.ring(2.5) is State.RING_INCOMING
    ringback = phone.heard_pcm(mark)[:8000]
    assert tone_level(ringback, 440) > -25 and tone_level(ringback, 480) > -25
    assert channel.answer() is State.ANSWERED
    mark = len(phone.heard)
    engine.sleep(1.0)
    assert tone_level(phone.heard_pcm(mark), 440) < -50  # ringback stopped at the answer
    t0 = engine.time()
    assert channel.hang_up() is State.IDLE
    assert engine.wait_until(lambda: phone.disconnected_at is not None, T)
    assert phone.disconnected_at - t0 < 0.1  # kewlstart: the phone hears it at once
    engine.run(phone.hang_up)
    engine.sleep(2.0)
    follow = lines.outbound()  # the port is free again once the phone is on hook
    phone.answer_after = 1
    assert follow.call("phone", seconds_timeout=10) is State.ANSWERED


def test_fxs_early_media_plays_the_applications_ringtone_instead(lines):
    phone = lines.phone
    channel = phone_calls(lines, "7#")
    greeting = PlayableMedia(text_to_say="Please hold.", channel=channel)
    mark = len(phone.heard)
    state = channel.ring(None, negotiate_early_media=True, custom_ringtone=greeting)
    assert state is State.RING_INCOMING
    heard = phone.heard_pcm(mark)
    assert len(heard) >= 0.9 * greeting.duration * 8000
    assert tone_level(heard, 440) < -40  # not the port's ringback: the greeting
    # nor a moment of it before the greeting (its first 80 ms once, on the vm rig more):
    # the greeting's speech starts with silence of its own
    assert tone_level(heard[:800], 440) < -40
    assert audio.level_dbm0(heard, "ulaw") > -35
    channel.hang_up()


def test_fxs_place_call_refused_while_the_phone_is_busy(lines):
    engine, phone = lines.engine, lines.phone
    engine.run(phone.lift)
    engine.sleep(0.5)
    channel = lines.outbound()
    assert channel.call("phone", seconds_timeout=2) is State.IDLE
    assert channel.cause() is Cause.NOCHANNELS
    assert "no idle FXS port" in channel.Details.raw_cause
    assert phone.rings == 0 and phone.count(abi.DAHDI_EVENT_RINGBEGIN) == 0


# --------------------------------------------------------------------------- listening
def answered_fxo(lines) -> UASCallChannel:
    engine, exchange = lines.engine, lines.exchange
    engine.run(exchange.ring, CALLER)
    channel = lines.incoming()
    assert channel.answer() is State.ANSWERED
    assert engine.wait_until(lambda: exchange.state == "connected", T)
    return channel


def test_fxo_hears_the_callers_keys_and_barge_in_stops_the_prompt(lines):
    engine, exchange = lines.engine, lines.exchange
    channel = answered_fxo(lines)
    engine.run(exchange.press, "246#")  # the caller's keypad
    assert channel.DTMFDetector.get_digits(end="#", seconds_predigits_timeout=T,
                                           seconds_interdigit_timeout=T) == "246"
    prompt = PlayableMedia(text_to_say="For sales press one, for support press two.",
                           channel=channel)
    prompt.duration  # noqa: B018 - rendered before the clock runs
    engine.run(engine.call_later, 0.4, exchange.press, "1")
    assert channel.FilePlayer.play(prompt, barge_in=True) is channel.FilePlayer.Cause.BARGEIN
    assert channel.DTMFDetector.get_digits() == "1"
    channel.hang_up()


def test_fxo_records_the_caller_and_our_dtmf_reaches_the_exchange(lines, tmp_path):
    engine, exchange = lines.engine, lines.exchange
    channel = answered_fxo(lines)
    channel.media_dir = str(tmp_path)
    said = [round(8000 * math.sin(2 * math.pi * 800 * n / 8000)) for n in range(8000)]
    engine.run(exchange.play, said)
    cause = channel.FileRecorder.record("line.wav", milliseconds_max_silence=1000)
    assert cause is channel.FileRecorder.Cause.SILENCE
    samples = list(read_wav(tmp_path / "line.wav").samples)
    on = [s for is_on, s in audio.on_off_segments(samples, -40, law="alaw") if is_on]
    assert on == [pytest.approx(1.0, abs=0.05)]
    mark = len(exchange.heard)
    assert channel.DTMFPlayer.play("90*") is channel.DTMFPlayer.Cause.NORMAL
    engine.sleep(0.3)
    assert audio.dtmf_keys(exchange.heard_pcm(mark), "ulaw") == "90*"
    channel.hang_up()


def phone_calls(lines, number: str) -> UASCallChannel:
    """The phone on our FXS port lifts, dials ``number`` and is offered as a call."""
    lines.engine.run(lines.phone.lift)
    lines.engine.sleep(0.3)
    lines.engine.run(lines.phone.dial, number)
    return lines.incoming()


def test_fxs_keys_after_the_answer_not_the_number_dialled(lines):
    engine, phone = lines.engine, lines.phone
    channel = phone_calls(lines, "5551000#")
    assert channel.answer() is State.ANSWERED
    engine.sleep(0.3)
    assert channel.DTMFDetector.get_digits() == ""  # the number went to Details.call_to
    engine.run(phone.dial, "3A")
    assert channel.DTMFDetector.get_digits(count=2, seconds_predigits_timeout=T,
                                           seconds_interdigit_timeout=T) == "3A"
    channel.hang_up()


def test_fxs_phone_we_called_presses_keys(lines):
    engine, phone = lines.engine, lines.phone
    phone.answer_after = 1
    channel = lines.outbound()
    assert channel.call("phone", seconds_timeout=10) is State.ANSWERED
    engine.run(phone.dial, "77")
    assert channel.DTMFDetector.get_digits(count=2, seconds_predigits_timeout=T,
                                           seconds_interdigit_timeout=T) == "77"
    channel.hang_up()


def test_fxs_ringtone_without_early_media_is_ignored_for_the_ports_ringback(lines):
    phone = lines.phone
    channel = phone_calls(lines, "7#")
    channel.create_tone_player(ToneManager())
    mark = len(phone.heard)
    assert channel.ring(2.0, custom_ringtone="RINGBACK_EU") is State.RING_INCOMING
    heard = phone.heard_pcm(mark)[:12000]
    assert tone_level(heard, 440) > -25 and tone_level(heard, 480) > -25  # the zone's
    assert tone_level(heard, 425) < tone_level(heard, 440) - 10  # not the custom one
    channel.hang_up()


def test_fxs_early_media_without_a_ringtone_plays_nothing(lines):
    """aculab-ring.txt: with early media and custom_ringtone None, "nothing is played":
    not the port's ringback either (it played before, until a ringtone replaced it)."""
    phone = lines.phone
    channel = phone_calls(lines, "7#")
    mark = len(phone.heard)
    assert channel.ring(1.0, negotiate_early_media=True) is State.RING_INCOMING
    heard = phone.heard_pcm(mark)
    assert len(heard) >= 0.9 * 8000
    assert audio.level_dbm0(heard, "ulaw") < -60, audio.level_dbm0(heard, "ulaw")
    channel.hang_up()


def test_the_ivr_example_answers_an_fxo_line(lines, tmp_path):
    """examples/ivr.py, unchanged, on an FXO port: the exchange's caller does what the
    example's simulator script says (keys in band, then a spoken message)."""
    engine, exchange = lines.engine, lines.exchange
    app = Application.load(ROOT / "examples" / "ivr.py")
    media = tmp_path / "media"
    media.mkdir()
    host = AppHost(engine, lines.backend, app, media_dir=media)
    engine.run(host.take_calls)
    caller = CallerScript.parse(app.sim_caller).render("ulaw")
    engine.run(exchange.ring, CALLER)
    assert engine.wait_until(lambda: exchange.state == "connected", 3 * T)
    engine.run(exchange.play, array.array("h", g711.ULAW.decode(caller.audio)))
    assert engine.wait_until(lambda: host.total_calls == 1, 60.0), host.running()
    assert [r.return_code for r in host.results] == [0]
    message = read_wav(media / "recordings" / f"message-ivr-{host.run_id}-1.wav")
    assert 3.0 < message.duration < 5.0  # the caller's 3.4 s of speech, not silence
    assert audio.level_dbm0(list(message.samples), "alaw") > -35
