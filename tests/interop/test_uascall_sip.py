"""uascall's SIP backend against real peers: SIPp and baresip call our application.

The server is the real thing: the ``sip`` backend on an engine with an :class:`AppHost`
running ``apps/scripted.py`` (its parameters choose how it rings, answers and hangs up),
in this process so that the tests can also check that every call left nothing behind.
One test runs the shipped example through ``uascall run`` as a user would. RTP is
counted on the wire by tshark, independently of both ends; SIPp echoes what it gets
(``-rtp_echo``), so the application's RTP-inactivity timer sees a live far end.
Default RFC 3261 timers (T1 = 500 ms) throughout, as a deployment has them.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.interop import peers
from tests.sim.sip_peer import held_by
from uascall.app import AppHost, Application
from uascall.backend import open_backend
from uascall.engine import Engine
from uascall.media import g711
from uascall.media.dtmf import dtmf_samples
from uascall.sip.rtp import RtpSender

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCRIPTED = HERE / "apps" / "scripted.py"

# apps/scripted.py's return codes
WE_HUNG_UP, CALLER_HUNG_UP, CANCELLED_WHILE_RINGING = 0, 1, 2


class Service:
    """``apps/scripted.py`` served over SIP on a free loopback port, in this process."""

    def __init__(self, params: str, **options: object) -> None:
        self.engine = Engine().start()
        options.setdefault("listen", "127.0.0.1:0")
        try:
            self.backend = open_backend("sip", self.engine, **options)
            self.host = AppHost(self.engine, self.backend, Application.load(SCRIPTED),
                                application_parameters=params)
            self.engine.run(self.host.start)
        except BaseException:
            self.engine.stop()
            raise

    @property
    def target(self) -> str:
        host, port = self.backend.addresses[0]
        return f"{host}:{port}"

    def uri(self, user: str = "service") -> str:
        return f"sip:{user}@{self.target}"

    def records(self, count: int, timeout: float = 10.0) -> list:
        """The call records once ``count`` applications have finished (or what there is
        after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while len(self.host.results) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.host.results)

    def leftovers(self) -> str:
        """What the user agent still holds ("" when nothing): calls, dialogs, RTP streams,
        pending setups, applications that have not returned."""
        running = self.host.running()
        held = self.engine.run(held_by, self.backend.ua)
        return "; ".join(held + ([f"running: {running}"] if running else []))

    def settled(self, timeout: float = 5.0) -> bool:
        """True once :meth:`leftovers` is empty (within ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while self.leftovers() and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.leftovers()

    def close(self) -> None:
        if self.engine.running:
            self.host.shutdown(5)
            self.engine.stop()


@pytest.fixture
def serve() -> Iterator[Callable[..., Service]]:
    services: list[Service] = []

    def start(params: str = "", **options: object) -> Service:
        service = Service(params, **options)
        services.append(service)
        return service

    yield start
    for service in services:
        service.close()


def ladder(result: peers.SippResult) -> list[str]:
    """SIPp's trace as "S INVITE", "R 183 INVITE" ... (direction, status and CSeq method)."""
    return [f"{m.direction} {m.status} {m.method}" if m.status else f"{m.direction} {m.method}"
            for m in result.messages()]


def first_time(result: peers.SippResult, entry: str) -> float:
    """When SIPp sent or received the first message that :func:`ladder` shows as ``entry``."""
    for text, message in zip(ladder(result), result.messages(), strict=True):
        if text == entry:
            return message.time
    raise AssertionError(f"no {entry!r} in {ladder(result)}")


# ------------------------------------------------------------------ SIPp calls uascall


