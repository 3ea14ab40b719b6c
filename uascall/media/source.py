"""Audio as a stream of 20 ms G.711 frames, produced on demand for one law.

A :class:`FrameSource` is what a player pulls from every 20 ms: tones, files and speech all
end up as one. Sources know nothing about channels, clocks or backends.
"""

from __future__ import annotations

from typing import Protocol

from uascall.errors import Error
from uascall.media import g711

FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_SECONDS = FRAME_SAMPLES / g711.SAMPLE_RATE


class FrameSource:
    """Yields law-encoded frames of :data:`FRAME_SAMPLES` bytes until it is finished."""

    #: "alaw" or "ulaw"
    law: str = "ulaw"

    def next_frame(self) -> bytes | None:
        """The next 160-byte frame, or None once the source has ended."""
        raise NotImplementedError

    @property
    def duration(self) -> float | None:
        """Seconds one pass lasts, or None for a source that never ends by itself. While
        the source is not :attr:`complete`, what it has played and can play so far."""
        raise NotImplementedError

    @property
    def complete(self) -> bool:
        """Whether :attr:`duration` is final: False while the audio is still being made."""
        return True

    @property
    def error(self) -> Exception | None:
        """Why the source cannot go on (``next_frame`` raised it), or None."""
        return None

    def close(self) -> None:
        """Let go of what the source holds (a rendering under way): the player calls it
        when it is done with the source. Harmless twice."""


class BufferSource(FrameSource):
    """Plays a buffer of law-encoded samples once, or looped without a seam.

    Looping joins the end of the buffer straight to its start, so a buffer whose length is
    not a whole number of frames still loops sample-exactly; played once, the last frame
    is padded with silence.
    """

    def __init__(self, samples: bytes, law: str, *, loop: bool = False) -> None:
        self.law = g711.codec(law).name
        self._samples = samples
        self._loop = loop and bool(samples)
        self._position = 0
        self._silence = g711.codec(law).silence

    @property
    def duration(self) -> float | None:
        return None if self._loop else len(self._samples) / g711.SAMPLE_RATE

    @property
    def position(self) -> int:
        """Samples played so far."""
        return self._position

    def remaining(self) -> bytes:
        """What a one-pass source has still to play."""
        return b"" if self._loop else self._samples[self._position:]

    def next_frame(self) -> bytes | None:
        samples, size = self._samples, len(self._samples)
        if self._loop:
            start = self._position % size
            frame = samples[start:start + FRAME_SAMPLES]
            while len(frame) < FRAME_SAMPLES:
                frame += samples[: FRAME_SAMPLES - len(frame)]
            self._position += FRAME_SAMPLES
            return frame
        if self._position >= size:
            return None
        frame = samples[self._position:self._position + FRAME_SAMPLES]
        self._position += FRAME_SAMPLES
        if len(frame) < FRAME_SAMPLES:
            frame += bytes([self._silence]) * (FRAME_SAMPLES - len(frame))
        return frame


class Feed(Protocol):
    """Audio that grows while it is made (a :class:`uascall.media.tts.Speech`)."""

    @property
    def available(self) -> int: ...  # samples there so far

    @property
    def complete(self) -> bool: ...  # all of it is there

    @property
    def error(self) -> Exception | None: ...  # it failed, and why

    def encoded(self, law: str, start: int = 0, stop: int | None = None) -> bytes: ...

    def close(self) -> None: ...


class GrowingSource(FrameSource):
    """Plays a :class:`Feed` as it grows (speech while espeak-ng renders it), once or
    looped without a seam.

    When the next frame is not there yet it plays a frame of silence and goes on from the
    same place on the next one: nothing is skipped, the rest comes late by the gap. Its
    :attr:`duration` counts the gaps, so it is when the last sample is heard; it is final
    once the feed is complete. A feed that fails makes ``next_frame`` raise its error
    (:class:`~uascall.errors.Error`). Owns the feed: :meth:`close` closes it.
    """

    def __init__(self, feed: Feed, law: str, *, loop: bool = False) -> None:
        self.law = g711.codec(law).name
        self._feed = feed
        self._loop = loop
        self._position = 0  # samples of the feed played
        self._whole: BufferSource | None = None  # once the feed is complete
        self._silence = g711.codec(law).silence_frame
        #: frames of silence played because the feed was late
        self.gap_frames = 0

    @property
    def complete(self) -> bool:
        return self._whole is not None or self._feed.complete

    @property
    def error(self) -> Exception | None:
        return self._feed.error

    @property
    def duration(self) -> float | None:
        if self._loop:
            return None
        return (self.gap_frames * FRAME_SAMPLES + self._feed.available) / g711.SAMPLE_RATE

    def next_frame(self) -> bytes | None:
        if self._whole is not None:
            return self._whole.next_frame()
        feed = self._feed
        if feed.error is not None:
            raise Error(str(feed.error))
        if feed.complete:  # from now on a buffer, where the end and the loop are handled
            self._whole = BufferSource(feed.encoded(self.law), self.law, loop=self._loop)
            self._whole._position = self._position
            return self._whole.next_frame()
        start = self._position
        if start + FRAME_SAMPLES > feed.available:
            self.gap_frames += 1
            return self._silence
        self._position += FRAME_SAMPLES
        return feed.encoded(self.law, start, start + FRAME_SAMPLES)

    def close(self) -> None:
        self._feed.close()
