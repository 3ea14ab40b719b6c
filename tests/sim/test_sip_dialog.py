"""SIP dialogs (uascall.sip.dialog): state from the INVITE/response, requests built inside the
dialog (RFC 3261 12.2.1.1 routing), and the checks on the far end's requests (12.2.2)."""

from __future__ import annotations

import pytest

from uascall.sip.dialog import Dialog, DialogError
from uascall.sip.message import Request, Response, make_response, parse_message

VIA = "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKdlg1"
CALL_ID = "a84b4c76e66710@pc33.atlanta.example.com"

# RFC 3261 section 24.2's proxies, one Record-Route line holding two values and a second line
RECORD_ROUTE = (
    "Record-Route: <sip:ss1.atlanta.example.com;lr>, <sip:ss2.biloxi.example.com;lr>",
    "Record-Route: <sip:ss3.biloxi.example.com;lr>",
)
ROUTES = ["<sip:ss1.atlanta.example.com;lr>", "<sip:ss2.biloxi.example.com;lr>",
          "<sip:ss3.biloxi.example.com;lr>"]


def _parse(lines: list[str], body: bytes = b"") -> Request | Response:
    text = "\r\n".join([*lines, f"Content-Length: {len(body)}", "", ""])
    return parse_message(text.encode() + body)


def invite(*, record_route: tuple[str, ...] = RECORD_ROUTE, cseq: int = 314159,
           contact: str | None = "<sip:alice@pc33.atlanta.example.com>") -> Request:
    """Alice's INVITE as it reaches Bob (us, the UAS) through the proxies."""
    message = _parse([
        "INVITE sip:bob@192.0.2.4 SIP/2.0",
        "Via: SIP/2.0/UDP ss3.biloxi.example.com;branch=z9hG4bK3",
        "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8",
        *record_route,
        "Max-Forwards: 67",
        "To: Bob <sip:bob@biloxi.example.com>",
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
        f"Call-ID: {CALL_ID}",
        f"CSeq: {cseq} INVITE",
        *([f"Contact: {contact}"] if contact else []),
    ])
    assert isinstance(message, Request)
    return message


def our_invite(cseq: int = 101) -> Request:
    """Our INVITE (we are the UAC), as built before sending."""
    message = _parse([
        "INVITE sip:bob@biloxi.example.com SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKout1",
        "Max-Forwards: 70",
        "To: Bob <sip:bob@biloxi.example.com>",
        "From: <sip:uas@192.0.2.10>;tag=ourtag",
        f"Call-ID: {CALL_ID}",
        f"CSeq: {cseq} INVITE",
        "Contact: <sip:uas@192.0.2.10:5060>",
    ])
    assert isinstance(message, Request)
    return message


def ok_for(req: Request, *, record_route: tuple[str, ...] = RECORD_ROUTE,
           contact: str = "<sip:bob@192.0.2.4:5062;transport=udp>") -> Response:
    """Bob's 200 for our INVITE, as it arrives (the proxies copied Record-Route into it)."""
    response = make_response(req, 200, to_tag="a6c85cf", headers=[
        *(tuple(line.split(": ", 1)) for line in record_route),
        ("Contact", contact),
    ])
    parsed = parse_message(response.serialize())
    assert isinstance(parsed, Response)
    return parsed


def dialog_with(route_set: list[str], target: str = "sip:alice@pc33.atlanta.example.com",
                local_seq: int = 7) -> Dialog:
    req = invite(record_route=())
    dialog = Dialog.for_uas(req, "uastag")
    dialog.route_set = route_set
    dialog.remote_target = target
    dialog.local_seq = local_seq
    return dialog


def sent(req: Request) -> Request:
    """``req`` through the wire: it must be a valid SIP request."""
    parsed = parse_message(req.serialize())
    assert isinstance(parsed, Request)
    return parsed


