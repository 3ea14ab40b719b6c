"""Caller ID (uascall.media.callerid): messages byte by byte, then FSK on the line.

Byte vectors: the SDMF example published by microEngineering Labs
(melabs.com/resources/callerid.htm, the one commonly attributed to Bellcore's Caller ID
documents); the same page's MDMF and "blocked" SDMF examples carry checksums that do not
add up (0x7D for 0x84, 0x12 for 0x0E) and serve as real-world checksum errors. No byte
example of an ETSI EN 300 659-3 call set-up message was at hand, so the ETSI vectors are
assembled here by hand from its parameter codings, with checksums summed separately.
"""

from __future__ import annotations

import math
import random

import pytest

from tests import audio
from uascall.errors import ArgumentError, RemoteProtocolError
from uascall.media import g711
from uascall.media.callerid import (
    BELL,
    ETSI,
    Absence,
    CallerId,
    CallerIdError,
    CallerIdReceiver,
    ChecksumError,
    MalformedParameter,
    Message,
    TrailingData,
    TruncatedMessage,
    UnknownMessageType,
    modulate,
    spill,
)
from uascall.media.dtmf import dtmf_samples

RATE = 8000
SPB = RATE / 1200

SDMF_EXAMPLE = bytes.fromhex("04 12 30 39 33 30 31 32 32 34 36 30 39 35 35 35 31 32 31 32 51")
SDMF_BLOCKED_PUBLISHED = bytes.fromhex("04 09 30 39 33 30 31 32 32 34 50 12")
SDMF_BLOCKED = bytes.fromhex("04 09 30 39 33 30 31 32 32 34 50 0E")
MDMF_PUBLISHED = bytes.fromhex(
    "80 20 01 08 30 33 32 34 30 39 30 32 07 08 4A 4F 48 4E 20 44 4F 45 02 0A 38 30 30 35 "
    "35 35 31 32 31 32 7D")
MDMF_FIXED = MDMF_PUBLISHED[:-1] + b"\x84"
# our order: date-time, number, name
MDMF_OURS = bytes.fromhex(
    "80 20 01 08 30 33 32 34 30 39 30 32 02 0A 38 30 30 35 35 35 31 32 31 32 07 08 4A 4F 48 "
    "4E 20 44 4F 45 84")
JOHN_DOE = CallerId(number="8005551212", name="JOHN DOE", month=3, day=24, hour=9, minute=2)
# ETSI call set-up: 0x01 "11151430", 0x02 "0123456789", 0x07 "Erika Mustermann"
ETSI_FULL = bytes.fromhex(
    "80 28 01 08 31 31 31 35 31 34 33 30 02 0A 30 31 32 33 34 35 36 37 38 39 07 10 45 72 69 "
    "6B 61 20 4D 75 73 74 65 72 6D 61 6E 6E 59")
ERIKA = CallerId(number="0123456789", name="Erika Mustermann", month=11, day=15, hour=14,
                 minute=30)
# 0x01 "01020304", 0x04 "P", 0x08 "O", then 0x11 call type (voice) and 0x03 called line
# identity "5678", which a Caller ID does not hold and parsing skips
ETSI_WITHHELD = bytes.fromhex(
    "80 19 01 08 30 31 30 32 30 33 30 34 04 01 50 08 01 4F 11 01 01 03 04 35 36 37 38 33")


# --------------------------------------------------------------------------- messages

def test_published_sdmf_example_byte_exact():
    cid = CallerId.parse(SDMF_EXAMPLE)
    assert cid == CallerId(number="6095551212", month=9, day=30, hour=12, minute=24)
    assert cid.serialize("sdmf") == SDMF_EXAMPLE


def test_published_examples_with_bad_checksums_are_rejected():
    with pytest.raises(ChecksumError, match="checksum is 0x7D; expected 0x84"):
        CallerId.parse(MDMF_PUBLISHED)
    with pytest.raises(ChecksumError, match="checksum is 0x12; expected 0x0E"):
        CallerId.parse(SDMF_BLOCKED_PUBLISHED)


