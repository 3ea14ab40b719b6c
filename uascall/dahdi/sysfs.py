"""DAHDI's spans and channels as the kernel shows them, for ``uascall channels`` when no
uascall runs.

Two sources, the first found wins:

- sysfs (DAHDI 2.6 on): ``/sys/bus/dahdi_spans/devices/span-N/`` with one value a file
  (``name``, ``desc``, ``spantype``, ``alarms`` as ``0x%x``, ``basechan``, ``channels``,
  ``lineconfig``...), and ``/sys/bus/dahdi_channels/devices/dahdi!channels!SPAN!POS/``
  (``channo``, ``chanpos``, ``name``, ``sig`` as /proc names it, ``alarms`` as names,
  ``in_use`` 0 or 1...).
- ``/proc/dahdi/N``, one file a span: ``Span 1: TE4/0/1 "T4XXP Card 0 Span 1" (MASTER)
  HDB3/CCS/CRC4 RED``, then counters indented by a tab, a blank line, and a line a
  channel: ``<tab>%4d NAME SIG (In use) ALARMS (EC: NAME - ACTIVE)``.

Neither says whether a D-channel's layer 2 is up (no libpri runs) or which switch type
is meant: those come from a running uascall only.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from uascall.dahdi.abi import alarm_names
from uascall.status import Snapshot, channel_row, span_row

log = logging.getLogger(__name__)

SPANS_DIR = "bus/dahdi_spans/devices"
CHANNELS_DIR = "bus/dahdi_channels/devices"
#: what the kernel calls an HDLC signalling channel (a PRI's D-channel)
HDLC = ("HDLCFCS", "HDLCRAW", "HDLCNET", "Hardware-assisted HDLC")
_SIGNALLING = ("FXSLS", "FXSKS", "FXSGS", "FXOLS", "FXOKS", "FXOGS", "E&M-E1", "E&M",
               "Clear", "HDLCRAW", "HDLCFCS", "HDLCNET", "Hardware-assisted HDLC", "MTP2",
               "Slave", "CAS", "DACS+RBS", "DACS", "SF (ToneOnly)", "Unconfigured",
               "Reserved")
_ALARMS = ("BLUE", "YELLOW", "RED", "LOOP", "RECOVERING", "NOTOPEN")


def law_of(kind: str) -> str:
    """The law a span of this type carries by default (E1 A-law, T1 and J1 mu-law)."""
    return {"E1": "alaw", "T1": "ulaw", "J1": "ulaw"}.get(kind.upper(), "")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def _number(text: str) -> int | None:
    try:
        return int(text, 0)
    except ValueError:
        return None


def read_sysfs(root: str | Path = "/sys") -> Snapshot | None:
    """The spans and channels under ``root``'s DAHDI buses; None when there are none."""
    spans_dir = Path(root) / SPANS_DIR
    channels_dir = Path(root) / CHANNELS_DIR
    if not spans_dir.is_dir():
        return None
    spans = []
    for span_dir in sorted(spans_dir.glob("span-*"), key=lambda p: _number(p.name[5:]) or 0):
        number = _number(span_dir.name[5:])
        if number is None:
            continue
        kind = _read(span_dir / "spantype")
        alarms = _number(_read(span_dir / "alarms")) or 0
        desc = _read(span_dir / "desc")
        spans.append(span_row("dahdi", number, name=_read(span_dir / "name"), kind=kind,
                              law=law_of(kind), alarms=alarm_names(alarms),
                              description=desc, lineconfig=_read(span_dir / "lineconfig")))
    channels = []
    entries = sorted(channels_dir.glob("dahdi!channels!*"), key=_channel_key) \
        if channels_dir.is_dir() else []
    for chan_dir in entries:
        channo = _number(_read(chan_dir / "channo"))
        if channo is None:
            continue
        span = _number(chan_dir.name.split("!")[2])
        sig = _read(chan_dir / "sig")
        channels.append(channel_row(
            "dahdi", channo, span=span, signalling=sig, name=_read(chan_dir / "name"),
            in_use=_read(chan_dir / "in_use") == "1",
            alarms=_read(chan_dir / "alarms").split()))
    _mark_dchannels(spans, channels)
    return {"source": "sysfs", "spans": spans, "channels": channels, "calls": []}


