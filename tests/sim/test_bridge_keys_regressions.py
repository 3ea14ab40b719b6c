"""Defects an adversarial pass found in the bridge's new way with keys (1f5391f), each
fixed; every test failed on 1f5391f.

* a recording that a key ends lost a frame of the message before the key (the cut was
  counted on what the DTMF stream had, which the recorder had not had yet);
* keys faster than the kernel sounds them queue in its dial string: b's echo guard was
  told of each when queued, not when it sounds, and took the late echo as its own key;
* a press sent both as an RFC 4733 event and, late, in the audio was heard twice at the
  PRI side (the late tone was not muted);
* a key held down across disconnect() and connect() to another call reached that call;
* a call ending in the engine step its last frame arrived in lost that frame from its
  recording.
"""

from __future__ import annotations

import time

import pytest

from tests import audio
from uascall.media import g711
from uascall.sip.rtp import RtpSender

from .helpers import T
from .test_bridge_keys_adversarial import (
    EVENT_PT,
    alaw_silence,
    all_digits,
    events_and_audio,
    gateway,  # noqa: F401 (the fixture)
    in_band,
    keys_at,
    keys_at_pri,
    noise,
    rtp_frames,
    send_paced,
    sip_to_pri,
    wav_data,
)
from .test_connect import answered_in, answered_out, heard_since, joined
from .test_connect_adversarial import finished, in_thread
from .test_listening import tone

# The simulator only, as test_bridge_keys_adversarial: exact timings (a key's edges
# against the engine's steps) need its virtual time.
pytestmark = pytest.mark.sim_only


@pytest.mark.parametrize("bridged", [False, True])
def test_a_recording_ended_by_a_key_keeps_the_message_up_to_the_key(world, tmp_path,
                                                                    bridged):
    a, far_a = answered_in(world)
    if bridged:
        b, _far_b = answered_out(world)
        assert a.connect(b)
    a.media_dir = tmp_path
    law = world.law
    message = g711.codec(law).encode(tone(1000.0, 1.0, -20.0, law))
    recording = in_thread(world.engine, a.FileRecorder.record, "m.wav", barge_in=True,
                          milliseconds_max_silence=0, file_format=law)
    assert world.engine.wait_until(lambda: a.FileRecorder.state().name == "RECORDING", 5)
    world.engine.sleep(0.1)

    def talk_then_key() -> None:
        far_a.send(message)
        far_a.press("#", on_ms=80, off_ms=80)

    world.engine.run(talk_then_key)
    assert finished(world.engine, recording) is a.FileRecorder.Cause.BARGEIN
    data = wav_data(tmp_path / "m.wav")
    start = data.find(message[:800])
    assert start >= 0
    kept = len(data) - start
    assert data[start:] == message[:kept]
    missing = len(message) - kept
    # the margin before the key's estimated start (80), and a few ms for the estimate
    assert missing <= 80 + 40, f"{missing} samples of the message before the key cut"



@pytest.mark.parametrize("keys, on_ms, off_ms", [("0123456789", 40, 40),
                                                  ("0123456789", 50, 50)])
def test_an_echoing_far_end_gives_b_no_keys_when_keys_queue_in_the_kernel(
        world, keys, on_ms, off_ms):
    a, far_a, b, far_b = joined(world)
    far_b.echo = True
    mark_a = len(far_a.heard)
    world.engine.run(lambda: far_a.press(keys, on_ms=on_ms, off_ms=off_ms))
    world.engine.sleep(0.2 * len(keys) + 1.5)
    assert all_digits(a) == keys
    b_took = all_digits(b)
    # what far_a heard: its own keys echoed back in band are fine (the echo is b's far
    # end's), but a key the kernel dialled on a's line is one b's detector took
    dialled_to_a = audio.dtmf_keys(audio.decode(bytes(far_a.heard[mark_a:]), world.law),
                                   world.law)
    assert b_took == "", f"b took {b_took!r} of its far end's echo; far_a heard {dialled_to_a!r}"
    a.hang_up()
    b.hang_up()



@pytest.mark.parametrize("lag_ms", [0, 100, 250, 400])
def test_a_press_sent_as_an_event_and_late_in_band_is_one_key_at_the_pri_side(
        gateway, lag_ms):  # noqa: F811 (the fixture)
    box, peer = gateway
    sip, pri, target = sip_to_pri(box, peer, "8 101")
    sender = RtpSender(8)
    mark = len(target.heard)
    tone = rtp_frames(in_band("5", 100, 100))  # 10 frames: 5 of tone, 5 of silence
    events = sender.event_packets("5", 100, telephone_event_pt=EVENT_PT)
    # RFC 4733 2.5: the events and the audio share the numbering; here the audio's
    # tone starts ``lag_ms`` after the event does (a gateway whose DSP lags its events)
    packets = [sender.packet(f) for f in rtp_frames(alaw_silence(0.2))]
    packets += events
    packets += [sender.packet(f) for f in rtp_frames(alaw_silence(max(0, lag_ms - 100) / 1000))]
    packets += [sender.packet(f) for f in tone]
    packets += [sender.packet(f) for f in rtp_frames(alaw_silence(0.5))]
    send_paced(peer, packets)
    box.engine.sleep(1.0)
    assert sip.DTMFDetector.get_digits(count=1, seconds_predigits_timeout=T) == "5"
    assert all_digits(sip) == ""  # one press, one digit on the SIP call
    assert keys_at_pri(target, mark) == "5"
    sip.hang_up()
    pri.hang_up()



