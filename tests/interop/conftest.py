"""Interop tests: real SIP peers (SIPp, baresip) and tshark/sox.

Every test in this directory gets the ``interop`` marker. Without the tools the tests
are skipped, except when the ``CI`` environment variable is set (to anything but "",
"0", "false" or "no"): CI must install them, so there a missing tool makes every interop
test error out instead of silently skipping.

Fixtures:
- ``workdir``: a per-test directory (``tmp_path``) for traces, recordings, captures.
- ``sipp_uas``: SIPp running ``uas_183.xml`` (100, 183+SDP, 200+SDP after 300 ms, ACK,
  BYE) on a free port; a :class:`peers.SippServer` (``.target``, ``.uri()``).
- ``start_uas``: a factory for other stand-ins: ``start_uas("uas_183.xml",
  answer_ms=5000)``; every server it starts is stopped at the end of the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import in_ci
from tests.interop import peers

HERE = Path(__file__).resolve().parent

#: Variables the stand-in scenarios need, unless a test gives its own.
UAS_DEFAULTS: dict[str, dict[str, object]] = {
    "uas_183.xml": {"answer_ms": 300, "linger_ms": 0},
    "uas_183_ringback.xml": {"answer_ms": 1000, "linger_ms": 0},
    "uas_183_hangup.xml": {"answer_ms": 300, "hold_ms": 300},
    "uas_options.xml": {},
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "interop: needs sipp, baresip, tshark and sox (tests/interop); skipped "
        "without them unless CI is set, then an error")


def _here(item: pytest.Item) -> bool:
    return HERE in Path(str(item.path)).resolve().parents


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items: mark only those in this directory.
    for item in items:
        if _here(item):
            item.add_marker(pytest.mark.interop)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("interop") is None:
        return
    missing = peers.missing_tools()
    if not missing:
        return
    message = (f"interop tools missing: {', '.join(missing)} (Debian: apt-get install "
               "sip-tester baresip-core tshark sox)")
    if in_ci():
        pytest.fail(f"{message}; CI is set, so this is an error, not a skip",
                    pytrace=False)
    pytest.skip(message)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def start_uas(workdir: Path) -> Iterator[Callable[..., peers.SippServer]]:
    servers: list[peers.SippServer] = []

    def start(scenario: str = "uas_183.xml", *, copy_files: tuple[Path, ...] = (),
              rtp_echo: bool = False, **variables: object) -> peers.SippServer:
        values = {**UAS_DEFAULTS.get(scenario, {}), **variables}
        server = peers.SippServer(scenario, extra_vars=values, cwd=workdir,
                                  copy_files=copy_files, rtp_echo=rtp_echo)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def sipp_uas(start_uas: Callable[..., peers.SippServer]) -> peers.SippServer:
    return start_uas("uas_183.xml")