@pytest.mark.parametrize(("codecs", "payload_type"), [(None, 8), ("g711u;g711a", 0)])
def test_early_media_then_answer(serve, workdir: Path, codecs: str | None,
                                 payload_type: int) -> None:
    """183 + SDP and the ringtone in RTP for 1 s, then 200 with the same answer, ACK, the
    caller's BYE after 1 s. The codec is ours to choose from the offer (0 8 101)."""
    params = "ring=1 early=1" + (f" codecs={codecs}" if codecs else "")
    service = serve(params)
    media_port = peers.free_media_port()
    with peers.capture_rtp(media_port, workdir=workdir) as capture:
        result = peers.run_sipp("uac_early_media.xml", service.target, media_port=media_port,
                                extra_vars={"hold_ms": 1000, "ack_delay_ms": 0}, cwd=workdir)
    assert result.ok and (result.successful, result.failed) == (1, 0), result.describe()
    assert ladder(result) == ["S INVITE", "R 100 INVITE", "R 183 INVITE", "R 200 INVITE",
                              "S ACK", "S BYE", "R 200 BYE"], result.describe()
    logs = "\n".join(result.log_lines())
    assert f"183 ct=application/sdp pt={payload_type} " in logs, logs
    assert f"200 ct=application/sdp pt={payload_type} " in logs, logs
    assert result.retransmissions == 0, result.describe()

    # One stream from the 183 to the BYE (the same SSRC, the same answer in 183 and 200),
    # paced at 20 ms; SIPp echoed every packet of it back.
    to_sipp = peers.rtp_stats(capture.pcap, media_port, direction="to")
    echoed = peers.rtp_stats(capture.pcap, media_port, direction="from")
    assert len(to_sipp) == 1 and len(echoed) == 1, (to_sipp, echoed)
    ours, echo = to_sipp[0], echoed[0]
    assert ours.payload_type == payload_type and ours.payload_bytes == 160, ours
    assert 85 <= ours.packets <= 115, ours  # ~1 s ringing + ~1 s answered, 50 per second
    assert ours.lost == 0 and 19 <= ours.mean_delta_ms <= 21, ours
    assert ours.max_delta_ms < 60, ours
    assert echo.packets >= ours.packets - 2, echo

    assert ours.first_s - first_time(result, "R 183 INVITE") < 0.1, "early media starts late"
    assert [r.return_code for r in service.records(1)] == [CALLER_HUNG_UP]
    assert service.records(1)[0].cause == "NORMAL"
    assert service.settled(), service.leftovers()


def test_cancel_during_early_media(serve, workdir: Path) -> None:
    """The caller gives up after 1 s of early media: 200 (CANCEL) and 487, the ACK of
    the 487; the RTP stops, the application's ring() returns IDLE."""
    service = serve("ring=none early=1")
    media_port = peers.free_media_port()
    with peers.capture_rtp(media_port, workdir=workdir) as capture:
        result = peers.run_sipp("uac_early_media_cancel.xml", service.target,
                                media_port=media_port, extra_vars={"cancel_ms": 1000},
                                cwd=workdir)
    assert result.ok and result.successful == 1, result.describe()
    assert sorted(ladder(result)) == sorted(
        ["S INVITE", "R 100 INVITE", "R 183 INVITE", "S CANCEL", "R 200 CANCEL",
         "R 487 INVITE", "S ACK"]), result.describe()
    to_sipp = peers.rtp_stats(capture.pcap, media_port, direction="to")
    packets = sum(stream.packets for stream in to_sipp)
    assert 40 <= packets <= 60, to_sipp  # 1 s of early media
    assert max(stream.last_s for stream in to_sipp) <= first_time(result, "S CANCEL") + 0.06, \
        "RTP went on after CANCEL"
    records = service.records(1)
    assert [r.return_code for r in records] == [CANCELLED_WHILE_RINGING], records
    assert service.settled(), service.leftovers()


def test_caller_bye_without_early_media(serve, workdir: Path) -> None:
    """ring() without early media is a 180 and no RTP; RTP starts with the 200."""
    service = serve("ring=0.5 early=0")
    media_port = peers.free_media_port()
    with peers.capture_rtp(media_port, workdir=workdir) as capture:
        result = peers.run_sipp("uac_caller_bye.xml", service.target, media_port=media_port,
                                extra_vars={"hold_ms": 1000}, cwd=workdir)
    assert result.ok, result.describe()
    assert ladder(result) == ["S INVITE", "R 100 INVITE", "R 180 INVITE", "R 200 INVITE",
                              "S ACK", "S BYE", "R 200 BYE"], result.describe()
    to_sipp = peers.rtp_stats(capture.pcap, media_port, direction="to")
    assert to_sipp and min(stream.first_s for stream in to_sipp) >= first_time(
        result, "R 200 INVITE") - 0.01, "RTP before the answer without early media"
    assert 40 <= sum(stream.packets for stream in to_sipp) <= 60, to_sipp
    assert [r.return_code for r in service.records(1)] == [CALLER_HUNG_UP]
    assert service.settled(), service.leftovers()


