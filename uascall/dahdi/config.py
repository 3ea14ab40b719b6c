"""``/etc/dahdi/system.conf``: parse it, and find each PRI span's D- and B-channels in it.

The file is dahdi_cfg's: ``span=`` and ``dynamic=`` lines define spans, ``bchan=``,
``dchan=``, ``fxoks=``... give each channel its signalling, ``alaw=``/``mulaw=``/``deflaw=``
override its companding law, ``loadzone=``/``defaultzone=`` load tone zones. We read it
the way dahdi_cfg does (``key = value``, ``#`` comments, channel lists such as
``1-15,17-31``) and report errors as ``file:line: what is wrong; what was expected``.

Channel numbers are global in DAHDI. Which span a channel belongs to follows from the
span order and sizes: T1 spans have 24 channels, E1 spans 31, BRI spans 3 and a dynamic
span the count on its line, numbered one after the other. The PRI driver checks the
result against the kernel (DAHDI_GET_PARAMS) when it opens the channels, so a layout
that does not match the boards fails with a clear message instead of a silent mix-up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from uascall.errors import ArgumentError

DEFAULT_PATH = "/etc/dahdi/system.conf"

#: signalling keywords that make a channel a PRI/BRI D-channel or B-channel
DCHANNEL_KINDS = frozenset({"dchan", "fcshdlc", "hardhdlc"})
BCHANNEL_KINDS = frozenset({"bchan", "inclear"})
SIGNALLING_KINDS = frozenset({
    "bchan", "inclear", "clear", "dchan", "fcshdlc", "hardhdlc", "rawhdlc", "nethdlc",
    "fxsls", "fxsgs", "fxsks", "fxols", "fxogs", "fxoks", "e&m", "e&me1", "em", "em_e1",
    "unused", "indclear", "sf", "dacs", "dacsrbs", "cas", "mfcr2",
})
LAW_KINDS = frozenset({"alaw", "mulaw", "deflaw"})
CHANNELS_PER_KIND = {"T1": 24, "E1": 31, "BRI": 3}


class ConfigError(ArgumentError):
    """system.conf (or a layout given in code) is not what DAHDI would accept."""


@dataclass(frozen=True, slots=True)
class SpanLine:
    """``span=<num>,<timing>,<lbo>,<framing>,<coding>[,crc4][,yellow]``"""

    number: int
    timing: int
    lbo: int
    framing: str
    coding: str
    crc4: bool = False
    yellow: bool = False

    @property
    def kind(self) -> str:
        if self.framing in ("esf", "d4", "sf", "superframe"):
            return "T1"
        if self.framing == "ccs" and self.coding == "ami":
            return "BRI"
        return "E1"

    @property
    def channels(self) -> int:
        return CHANNELS_PER_KIND[self.kind]


@dataclass(frozen=True, slots=True)
class DynamicSpanLine:
    """``dynamic=<driver>,<address>,<numchans>,<timing>``"""

    driver: str
    address: str
    channels: int
    timing: int


@dataclass(frozen=True, slots=True)
class SpanLayout:
    """Where a PRI span's channels are: its D-channel and B-channels, by global number."""

    spanno: int
    dchannel: int
    bchannels: tuple[int, ...]
    kind: str = "E1"
    #: the law used for calls we place (incoming calls use their bearer capability's)
    law: str = "alaw"

    def __post_init__(self) -> None:
        if self.dchannel in self.bchannels:
            raise ConfigError(f"span {self.spanno}: channel {self.dchannel} is both the "
                              "D-channel and a B-channel; expected distinct channels")
        if not self.bchannels:
            raise ConfigError(f"span {self.spanno}: no B-channels; expected bchan= channels "
                              "beside the D-channel")
        if self.law not in ("alaw", "ulaw"):
            raise ConfigError(f"span {self.spanno}: law {self.law!r}; expected 'alaw' or "
                              "'ulaw'")


