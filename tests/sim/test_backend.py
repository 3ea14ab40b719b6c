"""Backends found by name, python-can style: a table plus entry points, imported lazily."""

from __future__ import annotations

import pytest

from uascall import backend
from uascall.engine import Engine
from uascall.errors import ArgumentError, BackendUnavailable
from uascall.sim.backend import SimBackend


def test_known_backends_include_the_installed_entry_points():
    known = backend.known_backends()
    assert known["sim"] == "uascall.sim.backend:SimBackend"
    assert known["dahdi"] == "uascall.dahdi.backend:DahdiBackend"


def test_open_backend_by_name():
    with Engine() as engine:
        assert isinstance(backend.open_backend("sim", engine, kind="T1"), SimBackend)


def test_unknown_and_broken_backends_say_what_is_wrong(monkeypatch):
    with pytest.raises(ArgumentError,
                       match="unknown backend 'x'; expected one of dahdi, modem, sim"):
        backend.backend_class("x")
    monkeypatch.setitem(backend.BACKENDS, "broken", "uascall.no_such_module:Thing")
    with pytest.raises(BackendUnavailable, match=r"cannot import uascall\.no_such_module"):
        backend.backend_class("broken")
    monkeypatch.setitem(backend.BACKENDS, "hollow", "uascall.backend:NoSuchClass")
    with pytest.raises(BackendUnavailable, match=r"uascall\.backend has no NoSuchClass"):
        backend.backend_class("hollow")
