"""Analog hook signalling (fxoks / fxsks) over looped spans, as dahdi-base does it.

On a ``dahdi_dynamic_loc`` pair an analog port is a channel whose four signalling bits
(A, B, C, D) cross to its peer every millisecond. dahdi-base turns hook operations into
bits (``dahdi_rbs_sethook``), bits received into hook signals (``dahdi_rbsbits``), and hook
signals into events (``__dahdi_hooksig_pvt``), with timers for debounce, ring cadence,
kewlstart disconnect, wink and flash. This module is that machinery for the simulated
kernel, event-driven rather than ticked: each timer is one engine timer. The bits cross
as the real driver sends them: what the channel transmits at the next tick, one
millisecond after a change, so a change undone within the tick never reaches the peer.

The names are the kernel's: on the ``fxoks`` side (the exchange's end of a line, facing a
phone, "S") RING sends ringing and a phone going off hook shows as RINGOFFHOOK; on the
``fxsks`` side (the phone's or a PBX line port's end, "L") rings show as RINGBEGIN at each
burst and RINGOFFHOOK 50 ms after it, and the far end dropping battery for its kewlstart
disconnect shows as ONHOOK.

Dialling (DAHDI_DIAL) is dahdi-base's ``__do_dtmf``: the dial string is taken a character
at a time, "T", "M", "O", "R" and "P" choosing DTMF, MF R1, MF R2 forward or backward and
pulse digits; a pulse digit 0-9 is that many loop breaks (the channel's pulse break and
make times, then its pulse-after pause) through the hook state machine, exactly as the
kernel makes them, so the far end counts them as it would on the real driver. A "W" waits
0.5 s; a tone digit lasts as long as the kernel's tone and its silence (100 + 100 ms for
DTMF). A DTMF digit sounds on the line as the kernel's tone generator makes it from the
zone that libtonezone loaded (each of its two tones at -10 dBm0, the builtin zones'
level), after the data already written has gone out, as the kernel sends a channel's
write buffers before its tone; MF digits take their time but sound nothing here. When
the string is done, DIALCOMPLETE is queued. DAHDI_HOOK, a hangup, SENDTONE and DIAL_OP_CANCEL stop
dialling; a write stops it during a tone digit or a pulse digit's breaks (not in the pause
after one), as ``dahdi_chan_write`` does.

Line polarity exists on analog cards only (their ``DAHDI_SETPOLARITY`` is the card
driver's ioctl): it is modelled on the spans of a simulated analog card pair (kind
"ANALOG", :meth:`~uascall.sim.kernel.SimKernel.add_loop`), as wctdm24xxp has it. An FXS
port (``fxoks``) reverses its line with DAHDI_SETPOLARITY, refused with EINVAL while it
rings or has dropped battery (a kewl); the FXO port (``fxsks``) at the other end of the
wire reports DAHDI_EVENT_POLARITY once the new polarity has lasted 64 ms with battery on
the line (a flip back within that is no event). On ``dahdi_dynamic`` spans, which carry
only the four signalling bits, SETPOLARITY fails with ENOTTY as on the real driver (the
dynamic span has no ioctl of its own), and no reversal ever crosses.
"""

from __future__ import annotations

import errno
import functools
import logging
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import TYPE_CHECKING

from uascall.dahdi import abi
from uascall.engine import TimerHandle
from uascall.media import g711
from uascall.media.dtmf import dtmf_samples
from uascall.sim.model import SAMPLE_RATE, oserror

if TYPE_CHECKING:
    from uascall.sim.kernel import SimKernel
    from uascall.sim.model import SimChannel

log = logging.getLogger(__name__)

A, B, C, D = 8, 4, 2, 1
BITS_DELAY = 0.001  # one tick of the dynamic span driver
RING_DEBOUNCE = 2.000  # rings are not reported this long after a hangup or an open
RING_TRAILER = 0.050  # a ring burst ends this long after the ring bits stop
KEWL_TIME = 0.500
AFTERKEWL_TIME = 0.300
AFTERSTART_TIME = 0.500
MIN_PULSE, MAX_PULSE = 0.015, 0.200
PULSE_TIMEOUT = 0.250
#: wctdm24xxp: how long a polarity must last before an FXO port reports it
POLARITY_DEBOUNCE = 0.064
#: dahdi_config.h: a "W" in a dial string; a DTMF digit and the silence after it (global
#: dial parameters' defaults); an MF R1 digit and its silence; an MF R2 digit and its
DIAL_PAUSE_MS = 500
DIAL_TONE_MS = {"T": 100 + 100, "M": 68 + 68, "O": 100 + 100, "R": 100 + 100}
DIAL_TONE_DIGITS = {"T": "0123456789*#ABCD", "M": "0123456789*#ABC",
                    "O": "123456789ABCDEF", "R": "123456789ABCDEF"}
