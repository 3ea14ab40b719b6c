"""Extra channels: the outbound channels an application instance may use beside its own.

UAS gives an application instance up to three extra channels, outbound only, for a second
call (a transfer, a gateway's other leg, a conference). Here they are
``channel.ExtraChannel[0]`` to ``[2]``: an :class:`ExtraChannels` sequence the application
host sets on the primary channel before ``main`` starts. Each is a full
:class:`~uascall.channel.UASCallChannel` placing calls on the host's backend (on a host
over several backends, :mod:`uascall.routing` picks one by the number), made on first use
and sharing the primary's media folder and voice.

When ``main`` returns, :meth:`ExtraChannels.close` hangs up every call still up on them
and releases them: using one afterwards is an Error. Every call placed on an extra
channel is noted (:meth:`ExtraChannels.calls`) and goes into the instance's call record as
JSON (``extra_calls``): which channel, to whom, whether it was answered, the cause and how
long it lasted.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from uascall.backend import Backend
from uascall.channel import ChannelEvent, State, StateChanged, UASCallChannel
from uascall.engine import Engine
from uascall.errors import ArgumentError, Error
from uascall.media.player import MediaClock

log = logging.getLogger(__name__)

#: most extra channels an application instance has (UAS: three)
MAX_EXTRA_CHANNELS = 3


@dataclass
class ExtraCall:
    """One call placed on an extra channel, as its instance's record keeps it."""

    channel: int
    call_to: str
    answered: bool = False
    #: the channel's cause once the call has ended ("" while it is up)
    cause: str = ""
    raw_cause: str = ""
    #: seconds from the call's start to its end (engine time)
    seconds: float = 0.0
    _start: float = 0.0


def check_count(count: object) -> int:
    """``count`` extra channels, checked (0 to 3)."""
    if isinstance(count, bool) or not isinstance(count, int) \
            or not 0 <= count <= MAX_EXTRA_CHANNELS:
        raise ArgumentError(f"extra_channels={count!r}; expected a number of extra channels "
                            f"from 0 to {MAX_EXTRA_CHANNELS}")
    return count


