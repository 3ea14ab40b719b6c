"""The board rig's own code (tests/hw/board: its INI file, the backends it builds from
system.conf, each line's check) run against emulated voice modems on the simulated analog
lines, so that CI exercises what runs on a real card."""

from __future__ import annotations

import pytest

from tests.hw.board.board import ConfigError, check_line, read_config
from uascall.engine import Engine
from uascall.errors import ArgumentError
from uascall.media.player import MediaClock
from uascall.modem.emulator import EmulatedModem, ExchangeLine, PhoneLine
from uascall.modem.selftest import report, run_line_check
from uascall.sim.analog_farend import analog_loop_conf

FXO, EXCHANGE_END = 5, 1
FXS, PHONE_END = 2, 6


def test_each_line_of_the_board_file_passes_its_check(rig, tmp_path):
    conf = analog_loop_conf(4)
    (tmp_path / "system.conf").write_text(conf)
    board = tmp_path / "board.ini"
    board.write_text(f"""\
[board]
system_conf = {tmp_path / "system.conf"}
patience = 15

[fxs {FXS}]
modem = {tmp_path / "ttyACM0"}   ; the modem on the FXS port's line

[fxo {FXO}]
modem = {tmp_path / "ttyACM1"}
number = 5559000                ; the FXO port's line, as the modem dials it
""")
    config = read_config(board)
    assert [(line.kind, line.channel) for line in config.lines] == [("fxs", FXS),
                                                                     ("fxo", FXO)]
    with rig.engine(virtual=False) as engine:
        io = rig.kernel(engine, conf)
        clock = MediaClock(engine)
        phone = EmulatedModem(engine, PhoneLine(engine, PHONE_END, clock=clock, io=io),
                              link=str(tmp_path / "ttyACM0"))
        exchange = EmulatedModem(engine, ExchangeLine(engine, EXCHANGE_END, clock=clock,
                                                      io=io),
                                 link=str(tmp_path / "ttyACM1"))
        engine.run(phone.start)
        engine.run(exchange.start)
        try:
            for line in config.lines:
                steps = check_line(engine, config, line, io=io)
                assert steps and all(s.passed for s in steps), report(steps)
            # a modem that is not a voice modem: the check says so in its first step
            exchange.fault = "error"
            config.patience = 2.0
            steps = check_line(engine, config, config.lines[1], io=io)
            assert not steps[0].passed and "ERROR" in steps[0].detail, report(steps)
        finally:
            engine.run(phone.stop)
            engine.run(exchange.stop)


def test_a_board_file_that_is_wrong_says_what_was_expected(tmp_path):
    board = tmp_path / "board.ini"
    board.write_text("[fxo 1]\nmodem = /dev/ttyACM0\n")
    with pytest.raises(ConfigError, match=r"\[fxo 1\] has no number"):
        read_config(board)
    board.write_text("[line 1]\nmodem = /dev/ttyACM0\n")
    with pytest.raises(ConfigError, match=r"expected \[board\], \[fxs CHANNEL\]"):
        read_config(board)
    with pytest.raises(ConfigError, match="cannot read it"):
        read_config(tmp_path / "missing.ini")


def test_the_line_check_refuses_a_port_it_cannot_check_saying_why(tmp_path):
    (tmp_path / "system.conf").write_text(analog_loop_conf(4))
    conf = str(tmp_path / "system.conf")
    with Engine() as engine:
        with pytest.raises(ArgumentError, match="channel 9 is not configured; expected "
                                                "fxoks"):
            run_line_check(engine, 9, "/dev/ttyACM0", system_conf=conf)
        with pytest.raises(ArgumentError, match="FXO port: the modem must dial"):
            run_line_check(engine, FXO, "/dev/ttyACM0", system_conf=conf)
