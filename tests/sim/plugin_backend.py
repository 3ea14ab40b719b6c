"""A backend from "another package": what a plug-in installed under the ``uascall.backends``
entry point needs to be configured and driven from the ``uascall`` command.

``refuser``: its far end refuses every call placed through it, with ``--refuser-cause``
(``uascall call``), and with ``--refuser-calls N`` offers N calls to the application
(``uascall run``), each cleared by the far end ``--refuser-hold`` seconds after the
answer. Nothing real under it, so it keeps virtual time too. It keeps what it was
constructed with in :attr:`RefusingBackend.opened`, for the test to look at.
"""

from __future__ import annotations

from typing import Any

from uascall.backend import (
    REJECT_CAUSES,
    Backend,
    CallLeg,
    Cause,
    FarEndDriver,
    LegAnswered,
    LegCleared,
)


class RefusedLeg(CallLeg):
    """A call through the refuser: one of ours it refuses, or one of its own to us."""

    def __init__(self, backend: RefusingBackend, *, incoming: bool, call_to: str,
                 call_from: str) -> None:
        self.backend = backend
        self.incoming = incoming
        self.call_to, self.call_from = call_to, call_from
        self.cleared = False

    def describe(self) -> str:
        return f"refuser call to {self.call_to}"

    @property
    def live(self) -> bool:
        return not self.cleared

    def alert(self, early_media: bool, codecs: list[str] | None = None) -> bool:
        return False

    def answer(self, codecs: list[str] | None = None) -> None:
        engine = self.backend.engine
        engine.call_soon(self._emit, LegAnswered())
        engine.call_later(self.backend.hold, self._clear, Cause.NORMAL, "remote")

    def release(self, cause: Cause, raw_cause: str | None = None) -> Cause | None:
        self.backend.engine.call_soon(self._clear, cause, "local")
        return cause

    def _clear(self, cause: Cause, by: str) -> None:
        if not self.cleared:
            self.cleared = True
            self._emit(LegCleared(cause, cause.value, by))


class RefusingBackend(Backend):
    name = "refuser"
    virtual_time = True
    opened: list[dict[str, Any]] = []

    def __init__(self, engine: Any, *, cause: str = "busy", calls: int = 0,
                 hold: float = 0.5) -> None:
        super().__init__(engine)
        self.cause = Cause[cause.upper()]
        self.calls, self.hold = calls, hold
        RefusingBackend.opened.append({"cause": cause, "calls": calls, "hold": hold})

    @classmethod
    def add_arguments(cls, group: Any, command: str) -> None:
        group.add_argument("--refuser-cause", default="busy",
                           choices=[cause.value for cause in REJECT_CAUSES],
                           help="why the far end refuses our calls (default %(default)s)")
        if command == "run":
            group.add_argument("--refuser-calls", type=int, default=0, metavar="N",
                               help="calls the far end places to the application")
            group.add_argument("--refuser-hold", type=float, default=0.5,
                               metavar="SECONDS", help="how long it keeps them answered")

    @classmethod
    def options_from_arguments(cls, args: Any, command: str) -> dict[str, Any]:
        options: dict[str, Any] = {"cause": args.refuser_cause}
        if command == "run":
            options.update(calls=args.refuser_calls, hold=args.refuser_hold)
        return options

    def command_line_far_end(self, args: Any, command: str) -> FarEndDriver | None:
        return Caller(self) if self.calls else None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def place_call(self, call_to: str, call_from: str = "", **_options: Any) -> CallLeg:
        leg = RefusedLeg(self, incoming=False, call_to=call_to, call_from=call_from)
        self.engine.call_later(0.1, leg._clear, self.cause, "remote")
        return leg


class Caller(FarEndDriver):
    """The refuser's far end calling the application ``--refuser-calls`` times."""

    def __init__(self, backend: RefusingBackend) -> None:
        self.backend = backend
        self.legs: list[RefusedLeg] = []

    def place_calls(self, host: Any) -> None:
        backend, engine = self.backend, self.backend.engine
        for n in range(backend.calls):
            leg = RefusedLeg(backend, incoming=True, call_to="100", call_from=f"20{n}")
            self.legs.append(leg)
            engine.run(backend._offer, leg)
        assert engine.wait_until(lambda: all(leg.cleared for leg in self.legs), 30)
        host.join(10)

    def report(self) -> None:
        print(f"refuser: {len(self.legs)} calls placed")