def test_corrected_examples_decode_and_reserialize_byte_exact():
    assert CallerId.parse(MDMF_FIXED) == JOHN_DOE
    assert Message.parse(MDMF_FIXED).serialize() == MDMF_FIXED
    assert JOHN_DOE.serialize("mdmf") == MDMF_OURS
    blocked = CallerId.parse(SDMF_BLOCKED)
    assert blocked == CallerId(month=9, day=30, hour=12, minute=24,
                               number_absence=Absence.PRIVATE)
    assert blocked.serialize("sdmf") == SDMF_BLOCKED


def test_etsi_call_setup_vectors():
    assert ERIKA.serialize("etsi") == ETSI_FULL
    assert CallerId.parse(ETSI_FULL) == ERIKA
    withheld = CallerId.parse(ETSI_WITHHELD)
    assert withheld == CallerId(month=1, day=2, hour=3, minute=4,
                                number_absence=Absence.PRIVATE,
                                name_absence=Absence.UNAVAILABLE)
    assert [k for k, _ in Message.parse(ETSI_WITHHELD).parameters()] == [1, 4, 8, 0x11, 3]


ROUND_TRIPS = [
    (CallerId(number="5551234", month=1, day=1, hour=0, minute=0), ("sdmf", "mdmf", "etsi")),
    (CallerId(month=12, day=31, hour=23, minute=59, number_absence=Absence.UNAVAILABLE),
     ("sdmf", "mdmf", "etsi")),
    (CallerId(number="+44 20 7946 0000", name="A. N. Other"), ("mdmf", "etsi")),
    (CallerId(name_absence=Absence.PRIVATE, number_absence=Absence.PRIVATE), ("mdmf", "etsi")),
    (CallerId(name="Ærø Müller-Lüdenscheidt", number="0"), ("etsi",)),
    (CallerId(), ("mdmf", "etsi")),
]


@pytest.mark.parametrize("cid, formats", ROUND_TRIPS)
def test_serialize_parse_round_trip(cid, formats):
    for fmt in formats:
        data = cid.serialize(fmt)
        assert sum(data) % 256 == 0
        assert data[1] == len(data) - 3
        assert CallerId.parse(data) == cid


def test_every_single_byte_corruption_is_detected():
    for data in (SDMF_EXAMPLE, MDMF_FIXED, ETSI_FULL):
        for i in range(len(data)):
            for flip in (0x01, 0x80, 0x5A):
                bad = bytearray(data)
                bad[i] ^= flip
                expected = (TruncatedMessage, TrailingData) if i == 1 else ChecksumError
                with pytest.raises(expected):
                    CallerId.parse(bytes(bad))


def test_every_truncated_prefix_is_refused():
    for data in (SDMF_EXAMPLE, MDMF_FIXED, ETSI_WITHHELD):
        for n in range(len(data)):
            with pytest.raises(TruncatedMessage):
                Message.parse(data[:n])


def test_trailing_bytes_are_refused():
    with pytest.raises(TrailingData, match="1 more"):
        Message.parse(SDMF_EXAMPLE + b"\x00")


def msg(kind: int, body: bytes) -> bytes:
    """Frame ``body`` with a checksum computed independently of the module."""
    head = bytes([kind, len(body)]) + body
    return head + bytes([(256 - sum(head) % 256) % 256])


def test_unknown_message_type():
    data = msg(0x82, b"\x0b\x01\xff")  # message waiting indicator
    assert Message.parse(data) == Message(0x82, b"\x0b\x01\xff")
    with pytest.raises(UnknownMessageType, match="0x82"):
        CallerId.parse(data)


def test_unknown_parameters_are_skipped():
    body = b"\x01\x0812250800" + b"\x99\x03abc" + b"\x02\x03123" + b"\x00\x00"
    assert CallerId.parse(msg(0x80, body)) == CallerId(number="123", month=12, day=25,
                                                        hour=8, minute=0)


