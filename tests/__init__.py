"""uascall's tests (see README: the simulator tier, the interop tier, the vm rig)."""

from __future__ import annotations

import os


def in_ci() -> bool:
    """Whether this run is CI's (``CI`` set, and not "", "0", "false" or "no"): a tool a
    test needs that is missing is then a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
