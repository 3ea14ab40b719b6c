"""Check uascall.dahdi.abi against the real <dahdi/user.h>, compiled by gcc.

The C program is generated from abi.py's own names: every request in ``abi.IOCTLS``, every
module-level ``DAHDI_*``/``ELAST`` integer and every struct with a ``_c_name_``, field by
field. A name the header does not know is a compile error; a value, size, offset or
signedness that differs is listed in one assertion message. Nothing here repeats a number
from the header, so nothing here can agree with abi.py by being copied from it.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cprobe import require_header, run_c
from uascall.dahdi import abi

# Flexible array members ("struct dahdi_echocanparam params[0]") have no ctypes field;
# their records are laid out by hand after the header, so check they start where it ends.
_TRAILERS: dict[type[ctypes.Structure], tuple[str, type[ctypes.Structure]]] = {
    abi.DahdiEchoCanParams: ("params", abi.DahdiEchoCanParam),
}


def _constants() -> dict[str, int]:
    return {
        name: value
        for name, value in vars(abi).items()
        if (name.startswith("DAHDI_") or name == "ELAST")
        and type(value) is int
        and name not in abi.IOCTLS
    }


def _structs() -> list[type[ctypes.Structure]]:
    return [
        value
        for value in vars(abi).values()
        if isinstance(value, type)
        and issubclass(value, ctypes.Structure)
        and "_c_name_" in vars(value)
    ]


def _fields(cls: type[ctypes.Structure]) -> Iterator[tuple[str, Any]]:
    for field in cls._fields_:
        yield field[0], field[1]


def _kind(ctype: Any) -> tuple[str, int]:
    """('char' | 's' | 'u', bytes) of a scalar ctypes type or of an array's element."""
    if issubclass(ctype, ctypes.Array):
        ctype = ctype._type_
    if ctype is ctypes.c_char:
        return "char", 1
    return ("s" if ctype(-1).value < 0 else "u"), ctypes.sizeof(ctype)


_C_PRELUDE = """\
#include <sys/ioctl.h>
#include <stddef.h>
#include <stdio.h>
#include <linux/types.h>
#include <dahdi/user.h>

/* char is its own type for this builtin, distinct from signed and unsigned char. */
#define KIND(e) (__builtin_types_compatible_p(__typeof__(e), char) ? "char" \\
                 : ((__typeof__(e))-1 < (__typeof__(e))0 ? "s" : "u")), sizeof(e)

int main(void)
{
"""


def _c_source() -> str:
    lines = [_C_PRELUDE]
    for name in abi.IOCTLS:
        lines.append(f'\tprintf("ioctl {name} 0x%08lx\\n", (unsigned long)({name}));')
    for name in _constants():
        lines.append(f'\tprintf("const {name} %lld\\n", (long long)({name}));')
    for cls in _structs():
        c_type = f"struct {cls._c_name_}"
        lines.append(f'\tprintf("struct {cls._c_name_} %zu %zu\\n", '
                     f"sizeof({c_type}), _Alignof({c_type}));")
        for fname, ftype in _fields(cls):
            member = f"(({c_type} *)0)->{fname}"
            elem = f"{member}[0]" if issubclass(ftype, ctypes.Array) else member
            lines.append(f'\tprintf("field {cls._c_name_}.{fname} %zu %zu %s %zu\\n", '
                         f"offsetof({c_type}, {fname}), sizeof({member}), KIND({elem}));")
        if cls in _TRAILERS:
            fname, _ = _TRAILERS[cls]
            lines.append(f'\tprintf("trailer {cls._c_name_}.{fname} %zu %zu\\n", '
                         f"offsetof({c_type}, {fname}), sizeof((({c_type} *)0)->{fname}[0]));")
    lines.append("\treturn 0;\n}\n")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def c_side() -> dict[str, list[str]]:
    """What the compiler says, keyed "kind name" -> the remaining words of its line."""
    require_header("dahdi/user.h", "dahdi-source")
    result: dict[str, list[str]] = {}
    for line in run_c(_c_source()).splitlines():
        kind, name, *values = line.split()
        result[f"{kind} {name}"] = values
    return result


def _py_side() -> dict[str, list[str]]:
    """The same lines as the C program prints, computed from abi.py."""
    result: dict[str, list[str]] = {}
    for name, request in abi.IOCTLS.items():
        result[f"ioctl {name}"] = [f"{request:#010x}"]
    for name, value in _constants().items():
        result[f"const {name}"] = [str(value)]
    for cls in _structs():
        result[f"struct {cls._c_name_}"] = [str(ctypes.sizeof(cls)), str(ctypes.alignment(cls))]
        for fname, ftype in _fields(cls):
            field = getattr(cls, fname)
            kind, elem_size = _kind(ftype)
            result[f"field {cls._c_name_}.{fname}"] = [
                str(field.offset), str(field.size), kind, str(elem_size)]
        if cls in _TRAILERS:
            fname, elem = _TRAILERS[cls]
            result[f"trailer {cls._c_name_}.{fname}"] = [
                str(ctypes.sizeof(cls)), str(ctypes.sizeof(elem))]
    return result


