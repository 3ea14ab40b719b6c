"""Text to speech with the ``espeak-ng`` command: streamed as it renders, and cached.

:func:`speak` returns a :class:`Speech` at once: its 8 kHz samples (and their G.711
encodings) grow while espeak-ng speaks, so the first words can be played a few
milliseconds later however long the text is (espeak-ng speaks an hour of text in about
3 s here; its 22,050 Hz output is brought to 8 kHz chunk by chunk by
:class:`~uascall.media.resample.Resampler`). :func:`synthesize` speaks and waits for the
whole.

Rendering runs on a thread of its own, never on the caller's (nor the engine's): it
writes the text to espeak-ng's standard input and reads its standard output and error
through one selector, so no pipe can fill up and stall the others. The text never goes
through a shell or into the arguments, so it is never taken as an option. Everyone who
asks for the same text while it renders shares that one rendering; when the last of them
closes its :class:`Speech` before the end, the rendering stops: espeak-ng is killed and
reaped, the pipes are closed and the thread ends.

A finished rendering is keyed by a SHA-256 of (text, voice, speed, ``espeak-ng
--version``) and kept twice: in memory for this process (the last :data:`MEMORY_ENTRIES`
renderings, at most :data:`MEMORY_SAMPLES` samples) and as an 8 kHz WAV file in the cache
directory, so a prompt is rendered once per machine, not once per call or per run:

* the ``cache_dir`` argument, else
* ``$UASCALL_CACHE/tts``, else
* ``$XDG_CACHE_HOME/uascall/tts``, else ``~/.cache/uascall/tts``.

A cache directory that cannot be created or written is logged and skipped (memory only).
Files are written under a temporary name and renamed, so processes sharing a cache never
see half a file.
"""

from __future__ import annotations

import array
import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import selectors
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from uascall.errors import ArgumentError, Error
from uascall.media import g711
from uascall.media.resample import Resampler
from uascall.media.wav import read_wav, write_wav

log = logging.getLogger(__name__)

#: the command run; looked up on PATH at each rendering
ESPEAK = "espeak-ng"
#: seconds espeak-ng may go without writing anything before the rendering fails
TIMEOUT = 60.0
#: renderings kept in memory, and the most samples they hold together (30 min of audio)
MEMORY_ENTRIES = 64
MEMORY_SAMPLES = 30 * 60 * g711.SAMPLE_RATE
#: espeak-ng's accepted speeds, in words per minute
SPEED_RANGE = (80, 450)
INSTALL_HINT = "text to speech needs espeak-ng: apt-get install espeak-ng"
LAWS = ("alaw", "ulaw")

#: a function that starts ``target`` on a new thread (``start_thread(target, name=...)``)
ThreadStarter = Callable[..., threading.Thread]

_CACHE_FORMAT = 1  # bump when what is stored for a key changes
_VOICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+.\-/]*")
_READ_SIZE = 65536
_STDERR_KEPT = 4096  # bytes of espeak-ng's messages kept for an error
_HEADER_MAX = 4096  # a WAV header longer than this is not espeak-ng's

_guard = threading.Lock()  # protects _memory, _memory_samples, _inflight and user counts
_memory: OrderedDict[str, _Rendering] = OrderedDict()
_memory_samples = 0
_inflight: dict[str, _Rendering] = {}


class _Stopped(Exception):
    """The rendering was stopped: everyone who wanted it has closed their Speech."""


@functools.cache
def _law_table(law: str) -> np.ndarray:
    """``law``'s encoding of every s16 value, indexed by value + 32768 (for numpy)."""
    return np.frombuffer(g711.codec(law).encode(array.array("h", range(-32768, 32768))),
                         dtype=np.uint8)


def _encode(samples: array.array, law: str) -> bytes:
    if not samples:
        return b""
    index = np.frombuffer(samples, dtype=np.int16).astype(np.int32) + 32768
    return _law_table(law)[index].tobytes()


