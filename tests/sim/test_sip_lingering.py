"""Lingering transactions' last timers in one ExpiryQueue (uascall.sip.transaction).

A transaction's final timer (L, J: the server's; M, D: the client's) is 64*T1 for every
transaction alike, so these come due in the order they were set, and a driver can keep them
in one FIFO with one engine timer instead of a timer each. Driven here bare, with a fake
clock, as test_sip_transaction.py drives the machines: a transaction whose timer waits in
the queue still answers a retransmitted request until its time is up, and is over after.
The last test is the same through the SIP backend on real UDP, whichever way its user agent
keeps the timers.
"""

from __future__ import annotations

import time

import pytest

from tests.sim.sip_peer import FAST, SipPeer, Uas, answered
from uascall.sip.message import Request, make_response, parse_message
from uascall.sip.transaction import (
    ExpiryQueue,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    Send,
    SetTimer,
    Terminated,
    Timers,
    Transaction,
)

TIMERS = Timers()
LINGER = 64 * TIMERS.t1


def request(method: str, branch: str = "z9hG4bK1") -> Request:
    data = (f"{method} sip:uas@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}\r\n"
            "From: <sip:uac@127.0.0.1>;tag=a\r\nTo: <sip:uas@127.0.0.1>;tag=b\r\n"
            f"Call-ID: c@h\r\nCSeq: 2 {method}\r\nContent-Length: 0\r\n\r\n").encode()
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


class QueueDriver:
    """Carries out actions as a user agent does: lingering timers go to one ExpiryQueue
    (whose single timer is ``armed_for``), the others are kept by name."""

    def __init__(self) -> None:
        self.now = 0.0
        self.queue = ExpiryQueue(LINGER)
        self.armed_for: float | None = None
        self.timers: dict[tuple[Transaction, str], float] = {}
        self.sent: list[tuple[float, bytes]] = []
        self.terminated: dict[Transaction, float] = {}

    def run(self, tx: Transaction, actions: list) -> list:
        for action in actions:
            if isinstance(action, Send):
                self.sent.append((self.now, action.data))
            elif isinstance(action, SetTimer) and self.queue.accepts(action):
                first_due = self.queue.add(self.now, tx, action.name)
                if first_due is not None:
                    assert self.armed_for is None
                    self.armed_for = first_due
            elif isinstance(action, SetTimer):
                self.timers[(tx, action.name)] = self.now + action.delay
            elif isinstance(action, Terminated):
                self.terminated[tx] = self.now
        return actions

    def advance_to(self, t: float) -> None:
        while self.armed_for is not None and self.armed_for <= t:
            self.now = self.armed_for
            due, self.armed_for = self.queue.expire(self.now)
            for tx, name in due:
                self.run(tx, tx.fire(name))
        self.now = t


def test_a_transaction_in_the_queue_answers_retransmissions_until_its_time_is_up() -> None:
    d = QueueDriver()
    bye = request("BYE")
    tx = NonInviteServerTransaction(bye, TIMERS)
    ok = make_response(bye, 200)
    d.run(tx, tx.respond(ok))
    tx.shed()
    assert len(d.queue) == 1 and d.armed_for == pytest.approx(LINGER) and not d.timers
    d.advance_to(LINGER - 0.1)
    assert d.run(tx, tx.receive(request("BYE"))) == [Send(ok.serialize())]
    assert not tx.terminated
    d.advance_to(LINGER)
    assert tx.terminated and d.terminated[tx] == pytest.approx(LINGER)
    assert len(d.queue) == 0 and d.armed_for is None  # Terminated: the driver forgets it


def test_entries_come_due_in_order_with_one_timer_for_the_head() -> None:
    d = QueueDriver()
    txs = []
    for i in range(5):
        d.now = i * 0.25
        invite = request("INVITE", f"z9hG4bK{i}")
        tx = InviteServerTransaction(invite, TIMERS)
        d.run(tx, tx.respond(make_response(invite, 200, to_tag="t")))
        txs.append(tx)
    assert len(d.queue) == 5 and d.armed_for == pytest.approx(LINGER)  # set once, for the first
    d.advance_to(LINGER + 0.3)
    assert [tx.terminated for tx in txs] == [True, True, False, False, False]
    assert d.armed_for == pytest.approx(LINGER + 0.5)  # re-armed for the new head
    d.advance_to(LINGER + 1.0)
    assert all(tx.terminated for tx in txs)
    assert [d.terminated[tx] for tx in txs] == pytest.approx(
        [LINGER + 0.25 * i for i in range(5)])
    assert d.armed_for is None and len(d.queue) == 0


