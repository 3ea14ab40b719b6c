"""The ``modem`` backend: voice modems (V.253 / IS-101) on serial devices, through pyserial.

Each ``--modem DEV`` is a :class:`VoiceModem`, driven from the engine thread: the device
is opened by pyserial (``O_NONBLOCK``, raw, 115200 8N1) and its descriptor registered
with the engine; reads take what is there, writes are queued and go out as the device
takes them (``os.write`` on pyserial's descriptor: pyserial 3.5's own ``write`` with
``write_timeout=0`` spins on EAGAIN), so no serial call ever blocks the engine.

Initialisation: DLE ``^`` DLE ``!`` DLE ETX (a modem a host left in a voice state is
brought back to commands; what it answers is dropped), ``ATZ``, ``ATE0``, ``ATV1``
(verbose results: a stored profile with V0 answers ATZ with ``0``, which is read as OK,
as are the other V.250 numeric codes where a result is awaited; an ERROR to it is
logged), ``ATI3`` (the chip, for the dialect), ``AT+FCLASS=?`` (class 8 must be listed:
otherwise it is not a voice modem), ``AT+FCLASS=8``, ``AT+VIT=0`` (no inactivity timer:
ZyXEL's 7 s ends the voice state of a call where nothing is played; an ERROR to it is
logged; and as a modem may keep its timer all the same, a frame of silence goes out
every half second of a call where nothing is queued), ``AT+VSM=?`` (the voice formats,
chosen by name among those of 8 bits per sample: G.711 mu-law, then A-law, then 8-bit
unsigned linear, then 8-bit signed), ``AT+VSM=<n>,8000`` (with ``,0,0`` on Conexant),
``AT+VLS=?`` (the telephone line's relay: 1 where listed, else 2), ``AT+VCID=1`` (an
ERROR there only means no caller ID).

Dialects, chosen from ``ATI3``'s answer or ``--modem-dialect``: ``conexant`` (CX93001
and kin: ``AT+VSM=n,8000,0,0``), ``usr`` (U.S. Robotics: ``AT+VSM=n,8000``), ``zoom``
and ``v253`` (anything else, as the recommendation says). Each ends ``AT+VTR`` with DLE
``^`` (Conexant's and U.S. Robotics' AT references); a modem still streaming a second
later is sent DLE ``!`` (receive abort), then DLE ETX, before it is given up, and the
code that worked is sent first from then on. Caller ID lines are read with or without
spaces round ``=``, between the first two rings (Bellcore) or before the first (UK,
ETSI: kept for a ring up to 10 s later).

Calls: ``RING`` (and caller ID between the first two, or before the first) is an
incoming call, offered once its caller ID is in (at the first ring when it came before
it; at the second without it), and not again after a failed answer while it rings on
(until the rings stop for 8 s); ``ring()`` signals nothing (an analog line: no early
media, as on an FXO port); ``answer()`` is ``AT+VLS=<line>`` then ``AT+VTR`` (voice
transmit and receive at once, needed for play, record and DTMF together). In ``AT+VTR``,
what the modem sends is audio (to the leg's receive path, in G.711) and DLE events:
digits are reported to the channel out of band (merged with what its own detector hears
in band), ``l`` (loop current interruption), ``b`` (busy tone) and ``d`` (dial tone)
mean the far end hung up; ``s`` (silence) does too with ``silence_hangup``. Calls out:
``ATDT<number>;``: ``VCON``/``OK`` is the answer, ``BUSY`` → BUSY, ``NO ANSWER`` →
NOANSWER, ``NO DIALTONE`` → OUTOFORDER (a dead line), ``NO CARRIER`` and ``ERROR`` →
FAILED. Hanging up: the stop codes (see the dialects), then ``ATH``.

Bad input: lines the modem should not send are logged and dropped; a line that never
ends is cut at 4 KiB; audio that comes faster than 8000 samples a second (plus a
second's slack) is dropped; a command not answered in time, a voice stream that stops
for 3 s, or a device that fails (unplugged: EIO, hang-up) closes the modem: its call
goes IDLE with OUTOFORDER and the device is opened again, waiting longer each time
(:mod:`uascall.dahdi.reopen`).
"""

from __future__ import annotations

import logging
import os
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from uascall.backend import (
    Backend,
    CallLeg,
    Cause,
    LegAnswered,
    LegCleared,
    LegDigit,
    MediaPort,
    NoRoute,
)
from uascall.dahdi.reopen import Reopener
from uascall.engine import EPOLLIN, EPOLLOUT, Engine, TimerHandle
from uascall.errors import ArgumentError, DeviceError, Error
from uascall.media import g711
from uascall.modem.dle import CAN, DLE, END, ETX, DleReader, converter, shield

log = logging.getLogger(__name__)

FRAME = 160
RATE = 8000
COMMAND_TIMEOUT = 3.0
#: how much audio may be queued ahead of the modem's playing it (samples)
TX_LEAD = 1600
#: a voice stream that sends nothing this long has stopped: the modem is gone
RX_STALL = 3.0
#: a stall check or command timeout that runs this much later than due was held up by
#: the engine, not the modem (the process off the CPU: the engine reads a ready tty
#: before it runs due timers, but an emulated modem on the same engine, or a device
#: whose driver was held up too, has yet to send what it owes): it looks again a moment
#: later rather than failing a working modem. One second look only: a modem still
#: silent then is failed, even while the engine keeps running late
STALL_CHECK_LATE = 0.25
RING_GONE = 8.0
CALLER_ID_SETTLE = 0.3
#: caller ID that comes before the first ring (UK, ETSI) is kept for a ring this long
EARLY_CALLER_ID = 10.0
#: how often silence is sent in a call where nothing is played, for a modem whose +VIT
#: timer AT+VIT=0 did not turn off (the shortest +VIT is 1 s)
KEEPALIVE = 0.5
LINE_LIMIT = 4096
#: after the open, what the modem sends back is dropped this long (see start())
SETTLE = 0.3
FINAL = ("OK", "ERROR", "CONNECT", "VCON", "BUSY", "NO DIALTONE", "NO DIAL TONE",
         "NO ANSWER", "NO CARRIER")
