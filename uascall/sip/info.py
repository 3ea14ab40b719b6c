"""Keys sent in SIP INFO requests: the bodies phones and gateways use, parsed.

Many SIP phones and PBXs can be set to send DTMF as INFO requests in the dialog instead
of RFC 4733 telephone-events (Cisco's "sip-info" mode, Asterisk's ``dtmfmode=info``).
Two bodies are in use, both without an Info Package (RFC 6086's "legacy INFO usage"):

- ``application/dtmf-relay``: lines of ``name=value``; ``Signal`` is the key (``0``-``9``,
  ``*``, ``#``, ``A``-``D``, or the RFC 4733 event number ``10`` for ``*`` and ``11`` for
  ``#``, as some gateways send it) and ``Duration`` how long it was held, in ms;
- ``application/dtmf``: the key alone (or its event number).

A hook flash comes the same way, as ``Signal=16`` (RFC 4733's event 16, "Flash") or
``Signal=!`` (the character Asterisk uses for it); it is taken (200) and reported as a
:class:`HookFlash`, not refused: the far end did nothing wrong in sending it.

:func:`parse_dtmf_info` reads one, sans I/O: the call answers the request and passes the
key on. A body that is neither, or a request that names an Info Package, is refused with
the status RFC 6086 gives (:class:`InfoRefused`).
"""

from __future__ import annotations

from dataclasses import dataclass

from uascall.sip.message import media_type
from uascall.sip.rtp import EVENT_DIGITS

#: the bodies we take (the Accept header of a 415)
DTMF_BODIES = ("application/dtmf-relay", "application/dtmf")
#: how long a key is taken to be held when the body does not say (ms)
DEFAULT_DURATION_MS = 250
#: the longest a key may be held (ms): a longer Duration is cut to it
MAX_DURATION_MS = 10_000
#: the shortest (ms): a key held less could not have been heard in band either
MIN_DURATION_MS = 40


#: what ``Signal`` says for a hook flash: RFC 4733's event number, and Asterisk's character
FLASH_SIGNALS = ("16", "!")


@dataclass(frozen=True, slots=True)
class HookFlash:
    """A hook flash from an INFO request (the far end's phone flashed its hook, or its
    gateway passed one on)."""


@dataclass(frozen=True, slots=True)
class InfoKey:
    """A key from an INFO request: ``digit`` held for ``duration_ms``."""

    digit: str
    duration_ms: int


class InfoRefused(Exception):
    """The INFO request cannot be taken: answer it with ``status``, the reason, and
    ``headers`` (what the RFCs ask such an answer to say we do take)."""

    def __init__(self, status: int, reason: str,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.headers = headers


def parse_dtmf_info(content_type: str | None, body: bytes, info_package: str | None = None,
                    content_encoding: str | None = None) -> InfoKey | HookFlash | None:
    """The key an INFO request carries, a :class:`HookFlash`, or None for one without a
    body (a keep-alive, answered 200). Raises :class:`InfoRefused` for what we cannot
    take: an Info Package (469 with an empty Recv-Info: we support none, RFC 6086 4.2.2),
    a body of another type or encoding (415 with Accept or Accept-Encoding, RFC 3261
    8.2.3), a malformed key (400)."""
    if info_package is not None:
        raise InfoRefused(469, f"Info Package {info_package.strip()!r} is not supported; "
                               "DTMF is taken as legacy INFO without an Info Package",
                          (("Recv-Info", ""),))
    if not body.strip():
        return None
    if content_encoding is not None and content_encoding.strip().lower() != "identity":
        raise InfoRefused(415, f"Content-Encoding {content_encoding.strip()[:40]!r} is not "
                               "taken", (("Accept-Encoding", "identity"),))
    kind = media_type(content_type)
    if kind not in DTMF_BODIES:
        raise InfoRefused(415, f"an INFO body of type {kind or 'none'!r} is not taken; "
                               f"expected one of {', '.join(DTMF_BODIES)}",
                          (("Accept", ", ".join(DTMF_BODIES)),))
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise InfoRefused(400, f"{kind} body is not ASCII text") from None
    if kind == "application/dtmf":
        if text.strip() in FLASH_SIGNALS:
            return HookFlash()
        return InfoKey(_key(text.strip(), kind), DEFAULT_DURATION_MS)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
        elif line.strip():
            raise InfoRefused(400, f"{kind} line {line.strip()[:40]!r} is not name=value")
    if "signal" not in fields:
        raise InfoRefused(400, f"{kind} body has no Signal= line")
    if fields["signal"] in FLASH_SIGNALS:
        return HookFlash()
    digit = _key(fields["signal"], kind)
    duration = fields.get("duration")
    if duration is None:
        return InfoKey(digit, DEFAULT_DURATION_MS)
    if not duration.isdigit():
        raise InfoRefused(400, f"{kind} Duration={duration[:20]!r}; expected milliseconds")
    # (a number of thousands of digits is no Duration, and int() would refuse it)
    held = int(duration) if len(duration) <= 6 else MAX_DURATION_MS
    return InfoKey(digit, min(max(held, MIN_DURATION_MS), MAX_DURATION_MS))


def _key(signal: str, kind: str) -> str:
    if len(signal) == 1 and signal.upper() in EVENT_DIGITS:
        return signal.upper()
    if signal.isdigit() and len(signal) <= 2 and int(signal) < len(EVENT_DIGITS):  # event no.
        return EVENT_DIGITS[int(signal)]
    raise InfoRefused(400, f"{kind} Signal={signal[:20]!r}; expected 0-9, *, #, A-D, an "
                           "event number 0-15, or 16 or ! for a hook flash")
