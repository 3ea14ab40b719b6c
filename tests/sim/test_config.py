"""system.conf parsing and PRI span layouts."""

from __future__ import annotations

import pytest

from uascall.dahdi.config import ConfigError, SpanLayout, SystemConf, parse_channel_list

TWO_SPANS = """
# an E1 and a T1 card, plus a dynamic span
span=1,1,0,ccs,hdb3,crc4
span=2,0,0,esf,b8zs
dynamic=loc,1:0,24,0
bchan=1-15,17-31
dchan=16
bchan = 32-54
dchan=55
fxoks=56-79
mulaw=1-15,17-31
loadzone = nl
defaultzone=nl
"""


def test_channel_lists():
    assert parse_channel_list("1-3, 7,9-10") == [1, 2, 3, 7, 9, 10]
    with pytest.raises(ConfigError, match="not a channel or a range"):
        parse_channel_list("1-x")
    with pytest.raises(ConfigError, match="empty"):
        parse_channel_list("5-3")


def test_pri_spans_follow_span_order_and_sizes():
    conf = SystemConf.parse(TWO_SPANS)
    assert conf.span_ranges() == [(1, 1, 31, "E1"), (2, 32, 24, "T1"), (3, 56, 24, "DYNAMIC")]
    e1, t1 = conf.pri_spans()
    assert e1 == SpanLayout(1, 16, tuple([*range(1, 16), *range(17, 32)]), "E1", "ulaw")
    assert t1.dchannel == 55 and t1.bchannels == tuple(range(32, 55)) and t1.law == "ulaw"
    assert conf.zones == ("nl",) and conf.default_zone == "nl"
    assert conf.signalling[56] == "fxoks"
    with pytest.raises(ConfigError, match="span 3 has no dchan"):
        conf.pri_span(3)


def test_errors_point_at_the_line():
    with pytest.raises(ConfigError, match=r"system.conf:2: .*framing 'xyz'"):
        SystemConf.parse("\nspan=1,0,0,xyz,hdb3\n")
    with pytest.raises(ConfigError, match=r":3: channel 5 is configured twice"):
        SystemConf.parse("bchan=1-10\n\ndchan=5\n")
    with pytest.raises(ConfigError, match="no '='"):
        SystemConf.parse("bchan 1-10\n")


def test_layout_given_in_code_is_checked():
    with pytest.raises(ConfigError, match="both the D-channel and a B-channel"):
        SpanLayout(1, 16, (15, 16))
    with pytest.raises(ConfigError, match="expected 'alaw' or 'ulaw'"):
        SpanLayout(1, 16, (1, 2), law="g729")
