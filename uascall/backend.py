"""The contract between :class:`~uascall.channel.UASCallChannel` and a backend.

A backend (``dahdi``, ``sim``, ``sip``) turns its calls into :class:`CallLeg` objects and
hands new incoming ones to ``Backend.on_incoming``. Legs live on the engine thread: the
channel calls their methods there and never blocks in them; what happens later (the far
end answered, the call cleared) comes back as :class:`LegEvent` objects through
``CallLeg.listener``.

Media goes both ways. Out: through a leg's :class:`MediaPort`, one 20 ms G.711 frame at a
time. In: every backend hands what the far end sends to :meth:`CallLeg._received`, its
one receive path (python-can's ``_recv_internal`` is the model: each backend implements
how it gets the audio once, the base class what is done with it), which delivers 20 ms
frames, in order, to the listener set with :meth:`CallLeg.listen`: the channel, whose DTMF
detector, barge-in and recorder are subscribers above every backend.

Backends are found by name (python-can style): the table :data:`BACKENDS`, merged with the
``uascall.backends`` entry-point group, maps a name to ``module:Class``; :func:`open_backend`
imports it lazily, so a machine without libpri can still use the SIP backend.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from importlib import metadata
from typing import Any

from uascall import faultlog
from uascall.engine import Engine
from uascall.errors import ArgumentError, BackendUnavailable, Error

log = logging.getLogger(__name__)


class Cause(Enum):
    """Why a call ended (UAS's ``UASCallChannel.Cause``). NORMAL while it has not."""

    TIMEOUT = "timeout"
    ERROR = "error"
    NORMAL = "normal"
    BUSY = "busy"
    NOANSWER = "noanswer"
    UNOBTAINABLE = "unobtainable"
    CHANGED = "changed"
    OUTOFORDER = "outoforder"
    BARRED = "barred"
    REJECTED = "rejected"
    NOCHANNELS = "nochannels"
    CONGESTION = "congestion"
    FAILED = "failed"
    OTHER = "other"


#: the causes reject() accepts (UAS's documented list)
REJECT_CAUSES = (Cause.BUSY, Cause.NOANSWER, Cause.UNOBTAINABLE, Cause.CHANGED,
                 Cause.OUTOFORDER, Cause.BARRED, Cause.REJECTED, Cause.NOCHANNELS,
                 Cause.CONGESTION)


# --------------------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class LegEvent:
    """Something that happened to a leg, reported on the engine thread."""


@dataclass(frozen=True, slots=True)
class LegAlerting(LegEvent):
    """Outgoing: the far end is being alerted (``inband``: it sends ringback itself)."""

    inband: bool


@dataclass(frozen=True, slots=True)
class LegAnswered(LegEvent):
    """The call is connected: our answer was acknowledged, or the far end answered."""


@dataclass(frozen=True, slots=True)
class LegCleared(LegEvent):
    """The call is over. ``raw_cause`` is the protocol's own (a Q.850 cause, a SIP status);
    ``by`` is "remote", "local" or "span"/"network" (an alarm, a lost link)."""

    cause: Cause
    raw_cause: str
    by: str


@dataclass(frozen=True, slots=True)
class LegDigit(LegEvent):
    """The far end sent a DTMF digit out of band: the key went down, or with ``ended``
    came up again. ``source`` says how: ``"rfc4733"`` (a telephone-event) or ``"info"``
    (a SIP INFO); a far end that sends one press both ways gives one digit."""

    digit: str
    ended: bool = False
    source: str = "rfc4733"


# --------------------------------------------------------------------------- media
#: bytes of one 20 ms G.711 frame, what the receive path delivers
FRAME_BYTES = 160


class MediaPort:
    """Where a call's outgoing audio goes: 160-byte G.711 frames in :attr:`law`."""

    #: "alaw" or "ulaw"
    law: str = "ulaw"
    #: whether the far end takes DTMF out of band (RFC 4733 telephone-events), see
    #: :meth:`send_digit`
    telephone_events: bool = False
    #: whether the line has a tone generator of its own for DTMF, see :meth:`start_digit`
    sounds_digits: bool = False
    #: whether a key held on that generator keeps the line's time when the engine runs
    #: late (a DAHDI channel's kernel does; a SIP stream's ticker skips the ticks a late
    #: engine missed, and the far end plays packets by their timestamps): where it does
    #: not, a player's keys go as frames, each a packet of the key's timeline
    keys_keep_time: bool = False

    def write(self, frame: bytes) -> bool:
        """Queue one frame; False when the port is full for now (try again next tick).

        Raises OSError (DeviceError) when the port is gone for good.
        """
        raise NotImplementedError

    def flush(self) -> None:
        """Drop what is queued and not yet sent, so that the far end stops hearing it now
        (barge-in). Nothing to do where nothing waits."""

    def queued(self) -> int | None:
        """Frames written and not yet sent, where the port can tell (None where it
        cannot: a DAHDI channel's kernel buffers)."""
        return None

    def limit_queue(self, frames: int | None) -> None:
        """Hold at most ``frames`` frames (not fewer than 2) queued and not yet sent, so
        that a write beyond them is refused (a bridge's audio: no delay beyond that);
        None gives the port back its own length (a player's lead and slack). What is
        queued may be dropped on the change."""

    def send_digit(self, digit: str, duration_ms: int) -> None:
        """Send ``digit`` out of band, the key held ``duration_ms``; only where
        :attr:`telephone_events` is true. The audio gives way while it lasts."""
        raise Error(f"{type(self).__name__} cannot send DTMF out of band; expected it to "
                    "be played in band")

    def start_digit(self, digit: str) -> bool:
        """Key ``digit`` down on the line's own tone generator: its DTMF sounds in band
        from now until :meth:`stop_digit`, in place of the audio queued, on the line's
        clock (a late engine lengthens the key, never breaks it in two). False where the
        port has no such generator or it refused: then the caller plays the tone itself.
        While the key is down nothing may be written (on DAHDI a write stops the tone)."""
        return False

    def stop_digit(self) -> None:
        """Key up: the digit of :meth:`start_digit` stops sounding."""


# --------------------------------------------------------------------------- legs
class CallLeg:
    """One call as the channel sees it, whatever the backend (engine thread only)."""

    incoming: bool = True
    call_from: str = ""
    call_to: str = ""
    #: extra header fields for the answer, where the protocol has such things (SIP)
    headers_to_send: list[tuple[str, str]] = []
    _listener: Callable[[LegEvent], None] | None = None
    _unheard: list[LegEvent] | None = None
    _receiver: Callable[[bytes, str], None] | None = None
    _partial: bytes = b""

    @property
    def listener(self) -> Callable[[LegEvent], None] | None:
        """Who hears this leg's events. Events that come before there is anyone (a leg
        may report alerting while it is being placed) wait for the first listener."""
        return self._listener

    @listener.setter
    def listener(self, listener: Callable[[LegEvent], None] | None) -> None:
        self._listener = listener
        unheard, self._unheard = self._unheard, None
        for event in unheard or ():
            self._emit(event)

    def describe(self) -> str:
        """Where the call is, for logs and Details (e.g. "span 1 B-channel 5")."""
        return type(self).__name__

    @property
    def live(self) -> bool:
        """False once the call is being cleared or is cleared, whoever started it (a step
        the protocol refused clears the call too; :class:`LegCleared` follows)."""
        return True

    def alert(self, early_media: bool, codecs: list[str] | None = None) -> bool:
        """Tell the caller we are ringing; with ``early_media``, open the media path before
        the answer if this kind of call can. Returns whether early media is in effect.
        Called again on an alerted call, it may upgrade to early media. ``codecs`` (API
        names, "g711a"..., in priority order) chooses among what the caller offered where
        the protocol negotiates codecs; None means the backend's default."""
        raise NotImplementedError

    def answer(self, codecs: list[str] | None = None) -> None:
        """Answer; :class:`LegAnswered` follows when the far end confirms. ``codecs`` as
        for :meth:`alert` (ignored once early media fixed the codec)."""
        raise NotImplementedError

    def release(self, cause: Cause, raw_cause: str | None = None) -> Cause | None:
        """Clear the call (hang up or reject) with ``cause``, or the protocol's own
        ``raw_cause`` when given. Returns the Cause the far end is told (what a raw cause
        stands for), or None, changing nothing, for a raw cause this protocol cannot
        send. :class:`LegCleared` follows."""
        raise NotImplementedError

    def media(self) -> MediaPort:
        """The call's outgoing audio path, opened on first use. Raises Error when the call
        has none now (not alerted with early media, not answered)."""
        raise NotImplementedError

    def listen(self, receiver: Callable[[bytes, str], None] | None) -> None:
        """Hand what the far end sends to ``receiver(frame, law)`` from now on: 160-byte
        G.711 frames (20 ms) in order, on the engine thread; None stops it. What arrives
        while nobody listens is dropped. A backend that must open something to hear the
        far end (a PRI B-channel) opens it here if the call has a media path now, and
        otherwise as soon as it has one (early media, the answer)."""
        self._receiver = receiver
        if receiver is None:
            self._partial = b""

    def _received(self, block: bytes, law: str) -> None:
        """The receive path: backends call it with every block the far end sent, in order,
        in ``law`` (a B-channel's 20 ms reads, what the SIP jitter buffer releases); it
        reaches the listener as 20 ms frames."""
        receiver = self._receiver
        if receiver is None:
            return
        if len(block) == FRAME_BYTES and not self._partial:
            receiver(block, law)
            return
        data = self._partial + block
        whole = len(data) - len(data) % FRAME_BYTES
        self._partial = data[whole:]
        for at in range(0, whole, FRAME_BYTES):
            receiver(data[at:at + FRAME_BYTES], law)

    def received_header(self, name: str) -> list[str]:
        """The values of header field ``name`` in the request that started an incoming
        call; empty where the protocol has no header fields."""
        return []

    def _emit(self, event: LegEvent) -> None:
        listener = self._listener
        if listener is None:
            if self._unheard is None:
                self._unheard = []
            self._unheard.append(event)
            return
        try:
            listener(event)
        except Exception as exc:
            faultlog.record("a call leg's listener", exc, f"{self.describe()}, {event}")


# --------------------------------------------------------------------------- backends
class NoRoute(Error):
    """A call cannot be placed now: every channel or port it could use is busy or down."""


class Backend:
    """A source of calls: starts and stops with its engine, offers incoming legs."""

    name = "backend"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: called on the engine thread with each new incoming CallLeg
        self.on_incoming: Callable[[CallLeg], None] | None = None

    def start(self) -> None:
        """Engine thread: open devices, bring links up."""
        raise NotImplementedError

    def stop(self) -> None:
        """Engine thread: drop calls and close everything."""
        raise NotImplementedError

    def drain(self) -> None:
        """Engine thread: take no new calls while the calls up go on, and say so to whoever
        asks (SIP: 503 to new INVITEs and to a proxy's OPTIONS probes). By default
        nothing: the host refuses the calls that still come."""

    def drain_announced(self) -> bool:
        """Engine thread, after :meth:`drain`: whether whoever sends us calls has been
        told (SIP: a proxy that probes us has had a 503 since; one that never probed
        needs no telling). Until then a drained host waits before it goes, or the proxy
        sends the next call to a node that is gone. By default True."""
        return True

    def prepare_call(self, call_to: str, route: str | None = None) -> Any:
        """Any thread but the engine's: what placing a call to ``call_to`` needs that may
        block (a host name to look up), done before :meth:`place_call` gets it as
        ``prepared``. Raises ArgumentError for a destination that cannot be reached."""
        return None

    def place_call(self, call_to: str, call_from: str = "", *, route: str | None = None,
                   codecs: list[str] | None = None,
                   headers: list[tuple[str, str]] | None = None,
                   prepared: Any = None) -> CallLeg:
        """Engine thread: start a call out to ``call_to`` and return its leg (events
        follow: alerting, answered, cleared). ``route`` picks where it goes, in the
        backend's own terms; ``headers`` are extra header fields where the protocol has
        them (SIP); ``prepared`` is what :meth:`prepare_call` returned. Raises
        :class:`NoRoute` when nothing can carry it now."""
        raise Error(f"the {self.name} backend does not place calls")

    def _offer(self, leg: CallLeg) -> bool:
        """Hand a new incoming leg to on_incoming; False when nobody takes calls."""
        if self.on_incoming is None:
            return False
        self.on_incoming(leg)
        return True

    # ------------------------------------------------------------- the command line
    # What the ``uascall`` command knows of a backend is its name and these hooks, so that
    # a backend installed from another package (entry point ``uascall.backends``) is
    # configured and driven from the command line like the built-in ones.

    #: whether it can run in virtual time (``--virtual``): nothing real under it, no
    #: device or network keeping the time of the outside world
    virtual_time = False

    @classmethod
    def add_arguments(cls, group: Any, command: str) -> None:
        """Add this backend's command-line options for ``command`` ("run", "call" or
        "demo") to ``group``, the argparse argument group titled with its name. Prefix
        them with the backend's name unless they are meant to be shared: an option
        another backend already added with the same flags (``--listen-early`` of
        ``dahdi`` and ``sim``) is shared, added once, and one whose flags clash with the
        command's own is left out with a warning."""

    @classmethod
    def options_from_arguments(cls, args: Any, command: str) -> dict[str, Any]:
        """The keyword arguments for the constructor from the parsed command line
        (``args``, an argparse Namespace with every backend's options, whether or not
        this backend added them itself)."""
        return {}

    @property
    def ready(self) -> bool:
        """Whether calls can be placed now (a simulated span: once its D-channel is up);
        ``uascall call`` waits for it before the first call."""
        return True

    def command_line_far_end(self, args: Any, command: str) -> FarEndDriver | None:
        """The far end of its own that places calls to the application from the command
        line (the simulator's exchange, for ``uascall run`` and ``uascall demo``), or None
        (the default): ``uascall run`` then serves calls until interrupted."""
        return None

    def status(self, calls: dict[CallLeg, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """Engine thread: this backend's part of ``uascall channels`` and ``uascall
        monitor``: ``{"spans": [...], "channels": [...]}`` in :mod:`uascall.status`'s
        terms. ``calls`` maps the legs of the host's calls to what the host knows of each,
        for the backend to put on the channels they use (:func:`uascall.status.with_call`).
        The default: nothing."""
        return {"spans": [], "channels": []}

    def owns(self, leg: CallLeg) -> bool:
        """Whether ``leg`` is one of this backend's calls (any thread: it looks at the
        leg alone), so that counts by backend can be kept over several."""
        return False

    @classmethod
    def offline_status(cls, args: Any) -> dict[str, Any] | None:
        """What ``uascall channels`` shows of this backend's equipment when no uascall
        runs (DAHDI: sysfs and /proc/dahdi), a snapshot as :mod:`uascall.status` has it;
        None (the default): nothing to show."""
        return None


class FarEndDriver:
    """A backend's far end driven from the command line (see
    :meth:`Backend.command_line_far_end`): it places its calls once the host has started,
    then reports on them."""

    #: Set by ``uascall run`` before :meth:`place_calls`: an event set when SIGINT or
    #: SIGTERM asks the command to stop. A driver that watches it places no more calls
    #: once it is set and returns without waiting for the calls up (the command gives
    #: them --shutdown-timeout to end, then hangs them up); one that does not is waited
    #: for, and its calls are refused meanwhile.
    stopped: threading.Event | None = None

    def intro(self, host: Any) -> str:
        """What ``uascall demo`` prints before the calls (empty: nothing)."""
        return ""

    def place_calls(self, host: Any) -> None:
        """Place the calls the command line asked for and return once every one has
        ended, or at once when :attr:`stopped` is set (an application thread, not the
        engine's). Raises Error when they cannot be placed or do not end in time."""
        raise NotImplementedError

    def report(self) -> None:
        """Print or write what the calls showed (a ladder, what each caller heard), after
        the host has stopped and before its results are printed."""

    def epilogue(self) -> str:
        """A last line for after the host's results (empty: nothing)."""
        return ""


BACKENDS: dict[str, str] = {
    "dahdi": "uascall.dahdi.backend:DahdiBackend",
    "modem": "uascall.modem.backend:ModemBackend",
    "sim": "uascall.sim.backend:SimBackend",
    "sip": "uascall.sip.backend:SipBackend",
}
ENTRY_POINT_GROUP = "uascall.backends"


def known_backends() -> dict[str, str]:
    """Built-in backends merged with those installed through entry points."""
    found = dict(BACKENDS)
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry.value)
    return found


def backend_class(name: str) -> type[Backend]:
    known = known_backends()
    if name not in known:
        raise ArgumentError(f"unknown backend {name!r}; expected one of "
                            f"{', '.join(sorted(known))}")
    module_name, _, class_name = known[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(f"backend {name!r}: cannot import {module_name}: {exc}"
                                 ) from exc
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise BackendUnavailable(f"backend {name!r}: {module_name} has no {class_name}"
                                 ) from None


def open_backend(name: str, engine: Engine, **options: Any) -> Backend:
    """Create the backend called ``name`` on ``engine`` (not started yet)."""
    return backend_class(name)(engine, **options)
