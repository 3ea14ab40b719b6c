"""FullPasses (uascall/collector.py): `uascall run`'s full GC passes, at a quiet moment or
at least every interval, with Python's own full passes off meanwhile."""

from __future__ import annotations

import gc
import types
import weakref

import pytest

from uascall import cli
from uascall.collector import NEVER, FullPasses


class Cycle:
    def __init__(self) -> None:
        self.me = self


class Server:
    def __init__(self) -> None:
        self.up = 0
        self.seen = 0
        self.now = 0.0

    def passes(self, interval: float = 600.0) -> FullPasses:
        return FullPasses(lambda: self.up, lambda: self.seen, interval=interval,
                          clock=lambda: self.now)


@pytest.fixture
def server():
    thresholds = gc.get_threshold()
    yield Server()
    gc.set_threshold(*thresholds)


def test_python_runs_no_full_pass_while_the_passes_are_ours(server):
    young, middle, old = gc.get_threshold()
    with server.passes():
        assert gc.get_threshold() == (young, middle, NEVER)
    assert gc.get_threshold() == (young, middle, old)


def test_a_pass_when_no_call_is_up_and_calls_have_come_and_gone(server):
    with server.passes() as passes:
        assert passes.poll() is None  # quiet from the start: nothing to free
        server.up, server.seen = 2, 2
        assert passes.poll() is None  # calls up: not now
        server.up = 0
        garbage = Cycle()
        freed = weakref.ref(garbage)
        del garbage
        assert freed() is not None
        assert passes.poll() is not None
        assert freed() is None
        assert passes.poll() is None  # still quiet, and no call since: no second pass
        assert passes.passes == 1


def test_a_pass_every_interval_while_calls_are_always_up(server):
    server.up, server.seen = 500, 500
    with server.passes(interval=600.0) as passes:
        for second in range(1, 1800):
            server.now = float(second)
            server.seen += 100
            passes.poll()
        assert passes.passes == 2  # at 600 s and at 1,200 s


def test_a_python_full_pass_would_have_come_and_does_not(server):
    """Objects that live long (a call's, while it is up) start Python's full passes
    (generation 2) by themselves; under FullPasses none runs until a poll is due."""
    passes_by_generation = [0, 0, 0]

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            passes_by_generation[info["generation"]] += 1

    gc.callbacks.append(count)
    try:
        with server.passes():
            kept = [[] for _ in range(200_000)]  # tracked, and promoted as they live on
            gc.collect(1)
            more = [[] for _ in range(200_000)]
        assert passes_by_generation[2] == 0
        baseline = list(passes_by_generation)
        # Python's rule: a quarter more long-lived objects than at its last full pass
        enough = max(200_000, len(gc.get_objects()) // 2)
        kept += [[] for _ in range(enough)]
        more += [[] for _ in range(enough)]
        assert passes_by_generation[2] > baseline[2]  # Python's own, once ours end
    finally:
        gc.callbacks.remove(count)
    del kept, more


def test_an_interval_that_is_no_time_is_refused():
    with pytest.raises(ValueError, match="expected a positive number of seconds"):
        FullPasses(lambda: 0, lambda: 0, interval=0.0)


@pytest.mark.parametrize(("argv", "ours"), [([], True), (["--full-gc-every", "30"], True),
                                            (["--full-gc-every", "0"], False)])
def test_uascall_run_takes_the_full_passes_unless_told_not_to(server, argv, ours):
    host = types.SimpleNamespace(running_count=0, total_calls=0)
    args = cli.build_parser().parse_args(["run", "app.py", *argv])
    before = gc.get_threshold()
    with cli._full_gc_passes(args, host) as passes:
        assert (gc.get_threshold()[2] == NEVER) is ours
        host.total_calls = 1  # a call came and went: a quiet moment
        assert (passes.poll() is not None) is ours
    assert gc.get_threshold() == before
