"""N simultaneous calls ringing with early media: underruns and CPU per channel.

For each N, the simulated exchange places N calls on looped E1 spans (30 B-channels per
span); every call is rung with early media (ALERTING with progress indicator #8) and a
looped ringback tone that our player writes frame by frame to its B-channel. Then, for
``--seconds`` of real time, we count **underruns**: 20 ms frames the simulated kernel
needed to send while the stream was flowing but that were not there yet. CPU is the
process's (our player and the engine, plus the simulated kernel moving the bytes; on real
boards the kernel's share runs in the kernel).

    python bench/early_media.py [--channels 240,480,720,960] [--seconds 10]
    python bench/early_media.py --channels 960 --trace off,signalling,audio

``--trace`` runs each N once per mode (``--repeat K``: K times, interleaved): ``off``,
``signalling`` (a ``--trace`` pcapng of the D-channels: our spans' devices go through the
tap, so every B-channel write pays for it too) and ``audio`` (``--trace-audio``: every
20 ms frame written to a B-channel is in the file as RTP as well). The file goes to a
temporary directory; the writer thread's CPU counts in the process's. ``--smoke``: 60
channels for 2 s in each mode.

Last line: ``RESULT early_media_channels=<largest N with zero underruns>``, and with
``--trace`` the extra CPU of tracing at the largest N, in % of the untraced run's CPU
(``trace_signalling_cpu_pct=... trace_audio_cpu_pct=...``; of the medians with
``--repeat``), from the runs without underruns only: a run the machine starved skipped
work and used less CPU.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path

from uascall.channel import UASCallChannel
from uascall.engine import Engine
from uascall.media.player import MediaClock
from uascall.media.tones import ToneManager
from uascall.sim.backend import SimBackend
from uascall.trace.tracer import Tracer

TRACE_MODES = ("off", "signalling", "audio")


def run(channels: int, seconds: float, trace: str = "off",
        trace_dir: Path | None = None) -> dict[str, float]:
    pairs = math.ceil(channels / 30)
    with Engine() as engine:
        tracer = None
        if trace != "off":
            assert trace_dir is not None
            tracer = Tracer(engine, str(trace_dir / f"early_media-{channels}-{trace}.pcapng"),
                            audio=trace == "audio").start()
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
        stats = tracer.stop() if tracer is not None else None
    return {
        "trace_records": stats.records if stats else 0,
        "trace_dropped": stats.dropped if stats else 0,
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
    parser.add_argument("--trace", default="off", help="comma list of off, signalling, "
                        "audio: each N is run in each mode (default off)")
    parser.add_argument("--repeat", type=int, default=1, metavar="K",
                        help="run the modes K times, interleaved; the RESULT compares "
                        "the median CPU of each (default %(default)s)")
    parser.add_argument("--smoke", action="store_true",
                        help="60 channels for 2 s, in every trace mode")
    args = parser.parse_args()
    if args.smoke:
        args.channels, args.seconds, args.trace = "60", 2.0, ",".join(TRACE_MODES)
    modes = list(dict.fromkeys(m.strip() for m in args.trace.split(",") if m.strip()))
    unknown = sorted(set(modes) - set(TRACE_MODES))
    if unknown or not modes:
        parser.error(f"--trace {args.trace}: expected a comma list of "
                     f"{', '.join(TRACE_MODES)}")
    logging.basicConfig(level=logging.WARNING)
    print(f"# {platform.machine()}, Python {platform.python_version()}, {args.seconds:g} s "
          "per setting, E1 spans, RINGBACK_EU looped")
    best = 0
    cpu: dict[tuple[int, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="uascall-bench-trace-") as folder:
        for n in (int(c) for c in args.channels.split(",")):
            for mode in modes * max(1, args.repeat):
                r = run(n, args.seconds, mode, Path(folder))
                if r["underruns"] == 0:  # a starved run did less work: not comparable
                    cpu.setdefault((n, mode), []).append(r["cpu_share"])
                traced = ("" if mode == "off" else f", trace {mode}: "
                          f"{r['trace_records']} packets, {r['trace_dropped']} dropped")
                print(f"{r['channels']:5d} channels: {r['underruns']:6d} underruns, "
                      f"{r['late_ticks']:4d} late ticks, CPU {100 * r['cpu_share']:5.1f} % of "
                      f"a core ({r['cpu_per_channel_us']:.1f} µs/s per channel), ring() "
                      f"{r['ring_ms_median']:.2f} ms median, {r['ring_ms_max']:.1f} ms max"
                      f"{traced}", flush=True)
                if mode == "off" and r["underruns"] == 0 and r["playing"] == n:
                    best = max(best, n)
                for path in Path(folder).iterdir():
                    path.unlink()  # a 960-channel audio trace is 20 MB a second
    result = f"RESULT early_media_channels={best}"
    largest = max((n for n, _mode in cpu), default=0)
    if (largest, "off") in cpu:
        for mode in [m for m in modes if m != "off" and (largest, m) in cpu]:
            extra = 100 * (statistics.median(cpu[(largest, mode)])
                           / statistics.median(cpu[(largest, "off")]) - 1)
            result += f" trace_{mode}_cpu_pct={extra:.1f}"
    print(result)


if __name__ == "__main__":
    main()
