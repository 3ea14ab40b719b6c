"""What ``uascall monitor`` and ``--metrics`` add to ``uascall channels``: counters, the
engine's lag, each call's digits and, where the device seam is tapped, its levels.

:class:`RunStats` watches a running host:

- calls ended, by cause and by backend and cause (the host's records, counted as they
  are made);
- the engine's lag: a probe every 100 ms of real time measures how late the engine ran
  it (histogram buckets in seconds, the last and the largest);
- the media clock's late ticks (a 20 ms tick run more than a frame late);
- each call's keys heard (``DigitReceived``) and what it plays now (``MediaStarted``);
- with ``levels``: each B-channel's audio level in and out (dBm0, over the last 200 ms)
  from the engine's ``audio`` tap (:mod:`uascall.trace.taps`), which only backends whose
  devices go through the tap report (the simulator's; see ``engine.taps.devices``).

Backends add their own counters in their status (``counters``: the SIP backend's 503s,
its streams' underruns...). Everything is read on the engine thread.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from uascall.channel import ChannelEvent, DigitReceived, MediaStarted, UASCallChannel
from uascall.media import g711
from uascall.status import Snapshot, snapshot

if TYPE_CHECKING:
    from uascall.app import AppHost, CallRecord
    from uascall.backend import Backend
    from uascall.engine import Engine

#: seconds between two lag probes (real time)
PROBE_INTERVAL = 0.1
#: upper bounds of the engine lag histogram's buckets, in seconds
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: keys kept per call, the latest
DIGITS_KEPT = 24
#: the level's window: frames of 20 ms
LEVEL_FRAMES = 10
#: a digital milliwatt's mean square in 16-bit linear samples (G.711's 0 dBm0 is +3.17 dB
#: below full scale: a sine of amplitude 22,768 or so)
DBM0_POWER = (32768 * 10 ** (-3.17 / 20)) ** 2 / 2


def level_dbm0(power: float) -> float | None:
    """Mean square of 16-bit samples → dBm0 (None for silence)."""
    if power <= 0:
        return None
    return round(10 * math.log10(power / DBM0_POWER), 1)


#: each G.711 code's sample squared, by law
_SQUARES = {law: [codec.decode_sample(code) ** 2 for code in range(256)]
            for law, codec in (("alaw", g711.ALAW), ("ulaw", g711.ULAW))}


class _Level:
    """The mean square over the last LEVEL_FRAMES blocks."""

    __slots__ = ("powers",)

    def __init__(self) -> None:
        self.powers: collections.deque[float] = collections.deque(maxlen=LEVEL_FRAMES)

    def add(self, data: bytes, law: str) -> None:
        squares = _SQUARES.get(law)
        if squares is not None:
            if data:
                self.powers.append(sum(map(squares.__getitem__, data)) / len(data))
            return
        samples = memoryview(data[: len(data) & ~1]).cast("h")  # s16le, a linear channel
        if len(samples):
            self.powers.append(sum(s * s for s in samples) / len(samples))

    def dbm0(self) -> float | None:
        return level_dbm0(sum(self.powers) / len(self.powers)) if self.powers else None


class RunStats:
    """The counters of one host (see the module docstring); :meth:`attach` on the
    engine thread before calls come, :meth:`snapshot` on the engine thread."""

    def __init__(self, engine: Engine, host: AppHost, backends: Sequence[Backend], *,
                 source: str = "", levels: bool = False) -> None:
        self.engine = engine
        self.host = host
        self.backends = list(backends)
        self.source = source
        self.levels_wanted = levels
        self.by_cause: collections.Counter[str] = collections.Counter()
        self.by_backend_cause: collections.Counter[tuple[str, str]] = collections.Counter()
        self.lag_buckets = [0] * (len(LAG_BUCKETS) + 1)
        self.lag_sum = 0.0
        self.lag_count = 0
        self.lag_last = 0.0
        self.lag_max = 0.0
        self._due = 0.0
        self._timer: Any = None
        self._digits: dict[str, str] = {}      # call_id -> keys heard
        self._playing: dict[str, str] = {}     # call_id -> what plays
        self._levels: dict[tuple[int, int, bool], _Level] = {}
        self._stopped = False

    # ------------------------------------------------------------------ hooks
    def attach(self) -> None:
        host = self.host
        earlier_record, earlier_channel = host.on_record, host.on_channel

        def on_record(record: CallRecord) -> None:
            self.by_cause[record.cause] += 1
            self.by_backend_cause[(self._backend_of(record.instance_id), record.cause)] += 1
            if earlier_record is not None:
                earlier_record(record)

        def on_channel(channel: UASCallChannel) -> None:
            channel.listeners.append(self._channel_event)
            if earlier_channel is not None:
                earlier_channel(channel)

        host.on_record, host.on_channel = on_record, on_channel
        if self.levels_wanted:
            self.engine.taps.listen("audio", self._audio)
        self._due = time.monotonic() + PROBE_INTERVAL
        self._timer = self.engine.call_later_real(PROBE_INTERVAL, self._probe)

    def _backend_of(self, instance_id: str) -> str:
        """The name of the backend that carried the instance's call (its instance is still
        running while its record is made)."""
        if len(self.backends) == 1:
            return self.backends[0].name
        for running_id, channel, _start in self.host.running_instances():
            if running_id == instance_id:
                leg = getattr(channel, "_leg", None)  # its last call
                for backend in self.backends:
                    if leg is not None and backend.owns(leg):
                        return backend.name
        return "unknown"

    def detach(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
        if self.levels_wanted:
            self.engine.taps.unlisten("audio", self._audio)

    def _channel_event(self, channel: UASCallChannel, event: ChannelEvent) -> None:
        call_id = channel.Details.call_id
        if isinstance(event, DigitReceived):
            self._digits[call_id] = (self._digits.get(call_id, "") + event.digit
                                     )[-DIGITS_KEPT:]
        elif isinstance(event, MediaStarted):
            self._playing[call_id] = event.what

    def _audio(self, at: float, stream: int, span: int, chanpos: int, sent: bool, law: str,
               data: bytes) -> None:
        level = self._levels.get((span, chanpos, sent))
        if level is None:
            level = self._levels[(span, chanpos, sent)] = _Level()
        level.add(data, law)

    def _probe(self) -> None:
        now = time.monotonic()
        lag = max(0.0, now - self._due)
        self.lag_last = lag
        self.lag_max = max(self.lag_max, lag)
        self.lag_sum += lag
        self.lag_count += 1
        for n, bound in enumerate(LAG_BUCKETS):
            if lag <= bound:
                self.lag_buckets[n] += 1
                break
        else:
            self.lag_buckets[-1] += 1
        if not self._stopped:
            self._due = now + PROBE_INTERVAL
            self._timer = self.engine.call_later_real(PROBE_INTERVAL, self._probe)

    # ------------------------------------------------------------------ reading
    def snapshot(self) -> Snapshot:
        """Engine thread: :func:`uascall.status.snapshot` with the counters, each call's
        digits and what it plays, and the channels' levels."""
        snap = snapshot(self.host, self.backends, self.source)
        for call in snap["calls"]:
            call["digits"] = self._digits.get(call["call_id"], "")
            call["playing"] = self._playing.get(call["call_id"], "")
        live = {call["call_id"] for call in snap["calls"]}
        for forgotten in [k for k in self._digits if k not in live]:
            del self._digits[forgotten]
        for forgotten in [k for k in self._playing if k not in live]:
            del self._playing[forgotten]
        calls_by_id = {call["call"]: call for call in snap["calls"]}
        for row in snap["channels"]:
            call = calls_by_id.get(row["call"])
            row["digits"] = call["digits"] if call else ""
            chanpos = row.get("chanpos")
            if chanpos is not None and row["span"] is not None:
                for sent, key in ((False, "level_in"), (True, "level_out")):
                    level = self._levels.get((row["span"], chanpos, sent))
                    row[key] = level.dbm0() if level is not None else None
        _, total, failures = self.host.result_totals()
        counters: dict[str, Any] = {
            "calls_total": total, "calls_failed": failures,
            "calls_up": self.host.running_count,
            "calls_by_cause": dict(self.by_cause),
            "late_ticks": self.host.media_clock.late_ticks,
            "engine_lag_last": round(self.lag_last, 4),
            "engine_lag_max": round(self.lag_max, 4),
            "engine_lag_buckets": [[bound, count] for bound, count in zip(
                [*LAG_BUCKETS, "+Inf"], self.lag_buckets, strict=True)],
            "engine_lag_sum": self.lag_sum, "engine_lag_count": self.lag_count,
        }
        for backend, extra in snap.pop("backend_counters", {}).items():
            counters[backend] = extra
        snap["counters"] = counters
        return snap