# --------------------------------------------------------------------------- creation
def test_for_uas_takes_the_invite_state() -> None:
    req = invite()
    dialog = Dialog.for_uas(req, "uastag")
    assert dialog.call_id == CALL_ID
    assert dialog.local_tag == "uastag"
    assert dialog.remote_tag == "1928301774"
    assert str(dialog.local.uri) == "sip:bob@biloxi.example.com"
    assert str(dialog.remote.uri) == "sip:alice@atlanta.example.com"
    assert dialog.remote_seq == 314159
    assert 1 <= dialog.local_seq < 2**16  # ours starts anywhere (8.1.1.5)
    assert dialog.remote_target == "sip:alice@pc33.atlanta.example.com"
    assert dialog.key == (CALL_ID, "uastag")
    # 12.1.1: the route set is the Record-Route values in order, both header lines merged
    assert dialog.route_set == ROUTES
    assert "uastag" in repr(dialog) and "1928301774" in repr(dialog)
    # the INVITE itself is not changed
    assert req.to.tag is None


def test_for_uas_without_contact_targets_the_from_uri() -> None:
    dialog = Dialog.for_uas(invite(contact=None, record_route=()), "t")
    assert dialog.remote_target == "sip:alice@atlanta.example.com"
    assert dialog.route_set == []


def test_for_uac_reverses_the_route_set() -> None:
    req = our_invite()
    dialog = Dialog.for_uac(req, ok_for(req))
    assert dialog.call_id == CALL_ID
    assert dialog.local_tag == "ourtag"
    assert dialog.remote_tag == "a6c85cf"
    assert dialog.local_seq == 101
    assert dialog.remote_seq is None  # 12.1.2: empty until the far end sends a request
    assert dialog.remote_target == "sip:bob@192.0.2.4:5062;transport=udp"
    # 12.1.2: the route set is the Record-Route of the response, reversed
    assert dialog.route_set == list(reversed(ROUTES))
    assert dialog.key == (CALL_ID, "ourtag")


def test_for_uac_without_contact_targets_the_request_uri() -> None:
    req = our_invite()
    response = ok_for(req, record_route=())
    response.headers.remove("Contact")
    dialog = Dialog.for_uac(req, response)
    assert dialog.remote_target == "sip:bob@biloxi.example.com"
    assert dialog.route_set == []


def test_update_from_response_refreshes_target_and_route_set() -> None:
    req = our_invite()
    early = ok_for(req, record_route=(), contact="<sip:bob@192.0.2.4:5062>")
    dialog = Dialog.for_uac(req, early)
    assert dialog.route_set == []
    dialog.update_from_response(ok_for(req, contact="<sip:bob@192.0.2.99>"))
    assert dialog.remote_target == "sip:bob@192.0.2.99"
    assert dialog.route_set == list(reversed(ROUTES))
    # a response without Contact or Record-Route changes nothing
    bare = make_response(req, 200, to_tag="a6c85cf")
    dialog.update_from_response(bare)
    assert dialog.remote_target == "sip:bob@192.0.2.99"
    assert dialog.route_set == list(reversed(ROUTES))


# --------------------------------------------------------------------------- requests out
def test_bye_as_uas_loose_routes_through_the_route_set() -> None:
    dialog = Dialog.for_uas(invite(), "uastag")
    first = dialog.local_seq
    bye = sent(dialog.request("BYE", VIA))
    # 12.2.1.1, loose routing: Request-URI = remote target, Route = the route set in order
    assert bye.method == "BYE"
    assert bye.uri == "sip:alice@pc33.atlanta.example.com"
    assert bye.headers.get_all("Route") == ROUTES
    assert bye.headers.get_all("Via") == [VIA]
    assert bye.cseq == (first + 1, "BYE")
    assert dialog.local_seq == first + 1
    assert bye.call_id == CALL_ID
    # From = us (the INVITE's To with our tag), To = them (the INVITE's From)
    assert bye.from_.tag == "uastag"
    assert str(bye.from_.uri) == "sip:bob@biloxi.example.com"
    assert bye.to.tag == "1928301774"
    assert str(bye.to.uri) == "sip:alice@atlanta.example.com"
    assert bye.max_forwards == 70
    assert "Contact" not in bye.headers


