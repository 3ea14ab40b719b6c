"""RIFF/WAVE files: :func:`parse_wav`/:func:`read_wav` and :func:`serialize_wav`/:func:`write_wav`.

Reading gives mono signed 16-bit samples at the file's own rate, whatever the file holds:
PCM of 8 (unsigned), 16, 24 or 32 bits (any ``wBitsPerSample`` up to 32, left-justified in
its container as the format requires), IEEE float of 32 or 64 bits, A-law and mu-law, each
either plain or wrapped in ``WAVE_FORMAT_EXTENSIBLE``; one channel or two (averaged).
Wider samples keep their top 16 bits (truncation, no dither: the target is G.711).

Being lenient where writers are known to be sloppy: unknown chunks (LIST, fact, cue ...)
are skipped, odd-sized chunks are followed by their pad byte, a data chunk that claims more
than the file holds (streamed output, a cut download) is truncated with a warning, and a
trailing partial sample is dropped. Anything else wrong raises :class:`~uascall.errors.Error`
naming the file, what was found and what is supported.
"""

from __future__ import annotations

import array
import errno
import logging
import os
import struct
import sys
from dataclasses import dataclass
from typing import BinaryIO

from uascall.errors import ArgumentError, Error
from uascall.media import g711

log = logging.getLogger(__name__)

# wFormatTag values (mmreg.h)
WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_ALAW = 0x0006
WAVE_FORMAT_MULAW = 0x0007
WAVE_FORMAT_EXTENSIBLE = 0xFFFE

#: KSDATAFORMAT_SUBTYPE_* GUIDs are the format tag followed by these 14 bytes
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"

_FORMAT_NAMES = {
    WAVE_FORMAT_PCM: "PCM",
    0x0002: "Microsoft ADPCM",
    WAVE_FORMAT_IEEE_FLOAT: "IEEE float",
    WAVE_FORMAT_ALAW: "A-law",
    WAVE_FORMAT_MULAW: "mu-law",
    0x0011: "IMA ADPCM",
    0x0022: "DSP Group TrueSpeech",
    0x0031: "GSM 6.10",
    0x0050: "MPEG",
    0x0055: "MPEG layer 3",
    0x0064: "G.726 ADPCM",
    WAVE_FORMAT_EXTENSIBLE: "extensible",
}
_SUPPORTED = ("expected PCM 8/16/24/32-bit, IEEE float 32/64-bit, A-law or mu-law, "
              "mono or stereo")

_RIFF_HEADER = struct.Struct("<4sI4s")
_CHUNK_HEADER = struct.Struct("<4sI")
_FMT = struct.Struct("<HHIIHH")  # tag, channels, rate, byte rate, block align, bits
_FMT_EXTENSIBLE = struct.Struct("<HHI16s")  # cbSize, valid bits, channel mask, subformat

_LITTLE = sys.byteorder == "little"

#: write_wav encodings: (format tag, bytes per sample)
ENCODINGS: dict[str, tuple[int, int]] = {
    "pcm8": (WAVE_FORMAT_PCM, 1),
    "pcm16": (WAVE_FORMAT_PCM, 2),
    "pcm24": (WAVE_FORMAT_PCM, 3),
    "pcm32": (WAVE_FORMAT_PCM, 4),
    "float32": (WAVE_FORMAT_IEEE_FLOAT, 4),
    "alaw": (WAVE_FORMAT_ALAW, 1),
    "ulaw": (WAVE_FORMAT_MULAW, 1),
}


@dataclass(frozen=True, slots=True, eq=False)
class WavAudio:
    """Decoded audio: mono signed 16-bit ``samples`` at ``rate`` Hz.

    ``encoding`` and ``channels`` say what the file held (``"pcm16"``, ``"alaw"``, ...).
    """

    rate: int
    samples: array.array
    encoding: str = "pcm16"
    channels: int = 1

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return len(self.samples) / self.rate


@dataclass(frozen=True, slots=True)
class _Format:
    tag: int
    channels: int
    rate: int
    block_align: int
    bits: int


# -- parse ------------------------------------------------------------------------------------


