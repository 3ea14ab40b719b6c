"""``uascall ladder`` (issue 14, item 3): the calls of a trace drawn from the pcapng alone.

A sim PRI call with early media and a SIP call with a 183 are traced as in
tests/sim/test_trace.py; the ladder read back from the file shows every Q.931 and SIP
message of each call in order, numbered calls, and the ringback's 425 Hz between the
messages. The HTML page is loaded in a real headless browser (Debian's chromium): no
console error, every message in the rendered DOM, the level plot and the spectrogram there.
Malformed frames and datagrams and a damaged file are drawn as such, never a crash.
"""

from __future__ import annotations

import argparse
import html
import math
import re
import shutil
import subprocess

import numpy as np
import pytest

from tests.sim.helpers import T, start_world, with_tones
from tests.sim.sip_peer import SipPeer, Uas, answer_through, incoming
from uascall.channel import State
from uascall.cli import main
from uascall.dahdi import q931
from uascall.media import g711
from uascall.media.tones import reference_rms
from uascall.sip.rtp import RtpPacket
from uascall.trace import pcapng
from uascall.trace.ladder import read_calls
from uascall.trace.ladder_command import add_ladder_command
from uascall.trace.tracer import Tracer

EU = "RINGBACK_EU"  # 425 Hz, 1 s on / 4 s off


@pytest.fixture(scope="module")
def pri_trace(rig, tmp_path_factory):
    """A traced E1 call: ringing with the EU ringback in band for 1.5 s, answered, cleared."""
    path = tmp_path_factory.mktemp("pri") / "pri.pcapng"
    with rig.engine() as engine:
        tracer = Tracer(engine, str(path), audio=True).start()
        world = start_world(engine, rig, "E1")
        backend, channels = world.backend, world.channels
        try:
            engine.run(backend.far_end.dial, "5551000", calling="5552000")
            assert engine.wait_until(lambda: channels, T)
            channel = with_tones(channels[0])
            channel.ring(2, negotiate_early_media=True, custom_ringtone=EU,
                         loop_ringtone=True)
            engine.sleep(1.5)
            assert channel.answer() is State.ANSWERED
            engine.sleep(0.5)
            assert channel.hang_up() is State.IDLE
            engine.sleep(0.5)
        finally:
            engine.run(backend.stop)
            stats = tracer.stop()
    assert stats.dropped == 0 and not stats.failure
    return path


@pytest.fixture(scope="module")
def sip_trace(tmp_path_factory):
    """A traced SIP call: 183 with the ringback for a second, 200, ACK, RTP, BYE."""
    path = tmp_path_factory.mktemp("sip") / "sip.pcapng"
    uas = Uas()
    tracer = Tracer(uas.engine, str(path)).start()
    peer = SipPeer(uas.address)
    try:
        channel = incoming(uas, peer)
        channel.ring(negotiate_early_media=True, custom_ringtone=EU, loop_ringtone=True)
        peer.expect(183)
        peer.rtp_packets(1.0)
        answer_through(channel, peer)
        peer.send_rtp([RtpPacket(8, n, 160 * n, 0x1234, bytes(160)).serialize()
                       for n in range(25)], interval=0.02)
        peer.bye()
        peer.expect(200, method="BYE")
        assert channel.wait_for_idle(5) is State.IDLE
    finally:
        tracer.stop()
        peer.close()
        uas.close()
    return path


def run(*argv: str, capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="uascall")
    add_ladder_command(parser.add_subparsers())
    args = parser.parse_args(["ladder", *argv])
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


PRI_MESSAGES = [("<-", "SETUP B1, 5551000 <- 5552000"), ("->", "CALL PROCEEDING B1"),
                ("->", "ALERTING PI #8 in-band info now available"), ("->", "CONNECT B1"),
                ("<-", "CONNECT ACKNOWLEDGE B1"),
                ("->", "DISCONNECT cause 16 normal call clearing"),
                ("<-", "RELEASE cause 16 normal call clearing"),
                ("->", "RELEASE COMPLETE cause 16 normal call clearing")]
