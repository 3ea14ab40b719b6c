"""PlayableMedia: files of every format and rate, the media directory fence, caching, TTS.

Files are written twice, by our writer and by an independent one (the stdlib ``wave``
module for PCM, hand-built RIFF with ``audioop``'s reference coders otherwise); a 1 kHz
tone in each must come out at 8 kHz with its duration, frequency and level. TTS tests run
espeak-ng for real (they fail, not skip, without it: scripts/setup.sh installs it) and count
its runs through ``subprocess.run``.
"""

from __future__ import annotations

import array
import functools
import io
import logging
import math
import os
import re
import struct
import subprocess
import threading
import types
import warnings
import wave

import pytest

from tests import audio
from uascall.errors import ArgumentError, Error
from uascall.media import g711, playable, tts
from uascall.media.playable import PlayableMedia
from uascall.media.wav import write_wav

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # deprecated since 3.11, still the reference coder in C

RATES = [6000, 8000, 11025, 16000, 44100, 48000]
ENCODINGS = ["pcm8", "pcm16", "pcm24", "pcm32", "float32", "alaw", "ulaw"]
AMPLITUDE = 8000
SECONDS = 0.1



@pytest.fixture(autouse=True)
def _fresh_caches():
    playable.clear_file_cache()
    tts.clear_memory_cache()
    yield
    playable.clear_file_cache()
    tts.clear_memory_cache()


@functools.cache
def tone(rate: int) -> array.array:
    n = round(rate * SECONDS)
    return array.array("h", (round(AMPLITUDE * math.sin(2 * math.pi * 1000 * i / rate))
                             for i in range(n)))


# -- independent writers -----------------------------------------------------------------------


def riff_file(tag: int, channels: int, rate: int, bits: int, data: bytes) -> bytes:
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    pad = b"\0" if len(data) & 1 else b""
    body = (b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", len(data)) + data + pad)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def independent_wav(encoding: str, rate: int, channels: int) -> bytes:
    """The tone (left channel only, if stereo) in a file none of our code wrote."""
    mono = struct.pack(f"<{len(tone(rate))}h", *tone(rate))
    frag = audioop.tostereo(mono, 2, 1, 0) if channels == 2 else mono
    if encoding == "alaw":
        return riff_file(6, channels, rate, 8, audioop.lin2alaw(frag, 2))
    if encoding == "ulaw":
        return riff_file(7, channels, rate, 8, audioop.lin2ulaw(frag, 2))
    if encoding == "float32":
        values = struct.unpack(f"<{len(frag) // 2}h", frag)
        return riff_file(3, channels, rate, 32,
                         struct.pack(f"<{len(values)}f", *(v / 32768 for v in values)))
    width = int(encoding[3:]) // 8
    frag = audioop.lin2lin(frag, 2, width)
    if width == 1:
        frag = audioop.bias(frag, 1, 128)  # WAV 8-bit is unsigned
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frag)
    return buf.getvalue()


def our_wav(encoding: str, rate: int, channels: int) -> bytes:
    samples = array.array("h")
    for s in tone(rate):
        samples.extend([s, 0][:channels])
    buf = io.BytesIO()
    write_wav(buf, samples, rate, encoding, channels=channels)
    return buf.getvalue()


@pytest.mark.parametrize("writer", [our_wav, independent_wav], ids=["ours", "independent"])
@pytest.mark.parametrize("channels", [1, 2], ids=["mono", "stereo"])
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_format_rate_and_layout_plays_at_8k(tmp_path, encoding, rate, channels, writer):
    (tmp_path / "tone.wav").write_bytes(writer(encoding, rate, channels))
    media = PlayableMedia("tone.wav", media_dir=tmp_path)
    n_in = round(rate * SECONDS)
    assert abs(media.duration - n_in / rate) <= 1 / 8000
    pcm = media.pcm()
    assert pcm.typecode == "h" and len(pcm) == round(8000 * SECONDS)
    part = pcm[100:700]  # 75 whole cycles, clear of the filter's run-in and run-out
    expected = AMPLITUDE / channels  # stereo: a silent right channel halves the mix
    # the level is kept, and all of it is at 1 kHz
    assert abs(audio.db(audio.amplitude_at(part, 1000, 8000) / expected)) < 0.2
    assert abs(audio.db(audio.rms(part) / (expected / math.sqrt(2)))) < 0.2


# -- the media directory -----------------------------------------------------------------------


@pytest.fixture
def media(tmp_path):
    """tmp/media holding tone.wav and sub/, beside tmp/secret.wav."""
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    write_wav(root / "tone.wav", tone(8000), 8000)
    write_wav(tmp_path / "secret.wav", tone(8000), 8000)
    return root


