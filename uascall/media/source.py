"""Audio as a stream of 20 ms G.711 frames, produced on demand for one law.

A :class:`FrameSource` is what a player pulls from every 20 ms: tones, files and speech all
end up as one. Sources know nothing about channels, clocks or backends.
"""

from __future__ import annotations

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
        """Seconds one pass lasts, or None for a source that never ends by itself."""
        raise NotImplementedError


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