SIP_MESSAGES = [("<-", "INVITE with SDP"), ("->", "100 Trying"),
                ("->", "183 Session Progress with SDP"), ("->", "200 OK with SDP"),
                ("<-", "ACK"), ("<-", "BYE"), ("->", "200 OK (BYE)")]


def arrows(ladder: str) -> list[tuple[str, str]]:
    """(direction, label) of each arrow of a text ladder, in order."""
    found = []
    for line in ladder.splitlines():
        match = re.search(r"\|(<?)-+ (.+?) -+(>?)\|$", line)
        if match:
            found.append(("<-" if match.group(1) else "->", match.group(2)))
    return found


def notes(ladder: str) -> list[tuple[float, str]]:
    return [(float(m.group(1)), m.group(2))
            for m in re.finditer(r"^\s*([\d.]+)\s+\|\s+~ (.+?) ~\s+\|$", ladder, re.M)]


def test_pri_call_ladder_from_the_trace(pri_trace, capsys):
    code, out, err = run(str(pri_trace), capsys=capsys)
    assert code == 0 and err == ""
    assert out.startswith("call 1: Q.931, span 1, call reference 1, B1 "
                          "(5551000 <- 5552000)\n")
    assert arrows(out) == PRI_MESSAGES
    times = {label: float(line.split()[0]) for line in out.splitlines()
             for _d, label in arrows(line + "\n")}
    # the ringback in band: 425 Hz at its level, from the ALERTING for its 1 s cadence on,
    # over before the CONNECT; nothing else was on the line
    (_at, text), = notes(out)
    match = re.fullmatch(r"B1 out: 425 Hz (-\d+) dBm0, ([\d.]+)-([\d.]+) s", text)
    assert match, text
    level, start, end = int(match.group(1)), float(match.group(2)), float(match.group(3))
    alerting = times["ALERTING PI #8 in-band info now available"]
    assert -16 <= level <= -10
    # (a segment's times are printed to 10 ms, a message's to 1 ms: on the vm rig a
    # ringback read "1.05", its ALERTING "1.051")
    assert alerting - 0.005 <= start < alerting + 0.1 and abs(end - start - 1.0) < 0.05
    assert end < times["CONNECT B1"]
    assert "outside any call" not in out  # RESTARTs aside, nothing unattributed


def test_sip_call_ladder_with_its_rtp(sip_trace, capsys):
    code, out, _err = run(str(sip_trace), "--call", "1", capsys=capsys)
    assert code == 0
    assert out.startswith("call 1: SIP, Call-ID ")
    assert [a for a in arrows(out) if "(again)" not in a[1]] == SIP_MESSAGES
    texts = [text for _at, text in notes(out)]
    assert re.fullmatch(r"RTP out: 425 Hz -1\d dBm0, [\d.]+-[\d.]+ s", texts[0]), texts
    # the peer's 25 packets of A-law 0x00, which is not silence but a constant
    assert texts[1:] == [t for t in texts[1:] if t.startswith("RTP in: DC offset -")]
    assert len(texts) == 2


def test_q931_and_sip_in_one_view(pri_trace, sip_trace, tmp_path, capsys):
    """Two sections in one file (as ``cat a.pcapng b.pcapng`` makes): the calls of both,
    numbered by when they started, each with its own messages."""
    both = tmp_path / "both.pcapng"
    both.write_bytes(pri_trace.read_bytes() + sip_trace.read_bytes())
    calls = read_calls(str(both))
    assert [c.protocol for c in calls.calls] == ["Q.931", "SIP"]
    assert [e.at for e in calls.calls[0].events] == sorted(e.at for e in calls.calls[0].events)
    code, out, _err = run(str(both), "--call", "2", capsys=capsys)
    assert code == 0 and out.startswith("call 2: SIP") and "SETUP" not in out
    code, _out, err = run(str(both), "--call", "3", capsys=capsys)
    assert code == 2 and "--call 3: the trace has calls 1 to 2" in err


