"""What one 20 ms frame of each predefined tone costs to generate, per law.

A looped tone source is asked for ``--frames`` frames in a row; the figure is the mean
time per ``next_frame()``. At 50 frames a second per call, 20 µs a frame is 0.1 % of a
core per call.

    python bench/tone_frames.py [--frames 30000]

Last line: ``RESULT tone_frame_us=<the slowest tone's mean, in microseconds>``.
"""

from __future__ import annotations

import argparse
import platform
import time

from uascall.media.tones import ToneManager

LAWS = ("ulaw", "alaw")


def per_frame_us(name: str, law: str, frames: int) -> float:
    next_frame = ToneManager().get(name).source(law, loop=True).next_frame
    start = time.perf_counter()
    for _ in range(frames):
        next_frame()
    return (time.perf_counter() - start) / frames * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30000)
    args = parser.parse_args()
    print(f"# {platform.machine()}, Python {platform.python_version()}, "
          f"{args.frames} frames per tone and law")
    worst = 0.0
    for name in ToneManager().names():
        for law in LAWS:
            cost = per_frame_us(name, law, args.frames)
            worst = max(worst, cost)
            print(f"{name:14} {law}: {cost:6.2f} µs per frame")
    print(f"RESULT tone_frame_us={worst:.2f}")


if __name__ == "__main__":
    main()
