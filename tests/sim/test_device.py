"""uascall.dahdi.device: opening, errors, data, events, readiness.

The tests that take ``dev`` run on either rig (the simulated kernel, or the real driver in
the vm rig) with the same E1 loop of dynamic spans: they are what holds the simulator to
the kernel. Those that take ``sim`` need something only the simulator can do (raise an
alarm, damage a frame, count what it dropped).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import errno
import itertools
import os
import random
import struct
import threading

import pytest

from uascall.dahdi import abi
from uascall.dahdi.device import Channel, ControlDevice, OsDeviceIO
from uascall.engine import EPOLLIN, EPOLLPRI, Engine, VirtualClock
from uascall.errors import DeviceError
from uascall.media import g711
from uascall.sim import hdlc
from uascall.sim.farend import pri_loop_conf
from uascall.sim.kernel import SimKernel
from uascall.sim.linear import kernel_law

from .helpers import reader

E1_LOOP_CONF = """
span=1,1,0,ccs,hdb3,crc4
span=2,0,0,ccs,hdb3,crc4
bchan=1-15,17-31
dchan=16
bchan=32-46,48-62
dchan=47
loadzone=nl
defaultzone=nl
"""


@pytest.fixture
def dev(rig):
    """An E1 loop of dynamic spans (1 and 2) configured for PRI, on the rig."""
    with rig.engine() as engine:
        io = rig.kernel(engine, pri_loop_conf("E1", dynamic=True))
        yield engine, io, rig


@pytest.fixture
def sim():
    """A virtual-time engine with a simulated E1 loop (spans 1 and 2) configured for PRI."""
    with Engine(VirtualClock()) as engine, engine.actor():
        kernel = SimKernel(engine)
        engine.run(kernel.add_loop, "E1")
        engine.run(kernel.configure, E1_LOOP_CONF)
        yield engine, kernel


def open_channel(engine, kernel, channo, **kw):
    """Open a channel that the engine closes when it stops, even after a failure (on the
    real driver, an open channel keeps dahdi_cfg from rebuilding the spans)."""
    chan = engine.run(Channel.open, channo, io=kernel, **kw)
    engine.run(engine.add_shutdown_callback, chan.close)
    return chan


def test_open_errors_name_the_channel_and_the_cause(dev):
    engine, kernel, _rig = dev
    with pytest.raises(DeviceError) as info:
        open_channel(engine, kernel, 99)
    assert info.value.errno == errno.EINVAL
    assert "channel 99 does not exist" in str(info.value)
    chan = open_channel(engine, kernel, 1)
    with pytest.raises(DeviceError) as info:
        open_channel(engine, kernel, 1)
    assert info.value.errno == errno.EBUSY and "already open" in str(info.value)
    engine.run(chan.close)
    engine.run(chan.close)  # closing twice is harmless
    with pytest.raises(DeviceError) as info:
        engine.run(Channel.open, 1, io=kernel, dev_dir="/dev/nodahdi")
    assert info.value.errno == errno.ENOENT and "not loaded" in str(info.value)


def test_unconfigured_channel_is_enxio():
    with Engine(VirtualClock()) as engine:
        kernel = SimKernel(engine)
        engine.run(kernel.add_loop, "T1")
        engine.run(kernel.configure, "bchan=1-23\ndchan=24\n")
        with pytest.raises(DeviceError) as info:
            engine.run(Channel.open, 25, io=kernel)
        assert info.value.errno == errno.ENXIO
        assert "channel 25 is not configured" in str(info.value)
        assert "system.conf" in str(info.value)


def test_open_by_span_and_position_and_params(dev):
    engine, kernel, _rig = dev
    chan = engine.run(Channel.open, span=2, chanpos=16, io=kernel)
    params = engine.run(chan.params)
    assert (chan.channo, params.spanno, params.chanpos) == (47, 2, 16)
    assert params.sigtype == abi.DAHDI_SIG_HDLCFCS
    assert params.curlaw == abi.DAHDI_LAW_ALAW  # E1 spans default to A-law
    status = engine.run(chan.span_status)
    assert status.spanno == 2 and status.totalchans == 31 and status.alarms == 0
    engine.run(chan.close)
    ctl = engine.run(ControlDevice.open, io=kernel)
    assert engine.run(ctl.span_status, 1).numchans == 31
    engine.run(ctl.close)


def test_bchannel_bytes_cross_byte_exact_at_8000_bytes_per_second(dev):
    engine, kernel, rig = dev
    a, b = open_channel(engine, kernel, 1), open_channel(engine, kernel, 32)
    for chan in (a, b):
        engine.run(chan.set_blocksize, 160)
        engine.run(chan.set_buffers, numbufs=8)
        engine.run(chan.set_audio_mode, True)
    pattern = bytes((i * 7 + 3) % 256 for i in range(160 * 5))
    frames = [pattern[i:i + 160] for i in range(0, len(pattern), 160)]
    blocks = reader(engine, b)
    t0 = engine.time()

    def write_all():
        for frame in frames:
            assert a.write_frame(frame) == 160

    engine.run(write_all)
    assert engine.wait_until(lambda: pattern in b"".join(blocks), timeout=2)
    received = b"".join(blocks)
    elapsed = engine.time() - t0
    # 800 bytes take 0.1 s at 8000 bytes/s, plus the line's latency; the real driver moves
    # them in bursts of up to 4 ms, so the last may leave that much before its time
    assert 0.1 - 0.005 <= elapsed <= 0.1 + rig.line_latency + 1e-9
    # A-law silence before the data arrived (on the real driver, not in whole blocks)
    assert set(received[: received.index(pattern)]) <= {0xD5}


def test_a_frame_written_to_an_idle_channel_falls_across_the_readers_blocks(sim):
    """The line takes a new stream at its next millisecond, not at a block boundary of
    the reader's (found on the real driver, where blocks never line up with the writer's
    frames): the frame arrives whole but split between two blocks."""
    engine, kernel = sim
    a, b = open_channel(engine, kernel, 1), open_channel(engine, kernel, 32)
    for chan in (a, b):
        engine.run(chan.set_blocksize, 160)
        engine.run(chan.set_audio_mode, True)
    blocks = reader(engine, b)
    engine.sleep(0.1)
    frame = bytes(range(1, 161))
    engine.run(a.write_frame, frame)
    engine.sleep(0.1)
    assert frame in b"".join(blocks)
    assert frame not in blocks
    assert all(len(block) == 160 for block in blocks)


def test_write_refused_when_every_buffer_is_full(dev):
    engine, kernel, _rig = dev
    a = open_channel(engine, kernel, 2)
    engine.run(a.set_blocksize, 160)
    engine.run(a.set_buffers, numbufs=2, tx_policy=abi.DAHDI_POLICY_WHEN_FULL)
    assert engine.run(a.write_frame, b"\x01" * 160) == 160
    assert engine.run(a.write_frame, b"\x02" * 160) == 160
    assert engine.run(a.write_frame, b"\x03" * 160) == 0  # EAGAIN: no free buffer


def test_linear_mode_converts_as_the_kernel_does(dev):
    """Both ways, with the kernel's own tables, which are not quite G.711 (found on the
    real driver; the simulator converts as uascall.sim.linear says)."""
    engine, kernel, _rig = dev
    a, b = open_channel(engine, kernel, 3), open_channel(engine, kernel, 34)
    for chan in (a, b):
        engine.run(chan.set_blocksize, 160)
        engine.run(chan.set_audio_mode, True)
    engine.run(a.set_linear, True)
    samples = [((i * 977) % 20000) - 10000 for i in range(160)]
    pcm = struct.pack("<160h", *samples)
    kernel_alaw = kernel_law("alaw")
    expected = kernel_alaw.encode_s16le(pcm)
    assert expected != g711.ALAW.encode(samples)  # the difference is in these samples
    blocks = reader(engine, b)
    engine.run(a.write_frame, pcm)
    # (on the real driver the block arrives split across two reads: the line's frames are
    # not aligned with ours)
    assert engine.wait_until(lambda: expected in b"".join(blocks), timeout=1)
    # and back: law bytes written by b, read as s16 by a
    heard = reader(engine, a)
    codes = bytes(range(0x80, 0xFF, 1))[:120] + bytes([0x55, 0xD5, 0xFF, 0x00])
    engine.run(b.write_frame, codes)
    expected = kernel_alaw.decode_s16le(codes)
    assert expected != g711.ALAW.decode_s16le(codes)
    assert engine.wait_until(lambda: expected in b"".join(heard), timeout=1)

def test_hdlc_frame_gets_its_fcs(dev):
    engine, kernel, rig = dev
    d1, d2 = open_channel(engine, kernel, 16), open_channel(engine, kernel, 47)
    engine.sleep(rig.settle_after_open)
    frame = b"\x00\x01\x7f\x7e\x7d hello hdlc"
    got = reader(engine, d2)
    assert engine.run(d1.write_frame, frame + b"\0\0") == len(frame) + 2
    assert engine.wait_until(lambda: bool(got), 1)
    assert got == [frame + hdlc.fcs(frame)]
    assert hdlc.check(got[0])


def test_a_frame_with_a_bad_fcs_becomes_an_event(sim):
    engine, kernel = sim
    d1, d2 = open_channel(engine, kernel, 16), open_channel(engine, kernel, 47)
    frame = b"\x00\x01\x7f\x7e\x7d hello hdlc"
    events: list[int] = []
    d2.on_event = events.append
    engine.run(kernel.corrupt_next_frame, 16)
    engine.run(d1.write_frame, frame + b"\0\0")
    assert engine.wait_until(lambda: d2.read_frame() is None and bool(events), 1)
    assert events == [abi.DAHDI_EVENT_BADFCS]


def test_events_raise_pollpri_and_elast_until_drained(sim):
    engine, kernel = sim
    chan = open_channel(engine, kernel, 5)
    seen: list[int] = []
    events: list[int] = []
    chan.on_event = events.append
    engine.run(engine.add_fd, chan.fileno(), EPOLLIN | EPOLLPRI, seen.append)
    engine.run(kernel.set_alarm, 1, abi.DAHDI_ALARM_RED)
    assert engine.wait_until(lambda: any(r & EPOLLPRI for r in seen), 1)
    with pytest.raises(OSError) as info:
        engine.run(kernel.write, chan.fileno(), b"x" * 160)
    assert info.value.errno == abi.ELAST
    assert engine.run(chan.write_frame, b"x" * 160) == 160  # drains, then writes
    assert events == [abi.DAHDI_EVENT_ALARM]
    assert engine.run(chan.span_status).alarms == abi.DAHDI_ALARM_RED
    engine.run(kernel.set_alarm, 1, 0)
    engine.run(chan.drain_events)
    assert events == [abi.DAHDI_EVENT_ALARM, abi.DAHDI_EVENT_NOALARM]
    engine.run(engine.remove_fd, chan.fileno())


def test_ioctl_validation_matches_the_kernel(dev):
    engine, kernel, _rig = dev
    chan = open_channel(engine, kernel, 16)
    with pytest.raises(DeviceError) as info:
        engine.run(chan.set_blocksize, 8)
    assert info.value.errno == errno.EINVAL and "DAHDI_SET_BLOCKSIZE" in str(info.value)
    with pytest.raises(DeviceError) as info:
        engine.run(chan.set_audio_mode, True)  # a D-channel is not CLEAR
    assert info.value.errno == errno.EINVAL
    with pytest.raises(DeviceError) as info:
        engine.run(chan.set_buffers, numbufs=32, bufsize=2048)
    assert info.value.errno == errno.EINVAL
    engine.run(chan.set_buffers, numbufs=64, bufsize=256)  # numbufs is clamped to 32
    assert engine.run(chan.buffer_info).numbufs == 32


def test_fd_kinds_have_the_kernels_ioctl_tables(dev):
    engine, kernel, rig = dev
    fd = engine.run(kernel.open, "/dev/dahdi/channel", os.O_RDWR | os.O_NONBLOCK)

    def errno_of(fn, *args):
        with pytest.raises(OSError) as info:
            engine.run(fn, *args)
        return info.value.errno

    assert errno_of(kernel.ioctl, fd, abi.DAHDI_GET_BLOCKSIZE, ctypes.c_int()) == errno.ENOSYS
    assert errno_of(kernel.read, fd, 160) == errno.ENOSYS
    engine.run(kernel.ioctl, fd, abi.DAHDI_SPECIFY, ctypes.c_int(1))
    assert errno_of(kernel.ioctl, fd, abi.DAHDI_SPECIFY, ctypes.c_int(1)) == errno.ENOTTY
    assert errno_of(kernel.ioctl, fd, abi.DAHDI_GETVERSION, abi.DahdiVersionInfo()) == errno.ENOTTY
    # A clear channel is not in audio mode after open: linear mode needs it first.
    assert errno_of(kernel.ioctl, fd, abi.DAHDI_SETLINEAR, ctypes.c_int(1)) == errno.EINVAL
    engine.run(kernel.close, fd)
    ctl = engine.run(ControlDevice.open, io=kernel)
    version, _echo = engine.run(ctl.version)
    assert version.startswith("2.11.1")  # what Debian's dahdi-dkms builds
    assert ("simulator" in version) is (rig.name == "sim")
    engine.run(ctl.close)


class _KernelAs(SimKernel):
    """The simulator, answering some operations as a board's kernel would."""

    def __init__(self, engine, *, deny_open: bool = False, ring_in_progress: bool = False):
        super().__init__(engine)
        self.deny_open = deny_open
        self.ring_in_progress = ring_in_progress

    def open(self, path, flags):
        if self.deny_open:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return super().open(path, flags)

    def ioctl(self, fd, request, arg=0):
        if self.ring_in_progress and request == abi.DAHDI_HOOK:
            raise OSError(errno.EINPROGRESS, "Operation now in progress")
        return super().ioctl(fd, request, arg)


