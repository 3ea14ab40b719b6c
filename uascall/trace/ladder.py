"""``uascall ladder FILE.pcapng``: the calls of any trace as ladders, with the in-band media.

Theory of operation
-------------------
:func:`read_calls` reads a trace (:mod:`uascall.trace.pcapng`) and sorts what it holds
into calls, numbered in the order they started:

- **Q.931**, from each LINUX_LAPD interface (a span's D-channel): a call is a span and a
  call reference (without its flag, which only says which side chose it); a SETUP on a
  reference whose call has released starts another call. Q.921 frames without a message
  (RR, SABME) are left out, and so is an I frame Q.921 sent again (same N(S), same bytes).
- **SIP**, from the IP interfaces: a call is a Call-ID. RTP packets belong to the call whose
  SDP named their address and port (either side's).
- **In-band audio**: the ``bchan-audio`` interface's synthetic RTP (see
  :mod:`uascall.trace.tracer`: the line's side of span S, position C is 198.18.S.C, ours
  198.19.S.C) belongs to the Q.931 call on span S that used B-channel C at the time.

Each RTP stream of a call is decoded (G.711 A-law or mu-law) and cut in 20 ms frames; each
frame has a level (dBm0, the code base's reference: :func:`uascall.media.tones.reference_rms`)
and, when one or two frequencies hold most of its energy, those frequencies. Runs of alike
frames make segments ("425 Hz -14 dBm0, 1.20-2.20 s", "sound -21 dBm0", silence left
out), drawn between the messages. ``out`` is what uascall sent (what the far end heard),
``in`` what it received.

Nothing in a trace makes this raise: a frame, message or datagram that cannot be decoded is
drawn as ``MALFORMED ...`` (in its call when its call can be told, else among the packets
outside any call), and a file damaged part way is read up to the damage with a warning.

:mod:`uascall.trace.ladder_command` is the ``uascall ladder`` command.

:func:`render_text` draws the ladders with :class:`uascall.dahdi.q931.Ladder` (the demo's);
:func:`render_html` makes one self-contained page (inline CSS, SVG, a PNG spectrogram as a
data URI and a few lines of JavaScript; nothing fetched) with, per call, the ladder, the
level of each audio stream over time with the messages marked on it, and its spectrogram.
"""

from __future__ import annotations

import base64
import html
import ipaddress
import logging
import math
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uascall.dahdi import q931
from uascall.errors import Error
from uascall.media import dtmf, g711
from uascall.media.tones import reference_rms
from uascall.sip.message import Request, SipParseError, parse_message
from uascall.sip.rtp import RtpError, RtpPacket
from uascall.sip.sdp import SdpError, parse_sdp
from uascall.trace import pcapng

log = logging.getLogger(__name__)

RATE = 8000
FRAME = 160                     # samples in 20 ms
SILENCE_DBM0 = -50.0            # quieter than this is silence
TONE_SHARE = 0.85               # a tone's (or a pair's) share of a frame's energy
MIN_TONE_FRAMES = 3             # shorter runs of a tone are "sound" (speech has such)
SPEECH_PAUSE_FRAMES = 25        # silences shorter than 0.5 s within sound are part of it
_FFT = 1024                     # a frame zero-padded to this: 7.8 Hz bins, interpolated
_SPECTRUM_BINS = 64             # the spectrogram's rows, 0-4000 Hz
_CHUNK_FRAMES = 500
_PAYLOAD_LAWS = {0: "ulaw", 8: "alaw"}
_SPAN_NAME = re.compile(r"span(\d+)")
_LINE_NET = ipaddress.ip_network("198.18.0.0/15")   # the tracer's B-channel addresses


class LadderError(Error):
    """The trace cannot be read at all, or the call asked for is not in it."""


# ============================================================================ the model
@dataclass
class Event:
    """One arrow of a ladder: a message (or something malformed) at ``at`` seconds from the
    trace's start, sent by uascall when ``sent`` (else received; None: not said)."""

    at: float
    sent: bool | None
    label: str
    detail: str = ""
    malformed: bool = False


@dataclass
class Segment:
    """A run of alike 20 ms frames of one stream: a tone (``frequencies``) or sound."""

    start: float
    end: float
    level: float                # dBm0, the mean power of the run
    frequencies: tuple[int, ...] = ()

    def describe(self) -> str:
        if not self.frequencies:
            what = "sound"
        elif self.frequencies[0] < 20:  # all of it in the lowest bins
            what = "DC offset"
        elif (key := _dtmf_key(self.frequencies)) is not None:
            what = f"DTMF {key}"
        else:
            what = " + ".join(f"{f} Hz" for f in self.frequencies)
        return f"{what} {self.level:.0f} dBm0, {self.start:.2f}-{self.end:.2f} s"


