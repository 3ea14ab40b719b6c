"""The modem backend against the emulated voice modem (a Conexant CX93001 on a pty), with
the dahdi backend at the other end of the simulated analog lines.

The loop (:func:`analog_loop_conf`, four lines): our FXS port on channel 2 rings a modem
on channel 6 (phone mode); our FXO port on channel 5 is on a line whose exchange end,
channel 1, is a modem's (exchange mode: its ATD rings the FXO port). Both modems are
served by one ModemBackend through pyserial, on the same engine as the kernel. Real
time: the pty is real I/O.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

from tests import audio
from uascall import ToneManager
from uascall.backend import Cause
from uascall.channel import State, UASCallChannel
from uascall.dahdi.analog import AnalogSettings
from uascall.dahdi.backend import DahdiBackend
from uascall.dahdi.config import SystemConf
from uascall.engine import Engine
from uascall.errors import Error
from uascall.media.player import MediaClock
from uascall.media.wav import read_wav
from uascall.modem.backend import ModemBackend, VoiceModem, choose_format, dialect_of
from uascall.modem.dle import ETX, DleReader
from uascall.modem.emulator import EmulatedModem, ExchangeLine, PhoneLine
from uascall.sim.analog_farend import analog_loop_conf

from .helpers import T

FXO, EXCHANGE_END = 5, 1
FXS, PHONE_END = 2, 6


@dataclasses.dataclass
class Bench:
    engine: Engine
    dahdi: DahdiBackend
    modems: ModemBackend
    phone_modem: EmulatedModem
    exchange_modem: EmulatedModem
    at_dahdi: list[UASCallChannel]
    at_modem: list[UASCallChannel]
    clock: MediaClock
    media: Path

    def channel(self, backend, route: str) -> UASCallChannel:
        return UASCallChannel(self.engine, backend=backend, route=route,
                              media_clock=self.clock, media_dir=str(self.media))

    def incoming(self, where: list[UASCallChannel], before: int = 0) -> UASCallChannel:
        assert self.engine.wait_until(lambda: len(where) > before, 3 * T), \
            "no call was offered"
        return where[-1]

    def modem(self, emulated: EmulatedModem) -> VoiceModem:
        return next(m for m in self.modems.modems if m.path in (emulated.path,
                                                                 emulated.link))


@pytest.fixture
def bench(rig, tmp_path):
    with rig.engine(virtual=False) as engine:
        conf = analog_loop_conf(4)
        io = rig.kernel(engine, conf)
        clock = MediaClock(engine)
        dahdi = DahdiBackend(engine, system_conf=SystemConf.parse(conf), ports=[FXO, FXS],
                             analog=AnalogSettings(), io=io)
        at_dahdi: list[UASCallChannel] = []
        at_modem: list[UASCallChannel] = []

        def channel_for(where):
            return lambda leg: where.append(UASCallChannel(
                engine, leg, media_clock=clock, media_dir=str(tmp_path)))

        dahdi.on_incoming = channel_for(at_dahdi)
        phone_modem = EmulatedModem(engine, PhoneLine(engine, PHONE_END, clock=clock,
                                                      io=io),
                                    link=str(tmp_path / "ttyPHONE"))
        exchange_modem = EmulatedModem(engine, ExchangeLine(engine, EXCHANGE_END,
                                                            clock=clock, io=io),
                                       link=str(tmp_path / "ttyLINE"), number="5550123")

        def start():
            dahdi.start()
            phone_modem.start()
            exchange_modem.start()

        engine.run(start)
        modems = ModemBackend(engine, modems=[phone_modem.link, exchange_modem.link])
        modems.on_incoming = channel_for(at_modem)
        engine.run(modems.start)
        assert engine.wait_until(lambda: all(m.idle for m in modems.modems), T), \
            [(m.path, m.state, m.last_error) for m in modems.modems]
        engine.sleep(2.1)  # rings are not reported for 2 s after a line is opened
        yield Bench(engine, dahdi, modems, phone_modem, exchange_modem, at_dahdi,
                    at_modem, clock, tmp_path)
        engine.run(modems.stop)
        engine.run(phone_modem.stop)
        engine.run(exchange_modem.stop)


def in_thread(fn, *args, **kwargs) -> dict:
    result: dict = {}

    def body():
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the test
            result["error"] = exc

    result["thread"] = threading.Thread(target=body, daemon=True)
    result["thread"].start()
    return result


def joined(result: dict, timeout: float):
    result["thread"].join(timeout)
    assert not result["thread"].is_alive(), "the call did not return"
    if "error" in result:
        raise result["error"]
    return result["value"]


def heard_tone(bench: Bench, player: UASCallChannel, listener: UASCallChannel,
               name: str) -> float:
    """``player`` plays the zone's ringback for 1.5 s; the level of its 440 Hz in what
    ``listener`` recorded meanwhile (dBm0), in the loudest 100 ms window.

    The loudest, not the whole or a median: that the path carries the tone at its level
    is what is asked here, and one clean window shows it. On the vm rig an emulated guest
    sharing its core with other guests leaves the engine thread off the CPU for longer
    than a player's 60 ms of lead: the line then carries holes, the tone comes late and
    its phase jumps, and every longer measure reads low (-27 and -34 dBm0 on CI for a tone
    at -19). Measured there: holes in 3 of 18 runs with three guests on two cores, as CI
    runs them, and ticks 0.2 to 8 s late with six guests; none with one guest alone."""
    for channel in (player, listener):
        if channel.TonePlayer is None:
            channel.create_tone_player(ToneManager())
    recording = in_thread(listener.FileRecorder.record, f"{name}.wav",
                          milliseconds_max_silence=0, seconds_timeout=2.5)
    bench.engine.sleep(0.2)
    assert player.TonePlayer.play("RINGBACK", 1.5) is player.TonePlayer.Cause.NORMAL
    joined(recording, 3 * T)
    samples = list(read_wav(bench.media / f"{name}.wav").samples)
    return max(audio.component_level_dbm0(samples[at:at + 800], 440, "alaw")
               for at in range(0, len(samples) - 799, 400))


def fxs_calls_the_modem(bench: Bench, before: int = 0
                        ) -> tuple[UASCallChannel, UASCallChannel]:
    """``before``: the calls the modem was offered already."""
    caller = bench.channel(bench.dahdi, f"fxs:{FXS}")
    calling = in_thread(caller.call, "5550100", call_from="5551234")
    called = bench.incoming(bench.at_modem, before)
    assert called.Details.call_from == "5551234"  # caller ID, read by the modem
    assert called.state() is State.CALL_INCOMING
    assert called.answer() is State.ANSWERED
    assert joined(calling, 3 * T) is State.ANSWERED
    return caller, called


# --------------------------------------------------------------------------- calls
def test_fxs_port_rings_the_modem_audio_and_dtmf_both_ways_modem_hangs_up(bench):
    caller, called = fxs_calls_the_modem(bench)
    assert heard_tone(bench, called, caller, "at_fxs") > -25
    assert heard_tone(bench, caller, called, "at_modem") > -25
    assert called.DTMFPlayer.play("12#") is called.DTMFPlayer.Cause.NORMAL
    assert caller.DTMFDetector.get_digits(count=3, seconds_predigits_timeout=T,
                                          seconds_interdigit_timeout=T) == "12#"
    assert caller.DTMFPlayer.play("9*") is caller.DTMFPlayer.Cause.NORMAL
    assert called.DTMFDetector.get_digits(count=2, seconds_predigits_timeout=T,
                                          seconds_interdigit_timeout=T) == "9*"
    called.hang_up()
    assert called.state() is State.IDLE
    assert caller.wait_for_idle(T) is State.IDLE
    assert caller.cause() is Cause.NORMAL
    modem = bench.modem(bench.phone_modem)
    assert bench.engine.wait_until(lambda: modem.idle, T)


def test_fxs_port_hangs_up_and_the_modem_hears_the_loop_drop(bench):
    caller, called = fxs_calls_the_modem(bench)
    bench.engine.sleep(1.0)  # a line just taken ignores the far end's hook until it settles
    caller.hang_up()
    assert called.wait_for_idle(T) is State.IDLE
    assert called.cause() is Cause.NORMAL
    assert called.Details.raw_cause == "loop current interruption"
    modem = bench.modem(bench.phone_modem)
    assert bench.engine.wait_until(lambda: modem.idle, T)


def test_the_modem_calls_through_the_fxo_port_and_either_end_hangs_up(bench):
    caller = bench.channel(bench.modems, f"modem:{bench.exchange_modem.link}")
    calling = in_thread(caller.call, "5559000")
    called = bench.incoming(bench.at_dahdi)
    assert called.Details.call_from == "5550123"  # the modem's line, as caller ID
    assert called.answer() is State.ANSWERED
    assert joined(calling, 3 * T) is State.ANSWERED
    assert heard_tone(bench, called, caller, "from_fxo") > -25
    # uascall channels / monitor: the modem's row
    rows = bench.engine.run(bench.modems.status, {})["channels"]
    row = next(r for r in rows if r["channel"] == bench.exchange_modem.link)
    assert (row["signalling"], row["state"], row["hook"], row["in_use"],
            row["far_end"]) == ("voice modem", "connected", "off", True, "5559000")
    called.hang_up()
    assert caller.wait_for_idle(T) is State.IDLE
    assert caller.cause() is Cause.NORMAL
    # and again, the modem hanging up this time
    modem = bench.modem(bench.exchange_modem)
    assert bench.engine.wait_until(lambda: modem.idle, T)
    calling = in_thread(caller.call, "5559000")
    called = bench.incoming(bench.at_dahdi, 1)
    assert called.answer() is State.ANSWERED
    assert joined(calling, 3 * T) is State.ANSWERED
    bench.engine.sleep(1.0)  # a line just taken ignores the far end's hook until it settles
    caller.hang_up()
    assert called.wait_for_idle(T) is State.IDLE


@pytest.mark.parametrize("stop_codes", [{"^"}, {"!"}])
def test_the_modem_leaves_voice_duplex_whichever_stop_code_it_takes(bench, stop_codes):
    """DLE ^ as Conexant's manual has it, or only DLE ! (receive abort): either way two
    calls the modem hangs up each leave AT+VTR and go on hook."""
    bench.phone_modem.vtr_stop_codes = stop_codes
    modem = bench.modem(bench.phone_modem)
    for call in range(2):
        caller, called = fxs_calls_the_modem(bench, call)
        called.hang_up()
        assert caller.wait_for_idle(2 * T) is State.IDLE
        assert bench.engine.wait_until(lambda: modem.idle, 2 * T), modem.last_error
        assert not modem.last_error  # not closed and opened again to get it back
        assert bench.phone_modem.mode == "command" and not bench.phone_modem.off_hook
        bench.engine.sleep(1.0)


def test_a_call_the_fxo_port_does_not_answer_is_noanswer(bench):
    bench.exchange_modem.s7 = 3.0
    caller = bench.channel(bench.modems, f"modem:{bench.exchange_modem.link}")
    assert caller.call("5559000", seconds_timeout=3 * T) is State.IDLE
    assert caller.cause() is Cause.NOANSWER
    assert caller.Details.raw_cause == "NO ANSWER"


def test_a_dead_line_is_no_dialtone_and_outoforder(bench):
    bench.exchange_modem.line.dead = True
    caller = bench.channel(bench.modems, f"modem:{bench.exchange_modem.link}")
    assert caller.call("5559000", seconds_timeout=T) is State.IDLE
    assert caller.cause() is Cause.OUTOFORDER
    assert caller.Details.raw_cause == "NO DIALTONE"


# --------------------------------------------------------------------------- bad input
def test_dle_codes_cut_anywhere_read_the_same():
    stream = b"ab\x10\x10c\x105d\x10\x03OK"
    whole = DleReader().feed(stream)
    assert whole == [b"ab", b"\x10", b"c", ord("5"), b"d", ETX, b"OK"]
    for cut in range(1, len(stream)):
        reader = DleReader()
        items = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        audio = b"".join(i for i in items if isinstance(i, bytes))
        assert audio == b"ab\x10cdOK", cut
        assert [i for i in items if isinstance(i, int)] == [ord("5"), ETX], cut
    reader = DleReader()
    one_by_one = [item for byte in stream for item in reader.feed(bytes((byte,)))]
    assert [i for i in one_by_one if isinstance(i, int)] == [ord("5"), ETX]


def test_voice_formats_are_chosen_by_name_whatever_the_chip_numbers_them():
    conexant = ['0,"SIGNED PCM",8,0,(8000),(0),(0)', '1,"UNSIGNED PCM",8,0,(8000),(0),(0)',
                '4,"G.711U",8,0,(8000),(0),(0)', '5,"G.711A",8,0,(8000),(0),(0)']
    assert choose_format(conexant) == (4, "ulaw")
    usr = ['128,"8-BIT LINEAR",(7200,8000,11025)', '129,"16-BIT LINEAR",(8000)',
           '132,"4-BIT IMA ADPCM",(7200,8000,11025)']
    assert choose_format(usr) == (128, "u8")
    with pytest.raises(Error, match=r"listed no 8-bit PCM or G\.711"):
        choose_format(['2,"4-BIT ADPCM",(8000)'])
    assert dialect_of("CX93001-EIS_V0.2002-V92").name == "conexant"
    assert dialect_of("U.S. Robotics 56K FAX USB V1.2.23").name == "usr"
    assert dialect_of("Zoom V.92 USB").name == "zoom"
    assert dialect_of("something else").name == "v253"


def test_a_modem_unplugged_mid_call_clears_it_outoforder_and_is_opened_again(bench):
    caller, called = fxs_calls_the_modem(bench)
    bench.engine.run(bench.phone_modem.unplug)
    assert called.wait_for_idle(T) is State.IDLE
    assert called.cause() is Cause.OUTOFORDER
    modem = bench.modem(bench.phone_modem)
    assert "unplugged" in modem.last_error
    bench.engine.run(bench.phone_modem.replug)
    assert bench.engine.wait_until(lambda: modem.idle, 3 * T), modem.last_error
    assert caller.wait_for_idle(T) is State.IDLE  # the modem's line went on hook


def test_an_engine_held_off_the_cpu_past_the_stall_limit_does_not_fail_the_modem(bench):
    """The whole process off the CPU for 4 s (the vm rig's guest froze 4.5 s once): when
    it runs again the stall check comes due before the tty is read, with 4 s of the
    modem's voice data waiting there. It looks again once the tty is read instead of
    failing a working modem ('no voice data for 4.5 s in AT+VTR' on the vm rig)."""
    caller, called = fxs_calls_the_modem(bench)
    modem = bench.modem(bench.phone_modem)
    bench.engine.sleep(0.5)
    bench.engine.run(time.sleep, 4.0)  # the engine thread held: nothing runs
    bench.engine.sleep(1.0)
    assert called.state() is State.ANSWERED, (called.cause(), modem.last_error)
    assert modem.state == "connected" and not modem.last_error
    received = modem._rx_samples
    bench.engine.sleep(0.5)
    assert modem._rx_samples > received  # and its voice data still comes
    called.hang_up()
    assert caller.wait_for_idle(T) is State.IDLE


def test_a_command_whose_answer_waits_unread_while_the_engine_is_held_is_not_a_timeout(
        bench):
    """A command sent, then the engine held for 4 s (past COMMAND_TIMEOUT) before the
    modem's OK is read: the timeout comes due first, late, and looks again once the tty
    is read; the OK is taken and the modem stays up. A modem that does not answer at all
    still fails after it (test_a_modem_that_stops_answering_mid_call_clears_it)."""
    modem = bench.modem(bench.phone_modem)
    answers: list[str] = []

    def ask_then_hold() -> None:
        modem._at("AT", lambda final, _lines: answers.append(final))
        time.sleep(4.0)  # the engine thread held: the OK waits in the tty

    bench.engine.run(ask_then_hold)
    assert bench.engine.wait_until(lambda: answers, T), modem.last_error
    assert answers == ["OK"] and modem.idle and not modem.last_error, modem.last_error


def test_a_modem_that_answers_error_to_everything_is_refused_with_a_clear_error(bench):
    modem = bench.modem(bench.phone_modem)
    bench.phone_modem.fault = "error"
    bench.engine.run(bench.phone_modem.unplug)
    bench.engine.run(bench.phone_modem.replug)
    assert bench.engine.wait_until(lambda: "ATZ answered ERROR" in modem.last_error, 3 * T)
    assert modem.state in ("failed", "closed")
    bench.phone_modem.fault = None
    assert bench.engine.wait_until(lambda: modem.idle, 4 * T), modem.last_error


def test_a_modem_that_stops_answering_mid_call_clears_it(bench):
    _caller, called = fxs_calls_the_modem(bench)
    modem = bench.modem(bench.phone_modem)
    bench.phone_modem.fault = "mute"
    bench.engine.run(lambda: setattr(bench.phone_modem, "mode", "command"))  # no audio
    assert called.wait_for_idle(2 * T) is State.IDLE
    assert called.cause() is Cause.OUTOFORDER
    assert "stopped answering" in modem.last_error
    bench.phone_modem.fault = None
    bench.engine.run(bench.phone_modem.unplug)
    bench.engine.run(bench.phone_modem.replug)
    assert bench.engine.wait_until(lambda: modem.idle, 4 * T), modem.last_error


def test_garbage_cut_dle_codes_and_a_burst_do_not_hang_the_engine(bench):
    modem = bench.modem(bench.phone_modem)
    emulated = bench.phone_modem
    # garbage in command mode, and a line that never ends
    bench.engine.run(emulated.inject, bytes(range(256)) * 64 + b"\r\nHELLO\r\n")
    bench.engine.sleep(0.3)
    assert modem.idle
    caller, called = fxs_calls_the_modem(bench)
    # a digit's DLE code amid the audio (cut across reads: test_dle_codes_cut_anywhere)
    bench.engine.run(emulated.inject, b"\x107")
    assert called.DTMFDetector.get_digits(count=1, seconds_predigits_timeout=T) == "7"
    # 10 MB of audio at once: dropped beyond what 8 kHz allows, the engine goes on
    t0 = bench.engine.time()
    bench.engine.run(emulated.inject, b"\x55" * (10 * 1024 * 1024))
    while bench.engine.run(lambda: len(emulated._out)):  # until the host has read it
        asked = bench.engine.time()
        assert bench.engine.run(lambda: True, timeout=T)  # the engine answers meanwhile
        # within a second on the simulator; the emulated guest is several times slower
        # (the vm rig: 1.02 s once)
        assert bench.engine.time() - asked < T / 5
        assert bench.engine.time() - t0 < 3 * T, modem._rx_dropped
        bench.engine.sleep(0.1)
    assert modem._rx_dropped > 9 * 1024 * 1024  # all but 8000 bytes a second of it
    assert called.state() is State.ANSWERED
    called.hang_up()
    assert caller.wait_for_idle(T) is State.IDLE
    assert bench.engine.time() - t0 < 3 * T


def test_the_modem_dials_out_through_the_fxs_port_after_its_dial_tone(bench):
    # phone mode: off hook, the port's dial tone heard, the number keyed in DTMF; the
    # port offers the call, which is answered without ringback: no ringback for 8 s is
    # the CX93001's answer (VCON)
    caller = bench.channel(bench.modems, f"modem:{bench.phone_modem.link}")
    calling = in_thread(caller.call, "5551000#")
    called = bench.incoming(bench.at_dahdi)
    assert called.Details.call_to == "5551000"
    assert called.answer() is State.ANSWERED
    assert joined(calling, 4 * T) is State.ANSWERED
    assert heard_tone(bench, caller, called, "from_phone_modem") > -25
    called.hang_up()
    assert caller.wait_for_idle(T) is State.IDLE
    assert caller.Details.raw_cause == "loop current interruption"


def test_a_second_host_on_the_same_modem_is_refused(bench):
    modem = bench.modem(bench.phone_modem)
    other = ModemBackend(bench.engine, modems=[modem.path])
    with pytest.raises(OSError, match=r"lock|Resource temporarily unavailable"):
        bench.engine.run(other.modems[0].start)


def test_a_call_out_given_up_while_the_fxo_port_rings_stops_the_ringing(bench):
    caller = bench.channel(bench.modems, f"modem:{bench.exchange_modem.link}")
    calling = in_thread(caller.call, "5559000")
    called = bench.incoming(bench.at_dahdi)
    caller.hang_up()  # any character aborts the modem's dialling: NO CARRIER, on hook
    assert joined(calling, T) is State.IDLE
    assert called.wait_for_idle(3 * T) is State.IDLE  # no more rings: the caller gave up
    modem = bench.modem(bench.exchange_modem)
    assert bench.engine.wait_until(lambda: modem.idle, T)
    assert bench.exchange_modem.line.state == "idle"


def test_a_modem_left_in_the_voice_state_by_a_host_that_died_is_brought_back(bench):
    fxs_calls_the_modem(bench)
    modem = bench.modem(bench.phone_modem)
    # the host dies: its descriptor closes, nothing more is sent
    bench.engine.run(lambda: (modem._reopener.cancel(), modem._close("killed")))
    assert bench.phone_modem.mode == "duplex"  # the modem still streams audio
    again = ModemBackend(bench.engine, modems=[bench.phone_modem.link])
    bench.engine.run(again.start)
    assert bench.engine.wait_until(lambda: again.modems[0].idle, T), \
        again.modems[0].last_error
    assert bench.phone_modem.mode == "command"
    bench.engine.run(again.stop)
