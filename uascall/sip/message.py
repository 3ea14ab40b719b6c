"""SIP messages (RFC 3261): parse one datagram into a Request or Response, and build them back.

Sans-I/O: no sockets, threads or clocks; bytes in, objects out, and the reverse.

Theory of operation
-------------------
:func:`parse_message` takes one UDP datagram. It skips leading CRLFs (RFC 3261 7.5), finds the
first empty line, decodes the header section once as UTF-8 with ``surrogateescape`` (odd octets
survive and re-serialize to the same bytes), unfolds continuation lines and splits
``name: value`` pairs into :class:`Headers`. Header values stay text: nothing is parsed that the
caller does not ask for, apart from the few fields every transaction needs, which
:func:`check_request` / :func:`check_response` parse once to reject malformed messages early
(the RFC 4475 torture tests are the yardstick: see tests/sim/test_sip_message.py) and keep as
the message's views (``from_``, ``to``, ``top_via``...), so that nothing is parsed twice. The
body is framed by Content-Length; without one (UDP, RFC 2543 style) it is the rest of the
datagram.

Every problem caused by the peer raises :class:`SipParseError`, carrying the status a UAS should
answer (400, or 505 for a foreign SIP version), whether the start line was a request, and the
header fields that could be split, so that a stateless error response can still be built from
Via/From/To/Call-ID/CSeq. Misuse by our own code (a CR in a header value we are asked to send)
raises :class:`~uascall.errors.ArgumentError` instead.

The structured views (:class:`Uri`, :class:`NameAddr`, :class:`Via`) are parsed on demand from
header text by :func:`parse_uri`, :func:`parse_name_addr`, :func:`parse_via` and
:func:`parse_cseq`; their ``str()`` is the canonical serialization and parses back equal.
Parameter values are kept as received (quotes and %-escapes included): the layers above decide
what they mean, and a proxy-like reuse must not change them.

Every received request is checked whole, in-dialog ACKs and BYEs too, which made parsing
about a third of the SIP path at hundreds of calls a second. So the plain forms nearly every
peer sends (a header section without folding, ``"name" <sip:user@host:port>;tag=x``,
``SIP/2.0/UDP host:port;branch=...``) are each matched whole by one regex (the ``_FAST_*``
patterns) and built directly; any other text goes through the full parsers, which hold the
grammar and the precise errors. The fast paths only take text the full parsers accept and
give what they give (tests/sim/test_sip_fast_paths.py compares the two on mutated input).

Line ends: CRLF is what RFC 3261 requires and what we send; a bare LF is accepted as a line end
on input (many stacks do) but a bare CR in the header section is a 400.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from uascall.errors import ArgumentError, RemoteProtocolError

T = TypeVar("T")

__all__ = [
    "COMPACT_FORMS",
    "KNOWN_METHODS",
    "REASONS",
    "Headers",
    "NameAddr",
    "Request",
    "Response",
    "SipParseError",
    "Uri",
    "Via",
    "canonical_name",
    "check_request",
    "check_response",
    "make_response",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_cseq",
    "parse_message",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
]


class SipParseError(RemoteProtocolError):
    """The peer sent something malformed (remote's fault).

    ``status`` is the response a UAS should send (400, or 505 for a bad SIP version),
    ``reason`` the human text, ``is_request`` True/False when the start line told (None when
    unknown), ``headers`` the header fields that could be split (else None), so a UAS can
    still answer statelessly from Via/From/To/Call-ID/CSeq.
    """

    def __init__(self, reason: str, *, status: int = 400, is_request: bool | None = None,
                 headers: Headers | None = None) -> None:
        super().__init__(reason, status=status)
        self.status: int = status
        self.reason = reason
        self.is_request = is_request
        self.headers = headers

    def __repr__(self) -> str:
        return (f"SipParseError({self.reason!r}, status={self.status}, "
                f"is_request={self.is_request})")


# --- header names ----------------------------------------------------------------------------

COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition",
    "e": "Content-Encoding", "f": "From", "i": "Call-ID", "j": "Reject-Contact", "k": "Supported",
    "l": "Content-Length", "m": "Contact", "n": "Identity-Info", "o": "Event", "r": "Refer-To",
    "s": "Subject", "t": "To", "u": "Allow-Events", "v": "Via", "x": "Session-Expires",
    "y": "Identity",
}

_KNOWN_NAMES = (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Accept-Resource-Priority",
    "Alert-Info", "Allow", "Allow-Events", "Answer-Mode", "Authentication-Info", "Authorization",
    "Call-ID", "Call-Info", "Contact", "Content-Disposition", "Content-Encoding",
    "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date", "Diversion",
    "Error-Info", "Event", "Expires", "From", "Geolocation", "History-Info", "Identity",
    "Identity-Info", "In-Reply-To", "Info-Package", "Join", "Max-Breadth", "Max-Forwards",
    "MIME-Version", "Min-Expires", "Min-SE", "Organization", "P-Asserted-Identity",
    "P-Preferred-Identity", "Path", "Priority", "Privacy", "Proxy-Authenticate",
    "Proxy-Authorization", "Proxy-Require", "RAck", "Reason", "Record-Route", "Recv-Info",
    "Refer-Sub", "Refer-To", "Referred-By", "Reject-Contact", "Remote-Party-ID", "Replaces",
    "Reply-To", "Request-Disposition", "Require", "Resource-Priority", "Retry-After", "Route",
    "RSeq", "Security-Client", "Security-Server", "Security-Verify", "Server", "Service-Route",
    "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject", "Subscription-State", "Supported",
    "Target-Dialog", "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning",
    "WWW-Authenticate",
)

# lower-case spelling as received -> (lookup key, canonical name); compact forms included.
_NAME_INFO: dict[str, tuple[str, str]] = {n.lower(): (n.lower(), n) for n in _KNOWN_NAMES}
_NAME_INFO.update({c: (n.lower(), n) for c, n in COMPACT_FORMS.items()})

# Headers whose grammar is a comma-separated list. Authorization & co. are left out on purpose:
# their single value contains commas (digest parameters), and so does Date.
_LIST_KEYS = frozenset(n.lower() for n in (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Accept-Resource-Priority",
    "Alert-Info", "Allow", "Allow-Events", "Call-Info", "Contact", "Content-Encoding",
    "Content-Language", "Diversion", "Error-Info", "History-Info", "In-Reply-To",
    "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Proxy-Require", "Reason",
    "Record-Route", "Recv-Info", "Reject-Contact", "Request-Disposition", "Require",
    "Resource-Priority", "Route", "Security-Client", "Security-Server", "Security-Verify",
    "Service-Route", "Supported", "Unsupported", "Via", "Warning",
))


def canonical_name(name: str) -> str:
    """The RFC spelling of a header name: compact forms expanded, unknown names unchanged."""
    info = _NAME_INFO.get(name.lower())
    return info[1] if info is not None else name


def _key_of(name: str) -> str:
    low = name.lower()
    info = _NAME_INFO.get(low)
    return info[0] if info is not None else low


# --- character classes (RFC 3261 section 25) -------------------------------------------------

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_TOKEN_RE = re.compile(_TOKEN)
_ESC = r"%[0-9A-Fa-f]{2}"
_UNRES = r"A-Za-z0-9\-_.!~*'()"
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_USER_RE = re.compile(rf"(?:[{_UNRES}&=+$,;?/]|{_ESC})+")
_PASSWORD_RE = re.compile(rf"(?:[{_UNRES}&=+$,]|{_ESC})*")
_PCHARS = rf"(?:[{_UNRES}\[\]/:&+$]|{_ESC})+"
_URI_PARAM_RE = re.compile(rf"({_PCHARS})(?:=({_PCHARS}))?")
_URI_HEADERS_RE = re.compile(rf"(?:[{_UNRES}\[\]/?:+$=&]|{_ESC})+")
# Opaque URIs (tel:, isbn:, http:...): RFC 3261 absoluteURI is uric characters only.
_OPAQUE_RE = re.compile(rf"(?:[{_UNRES};/?:@&=+$,\[\]#]|{_ESC})+")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-.]*")
# gen-value = token / host / quoted-string; ':' and brackets let IPv6 received= values in.
_GEN_VALUE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~:\[\]]+|\"(?:[^\"\\]|\\.)*\"", re.S)
_CSEQ_RE = re.compile(rf"([0-9]+)[ \t]+({_TOKEN})")
_SIP_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.I)
_DISPLAY_SAFE_RE = re.compile(rf"{_TOKEN}(?: {_TOKEN})*")
# An unquoted display name must be tokens; non-ASCII characters (UTF-8 names from phones that
# forgot the quotes) are let through too, as they cannot be mistaken for a delimiter.
_DISPLAY_WORD_RE = re.compile("[A-Za-z0-9\\-.!%*_+`'~\u0080-\U0010ffff]+")
_NEEDS_QUOTED_PAIR_RE = re.compile(r'[\x00-\x08\x0b\x0c\x0e-\x1f\x7f"\\]')

# Fast paths (see the module docstring): the plain forms (no escapes, quotes in parameters,
# IPv6, whitespace or upper-case schemes), each matched whole by one regex. Every text they
# match is one the full parser accepts, with an equal result; anything else (odd or wrong)
# goes to the full parser, which keeps the RFC 3261 checks and the precise errors.
_FAST_PCHAR = r"[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+"  # _PCHARS without %HH escapes
_FAST_HOSTPORT = r"([A-Za-z0-9][A-Za-z0-9_\-.]*)(?::([0-9]{1,5}))?"  # no IPv6, no LWS
_FAST_SIP_URI_RE = re.compile(
    rf"(sips?):(?:([A-Za-z0-9\-_.!~*'()&=+$,]+)@)?{_FAST_HOSTPORT}"
    rf"((?:;{_FAST_PCHAR}(?:={_FAST_PCHAR})?)*)")
# ;name[=value] header parameters: tokens, and values that are tokens or hosts (no quotes)
_FAST_GEN_PARAMS = rf"((?:;{_TOKEN}(?:=[A-Za-z0-9\-.!%*_+`'~:\[\]]+)?)*)"
_FAST_NAME_ADDR_RE = re.compile(
    rf"(?:\"([^\"\\]*)\"[ \t]*|({_TOKEN}(?: {_TOKEN})*)[ \t]*)?<([^<>\" \t]+)>"
    + _FAST_GEN_PARAMS)
_FAST_VIA_RE = re.compile(rf"SIP/2\.0/({_TOKEN}) {_FAST_HOSTPORT}{_FAST_GEN_PARAMS}")
# One header line "name: value", no folding: the value without its outer LWS (the
# pattern backtracks linearly however many spaces a hostile line holds).
_FAST_HEADER_RE = re.compile(rf"^({_TOKEN})[ \t]*:[ \t]*((?:[^\n]*[^ \t\n])?)[ \t]*$", re.M)

#: where in the peer's text a problem is: (what, the text), formatted by _at() on error
_Where = tuple[str, str]

_CSEQ_LIMIT = 2**31  # RFC 3261 8.1.1.5: the sequence number MUST be less than 2**31
_DELTA_SECONDS_MAX = 2**32 - 1


def _cut(text: str, limit: int = 80) -> str:
    """Peer text shortened for an error message (a datagram can hold 64 KB of it)."""
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _q(text: str) -> str:
    return repr(_cut(text))


def _ascii_int(text: str, max_digits: int) -> int | None:
    """``text`` as a non-negative int when it is ASCII digits, else None.

    str.isdigit() alone accepts non-ASCII digits that int() converts. A value with more than
    ``max_digits`` significant digits saturates at 10**max_digits, which every caller's range
    check rejects; that keeps int() away from its 4300-digit limit (a ValueError).
    """
    if not text or not text.isascii() or not text.isdigit():
        return None
    significant = text.lstrip("0")
    if len(significant) > max_digits:
        return 10**max_digits
    return int(significant or "0")


# --- header fields ---------------------------------------------------------------------------

def _split_outside_quotes(text: str, sep: str) -> list[str]:
    """Split at ``sep`` except inside "quoted strings" (backslash escapes honoured)."""
    if '"' not in text:
        return text.split(sep)
    out: list[str] = []
    start = 0
    i = 0
    n = len(text)
    quoted = False
    while i < n:
        c = text[i]
        if quoted:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == sep:
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    return out


def _split_list(value: str) -> list[str]:
    """Split a list header's value at commas outside quotes and <angle brackets>.

    An empty value is an empty list; empty elements between commas are kept as "" so a
    strict check (Via, Contact) can reject them.
    """
    if "," not in value:
        return [value] if value else []
    out: list[str] = []
    start = 0
    i = 0
    n = len(value)
    quoted = angle = False
    while i < n:
        c = value[i]
        if quoted:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                quoted = False
        elif angle:
            if c == ">":
                angle = False
        elif c == '"':
            quoted = True
        elif c == "<":
            angle = True
        elif c == ",":
            out.append(value[start:i].strip(" \t"))
            start = i + 1
        i += 1
    out.append(value[start:].strip(" \t"))
    return out


class Headers:
    """Ordered header fields; names compared case-insensitively, compact forms expanded.

    Each field line is kept as one entry, in order; :meth:`get_all` additionally splits the
    values of list headers (Via, Contact, Route, Supported...) at top-level commas.

    The structured views of a message (``Request.from_``, ``.top_via``...) are cached here,
    beside the text they come from, so that a change of a field drops those made from it.
    """

    __slots__ = ("_items", "_parsed")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        # (lookup key, canonical name, value) per field line
        self._items: list[tuple[str, str, str]] = []
        self._parsed: dict[str, Any] | None = None
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _trusted(cls, items: list[tuple[str, str, str]]) -> Headers:
        h = cls.__new__(cls)
        h._items = items
        h._parsed = None
        return h

    def _view(self, key: str, build: Callable[[Headers], T]) -> T:
        """``build(self)``, computed once until a field changes (errors are not kept)."""
        parsed = self._parsed
        if parsed is None:
            parsed = self._parsed = {}
        elif key in parsed:
            return parsed[key]
        value = build(self)
        parsed[key] = value
        return value

    @staticmethod
    def _entry(name: str, value: str) -> tuple[str, str, str]:
        if not isinstance(name, str) or not _TOKEN_RE.fullmatch(name):
            raise ArgumentError(f"header name {name!r} is not a SIP token; expected letters, "
                                "digits or -.!%*_+`'~")
        if not isinstance(value, str):
            raise ArgumentError(f"header {name} value {value!r}: expected a str")
        if "\r" in value or "\n" in value:
            raise ArgumentError(f"header {name} value {value!r} contains CR or LF; expected one "
                                "line (it would inject header fields)")
        low = name.lower()
        info = _NAME_INFO.get(low)
        if info is None:
            return (low, name, value)
        return (info[0], info[1], value)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first field's value (whole line, not split), or ``default``."""
        key = _key_of(name)
        for k, _, v in self._items:
            if k == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value in order; list headers split at top-level commas."""
        key = _key_of(name)
        values = [v for k, _, v in self._items if k == key]
        if key not in _LIST_KEYS:
            return values
        out: list[str] = []
        for v in values:
            out.extend(_split_list(v))
        return out

    def count(self, name: str) -> int:
        """How many values :meth:`get_all` returns (field lines for non-list headers)."""
        return len(self.get_all(name))

    def drop_views(self) -> None:
        """Forget the parsed views (they are parsed again if asked for): for a message
        that is kept for its fields or bytes only, where they would just hold memory."""
        self._parsed = None

    def _changed(self, key: str) -> None:
        """Drop the views made from the fields under lookup ``key`` (they changed)."""
        parsed = self._parsed
        if parsed:
            for view in _VIEWS_OF.get(key, (key,)):
                parsed.pop(view, None)

    def add(self, name: str, value: str) -> None:
        """Append a field."""
        entry = self._entry(name, value)
        self._items.append(entry)
        self._changed(entry[0])

    def prepend(self, name: str, value: str) -> None:
        """Insert a field before the first one of that name (at the top when there is none)."""
        entry = self._entry(name, value)
        self._changed(entry[0])
        for i, (k, _, _) in enumerate(self._items):
            if k == entry[0]:
                self._items.insert(i, entry)
                return
        self._items.insert(0, entry)

    def set(self, name: str, value: str) -> None:
        """Replace every field of that name by one, where the first was (appended if absent)."""
        entry = self._entry(name, value)
        key = entry[0]
        out: list[tuple[str, str, str]] = []
        placed = False
        for item in self._items:
            if item[0] == key:
                if not placed:
                    out.append(entry)
                    placed = True
            else:
                out.append(item)
        if not placed:
            out.append(entry)
        self._items = out
        self._changed(key)

    def remove(self, name: str) -> None:
        """Remove every field of that name (no error when there is none)."""
        key = _key_of(name)
        self._items = [item for item in self._items if item[0] != key]
        self._changed(key)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _key_of(name)
        for item in self._items:  # a plain loop: any() over a generator costs twice this
            if item[0] == key:
                return True
        return False

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, n, v in self._items:
            yield (n, v)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(n, v) for _, n, v in self._items] == [(n, v) for _, n, v in other._items]

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def copy(self) -> Headers:
        return Headers._trusted(list(self._items))


# --- URIs, name-addr, Via, CSeq --------------------------------------------------------------

def _fast_params(text: str) -> dict[str, str | None]:
    """``;a=1;b`` matched by a fast-path regex -> {"a": "1", "b": None}: names lower-case,
    the first of a repeated name kept, as the full parsers do."""
    params: dict[str, str | None] = {}
    if text:
        for part in text[1:].split(";"):
            name, eq, value = part.partition("=")
            params.setdefault(name.lower(), value if eq else None)
    return params


def _at(where: _Where) -> str:
    """``where`` as error text: only built when an error is raised, since formatting the
    peer's text on every successful parse costs more than the parse itself."""
    return f"{where[0]} {_q(where[1])}"


def _parse_port(text: str, where: _Where) -> int:
    port = _ascii_int(text, 5)
    if port is None or port > 65535:
        raise SipParseError(f"port {_q(text)} in {_at(where)}: expected a number 0..65535")
    return port


def _parse_host(text: str, where: _Where) -> str:
    if text.startswith("["):
        if not text.endswith("]"):
            raise SipParseError(f"IPv6 host {_q(text)} in {_at(where)} lacks its closing ']'")
        try:
            ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            raise SipParseError(f"host {_q(text)} in {_at(where)}: expected an IPv6 address inside "
                                "[...]") from None
        return text.lower()
    if not _HOSTNAME_RE.fullmatch(text):
        raise SipParseError(f"host {_q(text)} in {_at(where)}: expected a hostname, IPv4 "
                            "address or [IPv6 address]")
    return text.lower()


def _split_hostport(text: str, where: _Where, *, spaces: bool = False) -> tuple[str, int | None]:
    """``host[:port]``; with ``spaces`` (Via sent-by), LWS around the colon is allowed."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise SipParseError(f"IPv6 host in {_at(where)} {_q(text)} lacks its closing ']'")
        host_text = text[:close + 1]
        after = text[close + 1:]
        if spaces:
            after = after.strip(" \t")
        if not after:
            return _parse_host(host_text, where), None
        if after[0] != ":":
            raise SipParseError(f"unexpected {_q(after)} after the IPv6 host in {_at(where)}; "
                                "expected ':port' or nothing")
        port_text = after[1:]
    else:
        host_text, colon, port_text = text.partition(":")
        if spaces:
            host_text = host_text.rstrip(" \t")
        if not colon:
            return _parse_host(host_text, where), None
    if spaces:
        port_text = port_text.strip(" \t")
    return _parse_host(host_text, where), _parse_port(port_text, where)


@dataclass(slots=True)
class Uri:
    """A URI: sip/sips split into parts; other schemes kept whole in ``opaque``.

    ``user`` and ``password`` are as received (escapes kept); ``host`` is lower-case (IPv6
    keeps its brackets); ``params`` names are lower-case, values as received; ``headers`` is
    the raw part after '?'.
    """

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None
    opaque: str | None = None

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts.append(":")
                parts.append(self.password)
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts.append(f":{self.port}")
        for name, value in self.params.items():
            parts.append(f";{name}" if value is None else f";{name}={value}")
        if self.headers is not None:
            parts.append("?")
            parts.append(self.headers)
        return "".join(parts)


def parse_uri(text: str) -> Uri:
    """Parse a URI (no surrounding <> or whitespace). Raises SipParseError(400)."""
    m = _FAST_SIP_URI_RE.fullmatch(text)
    if m is not None:
        port_text = m.group(4)
        port = int(port_text) if port_text is not None else None
        if port is None or port <= 65535:
            return Uri(m.group(1), m.group(2), None, m.group(3).lower(), port,
                       _fast_params(m.group(5)))
    return _parse_uri_full(text)


def _parse_uri_full(text: str) -> Uri:
    """:func:`parse_uri` for any text (its fast path only takes the plain forms)."""
    colon = text.find(":")
    if colon <= 0 or not _SCHEME_RE.fullmatch(text, 0, colon):
        if text.startswith("<"):
            raise SipParseError(f"URI {_q(text)} is enclosed in <>; expected a bare URI here")
        raise SipParseError(f"URI {_q(text)} has no scheme; expected scheme:... such as sip:")
    scheme = text[:colon].lower()
    rest = text[colon + 1:]
    if scheme != "sip" and scheme != "sips":
        if not _OPAQUE_RE.fullmatch(rest):
            raise SipParseError(f"{_cut(scheme)}: URI {_q(text)} contains characters a URI "
                                "cannot hold (whitespace, quotes, <>, controls) or is empty")
        return Uri(scheme, opaque=rest)
    user = password = None
    at = rest.find("@")
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1:]
        user, sep, pw = userinfo.partition(":")
        if not _USER_RE.fullmatch(user):
            raise SipParseError(f"user part {_q(user)} of {_q(text)}: expected 1 or more "
                                "unreserved characters or %HH escapes")
        if sep:
            if not _PASSWORD_RE.fullmatch(pw):
                raise SipParseError(f"password part of {_q(text)}: expected unreserved "
                                    "characters or %HH escapes")
            password = pw
    headers = None
    q = rest.find("?")
    if q >= 0:
        headers = rest[q + 1:]
        rest = rest[:q]
        if not _URI_HEADERS_RE.fullmatch(headers):
            raise SipParseError(f"headers part {_q(headers)} of {_q(text)}: expected "
                                "name=value&... in URI characters")
    params: dict[str, str | None] = {}
    semi = rest.find(";")
    if semi >= 0:
        for part in rest[semi + 1:].split(";"):
            m = _URI_PARAM_RE.fullmatch(part)
            if m is None:
                raise SipParseError(f"URI parameter {_q(part)} of {_q(text)}: expected name or "
                                    "name=value in URI characters")
            params.setdefault(m.group(1).lower(), m.group(2))
        rest = rest[:semi]
    if not rest:
        raise SipParseError(f"{scheme}: URI {_q(text)} has no host")
    host, port = _split_hostport(rest, ("URI", text))
    return Uri(scheme, user, password, host, port, params, headers)


def _parse_generic_params(text: str, where: _Where) -> dict[str, str | None]:
    """``name[=value]`` items separated by ';' (the text after the first ';')."""
    params: dict[str, str | None] = {}
    for part in _split_outside_quotes(text, ";"):
        name, eq, value = part.partition("=")
        name = name.strip(" \t")
        if not _TOKEN_RE.fullmatch(name):
            if not name:
                raise SipParseError(f"empty parameter in {_at(where)}; expected ;name or "
                                    ";name=value (stray ';'?)")
            raise SipParseError(f"parameter name {_q(name)} in {_at(where)} is not a token")
        if eq:
            value = value.strip(" \t")
            if not _GEN_VALUE_RE.fullmatch(value):
                raise SipParseError(f"parameter {_cut(name)}={_q(value)} in {_at(where)}: expected "
                                    "a token, host or quoted string")
            params.setdefault(name.lower(), value)
        else:
            params.setdefault(name.lower(), None)
    return params


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Unescape the quoted string at ``text[start] == '"'``; return it and the index past it."""
    out: list[str] = []
    n = len(text)
    i = start + 1
    # q is only searched again once an escape has consumed it, so the scan stays linear.
    q = text.find('"', i)
    while q >= 0:
        b = text.find("\\", i, q)
        if b < 0:
            out.append(text[i:q])
            return "".join(out), q + 1
        if b + 1 >= n:
            break
        out.append(text[i:b])
        out.append(text[b + 1])
        i = b + 2
        if i > q:
            q = text.find('"', i)
    raise SipParseError(f"unterminated quoted string in {_q(text)}; expected a closing '\"'")


def media_type(value: str | None) -> str:
    """The media type of a Content-Type or Accept value, lower case, without parameters
    ("" for none)."""
    return (value or "").split(";")[0].strip().lower()


def warning(text: str, code: int = 399) -> tuple[str, str]:
    """A Warning header field of ours (RFC 3261 20.43): ``code`` (399, miscellaneous, unless
    told), agent uascall, and ``text`` cut to 200 characters, then quoted as a display
    name is. Cut first: an escape cut in two would leave the string open."""
    return ("Warning", f"{code} uascall {_quote(text[:200])}")


def _quote(text: str) -> str:
    # CR and LF cannot be sent even as quoted-pairs (RFC 3261 25.1): they become spaces.
    # Other controls are not qdtext, so they go out as quoted-pairs like '"' and '\\'.
    text = text.replace("\r", " ").replace("\n", " ")
    return '"' + _NEEDS_QUOTED_PAIR_RE.sub(r"\\\g<0>", text) + '"'


@dataclass(slots=True)
class NameAddr:
    """A From/To/Contact/Route value: display name, URI, and header parameters (tag=...)."""

    uri: Uri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        uri = f"<{self.uri}>"
        if self.display is None:
            head = uri
        elif _DISPLAY_SAFE_RE.fullmatch(self.display):
            head = f"{self.display} {uri}"
        else:
            head = f"{_quote(self.display)} {uri}"
        return head + _format_params(self.params)


def parse_name_addr(text: str) -> NameAddr:
    """Parse ``["display"] <uri>;params`` or the addr-spec form ``uri;params``.

    In the addr-spec form the ';' parameters belong to the header, not the URI (RFC 3261
    20.10), so such a URI may not contain ',', ';' or '?': those need <>.
    """
    s = text.strip(" \t")
    m = _FAST_NAME_ADDR_RE.fullmatch(s)
    if m is not None:
        display = m.group(1)
        return NameAddr(parse_uri(m.group(3)), m.group(2) if display is None else display,
                        _fast_params(m.group(4)))
    return _parse_name_addr_full(text, s)


def _parse_name_addr_full(text: str, s: str) -> NameAddr:
    """:func:`parse_name_addr` for any text; ``s`` is ``text`` without its outer LWS."""
    if not s:
        raise SipParseError("empty address; expected a name-addr or addr-spec")
    display: str | None
    if s[0] == '"':
        display, end = _read_quoted(s, 0)
        lt = end
        while lt < len(s) and s[lt] in " \t":
            lt += 1
        if lt >= len(s) or s[lt] != "<":
            raise SipParseError(f"address {_q(text)}: expected <URI> after the quoted display "
                                "name")
    else:
        lt = s.find("<")
        if lt < 0:
            return _parse_addr_spec(s, text)
        display = s[:lt].rstrip(" \t")
        if display:
            words = display.replace("\t", " ").split(" ")  # not split(): \x1c is no LWS
            if any(not _DISPLAY_WORD_RE.fullmatch(w) for w in words if w):
                raise SipParseError(f"display name {_q(display)} in {_q(text)} contains characters "
                                    "that need quotes (such as ',' or '\"'); expected tokens "
                                    "or a quoted string")
        else:
            display = None
    gt = s.find(">", lt)
    if gt < 0:
        raise SipParseError(f"address {_q(text)}: '<' without a closing '>'")
    inner = s[lt + 1:gt]
    if inner[:1] in (" ", "\t") or inner[-1:] in (" ", "\t"):
        raise SipParseError(f"address {_q(text)}: whitespace inside <...> around the URI; "
                            "expected <URI>")
    uri = parse_uri(inner)
    rest = s[gt + 1:].lstrip(" \t")
    params: dict[str, str | None] = {}
    if rest:
        if rest[0] != ";":
            raise SipParseError(f"address {_q(text)}: unexpected {_q(rest)} after '>'; expected "
                                ";parameters")
        params = _parse_generic_params(rest[1:], ("address", text))
    return NameAddr(uri, display, params)


def _parse_addr_spec(s: str, text: str) -> NameAddr:
    semi = s.find(";")
    uri_text = (s[:semi] if semi >= 0 else s).rstrip(" \t")
    for c in "?,":
        if c in uri_text:
            raise SipParseError(f"address {_q(text)}: a URI containing {_q(c)} must be enclosed "
                                "in <>")
    uri = parse_uri(uri_text)
    params = _parse_generic_params(s[semi + 1:], ("address", text)) if semi >= 0 else {}
    return NameAddr(uri, None, params)


@dataclass(slots=True)
class Via:
    """One via-parm: ``SIP/2.0/<transport> host[:port];params``."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"SIP/2.0/{self.transport} {self.host}{port}{_format_params(self.params)}"


def parse_via(text: str) -> Via:
    """Parse ONE via-parm (split a Via header with ``Headers.get_all("Via")`` first)."""
    s = text.strip(" \t")
    m = _FAST_VIA_RE.fullmatch(s)
    if m is not None:
        port_text = m.group(3)
        port = int(port_text) if port_text is not None else None
        if port is None or port <= 65535:
            return Via(m.group(1).upper(), m.group(2).lower(), port, _fast_params(m.group(4)))
    return _parse_via_full(text, s)


def _parse_via_full(text: str, s: str) -> Via:
    """:func:`parse_via` for any text; ``s`` is ``text`` without its outer LWS."""
    slash1 = s.find("/")
    slash2 = s.find("/", slash1 + 1) if slash1 >= 0 else -1
    if slash2 < 0:
        raise SipParseError(f"Via {_q(text)}: expected SIP/2.0/transport host")
    proto = s[:slash1].strip(" \t")
    version = s[slash1 + 1:slash2].strip(" \t")
    if proto.upper() != "SIP" or version != "2.0":
        raise SipParseError(f"Via {_q(text)}: sent-protocol {_cut(proto)}/{_cut(version)}; "
                            "expected SIP/2.0")
    rest = s[slash2 + 1:].lstrip(" \t")
    end = 0
    while end < len(rest) and rest[end] not in " \t":
        end += 1
    transport = rest[:end]
    if not _TOKEN_RE.fullmatch(transport):
        raise SipParseError(f"Via {_q(text)}: transport {_q(transport)} is not a token")
    rest = rest[end:]
    if not rest or rest[0] not in " \t":
        raise SipParseError(f"Via {_q(text)}: expected whitespace and a host after the transport")
    semi = rest.find(";")
    sent_by = (rest[:semi] if semi >= 0 else rest).strip(" \t")
    if not sent_by:
        raise SipParseError(f"Via {_q(text)} has no host; expected SIP/2.0/transport host")
    host, port = _split_hostport(sent_by, ("Via", text), spaces=True)
    params = _parse_generic_params(rest[semi + 1:], ("Via", text)) if semi >= 0 else {}
    return Via(transport.upper(), host, port, params)


def parse_cseq(text: str) -> tuple[int, str]:
    """``"<number> <method>"`` -> (number, method); the number must be below 2**31."""
    m = _CSEQ_RE.fullmatch(text.strip(" \t"))
    if m is None:
        raise SipParseError(f"CSeq {_q(text)}: expected a sequence number and a method")
    number = _ascii_int(m.group(1), 12)
    if number is None or number >= _CSEQ_LIMIT:
        raise SipParseError(f"CSeq number {_cut(m.group(1))} is out of range; expected 0..2**31-1")
    return number, m.group(2)


# --- messages --------------------------------------------------------------------------------

KNOWN_METHODS = frozenset((
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE", "NOTIFY",
    "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
))


def _serialize(start_line: str, headers: Headers, body: bytes) -> bytes:
    lines = [start_line]
    length = f"Content-Length: {len(body)}"
    placed = False
    for key, name, value in headers._items:
        if key == "content-length":
            if not placed:
                lines.append(length)
                placed = True
        else:
            lines.append(f"{name}: {value}")
    if not placed:
        lines.append(length)
    lines.append("")
    lines.append("")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + body


def _required(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise SipParseError(f"no {name} header field; expected one")
    return value


# Each view is named after the lookup key of the field it is made from, but for these.
_VIEWS_OF: dict[str, tuple[str, ...]] = {"via": ("via", "top-via")}


def _view_call_id(h: Headers) -> str:
    return _required(h, "Call-ID")


def _view_cseq(h: Headers) -> tuple[int, str]:
    return parse_cseq(_required(h, "CSeq"))


def _view_from(h: Headers) -> NameAddr:
    return parse_name_addr(_required(h, "From"))


def _view_to(h: Headers) -> NameAddr:
    return parse_name_addr(_required(h, "To"))


def _view_vias(h: Headers) -> list[Via]:
    return [parse_via(v) for v in h.get_all("Via")]


def _view_top_via(h: Headers) -> Via:
    vias = h._parsed.get("via") if h._parsed is not None else None
    if vias:  # every Via was parsed already (by the checks of a received message)
        return vias[0]
    values = h.get_all("Via")
    if not values:
        raise SipParseError("no Via header field; expected at least one")
    return parse_via(values[0])


def _view_contact(h: Headers) -> NameAddr | None:
    values = h.get_all("Contact")
    if not values or values[0] == "*":
        return None
    return parse_name_addr(values[0])


class _Common:
    """Convenience views shared by Request and Response.

    Each is parsed on first access and kept (in :class:`Headers`) until a header field
    changes. The objects are shared, not copies: to change one, change a copy
    (``dataclasses.replace``) and set the header field from it.
    """

    __slots__ = ()
    headers: Headers

    @property
    def call_id(self) -> str:
        return self.headers._view("call-id", _view_call_id)

    @property
    def cseq(self) -> tuple[int, str]:
        return self.headers._view("cseq", _view_cseq)

    @property
    def from_(self) -> NameAddr:
        return self.headers._view("from", _view_from)

    @property
    def to(self) -> NameAddr:
        return self.headers._view("to", _view_to)

    @property
    def vias(self) -> list[Via]:
        return list(self.headers._view("via", _view_vias))

    @property
    def top_via(self) -> Via:
        return self.headers._view("top-via", _view_top_via)

    @property
    def contact(self) -> NameAddr | None:
        """The first Contact; None when there is none or it is ``*``."""
        return self.headers._view("contact", _view_contact)


@dataclass(slots=True)
class Request(_Common):
    """A SIP request; ``uri`` is the Request-URI text (see :func:`parse_uri`)."""

    method: str
    uri: str
    headers: Headers
    body: bytes = b""
    # (the uri text it was made from, the parsed Request-URI)
    _uri_view: tuple[str, Uri] | None = field(default=None, init=False, repr=False,
                                               compare=False)

    @property
    def parsed_uri(self) -> Uri:
        """The Request-URI parsed (once, until ``uri`` changes); raises SipParseError."""
        view = self._uri_view
        if view is None or view[0] is not self.uri:
            view = self._uri_view = (self.uri, parse_uri(self.uri))
        return view[1]

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards 0..255, or None when absent or unusable (RFC 4475 3.1.2.4 allows
        treating an overlarge value as absent)."""
        value = self.headers.get("Max-Forwards")
        if value is None:
            return None
        n = _ascii_int(value, 10)  # leading zeros are legal ("0068" in RFC 4475 wsinv)
        return n if n is not None and n <= 255 else None

    def serialize(self) -> bytes:
        """Wire bytes: CRLF line ends, Content-Length set to len(body) (replacing any)."""
        return _serialize(f"{self.method} {self.uri} SIP/2.0", self.headers, self.body)


@dataclass(slots=True)
class Response(_Common):
    """A SIP response."""

    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    def serialize(self) -> bytes:
        """Wire bytes: CRLF line ends, Content-Length set to len(body) (replacing any)."""
        return _serialize(f"SIP/2.0 {self.status} {self.reason}", self.headers, self.body)


def _split_headers(lines: list[str]) -> tuple[list[tuple[str, str, str]], str | None]:
    """Header lines (start line excluded) -> entries, and the first problem found (if any).

    Bad lines are skipped rather than stopping the split, so an error response can still
    be built from the good ones.
    """
    items: list[tuple[str, str, str]] = []
    problem: str | None = None
    info_of = _NAME_INFO.get
    # Continuation pieces per item index, joined at the end: appending to the value for each
    # folded line would copy it every time (quadratic in a hostile datagram).
    folds: dict[int, list[str]] = {}
    current = -1  # the item continuation lines belong to; -1 after a bad line
    for line in lines:
        if not line:
            continue  # only the tail of a header section without an empty line ends here
        c0 = line[0]
        if c0 == " " or c0 == "\t":
            cont = line.strip(" \t")
            if not items:
                problem = problem or (f"continuation line {_q(line)} before any header field; "
                                      "expected name: value")
            elif cont and current >= 0:
                folds.setdefault(current, []).append(cont)
            continue
        current = -1
        colon = line.find(":")
        if colon < 0:
            problem = problem or f"header line {_q(line)} has no ':'; expected name: value"
            continue
        name = line[:colon].rstrip(" \t")
        value = line[colon + 1:].strip(" \t")
        low = name.lower()
        info = info_of(low)
        if info is not None:
            items.append((info[0], info[1], value))
        elif _TOKEN_RE.fullmatch(name):
            items.append((low, name, value))
        else:
            problem = problem or f"header name {_q(name)} is not a token"
            continue
        current = len(items) - 1
    for index, pieces in folds.items():
        k, n, v = items[index]
        items[index] = (k, n, " ".join([v, *pieces] if v else pieces))
    return items, problem


def _frame_body(data: bytes, body_start: int, items: list[tuple[str, str, str]]) -> bytes:
    lengths = [v for k, _, v in items if k == "content-length"]
    available = len(data) - body_start
    if not lengths:
        return data[body_start:]
    length = -1
    for text in lengths:
        n = _ascii_int(text, 10)
        if n is None:
            raise SipParseError(f"Content-Length {_q(text)}: expected a non-negative number")
        if length >= 0 and n != length:
            raise SipParseError(f"Content-Length given as both {_cut(lengths[0])} and "
                                f"{_cut(text)}; expected one value")
        length = n
    if length > available:
        raise SipParseError(f"Content-Length {_cut(lengths[0])} exceeds the {available} bytes of "
                            "body")
    return data[body_start:body_start + length]


def parse_message(data: bytes) -> Request | Response:
    """Parse one datagram into a Request or Response; raises SipParseError."""
    n = len(data)
    i = 0
    while i < n and data[i] in (13, 10):
        i += 1
    if i >= n:
        raise SipParseError("empty message; expected a request or status line")
    # The header section ends at the first empty line; without one the datagram's end is
    # taken as the end of the headers (RFC 4475 baddn.dat has none).
    p1 = data.find(b"\n\r\n", i)
    p2 = data.find(b"\n\n", i)
    if p1 >= 0 and (p2 < 0 or p1 < p2):
        head_end, body_start = p1, p1 + 3
    elif p2 >= 0:
        head_end, body_start = p2, p2 + 2
    else:
        head_end = body_start = n
    block = data[i:head_end].decode("utf-8", "surrogateescape")
    bare_cr = False
    if "\r" in block:
        block = block.replace("\r\n", "\n")
        if block.endswith("\r"):
            block = block[:-1]
        bare_cr = "\r" in block
    start_end = block.find("\n")
    if not bare_cr and start_end >= 0:
        header_text = block[start_end + 1:]
        fields = _FAST_HEADER_RE.findall(header_text)
        if len(fields) == header_text.count("\n") + 1:
            # Every line is a plain field (no folding, no empty or broken line): what
            # _split_headers would make of it, without its line-by-line work.
            start_line = block[:start_end]
            items = _fast_items(fields)
            return _make_message(data, body_start, start_line, start_line[:4].upper() != "SIP/",
                                 items, None)
    lines = block.split("\n")
    start_line = lines[0]
    is_request = start_line[:4].upper() != "SIP/"
    if bare_cr:
        # Lines holding a bare CR are dropped (echoing one in a response would let the peer
        # inject header fields); the rest still serve for a stateless error response.
        items, _ = _split_headers([line for line in lines[1:] if "\r" not in line])
        raise SipParseError("bare CR in the header section; expected CRLF line ends",
                            is_request=is_request, headers=Headers._trusted(items))
    items, problem = _split_headers(lines[1:])
    return _make_message(data, body_start, start_line, is_request, items, problem)


def _fast_items(fields: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(name, value) pairs matched by _FAST_HEADER_RE -> Headers entries."""
    items: list[tuple[str, str, str]] = []
    info_of = _NAME_INFO.get
    for name, value in fields:
        low = name.lower()
        info = info_of(low)
        items.append((low, name, value) if info is None else (info[0], info[1], value))
    return items


def _make_message(data: bytes, body_start: int, start_line: str, is_request: bool,
                  items: list[tuple[str, str, str]], problem: str | None) -> Request | Response:
    """The message from its split header fields, checked (see :func:`parse_message`)."""
    headers = Headers._trusted(items)
    msg: Request | Response
    try:
        if problem is not None:
            raise SipParseError(problem)
        if is_request:
            method, uri_text, uri = _parse_request_line(start_line)
            msg = Request(method, uri_text, headers, _frame_body(data, body_start, items))
            msg._uri_view = (uri_text, uri)
        else:
            status, reason = _parse_status_line(start_line)
            msg = Response(status, reason, headers, _frame_body(data, body_start, items))
    except SipParseError as e:
        raise SipParseError(e.reason, status=e.status, is_request=is_request,
                            headers=headers) from None
    if isinstance(msg, Request):
        check_request(msg)
    else:
        check_response(msg)
    return msg


def _parse_request_line(line: str) -> tuple[str, str, Uri]:
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError(f"request line {_q(line)}: expected METHOD SP Request-URI SP SIP/2.0 "
                            "with single spaces and nothing after the version")
    method, uri_text, version = parts
    if version.upper() != "SIP/2.0":
        if _SIP_VERSION_RE.fullmatch(version):
            raise SipParseError(f"request is {_cut(version)}; only SIP/2.0 is supported",
                                status=505)
        raise SipParseError(f"request line {_q(line)} ends with {_q(version)}; expected SIP/2.0")
    if not _TOKEN_RE.fullmatch(method):
        raise SipParseError(f"method {_q(method)} is not a token")
    if uri_text.startswith("<"):
        raise SipParseError(f"Request-URI {_q(uri_text)} is enclosed in <>; expected a bare URI")
    uri = parse_uri(uri_text)
    if uri.headers is not None and uri.is_sip:
        raise SipParseError(f"Request-URI {_q(uri_text)} carries ?headers; they are not allowed "
                            "in a Request-URI")
    return method, uri_text, uri


def _parse_status_line(line: str) -> tuple[int, str]:
    parts = line.split(" ", 2)
    if parts[0].upper() != "SIP/2.0":
        raise SipParseError(f"status line {_q(line)}: version {_q(parts[0])}; expected SIP/2.0")
    code = _ascii_int(parts[1], 3) if len(parts) > 1 and len(parts[1]) == 3 else None
    if code is None or not 100 <= code <= 699:
        raise SipParseError(f"status line {_q(line)}: expected a 3-digit status code 100..699")
    return code, parts[2] if len(parts) > 2 else ""


def _check_common(h: Headers) -> tuple[int, str]:
    # One pass over the fields for all that is checked (a lookup each would scan them again).
    found: dict[str, list[str]] = {"call-id": [], "from": [], "to": [], "cseq": [], "via": []}
    for k, _, v in h._items:
        values = found.get(k)
        if values is not None:
            values.append(v)
    for key, name in (("call-id", "Call-ID"), ("from", "From"), ("to", "To"), ("cseq", "CSeq")):
        c = len(found[key])
        if c != 1:
            if c == 0:
                raise SipParseError(f"no {name} header field; expected exactly one")
            raise SipParseError(f"{c} {name} header fields; expected exactly one")
    call_id = found["call-id"][0]
    if not call_id or " " in call_id or "\t" in call_id:
        raise SipParseError(f"Call-ID {_q(call_id)}: expected one non-empty word")
    # Parsed into the message's views, so that no layer above parses them again.
    views: dict[str, Any] = {"call-id": call_id}
    for key, name in (("from", "From"), ("to", "To")):
        try:
            views[key] = parse_name_addr(found[key][0])
        except SipParseError as e:
            raise SipParseError(f"{name}: {e.reason}") from None
    cseq = views["cseq"] = parse_cseq(found["cseq"][0])
    vias = views["via"] = [parse_via(v) for value in found["via"] for v in _split_list(value)]
    if not vias:
        raise SipParseError("no Via header field value; expected at least one")
    if h._parsed is None:
        h._parsed = views
    else:
        h._parsed.update(views)
    return cseq


def check_request(req: Request) -> None:
    """The checks every received request must pass; raises SipParseError(400).

    Exactly one Call-ID, From, To and CSeq, all well-formed; at least one Via, every one
    well-formed; the CSeq method equal to a known request method; every Contact well-formed
    (or "*"). An unusable Max-Forwards is not fatal: :attr:`Request.max_forwards` treats it
    as absent.
    """
    h = req.headers
    try:
        _, cseq_method = _check_common(h)
        # An unknown method gets a 501 from the UAS, which is more useful than a 400 for a
        # CSeq mismatch (RFC 4475 3.1.2.18, mismatch02).
        if cseq_method != req.method and req.method in KNOWN_METHODS:
            raise SipParseError(f"CSeq method {_q(cseq_method)} differs from the request method "
                                f"{_q(req.method)}; expected the same")
        contacts = []
        for c in h.get_all("Contact"):
            try:
                contacts.append(None if c == "*" else parse_name_addr(c))
            except SipParseError as e:
                raise SipParseError(f"Contact: {e.reason}") from None
        h._view("contact", lambda _h: contacts[0] if contacts else None)
    except SipParseError as e:
        raise SipParseError(e.reason, status=e.status, is_request=True, headers=h) from None


def check_response(resp: Response) -> None:
    """The checks every received response must pass (a failing one is dropped).

    Besides the fields every message needs, an overlarge Retry-After or a warn-code that is
    not 3 digits is rejected (RFC 4475 3.1.2.5, scalarlg).
    """
    h = resp.headers
    try:
        _check_common(h)
        retry = h.get("Retry-After")
        if retry is not None:
            delta = retry.split(";", 1)[0].split("(", 1)[0].strip(" \t")
            n = _ascii_int(delta, 10)
            if n is None or n > _DELTA_SECONDS_MAX:
                raise SipParseError(f"Retry-After {_q(delta)}: expected delta-seconds "
                                    "0..2**32-1")
        for w in h.get_all("Warning"):
            code = w[:3]
            if _ascii_int(code, 3) is None or w[3:4] != " ":
                raise SipParseError(f"Warning {_q(w)}: expected a 3-digit warn-code and a space")
    except SipParseError as e:
        raise SipParseError(e.reason, status=e.status, is_request=False, headers=h) from None


# --- building ---------------------------------------------------------------------------------

REASONS: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority", 420: "Bad Extension", 421: "Extension Required",
    422: "Session Interval Too Small", 423: "Interval Too Brief",
    424: "Bad Location Information", 428: "Use Identity Header",
    429: "Provide Referrer Identity", 430: "Flow Failed", 433: "Anonymity Disallowed",
    436: "Bad Identity-Info", 437: "Unsupported Certificate", 438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support", 440: "Max-Breadth Exceeded",
    469: "Bad Info Package", 470: "Consent Needed", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
}

_CLASS_REASONS = {1: "Provisional", 2: "Success", 3: "Redirection", 4: "Client Error",
                  5: "Server Error", 6: "Global Failure"}

_TAG_PARAM_RE = re.compile(r";[ \t]*tag[ \t]*=", re.I)


def _has_tag(headers: Headers, to: str) -> bool:
    """Whether ``to``, the first To of ``headers``, has a tag (its parsed view is kept)."""
    try:
        return headers._view("to", _view_to).tag is not None
    except SipParseError:
        # A broken To still gets a stateless error response: look for the tag textually.
        return _TAG_PARAM_RE.search(to) is not None


def make_response(request: Request, status: int, reason: str | None = None, *,
                  to_tag: str | None = None, headers: Iterable[tuple[str, str]] = (),
                  body: bytes = b"", record_route: bool = False) -> Response:
    """A response to ``request`` per RFC 3261 8.2.6.

    Copies every Via (in order), From, Call-ID and CSeq, and To with ``;tag=to_tag`` added
    when given and the To has none; a 100 also copies Timestamp (8.2.6.1). With
    ``record_route`` (a response that makes a dialog: 1xx with a To-tag, 2xx to INVITE)
    every Record-Route is copied too, in order and as received (12.1.1), so that the
    proxies that record-routed stay on the path of the caller's requests in the dialog.
    Works on the partial headers of a SipParseError too (missing fields are just not
    copied).
    """
    if not isinstance(status, int) or not 100 <= status <= 699:
        raise ArgumentError(f"status {status!r}: expected an int 100..699")
    if reason is None:
        reason = REASONS.get(status) or _CLASS_REASONS[status // 100]
    if "\r" in reason or "\n" in reason:
        raise ArgumentError(f"reason {reason!r} contains CR or LF; expected one line")
    out: list[tuple[str, str, str]] = []
    to_done = False
    for item in request.headers._items:
        key = item[0]
        if key == "via" or key == "from" or key == "call-id" or key == "cseq":
            out.append(item)
        elif key == "to" and not to_done:
            to_done = True
            if to_tag is not None and not _has_tag(request.headers, item[2]):
                out.append((key, item[1], f"{item[2]};tag={to_tag}"))
            else:
                out.append(item)
        elif key == "timestamp" and status == 100:
            out.append(item)
        elif key == "record-route" and record_route:
            out.append(item)
    resp_headers = Headers._trusted(out)
    for name, value in headers:
        resp_headers.add(name, value)
    return Response(status, reason, resp_headers, bytes(body))


def new_tag() -> str:
    """A random From/To tag (64 bits)."""
    return secrets.token_hex(8)


def new_branch() -> str:
    """A random Via branch with the RFC 3261 magic cookie."""
    return "z9hG4bK" + secrets.token_hex(8)


def new_call_id(host: str) -> str:
    """A random, globally unique Call-ID ``<128 random bits>@host``."""
    return f"{secrets.token_hex(16)}@{host}"