class _Rendering:
    """One text's speech, being rendered or finished: what every Speech of it reads.

    The render thread appends audio and then publishes its new ``length``; readers look at
    ``length`` first and read below it, so they need no lock (a length is one attribute,
    set at once). Waiting for audio uses the condition.
    """

    def __init__(self, key: str, what: str, pcm: array.array | None = None) -> None:
        self.key = key
        self.what = what  # for messages: the text, shortened
        self.pcm = pcm if pcm is not None else array.array("h")
        self.encoded: dict[str, bytearray | bytes] = {
            law: _encode(self.pcm, law) if pcm is not None else bytearray() for law in LAWS}
        self.length = len(self.pcm)
        self.done = pcm is not None
        self.error: Error | None = None
        self.users = 0  # open Speech objects; under _guard
        self.thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._wake_r = self._wake_w = -1  # the pipe that stops the render thread

    # -- the render thread's side -----------------------------------------------------------

    def start(self, argv: list[str], text: str, directory: Path | None,
              start_thread: ThreadStarter) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)  # released on the engine thread: never block
        try:
            self.thread = start_thread(self._run, argv, text.encode("utf-8"), directory,
                                       name=f"uascall-tts-{self.key[:8]}")
        except BaseException as exc:
            self._close_wake()
            self._end(Error(f"cannot start rendering {self.what}: {exc}"))
            with _guard:
                if _inflight.get(self.key) is self:
                    del _inflight[self.key]
            raise self.error from exc  # type: ignore[misc]

    def _run(self, argv: list[str], text: bytes, directory: Path | None) -> None:
        started = time.monotonic()
        error: Error | None = None
        try:
            self._speak(argv, text)
        except _Stopped:
            log.debug("rendering %s stopped after %.2f s of speech: nobody listens",
                      self.what, self.length / g711.SAMPLE_RATE)
            error = Error(f"rendering {self.what} was stopped")
        except Error as exc:
            log.warning("text to speech failed for %s: %s", self.what, exc)
            error = exc
        except Exception as exc:  # a bug of ours: the readers must still be told
            log.exception("text to speech failed for %s", self.what)
            error = Error(f"text to speech failed for {self.what}: {exc!r}")
        finally:
            self._close_wake()
        if error is None:
            log.info("espeak-ng rendered %s (%.2f s of speech) in %.2f s", self.what,
                     self.length / g711.SAMPLE_RATE, time.monotonic() - started)
            if directory is not None:  # before it is complete: then it is cached
                _store_cached(directory, self.key, self.pcm)
        self._end(error)
        with _guard:
            if _inflight.get(self.key) is self:
                del _inflight[self.key]
                if error is None:
                    _remember(self)

    def _speak(self, argv: list[str], text: bytes) -> None:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise Error(INSTALL_HINT) from None
        except OSError as e:
            raise Error(f"cannot run {argv[0]}: {e.strerror or e}") from e
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        messages = bytearray()
        audio = _SpeechStream(self)
        try:
            with selectors.DefaultSelector() as selector:
                os.set_blocking(proc.stdin.fileno(), False)
                selector.register(proc.stdin, selectors.EVENT_WRITE, "text")
                selector.register(proc.stdout, selectors.EVENT_READ, "audio")
                selector.register(proc.stderr, selectors.EVENT_READ, "messages")
                selector.register(self._wake_r, selectors.EVENT_READ, "stop")
                pending = memoryview(text)
                outputs = 2
                while outputs:
                    ready = selector.select(TIMEOUT)
                    if not ready:
                        raise Error(f"espeak-ng wrote nothing for {TIMEOUT:g} s")
                    for key, _ in ready:
                        if key.data == "stop":
                            raise _Stopped
                        if key.data == "text":
                            try:
                                pending = pending[os.write(key.fd, pending[:_READ_SIZE]):]
                            except BrokenPipeError:  # it exited: its status says why
                                pending = pending[:0]
                            if not pending:
                                selector.unregister(proc.stdin)
                                proc.stdin.close()
                            continue
                        data = os.read(key.fd, _READ_SIZE)
                        if not data:
                            selector.unregister(key.fileobj)
                            outputs -= 1
                        elif key.data == "audio":
                            audio.feed(data)
                        elif len(messages) < _STDERR_KEPT:
                            messages += data
            status = proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            raise Error(f"espeak-ng did not exit {TIMEOUT:g} s after its output ended"
                        ) from None
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()  # reaped: no zombie
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                pipe.close()
        said = messages.decode("utf-8", "replace").strip() or "no message"
        if status != 0:
            raise Error(f"espeak-ng failed (exit status {status}): {said}")
        audio.end(said)

    def append(self, chunk: array.array) -> None:
        """Render thread: publish ``chunk`` (8 kHz samples) to the readers."""
        if not chunk:
            return
        self.pcm.extend(chunk)
        for law in LAWS:
            self.encoded[law] += _encode(chunk, law)  # type: ignore[operator]
        with self._cond:
            self.length = len(self.pcm)
            self._cond.notify_all()

    def _end(self, error: Error | None = None) -> None:
        if error is None:
            for law in LAWS:  # finished: immutable from now on, and shared as it is
                self.encoded[law] = bytes(self.encoded[law])
        with self._cond:
            self.error = error
            self.done = True
            self._cond.notify_all()

    def _close_wake(self) -> None:
        with _guard:
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._wake_r = self._wake_w = -1

    # -- the readers' side ------------------------------------------------------------------

    def wait(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: ready() or self.done, timeout)

    def release(self) -> None:
        """A Speech of this rendering closed; the last one stops an unfinished rendering."""
        with _guard:
            self.users -= 1
            if self.users or self.done:
                return
            if _inflight.get(self.key) is self:
                del _inflight[self.key]  # a later speak() starts afresh
            if self._wake_w >= 0:
                with contextlib.suppress(BlockingIOError):  # woken already
                    os.write(self._wake_w, b"x")


