"""On-hook Caller ID: Bell/Telcordia SDMF and MDMF, ETSI EN 300 659-3 call set-up, and the
1200 baud FSK that carries them (Bell 202 and ITU-T V.23), modulator and demodulator.

Messages (sans-I/O)
-------------------
A message on the line is ``type, length, body, checksum``: ``length`` counts the body and
the checksum is the two's complement of the sum of all the other bytes, so that all of
them add up to 0 mod 256. :class:`Message` is that frame (parse/serialize); a
:class:`CallerId` is what it means:

* **SDMF** (Bell single data message, type 0x04): ``MMDDHHMM`` then the number, or ``"P"``
  (private) / ``"O"`` (out of area, unavailable) instead of it.
* **MDMF** (Bell multiple data message, type 0x80) and the **ETSI call set-up message**
  (EN 300 659-3, also 0x80) share one body: parameters of ``type, length, value`` with the
  codings date-time 0x01 (``MMDDHHMM``), calling line identity 0x02, reason for absence of
  the number 0x04, calling party name 0x07 and reason for absence of the name 0x08 (both
  reasons ``"P"`` or ``"O"``). Other parameters are skipped when parsing (ETSI defines many
  more, e.g. 0x03 called line identity, 0x11 call type); :meth:`Message.parameters` keeps
  them all. The two formats differ only in what they allow: a Bell name has at most 15
  characters (Telcordia GR-30), an ETSI name at most 50; numbers at most 20 in both.
  Text is ISO 8859-1 (plain ASCII for what Bell sends).

Parse errors are :class:`CallerIdError`, a :class:`~uascall.errors.RemoteProtocolError`
(the far end sent it), with one subclass per cause: :class:`TruncatedMessage`,
:class:`TrailingData`, :class:`ChecksumError`, :class:`UnknownMessageType`,
:class:`MalformedParameter`. Building a message from bad values raises ArgumentError.

FSK (physical layer)
--------------------
1200 baud, 8 kHz, level :data:`DEFAULT_LEVEL_DBM0` (-13.5 dBm0, the Telcordia GR-30 send
level, also the brief's default for ETSI), in the code base's dBm0 (see
:func:`uascall.media.tones.reference_rms`). Binary 1 (mark) / 0 (space) is 1200/2200 Hz
for Bell 202 and 1300/2100 Hz for V.23. A spill (:func:`spill`, :func:`modulate`) is:

* the channel seizure signal: 300 bits alternating, starting with 0 (Bell's 30 bytes of
  0x55, which framed as below are exactly that; EN 300 659-1's 300 alternating bits);
* the mark signal: 180 bits of 1 (Bell) or 80 (ETSI, which allows 80 ± 25 here);
* each byte as a start bit (0), 8 data bits least significant first, a stop bit (1);
* then a 1 ms fade-out on a mark, so the end does not click.

The modulator is phase-continuous: one phase accumulator advances by the current bit's
frequency each sample, and bit ``k`` covers samples ``[k·8000/baud, (k+1)·8000/baud)``, so
bit edges fall on the nearest sample without the 6⅔-sample bit ever drifting.

The receiver (:class:`CallerIdReceiver`) correlates the input with the mark and the space
frequency over a sliding window of 7 samples (about one bit); the sign of
``|mark|² - |space|²`` is the bit. Around it:

* **Carrier detect:** the level over the last four bits is above -48 dBm0.
* **Lock:** at least 24 bits of mark with carrier, the last 15 of them one pure tone near
  the mark frequency (80 % of their power in a single 100-sample correlation, tried at
  the mark frequency and 1.5 % and 3 % either side). The channel seizure is not required,
  so spills without one decode too; DTMF, which puts a column tone near 1200/1300 Hz,
  holds only about 60 % and does not lock.
* **Bit clock:** each zero crossing of the correlator output is a bit edge; the clock takes
  up a quarter of each edge's timing error (so noise on one edge barely moves it, and a
  ±1 % bit-rate error is followed), or all of it for the first edge after 10 quiet bits.
  Each bit is read from the window centred on the middle of the bit.
* **UART:** a space after the mark is a start bit; 8 data bits follow, least significant
  first, then a stop bit that must be a mark. The first byte must be a known on-hook
  message type (:data:`MESSAGE_TYPES`), the second gives the length. A framing error,
  lost carrier, or too much mark before or between bytes abandons the message; one whose
  checksum fails is logged, counted and dropped.

Verified by tests/sim/test_callerid.py for both standards: levels from -40 to 0 dBm0,
transmitter frequency error and bit-rate error of ±1 %, white noise at 10 dB SNR (the
spill's power against noise over the whole 0-4 kHz band), either G.711 law, any chunk
size, silence, noise or speech before and after; 54 s of speech, 30 s of white noise and
10 s of DTMF give no message.
"""