#: the sounding part of a DTMF digit dialled by the kernel, and the level of each of its
#: two tones (libtonezone's builtin zones: dtmf_low_level = dtmf_high_level = -10)
DIAL_DTMF_ON_MS = 100
DIAL_DTMF_DBM0 = -10.0
#: a continuous DTMF tone (SENDTONE) repeats this much of the tone: a whole second holds
#: a whole number of cycles of each DTMF frequency, so the loop keeps the phase
CONTINUOUS_LOOP_MS = 1000
#: the span kind of a simulated analog card pair (an FXS card wired to an FXO card)
ANALOG = "ANALOG"
UNCONFIGURED_BITS = A | C | D  # what a channel without signalling sends

#: ring cadences (ms on, ms off, ...) of the zones dahdi-tools knows, the common ones
ZONE_CADENCES = {
    "us": (2000, 4000), "ca": (2000, 4000), "nl": (1000, 4000), "de": (1000, 4000),
    "it": (1000, 4000), "no": (1000, 4000), "fi": (1000, 4000), "fr": (1500, 3500),
    "uk": (400, 200, 400, 2000), "au": (400, 200, 400, 2000), "nz": (400, 200, 400, 2000),
}

# txsig (what the user asked for) -> bits, per signalling (dahdi_rbs_sethook's table)
TXSIG_ONHOOK, TXSIG_OFFHOOK, TXSIG_START, TXSIG_KEWL = 0, 1, 2, 3
_TX_BITS = {
    abi.DAHDI_SIG_FXOKS: {TXSIG_ONHOOK: B | D, TXSIG_OFFHOOK: B | D, TXSIG_START: 0,
                          TXSIG_KEWL: A | B | C | D},
    abi.DAHDI_SIG_FXSKS: {TXSIG_ONHOOK: B | D, TXSIG_OFFHOOK: A | B | C | D,
                          TXSIG_START: A | B | C | D, TXSIG_KEWL: 0},
}
CAS_SIGNALLING = frozenset(_TX_BITS)

# rx hook signals (kernel.h)
RXSIG_ONHOOK, RXSIG_OFFHOOK, RXSIG_START, RXSIG_RING, RXSIG_INITIAL = 0, 1, 2, 3, 4


class Tx(Enum):
    """The transmit states of dahdi-base's hook state machine."""

    ONHOOK = auto()
    OFFHOOK = auto()
    START = auto()
    AFTERSTART = auto()
    PREWINK = auto()
    WINK = auto()
    PREFLASH = auto()
    FLASH = auto()
    DEBOUNCE = auto()
    RINGON = auto()
    RINGOFF = auto()
    KEWL = auto()
    AFTERKEWL = auto()
    PULSEBREAK = auto()
    PULSEMAKE = auto()
    PULSEAFTER = auto()


@dataclass
class Timing:
    """The per-channel times DAHDI_GET_PARAMS reports (ms), reset at every open."""

    prewink: int = 50
    preflash: int = 50
    wink: int = 150
    flash: int = 750
    start: int = 1500
    rxwink: int = 300
    rxflash: int = 1250
    debounce: int = 600
    pulsebreak: int = 50
    pulsemake: int = 50
    pulseafter: int = 750


@dataclass(eq=False)
class CasState:
    """One analog channel's signalling state."""

    sig: int
    timing: Timing = field(default_factory=Timing)
    txstate: Tx = Tx.ONHOOK
    txhooksig: int = TXSIG_ONHOOK
    txbits: int = B | D
    rxbits: int = 0
    rxhooksig: int = RXSIG_INITIAL
    gotgs: bool = False
    kewlonhook: bool = False
    ringdeb_until: float = 0.0
    cadence: tuple[int, ...] = ZONE_CADENCES["us"]
    first_cadence_pos: int = 0
    cadence_pos: int = 0
    pulses: int = 0
    onhook_since: float | None = None  # the rx on-hook timer (itimer) is running
    otimer: TimerHandle | None = None
    itimer: TimerHandle | None = None
    trailer: TimerHandle | None = None
    pulse_timer: TimerHandle | None = None
    #: the next tick, which takes the bits transmitted then to the peer
    tick: TimerHandle | None = None
    #: loop breaks left in the pulse digit being dialled (the kernel's pdialcount)
    pdialcount: int = 0
    #: analog cards: the line's polarity as this FXS port drives it, and as this FXO
    #: port last reported it; the FXO port's polarity debounce
    polarity: bool = False
    rx_polarity: bool = False
    polarity_timer: TimerHandle | None = None

    @property
    def is_fxo(self) -> bool:
        """fxoks: the exchange's end (it rings; it sees the phone's hook)."""
        return self.sig == abi.DAHDI_SIG_FXOKS


