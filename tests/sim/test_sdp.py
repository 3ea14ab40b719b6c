"""SDP parsing/serialization and offer/answer (uascall.sip.sdp) on offers real agents send."""

from __future__ import annotations

import pytest

from uascall.sip.sdp import (
    Codec,
    IncompatibleAddress,
    MediaDescription,
    Negotiated,
    NoCommonCodec,
    SdpError,
    SessionDescription,
    answer_offer,
    make_offer,
    parse_sdp,
    read_answer,
)

SIPP_OFFER = (
    b"v=0\r\n"
    b"o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
)

# as baresip sends it: LF line ends, many codecs, dynamic PTs, b=, ptime, direction
BARESIP_OFFER = (
    "v=0\n"
    "o=- 1917301524 3488925155 IN IP4 192.168.1.20\n"
    "s=-\n"
    "c=IN IP4 192.168.1.20\n"
    "t=0 0\n"
    "a=tool:baresip 3.10.1\n"
    "m=audio 10134 RTP/AVP 96 9 0 8 97 98\n"
    "b=AS:512\n"
    "a=rtpmap:96 opus/48000/2\n"
    "a=fmtp:96 stereo=1;sprop-stereo=1\n"
    "a=rtpmap:9 G722/8000\n"
    "a=rtpmap:0 PCMU/8000\n"
    "a=rtpmap:8 PCMA/8000\n"
    "a=rtpmap:97 telephone-event/48000\n"
    "a=rtpmap:98 telephone-event/8000\n"
    "a=fmtp:98 0-15\n"
    "a=rtcp-rsize\n"
    "a=sendrecv\n"
    "a=label:1\n"
    "a=ptime:20\n"
)

G711 = ["g711a", "g711u"]


def answer(offer: bytes | str, codecs=G711, address="10.0.0.1", **kwargs):
    return answer_offer(
        parse_sdp(offer), codecs, address=address, port=20000, session_id=42, **kwargs
    )


def offer_with(media_lines: str, session: str = "c=IN IP4 192.0.2.1\r\n") -> str:
    return (
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n" + session + "t=0 0\r\n" + media_lines
    )


# ---------------------------------------------------------------------------------------------
# parse / serialize


def test_parse_sipp_offer():
    sdp = parse_sdp(SIPP_OFFER)
    assert sdp.origin == ("user1", 53655765, 2353687637, "IN", "IP4", "127.0.0.1")
    assert sdp.session_name == "-"
    assert sdp.connection == ("IP4", "127.0.0.1")
    assert sdp.timing == (0, 0)
    (media,) = sdp.media
    assert (media.media, media.port, media.proto, media.formats) == (
        "audio", 6000, "RTP/AVP", ["0", "8", "101"]
    )
    assert media.connection is None
    assert media.codecs() == [
        Codec(0, "PCMU"),
        Codec(8, "PCMA"),
        Codec(101, "telephone-event", fmtp="0-15"),
    ]
    assert media.direction == "sendrecv"
    assert media.ptime is None


def test_sipp_offer_round_trips_byte_for_byte():
    assert parse_sdp(SIPP_OFFER).serialize() == SIPP_OFFER


def test_parse_baresip_offer():
    sdp = parse_sdp(BARESIP_OFFER)
    assert sdp.attributes == [("tool", "baresip 3.10.1")]
    (media,) = sdp.media
    assert [(c.payload_type, c.name, c.clock_rate, c.channels) for c in media.codecs()] == [
        (96, "opus", 48000, 2),
        (9, "G722", 8000, 1),
        (0, "PCMU", 8000, 1),
        (8, "PCMA", 8000, 1),
        (97, "telephone-event", 48000, 1),
        (98, "telephone-event", 8000, 1),
    ]
    assert media.codecs()[0].fmtp == "stereo=1;sprop-stereo=1"
    assert media.ptime == 20
    assert media.direction == "sendrecv"
    assert ("rtcp-rsize", None) in media.attributes


