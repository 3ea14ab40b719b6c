"""``uascall run ... --backend sip --workers N``: N processes, one supervisor.

Theory of operation
-------------------
One Python process serves calls on one engine thread; to use more cores, ``--workers N``
runs N copies of the same ``uascall run`` command, each its own process with its own
engine, SIP port and call records, behind a proxy that spreads the calls over them
(deploy/kamailio/). :func:`supervise` is the supervisor: it does no SIP itself.

Each worker's command is the supervisor's with ``--workers`` removed and, for worker
``i`` (0 .. N-1):

- every ``--listen HOST:PORT`` becomes ``HOST:PORT+i`` (none given: 127.0.0.1:5060+i,
  the backend's default port); a port 0 stays 0;
- ``--records FILE`` becomes ``FILE`` with ``.wI`` before its suffix (calls.sqlite ->
  calls.w0.sqlite ...), so that no two processes write one SQLite file;
- ``--trace FILE`` likewise, ``--metrics HOST:PORT`` becomes ``HOST:PORT+i``;
- ``--control PATH`` becomes ``PATH.wI``; without it the first worker takes the default
  path and the others have none (``--control none``).

The workers run in sessions of their own, so that a Ctrl-C at the terminal reaches the
supervisor only, which passes it on once to every worker: each does with it what
``uascall run`` does alone (SIGINT: hang the calls up and stop). A second signal is passed
on too (the workers then stop at once). A supervisor that is killed outright (SIGKILL, the
OOM killer) cannot pass anything on: on Linux the kernel then sends each worker SIGTERM
(``PR_SET_PDEATHSIG``), so that it drains and exits instead of holding its port against
the supervisor started again. A worker that dies (a signal, a non-zero return code) is
started again on its port after :data:`RESTART_DELAY` seconds, doubled for each
exit within :data:`STABLE_AFTER` seconds of its start, up to :data:`MAX_RESTART_DELAY`.
One that exits 0 was told to (a SIGTERM of its own: one node of the pool taken out for
maintenance, drained): it is left stopped, and SIGHUP to the supervisor starts it again.
The supervisor returns 0 once every worker has exited 0 after the stop, else 1.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from uascall.errors import ArgumentError

log = logging.getLogger(__name__)

#: seconds before a worker that exited unasked is started again (doubled per quick exit)
RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
#: a worker that ran this long before it exited is restarted after RESTART_DELAY again
STABLE_AFTER = 60.0
#: how often the supervisor looks at its workers (seconds)
POLL_INTERVAL = 0.2
#: SIP's port when the command gives no --listen (the sip backend's default for run)
DEFAULT_SIP_PORT = 5060
#: prctl(2): the signal a process gets when the thread that started it exits
PR_SET_PDEATHSIG = 1


def _option_values(argv: list[str], name: str) -> list[tuple[int, str]]:
    """(index of the value, value) of each ``name VALUE`` or ``name=VALUE`` in argv."""
    found = []
    for index, word in enumerate(argv):
        if word == name and index + 1 < len(argv):
            found.append((index + 1, argv[index + 1]))
        elif word.startswith(name + "="):
            found.append((index, word[len(name) + 1:]))
    return found


def _set_value(argv: list[str], index: int, name: str, value: str) -> None:
    argv[index] = f"{name}={value}" if argv[index].startswith(name + "=") else value


def _remove_option(argv: list[str], name: str) -> list[str]:
    out: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == name:
            skip = True
        elif not word.startswith(name + "="):
            out.append(word)
    return out


def _port_plus(hostport: str, offset: int, option: str) -> str:
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ArgumentError(f"{option} {hostport!r}: expected HOST:PORT with --workers")
    number = int(port)
    if number == 0:
        return hostport
    if number + offset > 65535:
        raise ArgumentError(f"{option} {hostport!r}: worker {offset} would need port "
                            f"{number + offset}; expected a port that leaves room for "
                            "every worker below 65536")
    return f"{host}:{number + offset}"


def _suffixed(path: str, worker: int) -> str:
    p = Path(path)
    return str(p.with_name(f"{p.stem}.w{worker}{p.suffix}")) if p.suffix else f"{path}.w{worker}"


def worker_argv(argv: Sequence[str], worker: int) -> list[str]:
    """Worker ``worker``'s ``uascall`` arguments from the supervisor's (see the module
    docstring). Raises ArgumentError for a command that cannot be split."""
    out = _remove_option(list(argv), "--workers")
    if "run" not in out:
        raise ArgumentError("--workers is an option of `uascall run`")
    backends = [value for _, value in _option_values(out, "--backend")]
    if backends != ["sip"] * len(backends) or not backends:
        raise ArgumentError(f"--workers needs --backend sip alone (given: "
                            f"{', '.join(backends) or 'the default, sim'}): only SIP calls "
                            "can be spread over processes by a proxy")
    listens = _option_values(out, "--listen")
    if listens:
        for index, value in listens:
            _set_value(out, index, "--listen", _port_plus(value, worker, "--listen"))
    else:
        out += ["--listen", f"127.0.0.1:{DEFAULT_SIP_PORT + worker}"]
    for name in ("--records", "--trace"):
        for index, value in _option_values(out, name):
            _set_value(out, index, name, _suffixed(value, worker))
    for index, value in _option_values(out, "--metrics"):
        _set_value(out, index, "--metrics", _port_plus(value, worker, "--metrics"))
    controls = _option_values(out, "--control")
    if controls:
        for index, value in controls:
            if value != "none":
                _set_value(out, index, "--control", f"{value}.w{worker}")
    elif worker > 0:
        out += ["--control", "none"]
    return out


@dataclass
class Worker:
    number: int
    command: list[str]
    proc: subprocess.Popen | None = None
    started: float = 0.0
    restart_at: float | None = None
    delay: float = RESTART_DELAY
    starts: int = 0
    returncodes: list[int] = field(default_factory=list)
    #: it stopped cleanly (return code 0: it was told to, a SIGTERM of its own to take it
    #: out of service) and is left stopped until the supervisor gets SIGHUP
    left: bool = False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _stop_with(parent: int) -> Callable[[], None] | None:
    """What a worker runs before its ``exec`` (Linux): SIGTERM to itself when ``parent``
    (the supervisor's starting thread) goes, however it goes; at once if it has already
    gone. None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arrange() -> None:  # in the child, between fork and exec: no locks, no logging
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
    return arrange


class Supervisor:
    """Starts the workers, restarts one that dies, passes the stop signals on."""

    def __init__(self, commands: Sequence[Sequence[str]], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.workers = [Worker(number, list(command)) for number, command in
                        enumerate(commands)]
        self.clock = clock
        self.stopping = False
        self.signals: list[int] = []

    def start(self) -> None:
        for worker in self.workers:
            self._start(worker)

    def _start(self, worker: Worker) -> None:
        env = {**os.environ, "UASCALL_WORKER": str(worker.number)}
        # A session of its own: a Ctrl-C at the terminal is the supervisor's to pass on
        # once; had the workers got it too, the supervisor's would be their second.
        worker.proc = subprocess.Popen(worker.command, env=env, stdin=subprocess.DEVNULL,
                                       start_new_session=True,
                                       preexec_fn=_stop_with(os.getpid()))
        worker.started = self.clock()
        worker.restart_at = None
        worker.starts += 1
        log.info("worker %d started (pid %d)%s", worker.number, worker.proc.pid,
                 f", start {worker.starts}" if worker.starts > 1 else "")

    def signal(self, signum: int) -> None:
        """Stop: pass ``signum`` on to every live worker (a second call: again)."""
        self.stopping = True
        self.signals.append(signum)
        for worker in self.workers:
            if worker.alive:
                assert worker.proc is not None
                try:
                    worker.proc.send_signal(signum)
                except ProcessLookupError:
                    pass

    def revive(self) -> None:
        """Start again the workers left stopped (SIGHUP)."""
        for worker in self.workers:
            if worker.left and not self.stopping:
                worker.left = False
                self._start(worker)

    def poll(self) -> bool:
        """Look after the workers once; False when they are all gone after a stop."""
        now = self.clock()
        for worker in self.workers:
            if worker.proc is not None and not worker.alive and worker.restart_at is None:
                code = worker.proc.returncode
                worker.returncodes.append(code)
                worker.proc = None
                if self.stopping:
                    continue
                ran = now - worker.started
                if code == 0:
                    worker.left = True
                    log.info("worker %d stopped cleanly after %.1f s (it was told to); left "
                             "stopped: SIGHUP to the supervisor (pid %d) starts it again",
                             worker.number, ran, os.getpid())
                    continue
                if ran >= STABLE_AFTER or worker.starts == 1:
                    worker.delay = RESTART_DELAY
                else:  # it keeps failing: do not spin
                    worker.delay = min(worker.delay * 2, MAX_RESTART_DELAY)
                worker.restart_at = now + worker.delay
                log.warning("worker %d exited with %s after %.1f s; starting it again in "
                            "%.0f s", worker.number, _describe_returncode(code), ran,
                            worker.delay)
            if (worker.restart_at is not None and now >= worker.restart_at
                    and not self.stopping):
                self._start(worker)
        if self.stopping:
            return any(worker.alive for worker in self.workers)
        return True

    def result(self) -> int:
        last = [worker.returncodes[-1] if worker.returncodes else None
                for worker in self.workers]
        return 0 if all(code == 0 for code in last) else 1


def _describe_returncode(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"return code {code}"


def supervise(argv: Sequence[str], count: int) -> int:
    """Run ``uascall`` with ``argv`` (a ``run`` command with ``--workers``) as ``count``
    worker processes until SIGINT or SIGTERM, restarting any that dies; returns 0 when
    every worker stopped cleanly, else 1. Main thread only (it sets signal handlers)."""
    if count < 1:
        raise ArgumentError(f"--workers {count}: expected 1 or more")
    commands = [[sys.executable, "-m", "uascall", *worker_argv(argv, number)]
                for number in range(count)]
    supervisor = Supervisor(commands)
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in signals}

    def handler(signum: int, frame: object) -> None:
        supervisor.signal(signum)

    hup: list[int] = []
    for signum in signals:
        signal.signal(signum, handler)
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: hup.append(1))
    try:
        supervisor.start()
        print(f"uascall: {count} workers started; stop them with Ctrl-C or SIGTERM",
              file=sys.stderr)
        while supervisor.poll():
            if hup:  # here, not in the handler: starting a process there could deadlock
                hup.clear()
                supervisor.revive()
            time.sleep(POLL_INTERVAL)
    except BaseException:
        supervisor.signal(signal.SIGKILL)  # the supervisor failed: no orphans
        for worker in supervisor.workers:
            if worker.proc is not None:
                worker.proc.wait()
        raise
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
    code = supervisor.result()
    if code:
        print("uascall: not every worker stopped cleanly: "
              + ", ".join(f"worker {w.number}: "
                          + (_describe_returncode(w.returncodes[-1]) if w.returncodes
                             else "never ran")
                          for w in supervisor.workers), file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m uascall.workers N ARGS...``: :func:`supervise` of ``uascall ARGS``
    with N workers (what ``uascall run --workers N`` does)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or not args[0].isdigit():
        print("usage: python -m uascall.workers N run APP --backend sip [options]",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return supervise(args[1:], int(args[0]))
    except ArgumentError as exc:
        print(f"uascall: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