def _dtmf_key(frequencies: tuple[int, ...]) -> str | None:
    """The key whose pair these are (each within 2.5 %, Q.24's tolerance is 1.8 %)."""
    if len(frequencies) != 2:
        return None
    low, high = frequencies
    for key, (f_low, f_high) in dtmf.FREQUENCIES.items():
        if abs(low - f_low) <= 0.025 * f_low and abs(high - f_high) <= 0.025 * f_high:
            return key
    return None


@dataclass
class Stream:
    """One RTP stream: its packets' times and G.711 payloads, then what they carried."""

    name: str                   # "B1" or "RTP"
    ssrc: int
    sent: bool | None
    source: tuple[str, int]
    destination: tuple[str, int]
    packets: list[tuple[float, int, int, bytes]] = field(default_factory=list)
    # after analyse(): one row per 20 ms from start
    start: float = 0.0
    levels: np.ndarray | None = None
    spectrum: np.ndarray | None = None  # frames x _SPECTRUM_BINS, dB
    segments: list[Segment] = field(default_factory=list)

    @property
    def direction(self) -> str:
        return {True: "out", False: "in", None: ""}[self.sent]

    @property
    def title(self) -> str:
        return f"{self.name} {self.direction}".strip()


@dataclass
class Call:
    number: int
    protocol: str               # "Q.931" or "SIP"
    key: tuple[Any, ...]
    events: list[Event] = field(default_factory=list)
    streams: list[Stream] = field(default_factory=list)
    channel: int | None = None  # Q.931: the B-channel
    media: set[tuple[str, int]] = field(default_factory=set)  # SIP: SDP addresses
    released: bool = False
    numbers: str = ""

    @property
    def first(self) -> float:
        return self.events[0].at if self.events else 0.0

    @property
    def last(self) -> float:
        return self.events[-1].at if self.events else 0.0

    @property
    def title(self) -> str:
        if self.protocol == "Q.931":
            span, reference = self.key
            where = f"span {span}, call reference {reference}"
            where += f", B{self.channel}" if self.channel is not None else ""
        else:
            where = f"Call-ID {self.key[0]}"
        numbers = f" ({self.numbers})" if self.numbers else ""
        return f"call {self.number}: {self.protocol}, {where}{numbers}"


@dataclass
class Calls:
    """What :func:`read_calls` found: the calls, what belongs to none, and warnings."""

    calls: list[Call] = field(default_factory=list)
    outside: list[Event] = field(default_factory=list)
    streams: list[Stream] = field(default_factory=list)  # RTP of no call
    warnings: list[str] = field(default_factory=list)
    start: float = 0.0          # the first packet's time, seconds since the epoch


# ============================================================================ reading
def _packets(data: bytes, warnings: list[str]) -> list[pcapng.Packet]:
    """The packets of a pcapng file's bytes up to any damage (said in ``warnings``)."""
    packets: list[pcapng.Packet] = []
    interfaces: list[pcapng.Interface] = []
    try:
        for kind, body, offset in pcapng.blocks(data):
            where = f"block at byte {offset}"
            if kind == pcapng.BLOCK_SHB:
                pcapng.SectionHeader.parse(body, where)
                interfaces = []
            elif kind == pcapng.BLOCK_IDB:
                interfaces.append(pcapng.Interface.parse(body, where))
            elif kind == pcapng.BLOCK_EPB:
                block = pcapng.EnhancedPacket.parse(body, where)
                if block.interface >= len(interfaces):
                    warnings.append(f"{where}: a packet on interface {block.interface}, "
                                    f"which is not described; left out")
                    continue
                packets.append(pcapng.Packet(interfaces[block.interface],
                                             block.timestamp / 1e6, block.data,
                                             block.flags, block.comment))
    except pcapng.PcapngError as exc:
        if not packets and not interfaces:
            raise LadderError(f"not a pcapng trace uascall can read: {exc}") from exc
        warnings.append(f"the trace is damaged and was read up to there: {exc}")
    return packets


def _span_of(interface: pcapng.Interface, fallback: int) -> int:
    found = _SPAN_NAME.search(interface.name)
    return int(found.group(1)) if found else fallback


def _sip_label(message: Any) -> str:
    if isinstance(message, Request):
        label = message.method
    else:
        label = f"{message.status} {message.reason}"
        method = message.headers.get("CSeq", "").split()[-1:]
        if method and method[0] != "INVITE":
            label += f" ({method[0]})"
    if message.body and "sdp" in (message.headers.get("Content-Type") or "").lower():
        label += " with SDP"
    reason = message.headers.get("Reason")
    if reason:
        label += f", {reason}"
    return label


