"""Garbage on the D-channel, and what the line carries after it (issue 12, 5).

A few seconds of random frames on the simulated E1 loop once left the two ends exchanging
about 21,000 I-frames a second for good. The cause is libpri 1.6's stand-in for SERVICE
messages: without service-message support it sends every message with a maintenance
protocol discriminator (0x03, 0x43) straight back with its message type less 8, and the
echo carries that discriminator too. Two libpri ends (our span and the exchange of the
loop, or us and an Asterisk box) echo each other's echoes for ever, as fast as the line
allows: one such frame was enough. The binding now lets libpri see only SERVICE (0x0F,
which it answers with SERVICE ACKNOWLEDGE) and hides every other maintenance message from
Q.931 while Q.921 still acknowledges its frame.

The simulator carried that storm at the speed of the process (about 30,000 frames a
second); it now carries a D-channel at 64 kbit/s on the engine's clock, flags, FCS and
bit stuffing included, as an E1 or T1 timeslot does, and the same storm without the guard
runs as fast as the line lets it (several hundred frames a second; 800 a second of its
shortest frames fill 64 kbit/s) and never stops: the loop is libpri's.
"""

from __future__ import annotations

import logging
import random

import pytest

from uascall.dahdi import libpri, q931
from uascall.dahdi.device import Channel
from uascall.dahdi.pri import CallCleared, CallConnected, PriCall
from uascall.dahdi.pri_call import CallState
from uascall.engine import Engine, VirtualClock
from uascall.sim import hdlc
from uascall.sim.farend import PriLoop, pri_loop_conf
from uascall.sim.kernel import SimKernel
from uascall.sim.model import DCHANNEL_BITS_PER_SECOND

from .helpers import T

#: frames a quiet established link may exchange in a second: none, or an RR poll and its
#: answer when T203 runs out
IDLE_FRAMES = 4


def ui_frame(info: bytes) -> bytes:
    """``info`` in an unnumbered frame from the exchange (SAPI 0, TEI 0, a command from
    the network side): libpri hands it to Q.931 whatever the link's sequence numbers."""
    return q931.LapdFrame(kind="UI", sapi=0, tei=0, cr=1, info=info).serialize()


def count_frames(engine: Engine, loop, seconds: float) -> int:
    """Frames that crossed the loop's D-channels, both ways, during ``seconds``."""
    seen: list = []
    engine.run(loop.tap.frame_taps.append, seen.append)
    try:
        engine.sleep(seconds)
    finally:
        engine.run(loop.tap.frame_taps.remove, seen.append)
    return len(seen)


@pytest.fixture
def engine(rig):
    with rig.engine(virtual=False) as engine:  # libpri's timers are wall-clock ones
        yield engine


@pytest.fixture
def loop(rig, engine):
    return rig.pri_loop(engine, "E1")


@pytest.mark.parametrize("info", [
    bytes([0x03, 0x00, 0x0F]),              # SERVICE (AT&T): answered once, then quiet
    bytes([0x03, 0x01, 0x05, 0x07]),        # SERVICE ACKNOWLEDGE nobody asked for
    bytes([0x43, 0x00, 0x07]),              # NATIONAL SERVICE
    bytes([0x03, 0x02, 0x12, 0x34, 0x55]),  # a maintenance type nobody defined
], ids=["service", "service-ack", "national-service", "unknown-type"])
def test_one_maintenance_message_does_not_start_an_echo_storm(engine, loop, info):
    engine.run(loop.tap.inject_frame, loop.cpe.layout.dchannel, ui_frame(info))
    engine.sleep(0.2)  # the answer to SERVICE, if any, and its acknowledgement
    assert count_frames(engine, loop, 1.0) <= IDLE_FRAMES
    assert engine.wait_until(lambda: loop.up, T)


