"""The SIP backend when things go wrong inside one call: nothing of it may be left behind
(a call object, a dialog, an RTP stream, an overload-control slot, a timer)."""

from __future__ import annotations

import collections
import gc
import random
import socket
import threading
import time
import warnings

import pytest

from tests.sim.sip_peer import SipPeer, answered, held_by, incoming
from uascall.backend import Cause
from uascall.channel import State, UASCallChannel
from uascall.engine import Engine
from uascall.errors import ArgumentError, Error, Hangup
from uascall.sip.backend import SipBackend
from uascall.sip.call import SipCall


@pytest.mark.parametrize("host", ["a..b", "x" * 64 + ".example"])
def test_a_contact_no_route_can_be_found_for_leaves_nothing_behind(uas, peer, host):
    """A caller whose Contact names a host that cannot even be looked up (an empty label,
    a label over 63 characters: UnicodeError from the IDNA codec) and that never ACKs our
    200: after 64*T1 the call is ended and everything of it freed (it stayed ENDING for
    ever, its setup slot taken: 2,000 such datagrams refused every later call)."""
    channel = incoming(uas, peer, contact=f"<sip:peer@{host}:5060>")
    got: list[State] = []
    thread = threading.Thread(target=lambda: got.append(channel.answer()))
    thread.start()
    peer.expect(200, method="INVITE")
    thread.join(10)
    assert got == [State.IDLE]
    assert wait_until_empty(uas) == []


def wait_until_empty(uas, seconds: float = 10.0) -> list[str]:
    deadline = time.monotonic() + seconds
    while (held := uas.engine.run(held_by, uas.backend.ua)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return held


def test_any_failure_in_a_calls_step_ends_that_call_and_frees_it(uas, peer, monkeypatch):
    """Not only that exception: whatever a step of a call raises (here sending the BYE
    after 64*T1 without an ACK), the call ends there, nothing of it left."""
    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug in sending the BYE")

    monkeypatch.setattr(SipCall, "_send_bye", broken)
    channel = incoming(uas, peer)
    got: list[State] = []
    thread = threading.Thread(target=lambda: got.append(channel.answer()))
    thread.start()
    peer.expect(200, method="INVITE")
    thread.join(10)
    assert got == [State.IDLE] and channel.cause() is Cause.FAILED
    assert wait_until_empty(uas) == []
    # and the next call is taken as usual
    second = SipPeer(uas.address)
    try:
        second.invite()
        second.expect(100)
        assert uas.channel().state() is State.CALL_INCOMING
    finally:
        second.close()


def test_no_name_is_looked_up_on_the_engine_thread(uas, monkeypatch):
    """A slow resolver must not stall every call's media: names in a call() are looked up
    on the application's thread; on the engine only IP addresses are taken (in-dialog
    requests to a name fall back to where the dialog's messages come from)."""
    real = socket.getaddrinfo
    on_engine: list[str] = []

    def watched(host, *args, **kwargs):
        if threading.current_thread().name == uas.engine.name and not (
                kwargs.get("flags", 0) & socket.AI_NUMERICHOST):
            on_engine.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", watched)
    channel = UASCallChannel(uas.engine, backend=uas.backend, media_clock=uas.clock)
    assert channel.call("sip:nobody@localhost:9", seconds_timeout=0.3) is State.IDLE
    with pytest.raises(ArgumentError, match="cannot resolve"):
        channel.call("sip:nobody@no-such-host.invalid")
    with pytest.raises(ArgumentError, match="not an IP address"):  # straight on the engine
        uas.engine.run(uas.backend.place_call, "sip:x@localhost:9")
    assert on_engine == []


def test_a_bye_racing_plays_gives_hangup_never_error(uas):
    """The caller's BYE at any moment against plays starting one after the other: each
    ends HANGUP or raises Hangup, never Error (822 of 10,455 calls of a soak ended with
    Error "... has no media path now")."""
    rng = random.Random(12)
    outcomes: collections.Counter[str] = collections.Counter()
    for _ in range(25):
        peer = SipPeer(uas.address)
        try:
            channel = answered(uas, peer)
            threading.Timer(rng.uniform(0.0, 0.15), peer.bye).start()
            for _ in range(40):
                try:
                    outcomes[channel.TonePlayer.play("RINGBACK_EU", 0.02).name] += 1
                except Hangup:
                    outcomes["Hangup"] += 1
                    break
                except Error as exc:
                    outcomes[f"Error: {exc}"] += 1
                    break
        finally:
            time.sleep(0.05)
            peer.close()
    assert not [k for k in outcomes if k.startswith("Error")], outcomes
    assert outcomes["Hangup"] + outcomes["HANGUP"] >= 20, outcomes


def test_a_listen_address_in_use_leaves_no_socket_of_the_others_open():
    """Starting on two addresses when the second is taken: the error names it, and the
    first address's socket is closed with it (a restart on the same ports would find it
    taken by our own dead user agent)."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    free = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    free.bind(("127.0.0.1", 0))
    free_port = free.getsockname()[1]
    free.close()
    with Engine() as engine, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(Error, match=str(taken.getsockname()[1])):
            SipBackend(engine, listen=[f"127.0.0.1:{free_port}",
                                       f"127.0.0.1:{taken.getsockname()[1]}"])
        gc.collect()
        assert not [w for w in caught if issubclass(w.category, ResourceWarning)], \
            "a socket was left for the garbage collector to close"
        again = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        again.bind(("127.0.0.1", free_port))  # EADDRINUSE if our socket were left open
        again.close()
    taken.close()
