"""Overload control under a flood: refusals kept nowhere, a flood from one source leaving
room for the others, callers with a record of completed calls served first, and every
table bounded (issue 12, 6)."""

from __future__ import annotations

import secrets
import threading
import time

import pytest

from tests.sim.sip_peer import (
    SipPeer,
    Uas,
    answered,
    held_by,
    incoming,
    refused_while_draining,
)
from uascall.channel import State
from uascall.sip import useragent
from uascall.sip.message import Response
from uascall.sip.transaction import RefusedInvites


def server_transactions(uas: Uas) -> int:
    return uas.engine.run(lambda: len(uas.backend.ua.server_tx))


def flood(peer: SipPeer, n: int) -> list[int]:
    """``n`` new INVITEs from ``peer``'s one socket, never ACKed: the status each got
    first (100 when taken)."""
    statuses = []
    for _ in range(n):
        peer.call_id = f"{secrets.token_hex(8)}@flood"
        peer.invite()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            got = [item.message for item in peer.poll(0.05)
                   if isinstance(item.message, Response)
                   and item.message.call_id == peer.call_id]
            if got:
                statuses.append(got[0].status)
                break
        else:
            statuses.append(0)
    return statuses


def test_an_invite_refused_for_overload_is_answered_statelessly():
    """No transaction is made for a 503: it is not retransmitted and nothing is kept (a
    flood of 80,000 INVITEs drew 564,254 retransmitted 503s and 385 MB); a retransmitted
    INVITE gets the same 503 again (same To-tag, RFC 3261 8.2.7), and the ACK for it is
    absorbed."""
    server = Uas(max_setups=0)  # every new INVITE is one too many
    peer = SipPeer(server.address)
    try:
        invite = peer.invite()
        busy = peer.expect(503)
        assert busy.headers.get("Retry-After") == "5"
        assert busy.to.tag  # RFC 3261 8.2.6.2: every final response has one
        later = peer.poll(0.6)  # Timer G would have resent it at 50, 100, 200, 400 ms
        assert [item.message for item in later] == []
        assert server_transactions(server) == 0
        peer.send(invite)  # the caller did not hear the 503: it retransmits
        again = peer.expect(503)
        assert again.to.tag == busy.to.tag
        assert peer.received[-1].data == peer.received[0].data
        peer.ack(busy)
        assert peer.poll(0.3) == []
        assert server_transactions(server) == 0
        assert server.engine.run(held_by, server.backend.ua) == []
    finally:
        peer.close()
        server.close()


def test_an_invite_refused_503_is_refused_again_when_retransmitted_after_the_load_passed():
    """A stateless 503 keeps no transaction, but its INVITE's key is kept for 64*T1: a
    retransmission that comes once the load has passed (it crossed the 503, or the 503
    was lost) gets the 503 again, where it used to be taken as a new call its sender had
    already ACKed away; a new INVITE is taken as usual."""
    server = Uas(max_setups=1)
    first = SipPeer(server.address)
    second = SipPeer(server.address, host="127.0.0.2")
    try:
        ringing = incoming(server, first)
        invite = second.invite()
        busy = second.expect(503)
        assert ringing.reject() is State.IDLE  # the load has passed
        second.send(invite)
        again = second.expect(503)
        assert (again.to.tag, again.headers.get("Retry-After")) == (busy.to.tag, "5")
        second.ack(busy)
        assert second.poll(0.3) == []
        assert server.calls.empty()  # no call offered for the retransmission
        stats = server.engine.run(lambda: server.backend.ua.stats)
        assert (stats.overloaded, stats.refused_again) == (1, 1)
        second.call_id = f"{secrets.token_hex(8)}@new"
        assert incoming(server, second).state() is State.CALL_INCOMING
    finally:
        first.close()
        second.close()
        server.close()