def test_permission_errors_point_at_the_udev_rules():
    with Engine(VirtualClock()) as engine:
        kernel = _KernelAs(engine, deny_open=True)
        engine.run(kernel.add_loop, "E1")
        engine.run(kernel.configure, E1_LOOP_CONF)
        with pytest.raises(DeviceError) as info:
            engine.run(Channel.open, 1, io=kernel)
    assert info.value.errno == errno.EACCES
    assert "udev" in str(info.value) and "0660" in str(info.value)


def test_a_ring_that_the_kernel_starts_in_the_background_is_success():
    with Engine(VirtualClock()) as engine:
        kernel = _KernelAs(engine, ring_in_progress=True)
        engine.run(kernel.add_loop, "E1")
        engine.run(kernel.configure, E1_LOOP_CONF)
        chan = engine.run(Channel.open, 1, io=kernel)
        engine.run(chan.hook, abi.DAHDI_RING)  # EINPROGRESS: no exception
        engine.run(chan.close)


def test_block_size_is_the_kernels_after_open(dev):
    engine, kernel, _rig = dev
    chan = open_channel(engine, kernel, 1)
    assert chan.blocksize == abi.DAHDI_DEFAULT_BLOCKSIZE == 1024


def test_read_overrun_is_silent_without_buffer_events_and_once_per_episode_with_them(sim):
    engine, kernel = sim
    a, b = open_channel(engine, kernel, 6), open_channel(engine, kernel, 37)
    for chan in (a, b):
        engine.run(chan.set_blocksize, 160)
        engine.run(chan.set_buffers, numbufs=2)
    events = []
    b.on_event = events.append
    engine.sleep(0.2)  # nobody reads: both buffers fill, then blocks are lost
    assert kernel.stats(37).rx_overruns >= 5
    engine.run(b.drain_events)
    assert events == []
    engine.run(kernel.ioctl, b.fileno(), abi.DAHDI_BUFFER_EVENTS, ctypes.c_int(1))
    engine.run(lambda: [b.read_frame() for _ in range(2)])  # room again: the episode ends
    engine.sleep(0.2)
    engine.run(b.drain_events)
    assert events == [abi.DAHDI_EVENT_READ_OVERRUN]


