"""Test-wide settings: caches go to a temporary directory, never the user's home."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory):
    previous = os.environ.get("UASCALL_CACHE")
    os.environ["UASCALL_CACHE"] = str(tmp_path_factory.mktemp("uascall-cache"))
    yield
    if previous is None:
        os.environ.pop("UASCALL_CACHE", None)
    else:
        os.environ["UASCALL_CACHE"] = previous
