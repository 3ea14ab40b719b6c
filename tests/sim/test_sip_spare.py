"""RTP sockets made ahead off the engine thread (uascall/sip/spare.py)."""

from __future__ import annotations

import os
import socket
import time

import pytest

from uascall.engine import Engine
from uascall.sip import spare as spare_module
from uascall.sip.media import RtpPorts, RtpTicker
from uascall.sip.spare import SpareSockets


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def wait_for(predicate, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "not within 5 s"
        time.sleep(0.005)


def test_sockets_are_made_ahead_unbound_and_closed_with_the_pool():
    before = open_fds()
    spare = SpareSockets(spare=8, interval=0.005)
    # the first asks for the family, which starts the thread: made on the spot unless
    # the thread was quicker
    first = spare.take(socket.AF_INET)
    assert spare.made_on_the_spot + spare.taken == 1
    wait_for(lambda: len(spare._ready[socket.AF_INET]) == 8)
    ahead = spare.taken
    taken = [spare.take(socket.AF_INET) for _ in range(3)]
    assert spare.taken == ahead + 3 and spare.made_on_the_spot + ahead == 1
    for sock in [first, *taken]:
        assert sock.family == socket.AF_INET and sock.type == socket.SOCK_DGRAM
        assert sock.getsockname()[1] == 0  # unbound: it holds no port
        sock.close()
    wait_for(lambda: len(spare._ready[socket.AF_INET]) == 8)  # topped up again
    assert not spare._ready[socket.AF_INET6]  # a family nobody asked for is not made
    spare.close()
    assert spare._thread is not None
    spare._thread.join(5)
    assert not spare._thread.is_alive()
    assert open_fds() == before
    late = spare.take(socket.AF_INET)  # after close: made on the spot, still a socket
    assert late.type == socket.SOCK_DGRAM
    late.close()


def test_rtp_streams_take_their_sockets_from_the_pool():
    spare = SpareSockets(spare=4, interval=0.005)
    spare.take(socket.AF_INET).close()  # asks for the family: the thread starts
    wait_for(lambda: len(spare._ready[socket.AF_INET]) == 4)
    taken = spare.taken
    with Engine() as engine:
        ports = RtpPorts(20000, 60000, spare=spare)
        stream = engine.run(lambda: ports.open(engine, RtpTicker(engine), "127.0.0.1",
                                               allow=None, name="rtp"))
        assert spare.taken == taken + 1
        assert 20000 <= stream.local[1] <= 60000 and stream.local[1] % 2 == 0
        engine.run(stream.close)
    spare.close()


def test_a_filler_that_cannot_make_sockets_warns_once_and_the_engine_makes_its_own(
        monkeypatch, caplog):
    made = []

    def out_of_descriptors(family: int, kind: int) -> socket.socket:
        raise OSError(24, "Too many open files")
    spare = SpareSockets(spare=4, interval=0.005)
    monkeypatch.setattr(spare_module.socket, "socket", out_of_descriptors)
    with pytest.raises(OSError, match="Too many open files"):
        spare.take(socket.AF_INET)  # the engine's own try says why
    time.sleep(0.05)  # the filler tries about ten times meanwhile
    warnings = [r for r in caplog.records if "no UDP socket made ahead" in r.message]
    assert len(warnings) == 1
    monkeypatch.undo()
    made.append(spare.take(socket.AF_INET))
    wait_for(lambda: len(spare._ready[socket.AF_INET]) == 4)  # it recovers by itself
    spare.close()
    made[0].close()
