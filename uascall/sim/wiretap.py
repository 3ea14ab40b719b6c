"""Watching, losing and injecting D-channel frames at the device seam, on any kernel.

:class:`WireTap` is a :class:`~uascall.dahdi.device.DeviceIO` that passes every call to
another one (the simulated kernel, or the real driver through
:class:`~uascall.dahdi.device.OsDeviceIO`) and sees each HDLC frame our code writes on the
D-channels it is told about. Because both ends of a looped pair are ours (the span under
test and the exchange), what the two sides write is exactly what crosses the wire. So a
test can decode the wire, lose or rewrite a frame, cut layer 2, or inject a frame from
the peer's side, and the same test runs on the simulator and on the real DAHDI driver in
the vm rig.
"""

from __future__ import annotations

import ctypes
import logging
import re
from collections.abc import Callable, Mapping

from uascall.dahdi import abi
from uascall.dahdi.device import DeviceIO, IoctlArg
from uascall.sim.model import FrameRecord

log = logging.getLogger(__name__)

FCS_LENGTH = 2  # what libpri appends for the kernel to overwrite with the real FCS


class WireTap(DeviceIO):
    """``io`` with taps on the D-channels in ``peers`` (D-channel -> its peer's D-channel).

    ``frame_taps`` get a :class:`~uascall.sim.model.FrameRecord` for every frame written
    on a tapped D-channel (without the FCS). ``frame_filter(channo, frame)`` may rewrite a
    frame or, returning None, lose it. ``clock`` timestamps the records.
    """

    def __init__(self, io: DeviceIO, peers: Mapping[int, int],
                 clock: Callable[[], float]) -> None:
        self.io = io
        self.peers = dict(peers)
        self.clock = clock
        self.frame_taps: list[Callable[[FrameRecord], None]] = []
        self.frame_filter: Callable[[int, bytes], bytes | None] | None = None
        self._cut: set[int] = set()
        self._channel_of: dict[int, int] = {}  # fd -> channel number, for tapped channels
        # reads pass straight through (every B-channel block: no call of ours between)
        self.read = io.read  # type: ignore[method-assign]
        self.may_read = io.may_read  # type: ignore[method-assign]

    def describe(self) -> str:
        return f"{self.io.describe()}, D-channels tapped"

    def data_io(self, fd: int) -> DeviceIO:
        return self if fd in self._channel_of else self.io.data_io(fd)

    # ------------------------------------------------------------------ test controls
    def cut(self, dchannel: int, cut: bool = True) -> None:
        """Lose every frame between ``dchannel`` and its peer, both ways (layer 2 breaks,
        layer 1 stays up)."""
        pair = {dchannel, self.peers[dchannel]}
        self._cut = self._cut | pair if cut else self._cut - pair

    def inject_frame(self, dchannel: int, frame: bytes) -> None:
        """Deliver ``frame`` (without FCS) to ``dchannel``'s reader by writing it on its
        peer's D-channel, bypassing the taps: for feeding malformed Q.931 to the layer
        above. The peer must be open."""
        peer = self.peers[dchannel]
        fds = [fd for fd, channo in self._channel_of.items() if channo == peer]
        if not fds:
            raise ValueError(f"D-channel {peer} (the peer of {dchannel}) is not open; "
                             "expected both spans of the pair started")
        self.io.write(fds[0], frame + bytes(FCS_LENGTH))

    # ------------------------------------------------------------------ the seam
    def open(self, path: str, flags: int) -> int:
        fd = self.io.open(path, flags)
        match = re.fullmatch(r".*/(\d+)", path)
        if match and int(match.group(1)) in self.peers:
            self._channel_of[fd] = int(match.group(1))
        elif re.fullmatch(r".*/chan/\d{3}/\d{3}", path):
            params = abi.DahdiParams()
            self.io.ioctl(fd, abi.DAHDI_GET_PARAMS, params)
            if params.channo in self.peers:
                self._channel_of[fd] = params.channo
        return fd

    def close(self, fd: int) -> None:
        self._channel_of.pop(fd, None)
        self.io.close(fd)

    def write(self, fd: int, data: bytes) -> int:
        channo = self._channel_of.get(fd)
        if channo is None or len(data) <= FCS_LENGTH:
            return self.io.write(fd, data)
        frame = data[:-FCS_LENGTH]
        if channo in self._cut:
            self._record(channo, frame, delivered=False)
            return len(data)
        if self.frame_filter is not None:
            rewritten = self.frame_filter(channo, frame)
            if rewritten is None:
                self._record(channo, frame, delivered=False)
                return len(data)
            frame = rewritten
        written = self.io.write(fd, frame + data[-FCS_LENGTH:])
        self._record(channo, frame, delivered=True)
        return written

    def ioctl(self, fd: int, request: int, arg: IoctlArg = 0) -> int:
        result = self.io.ioctl(fd, request, arg)
        if request == abi.DAHDI_SPECIFY:
            channo = arg.value if isinstance(arg, ctypes.c_int) else int(arg)  # type: ignore[arg-type]
            if channo in self.peers:
                self._channel_of[fd] = channo
        return result

    def _record(self, channo: int, frame: bytes, *, delivered: bool) -> None:
        record = FrameRecord(self.clock(), channo, self.peers[channo], frame, delivered)
        for tap in self.frame_taps:
            try:
                tap(record)
            except Exception:
                log.exception("frame tap failed on %r", record)
