"""Self-tests of the interop harness, against SIPp's own stand-in UAS scenarios.

They check the harness independently of uascall: each SIPp client scenario runs against
a SIPp server scenario, tshark counts RTP that a test sends itself, and baresip dials
SIPp. test_uascall_sip.py aims the same ``run_sipp``/``run_baresip`` calls at uascall.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.interop import peers

StartUas = Callable[..., peers.SippServer]

EARLY_MEDIA_VARS = {"hold_ms": 300, "ack_delay_ms": 0}


def firsts(result: peers.SippResult) -> list[str]:
    """The trace as "S INVITE" / "R 183 INVITE" ... (direction, method or status + CSeq
    method), for readable assertions."""
    out = []
    for msg in result.messages():
        what = f"{msg.status} {msg.method}" if msg.status else msg.method
        out.append(f"{msg.direction} {what}")
    return out


def ringback_file(workdir: Path, *, on_s: float = 1.0, off_s: float = 1.0) -> Path:
    """425 Hz, on/off cadence, as headerless A-law for SIPp's rtp_stream."""
    wav = peers.write_tone_wav(workdir / "ringback.wav", freq=425, duration_s=on_s + off_s,
                               on_s=on_s, off_s=off_s)
    return peers.wav_to_alaw(wav, workdir / "ringback.al")


# ------------------------------------------------------------------ SIPp against SIPp


def test_early_media_then_answer_with_rtp_echo(start_uas: StartUas, workdir: Path) -> None:
    """uac_early_media.xml: 183 + SDP, 200 + SDP, ACK, BYE; the stand-in streams a
    ringback during early media and SIPp (-rtp_echo) sends every packet back."""
    uas = start_uas("uas_183_ringback.xml", answer_ms=1000,
                    copy_files=(ringback_file(workdir),))
    media_port = peers.free_media_port()
    with peers.capture_rtp(media_port, workdir=workdir) as capture:
        result = peers.run_sipp("uac_early_media.xml", uas.target, media_port=media_port,
                                extra_vars=EARLY_MEDIA_VARS, cwd=workdir)
    assert result.ok, result.describe()
    assert (result.successful, result.failed) == (1, 0), result.describe()
    assert firsts(result) == ["S INVITE", "R 100 INVITE", "R 183 INVITE", "R 200 INVITE",
                              "S ACK", "S BYE", "R 200 BYE"], result.describe()
    logs = "\n".join(result.log_lines())
    assert "183 ct=application/sdp pt=8" in logs, logs
    assert "200 ct=application/sdp pt=8" in logs, logs
    assert "200 for BYE (CSeq 2 BYE)" in logs, logs

    to_sipp = peers.rtp_stats(capture.pcap, media_port, direction="to")
    echoed = peers.rtp_stats(capture.pcap, media_port, direction="from")
    assert len(to_sipp) == 1 and len(echoed) == 1, (to_sipp, echoed)
    ring, echo = to_sipp[0], echoed[0]
    assert ring.payload_type == 8 and ring.payload_bytes == 160, ring
    assert 40 <= ring.packets <= 60, ring  # 1 s of early media at 20 ms
    assert ring.lost == 0 and 18 <= ring.mean_delta_ms <= 22, ring
    # The echo is the same stream back to its sender, packet for packet.
    assert (echo.ssrc, echo.packets, echo.dst) == (ring.ssrc, ring.packets, ring.src), echo
    table = peers.tshark_rtp_streams(capture.pcap, media_port)
    assert sorted(int(row["packets"]) for row in table) == [ring.packets] * 2, table

    server = uas.stop()
    assert server.successful == 1, server.describe()


def test_cancel_during_early_media(start_uas: StartUas, workdir: Path) -> None:
    """uac_early_media_cancel.xml against a UAS that would answer only after 5 s."""
    uas = start_uas("uas_183.xml", answer_ms=5000)
    result = peers.run_sipp("uac_early_media_cancel.xml", uas.target,
                            extra_vars={"cancel_ms": 500}, cwd=workdir)
    assert result.ok, result.describe()
    trace = firsts(result)
    assert trace[:4] == ["S INVITE", "R 100 INVITE", "R 183 INVITE", "S CANCEL"], trace
    assert sorted(trace[4:6]) == ["R 200 CANCEL", "R 487 INVITE"], trace
    assert trace[-1] == "S ACK", trace
    logs = "\n".join(result.log_lines())
    assert "487 for INVITE (CSeq 1 INVITE) To: <sip:" in logs and ";tag=" in logs, logs
    # The CANCEL and the ACK reuse the INVITE's branch.
    sent = (result.message_log.read_text() if result.message_log else "")
    branches = {line.split("branch=")[1].split(";")[0] for line in sent.splitlines()
                if line.startswith("Via:") and "127.0.0.1:" in line and "branch=" in line}
    assert len(branches) == 1, branches
    server = uas.stop()
    assert server.successful == 1, server.describe()


