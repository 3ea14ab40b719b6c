"""SIP transactions (uascall.sip.transaction) driven bare: no sockets, no clock.

The machines are sans-I/O, so each test drives one h11-style through :class:`Driver`: it
feeds messages in, carries out the returned actions (remembering the armed timers by name
with their due time on a fake clock, and the sent bytes with the fake time they went out)
and advances the clock, firing the due timers in order. The expected numbers are RFC 3261's
(section 17, figures 5-8, table 4) with RFC 6026's Accepted states: T1 = 0.5 s, T2 = 4 s,
T4 = 5 s, 64*T1 = 32 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from uascall.sip.message import Request, Response, make_response, parse_message
from uascall.sip.transaction import (
    Action,
    CancelTimer,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    Send,
    SetTimer,
    Terminated,
    TimedOut,
    Timers,
    ToUser,
    Transaction,
    TransactionError,
    TxState,
    build_ack_for_failure,
    client_key,
    server_key,
)

DATA = Path(__file__).parent / "data" / "rfc4475"
EPS = 1e-9

# The two timer sets every timing test runs with: RFC 3261's defaults, and everything ten
# times faster (what a test suite uses). ``scale`` turns the RFC numbers into the expected.
RFC = Timers()
FAST = Timers(t1=0.05, t2=0.4, t4=0.5)


@pytest.fixture(params=[(RFC, 1.0), (FAST, 0.1)], ids=["rfc", "fast"])
def timing(request) -> tuple[Timers, float]:
    return request.param


# --------------------------------------------------------------------------- the driver
class Driver:
    """Carries out a transaction's actions against a fake clock.

    ``due`` maps each armed timer to its absolute due time; ``sent`` is every Send as
    (time, bytes); ``log`` every action as (time, action).
    """

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.now = 0.0
        self.due: dict[str, float] = {}
        self.sent: list[tuple[float, bytes]] = []
        self.log: list[tuple[float, Action]] = []
        self.terminated_at: float | None = None

    def run(self, actions: list[Action]) -> list[Action]:
        for action in actions:
            assert self.terminated_at is None, f"{action} after Terminated"
            self.log.append((self.now, action))
            if isinstance(action, Send):
                self.sent.append((self.now, action.data))
            elif isinstance(action, SetTimer):
                assert action.delay > 0
                self.due[action.name] = self.now + action.delay
            elif isinstance(action, CancelTimer):
                # a machine only cancels what it armed and has not seen fire
                assert action.name in self.due, f"cancel of unarmed timer {action.name}"
                del self.due[action.name]
            elif isinstance(action, Terminated):
                assert not self.due, f"Terminated with timers still armed: {self.due}"
                self.terminated_at = self.now
        return actions

    # inputs
    def start(self) -> list[Action]:
        return self.run(self.tx.start())  # type: ignore[attr-defined]

    def receive(self, message: Request | Response) -> list[Action]:
        return self.run(self.tx.receive(message))  # type: ignore[attr-defined]

    def respond(self, response: Response) -> list[Action]:
        return self.run(self.tx.respond(response))  # type: ignore[attr-defined]

    # the clock
    def advance_to(self, t: float) -> None:
        assert t >= self.now - EPS
        while True:
            ready = [(when, name) for name, when in self.due.items() if when <= t + EPS]
            if not ready:
                break
            when, name = min(ready)
            self.now = when
            del self.due[name]
            self.run(self.tx.fire(name))
        self.now = max(self.now, t)

    def advance(self, dt: float) -> None:
        self.advance_to(self.now + dt)

    # views
    def send_times(self, since: float = -1.0) -> list[float]:
        return [t for t, _ in self.sent if t > since]

    def fired(self, kind: type[Action]) -> list[float]:
        return [t for t, a in self.log if isinstance(a, kind)]


def backoff(first: float, cap: float | None, until: float, start: float = 0.0) -> list[float]:
    """Retransmission times: first after ``first``, interval doubling (up to ``cap``), up
    to (excluding) ``until``."""
    out = []
    interval = first
    t = start + interval
    while t < until - EPS:
        out.append(t)
        interval = interval * 2 if cap is None else min(interval * 2, cap)
        t += interval
    return out


# --------------------------------------------------------------------------- messages
def request(method: str = "INVITE", *, branch: str = "z9hG4bK74bf9", cseq: int = 1,
            uri: str = "sip:bob@biloxi.example.com", to_tag: str | None = None,
            routes: tuple[str, ...] = (), via_port: str = ":5060",
            from_tag: str = "9fxced76sl") -> Request:
    """A request as parsed from the wire (RFC 3261 section 24.2 style)."""
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP pc33.atlanta.example.com{via_port};branch={branch}",
        *(f"Route: {r}" for r in routes),
        "Max-Forwards: 70",
        "To: Bob <sip:bob@biloxi.example.com>" + (f";tag={to_tag}" if to_tag else ""),
        f"From: Alice <sip:alice@atlanta.example.com>;tag={from_tag}",
        "Call-ID: 3848276298220188511@atlanta.example.com",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:alice@pc33.atlanta.example.com>",
        "Content-Length: 0",
        "",
        "",
    ]
    message = parse_message("\r\n".join(lines).encode())
    assert isinstance(message, Request)
    return message


def wire(message: Request | Response) -> Request | Response:
    """``message`` as the far end would see it (serialized and parsed again)."""
    return parse_message(message.serialize())


def answer(req: Request, status: int, tag: str | None = "8321234356") -> Response:
    """A response to ``req`` as it arrives from the wire."""
    response = wire(make_response(req, status, to_tag=tag if status > 100 else None))
    assert isinstance(response, Response)
    return response


def ack_for(invite: Request, response: Response) -> Request:
    """The far end's ACK for our failure ``response`` (same branch as the INVITE)."""
    ack = wire(build_ack_for_failure(invite, response))
    assert isinstance(ack, Request)
    return ack


