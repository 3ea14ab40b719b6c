"""Numbers of the DAHDI userspace ABI: ioctl requests, argument structs and constants.

This module mirrors ``<dahdi/user.h>`` (Debian's dahdi-source, the same as dahdi-linux
3.x) and holds numbers only: no syscalls, no file descriptors. :mod:`uascall.dahdi.device`
passes these numbers and structs to ``fcntl.ioctl``; the simulator decodes them.

* Names are the C names. Macros and enum values keep their spelling
  (``DAHDI_HOOK``, ``DAHDI_EVENT_RINGOFFHOOK``); structs become CamelCase ctypes classes
  whose ``_c_name_`` is the C tag and whose fields are the C members, with the C
  signedness and element type (``char`` arrays as ``c_char``, ``unsigned char`` as
  ``c_ubyte``).
* Request numbers are computed as the Linux generic ``_IOC`` macro does
  (``dir << 30 | size << 16 | type << 8 | nr``), with sizes from ``ctypes.sizeof``. That
  encoding and these layouts are those of x86_64 Linux; other architectures (alpha, mips,
  powerpc, sparc) encode directions differently and are not supported.
* ``tests/sim/test_abi.py`` generates a C program from the names defined here, compiles it
  against the installed header and compares every request number, constant, struct size,
  alignment and field offset, size and signedness.

:func:`event_name`, :func:`alarm_names`, :func:`sig_name` and :func:`law_name` turn
numbers into words for logs and error messages; their tables are built from the constants
below, so a constant added here is named there too.
"""

from __future__ import annotations

import ctypes

# --- Linux generic ioctl encoding (include/uapi/asm-generic/ioctl.h) ------------------------

_IOC_NRBITS = 8
_IOC_TYPEBITS = 8
_IOC_SIZEBITS = 14
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS

_IOC_NONE = 0
_IOC_WRITE = 1
_IOC_READ = 2


def _IOC(direction: int, code: int, nr: int, size: int) -> int:
    # The kernel's _IOC_TYPECHECK refuses to compile an oversized argument; a silently
    # truncated size would give a request number no driver answers.
    if not 0 <= size < 1 << _IOC_SIZEBITS:
        raise ValueError(f"ioctl argument of {size} bytes does not fit in {_IOC_SIZEBITS} bits")
    if not (0 <= code < 1 << _IOC_TYPEBITS and 0 <= nr < 1 << _IOC_NRBITS):
        raise ValueError(f"ioctl type {code:#x} or nr {nr} out of range")
    return (direction << _IOC_DIRSHIFT) | (size << _IOC_SIZESHIFT) | (
        code << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT)


def _IO(code: int, nr: int) -> int:
    return _IOC(_IOC_NONE, code, nr, 0)


def _IOR(code: int, nr: int, argtype: type) -> int:
    return _IOC(_IOC_READ, code, nr, ctypes.sizeof(argtype))


def _IOW(code: int, nr: int, argtype: type) -> int:
    return _IOC(_IOC_WRITE, code, nr, ctypes.sizeof(argtype))


def _IOWR(code: int, nr: int, argtype: type) -> int:
    return _IOC(_IOC_READ | _IOC_WRITE, code, nr, ctypes.sizeof(argtype))


# --- limits and sizes ----------------------------------------------------------------------

# glibc defines no ELAST on Linux, so user.h's fallback is what the kernel uses: read() and
# write() on a channel fail with this errno while a signalling event waits for GETEVENT.
ELAST = 500

DAHDI_MAX_CADENCE = 16
DAHDI_MAX_DTMF_BUF = 256
DAHDI_MAX_ECHOCANPARAMS = 8
DAHDI_MAX_EVENTSIZE = 64  # events queued per channel; the kernel drops newer ones
DAHDI_MAX_BLOCKSIZE = 8192
DAHDI_DEFAULT_BLOCKSIZE = 1024
DAHDI_DEFAULT_NUM_BUFS = 2
DAHDI_MAX_NUM_BUFS = 32
DAHDI_MAX_BUF_SPACE = 32768  # SET_BUFINFO refuses numbufs * bufsize above this
DAHDI_GET_PARAMS_RETURN_MASTER = 0x40000000  # OR into dahdi_params.channo
DAHDI_TONE_ZONE_MAX = 128
DAHDI_TONE_ZONE_DEFAULT = -1

