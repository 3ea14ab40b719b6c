"""libpri 1.6's numbers, the ``pri_event`` layout, and the events copied out of it.

Everything here mirrors ``libpri.h`` of libpri 1.6.0 (Debian ``libpri-dev`` 1.6.0-2) on
x86_64: constants under their C names, ctypes structs whose ``_c_name_`` and field names
are the C ones. ``tests/sim/test_libpri_layout.py`` compiles a probe against the installed
header, generated from these names, and compares every value, offset and size.
No library is loaded here; :mod:`uascall.dahdi.libpri` loads libpri and re-exports all of
this, so users only ever need that module.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from enum import IntEnum, IntFlag

# --- constants (C names from libpri.h; checked by tests/sim/test_libpri_layout.py) ----------

PRI_NETWORK = 1
PRI_CPE = 2

PRI_SWITCH_NI2 = 1
PRI_SWITCH_DMS100 = 2
PRI_SWITCH_LUCENT5E = 3
PRI_SWITCH_ATT4ESS = 4
PRI_SWITCH_EUROISDN_E1 = 5
PRI_SWITCH_EUROISDN_T1 = 6
PRI_SWITCH_NI1 = 7
PRI_SWITCH_QSIG = 10

PRI_DEBUG_Q921_RAW = 1 << 0
PRI_DEBUG_Q921_DUMP = 1 << 1
PRI_DEBUG_Q921_STATE = 1 << 2
PRI_DEBUG_CONFIG = 1 << 3
PRI_DEBUG_Q931_DUMP = 1 << 5
PRI_DEBUG_Q931_STATE = 1 << 6
PRI_DEBUG_Q931_ANOMALY = 1 << 7
PRI_DEBUG_APDU = 1 << 8
PRI_DEBUG_AOC = 1 << 9
PRI_DEBUG_CC = 1 << 10
PRI_DEBUG_ALL = 0xFFFF

PRI_EVENT_DCHAN_UP = 1
PRI_EVENT_DCHAN_DOWN = 2
PRI_EVENT_RESTART = 3
PRI_EVENT_CONFIG_ERR = 4
PRI_EVENT_RING = 5
PRI_EVENT_HANGUP = 6
PRI_EVENT_RINGING = 7
PRI_EVENT_ANSWER = 8
PRI_EVENT_HANGUP_ACK = 9
PRI_EVENT_RESTART_ACK = 10
PRI_EVENT_FACILITY = 11
PRI_EVENT_INFO_RECEIVED = 12
PRI_EVENT_PROCEEDING = 13
PRI_EVENT_SETUP_ACK = 14
PRI_EVENT_HANGUP_REQ = 15
PRI_EVENT_NOTIFY = 16
PRI_EVENT_PROGRESS = 17
PRI_EVENT_KEYPAD_DIGIT = 18
PRI_EVENT_SERVICE = 19
PRI_EVENT_SERVICE_ACK = 20
PRI_EVENT_HOLD = 21
PRI_EVENT_HOLD_ACK = 22
PRI_EVENT_HOLD_REJ = 23
PRI_EVENT_RETRIEVE = 24
PRI_EVENT_RETRIEVE_ACK = 25
PRI_EVENT_RETRIEVE_REJ = 26
PRI_EVENT_CONNECT_ACK = 27

# Progress indicator mask bits (libpri's, not the Q.931 description values).
PRI_PROG_CALL_NOT_E2E_ISDN = 1 << 0                # PI #1
PRI_PROG_CALLED_NOT_ISDN = 1 << 1                  # PI #2
PRI_PROG_CALLER_NOT_ISDN = 1 << 2                  # PI #3
PRI_PROG_INBAND_AVAILABLE = 1 << 3                 # PI #8
PRI_PROG_DELAY_AT_INTERF = 1 << 4                  # PI #10
PRI_PROG_INTERWORKING_WITH_PUBLIC = 1 << 5
PRI_PROG_INTERWORKING_NO_RELEASE = 1 << 6
PRI_PROG_INTERWORKING_NO_RELEASE_PRE_ANSWER = 1 << 7
PRI_PROG_INTERWORKING_NO_RELEASE_POST_ANSWER = 1 << 8
PRI_PROG_CALLER_RETURNED_TO_ISDN = 1 << 9          # PI #4

# Numbering plan and type of number, as pri_sr_set_called/_caller take them.
PRI_UNKNOWN = 0x00
PRI_INTERNATIONAL_ISDN = 0x11
PRI_NATIONAL_ISDN = 0x21
PRI_LOCAL_ISDN = 0x41
PRI_PRIVATE = 0x49

PRES_ALLOWED_USER_NUMBER_NOT_SCREENED = 0x00
PRES_ALLOWED_USER_NUMBER_PASSED_SCREEN = 0x01
PRES_ALLOWED_USER_NUMBER_FAILED_SCREEN = 0x02
PRES_ALLOWED_NETWORK_NUMBER = 0x03
PRES_PROHIB_USER_NUMBER_NOT_SCREENED = 0x20
PRES_PROHIB_USER_NUMBER_PASSED_SCREEN = 0x21
PRES_PROHIB_USER_NUMBER_FAILED_SCREEN = 0x22
PRES_PROHIB_NETWORK_NUMBER = 0x23
PRES_NUMBER_NOT_AVAILABLE = 0x43

PRI_TRANS_CAP_SPEECH = 0x00
PRI_TRANS_CAP_DIGITAL = 0x08
PRI_TRANS_CAP_RESTRICTED_DIGITAL = 0x09
PRI_TRANS_CAP_3_1K_AUDIO = 0x10
PRI_LAYER_1_ULAW = 0x22
PRI_LAYER_1_ALAW = 0x23

PRI_CAUSE_UNALLOCATED = 1
PRI_CAUSE_NO_ROUTE_DESTINATION = 3
PRI_CAUSE_CHANNEL_UNACCEPTABLE = 6
PRI_CAUSE_NORMAL_CLEARING = 16
PRI_CAUSE_USER_BUSY = 17
PRI_CAUSE_NO_USER_RESPONSE = 18
PRI_CAUSE_NO_ANSWER = 19
PRI_CAUSE_CALL_REJECTED = 21
PRI_CAUSE_NUMBER_CHANGED = 22
PRI_CAUSE_DESTINATION_OUT_OF_ORDER = 27
PRI_CAUSE_INVALID_NUMBER_FORMAT = 28
PRI_CAUSE_NORMAL_UNSPECIFIED = 31
PRI_CAUSE_NORMAL_CIRCUIT_CONGESTION = 34
PRI_CAUSE_NETWORK_OUT_OF_ORDER = 38
PRI_CAUSE_NORMAL_TEMPORARY_FAILURE = 41
PRI_CAUSE_SWITCH_CONGESTION = 42
PRI_CAUSE_REQUESTED_CHAN_UNAVAIL = 44
PRI_CAUSE_BEARERCAPABILITY_NOTAVAIL = 58
PRI_CAUSE_BEARERCAPABILITY_NOTIMPL = 65
PRI_CAUSE_INVALID_CALL_REFERENCE = 81
PRI_CAUSE_IDENTIFIED_CHANNEL_NOTEXIST = 82
PRI_CAUSE_INCOMPATIBLE_DESTINATION = 88
PRI_CAUSE_RECOVERY_ON_TIMER_EXPIRE = 102
PRI_CAUSE_PROTOCOL_ERROR = 111
PRI_CAUSE_INTERWORKING = 127

# enum PRI_TIMERS_AND_COUNTERS: indices for pri_set_timer (values in ms, counters as counts).
PRI_TIMER_N200 = 0
PRI_TIMER_K = 3
PRI_TIMER_T200 = 4
PRI_TIMER_T203 = 7
PRI_TIMER_T303 = 11
PRI_TIMER_T305 = 13
PRI_TIMER_T308 = 16
PRI_TIMER_T309 = 17
PRI_TIMER_T310 = 18
PRI_TIMER_T313 = 19
PRI_TIMER_T316 = 21
PRI_TIMER_N316 = 53


class Node(IntEnum):
    """Which end of the D-channel we are (``nodetype``)."""

    NETWORK = PRI_NETWORK
    CPE = PRI_CPE


class Switch(IntEnum):
    """Switch (protocol variant) types; the member name follows ``PRI_SWITCH_``."""

    NI2 = PRI_SWITCH_NI2
    DMS100 = PRI_SWITCH_DMS100
    LUCENT5E = PRI_SWITCH_LUCENT5E
    ATT4ESS = PRI_SWITCH_ATT4ESS
    EUROISDN_E1 = PRI_SWITCH_EUROISDN_E1
    EUROISDN_T1 = PRI_SWITCH_EUROISDN_T1
    NI1 = PRI_SWITCH_NI1
    QSIG = PRI_SWITCH_QSIG


class Debug(IntFlag):
    """``pri_set_debug`` flags; the member name follows ``PRI_DEBUG_``."""

    Q921_RAW = PRI_DEBUG_Q921_RAW
    Q921_DUMP = PRI_DEBUG_Q921_DUMP
    Q921_STATE = PRI_DEBUG_Q921_STATE
    CONFIG = PRI_DEBUG_CONFIG
    Q931_DUMP = PRI_DEBUG_Q931_DUMP
    Q931_STATE = PRI_DEBUG_Q931_STATE
    Q931_ANOMALY = PRI_DEBUG_Q931_ANOMALY
    APDU = PRI_DEBUG_APDU
    AOC = PRI_DEBUG_AOC
    CC = PRI_DEBUG_CC
    ALL = PRI_DEBUG_ALL


class Timer(IntEnum):
    """Timer and counter indices for :meth:`Pri.set_timer`; the name follows ``PRI_TIMER_``.

    Defaults (PRI): N200 3, K 7, T200 1 s, T203 10 s, T303 4 s, T305 30 s, T308 4 s,
    T309 6 s, T313 4 s; T310 and T316 are off (-1), N316 2.
    """

    N200 = PRI_TIMER_N200
    K = PRI_TIMER_K
    T200 = PRI_TIMER_T200
    T203 = PRI_TIMER_T203
    T303 = PRI_TIMER_T303
    T305 = PRI_TIMER_T305
    T308 = PRI_TIMER_T308
    T309 = PRI_TIMER_T309
    T310 = PRI_TIMER_T310
    T313 = PRI_TIMER_T313
    T316 = PRI_TIMER_T316
    N316 = PRI_TIMER_N316


class Plan(IntEnum):
    """Numbering plan and type of number of a called or calling number."""

    UNKNOWN = PRI_UNKNOWN
    INTERNATIONAL = PRI_INTERNATIONAL_ISDN
    NATIONAL = PRI_NATIONAL_ISDN
    LOCAL = PRI_LOCAL_ISDN
    PRIVATE = PRI_PRIVATE


def _names(prefix: str) -> dict[int, str]:
    return {value: name[len(prefix):] for name, value in globals().items()
            if name.startswith(prefix) and isinstance(value, int)}


# PRI_EVENT_FACILITY is defined after its deprecated alias FACNAME in C; ours has no alias.
EVENT_NAMES: dict[int, str] = _names("PRI_EVENT_")
PROGRESS_NAMES: dict[int, str] = _names("PRI_PROG_")

# Bit 16 of a channel value: the span/DS1 byte (bits 8-15) is explicit. Bits 0-7 are the
# B-channel; -1 (or 0xff in bits 0-7) means "any channel".
CHANNEL_EXPLICIT = 1 << 16


def event_name(code: int) -> str:
    """``PRI_EVENT_RING`` -> "RING"; unknown codes -> "UNKNOWN(n)"."""
    return EVENT_NAMES.get(code, f"UNKNOWN({code})")


def progress_mask_text(mask: int) -> str:
    """Render a progress mask: ``8`` -> "INBAND_AVAILABLE", ``0`` -> "none"."""
    names = [name for bit, name in sorted(PROGRESS_NAMES.items()) if mask & bit]
    rest = mask & ~sum(PROGRESS_NAMES)
    if rest:
        names.append(f"{rest:#x}")
    return "|".join(names) or "none"


def b_channel(channel: int) -> int | None:
    """The B-channel number (bits 0-7) of an event's channel value; None for "any"."""
    number = channel & 0xFF
    return None if channel == -1 or number == 0xFF else number


