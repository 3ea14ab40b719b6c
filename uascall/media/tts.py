"""Text to speech with the ``espeak-ng`` command, rendered once and cached.

:func:`synthesize` returns 8 kHz mono s16 samples. A rendering is keyed by a SHA-256 of
(text, voice, speed, ``espeak-ng --version``) and kept twice: in memory for this process
(the last :data:`MEMORY_ENTRIES` renderings) and as an 8 kHz WAV file in the cache
directory, so a prompt is rendered once per machine, not once per call or per run:

* the ``cache_dir`` argument, else
* ``$UASCALL_CACHE/tts``, else
* ``$XDG_CACHE_HOME/uascall/tts``, else ``~/.cache/uascall/tts``.

A cache directory that cannot be created or written is logged and skipped (memory only).
Files are written under a temporary name and renamed, so processes sharing a cache never
see half a file. The text goes to espeak-ng on its standard input, never through a shell
or as an argument, so no text is ever taken as an option.
"""

from __future__ import annotations

import array
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

from uascall.errors import ArgumentError, Error
from uascall.media import g711
from uascall.media.resample import resample
from uascall.media.wav import parse_wav, read_wav, write_wav

log = logging.getLogger(__name__)

#: the command run; looked up on PATH at each rendering
ESPEAK = "espeak-ng"
#: seconds one rendering may take
TIMEOUT = 60.0
#: renderings kept in memory
MEMORY_ENTRIES = 64
#: espeak-ng's accepted speeds, in words per minute
SPEED_RANGE = (80, 450)
INSTALL_HINT = "text to speech needs espeak-ng: apt-get install espeak-ng"

_CACHE_FORMAT = 1  # bump when what is stored for a key changes
_VOICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+.\-/]*")

_memory: OrderedDict[str, array.array] = OrderedDict()
_guard = threading.Lock()  # protects _memory and _inflight
_inflight: dict[str, threading.Lock] = {}


def synthesize(text: str, *, voice: str | None = None, speed: int | None = None,
               cache_dir: str | os.PathLike[str] | None = None) -> array.array:
    """Speak ``text``: a new ``array('h')`` of 8 kHz mono samples.

    ``voice`` is an espeak-ng voice name (``"en-us"``, ``"de"``, ``"en+f3"``; default: its
    default voice), ``speed`` words per minute (80-450; default 175). Renders at most once
    per key (see the module docstring), also when several threads ask at the same time.

    Raises :class:`~uascall.errors.ArgumentError` for empty text or a bad voice or speed,
    :class:`~uascall.errors.Error` if espeak-ng is not installed or fails (with its
    message, e.g. for an unknown voice).
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
        lock = _inflight.setdefault(key, threading.Lock())
    try:
        with lock:
            samples = _remembered(key)
            if samples is None:
                directory = cache_directory(cache_dir)
                samples = _load_cached(directory, key) if directory else None
                if samples is None:
                    samples = _render(exe, text, voice, speed)
                    if directory:
                        _store_cached(directory, key, samples)
                _remember(key, samples)
    finally:
        with _guard:
            if _inflight.get(key) is lock:
                del _inflight[key]
    return array.array("h", samples)


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
    with _guard:
        _memory.clear()


def _key(text: str, voice: str | None, speed: int | None, version: str) -> str:
    blob = json.dumps([_CACHE_FORMAT, text, voice, speed, version], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=8)
def _espeak_version(exe: str) -> str:
    """The first line of ``espeak-ng --version``: part of every cache key."""
    proc = _run([exe, "--version"], b"")
    return proc.stdout.decode("utf-8", "replace").strip().splitlines()[0] if proc.stdout \
        else "unknown"


def _run(argv: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=TIMEOUT,
                              check=False)
    except FileNotFoundError:
        raise Error(INSTALL_HINT) from None
    except subprocess.TimeoutExpired:
        raise Error(f"espeak-ng did not finish in {TIMEOUT:g} s") from None
    except OSError as e:
        raise Error(f"cannot run {argv[0]}: {e.strerror or e}") from e
    if proc.returncode != 0:
        raise Error(f"espeak-ng failed (exit status {proc.returncode}): {_stderr(proc)}")
    return proc


def _stderr(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stderr.decode("utf-8", "replace").strip() or "no message"


def _render(exe: str, text: str, voice: str | None, speed: int | None) -> array.array:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="uascall-tts-") as tmp:
        out = os.path.join(tmp, "speech.wav")
        argv = [exe, "-b", "1", "-w", out]  # -b 1: the text is UTF-8
        if voice is not None:
            argv += ["-v", voice]
        if speed is not None:
            argv += ["-s", str(speed)]
        argv.append("--stdin")  # text on stdin: never parsed as options
        proc = _run(argv, text.encode("utf-8"))
        try:
            with open(out, "rb") as f:
                data = f.read()
        except OSError:
            # espeak-ng exits 0 when it cannot write its output file
            raise Error(f"espeak-ng wrote no audio: {_stderr(proc)}") from None
    speech = parse_wav(data, "espeak-ng output")
    samples = resample(speech.samples, speech.rate, g711.SAMPLE_RATE)
    log.info("espeak-ng rendered %d characters (%.2f s of speech) in %.2f s", len(text),
             len(samples) / g711.SAMPLE_RATE, time.monotonic() - started)
    return samples


def _remembered(key: str) -> array.array | None:
    with _guard:
        samples = _memory.get(key)
        if samples is not None:
            _memory.move_to_end(key)
        return samples


def _remember(key: str, samples: array.array) -> None:
    with _guard:
        _memory[key] = samples
        _memory.move_to_end(key)
        while len(_memory) > MEMORY_ENTRIES:
            _memory.popitem(last=False)


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