def parse_wav(data: bytes, name: str = "<wav>") -> WavAudio:
    """Decode the bytes of a WAV file; ``name`` is used in error messages.

    Raises :class:`~uascall.errors.Error` if the bytes are not a RIFF/WAVE file or hold a
    format that is not supported.
    """
    view = memoryview(data)
    if len(view) < _RIFF_HEADER.size:
        raise Error(f"{name}: truncated WAV header ({len(view)} bytes); "
                    "expected a RIFF/WAVE file")
    riff, _riff_size, wave = _RIFF_HEADER.unpack_from(view)
    if riff != b"RIFF" or wave != b"WAVE":
        what = ("a big-endian RIFX file" if riff == b"RIFX"
                else "an RF64 file" if riff == b"RF64" else f"{bytes(view[:4])!r}")
        raise Error(f"{name}: not a WAV file (starts with {what}); "
                    "expected a little-endian RIFF/WAVE file")
    fmt: _Format | None = None
    pos = _RIFF_HEADER.size
    while True:
        if len(view) - pos < _CHUNK_HEADER.size:
            if len(view) > pos:
                log.debug("%s: %d trailing bytes ignored", name, len(view) - pos)
            raise Error(f"{name}: no data chunk; expected a WAV file with audio data")
        chunk_id, size = _CHUNK_HEADER.unpack_from(view, pos)
        body = pos + _CHUNK_HEADER.size
        available = len(view) - body
        if chunk_id == b"data":
            if fmt is None:
                raise Error(f"{name}: data chunk before any fmt chunk; "
                            "expected 'fmt ' to come first")
            if size > available:
                log.warning("%s: data chunk claims %d bytes but the file holds %d; "
                            "truncated", name, size, available)
                size = available
            return _decode(fmt, view[body:body + size], name)
        if size > available:
            raise Error(f"{name}: {_chunk_name(chunk_id)} chunk claims {size} bytes but the "
                        f"file holds {available}; the file is truncated")
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(view[body:body + size], name)
        else:
            log.debug("%s: skipping %s chunk (%d bytes)", name, _chunk_name(chunk_id), size)
        pos = body + size + (size & 1)  # chunks are padded to an even size


def _chunk_name(chunk_id: bytes) -> str:
    return repr(chunk_id.decode("latin-1"))


def _parse_fmt(body: memoryview, name: str) -> _Format:
    if len(body) < _FMT.size:
        raise Error(f"{name}: fmt chunk is {len(body)} bytes; expected at least {_FMT.size}")
    tag, channels, rate, _byte_rate, block_align, bits = _FMT.unpack_from(body)
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if len(body) < _FMT.size + _FMT_EXTENSIBLE.size:
            raise Error(f"{name}: extensible fmt chunk is {len(body)} bytes; expected "
                        f"{_FMT.size + _FMT_EXTENSIBLE.size}")
        _cb, _valid, _mask, guid = _FMT_EXTENSIBLE.unpack_from(body, _FMT.size)
        if guid[2:] != _GUID_TAIL:
            raise Error(f"{name}: extensible sub-format {guid.hex()} is not supported; "
                        f"{_SUPPORTED}")
        tag = int.from_bytes(guid[:2], "little")
    kind = _FORMAT_NAMES.get(tag, "unknown")
    if tag not in (WAVE_FORMAT_PCM, WAVE_FORMAT_IEEE_FLOAT, WAVE_FORMAT_ALAW,
                   WAVE_FORMAT_MULAW):
        raise Error(f"{name}: format {tag} ({kind}) is not supported; {_SUPPORTED}")
    if channels not in (1, 2):
        raise Error(f"{name}: {channels} channels are not supported; {_SUPPORTED}")
    if rate <= 0:
        raise Error(f"{name}: sample rate {rate} is not valid; expected a positive rate")
    width = (bits + 7) // 8
    valid = {
        WAVE_FORMAT_PCM: 1 <= bits <= 32,
        WAVE_FORMAT_IEEE_FLOAT: bits in (32, 64),
        WAVE_FORMAT_ALAW: bits == 8,
        WAVE_FORMAT_MULAW: bits == 8,
    }[tag]
    if not valid:
        raise Error(f"{name}: {kind} with {bits} bits per sample is not supported; "
                    f"{_SUPPORTED}")
    if block_align != width * channels:
        log.warning("%s: block align %d does not match %d channel(s) of %d bits; using %d",
                    name, block_align, channels, bits, width * channels)
    return _Format(tag, channels, rate, width * channels, bits)


