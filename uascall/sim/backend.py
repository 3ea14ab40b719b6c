"""The ``sim`` backend: the ``dahdi`` backend's PRI spans on the simulated kernel.

Applications get exactly what the ``dahdi`` backend gives them (the same
:class:`~uascall.dahdi.backend.PriLeg`, the same span driver), over a :class:`PriLoop`
whose far side is a real libpri exchange. :attr:`SimBackend.far_end` places calls from
that exchange and records what each caller hears, for demos and tests.
"""

from __future__ import annotations

from typing import Any

from uascall.backend import FarEndDriver
from uascall.dahdi.backend import DahdiBackend
from uascall.dahdi.device import DeviceIO
from uascall.engine import Engine
from uascall.errors import ArgumentError
from uascall.sim.farend import FarEnd, PriLoop


class SimBackend(DahdiBackend):
    """``kind`` "E1" (EuroISDN, A-law) or "T1" (NI2, mu-law); ``pairs`` looped span
    pairs (30 or 23 B-channels each on our side).

    The spans are on a simulated kernel of their own, or on ``kernel`` (the real driver
    in the vm rig, say) configured beforehand with ``conf``
    (:func:`~uascall.sim.farend.pri_loop_conf` with ``dynamic=True``): then only the
    exchange is simulated.
    """

    name = "sim"
    virtual_time = True

    def __init__(self, engine: Engine, *, kind: str = "E1", pairs: int = 1,
                 switch: str | None = None, timers: dict[str, int] | None = None,
                 tick: float = 0.020, record: bool = True,
                 kernel: DeviceIO | None = None, conf: str | None = None,
                 listen_early: bool = False) -> None:
        if kind not in ("E1", "T1"):
            raise ArgumentError(f"kind {kind!r}; expected 'E1' or 'T1'")
        if pairs < 1:
            raise ArgumentError(f"pairs={pairs}; expected at least 1")
        switch = switch or ("euroisdn_e1" if kind == "E1" else "ni2")
        super().__init__(engine, switch=switch, timers=timers, listen_early=listen_early)
        self.kind = kind
        self.pairs = pairs
        self.tick = tick
        self.record = record
        self.kernel = kernel
        self.conf = conf
        self.loop: PriLoop | None = None
        self.far_end: FarEnd | None = None

    def start(self) -> None:
        self.loop = PriLoop(self.engine, self.kind, pairs=self.pairs, switch=self.switch,
                            tick=self.tick, timers=self.timers, kernel=self.kernel,
                            conf=self.conf)
        for span in self.loop.cpe_spans:
            self.attach(span)
        self.far_end = FarEnd(self.loop, record=self.record)

    @property
    def up(self) -> bool:
        return self.loop is not None and self.loop.up

    @property
    def ready(self) -> bool:
        return self.up

    # the command line's part (uascall.sim.command): options, the exchange's calls
    @classmethod
    def add_arguments(cls, group: Any, command: str) -> None:
        from uascall.sim.command import add_arguments
        add_arguments(group, command)

    @classmethod
    def options_from_arguments(cls, args: Any, command: str) -> dict[str, Any]:
        from uascall.sim.command import options_from_arguments
        return options_from_arguments(args, command)

    @classmethod
    def offline_status(cls, args: Any) -> dict[str, Any] | None:
        return None  # the simulated kernel lives in its uascall process only

    def command_line_far_end(self, args: Any, command: str) -> FarEndDriver | None:
        from uascall.sim.command import ExchangeCalls
        return ExchangeCalls(self, args, command)

    def stop(self) -> None:
        if self.loop is not None:
            self.loop.stop()
