"""Far ends for the simulator: a looped PRI span pair whose far side is real libpri.

:class:`PriLoop` wires two simulated spans back to back, configures them as dahdi_cfg
would from :func:`pri_loop_conf`, and puts a :class:`~uascall.dahdi.pri.PriSpan` on each:
``cpe`` (span 1, user side, the side an application drives) and ``net`` (span 2, a real
libpri instance in NETWORK mode playing the telephone exchange). Both run the real
:mod:`uascall.dahdi` code over the simulated kernel, so whatever crosses between them is
genuine Q.921/Q.931 that libpri produced and accepted.
"""

from __future__ import annotations

import logging

from uascall.dahdi import libpri
from uascall.dahdi.config import SystemConf
from uascall.dahdi.pri import PriSpan
from uascall.engine import Engine
from uascall.sim.kernel import SPAN_KINDS, SimKernel

log = logging.getLogger(__name__)

DEFAULT_SWITCH = {"E1": libpri.Switch.EUROISDN_E1, "T1": libpri.Switch.NI2}


def pri_loop_conf(kind: str = "E1") -> str:
    """system.conf for a looped pair of PRI spans (spans 1 and 2)."""
    if kind == "E1":
        return ("# two E1 spans looped back to back: EuroISDN, A-law\n"
                "span=1,1,0,ccs,hdb3,crc4\nspan=2,0,0,ccs,hdb3,crc4\n"
                "bchan=1-15,17-31\ndchan=16\nbchan=32-46,48-62\ndchan=47\n"
                "loadzone=nl\ndefaultzone=nl\n")
    if kind == "T1":
        return ("# two T1 spans looped back to back: NI2, mu-law\n"
                "span=1,1,0,esf,b8zs\nspan=2,0,0,esf,b8zs\n"
                "bchan=1-23\ndchan=24\nbchan=25-47\ndchan=48\n"
                "loadzone=us\ndefaultzone=us\n")
    raise ValueError(f"span kind {kind!r}; expected one of {sorted(SPAN_KINDS)}")


class PriLoop:
    """Two PRI spans on one simulated loop: ``cpe`` (ours) and ``net`` (the exchange).

    Build it on the engine thread (``engine.run(PriLoop, engine)``) or from any thread with
    :meth:`create`; :meth:`stop` (also run at engine shutdown) closes both spans.
    """

    def __init__(self, engine: Engine, kind: str = "E1", *,
                 switch: libpri.Switch | None = None, tick: float = 0.020,
                 timers: dict[str, int] | None = None) -> None:
        self.engine = engine
        self.kind = kind
        self.kernel = SimKernel(engine, tick=tick)
        self.kernel.add_loop(kind)
        self.conf = SystemConf.parse(pri_loop_conf(kind), source=f"simulated {kind} loop")
        self.kernel.configure(self.conf)
        switch = switch or DEFAULT_SWITCH[kind]
        ours, theirs = self.conf.pri_spans()
        self.cpe = PriSpan(engine, ours, node=libpri.Node.CPE, switch=switch, io=self.kernel,
                           timers=timers, name="uascall")
        self.net = PriSpan(engine, theirs, node=libpri.Node.NETWORK, switch=switch,
                           io=self.kernel, timers=timers, name="exchange")
        self.cpe.start()
        self.net.start()

    @classmethod
    def create(cls, engine: Engine, kind: str = "E1", **kwargs: object) -> PriLoop:
        """Build the loop on the engine thread from any thread."""
        return engine.run(cls, engine, kind, **kwargs)

    @property
    def up(self) -> bool:
        return self.cpe.up and self.net.up

    def stop(self) -> None:
        """Close both spans (engine thread)."""
        self.cpe.stop()
        self.net.stop()
