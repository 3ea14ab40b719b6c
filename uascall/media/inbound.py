"""What a call hears: the far end's audio, and the key presses in it.

Theory of operation
-------------------
A channel that listens gets a :class:`Hearing`: the receive path of its leg delivers every
20 ms frame there (:meth:`Hearing.heard`), and it

* queues the frame on the engine's :class:`InboundDsp`, whose one
  :class:`~uascall.media.dtmf.DtmfBank` analyses every listening call's audio together, at
  most every :data:`PROCESS_INTERVAL` (so a busy engine batches hundreds of calls into
  one pass, and a digit is still reported within 5 ms of the frame that completes it);
* passes the frame on to its taps (a recorder, a bridge) once the bank has analysed it,
  in the same pass: a key the frame completes is known before any tap sees the frame, so
  a bridge mutes it there rather than pass on its tone for a frame more (a tap waits at
  most :data:`PROCESS_INTERVAL` for this);
* merges the key presses heard in band with those the backend reports out of band
  (RFC 4733 on SIP) in :class:`KeyPresses`: a far end that sends both for one press (a
  gateway that leaves the tones in the audio) gives one digit, not two;
* refuses in-band digits that are our own audio coming back: the frames the call sent
  in the last :data:`ECHO_SECONDS` are kept, and a digit heard in band is checked against
  them (only then, so this costs nothing while no key is pressed); so are the digits we
  sent out of band, which a gateway plays on its line, whose echo comes back in band. A
  far end that echoes our prompt (a hybrid on an analog line, a phone on speaker) must
  not press keys; a DTMFPlayer's digits coming back are the usual case.

Everything here runs on the engine thread.
"""

from __future__ import annotations

import collections
import logging
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from uascall.engine import Engine, TimerHandle
from uascall.media import g711
from uascall.media.dtmf import DtmfBank, DtmfEvent, detect_digits

log = logging.getLogger(__name__)

#: the most a received frame waits before the DTMF bank looks at it (seconds)
PROCESS_INTERVAL = 0.005
#: how far back our own outgoing audio is kept to recognise its echo (seconds)
ECHO_SECONDS = 1.2
#: frames of our own audio kept for the echo guard: ECHO_SECONDS and the guard's margin
#: at up to 75 frames a second (a player's lead comes on top of its 50)
SENT_FRAMES = 128
#: a digit heard in band that started this long after (or, for our write-ahead, before)
#: the same digit in what we sent is its echo
ECHO_DELAY = (-0.1, 1.0)
#: out-of-band and in-band reports of one press may be this far apart in time (a gateway's
#: events may lead or lag its audio by a couple of hundred milliseconds)
MERGE_MARGIN = 0.5
#: a press whose end never came is forgotten after this long (seconds)
STALE_PRESS = 10.0

_RATE = g711.SAMPLE_RATE


class InboundDsp:
    """The DTMF analysis of every listening call on one engine (:meth:`of`)."""

    _by_engine: weakref.WeakKeyDictionary[Engine, InboundDsp] = weakref.WeakKeyDictionary()

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.bank = DtmfBank()
        self._timer: TimerHandle | None = None
        self._last = -math.inf
        #: hearings with frames for their taps, passed on after the bank's next pass
        self.waiting: list[Hearing] = []

    @classmethod
    def of(cls, engine: Engine) -> InboundDsp:
        """The engine's one instance (made on first use)."""
        dsp = cls._by_engine.get(engine)
        if dsp is None:
            dsp = cls._by_engine[engine] = cls(engine)
        return dsp

    def queued(self) -> None:
        """Some stream queued audio: analyse it soon, with whatever else comes by then."""
        if self._timer is None:
            when = max(self.engine.time(), self._last + PROCESS_INTERVAL)
            self._timer = self.engine.call_at(when, self._process)

    def _process(self) -> None:
        self._timer = None
        self._last = self.engine.time()
        self.bank.process()
        if self.waiting:
            waiting, self.waiting = self.waiting, []
            for hearing in waiting:
                hearing.pass_on()


@dataclass(slots=True)
class _Press:
    source: str
    digit: str
    start: float
    end: float | None = None
    merged: bool = False


