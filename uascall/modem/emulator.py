"""An emulated voice modem on a pseudo-terminal, wired to a simulated analog line.

The modelled chip is a **Conexant CX93001** (the voice modem of most cheap USB modems:
USRobotics 5637, Zoom 3095, the "Conexant CX93010" dongles), as far as its V.253 voice
dialect goes. What a host sees of it here:

- It powers up (and ``ATZ``/``AT&F`` leaves it) with echo on (``E1``): the first command
  a host sends comes back before its result. Results are verbose (``\\r\\nOK\\r\\n``).
- ``AT+FCLASS=?`` lists ``0,1,1.0,2,8``; voice commands answer ERROR outside class 8.
- ``AT+VSM=?`` lists its 8 kHz voice formats by number and name: 0 signed 8-bit PCM,
  1 unsigned 8-bit PCM, 4 G.711 mu-law, 5 G.711 A-law (``AT+VSM=4,8000,0,0``). The real
  chip also does 7200 and 11025 Hz and IMA ADPCM; the emulator does not list them.
- ``AT+VLS=?`` lists ``0,1,4,5``; ``AT+VLS=1`` takes the line (off hook: answers a
  ringing line, or seizes it), ``AT+VLS=0`` and ``ATH`` release it; 4 and 5 (speaker,
  microphone) answer ERROR here.
- ``AT+VCID=1``: caller ID reported after the first ``RING`` as Conexant does, with
  spaces round the equals signs: ``DATE = 1205``, ``TIME = 1403``, ``NMBR = 5551234``,
  ``NAME = ...`` (``O``/``P`` for out of area and private).
- ``AT+VTX`` (play), ``AT+VRX`` (record) and ``AT+VTR`` (both at once) answer
  ``CONNECT``; in them 0x10 is DLE-shielded both ways. From the host: DLE DLE, DLE ETX
  (end of transmission: played out, then DLE ETX if receiving, then ``OK``), DLE CAN
  (drop what is buffered), DLE ``!`` (end of reception), DLE ``^`` (the end of
  ``AT+VTR``, as Conexant's AT reference has it; DLE ``!`` ends it too, unless
  :attr:`EmulatedModem.vtr_stop_codes` says otherwise). To the host: DTMF digits
  ``0-9 * # A-D`` as they start,
  ``b`` busy or congestion tone, ``d`` dial tone, ``s`` silence (``AT+VSD``'s time,
  5 s by default), ``l`` loop current interruption (the far end dropped battery: it
  hung up), ``u`` transmit underrun (once per underrun).
- ``AT+VTS=<digits>`` sounds DTMF on the line; ``ATA`` answers (``VCON``);
  ``ATD<number>;`` dials (see below); ``ATS7=<s>`` is how long it waits for an answer.
- Its transmit buffer holds 4096 samples; what a host sends beyond that is dropped (the
  real chip would hold it off with flow control, which a pty does not carry).

Wiring: ``phone`` mode (:class:`PhoneLine`) puts the modem on the ``fxsks`` end of a
line (from our FXS port, or from a simulated :class:`~uascall.sim.analog_farend.Exchange`):
it is rung, hears caller ID in FSK, goes off hook and dials in DTMF through the kernel.
Its ``ATD`` results come from what it hears: no dial tone within 5 s is ``NO DIALTONE``,
busy or congestion tone ``BUSY``, ringback that stops (none heard for 8 s) ``VCON``, ringback
longer than S7 ``NO ANSWER``. ``exchange`` mode (:class:`ExchangeLine`) puts it behind
the exchange end (``fxoks``) of the line into our FXO port: its ``ATD`` rings that port
with the modem's own number as caller ID, ``VCON`` when the port answers, ``BUSY`` when
the port's line is in use, ``NO ANSWER`` after S7; the port hanging up is a loop current
interruption. Either way what it plays and hears is the line's G.711 through the
simulated kernel.

For tests, :attr:`EmulatedModem.fault` makes it misbehave ("error": ERROR to
everything; "mute": it stops answering), :meth:`EmulatedModem.inject` sends raw bytes,
and :meth:`EmulatedModem.unplug` / :meth:`replug` pull and put back its USB cable.

``python -m uascall.modem.emulator`` runs one in phone mode behind a simulated exchange
that calls it, printing the pty's path (see :func:`main`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pty
import re
import time
import tty
from typing import Any

from uascall.dahdi import abi
from uascall.engine import EPOLLIN, EPOLLOUT, Engine, TimerHandle
from uascall.media import g711
from uascall.media.callerid import Absence, CallerId
from uascall.media.dtmf import DtmfDetector, dtmf_samples
from uascall.media.player import MediaClock
from uascall.media.progress import ProgressDetector
from uascall.media.source import BufferSource, FrameSource
from uascall.modem.dle import CAN, DLE, ETX, DleReader, converter, shield
from uascall.sim.analog_farend import Exchange, Phone

log = logging.getLogger(__name__)

FRAME = 160
CHIP = "CX93001-EIS_V0.2002-V92"
#: AT+VSM numbers: (name in AT+VSM=?, our format name)
VOICE_FORMATS = {0: ("SIGNED PCM", "s8"), 1: ("UNSIGNED PCM", "u8"),
                 4: ("G.711U", "ulaw"), 5: ("G.711A", "alaw")}
TX_BUFFER = 4096
#: what the emulator keeps for the host when the host does not read (then it drops)
OUT_LIMIT = 256 * 1024
DIAL_TONE_WAIT = 5.0
RINGBACK_GONE = 8.0


class _TxSource(FrameSource):
    """What the modem's DAC sends down the line: the host's samples, silence when none."""

    def __init__(self, modem: EmulatedModem, law: str) -> None:
        self.modem = modem
        self.law = law
        self._silence = bytes((g711.codec(law).silence,)) * FRAME

    @property
    def duration(self) -> float | None:
        return None

    def next_frame(self) -> bytes | None:
        return self.modem._next_tx_frame(self._silence)


class EmulatedModem:
    """The modem: an AT interpreter on a pty's master side, and its line (engine thread).

    ``line`` is a :class:`PhoneLine` or :class:`ExchangeLine` (not started: the modem
    starts it); ``link`` a path kept as a symlink to the pty (a stable name across
    :meth:`replug`, as udev gives a USB modem); ``number`` its own line's number.
    """

    def __init__(self, engine: Engine, line: PhoneLine | ExchangeLine, *,
                 link: str | None = None, number: str = "5550100") -> None:
        self.engine = engine
        self.line = line
        line.modem = self
        self.link = link
        self.number = number
        self.path = ""
        #: None, "error" (ERROR to every command) or "mute" (no answer to anything)
        self.fault: str | None = None
        #: every command line the host sent, for tests
        self.commands: list[str] = []
        #: the DLE codes (their second byte) that end AT+VTR: ``^`` as Conexant's AT
        #: reference has it, and ``!`` (receive abort), which chips honour there too;
        #: tests narrow it to a modem that takes only one
        self.vtr_stop_codes = {"^", "!"}
        self._master = -1
        self._slave = -1
        self._out = bytearray()
        self._writing = False
        self._timers: list[TimerHandle] = []
        self._reset()

    # ------------------------------------------------------------------ the pty
    def start(self) -> str:
        """Open the pty and the line; returns the path a host opens."""
        self.line.start()
        self._open_pty()
        return self.path

    def stop(self) -> None:
        self._close_pty()
        self._hang_up_line()
        self.line.stop()

    def unplug(self) -> None:
        """The USB cable pulled: the host's reads fail, the line is released."""
        log.info("modem %s: unplugged", self.path)
        self._close_pty()
        self._hang_up_line()
        self._reset()

    def replug(self) -> str:
        """Plugged in again (a new pty, ``link`` pointing at it); returns its path."""
        self._open_pty()
        return self.path

    def _open_pty(self) -> None:
        master, slave = pty.openpty()
        tty.setraw(slave)  # the line discipline must not echo or translate before the host
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.path = os.ttyname(slave)
        if self.link:
            tmp = f"{self.link}.new"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(self.path, tmp)
            os.replace(tmp, self.link)
        self.engine.add_fd(master, EPOLLIN, self._ready)
        log.info("modem on %s%s", self.path, f" ({self.link})" if self.link else "")

    def _close_pty(self) -> None:
        if self._master < 0:
            return
        self.engine.remove_fd(self._master)
        os.close(self._master)
        os.close(self._slave)
        self._master = self._slave = -1
        self._out.clear()
        self._writing = False

    def _ready(self, revents: int) -> None:
        if revents & EPOLLOUT:
            self._flush_out()
        if not revents & EPOLLIN or self._master < 0:
            return
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: nobody has the slave open (cannot happen: we hold it)
            log.debug("modem %s: read: %s", self.path, exc)
            return
        self._from_host(data)

    def _send(self, data: bytes) -> None:
        """To the host; dropped beyond OUT_LIMIT (a host that does not read)."""
        if self._master < 0:
            return
        room = OUT_LIMIT - len(self._out)
        if room <= 0:
            return
        self._out += data[:room]
        self._flush_out()

    def inject(self, data: bytes) -> None:
        """Send ``data`` to the host as it is (tests: garbage, bursts, cut DLE codes)."""
        if self._master >= 0:
            self._out += data
            self._flush_out()

    def _flush_out(self) -> None:
        while self._out:
            try:
                n = os.write(self._master, self._out[:65536])
            except BlockingIOError:
                break
            except OSError as exc:
                log.debug("modem %s: write: %s", self.path, exc)
                self._out.clear()
                break
            del self._out[:n]
        want = bool(self._out)
        if want != self._writing:
            self._writing = want
            self.engine.modify_fd(self._master, EPOLLIN | (EPOLLOUT if want else 0))

    def _result(self, text: str) -> None:
        self._send(f"\r\n{text}\r\n".encode())

    # ------------------------------------------------------------------ state
    def _reset(self) -> None:
        self.echo = True
        self.fclass = "0"
        self.vsm = 1
        self.vcid = 0
        self.silence_s = 5.0
        self.s7 = 50.0
        self.mode = "command"  # command, tx, rx, duplex
        self.off_hook = False
        self.ringing = False
        self._cmd = bytearray()
        self._dle_in = DleReader()
        self._tx = bytearray()
        self._tx_ending = False
        self._underrun_reported = True
        self._dialling: str | None = None  # what an ATD waits for
        self._silent_frames = 0
        self._silence_reported = False
        self._dtmf: DtmfDetector | None = None
        self._progress: ProgressDetector | None = None
        for timer in getattr(self, "_timers", ()):
            timer.cancel()
        self._timers = []

    @property
    def format(self) -> str:
        return VOICE_FORMATS[self.vsm][1]

    def _later(self, seconds: float, action: Any, *args: Any) -> None:
        self._timers = [t for t in self._timers if not t.cancelled]
        self._timers.append(self.engine.call_later(seconds, action, *args))

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers = []

    # ------------------------------------------------------------------ from the host
    def _from_host(self, data: bytes) -> None:
        if self.mode == "command":
            self._command_bytes(data)
            return
        for item in self._dle_in.feed(data):
            if isinstance(item, bytes):
                if self.mode in ("tx", "duplex") and not self._tx_ending:
                    room = TX_BUFFER - len(self._tx)
                    self._tx += item[:max(0, room)]
                continue
            if item == ETX and self.mode in ("tx", "duplex"):
                self._tx_ending = True  # played out, then OK (see _next_tx_frame)
            elif item == CAN:
                self._tx.clear()
            elif item == ord("!") and self.mode == "rx":
                self._end_voice()
            elif chr(item) in self.vtr_stop_codes and self.mode == "duplex":
                self._end_voice()
            # anything else is ignored, as the chip does

    def _command_bytes(self, data: bytes) -> None:
        for byte in data:
            if self._dialling is not None:  # any character aborts dialling
                self._abort_dial()
                continue
            if self.echo and self.fault != "mute":
                self._send(bytes((byte,)))
            if byte in (0x0D, 0x0A):
                if byte == 0x0D:
                    line = self._cmd.decode("latin-1").strip()
                    self._cmd.clear()
                    if line:
                        self._command(line)
                continue
            if byte in (0x08, 0x7F):
                del self._cmd[-1:]
            elif len(self._cmd) < 256:  # the chip's command buffer; the rest is lost
                self._cmd.append(byte)

    def _command(self, line: str) -> None:
        self.commands.append(line)
        if self.fault == "mute":
            return
        if self.fault == "error":
            self._result("ERROR")
            return
        upper = line.upper()
        if not upper.startswith("AT"):
            return  # not a command: the chip ignores it
        if self._dialling is not None:
            self._abort_dial()
        body = upper[2:]
        if body.startswith("+"):
            result = self._extended(body[1:])
        else:
            result = self._basic(body)
        if result:
            self._result(result)

    def _basic(self, body: str) -> str:
        if body.startswith("D"):
            return self._dial(body[1:])
        for command, value in re.findall(r"(&[A-Z]|S\d+[=?]|[A-Z])(\d*)", body):
            if command == "E":
                self.echo = value != "0"
            elif command in ("Z", "&F"):
                self._hang_up_line()
                self._reset()
            elif command == "H":
                self._hang_up_line()
            elif command == "A":
                return self._answer("VCON")
            elif command == "I":
                if value in ("", "0", "3"):
                    self._send(f"\r\n{CHIP}\r\n".encode())
            elif command == "S7=":
                self.s7 = float(value or 0)
            elif command == "V" and value == "0":
                return "ERROR"  # numeric results are not emulated
            elif command not in ("V", "Q", "X", "L", "M", "&C", "&D", "&K") \
                    and not command.startswith("S"):
                return "ERROR"
        return "OK"

    def _extended(self, body: str) -> str:
        name, _, arg = body.partition("=")
        query = body.endswith("?") and not arg
        if query:
            name = name[:-1]
        if name == "FCLASS":
            if arg == "?":
                self._send(b"\r\n0,1,1.0,2,8\r\n")
            elif query:
                self._send(f"\r\n{self.fclass}\r\n".encode())
            elif arg in ("0", "1", "1.0", "2", "8"):
                self.fclass = arg
            else:
                return "ERROR"
            return "OK"
        if name == "VCID":
            if query:
                self._send(f"\r\n{self.vcid}\r\n".encode())
            elif arg == "?":
                self._send(b"\r\n(0-2)\r\n")
            elif arg in ("0", "1", "2"):
                self.vcid = int(arg)
            else:
                return "ERROR"
            return "OK"
        if self.fclass != "8":
            return "ERROR"
        if name == "VSM":
            if arg == "?":
                for number, (label, _fmt) in VOICE_FORMATS.items():
                    self._send(f'\r\n{number},"{label}",8,0,(8000),(0),(0)'.encode())
                self._send(b"\r\n")
            elif query:
                self._send(f"\r\n{self.vsm},8000,0,0\r\n".encode())
            else:
                fields = [f.strip() for f in arg.split(",")]
                if not fields[0].isdigit() or int(fields[0]) not in VOICE_FORMATS \
                        or (len(fields) > 1 and fields[1] not in ("", "8000")):
                    return "ERROR"
                self.vsm = int(fields[0])
            return "OK"
        if name == "VLS":
            if arg == "?":
                self._send(b"\r\n0,1,4,5\r\n")
            elif query:
                self._send(f"\r\n{1 if self.off_hook else 0}\r\n".encode())
            elif arg == "0":
                self._hang_up_line()
            elif arg == "1":
                return self._answer("OK")
            else:
                return "ERROR"
            return "OK"
        if name == "VSD":
            fields = arg.split(",")
            if len(fields) == 2 and all(f.isdigit() for f in fields):
                self.silence_s = int(fields[1]) / 10
                return "OK"
            return "ERROR"
        if name in ("VGT", "VGR", "VIT", "VNH", "VRA", "VRN", "IFC", "VDR", "VDT"):
            return "OK"  # gains, timers, flow control: accepted, not modelled
        if name == "VTS":
            digits = re.sub(r"[^0-9*#A-D]", "", arg.split("[")[0])
            if not self.off_hook or not digits:
                return "ERROR"
            self.line.play_samples(dtmf_samples(digits))
            return "OK"
        if name in ("VTX", "VRX", "VTR"):
            if not self.off_hook:
                return "ERROR"
            self._start_voice({"VTX": "tx", "VRX": "rx", "VTR": "duplex"}[name])
            return ""
        return "ERROR"

    # ------------------------------------------------------------------ voice data
    def _start_voice(self, mode: str) -> None:
        self.mode = mode
        self._dle_in.reset()
        self._tx.clear()
        self._tx_ending = False
        self._underrun_reported = True
        self._silent_frames = 0
        self._silence_reported = False
        self._dtmf = DtmfDetector(on_start=self._dtmf_started)
        self._progress = ProgressDetector("us", ("busy", "congestion", "dialtone"))
        self._result("CONNECT")

    def _end_voice(self) -> None:
        """Back to command mode: DLE ETX, then OK."""
        self.mode = "command"
        self._tx.clear()
        self._tx_ending = False
        self._dtmf = self._progress = None
        self._send(b"\x10\x03")
        self._result("OK")

    def _event(self, code: str) -> None:
        if self.mode in ("rx", "duplex"):
            self._send(bytes((DLE, ord(code))))

    def _dtmf_started(self, digit: str, _sample: int) -> None:
        self._event(digit)

    def _next_tx_frame(self, silence: bytes) -> bytes:
        if self.mode not in ("tx", "duplex"):
            return silence
        tx = self._tx
        if len(tx) >= FRAME:
            frame = bytes(tx[:FRAME])
            del tx[:FRAME]
            self._underrun_reported = False
        elif self._tx_ending:
            frame = bytes(tx) + silence[len(tx):]
            tx.clear()
            if self.mode == "tx":
                self.engine.call_soon(self._end_tx)
            else:
                self.engine.call_soon(self._end_voice)
            self._tx_ending = False
            return frame.translate(self._to_line) if self._to_line else frame
        else:
            if not self._underrun_reported:
                self._underrun_reported = True
                self._event("u")
            return silence
        table = self._to_line
        return frame.translate(table) if table else frame

    def _end_tx(self) -> None:
        if self.mode == "tx":
            self.mode = "command"
            self._result("OK")

    @property
    def _to_line(self) -> bytes | None:
        return converter(self.format, self.line.law)

    def heard(self, block: bytes) -> None:
        """A block of the line's audio (line law) reached the modem's ADC."""
        if self._dialling == "progress" and self._progress is not None:
            for tone in self._progress.feed_law(block, self.line.law):
                self._progress_heard(tone.kind)
        if self.mode not in ("rx", "duplex"):
            return
        samples = g711.codec(self.line.law).decode(block)
        if self._dtmf is not None:
            self._dtmf.feed(samples)
        if self._progress is not None:
            for tone in self._progress.feed(samples):
                if tone.kind in ("busy", "congestion"):
                    self._event("b")
                elif tone.kind == "dialtone":
                    self._event("d")
        loud = max((abs(s) for s in samples), default=0) > 300
        self._silent_frames = 0 if loud else self._silent_frames + 1
        if loud:
            self._silence_reported = False
        elif not self._silence_reported and self._silent_frames * 0.02 >= self.silence_s:
            self._silence_reported = True
            self._event("s")
        table = converter(self.line.law, self.format)
        self._send(shield(block.translate(table) if table else block))

    # ------------------------------------------------------------------ the line
    def ring(self) -> None:
        """The line rings (each ring's start)."""
        if self.off_hook:
            return
        self.ringing = True
        self._result("RING")

    def ringing_stopped(self) -> None:
        self.ringing = False

    def caller_id(self, caller: CallerId) -> None:
        """Caller ID the modem decoded between rings."""
        if not self.vcid or self.off_hook:
            return
        lines = []
        if caller.month is not None:
            lines += [f"DATE = {caller.month:02d}{caller.day:02d}",
                      f"TIME = {caller.hour:02d}{caller.minute:02d}"]
        absent = {Absence.PRIVATE: "P", Absence.UNAVAILABLE: "O"}
        number = caller.number or absent.get(caller.number_absence, "")  # type: ignore[arg-type]
        name = caller.name or absent.get(caller.name_absence, "")  # type: ignore[arg-type]
        if number:
            lines.append(f"NMBR = {number}")
        if name:
            lines.append(f"NAME = {name}")
        self._send(("\r\n" + "\r\n".join(lines) + "\r\n").encode())

    def loop_dropped(self) -> None:
        """The far end dropped the line (battery gone, or the port hung up)."""
        if not self.off_hook:
            return
        if self._dialling is not None:
            self._dial_result("NO CARRIER", hang_up=True)
            return
        self._event("l")

    def answered(self) -> None:
        """Exchange mode: the port we rang answered."""
        if self._dialling is not None:
            self._dial_result("VCON")

    def _answer(self, result: str) -> str:
        self.off_hook = True
        self.ringing = False
        self.line.go_off_hook()
        self.line.start_tx(_TxSource(self, self.line.law))
        return result

    def _hang_up_line(self) -> None:
        self._dialling = None
        self._cancel_timers()
        if self.mode != "command":
            self.mode = "command"
        if self.off_hook:
            self.off_hook = False
            self.line.stop_tx()
            self.line.go_on_hook()

    # ------------------------------------------------------------------ dialling
    def _dial(self, rest: str) -> str:
        number = re.sub(r"[^0-9*#A-D]", "", rest.lstrip("TP"))
        if not number:
            return "ERROR"
        if self.off_hook:
            return "ERROR"
        self.off_hook = True
        self._dialling = "dialtone"
        self.line.dial(number)
        return ""

    def dial_tone(self, present: bool) -> None:
        """The line says whether dial tone came (phone mode: heard; exchange: not dead)."""
        if self._dialling != "dialtone":
            return
        if not present:
            self._dial_result("NO DIALTONE", hang_up=True)

    def dialled(self) -> None:
        """The digits are out: listen for progress (phone mode)."""
        if self._dialling not in ("dialtone", "digits"):
            return
        self._dialling = "progress"
        self._progress = ProgressDetector("us", ("busy", "congestion", "ringback"))
        self._ringback_seen = False
        self._later(RINGBACK_GONE, self._no_ringback)
        self._later(self.s7, self._dial_result, "NO ANSWER", True)

    def _progress_heard(self, kind: str) -> None:
        if kind in ("busy", "congestion"):
            self._dial_result("BUSY", hang_up=True)
        elif kind == "ringback":
            self._ringback_seen = True
            assert self._progress is not None
            self._progress.reset()
            for timer in self._timers[:1]:
                timer.cancel()
            self._timers[:1] = [self.engine.call_later(RINGBACK_GONE, self._no_ringback)]

    def _no_ringback(self) -> None:
        if self._dialling == "progress":
            self._dial_result("VCON")

    def dial_timeout(self, seconds: float) -> None:
        self._later(seconds, self._dial_result, "NO ANSWER", True)

    def _dial_result(self, result: str, hang_up: bool = False) -> None:
        if self._dialling is None:
            return
        self._dialling = None
        self._progress = None
        self._cancel_timers()
        if hang_up:
            self._hang_up_line()
        else:
            self.line.start_tx(_TxSource(self, self.line.law))
        self._result(result)

    def _abort_dial(self) -> None:
        """A character from the host while dialling aborts it (as on every modem)."""
        self._dial_result("NO CARRIER", hang_up=True)


