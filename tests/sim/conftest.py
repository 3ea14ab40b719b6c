"""The simulator tests' shared fixtures."""

from __future__ import annotations

import pytest

from .helpers import start_world
from .sip_peer import SipPeer, Uas


@pytest.fixture(params=["E1", "T1"])
def world(request, rig):
    """A looped pair on the rig: our span with channels for the tests, and the exchange."""
    with rig.engine() as engine:
        yield start_world(engine, rig, request.param)


@pytest.fixture(params=["E1", "T1"])
def live_world(request, rig):
    """The ``world`` in real time (on the simulator too): the line's clock keeps going
    while the engine thread is held up, as a card's does."""
    with rig.engine(virtual=False) as engine:
        yield start_world(engine, rig, request.param)


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
