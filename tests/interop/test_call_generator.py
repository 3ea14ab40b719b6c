"""``uascall call`` against ``uascall run``: 1,000 SIP calls, two processes, as a user runs them.

The server is ``uascall run examples/early_media.py --backend sip`` (a spoken greeting
in early media, 0.5 s of ringback, the answer, goodbye.wav); the generator is ``uascall
call examples/dialler.py --backend sip --outbound`` the server, which beeps on each answer
and hangs up. Each call lasts about 3.5 s (the greeting is most of it), so the rate and
the concurrency limit below (30 calls/s, 120 at once: about 105 run at a time) carry the
1,000 calls in about 37 s here, both processes sharing the machine's two cores. The rate
stays under the 100 setups a source may hold before its first call completes (the
server's overload control): 30 a second for the ~3 s each takes to be answered is 90.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.interop import peers

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CALLS, RATE, CONCURRENT = 1000, 30, 120


def test_uascall_call_places_1000_calls_to_uascall_run(workdir: Path) -> None:
    port = peers.free_udp_port()
    server_records = workdir / "server.sqlite3"
    client_records = workdir / "client.sqlite3"
    serve = [sys.executable, "-m", "uascall", "run", str(ROOT / "examples/early_media.py"),
             "--backend", "sip", "--listen", f"127.0.0.1:{port}", "--param", "0.5",
             "--records", str(server_records)]
    call = [sys.executable, "-m", "uascall", "call", str(ROOT / "examples/dialler.py"),
            "--backend", "sip", "--outbound", f"127.0.0.1:{port}", "--to", "5551000",
            "--calls", str(CALLS), "--rate", str(RATE), "--concurrent", str(CONCURRENT),
            "--records", str(client_records), "--progress", "5"]
    with open(workdir / "server.log", "wb") as server_log:
        server = subprocess.Popen(serve, cwd=workdir, stdout=server_log,
                                  stderr=subprocess.STDOUT)
        try:
            peers.wait_bound(port, server, 10)
            generator = subprocess.run(call, cwd=workdir, capture_output=True, text=True,
                                       timeout=240)
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(30)
            finally:
                if server.poll() is None:
                    server.kill()
    report = f"{generator.stdout}\n{generator.stderr}"
    assert generator.returncode == 0, report
    out = generator.stdout
    assert f"{CALLS} of {CALLS} calls started" in out, report
    assert f"answered: {CALLS}, not answered: 0" in out, report
    lines = out.splitlines()
    causes = lines[lines.index("by cause:") + 1:lines.index("by return code:")]
    assert [line.split() for line in causes] == [["NORMAL", str(CALLS)]], report
    assert lines[lines.index("by return code:") + 1].split() == ["1", str(CALLS)], report
    peak = int(re.search(r"at most (\d+) at once", out).group(1))
    assert 0 < peak <= CONCURRENT, report
    # the setup time is the greeting and the ringback: about 3 s
    p50 = float(re.search(r"p50 ([0-9.]+) s", out).group(1))
    assert 2.0 < p50 < 6.0, report
    # progress went to stderr, a line at a time (not a terminal)
    assert "\r" not in generator.stderr and f"started {CALLS}/{CALLS}" in generator.stderr

    server_output = (workdir / "server.log").read_text()
    assert server.returncode == 0, server_output[-3000:]
    with sqlite3.connect(server_records) as db:
        served = db.execute("SELECT return_code, cause, COUNT(*) FROM calls "
                            "GROUP BY return_code, cause").fetchall()
    assert served == [(0, "NORMAL", CALLS)], server_output[-3000:]
    with sqlite3.connect(client_records) as db:
        placed = db.execute("SELECT direction, caller, called, return_code, cause, "
                            "COUNT(*) FROM calls GROUP BY 1, 2, 3, 4, 5").fetchall()
    assert [row[:2] + row[3:] for row in placed] == [
        ("outbound", "NA", 1, "NORMAL", CALLS)]
    assert placed[0][2].startswith("sip:5551000@127.0.0.1")
