"""Run the interop peers (SIPp, baresip, tshark, sox) and return what they saw.

Plain helpers, no pytest: the interop tests, a benchmark script or a person at a shell
can use them alike. Every helper starts its tools with ``Popen`` in a working directory
of its own and kills them again on any way out (exception, timeout, Ctrl-C).

- :func:`run_sipp` runs one SIPp client scenario from ``scenarios/`` to the end and
  returns a :class:`SippResult` (calls ok/failed, retransmissions, the trace files, and
  a ``describe()`` for assertion messages).
- :class:`SippServer` keeps a SIPp server scenario (``uas_183.xml`` ...) running as a
  stand-in UAS.
- :func:`capture_rtp` records UDP on one port with tshark; :func:`rtp_stats` reads RTP
  streams out of the capture.
- :func:`run_baresip` dials a URI with the baresip softphone and records what it heard.
- :func:`tone_analysis` measures a WAV file: level, dominant frequency, on/off cadence.

The facts these rest on (SIPp's exit codes and file names, baresip's log lines, tshark's
start-up message) are in ``README.md`` next to this file.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import wave
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.audio import goertzel_power

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"

#: The external programs the interop tests need (Debian: sip-tester, baresip-core,
#: tshark, sox).
TOOLS = ("sipp", "baresip", "tshark", "sox")

LOCALHOST = "127.0.0.1"


class PeerError(RuntimeError):
    """A tool could not be started or did not come up."""


def missing_tools(names: Sequence[str] = TOOLS) -> list[str]:
    """The programs of ``names`` that are not on PATH."""
    return [name for name in names if shutil.which(name) is None]


# --------------------------------------------------------------------------- ports

_handed_out: set[int] = set()


def _udp_port_free(port: int, host: str = LOCALHOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_udp_port(host: str = LOCALHOST, *, span: int = 1, even: bool = False) -> int:
    """A UDP port on ``host`` that nothing is bound to, with ``span - 1`` free ports
    after it (SIPp's ``-rtp_echo`` uses the media port and media port + 2, so media
    ports want ``span=4, even=True``).

    A port is never handed out twice by one process, so two helpers that ask in a row
    get different ports even before either is bound. Ports come from the kernel's
    ephemeral range (bind to port 0); a race with an unrelated program remains possible
    but is rare on a test machine.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if even and port % 2:
            port += 1
        ports = range(port, port + span)
        if port + span > 65535 or any(p in _handed_out for p in ports):
            continue
        if all(_udp_port_free(p, host) for p in ports):
            _handed_out.update(ports)
            return port
    raise PeerError(f"no free UDP port (span {span}) found on {host}")


def free_media_port(host: str = LOCALHOST) -> int:
    """An even port P with P..P+3 free: RTP (and RTCP) plus SIPp's second echo port."""
    return free_udp_port(host, span=4, even=True)


def _udp_bound(port: int, host: str = LOCALHOST) -> bool:
    """Whether some socket is bound to UDP ``host:port``. Read from /proc/net/udp, so
    that looking does not itself occupy the port (a test bind could make a starting
    SIPp fail with "Unable to bind main socket")."""
    want = {f"{port:04X}"}
    addresses = {socket.inet_aton(host)[::-1].hex().upper(), "00000000"}
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:  # not Linux: fall back to a test bind
        return not _udp_port_free(port, host)
    for line in lines:
        local = line.split()[1]
        address, _, hexport = local.partition(":")
        if hexport in want and address in addresses:
            return True
    return False


def wait_bound(port: int, proc: subprocess.Popen, timeout: float, host: str = LOCALHOST
                ) -> None:
    """Wait until ``proc`` (or anything) has bound UDP ``host:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PeerError(f"{proc.args[0]} exited with {proc.returncode} before binding "
                            f"{host}:{port}")
        if _udp_bound(port, host):
            return
        time.sleep(0.02)
    raise PeerError(f"{proc.args[0]} did not bind {host}:{port} within {timeout} s")


# --------------------------------------------------------------------------- processes


def _stop(proc: subprocess.Popen | None, *signals: tuple[int, float]) -> None:
    """Stop ``proc``: send each (signal, grace seconds) in turn while it still runs,
    then SIGKILL. Only this one process is signalled, by its pid."""
    if proc is None or proc.poll() is not None:
        return
    for sig, grace in signals:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()


def _read(path: Path | None, limit: int | None = None) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace")
    return text if limit is None else text[-limit:]


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


# --------------------------------------------------------------------------- SIPp

#: What SIPp's exit code means (SIPp 3.6 manual, "Exit codes").
SIPP_EXIT_CODES: dict[int, str] = {
    0: "all calls were successful",
    1: "at least one call failed",
    97: "exit on an internal command (calls may have been processed)",
    99: "normal exit without any call processed",
    254: "fatal error binding a socket (-2)",
    255: "fatal error (-1): bad scenario, or -timeout reached with -timeout_error",
}

_GLOBALS = re.compile(r'<Global\s+variables="([^"]*)"')


def scenario_path(scenario: str | os.PathLike[str]) -> Path:
    """``scenario`` as a path: a file name in ``scenarios/`` or any existing path."""
    path = Path(scenario)
    if not path.is_absolute() and not path.exists():
        path = SCENARIOS / path
    if not path.exists():
        raise FileNotFoundError(f"SIPp scenario {scenario!s} (looked in {SCENARIOS})")
    return path.resolve()


def scenario_variables(scenario: str | os.PathLike[str]) -> list[str]:
    """The variables a scenario takes with ``-set`` (its ``<Global variables=...>``).

    SIPp does not insist on them; an unset one becomes an "Invalid double conversion"
    error in the log and a zero pause, so :func:`run_sipp` insists instead."""
    text = scenario_path(scenario).read_text(encoding="latin-1")
    names: list[str] = []
    for match in _GLOBALS.finditer(text):
        names += [n.strip() for n in match.group(1).split(",") if n.strip()]
    return names


@dataclass(frozen=True)
class SipTrace:
    """One line of SIPp's short message trace: a message sent (S) or received (R),
    retransmissions included."""

    time: float
    direction: str  # "S" or "R"
    call_id: str
    cseq: str  # "1 INVITE"
    first_line: str  # "SIP/2.0 200 OK", "ACK sip:... SIP/2.0"

    @property
    def method(self) -> str:
        """The CSeq method (for a response, that of the request it answers)."""
        return self.cseq.split()[-1] if self.cseq else ""

    @property
    def status(self) -> int | None:
        """The status code of a response, None for a request."""
        if self.first_line.startswith("SIP/2.0 "):
            return int(self.first_line.split()[1])
        return None


@dataclass
class SippResult:
    """What one SIPp run did. ``ok`` means every call passed (exit code 0)."""

    scenario: str
    command: list[str]
    returncode: int
    successful: int
    failed: int
    #: SIPp's own retransmissions (its "Retransmissions" statistic); the retransmissions
    #: it *received* are per message: :meth:`recv_retrans`.
    retransmissions: int
    duration_s: float
    workdir: Path
    stdout: str = ""
    stderr: str = ""
    #: The cumulative (C) statistics of the last -trace_stat row, "(C)" stripped.
    stats: dict[str, str] = field(default_factory=dict)
    #: The last row of -trace_counts: "<index>_<message>_<Sent|Recv|Retrans|...>" -> n.
    counts: dict[str, int] = field(default_factory=dict)
    error_log: Path | None = None
    stat_csv: Path | None = None
    counts_csv: Path | None = None
    screen_log: Path | None = None
    log_file: Path | None = None
    shortmsg_log: Path | None = None
    message_log: Path | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def exit_meaning(self) -> str:
        return SIPP_EXIT_CODES.get(self.returncode, "unknown exit code")

    @property
    def failure_counts(self) -> dict[str, int]:
        """The non-zero ``Failed...`` statistics (why calls failed)."""
        out = {}
        for key, value in self.stats.items():
            if key.startswith("Failed") and key != "FailedCall" and value.isdigit():
                if int(value):
                    out[key] = int(value)
        return out

    def errors(self) -> str:
        """The error log (unexpected messages, failed checks)."""
        return _read(self.error_log)

    def log_lines(self) -> list[str]:
        """The scenario's <log> lines (e.g. "<call-id> 183 ct=application/sdp pt=8 ...")."""
        return _read(self.log_file).splitlines()

    def screen(self) -> str:
        """The final statistics screens (-trace_screen)."""
        return _read(self.screen_log)

    def messages(self) -> list[SipTrace]:
        """Every message sent and received, in order, retransmissions included."""
        out = []
        for line in _read(self.shortmsg_log).splitlines():
            parts = line.split("\t")
            if len(parts) < 6:
                continue
            epoch, direction, call_id, cseq, first = parts[-5:]
            with contextlib.suppress(ValueError):
                out.append(SipTrace(float(epoch), direction, call_id,
                                    cseq.removeprefix("CSeq:").strip(), first.strip()))
        return out

    def count(self, index_name: str, column: str) -> int:
        """One -trace_counts cell, e.g. ``count("6_200", "Retrans")``."""
        return self.counts.get(f"{index_name}_{column}", 0)

    def recv_retrans(self, message: str, occurrence: int = 1) -> int:
        """Retransmissions SIPp received of the ``occurrence``-th ``<recv>`` of
        ``message`` (a status code such as "200", or a method) in the scenario.

        SIPp recognises a message identical to the last one received as a
        retransmission before it matches the scenario, and counts it against the recv
        that took the original ("200 <- 1 | Retrans 2" on its screen)."""
        seen = 0
        for key in self.counts:
            m = re.fullmatch(r"(\d+)_(.+)_Recv", key)
            if m and m.group(2) == message:
                seen += 1
                if seen == occurrence:
                    return self.counts.get(f"{m.group(1)}_{message}_Retrans", 0)
        raise KeyError(f"no {occurrence}. <recv> of {message!r} in {self.scenario} "
                       f"(counts: {sorted(self.counts)})")

    def unexpected(self) -> list[tuple[str, str]]:
        """(what the call was doing, first line of what came instead) for each
        "Aborting call on unexpected message" in the error log. What it was doing is
        the awaited message ("183") or SIPp's words ("pausing", "in message type 5")."""
        pattern = re.compile(r"while (expecting '([^']*)'|[^(\n]*?) \(index \d+\), "
                             r"received '([^\n']*)")
        return [(m.group(2) or m.group(1).strip(), m.group(3).strip())
                for m in pattern.finditer(self.errors())]

    def describe(self, lines: int = 25) -> str:
        """A summary for an assertion message: the command, the outcome and the tails
        of the error log and the output."""
        parts = [
            f"SIPp {self.scenario}: exit {self.returncode} ({self.exit_meaning})"
            + (" [killed: did not finish in time]" if self.timed_out else ""),
            f"calls: {self.successful} successful, {self.failed} failed; "
            f"retransmissions sent: {self.retransmissions}; {self.duration_s:.1f} s",
        ]
        if self.failure_counts:
            parts.append(f"failure reasons: {self.failure_counts}")
        parts.append("command: " + " ".join(self.command))
        parts.append(f"workdir: {self.workdir}")
        errors = self.errors()
        if errors.strip():
            parts.append(f"--- error log (tail) ---\n{_tail(errors, lines)}")
        logs = _read(self.log_file)
        if logs.strip():
            parts.append(f"--- scenario log (tail) ---\n{_tail(logs, lines)}")
        for name, text in (("stderr", self.stderr), ("stdout", self.stdout)):
            if text.strip():
                parts.append(f"--- {name} (tail) ---\n{_tail(text, lines)}")
        return "\n".join(parts)

    __str__ = describe