# =========================================================================== server INVITE
def server_invite(timers: Timers = RFC) -> tuple[Request, Driver]:
    invite = request()
    tx = InviteServerTransaction(invite, timers)
    assert tx.state is TxState.PROCEEDING  # 17.2.1: created straight into Proceeding
    return invite, Driver(tx)


def test_server_invite_retransmission_before_any_response_is_absorbed() -> None:
    _, d = server_invite()
    assert d.receive(request()) == []  # the driver sends the 100 itself, via respond()
    assert d.tx.state is TxState.PROCEEDING


def test_server_invite_resends_the_last_provisional() -> None:
    invite, d = server_invite()
    trying = make_response(invite, 100)
    progress = make_response(invite, 183, to_tag="as1")
    assert d.respond(trying) == [Send(trying.serialize())]
    assert d.respond(progress) == [Send(progress.serialize())]
    assert d.tx.state is TxState.PROCEEDING
    assert d.due == {}  # provisionals are not retransmitted by the server transaction
    d.advance(10.0)
    assert len(d.sent) == 2
    # 17.2.1: a retransmitted INVITE gets the most recent provisional, byte for byte
    again = d.receive(request())
    assert again == [Send(progress.serialize())]
    assert again[0].data == d.sent[1][1]
    assert d.receive(request()) == again
    assert d.tx.state is TxState.PROCEEDING
    assert d.tx.final_status is None
    assert d.tx.last_response is progress


def test_server_invite_2xx_goes_accepted_and_timer_l_ends_it(timing) -> None:
    timers, scale = timing
    invite, d = server_invite(timers)
    d.respond(make_response(invite, 180, to_tag="as1"))
    d.advance(3.0 * scale)
    ok = make_response(invite, 200, to_tag="as1")
    start = d.now
    assert d.respond(ok) == [Send(ok.serialize()), SetTimer("L", pytest.approx(32.0 * scale))]
    assert d.tx.state is TxState.ACCEPTED
    assert d.tx.final_status == 200
    # RFC 6026 7.1: INVITE retransmissions in Accepted are absorbed (the TU resends 2xx)
    d.advance(1.0 * scale)
    assert d.receive(request()) == []
    # the ACK for a 2xx is not the transaction's either
    assert d.receive(request("ACK", branch="z9hG4bKnew")) == []
    d.advance_to(start + 32.0 * scale - 0.01 * scale)
    assert d.terminated_at is None
    assert d.tx.state is TxState.ACCEPTED
    d.advance_to(start + 32.0 * scale)
    assert d.terminated_at == pytest.approx(start + 32.0 * scale)
    assert d.tx.terminated
    assert [a for _, a in d.log[-1:]] == [Terminated()]
    # the 200 went out once: retransmitting it is the TU's job (RFC 6026)
    assert [data for _, data in d.sent].count(ok.serialize()) == 1
    assert d.fired(TimedOut) == []


