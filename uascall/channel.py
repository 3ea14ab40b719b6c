"""``UASCallChannel``: one call, driven by blocking calls from an application thread.

Theory of operation
-------------------
An application thread calls ``ring()``, ``answer()``, ``hang_up()``... Each call checks the
state, validates its arguments and prepares media (decoding a file, starting to render
speech: here, never on the engine), then hands the protocol step to the engine thread and,
where the method blocks, waits there for a state change or its deadline, measured on the
engine's clock (so the simulator's virtual time makes a ``ring(10)`` instant).

The engine thread owns the state: the :class:`~uascall.backend.CallLeg` reports what the
far end did (answered, cleared) and the channel moves between the :class:`State` values of
:data:`TRANSITIONS`. A call that clears while the application waits wakes it at once.

Rules from the UAS documentation (``spec/``): a method that needs a live call raises
:class:`~uascall.errors.Hangup` when the state is IDLE (R1) and
:class:`~uascall.errors.Error` when it is in another state than the one it needs (R2);
call-control methods return the state, media methods a cause. Where the documentation is
silent the choices are ours and say so in their docstrings.
"""

from __future__ import annotations

import array
import collections
import concurrent.futures
import contextlib
import itertools
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from uascall import faultlog
from uascall.backend import (
    REJECT_CAUSES,
    Backend,
    CallLeg,
    Cause,
    LegAlerting,
    LegAnswered,
    LegCleared,
    LegDigit,
    NoRoute,
)
from uascall.backref import BackRef
from uascall.engine import Engine, TimerHandle
from uascall.errors import ArgumentError, Error, Hangup
from uascall.media import g711
from uascall.media.bridge import BRIDGE_DEPTH, AudioLink
from uascall.media.inbound import Hearing, InboundDsp
from uascall.media.player import MediaClock, Player
from uascall.media.source import FRAME_SECONDS, FrameSource
from uascall.sipfields import ChannelSIP

if TYPE_CHECKING:
    from uascall.media.playable import OpenMedia, PlayableMedia
    from uascall.media.recorder import Recording
    from uascall.media.tones import ToneManager

log = logging.getLogger(__name__)

#: codec names ring()/answer() accept, in the order we prefer them by default
CODECS = {"g711a": "alaw", "g711u": "ulaw"}
#: how long hang_up() and reject() wait for the call to become IDLE (as UAS does)
CLEARING_TIMEOUT = 60.0
#: how long answer() waits for the far end to confirm the connection
ANSWER_TIMEOUT = 30.0
#: digits kept for DTMFDetector.get_digits(); a far end that sends more is not listened to
MAX_BUFFERED_DIGITS = 1024
#: seconds (real time) ring() and play() wait for the first words of a text being spoken
#: before they go on without them (espeak-ng's come in about 10 ms here, whatever the
#: text's length): the bound on how late a long announcement makes the ringing signal
FIRST_WORDS_WAIT = 0.5
#: how long after its deadline a timed wait ends (seconds of engine time): the events of
#: the deadline's own instant are taken first (virtual time runs them all before it moves)
AT_THE_DEADLINE = 1e-9


class State(Enum):
    WAITING = "waiting"
    CALL_INCOMING = "call_incoming"
    RING_INCOMING = "ring_incoming"
    ANSWERING = "answering"
    ANSWERED = "answered"
    CALL_OUTGOING = "call_outgoing"
    RING_OUTGOING = "ring_outgoing"
    HOLDING = "holding"
    ON_HOLD = "on_hold"
    TRANSFERRING = "transferring"
    TRANSFERRED = "transferred"
    RECONNECTING = "reconnecting"
    ERROR = "error"
    IDLE = "idle"


class TransferCause(Enum):
    """How the last transfer went (UAS's ``TransferCause``)."""

    NONE = "none"
    NORMAL = "normal"  # transferred
    TIMEOUT = "timeout"  # the target did not answer in time
    HANGUP = "hangup"  # the caller hung up while being transferred
    TARGETREJECT = "targetreject"  # the target refused the call (busy, rejected...)
    TARGETHANGUP = "targethangup"  # the target hung up: the call was taken back
    FAIL = "fail"  # the call to the target could not be placed


_S = State
#: what the far end's news does to the state: event → {state it counts in: new state}
TRANSITIONS: dict[type, dict[State, State]] = {
    LegAlerting: {_S.CALL_OUTGOING: _S.RING_OUTGOING},
    LegAnswered: {_S.ANSWERING: _S.ANSWERED, _S.CALL_OUTGOING: _S.ANSWERED,
                  _S.RING_OUTGOING: _S.ANSWERED},
}
_INCOMING = (State.CALL_INCOMING, State.RING_INCOMING)


def parse_codecs(codecs: str | None) -> list[str]:
    """``"g711a;g711u"`` → ["alaw", "ulaw"] (priority order); None → the default order."""
    if codecs is None:
        return list(CODECS.values())
    if not isinstance(codecs, str):
        raise ArgumentError(f"codecs {codecs!r}: expected a string such as 'g711a;g711u'")
    names = [name.strip().lower() for name in codecs.split(";") if name.strip()]
    unknown = [name for name in names if name not in CODECS]
    if unknown or not names:
        raise ArgumentError(f"codecs {codecs!r}: unknown {', '.join(unknown) or 'empty list'}"
                            f"; expected a ';'-separated list of {', '.join(CODECS)}")
    return [CODECS[name] for name in dict.fromkeys(names)]


@dataclass(frozen=True, slots=True)
class ChannelEvent:
    """What a channel's listeners hear, on the engine thread (our extension)."""


@dataclass(frozen=True, slots=True)
class StateChanged(ChannelEvent):
    state: State


@dataclass(frozen=True, slots=True)
class MediaStarted(ChannelEvent):
    #: what plays: "tone RINGBACK_EU", "PlayableMedia(file 'x.wav')"...
    what: str


@dataclass(frozen=True, slots=True)
class MediaEnded(ChannelEvent):
    what: str
    #: "finished", "stopped", "bargein", "replaced", "hangup" or "failed"
    reason: str


@dataclass(frozen=True, slots=True)
class Connected(ChannelEvent):
    """connect() joined this call to another (``other``: its ``Details.call_id``)."""

    other: str


@dataclass(frozen=True, slots=True)
class Disconnected(ChannelEvent):
    """The connection ended: disconnect(), or the other call ended (``cause``: its cause),
    or this one did."""

    other: str
    cause: Cause | None


@dataclass(frozen=True, slots=True)
class DigitReceived(ChannelEvent):
    """The far end pressed a key (heard in band, or out of band; once per press)."""

    digit: str


@dataclass
class CallDetails:
    """What is known about the call (UAS's ``Details``)."""

    call_from: str = ""
    call_to: str = ""
    #: the protocol's cause once the call has ended (a Q.850 number, a SIP status)
    raw_cause: str = ""
    direction: str = "inbound"
    #: where the call is: "span 1 B-channel 5 (alaw)", a SIP dialog...
    channel: str = ""
    #: this call's id in this process ("call-17"), what another's ``connected_id`` names
    call_id: str = ""
    #: the ``call_id`` of the call connect() joined this one to; "" when not connected
    connected_id: str = ""
    #: why the last connection ended when the other call ended (that call's cause);
    #: None while connected, after disconnect() or this call's own end, or never connected
    disconnect_cause: Cause | None = None


_call_ids = itertools.count(1)


