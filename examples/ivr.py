"""An IVR: a menu with barge-in, a PIN, a message recorded and played back.

Runs unchanged on every backend:

    uascall run examples/ivr.py --backend sim --ladder   # a simulated caller presses keys
    uascall run examples/ivr.py --backend dahdi          # PRI spans, FXO and FXS ports
    uascall run examples/ivr.py --backend sip --listen 127.0.0.1:5080

The caller hears a menu and may press a key while it plays (barge-in); then enters a
four-digit PIN and '#'; then leaves a message after the beep, which ends after two seconds
of silence (or with '#'), and hears it played back. Every key pressed is logged. Messages
are kept in ``recordings/`` in the media folder.
"""

__uas_identify__ = "application"
__uas_version__ = "1.0"
# What the simulator's caller does once answered (``uascall run --backend sim``; see
# uascall/sim/caller.py): presses 2 during the menu, enters its PIN, speaks, then waits.
__uas_sim_caller__ = ("wait 2.5; press 2; wait 2.8; press 1234#; wait 4.6; "
                      "say Hello, this is a test message from the simulated caller.; "
                      "wait 9")

import os

from uascall import Error, Hangup, PlayableMedia, ToneManager

PROMPTS = {
    "menu": "Welcome. For sales, press 1. For support, press 2.",
    "none": "Sorry, no choice was made. Goodbye.",
    "pin": "Please enter your four digit PIN, then press hash.",
    "record": "After the beep, leave a message. Stay silent when you are done.",
    "you said": "You said:",
    "goodbye": "Thank you. Goodbye.",
}
BEEP = [({"frequency": 1000, "amplitude": 12}, {}, {"duration": 300, "add": "summation"})]


def main(channel, application_instance_id, file_man, my_log, application_parameters):
    tones = ToneManager(my_log)
    tones.create_tone(BEEP, "BEEP")
    channel.create_tone_player(tones)
    prompts = {key: PlayableMedia(text_to_say=text, channel=channel)
               for key, text in PROMPTS.items()}
    for prompt in prompts.values():
        prompt.duration  # spoken now (once, then cached), not while the caller waits

    def say(key, barge_in=False):
        return channel.FilePlayer.play(prompts[key], barge_in=barge_in)

    keys = []
    try:
        channel.ring(1)
        if channel.answer() != channel.State.ANSWERED:
            return 0
        # The menu, up to three times; a key stops it at once.
        choice = ""
        for _ in range(3):
            say("menu", barge_in=True)
            choice = channel.DTMFDetector.get_digits(count=1, seconds_predigits_timeout=4)
            if choice in ("1", "2"):
                break
        keys.append(choice)
        my_log.info("menu: %r", choice)
        if choice not in ("1", "2"):
            say("none")
            channel.hang_up()
            return 0
        channel.DTMFDetector.clear_digits()
        say("pin", barge_in=True)
        pin = channel.DTMFDetector.get_digits(count=4, end="#", seconds_predigits_timeout=10,
                                              seconds_interdigit_timeout=5)
        keys.append(pin)
        my_log.info("PIN: %r (%s)", pin, channel.DTMFDetector.cause().name)
        channel.DTMFDetector.clear_digits()  # the '#' after four digits
        say("record")
        channel.TonePlayer.play("BEEP")
        folder = os.path.join(channel.media_dir, "recordings")
        os.makedirs(folder, exist_ok=True)
        name = f"recordings/message-{application_instance_id}.wav"
        cause = channel.FileRecorder.record(name, milliseconds_max_silence=2000,
                                            seconds_timeout=30, barge_in=True)
        my_log.info("message %s: %s, %s", name, cause.name,
                    "audio" if channel.FileRecorder.audio_detected_in_recording()
                    else "silence")
        if channel.FileRecorder.audio_detected_in_recording():
            say("you said")
            channel.FilePlayer.play(name)
        say("goodbye")
        channel.hang_up()
        return 0
    except Hangup:
        return 0  # the caller went; what they pressed is logged
    except Error as exc:
        my_log.error("IVR failed: %s", exc)
        return -102
    finally:
        my_log.info("keys pressed: %s", keys)