# --- hook operations (DAHDI_HOOK argument) ------------------------------------------------

DAHDI_ONHOOK = 0
DAHDI_OFFHOOK = 1
DAHDI_WINK = 2
DAHDI_FLASH = 3
DAHDI_START = 4
DAHDI_RING = 5
DAHDI_RINGOFF = 6

# --- DAHDI_FLUSH argument --------------------------------------------------------------------

DAHDI_FLUSH_READ = 1
DAHDI_FLUSH_WRITE = 2
DAHDI_FLUSH_BOTH = DAHDI_FLUSH_READ | DAHDI_FLUSH_WRITE
DAHDI_FLUSH_EVENT = 4
DAHDI_FLUSH_ALL = DAHDI_FLUSH_BOTH | DAHDI_FLUSH_EVENT

# --- DAHDI_IOMUX mask ------------------------------------------------------------------------

DAHDI_IOMUX_READ = 1
DAHDI_IOMUX_WRITE = 2
DAHDI_IOMUX_WRITEEMPTY = 4
DAHDI_IOMUX_SIGEVENT = 8
DAHDI_IOMUX_NOWAIT = 0x100

# --- laws (DAHDI_SETLAW, dahdi_params.curlaw) ---------------------------------------------

DAHDI_LAW_DEFAULT = 0
DAHDI_LAW_MULAW = 1
DAHDI_LAW_ALAW = 2

# --- DAHDI_TONEDETECT mask -------------------------------------------------------------------

DAHDI_TONEDETECT_ON = 1 << 0
DAHDI_TONEDETECT_MUTE = 1 << 1

# --- dahdi_dialoperation.op ----------------------------------------------------------------

DAHDI_DIAL_OP_APPEND = 1
DAHDI_DIAL_OP_REPLACE = 2
DAHDI_DIAL_OP_CANCEL = 3

# --- dahdi_bufferinfo policies -------------------------------------------------------------

DAHDI_POLICY_IMMEDIATE = 0
DAHDI_POLICY_WHEN_FULL = 1
DAHDI_POLICY_HALF_FULL = 2  # transmit only

# --- signalling types (dahdi_params.sigtype / sigcap) --------------------------------------
# DAHDI names the signalling, not the port: an FXO port signals FXS (fxsks) and an FXS
# port signals FXO (fxoks). user.h builds these from __DAHDI_SIG_FXO/FXS/DACS, which it
# marks "never use directly"; they stay private here.

_SIG_FXO = 1 << 12
_SIG_FXS = 1 << 13
_SIG_DACS = 1 << 16

# C's (1 << 31) is an int, so INT_MIN; sigtype is a signed int field and reads back the same.
DAHDI_SIG_BROKEN = -(1 << 31)
DAHDI_SIG_NONE = 0
DAHDI_SIG_FXSLS = (1 << 0) | _SIG_FXS
DAHDI_SIG_FXSGS = (1 << 1) | _SIG_FXS
DAHDI_SIG_FXSKS = (1 << 2) | _SIG_FXS
DAHDI_SIG_FXOLS = (1 << 3) | _SIG_FXO
DAHDI_SIG_FXOGS = (1 << 4) | _SIG_FXO
DAHDI_SIG_FXOKS = (1 << 5) | _SIG_FXO
DAHDI_SIG_EM = 1 << 6
DAHDI_SIG_CLEAR = 1 << 7
DAHDI_SIG_HDLCRAW = (1 << 8) | DAHDI_SIG_CLEAR
DAHDI_SIG_HDLCFCS = (1 << 9) | DAHDI_SIG_HDLCRAW
DAHDI_SIG_HDLCNET = (1 << 10) | DAHDI_SIG_HDLCFCS
DAHDI_SIG_SLAVE = 1 << 11
DAHDI_SIG_SF = 1 << 14
DAHDI_SIG_CAS = 1 << 15
DAHDI_SIG_DACS = _SIG_DACS | DAHDI_SIG_CLEAR
DAHDI_SIG_EM_E1 = 1 << 17
DAHDI_SIG_DACS_RBS = (1 << 18) | _SIG_DACS
DAHDI_SIG_HARDHDLC = (1 << 19) | DAHDI_SIG_CLEAR
DAHDI_SIG_MTP2 = (1 << 20) | DAHDI_SIG_HDLCFCS

