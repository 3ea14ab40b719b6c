"""Calls out of an FXO port: the kernel's part, on either rig.

DAHDI_DIAL pulse digits counted by the far end's kernel, DAHDI_SET_PARAMS's pulse times,
and DAHDI_SETPOLARITY, which a dynamic (loc) span refuses with ENOTTY as the vm rig's real
driver does; on the simulator's analog card pair a reversal reaches the FXO port as
DAHDI_EVENT_POLARITY.
"""

from __future__ import annotations

import contextlib
import errno

import pytest

from tests.rigs import SimRig
from uascall.dahdi import abi
from uascall.errors import DeviceError
from uascall.sim.analog_farend import analog_loop_conf
from uascall.sim.kernel import SimKernel

from .test_cas import Line

# =========================================================================== the kernel
S, L = 1, 25  # analog_loop_conf(): the exchange's end (fxoks) and the line's (fxsks)


@pytest.fixture
def tick(rig) -> float:
    return rig.event_slack


@pytest.fixture
def loop(rig):
    with rig.engine() as engine:
        io = rig.kernel(engine, analog_loop_conf())
        s, line = Line(engine, io, S), Line(engine, io, L)
        engine.sleep(2.1)
        yield engine, s, line
        for end in (s, line):
            end.close()


def pulse_times(engine, line, break_ms: int, make_ms: int) -> None:
    params = engine.run(line.chan.params)
    params.pulsebreaktime, params.pulsemaketime = break_ms, make_ms
    engine.run(line.chan.set_params, params)


def test_pulse_digits_are_counted_by_the_far_ends_kernel(loop, tick):
    """L dials "P2W3" off hook, 60/40 ms pulses: S's kernel reports the digits (each
    PULSEDIGIT 250 ms after its last break), and L's the end of the dialling: 2 x 100 ms
    + 750 ms, 0.5 s, 3 x 100 ms + 750 ms."""
    engine, s, line = loop
    pulse_times(engine, line, 60, 40)
    assert engine.run(line.chan.params).pulsebreaktime == 60
    line.hook(abi.DAHDI_OFFHOOK)
    s.wait_for(abi.DAHDI_EVENT_RINGOFFHOOK)
    s.hook(abi.DAHDI_OFFHOOK)  # the exchange takes the line
    engine.sleep(1.0)  # past both ends' 600 ms off-hook debounce
    t0 = engine.time()
    engine.run(line.chan.dial, "P2W3")
    assert engine.run(line.chan.dialing)
    done = line.wait_for(abi.DAHDI_EVENT_DIALCOMPLETE, t0)
    assert done == pytest.approx(0.2 + 0.75 + 0.5 + 0.3 + 0.75, abs=tick)
    digits = [(t - t0, e) for t, e in s.events
              if t >= t0 and e & abi.DAHDI_EVENT_PULSEDIGIT]
    assert [chr(e & 0xFF) for _, e in digits] == ["2", "3"]
    assert digits[0][0] == pytest.approx(0.16 + 0.25, abs=tick)
    assert s.names(t0).count("PULSE_START") == 2
    assert "ONHOOK" not in s.names(t0) and "WINKFLASH" not in s.names(t0)
    assert not engine.run(line.chan.dialing)


def test_pulses_need_the_line_off_hook_and_dahdi_hook_stops_them(loop, tick):
    engine, s, line = loop
    t0 = engine.time()
    engine.run(line.chan.dial, "P55")  # on hook: the kernel skips pulse digits
    assert line.wait_for(abi.DAHDI_EVENT_DIALCOMPLETE, t0) == pytest.approx(0, abs=tick)
    line.hook(abi.DAHDI_OFFHOOK)
    s.wait_for(abi.DAHDI_EVENT_RINGOFFHOOK, t0)
    s.hook(abi.DAHDI_OFFHOOK)
    engine.sleep(1.0)
    t1 = engine.time()
    engine.run(line.chan.dial, "P99")
    engine.sleep(0.45)
    line.hook(abi.DAHDI_OFFHOOK)  # any DAHDI_HOOK stops dialling: no DIALCOMPLETE
    engine.sleep(3.0)
    assert "DIALCOMPLETE" not in line.names(t1)
    assert not any(e & abi.DAHDI_EVENT_PULSEDIGIT and chr(e & 0xFF) == "9"
                   for t, e in s.events if t >= t1)