class UASCallChannel:
    """One call (UAS ``UASCallChannel``).

    An inbound channel is made on the engine thread from the leg a backend offered. An
    outbound channel is made (on any thread) with ``backend`` and no leg: it starts IDLE,
    and each :meth:`call` places a new call through the backend (``route`` says where, in
    the backend's terms: see its ``place_call``).

    ``media_dir`` is where ``PlayableMedia`` and ``FilePlayer`` look for files;
    ``tts_voice`` the espeak-ng voice for ``text_to_say``.
    """

    State = State
    Cause = Cause
    TransferCause = TransferCause

    def __init__(self, engine: Engine, leg: CallLeg | None = None, *,
                 media_clock: MediaClock, backend: Backend | None = None,
                 route: str | None = None,
                 media_dir: str | os.PathLike[str] | None = None,
                 tts_voice: str | None = None) -> None:
        if (leg is None) == (backend is None):
            raise ArgumentError("UASCallChannel needs a leg (an inbound call) or a backend "
                                "(an outbound channel), and not both")
        self._engine = engine
        self._backend = backend
        self._route = route
        self._clock = media_clock
        self.media_dir = os.fspath(media_dir) if media_dir is not None else os.getcwd()
        self.tts_voice = tts_voice
        self._waiters: list[tuple[Callable[[], bool], concurrent.futures.Future]] = []
        self.FilePlayer = FilePlayer(self)
        self.TonePlayer: TonePlayer | None = None
        self.DTMFDetector = DTMFDetector(self)
        self.DTMFPlayer = DTMFPlayer(self)
        self.FileRecorder = FileRecorder(self)
        self.SIP = ChannelSIP(self)
        #: the application instance's outbound channels (UAS ``ExtraChannel[0..2]``), set
        #: by the application host; a channel made otherwise has none
        self.ExtraChannel: Sequence[UASCallChannel] = NO_EXTRA_CHANNELS
        #: called on the engine thread with each ChannelEvent (state changes, media)
        self.listeners: list[Callable[[UASCallChannel, ChannelEvent], None]] = []
        self._hearing: Hearing | None = None  # what the far end sends, once we listen
        # held while a player or the recorder checks it is free and claims it
        self._claim = threading.Lock()
        self._bridge_breaks = 0  # connections ended by the other call's end (wait_for_idle)
        self._transfer_cause = TransferCause.NONE
        self._leg: CallLeg = leg if leg is not None else _NoCall()
        self._attach(self._leg)
        if leg is None:
            self._state = State.IDLE

    @property
    def route(self) -> str | None:
        """Where this outbound channel's calls go, in the backend's terms (``"pri"``,
        ``"fxo:5"``, a SIP ``host:port``; see README "Calls out"); None: the backend's
        choice. Set it before :meth:`call` to send one call another way."""
        return self._route

    @route.setter
    def route(self, route: str | None) -> None:
        if route is not None and (not isinstance(route, str) or not route.strip()):
            raise ArgumentError(f"route={route!r}; expected a route such as 'pri', "
                                "'fxo:5' or 'host:port', or None")
        self._route = route

    def _attach(self, leg: CallLeg, *, listen: bool = True) -> None:
        """Make ``leg`` this channel's call, with everything about the last one reset
        (``listen``: hear its events now; otherwise the caller starts listening)."""
        self._leg = leg
        self._state = State.CALL_INCOMING if leg.incoming else State.CALL_OUTGOING
        self._cause = Cause.NORMAL
        self.Details = CallDetails(call_from=leg.call_from, call_to=leg.call_to,
                                   direction="inbound" if leg.incoming else "outbound",
                                   channel=leg.describe())
        self.Details.call_id = f"call-{next(_call_ids)}"
        self._early_media = False
        self._bridge: _Bridge | None = None  # connect()'s, while connected
        # taps on what the far end sends, for those who follow this call's audio (another
        # call's ringtone: ring(custom_ringtone=channel)); they go on the hearing when it
        # exists
        self._followers: list[Callable[[bytes, str], None]] = []
        self._pending_cause: Cause | None = None  # the cause we asked for when we clear
        # We have asked the far end to clear: the call is as good as IDLE for new work.
        self._releasing = False
        self._player: Player | None = None
        self._digits = ""  # DTMF received and not yet collected (DTMFDetector)
        self._digits_dropped = 0  # beyond MAX_BUFFERED_DIGITS
        if self._hearing is not None:
            self._hearing.close()
        self._hearing = None
        # engine thread: which of the players plays now, and what a key press ends (a
        # play or a recording with barge-in)
        self._playing: _PlayerBase | None = None
        self._barge_ins: list[Callable[[], None]] = []
        if listen:
            leg.listener = self._on_leg_event

    def __repr__(self) -> str:
        return f"<UASCallChannel {self.Details.channel} {self._state.name}>"

    # ------------------------------------------------------------------ state
    def state(self) -> State:
        """The call state now."""
        return self._state

    def cause(self) -> Cause:
        """Why the call ended; NORMAL while it has not."""
        return self._cause

    def create_tone_player(self, tone_manager: ToneManager) -> TonePlayer:
        """Give the channel a tone player for ``tone_manager``'s tones (our API: UAS says a
        channel "must have a tone player" to ring with a tone name, not how it gets one)."""
        self.TonePlayer = TonePlayer(self, tone_manager)
        return self.TonePlayer

    # ------------------------------------------------------------------ ring
    def ring(self, seconds_ringtime: float | None = 0, negotiate_early_media: bool = False,
             custom_ringtone: str | PlayableMedia | UASCallChannel | None = None,
             loop_ringtone: bool = False, codecs: str | None = None) -> State:
        """Signal ringing to the caller, with early media if asked for and available.

        ``seconds_ringtime``: 0 does not block, N blocks until N seconds after the ringing
        is signalled (a PlayableMedia file is loaded first), None blocks for the length of
        ``custom_ringtone`` from when it starts until its last sample is heard (0 without
        early media; ``loop_ringtone`` is then forced off). ``custom_ringtone`` is a tone
        name (this channel's tone player and its tone manager must know it) or a
        PlayableMedia; it is ignored without early media. Ours: it may also be another
        channel placing a call (an extra channel after ``start_call()``): the caller then
        hears that call's far end, its ringback or announcement, as a gateway passes early
        media on; the ringtone lasts until that call is answered or ends (so None blocks
        until then), and while it rings without sending audio of its own the caller hears
        this channel's tone player's default ringback (silence without a tone player).
        ``codecs`` ("g711a;g711u") orders the codec choice on SIP (ours, not the caller's
        order, decides); on TDM it is validated and the law is the span's.

        Valid in CALL_INCOMING (and RING_INCOMING, where a new ringtone replaces the old
        one without signalling again). Raises Hangup in IDLE, Error in any other state or
        for a bad argument. Returns the state, IDLE if the caller cleared while it rang.

        Our choices where UAS is silent: early media, once negotiated on a call, stays in
        effect for later ``ring()`` calls (the documentation's second example relies on
        it); a ringtone keeps playing after ``ring()`` returns, until ``answer()``,
        another ``ring()`` or the end of the call; ``ring()`` returns, rather than raises,
        when the caller clears while it blocks; a ringtone that cannot be played (an
        unknown tone, a missing file) raises Error before anything is signalled when
        early media is asked for, and is not loaded when it is not (a ringtone of the wrong
        type always raises ArgumentError).

        A text to say is not spoken to its end before the ringing is signalled (a long
        announcement took longer than the caller's network waits): its rendering starts,
        the signal goes out with its first words (within FIRST_WORDS_WAIT = 0.5 s however
        long the text; about 10 ms normally), and the caller hears it as it is rendered.
        Should the words be late (a loaded machine), the caller hears silence until they
        come, and no word is skipped; ``seconds_ringtime=None`` counts that silence in. A
        text that cannot be spoken at all (espeak-ng missing, an unknown voice) raises
        Error before anything is signalled; one whose rendering fails after the signal
        stops the ringtone, and ring() raises Error if it is blocking for that ringtone
        (None), while the call stays RING_INCOMING. A call that ends while the text is
        rendered stops the rendering.
        """
        self._require(_INCOMING, "ring")
        wanted_codecs = parse_codecs(codecs) if codecs is not None else None
        ringtime = _seconds("seconds_ringtime", seconds_ringtime, allow_none=True)
        loop = bool(loop_ringtone)
        if ringtime is None:
            loop = False
        # A ringtone of the wrong type is the caller's bug whatever else is asked. Without
        # early media the ringtone is otherwise ignored, so it is not loaded; with it, a
        # ringtone that cannot be played fails here, before anything is signalled.
        _check_ringtone_type(custom_ringtone)
        wanted = bool(negotiate_early_media) or self._early_media
        opened: OpenMedia | None = None
        if wanted and custom_ringtone is not None and not isinstance(custom_ringtone,
                                                                     str | UASCallChannel):
            # here, on the application thread: a file is loaded, a text's first words come
            opened = self._open(custom_ringtone)
        try:
            prepared = self._prepare_ringtone(custom_ringtone, opened) if wanted else None
            return self._ring(ringtime, loop, bool(negotiate_early_media), wanted_codecs,
                              prepared)
        finally:
            if opened is not None:
                opened.close()  # the ringtone's source holds what it plays

    def _ring(self, ringtime: float | None, loop: bool, negotiate_early_media: bool,
              wanted_codecs: list[str] | None,
              prepared: Callable[[str, bool], FrameSource] | None) -> State:
        # N seconds of ringing are N seconds from the ringing indication, whatever sending
        # it and starting the ringtone took (tens of ms, more on a loaded or emulated
        # machine): a deadline, not a sleep after those steps.
        signalled_at = self._engine.time()
        alert = self._engine_alert if prepared is not None else self._engine_alert_quiet
        early, law = self._engine.run(alert, negotiate_early_media, wanted_codecs)
        if not early:
            ringtime = ringtime or 0.0  # nothing is played: None means do not block
        elif prepared is None:
            ringtime = ringtime or 0.0  # _engine_alert has stopped any earlier ringtone
        elif not self._releasing:
            # The source is made here, on this thread, once the law is known: a second step.
            source = prepared(law, loop)
            ended: concurrent.futures.Future = concurrent.futures.Future()
            length = self._engine.run(self._engine_play_ringtone, source, ended)
            if ringtime is None:
                # the whole ringtone is heard: its length counts from when it starts
                signalled_at = self._engine.time()
                ringtime = length if length is not None else self._ringtone_length(source,
                                                                                   ended)
        if self._releasing:
            # The call is going: the ringing indication could not be sent, or another
            # thread hung up between the two steps. Returned IDLE, as a call cleared while
            # it rings is (the far end's RELEASE can take a while to come).
            self._wait(lambda: self._state is State.IDLE, CLEARING_TIMEOUT)
            return self._state
        remaining = signalled_at + ringtime - self._engine.time() if ringtime else 0.0
        if remaining > 0:
            self._wait(lambda: self._state is State.IDLE, remaining)
        return self._state

    def _ringtone_length(self, source: FrameSource,
                         ended: concurrent.futures.Future) -> float:
        """The length of a ringtone still being made (speech being rendered), once it is
        known: when it has played to its end (or stopped). Raises Error if it failed."""
        self._wait(lambda: self._state is State.IDLE or ended.done(), None)
        reason = ended.result() if ended.done() else "hangup"
        if reason == "failed":
            raise Error(f"ring(): the ringtone {getattr(source, 'label', source)} stopped: "
                        f"{source.error or 'it failed'}")
        if reason == "hangup":  # the call is being cleared: ring() returns it IDLE
            self._wait(lambda: self._state is State.IDLE, CLEARING_TIMEOUT)
            return 0.0
        return self._run(lambda: source.duration or 0.0)

    def _open(self, media: PlayableMedia) -> OpenMedia:
        """``media`` ready to play: loaded, or a text's rendering started (on a thread
        that virtual time waits for) and its first words there or FIRST_WORDS_WAIT gone."""
        return media.open(first_audio_within=FIRST_WORDS_WAIT,
                          start_thread=self._engine.start_actor_thread)

    def _prepare_ringtone(self, ringtone: str | PlayableMedia | UASCallChannel | None,
                          opened: OpenMedia | None
                          ) -> Callable[[str, bool], FrameSource] | None:
        """Check the ringtone now and return what makes its source once the law is known."""
        if ringtone is None:
            return None
        if isinstance(ringtone, UASCallChannel):
            if ringtone is self or ringtone._engine is not self._engine:
                raise Error(f"custom_ringtone={ringtone!r}: expected another channel of "
                            "this process, placing a call")
            tones = self.TonePlayer.tone_manager if self.TonePlayer is not None else None
            return lambda law, loop: _FarEndAudio(
                ringtone, law,
                tones.get("DEFAULT").source(law, loop=True) if tones is not None else None)
        if isinstance(ringtone, str):
            if self.TonePlayer is None:
                raise Error(f"custom_ringtone {ringtone!r} is a tone name, but this channel "
                            "has no tone player; expected channel.create_tone_player("
                            "tone_manager) first")
            tone = self.TonePlayer.tone_manager.get(ringtone)
            return lambda law, loop: _Labelled(tone.source(law, loop=loop), f"tone {tone.name}")
        assert opened is not None
        return lambda law, loop: _Labelled(opened.source(law, loop=loop), opened.label)

    def _engine_alert(self, early_media: bool, codecs: list[str] | None
                      ) -> tuple[bool, str]:
        self._require(_INCOMING, "ring")  # again: the far end may have moved meanwhile
        with self._stepping(State.RING_INCOMING):
            in_effect = self._leg.alert(early_media, codecs)
        self._early_media = self._early_media or in_effect
        law = ""
        if self._early_media and self._live():
            law = self._leg.media().law
            self._listen()  # the far end's audio flows now: digits count from here
        return self._early_media, law

    def _engine_alert_quiet(self, early_media: bool, codecs: list[str] | None
                            ) -> tuple[bool, str]:
        """:meth:`_engine_alert` for a ring() without a ringtone: with early media, the
        ringtone of an earlier ring() stops in the same step, not in a round trip more."""
        early, law = self._engine_alert(early_media, codecs)
        if early:
            self._engine_play_ringtone(None)
        return early, law

    def _engine_play_ringtone(self, source: FrameSource | None,
                              ended: concurrent.futures.Future | None = None
                              ) -> float | None:
        """Play ``source`` as the ringtone; its whole length, or None while it is still
        being made (speech being rendered: its length is known when it has played)."""
        # Only on a call still ringing: another thread may have answered or cleared it
        # between ring()'s two steps, and a ringtone must not start on that.
        if self._state is not State.RING_INCOMING or self._releasing:
            if source is not None:
                source.close()
            if ended is not None:
                ended.set_result("not played")
            return 0.0
        if source is None:
            if self._player is not None:
                self._player.stop()
            return 0.0

        def over(reason: str) -> None:
            if ended is not None and not ended.done():
                ended.set_result(reason)
                self._recheck_waiters()

        # Whether it is complete is read before its length, and both here: a rendering
        # that ends a moment later must not make a partial length pass for the whole.
        complete = source.complete
        self._play(source, over)
        return (source.duration or 0.0) if complete else None

    # ------------------------------------------------------------------ call out
    def call(self, call_to: str, call_from: str = "", seconds_timeout: float | None = 120,
             codecs: str | None = None, live_speaker_detect: Any = None,
             lsd_timeout_milliseconds: int = 7000) -> State:
        """Place a call on this outbound channel and block until it is answered, ends, or
        ``seconds_timeout`` passes (None: no limit). Returns the state: ANSWERED, or IDLE
        with :meth:`cause` (and ``Details.raw_cause``).

        Valid in IDLE on an outbound channel; Error otherwise. Our choices where UAS is
        silent: when the timeout passes the call is cleared with cause NOANSWER if the far
        end was ringing, TIMEOUT if it never got that far; when no channel or port can
        carry the call now, the call ends at once with cause NOCHANNELS. Live speaker
        detection is not available in this release (Error if asked for).
        """
        self._start_outgoing("call", call_to, call_from, codecs, live_speaker_detect,
                             lsd_timeout_milliseconds)
        timeout = _seconds("seconds_timeout", seconds_timeout, allow_none=True)
        if not self._wait(lambda: self._state in (State.ANSWERED, State.IDLE), timeout):
            cause = Cause.NOANSWER if self._state is State.RING_OUTGOING else Cause.TIMEOUT
            log.info("%r: no answer within %s s; clearing with %s", self, timeout,
                     cause.name)
            self._wait(lambda: self._state is State.IDLE, CLEARING_TIMEOUT,
                       self._engine_release, (cause, None))
        return self._state

    def start_call(self, call_to: str, call_from: str = "", codecs: str | None = None,
                   live_speaker_detect: Any = None,
                   lsd_timeout_milliseconds: int = 7000) -> State:
        """Place a call without waiting for it (UAS ``start_call``); follow it with
        :meth:`state`, :meth:`wait_for_answer` or :meth:`wait_for_idle`. Returns the state."""
        self._start_outgoing("start_call", call_to, call_from, codecs, live_speaker_detect,
                             lsd_timeout_milliseconds)
        return self._state

    def wait_for_answer(self, seconds_timeout: float | None = None) -> State:
        """Block until an outgoing call is answered or ends, or ``seconds_timeout``
        passes (our API, for :meth:`start_call`). Returns the state."""
        timeout = _seconds("seconds_timeout", seconds_timeout, allow_none=True)
        self._wait(lambda: self._state in (State.ANSWERED, State.IDLE), timeout)
        return self._state

    def _start_outgoing(self, method: str, call_to: str, call_from: str,
                        codecs: str | None, live_speaker_detect: Any,
                        lsd_timeout_milliseconds: int) -> None:
        if self._backend is None:
            raise Error(f"{method}() on an inbound call's channel; expected an outbound "
                        "channel (UASCallChannel(engine, backend=...))")
        if self._state is not State.IDLE:
            raise Error(f"{method}() in state {self._state.name}; expected IDLE")
        if not isinstance(call_to, str) or not call_to.strip():
            raise ArgumentError(f"call_to={call_to!r}; expected a non-empty string")
        if not isinstance(call_from, str):
            raise ArgumentError(f"call_from={call_from!r}; expected a string")
        if live_speaker_detect is not None:
            raise Error(f"{method}(live_speaker_detect=...): live speaker detection is not "
                        "available in this release; expected None")
        if isinstance(lsd_timeout_milliseconds, bool) or not isinstance(
                lsd_timeout_milliseconds, int) or lsd_timeout_milliseconds < 0:
            raise ArgumentError(f"lsd_timeout_milliseconds={lsd_timeout_milliseconds!r}; "
                                "expected milliseconds >= 0")
        wanted = parse_codecs(codecs) if codecs is not None else None
        headers = self.SIP.fields_to_send()
        assert self._backend is not None
        # what may block (a name to look up) is done here, never on the engine thread
        prepared = self._backend.prepare_call(call_to.strip(), self._route)
        self._engine.run(self._engine_place, call_to.strip(), call_from, wanted, headers,
                         prepared)

    def _engine_place(self, call_to: str, call_from: str, codecs: list[str] | None,
                      headers: list[tuple[str, str]], prepared: Any) -> None:
        if self._state is not State.IDLE:
            raise Error(f"call() in state {self._state.name}; expected IDLE")
        assert self._backend is not None
        old = self._leg
        try:
            leg = self._backend.place_call(call_to, call_from, route=self._route,
                                           codecs=codecs, headers=headers,
                                           prepared=prepared)
        except NoRoute as exc:
            log.info("%r: %s", self, exc)
            self._attach(_NoCall(call_to, call_from))
            self._emit(StateChanged(self._state))  # a call asked for, as any other
            self._cause = Cause.NOCHANNELS
            self.Details.raw_cause = str(exc)
            self._set_state(State.IDLE)
            return
        old.listener = None
        self._attach(leg, listen=False)
        self._emit(StateChanged(self._state))
        # what the far end sends before the answer (ringback, an announcement) is heard
        # too, as soon as it comes: another call may ring with it
        self._listen()
        leg.listener = self._on_leg_event  # what it said while being placed comes now

    # ------------------------------------------------------------------ answer / clear
    def answer(self, codecs: str | None = None) -> State:
        """Answer the call and block until it is connected (ANSWERED).

        Valid in CALL_INCOMING or RING_INCOMING; Hangup in IDLE; Error otherwise. Stops the
        ringtone. ``codecs`` ("g711a;g711u") is validated as for ring(); on TDM the law is
        the span's. Returns the state: ANSWERED, or IDLE if the call ended first.
        """
        self._require(_INCOMING, "answer")
        wanted_codecs = parse_codecs(codecs) if codecs is not None else None
        headers = self.SIP.fields_to_send()
        self._wait(lambda: self._state in (State.ANSWERED, State.IDLE), ANSWER_TIMEOUT,
                   self._engine_answer, (wanted_codecs, headers))
        return self._state

    def _engine_answer(self, codecs: list[str] | None,
                       headers: list[tuple[str, str]] | None = None) -> None:
        self._require(_INCOMING, "answer")
        if headers:
            self._leg.headers_to_send = headers
        if self._player is not None:
            self._player.stop()
        with self._stepping(State.ANSWERING):
            self._leg.answer(codecs)

    @contextlib.contextmanager
    def _stepping(self, state: State) -> Iterator[None]:
        """Move to ``state`` before a leg step: the leg may report the answer, or that the
        call is gone, before the step returns. If the step raises, the state goes back."""
        before = self._state
        self._set_state(state)
        try:
            yield
        except BaseException:
            if self._state is state:
                self._state = before
            raise
        if self._state is not State.IDLE and not self._leg.live:
            # the protocol refused the step and the backend is clearing the call
            self._releasing = True

    def hang_up(self) -> State:
        """Clear the call (cause NORMAL) and block until it is IDLE, for up to 60 s.
        Harmless in IDLE. Returns the state."""
        if self._state is State.IDLE:
            return self._state
        self._wait(lambda: self._state is State.IDLE, CLEARING_TIMEOUT, self._engine_hang_up)
        return self._state

    def _engine_hang_up(self) -> None:
        self._engine_release(Cause.NORMAL, None)  # whatever it says, hang_up() waits

    def reject(self, cause: Cause | None = None, raw_cause: str | int | None = None) -> State:
        """Refuse the call (or release a connected one) with ``cause`` (REJECTED by
        default; BUSY, NOANSWER, UNOBTAINABLE, CHANGED, OUTOFORDER, BARRED, NOCHANNELS or
        CONGESTION), or with the protocol's ``raw_cause``, which overrides it (a Q.850
        number on PRI, a SIP status on SIP). A raw cause the protocol cannot send leaves
        the state at ERROR, from which reject() may be called again. Blocks up to 60 s
        for IDLE; harmless in IDLE. Returns the state."""
        cause = Cause.REJECTED if cause is None else cause
        if cause not in REJECT_CAUSES:
            raise ArgumentError(f"reject(cause={cause!r}); expected one of "
                                f"{', '.join(c.name for c in REJECT_CAUSES)}")
        if self._state is State.IDLE:
            return self._state
        raw = None if raw_cause is None else str(raw_cause)
        self._wait(lambda: self._state is State.IDLE, CLEARING_TIMEOUT, self._engine_release,
                   (cause, raw))
        return self._state

    def _engine_release(self, cause: Cause, raw_cause: str | None) -> bool:
        if self._state is State.IDLE or self._releasing:
            return True  # cleared, or clearing: the first cause stands
        sent = self._leg.release(cause, raw_cause)
        if sent is None:
            log.warning("%r: raw cause %r cannot be sent; state ERROR", self, raw_cause)
            self._set_state(State.ERROR)
            return False
        self._releasing = True
        self._pending_cause = sent
        if self._bridge is not None:
            self._bridge.close(ended=self)
        if self._player is not None:
            self._player.stop("hangup")
        return True

    def wait_for_idle(self, seconds_timeout: float | None = None) -> State:
        """Block until the call is IDLE (the far end hung up), or ``seconds_timeout`` passes
        (None: no limit). Returns the state.

        Our choice: while the call is connected to another (:meth:`connect`), the end of
        that other call ends the connection and wakes this wait too, with this call still
        ANSWERED and the other's cause in ``Details.disconnect_cause``: one wait serves
        for "either side hung up"."""
        timeout = _seconds("seconds_timeout", seconds_timeout, allow_none=True)
        breaks = self._bridge_breaks
        self._wait(lambda: self._state is State.IDLE or self._bridge_breaks != breaks,
                   timeout)
        return self._state

    # ------------------------------------------------------------------ connect
    def connect(self, other_call: UASCallChannel) -> bool:
        """Join this call to ``other_call``: each far end hears the other, 20 ms frames
        both ways as they arrive (converted where one is A-law and the other mu-law), and
        the keys pressed at one end reach the other (as RFC 4733 events where that end
        takes them, otherwise in band). Sets ``Details.connected_id`` on both.

        UAS rules: this call must be ANSWERED (Hangup in IDLE, Error otherwise); returns
        False, changing nothing, when ``other_call`` is not ANSWERED (ringing, ended);
        Error when either call is already connected, or a player (file, tone, DTMF) plays
        on either. Ours: Error for ``other_call`` being this channel or a channel of
        another engine. While connected, a play on either call is an Error; the DTMF
        detectors and recorders go on hearing their own far ends. The connection ends
        with :meth:`disconnect` (on either channel), or when either call ends: the other
        is then told (a blocked :meth:`wait_for_idle` returns, ``Details.disconnect_cause``
        says why) and stays up, hearing silence. A call's end makes the bridge stop in the
        same engine step: nothing is written to a call being cleared.
        """
        if not isinstance(other_call, UASCallChannel):
            raise ArgumentError(f"connect({other_call!r}): expected a UASCallChannel")
        self._require((State.ANSWERED,), "connect")
        if other_call is self:
            raise Error("connect(): a call cannot be connected to itself; expected another "
                        "channel (an extra channel's call, another application's)")
        if other_call._engine is not self._engine:
            raise Error("connect(): the other channel belongs to another engine; expected "
                        "two channels of one process")
        return self._run(self._engine_connect, other_call)

    def _engine_connect(self, other: UASCallChannel) -> bool:
        self._require((State.ANSWERED,), "connect")
        for channel in (self, other):
            if channel._bridge is not None:
                raise Error(f"connect(): {channel!r} is already connected to "
                            f"{channel.Details.connected_id}; expected disconnect() first")
        if other._state is not State.ANSWERED or other._releasing:
            log.info("%r: connect() to %r, which is not ANSWERED", self, other)
            return False
        for channel in (self, other):
            playing = channel._playing or next(
                (p for p in (channel.FilePlayer, channel.TonePlayer, channel.DTMFPlayer)
                 if p is not None and p._state is _PlayerBase.State.PLAYING), None)
            if playing is not None or (channel._player is not None
                                       and channel._player.playing):
                what = type(playing).__name__ if playing is not None else "ringtone"
                raise Error(f"connect() while the {what} of {channel!r} plays; expected it "
                            "to finish or stop() first")
        _Bridge(self, other)
        return True

    def disconnect(self) -> bool:
        """End the connection :meth:`connect` made (from either of its channels): both
        calls stay up, each far end hears silence until something plays. Returns True
        if there was a connection, False otherwise (also in IDLE: harmless, like
        hang_up())."""
        if self._bridge is None:  # and once the engine has stopped there is none
            return False
        return self._run(self._engine_disconnect)

    def _engine_disconnect(self) -> bool:
        if self._bridge is None:
            return False
        self._bridge.close(ended=None)
        return True

    # ------------------------------------------------------------------ transfer
    def transfer_cause(self) -> TransferCause:
        """How the last :meth:`retrievable_transfer` went (NONE before any)."""
        return self._transfer_cause

    def retrievable_transfer(self, other_call: UASCallChannel, call_to: str | None = None,
                             call_from: str = "", ringback_tone: str | None = None,
                             seconds_timeout: float | None = 120) -> State:
        """Transfer this answered call to ``call_to``, reached through ``other_call`` (an
        IDLE outbound channel: one of ``ExtraChannel``), keeping it retrievable.

        The call goes TRANSFERRING and ``other_call`` places the call; while it is being
        placed and rings, the caller hears ``ringback_tone`` (a tone name of this
        channel's tone player: one must exist; default RINGBACK), or the target's own
        early media where it sends some. Blocks until the target answers (the two are
        connected; the state is TRANSFERRED, :meth:`transfer_cause` NORMAL), refuses
        (back to ANSWERED, TARGETREJECT; FAIL when the call could not be placed), does not
        answer within ``seconds_timeout`` (None: no limit; the attempt is cancelled,
        ANSWERED, TIMEOUT), or the caller hangs up (IDLE, HANGUP; the attempt is
        cancelled). Returns the state.

        Once transferred the application keeps control: when the target hangs up the
        call is taken back (RECONNECTING, then ANSWERED, TARGETHANGUP; a blocked
        :meth:`wait_for_idle` returns) and may be played to or transferred again; when the
        caller hangs up, the target's call is hung up too (NORMAL); :meth:`disconnect` (or
        ``hang_up()`` on ``other_call``) takes it back at any time.

        Needs ANSWERED (Hangup in IDLE, Error otherwise or while connected or playing);
        Error when ``other_call`` is not an IDLE outbound channel or this channel has no
        tone player; ArgumentError for a missing ``call_to`` or an unknown tone.
        """
        what = "retrievable_transfer"
        self._require((State.ANSWERED,), what)
        self._check_not_connected(what)
        if not isinstance(other_call, UASCallChannel):
            raise ArgumentError(f"{what}(other_call={other_call!r}): expected a "
                                "UASCallChannel (an extra channel)")
        if other_call is self or other_call._backend is None:
            raise Error(f"{what}(): other_call must be an outbound channel (an extra "
                        "channel), not this call or another inbound one")
        if other_call._engine is not self._engine:
            raise Error(f"{what}(): other_call belongs to another engine")
        if other_call.state() is not State.IDLE:
            raise Error(f"{what}(): other_call is {other_call.state().name}; expected IDLE "
                        "(it places the call to the target)")
        if not isinstance(call_to, str) or not call_to.strip():
            raise ArgumentError(f"{what}(call_to={call_to!r}): expected the target's "
                                "number or SIP URI")
        if self.TonePlayer is None:
            raise Error(f"{what}(): this channel has no tone player; expected "
                        "channel.create_tone_player(tone_manager) first (the caller hears "
                        "its ringback)")
        tone = self.TonePlayer.tone_manager.get(ringback_tone or "RINGBACK")
        timeout = _seconds("seconds_timeout", seconds_timeout, allow_none=True)
        self._run(self._engine_begin_transfer, other_call)
        try:
            other_call.start_call(call_to, call_from)
        except BaseException:
            self._run(self._engine_end_transfer, other_call, TransferCause.FAIL)
            raise
        try:
            law = self._run(lambda: self._leg.media().law)
        except Hangup:
            raise
        except Error as exc:  # the call is going: the wait ends at once, and all is undone
            log.info("%r: no ringback for the transfer: %s", self, exc)
        else:
            ringback = _FarEndAudio(other_call, law, tone.source(law, loop=True))
            self._run(self._engine_transfer_ringback, ringback)
        self._wait(lambda: self._state is State.IDLE or self._releasing
                   or other_call._state in (State.ANSWERED, State.IDLE), timeout)
        state = self._run(self._engine_finish_transfer, other_call)
        if state is not State.IDLE and self._releasing:  # the caller is being cleared
            self._wait(lambda: self._state is State.IDLE, CLEARING_TIMEOUT)
            state = self._state
        return state

    def _engine_begin_transfer(self, other: UASCallChannel) -> None:
        self._require((State.ANSWERED,), "retrievable_transfer")
        self._check_not_connected("retrievable_transfer")
        if self._playing is not None or (self._player is not None and self._player.playing):
            raise Error("retrievable_transfer() while a player plays; expected it to "
                        "finish or stop() first")
        self._transfer_cause = TransferCause.NONE
        self._set_state(State.TRANSFERRING)
        # the target's news wakes the wait on this channel
        other.listeners.append(self._transfer_news)

    def _transfer_news(self, _other: UASCallChannel, event: ChannelEvent) -> None:
        if isinstance(event, StateChanged):
            self._recheck_waiters()

    def _engine_transfer_ringback(self, ringback: _FarEndAudio) -> None:
        if self._state is State.TRANSFERRING and not self._releasing:
            self._play(ringback)
        else:
            ringback.close()

    def _engine_end_transfer(self, other: UASCallChannel, cause: TransferCause) -> State:
        if self._transfer_news in other.listeners:
            other.listeners.remove(self._transfer_news)
        self._stop_playing("stopped")  # the ringback, and what of it waits to go out
        self._transfer_cause = cause
        if self._state is State.TRANSFERRING and not self._releasing:
            self._set_state(State.ANSWERED)
        return self._state

    def _engine_finish_transfer(self, other: UASCallChannel) -> State:
        if self._state is State.IDLE or self._releasing:
            other._engine_release(Cause.NORMAL, None)
            return self._engine_end_transfer(other, TransferCause.HANGUP)
        if other._state is State.ANSWERED and not other._releasing:
            busy = other._bridge is not None or other._playing is not None or (
                other._player is not None and other._player.playing)
            if busy:  # the application joined or played to the target meanwhile
                log.warning("%r: the transfer target %r is connected or playing already; "
                            "the transfer fails", self, other)
                return self._engine_end_transfer(other, TransferCause.FAIL)
            self._engine_end_transfer(other, TransferCause.NORMAL)
            _Bridge(self, other, transfer=True)
            self._set_state(State.TRANSFERRED)
            return self._state
        if other._state is State.IDLE:
            failed = other._cause in (Cause.NOCHANNELS, Cause.OUTOFORDER, Cause.FAILED,
                                      Cause.ERROR, Cause.OTHER)
            return self._engine_end_transfer(
                other, TransferCause.FAIL if failed else TransferCause.TARGETREJECT)
        # no answer in time: the attempt is cancelled
        other._engine_release(Cause.NOANSWER if other._state is State.RING_OUTGOING
                              else Cause.TIMEOUT, None)
        return self._engine_end_transfer(other, TransferCause.TIMEOUT)

    def _taken_back(self, cause: TransferCause | None) -> None:
        """Engine thread: a transferred call is ours again: its target has gone (``cause``
        TARGETHANGUP), or the application disconnected it (None: the cause stays)."""
        if self._state is State.TRANSFERRED and not self._releasing:
            if cause is not None:
                self._transfer_cause = cause
            self._set_state(State.RECONNECTING)
            self._set_state(State.ANSWERED)

    def wait_for_ringing(self, seconds_timeout: float | None = None) -> State:
        """Block until an outgoing call rings at the far end (RING_OUTGOING), is
        answered or ends, or ``seconds_timeout`` passes (our API, for :meth:`start_call`:
        a gateway rings its caller when the far end rings). Returns the state."""
        timeout = _seconds("seconds_timeout", seconds_timeout, allow_none=True)
        self._wait(lambda: self._state not in (State.CALL_OUTGOING,), timeout)
        return self._state

    # ------------------------------------------------------------------ engine thread
    def _on_leg_event(self, event: Any) -> None:
        if isinstance(event, LegCleared):
            pending = self._pending_cause
            self._cause = pending if pending is not None and event.by == "local" else event.cause
            self.Details.raw_cause = event.raw_cause
            # IDLE first: a play or ring() the stop wakes finds the call over, not ANSWERED
            self._set_state(State.IDLE)
            if self._player is not None:
                self._player.stop("hangup")
            # the leg's last word: let go of it both ways, so that the call's objects go
            # with the last reference to them, not at the cyclic collector's next pass
            self._leg.listener = None
            self._leg.listen(None)
            return
        if isinstance(event, LegDigit):
            if self._hearing is not None:
                self._hearing.out_of_band(event.digit, event.ended, event.source)
            else:
                log.debug("%r: DTMF %s before the call listens; dropped", self, event.digit)
            return
        table = TRANSITIONS.get(type(event), {})
        if self._state in table:
            self._set_state(table[self._state])

    def _set_state(self, state: State) -> None:
        if state is self._state or self._state is State.IDLE:
            return  # IDLE is final: a late step must not revive a call that has gone
        log.debug("%r -> %s", self, state.name)
        self._state = state
        if state in (State.ANSWERING, State.ANSWERED):
            self._listen()
        elif state is State.IDLE:
            if self._hearing is not None:
                self._hearing.pass_on()  # the frames heard last go where they were due
            if self._bridge is not None:
                self._bridge.close(ended=self)
            if self._playing is not None:
                self._playing._abort("hangup")
            self.FileRecorder._call_ended()
            if self._hearing is not None:
                self._hearing.close()
        if self._waiters:
            self._waiters = [w for w in self._waiters if not _settle(*w)]
        self._emit(StateChanged(state))

    # ------------------------------------------------------------------ listening
    def _listen(self) -> None:
        """Engine thread: hear the far end from now on (digits, recordings, barge-in)."""
        if self._hearing is not None or self._state is State.IDLE:
            return
        self._hearing = Hearing(InboundDsp.of(self._engine), self._on_key,
                                name=self.Details.channel)
        self._hearing.taps.extend(self._followers)
        self._leg.listen(self._hearing.heard)

    def _follow(self, tap: Callable[[bytes, str], None], *, stop: bool = False) -> None:
        """Engine thread: hand what the far end sends to ``tap`` too (or, ``stop``, no
        longer), from when this call listens."""
        taps = self._hearing.taps if self._hearing is not None else None
        if stop:
            if tap in self._followers:
                self._followers.remove(tap)
            if taps is not None and tap in taps:
                taps.remove(tap)
            return
        self._followers.append(tap)
        if taps is not None:
            taps.append(tap)

    def _on_key(self, digit: str) -> None:
        """Engine thread: the far end pressed a key (in band or out of band, once)."""
        log.info("%r: DTMF %s", self, digit)
        if self._bridge is not None:
            assert self._hearing is not None
            self._bridge.key_from(self, digit, in_band=self._hearing.key_sample is not None)
        if len(self._digits) >= MAX_BUFFERED_DIGITS:
            self._digits_dropped += 1
            if self._digits_dropped == 1:
                log.warning("%r: %d digits wait to be collected; later ones are dropped",
                            self, MAX_BUFFERED_DIGITS)
            return
        self._digits += digit
        self._emit(DigitReceived(digit))
        for barge_in in list(self._barge_ins):
            barge_in()
        if self._waiters:
            self._waiters = [w for w in self._waiters if not _settle(*w)]

    def _recheck_waiters(self) -> None:
        """Engine thread: wake the waits whose condition holds now (not a state change)."""
        if self._waiters:
            self._waiters = [w for w in self._waiters if not _settle(*w)]

    def _emit(self, event: ChannelEvent) -> None:
        for listener in list(self.listeners):
            try:
                listener(self, event)
            except Exception as exc:
                faultlog.record("a channel listener", exc, f"{self!r}, {event}")

    def _play(self, source: FrameSource, on_done: Callable[[str], None] | None = None) -> None:
        """Engine thread: play ``source`` on this call, telling listeners what plays."""
        what = getattr(source, "label", type(source).__name__)

        def done(reason: str) -> None:
            self._emit(MediaEnded(what, reason))
            if on_done is not None:
                on_done(reason)

        self._emit(MediaStarted(what))  # before: a source may end at once, inside play()
        self._media_player().play(source, done)

    def _media_player(self) -> Player:
        if self._player is None:
            self._player = Player(self._clock, _Sent(self, self._leg.media()),
                                  name=self.Details.channel)
        return self._player

    def _stop_playing(self, reason: str) -> None:
        """Engine thread: stop what plays and drop what is queued for the far end, so that
        it stops hearing it now (barge-in), not after the queue."""
        if self._player is not None and self._player.playing:
            self._player.stop(reason)
            with contextlib.suppress(Error, OSError):
                self._leg.media().flush()

    # ------------------------------------------------------------------ helpers
    def _check_not_connected(self, what: str) -> None:
        if self._bridge is not None:
            raise Error(f"{what} while the call is connected to {self.Details.connected_id};"
                        " expected disconnect() first (the other call is its audio now)")

    def _live(self) -> bool:
        return self._state is not State.IDLE and not self._releasing

    def _require(self, states: tuple[State, ...], method: str) -> None:
        """R1/R2, on the application thread before any work and again on the engine."""
        state = self._state
        if state is State.IDLE:
            raise Hangup(f"{method}() on a call that has ended (IDLE, cause "
                         f"{self._cause.name})", cause=self._cause)
        if self._releasing:
            raise Hangup(f"{method}() on a call that is being cleared", cause=self._cause)
        if state not in states:
            raise Error(f"{method}() in state {state.name}; expected "
                        f"{' or '.join(s.name for s in states)}")

    def _wait(self, condition: Callable[[], bool], timeout: float | None,
              step: Callable[..., Any] | None = None, args: tuple = ()) -> bool:
        """Block the calling thread until ``condition`` (checked on the engine thread at
        each state change) holds, or ``timeout`` seconds of engine time pass; False then.

        ``step(*args)``, when given, runs on the engine thread first, in the same round trip
        (each costs both threads a wake-up and tens of microseconds: a call's set-up made
        seven); its exception is raised here, and when it returns False nothing is waited
        for and the result is False.
        """
        future: concurrent.futures.Future = concurrent.futures.Future()
        engine = self._engine

        def expire() -> None:
            if not future.done():
                self._forget_waiter(future)
                future.set_result(False)

        def register() -> None:
            try:
                if step is not None and step(*args) is False:
                    future.set_result(False)
                elif not _settle(condition, future):
                    self._waiters.append((condition, future))
                    if timeout is not None:
                        # The engine ends the wait itself: the condition and the deadline
                        # are judged on one thread, and the waiting thread needs no second
                        # round trip to withdraw its waiter (at hundreds of calls a second
                        # each round trip is a wake-up that takes the GIL from the engine).
                        # A hair after the deadline: what happens at the deadline itself
                        # (an answer, a digit, and the steps they set off at that instant)
                        # comes first, and is not a timeout.
                        timer = engine.call_later(timeout + AT_THE_DEADLINE, expire)
                        future.add_done_callback(lambda _f: timer.cancel())
            except BaseException as exc:  # for the waiting thread, as Engine.run would
                if not future.done():
                    future.set_exception(exc)

        if engine.in_engine_thread:
            register()  # and Engine.wait() refuses to block the engine, as ever
        else:
            try:
                engine.call_soon_threadsafe(register)
            except Error:
                if engine.accepting:
                    raise
                # The engine has stopped: nothing will change any more. What holds now
                # holds (an ended call is IDLE); anything else can never come.
                if step is None and condition():
                    return True
                raise Hangup(f"{self!r}: the engine {engine.name!r} has stopped",
                             cause=self._cause) from None
        return engine.wait(future)

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the engine thread; Hangup once the engine has stopped (every
        call is over then), as for a thread that was waiting when it stopped."""
        try:
            return self._engine.run(fn, *args)
        except Error:
            if self._engine.accepting:
                raise
            raise Hangup(f"{self!r}: the engine {self._engine.name!r} has stopped",
                         cause=self._cause) from None

    def _forget_waiter(self, future: concurrent.futures.Future) -> None:
        self._waiters = [w for w in self._waiters if w[1] is not future]


class _NoExtraChannels(Sequence["UASCallChannel"]):
    """``ExtraChannel`` of a channel that has none: any index is an Error."""

    def __len__(self) -> int:
        return 0

    def __getitem__(self, index: Any) -> Any:
        raise Error(f"ExtraChannel[{index!r}]: this channel has no extra channels; expected "
                    "the channel of an application run by uascall run or uascall call")


NO_EXTRA_CHANNELS = _NoExtraChannels()


class _NoCall(CallLeg):
    """The leg of an outbound channel with no call (yet): nothing to signal."""

    incoming = False

    def __init__(self, call_to: str = "", call_from: str = "") -> None:
        self.call_to, self.call_from = call_to, call_from

    def describe(self) -> str:
        return "no call"

    @property
    def live(self) -> bool:
        return False


class _Sent:
    """The player's sink: the call's media port, with what goes out kept for the echo
    guard while the call listens."""

    _channel: BackRef[UASCallChannel] = BackRef()

    def __init__(self, channel: UASCallChannel, port: Any) -> None:
        self._channel = channel
        self._port = port

    def write(self, frame: bytes) -> bool:
        if not self._port.write(frame):
            return False
        channel = self._channel
        hearing = channel._hearing
        # kept once the far end can send it back: from the answer, or as soon as anything
        # is heard (not while an early-media call, not yet heard, only rings)
        if hearing is not None and (hearing.frames_heard or channel._state is State.ANSWERED):
            hearing.sent(frame, self._port.law)
        return True


class _Labelled(FrameSource):
    """A source with a name for listeners and logs."""

    def __init__(self, source: FrameSource, label: str) -> None:
        self._source = source
        self.label = label
        self.law = source.law
        self.next_frame = source.next_frame  # type: ignore[method-assign]
        self.close = source.close  # type: ignore[method-assign]

    @property
    def duration(self) -> float | None:
        return self._source.duration

    @property
    def complete(self) -> bool:
        return self._source.complete

    @property
    def error(self) -> Exception | None:
        return self._source.error


def _settle(condition: Callable[[], bool], future: concurrent.futures.Future) -> bool:
    if not condition():
        return False
    if not future.done():
        future.set_result(True)
    return True


def _check_ringtone_type(ringtone: object) -> None:
    from uascall.media.playable import PlayableMedia  # media imports channel lazily too
    if ringtone is not None and not isinstance(ringtone, str | PlayableMedia
                                               | UASCallChannel):
        raise ArgumentError(f"custom_ringtone {ringtone!r}: expected a tone name, a "
                            "PlayableMedia or a channel placing a call")


class _Bridge:
    """What connect() made: an :class:`AudioLink` each way between two answered calls
    (engine thread). Made and closed in one engine step each, so no frame goes one way
    only, nor to a call that is being cleared."""

    def __init__(self, a: UASCallChannel, b: UASCallChannel, *,
                 transfer: bool = False) -> None:
        #: a retrievable transfer of ``a`` to ``b``: when ``a``'s caller hangs up ``b`` is
        #: hung up too; when ``b`` ends, ``a`` is taken back
        self.transfer = transfer
        self.closed = False
        for channel in (a, b):
            channel._listen()  # ANSWERED calls listen already; this is a no-op then
        # every step that can fail (a port that cannot be opened) before anything changes
        self.links = {a: self._link(a, b), b: self._link(b, a)}
        self.a, self.b = a, b
        for source, link in self.links.items():
            link.open()
            assert source._hearing is not None
            source._hearing.taps.append(link.heard)
        a._bridge = b._bridge = self
        a.Details.connected_id, b.Details.connected_id = b.Details.call_id, a.Details.call_id
        a.Details.disconnect_cause = b.Details.disconnect_cause = None
        log.info("%r and %r connected", a, b)
        a._emit(Connected(b.Details.call_id))
        b._emit(Connected(a.Details.call_id))

    @staticmethod
    def _link(source: UASCallChannel, target: UASCallChannel) -> AudioLink:
        heard, told = source._hearing, target._hearing
        assert heard is not None and told is not None
        return AudioLink(target._leg.media(),
                         name=f"{source.Details.call_id} -> {target.Details.call_id}",
                         key_held=heard.inband_key_held, key_down=heard.key_down,
                         sent=told.sent, sent_key=told.sent_key, now=source._engine.time,
                         call_later=source._engine.call_later)

    def key_from(self, source: UASCallChannel, digit: str, *, in_band: bool) -> None:
        self.links[source].key(digit, in_band)

    def close(self, *, ended: UASCallChannel | None) -> None:
        """Take the bridge down; ``ended`` is the call whose end (or release) did it, or
        None for disconnect(). The other is told, with the ended call's cause."""
        a, b = self.a, self.b
        if self.closed:
            return
        self.closed = True
        for source, link in self.links.items():
            link.close()
            hearing = source._hearing
            if hearing is not None and link.heard in hearing.taps:
                hearing.taps.remove(link.heard)
        for channel in (a, b):
            if channel._bridge is self:
                channel._bridge = None
                channel.Details.connected_id = ""
        log.info("%r and %r disconnected%s", a, b,
                 "" if ended is None else f": {ended!r} ended")
        if self.transfer:
            # first, so that whoever the end wakes finds the state it leads to
            if ended is a:  # the caller hung up: the transferred call ends with it
                b._engine_release(Cause.NORMAL, None)
            else:  # the target hung up, or the call was taken back with disconnect()
                a._taken_back(TransferCause.TARGETHANGUP if ended is b else None)
        for channel, other in ((a, b), (b, a)):
            cause = None
            if ended is other:
                pending = other._pending_cause
                cause = pending if other._state is not State.IDLE and pending else other._cause
                channel.Details.disconnect_cause = cause
                channel._bridge_breaks += 1
                channel._recheck_waiters()
            channel._emit(Disconnected(other.Details.call_id, cause))