def test_caller_bye(sipp_uas: peers.SippServer, workdir: Path) -> None:
    result = peers.run_sipp("uac_caller_bye.xml", sipp_uas.target,
                            extra_vars={"hold_ms": 200}, cwd=workdir)
    assert result.ok, result.describe()
    assert firsts(result)[-2:] == ["S BYE", "R 200 BYE"], firsts(result)


def test_lost_ack_counts_200_retransmissions(sipp_uas: peers.SippServer, workdir: Path
                                             ) -> None:
    """With the ACK held back 1.8 s the UAS resends its 200 at T1 and 2*T1 later."""
    result = peers.run_sipp("uac_lost_ack.xml", sipp_uas.target,
                            extra_vars={"ack_delay_ms": 1800, "hold_ms": 100}, cwd=workdir)
    assert result.ok, result.describe()
    assert result.recv_retrans("200") == 2, result.describe()
    # The same from the message trace: three 200s (INVITE) before the ACK ...
    msgs = result.messages()
    ack_at = next(i for i, m in enumerate(msgs) if m.direction == "S" and m.method == "ACK")
    oks = [m.time for m in msgs[:ack_at] if m.status == 200 and m.method == "INVITE"]
    assert len(oks) == 3, firsts(result)
    # ... spaced T1 (0.5 s) then 2*T1 (1 s).
    gaps = [b - a for a, b in itertools.pairwise(oks)]
    assert gaps == pytest.approx([0.5, 1.0], abs=0.1), gaps
    # ... and none after it.
    assert not [m for m in msgs[ack_at:] if m.status == 200 and m.method == "INVITE"]


def test_callee_bye(start_uas: StartUas, workdir: Path) -> None:
    uas = start_uas("uas_183_hangup.xml", answer_ms=200, hold_ms=300)
    result = peers.run_sipp("uac_callee_bye.xml", uas.target, cwd=workdir)
    assert result.ok, result.describe()
    assert firsts(result)[-2:] == ["R BYE", "S 200 BYE"], firsts(result)
    assert any("BYE from the UAS" in line for line in result.log_lines())


def test_options(start_uas: StartUas, workdir: Path) -> None:
    uas = start_uas("uas_options.xml")
    result = peers.run_sipp("uac_options.xml", uas.target, rtp_echo=False, cwd=workdir)
    assert result.ok, result.describe()
    assert "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS" in "\n".join(result.log_lines())


def test_packet_loss(start_uas: StartUas, workdir: Path) -> None:
    """-lost 10: most calls pass; the failures are lost 183s (unrecoverable without
    PRACK: the 200 then comes while SIPp still waits for the 183)."""
    uas = start_uas("uas_183.xml", answer_ms=100, linger_ms=4000)
    calls = 30
    result = peers.run_sipp("uac_early_media_lossy.xml", uas.target, calls=calls, rate=30,
                            lost_percent=10, extra_vars={"hold_ms": 100}, timeout=40,
                            cwd=workdir)
    assert result.successful + result.failed == calls, result.describe()
    assert result.successful >= calls * 0.7, result.describe()
    assert result.retransmissions > 0, result.describe()  # SIPp recovered some losses
    for waiting_for, got in result.unexpected():
        # Waiting for an optional 100/180 or the 183 itself, the 200 arrived: the 183
        # was lost.
        assert waiting_for in ("100", "180", "183") and got == "SIP/2.0 200 OK", \
            result.describe()


def test_failure_is_described(start_uas: StartUas, workdir: Path) -> None:
    """A UAS that answers at once breaks the CANCEL scenario: the 200 comes during the
    pause. The result says so, with the error log."""
    uas = start_uas("uas_183.xml", answer_ms=0)
    result = peers.run_sipp("uac_early_media_cancel.xml", uas.target,
                            extra_vars={"cancel_ms": 500}, cwd=workdir)
    assert not result.ok and result.returncode == 1
    assert (result.successful, result.failed) == (0, 1)
    assert result.failure_counts == {"FailedUnexpectedMessage": 1}, result.failure_counts
    assert result.unexpected() == [("pausing", "SIP/2.0 200 OK")], result.errors()
    text = result.describe()
    assert "exit 1 (at least one call failed)" in text
    assert "unexpected message" in text and "SIP/2.0 200 OK" in text, text


def test_missing_variable_is_refused(workdir: Path) -> None:
    with pytest.raises(ValueError, match="hold_ms"):
        peers.run_sipp("uac_early_media.xml", "127.0.0.1:9", extra_vars={"ack_delay_ms": 0},
                       cwd=workdir)
    assert peers.scenario_variables("uac_early_media.xml") == ["hold_ms", "ack_delay_ms"]


# ------------------------------------------------------------------ tshark, audio


