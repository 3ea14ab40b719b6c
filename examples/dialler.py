"""A dialler: call the destination given, beep when answered, hang up.

An outbound application (its ``main`` takes ``outbound_parameters``, the destination:
a number, ``tel:NUMBER`` or ``sip:user@host:port``). ``uascall call`` runs one instance
per call; its return code says how the call went: 1 answered (and beeped), -100 not
answered (busy, no answer, refused: the record's cause says which), -101 an error.

On the simulator's exchange, which answers after a second:
    uascall call examples/dialler.py --to 5559000 --calls 20 --concurrent 5 --virtual
On SIP, to another uascall serving examples/early_media.py on 127.0.0.1:5080:
    uascall call examples/dialler.py --backend sip --outbound 127.0.0.1:5080 \\
        --to 5551000 --calls 100 --rate 20 --concurrent 50
``application_parameters`` may give the beep's seconds (default 0.5).
"""

__uas_identify__ = "application"
__uas_version__ = "1.0"

from uascall import Error, Hangup, ToneManager

ANSWERED = 1
NOT_ANSWERED = -100
FAILED = -101
BEEP = [({"frequency": 1000, "amplitude": 10}, {}, {"duration": 500})]


def main(channel, application_instance_id, file_man, my_log, application_parameters,
         outbound_parameters):
    seconds = float(application_parameters or 0.5)
    tones = ToneManager(my_log)
    tones.create_tone(BEEP, "BEEP")
    channel.create_tone_player(tones)
    try:
        if channel.call(outbound_parameters, seconds_timeout=30) != channel.State.ANSWERED:
            my_log.info("%s not answered: %s (%s)", outbound_parameters,
                        channel.cause().name, channel.Details.raw_cause)
            return NOT_ANSWERED
        channel.TonePlayer.play("BEEP", seconds_duration=seconds)
        channel.hang_up()
        return ANSWERED
    except Hangup:  # the far end hung up first: it had answered
        return ANSWERED
    except Error as exc:
        my_log.error("%s", exc)
        return FAILED