def _channel_key(path: Path) -> tuple[int, int]:
    parts = path.name.split("!")
    return (_number(parts[2]) or 0, _number(parts[3]) or 0) if len(parts) == 4 else (0, 0)


def _mark_dchannels(spans: list[dict[str, Any]], channels: list[dict[str, Any]]) -> None:
    """A span's D-channel is its HDLC channel: say which, and whether something has it
    open (uascall or another PRI stack); whether layer 2 is up nobody here can tell."""
    for span in spans:
        dchans = [c for c in channels if c["span"] == span["span"]
                  and c["signalling"] in HDLC]
        if dchans:
            span["dchannel_channel"] = dchans[0]["channel"]


_SPAN_LINE = re.compile(r'^Span (\d+): (\S+) "(.*)"(.*)$')
_CHANNEL_LINE = re.compile(r"^\s*(\d+) (\S+) ?(.*)$")


def parse_proc_span(text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One ``/proc/dahdi/N`` file: its span and its channels. Raises ValueError for text
    that is not in that format."""
    lines = text.splitlines()
    if not lines:
        raise ValueError("empty; expected a 'Span N: NAME \"DESC\"' line first")
    match = _SPAN_LINE.match(lines[0])
    if match is None:
        raise ValueError(f"first line {lines[0]!r}; expected 'Span N: NAME \"DESC\" ...'")
    number, name, desc, rest = int(match[1]), match[2], match[3], match[4].split()
    master = "(MASTER)" in rest
    alarms = [word for word in rest if word in _ALARMS]
    lineconfig = next((w for w in rest if "/" in w), "")
    kind = ("E1" if "HDB3" in lineconfig or "CRC4" in lineconfig
            else "T1" if lineconfig.startswith(("B8ZS", "AMI")) else "")
    span = span_row("dahdi", number, name=name, kind=kind, law=law_of(kind), alarms=alarms,
                    description=desc, lineconfig=lineconfig, sync_master=master)
    channels = []
    for line in lines[1:]:
        if not line.strip() or ":" in line.split("(")[0]:
            continue  # the blank line, a counter ("IRQ misses: 0")
        found = _CHANNEL_LINE.match(line)
        if found is None:
            continue
        channo, chan_name, tail = int(found[1]), found[2], found[3]
        sig = next((s for s in _SIGNALLING if tail.startswith(s)), "")
        tail = tail[len(sig):]
        in_use = "(In use)" in tail
        words = re.sub(r"\(EC: [^)]*\)|\(In use\)|\(no pcm\)|Master", " ", tail).split()
        channels.append(channel_row("dahdi", channo, span=number, signalling=sig,
                                    name=chan_name, in_use=in_use,
                                    alarms=[w for w in words if w in _ALARMS]))
    return span, channels


def read_proc(root: str | Path = "/proc") -> Snapshot | None:
    """The spans and channels in ``root``/dahdi; None when there is no such directory."""
    folder = Path(root) / "dahdi"
    if not folder.is_dir():
        return None
    spans, channels = [], []
    for path in sorted(folder.iterdir(), key=lambda p: _number(p.name) or 0):
        if _number(path.name) is None:
            continue  # not a span's file
        try:
            span, chans = parse_proc_span(path.read_text(errors="replace"))
        except (OSError, ValueError) as exc:
            log.warning("%s: %s; left out", path, exc)
            continue
        spans.append(span)
        channels += chans
    _mark_dchannels(spans, channels)
    return {"source": str(folder), "spans": spans, "channels": channels, "calls": []}


def read(sysfs: str | Path = "/sys", proc: str | Path = "/proc") -> Snapshot | None:
    """sysfs if it has DAHDI's buses, else /proc/dahdi; None when neither is there (no
    DAHDI driver loaded)."""
    return read_sysfs(sysfs) or read_proc(proc)