def _decode(fmt: _Format, data: memoryview, name: str) -> WavAudio:
    extra = len(data) % fmt.block_align
    if extra:
        log.warning("%s: data ends with a partial sample (%d bytes); dropped", name, extra)
        data = data[:len(data) - extra]
    raw = bytes(data)
    width = fmt.block_align // fmt.channels
    if fmt.tag == WAVE_FORMAT_IEEE_FLOAT:
        encoding = f"float{fmt.bits}"
        samples = _from_float(raw, fmt.bits, fmt.channels)
    else:
        if fmt.tag == WAVE_FORMAT_PCM:
            encoding = f"pcm{width * 8}"
            samples = _from_pcm(raw, width)
        else:
            encoding = "alaw" if fmt.tag == WAVE_FORMAT_ALAW else "ulaw"
            samples = _from_law(raw, encoding)
        if fmt.channels == 2:
            samples = _mix_down(samples)
    return WavAudio(fmt.rate, samples, encoding, fmt.channels)


def _s16(low: bytes, high: bytes) -> array.array:
    """Interleave two byte planes into little-endian s16 and read them as an array."""
    pcm = bytearray(2 * len(low))
    pcm[0::2] = low
    pcm[1::2] = high
    samples = array.array("h", pcm)
    if not _LITTLE:
        samples.byteswap()
    return samples


_U8_HIGH = bytes(b ^ 0x80 for b in range(256))  # offset-binary 8-bit → the s16 high byte


def _from_pcm(raw: bytes, width: int) -> array.array:
    # Keep the top 16 bits of each little-endian sample: its two most significant bytes.
    if width == 1:
        return _s16(bytes(len(raw)), raw.translate(_U8_HIGH))
    if width == 2:
        samples = array.array("h", raw)
        if not _LITTLE:
            samples.byteswap()
        return samples
    return _s16(raw[width - 2::width], raw[width - 1::width])


def _law_planes(law: str) -> tuple[bytes, bytes]:
    codec = g711.codec(law)
    values = [codec.decode_sample(code) & 0xFFFF for code in range(256)]
    return bytes(v & 0xFF for v in values), bytes(v >> 8 for v in values)


_LAW_PLANES = {law: _law_planes(law) for law in ("alaw", "ulaw")}


def _from_law(raw: bytes, law: str) -> array.array:
    low, high = _LAW_PLANES[law]
    return _s16(raw.translate(low), raw.translate(high))


def _from_float(raw: bytes, bits: int, channels: int) -> array.array:
    values = array.array("f" if bits == 32 else "d", raw)
    if not _LITTLE:
        values.byteswap()
    if channels == 2:
        values = array.array("d", map(_mean, values[0::2], values[1::2]))
    return array.array("h", map(_float_to_s16, values))


def _mean(a: float, b: float) -> float:
    return (a + b) * 0.5


def _float_to_s16(x: float) -> int:
    x *= 32768.0
    # NaN compares false everywhere and ends up as 0 via the last branch
    if x >= 32767.0:
        return 32767
    if x <= -32768.0:
        return -32768
    return round(x) if x == x else 0


def _mix_down(samples: array.array) -> array.array:
    return array.array("h", map(_average, samples[0::2], samples[1::2]))


def _average(a: int, b: int) -> int:
    return (a + b) >> 1