from __future__ import annotations

import array
import cmath
import enum
import itertools
import logging
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass

from uascall.errors import ArgumentError, RemoteProtocolError
from uascall.media import g711
from uascall.media.tones import reference_rms

__all__ = [
    "BELL",
    "ETSI",
    "Absence",
    "CallerId",
    "CallerIdError",
    "CallerIdEvent",
    "CallerIdReceiver",
    "ChecksumError",
    "FskStandard",
    "MalformedParameter",
    "Message",
    "TrailingData",
    "TruncatedMessage",
    "UnknownMessageType",
    "modulate",
    "spill",
]

_log = logging.getLogger(__name__)

RATE = g711.SAMPLE_RATE
BAUD = 1200.0
DEFAULT_LEVEL_DBM0 = -13.5

# message types
SDMF = 0x04
MDMF = 0x80  # Bell MDMF; EN 300 659-3 "call set-up" has the same code and body
# MDMF / call set-up parameter types
PARAM_DATE_TIME = 0x01
PARAM_NUMBER = 0x02
PARAM_NUMBER_ABSENCE = 0x04
PARAM_NAME = 0x07
PARAM_NAME_ABSENCE = 0x08

MAX_NUMBER = 20
MAX_NAME = {"sdmf": 0, "mdmf": 15, "etsi": 50}
FORMATS = tuple(MAX_NAME)


# --------------------------------------------------------------------------- errors

class CallerIdError(RemoteProtocolError):
    """A Caller ID message could not be decoded; the message says what and where."""


class TruncatedMessage(CallerIdError):
    """The message (or a parameter inside it) ends before its length says it should."""


class TrailingData(CallerIdError):
    """Bytes follow the checksum of what should be exactly one message."""


class ChecksumError(CallerIdError):
    """The bytes do not add up to 0 mod 256."""


class UnknownMessageType(CallerIdError):
    """The message type is not one that carries Caller ID (0x04 or 0x80)."""


class MalformedParameter(CallerIdError):
    """A known field has the wrong length or content (e.g. a date that is not 8 digits)."""


# --------------------------------------------------------------------------- messages

