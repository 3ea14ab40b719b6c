"""RIFF/WAVE parse and serialize: every encoding, independent writers, lenient and strict parts.

Files written by the stdlib ``wave`` module and by hand (with ``audioop``, the C reference
coders) check the reader against code that is not ours; ``wave`` and ``audioop`` reading
what we write check the writer the same way.
"""

from __future__ import annotations

import array
import errno
import io
import logging
import math
import os
import struct
import warnings
import wave

import pytest

from uascall.errors import ArgumentError, Error
from uascall.media import g711
from uascall.media.wav import (
    ENCODINGS,
    WavAudio,
    WavWriter,
    parse_wav,
    read_wav,
    serialize_wav,
    write_wav,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # deprecated since 3.11, still the reference coder in C

GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def tone(freq: float, rate: int, n: int, amp: float = 10000.0) -> array.array:
    return array.array("h", (round(amp * math.sin(2 * math.pi * freq * i / rate))
                             for i in range(n)))


def chunk(chunk_id: bytes, body: bytes, *, pad: bool = True) -> bytes:
    return chunk_id + struct.pack("<I", len(body)) + body + (b"\0" if pad and len(body) & 1
                                                             else b"")


def riff(*chunks: bytes) -> bytes:
    body = b"".join(chunks)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def fmt(tag: int, channels: int, rate: int, bits: int, *, extensible: bool = False,
        sub_tag: int | None = None, block_align: int | None = None) -> bytes:
    align = block_align if block_align is not None else channels * ((bits + 7) // 8)
    head = struct.pack("<HHIIHH", 0xFFFE if extensible else tag, channels, rate,
                       rate * align, align, bits)
    if extensible:
        guid = (tag if sub_tag is None else sub_tag).to_bytes(2, "little") + GUID_TAIL
        return chunk(b"fmt ", head + struct.pack("<HHI", 22, bits, 3) + guid)
    return chunk(b"fmt ", head)


def s16le(samples: array.array) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


# -- round trips through our writer ------------------------------------------------------------


def expected_after(encoding: str, samples: array.array) -> list[int]:
    """What a sample is once stored in ``encoding`` and read back as s16."""
    if encoding == "pcm8":
        return [(s >> 8) << 8 for s in samples]
    if encoding in ("alaw", "ulaw"):
        c = g711.codec(encoding)
        return [c.decode_sample(c.encode_sample(s)) for s in samples]
    return list(samples)  # 16 bits or wider hold every s16 value exactly


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("channels", [1, 2])
def test_round_trip_every_encoding(encoding, channels):
    left = tone(1000, 16000, 321)  # odd length: A-law/mu-law data gets a pad byte
    interleaved = array.array("h")
    for s in left:
        interleaved.extend([s] * channels)
    audio = parse_wav(serialize_wav(interleaved, 16000, encoding, channels=channels))
    assert isinstance(audio, WavAudio)
    assert (audio.rate, audio.encoding, audio.channels) == (16000, encoding, channels)
    assert audio.samples.typecode == "h"
    assert list(audio.samples) == expected_after(encoding, left)
    assert audio.duration == pytest.approx(321 / 16000)


def test_extremes_survive_every_width():
    extremes = array.array("h", [-32768, -1, 0, 1, 32767])
    for encoding in ("pcm16", "pcm24", "pcm32", "float32"):
        assert list(parse_wav(serialize_wav(extremes, 8000, encoding)).samples) == \
            list(extremes), encoding
    assert list(parse_wav(serialize_wav(extremes, 8000, "pcm8")).samples) == \
        [-32768, -256, 0, 0, 32512]


def test_stdlib_wave_reads_what_we_write():
    samples = tone(440, 11025, 500)
    for encoding, width in (("pcm8", 1), ("pcm16", 2)):
        with wave.open(io.BytesIO(serialize_wav(samples, 11025, encoding))) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) \
                == (1, width, 11025, 500)
            frames = w.readframes(500)
        if width == 1:  # WAV 8-bit is unsigned; audioop's 8-bit is signed
            frames = audioop.lin2lin(audioop.bias(frames, 1, -128), 1, 2)
        assert array.array("h", frames).tolist() == expected_after(encoding, samples)


@pytest.mark.parametrize("encoding, lin2law, tag", [
    ("alaw", audioop.lin2alaw, 6), ("ulaw", audioop.lin2ulaw, 7),
])
def test_law_files_match_the_reference_coder(encoding, lin2law, tag):
    samples = tone(1000, 8000, 161)
    data = serialize_wav(samples, 8000, encoding)
    assert struct.unpack_from("<HHIIHHH", data, 20) == (tag, 1, 8000, 8000, 1, 8, 0)
    start = data.index(b"data") + 8
    assert struct.unpack_from("<I", data, start - 4)[0] == 161
    assert data[start:start + 161] == lin2law(s16le(samples), 2)
    assert data[start + 161:] == b"\0"  # the pad byte
    assert b"fact" in data[:start]  # non-PCM formats carry a fact chunk


# -- files by other writers --------------------------------------------------------------------


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 2])
def test_reads_stdlib_wave_pcm(width, channels):
    samples = tone(1000, 22050, 300)
    frag = s16le(samples)
    if channels == 2:
        frag = audioop.tostereo(frag, 2, 1, 1)  # the same on both sides: the mean is exact
    frag = audioop.lin2lin(frag, 2, width)
    if width == 1:
        frag = audioop.bias(frag, 1, 128)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(22050)
        w.writeframes(frag)
    audio = parse_wav(buf.getvalue())
    assert (audio.rate, audio.channels, audio.encoding) == (22050, channels, f"pcm{8 * width}")
    assert list(audio.samples) == expected_after("pcm8" if width == 1 else "pcm16", samples)


