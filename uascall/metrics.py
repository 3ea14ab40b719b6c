"""``--metrics HOST:PORT``: Prometheus text over HTTP (``GET /metrics``), with
prometheus-client's own server and exposition.

Each scrape reads :class:`~uascall.stats.RunStats` on the engine thread (through
:meth:`Engine.run`, from the HTTP server's thread) and gives:

- ``uascall_calls_total{backend, cause}``: calls ended (application instances recorded),
  by the backend that carried the call and the cause it ended with;
- ``uascall_calls_up``: application instances running now;
- ``uascall_setups_refused_total{backend}``: new calls refused for load (SIP: INVITEs
  answered 503);
- ``uascall_media_underruns{backend}``: frames sent as silence for want of audio, on the
  RTP streams up now (a gauge: a stream's count goes with it);
- ``uascall_late_ticks_total{clock}``: 20 ms ticks run more than a frame late: ``media``
  (the players), and each backend's own (``sip`` RTP, ``dahdi`` analog tones);
- ``uascall_engine_lag_seconds``: a histogram of how late the engine ran a probe set
  every 100 ms;
- ``uascall_span_alarm{backend, span, alarm}``: 1 for each alarm a span is in (RED,
  YELLOW, BLUE...), and ``uascall_span_in_alarm{backend, span}``: 0 or 1;
- ``uascall_dchannel_up{backend, span}``: 0 or 1.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from uascall.errors import UascallError

if TYPE_CHECKING:
    from uascall.stats import RunStats

log = logging.getLogger(__name__)

#: seconds a scrape waits for the engine
SCRAPE_TIMEOUT = 5.0


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (every interface) → (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UascallError(f"--metrics {text!r}; expected HOST:PORT, e.g. 127.0.0.1:9464")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class UascallCollector(Collector):
    """The metrics of one running host, read at each scrape."""

    def __init__(self, stats: RunStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        snap = self.stats.engine.run(self.stats.snapshot, timeout=SCRAPE_TIMEOUT)
        counters: dict[str, Any] = snap["counters"]
        calls = CounterMetricFamily("uascall_calls", "Calls ended, by backend and cause",
                                    labels=["backend", "cause"])
        for (backend, cause), count in sorted(self.stats.by_backend_cause.items()):
            calls.add_metric([backend, cause], count)
        yield calls
        yield GaugeMetricFamily("uascall_calls_up", "Application instances running",
                                value=counters["calls_up"])
        backends = {name: part for name, part in counters.items()
                    if isinstance(part, dict) and name != "calls_by_cause"}
        refused = CounterMetricFamily("uascall_setups_refused",
                                      "New calls refused for load (SIP: 503)",
                                      labels=["backend"])
        underruns = GaugeMetricFamily("uascall_media_underruns", "Frames sent as silence "
                                      "for want of audio, on the streams up now",
                                      labels=["backend"])
        late = CounterMetricFamily("uascall_late_ticks", "20 ms ticks run more than a "
                                   "frame late", labels=["clock"])
        late.add_metric(["media"], counters["late_ticks"])
        for name, part in sorted(backends.items()):
            if "setups_refused" in part:
                refused.add_metric([name], part["setups_refused"])
            if "media_underruns" in part:
                underruns.add_metric([name], part["media_underruns"])
            if "late_ticks" in part:
                late.add_metric([name], part["late_ticks"])
        yield refused
        yield underruns
        yield late
        buckets, total = [], 0
        for bound, count in counters["engine_lag_buckets"]:
            total += count
            buckets.append((str(bound) if bound != "+Inf" else "+Inf", total))
        yield HistogramMetricFamily("uascall_engine_lag_seconds", "How late the engine "
                                    "ran a probe set every 100 ms", buckets=buckets,
                                    sum_value=counters["engine_lag_sum"])
        alarm = GaugeMetricFamily("uascall_span_alarm", "1 for each alarm a span is in",
                                  labels=["backend", "span", "alarm"])
        in_alarm = GaugeMetricFamily("uascall_span_in_alarm", "Whether a span is in alarm",
                                     labels=["backend", "span"])
        dchannel = GaugeMetricFamily("uascall_dchannel_up", "Whether a span's D-channel "
                                     "(layer 2) is up", labels=["backend", "span"])
        for span in snap["spans"]:
            labels = [span["backend"], str(span["span"])]
            for name in span["alarms"]:
                alarm.add_metric([*labels, name], 1)
            in_alarm.add_metric(labels, 1 if span["alarms"] else 0)
            if span["dchannel"]:
                dchannel.add_metric(labels, 1 if span["dchannel"] == "up" else 0)
        yield alarm
        yield in_alarm
        yield dchannel


class MetricsServer:
    """prometheus-client's HTTP server on ``address`` (HOST:PORT) for ``stats``."""

    def __init__(self, address: str, stats: RunStats) -> None:
        self.host, self.port = parse_address(address)
        self.registry = CollectorRegistry()
        self.registry.register(UascallCollector(stats))
        self._server: Any = None

    def start(self) -> MetricsServer:
        try:
            self._server, _thread = start_http_server(self.port, self.host,
                                                      registry=self.registry)
        except OSError as exc:
            raise UascallError(f"--metrics {self.host}:{self.port}: cannot listen there: "
                               f"{exc.strerror or exc}") from None
        self.port = self._server.server_address[1]  # the kernel's choice for port 0
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
