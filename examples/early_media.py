"""Ring with early media, then answer: the uascall demo's application.

Written like the ring() example of Aculab's UAS documentation: a spoken greeting goes to the
caller in band while the call is still ringing (ISDN: ALERTING with progress indicator #8,
audio on the B-channel), then a looped ringback tone for a few seconds, then the call is
answered, a recorded message is played and the call is cleared.

Run it on the simulator:   uascall run examples/early_media.py --backend sim
or on real PRI spans:      uascall run examples/early_media.py --backend dahdi
``application_parameters`` may give the ringback seconds (default 4).
"""

__uas_identify__ = "application"
__uas_version__ = "1.0"

from uascall import Error, Hangup, PlayableMedia, ToneManager


def main(channel, application_instance_id, file_man, my_log, application_parameters):
    ringback_seconds = float(application_parameters or 4)
    tone_manager = ToneManager(my_log)
    tone_manager.set_default(ToneManager.PredefinedTones.RINGBACK_EU)
    channel.create_tone_player(tone_manager)
    try:
        if channel.state() != channel.State.CALL_INCOMING:
            return -100
        my_log.info("call from %s to %s", channel.Details.call_from, channel.Details.call_to)
        # ring, and block for as long as the greeting lasts
        greeting = PlayableMedia(text_to_say="Thank you for calling. Please hold.",
                                 channel=channel)
        state = channel.ring(seconds_ringtime=None, negotiate_early_media=True,
                             custom_ringtone=greeting)
        if state == channel.State.RING_INCOMING:
            # after the first early media message, ringback for a few seconds
            channel.ring(seconds_ringtime=ringback_seconds, custom_ringtone="RINGBACK_EU",
                         loop_ringtone=True)
            if channel.answer() == channel.State.ANSWERED:
                channel.FilePlayer.play("goodbye.wav")
                channel.hang_up()
        return 0
    except Hangup:
        my_log.info("the caller hung up (cause %s)", channel.cause().name)
        return 0
    except Error as exc:
        my_log.error("%s", exc)
        return -101