class _SpeechStream:
    """Render thread: espeak-ng's WAV output as it arrives (its header's sizes are
    placeholders when it writes to a pipe), resampled to 8 kHz and appended."""

    def __init__(self, rendering: _Rendering) -> None:
        self._rendering = rendering
        self._buffer = bytearray()  # the header until it is read, then an odd byte
        self._resampler: Resampler | None = None

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if self._resampler is None:
            rate, offset = self._header()
            if rate == 0:
                return
            self._resampler = Resampler(rate, g711.SAMPLE_RATE)
            del self._buffer[:offset]
        whole = len(self._buffer) & ~1
        if whole:
            pcm = np.frombuffer(bytes(self._buffer[:whole]), dtype="<i2")
            del self._buffer[:whole]
            self._rendering.append(self._resampler.process(pcm))

    def end(self, messages: str) -> None:
        if self._resampler is None:
            raise Error(f"espeak-ng wrote no audio: {messages}")
        self._rendering.append(self._resampler.process(np.zeros(0, dtype=np.int16),
                                                       last=True))

    def _header(self) -> tuple[int, int]:
        """(rate, offset of the audio) once the header up to the data chunk is in;
        (0, 0) while more is needed. Raises Error unless it is 16-bit mono PCM."""
        buf = self._buffer
        if len(buf) < 12:
            return 0, 0
        riff, _, wave = struct.unpack_from("<4sI4s", buf)
        if riff != b"RIFF" or wave != b"WAVE":
            raise Error(f"espeak-ng wrote {bytes(buf[:12])!r}; expected a RIFF/WAVE header")
        pos, rate = 12, 0
        while len(buf) >= pos + 8:
            chunk, size = struct.unpack_from("<4sI", buf, pos)
            if chunk == b"data":
                if not rate:
                    raise Error("espeak-ng's audio has no format chunk before its data")
                return rate, pos + 8
            if pos + 8 + size > _HEADER_MAX:
                raise Error(f"espeak-ng's WAV header has a {size}-byte {chunk!r} chunk; "
                            "expected a short header")
            if len(buf) < pos + 8 + size:
                break
            if chunk == b"fmt ":
                tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", buf, pos + 8)
                if (tag, channels, bits) != (1, 1, 16) or not rate:
                    raise Error(f"espeak-ng wrote format {tag}, {channels} channel(s), "
                                f"{bits} bits at {rate} Hz; expected 16-bit mono PCM")
            pos += 8 + size + (size & 1)
        return 0, 0