def test_file_names_resolve_inside_the_media_dir(media):
    assert PlayableMedia("tone.wav", media_dir=media).duration == pytest.approx(SECONDS)
    assert PlayableMedia("sub/../tone.wav", media_dir=media).path == media / "tone.wav"
    os.symlink("../tone.wav", media / "sub" / "link.wav")  # a symlink that stays inside
    assert PlayableMedia("sub/link.wav", media_dir=media).pcm() == tone(8000)


@pytest.mark.parametrize("name", ["../secret.wav", "sub/../../secret.wav", "..", "../media2"])
def test_dot_dot_cannot_escape(media, name):
    with pytest.raises(Error) as err:
        PlayableMedia(name, media_dir=media)
    assert repr(name) in str(err.value) and str(media) in str(err.value)
    assert "leads outside the media directory" in str(err.value)


def test_absolute_paths_are_refused_even_inside(media):
    for name in (str(media / "tone.wav"), "/etc/passwd"):
        with pytest.raises(Error, match=r"is an absolute path; expected a name relative to "
                                        r"the media directory"):
            PlayableMedia(name, media_dir=media)


def test_a_symlink_pointing_outside_is_refused(media, tmp_path):
    os.symlink(tmp_path / "secret.wav", media / "evil.wav")
    with pytest.raises(Error, match=r"'evil\.wav' in media directory .*leads outside"):
        PlayableMedia("evil.wav", media_dir=media)
    os.symlink(tmp_path, media / "up")  # a directory symlink
    with pytest.raises(Error, match="leads outside"):
        PlayableMedia("up/secret.wav", media_dir=media)


def test_a_symlink_made_after_construction_is_checked_at_load(media, tmp_path):
    later = PlayableMedia("later.wav", media_dir=media)  # does not exist yet: fine
    os.symlink(tmp_path / "secret.wav", media / "later.wav")
    with pytest.raises(Error, match="leads outside"):
        later.pcm()


def test_the_media_dir_itself_may_be_a_symlink(media, tmp_path):
    os.symlink(media, tmp_path / "alias")
    assert len(PlayableMedia("tone.wav", media_dir=tmp_path / "alias").pcm()) == 800


def test_media_dir_comes_from_the_argument_the_channel_or_the_cwd(media, tmp_path,
                                                                  monkeypatch):
    channel = types.SimpleNamespace(media_dir=str(media))
    assert PlayableMedia("tone.wav", channel=channel).path == media / "tone.wav"
    other = tmp_path / "other"
    other.mkdir()
    assert PlayableMedia("x.wav", channel=channel, media_dir=other).path == other / "x.wav"
    monkeypatch.chdir(media)
    assert PlayableMedia("tone.wav").path == media / "tone.wav"
    assert PlayableMedia("tone.wav", channel=object()).path == media / "tone.wav"
    assert PlayableMedia("tone.wav", channel=types.SimpleNamespace(media_dir=None)).path \
        == media / "tone.wav"


# -- load errors -------------------------------------------------------------------------------


def test_loading_is_lazy_and_errors_name_file_and_directory(media):
    missing = PlayableMedia("missing.wav", media_dir=media)  # no error yet
    with pytest.raises(Error, match=rf"'missing\.wav' in media directory "
                                    rf"'{re.escape(str(media))}' does not exist"):
        missing.duration  # noqa: B018
    with pytest.raises(Error, match=r"'sub' in media directory .* is a directory"):
        PlayableMedia("sub", media_dir=media).pcm()
    os.mkfifo(media / "fifo.wav")  # reading it would block
    with pytest.raises(Error, match=r"'fifo\.wav' .* is not a regular file"):
        PlayableMedia("fifo.wav", media_dir=media).pcm()
    (media / "late.wav").write_bytes(our_wav("pcm16", 8000, 1))  # made after construction
    late = PlayableMedia("late.wav", media_dir=media)
    assert late.duration == pytest.approx(SECONDS)


