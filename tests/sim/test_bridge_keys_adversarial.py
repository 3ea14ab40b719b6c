"""Keys carried across a bridge, under the timings and pairs that could break them.

A key heard in band towards a DAHDI channel is sounded there by the kernel
(DAHDI_FLUSH_WRITE, then DAHDI_SENDTONE of the digit, held down while the far end holds
the key, at least 60 ms, 60 ms between keys), its tone muted in what is passed on, and
the call's taps (the bridge, a recorder) see each frame only once the DTMF bank has
analysed it. The scenarios here press keys fast (Q.24's 40 ms on,
40 ms off) and slow (a key held 2 s), repeat a digit, press at both ends at once, talk
right before and after a key, play speech that holds no key, record a bridged call, and
keep a call up for ten minutes with keys every few seconds; each checks what the far
ends heard with the test's own filters (``tests/audio.py``), never uascall's.
"""

from __future__ import annotations

import random
import time

import pytest

from tests import audio
from tests.rigs import SimRig
from uascall import faultlog
from uascall.channel import State, UASCallChannel
from uascall.dahdi.analog import AnalogSettings
from uascall.media import g711
from uascall.media.dtmf import dtmf_samples
from uascall.media.player import MediaClock
from uascall.sim.analog_farend import Destination
from uascall.sim.backend import SimBackend
from uascall.sip.rtp import RtpSender

from .helpers import MEDIA, T, World
from .sip_peer import SipPeer, answer_through
from .test_connect import heard_since, joined
from .test_connect_adversarial import finished, in_thread
from .test_connect_sip import Box
from .test_connect_tdm import (
    LINE_NUMBER,
    Wiring,
    box_on,
    keys_in,
    pcm,
    phone_to_pri,
    pri_to_line,
    tdm_conf,
)
from .test_listening import tone

# The simulator only: exact timings (a key's edges against the engine's steps) need its
# virtual time, and the real-time scenarios stall the engine on purpose (live_world).
pytestmark = pytest.mark.sim_only


def keys_at(world: World, far, mark: int) -> str:
    return audio.dtmf_keys(heard_since(far, mark, world.law), world.law)


def all_digits(channel: UASCallChannel) -> str:
    return channel.DTMFDetector.get_digits(seconds_predigits_timeout=0)


# --------------------------------------------------------------------------- timings

@pytest.mark.parametrize("keys, on_ms, off_ms", [
    ("159#", 40, 40),          # Q.24's shortest key and pause
    ("1234567890*#", 40, 40),  # a fast dialler's number
    ("555", 40, 40),           # the same digit again: three keys, not one
    ("555", 80, 80),
    ("00", 100, 40),
])
def test_fast_keys_reach_the_other_far_end_each_once_in_order(world, keys, on_ms, off_ms):
    a, far_a, b, far_b = joined(world)
    mark = len(far_b.heard)
    world.engine.run(lambda: far_a.press(keys, on_ms=on_ms, off_ms=off_ms))
    assert a.DTMFDetector.get_digits(count=len(keys), seconds_predigits_timeout=T,
                                     seconds_interdigit_timeout=T) == keys
    world.engine.sleep(0.2 * len(keys) + 0.5)  # the kernel sounds each for 200 ms
    assert keys_at(world, far_b, mark) == keys
    assert all_digits(b) == ""
    a.hang_up()
    b.hang_up()


def test_a_key_held_two_seconds_is_one_key_and_the_audio_comes_back(world):
    a, far_a, b, far_b = joined(world)
    law = world.law
    mark = len(far_b.heard)

    def hold_then_talk() -> None:
        far_a.press("8", on_ms=2000, off_ms=100)
        far_a.say(tone(1000.0, 1.0, -10.0, law))

    world.engine.run(hold_then_talk)
    world.engine.sleep(3.5)
    heard = heard_since(far_b, mark, law)
    assert audio.dtmf_keys(heard, law) == "8"
    # the kernel holds it as long as the far end does, its start's 30-odd ms aside
    blocks = audio.dtmf_blocks(heard, law)
    assert 96 <= blocks.count("8") <= 101, blocks
    # the talk after it whole, but its edge frames
    on = audio.steady(heard, 1000.0, law)
    assert len(on) / 8000 >= 0.94, f"{len(on) / 8000:.3f} s of the talk after the key"
    assert all_digits(a) == "8" and all_digits(b) == ""
    a.hang_up()
    b.hang_up()


