"""The taps at uascall's two I/O seams, and who listens to them.

Every :class:`~uascall.engine.Engine` has one :class:`Taps` (``engine.taps``). The seams
report to it on the engine thread:

- **the device seam** (:class:`~uascall.trace.device.TapDeviceIO`, a
  :class:`~uascall.dahdi.device.DeviceIO` around the simulated kernel or the real driver):
  every D-channel HDLC frame our spans read or write (``frame``), and every block of
  audio read from or written to a B-channel or an analog port (``audio``);
- **the UDP endpoint** (:class:`~uascall.sip.transport.UdpEndpoint`): every SIP datagram
  and RTP packet received or sent (``datagram``).

A slot is None while nobody listens, and the seams test it before doing anything else,
so a tap costs one attribute test when unused. The device seam is not even in the path
unless tapping was asked for before the backends started (:attr:`Taps.devices`): a
:class:`TapDeviceIO` around every device costs a Python call per read and write.

What each tap gets (``at`` is the engine's clock, ``sent`` True for what we sent):

- ``frame(at, span, channo, sent, network, frame)``: the Q.921 frame from its address
  octets, without the FCS; ``network`` is True when our side of that span is the network
  (libpri's NET node), as the LAPD pseudo-header wants it;
- ``audio(at, stream, span, chanpos, sent, law, data)``: ``stream`` numbers each opening of
  a channel (a call's B-channel), ``law`` is "alaw", "ulaw" or "s16le" (a channel in
  linear mode: signed 16-bit samples), ``data`` the block as it went through the device;
- ``datagram(at, sent, data, source, destination)``: addresses as ``(host, port)``.

A listener must not raise: :meth:`Taps.listen` wraps each in a guard that logs the first
failure and removes the listener, so a bug in a tracer stops the trace, never the calls
(a listener that catches everything itself may say so and skip the wrapper).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

KINDS = ("frame", "audio", "datagram")


class Taps:
    """The three taps of one engine (engine thread for everything but :meth:`listen`
    and :meth:`unlisten` made before the engine starts)."""

    __slots__ = ("_listeners", "audio", "datagram", "devices", "frame")

    def __init__(self) -> None:
        self.frame: Callable[..., None] | None = None
        self.audio: Callable[..., None] | None = None
        self.datagram: Callable[..., None] | None = None
        #: whether backends started from now on put :class:`TapDeviceIO` in their device
        #: path (set before the backends start; it cannot be added to open devices)
        self.devices = False
        self._listeners: dict[str, list[tuple[Callable[..., None], Callable[..., None]]]] = {
            kind: [] for kind in KINDS}

    def listen(self, kind: str, listener: Callable[..., None], *,
               guarded: bool = False) -> None:
        """Give every ``kind`` record ("frame", "audio" or "datagram") to ``listener`` as
        well. A listener that raises is logged once and removed; one that promises never
        to raise (``guarded``: it catches everything itself) is called without that
        wrapper, a Python call less per record."""
        if kind not in KINDS:
            raise ValueError(f"tap {kind!r}; expected one of {', '.join(KINDS)}")

        def guard(*record: Any) -> None:
            try:
                listener(*record)
            except Exception:
                log.exception("a %s tap listener (%r) failed; it gets nothing more", kind,
                              listener)
                self.unlisten(kind, listener)

        self._listeners[kind].append((listener, listener if guarded else guard))
        self._update(kind)

    def unlisten(self, kind: str, listener: Callable[..., None]) -> None:
        """Stop giving ``kind`` records to ``listener`` (nothing if it did not listen)."""
        self._listeners[kind] = [pair for pair in self._listeners[kind]
                                 if pair[0] != listener]
        self._update(kind)

    def _update(self, kind: str) -> None:
        guards = [guarded for _listener, guarded in self._listeners[kind]]
        if not guards:
            slot = None
        elif len(guards) == 1:
            slot = guards[0]
        else:
            def slot(*record: Any) -> None:
                for guarded in guards:
                    guarded(*record)
        setattr(self, kind, slot)
