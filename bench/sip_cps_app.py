"""The application ``bench/sip_cps.py`` serves over SIP: early media, answer, caller hangs up.

A plain UAS-style application, one blocking thread per call, as a real service would be:
ring with early media (183 + SDP, RTP to the caller), answer (200 + the same SDP), then
wait for the caller's BYE.

``application_parameters`` may name a tone to play during the early media (for example
``RINGBACK_EU``, looped, as a ringback); empty (the default) sends no ringtone, so the
RTP stream carries silence, which :class:`~uascall.sip.media.RtpStream` sends when nothing
is queued.

    uascall run bench/sip_cps_app.py --backend sip --listen 127.0.0.1:5080
"""

__uas_identify__ = "application"
__uas_version__ = "1.0"

from uascall import Error, Hangup, ToneManager

TONES = ToneManager()


def main(channel, application_instance_id, file_man, my_log, application_parameters):
    ringtone = application_parameters.strip() or None
    try:
        if ringtone:
            channel.create_tone_player(TONES)
        state = channel.ring(negotiate_early_media=True, custom_ringtone=ringtone,
                             loop_ringtone=bool(ringtone))
        if state == channel.State.RING_INCOMING:
            channel.answer()
        channel.wait_for_idle()
        return 0
    except Hangup:
        return 0
    except Error as exc:
        my_log.error("%s", exc)
        return -101
