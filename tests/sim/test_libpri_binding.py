"""uascall.dahdi.libpri driving two real libpri instances, NETWORK and CPE, back to back.

The "wire" is an AF_UNIX SOCK_SEQPACKET socketpair carrying bare LAPD frames: the write
callbacks strip the 2 spare FCS bytes libpri appends and the read callbacks append 2 dummy
ones, which is what a DAHDI HDLCFCS channel does in hardware. A small select() loop runs
pri_check_event / pri_schedule_run like a span driver would.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import logging
import select
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from uascall.dahdi import libpri
from uascall.dahdi.libpri import (
    Answer,
    ConfigError,
    ConnectAck,
    DchanDown,
    DchanUp,
    Debug,
    Event,
    Hangup,
    HangupAck,
    HangupReq,
    InfoReceived,
    LibpriError,
    Node,
    Plan,
    Pri,
    Proceeding,
    Progress,
    Restart,
    RestartAck,
    Ring,
    Ringing,
    SetupAck,
    Switch,
    Timer,
    UnknownEvent,
    b_channel,
)
from uascall.errors import ArgumentError

LOGGER = "uascall.dahdi.libpri"
E = TypeVar("E", bound=Event)
INBAND = libpri.PRI_PROG_INBAND_AVAILABLE


class End:
    """One D-channel end: a Pri on one socket of the pair."""

    def __init__(self, label: str, sock: socket.socket, node: Node, switch: Switch) -> None:
        self.label, self.sock = label, sock
        self.cut = False  # drop every frame in both directions, as if the cable were pulled
        self.events: collections.deque[tuple[float, Event]] = collections.deque()
        self.last_arrival = 0.0  # time.monotonic() when the last expected event arrived
        self.read_hook: Callable[[], bytes | None] | None = None
        self.write_hook: Callable[[bytes], None] | None = None
        self.pri = Pri(node, switch, read=self.read, write=self.write, fd=sock.fileno(),
                       name=label)

    def read(self) -> bytes | None:
        if self.read_hook is not None:
            hook, self.read_hook = self.read_hook, None
            return hook()
        try:
            frame = self.sock.recv(1024)
        except BlockingIOError:
            return None
        return None if self.cut else frame + b"\0\0"

    def write(self, data: bytes) -> None:
        if self.write_hook is not None:
            hook, self.write_hook = self.write_hook, None
            hook(data)
        assert len(data) >= 5, "libpri always adds 2 spare FCS bytes"
        if not self.cut:
            self.sock.send(data[:-2])


class Rig:
    def __init__(self, switch: Switch = Switch.EUROISDN_E1,
                 timers: dict[Timer, int] | None = None) -> None:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        a.setblocking(False)
        b.setblocking(False)
        self.net = End("NET", a, Node.NETWORK, switch)
        self.cpe = End("CPE", b, Node.CPE, switch)
        for end in self.ends:
            for timer, ms in (timers or {}).items():
                end.pri.set_timer(timer, ms)

    @property
    def ends(self) -> tuple[End, End]:
        return self.net, self.cpe

    def pump(self, max_wait: float = 0.01) -> None:
        now = time.time()  # libpri deadlines are wall-clock
        deadlines = [d for d in (e.pri.schedule_next() for e in self.ends) if d is not None]
        wait = max(0.0, min([max_wait, *(d - now for d in deadlines)]))
        readable, _, _ = select.select([e.sock for e in self.ends], [], [], wait)
        for end in self.ends:
            if end.sock in readable:
                while True:
                    event = end.pri.check_event()
                    if event is not None:
                        end.events.append((time.monotonic(), event))
                    elif end.pri.drained:
                        break
            while (event := end.pri.schedule_run()) is not None:
                end.events.append((time.monotonic(), event))

    def expect(self, end: End, cls: type[E], timeout: float = 1.0, **fields: object) -> E:
        deadline = time.monotonic() + timeout
        while not end.events:
            if time.monotonic() > deadline:
                raise AssertionError(f"{end.label}: no event in {timeout} s, "
                                     f"expected {cls.__name__}")
            self.pump()
        end.last_arrival, event = end.events.popleft()
        assert isinstance(event, cls) and type(event) is cls, (
            f"{end.label}: expected {cls.__name__}, got {event}")
        for name, value in fields.items():
            assert getattr(event, name) == value, f"{end.label}: {name} in {event}"
        return event

    def quiet(self, seconds: float = 0.05) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.pump()
        left = [(end.label, event) for end in self.ends for _, event in end.events]
        assert not left, f"unexpected events: {left}"

    def up(self) -> Rig:
        self.expect(self.net, DchanUp)
        self.expect(self.cpe, DchanUp)
        return self

    def call(self, **setup: Any) -> tuple[int, Ring]:
        """NET places a call; returns NET's call and CPE's Ring."""
        args: dict[str, Any] = {"called": "100", "channel": 1, "exclusive": True,
                                   "layer1": libpri.PRI_LAYER_1_ALAW}
        args.update(setup)
        call = self.net.pri.new_call()
        self.net.pri.setup(call, **args)
        ring = self.expect(self.cpe, Ring)
        assert ring.call
        return call, ring

    def clear(self, first: End, first_call: int, second: End, second_call: int,
              cause: int) -> None:
        """The whole clearing rule, with the cause checked on each step."""
        first.pri.hangup(first_call, cause)                                   # DISCONNECT
        self.expect(second, HangupReq, call=second_call, cause=cause)
        second.pri.hangup(second_call, cause)                                 # RELEASE
        self.expect(first, Hangup, call=first_call, cause=cause)
        first.pri.hangup(first_call, cause)                                   # REL COMPLETE
        self.expect(second, HangupAck, call=second_call, cause=cause)


@pytest.fixture
def pair() -> Rig:
    return Rig().up()


def _same_cref(a: int, b: int) -> bool:
    return a & 0x7FFF == b & 0x7FFF  # the originating side sees the flag bit set


def test_link_up_and_wall_clock_deadline(pair: Rig) -> None:
    for end in pair.ends:
        deadline = end.pri.schedule_next()
        assert deadline is not None  # T203 keepalive (10 s) runs while idle
        assert time.time() < deadline <= time.time() + 10.5
        assert end.pri.get_timer(Timer.T203) == 10000
    pair.quiet()


def test_euroisdn_call_early_media_answer_and_clearing(pair: Rig, caplog) -> None:
    call, ring = pair.call(called="5551001", calling="5552000", calling_name="Lab Caller",
                          channel=1, exclusive=True, layer1=libpri.PRI_LAYER_1_ALAW,
                          called_plan=Plan.NATIONAL, calling_plan=Plan.NATIONAL)
    assert (ring.called_number, ring.called_plan) == ("5551001", libpri.PRI_NATIONAL_ISDN)
    assert (ring.calling_number, ring.calling_name) == ("5552000", "Lab Caller")
    assert (ring.calling_plan, ring.calling_pres) == (libpri.PRI_NATIONAL_ISDN,
                                                      libpri.PRES_ALLOWED_USER_NUMBER_NOT_SCREENED)
    assert (ring.layer1, ring.ctype) == (libpri.PRI_LAYER_1_ALAW, libpri.PRI_TRANS_CAP_SPEECH)
    assert ring.complete and not ring.flexible  # EuroISDN sends Sending Complete
    assert b_channel(ring.channel) == 1 and ring.progress_mask == 0
    cpe = pair.cpe.pri

    cpe.proceeding(ring.call, ring.channel, inband=False)
    ev = pair.expect(pair.net, Proceeding, call=call, progress=-1, progress_mask=0)
    assert b_channel(ev.channel) == 1 and _same_cref(ev.cref, ring.cref)
    cpe.progress(ring.call, ring.channel, inband=True)
    pair.expect(pair.net, Progress, call=call, progress=8, progress_mask=INBAND, cause=None)
    cpe.acknowledge(ring.call, ring.channel, inband=True)
    pair.expect(pair.net, Ringing, call=call, progress_mask=INBAND)
    cpe.answer(ring.call, ring.channel)
    pair.expect(pair.net, Answer, call=call)
    pair.quiet()  # CONNECT ACK is automatic and not reported by default

    pair.clear(pair.net, call, pair.cpe, ring.call, libpri.PRI_CAUSE_NORMAL_CLEARING)
    pair.quiet()

    # After HANGUP_ACK the call is freed: libpri refuses it (and gripes), we raise.
    caplog.clear()
    with pytest.raises(LibpriError) as info:
        cpe.hangup(ring.call, 16)
    assert info.value.function == "pri_hangup"
    assert str(info.value).startswith("CPE: pri_hangup() returned -1")
    assert any(r.getMessage().startswith("CPE: !! pri_hangup() line:")
               and "invalid call ptr" in r.getMessage()
               for r in caplog.records if r.name == LOGGER)


def test_progress_with_cause_and_alerting_without_inband(pair: Rig) -> None:
    call, ring = pair.call()
    pair.cpe.pri.progress(ring.call, ring.channel, inband=True, cause=libpri.PRI_CAUSE_USER_BUSY)
    pair.expect(pair.net, Progress, call=call, progress_mask=INBAND, cause=17)

    call2, ring2 = pair.call(channel=2)
    pair.cpe.pri.acknowledge(ring2.call, ring2.channel, inband=False)
    pair.expect(pair.net, Proceeding, call=call2)  # libpri sends CALL PROCEEDING first
    ev = pair.expect(pair.net, Ringing, call=call2)
    assert not ev.progress_mask & INBAND
    pair.quiet()


def test_cpe_rejects_with_cause_21_after_proceeding(pair: Rig) -> None:
    call, ring = pair.call()
    pair.cpe.pri.proceeding(ring.call, ring.channel, inband=False)
    pair.expect(pair.net, Proceeding, call=call)
    pair.clear(pair.cpe, ring.call, pair.net, call, libpri.PRI_CAUSE_CALL_REJECTED)
    pair.quiet()


def test_rejecting_a_setup_before_any_response() -> None:
    pair = Rig(timers={Timer.T303: 150}).up()
    # Congestion-class causes (1, 34, 44, 82, 88) send RELEASE COMPLETE at once: the caller
    # gets Hangup, never HangupReq, and the called side's record is gone.
    call, ring = pair.call()
    pair.cpe.pri.hangup(ring.call, libpri.PRI_CAUSE_NORMAL_CIRCUIT_CONGESTION)
    pair.expect(pair.net, Hangup, call=call, cause=34)
    pair.net.pri.hangup(call, 34)
    with pytest.raises(LibpriError):
        pair.cpe.pri.hangup(ring.call, 34)
    pair.quiet()
    # A DISCONNECT-class cause (16, 17, 21...) before any response sends nothing at all
    # (libpri's call is not "alive" yet): the caller only learns from T303 (cause 18).
    call, ring = pair.call(channel=2)
    pair.cpe.pri.hangup(ring.call, libpri.PRI_CAUSE_CALL_REJECTED)
    pair.quiet(0.1)
    pair.expect(pair.net, Hangup, call=call, cause=libpri.PRI_CAUSE_NO_USER_RESPONSE)
    pair.net.pri.hangup(call, 18)
    pair.cpe.pri.destroy_call(ring.call)
    pair.quiet()


def test_ni2_mulaw_call_cleared_by_net_with_busy() -> None:
    pair = Rig(Switch.NI2).up()
    call, ring = pair.call(called="2125551212", calling="2015550100", calling_name="Bob",
                          channel=7, exclusive=False, layer1=libpri.PRI_LAYER_1_ULAW,
                          called_plan=Plan.NATIONAL)
    assert (ring.called_number, ring.calling_number, ring.calling_name) == (
        "2125551212", "2015550100", "Bob")
    assert ring.layer1 == libpri.PRI_LAYER_1_ULAW
    assert not ring.complete  # NI2 never sends Sending Complete, even for a full number
    assert ring.flexible and b_channel(ring.channel) == 7  # preferred, not exclusive
    pair.cpe.pri.acknowledge(ring.call, ring.channel, inband=False)
    pair.expect(pair.net, Proceeding, call=call)
    pair.expect(pair.net, Ringing, call=call, progress_mask=0)
    pair.clear(pair.net, call, pair.cpe, ring.call, libpri.PRI_CAUSE_USER_BUSY)
    pair.quiet()


def test_overlap_dialling_setup_ack_and_digits(pair: Rig) -> None:
    pair.net.pri.set_overlap_dial(True)
    call, ring = pair.call(called="55", channel=None, exclusive=False, complete=False)
    assert (ring.called_number, ring.complete, ring.flexible, ring.channel) == (
        "55", False, True, -1)
    pair.cpe.pri.setup_ack(ring.call, 5, inband=True)  # we chose B5 and play dial tone
    ev = pair.expect(pair.net, SetupAck, call=call, progress_mask=INBAND)
    assert b_channel(ev.channel) == 5
    pair.net.pri.information(call, "12")
    pair.expect(pair.cpe, InfoReceived, call=ring.call, digits="1", complete=False)
    pair.expect(pair.cpe, InfoReceived, call=ring.call, digits="2", complete=False)
    pair.cpe.pri.proceeding(ring.call, 5, inband=False)
    pair.expect(pair.net, Proceeding, call=call)
    pair.quiet()


def test_restart_both_directions(pair: Rig) -> None:
    pair.net.pri.restart(3)
    assert b_channel(pair.expect(pair.cpe, Restart).channel) == 3
    assert b_channel(pair.expect(pair.net, RestartAck).channel) == 3
    pair.cpe.pri.restart(3 | libpri.CHANNEL_EXPLICIT)
    pair.expect(pair.net, Restart, channel=0x10003)
    pair.expect(pair.cpe, RestartAck, channel=0x10003)
    with pytest.raises(ArgumentError):
        pair.net.pri.restart(0)
    pair.quiet()


def test_connect_ack_when_enabled(pair: Rig) -> None:
    for end in pair.ends:
        end.pri.connect_ack_enable(True)
    call, ring = pair.call()
    pair.cpe.pri.answer(ring.call, ring.channel)
    ev = pair.expect(pair.net, Answer, call=call)
    pair.quiet()  # nothing acknowledged yet
    pair.net.pri.connect_ack(call, ev.channel)
    ev = pair.expect(pair.cpe, ConnectAck, call=ring.call)
    assert b_channel(ev.channel) == 1
    pair.quiet()


def test_dchan_loss_clears_calls_then_link_recovers() -> None:
    pair = Rig(timers={Timer.T200: 100, Timer.T203: 200, Timer.T309: 300}).up()
    active, active_ring = pair.call(channel=1)
    pair.cpe.pri.answer(active_ring.call, active_ring.channel)
    pair.expect(pair.net, Answer)
    alerting, alerting_ring = pair.call(channel=2)
    pair.cpe.pri.acknowledge(alerting_ring.call, alerting_ring.channel, inband=True)
    pair.expect(pair.net, Proceeding)
    pair.expect(pair.net, Ringing)
    pair.quiet()  # CPE's call is "active" only once the CONNECT ACK is in

    pair.net.cut = pair.cpe.cut = True
    start = time.monotonic()
    calls = {pair.net: (active, alerting), pair.cpe: (active_ring.call, alerting_ring.call)}
    for end in pair.ends:
        # Q.921 gives up after T203 + (N200+1) x T200 and reports DCHAN_DOWN; Q.931 learns
        # of it only when re-establishment fails too: unanswered calls are then cleared
        # with cause 27, answered ones T309 later.
        pair.expect(end, DchanDown, timeout=2.0)
        down = end.last_arrival
        pair.expect(end, Hangup, timeout=2.0, call=calls[end][1], cause=27)
        released = end.last_arrival
        assert released - down >= 0.3  # (N200+1) x T200 of failed SABMEs
        pair.expect(end, Hangup, timeout=2.0, call=calls[end][0], cause=27)
        assert end.last_arrival - released >= 0.25  # T309
        for call in calls[end]:
            end.pri.hangup(call, 27)  # the final hangup frees the call
    assert time.monotonic() - start < 3.0

    pair.net.cut = pair.cpe.cut = False
    pair.up()
    pair.call(channel=3)
    pair.quiet()


def test_answered_call_survives_short_dchan_outage() -> None:
    pair = Rig(timers={Timer.T200: 100, Timer.T203: 200, Timer.T309: 3000}).up()
    call, ring = pair.call()
    pair.cpe.pri.answer(ring.call, ring.channel)
    pair.expect(pair.net, Answer)
    pair.quiet()
    pair.net.cut = pair.cpe.cut = True
    pair.expect(pair.net, DchanDown, timeout=2.0)
    pair.expect(pair.cpe, DchanDown, timeout=2.0)
    pair.quiet(0.5)  # re-establishment fails: T309 starts, no Hangup yet
    pair.net.cut = pair.cpe.cut = False
    pair.up()
    pair.quiet(0.1)
    pair.clear(pair.cpe, ring.call, pair.net, call, libpri.PRI_CAUSE_NORMAL_CLEARING)


def test_exception_in_read_callback_is_raised_when_libpri_returns(pair: Rig) -> None:
    """The caller of check_event() decides what a failing read means (the span: a failed
    device); swallowed in the callback, a read failing on a ready descriptor was a silent
    hot loop."""
    def boom() -> bytes:
        raise RuntimeError("boom")

    pair.net.read_hook = boom
    with pytest.raises(RuntimeError, match="boom"):
        pair.net.pri.check_event()
    assert pair.net.pri.drained
    pair.call()  # still works


def test_exception_in_write_callback_is_logged_and_frame_retransmitted(caplog) -> None:
    pair = Rig(timers={Timer.T200: 100}).up()

    def broken(data: bytes) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    pair.net.write_hook = broken
    caplog.clear()
    call = pair.net.pri.new_call()
    pair.net.pri.setup(call, called="100", channel=1, exclusive=True,
                      layer1=libpri.PRI_LAYER_1_ALAW)  # the SETUP write fails
    messages = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]
    assert any(r.levelno == logging.ERROR and "NET: libpri's write callback (libpri sees a "
               "failed write) failed: BrokenPipeError" in r.getMessage()
               for r in caplog.records)
    assert any(level == logging.WARNING and text.startswith("NET: Short write: -1/")
               for level, text in messages)
    pair.expect(pair.cpe, Ring, timeout=1.0)  # Q.921 retransmits the I-frame after T200


def test_keyboard_interrupt_in_callback_is_reraised(pair: Rig) -> None:
    def interrupt() -> bytes:
        raise KeyboardInterrupt

    pair.cpe.read_hook = interrupt
    with pytest.raises(KeyboardInterrupt):
        pair.cpe.pri.check_event()
    assert pair.cpe.pri.check_event() is None  # and the instance carries on


def test_bad_frames_are_dropped_with_a_reason(pair: Rig, caplog) -> None:
    for frame, reason in ((b"\x02\x01\x7f", "at least 3 bytes plus the 2 FCS bytes"),
                          (bytes(2000), "libpri reads at most 1024")):
        pair.cpe.read_hook = lambda frame=frame: frame
        caplog.clear()
        assert pair.cpe.pri.check_event() is None
        assert any(reason in r.getMessage() and r.levelno == logging.WARNING
                   for r in caplog.records if r.name == LOGGER)
    pair.quiet()


def test_libpri_messages_are_logged_by_instance(pair: Rig, caplog) -> None:
    pair.net.pri.set_debug(Debug.Q931_STATE)
    caplog.clear()
    pair.call()
    lines = [r.getMessage() for r in caplog.records
             if r.name == LOGGER and r.levelno == logging.DEBUG and "<<" not in r.getMessage()]
    assert lines and all(line.startswith("NET: ") and line == line.strip() for line in lines)
    assert any("Call Initiated" in line for line in lines)


def test_events_are_copied_and_unknown_codes_never_raise() -> None:
    ev = libpri.PriEvent()
    ev.e = libpri.PRI_EVENT_HOLD
    assert libpri.copy_event(ev) == UnknownEvent(21, "HOLD")
    ev.e = 99
    assert libpri.copy_event(ev) == UnknownEvent(99, "UNKNOWN(99)")
    ev.e = libpri.PRI_EVENT_PROCEEDING
    ev.proceeding.cause = 22005  # stale: libpri fills .cause for PROGRESS only
    assert not hasattr(libpri.copy_event(ev), "cause")
    ev.e, ev.proceeding.cause = libpri.PRI_EVENT_PROGRESS, -1
    assert libpri.copy_event(ev).cause is None
    ev.e = libpri.PRI_EVENT_CONFIG_ERR
    ev.err.err = b"bad switch\n"
    config = libpri.copy_event(ev)
    assert config == ConfigError("bad switch")
    ev.err.err = b"overwritten"  # the copy does not follow libpri's buffer
    assert config.message == "bad switch"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.message = "x"  # type: ignore[misc]
    assert not hasattr(config, "__dict__")
    assert ctypes.sizeof(ev) == 2976


def test_argument_errors(pair: Rig) -> None:
    def nothing() -> None:
        return None

    with pytest.raises(ArgumentError, match=r"neither Node\.NETWORK"):
        Pri(3, Switch.NI2, read=nothing, write=lambda data: None)
    with pytest.raises(ArgumentError, match="switch type 8"):  # GR-303 is not supported
        Pri(Node.CPE, 8, read=nothing, write=lambda data: None)
    pri = pair.net.pri
    with pytest.raises(ArgumentError, match="called number is empty"):
        pri.setup(pri.new_call(), called="", channel=1, exclusive=True,
                  layer1=libpri.PRI_LAYER_1_ALAW)
    with pytest.raises(ArgumentError, match="not ASCII"):
        pri.setup(pri.new_call(), called="١٢٣", channel=1, exclusive=True,
                  layer1=libpri.PRI_LAYER_1_ALAW)
    with pytest.raises(ArgumentError):
        pri.hangup(pri.new_call(), 0)
    with pytest.raises(ArgumentError):
        pri.set_timer(Timer.T200, -5)
    pair.quiet()


def test_helpers() -> None:
    assert libpri.progress_mask_text(0) == "none"
    assert libpri.progress_mask_text(INBAND | 1) == "CALL_NOT_E2E_ISDN|INBAND_AVAILABLE"
    assert libpri.progress_mask_text(1 << 12) == "0x1000"
    assert (b_channel(-1), b_channel(0xFF), b_channel(0x10103)) == (None, None, 3)
    assert libpri.cause_text(21) == "Call Rejected"
    assert libpri.cause_text(1000) == "Unknown"