@dataclass(frozen=True, slots=True)
class Message:
    """One data-link message: ``type`` and ``body`` (length and checksum are implied)."""

    type: int
    body: bytes

    def serialize(self) -> bytes:
        """``type, length, body, checksum``. Raises ArgumentError for a body over 255."""
        if not 0 <= self.type <= 255:
            raise ArgumentError(f"message type must be a byte; got {self.type!r}")
        if len(self.body) > 255:
            raise ArgumentError(f"message body is {len(self.body)} bytes; at most 255 fit")
        head = bytes([self.type, len(self.body)]) + self.body
        return head + bytes([-sum(head) & 0xFF])

    @classmethod
    def parse(cls, data: bytes) -> Message:
        """Exactly one message. Raises TruncatedMessage if ``data`` is shorter than its
        length byte says, TrailingData if it is longer, ChecksumError if the sum is wrong."""
        data = bytes(data)
        if len(data) < 2:
            raise TruncatedMessage(f"message is {len(data)} byte(s); the type and length "
                                   "alone take 2")
        need = data[1] + 3
        if len(data) < need:
            raise TruncatedMessage(f"message of type 0x{data[0]:02X} says {data[1]} body "
                                   f"bytes, so {need} in all; got {len(data)}")
        if len(data) > need:
            raise TrailingData(f"message of type 0x{data[0]:02X} is {need} bytes but "
                                f"{len(data) - need} more follow its checksum")
        total = sum(data) & 0xFF
        if total:
            expected = -sum(data[:-1]) & 0xFF
            raise ChecksumError(f"message of type 0x{data[0]:02X}: checksum is "
                                f"0x{data[-1]:02X}; expected 0x{expected:02X}")
        return cls(data[0], data[2:-1])

    def parameters(self) -> list[tuple[int, bytes]]:
        """The ``(type, value)`` parameters of an MDMF/call set-up body, in order.

        Raises TruncatedMessage if a parameter runs past the end of the body.
        """
        body, out, i = self.body, [], 0
        while i < len(body):
            if i + 2 > len(body):
                raise TruncatedMessage(f"parameter at body offset {i} has a type but no "
                                       "length byte")
            kind, size = body[i], body[i + 1]
            if i + 2 + size > len(body):
                raise TruncatedMessage(f"parameter 0x{kind:02X} at body offset {i} says "
                                       f"{size} bytes; only {len(body) - i - 2} remain")
            out.append((kind, body[i + 2:i + 2 + size]))
            i += 2 + size
        return out


class Absence(enum.Enum):
    """Why a number or name is missing: ``"P"`` private (withheld), ``"O"`` unavailable."""

    PRIVATE = "P"
    UNAVAILABLE = "O"


_DATE_FIELDS = (("month", 1, 12), ("day", 1, 31), ("hour", 0, 23), ("minute", 0, 59))