def test_callee_bye(serve, workdir: Path) -> None:
    """The application hangs up 1 s after the answer: our BYE, in the dialog (SIPp checks
    the tags), answered 200."""
    service = serve("ring=0.3 early=1 hold=1")
    result = peers.run_sipp("uac_callee_bye.xml", service.target, cwd=workdir)
    assert result.ok, result.describe()
    assert ladder(result)[-2:] == ["R BYE", "S 200 BYE"], result.describe()
    records = service.records(1)
    assert [(r.return_code, r.cause) for r in records] == [(WE_HUNG_UP, "NORMAL")], records
    assert service.settled(), service.leftovers()


def test_lost_ack_makes_us_resend_the_200(serve, workdir: Path) -> None:
    """SIPp holds its ACK back 1.8 s: we resend the 200 at T1 and 3*T1 (0.5 s, 1.5 s:
    RFC 3261 13.3.1.4's doubling intervals) and stop at the ACK; the call goes on."""
    service = serve("ring=0.2 early=1")
    result = peers.run_sipp("uac_lost_ack.xml", service.target,
                            extra_vars={"ack_delay_ms": 1800, "hold_ms": 300}, cwd=workdir)
    assert result.ok, result.describe()
    assert result.recv_retrans("200") == 2, result.describe()
    oks = [m.time for m in result.messages() if m.status == 200 and m.method == "INVITE"]
    assert len(oks) == 3, result.describe()
    assert oks[1] - oks[0] == pytest.approx(0.5, abs=0.1), oks
    assert oks[2] - oks[0] == pytest.approx(1.5, abs=0.15), oks
    assert [r.return_code for r in service.records(1)] == [CALLER_HUNG_UP]
    assert service.settled(), service.leftovers()


def test_options(serve, workdir: Path) -> None:
    service = serve()
    result = peers.run_sipp("uac_options.xml", service.target, cwd=workdir)
    assert result.ok, result.describe()
    logs = "\n".join(result.log_lines())
    assert "Allow: INVITE" in logs or ", INVITE" in logs, logs
    assert service.records(0, timeout=0) == []  # OPTIONS reaches no application


def test_ten_percent_loss(serve, workdir: Path) -> None:
    """30 calls at 10 calls/s with SIPp dropping 10 % of what it sends and receives.

    Our side must recover everything retransmission can recover (INVITE, 200, ACK, BYE,
    200 for BYE); a lost 183 cannot be (no PRACK), so those calls fail at SIPp as an
    unexpected 200. Every call reaches the application and ends: caller's BYE, or our
    BYE after 64*T1 without an ACK, or the RTP-inactivity timer; nothing is left over.
    """
    calls = 30
    service = serve("ring=0.3 early=1", rtp_timeout=3)
    result = peers.run_sipp("uac_early_media_lossy.xml", service.target, calls=calls,
                            rate=10, lost_percent=10, extra_vars={"hold_ms": 300},
                            timeout=60, trace_logs=False, cwd=workdir)
    assert result.successful + result.failed == calls, result.describe()
    assert result.successful >= calls * 0.7, result.describe()
    for waiting_for, got in result.unexpected():
        assert waiting_for in ("100", "180", "183") and got == "SIP/2.0 200 OK", \
            result.describe()
    # A call whose 183 SIPp lost is dead at SIPp: it never ACKs our 200, so we give up
    # after 64*T1 (32 s) with a BYE that nobody answers, and forget the call when that
    # BYE's own transaction times out (Timer F, another 64*T1).
    records = service.records(calls, timeout=45)
    assert len(records) == calls, f"{len(records)} of {calls} calls ended: {records}"
    assert service.settled(timeout=45), service.leftovers()


# ------------------------------------------------------------------ baresip calls uascall


