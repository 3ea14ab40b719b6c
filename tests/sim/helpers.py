"""Helpers shared by the simulator tests."""

from __future__ import annotations

from uascall.dahdi import q931
from uascall.sim.kernel import SimKernel


class Wire:
    """Q.931 messages that crossed a looped pair, as (sender, message), decoded
    independently of libpri from the simulated kernel's frame tap. ``ours`` is the
    D-channel number of the side under test ("cpe"); the other side is "net"."""

    def __init__(self, kernel: SimKernel, ours: int) -> None:
        self.ours = ours
        self.records: list = []
        kernel.frame_taps.append(self.records.append)

    def messages(self) -> list[tuple[str, q931.Message]]:
        out = []
        for record in list(self.records):
            message = q931.LapdFrame.parse(record.frame).q931()
            if message is not None and record.delivered:
                out.append(("cpe" if record.from_channel == self.ours else "net", message))
        return out

    def names(self, sender: str | None = None) -> list[str]:
        return [m.name for who, m in self.messages() if sender in (None, who)]

    def find(self, sender: str, name: str) -> q931.Message:
        found = [m for who, m in self.messages() if who == sender and m.name == name]
        assert found, f"no {name} from {sender} on the wire; saw {self.names()}"
        return found[-1]