def test_stereo_is_mixed_down_by_averaging():
    frames = array.array("h", [1000, 3000, -2, -1, 32767, 32767, -32768, -32768, 100, -100])
    audio = parse_wav(serialize_wav(frames, 8000, channels=2))
    assert list(audio.samples) == [2000, -2, 32767, -32768, 0]
    audio = parse_wav(serialize_wav(frames, 8000, "float32", channels=2))
    assert list(audio.samples) == [2000, -2, 32767, -32768, 0]


def test_float_is_clipped_and_nan_is_silence():
    values = [0.5, -0.5, 1.5, -2.0, float("inf"), float("-inf"), float("nan"), 1.0]
    data = riff(fmt(3, 1, 8000, 32), chunk(b"data", struct.pack("<8f", *values)))
    assert list(parse_wav(data).samples) == [16384, -16384, 32767, -32768, 32767, -32768, 0,
                                             32767]
    data = riff(fmt(3, 1, 8000, 64), chunk(b"data", struct.pack("<2d", 0.25, -1.0)))
    audio = parse_wav(data)
    assert (list(audio.samples), audio.encoding) == ([8192, -32768], "float64")


@pytest.mark.parametrize("tag, bits, body", [
    (1, 16, struct.pack("<3h", 1, -2, 3)),
    (6, 8, audioop.lin2alaw(struct.pack("<3h", 1000, -2000, 3000), 2)),
    (7, 8, audioop.lin2ulaw(struct.pack("<3h", 1000, -2000, 3000), 2)),
    (3, 32, struct.pack("<3f", 0.5, -0.25, 0.0)),
    (1, 24, b"\x00\x01\x02\xff\xfe\xfd\x00\x00\x80"),
])
def test_extensible_wraps_the_plain_formats(tag, bits, body):
    plain = parse_wav(riff(fmt(tag, 1, 8000, bits), chunk(b"data", body)))
    wrapped = parse_wav(riff(fmt(tag, 1, 8000, bits, extensible=True), chunk(b"data", body)))
    assert list(wrapped.samples) == list(plain.samples)
    assert len(plain.samples) == 3


def test_pcm_12_bits_in_a_16_bit_container():
    data = riff(fmt(1, 1, 8000, 12), chunk(b"data", struct.pack("<2h", 0x7FF0, -16)))
    assert list(parse_wav(data).samples) == [0x7FF0, -16]


# -- leniency ----------------------------------------------------------------------------------


def test_unknown_chunks_are_skipped_and_pad_bytes_honoured():
    law = audioop.lin2alaw(struct.pack("<3h", 1000, -2000, 3000), 2)
    data = riff(
        chunk(b"LIST", b"INFOISFT\x03\x00\x00\x00ab\0"),  # odd size, then its pad byte
        fmt(6, 1, 8000, 8),
        chunk(b"fact", struct.pack("<I", 3)),
        chunk(b"junk", b"\xff" * 7),
        chunk(b"data", law),  # odd: padded
        chunk(b"LIST", b"trailing"),
    )
    assert len(parse_wav(data).samples) == 3