def _sdp_media(body: bytes) -> set[tuple[str, int]]:
    try:
        sdp = parse_sdp(body)
    except (SdpError, ValueError):
        return set()
    found = set()
    for media in sdp.media:
        connection = sdp.connection_for(media)
        if connection is not None and media.port:
            found.add((connection[1], media.port))
    return found


class _Reader:
    def __init__(self) -> None:
        self.result = Calls()
        self.by_key: dict[tuple[Any, ...], Call] = {}
        self.sip_calls: dict[str, Call] = {}
        self.recent_i: dict[tuple[int, bool | None], list[bytes]] = {}
        self.rtp: list[tuple[float, bool | None, tuple[str, int], tuple[str, int],
                             RtpPacket, bool]] = []

    def call(self, protocol: str, key: tuple[Any, ...]) -> Call:
        call = Call(len(self.result.calls) + 1, protocol, key)
        self.result.calls.append(call)
        self.by_key[(protocol, *key)] = call
        return call

    def outside(self, event: Event) -> None:
        self.result.outside.append(event)

    # ---------------------------------------------------------------- Q.931
    def lapd(self, at: float, span: int, packet: pcapng.Packet) -> None:
        sent: bool | None = None
        try:
            sent, _network, data = pcapng.parse_lapd(packet.data)
            frame = q931.LapdFrame.parse(data)
        except (pcapng.PcapngError, q931.Q931DecodeError) as exc:
            self.outside(Event(at, sent, f"MALFORMED LAPD frame on span {span}",
                               f"{exc}\n{packet.data.hex()}", malformed=True))
            return
        if frame.kind is q931.FrameKind.I:
            recent = self.recent_i.setdefault((span, sent), [])
            if data in recent:
                return  # Q.921 sent it again: the message crossed once
            recent.append(data)
            del recent[:-8]
        try:
            message = frame.q931()
        except q931.Q931DecodeError as exc:
            self.outside(Event(at, sent, f"MALFORMED Q.931 on span {span}: {exc}",
                               data.hex(), malformed=True))
            return
        if message is None or message.protocol_discriminator != q931.Q931_PD:
            return  # layer 2 only, or maintenance
        label = q931.describe(message, brief=True)
        event = Event(at, sent, label, q931.describe(message, brief=False))
        if message.call_reference == 0 or message.call_reference_length == 0:
            self.outside(event)  # RESTART and other global messages
            return
        key = (span, message.call_reference)
        call = self.by_key.get(("Q.931", *key))
        if call is None or (call.released and message.name == "SETUP"):
            call = self.call("Q.931", key)
        call.events.append(event)
        if message.name in ("RELEASE", "RELEASE COMPLETE"):
            call.released = True
        try:
            if call.channel is None and message.channel is not None:
                call.channel = message.channel
            if message.name == "SETUP":
                called, calling = message.called_number, message.calling_number
                if called or calling:
                    call.numbers = f"{called or '?'} <- {calling or '?'}"
        except q931.Q931DecodeError:
            pass  # the label already says "bad ..."

    # ---------------------------------------------------------------- UDP
    def udp(self, at: float, packet: pcapng.Packet) -> None:
        try:
            source, destination, payload = pcapng.parse_udp(packet.data)
        except pcapng.PcapngError as exc:
            self.outside(Event(at, packet.sent, "MALFORMED IP packet",
                               f"{exc}\n{packet.data[:64].hex()}", malformed=True))
            return
        first_line = payload.split(b"\n", 1)[0]
        if b"SIP/2.0" in first_line:
            self.sip(at, packet.sent, payload)
            return
        try:
            rtp = RtpPacket.parse(payload)
        except (RtpError, ValueError) as exc:
            self.outside(Event(at, packet.sent,
                               f"MALFORMED datagram {source[0]}:{source[1]} -> "
                               f"{destination[0]}:{destination[1]}, {len(payload)} bytes",
                               f"neither SIP nor RTP: {exc}\n{payload[:64]!r}",
                               malformed=True))
            return
        line = packet.interface.name == "bchan-audio" or (
            _is_line_address(source[0]) and _is_line_address(destination[0]))
        self.rtp.append((at, packet.sent, source, destination, rtp, line))

    def sip(self, at: float, sent: bool | None, payload: bytes) -> None:
        text = payload.decode("utf-8", "replace")
        try:
            message = parse_message(payload)
        except SipParseError as exc:
            call_id = exc.headers.get("Call-ID") if exc.headers is not None else None
            event = Event(at, sent, f"MALFORMED SIP: {exc.reason}", text, malformed=True)
            if not call_id:
                self.outside(event)
                return
            call = self.sip_calls.get(call_id)
            if call is None:  # the answer to it (a 400) will be in this call too
                call = self.sip_calls[call_id] = self.call("SIP", (call_id,))
            call.events.append(event)
            return
        call_id = message.call_id
        call = self.sip_calls.get(call_id)
        if call is None:
            call = self.sip_calls[call_id] = self.call("SIP", (call_id,))
            if isinstance(message, Request):
                call.numbers = f"{message.to.uri} <- {message.from_.uri}"
        label = _sip_label(message)
        if any(e.detail == text and e.sent == sent for e in call.events):
            label += " (again)"
        call.events.append(Event(at, sent, label, text))
        if message.body:
            call.media |= _sdp_media(message.body)

    # ---------------------------------------------------------------- RTP
    def streams(self) -> None:
        streams: dict[tuple[Any, ...], Stream] = {}
        for at, sent, source, destination, rtp, line in self.rtp:
            key = (line, rtp.ssrc, source, destination)
            stream = streams.get(key)
            if stream is None:
                if line:
                    sent = source[0].startswith("198.19.")
                    name = f"B{ipaddress.ip_address(source[0]).packed[3]}"
                else:
                    name = "RTP"
                stream = streams[key] = Stream(name, rtp.ssrc, sent, source, destination)
                self._attach(stream, line, at)
            stream.packets.append((at, rtp.payload_type, rtp.timestamp, rtp.payload))
        for stream in streams.values():
            analyse(stream)

    def _attach(self, stream: Stream, line: bool, at: float) -> None:
        owner: Call | None = None
        if line:
            address = ipaddress.ip_address(stream.source[0]).packed
            span, position = address[2], address[3]
            near = [c for c in self.result.calls
                    if c.protocol == "Q.931" and c.key[0] == span and c.channel == position
                    and c.first - 1.0 <= at <= c.last + 1.0]
            if near:
                owner = min(near, key=lambda c: abs(c.first - at))
        else:
            ends = {stream.source, stream.destination}
            ports = {port for _host, port in ends}
            for call in self.result.calls:
                if call.media & ends or any(
                        port in ports and host in ("0.0.0.0", "::") for host, port in
                        call.media):
                    owner = call
                    break
            if owner is None:  # our end bound to a wildcard address: match the port alone
                for call in self.result.calls:
                    if {port for _host, port in call.media} & ports:
                        owner = call
                        break
        (owner.streams if owner is not None else self.result.streams).append(stream)