def _parse_stats(path: Path) -> dict[str, str]:
    text = _read(path)
    rows = [row for row in csv.reader(text.splitlines(), delimiter=";") if row]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {name[:-3]: value.strip() for name, value in zip(header, last, strict=False)
            if name.endswith("(C)")}


def _parse_counts(path: Path | None) -> dict[str, int]:
    text = _read(path)
    rows = [row for row in csv.reader(text.splitlines(), delimiter=";") if row]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    out = {}
    for name, value in zip(header[2:], last[2:], strict=False):
        if name and value.strip().lstrip("-").isdigit():
            out[name] = int(value)
    return out


def _screen_totals(text: str) -> tuple[int, int] | None:
    """(successful, failed) from SIPp's statistics screen, cumulative column."""
    ok = re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", text)
    bad = re.findall(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", text)
    if ok and bad:
        return int(ok[-1]), int(bad[-1])
    return None


def _sipp_files(workdir: Path) -> dict[str, Path]:
    return {
        "error_log": workdir / "errors.log",
        "stat_csv": workdir / "stats.csv",
        "screen_log": workdir / "screen.log",
        "log_file": workdir / "logs.log",
        "shortmsg_log": workdir / "shortmessages.log",
        "message_log": workdir / "messages.log",
    }


def _sipp_trace_args(files: Mapping[str, Path], trace_messages: bool, trace_logs: bool
                     ) -> list[str]:
    args = [
        "-trace_err", "-error_file", str(files["error_log"]),
        "-trace_stat", "-stf", str(files["stat_csv"]),
        "-trace_screen", "-screen_file", str(files["screen_log"]),
        # No file-name option for the counts: <scenario>_<pid>_counts.csv in the cwd.
        "-trace_counts",
    ]
    if trace_logs:
        args += ["-trace_logs", "-log_file", str(files["log_file"])]
    if trace_messages:
        args += ["-trace_shortmsg", "-shortmessage_file", str(files["shortmsg_log"]),
                 "-trace_msg", "-message_file", str(files["message_log"])]
    return args


def _check_vars(scenario: Path, variables: Mapping[str, object]) -> None:
    missing = [name for name in scenario_variables(scenario) if name not in variables]
    if missing:
        raise ValueError(f"{scenario.name} needs -set for {', '.join(missing)} "
                         f"(pass extra_vars={{...}})")


def _collect(workdir: Path, files: Mapping[str, Path], pid: int) -> dict[str, object]:
    counts = sorted(workdir.glob(f"*_{pid}_counts.csv"))
    counts_csv = counts[0] if counts else None
    stats = _parse_stats(files["stat_csv"])
    return {
        **{k: (v if v.exists() else None) for k, v in files.items()},
        "counts_csv": counts_csv,
        "counts": _parse_counts(counts_csv),
        "stats": stats,
    }


def _result(scenario: Path, command: list[str], returncode: int, duration: float,
            workdir: Path, files: Mapping[str, Path], pid: int, timed_out: bool
            ) -> SippResult:
    info = _collect(workdir, files, pid)
    stats: dict[str, str] = info["stats"]  # type: ignore[assignment]
    stdout = _read(workdir / "stdout.txt")
    stderr = _read(workdir / "stderr.txt")

    def stat(name: str) -> int:
        value = stats.get(name, "")
        return int(value) if value.isdigit() else 0

    successful, failed = stat("SuccessfulCall"), stat("FailedCall")
    if not stats:  # no CSV (fatal start-up error): fall back to the screen, if any
        totals = _screen_totals(_read(files["screen_log"]) + stdout)
        if totals:
            successful, failed = totals
    return SippResult(
        scenario=scenario.name, command=command, returncode=returncode,
        successful=successful, failed=failed, retransmissions=stat("Retransmissions"),
        duration_s=duration, workdir=workdir, stdout=stdout, stderr=stderr,
        stats=stats, counts=info["counts"],  # type: ignore[arg-type]
        error_log=info["error_log"], stat_csv=info["stat_csv"],  # type: ignore[arg-type]
        counts_csv=info["counts_csv"], screen_log=info["screen_log"],  # type: ignore[arg-type]
        log_file=info["log_file"], shortmsg_log=info["shortmsg_log"],  # type: ignore[arg-type]
        message_log=info["message_log"], timed_out=timed_out,  # type: ignore[arg-type]
    )


def _workdir(cwd: Path | None, prefix: str) -> Path:
    if cwd is None:
        return Path(tempfile.mkdtemp(prefix=prefix))
    cwd.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=cwd))


