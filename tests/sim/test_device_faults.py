"""Devices that fail under a running span or port (a card pulled, a driver unloaded): the
calls on them are cleared with OUTOFORDER, the span or port closes and opens again when it
can, waiting longer each time, and the log says so once per change, not once per read."""

from __future__ import annotations

import errno
import logging
import re

import pytest

from uascall.dahdi import abi, libpri
from uascall.dahdi.analog import AnalogSettings
from uascall.dahdi.analog_port import AnalogPort
from uascall.dahdi.config import SystemConf
from uascall.dahdi.device import DeviceIO, IoctlArg
from uascall.dahdi.pri_call import CallCleared, CallConnected
from uascall.engine import MAX_FD_FAILURES, Engine, VirtualClock
from uascall.media.player import MediaClock
from uascall.sim.analog_farend import Exchange, analog_loop_conf
from uascall.sim.farend import FarEnd, PriLoop, pri_loop_conf
from uascall.sim.kernel import SimKernel


class FailingDevices(DeviceIO):
    """A kernel whose channels can be made to fail: every call on a failed channel's
    descriptors raises EIO, and opening it does too, until it is healed."""

    def __init__(self, io: DeviceIO) -> None:
        self.io = io
        self.failed: set[int] = set()
        self.failing_ioctls: set[int] = set()  # requests that fail on every channel
        self.buggy: set[int] = set()  # channels whose reads raise what no driver would
        self.channel_of: dict[int, int] = {}
        self.refused = 0  # calls that got EIO

    def describe(self) -> str:
        return f"failing {self.io.describe()}"

    def _check(self, fd: int) -> None:
        if self.channel_of.get(fd) in self.failed:
            self.refused += 1
            raise OSError(errno.EIO, "Input/output error")

    def open(self, path: str, flags: int) -> int:
        match = re.fullmatch(r".*/(\d+)", path)
        if match and int(match.group(1)) in self.failed:
            self.refused += 1
            raise OSError(errno.EIO, "Input/output error")
        fd = self.io.open(path, flags)
        if match:
            self.channel_of[fd] = int(match.group(1))
        return fd

    def close(self, fd: int) -> None:
        self.channel_of.pop(fd, None)
        self.io.close(fd)

    def read(self, fd: int, size: int) -> bytes:
        self._check(fd)
        if self.channel_of.get(fd) in self.buggy:
            self.refused += 1
            raise RuntimeError("not an OSError: a bug below the span")
        return self.io.read(fd, size)

    def write(self, fd: int, data: bytes) -> int:
        self._check(fd)
        return self.io.write(fd, data)

    def ioctl(self, fd: int, request: int, arg: IoctlArg = 0) -> int:
        self._check(fd)
        if request in self.failing_ioctls and fd in self.channel_of:
            self.refused += 1
            raise OSError(errno.EIO, "Input/output error")
        result = self.io.ioctl(fd, request, arg)
        if request == abi.DAHDI_SPECIFY:
            self.channel_of[fd] = int(getattr(arg, "value", arg))  # type: ignore[arg-type]
            if self.channel_of[fd] in self.failed:
                self.refused += 1
                raise OSError(errno.EIO, "Input/output error")
        return result


@pytest.fixture
def engine():
    with Engine(VirtualClock()) as engine, engine.actor():
        yield engine


def the_exchange_calls_our_span(engine):
    """An E1 loop on devices that can be made to fail, and a call from the exchange to our
    span: the failing devices, the loop, the far end and our calls so far (one)."""
    sim = SimKernel(engine)
    conf = pri_loop_conf("E1", dynamic=True)
    engine.run(sim.configure, SystemConf.parse(conf))
    devices = FailingDevices(sim)
    loop = PriLoop.create(engine, "E1", kernel=devices, conf=conf)
    far = FarEnd(loop)
    ours: list = []
    loop.cpe.on_incoming = ours.append
    assert engine.wait_until(lambda: loop.up, 5)
    engine.run(far.dial)
    assert engine.wait_until(lambda: bool(ours), 5)
    return devices, loop, far, ours


def test_a_failing_d_channel_clears_its_calls_and_comes_back(engine, caplog):
    caplog.set_level(logging.DEBUG)
    devices, loop, far, ours = the_exchange_calls_our_span(engine)
    call = ours[0]
    ended: list = []
    call.listeners.append(lambda _c, e: ended.append(e) if isinstance(e, CallCleared) else None)
    engine.run(call.answer)
    assert engine.wait_until(lambda: any(isinstance(e, CallConnected) for _, e in
                                         far.calls[0].events), 5)
    caplog.clear()
    devices.failed.add(loop.cpe.layout.dchannel)
    engine.run(far.calls[0].hangup)  # its DISCONNECT reaches a D-channel that fails
    engine.sleep(10.0)  # the span is down; opening it again fails, waiting longer each time
    assert ended and ended[0].cause == libpri.PRI_CAUSE_NETWORK_OUT_OF_ORDER
    assert ended[0].by == "span" and not loop.cpe.up
    assert devices.refused < 20, f"{devices.refused} failed calls: a hot loop"
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1 and "the D-channel failed" in errors[0].getMessage()
    devices.failed.clear()
    engine.sleep(20.0)  # the next try opens it; layer 2 comes up again
    assert loop.cpe.up
    assert any("opened again" in r.getMessage() for r in caplog.records)
    ours.clear()
    engine.run(far.dial)
    assert engine.wait_until(lambda: bool(ours), 5)


