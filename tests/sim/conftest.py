"""The simulator tests' shared fixtures."""

from __future__ import annotations

import pytest

from uascall.channel import UASCallChannel
from uascall.engine import Engine, VirtualClock
from uascall.media.player import MediaClock
from uascall.sim.backend import SimBackend

from .helpers import MEDIA, T, Wire, World


@pytest.fixture(params=["E1", "T1"])
def world(request):
    kind = request.param
    with Engine(VirtualClock()) as engine, engine.actor():
        backend = SimBackend(engine, kind=kind)
        clock = MediaClock(engine)
        channels: list[UASCallChannel] = []

        def on_incoming(leg):
            channels.append(UASCallChannel(engine, leg, media_clock=clock, media_dir=MEDIA))

        backend.on_incoming = on_incoming
        engine.run(backend.start)
        assert engine.wait_until(lambda: backend.up, T)
        yield World(engine, backend, channels, Wire(backend.loop.kernel,
                                                    backend.loop.cpe.layout.dchannel), kind)
