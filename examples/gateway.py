"""A PRI-to-SIP gateway in a page: each call from the PRI span is placed to a SIP URI.

The routing table is the application's parameter: entries ``NUMBER=TARGET`` separated by
commas, where NUMBER is a called number, a prefix ending in ``*``, or ``*`` for any, and
TARGET a SIP URI in which ``{number}`` stands for the called number; the first that
matches wins. A number that matches none is refused as unallocated (cause 1).

    uascall run examples/gateway.py --backend dahdi --backend sip \\
        --param "5551000=sip:alice@192.0.2.10,555*=sip:{number}@pbx.example.com"

While the SIP side rings, the PRI caller hears what it sends (183 early media) in band,
after ALERTING with progress indicator #8, or local ringback where it sends nothing. On
the answer the two are connected; then either side's hang-up clears the other, and a SIP
refusal clears the PRI call with the Q.850 cause RFC 3398 gives for its status.
"""

__uas_identify__ = "application"
__uas_version__ = "1.0"

from uascall import Error, Hangup, ToneManager
from uascall.causemap import q850_for_sip

ANSWER_SECONDS = 120  # how long the SIP side may ring


def route(table: str, number: str) -> str | None:
    for entry in filter(None, (part.strip() for part in table.split(","))):
        pattern, _, target = entry.partition("=")
        pattern = pattern.strip()
        if pattern == number or pattern == "*" or (
                pattern.endswith("*") and number.startswith(pattern[:-1])):
            return target.strip().replace("{number}", number)
    return None


def main(channel, application_instance_id, file_man, my_log, application_parameters):
    channel.create_tone_player(ToneManager(my_log))  # ringback while SIP sends nothing
    number = channel.Details.call_to
    target = route(application_parameters, number)
    if target is None:
        my_log.info("no route for %s", number)
        channel.reject(raw_cause=1)  # unallocated number
        return 0
    out = channel.ExtraChannel[0]
    try:
        out.start_call(target, call_from=channel.Details.call_from)
        while out.wait_for_ringing(1) == out.State.CALL_OUTGOING:
            if channel.state() == channel.State.IDLE:
                return 0  # the caller gave up while the call was being placed
        if out.state() == out.State.RING_OUTGOING:
            # until the SIP side answers or ends: its early media, else ringback
            channel.ring(None, negotiate_early_media=True, custom_ringtone=out)
        if channel.state() != channel.State.IDLE \
                and out.wait_for_answer(ANSWER_SECONDS) != out.State.ANSWERED:
            out.hang_up()  # not answered in time: cancelled
            status = out.Details.raw_cause if out.Details.raw_cause.isdigit() else 480
            my_log.info("%s -> %s: not answered (%s)", number, target, status)
            channel.reject(raw_cause=q850_for_sip(status))
            return 0
        if channel.answer() == channel.State.ANSWERED and channel.connect(out):
            channel.wait_for_idle()  # returns when either side has hung up
        my_log.info("%s -> %s: over (PRI %s, SIP %s)", number, target,
                    channel.cause().name, out.cause().name)
        return 0
    except Hangup:  # the PRI caller hung up
        return 0
    except Error as exc:
        my_log.error("%s -> %s: %s", number, target, exc)
        return -100
    finally:  # whichever side is still up is cleared (normal clearing, 16 / BYE)
        out.hang_up()
        channel.hang_up()
