"""The ``sim`` backend on the command line: its options and its exchange's calls.

``uascall run APP --backend sim`` and ``uascall demo`` know the simulator by name only
(:mod:`uascall.backend`'s hooks); what they do with it is here. The exchange (a real
libpri NET side on the simulated span) places ``--calls`` calls to the application,
``--caller`` says what each caller does once answered, ``--ladder`` draws the Q.931
exchange with what was played and heard between the messages, and ``--wav-dir`` keeps
what each caller heard. ``uascall demo`` is one such call with the ladder and a WAV file.
"""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uascall import __version__
from uascall.backend import FarEndDriver
from uascall.channel import (
    ChannelEvent,
    DigitReceived,
    MediaEnded,
    MediaStarted,
    State,
    UASCallChannel,
)
from uascall.dahdi import q931
from uascall.errors import UascallError
from uascall.media import wav
from uascall.sim.caller import CallerScript
from uascall.sim.farend import FarEndCall

if TYPE_CHECKING:
    from uascall.app import AppHost
    from uascall.sim.backend import SimBackend

log = logging.getLogger(__name__)

LAW_HELP = "alaw (default): an E1 span with EuroISDN; ulaw: a T1 span with NI2"
CALLER_HELP = ("what {each} caller does once answered: 'wait 2; press 1; say Hello; "
               "hangup' (default: the application's __uas_sim_caller__, else nothing)")


def add_arguments(group: Any, command: str) -> None:
    """The simulator's options for ``command`` (see :meth:`Backend.add_arguments`)."""
    if command not in ("run", "call", "demo"):
        return
    group.add_argument("--law", choices=("alaw", "ulaw"), default="alaw", help=LAW_HELP)
    if command == "demo":
        group.add_argument("--wav", default="demo-out/caller.wav", metavar="PATH",
                           help="where to write what the caller heard (default "
                           "%(default)s)")
        group.add_argument("--layer2", action="store_true",
                           help="show Q.921 frames (SABME, UA, RR) in the ladder too")
        group.add_argument("--caller", metavar="SCRIPT", help=CALLER_HELP.format(each="the"))
        group.add_argument("--called", default="5551000")
        group.add_argument("--calling", default="5552000")
        return
    group.add_argument("--listen-early", action="store_true",
                       help="PRI (and sim): hear the caller during early media too (keys "
                       "before the answer), where the network connects that side early")
    if command != "run":
        return
    group.add_argument("--calls", type=int, default=1, help="calls the exchange places")
    group.add_argument("--interval", type=float, default=0.0, help="seconds between calls")
    group.add_argument("--timeout", type=float, default=600.0, help="give up after this long")
    group.add_argument("--called", default="5551000")
    group.add_argument("--calling", default="5552000")
    group.add_argument("--calling-name", default="")
    group.add_argument("--wav-dir", help="write what each caller heard here (callN.wav)")
    group.add_argument("--caller", metavar="SCRIPT", help=CALLER_HELP.format(each="each"))
    group.add_argument("--ladder", action="store_true",
                       help="print the Q.931 ladder with what was played and heard")


def options_from_arguments(args: argparse.Namespace, command: str) -> dict[str, Any]:
    return {"kind": "E1" if args.law == "alaw" else "T1",
            "listen_early": getattr(args, "listen_early", False)}