# --- the pri_event union (x86_64 layout of libpri 1.6.0's libpri.h) ------------------------
#
# Class names are ours; ``_c_name_`` is the C type and field names are the C members, so the
# layout test can generate offsetof()/sizeof() probes from them. Nested structs we never read
# (struct pri_party_id, struct pri_party_subaddress) are opaque byte arrays of their size.

_c_int, _c_long, _ptr = ctypes.c_int, ctypes.c_long, ctypes.c_void_p


def _chars(n: int) -> type[ctypes.Array[ctypes.c_char]]:
    return ctypes.c_char * n


class Timeval(ctypes.Structure):
    _c_name_ = "struct timeval"
    _fields_ = [("tv_sec", _c_long), ("tv_usec", _c_long)]


class PriEventGeneric(ctypes.Structure):
    _c_name_ = "pri_event_generic"
    _fields_ = [("e", _c_int)]


class PriEventError(ctypes.Structure):
    _c_name_ = "pri_event_error"
    _fields_ = [("e", _c_int), ("err", _chars(256))]


class PriEventRestart(ctypes.Structure):
    _c_name_ = "pri_event_restart"
    _fields_ = [("e", _c_int), ("channel", _c_int)]


class PriEventRestartAck(ctypes.Structure):
    _c_name_ = "pri_event_restart_ack"
    _fields_ = [("e", _c_int), ("channel", _c_int)]


