"""A short run of every benchmark that offers one (``--smoke``: seconds, not minutes), so
that a benchmark broken by a change is found by CI, not by the next person to measure.

The figures of a smoke run mean nothing (the machine is busy with the other tests): only
that the benchmark ran to its end and said what it measured, in the ``RESULT name=value``
form its docstring promises.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SMOKED = sorted(path.name for path in BENCH.glob("*.py") if "--smoke" in path.read_text())
RESULT = re.compile(r"^RESULT( [a-z0-9_]+=\S+)+$", re.MULTILINE)


@pytest.mark.parametrize("script", SMOKED)
def test_the_benchmark_runs_to_its_result(script):
    done = subprocess.run([sys.executable, str(BENCH / script), "--smoke"],
                          cwd=BENCH.parent, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{script} --smoke failed:\n{done.stdout[-3000:]}\n" \
        f"{done.stderr[-3000:]}"
    assert RESULT.search(done.stdout), f"{script} --smoke printed no RESULT line:\n" \
        f"{done.stdout[-3000:]}"
