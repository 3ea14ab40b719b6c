"""Calls out of an FXO port: seize, dial tone, DTMF or pulses, progress tones, the answer.

Three layers, each on its own:

* the port's machine bare (:class:`~uascall.dahdi.analog.FxoPort`);
* the kernel's part, on either rig: DAHDI_DIAL pulse digits counted by the far end's
  kernel, DAHDI_SET_PARAMS's pulse times, and DAHDI_SETPOLARITY, which a dynamic (loc)
  span refuses with ENOTTY as the vm rig's real driver does; on the simulator's analog
  card pair a reversal reaches the FXO port as DAHDI_EVENT_POLARITY;
* calls through the channel API against the exchange of
  :mod:`uascall.sim.analog_farend` (channel 1, fxoks) behind our FXO port (channel 5):
  on either rig over the loc pair, whose lines cannot reverse, with the "none" answer
  supervision (and "polarity" to show a line without reversals never answers); and on
  the simulator's analog card pair with "polarity" supervision.
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import errno
import math
from typing import Any

import pytest

from tests import audio
from tests.rigs import SimRig
from uascall.backend import Cause, LegAlerting
from uascall.channel import State, StateChanged, UASCallChannel
from uascall.dahdi import abi
from uascall.dahdi.analog import (
    DIALTONE_TIMER,
    HOLD_TIMER,
    MIN_ANSWER_HOLD,
    AnalogSettings,
    CallAlerting,
    CallAnswered,
    CallEnded,
    CancelTimer,
    Dial,
    FxoPort,
    FxoState,
    HookEvent,
    Listen,
    PlayTone,
    SetHook,
    StartTimer,
    TimerExpired,
    ToneHeard,
)
from uascall.dahdi.backend import DahdiBackend
from uascall.dahdi.config import SystemConf
from uascall.engine import Engine
from uascall.errors import ArgumentError, DeviceError, LocalProtocolError
from uascall.media import g711
from uascall.media.player import MediaClock
from uascall.sim.analog_farend import Destination, Exchange, analog_loop_conf
from uascall.sim.kernel import SimKernel

from .helpers import MEDIA, T
from .test_cas import Line

FXO, EXCHANGE = 5, 1
NUMBER = "5551000"
AFTER = ("busy", "congestion", "ringback")


# =========================================================================== the machine
def seized(**settings: Any) -> FxoPort:
    port = FxoPort(AnalogSettings(**settings))
    port.place_call(NUMBER)
    return port


def dialled(**settings: Any) -> FxoPort:
    port = seized(**settings)
    port.handle(TimerExpired(HOLD_TIMER))
    port.handle(ToneHeard("dialtone"))
    port.handle(HookEvent(abi.DAHDI_EVENT_DIALCOMPLETE))
    return port


def ended(outputs) -> CallEnded:
    return next(o for o in outputs if isinstance(o, CallEnded))


def test_a_call_out_seizes_the_line_and_waits_for_dial_tone():
    port = FxoPort()
    out = port.place_call("555-1000".replace("-", ""))
    assert out == [SetHook(abi.DAHDI_OFFHOOK), StartTimer(HOLD_TIMER, MIN_ANSWER_HOLD),
                   Listen("progress", ("dialtone",)), StartTimer(DIALTONE_TIMER, 5.0)]
    assert port.state is FxoState.SEIZING
    assert port.handle(ToneHeard("busy")) == []  # only dial tone counts now
    assert port.handle(HookEvent(abi.DAHDI_EVENT_RINGBEGIN)) == []  # off hook: not a call
    out = port.handle(ToneHeard("dialtone"))
    assert out == [CancelTimer(DIALTONE_TIMER), Listen(None), Dial("5551000", "dtmf")]
    assert port.state is FxoState.DIALLING
    with pytest.raises(LocalProtocolError, match=r"place_call\(\) on FXO port fxo: the "
                                                 r"port is DIALLING; expected IDLE"):
        port.place_call("1")


@pytest.mark.parametrize("dialing, number, message", [
    ("pulse", "555#", r"'#' at 3 cannot be dialled \(pulse dialling carries digits 0-9"),
    ("dtmf", "55x5", r"'X' at 2 cannot be dialled \(DTMF carries 0-9 \* # A-D"),
    ("dtmf", ",,", "nothing to dial"),
])
def test_a_number_the_dialling_cannot_carry_is_refused(dialing, number, message):
    port = FxoPort(AnalogSettings(dialing=dialing))
    with pytest.raises(ArgumentError, match=message):
        port.place_call(number)
    assert port.state is FxoState.IDLE


def test_dtmf_letters_and_pauses_are_dialled():
    port = FxoPort()
    port.place_call("9,12ab*#")
    assert port.handle(ToneHeard("dialtone"))[-1] == Dial("9,12AB*#", "dtmf")


def test_no_dial_tone_is_a_dead_line():
    port = seized()
    port.handle(TimerExpired(HOLD_TIMER))
    out = port.handle(TimerExpired(DIALTONE_TIMER))
    assert out[0] == SetHook(abi.DAHDI_ONHOOK)
    assert ended(out) == CallEnded("no dial tone", "network", Cause.OUTOFORDER,
                                   "no-dial-tone")
    assert port.state is FxoState.IDLE


def test_without_answer_supervision_the_call_is_answered_once_dialled():
    port = seized(answer_supervision="none")
    port.handle(ToneHeard("dialtone"))
    out = port.handle(HookEvent(abi.DAHDI_EVENT_DIALCOMPLETE))
    assert out == [Listen("progress", ("busy", "congestion")), CallAnswered()]
    assert port.state is FxoState.CONNECTED
    assert port.handle(ToneHeard("ringback")) == []  # answered already: nothing to say
    out = port.handle(ToneHeard("busy"))  # a busy line, or the far end gone: BUSY
    assert ended(out) == CallEnded("busy tone after the answer", "remote", Cause.BUSY,
                                   "busy-tone")


@pytest.mark.parametrize("dialing", ["dtmf", "pulse"])
def test_digits_end_with_the_kernels_dialcomplete(dialing):
    port = seized(dialing=dialing, answer_supervision="polarity")
    assert port.handle(ToneHeard("dialtone"))[-1] == Dial(NUMBER, dialing)
    assert port.handle(ToneHeard("ringback")) == []  # still dialling: not yet
    out = port.handle(HookEvent(abi.DAHDI_EVENT_DIALCOMPLETE))
    assert out == [Listen("progress", AFTER)] and port.state is FxoState.PROCEEDING


def test_polarity_supervision_ringback_then_the_reversal_answers():
    port = dialled(answer_supervision="polarity")
    assert port.state is FxoState.PROCEEDING
    assert port.handle(ToneHeard("ringback")) == [CallAlerting(inband=True)]
    assert port.handle(ToneHeard("ringback")) == []  # once
    out = port.handle(HookEvent(abi.DAHDI_EVENT_POLARITY))
    assert out == [Listen("progress", ("busy", "congestion")), CallAnswered()]
    assert port.handle(HookEvent(abi.DAHDI_EVENT_POLARITY)) == []  # no second answer
    # the exchange's tone after a real answer: the far end has cleared
    out = port.handle(ToneHeard("congestion"))
    assert ended(out).cause is Cause.NORMAL and ended(out).raw == "congestion-tone"
    assert port.state is FxoState.IDLE


def test_a_reversal_before_the_number_is_dialled_is_not_an_answer():
    port = seized(answer_supervision="polarity")
    assert port.handle(HookEvent(abi.DAHDI_EVENT_POLARITY)) == []
    port.handle(ToneHeard("dialtone"))
    assert port.handle(HookEvent(abi.DAHDI_EVENT_POLARITY)) == []
    assert port.state is FxoState.DIALLING


@pytest.mark.parametrize("kind, cause", [("busy", Cause.BUSY),
                                         ("congestion", Cause.CONGESTION)])
def test_busy_and_congestion_before_the_answer_end_the_call(kind, cause):
    port = dialled(answer_supervision="polarity")
    out = port.handle(ToneHeard(kind))
    assert out[0] == SetHook(abi.DAHDI_ONHOOK)
    assert ended(out) == CallEnded(f"{kind} tone", "remote", cause, f"{kind}-tone")


def test_loop_current_dropping_ends_a_call_out():
    port = dialled(answer_supervision="polarity")
    out = port.handle(HookEvent(abi.DAHDI_EVENT_ONHOOK))
    assert ended(out).raw == "loop-current-drop" and ended(out).by == "remote"
    assert out[0] == SetHook(abi.DAHDI_ONHOOK) and port.state is FxoState.IDLE


@pytest.mark.parametrize("stage", ["seizing", "dialling", "proceeding", "connected"])
def test_hanging_up_goes_on_hook_at_every_stage(stage):
    port = seized(answer_supervision="polarity")
    port.handle(TimerExpired(HOLD_TIMER))
    if stage != "seizing":
        port.handle(ToneHeard("dialtone"))
    if stage in ("proceeding", "connected"):
        port.handle(HookEvent(abi.DAHDI_EVENT_DIALCOMPLETE))
    if stage == "connected":
        port.handle(HookEvent(abi.DAHDI_EVENT_POLARITY))
    out = port.hang_up()
    assert out[0] == SetHook(abi.DAHDI_ONHOOK)
    assert PlayTone(None) in out and Listen(None) in out  # dialling and listening stop
    assert ended(out) == CallEnded("we hung up", "local")
    assert port.state is FxoState.IDLE and port.hang_up() == []


def test_hanging_up_at_once_keeps_the_loop_closed_a_moment():
    port = seized()
    out = port.hang_up()
    assert SetHook(abi.DAHDI_ONHOOK) not in out and ended(out).by == "local"
    assert port.state is FxoState.CLOSING
    assert port.handle(ToneHeard("dialtone")) == [] and port.hang_up() == []
    assert port.handle(TimerExpired(HOLD_TIMER)) == [SetHook(abi.DAHDI_ONHOOK)]
    assert port.state is FxoState.IDLE


@pytest.mark.parametrize("kwargs, message", [
    ({"dialing": "tone"}, "dialing='tone'; expected 'dtmf' or 'pulse'"),
    ({"answer_supervision": "battery"}, "expected 'polarity' or 'none'"),
    ({"dial_tone_timeout": 0}, "dial_tone_timeout=0; expected seconds above 0"),
])
def test_settings_are_checked(kwargs, message):
    with pytest.raises(ArgumentError, match=message):
        AnalogSettings(**kwargs)


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


def test_dtmf_digits_are_sounded_by_the_kernel_after_what_was_written(loop, tick):
    """L dials "T1#" with DAHDI_DIAL: the far end hears the 60 ms of 1 kHz written before,
    then each digit (the zone's DTMF: each tone at -10 dBm0, 100 ms on and 100 ms off),
    which the test's own detector finds; DIALCOMPLETE comes after the last digit's
    silence. A write during a digit stops the dialling."""
    engine, s, line = loop
    law = "ulaw"
    line.hook(abi.DAHDI_OFFHOOK)
    s.wait_for(abi.DAHDI_EVENT_RINGOFFHOOK)
    s.hook(abi.DAHDI_OFFHOOK)
    engine.sleep(1.0)
    mark, t0 = len(s.heard), engine.time()
    peak = audio.reference_rms(law) * math.sqrt(2) * 10 ** (-10 / 20)
    sine = array.array("h", (round(peak * math.sin(2 * math.pi * 1000 * n / 8000))
                             for n in range(480)))
    written = g711.codec(law).encode(sine)
    for at in range(0, 480, 160):
        engine.run(line.chan.write_frame, written[at:at + 160])
    engine.run(line.chan.dial, "T1#")
    done = line.wait_for(abi.DAHDI_EVENT_DIALCOMPLETE, t0)
    assert done == pytest.approx(0.06 + 2 * 0.2, abs=0.02 + tick)
    engine.sleep(0.2)
    heard = audio.decode(bytes(s.heard[mark:]), law)
    # (each 20 ms frame's 1000, 697, 1209, 941 and 1477 Hz, for a failure's message)
    table = "; ".join(f"{at // 160}: " + " ".join(
        f"{max(-99.0, audio.component_level_dbm0(heard[at:at + 160], freq, law)):.0f}"
        for freq in (1000, 697, 1209, 941, 1477)) for at in range(0, len(heard) - 159, 160))
    assert audio.dtmf_keys(heard, law) == "1#", table
    first = {freq: next(at for at in range(0, len(heard) - 159, 160)
                        if audio.component_level_dbm0(heard[at:at + 160], freq, law) > -15)
             for freq in (1000, 697, 941)}
    assert first[1000] < first[697] < first[941], table
    # the frames that hold the "1" whole, each measured alone: the kernel's oscillator
    # (integer arithmetic) drifts in phase over 100 ms enough to spoil one long window
    frames = [heard[at:at + 160] for at in range(0, len(heard) - 159, 160)]
    levels = [[audio.component_level_dbm0(frame, freq, law) for freq in (697, 1209)]
              for frame in frames]
    whole = [pair for pair in levels if min(pair) > -11.5]
    assert len(whole) >= 3, table
    assert all(level == pytest.approx(-10, abs=1) for pair in whole for level in pair), table
    # a write during a digit stops the dialling: no DIALCOMPLETE, the rest unsaid
    t1 = engine.time()
    engine.run(line.chan.dial, "T555")
    engine.sleep(0.05)
    engine.run(line.chan.write_frame, bytes([0xFF]) * 160)
    engine.sleep(1.0)
    assert "DIALCOMPLETE" not in line.names(t1)
    assert not engine.run(line.chan.dialing)


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


# =========================================================================== calls
@dataclasses.dataclass
class World:
    engine: Engine
    backend: DahdiBackend
    exchange: Exchange
    clock: MediaClock

    def channel(self, route: str = "fxo") -> UASCallChannel:
        return UASCallChannel(self.engine, backend=self.backend, route=route,
                              media_clock=self.clock, media_dir=MEDIA)

    def call(self, number: str = NUMBER, **kwargs: Any) -> tuple[UASCallChannel, float]:
        channel = self.channel()
        t0 = self.engine.time()
        channel.call(number, **kwargs)
        return channel, self.engine.time() - t0

    def configure(self, **settings: Any) -> None:
        """Other settings for our port from now on (between calls)."""
        analog = AnalogSettings(zone=self.exchange.zone, **settings)

        def apply() -> None:
            self.backend.analog = analog
            for port in self.backend.ports:
                port.settings = port.machine.settings = analog

        self.engine.run(apply)

    def states(self, channel: UASCallChannel) -> list[State]:
        """The states ``channel`` goes through from now on."""
        seen: list[State] = []
        channel.listeners.append(
            lambda _, event: seen.append(event.state) if isinstance(event, StateChanged)
            else None)
        return seen

    def released(self) -> bool:
        """The exchange has seen our port go back on hook (its 1.25 s debounce)."""
        return self.engine.wait_until(lambda: self.exchange.released_at is not None,
                                      3 * T)


@contextlib.contextmanager
def world(engine: Engine, io, conf: str, settings: AnalogSettings):
    backend = DahdiBackend(engine, system_conf=SystemConf.parse(conf), ports=[FXO],
                           analog=settings, io=io)
    clock = MediaClock(engine)
    exchange = Exchange(engine, EXCHANGE, clock=clock, io=io, zone=settings.zone)

    def start():
        backend.start()
        exchange.start()

    engine.run(start)
    engine.sleep(2.1)  # an open hangs the line up, and rings are not reported for 2 s
    yield World(engine, backend, exchange, clock)


@pytest.fixture(params=["none"])
def loc(request, rig):
    """Our FXO port on the loc pair, on either rig (lines without polarity)."""
    with rig.engine() as engine:
        conf = analog_loop_conf(4)
        with world(engine, rig.kernel(engine, conf), conf,
                   AnalogSettings(answer_supervision=request.param)) as lines:
            yield lines


@pytest.fixture
def cards():
    """Our FXO port on the simulator's analog cards, answer by polarity reversal."""
    with analog_cards() as (engine, kernel), world(
            engine, kernel, analog_loop_conf(4, dynamic=False),
            AnalogSettings(answer_supervision="polarity")) as lines:
        yield lines


def hears_level(world: World, since: int) -> float:
    return audio.level_dbm0(world.exchange.heard_pcm(since), "ulaw")


def check_audio_both_ways(world: World, channel: UASCallChannel) -> None:
    """Our prompt reaches the called party; the keys it presses reach get_digits."""
    exchange = world.exchange
    mark = len(exchange.heard)
    assert channel.FilePlayer.play("goodbye.wav") is channel.FilePlayer.Cause.NORMAL
    world.engine.sleep(0.3)
    assert hears_level(world, mark) > -40
    world.engine.run(exchange.press, "42#")  # the called party's keypad
    assert channel.DTMFDetector.get_digits(end="#", seconds_predigits_timeout=T,
                                           seconds_interdigit_timeout=T) == "42"


def test_dtmf_call_out_answered_audio_both_ways_and_our_hang_up(loc):
    """Without supervision the call is ANSWERED when the last digit is out; the exchange
    heard every digit in DTMF; its reversal at the answer fails (ENOTTY: a loc span)."""
    exchange = loc.exchange
    exchange.numbers[NUMBER] = Destination("answer", answer_after=1.0)
    channel, took = loc.call(seconds_timeout=30)
    assert channel.state() is State.ANSWERED
    assert channel.Details.direction == "outbound"
    assert channel.Details.channel == f"FXO port channel {FXO} (ulaw)"
    # off hook, 0.7 s dial tone delay, 0.3 s to hear it, 7 digits of 160 ms
    assert 0.7 + 0.3 + 7 * 0.16 - 0.2 < took < 0.7 + 0.3 + 7 * 0.16 + 0.6
    assert loc.engine.wait_until(lambda: exchange.state == "connected", T)
    assert exchange.dialled == NUMBER
    assert exchange.digits_heard == [(d, "dtmf") for d in NUMBER]
    assert exchange.polarity_error is not None
    assert exchange.polarity_error.errno == errno.ENOTTY
    check_audio_both_ways(loc, channel)
    assert channel.hang_up() is State.IDLE and channel.cause() is Cause.NORMAL
    assert loc.released() and exchange.state == "idle"


def test_pulse_call_out(loc):
    loc.configure(dialing="pulse")
    exchange = loc.exchange
    exchange.numbers["203"] = Destination("answer", answer_after=0.5)
    channel, took = loc.call("203", seconds_timeout=30)
    assert channel.state() is State.ANSWERED
    assert exchange.dialled == "203"
    assert exchange.digits_heard == [("2", "pulse"), ("0", "pulse"), ("3", "pulse")]
    # dial tone after 1 s, then 15 pulses of 100 ms and three 750 ms pauses
    assert took == pytest.approx(1.0 + 1.5 + 3 * 0.75, abs=0.4)
    assert loc.engine.wait_until(lambda: exchange.state == "connected", T)
    check_audio_both_ways(loc, channel)
    channel.hang_up()
    assert loc.released()


def test_a_dead_line_ends_the_call_out_of_order(loc):
    loc.exchange.dead = True
    channel, took = loc.call(seconds_timeout=30)
    assert channel.state() is State.IDLE
    assert channel.cause() is Cause.OUTOFORDER
    assert channel.Details.raw_cause == "no-dial-tone"
    assert took == pytest.approx(5.0, abs=0.3)  # the dial tone timeout
    assert loc.exchange.seized_at is not None and loc.released()
    again = loc.channel()  # the port is free again
    loc.exchange.dead = False
    loc.exchange.numbers[NUMBER] = Destination("busy")
    assert again.call(NUMBER, seconds_timeout=30) is State.ANSWERED


@pytest.mark.parametrize("action, cause", [("busy", Cause.BUSY),
                                           ("congestion", Cause.CONGESTION)])
def test_busy_and_congestion_without_supervision(loc, action, cause):
    """Answered by assumption once dialled; the tone then ends the call with its cause."""
    loc.exchange.numbers[NUMBER] = Destination(action)
    channel, _ = loc.call(seconds_timeout=30)
    assert channel.state() is State.ANSWERED
    assert channel.wait_for_idle(3 * T) is State.IDLE
    assert channel.cause() is cause and channel.Details.raw_cause == f"{action}-tone"
    assert loc.released()


def test_an_unknown_number_gets_congestion(loc):
    channel, _ = loc.call("999", seconds_timeout=30)
    assert channel.wait_for_idle(3 * T) is State.IDLE
    assert channel.cause() is Cause.CONGESTION
    assert loc.exchange.dialled == "999"


def test_the_far_end_hanging_up_ends_the_call_normally(loc):
    loc.exchange.numbers[NUMBER] = Destination("answer", answer_after=0.5)
    channel, _ = loc.call(seconds_timeout=30)
    assert loc.engine.wait_until(lambda: loc.exchange.state == "connected", T)
    loc.engine.run(loc.exchange.hang_up)
    assert channel.wait_for_idle(T) is State.IDLE
    assert channel.cause() is Cause.NORMAL
    assert channel.Details.raw_cause == "loop-current-drop"


def test_the_callers_timeout_puts_the_line_back_on_hook(loc):
    """call(seconds_timeout) before anything answers: TIMEOUT, and the port on hook."""
    loc.exchange.dead = True
    channel, took = loc.call(seconds_timeout=2)
    assert channel.state() is State.IDLE and channel.cause() is Cause.TIMEOUT
    assert took == pytest.approx(2.0, abs=0.3)
    assert loc.released()


def test_a_line_without_reversals_never_answers_with_polarity_supervision(loc):
    """The vm rig's lines (loc spans) give no reversal: with "polarity" supervision a call
    rings (ringback heard: RING_OUTGOING) and is answered unseen; the caller's timeout
    ends it with NOANSWER, and the port goes back on hook."""
    loc.configure(answer_supervision="polarity")
    loc.exchange.numbers[NUMBER] = Destination("answer", answer_after=4.0)
    channel = loc.channel()
    states = loc.states(channel)
    assert channel.call(NUMBER, seconds_timeout=10) is State.IDLE
    assert states == [State.CALL_OUTGOING, State.RING_OUTGOING, State.IDLE]
    assert channel.cause() is Cause.NOANSWER
    assert loc.exchange.answered_at is not None  # the called party did answer
    assert loc.released()


def test_routes_to_fxo_ports(loc):
    loc.exchange.dead = True
    first = loc.channel(f"fxo:{FXO}")
    assert first.start_call(NUMBER) is State.CALL_OUTGOING
    second = loc.channel()
    assert second.call(NUMBER, seconds_timeout=1) is State.IDLE
    assert second.cause() is Cause.NOCHANNELS
    assert second.Details.raw_cause == "no idle FXO port for a call to '5551000'"
    other = loc.channel("fxo:7")  # no FXO port on channel 7
    assert other.call(NUMBER) is State.IDLE and other.cause() is Cause.NOCHANNELS
    assert other.Details.raw_cause.endswith("(channel 7)")
    first.hang_up()
    assert loc.released()
    loc.configure(dialing="pulse")
    pulse = loc.channel()
    with pytest.raises(ArgumentError, match="pulse dialling carries digits 0-9 only"):
        pulse.call("12#")
    assert pulse.state() is State.IDLE
    assert loc.backend.ports[0].idle  # nothing was seized


# --------------------------------------------------------------------------- analog cards
def test_ringback_then_the_answer_by_polarity(cards):
    exchange = cards.exchange
    exchange.numbers[NUMBER] = Destination("answer", answer_after=4.0)
    channel = cards.channel()
    assert channel.start_call(NUMBER) is State.CALL_OUTGOING
    assert cards.engine.wait_until(lambda: channel.state() is State.RING_OUTGOING, 3 * T)
    ringing_at = cards.engine.time()
    assert channel.wait_for_answer(T) is State.ANSWERED
    assert exchange.polarity_reversed and exchange.polarity_error is None
    assert cards.engine.time() - exchange.answered_at == pytest.approx(0.064, abs=0.03)
    assert exchange.answered_at - ringing_at == pytest.approx(1.0, abs=0.1)  # ringback at 3 s
    check_audio_both_ways(cards, channel)
    cards.engine.run(exchange.hang_up)
    assert channel.wait_for_idle(T) is State.IDLE
    assert channel.cause() is Cause.NORMAL
    assert channel.Details.raw_cause == "loop-current-drop"


def test_the_lines_ringback_is_early_media_for_a_listener(cards):
    """What a bridge would do: listen to the leg before the answer. Once the number is
    dialled the leg delivers the line's audio (the exchange's ringback), not before (no
    dial tone), and reports alerting as in band."""
    cards.exchange.numbers[NUMBER] = Destination("ring")
    engine = cards.engine
    events: list = []
    frames: list[bytes] = []

    def place():
        leg = cards.backend.place_call(NUMBER, route="fxo")
        leg.listener = events.append
        leg.listen(lambda frame, law: frames.append(frame))
        return leg

    leg = engine.run(place)
    assert engine.wait_until(lambda: any(isinstance(e, LegAlerting) for e in events), 3 * T)
    assert [e for e in events if isinstance(e, LegAlerting)] == [LegAlerting(True)]
    heard = audio.decode(b"".join(frames), "ulaw")
    assert len(heard) >= 2.5 * 8000  # from the end of dialling: 2 s on, then the pause
    assert audio.component_level_dbm0(heard, 440, "ulaw") > -30  # ringback, 440 + 480 Hz
    assert audio.component_level_dbm0(heard, 480, "ulaw") > -30
    assert audio.component_level_dbm0(heard, 350, "ulaw") < -45  # no dial tone in it
    engine.run(leg.release, Cause.NORMAL)
    assert cards.released()


def test_pulse_dialling_answered_by_polarity(cards):
    cards.configure(dialing="pulse", answer_supervision="polarity")
    cards.exchange.numbers["31"] = Destination("answer", answer_after=1.0)
    channel, _ = cards.call("31", seconds_timeout=30)
    assert channel.state() is State.ANSWERED
    assert cards.exchange.digits_heard == [("3", "pulse"), ("1", "pulse")]
    channel.hang_up()
    assert cards.released()


@pytest.mark.parametrize("action, cause, within", [("busy", Cause.BUSY, 1.5),
                                                   ("congestion", Cause.CONGESTION, 0.8)])
def test_busy_and_congestion_end_the_call_before_any_answer(cards, action, cause, within):
    cards.exchange.numbers[NUMBER] = Destination(action)
    channel, took = cards.call(seconds_timeout=30)
    assert channel.state() is State.IDLE
    assert channel.cause() is cause and channel.Details.raw_cause == f"{action}-tone"
    dialled = 0.7 + 0.3 + 7 * 0.16
    assert dialled < took < dialled + within + 0.3
    assert cards.released()


def test_ringback_and_no_answer_is_noanswer(cards):
    cards.exchange.numbers[NUMBER] = Destination("ring")
    channel = cards.channel()
    states = cards.states(channel)
    t0 = cards.engine.time()
    assert channel.call(NUMBER, seconds_timeout=12) is State.IDLE
    took = cards.engine.time() - t0
    assert states == [State.CALL_OUTGOING, State.RING_OUTGOING, State.IDLE]
    assert channel.cause() is Cause.NOANSWER
    assert took == pytest.approx(12.0, abs=0.1)
    assert cards.released() and cards.exchange.state == "idle"


def test_busy_tone_after_a_real_answer_is_the_far_end_clearing(cards):
    cards.exchange.numbers[NUMBER] = Destination("answer", answer_after=0.5)
    channel, _ = cards.call(seconds_timeout=30)
    assert channel.state() is State.ANSWERED
    cards.engine.run(cards.exchange.tone, "busy")  # cleared, but the loop stays closed
    assert channel.wait_for_idle(T) is State.IDLE
    assert channel.cause() is Cause.NORMAL and channel.Details.raw_cause == "busy-tone"