#: V.250's numeric result codes (V0), as a modem whose stored profile has V0 answers ATZ
#: (after which ATV1 makes them verbose)
NUMERIC_RESULTS = {"0": "OK", "1": "CONNECT", "2": "RING", "3": "NO CARRIER", "4": "ERROR",
                   "6": "NO DIALTONE", "7": "BUSY", "8": "NO ANSWER"}
DIAL_CAUSES = {"BUSY": Cause.BUSY, "NO ANSWER": Cause.NOANSWER,
               "NO DIALTONE": Cause.OUTOFORDER, "NO DIAL TONE": Cause.OUTOFORDER,
               "NO CARRIER": Cause.FAILED, "ERROR": Cause.FAILED}
DIGITS = frozenset(b"0123456789*#ABCD")
_LINE_END = re.compile(rb"[\r\n]")


#: the shielded codes that may end AT+VTR, tried in turn (see VoiceModem._stop_voice):
#: DLE ^ (what Conexant's and U.S. Robotics' AT references give for the voice duplex
#: state), DLE ! (receive abort, for AT+VRX, which some modems honour in AT+VTR too),
#: DLE ETX (the end of what the host sends: played out, then the state ends)
STOP_CODES = (b"\x10^", b"\x10!", END)
#: how long a stop code is given before the next is tried
STOP_RETRY = 1.0


@dataclass(frozen=True)
class Dialect:
    name: str
    vsm_suffix: str  # after AT+VSM=<n>,8000
    stop_duplex: bytes  # the DLE code its manual says ends AT+VTR (the others follow)


DIALECTS = {
    "conexant": Dialect("conexant", ",0,0", b"\x10^"),
    "usr": Dialect("usr", "", b"\x10^"),
    "zoom": Dialect("zoom", "", b"\x10^"),
    "v253": Dialect("v253", "", b"\x10^"),
}


def _code_name(code: bytes) -> str:
    return "DLE ETX" if code == END else "DLE " + code[1:].decode("latin-1")


def dialect_of(identity: str) -> Dialect:
    """The dialect of a chip from what ATI3 said."""
    text = identity.upper()
    if "CX93" in text or "CONEXANT" in text or "ROCKWELL" in text:
        return DIALECTS["conexant"]
    if "ROBOTICS" in text or "USR" in text:
        return DIALECTS["usr"]
    if "ZOOM" in text:
        return DIALECTS["zoom"]
    return DIALECTS["v253"]


def choose_format(vsm_list: list[str]) -> tuple[int, str]:
    """(AT+VSM number, our format) from AT+VSM=?'s lines; Error when none fits.

    V.253's lines are ``<cml>,"<name>",<bps>,<tm>,(<rates>),...``: only a ``bps`` of 8
    can carry our one byte per sample (a "SIGNED PCM" of 16 bits is two). Lines without
    a bits-per-sample field (U.S. Robotics: ``128,"8-BIT LINEAR",(8000)``) are judged by
    the name alone."""
    found: dict[str, int] = {}
    for line in vsm_list:
        match = re.match(r'\s*(\d+)\s*,\s*"([^"]*)"\s*(?:,\s*(\d+)\b)?', line)
        if not match:
            continue
        number, name = int(match.group(1)), match.group(2).upper().replace(".", "")
        if match.group(3) is not None and int(match.group(3)) != 8:
            continue  # 16-bit linear, 4-bit ADPCM...: not one byte per sample
        if "ADPCM" in name or "16-BIT" in name or "16 BIT" in name:
            continue  # formats an 8-bit byte stream cannot be
        if "711U" in name or "ULAW" in name or "MU-LAW" in name:
            found.setdefault("ulaw", number)
        elif "711A" in name or "ALAW" in name or "A-LAW" in name:
            found.setdefault("alaw", number)
        elif "UNSIGNED" in name or "LINEAR" in name:
            found.setdefault("u8", number)
        elif "SIGNED" in name:
            found.setdefault("s8", number)
    for fmt in ("ulaw", "alaw", "u8", "s8"):
        if fmt in found:
            return found[fmt], fmt
    raise Error(f"AT+VSM=? listed no 8-bit PCM or G.711 format ({vsm_list!r}); expected "
                "one of G.711U, G.711A, UNSIGNED PCM, SIGNED PCM or 8-BIT LINEAR with 8 "
                "bits per sample")


def _answers_with_text(command: str) -> bool:
    """Whether ``command``'s answer has information lines before its result."""
    upper = command.upper()
    return upper.startswith("ATI") or upper.endswith("?")


class ModemPort(MediaPort):
    """Audio to the modem in AT+VTR, paced by what it has had time to play."""

    def __init__(self, modem: VoiceModem) -> None:
        self.modem = modem
        self.law = modem.law
        self._to_modem = converter(self.law, modem.format)

    def write(self, frame: bytes) -> bool:
        modem = self.modem
        if modem.state != "connected":
            raise DeviceError(5, modem.path, "write", f"the modem is {modem.state}")
        if modem.tx_ahead() + FRAME > TX_LEAD:
            return False
        table = self._to_modem
        modem.send_audio(shield(frame.translate(table) if table else frame))
        return True

    def flush(self) -> None:
        self.modem.flush_audio()

    def queued(self) -> int | None:
        return self.modem.tx_ahead() // FRAME


