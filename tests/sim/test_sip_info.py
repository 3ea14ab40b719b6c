"""Keys sent as SIP INFO (application/dtmf-relay, application/dtmf): the parser, and a
scripted caller's INFO requests in a real dialog, answered and collected."""

from __future__ import annotations

import time

import pytest

from tests.sim.sip_peer import SipPeer, Uas, answered, calling_scripted_callee, sdp_offer
from uascall.channel import State
from uascall.sip.call import MAX_EARLY_DIALOGS
from uascall.sip.info import HookFlash, InfoKey, InfoRefused, parse_dtmf_info
from uascall.sip.message import Request, Response

RELAY = "application/dtmf-relay"


@pytest.mark.parametrize("content_type, body, key", [
    (RELAY, "Signal=5\r\nDuration=160\r\n", InfoKey("5", 160)),
    (RELAY, "Signal= #\r\nDuration= 300", InfoKey("#", 300)),
    ("Application/DTMF-Relay; charset=us-ascii", "signal=*\nduration=100", InfoKey("*", 100)),
    (RELAY, "Signal=10\r\nDuration=100", InfoKey("*", 100)),   # RFC 4733 event numbers
    (RELAY, "Signal=11\r\nDuration=100", InfoKey("#", 100)),
    (RELAY, "Signal=a\r\nDuration=100", InfoKey("A", 100)),
    (RELAY, "Signal=1", InfoKey("1", 250)),                     # no Duration: 250 ms
    (RELAY, "Signal=2\r\nDuration=5", InfoKey("2", 40)),        # cut to 40 ms ...
    (RELAY, "Signal=3\r\nDuration=99999", InfoKey("3", 10_000)),  # ... and to 10 s
    (RELAY, "Signal=4\r\nDuration=" + "1" * 4301, InfoKey("4", 10_000)),  # past int()'s
    ("application/dtmf", "7\r\n", InfoKey("7", 250)),
    ("application/dtmf", "15", InfoKey("D", 250)),
    (RELAY, "Signal=16\r\nDuration=500", HookFlash()),         # RFC 4733's Flash
    (RELAY, "Signal=!", HookFlash()),                           # Asterisk's
    ("application/dtmf", "16", HookFlash()),
    (None, "", None),                                           # a keep-alive
    (RELAY, "\r\n", None),
])
def test_the_bodies_phones_send_are_read(content_type, body, key):
    assert parse_dtmf_info(content_type, body.encode()) == key


@pytest.mark.parametrize("content_type, body, package, status, says", [
    ("text/plain", "5", None, 415, "'text/plain' is not taken"),
    (None, "Signal=5", None, 415, "'none'"),
    (RELAY, "Signal=5", "dtmf", 469, "Info Package 'dtmf'"),
    (RELAY, "Signal=x\r\nDuration=100", None, 400, "Signal='x'"),
    (RELAY, "Signal=17", None, 400, "Signal='17'"),
    (RELAY, "Duration=100", None, 400, "no Signal= line"),
    (RELAY, "Signal=5\r\nDuration=long", None, 400, "Duration='long'"),
    (RELAY, "Signal=5\r\nstray line", None, 400, "'stray line' is not name=value"),
    ("application/dtmf", "55", None, 400, "Signal='55'"),
    ("application/dtmf", "0" * 4301, None, 400, "Signal='0000"),   # no int() of it
    (RELAY, "Signal=" + "1" * 4301, None, 400, "Signal='1111"),
    ("application/dtmf", "\xe9", None, 400, "not ASCII"),
])
def test_what_cannot_be_taken_is_refused_with_its_reason(content_type, body, package, status,
                                                         says):
    with pytest.raises(InfoRefused, match=says) as info:
        parse_dtmf_info(content_type, body.encode("latin-1"), package)
    assert info.value.status == status


def test_an_encoded_body_is_refused_saying_what_is_taken():
    with pytest.raises(InfoRefused, match="Content-Encoding 'gzip'") as info:
        parse_dtmf_info(RELAY, b"Signal=5", content_encoding="gzip")
    assert (info.value.status, info.value.headers) == (415, (("Accept-Encoding", "identity"),))
    assert parse_dtmf_info(RELAY, b"Signal=5", content_encoding="identity") == InfoKey("5", 250)