class Speech:
    """One reader's hold on a rendering of text (from :func:`speak`): 8 kHz samples and
    their G.711 encodings as far as espeak-ng has spoken, growing until :attr:`complete`.

    Reads are safe from any thread while the rendering goes on. :meth:`close` (or leaving
    a ``with`` block) lets the rendering go: the last reader to close an unfinished one
    stops it. Closing twice is harmless.
    """

    def __init__(self, rendering: _Rendering) -> None:
        self._rendering = rendering  # its user count was raised under _guard
        self._open = True

    def __repr__(self) -> str:
        state = ("failed" if self.error else "complete") if self._rendering.done \
            else "rendering"
        return f"<Speech {self._rendering.what} {state}, {self.available} samples>"

    def __enter__(self) -> Speech:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._open:
            self._open = False
            self._rendering.release()

    def reopen(self) -> Speech:
        """Another hold on the same rendering (for another reader), open until closed."""
        return _hold(self._rendering)

    @property
    def available(self) -> int:
        """Samples rendered so far."""
        return self._rendering.length

    @property
    def complete(self) -> bool:
        """Whether all of the text is rendered (and :attr:`available` is final)."""
        return self._rendering.done and self._rendering.error is None

    @property
    def error(self) -> Error | None:
        """Why the rendering failed, or None."""
        return self._rendering.error

    def pcm(self, start: int = 0, stop: int | None = None) -> array.array:
        """A copy of the samples from ``start`` to ``stop`` (at most what is rendered)."""
        length = self._rendering.length
        return self._rendering.pcm[start:length if stop is None else min(stop, length)]

    def encoded(self, law: str, start: int = 0, stop: int | None = None) -> bytes:
        """``law`` ("alaw"/"ulaw") bytes from ``start`` to ``stop``, as for :meth:`pcm`."""
        length = self._rendering.length
        data = self._rendering.encoded[law]
        end = length if stop is None else min(stop, length)
        if isinstance(data, bytes) and start == 0 and end == len(data):
            return data  # finished: the shared bytes, not a copy
        return bytes(data[start:end])

    def wait_for_audio(self, timeout: float | None) -> bool:
        """Block until some audio is rendered (or all of it), for at most ``timeout``
        seconds of real time; False if none came in time. Raises the rendering's
        :class:`~uascall.errors.Error` if it failed."""
        rendering = self._rendering
        rendering.wait(lambda: rendering.length > 0, timeout)
        self._raise()
        return rendering.length > 0 or rendering.done

    def wait(self, timeout: float | None = None) -> array.array:
        """Block until all of it is rendered; a new ``array('h')`` of the samples. Raises
        the rendering's Error if it failed, TimeoutError after ``timeout`` s."""
        if not self._rendering.wait(lambda: False, timeout):
            raise TimeoutError(f"{self._rendering.what} not rendered within {timeout} s")
        self._raise()
        return array.array("h", self._rendering.pcm)

    def _raise(self) -> None:
        if self._rendering.error is not None:
            raise Error(str(self._rendering.error))


def speak(text: str, *, voice: str | None = None, speed: int | None = None,
          cache_dir: str | os.PathLike[str] | None = None,
          start_thread: ThreadStarter | None = None) -> Speech:
    """Start speaking ``text`` (or find it spoken or being spoken) and return a
    :class:`Speech` at once; close it when done with it.

    ``voice`` is an espeak-ng voice name (``"en-us"``, ``"de"``, ``"en+f3"``; default: its
    default voice), ``speed`` words per minute (80-450; default 175). ``start_thread``
    starts the render thread (``start_thread(target, *args, name=...)``; an engine's
    ``start_actor_thread``, so that virtual time waits for the speech; default: a daemon
    thread).

    Raises :class:`~uascall.errors.ArgumentError` for empty text or a bad voice or speed,
    :class:`~uascall.errors.Error` if espeak-ng is not installed. Errors of espeak-ng
    itself (an unknown voice, a crash) come from the Speech's waits, with its message.
    """
    if not isinstance(text, str) or not text.strip():
        raise ArgumentError(f"text to speak is {text!r}; expected a non-empty str")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from a bad decode upstream
        raise ArgumentError(f"text to speak has {text[exc.start:exc.end]!r} at {exc.start}, "
                            "which is not a character; expected text that encodes as "
                            "UTF-8") from None
    if voice is not None and not (isinstance(voice, str) and _VOICE.fullmatch(voice)):
        raise ArgumentError(f"voice={voice!r}; expected an espeak-ng voice name such as "
                            "'en-us' (letters, digits, '-', '_', '+', '.', '/')")
    if speed is not None and (not isinstance(speed, int) or isinstance(speed, bool)
                              or not SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]):
        raise ArgumentError(f"speed={speed!r}; expected words per minute from "
                            f"{SPEED_RANGE[0]} to {SPEED_RANGE[1]}")
    exe = shutil.which(ESPEAK)
    if exe is None:
        raise Error(INSTALL_HINT)
    key = _key(text, voice, speed, _espeak_version(exe))
    with _guard:
        found = _found(key)
        if found is not None:
            return _hold(found, guarded=True)
    directory = cache_directory(cache_dir)
    cached = _load_cached(directory, key) if directory else None  # file I/O: unguarded
    with _guard:
        rendering = _found(key)
        fresh = rendering is None and cached is None
        if rendering is None:
            rendering = _Rendering(key, _describe(text), cached)
            if fresh:
                _inflight[key] = rendering
            else:
                _remember(rendering)
        speech = _hold(rendering, guarded=True)
    if not fresh:
        return speech
    argv = [exe, "-b", "1", "--stdout"]  # -b 1: the text is UTF-8
    if voice is not None:
        argv += ["-v", voice]
    if speed is not None:
        argv += ["-s", str(speed)]
    argv.append("--stdin")  # the text on stdin: never parsed as options
    try:
        rendering.start(argv, text, directory, start_thread or _daemon_thread)
    except BaseException:
        speech.close()
        raise
    return speech