def test_server_invite_failure_timer_g_and_h(timing) -> None:
    timers, scale = timing
    invite, d = server_invite(timers)
    busy = make_response(invite, 486, to_tag="as1")
    actions = d.respond(busy)
    assert actions == [Send(busy.serialize()), SetTimer("G", pytest.approx(0.5 * scale)),
                       SetTimer("H", pytest.approx(32.0 * scale))]
    assert d.tx.state is TxState.COMPLETED
    assert d.tx.final_status == 486
    d.advance(40.0 * scale)
    # 17.2.1: Timer G at T1, then doubling up to T2, until Timer H (64*T1) gives up
    expected = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert expected == backoff(0.5, 4.0, 32.0)
    assert d.send_times() == pytest.approx([0.0] + [t * scale for t in expected])
    assert all(data == busy.serialize() for _, data in d.sent)
    assert d.fired(TimedOut) == pytest.approx([32.0 * scale])
    assert d.terminated_at == pytest.approx(32.0 * scale)
    # H: TimedOut, G (still armed) cancelled, Terminated
    h = [a for t, a in d.log if t == d.terminated_at]
    assert h == [TimedOut(), CancelTimer("G"), Terminated()]
    assert d.tx.state is TxState.TERMINATED


def test_server_invite_retransmitted_invite_in_completed_gets_the_final() -> None:
    invite, d = server_invite()
    d.respond(make_response(invite, 100))
    busy = make_response(invite, 486, to_tag="as1")
    d.respond(busy)
    d.advance(0.2)
    assert d.receive(request()) == [Send(busy.serialize())]
    assert d.tx.state is TxState.COMPLETED
    # the retransmission does not disturb Timer G's schedule
    d.advance_to(4.0)
    assert d.send_times() == pytest.approx([0.0, 0.0, 0.2, 0.5, 1.5, 3.5])


def test_server_invite_ack_confirms_then_timer_i(timing) -> None:
    timers, scale = timing
    invite, d = server_invite(timers)
    busy = make_response(invite, 486, to_tag="as1")
    d.respond(busy)
    d.advance(2.0 * scale)
    assert d.send_times() == pytest.approx([0.0, 0.5 * scale, 1.5 * scale])
    ack = ack_for(invite, wire(busy))
    assert server_key(ack) == server_key(invite)
    actions = d.receive(ack)
    # 17.2.1: ACK in Completed -> Confirmed, G ignored from now on, Timer I = T4
    assert actions == [CancelTimer("G"), CancelTimer("H"),
                       SetTimer("I", pytest.approx(5.0 * scale)), ToUser(ack)]
    assert d.tx.state is TxState.CONFIRMED
    assert d.due == {"I": pytest.approx(7.0 * scale)}
    # Confirmed absorbs ACK and INVITE retransmissions
    d.advance(1.0 * scale)
    assert d.receive(ack_for(invite, wire(busy))) == []
    assert d.receive(request()) == []
    assert d.tx.state is TxState.CONFIRMED
    d.advance_to(7.0 * scale - 0.01 * scale)
    assert d.terminated_at is None
    d.advance_to(40.0 * scale)
    assert d.terminated_at == pytest.approx(7.0 * scale)
    assert d.fired(TimedOut) == []  # no Timer H: the ACK came
    assert len(d.sent) == 3  # nothing sent after the ACK


def test_server_invite_ack_in_proceeding_is_absorbed() -> None:
    invite, d = server_invite()
    d.respond(make_response(invite, 180, to_tag="as1"))
    assert d.receive(request("ACK")) == []
    assert d.tx.state is TxState.PROCEEDING


@pytest.mark.parametrize("final", [200, 486])
@pytest.mark.parametrize("late", [100, 183, 200, 500])
def test_server_invite_respond_after_final_raises(final: int, late: int) -> None:
    invite, d = server_invite()
    d.respond(make_response(invite, final, to_tag="as1"))
    state = d.tx.state
    due = dict(d.due)
    sent = list(d.sent)
    last = d.tx.last_response
    with pytest.raises(TransactionError, match=state.name) as info:
        d.respond(make_response(invite, late, to_tag="as1"))
    assert str(late) in str(info.value)
    assert "PROCEEDING" in str(info.value)  # what was expected
    assert d.tx.state is state
    assert d.due == due and d.sent == sent
    assert d.tx.last_response is last
    # and the machine still works: a retransmitted INVITE is handled as before
    assert d.receive(request()) == ([Send(last.serialize())] if final == 486 else [])