def test_a_write_stops_the_pulses_after_the_one_under_way(loop, tick):
    """dahdi_chan_write zeroes the pulses left: the break or make under way runs out, the
    pause after the digit follows and DIALCOMPLETE with it; the rest is not dialled."""
    engine, s, line = loop
    line.hook(abi.DAHDI_OFFHOOK)
    s.wait_for(abi.DAHDI_EVENT_RINGOFFHOOK)
    s.hook(abi.DAHDI_OFFHOOK)
    engine.sleep(1.0)
    t0 = engine.time()
    engine.run(line.chan.dial, "P95")  # 50/50 ms pulses: the kernel's default
    engine.sleep(0.25)
    engine.run(line.chan.write_frame, bytes([0xFF]) * 160)
    done = line.wait_for(abi.DAHDI_EVENT_DIALCOMPLETE, t0)
    assert 0.25 + 0.75 - tick <= done <= 0.35 + 0.75 + tick
    engine.sleep(1.0)
    digits = [chr(e & 0xFF) for t, e in s.events if t >= t0 and e & abi.DAHDI_EVENT_PULSEDIGIT]
    assert len(digits) == 1 and digits[0] in "234", digits


def test_a_dynamic_span_cannot_reverse_a_line(loop):
    """dahdi_dynamic has no ioctl of its own: DAHDI_SETPOLARITY is ENOTTY on either end
    (the real driver's answer, which is why the vm rig runs without answer supervision)."""
    engine, s, line = loop
    for end in (s, line):
        with pytest.raises(DeviceError) as caught:
            engine.run(end.chan.set_polarity, True)
        assert caught.value.errno == errno.ENOTTY
        assert "polarity is an analog card's" in str(caught.value)


@contextlib.contextmanager
def analog_cards(channels: int = 4):
    """The simulator's analog card pair: channels 1-4 an FXS card's ports (fxoks), 5-8
    an FXO card's (fxsks), wired 1-5, 2-6..., in virtual time."""
    with SimRig().engine() as engine:
        kernel = SimKernel(engine)
        engine.run(kernel.add_loop, "ANALOG", channels=channels)
        engine.run(kernel.configure, analog_loop_conf(channels, dynamic=False))
        yield engine, kernel


def test_an_analog_cards_line_carries_polarity():
    with analog_cards() as (engine, kernel):
        fxs, fxo = Line(engine, kernel, 1), Line(engine, kernel, 5)
        engine.sleep(2.1)
        t0 = engine.time()
        engine.run(fxs.chan.set_polarity, True)
        assert fxo.wait_for(abi.DAHDI_EVENT_POLARITY, t0) == pytest.approx(0.064, abs=0.002)
        engine.sleep(0.1)
        t1 = engine.time()
        engine.run(fxs.chan.set_polarity, True)  # no change: nothing to report
        engine.run(fxs.chan.set_polarity, False)
        engine.sleep(0.03)
        engine.run(fxs.chan.set_polarity, True)  # back within the 64 ms debounce
        engine.sleep(0.5)
        assert "POLARITY" not in fxo.names(t1)
        with pytest.raises(DeviceError) as caught:  # an FXO port cannot reverse its line
            engine.run(fxo.chan.set_polarity, False)
        assert caught.value.errno == errno.EINVAL
        fxs.hook(abi.DAHDI_RING)
        with pytest.raises(DeviceError) as caught:  # nor can a port while it rings
            engine.run(fxs.chan.set_polarity, False)
        assert caught.value.errno == errno.EINVAL
        for end in (fxs, fxo):
            end.close()
