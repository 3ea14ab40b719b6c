"""bench/sip_cps.py's RTP part: what it leaves behind when a run is cut short.

Issue 15 saw ``engine rtp-bench stopped with fds still registered: [7, 8, ... 2008]
(their owners did not close them)`` after a run stopped by a time limit: the benchmark
closed its streams only when a stream count ran to its end.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
import types
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "sip_cps.py"


@pytest.fixture(scope="module")
def sip_cps() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("bench_sip_cps", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_an_interrupted_stream_count_closes_its_streams(sip_cps, monkeypatch, tmp_path,
                                                         caplog):
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:  # the measurement, after the warm-up: the streams are sending
            raise KeyboardInterrupt
        time.sleep(min(seconds, 0.2))

    monkeypatch.setattr(sip_cps, "time", types.SimpleNamespace(
        sleep=sleep, process_time=time.process_time, perf_counter=time.perf_counter))
    procs = sip_cps.Processes()
    caplog.set_level(logging.WARNING, logger="uascall.engine")
    with pytest.raises(KeyboardInterrupt):
        sip_cps.rtp_part([20], 5.0, procs, tmp_path, feed=True)
    assert sleeps == [1.0, 5.0]
    assert procs.running == []  # the sink was stopped
    left = [record.getMessage() for record in caplog.records if "still registered"
            in record.getMessage()]
    assert left == []
