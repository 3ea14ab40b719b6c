"""RTP sockets made ahead off the engine thread (uascall/sip/spare.py)."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time

import pytest

from uascall.engine import Engine
from uascall.sip import spare as spare_module
from uascall.sip.media import RtpPorts, RtpTicker
from uascall.sip.spare import SpareSockets
from uascall.sip.transport import TransportError


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


def test_out_of_descriptors_the_spare_ones_are_given_back_with_one_warning(
        monkeypatch, caplog):
    spare = SpareSockets(spare=4, interval=0.005, back_off=0.1)
    spare.take(socket.AF_INET).close()
    spare.take(socket.AF_INET6).close()  # both families: one warning all the same
    wait_for(lambda: all(len(spare._ready[f]) == 4 for f in spare_module.FAMILIES))
    real_socket = socket.socket

    def out_of_descriptors(family: int, kind: int) -> socket.socket:
        raise OSError(errno.EMFILE, "Too many open files")
    monkeypatch.setattr(spare_module.socket, "socket", out_of_descriptors)
    held = [spare.take(socket.AF_INET)]  # the filler tops up, and finds none
    wait_for(lambda: not any(spare._ready.values()))  # what it held is given back
    time.sleep(0.05)  # within the back-off: it tries no more, warns no more
    with pytest.raises(OSError, match="Too many open files"):
        spare.take(socket.AF_INET)  # the engine's own try says why
    monkeypatch.setattr(spare_module.socket, "socket", real_socket)
    wait_for(lambda: all(len(spare._ready[f]) == 4 for f in spare_module.FAMILIES))
    warnings = [r for r in caplog.records if "out of descriptors" in r.message]
    assert len(warnings) == 1
    spare.close()
    held[0].close()


def test_a_filler_that_cannot_start_is_tried_again_and_sockets_are_made_meanwhile(
        monkeypatch):
    spare = SpareSockets(spare=2, interval=0.005)
    real_start = threading.Thread.start

    def no_thread(self):
        raise RuntimeError("can't start new thread")
    monkeypatch.setattr(threading.Thread, "start", no_thread)
    first = spare.take(socket.AF_INET)  # made on the spot, no exception
    assert spare._thread is None and spare.made_on_the_spot == 1
    monkeypatch.setattr(threading.Thread, "start", real_start)
    monkeypatch.setattr(spare_module, "RETRY_START", 0.0)
    spare.take(socket.AF_INET).close()
    assert spare._thread is not None
    wait_for(lambda: len(spare._ready[socket.AF_INET]) == 2)
    spare.close()
    first.close()


def test_a_stream_that_cannot_have_a_socket_says_why_at_once(monkeypatch):
    def out_of_descriptors(family: int) -> socket.socket:
        raise OSError(errno.EMFILE, "Too many open files")
    with Engine() as engine:
        ports = RtpPorts(20000, 60000)
        ticker = RtpTicker(engine)
        # another address than this machine's: no port of the range would bind
        unbindable = r"cannot bind UDP 192\.0\.2\.1:\d+: Cannot assign"
        with pytest.raises(TransportError, match=unbindable):
            engine.run(ports.open, engine, ticker, "192.0.2.1", allow=None, name="rtp 1")
        spare = SpareSockets(spare=1)
        spare.take = out_of_descriptors  # type: ignore[method-assign]
        ports.spare = spare
        with pytest.raises(TransportError, match="rtp 2: cannot make a UDP socket: Too many"):
            engine.run(ports.open, engine, ticker, "127.0.0.1", allow=None, name="rtp 2")
        spare.close()