# ---------------------------------------------------------------------- the line ends
class _ModemAudio:
    """What the modem sends down its line, through the line end's own player."""

    _player: Any
    play: Any

    def start_tx(self, source: FrameSource) -> None:
        self._player.play(source)

    def stop_tx(self) -> None:
        self._player.stop()

    def play_samples(self, samples: Any) -> None:
        self.play(samples)


class PhoneLine(_ModemAudio, Phone):
    """The modem as the phone on a line (the fxsks end of an FXS port's or an exchange's
    line)."""

    modem: EmulatedModem

    def __init__(self, engine: Engine, channo: int, **kwargs: Any) -> None:
        super().__init__(engine, channo, **kwargs)
        self._known_callers = 0
        self._dial_timer: TimerHandle | None = None
        self._dial_digits = ""
        self._tone_detector: ProgressDetector | None = None

    def _on_event(self, code: int) -> None:
        was_off_hook = self.off_hook
        super()._on_event(code)
        if code == abi.DAHDI_EVENT_RINGBEGIN and not self.off_hook:
            self.modem.ring()
        elif code == abi.DAHDI_EVENT_RINGEROFF:
            self.modem.ringing_stopped()
        elif code == abi.DAHDI_EVENT_ONHOOK and was_off_hook:
            self.modem.loop_dropped()
        elif code == abi.DAHDI_EVENT_DIALCOMPLETE and self._dial_digits == "":
            self.modem.dialled()

    def _heard(self, block: bytes) -> None:
        super()._heard(block)
        while self._known_callers < len(self.callers):
            self.modem.caller_id(self.callers[self._known_callers])
            self._known_callers += 1
        detector = self._tone_detector
        if detector is not None:
            for tone in detector.feed_law(block, self.law):
                if tone.kind == "dialtone":
                    self._got_dial_tone()
        if self.off_hook:
            self.modem.heard(block)

    def go_off_hook(self) -> None:
        self.answer()

    def go_on_hook(self) -> None:
        self._tone_detector = None
        self._dial_digits = ""
        if self._dial_timer is not None:
            self._dial_timer.cancel()
            self._dial_timer = None
        if self.channel is not None:
            self.hang_up()

    def dial(self, number: str) -> None:
        self.lift()
        self._dial_digits = number
        self._tone_detector = ProgressDetector("us", ("dialtone",))
        self._dial_timer = self.engine.call_later(DIAL_TONE_WAIT, self._no_dial_tone)

    def _no_dial_tone(self) -> None:
        self._dial_timer = None
        self._tone_detector = None
        self.modem.dial_tone(False)

    def _got_dial_tone(self) -> None:
        self._tone_detector = None
        if self._dial_timer is not None:
            self._dial_timer.cancel()
            self._dial_timer = None
        digits, self._dial_digits = self._dial_digits, ""
        self.modem.dial_tone(True)
        self.modem._dialling = "digits"
        super().dial(digits)  # the kernel sounds them; DIALCOMPLETE follows


