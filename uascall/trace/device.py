"""The device seam's tap: a DeviceIO that reports what crosses it to the engine's taps.

:class:`TapDeviceIO` passes every call to another :class:`~uascall.dahdi.device.DeviceIO`
(the simulated kernel, or the real driver through
:class:`~uascall.dahdi.device.OsDeviceIO`) and learns which descriptor is which channel as
the binding opens them: from ``/dev/dahdi/chan/SSS/CCC``, or from DAHDI_SPECIFY on
``/dev/dahdi/channel``, it asks the channel's DAHDI_GET_PARAMS once for its span, position
and signalling. An HDLC channel is a D-channel: what is read (a frame and its 2 FCS
bytes) and written (a frame and the 2 bytes the kernel overwrites with the FCS) goes to
``taps.frame`` without the FCS. Any other channel carries audio: each block read or
written goes to ``taps.audio`` with the channel's law (DAHDI_SETLAW, DAHDI_SETLINEAR
are followed). An audio channel opened while nobody listens to audio is not followed at
all (a call's B-channel is opened for the call: a listener added later hears the calls
that start after it).

Everything it does for the taps is guarded: a failure there is logged once and the
descriptor is no longer tapped; the syscall's own result or error is the caller's as if
the tap were not there.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import re
from dataclasses import dataclass

from uascall.dahdi import abi
from uascall.dahdi.device import DeviceIO, IoctlArg
from uascall.engine import Engine

log = logging.getLogger(__name__)

FCS_LENGTH = 2
_CHAN_PATH = re.compile(r".*/chan/\d+/\d+")
_LAWS = {abi.DAHDI_LAW_ALAW: "alaw", abi.DAHDI_LAW_MULAW: "ulaw"}


def tap_devices(io: DeviceIO, engine: Engine, *, network: bool) -> DeviceIO:
    """``io`` itself, or a :class:`TapDeviceIO` around it when ``engine.taps.devices`` is
    set: what a backend calls where it picks the DeviceIO of its own spans and ports.
    ``network``: whether our side of those spans is libpri's network (NET) node."""
    if not engine.taps.devices:
        return io
    return TapDeviceIO(io, engine, network=network)


@dataclass(slots=True)
class _Tapped:
    """What is known of one open descriptor."""

    span: int
    channo: int
    chanpos: int
    dchannel: bool
    law: str
    linear: bool
    stream: int
    io: DeviceIO  # what reads and writes its data below this tap (DeviceIO.data_io)