def run_sipp(
    scenario: str | os.PathLike[str],
    target: str,
    *,
    calls: int = 1,
    rate: float | None = None,
    limit: int | None = None,
    local_ip: str = LOCALHOST,
    local_port: int | None = None,
    media_port: int | None = None,
    rtp_echo: bool = True,
    extra_vars: Mapping[str, object] | None = None,
    lost_percent: float | None = None,
    timeout: float = 30.0,
    service: str | None = None,
    trace_messages: bool = True,
    trace_logs: bool = True,
    extra_args: Sequence[str] = (),
    cwd: Path | None = None,
) -> SippResult:
    """Run SIPp client scenario ``scenario`` against ``target`` ("host:port") until
    ``calls`` calls are done, and return the outcome.

    ``scenario`` is a file name in ``scenarios/`` or a path. ``extra_vars`` become
    ``-set name value``; every ``<Global variables>`` of the scenario must be given.
    ``local_port``/``media_port`` default to free ports. ``lost_percent`` is SIPp's
    ``-lost`` (that share of the messages it sends and receives is dropped).
    ``timeout`` (s) is SIPp's global ``-timeout`` with ``-timeout_error``; the process
    is killed if it is still there 10 s later. Output and traces go to a new directory
    under ``cwd`` (a temporary one if None); they stay there for the test to read.
    Statistics, counts, the screen and the error log are always written; the message
    traces (``trace_messages``: -trace_msg, -trace_shortmsg) and the scenario's <log>
    lines (``trace_logs``) cost a file write per message or call: off for load runs.
    """
    path = scenario_path(scenario)
    variables = dict(extra_vars or {})
    _check_vars(path, variables)
    workdir = _workdir(cwd, f"sipp-{path.stem}-")
    files = _sipp_files(workdir)
    local_port = local_port or free_udp_port(local_ip)
    media_port = media_port or free_media_port(local_ip)
    command = [
        "sipp", target, "-sf", str(path),
        "-m", str(calls), "-l", str(limit or max(calls, 1)),
        "-i", local_ip, "-p", str(local_port), "-mi", local_ip, "-mp", str(media_port),
        "-nostdin", "-timeout", f"{timeout:g}s", "-timeout_error",
        *_sipp_trace_args(files, trace_messages, trace_logs),
    ]
    if rate is not None:
        command += ["-r", f"{rate:g}"]
    if service is not None:
        command += ["-s", service]
    if rtp_echo:
        command.append("-rtp_echo")
    if lost_percent:
        command += ["-lost", f"{lost_percent:g}"]
    for name, value in variables.items():
        command += ["-set", str(name), str(value)]
    command += list(extra_args)

    started = time.monotonic()
    timed_out = False
    proc = None
    with open(workdir / "stdout.txt", "wb") as out, open(workdir / "stderr.txt", "wb") as err:
        try:
            proc = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err)
            try:
                proc.wait(timeout=timeout + 10)
            except subprocess.TimeoutExpired:
                timed_out = True
        finally:
            # SIPp ends on -timeout by itself; if not: SIGUSR1 ("q": finish the calls),
            # SIGINT (quit at once, statistics still written), SIGTERM, SIGKILL.
            _stop(proc, (signal.SIGUSR1, 1.0), (signal.SIGINT, 2.0), (signal.SIGTERM, 2.0))
    assert proc is not None
    return _result(path, command, proc.returncode, time.monotonic() - started, workdir,
                   files, proc.pid, timed_out)


