"""One DAHDI channel device, and the seam every syscall on it goes through.

:class:`DeviceIO` is the only place the binding touches the operating system for DAHDI:
``open``, ``close``, ``read``, ``write`` and ``ioctl``. :class:`OsDeviceIO` makes the real
syscalls; the simulated kernel (:mod:`uascall.sim.kernel`) implements the same five
methods over real descriptors that it makes ready itself, so everything above this
module runs unchanged on boards, in the qemu rig and on the simulator.

A :class:`Channel` is non-blocking and never waits: the engine polls its descriptor for
``EPOLLIN | EPOLLPRI`` and calls :meth:`Channel.read_frame`. DAHDI reports a queued
signalling event as POLLPRI and by failing ``read``/``write`` with errno 500 (ELAST);
either way the channel drains the queue with DAHDI_GETEVENT and hands each event to its
``on_event`` callback before the data moves again.

All methods must be called from one thread (the engine's).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import select
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from uascall.dahdi import abi
from uascall.errors import ArgumentError, DeviceError

log = logging.getLogger(__name__)

DEV_DIR = "/dev/dahdi"
#: write buffers (20 ms blocks) a voice channel keeps: a player's three frames of lead and
#: one for the phase between its clock and the line's
MEDIA_NUMBUFS = 4
UDEV_HINT = ("give this user access to /dev/dahdi: 'sudo bash udev/install.sh USER' from the "
             "uascall source installs the rules (group dahdi, mode 0660) and adds USER to "
             "that group (see udev/README.md)")

IoctlArg = ctypes.Structure | ctypes.c_int | int


class DeviceIO:
    """The five syscalls the binding makes on DAHDI devices (the simulator's seam).

    ``ioctl`` gets the request number and either an int (no argument) or a mutable ctypes
    object that the call may fill in, exactly as ``fcntl.ioctl(fd, req, obj, True)`` does;
    it returns the syscall's non-negative result. Failures raise ``OSError`` with the errno
    the kernel would return.
    """

    def open(self, path: str, flags: int) -> int:
        raise NotImplementedError

    def close(self, fd: int) -> None:
        raise NotImplementedError

    def read(self, fd: int, size: int) -> bytes:
        raise NotImplementedError

    def write(self, fd: int, data: bytes) -> int:
        raise NotImplementedError

    def ioctl(self, fd: int, request: int, arg: IoctlArg = 0) -> int:
        raise NotImplementedError

    def may_read(self, fd: int) -> bool:
        """False when a read of ``fd`` is known to fail with EAGAIN now (nothing waiting,
        no event queued); True when it may succeed, or nobody knows: a real device is
        read until EAGAIN, which tells. A simulator that keeps the data itself answers,
        so that a reader stops without the failed read."""
        return True

    def data_io(self, fd: int) -> DeviceIO:
        """The DeviceIO that should read and write ``fd``'s data: this one. A wrapper with
        nothing to do on that descriptor's data (a tap on the D-channels, a B-channel fd)
        hands out the one it wraps, so that 50 blocks a second each way do not pass it."""
        return self

    def describe(self) -> str:
        return type(self).__name__


class OsDeviceIO(DeviceIO):
    """The real thing: os.open/os.read/os.write/fcntl.ioctl on /dev/dahdi."""

    def open(self, path: str, flags: int) -> int:
        return os.open(path, flags | os.O_CLOEXEC)

    def close(self, fd: int) -> None:
        os.close(fd)

    def read(self, fd: int, size: int) -> bytes:
        return os.read(fd, size)

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def ioctl(self, fd: int, request: int, arg: IoctlArg = 0) -> int:
        while True:  # ioctl is not covered by PEP 475's automatic EINTR retry
            try:
                if isinstance(arg, int):
                    return fcntl.ioctl(fd, request, arg)
                return fcntl.ioctl(fd, request, arg, True)
            except InterruptedError:
                continue


OS_IO = OsDeviceIO()


def _hint(err: int, operation: str, channo: int | None, path: str) -> str:
    """What a user should do about an errno from DAHDI, in the words of the fix."""
    chan = f"channel {channo}" if channo else "the channel"
    if err == errno.ENOENT and operation == "open":
        if not os.path.isdir(os.path.dirname(path)) or path.endswith(("/channel", "/ctl")):
            return ("the DAHDI kernel driver is not loaded: modprobe dahdi and your card's "
                    "driver (or use the sim backend, which needs no driver)")
        return f"no device node {path}: is the span assigned and configured with dahdi_cfg?"
    if err in (errno.EACCES, errno.EPERM):
        return UDEV_HINT
    if err == errno.EINVAL and operation == "DAHDI_SPECIFY":
        return (f"{chan} does not exist: no span provides it (is the card's driver loaded "
                "and its spans assigned?)")
    if err == errno.ENXIO:
        return (f"{chan} is not configured: add it to /etc/dahdi/system.conf "
                "(bchan=, dchan=, fxoks=, fxsks=...) and run dahdi_cfg")
    if err == errno.EBUSY and operation in ("open", "DAHDI_SPECIFY"):
        return f"{chan} is already open, by another program (Asterisk?) or by this one"
    if err == errno.ENODATA:
        return ("no tone zone is loaded: add loadzone= and defaultzone= to "
                "/etc/dahdi/system.conf and run dahdi_cfg")
    if err == errno.ENOTTY and operation == "DAHDI_SETPOLARITY":
        return (f"{chan}'s span cannot reverse a line: polarity is an analog card's (an FXS "
                "port's); a dynamic span carries only hook state")
    if err == errno.ENOTTY:
        return "this DAHDI driver does not know that ioctl (driver and binding versions differ?)"
    if err == errno.EINVAL:
        return "the driver rejected the argument, or the operation does not fit this channel"
    return ""


def _device_error(exc: OSError, device: str, operation: str, channo: int | None,
                  path: str) -> DeviceError:
    err = exc.errno or errno.EIO
    return DeviceError(err, device, operation, _hint(err, operation, channo, path))


@dataclass(frozen=True, slots=True)
class HookState:
    """An analog channel's signalling as DAHDI_GET_PARAMS reports it."""

    rx_off_hook: bool  # fxoks: the phone is off hook; fxsks: ringing or battery dropped
    rxbits: int
    txbits: int
    rxhooksig: int
    txhooksig: int


@dataclass(frozen=True, slots=True)
class SpanStatus:
    """A copy of the interesting part of DAHDI_SPANSTAT."""

    spanno: int
    name: str
    description: str
    alarms: int
    numchans: int
    totalchans: int
    spantype: str

    @property
    def alarm_names(self) -> list[str]:
        return abi.alarm_names(self.alarms)

    @property
    def in_alarm(self) -> bool:
        # RECOVER is "coming out of alarm": the span does not carry traffic yet either.
        return self.alarms != 0


def _span_status(info: abi.DahdiSpanInfo) -> SpanStatus:
    return SpanStatus(info.spanno, info.name.decode(errors="replace"),
                      info.desc.decode(errors="replace"), info.alarms, info.numchans,
                      info.totalchans, info.spantype.decode(errors="replace"))


class _Device:
    """What a channel and the control device share: an fd, ioctls with named errors."""

    def __init__(self, io: DeviceIO, fd: int, path: str, label: str) -> None:
        self._io = io
        self._fd = fd
        self.path = path
        self.label = label
        self.channo: int | None = None

    def fileno(self) -> int:
        if self._fd < 0:
            raise DeviceError(errno.EBADF, self.label, "use", "the device was closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        try:
            self._io.close(fd)
        except OSError as exc:
            log.warning("%s: close failed: %s", self.label, exc)

    def _ioctl(self, request: int, arg: IoctlArg = 0, *, ok: tuple[int, ...] = ()) -> int:
        try:
            return self._io.ioctl(self.fileno(), request, arg)
        except OSError as exc:
            if exc.errno in ok:
                return 0
            name = abi.IOCTL_NAMES.get(request, f"ioctl {request:#x}")
            raise _device_error(exc, self.label, name, self.channo, self.path) from None

    def _ioctl_int(self, request: int, value: int = 0, **kw: tuple[int, ...]) -> int:
        arg = ctypes.c_int(value)
        self._ioctl(request, arg, **kw)
        return arg.value

    def span_status(self, spanno: int = 0) -> SpanStatus:
        """DAHDI_SPANSTAT of span ``spanno`` (0: the span of this channel)."""
        info = abi.DahdiSpanInfo()
        info.spanno = spanno
        self._ioctl(abi.DAHDI_SPANSTAT, info)
        return _span_status(info)

    def __enter__(self) -> _Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd {self._fd}"
        return f"<{type(self).__name__} {self.label} ({state})>"


class ControlDevice(_Device):
    """``/dev/dahdi/ctl``: span status and driver version, independent of any channel."""

    @classmethod
    def open(cls, *, io: DeviceIO | None = None, dev_dir: str = DEV_DIR) -> ControlDevice:
        io = io or OS_IO
        path = f"{dev_dir}/ctl"
        try:
            fd = io.open(path, os.O_RDWR)
        except OSError as exc:
            raise _device_error(exc, path, "open", None, path) from None
        return cls(io, fd, path, path)

    def channel_params(self, channo: int) -> abi.DahdiParams:
        """DAHDI_GET_PARAMS of any channel by number, without opening it."""
        params = abi.DahdiParams()
        params.channo = channo
        self._ioctl(abi.DAHDI_GET_PARAMS, params)
        return params

    def destroy_dynamic_span(self, driver: str, address: str, channels: int) -> None:
        """DAHDI_DYNAMIC_DESTROY: remove the dynamic span a ``dynamic=DRIVER,ADDRESS,
        CHANNELS,...`` line made (its peer then hears nothing and goes RED). Fails with
        EBUSY while a channel of that span is open; ``dahdi_cfg`` makes it again."""
        span = abi.DahdiDynamicSpan(driver=driver.encode(), addr=address.encode(),
                                    numchans=channels)
        self._ioctl(abi.DAHDI_DYNAMIC_DESTROY, span)

    def version(self) -> tuple[str, str]:
        """(driver version, echo canceller) from DAHDI_GETVERSION."""
        info = abi.DahdiVersionInfo()
        self._ioctl(abi.DAHDI_GETVERSION, info)
        return info.version.decode(errors="replace"), info.echo_canceller.decode(errors="replace")


class Channel(_Device):
    """One open DAHDI channel (a B-channel, a D-channel or an analog port).

    ``on_event`` receives every event drained from the kernel's queue (an int, see
    :func:`uascall.dahdi.abi.event_name`); until one is set they collect in
    ``pending_events`` (the latest 64: older ones are dropped if nobody drains them).
    """

    #: bytes in one 20 ms G.711 frame, DAHDI's usual block size (Asterisk's READ_SIZE).
    FRAME = 160

    def __init__(self, io: DeviceIO, fd: int, path: str, label: str, channo: int) -> None:
        super().__init__(io, fd, path, label)
        self.channo = channo
        self.on_event: Callable[[int], None] | None = None
        self.pending_events: deque[int] = deque(maxlen=abi.DAHDI_MAX_EVENTSIZE)
        self._blocksize = abi.DAHDI_DEFAULT_BLOCKSIZE
        self._linear = False
        # asked once the channel is specified: what a tap follows is known by then
        self._data_io = io.data_io(fd)

    @classmethod
    def open(cls, channo: int | None = None, *, span: int | None = None,
             chanpos: int | None = None, io: DeviceIO | None = None,
             nonblocking: bool = True, dev_dir: str = DEV_DIR) -> Channel:
        """Open a channel by number (``/dev/dahdi/channel`` + DAHDI_SPECIFY) or by span and
        position (``/dev/dahdi/chan/SSS/CCC``, no SPECIFY needed).

        Raises :class:`~uascall.errors.DeviceError` naming the channel and the cause: ENOENT
        (driver not loaded), EACCES (permissions; see udev/), ENXIO (not configured in
        system.conf), EBUSY (already open).
        """
        io = io or OS_IO
        flags = os.O_RDWR | (os.O_NONBLOCK if nonblocking else 0)
        if span is not None and chanpos is not None:
            path = f"{dev_dir}/chan/{span:03d}/{chanpos:03d}"
            label = f"span {span} channel position {chanpos}"
        elif channo is not None and channo > 0:
            path = f"{dev_dir}/channel"
            label = f"channel {channo}"
        else:
            raise ValueError(f"Channel.open() needs a channel number > 0 or span and chanpos; "
                             f"got channo={channo!r} span={span!r} chanpos={chanpos!r}")
        try:
            fd = io.open(path, flags)
        except OSError as exc:
            raise _device_error(exc, label, "open", channo, path) from None
        try:
            if channo is not None and span is None:
                try:
                    io.ioctl(fd, abi.DAHDI_SPECIFY, ctypes.c_int(channo))
                except OSError as exc:
                    raise _device_error(exc, label, "DAHDI_SPECIFY", channo, path) from None
            else:
                number = ctypes.c_int(0)
                try:
                    io.ioctl(fd, abi.DAHDI_CHANNO, number)
                except OSError as exc:
                    raise _device_error(exc, label, "DAHDI_CHANNO", None, path) from None
                channo = number.value
                label = f"channel {channo} (span {span} position {chanpos})"
        except BaseException:
            io.close(fd)
            raise
        assert channo is not None
        channel = cls(io, fd, path, label, channo)
        try:
            # The kernel resets the block size on open (to 1024): ask rather than assume.
            channel._blocksize = channel._ioctl_int(abi.DAHDI_GET_BLOCKSIZE)
        except BaseException:
            channel.close()
            raise
        log.debug("%s: opened via %s on %s", label, path, io.describe())
        return channel

    # ------------------------------------------------------------------ configuration
    def params(self) -> abi.DahdiParams:
        """A fresh DAHDI_GET_PARAMS (signalling, law, hook state, alarms...)."""
        params = abi.DahdiParams()
        self._ioctl(abi.DAHDI_GET_PARAMS, params)
        return params

    @property
    def blocksize(self) -> int:
        return self._blocksize

    def set_blocksize(self, size: int) -> None:
        """Bytes per read/write block in law mode (samples in linear mode)."""
        self._ioctl_int(abi.DAHDI_SET_BLOCKSIZE, size)
        self._blocksize = size

    def buffer_info(self) -> abi.DahdiBufferInfo:
        info = abi.DahdiBufferInfo()
        self._ioctl(abi.DAHDI_GET_BUFINFO, info)
        return info

    def set_buffers(self, *, numbufs: int, tx_policy: int = abi.DAHDI_POLICY_IMMEDIATE,
                    rx_policy: int = abi.DAHDI_POLICY_IMMEDIATE,
                    bufsize: int | None = None) -> None:
        """DAHDI_SET_BUFINFO: how many buffers and when transmission starts."""
        info = abi.DahdiBufferInfo()
        info.txbufpolicy = tx_policy
        info.rxbufpolicy = rx_policy
        info.numbufs = numbufs
        info.bufsize = bufsize if bufsize is not None else self._blocksize
        self._ioctl(abi.DAHDI_SET_BUFINFO, info)
        if bufsize is not None:
            self._blocksize = bufsize

    def limit_write_queue(self, frames: int | None) -> None:
        """Hold at most ``frames`` 20 ms blocks (2 or more) in the kernel's write buffers,
        or, with None, :data:`MEDIA_NUMBUFS`. A voice port's queue is those buffers:
        DAHDI has no call that says how many are full, so their number is the bound."""
        self.set_buffers(numbufs=MEDIA_NUMBUFS if frames is None else max(2, frames))

    def set_law(self, law: int) -> None:
        """DAHDI_SETLAW: how DAHDI interprets this channel's bytes. It does not transcode:
        in law mode the bytes written go to the line as they are."""
        self._ioctl_int(abi.DAHDI_SETLAW, law)

    def set_linear(self, linear: bool) -> None:
        """DAHDI_SETLINEAR: read and write signed 16-bit samples; DAHDI converts."""
        self._ioctl_int(abi.DAHDI_SETLINEAR, int(linear))
        self._linear = linear

    def set_audio_mode(self, audio: bool) -> None:
        """DAHDI_AUDIOMODE on a clear channel: voice (gains, echo canceller) or raw data."""
        self._ioctl_int(abi.DAHDI_AUDIOMODE, int(audio))

    def flush(self, which: int = abi.DAHDI_FLUSH_BOTH) -> None:
        self._ioctl_int(abi.DAHDI_FLUSH, which)

    def hook(self, operation: int) -> None:
        """DAHDI_HOOK. On a non-blocking fd, RING/WINK/FLASH start a cadence in the kernel
        and return EINPROGRESS: that is success (chan_dahdi treats it so too)."""
        self._ioctl_int(abi.DAHDI_HOOK, operation, ok=(errno.EINPROGRESS,))

    def set_cadence(self, cadence: Sequence[int] | None) -> None:
        """DAHDI_SETCADENCE on an fxoks channel: ring on, off, on, off... in ms (at most
        16 values); None goes back to the tone zone's cadence."""
        if cadence is None:
            self._ioctl(abi.DAHDI_SETCADENCE, 0)
            return
        values = list(cadence)
        if not values or len(values) > abi.DAHDI_MAX_CADENCE or any(v <= 0 for v in values):
            raise ArgumentError(f"ring cadence {values}; expected 1 to "
                                f"{abi.DAHDI_MAX_CADENCE} positive times in ms")
        ring = abi.DahdiRingCadence()
        ring.ringcadence[:len(values)] = values
        self._ioctl(abi.DAHDI_SETCADENCE, ring)

    def set_params(self, params: abi.DahdiParams) -> None:
        """DAHDI_SET_PARAMS: the channel's signalling times (wink, flash, debounce, pulse
        break, make and pause...), all of them: start from :meth:`params`."""
        self._ioctl(abi.DAHDI_SET_PARAMS, params)

    def dial(self, dialstr: str, op: int = abi.DAHDI_DIAL_OP_REPLACE) -> None:
        """DAHDI_DIAL: the kernel dials ``dialstr`` ("T" DTMF, "P" pulse, "W" a 0.5 s
        pause...) and queues DAHDI_EVENT_DIALCOMPLETE when done. Anything written to the
        channel meanwhile, or a DAHDI_HOOK, stops it."""
        if len(dialstr) >= abi.DAHDI_MAX_DTMF_BUF:
            raise ArgumentError(f"dial string of {len(dialstr)} characters; expected fewer "
                                f"than {abi.DAHDI_MAX_DTMF_BUF}")
        operation = abi.DahdiDialOperation()
        operation.op = op
        operation.dialstr = dialstr.encode("ascii")
        self._ioctl(abi.DAHDI_DIAL, operation)

    def dialing(self) -> bool:
        """DAHDI_DIALING: whether the kernel is still dialling a DAHDI_DIAL string, or
        sounding a DTMF tone of :meth:`send_tone`."""
        return bool(self._ioctl_int(abi.DAHDI_DIALING))

    def send_tone(self, tone: int) -> None:
        """DAHDI_SENDTONE: the kernel plays ``tone`` (a ``DAHDI_TONE_*`` of the tone zone,
        or from ``DAHDI_TONE_DTMF_BASE`` on a DTMF digit, continuously) once the data
        written has gone out, until anything is written, another tone is sent or
        ``DAHDI_TONE_STOP``. ENODATA without a tone zone loaded."""
        self._ioctl_int(abi.DAHDI_SENDTONE, tone)

    def set_polarity(self, reversed_: bool) -> None:
        """DAHDI_SETPOLARITY on an FXS port (``fxoks``): reverse the line's polarity, or
        put it back. Only analog cards have it: a span without (a dynamic span, an E1)
        refuses with ENOTTY; an FXO port, or a line ringing or without battery, EINVAL."""
        self._ioctl_int(abi.DAHDI_SETPOLARITY, int(reversed_))

    def hook_state(self) -> HookState:
        """What DAHDI_GET_PARAMS says of an analog channel's hook signalling."""
        params = self.params()
        return HookState(bool(params.rxisoffhook), params.rxbits, params.txbits,
                         params.rxhooksig, params.txhooksig)

    # ------------------------------------------------------------------ events
    def get_event(self) -> int:
        """One DAHDI_GETEVENT: the oldest queued event, or DAHDI_EVENT_NONE (0)."""
        return self._ioctl_int(abi.DAHDI_GETEVENT)

    def drain_events(self) -> list[int]:
        """Empty the kernel's event queue, handing each event to ``on_event``."""
        drained = []
        while True:
            event = self.get_event()
            if event == abi.DAHDI_EVENT_NONE:
                break
            drained.append(event)
            log.debug("%s: event %s", self.label, abi.event_name(event))
            if self.on_event is not None:
                self.on_event(event)
            else:
                self.pending_events.append(event)
            if self.closed:  # the handler closed us (e.g. the span went away)
                break
        return drained

    # ------------------------------------------------------------------ data
    def read_frame(self, size: int | None = None) -> bytes | None:
        """Read one block (one HDLC frame with its 2 FCS bytes on a D-channel).

        Returns None when nothing is waiting. Queued events are drained first.
        """
        if size is None:
            size = self._blocksize * (2 if self._linear else 1)
            size = max(size, 1024)  # an HDLC frame can be longer than a block
        fd = self._fd if self._fd >= 0 else self.fileno()  # fileno() raises if closed
        for _attempt in range(8):
            try:
                return self._data_io.read(fd, size) or None  # b"": nothing either
            except BlockingIOError:
                return None
            except OSError as exc:
                if exc.errno != abi.ELAST:
                    raise _device_error(exc, self.label, "read", self.channo, self.path) from None
                self.drain_events()
                if self.closed:
                    return None
        return None

    def may_read(self) -> bool:
        """False when a read is known to find nothing now (see :meth:`DeviceIO.may_read`);
        True when it may find something."""
        return self._fd < 0 or self._data_io.may_read(self._fd)  # closed: let the read say why

    def service(self, revents: int, on_block: Callable[[bytes], None]) -> None:
        """What to do when the engine finds the descriptor ready (``revents`` from epoll):
        events first on POLLPRI, then every block waiting, each to ``on_block``, until
        none is left or a handler closed the channel."""
        if revents & select.EPOLLPRI:
            self.drain_events()
        while not self.closed and (block := self.read_frame()) is not None:
            on_block(block)

    def write_frame(self, data: bytes) -> int:
        """Write one block; returns the bytes accepted, 0 when every buffer is full.

        Queued events are drained first (DAHDI refuses data while any are pending).
        """
        fd = self._fd if self._fd >= 0 else self.fileno()  # fileno() raises if closed
        for _attempt in range(8):
            try:
                return self._data_io.write(fd, data)
            except BlockingIOError:
                return 0
            except OSError as exc:
                if exc.errno != abi.ELAST:
                    raise _device_error(exc, self.label, "write", self.channo, self.path) from None
                self.drain_events()
                if self.closed:
                    return 0
        return 0


def start_digit(channel: Channel, digit: str) -> bool:
    """Key ``digit`` down: the kernel sounds its DTMF on ``channel`` (DAHDI_SENDTONE, the
    zone's continuous tone, on the card's clock) from now until :func:`stop_digit`, in
    place of the data written and not yet sent, which is dropped. chan_dahdi's
    digit_begin/digit_end do the same. A write meanwhile stops the tone. False if the
    kernel refused (no tone zone, the channel gone, not a DTMF digit)."""
    index = abi.DTMF_TONE_DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if index < 0:
        return False
    try:
        channel.flush(abi.DAHDI_FLUSH_WRITE)
        channel.send_tone(abi.DAHDI_TONE_DTMF_BASE + index)
    except OSError as exc:
        log.debug("%s: the kernel does not sound %s: %s", channel.label, digit, exc)
        return False
    return True


def stop_digit(channel: Channel) -> None:
    """Key up: the tone of :func:`start_digit` stops (nothing to do on a channel gone)."""
    try:
        channel.send_tone(abi.DAHDI_TONE_STOP)
    except OSError as exc:
        log.debug("%s: stopping the kernel's tone: %s", channel.label, exc)