def read_wav(source: str | os.PathLike[str] | BinaryIO) -> WavAudio:
    """Read and decode a WAV file from a path or a binary file object.

    Raises :class:`~uascall.errors.Error` naming the file if it cannot be read, is not a
    WAV file or holds an unsupported format.
    """
    if hasattr(source, "read"):
        name = str(getattr(source, "name", "<file>"))
        return parse_wav(source.read(), name)  # type: ignore[union-attr]
    name = os.fspath(source)
    try:
        with open(name, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise Error(f"{name}: no such file; expected a WAV file") from None
    except IsADirectoryError:
        raise Error(f"{name}: is a directory; expected a WAV file") from None
    except OSError as e:
        raise Error(f"{name}: cannot read: {e.strerror or e}") from e
    return parse_wav(data, name)


# -- serialize --------------------------------------------------------------------------------


def serialize_wav(samples: array.array | list[int], rate: int, encoding: str = "pcm16", *,
                  channels: int = 1) -> bytes:
    """The bytes of a WAV file holding s16 ``samples`` (interleaved if ``channels`` > 1).

    ``encoding`` is one of :data:`ENCODINGS`: ``"pcm16"`` (the default), ``"alaw"`` and
    ``"ulaw"`` (what a telephone line carries), ``"pcm8"``, ``"pcm24"``, ``"pcm32"``,
    ``"float32"``. Wider than 16 bits is written as ``WAVE_FORMAT_EXTENSIBLE``, as the
    format asks; A-law and mu-law get the ``fact`` chunk non-PCM formats must carry.

    Raises :class:`~uascall.errors.ArgumentError` for an unknown encoding, a rate or a
    channel count that is not a positive int, or a sample count not a multiple of
    ``channels``.
    """
    if encoding not in ENCODINGS:
        raise ArgumentError(f"unknown WAV encoding {encoding!r}; expected one of "
                            f"{', '.join(ENCODINGS)}")
    if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
        raise ArgumentError(f"sample rate {rate!r} is not valid; expected a positive int")
    if not isinstance(channels, int) or isinstance(channels, bool) \
            or not 1 <= channels <= 65535:
        raise ArgumentError(f"channels={channels!r}; expected a positive int")
    if len(samples) % channels:
        raise ArgumentError(f"{len(samples)} samples do not make whole frames of "
                            f"{channels} channels")
    samples = samples if isinstance(samples, array.array) and samples.typecode == "h" \
        else array.array("h", samples)
    data = _encode(samples, encoding)
    return _header(encoding, rate, channels, len(data)) + data + (b"\x00" if len(data) & 1 else b"")


def _write_all(file: BinaryIO, data: bytes) -> None:
    """All of ``data`` to an unbuffered file (whose write may take less than all)."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        if not written:  # None: a non-blocking file that would block; 0: nothing taken
            raise OSError(errno.EIO, "the file took none of the bytes written")
        view = view[written:]


def _header(encoding: str, rate: int, channels: int, data_size: int) -> bytes:
    """Everything of a WAV file before its samples, for ``data_size`` bytes of them (the
    data chunk last, so that a file can grow at its end)."""
    tag, width = ENCODINGS[encoding]
    block_align = width * channels
    header = (rate * block_align, block_align, width * 8)
    if width > 2:
        guid = tag.to_bytes(2, "little") + _GUID_TAIL
        mask = {1: 0x4, 2: 0x3}.get(channels, 0)  # front centre; front left and right
        fmt = _FMT.pack(WAVE_FORMAT_EXTENSIBLE, channels, rate, *header) \
            + _FMT_EXTENSIBLE.pack(22, width * 8, mask, guid)
    elif tag != WAVE_FORMAT_PCM:
        fmt = _FMT.pack(tag, channels, rate, *header) + b"\x00\x00"  # cbSize = 0
    else:
        fmt = _FMT.pack(tag, channels, rate, *header)
    chunks = [_chunk(b"fmt ", fmt)]
    if tag != WAVE_FORMAT_PCM:
        chunks.append(_chunk(b"fact", struct.pack("<I", data_size // block_align)))
    chunks.append(_CHUNK_HEADER.pack(b"data", data_size))
    body_size = sum(len(chunk) for chunk in chunks) + data_size + (data_size & 1)
    return _RIFF_HEADER.pack(b"RIFF", 4 + body_size, b"WAVE") + b"".join(chunks)


def _chunk(chunk_id: bytes, body: bytes) -> bytes:
    pad = b"\x00" if len(body) & 1 else b""
    return _CHUNK_HEADER.pack(chunk_id, len(body)) + body + pad


def _encode(samples: array.array, encoding: str) -> bytes:
    if encoding in ("alaw", "ulaw"):
        return g711.codec(encoding).encode(samples)
    if encoding == "float32":
        floats = array.array("f", [s / 32768.0 for s in samples])
        if not _LITTLE:
            floats.byteswap()
        return floats.tobytes()
    le = array.array("h", samples)
    if not _LITTLE:
        le.byteswap()
    pcm = le.tobytes()
    if encoding == "pcm16":
        return pcm
    high = pcm[1::2]
    if encoding == "pcm8":
        return high.translate(_U8_HIGH)  # the same xor 0x80 maps back to offset binary
    width = 3 if encoding == "pcm24" else 4
    out = bytearray(width * len(samples))
    out[width - 2::width] = pcm[0::2]
    out[width - 1::width] = high
    return bytes(out)


def write_wav(target: str | os.PathLike[str] | BinaryIO, samples: array.array | list[int],
              rate: int, encoding: str = "pcm16", *, channels: int = 1) -> None:
    """Write s16 ``samples`` as a WAV file to a path or a binary file object.

    See :func:`serialize_wav` for ``encoding`` and ``channels``. Raises
    :class:`~uascall.errors.ArgumentError` for bad arguments and
    :class:`~uascall.errors.Error` naming the file if it cannot be written.
    """
    data = serialize_wav(samples, rate, encoding, channels=channels)
    if hasattr(target, "write"):
        target.write(data)  # type: ignore[union-attr]
        return
    name = os.fspath(target)
    try:
        with open(name, "wb") as f:
            f.write(data)
    except OSError as e:
        raise Error(f"{name}: cannot write: {e.strerror or e}") from e


class WavWriter:
    """A mono WAV file written as it grows: :meth:`write` appends encoded bytes (and the
    pad byte an odd-sized data chunk needs) and rewrites the header's sizes, so the file
    is complete and valid after every write (a recording cut short by anything, a crash
    included, is readable up to the last write). A write that fails (a full disk) is
    taken back: the file is cut to what it held before, with the header to match.

    ``encoding`` is "alaw", "ulaw" or "pcm16" (bytes as they go in the file: G.711
    codes, or little-endian s16). Raises :class:`~uascall.errors.Error` naming the file
    when it cannot be created or written, or would grow past what a WAV file's 32-bit
    sizes can say (4 GiB).
    """

    def __init__(self, path: str | os.PathLike[str], encoding: str, rate: int = 8000) -> None:
        if encoding not in ("alaw", "ulaw", "pcm16"):
            raise ArgumentError(f"WAV encoding {encoding!r}; expected 'alaw', 'ulaw' or "
                                "'pcm16'")
        self.path = os.fspath(path)
        self.encoding = encoding
        self.rate = rate
        self.data_size = 0
        self._width = ENCODINGS[encoding][1]
        self._data_at = len(_header(encoding, rate, 1, 0))  # where the samples begin
        # the RIFF size (4 bytes) counts everything after its own 8 bytes, pad included
        self.max_data_size = (0xFFFFFFFF - (self._data_at - 8) - 1) // self._width \
            * self._width
        # unbuffered: a write that fails leaves nothing behind in a buffer to come out
        # later, and the file can be cut back to what it held
        self._file: BinaryIO | None = None
        try:
            self._file = open(self.path, "wb", buffering=0)
            _write_all(self._file, _header(encoding, rate, 1, 0))
        except OSError as e:
            if self._file is not None:
                self._file.close()
                self._file = None
            raise Error(f"{self.path}: cannot write: {e.strerror or e}") from e

    @property
    def samples(self) -> int:
        return self.data_size // self._width

    def write(self, data: bytes) -> None:
        file = self._file
        if file is None:
            raise Error(f"{self.path}: written after close()")
        if not data:
            return
        size = self.data_size + len(data)
        if size > self.max_data_size:
            raise Error(f"{self.path}: {size} bytes of samples; a WAV file holds at most "
                        f"{self.max_data_size} (its sizes are 32-bit)")
        try:
            file.seek(self._data_at + self.data_size)  # over the last write's pad byte
            _write_all(file, data + b"\x00" if size & 1 else data)
            file.seek(0)
            _write_all(file, _header(self.encoding, self.rate, 1, size))
        except OSError as e:
            self._take_back()
            raise Error(f"{self.path}: cannot write: {e.strerror or e}") from e
        self.data_size = size

    def _take_back(self) -> None:
        """After a failed write: the file as it was before it (best effort: the disk
        that refused the write may refuse this too)."""
        file = self._file
        assert file is not None
        try:
            file.truncate(self._data_at + self.data_size + (self.data_size & 1))
            file.seek(0)
            _write_all(file, _header(self.encoding, self.rate, 1, self.data_size))
        except OSError as e:
            log.warning("%s: could not cut the file back to its last whole write: %s",
                        self.path, e.strerror or e)

    def close(self) -> None:
        """Finish the file (idempotent)."""
        file, self._file = self._file, None
        if file is None:
            return
        try:
            file.close()
        except OSError as e:
            raise Error(f"{self.path}: cannot write: {e.strerror or e}") from e
