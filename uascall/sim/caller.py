"""What a simulated caller does once its call is answered: a script of keys and speech.

A script is steps separated by ``;``, done one after the other from the moment the
application answers, all of it in band on the caller's B-channel:

``wait SECONDS``
    say nothing for that long;
``press DIGITS``
    press keys (``0-9 * # A-D``): each 80 ms of DTMF then 80 ms of silence;
``say TEXT``
    speak (espeak-ng, rendered before the call starts, never on the engine thread);
``tone HZ SECONDS``
    a steady tone (a stand-in for a voice with a known frequency and length);
``hangup``
    hang up (the rest of the script is not done).

For example ``"wait 2; press 1; wait 3; press 1234#; say Hello, this is my message.;
wait 3; hangup"``. :meth:`CallerScript.parse` checks a script (ArgumentError naming the
step), :meth:`CallerScript.render` turns it into the caller's audio for a law, and
:meth:`CallerScript.start` plays it on a :class:`~uascall.sim.farend.FarEndCall`.
"""

from __future__ import annotations

import array
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from uascall.errors import ArgumentError
from uascall.media import g711
from uascall.media.dtmf import DIGITS, dtmf_samples

if TYPE_CHECKING:
    from uascall.sim.farend import FarEndCall

log = logging.getLogger(__name__)

RATE = g711.SAMPLE_RATE
#: the level a scripted tone is sent at (dBm0): about a voice's
TONE_DBM0 = -15.0


@dataclass(frozen=True)
class Step:
    kind: str  # "wait", "press", "say", "tone", "hangup"
    text: str = ""
    seconds: float = 0.0
    hz: float = 0.0


@dataclass(frozen=True)
class Rendered:
    """A script as the caller's audio: ``audio`` (law bytes) from the answer on, and when
    (seconds after the answer) it hangs up, if it does; ``marks`` say when each step
    starts, for ladders and logs."""

    audio: bytes
    hangup_at: float | None
    marks: tuple[tuple[float, str], ...]


class CallerScript:
    """A parsed script (see the module docstring)."""

    def __init__(self, steps: list[Step], text: str = "") -> None:
        self.steps = steps
        self.text = text

    def __repr__(self) -> str:
        return f"CallerScript({self.text!r})"

    @classmethod
    def parse(cls, text: str) -> CallerScript:
        steps = []
        for number, raw in enumerate(text.split(";"), 1):
            part = raw.strip()
            if not part:
                continue
            kind, _, rest = part.partition(" ")
            kind, rest = kind.lower(), rest.strip()
            where = f"caller script step {number} ({part!r})"
            if kind == "wait" or kind == "tone":
                values = rest.split()
                want = 1 if kind == "wait" else 2
                try:
                    numbers = [float(v) for v in values]
                except ValueError:
                    numbers = []
                if len(numbers) != want or not all(math.isfinite(n) and n >= 0
                                                   for n in numbers):
                    raise ArgumentError(f"{where}: expected '{kind} "
                                        f"{'SECONDS' if want == 1 else 'HZ SECONDS'}'")
                if kind == "wait":
                    steps.append(Step("wait", seconds=numbers[0]))
                else:
                    if not 50 <= numbers[0] <= 3900:
                        raise ArgumentError(f"{where}: a tone of 50 to 3900 Hz expected")
                    steps.append(Step("tone", hz=numbers[0], seconds=numbers[1]))
            elif kind == "press":
                keys = rest.replace(" ", "").upper()
                if not keys or any(k not in DIGITS for k in keys):
                    raise ArgumentError(f"{where}: expected 'press' and keys of {DIGITS}")
                steps.append(Step("press", text=keys))
            elif kind == "say":
                if not rest:
                    raise ArgumentError(f"{where}: expected 'say' and something to say")
                steps.append(Step("say", text=rest))
            elif kind == "hangup" and not rest:
                steps.append(Step("hangup"))
            else:
                raise ArgumentError(f"{where}: unknown step; expected wait, press, say, "
                                    "tone or hangup")
        return cls(steps, text)

    def render(self, law: str, *, voice: str | None = None) -> Rendered:
        """The caller's audio in ``law`` (speech is rendered here: call it on an
        application or main thread, not on the engine)."""
        from uascall.media.tts import synthesize
        codec = g711.codec(law)
        samples = array.array("h")
        marks: list[tuple[float, str]] = []
        hangup_at = None
        for step in self.steps:
            marks.append((len(samples) / RATE, _describe(step)))
            if step.kind == "wait":
                samples.extend(array.array("h", bytes(2 * round(step.seconds * RATE))))
            elif step.kind == "press":
                samples.extend(dtmf_samples(step.text, law=codec.name))
            elif step.kind == "say":
                samples.extend(synthesize(step.text, voice=voice))
            elif step.kind == "tone":
                peak = _peak(codec.name)
                samples.extend(round(peak * math.sin(2 * math.pi * step.hz * n / RATE))
                               for n in range(round(step.seconds * RATE)))
            else:
                hangup_at = len(samples) / RATE
                break
        return Rendered(codec.encode(samples), hangup_at, tuple(marks))

    @staticmethod
    def start(rendered: Rendered, far: FarEndCall) -> None:
        """Engine thread: the call was answered; play the script on it."""
        engine = far.call.span.engine
        if rendered.audio:
            far.send(rendered.audio)
        if rendered.hangup_at is not None:
            engine.call_later(rendered.hangup_at, _hang_up, far)
        log.debug("caller %r: script started", far.call)


def _hang_up(far: FarEndCall) -> None:
    if far.call.live:
        far.hangup()


def _peak(law: str) -> float:
    from uascall.media.tones import reference_rms
    return reference_rms(law) * math.sqrt(2) * 10 ** (TONE_DBM0 / 20)


def _describe(step: Step) -> str:
    if step.kind == "wait":
        return f"waits {step.seconds:g} s"
    if step.kind == "press":
        return f"presses {step.text}"
    if step.kind == "say":
        return f"says {step.text!r}"
    if step.kind == "tone":
        return f"sends {step.hz:g} Hz for {step.seconds:g} s"
    return "hangs up"