def test_server_invite_respond_after_terminated_raises() -> None:
    invite, d = server_invite()
    d.respond(make_response(invite, 200, to_tag="as1"))
    d.advance(100.0)
    assert d.tx.terminated
    with pytest.raises(TransactionError, match="TERMINATED"):
        d.respond(make_response(invite, 200, to_tag="as1"))


def test_server_invite_fired_timer_after_cancel_is_ignored() -> None:
    invite, d = server_invite()
    busy = make_response(invite, 486, to_tag="as1")
    d.respond(busy)
    d.receive(ack_for(invite, wire(busy)))
    # the driver lost the race: G and H fire although the ACK cancelled them
    assert d.tx.fire("G") == []
    assert d.tx.fire("H") == []
    assert d.tx.fire("L") == []  # never armed at all
    assert d.tx.state is TxState.CONFIRMED
    d.advance(10.0)
    assert d.terminated_at == pytest.approx(5.0)
    assert d.tx.fire("I") == []  # once only


# =========================================================================== server non-INVITE
def server_non_invite(timers: Timers = RFC) -> tuple[Request, Driver]:
    bye = request("BYE", to_tag="as1", cseq=2)
    tx = NonInviteServerTransaction(bye, timers)
    assert tx.state is TxState.TRYING
    return bye, Driver(tx)


def test_server_non_invite_retransmission_in_trying_is_ignored() -> None:
    _, d = server_non_invite()
    assert d.receive(request("BYE", to_tag="as1", cseq=2)) == []
    assert d.tx.state is TxState.TRYING
    assert d.sent == []


def test_server_non_invite_provisional_then_retransmission() -> None:
    bye, d = server_non_invite()
    trying = make_response(bye, 100)
    assert d.respond(trying) == [Send(trying.serialize())]
    assert d.tx.state is TxState.PROCEEDING
    assert d.receive(request("BYE", to_tag="as1", cseq=2)) == [Send(trying.serialize())]


def test_server_non_invite_final_resent_and_timer_j(timing) -> None:
    timers, scale = timing
    bye, d = server_non_invite(timers)
    ok = make_response(bye, 200)
    assert d.respond(ok) == [Send(ok.serialize()), SetTimer("J", pytest.approx(32.0 * scale))]
    assert d.tx.state is TxState.COMPLETED
    assert d.tx.final_status == 200
    d.advance(5.0 * scale)
    # 17.2.2: in Completed every retransmission gets the final response again
    assert d.receive(request("BYE", to_tag="as1", cseq=2)) == [Send(ok.serialize())]
    d.advance(3.0 * scale)
    assert d.receive(request("BYE", to_tag="as1", cseq=2)) == [Send(ok.serialize())]
    d.advance_to(32.0 * scale - 0.01 * scale)
    assert d.terminated_at is None
    d.advance_to(100.0 * scale)
    assert d.terminated_at == pytest.approx(32.0 * scale)
    # the server never retransmits on its own: only the answers to the two retransmissions
    assert d.send_times() == pytest.approx([0.0, 5.0 * scale, 8.0 * scale])


@pytest.mark.parametrize("late", [100, 200, 500])
def test_server_non_invite_respond_after_final_raises(late: int) -> None:
    bye, d = server_non_invite()
    d.respond(make_response(bye, 200))
    with pytest.raises(TransactionError, match="COMPLETED") as info:
        d.respond(make_response(bye, late))
    assert str(late) in str(info.value)
    assert d.tx.state is TxState.COMPLETED
    assert d.tx.final_status == 200
    assert list(d.due) == ["J"]


# =========================================================================== client INVITE
def client_invite(timers: Timers = RFC, **kw) -> tuple[Request, Driver]:
    invite = request(**kw)
    tx = InviteClientTransaction(invite, timers)
    assert tx.state is TxState.CALLING
    d = Driver(tx)
    actions = d.start()
    assert actions == [Send(invite.serialize()), SetTimer("A", timers.t1),
                       SetTimer("B", 64 * timers.t1)]
    return invite, d


