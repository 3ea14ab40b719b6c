"""Helpers shared by the simulator tests."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import pytest

from uascall import ToneManager
from uascall.channel import UASCallChannel
from uascall.dahdi import q931
from uascall.engine import EPOLLIN, EPOLLPRI, Engine
from uascall.media.player import MediaClock
from uascall.sim.backend import SimBackend
from uascall.sim.farend import pri_loop_conf
from uascall.sim.kernel import SimKernel

MEDIA = Path(__file__).resolve().parents[2] / "examples" / "media"
#: seconds a signalling step may take before a test gives up: a bound for failures only,
#: so it is generous; more on the vm rig, where TCG emulation makes everything slower
T = 15.0 if os.environ.get("UASCALL_RIG") == "vm" else 5.0
REAL_TIME_SLACK = 0.15  # seconds: scheduling on a loaded machine, or under emulation


class Wire:
    """Q.931 messages that crossed a looped pair, as (sender, message), decoded
    independently of libpri from the simulated kernel's frame tap. ``ours`` is the
    D-channel number of the side under test ("cpe"); the other side is "net"."""

    def __init__(self, kernel: SimKernel, ours: int) -> None:
        self.ours = ours
        self.records: list = []
        kernel.frame_taps.append(self.records.append)

    def messages(self) -> list[tuple[str, q931.Message]]:
        out = []
        for record in list(self.records):
            message = q931.LapdFrame.parse(record.frame).q931()
            if message is not None and record.delivered:
                out.append(("cpe" if record.from_channel == self.ours else "net", message))
        return out

    def names(self, sender: str | None = None) -> list[str]:
        return [m.name for who, m in self.messages() if sender in (None, who)]

    def find(self, sender: str, name: str) -> q931.Message:
        found = [m for who, m in self.messages() if who == sender and m.name == name]
        assert found, f"no {name} from {sender} on the wire; saw {self.names()}"
        return found[-1]


@dataclasses.dataclass
class World:
    engine: Engine
    backend: SimBackend
    channels: list[UASCallChannel]
    wire: Wire
    kind: str
    #: what real time adds to a blocking time measured on the engine's clock (0 in
    #: virtual time, where the measures are exact)
    slack: float = 0.0

    @property
    def law(self) -> str:
        return "alaw" if self.kind == "E1" else "ulaw"

    @property
    def run_tolerance(self) -> float:
        """How far a run of tone or silence judged 20 ms frame by frame may be from its
        true length: one frame where the far end's frames line up with ours (the
        simulator), two on the real driver, where each edge falls anywhere in a frame."""
        return 0.021 if self.slack == 0.0 else 0.041

    def incoming(self, called: str = "5551000") -> tuple[UASCallChannel, Any]:
        """The exchange calls; returns (our channel, the far end's call)."""
        before = len(self.channels)
        far = self.engine.run(self.backend.far_end.dial, called)
        assert self.engine.wait_until(lambda: len(self.channels) > before, T)
        return self.channels[-1], far

    def elapsed(self, fn, *args, **kwargs) -> tuple[Any, float]:
        t0 = self.engine.time()
        result = fn(*args, **kwargs)
        return result, round(self.engine.time() - t0, 6)

    def approx(self, seconds: float, within: float = 1e-6):
        """``seconds`` as a blocking time measured on the engine's clock should be."""
        return pytest.approx(seconds, abs=within + self.slack)

    def alertings(self) -> list:
        return [m for who, m in self.wire.messages() if who == "cpe" and m.name == "ALERTING"]


def start_world(engine: Engine, rig: Any, kind: str) -> World:
    """A looped pair on ``rig``, started on ``engine``: our span, with a channel for each
    call it is offered, and the exchange's. Whatever the caller made the engine listen
    with before (a trace's device taps) sees the spans' devices; stopping the backend is
    the caller's, or the engine's end."""
    conf = pri_loop_conf(kind, dynamic=True)
    backend = SimBackend(engine, kind=kind, kernel=rig.kernel(engine, conf), conf=conf)
    clock = MediaClock(engine)
    channels: list[UASCallChannel] = []
    backend.on_incoming = lambda leg: channels.append(
        UASCallChannel(engine, leg, media_clock=clock, media_dir=MEDIA))
    engine.run(backend.start)
    assert engine.wait_until(lambda: backend.up, T)
    return World(engine, backend, channels, Wire(backend.loop.tap,
                                                 backend.loop.cpe.layout.dchannel), kind,
                 slack=0.0 if engine.clock.virtual else REAL_TIME_SLACK)


def check_keys(heard: str, pressed: str, *, strict: bool, story: str = "") -> None:
    """The keys that arrived are those pressed; where not ``strict`` (the vm rig, whose
    starved guests slip frames), some of them, in order: one whose frames slipped may be
    lost, none invented or reordered."""
    if strict:
        assert heard == pressed, f"{heard!r} heard of {pressed!r} pressed\n{story}"
        return
    rest = iter(pressed)
    assert heard and all(key in rest for key in heard), \
        f"{heard!r} heard of {pressed!r} pressed\n{story}"


def with_tones(channel: UASCallChannel) -> UASCallChannel:
    channel.create_tone_player(ToneManager())
    return channel


def drop_message(name: str):
    """A frame filter that loses every ``name`` message on the D-channel."""
    def lose(_channo: int, frame: bytes) -> bytes | None:
        try:
            message = q931.LapdFrame.parse(frame + b"\0\0").q931()  # + a dummy FCS
        except q931.Q931DecodeError:
            return frame
        return None if message is not None and message.name == name else frame
    return lose


def reader(engine: Engine, chan) -> list[bytes]:
    """What ``chan`` receives, read as it arrives: on the real driver only a ready
    descriptor wakes the engine to look (the simulator's timers wake it anyway)."""
    frames: list[bytes] = []
    engine.run(engine.add_fd, chan.fileno(), EPOLLIN | EPOLLPRI,
               lambda revents: chan.service(revents, frames.append))
    return frames


def wait_for_libpri(engine: Engine, predicate, timeout: float = T) -> bool:
    """Wait until ``predicate()`` holds when it needs one of libpri's timers (T200, T305,
    T308...), which run on the wall clock even on a virtual engine, and then frames that
    take the D-channel's time on the engine's clock: real time passes in short sleeps
    (virtual time stands still meanwhile) with a little engine time between them."""
    deadline = time.monotonic() + timeout
    while not engine.run(predicate):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
        engine.sleep(0.05)
    return True
