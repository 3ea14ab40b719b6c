"""Q.850 <-> SIP status for gateways (RFC 3398, RFC 3326)."""

from __future__ import annotations

import pytest

from uascall.causemap import q850_for_sip, sip_for_q850
from uascall.errors import ArgumentError


@pytest.mark.parametrize("status, q850", [
    (486, 17), (600, 17), (404, 1), (604, 1), (480, 18), (408, 102), (410, 22),
    (484, 28), (502, 38), (503, 41), (603, 21), (403, 21), (500, 41), ("486", 17),
    (200, 16), (599, 127), (499, 127)])
def test_a_sip_final_response_gives_the_q850_cause_rfc_3398_lists(status, q850):
    assert q850_for_sip(status) == q850


def test_a_q850_reason_header_names_the_cause_exactly():
    assert q850_for_sip(503, "Q.850;cause=34;text=\"No circuit\"") == 34
    assert q850_for_sip(503, "SIP;cause=503") == 41  # not a Q.850 reason: the status


@pytest.mark.parametrize("q850, status", [
    (17, 486), (1, 404), (18, 408), (19, 480), (21, 403), (22, 410), (27, 502), (28, 484),
    (34, 503), (38, 503), (42, 503), (102, 504), (16, 480), (31, 480), (44, 503),
    (63, 503), (66, 501), (100, 400), (127, 500), ("17", 486)])
def test_a_q850_cause_gives_the_sip_status(q850, status):
    assert sip_for_q850(q850) == status


@pytest.mark.parametrize("bad", ["busy", 0, 128, "", None])
def test_what_is_not_a_cause_is_refused(bad):
    with pytest.raises(ArgumentError, match=r"Q\.850 cause"):
        sip_for_q850(bad)


@pytest.mark.parametrize("bad", ["busy", 99, 700, ""])
def test_what_is_not_a_status_is_refused(bad):
    with pytest.raises(ArgumentError, match="SIP status"):
        q850_for_sip(bad)
