"""RFC 4475's torture messages sent over UDP to the SIP backend, each with what it must get.

The parser's view of each message is in test_sip_message.py; here the whole user agent
answers them as a UAS with no application attached (so a valid INVITE is taken, gets 100
Trying, and is turned away 480 because nobody takes calls). ``None`` means no response at
all: RFC 4475 wants responses that cannot be processed dropped silently.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from uascall.backend import open_backend
from uascall.engine import Engine

DATA = Path(__file__).parent / "data" / "rfc4475"
TAKEN = (100, 480)  # a valid INVITE: Trying, then no application to take it

EXPECTED: dict[str, tuple[int, ...] | None] = {
    # 3.1.1 valid messages
    # wsinv's To carries a tag: a request in a dialog we do not have (RFC 3261 12.2.2)
    "wsinv": (481,), "intmeth": (501,), "esc01": TAKEN, "escnull": (405,), "esc02": (501,),
    "lwsdisp": (200,), "longreq": TAKEN, "dblreq": (405,), "semiuri": (200,),
    "transports": (200,), "mpart01": (405,), "unreason": None, "noreason": None,
    # 3.1.2 invalid messages
    "badinv01": (400,), "clerr": (400,), "ncl": (400,), "scalar02": (400,),
    "scalarlg": None, "quotbal": (400,), "ltgtruri": (400,), "lwsruri": (400,),
    "lwsstart": (400,), "trws": (400,), "escruri": (400,), "baddate": TAKEN,
    "regbadct": (400,), "badaspec": (400,), "baddn": (400,), "badvers": (505,),
    "mismatch01": (400,), "mismatch02": (501,), "bigcode": None,
    # 3.2 transaction layer: a bare magic cookie falls back to RFC 2543 matching
    "badbranch": (200,),
    # 3.3 application layer
    "insuf": (400,), "unkscm": (416,), "novelsc": (416,), "unksm2": (405,), "bext01": (420,),
    "invut": (415,), "regaut01": (405,), "multi01": (400,), "mcl01": (400,), "bcast": None,
    "zeromf": (200,), "cparam01": (405,), "cparam02": (405,), "regescrt": (405,),
    "sdp01": (406,),
    # 3.4 backward compatibility
    "inv2543": TAKEN,
}


def test_every_torture_message_has_an_expectation():
    assert {path.stem for path in DATA.glob("*.dat")} == set(EXPECTED)


@pytest.fixture
def uas():
    with Engine() as engine:
        backend = open_backend("sip", engine, listen="127.0.0.1:0")
        engine.run(backend.start)
        yield backend
        engine.run(backend.stop)


def status_and_headers(reply: bytes) -> tuple[int, dict[str, str]]:
    """The status and header fields of one of our responses, read by hand: a 400 copies
    the broken header fields it answers, so our own parser would refuse it."""
    head = reply.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").split("\r\n")
    assert head[0].startswith("SIP/2.0 "), head[0]
    fields: dict[str, str] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    return int(head[0].split()[1]), fields


def exchange(address: tuple[str, int], data: bytes, wait: float
             ) -> list[tuple[int, dict[str, str]]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.sendto(data, address)
        sock.settimeout(wait)
        got = []
        while True:
            try:
                reply, _ = sock.recvfrom(65535)
            except TimeoutError:
                return got
            got.append(status_and_headers(reply))
            if got[-1][0] >= 200:
                sock.settimeout(0.05)  # anything after the final response is extra
    finally:
        sock.close()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_torture_message_gets_its_response(uas, name):
    data = (DATA / f"{name}.dat").read_bytes()
    responses = exchange(uas.addresses[0], data, 0.4 if EXPECTED[name] else 0.25)
    statuses = tuple(status for status, _ in responses)
    assert statuses == (EXPECTED[name] or ()), statuses
    assert uas.engine.running
    request_line = data.split(b"\r\n", 1)[0]
    if responses and not request_line.startswith(b"SIP/"):
        status, fields = responses[-1]
        # A stateful or stateless answer still names the request it answers.
        assert fields.get("Via") and fields.get("CSeq")
        # RFC 3261 8.2.6.2: every final response has a To-tag, a 400 for a broken
        # request too (a 400 and a 505 had none)
        if fields.get("To"):
            assert re.search(r";\s*tag\s*=", fields["To"], re.IGNORECASE), fields["To"]
        if status in (405, 501):
            assert "INVITE" in fields.get("Allow", "")
        if status == 420:
            assert fields.get("Unsupported")


def test_all_torture_messages_back_to_back_leave_the_agent_answering(uas):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 0))
        for path in sorted(DATA.glob("*.dat")):
            sock.sendto(path.read_bytes(), uas.addresses[0])
        sock.settimeout(0.5)
        answered = 0
        while True:
            try:
                sock.recvfrom(65535)
                answered += 1
            except TimeoutError:
                break
        assert answered >= 40
    finally:
        sock.close()
    assert uas.ua.stats.malformed >= 15
