"""What an application asks a channel to play: a WAV file or a text to speak.

:class:`PlayableMedia` names the media; it is loaded on first use, once, as 8 kHz mono s16
(decoded, mixed down and resampled; or spoken by :mod:`uascall.media.tts`) and encoded per
G.711 law on demand. One object may be shared by any number of threads and calls.

A text need not be spoken to its end before it plays: :meth:`PlayableMedia.open` starts
the rendering and returns as soon as the first words are there (or a bound has passed),
and its sources play the speech as it is rendered. That is how a channel rings with a
long announcement without keeping the caller waiting for the signal.

Files are looked up in a media directory and cannot name anything outside it: absolute
names are refused, and so is any name whose resolved path (``..`` and symlinks followed)
is not inside the resolved directory. The check is made when the object is built and again
when the file is loaded.

Decoded files are kept process-wide, keyed by (resolved path, modification time, size), so
a hundred calls playing one prompt decode and resample it once, and an edited file is
reloaded. The cache holds at most :data:`FILE_CACHE_SAMPLES` samples (least recently used
files are dropped first).
"""

from __future__ import annotations

import array
import logging
import os
import stat
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from uascall.errors import ArgumentError, Error
from uascall.media import g711, tts
from uascall.media.resample import resample
from uascall.media.source import BufferSource, FrameSource, GrowingSource
from uascall.media.wav import read_wav

log = logging.getLogger(__name__)

#: samples (8 kHz) the process-wide file cache keeps: 30 minutes of audio, about 60 MB
FILE_CACHE_SAMPLES = 30 * 60 * g711.SAMPLE_RATE

_REPR_TEXT = 40  # characters of a text shown by repr


class _Decoded:
    """One loaded medium: its 8 kHz samples and their G.711 encodings, made on demand."""

    __slots__ = ("_encoded", "_lock", "pcm")

    def __init__(self, pcm: array.array, encoded: dict[str, bytes] | None = None) -> None:
        self.pcm = pcm
        self._encoded: dict[str, bytes] = dict(encoded or {})
        self._lock = threading.Lock()

    def encoded(self, law: str) -> bytes:
        with self._lock:
            data = self._encoded.get(law)
            if data is None:
                data = self._encoded[law] = g711.codec(law).encode(self.pcm)
            return data


_FileKey = tuple[str, int, int]  # resolved path, mtime in ns, size
_files: OrderedDict[_FileKey, _Decoded] = OrderedDict()
_files_samples = 0
_files_guard = threading.Lock()  # protects _files, _files_samples and _path_locks
_path_locks: dict[str, threading.Lock] = {}


def clear_file_cache() -> None:
    """Forget every decoded file (objects that already loaded keep their audio)."""
    global _files_samples
    with _files_guard:
        _files.clear()
        _files_samples = 0