def test_baresip_hears_the_ringtone(serve, workdir: Path) -> None:
    """baresip dials the application, which rings with early media for 2.5 s playing a
    425 Hz tone of 0.6 s on / 0.4 s off, then answers; baresip hangs up at 4 s. What
    baresip recorded must be that tone, with that cadence, for that long."""
    service = serve("ring=2.5 early=1 tone=CADENCE_425")
    result = peers.run_baresip(service.uri("early"), seconds=4, workdir=workdir)
    assert result.returncode == 0, result.describe()
    assert [code for code, _, _ in result.progress] == [100, 183], result.describe()
    assert result.early_media and result.established, result.describe()
    assert result.decoder.startswith("PCMA"), result.describe()
    assert result.dec_wav is not None, result.describe()

    tone = peers.tone_analysis(result.dec_wav)
    assert tone.dominant_hz == pytest.approx(425, abs=2), tone
    assert tone.purity > 0.95, tone
    # 0-0.6, 1.0-1.6, 2.0-2.5 (the answer stops the ringtone) then silence to the BYE
    assert len(tone.segments) == 3, tone
    assert tone.on_durations[:2] == pytest.approx([0.6, 0.6], abs=0.06), tone
    assert tone.on_durations[2] == pytest.approx(0.5, abs=0.1), tone
    assert tone.off_durations == pytest.approx([0.4, 0.4], abs=0.06), tone
    # -13 dBm0 is about 0.16 of full scale in RMS (0 dBm0 = 3.17 dBov below a full-scale
    # sine's RMS in A-law); baresip records what it decoded
    assert 0.10 <= tone.voiced_rms <= 0.25, tone
    assert 3.5 <= tone.duration_s <= 4.5, tone  # early media and answered call, to the BYE
    records = service.records(1)
    assert [r.return_code for r in records] == [CALLER_HUNG_UP], records
    assert service.settled(), service.leftovers()


def test_baresip_cancels_and_the_application_sees_it(serve, workdir: Path) -> None:
    service = serve("ring=none early=1")
    result = peers.run_baresip(service.uri("early"), seconds=2, workdir=workdir)
    assert result.early_media and result.cancelled, result.describe()
    records = service.records(1)
    assert [r.return_code for r in records] == [CANCELLED_WHILE_RINGING], records
    assert service.settled(), service.leftovers()


# ------------------------------------------------------------------ uascall run, as a user


def test_uascall_run_serves_the_example_to_baresip(workdir: Path) -> None:
    """``uascall run examples/early_media.py --backend sip``: the demo's application,
    unchanged, serves a baresip call: the spoken greeting and the ringback in early
    media, the answer, the goodbye file, our BYE; the call record in the SQLite file."""
    port = peers.free_udp_port()
    records = workdir / "calls.sqlite"
    command = [sys.executable, "-m", "uascall", "run", str(ROOT / "examples/early_media.py"),
               "--backend", "sip", "--listen", f"127.0.0.1:{port}", "--param", "2",
               "--records", str(records)]
    with open(workdir / "uascall.log", "wb") as log:
        server = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        try:
            peers.wait_bound(port, server, 10)
            result = peers.run_baresip(f"sip:5551000@127.0.0.1:{port}", seconds=11,
                                       workdir=workdir)
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(15)
            finally:
                if server.poll() is None:
                    server.kill()
    output = (workdir / "uascall.log").read_text()
    assert server.returncode == 0, output
    assert result.early_media and result.established, result.describe()
    assert "terminated" in result.closed_reason, result.describe()  # our BYE
    assert result.dec_wav is not None, result.describe()

    # The recording: the greeting (speech, ~2.5 s), 1 s of 425 Hz ringback and 1 s of its
    # off time, the answer, goodbye.wav (3.7 s), our BYE. Of the stretches of sound, one
    # alone is a pure 425 Hz tone, one second long: the ringback between two recordings.
    heard = peers.tone_analysis(result.dec_wav)
    tones = []
    for n, (start, end) in enumerate(heard.segments):
        part = peers.tone_analysis(peers.trim_wav(result.dec_wav, start, end - start,
                                                  workdir / f"part{n}.wav"))
        if part.purity > 0.9:
            tones.append((start, end, part.dominant_hz))
    assert len(tones) == 1, (tones, heard)
    start, end, hz = tones[0]
    assert hz == pytest.approx(425, abs=3) and end - start == pytest.approx(1.0, abs=0.1), tones
    assert heard.segments[0][0] < start - 1.5, heard  # the greeting came first
    assert heard.segments[-1][1] > end + 4.0, heard  # and goodbye.wav after the answer
    assert 7 <= heard.duration_s <= 10, heard

    with sqlite3.connect(records) as db:
        rows = db.execute("SELECT return_code, cause FROM calls").fetchall()
    assert rows == [(0, "NORMAL")], (rows, output)


# ------------------------------------------------------------------ DTMF both ways


def scripted_results(service: Service) -> tuple[list, list]:
    """apps/scripted.py's HEARD and SENT lists (the module as this service loaded it)."""
    module = service.host.application.main.__globals__
    return module["HEARD"], module["SENT"]


