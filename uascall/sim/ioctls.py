"""The simulated kernel's answers to ioctls, one function per request, by fd kind.

Each handler takes the kernel, the open file and the argument exactly as the seam got it
(an int, or a ctypes object the call fills in) and follows dahdi-base.c: the same checks,
the same errno. :data:`HANDLERS` maps request numbers to them; :data:`CTL_IOCTLS` are the
ones ``/dev/dahdi/ctl`` answers.
"""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

from uascall.dahdi import abi
from uascall.dahdi.device import IoctlArg
from uascall.sim.model import DYNAMIC, OpenFile, SimChannel, oserror

if TYPE_CHECKING:
    from uascall.sim.kernel import SimKernel


def need_chan(file: OpenFile) -> SimChannel:
    if file.chan is None:
        raise oserror(errno.EINVAL, f"{file.kind} fd has no channel")
    return file.chan


def realloc(kernel: SimKernel, chan: SimChannel, blocksize: int, numbufs: int) -> None:
    # dahdi_reallocbufs: new buffers, so whatever was queued is gone
    chan.blocksize = blocksize
    chan.numbufs = min(max(numbufs, 2), abi.DAHDI_MAX_NUM_BUFS)
    chan.flush(read=True, write=True)
    chan.txdisable = chan.txpolicy != abi.DAHDI_POLICY_IMMEDIATE
    kernel._update_readiness(chan)


def need_audio(file: OpenFile) -> SimChannel:
    chan = need_chan(file)
    if not chan.audio:
        raise oserror(errno.EINVAL, f"{chan.name}: needs DAHDI_AUDIOMODE first")
    return chan


def _int_in(arg: IoctlArg) -> int:
    if isinstance(arg, int):
        return arg
    if isinstance(arg, ctypes.c_int):
        return arg.value
    return ctypes.c_int.from_buffer(arg).value


def _int_out(arg: IoctlArg, value: int) -> int:
    if isinstance(arg, ctypes.c_int):
        arg.value = value
    elif not isinstance(arg, int):
        ctypes.c_int.from_buffer(arg).value = value
    else:
        raise oserror(errno.EFAULT, "ioctl needs a pointer to an int")
    return 0


def _struct(arg: IoctlArg, cls: type[ctypes.Structure]) -> ctypes.Structure:
    if isinstance(arg, cls):
        return arg
    if isinstance(arg, int) or ctypes.sizeof(arg) < ctypes.sizeof(cls):  # type: ignore[arg-type]
        raise oserror(errno.EFAULT, f"ioctl needs a struct {cls._c_name_}")  # type: ignore[attr-defined]
    return cls.from_buffer(arg)


# --- one handler per request -------------------------------------------------------------