def test_round_trip_through_objects():
    sdp = SessionDescription(
        origin=("alice", 7, 8, "IN", "IP6", "2001:db8::1"),
        session_name="call",
        connection=("IP6", "2001:db8::1"),
        attributes=[("group", "BUNDLE 0"), ("ice-lite", None)],
        media=[
            MediaDescription(
                "audio", 4000, "RTP/AVP", ["8", "101"],
                attributes=[("rtpmap", "101 telephone-event/8000"), ("recvonly", None)],
            ),
            MediaDescription("image", 0, "udptl", ["t38"], connection=("IP4", "192.0.2.9")),
        ],
    )
    data = sdp.serialize()
    assert data.endswith(b"\r\n") and b"\n\n" not in data
    assert parse_sdp(data) == sdp
    assert parse_sdp(data).serialize() == data
    assert parse_sdp(data.decode()) == sdp


def test_static_payload_types_without_rtpmap():
    sdp = parse_sdp(offer_with("m=audio 5000 RTP/AVP 18 4 3 9 8 0 99\r\n"))
    # 99 has no rtpmap: nobody can say what it is, so it is not a codec
    assert [(c.payload_type, c.name) for c in sdp.media[0].codecs()] == [
        (18, "G729"), (4, "G723"), (3, "GSM"), (9, "G722"), (8, "PCMA"), (0, "PCMU")
    ]


def test_unknown_lines_are_skipped():
    sdp = parse_sdp(offer_with(
        "m=audio 5000 RTP/AVP 0\r\ni=voice\r\nb=TIAS:64000\r\nk=prompt\r\na=x-custom:1\r\n",
        session="i=info\r\nu=http://example.com\r\ne=a@example.com\r\np=+1 555\r\n"
                "c=IN IP4 192.0.2.1\r\nb=CT:128\r\nz=0 0\r\n",
    ) + "r=7d 1h 0 25h\r\ny=unknown letter\r\n")
    assert sdp.media[0].attributes == [("x-custom", "1")]
    assert sdp.connection == ("IP4", "192.0.2.1")


def test_direction_and_ptime_properties():
    media = MediaDescription("audio", 1, "RTP/AVP", ["0"], attributes=[("ptime", "30.0"),
                                                                      ("inactive", None)])
    assert media.direction == "inactive"
    assert media.ptime == 30
    assert MediaDescription("audio", 1, "RTP/AVP", ["0"], attributes=[("ptime", "x")]).ptime is None


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\nm=audio x RTP/AVP 0\r\n", 6,
         "port 'x'"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\nm=audio 5000\r\n", 6,
         "expected '<media> <port> <proto> <format>"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\nm=audio 5000 RTP/AVP pcma\r\n",
         6, "payload type 0-127"),
        ("v=0\r\no=- 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n", 2,
         "expected 6"),
        ("v=0\r\no=- one 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\nm=audio 5 RTP/AVP 0\r\n", 2,
         "sess-id 'one'"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP5 h\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n", 4,
         "IP4 or IP6"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n", 4,
         "IN <IP4|IP6> <address>"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 ::1\r\nt=0 0\r\nm=audio 5 RTP/AVP 0\r\n", 4,
         "'::1' is not an IP4 address"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\nm=audio 5 RTP/AVP 0\r\n"
         "this is not sdp\r\n", 7, "<type>=<value>"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=now\r\nm=audio 5 RTP/AVP 0\r\n", 5,
         "two decimal integers"),
        ("o=- 1 1 IN IP4 h\r\nv=0\r\n", 1, "expected v=0 first"),
        ("v=0\nv=0\n", 2, "only once"),
    ],
)
def test_malformed_lines_name_the_line(text, line, words):
    with pytest.raises(SdpError) as caught:
        parse_sdp(text)
    message = str(caught.value)
    assert f"SDP line {line} " in message
    assert words in message


def test_a_garbled_rtpmap_only_makes_its_format_unusable():
    """RFC 4475's torture INVITEs carry 'a=rtpmap:31 LPC': the call must still work."""
    offer = parse_sdp("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\n"
                      "m=audio 5 RTP/AVP 31 8\r\na=rtpmap:31 LPC\r\n")
    assert [codec.name for codec in offer.media[0].codecs()] == ["PCMA"]


def test_missing_lines():
    with pytest.raises(SdpError, match="no o= line"):
        parse_sdp("v=0\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\nm=audio 5 RTP/AVP 0\r\n")
    with pytest.raises(SdpError, match="no m= line"):
        parse_sdp("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\n")
    with pytest.raises(SdpError, match=r"SDP line 5 .*no c= line"):
        parse_sdp("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 5 RTP/AVP 0\r\n")
    with pytest.raises(SdpError, match="empty"):
        parse_sdp(b"\r\n")
    with pytest.raises(SdpError, match="UTF-8"):
        parse_sdp(b"v=0\r\ns=\xff\r\n")
    # a rejected stream needs no address
    parse_sdp("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=video 0 RTP/AVP 31\r\n")


