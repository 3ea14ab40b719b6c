"""Test-wide settings: caches go to a temporary directory, never the user's home; the
``rig`` fixture and the ``--rig`` option choose where dahdi scenarios run."""

from __future__ import annotations

import os

import pytest

from tests.rigs import RIGS, Rig, make_rig


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--rig", choices=RIGS, default=os.environ.get("UASCALL_RIG", "sim"),
                     help="where dahdi scenarios run: sim (the simulated kernel, default) "
                     "or vm (the real driver; inside tests/hw/vm-rig.sh only)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a real rig only the scenarios run (tests that take the ``rig`` fixture): the
    rest does not touch a kernel and has run on the simulator already."""
    if config.getoption("--rig") == "sim":
        return
    keep, dropped = [], []
    for item in items:
        (keep if "rig" in getattr(item, "fixturenames", ()) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


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
