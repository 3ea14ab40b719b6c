"""uascall.dahdi.libpri's hard-coded ABI against the installed libpri.h, and its loader.

The C probe is generated from the binding itself: every ctypes struct in EVENT_STRUCTS
(by ``_c_name_`` and ``_fields_``) and every module constant spelled like a libpri.h name,
so a name the header does not know is a compile error, not a skipped check.
"""

from __future__ import annotations

import ctypes
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import cprobe
from uascall.dahdi import libpri, libpri_abi
from uascall.errors import LibpriUnavailable

REPO = Path(__file__).resolve().parents[2]
_C_NAME = re.compile(r"^(PRI|PRES)_[A-Z0-9_]+$")


def _constants() -> dict[str, int]:
    found = {name: value for name, value in vars(libpri_abi).items()
             if _C_NAME.match(name) and type(value) is int}
    # The enums must agree with the C names they shadow.
    for enum, prefix in ((libpri_abi.Node, "PRI_"), (libpri_abi.Switch, "PRI_SWITCH_"),
                         (libpri_abi.Debug, "PRI_DEBUG_"), (libpri_abi.Timer, "PRI_TIMER_")):
        for member in enum:
            found[prefix + member.name] = int(member)
    return found


def _probe_source() -> str:
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <sys/time.h>",
             "#include <libpri.h>", "", "int main(void)", "{"]
    for struct in libpri_abi.EVENT_STRUCTS:
        c = struct._c_name_
        lines.append(f'\tprintf("S\\t{c}\\t%zu\\t%zu\\n", sizeof({c}), _Alignof({c}));')
        for field, _ in struct._fields_:
            lines.append(f'\tprintf("F\\t{c}\\t{field}\\t%zu\\t%zu\\n", offsetof({c}, {field}), '
                         f'sizeof((({c} *)0)->{field}));')
    for name in sorted(_constants()):
        lines.append(f'\tprintf("C\\t{name}\\t%lld\\n", (long long)({name}));')
    lines += ["\treturn 0;", "}", ""]
    return "\n".join(lines)


def _mismatches(output: str) -> tuple[list[str], int]:
    structs = {s._c_name_: s for s in libpri.EVENT_STRUCTS}
    constants = _constants()
    bad, checked = [], 0
    for line in output.splitlines():
        kind, *rest = line.split("\t")
        checked += 1
        if kind == "S":
            c, size, align = rest[0], int(rest[1]), int(rest[2])
            got = (ctypes.sizeof(structs[c]), ctypes.alignment(structs[c]))
            if got != (size, align):
                bad.append(f"sizeof/_Alignof({c}): C {size}/{align}, ctypes {got[0]}/{got[1]}")
        elif kind == "F":
            c, field, offset, size = rest[0], rest[1], int(rest[2]), int(rest[3])
            desc = getattr(structs[c], field)
            if (desc.offset, desc.size) != (offset, size):
                bad.append(f"{c}.{field}: C offset {offset} size {size}, "
                           f"ctypes offset {desc.offset} size {desc.size}")
        else:
            name, value = rest[0], int(rest[1])
            if constants[name] != value:
                bad.append(f"{name}: C {value}, libpri.py {constants[name]}")
    return bad, checked


def test_pri_event_layout_and_constants_match_libpri_h() -> None:
    cprobe.require_header("libpri.h", "libpri-dev")
    output = cprobe.run_c(_probe_source(), libs=())
    bad, checked = _mismatches(output)
    expected = (len(libpri.EVENT_STRUCTS) + sum(len(s._fields_) for s in libpri.EVENT_STRUCTS)
                + len(_constants()))
    assert checked == expected, f"probe printed {checked} lines, expected {expected}"
    assert not bad, f"{len(bad)} of {checked} ABI checks differ from libpri.h:\n" + "\n".join(bad)


def test_union_is_as_large_as_its_largest_member() -> None:
    # sizeof(pri_event) is checked above; the ring view must be the member that sets it, or
    # a view we do not declare would be larger in C than our union.
    assert ctypes.sizeof(libpri.PriEvent) == ctypes.sizeof(libpri.PriEventRing) == 2976


def test_probe_reports_a_shifted_field() -> None:
    # The comparison itself must catch a wrong offset (the prototype's classic trap: the
    # pointer after five ints in pri_event_ring sits at 1856, not 1852).
    output = cprobe.run_c(_probe_source(), libs=())
    shifted = output.replace("F\tpri_event_ring\tcall\t1856\t8", "F\tpri_event_ring\tcall\t1852\t8")
    assert shifted != output
    bad, _ = _mismatches(shifted)
    assert bad == ["pri_event_ring.call: C offset 1852 size 8, ctypes offset 1856 size 8"]


def test_event_names_cover_every_event_constant() -> None:
    codes = {v for k, v in vars(libpri).items() if k.startswith("PRI_EVENT_")}
    assert set(libpri.EVENT_NAMES) == codes == set(range(1, 28))
    assert libpri.event_name(libpri.PRI_EVENT_HANGUP_REQ) == "HANGUP_REQ"
    assert libpri.event_name(99) == "UNKNOWN(99)"


def test_import_does_not_load_libpri() -> None:
    code = ("import uascall.dahdi, uascall.dahdi.libpri as m\n"
            "maps = open('/proc/self/maps').read()\n"
            "assert 'libpri.so' not in maps, 'libpri mapped at import'\n"
            "assert m._library is None\n"
            "print('not loaded')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "not loaded"


def test_unsupported_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libpri, "_library", None)
    monkeypatch.setattr(libpri, "SUPPORTED_VERSIONS", {"9.9.9"})
    with pytest.raises(LibpriUnavailable) as info:
        libpri.load()
    message = str(info.value)
    assert "libpri 1.6.0 found at /" in message and "libpri.so.1.4" in message
    assert "supports only 9.9.9" in message
    assert "pri_event struct layout is hard-coded" in message
    assert "tests/sim/test_libpri_layout.py" in message
    assert isinstance(info.value, NotImplementedError)


def test_missing_library_names_what_was_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libpri, "_library", None)
    monkeypatch.setenv(libpri.ENV_LIBRARY, "/nonexistent/libpri.so.1.4")
    with pytest.raises(LibpriUnavailable) as info:
        libpri.Pri(libpri.Node.CPE, libpri.Switch.EUROISDN_E1, read=lambda: None,
                   write=lambda data: None)
    message = str(info.value)
    assert "/nonexistent/libpri.so.1.4" in message
    assert "apt-get install libpri1.4" in message
    assert libpri._library is None


def test_loading_is_cached() -> None:
    first = libpri.load()
    assert libpri.load() is first
    assert first.version in libpri.SUPPORTED_VERSIONS
    assert libpri.cause_text(libpri.PRI_CAUSE_USER_BUSY) == "User busy"
