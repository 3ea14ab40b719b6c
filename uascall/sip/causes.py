"""Between the channel's :class:`~uascall.backend.Cause` and SIP status codes.

Based on RFC 3398's ISUP/SIP mapping, with our own choices where a Cause has no single
status: REJECTED is 603 Decline (RFC 3398 says 403 for Q.850 21, but we keep 403 for
BARRED so the two stay apart), NOCHANNELS and CONGESTION are both 503, told apart by a
``Reason: Q.850;cause=34`` or ``42`` header (RFC 3326), which is also read first on the
way in.
"""

from __future__ import annotations

from uascall.backend import Cause

#: the final response reject()/release() sends for a Cause
CAUSE_TO_STATUS: dict[Cause, int] = {
    Cause.BUSY: 486, Cause.NOANSWER: 480, Cause.UNOBTAINABLE: 404, Cause.CHANGED: 410,
    Cause.OUTOFORDER: 502, Cause.BARRED: 403, Cause.REJECTED: 603, Cause.NOCHANNELS: 503,
    Cause.CONGESTION: 503, Cause.NORMAL: 480, Cause.FAILED: 500, Cause.ERROR: 500,
    Cause.TIMEOUT: 408, Cause.OTHER: 500,
}
#: the Q.850 cause carried in a Reason header beside that response
CAUSE_TO_Q850: dict[Cause, int] = {
    Cause.BUSY: 17, Cause.NOANSWER: 19, Cause.UNOBTAINABLE: 1, Cause.CHANGED: 22,
    Cause.OUTOFORDER: 27, Cause.BARRED: 55, Cause.REJECTED: 21, Cause.NOCHANNELS: 34,
    Cause.CONGESTION: 42, Cause.NORMAL: 16, Cause.FAILED: 41, Cause.ERROR: 41,
    Cause.TIMEOUT: 102, Cause.OTHER: 31,
}
STATUS_TO_CAUSE: dict[int, Cause] = {
    404: Cause.UNOBTAINABLE, 484: Cause.UNOBTAINABLE, 604: Cause.UNOBTAINABLE,
    485: Cause.UNOBTAINABLE, 416: Cause.UNOBTAINABLE, 410: Cause.CHANGED,
    486: Cause.BUSY, 600: Cause.BUSY, 480: Cause.NOANSWER, 408: Cause.NOANSWER,
    403: Cause.BARRED, 603: Cause.REJECTED, 502: Cause.OUTOFORDER,
    503: Cause.NOCHANNELS, 487: Cause.NORMAL, 504: Cause.TIMEOUT, 500: Cause.FAILED,
}
Q850_TO_CAUSE: dict[int, Cause] = {
    16: Cause.NORMAL, 17: Cause.BUSY, 18: Cause.NOANSWER, 19: Cause.NOANSWER,
    1: Cause.UNOBTAINABLE, 3: Cause.UNOBTAINABLE, 22: Cause.CHANGED, 27: Cause.OUTOFORDER,
    38: Cause.OUTOFORDER, 21: Cause.REJECTED, 53: Cause.BARRED, 55: Cause.BARRED,
    34: Cause.NOCHANNELS, 44: Cause.NOCHANNELS, 42: Cause.CONGESTION, 41: Cause.FAILED,
    102: Cause.TIMEOUT,
}


def reason_header(cause: Cause) -> str:
    return f"Q.850;cause={CAUSE_TO_Q850[cause]}"


def q850_from_reason(value: str | None) -> int | None:
    """The cause number of a ``Reason: Q.850;cause=N`` header, or None."""
    if not value:
        return None
    protocol, _, params = value.partition(";")
    if protocol.strip().upper() != "Q.850":
        return None
    for param in params.split(";"):
        name, _, number = param.partition("=")
        if name.strip().lower() == "cause" and number.strip().isdigit():
            return int(number.strip())
    return None


def cause_of_status(status: int, reason: str | None = None) -> Cause:
    """The Cause a final failure response stands for (a Q.850 Reason wins)."""
    q850 = q850_from_reason(reason)
    if q850 is not None and q850 in Q850_TO_CAUSE:
        return Q850_TO_CAUSE[q850]
    if status in STATUS_TO_CAUSE:
        return STATUS_TO_CAUSE[status]
    if 600 <= status < 700:
        return Cause.REJECTED
    return Cause.OTHER


def sendable_status(raw_cause: str) -> int | None:
    """A reject() raw cause as a SIP final failure status, or None when it is not one we
    can send: redirections (3xx) are not supported, as in UAS, and neither are 1xx/2xx."""
    text = str(raw_cause).strip()
    if not text.isdigit():
        return None
    status = int(text)
    return status if 400 <= status <= 699 else None
