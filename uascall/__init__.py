"""uascall: a blocking, thread-per-call telephony channel API over DAHDI, SIP and a simulator.

This package holds no I/O of its own at import time; backends are imported when they are
first used, so ``import uascall`` works on a machine without DAHDI or libpri.
"""

from uascall.errors import (
    ArgumentError,
    BackendUnavailable,
    DeviceError,
    Error,
    Hangup,
    LibpriUnavailable,
    LocalProtocolError,
    RemoteProtocolError,
    UascallError,
)

__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "BackendUnavailable",
    "DeviceError",
    "Error",
    "Hangup",
    "LibpriUnavailable",
    "LocalProtocolError",
    "RemoteProtocolError",
    "UascallError",
    "__version__",
]