@pytest.mark.parametrize("keys, lost_ms", [("5", 40), ("12345", 120)])
def test_talk_right_after_fast_keys_is_passed_on(world, keys, lost_ms):
    """Keys at Q.24's shortest (40 ms on, 40 off), then talk: the far end hears the keys
    and the talk. Each key is held KEY_MIN_ON and the pauses last KEY_MIN_OFF (60 ms
    each), so five keys build up 100-120 ms of lag that the talk right after them loses;
    a single key costs at most the frame it was recognised in. (With the kernel's
    DAHDI_DIAL, 100 ms on and 100 off whatever the key, 140 and 620 ms were lost.)"""
    a, far_a, b, far_b = joined(world)
    law = world.law
    mark = len(far_b.heard)

    def keys_then_talk() -> None:
        far_a.press(keys, on_ms=40, off_ms=40)
        far_a.say(tone(1000.0, 1.0, -10.0, law))

    world.engine.run(keys_then_talk)
    world.engine.sleep(0.08 * len(keys) + 2.5)
    heard = heard_since(far_b, mark, law)
    assert audio.dtmf_keys(heard, law) == keys
    talk = frames_with(heard, 1000.0, law)
    assert 20 * (50 - talk) <= lost_ms, f"{20 * (50 - talk)} ms of the talk after {keys!r} lost"
    a.hang_up()
    b.hang_up()


def test_keys_from_both_ends_at_once_each_reach_the_other(world):
    a, far_a, b, far_b = joined(world)
    marks = len(far_a.heard), len(far_b.heard)

    def both() -> None:
        far_a.press("13", on_ms=60, off_ms=60)
        far_b.press("24", on_ms=60, off_ms=60)

    world.engine.run(both)
    world.engine.sleep(1.5)
    assert keys_at(world, far_b, marks[1]) == "13"
    assert keys_at(world, far_a, marks[0]) == "24"
    assert all_digits(a) == "13" and all_digits(b) == "24"
    a.hang_up()
    b.hang_up()


# --------------------------------------------------------------------------- the echo guard

@pytest.mark.parametrize("keys, on_ms, off_ms", [("159#", 80, 80),
                                                  ("0123456789", 100, 100),
                                                  ("0123456789", 50, 50),
                                                  ("0123456789", 40, 40)])
def test_an_echoing_far_end_gives_b_no_keys_of_its_own(world, keys, on_ms, off_ms):
    """b's far end echoes all it hears (a poor hybrid): the keys b passed on come back in
    band, and b's detector must not take them for its far end's, nor pass them back. Fast
    keys too, which wait their turn on the kernel: each is told to b's guard when it
    sounds. (With DAHDI_DIAL's 100 ms on and off, ten 40 ms keys queued for 2 s, past
    what the guard looks back on, and b took their echoes.)"""
    a, far_a, b, far_b = joined(world)
    far_b.echo = True
    world.engine.run(lambda: far_a.press(keys, on_ms=on_ms, off_ms=off_ms))
    world.engine.sleep(0.2 * len(keys) + 1.5)
    assert all_digits(a) == keys
    assert all_digits(b) == ""
    a.hang_up()
    b.hang_up()


# --------------------------------------------------------------------------- speech and keys

def frames_with(heard: list[int], freq: float, law: str) -> int:
    """How many 20 ms frames of ``heard`` carry ``freq`` at -20 dBm0 or more."""
    return sum(audio.component_level_dbm0(heard[n:n + 160], freq, law) > -20
               for n in range(0, len(heard) - 159, 160))


