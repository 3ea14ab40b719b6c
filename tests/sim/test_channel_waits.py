"""Timed waits of the channel API at their edges: what happens at the very deadline is no
timeout, a wait far longer than epoll can wait leaves the engine hearing its far ends, and
a number of seconds too large for a float is an ArgumentError. A scripted leg whose far
end does only what each test says, on an engine with no timer of its own."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from uascall.backend import Backend, CallLeg, Cause, LegAnswered, LegCleared, LegDigit, MediaPort
from uascall.channel import State, UASCallChannel
from uascall.engine import EPOLLIN, Engine, VirtualClock
from uascall.errors import ArgumentError
from uascall.media.player import MediaClock


class _Port(MediaPort):
    law = "alaw"

    def write(self, frame: bytes) -> bool:
        return True


class ScriptedLeg(CallLeg):
    """A call whose far end answers, presses keys and hangs up when the test says."""

    def __init__(self, engine: Engine, *, incoming: bool) -> None:
        self.engine = engine
        self.incoming = incoming
        self.call_to, self.call_from = "100", "200"
        self.cleared = False
        self._port = _Port()

    def describe(self) -> str:
        return "scripted leg"

    @property
    def live(self) -> bool:
        return not self.cleared

    def alert(self, early_media: bool, codecs: list[str] | None = None) -> bool:
        return False

    def answer(self, codecs: list[str] | None = None) -> None:
        self.engine.call_soon(self._emit, LegAnswered())

    def release(self, cause: Cause, raw_cause: str | None = None) -> Cause | None:
        self.engine.call_soon(self.clear, cause)
        return cause

    def media(self) -> MediaPort:
        return self._port

    # the far end, on the engine thread
    def clear(self, cause: Cause = Cause.NORMAL) -> None:
        if not self.cleared:
            self.cleared = True
            self._emit(LegCleared(cause, cause.value, "remote"))

    def answers(self) -> None:
        self._emit(LegAnswered())

    def presses(self, digit: str) -> None:
        self._emit(LegDigit(digit))
        self._emit(LegDigit(digit, ended=True))


class ScriptedBackend(Backend):
    name = "scripted"
    virtual_time = True

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.placed: list[ScriptedLeg] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def place_call(self, call_to: str, call_from: str = "", **_options: object) -> CallLeg:
        leg = ScriptedLeg(self.engine, incoming=False)
        self.placed.append(leg)
        return leg


def incoming(engine: Engine) -> tuple[UASCallChannel, ScriptedLeg]:
    leg = ScriptedLeg(engine, incoming=True)
    channel = engine.run(lambda: UASCallChannel(engine, leg, media_clock=MediaClock(engine)))
    return channel, leg


def waiting(engine: Engine, channel: UASCallChannel) -> None:
    """Until ``channel`` has a waiter (this thread is an actor: virtual time stands still)."""
    deadline = time.monotonic() + 10
    while not engine.run(lambda: len(channel._waiters)):
        assert time.monotonic() < deadline, "the wait never registered"
        time.sleep(0.001)


def in_thread(engine: Engine, fn, *args) -> tuple[threading.Thread, list]:
    out: list = []
    thread = engine.start_actor_thread(lambda: out.append(fn(*args)))
    return thread, out


def test_a_digit_at_the_very_deadline_is_no_timeout():
    with Engine(VirtualClock()) as engine, engine.actor():
        channel, leg = incoming(engine)
        assert channel.answer() is State.ANSWERED
        start = engine.time()
        thread, out = in_thread(engine, channel.DTMFDetector.get_digits, False, 1, 3.0)
        waiting(engine, channel)
        engine.run(lambda: engine.call_at(start + 3.0, leg.presses, "7"))
        engine.wait_until(lambda: not thread.is_alive(), 10)
        assert out == ["7"] and channel.DTMFDetector.cause().name == "COUNT"


def test_an_answer_at_the_very_deadline_is_no_timeout():
    with Engine(VirtualClock()) as engine, engine.actor():
        backend = ScriptedBackend(engine)
        channel = UASCallChannel(engine, backend=backend, media_clock=MediaClock(engine))
        start = engine.time()
        thread, out = in_thread(engine, channel.call, "5559000", "", 5.0)
        waiting(engine, channel)
        engine.run(lambda: engine.call_at(start + 5.0, backend.placed[-1].answers))
        engine.wait_until(lambda: not thread.is_alive(), 10)
        assert out == [State.ANSWERED], channel.cause()
        channel.hang_up()


def test_a_wait_longer_than_epoll_can_wait_still_hears_the_far_end():
    # epoll waits 2**31 - 1 ms at most; a timer farther than that made every poll raise
    # OverflowError before any descriptor was read, so the far end's hang-up went unheard.
    with Engine() as engine:
        channel, leg = incoming(engine)
        ours, theirs = socket.socketpair()
        ours.setblocking(False)

        def readable(_events: int) -> None:
            if ours.recv(16) == b"BYE":
                leg.clear()

        engine.run(engine.add_fd, ours.fileno(), EPOLLIN, readable)
        try:
            result: list[State] = []
            thread = threading.Thread(target=lambda: result.append(
                channel.wait_for_idle(1e9)), daemon=True)
            thread.start()
            waiting(engine, channel)
            theirs.send(b"BYE")
            thread.join(5)
            assert result == [State.IDLE]
            assert engine.faults.total() == 0
        finally:
            engine.run(engine.remove_fd, ours.fileno())
            ours.close()
            theirs.close()


@pytest.mark.parametrize("seconds", [10**400, -(10**400)], ids=["huge", "huge-negative"])
def test_seconds_beyond_any_float_are_an_argument_error(seconds):
    with Engine(VirtualClock()) as engine, engine.actor():
        channel, _leg = incoming(engine)
        with pytest.raises(ArgumentError, match="expected a finite number of seconds"):
            channel.wait_for_idle(seconds)
