"""`--trace FILE.pcapng` on the `uascall` commands (uascall.trace): the file tshark reads
holds the call's Q.931 exchange, as the command ran it."""

from __future__ import annotations

import subprocess

import pytest

from uascall.cli import main


def q931_messages(path) -> list[str]:
    done = subprocess.run(["tshark", "-r", str(path), "-Y", "q931", "-T", "fields", "-e",
                           "q931.message_type"], capture_output=True, text=True, check=True)
    return [line for line in done.stdout.split() if line]


@pytest.mark.parametrize("command", [
    ["demo", "--virtual", "--param", "0.5"],
    ["run", "examples/early_media.py", "--virtual", "--param", "0.5", "--control", "none"],
])
def test_trace_of_the_command_holds_its_call(command, tmp_path, capsys):
    trace = tmp_path / "call.pcapng"
    extra = ["--wav", str(tmp_path / "heard.wav")] if command[0] == "demo" else []
    assert main(command + extra + ["--trace", str(trace)]) == 0
    messages = q931_messages(trace)
    # SETUP, CALL PROCEEDING, ALERTING, CONNECT, CONNECT ACK, DISCONNECT, RELEASE,
    # RELEASE COMPLETE, by their Q.931 codes
    assert [m for m in messages if m in ("0x05", "0x02", "0x01", "0x07", "0x0f", "0x45",
                                         "0x4d", "0x5a")] == [
        "0x05", "0x02", "0x01", "0x07", "0x0f", "0x45", "0x4d", "0x5a"], messages