@dataclass(frozen=True, slots=True)
class CallerId:
    """What a Caller ID message says. Every field is optional; the date-time is all four of
    month/day/hour/minute or none. A number and a reason for its absence (likewise name)
    exclude each other. Raises ArgumentError for values out of range."""

    number: str | None = None
    name: str | None = None
    month: int | None = None
    day: int | None = None
    hour: int | None = None
    minute: int | None = None
    number_absence: Absence | None = None
    name_absence: Absence | None = None

    def __post_init__(self) -> None:
        values = [getattr(self, f) for f, _, _ in _DATE_FIELDS]
        if any(v is not None for v in values):
            for (field, lo, hi), v in zip(_DATE_FIELDS, values, strict=True):
                if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                    raise ArgumentError(f"{field} must be an int from {lo} to {hi} (the "
                                        f"date-time is all of month/day/hour/minute or "
                                        f"none); got {v!r}")
        for field in ("number", "name"):
            value, absence = getattr(self, field), getattr(self, f"{field}_absence")
            if value is not None and not isinstance(value, str):
                raise ArgumentError(f"{field} must be a str or None; got {value!r}")
            if absence is not None and not isinstance(absence, Absence):
                raise ArgumentError(f"{field}_absence must be an Absence or None; "
                                    f"got {absence!r}")
            if value is not None and absence is not None:
                raise ArgumentError(f"{field} {value!r} and {field}_absence "
                                    f"{absence.name} exclude each other")

    @property
    def has_date(self) -> bool:
        return self.month is not None

    # ------------------------------------------------------------------ encoding

    def to_message(self, format: str = "mdmf") -> Message:
        """This Caller ID as a ``"sdmf"``, ``"mdmf"`` (Bell) or ``"etsi"`` message.

        Raises ArgumentError for an unknown format, text that is too long or not ISO
        8859-1 printable, or (SDMF) a name or a missing date-time, which SDMF cannot carry.
        """
        if format not in MAX_NAME:
            raise ArgumentError(f"unknown Caller ID format {format!r}; expected one of "
                                f"{', '.join(map(repr, FORMATS))}")
        number = _text("number", self.number, MAX_NUMBER)
        name = _text("name", self.name, MAX_NAME[format])
        date = (b"%02d%02d%02d%02d" % (self.month, self.day, self.hour, self.minute)
                if self.has_date else None)
        if format == "sdmf":
            if date is None:
                raise ArgumentError("SDMF always carries the date-time; set month, day, "
                                    "hour and minute (or use 'mdmf')")
            if name is not None or self.name_absence is not None:
                raise ArgumentError("SDMF carries no name; use 'mdmf' or 'etsi'")
            if self.number_absence is not None:
                number = self.number_absence.value.encode()
            return Message(SDMF, date + (number or b""))
        params: list[tuple[int, bytes]] = []
        if date is not None:
            params.append((PARAM_DATE_TIME, date))
        if number is not None:
            params.append((PARAM_NUMBER, number))
        if self.number_absence is not None:
            params.append((PARAM_NUMBER_ABSENCE, self.number_absence.value.encode()))
        if name is not None:
            params.append((PARAM_NAME, name))
        if self.name_absence is not None:
            params.append((PARAM_NAME_ABSENCE, self.name_absence.value.encode()))
        return Message(MDMF, b"".join(bytes([k, len(v)]) + v for k, v in params))

    def serialize(self, format: str = "mdmf") -> bytes:
        """The message bytes (type, length, body, checksum); see :meth:`to_message`."""
        return self.to_message(format).serialize()

    # ------------------------------------------------------------------ decoding

    @classmethod
    def from_message(cls, message: Message) -> CallerId:
        """Decode an SDMF or MDMF/call set-up message (unknown parameters are skipped).

        Raises UnknownMessageType for other types, TruncatedMessage or
        MalformedParameter for a body that does not follow the format.
        """
        if message.type == SDMF:
            body = message.body
            if len(body) < 8:
                raise MalformedParameter(f"SDMF body is {len(body)} bytes; the date-time "
                                         "alone takes 8")
            fields: dict[str, object] = dict(_date(body[:8]))
            rest = body[8:]
            if rest in (b"P", b"O"):
                fields["number_absence"] = Absence(rest.decode())
            elif rest:
                fields["number"] = rest.decode("latin-1")
            return cls(**fields)  # type: ignore[arg-type]
        if message.type != MDMF:
            raise UnknownMessageType(f"message type 0x{message.type:02X} carries no Caller "
                                     f"ID; expected 0x{SDMF:02X} (SDMF) or 0x{MDMF:02X} "
                                     "(MDMF / call set-up)")
        fields = {}
        for kind, value in message.parameters():
            if kind == PARAM_DATE_TIME:
                fields.update(_date(value))
            elif kind == PARAM_NUMBER:
                fields["number"] = value.decode("latin-1")
            elif kind == PARAM_NAME:
                fields["name"] = value.decode("latin-1")
            elif kind in (PARAM_NUMBER_ABSENCE, PARAM_NAME_ABSENCE):
                what = "number" if kind == PARAM_NUMBER_ABSENCE else "name"
                if value not in (b"P", b"O"):
                    raise MalformedParameter(f"reason for absence of the {what} is "
                                             f"{value!r}; expected b'P' or b'O'")
                fields[f"{what}_absence"] = Absence(value.decode())
            else:
                _log.debug("Caller ID parameter 0x%02X (%d bytes) skipped", kind, len(value))
        for what in ("number", "name"):  # a network that sends both: the value wins
            if f"{what}_absence" in fields and what in fields:
                del fields[f"{what}_absence"]
        return cls(**fields)  # type: ignore[arg-type]

    @classmethod
    def parse(cls, data: bytes) -> CallerId:
        """Decode message bytes. Raises the CallerIdError subclasses of
        :meth:`Message.parse` and :meth:`from_message`."""
        return cls.from_message(Message.parse(data))


def _text(field: str, value: str | None, limit: int) -> bytes | None:
    if value is None:
        return None
    if limit == 0:
        raise ArgumentError(f"this format carries no {field}")
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ArgumentError(f"{field} {value!r} has {value[exc.start]!r}, which ISO 8859-1 "
                            "cannot encode") from None
    bad = [c for c in raw if c < 0x20 or 0x7F <= c < 0xA0]
    if bad:
        raise ArgumentError(f"{field} {value!r} has control character 0x{bad[0]:02X}; "
                            "expected printable text")
    if not raw or len(raw) > limit:
        raise ArgumentError(f"{field} {value!r} is {len(raw)} characters; expected 1 to "
                            f"{limit}")
    return raw


