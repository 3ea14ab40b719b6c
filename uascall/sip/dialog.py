"""SIP dialogs (RFC 3261 section 12), sans-I/O.

A dialog is what two user agents share after an INVITE is answered (or provisionally
answered with a To-tag): the Call-ID, both tags, each side's CSeq, the far end's target
(its Contact) and the route set (Record-Route). A :class:`Dialog` builds our requests
inside it (BYE, ACK for a 2xx, re-INVITE answers need none) and checks the far end's:

- made as the UAS (:meth:`Dialog.for_uas`): route set = the INVITE's Record-Route in
  order, remote target = its Contact, remote CSeq = the INVITE's;
- made as the UAC (:meth:`Dialog.for_uac`): route set = the response's Record-Route
  reversed, remote target = the response's Contact, remote tag = its To-tag.

Routing is loose (``;lr``) as RFC 3261 12.2.1.1 wants; a strict router at the head of the
route set gets the remote target appended as the last Route and becomes the
Request-URI (the pre-RFC 3261 way), so old proxies still work. :meth:`Dialog.next_hop`
says where such a request is sent: the first route, else the remote target.
"""

from __future__ import annotations

import logging
import random
import socket

from uascall.errors import Error
from uascall.sip.message import (
    Headers,
    NameAddr,
    Request,
    Response,
    SipParseError,
    parse_name_addr,
)

Address = tuple[str, int]

log = logging.getLogger(__name__)