@pytest.mark.parametrize("connect_after_ms", [60, 150])
def test_a_key_held_across_disconnect_does_not_reach_the_next_call(world, connect_after_ms):
    """far_a holds a key down while a is disconnected from b and connected to c: c's far
    end was not connected when the key went down; it hears none of it (the rest of the
    key's tone is muted as it was towards b), and a's next key reaches c once."""
    a, far_a, b, _far_b = joined(world)
    c, far_c = answered_in(world)
    law = world.law
    mark_c = len(far_c.heard)
    pressed = world.engine.run(lambda: far_a.press("5", on_ms=500, off_ms=100))
    world.engine.sleep(pressed + connect_after_ms / 1000 - world.engine.time())
    assert a.disconnect() is True
    assert a.connect(c) is True
    world.engine.sleep(1.0)
    assert keys_at(world, far_c, mark_c) == ""
    mark_c = len(far_c.heard)
    world.engine.run(far_a.press, "6")
    world.engine.sleep(1.0)
    assert keys_at(world, far_c, mark_c) == "6"
    assert all_digits(a) == "56" and all_digits(c) == "" and all_digits(b) == ""
    assert audio.level_dbm0(heard_since(far_c, mark_c, law), law) > -40  # (it did cross)
    for channel in (a, b, c):
        channel.hang_up()



def test_the_frame_heard_in_the_step_the_call_ends_is_recorded(world, tmp_path):
    a, far_a, b, _far_b = joined(world)
    a.media_dir = tmp_path
    recording = in_thread(world.engine, a.FileRecorder.record, "last.wav",
                          milliseconds_max_silence=0, seconds_timeout=10.0,
                          file_format=world.law)
    assert world.engine.wait_until(lambda: a.FileRecorder.state().name == "RECORDING", 5)
    world.engine.run(far_a.send, noise(2.0, 3))
    world.engine.sleep(1.0)
    last: list[bytes] = []

    def arm() -> None:
        leg = a._leg
        receiver = leg._receiver

        def then_clear(frame: bytes, law: str) -> None:
            receiver(frame, law)  # the call hears it ...
            if not last:
                last.append(frame)
                # ... and its far end's DISCONNECT comes in the same step, as after a
                # stall, when epoll returns the B-channel and the D-channel together
                # (what Span._on_hangup_req does with it, but libpri's part)
                leg.call._clear(16, "remote")

        leg._receiver = then_clear

    world.engine.run(arm)
    assert finished(world.engine, recording) is a.FileRecorder.Cause.HANGUP
    data = wav_data(tmp_path / "last.wav")
    assert last
    whole = data.endswith(last[0])
    assert whole, f"the recording ({len(data)} bytes) lacks the frame heard as the call ended"
    b.hang_up()


@pytest.mark.parametrize("offset_ms", [10, 30, 60, 90])
def test_pri_keys_reach_a_sip_phone_without_telephone_event_whole_when_the_engine_stalls(
        gateway, offset_ms):  # noqa: F811 (the fixture)
    """Towards a SIP phone that takes no telephone-event the keys go in band: the
    stream's own ticker plays each whole (100 ms of tone, a pause), so no tick inside a
    key goes without its frame, even with the engine held up 70 ms in each key (the
    frames passed on one by one left a tick of silence in a key now and then: a receiver
    may take that as two keys, or, in a quick key, none)."""
    box, peer = gateway
    sip, pri, target = sip_to_pri(box, peer, "8")
    peer.drain_rtp()

    def key_and_stall() -> None:
        start = target.key("159#")  # the exchange's kernel: 100 ms on, 100 ms off
        for key in range(4):
            box.engine.call_at(start + 0.2 * key + offset_ms / 1000, time.sleep, 0.07)

    box.engine.run(key_and_stall)
    digits, pcm_heard = events_and_audio(peer.rtp_packets(1.6))
    assert pri.DTMFDetector.get_digits(count=4, seconds_predigits_timeout=T,
                                       seconds_interdigit_timeout=T) == "159#"
    blocks = audio.dtmf_blocks(pcm_heard, "alaw")
    assert digits == "" and audio.keys_in_blocks(blocks) == "159#", \
        "".join(block or "." for block in blocks)
    assert all_digits(sip) == ""
    sip.hang_up()
    pri.hang_up()