@pytest.mark.parametrize("data, error, text", [
    (msg(0x80, b"\x01\x0812A50800"), MalformedParameter, "8 digits"),
    (msg(0x80, b"\x01\x071225080"), MalformedParameter, "8 digits"),
    (msg(0x80, b"\x01\x0813250800"), MalformedParameter, "month is 13"),
    (msg(0x80, b"\x01\x0812250860"), MalformedParameter, "minute is 60"),
    (msg(0x80, b"\x04\x01X"), MalformedParameter, "absence of the number"),
    (msg(0x80, b"\x08\x02PP"), MalformedParameter, "absence of the name"),
    (msg(0x80, b"\x02\x0a123"), TruncatedMessage, "only 3 remain"),
    (msg(0x80, b"\x02\x01" + b"1" + b"\x07"), TruncatedMessage, "no length"),
    (msg(0x04, b"0930122"), MalformedParameter, "SDMF body is 7 bytes"),
])
def test_malformed_messages(data, error, text):
    with pytest.raises(error, match=text) as info:
        CallerId.parse(data)
    assert isinstance(info.value, CallerIdError)
    assert isinstance(info.value, RemoteProtocolError)


@pytest.mark.parametrize("kwargs, fmt, text", [
    ({"name": "X" * 16}, "mdmf", "1 to 15"),
    ({"number": "1" * 21}, "etsi", "1 to 20"),
    ({"name": "X" * 51}, "etsi", "1 to 50"),
    ({"number": ""}, "mdmf", "1 to 20"),
    ({"number": "12\n3"}, "mdmf", "control character"),
    ({"name": "Łukasz"}, "etsi", "ISO 8859-1"),
    ({"number": "123"}, "sdmf", "date-time"),
    ({"name": "X", "month": 1, "day": 1, "hour": 1, "minute": 1}, "sdmf", "no name"),
    ({"number": "1"}, "xml", "unknown Caller ID format"),
])
def test_serialize_refuses_what_the_format_cannot_carry(kwargs, fmt, text):
    with pytest.raises(ArgumentError, match=text):
        CallerId(**kwargs).serialize(fmt)


@pytest.mark.parametrize("kwargs", [
    {"month": 1}, {"month": 13, "day": 1, "hour": 0, "minute": 0},
    {"month": 1, "day": 0, "hour": 0, "minute": 0}, {"month": 1, "day": 1, "hour": 24,
                                                      "minute": 0},
    {"number": "1", "number_absence": Absence.PRIVATE}, {"name_absence": "P"}, {"number": 5},
])
def test_caller_id_refuses_bad_values(kwargs):
    with pytest.raises(ArgumentError):
        CallerId(**kwargs)


# --------------------------------------------------------------------------- modulator

def bit_stream(data: bytes, seizure: int, marks: int) -> list[int]:
    bits = [i % 2 for i in range(seizure)] + [1] * marks
    for byte in data:
        bits += [0] + [(byte >> i) & 1 for i in range(8)] + [1]
    return bits


@pytest.mark.parametrize("std", [BELL, ETSI])
def test_modulator_sends_the_documented_bits_phase_continuously(std):
    """For a sine of frequency w, A·cos(phase) = (x[n+1] - x[n]·cos w) / sin w, so the
    amplitude sqrt(x[n]² + (A·cos phase)²) computed with the frequency of sample n's bit
    is the constant A for every n exactly when sample n+1 continues sample n's phase at
    that frequency: this checks the bit sequence, the framing and phase continuity."""
    data = JOHN_DOE.serialize(std.format)
    samples = spill(JOHN_DOE, std.name)
    bits = bit_stream(data, std.seizure_bits, std.mark_bits)
    total = math.ceil(len(bits) * SPB)
    assert len(samples) == total + 8  # plus the 1 ms fade-out
    amplitude = audio.reference_rms("ulaw") * math.sqrt(2) * 10 ** (-13.5 / 20)
    freq = {1: std.mark_hz, 0: std.space_hz}
    worst = 0.0
    for n in range(total - 1):
        w = 2 * math.pi * freq[bits[int(n / SPB)]] / RATE
        x0, x1 = samples[n], samples[n + 1]
        estimate = math.hypot(x0, (x1 - x0 * math.cos(w)) / math.sin(w))
        worst = max(worst, abs(estimate - amplitude))
    assert worst < 3.0
    # the mark signal on its own: its frequency and level
    start = math.ceil(std.seizure_bits * SPB) + 8
    marks = samples[start:start + int(std.mark_bits * SPB) - 16]
    assert audio.dominant_frequency(marks) == pytest.approx(std.mark_hz, rel=0.002)
    assert audio.level_dbm0(marks, "ulaw") == pytest.approx(-13.5, abs=0.1)


