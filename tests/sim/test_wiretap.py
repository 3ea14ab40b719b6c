"""The wire tap at the device seam: what crosses, losing and injecting frames, on any rig."""

from __future__ import annotations

import pytest

from uascall.dahdi.device import Channel
from uascall.sim.farend import pri_loop_conf
from uascall.sim.wiretap import WireTap

from .helpers import T, reader

FRAME = b"\x00\x01\x7f\x7e\x7d hello hdlc"


@pytest.fixture
def dchannels(rig):
    """The two D-channels of an E1 loop (16 and 47), opened through a tap."""
    with rig.engine() as engine:
        io = rig.kernel(engine, pri_loop_conf("E1", dynamic=True))
        tap = WireTap(io, {16: 47, 47: 16}, engine.time)
        ours, theirs = (engine.run(Channel.open, n, io=tap) for n in (16, 47))
        for chan in (ours, theirs):
            engine.run(chan.set_buffers, numbufs=8, bufsize=1024)
        engine.sleep(0.1)  # the real driver drops frames for a while after an open
        inbox = {ours: reader(engine, ours), theirs: reader(engine, theirs)}
        yield engine, tap, ours, theirs, inbox
        engine.run(ours.close)  # (the engine forgets their descriptors when it stops)
        engine.run(theirs.close)


def received(engine, inbox: list[bytes], count: int) -> list[bytes]:
    """The next ``count`` frames of a channel's ``inbox``, without the FCS the kernel
    added."""
    engine.wait_until(lambda: len(inbox) >= count, T)
    got = [frame[:-2] for frame in inbox[:count]]
    del inbox[:count]
    return got


def test_frames_are_recorded_lost_and_injected(dchannels):
    engine, tap, ours, theirs, inbox = dchannels
    records = []
    tap.frame_taps.append(records.append)
    engine.run(ours.write_frame, FRAME + b"\0\0")
    assert received(engine, inbox[theirs], 1) == [FRAME]
    assert [(r.from_channel, r.to_channel, r.frame, r.delivered) for r in records] == [
        (16, 47, FRAME, True)]

    tap.frame_filter = lambda channo, frame: None if frame.endswith(b"lose me") else frame
    engine.run(ours.write_frame, b"\x02lose me\0\0")
    engine.run(ours.write_frame, b"\x02keep me\0\0")
    assert received(engine, inbox[theirs], 1) == [b"\x02keep me"]
    assert [r.delivered for r in records[1:]] == [False, True]

    tap.frame_filter = None
    engine.run(tap.cut, 47)
    engine.run(theirs.write_frame, b"\x03cut\0\0")
    engine.run(tap.cut, 16, False)
    engine.run(theirs.write_frame, b"\x04joined\0\0")
    assert received(engine, inbox[ours], 1) == [b"\x04joined"]

    engine.run(tap.inject_frame, 16, b"\x05injected")
    assert received(engine, inbox[ours], 1) == [b"\x05injected"]
    assert records[-1].frame == b"\x04joined"  # injection bypasses the taps


def test_injecting_needs_the_peer_open(dchannels):
    engine, tap, _ours, theirs, _inbox = dchannels
    engine.run(theirs.close)
    with pytest.raises(ValueError, match=r"D-channel 47 .* is not open"):
        engine.run(tap.inject_frame, 16, b"\x05")
