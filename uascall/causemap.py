"""Q.850 causes and SIP status codes, each way, for gateways (RFC 3398, RFC 3326).

A call that crosses from ISDN to SIP (or back) ends on one side with that side's cause and
is cleared on the other with the nearest equivalent. :func:`q850_for_sip` follows RFC 3398
section 8.2.6.1 (a SIP final response to the ISUP cause a gateway sends), and
:func:`sip_for_q850` its section 7.2.4.1 (an ISUP cause to the SIP status). A ``Reason:
Q.850;cause=N`` header (RFC 3326) on the SIP side names the cause exactly and wins.
"""

from __future__ import annotations

from uascall.errors import ArgumentError

#: RFC 3398 8.2.6.1: SIP final response -> Q.850 cause
SIP_TO_Q850: dict[int, int] = {
    400: 41, 401: 21, 402: 21, 403: 21, 404: 1, 405: 63, 406: 79, 407: 21, 408: 102,
    410: 22, 413: 127, 414: 127, 415: 79, 416: 127, 420: 127, 480: 18, 481: 41,
    482: 25, 483: 25, 484: 28, 485: 1, 486: 17, 487: 127, 488: 127, 500: 41, 501: 79,
    502: 38, 503: 41, 504: 102, 505: 127, 513: 127, 600: 17, 603: 21, 604: 1, 606: 58,
}
#: RFC 3398 7.2.4.1: Q.850 cause -> SIP final response (causes not listed: by class)
Q850_TO_SIP: dict[int, int] = {
    1: 404, 2: 404, 3: 404, 4: 500, 5: 404, 17: 486, 18: 408, 19: 480, 20: 480, 21: 403,
    22: 410, 23: 410, 26: 404, 27: 502, 28: 484, 29: 501, 31: 480, 34: 503, 38: 503,
    41: 503, 42: 503, 47: 503, 55: 403, 57: 403, 58: 503, 65: 488, 69: 501, 70: 488,
    79: 501, 87: 403, 88: 503, 102: 504, 111: 500, 127: 500,
}


def q850_for_sip(status: int | str, reason: str | None = None) -> int:
    """The Q.850 cause to clear an ISDN call with when its SIP side ended with ``status``
    (a final response, e.g. 486; a 2xx, or a BYE, is normal clearing, 16). A ``Reason:
    Q.850;cause=N`` header wins. A status RFC 3398 does not list is 127 (interworking,
    unspecified)."""
    from uascall.sip.causes import q850_from_reason  # the Reason header parser

    q850 = q850_from_reason(reason)
    if q850 is not None and 1 <= q850 <= 127:
        return q850
    code = _status(status)
    if code < 300:
        return 16
    return SIP_TO_Q850.get(code, 127)


def sip_for_q850(cause: int | str) -> int:
    """The SIP final response to refuse a call with when its ISDN side ended with Q.850
    ``cause`` (16, normal clearing, before an answer is 480: nobody answered)."""
    try:
        number = int(str(cause).strip())
    except ValueError:
        raise ArgumentError(f"Q.850 cause {cause!r}; expected a number 1..127") from None
    if not 1 <= number <= 127:
        raise ArgumentError(f"Q.850 cause {number}; expected 1..127")
    if number in Q850_TO_SIP:
        return Q850_TO_SIP[number]
    if number == 16:
        return 480
    # the rest by the cause's class (Q.850 section 2.2.5): normal events, resource
    # unavailable, service not available, not implemented, invalid message / protocol
    if number < 32:
        return 480
    if number < 64:
        return 503
    if number < 80:
        return 501
    return 400 if number < 112 else 500


def _status(status: int | str) -> int:
    try:
        code = int(str(status).strip())
    except ValueError:
        raise ArgumentError(f"SIP status {status!r}; expected a number 100..699") from None
    if not 100 <= code <= 699:
        raise ArgumentError(f"SIP status {code}; expected 100..699")
    return code
