"""SIP transactions (RFC 3261 section 17, with RFC 6026's Accepted states), sans-I/O.

Theory of operation
-------------------
A transaction is one request and its responses, made reliable over UDP. Each class here
is a small state machine that takes inputs (a message from the wire, a response from the
transaction user, a timer firing) and returns a list of :class:`Action` objects for its
driver (:mod:`uascall.sip.useragent`) to carry out: send these bytes, arm or cancel a
timer, hand this message to the transaction user, the transaction is over. It reads no
clock and owns no socket; timers are requested by name and come back through
:meth:`Transaction.fire`, so tests can drive a transaction through a whole lifetime
without waiting.

The four machines (T1 = 500 ms, T2 = 4 s, T4 = 5 s, unreliable transport):

==========================  ===========================================================
server INVITE (17.2.1)      PROCEEDING -(2xx)-> ACCEPTED -(Timer L)-> TERMINATED;
                            PROCEEDING -(300-699)-> COMPLETED: Timer G resends the final
                            response (T1 doubling to T2), Timer H (64*T1) gives up;
                            ACK -> CONFIRMED -(Timer I)-> TERMINATED. A retransmitted
                            INVITE gets the last provisional again (or the final one).
server non-INVITE (17.2.2)  TRYING -(1xx)-> PROCEEDING -(final)-> COMPLETED -(Timer J)->
                            TERMINATED; retransmissions get the last response again.
client INVITE (17.1.1)      CALLING: Timer A resends (T1 doubling), Timer B (64*T1) gives
                            up; 1xx -> PROCEEDING (A and B stop); 2xx -> ACCEPTED (Timer
                            M; later 2xx go to the user, who ACKs them); 300-699 -> COMPLETED: the
                            transaction ACKs (and ACKs again each retransmission), Timer
                            D (64*T1 = 32 s) -> TERMINATED.
client non-INVITE (17.1.2)  TRYING: Timer E resends (T1 doubling to T2; at T2 once a
                            provisional came), Timer F (64*T1) gives up; final ->
                            COMPLETED -(Timer K)-> TERMINATED.
==========================  ===========================================================

A transaction's last timer (L, J, M, D: 64*T1 for all) is marked ``linger``: it only ends
a transaction that stays to absorb retransmissions, tens of thousands at once at hundreds of
calls a second, so a driver may keep them all in one :class:`ExpiryQueue` (one engine timer,
nothing for the cyclic GC to scan but the transactions) rather than a timer each.

An input a state does not expect (a response to send after the final one, say) raises
:class:`TransactionError` naming the transaction, its state and the input, and changes
nothing; messages from the wire that do not fit (a stray retransmission) are absorbed.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from uascall.errors import Error
from uascall.sip.message import Headers, Request, Response

log = logging.getLogger(__name__)

T1 = 0.5
T2 = 4.0
T4 = 5.0


@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261's timer base values (seconds). Smaller ones make tests fast; a network
    with long round trips may want a larger T1 (section 17.1.1.1)."""

    t1: float = T1
    t2: float = T2
    t4: float = T4

    def __post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2:
            raise ValueError(f"timers t1={self.t1}, t2={self.t2}; expected 0 < t1 <= t2")


DEFAULT_TIMERS = Timers()


class TransactionError(Error):
    """Our own misuse of a transaction (the transaction user's fault, not the peer's)."""


class TxState(Enum):
    TRYING = "trying"
    CALLING = "calling"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


# --------------------------------------------------------------------------- actions
@dataclass(frozen=True, slots=True)
class Action:
    """Something the driver must do for a transaction."""


@dataclass(frozen=True, slots=True)
class Send(Action):
    """Send these bytes to the transaction's peer."""

    data: bytes


@dataclass(frozen=True, slots=True)
class SetTimer(Action):
    """Arm timer ``name`` to fire in ``delay`` seconds (replacing one of that name).

    ``linger``: the transaction's last timer, 64*T1 for every transaction alike (L, J, M,
    D), which nothing cancels but the transaction's end: a driver may keep these in one
    :class:`ExpiryQueue` instead of a timer each.
    """

    name: str
    delay: float
    linger: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class CancelTimer(Action):
    name: str


@dataclass(frozen=True, slots=True)
class ToUser(Action):
    """Hand a message to the transaction user: a response (client), or an ACK for a
    non-2xx final response (server INVITE, for the user's information)."""

    message: Request | Response