class DialogError(Error):
    """A request does not fit the dialog (names what was wrong)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Dialog:
    """One dialog's state; ``local``/``remote`` are our and the far end's NameAddr."""

    def __init__(self, call_id: str, local: NameAddr, remote: NameAddr, *,
                 local_seq: int, remote_seq: int | None, remote_target: str,
                 route_set: list[str]) -> None:
        self.call_id = call_id
        self.local = local
        self.remote = remote
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.remote_target = remote_target
        self.route_set = route_set

    def __repr__(self) -> str:
        return f"<Dialog {self.call_id} {self.local_tag}/{self.remote_tag}>"

    @property
    def local_tag(self) -> str | None:
        return self.local.tag

    @property
    def remote_tag(self) -> str | None:
        return self.remote.tag

    @property
    def key(self) -> tuple[str, str]:
        return self.call_id, self.local_tag or ""

    # ------------------------------------------------------------------ creation
    @classmethod
    def for_uas(cls, invite: Request, local_tag: str) -> Dialog:
        """The dialog an incoming INVITE creates when we answer it with ``local_tag``."""
        to = invite.to  # the INVITE's own view: changed only in a copy
        local = NameAddr(to.uri, to.display, {**to.params, "tag": local_tag})
        return cls(invite.call_id, local, invite.from_,
                   local_seq=random.randrange(1, 2**16), remote_seq=invite.cseq[0],
                   remote_target=_contact_uri(invite) or str(invite.from_.uri),
                   route_set=invite.headers.get_all("Record-Route"))

    @classmethod
    def for_uac(cls, invite: Request, response: Response) -> Dialog:
        """The dialog a 2xx (or 1xx with a To-tag) to our INVITE creates."""
        return cls(invite.call_id, invite.from_, response.to,
                   local_seq=invite.cseq[0], remote_seq=None,
                   remote_target=_contact_uri(response) or invite.uri,
                   route_set=list(reversed(response.headers.get_all("Record-Route"))))

    def update_from_response(self, response: Response) -> None:
        """A later response in the dialog (the 2xx after a 1xx) may refresh the target."""
        target = _contact_uri(response)
        if target:
            self.remote_target = target
        record_route = response.headers.get_all("Record-Route")
        if record_route:
            self.route_set = list(reversed(record_route))

    # ------------------------------------------------------------------ requests out
    def request(self, method: str, via: str, *, cseq: int | None = None,
                contact: str | None = None, body: bytes = b"",
                content_type: str | None = None,
                extra: tuple[tuple[str, str], ...] = ()) -> Request:
        """A request in this dialog. ``cseq`` defaults to the next local number (ACK for a
        2xx gives the INVITE's; CANCEL is not a dialog request)."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        uri, routes = self._routing()
        headers = Headers()
        headers.add("Via", via)
        for route in routes:
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", str(self.local))
        headers.add("To", str(self.remote))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if contact:
            headers.add("Contact", contact)
        for name, value in extra:
            headers.add(name, value)
        if body and content_type:
            headers.add("Content-Type", content_type)
        return Request(method, uri, headers, body)

    def next_hop(self, fallback: Address | None) -> Address:
        """Where a request in this dialog goes (RFC 3261 12.2.1.1, 8.1.2): the first
        route, else the remote target; ``fallback`` (where the far end's requests came
        from) when that is not a literal address, or raises when there is none."""
        target = self.route_set[0] if self.route_set else f"<{self.remote_target}>"
        try:
            uri = parse_name_addr(target).uri
            return resolve(uri.host, uri.port or 5060)
        except (SipParseError, OSError, ValueError) as exc:  # UnicodeError: no IDNA name
            if fallback is None:
                raise
            log.debug("%s: cannot route to %r (%s); using %s", self, target, exc, fallback)
            return fallback

    def _routing(self) -> tuple[str, list[str]]:
        if not self.route_set:
            return self.remote_target, []
        first = self.route_set[0]
        try:
            loose = "lr" in parse_name_addr(first).uri.params
        except SipParseError:
            loose = True
        if loose:
            return self.remote_target, list(self.route_set)
        # A strict router: it takes the Request-URI from the first Route.
        uri = str(parse_name_addr(first).uri)
        return uri, [*self.route_set[1:], f"<{self.remote_target}>"]

    # ------------------------------------------------------------------ requests in
    def check_request(self, request: Request) -> None:
        """RFC 3261 12.2.2: a request whose CSeq is lower than the last one is out of
        order (500). ACK and CANCEL carry the INVITE's number and are exempt."""
        number, method = request.cseq
        if method in ("ACK", "CANCEL"):
            return
        if self.remote_seq is not None and number < self.remote_seq:
            raise DialogError(f"{method} CSeq {number} is lower than {self.remote_seq}, the "
                              "last one in this dialog; expected a higher number", 500)
        # A re-INVITE is a target refresh (RFC 3261 12.2.2); one whose Contact could not
        # be a target is refused before it changes anything, and the dialog goes on.
        target = contact_target(request) if method == "INVITE" else None
        self.remote_seq = number
        if target:
            self.remote_target = target


def contact_target(request: Request) -> str | None:
    """The remote target a dialog-creating or target-refresh request names: its Contact,
    which RFC 3261 8.1.1.8 wants to be exactly one SIP or SIPS URI; None without a
    Contact (a re-INVITE SHOULD have one, 12.2.1.1; the caller decides for an INVITE
    that makes a dialog). Raises DialogError(400) saying what was wrong: a ``*``, a
    tel: (or other) URI or two URIs would leave our BYE nowhere, or at a guess."""
    values = request.headers.get_all("Contact")
    if not values:
        return None
    expected = ("expected exactly one SIP or SIPS URI, where requests in this dialog go "
                "(RFC 3261 8.1.1.8)")
    if len(values) > 1:
        raise DialogError(f"{request.method} has {len(values)} Contact URIs; {expected}", 400)
    if values[0].strip() == "*":
        raise DialogError(f"{request.method} has Contact '*' (for REGISTER only); "
                          f"{expected}", 400)
    try:
        uri = parse_name_addr(values[0]).uri
    except SipParseError as exc:  # (the checks on receipt parsed it already)
        raise DialogError(f"{request.method} Contact: {exc.reason}; {expected}", 400
                          ) from None
    if not uri.is_sip:
        raise DialogError(f"{request.method} Contact {values[0]!r} is a {uri.scheme}: "
                          f"URI; {expected}", 400)
    return str(uri)


def resolve(host: str, port: int) -> Address:
    """An IP address as the socket API takes it. Only literal addresses: this runs on the
    engine thread, which must never wait for a resolver (socket.gaierror for a name)."""
    info = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_DGRAM,
                              flags=socket.AI_NUMERICHOST)
    address = info[0][4]
    return address[0], address[1]


def _contact_uri(message: Request | Response) -> str | None:
    try:
        contact = message.contact
    except SipParseError:
        log.debug("unusable Contact %r", message.headers.get_all("Contact")[0])
        return None
    return str(contact.uri) if contact is not None else None
