"""The board rig (opt-in): each analog port named in ``$UASCALL_BOARD`` checked end to end
with the voice modem on its line (see board.py and tests/hw/README.md). Without the
variable every test here is skipped, saying so."""

from __future__ import annotations

import os

import pytest

from uascall.engine import Engine
from uascall.modem.selftest import report

from .board import check_line, read_config

CONFIG = os.environ.get("UASCALL_BOARD", "")
if not CONFIG:
    pytest.skip("the board rig is off: UASCALL_BOARD is not set (it names an INI file "
                "of a DAHDI card's analog ports and the voice modem on each line; see "
                "tests/hw/README.md)", allow_module_level=True)

BOARD = read_config(CONFIG)


@pytest.mark.parametrize("line", BOARD.lines, ids=[line.name for line in BOARD.lines])
def test_line(line):
    with Engine() as engine:
        steps = check_line(engine, BOARD, line)
    print(report(steps))
    assert steps and all(step.passed for step in steps), report(steps)