class SippServer:
    """A SIPp server scenario running in the background (a stand-in UAS).

    ``with SippServer("uas_183.xml", extra_vars={"answer_ms": 500}) as uas:`` starts
    ``sipp -sf uas_183.xml`` on a free port and waits until it has bound it;
    ``uas.target`` is "127.0.0.1:PORT". SIPp runs in a directory of its own, into which
    ``copy_files`` are copied first (relative file names in a scenario, such as an
    ``rtp_stream`` file, are looked up there). On exit it is stopped: SIGUSR1 (SIPp's
    "q": no new calls, finish the running ones) for ``stop_grace`` s, then SIGINT (quit
    now; SIPp still writes its statistics), SIGTERM, SIGKILL. A second SIGUSR1 does not
    force SIPp 3.6 out. ``uas.result`` then holds its :class:`SippResult` (its calls,
    its message trace, its error log).
    """

    def __init__(self, scenario: str | os.PathLike[str] = "uas_183.xml", *,
                 extra_vars: Mapping[str, object] | None = None, ip: str = LOCALHOST,
                 port: int | None = None, media_port: int | None = None,
                 rtp_echo: bool = False, trace_messages: bool = True,
                 trace_logs: bool = True, extra_args: Sequence[str] = (), cwd: Path | None = None,
                 copy_files: Sequence[Path] = (), start_timeout: float = 5.0,
                 stop_grace: float = 0.5) -> None:
        self.path = scenario_path(scenario)
        self.variables = dict(extra_vars or {})
        _check_vars(self.path, self.variables)
        self.ip = ip
        self.port = port or free_udp_port(ip)
        self.media_port = media_port or free_media_port(ip)
        self.workdir = _workdir(cwd, f"sipp-{self.path.stem}-")
        self.files = _sipp_files(self.workdir)
        for path in copy_files:  # e.g. the ringback.al that rtp_stream plays
            shutil.copy(path, self.workdir / Path(path).name)
        self.command = [
            "sipp", "-sf", str(self.path),
            "-i", ip, "-p", str(self.port), "-mi", ip, "-mp", str(self.media_port),
            "-nostdin", *_sipp_trace_args(self.files, trace_messages, trace_logs),
        ]
        if rtp_echo:
            self.command.append("-rtp_echo")
        for name, value in self.variables.items():
            self.command += ["-set", str(name), str(value)]
        self.command += list(extra_args)
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.proc: subprocess.Popen | None = None
        self.result: SippResult | None = None
        self._started = 0.0

    @property
    def target(self) -> str:
        return f"{self.ip}:{self.port}"

    def uri(self, user: str = "uas") -> str:
        return f"sip:{user}@{self.ip}:{self.port}"

    def start(self) -> SippServer:
        self._started = time.monotonic()
        with open(self.workdir / "stdout.txt", "wb") as out, \
                open(self.workdir / "stderr.txt", "wb") as err:
            self.proc = subprocess.Popen(self.command, cwd=self.workdir,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        try:
            wait_bound(self.port, self.proc, self.start_timeout, self.ip)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> SippResult:
        if self.result is not None:
            return self.result
        _stop(self.proc, (signal.SIGUSR1, self.stop_grace), (signal.SIGINT, 2.0),
              (signal.SIGTERM, 2.0))
        assert self.proc is not None
        self.result = _result(self.path, self.command, self.proc.returncode,
                              time.monotonic() - self._started, self.workdir, self.files,
                              self.proc.pid, timed_out=False)
        return self.result

    def __enter__(self) -> SippServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- tshark


@dataclass
class RtpCapture:
    """A running (then finished) tshark capture; ``pcap`` is the file."""

    pcap: Path
    port: int
    interface: str
    stderr_path: Path

    def stats(self, **kwargs: object) -> list[RtpStreamStats]:
        return rtp_stats(self.pcap, self.port, **kwargs)  # type: ignore[arg-type]


def _probe_until_written(pcap: Path, probe_port: int, proc: subprocess.Popen,
                         timeout: float) -> bool:
    """Send a probe datagram with a unique token to ``probe_port`` every 20 ms until the
    token is in the capture file: then every packet that reached the interface before
    the first probe is on disk. (The file grows in blocks, so its size alone says
    nothing; packets are stored verbatim, so the token can simply be searched for.)
    The payload starts with "u" (0x75): RTP version 1, never counted as RTP."""
    token = b"uascall capture probe %d %f" % (os.getpid(), time.monotonic())
    deadline = time.monotonic() + timeout
    offset = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        while time.monotonic() < deadline and proc.poll() is None:
            sock.sendto(token, (LOCALHOST, probe_port))
            time.sleep(0.02)
            try:
                with open(pcap, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:  # it appears some time after "Capturing on"
                continue
            if token in data:
                return True
            offset = max(offset + len(data) - len(token), 0)
    return False


@contextlib.contextmanager
def capture_rtp(port: int, *, interface: str = "lo", workdir: Path | None = None,
                pcap: Path | None = None, start_timeout: float = 10.0
                ) -> Iterator[RtpCapture]:
    """Capture UDP ``port`` on ``interface`` with tshark while the block runs.

    Runs ``tshark -i lo -f "udp port N or udp dst port PROBE" -w FILE -q``. tshark
    prints "Capturing on 'Loopback: lo'" before the capture really runs (a datagram
    sent right after it is lost), so this also sends probe datagrams to a spare port
    PROBE until one is in the file. At the end it probes again until the new probe is
    in the file (so is everything sent before it), then stops tshark with SIGINT (it
    closes the file) before any kill. SIGINT right after the last packet loses up to
    the last ~0.5 s: dumpcap gets packets in blocks. Needs root or CAP_NET_RAW.
    """
    workdir = workdir or Path(tempfile.mkdtemp(prefix="tshark-"))
    workdir.mkdir(parents=True, exist_ok=True)
    pcap = pcap or workdir / f"rtp-{port}.pcapng"
    stderr_path = workdir / f"tshark-{port}.stderr"
    probe_port = free_udp_port()
    command = ["tshark", "-i", interface, "-f", f"udp port {port} or udp dst port {probe_port}",
               "-w", str(pcap), "-q"]
    capture = RtpCapture(pcap, port, interface, stderr_path)
    proc = None
    with open(stderr_path, "wb") as err:
        try:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err)
            deadline = time.monotonic() + start_timeout
            while "Capturing on" not in _read(stderr_path):
                if proc.poll() is not None:
                    raise PeerError(f"tshark exited with {proc.returncode}: "
                                    f"{_read(stderr_path, 2000)}")
                if time.monotonic() > deadline:
                    raise PeerError(f"tshark did not start capturing within "
                                    f"{start_timeout} s: {_read(stderr_path, 2000)}")
                time.sleep(0.02)
            if not _probe_until_written(pcap, probe_port, proc, start_timeout):
                raise PeerError(f"tshark captured none of its probes: "
                                f"{_read(stderr_path, 2000)}")
            yield capture
            _probe_until_written(pcap, probe_port, proc, 5.0)
        finally:
            _stop(proc, (signal.SIGINT, 5.0), (signal.SIGTERM, 2.0))
    if proc is not None and proc.returncode not in (0, -signal.SIGINT):
        raise PeerError(f"tshark ended with {proc.returncode}: {_read(stderr_path, 2000)}")


@dataclass
class RtpStreamStats:
    """One RTP stream (one SSRC from one source to one destination) in a capture."""

    ssrc: int
    payload_type: int
    src: str  # "ip:port"
    dst: str
    packets: int
    #: Sequence numbers missing between the first and the last packet.
    lost: int
    duration_s: float  # first to last packet
    mean_delta_ms: float  # mean inter-arrival time
    max_delta_ms: float
    max_jitter_ms: float  # RFC 3550 interarrival jitter, the largest value reached
    mean_jitter_ms: float
    markers: int = 0  # packets with the marker bit
    payload_bytes: int = 0  # of the first packet (160 = 20 ms of G.711)
    first_s: float = 0.0  # arrival of the first packet (epoch seconds, as SipTrace.time)
    last_s: float = 0.0  # and of the last

    @property
    def ssrc_hex(self) -> str:
        return f"0x{self.ssrc:08x}"


_RTP_FIELDS = ("frame.time_epoch", "ip.src", "udp.srcport", "ip.dst", "udp.dstport",
               "rtp.ssrc", "rtp.p_type", "rtp.seq", "rtp.timestamp", "rtp.marker",
               "udp.length")


def tshark_fields(pcap: Path, port: int, display_filter: str, fields: Sequence[str], *,
                  extra: Sequence[str] = ()) -> list[list[str]]:
    command = ["tshark", "-r", str(pcap), "-d", f"udp.port=={port},rtp", *extra, "-Y",
               display_filter, "-T", "fields", "-E", "separator=\t"]
    for name in fields:
        command += ["-e", name]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise PeerError(f"{' '.join(command)} -> {proc.returncode}: {proc.stderr[-2000:]}")
    return [line.split("\t") for line in proc.stdout.splitlines() if line.strip()]


def _int(value: str) -> int:
    value = value.strip()
    return int(value, 16) if value.lower().startswith("0x") else int(value or 0)


def rtp_stats(pcap: Path, port: int, *, direction: str = "both", clock_rate: int = 8000
              ) -> list[RtpStreamStats]:
    """The RTP streams in ``pcap`` to or from UDP ``port`` (decoded as RTP there), one
    per (SSRC, source, destination), largest first.

    ``direction``: "to" (destination port == port), "from", or "both". Statistics are
    computed here from per-packet fields (tshark -T fields), the way tshark's
    ``-z rtp,streams`` does: lost from the sequence numbers, deltas from arrival times,
    jitter per RFC 3550 with ``clock_rate``. :func:`tshark_rtp_streams` gives tshark's
    own table for comparison.
    """
    flt = {"to": f"udp.dstport=={port}", "from": f"udp.srcport=={port}",
           "both": f"udp.port=={port}"}[direction]
    rows = tshark_fields(pcap, port, f"rtp && rtp.version==2 && {flt}", _RTP_FIELDS)
    streams: dict[tuple[int, str, str], list[list[str]]] = {}
    for row in rows:
        if len(row) < len(_RTP_FIELDS) or not row[5]:
            continue
        key = (_int(row[5]), f"{row[1]}:{row[2]}", f"{row[3]}:{row[4]}")
        streams.setdefault(key, []).append(row)
    out = []
    for (ssrc, src, dst), packets in streams.items():
        times = [float(p[0]) for p in packets]
        seqs = [_int(p[7]) for p in packets]
        stamps = [_int(p[8]) for p in packets]
        # Extended sequence numbers (wrap at 65536) -> expected count -> lost.
        ext, cycles, last = [], 0, seqs[0]
        for seq in seqs:
            if seq < last and last - seq > 32768:
                cycles += 65536
            ext.append(seq + cycles)
            last = seq
        expected = max(ext) - min(ext) + 1
        deltas = [(b - a) * 1000 for a, b in itertools.pairwise(times)]
        jitter, jitters = 0.0, []
        for i in range(1, len(packets)):
            transit_d = (times[i] - times[i - 1]) * clock_rate - (stamps[i] - stamps[i - 1])
            jitter += (abs(transit_d) - jitter) / 16
            jitters.append(jitter * 1000 / clock_rate)
        out.append(RtpStreamStats(
            ssrc=ssrc, payload_type=_int(packets[0][6]), src=src, dst=dst,
            packets=len(packets), lost=max(expected - len(packets), 0),
            duration_s=times[-1] - times[0],
            mean_delta_ms=sum(deltas) / len(deltas) if deltas else 0.0,
            max_delta_ms=max(deltas, default=0.0),
            max_jitter_ms=max(jitters, default=0.0),
            mean_jitter_ms=sum(jitters) / len(jitters) if jitters else 0.0,
            markers=sum(1 for p in packets if p[9].strip() in ("1", "True", "true")),
            payload_bytes=max(_int(packets[0][10]) - 8 - 12, 0),
            first_s=times[0], last_s=times[-1],
        ))
    return sorted(out, key=lambda s: -s.packets)


def tshark_rtp_streams(pcap: Path, port: int) -> list[dict[str, str]]:
    """tshark's own ``-q -z rtp,streams`` table (one dict per stream: ssrc, payload,
    packets, lost, mean_delta_ms, max_delta_ms, max_jitter_ms, ...)."""
    command = ["tshark", "-r", str(pcap), "-d", f"udp.port=={port},rtp", "-q", "-z",
               "rtp,streams"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    out = []
    for line in proc.stdout.splitlines():
        cols = line.split()
        if len(cols) >= 17 and re.fullmatch(r"0x[0-9A-Fa-f]+", cols[6]):
            out.append({
                "start": cols[0], "end": cols[1], "src": f"{cols[2]}:{cols[3]}",
                "dst": f"{cols[4]}:{cols[5]}", "ssrc": cols[6].lower(), "payload": cols[7],
                "packets": cols[8], "lost": cols[9], "lost_percent": cols[10].strip("()%"),
                "min_delta_ms": cols[11], "mean_delta_ms": cols[12], "max_delta_ms": cols[13],
                "min_jitter_ms": cols[14], "mean_jitter_ms": cols[15],
                "max_jitter_ms": cols[16], "problems": " ".join(cols[17:]),
            })
    return out


def send_rtp(dest: tuple[str, int], *, packets: int = 50, payload_type: int = 8,
             ptime_ms: float = 20.0, ssrc: int = 0x5A5A0001, payload: bytes | None = None,
             source_port: int = 0) -> int:
    """Send ``packets`` RTP packets to ``dest`` paced every ``ptime_ms`` (160 bytes of
    A-law silence each unless ``payload`` is given); return the source port used."""
    body = payload if payload is not None else b"\xd5" * int(8 * ptime_ms)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOCALHOST, source_port))
        start = time.monotonic()
        for i in range(packets):
            header = struct.pack("!BBHII", 0x80, (0x80 if i == 0 else 0) | payload_type,
                                 (1000 + i) & 0xFFFF, (i * len(body)) & 0xFFFFFFFF, ssrc)
            delay = start + i * ptime_ms / 1000 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sock.sendto(header + body, dest)
        return sock.getsockname()[1]