# --- tones (DAHDI_SENDTONE argument) ---------------------------------------------------------

DAHDI_TONE_STOP = -1
DAHDI_TONE_DIALTONE = 0
DAHDI_TONE_BUSY = 1
DAHDI_TONE_RINGTONE = 2
DAHDI_TONE_CONGESTION = 3
DAHDI_TONE_CALLWAIT = 4
DAHDI_TONE_DIALRECALL = 5
DAHDI_TONE_RECORDTONE = 6
DAHDI_TONE_INFO = 7
DAHDI_TONE_CUST1 = 8
DAHDI_TONE_CUST2 = 9
DAHDI_TONE_STUTTER = 10
DAHDI_TONE_MAX = 16

DAHDI_TONE_DTMF_BASE = 64
DAHDI_TONE_MFR1_BASE = 80
DAHDI_TONE_MFR2_FWD_BASE = 96
DAHDI_TONE_MFR2_REV_BASE = 112

# An enum in user.h; s is '*' and p is '#'.
DAHDI_TONE_DTMF_0 = DAHDI_TONE_DTMF_BASE
DAHDI_TONE_DTMF_1 = DAHDI_TONE_DTMF_BASE + 1
DAHDI_TONE_DTMF_2 = DAHDI_TONE_DTMF_BASE + 2
DAHDI_TONE_DTMF_3 = DAHDI_TONE_DTMF_BASE + 3
DAHDI_TONE_DTMF_4 = DAHDI_TONE_DTMF_BASE + 4
DAHDI_TONE_DTMF_5 = DAHDI_TONE_DTMF_BASE + 5
DAHDI_TONE_DTMF_6 = DAHDI_TONE_DTMF_BASE + 6
DAHDI_TONE_DTMF_7 = DAHDI_TONE_DTMF_BASE + 7
DAHDI_TONE_DTMF_8 = DAHDI_TONE_DTMF_BASE + 8
DAHDI_TONE_DTMF_9 = DAHDI_TONE_DTMF_BASE + 9
DAHDI_TONE_DTMF_s = DAHDI_TONE_DTMF_BASE + 10
DAHDI_TONE_DTMF_p = DAHDI_TONE_DTMF_BASE + 11
DAHDI_TONE_DTMF_A = DAHDI_TONE_DTMF_BASE + 12
DAHDI_TONE_DTMF_B = DAHDI_TONE_DTMF_BASE + 13
DAHDI_TONE_DTMF_C = DAHDI_TONE_DTMF_BASE + 14
DAHDI_TONE_DTMF_D = DAHDI_TONE_DTMF_BASE + 15
DAHDI_TONE_DTMF_MAX = DAHDI_TONE_DTMF_D
#: the digit of each DTMF tone, from DAHDI_TONE_DTMF_BASE on
DTMF_TONE_DIGITS = "0123456789*#ABCD"

# --- events (DAHDI_GETEVENT result) --------------------------------------------------------