class ExchangeLine(_ModemAudio, Exchange):
    """The modem behind the exchange end (fxoks) of the line into an FXO port: its calls
    ring that port."""

    modem: EmulatedModem

    def _on_event(self, code: int) -> None:
        state = self.state
        super()._on_event(code)
        if code == abi.DAHDI_EVENT_RINGOFFHOOK and state == "ringing":
            self.modem.answered()
        elif code == abi.DAHDI_EVENT_ONHOOK and state == "connected":
            self.modem.loop_dropped()

    def _heard(self, block: bytes) -> None:
        super()._heard(block)
        if self.modem.off_hook and self.state == "connected":
            self.modem.heard(block)

    def go_off_hook(self) -> None:
        """ATA/AT+VLS=1 with nothing to answer: the modem's own line is just taken."""

    def go_on_hook(self) -> None:
        if self.state == "ringing":
            self.give_up()
        elif self.state == "connected":
            self.hang_up()

    def dial(self, number: str) -> None:
        modem = self.modem
        if self.dead:
            modem.dial_tone(False)
            return
        if self.state != "idle":  # the port's line is in use: busy
            modem.engine.call_soon(modem._dial_result, "BUSY", True)
            return
        modem._dialling = "progress"
        self.ring(CallerId(number=modem.number))
        modem.dial_timeout(modem.s7)