class ModemLeg(CallLeg):
    """A call on a voice modem (engine thread only)."""

    def __init__(self, modem: VoiceModem, *, incoming: bool, call_from: str = "",
                 call_to: str = "", calling_name: str = "") -> None:
        self.modem = modem
        self.incoming = incoming
        self.call_from = call_from
        self.call_to = call_to
        self.calling_name = calling_name
        self.over = False
        self._port: ModemPort | None = None

    def describe(self) -> str:
        return f"modem {self.modem.path} ({self.modem.dialect.name}, {self.modem.format})"

    @property
    def live(self) -> bool:
        return not self.over

    def alert(self, early_media: bool, codecs: list[str] | None = None) -> bool:
        return False  # the caller's exchange rings it: nothing to signal, no early media

    def answer(self, codecs: list[str] | None = None) -> None:
        if self.over:
            raise Error(f"{self.describe()}: the call is over; expected a ringing call")
        self.modem.answer(self)

    def release(self, cause: Cause, raw_cause: str | None = None) -> Cause | None:
        if raw_cause is not None:
            return None  # an analog line carries no cause
        self.modem.hang_up(self, cause)
        return cause

    def media(self) -> MediaPort:
        if self.over or self.modem.state != "connected" or self.modem.leg is not self:
            raise Error(f"{self.describe()}: no audio path (the call is "
                        f"{'over' if self.over else 'not connected'}); a modem has none "
                        "before the answer")
        if self._port is None:
            self._port = ModemPort(self.modem)
        return self._port

    def _ended(self, cause: Cause, raw: str, by: str) -> None:
        if self.over:
            return
        self.over = True
        self._emit(LegCleared(cause, raw, by))


