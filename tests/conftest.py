"""Test-wide settings: caches go to a temporary directory, never the user's home; the
``rig`` fixture and the ``--rig`` option choose where dahdi scenarios run.

On the vm rig a scenario that fails in a run where the guest was held off its CPU longer
than real-time audio allows (:mod:`tests.stall_watch`) runs once more, and says so: the
summary counts it as a rerun. A scenario that fails with the guest running on time, or
fails twice, fails. The simulator runs in virtual time and never reruns anything."""

from __future__ import annotations

import os

import pytest

from tests.rigs import RIGS, Rig, make_rig
from tests.stall_watch import BUDGET, StallWatch

stall_watch_key = pytest.StashKey[StallWatch]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--rig", choices=RIGS, default=os.environ.get("UASCALL_RIG", "sim"),
                     help="where dahdi scenarios run: sim (the simulated kernel, default) "
                     "or vm (the real driver; inside tests/hw/vm-rig.sh only)")
    parser.addoption("--shard", default=os.environ.get("UASCALL_SHARD", ""),
                     metavar="K/N", help="run only the K-th of N equal shares of the tests "
                     "(1-based; for running one suite on N machines at once)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vm_only: needs the real driver (the vm rig); "
                            "deselected on the simulator")
    config.addinivalue_line("markers", "sim_only: a rig scenario only the simulator's "
                            "virtual time makes short enough; deselected on a real rig")
    if config.getoption("--rig") == "vm":
        watch = StallWatch()
        watch.start()
        config.stash[stall_watch_key] = watch


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    watch = item.config.stash.get(stall_watch_key, None)
    if watch is not None:
        watch.reset()  # each attempt is judged by its own stalls


def _rerun_if_starved(item: pytest.Item, watch: StallWatch):
    """pytest-rerunfailures' condition, asked once an attempt is over: True (run it
    once more) when it failed and the guest was held longer than :data:`BUDGET`."""
    def starved(error: BaseException | None) -> bool:
        held = watch.worst
        if error is None or held <= BUDGET:
            return False
        reporter = item.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"vm rig: {item.nodeid} failed in a run where the guest was held "
                f"{held * 1000:.0f} ms (real-time audio allows {BUDGET * 1000:.0f}): "
                f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                f" -- running it once more")
        return True
    return starved


def _shard(value: str) -> tuple[int, int] | None:
    if not value:
        return None
    k, sep, n = value.partition("/")
    if sep and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n):
        return int(k), int(n)
    raise pytest.UsageError(f"--shard {value!r}; expected K/N with 1 <= K <= N, e.g. 2/3")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a real rig only the scenarios run (tests that take the ``rig`` fixture): the
    rest does not touch a kernel and has run on the simulator already. Tests marked
    ``vm_only`` run on the real driver only, ``sim_only`` on the simulator only. With
    ``--shard``, every N-th test from the K-th on (neighbours are alike in length, so
    shares even out)."""
    keep, dropped = [], []
    real_rig = config.getoption("--rig") != "sim"
    for item in items:
        if real_rig:
            wanted = ("rig" in getattr(item, "fixturenames", ())
                      and item.get_closest_marker("sim_only") is None)
        else:  # needs what only the real driver has (its sysfs, udev)
            wanted = item.get_closest_marker("vm_only") is None
        (keep if wanted else dropped).append(item)
    shard = _shard(config.getoption("--shard"))
    if shard is not None:
        k, n = shard
        dropped += [item for i, item in enumerate(keep) if i % n != k - 1]
        keep = [item for i, item in enumerate(keep) if i % n == k - 1]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    watch = config.stash.get(stall_watch_key, None)
    if watch is not None:
        for item in keep:
            item.add_marker(pytest.mark.flaky(reruns=1,
                                              condition=_rerun_if_starved(item, watch)))


@pytest.fixture(scope="session")
def rig(request: pytest.FixtureRequest) -> Rig:
    return make_rig(request.config.getoption("--rig"))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory):
    previous = os.environ.get("UASCALL_CACHE")
    os.environ["UASCALL_CACHE"] = str(tmp_path_factory.mktemp("uascall-cache"))
    yield
    if previous is None:
        os.environ.pop("UASCALL_CACHE", None)
    else:
        os.environ["UASCALL_CACHE"] = previous