@pytest.mark.parametrize("on_ms, off_ms", [(80, 80), (100, 100), (120, 200)])
def test_talk_right_before_and_after_a_key_is_heard_whole(world, on_ms, off_ms):
    """A 1000 Hz tone (a voice), a key, the tone again, back to back: the far end hears
    all the talk before the key (the queue the kernel's key drops holds none of it) and
    all the talk after it but what the kernel's 100 + 100 ms outlasts the key by and the
    frame in which the key was recognised."""
    a, far_a, b, far_b = joined(world)
    law = world.law
    mark = len(far_b.heard)

    def talk_key_talk() -> None:
        far_a.say(tone(1000.0, 0.5, -10.0, law))
        far_a.press("5", on_ms=on_ms, off_ms=off_ms)
        far_a.say(tone(1000.0, 1.0, -10.0, law))

    world.engine.run(talk_key_talk)
    world.engine.sleep(0.5 + (on_ms + off_ms) / 1000 + 1.5)
    heard = heard_since(far_b, mark, law)
    blocks = audio.dtmf_blocks(heard, law)
    assert audio.keys_in_blocks(blocks) == "5"
    first_key = blocks.index("5")
    before, after = heard[:160 * first_key], heard[160 * first_key:]
    assert frames_with(before, 1000.0, law) >= 25 - 1  # 0.5 s, but an edge frame
    outlasted = max(0, 200 - on_ms - off_ms) // 20
    assert frames_with(after, 1000.0, law) >= 50 - outlasted - 2
    assert all_digits(a) == "5" and all_digits(b) == ""
    a.hang_up()
    b.hang_up()


def test_speech_across_the_bridge_invents_no_key(world):
    """Twenty seconds of speech (espeak-ng, several voices) from a's far end: b's far end
    hears no key, and neither call's detector takes one."""
    from tests import corpus
    a, far_a, b, far_b = joined(world)
    law = world.law
    speech = []
    for _name, samples in corpus.speech_corpus():
        speech += [int(s) for s in samples]
        if len(speech) >= 20 * 8000:
            break
    mark = len(far_b.heard)
    world.engine.run(far_a.say, speech)
    world.engine.sleep(len(speech) / 8000 + 1.0)
    heard = heard_since(far_b, mark, law)
    assert len(heard) >= len(speech)
    assert audio.level_dbm0(heard, law) > -30  # the speech did cross
    assert keys_at(world, far_b, mark) == ""
    assert all_digits(a) == "" and all_digits(b) == ""
    a.hang_up()
    b.hang_up()



# --------------------------------------------------------------------------- ends and changes

def no_faults(world: World, before: dict) -> bool:
    return world.engine.faults.counts() == {} and dict(faultlog.PROCESS.counts()) == before


@pytest.mark.parametrize("after_ms", [0, 20, 40, 100, 150, 190, 210])
def test_the_other_far_end_hanging_up_while_its_kernel_sounds_a_key(world, after_ms):
    """b's far end hangs up ``after_ms`` into the key b's kernel sounds for a: no write
    to b's closed channel reaches the engine as a fault, a is told and keeps its own
    far end's keys, and what a's far end keys next goes nowhere."""
    before = dict(faultlog.PROCESS.counts())
    a, far_a, b, far_b = joined(world)
    pressed = world.engine.run(far_a.press, "7")
    world.engine.call_at(pressed + 0.03 + after_ms / 1000, far_b.hangup)
    assert a.wait_for_idle(T) is State.ANSWERED
    assert b.wait_for_idle(T) is State.IDLE
    assert a.Details.connected_id == ""
    world.engine.run(far_a.press, "8")
    world.engine.sleep(1.0)
    assert all_digits(a) == "78"
    assert no_faults(world, before)
    a.hang_up()


# --------------------------------------------------------------------------- recordings

