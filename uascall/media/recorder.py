"""Recording what the far end says: the engine's half of ``FileRecorder.record``.

Theory of operation
-------------------
A :class:`Recording` is a tap on a call's :class:`~uascall.media.inbound.Hearing`: it gets
every 20 ms frame the far end sends, in the call's law, on the engine thread, and decides
when the recording ends: after ``max_silence`` seconds without sound (SILENCE), after
``timeout`` seconds (TIMEOUT), when the file would pass ``max_bytes`` (SIZE), or when the
channel says so (a key for barge-in, ``stop()``, the call's end). It never touches the
file: the application thread that called ``record()`` takes the encoded bytes in batches
(:meth:`Recording.take`, woken by :meth:`Recording.wait_handle` about once a second) and
writes them, so the engine never blocks on a disk.

Sound is a frame whose level reaches :data:`SOUND_DBM0`; three such frames in a row
(60 ms, so a click does not count) mean the recording has audio in it. The frames after
the last sound are held back: when the recording ends in silence, all but the first
:data:`SILENCE_KEPT` seconds of them are dropped (the caller's closing pause, not the
two or three seconds the silence limit waited for). The last :data:`HELD_BACK` seconds
are held back too, so that a key press that ends the recording takes its own tone out
of the file (its start is known to a sample).
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import threading
from collections.abc import Callable

import numpy as np

from uascall.engine import Engine, TimerHandle
from uascall.media import g711
from uascall.media.tones import reference_rms

log = logging.getLogger(__name__)

#: a frame at or above this level is sound, not silence
SOUND_DBM0 = -42.0
#: frames of sound in a row that make "audio detected"
SOUND_FRAMES = 3
#: of the silence that ends a recording, this much stays at the end of the file (seconds)
SILENCE_KEPT = 0.2
#: the newest audio kept back from the writer for a barge-in to cut (seconds)
HELD_BACK = 0.2
#: the writer is woken when this much is waiting (seconds of audio)
BATCH = 1.0
#: the file encodings and their bytes per sample
ENCODINGS = {"alaw": 1, "ulaw": 1, "pcm16": 2}

_RATE = g711.SAMPLE_RATE
_S16 = {law: np.array(g711.codec(law)._dec, dtype=np.int16) for law in ("alaw", "ulaw")}
_ENCODE = {law: np.frombuffer(g711.codec(law)._enc, dtype=np.uint8) for law in ("alaw", "ulaw")}
_SOUND_POWER = {law: (reference_rms(law) * 10.0 ** (SOUND_DBM0 / 20.0)) ** 2
                for law in ("alaw", "ulaw")}


def encode_frame(frame: bytes, law: str, encoding: str) -> tuple[bytes, np.ndarray]:
    """``frame`` (G.711 ``law``) in the file's ``encoding``, and its s16 samples."""
    samples = _S16[law][np.frombuffer(frame, dtype=np.uint8)]
    if encoding == law:
        return frame, samples
    if encoding == "pcm16":
        return samples.astype("<i2").tobytes(), samples
    return _ENCODE[encoding][samples.view(np.uint16)].tobytes(), samples


