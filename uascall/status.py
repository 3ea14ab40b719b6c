"""What ``uascall channels`` shows: spans and channels, and the call on each.

A snapshot is a plain dict, the same in the process that runs the calls, on the control
socket (:mod:`uascall.control`) and read back from sysfs when no uascall runs
(:mod:`uascall.dahdi.sysfs`)::

    {"source": "uascall run (pid 4242)" | "sysfs" | "/proc/dahdi",
     "spans": [SPAN, ...], "channels": [CHANNEL, ...], "calls": [CALL, ...]}

SPAN: ``backend``, ``span`` (number), ``name``, ``kind`` (E1, T1...), ``law`` (alaw,
ulaw), ``switch`` (euroisdn_e1, ni2...; "" unknown), ``node`` (cpe, net), ``dchannel``
("up", "down"; "" unknown), ``alarms`` (list of names: RED, YELLOW...; empty: OK).

CHANNEL: ``backend``, ``channel`` (DAHDI channel number, or a SIP call's id), ``span``
(None off a span), ``signalling`` ("PRI B", "PRI D", "FXS", "FXO", "SIP", or sysfs's
FXOKS, Clear...), ``hook`` ("on", "off", ""), ``in_use`` (bool), ``state`` (the call's
state as the application sees it, else the backend's own: "idle", "alerting"...),
``call`` (the application instance on it, "" none), ``far_end`` (the other party's
number or address), ``direction`` ("inbound", "outbound", ""), ``duration`` (seconds
since the instance started, None without one), ``codec`` ("alaw", "ulaw", ""),
``alarms`` (list of names).

CALL: what the host knows of each running instance: ``call`` (instance id),
``call_id``, ``state``, ``direction``, ``far_end``, ``where`` (``Details.channel``),
``duration``.

``backend_counters``: each backend's own counters by its name (the SIP backend's INVITEs
refused with 503, its RTP streams' underruns...).

Each backend contributes its spans, channels and counters (:meth:`Backend.status`, on the
engine thread); the host's calls are put on the channels they use by the backend that knows
its own legs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from uascall import faultlog

if TYPE_CHECKING:
    from uascall.app import AppHost
    from uascall.backend import Backend, CallLeg

log = logging.getLogger(__name__)

Snapshot = dict[str, Any]


def host_calls(host: AppHost) -> dict[CallLeg, dict[str, Any]]:
    """Engine thread: what the host knows of each running instance's call, by its leg."""
    now = host.engine.time()
    calls: dict[CallLeg, dict[str, Any]] = {}
    for instance_id, channel, start in host.running_instances():
        details = channel.Details
        # the channel's current leg: what the backend's rows are matched to
        leg = getattr(channel, "_leg", None)
        incoming = details.direction == "inbound"
        info = {"call": instance_id, "call_id": details.call_id,
                "state": channel.state().value, "direction": details.direction,
                "far_end": details.call_from if incoming else details.call_to,
                "where": details.channel, "duration": round(now - start, 1)}
        if leg is not None:
            calls[leg] = info
    return calls


def snapshot(host: AppHost, backends: Sequence[Backend], source: str = "") -> Snapshot:
    """Engine thread: the spans, channels and calls of a running host. A backend whose
    part fails is left out (and the failure kept in the fault log), not the listing."""
    calls = host_calls(host)
    spans: list[dict[str, Any]] = []
    channels: list[dict[str, Any]] = []
    counters: dict[str, dict[str, Any]] = {}
    for backend in backends:
        try:
            part = backend.status(calls)
        except Exception as exc:
            faultlog.record(f"the {backend.name} backend's status", exc)
            continue
        spans += part.get("spans", [])
        channels += part.get("channels", [])
        if part.get("counters"):
            counters[backend.name] = part["counters"]
    return {"source": source or f"uascall (pid {os.getpid()})", "spans": spans,
            "channels": channels, "calls": list(calls.values()),
            "backend_counters": counters}


def channel_row(backend: str, channel: int | str, **fields: Any) -> dict[str, Any]:
    """A CHANNEL dict with every key, the ones not given empty."""
    row: dict[str, Any] = {"backend": backend, "channel": channel, "span": None,
                           "signalling": "", "hook": "", "in_use": False, "state": "",
                           "call": "", "far_end": "", "direction": "", "duration": None,
                           "codec": "", "alarms": []}
    row.update(fields)
    return row


def with_call(row: dict[str, Any], call: dict[str, Any] | None) -> dict[str, Any]:
    """``row`` with the host's ``call`` on it (its state wins over the backend's)."""
    if call is not None:
        row.update(in_use=True, call=call["call"], state=call["state"],
                   far_end=call["far_end"] or row["far_end"], direction=call["direction"],
                   duration=call["duration"])
    return row


def span_row(backend: str, span: int, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"backend": backend, "span": span, "name": "", "kind": "",
                           "law": "", "switch": "", "node": "", "dchannel": "",
                           "alarms": []}
    row.update(fields)
    return row


# --------------------------------------------------------------------------- rendering
def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def _table(headings: Sequence[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headings)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headings, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return lines


def render(snap: Snapshot) -> str:
    """The listing as text, in the manner of ``dahdi show channels``."""
    lines = [f"from {snap.get('source', '?')}", ""]
    spans = snap.get("spans", [])
    if spans:
        lines += _table(
            ["Span", "Backend", "Name", "Kind", "Law", "Switch", "D-channel", "Alarms"],
            [[str(s["span"]), s["backend"], s["name"], s["kind"], s["law"],
              s["switch"] or "-", s["dchannel"] or "-", " ".join(s["alarms"]) or "OK"]
             for s in spans])
    else:
        lines.append("no spans")
    lines.append("")
    channels = snap.get("channels", [])
    if channels:
        lines += _table(
            ["Chan", "Span", "Backend", "Signalling", "Hook", "State", "Call", "Far end",
             "Duration", "Codec", "Alarms"],
            [[str(c["channel"]), "" if c["span"] is None else str(c["span"]), c["backend"],
              c["signalling"], c["hook"], c["state"] or ("in use" if c["in_use"] else ""),
              c["call"], c["far_end"], _duration(c["duration"]), c["codec"],
              " ".join(c["alarms"])] for c in channels])
    else:
        lines.append("no channels")
    return "\n".join(lines)