# ---------------------------------------------------------------------- the command
class _Caller:
    """The simulated exchange's caller in :func:`main`: rings the modem with caller ID,
    notes what it hears once answered, hangs up after ``hold`` seconds if the modem has
    not, and prints one line per call."""

    def __init__(self, engine: Engine, exchange: Exchange, caller: CallerId, *,
                 every: float, hold: float, calls: int, script: Any = None) -> None:
        self.engine = engine
        #: what the caller does once answered (a rendered CallerScript), or nothing
        self.script = script
        self.exchange = exchange
        self.caller = caller
        self.every, self.hold, self.calls = every, hold, calls
        self.placed = 0
        self._rang_at = 0.0
        self._answered_at: float | None = None
        self._mark = 0
        self._hold_timer: TimerHandle | None = None

    def start(self, delay: float) -> None:
        self.engine.call_later(max(delay, 2.1), self._ring)  # no rings for 2 s at first
        self._watch()

    def _ring(self) -> None:
        if self.calls and self.placed >= self.calls:
            return
        if self.exchange.state == "idle":
            self.placed += 1
            self._rang_at = self.engine.time()
            self._answered_at = None
            self.exchange.ring(self.caller)
        if self.every > 0:
            self.engine.call_later(self.every, self._ring)

    def _watch(self) -> None:
        exchange = self.exchange
        if exchange.state == "connected" and self._answered_at is None:
            self._answered_at = self.engine.time()
            self._mark = len(exchange.heard)
            self._hold_timer = self.engine.call_later(self.hold, self._hang_up)
            script = self.script
            if script is not None:
                if script.audio:
                    exchange._player.play(BufferSource(script.audio, exchange.law))
                if script.hangup_at is not None:
                    self._hold_timer.cancel()
                    self._hold_timer = self.engine.call_later(script.hangup_at,
                                                              self._hang_up)
        elif exchange.state == "idle" and self._answered_at is not None:
            self._report("the modem")
        self.engine.call_later(0.05, self._watch)

    def _hang_up(self) -> None:
        self._hold_timer = None
        if self.exchange.state == "connected":
            self._report("the caller")
            self.exchange.hang_up()

    def _report(self, by: str) -> None:
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        assert self._answered_at is not None
        codec = g711.codec(self.exchange.law)
        heard = codec.decode(bytes(self.exchange.heard[self._mark:]))
        loud = sum(1 for at in range(0, len(heard) - FRAME + 1, FRAME)
                   if max(abs(x) for x in heard[at:at + FRAME]) > 300)
        print(f"call {self.placed}: answered after {self._answered_at - self._rang_at:.1f} s;"
              f" heard {loud * FRAME / 8000:.2f} s of sound in "
              f"{len(heard) / 8000:.2f} s; cleared by {by}", flush=True)
        self._answered_at = None