def _date(value: bytes) -> dict[str, int]:
    if len(value) != 8 or not value.isdigit():
        raise MalformedParameter(f"date-time is {value!r}; expected 8 digits MMDDHHMM")
    fields = {}
    for i, (field, lo, hi) in enumerate(_DATE_FIELDS):
        v = int(value[2 * i:2 * i + 2])
        if not lo <= v <= hi:
            raise MalformedParameter(f"date-time {value.decode()}: {field} is {v}; "
                                     f"expected {lo} to {hi}")
        fields[field] = v
    return fields


# --------------------------------------------------------------------------- FSK

@dataclass(frozen=True, slots=True)
class FskStandard:
    """Mark (1) and space (0) frequencies and the default seizure and mark lengths."""

    name: str
    mark_hz: int
    space_hz: int
    seizure_bits: int
    mark_bits: int
    format: str  # the message format its spill uses by default


BELL = FskStandard("bell", 1200, 2200, 300, 180, "mdmf")  # Bell 202, Telcordia GR-30
ETSI = FskStandard("etsi", 1300, 2100, 300, 80, "etsi")  # ITU-T V.23, EN 300 659-1
_STANDARDS = {"bell": BELL, "etsi": ETSI}


def _standard(standard: str | FskStandard) -> FskStandard:
    if isinstance(standard, FskStandard):
        return standard
    try:
        return _STANDARDS[standard]
    except (KeyError, TypeError):
        raise ArgumentError(f"unknown FSK standard {standard!r}; expected 'bell' "
                            "(Bell 202) or 'etsi' (V.23)") from None


def _real(name: str, value: object, lo: float, hi: float) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or not lo <= value <= hi):
        raise ArgumentError(f"{name} must be a number from {lo:g} to {hi:g}; got {value!r}")
    return float(value)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10000:
        raise ArgumentError(f"{name} must be an int from 0 to 10000; got {value!r}")
    return value


def modulate(data: bytes, standard: str | FskStandard = "bell", *,
             seizure_bits: int | None = None, mark_bits: int | None = None,
             level_dbm0: float = DEFAULT_LEVEL_DBM0, law: str = "ulaw",
             baud: float = BAUD, frequency_error: float = 0.0) -> array.array:
    """8 kHz s16 samples of a spill carrying ``data`` (see the module docstring).

    ``seizure_bits``/``mark_bits`` default to the standard's (300 and 180 or 80).
    ``baud`` and ``frequency_error`` (relative: 0.01 is 1 % high on both tones) exist to
    test a receiver against an off-nominal transmitter. Raises ArgumentError for values
    out of range or an unknown standard or law.
    """
    std = _standard(standard)
    seizure = _count("seizure_bits", std.seizure_bits if seizure_bits is None else seizure_bits)
    marks = _count("mark_bits", std.mark_bits if mark_bits is None else mark_bits)
    level = _real("level_dbm0", level_dbm0, -99.0, 3.0)
    rate = _real("baud", baud, 1100.0, 1300.0)
    error = _real("frequency_error", frequency_error, -0.1, 0.1)
    try:
        ref = reference_rms(law)
    except ValueError as exc:
        raise ArgumentError(str(exc)) from None
    bits = [i & 1 for i in range(seizure)] + [1] * marks
    for byte in bytes(data):
        bits += [0] + [(byte >> i) & 1 for i in range(8)] + [1]
    amplitude = ref * math.sqrt(2.0) * 10.0 ** (level / 20.0)
    steps = {1: 2.0 * math.pi * std.mark_hz * (1.0 + error) / RATE,
             0: 2.0 * math.pi * std.space_hz * (1.0 + error) / RATE}
    out = array.array("h")
    if not bits:
        return out
    total = math.ceil(len(bits) * RATE / rate)
    fade = RATE // 1000  # after the last bit, on its (mark) frequency
    phase = 0.0
    for n in range(total + fade):
        k = min(int(n * rate / RATE), len(bits) - 1)
        gain = amplitude
        if n >= total:
            gain *= 0.5 + 0.5 * math.cos(math.pi * (n - total + 1) / (fade + 1))
        out.append(round(gain * math.sin(phase)))
        phase = (phase + steps[bits[k]]) % (2.0 * math.pi)
    return out