class PriEventRing(ctypes.Structure):
    _c_name_ = "pri_event_ring"
    _fields_ = [
        ("e", _c_int), ("channel", _c_int), ("callingpres", _c_int),
        ("callingplanani", _c_int), ("callingplan", _c_int), ("callingani", _chars(256)),
        ("callingnum", _chars(256)), ("callingname", _chars(256)), ("calledplan", _c_int),
        ("ani2", _c_int), ("callednum", _chars(256)), ("redirectingnum", _chars(256)),
        ("redirectingname", _chars(256)), ("redirectingreason", _c_int),
        ("callingplanrdnis", _c_int), ("useruserinfo", _chars(260)), ("flexible", _c_int),
        ("cref", _c_int), ("ctype", _c_int), ("layer1", _c_int), ("complete", _c_int),
        ("call", _ptr), ("callingsubaddr", _chars(256)), ("progress", _c_int),
        ("progressmask", _c_int), ("origcalledname", _chars(256)),
        ("origcallednum", _chars(256)), ("callingplanorigcalled", _c_int),
        ("origredirectingreason", _c_int), ("reversecharge", _c_int), ("subcmds", _ptr),
        ("calling", ctypes.c_ubyte * 200),           # struct pri_party_id
        ("called_subaddress", ctypes.c_ubyte * 48),  # struct pri_party_subaddress
        ("keypad_digits", _chars(64)),
    ]


