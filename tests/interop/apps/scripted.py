"""A UAS application whose behaviour the interop tests choose by its parameters.

``application_parameters`` is a list of ``name=value`` words:

``ring``    seconds to ring (default 1; ``none``: ring until the caller gives up)
``early``   1: ring with early media (183 + SDP + RTP), 0: 180 only (default 1)
``tone``    the ringtone (default RINGBACK_EU, looped; CADENCE_425 is 425 Hz at -13 dBm0,
            0.6 s on / 0.4 s off, a cadence short enough to measure in a short call)
``codecs``  the codec priority for ring() and answer() (default: the backend's)
``answer``  1: answer after ringing (default), 0: reject with BUSY instead
``hold``    seconds the answered call stays up before we hang up (default: wait for the
            caller's BYE, 60 s at most)
``keys``    once answered, collect this many DTMF digits (10 s for the first, 5 s between);
            what was collected is appended to :data:`HEARD`
``dtmf``    once answered, send these digits with the DTMFPlayer (its cause goes to
            :data:`SENT`)

Return codes, read back from the call records: 0 we hung up, 1 the caller hung up after
the answer, 2 the caller hung up while it rang, 3 rejected, -100 not an incoming call,
-101 the call never went idle.
"""

__uas_identify__ = "application"
__uas_version__ = "1.0"

from uascall import Hangup, ToneManager
from uascall.media.tones import SUMMATION

CADENCE_425 = [
    ({"frequency": 425, "amplitude": 13}, {}, {"duration": 600, "add": SUMMATION}),
    ({}, {}, {"duration": 400, "add": SUMMATION}),
]


#: (instance id, digits, DTMFDetector cause name) per call with ``keys``
HEARD = []
#: (instance id, DTMFPlayer cause name) per call with ``dtmf``
SENT = []


def _params(text):
    values = {"ring": "1", "early": "1", "tone": "RINGBACK_EU", "codecs": None,
              "answer": "1", "hold": None, "keys": None, "dtmf": None}
    for word in (text or "").split():
        name, _, value = word.partition("=")
        if name not in values:
            raise ValueError(f"unknown parameter {name!r}; expected one of {sorted(values)}")
        values[name] = value
    return values


def main(channel, application_instance_id, file_man, my_log, application_parameters):
    p = _params(application_parameters)
    if channel.state() != channel.State.CALL_INCOMING:
        return -100
    tone_manager = ToneManager(my_log)
    tone_manager.create_tone(CADENCE_425, "CADENCE_425")
    channel.create_tone_player(tone_manager)
    ring_s = None if p["ring"] == "none" else float(p["ring"])
    # ring() returns IDLE (rather than raising) when the caller clears while it blocks
    if channel.ring(seconds_ringtime=ring_s, negotiate_early_media=p["early"] == "1",
                    custom_ringtone=p["tone"], loop_ringtone=True,
                    codecs=p["codecs"]) == channel.State.IDLE:
        my_log.info("caller hung up while ringing (%s)", channel.cause().name)
        return 2
    if p["answer"] != "1":
        channel.reject(channel.Cause.BUSY)
        return 3
    try:
        channel.answer(codecs=p["codecs"])
        if p["keys"] is not None:
            digits = channel.DTMFDetector.get_digits(count=int(p["keys"]),
                                                     seconds_predigits_timeout=10,
                                                     seconds_interdigit_timeout=5)
            HEARD.append((application_instance_id, digits,
                          channel.DTMFDetector.cause().name))
        if p["dtmf"] is not None:
            SENT.append((application_instance_id, channel.DTMFPlayer.play(p["dtmf"]).name))
        if p["hold"] is not None:
            if channel.wait_for_idle(float(p["hold"])) == channel.State.IDLE:
                return 1
            channel.hang_up()
            return 0
        if channel.wait_for_idle(60) != channel.State.IDLE:
            return -101
        return 1
    except Hangup:
        return 1