def specify(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    channo = _int_in(arg)
    chan = kernel.channels.get(channo)
    if chan is None:
        raise oserror(errno.EINVAL, f"channel {channo} does not exist")
    kernel._open_channel(file, chan)
    return 0


def channo(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    return _int_out(arg, need_chan(file).channo)


def get_params(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    params = _struct(arg, abi.DahdiParams)
    if file.chan is not None:
        chan = file.chan
    else:
        channo = params.channo & ~abi.DAHDI_GET_PARAMS_RETURN_MASTER
        chan = kernel.channels.get(channo)
        if chan is None:
            raise oserror(errno.EINVAL, f"channel {channo}")
    ctypes.memset(ctypes.addressof(params), 0, ctypes.sizeof(params))
    params.channo = chan.channo
    params.spanno = chan.span.spanno
    params.chanpos = chan.chanpos
    params.sigtype = chan.sig
    params.sigcap = (abi.DAHDI_SIG_CLEAR | abi.DAHDI_SIG_HDLCFCS | abi.DAHDI_SIG_HARDHDLC
                     | abi.DAHDI_SIG_FXOKS | abi.DAHDI_SIG_FXSKS)
    params.curlaw = chan.law or chan.deflaw or chan.span.deflaw
    params.name = chan.name.encode()[:39]
    params.chan_alarms = chan.chan_alarms
    kernel.cas.fill_params(chan, params)
    return 0


def spanstat(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    info = _struct(arg, abi.DahdiSpanInfo)
    spanno = info.spanno
    if spanno == 0:
        if file.chan is None:
            raise oserror(errno.EINVAL, "DAHDI_SPANSTAT of span 0 on a fd without channel")
        spanno = file.chan.span.spanno
    if not 1 <= spanno <= len(kernel.spans):
        raise oserror(errno.EINVAL, f"span {spanno}")
    span = kernel.spans[spanno - 1]
    ctypes.memset(ctypes.addressof(info), 0, ctypes.sizeof(info))
    info.spanno = span.spanno
    info.name = span.name.encode()
    if span.kind == DYNAMIC:
        info.desc = f"Dynamic 'loc' span at '{span.name.rsplit('/', 1)[-1]}'".encode()
    else:
        info.desc = f"Simulated {span.kind} span {span.spanno} (looped)".encode()
    info.alarms = span.alarms
    info.numchans = sum(1 for c in span.channels if c.sig)
    info.totalchans = len(span.channels)
    info.totalspans = len(kernel.spans)
    info.lineconfig = span.lineconfig
    info.spantype = span.kind.encode()[:5]  # the kernel's 6-byte field: "DYNAMIC" -> "DYNAM"
    info.manufacturer = b"uascall"
    info.devicetype = b"simulated DAHDI kernel"
    return 0


def get_blocksize(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    return _int_out(arg, need_chan(file).blocksize)


def set_blocksize(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    chan = need_chan(file)
    size = _int_in(arg)
    if not 16 <= size <= abi.DAHDI_MAX_BLOCKSIZE:
        raise oserror(errno.EINVAL, f"{chan.name}: block size {size}")
    realloc(kernel, chan, size, chan.numbufs)
    return 0


def get_bufinfo(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    chan = need_chan(file)
    info = _struct(arg, abi.DahdiBufferInfo)
    info.txbufpolicy = chan.txpolicy
    info.rxbufpolicy = abi.DAHDI_POLICY_IMMEDIATE
    info.numbufs = chan.numbufs
    info.bufsize = chan.blocksize
    info.readbufs = -1
    info.writebufs = -1
    return 0


def set_bufinfo(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    chan = need_chan(file)
    info = _struct(arg, abi.DahdiBufferInfo)
    if not 16 <= info.bufsize <= abi.DAHDI_MAX_BLOCKSIZE:
        raise oserror(errno.EINVAL, f"{chan.name}: buffer size {info.bufsize}")
    if info.bufsize * info.numbufs > abi.DAHDI_MAX_BUF_SPACE:
        raise oserror(errno.EINVAL, f"{chan.name}: {info.numbufs} x {info.bufsize} bytes")
    chan.txpolicy = info.txbufpolicy & 0x3
    realloc(kernel, chan, info.bufsize, info.numbufs)
    return 0


def setlaw(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    chan = need_chan(file)
    law = _int_in(arg)
    if law == abi.DAHDI_LAW_DEFAULT:
        chan.law = chan.deflaw or chan.span.deflaw
    elif law in (abi.DAHDI_LAW_MULAW, abi.DAHDI_LAW_ALAW):
        chan.law = law
    else:
        raise oserror(errno.EINVAL, f"{chan.name}: law {law}")
    return 0


def setlinear(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    need_audio(file).linear = bool(_int_in(arg))
    return 0


def audiomode(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    chan = need_chan(file)
    if not chan.is_clear:
        raise oserror(errno.EINVAL, f"{chan.name}: AUDIOMODE on a {abi.sig_name(chan.sig)} "
                       "channel")
    chan.audio = bool(_int_in(arg))
    return 0


def flush(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    chan = need_chan(file)
    which = _int_in(arg)
    chan.flush(read=bool(which & abi.DAHDI_FLUSH_READ),
               write=bool(which & abi.DAHDI_FLUSH_WRITE))
    if which & abi.DAHDI_FLUSH_EVENT:
        chan.events.clear()
    kernel._update_readiness(chan)
    return 0


def getevent(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    chan = need_chan(file)
    event = chan.events.popleft() if chan.events else abi.DAHDI_EVENT_NONE
    if event != abi.DAHDI_EVENT_NONE:
        kernel._update_readiness(chan)
    return _int_out(arg, event)


def buffer_events(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    need_chan(file).buffer_events = bool(_int_in(arg))
    return 0


def hook(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    chan = need_chan(file)
    if chan.cas is None:
        raise oserror(errno.EINVAL, f"{chan.name}: DAHDI_HOOK on a {abi.sig_name(chan.sig)} "
                       "channel")
    return kernel.cas.hook(chan, _int_in(arg), file.nonblocking)


def setcadence(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    chan = need_chan(file)
    if isinstance(arg, int) and arg == 0:
        kernel.cas.set_cadence(chan, None)  # NULL: back to the zone's cadence
        return 0
    cadence = _struct(arg, abi.DahdiRingCadence)
    kernel.cas.set_cadence(chan, list(cadence.ringcadence))
    return 0


def sendtone(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    chan = need_chan(file)
    kernel.cas.cancel_dial(chan)  # start_tone stops the current tone and any dialling
    tone = _int_in(arg)
    if tone == abi.DAHDI_TONE_STOP:
        return 0
    needs_zone(kernel, file, arg)
    if abi.DAHDI_TONE_DTMF_BASE <= tone <= abi.DAHDI_TONE_DTMF_MAX:  # DIGIT_MODE_DTMF
        kernel.cas.send_digit_tone(chan, abi.DTMF_TONE_DIGITS[tone - abi.DAHDI_TONE_DTMF_BASE])
    elif not 0 <= tone <= abi.DAHDI_TONE_MAX:
        raise oserror(errno.EINVAL, f"{chan.name}: SENDTONE {tone}: no such tone")
    return 0


def set_params(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    params = _struct(arg, abi.DahdiParams)
    chan = file.chan if file.chan is not None else kernel.channels.get(params.channo)
    if chan is None:
        raise oserror(errno.EINVAL, f"channel {params.channo}")
    kernel.cas.set_params(chan, params)
    return 0


def dial(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    chan = need_chan(file)
    operation = _struct(arg, abi.DahdiDialOperation)
    kernel.cas.dial(chan, operation.op, operation.dialstr.decode("ascii", "replace"))
    return 0


def dialing(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    return _int_out(arg, int(kernel.cas.dialing(need_chan(file))))


def setpolarity(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    kernel.cas.set_polarity(need_chan(file), bool(_int_in(arg)))
    return 0


def needs_zone(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    chan = need_chan(file)
    if not kernel.zones:
        raise oserror(errno.ENODATA, f"{chan.name}: no tone zone loaded")
    return 0


def echocancel_params(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    need_audio(file)
    if _struct(arg, abi.DahdiEchoCanParams).param_count > abi.DAHDI_MAX_ECHOCANPARAMS:
        raise oserror(errno.E2BIG, "echo canceller parameters")
    return 0  # no echocanceller= module attached: the kernel accepts and does nothing


def getgains(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    need_audio(file)
    gains = _struct(arg, abi.DahdiGains)
    for i in range(256):
        gains.rxgain[i] = i
        gains.txgain[i] = i
    return 0


def setgains(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    chan = need_audio(file)
    chan.gains = bytes(_struct(arg, abi.DahdiGains))
    return 0


def getversion(kernel: SimKernel, file: OpenFile, arg: IoctlArg) -> int:
    info = _struct(arg, abi.DahdiVersionInfo)
    info.version = b"2.11.1 (uascall simulator)"
    info.echo_canceller = b""
    return 0


HANDLERS: dict[int, Callable[[SimKernel, OpenFile, IoctlArg], int]] = {
    abi.DAHDI_SPECIFY: specify,
    abi.DAHDI_CHANNO: channo,
    abi.DAHDI_GET_PARAMS: get_params,
    abi.DAHDI_SPANSTAT: spanstat,
    abi.DAHDI_GET_BLOCKSIZE: get_blocksize,
    abi.DAHDI_SET_BLOCKSIZE: set_blocksize,
    abi.DAHDI_GET_BUFINFO: get_bufinfo,
    abi.DAHDI_SET_BUFINFO: set_bufinfo,
    abi.DAHDI_SETLAW: setlaw,
    abi.DAHDI_SETLINEAR: setlinear,
    abi.DAHDI_AUDIOMODE: audiomode,
    abi.DAHDI_FLUSH: flush,
    abi.DAHDI_GETEVENT: getevent,
    abi.DAHDI_BUFFER_EVENTS: buffer_events,
    abi.DAHDI_HOOK: hook,
    abi.DAHDI_SETCADENCE: setcadence,
    abi.DAHDI_SENDTONE: sendtone,
    abi.DAHDI_ECHOCANCEL_PARAMS: echocancel_params,
    abi.DAHDI_DIAL: dial,
    abi.DAHDI_DIALING: dialing,
    abi.DAHDI_SET_PARAMS: set_params,
    abi.DAHDI_SETPOLARITY: setpolarity,
    abi.DAHDI_GETGAINS: getgains,
    abi.DAHDI_SETGAINS: setgains,
    abi.DAHDI_GETVERSION: getversion,
}
CTL_IOCTLS = frozenset({abi.DAHDI_GET_PARAMS, abi.DAHDI_SPANSTAT, abi.DAHDI_GETVERSION})
CTL_ONLY_IOCTLS = frozenset({abi.DAHDI_GETVERSION, abi.DAHDI_SPECIFY})