@dataclass(eq=False)
class DialState:
    """A channel's kernel dialling: what is left of the string, the digit mode, and the
    timer of a tone digit or pause being "played"."""

    buffer: str = ""
    mode: str = "T"
    dialing: bool = False
    tone: TimerHandle | None = None
    #: the DTMF digit sounding now, in the channel's law, and when it starts on the line
    sound: bytes = b""
    sound_from: float = 0.0
    #: the digit is SENDTONE's continuous one: :attr:`sound` repeats until it is stopped,
    #: at :attr:`sound_until` (the line's window then being sent has the tone up to there)
    continuous: bool = False
    sound_until: float | None = None
    #: bytes of the continuous tone sent so far: it goes on from there, sample by sample,
    #: however the line's windows fall in time (a real-time engine's are not contiguous
    #: to the sample, and a jump in phase breaks a DTMF tone for a receiver)
    sound_sent: int = 0


class CasLines:
    """The hook signalling of every analog channel of a simulated kernel."""

    def __init__(self, kernel: SimKernel) -> None:
        self.kernel = kernel
        self.engine = kernel.engine
        self._dials: dict[SimChannel, DialState] = {}

    # ------------------------------------------------------------------ configuration
    def configure(self, channels: list[SimChannel]) -> None:
        """CHANCONFIG of ``channels``: each starts on hook. The state is the one the
        kernel settles in a second or so later, when both sides have heard each other
        (the events of that settling are lost anyway: opening a channel empties its
        queue)."""
        for chan in list(self._dials):  # channels gone with the dynamic spans replaced
            if self.kernel.channels.get(chan.channo) is not chan:
                self.cancel_dial(chan)
                del self._dials[chan]
        for chan in channels:
            if chan.cas is not None:
                self._cancel_all(chan.cas)
            if chan.sig not in CAS_SIGNALLING:
                chan.cas = None
                continue
            cas = CasState(chan.sig)
            cas.timing.start = 2000 if cas.is_fxo else 1500
            chan.cas = cas
            self._set_cadence_from_zone(chan)
        for chan in channels:
            cas = chan.cas
            if cas is None:
                continue
            peer = self.kernel._peer_chan(chan)
            cas.rxbits = (UNCONFIGURED_BITS if peer is None or peer.cas is None
                          else peer.cas.txbits)
            cas.rxhooksig = _decode(cas.sig, cas.rxbits)

    def opened(self, chan: SimChannel) -> None:
        """initialize_channel: default times, the zone's cadence, and a hangup."""
        self.cancel_dial(chan)
        self._drop_tone(chan)
        cas = chan.cas
        if cas is None:
            return
        cas.timing = Timing(start=2000 if cas.is_fxo else 1500)
        cas.gotgs = False
        self._set_cadence_from_zone(chan)
        self.hangup(chan)

    def closed(self, chan: SimChannel) -> None:
        """close_channel hangs up: a call still up is cleared with a kewl on fxoks."""
        self.cancel_dial(chan)
        self._drop_tone(chan)
        if chan.cas is not None:
            self.hangup(chan)

    def _set_cadence_from_zone(self, chan: SimChannel) -> None:
        cas = chan.cas
        assert cas is not None
        zone = self.kernel.default_zone
        cadence = ZONE_CADENCES.get(zone or "us")
        if cadence is None:
            log.info("zone %r: ring cadence not simulated; using the 'us' one", zone)
            cadence = ZONE_CADENCES["us"]
        cas.cadence, cas.first_cadence_pos = cadence, 0

    # ------------------------------------------------------------------ ioctls
    def hook(self, chan: SimChannel, value: int, nonblocking: bool) -> int:
        """DAHDI_HOOK on an analog channel (dahdi_chan_ioctl's rules and errnos)."""
        cas = chan.cas
        assert cas is not None
        self.cancel_dial(chan)  # "if dialing, stop it"
        if value == abi.DAHDI_ONHOOK:
            self.hangup(chan)
            return 0
        if value == abi.DAHDI_OFFHOOK:
            if cas.txstate in (Tx.KEWL, Tx.AFTERKEWL):
                raise oserror(errno.EBUSY, f"{chan.name}: OFFHOOK during the kewl")
            self._sethook(chan, TXSIG_OFFHOOK, Tx.DEBOUNCE, cas.timing.debounce)
            return 0
        if value in (abi.DAHDI_RING, abi.DAHDI_START):
            if not self.kernel.zones:
                raise oserror(errno.ENODATA, f"{chan.name}: no tone zone loaded")
            if cas.txstate is not Tx.ONHOOK:
                raise oserror(errno.EBUSY, f"{chan.name}: RING while {cas.txstate.name}")
            if cas.is_fxo:
                cas.cadence_pos = 0
                self._sethook(chan, TXSIG_START, Tx.RINGON, cas.cadence[0])
            else:
                self._sethook(chan, TXSIG_START, Tx.START, cas.timing.start)
            return self._in_progress(nonblocking)
        if value == abi.DAHDI_WINK:
            if cas.txstate is not Tx.ONHOOK:
                raise oserror(errno.EBUSY, f"{chan.name}: WINK while {cas.txstate.name}")
            self._sethook(chan, TXSIG_ONHOOK, Tx.PREWINK, cas.timing.prewink)
            return self._in_progress(nonblocking)
        if value == abi.DAHDI_FLASH:
            if cas.txstate is not Tx.OFFHOOK:
                raise oserror(errno.EBUSY, f"{chan.name}: FLASH while {cas.txstate.name}")
            self._sethook(chan, TXSIG_OFFHOOK, Tx.PREFLASH, cas.timing.preflash)
            return self._in_progress(nonblocking)
        if value == abi.DAHDI_RINGOFF:
            self._sethook(chan, TXSIG_ONHOOK, Tx.ONHOOK, 0)
            return 0
        raise oserror(errno.EINVAL, f"{chan.name}: DAHDI_HOOK {value}")

    @staticmethod
    def _in_progress(nonblocking: bool) -> int:
        # The kernel returns at once either way; a non-blocking fd is told it goes on.
        if nonblocking:
            raise oserror(errno.EINPROGRESS, "hook operation in progress")
        return 0

    def set_cadence(self, chan: SimChannel, cadence: list[int] | None) -> None:
        """DAHDI_SETCADENCE: ms on, off, ... (0 ends; a negative on-time marks where the
        loop restarts); None goes back to the zone's."""
        cas = chan.cas
        if cas is None:
            return
        if cadence is None:
            self._set_cadence_from_zone(chan)
            return
        values, first = [], 0
        for pos, ms in enumerate(cadence[:abi.DAHDI_MAX_CADENCE]):
            if ms == 0:
                break
            if ms < 0 and pos % 2 == 0:
                first, ms = pos, -ms
            values.append(abs(ms))
        if not values:
            self._set_cadence_from_zone(chan)
            return
        if len(values) % 2:  # an odd list: the last off time is the first on time
            values.append(values[0])
        cas.cadence, cas.first_cadence_pos = tuple(values), first

    def fill_params(self, chan: SimChannel, params: abi.DahdiParams) -> None:
        cas = chan.cas
        if cas is None:
            return
        if cas.is_fxo:
            params.rxisoffhook = int(bool(cas.rxbits & A))
        else:
            params.rxisoffhook = int((cas.rxbits & (A | B)) != B)
        params.rxbits, params.txbits = cas.rxbits, cas.txbits
        params.rxhooksig, params.txhooksig = cas.rxhooksig, cas.txhooksig
        t = cas.timing
        (params.prewinktime, params.preflashtime, params.winktime, params.flashtime,
         params.starttime, params.rxwinktime, params.rxflashtime, params.debouncetime,
         params.pulsebreaktime, params.pulsemaketime, params.pulseaftertime) = (
            t.prewink, t.preflash, t.wink, t.flash, t.start, t.rxwink, t.rxflash,
            t.debounce, t.pulsebreak, t.pulsemake, t.pulseafter)

    def set_params(self, chan: SimChannel, params: abi.DahdiParams) -> None:
        """DAHDI_SET_PARAMS: every time at once, as dahdi_ioctl_setparams copies them."""
        cas = chan.cas
        if cas is None:
            return  # the kernel keeps them for any channel; only analog ones use them
        cas.timing = Timing(
            prewink=params.prewinktime, preflash=params.preflashtime,
            wink=params.winktime, flash=params.flashtime, start=params.starttime,
            rxwink=params.rxwinktime, rxflash=params.rxflashtime,
            debounce=params.debouncetime, pulsebreak=params.pulsebreaktime,
            pulsemake=params.pulsemaketime, pulseafter=params.pulseaftertime)

    # ------------------------------------------------------------------ dialling
    def dial(self, chan: SimChannel, op: int, dialstr: str) -> None:
        """DAHDI_DIAL (ioctl_dahdi_dial): replace or append to the dial string, or cancel."""
        if not self.kernel.zones:
            raise oserror(errno.ENODATA, f"{chan.name}: no tone zone loaded")
        dial = self._dials.setdefault(chan, DialState())
        dialstr = dialstr[:abi.DAHDI_MAX_DTMF_BUF - 1].upper()
        if op == abi.DAHDI_DIAL_OP_CANCEL:
            self.cancel_dial(chan)
        elif op == abi.DAHDI_DIAL_OP_REPLACE:
            self._stop_tone(dial)
            dial.buffer, dial.dialing = dialstr, True
            self._next_digit(chan)
        elif op == abi.DAHDI_DIAL_OP_APPEND:
            if len(dialstr) + len(dial.buffer) >= abi.DAHDI_MAX_DTMF_BUF - 1:
                raise oserror(errno.EBUSY, f"{chan.name}: dial string full")
            dial.buffer += dialstr
            if not dial.dialing:
                dial.dialing = True
                self._next_digit(chan)
        else:
            raise oserror(errno.EINVAL, f"{chan.name}: DAHDI_DIAL op {op}")

    def dialing(self, chan: SimChannel) -> bool:
        dial = self._dials.get(chan)
        return dial is not None and dial.dialing

    def send_digit_tone(self, chan: SimChannel, digit: str) -> None:
        """SENDTONE of a DTMF tone (start_tone_digit): ``digit`` sounds until a write,
        another SENDTONE, a DAHDI_DIAL or a hangup stops it; the channel reports dialling
        meanwhile, as the kernel sets it so that a dial cannot interrupt the tone. The
        caller has stopped what sounded before (start_tone does)."""
        dial = self._dials.setdefault(chan, DialState())
        dial.dialing, dial.continuous, dial.sound_until = True, True, None
        dial.sound_sent = 0
        dial.sound = _dtmf_sound(digit, chan.codec().name, CONTINUOUS_LOOP_MS)
        # the write buffers go out first; the tone sounds after them
        dial.sound_from = self.engine.time() + self.kernel.tx_queued(chan) / SAMPLE_RATE

    def cancel_dial(self, chan: SimChannel) -> None:
        """Stop dialling (DAHDI_HOOK, a hangup, SENDTONE, DIAL_OP_CANCEL): no
        DIALCOMPLETE follows, but a pulse digit's breaks already under way run out."""
        dial = self._dials.get(chan)
        if dial is not None:
            self._stop_tone(dial)
            dial.buffer, dial.dialing = "", False
        if chan.cas is not None:
            chan.cas.pdialcount = 0

    def written(self, chan: SimChannel) -> None:
        """dahdi_chan_write: data written stops a tone digit or a pulse digit's breaks."""
        dial = self._dials.get(chan)
        pulsing = chan.cas is not None and chan.cas.pdialcount > 0
        continuous = dial is not None and dial.continuous and dial.sound_until is None
        sounding = continuous or (dial is not None and dial.tone is not None)
        if sounding or pulsing:
            self.cancel_dial(chan)

    def tone_bytes(self, chan: SimChannel, start: float, nbytes: int) -> bytes | None:
        """What the kernel's tone generator sends in the ``nbytes`` from ``start`` (the
        digit's tone, or silence before and after it), or None if it is not dialling a
        tone digit then."""
        dial = self._dials.get(chan)
        if dial is None or not dial.sound or (dial.tone is None and not dial.continuous):
            return None
        silence = bytes([chan.idle_byte()])
        at = round((start - dial.sound_from) * SAMPLE_RATE)
        if at >= len(dial.sound) and not dial.continuous:
            return silence * nbytes
        lead = max(-at, 0)
        if lead >= nbytes:
            return silence * nbytes
        if dial.continuous:
            wanted = nbytes - lead
            if dial.sound_until is not None:  # stopped: the tone up to then, if in this window
                wanted = min(wanted, round((dial.sound_until - start) * SAMPLE_RATE) - lead)
                if wanted <= 0:
                    return None
            at = dial.sound_sent % len(dial.sound)
            dial.sound_sent += wanted
            part = dial.sound[at: at + wanted]
            while len(part) < wanted:
                part += dial.sound[: wanted - len(part)]
            return silence * lead + part + silence * (nbytes - lead - wanted)
        part = dial.sound[max(at, 0): max(at, 0) + nbytes - lead]
        return silence * lead + part + silence * (nbytes - lead - len(part))

    def _drop_tone(self, chan: SimChannel) -> None:
        """What is left of a tone goes with what was written (a close, an open): none of
        it reaches the line after."""
        dial = self._dials.get(chan)
        if dial is not None:
            dial.sound, dial.continuous = b"", False

    def _stop_tone(self, dial: DialState) -> None:
        if dial.tone is not None:
            dial.tone.cancel()
            dial.tone = None
        if dial.continuous:
            if dial.sound_until is None:
                dial.sound_until = self.engine.time()
        else:
            dial.sound = b""

    def _next_digit(self, chan: SimChannel) -> None:
        """__do_dtmf: act on the next character of the dial string, or report it done."""
        dial = self._dials.setdefault(chan, DialState())
        cas = chan.cas
        while dial.buffer:
            c, dial.buffer = dial.buffer[0], dial.buffer[1:]
            if c in "TMORP":
                dial.mode = c
                continue
            if c != "W" and dial.mode == "P":
                if c.isdigit() and cas is not None and cas.txhooksig == TXSIG_OFFHOOK:
                    cas.pdialcount = 10 if c == "0" else int(c)
                    self._sethook(chan, TXSIG_ONHOOK, Tx.PULSEBREAK, cas.timing.pulsebreak)
                    return
                continue  # not a pulse digit, or the line is not off hook: skipped
            lead = 0.0
            if c == "W":
                ms = DIAL_PAUSE_MS
            elif c in DIAL_TONE_DIGITS.get(dial.mode, ""):
                ms = DIAL_TONE_MS[dial.mode]
                if dial.mode == "T":
                    # the write buffers go out first; the digit sounds after them
                    lead = self.kernel.tx_queued(chan) / SAMPLE_RATE
                    dial.sound, dial.continuous = _dtmf_sound(c, chan.codec().name), False
                    dial.sound_from = self.engine.time() + lead
            else:
                continue  # no such tone: skipped
            dial.tone = self.engine.call_later(lead + ms / 1000, self._tone_done, chan)
            return
        dial.dialing = False
        self._event(chan, abi.DAHDI_EVENT_DIALCOMPLETE)

    def _tone_done(self, chan: SimChannel) -> None:
        dial = self._dials.get(chan)
        if dial is None or dial.tone is None:
            return
        dial.tone, dial.sound = None, b""
        if dial.dialing:
            self._next_digit(chan)

    # ------------------------------------------------------------------ polarity
    def set_polarity(self, chan: SimChannel, reverse: bool) -> None:
        """DAHDI_SETPOLARITY, as an analog card's driver answers it (wctdm24xxp)."""
        if chan.span.kind != ANALOG:
            raise oserror(errno.ENOTTY, f"{chan.name}: DAHDI_SETPOLARITY on a "
                          f"{chan.span.kind} span (no analog card)")
        cas = chan.cas
        if cas is None or not cas.is_fxo:
            raise oserror(errno.EINVAL, f"{chan.name}: DAHDI_SETPOLARITY on a port that is "
                          "not an FXS port")
        if cas.txstate in (Tx.RINGON, Tx.KEWL):
            raise oserror(errno.EINVAL, f"{chan.name}: DAHDI_SETPOLARITY while "
                          f"{'ringing' if cas.txstate is Tx.RINGON else 'battery is off'}")
        if cas.polarity == reverse:
            return
        cas.polarity = reverse
        peer = self.kernel._peer_chan(chan)
        if peer is not None and peer.cas is not None and not peer.cas.is_fxo:
            self._polarity_seen(peer)

    def _polarity_seen(self, chan: SimChannel) -> None:
        """The FXO port's voltage reading: a polarity other than the one it reported
        starts (or keeps) its debounce; the one it reported stops it."""
        cas = chan.cas
        assert cas is not None
        driver = self.kernel._peer_chan(chan)
        line = driver is not None and driver.cas is not None and driver.cas.polarity
        if line == cas.rx_polarity:
            self._cancel(cas, "polarity_timer")
        elif cas.polarity_timer is None:
            cas.polarity_timer = self.engine.call_later(POLARITY_DEBOUNCE,
                                                        self._polarity_debounced, chan)

    def _polarity_debounced(self, chan: SimChannel) -> None:
        cas = chan.cas
        if cas is None:
            return
        cas.polarity_timer = None
        driver = self.kernel._peer_chan(chan)
        if driver is None or driver.cas is None:
            return
        if driver.cas.txstate in (Tx.KEWL, Tx.AFTERKEWL):
            # no battery: the port cannot read the polarity until it comes back
            cas.polarity_timer = self.engine.call_later(POLARITY_DEBOUNCE,
                                                        self._polarity_debounced, chan)
            return
        if driver.cas.polarity != cas.rx_polarity:
            cas.rx_polarity = driver.cas.polarity
            self._event(chan, abi.DAHDI_EVENT_POLARITY)

    # ------------------------------------------------------------------ transmit side
    def hangup(self, chan: SimChannel) -> None:
        """dahdi_hangup: on hook, with a kewl when an fxoks channel had a call up; both
        buffer rings are emptied, dialling stops."""
        cas = chan.cas
        assert cas is not None
        self.cancel_dial(chan)
        cas.kewlonhook = False
        if not cas.is_fxo:
            cas.ringdeb_until = self.engine.time() + RING_DEBOUNCE
        phone_gone = cas.rxhooksig == RXSIG_ONHOOK and cas.onhook_since is None
        if cas.is_fxo and cas.txstate is not Tx.ONHOOK and not phone_gone:
            self._sethook(chan, TXSIG_KEWL, Tx.KEWL, round(KEWL_TIME * 1000))
        else:
            self._sethook(chan, TXSIG_ONHOOK, Tx.ONHOOK, 0)
        cas.cadence_pos = 0
        chan.flush(read=True, write=True)
        self.kernel._update_readiness(chan)

    def _sethook(self, chan: SimChannel, txsig: int, state: Tx, ms: int) -> None:
        cas = chan.cas
        assert cas is not None
        cas.txstate = state
        cas.txhooksig = txsig
        bits = _TX_BITS[cas.sig][txsig]
        if bits != cas.txbits:
            cas.txbits = bits
            if cas.tick is None:  # the next tick takes whatever the bits are then
                cas.tick = self.engine.call_later(BITS_DELAY, self._tick, chan)
        if cas.otimer is not None:
            cas.otimer.cancel()
            cas.otimer = None
        if ms > 0:
            cas.otimer = self.engine.call_later(ms / 1000, self._otimer_expired, chan)

    def _otimer_expired(self, chan: SimChannel) -> None:
        cas = chan.cas
        if cas is None:
            return
        cas.otimer = None
        state = cas.txstate
        if state is Tx.RINGON:
            cas.cadence_pos = self._next_cadence(cas)
            self._sethook(chan, TXSIG_OFFHOOK, Tx.RINGOFF, cas.cadence[cas.cadence_pos])
            self._event(chan, abi.DAHDI_EVENT_RINGEROFF)
        elif state is Tx.RINGOFF:
            cas.cadence_pos = self._next_cadence(cas)
            self._sethook(chan, TXSIG_START, Tx.RINGON, cas.cadence[cas.cadence_pos])
            self._event(chan, abi.DAHDI_EVENT_RINGERON)
        elif state is Tx.DEBOUNCE:
            cas.txstate = Tx.OFFHOOK
            if cas.rxhooksig == RXSIG_ONHOOK:
                self._start_onhook_timer(chan)
        elif state is Tx.START:
            self._sethook(chan, TXSIG_OFFHOOK, Tx.AFTERSTART, round(AFTERSTART_TIME * 1000))
        elif state is Tx.AFTERSTART:
            self._sethook(chan, TXSIG_OFFHOOK, Tx.OFFHOOK, 0)
            self._hook_complete(chan)
        elif state is Tx.PREWINK:
            self._sethook(chan, TXSIG_OFFHOOK, Tx.WINK, cas.timing.wink)
        elif state is Tx.WINK:
            self._sethook(chan, TXSIG_ONHOOK, Tx.ONHOOK, 0)
            self._hook_complete(chan)
        elif state is Tx.PREFLASH:
            self._sethook(chan, TXSIG_ONHOOK, Tx.FLASH, cas.timing.flash)
        elif state is Tx.FLASH:
            self._sethook(chan, TXSIG_OFFHOOK, Tx.OFFHOOK, 0)
            self._hook_complete(chan)
        elif state is Tx.KEWL:
            self._sethook(chan, TXSIG_ONHOOK, Tx.AFTERKEWL, round(AFTERKEWL_TIME * 1000))
            self._hook_complete(chan)
        elif state is Tx.AFTERKEWL:
            self._sethook(chan, TXSIG_ONHOOK, Tx.ONHOOK, 0)
            if cas.kewlonhook:
                self._event(chan, abi.DAHDI_EVENT_ONHOOK)
            cas.gotgs = False
        elif state is Tx.PULSEBREAK:
            self._sethook(chan, TXSIG_OFFHOOK, Tx.PULSEMAKE, cas.timing.pulsemake)
        elif state is Tx.PULSEMAKE:
            if cas.pdialcount:
                cas.pdialcount -= 1
            if cas.pdialcount:
                self._sethook(chan, TXSIG_ONHOOK, Tx.PULSEBREAK, cas.timing.pulsebreak)
            else:  # the digit is out: the pause before the next (the bits stay off hook)
                self._sethook(chan, TXSIG_OFFHOOK, Tx.PULSEAFTER, cas.timing.pulseafter)
        elif state is Tx.PULSEAFTER:
            cas.txstate = Tx.OFFHOOK
            self._next_digit(chan)

    @staticmethod
    def _next_cadence(cas: CasState) -> int:
        pos = cas.cadence_pos + 1
        return cas.first_cadence_pos if pos >= len(cas.cadence) else pos

    def _hook_complete(self, chan: SimChannel) -> None:
        file = chan.file
        if file is not None and file.nonblocking:  # only non-blocking opens are told
            self._event(chan, abi.DAHDI_EVENT_HOOKCOMPLETE)

    # ------------------------------------------------------------------ the line
    def _tick(self, chan: SimChannel) -> None:
        """The driver sends the bits the channel transmits now, not every change."""
        cas = chan.cas
        if cas is None:
            return
        cas.tick = None
        peer = self.kernel._peer_chan(chan)
        if peer is not None:
            self._receive_bits(peer, cas.txbits)

    def _receive_bits(self, chan: SimChannel, bits: int) -> None:
        """dahdi_rbsbits: act on a change of the bits from the peer."""
        cas = chan.cas
        if cas is None or bits == cas.rxbits:
            return
        cas.rxbits = bits
        self._hooksig(chan, _decode(cas.sig, bits))

    def _hooksig(self, chan: SimChannel, rxsig: int) -> None:
        """__dahdi_hooksig_pvt: events from a change of hook signal."""
        cas = chan.cas
        assert cas is not None
        if rxsig == cas.rxhooksig:
            return
        before, cas.rxhooksig = cas.rxhooksig, rxsig
        now = self.engine.time()
        if not cas.is_fxo:
            self._ring_trailer(chan, before, rxsig)
            if rxsig == RXSIG_RING and now >= cas.ringdeb_until:
                self._event(chan, abi.DAHDI_EVENT_RINGBEGIN)
            if cas.txstate is not Tx.OFFHOOK:
                return  # a line on hook, or still settling, ignores the far end's hook
            if rxsig == RXSIG_ONHOOK:  # the far end dropped battery: it has hung up
                cas.ringdeb_until = now + RING_DEBOUNCE
                self._cancel(cas, "trailer")
                cas.gotgs = False
                self._event(chan, abi.DAHDI_EVENT_ONHOOK)
            return
        if rxsig == RXSIG_OFFHOOK:
            cas.kewlonhook = False
            if cas.onhook_since is not None:
                gone = now - cas.onhook_since
                if MIN_PULSE <= gone <= MAX_PULSE:
                    self._pulse(chan)
                elif gone > MAX_PULSE:
                    self._event(chan, abi.DAHDI_EVENT_WINKFLASH)
            elif not cas.gotgs:
                self._event(chan, abi.DAHDI_EVENT_RINGOFFHOOK)
                cas.gotgs = True
            self._cancel(cas, "itimer")
            cas.onhook_since = None
        elif rxsig == RXSIG_ONHOOK:
            if cas.txstate not in (Tx.DEBOUNCE, Tx.KEWL, Tx.AFTERKEWL):
                self._start_onhook_timer(chan)
            if cas.txstate is Tx.KEWL:
                cas.kewlonhook = True

    def _ring_trailer(self, chan: SimChannel, before: int, rxsig: int) -> None:
        """On an fxsks channel a ring burst ends 50 ms after the ring bits go."""
        cas = chan.cas
        assert cas is not None
        if rxsig == RXSIG_RING:
            self._cancel(cas, "trailer")
        elif before == RXSIG_RING and cas.trailer is None:
            cas.trailer = self.engine.call_later(RING_TRAILER, self._trailer_expired, chan)

    def _trailer_expired(self, chan: SimChannel) -> None:
        cas = chan.cas
        if cas is None:
            return
        cas.trailer = None
        if self.engine.time() >= cas.ringdeb_until:
            self._event(chan, abi.DAHDI_EVENT_RINGOFFHOOK)

    def _start_onhook_timer(self, chan: SimChannel) -> None:
        """The rx on-hook debounce (rxflashtime): shorter breaks are flashes or pulses."""
        cas = chan.cas
        assert cas is not None
        self._cancel(cas, "itimer")
        cas.onhook_since = self.engine.time()
        cas.itimer = self.engine.call_later(cas.timing.rxflash / 1000, self._itimer_expired,
                                            chan)

    def _itimer_expired(self, chan: SimChannel) -> None:
        cas = chan.cas
        if cas is None:
            return
        cas.itimer = None
        cas.onhook_since = None
        if cas.is_fxo:
            self._event(chan, abi.DAHDI_EVENT_ONHOOK)
            cas.gotgs = False
        else:  # rbs_itimer_expire's default branch, as odd as in the kernel
            self._event(chan, abi.DAHDI_EVENT_RINGOFFHOOK)

    def _pulse(self, chan: SimChannel) -> None:
        cas = chan.cas
        assert cas is not None
        if cas.pulses == 0:
            self._event(chan, abi.DAHDI_EVENT_PULSE_START)
        cas.pulses += 1
        self._cancel(cas, "pulse_timer")
        cas.pulse_timer = self.engine.call_later(PULSE_TIMEOUT, self._pulse_digit, chan)

    def _pulse_digit(self, chan: SimChannel) -> None:
        cas = chan.cas
        if cas is None:
            return
        cas.pulse_timer = None
        count, cas.pulses = cas.pulses, 0
        digit = {10: "0", 11: "*", 12: "#"}.get(count, str(count) if count < 10 else "")
        if digit:
            self._event(chan, abi.DAHDI_EVENT_PULSEDIGIT | ord(digit))

    # ------------------------------------------------------------------ helpers
    def _event(self, chan: SimChannel, event: int) -> None:
        log.debug("%s: %s", chan.name, abi.event_name(event))
        self.kernel._queue_event(chan, event)

    @staticmethod
    def _cancel(cas: CasState, name: str) -> None:
        handle = getattr(cas, name)
        if handle is not None:
            handle.cancel()
            setattr(cas, name, None)

    def _cancel_all(self, cas: CasState) -> None:
        for name in ("otimer", "itimer", "trailer", "pulse_timer", "tick", "polarity_timer"):
            self._cancel(cas, name)


def _decode(sig: int, bits: int) -> int:
    """dahdi_rbsbits: the hook signal the bits mean on this side."""
    if sig == abi.DAHDI_SIG_FXOKS:
        return RXSIG_OFFHOOK if bits & A else RXSIG_ONHOOK
    if not bits & B:
        return RXSIG_RING
    return RXSIG_ONHOOK if bits & A else RXSIG_OFFHOOK


@functools.cache
def _dtmf_sound(digit: str, law: str, on_ms: int = DIAL_DTMF_ON_MS) -> bytes:
    """``on_ms`` of the kernel's DTMF tone of ``digit``, encoded in ``law``: a dialled
    digit's, or (CONTINUOUS_LOOP_MS) the loop a continuous one repeats."""
    codec = g711.codec(law)
    return codec.encode(dtmf_samples(digit, on_ms=on_ms, off_ms=0, low_dbm0=DIAL_DTMF_DBM0,
                                     high_dbm0=DIAL_DTMF_DBM0, law=law))
