"""The one error tree of uascall.

::

    UascallError
     +-- Error                    wrong state, misuse or a bad argument (the spec's R2)
     |    +-- ArgumentError       ... a bad argument (also a ValueError)
     |    +-- LocalProtocolError  ... we asked a protocol machine for a step it cannot take
     |    +-- DeviceError         ... a DAHDI device operation failed (also an OSError)
     |    +-- the backends' own: LibpriError; SdpError, NoCommonCodec, RtpError,
     |        DialogError, TransactionError, TransportError (SIP)
     +-- Hangup                   the call is gone: its state is IDLE (the spec's R1)
     +-- RemoteProtocolError      the far end (or the wire) sent something we cannot accept
     +-- BackendUnavailable       a backend cannot run here (also NotImplementedError)
          +-- LibpriUnavailable   libpri is missing or is not the version our layout was checked on

What can reach an application is Hangup or an Error: the backends' exceptions are
Errors too. Every message says what was wrong and what was expected; where a Q.850 cause
or a SIP status is known it is carried in the exception as well.
"""

from __future__ import annotations

import errno as _errno
import os


class UascallError(Exception):
    """Base class of every exception uascall raises on purpose."""


class Error(UascallError):
    """A call-control function was used in the wrong state or with a bad argument."""


class ArgumentError(Error, ValueError):
    """An argument is out of range or of the wrong kind."""


class LocalProtocolError(Error):
    """Our side asked a protocol state machine for a step it cannot take now.

    The machine is left unchanged; ``state`` and ``event`` name where it was refused.
    """

    def __init__(self, message: str, *, state: object = None, event: object = None) -> None:
        super().__init__(message)
        self.state = state
        self.event = event


class Hangup(UascallError):
    """The call has gone (its state is IDLE); ``cause`` says why when it is known."""

    def __init__(self, message: str, *, cause: object = None) -> None:
        super().__init__(message)
        self.cause = cause


class RemoteProtocolError(UascallError):
    """The far end sent something we cannot accept.

    ``cause`` is the Q.850 cause we clear with (PRI), ``status`` the SIP status we answer.
    """

    def __init__(self, message: str, *, cause: int | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        self.status = status


class BackendUnavailable(UascallError, NotImplementedError):
    """A backend, or a library it needs, cannot be used on this machine."""


class LibpriUnavailable(BackendUnavailable):
    """libpri cannot be loaded, or is not a version whose struct layout uascall has checked."""


class DeviceError(Error, OSError):
    """A DAHDI device operation failed.

    Keeps ``errno`` like any OSError and adds where it happened (``device``: a path or
    "channel 5"), what was being done (``operation``: "open", "DAHDI_SPECIFY", ...) and a
    ``hint`` that says what to do about it.
    """

    def __init__(self, err: int, device: str, operation: str, hint: str = "") -> None:
        name = _errno.errorcode.get(err, str(err))
        strerror = os.strerror(err) if err in _errno.errorcode else f"error {err}"
        message = f"{device}: {operation} failed: {strerror} ({name})"
        if hint:
            message += f"; {hint}"
        OSError.__init__(self, err, message)
        self.device = device
        self.operation = operation
        self.hint = hint

    def __str__(self) -> str:
        return str(self.strerror)