@dataclass(frozen=True, slots=True)
class TimedOut(Action):
    """No answer (client: Timer B/F) or no ACK (server: Timer H): the user must give up."""


@dataclass(frozen=True, slots=True)
class Terminated(Action):
    """The transaction is over: forget it."""


Actions = list[Action]


# --------------------------------------------------------------------------- keys
def server_key(request: Request) -> tuple[str, str, str]:
    """The server transaction a request belongs to (RFC 3261 17.2.3): the top Via's branch
    and sent-by, and the method, with ACK matched to its INVITE. Requests whose branch lacks
    the magic cookie (RFC 2543 peers) fall back to Call-ID, CSeq number and From tag."""
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    sent_by = f"{via.host}:{via.port or 5060}"
    if branch.startswith("z9hG4bK") and len(branch) > 7:
        return branch, sent_by, method
    number, _ = request.cseq
    return f"2543:{request.call_id}:{number}:{request.from_.tag}", sent_by, method


def client_key(response: Response) -> tuple[str, str]:
    """The client transaction a response belongs to (17.1.3): top Via branch, CSeq method."""
    return response.top_via.branch or "", response.cseq[1]


# --------------------------------------------------------------------------- base
class Transaction:
    """What the four machines share: a state, a name for errors, armed timers."""

    kind = "transaction"

    def __init__(self, request: Request, timers: Timers = DEFAULT_TIMERS) -> None:
        self.request = request
        self.timers = timers
        self.method = request.method
        self.state = TxState.TRYING
        # The armed timers' names. A tuple, not a set: a transaction lingers 64*T1 after
        # its final response, tens of thousands at once, and the cyclic GC stops scanning
        # a tuple of strings once it has seen one, but scans a set at every pass.
        self._armed: tuple[str, ...] = ()
        # The driver's own: where the transaction sends, who hears it, its timer handles,
        # and (server) its key in the driver's table (client: see ClientTransaction).
        self.peer: Any = None
        self.endpoint: Any = None
        self.user: Any = None
        self.handles: dict[str, Any] = {}
        self.key: Any = None
        #: (server, request without a To-tag) its key in the driver's table of merged
        #: requests (RFC 3261 8.2.2.2)
        self.merge_key: Any = None
        #: (when it is due, timer name) while in an ExpiryQueue, else None
        self.lingering: tuple[float, str] | None = None

    def __repr__(self) -> str:
        request = self.request
        branch = request.top_via.branch if request is not None else "(request shed)"
        return f"<{type(self).__name__} {self.method} {branch} {self.state.name}>"

    @property
    def terminated(self) -> bool:
        return self.state is TxState.TERMINATED

    def fire(self, name: str) -> Actions:
        """Timer ``name`` went off (ignored when it was cancelled meanwhile)."""
        if name not in self._armed:
            return []
        self._disarm(name)
        handler = getattr(self, f"_timer_{name}", None)
        if handler is None:
            raise TransactionError(f"{self!r}: unknown timer {name!r}")
        return handler()

    def _set(self, name: str, delay: float, *, linger: bool = False) -> SetTimer:
        if name not in self._armed:
            self._armed += (name,)
        return SetTimer(name, delay, linger)

    def _disarm(self, name: str) -> None:
        self._armed = tuple(armed for armed in self._armed if armed != name)

    def _cancel(self, *names: str) -> Actions:
        out: Actions = []
        for name in names:
            if name in self._armed:
                self._disarm(name)
                out.append(CancelTimer(name))
        return out

    def _terminate(self) -> Actions:
        out = self._cancel(*sorted(self._armed))
        self.state = TxState.TERMINATED
        out.append(Terminated())
        return out

    def _refuse(self, what: str, expected: str) -> TransactionError:
        return TransactionError(f"{self!r}: {what} in state {self.state.name}; "
                                f"expected {expected}")


# --------------------------------------------------------------------------- server
class ServerTransaction(Transaction):
    """Base of the server machines: the last response, resent on retransmissions."""

    def __init__(self, request: Request, timers: Timers = DEFAULT_TIMERS) -> None:
        super().__init__(request, timers)
        self.last_response: Response | None = None
        self._last_bytes: bytes | None = None
        self._last_status = 0

    @property
    def final_status(self) -> int | None:
        return self._last_status if self._last_status >= 200 else None

    def _remember(self, response: Response) -> bytes:
        self.last_response = response
        self._last_status = response.status
        self._last_bytes = response.serialize()
        return self._last_bytes

    def shed(self) -> None:
        """Once the final response is sent, let go of the request and the response as
        objects: what is left to do (resend the final response's bytes to a
        retransmission, match an ACK by the driver's key, wait out the timers) needs
        neither. The transaction lingers 64*T1; at hundreds of calls a second the parsed
        messages of those 32 s were most of what the cyclic GC scanned (pauses of 300 ms
        and more in its full passes, which overload control rightly took for overload)."""
        if self._last_status < 200:
            raise self._refuse("shedding the request", "a final response sent first")
        self.request = None  # type: ignore[assignment]  # see the docstring
        self.last_response = None


