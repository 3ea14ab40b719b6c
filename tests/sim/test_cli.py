"""The `uascall demo` main job: a simulated PRI call with its Q.931 ladder."""

from __future__ import annotations

import pytest

from uascall.cli import main


@pytest.mark.parametrize("law, kind, bearer", [("alaw", "E1", "A-law"), ("ulaw", "T1", "mu-law")])
def test_demo_prints_the_q931_ladder_of_a_complete_call(capsys, law, kind, bearer):
    assert main(["demo", "--law", law, "--ring", "0.05", "--talk", "0.05"]) == 0
    out = capsys.readouterr().out
    assert f"simulated {kind} PRI span" in out
    sequence = ["SETUP", "CALL PROCEEDING", "ALERTING PI #8", "CONNECT B1",
                "CONNECT ACKNOWLEDGE", "DISCONNECT cause 16", "RELEASE cause 16",
                "RELEASE COMPLETE cause 16"]
    lines = [line for line in out.splitlines() if "|" in line]
    assert [next(s for s in sequence if s in line) for line in lines] == sequence
    assert bearer in lines[0] and "<-" in lines[0] and "->" in lines[2]
    assert "cleared by the exchange: cause 16 (Normal Clearing)" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("uascall ")