def exchange_rings_our_fxo_port(engine, *, exchange_fails_too: bool):
    """Our FXO port (channel 5) on devices that can be made to fail, rung by the simulated
    exchange on the line's other end (its own devices failing with ours, or not): the
    failing devices, the port, the exchange and the legs offered so far (one)."""
    sim = SimKernel(engine)
    engine.run(sim.configure, SystemConf.parse(analog_loop_conf(4)))
    devices = FailingDevices(sim)
    clock = MediaClock(engine)
    port = AnalogPort(engine, 5, clock=clock, settings=AnalogSettings(callerid=None),
                      io=devices)
    legs: list = []
    port.on_incoming = legs.append
    exchange = Exchange(engine, 1, clock=clock, io=devices if exchange_fails_too else sim)
    engine.run(port.start)
    engine.run(exchange.start)
    engine.sleep(2.1)
    engine.run(exchange.ring, None)
    assert engine.wait_until(lambda: bool(legs), 10)
    return devices, port, exchange, legs


def test_a_failing_analog_port_ends_its_call_and_opens_again(engine, caplog):
    caplog.set_level(logging.DEBUG)
    devices, port, exchange, legs = exchange_rings_our_fxo_port(engine,
                                                                exchange_fails_too=True)
    ended: list = []
    legs[0].listener = ended.append
    caplog.clear()
    devices.failed.add(5)
    engine.sleep(10.0)
    assert ended and ended[-1].cause.name == "OUTOFORDER" and ended[-1].raw_cause == \
        "device-error"
    assert devices.refused < 20, f"{devices.refused} failed calls: a hot loop"
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    devices.failed.clear()
    engine.sleep(20.0)  # open again: the exchange, still ringing, offers the call anew
    assert port.channel is not None and len(legs) == 2
    engine.run(port.stop)
    engine.run(exchange.stop)


def test_an_off_hook_the_device_refuses_ends_the_call_and_the_port_recovers(engine, caplog):
    """Answering an FXO call takes the line off hook; a DAHDI_HOOK that fails with EIO (not
    the EBUSY of a hook change still settling) is a failed device: the call ends
    OUTOFORDER rather than standing answered on a line that never went off hook."""
    devices, port, exchange, legs = exchange_rings_our_fxo_port(engine,
                                                                exchange_fails_too=False)
    ended: list = []
    legs[0].listener = ended.append
    devices.failing_ioctls.add(abi.DAHDI_HOOK)
    engine.run(legs[0].answer)
    engine.sleep(1.0)
    assert ended and ended[-1].cause.name == "OUTOFORDER", ended
    assert any("DAHDI_HOOK" in r.getMessage() or "Input/output" in r.getMessage()
               for r in caplog.records if r.levelno >= logging.WARNING)
    devices.failing_ioctls.clear()
    engine.sleep(20.0)
    assert port.channel is not None, "the port did not open again"
    engine.run(port.stop)
    engine.run(exchange.stop)


def test_a_d_channel_whose_handler_keeps_failing_is_taken_down_like_a_dead_device(engine,
                                                                                   caplog):
    """Not a DeviceError but a bug below the span (here the read raises RuntimeError): the
    engine gives the D-channel's fd up after MAX_FD_FAILURES failures in a row, and the
    span treats that as a failed device: calls cleared OUTOFORDER, reopened with backoff;
    the failures are logged once, with a count, not once per wake-up."""
    devices, loop, far, ours = the_exchange_calls_our_span(engine)
    ended: list = []
    ours[0].listeners.append(lambda _c, e: ended.append(e) if isinstance(e, CallCleared)
                             else None)
    engine.run(ours[0].answer)
    engine.sleep(1.0)
    caplog.clear()
    devices.buggy.add(loop.cpe.layout.dchannel)
    engine.run(far.calls[0].hangup)
    engine.sleep(10.0)
    assert ended and ended[0].cause == libpri.PRI_CAUSE_NETWORK_OUT_OF_ORDER
    assert not loop.cpe.up
    # opened again after 1, 2, 4 s (it fails as soon as it opens: no quicker retries)
    downs = [r for r in caplog.records if "the D-channel failed" in r.getMessage()]
    assert len(downs) == 4 and devices.refused == 4 * MAX_FD_FAILURES, devices.refused
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "RuntimeError" in tracebacks[0].getMessage()
    devices.buggy.clear()
    engine.sleep(20.0)
    assert loop.cpe.up