class VoiceModem:
    """One voice modem on a serial device (engine thread)."""

    def __init__(self, backend: ModemBackend, path: str, *, dialect: str | None = None,
                 silence_hangup: bool = False, baudrate: int = 115200) -> None:
        self.backend = backend
        self.engine = backend.engine
        self.path = path
        self.baudrate = baudrate
        self.forced_dialect = dialect
        self.silence_hangup = silence_hangup
        self.dialect = DIALECTS[dialect or "v253"]
        self.identity = ""
        self.format = "u8"
        self.vsm = 1
        self.line_relay = 1
        self.caller_id = False
        #: AT+VIT=0 was refused: the modem may leave the voice state when nothing is sent
        self.inactivity_timer = False
        self.law = "ulaw"
        #: closed, init, idle, ringing, answering, dialling, connected, draining (the
        #: last audio playing out before the stop), stopping, ending, hanging up, failed
        self.state = "closed"
        self.leg: ModemLeg | None = None
        #: why it was last closed or failed, for status and tests
        self.last_error = ""
        self._serial: Any = None
        self._fd = -1
        self._out = bytearray()
        self._out_audio = 0  # bytes of shielded audio in _out (for the pacing)
        self._writing = False
        self._line = bytearray()
        self._lines_seen: list[str] = []
        self._command: tuple[str, Callable[[str, list[str]], None]] | None = None
        self._queue: deque[tuple[str, Callable[[str, list[str]], None], float]] = deque()
        self._timeout: TimerHandle | None = None
        self._ring_timer: TimerHandle | None = None
        self._offer_timer: TimerHandle | None = None
        self._stall_timer: TimerHandle | None = None
        self._keepalive_timer: TimerHandle | None = None
        self._silence = b""  # a frame of silence in the modem's format, shielded
        self._stops_left: list[bytes] = []  # the stop codes yet to try (_stop_voice)
        self._stops_sent: list[bytes] = []
        self._stop_works: bytes | None = None  # the one that ended AT+VTR last time
        self._settle_timer: TimerHandle | None = None
        self._discard_until = 0.0
        self._rings = 0
        self._refused = False
        self._ignoring_rings = False  # the rings of a call whose answer failed
        self._cid: dict[str, str] = {}
        self._early_cid: dict[str, str] = {}  # caller ID seen while idle (UK, ETSI)
        self._early_cid_at = 0.0
        self._dle = DleReader()
        self._from_modem: bytes | None = None
        self._stream_start = 0.0
        self._tx_samples = 0
        self._rx_samples = 0
        self._rx_dropped = 0
        self._last_rx = 0.0
        self._reopener = Reopener(self.engine, start=self._start_again, stop=self.stop,
                                  name=f"modem {path}")

    def __repr__(self) -> str:
        return f"<VoiceModem {self.path} {self.state}>"

    # ------------------------------------------------------------------ the device
    def start(self) -> None:
        """Open the device and initialise it (raises OSError when it cannot be opened)."""
        import serial  # pyserial, a declared dependency; imported here for a lazy backend

        try:
            # exclusive: a second uascall (or a getty) on the same modem is refused at
            # once, rather than both reading half of its answers
            port = serial.Serial(self.path, self.baudrate, timeout=0, write_timeout=0,
                                 exclusive=True)
        except (serial.SerialException, ValueError) as exc:
            raise DeviceError(getattr(exc, "errno", None) or 19, self.path, "open",
                              str(exc)) from exc
        self._serial = port
        self._fd = port.fileno()
        self.engine.add_fd(self._fd, EPOLLIN, self._ready, on_error=self._handler_failed)
        self.engine.add_shutdown_callback(self.stop)
        self._reopener.opened()
        self.state = "init"
        log.info("modem %s opened; initialising", self.path)
        # A host that died mid-call left the modem in a voice state, where ATZ is audio:
        # end it (every stop code at once: which one the modem takes is not known yet;
        # in command mode they are a line that is not a command), and
        # drop what comes back before the first command.
        self._send(b"".join(STOP_CODES) + b"\r")
        self._discard_until = self.engine.time() + SETTLE
        self._settle_timer = self.engine.call_later(SETTLE, self._initialise)

    def _start_again(self) -> None:
        self.start()
        log.warning("modem %s: opened again", self.path)

    def stop(self) -> None:
        self._reopener.cancel()
        if self.state in ("connected", "draining", "stopping") \
                and self._serial is not None:
            self._send(b"".join(STOP_CODES))
        if self.state not in ("closed", "init", "failed") and self._serial is not None:
            self._send(b"ATH\r")
            self._flush_out()
        self._close("the backend stopped", Cause.NORMAL, "local")

    def _close(self, why: str, cause: Cause = Cause.OUTOFORDER, by: str = "span") -> None:
        for timer in (self._timeout, self._ring_timer, self._offer_timer, self._stall_timer,
                      self._settle_timer, self._keepalive_timer):
            if timer is not None:
                timer.cancel()
        self._timeout = self._ring_timer = self._offer_timer = self._stall_timer = None
        self._settle_timer = self._keepalive_timer = None
        self._ignoring_rings = False
        self._command = None
        self._queue.clear()
        leg, self.leg = self.leg, None
        if leg is not None:
            leg._ended(cause, why, by)
        if self._serial is not None:
            self.engine.remove_fd(self._fd)
            self.engine.remove_shutdown_callback(self.stop)
            try:
                self._serial.close()
            except OSError:  # a device that failed may fail to close too
                pass
            self._serial = None
            self._fd = -1
        self._out.clear()
        self._out_audio = 0
        self._writing = False
        self._line.clear()
        self.state = "closed"

    def _fail(self, why: str) -> None:
        """Something is wrong with the modem: its call ends (OUTOFORDER), it is closed and
        opened again later."""
        if self.state in ("closed", "failed"):
            return  # closed already: a late timer or a second failure of the same write
        self.last_error = why
        log.error("modem %s: %s; closing it (its call cleared), opening it again in %g s",
                  self.path, why, self._reopener.first_delay())
        self._close(why)
        self.state = "failed"
        self._reopener.schedule()

    def _handler_failed(self, exc: BaseException) -> None:
        self._fail(f"its handler failed: {exc}")

    def _ready(self, revents: int) -> None:
        if self._serial is None:
            return
        if revents & EPOLLOUT:
            self._flush_out()
        if revents & ~(EPOLLIN | EPOLLOUT) and not revents & EPOLLIN:
            self._fail("the device hung up (unplugged?)")
            return
        if not revents & EPOLLIN:
            return
        try:
            data = self._serial.read(65536)
        except Exception as exc:  # SerialException: EIO, or readiness without data
            self._fail(f"reading failed ({exc}): unplugged?")
            return
        if data:
            self._received(data)

    def _send(self, data: bytes) -> None:
        self._out += data
        self._flush_out()

    def _flush_out(self) -> None:
        if self._fd < 0:
            return
        while self._out:
            try:
                n = os.write(self._fd, self._out[:65536])
            except BlockingIOError:
                break
            except OSError as exc:
                self._fail(f"writing failed ({exc}): unplugged?")
                return
            del self._out[:n]
            self._out_audio = max(0, self._out_audio - n)
        want = bool(self._out)
        if want != self._writing and self._fd >= 0:
            self._writing = want
            self.engine.modify_fd(self._fd, EPOLLIN | (EPOLLOUT if want else 0))

    # ------------------------------------------------------------------ commands
    def _at(self, command: str, then: Callable[[str, list[str]], None],
            timeout: float = COMMAND_TIMEOUT) -> None:
        """Send ``command``; ``then(final result, the lines before it)`` follows."""
        self._queue.append((command, then, timeout))
        if self._command is None:
            self._next_command()

    def _next_command(self) -> None:
        if not self._queue or self._serial is None:
            return
        command, then, timeout = self._queue.popleft()
        self._command = (command, then)
        self._lines_seen = []
        log.debug("modem %s <- %s", self.path, command)
        self._send(command.encode("ascii") + b"\r")
        if self._serial is None:  # the write failed: the modem is closed now
            return
        self._arm_command_timeout(command, timeout)

    def _arm_command_timeout(self, command: str, timeout: float, *,
                             again: bool = False) -> None:
        delay = STALL_CHECK_LATE if again else timeout
        due = self.engine.time() + delay
        self._timeout = self.engine.call_at(due, self._command_timed_out, command, timeout,
                                            due, again)

    def _command_timed_out(self, command: str, timeout: float, due: float,
                           again: bool) -> None:
        self._timeout = None
        late = self.engine.time() - due
        if late > STALL_CHECK_LATE and not again:  # held up: its answer may wait unread
            log.debug("modem %s: the timeout of %s ran %.2f s late: looking again once "
                      "the tty is read", self.path, command, late)
            self._arm_command_timeout(command, timeout, again=True)
            return
        if self.state == "stopping":
            if self._stops_left:
                self._next_stop()
                return
            self._fail("the modem stayed in AT+VTR after "
                       + ", ".join(_code_name(c) for c in self._stops_sent)
                       + "; expected DLE ETX and OK (the modem stopped answering)")
            return
        self._fail(f"no answer to {command} in {timeout:g} s; expected a result code "
                   "such as OK (the modem stopped answering)")

    def _result(self, final: str) -> None:
        current, self._command = self._command, None
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        if current is None:
            log.info("modem %s: %s with no command waiting; ignored", self.path, final)
            return
        command, then = current
        log.debug("modem %s -> %s (%s)", self.path, final, command)
        then(final, self._lines_seen)
        if self._command is None:
            self._next_command()

    def _expect_ok(self, what: str) -> Callable[[str, list[str]], None]:
        def check(final: str, _lines: list[str]) -> None:
            if final != "OK":
                self._fail(f"{what} answered {final}; expected OK")
        return check

    # ------------------------------------------------------------------ initialisation
    def _initialise(self) -> None:
        self._settle_timer = None
        self._at("ATZ", self._expect_ok("ATZ"))
        self._at("ATE0", self._expect_ok("ATE0"))
        # verbose results: a stored profile may have V0 (ATZ's own answer is then "0",
        # which _text reads too). A command of its own: not every modem takes ATE0V1
        self._at("ATV1", self._verbose_set)
        self._at("ATI3", self._identified)
        self._at("AT+FCLASS=?", self._classes)

    def _verbose_set(self, final: str, _lines: list[str]) -> None:
        if final != "OK":
            log.info("modem %s: ATV1 answered %s; its numeric result codes are read as "
                     "they come", self.path, final)

    def _identified(self, final: str, lines: list[str]) -> None:
        self.identity = " ".join(lines)
        if self.forced_dialect is None:
            self.dialect = dialect_of(self.identity)
        log.info("modem %s: %r, %s dialect", self.path, self.identity, self.dialect.name)

    def _classes(self, final: str, lines: list[str]) -> None:
        classes = {c.strip() for line in lines for c in line.split(",")}
        if final != "OK" or "8" not in classes:
            self._fail(f"AT+FCLASS=? answered {final} {lines!r}; expected a list with 8 "
                       "(voice): not a voice modem")
            return
        self._at("AT+FCLASS=8", self._expect_ok("AT+FCLASS=8"))
        # a modem's inactivity timer (ZyXEL's +VIT is 7 s) ends the voice data state
        # when the host sends nothing for that long: a call where nobody plays is cut
        self._at("AT+VIT=0", self._inactivity_timer_set)
        self._at("AT+VSM=?", self._formats)

    def _inactivity_timer_set(self, final: str, _lines: list[str]) -> None:
        self.inactivity_timer = final != "OK"
        if self.inactivity_timer:
            log.info("modem %s: AT+VIT=0 answered %s: its inactivity timer, if it has "
                     "one, stays (the silence sent in calls where nothing is played "
                     "keeps it from running out)", self.path, final)

    def _formats(self, final: str, lines: list[str]) -> None:
        if final != "OK":
            self._fail(f"AT+VSM=? answered {final}; expected the voice formats and OK")
            return
        try:
            self.vsm, self.format = choose_format(lines)
        except Error as exc:
            self._fail(str(exc))
            return
        self.law = self.format if self.format in ("ulaw", "alaw") else "ulaw"
        self._from_modem = converter(self.format, self.law)
        silence = bytes((g711.codec(self.law).silence,)) * FRAME
        table = converter(self.law, self.format)
        self._silence = shield(silence.translate(table) if table else silence)
        self._at(f"AT+VSM={self.vsm},8000{self.dialect.vsm_suffix}",
                 self._expect_ok("AT+VSM"))
        self._at("AT+VLS=?", self._relays)

    def _relays(self, final: str, lines: list[str]) -> None:
        options = {c.strip() for line in lines for c in line.split(",")}
        self.line_relay = 1 if "1" in options or final != "OK" else 2
        self._at("AT+VCID=1", self._caller_id_set)

    def _caller_id_set(self, final: str, _lines: list[str]) -> None:
        self.caller_id = final == "OK"
        if not self.caller_id:
            log.warning("modem %s: AT+VCID=1 answered %s: calls come without caller ID",
                        self.path, final)
        self.state = "idle"
        log.info("modem %s ready: %s, AT+VSM=%d (%s), line AT+VLS=%d%s", self.path,
                 self.dialect.name, self.vsm, self.format, self.line_relay,
                 ", caller ID" if self.caller_id else "")

    # ------------------------------------------------------------------ what comes in
    def _received(self, data: bytes) -> None:
        if self.state == "init" and self.engine.time() < self._discard_until:
            return  # the answers to the stop sent at the open
        pos, size = 0, len(data)
        line = self._line
        while pos < size:
            if self.state in ("connected", "draining", "stopping"):
                self._voice(data[pos:])  # CONNECT: what follows is voice data
                return
            match = _LINE_END.search(data, pos)
            if match is None:
                line += data[pos:]
                if len(line) > LINE_LIMIT:
                    log.warning("modem %s: a line of more than %d bytes without an end; "
                                "dropped", self.path, LINE_LIMIT)
                    line.clear()
                return
            end = match.start()
            line += data[pos:end]
            pos = end + 1
            if data[end:end + 2] == b"\r\n":
                pos += 1  # CR LF is one line end: the audio after CONNECT starts after it
            text = line.decode("latin-1").strip()
            line.clear()
            if text:
                self._text(text)

    def _text(self, text: str) -> None:
        upper = text.upper()
        if self._command is not None and upper == self._command[0].upper():
            return  # the echo of our command (echo is on until ATE0)
        if upper in NUMERIC_RESULTS and self._command is not None \
                and not _answers_with_text(self._command[0]):
            # a lone digit where a result is awaited is a V0 code; not after ATI or a
            # =? query, whose information lines may be digits
            upper = NUMERIC_RESULTS[upper]
        if upper in FINAL:
            self._result(upper)
            return
        if upper == "RING":
            self._ring()
            return
        match = re.match(r"(DATE|TIME|NMBR|NAME|MESG)\s*=\s*(.*)$", text, re.IGNORECASE)
        if match and self.state == "idle":
            # UK/ETSI caller ID comes before the first ring: kept for it (_ring)
            if self.engine.time() - self._early_cid_at > EARLY_CALLER_ID:
                self._early_cid = {}
            self._early_cid[match.group(1).upper()] = match.group(2).strip()
            self._early_cid_at = self.engine.time()
            return
        if match and self.state == "ringing":
            self._cid[match.group(1).upper()] = match.group(2).strip()
            if self._offer_timer is not None:
                self._offer_timer.cancel()
            self._offer_timer = self.engine.call_later(CALLER_ID_SETTLE, self._offer)
            return
        if self._command is not None:
            self._lines_seen.append(text)
        else:
            log.debug("modem %s: unexpected %r; ignored", self.path, text[:80])

    # ------------------------------------------------------------------ calls in
    def _ring(self) -> None:
        if self.state not in ("idle", "ringing"):
            return
        if self._ignoring_rings:  # the call whose answer failed (_call_failed)
            self._early_cid = {}
            self._arm_ignored_rings()
            return
        if self._ring_timer is not None:
            self._ring_timer.cancel()
        self._ring_timer = self.engine.call_later(RING_GONE, self._rings_stopped)
        if self.state == "idle":
            self.state = "ringing"
            self._rings, self._cid, self._refused = 0, {}, False
            if self._early_cid \
                    and self.engine.time() - self._early_cid_at <= EARLY_CALLER_ID:
                self._cid = self._early_cid  # it came before this ring: it is all in
            self._early_cid = {}
        self._rings += 1
        if self.leg is None and not self._refused and (not self.caller_id or self._cid
                                                       or self._rings >= 2):
            self._offer()

    def _offer(self) -> None:
        self._offer_timer = None
        if self.state != "ringing" or self.leg is not None or self._refused:
            return
        number = self._cid.get("NMBR", "")
        leg = ModemLeg(self, incoming=True,
                       call_from="" if number in ("O", "P") else number,
                       calling_name=self._cid.get("NAME", ""))
        self.leg = leg
        log.info("modem %s: call from %r (%r)", self.path, leg.call_from, leg.calling_name)
        if not self.backend._offer(leg):
            log.warning("modem %s: nobody takes calls; letting it ring", self.path)
            self.leg = None
            self._refused = True
            leg._ended(Cause.REJECTED, "", "local")

    def _rings_stopped(self) -> None:
        self._ring_timer = None
        if self.state != "ringing":
            return
        self.state = "idle"
        leg, self.leg = self.leg, None
        if leg is not None:
            log.info("modem %s: the caller gave up", self.path)
            leg._ended(Cause.NORMAL, "rings stopped", "remote")

    def answer(self, leg: ModemLeg) -> None:
        if self.leg is not leg or self.state != "ringing":
            raise Error(f"modem {self.path}: answer() with the modem {self.state}; "
                        "expected a ringing call")
        if self._ring_timer is not None:
            self._ring_timer.cancel()
            self._ring_timer = None
        self.state = "answering"
        self._at(f"AT+VLS={self.line_relay}", self._off_hook)

    def _off_hook(self, final: str, _lines: list[str]) -> None:
        if self.leg is None:  # released while the modem went off hook
            self._on_hook()
            return
        if final not in ("OK", "VCON"):
            self._call_failed(f"AT+VLS={self.line_relay} answered {final}; expected OK")
            return
        self._at("AT+VTR", self._voice_started)

    def _voice_started(self, final: str, _lines: list[str]) -> None:
        leg = self.leg
        if final != "CONNECT":
            self._call_failed(f"AT+VTR answered {final}; expected CONNECT (a modem "
                              "without full-duplex voice cannot play and listen at once)")
            return
        self.state = "connected"
        self._dle.reset()
        if leg is None:  # released meanwhile: straight out of the voice state again
            self._stop_voice()
            return
        self._stream_start = self._last_rx = self.engine.time()
        self._tx_samples = self._rx_samples = self._rx_dropped = 0
        self._arm_stall_check(RX_STALL)
        # in every call, not only where AT+VIT=0 was refused: a modem may take it and
        # keep its timer all the same
        self._keepalive_timer = self.engine.call_later(KEEPALIVE, self._keep_alive)
        if leg is not None:
            leg._emit(LegAnswered())

    def _keep_alive(self) -> None:
        """A frame of silence when nothing is queued: the host's sending nothing is what
        an inactivity timer AT+VIT=0 did not turn off ends the voice state for."""
        self._keepalive_timer = None
        if self.state != "connected":
            return
        if self.tx_ahead() == 0:
            self.send_audio(self._silence)
        self._keepalive_timer = self.engine.call_later(KEEPALIVE, self._keep_alive)

    def _call_failed(self, why: str) -> None:
        log.warning("modem %s: %s; hanging up", self.path, why)
        leg, self.leg = self.leg, None
        if leg is not None:
            leg._ended(Cause.FAILED, why, "local")
            if leg.incoming:
                # the line rings on after a failed answer: not a new call (one with no
                # caller ID, the modem reports it once a call) until the rings stop
                self._ignoring_rings = True
                self._arm_ignored_rings()
        self._on_hook()

    def _arm_ignored_rings(self) -> None:
        if self._ring_timer is not None:
            self._ring_timer.cancel()
        self._ring_timer = self.engine.call_later(RING_GONE, self._ignored_rings_stopped)

    def _ignored_rings_stopped(self) -> None:
        self._ring_timer = None
        self._ignoring_rings = False

    # ------------------------------------------------------------------ calls out
    def dial(self, number: str, call_from: str = "") -> ModemLeg:
        if self.state != "idle":
            raise NoRoute(f"modem {self.path} is {self.state}")
        if not number or not re.fullmatch(r"[0-9*#A-D,]+", number):
            raise ArgumentError(f"number {number!r}; expected digits 0-9 * # A-D (, to "
                                "pause) for a modem to dial")
        leg = ModemLeg(self, incoming=False, call_from=call_from, call_to=number)
        self.leg = leg
        self.state = "dialling"
        self._at(f"ATDT{number};", self._dialled, timeout=90.0)
        return leg

    def _dialled(self, final: str, _lines: list[str]) -> None:
        if self.leg is None:
            self._on_hook()
            return
        if final in ("VCON", "OK"):
            self._at("AT+VTR", self._voice_started)
            return
        cause = DIAL_CAUSES.get(final, Cause.FAILED)
        leg, self.leg = self.leg, None
        log.info("modem %s: dialling %s: %s", self.path, leg.call_to, final)
        leg._ended(cause, final, "remote")
        self._on_hook()

    # ------------------------------------------------------------------ voice
    def _voice(self, data: bytes) -> None:
        self._last_rx = self.engine.time()
        audio = bytearray()
        items = self._dle.feed(data)
        for at, item in enumerate(items):
            if isinstance(item, bytes):
                audio += item
                continue
            if item == ETX:  # the modem left the voice state: text (OK) follows
                self._deliver(audio)
                audio = bytearray()
                ended_by_us = self.state == "stopping"
                if ended_by_us:
                    self._stop_works = self._stops_sent[-1]  # first, next time
                self.state = "ending"
                if not ended_by_us:
                    self._remote_hang_up("the modem ended the voice data (DLE ETX)")
                rest = b"".join(i if isinstance(i, bytes) else bytes((DLE, i))
                                for i in items[at + 1:])
                if rest:
                    self._received(rest)
                return
            self._code(item)
        self._deliver(audio)

    def _deliver(self, audio: bytearray) -> None:
        if not audio or self.state != "connected":
            return
        # no more than the modem can have heard: a flood is not audio
        allowed = int((self.engine.time() - self._stream_start + 1.0) * RATE) \
            - self._rx_samples
        if len(audio) > allowed:
            if not self._rx_dropped:
                log.warning("modem %s: %d bytes of audio more than 8000 a second; "
                            "dropped", self.path, len(audio) - max(0, allowed))
            self._rx_dropped += len(audio) - max(0, allowed)
            del audio[max(0, allowed):]
        self._rx_samples += len(audio)
        leg = self.leg
        if leg is not None and audio:
            table = self._from_modem
            leg._received(bytes(audio).translate(table) if table else bytes(audio),
                          self.law)

    def _code(self, code: int) -> None:
        leg = self.leg
        if self.state != "connected":
            return
        if code in DIGITS:
            if leg is not None:
                digit = chr(code)
                leg._emit(LegDigit(digit))
                leg._emit(LegDigit(digit, ended=True))
        elif code in (ord("l"), ord("b"), ord("d")) or (
                code in (ord("s"), ord("q")) and self.silence_hangup):
            what = {"l": "loop current interruption", "b": "busy tone",
                    "d": "dial tone", "s": "silence", "q": "quiet"}[chr(code)]
            self._remote_hang_up(what)
        else:
            log.debug("modem %s: DLE %r", self.path, chr(code))

    def _remote_hang_up(self, why: str) -> None:
        log.info("modem %s: the far end hung up (%s)", self.path, why)
        leg, self.leg = self.leg, None
        if leg is not None:
            leg._ended(Cause.NORMAL, why, "remote")
        self._stop_voice()

    def _arm_stall_check(self, delay: float, *, again: bool = False) -> None:
        due = self.engine.time() + delay
        self._stall_timer = self.engine.call_at(due, self._check_stall, due, again)

    def _check_stall(self, due: float, again: bool) -> None:
        """``again``: this is the one second look a late check gets."""
        self._stall_timer = None
        if self.state != "connected":
            return
        now = self.engine.time()
        quiet = now - self._last_rx
        if quiet >= RX_STALL:
            if now - due > STALL_CHECK_LATE and not again:
                log.debug("modem %s: the stall check ran %.2f s late: looking again once "
                          "the tty is read", self.path, now - due)
                self._arm_stall_check(STALL_CHECK_LATE, again=True)
                return
            self._fail(f"no voice data for {quiet:.1f} s in AT+VTR; expected 8000 "
                       "samples a second (the modem stopped answering)")
            return
        self._arm_stall_check(RX_STALL - quiet)

    def tx_ahead(self) -> int:
        """Samples sent (or queued) that the modem has not had time to play."""
        played = int((self.engine.time() - self._stream_start) * RATE)
        if self._tx_samples < played:  # an underrun: the modem played silence meanwhile
            self._tx_samples = played
            self._stream_start = self.engine.time() - played / RATE
        return self._tx_samples - played

    def send_audio(self, shielded: bytes) -> None:
        self.tx_ahead()
        self._tx_samples += FRAME
        self._out_audio += len(shielded)
        self._send(shielded)

    def flush_audio(self) -> None:
        if self.state == "connected":
            self._send(bytes((DLE, CAN)))
            self._tx_samples = int((self.engine.time() - self._stream_start) * RATE)

    def hang_up(self, leg: ModemLeg, cause: Cause) -> None:
        if self.leg is not leg:
            leg._ended(cause, "", "local")
            return
        self.leg = None
        leg._ended(cause, "", "local")
        if self.state == "ringing":
            self._refused = True  # a modem cannot reject: it lets it ring
        elif self.state == "connected":
            # what was sent is played out first (the end of a message), then the stop
            self.state = "draining"
            self.engine.call_later(self.tx_ahead() / RATE, self._drained)
        elif self.state == "dialling":
            self._send(b"\r")  # any character aborts dialling; NO CARRIER follows
        # answering: the modem goes off hook first, then back on hook (_off_hook)

    def _drained(self) -> None:
        if self.state == "draining":
            self.state = "connected"
            self._stop_voice()

    def _stop_voice(self) -> None:
        """End the voice state: a stop code (STOP_CODES, the dialect's first), then DLE
        ETX and OK come back; none within STOP_RETRY, the next code is tried."""
        for timer in (self._stall_timer, self._keepalive_timer):
            if timer is not None:
                timer.cancel()
        self._stall_timer = self._keepalive_timer = None
        # the OK after DLE ETX is this pseudo-command's result
        self._command = ("", lambda _final, _lines: self._on_hook())
        self._lines_seen = []
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
        if self.state != "connected":  # ending: the modem sent DLE ETX, its OK follows
            self._arm_command_timeout("the end of the voice data", COMMAND_TIMEOUT)
            return
        self.state = "stopping"
        # what the dialect's manual says first (or what worked last time), then the
        # others: a modem that ignores one would stay off hook, its audio read as text
        first = self._stop_works or self.dialect.stop_duplex
        self._stops_left = [first] + [c for c in STOP_CODES if c != first]
        self._stops_sent = []
        self._next_stop()

    def _next_stop(self) -> None:
        code = self._stops_left.pop(0)
        self._stops_sent.append(code)
        if len(self._stops_sent) > 1:
            log.info("modem %s: still in AT+VTR %g s after %s; trying %s", self.path,
                     STOP_RETRY, _code_name(self._stops_sent[-2]), _code_name(code))
        self._send(code)
        self._arm_command_timeout(_code_name(code),
                                  STOP_RETRY if self._stops_left else COMMAND_TIMEOUT)

    def _on_hook(self) -> None:
        self.state = "hanging up"
        self._at("ATH", self._idle_again)

    def _idle_again(self, final: str, _lines: list[str]) -> None:
        if final != "OK":
            self._fail(f"ATH answered {final}; expected OK")
            return
        self.state = "idle"

    @property
    def idle(self) -> bool:
        return self.state == "idle" and self.leg is None


