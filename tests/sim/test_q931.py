"""Q.921/Q.931 codec: real libpri frames, round trips, truncation, fuzzing, describe, ladder.

data/q931_frames.txt holds frames captured from two libpri 1.6.0 instances (see its header).
A truncated prefix must raise Q931DecodeError, except where the shorter bytes are themselves
valid: Q.931 has no length field, so a message cut exactly between two IEs is a shorter
message, and an I frame cut right after its control field is an I frame with no information
field. Those prefixes must parse, serialize back to the prefix, and keep the leading IEs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from uascall.dahdi.q931 import (
    IE,
    TYPED_IES,
    BearerCapability,
    CalledPartyNumber,
    CallingPartyNumber,
    Cause,
    ChannelIdentification,
    Display,
    FrameKind,
    InformationElement,
    Ladder,
    LapdFrame,
    Message,
    MessageType,
    ProgressIndicator,
    Q931DecodeError,
    RestartIndicator,
    cause_name,
    describe,
    message_type_name,
)
from uascall.errors import ArgumentError, RemoteProtocolError

DATA = Path(__file__).parent / "data" / "q931_frames.txt"


@dataclass(frozen=True)
class Captured:
    section: str
    t: float
    sender: str      # "NET" or "CPE"
    data: bytes

    @property
    def frame(self) -> LapdFrame:
        return LapdFrame.parse(self.data)

    @property
    def message(self) -> Message | None:
        return self.frame.q931()


def load(path: Path = DATA) -> list[Captured]:
    frames, section = [], ""
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        t, direction, *octets = line.split()
        frames.append(Captured(section, float(t), direction.split(">")[0],
                               bytes.fromhex("".join(octets))))
    return frames


FRAMES = load()
SECTIONS = ("euroisdn_e1", "ni2")


def messages(section: str, name: str | None = None) -> list[tuple[str, Message]]:
    found = [(c.sender, c.message) for c in FRAMES if c.section == section and c.message]
    return [(s, m) for s, m in found if name is None or m.name == name]


def one(section: str, name: str, index: int = 0) -> Message:
    return messages(section, name)[index][1]


def test_fixture_has_both_switch_types_and_every_frame_kind_we_expect():
    assert {c.section for c in FRAMES} == set(SECTIONS)
    assert len(FRAMES) > 60
    kinds = {c.frame.kind for c in FRAMES}
    assert kinds == {FrameKind.SABME, FrameKind.UA, FrameKind.I, FrameKind.RR}


# ------------------------------------------------------------------------ facts
@pytest.mark.parametrize("section", SECTIONS)
def test_message_sequence(section):
    got = [(sender, m.name) for sender, m in messages(section)]
    net, cpe = "NET", "CPE"
    assert got == [
        (cpe, "RESTART"), (net, "RESTART ACKNOWLEDGE"),
        (net, "SETUP"), (cpe, "CALL PROCEEDING"), (cpe, "PROGRESS"), (cpe, "ALERTING"),
        (cpe, "CONNECT"), (net, "CONNECT ACKNOWLEDGE"),
        (net, "DISCONNECT"), (cpe, "RELEASE"), (net, "RELEASE COMPLETE"),
        (net, "SETUP"), (cpe, "CALL PROCEEDING"), (cpe, "ALERTING"),
        (cpe, "DISCONNECT"), (net, "RELEASE"), (cpe, "RELEASE COMPLETE"),
    ]


@pytest.mark.parametrize("section", SECTIONS)
def test_alerting_and_progress_carry_pi_8_from_the_local_private_network(section):
    for name in ("ALERTING", "PROGRESS"):
        for _, m in messages(section, name):
            assert m.progress_descriptions == [8]
            assert m.decoded(ProgressIndicator) == ProgressIndicator(
                description=8, location=1, coding_standard=0)
            assert b"\x1e\x02\x81\x88" in m.serialize()
    for _, m in messages(section, "CALL PROCEEDING"):
        assert m.progress_descriptions == []   # pri_proceeding(info=0)


@pytest.mark.parametrize(("section", "law", "layer1"),
                         [("euroisdn_e1", "alaw", 3), ("ni2", "ulaw", 2)])
def test_setup_bearer_law_follows_the_switch_type(section, law, layer1):
    for _, setup in messages(section, "SETUP"):
        assert setup.layer1_law == law
        bc = setup.decoded(BearerCapability)
        assert (bc.transfer_capability, bc.transfer_mode, bc.transfer_rate, bc.layer1) == (
            0x00, 0, 0x10, layer1)


@pytest.mark.parametrize("section", SECTIONS)
def test_setup_numbers_channel_and_name(section):
    (_, first), (_, second) = messages(section, "SETUP")
    assert (first.called_number, first.calling_number, first.channel) == (
        "5551000", "5552000", 1)
    assert (second.called_number, second.channel) == ("5551001", 2)
    assert first.decoded(CalledPartyNumber) == CalledPartyNumber(
        "5551000", type_of_number=2, numbering_plan=1)
    assert first.decoded(CallingPartyNumber) == CallingPartyNumber(
        "5552000", type_of_number=2, numbering_plan=1, presentation=0, screening=0)
    ci = first.decoded(ChannelIdentification)
    assert (ci.primary, ci.exclusive, ci.d_channel, ci.channels) == (True, True, False, (1,))
    assert first.display == "Lab Caller"
    # NI-2 puts the ANSI display type "calling party name" before the text; EuroISDN
    # ends the SETUP with Sending complete, so libpri reports complete=1 only there.
    display_type = first.decoded(Display).display_type
    sending_complete = first.find(IE.SENDING_COMPLETE) is not None
    assert (display_type, sending_complete) == (
        (None, True) if section == "euroisdn_e1" else (0xB1, False))


@pytest.mark.parametrize("section", SECTIONS)
def test_clearing_causes(section):
    got = [(sender, m.name, m.cause) for sender, m in messages(section)
           if m.message_type in (MessageType.DISCONNECT, MessageType.RELEASE,
                                 MessageType.RELEASE_COMPLETE)]
    assert [(s, c) for s, name, c in got if name == "DISCONNECT"] == [("NET", 16), ("CPE", 21)]
    assert {c for _, _, c in got[:3]} == {16} and {c for _, _, c in got[3:]} == {21}
    assert one(section, "DISCONNECT", 1).decoded(Cause) == Cause(21, location=1)


@pytest.mark.parametrize("section", SECTIONS)
def test_call_references(section):
    restart, ack = one(section, "RESTART"), one(section, "RESTART ACKNOWLEDGE")
    assert (restart.call_reference, restart.call_reference_length) == (0, 2)  # global
    assert restart.decoded(RestartIndicator) == RestartIndicator(0)
    assert restart.channel == ack.channel == 3
    assert ack.call_reference_flag is True
    for index, (sender, m) in enumerate(messages(section)[2:]):
        assert m.call_reference == (1 if index < 9 else 2)
        assert m.call_reference_flag is (sender == "CPE")  # NET chose the reference
        assert m.protocol_discriminator == 0x08


@pytest.mark.parametrize("section", SECTIONS)
def test_lapd_fields(section):
    frames = [c for c in FRAMES if c.section == section]
    sabme = frames[0].frame
    assert (sabme.kind, sabme.sapi, sabme.tei, sabme.pf) == (FrameKind.SABME, 0, 0, True)
    for c in frames:
        f = c.frame
        from_network = c.sender == "NET"
        # libpri sends commands (SABME, I) and answers with responses (UA, RR)
        expect_command = f.kind in (FrameKind.SABME, FrameKind.I)
        assert f.is_command(from_network=from_network) is expect_command, c
    for sender in ("NET", "CPE"):
        n_s = [c.frame.n_s for c in frames if c.sender == sender and c.frame.kind == "I"]
        assert n_s == list(range(len(n_s)))


def test_encoders_rebuild_libpris_setup_byte_for_byte():
    setup = one("euroisdn_e1", "SETUP")
    built = Message(MessageType.SETUP, call_reference=1, ies=[
        BearerCapability(transfer_capability=0x00, layer1=3).to_ie(),
        ChannelIdentification(channels=(1,), exclusive=True).to_ie(),
        Display("Lab Caller").to_ie(),
        CallingPartyNumber("5552000", type_of_number=2, presentation=0, screening=0).to_ie(),
        CalledPartyNumber("5551000", type_of_number=2).to_ie(),
        InformationElement(IE.SENDING_COMPLETE),
    ])
    assert built == setup
    assert built.serialize() == setup.serialize()
    frame = LapdFrame(FrameKind.I, cr=1, n_s=1, n_r=1, info=built.serialize())
    assert frame.serialize() == next(c.data for c in FRAMES if c.message == setup)


# ------------------------------------------------------- round trip and truncation
@pytest.mark.parametrize("captured", FRAMES, ids=lambda c: f"{c.section}@{c.t:.6f}")
def test_round_trip_byte_exact(captured):
    frame = LapdFrame.parse(captured.data)
    assert frame.serialize() == captured.data
    assert LapdFrame.parse(captured.data + b"\xaa\xbb", fcs=True) == frame
    assert frame.serialize(fcs=True) == captured.data + b"\x00\x00"
    message = frame.q931()
    if message is not None:
        assert message.serialize() == frame.info
        assert Message.parse(message.serialize()) == message
        for ie in message.ies:
            typed = ie.decode()
            if typed is not None:
                assert typed.serialize() == ie.contents
                assert typed.to_ie() == ie


@pytest.mark.parametrize("captured", FRAMES, ids=lambda c: f"{c.section}@{c.t:.6f}")
def test_every_truncated_prefix_raises_or_is_a_valid_shorter_frame(captured):
    full = captured.frame
    full_message = full.q931()
    for cut in range(len(captured.data)):
        prefix = captured.data[:cut]
        try:
            frame = LapdFrame.parse(prefix)
            message = frame.q931()
        except Q931DecodeError as exc:
            assert "truncated" in str(exc), (cut, str(exc))
            continue
        # legitimately shorter: see the module docstring
        assert frame.kind == FrameKind.I and full.kind == FrameKind.I, cut
        assert frame.serialize() == prefix
        if message is None:
            assert cut == 4 and frame.info == b""
        else:
            assert message.serialize() == frame.info
            assert message.ies == full_message.ies[:len(message.ies)]
            assert len(message.ies) < len(full_message.ies)


def test_truncated_messages_say_what_and_where():
    cases = {
        b"": "truncated protocol discriminator at offset 0",
        b"\x08": "truncated call reference length at offset 1",
        b"\x08\x02\x00": "truncated call reference (1 of 2 octets) at offset 2",
        b"\x08\x02\x00\x01": "truncated message type at offset 4",
        b"\x08\x02\x00\x01\x05\x04": "truncated IE 0x04 (Bearer capability): no length octet"
                                     " at offset 5",
        b"\x08\x02\x00\x01\x05\x70\x05\xa1\x35": "truncated IE 0x70 (Called party number):"
                                                 " length 5 but only 2 octets follow at"
                                                 " offset 5",
    }
    for data, text in cases.items():
        with pytest.raises(Q931DecodeError) as info:
            Message.parse(data)
        assert str(info.value) == f"Q.931 message has {text}"
    assert info.value.offset == 5 and info.value.cause == 95
    assert isinstance(info.value, RemoteProtocolError)
    with pytest.raises(Q931DecodeError, match=r"invalid call reference length octet 0x12"):
        Message.parse(b"\x08\x12\x00\x01\x05")


def test_lapd_errors_say_what_and_where():
    with pytest.raises(Q931DecodeError, match="truncated address field: 1 of 2 octets"):
        LapdFrame.parse(b"\x00")
    with pytest.raises(Q931DecodeError, match="invalid address extension bits in 01 01"):
        LapdFrame.parse(b"\x01\x01\x7f")
    with pytest.raises(Q931DecodeError, match="truncated control field at offset 2"):
        LapdFrame.parse(b"\x00\x01")
    with pytest.raises(Q931DecodeError, match="I frame has truncated control field"):
        LapdFrame.parse(b"\x00\x01\x00")
    with pytest.raises(Q931DecodeError, match="undefined supervisory control field 0x0d"):
        LapdFrame.parse(b"\x00\x01\x0d\x02")
    with pytest.raises(Q931DecodeError, match="undefined unnumbered control field 0x23"):
        LapdFrame.parse(b"\x00\x01\x23")
    with pytest.raises(Q931DecodeError, match=r"RR frame has 2 unexpected octets .*FCS"):
        LapdFrame.parse(b"\x00\x01\x01\x02\x12\x34")
    with pytest.raises(Q931DecodeError, match="not even the 2 FCS octets"):
        LapdFrame.parse(b"\x00", fcs=True)


def test_typed_ie_errors_say_what_and_where():
    with pytest.raises(Q931DecodeError) as info:
        Cause.parse(b"\x81")
    assert str(info.value) == ("Cause IE is truncated: cause value (octet 4) missing at"
                               " contents offset 1")
    assert (info.value.offset, info.value.cause) == (1, 100)
    with pytest.raises(Q931DecodeError, match="truncated: channel number"):
        ChannelIdentification.parse(b"\xa9\x83")
    with pytest.raises(Q931DecodeError, match="channel number"):
        ChannelIdentification.parse(b"\xa9\x83\x01")           # extension bit never 1
    with pytest.raises(Q931DecodeError, match="non-IA5 digit 0xb5 at contents offset 2"):
        CalledPartyNumber.parse(b"\xa1\x35\xb5")
    with pytest.raises(Q931DecodeError, match="has 3 octets; expected 2"):
        ProgressIndicator.parse(b"\x81\x88\x00")
    with pytest.raises(Q931DecodeError, match="extension bit 0"):
        BearerCapability.parse(b"\x00\x90")


# --------------------------------------------------------------------- fuzzing
def _exercise(data: bytes) -> None:
    """Everything a tracer does with bytes from the wire; only Q931DecodeError may escape."""
    for fcs in (False, True):
        try:
            frame = LapdFrame.parse(data, fcs=fcs)
        except Q931DecodeError:
            continue
        assert frame.serialize(fcs=fcs)[:len(data) - 2 * fcs] == data[:len(data) - 2 * fcs]
        describe(frame)
        try:
            frame.q931()
        except Q931DecodeError:
            pass
    try:
        message = Message.parse(data)
    except Q931DecodeError:
        message = None
    if message is not None:
        assert message.serialize() == data
        describe(message)
        describe(message, brief=True)
        for prop in ("progress_descriptions", "cause", "channel", "called_number",
                     "calling_number", "display", "layer1_law"):
            try:
                getattr(message, prop)
            except Q931DecodeError:
                pass
    for cls in TYPED_IES.values():
        try:
            typed = cls.parse(data)
        except Q931DecodeError:
            continue
        assert cls.parse(typed.serialize()) == typed


def test_random_bytes_raise_nothing_but_q931_decode_error():
    rng = random.Random(931)
    for _ in range(4000):
        _exercise(rng.randbytes(rng.randrange(0, 48)))


def test_mutated_fixture_frames_raise_nothing_but_q931_decode_error():
    rng = random.Random(921)
    for _ in range(4000):
        data = bytearray(rng.choice(FRAMES).data)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data += rng.randbytes(rng.randrange(1, 6))
        _exercise(bytes(data))
        _exercise(bytes(data[4:]))       # as a bare Q.931 message


# ------------------------------------------------------------- encoders and IEs
TYPED_SAMPLES = [
    BearerCapability(),
    BearerCapability(transfer_capability=0x10, layer1=2),
    BearerCapability(transfer_capability=0x08, transfer_rate=0x18, rate_multiplier=2),
    BearerCapability(layer1=1, layer1_extra=b"\x03\x81", extra=b"\xc2\xe6"),
    Cause(16),
    Cause(21, location=0, recommendation=0, diagnostics=b"\x01\x02"),
    Cause(127, location=10, coding_standard=3),
    ChannelIdentification(channels=(1,)),
    ChannelIdentification(channels=(1, 2, 30), exclusive=False),
    ChannelIdentification(selection=3, exclusive=False),
    ChannelIdentification(selection=0, d_channel=True),
    ChannelIdentification(primary=False, selection=2),
    ChannelIdentification(channels=(5,), interface_id=b"\x81"),
    ChannelIdentification(slot_map=b"\x00\x00\x03"),
    ProgressIndicator(8),
    ProgressIndicator(1, location=2),
    CalledPartyNumber("5551000", type_of_number=2),
    CalledPartyNumber("*21#", type_of_number=0, numbering_plan=9),
    CalledPartyNumber(""),
    CallingPartyNumber("5552000"),
    CallingPartyNumber("0049301234", type_of_number=1, presentation=1, screening=3),
    Display("Lab Caller"),
    Display("Müller", display_type=0xB1),
    Display(""),
    RestartIndicator(0),
    RestartIndicator(7),
]


@pytest.mark.parametrize("typed", TYPED_SAMPLES, ids=repr)
def test_encoders_build_ies_that_decode_back(typed):
    ie = typed.to_ie()
    assert ie.identifier == type(typed).IDENTIFIER
    assert ie.decode() == typed
    message = Message(MessageType.INFORMATION, call_reference=0x7FFF, ies=(ie,))
    reparsed = Message.parse(message.serialize())
    assert reparsed == message
    assert reparsed.decoded(type(typed)) == typed


def test_encoder_arguments_are_checked():
    bad = [
        lambda: Cause(128),
        lambda: ProgressIndicator(8, location=16),
        lambda: ChannelIdentification(channels=(200,)),
        lambda: ChannelIdentification(channels=(1,), primary=False),
        lambda: CallingPartyNumber("1", presentation=0),
        lambda: CalledPartyNumber("5551OOO\u00e9"),
        lambda: Display("\u20ac"),
        lambda: InformationElement(0xA1, b"x"),
        lambda: InformationElement(0x28, bytes(256)),
        lambda: Message(MessageType.SETUP, call_reference=0x8000),
        lambda: Message(MessageType.SETUP, call_reference_length=0, call_reference_flag=True),
        lambda: LapdFrame(FrameKind.RR),
        lambda: LapdFrame(FrameKind.UA, n_r=1),
        lambda: LapdFrame(FrameKind.RR, n_r=0, info=b"x"),
        lambda: LapdFrame(FrameKind.SABME, sapi=64),
    ]
    for make in bad:
        with pytest.raises(ArgumentError):
            make()


def test_codeset_shifts_are_kept_raw_and_not_decoded_as_codeset_0():
    display = Display("cs0").to_ie()
    data = Message(MessageType.SETUP, call_reference=5, ies=(
        InformationElement(0x9E),                  # non-locking shift to codeset 6
        InformationElement(0x28, b"cs6 name"),     # libpri's "Display (CS6)"
        display,
        InformationElement(0x95),                  # locking shift to codeset 5
        InformationElement(0x28, b"cs5"),
        InformationElement(0x7B, b"\x01"),
    )).serialize()
    message = Message.parse(data)
    assert [ie.codeset for ie in message.ies] == [0, 6, 0, 0, 5, 5]
    assert message.display == "cs0"
    assert message.find_all(IE.DISPLAY) == [display]
    assert message.ies[1].decode() is None
    assert message.ies[0].name == "Shift" and message.ies[4].name == "codeset 5 IE 0x28"
    assert message.serialize() == data


def test_names():
    assert message_type_name(0x02) == "CALL PROCEEDING"
    assert message_type_name(0x0F, 0x03) == "SERVICE"
    assert message_type_name(0x0F) == "CONNECT ACKNOWLEDGE"
    assert message_type_name(0x6A) == "message type 0x6a"
    assert message_type_name(0x6A, 0x09) == "PD 0x09 message type 0x6a"
    assert InformationElement(0xA1).name == "Sending complete"
    assert InformationElement(IE.CHANNEL_IDENTIFICATION, b"\xa9\x83\x81").name == (
        "Channel identification")
    for value in (1, 3, 6, 16, 17, 18, 19, 21, 22, 27, 28, 31, 34, 38, 41, 42, 44, 47, 50, 58,
                  63, 65, 66, 79, 81, 88, 95, 96, 97, 98, 99, 100, 101, 102, 111, 127):
        assert not cause_name(value).startswith("unknown"), value
    assert cause_name(16) == "normal call clearing" and cause_name(55) == "unknown cause 55"


# --------------------------------------------------------------------- describe
def test_describe_fixture_messages():
    assert describe(one("euroisdn_e1", "SETUP")) == (
        'SETUP B1 exclusive, 5551000 <- 5552000 "Lab Caller", speech A-law')
    assert describe(one("ni2", "SETUP"), brief=True) == "SETUP B1, 5551000 <- 5552000"
    assert describe(one("ni2", "SETUP")).endswith("speech mu-law")
    assert describe(one("euroisdn_e1", "ALERTING")) == (
        "ALERTING PI #8 in-band info now available")
    assert describe(one("euroisdn_e1", "CALL PROCEEDING")) == "CALL PROCEEDING B1 exclusive"
    assert describe(one("euroisdn_e1", "DISCONNECT")) == (
        "DISCONNECT cause 16 normal call clearing")
    assert describe(one("euroisdn_e1", "DISCONNECT", 1)) == "DISCONNECT cause 21 call rejected"
    assert describe(one("euroisdn_e1", "RESTART")) == "RESTART B3 exclusive, indicated channels"
    assert describe(one("euroisdn_e1", "CONNECT ACKNOWLEDGE")) == "CONNECT ACKNOWLEDGE"


def test_describe_frames_and_damage():
    assert describe(LapdFrame.parse(bytes.fromhex("0001 0102"))) == "RR N(R)=1"
    assert describe(LapdFrame.parse(bytes.fromhex("02017f"))) == "SABME P/F"
    assert describe(LapdFrame(FrameKind.UI, sapi=63, tei=127, info=b"\x0f\x00\x01\x01\xff")) \
        == "UI SAPI 63 TEI 127, 5 octets"
    bad_info = LapdFrame(FrameKind.I, n_s=0, n_r=0, info=b"\x08\x02\x00")
    assert describe(bad_info).startswith("I N(S)=0 N(R)=0, undecodable Q.931 (Q.931 message"
                                         " has truncated call reference")
    bad_cause = Message(MessageType.DISCONNECT, 1, ies=(InformationElement(IE.CAUSE, b"\x81"),))
    assert describe(bad_cause) == "DISCONNECT bad cause"
    alerting = Message(MessageType.ALERTING, 1, ies=(
        ChannelIdentification(channels=(1,)).to_ie(), ProgressIndicator(8).to_ie()))
    assert describe(alerting) == "ALERTING B1 exclusive, PI #8 in-band info now available"


# ----------------------------------------------------------------------- ladder
def _ladder(section: str, **options) -> Ladder:
    ladder = Ladder("uascall (CPE)", "far end (NET)", **options)
    for c in FRAMES:
        if c.section == section:
            ladder.add(c.t, "<-" if c.sender == "NET" else "->", c.frame)
    return ladder


def test_ladder_renders_the_demo_in_order_and_direction():
    text = _ladder("euroisdn_e1").render()
    lines = text.splitlines()
    assert lines[0].split() == ["time", "uascall", "(CPE)", "far", "end", "(NET)"]
    rows = lines[1:]
    assert len({len(row) for row in rows}) == 1              # fixed width
    expected = [("->", "RESTART"), ("<-", "RESTART ACKNOWLEDGE"),
                ("<-", "SETUP B1, 5551000 <- 5552000"), ("->", "CALL PROCEEDING B1"),
                ("->", "PROGRESS PI #8"), ("->", "ALERTING PI #8"), ("->", "CONNECT B1"),
                ("<-", "CONNECT ACKNOWLEDGE"), ("<-", "DISCONNECT cause 16"),
                ("->", "RELEASE cause 16"), ("<-", "RELEASE COMPLETE cause 16"),
                ("<-", "SETUP B2"), ("->", "CALL PROCEEDING B2"), ("->", "ALERTING PI #8"),
                ("->", "DISCONNECT cause 21"), ("<-", "RELEASE cause 21"),
                ("->", "RELEASE COMPLETE cause 21")]
    assert len(rows) == len(expected)
    for row, (direction, label) in zip(rows, expected, strict=True):
        arrow = row[row.index("|") + 1:row.rindex("|")]
        assert f" {label}" in arrow, row
        if direction == "->":
            assert arrow.startswith("---") and arrow.endswith(">"), row
        else:
            assert arrow.startswith("<--") and arrow.endswith("-"), row
    assert rows[2] == ("  0.000       |<------------ SETUP B1, 5551000 <- 5552000"
                       " -----------|")
    assert rows[3] == ("  0.000       |------------- CALL PROCEEDING B1"
                       " -------------------->|")


def test_ladder_layer2_option_and_errors():
    plain, full = _ladder("ni2").render(), _ladder("ni2", show_layer2=True).render()
    assert "RR N(R)" not in plain and "SABME" not in plain
    assert full.count("RR N(R)") == sum(
        c.frame.kind == FrameKind.RR for c in FRAMES if c.section == "ni2")
    assert full.splitlines()[1].startswith("  0.000       |<------------ SABME P/F ---")
    ladder = Ladder("a", "b", span=30)
    ladder.add(1.5, "<-", one("euroisdn_e1", "SETUP"))
    row = ladder.render().splitlines()[1]
    assert row.endswith("... --|") and len(row) == 14 + 30 + 2
    with pytest.raises(ArgumentError, match="direction"):
        ladder.add(0.0, "=>", one("euroisdn_e1", "SETUP"))
    with pytest.raises(ArgumentError, match="Message or LapdFrame"):
        ladder.add(0.0, "->", b"\x08\x02\x00\x01\x05")
