"""A host over several backends: calls in from all of them, calls out by destination.

A PRI-to-SIP gateway takes calls on a TDM backend (``dahdi``, or ``sim``) and places them
on ``sip``; ``uascall run APP.py --backend sim --backend sip`` makes such a host with a
:class:`RoutingBackend` over the two. Incoming calls from every backend reach the host
alike. A call placed on one of its outbound channels goes where its ``call_to`` says,
read as UAS reads an outbound destination (spec §7):

- ``sip:...`` and ``sips:...`` URIs go to the SIP backend, and so does anything that is not
  a number (``alice@example.com`` becomes ``sip:alice@example.com``; a bare name goes to
  the SIP backend's ``outbound`` proxy as its user part);
- a number, digits optionally split once by ``-`` (``441908-273800``), or ``tel:`` and a
  number (``tel:+441908273800``; visual separators and parameters dropped), goes to the
  TDM backend when there is one, as digits, and otherwise to the SIP backend, whose
  ``outbound`` option says where bare numbers go;
- ``loc:`` and ``webrtc:`` destinations exist in UAS, not here: an ArgumentError.

The channel's ``route`` refines that: a TDM route (``pri``, ``pri:N``, ``fxs``, ``fxs:N``,
``fxo``, ``fxo:N``) is handed to the TDM backend with the numbers it carries (a SIP URI
still goes to SIP, without it); any other route (``host:port``) is the SIP backend's, and
sends numbers there too. When the chosen backend cannot take the call, the error names it
(``sim backend: no PRI span can place a call ...``).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from uascall.backend import Backend, CallLeg, NoRoute
from uascall.engine import Engine
from uascall.errors import ArgumentError

log = logging.getLogger(__name__)

#: route kinds that belong to a TDM backend (dahdi, sim); any other route is SIP's
TDM_ROUTE_KINDS = ("pri", "fxs", "fxo")
_NUMBER = re.compile(r"[0-9]+(?:-[0-9]+)?")
_TEL_NUMBER = re.compile(r"\+?[0-9]+")
_TEL_SEPARATORS = str.maketrans("", "", "-.() ")


@dataclass(frozen=True)
class Destination:
    """Where a call goes: ``backend``, with ``call_to`` and ``route`` in its terms."""

    backend: Backend
    call_to: str
    route: str | None


@dataclass(frozen=True)
class _Prepared:
    destination: Destination
    prepared: Any


def parse_destination(call_to: str) -> tuple[str, str]:
    """``("sip", uri_or_user)`` or ``("number", digits)`` for a UAS ``call_to``."""
    text = call_to.strip()
    lowered = text.lower()
    if lowered.startswith(("sip:", "sips:")):
        return "sip", text
    if lowered.startswith("tel:"):
        number = text[4:].split(";", 1)[0].translate(_TEL_SEPARATORS)
        if not _TEL_NUMBER.fullmatch(number):
            raise ArgumentError(f"call_to {call_to!r}: expected tel: and a number, such as "
                                "tel:441908273800 or tel:+1-555-0100")
        return "number", number
    if lowered.startswith(("loc:", "webrtc:")):
        raise ArgumentError(f"call_to {call_to!r}: {lowered.split(':', 1)[0]}: destinations "
                            "are Aculab Cloud's, not available here; expected a number, "
                            "tel:, or a SIP address")
    if _NUMBER.fullmatch(text):
        return "number", text.replace("-", "")
    if "@" in text:
        return "sip", f"sip:{text}"
    return "sip", text


def is_tdm_route(route: str | None) -> bool:
    return route is not None and route.partition(":")[0].strip().lower() in TDM_ROUTE_KINDS


class RoutingBackend(Backend):
    """Several backends as one (``backends``: at most one ``sip``, and the TDM ones:
    every other; the first TDM backend takes the numbers)."""

    def __init__(self, engine: Engine, backends: Sequence[Backend]) -> None:
        backends = list(backends)
        if len(backends) < 2:
            raise ArgumentError(f"a routing backend over {len(backends)} backend(s); "
                                "expected two or more (one is used as it is)")
        sips = [b for b in backends if b.name == "sip"]
        if len(sips) > 1:
            raise ArgumentError("two sip backends; expected one (it listens on several "
                                "addresses with its listen option)")
        self.backends = backends
        self.sip: Backend | None = sips[0] if sips else None
        self.tdm: Backend | None = next((b for b in backends if b.name != "sip"), None)
        super().__init__(engine)
        self.name = "+".join(b.name for b in backends)

    # on_incoming is each backend's, so that their calls reach the host directly
    @property  # type: ignore[override]
    def on_incoming(self) -> Callable[[CallLeg], None] | None:
        return self._on_incoming

    @on_incoming.setter
    def on_incoming(self, handler: Callable[[CallLeg], None] | None) -> None:
        self._on_incoming = handler
        for backend in self.backends:
            backend.on_incoming = handler

    def start(self) -> None:
        started: list[Backend] = []
        try:
            for backend in self.backends:
                backend.start()
                started.append(backend)
        except BaseException:
            for backend in reversed(started):
                try:
                    backend.stop()
                except Exception:
                    log.exception("%s backend: stopping it after another failed to start",
                                  backend.name)
            raise

    def drain(self) -> None:
        for backend in self.backends:
            backend.drain()

    def drain_announced(self) -> bool:
        return all(backend.drain_announced() for backend in self.backends)

    def stop(self) -> None:
        failure: BaseException | None = None
        for backend in self.backends:
            try:
                backend.stop()
            except Exception as exc:  # stop the others all the same
                log.exception("%s backend: stop failed", backend.name)
                failure = failure or exc
        if failure is not None:
            raise failure

    def destination(self, call_to: str, route: str | None = None) -> Destination:
        """Which backend a call to ``call_to`` on a channel with ``route`` goes to, and
        what it is given (module docstring). Raises ArgumentError when none can take it."""
        kind, target = parse_destination(call_to)
        if is_tdm_route(route):
            if kind == "sip":
                return Destination(self._need_sip(call_to, route), target, None)
            if self.tdm is None:
                raise ArgumentError(f"route {route!r} is a TDM route (dahdi or sim) and "
                                    f"this host has none ({self.name}); expected a SIP "
                                    "route (host:port) or none")
            return Destination(self.tdm, target, route)
        if route is not None or kind == "sip" or self.tdm is None:
            return Destination(self._need_sip(call_to, route), target, route)
        return Destination(self.tdm, target, None)

    def _need_sip(self, call_to: str, route: str | None) -> Backend:
        if self.sip is None:
            why = f"route {route!r}" if route is not None and not is_tdm_route(route) \
                else "a SIP destination"
            raise ArgumentError(f"call_to {call_to!r}: {why} needs the sip backend, and "
                                f"this host has none ({self.name}); expected a number for "
                                "its TDM backend")
        return self.sip

    def prepare_call(self, call_to: str, route: str | None = None) -> _Prepared:
        where = self.destination(call_to, route)
        with _naming(where, call_to):
            return _Prepared(where, where.backend.prepare_call(where.call_to, where.route))

    def place_call(self, call_to: str, call_from: str = "", *, route: str | None = None,
                   codecs: list[str] | None = None,
                   headers: list[tuple[str, str]] | None = None,
                   prepared: Any = None) -> CallLeg:
        if isinstance(prepared, _Prepared):
            where, inner = prepared.destination, prepared.prepared
        else:
            where, inner = self.destination(call_to, route), None
        with _naming(where, call_to):
            return where.backend.place_call(where.call_to, call_from, route=where.route,
                                            codecs=codecs, headers=headers, prepared=inner)


@contextlib.contextmanager
def _naming(where: Destination, call_to: str) -> Iterator[None]:
    """The chosen backend's refusals, said with its name and what it was given."""
    try:
        yield
    except (NoRoute, ArgumentError) as exc:
        given = where.call_to + (f", route {where.route!r}" if where.route else "")
        raise type(exc)(f"{where.backend.name} backend cannot take the call to {call_to!r} "
                        f"(as {given}): {exc}") from exc
