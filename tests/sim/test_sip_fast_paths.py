"""The parser's fast paths (plain URIs, name-addrs, Vias and header sections, each matched
whole by one regex) give what the full parser gives, or leave the text to it.

The full parser is the reference: every text below is parsed once with the fast paths
disabled (their regexes replaced by one that matches nothing) and once with them, and the
two outcomes must be equal: the same value, or the same SipParseError (status and
reason). The texts are the header values of RFC 4475's torture messages, the forms SIPp
and common phones send, and thousands of seeded mutations of them (characters inserted,
dropped and replaced with the ones that matter to the grammar), so that the fast paths'
borders (escapes, quotes, whitespace, IPv6, ports, case, repeated parameters) are crossed
both ways.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from uascall.sip import message
from uascall.sip.message import (
    SipParseError,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
)

DATA = Path(__file__).parent / "data" / "rfc4475"
FAST_REGEXES = ("_FAST_SIP_URI_RE", "_FAST_NAME_ADDR_RE", "_FAST_VIA_RE", "_FAST_HEADER_RE")
NEVER = re.compile(r"(?!)")

SEED_URIS = [
    "sip:service@127.0.0.1:5060", "sip:sipp@127.0.0.1:5061", "sips:a@b.example;lr",
    "sip:127.0.0.1:5060;transport=udp;lr", "sip:alice@example.com;maddr=239.255.255.1;ttl=15",
    "sip:+1-212-555-1212:1234@gateway.com;user=phone", "sip:host:65535", "sip:host:65536",
    "sip:host:05060", "sip:[::1]:5060", "SIP:Alice@EXAMPLE.com", "sip:a@b;x;X=2;x=3",
    "sip:%61lice@atlanta.com", "sip:a@b?subject=x", "tel:+15551234",
]
SEED_ADDRS = [
    '"sipp" <sip:sipp@127.0.0.1:5061>;tag=1234SIPpTag001', "<sip:service@127.0.0.1:5060>",
    "<sip:service@127.0.0.1:5060>;tag=abcdef0123456789", "Bob <sips:bob@example.com>",
    "A B <sip:x@y>;TAG=a;tag=b;lr", '"" <sip:anon@example.com>', "caller<sip:c@x>",
    '"a\\"b" <sip:x@y>', "sip:dave@example.com;tag=abc", '<sip:e@x>;q="0.7"',
    "<sip:a@[2001:db8::1]>;received=[::1]", "  <sip:a@b>  ", "<sip:a@b> ;tag=1",
]
SEED_VIAS = [
    "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1234-1-0;rport",
    "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds",
    "SIP/2.0/TCP h:5060;branch=z9hG4bK74b43;received=192.0.2.101;rport=5061",
    "SIP/2.0/udp H.Example.COM:65535;Branch=A;branch=b", "sip/2.0/UDP h",
    "SIP/2.0/UDP h : 5060", "SIP/2.0/UDP [::1]:5060;branch=z9hG4bKx",
    'SIP/2.0/TLS h;x="quoted; value"', "SIP/2.0/UDP h:99999", "SIP/2.0/UDP h;;",
]
# What matters to the grammar: separators, quotes, escapes, whitespace, case, digits.
ALPHABET = ' \t"\\<>;:=@?%,/.[]-_AaZz059\x00\u00e9'


def outcome(parse: Callable[[str], Any], text: str) -> tuple[str, Any]:
    try:
        return "value", parse(text)
    except SipParseError as e:
        return "error", (e.status, e.reason)


@contextmanager
def fast_paths_off() -> Iterator[None]:
    saved = {name: getattr(message, name) for name in FAST_REGEXES}
    try:
        for name in FAST_REGEXES:
            setattr(message, name, NEVER)
        yield
    finally:
        for name, regex in saved.items():
            setattr(message, name, regex)


def mutations(seeds: list[str], count: int, seed: int, alphabet: str = ALPHABET) -> list[str]:
    rng = random.Random(seed)
    out = list(seeds)
    for _ in range(count):
        text = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            where = rng.randrange(len(text) + 1)
            what = rng.random()
            if what < 0.4:
                text.insert(where, rng.choice(alphabet))
            elif what < 0.7 and where < len(text):
                del text[where]
            elif where < len(text):
                text[where] = rng.choice(alphabet)
        out.append("".join(text))
    return out


def torture_values(*names: str) -> list[str]:
    """Every value of these header fields in the RFC 4475 messages (split like get_all)."""
    out: list[str] = []
    for path in sorted(DATA.glob("*.dat")):
        try:
            msg = parse_message(path.read_bytes())
        except SipParseError as e:
            headers = e.headers
        else:
            headers = msg.headers
            if hasattr(msg, "uri"):
                out.append(msg.uri)
        if headers is not None:
            for name in names:
                out.extend(headers.get_all(name))
    return out


CASES = [
    ("uri", parse_uri, SEED_URIS + torture_values("Contact", "Route", "Record-Route")),
    ("name-addr", parse_name_addr,
     SEED_ADDRS + torture_values("From", "To", "Contact", "Route", "Record-Route")),
    ("via", parse_via, SEED_VIAS + torture_values("Via")),
]


@pytest.mark.parametrize("kind,parse,seeds", CASES, ids=[c[0] for c in CASES])
def test_fast_paths_agree_with_the_full_parser(kind: str, parse: Callable[[str], Any],
                                               seeds: list[str]) -> None:
    texts = mutations(seeds, 4000, seed=len(kind))
    with fast_paths_off():
        expected = [outcome(parse, text) for text in texts]
    taken = 0
    for text, want in zip(texts, expected, strict=True):
        assert outcome(parse, text) == want, f"{kind} {text!r}"
        taken += want[0] == "value"
    # Both kinds of outcome were compared, many of each: the mutations cross the borders.
    assert 500 < taken < len(texts) - 500


SIPP_INVITE = (
    "INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1234-1-0;rport\r\n"
    'From: "sipp" <sip:sipp@127.0.0.1:5061>;tag=1234SIPpTag001\r\n'
    "To: <sip:service@127.0.0.1:5060>\r\n"
    "Call-ID: 1-1234@127.0.0.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:sipp@127.0.0.1:5061>\r\n"
    "Max-Forwards: 70\r\n"
    "Subject: early media\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 8\r\n\r\n"
    "v=0\r\ns=-\r\n")
SIPP_BYE = (
    "BYE sip:service@127.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1234-1-7\r\n"
    'From: "sipp" <sip:sipp@127.0.0.1:5061>;tag=1234SIPpTag001\r\n'
    "To: <sip:service@127.0.0.1:5060>;tag=abcdef0123456789\r\n"
    "Call-ID: 1-1234@127.0.0.1\r\n"
    "CSeq: 2 BYE\r\n"
    "Max-Forwards: 70\r\n"
    "Content-Length: 0\r\n\r\n")
SIPP_200 = (
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKab\r\n"
    "From: <sip:uas@127.0.0.1>;tag=x\r\nTo: <sip:sipp@127.0.0.1:5061>;tag=y\r\n"
    "Call-ID: c@h\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n")


def message_outcome(data: bytes) -> tuple[Any, ...]:
    try:
        msg = parse_message(data)
    except SipParseError as e:
        fields = list(e.headers) if e.headers is not None else None
        return "error", e.status, e.reason, e.is_request, fields
    start = (msg.method, msg.uri) if hasattr(msg, "method") else (msg.status, msg.reason)
    views = (msg.call_id, msg.cseq, msg.from_, msg.to, msg.vias)
    return "value", type(msg).__name__, start, list(msg.headers), msg.body, views


def test_the_header_fast_path_agrees_with_the_full_parser() -> None:
    seeds = [SIPP_INVITE, SIPP_BYE, SIPP_200]
    seeds += [path.read_bytes().decode("utf-8", "surrogateescape")
              for path in sorted(DATA.glob("*.dat"))]
    # Mutations where the grammar of a header section lives: line ends, colons, folding.
    texts = mutations(seeds, 3000, seed=7, alphabet=ALPHABET + "\r\n\n:: \t")
    datagrams = [text.encode("utf-8", "surrogateescape") for text in texts]
    with fast_paths_off():
        expected = [message_outcome(data) for data in datagrams]
    taken = 0
    for data, want in zip(datagrams, expected, strict=True):
        assert message_outcome(data) == want, data
        taken += want[0] == "value"
    assert 300 < taken < len(datagrams) - 300


def test_the_plain_forms_take_the_fast_paths() -> None:
    """The forms a SIPp call carries match the fast regexes (else they would only be
    slower, and the comparison above would test little)."""
    assert message._FAST_SIP_URI_RE.fullmatch("sip:service@127.0.0.1:5060;transport=udp")
    assert message._FAST_NAME_ADDR_RE.fullmatch(
        '"sipp" <sip:sipp@127.0.0.1:5061>;tag=1234SIPpTag001')
    assert message._FAST_VIA_RE.fullmatch(
        "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1234-1-0;rport")
    head = SIPP_BYE.split("\r\n\r\n")[0].replace("\r\n", "\n").split("\n", 1)[1]
    assert len(message._FAST_HEADER_RE.findall(head)) == head.count("\n") + 1


def test_a_port_beyond_65535_is_still_refused_precisely() -> None:
    with pytest.raises(SipParseError, match=r"port '65536' in URI .*0\.\.65535"):
        parse_uri("sip:a@host:65536")
    with pytest.raises(SipParseError, match=r"port '99999' in Via .*0\.\.65535"):
        parse_via("SIP/2.0/UDP host:99999;branch=z9hG4bKx")