# ---------------------------------------------------------------------------------------------
# answer_offer


def test_our_priority_decides_not_the_offer_order():
    sdp, negotiated = answer(SIPP_OFFER, ["g711a", "g711u"])
    assert negotiated == Negotiated(
        law="alaw", payload_type=8, telephone_event=101, remote=("127.0.0.1", 6000),
        direction="sendrecv", ptime=20, peer=("127.0.0.1", 6000),
    )
    assert sdp.media[0].formats == ["8", "101"]

    sdp, negotiated = answer(SIPP_OFFER, ["g711u", "g711a"])
    assert (negotiated.law, negotiated.payload_type) == ("ulaw", 0)
    assert sdp.media[0].formats == ["0", "101"]


def test_answer_to_sipp_offer_serializes():
    sdp, _ = answer(SIPP_OFFER)
    assert sdp.serialize() == (
        b"v=0\r\n"
        b"o=uascall 42 0 IN IP4 10.0.0.1\r\n"
        b"s=-\r\n"
        b"c=IN IP4 10.0.0.1\r\n"
        b"t=0 0\r\n"
        b"m=audio 20000 RTP/AVP 8 101\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-15\r\n"
        b"a=sendrecv\r\n"
    )


def test_baresip_offer():
    sdp, negotiated = answer(BARESIP_OFFER, ["g711u"])
    # the 8 kHz telephone-event goes with G.711, not the 48 kHz one (that is opus's)
    assert negotiated == Negotiated("ulaw", 0, 98, ("192.168.1.20", 10134), "sendrecv", 20,
                                    ("192.168.1.20", 10134))
    media = sdp.media[0]
    assert media.formats == ["0", "98"]
    assert ("fmtp", "98 0-15") in media.attributes
    assert ("ptime", "20") in media.attributes


def test_dynamic_payload_type_for_codec_and_event():
    offer = offer_with(
        "m=audio 5000 RTP/AVP 110 96\r\na=rtpmap:110 pcma/8000\r\n"
        "a=rtpmap:96 TELEPHONE-EVENT/8000\r\n"
    )
    sdp, negotiated = answer(offer)
    # names are case-insensitive, and we send with the offerer's numbers
    assert (negotiated.law, negotiated.payload_type) == ("alaw", 110)
    assert negotiated.telephone_event == 96
    assert sdp.media[0].formats == ["110", "96"]
    # no fmtp offered: RFC 4733 then means 0-15, and we say what we take
    assert ("fmtp", "96 0-16") in sdp.media[0].attributes


def test_telephone_event_dropped_when_not_offered_or_not_wanted():
    _, negotiated = answer(offer_with("m=audio 5000 RTP/AVP 8\r\n"))
    assert negotiated.telephone_event is None
    sdp, negotiated = answer(SIPP_OFFER, telephone_event=False)
    assert negotiated.telephone_event is None
    assert sdp.media[0].formats == ["8"]
    assert not any("telephone-event" in (value or "") for _, value in sdp.media[0].attributes)


def test_no_common_codec_lists_both_sides():
    offer = offer_with("m=audio 5000 RTP/AVP 18 101\r\na=rtpmap:18 G729/8000\r\n"
                       "a=rtpmap:101 telephone-event/8000\r\n")
    with pytest.raises(NoCommonCodec) as caught:
        answer(offer)
    message = str(caught.value)
    assert "G729/8000 (PT 18)" in message
    assert "PCMA/8000, PCMU/8000" in message


def test_srtp_and_disabled_audio_are_not_accepted():
    offer = offer_with("m=audio 5000 RTP/SAVP 8\r\nm=audio 0 RTP/AVP 8\r\n")
    with pytest.raises(NoCommonCodec, match="RTP/SAVP"):
        answer(offer)


def test_video_and_audio_each_get_a_line():
    offer = offer_with(
        "m=video 5002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
        "m=audio 5000 RTP/AVP 0\r\n"
    )
    sdp, negotiated = answer(offer)
    assert [(m.media, m.port, m.formats) for m in sdp.media] == [
        ("video", 0, ["96"]),
        ("audio", 20000, ["0"]),
    ]
    assert negotiated.remote == ("192.0.2.1", 5000)
    assert parse_sdp(sdp.serialize()) == sdp