def spill(caller_id: CallerId, standard: str | FskStandard = "bell", *,
          format: str | None = None, **kwargs: object) -> array.array:
    """The whole on-line FSK spill for ``caller_id``: samples a far end would send.

    ``format`` defaults to ``"mdmf"`` for Bell and ``"etsi"`` for ETSI; ``kwargs`` are
    :func:`modulate`'s. Raises ArgumentError as they do.
    """
    std = _standard(standard)
    data = caller_id.serialize(std.format if format is None else format)
    return modulate(data, std, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- demodulator

@dataclass(frozen=True, slots=True)
class CallerIdEvent:
    """A message received with a good checksum. ``caller_id`` is None for a message that
    is not Caller ID (e.g. message waiting) or whose body is malformed (``error`` says
    why). ``start``/``end`` are sample indices: the mark signal's start as found, and the
    end of the last stop bit."""

    message: Message
    caller_id: CallerId | None
    start: int
    end: int
    error: CallerIdError | None = None


_CORRELATOR = 7  # samples in the mark/space correlation window (a bit is 6.67)
_CARRIER_SPAN = 27  # samples the carrier detect averages the level over (four bits)
MIN_LEVEL_DBM0 = -48.0
MIN_MARK_BITS = 24
MAX_LEAD_BITS = 400  # mark allowed before the first byte (Bell sends 180 ± 25)
MAX_GAP_BITS = 40  # mark allowed between bytes
_PURITY_SAMPLES = 100  # the mark signal must be one pure tone over this many samples
_MIN_PURITY = 0.8  # ... holding this share of the power (DTMF holds about 0.6)
#: message types the receiver accepts: Bell 0x04 SDMF, 0x06 SDMF message waiting, 0x0B
#: message desk; 0x80 MDMF / ETSI call set-up, 0x81 test, 0x82 message waiting,
#: 0x86 advice of charge, 0x89 short message service
MESSAGE_TYPES = frozenset({0x04, 0x06, 0x0B, 0x80, 0x81, 0x82, 0x86, 0x89})
_CLOCK_GAIN = 0.25  # share of each transition's timing error the bit clock takes up
_SNAP_BITS = 10  # after this many bits without a transition the next one sets the clock

_HUNT, _WAIT, _BYTE = range(3)


class CallerIdReceiver:
    """Streaming FSK Caller ID receiver for one ``standard`` ("bell" or "etsi").

    :meth:`feed` takes s16 samples in chunks of any size and returns a
    :class:`CallerIdEvent` for each message that ended in them; results do not depend on
    the chunking. Sans-I/O: no clock, no callbacks. ``message_types`` limits the first
    byte of a message (None: any). ``rejected`` counts framed messages dropped for a bad
    checksum. Raises ArgumentError for an unknown standard.

    Idle mark between bytes that is not a whole number of bits long (a transmitter whose
    bit clock is not continuous) is followed by re-timing on the next byte's edges, all
    at once after 10 idle bits, over a few edges after fewer.
    """

    def __init__(self, standard: str | FskStandard = "bell", *,
                 message_types: Iterable[int] | None = MESSAGE_TYPES) -> None:
        self.standard = std = _standard(standard)
        if message_types is not None:
            message_types = frozenset(message_types)
            if not all(isinstance(t, int) and 0 <= t <= 255 for t in message_types):
                raise ArgumentError(f"message_types must be bytes (ints 0-255) or None; "
                                    f"got {sorted(message_types, key=repr)!r}")
        self.message_types = message_types
        self._spb = RATE / BAUD
        # one period of e^{-iωn} for both tones, to step through with the sample index
        period = math.lcm(RATE // math.gcd(RATE, std.mark_hz),
                          RATE // math.gcd(RATE, std.space_hz))
        self._period = period
        self._mark_tab = [cmath.exp(-2j * math.pi * std.mark_hz * n / RATE)
                          for n in range(period)]
        self._space_tab = [cmath.exp(-2j * math.pi * std.space_hz * n / RATE)
                           for n in range(period)]
        self._min_power = (reference_rms("ulaw") * 10.0 ** (MIN_LEVEL_DBM0 / 20.0)) ** 2
        self.rejected = 0
        self._n = 0  # absolute index of the next sample
        # what the sliding sums need from before this chunk
        self._tail_m: list[complex] = [0j] * _CORRELATOR
        self._tail_s: list[complex] = [0j] * _CORRELATOR
        self._tail_e: list[float] = [0.0] * _CARRIER_SPAN
        self._recent: list[float] = []  # the last raw samples, for the mark purity check
        self._raw: list[float] = []  # _recent and the chunk being worked on
        self._purity_tabs = [[cmath.exp(-2j * math.pi * std.mark_hz * (1 + k) * n / RATE)
                              for n in range(_PURITY_SAMPLES)]
                             for k in (0.0, -0.015, 0.015, -0.03, 0.03)]
        # bit clock, in "window centre" time: the window ending at sample n is centred on
        # n - (L-1)/2, and its output crosses zero when that centre is on a bit edge
        self._prev_d = 0.0
        self._next_centre = self._spb / 2.0
        self._quiet = _SNAP_BITS  # bits since the last transition
        self._reset_message()

    def _reset_message(self) -> None:
        self._state = _HUNT
        self._count = 0  # HUNT: mark bits in a row; WAIT: idle bits; BYTE: bits read
        self._limit = 0
        self._mark_start = 0
        self._bytes = bytearray()
        self._byte = 0

    def feed(self, samples: Iterable[int]) -> list[CallerIdEvent]:
        """Demodulate ``samples`` (s16 values); return the messages completed in them."""
        xs = [float(v) for v in samples]
        events: list[CallerIdEvent] = []
        if xs:
            self._raw = self._recent + xs
            self._clock(*self._front_end(xs), events)
            self._n += len(xs)
            self._recent = self._raw[-(_PURITY_SAMPLES + _CORRELATOR):]
        return events

    # ------------------------------------------------------------------ front end

    def _front_end(self, xs: list[float]) -> tuple[list[float], list[bool]]:
        """Per new sample: the decision ``|mark|² - |space|²`` of the window ending there,
        and whether the level over the last four bits is above the floor."""
        L, C, k = _CORRELATOR, _CARRIER_SPAN, self._n % self._period
        mark = itertools.islice(itertools.cycle(self._mark_tab), k, None)
        space = itertools.islice(itertools.cycle(self._space_tab), k, None)
        pm = self._tail_m + [x * t for x, t in zip(xs, mark, strict=False)]
        ps = self._tail_s + [x * t for x, t in zip(xs, space, strict=False)]
        pe = self._tail_e + [x * x for x in xs]
        # sliding sums as differences of running sums, restarted every chunk
        cm = list(itertools.accumulate(pm))
        cs = list(itertools.accumulate(ps))
        ce = list(itertools.accumulate(pe))
        m = len(xs)
        dm, ds, de = len(pm) - m, len(ps) - m, len(pe) - m
        decisions = [abs(cm[i + dm] - cm[i + dm - L]) ** 2 - abs(cs[i + ds] - cs[i + ds - L]) ** 2
                     for i in range(m)]
        floor = self._min_power * C
        carrier = [ce[i + de] - ce[i + de - C] > floor for i in range(m)]
        self._tail_m, self._tail_s, self._tail_e = pm[-L:], ps[-L:], pe[-C:]
        return decisions, carrier

    # ------------------------------------------------------------------ bits and bytes

    def _clock(self, ds: list[float], carriers: list[bool], events: list[CallerIdEvent]) -> None:
        """Recover the bit clock from the decision stream and read one bit per bit time."""
        spb, half = self._spb, self._spb / 2.0
        centre0 = self._n - (_CORRELATOR - 1) / 2.0
        prev, nxt, quiet = self._prev_d, self._next_centre, self._quiet
        for i, d in enumerate(ds):
            t = centre0 + i
            if (d > 0) != (prev > 0) and prev != d:
                # a transition: where d crossed zero is a bit edge; the edge due is the
                # one half a bit before the next centre
                err = (t - 1 + prev / (prev - d)) - (nxt - half)
                if quiet >= _SNAP_BITS:
                    nxt += err
                else:
                    nxt += _CLOCK_GAIN * max(-half, min(half, err))
                quiet = 0
            prev = d
            if t >= nxt - 0.5:
                nxt += spb
                quiet += 1
                self._bit(d > 0, carriers[i], round(t), events)
        self._prev_d, self._next_centre, self._quiet = prev, nxt, quiet

    def _pure_mark(self, at: int) -> bool:
        """Whether the samples just before ``at`` are one tone at the mark frequency."""
        stop = at - self._n + len(self._recent)  # index into self._raw
        xs = self._raw[max(0, stop - _PURITY_SAMPLES):stop]
        if len(xs) < _PURITY_SAMPLES:
            return False
        need = _MIN_PURITY * sum(x * x for x in xs) * len(xs) / 2.0
        # at the mark frequency and 1.5 % and 3 % either side of it, so a transmitter
        # that is off frequency by up to 3 % still passes
        for tab in self._purity_tabs:
            if abs(sum(x * t for x, t in zip(xs, tab, strict=True))) ** 2 >= need:
                return True
        return False

    def _bit(self, bit: bool, carrier: bool, at: int, events: list[CallerIdEvent]) -> None:
        state = self._state
        if not carrier:
            if state != _HUNT:
                self._abandon("carrier lost", at)
            self._count = 0
            return
        if state == _HUNT:
            if not bit:
                self._count = 0
                return
            if self._count == 0:
                self._mark_start = round(at - self._spb / 2.0)
            self._count += 1
            # (a signal that failed the purity check is looked at again every 8 bits)
            if (self._count >= MIN_MARK_BITS and (self._count - MIN_MARK_BITS) % 8 == 0
                    and self._pure_mark(at)):
                self._state, self._count, self._limit = _WAIT, 0, MAX_LEAD_BITS
        elif state == _WAIT:
            if bit:
                self._count += 1
                if self._count > self._limit:
                    self._abandon("no start bit", at)
            else:
                self._state, self._count, self._byte = _BYTE, 0, 0
        elif self._count < 8:
            self._byte |= bit << self._count
            self._count += 1
        elif not bit:
            self._abandon("framing error (stop bit is a space)", at)
        else:
            self._got_byte(self._byte, round(at + self._spb / 2.0), events)

    def _got_byte(self, byte: int, end: int, events: list[CallerIdEvent]) -> None:
        buf = self._bytes
        if not buf and self.message_types is not None and byte not in self.message_types:
            self._abandon(f"message type 0x{byte:02X} is not one we take", end)
            return
        buf.append(byte)
        if len(buf) >= 2 and len(buf) == buf[1] + 3:
            self._deliver(bytes(buf), end, events)
            self._reset_message()
        else:
            self._state, self._count, self._limit = _WAIT, 0, MAX_GAP_BITS

    def _deliver(self, data: bytes, end: int, events: list[CallerIdEvent]) -> None:
        try:
            message = Message.parse(data)
        except CallerIdError as exc:
            self.rejected += 1
            _log.info("Caller ID message dropped: %s", exc)
            return
        caller_id, error = None, None
        if message.type in (SDMF, MDMF):
            try:
                caller_id = CallerId.from_message(message)
            except CallerIdError as exc:
                error = exc
                _log.info("Caller ID message not understood: %s", exc)
        events.append(CallerIdEvent(message, caller_id, self._mark_start, end, error))

    def _abandon(self, why: str, at: int) -> None:
        if self._bytes:
            _log.info("Caller ID message abandoned after %d bytes at sample %d: %s",
                      len(self._bytes), at, why)
        self._reset_message()