class InviteServerTransaction(ServerTransaction):
    """17.2.1 with RFC 6026: see the module docstring. The 100 Trying is the driver's to
    send (through :meth:`respond`) at once: our user is an application thread that may
    take longer than the 200 ms the RFC allows."""

    kind = "server INVITE"

    def __init__(self, request: Request, timers: Timers = DEFAULT_TIMERS) -> None:
        super().__init__(request, timers)
        self.state = TxState.PROCEEDING
        self._g_interval = timers.t1

    def respond(self, response: Response) -> Actions:
        """The user sends ``response`` (1xx, 2xx or a final failure)."""
        if self.state is not TxState.PROCEEDING:
            raise self._refuse(f"sending {response.status}", "PROCEEDING (no final "
                               "response sent yet)")
        out: Actions = [Send(self._remember(response))]
        if response.status < 200:
            return out
        if response.status < 300:
            # The user (the call) retransmits its 2xx until the ACK; the transaction only
            # lingers to absorb INVITE retransmissions (RFC 6026 Timer L).
            self.state = TxState.ACCEPTED
            out.append(self._set("L", 64 * self.timers.t1, linger=True))
            return out
        self.state = TxState.COMPLETED
        out.append(self._set("G", self._g_interval))
        out.append(self._set("H", 64 * self.timers.t1))
        return out

    def receive(self, request: Request) -> Actions:
        """A retransmitted INVITE, or the ACK for our failure response."""
        if request.method == "ACK":
            if self.state is TxState.COMPLETED:
                self.state = TxState.CONFIRMED
                out = self._cancel("G", "H")
                out.append(self._set("I", self.timers.t4))
                out.append(ToUser(request))
                return out
            return []  # a late or repeated ACK: absorbed
        if self.state in (TxState.PROCEEDING, TxState.COMPLETED) and self._last_bytes:
            return [Send(self._last_bytes)]
        return []  # ACCEPTED: the user's 2xx retransmissions cover it

    def _timer_G(self) -> Actions:
        if self.state is not TxState.COMPLETED or self._last_bytes is None:
            return []
        self._g_interval = min(2 * self._g_interval, self.timers.t2)
        return [Send(self._last_bytes), self._set("G", self._g_interval)]

    def _timer_H(self) -> Actions:
        log.info("%r: no ACK for %s within 64*T1", self, self.final_status)
        return [TimedOut(), *self._terminate()]

    def _timer_I(self) -> Actions:
        return self._terminate()

    def _timer_L(self) -> Actions:
        return self._terminate()


class NonInviteServerTransaction(ServerTransaction):
    """17.2.2: see the module docstring."""

    kind = "server non-INVITE"

    def respond(self, response: Response) -> Actions:
        if self.state not in (TxState.TRYING, TxState.PROCEEDING):
            raise self._refuse(f"sending {response.status}", "TRYING or PROCEEDING")
        out: Actions = [Send(self._remember(response))]
        if response.status < 200:
            self.state = TxState.PROCEEDING
            return out
        self.state = TxState.COMPLETED
        out.append(self._set("J", 64 * self.timers.t1, linger=True))
        return out

    def receive(self, request: Request) -> Actions:
        if self.state is TxState.TRYING or self._last_bytes is None:
            return []
        return [Send(self._last_bytes)]

    def _timer_J(self) -> Actions:
        return self._terminate()


# --------------------------------------------------------------------------- client
class ClientTransaction(Transaction):
    """Base of the client machines: the request's bytes and its retransmission interval."""

    def __init__(self, request: Request, timers: Timers = DEFAULT_TIMERS) -> None:
        super().__init__(request, timers)
        self._bytes = request.serialize()
        self._interval = timers.t1
        self.key = (request.top_via.branch or "", request.method)

    def start(self) -> Actions:
        raise NotImplementedError


