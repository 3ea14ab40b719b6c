"""What FSK Caller ID reception costs on one core, per kind of input, and the generators.

The receiver is fed ``--seconds`` of audio in 20 ms frames (160 samples, as a channel
delivers them); the figure is the best of ``--repeat`` runs, in milliseconds of CPU per
second of audio. Inputs: digital silence, white noise at -30 dBm0, speech (espeak-ng, or
a harmonic stand-in if it is missing), back-to-back DTMF digits and Caller ID spills.
(The DTMF receiver has a benchmark of its own, beside spandsp's: bench/dtmf.py.)

    python bench/dsp.py [--seconds 20] [--repeat 3]

Last line: ``RESULT callerid_ms_per_s=<the slowest input's>``.
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import time
from collections.abc import Callable

from uascall.errors import Error
from uascall.media.callerid import CallerId, CallerIdReceiver, spill
from uascall.media.dtmf import DIGITS, dtmf_samples

RATE = 8000
FRAME = 160


def _repeat_to(samples: list[int], n: int) -> list[int]:
    out: list[int] = []
    while len(out) < n:
        out += samples
    return out[:n]


def inputs(seconds: float) -> dict[str, list[int]]:
    n = int(seconds * RATE)
    rng = random.Random(1)
    try:
        from uascall.media.tts import synthesize

        speech = list(synthesize(
            "This is a benchmark of the tone detectors. It speaks for a while, about the "
            "weather, the traffic and the news, so that the detectors have something to "
            "chew on that is not a tone at all. Nine, eight, seven, six, five, four."))
        speech_name = "speech"
    except Error:
        speech = [round(3000 * sum(math.sin(2 * math.pi * 140 * h * i / RATE) / h
                                   for h in range(1, 20))) for i in range(RATE)]
        speech_name = "harmonics (no espeak-ng)"
    cid = CallerId(number="0123456789", name="A N Other", month=1, day=2, hour=3, minute=4)
    return {
        "silence": [0] * n,
        "noise -30 dBm0": [round(rng.gauss(0, 507)) for _ in range(n)],
        speech_name: _repeat_to(speech, n),
        "DTMF 80/80 ms": _repeat_to(list(dtmf_samples(DIGITS)), n),
        "Caller ID spills": _repeat_to(list(spill(cid, "bell")) + [0] * 800, n),
    }


def run_frames(feed: Callable[[list[int]], object], samples: list[int]) -> float:
    """Seconds to feed ``samples`` frame by frame."""
    frames = [samples[i:i + FRAME] for i in range(0, len(samples) - FRAME + 1, FRAME)]
    start = time.perf_counter()
    for frame in frames:
        feed(frame)
    return time.perf_counter() - start


def best(make: Callable[[], Callable[[list[int]], object]], samples: list[int],
         repeat: int) -> float:
    return min(run_frames(make(), samples) for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"# {platform.machine()}, Python {platform.python_version()}, {args.seconds:g} s "
          f"of each input in {FRAME}-sample frames, best of {args.repeat}")
    signals = inputs(args.seconds)
    worst = 0.0
    print("FSK Caller ID receiver:")
    for std in ("bell", "etsi"):
        for name, samples in signals.items():
            seconds = best(lambda std=std: CallerIdReceiver(std).feed, samples, args.repeat)
            worst = max(worst, seconds / args.seconds * 1000)
            print(f"  {std:4} {name:24} {seconds / args.seconds * 1000:6.2f} ms per s of audio")
    start = time.perf_counter()
    dtmf_samples(DIGITS)
    gen = (time.perf_counter() - start) / len(DIGITS)
    start = time.perf_counter()
    spill(CallerId(number="0123456789", name="A N Other"), "etsi")
    fsk = time.perf_counter() - start
    print(f"generators: {gen * 1000:.2f} ms per DTMF digit (160 ms of audio), "
          f"{fsk * 1000:.1f} ms per Caller ID spill")
    print(f"RESULT callerid_ms_per_s={worst:.2f}")


if __name__ == "__main__":
    main()
