"""The modem backend's AT dialogue against scripted modems, in virtual time: no pty, no
line. Each test's modem differs from uascall's emulated CX93001 in one way that real
modems do (numeric result codes, a +VIT timer, caller ID before the first ring...), as an
outside V.253 emulator found; :class:`ScriptedModem` answers VoiceModem's commands from a
table and notes what it was sent."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from uascall.backend import Cause, LegCleared
from uascall.engine import Engine, VirtualClock
from uascall.errors import Error
from uascall.modem.backend import ModemBackend, ModemLeg, choose_format

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"
ANSWERS: dict[str, bytes] = {
    "ATI3": b"\r\nCX93001-EIS_V0.2002-V92\r\n" + OK,
    "AT+FCLASS=?": b"\r\n0,1,1.0,2,8\r\n" + OK,
    "AT+VSM=?": b'\r\n0,"SIGNED PCM",8,0,(8000),(0),(0)\r\n'
                b'\r\n4,"G.711U",8,0,(8000),(0),(0)\r\n' + OK,
    "AT+VLS=?": b"\r\n0,1,4,5\r\n" + OK,
    "AT+VTR": b"\r\nCONNECT\r\n",
}
NUMERIC = {b"OK": b"0", b"CONNECT": b"1", b"RING": b"2", b"NO CARRIER": b"3",
           b"ERROR": b"4"}
#: how long the scripted modem takes to answer
DELAY = 0.01


class _NoSerial:
    def close(self) -> None:
        pass


class ScriptedModem:
    """A VoiceModem whose device is this script: each command line it sends is answered
    from ``answers`` (a command's bytes, or a callable taking the command), else OK.
    ``numeric``: results are V.250 numeric codes (``0\\r``) until a command sets V1.
    In AT+VTR what it sends is kept; one of ``leaves`` (DLE codes) brings it back to
    commands (DLE ETX, OK)."""

    def __init__(self, engine: Engine, answers: dict[str, bytes | Callable[[str], bytes]]
                 | None = None, *, numeric: bool = False, dialect: str | None = None,
                 leaves: tuple[bytes, ...] = (b"\x10^",)) -> None:
        self.engine = engine
        self.answers: dict[str, bytes | Callable[[str], bytes]] = dict(ANSWERS)
        self.answers.update(answers or {})
        self.numeric = numeric
        self.leaves = leaves
        self.commands: list[str] = []
        self.left_by: list[bytes] = []
        self.voice = False
        self.voice_in = bytearray()
        self._line = bytearray()
        self.offered: list[ModemLeg] = []
        self.backend = ModemBackend(engine, modems=["/dev/ttySCRIPTED"], dialect=dialect)
        self.backend.on_incoming = self.offered.append
        modem = self.modem = self.backend.modems[0]
        modem._send = self._from_host  # type: ignore[method-assign]

        def open_it() -> None:
            modem._serial = _NoSerial()
            modem.state = "init"
            modem._initialise()

        engine.run(open_it)

    def send(self, data: bytes) -> None:
        """The modem sends ``data`` to the host (from the test's thread)."""
        self.engine.run(self.modem._received, data)

    def _stream(self) -> None:
        """In AT+VTR the modem sends 8000 samples a second (mu-law silence here)."""
        if self.voice:
            self.modem._received(b"\xff" * 160)
            self.engine.call_later(0.02, self._stream)

    def answered_call(self, *rings: bytes) -> ModemLeg:
        """The modem rings (``rings``: what it sends, by default two RINGs), the call
        offered is answered; the leg, once in AT+VTR."""
        for ring in rings or (b"\r\nRING\r\n", b"\r\nRING\r\n"):
            self.send(ring)
            self.engine.sleep(0.5)
        assert self.offered, ("no call offered", self.modem.state, self.commands)
        leg = self.offered[-1]
        self.engine.run(leg.answer)
        assert self.engine.wait_until(lambda: self.modem.state == "connected", 2.0), \
            (self.modem.state, self.modem.last_error, self.commands)
        return leg

    def _reply(self, data: bytes) -> None:
        if self.numeric:
            for verbose, code in NUMERIC.items():
                data = data.replace(b"\r\n" + verbose + b"\r\n", code + b"\r")
        self.engine.call_later(DELAY, self.modem._received, data)

    def _from_host(self, data: bytes) -> None:
        if self.voice:
            self.voice_in += data
            for code in self.leaves:
                if code in self.voice_in:
                    self.voice = False
                    self.left_by.append(code)
                    self._reply(b"\x10\x03" + OK)
                    return
            return
        self._line += data
        while b"\r" in self._line:
            line, _, rest = bytes(self._line).partition(b"\r")
            self._line = bytearray(rest)
            at = line.upper().find(b"AT")
            if at < 0:
                continue  # not a command (what the open sends to end a voice state)
            command = line[at:].decode("ascii").upper()
            self.commands.append(command)
            if "V1" in command and not command.startswith("AT+"):
                self.numeric = False
            answer = self.answers.get(command, OK)
            reply = answer(command) if callable(answer) else answer
            if reply.endswith(b"CONNECT\r\n"):
                self.voice = True
                self.voice_in.clear()
                self.engine.call_later(DELAY + 0.02, self._stream)
            if reply:
                self._reply(reply)

    def wait_idle(self, seconds: float = 5.0) -> None:
        assert self.engine.wait_until(lambda: self.modem.idle, seconds), \
            (self.modem.state, self.modem.last_error, self.commands)


@pytest.fixture
def engine():
    with Engine(VirtualClock()) as engine, engine.actor():
        yield engine


def events(leg: ModemLeg) -> list:
    return list(leg._unheard or [])


# --------------------------------------------------------------------------- +VSM
def test_a_16_bit_format_is_not_taken_for_an_8_bit_one():
    """V.253 lists bits per sample after the name: a 16-bit "SIGNED PCM" carries two
    bytes a sample, not our one."""
    pcm16_first = ['0,"SIGNED PCM",16,0,(8000),(0),(0)', '1,"SIGNED PCM",8,0,(8000),(0),(0)']
    assert choose_format(pcm16_first) == (1, "s8")
    linear16 = ['0,"UNSIGNED PCM",16,0,(8000),(0),(0)', '3,"G.711U",16,0,(8000),(0),(0)']
    with pytest.raises(Error, match=r"8 bits per sample"):
        choose_format(linear16)
    # without the field (U.S. Robotics' form), the name decides as before
    assert choose_format(['130,"8-BIT ALAW",(8000)', '129,"16-BIT LINEAR",(8000)']) \
        == (130, "alaw")


# --------------------------------------------------------------------------- V0
def test_a_modem_whose_stored_profile_has_numeric_results_is_made_verbose(engine):
    """ATZ answered ``0\\r`` (V0 in the stored profile) is OK; verbose codes are asked for
    at once, as common drivers do (the tester's modem: "no answer to ATZ in 3 s")."""
    scripted = ScriptedModem(engine, numeric=True)
    scripted.wait_idle()
    assert scripted.commands[:3] == ["ATZ", "ATE0", "ATV1"]
    assert scripted.modem.format == "ulaw" and not scripted.modem.last_error


def test_a_lone_digit_in_the_information_an_ati_or_a_query_gives_is_not_a_result(engine):
    """A numeric code is read where a result is awaited, but not in the lines ATI3 or a
    ``=?`` query answer with: those may be digits."""
    scripted = ScriptedModem(engine, {"ATI3": b"\r\n0\r\n" + OK,
                                      "AT+VLS=?": b"\r\n2\r\n" + OK})
    scripted.wait_idle()
    assert scripted.modem.identity == "0"
    assert scripted.modem.line_relay == 2


# --------------------------------------------------------------------------- +VIT
def test_the_inactivity_timer_is_turned_off_in_voice_mode(engine):
    """A +VIT timer (ZyXEL: 7 s) ends the voice data state when the host sends nothing:
    AT+VIT=0 once in class 8."""
    scripted = ScriptedModem(engine)
    scripted.wait_idle()
    assert "AT+VIT=0" in scripted.commands
    assert scripted.commands.index("AT+VIT=0") > scripted.commands.index("AT+FCLASS=8")
    assert not scripted.modem.inactivity_timer


@pytest.mark.parametrize("vit_answer", [ERROR, OK], ids=["refused", "taken-but-kept"])
def test_a_call_where_nothing_plays_keeps_the_modem_awake_with_silence(engine,
                                                                        vit_answer):
    """AT+VIT=0 answered ERROR is no reason to give up the modem; and as a modem may take
    it and keep its timer all the same (the tester's emulator did), a call where nothing
    is played gets a frame of silence every KEEPALIVE."""
    scripted = ScriptedModem(engine, {"AT+VIT=0": vit_answer})
    scripted.wait_idle()
    assert scripted.modem.inactivity_timer is (vit_answer == ERROR)
    assert not scripted.modem.last_error
    leg = scripted.answered_call()
    engine.sleep(3.0)
    assert 4 * 160 <= len(scripted.voice_in) <= 8 * 160
    assert set(scripted.voice_in) == {0xFF}  # mu-law silence, the modem's format
    assert leg.live and scripted.modem.state == "connected"


# --------------------------------------------------------------------------- AT+VTR's end
def hang_up(scripted: ScriptedModem, leg: ModemLeg) -> None:
    scripted.engine.run(leg.release, Cause.NORMAL)


@pytest.mark.parametrize("dialect", ["conexant", "usr", "zoom", "v253"])
def test_a_modem_that_follows_the_manual_leaves_voice_duplex_on_dle_caret(engine, dialect):
    """Conexant's and USR's AT references: DLE ^ ends AT+VTR (DLE ! is +VRX's receive
    abort). A modem that takes only DLE ^ is back in command state at the first try."""
    scripted = ScriptedModem(engine, dialect=dialect, leaves=(b"\x10^",))
    scripted.wait_idle()
    for _call in range(2):
        hang_up(scripted, scripted.answered_call())
        scripted.wait_idle(0.5)
        assert scripted.left_by[-1] == b"\x10^"
        assert scripted.commands[-1] == "ATH"


@pytest.mark.parametrize("code", [b"\x10!", b"\x03"])
def test_a_modem_that_ignores_dle_caret_is_sent_the_other_stop_codes(engine, code):
    """A modem that keeps streaming after DLE ^ is sent DLE !, then DLE ETX, a second
    apart, before it is given up; the code that worked goes first the next time."""
    leaves = (b"\x10!",) if code == b"\x10!" else (b"\x10\x03",)
    scripted = ScriptedModem(engine, leaves=leaves)
    scripted.wait_idle()
    hang_up(scripted, scripted.answered_call())
    scripted.wait_idle(3.5)
    assert scripted.left_by == [leaves[0]] and not scripted.modem.last_error
    assert scripted.voice_in.startswith(b"\x10^")
    hang_up(scripted, scripted.answered_call())
    scripted.wait_idle(0.5)
    assert scripted.voice_in.startswith(leaves[0]) and b"\x10^" not in scripted.voice_in


def test_a_modem_that_stays_in_voice_duplex_whatever_it_is_sent_is_given_up(engine):
    scripted = ScriptedModem(engine, leaves=())
    scripted.wait_idle()
    leg = scripted.answered_call()
    hang_up(scripted, leg)
    assert engine.wait_until(lambda: scripted.modem.state == "failed", 6.0)
    assert "stayed in AT+VTR after DLE ^, DLE !, DLE ETX" in scripted.modem.last_error


# --------------------------------------------------------------------------- caller ID
EARLY_CALLER_ID = b"\r\nDATE = 1205\r\nTIME = 1403\r\nNMBR = 5551234\r\nNAME = Ann Smith\r\n"
RING = b"\r\nRING\r\n"


def test_caller_id_before_the_first_ring_is_the_calls(engine):
    """UK/ETSI caller ID comes before the first RING: the call is offered with it at
    that ring (it was dropped as 'unexpected' while idle)."""
    scripted = ScriptedModem(engine)
    scripted.wait_idle()
    scripted.send(EARLY_CALLER_ID)
    engine.sleep(0.5)
    scripted.send(RING)
    engine.sleep(0.1)
    assert len(scripted.offered) == 1
    leg = scripted.offered[0]
    assert (leg.call_from, leg.calling_name) == ("5551234", "Ann Smith")
    # and the next call, rung without it, does not inherit it
    engine.sleep(9.0)  # the rings stop: the caller gave up
    scripted.send(RING)
    scripted.send(RING)
    engine.sleep(0.1)
    assert len(scripted.offered) == 2 and scripted.offered[1].call_from == ""


def test_caller_id_with_no_ring_within_10_s_is_forgotten(engine):
    scripted = ScriptedModem(engine)
    scripted.wait_idle()
    scripted.send(EARLY_CALLER_ID)
    engine.sleep(10.5)
    scripted.send(RING)
    engine.sleep(0.5)
    assert not scripted.offered  # no caller ID: offered at the second ring, without it
    scripted.send(RING)
    engine.sleep(0.1)
    assert len(scripted.offered) == 1 and scripted.offered[0].call_from == ""


# --------------------------------------------------------------------------- failed answer
@pytest.mark.parametrize("failing", ["AT+VLS=1", "AT+VTR"])
def test_a_call_whose_answer_failed_is_not_offered_again_while_it_rings_on(engine,
                                                                           failing):
    """AT+VLS=1 or AT+VTR answered ERROR: the call ends FAILED, and its rings that go on
    are not a new call (it was offered again 7 s later, without caller ID); once the
    rings stop for RING_GONE, the next ring is a new call."""
    scripted = ScriptedModem(engine, {failing: ERROR})
    scripted.wait_idle()
    scripted.send(EARLY_CALLER_ID)
    scripted.send(RING)
    engine.sleep(0.1)
    leg = scripted.offered[0]
    engine.run(leg.answer)
    engine.sleep(0.5)
    assert isinstance(events(leg)[-1], LegCleared) and not leg.live
    assert events(leg)[-1].cause is Cause.FAILED
    scripted.wait_idle(1.0)
    for _ring in range(4):  # the exchange rings on, every 6 s
        engine.sleep(6.0)
        scripted.send(RING)
    engine.sleep(0.5)
    assert len(scripted.offered) == 1
    engine.sleep(9.0)  # the caller gave up; a new call
    scripted.send(RING)
    engine.sleep(0.1)
    scripted.send(RING)
    engine.sleep(0.1)
    assert len(scripted.offered) == 2
