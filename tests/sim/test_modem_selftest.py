"""The line checks of :mod:`uascall.modem.selftest` (the board rig's and ``uascall
selftest``'s) against the emulated modem on the simulated analog lines: an FXS port
ringing the modem, and the modem calling in through an FXO port. Each step must pass;
a broken line fails the step that shows it."""

from __future__ import annotations

from uascall.modem.selftest import LineCheck, report

from .helpers import T
from .test_modem import FXO, FXS, bench  # noqa: F401 (the fixture)


def test_the_fxs_line_check_passes_every_step(bench):  # noqa: F811
    check = LineCheck(bench.engine, bench.dahdi, bench.modems, route=f"fxs:{FXS}",
                      modem_route=f"modem:{bench.phone_modem.link}", patience=T,
                      media_dir=str(bench.media))
    steps = check.check_fxs()
    assert report(steps).endswith("\nPASS"), report(steps)
    assert [s.name for s in steps] == [
        "the modem rings", "caller ID reaches the modem", "the modem answers",
        "tone port -> modem", "tone modem -> port", "DTMF port -> modem",
        "DTMF modem -> port", "the port hangs up, the modem hears it",
        "the modem rings", "the modem answers", "the modem hangs up, the port hears it"]


def test_the_fxo_line_check_passes_and_a_dead_line_fails_its_first_step(bench):  # noqa: F811
    check = LineCheck(bench.engine, bench.dahdi, bench.modems, route=f"fxo:{FXO}",
                      modem_route=f"modem:{bench.exchange_modem.link}", patience=T,
                      media_dir=str(bench.media))
    steps = check.check_fxo("5559000")
    assert report(steps).endswith("\nPASS"), report(steps)
    assert "caller ID '5550123'" in steps[0].detail
    bench.exchange_modem.line.dead = True
    again = LineCheck(bench.engine, bench.dahdi, bench.modems, route=f"fxo:{FXO}",
                      modem_route=f"modem:{bench.exchange_modem.link}", patience=T,
                      media_dir=str(bench.media))
    steps = again.check_fxo("5559000")
    assert [(s.name, s.passed) for s in steps] == [("the FXO port rings", False)]
    assert report(steps).endswith("\nFAIL")
