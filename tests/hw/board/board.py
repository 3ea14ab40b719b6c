"""The board rig: real analog ports of a DAHDI card checked end to end with a voice modem
on each line (:mod:`uascall.modem.selftest`), configured by the file ``$UASCALL_BOARD``.

The file (INI)::

    [board]
    system_conf = /etc/dahdi/system.conf   ; dahdi_cfg's file (default)
    patience = 10                          ; seconds a step may take (default 10)

    [fxs 4]                 ; our FXS port: fxoks channel 4
    modem = /dev/ttyACM0    ; the voice modem plugged into its line

    [fxo 1]                 ; our FXO port: fxsks channel 1, on an exchange (PBX) line
    modem = /dev/ttyACM1    ; a voice modem on another line of that exchange
    number = 201            ; what the modem dials to reach the FXO port's line

:func:`check_line` checks one line with :func:`uascall.modem.selftest.run_line_check`
(what ``uascall selftest`` runs): the two backends for that port and that modem, and the
line's check; ``io`` puts the ports on another kernel than ``/dev/dahdi`` (CI: the
simulated one, with emulated modems).
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field
from pathlib import Path

from uascall.dahdi.config import DEFAULT_PATH, SystemConf
from uascall.dahdi.device import DeviceIO
from uascall.engine import Engine
from uascall.modem.selftest import Step, run_line_check


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Line:
    kind: str  # "fxs" or "fxo"
    channel: int
    modem: str
    number: str = ""

    @property
    def name(self) -> str:
        return f"{self.kind} {self.channel} ({self.modem})"


@dataclass
class BoardConfig:
    source: str
    system_conf: str = DEFAULT_PATH
    patience: float = 10.0
    lines: list[Line] = field(default_factory=list)


def read_config(path: str | Path) -> BoardConfig:
    """The rig's file; ConfigError naming the file, section and what was expected."""
    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as exc:
        raise ConfigError(f"UASCALL_BOARD={path}: cannot read it ({exc}); expected the "
                          "board rig's INI file (tests/hw/README.md)") from exc
    except configparser.Error as exc:
        raise ConfigError(f"{path}: not an INI file: {exc}") from exc
    config = BoardConfig(str(path))
    if parser.has_section("board"):
        config.system_conf = parser.get("board", "system_conf", fallback=DEFAULT_PATH)
        config.patience = parser.getfloat("board", "patience", fallback=10.0)
    for section in parser.sections():
        if section == "board":
            continue
        kind, _, channel = section.partition(" ")
        if kind not in ("fxs", "fxo") or not channel.strip().isdigit():
            raise ConfigError(f"{path}: section [{section}]; expected [board], "
                              "[fxs CHANNEL] or [fxo CHANNEL]")
        modem = parser.get(section, "modem", fallback="")
        number = parser.get(section, "number", fallback="")
        if not modem:
            raise ConfigError(f"{path}: [{section}] has no modem = DEVICE")
        if kind == "fxo" and not number:
            raise ConfigError(f"{path}: [{section}] has no number = ...: what the modem "
                              "dials to reach the FXO port's line")
        config.lines.append(Line(kind, int(channel), modem, number))
    if not config.lines:
        raise ConfigError(f"{path}: no [fxs N] or [fxo N] section; expected a line to "
                          "check")
    return config


def check_line(engine: Engine, config: BoardConfig, line: Line, *,
               io: DeviceIO | None = None) -> list[Step]:
    """Run ``line``'s check (engine in real time; call from a thread not the engine's).
    The kind of port comes from system.conf; the file's section says which it should be."""
    conf = SystemConf.read(config.system_conf)
    expected = {"fxs": "fxoks", "fxo": "fxsks"}[line.kind]
    if conf.signalling.get(line.channel) != expected:
        return [Step("the port is configured", False,
                     f"{config.system_conf}: channel {line.channel} is "
                     f"{conf.signalling.get(line.channel, 'not configured')}; [{line.kind} "
                     f"{line.channel}] expects {expected}")]
    return run_line_check(engine, line.channel, line.modem, number=line.number,
                          system_conf=config.system_conf, patience=config.patience, io=io)