def noise(seconds: float, seed: int) -> bytes:
    """Law bytes no two stretches of which are alike (and no tone: no key in them)."""
    return random.Random(seed).randbytes(round(seconds * 8000))


def wav_data(path) -> bytes:
    """The bytes of a WAV file's data chunk, as they are (an A-law or mu-law file)."""
    raw = path.read_bytes()
    assert raw[:4] == b"RIFF" and raw[8:12] == b"WAVE"
    at = 12
    while at + 8 <= len(raw):
        size = int.from_bytes(raw[at + 4:at + 8], "little")
        if raw[at:at + 4] == b"data":
            return raw[at + 8:at + 8 + size]
        at += 8 + size + size % 2
    raise AssertionError(f"{path}: no data chunk")


def test_a_recording_of_a_bridged_call_has_every_frame_its_far_end_sent(world, tmp_path):
    """a records its far end while bridged (the recorder and the bridge are both taps
    that now see each frame after the DTMF bank): the file holds all of what far_a sent,
    in order, with keys pressed in the middle of it."""
    a, far_a, b, _far_b = joined(world)
    a.media_dir = tmp_path
    law = world.law
    before, after = noise(1.0, 1), noise(1.0, 2)
    recording = in_thread(world.engine, a.FileRecorder.record, "bridged.wav",
                          milliseconds_max_silence=0, seconds_timeout=4.0,
                          file_format=law)
    assert world.engine.wait_until(lambda: a.FileRecorder.state().name == "RECORDING", T)
    world.engine.sleep(0.2)

    def talk() -> None:
        far_a.send(before)
        far_a.press("47", on_ms=80, off_ms=80)
        far_a.send(after)

    world.engine.run(talk)
    assert finished(world.engine, recording) is a.FileRecorder.Cause.TIMEOUT
    data = wav_data(tmp_path / "bridged.wav")
    assert before in data and after in data
    assert data.index(before) < data.index(after)
    assert all_digits(a) == "47"
    a.hang_up()
    b.hang_up()


# --------------------------------------------------------------------------- a long call

def test_ten_minutes_with_a_key_every_five_seconds_keeps_its_delay(world):
    """Ten minutes bridged, a key from a's far end every 5 s: each reaches b's far end
    once, after the same delay as the first (no drift, no queue that grows), and the
    bridge slips nothing (both spans run on one clock here)."""
    a, far_a, b, far_b = joined(world)
    law = world.law
    digits = "0123456789*#"
    delays = []
    heard = ""
    for n in range(120):
        digit = digits[n % len(digits)]
        mark = len(far_b.heard)
        pressed = world.engine.run(far_a.press, digit)
        world.engine.sleep(5.0)
        window = heard_since(far_b, mark, law)[:8000]  # the second after the press
        blocks = audio.dtmf_blocks(window, law)
        heard += audio.keys_in_blocks(blocks)
        assert digit in blocks, f"key {n} ({digit}) not heard: {blocks}"
        delays.append(far_b.time_heard(mark + 160 * blocks.index(digit)) - pressed)
    assert heard == "".join(digits[n % len(digits)] for n in range(120))
    assert max(delays) - min(delays) <= 0.021, (min(delays), max(delays))
    assert all_digits(a) == heard and all_digits(b) == ""
    links = world.engine.run(lambda: list(a._bridge.links.values()))
    assert [link.slips for link in links] == [0, 0]
    assert all(link.frames_in >= 600 * 50 - 100 for link in links)
    a.hang_up()
    b.hang_up()


# --------------------------------------------------------------------------- a stalled engine