_LEGEND = {
    "ioctl": "request",
    "const": "value",
    "struct": "sizeof alignof",
    "field": "offset size element-kind element-size",
    "trailer": "offset element-size",
}


def test_abi_matches_header(c_side: dict[str, list[str]]) -> None:
    py_side = _py_side()
    mismatches = []
    for key, py_values in py_side.items():
        c_values = c_side.get(key)
        if c_values != py_values:
            legend = _LEGEND[key.split()[0]]
            mismatches.append(f"{key} ({legend}): abi.py {' '.join(py_values)}, "
                              f"C {' '.join(c_values) if c_values else 'missing'}")
    mismatches.extend(f"{key}: printed by C, unknown to abi.py" for key in c_side.keys()
                      - py_side.keys())
    assert not mismatches, (f"{len(mismatches)} of {len(py_side)} ABI facts differ from "
                            "<dahdi/user.h>:\n  " + "\n  ".join(mismatches))


def test_check_covers_the_module() -> None:
    # A guard for the generator: an empty IOCTLS or a struct without _c_name_ would make
    # the header comparison pass while checking nothing.
    assert len(abi.IOCTLS) >= 40
    assert {cls.__name__ for cls in _structs()} >= {
        name for name, value in vars(abi).items()
        if isinstance(value, type) and issubclass(value, ctypes.Structure)}
    for name, request in abi.IOCTLS.items():
        assert getattr(abi, name) == request
        assert abi.IOCTL_NAMES[request] == name, f"{name} shares its number"


def test_ioc_refuses_oversized_argument() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        abi._IOW(abi.DAHDI_CODE, 1, ctypes.c_char * (1 << 14))


def test_event_name() -> None:
    assert abi.event_name(abi.DAHDI_EVENT_RINGOFFHOOK) == "RINGOFFHOOK"
    assert abi.event_name(abi.DAHDI_EVENT_NONE) == "NONE"
    assert abi.event_name(abi.DAHDI_EVENT_DTMFDOWN | ord("5")) == "DTMFDOWN('5')"
    assert abi.event_name(abi.DAHDI_EVENT_DTMFUP | ord("#")) == "DTMFUP('#')"
    assert abi.event_name(abi.DAHDI_EVENT_PULSEDIGIT | ord("0")) == "PULSEDIGIT('0')"
    assert abi.event_name(99) == "EVENT(99)"
    both = abi.DAHDI_EVENT_DTMFDOWN | abi.DAHDI_EVENT_DTMFUP | ord("1")
    assert abi.event_name(both) == f"EVENT({both})"


def test_every_plain_event_has_its_name() -> None:
    for name, value in vars(abi).items():
        if name.startswith("DAHDI_EVENT_") and value < abi.DAHDI_EVENT_PULSEDIGIT:
            assert abi.event_name(value) == name.removeprefix("DAHDI_EVENT_")


def test_alarm_names() -> None:
    assert abi.alarm_names(abi.DAHDI_ALARM_RED | abi.DAHDI_ALARM_YELLOW) == ["YELLOW", "RED"]
    assert abi.alarm_names(abi.DAHDI_ALARM_NONE) == []
    assert abi.alarm_names(abi.DAHDI_ALARM_LOS | 0x40) == ["ALARM(0x40)", "LOS"]
    assert abi.alarm_names(-1)[:2] == ["RECOVER", "LOOPBACK"]  # signed int with every bit


def test_sig_name() -> None:
    assert abi.sig_name(abi.DAHDI_SIG_CLEAR) == "CLEAR"
    assert abi.sig_name(abi.DAHDI_SIG_HDLCFCS) == "HDLCFCS"
    assert abi.sig_name(abi.DAHDI_SIG_FXSKS) == "FXSKS"
    assert abi.sig_name(abi.DAHDI_SIG_NONE) == "NONE"
    assert abi.sig_name(abi.DAHDI_SIG_BROKEN) == "BROKEN"
    assert abi.sig_name(abi.DAHDI_SIG_BROKEN & 0xFFFFFFFF) == "BROKEN"
    assert abi.sig_name(3) == "SIG(0x3)"


def test_law_name() -> None:
    assert abi.law_name(abi.DAHDI_LAW_MULAW) == "MULAW"
    assert abi.law_name(abi.DAHDI_LAW_ALAW) == "ALAW"
    assert abi.law_name(abi.DAHDI_LAW_DEFAULT) == "DEFAULT"
    assert abi.law_name(7) == "LAW(7)"