class ModemBackend(Backend):
    """Voice modems on serial devices: ``modems`` their paths (``/dev/ttyACM0``...);
    ``dialect`` forces one (``conexant``, ``usr``, ``zoom``, ``v253``) instead of
    ``ATI3``'s; ``silence_hangup`` takes the modem's silence report as the far end's
    hanging up. A modem that cannot be opened now is retried until it can."""

    name = "modem"

    def __init__(self, engine: Engine, *, modems: Sequence[str],
                 dialect: str | None = None, silence_hangup: bool = False) -> None:
        super().__init__(engine)
        if not modems:
            raise ArgumentError("the modem backend needs at least one serial device "
                                "(--modem /dev/ttyACM0); none given")
        if dialect is not None and dialect not in DIALECTS:
            raise ArgumentError(f"dialect {dialect!r}; expected one of "
                                f"{', '.join(DIALECTS)}")
        self.modems = [VoiceModem(self, path, dialect=dialect,
                                  silence_hangup=silence_hangup) for path in modems]

    @classmethod
    def add_arguments(cls, group: Any, command: str) -> None:
        if command not in ("run", "call", "demo"):
            return
        group.add_argument("--modem", action="append", metavar="DEV",
                           help="a voice modem's serial device (repeatable)")
        group.add_argument("--modem-dialect", choices=sorted(DIALECTS),
                           help="the modem's AT dialect (default: from ATI3)")
        group.add_argument("--modem-silence-hangup", action="store_true",
                           help="take the modem's silence report (DLE s) as the far end "
                           "hanging up")

    @classmethod
    def options_from_arguments(cls, args: Any, command: str) -> dict[str, Any]:
        return {"modems": getattr(args, "modem", None) or [],
                "dialect": getattr(args, "modem_dialect", None),
                "silence_hangup": bool(getattr(args, "modem_silence_hangup", False))}

    @property
    def ready(self) -> bool:
        return any(m.idle for m in self.modems)

    def start(self) -> None:
        for modem in self.modems:
            try:
                modem.start()
            except OSError as exc:
                modem.last_error = str(exc)
                modem.state = "failed"
                log.error("modem %s does not open (%s); trying again in %g s", modem.path,
                          exc, modem._reopener.first_delay())
                modem._reopener.schedule()

    def stop(self) -> None:
        for modem in self.modems:
            modem.stop()

    def place_call(self, call_to: str, call_from: str = "", *, route: str | None = None,
                   codecs: list[str] | None = None,
                   headers: list[tuple[str, str]] | None = None,
                   prepared: Any = None) -> CallLeg:
        kind, _, which = (route or "").partition(":")
        if kind not in ("", "modem"):
            raise ArgumentError(f"route {route!r}; expected None, 'modem' or 'modem:DEV'")
        for modem in self.modems:
            if which and modem.path != which:
                continue
            if modem.idle:
                return modem.dial(call_to, call_from)
        raise NoRoute(f"no idle modem for a call to {call_to!r} ("
                      + ", ".join(f"{m.path}: {m.state}" for m in self.modems) + ")")

    def status(self, calls: dict[CallLeg, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        from uascall.status import channel_row, with_call
        rows = []
        for modem in self.modems:
            off_hook = modem.state in ("answering", "dialling", "connected", "draining",
                                       "stopping", "ending")
            row = channel_row(self.name, modem.path, signalling="voice modem",
                              state=modem.state, hook="off" if off_hook else "on",
                              in_use=modem.leg is not None, codec=modem.law)
            if modem.leg is not None:
                leg = modem.leg
                row.update(far_end=leg.call_from if leg.incoming else leg.call_to)
                with_call(row, calls.get(leg))
            rows.append(row)
        return {"spans": [], "channels": rows}