def test_modulator_options():
    assert len(modulate(b"", "bell", seizure_bits=0, mark_bits=0)) == 0
    fast = modulate(b"", "etsi", seizure_bits=0, mark_bits=120, baud=1212, level_dbm0=-20,
                    frequency_error=0.01, law="alaw")
    assert len(fast) == math.ceil(120 * RATE / 1212) + 8
    steady = fast[20:-20]
    assert audio.dominant_frequency(steady) == pytest.approx(1313, rel=0.002)
    assert audio.level_dbm0(steady, "alaw") == pytest.approx(-20, abs=0.1)
    for bad in ({"baud": 2400}, {"frequency_error": 0.5}, {"level_dbm0": 10},
                {"mark_bits": -1}, {"law": "gsm"}, {"seizure_bits": 1.5}):
        with pytest.raises(ArgumentError):
            modulate(b"x", "bell", **bad)
    with pytest.raises(ArgumentError, match="unknown FSK standard"):
        modulate(b"x", "v21")
    with pytest.raises(ArgumentError, match="unknown FSK standard"):
        CallerIdReceiver("bell202")
    with pytest.raises(ArgumentError, match="message_types"):
        CallerIdReceiver("bell", message_types=[0x80, 256])


# --------------------------------------------------------------------------- receiver

def receive(samples, std: str, chunk: int | None = None, **kwargs):
    receiver = CallerIdReceiver(std, **kwargs)
    samples = list(samples)
    if chunk is None:
        return receiver.feed(samples), receiver
    events = []
    for i in range(0, len(samples), chunk):
        events += receiver.feed(samples[i:i + chunk])
    return events, receiver


def s16(values) -> list[int]:
    return [max(-32768, min(32767, round(v))) for v in values]


def with_noise(samples, level_dbm0: float, snr_db: float, rng: random.Random) -> list[int]:
    sigma = audio.reference_rms("ulaw") * 10 ** ((level_dbm0 - snr_db) / 20)
    return s16(v + rng.gauss(0.0, sigma) for v in samples)


STANDARDS = ["bell", "etsi"]


@pytest.mark.parametrize("std", STANDARDS)
@pytest.mark.parametrize("level", [-40.0, -30.0, -13.5, 0.0])
def test_round_trip_at_levels(std, level):
    samples = [0] * 237 + list(spill(ERIKA if std == "etsi" else JOHN_DOE, std,
                                     level_dbm0=level)) + [0] * 400
    events, receiver = receive(samples, std)
    assert [e.caller_id for e in events] == [ERIKA if std == "etsi" else JOHN_DOE]
    event = events[0]
    assert event.error is None and receiver.rejected == 0
    data = (ERIKA if std == "etsi" else JOHN_DOE).serialize(_std(std).format)
    assert event.message.serialize() == data
    # the mark signal starts after the 300-bit seizure; the last stop bit ends the data
    seizure, marks = 300 * SPB, _std(std).mark_bits * SPB
    assert event.start == pytest.approx(237 + seizure, abs=SPB)
    assert event.end == pytest.approx(237 + seizure + marks + 10 * len(data) * SPB, abs=SPB)


def _std(name: str):
    return {"bell": BELL, "etsi": ETSI}[name]


@pytest.mark.parametrize("std", STANDARDS)
@pytest.mark.parametrize("offset", [{"frequency_error": 0.01}, {"frequency_error": -0.01},
                                    {"baud": 1212.0}, {"baud": 1188.0},
                                    {"frequency_error": 0.01, "baud": 1188.0}])