def synthesize(text: str, *, voice: str | None = None, speed: int | None = None,
               cache_dir: str | os.PathLike[str] | None = None) -> array.array:
    """Speak ``text`` and wait for all of it: a new ``array('h')`` of 8 kHz mono samples.

    Arguments as for :func:`speak`. Renders at most once per key (see the module
    docstring), also when several threads ask at the same time.

    Raises :class:`~uascall.errors.ArgumentError` for empty text or a bad voice or speed,
    :class:`~uascall.errors.Error` if espeak-ng is not installed or fails (with its
    message, e.g. for an unknown voice).
    """
    with speak(text, voice=voice, speed=speed, cache_dir=cache_dir) as speech:
        return speech.wait()


def cache_directory(cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Where renderings are stored (see the module docstring); None if there is no home."""
    if cache_dir is not None:
        return Path(cache_dir)
    root = os.environ.get("UASCALL_CACHE")
    if root:
        return Path(root) / "tts"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "uascall" / "tts"
    try:
        return Path.home() / ".cache" / "uascall" / "tts"
    except RuntimeError:  # no HOME and no passwd entry
        log.warning("no home directory; text to speech is cached in memory only")
        return None


def clear_memory_cache() -> None:
    """Forget the renderings kept in memory (the cache directory is left alone)."""
    global _memory_samples
    with _guard:
        _memory.clear()
        _memory_samples = 0


def _daemon_thread(target: Callable[..., None], *args: object, name: str) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread


def _describe(text: str) -> str:
    return repr(text) if len(text) <= 40 else f"{text[:37].rstrip()!r}... ({len(text)} " \
        "characters)"


def _found(key: str) -> _Rendering | None:
    """Under _guard: a finished rendering of ``key`` in memory, or one under way."""
    rendering = _memory.get(key)
    if rendering is not None:
        _memory.move_to_end(key)
        return rendering
    return _inflight.get(key)


def _hold(rendering: _Rendering, *, guarded: bool = False) -> Speech:
    if guarded:
        rendering.users += 1
    else:
        with _guard:
            rendering.users += 1
    return Speech(rendering)


def _remember(rendering: _Rendering) -> None:
    """Under _guard: keep a finished rendering in memory, dropping the oldest beyond the
    bounds."""
    global _memory_samples
    old = _memory.pop(rendering.key, None)
    if old is not None:
        _memory_samples -= old.length
    _memory[rendering.key] = rendering
    _memory_samples += rendering.length
    while len(_memory) > 1 and (len(_memory) > MEMORY_ENTRIES
                                or _memory_samples > MEMORY_SAMPLES):
        _, dropped = _memory.popitem(last=False)
        _memory_samples -= dropped.length


def _key(text: str, voice: str | None, speed: int | None, version: str) -> str:
    blob = json.dumps([_CACHE_FORMAT, text, voice, speed, version], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=8)
def _espeak_version(exe: str) -> str:
    """The first line of ``espeak-ng --version``: part of every cache key."""
    try:
        proc = subprocess.run([exe, "--version"], capture_output=True, timeout=TIMEOUT,
                              check=False)
    except FileNotFoundError:
        raise Error(INSTALL_HINT) from None
    except subprocess.TimeoutExpired:
        raise Error(f"espeak-ng --version did not finish in {TIMEOUT:g} s") from None
    except OSError as e:
        raise Error(f"cannot run {exe}: {e.strerror or e}") from e
    out = proc.stdout.decode("utf-8", "replace").strip()
    return out.splitlines()[0] if out else "unknown"


def _load_cached(directory: Path, key: str) -> array.array | None:
    path = directory / f"{key}.wav"
    if not path.is_file():
        return None
    try:
        audio = read_wav(path)
    except Error as e:
        log.warning("ignoring a bad cached rendering: %s", e)
        return None
    if audio.rate != g711.SAMPLE_RATE:
        log.warning("ignoring cached rendering %s: %d Hz, expected %d", path, audio.rate,
                    g711.SAMPLE_RATE)
        return None
    log.debug("speech from cache %s", path)
    return audio.samples


def _store_cached(directory: Path, key: str, samples: array.array) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                write_wav(f, samples, g711.SAMPLE_RATE)
            os.replace(tmp, directory / f"{key}.wav")
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        log.warning("cannot cache speech in %s: %s; keeping it in memory only", directory,
                    e.strerror or e)