class PriEventHangup(ctypes.Structure):  # HANGUP, HANGUP_REQ, HANGUP_ACK
    _c_name_ = "pri_event_hangup"
    _fields_ = [
        ("e", _c_int), ("channel", _c_int), ("cause", _c_int), ("cref", _c_int),
        ("call", _ptr), ("aoc_units", _c_long), ("useruserinfo", _chars(260)),
        ("subcmds", _ptr), ("call_held", _ptr), ("call_active", _ptr),
    ]


_RINGING_FIELDS = [
    ("e", _c_int), ("channel", _c_int), ("cref", _c_int), ("progress", _c_int),
    ("progressmask", _c_int), ("call", _ptr), ("useruserinfo", _chars(260)), ("subcmds", _ptr),
]


class PriEventRinging(ctypes.Structure):
    _c_name_ = "pri_event_ringing"
    _fields_ = _RINGING_FIELDS


class PriEventAnswer(ctypes.Structure):
    _c_name_ = "pri_event_answer"
    _fields_ = _RINGING_FIELDS


class PriEventProceeding(ctypes.Structure):  # PROCEEDING and PROGRESS
    _c_name_ = "pri_event_proceeding"
    _fields_ = [
        ("e", _c_int), ("channel", _c_int), ("cref", _c_int), ("progress", _c_int),
        ("progressmask", _c_int), ("cause", _c_int), ("call", _ptr), ("subcmds", _ptr),
    ]


class PriEventSetupAck(ctypes.Structure):
    _c_name_ = "pri_event_setup_ack"
    _fields_ = [("e", _c_int), ("channel", _c_int), ("call", _ptr), ("subcmds", _ptr),
                ("progressmask", _c_int)]


class PriEventNotify(ctypes.Structure):
    _c_name_ = "pri_event_notify"
    _fields_ = [("e", _c_int), ("channel", _c_int), ("info", _c_int), ("subcmds", _ptr),
                ("call", _ptr)]


class PriEventKeypadDigit(ctypes.Structure):
    _c_name_ = "pri_event_keypad_digit"
    _fields_ = [("e", _c_int), ("channel", _c_int), ("call", _ptr), ("digits", _chars(64)),
                ("subcmds", _ptr)]


class PriEventConnectAck(ctypes.Structure):
    _c_name_ = "struct pri_event_connect_ack"
    _fields_ = [("e", _c_int), ("channel", _c_int), ("call", _ptr), ("subcmds", _ptr)]