def test_round_trip_with_an_off_nominal_transmitter(std, offset):
    samples = [0] * 100 + list(spill(JOHN_DOE, std, **offset)) + [0] * 300
    events, _ = receive(samples, std)
    assert [e.caller_id for e in events] == [JOHN_DOE]


@pytest.mark.parametrize("std", STANDARDS)
@pytest.mark.parametrize("level", [-13.5, -35.0])
@pytest.mark.parametrize("seizure", [300, 0])
def test_round_trip_in_white_noise_at_10db_snr(std, level, seizure):
    """Noise power 10 dB below the spill's, over the whole 0-4 kHz band; also spills with
    no channel seizure and the shortest ETSI mark signal (55 bits)."""
    rng = random.Random(f"{std}{level}{seizure}")
    marks = 55 if seizure == 0 else None
    for trial in range(5):
        clean = [0] * rng.randrange(800) + list(spill(
            ERIKA, std, level_dbm0=level, format="etsi", seizure_bits=seizure,
            mark_bits=marks)) + [0] * 400
        events, _ = receive(with_noise(clean, level, 10.0, rng), std)
        assert [e.caller_id for e in events] == [ERIKA], f"trial {trial}"


@pytest.mark.parametrize("std", STANDARDS)
@pytest.mark.parametrize("law", ["ulaw", "alaw"])
@pytest.mark.parametrize("level", [-40.0, -13.5, 0.0])
def test_round_trip_through_g711(std, law, level):
    codec = g711.codec(law)
    samples = codec.decode(codec.encode(spill(JOHN_DOE, std, level_dbm0=level, law=law)))
    events, _ = receive(samples, std)
    assert [e.caller_id for e in events] == [JOHN_DOE]


@pytest.mark.parametrize("std", STANDARDS)
def test_results_do_not_depend_on_chunk_size(std):
    rng = random.Random(std)
    samples = with_noise([0] * 321 + list(spill(JOHN_DOE, std)) + [0] * 500
                         + list(spill(ERIKA, std, format="etsi")) + [0] * 77, -13.5, 20.0, rng)
    whole, _ = receive(samples, std)
    assert [e.caller_id for e in whole] == [JOHN_DOE, ERIKA]
    for chunk in (1, 7, 160, 1000):
        events, _ = receive(samples, std, chunk)
        assert events == whole, f"chunk {chunk}"


@pytest.mark.parametrize("std", STANDARDS)
def test_other_variants_decode(std):
    """SDMF, a spill without channel seizure and with the shortest ETSI mark (55 bits),
    and a message that is not Caller ID."""
    sdmf = CallerId(number="6095551212", month=9, day=30, hour=12, minute=24)
    mwi = msg(0x82, b"\x0b\x01\xff")
    # 803 samples is not a whole number of bits: the bit clock must re-align
    samples = (list(spill(sdmf, std, format="sdmf")) + [0] * 803
               + list(modulate(ERIKA.serialize("etsi"), std, seizure_bits=0, mark_bits=55))
               + [0] * 803 + list(modulate(mwi, std)))
    events, _ = receive(samples, std)
    assert [e.caller_id for e in events] == [sdmf, ERIKA, None]
    assert events[0].message.serialize() == SDMF_EXAMPLE
    assert events[2].message == Message(0x82, b"\x0b\x01\xff")
    # a receiver told to take only Caller ID messages drops the last one
    events, _ = receive(samples, std, message_types={0x04, 0x80})
    assert [e.caller_id for e in events] == [sdmf, ERIKA]


def fsk(bits: list[int], std, level_dbm0: float = -13.5) -> list[int]:
    """A second, independent modulator: bit k lasts from sample round(k·20/3), each
    sample a sine at the frequency of its bit, the phase carried on."""
    amplitude = audio.reference_rms("ulaw") * math.sqrt(2) * 10 ** (level_dbm0 / 20)
    out, phase = [], 0.0
    for k, bit in enumerate(bits):
        f = std.mark_hz if bit else std.space_hz
        for _ in range(round((k + 1) * SPB) - round(k * SPB)):
            out.append(round(amplitude * math.sin(phase)))
            phase += 2 * math.pi * f / RATE
    return out