class InviteClientTransaction(ClientTransaction):
    """17.1.1 with RFC 6026: see the module docstring. ``ack_for`` builds the ACK for a
    failure response (the transaction's own, same branch)."""

    kind = "client INVITE"

    def __init__(self, request: Request, timers: Timers = DEFAULT_TIMERS) -> None:
        super().__init__(request, timers)
        self.state = TxState.CALLING
        self._ack: bytes | None = None

    def start(self) -> Actions:
        return [Send(self._bytes), self._set("A", self.timers.t1),
                self._set("B", 64 * self.timers.t1)]

    def receive(self, response: Response) -> Actions:
        status = response.status
        if self.state in (TxState.CALLING, TxState.PROCEEDING):
            # Timer B only bounds CALLING: a call may ring for minutes (RFC 3261 17.1.1.2).
            out = self._cancel("A", "B")
            if status < 200:
                self.state = TxState.PROCEEDING
                out.append(ToUser(response))
                return out
            if status < 300:
                self.state = TxState.ACCEPTED
                out += [ToUser(response), self._set("M", 64 * self.timers.t1, linger=True)]
                return out
            self.state = TxState.COMPLETED
            self._ack = build_ack_for_failure(self.request, response).serialize()
            out += [Send(self._ack), ToUser(response),
                    self._set("D", 64 * self.timers.t1, linger=True)]
            return out
        if self.state is TxState.ACCEPTED and 200 <= status < 300:
            return [ToUser(response)]  # a 2xx retransmission: the user ACKs it again
        if self.state is TxState.COMPLETED and status >= 300 and self._ack is not None:
            return [Send(self._ack)]
        return []

    def _timer_A(self) -> Actions:
        if self.state is not TxState.CALLING:
            return []
        self._interval *= 2
        return [Send(self._bytes), self._set("A", self._interval)]

    def _timer_B(self) -> Actions:
        if self.state is not TxState.CALLING:
            return []
        log.info("%r: no response within 64*T1", self)
        return [TimedOut(), *self._terminate()]

    def _timer_D(self) -> Actions:
        return self._terminate()

    def _timer_M(self) -> Actions:
        return self._terminate()


class NonInviteClientTransaction(ClientTransaction):
    """17.1.2: see the module docstring."""

    kind = "client non-INVITE"

    def start(self) -> Actions:
        return [Send(self._bytes), self._set("E", self.timers.t1),
                self._set("F", 64 * self.timers.t1)]

    def receive(self, response: Response) -> Actions:
        if self.state not in (TxState.TRYING, TxState.PROCEEDING):
            return []  # a retransmitted final response: absorbed
        if response.status < 200:
            self.state = TxState.PROCEEDING
            return [ToUser(response)]
        self.state = TxState.COMPLETED
        out = self._cancel("E", "F")
        out += [ToUser(response), self._set("K", self.timers.t4)]
        return out

    def _timer_E(self) -> Actions:
        if self.state not in (TxState.TRYING, TxState.PROCEEDING):
            return []
        t2 = self.timers.t2
        self._interval = t2 if self.state is TxState.PROCEEDING else min(2 * self._interval, t2)
        return [Send(self._bytes), self._set("E", self._interval)]

    def _timer_F(self) -> Actions:
        log.info("%r: no final response within 64*T1", self)
        return [TimedOut(), *self._terminate()]

    def _timer_K(self) -> Actions:
        return self._terminate()