def write_rtp_pcap(path: Path, packets: Sequence[bytes], *, interval_s: float = 0.020,
                   source: tuple[str, int] = (LOCALHOST, 40000),
                   dest: tuple[str, int] = (LOCALHOST, 30000)) -> Path:
    """A classic pcap file (Ethernet link type, as SIPp's ``play_pcap_audio`` reads) of
    the RTP ``packets``, one every ``interval_s``, from ``source`` to ``dest`` (SIPp
    replaces the addresses and ports with the call's)."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for index, rtp in enumerate(packets):
            udp = struct.pack("!HHHH", source[1], dest[1], 8 + len(rtp), 0) + rtp
            header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), index, 0, 64, 17,
                                 0, socket.inet_aton(source[0]), socket.inet_aton(dest[0]))
            checksum = 0
            for (word,) in struct.iter_unpack("!H", header):
                checksum += word
            while checksum >> 16:
                checksum = (checksum & 0xFFFF) + (checksum >> 16)
            header = header[:10] + struct.pack("!H", ~checksum & 0xFFFF) + header[12:]
            frame = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" \
                + b"\x08\x00" + header + udp
            at = index * interval_s
            out.write(struct.pack("<IIII", int(at), round(at % 1 * 1e6), len(frame),
                                  len(frame)))
            out.write(frame)
    return path


def pcap_scenario(pcap: Path, workdir: Path, template: str = "uac_play_pcap.xml") -> Path:
    """A copy of a scenario whose ``play_pcap_audio`` plays ``pcap`` (SIPp takes no
    variable there, so the template's ``@PCAP@`` is replaced by the path)."""
    text = scenario_path(template).read_text().replace("@PCAP@", str(pcap.resolve()))
    out = workdir / f"{Path(template).stem}-{pcap.stem}.xml"
    out.write_text(text)
    return out


def rtp_events(pcap: Path, port: int, payload_type: int = 101) -> list[tuple[int, int, bool]]:
    """(RTP timestamp, event, end bit) of every RFC 4733 telephone-event packet to or from
    ``port`` in a capture, as tshark's rtpevent dissector reads them."""
    rows = tshark_fields(pcap, port, "rtpevent", ["rtp.timestamp", "rtpevent.event_id",
                                                  "rtpevent.end_of_event"],
                         extra=["-d", f"rtp.pt=={payload_type},rtpevent"])
    return [(int(ts), int(event), end in ("1", "True")) for ts, event, end in rows]


# --------------------------------------------------------------------------- audio files


def write_tone_wav(path: Path, *, freq: float = 425.0, duration_s: float = 5.0,
                   on_s: float | None = None, off_s: float = 0.0, amplitude: float = 0.5,
                   rate: int = 8000, lead_silence_s: float = 0.0) -> Path:
    """Write a 16-bit mono WAV: a sine of ``freq`` Hz, switched on for ``on_s`` and off
    for ``off_s`` in turn (continuous if ``on_s`` is None), after ``lead_silence_s``."""
    frames = bytearray()
    total = int(duration_s * rate)
    lead = int(lead_silence_s * rate)
    period = None if on_s is None else int((on_s + off_s) * rate)
    on = None if on_s is None else int(on_s * rate)
    for n in range(total):
        value = 0.0
        if n >= lead:
            k = n - lead
            if period is None or on is None or k % period < on:
                value = amplitude * math.sin(2 * math.pi * freq * k / rate)
        frames += struct.pack("<h", max(-32768, min(32767, round(value * 32767))))
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))
    return path


def wav_to_alaw(wav: Path, raw: Path) -> Path:
    """Convert ``wav`` to headerless 8 kHz A-law (what SIPp's rtp_stream plays)."""
    subprocess.run(["sox", str(wav), "-r", "8000", "-c", "1", "-t", "al", str(raw)],
                   check=True, capture_output=True, timeout=60)
    return raw


def trim_wav(wav: Path, start_s: float, length_s: float, out: Path) -> Path:
    """``length_s`` seconds of ``wav`` from ``start_s``, as a new file ``out``."""
    subprocess.run(["sox", str(wav), str(out), "trim", f"{start_s:.3f}", f"{length_s:.3f}"],
                   check=True, capture_output=True, timeout=60)
    return out