class KeyPresses:
    """One digit per key press, from reports that may come twice (sans-I/O).

    Each source ("inband", "rfc4733", "info") reports a press when the key goes down (with
    when it went down) and when it comes up. A press is the same as one from another source
    when it is the same digit and the two overlap in time (within :data:`MERGE_MARGIN`):
    the second report is dropped. ``on_key(digit)`` hears each press once.
    """

    def __init__(self, on_key: Callable[[str], None]) -> None:
        self.on_key = on_key
        self._presses: collections.deque[_Press] = collections.deque()

    def down(self, source: str, digit: str, start: float, now: float) -> bool:
        """A key went down at ``start``; False when it is a press reported already."""
        self._forget(now)
        for press in self._presses:
            if (press.source != source and press.digit == digit and not press.merged
                    and (press.end is None or press.end + MERGE_MARGIN >= start)
                    and press.start <= now + MERGE_MARGIN):
                press.merged = True
                self._presses.append(_Press(source, digit, start, merged=True))
                log.debug("key %s from %s: the press %s reported at %.3f", digit, source,
                          press.source, press.start)
                return False
        self._presses.append(_Press(source, digit, start))
        self.on_key(digit)
        return True

    def up(self, source: str, digit: str, end: float) -> None:
        for press in reversed(self._presses):
            if press.source == source and press.digit == digit and press.end is None:
                press.end = end
                return

    def _forget(self, now: float) -> None:
        presses = self._presses
        while presses and (now - presses[0].start > STALE_PRESS
                           or (presses[0].end is not None
                               and now - presses[0].end > 4 * MERGE_MARGIN)):
            presses.popleft()


def _key_after_close(digit: str) -> None:
    log.debug("DTMF %s after the call stopped listening; dropped", digit)