class Recording:
    """One recording in progress (engine thread, but for :meth:`take`).

    ``on_end(reason)`` is called once, on the engine thread, with "silence", "timeout",
    "size", "bargein", "aborted", "hangup" or "error".
    """

    def __init__(self, engine: Engine, *, encoding: str, max_silence: float,
                 timeout: float | None, max_bytes: int,
                 on_end: Callable[[str], None] | None = None, name: str = "recording") -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
        self.engine = engine
        self.encoding = encoding
        self.width = ENCODINGS[encoding]
        self.max_silence = max_silence
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.on_end = on_end
        self.name = name
        self.reason: str | None = None
        self.audio_detected = False
        self.bytes_recorded = 0  # what the file gets (held bytes included until dropped)
        self._lock = threading.Lock()
        self._ready: list[bytes] = []  # for the writer
        self._ready_bytes = 0
        self._held = bytearray()  # the newest bytes: trailing silence, then HELD_BACK
        self._silent_bytes = 0  # how many of the held bytes are trailing silence
        self._sound_run = 0
        self._last_sound = 0.0
        self._waiter: concurrent.futures.Future | None = None
        self._timers: list[TimerHandle] = []

    @property
    def ended(self) -> bool:
        return self.reason is not None

    def start(self) -> None:
        """Engine thread: the recording starts now."""
        now = self.engine.time()
        self._last_sound = now
        if self.timeout:
            self._timers.append(self.engine.call_later(self.timeout, self.end, "timeout"))
        if self.max_silence:
            self._timers.append(self.engine.call_later(self.max_silence, self._check_silence))

    # ------------------------------------------------------------------ engine thread
    def frame(self, frame: bytes, law: str) -> None:
        """A tap: one frame the far end sent."""
        if self.reason is not None:
            return
        data, samples = encode_frame(frame, law, self.encoding)
        sound = float(np.mean(np.square(samples, dtype=np.float64))) >= _SOUND_POWER[law]
        room = self.max_bytes - self.bytes_recorded
        full = len(data) >= room
        if full:
            data = data[:room - room % self.width]
        self._held += data
        self.bytes_recorded += len(data)
        if sound:
            self._sound_run += 1
            if self._sound_run >= SOUND_FRAMES and not self.audio_detected:
                self.audio_detected = True
                log.debug("%s: audio detected", self.name)
            self._last_sound = self.engine.time()
            self._silent_bytes = 0
        else:
            self._sound_run = 0
            self._silent_bytes += len(data)
        if full:
            self.end("size")
            return
        self._release(keep=self._kept_back())

    def end(self, reason: str, *, cut_samples: int = 0) -> None:
        """End the recording (its cause is the first reason given); ``cut_samples`` of the
        newest audio are taken out of the file (a key's own tone, for barge-in)."""
        if self.reason is not None:
            return
        self.reason = reason
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        drop = 0
        if reason == "silence":
            drop = max(0, self._silent_bytes - round(SILENCE_KEPT * _RATE) * self.width)
        if cut_samples:
            drop = max(drop, cut_samples * self.width)
        drop = min(drop, len(self._held))
        if drop:
            del self._held[len(self._held) - drop:]
            self.bytes_recorded -= drop
        self._release(keep=0)
        log.debug("%s ended: %s, %d bytes", self.name, reason, self.bytes_recorded)
        if self.on_end is not None:
            self.on_end(reason)

    def _kept_back(self) -> int:
        held_back = round(HELD_BACK * _RATE) * self.width
        return max(held_back, self._silent_bytes if self.max_silence else 0)

    def _release(self, *, keep: int) -> None:
        if len(self._held) > keep:
            cut = len(self._held) - keep
            with self._lock:
                self._ready.append(bytes(self._held[:cut]))
                self._ready_bytes += cut
            del self._held[:cut]
        waiter = self._waiter
        if waiter is not None and (self.reason is not None
                                   or self._ready_bytes >= BATCH * _RATE * self.width):
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _check_silence(self) -> None:
        if self.reason is not None:
            return
        quiet_until = self._last_sound + self.max_silence
        if self.engine.time() >= quiet_until - 1e-9:
            self.end("silence")
        else:
            self._timers.append(self.engine.call_at(quiet_until, self._check_silence))

    def wait_handle(self) -> concurrent.futures.Future:
        """Engine thread: a future that is done once a batch is ready or the recording
        has ended."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        if self.reason is not None or self._ready_bytes >= BATCH * _RATE * self.width:
            future.set_result(None)
        else:
            self._waiter = future
        return future

    # ------------------------------------------------------------------ any thread
    def take(self) -> bytes:
        """The bytes ready for the file since the last take (the writer's thread)."""
        with self._lock:
            data = b"".join(self._ready)
            self._ready.clear()
            self._ready_bytes = 0
        return data

    @property
    def seconds(self) -> float:
        return self.bytes_recorded / self.width / _RATE if self.width else math.nan
