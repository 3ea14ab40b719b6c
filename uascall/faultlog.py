"""Failures counted by cause and logged once per cause, never once per occurrence.

The engine runs every callback under a guard; a callback that fails on every datagram or
every frame (a bug that bad input reaches, a device that keeps failing) would otherwise
write a traceback per occurrence: tens of thousands a second, the disk filled and the real
news buried. Here a *cause* is where the failure happened and what it was: the callback,
the exception's type and the innermost line of the traceback. The first occurrence of a
cause is logged with its traceback; later ones are counted and summed up in one line at
most every :data:`REPORT_INTERVAL` seconds, and once more when the log is closed.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: seconds between two summary lines of one cause's repeats
REPORT_INTERVAL = 60.0
#: distinct causes remembered; more are counted together (a bug that makes every failure
#: look new, e.g. an exception type made per call, must not grow this without bound)
MAX_CAUSES = 256


@dataclass(frozen=True)
class Cause:
    """Where a failure happened and what it was."""

    where: str  # "callback PriSpan._reschedule", "fd 7 handler UdpEndpoint._readable"
    error: str  # the exception's type, e.g. "RuntimeError"
    line: str  # the innermost traceback entry, "uascall/sip/call.py:412 in _on_ack"

    def __str__(self) -> str:
        return f"{self.where}: {self.error} at {self.line}"


@dataclass
class _Tally:
    count: int = 1
    reported: int = 1  # the count when it was last logged
    last_report: float = 0.0


def describe_callable(callback: Any) -> str:
    """A short stable name for a callback (a bound method's class and name, a function's
    qualified name): stable across calls, unlike its repr with an address."""
    function = getattr(callback, "__func__", callback)
    name = getattr(function, "__qualname__", None) or type(callback).__qualname__
    return name


def cause_of(where: str, exc: BaseException) -> Cause:
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        line = f"{_short_path(last.filename)}:{last.lineno} in {last.name}"
    else:
        line = "(no traceback)"
    return Cause(where, type(exc).__qualname__, line)


def _short_path(path: str) -> str:
    marker = path.rfind("/uascall/")
    return path[marker + 1:] if marker >= 0 else path


class FaultLog:
    """Failures by cause (an engine's, or the process's: any thread)."""

    def __init__(self, name: str, clock: Any = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self._tallies: dict[Cause, _Tally] = {}
        self.overflow = 0  # failures of causes beyond MAX_CAUSES
        self._lock = threading.Lock()

    def record(self, where: str, exc: BaseException, context: object = "") -> Cause:
        """Count one failure; log it if its cause is new or its summary is due.

        ``where`` names the place (stable: no call or frame in it, or every call would be
        a new cause); ``context`` (the call, the event) is shown with the first
        occurrence only."""
        with self._lock:
            return self._record(where, exc, context)

    def _record(self, where: str, exc: BaseException, context: object) -> Cause:
        cause = cause_of(where, exc)
        tally = self._tallies.get(cause)
        now = self._clock()
        if tally is None:
            if len(self._tallies) >= MAX_CAUSES:
                self.overflow += 1
                if self.overflow == 1:
                    log.error("%s: more than %d distinct causes of failure; the rest are "
                              "counted together (first: %s: %s)", self.name, MAX_CAUSES,
                              cause, exc)
                return cause
            self._tallies[cause] = _Tally(last_report=now)
            on = f" on {context}" if context != "" else ""
            log.error("%s: %s failed%s: %s: %s (the first failure of this kind; repeats "
                      "are counted and reported every %g s)", self.name, where, on,
                      type(exc).__qualname__, exc, REPORT_INTERVAL, exc_info=exc)
            return cause
        tally.count += 1
        if now - tally.last_report >= REPORT_INTERVAL:
            self._report(cause, tally, now, exc)
        return cause

    def _report(self, cause: Cause, tally: _Tally, now: float,
                exc: BaseException | None = None) -> None:
        latest = f" (latest: {exc})" if exc is not None else ""
        log.error("%s: %s: %d more time(s) in the last %.0f s, %d in all%s", self.name,
                  cause, tally.count - tally.reported, now - tally.last_report, tally.count,
                  latest)
        tally.reported = tally.count
        tally.last_report = now

    def close(self) -> None:
        """Report every count not reported yet (when the engine stops)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        now = self._clock()
        for cause, tally in self._tallies.items():
            if tally.count > tally.reported:
                self._report(cause, tally, now)
        if self.overflow:
            log.error("%s: %d failure(s) of causes beyond the first %d", self.name,
                      self.overflow, MAX_CAUSES)

    def counts(self) -> dict[str, int]:
        """Failures so far by cause (for a view or a metric)."""
        with self._lock:
            return self._counts()

    def _counts(self) -> dict[str, int]:
        counts = {str(cause): tally.count for cause, tally in self._tallies.items()}
        if self.overflow:
            counts["(other causes)"] = self.overflow
        return counts

    def total(self) -> int:
        with self._lock:
            return sum(tally.count for tally in self._tallies.values()) + self.overflow


#: for code with no engine at hand (a DSP bank, the libpri binding's callbacks)
PROCESS = FaultLog("uascall")


def record(where: str, exc: BaseException, context: object = "") -> Cause:
    """Count a failure in the process's log (see :class:`FaultLog`)."""
    return PROCESS.record(where, exc, context)