def send_info(peer: SipPeer, body: str = "", content_type: str = RELAY, *, extra: str = "",
              to_tag: str | None = "dialog") -> Response:
    peer.cseq += 1
    peer.send(peer.request("INFO", cseq=peer.cseq,
                           to_tag=peer.to_tag if to_tag == "dialog" else to_tag,
                           body=body, content_type=content_type, extra=extra))
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        for item in peer.poll(0.05):
            message = item.message
            if isinstance(message, Response) and message.cseq == (peer.cseq, "INFO"):
                return message
    raise AssertionError("no answer to the INFO")


def test_keys_sent_as_info_are_collected_and_each_info_is_answered(uas: Uas, peer: SipPeer):
    channel = answered(uas, peer)
    answers = [send_info(peer, "Signal=1\r\nDuration=100\r\n"),
               send_info(peer, "Signal=#\r\nDuration=100\r\n"),
               send_info(peer, "2", "application/dtmf")]
    assert [answer.status for answer in answers] == [200, 200, 200]
    assert all(answer.to.tag == peer.to_tag for answer in answers)
    assert channel.DTMFDetector.get_digits(count=3, seconds_predigits_timeout=3,
                                           seconds_interdigit_timeout=2) == "1#2"
    keep_alive = send_info(peer)
    assert keep_alive.status == 200
    time.sleep(0.3)
    assert channel.DTMFDetector.get_digits() == ""  # the keep-alive pressed nothing


def test_a_hook_flash_sent_as_info_is_taken_and_presses_nothing(uas: Uas, peer: SipPeer):
    """Signal=16 (RFC 4733's Flash) or Signal=! (Asterisk's) is a hook flash: 200, not a
    400 for a key we do not know; no digit comes of it and the call goes on."""
    channel = answered(uas, peer)
    assert send_info(peer, "Signal=16\r\nDuration=500\r\n").status == 200
    assert send_info(peer, "Signal=!").status == 200
    time.sleep(0.3)
    assert channel.DTMFDetector.get_digits() == ""
    assert channel.state() is channel.State.ANSWERED
    assert send_info(peer, "Signal=6").status == 200
    assert channel.DTMFDetector.get_digits(count=1, seconds_predigits_timeout=2) == "6"


def test_a_key_sent_by_info_and_heard_in_band_too_is_one_key(uas: Uas, peer: SipPeer):
    """A gateway that sends INFO and leaves the tone in the audio: one press, one digit."""
    from tests.sim.test_sip_listening import keys_in_band, silence, talk

    channel = answered(uas, peer)
    send_info(peer, "Signal=9\r\nDuration=80\r\n")
    talk(peer, silence(0.04) + keys_in_band("9") + silence(0.2))
    time.sleep(0.3)
    assert channel.DTMFDetector.get_digits() == "9"


def test_a_key_sent_by_info_and_as_a_telephone_event_too_is_one_key(uas: Uas, peer: SipPeer):
    """Phones can be set to send both ("RFC2833 + SIP INFO"): one press, one digit."""
    channel = answered(uas, peer)
    peer.send_digits("5")
    send_info(peer, "Signal=5\r\nDuration=100\r\n")
    send_info(peer, "Signal=9\r\nDuration=100\r\n")
    peer.send_digits("9")
    time.sleep(0.5)
    assert channel.DTMFDetector.get_digits() == "59"


def test_an_info_key_is_not_taken_twice_from_a_huge_number(uas: Uas, peer: SipPeer):
    """A Duration of thousands of digits is cut to 10 s and a Signal of thousands is a 400;
    neither ends the call (int() refuses more than 4,300 digits)."""
    channel = answered(uas, peer)
    assert send_info(peer, "Signal=" + "1" * 4301).status == 400
    assert send_info(peer, "Signal=3\r\nDuration=" + "1" * 4301).status == 200
    assert channel.DTMFDetector.get_digits(count=1, seconds_predigits_timeout=2) == "3"
    assert send_info(peer, "Signal=4\r\nDuration=100").status == 200