class PlayableMedia:
    """A WAV file or a text to speak, loaded lazily and once, played at 8 kHz.

    Exactly one of ``file_to_play`` (a name relative to the media directory) and
    ``text_to_say`` is given. The media directory is ``media_dir``, else
    ``channel.media_dir``, else the current directory (when the object is built). The voice
    is ``tts_voice``, else ``channel.tts_voice``, else espeak-ng's default. ``channel`` may be
    any object; only those two attributes are read, and only if present.

    Raises :class:`~uascall.errors.ArgumentError` unless exactly one of file and text is
    given (or either has the wrong type or is empty), :class:`~uascall.errors.Error` naming
    the file and the directory if the file name is absolute or leads out of the media
    directory. Missing, unreadable or unsupported files raise
    :class:`~uascall.errors.Error` when the media is first loaded.
    """

    def __init__(self, file_to_play: str | os.PathLike[str] | None = None,
                 text_to_say: str | None = None, channel: Any = None, *,
                 tts_voice: str | None = None,
                 media_dir: str | os.PathLike[str] | None = None) -> None:
        if (file_to_play is None) == (text_to_say is None):
            given = "both" if file_to_play is not None else "neither"
            raise ArgumentError(f"PlayableMedia got {given} of file_to_play and text_to_say;"
                                " expected exactly one")
        self._file: str | None = None
        self._text: str | None = None
        self._voice: str | None = None
        self._path: Path | None = None
        self._decoded: _Decoded | None = None
        self._lock = threading.Lock()
        if file_to_play is not None:
            name = os.fspath(file_to_play) if isinstance(file_to_play, str | os.PathLike) \
                else None
            if not isinstance(name, str):
                raise ArgumentError(f"file_to_play={file_to_play!r}; expected a file name")
            self._file = name
            if not self._file:
                raise ArgumentError("file_to_play is empty; expected a file name")
            if media_dir is None:
                media_dir = getattr(channel, "media_dir", None)
            self._dir = Path(media_dir if media_dir is not None else os.getcwd()).absolute()
            self._path = self._contained(strict=False)
        else:
            if not isinstance(text_to_say, str) or not text_to_say.strip():
                raise ArgumentError(f"text_to_say={text_to_say!r}; expected a non-empty str")
            self._text = text_to_say
            self._voice = tts_voice if tts_voice is not None \
                else getattr(channel, "tts_voice", None)

    # -- what it is --------------------------------------------------------------------------

    @property
    def file_to_play(self) -> str | None:
        return self._file

    @property
    def text_to_say(self) -> str | None:
        return self._text

    @property
    def path(self) -> Path | None:
        """The resolved path of the file (None for text)."""
        return self._path

    def __repr__(self) -> str:
        if self._file is not None:
            return f"PlayableMedia(file {self._file!r})"
        text = self._text or ""
        if len(text) > _REPR_TEXT:
            text = text[:_REPR_TEXT - 3].rstrip() + "..."
        voice = f", voice {self._voice!r}" if self._voice else ""
        return f"PlayableMedia(text {text!r}{voice})"

    # -- the audio ---------------------------------------------------------------------------

    def pcm(self) -> array.array:
        """The audio as a new ``array('h')`` of 8 kHz mono samples. Loads on first use.

        Raises :class:`~uascall.errors.Error` if the file cannot be loaded or the text
        cannot be spoken.
        """
        return array.array("h", self._load().pcm)

    @property
    def duration(self) -> float:
        """Seconds the media lasts. Loads (or renders) it on first use; raises as ``pcm``."""
        return len(self._load().pcm) / g711.SAMPLE_RATE

    def encoded(self, law: str) -> bytes:
        """The audio in G.711 ``law`` (``"alaw"``/``"ulaw"``), encoded once per law.

        Raises :class:`~uascall.errors.ArgumentError` for an unknown law, else as ``pcm``.
        """
        return self._load().encoded(_law(law))

    def source(self, law: str, *, loop: bool = False) -> BufferSource:
        """A new frame source playing the media in ``law``, once or looped seamlessly.
        Loads (or renders all of) it first; :meth:`open` does not wait for a text."""
        law = _law(law)
        return BufferSource(self.encoded(law), law, loop=loop)

    def open(self, *, first_audio_within: float | None = None,
             start_thread: tts.ThreadStarter | None = None) -> OpenMedia:
        """Get the media ready to play, without waiting for a whole text to be spoken.

        A file is loaded (as by :attr:`duration`). A text starts rendering (or joins the
        rendering under way) and this returns once its first words are rendered, or after
        ``first_audio_within`` seconds (None: no limit) without them; the sources of the
        :class:`OpenMedia` then play the speech as it is rendered (silence while it is
        late, never a word skipped). ``start_thread`` starts the render thread (see
        :func:`uascall.media.tts.speak`). Close the OpenMedia when its sources are made:
        a rendering nobody holds any more stops.

        Raises :class:`~uascall.errors.Error` as ``pcm`` does: a missing or bad file,
        espeak-ng missing, or espeak-ng failing before its first words (an unknown voice).
        """
        if self._text is None or self._decoded is not None:
            return OpenMedia(repr(self), decoded=self._load())
        speech = tts.speak(self._text, voice=self._voice, start_thread=start_thread)
        try:
            speech.wait_for_audio(first_audio_within)
        except BaseException:
            speech.close()
            raise
        if speech.complete and self._decoded is None:
            self._decoded = _from_speech(speech)
        return OpenMedia(repr(self), speech=speech)

    def _load(self) -> _Decoded:
        decoded = self._decoded
        if decoded is not None:
            return decoded
        with self._lock:
            if self._decoded is None:
                if self._text is not None:
                    with tts.speak(self._text, voice=self._voice) as speech:
                        speech.wait()
                        self._decoded = _from_speech(speech)
                else:
                    self._decoded = _load_file(self._contained(strict=True), self._describe())
            return self._decoded

    # -- the media directory -----------------------------------------------------------------

    def _describe(self) -> str:
        return f"{self._file!r} in media directory {str(self._dir)!r}"

    def _contained(self, *, strict: bool) -> Path:
        """The resolved file path, refused unless it lies inside the resolved media dir."""
        assert self._file is not None
        return media_path(self._dir, self._file, strict=strict)