def _is_line_address(address: str) -> bool:
    try:
        return ipaddress.ip_address(address) in _LINE_NET
    except ValueError:
        return False


def parse_calls(data: bytes) -> Calls:
    """The calls of a trace's bytes (see the module's docstring). Raises LadderError only
    when nothing of it can be read as pcapng."""
    reader = _Reader()
    result = reader.result
    packets = _packets(data, result.warnings)
    packets.sort(key=lambda p: p.timestamp)
    result.start = packets[0].timestamp if packets else 0.0
    for n, packet in enumerate(packets):
        at = packet.timestamp - result.start
        try:
            if packet.interface.linktype == pcapng.LINKTYPE_LINUX_LAPD:
                reader.lapd(at, _span_of(packet.interface, n), packet)
            elif packet.interface.linktype == pcapng.LINKTYPE_RAW:
                reader.udp(at, packet)
        except Exception as exc:  # a decoder's bug must not hide the rest of the trace
            log.exception("packet %d of the trace could not be read", n + 1)
            reader.outside(Event(at, packet.sent, f"MALFORMED packet {n + 1}: {exc!r}",
                                 packet.data[:64].hex(), malformed=True))
    reader.streams()
    _place_malformed(result)
    return result


def read_calls(path: str) -> Calls:
    """:func:`parse_calls` of the file at ``path``."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise LadderError(f"cannot read the trace {path}: {exc.strerror}") from exc
    return parse_calls(data)


def _place_malformed(result: Calls) -> None:
    """A malformed packet of no call is drawn in each call under way at its time too: it
    may be what went wrong there."""
    for event in result.outside:
        if not event.malformed:
            continue
        for call in result.calls:
            if call.first <= event.at <= call.last:
                call.events.append(event)
    for call in result.calls:
        call.events.sort(key=lambda e: e.at)


# ============================================================================ audio
def analyse(stream: Stream) -> None:
    """Decode a stream's G.711 packets onto a 20 ms grid and find its segments."""
    audio = [(at, pt, ts, payload) for at, pt, ts, payload in stream.packets
             if pt in _PAYLOAD_LAWS and payload]
    if not audio:
        return
    law = _PAYLOAD_LAWS[audio[0][1]]
    table = _decoding_table(law)
    stream.start = audio[0][0]
    first_ts = audio[0][2]
    # the RTP timestamp places each packet (a gap in the audio is a jump in it)
    frames = max(((ts - first_ts) & 0xFFFFFFFF) // FRAME + max(1, len(p) // FRAME)
                 for _at, _pt, ts, p in audio)
    frames = min(frames, 50 * 3600 * 4)  # a damaged timestamp must not ask for terabytes
    samples = np.zeros(frames * FRAME, dtype=np.float32)  # 115 MB for 4 hours
    for _at, _pt, ts, payload in audio:
        offset = ((ts - first_ts) & 0xFFFFFFFF)
        decoded = table[np.frombuffer(payload, dtype=np.uint8)]
        end = min(offset + len(decoded), len(samples))
        if offset < end:
            samples[offset:end] = decoded[:end - offset]
    grid = samples.reshape(frames, FRAME)
    reference = reference_rms(law)
    window = np.hanning(FRAME)
    stream.levels = np.empty(frames)
    stream.spectrum = np.empty((frames, _SPECTRUM_BINS))
    kinds: list[tuple[int, ...] | None] = []
    # a few hundred frames at a time: a frame's full spectrum is 4 kB
    for first in range(0, frames, _CHUNK_FRAMES):
        chunk = grid[first:first + _CHUNK_FRAMES].astype(np.float64)
        power = np.mean(chunk ** 2, axis=1)
        stream.levels[first:first + len(chunk)] = 10 * np.log10(
            np.maximum(power, 1e-3) / reference ** 2)
        spectra = np.abs(np.fft.rfft(chunk * window, n=_FFT, axis=1)) ** 2
        per_row = spectra.shape[1] // _SPECTRUM_BINS
        binned = spectra[:, :per_row * _SPECTRUM_BINS].reshape(
            len(chunk), _SPECTRUM_BINS, per_row)
        stream.spectrum[first:first + len(chunk)] = 10 * np.log10(binned.sum(axis=2) + 1e-3)
        kinds += [_frame_kind(float(level), spectrum) for level, spectrum in
                  zip(stream.levels[first:first + len(chunk)], spectra, strict=True)]
    stream.segments = _segments(kinds, stream.levels, stream.start)


