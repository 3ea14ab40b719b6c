"""The analog port state machines on their own: fed events, checked for what they do."""

from __future__ import annotations

import pytest

from uascall.dahdi import abi
from uascall.dahdi.analog import (
    CALLERID_TIMER,
    DIGIT_TIMER,
    HOLD_TIMER,
    MIN_ANSWER_HOLD,
    PARKED_TIMER,
    RING_TIMER,
    AnalogSettings,
    CallAlerting,
    CallAnswered,
    CallEnded,
    CallerIdHeard,
    CallOffered,
    CancelTimer,
    CheckHook,
    DigitHeard,
    FxoPort,
    FxoState,
    FxsPort,
    FxsState,
    HookChecked,
    HookEvent,
    Listen,
    PlayTone,
    SendCallerId,
    SetHook,
    StartTimer,
    TimerExpired,
)
from uascall.errors import ArgumentError, LocalProtocolError
from uascall.media.callerid import CallerId

RINGBEGIN = HookEvent(abi.DAHDI_EVENT_RINGBEGIN)
RINGOFFHOOK = HookEvent(abi.DAHDI_EVENT_RINGOFFHOOK)
ONHOOK = HookEvent(abi.DAHDI_EVENT_ONHOOK)
CALLER = CallerId(number="5552000", name="Lab Caller")


def kinds(outputs) -> list[type]:
    return [type(o) for o in outputs]


def offered(outputs) -> CallOffered:
    return next(o for o in outputs if isinstance(o, CallOffered))


# --------------------------------------------------------------------------- FXO
def test_fxo_waits_for_caller_id_after_the_first_ring():
    port = FxoPort()
    assert port.handle(RINGBEGIN) == [StartTimer(RING_TIMER, 8.0)]
    out = port.handle(RINGOFFHOOK)
    assert Listen("callerid") in out and StartTimer(CALLERID_TIMER, 4.0) in out
    out = port.handle(CallerIdHeard(CALLER))
    assert offered(out) == CallOffered(calling="5552000", calling_name="Lab Caller")
    assert port.state is FxoState.OFFERED and Listen(None) in out


@pytest.mark.parametrize("instead", ["second ring", "timeout"])
def test_fxo_offers_without_caller_id_when_none_comes(instead):
    port = FxoPort()
    port.handle(RINGBEGIN)
    port.handle(RINGOFFHOOK)
    out = (port.handle(RINGBEGIN) if instead == "second ring"
           else port.handle(TimerExpired(CALLERID_TIMER)))
    assert offered(out) == CallOffered() and Listen(None) in out
    assert port.handle(CallerIdHeard(CALLER)) == []  # too late: ignored


def test_fxo_without_caller_id_offers_at_the_first_ring():
    port = FxoPort(AnalogSettings(callerid=None))
    assert CallOffered() in port.handle(RINGBEGIN)


def test_fxo_answer_hangup_and_far_end_clearing():
    port = FxoPort()
    port.handle(RINGBEGIN)
    port.handle(TimerExpired(CALLERID_TIMER))  # not in RINGING after RINGOFFHOOK: ignored
    port.handle(RINGOFFHOOK)
    port.handle(TimerExpired(CALLERID_TIMER))
    out = port.answer()
    assert out == [SetHook(abi.DAHDI_OFFHOOK), CancelTimer(RING_TIMER), Listen(None),
                   StartTimer(HOLD_TIMER, MIN_ANSWER_HOLD), CallAnswered()]
    assert port.handle(RINGBEGIN) == [] and port.handle(RINGOFFHOOK) == []
    out = port.handle(ONHOOK)
    assert out[:2] == [SetHook(abi.DAHDI_ONHOOK), CancelTimer(HOLD_TIMER)]
    assert isinstance(out[2], CallEnded)
    assert out[2].by == "remote" and port.state is FxoState.IDLE
    with pytest.raises(LocalProtocolError, match=r"answer\(\) on FXO port fxo: the port is "
                                                 r"IDLE; expected OFFERED"):
        port.answer()


def offered_and_answered() -> FxoPort:
    port = FxoPort(AnalogSettings(callerid=None))
    port.handle(RINGBEGIN)
    port.answer()
    return port


def test_fxo_hang_up_right_after_the_answer_keeps_the_loop_closed_a_moment():
    """An off-hook glitch shorter than a signalling tick never reaches the exchange (the
    real driver loses it): the loop stays closed MIN_ANSWER_HOLD, and then opens."""
    port = offered_and_answered()
    out = port.hang_up()
    assert [type(o) for o in out] == [CallEnded] and out[0].by == "local"
    assert port.state is FxoState.CLOSING
    assert port.handle(RINGBEGIN) == [] and port.handle(RINGOFFHOOK) == []  # no new call
    assert port.hang_up() == []
    assert port.handle(TimerExpired(HOLD_TIMER)) == [SetHook(abi.DAHDI_ONHOOK)]
    assert port.state is FxoState.IDLE
    # the exchange clearing meanwhile ends the wait at once, with no second CallEnded
    port = offered_and_answered()
    port.hang_up()
    assert port.handle(ONHOOK) == [SetHook(abi.DAHDI_ONHOOK), CancelTimer(HOLD_TIMER)]
    assert port.state is FxoState.IDLE


def test_fxo_hang_up_after_the_hold_opens_the_loop_at_once():
    port = offered_and_answered()
    assert port.handle(TimerExpired(HOLD_TIMER)) == []
    out = port.hang_up()
    assert out[0] == SetHook(abi.DAHDI_ONHOOK) and out[1].by == "local"
    assert port.state is FxoState.IDLE