def test_client_invite_timer_a_and_b(timing) -> None:
    timers, scale = timing
    invite, d = client_invite(timers)
    d.advance(40.0 * scale)
    # 17.1.1.2: Timer A doubles each time, with no T2 cap, until Timer B (64*T1)
    expected = [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert expected[1:] == backoff(0.5, None, 32.0)
    assert d.send_times() == pytest.approx([t * scale for t in expected])
    assert all(data == invite.serialize() for _, data in d.sent)
    assert d.fired(TimedOut) == pytest.approx([32.0 * scale])
    assert d.terminated_at == pytest.approx(32.0 * scale)
    assert [a for t, a in d.log if t == d.terminated_at] == [
        TimedOut(), CancelTimer("A"), Terminated()]
    assert d.tx.state is TxState.TERMINATED


def test_client_invite_provisional_stops_retransmissions() -> None:
    invite, d = client_invite()
    d.advance(1.0)
    ringing = answer(invite, 180)
    actions = d.receive(ringing)
    assert actions[-1] == ToUser(ringing)
    assert CancelTimer("A") in actions
    # (cancelling B here too is the right fix of the Timer B bug below)
    assert set(actions[:-1]) <= {CancelTimer("A"), CancelTimer("B")}
    assert d.tx.state is TxState.PROCEEDING
    # further provisionals go to the user too
    progress = answer(invite, 183)
    assert d.receive(progress) == [ToUser(progress)]
    assert d.tx.state is TxState.PROCEEDING
    d.advance(20.0)
    assert d.send_times() == [0.0, 0.5]  # nothing after the 180


def test_client_invite_timer_b_does_not_fire_in_proceeding() -> None:
    """A call may ring for minutes: Timer B bounds CALLING only (RFC 3261 17.1.1.2)."""
    invite, d = client_invite()
    d.advance(1.0)
    d.receive(answer(invite, 180))
    d.advance(60.0)  # a long ring: well past 64*T1
    assert d.fired(TimedOut) == []
    assert d.tx.state is TxState.PROCEEDING
    ok = answer(invite, 200)
    actions = d.receive(ok)
    assert ToUser(ok) in actions
    assert d.tx.state is TxState.ACCEPTED


def test_client_invite_2xx_accepted_and_timer_m(timing) -> None:
    timers, scale = timing
    invite, d = client_invite(timers)
    d.advance(0.7 * scale)
    ok = answer(invite, 200)
    actions = d.receive(ok)
    # RFC 6026 7.2: 2xx -> Accepted, passed up, Timer M = 64*T1
    assert actions == [CancelTimer("A"), CancelTimer("B"), ToUser(ok),
                       SetTimer("M", pytest.approx(32.0 * scale))]
    assert d.tx.state is TxState.ACCEPTED
    d.advance(2.0 * scale)
    # a retransmitted 2xx (or one from another fork) goes to the user, who ACKs it
    again = answer(invite, 200)
    assert d.receive(again) == [ToUser(again)]
    forked = answer(invite, 200, tag="fork2")
    assert d.receive(forked) == [ToUser(forked)]
    # anything else is absorbed
    assert d.receive(answer(invite, 180)) == []
    assert d.receive(answer(invite, 486)) == []
    assert d.send_times() == pytest.approx([0.0, 0.5 * scale])  # the transaction never ACKs a 2xx
    d.advance_to(0.7 * scale + 32.0 * scale - 0.01 * scale)
    assert d.terminated_at is None
    d.advance(1.0 * scale)
    assert d.terminated_at == pytest.approx(32.7 * scale)
    assert d.fired(TimedOut) == []
    assert d.receive(answer(invite, 200)) == []  # the user agent core's business now


def test_client_invite_provisional_then_2xx() -> None:
    invite, d = client_invite()
    d.receive(answer(invite, 180))
    d.advance(5.0)
    ok = answer(invite, 200)
    actions = d.receive(ok)
    assert ToUser(ok) in actions
    assert SetTimer("M", 32.0) in actions
    assert d.tx.state is TxState.ACCEPTED
    assert set(d.due) == {"M"}


def test_client_invite_failure_is_acked(timing) -> None:
    timers, scale = timing
    routes = ("<sip:p1.example.com;lr>, <sip:p2.example.com;lr>", "<sip:p3.example.com;lr>")
    invite, d = client_invite(timers, routes=routes, uri="sip:bob@192.0.2.4;transport=udp")
    d.advance(0.7 * scale)
    busy = answer(invite, 486)
    actions = d.receive(busy)
    assert len(actions) == 5
    assert actions[:2] == [CancelTimer("A"), CancelTimer("B")]
    assert isinstance(actions[2], Send)
    assert actions[3:] == [ToUser(busy), SetTimer("D", pytest.approx(32.0 * scale))]
    assert d.tx.state is TxState.COMPLETED
    # 17.1.1.3: the ACK
    ack = parse_message(actions[2].data)
    assert isinstance(ack, Request)
    assert ack.method == "ACK"
    assert ack.uri == invite.uri
    assert ack.headers.get_all("Via") == [invite.headers.get_all("Via")[0]]
    assert ack.top_via.branch == invite.top_via.branch
    assert ack.headers.get("From") == invite.headers.get("From")
    assert ack.to == busy.to
    assert ack.to.tag == "8321234356"
    assert ack.call_id == invite.call_id
    assert ack.cseq == (invite.cseq[0], "ACK")
    assert ack.headers.get_all("Route") == [
        "<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>", "<sip:p3.example.com;lr>"]
    assert ack.headers.get("Max-Forwards") == "70"
    assert ack.body == b""
    assert "Contact" not in ack.headers
    # the ACK belongs to the INVITE's server transaction at the far end
    assert server_key(ack) == server_key(invite)
    # a retransmitted 486 gets the same ACK again, and is not passed up again
    d.advance(1.0 * scale)
    assert d.receive(answer(invite, 486)) == [Send(actions[2].data)]
    assert d.tx.state is TxState.COMPLETED
    d.advance(1.0 * scale)
    assert d.receive(answer(invite, 486)) == [Send(actions[2].data)]
    assert d.receive(answer(invite, 200)) == []  # not a failure: absorbed
    assert d.receive(answer(invite, 180)) == []
    assert d.send_times() == pytest.approx([0, 0.5 * scale, 0.7 * scale, 1.7 * scale,
                                            2.7 * scale])
    # Timer D: 32 s on an unreliable transport
    d.advance_to(0.7 * scale + 32.0 * scale - 0.01 * scale)
    assert d.terminated_at is None
    d.advance(1.0 * scale)
    assert d.terminated_at == pytest.approx(32.7 * scale)
    assert d.fired(TimedOut) == []
    assert [a for t, a in d.log if t == d.terminated_at] == [Terminated()]


def test_client_invite_failure_after_provisional_is_acked() -> None:
    invite, d = client_invite()
    d.receive(answer(invite, 183))
    d.advance(3.0)
    refused = answer(invite, 603)
    actions = d.receive(refused)
    sends = [a for a in actions if isinstance(a, Send)]
    assert len(sends) == 1
    ack = parse_message(sends[0].data)
    assert isinstance(ack, Request)
    assert (ack.method, ack.cseq, ack.top_via.branch) == ("ACK", (1, "ACK"),
                                                           invite.top_via.branch)
    assert ToUser(refused) in actions
    assert d.tx.state is TxState.COMPLETED
    assert "D" in d.due and "A" not in d.due


def test_client_invite_key_matches_its_responses() -> None:
    invite, d = client_invite()
    assert d.tx.key == ("z9hG4bK74bf9", "INVITE")
    assert client_key(answer(invite, 180)) == d.tx.key
    assert client_key(answer(invite, 486)) == d.tx.key
    cancel = request("CANCEL")
    assert client_key(answer(cancel, 200)) == ("z9hG4bK74bf9", "CANCEL") != d.tx.key
    assert client_key(answer(request(branch="z9hG4bKother"), 180)) != d.tx.key


def test_client_invite_fired_timer_after_cancel_is_ignored() -> None:
    invite, d = client_invite()
    d.receive(answer(invite, 180))
    assert d.tx.fire("A") == []  # cancelled by the 180
    assert d.tx.fire("D") == []  # never armed
    assert d.tx.state is TxState.PROCEEDING
    assert d.sent == [(0.0, invite.serialize())]


# =========================================================================== client non-INVITE
def client_non_invite(timers: Timers = RFC) -> tuple[Request, Driver]:
    bye = request("BYE", to_tag="8321234356", cseq=2, branch="z9hG4bKbye1")
    tx = NonInviteClientTransaction(bye, timers)
    assert tx.state is TxState.TRYING
    d = Driver(tx)
    assert d.start() == [Send(bye.serialize()), SetTimer("E", timers.t1),
                         SetTimer("F", 64 * timers.t1)]
    return bye, d


def test_client_non_invite_timer_e_and_f(timing) -> None:
    timers, scale = timing
    bye, d = client_non_invite(timers)
    d.advance(40.0 * scale)
    # 17.1.2.2: Timer E at T1, doubling up to T2, until Timer F (64*T1)
    expected = [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert expected[1:] == backoff(0.5, 4.0, 32.0)
    assert d.send_times() == pytest.approx([t * scale for t in expected])
    assert all(data == bye.serialize() for _, data in d.sent)
    assert d.fired(TimedOut) == pytest.approx([32.0 * scale])
    assert [a for t, a in d.log if t == d.terminated_at] == [
        TimedOut(), CancelTimer("E"), Terminated()]
    assert d.terminated_at == pytest.approx(32.0 * scale)


def test_client_non_invite_timer_e_every_t2_in_proceeding(timing) -> None:
    timers, scale = timing
    bye, d = client_non_invite(timers)
    d.advance(0.2 * scale)
    trying = answer(bye, 100)
    assert d.receive(trying) == [ToUser(trying)]
    assert d.tx.state is TxState.PROCEEDING
    d.advance(40.0 * scale)
    # E still fires at 0.5 (armed in Trying), then every T2 (17.1.2.2); F still at 64*T1
    expected = [0.0, 0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]
    assert d.send_times() == pytest.approx([t * scale for t in expected])
    assert d.fired(TimedOut) == pytest.approx([32.0 * scale])
    assert d.tx.terminated


def test_client_non_invite_final_completes_and_timer_k(timing) -> None:
    timers, scale = timing
    bye, d = client_non_invite(timers)
    d.advance(1.0 * scale)
    trying = answer(bye, 100)
    d.receive(trying)
    d.advance(1.0 * scale)
    ok = answer(bye, 200)
    actions = d.receive(ok)
    assert actions == [CancelTimer("E"), CancelTimer("F"), ToUser(ok),
                       SetTimer("K", pytest.approx(5.0 * scale))]
    assert d.tx.state is TxState.COMPLETED
    # retransmitted finals (and late provisionals) are absorbed
    d.advance(1.0 * scale)
    assert d.receive(answer(bye, 200)) == []
    assert d.receive(answer(bye, 100)) == []
    assert d.tx.state is TxState.COMPLETED
    d.advance_to(7.0 * scale - 0.01 * scale)
    assert d.terminated_at is None
    d.advance(1.0 * scale)
    assert d.terminated_at == pytest.approx(7.0 * scale)
    assert d.send_times() == pytest.approx([0.0, 0.5 * scale, 1.5 * scale])
    assert d.fired(TimedOut) == []
    assert [a for _, a in d.log if isinstance(a, ToUser)] == [ToUser(trying), ToUser(ok)]


def test_client_non_invite_fired_timer_after_cancel_is_ignored() -> None:
    bye, d = client_non_invite()
    d.receive(answer(bye, 200))
    assert d.tx.fire("E") == []
    assert d.tx.fire("F") == []
    assert d.tx.state is TxState.COMPLETED
    assert len(d.sent) == 1


# =========================================================================== timers
def test_timers_defaults_are_rfc_3261() -> None:
    assert (RFC.t1, RFC.t2, RFC.t4) == (0.5, 4.0, 5.0)


def test_timers_scaled_keep_t4_unless_given() -> None:
    timers = Timers(t1=0.05, t2=0.4)
    assert (timers.t1, timers.t2, timers.t4) == (0.05, 0.4, 5.0)
    invite, d = server_invite(timers)
    busy = make_response(invite, 486, to_tag="as1")
    d.respond(busy)
    assert d.due == {"G": 0.05, "H": pytest.approx(3.2)}
    d.receive(ack_for(invite, wire(busy)))
    assert d.due == {"I": 5.0}


@pytest.mark.parametrize("kwargs", [
    {"t1": 0}, {"t1": -0.5}, {"t1": 5.0}, {"t1": 1.0, "t2": 0.5}, {"t1": 0.5, "t2": 0},
])
def test_timers_rejects_bad_values(kwargs) -> None:
    with pytest.raises(ValueError, match="t1"):
        Timers(**kwargs)


def test_timers_t1_equal_t2_is_allowed() -> None:
    _, d = client_non_invite(Timers(t1=1.0, t2=1.0))
    d.advance(5.5)
    assert d.send_times() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


# =========================================================================== keys
def test_server_key_uses_branch_sent_by_and_method() -> None:
    invite = request()
    assert server_key(invite) == ("z9hG4bK74bf9", "pc33.atlanta.example.com:5060", "INVITE")
    # no port means 5060
    assert server_key(request(via_port="")) == server_key(invite)
    assert server_key(request(via_port=":5070")) != server_key(invite)
    assert server_key(request(branch="z9hG4bKother")) != server_key(invite)


def test_server_key_ack_maps_to_the_invite() -> None:
    invite = request()
    busy = answer(invite, 486)
    ack = ack_for(invite, busy)
    assert server_key(ack) == server_key(invite)
    # CANCEL shares the branch but is a transaction of its own (9.2)
    assert server_key(request("CANCEL")) != server_key(invite)
    assert server_key(request("CANCEL"))[2] == "CANCEL"
    # the ACK for a 2xx is a new transaction (new branch): it matches no INVITE
    assert server_key(request("ACK", branch="z9hG4bK2xxack", to_tag="t")) != server_key(invite)


def _rfc2543_invite() -> bytes:
    path = DATA / "inv2543.dat"
    if path.exists():
        return path.read_bytes()
    return (b"INVITE sip:UserB@example.com SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP iftgw.example.com\r\n"
            b"From: <sip:+13035551111@ift.client.example.net;user=phone>\r\n"
            b"To: sip:+16505552222@ss1.example.net;user=phone\r\n"
            b"Call-ID: inv2543.1717@ift.client.example.com\r\n"
            b"CSeq: 56 INVITE\r\n\r\n")


def test_server_key_rfc2543_fallback() -> None:
    data = _rfc2543_invite()
    invite = parse_message(data)
    assert isinstance(invite, Request)
    assert invite.top_via.branch is None
    key = server_key(invite)
    # 17.2.3: no magic cookie, so Call-ID, CSeq number and From tag identify it
    assert key[0].startswith("2543:")
    assert invite.call_id in key[0] and ":56:" in key[0]
    assert key[1:] == ("iftgw.example.com:5060", "INVITE")
    assert server_key(parse_message(data)) == key  # a retransmission
    # its ACK (To with our tag, CSeq 56 ACK) belongs to it
    ack = build_ack_for_failure(invite, make_response(invite, 486, to_tag="x1"))
    assert server_key(wire(ack)) == key
    # another CSeq is another transaction
    other = parse_message(data.replace(b"CSeq: 56 INVITE", b"CSeq: 57 INVITE"))
    assert server_key(other) != key


def test_server_key_rfc2543_keys_on_from_tag_and_call_id() -> None:
    for branch in ("1", "z9hG4bK"):  # no cookie, or the cookie alone
        a = request(branch=branch, from_tag="aaa")
        assert server_key(a)[0] == f"2543:{a.call_id}:1:aaa"
        assert server_key(request(branch="zzz", from_tag="aaa")) == server_key(a)
        assert server_key(request(branch=branch, from_tag="bbb")) != server_key(a)
        assert server_key(request(branch=branch, cseq=2, from_tag="aaa")) != server_key(a)


def test_client_key_is_branch_and_cseq_method() -> None:
    bye = request("BYE", branch="z9hG4bKbye1", to_tag="t")
    tx = NonInviteClientTransaction(bye)
    assert tx.key == ("z9hG4bKbye1", "BYE")
    assert client_key(answer(bye, 200)) == tx.key
    assert client_key(answer(bye, 481)) == tx.key


def test_transaction_repr_names_method_branch_and_state() -> None:
    tx = InviteServerTransaction(request())
    assert repr(tx) == "<InviteServerTransaction INVITE z9hG4bK74bf9 PROCEEDING>"


@pytest.mark.parametrize("final", [200, 486])
def test_server_invite_shed_after_final_still_absorbs_retransmissions(final: int) -> None:
    """What lingers 64*T1 after the final response is the response's bytes, not the
    parsed request and response (issue 15: the cyclic GC's full passes scanned them)."""
    invite, d = server_invite()
    with pytest.raises(TransactionError, match="final response"):
        d.tx.shed()  # before the final response: the request is still needed
    response = make_response(invite, final, to_tag="as1")
    d.respond(response)
    d.tx.shed()
    assert d.tx.request is None and d.tx.last_response is None
    assert d.tx.final_status == final
    assert "request shed" in repr(d.tx)
    again = d.receive(request())
    assert again == ([Send(response.serialize())] if final == 486 else [])
    if final == 486:  # and the ACK still confirms it
        assert any(isinstance(a, ToUser) for a in d.receive(request("ACK")))
        assert d.tx.state is TxState.CONFIRMED


def test_server_non_invite_shed_after_final_still_absorbs_retransmissions() -> None:
    bye, d = server_non_invite()
    ok = make_response(bye, 200)
    d.respond(ok)
    d.tx.shed()
    assert d.tx.request is None and d.tx.final_status == 200
    assert d.receive(request("BYE", to_tag="as1", cseq=2)) == [Send(ok.serialize())]