class PriEvent(ctypes.Union):
    """``pri_event``: only the views we read; ``ring`` is the largest member in C too."""

    _c_name_ = "pri_event"
    _fields_ = [
        ("e", _c_int), ("gen", PriEventGeneric), ("restart", PriEventRestart),
        ("err", PriEventError), ("ring", PriEventRing), ("hangup", PriEventHangup),
        ("ringing", PriEventRinging), ("answer", PriEventAnswer),
        ("restartack", PriEventRestartAck), ("proceeding", PriEventProceeding),
        ("setup_ack", PriEventSetupAck), ("notify", PriEventNotify),
        ("digit", PriEventKeypadDigit), ("connect_ack", PriEventConnectAck),
    ]


EVENT_STRUCTS: tuple[type[ctypes.Structure | ctypes.Union], ...] = (
    PriEventGeneric, PriEventError, PriEventRestart, PriEventRestartAck, PriEventRing,
    PriEventHangup, PriEventRinging, PriEventAnswer, PriEventProceeding, PriEventSetupAck,
    PriEventNotify, PriEventKeypadDigit, PriEventConnectAck, PriEvent, Timeval,
)


# --- events, copied out of libpri's buffer ------------------------------------------------
#
# ``call`` is libpri's q931_call pointer as an int (0 for NULL): pass it back unchanged.
# ``channel`` is libpri's encoded channel (see b_channel), -1 for "none/any".


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of everything :meth:`Pri.check_event`/:meth:`Pri.schedule_run` return."""


@dataclass(frozen=True, slots=True)
class DchanUp(Event):
    """Q.921 multiple-frame operation established: the D-channel carries calls."""


@dataclass(frozen=True, slots=True)
class DchanDown(Event):
    """Q.921 link lost. Calls not yet answered get :class:`Hangup` cause 27 at once, answered
    calls after T309; libpri keeps trying to re-establish the link by itself."""


@dataclass(frozen=True, slots=True)
class Restart(Event):
    """The peer restarted ``channel`` (RESTART); libpri has already acknowledged it."""

    channel: int


@dataclass(frozen=True, slots=True)
class RestartAck(Event):
    """Our :meth:`Pri.restart` of ``channel`` was acknowledged."""

    channel: int


@dataclass(frozen=True, slots=True)
class ConfigError(Event):
    message: str


@dataclass(frozen=True, slots=True)
class Ring(Event):
    """Incoming SETUP. ``complete`` is true when Sending Complete came (EuroISDN always
    sends it; NI2 and others never do, even for a full number); ``flexible`` when the
    channel is only preferred, so we may pick another (or ``channel`` is -1)."""

    call: int
    channel: int
    cref: int
    called_number: str
    called_plan: int
    calling_number: str
    calling_name: str
    calling_plan: int
    calling_pres: int
    complete: bool
    flexible: bool
    layer1: int
    ctype: int
    progress_mask: int


@dataclass(frozen=True, slots=True)
class _Clearing(Event):
    call: int
    channel: int
    cref: int
    cause: int


@dataclass(frozen=True, slots=True)
class HangupReq(_Clearing):
    """DISCONNECT received: answer with :meth:`Pri.hangup` (sends RELEASE)."""


@dataclass(frozen=True, slots=True)
class Hangup(_Clearing):
    """RELEASE received, or the call cleared internally (timer, link loss): call
    :meth:`Pri.hangup` once more to send RELEASE COMPLETE and free the call."""


@dataclass(frozen=True, slots=True)
class HangupAck(_Clearing):
    """Clearing finished; libpri has freed the call, so ``call`` must not be used again."""


@dataclass(frozen=True, slots=True)
class _CallProgress(Event):
    call: int
    channel: int
    cref: int
    progress: int   # the last progress description received, -1 if none
    progress_mask: int


@dataclass(frozen=True, slots=True)
class Ringing(_CallProgress):
    """ALERTING received; in-band ringback is on the B-channel if the mask has
    PRI_PROG_INBAND_AVAILABLE, else the caller should generate ringback."""


@dataclass(frozen=True, slots=True)
class Answer(_CallProgress):
    """CONNECT received (libpri sends CONNECT ACK unless connect_ack_enable(True))."""


@dataclass(frozen=True, slots=True)
class Proceeding(_CallProgress):
    """CALL PROCEEDING received."""


@dataclass(frozen=True, slots=True)
class Progress(_CallProgress):
    """PROGRESS received (or a DISCONNECT with in-band tones when in-band disconnect is on);
    ``cause`` is None when the message carried none."""

    cause: int | None


@dataclass(frozen=True, slots=True)
class SetupAck(Event):
    """SETUP ACKNOWLEDGE received: overlap sending, send more digits with information()."""

    call: int
    channel: int
    progress_mask: int


@dataclass(frozen=True, slots=True)
class InfoReceived(Event):
    """INFORMATION with called-number digits (overlap receiving)."""

    call: int
    channel: int
    digits: str
    complete: bool


@dataclass(frozen=True, slots=True)
class KeypadDigit(Event):
    call: int
    channel: int
    digits: str


@dataclass(frozen=True, slots=True)
class Notify(Event):
    call: int
    channel: int
    info: int


@dataclass(frozen=True, slots=True)
class ConnectAck(Event):
    """CONNECT ACKNOWLEDGE received; only reported after connect_ack_enable(True)."""

    call: int
    channel: int


@dataclass(frozen=True, slots=True)
class UnknownEvent(Event):
    """An event this binding does not decode (FACILITY, HOLD, SERVICE...)."""

    code: int
    name: str


def c_text(raw: bytes) -> str:
    # libpri sends names as ISO 8859-1 (PRI_CHAR_SET_ISO8859_1); digits are ASCII.
    return raw.decode("latin-1")


def copy_event(ev: PriEvent) -> Event:
    """Copy the fields the event's type fills; never raises on an unknown code."""
    e = ev.e
    if e in (PRI_EVENT_HANGUP, PRI_EVENT_HANGUP_REQ, PRI_EVENT_HANGUP_ACK):
        h = ev.hangup
        cls = {PRI_EVENT_HANGUP: Hangup, PRI_EVENT_HANGUP_REQ: HangupReq}.get(e, HangupAck)
        return cls(h.call or 0, h.channel, h.cref, h.cause)
    if e == PRI_EVENT_RINGING:
        r = ev.ringing
        return Ringing(r.call or 0, r.channel, r.cref, r.progress, r.progressmask)
    if e == PRI_EVENT_ANSWER:
        a = ev.answer
        return Answer(a.call or 0, a.channel, a.cref, a.progress, a.progressmask)
    if e == PRI_EVENT_PROCEEDING:  # .cause is stale here: libpri sets it for PROGRESS only
        p = ev.proceeding
        return Proceeding(p.call or 0, p.channel, p.cref, p.progress, p.progressmask)
    if e == PRI_EVENT_PROGRESS:
        p = ev.proceeding
        return Progress(p.call or 0, p.channel, p.cref, p.progress, p.progressmask,
                        None if p.cause < 0 else p.cause)
    if e == PRI_EVENT_RING:
        r = ev.ring
        return Ring(call=r.call or 0, channel=r.channel, cref=r.cref,
                    called_number=c_text(r.callednum), called_plan=r.calledplan,
                    calling_number=c_text(r.callingnum), calling_name=c_text(r.callingname),
                    calling_plan=r.callingplan, calling_pres=r.callingpres,
                    complete=bool(r.complete), flexible=bool(r.flexible), layer1=r.layer1,
                    ctype=r.ctype, progress_mask=r.progressmask)
    if e == PRI_EVENT_DCHAN_UP:
        return DchanUp()
    if e == PRI_EVENT_DCHAN_DOWN:
        return DchanDown()
    if e == PRI_EVENT_SETUP_ACK:
        s = ev.setup_ack
        return SetupAck(s.call or 0, s.channel, s.progressmask)
    if e == PRI_EVENT_CONNECT_ACK:
        return ConnectAck(ev.connect_ack.call or 0, ev.connect_ack.channel)
    if e == PRI_EVENT_RESTART:
        return Restart(ev.restart.channel)
    if e == PRI_EVENT_RESTART_ACK:
        return RestartAck(ev.restartack.channel)
    if e == PRI_EVENT_INFO_RECEIVED:  # uses the ring view, but fills only these members
        r = ev.ring
        return InfoReceived(r.call or 0, r.channel, c_text(r.callednum), bool(r.complete))
    if e == PRI_EVENT_KEYPAD_DIGIT:
        d = ev.digit
        return KeypadDigit(d.call or 0, d.channel, c_text(d.digits))
    if e == PRI_EVENT_NOTIFY:
        n = ev.notify
        return Notify(n.call or 0, n.channel, n.info)
    if e == PRI_EVENT_CONFIG_ERR:
        return ConfigError(c_text(ev.err.err).strip())
    return UnknownEvent(e, event_name(e))


__all__ = sorted(name for name in globals() if not name.startswith("_")
                 and name not in {"annotations", "ctypes", "dataclass", "IntEnum", "IntFlag"})