class Hearing:
    """One call's ears: DTMF in band and out of band, taps, the echo guard."""

    def __init__(self, dsp: InboundDsp, on_key: Callable[[str], None], *,
                 name: str = "call") -> None:
        self._dsp = dsp
        self._engine = dsp.engine
        # the engine's time, without Engine.time()'s own call: read twice a frame
        self._now = dsp.engine.clock.now
        self.name = name
        self.keys = KeyPresses(on_key)
        self._stream = dsp.bank.add(on_start=self._inband_down, on_end=self._inband_up)
        self._fed_at = 0.0  # engine time of the latest frame queued
        #: called with every frame heard, (frame, law), once the DTMF bank has analysed it
        self.taps: list[Callable[[bytes, str], None]] = []
        # frames the taps have not had yet, with where each ends in the DTMF stream
        self._unheard: list[tuple[bytes, str, int]] = []
        # what we sent in the last ECHO_SECONDS and more (the guard looks at the times):
        # a bounded deque, not trimmed by time on every frame
        self._sent: collections.deque[tuple[float, bytes, str]] = collections.deque(
            maxlen=SENT_FRAMES)
        self._sent_keys: collections.deque[tuple[float, str]] = collections.deque()
        self.frames_heard = 0
        #: where the latest key press started in what was heard (a sample index), for
        #: those heard in band; None for one reported out of band
        self.key_sample: int | None = None
        self._inband_key: str | None = None  # a key down in band now
        self._oob_key: str | None = None  # a key down out of band now
        self._last_key = ""  # the latest key pressed, by either way
        self._last_in_band = False
        # the latest keys heard in band, [start, end or None while down] in stream samples,
        # and the samples of the frame the taps are being given (None between passes):
        # what a tap asks of keys is answered for that frame, not for the end of the pass
        # (a late engine's pass takes several frames, the end of a key among them)
        self._key_spans: collections.deque[list[int | None]] = collections.deque(maxlen=8)
        self._passing: tuple[int, int] | None = None

    def close(self) -> None:
        self.pass_on()
        stream = self._stream
        stream.close()
        # the stream and the key presses call back into us and the channel: let go, so
        # that a finished call is no reference cycle for the collector to find
        stream.on_start = stream.on_end = None
        self.keys.on_key = _key_after_close
        self.taps.clear()
        self._sent.clear()

    # ------------------------------------------------------------------ in
    def heard(self, frame: bytes, law: str) -> None:
        """The leg's receiver: one 20 ms frame from the far end."""
        stream = self._stream
        if stream.closed:
            return
        self.frames_heard += 1
        self._fed_at = self._now()
        stream.feed_law(frame, law)
        if self.taps:
            if not self._unheard:
                self._dsp.waiting.append(self)
            self._unheard.append((frame, law, stream.samples_fed))
        if self._dsp._timer is None:  # else a pass is due already and takes this frame
            self._dsp.queued()

    def pass_on(self) -> None:
        """Give the taps the frames heard since the bank's last pass (it has analysed
        them, so keys in them are known)."""
        frames = self._unheard
        if not frames:
            return
        self._unheard = []
        try:
            for frame, law, end in frames:
                self._passing = (end - len(frame), end)
                for tap in tuple(self.taps):  # a tap may take itself off
                    tap(frame, law)
        finally:
            self._passing = None

    def out_of_band(self, digit: str, ended: bool, source: str = "rfc4733") -> None:
        """The backend reported a key going down (or, ``ended``, up) out of band, as
        ``source`` (an RFC 4733 event, a SIP INFO)."""
        now = self._engine.time()
        if ended:
            if self._oob_key == digit:
                self._oob_key = None
            self.keys.up(source, digit, now)
        else:
            self.key_sample = None
            self._oob_key = self._last_key = digit
            self._last_in_band = False
            self.keys.down(source, digit, now, now)

    def samples_ago(self, sample: int) -> int:
        """How many samples heard since stream sample ``sample`` (a digit's start); what
        the taps have had once :meth:`pass_on` has run."""
        return max(0, self._stream.samples_fed - sample)

    def _time_of(self, sample: int) -> float:
        return self._fed_at - (self._stream.samples_fed - sample) / _RATE

    def _inband_down(self, digit: str, sample: int) -> None:
        start = self._time_of(sample)
        if self._echoed(digit, start):
            log.info("%s: DTMF %s heard in band is the echo of what we sent; ignored",
                     self.name, digit)
            return
        self.key_sample = sample
        self._inband_key = self._last_key = digit
        self._last_in_band = True
        self._key_spans.append([sample, None])
        self.keys.down("inband", digit, start, self._engine.time())

    def _inband_up(self, event: DtmfEvent) -> None:
        if self._inband_key == event.digit:
            self._inband_key = None
            if self._key_spans and self._key_spans[-1][1] is None:
                self._key_spans[-1][1] = event.end
        self.keys.up("inband", event.digit, self._time_of(event.end))

    def inband_key_held(self) -> bool:
        """Whether the far end holds a key down in band now (as far as heard); asked by a
        tap, whether the frame it is given holds part of one."""
        if self._passing is not None:
            return bool(self._key_spans) and self._in_key_span(only_last=False)
        return self._inband_key is not None

    def key_down(self) -> bool:
        """Whether the far end still holds down the key it pressed last, in band or out of
        band (as far as heard; asked by a tap, in the frame it is given)."""
        last = self._last_key
        if not last:
            return False
        if not self._last_in_band:
            return self._oob_key == last
        if self._passing is not None:
            return self._in_key_span(only_last=True)
        return self._inband_key == last

    def _in_key_span(self, *, only_last: bool) -> bool:
        """Whether the frame being passed on overlaps a key heard in band (the latest
        one, ``only_last``)."""
        assert self._passing is not None
        first, end = self._passing
        for start, stop in reversed(self._key_spans):  # the newest first
            assert start is not None
            if stop is not None and stop <= first:
                return False  # over before this frame, as every older one
            if start < end:
                return True
            if only_last:
                return False
        return False

    # ------------------------------------------------------------------ out
    def sent(self, frame: bytes, law: str) -> None:
        """A frame we sent the far end (kept a while for the echo guard)."""
        self._sent.append((self._now(), frame, law))

    def sent_key(self, digit: str, at: float | None = None) -> None:
        """A digit we sent out of band, or had the line sound, at ``at`` (engine time;
        now by default): its echo may come back in band."""
        now = self._engine.time()
        keys = self._sent_keys
        keys.append((now if at is None else at, digit))
        while now - keys[0][0] > ECHO_SECONDS:
            keys.popleft()

    def _echoed(self, digit: str, start: float) -> bool:
        """Whether we sent ``digit``, in band or out, shortly before a press heard at
        ``start``."""
        for at, key in self._sent_keys:
            if key == digit and ECHO_DELAY[0] <= start - at <= ECHO_DELAY[1]:
                return True
        runs: list[tuple[float, list[bytes], str]] = []
        for at, frame, law in self._sent:
            if not start - ECHO_DELAY[1] - 0.2 <= at <= start - ECHO_DELAY[0]:
                continue
            run = runs[-1] if runs else None
            # frames written back to back (at most 3 frames ahead of the clock) are one
            # signal; a pause starts another
            if run is not None and run[2] == law and at - run[0] <= 0.1:
                run[1].append(frame)
                runs[-1] = (at, run[1], law)
            else:
                runs.append((at, [frame], law))
        for last, frames, law in runs:
            first = last - (len(frames) - 1) * 0.020
            samples = np.frombuffer(g711.codec(law).decode(b"".join(frames)).tobytes(),
                                    dtype=np.int16)
            for event in detect_digits(samples):
                delay = start - (first + event.start / _RATE)
                if event.digit == digit and ECHO_DELAY[0] <= delay <= ECHO_DELAY[1]:
                    return True
        return False