class _FarEndAudio(FrameSource):
    """Another call's far end as this call's ringtone (``ring(custom_ringtone=channel)``):
    what it sends while it is being placed or rings, and ``ringback`` (the tone player's
    default) while it rings without sending anything. It ends when that call is answered
    or ends. Its frames wait in a queue of :data:`BRIDGE_DEPTH`: the oldest slips when
    that call's clock runs ahead of ours."""

    def __init__(self, other: UASCallChannel, law: str,
                 ringback: FrameSource | None) -> None:
        self.law = law
        self.label = f"the far end of {other.Details.call_id} ({other.Details.call_to})"
        self._other = other
        self._ringback = ringback
        self._queue: collections.deque[bytes] = collections.deque()
        self._tables: dict[str, bytes | None] = {}
        self._following = False
        self._heard_any = False
        self._silence = g711.codec(law).silence_frame
        self.slips = 0

    @property
    def duration(self) -> float | None:
        return None

    @property
    def complete(self) -> bool:
        return False  # how long it lasts is known when the other call is answered

    def _heard(self, frame: bytes, law: str) -> None:
        table = self._tables.get(law, b"")
        if table == b"":
            table = self._tables[law] = g711.transcoder(law, self.law)
        self._heard_any = True
        self._queue.append(frame if table is None else frame.translate(table))
        if len(self._queue) > BRIDGE_DEPTH:
            self._queue.popleft()
            self.slips += 1

    def next_frame(self) -> bytes | None:  # engine thread: the player pulls
        other = self._other
        if not self._following:
            other._follow(self._heard)
            self._following = True
        if other._state not in (State.CALL_OUTGOING, State.RING_OUTGOING) \
                or other._releasing:
            return None
        if self._queue:
            return self._queue.popleft()
        if not self._heard_any and self._ringback is not None \
                and other._state is State.RING_OUTGOING:
            return self._ringback.next_frame() or self._silence
        return self._silence

    def close(self) -> None:
        if self._following:
            self._following = False
            self._other._follow(self._heard, stop=True)
        if self._ringback is not None:
            self._ringback.close()