def test_retransmissions_while_draining_are_refused_again_not_remembered_again():
    """While draining, a retransmitted INVITE is known as one (counted, the same 503 with
    its Warning and To-tag), not remembered as a new refusal: each retransmission used to
    take a slot of the bounded table's queue."""
    server = Uas()
    peer = SipPeer(server.address)
    try:
        invite, busy = refused_while_draining(server, peer)
        for _ in range(3):
            peer.send(invite)
            again = peer.expect(503)
            assert (again.to.tag, again.headers.get("Warning")) == (
                busy.to.tag, '399 uascall "draining: not taking new calls"')
        ua = server.backend.ua
        stats = server.engine.run(lambda: ua.stats)
        assert stats.refused_again == 3
        assert server.engine.run(lambda: len(ua._refused._order)) == 1
    finally:
        peer.close()
        server.close()


def test_refused_invites_are_forgotten_after_64_t1_and_beyond_capacity():
    """RefusedInvites: a key is remembered for its delay, refusing it again restarts that,
    and the table holds ``capacity`` keys at most, the oldest forgotten first (a flood
    shortens how long a refusal is remembered; memory does not grow)."""
    refused = RefusedInvites(32.0, capacity=3)
    keys = [(f"z9hG4bK{n}", "127.0.0.1:5060", "INVITE") for n in range(5)]
    refused.add(keys[0], now=0.0)
    assert refused.refused(keys[0], now=31.9)
    assert not refused.refused(keys[0], now=32.0)
    assert not refused.refused(keys[1], now=1.0)
    refused.add(keys[0], now=10.0)  # refused again: 32 s from now
    assert refused.refused(keys[0], now=41.0)
    for n, key in enumerate(keys[1:4]):
        refused.add(key, now=11.0 + n)
    assert len(refused) == 3
    assert not refused.refused(keys[0], now=14.0)  # the oldest went for keys[3]
    assert all(refused.refused(key, now=14.0) for key in keys[1:4])
    refused.add(keys[4], now=50.0)  # the others' time is up: they go as it comes
    assert len(refused) == 1 and refused.refused(keys[4], now=50.0)
    with pytest.raises(ValueError, match="expected a positive time and count"):
        RefusedInvites(0.0, 10)


def test_requests_answered_at_once_keep_no_transaction(uas, peer):
    """OPTIONS, a method we do not serve, a BYE or OPTIONS for no dialog: answered
    statelessly, so a flood of them costs no memory for 64*T1; a retransmission gets the
    same bytes again."""
    options = peer.request("OPTIONS")
    for text in (options, peer.request("REGISTER"), peer.request("BYE", to_tag="gone"),
                 peer.request("OPTIONS", to_tag="gone")):
        peer.send(text)
        peer.poll(0.2)
    assert [item.message.status for item in peer.received] == [200, 405, 481, 200]
    assert server_transactions(uas) == 0
    peer.send(options)
    peer.poll(0.2)
    assert peer.received[-1].data == peer.received[0].data


def test_a_flood_from_one_source_leaves_room_for_a_caller_from_another():
    """One address floods INVITEs it never ACKs: it gets half of max_setups at most (from
    there the shares of sources with no completed call apply, and it holds more than its
    twentieth), and a caller from another address is still taken (the flood used to take
    every slot, so no one else got through)."""
    server = Uas(max_setups=40)
    flooder = SipPeer(server.address)
    caller = SipPeer(server.address, host="127.0.0.2")
    try:
        statuses = flood(flooder, 50)
        assert statuses.count(100) == 20 and statuses.count(503) == 30, statuses
        assert server_transactions(server) == 20  # the refusals kept nothing
        assert incoming(server, caller).state() is State.CALL_INCOMING
    finally:
        flooder.close()
        caller.close()
        server.close()


def test_a_new_source_with_many_calls_ringing_is_served_while_the_engine_keeps_up():
    """A caller whose first calls ring for seconds (early media, then the answer) has
    completed none yet: it is not refused for that while under half of max_setups are in
    use and the engine keeps up (issue 15: SIPp calling examples/early_media.py got 503s
    at a fifth of a core once it had max_setups/20 calls ringing)."""
    server = Uas(max_setups=40)
    caller = SipPeer(server.address)
    try:
        statuses = flood(caller, 19)
        assert statuses == [100] * 19, statuses
    finally:
        caller.close()
        server.close()


