"""A closed RTP stream leaves no reference cycle behind (uascall.sip.media, transport).

A call's stream calls the call back (on_digit, on_audio) and its socket's endpoint calls the
stream back (on_datagram): while the call is up these are cycles, so the stream lets go of
its callbacks when it closes. Otherwise a finished call is garbage that only the cyclic GC
frees, and at hundreds of calls a second every pass of it scans them until then. Checked
with the collector off: what is freed here is freed by reference counting alone.
"""

from __future__ import annotations

import gc
import weakref

from uascall.engine import Engine
from uascall.sip.media import RtpPorts, RtpStream, RtpTicker


class Owner:
    """Holds its stream and is called back by it, as a SIP call is."""

    def __init__(self, stream: RtpStream) -> None:
        self.stream = stream
        stream.on_digit = self.digit
        stream.on_audio = self.audio

    def digit(self, digit: str, ended: bool) -> None:
        pass

    def audio(self, block: bytes) -> None:
        pass


def test_a_closed_stream_and_its_owner_are_freed_without_the_cyclic_gc() -> None:
    with Engine() as engine:
        def run() -> tuple[weakref.ref, weakref.ref, weakref.ref]:
            stream = RtpPorts().open(engine, RtpTicker(engine), "127.0.0.1", allow=None,
                                     name="rtp test")
            stream.endpoint.start()
            owner = Owner(stream)
            refs = weakref.ref(stream), weakref.ref(stream.endpoint), weakref.ref(owner)
            stream.close()
            return refs

        gc.collect()
        gc.disable()
        try:
            refs = engine.run(run)
            assert [ref() for ref in refs] == [None, None, None]
        finally:
            gc.enable()


def test_a_closed_stream_no_longer_calls_back() -> None:
    with Engine() as engine:
        def run() -> None:
            stream = RtpPorts().open(engine, RtpTicker(engine), "127.0.0.1", allow=None,
                                     name="rtp test")
            Owner(stream)
            stream.close()
            assert stream.on_digit is None and stream.on_audio is None
            assert stream.closed
            stream.close()  # idempotent still

        engine.run(run)
