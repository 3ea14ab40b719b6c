"""The simulator tests' shared fixtures."""

from __future__ import annotations

import pytest

from uascall.channel import UASCallChannel
from uascall.media.player import MediaClock
from uascall.sim.backend import SimBackend
from uascall.sim.farend import pri_loop_conf

from .helpers import MEDIA, T, Wire, World
from .sip_peer import SipPeer, Uas

REAL_TIME_SLACK = 0.15  # seconds: scheduling on a loaded machine, or under emulation


@pytest.fixture(params=["E1", "T1"])
def world(request, rig):
    """A looped pair on the rig: our span with channels for the tests, and the exchange."""
    kind = request.param
    with rig.engine() as engine:
        conf = pri_loop_conf(kind, dynamic=True)
        backend = SimBackend(engine, kind=kind, kernel=rig.kernel(engine, conf), conf=conf)
        clock = MediaClock(engine)
        channels: list[UASCallChannel] = []

        def on_incoming(leg):
            channels.append(UASCallChannel(engine, leg, media_clock=clock, media_dir=MEDIA))

        backend.on_incoming = on_incoming
        engine.run(backend.start)
        assert engine.wait_until(lambda: backend.up, T)
        wire = Wire(backend.loop.tap, backend.loop.cpe.layout.dchannel)
        yield World(engine, backend, channels, wire, kind,
                    slack=0.0 if engine.clock.virtual else REAL_TIME_SLACK)


@pytest.fixture
def uas():
    """A SIP backend on a real-time engine with the shrunk timers (sip_peer.Uas)."""
    server = Uas()
    yield server
    server.close()


@pytest.fixture
def peer(uas):
    """A scripted SIP caller aimed at ``uas``."""
    caller = SipPeer(uas.address)
    yield caller
    caller.close()