def test_an_entry_whose_transaction_ended_before_is_ignored() -> None:
    d = QueueDriver()
    invite = request("INVITE")
    tx = InviteClientTransaction(invite, TIMERS)
    d.run(tx, tx.start())
    d.run(tx, tx.receive(make_response(invite, 486, to_tag="t")))  # Timer D, queued
    assert len(d.queue) == 1
    d.run(tx, tx.fire("D"))  # ended another way first (here: its timer, early)
    assert tx.terminated
    ended_at = d.terminated.pop(tx)
    d.advance_to(LINGER + 1)
    assert tx not in d.terminated and ended_at == 0.0  # not ended twice
    assert len(d.queue) == 0


def test_only_the_last_timers_linger_and_equality_ignores_the_mark() -> None:
    bye, invite = request("BYE"), request("INVITE")
    marks = {}
    for tx, actions in (
            (NonInviteServerTransaction(bye, TIMERS), None),
            (InviteServerTransaction(invite, TIMERS), None)):
        actions = tx.respond(make_response(tx.request, 200, to_tag="t"))
        marks.update({a.name: a.linger for a in actions if isinstance(a, SetTimer)})
    client = InviteClientTransaction(invite, TIMERS)
    marks.update({a.name: a.linger for a in client.start() if isinstance(a, SetTimer)})
    marks.update({a.name: a.linger for a in client.receive(make_response(invite, 200,
                  to_tag="t")) if isinstance(a, SetTimer)})
    other = NonInviteClientTransaction(bye, TIMERS)
    marks.update({a.name: a.linger for a in other.start() if isinstance(a, SetTimer)})
    marks.update({a.name: a.linger for a in other.receive(make_response(bye, 200))
                  if isinstance(a, SetTimer)})
    assert marks == {"J": True, "L": True, "A": False, "B": False, "M": True, "E": False,
                     "F": False, "K": False}
    assert SetTimer("L", LINGER, linger=True) == SetTimer("L", LINGER)
    queue = ExpiryQueue(LINGER)
    assert queue.accepts(SetTimer("L", LINGER, linger=True))
    assert not queue.accepts(SetTimer("L", LINGER))  # not marked
    assert not queue.accepts(SetTimer("L", 3.2, linger=True))  # another delay: not in order


def test_a_delay_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ValueError, match="expected a positive"):
        ExpiryQueue(0)


def test_a_transaction_lingers_once() -> None:
    queue = ExpiryQueue(LINGER)
    tx = NonInviteServerTransaction(request("BYE"), TIMERS)
    assert queue.add(0.0, tx, "J") == pytest.approx(LINGER)
    assert tx.lingering == (pytest.approx(LINGER), "J")
    with pytest.raises(ValueError, match=r"in the expiry queue already \(timer J\)"):
        queue.add(1.0, tx, "J")
    assert queue.expire(LINGER) == ([(tx, "J")], None)
    assert tx.lingering is None


def test_a_cleared_queue_starts_over() -> None:
    """A driver that stops clears its queue with its timer; the next entry arms it anew."""
    queue = ExpiryQueue(LINGER)
    old = NonInviteServerTransaction(request("BYE"), TIMERS)
    queue.add(0.0, old, "J")
    queue.clear()
    assert len(queue) == 0 and old.lingering is None
    new = NonInviteServerTransaction(request("BYE", "z9hG4bK2"), TIMERS)
    assert queue.add(5.0, new, "J") == pytest.approx(5.0 + LINGER)
    assert queue.expire(5.0 + LINGER) == ([(new, "J")], None)


def test_a_retransmitted_bye_gets_the_same_200_until_64_t1_and_a_481_after() -> None:
    uas = Uas()  # FAST timers: 64*T1 = 3.2 s
    peer = SipPeer(uas.address)
    try:
        channel = answered(uas, peer)
        bye = peer.bye()
        sent = time.monotonic()
        ok = peer.expect(200, method="BYE")
        channel.wait_for_idle()
        linger = 64 * FAST.t1
        # Half-way through 64*T1 (the BYE's timer began no earlier than ``sent``; the
        # margin is for a loaded machine's late wake-ups)
        time.sleep(max(0.0, sent + linger / 2 - time.monotonic()))
        peer.send(bye)  # the lingering transaction resends its 200
        again = peer.expect(200, method="BYE")
        assert (again.status, again.to.tag, again.cseq) == (ok.status, ok.to.tag, ok.cseq)
        ua = uas.backend.ua
        assert uas.engine.run(lambda: len(ua.server_tx)) == 2  # the INVITE's and the BYE's
        time.sleep(max(0.0, sent + linger - time.monotonic()))
        deadline = time.monotonic() + 3.0
        while uas.engine.run(lambda: len(ua.server_tx)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert uas.engine.run(lambda: len(ua.server_tx)) == 0  # both gone after 64*T1
        peer.send(bye)  # the transaction and the dialog are gone: no such call
        peer.expect(481, method="BYE")
    finally:
        peer.close()
        uas.close()