def test_bye_as_uac_routes_reversed() -> None:
    req = our_invite()
    dialog = Dialog.for_uac(req, ok_for(req))
    bye = sent(dialog.request("BYE", VIA))
    assert bye.uri == "sip:bob@192.0.2.4:5062;transport=udp"
    assert bye.headers.get_all("Route") == list(reversed(ROUTES))
    assert bye.cseq == (102, "BYE")
    assert bye.from_.tag == "ourtag" and bye.to.tag == "a6c85cf"


def test_request_without_route_set_has_no_route() -> None:
    dialog = dialog_with([])
    bye = sent(dialog.request("BYE", VIA))
    assert bye.uri == "sip:alice@pc33.atlanta.example.com"
    assert "Route" not in bye.headers


def test_strict_router_first_takes_the_request_uri() -> None:
    # 12.2.1.1: the first route has no ;lr -> it becomes the Request-URI, the rest of the
    # route set follows as Route, and the remote target goes last
    dialog = dialog_with(["<sip:strict.example.com>", "<sip:loose.example.com;lr>"])
    bye = sent(dialog.request("BYE", VIA))
    assert bye.uri == "sip:strict.example.com"
    assert bye.headers.get_all("Route") == ["<sip:loose.example.com;lr>",
                                            "<sip:alice@pc33.atlanta.example.com>"]
    # only the head of the route set decides
    dialog = dialog_with(["<sip:loose.example.com;lr>", "<sip:strict.example.com>"])
    bye = sent(dialog.request("BYE", VIA))
    assert bye.uri == "sip:alice@pc33.atlanta.example.com"
    assert bye.headers.get_all("Route") == ["<sip:loose.example.com;lr>",
                                            "<sip:strict.example.com>"]


def test_strict_router_alone() -> None:
    dialog = dialog_with(["<sip:10.0.0.1:5070>"], target="sip:alice@192.0.2.7")
    bye = sent(dialog.request("BYE", VIA))
    assert bye.uri == "sip:10.0.0.1:5070"
    assert bye.headers.get_all("Route") == ["<sip:alice@192.0.2.7>"]
    # the dialog's own state is not rewritten by strict routing
    assert dialog.route_set == ["<sip:10.0.0.1:5070>"]
    assert dialog.remote_target == "sip:alice@192.0.2.7"


@pytest.mark.parametrize("route", ["<sip:p.example.com;lr=on>", "<sip:p.example.com;LR>",
                                   "<sip:p.example.com;transport=udp;lr>"])
def test_lr_spellings_are_loose(route: str) -> None:
    dialog = dialog_with([route])
    bye = sent(dialog.request("BYE", VIA))
    assert bye.uri == "sip:alice@pc33.atlanta.example.com"
    assert bye.headers.get_all("Route") == [route]


def test_local_cseq_increments() -> None:
    dialog = dialog_with([], local_seq=7)
    numbers = [sent(dialog.request(m, VIA)).cseq for m in ("INFO", "INVITE", "BYE")]
    assert numbers == [(8, "INFO"), (9, "INVITE"), (10, "BYE")]
    # an explicit CSeq (the ACK for a 2xx carries the INVITE's) does not move the counter
    ack = sent(dialog.request("ACK", VIA, cseq=9))
    assert ack.cseq == (9, "ACK")
    assert dialog.local_seq == 10
    assert sent(dialog.request("BYE", VIA)).cseq == (11, "BYE")


def test_request_contact_body_and_extra_headers() -> None:
    dialog = dialog_with(ROUTES)
    body = b"v=0\r\n"
    reinvite = sent(dialog.request("INVITE", VIA, contact="<sip:uas@192.0.2.10:5060>",
                                   body=body, content_type="application/sdp",
                                   extra=(("Supported", "timer"),)))
    assert reinvite.headers.get("Contact") == "<sip:uas@192.0.2.10:5060>"
    assert reinvite.headers.get("Content-Type") == "application/sdp"
    assert reinvite.headers.get("Supported") == "timer"
    assert reinvite.body == body
    assert reinvite.headers.get("Content-Length") == str(len(body))