def _decoding_table(law: str) -> np.ndarray:
    return np.array(g711.codec(law).decode(bytes(range(256))), dtype=np.float64)


def _frame_kind(level: float, spectrum: np.ndarray) -> tuple[int, ...] | None:
    """None for silence, () for sound, else the one or two frequencies of a tone."""
    if level < SILENCE_DBM0:
        return None
    total = float(spectrum.sum())
    peaks: list[int] = []
    share = 0.0
    work = spectrum.copy()
    for _ in range(2):
        k = int(np.argmax(work))
        lo, hi = max(k - 6, 0), min(k + 7, len(work))
        share += float(work[lo:hi].sum()) / total
        peaks.append(_frequency(spectrum, k))
        work[lo:hi] = 0
        if share >= TONE_SHARE:
            return tuple(sorted(peaks))
    return ()


def _frequency(spectrum: np.ndarray, k: int) -> int:
    """The peak at bin ``k``, interpolated on the log spectrum (to a Hz or so)."""
    if 0 < k < len(spectrum) - 1:
        a, b, c = np.log(spectrum[k - 1:k + 2] + 1e-9)
        denominator = a - 2 * b + c
        offset = 0.5 * (a - c) / denominator if denominator else 0.0
    else:
        offset = 0.0
    return round(float(k + offset) * RATE / _FFT)