def test_second_audio_line_is_rejected():
    offer = offer_with("m=audio 5000 RTP/AVP 0\r\nm=audio 5010 RTP/AVP 8\r\n")
    sdp, negotiated = answer(offer)
    assert [m.port for m in sdp.media] == [20000, 0]
    assert negotiated.payload_type == 0


@pytest.mark.parametrize(
    ("offered", "ours", "sends"),
    [
        ("sendrecv", "sendrecv", True),
        ("sendonly", "recvonly", False),
        ("recvonly", "sendonly", True),
        ("inactive", "inactive", False),
    ],
)
def test_direction_mirrors(offered, ours, sends):
    sdp, negotiated = answer(offer_with(f"m=audio 5000 RTP/AVP 8\r\na={offered}\r\n"))
    assert negotiated.direction == ours
    assert sdp.media[0].direction == ours
    assert negotiated.remote == (("192.0.2.1", 5000) if sends else None)


def test_session_level_direction_applies():
    offer = offer_with("m=audio 5000 RTP/AVP 8\r\n",
                       session="c=IN IP4 192.0.2.1\r\na=sendonly\r\n")
    _, negotiated = answer(offer)
    assert (negotiated.direction, negotiated.remote) == ("recvonly", None)


def test_hold_by_zero_address():
    _, negotiated = answer(offer_with("m=audio 5000 RTP/AVP 8\r\n",
                                      session="c=IN IP4 0.0.0.0\r\n"))
    assert negotiated.remote is None
    assert negotiated.direction == "sendrecv"


def test_ipv6():
    offer = offer_with("m=audio 5000 RTP/AVP 0\r\n", session="c=IN IP6 ::1\r\n")
    sdp, negotiated = answer(offer, address="2001:db8::5")
    assert negotiated.remote == ("::1", 5000)
    assert sdp.origin[4:] == ("IP6", "2001:db8::5")
    assert sdp.connection == ("IP6", "2001:db8::5")
    assert b"c=IN IP6 2001:db8::5\r\n" in sdp.serialize()


def test_an_offer_only_on_another_address_family_is_refused_saying_so():
    offer = offer_with("m=audio 5000 RTP/AVP 0\r\n", session="c=IN IP6 2001:db8::7\r\n")
    with pytest.raises(IncompatibleAddress, match=r"IP6 2001:db8::7.*IP4 10\.0\.0\.1") as info:
        answer(offer)
    assert info.value.warn_code == 301
    with pytest.raises(IncompatibleAddress, match=r"IP4 192\.0\.2\.1.*IP6 2001:db8::5"):
        answer(offer_with("m=audio 5000 RTP/AVP 0\r\n"), address="2001:db8::5")


def test_of_two_audio_streams_the_one_on_our_address_family_is_taken():
    offer = offer_with("m=audio 5000 RTP/AVP 0\r\nc=IN IP6 2001:db8::7\r\n"
                       "m=audio 5010 RTP/AVP 8\r\n")
    sdp, negotiated = answer(offer)
    assert [m.port for m in sdp.media] == [0, 20000]
    assert negotiated.remote == ("192.0.2.1", 5010)


def test_no_common_codec_is_a_media_format_warning():
    with pytest.raises(NoCommonCodec) as info:
        answer(offer_with("m=audio 5000 RTP/AVP 18\r\n"))
    assert info.value.warn_code == 305 and not isinstance(info.value, IncompatibleAddress)


def test_media_level_connection_overrides_session_level():
    offer = offer_with("m=audio 5000 RTP/AVP 0\r\nc=IN IP4 198.51.100.7\r\n")
    _, negotiated = answer(offer)
    assert negotiated.remote == ("198.51.100.7", 5000)


def test_ptime_echoed():
    sdp, negotiated = answer(offer_with("m=audio 5000 RTP/AVP 8\r\na=ptime:30\r\n"))
    assert negotiated.ptime == 30
    assert ("ptime", "30") in sdp.media[0].attributes
    sdp, negotiated = answer(offer_with("m=audio 5000 RTP/AVP 8\r\n"))
    assert negotiated.ptime == 20
    assert sdp.media[0].ptime is None