@pytest.mark.parametrize("stall_ms", [40, 70])
@pytest.mark.parametrize("offset_ms", [0, 95, 150, 190])
def test_a_repeated_digit_stays_three_keys_when_the_engine_stalls(live_world, stall_ms,
                                                                  offset_ms):
    """'555' keyed at a's far end, the engine held up ``stall_ms`` in each key or pause
    (``offset_ms`` into each 200 ms): three 5s at b's far end, never two or four (a
    key broken in two, two run together)."""
    world = live_world
    a, far_a, b, far_b = joined(world)
    mark = len(far_b.heard)

    def key_and_stall() -> None:
        start = far_a.key("555")
        for key in range(3):
            world.engine.call_at(start + 0.2 * key + offset_ms / 1000, time.sleep,
                                 stall_ms / 1000)

    world.engine.run(key_and_stall)
    assert a.DTMFDetector.get_digits(count=3, seconds_predigits_timeout=T,
                                     seconds_interdigit_timeout=T) == "555"
    world.engine.sleep(1.0)
    assert keys_at(world, far_b, mark) == "555"
    assert all_digits(b) == ""
    a.hang_up()
    b.hang_up()



@pytest.mark.parametrize("offset_ms", [10, 60, 130])
def test_keys_from_both_ends_at_once_while_the_engine_stalls(live_world, offset_ms):
    """Both far ends key at once (their kernels), the engine held up 60 ms in each key:
    each far end hears the other's keys once, and each call's detector its own."""
    world = live_world
    a, far_a, b, far_b = joined(world)
    marks = len(far_a.heard), len(far_b.heard)

    def key_and_stall() -> None:
        start = far_a.key("123")
        far_b.key("456")
        for key in range(3):
            world.engine.call_at(start + 0.2 * key + offset_ms / 1000, time.sleep, 0.06)

    world.engine.run(key_and_stall)
    assert a.DTMFDetector.get_digits(count=3, seconds_predigits_timeout=T,
                                     seconds_interdigit_timeout=T) == "123"
    assert b.DTMFDetector.get_digits(count=3, seconds_predigits_timeout=T,
                                     seconds_interdigit_timeout=T) == "456"
    world.engine.sleep(1.0)
    assert keys_at(world, far_b, marks[1]) == "123"
    assert keys_at(world, far_a, marks[0]) == "456"
    assert all_digits(a) == "" and all_digits(b) == ""
    a.hang_up()
    b.hang_up()



# --------------------------------------------------------------------------- E1 to T1

@pytest.fixture
def e1_and_t1():
    """An E1 span (A-law) and a T1 span (mu-law), each looped to an exchange on a
    simulated kernel of its own, on one virtual-time engine: a call in on E1 and a call
    out on T1, joined, so that every frame bridged is converted."""
    with SimRig().engine() as engine:
        e1, t1 = SimBackend(engine, kind="E1"), SimBackend(engine, kind="T1")
        clock = MediaClock(engine)
        channels: list[UASCallChannel] = []
        e1.on_incoming = lambda leg: channels.append(
            UASCallChannel(engine, leg, media_clock=clock, media_dir=MEDIA))
        engine.run(e1.start)
        engine.run(t1.start)
        assert engine.wait_until(lambda: e1.up and t1.up, T)
        far_a = engine.run(e1.far_end.dial, "5551000")
        assert engine.wait_until(lambda: channels, T)
        a = channels[-1]
        assert a.answer() is State.ANSWERED
        t1.far_end.answer_after = 0.2
        b = UASCallChannel(engine, backend=t1, route="pri", media_clock=clock,
                           media_dir=MEDIA)
        assert b.call("5559000", call_from="5551000", seconds_timeout=T) is State.ANSWERED
        far_b = t1.far_end.incoming[-1]
        assert (far_a.law, far_b.law) == ("alaw", "ulaw")
        assert a.connect(b) is True
        yield engine, a, far_a, b, far_b
        engine.run(e1.stop)
        engine.run(t1.stop)


