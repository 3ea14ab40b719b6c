"""The PRI span driver against a real libpri instance in NETWORK mode on the simulated loop.

``loop.cpe`` is the span under test (user side); ``loop.net`` is the exchange. What crossed
the D-channel is checked on the wire too, decoded independently of libpri by
uascall.dahdi.q931 from the simulated kernel's frame tap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading

import pytest

from uascall.dahdi import abi, libpri, q931
from uascall.dahdi.config import ConfigError, SpanLayout
from uascall.dahdi.pri import (
    CallAlerting,
    CallCleared,
    CallConnected,
    CallProceeding,
    CallProgress,
    CallState,
    PriSpan,
)
from uascall.engine import Engine, MonotonicClock, VirtualClock
from uascall.errors import ArgumentError, Error, LocalProtocolError
from uascall.sim.farend import PriLoop

from .helpers import T, Wire, drop_message


class Events:
    """Call events per call, recorded on the engine thread."""

    def __init__(self) -> None:
        self.by_call: dict[object, list] = {}

    def __call__(self, call, event) -> None:
        self.by_call.setdefault(call, []).append(event)

    def of(self, call) -> list:
        return list(self.by_call.get(call, []))

    def has(self, call, kind) -> bool:
        return any(isinstance(e, kind) for e in self.of(call))

    def take_calls(self, span: PriSpan) -> list:
        """Record the events of every call ``span`` is offered; the list fills with them."""
        offered: list = []

        def on_incoming(call) -> None:
            call.listeners.append(self)
            offered.append(call)

        span.on_incoming = on_incoming
        return offered


@pytest.fixture(params=["E1", "T1"])
def kind(request):
    return request.param


def sim_loop(engine, kind="E1", **kwargs):
    """A loop on a simulated kernel of its own, for what only the simulator can do
    (alarms, damaged frames)."""
    loop = PriLoop.create(engine, kind, **kwargs)
    assert engine.wait_until(lambda: loop.up, T), "D-channels did not come up"
    return loop


@pytest.fixture
def engine(rig):
    # real time: libpri's timers are wall-clock ones
    with rig.engine(virtual=False) as engine:
        yield engine


@pytest.fixture
def sim_engine():
    with Engine(MonotonicClock()) as engine:
        yield engine


def setup(engine, loop):
    events = Events()
    incoming = events.take_calls(loop.cpe)
    return engine, loop, events, incoming, Wire(loop.tap, loop.cpe.layout.dchannel)


@pytest.fixture
def pri(rig, engine, kind):
    """A looped pair on the rig (the simulator or the real driver)."""
    return setup(engine, rig.pri_loop(engine, kind))


@pytest.fixture
def sim_pri(sim_engine, kind):
    """The same on a simulated kernel of its own, with its test hooks at loop.kernel."""
    return setup(sim_engine, sim_loop(sim_engine, kind))


def dial(engine, loop, events, called="5551000", calling="5552000", name="Lab Caller"):
    def place():
        call = loop.net.call(called, calling=calling, calling_name=name)
        call.listeners.append(events)
        return call
    return engine.run(place)


def ring_in(pri, **kwargs):
    """The exchange calls us; returns (its call, ours) once ours has arrived."""
    engine, loop, events, incoming, _wire = pri
    before = len(incoming)
    far = dial(engine, loop, events, **kwargs)
    assert engine.wait_until(lambda: len(incoming) > before, T)
    return far, incoming[-1]


def test_dchannels_come_up_and_link_is_established(pri):
    _engine, loop, _events, _incoming, _wire = pri
    assert loop.cpe.up and loop.net.up
    assert repr(loop.cpe).endswith("up calls=0>")


def test_incoming_call_proceeding_alerting_pi8_connect_and_far_end_clears(pri, kind):
    engine, loop, events, incoming, wire = pri
    far = dial(engine, loop, events)
    assert engine.wait_until(lambda: incoming and events.has(far, CallProceeding), T)
    ours = incoming[0]
    assert (ours.called, ours.calling, ours.calling_name) == ("5551000", "5552000",
                                                              "Lab Caller" if kind == "E1"
                                                              else ours.calling_name)
    assert ours.law == ("alaw" if kind == "E1" else "ulaw")
    assert ours.state is CallState.PROCEEDING and ours.chanpos == far.chanpos

    engine.run(ours.alerting, True)
    assert engine.wait_until(lambda: events.has(far, CallAlerting), T)
    assert [e for e in events.of(far) if isinstance(e, CallAlerting)] == [CallAlerting(True)]
    alerting = wire.find("cpe", "ALERTING")
    assert alerting.progress_descriptions == [8]

    engine.run(ours.answer)
    assert engine.wait_until(lambda: events.has(far, CallConnected)
                             and events.has(ours, CallConnected), T)
    assert ours.state is CallState.CONNECTED and far.state is CallState.CONNECTED

    engine.run(far.hangup, libpri.PRI_CAUSE_NORMAL_CLEARING)
    assert engine.wait_until(lambda: events.has(ours, CallCleared)
                             and not loop.cpe.calls and not loop.net.calls, T)
    assert events.of(ours)[-1] == CallCleared(16, "remote")
    assert events.of(far)[-1] == CallCleared(16, "local")
    assert wire.names() == ["SETUP", "CALL PROCEEDING", "ALERTING", "CONNECT",
                            "CONNECT ACKNOWLEDGE", "DISCONNECT", "RELEASE", "RELEASE COMPLETE"]
    setup = wire.find("net", "SETUP")
    assert setup.layer1_law == ours.law
    assert setup.called_number == "5551000" and setup.calling_number == "5552000"
    assert wire.find("net", "DISCONNECT").cause == 16


def test_alerting_without_early_media_has_no_progress_indicator(pri):
    engine, loop, events, incoming, wire = pri
    far = dial(engine, loop, events)
    assert engine.wait_until(lambda: bool(incoming), T)
    engine.run(incoming[0].alerting, False)
    assert engine.wait_until(lambda: events.has(far, CallAlerting), T)
    assert CallAlerting(False) in events.of(far)
    assert wire.find("cpe", "ALERTING").progress_descriptions == []
    assert not far.inband


def test_progress_carries_pi8_and_the_cause(pri):
    engine, loop, events, incoming, wire = pri
    far = dial(engine, loop, events)
    assert engine.wait_until(lambda: bool(incoming), T)
    engine.run(incoming[0].progress)
    engine.run(incoming[0].alerting, True)
    assert engine.wait_until(lambda: events.has(far, CallAlerting), T)
    assert CallProgress(True, None) in events.of(far)
    assert wire.find("cpe", "PROGRESS").progress_descriptions == [8]
    assert wire.names("cpe") == ["CALL PROCEEDING", "PROGRESS", "ALERTING"]


@pytest.mark.parametrize("cause", [17, 21, 16])
def test_clearing_from_our_side_carries_the_cause(pri, cause):
    engine, loop, events, _incoming, wire = pri
    far, ours = ring_in(pri)
    engine.run(ours.alerting, True)
    engine.run(ours.hangup, cause)
    assert ours.state in (CallState.CLEARING, CallState.CLEARED)
    assert engine.wait_until(lambda: events.has(far, CallCleared) and ours.cleared
                             and not loop.cpe.calls and not loop.net.calls, T)
    assert events.of(far)[-1] == CallCleared(cause, "remote")
    assert events.of(ours)[-1] == CallCleared(cause, "local")
    assert wire.find("cpe", "DISCONNECT").cause == cause


def test_next_call_placed_from_a_cleared_listener_reuses_the_channel(pri):
    """Our RELEASE COMPLETE must reach the far end before a SETUP placed in reaction to it."""
    engine, loop, events, incoming, _wire = pri
    loop.cpe.on_incoming = lambda call: (call.listeners.append(events), incoming.append(call),
                                         call.answer())
    follow_up = []

    def redial(call, event):
        if isinstance(event, CallCleared) and not follow_up:
            follow_up.append(loop.net.call("5551000", calling="5552000"))
            follow_up[0].listeners.append(events)

    first = dial(engine, loop, events)
    assert engine.wait_until(lambda: first.state is CallState.CONNECTED, T)
    first.listeners.append(redial)
    engine.run(first.hangup, 16)
    assert engine.wait_until(lambda: follow_up and events.has(follow_up[0], CallConnected), T)
    assert follow_up[0].chanpos == first.chanpos


def test_outgoing_call_the_other_way(pri):
    engine, loop, events, _incoming, wire = pri
    theirs = events.take_calls(loop.net)

    def place():
        call = loop.cpe.call("112", calling="5551000")
        call.listeners.append(events)
        return call

    ours = engine.run(place)
    assert engine.wait_until(lambda: theirs and events.has(ours, CallProceeding), T)
    far = theirs[0]
    assert far.called == "112" and far.calling == "5551000" and far.chanpos == ours.chanpos
    engine.run(far.alerting, True)
    assert engine.wait_until(lambda: events.has(ours, CallAlerting), T)
    assert ours.inband and ours.state is CallState.ALERTING
    engine.run(far.answer)
    assert engine.wait_until(lambda: ours.state is CallState.CONNECTED
                             and far.state is CallState.CONNECTED, T)
    engine.run(ours.hangup, 16)
    assert engine.wait_until(lambda: far.cleared and ours.cleared and not loop.cpe.calls, T)
    assert events.of(far)[-1] == CallCleared(16, "remote")
    assert wire.find("cpe", "SETUP").channel == ours.chanpos


@pytest.mark.parametrize("connect_ack_lost", [False, True])
def test_the_network_side_is_connected_when_it_answers(pri, connect_ack_lost):
    """Q.931 5.1.8: the user need not acknowledge the network's CONNECT, so on our NETWORK
    side answer() connects at once; a CONNECT ACKNOWLEDGE that comes anyway changes nothing."""
    engine, loop, events, _incoming, wire = pri
    theirs = events.take_calls(loop.net)
    if connect_ack_lost:
        loop.tap.frame_filter = drop_message("CONNECT ACKNOWLEDGE")
    user_side = engine.run(loop.cpe.call, "5551000", calling="5552000")
    assert engine.wait_until(lambda: bool(theirs), T)
    network_side = theirs[0]
    engine.run(network_side.answer)
    assert network_side.state is CallState.CONNECTED
    assert events.of(network_side).count(CallConnected()) == 1
    assert engine.wait_until(lambda: user_side.state is CallState.CONNECTED, T)
    engine.sleep(0.2)  # time for a CONNECT ACKNOWLEDGE, if one crosses
    assert ("CONNECT ACKNOWLEDGE" in wire.names("cpe")) is not connect_ack_lost
    if connect_ack_lost:
        # Layer 2 keeps retransmitting it (and holds back what follows): let it through,
        # late
        loop.tap.frame_filter = None
        assert engine.wait_until(lambda: "CONNECT ACKNOWLEDGE" in wire.names("cpe"), T)
    assert events.of(network_side).count(CallConnected()) == 1
    assert network_side.state is CallState.CONNECTED
    engine.run(network_side.hangup, 16)
    assert engine.wait_until(lambda: user_side.cleared and network_side.cleared, T)


def test_bchannel_bytes_cross_byte_exact_both_ways(pri):
    engine, _loop, _events, _incoming, _wire = pri
    far, ours = ring_in(pri)
    engine.run(ours.answer)
    assert engine.wait_until(lambda: ours.state is CallState.CONNECTED, T)
    heard = {"far": bytearray(), "ours": bytearray()}
    engine.run(lambda: (ours.open_media(), far.open_media()))
    engine.run(ours.on_media, heard["ours"].extend)
    engine.run(far.on_media, heard["far"].extend)
    to_far = bytes((i * 7 + 3) % 256 for i in range(160 * 4))
    to_us = bytes((i * 11 + 5) % 256 for i in range(160 * 4))

    def send():
        for i in range(0, len(to_far), 160):
            assert ours.media.write_frame(to_far[i:i + 160]) == 160
            assert far.media.write_frame(to_us[i:i + 160]) == 160

    engine.run(send)
    assert engine.wait_until(lambda: to_far in heard["far"] and to_us in heard["ours"], T)


def test_operations_in_the_wrong_state_are_refused_and_change_nothing(pri):
    engine, loop, events, incoming, _wire = pri
    dial(engine, loop, events)
    assert engine.wait_until(lambda: bool(incoming), T)
    ours = incoming[0]

    def answer_then_alert():
        ours.answer()
        try:
            ours.alerting(True)
        finally:
            assert ours.state is CallState.CONNECTING  # unchanged by the refused step

    with pytest.raises(LocalProtocolError, match=r"alerting\(\) .* CONNECTING; expected "
                                                 r"OFFERED or PROCEEDING"):
        engine.run(answer_then_alert)
    engine.run(ours.hangup, 16)
    engine.run(ours.hangup, 16)  # once clearing, hanging up again does nothing


def test_red_alarm_clears_the_spans_calls_with_a_cause(sim_pri):
    engine, loop, events, _incoming, _wire = sim_pri
    far, ours = ring_in(sim_pri)
    engine.run(ours.answer)
    engine.run(ours.open_media)
    assert engine.wait_until(lambda: ours.state is CallState.CONNECTED, T)
    span_events = []
    loop.cpe.listeners.append(span_events.append)
    engine.run(loop.kernel.set_alarm, 1, abi.DAHDI_ALARM_RED)
    assert engine.wait_until(lambda: ours.cleared, T)
    assert events.of(ours)[-1] == CallCleared(libpri.PRI_CAUSE_NETWORK_OUT_OF_ORDER, "span")
    assert ours.media is None and not loop.cpe.calls
    assert span_events[0].kind == "alarm" and span_events[0].alarms & abi.DAHDI_ALARM_RED
    assert loop.net.alarms == abi.DAHDI_ALARM_YELLOW  # the far end sees a remote alarm
    with pytest.raises(Error, match=r"the span is in alarm \(RED\)"):
        engine.run(loop.cpe.call, "123")
    engine.run(loop.kernel.set_alarm, 1, 0)
    assert engine.wait_until(lambda: loop.cpe.alarms == 0 and loop.up, 10)
    del far


def test_dchannel_loss_clears_calls_with_a_cause_and_the_link_recovers(rig, engine):
    timers = {"T200": 100, "T203": 300, "N200": 2, "T309": 300}
    loop = rig.pri_loop(engine, "E1", timers=timers)
    events = Events()
    incoming = events.take_calls(loop.cpe)
    answered = dial(engine, loop, events)
    ringing = dial(engine, loop, events, called="5551001")
    assert engine.wait_until(lambda: len(incoming) == 2, T)
    engine.run(incoming[0].answer)
    engine.run(incoming[1].alerting, True)
    assert engine.wait_until(lambda: incoming[0].state is CallState.CONNECTED, T)
    engine.run(loop.tap.cut, loop.cpe.layout.dchannel)
    assert engine.wait_until(lambda: all(c.cleared for c in incoming), 10)
    for call in incoming:
        assert events.of(call)[-1] == CallCleared(libpri.PRI_CAUSE_DESTINATION_OUT_OF_ORDER,
                                                  "span")
    # the exchange's side finds out by its own timers, a moment apart in real time
    assert engine.wait_until(lambda: answered.cleared and ringing.cleared, T)
    engine.run(loop.tap.cut, loop.cpe.layout.dchannel, False)
    assert engine.wait_until(lambda: loop.up, 10)
    again = dial(engine, loop, events)
    assert engine.wait_until(lambda: len(incoming) == 3 and events.has(again, CallProceeding),
                             T)


def test_restart_from_the_far_end_clears_the_call_on_that_channel(pri):
    engine, loop, events, incoming, _wire = pri
    far = dial(engine, loop, events)
    assert engine.wait_until(lambda: bool(incoming), T)
    engine.run(loop.net.restart, far.chanpos)
    assert engine.wait_until(lambda: incoming[0].cleared, T)
    assert events.of(incoming[0])[-1] == CallCleared(41, "span")
    assert far.cleared and not loop.cpe.calls and not loop.net.calls


def ui_frame(message: q931.Message | bytes) -> bytes:
    """A Q.931 message in an unnumbered frame: it reaches Q.931 without Q.921 sequencing."""
    info = message if isinstance(message, bytes) else message.serialize()
    return q931.LapdFrame(kind="UI", sapi=0, tei=0, cr=1, info=info).serialize()


def test_malformed_q931_is_handled_and_the_rest_goes_on(pri, caplog):
    engine, loop, events, incoming, _wire = pri
    first = dial(engine, loop, events)
    second = dial(engine, loop, events, called="5551001")
    assert engine.wait_until(lambda: len(incoming) == 2, T)
    dchannel = loop.cpe.layout.dchannel
    for message in (
        q931.Message(0x7E, call_reference=77),                      # unknown message type
        q931.Message(q931.MessageType.SETUP, call_reference=78),    # mandatory IEs missing
        bytes.fromhex("08020079050403"),                           # truncated bearer IE
    ):
        engine.run(loop.tap.inject_frame, dchannel, ui_frame(message))
    assert engine.wait_until(lambda: "Unknown Message Type" in caplog.text
                             and "Missing mandatory IE" in caplog.text, T)
    # A DISCONNECT for the second call without its mandatory cause: that call, and only
    # that call, is cleared, with cause 96 (mandatory information element is missing).
    broken = q931.Message(q931.MessageType.DISCONNECT, call_reference=incoming[1].cref)
    engine.run(loop.tap.inject_frame, dchannel, ui_frame(broken))
    assert engine.wait_until(lambda: incoming[1].cleared, T)
    assert events.of(incoming[1])[-1] == CallCleared(96, "remote")
    engine.run(incoming[0].alerting, True)
    assert engine.wait_until(lambda: events.has(first, CallAlerting), T)
    assert incoming[0].state is CallState.ALERTING and not first.cleared
    del second


def test_damaged_frames_and_application_errors_never_kill_the_engine(sim_pri, caplog):
    """A frame with a bad FCS is something only the simulator can make."""
    engine, loop, events, incoming, _wire = sim_pri
    first = dial(engine, loop, events)
    assert engine.wait_until(lambda: bool(incoming), T)
    dchannel = loop.cpe.layout.dchannel
    for frame in (b"", b"\x00", b"\x02\x01\x00\x00", bytes(range(40))):
        engine.run(loop.tap.inject_frame, dchannel, frame)  # Q.921 garbage: L2 recovers
    engine.run(loop.kernel.corrupt_next_frame, loop.net.layout.dchannel)
    engine.run(incoming[0].alerting, True)  # the far end's next frame arrives damaged...
    assert engine.wait_until(lambda: events.has(first, CallAlerting), T)  # ...and is resent
    assert engine.wait_until(lambda: "D-channel event BADFCS" in caplog.text, T)

    def broken_handler(call):
        raise RuntimeError("application bug")

    loop.cpe.on_incoming = broken_handler
    second = dial(engine, loop, events, called="5551002")
    assert engine.wait_until(lambda: events.has(second, CallCleared), T)
    assert events.of(second)[-1] == CallCleared(41, "remote")
    assert "application bug" in caplog.text
    assert first.state is CallState.ALERTING  # the other call never noticed
    assert engine.run(lambda: threading.current_thread().name) == "uascall-engine"


def test_refusals_when_the_far_end_asks_for_a_channel_we_do_not_have(rig, engine):
    loop = rig.pri_loop(engine, "E1")
    events = Events()
    layout = loop.cpe.layout

    def narrow():
        loop.cpe.stop()
        small = SpanLayout(layout.spanno, layout.dchannel, layout.bchannels[10:], "E1",
                           "alaw")
        span = PriSpan(engine, small, node=libpri.Node.CPE, io=loop.tap, name="narrow")
        span.start()
        span.on_incoming = lambda call: None
        return span

    span = engine.run(narrow)
    assert engine.wait_until(lambda: span.up and loop.net.up, T)
    far = dial(engine, loop, events)  # the exchange hunts from B1, which we left out
    assert engine.wait_until(lambda: far.cleared, T)
    assert events.of(far)[-1] == CallCleared(libpri.PRI_CAUSE_IDENTIFIED_CHANNEL_NOTEXIST,
                                             "remote")


def test_a_layout_that_does_not_match_the_kernel_is_refused(rig, engine):
    loop = rig.pri_loop(engine, "E1")
    wrong = SpanLayout(1, 15, (1, 2, 3), "E1", "alaw")
    with pytest.raises(ConfigError, match="channel 15 is CLEAR, expected a D-channel"):
        engine.run(PriSpan(engine, wrong, io=loop.tap).start)
    elsewhere = SpanLayout(1, 16, (1, 2, 40), "E1", "alaw")
    engine.run(loop.cpe.stop)
    with pytest.raises(ConfigError, match="B-channel 40 is CLEAR on span 2"):
        engine.run(PriSpan(engine, elsewhere, io=loop.tap).start)


def test_the_stack_also_runs_in_virtual_time():
    with Engine(VirtualClock()) as engine, engine.actor():
        loop = sim_loop(engine, "E1")
        events = Events()
        incoming = []
        loop.cpe.on_incoming = lambda call: (call.listeners.append(events),
                                             incoming.append(call))
        far = dial(engine, loop, events)
        assert engine.wait_until(lambda: bool(incoming), T)
        engine.run(incoming[0].alerting, True)
        engine.run(incoming[0].answer)
        assert engine.wait_until(lambda: events.has(far, CallConnected), T)
        engine.sleep(3600)  # an hour of virtual time on an idle, established call
        assert far.state is CallState.CONNECTED and loop.up
        engine.run(far.hangup, 16)
        assert engine.wait_until(lambda: incoming[0].cleared, T)


@pytest.mark.parametrize("kind, switch", [
    ("T1", libpri.Switch.DMS100), ("T1", libpri.Switch.LUCENT5E),
    ("T1", libpri.Switch.ATT4ESS), ("T1", libpri.Switch.NI1),
    ("E1", libpri.Switch.QSIG), ("T1", libpri.Switch.EUROISDN_T1),
])
def test_a_call_completes_with_every_switch_type(rig, engine, kind, switch):
    loop = rig.pri_loop(engine, kind, switch=switch)
    events = Events()
    incoming = events.take_calls(loop.cpe)
    far = dial(engine, loop, events)
    assert engine.wait_until(lambda: bool(incoming), T)
    engine.run(incoming[0].alerting, True)
    assert engine.wait_until(lambda: events.has(far, CallAlerting), T)
    assert far.inband
    engine.run(incoming[0].answer)
    assert engine.wait_until(lambda: far.state is CallState.CONNECTED
                             and incoming[0].state is CallState.CONNECTED, T)
    engine.run(incoming[0].hangup, 17)
    assert engine.wait_until(lambda: far.cleared and not loop.net.calls, T)
    assert events.of(far)[-1] == CallCleared(17, "remote")


def test_media_opens_in_audio_mode_with_the_bearers_law(pri, kind):
    engine, loop, events, incoming, _wire = pri
    dial(engine, loop, events)
    assert engine.wait_until(lambda: bool(incoming), T)
    media = engine.run(incoming[0].open_media)
    params = engine.run(media.params)
    assert params.curlaw == (abi.DAHDI_LAW_ALAW if kind == "E1" else abi.DAHDI_LAW_MULAW)
    assert params.channo == incoming[0].channo and media.blocksize == 160
    engine.run(media.set_linear, True)  # refused unless the channel is in audio mode
    assert engine.run(media.buffer_info).numbufs == 4


def test_unknown_events_are_logged_and_a_step_out_of_order_clears_only_its_call(pri, caplog):
    engine, loop, events, incoming, _wire = pri
    first = dial(engine, loop, events)
    second = dial(engine, loop, events, called="5551001")
    assert engine.wait_until(lambda: len(incoming) == 2, T)
    engine.run(loop.cpe._handle, libpri.UnknownEvent(99, "FUTURE_EVENT"))
    assert "FUTURE_EVENT" in caplog.text
    # libpri telling us the far end is ringing on a call the far end placed cannot happen;
    # if it does, that call is cleared with cause 111 (protocol error) and no other.
    victim = incoming[1]
    bogus = libpri.Ringing(call=victim._ref, channel=victim.chanpos, cref=0, progress=-1,
                           progress_mask=0)
    engine.run(loop.cpe._handle, bogus)
    assert engine.wait_until(lambda: victim.cleared, T)
    assert events.of(victim)[-1] == CallCleared(111, "span")
    assert engine.wait_until(lambda: events.has(second, CallCleared), T)
    assert events.of(second)[-1].cause == 111
    assert not incoming[0].cleared and not first.cleared


def test_unknown_timer_names_are_refused(sim_engine):
    engine = sim_engine
    layout = SpanLayout(1, 16, (1, 2), "E1", "alaw")
    with pytest.raises(ConfigError, match="unknown libpri timer 'T999'; expected one of N200"):
        PriSpan(engine, layout, timers={"T999": 100})


@pytest.mark.parametrize("cause", [1, 34, 44, 82])
def test_causes_that_once_meant_release_complete_free_the_channel(pri, cause):
    engine, loop, events, incoming, wire = pri
    far = dial(engine, loop, events)
    assert engine.wait_until(lambda: bool(incoming), T)
    engine.run(incoming[0].alerting, True)
    engine.run(incoming[0].hangup, cause)
    assert engine.wait_until(lambda: far.cleared and incoming[0].cleared
                             and not loop.cpe.calls and not loop.net.calls, T)
    assert events.of(far)[-1] == CallCleared(cause, "remote")
    assert wire.find("cpe", "DISCONNECT").cause == cause  # Q.931 5.3.2: after ALERTING
    if cause == 44:  # we said we cannot use it: the exchange restarts it first (once)
        assert engine.wait_until(lambda: "RESTART" in wire.names("net")
                                 and far.chanpos not in loop.net.out_of_service, T)
        assert wire.find("net", "RESTART").channel == far.chanpos
    again = dial(engine, loop, events)  # the exchange asks for the same B-channel again
    assert engine.wait_until(lambda: events.has(again, CallProceeding), T)
    assert again.chanpos == far.chanpos


def test_hanging_up_our_setup_before_any_answer_is_release_complete(pri):
    engine, loop, events, _incoming, wire = pri
    loop.net.on_incoming = lambda call: None

    def dial_and_give_up():
        call = loop.cpe.call("5559999")
        call.listeners.append(events)
        call.hangup(34)
        return call

    ours = engine.run(dial_and_give_up)
    assert ours.cleared and events.of(ours) == [CallCleared(34, "local")]
    assert not loop.cpe.calls  # no event will come for it: the channel is free at once
    assert engine.wait_until(lambda: "RELEASE COMPLETE" in wire.names("cpe"), T)


def strip_cause_from(message_name: str):
    """A frame filter that removes the Cause IE from one kind of message, as a switch that
    omits it (legal for RELEASE after DISCONNECT, Q.931 5.3.4) would send it."""
    def rewrite(channo: int, frame: bytes) -> bytes:
        try:
            lapd = q931.LapdFrame.parse(frame)
            message = lapd.q931()
        except q931.Q931DecodeError:
            return frame
        if message is None or message.name != message_name:
            return frame
        kept = tuple(ie for ie in message.ies if ie.identifier != q931.IE.CAUSE)
        info = dataclasses.replace(message, ies=kept).serialize()
        return dataclasses.replace(lapd, info=info).serialize()
    return rewrite


def test_release_without_a_cause_still_frees_the_channel(pri):
    engine, loop, events, incoming, wire = pri
    loop.tap.frame_filter = strip_cause_from("RELEASE")
    far = dial(engine, loop, events)
    assert engine.wait_until(lambda: bool(incoming), T)
    engine.run(incoming[0].answer)
    assert engine.wait_until(lambda: incoming[0].state is CallState.CONNECTED, T)
    engine.run(incoming[0].hangup, 16)
    assert engine.wait_until(lambda: incoming[0].cleared and far.cleared
                             and not loop.cpe.calls and not loop.net.calls, T)
    assert wire.find("net", "RELEASE").cause is None
    assert events.of(incoming[0])[-1] == CallCleared(16, "local")


def test_a_media_listener_that_hangs_up_clears_the_call_cleanly(pri, caplog):
    engine, loop, _events, _incoming, wire = pri
    far, ours = ring_in(pri)
    engine.run(ours.answer)
    engine.run(ours.open_media)
    engine.run(far.open_media)
    engine.run(ours.on_media, lambda block: ours.hangup(16))
    engine.run(far.media.write_frame, bytes(160))
    assert engine.wait_until(lambda: far.cleared and not loop.cpe.calls
                             and not loop.net.calls, T)
    assert wire.names()[-3:] == ["DISCONNECT", "RELEASE", "RELEASE COMPLETE"]
    assert "failed" not in caplog.text


def test_a_bad_cause_is_refused_before_anything_changes(pri):
    engine, loop, events, incoming, _wire = pri
    dial(engine, loop, events)
    assert engine.wait_until(lambda: bool(incoming), T)
    for cause in (-1, 0, 128):
        with pytest.raises(ArgumentError, match=r"not a Q\.850 cause"):
            engine.run(incoming[0].hangup, cause)
    assert incoming[0].state is CallState.PROCEEDING and incoming[0].media is None


def test_listeners_cannot_dial_on_a_span_that_is_stopping(pri):
    engine, loop, events, incoming, _wire = pri
    dial(engine, loop, events)
    assert engine.wait_until(lambda: bool(incoming), T)
    attempts = []

    def redial(call, event):
        try:
            loop.cpe.call("5551234")
        except Error as exc:
            attempts.append(str(exc))

    incoming[0].listeners.append(redial)
    engine.run(loop.cpe.stop)
    assert incoming[0].cleared and not loop.cpe.calls
    assert attempts and "not started" in attempts[0]


def test_an_alarm_drained_inside_libpris_read_is_handled_outside_it(sim_pri):
    """A RED alarm that lands while libpri is reading a frame must not re-enter libpri."""
    engine, loop, events, incoming, _wire = sim_pri
    far = dial(engine, loop, events)
    assert engine.wait_until(lambda: bool(incoming), T)

    def alarm_on_alerting(channo: int, frame: bytes) -> bytes:
        message = None
        with contextlib.suppress(q931.Q931DecodeError):
            message = q931.LapdFrame.parse(frame).q931()
        if message is not None and message.name == "CONNECT":
            loop.kernel.set_alarm(1, abi.DAHDI_ALARM_RED)  # queued before the frame lands
        return frame

    loop.kernel.frame_filter = alarm_on_alerting
    engine.run(incoming[0].answer)
    assert engine.wait_until(lambda: incoming[0].cleared, T)
    assert events.of(incoming[0])[-1] == CallCleared(libpri.PRI_CAUSE_NETWORK_OUT_OF_ORDER,
                                                     "span")
    assert not loop.cpe.calls
    del far