def test_hdlc_frame_as_long_as_the_receivers_block_is_an_overrun(dev):
    engine, kernel, rig = dev
    d1, d2 = open_channel(engine, kernel, 16), open_channel(engine, kernel, 47)
    for chan in (d1, d2):
        engine.run(chan.set_buffers, numbufs=4, bufsize=64)
    engine.sleep(rig.settle_after_open)
    events = []
    d2.on_event = events.append
    got = reader(engine, d2)
    engine.run(d1.write_frame, bytes(62) + b"\0\0")  # 62 + FCS = 64 bytes: too long
    engine.sleep(0.05)  # gone at 64 kbit/s, with idle flags behind it
    engine.run(d1.write_frame, bytes(61) + b"\0\0")  # 63 bytes: fits
    assert engine.wait_until(lambda: bool(got), 1)
    assert [len(frame) for frame in got] == [63] and events == [abi.DAHDI_EVENT_OVERRUN]


def test_a_frame_right_behind_an_overrun_is_lost_too(sim):
    """After an overrun the receiver hunts for a flag from where it gave up: the frame
    written back to back behind the long one goes with it (seen on the real driver; there
    a tick may also fall between the two writes, so this one is for the simulator)."""
    engine, kernel = sim
    d1, d2 = open_channel(engine, kernel, 16), open_channel(engine, kernel, 47)
    engine.run(d2.set_buffers, numbufs=4, bufsize=64)
    events = []
    d2.on_event = events.append
    got = reader(engine, d2)
    engine.run(d1.write_frame, bytes(62) + b"\0\0")
    engine.run(d1.write_frame, bytes(61) + b"\0\0")
    engine.sleep(0.1)
    assert got == [] and events == [abi.DAHDI_EVENT_OVERRUN, abi.DAHDI_EVENT_BADFCS]
    engine.run(d1.write_frame, bytes(10) + b"\0\0")  # the receiver has its flag again
    engine.sleep(0.1)
    assert [len(frame) for frame in got] == [12]