def random_frame(rng: random.Random) -> bytes:
    """A frame as garbage on a line might be: random bytes, or a LAPD header of ours with
    random contents (Q.931 of any protocol discriminator, maintenance ones included)."""
    kind = rng.randrange(4)
    body = rng.randbytes(rng.randrange(0, 24))
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 30))
    if kind == 1:  # UI frame with a Q.931-looking body
        pd = rng.choice([0x08, 0x03, 0x43, rng.randrange(256)])
        return ui_frame(bytes([pd, rng.randrange(3)]) + body)
    if kind == 2:  # I frame with random sequence numbers
        return bytes([0x02, 0x01, rng.randrange(128) << 1, rng.randrange(256)]) + body
    return bytes([rng.choice([0x00, 0x02]), 0x01, rng.randrange(256)]) + body[:3]


@pytest.mark.sim_only  # random frames with a valid FCS: only the simulator takes them
def test_after_seconds_of_garbage_the_link_goes_quiet_and_carries_calls(engine, loop):
    rng = random.Random(12_5)
    dchannels = (loop.cpe.layout.dchannel, loop.net.layout.dchannel)

    def spray(count: int) -> None:
        for _ in range(count):
            try:
                loop.tap.inject_frame(rng.choice(dchannels), random_frame(rng))
            except BlockingIOError:
                pass  # the line is busy: this one is lost, as on a real link

    deadline = engine.time() + 3.0
    while engine.time() < deadline:
        engine.run(spray, 20)
        engine.sleep(0.01)
    # Layer 2 may have been reset by the garbage; it is back within N200 x T200 or so,
    # and then the line is idle again: RR polls at most, no storm.
    assert engine.wait_until(lambda: loop.up, T)
    engine.sleep(0.5)
    assert count_frames(engine, loop, 2.0) <= 2 * IDLE_FRAMES
    # and the span still takes a call
    events: list = []
    answered: list = []

    def take(call) -> None:
        call.answer()
        answered.append(call)

    loop.cpe.on_incoming = take

    def dial():
        far = loop.net.call("5551000", calling="5552000")
        far.listeners.append(lambda _call, event: events.append(event))
        return far

    far = engine.run(dial)
    assert engine.wait_until(lambda: any(isinstance(e, CallConnected) for e in events), T)
    engine.run(far.hangup, libpri.PRI_CAUSE_NORMAL_CLEARING)
    assert engine.wait_until(lambda: answered[0].cleared
                             and any(isinstance(e, CallCleared) for e in events), T)


def test_the_guard_leaves_every_other_frame_alone():
    guard = libpri.defuse_maintenance_echo
    fcs = b"\x00\x00"
    i_frame = bytes([0x02, 0x01, 0x0A, 0x04])
    maintenance = bytes([0x03, 0x01, 0x05, 0x07])
    # an I frame keeps its header (Q.921 acknowledges it), its message is taken away
    assert guard(i_frame + maintenance + fcs) == i_frame + fcs
    assert guard(ui_frame(maintenance) + fcs) == ui_frame(b"") + fcs
    for untouched in (
        ui_frame(bytes([0x03, 0x00, 0x0F])) + fcs,          # SERVICE: libpri answers it
        ui_frame(bytes([0x08, 0x02, 0x00, 0x01, 0x05])) + fcs,  # Q.931
        i_frame + bytes([0x08, 0x01, 0x01, 0x7D]) + fcs,
        bytes([0x02, 0x01, 0x01, 0x04]) + fcs,              # RR
        bytes([0xFE, 0x01, 0x03]) + maintenance + fcs,      # SAPI 63: layer 2 management
        ui_frame(bytes([0x03, 0x05, 0x01])) + fcs,          # too short for its reference
        b"\x02\x01" + fcs, b"",
    ):
        assert guard(untouched) == untouched


# ---------------------------------------------------------------------- the line's rate