# --------------------------------------------------------------------------- malformed input
def malformed_trace() -> bytes:
    """A SETUP whose channel identification runs past the frame's end, a LAPD packet too
    short for its pseudo-header, a SIP INVITE with a bad Content-Length, a datagram that
    is neither SIP nor RTP, and a good SETUP between them; the last block cut short."""
    lapd = pcapng.Interface(pcapng.LINKTYPE_LINUX_LAPD, "span1-dchan")
    udp = pcapng.Interface(pcapng.LINKTYPE_RAW, "udp")
    t0 = 1_700_000_000_000_000
    broken_setup = bytes.fromhex("000103" "08010505" "181001")
    good_setup = bytes.fromhex("00010002" "08010205" "180183" "a1")  # SETUP cref 2, B1? no
    bad_sip = (b"INVITE sip:service@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070"
               b";branch=z9hG4bK-1\r\nFrom: <sip:peer@127.0.0.1>;tag=1\r\n"
               b"To: <sip:service@127.0.0.1>\r\nCall-ID: broken@127.0.0.1\r\n"
               b"CSeq: 1 INVITE\r\nContent-Length: abc\r\n\r\n")
    packets = [
        (0, pcapng.lapd_packet(broken_setup, sent=False, network=False)),
        (0, b"\x00\x04"),
        (0, pcapng.lapd_packet(good_setup, sent=False, network=False)),
        (1, pcapng.udp_packet(bad_sip, ("127.0.0.1", 5070), ("127.0.0.1", 5060))),
        (1, pcapng.udp_packet(b"\x01\x02 not a protocol", ("127.0.0.1", 9), ("127.0.0.1", 9))),
        (1, b"\x45\x00"),
    ]
    data = (pcapng.SectionHeader("test").serialize() + lapd.serialize() + udp.serialize()
            + b"".join(pcapng.EnhancedPacket(i, t0 + 10_000 * n, p).serialize()
                       for n, (i, p) in enumerate(packets)))
    return data + pcapng.EnhancedPacket(1, t0 + 99_000, b"cut").serialize()[:-6]


def test_malformed_frames_and_datagrams_are_drawn_as_such(tmp_path, capsys):
    path = tmp_path / "bad.pcapng"
    path.write_bytes(malformed_trace())
    code, out, err = run(str(path), capsys=capsys)
    assert code == 0, err
    assert out.startswith("warning: the trace is damaged and was read up to there: block at "
                          "byte ")
    calls, outside = out.split("\noutside any call\n")
    # the good SETUP after the broken one is a call, the damaged INVITE one too (its
    # Call-ID could be read: the 400 answering it would be in that call)
    assert "call 1: Q.931, span 1, call reference 2\n" in calls
    assert arrows(calls.split("call 1:")[1].split("call 2:")[0]) == [
        ("<-", "SETUP any channel")]
    assert "call 2: SIP, Call-ID broken@127.0.0.1\n" in calls
    assert [label for _d, label in arrows(calls.split("call 2:")[1])] == [
        "MALFORMED SIP: Content-Length 'abc': expected a non-negative number"]
    labels = [label for _d, label in arrows(outside)]
    assert len(labels) == 4
    assert labels[0].startswith("MALFORMED Q.931 on span 1: Q.931 message has truncated IE")
    assert labels[1].startswith("MALFORMED LAPD frame on span 1")
    assert any(label.startswith("MALFORMED datagram 127.0.0.1:9 -> 127.0.0.1:9")
               for label in labels)
    assert any(label.startswith("MALFORMED IP packet") for label in labels)


