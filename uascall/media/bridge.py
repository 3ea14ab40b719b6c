"""Joining two calls: what one far end sends goes to the other, 20 ms at a time.

Theory of operation
-------------------
A bridge is two :class:`AudioLink` objects, one for each direction. A link is a tap on one
call's receive path (the frames its far end sends, in that call's law) and writes each
frame, as it arrives, to the other call's outgoing media port: no ticker of ours in
between, so the bridge adds no delay beyond the frame the port may already hold.

The two calls' clocks differ (two E1 lines, a line and this machine's clock that paces
RTP): one side delivers frames slightly faster than the other takes them. The port's
queue is kept short (:data:`BRIDGE_DEPTH` frames, :meth:`MediaPort.limit_queue`), and a
frame that finds it full is dropped: a *slip*, one 20 ms frame lost every few minutes
at the worst crystal tolerances, instead of a buffer that grows for as long as the call
lasts. The other way round (the taking side is faster) its port runs dry now and then
and sends a frame of silence (a SIP stream's ticker; a DAHDI channel's underrun), which
is the same slip the other way. Either way the delay stays bounded for an hour as for a
minute.

The depth is three frames, the one going out and two behind it, because frames do not
arrive like clockwork: a late engine iteration, or a jitter buffer that releases two
frames at once, delivers a burst that a queue of two would lose. The delay is kept at one
frame all the same where the port says how full it is (:meth:`MediaPort.queued`, a SIP
stream): when more than one frame has waited there for :data:`SETTLE_FRAMES` frames in a
row, the source's clock is ahead and a frame is dropped then, so the queue goes back to
one. A DAHDI channel cannot say (the kernel has no such call): there a faster source
keeps the queue full until it slips, two frames (40 ms) of delay at most.

Where the laws differ (an E1 caller, a mu-law SIP phone) each frame is converted by a
256-byte table (:func:`~uascall.media.g711.transcoder`).

Keys pressed at one end reach the other as that end takes them:

* where its port takes RFC 4733 telephone-events, as events, and the tone heard in band is
  muted while the key is down;
* where its line has a tone generator of its own (a DAHDI channel's kernel, a SIP
  stream's ticker), by that generator, whether the key came in band or out of band: the
  link holds the key down (:meth:`MediaPort.start_digit`) while the source's far end
  holds it, and lets it go when that key comes up (:meth:`MediaPort.stop_digit`), as
  chan_dahdi does with a key's begin and end. The audio queued on the port is dropped
  so the key starts at once; the tone of one heard in band is muted; the frames that
  arrive while the key is down are not written, since a write would cut it short; talk
  goes on again as soon as it is up. The tone itself is not passed on because it would
  not survive the way: frame by frame through a bridge, a key breaks in two (or is cut
  below what a receiver takes) wherever the engine runs later than the channel's
  buffers hold, and the far end hears two keys or none. A key is held at least
  :data:`KEY_MIN_ON` and two keys are kept :data:`KEY_MIN_OFF` apart (a key recognised
  late and let go early, or keys faster than that, queue), so that any receiver takes
  each; a late engine lengthens a key or a pause, never breaks one;
* otherwise in band: a key heard in band goes on in the audio, and one that came out of
  band is played as frames of our own (:func:`~uascall.media.dtmf.key_frames`) in place of
  the audio.

The link sees a frame only after the call's DTMF analysis has (:class:`~uascall.media.
inbound.Hearing`), so a key is muted from the frame that completes its recognition (about
30 ms of tone); what went through before that is too short for a receiver to take as a
key, and on a DAHDI line it is mostly dropped with the queue, so that the generator's tone
follows what the far end heard of it without a gap.

Everything here runs on the engine thread; it knows media ports (``write``,
``limit_queue``, ``telephone_events``, ``send_digit``, ``sounds_digits``,
``start_digit``, ``stop_digit``, ``law``) and nothing of calls.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from uascall.engine import TimerHandle
from uascall.media import g711
from uascall.media.dtmf import KEY_ON_MS, key_frames

log = logging.getLogger(__name__)

#: frames a bridged port may hold before a frame slips: the one going out and two behind
#: it, for frames that come in bursts (see above)
BRIDGE_DEPTH = 3
#: frames in a row that more than one frame may wait in a port that says so before the
#: bridge drops one to bring the delay back to a frame (a second)
SETTLE_FRAMES = 50
#: how long a key carried across is played (in band, then a pause: :func:`~uascall.media.
#: dtmf.key_frames`) or signalled (RFC 4733), ms
DIGIT_MS = KEY_ON_MS
#: the most frames the in-band tone of a key is muted for, should its end never be heard
#: (30 s: a key held longer than that is not a key)
MAX_MUTED_FRAMES = 1500
#: the shortest a key is held down on a port's generator, and the shortest pause before
#: the next (seconds): above Q.24's 40 ms that every receiver must take, with a frame's
#: margin for a detector that counts whole 20 ms blocks
KEY_MIN_ON = 0.06
KEY_MIN_OFF = 0.06
#: the longest a key is held down on a port's generator, should its end never be known
KEY_MAX_ON = MAX_MUTED_FRAMES * 0.020
#: how often the link looks at a key held down when no frame comes to make it look
KEY_POLL = 0.020


class AudioLink:
    """One direction of a bridge: frames heard from one call, written to ``port``.

    ``key_held()`` tells whether the source's far end holds a key down in band now: its
    tone is muted wherever the port carries keys itself (as telephone-events, or by its
    line's generator), whether this link passed the key on or not (one pressed before
    the link was made, or reported out of band first and heard in band late).
    ``key_down()`` tells whether it holds the key it pressed last down, in band or out of
    band: the port's generator holds it as long. ``sent(frame, law)`` and ``sent_key(
    digit, at)`` tell the destination call what its far end was sent, and when (its echo
    guard must not take our own keys coming back for the far end's); ``now()`` is the
    clock ``at`` is on, and ``call_later(seconds, fn)`` (the engine's) lets a key held
    down be let go when no frame comes to do it.
    """

    def __init__(self, port: Any, *, name: str = "bridge",
                 key_held: Callable[[], bool] | None = None,
                 key_down: Callable[[], bool] | None = None,
                 sent: Callable[[bytes, str], None] | None = None,
                 sent_key: Callable[[str, float], None] | None = None,
                 now: Callable[[], float] = time.monotonic,
                 call_later: Callable[..., TimerHandle] | None = None) -> None:
        self.port = port
        self.name = name
        self._key_held = key_held
        self._key_down = key_down
        self._call_later = call_later
        self._sent = sent
        self._sent_key = sent_key
        self._now = now
        self._law = g711.codec(port.law).name
        self._tables: dict[str, bytes | None] = {}
        self._overlay: collections.deque[bytes] = collections.deque()
        self._muted = 0  # frames in a row muted of a key's in-band tone
        self._generator_refused = False  # the port's generator said no: keys go in band
        # the key the port's generator holds down (nothing is written meanwhile), since
        # when; when the last was let go; the keys pressed since, to sound in turn
        self._held: str | None = None
        self._held_since = 0.0
        self._released_at = -math.inf
        self._keys_waiting: collections.deque[str] = collections.deque()
        self._poll: TimerHandle | None = None
        self._ahead = 0  # frames in a row that found more than one frame waiting
        self.closed = False
        #: frames heard and frames written on; frames dropped because the port was full
        self.frames_in = 0
        self.frames_out = 0
        self.slips = 0

    def open(self) -> None:
        """Start: the destination port keeps its queue to :data:`BRIDGE_DEPTH` frames."""
        self.port.limit_queue(BRIDGE_DEPTH)

    def close(self) -> None:
        """Stop writing; the port goes back to its own queue length (players' lead)."""
        if self.closed:
            return
        self.closed = True
        self._overlay.clear()
        self._keys_waiting.clear()
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None
        self._release(self._now())
        try:
            self.port.limit_queue(None)
        except OSError as exc:  # the call's device is gone: nothing to give back
            log.debug("%s: the port could not be given back its queue: %s", self.name, exc)
        if self.slips:
            log.info("%s: %d of %d frames slipped (the two clocks differ)", self.name,
                     self.slips, self.frames_in)

    # ------------------------------------------------------------------ audio
    def heard(self, frame: bytes, law: str) -> None:
        """The source call's tap: one 20 ms frame from its far end."""
        if self.closed:
            return
        self.frames_in += 1
        if self._held is not None or self._keys_waiting:
            self._step_keys()
            if self._held is not None:  # the port sounds a key itself: a write would stop it
                return
        key_frame = bool(self._overlay)
        if key_frame:
            frame = self._overlay.popleft()
        else:
            frame = self._convert(frame, law)
            if self._key_held is not None and self._key_held() and self._carries_keys():
                if self._muted < MAX_MUTED_FRAMES:
                    self._muted += 1
                    frame = g711.codec(self._law).silence_frame
            else:
                self._muted = 0
        waiting = self.port.queued()
        if waiting is not None:
            self._ahead = self._ahead + 1 if waiting > 1 else 0
            if self._ahead >= SETTLE_FRAMES and not key_frame:  # the source runs ahead
                self._ahead = 0
                self.slips += 1
                return
        try:
            written = self.port.write(frame)
        except OSError as exc:  # the other call's device failed: its owner clears it
            log.debug("%s: the port refused a frame: %s", self.name, exc)
            return
        if not written:
            self.slips += 1
            if key_frame:  # a key's tone is not slipped: it goes with the next frame
                self._overlay.appendleft(frame)
            return
        self.frames_out += 1
        if self._sent is not None:
            self._sent(frame, self._law)

    def _convert(self, frame: bytes, law: str) -> bytes:
        try:
            table = self._tables[law]
        except KeyError:
            table = self._tables[law] = g711.transcoder(law, self._law)
        return frame if table is None else frame.translate(table)

    # ------------------------------------------------------------------ keys
    def _carries_keys(self) -> bool:
        """Whether the port takes keys otherwise than in the audio (their tone heard in
        band is then muted)."""
        return self.port.telephone_events or self._has_generator()

    def _has_generator(self) -> bool:
        return self.port.sounds_digits and not self._generator_refused

    def key(self, digit: str, in_band: bool) -> None:
        """The source's far end pressed ``digit`` (heard ``in_band``, or out of band)."""
        if self.closed:
            return
        if self.port.telephone_events:
            try:
                self.port.send_digit(digit, DIGIT_MS)
            except OSError as exc:
                log.debug("%s: DTMF %s not sent: %s", self.name, digit, exc)
                return
            if self._sent_key is not None:
                self._sent_key(digit, self._now())
        elif self._overlay:  # keys of our own play: this one follows them
            self._overlay.extend(key_frames(digit, self._law))
        elif self._has_generator():  # the line's generator, on its own clock
            self._keys_waiting.append(digit)
            self._step_keys()
            if in_band and digit in self._keys_waiting and self._sent_key is not None:
                # it waits its turn, and its first milliseconds went on in the audio
                # before it was recognised: their echo may come back before it sounds
                self._sent_key(digit, self._now())
        elif not in_band:
            self._overlay.extend(key_frames(digit, self._law))
        # a key heard in band where the line has neither goes on in band, in the audio

    def _step_keys(self) -> None:
        """Let the key held down go once it has lasted long enough and its far end has
        let it go (or pressed another); then hold the next key waiting, once the pause
        after the last has lasted long enough."""
        now = self._now()
        if self._held is not None:
            lasted = now - self._held_since
            still_down = (not self._keys_waiting and self._key_down is not None
                          and self._key_down())
            # (to the microsecond: engine times are floats, and a key of exactly the
            # least length must not wait a frame more)
            if lasted >= KEY_MIN_ON - 1e-6 and (not still_down or lasted >= KEY_MAX_ON):
                self._release(now)
        if self._held is None and self._keys_waiting \
                and now - self._released_at >= KEY_MIN_OFF - 1e-6:
            digit = self._keys_waiting.popleft()
            if self._press(digit):
                self._held, self._held_since = digit, now
                log.debug("%s: key %s down (%d waiting)", self.name, digit,
                          len(self._keys_waiting))
                if self._sent_key is not None:
                    self._sent_key(digit, now)
            else:  # the generator refused: this key and those after it as frames
                for key in (digit, *self._keys_waiting):
                    self._overlay.extend(key_frames(key, self._law))
                self._keys_waiting.clear()
        if (self._held is not None or self._keys_waiting) and self._poll is None \
                and self._call_later is not None and not self.closed:
            self._poll = self._call_later(KEY_POLL, self._polled)

    def _polled(self) -> None:
        self._poll = None
        if not self.closed:
            self._step_keys()

    def _press(self, digit: str) -> bool:
        try:
            pressed = self.port.start_digit(digit)
        except OSError as exc:
            log.debug("%s: DTMF %s not sounded: %s", self.name, digit, exc)
            pressed = False
        if not pressed:
            log.info("%s: the line does not sound keys (DTMF %s): they go in the audio",
                     self.name, digit)
            self._generator_refused = True
        return pressed

    def _release(self, now: float) -> None:
        if self._held is None:
            return
        log.debug("%s: key %s up after %.0f ms", self.name, self._held,
                  1000 * (now - self._held_since))
        self._held, self._released_at = None, now
        try:
            self.port.stop_digit()
        except OSError as exc:  # the other call's device failed: its owner clears it
            log.debug("%s: the key could not be let go: %s", self.name, exc)