class OpenMedia:
    """A :class:`PlayableMedia` made ready by :meth:`PlayableMedia.open`: it makes frame
    sources, each of which holds what it plays until the player closes it. Close this
    when done making them (or use it as a context manager); closing twice is harmless."""

    def __init__(self, label: str, *, decoded: _Decoded | None = None,
                 speech: tts.Speech | None = None) -> None:
        self.label = label
        self._decoded = decoded
        self._speech = speech

    def __enter__(self) -> OpenMedia:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def complete(self) -> bool:
        """Whether all of the audio is there (a file; a text spoken to its end)."""
        return self._speech is None or self._speech.complete

    def source(self, law: str, *, loop: bool = False) -> FrameSource:
        """A new source playing the media in ``law``, once or looped seamlessly. For a
        text still being spoken, a source that plays it as it comes."""
        law = _law(law)
        speech = self._speech
        if speech is None:
            assert self._decoded is not None
            return BufferSource(self._decoded.encoded(law), law, loop=loop)
        if speech.complete:
            return BufferSource(speech.encoded(law), law, loop=loop)
        return GrowingSource(speech.reopen(), law, loop=loop)

    def close(self) -> None:
        if self._speech is not None:
            self._speech.close()


def _from_speech(speech: tts.Speech) -> _Decoded:
    """A complete speech as loaded media: its samples and the encodings it already has."""
    return _Decoded(speech.pcm(), {law: speech.encoded(law) for law in tts.LAWS})


def media_path(directory: str | os.PathLike[str], name: str, *, strict: bool) -> Path:
    """``name`` resolved inside the media directory ``directory``, which it may not leave
    (by an absolute path, ``..`` or a symlink). ``strict``: it must exist. Raises Error
    naming both otherwise."""
    base = Path(directory).absolute()
    describe = f"{name!r} in media directory {str(base)!r}"
    if not isinstance(name, str) or not name:
        raise Error(f"media file {name!r}: expected a file name relative to the media "
                    f"directory {str(base)!r}")
    if os.path.isabs(name):
        raise Error(f"media file {name!r} is an absolute path; expected a name "
                    f"relative to the media directory {str(base)!r}")
    directory = base.resolve()
    try:
        path = (directory / name).resolve(strict=strict)
    except FileNotFoundError:
        raise Error(f"media file {describe} does not exist") from None
    except (OSError, RuntimeError, ValueError) as e:  # a symlink loop; a NUL in the name
        raise Error(f"media file {describe} cannot be resolved: {e}") from None
    if not path.is_relative_to(directory):
        raise Error(f"media file {describe} leads outside the media directory "
                    f"(to {str(path)!r}); expected a file inside it")
    return path


def _law(law: str) -> str:
    try:
        return g711.codec(law).name
    except ValueError as e:
        raise ArgumentError(str(e)) from None


def _load_file(path: Path, describe: str) -> _Decoded:
    global _files_samples
    try:
        st = path.stat()
    except OSError as e:
        raise Error(f"media file {describe}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise Error(f"media file {describe} is a directory; expected a WAV file")
    if not stat.S_ISREG(st.st_mode):
        raise Error(f"media file {describe} is not a regular file; expected a WAV file")
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _files_guard:
        lock = _path_locks.setdefault(key[0], threading.Lock())
    with lock:  # one decode per path at a time; the others wait and find it cached
        with _files_guard:
            decoded = _files.get(key)
            if decoded is not None:
                _files.move_to_end(key)
                log.debug("media file %s from cache", path)
                return decoded
        audio = read_wav(path)
        pcm = resample(audio.samples, audio.rate, g711.SAMPLE_RATE)
        log.debug("loaded %s: %s, %d channel(s), %d Hz, %.2f s", path, audio.encoding,
                  audio.channels, audio.rate, audio.duration)
        decoded = _Decoded(pcm)
        with _files_guard:
            for stale in [k for k in _files if k[0] == key[0]]:  # an older version
                _files_samples -= len(_files.pop(stale).pcm)
            _files[key] = decoded
            _files_samples += len(pcm)
            while _files_samples > FILE_CACHE_SAMPLES and len(_files) > 1:
                _, dropped = _files.popitem(last=False)
                _files_samples -= len(dropped.pcm)
        return decoded