# --------------------------------------------------------------------------- requests in
def their(method: str, cseq: int, contact: str | None = None) -> Request:
    message = _parse([
        f"{method} sip:bob@192.0.2.4 SIP/2.0",
        "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKin" + str(cseq) + method,
        "Max-Forwards: 70",
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
        "To: Bob <sip:bob@biloxi.example.com>;tag=uastag",
        f"Call-ID: {CALL_ID}",
        f"CSeq: {cseq} {method}",
        *([f"Contact: {contact}"] if contact else []),
    ])
    assert isinstance(message, Request)
    return message


def test_check_request_in_order() -> None:
    dialog = Dialog.for_uas(invite(cseq=10), "uastag")
    dialog.check_request(their("INFO", 11))
    assert dialog.remote_seq == 11
    dialog.check_request(their("BYE", 20))  # gaps are fine (12.2.2)
    assert dialog.remote_seq == 20
    # only a lower number is out of order (12.2.2); an equal one is the transaction
    # layer's business (a retransmission)
    dialog.check_request(their("BYE", 20))
    assert dialog.remote_seq == 20


def test_check_request_lower_cseq_is_500() -> None:
    dialog = Dialog.for_uas(invite(cseq=10), "uastag")
    dialog.check_request(their("INFO", 12))
    with pytest.raises(DialogError) as info:
        dialog.check_request(their("BYE", 11))
    assert info.value.status == 500
    assert "11" in str(info.value) and "12" in str(info.value)
    assert dialog.remote_seq == 12  # unchanged
    with pytest.raises(DialogError):
        dialog.check_request(their("INVITE", 9, contact="<sip:alice@198.51.100.9>"))
    assert dialog.remote_target == "sip:alice@pc33.atlanta.example.com"  # not refreshed


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_check_request_ack_and_cancel_are_exempt(method: str) -> None:
    dialog = Dialog.for_uas(invite(cseq=10), "uastag")
    dialog.check_request(their("INFO", 11))
    dialog.check_request(their(method, 10))  # the INVITE's number: no 500
    assert dialog.remote_seq == 11  # and the ACK/CANCEL does not move it


def test_check_request_first_from_far_end_as_uac() -> None:
    req = our_invite()
    dialog = Dialog.for_uac(req, ok_for(req))
    assert dialog.remote_seq is None
    dialog.check_request(their("BYE", 1))  # any number starts the remote sequence
    assert dialog.remote_seq == 1


def test_reinvite_with_new_contact_refreshes_target() -> None:
    dialog = Dialog.for_uas(invite(cseq=10), "uastag")
    dialog.check_request(their("INVITE", 11, contact="<sip:alice@198.51.100.9:5080>"))
    assert dialog.remote_target == "sip:alice@198.51.100.9:5080"
    bye = sent(dialog.request("BYE", VIA))
    assert bye.uri == "sip:alice@198.51.100.9:5080"
    assert bye.headers.get_all("Route") == ROUTES  # the route set stays (12.2)
    # a re-INVITE without Contact keeps the target; a non-target-refresh request too
    dialog.check_request(their("INVITE", 12))
    assert dialog.remote_target == "sip:alice@198.51.100.9:5080"
    dialog.check_request(their("INFO", 13, contact="<sip:elsewhere@203.0.113.1>"))
    assert dialog.remote_target == "sip:alice@198.51.100.9:5080"


@pytest.mark.parametrize("contact", [
    "*", "<tel:+15551234567>", "<sip:a@198.51.100.9>, <sip:b@198.51.100.9>"])
def test_a_reinvite_whose_contact_cannot_be_a_target_is_400_and_changes_nothing(
        contact: str) -> None:
    dialog = Dialog.for_uas(invite(cseq=10), "uastag")
    with pytest.raises(DialogError, match="expected exactly one SIP or SIPS URI") as info:
        dialog.check_request(their("INVITE", 11, contact=contact))
    assert info.value.status == 400
    assert dialog.remote_target == "sip:alice@pc33.atlanta.example.com"
    assert dialog.remote_seq == 10