def write_silence_wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    """8 kHz mono 16-bit silence, made by sox (baresip's microphone). ``-D``: sox
    dithers 16-bit output by default, which makes "silence" faint noise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["sox", "-D", "-n", "-r", str(rate), "-c", "1", "-b", "16", str(path),
                    "trim", "0", f"{seconds:g}"], check=True, capture_output=True, timeout=60)
    return path


@dataclass
class ToneStats:
    """What :func:`tone_analysis` measured. Levels are relative to full scale (1.0)."""

    duration_s: float
    rms: float  # of the whole file
    voiced_rms: float  # of the windows above the threshold
    peak: float
    #: The strongest frequency in the voiced parts (Hz); 0 if nothing is voiced.
    dominant_hz: float
    #: Share of the voiced energy at ``dominant_hz`` (1.0 for a pure sine).
    purity: float
    #: (start, end) seconds of each stretch whose 20 ms RMS exceeds the threshold.
    segments: list[tuple[float, float]]
    window_s: float
    threshold: float

    @property
    def voiced_s(self) -> float:
        return sum(end - start for start, end in self.segments)

    @property
    def on_durations(self) -> list[float]:
        return [end - start for start, end in self.segments]

    @property
    def off_durations(self) -> list[float]:
        """The gaps between segments (not the silence before the first or after the last)."""
        return [b[0] - a[1] for a, b in itertools.pairwise(self.segments)]


def read_wav(path: Path) -> tuple[list[float], int]:
    """The first channel of a PCM WAV as floats in [-1, 1], and the sample rate."""
    with wave.open(str(path), "rb") as wav:
        channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    if width == 2:
        values = struct.unpack(f"<{len(raw) // 2}h", raw)
        scale = 32768.0
    elif width == 1:
        values = tuple(b - 128 for b in raw)
        scale = 128.0
    elif width == 4:
        values = struct.unpack(f"<{len(raw) // 4}i", raw)
        scale = 2147483648.0
    else:
        raise ValueError(f"{path}: {width * 8}-bit samples are not supported")
    return [v / scale for v in values[::channels]], rate


def _zero_crossing_hz(samples: Sequence[float], rate: int) -> float:
    crossings = sum(1 for a, b in itertools.pairwise(samples)
                    if (a < 0) != (b < 0))
    return crossings * rate / (2 * len(samples)) if samples else 0.0


def tone_analysis(wav: Path, *, window_s: float = 0.02, threshold: float | None = None,
                  min_gap_s: float = 0.06, min_segment_s: float = 0.04) -> ToneStats:
    """Level, dominant frequency and on/off cadence of ``wav`` (pure Python).

    The file is cut into ``window_s`` windows; a window is voiced when its RMS exceeds
    ``threshold`` (default: 0.01 full scale or a tenth of the loudest window, whichever
    is larger). Voiced windows make segments; gaps shorter than ``min_gap_s`` are
    bridged (a late packet, a concealed loss), segments shorter than ``min_segment_s``
    dropped. The frequency is estimated from zero crossings of the voiced samples and
    refined with Goertzel filters at 1 Hz steps around it.
    """
    samples, rate = read_wav(wav)
    n = len(samples)
    duration = n / rate if rate else 0.0
    size = max(int(window_s * rate), 1)
    windows = [samples[i:i + size] for i in range(0, n - size + 1, size)]
    levels = [math.sqrt(sum(x * x for x in w) / len(w)) for w in windows]
    loudest = max(levels, default=0.0)
    if threshold is None:
        threshold = max(0.01, loudest / 10)

    raw_segments: list[list[int]] = []  # [first window, last window]
    for i, level in enumerate(levels):
        if level > threshold:
            if raw_segments and (i - raw_segments[-1][1] - 1) * window_s < min_gap_s:
                raw_segments[-1][1] = i
            else:
                raw_segments.append([i, i])
    segments = [(a * size / rate, (b + 1) * size / rate) for a, b in raw_segments
                if (b + 1 - a) * window_s >= min_segment_s]

    voiced = [x for (a, b) in raw_segments for x in samples[a * size:(b + 1) * size]]
    voiced_rms = math.sqrt(sum(x * x for x in voiced) / len(voiced)) if voiced else 0.0
    dominant, purity = 0.0, 0.0
    if raw_segments:
        # The frequency comes from the middle of the longest segment, at most 0.5 s of
        # it: one stretch without splices, and few enough samples for pure Python.
        a, b = max(raw_segments, key=lambda seg: seg[1] - seg[0])
        stretch = samples[a * size:(b + 1) * size]
        take = min(len(stretch), rate // 2)
        start = (len(stretch) - take) // 2
        chunk = stretch[start:start + take]
        guess = _zero_crossing_hz(chunk, rate)
        # Coarse (1 Hz) around the zero-crossing estimate, then fine (0.05 Hz): the
        # main lobe of N samples is 2 * rate / N wide (4 Hz for 0.5 s).
        best_f, best_power = guess, -1.0
        for lo, hi, step in ((max(guess * 0.9 - 10, 20.0), min(guess * 1.1 + 10,
                                                               rate / 2 - 1), 1.0),
                             (None, None, 0.05)):
            if lo is None or hi is None:
                lo, hi = best_f - 1.0, best_f + 1.0
            f = lo
            while f <= hi:
                power = goertzel_power(chunk, f, rate)
                if power > best_power:
                    best_power, best_f = power, f
                f += step
        dominant = round(best_f, 1)
        energy = sum(x * x for x in chunk)
        purity = min(2 * best_power / (len(chunk) * energy), 1.0) if energy else 0.0
    return ToneStats(
        duration_s=duration,
        rms=math.sqrt(sum(x * x for x in samples) / n) if n else 0.0,
        voiced_rms=voiced_rms,
        peak=max((abs(x) for x in samples), default=0.0),
        dominant_hz=dominant, purity=purity, segments=segments,
        window_s=window_s, threshold=threshold,
    )


def sox_stat(wav: Path) -> dict[str, str]:
    """``sox FILE -n stat`` as a dict ("Length (seconds)", "RMS amplitude",
    "Rough frequency", ...); an independent cross-check of :func:`tone_analysis`."""
    proc = subprocess.run(["sox", str(wav), "-n", "stat"], capture_output=True, text=True,
                          timeout=60, check=False)
    out = {}
    for line in proc.stderr.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[" ".join(key.split())] = value.strip()
    return out


# --------------------------------------------------------------------------- baresip

BARESIP_MODULES = Path("/usr/lib/baresip/modules")
#: baresip 1.0's account answer modes: ring and wait for "a" (180), answer with 183 and
#: SDP but send nothing until "a" (see BaresipCallee), answer at once (200)
ANSWERMODES = ("manual", "early", "auto")

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class BaresipResult:
    """What baresip did during one dial (from its log) and what it recorded."""

    uri: str
    command: list[str]
    returncode: int
    log: str  # ANSI colours and the \\r status lines removed
    workdir: Path
    #: Provisional/final progress baresip reported: [(183, "Session Progress",
    #: "application/sdp"), ...] ("call: SIP Progress: ...").
    progress: list[tuple[int, str, str]]
    early_media: bool  # a 1xx with application/sdp (baresip starts RX on it)
    established: bool  # "Call established"
    #: How the call ended as baresip put it ("Call with ... terminated (duration: 3
    #: secs)"); empty when baresip quit (-t) during early media: it sends CANCEL then
    #: but logs nothing about the call.
    closed_reason: str
    stopped: bool  # "ua: stop all": -t ran out and baresip hung up / quit
    decoder: str  # "PCMA 8000Hz 1ch" from "Set audio decoder"
    rtp_established: bool  # "incoming rtp for 'audio' established"
    dec_wav: Path | None  # decoded RX audio (sndfile), early media included
    enc_wav: Path | None
    duration_s: float
    timed_out: bool = False

    @property
    def cancelled(self) -> bool:
        """baresip hung up after a provisional response and before any answer (it
        sends CANCEL then; the UAS's trace shows it)."""
        return bool(self.progress) and not self.established and self.stopped

    def describe(self, lines: int = 40) -> str:
        return "\n".join([
            f"baresip dial {self.uri}: exit {self.returncode}"
            + (" [killed]" if self.timed_out else ""),
            f"progress={self.progress} early_media={self.early_media} "
            f"established={self.established} closed={self.closed_reason!r} "
            f"decoder={self.decoder!r} rec={self.dec_wav}",
            "command: " + " ".join(self.command),
            f"--- log (tail) ---\n{_tail(self.log, lines)}",
        ])

    __str__ = describe


def baresip_config(workdir: Path, *, listen_port: int, mic: Path, rec_dir: Path,
                   codecs: Sequence[str] = ("PCMA", "PCMU"), rtp_ports: tuple[int, int]
                   | None = None, console: bool = False, answermode: str | None = None
                   ) -> Path:
    """Write baresip 1.0's ``config`` and ``accounts`` into ``workdir``: SIP on
    127.0.0.1:``listen_port``, the ``mic`` WAV as microphone (aufile), the ALSA
    the sndfile filter recording into ``rec_dir``. ``answermode`` (the account's:
    manual, early or auto) says how it takes a call (:class:`BaresipCallee`).

    The speaker is ``aubridge`` (a virtual device), not ALSA's ``null`` PCM: that one
    never blocks, so baresip 1.0's player thread spins at 100 % CPU for the whole call
    (one of our two cores). The sndfile filter records in the decoder path, so the
    recording is the same either way."""
    lines = [
        # Without module_path baresip looks for the modules in its cwd.
        f"module_path {BARESIP_MODULES}",
        f"sip_listen {LOCALHOST}:{listen_port}",
        "audio_player aubridge,speaker",
        f"audio_source aufile,{mic}",
        "audio_alert aubridge,alert",
        "module g711.so",
        "module aufile.so",
        "module aubridge.so",
        "module sndfile.so",
        "module_app account.so",
        "module_app menu.so",
        f"snd_path {rec_dir}",
    ]
    if console:  # keys typed on stdin reach the menu (in a call: DTMF)
        lines.append("module stdio.so")
    if rtp_ports:
        lines.append(f"rtp_ports {rtp_ports[0]}-{rtp_ports[1]}")
    (workdir / "config").write_text("\n".join(lines) + "\n")
    account = f"<sip:baresip@{LOCALHOST}>;regint=0;audio_codecs={','.join(codecs)}"
    if answermode is not None:
        if answermode not in ANSWERMODES:
            raise ValueError(f"answermode {answermode!r}; expected one of {ANSWERMODES}")
        account += f";answermode={answermode}"
    (workdir / "accounts").write_text(account + "\n")
    return workdir


def _parse_baresip_log(text: str) -> dict[str, object]:
    progress = [(int(m.group(1)), m.group(2).strip(), m.group(3).strip())
                for m in re.finditer(r"call: SIP Progress: (\d{3}) ([^(\n]*)\(([^)\n]*)\)",
                                     text)]
    closed = ""
    for pattern in (r"Call with \S+ terminated[^\n]*", r"call: closed[^\n]*",
                    r"Call failed[^\n]*", r"session closed[^\n]*"):
        found = re.findall(pattern, text)
        if found:
            closed = found[-1].strip()
            break
    decoder = re.findall(r"Set audio decoder: ([^\n]*)", text)
    return {
        "progress": progress,
        "early_media": any(code < 200 and "sdp" in ctype for code, _, ctype in progress),
        "established": "Call established" in text,
        "stopped": "ua: stop all" in text,
        "closed_reason": closed,
        "decoder": decoder[-1].strip() if decoder else "",
        "rtp_established": "incoming rtp for 'audio' established" in text,
    }


def _clean_baresip_log(raw: str, typed: str = "") -> str:
    """baresip's output without ANSI colours, the "\\r[0:00:01] audio=64000/64000
    (bit/s)" status updates and the echo of a ``-e`` command ``typed``, which it prints
    one key at a time ("/", "/d", "/di", ...)."""
    raw = _ANSI.sub("", raw)
    return "\n".join(part for line in raw.splitlines() for part in line.split("\r")
                     if part.strip() and not part.startswith("[")
                     and not (typed and typed.startswith(part.strip())))


def _type_keys(proc: subprocess.Popen, keys: str, at: float, gap: float) -> None:
    """Type ``keys`` into baresip's console from ``at`` seconds on (baresip's menu reads
    single keys from stdin, a pipe as well as a terminal)."""
    assert proc.stdin is not None
    time.sleep(at)
    for key in keys:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(key.encode())
            proc.stdin.flush()
        time.sleep(gap)


def run_baresip(uri: str, *, seconds: int, workdir: Path,
                codecs: Sequence[str] = ("PCMA", "PCMU"), listen_port: int | None = None,
                mic: Path | None = None, grace_s: float = 10.0, keys: str = "",
                keys_at: float = 2.0, key_gap: float = 0.3) -> BaresipResult:
    """Dial ``uri`` with baresip and hang up after ``seconds`` (``-t``): BYE if the call
    was answered, CANCEL if it was still ringing / in early media.

    Runs ``baresip -f DIR -e "/dial URI" -t N`` with the config of
    :func:`baresip_config` in ``workdir/baresip`` (mic: ``seconds + 2`` s of 8 kHz
    silence made by sox, unless ``mic`` is given), stdin from /dev/null. Killed if it
    has not quit ``grace_s`` after ``seconds``. With ``keys``, they are typed into its
    console from ``keys_at`` seconds on, one every ``key_gap`` seconds: in a call, baresip
    sends each as an RFC 4733 telephone-event.
    """
    base = workdir / "baresip"
    rec = base / "rec"
    rec.mkdir(parents=True, exist_ok=True)
    mic = mic or write_silence_wav(base / "mic.wav", seconds + 2)
    listen_port = listen_port or free_udp_port()
    baresip_config(base, listen_port=listen_port, mic=mic, rec_dir=rec, codecs=codecs,
                   console=bool(keys))
    command = ["baresip", "-f", str(base), "-e", f"/dial {uri}", "-t", str(seconds)]
    log_path = base / "baresip.log"
    started = time.monotonic()
    timed_out = False
    proc = None
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(command, cwd=base,
                                    stdin=subprocess.PIPE if keys else subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT)
            if keys:
                _type_keys(proc, keys, keys_at, key_gap)
            try:
                proc.wait(timeout=seconds + grace_s)
            except subprocess.TimeoutExpired:
                timed_out = True
        finally:
            _stop(proc, (signal.SIGINT, 2.0), (signal.SIGTERM, 2.0))
    assert proc is not None
    text = _clean_baresip_log(_read(log_path), typed=f"/dial {uri}")
    decs = sorted(rec.glob("*-dec.wav"))
    encs = sorted(rec.glob("*-enc.wav"))
    return BaresipResult(
        uri=uri, command=command, returncode=proc.returncode, log=text, workdir=base,
        dec_wav=decs[-1] if decs else None, enc_wav=encs[-1] if encs else None,
        duration_s=time.monotonic() - started, timed_out=timed_out,
        **_parse_baresip_log(text),  # type: ignore[arg-type]
    )


def _tcp_port_free(port: int, host: str = LOCALHOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_sip_port(host: str = LOCALHOST) -> int:
    """A port P free for UDP, with P and P + 1 free for TCP, on ``host``: baresip listens
    on UDP and TCP P and on TCP P + 1 (and gives up, "ua: init failed (Address already
    in use)", when one is taken)."""
    for _ in range(50):
        port = free_udp_port(host)
        if port < 65535 and _tcp_port_free(port, host) and _tcp_port_free(port + 1, host):
            return port
    raise PeerError(f"no port free for both UDP and TCP found on {host}")


class BaresipCallee:
    """baresip 1.0 as the called party: it waits for calls on a free loopback port and is
    driven through its console (stdin), as a person at the keyboard drives it. ``with
    BaresipCallee(workdir, answermode="early") as phone:`` starts it (``-s``: its log
    holds every SIP message it sent and received) and quits it at the end.

    ``answermode`` is the account's: "manual" answers an INVITE with 180 and waits for
    :meth:`accept` (a 200) or :meth:`hang_up` (486 "Rejected"); "early" answers with 180
    and then 183 with SDP, and starts *receiving* at once, but 1.0.0 starts its encoder
    and its microphone only at the 200 (its log: "call: stream start (active=0)" at the
    183, "audio: Set audio encoder" after "Answering"), so it sends no early media;
    "auto" answers with 200 at once. In a call, digits typed (:meth:`press`) go out as
    RFC 4733 telephone-events when the far end offered them ("audio: send DTMF digit"),
    and the events it receives are logged ("received event: '5' (end=1)").

    The microphone is ``mic`` (a WAV, aufile), played from its start at the answer; the
    sndfile filter records what it decoded (``dec_wav``) and what it encoded
    (``enc_wav``) from the answer on, right beside the codec: no gain, no echo
    canceller, no jitter concealment of its own in between.
    """

    def __init__(self, workdir: Path, *, answermode: str = "manual", mic: Path | None = None,
                 codecs: Sequence[str] = ("PCMU",), listen_port: int | None = None) -> None:
        self.workdir = workdir / "baresip"
        self.rec = self.workdir / "rec"
        self.rec.mkdir(parents=True, exist_ok=True)
        self.answermode = answermode
        self.listen_port = listen_port or free_sip_port()
        self.mic = mic or write_silence_wav(self.workdir / "mic.wav", 60)
        baresip_config(self.workdir, listen_port=self.listen_port, mic=self.mic,
                       rec_dir=self.rec, codecs=codecs, console=True, answermode=answermode)
        # -n: baresip binds its SIP transports to the addresses it finds on the network
        # interfaces, loopback left out; where there is no other (the vm rig's guest) it
        # listened nowhere, and said nothing. Named, 127.0.0.1 is taken (and its SDP
        # names it).
        self.command = ["baresip", "-f", str(self.workdir), "-s", "-n", LOCALHOST]
        self.log_path = self.workdir / "baresip.log"
        self._log_size, self._log_text = -1, ""
        self.proc: subprocess.Popen | None = None

    def uri(self, user: str = "baresip") -> str:
        return f"sip:{user}@{LOCALHOST}:{self.listen_port}"

    def start(self, timeout: float = 30.0) -> BaresipCallee:
        """Start it and wait until it listens and says it is ready (about 0.1 s here, 3 s
        in the vm rig's emulated guest)."""
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command, cwd=self.workdir,
                                         stdin=subprocess.PIPE, stdout=log,
                                         stderr=subprocess.STDOUT)
        try:
            self.wait_for(r"baresip is ready", timeout)
            wait_bound(self.listen_port, self.proc, timeout)
        except PeerError as exc:
            self.stop()
            raise PeerError(f"{exc}\n{self.describe()}") from None
        except BaseException:
            self.stop()
            raise
        return self

    # ------------------------------------------------------------------ the keyboard
    def press(self, keys: str, gap: float = 0.3) -> None:
        """Type ``keys`` into the console, one every ``gap`` seconds (the last one
        ``gap`` before this returns): menu keys, or in a call DTMF digits."""
        assert self.proc is not None and self.proc.stdin is not None, "not started"
        for key in keys:
            self.proc.stdin.write(key.encode())
            self.proc.stdin.flush()
            time.sleep(gap)

    def accept(self) -> None:
        """The "a" key: answer the call that rings (200 with SDP)."""
        self.press("a", gap=0.0)

    def hang_up(self) -> None:
        """The "b" key: hang up the call (BYE), or refuse one that rings (486)."""
        self.press("b", gap=0.0)

    # ------------------------------------------------------------------ what it said
    @property
    def log(self) -> str:
        """Its output so far (written as it goes), cleaned as :func:`run_baresip` does;
        read again only when the file has grown (tests poll it while calls run)."""
        try:
            size = self.log_path.stat().st_size
        except OSError:
            return ""
        if size != self._log_size:
            self._log_size, self._log_text = size, _clean_baresip_log(_read(self.log_path))
        return self._log_text

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first match of the regular expression ``pattern`` in its log, once there;
        PeerError after ``timeout`` seconds or if baresip exits first."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.log)
            if found:
                return found
            if self.proc is not None and self.proc.poll() is not None:
                raise PeerError(f"baresip exited ({self.proc.returncode}) before logging "
                                f"{pattern!r}\n{self.describe()}")
            if time.monotonic() > deadline:
                raise PeerError(f"baresip did not log {pattern!r} within {timeout} s\n"
                                f"{self.describe()}")
            time.sleep(0.05)

    def sip_messages(self) -> list[tuple[str, str]]:
        """Every SIP message of its trace (``-s``) in order, as ("in" or "out", its first
        line): ("in", "INVITE sip:baresip@..."), ("out", "SIP/2.0 180 Ringing")."""
        lines = self.log.splitlines()
        out = []
        for n, line in enumerate(lines[:-1]):
            found = re.fullmatch(r"(?:UDP|TCP) (\S+) -> (\S+)", line.strip())
            if found and n > 0 and lines[n - 1].strip() == "#":
                to_us = found.group(2).endswith(f":{self.listen_port}")
                out.append(("in" if to_us else "out", lines[n + 1].strip()))
        return out

    def sent(self) -> list[str]:
        """What it sent: each response's status ("180", "486") or request's method."""
        return [_sip_what(first) for way, first in self.sip_messages() if way == "out"]

    def received(self) -> list[str]:
        """What it received, as :meth:`sent` names them."""
        return [_sip_what(first) for way, first in self.sip_messages() if way == "in"]

    def received_keys(self) -> str:
        """The telephone-events it received, a digit per event (its end)."""
        return "".join(re.findall(r"received event: '(.)' \(end=1\)", self.log))

    def sent_keys(self) -> str:
        """The digits it sent as telephone-events."""
        return "".join(re.findall(r"audio: send DTMF digit: '(.)'", self.log))

    @property
    def dec_wav(self) -> Path | None:
        """What it heard and decoded, from the answer on (sndfile)."""
        found = sorted(self.rec.glob("*-dec.wav"))
        return found[-1] if found else None

    @property
    def enc_wav(self) -> Path | None:
        found = sorted(self.rec.glob("*-enc.wav"))
        return found[-1] if found else None

    def describe(self, lines: int = 60) -> str:
        state = ("not started" if self.proc is None else "running"
                 if self.proc.poll() is None else f"exit {self.proc.returncode}")
        return "\n".join([
            f"baresip callee on {self.uri()} (answermode={self.answermode}): {state}",
            f"sent {self.sent()} received {self.received()} keys received "
            f"{self.received_keys()!r} sent {self.sent_keys()!r}",
            "command: " + " ".join(self.command),
            f"--- log (tail) ---\n{_tail(self.log, lines)}",
        ])

    def stop(self) -> int | None:
        """Quit ("q", then signals if it lingers); its exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None and proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError, OSError, ValueError):
                proc.stdin.write(b"q")
                proc.stdin.flush()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=3.0)
        _stop(proc, (signal.SIGINT, 2.0), (signal.SIGTERM, 2.0))
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        return proc.returncode

    def __enter__(self) -> BaresipCallee:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _sip_what(first_line: str) -> str:
    """A SIP message's status ("183") or method ("BYE") from its first line."""
    if first_line.startswith("SIP/2.0 "):
        return first_line.split()[1]
    return first_line.split()[0] if first_line else ""