def test_keys_between_an_e1_and_a_t1_call_both_ways(e1_and_t1):
    """Fast keys, a repeated digit and talk right after a key cross from E1 to T1 and
    back, each once, the talk at its level."""
    engine, a, far_a, b, far_b = e1_and_t1
    for far_from, far_to, to_call, from_call in ((far_a, far_b, b, a), (far_b, far_a, a, b)):
        for keys, on_ms, off_ms in (("159#", 40, 40), ("555", 80, 80)):
            mark = len(far_to.heard)
            engine.run(lambda far=far_from, keys=keys, on=on_ms, off=off_ms: far.press(
                keys, on_ms=on, off_ms=off))
            engine.sleep(0.2 * len(keys) + 0.6)
            assert audio.dtmf_keys(heard_since(far_to, mark, far_to.law), far_to.law) == keys
            assert all_digits(from_call) == keys and all_digits(to_call) == ""
        mark = len(far_to.heard)
        engine.run(far_from.say, tone(1000.0, 0.5, -10.0, far_from.law))
        engine.sleep(0.8)
        on = audio.steady(heard_since(far_to, mark, far_to.law), 1000.0, far_to.law)
        assert len(on) / 8000 >= 0.44
        assert audio.level_dbm0(on, far_to.law) == pytest.approx(-10.0, abs=0.5)
    a.hang_up()
    b.hang_up()


# --------------------------------------------------------------------------- TDM pairs

@pytest.fixture(params=["E1", "T1"])
def tdm(request, rig):
    """test_connect_tdm's box: a PRI span (E1 A-law or T1 mu-law) and analog ports
    (mu-law) on one kernel, so that on E1 every frame bridged is converted."""
    kind = request.param
    with rig.engine() as engine:
        conf = tdm_conf(kind)
        with box_on(engine, rig.kernel(engine, conf), conf, kind, Wiring(),
                    AnalogSettings()) as gateway:
            yield gateway


def tdm_keys(box, far, mark: int) -> str:
    return audio.dtmf_keys(pcm(far, mark), far.law)


def test_fxs_phone_to_pri_fast_keys_and_a_repeated_digit_both_ways(tdm):
    """The PRI side keys '555' and a fast dialler's '1234567890' in band at 40 ms on, 40
    ms off towards an FXS phone (converted to mu-law on E1); the phone keys '555' on its
    keypad (its kernel, 100 ms on, 100 ms off) towards the PRI side."""
    box = tdm
    fxs, out, target = phone_to_pri(box)
    engine = box.engine
    for keys in ("555", "1234567890"):
        mark = len(box.phone.heard)
        engine.run(lambda keys=keys: target.press(keys, on_ms=40, off_ms=40))
        assert out.DTMFDetector.get_digits(count=len(keys), seconds_predigits_timeout=T,
                                           seconds_interdigit_timeout=T) == keys
        engine.sleep(0.2 * len(keys) + 0.5)
        assert tdm_keys(box, box.phone, mark) == keys
    mark = len(target.heard)
    engine.run(box.phone.press, "555")
    assert fxs.DTMFDetector.get_digits(count=3, seconds_predigits_timeout=T,
                                       seconds_interdigit_timeout=T) == "555"
    engine.sleep(1.0)
    assert tdm_keys(box, target, mark) == "555"
    for channel in (fxs, out):
        assert all_digits(channel) == ""
    out.hang_up()
    fxs.hang_up()


@pytest.fixture
def line_answering(tdm):
    tdm.exchange.numbers[LINE_NUMBER] = Destination("answer", answer_after=3.0)
    return tdm


def test_pri_to_fxo_fast_keys_and_a_repeated_digit_both_ways(line_answering):
    box = line_answering
    ours, caller, out = pri_to_line(box)
    engine = box.engine
    assert engine.wait_until(lambda: box.exchange.state == "connected", 3 * T)
    for keys in ("555", "159#*0"):
        mark = len(box.exchange.heard)
        engine.run(lambda keys=keys: caller.press(keys, on_ms=40, off_ms=40))
        assert ours.DTMFDetector.get_digits(count=len(keys), seconds_predigits_timeout=T,
                                            seconds_interdigit_timeout=T) == keys
        engine.sleep(0.2 * len(keys) + 0.5)
        assert tdm_keys(box, box.exchange, mark) == keys
    mark = len(caller.heard)
    engine.run(box.exchange.press, "555")
    assert out.DTMFDetector.get_digits(count=3, seconds_predigits_timeout=T,
                                       seconds_interdigit_timeout=T) == "555"
    engine.sleep(1.0)
    assert tdm_keys(box, caller, mark) == "555"
    for channel in (ours, out):
        assert all_digits(channel) == ""
    ours.hang_up()
    out.hang_up()


