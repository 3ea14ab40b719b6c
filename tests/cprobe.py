"""Compile a small C program against the system headers and return what it prints.

The ABI tests use this to ask the real C compiler, reading Debian's real headers
(`dahdi/user.h` from dahdi-source, `libpri.h` from libpri-dev), for the numbers our
ctypes code hard-codes. The C source is generated from the Python side's names, so a
name the header does not know is a compile error, not a silently skipped check.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

_BUILD_DIR = Path(tempfile.gettempdir()) / f"uascall-cprobe-{os.getuid()}"


class ProbeError(RuntimeError):
    pass


def require_header(header: str, package: str) -> Path:
    """Fail (never skip) with an install hint when a header the check needs is missing."""
    for base in ("/usr/include", "/usr/local/include"):
        path = Path(base) / header
        if path.exists():
            return path
    raise ProbeError(f"<{header}> is not installed; the ABI check needs it: "
                     f"apt-get install {package} (scripts/setup.sh does this)")


def run_c(source: str, *, libs: tuple[str, ...] = ()) -> str:
    """Build `source` with gcc (cached by content) and return its standard output."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise ProbeError("no C compiler found: apt-get install gcc")
    _BUILD_DIR.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256((source + repr(libs)).encode()).hexdigest()[:16]
    exe = _BUILD_DIR / f"probe-{digest}"
    if not exe.exists():
        src = _BUILD_DIR / f"probe-{digest}.c"
        src.write_text(source)
        tmp = exe.with_suffix(".tmp")
        result = subprocess.run(
            [compiler, "-O0", "-Wall", "-o", str(tmp), str(src), *[f"-l{lib}" for lib in libs]],
            capture_output=True, text=True)
        if result.returncode != 0:
            raise ProbeError(f"compiling the probe failed:\n{result.stderr}\n"
                             f"--- source ---\n{source}")
        tmp.rename(exe)
    result = subprocess.run([str(exe)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ProbeError(f"probe exited {result.returncode}: {result.stderr}")
    return result.stdout