def _app_script(path: str) -> str:
    """An application file's ``__uas_sim_caller__`` (read, not run)."""
    import ast
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__uas_sim_caller__"
                for t in node.targets):
            return str(ast.literal_eval(node.value))
    raise SystemExit(f"{path} has no __uas_sim_caller__; expected a caller script there")


def main(argv: list[str] | None = None) -> int:
    """A modem in phone mode on a simulated line, called by a simulated exchange with
    caller ID every ``--every`` seconds (0: once); each call is hung up by the caller
    ``--hold`` seconds after the modem answers, if the modem has not hung up. Prints the
    pty's path, then a line per answered call (how much sound the caller heard), and runs
    until interrupted or ``--calls`` calls were placed and have ended."""
    from uascall.sim.analog_farend import analog_loop_conf
    from uascall.sim.kernel import SimKernel

    parser = argparse.ArgumentParser(prog="python -m uascall.modem.emulator",
                                     description=main.__doc__)
    parser.add_argument("--link", help="keep a symlink to the pty here (e.g. /tmp/ttyMODEM)")
    parser.add_argument("--every", type=float, default=20.0, metavar="SECONDS")
    parser.add_argument("--hold", type=float, default=15.0, metavar="SECONDS")
    parser.add_argument("--calls", type=int, default=0, help="calls in all (0: no limit)")
    parser.add_argument("--delay", type=float, default=2.5, metavar="SECONDS",
                        help="before the first call (at least 2.1: a line just opened "
                        "reports no rings for 2 s)")
    parser.add_argument("--caller", default="5552000")
    parser.add_argument("--name", default="Sim Caller")
    parser.add_argument("--script", help="what the caller does once answered, as "
                        "uascall.sim.caller has it (e.g. 'wait 2; press 1; say Hello.; "
                        "wait 3; hangup'); 'APP.py' takes the application's "
                        "__uas_sim_caller__")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    script = None
    if args.script:
        from uascall.sim.caller import CallerScript
        text = args.script
        if text.endswith(".py"):
            text = _app_script(text)
        script = CallerScript.parse(text).render("ulaw")  # the loop's law
    with Engine() as engine:
        kernel = SimKernel(engine)

        def setup() -> tuple[EmulatedModem, _Caller]:
            kernel.add_loop("ANALOG", channels=1)
            kernel.configure(analog_loop_conf(1, dynamic=False))
            clock = MediaClock(engine)
            exchange = Exchange(engine, 1, clock=clock, io=kernel)
            exchange.start()
            modem = EmulatedModem(engine, PhoneLine(engine, 2, clock=clock, io=kernel),
                                  link=args.link)
            modem.start()
            caller = _Caller(engine, exchange, CallerId(number=args.caller, name=args.name),
                             every=args.every, hold=args.hold, calls=args.calls,
                             script=script)
            caller.start(args.delay)
            return modem, caller

        modem, caller = engine.run(setup)
        print(modem.path, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while engine.running:
                time.sleep(0.2)
                if args.calls and caller.placed >= args.calls \
                        and caller.exchange.state == "idle" \
                        and caller._answered_at is None:
                    break
        engine.run(modem.stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
