"""What can reach an application is Hangup or an Error, whatever layer raised it."""

from __future__ import annotations

import pytest

from uascall.dahdi.libpri import LibpriError
from uascall.errors import DeviceError, Error
from uascall.sip.dialog import DialogError
from uascall.sip.rtp import RtpError
from uascall.sip.sdp import NoCommonCodec, SdpError
from uascall.sip.transaction import TransactionError
from uascall.sip.transport import TransportError


@pytest.mark.parametrize("kind", [LibpriError, DeviceError, SdpError, NoCommonCodec, RtpError,
                                  DialogError, TransactionError, TransportError])
def test_the_backends_exceptions_are_errors(kind):
    assert issubclass(kind, Error)


def test_device_errors_keep_their_errno():
    exc = DeviceError(5, "channel 3", "read")
    assert isinstance(exc, OSError) and exc.errno == 5 and "channel 3" in str(exc)