# --------------------------------------------------------------------------- SIP - PRI

EVENT_PT = 101


@pytest.fixture
def gateway():
    """test_connect_sip's box (a simulated E1 span and a SIP backend on one real-time
    engine) and a scripted SIP caller whose offer is A-law, with or without
    telephone-event as the test says."""
    box = Box()
    peer = SipPeer(box.sip.addresses[0])
    yield box, peer
    peer.close()
    box.close()


def sip_to_pri(box: Box, peer: SipPeer, formats: str
               ) -> tuple[UASCallChannel, UASCallChannel, object]:
    """The SIP caller's call answered and connected to a call out of the E1 span, answered
    there. Returns (the SIP call, the PRI call, the exchange's side of it)."""
    peer.invite(formats=formats)
    peer.expect(100)
    sip = box.incoming.get(timeout=T)
    answer_through(sip, peer)
    assert sip._leg.media().law == "alaw"
    assert sip._leg.media().telephone_events is (str(EVENT_PT) in formats.split())
    box.sim.far_end.answer_after = 0.2
    pri = box.outbound(box.sim, route="pri")
    assert pri.call("5559000", call_from="5551000", seconds_timeout=T) is State.ANSWERED
    target = box.sim.far_end.incoming[-1]
    assert sip.connect(pri) is True
    return sip, pri, target


def rtp_frames(data: bytes) -> list[bytes]:
    data += bytes([g711.ALAW.silence]) * (-len(data) % 160)
    return [data[at:at + 160] for at in range(0, len(data), 160)]


def send_paced(peer: SipPeer, packets: list[bytes]) -> None:
    """One packet every 20 ms, in real time, as a phone sends."""
    start = time.monotonic()
    for n, packet in enumerate(packets):
        time.sleep(max(0.0, start + 0.02 * n - time.monotonic()))
        peer.send_rtp([packet])


def in_band(keys: str, on_ms: float = 80, off_ms: float = 80) -> bytes:
    return g711.ALAW.encode(dtmf_samples(keys, on_ms=on_ms, off_ms=off_ms, law="alaw"))


def alaw_silence(seconds: float) -> bytes:
    return bytes([g711.ALAW.silence]) * round(seconds * 8000)


def events_and_audio(packets) -> tuple[str, list[int]]:
    """The digits of the RFC 4733 events among ``packets`` (one per event), and the
    A-law audio of the others, decoded."""
    digits, starts, pcm_bytes = "", set(), bytearray()
    for packet in packets:
        if packet.payload_type == EVENT_PT:
            if packet.timestamp not in starts:
                starts.add(packet.timestamp)
                digits += "0123456789*#ABCD"[packet.payload[0]]
        elif packet.payload_type == 8:
            pcm_bytes += packet.payload
    return digits, audio.decode(bytes(pcm_bytes), "alaw")


@pytest.mark.parametrize("formats", ["8", "8 101"])
def test_sip_keys_in_band_reach_the_pri_side_once(gateway, formats):
    """A SIP phone keys in its audio (with or without telephone-event offered): the PRI
    side hears each key once, Q.24's fast keys and a repeated digit included."""
    box, peer = gateway
    sip, pri, target = sip_to_pri(box, peer, formats)
    sender = RtpSender(8)
    for keys, on_ms, off_ms in (("159#", 80, 80), ("555", 40, 40), ("2468", 40, 40)):
        mark = len(target.heard)
        send_paced(peer, [sender.packet(f) for f in rtp_frames(
            alaw_silence(0.1) + in_band(keys, on_ms, off_ms) + alaw_silence(0.3))])
        assert sip.DTMFDetector.get_digits(count=len(keys), seconds_predigits_timeout=T,
                                           seconds_interdigit_timeout=T) == keys
        box.engine.sleep(0.2 * len(keys) + 0.5)
        assert keys_at_pri(target, mark) == keys
    assert all_digits(pri) == ""
    sip.hang_up()
    pri.hang_up()