class ExchangeCalls(FarEndDriver):
    """The simulated exchange's calls to the application, as the command line asked."""

    def __init__(self, backend: SimBackend, args: argparse.Namespace, command: str) -> None:
        self.backend = backend
        self.command = command
        self.demo = command == "demo"
        self.calls_wanted = 1 if self.demo else args.calls
        self.interval = 0.0 if self.demo else args.interval
        self.timeout = 120.0 if self.demo else args.timeout
        self.called, self.calling = args.called, args.calling
        self.calling_name = "Demo Caller" if self.demo else args.calling_name
        self.script: str | None = args.caller
        self.wav_dir = None if self.demo else args.wav_dir
        self.wav = Path(args.wav) if self.demo else None
        self.ladder: q931.Ladder | None = None
        if self.demo or args.ladder:
            self.ladder = q931.Ladder("uascall (CPE)", "exchange (NET)",
                                      show_layer2=self.demo and args.layer2, span=80,
                                      brief=False)
            # the ladder is drawn from the device seam's tap, as a trace is: the tap
            # must be in the device path when the backend starts
            backend.engine.taps.devices = True
        self.calls: list[FarEndCall] = []

    def intro(self, host: AppHost) -> str:
        kind = self.backend.kind
        flavour = "EuroISDN, A-law" if kind == "E1" else "NI2, mu-law"
        return (f"uascall {__version__} demo: {host.application.path.name} answers a call "
                f"from a real libpri exchange on a simulated {kind} span ({flavour})\n")

    def place_calls(self, host: AppHost) -> None:
        """Let the exchange place the calls and wait until every one has cleared (or, once
        :attr:`stopped` is set, place no more and return at once); with a ladder, draw on
        it the Q.931 messages and what the application plays and hears between them."""
        backend, engine = self.backend, host.engine
        script = self.script if self.script is not None else host.application.sim_caller
        if script:
            law = "alaw" if backend.kind == "E1" else "ulaw"
            # a voice of its own, so that its message played back is told from the prompts
            rendered = CallerScript.parse(script).render(law, voice="en+f2")
        if not engine.wait_until(lambda: backend.up, 10):
            raise UascallError("the simulated D-channels did not come up")
        start = engine.time()
        ladder = self.ladder
        if ladder is not None:
            assert backend.loop is not None
            ours = backend.loop.cpe.layout.spanno

            def trace(at: float, span: int, channo: int, sent: bool, network: bool,
                      frame: bytes) -> None:
                if span != ours:
                    return
                try:
                    item = q931.LapdFrame.parse(frame)
                except q931.Q931DecodeError as exc:
                    log.warning("undecodable D-channel frame %s: %s", frame.hex(), exc)
                    return
                ladder.add(at - start, "->" if sent else "<-", item)

            engine.run(engine.taps.listen, "frame", trace)

            def annotate(channel: UASCallChannel, event: ChannelEvent) -> None:
                at = engine.time() - start
                if isinstance(event, MediaStarted):
                    where = ("in band" if channel.state() is not State.ANSWERED
                             else "on the call")
                    ladder.note(at, f"~ {where}: {event.what} ~")
                elif isinstance(event, DigitReceived):
                    ladder.note(at, f"~ heard in band: key {event.digit} ~")
                elif isinstance(event, MediaEnded) and event.reason == "bargein":
                    ladder.note(at, f"~ barge-in: {event.what} stopped ~")

            earlier = host.on_channel

            def on_channel(channel: UASCallChannel) -> None:
                channel.listeners.append(annotate)
                if earlier is not None:
                    earlier(channel)

            host.on_channel = on_channel
        far_end = backend.far_end
        assert far_end is not None
        if script:
            far_end.script = rendered
        calls = self.calls
        stopped = self.stopped or threading.Event()
        for n in range(self.calls_wanted):
            if stopped.is_set():
                break
            calls.append(engine.run(far_end.dial, self.called, calling=self.calling,
                                    calling_name=self.calling_name))
            if n + 1 < self.calls_wanted and self.interval:
                engine.wait_until(stopped.is_set, self.interval)  # a signal cuts it short
        if not engine.wait_until(lambda: stopped.is_set() or all(c.cleared for c in calls),
                                 self.timeout):
            raise UascallError(f"the calls did not end within {self.timeout} s")
        if stopped.is_set():
            # the command ends the calls up now; the ladder, still listening, shows how
            return
        host.join(10)
        engine.sleep(0.05)  # let the last RELEASE COMPLETE cross, for the ladder
        if ladder is not None:
            engine.run(engine.taps.unlisten, "frame", trace)

    def report(self) -> None:
        if self.ladder is not None:
            print(self.ladder.render())
        if self.wav_dir:
            for n, call in enumerate(self.calls, 1):
                _write_heard(call, Path(self.wav_dir) / f"call{n}.wav")

    def epilogue(self) -> str:
        if self.wav is None or not self.calls:
            return ""
        heard = self.calls[0]
        _write_heard(heard, self.wav)
        seconds = len(heard.heard) / 8000
        return f"what the caller heard ({seconds:.1f} s, {heard.law}): {self.wav}"


def _write_heard(call: FarEndCall, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    wav.write_wav(path, call.heard_pcm(), 8000, call.law)
