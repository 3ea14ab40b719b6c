"""The parsed views of a SIP message (From, To, Via, CSeq, Contact, Request-URI): parsed
once, kept beside the header text, and dropped when a field they come from changes."""

from __future__ import annotations

import pytest

from uascall.sip import message
from uascall.sip.dialog import Dialog
from uascall.sip.message import (
    Request,
    SipParseError,
    make_response,
    parse_message,
    parse_name_addr,
)

INVITE = (b"INVITE sip:service@192.0.2.1:5060 SIP/2.0\r\n"
          b"Via: SIP/2.0/UDP 192.0.2.9:5061;branch=z9hG4bK-1;rport\r\n"
          b"Via: SIP/2.0/UDP 198.51.100.3;branch=z9hG4bK-0\r\n"
          b'From: "Caller" <sip:caller@192.0.2.9:5061>;tag=abc\r\n'
          b"To: <sip:service@192.0.2.1:5060>\r\n"
          b"Call-ID: 1@192.0.2.9\r\nCSeq: 7 INVITE\r\n"
          b"Contact: <sip:caller@192.0.2.9:5061>\r\nMax-Forwards: 70\r\n"
          b"Content-Length: 0\r\n\r\n")


@pytest.fixture
def counted(monkeypatch):
    """How often each parser runs from here on."""
    calls = {"name_addr": 0, "via": 0, "cseq": 0, "uri": 0}
    for name, key in (("parse_name_addr", "name_addr"), ("parse_via", "via"),
                      ("parse_cseq", "cseq"), ("parse_uri", "uri")):
        real = getattr(message, name)

        def wrapper(text, _real=real, _key=key):
            calls[_key] += 1
            return _real(text)
        monkeypatch.setattr(message, name, wrapper)
    return calls


def test_a_received_request_is_parsed_once_by_its_checks(counted):
    req = parse_message(INVITE)
    assert isinstance(req, Request)
    parsed = dict(counted)
    for _ in range(3):
        assert req.from_.tag == "abc" and req.to.tag is None
        assert req.cseq == (7, "INVITE") and req.call_id == "1@192.0.2.9"
        assert req.top_via.branch == "z9hG4bK-1" and len(req.vias) == 2
        assert str(req.contact.uri) == "sip:caller@192.0.2.9:5061"
        assert req.parsed_uri.user == "service"
    assert counted == parsed  # nothing parsed again
    assert req.from_ is req.from_ and req.top_via is req.vias[0]


def test_a_changed_field_drops_only_its_own_views():
    req = parse_message(INVITE)
    from_, top = req.from_, req.top_via
    assert req.to.tag is None
    req.headers.set("To", "<sip:other@192.0.2.1>;tag=x")
    assert req.to.tag == "x" and req.to.uri.user == "other"
    assert req.from_ is from_ and req.top_via is top  # views of other fields are kept
    vias = req.headers.get_all("Via")
    req.headers.remove("Via")
    req.headers.add("Via", "SIP/2.0/UDP 203.0.113.5;branch=z9hG4bK-new")
    for value in vias[1:]:
        req.headers.add("Via", value)
    assert req.top_via.host == "203.0.113.5" and [v.branch for v in req.vias] == [
        "z9hG4bK-new", "z9hG4bK-0"]
    req.headers.prepend("Contact", "<sip:first@192.0.2.7>")
    assert req.contact.uri.user == "first"
    req.headers.set("CSeq", "8 INVITE")
    assert req.cseq == (8, "INVITE")
    req.headers.remove("From")
    with pytest.raises(SipParseError, match="no From"):
        req.from_  # noqa: B018


def test_the_request_uri_view_follows_the_uri():
    req = parse_message(INVITE)
    assert isinstance(req, Request)
    assert req.parsed_uri.host == "192.0.2.1"
    req.uri = "sip:elsewhere@203.0.113.9"
    assert req.parsed_uri.host == "203.0.113.9"
    req.uri = "not a uri"
    with pytest.raises(SipParseError):
        req.parsed_uri  # noqa: B018


def test_a_built_message_parses_its_views_on_demand_and_a_copy_keeps_none():
    req = parse_message(INVITE)
    resp = make_response(req, 200, to_tag="mine")
    assert resp.to.tag == "mine" and resp.from_.tag == "abc"
    assert resp.from_ is not req.from_  # its own headers, its own views
    copy = req.headers.copy()
    copy.set("From", "<sip:x@192.0.2.2>;tag=zz")
    assert req.from_.tag == "abc"


def test_errors_in_views_are_not_kept():
    req = Request("OPTIONS", "sip:a@192.0.2.1", message.Headers([("From", "<broken")]))
    for _ in range(2):
        with pytest.raises(SipParseError):
            req.from_  # noqa: B018
    req.headers.set("From", "<sip:a@192.0.2.1>;tag=t")
    assert req.from_.tag == "t"


def test_the_dialog_leaves_the_invites_view_of_to_alone():
    req = parse_message(INVITE)
    assert isinstance(req, Request)
    dialog = Dialog.for_uas(req, "ours")
    assert dialog.local_tag == "ours" and dialog.local.uri == req.to.uri
    assert req.to.tag is None  # the shared view is unchanged
    assert dialog.remote_target == "sip:caller@192.0.2.9:5061"


def test_error_text_is_the_same_when_built_lazily():
    with pytest.raises(SipParseError, match=r"port '99999' in Via 'SIP/2.0/UDP h:99999'"):
        message.parse_via("SIP/2.0/UDP h:99999")
    with pytest.raises(SipParseError, match=r"host 'a b' in URI 'sip:a b'"):
        message.parse_uri("sip:a b")
    with pytest.raises(SipParseError, match=r"empty parameter in address '<sip:a@b>;'"):
        parse_name_addr("<sip:a@b>;")


def test_dropped_views_are_parsed_again_on_demand(counted):
    req = parse_message(INVITE)
    from_ = req.from_
    req.headers.drop_views()
    parsed = counted["name_addr"]
    assert req.from_ == from_ and req.from_ is not from_
    assert counted["name_addr"] == parsed + 1


def test_a_response_reuses_the_requests_view_of_to(counted):
    req = parse_message(INVITE)
    parsed = counted["name_addr"]
    assert make_response(req, 180, to_tag="t1").to.tag == "t1"
    assert make_response(req, 200, to_tag="t1").headers.get("To") == (
        "<sip:service@192.0.2.1:5060>;tag=t1")
    assert counted["name_addr"] == parsed + 1  # only the 180's own To, read back above