class TapDeviceIO(DeviceIO):
    """``io`` with every D-channel frame and audio block reported to ``engine.taps``."""

    _streams = itertools.count(1)  # numbers each opening of an audio channel, process-wide

    def __init__(self, io: DeviceIO, engine: Engine, *, network: bool) -> None:
        self.io = io
        self.engine = engine
        self.taps = engine.taps
        self.network = network
        self._fds: dict[int, _Tapped] = {}
        self._failed = False

    def describe(self) -> str:
        return f"{self.io.describe()}, tapped"

    def data_io(self, fd: int) -> DeviceIO:
        # a channel not followed (a B-channel when nobody listens to audio) costs nothing
        return self if fd in self._fds else self.io.data_io(fd)

    # ------------------------------------------------------------------ the seam
    def open(self, path: str, flags: int) -> int:
        fd = self.io.open(path, flags)
        if _CHAN_PATH.fullmatch(path):
            self._learn(fd)
        return fd

    def close(self, fd: int) -> None:
        self._fds.pop(fd, None)
        self.io.close(fd)

    def read(self, fd: int, size: int) -> bytes:
        tapped = self._fds.get(fd)
        if tapped is None:
            return self.io.read(fd, size)
        data = tapped.io.read(fd, size)
        if data:
            audio = self.taps.audio
            if audio is not None and not tapped.dchannel and type(data) is bytes and not (
                    tapped.linear):
                try:  # the common case, as in write()
                    audio(self.engine.time(), tapped.stream, tapped.span, tapped.chanpos,
                          False, tapped.law, data)
                except Exception:
                    self._tap_failed()
            else:
                self._report(tapped, False, data)
        return data

    def may_read(self, fd: int) -> bool:
        return self.io.may_read(fd)

    def write(self, fd: int, data: bytes) -> int:
        tapped = self._fds.get(fd)
        if tapped is None:
            return self.io.write(fd, data)
        written = tapped.io.write(fd, data)
        if written > 0:
            audio = self.taps.audio
            if audio is not None and not tapped.dchannel and written == len(data) and type(
                    data) is bytes and not tapped.linear:
                # the common case, 960 channels' 50 frames a second: no more than needed
                try:
                    audio(self.engine.time(), tapped.stream, tapped.span, tapped.chanpos,
                          True, tapped.law, data)
                except Exception:
                    self._tap_failed()
            else:
                self._report(tapped, True, data if written == len(data) else data[:written])
        return written

    def ioctl(self, fd: int, request: int, arg: IoctlArg = 0) -> int:
        result = self.io.ioctl(fd, request, arg)
        if request == abi.DAHDI_SPECIFY:
            self._learn(fd)
        elif request == abi.DAHDI_SETLAW or request == abi.DAHDI_SETLINEAR:
            tapped = self._fds.get(fd)
            if tapped is not None:
                self._follow_mode(fd, tapped, request, arg)
        return result

    # ------------------------------------------------------------------ what is learnt
    def _learn(self, fd: int) -> None:
        if self._failed:
            return
        params = abi.DahdiParams()
        try:
            self.io.ioctl(fd, abi.DAHDI_GET_PARAMS, params)
        except OSError as exc:
            log.debug("fd %d: not tapped, DAHDI_GET_PARAMS failed: %s", fd, exc)
            return
        dchannel = bool(params.sigtype & abi.DAHDI_SIG_HDLCRAW == abi.DAHDI_SIG_HDLCRAW
                        or params.sigtype == abi.DAHDI_SIG_HARDHDLC)
        if not dchannel and self.taps.audio is None:
            return  # nobody listens to audio: its reads and writes pass a dict test only
        self._fds[fd] = _Tapped(params.spanno, params.channo, params.chanpos, dchannel,
                                _LAWS.get(params.curlaw, "ulaw"), False,
                                0 if dchannel else next(self._streams),
                                self.io.data_io(fd))

    def _follow_mode(self, fd: int, tapped: _Tapped, request: int, arg: IoctlArg) -> None:
        value = arg.value if isinstance(arg, ctypes.c_int) else arg
        if request == abi.DAHDI_SETLINEAR:
            tapped.linear = bool(value)
            return
        law = _LAWS.get(value) if isinstance(value, int) else None
        if law is None:  # DAHDI_LAW_DEFAULT: the span's, as the kernel now reports it
            params = abi.DahdiParams()
            try:
                self.io.ioctl(fd, abi.DAHDI_GET_PARAMS, params)
            except OSError:
                return
            law = _LAWS.get(params.curlaw, tapped.law)
        tapped.law = law

    def _report(self, tapped: _Tapped, sent: bool, data: bytes) -> None:
        taps = self.taps
        try:
            if tapped.dchannel:
                if taps.frame is not None and len(data) > FCS_LENGTH:
                    taps.frame(self.engine.time(), tapped.span, tapped.channo, sent,
                               self.network, bytes(data[:-FCS_LENGTH]))
            elif taps.audio is not None:
                taps.audio(self.engine.time(), tapped.stream, tapped.span, tapped.chanpos,
                           sent, "s16le" if tapped.linear else tapped.law,
                           data if type(data) is bytes else bytes(data))
        except Exception:
            self._tap_failed()

    def _tap_failed(self) -> None:
        # Taps.listen guards its listeners; this is the seam's own bookkeeping failing.
        if not self._failed:
            log.exception("the device tap failed; nothing more is tapped here")
        self._failed = True
        self._fds.clear()