def test_bad_codec_arguments():
    offer = parse_sdp(SIPP_OFFER)
    with pytest.raises(ValueError, match="unknown codec 'g729'"):
        answer_offer(offer, ["g729"], address="h", port=1, session_id=1)
    with pytest.raises(ValueError, match="no codecs"):
        answer_offer(offer, [], address="h", port=1, session_id=1)
    with pytest.raises(TypeError):
        answer_offer(offer, "g711a", address="h", port=1, session_id=1)


# ---------------------------------------------------------------------------------------------
# make_offer / read_answer


def test_make_offer():
    offer = make_offer(["g711u", "g711a"], address="192.0.2.10", port=30000, session_id=5,
                       session_version=6)
    assert offer.serialize() == (
        b"v=0\r\n"
        b"o=uascall 5 6 IN IP4 192.0.2.10\r\n"
        b"s=-\r\n"
        b"c=IN IP4 192.0.2.10\r\n"
        b"t=0 0\r\n"
        b"m=audio 30000 RTP/AVP 0 8 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-16\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )
    assert parse_sdp(offer.serialize()) == offer


def test_make_offer_answered_by_ourselves():
    offer = make_offer(G711, address="192.0.2.10", port=30000, session_id=5)
    sdp, theirs = answer_offer(parse_sdp(offer.serialize()), ["g711u"], address="192.0.2.20",
                               port=40000, session_id=9)
    ours = read_answer(offer, parse_sdp(sdp.serialize()))
    assert theirs == Negotiated("ulaw", 0, 101, ("192.0.2.10", 30000), "sendrecv", 20,
                                ("192.0.2.10", 30000))
    assert ours == Negotiated("ulaw", 0, 101, ("192.0.2.20", 40000), "sendrecv", 20,
                              ("192.0.2.20", 40000))


def test_read_hand_written_answer():
    offer = make_offer(G711, address="192.0.2.10", port=30000, session_id=5)
    written = parse_sdp(
        "v=0\r\no=pbx 1 1 IN IP4 203.0.113.5\r\ns=pbx\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n"
        "m=audio 16384 RTP/AVP 8 100\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:100 telephone-event/8000\r\na=fmtp:100 0-15\r\na=ptime:30\r\na=recvonly\r\n"
    )
    # the answerer receives events on 100, so that is what we send them with
    assert read_answer(offer, written) == Negotiated(
        "alaw", 8, 100, ("203.0.113.5", 16384), "sendonly", 30, ("203.0.113.5", 16384)
    )


def test_read_answer_without_events_or_on_hold():
    offer = make_offer(G711, address="192.0.2.10", port=30000, session_id=5)
    written = parse_sdp(offer_with("m=audio 7000 RTP/AVP 0\r\na=sendonly\r\n"))
    # we only receive: nowhere to send to, but we know where its RTP comes from
    assert read_answer(offer, written) == Negotiated("ulaw", 0, None, None, "recvonly", 20,
                                                     ("192.0.2.1", 7000))
    written = parse_sdp(offer_with("m=audio 7000 RTP/AVP 0\r\n", session="c=IN IP4 0.0.0.0\r\n"))
    assert read_answer(offer, written).remote is None
    assert read_answer(offer, written).peer is None


def test_answer_with_a_codec_we_did_not_offer():
    offer = make_offer(["g711a"], address="192.0.2.10", port=30000, session_id=5)
    with pytest.raises(NoCommonCodec, match=r"chose PCMU/8000 \(PT 0\), which we did not offer"):
        read_answer(offer, parse_sdp(offer_with("m=audio 7000 RTP/AVP 0\r\n")))


def test_answer_that_does_not_fit_the_offer():
    offer = make_offer(G711, address="192.0.2.10", port=30000, session_id=5)
    two = parse_sdp(offer_with("m=audio 7000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\n"))
    with pytest.raises(SdpError, match="has 2 m= lines; expected 1"):
        read_answer(offer, two)
    video = parse_sdp(offer_with("m=video 7000 RTP/AVP 0\r\n"))
    with pytest.raises(SdpError, match="expected 'audio'"):
        read_answer(offer, video)
    rejected = parse_sdp(offer_with("m=audio 0 RTP/AVP 8\r\n"))
    with pytest.raises(NoCommonCodec, match="accepted no audio stream"):
        read_answer(offer, rejected)