def test_capture_counts_rtp_sent_by_python(workdir: Path) -> None:
    port = peers.free_media_port()
    with peers.capture_rtp(port, workdir=workdir) as capture:
        source = peers.send_rtp((peers.LOCALHOST, port), packets=50, payload_type=8)
    streams = capture.stats()
    assert len(streams) == 1, streams
    stream = streams[0]
    assert stream.src == f"127.0.0.1:{source}" and stream.dst == f"127.0.0.1:{port}"
    assert (stream.packets, stream.payload_type, stream.lost) == (50, 8, 0), stream
    assert abs(stream.mean_delta_ms - 20) < 1.0, stream
    assert stream.max_jitter_ms < 5, stream
    assert stream.ssrc_hex == "0x5a5a0001" and stream.markers == 1
    (row,) = peers.tshark_rtp_streams(capture.pcap, port)
    assert (row["packets"], row["payload"], row["lost"]) == ("50", "g711A", "0"), row


def test_tone_analysis_of_a_generated_ringtone(workdir: Path) -> None:
    """425 Hz, 1 s on / 4 s off, after 0.5 s of silence, 12 s."""
    wav = peers.write_tone_wav(workdir / "ring.wav", freq=425, duration_s=12, on_s=1.0,
                               off_s=4.0, lead_silence_s=0.5)
    stats = peers.tone_analysis(wav)
    assert stats.duration_s == pytest.approx(12.0)
    assert stats.dominant_hz == pytest.approx(425, abs=1)
    assert stats.purity > 0.99
    edges = [t for segment in stats.segments for t in segment]
    assert edges == pytest.approx([0.5, 1.5, 5.5, 6.5, 10.5, 11.5], abs=0.03), stats
    assert stats.on_durations == pytest.approx([1.0] * 3, abs=0.03)
    assert stats.off_durations == pytest.approx([4.0] * 2, abs=0.03)
    assert stats.voiced_rms == pytest.approx(0.5 / 2 ** 0.5, rel=0.02)
    # sox agrees on the length and (roughly) the frequency.
    sox = peers.sox_stat(wav)
    assert float(sox["Length (seconds)"]) == pytest.approx(12.0)
    assert abs(int(sox["Rough frequency"]) - 425) < 15, sox

    silent = peers.tone_analysis(peers.write_silence_wav(workdir / "silence.wav", 1.0))
    assert (silent.segments, silent.dominant_hz, silent.rms) == ([], 0.0, 0.0)


# ------------------------------------------------------------------ baresip


def test_baresip_hears_early_media_then_answer(start_uas: StartUas, workdir: Path) -> None:
    """baresip dials the ringback stand-in: 183 + SDP, 2.5 s of 425 Hz ringback at 1 s
    on / 1 s off (recorded), the 200, and baresip's BYE at 4 s."""
    uas = start_uas("uas_183_ringback.xml", answer_ms=2500,
                    copy_files=(ringback_file(workdir),))
    result = peers.run_baresip(uas.uri("early"), seconds=4, workdir=workdir)
    assert result.returncode == 0, result.describe()
    assert [code for code, _, _ in result.progress] == [100, 183], result.describe()
    assert result.early_media and result.established, result.describe()
    assert result.decoder.startswith("PCMA"), result.describe()
    assert "terminated" in result.closed_reason, result.describe()
    assert result.dec_wav is not None, result.describe()

    tone = peers.tone_analysis(result.dec_wav)
    assert tone.dominant_hz == pytest.approx(425, abs=3), tone
    assert tone.purity > 0.9, tone
    # Early media only (the stand-in stops its stream at the 200): on 0-1 s, off 1-2 s,
    # on again from 2 s until the answer at ~2.5 s.
    assert len(tone.segments) == 2, tone
    assert tone.on_durations[0] == pytest.approx(1.0, abs=0.1), tone
    assert tone.off_durations == pytest.approx([1.0], abs=0.1), tone
    assert 2.2 <= tone.duration_s <= 2.8, tone

    server = uas.stop()
    methods = [m.method for m in server.messages() if m.direction == "R"]
    assert methods == ["INVITE", "ACK", "BYE"], server.describe()


def test_baresip_cancels_during_early_media(start_uas: StartUas, workdir: Path) -> None:
    """baresip gives up (-t 2) before the UAS answers (10 s): CANCEL, 200, 487, ACK."""
    uas = start_uas("uas_183.xml", answer_ms=10000)
    result = peers.run_baresip(uas.uri("early"), seconds=2, workdir=workdir)
    assert result.early_media and not result.established, result.describe()
    assert result.cancelled and result.closed_reason == "", result.describe()
    server = uas.stop()
    trace = [f"{m.direction} {m.status or ''} {m.method}".replace("  ", " ")
             for m in server.messages()]
    assert trace == ["R INVITE", "S 100 INVITE", "S 183 INVITE", "R CANCEL",
                     "S 200 CANCEL", "S 487 INVITE", "R ACK"], server.describe()
    assert server.successful == 1, server.describe()