# --------------------------------------------------------------------------- lingering
class ExpiryQueue:
    """The lingering transactions' last timers (``SetTimer.linger``), in one queue.

    Each call leaves two transactions lingering 64*T1 (32 s) after their final response,
    to absorb retransmissions: at a thousand calls a second, 64,000 of them. As engine
    timers each had a timer handle, a heap entry, an argument tuple and a slot in the
    transaction's handle table, all for the cyclic GC to scan at each full pass, and a heap
    of that size to keep in order. All of them run the same delay, so they come due in the
    order they were set: a FIFO of the transactions does the heap's work, with a single
    engine timer, for its head, on the driver's side. Each transaction keeps its own entry's
    deadline and timer name (a tuple of a float and a str, which the GC stops scanning
    after one look), so the queue holds nothing but the transactions themselves.

    Sans-I/O like the transactions: the driver tells the time. A transaction that ends
    before its entry comes due needs no removal: :meth:`Transaction.fire` ignores a timer
    it no longer has armed.
    """

    __slots__ = ("_entries", "delay")

    def __init__(self, delay: float) -> None:
        if not delay > 0:
            raise ValueError(f"expiry queue delay {delay!r}; expected a positive number of "
                             "seconds")
        self.delay = delay
        self._entries: collections.deque[Transaction] = collections.deque()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every entry (the driver stops, and cancels its timer)."""
        for tx in self._entries:
            tx.lingering = None
        self._entries.clear()

    def accepts(self, action: SetTimer) -> bool:
        """Whether ``action`` can be queued here (a lingering timer of this delay)."""
        return action.linger and action.delay == self.delay

    def add(self, now: float, tx: Transaction, name: str) -> float | None:
        """Queue ``tx``'s timer ``name`` for ``now + delay``. Returns the time to arm the
        driver's timer for, when the queue was empty; None when one is armed already
        (for an entry due no later than this one, as the engine's clock never goes
        back). A transaction is in the queue once at most: it lingers once."""
        if tx.lingering is not None:
            raise ValueError(f"{tx!r} is in the expiry queue already (timer "
                             f"{tx.lingering[1]}); expected one lingering timer a transaction")
        entries = self._entries
        tx.lingering = (now + self.delay, name)
        entries.append(tx)
        return now + self.delay if len(entries) == 1 else None

    def expire(self, now: float) -> tuple[list[tuple[Transaction, str]], float | None]:
        """The (transaction, timer name) entries due by ``now``, oldest first, taken out;
        and when the next one is due (to arm the driver's timer for), None when empty."""
        entries = self._entries
        due = []
        while entries:
            tx = entries[0]
            when, name = tx.lingering  # type: ignore[misc]  # set by add()
            if when > now:
                return due, when
            entries.popleft()
            tx.lingering = None
            due.append((tx, name))
        return due, None


class RefusedInvites:
    """The INVITEs refused statelessly with 503 in the last ``delay`` seconds (64*T1), by
    server transaction key, so that a retransmission of one is refused again.

    A stateless refusal keeps no transaction (RFC 3261 8.2.7), so without this a
    retransmission that arrives once the load has passed (it crossed our 503, or the 503
    was lost) would be taken as a new call: one its sender no longer has, since it ACKed
    the 503 and ended the transaction, and that would ring the application for nothing
    until its 2xx went unACKed. A 503 is the one stateless answer that depends on the
    moment; the others (400, 481, the 8.2 checks) come out the same from the request.

    Bounded: at most ``capacity`` keys (a key's hash and its deadline, about 150 bytes),
    the oldest forgotten first, so a flood at ten times capacity shortens how long a
    refusal is remembered instead of growing memory. Sans-I/O: the caller tells the time.
    """

    __slots__ = ("_deadlines", "_order", "capacity", "delay")

    def __init__(self, delay: float, capacity: int) -> None:
        if not delay > 0 or capacity < 1:
            raise ValueError(f"refused INVITEs kept {delay!r} s, at most {capacity!r}; "
                             "expected a positive time and count")
        self.delay = delay
        self.capacity = capacity
        self._deadlines: dict[int, float] = {}
        # (deadline, key) in the order refused; the deque, not the dict's order, is the
        # queue: a dict emptied from the front is scanned over its holes on each look
        self._order: collections.deque[tuple[float, int]] = collections.deque()

    def __len__(self) -> int:
        return len(self._deadlines)

    def add(self, key: tuple[str, str, str], now: float) -> None:
        """``key``'s INVITE was refused just now."""
        digest = hash(key)
        deadline = now + self.delay
        self._deadlines[digest] = deadline
        order = self._order
        order.append((deadline, digest))
        deadlines = self._deadlines
        while order and (order[0][0] <= now or len(order) > self.capacity):
            when, old = order.popleft()
            if deadlines.get(old) == when:  # not refused again since
                del deadlines[old]

    def refused(self, key: tuple[str, str, str], now: float) -> bool:
        """Whether ``key``'s INVITE was refused within the last ``delay`` seconds."""
        deadline = self._deadlines.get(hash(key))
        return deadline is not None and deadline > now

    def clear(self) -> None:
        self._deadlines.clear()
        self._order.clear()


def build_ack_for_failure(invite: Request, response: Response) -> Request:
    """The ACK a client INVITE transaction sends for a 300-699 response (RFC 3261 17.1.1.3):
    same Request-URI, top Via, From, Call-ID and CSeq number as the INVITE, the To of the
    response (with its tag), and the INVITE's Route headers."""
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq[0]} ACK")
    return Request("ACK", invite.uri, headers)