def test_fxo_declined_call_rings_out_silently():
    port = FxoPort(AnalogSettings(callerid=None))
    port.handle(RINGBEGIN)
    out = port.hang_up()
    assert next(o for o in out if isinstance(o, CallEnded)).by == "local"
    assert SetHook not in kinds(out)  # stays on hook
    assert port.handle(RINGBEGIN) == [StartTimer(RING_TIMER, 8.0)]
    assert port.handle(TimerExpired(RING_TIMER)) == [Listen(None), CancelTimer(CALLERID_TIMER)]
    assert port.state is FxoState.IDLE


def test_fxo_caller_giving_up_is_a_ring_timeout():
    port = FxoPort(AnalogSettings(callerid=None, ring_timeout=6.5))
    out = port.handle(RINGBEGIN)
    assert StartTimer(RING_TIMER, 6.5) in out
    out = port.handle(TimerExpired(RING_TIMER))
    ended = [o for o in out if isinstance(o, CallEnded)]
    assert ended and ended[0].by == "remote" and "rings stopped" in ended[0].reason
    ringing = FxoPort(AnalogSettings(callerid=None))
    ringing.handle(RINGBEGIN)
    with pytest.raises(LocalProtocolError, match=r"place_call\(\) on FXO port fxo: the "
                                                 r"port is OFFERED; expected IDLE"):
        ringing.place_call("123")  # a call out while a call comes in


# --------------------------------------------------------------------------- FXS
def test_fxs_call_to_the_phone_with_caller_id_after_the_first_ring():
    port = FxsPort()
    assert port.place_call(CALLER) == [SetHook(abi.DAHDI_RING), CallAlerting()]
    assert port.handle(HookEvent(abi.DAHDI_EVENT_RINGEROFF)) == [SendCallerId(CALLER)]
    assert port.handle(HookEvent(abi.DAHDI_EVENT_RINGEROFF)) == []  # once
    out = port.handle(RINGOFFHOOK)
    assert out == [SetHook(abi.DAHDI_OFFHOOK), PlayTone(None), CallAnswered()]
    with pytest.raises(LocalProtocolError, match="the port is CONNECTED"):
        port.place_call()


def test_fxs_without_caller_id_sends_none():
    port = FxsPort(AnalogSettings(callerid=None))
    port.place_call(CALLER)
    assert port.handle(HookEvent(abi.DAHDI_EVENT_RINGEROFF)) == []


def test_fxs_collects_digits_until_the_end_digit_or_a_pause():
    port = FxsPort(AnalogSettings(digit_timeout=3.0, first_digit_timeout=9.0))
    out = port.handle(RINGOFFHOOK)  # the phone goes off hook by itself
    assert out == [SetHook(abi.DAHDI_OFFHOOK), PlayTone("dial"), Listen("dtmf"),
                   StartTimer(DIGIT_TIMER, 9.0)]
    assert port.handle(DigitHeard("5")) == [PlayTone(None), StartTimer(DIGIT_TIMER, 3.0)]
    port.handle(HookEvent(abi.DAHDI_EVENT_PULSEDIGIT | ord("1")))  # a rotary digit
    assert offered(port.handle(DigitHeard("#"))) == CallOffered(called="51")
    assert port.state is FxsState.OFFERED
    assert port.ringback() == [PlayTone("ringback")]
    assert port.answer() == [PlayTone(None), CallAnswered()]


def test_fxs_number_complete_by_count_or_timeout():
    port = FxsPort(AnalogSettings(max_digits=3))
    port.handle(RINGOFFHOOK)
    port.handle(DigitHeard("1"))
    port.handle(DigitHeard("2"))
    assert offered(port.handle(DigitHeard("3"))).called == "123"
    hotline = FxsPort()
    hotline.handle(RINGOFFHOOK)
    assert offered(hotline.handle(TimerExpired(DIGIT_TIMER))).called == ""


def test_fxs_clearing_parks_until_the_phone_is_on_hook():
    port = FxsPort()
    port.handle(RINGOFFHOOK)
    port.handle(TimerExpired(DIGIT_TIMER))
    out = port.hang_up()
    assert SetHook(abi.DAHDI_ONHOOK) in out and StartTimer(PARKED_TIMER, 1.0) in out
    assert port.state is FxsState.PARKED
    with pytest.raises(LocalProtocolError, match="the phone is off hook"):
        port.place_call()
    assert port.handle(TimerExpired(PARKED_TIMER)) == [CheckHook()]
    assert port.handle(HookChecked(off_hook=True)) == [StartTimer(PARKED_TIMER, 1.0)]
    assert port.handle(HookChecked(off_hook=False)) == [CancelTimer(PARKED_TIMER)]
    assert port.state is FxsState.IDLE


def test_fxs_phone_hanging_up_ends_the_call():
    port = FxsPort()
    port.place_call()
    port.handle(RINGOFFHOOK)
    out = port.handle(ONHOOK)
    assert isinstance(out[-1], CallEnded) and out[-1].by == "remote"
    assert SetHook(abi.DAHDI_ONHOOK) in out and port.state is FxsState.IDLE
    assert port.handle(HookEvent(abi.DAHDI_EVENT_WINKFLASH)) == []
    ringing = FxsPort()
    ringing.place_call()
    assert [type(o) for o in ringing.hang_up()] == [SetHook, PlayTone, CallEnded]


@pytest.mark.parametrize("kwargs, message", [
    ({"ring_timeout": 0}, "ring_timeout=0; expected seconds above 0"),
    ({"callerid": "dtmf"}, "expected 'bell', 'etsi' or None"),
    ({"max_digits": 0}, "max_digits=0; expected 1..64"),
    ({"end_digit": "5"}, "end_digit='5'"),
])
def test_settings_are_checked(kwargs, message):
    with pytest.raises(ArgumentError, match=message):
        AnalogSettings(**kwargs)