def test_libpri_alone_echoes_for_ever_as_fast_as_the_line_goes(monkeypatch):
    """Without the binding's guard the echo is libpri's own: it never stops, and at the
    line's 64 kbit/s it is several hundred frames a second, at most what the line carries
    (it was 30,000 a second when the simulator carried frames at the speed of the
    process)."""
    monkeypatch.setattr(libpri, "defuse_maintenance_echo", lambda frame: frame)
    with Engine(VirtualClock()) as engine, engine.actor():
        loop = PriLoop.create(engine, "E1")
        assert engine.wait_until(lambda: loop.up, T)
        engine.run(loop.tap.inject_frame, loop.cpe.layout.dchannel,
                   ui_frame(bytes([0x03, 0x00, 0x0F])))
        engine.sleep(1.0)
        seconds = [count_frames(engine, loop, 1.0) for _ in range(3)]
    line_limit = DCHANNEL_BITS_PER_SECOND / hdlc.line_bits(bytes(9))  # 7 octets + FCS
    assert all(300 < frames <= line_limit for frames in seconds), seconds


def test_the_simulated_dchannel_carries_64_kbits_and_holds_frames_in_its_buffers():
    with Engine(VirtualClock()) as engine, engine.actor():
        kernel = SimKernel(engine)
        kernel.add_loop("E1")
        kernel.configure(pri_loop_conf("E1"))
        arrived: list = []
        kernel.frame_taps.append(arrived.append)
        ours, theirs = engine.run(lambda: (Channel.open(16, io=kernel),
                                           Channel.open(47, io=kernel)))
        engine.run(ours.set_buffers, numbufs=4, bufsize=1024)
        frames = [bytes([0x02, 0x01, 2 * n, 0x00]) + bytes(range(40)) + bytes(2)
                  for n in range(6)]

        def write_all() -> tuple[float, list[bytes]]:
            return engine.time(), [frame for frame in frames if ours.write_frame(frame)]

        started, accepted = engine.run(write_all)
        assert accepted == frames[:4]  # every buffer holds a frame: EAGAIN for the rest
        engine.sleep(0.1)
        assert [record.frame for record in arrived] == [frame[:-2] for frame in accepted]
        # back to back: each frame arrives when its flag, octets, FCS and stuffed bits
        # have crossed at 64,000 bits a second after the one before
        due = started
        for record in arrived:
            due += hdlc.line_bits(record.frame + hdlc.fcs(record.frame)) / 64_000
            assert record.time == pytest.approx(due, abs=1e-9)
        assert len(engine.run(theirs.read_frame) or b"") == 46  # frame + FCS
        # once they have left, the buffers take frames again
        assert engine.run(ours.write_frame, frames[4]) == len(frames[4])


def test_a_full_transmit_queue_loses_the_frame_as_a_busy_line_does_not_as_a_fault(caplog):
    """A far end flooding the line can leave every D-channel transmit buffer holding a
    frame: libpri's next write then finds none free. That frame is lost as on a line that
    is busy (Q.921 sends its I frames again after T200); it is not a failure of ours with
    a traceback. It was reported to the fault log as a DeviceError every time."""
    from uascall import faultlog

    from .helpers import wait_for_libpri

    with Engine(VirtualClock()) as engine, engine.actor():
        loop = PriLoop.create(engine, "E1")
        assert engine.wait_until(lambda: loop.up, T)
        faults_before = faultlog.PROCESS.total()
        # frames the exchange's libpri drops unread (the address's EA bits are wrong),
        # written on our D-channel: they hold every one of its 32 transmit buffers
        filler = bytes([0x01, 0x00]) + bytes(250)

        def fill_and_call() -> PriCall:
            for _ in range(32):
                loop.tap.inject_frame(loop.net.layout.dchannel, filler)
            return loop.cpe.call("5551000", calling="5552000")

        loop.net.on_incoming = lambda call: call.answer()
        with caplog.at_level(logging.WARNING, logger="uascall.dahdi.pri"):
            call = engine.run(fill_and_call)
            assert loop.cpe.frames_not_sent == 1  # the SETUP
            # the line drains in about a second; T200 sends the SETUP again
            assert wait_for_libpri(engine, lambda: call.state is CallState.CONNECTED)
        assert engine.faults.total() == 0 and faultlog.PROCESS.total() == faults_before
        full = [r for r in caplog.records if "transmit buffer is full" in r.getMessage()]
        again = [r for r in caplog.records if "transmits again" in r.getMessage()]
        assert len(full) == 1 and len(again) == 1
