"""The vm rig reruns a scenario once only when it failed while the guest was held off its
CPU (tests/conftest.py, tests/stall_watch.py); the simulator never reruns.

Each case runs pytest on a small test file with our conftest as a plugin. A "stall" is
the real thing: the test process stops itself (SIGSTOP) and a child wakes it 250 ms
later, as a host that leaves a guest off its CPU does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCENARIOS = textwrap.dedent('''
    import os, signal, subprocess, time
    import pytest

    ATTEMPTS = {}

    @pytest.fixture
    def rig():  # stands in for the vm rig: the conftest keeps tests that take one
        return None

    def held(seconds):
        subprocess.Popen(["sh", "-c", f"sleep {seconds}; kill -CONT {os.getpid()}"])
        os.kill(os.getpid(), signal.SIGSTOP)
        time.sleep(0.05)  # the watch's next wake-up sees how late it is

    def attempt(name):
        ATTEMPTS[name] = ATTEMPTS.get(name, 0) + 1
        return ATTEMPTS[name]

    def test_fails_once_while_held(rig):
        if attempt("once") == 1:
            held(0.25)
            assert False, "a key was lost"

    def test_fails_on_time(rig):
        assert False, "a wrong cause"

    def test_fails_twice_while_held(rig):
        attempt("twice")
        held(0.25)
        assert False, "a key was lost"

    def test_passes_while_held(rig):
        held(0.25)
''')


def run_pytest(tmp_path: Path, rig: str, test: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_scenarios.py").write_text(SCENARIOS)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("UASCALL_SHARD", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-p", "no:xdist", "--rig", rig, "-q", f"test_scenarios.py::{test}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def summary(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    last = result.stdout.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", last)}


@pytest.mark.parametrize(("test", "counts", "code"), [
    ("test_fails_once_while_held", {"passed": 1, "rerun": 1}, 0),
    ("test_fails_on_time", {"failed": 1}, 1),
    ("test_fails_twice_while_held", {"failed": 1, "rerun": 1}, 1),
    ("test_passes_while_held", {"passed": 1}, 0),
])
def test_vm_rig_reruns_once_what_failed_while_held(tmp_path: Path, test: str,
                                                    counts: dict[str, int], code: int):
    result = run_pytest(tmp_path, "vm", test)
    assert summary(result) == counts, result.stdout + result.stderr
    assert result.returncode == code
    said = re.search(r"vm rig: \S+ failed in a run where the guest was held (\d+) ms",
                     result.stdout)
    if "rerun" in counts:
        assert said and int(said.group(1)) >= 200, result.stdout
        assert "a key was lost -- running it once more" in result.stdout
    else:
        assert said is None, result.stdout


def test_simulator_never_reruns(tmp_path: Path):
    result = run_pytest(tmp_path, "sim", "test_fails_once_while_held")
    assert summary(result) == {"failed": 1}, result.stdout + result.stderr