DAHDI_EVENT_NONE = 0  # the queue is empty
# On an FXS-signalled channel (an FXO port) the same number means "a ring was detected".
DAHDI_EVENT_ONHOOK = 1
DAHDI_EVENT_RINGOFFHOOK = 2
DAHDI_EVENT_WINKFLASH = 3
DAHDI_EVENT_ALARM = 4
DAHDI_EVENT_NOALARM = 5
DAHDI_EVENT_ABORT = 6
DAHDI_EVENT_OVERRUN = 7
DAHDI_EVENT_BADFCS = 8
DAHDI_EVENT_DIALCOMPLETE = 9
DAHDI_EVENT_RINGERON = 10
DAHDI_EVENT_RINGEROFF = 11
DAHDI_EVENT_HOOKCOMPLETE = 12
DAHDI_EVENT_BITSCHANGED = 13
DAHDI_EVENT_PULSE_START = 14
DAHDI_EVENT_TIMER_EXPIRED = 15
DAHDI_EVENT_TIMER_PING = 16
DAHDI_EVENT_POLARITY = 17
DAHDI_EVENT_RINGBEGIN = 18
DAHDI_EVENT_EC_DISABLED = 19
DAHDI_EVENT_REMOVED = 20
DAHDI_EVENT_NEONMWI_ACTIVE = 21
DAHDI_EVENT_NEONMWI_INACTIVE = 22
DAHDI_EVENT_TX_CED_DETECTED = 23
DAHDI_EVENT_RX_CED_DETECTED = 24
DAHDI_EVENT_TX_CNG_DETECTED = 25
DAHDI_EVENT_RX_CNG_DETECTED = 26
DAHDI_EVENT_EC_NLP_DISABLED = 27
DAHDI_EVENT_EC_NLP_ENABLED = 28
DAHDI_EVENT_READ_OVERRUN = 29
DAHDI_EVENT_WRITE_UNDERRUN = 30
# Flags: the event is the flag OR'd with the ASCII digit in the low byte.
DAHDI_EVENT_PULSEDIGIT = 1 << 16
DAHDI_EVENT_DTMFDOWN = 1 << 17
DAHDI_EVENT_DTMFUP = 1 << 18

# --- span line configuration (dahdi_spaninfo.lineconfig: span= framing and coding) ---------

DAHDI_CONFIG_D4 = 1 << 4  # T1 superframe
DAHDI_CONFIG_ESF = 1 << 5
DAHDI_CONFIG_AMI = 1 << 6
DAHDI_CONFIG_B8ZS = 1 << 7
DAHDI_CONFIG_CCS = 1 << 8  # E1 common channel signalling (ISDN) rather than CAS
DAHDI_CONFIG_HDB3 = 1 << 9
DAHDI_CONFIG_CRC4 = 1 << 10
DAHDI_CONFIG_NTTE = 1 << 11  # BRI: NT rather than TE
DAHDI_CONFIG_TERM = 1 << 12
DAHDI_CONFIG_NOTOPEN = 1 << 16

# --- alarm bits (dahdi_spaninfo.alarms, dahdi_params.chan_alarms) --------------------------

DAHDI_ALARM_NONE = 0
DAHDI_ALARM_RECOVER = 1 << 0
DAHDI_ALARM_LOOPBACK = 1 << 1
DAHDI_ALARM_YELLOW = 1 << 2
DAHDI_ALARM_RED = 1 << 3
DAHDI_ALARM_BLUE = 1 << 4
DAHDI_ALARM_NOTOPEN = 1 << 5
DAHDI_ALARM_LOS = 1 << 8
DAHDI_ALARM_LFA = 1 << 9
DAHDI_ALARM_LMFA = 1 << 10

# --- VMWI (dahdi_vmwi_info.vmwi_type) ------------------------------------------------------

DAHDI_VMWI_LREV = 1 << 0
DAHDI_VMWI_HVDC = 1 << 1
DAHDI_VMWI_HVAC = 1 << 2


# --- argument structs ----------------------------------------------------------------------