def keys_packets(keys_in_band: str, keys_as_events: str, keys_both: str) -> list[bytes]:
    """RTP packets of a caller pressing keys: ``keys_in_band`` as DTMF in PCMA audio,
    ``keys_as_events`` as RFC 4733 telephone-events only (PT 101, the audio giving way),
    ``keys_both`` both at once (a gateway that leaves the tones in and sends events too);
    all in one numbering and one SSRC, 20 ms apart, silence around."""
    law = g711.ALAW

    def frames(samples) -> list[bytes]:
        data = law.encode(samples)
        data += bytes([law.silence]) * (-len(data) % 160)
        return [data[at:at + 160] for at in range(0, len(data), 160)]

    sender = RtpSender(8)
    silence = [sender.packet(bytes([law.silence]) * 160) for _ in range(10)]
    packets = list(silence)
    packets += [sender.packet(f) for f in frames(dtmf_samples(keys_in_band, law="alaw"))]
    for key in keys_as_events:
        packets += sender.event_packets(key, 100, telephone_event_pt=101)
        packets += [sender.packet(bytes([law.silence]) * 160) for _ in range(5)]
    for key in keys_both:
        tones = [sender.packet(f) for f in frames(dtmf_samples(key, on_ms=100, off_ms=100,
                                                                  law="alaw"))]
        packets += tones[:2] + sender.event_packets(key, 100, telephone_event_pt=101) \
            + tones[2:]
    packets += [sender.packet(bytes([law.silence]) * 160) for _ in range(10)]
    return packets


def test_sipp_plays_keys_in_band_as_events_and_both(serve, workdir: Path) -> None:
    """SIPp replays a recorded RTP stream (play_pcap_audio): four keys in band in the
    PCMA audio, four as telephone-events, two as both. The application collects exactly
    the ten keys: one digit per press, whichever way it came."""
    service = serve("ring=0 early=0 keys=10 hold=0.5")
    pcap = peers.write_rtp_pcap(workdir / "keys.pcap", keys_packets("1234", "5678", "90"))
    scenario = peers.pcap_scenario(pcap, workdir)
    result = peers.run_sipp(scenario, service.target, extra_vars={"hold_ms": 6000},
                            rtp_echo=False, cwd=workdir, timeout=30)
    heard, _ = scripted_results(service)
    assert heard and heard[-1][1:] == ("1234567890", "COUNT"), (heard, result.describe())
    assert service.settled(), service.leftovers()


def test_baresip_presses_keys_as_telephone_events(serve, workdir: Path) -> None:
    """baresip, typed keys in a call, sends them as RFC 4733 telephone-events; its SDP
    names its LAN address and its RTP comes from loopback, which we take (symmetric RTP)."""
    service = serve("ring=0.5 early=0 keys=4 hold=1")
    result = peers.run_baresip(service.uri("keys"), seconds=6, workdir=workdir,
                               keys="1#9*", keys_at=2.0)
    assert result.established, result.describe()
    heard, _ = scripted_results(service)
    assert heard and heard[-1][1:] == ("1#9*", "COUNT"), (heard, result.describe())
    assert service.settled(), service.leftovers()


def test_dtmf_player_events_decoded_by_tshark(serve, workdir: Path) -> None:
    """The application sends 1 5 9 # * 0 D with the DTMFPlayer to SIPp, which offered
    telephone-event: tshark's rtpevent dissector, not ours, reads them on the wire; each
    digit one event (one timestamp) ending with the end packet three times."""
    service = serve("ring=0 early=0 dtmf=159#*0D hold=0.5")
    media_port = peers.free_media_port()
    with peers.capture_rtp(media_port, workdir=workdir) as capture:
        result = peers.run_sipp("uac_callee_bye.xml", service.target, media_port=media_port,
                                rtp_echo=False, cwd=workdir)
    assert result.ok, result.describe()
    _, sent = scripted_results(service)
    assert sent and sent[-1][1] == "NORMAL", sent
    events = peers.rtp_events(capture.pcap, media_port)
    pressed: dict[int, list[tuple[int, bool]]] = {}
    for timestamp, event, end in events:
        pressed.setdefault(timestamp, []).append((event, end))
    digits = "".join("0123456789*#ABCD"[packets[0][0]] for packets in pressed.values())
    assert digits == "159#*0D", events
    for packets in pressed.values():
        assert len({event for event, _ in packets}) == 1
        assert [end for _, end in packets].count(True) == 3, packets
