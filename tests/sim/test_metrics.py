"""`uascall run --metrics HOST:PORT`: Prometheus text scraped over HTTP while a sim run's
calls come and go, read back with prometheus-client's own parser."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from uascall.errors import UascallError
from uascall.metrics import parse_address

ROOT = Path(__file__).resolve().parents[2]

APP = """\
    __uas_identify__ = "application"

    def main(channel, application_instance_id, file_man, my_log, params):
        channel.ring(seconds_ringtime=1)
        channel.answer()
        channel.wait_for_idle(seconds_timeout=2)
        channel.hang_up()
        return 0
    """


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """name and sorted labels → value, of every sample."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_of_a_sim_run_beside_sip(tmp_path):
    app = tmp_path / "answers.py"
    app.write_text(textwrap.dedent(APP))
    port = free_port()
    # the second call comes 8 s after the first: the run is still up once the first ended
    run = subprocess.Popen([sys.executable, "-m", "uascall", "run", str(app), "--backend",
                            "sim,sip", "--listen", "127.0.0.1:0", "--calls", "2",
                            "--interval", "8", "--control", "none", "--metrics",
                            f"127.0.0.1:{port}"], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    during = after = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run.poll() is None:
            try:
                metrics = scrape(port)
            except OSError:
                time.sleep(0.2)
                continue
            if during is None and metrics[("uascall_calls_up", ())] == 1:
                during = metrics
            ended = metrics.get(("uascall_calls_total",
                                 (("backend", "sim"), ("cause", "NORMAL"))))
            if during is not None and ended == 1:
                after = metrics
                break
            time.sleep(0.2)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, err
    assert during is not None and after is not None
    span = (("backend", "sim"), ("span", "1"))
    for metrics in (during, after):
        assert metrics[("uascall_dchannel_up", span)] == 1
        assert metrics[("uascall_span_in_alarm", span)] == 0
        assert not [key for key in metrics if key[0] == "uascall_span_alarm"]
        assert metrics[("uascall_setups_refused_total", (("backend", "sip"),))] == 0
        assert metrics[("uascall_media_underruns", (("backend", "sip"),))] == 0
        assert ("uascall_late_ticks_total", (("clock", "media"),)) in metrics
        assert metrics[("uascall_engine_lag_seconds_bucket", (("le", "+Inf"),))] == \
            metrics[("uascall_engine_lag_seconds_count", ())]
    # a probe every 100 ms: the call was up a second or more
    assert after[("uascall_engine_lag_seconds_count", ())] >= 10
    assert ("uascall_calls_total", (("backend", "sim"), ("cause", "NORMAL"))) not in during
    assert after[("uascall_calls_up", ())] == 0


def test_a_metrics_address_is_host_and_port():
    assert parse_address("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_address("[::1]:9464") == ("::1", 9464)
    assert parse_address(":9464") == ("0.0.0.0", 9464)
    with pytest.raises(UascallError, match="expected HOST:PORT"):
        parse_address("9464x")


def test_a_port_in_use_is_refused_by_name(tmp_path, capsys):
    from uascall.cli import main
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["run", "examples/early_media.py", "--virtual", "--control", "none",
                     "--metrics", f"127.0.0.1:{port}"]) == 1
    assert f"--metrics 127.0.0.1:{port}: cannot listen there" in capsys.readouterr().err