@dataclass(frozen=True)
class SystemConf:
    """A parsed system.conf."""

    spans: tuple[SpanLine, ...] = ()
    dynamic: tuple[DynamicSpanLine, ...] = ()
    signalling: dict[int, str] = field(default_factory=dict)
    laws: dict[int, str] = field(default_factory=dict)
    zones: tuple[str, ...] = ()
    default_zone: str | None = None
    echo_cancellers: dict[int, str] = field(default_factory=dict)
    source: str = "system.conf"

    # ------------------------------------------------------------------ parsing
    @classmethod
    def read(cls, path: str | Path = DEFAULT_PATH) -> SystemConf:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}; expected the DAHDI "
                              "configuration dahdi_cfg uses") from None
        return cls.parse(text, source=str(path))

    @classmethod
    def parse(cls, text: str, *, source: str = "system.conf") -> SystemConf:
        spans: list[SpanLine] = []
        dynamic: list[DynamicSpanLine] = []
        signalling: dict[int, str] = {}
        laws: dict[int, str] = {}
        zones: list[str] = []
        default_zone = None
        echo: dict[int, str] = {}
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            where = f"{source}:{lineno}"
            if "=" not in line:
                raise ConfigError(f"{where}: {raw.strip()!r} has no '='; expected key=value")
            key, value = (part.strip() for part in line.split("=", 1))
            key = key.lower()
            if key == "span":
                spans.append(_parse_span(value, where))
            elif key == "dynamic":
                dynamic.append(_parse_dynamic(value, where))
            elif key in SIGNALLING_KINDS:
                channels = value.split(":", 1)[0]
                for channo in parse_channel_list(channels, where):
                    if channo in signalling:
                        raise ConfigError(f"{where}: channel {channo} is configured twice "
                                          f"({signalling[channo]} and {key}); expected once")
                    signalling[channo] = key
            elif key in LAW_KINDS:
                for channo in parse_channel_list(value, where):
                    laws[channo] = key
            elif key == "loadzone":
                zones.append(value)
            elif key == "defaultzone":
                default_zone = value
            elif key == "echocanceller":
                name, _, channels = value.partition(",")
                for channo in parse_channel_list(channels, where):
                    echo[channo] = name.strip()
            # Everything else (rxsig, tx gains, radio settings...) is dahdi_cfg's business
            # and not needed here; it is accepted as dahdi_cfg accepts it.
        numbers = [s.number for s in spans]
        if len(set(numbers)) != len(numbers):
            raise ConfigError(f"{source}: span numbers {numbers} repeat; expected each once")
        return cls(tuple(sorted(spans, key=lambda s: s.number)), tuple(dynamic), signalling,
                   laws, tuple(zones), default_zone, echo, source)

    # ------------------------------------------------------------------ layout
    def span_ranges(self) -> list[tuple[int, int, int, str]]:
        """(span number, first channel, channel count, kind) in DAHDI's numbering order:
        the ``span=`` spans by number, then the dynamic spans in file order."""
        ranges = []
        first = 1
        spanno = 0
        for span in self.spans:
            spanno = span.number
            ranges.append((spanno, first, span.channels, span.kind))
            first += span.channels
        for dyn in self.dynamic:
            spanno += 1
            ranges.append((spanno, first, dyn.channels, "DYNAMIC"))
            first += dyn.channels
        return ranges

    def pri_spans(self) -> list[SpanLayout]:
        """Every span that has a D-channel, with its B-channels."""
        layouts = []
        for spanno, first, count, kind in self.span_ranges():
            channels = range(first, first + count)
            dchans = [c for c in channels if self.signalling.get(c) in DCHANNEL_KINDS]
            if not dchans:
                continue
            if len(dchans) > 1:
                raise ConfigError(f"{self.source}: span {spanno} has D-channels {dchans}; "
                                  "expected one per span")
            bchans = tuple(c for c in channels if self.signalling.get(c) in BCHANNEL_KINDS)
            law = self._span_law(kind, bchans)
            layouts.append(SpanLayout(spanno, dchans[0], bchans, kind, law))
        return layouts

    def pri_span(self, spanno: int) -> SpanLayout:
        for layout in self.pri_spans():
            if layout.spanno == spanno:
                return layout
        known = [layout.spanno for layout in self.pri_spans()]
        raise ConfigError(f"{self.source}: span {spanno} has no dchan= channel; spans with "
                          f"a D-channel: {known or 'none'}")

    def _span_law(self, kind: str, bchannels: Iterable[int]) -> str:
        overrides = {self.laws.get(c) for c in bchannels} - {None, "deflaw"}
        if overrides == {"alaw"}:
            return "alaw"
        if overrides == {"mulaw"}:
            return "ulaw"
        return "alaw" if kind == "E1" else "ulaw"


def parse_channel_list(text: str, where: str = "channel list") -> list[int]:
    """``"1-15,17-31"`` → [1, ..., 15, 17, ..., 31]."""
    channels: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        match = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", part)
        if not match:
            raise ConfigError(f"{where}: {part!r} is not a channel or a range; expected "
                              "forms like 5 or 1-15")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if low < 1 or high < low:
            raise ConfigError(f"{where}: channel range {part!r} is empty or starts below 1")
        channels.extend(range(low, high + 1))
    if not channels:
        raise ConfigError(f"{where}: no channels given; expected a list such as 1-15,17-31")
    return channels


def _parse_span(value: str, where: str) -> SpanLine:
    parts = [p.strip().lower() for p in value.split(",")]
    if len(parts) < 5:
        raise ConfigError(f"{where}: span={value!r} has {len(parts)} fields; expected "
                          "<num>,<timing>,<lbo>,<framing>,<coding>[,crc4][,yellow]")
    try:
        number, timing, lbo = int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        raise ConfigError(f"{where}: span={value!r}: number, timing and LBO must be "
                          "integers") from None
    framing, coding, extra = parts[3], parts[4], set(parts[5:])
    if framing not in ("esf", "d4", "sf", "superframe", "ccs", "cas"):
        raise ConfigError(f"{where}: framing {framing!r}; expected esf or d4 (T1), ccs or "
                          "cas (E1, BRI)")
    if coding not in ("ami", "b8zs", "hdb3"):
        raise ConfigError(f"{where}: coding {coding!r}; expected ami, b8zs (T1) or hdb3 (E1)")
    unknown = extra - {"crc4", "yellow"}
    if unknown:
        raise ConfigError(f"{where}: unknown span options {sorted(unknown)}; expected crc4 "
                          "or yellow")
    return SpanLine(number, timing, lbo, framing, coding, "crc4" in extra, "yellow" in extra)


def _parse_dynamic(value: str, where: str) -> DynamicSpanLine:
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 4:
        raise ConfigError(f"{where}: dynamic={value!r}; expected "
                          "<driver>,<address>,<numchans>,<timing>")
    try:
        channels, timing = int(parts[2]), int(parts[3])
    except ValueError:
        raise ConfigError(f"{where}: dynamic={value!r}: numchans and timing must be "
                          "integers") from None
    if not 1 <= channels <= 31 * 8:
        raise ConfigError(f"{where}: dynamic span with {channels} channels; expected 1..248")
    return DynamicSpanLine(parts[0], parts[1], channels, timing)
