"""Line checks with a voice modem at the far end: what an installer runs on a board's
analog port (``uascall selftest --port N --modem DEV``), what the board rig asserts
(``tests/hw/board``), and what CI runs against the emulated modem.

:func:`check_fxs` — our FXS port rings the modem on its line: it rings with caller ID,
the modem answers, a 1004 Hz test tone goes each way and is measured at the other end,
DTMF each way, the port hangs up (the modem hears the loop drop), then a second call that
the modem hangs up. :func:`check_fxo` — the modem calls in through its exchange, which
rings our FXO port: offered with the modem's line number as caller ID (where the line
sends it), answered, a tone each way, the modem hangs up.

Each step is a :class:`Step` with a clear pass/fail and what was seen; a step that fails
ends the check (the rest depends on it) after the calls are cleared. Channels are driven
with the channel API from the calling thread (not the engine's).
"""

from __future__ import annotations

import math
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uascall.backend import Backend
from uascall.channel import State, UASCallChannel
from uascall.dahdi.analog import AnalogSettings
from uascall.dahdi.backend import DahdiBackend
from uascall.dahdi.config import DEFAULT_PATH, SystemConf
from uascall.dahdi.device import DeviceIO
from uascall.engine import Engine
from uascall.errors import ArgumentError
from uascall.media.player import MediaClock
from uascall.media.tones import ToneManager, reference_rms
from uascall.media.wav import read_wav
from uascall.modem.backend import ModemBackend

TEST_TONE = "TEST_1004"
TEST_HZ = 1004
#: what a tone sent at -10 dBm0 must at least measure at the far end: the line and two
#: codecs may lose a few dB, a modem's 8-bit linear format some more
MIN_LEVEL_DBM0 = -25.0
CALLER_NUMBER = "5551234"


@dataclass
class Step:
    name: str
    passed: bool
    detail: str = ""

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}" + (
            f": {self.detail}" if self.detail else "")


class _Failed(Exception):
    pass