def _seconds(name: str, value: float | None, *, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    seconds = math.nan
    if not isinstance(value, bool) and isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond any float: infinite as far as we can count
            seconds = math.inf
    if not math.isfinite(seconds) or seconds < 0:
        raise ArgumentError(f"{name}={value!r}; expected a finite number of seconds >= 0"
                            + (" or None" if allow_none else ""))
    return seconds


class _Job:
    """A player's or the recorder's bookkeeping: its state and cause, and a count of its
    jobs, by which ``stop()`` stops only the job it was called during."""

    _state: Any  # each kind's own State
    _channel: BackRef[UASCallChannel] = BackRef()

    def __init__(self, channel: UASCallChannel) -> None:
        self._channel = channel
        self._generation = 0  # counts the jobs
        self._stop_before = -1  # engine: a stop() for this job came before it started

    def _stop(self, running: Any, abort: Callable[[], None]) -> None:
        """Stop the job in progress (``abort()`` on the engine thread, if it has begun),
        if the state is ``running``; never a later one. Safe from any thread."""
        generation = self._generation
        if self._state is not running:
            return

        def stop() -> None:
            if self._generation != generation:
                return
            self._stop_before = generation
            abort()

        self._channel._engine.run(stop)


class _PlayerBase(_Job):
    """What the channel's players share: state, cause, one play at a time on the call's
    one outgoing path (a play while another of the channel's players plays is an Error),
    barge-in, and a ``stop()`` that stops only the play it was called during."""

    class Cause(Enum):
        ERROR = "error"
        NORMAL = "normal"
        BARGEIN = "bargein"
        ABORTED = "aborted"
        HANGUP = "hangup"
        TIMEOUT = "timeout"
        NONE = "none"

    class State(Enum):
        PLAYING = "playing"
        IDLE = "idle"
        ERROR = "error"

    _REASONS = {"finished": "NORMAL", "stopped": "ABORTED", "replaced": "ABORTED",
                "bargein": "BARGEIN", "hangup": "HANGUP", "failed": "ERROR"}

    def __init__(self, channel: UASCallChannel) -> None:
        super().__init__(channel)
        self._state = self.State.IDLE
        self._cause = self.Cause.NONE

    def state(self) -> Any:
        return self._state

    def cause(self) -> Any:
        return self._cause

    def _check(self, what: str) -> None:
        """R1/R2 for a play, before its arguments are looked at."""
        self._channel._require((State.ANSWERED,), what)
        self._channel._check_not_connected(what)
        if self._state is self.State.PLAYING:
            raise Error(f"{what}: already playing; expected it to finish or stop() first")
        channel = self._channel
        # A play being started on another thread is PLAYING before the engine has made it
        # the channel's player: both count, or the later play could start first.
        starting = (p for p in (channel.FilePlayer, channel.TonePlayer, channel.DTMFPlayer)
                    if p is not None and p is not self and p._state is self.State.PLAYING)
        other = channel._playing or next(starting, None)
        if other is not None and other is not self:
            raise Error(f"{what} while the {type(other).__name__} plays; expected it to "
                        "finish or stop() first")

    def _port(self, what: str) -> Any:
        """The call's media port, from the engine (Hangup when the call went meanwhile)."""
        channel = self._channel

        def port() -> Any:
            channel._require((State.ANSWERED,), what)
            try:
                return channel._leg.media()
            except Error:
                if not channel._leg.live:  # the far end cleared it a moment ago
                    raise Hangup(f"{what} on a call that has ended", cause=channel._cause
                                 ) from None
                raise

        return channel._engine.run(port)

    def _play(self, source_for_law: Callable[[str], FrameSource] | None, what: str, *,
              barge_in: bool = False, start: Callable[..., None] | None = None) -> Any:
        """Play a source (made for the call's law) and block until it ends; or, with
        ``start(port, finished)``, run that on the engine thread instead (DTMF out of
        band), which calls ``finished(reason)`` when it is over."""
        channel = self._channel
        with channel._claim:  # two threads asking at once: one plays, the other is refused
            self._check(what)
            self._state, self._cause = self.State.PLAYING, self.Cause.NONE
            self._generation += 1
            generation = self._generation
        try:
            port = self._port(what)
            source = source_for_law(port.law) if source_for_law is not None else None
        except BaseException:
            self._state = self.State.IDLE  # nothing started
            raise
        done: concurrent.futures.Future = concurrent.futures.Future()
        taken: list[FrameSource] = []  # the source, once a player owns (and closes) it

        def begin() -> None:
            if self._stop_before == generation:  # stop() came first, from another thread
                done.set_result("stopped")
                return
            if channel._state is not State.ANSWERED or channel._releasing:
                done.set_result("hangup")
                return
            try:
                channel._check_not_connected(what)
            except Error as exc:
                done.set_exception(exc)
                return
            if channel._playing is not None:
                done.set_exception(Error(f"{what} while the {type(channel._playing).__name__}"
                                         " plays; expected it to finish or stop() first"))
                return
            stop_on_key = (lambda: self._abort("bargein")) if barge_in else None

            def finished(reason: str) -> None:
                if channel._playing is self:
                    channel._playing = None
                if stop_on_key in channel._barge_ins:
                    channel._barge_ins.remove(stop_on_key)
                if not done.done():
                    done.set_result(reason)

            channel._playing = self
            if stop_on_key is not None:
                channel._barge_ins.append(stop_on_key)
            if start is not None:
                start(port, finished)
            elif source is not None:
                taken.append(source)
                channel._play(source, finished)

        try:
            try:
                channel._engine.run(begin)
            finally:
                if source is not None and not taken:
                    source.close()  # never played: what it holds is let go here
            reason = channel._engine.wait(done)
        except BaseException:
            self._state = self.State.ERROR
            raise
        self._state = self.State.IDLE
        self._cause = self.Cause[self._REASONS.get(reason, "ERROR")]
        return self._cause

    def _abort(self, reason: str) -> None:
        """Engine thread: end this player's play now (barge-in, stop(), the call's end)."""
        self._channel._stop_playing(reason)

    def stop(self) -> None:
        """Stop what this player is playing (its play() returns ABORTED). Safe from any
        thread; does nothing when it is not playing, and never stops a later play."""
        def abort() -> None:
            if self._channel._playing is self:
                self._abort("stopped")

        self._stop(self.State.PLAYING, abort)


class FilePlayer(_PlayerBase):
    """Plays a file (or any PlayableMedia) on an answered call (UAS ``FilePlayer``)."""

    def play(self, file_name: str | PlayableMedia, barge_in: bool = False) -> Any:
        """Play ``file_name`` (in the channel's media directory) or a PlayableMedia, and
        block until it ends. Needs ANSWERED: Hangup in IDLE, Error otherwise or if already
        playing. Returns a ``FilePlayer.Cause``: NORMAL, BARGEIN (``barge_in`` and the far
        end pressed a key: the digit stays for ``DTMFDetector.get_digits()``), ABORTED
        (``stop()``), HANGUP. Barge-in stops the prompt at once: what was queued for the
        far end is dropped too. Digits already waiting do not barge in.

        A text to say plays as it is rendered, from its first words on (as for ring();
        Error if it cannot be spoken at all); a rendering that fails after that ends the
        play with ERROR. A play that ends early stops the rendering."""
        self._check("FilePlayer.play")
        from uascall.media.playable import PlayableMedia
        media = file_name if isinstance(file_name, PlayableMedia) else PlayableMedia(
            file_to_play=file_name, channel=self._channel)
        # here, on the application thread: a file is loaded, a text's first words come
        with self._channel._open(media) as opened:
            return self._play(lambda law: _Labelled(opened.source(law), opened.label),
                              "FilePlayer.play", barge_in=bool(barge_in))


class TonePlayer(_PlayerBase):
    """Plays the tones of a :class:`~uascall.media.tones.ToneManager` (our API)."""

    def __init__(self, channel: UASCallChannel, tone_manager: ToneManager) -> None:
        super().__init__(channel)
        self.tone_manager = tone_manager

    def play(self, tone_name: str, seconds_duration: float | None = None,
             barge_in: bool = False) -> Any:
        """Play a tone on an answered call: one cadence cycle, or ``seconds_duration``
        seconds of it looped. Blocks; returns a ``TonePlayer.Cause`` (BARGEIN as for
        ``FilePlayer.play``)."""
        self._check("TonePlayer.play")
        tone = self.tone_manager.get(tone_name)
        seconds = _seconds("seconds_duration", seconds_duration, allow_none=True)
        return self._play(lambda law: _Labelled(tone.source(law, loop=seconds is not None,
                                                            seconds=seconds),
                                                f"tone {tone.name}"), "TonePlayer.play",
                          barge_in=bool(barge_in))


class DTMFPlayer(_PlayerBase):
    """Sends DTMF digits to the far end (UAS ``DTMFPlayer``).

    In band (80 ms of tone with 80 ms between digits) on TDM and on SIP when the far end
    did not offer telephone-event; out of band as RFC 4733 telephone-events (80 ms each,
    80 ms apart) on SIP when it did. In band on a DAHDI channel the kernel sounds each
    key (its tone zone's DTMF, -10 dBm0 a tone in the builtin zones), held down and let
    go by the engine's timers, so that a late engine lengthens a key rather than
    breaking it in two. Elsewhere (SIP, whose packets carry the key's time; the voice
    modem), and where the kernel refuses, the tones are written as audio (-9/-7 dBm0).
    ``stop()`` ends a play with ERROR (the UAS DTMFPlayer has no ABORTED).
    """

    class Cause(Enum):
        ERROR = "error"
        NORMAL = "normal"
        HANGUP = "hangup"
        TIMEOUT = "timeout"
        NONE = "none"

    _REASONS = {"finished": "NORMAL", "hangup": "HANGUP", "stopped": "ERROR",
                "failed": "ERROR"}
    #: most characters play() takes
    MAX_LENGTH = 32
    #: the pause a comma makes (seconds)
    PAUSE = 0.5
    ON_MS = 80
    OFF_MS = 80

    def play(self, digits: str) -> Any:
        """Send ``digits`` (``0-9 A-D * #``; a comma pauses 0.5 s; at most 32 characters)
        and block until they are sent. Needs ANSWERED: Hangup in IDLE, Error otherwise,
        for an invalid string, or while a player of this channel plays. Returns a
        ``DTMFPlayer.Cause``: NORMAL, or HANGUP if the call ended first. Some networks
        strip in-band DTMF."""
        if not isinstance(digits, str):
            raise Error(f"DTMFPlayer.play({digits!r}): expected a string of 0-9 A-D * # ,")
        keys = digits.upper()
        bad = [ch for ch in keys if ch not in _DTMF_KEYS and ch != ","]
        if bad or not keys or len(keys) > self.MAX_LENGTH:
            raise Error(f"DTMFPlayer.play({digits!r}): expected 1 to {self.MAX_LENGTH} "
                        "characters of 0-9 A-D * # and ',' (a 0.5 s pause)"
                        + (f"; {bad[0]!r} is not one" if bad else ""))
        self._check("DTMFPlayer.play")
        port = self._port("DTMFPlayer.play")
        if port.telephone_events or (port.sounds_digits and port.keys_keep_time):
            sounded = not port.telephone_events
            return self._play(None, "DTMFPlayer.play", start=lambda port, done: (
                self._begin_keys(port, keys, done, sounded=sounded)))
        return self._play(self._in_band(keys), "DTMFPlayer.play")

    def __init__(self, channel: UASCallChannel) -> None:
        super().__init__(channel)
        # engine thread, while the keys go one at a time (_stepping): the next step, the
        # keys still to go, the port, whether its generator sounds them (else they go as
        # telephone-events), the port holding a key down, and the play's end. Methods, not
        # closures of each other: those would stay a reference cycle after the play.
        self._timer: TimerHandle | None = None
        self._stepping = False
        self._keys_left = ""
        self._keys_port: Any = None
        self._sounded = False
        self._what = ""
        self._key_down: Any = None
        self._keys_done: Callable[[str], None] | None = None

    def _in_band(self, keys: str) -> Callable[[str], FrameSource]:
        return lambda law: _Labelled(_dtmf_in_band(keys, law, self), f"DTMF {keys}")

    def _begin_keys(self, port: Any, keys: str, done: Callable[[str], None], *,
                    sounded: bool) -> None:
        """Engine thread: the keys one at a time, paced by timers: as telephone-events, or
        (``sounded``) each held down on the line's own generator where it keeps the
        line's time (a DAHDI channel's kernel) and let go. A late engine then lengthens a key or
        the pause after it, where frames written one by one would leave a gap in the tone
        that a receiver hears as the key twice, or not at all. If the generator refuses,
        the keys not sounded yet are played in band."""
        self._keys_port, self._keys_left, self._sounded = port, keys, sounded
        self._keys_done, self._stepping = done, True
        if not sounded:
            self._next_key()
            return
        self._what = f"DTMF {keys}"
        channel = self._channel
        channel._emit(MediaStarted(self._what))
        # what a play just before this one queued goes out first, not cut short (two
        # frames more: the line may have started it up to a frame after we did, and may
        # not yet have taken what came due since its last tick)
        engine, player = channel._engine, channel._player
        start_at = -math.inf if player is None else player.plays_until + 2 * FRAME_SECONDS
        self._timer = engine.call_at(max(start_at, engine.time()), self._next_key)

    def _next_key(self) -> None:
        self._timer = None
        channel = self._channel
        if channel._playing is not self:
            return
        if not self._keys_left:
            self._keys_ended("finished")
            return
        key, self._keys_left = self._keys_left[0], self._keys_left[1:]
        engine, port = channel._engine, self._keys_port
        if key == ",":
            self._timer = engine.call_later(self.PAUSE, self._next_key)
            return
        if not self._sounded:
            port.send_digit(key, self.ON_MS)
            if channel._hearing is not None:  # its echo is not the far end's key
                channel._hearing.sent_key(key)
            self._timer = engine.call_later((self.ON_MS + self.OFF_MS) / 1000, self._next_key)
            return
        try:
            sounded = port.start_digit(key)
        except OSError as exc:
            log.debug("%r: DTMF %s not sounded: %s", channel, key, exc)
            sounded = False
        if not sounded:  # the generator refused: the rest goes in band
            self._stepping = False
            rest = key + self._keys_left
            log.debug("%r: the line does not sound DTMF; %s goes in band", channel, rest)
            channel._media_player().play(self._in_band(rest)(port.law), self._keys_ended)
            return
        self._key_down = port
        if channel._hearing is not None:  # its echo is not the far end's key
            channel._hearing.sent_key(key)
        self._timer = engine.call_later(self.ON_MS / 1000, self._key_up)

    def _key_up(self) -> None:
        self._timer = None
        self._release_key()
        if self._channel._playing is self:
            self._timer = self._channel._engine.call_later(self.OFF_MS / 1000,
                                                           self._next_key)

    def _release_key(self) -> None:
        port, self._key_down = self._key_down, None
        if port is not None:
            try:
                port.stop_digit()
            except OSError as exc:  # the device went: nothing sounds any more
                log.debug("%r: key up: %s", self._channel, exc)

    def _keys_ended(self, reason: str) -> None:
        done, self._keys_done = self._keys_done, None
        self._stepping, self._keys_port, self._keys_left = False, None, ""
        if self._sounded:
            self._channel._emit(MediaEnded(self._what, reason))
        if done is not None:
            done(reason)

    def _abort(self, reason: str) -> None:
        if not self._stepping:  # frames playing (or nothing): the channel's player
            super()._abort(reason)
            return
        if self._timer is not None:  # the events or keys still to go are not sent
            self._timer.cancel()
            self._timer = None
        self._release_key()
        self._keys_ended(reason)


_DTMF_KEYS = "0123456789*#ABCD"
#: samples cut from a recording before a key's estimated start, when the key ends it
_KEY_START_MARGIN = 80


def _dtmf_in_band(keys: str, law: str, player: DTMFPlayer) -> FrameSource:
    """The in-band DTMF of ``keys`` (commas are pauses) as a one-pass source."""
    from uascall.media import g711
    from uascall.media.dtmf import dtmf_samples
    from uascall.media.source import BufferSource
    samples = array.array("h")
    pause = array.array("h", bytes(2 * round(player.PAUSE * g711.SAMPLE_RATE)))
    for key in keys:
        if key == ",":
            samples.extend(pause)
        else:
            samples.extend(dtmf_samples(key, on_ms=player.ON_MS, off_ms=player.OFF_MS,
                                        law=law))
    return BufferSource(g711.codec(law).encode(samples), law)


class FileRecorder(_Job):
    """Records what the far end says into a WAV file (UAS ``FileRecorder``).

    The file goes in the channel's media directory (the name may not lead outside it), as
    A-law (the default), mu-law or 16-bit PCM at 8 kHz. It holds the far end's audio
    only, whatever the channel plays meanwhile, and it is a complete, valid WAV file
    however the recording ends, the caller hanging up included: it is written as it
    grows, by the thread that called :meth:`record`, never by the engine.
    """

    class Cause(Enum):
        ERROR = "error"
        BARGEIN = "bargein"
        SILENCE = "silence"
        SIZE = "size"
        ABORTED = "aborted"
        HANGUP = "hangup"
        TIMEOUT = "timeout"
        NONE = "none"

    class State(Enum):
        RECORDING = "recording"
        IDLE = "idle"
        ERROR = "error"

    #: file formats: "alaw", "ulaw", "pcm16"
    FORMATS = ("alaw", "ulaw", "pcm16")
    #: the default limit on a recording's audio (bytes): over two hours of A-law
    DEFAULT_MAX_FILE_SIZE = 64 * 1024 * 1024

    def __init__(self, channel: UASCallChannel) -> None:
        super().__init__(channel)
        self._state = self.State.IDLE
        self._cause = self.Cause.NONE
        self._audio: bool | None = None
        self._recording: Recording | None = None  # engine thread: the one in progress
        self.file_path: str | None = None

    def state(self) -> FileRecorder.State:
        return self._state

    def cause(self) -> FileRecorder.Cause:
        """Why the last recording ended."""
        return self._cause

    def audio_detected_in_recording(self) -> bool | None:
        """After a recording: True if the far end made any sound in it (at least 60 ms
        above -42 dBm0), False if it was silent; None before the first one ends."""
        return self._audio

    def record(self, filename: str, milliseconds_max_silence: int = 3000,
               seconds_timeout: float | None = 60, barge_in: bool = False,
               file_format: str = "alaw",
               max_file_size: int | None = DEFAULT_MAX_FILE_SIZE) -> FileRecorder.Cause:
        """Record the far end into ``filename`` (in the media directory; an existing file
        is replaced) and block until the recording ends. Returns the ``Cause``:

        SILENCE after ``milliseconds_max_silence`` ms without sound (0: no limit; the
        silence is cut from the file but for its first 0.2 s), TIMEOUT after
        ``seconds_timeout`` seconds (None or 0: no limit), SIZE when the audio reaches
        ``max_file_size`` bytes (None: no limit), BARGEIN when ``barge_in`` and the far
        end presses a key (the digit stays for ``DTMFDetector.get_digits()``; the key's
        tone is cut from the file), ABORTED by :meth:`stop`, HANGUP when the call ends,
        ERROR when the file cannot be written (logged).

        Needs ANSWERED: Hangup in IDLE, Error in other states, while recording, or for a
        file name that leads outside the media directory or into a missing folder, or a
        file that cannot be created; ArgumentError for a bad argument. The signature
        beyond ``filename`` is ours (UAS's was not seen in full); :attr:`file_path` is
        the file's path afterwards.
        """
        channel = self._channel
        what = "FileRecorder.record"
        if isinstance(milliseconds_max_silence, bool) or not isinstance(
                milliseconds_max_silence, int) or milliseconds_max_silence < 0:
            raise ArgumentError(f"milliseconds_max_silence={milliseconds_max_silence!r}; "
                                "expected whole milliseconds >= 0 (0: no limit)")
        timeout = _seconds("seconds_timeout", seconds_timeout, allow_none=True)
        if file_format not in self.FORMATS:
            raise ArgumentError(f"file_format={file_format!r}; expected one of "
                                f"{', '.join(self.FORMATS)}")
        if max_file_size is not None and (isinstance(max_file_size, bool) or not isinstance(
                max_file_size, int) or max_file_size < 2):
            raise ArgumentError(f"max_file_size={max_file_size!r}; expected bytes >= 2, or "
                                "None for no limit")
        channel._require((State.ANSWERED,), what)
        if self._state is self.State.RECORDING:
            raise Error(f"{what}: already recording; expected it to end or stop() first")
        from uascall.media.playable import media_path
        from uascall.media.recorder import Recording
        from uascall.media.wav import WavWriter
        path = media_path(channel.media_dir, filename, strict=False)
        try:
            is_dir, parent_is_dir = path.is_dir(), path.parent.is_dir()
        except OSError as exc:  # a name too long, say
            raise Error(f"{what}: {filename!r}: {exc.strerror or exc}; expected a file "
                        "name in the media directory") from None
        if is_dir:
            raise Error(f"{what}: {str(path)!r} is a directory; expected a file name")
        if not parent_is_dir:
            raise Error(f"{what}: the folder {str(path.parent)!r} does not exist; expected "
                        "an existing folder in the media directory")
        recording = Recording(channel._engine, encoding=file_format,
                              max_silence=milliseconds_max_silence / 1000.0,
                              timeout=timeout or None,
                              max_bytes=max_file_size if max_file_size is not None
                              else 2 ** 62, name=f"recording {path.name}")
        with channel._claim:  # two threads asking at once: one records, the other is refused
            if self._state is self.State.RECORDING:
                raise Error(f"{what}: already recording; expected it to end or stop() "
                            "first")
            self._state, self._cause, self._audio = self.State.RECORDING, self.Cause.NONE, None
            self._generation += 1
            generation = self._generation
        try:
            writer = WavWriter(path, file_format)
        except BaseException:
            self._state = self.State.IDLE
            raise
        self.file_path = str(path)
        try:
            channel._engine.run(self._begin, recording, generation, bool(barge_in))
            while True:
                channel._engine.wait(channel._engine.run(recording.wait_handle))
                ended = recording.ended
                writer.write(recording.take())
                if ended:
                    break
        except Error as exc:  # the file: the disk is full, it went away
            log.error("%r: %s: %s; the recording stops", channel, what, exc)
            channel._engine.run(recording.end, "error")
        except BaseException:
            self._state = self.State.ERROR
            with contextlib.suppress(Exception):
                channel._engine.run(recording.end, "error")
            raise
        finally:
            try:
                writer.close()
            except Error as exc:
                log.error("%r: %s: %s", channel, what, exc)
                recording.reason = "error"
        self._state = self.State.IDLE
        self._cause = self.Cause[(recording.reason or "error").upper()]
        self._audio = recording.audio_detected
        return self._cause

    def _begin(self, recording: Recording, generation: int, barge_in: bool) -> None:
        """Engine thread: start taking the far end's frames."""
        channel = self._channel
        hearing = channel._hearing
        if self._stop_before == generation:
            recording.end("aborted")
            return
        if channel._state is not State.ANSWERED or channel._releasing or hearing is None:
            recording.end("hangup")
            return

        def on_key() -> None:
            # the key's own tone is not part of the message: cut from its start, less a
            # margin for how well that start is known (a few ms). The frames heard before
            # the key was known go to the recording first (a bridge knows of the key by
            # now), so that the cut counts from what the recording has.
            hearing.pass_on()
            cut = 0
            if hearing.key_sample is not None:
                cut = hearing.samples_ago(hearing.key_sample) + _KEY_START_MARGIN
            recording.end("bargein", cut_samples=cut)

        def ended(_reason: str) -> None:
            if recording.frame in hearing.taps:
                hearing.taps.remove(recording.frame)
            if on_key in channel._barge_ins:
                channel._barge_ins.remove(on_key)
            if self._recording is recording:
                self._recording = None

        recording.on_end = ended
        hearing.taps.append(recording.frame)
        if barge_in:
            channel._barge_ins.append(on_key)
        self._recording = recording
        recording.start()

    def stop(self) -> None:
        """End the recording in progress (its record() returns ABORTED; the file keeps
        what was recorded). Safe from any thread; never stops a later recording."""
        def abort() -> None:
            if self._recording is not None:
                self._recording.end("aborted")

        self._stop(self.State.RECORDING, abort)

    def _call_ended(self) -> None:
        """Engine thread: the call is over."""
        if self._recording is not None:
            self._recording.end("hangup")


class DTMFDetector:
    """Collects the DTMF digits the far end sends (UAS ``DTMFDetector``).

    Digits are heard in band on every backend (the far end's audio: a B-channel, an
    analog line, G.711 in RTP) and, on SIP, as RFC 4733 telephone-events; a key press
    that comes both ways is one digit, and our own DTMF coming back as an echo is none.
    The channel listens from the answer (and from early media, where the far end's audio
    flows then): digits wait in a buffer from the moment they are recognised (whether or
    not anyone is collecting) until :meth:`get_digits` takes them or :meth:`clear_digits`
    drops them; a new call on the channel starts with an empty buffer.
    """

    class Cause(Enum):
        HANGUP = "hangup"
        COUNT = "count"
        END = "end"
        TIMEOUT = "timeout"
        ERROR = "error"
        NONE = "none"

    _channel: BackRef[UASCallChannel] = BackRef()

    def __init__(self, channel: UASCallChannel) -> None:
        self._channel = channel
        self._cause = DTMFDetector.Cause.NONE

    def cause(self) -> DTMFDetector.Cause:
        """Why the last :meth:`get_digits` returned."""
        return self._cause

    def clear_digits(self) -> None:
        """Drop the digits received and not yet collected."""
        def clear() -> None:
            self._channel._digits = ""
        self._channel._engine.run(clear)

    def get_digits(self, clear: bool = False, count: int = 0,
                   seconds_predigits_timeout: float = 0,
                   seconds_interdigit_timeout: float = 5, end: str | None = None,
                   seconds_timeout: float | None = None) -> str:
        """Collect digits and return them as a string; :meth:`cause` says why it stopped.

        ``clear`` empties the buffer first. Stops when ``count`` digits are collected
        (COUNT; 0 means no limit), when the ``end`` digit arrives (END; the end digit is
        consumed and not returned, our choice), when no first digit is waiting after
        ``seconds_predigits_timeout`` (0: return at once) or no next one after
        ``seconds_interdigit_timeout`` (TIMEOUT), when ``seconds_timeout`` passes in all
        (TIMEOUT), or when the call ends (HANGUP, with the digits collected so far).
        Digits beyond ``count`` stay in the buffer for the next call. Raises Hangup on a
        call that has ended with nothing left in the buffer.
        """
        channel = self._channel
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ArgumentError(f"count={count!r}; expected an integer >= 0 (0: no limit)")
        if end is not None and (not isinstance(end, str) or len(end) != 1
                                or end not in "0123456789*#ABCD"):
            raise ArgumentError(f"end={end!r}; expected one DTMF digit (0-9, *, #, A-D) "
                                "or None")
        predigits = _seconds("seconds_predigits_timeout", seconds_predigits_timeout,
                             allow_none=False) or 0.0
        interdigit = _seconds("seconds_interdigit_timeout", seconds_interdigit_timeout,
                              allow_none=False) or 0.0
        overall = _seconds("seconds_timeout", seconds_timeout, allow_none=True)
        engine = channel._engine
        if clear:
            self.clear_digits()
        if channel._state is State.IDLE and not channel._digits:
            self._cause = DTMFDetector.Cause.HANGUP
            raise Hangup("DTMFDetector.get_digits() on a call that has ended (IDLE)",
                         cause=channel._cause)
        started = engine.time()
        collected = ""

        def take_one() -> str:
            digits = channel._digits
            channel._digits = digits[1:]
            return digits[:1]

        wait = predigits
        while True:
            digit = engine.run(take_one)
            if digit:
                if end is not None and digit == end:
                    self._cause = DTMFDetector.Cause.END
                    return collected
                collected += digit
                if count and len(collected) >= count:
                    self._cause = DTMFDetector.Cause.COUNT
                    return collected
                wait = interdigit
                continue
            if channel._state is State.IDLE:
                self._cause = DTMFDetector.Cause.HANGUP
                return collected
            if overall is not None:
                wait = min(wait, max(0.0, started + overall - engine.time()))
            if wait <= 0 or not channel._wait(
                    lambda: bool(channel._digits) or channel._state is State.IDLE, wait):
                self._cause = DTMFDetector.Cause.TIMEOUT
                return collected