@pytest.mark.parametrize("data, message", [
    (b"RIFF\x24\x00\x00\x00WAV", r"cut\.wav: truncated WAV header"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00", r"cut\.wav: 'fmt ' chunk claims"),
    (riff_file(2, 1, 8000, 4, b"\0" * 10), r"cut\.wav: format 2 \(Microsoft ADPCM\) is not "
                                            r"supported; expected PCM"),
    (b"ID3\x03" + bytes(60), r"cut\.wav: not a WAV file"),
])
def test_bad_files_raise_naming_the_file(media, data, message):
    (media / "cut.wav").write_bytes(data)
    with pytest.raises(Error, match=message):
        PlayableMedia("cut.wav", media_dir=media).encoded("alaw")


@pytest.mark.parametrize("kwargs, message", [
    ({}, "got neither of file_to_play and text_to_say; expected exactly one"),
    ({"file_to_play": "a.wav", "text_to_say": "hi"}, "got both"),
    ({"text_to_say": "  "}, r"text_to_say='  '; expected a non-empty str"),
    ({"text_to_say": b"hi"}, "expected a non-empty str"),
    ({"file_to_play": 3}, "file_to_play=3; expected a file name"),
    ({"file_to_play": ""}, "file_to_play is empty"),
])
def test_constructor_arguments(kwargs, message):
    with pytest.raises(ArgumentError, match=message):
        PlayableMedia(**kwargs)


# -- caching and sharing -----------------------------------------------------------------------


@pytest.fixture
def count_resamples(monkeypatch):
    calls = []
    real = playable.resample

    def counting(*args):
        calls.append(args[1:])
        return real(*args)

    monkeypatch.setattr(playable, "resample", counting)
    return calls


def test_a_file_is_decoded_once_per_process(media, count_resamples):
    first = PlayableMedia("tone.wav", media_dir=media)
    second = PlayableMedia("sub/../tone.wav", media_dir=media)
    assert first.encoded("alaw") is second.encoded("alaw")
    assert second.pcm() == first.pcm()
    assert len(count_resamples) == 1
    write_wav(media / "tone.wav", tone(8000)[:400], 8000)  # edited: size changes
    assert PlayableMedia("tone.wav", media_dir=media).duration == pytest.approx(0.05)
    assert first.duration == pytest.approx(SECONDS)  # a loaded object keeps its audio
    assert len(count_resamples) == 2


def test_threads_share_one_load(tmp_path, count_resamples):
    write_wav(tmp_path / "big.wav", tone(48000) * 5, 48000)
    shared = PlayableMedia("big.wav", media_dir=tmp_path)
    objects = [shared] * 4 + [PlayableMedia("big.wav", media_dir=tmp_path) for _ in range(4)]
    barrier = threading.Barrier(len(objects))
    results = []

    def play(media):
        barrier.wait()
        results.append(media.encoded("ulaw"))

    threads = [threading.Thread(target=play, args=(m,)) for m in objects]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and all(r is results[0] for r in results)
    assert count_resamples == [(48000, 8000)]


def test_encodings_and_sources(media):
    m = PlayableMedia("tone.wav", media_dir=media)
    pcm = m.pcm()
    pcm[0] = 12345  # a copy: the shared audio is not touched
    assert m.pcm()[0] == 0
    assert m.encoded("alaw") is m.encoded("PCMA")
    assert m.encoded("ulaw") == g711.ULAW.encode(tone(8000))
    with pytest.raises(ArgumentError, match=r"unknown G\.711 law 'gsm'"):
        m.encoded("gsm")
    once = m.source("alaw")
    assert once.law == "alaw" and once.duration == pytest.approx(SECONDS)
    frames = iter(once.next_frame, None)
    assert b"".join(frames) == m.encoded("alaw")
    looped = m.source("ulaw", loop=True)
    assert looped.duration is None
    assert b"".join(looped.next_frame() for _ in range(10)) == m.encoded("ulaw") * 2


def test_repr():
    assert repr(PlayableMedia("x.wav")) == "PlayableMedia(file 'x.wav')"
    assert repr(PlayableMedia(text_to_say="Hello")) == "PlayableMedia(text 'Hello')"
    long = PlayableMedia(text_to_say="Thank you for calling. " * 5, tts_voice="en-us")
    assert repr(long) == "PlayableMedia(text 'Thank you for calling. Thank you for...', " \
                         "voice 'en-us')"


# -- text to speech ----------------------------------------------------------------------------


@pytest.fixture
def espeak_runs(monkeypatch, tmp_path):
    """(argv, bytes written to its standard input) of every espeak-ng rendering (its
    --version is not one), with a private cache. espeak-ng runs for real."""
    monkeypatch.setenv("UASCALL_CACHE", str(tmp_path / "cache"))
    runs: list[tuple[list[str], bytearray]] = []
    stdin: dict[int, bytearray] = {}  # fd of a rendering's standard input -> what it got

    class Recording(subprocess.Popen):
        def __init__(self, argv, *args, **kwargs):
            super().__init__(argv, *args, **kwargs)
            if "--version" not in argv:
                runs.append((list(argv), bytearray()))
                stdin[self.stdin.fileno()] = runs[-1][1]

    def write(fd, data):
        written = os.write(fd, data)
        if fd in stdin:
            stdin[fd] += bytes(data[:written])
        return written

    monkeypatch.setattr(tts.subprocess, "Popen", Recording)
    monkeypatch.setattr(tts, "os", types.SimpleNamespace(**{**vars(os), "write": write}))
    return runs


SENTENCE = "Thank you for calling. Please hold while we connect your call."


def test_speech_is_audible_and_as_long_as_the_words(espeak_runs):
    media = PlayableMedia(text_to_say=SENTENCE)
    pcm = media.pcm()
    assert audio.rms(pcm) > 1000  # silence is 0; espeak-ng speaks at about -20 dBFS
    # espeak-ng's default 175 words per minute is 0.34 s a word; with pauses for the
    # punctuation it measures 0.30-0.35. A factor of about two either side admits other
    # voices and word lengths but not silence, a cut rendering, or 22050 Hz audio taken
    # for 8 kHz (2.76 times too long).
    words = len(SENTENCE.split())
    assert 0.15 * words < media.duration < 0.6 * words
    assert len(espeak_runs) == 1


def test_speech_is_rendered_once_then_cached(espeak_runs, tmp_path):
    first = PlayableMedia(text_to_say=SENTENCE).pcm()
    assert PlayableMedia(text_to_say=SENTENCE).pcm() == first  # memory
    assert len(espeak_runs) == 1
    tts.clear_memory_cache()
    assert PlayableMedia(text_to_say=SENTENCE).pcm() == first  # the cache directory
    assert len(espeak_runs) == 1
    assert len(list((tmp_path / "cache" / "tts").glob("*.wav"))) == 1
    PlayableMedia(text_to_say=SENTENCE, tts_voice="en-us").pcm()  # another key
    assert len(espeak_runs) == 2


def test_concurrent_requests_render_once(espeak_runs):
    barrier = threading.Barrier(4)
    results = []

    def speak():
        barrier.wait()
        results.append(tts.synthesize("one moment please"))

    threads = [threading.Thread(target=speak) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(espeak_runs) == 1 and all(r == results[0] for r in results)


def test_voices_and_speed(espeak_runs):
    channel = types.SimpleNamespace(tts_voice="de")
    german = PlayableMedia(text_to_say="guten Tag", channel=channel)
    english = PlayableMedia(text_to_say="guten Tag", channel=channel, tts_voice="en-us")
    assert german.pcm() != english.pcm()
    assert [argv[argv.index("-v") + 1] for argv, _ in espeak_runs] == ["de", "en-us"]
    slow = tts.synthesize(SENTENCE, speed=100)
    fast = tts.synthesize(SENTENCE, speed=300)
    assert len(slow) > 2 * len(fast)


def test_text_is_never_an_option(espeak_runs):
    text = "-v xx --help; $(rm -rf /)"
    media = PlayableMedia(text_to_say=text)
    assert audio.rms(media.pcm()) > 1000
    (argv, stdin), = espeak_runs
    assert text not in " ".join(argv) and stdin == text.encode() and argv[-1] == "--stdin"


def test_espeak_failures_carry_its_message(espeak_runs):
    with pytest.raises(Error, match=r"espeak-ng failed \(exit status 1\): .*voice does not "
                                    "exist"):
        PlayableMedia(text_to_say="hello", tts_voice="xx-nonesuch").duration  # noqa: B018


def test_missing_espeak_says_how_to_install(monkeypatch):
    monkeypatch.setattr(tts, "ESPEAK", "uascall-test-no-such-espeak")
    with pytest.raises(Error, match=r"^text to speech needs espeak-ng: apt-get install "
                                    r"espeak-ng$"):
        PlayableMedia(text_to_say="hello").pcm()


def test_an_unusable_cache_dir_falls_back_to_memory(espeak_runs, tmp_path, caplog):
    (tmp_path / "file").write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger="uascall.media.tts"):
        speech = tts.synthesize("hello", cache_dir=tmp_path / "file" / "tts")
    assert len(speech) > 0 and "cannot cache speech" in caplog.text
    assert tts.synthesize("hello", cache_dir=tmp_path / "file" / "tts") == speech
    assert len(espeak_runs) == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"voice": "-x"}, "expected an espeak-ng voice name"),
    ({"voice": "en us"}, "expected an espeak-ng voice name"),
    ({"speed": 20}, "expected words per minute from 80 to 450"),
    ({"speed": "fast"}, "expected words per minute"),
])
def test_tts_arguments(kwargs, message):
    with pytest.raises(ArgumentError, match=message):
        tts.synthesize("hello", **kwargs)


def test_cache_directory_choice(monkeypatch, tmp_path):
    monkeypatch.delenv("UASCALL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tts.cache_directory() == tmp_path / "xdg" / "uascall" / "tts"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tts.cache_directory() == tmp_path / "home" / ".cache" / "uascall" / "tts"
    monkeypatch.setenv("UASCALL_CACHE", str(tmp_path / "mine"))
    assert tts.cache_directory() == tmp_path / "mine" / "tts"
    assert tts.cache_directory(tmp_path / "arg") == tmp_path / "arg"