def test_data_larger_than_the_file_is_truncated_with_a_warning(caplog):
    body = s16le(array.array("h", [1, 2, 3, 4]))
    for claimed in (100, 0xFFFFFFFF):  # a cut file; a streamed header never fixed up
        data = riff(fmt(1, 1, 8000, 16)) + b"data" + struct.pack("<I", claimed) + body
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="uascall.media.wav"):
            assert list(parse_wav(data, "cut.wav").samples) == [1, 2, 3, 4]
        assert "cut.wav" in caplog.text and "truncated" in caplog.text


def test_partial_trailing_sample_is_dropped(caplog):
    data = riff(fmt(1, 2, 8000, 16), chunk(b"data", s16le(array.array("h", [1, 3, 5]))))
    with caplog.at_level(logging.WARNING):
        assert list(parse_wav(data).samples) == [2]
    assert "partial" in caplog.text


def test_empty_data_is_no_samples():
    audio = parse_wav(serialize_wav([], 8000))
    assert len(audio.samples) == 0 and audio.duration == 0.0


def test_every_truncated_prefix_is_an_error_or_a_shorter_read():
    full = serialize_wav(tone(1000, 8000, 20), 8000, "alaw")
    header_end = full.index(b"data") + 8
    whole = list(parse_wav(full).samples)
    for cut in range(len(full)):
        if cut < header_end:
            with pytest.raises(Error, match=r"^x\.wav: "):
                parse_wav(full[:cut], "x.wav")
        else:
            assert list(parse_wav(full[:cut], "x.wav").samples) == whole[:cut - header_end]


# -- strictness --------------------------------------------------------------------------------


@pytest.mark.parametrize("data, message", [
    (b"RIFF\x04\x00", r"x\.wav: truncated WAV header \(6 bytes\); expected a RIFF/WAVE"),
    (b"OggS" + bytes(40), r"x\.wav: not a WAV file \(starts with b'OggS'\)"),
    (b"RIFX" + bytes(4) + b"WAVE", r"big-endian RIFX.*expected a little-endian RIFF/WAVE"),
    (b"RIFF" + bytes(4) + b"AVI ", r"not a WAV file"),
    (riff(fmt(2, 1, 8000, 4), chunk(b"data", b"\0\0")),
     r"^x\.wav: format 2 \(Microsoft ADPCM\) is not supported; expected PCM 8/16/24/32-bit"),
    (riff(fmt(0x55, 1, 8000, 0), chunk(b"data", b"")), r"format 85 \(MPEG layer 3\)"),
    (riff(fmt(0x1234, 1, 8000, 16), chunk(b"data", b"")), r"format 4660 \(unknown\)"),
    (riff(fmt(1, 1, 8000, 16, extensible=True, sub_tag=2), chunk(b"data", b"")),
     r"format 2 \(Microsoft ADPCM\)"),
    (riff(fmt(1, 3, 8000, 16), chunk(b"data", b"")),
     r"3 channels are not supported; expected .* mono or stereo"),
    (riff(fmt(1, 1, 0, 16), chunk(b"data", b"")), r"sample rate 0 is not valid"),
    (riff(fmt(6, 1, 8000, 16), chunk(b"data", b"")), r"A-law with 16 bits .* not supported"),
    (riff(fmt(3, 1, 8000, 16), chunk(b"data", b"")), r"IEEE float with 16 bits"),
    (riff(fmt(1, 1, 8000, 40), chunk(b"data", b"")), r"PCM with 40 bits"),
    (riff(fmt(1, 1, 8000, 16)), r"no data chunk"),
    (riff(chunk(b"data", b"\0\0"), fmt(1, 1, 8000, 16)), r"data chunk before any fmt"),
    (riff(chunk(b"fmt ", b"\x01\x00\x01\x00")), r"fmt chunk is 4 bytes; expected at least 16"),
    (riff(b"LIST" + struct.pack("<I", 99) + b"abc"), r"'LIST' chunk claims 99 bytes but"),
])
def test_bad_files_say_what_and_what_was_expected(data, message):
    with pytest.raises(Error, match=message):
        parse_wav(data, "x.wav")


def test_unknown_extensible_subformat():
    bad = fmt(1, 1, 8000, 16, extensible=True)
    bad = bad[:-14] + bytes(14)  # not the KSDATAFORMAT GUID family
    with pytest.raises(Error, match=r"extensible sub-format 0100.* is not supported"):
        parse_wav(riff(bad, chunk(b"data", b"")), "x.wav")


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(Error, match=r"nope\.wav: no such file"):
        read_wav(tmp_path / "nope.wav")
    with pytest.raises(Error, match=r"is a directory; expected a WAV file"):
        read_wav(tmp_path)
    (tmp_path / "short.wav").write_bytes(b"RIFF")
    with pytest.raises(Error, match=r"short\.wav: truncated WAV header"):
        read_wav(tmp_path / "short.wav")


