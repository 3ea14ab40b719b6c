"""N simultaneous calls ringing with early media: underruns and CPU per channel.

For each N, the simulated exchange places N calls on looped E1 spans (30 B-channels per
span); every call is rung with early media (ALERTING with progress indicator #8) and a
looped ringback tone that our player writes frame by frame to its B-channel. Then, for
``--seconds`` of real time, we count **underruns**: 20 ms frames the simulated kernel
needed to send while the stream was flowing but that were not there yet. CPU is the
process's (our player and the engine, plus the simulated kernel moving the bytes; on real
boards the kernel's share runs in the kernel).

    python bench/early_media.py [--channels 240,480,720,960] [--seconds 10]

Last line: ``RESULT early_media_channels=<largest N with zero underruns>``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import platform
import statistics
import time

from uascall.channel import UASCallChannel
from uascall.engine import Engine
from uascall.media.player import MediaClock
from uascall.media.tones import ToneManager
from uascall.sim.backend import SimBackend


def run(channels: int, seconds: float) -> dict[str, float]:
    pairs = math.ceil(channels / 30)
    with Engine() as engine:
        backend = SimBackend(engine, kind="E1", pairs=pairs, record=False)
        clock = MediaClock(engine)
        tones = ToneManager()
        ours: list[UASCallChannel] = []

        def on_incoming(leg):
            channel = UASCallChannel(engine, leg, media_clock=clock)
            channel.create_tone_player(tones)
            ours.append(channel)

        backend.on_incoming = on_incoming
        engine.run(backend.start)
        if not engine.wait_until(lambda: backend.up, 30):
            raise SystemExit("the simulated D-channels did not come up")
        far = []
        for n in range(channels):
            far.append(engine.run(backend.far_end.dial, f"555{n:04d}", span=n // 30))
        if not engine.wait_until(lambda: len(ours) == channels, 60):
            raise SystemExit(f"only {len(ours)} of {channels} calls arrived")
        latencies = []
        for channel in ours:
            t0 = time.perf_counter()
            channel.ring(0, negotiate_early_media=True, custom_ringtone="RINGBACK_EU",
                         loop_ringtone=True)
            latencies.append(time.perf_counter() - t0)
        kernel = backend.loop.kernel
        numbers = [channel._leg.call.channo for channel in ours]
        before = sum(kernel.stats(n).tx_underruns for n in numbers)
        late_before = clock.late_ticks
        gc.freeze()  # what a long-running server does after start-up: no pauses for old objects
        cpu0, t0 = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        underruns = sum(kernel.stats(n).tx_underruns for n in numbers) - before
        late = clock.late_ticks - late_before
        playing = clock.active
        for channel in ours:
            channel.hang_up()
    return {
        "channels": channels, "playing": playing, "underruns": underruns,
        "late_ticks": late, "cpu_share": cpu / wall,
        "cpu_per_channel_us": 1e6 * cpu / wall / channels,
        "ring_ms_median": 1e3 * statistics.median(latencies),
        "ring_ms_max": 1e3 * max(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", default="240,480,720,960")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"# {platform.machine()}, Python {platform.python_version()}, {args.seconds:g} s "
          "per setting, E1 spans, RINGBACK_EU looped")
    best = 0
    for n in (int(c) for c in args.channels.split(",")):
        r = run(n, args.seconds)
        print(f"{r['channels']:5d} channels: {r['underruns']:6d} underruns, "
              f"{r['late_ticks']:4d} late ticks, CPU {100 * r['cpu_share']:5.1f} % of a core "
              f"({r['cpu_per_channel_us']:.1f} µs/s per channel), ring() "
              f"{r['ring_ms_median']:.2f} ms median, {r['ring_ms_max']:.1f} ms max")
        if r["underruns"] == 0 and r["playing"] == n:
            best = max(best, n)
    print(f"RESULT early_media_channels={best}")


if __name__ == "__main__":
    main()