class DahdiParams(ctypes.Structure):
    """Channel parameters for DAHDI_GET_PARAMS / DAHDI_SET_PARAMS (136 bytes)."""

    _c_name_ = "dahdi_params"
    _fields_ = [
        ("channo", ctypes.c_int),
        ("spanno", ctypes.c_int),
        ("chanpos", ctypes.c_int),
        ("sigtype", ctypes.c_int),
        ("sigcap", ctypes.c_int),
        ("rxisoffhook", ctypes.c_int),
        ("rxbits", ctypes.c_int),
        ("txbits", ctypes.c_int),
        ("txhooksig", ctypes.c_int),
        ("rxhooksig", ctypes.c_int),
        ("curlaw", ctypes.c_int),
        ("idlebits", ctypes.c_int),
        ("name", ctypes.c_char * 40),
        ("prewinktime", ctypes.c_int),
        ("preflashtime", ctypes.c_int),
        ("winktime", ctypes.c_int),
        ("flashtime", ctypes.c_int),
        ("starttime", ctypes.c_int),
        ("rxwinktime", ctypes.c_int),
        ("rxflashtime", ctypes.c_int),
        ("debouncetime", ctypes.c_int),
        ("pulsebreaktime", ctypes.c_int),
        ("pulsemaketime", ctypes.c_int),
        ("pulseaftertime", ctypes.c_int),
        ("chan_alarms", ctypes.c_uint32),
    ]


class DahdiSpanInfo(ctypes.Structure):
    """Span status for DAHDI_SPANSTAT; packed in C, hence 314 bytes and no padding."""

    _c_name_ = "dahdi_spaninfo"
    _pack_ = 1
    _fields_ = [
        ("spanno", ctypes.c_int),
        ("name", ctypes.c_char * 20),
        ("desc", ctypes.c_char * 40),
        ("alarms", ctypes.c_int),
        ("txlevel", ctypes.c_int),
        ("rxlevel", ctypes.c_int),
        ("bpvcount", ctypes.c_int),
        ("crc4count", ctypes.c_int),
        ("ebitcount", ctypes.c_int),
        ("fascount", ctypes.c_int),
        ("fecount", ctypes.c_uint32),
        ("cvcount", ctypes.c_uint32),
        ("becount", ctypes.c_uint32),
        ("prbs", ctypes.c_uint32),
        ("errsec", ctypes.c_uint32),
        ("irqmisses", ctypes.c_int),
        ("syncsrc", ctypes.c_int),
        ("numchans", ctypes.c_int),
        ("totalchans", ctypes.c_int),
        ("totalspans", ctypes.c_int),
        ("lbo", ctypes.c_int),
        ("lineconfig", ctypes.c_int),
        ("lboname", ctypes.c_char * 40),
        ("location", ctypes.c_char * 40),
        ("manufacturer", ctypes.c_char * 40),
        ("devicetype", ctypes.c_char * 40),
        ("irq", ctypes.c_int),
        ("linecompat", ctypes.c_int),
        ("spantype", ctypes.c_char * 6),
    ]


class DahdiMaintInfo(ctypes.Structure):
    """Maintenance command for DAHDI_MAINT."""

    _c_name_ = "dahdi_maintinfo"
    _fields_ = [
        ("spanno", ctypes.c_int),
        ("command", ctypes.c_int),
    ]


class DahdiConfInfo(ctypes.Structure):
    """Conference membership for DAHDI_GETCONF / DAHDI_SETCONF; chan 0 is this fd."""

    _c_name_ = "dahdi_confinfo"
    _fields_ = [
        ("chan", ctypes.c_int),
        ("confno", ctypes.c_int),
        ("confmode", ctypes.c_int),
    ]


class DahdiGains(ctypes.Structure):
    """Gain tables for DAHDI_GETGAINS / DAHDI_SETGAINS: law-to-law lookups, not dB."""

    _c_name_ = "dahdi_gains"
    _fields_ = [
        ("chan", ctypes.c_int),
        ("rxgain", ctypes.c_ubyte * 256),
        ("txgain", ctypes.c_ubyte * 256),
    ]


class DahdiBufferInfo(ctypes.Structure):
    """Buffer policy for DAHDI_GET_BUFINFO / DAHDI_SET_BUFINFO; readbufs/writebufs are
    read-only."""

    _c_name_ = "dahdi_bufferinfo"
    _fields_ = [
        ("txbufpolicy", ctypes.c_int),
        ("rxbufpolicy", ctypes.c_int),
        ("numbufs", ctypes.c_int),
        ("bufsize", ctypes.c_int),
        ("readbufs", ctypes.c_int),
        ("writebufs", ctypes.c_int),
    ]