def test_not_a_trace(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("not a capture\n")
    code, out, err = run(str(path), capsys=capsys)
    assert code == 2 and out == "" and "not a pcapng trace uascall can read" in err
    code, _out, err = run(str(tmp_path / "missing.pcapng"), capsys=capsys)
    assert code == 2 and "cannot read the trace" in err
    good = tmp_path / "bad.pcapng"
    good.write_bytes(malformed_trace())
    code, out, err = run(str(good), "--html", str(tmp_path / "no" / "page.html"),
                         capsys=capsys)
    assert code == 2 and out == "" and "cannot write" in err and "No such file" in err


# --------------------------------------------------------------------------- the page in a browser
def browser(page, tmp_path) -> tuple[str, list[str]]:
    """The DOM of ``page`` as headless chromium rendered it, and the console's messages."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (apt-get install chromium)"
    # the virtual time budget: the DOM is taken once the page's load handlers have run
    result = subprocess.run(
        [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr",
         "--v=0", "--virtual-time-budget=5000",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout, [line for line in result.stderr.splitlines() if ":CONSOLE" in line]


def test_the_browser_check_sees_console_errors(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>missing();</script>"
                    "</body></html>")
    dom, console = browser(page, tmp_path)
    assert "<p>x</p>" in dom
    assert len(console) == 1 and "Uncaught ReferenceError: missing is not defined" in console[0]


def test_html_page_in_a_browser(pri_trace, sip_trace, tmp_path, capsys):
    both = tmp_path / "both.pcapng"
    both.write_bytes(pri_trace.read_bytes() + sip_trace.read_bytes())
    page = tmp_path / "ladder.html"
    code, out, _err = run(str(both), "--html", str(page), capsys=capsys)
    assert code == 0 and "call 2: SIP" in out
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched
    dom, console = browser(page, tmp_path)
    assert console == []
    assert 'data-rendered="yes"' in dom  # the script ran to its end
    # B1 out and in, RTP out and in: each PNG decoded by the browser
    assert 'data-spectrograms="4 of 4"' in dom
    calls = dom.split('<section class="call" id="call')[1:]
    assert len(calls) == 2
    for section, messages in zip(calls, (PRI_MESSAGES, SIP_MESSAGES), strict=True):
        # each message's arrow (uascall's lifeline is the left one) and label
        drawn = re.findall(r'<g class="msg"[^>]*>.*?<line x1="(\d+)"[^>]*x2="(\d+)".*?'
                           r'<text[^>]*>(.*?)</text>', section, re.S)
        assert [("->" if int(x1) < int(x2) else "<-", html.unescape(label))
                for x1, x2, label in drawn if "(again)" not in label] == messages
        assert '<svg class="plot level"' in section and "<polyline" in section
        assert 'alt="spectrogram of ' in section
    assert "B1 out: 425 Hz" in calls[0] and "RTP out: 425 Hz" in calls[1]
    assert 'alt="spectrogram of B1 out"' in calls[0] and 'alt="spectrogram of B1 in"' in calls[0]


def test_html_page_of_a_malformed_trace(tmp_path, capsys):
    path = tmp_path / "bad.pcapng"
    path.write_bytes(malformed_trace())
    page = tmp_path / "bad.html"
    code, _out, _err = run(str(path), "--html", str(page), capsys=capsys)
    assert code == 0
    dom, console = browser(page, tmp_path)
    assert console == [] and 'data-rendered="yes"' in dom
    assert dom.count('<g class="msg malformed"') == 5
    assert "warning: the trace is damaged" in dom


# --------------------------------------------------------------------------- the audio analysis
def q931_frame(n_s: int, message_type: q931.MessageType, flag: bool, *ies) -> bytes:
    message = q931.Message(message_type, 7, flag, tuple(ie.to_ie() for ie in ies))
    return q931.LapdFrame(q931.FrameKind.I, n_s=n_s, n_r=0, info=message.serialize()
                          ).serialize()


def test_in_band_segments_tones_keys_and_sound(tmp_path, capsys):
    """What was on B3 of span 2, sent both ways and placed by the RTP timestamps: the
    ringback (425 Hz at -13 dBm0) then, after the answer, a prompt (noise at -20 dBm0)
    that stops when the caller's key 5 comes in; a gap in the packets is silence."""
    law = "alaw"
    peak = reference_rms(law) * math.sqrt(2)
    t = np.arange(8000) / 8000

    def tone(seconds: float, level: float, *hz: int) -> np.ndarray:
        n = int(seconds * 8000)
        share = peak * 10 ** (level / 20) / math.sqrt(len(hz))
        return sum(share * np.sin(2 * np.pi * f * t[:n]) for f in hz)

    rng = np.random.default_rng(14)
    out = np.concatenate([tone(1.0, -13, 425), np.zeros(2400),
                          rng.normal(0, reference_rms(law) * 10 ** (-20 / 20), 2400)])
    into = np.concatenate([np.zeros(12800), tone(0.1, -8, 770, 1336), np.zeros(800)])
    codec = g711.codec(law)
    t0 = 1_700_000_000_000_000
    packets = [(0, t0, pcapng.lapd_packet(q931_frame(
        0, q931.MessageType.SETUP, False, q931.ChannelIdentification(channels=(3,))),
        sent=False, network=False))]
    packets.append((0, t0 + 1_300_000, pcapng.lapd_packet(q931_frame(
        0, q931.MessageType.CONNECT, True), sent=True, network=False)))
    for sent, samples, (src, dst) in ((True, out, ("198.19.2.3", "198.18.2.3")),
                                      (False, into, ("198.18.2.3", "198.19.2.3"))):
        for n in range(len(samples) // 160):
            if sent and 60 <= n < 65:
                continue  # 100 ms lost in the silence: the timestamp places what follows
            payload = codec.encode([int(s) for s in samples[160 * n:160 * n + 160]])
            rtp = RtpPacket(8, n, 160 * n, 0x55430000 + sent, payload).serialize()
            packets.append((1, t0 + 20_000 * n + 10_000, pcapng.udp_packet(
                rtp, (src, 10000), (dst, 10000))))
    lapd = pcapng.Interface(pcapng.LINKTYPE_LINUX_LAPD, "span2-dchan")
    audio = pcapng.Interface(pcapng.LINKTYPE_RAW, "bchan-audio")
    path = tmp_path / "b3.pcapng"
    path.write_bytes(pcapng.SectionHeader().serialize() + lapd.serialize() + audio.serialize()
                     + b"".join(pcapng.EnhancedPacket(i, at, p).serialize()
                                for i, at, p in packets))
    code, text, _err = run(str(path), capsys=capsys)
    assert code == 0
    assert text.startswith("call 1: Q.931, span 2, call reference 7, B3\n")
    assert "outside any call" not in text  # both streams found their call by span and B3
    found = [(f"{at:.2f}", note) for at, note in notes(text)]
    assert found[0][1].startswith("B3 out: 425 Hz -13 dBm0, 0.01-1.01 s")
    assert found[1:] == [("1.31", "B3 out: sound -20 dBm0, 1.31-1.61 s"),
                         ("1.61", "B3 in: DTMF 5 -8 dBm0, 1.61-1.71 s")], found


def test_the_demo_traced_and_drawn_by_the_command(tmp_path, capsys):
    """``uascall demo --trace`` then ``uascall ladder``: the prompt (speech, its pauses
    within one stretch of sound), the ringback, the answer and the goodbye, as the
    demo's own ladder had them."""
    trace, page = tmp_path / "demo.pcapng", tmp_path / "demo.html"
    assert main(["demo", "--virtual", "--wav", str(tmp_path / "caller.wav"), "--trace",
                 str(trace), "--trace-audio"]) == 0
    capsys.readouterr()
    assert main(["ladder", str(trace), "--html", str(page)]) == 0
    out = capsys.readouterr().out
    rows = [label for line in out.splitlines()  # in the ladder's (time) order
            for label in [*(t for _a, t in notes(line)), *(a for _d, a in arrows(line))]]
    kinds = [label.split(",")[0].split(" -")[0] for label in rows]
    assert kinds == ["SETUP B1", "CALL PROCEEDING B1", "ALERTING PI #8 in-band info now "
                     "available", "B1 out: sound", "B1 out: 425 Hz", "CONNECT B1",
                     "CONNECT ACKNOWLEDGE B1", "B1 out: sound", "DISCONNECT cause 16 normal "
                     "call clearing", "RELEASE cause 16 normal call clearing",
                     "RELEASE COMPLETE cause 16 normal call clearing"], out
    dom, console = browser(page, tmp_path)
    assert console == [] and 'data-spectrograms="2 of 2"' in dom  # B1 out and in