class _ExtraChannel(UASCallChannel):
    """An extra channel: an outbound channel that notes every call placed on it."""

    def __init__(self, owner: ExtraChannels, index: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = owner
        self._index = index
        self.listeners.append(self._note)

    def call(self, call_to: str, *args: Any, **kwargs: Any) -> State:
        self._owner._check_open(self._index)
        return super().call(call_to, *args, **kwargs)

    def start_call(self, call_to: str, *args: Any, **kwargs: Any) -> State:
        self._owner._check_open(self._index)
        return super().start_call(call_to, *args, **kwargs)

    def _note(self, channel: UASCallChannel, event: ChannelEvent) -> None:
        """Engine thread: follow the calls placed on this channel."""
        if not isinstance(event, StateChanged):
            return
        owner = self._owner
        if event.state is State.CALL_OUTGOING:
            owner._add(ExtraCall(self._index, self.Details.call_to,
                                 _start=owner.engine.time()))
            return
        current = owner._current(self._index)
        if current is None:
            return
        if event.state is State.ANSWERED:
            current.answered = True
        elif event.state is State.IDLE:
            current.cause = self.cause().name
            current.raw_cause = self.Details.raw_cause
            current.seconds = round(owner.engine.time() - current._start, 3)


class ExtraChannels(Sequence[UASCallChannel]):
    """``channel.ExtraChannel``: ``count`` (0 to 3) outbound channels on ``backend``, each
    made on first use; ``route`` is where their calls go in the backend's terms (see
    ``Backend.place_call``), ``name`` the instance's id for logs and messages.

    An index beyond ``count`` or beyond 2, a negative one, or one that is not an int is an
    :class:`~uascall.errors.Error`, as is any use once :meth:`close` has run.
    """

    def __init__(self, engine: Engine, backend: Backend, count: int, *,
                 media_clock: MediaClock, media_dir: str | os.PathLike[str] | None = None,
                 tts_voice: str | None = None, route: str | None = None,
                 name: str = "") -> None:
        self.engine = engine
        self.backend = backend
        self.count = check_count(count)
        self.route = route
        self.name = name
        self._media_clock = media_clock
        self._media_dir = media_dir
        self._tts_voice = tts_voice
        self._channels: list[_ExtraChannel | None] = [None] * self.count
        self._calls: list[ExtraCall] = []
        self._lock = threading.Lock()
        self._closed = False

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, bool) or not isinstance(index, int):
            raise Error(f"ExtraChannel[{index!r}]: expected an index (an int from 0 to "
                        f"{MAX_EXTRA_CHANNELS - 1})")
        if not 0 <= index < MAX_EXTRA_CHANNELS:
            raise Error(f"ExtraChannel[{index}]: an application has at most "
                        f"{MAX_EXTRA_CHANNELS} extra channels; expected an index from 0 to "
                        f"{MAX_EXTRA_CHANNELS - 1}")
        if index >= self.count:
            have = ("no extra channels" if self.count == 0 else
                    f"{self.count} extra channel{'s' if self.count > 1 else ''}")
            raise Error(f"ExtraChannel[{index}]: this host gives each application {have} "
                        f"(extra_channels={self.count}, uascall's --extra-channels); "
                        + ("expected none to be used" if self.count == 0 else
                           f"expected an index from 0 to {self.count - 1}"))
        self._check_open(index)
        channel = self._channels[index]
        if channel is not None:
            return channel
        # made outside the lock, which the engine thread takes too (the calls' notes)
        made = _ExtraChannel(self, index, self.engine, backend=self.backend,
                             route=self.route, media_clock=self._media_clock,
                             media_dir=self._media_dir, tts_voice=self._tts_voice)
        with self._lock:
            self._check_open(index)
            if self._channels[index] is None:  # not made meanwhile by another thread
                self._channels[index] = made
            return self._channels[index]

    def __iter__(self) -> Iterator[UASCallChannel]:
        # Sequence's own iteration stops at an IndexError, which an index past the end is
        # not here (it is an Error, as UAS has it).
        for index in range(self.count):
            yield self[index]

    def created(self) -> list[UASCallChannel]:
        """The extra channels the application has used (made) so far."""
        with self._lock:
            return [channel for channel in self._channels if channel is not None]

    def calls(self) -> list[ExtraCall]:
        """Every call placed on these channels, in the order they were placed."""
        with self._lock:
            return list(self._calls)

    def calls_json(self) -> str:
        """:meth:`calls` as the call record keeps them: a JSON list."""
        return json.dumps([{k: v for k, v in asdict(call).items() if not k.startswith("_")}
                           for call in self.calls()], separators=(",", ":"))

    def hang_up(self) -> None:
        """Application thread (not the engine's): hang up every call still up on these
        channels, each for up to 60 s as ``hang_up()`` does."""
        for channel in self.created():
            if channel.state() is State.IDLE:
                continue
            try:
                channel.hang_up()
            except Error as exc:
                log.warning("%s: cannot hang up %r: %s", self.name, channel, exc)

    def close(self) -> None:
        """Application thread: ``main`` has returned: hang up the calls still up and
        release the channels; any use of them from now on is an Error."""
        with self._lock:
            self._closed = True
        self.hang_up()

    # ------------------------------------------------------------------ the calls' notes
    def _check_open(self, index: int) -> None:
        if self._closed:
            raise Error(f"ExtraChannel[{index}]: application instance {self.name} has "
                        "ended and its extra channels are released; expected them to be "
                        "used only while main() runs")

    def _placed(self, index: int) -> int:
        with self._lock:
            return sum(1 for call in self._calls if call.channel == index)

    def _current(self, index: int) -> ExtraCall | None:
        with self._lock:
            for call in reversed(self._calls):
                if call.channel == index:
                    return call
        return None

    def _add(self, call: ExtraCall) -> None:
        with self._lock:
            self._calls.append(call)