class DahdiDialOperation(ctypes.Structure):
    """Dial string for DAHDI_DIAL; op is a DAHDI_DIAL_OP_* value."""

    _c_name_ = "dahdi_dialoperation"
    _fields_ = [
        ("op", ctypes.c_int),
        ("dialstr", ctypes.c_char * DAHDI_MAX_DTMF_BUF),
    ]


class DahdiEchoCanParam(ctypes.Structure):
    """One named echo-canceller parameter (20 bytes); see :class:`DahdiEchoCanParams`."""

    _c_name_ = "dahdi_echocanparam"
    _fields_ = [
        ("name", ctypes.c_char * 16),
        ("value", ctypes.c_int32),
    ]


class DahdiEchoCanParams(ctypes.Structure):
    """Header of the DAHDI_ECHOCANCEL_PARAMS argument (8 bytes).

    In C it ends in a flexible ``struct dahdi_echocanparam params[0]``: ``param_count``
    (at most DAHDI_MAX_ECHOCANPARAMS) :class:`DahdiEchoCanParam` records follow it directly
    in the same buffer. The request number encodes only these 8 bytes; the kernel copies
    the records separately, so the buffer handed to ioctl must hold header and records.
    """

    _c_name_ = "dahdi_echocanparams"
    _fields_ = [
        ("tap_length", ctypes.c_uint32),  # 8 taps per ms; 0 disables the canceller
        ("param_count", ctypes.c_uint32),
    ]


class DahdiRingCadence(ctypes.Structure):
    """Ring cadence for DAHDI_SETCADENCE: alternating on/off times in ms, 0-terminated."""

    _c_name_ = "dahdi_ring_cadence"
    _fields_ = [
        ("ringcadence", ctypes.c_int * DAHDI_MAX_CADENCE),
    ]


class DahdiVersionInfo(ctypes.Structure):
    """DAHDI_GETVERSION result."""

    _c_name_ = "dahdi_versioninfo"
    _fields_ = [
        ("version", ctypes.c_char * 80),
        ("echo_canceller", ctypes.c_char * 80),
    ]


class DahdiDynamicSpan(ctypes.Structure):
    """DAHDI_DYNAMIC_DESTROY argument: the span a ``dynamic=`` line of system.conf made
    (dahdi_cfg creates them with DAHDI_DYNAMIC_CREATE, which fills in spanno)."""

    _c_name_ = "dahdi_dynamic_span"
    _fields_ = [
        ("driver", ctypes.c_char * 20),
        ("addr", ctypes.c_char * 40),
        ("numchans", ctypes.c_int),
        ("timing", ctypes.c_int),
        ("spanno", ctypes.c_int),
    ]


class DahdiVmwiInfo(ctypes.Structure):
    """DAHDI_VMWI_CONFIG argument; vmwi_type is a mask of DAHDI_VMWI_* bits."""

    _c_name_ = "dahdi_vmwi_info"
    _fields_ = [
        ("vmwi_type", ctypes.c_uint),
    ]


# --- ioctl requests --------------------------------------------------------------------------
# Every assignment between here and IOCTLS is a request number and lands in IOCTLS.

DAHDI_CODE = 0xDA

_names_before_ioctls = set(globals())