def test_yellow_follows_the_peers_red_whichever_clears_first(sim):
    engine, kernel = sim
    spans = {n: kernel.spans[n - 1] for n in (1, 2)}
    engine.run(kernel.set_alarm, 1, abi.DAHDI_ALARM_RED)
    engine.run(kernel.set_alarm, 2, abi.DAHDI_ALARM_RED)
    assert spans[1].alarms == spans[2].alarms == abi.DAHDI_ALARM_RED | abi.DAHDI_ALARM_YELLOW
    engine.run(kernel.set_alarm, 1, 0)
    assert spans[1].alarms == abi.DAHDI_ALARM_YELLOW  # its peer is still down
    assert spans[2].alarms == abi.DAHDI_ALARM_RED
    engine.run(kernel.set_alarm, 2, 0)
    assert spans[1].alarms == spans[2].alarms == 0


def test_a_failing_frame_tap_loses_no_frame(sim):
    engine, kernel = sim
    d1, d2 = open_channel(engine, kernel, 16), open_channel(engine, kernel, 47)

    def broken_tap(record):
        raise RuntimeError("tap bug")

    kernel.frame_taps.append(broken_tap)
    engine.run(d1.set_buffers, numbufs=8, bufsize=1024)  # room for the three frames
    engine.run(d2.set_buffers, numbufs=8, bufsize=1024)
    got = reader(engine, d2)
    for n in range(3):
        engine.run(d1.write_frame, bytes([2, 1, 3, n]) + b"\0\0")
    assert engine.wait_until(lambda: len(got) == 3, 1)