def test_a_request_from_another_tag_is_not_in_the_dialog(uas: Uas, peer: SipPeer):
    """RFC 3261 12.2.2: the remote tag is part of the dialog's identity: an INFO or a BYE
    with the right Call-ID and To-tag but another From-tag gets 481 and changes nothing."""
    channel = answered(uas, peer)
    own_tag, peer.from_tag = peer.from_tag, "someone-else"
    assert send_info(peer, "Signal=7").status == 481
    peer.cseq += 1
    peer.send(peer.request("BYE", cseq=peer.cseq, to_tag=peer.to_tag))
    assert peer.expect(481, method="BYE")
    peer.from_tag = own_tag
    assert channel.state() is channel.State.ANSWERED
    assert send_info(peer, "Signal=8").status == 200
    assert channel.DTMFDetector.get_digits(count=1, seconds_predigits_timeout=2) == "8"


def test_info_that_cannot_be_taken_gets_the_status_rfc_6086_gives(uas: Uas, peer: SipPeer):
    channel = answered(uas, peer)
    wrong_type = send_info(peer, "5", "text/plain")
    assert wrong_type.status == 415
    assert wrong_type.headers.get("Accept") == "application/dtmf-relay, application/dtmf"
    package = send_info(peer, "Signal=5", extra="Info-Package: dtmf\r\n")
    assert package.status == 469
    assert "Recv-Info" in [name for name, _value in package.headers]
    encoded = send_info(peer, "Signal=5", extra="Content-Encoding: gzip\r\n")
    assert (encoded.status, encoded.headers.get("Accept-Encoding")) == (415, "identity")
    malformed = send_info(peer, "Signal=x")
    assert malformed.status == 400
    assert "Signal='x'" in (malformed.headers.get("Warning") or "")
    assert send_info(peer, "Signal=5", to_tag="not-our-dialog").status == 481
    assert send_info(peer, "Signal=5", to_tag=None).status == 481  # outside a dialog
    time.sleep(0.3)
    assert channel.DTMFDetector.get_digits() == ""
    assert send_info(peer, "Signal=4").status == 200  # the call took none of it badly
    assert channel.DTMFDetector.get_digits(count=1, seconds_predigits_timeout=2) == "4"


def test_we_say_we_take_info(uas: Uas, peer: SipPeer):
    answered(uas, peer)
    ok = next(item.message for item in peer.received
              if isinstance(item.message, Response) and item.message.status == 200)
    assert "INFO" in [m.strip() for m in (ok.headers.get("Allow") or "").split(",")]


# ---------------------------------------------------------------------- our calls out
def test_the_far_end_of_our_call_may_send_keys_as_info_in_its_early_dialog(uas: Uas):
    # RFC 6086 4.2.1: INFO may come in an early dialog, which a provisional response with
    # a To-tag makes (RFC 3261 12.1.2). A gateway's SIP leg hears the callee's keys while
    # it plays early media, as it would hear them in band or as telephone-events.
    with calling_scripted_callee(uas) as (far, channel):
        far.respond(180, "fork1")
        time.sleep(0.1)
        assert far.info("fork1", 1, "5").status == 200
        assert far.info("fork2", 1, "6").status == 481  # no provisional made that dialog
        assert far.info("fork1", 0, "7").status == 500  # lower than the last one
        far.respond(200, "fork1", sdp_offer("127.0.0.1", far.port + 1, "8"))
        ack = far.receive()
        assert isinstance(ack, Request) and ack.method == "ACK"
        assert channel.wait_for_answer(3) is State.ANSWERED
        # the dialog the 2xx confirmed goes on from the early one's numbers
        assert far.info("fork1", 0, "8").status == 500
        assert far.info("fork1", 2, "9").status == 200
        assert far.info("fork2", 3, "0").status == 481  # the other fork's dialog is gone
        assert channel.DTMFDetector.get_digits(count=2, seconds_predigits_timeout=3,
                                               seconds_interdigit_timeout=2) == "59"


def test_early_dialogs_are_bounded_and_go_with_a_call_that_fails(uas: Uas):
    with calling_scripted_callee(uas) as (far, channel):
        for fork in range(MAX_EARLY_DIALOGS + 2):  # a far end with a new tag each time
            far.respond(183, f"fork{fork}")
        time.sleep(0.1)
        assert far.info(f"fork{MAX_EARLY_DIALOGS - 1}", 1, "1").status == 200
        assert far.info(f"fork{MAX_EARLY_DIALOGS}", 1, "2").status == 481  # not kept
        far.respond(486, "fork0")
        assert channel.wait_for_idle(3) is State.IDLE
        assert uas.engine.run(lambda: dict(uas.backend.ua.dialogs)) == {}
        assert far.info("fork0", 2, "3").status == 481