def test_a_source_with_completed_calls_is_served_when_others_fill_their_share():
    """Many sources with no completed call (a flood from forged addresses) may take nine
    tenths of max_setups together; the rest is kept for sources that completed calls
    before, and a request within a dialog is never refused for load."""
    server = Uas(max_setups=20)
    known = SipPeer(server.address, host="127.0.0.2")
    flooders = [SipPeer(server.address, host=f"127.0.1.{i}") for i in range(1, 21)]
    talking = SipPeer(server.address, host="127.0.0.3")
    try:
        first = answered(server, known)  # the ACK for our 200: a completed call
        known.bye()
        known.expect(200, method="BYE")
        assert first.wait_for_idle(5) is State.IDLE
        live = answered(server, talking)
        statuses = [status for peer in flooders for status in flood(peer, 1)]
        assert statuses.count(100) == 18 and statuses.count(503) == 2, statuses
        known.call_id = f"{secrets.token_hex(8)}@known"
        assert incoming(server, known).state() is State.CALL_INCOMING
        talking.bye()  # in its dialog: taken whatever the load
        talking.expect(200, method="BYE")
        assert live.wait_for_idle(5) is State.IDLE
    finally:
        for peer in (known, talking, *flooders):
            peer.close()
        server.close()


def test_a_source_whose_200_is_never_acked_loses_its_standing():
    server = Uas(max_setups=20)
    peer = SipPeer(server.address, host="127.0.0.2")
    ua = server.backend.ua
    try:
        channel = answered(server, peer)
        peer.bye()
        peer.expect(200, method="BYE")
        channel.wait_for_idle(5)
        assert server.engine.run(lambda: list(ua.known_sources)) == ["127.0.0.2"]
        peer.call_id = f"{secrets.token_hex(8)}@again"
        channel = incoming(server, peer)
        done = threading.Thread(target=channel.answer)
        done.start()
        peer.expect(200, method="INVITE")  # and never ACKed: BYE after 64*T1 (3.2 s)
        done.join(10)
        assert channel.wait_for_idle(10) is State.IDLE
        assert server.engine.run(lambda: list(ua.known_sources)) == []
    finally:
        peer.close()
        server.close()


def test_the_tables_of_sources_are_bounded(monkeypatch):
    """Sources with completed calls: the most recent KNOWN_SOURCES; counts per source:
    only while a source has calls being set up."""
    monkeypatch.setattr(useragent, "KNOWN_SOURCES", 3)
    server = Uas()
    ua = server.backend.ua
    try:
        for i in range(1, 6):
            peer = SipPeer(server.address, host=f"127.0.2.{i}")
            channel = answered(server, peer)
            assert server.engine.run(lambda: dict(ua.setups_by_source)) == {}
            peer.bye()
            peer.expect(200, method="BYE")
            channel.wait_for_idle(5)
            peer.close()
        assert server.engine.run(lambda: list(ua.known_sources)) == [
            "127.0.2.3", "127.0.2.4", "127.0.2.5"]
        peer = SipPeer(server.address, host="127.0.2.9")
        channel = incoming(server, peer)
        assert server.engine.run(lambda: dict(ua.setups_by_source)) == {"127.0.2.9": 1}
        channel.reject()
        peer.poll(0.3)
        assert server.engine.run(held_by, ua) == []
        assert server.engine.run(lambda: dict(ua.setups_by_source)) == {}
        peer.close()
    finally:
        server.close()


@pytest.mark.parametrize(("lag", "unknown", "known"), [
    (0.1, None, None), (0.3, "late", None), (0.5, "late", "late")])
def test_a_source_with_completed_calls_is_refused_only_at_twice_the_lag(lag, unknown, known):
    server = Uas(max_lag=0.2)
    ua = server.backend.ua
    try:
        def verdicts() -> tuple[str | None, str | None]:
            ua.known_sources["127.0.0.2"] = None
            ua._lag = lag  # as the probe left it
            return ua.overloaded("127.0.0.9"), ua.overloaded("127.0.0.2")

        got = server.engine.run(verdicts)
        assert [None if why is None else "late" for why in got] == [unknown, known], got
    finally:
        server.close()