def test_dynamic_loc_spans_are_made_as_dahdi_dynamic_loc_makes_them():
    conf = ("dynamic=loc,1:0,4,0\ndynamic=loc,1:1,4,0\nbchan=1-3\ndchan=4\nbchan=5-7\n"
            "dchan=8\nalaw=5-7\n")
    with Engine(VirtualClock()) as engine:
        kernel = SimKernel(engine)
        engine.run(kernel.configure, conf)
        ctl = engine.run(ControlDevice.open, io=kernel)
        status = engine.run(ctl.span_status, 2)
        assert (status.name, status.spantype, status.totalchans) == ("DYN/loc/1:1", "DYNAM", 4)
        assert status.description == "Dynamic 'loc' span at '1:1'"
        laws = [engine.run(ctl.channel_params, n).curlaw for n in (1, 5)]
        assert laws == [abi.DAHDI_LAW_MULAW, abi.DAHDI_LAW_ALAW]  # mu-law unless alaw=
        engine.run(ctl.close)
        chan = engine.run(Channel.open, 1, io=kernel)
        with pytest.raises(ValueError, match="channel 1 is open"):
            engine.run(kernel.configure, conf)
        engine.run(chan.close)
        engine.run(kernel.configure, conf.replace(",4,0", ",6,0").replace("5-7", "7-11")
                   .replace("dchan=8", "dchan=12").replace("bchan=1-3", "bchan=1-5")
                   .replace("dchan=4", "dchan=6"))
        assert [len(span.channels) for span in kernel.spans] == [6, 6]  # replaced
        with pytest.raises(ValueError, match="only the 'loc' driver"):
            engine.run(kernel.configure, "dynamic=eth,eth0/00:11:22:33:44:55/0,24,0\n")
        with pytest.raises(ValueError, match="key 7 has 1 spans; expected two"):
            engine.run(kernel.configure, "dynamic=loc,7:0,24,0\n")


