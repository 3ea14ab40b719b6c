"""``--trace FILE.pcapng`` and its options, for ``uascall run``, ``call`` and ``demo``.

The command adds the options with :func:`add_trace_options` and wraps its work in
:func:`tracing`, which starts the trace before the backends start and stops it (writing
what is queued) when the command is done::

    with _engine(args) as engine, tracing(engine, args) as trace:
        backend, sim = _open_backends(engine, args)
        trace.attach(backend)
        ...

Without ``--trace`` :func:`tracing` gives a :class:`Trace` that does nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

from uascall.engine import Engine
from uascall.errors import UascallError
from uascall.trace.tracer import Tracer

log = logging.getLogger(__name__)

MEGABYTE = 1_000_000


def add_trace_options(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Add ``--trace``, ``--trace-max-mb``, ``--trace-files`` and ``--trace-audio``."""
    group = parser.add_argument_group(
        "tracing", "a pcapng file for Wireshark: Q.931/Q.921 of every span (LAPD), SIP and "
        "RTP (IP/UDP), and with --trace-audio each B-channel's audio as RTP")
    group.add_argument("--trace", metavar="FILE.pcapng",
                       help="write a trace of the calls to this file")
    group.add_argument("--trace-max-mb", type=float, metavar="MB",
                       help="start a new file once one reaches this size (default: no "
                       "limit); the previous one becomes FILE.1.pcapng, and so on")
    group.add_argument("--trace-files", type=int, default=2, metavar="N",
                       help="with --trace-max-mb, keep at most N files, deleting the oldest "
                       "(default %(default)s; 1: the file starts again)")
    group.add_argument("--trace-audio", action="store_true",
                       help="trace what each B-channel carried too, as RTP (PT 8 A-law or "
                       "0 mu-law; Wireshark: Decode As RTP, or --enable-heuristic rtp_udp)")
    return group


class Trace:
    """The trace of one command (a no-op without ``--trace``)."""

    def __init__(self, engine: Engine, tracer: Tracer | None) -> None:
        self.engine = engine
        self.tracer = tracer

    def attach(self, backend: Any) -> None:
        """Tap ``backend``'s devices (before it starts): the ``dahdi`` backend's spans and
        analog ports. The ``sim`` backend's spans are tapped by the simulated loop itself,
        and SIP's UDP endpoints always report to the engine's taps."""
        if self.tracer is None:
            return
        # Only a dahdi backend needs this, and then its module is already imported: a
        # machine without libpri never imports it here.
        module = sys.modules.get("uascall.dahdi.backend")
        if module is None:
            return
        from uascall.dahdi import libpri
        from uascall.dahdi.device import OS_IO
        from uascall.trace.device import TapDeviceIO

        for each in getattr(backend, "backends", [backend]):
            if isinstance(each, module.DahdiBackend) and each.name == "dahdi":
                each.io = TapDeviceIO(each.io or OS_IO, self.engine,
                                      network=each.node == libpri.Node.NETWORK)


@contextlib.contextmanager
def tracing(engine: Engine, args: argparse.Namespace) -> Iterator[Trace]:
    """The trace ``args`` ask for (``--trace`` and the rest), running while in the
    block; the stats are logged at the end."""
    path = getattr(args, "trace", None)
    if not path:
        yield Trace(engine, None)
        return
    max_mb = getattr(args, "trace_max_mb", None)
    files = getattr(args, "trace_files", 2)
    if max_mb is not None and max_mb * MEGABYTE < 1024:
        raise UascallError(f"--trace-max-mb {max_mb}; expected at least 0.001 (a kB)")
    if files < 1:
        raise UascallError(f"--trace-files {files}; expected 1 or more")
    tracer = Tracer(engine, path, audio=getattr(args, "trace_audio", False), files=files,
                    max_bytes=None if max_mb is None else int(max_mb * MEGABYTE))
    try:
        tracer.start()
    except OSError as exc:
        raise UascallError(f"--trace {path}: cannot write there: "
                           f"{exc.strerror or exc}") from None
    try:
        yield Trace(engine, tracer)
    finally:
        stats = tracer.stop()
        log.info("trace %s: %d packets in %d file(s)%s", path, stats.records, stats.files,
                 f"; stopped early: {stats.failure}" if stats.failure else "")
