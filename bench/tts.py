"""A long text to say as a ringtone: how soon the ringing is signalled, how fast speech is
rendered, and the resampler beside the pure-Python one it replaced (issue 12, 9).

Three figures, each on a text no cache holds (a private cache directory):

* **signal**: on the simulator's E1 loop in real time, an application thread calls
  ``ring(None, negotiate_early_media=True, custom_ringtone=<the text>)``; the time from
  that call to the ringing indication (the channel entering RING_INCOMING, on the engine
  thread, as ALERTING goes out) is measured, then the caller hangs up. Before, ring()
  rendered the whole text first;
* **render**: ``tts.synthesize`` of the same text (espeak-ng, resampled to 8 kHz as it
  comes): wall time against the seconds of speech;
* **resample**: 20 s of espeak-ng's 22,050 Hz speech to 8 kHz with
  :func:`uascall.media.resample.resample` (libsoxr, best of 5) and with the pure-Python
  polyphase filter of ``bench/pure_resample.py`` (once).

    python bench/tts.py [--sentences 110] [--smoke]

110 sentences are about ten minutes of speech; ``--smoke`` uses 15 and 2 s of audio.

Last line: ``RESULT tts_signal_ms=<ring() to the signal> tts_render_s=<render time>
tts_speech_s=<its speech> resample_20s_ms=<soxr> pure_resample_20s_ms=<pure Python>``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pure_resample  # beside this file

from uascall import PlayableMedia
from uascall.channel import State, StateChanged, UASCallChannel
from uascall.engine import Engine
from uascall.media import tts
from uascall.media.player import MediaClock
from uascall.media.resample import resample
from uascall.sim.backend import SimBackend


def text(sentences: int, tag: str) -> str:
    return " ".join(f"Thank you for calling {tag}. Your call is number {n} in the queue, "
                    "please hold." for n in range(sentences))


def time_to_signal(words: str) -> float:
    """Seconds from ring() to the ringing indication, on the simulator in real time."""
    with Engine() as engine:
        backend = SimBackend(engine, kind="E1", record=False)
        clock = MediaClock(engine)
        channels: list[UASCallChannel] = []
        backend.on_incoming = lambda leg: channels.append(
            UASCallChannel(engine, leg, media_clock=clock))
        engine.run(backend.start)
        if not engine.wait_until(lambda: backend.up, 10):
            raise SystemExit("the simulated E1 loop did not come up")
        far = engine.run(backend.far_end.dial, "5551000")
        if not engine.wait_until(lambda: channels, 10):
            raise SystemExit("no incoming call")
        channel = channels[0]
        signalled: list[float] = []
        channel.listeners.append(lambda _c, event: signalled.append(time.perf_counter())
                                 if isinstance(event, StateChanged)
                                 and event.state is State.RING_INCOMING else None)
        greeting = PlayableMedia(text_to_say=words, channel=channel)
        started = time.perf_counter()
        ringing = threading.Thread(target=channel.ring, args=(None, True, greeting))
        ringing.start()
        deadline = started + 120
        while not signalled and time.perf_counter() < deadline:
            time.sleep(0.001)
        engine.run(far.hangup)
        ringing.join(30)
        engine.run(backend.stop)
        if not signalled:
            raise SystemExit("ring() signalled nothing within 120 s")
        return signalled[0] - started


def espeak_speech(seconds: float) -> np.ndarray:
    """``seconds`` of espeak-ng's own 22,050 Hz output (read straight from it)."""
    words = text(max(1, round(seconds / 4)) + 2, "the resampler")
    out = subprocess.run(["espeak-ng", "-b", "1", "--stdout", "--stdin"],
                         input=words.encode(), capture_output=True, check=True).stdout
    pcm = np.frombuffer(out[44:len(out) & ~1], dtype="<i2")
    return pcm[:round(seconds * 22050)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=110)
    parser.add_argument("--smoke", action="store_true", help="seconds, not minutes")
    args = parser.parse_args()
    sentences = 15 if args.smoke else args.sentences
    audio_seconds = 2.0 if args.smoke else 20.0
    load = os.getloadavg()[0]
    version = tts._espeak_version(shutil.which("espeak-ng") or "espeak-ng")
    print(f"# {platform.machine()}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load {load:.2f}, {version}")
    with tempfile.TemporaryDirectory(prefix="uascall-bench-tts-") as cache:
        os.environ["UASCALL_CACHE"] = cache
        signal_s = time_to_signal(text(sentences, "the signal"))
        print(f"ring(None) with {sentences} sentences: signalled after "
              f"{signal_s * 1000:.1f} ms")
        tts.clear_memory_cache()
        words = text(sentences, "the rendering")
        started = time.perf_counter()
        speech = tts.synthesize(words)
        render_s = time.perf_counter() - started
        speech_s = len(speech) / 8000
        print(f"rendering {len(words)} characters: {speech_s:.1f} s of speech in "
              f"{render_s:.2f} s ({speech_s / render_s:.0f} times real time)")
    pcm = espeak_speech(audio_seconds)
    best = min(_timed(lambda: resample(pcm, 22050, 8000)) for _ in range(5))
    samples = pcm.tolist()
    pure = _timed(lambda: pure_resample.resample(samples, 22050, 8000))
    scale = 20.0 / audio_seconds  # figures per 20 s of audio
    print(f"resampling {audio_seconds:g} s of 22,050 Hz speech to 8 kHz: libsoxr "
          f"{best * 1000:.2f} ms, pure Python {pure * 1000:.0f} ms "
          f"({pure / best:.0f} times longer)")
    print(f"RESULT tts_signal_ms={signal_s * 1000:.1f} tts_render_s={render_s:.2f} "
          f"tts_speech_s={speech_s:.0f} resample_20s_ms={best * scale * 1000:.2f} "
          f"pure_resample_20s_ms={pure * scale * 1000:.0f}")


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
