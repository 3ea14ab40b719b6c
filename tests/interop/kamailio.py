"""A real Kamailio for the interop tests: deploy/kamailio/kamailio.cfg, run unprivileged
in the foreground on a loopback port, its settings given with ``-A`` as a user would.

:class:`Kamailio` writes the dispatcher list, starts ``kamailio -f CFG -DD -E -Y RUNDIR``
(foreground, log to stderr, runtime files in the test's directory), waits until it has
bound its port, and keeps its log in a file the tests read (:meth:`Kamailio.log`,
:meth:`Kamailio.wait_for`). It is stopped with SIGTERM (Kamailio's clean shutdown), then
SIGKILL if it does not go.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tests import in_ci
from tests.interop import peers

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "kamailio" / "kamailio.cfg"
#: Debian's modules directory (the configuration's default too)
MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")


def missing() -> str | None:
    """Why Kamailio cannot run here, or None."""
    if shutil.which("kamailio") is None:
        return "kamailio is not installed (Debian: apt-get install kamailio)"
    if not (MODULES / "dispatcher.so").exists():
        return f"Kamailio's dispatcher module is not in {MODULES}"
    return None


def require() -> None:
    """Fail (in CI, which must install it) or skip the calling test without Kamailio."""
    import pytest

    why = missing()
    if why is None:
        return
    if in_ci():
        pytest.fail(f"{why}; CI is set, so this is an error, not a skip", pytrace=False)
    pytest.skip(why)


class Kamailio:
    """deploy/kamailio/kamailio.cfg on 127.0.0.1:``port`` dispatching to ``nodes``
    ("host:port" each, probed with OPTIONS every ``ping_interval`` seconds, a probe or a
    new call without an answer after ``fr_timer_ms`` a dead node), with ``children`` UDP
    worker processes and ``shared_mb`` MB of shared memory (its transactions);
    ``defines`` are more ``-A NAME=VALUE`` settings (``LOG_LEVEL=1``, ``WITH_PROBE_LOG``).

    The defaults (probes every second, 1000 ms to answer) find a dead node fast, but
    break deploy/kamailio/README.md's rule of ``FR_TIMER`` below the ping interval: the
    probe sent while a node was dead times out at the tick the next one is sent, and can
    be counted after that one's 200 from the node started again, taking it out for
    another second (:meth:`wait_node` waits that out); test_kamailio_workers, which
    watches a restarted worker come back, gives ``ping_interval=2``."""

    def __init__(self, workdir: Path, nodes: Sequence[str], *, ping_interval: int = 1,
                 fr_timer_ms: int = 1000, children: int = 2, shared_mb: int = 64,
                 defines: Sequence[str] = ()) -> None:
        self.workdir = workdir / "kamailio"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = peers.free_udp_port()
        self.list_file = self.workdir / "dispatcher.list"
        self.list_file.write_text("".join(f"1 sip:{node} 8\n" for node in nodes))
        self.log_path = self.workdir / "kamailio.log"
        self.command = [
            "kamailio", "-f", str(CONFIG), "-DD", "-E", "-Y", str(self.workdir),
            "-m", str(shared_mb), "-M", "8",
            "-A", f"LISTEN=udp:{peers.LOCALHOST}:{self.port}",
            "-A", f'DISPATCHER_LIST="{self.list_file}"',
            "-A", f"PING_INTERVAL={ping_interval}",
            "-A", f"FR_TIMER={fr_timer_ms}",
            "-A", f"CHILDREN={children}",
            *(arg for define in defines for arg in ("-A", define)),
        ]
        self.proc: subprocess.Popen | None = None

    @property
    def target(self) -> str:
        return f"{peers.LOCALHOST}:{self.port}"

    def check(self) -> subprocess.CompletedProcess:
        """``kamailio -c``: the configuration parses with these settings."""
        command = [self.command[0], "-c", *self.command[1:]]
        command.remove("-DD")
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    def start(self, timeout: float = 15.0) -> Kamailio:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command, cwd=self.workdir,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            peers.wait_bound(self.port, self.proc, timeout)
        except peers.PeerError as exc:
            self.stop()
            raise peers.PeerError(f"{exc}; its log:\n{self.log()[-3000:]}") from exc
        return self

    def stop(self) -> int | None:
        """SIGTERM (Kamailio stops its children and exits), SIGKILL after 5 s."""
        peers._stop(self.proc, (signal.SIGTERM, 5.0))
        return self.proc.returncode if self.proc is not None else None

    def pids(self) -> list[int]:
        """Kamailio's processes: the main one and the workers it forked."""
        return process_tree(self.proc.pid) if self.proc is not None else []

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def lines(self, pattern: str) -> list[str]:
        regex = re.compile(pattern)
        return [line for line in self.log().splitlines() if regex.search(line)]

    def wait_for(self, pattern: str, timeout: float, *, count: int = 1) -> list[str]:
        """The log lines matching ``pattern`` once there are ``count`` of them; raises
        AssertionError with the log's tail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.lines(pattern)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} lines matching {pattern!r} in Kamailio's "
                                     f"log within {timeout} s; its end:\n"
                                     f"{self.log()[-3000:]}")
            time.sleep(0.05)

    def dispatcher_view(self) -> dict[str, str]:
        """The dispatcher's view through kamcmd (the ctl module's socket in the run
        directory): node URI -> its flags ("AP" active and probed, "IP" inactive)."""
        out = subprocess.run(["kamcmd", "-s", f"unix:{self.workdir}/kamailio_ctl",
                              "dispatcher.list"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
        return dict(re.findall(r"URI: (\S+)\s+FLAGS: (\S+)", out))

    def node_state(self, address: str) -> str | None:
        """"up" or "down": the dispatcher's last line about node ``address`` (host:port)
        in the log, None before any. What the log says, not always the state: see
        :meth:`node_view`."""
        changes = self.lines(rf"dispatcher: node sip:{re.escape(address)} (up|down)$")
        return changes[-1].rsplit(" ", 1)[1] if changes else None

    def node_view(self, address: str) -> str | None:
        """"up" or "down": node ``address``'s state in the dispatcher itself (kamcmd's
        view: flags A active or T trying, both still chosen, are up; I inactive and D
        disabled are down), None for a node not in the list.

        The log's lines cannot stand in for it. Kamailio 5.6 changes a node's state in
        whichever process learns something (the timer process for a probe that timed
        out, a receiver for a probe's 200) without a lock held from the change to its
        event route's line: when the probe sent while a worker was dead times out at
        the moment the next probe's 200 from its restart arrives, the two lines can be
        written in the other order than the changes, "up" then "down" with the node
        left up, and since the state no longer changes nothing more is logged (CI: the
        test waited 15 s for an "up" while the node took its probes)."""
        flags = self.dispatcher_view().get(f"sip:{address}")
        if flags is None:
            return None
        return "up" if flags[:1] in ("A", "T") else "down"

    def wait_node(self, address: str, state: str, timeout: float, *, settle: float = 1.5
                  ) -> float:
        """Wait until the dispatcher has node ``address`` in ``state`` ("up" or "down",
        :meth:`node_view`) and keeps it there for ``settle`` seconds of probes (a probe
        sent while the node was dead can time out after it came back, and take it out
        once more until the next probe); returns the seconds it took to be in ``state``
        first. Raises AssertionError after ``timeout``, with the states seen."""
        start = time.monotonic()
        first: float | None = None
        since = start  # when the state last changed
        seen: list[tuple[float, str | None]] = []
        while True:
            now = time.monotonic()
            current = self.node_view(address)
            if not seen or seen[-1][1] != current:
                seen.append((now - start, current))
                since = now
            if current == state:
                first = first if first is not None else now - start
                if now - since >= settle:
                    return first
            if now - start > timeout + settle:
                changes = ", ".join(f"{what} at {at:.1f} s" for at, what in seen)
                raise AssertionError(f"the dispatcher did not keep node {address} {state} "
                                     f"for {settle} s within {timeout} s (its states: "
                                     f"{changes}); Kamailio's log's end:\n"
                                     f"{self.log()[-3000:]}")
            time.sleep(0.1)

    def __enter__(self) -> Kamailio:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it, from /proc (Kamailio forks its workers from
    its main process; a process that exits while we look is left out)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            todo += map(int, Path(f"/proc/{current}/task/{current}/children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def workers_by_port(supervisor: int) -> dict[int, int]:
    """The live workers of a ``uascall run --workers`` supervisor (pid ``supervisor``):
    SIP port -> pid, from their command lines (``--listen HOST:PORT``)."""
    found = {}
    try:
        children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text()
    except FileNotFoundError:
        return found
    for child in map(int, children.split()):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if b"--listen" not in argv:
            continue  # a worker that died and is not reaped yet (empty cmdline)
        listen = argv[argv.index(b"--listen") + 1].decode()
        found[int(listen.rsplit(":", 1)[1])] = child
    return found


def proxied_scenario(name: str, workdir: Path) -> Path:
    """A copy of scenario ``name`` whose requests in the dialog (ACK for the 200, BYE)
    carry SIPp's ``[routes]``: the Route headers from the 200's Record-Route, so that
    they go through the proxy as RFC 3261 12.2.1.1 wants."""
    text = peers.scenario_path(name).read_text()
    text = re.sub(r"(\n([ \t]*)(?:ACK|BYE) \[\$contact\] SIP/2\.0\n(?:.*\n)*?"
                  r"[ \t]*Max-Forwards: 70\n)",
                  lambda m: m.group(1) + m.group(2) + "[routes]\n", text)
    if "[routes]" not in text:
        raise ValueError(f"{name}: no ACK or BYE to the Contact found to add [routes] to")
    path = workdir / f"proxied_{Path(name).name}"
    path.write_text(text)
    return path
