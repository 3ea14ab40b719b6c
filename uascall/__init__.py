"""uascall: a blocking, thread-per-call telephony channel API over DAHDI, SIP and a simulator.

Applications are written in the style of Aculab UAS: ``main(channel, ...)`` gets a
:class:`UASCallChannel` and calls ``ring()``, ``answer()``, ``hang_up()``... This package
does no I/O at import time and loads no backend: they are imported when first opened
(:func:`open_backend`), so ``import uascall`` works on a machine without DAHDI or libpri.
"""

from uascall.backend import Cause, open_backend
from uascall.channel import (
    CallDetails,
    FilePlayer,
    State,
    TonePlayer,
    TransferCause,
    UASCallChannel,
)
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
from uascall.media.playable import PlayableMedia
from uascall.media.tones import ToneManager

__version__ = "0.2.0"

__all__ = [
    "ArgumentError",
    "BackendUnavailable",
    "CallDetails",
    "Cause",
    "DeviceError",
    "Error",
    "FilePlayer",
    "Hangup",
    "LibpriUnavailable",
    "LocalProtocolError",
    "PlayableMedia",
    "RemoteProtocolError",
    "State",
    "ToneManager",
    "TonePlayer",
    "TransferCause",
    "UASCallChannel",
    "UascallError",
    "__version__",
    "open_backend",
]