# -- writing -----------------------------------------------------------------------------------


def test_write_to_a_path_and_to_a_file_object(tmp_path):
    samples = tone(1000, 8000, 160)
    write_wav(tmp_path / "a.wav", samples, 8000, "ulaw")
    buf = io.BytesIO()
    write_wav(buf, samples, 8000, "ulaw")
    assert (tmp_path / "a.wav").read_bytes() == buf.getvalue()
    assert read_wav(tmp_path / "a.wav").encoding == "ulaw"
    with open(tmp_path / "a.wav", "rb") as f:
        assert read_wav(f).samples == parse_wav(buf.getvalue()).samples


def test_write_errors(tmp_path):
    with pytest.raises(ArgumentError, match=r"unknown WAV encoding 'mp3'; expected one of pcm8"):
        write_wav(io.BytesIO(), [0], 8000, "mp3")
    for rate in (0, -8000, 8000.0, True):
        with pytest.raises(ArgumentError, match="expected a positive int"):
            serialize_wav([0], rate)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="3 samples do not make whole frames of 2"):
        serialize_wav([0, 0, 0], 8000, channels=2)
    with pytest.raises(Error, match=r"no-dir.*cannot write"):
        write_wav(tmp_path / "no-dir" / "x.wav", [0], 8000)


class FillingDisk:
    """A file on a disk with ``room`` bytes left: a write past the file's end takes what
    fits (a short write), then fails with ENOSPC, as a raw file's does; bytes written
    over the file's own take no room."""

    def __init__(self, file, room: int) -> None:
        self.file = file
        self.room = room

    def write(self, data) -> int:
        over = max(0, os.fstat(self.file.fileno()).st_size - self.file.tell())
        if over + self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        taken = self.file.write(bytes(data[:over + self.room]))
        self.room -= max(0, taken - over)
        return taken

    def __getattr__(self, name):
        return getattr(self.file, name)


def riff_says_the_files_length(data: bytes) -> bool:
    return struct.unpack_from("<I", data, 4)[0] == len(data) - 8


@pytest.mark.parametrize("encoding", ["alaw", "pcm16"])
def test_a_write_the_disk_refuses_is_taken_back(tmp_path, encoding, caplog):
    """A full disk: the file is what it was before the write that failed, not that plus
    the part of it that fitted, parsed as a chunk of its own."""
    path = tmp_path / "rec.wav"
    writer = WavWriter(path, encoding)
    writer.write(b"\xd5" * 8000)
    writer._file = FillingDisk(writer._file, room=900)
    with pytest.raises(Error, match=r"rec\.wav: cannot write: No space left on device"):
        writer.write(b"\x55" * 8000)
    assert "could not cut" not in caplog.text
    data = path.read_bytes()
    assert riff_says_the_files_length(data)
    assert len(parse_wav(data).samples) == 8000 // ENCODINGS[encoding][1]
    assert writer.data_size == 8000
    writer._file.room = 10**6  # room again: the recording goes on where it was
    writer.write(b"\x55" * 2)
    writer.close()
    data = path.read_bytes()
    assert riff_says_the_files_length(data) and data.endswith(b"\xd5\x55\x55")


def test_an_odd_sized_file_is_padded_after_every_write_not_only_at_close(tmp_path):
    path = tmp_path / "odd.wav"
    writer = WavWriter(path, "alaw")
    writer.write(b"\xd5" * 8001)
    data = path.read_bytes()  # what a crash now would leave
    assert riff_says_the_files_length(data) and len(data) % 2 == 0
    assert len(parse_wav(data).samples) == 8001
    writer.write(b"\x55")  # over the pad byte
    data = path.read_bytes()
    assert riff_says_the_files_length(data) and data.endswith(b"\xd5\x55")
    assert len(parse_wav(data).samples) == 8002
    writer.close()
    assert path.read_bytes() == data


def test_a_file_past_what_32_bit_sizes_say_is_an_error_not_a_struct_error(tmp_path):
    writer = WavWriter(tmp_path / "big.wav", "pcm16")
    assert writer.max_data_size % 2 == 0 and writer.max_data_size > 4_294_000_000
    writer.data_size = writer.max_data_size - 2  # as if 4 GiB had been written
    with pytest.raises(Error, match=r"big\.wav: 4294967\d+ bytes of samples; a WAV file "
                                    r"holds at most 4294967\d+ \(its sizes are 32-bit\)"):
        writer.write(b"\x00" * 4)