class _ReadsNothing(SimKernel):
    """A driver whose read returns 0 bytes (end of file) rather than EAGAIN."""

    def read(self, fd, size):
        return b""


def test_a_read_of_nothing_ends_the_service_of_a_ready_channel():
    """A zero-length read is nothing waiting, not a block: servicing the channel must
    return (it looped for ever, handing empty blocks on, and the engine hung)."""
    with Engine(VirtualClock()) as engine, engine.actor():
        kernel = _ReadsNothing(engine)
        engine.run(kernel.add_loop, "E1")
        engine.run(kernel.configure, E1_LOOP_CONF)
        chan = open_channel(engine, kernel, 1)
        blocks: list[bytes] = []
        outcome = concurrent.futures.Future()
        threading.Thread(target=lambda: outcome.set_result(
            engine.run(chan.service, EPOLLIN, blocks.append)), daemon=True).start()
        assert outcome.result(5) is None and blocks == []
        assert engine.run(chan.read_frame) is None


def test_may_read_says_whether_a_read_would_fail_with_eagain(sim):
    """The simulator answers may_read() as the read would: False exactly when it would
    fail with EAGAIN, True while a block or an event (ELAST) waits; the real driver's
    answer is always True (read and see)."""
    engine, kernel = sim
    a, b = open_channel(engine, kernel, 1), open_channel(engine, kernel, 32)
    assert engine.run(b.may_read) is False
    with pytest.raises(BlockingIOError):
        engine.run(kernel.read, b.fileno(), 160)
    engine.run(b.set_blocksize, 160)
    engine.run(a.write_frame, b"\x55" * 320)
    assert engine.wait_until(lambda: engine.run(b.may_read), 1)
    assert engine.run(kernel.read, b.fileno(), 160)
    engine.run(kernel.set_alarm, 1, abi.DAHDI_ALARM_RED)  # an event queued on both sides
    assert engine.run(a.may_read) is True
    with pytest.raises(OSError) as info:
        engine.run(kernel.read, a.fileno(), 160)
    assert info.value.errno == abi.ELAST
    engine.run(a.drain_events)
    assert engine.run(a.may_read) is False
    assert OsDeviceIO().may_read(-1) is True


def looped_e1(engine, phases):
    kernel = SimKernel(engine, phases=phases)
    engine.run(kernel.add_loop, "E1")
    engine.run(kernel.configure, E1_LOOP_CONF)
    return kernel


def timed_reader(engine, chan) -> list[tuple[float, bytes]]:
    """What ``chan`` receives, each block with the engine time it was read at."""
    blocks: list[tuple[float, bytes]] = []
    engine.run(engine.add_fd, chan.fileno(), EPOLLIN | EPOLLPRI,
               lambda revents: chan.service(revents,
                                            lambda block: blocks.append((engine.time(), block))))
    return blocks


def open_pair(engine, kernel, tx, rx, numbufs=4):
    pair = open_channel(engine, kernel, tx), open_channel(engine, kernel, rx)
    for chan in pair:
        engine.run(chan.set_buffers, numbufs=numbufs, bufsize=160)
    return pair