def keys_in_frames(samples: list[int], law: str) -> str:
    """The keys in ``samples`` (the test's own filters, 20 ms blocks on the RTP frames'
    grid), a block without a digit inside a key bridged: a SIP stream that runs dry
    sends a frame of silence, which may fall inside a key's tone (Q.24 leaves a break
    of 10 to 40 ms to the receiver); the keys here are 100 ms apart, five blocks."""
    return keys_in(audio.dtmf_blocks(samples, law), 1)


@pytest.mark.parametrize("stall_ms", [40, 70])
@pytest.mark.parametrize("offset_ms", [30, 90, 150])
def test_sip_keys_in_band_reach_the_pri_side_when_the_engine_stalls(gateway, stall_ms,
                                                                    offset_ms):
    """The box's engine held up in each of the SIP phone's keys (its RTP keeps coming):
    the PRI side still hears each key once, the kernel sounding it whole."""
    box, peer = gateway
    sip, pri, target = sip_to_pri(box, peer, "8")
    sender = RtpSender(8)
    mark = len(target.heard)
    packets = [sender.packet(f) for f in rtp_frames(
        alaw_silence(0.2) + in_band("159#", 80, 80) + alaw_silence(0.3))]
    start = box.engine.time() + 0.2  # the first key, about (the packets go from now)
    box.engine.run(lambda: [box.engine.call_at(start + 0.16 * key + offset_ms / 1000,
                                               time.sleep, stall_ms / 1000)
                            for key in range(4)])
    send_paced(peer, packets)
    assert sip.DTMFDetector.get_digits(count=4, seconds_predigits_timeout=T,
                                       seconds_interdigit_timeout=T) == "159#"
    box.engine.sleep(1.0)
    assert keys_at_pri(target, mark) == "159#"
    assert all_digits(pri) == ""
    sip.hang_up()
    pri.hang_up()


def keys_at_pri(far, mark: int) -> str:
    return audio.dtmf_keys(heard_since(far, mark, "alaw"), "alaw")


@pytest.mark.parametrize("formats", ["8", "8 101"])
def test_pri_keys_reach_the_sip_side_in_band_or_as_events(gateway, formats):
    """The PRI side keys (its exchange's kernel sounds them, 100 ms on, 100 ms off,
    whatever this loaded machine's timing) and repeats a digit: without telephone-event
    the SIP phone hears each key in band, once; with it, one event per key and no tone
    in band."""
    box, peer = gateway
    sip, pri, target = sip_to_pri(box, peer, formats)
    events = str(EVENT_PT) in formats.split()
    for keys in ("159#", "555"):
        peer.drain_rtp()
        box.engine.run(target.key, keys)
        digits, pcm_heard = events_and_audio(peer.rtp_packets(0.2 * len(keys) + 0.8))
        assert pri.DTMFDetector.get_digits(count=len(keys), seconds_predigits_timeout=T,
                                           seconds_interdigit_timeout=T) == keys
        if events:
            assert digits == keys
            leaked = audio.dtmf_blocks(pcm_heard, "alaw")
            assert sum(block is not None for block in leaked) <= len(keys), leaked
            assert audio.dtmf_keys(pcm_heard, "alaw") == ""
        else:
            assert digits == "" and keys_in_frames(pcm_heard, "alaw") == keys
    assert all_digits(sip) == ""
    sip.hang_up()
    pri.hang_up()
