"""The rigs a dahdi scenario runs on: the simulated kernel, or the real DAHDI driver.

A scenario asks the ``rig`` fixture for an engine and for a kernel configured with a
system.conf; the rest of it does not know which it got. ``--rig sim`` (the default) is
the simulator, in virtual time where the scenario allows it. ``--rig vm`` is the real
driver inside the qemu guest that ``tests/hw/vm-rig.sh`` boots, with two back-to-back
``dahdi_dynamic_loc`` spans made by the real ``dahdi_cfg``; time is real there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator

from uascall.dahdi import abi
from uascall.dahdi.device import OS_IO, ControlDevice, DeviceIO
from uascall.engine import Engine, MonotonicClock, VirtualClock
from uascall.sim.farend import PriLoop, pri_loop_conf
from uascall.sim.kernel import SimKernel

log = logging.getLogger(__name__)

RIGS = ("sim", "vm")
#: span numbers the vm rig looks through for dynamic spans left by an earlier scenario
MAX_SPANS = 32


class Rig:
    """What a scenario needs from where it runs."""

    name = "rig"
    #: whether the engine may run in virtual time
    virtual = False
    #: seconds a step that should happen at once may take before a test gives up
    patience = 5.0
    #: how long a B-channel block takes to reach the peer beyond its own duration
    line_latency = 0.020
    #: how long after opening a D-channel its first received frames are reliable
    settle_after_open = 0.0
    #: how late a kernel event may reach the engine thread after the tick it belongs to
    event_slack = 0.002

    @contextlib.contextmanager
    def engine(self, *, virtual: bool = True) -> Iterator[Engine]:
        """An engine, in virtual time if the scenario allows it and the rig can (the test
        thread is then an actor, so that time waits for it)."""
        if virtual and self.virtual:
            with Engine(VirtualClock()) as engine, engine.actor():
                yield engine
        else:
            with Engine(MonotonicClock()) as engine:
                yield engine

    def kernel(self, engine: Engine, conf: str) -> DeviceIO:
        """A kernel whose spans and channels are configured from ``conf``."""
        raise NotImplementedError

    def pri_loop(self, engine: Engine, kind: str = "E1", **kwargs: object) -> PriLoop:
        """A looped pair of ``kind`` PRI spans (dahdi_dynamic_loc), both D-channels up."""
        conf = pri_loop_conf(kind, dynamic=True)
        kernel = self.kernel(engine, conf)
        loop = PriLoop.create(engine, kind, kernel=kernel, conf=conf, **kwargs)
        if not engine.wait_until(lambda: loop.up, self.patience):
            raise AssertionError(f"{self.name} rig: the D-channels of the {kind} loop did "
                                 "not come up")
        return loop

    def raise_alarm(self, engine: Engine, loop: PriLoop, alarm: int, pair: int = 0) -> None:
        """Put our span of ``pair`` in ``alarm`` (``abi.DAHDI_ALARM_RED``...) as a line
        fault does; the exchange's side of the pair loses its line with it."""
        raise NotImplementedError

    def clear_alarm(self, engine: Engine, loop: PriLoop, pair: int = 0) -> None:
        """Undo :meth:`raise_alarm`: the line comes back (layer 2 then comes up again)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{self.name} rig>"


class SimRig(Rig):
    name = "sim"
    virtual = True

    def kernel(self, engine: Engine, conf: str) -> DeviceIO:
        kernel = SimKernel(engine)
        engine.run(kernel.configure, conf)
        return kernel

    def raise_alarm(self, engine: Engine, loop: PriLoop, alarm: int, pair: int = 0) -> None:
        kernel, ours, theirs = self._spans(loop, pair)
        if alarm == abi.DAHDI_ALARM_YELLOW:  # the far end lost our signal and says so
            engine.run(kernel.set_alarm, theirs, abi.DAHDI_ALARM_RED)
        else:
            engine.run(kernel.set_alarm, ours, alarm)

    def clear_alarm(self, engine: Engine, loop: PriLoop, pair: int = 0) -> None:
        kernel, ours, theirs = self._spans(loop, pair)
        engine.run(kernel.set_alarm, ours, 0)
        engine.run(kernel.set_alarm, theirs, 0)

    @staticmethod
    def _spans(loop: PriLoop, pair: int) -> tuple[SimKernel, int, int]:
        assert isinstance(loop.kernel, SimKernel), loop.kernel
        return (loop.kernel, loop.cpe_spans[pair].layout.spanno,
                loop.net_spans[pair].layout.spanno)


class VmRig(Rig):
    """The real driver: ``dahdi_cfg`` (``$UASCALL_DAHDI_CFG``) configures the loc spans."""

    name = "vm"
    patience = 15.0  # TCG emulation: everything is several times slower
    line_latency = 0.060  # loc spans: 19-24 ms one way, then the core timer's bursts
    # the real driver drops a frame written within about 10 ms of the receiver's open
    settle_after_open = 0.100
    # 4 ms timer bursts, then TCG's own scheduling: 6-11 ms seen, more under load
    event_slack = 0.050

    def __init__(self) -> None:
        self.dahdi_cfg = os.environ.get("UASCALL_DAHDI_CFG", "dahdi_cfg")

    def kernel(self, engine: Engine, conf: str) -> DeviceIO:
        # dahdi_cfg destroys and re-creates the loc spans, which the driver refuses (EBUSY,
        # then "File exists") while any of their channels is open: a scenario that leaked
        # one would otherwise break the next scenario with a puzzling message.
        held = open_dahdi_files()
        if held:
            raise AssertionError("vm rig: this process still holds " + ", ".join(held)
                                 + "; an earlier scenario did not close its channels")
        self._destroy_dynamic_spans()
        self._dahdi_cfg(conf)
        self._wait_for_spans(len([line for line in conf.splitlines()
                                  if line.startswith("dynamic=")]))
        return OS_IO

    def raise_alarm(self, engine: Engine, loop: PriLoop, alarm: int, pair: int = 0) -> None:
        """RED only: the exchange's span is stopped and its dynamic span destroyed, so ours
        hears nothing and dahdi_dynamic raises RED a second or two later. The loc driver
        cannot hold a span in another alarm: YELLOW lasts only from a destroyed peer's
        re-creation to its first frame."""
        if alarm != abi.DAHDI_ALARM_RED:
            raise AssertionError(f"vm rig: {abi.alarm_names(alarm)} cannot be raised on the "
                                 "loc spans; only RED (the far span destroyed)")
        engine.run(loop.net_spans[pair].stop)
        far = loop.conf.dynamic[2 * pair + 1]
        with ControlDevice.open() as ctl:
            ctl.destroy_dynamic_span(far.driver, far.address, far.channels)

    def clear_alarm(self, engine: Engine, loop: PriLoop, pair: int = 0) -> None:
        """dahdi_cfg makes the exchange's span again (given only its lines, it leaves ours,
        with its channels open, alone); the exchange starts on it again."""
        net = loop.net_spans[pair]
        pairs = len(loop.net_spans)
        self._dahdi_cfg(pri_loop_conf(loop.kind, pairs, dynamic=True,
                                      spans=[net.layout.spanno]))
        engine.run(net.start)

    @staticmethod
    def _destroy_dynamic_spans() -> None:
        """Remove every dynamic span there is, as the simulator's configure() does before
        it makes a file's dynamic spans. dahdi_cfg replaces only the dynamic spans its
        file names (by driver and address) and leaves the others with their span and
        channel numbers: after a scenario with two loc pairs (keys 1 and 2), one with the
        key 1 pair alone got spans 5 and 6, and dahdi_cfg failed with "DAHDI_CHANCONFIG
        failed on channel 1: Invalid argument"."""
        with ControlDevice.open() as ctl:
            for spanno in range(1, MAX_SPANS + 1):
                try:
                    status = ctl.span_status(spanno)
                except OSError:  # no such span (numbers may have gaps)
                    continue
                kind, _, rest = status.name.partition("/")
                if kind == "DYN":
                    driver, _, address = rest.partition("/")
                    ctl.destroy_dynamic_span(driver, address, status.totalchans)

    def _dahdi_cfg(self, conf: str) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".conf", prefix="system-") as file:
            file.write(conf)
            file.flush()
            result = subprocess.run([self.dahdi_cfg, "-c", file.name], capture_output=True,
                                    text=True, timeout=60)
        if result.returncode != 0:
            raise AssertionError(f"dahdi_cfg failed ({result.returncode}): "
                                 f"{result.stderr.strip() or result.stdout.strip()}\n{conf}")

    def _wait_for_spans(self, count: int) -> None:
        """Until the new spans exist and are out of their initial alarm."""
        deadline = time.monotonic() + self.patience
        last = "no span"
        while time.monotonic() < deadline:
            try:
                ctl = ControlDevice.open()
            except OSError as exc:
                last = str(exc)
            else:
                try:
                    states = [ctl.span_status(n) for n in range(1, count + 1)]
                    if all(s.alarms == 0 for s in states):
                        return
                    last = ", ".join(f"span {s.spanno}: {abi.alarm_names(s.alarms)}"
                                     for s in states)
                except OSError as exc:
                    last = str(exc)
                finally:
                    ctl.close()
            time.sleep(0.05)
        raise AssertionError(f"vm rig: spans not ready after {self.patience} s ({last})")


def open_dahdi_files() -> list[str]:
    """The /dev/dahdi files this process has open, as "fd N -> path"."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("/dev/dahdi/"):
                held.append(f"fd {fd} -> {target}")
    return held


def make_rig(name: str) -> Rig:
    if name == "sim":
        return SimRig()
    if name == "vm":
        if os.environ.get("UASCALL_RIG") != "vm":
            raise ValueError("--rig vm runs inside the qemu guest: use tests/hw/vm-rig.sh")
        return VmRig()
    raise ValueError(f"rig {name!r}; expected one of {', '.join(RIGS)}")