@pytest.mark.parametrize("phases", [20, 1])
def test_each_channel_is_served_at_the_phase_it_was_opened_in(phases):
    """On a card the interrupt comes every millisecond and a channel's block is complete
    when 160 bytes have come since the channel was opened: channels opened at different
    moments become readable at different moments of the 20 ms, each every 20 ms. With
    one phase every block is readable at the same moment."""
    with Engine(VirtualClock()) as engine, engine.actor():
        kernel = looped_e1(engine, phases)
        opened, received = [], []
        for tx, rx in ((1, 32), (2, 33), (3, 34)):
            opened.append(engine.time())
            received.append(timed_reader(engine, open_pair(engine, kernel, tx, rx)[1]))
            engine.sleep(0.007)
        engine.sleep(0.2)
    moments = []
    for opened_at, blocks in zip(opened, received, strict=True):
        times = [at for at, _block in blocks]
        assert len(times) >= 9
        assert all(abs(b - a - 0.020) < 1e-9 for a, b in itertools.pairwise(times))
        assert all(len(block) == 160 for _at, block in blocks)
        if phases == 20:  # its first block a tick after it was opened, within a phase
            assert 0.019 - 1e-9 <= times[0] - opened_at <= 0.020 + 1e-9
        moments.append(round(times[0] * 1000) % 20)
    if phases == 20:
        assert len(set(moments)) == 3
    else:
        assert len(set(moments)) == 1


def test_a_late_line_serves_each_phase_once_and_keeps_the_blocks_on_their_phase():
    """The engine held 55 ms: the line catches up on every phase it missed, each with
    what the line carried up to its own moment, so that every block stays whole and on
    its phase, and no byte is lost or repeated."""
    clock = VirtualClock()
    with Engine(clock) as engine, engine.actor():
        kernel = looped_e1(engine, 20)
        a, b = open_pair(engine, kernel, 1, 32, numbufs=16)
        engine.sleep(0.009)
        _c, d = open_pair(engine, kernel, 2, 33, numbufs=16)
        pattern = random.Random(7).randbytes(160 * 14)
        engine.run(lambda: [a.write_frame(pattern[n:n + 160])
                            for n in range(0, len(pattern), 160)])
        got_b, got_d = timed_reader(engine, b), timed_reader(engine, d)
        engine.sleep(0.05)
        released = engine.run(lambda: clock.advance_to(engine.time() + 0.055)
                              or engine.time())  # the thread was held 55 ms
        engine.sleep(0.3)
        moved = engine.run(lambda: (kernel.stats(32).rx_bytes, kernel.stats(33).rx_bytes,
                                    len(kernel.channels[32].rx_partial),
                                    len(kernel.channels[33].rx_partial)))
    assert pattern in b"".join(block for _at, block in got_b)
    for blocks in (got_b, got_d):
        # the three phases the hold spanned, read at once when it ended
        assert sum(at == released for at, _block in blocks) == 3
        on_time = [at for at, _block in blocks if at != released]
        phase = round(on_time[0] * 1000) % 20
        assert all(round(at * 1000) % 20 == phase for at in on_time)
    assert moved[2:] == (0, 0)
    assert moved[0] % 160 == 0 and moved[1] % 160 == 0


def test_a_stream_is_whole_at_a_reader_opened_after_it_began():
    """The writer's bytes go on the line from where it was when its peer opens in another
    phase: the reader hears the rest of the stream whole, nothing lost or repeated at the
    change (what went before, up to the writer's last phase, went into nothing)."""
    with Engine(VirtualClock()) as engine, engine.actor():
        kernel = looped_e1(engine, 20)
        a = open_channel(engine, kernel, 1)
        engine.run(a.set_buffers, numbufs=16, bufsize=160)
        pattern = random.Random(11).randbytes(160 * 12)
        engine.run(lambda: [a.write_frame(pattern[n:n + 160])
                            for n in range(0, len(pattern), 160)])
        engine.sleep(0.045)
        b = open_channel(engine, kernel, 32)
        engine.run(b.set_buffers, numbufs=16, bufsize=160)
        blocks = reader(engine, b)
        engine.sleep(0.3)
    received = b"".join(blocks)
    skipped = pattern.find(received[:64])
    # 45 ms went by, the stream began at 7 ms, the writer's phase last came at 40 ms
    assert skipped == (40 - 7) * 8
    assert received.startswith(pattern[skipped:])


@pytest.mark.parametrize("phases", [0, -1, 1.5, 161])
def test_phases_are_checked(phases):
    with Engine(VirtualClock()) as engine, pytest.raises(ValueError, match="phases"):
        SimKernel(engine, phases=phases)