@pytest.mark.parametrize("std", [BELL, ETSI])
def test_receiver_decodes_an_independent_modulator_and_checks_stop_bits(std):
    data = JOHN_DOE.serialize(std.format)
    bits = bit_stream(data, 300, std.mark_bits) + [1] * 4
    events, _ = receive(fsk(bits, std), std.name)
    assert [e.caller_id for e in events] == [JOHN_DOE]
    # the stop bit of the fifth byte made a space: that byte, and the message, are lost
    # (the data bits are untouched, so only the framing check can notice)
    stop = 300 + std.mark_bits + 5 * 10 - 1
    assert bits[stop] == 1
    bits[stop] = 0
    events, receiver = receive(fsk(bits, std), std.name)
    assert events == [] and receiver.rejected == 0


@pytest.mark.parametrize("std", STANDARDS)
def test_a_spill_below_the_carrier_floor_is_ignored(std):
    assert receive(spill(JOHN_DOE, std, level_dbm0=-55.0), std)[0] == []


def test_a_malformed_body_with_a_good_checksum_is_reported():
    data = msg(0x80, b"\x01\x0899999999")
    events, _ = receive(modulate(data, "bell"), "bell")
    assert len(events) == 1 and events[0].caller_id is None
    assert isinstance(events[0].error, MalformedParameter)


@pytest.mark.parametrize("std", STANDARDS)
def test_bad_checksum_and_cut_spills_give_nothing(std):
    good = JOHN_DOE.serialize("mdmf")
    corrupt = good[:-1] + bytes([good[-1] ^ 0x01])
    cut = list(spill(JOHN_DOE, std))
    samples = list(modulate(corrupt, std)) + [0] * 800 + cut[:len(cut) // 2 + 3] + [0] * 800
    events, receiver = receive(samples, std)
    assert events == []
    assert receiver.rejected == 1


SPEECH = (
    "Good evening. This is an automated message from your local library. The book you "
    "reserved, a history of the telephone exchange, is now ready for collection at the "
    "front desk. Opening hours are nine in the morning until six in the evening, Monday to "
    "Saturday. If you no longer need this item, please let us know so that it can be "
    "offered to the next reader on the waiting list. Thank you, and have a pleasant week. "
    "Remember that overdue items may be renewed online, by telephone, or in person."
)


@pytest.fixture(scope="module")
def speech() -> list[int]:
    from uascall.media.tts import synthesize

    return list(synthesize(SPEECH)) + list(synthesize(SPEECH, voice="en+f3"))


@pytest.mark.slow
@pytest.mark.parametrize("std", STANDARDS)
def test_garbage_gives_no_message_and_no_exception(std, speech):
    """About 54 s of speech, 30 s of white noise, 10 s of DTMF, silence and a clipped
    1333 Hz square wave: no message, no framed message dropped for its checksum, no
    exception."""
    rng = random.Random(std)
    assert len(speech) >= 50 * RATE
    noise = [rng.randint(-32768, 32767) for _ in range(10 * RATE)]
    quiet_noise = s16(rng.gauss(0, 2000) for _ in range(20 * RATE))
    square = [16000 if (i // 3) % 2 else -16000 for i in range(2 * RATE)]  # 1333 Hz
    for name, samples in (("speech", speech), ("noise", noise), ("quiet", quiet_noise),
                          ("dtmf", list(dtmf_samples("0123456789*#ABCD" * 4))),
                          ("silence", [0] * RATE), ("square", square)):
        events, receiver = receive(samples, std)
        assert events == [] and receiver.rejected == 0, name


@pytest.mark.parametrize("std", STANDARDS)
def test_spill_between_speech_and_noise(std, speech):
    rng = random.Random(len(std))
    samples = (s16(v * 0.5 for v in speech[:3 * RATE]) + list(spill(ERIKA, std, format="etsi"))
               + [rng.randint(-3000, 3000) for _ in range(RATE)]
               + s16(v * 0.5 for v in speech[3 * RATE:6 * RATE]))
    events, _ = receive(samples, std)
    assert [e.caller_id for e in events] == [ERIKA]