DAHDI_GET_BLOCKSIZE = _IOR(DAHDI_CODE, 1, ctypes.c_int)
DAHDI_SET_BLOCKSIZE = _IOW(DAHDI_CODE, 1, ctypes.c_int)  # 16..DAHDI_MAX_BLOCKSIZE
DAHDI_FLUSH = _IOW(DAHDI_CODE, 3, ctypes.c_int)  # DAHDI_FLUSH_* mask
DAHDI_SYNC = _IO(DAHDI_CODE, 4)
# GET is _IOWR: on an fd without a channel the kernel reads channo from the argument.
DAHDI_GET_PARAMS = _IOWR(DAHDI_CODE, 5, DahdiParams)
DAHDI_SET_PARAMS = _IOW(DAHDI_CODE, 5, DahdiParams)
# DAHDI_ONHOOK..DAHDI_RINGOFF; RING, WINK and FLASH on a non-blocking fd fail with
# EINPROGRESS, which means "started".
DAHDI_HOOK = _IOW(DAHDI_CODE, 7, ctypes.c_int)
DAHDI_GETEVENT = _IOR(DAHDI_CODE, 8, ctypes.c_int)  # DAHDI_EVENT_NONE when drained
DAHDI_IOMUX = _IOWR(DAHDI_CODE, 9, ctypes.c_int)  # DAHDI_IOMUX_* in, ready mask out
DAHDI_SPANSTAT = _IOWR(DAHDI_CODE, 10, DahdiSpanInfo)
DAHDI_MAINT = _IOW(DAHDI_CODE, 11, DahdiMaintInfo)
DAHDI_GETCONF = _IOWR(DAHDI_CODE, 12, DahdiConfInfo)
DAHDI_SETCONF = _IOWR(DAHDI_CODE, 13, DahdiConfInfo)
DAHDI_GETGAINS = _IOWR(DAHDI_CODE, 16, DahdiGains)
DAHDI_SETGAINS = _IOW(DAHDI_CODE, 16, DahdiGains)
DAHDI_CONFMUTE = _IOW(DAHDI_CODE, 20, ctypes.c_int)
DAHDI_SENDTONE = _IOW(DAHDI_CODE, 21, ctypes.c_int)  # DAHDI_TONE_*
DAHDI_GETTONEZONE = _IOR(DAHDI_CODE, 22, ctypes.c_int)
DAHDI_SETTONEZONE = _IOW(DAHDI_CODE, 22, ctypes.c_int)
DAHDI_DEFAULTZONE = _IOW(DAHDI_CODE, 24, ctypes.c_int)
DAHDI_GET_BUFINFO = _IOR(DAHDI_CODE, 27, DahdiBufferInfo)
DAHDI_SET_BUFINFO = _IOW(DAHDI_CODE, 27, DahdiBufferInfo)
DAHDI_DIAL = _IOW(DAHDI_CODE, 31, DahdiDialOperation)
DAHDI_AUDIOMODE = _IOW(DAHDI_CODE, 32, ctypes.c_int)
DAHDI_ECHOCANCEL = _IOW(DAHDI_CODE, 33, ctypes.c_int)
# Same nr as ECHOCANCEL, told apart by size; the records after the header are not counted.
DAHDI_ECHOCANCEL_PARAMS = _IOW(DAHDI_CODE, 33, DahdiEchoCanParams)
DAHDI_CHANNO = _IOR(DAHDI_CODE, 34, ctypes.c_int)
DAHDI_DIALING = _IOR(DAHDI_CODE, 35, ctypes.c_int)
DAHDI_HDLCRAWMODE = _IOW(DAHDI_CODE, 36, ctypes.c_int)
DAHDI_HDLCFCSMODE = _IOW(DAHDI_CODE, 37, ctypes.c_int)
DAHDI_SPECIFY = _IOW(DAHDI_CODE, 38, ctypes.c_int)  # must be the first ioctl on the fd
DAHDI_SETLAW = _IOW(DAHDI_CODE, 39, ctypes.c_int)  # DAHDI_LAW_*; reset on close
DAHDI_SETLINEAR = _IOW(DAHDI_CODE, 40, ctypes.c_int)
DAHDI_SETCADENCE = _IOW(DAHDI_CODE, 42, DahdiRingCadence)
DAHDI_GETRXBITS = _IOR(DAHDI_CODE, 43, ctypes.c_int)
DAHDI_SETTXBITS = _IOW(DAHDI_CODE, 43, ctypes.c_int)
DAHDI_ECHOTRAIN = _IOW(DAHDI_CODE, 50, ctypes.c_int)
DAHDI_ONHOOKTRANSFER = _IOW(DAHDI_CODE, 51, ctypes.c_int)
DAHDI_GETVERSION = _IOR(DAHDI_CODE, 57, DahdiVersionInfo)
# /dev/dahdi/ctl only; destroying fails with EBUSY while a channel of the span is open
DAHDI_DYNAMIC_DESTROY = _IOW(DAHDI_CODE, 81, DahdiDynamicSpan)
# Handled by the board driver, not dahdi-base: fails where there is no hardware DTMF.
DAHDI_TONEDETECT = _IOW(DAHDI_CODE, 91, ctypes.c_int)
DAHDI_SETPOLARITY = _IOW(DAHDI_CODE, 92, ctypes.c_int)
DAHDI_VMWI = _IOWR(DAHDI_CODE, 94, ctypes.c_int)
DAHDI_VMWI_CONFIG = _IOW(DAHDI_CODE, 95, DahdiVmwiInfo)
DAHDI_ECHOCANCEL_FAX_MODE = _IOW(DAHDI_CODE, 102, ctypes.c_int)
DAHDI_BUFFER_EVENTS = _IOW(DAHDI_CODE, 105, ctypes.c_int)