def _alike(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> bool:
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and all(abs(x - y) <= 15 for x, y in zip(a, b, strict=True))


def _segments(kinds: list[tuple[int, ...] | None], levels: np.ndarray, start: float
              ) -> list[Segment]:
    runs: list[list[Any]] = []  # [kind, first frame, end frame]
    for n, kind in enumerate(kinds):
        if runs and _alike(runs[-1][0], kind):
            runs[-1][2] = n + 1
        else:
            runs.append([kind, n, n + 1])
    # a tone too short to be one is sound, and runs of sound join up
    merged: list[list[Any]] = []
    for kind, first, end in runs:
        if kind and end - first < MIN_TONE_FRAMES:
            kind = ()
        if merged and _alike(merged[-1][0], kind):
            merged[-1][2] = end
        else:
            merged.append([kind, first, end])
    # a tone starting or stopping part way through a frame leaves a frame or two of
    # "sound" beside it: they belong to the tone
    for n in range(len(merged) - 1, -1, -1):
        kind, first, end = merged[n]
        if kind == () and end - first < MIN_TONE_FRAMES:
            before = merged[n - 1] if n else None
            after = merged[n + 1] if n + 1 < len(merged) else None
            if before is not None and before[0] and before[2] == first:
                before[2] = end
                del merged[n]
            elif after is not None and after[0] and after[1] == end:
                after[1] = first
                del merged[n]
    # speech pauses between words: sound with short silences in it is one stretch of sound
    joined: list[list[Any]] = []
    for run in merged:
        if (run[0] == () and len(joined) >= 2 and joined[-2][0] == ()
                and joined[-1][0] is None
                and joined[-1][2] - joined[-1][1] < SPEECH_PAUSE_FRAMES):
            joined.pop()
            joined[-1][2] = run[2]
        else:
            joined.append(run)
    merged = joined
    segments = []
    for kind, first, end in merged:
        if kind is None:
            continue
        power = float(np.mean(10 ** (levels[first:end] / 10)))
        segments.append(Segment(start + first * FRAME / RATE, start + end * FRAME / RATE,
                                10 * math.log10(power), kind))
    return segments


def _notes(call_streams: list[Stream]) -> list[tuple[float, str]]:
    return [(segment.start, f"~ {stream.title}: {segment.describe()} ~")
            for stream in call_streams for segment in stream.segments]


# ============================================================================ text
def _direction(sent: bool | None) -> str:
    return "<-" if sent is False else "->"


def _text_ladder(title: str, events: list[Event], streams: list[Stream]) -> str:
    ladder = q931.Ladder("uascall", "far end", span=80, brief=True)
    for event in events:
        ladder.arrow(event.at, _direction(event.sent), event.label)
    for at, text in _notes(streams):
        ladder.note(at, text)
    return f"{title}\n{ladder.render()}"


def render_text(calls: Calls, number: int | None = None) -> str:
    """The ladders of every call (or of call ``number``), then what was in no call."""
    chosen = _choose(calls, number)
    out: list[str] = []
    for warning in calls.warnings:
        out.append(f"warning: {warning}\n")
    if not calls.calls and not calls.outside:
        out.append("no calls in this trace\n")
    for call in chosen:
        out.append(_text_ladder(call.title, call.events, call.streams))
    if number is None and (calls.outside or calls.streams):
        out.append(_text_ladder("outside any call", calls.outside, calls.streams))
    return "\n".join(out)


def _choose(calls: Calls, number: int | None) -> list[Call]:
    if number is None:
        return calls.calls
    if not 1 <= number <= len(calls.calls):
        have = (f"calls 1 to {len(calls.calls)}" if calls.calls else "no calls")
        raise LadderError(f"--call {number}: the trace has {have}")
    return [calls.calls[number - 1]]


# ============================================================================ HTML
_CSS = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:2em;border-bottom:1px solid #ccc}
svg.ladder text{font:12px monospace}svg.ladder .time{fill:#777}
svg.ladder .msg{cursor:pointer}svg.ladder .msg:hover text{fill:#06c}
svg.ladder .malformed text{fill:#c00;font-weight:bold}svg.ladder .note text{fill:#575}
pre.detail{background:#fff;border:1px solid #ddd;padding:.5em;white-space:pre-wrap;
max-width:60em;display:none}pre.detail.open{display:block}
.plot{margin:.5em 0}.plot text{font:11px sans-serif}.warn{color:#a40}
figure{margin:.5em 0}figcaption{font-size:.9em;color:#555}
"""

# Toggles a message's full decoding under the ladder; says on the page that the script
# ran and how many spectrograms the browser could decode (for the tests, and a reader).
_JS = """
document.querySelectorAll('svg.ladder .msg').forEach(function (g) {
  g.addEventListener('click', function () {
    var pre = document.getElementById(g.getAttribute('data-detail'));
    if (pre) { pre.classList.toggle('open'); }
  });
});
window.addEventListener('load', function () {
  var images = document.querySelectorAll('figure.spectrogram img');
  var drawn = Array.prototype.filter.call(images, function (img) {
    return img.complete && img.naturalWidth > 0;
  });
  document.body.setAttribute('data-spectrograms', drawn.length + ' of ' + images.length);
});
document.body.setAttribute('data-rendered', 'yes');
"""

_ROW = 22
_LEFT, _RIGHT = 90, 690


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _ladder_svg(call_id: str, events: list[Event], notes: list[tuple[float, str]]
                ) -> tuple[str, str]:
    rows: list[tuple[float, int, Any]] = [(e.at, 0, e) for e in events]
    rows += [(at, 1, text) for at, text in notes]
    rows.sort(key=lambda row: (row[0], row[1]))
    height = 40 + _ROW * len(rows)
    parts = [f'<svg class="ladder" width="{_RIGHT + 40}" height="{height}" '
             f'viewBox="0 0 {_RIGHT + 40} {height}">',
             '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="8" refY="4" '
             'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#333"/></marker></defs>',
             f'<text x="{_LEFT}" y="16" text-anchor="middle">uascall</text>',
             f'<text x="{_RIGHT}" y="16" text-anchor="middle">far end</text>',
             f'<line x1="{_LEFT}" y1="22" x2="{_LEFT}" y2="{height}" stroke="#999"/>',
             f'<line x1="{_RIGHT}" y1="22" x2="{_RIGHT}" y2="{height}" stroke="#999"/>']
    details = []
    for n, (at, is_note, item) in enumerate(rows):
        y = 40 + _ROW * n
        parts.append(f'<text class="time" x="4" y="{y}">{at:.3f}</text>')
        if is_note:
            parts.append(f'<g class="note"><text x="{(_LEFT + _RIGHT) // 2}" y="{y}" '
                         f'text-anchor="middle">{_e(item)}</text></g>')
            continue
        detail = f"{call_id}-d{n}"
        x1, x2 = (_RIGHT, _LEFT) if item.sent is False else (_LEFT, _RIGHT)
        kind = "msg malformed" if item.malformed else "msg"
        parts.append(
            f'<g class="{kind}" data-detail="{detail}"><title>{_e(item.detail)}</title>'
            f'<line x1="{x1}" y1="{y + 4}" x2="{x2}" y2="{y + 4}" stroke="#333" '
            f'marker-end="url(#a)"/><text x="{(_LEFT + _RIGHT) // 2}" y="{y}" '
            f'text-anchor="middle">{_e(item.label)}</text></g>')
        details.append(f'<pre class="detail" id="{detail}">{_e(item.label)}\n\n'
                       f'{_e(item.detail)}</pre>')
    parts.append("</svg>")
    return "".join(parts), "".join(details)


_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


_PLOT_WIDTH, _PLOT_LEFT = 760, 50
_PLOT_INNER = _PLOT_WIDTH - _PLOT_LEFT - 10


def _x(t: float, t0: float, t1: float) -> float:
    """Where time ``t`` is on the plots of a call from ``t0`` to ``t1`` (all share it)."""
    return _PLOT_LEFT + (t - t0) / max(t1 - t0, 0.1) * _PLOT_INNER


def _markers(events: list[Event], t0: float, t1: float, top: float, bottom: float,
             named: bool) -> list[str]:
    """A dashed line where each message crossed, named at the top when ``named``."""
    parts = []
    for event in events:
        if not t0 <= event.at <= t1:
            continue
        xe = _x(event.at, t0, t1)
        parts.append(f'<g class="marker"><title>{_e(event.label)}</title>'
                     f'<line x1="{xe:.1f}" y1="{top}" x2="{xe:.1f}" y2="{bottom}" '
                     'stroke="#bbb" stroke-dasharray="3,3"/>')
        if named:
            name = re.split(r" (?=[A-Z]\d|PI|cause|with|to |from )", event.label)[0][:22]
            parts.append(f'<text transform="translate({xe + 3:.1f},{top + 4}) rotate(90)" '
                         f'fill="#888">{_e(name)}</text>')
        parts.append("</g>")
    return parts


def _level_svg(streams: list[Stream], events: list[Event], t0: float, t1: float) -> str:
    width, height, left, top = _PLOT_WIDTH, 200, _PLOT_LEFT, 10
    plot_w, plot_h = _PLOT_INNER, height - top - 30

    def y(level: float) -> float:
        level = min(max(level, -70.0), 0.0)
        return top + (-level) / 70.0 * plot_h

    parts = [f'<svg class="plot level" width="{width}" height="{height}">',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" '
             'stroke="#bbb"/>']
    for level in range(0, -71, -10):
        parts.append(f'<text x="{left - 4}" y="{y(level) + 4:.1f}" text-anchor="end">'
                     f'{level}</text>')
    parts.append(f'<text x="{left}" y="{height - 4}">{t0:.2f} s</text>'
                 f'<text x="{left + plot_w}" y="{height - 4}" text-anchor="end">'
                 f'{t1:.2f} s</text>'
                 f'<text x="{left + plot_w / 2}" y="{height - 4}" text-anchor="middle">'
                 'level, dBm0</text>')
    parts += _markers(events, t0, t1, top, top + plot_h, named=True)
    for n, stream in enumerate(streams):
        if stream.levels is None:
            continue
        colour = _COLOURS[n % len(_COLOURS)]
        step = max(1, len(stream.levels) // 1500)
        points = " ".join(
            f"{_x(stream.start + i * FRAME / RATE, t0, t1):.1f},{y(float(level)):.1f}"
            for i, level in zip(range(0, len(stream.levels), step), stream.levels[::step],
                                strict=True))
        parts.append(f'<polyline fill="none" stroke="{colour}" points="{points}">'
                     f'<title>{_e(stream.title)}</title></polyline>')
        parts.append(f'<text x="{left + 6}" y="{top + 14 + 14 * n}" fill="{colour}">'
                     f'{_e(stream.title)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _png(rgb: np.ndarray) -> bytes:
    """A PNG of an H x W x 3 uint8 array (no dependency: zlib and the chunk format)."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def _spectrogram(stream: Stream, events: list[Event], t0: float, t1: float) -> str:
    """The stream's spectrum over time as a PNG, on the level plot's time axis, with the
    messages marked over it."""
    if stream.spectrum is None:
        return ""
    spectrum = stream.spectrum
    if len(spectrum) > 1500:  # one column per several frames: their loudest
        step = -(-len(spectrum) // 1500)
        pad = (-len(spectrum)) % step
        spectrum = np.vstack([spectrum, np.full((pad, spectrum.shape[1]), -30.0)])
        spectrum = spectrum.reshape(-1, step, spectrum.shape[1]).max(axis=1)
    top = float(spectrum.max())
    scaled = np.clip((spectrum - (top - 70)) / 70, 0, 1).T[::-1]  # low frequencies below
    rgb = np.stack([scaled ** 0.7, scaled ** 2, 0.3 + 0.4 * scaled * (1 - scaled)], axis=-1)
    image = _png((rgb * 255).astype(np.uint8))
    end = stream.start + len(stream.spectrum) * FRAME / RATE
    x0, x1 = _x(stream.start, t0, t1), _x(end, t0, t1)
    height = 2 * _SPECTRUM_BINS
    overlay = "".join(_markers(events, t0, t1, 0, height, named=False))
    return (f'<figure class="plot spectrogram"><div style="position:relative;'
            f'width:{_PLOT_WIDTH}px;height:{height}px">'
            f'<span style="position:absolute;left:0;top:0;font-size:11px">4 kHz</span>'
            f'<span style="position:absolute;left:0;bottom:0;font-size:11px">0 Hz</span>'
            f'<img alt="spectrogram of {_e(stream.title)}" style="position:absolute;'
            f'left:{x0:.0f}px;top:0;width:{max(x1 - x0, 1):.0f}px;height:{height}px;'
            f'image-rendering:pixelated" src="data:image/png;base64,'
            f'{base64.b64encode(image).decode()}">'
            f'<svg width="{_PLOT_WIDTH}" height="{height}" style="position:absolute;left:0;'
            f'top:0">{overlay}</svg></div><figcaption>{_e(stream.title)}: spectrum '
            f'0-4000 Hz, {stream.start:.2f}-{end:.2f} s</figcaption></figure>')


def _call_section(call_id: str, title: str, events: list[Event], streams: list[Stream]
                  ) -> str:
    notes = _notes(streams)
    svg, details = _ladder_svg(call_id, events, notes)
    parts = [f'<section class="call" id="{call_id}"><h2>{_e(title)}</h2>', svg, details]
    audible = [s for s in streams if s.levels is not None]
    if audible:
        t0 = min([s.start for s in audible] + [e.at for e in events])
        t1 = max([s.start + len(s.levels) * FRAME / RATE for s in audible]
                 + [e.at for e in events])
        parts.append('<h3>In-band audio</h3><p class="legend"><b>out</b>: what uascall '
                     'sent (what the far end heard); <b>in</b>: what it received. The '
                     'dashed lines are the messages.</p>')
        parts.append(_level_svg(audible, events, t0, t1))
        parts += [_spectrogram(s, events, t0, t1) for s in audible]
    parts.append("</section>")
    return "".join(parts)


def render_html(calls: Calls, number: int | None = None, title: str = "trace") -> str:
    """One self-contained page: per call its ladder, levels and spectrograms."""
    chosen = _choose(calls, number)
    body = [f"<h1>uascall ladder: {_e(title)}</h1>"]
    body += [f'<p class="warn">warning: {_e(w)}</p>' for w in calls.warnings]
    if chosen:
        body.append("<ul>" + "".join(f'<li><a href="#call{c.number}">{_e(c.title)}</a></li>'
                                     for c in chosen) + "</ul>")
    else:
        body.append("<p>no calls in this trace</p>")
    for call in chosen:
        body.append(_call_section(f"call{call.number}", call.title, call.events,
                                  call.streams))
    if number is None and (calls.outside or calls.streams):
        body.append(_call_section("outside", "outside any call", calls.outside,
                                  calls.streams))
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>uascall ladder: {_e(title)}</title><style>{_CSS}</style></head>"
            f"<body>{''.join(body)}<script>{_JS}</script></body></html>\n")