class LineCheck:
    """Two backends on one engine: ``port_backend`` (dahdi) whose ``route`` reaches the
    port under test, ``modem_backend`` whose ``modem_route`` reaches the modem."""

    def __init__(self, engine: Engine, port_backend: Backend, modem_backend: Backend, *,
                 route: str, modem_route: str, patience: float = 10.0,
                 media_dir: str | None = None) -> None:
        self.engine = engine
        self.port_backend = port_backend
        self.modem_backend = modem_backend
        self.route = route
        self.modem_route = modem_route
        self.patience = patience
        self.steps: list[Step] = []
        self._media = media_dir or tempfile.mkdtemp(prefix="uascall-selftest-")
        self.clock = MediaClock(engine)
        self.tones = ToneManager()
        self.tones.create_tone([({"frequency": TEST_HZ, "amplitude": 10}, {},
                                 {"duration": 1000})], TEST_TONE)
        self._offered: dict[str, list[UASCallChannel]] = {"port": [], "modem": []}
        self._lock = threading.Lock()
        port_backend.on_incoming = self._taker("port")
        modem_backend.on_incoming = self._taker("modem")

    def _taker(self, side: str) -> Callable[[Any], None]:
        def take(leg: Any) -> None:
            channel = UASCallChannel(self.engine, leg, media_clock=self.clock,
                                     media_dir=self._media)
            with self._lock:
                self._offered[side].append(channel)
        return take

    def _channel(self, backend: Backend, route: str) -> UASCallChannel:
        channel = UASCallChannel(self.engine, backend=backend, route=route,
                                 media_clock=self.clock, media_dir=self._media)
        channel.create_tone_player(self.tones)
        return channel

    # ------------------------------------------------------------------ steps
    def _step(self, name: str, passed: bool, detail: str = "") -> None:
        self.steps.append(Step(name, passed, detail))
        if not passed:
            raise _Failed(name)

    def _incoming(self, side: str, before: int) -> UASCallChannel | None:
        if not self.engine.wait_until(lambda: len(self._offered[side]) > before,
                                      self.patience):
            return None
        channel = self._offered[side][-1]
        channel.create_tone_player(self.tones)
        return channel

    def _call(self, caller: UASCallChannel, number: str, side: str, call_from: str = ""
              ) -> tuple[dict, UASCallChannel | None]:
        before = len(self._offered[side])
        result: dict = {}

        def body() -> None:
            try:
                result["state"] = caller.call(number, call_from=call_from,
                                              seconds_timeout=4 * self.patience)
            except Exception as exc:  # reported as the step's detail
                result["error"] = exc

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        result["thread"] = thread
        return result, self._incoming(side, before)

    def _tone(self, name: str, player: UASCallChannel, listener: UASCallChannel) -> None:
        level: float | None = None
        recorded = Path(self._media) / f"{name.replace(' ', '_')}.wav"
        done = threading.Event()

        def record() -> None:
            try:
                listener.FileRecorder.record(recorded.name, milliseconds_max_silence=0,
                                             seconds_timeout=1.6)
            finally:
                done.set()

        threading.Thread(target=record, daemon=True).start()
        self.engine.sleep(0.2)
        player.TonePlayer.play(TEST_TONE)
        done.wait(3 * self.patience)
        if recorded.exists():
            samples = list(read_wav(recorded).samples)
            middle = samples[len(samples) // 4: 3 * len(samples) // 4]
            level = _level_dbm0(middle, TEST_HZ)
        self._step(name, level is not None and level > MIN_LEVEL_DBM0,
                   f"{TEST_HZ} Hz at {level:.1f} dBm0 (sent at -10)" if level is not None
                   else "nothing recorded")

    def _keys(self, name: str, sender: UASCallChannel, receiver: UASCallChannel,
              keys: str) -> None:
        receiver.DTMFDetector.clear_digits()
        sender.DTMFPlayer.play(keys)
        got = receiver.DTMFDetector.get_digits(count=len(keys),
                                               seconds_predigits_timeout=self.patience,
                                               seconds_interdigit_timeout=self.patience)
        self._step(name, got == keys, f"sent {keys!r}, heard {got!r}")

    def _hang_up(self, name: str, who: UASCallChannel, other: UASCallChannel) -> None:
        self.engine.sleep(1.0)  # a line just answered ignores the far end's hook a moment
        who.hang_up()
        state = other.wait_for_idle(self.patience)
        self._step(name, state is State.IDLE,
                   f"the other end {state.name}, cause {other.cause().name}")

    # ------------------------------------------------------------------ the checks
    def check_fxs(self) -> list[Step]:
        """Our FXS port rings the modem (see the module docstring)."""
        try:
            for by_port in (True, False):
                if not by_port:  # the lines settle: on hook, rings ignored for 2 s
                    self.engine.wait_until(lambda: self.modem_backend.ready, self.patience)
                    self.engine.sleep(2.5)
                port = self._channel(self.port_backend, self.route)
                calling, modem = self._call(port, "modem", "modem", CALLER_NUMBER)
                deadline = self.engine.time() + self.patience
                while modem is None and "state" in calling and \
                        self.engine.time() < deadline:  # the port was not free yet
                    self.engine.sleep(0.5)
                    port = self._channel(self.port_backend, self.route)
                    calling, modem = self._call(port, "modem", "modem", CALLER_NUMBER)
                self._step("the modem rings", modem is not None,
                           "" if modem is None else "a call offered by the modem")
                assert modem is not None
                if by_port:
                    got = modem.Details.call_from
                    self._step("caller ID reaches the modem", got == CALLER_NUMBER,
                               f"sent {CALLER_NUMBER}, the modem read {got!r}")
                modem.answer()
                calling["thread"].join(self.patience)
                self._step("the modem answers", calling.get("state") is State.ANSWERED,
                           f"the port's call {calling.get('state') or calling.get('error')}")
                if by_port:
                    self._tone("tone port -> modem", port, modem)
                    self._tone("tone modem -> port", modem, port)
                    self._keys("DTMF port -> modem", port, modem, "1590*#")
                    self._keys("DTMF modem -> port", modem, port, "2468")
                    self._hang_up("the port hangs up, the modem hears it", port, modem)
                else:
                    self._hang_up("the modem hangs up, the port hears it", modem, port)
        except _Failed:
            self._clear()
        return self.steps

    def check_fxo(self, number: str) -> list[Step]:
        """The modem calls ``number`` through its exchange, which rings our FXO port."""
        try:
            modem = self._channel(self.modem_backend, self.modem_route)
            calling, port = self._call(modem, number, "port")
            self._step("the FXO port rings", port is not None,
                       "" if port is None else f"caller ID {port.Details.call_from!r}")
            assert port is not None
            port.answer()
            calling["thread"].join(self.patience)
            self._step("the port answers, the modem connects",
                       calling.get("state") is State.ANSWERED,
                       f"the modem's call {calling.get('state') or calling.get('error')}")
            self._tone("tone port -> modem", port, modem)
            self._tone("tone modem -> port", modem, port)
            self._hang_up("the modem hangs up, the port hears it", modem, port)
        except _Failed:
            self._clear()
        return self.steps

    def _clear(self) -> None:
        for channels in self._offered.values():
            for channel in channels:
                if channel.state() is not State.IDLE:
                    channel.hang_up()


def _level_dbm0(samples: list[int], freq: float) -> float:
    """The level of the component at ``freq`` in ``samples`` (8 kHz, 16-bit; one DFT
    bin), in dBm0 (the recording's A-law reference)."""
    if not samples:
        return -math.inf
    w = 2 * math.pi * freq / 8000
    re = sum(s * math.cos(w * i) for i, s in enumerate(samples))
    im = sum(s * math.sin(w * i) for i, s in enumerate(samples))
    amplitude = 2 * math.hypot(re, im) / len(samples)
    if amplitude <= 0:
        return -math.inf
    return 20 * math.log10(amplitude / math.sqrt(2) / reference_rms("alaw"))


def run_line_check(engine: Engine, channel: int, modem: str, *, number: str = "",
                   system_conf: str = DEFAULT_PATH, patience: float = 10.0,
                   io: DeviceIO | None = None, media_dir: str | None = None) -> list[Step]:
    """Check analog port ``channel`` of ``system_conf`` with the voice modem ``modem`` on
    its line: an FXS port (``fxoks``) rings the modem; on an FXO port (``fxsks``) the
    modem dials ``number`` to reach it. Builds the two backends (that port only, that
    modem only) on ``engine`` (real time; call from another thread than the engine's),
    on ``io`` instead of ``/dev/dahdi`` if given. Raises ArgumentError for a channel that
    is not an analog port, or an FXO port without ``number``."""
    conf = SystemConf.read(system_conf)
    kind = {"fxoks": "fxs", "fxsks": "fxo"}.get(conf.signalling.get(channel, ""))
    if kind is None:
        raise ArgumentError(f"{system_conf}: channel {channel} is "
                            f"{conf.signalling.get(channel, 'not configured')}; expected "
                            "fxoks (an FXS port) or fxsks (an FXO port)")
    if kind == "fxo" and not number:
        raise ArgumentError(f"channel {channel} is an FXO port: the modem must dial its "
                            "line; expected the number to dial (--number)")
    dahdi = DahdiBackend(engine, system_conf=conf, ports=[channel],
                         analog=AnalogSettings(), io=io)
    modems = ModemBackend(engine, modems=[modem])
    check = LineCheck(engine, dahdi, modems, route=f"{kind}:{channel}",
                      modem_route=f"modem:{modem}", patience=patience, media_dir=media_dir)
    engine.run(dahdi.start)
    try:
        engine.run(modems.start)
        if not engine.wait_until(lambda: modems.ready, 3 * patience):
            voice_modem = modems.modems[0]
            return [Step("the modem initialises", False,
                         f"{voice_modem.state}: {voice_modem.last_error or 'no answer'}")]
        engine.sleep(2.1)  # a line just opened reports no rings for 2 s
        return check.check_fxs() if kind == "fxs" else check.check_fxo(number)
    finally:
        engine.run(modems.stop)
        engine.run(dahdi.stop)


def selftest_command(port: int, modem: str, *, number: str = "",
                     system_conf: str = DEFAULT_PATH, patience: float = 10.0) -> int:
    """``uascall selftest --port N --modem DEV [--number NUMBER]``: the line check,
    printed step by step; 0 when every step passed, 1 otherwise."""
    with Engine() as engine:
        steps = run_line_check(engine, port, modem, number=number,
                               system_conf=system_conf, patience=patience)
    print(report(steps), flush=True)
    return 0 if steps and all(step.passed for step in steps) else 1


def report(steps: list[Step]) -> str:
    """The steps, one a line, and a verdict."""
    lines = [str(step) for step in steps]
    lines.append("PASS" if steps and all(s.passed for s in steps) else "FAIL")
    return "\n".join(lines)