IOCTLS: dict[str, int] = {
    name: value
    for name, value in globals().items()
    if name.startswith("DAHDI_") and name not in _names_before_ioctls
}
IOCTL_NAMES: dict[int, str] = {value: name for name, value in IOCTLS.items()}
del _names_before_ioctls


# --- names for logs and error messages -----------------------------------------------------


def _names_by_value(prefix: str) -> dict[int, str]:
    """Map value to short name for the module constants starting with `prefix`.

    Where two names share a value the first defined wins, as the header lists the
    canonical one first.
    """
    table: dict[int, str] = {}
    for name, value in globals().items():
        if name.startswith(prefix) and isinstance(value, int):
            table.setdefault(value, name[len(prefix):])
    return table


_DIGIT_EVENT_FLAGS = (DAHDI_EVENT_PULSEDIGIT, DAHDI_EVENT_DTMFDOWN, DAHDI_EVENT_DTMFUP)
_EVENT_NAMES = _names_by_value("DAHDI_EVENT_")
_ALARM_NAMES = {bit: name for bit, name in _names_by_value("DAHDI_ALARM_").items() if bit}
_SIG_NAMES = _names_by_value("DAHDI_SIG_")
_LAW_NAMES = _names_by_value("DAHDI_LAW_")


def event_name(code: int) -> str:
    """Name a DAHDI_GETEVENT result: ``"RINGOFFHOOK"``, ``"DTMFDOWN('5')"``, ``"EVENT(99)"``."""
    for flag in _DIGIT_EVENT_FLAGS:
        if code & ~0xFF == flag:
            return f"{_EVENT_NAMES[flag]}({chr(code & 0xFF)!r})"
    name = _EVENT_NAMES.get(code)
    return name if name is not None else f"EVENT({code})"


def alarm_names(mask: int) -> list[str]:
    """Name the DAHDI_ALARM_* bits set in `mask`, lowest bit first; ``[]`` for no alarm.

    Bits user.h does not define are kept as ``"ALARM(0x40)"`` so nothing is hidden.
    """
    mask &= 0xFFFFFFFF  # alarms is a signed int in dahdi_spaninfo, a __u32 in dahdi_params
    names = []
    bit = 1
    while bit <= mask:
        if mask & bit:
            names.append(_ALARM_NAMES.get(bit, f"ALARM({bit:#x})"))
        bit <<= 1
    return names


def sig_name(sigtype: int) -> str:
    """Name a dahdi_params.sigtype value: ``"FXSKS"``, ``"CLEAR"``; ``"SIG(0x…)"`` if unknown."""
    if sigtype >= 1 << 31:  # a __u32 view of the signed C int
        sigtype -= 1 << 32
    name = _SIG_NAMES.get(sigtype)
    return name if name is not None else f"SIG({sigtype & 0xFFFFFFFF:#x})"


def law_name(law: int) -> str:
    """Name a DAHDI_LAW_* value: ``"MULAW"``, ``"ALAW"``, ``"DEFAULT"``; ``"LAW(n)"`` if
    unknown."""
    return _LAW_NAMES.get(law, f"LAW({law})")
