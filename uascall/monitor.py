"""``uascall monitor``: a live view of a running uascall, a few times a second.

What the control socket's ``monitor`` request gives (:mod:`uascall.stats`): each call
with its state, duration, levels in and out, the keys heard and the far end; the spans
with their alarms and D-channels; the counters (calls by cause, INVITEs refused with 503,
media underruns, late ticks, the engine's lag). Drawn with rich in the terminal's
alternate screen, in 80x24 and up, over SSH too (plain escape codes a terminal knows).
``q`` or Ctrl-C ends it with status 0; when the uascall process ends, the view says so
and waits for the next one.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from uascall.control import ControlClient, NotRunning, default_path
from uascall.errors import UascallError

#: seconds between two refreshes
INTERVAL = 0.25


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def _level(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"


def view(snap: dict[str, Any] | None, *, path: Path, note: str = "") -> Group:
    """One screen of the monitor for ``snap`` (None: no uascall answers)."""
    title = Text(f"uascall monitor  {time.strftime('%H:%M:%S')}  ", style="bold")
    if snap is None:
        title.append(f"no uascall serves {path}; waiting", style="yellow")
        return Group(title, Text(note), Text("q: quit", style="dim"))
    title.append(snap.get("source", ""))
    parts: list[Any] = [title]
    spans = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for heading in ("Span", "Backend", "Kind", "Law", "Switch", "D-chan", "Alarms"):
        spans.add_column(heading, no_wrap=True)
    for s in snap.get("spans", []):
        alarms = " ".join(s["alarms"])
        spans.add_row(str(s["span"]), s["backend"], s["kind"], s["law"], s["switch"] or "-",
                      s["dchannel"] or "-", Text(alarms or "OK",
                                                 style="bold red" if alarms else "green"))
    if snap.get("spans"):
        parts.append(spans)
    calls = Table(box=None, pad_edge=False, show_edge=False, header_style="bold",
                  title_justify="left")
    for heading in ("Call", "Chan", "State", "Dur", "In", "Out", "Keys", "Far end"):
        calls.add_column(heading, no_wrap=True, overflow="ellipsis")
    rows = [c for c in snap.get("channels", []) if c.get("call")]
    on_channels = {c["call"] for c in rows}
    for c in rows:
        calls.add_row(c["call"], str(c["channel"]), c["state"], _duration(c["duration"]),
                      _level(c.get("level_in")), _level(c.get("level_out")),
                      c.get("digits", ""), c["far_end"])
    for call in snap.get("calls", []):
        if call["call"] not in on_channels:  # an outbound channel with no call yet
            calls.add_row(call["call"], "", call["state"], _duration(call["duration"]),
                          "", "", call.get("digits", ""), call["far_end"])
    counters = snap.get("counters", {})
    parts.append(Text(f"Calls up {counters.get('calls_up', 0)}, ended "
                      f"{counters.get('calls_total', 0)}", style="bold"))
    if calls.row_count:
        parts.append(calls)
    else:
        parts.append(Text("no calls", style="dim"))
    by_cause = counters.get("calls_by_cause", {})
    causes = ", ".join(f"{cause} {count}" for cause, count in
                       sorted(by_cause.items(), key=lambda item: -item[1])) or "none"
    sip = counters.get("sip", {})
    late = counters.get("late_ticks", 0) + sum(
        part.get("late_ticks", 0) for part in counters.values() if isinstance(part, dict))
    parts.append(Text(f"By cause: {causes}"))
    parts.append(Text(f"503s {sip.get('setups_refused', 0)}  underruns "
                      f"{sip.get('media_underruns', 0)}  late ticks {late}  engine lag "
                      f"{counters.get('engine_lag_last', 0) * 1000:.1f} ms (max "
                      f"{counters.get('engine_lag_max', 0) * 1000:.1f})"))
    parts.append(Text(note + ("  " if note else "") + "q: quit", style="dim"))
    return Group(*parts)


@contextlib.contextmanager
def _keys() -> Iterator[int | None]:
    """stdin in cbreak mode (a key at a time, no echo; Ctrl-C still interrupts), put
    back as it was afterwards; None when stdin is no terminal."""
    fd = sys.stdin.fileno() if sys.stdin is not None else -1
    if fd < 0 or not os.isatty(fd):
        yield None
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _quit_pressed(fd: int | None, timeout: float) -> bool:
    if fd is None:
        time.sleep(timeout)
        return False
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        return False
    return os.read(fd, 64).lower().startswith(b"q")


def _fetch(client: ControlClient | None, path: Path
           ) -> tuple[ControlClient | None, dict[str, Any] | None, str]:
    """The next snapshot, connecting (again) when needed."""
    try:
        if client is None:
            client = ControlClient(path)
        return client, client.request("monitor"), ""
    except NotRunning:
        return None, None, ""
    except UascallError as exc:
        if client is not None:
            client.close()
        return None, None, str(exc)


def run(path: str | os.PathLike[str] | None = None, *, once: bool = False,
        interval: float = INTERVAL, console: Console | None = None) -> int:
    """The monitor until q or Ctrl-C (status 0); with ``once`` one screen, printed."""
    where = Path(path) if path is not None else default_path()
    console = console or Console()
    client, snap, note = _fetch(None, where)
    if once:
        console.print(view(snap, path=where, note=note))
        if client is not None:
            client.close()
        return 0 if snap is not None else 1
    try:
        with _keys() as keys, Live(view(snap, path=where, note=note), console=console,
                                   screen=True, auto_refresh=False) as live:
            while not _quit_pressed(keys, interval):
                client, snap, note = _fetch(client, where)
                live.update(view(snap, path=where, note=note), refresh=True)
    except KeyboardInterrupt:
        pass
    finally:
        if client is not None:
            client.close()
    return 0
