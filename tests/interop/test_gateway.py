"""examples/gateway.py between a real libpri exchange and real SIP peers.

The gateway is the shipped example, unchanged, served as ``uascall run examples/gateway.py
--backend sim --backend sip`` serves it: an :class:`AppHost` over a :class:`RoutingBackend`
of a PRI span and a SIP backend on loopback, in this process (so that the tests can read
its call records and what its user agent still holds). The span is on the ``rig``: the
simulated kernel, or the real DAHDI driver in the vm rig, where a loc span pair joins our
E1 span to the exchange's; the exchange is a real libpri instance in network mode
(``uascall.sim.farend``), which places the call, talks, presses keys, hangs up and records
every byte its B-channel carries. Its D-channel is decoded independently of libpri from
the loop's tap (``Wire``).

The SIP side is **baresip 1.0.0** (Debian's), the called phone, driven through its console
as a person would (``peers.BaresipCallee``): it takes mu-law only, so every frame crosses
the gateway's A-law/mu-law conversion, and it records what it decoded. baresip 1.0.0
answers ``answermode=early`` with a 183 and SDP but sends no audio before its 200 (it
starts its encoder and microphone at the answer), so the one thing it cannot show, early
media from the SIP side heard on the B-channel before the answer, is shown with **SIPp**
as the called side (``uas_183_ringback.xml`` streaming a tone from its 183 to its 200).

All audio is judged with the tests' own filters (``tests/audio.py``), never with uascall's
detectors: baresip's recording, and the exchange's B-channel capture, 20 ms at a time
(:func:`tone_heard`: the median frequency and level of the frames that carry the tone, and
how many do). The levels arrive within 0.25 dB of what was sent: the offsets measured,
-0.21 dB from baresip to the exchange and +0.22 dB the other way, are exactly what G.711
gives (mu-law to A-law and back, and the laws' two references 0.07 dB apart); baresip adds
no processing of its own (its recorder sits beside its codec).

On the vm rig the span is the real driver's, and the guest's one emulated CPU is nearly
all taken by the gateway and the exchange (about 85 %, where the same call takes under
10 % of a core natively): the engine is starved, frames come in bursts and slip (up to
half of them with the host loaded), and a key's few frames may go with them. There a tone
needs only a quarter of its frames whole (:attr:`Gateway.kept`), and the keys that arrive
need only be some of those pressed, in order, none invented (:meth:`Gateway.check_keys`);
frequencies, levels, signalling and causes are checked as strictly as on the simulator.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import audio
from tests.interop import peers
from tests.rigs import Rig
from tests.sim.helpers import Wire, check_keys
from tests.sim.sip_peer import held_by
from uascall.app import AppHost, Application, CallRecord
from uascall.backend import open_backend
from uascall.dahdi.pri import CallAlerting, CallConnected
from uascall.engine import Engine
from uascall.routing import RoutingBackend
from uascall.sim.backend import SimBackend
from uascall.sim.farend import FarEndCall, pri_loop_conf

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = ROOT / "examples" / "gateway.py"
LAW = "alaw"  # the E1 span's; baresip takes PCMU only, so every frame is converted
NUMBER = "5551000"


class Gateway:
    """examples/gateway.py on an E1 span of ``rig`` and a SIP backend on loopback."""

    def __init__(self, rig: Rig, engine: Engine) -> None:
        self.engine = engine
        #: seconds a signalling step may take before a test gives up
        self.patience = max(10.0, 2 * rig.patience)
        #: whether every frame and key must come through: on the simulator, yes; on the
        #: vm rig, in an emulated guest whose one CPU the gateway and the exchange keep
        #: busy, a starved engine reads and writes frames in bursts that the bridge's
        #: three frames cannot absorb (slips), and the B-channel runs dry at times
        self.strict = rig.name == "sim"
        #: the share of a tone's 20 ms frames that must come through whole (the
        #: simulator's: all but its edges and a slip or two)
        self.kept = 0.9 if self.strict else 0.25
        conf = pri_loop_conf("E1", dynamic=True)
        self.tdm = SimBackend(engine, kind="E1", kernel=rig.kernel(engine, conf), conf=conf)
        self.sip = open_backend("sip", engine, listen="127.0.0.1:0")
        self.backend = RoutingBackend(engine, [self.tdm, self.sip])
        self.host = AppHost(engine, self.backend, Application.load(GATEWAY))
        engine.run(self.host.start)
        assert engine.wait_until(lambda: self.tdm.up, rig.patience), "the span did not come up"
        assert self.tdm.loop is not None and self.tdm.far_end is not None
        self.far_end = self.tdm.far_end
        self.wire = Wire(self.tdm.loop.tap, self.tdm.loop.cpe.layout.dchannel)

    def check_keys(self, heard: str, pressed: str, story: str = "") -> None:
        check_keys(heard, pressed, strict=self.strict, story=story)

    def route(self, target: str) -> None:
        """The routing table: NUMBER to ``target`` (read by each new call)."""
        self.host.application_parameters = f"{NUMBER}={target}"

    def dial(self) -> FarEndCall:
        """The exchange calls NUMBER."""
        return self.engine.run(self.far_end.dial, NUMBER)

    def wait(self, predicate, what: str) -> None:
        assert self.engine.wait_until(predicate, self.patience), f"{what}: not within " \
            f"{self.patience} s; the wire: {self.wire.names()}"

    def records(self, count: int = 1) -> list[CallRecord]:
        self.wait(lambda: len(self.host.results) >= count, f"{count} call record(s)")
        return list(self.host.results)

    def settled(self) -> str:
        """What the gateway still holds ("" when nothing): applications running, SIP
        calls, dialogs, RTP streams."""
        deadline = time.monotonic() + self.patience
        while True:
            held = self.engine.run(held_by, self.sip.ua)
            running = self.host.running()
            left = "; ".join(held + ([f"running: {running}"] if running else []))
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)

    def close(self) -> None:
        self.host.shutdown(timeout=self.patience)


def loopback_up() -> None:
    """The vm rig's guest boots with its loopback interface down ("Network is
    unreachable" on 127.0.0.1): bring it up there. Nowhere else is it touched."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(b"", ("127.0.0.1", 9))
            return
        except OSError:
            pass
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)


@pytest.fixture
def gateway(rig: Rig) -> Iterator[Gateway]:
    if rig.name == "vm":
        loopback_up()
    with rig.engine(virtual=False) as engine:  # SIP is real UDP: real time
        box = Gateway(rig, engine)
        try:
            yield box
        finally:
            box.close()


# ------------------------------------------------------------------ helpers


def tone(freq: float, seconds: float, level_dbm0: float, law: str) -> list[int]:
    peak = audio.reference_rms(law) * math.sqrt(2) * 10 ** (level_dbm0 / 20)
    return [round(peak * math.sin(2 * math.pi * freq * n / 8000))
            for n in range(round(seconds * 8000))]


def tone_wav(path: Path, freq: float, on_s: float, level_dbm0: float, law: str,
             total_s: float = 180.0) -> Path:
    """A WAV of ``freq`` at ``level_dbm0`` (of ``law``) for ``on_s``, then silence.

    As baresip's microphone it must outlast the call: baresip hangs up when its file
    ends ("aufile: end of file"). On the vm rig a key lost to the starved guest makes a
    test wait out its patience (30 s) for it, and a 20 s file ended the call there."""
    amplitude = audio.reference_rms(law) * math.sqrt(2) * 10 ** (level_dbm0 / 20) / 32767
    return peers.write_tone_wav(path, freq=freq, duration_s=total_s, on_s=on_s,
                                off_s=total_s, amplitude=amplitude)


def event_time(far: FarEndCall, kind: type) -> float:
    """Engine time of the exchange's first ``kind`` event on ``far``."""
    found = [at for at, event in far.events if isinstance(event, kind)]
    assert found, f"no {kind.__name__} for {far.call}: {far.events}"
    return found[0]


def heard_by(far: FarEndCall, at: float) -> int:
    """How many bytes the exchange's caller had heard by engine time ``at``."""
    count = 0
    for when, end in far.heard_at:
        if when > at:
            break
        count = end
    return count


def frames(samples: list[int]) -> list[list[int]]:
    """``samples`` in 20 ms frames."""
    return [samples[n:n + 160] for n in range(0, len(samples) - 159, 160)]


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


@dataclass
class ToneHeard:
    """A tone in a recording, judged 20 ms at a time."""

    #: frames whose strongest component near the tone's frequency (within 100 Hz) is
    #: within 20 Hz of it, at -40 dBm0 or more
    frames: int
    hz: float  # the median of their frequencies
    dbm0: float  # the median of their levels at the tone's frequency

    @property
    def seconds(self) -> float:
        return self.frames * 0.020


def tone_heard(samples: list[int], freq: float, law: str) -> ToneHeard:
    """``freq`` in ``samples``, frame by frame: frames broken by a slip or an underrun
    (a jump in phase), a key's edge or the tone's own edges do not move the medians."""
    heard = []
    for frame in frames(samples):
        if audio.component_level_dbm0(frame, freq, law) < -40.0:
            continue
        hz = audio.dominant_frequency(frame, freq - 100, freq + 100)
        if abs(hz - freq) < 20:
            heard.append((hz, audio.component_level_dbm0(frame, hz, law)))
    if not heard:
        return ToneHeard(0, 0.0, -math.inf)
    return ToneHeard(len(heard), median([hz for hz, _ in heard]),
                     median([level for _, level in heard]))


def wav_samples(path: Path) -> list[int]:
    samples, rate = peers.read_wav(path)
    assert rate == 8000, f"{path}: {rate} Hz"
    return [round(x * 32768) for x in samples]


def keys_in_band(heard: bytes | bytearray) -> str:
    """The keys in what the exchange heard, read as a DTMF receiver reads them
    (:func:`audio.dtmf_keys`, runs of at least 40 ms), but bridging a gap of one 20 ms
    block within a key, as a receiver rides over a short break in the tone (Q.24): on
    the vm rig a starved engine may lose a frame of a key carried across."""
    blocks = audio.dtmf_blocks(audio.decode(bytes(heard), LAW), LAW)
    for n in range(1, len(blocks) - 1):
        if blocks[n] is None and blocks[n - 1] is not None and blocks[n - 1] == blocks[n + 1]:
            blocks[n] = blocks[n - 1]
    return audio.keys_in_blocks(blocks)


def logged(phone: peers.BaresipCallee, pattern: str, timeout: float) -> bool:
    """Whether baresip logs ``pattern`` within ``timeout`` seconds."""
    try:
        phone.wait_for(pattern, timeout)
    except peers.PeerError:
        return False
    return True


def wire_sequence(gw: Gateway) -> list[str]:
    """Our span's messages (cpe) and the exchange's (net), in order: "net SETUP" ..."""
    return [f"{who} {message.name}" for who, message in gw.wire.messages()]


# ------------------------------------------------------------------ baresip answers


def test_exchange_calls_baresip_through_the_gateway_both_talk_and_baresip_hangs_up(
        gateway: Gateway, workdir: Path) -> None:
    """The exchange calls; the gateway calls baresip (answermode=early: 180, then 183
    with SDP and no audio), and the exchange hears the gateway's ringback after ALERTING
    with progress indicator #8; baresip answers: a 1004 Hz tone from the exchange is in
    baresip's recording, baresip's 1400 Hz tone in the exchange's capture, each at its
    frequency and level through A-law/mu-law conversion; keys pressed at the exchange
    reach baresip as RFC 4733 events, keys typed at baresip reach the exchange in band;
    baresip hangs up, and the exchange is cleared with cause 16."""
    mic = tone_wav(workdir / "mic.wav", 1400, 2.0, -12.0, "ulaw")
    with peers.BaresipCallee(workdir, answermode="early", mic=mic) as phone:
        gateway.route(phone.uri())
        far = gateway.dial()
        phone.wait_for(r"SIP/2\.0 183 Session Progress", gateway.patience)
        gateway.wait(lambda: any(isinstance(e, CallAlerting) for _, e in far.events),
                     "ALERTING at the exchange")
        time.sleep(2.5)  # ringing: the exchange hears what the gateway passes on
        phone.accept()
        gateway.wait(lambda: any(isinstance(e, CallConnected) for _, e in far.events),
                     "CONNECT at the exchange")
        connected = event_time(far, CallConnected)
        before_answer = heard_by(far, connected)
        time.sleep(0.5)  # the gateway joins the two calls right after its CONNECT
        gateway.engine.run(far.say, tone(1004.0, 1.0, -10.0, LAW))
        time.sleep(2.0)  # baresip's tone (2 s from its answer) and ours are over
        gateway.engine.run(far.key, "159")  # a keypad beyond the exchange: its kernel
        logged(phone, r"received event: '9' \(end=1\)", gateway.patience)
        keys_mark = len(far.heard)
        phone.press("*0#")
        phone.wait_for(r"send DTMF digit end: '#'", gateway.patience)
        keys_at_exchange = ""
        deadline = time.monotonic() + gateway.patience
        while keys_at_exchange != "*0#" and time.monotonic() < deadline:
            time.sleep(1.0)  # (analysing takes a while: not too often)
            keys_at_exchange = keys_in_band(far.heard[keys_mark:])
        phone.hang_up()
        gateway.wait(lambda: far.cleared, "the exchange's call cleared")
        phone.wait_for(r"\nBYE sip:[^#]*#\s*UDP \S+ -> \S+\s*SIP/2\.0 200",
                       gateway.patience)  # its BYE and the gateway's 200
    story = phone.describe()

    # SIP: baresip's own trace
    assert phone.sent()[:3] == ["180", "183", "200"], story
    assert "BYE" in phone.sent() and phone.received()[0] == "INVITE", story
    # the D-channel: ALERTING with PI #8 (in-band information), then CONNECT; baresip's
    # BYE becomes our DISCONNECT with cause 16
    alerting = gateway.wire.find("cpe", "ALERTING")
    assert alerting.progress_descriptions == [8], alerting
    sequence = wire_sequence(gateway)
    assert sequence.index("cpe ALERTING") < sequence.index("cpe CONNECT") \
        < sequence.index("cpe DISCONNECT"), sequence
    assert gateway.wire.find("cpe", "DISCONNECT").cause == 16, sequence
    assert far.call.cause == 16

    # before the answer: baresip sends nothing (1.0.0), so the exchange hears the gateway's
    # ringback in band (the tone player's default: 440 + 480 Hz, -19 dBm0 each, 2 s on)
    ringing = audio.decode(bytes(far.heard[:before_answer]), LAW)
    ringback = audio.steady(ringing, 440, LAW)
    # 40 Hz apart, the two are told apart (and their beat averaged out) 0.2 s at a time
    blocks = [[audio.component_level_dbm0(ringback[n:n + 1600], freq, LAW)
               for freq in (440, 480)] for n in range(0, len(ringback) - 1599, 1600)]
    for levels in zip(*blocks, strict=True):
        assert median(list(levels)) == pytest.approx(-19.0, abs=0.5), blocks
    whole = [b for b in blocks if all(abs(level + 19.0) < 1.0 for level in b)]
    assert len(whole) >= gateway.kept * 9, blocks  # of the 2 s, less its edge frames
    assert audio.component_level_dbm0(ringing, 1400, LAW) < -50  # nothing of baresip's

    # after the answer, baresip's tone in the exchange's capture: mu-law RTP converted to
    # A-law on the B-channel, at the level the WAV has in mu-law (0.07 dB apart). Its
    # microphone starts at its 200, and the gateway joins the calls after its CONNECT, so
    # the first frames may be lost.
    answered = audio.decode(bytes(far.heard[before_answer:keys_mark]), LAW)
    from_baresip = tone_heard(answered, 1400, LAW)
    mic_level = audio.level_dbm0(wav_samples(mic)[:16000], "ulaw")
    assert from_baresip.hz == pytest.approx(1400, abs=1), from_baresip
    assert from_baresip.dbm0 == pytest.approx(mic_level, abs=0.5), from_baresip
    assert gateway.kept * 85 <= from_baresip.frames <= 102, from_baresip  # of 2 s

    # the exchange's tone in baresip's recording (what it decoded, from its answer on)
    assert phone.dec_wav is not None, story
    from_exchange = tone_heard(wav_samples(phone.dec_wav), 1004, "ulaw")
    assert from_exchange.hz == pytest.approx(1004, abs=1), from_exchange
    assert from_exchange.dbm0 == pytest.approx(-10.0, abs=0.5), from_exchange
    assert gateway.kept * 50 <= from_exchange.frames <= 52, from_exchange  # of 1 s

    # keys: the exchange's in band -> RFC 4733 events baresip logged; baresip's events ->
    # in band on the B-channel, one key per press
    gateway.check_keys(phone.received_keys(), "159", story)
    assert phone.sent_keys() == "*0#", story
    blocks = audio.dtmf_blocks(audio.decode(bytes(far.heard[keys_mark:]), LAW), LAW)
    gateway.check_keys(keys_at_exchange, "*0#", "".join(b or "." for b in blocks))

    # the gateway's record: the PRI call cleared normally, the SIP call answered and ended
    # by baresip's BYE
    [record] = gateway.records(1)
    assert (record.return_code, record.cause, record.raw_cause) == (0, "NORMAL", "16")
    [extra] = json.loads(record.extra_calls)
    assert (extra["answered"], extra["cause"], extra["raw_cause"]) == (True, "NORMAL", "BYE")
    assert gateway.settled() == ""


def test_the_exchange_hangs_up_and_baresip_gets_the_bye(
        gateway: Gateway, workdir: Path) -> None:
    """baresip answers at once (answermode=auto); the exchange hangs up a second later:
    the gateway sends baresip a BYE (in baresip's own trace), and its record shows both
    calls cleared normally."""
    with peers.BaresipCallee(workdir, answermode="auto") as phone:
        gateway.route(phone.uri())
        far = gateway.dial()
        gateway.wait(lambda: any(isinstance(e, CallConnected) for _, e in far.events),
                     "CONNECT at the exchange")
        time.sleep(1.0)
        gateway.engine.run(far.hangup)
        phone.wait_for(r"\nBYE sip:", gateway.patience)
        gateway.wait(lambda: far.cleared, "the exchange's call cleared")
        closed = phone.wait_for(r"Call with \S+ terminated[^\n]*|session closed[^\n]*",
                                gateway.patience)
    story = phone.describe()
    assert phone.sent()[:2] == ["180", "200"] and phone.received()[:2] == ["INVITE", "ACK"], \
        story
    assert phone.received()[-1] == "BYE" and phone.sent()[-1] == "200", story
    assert closed.group(0), story
    sequence = wire_sequence(gateway)
    assert sequence[-3:] == ["net DISCONNECT", "cpe RELEASE", "net RELEASE COMPLETE"], \
        sequence
    [record] = gateway.records(1)
    assert (record.return_code, record.cause, record.raw_cause) == (0, "NORMAL", "16")
    [extra] = json.loads(record.extra_calls)
    assert extra["answered"] is True and extra["cause"] == "NORMAL", extra
    assert gateway.settled() == ""


def test_baresip_refuses_and_the_exchange_is_cleared_busy(
        gateway: Gateway, workdir: Path) -> None:
    """baresip rings (answermode=manual: 180) and its user refuses the call ("b": 486
    Rejected): the gateway clears the exchange's call with cause 17, user busy (RFC
    3398's mapping of 486), after the ALERTING it had sent."""
    with peers.BaresipCallee(workdir, answermode="manual") as phone:
        gateway.route(phone.uri())
        far = gateway.dial()
        phone.wait_for(r"Incoming call from", gateway.patience)
        gateway.wait(lambda: any(isinstance(e, CallAlerting) for _, e in far.events),
                     "ALERTING at the exchange")
        phone.hang_up()
        gateway.wait(lambda: far.cleared, "the exchange's call cleared")
        phone.wait_for(r"\nACK sip:", gateway.patience)
    story = phone.describe()
    assert phone.sent() == ["180", "486"], story
    assert far.call.cause == 17
    sequence = wire_sequence(gateway)
    assert "cpe CONNECT" not in sequence, sequence
    assert gateway.wire.find("cpe", "DISCONNECT").cause == 17, sequence
    [record] = gateway.records(1)
    assert (record.return_code, record.cause, record.raw_cause) == (0, "BUSY", "17")
    [extra] = json.loads(record.extra_calls)
    assert (extra["answered"], extra["raw_cause"]) == (False, "486"), extra
    assert gateway.settled() == ""


# ------------------------------------------------------------------ SIPp's early media


def test_sip_early_media_is_heard_on_the_b_channel_before_the_answer(
        gateway: Gateway, start_uas, workdir: Path) -> None:
    """The called side sends 183 with SDP and streams a 1633 Hz tone (SIPp's rtp_stream)
    until its 200 three seconds later: the exchange hears that tone in band, at its
    level, after ALERTING with progress indicator #8 and before CONNECT. Then the exchange
    hangs up, and the SIP side gets the gateway's BYE."""
    wav = tone_wav(workdir / "early.wav", 1633, 1.0, -13.0, "alaw", total_s=1.0)
    early = peers.wav_to_alaw(wav, workdir / "ringback.al")  # the name the scenario plays
    sent_level = audio.level_dbm0(audio.decode(early.read_bytes(), LAW), LAW)
    uas = start_uas("uas_183_ringback.xml", answer_ms=3000, copy_files=(early,))
    gateway.route(uas.uri("early"))
    far = gateway.dial()
    gateway.wait(lambda: any(isinstance(e, CallConnected) for _, e in far.events),
                 "CONNECT at the exchange")
    alerted, connected = event_time(far, CallAlerting), event_time(far, CallConnected)
    time.sleep(1.0)
    gateway.engine.run(far.hangup)
    gateway.wait(lambda: far.cleared, "the exchange's call cleared")
    records = gateway.records(1)
    result = uas.stop()
    assert result.ok and result.successful == 1, result.describe()
    assert [f"{m.direction} {m.status or ''} {m.method}".replace("  ", " ")
            for m in result.messages()][-2:] == ["R BYE", "S 200 BYE"], result.describe()

    alerting = gateway.wire.find("cpe", "ALERTING")
    assert alerting.progress_descriptions == [8], alerting
    sequence = wire_sequence(gateway)
    assert sequence.index("cpe ALERTING") < sequence.index("cpe CONNECT"), sequence
    early_heard = audio.decode(bytes(far.heard[heard_by(far, alerted):
                                               heard_by(far, connected)]), LAW)
    heard = tone_heard(early_heard, 1633, LAW)
    assert heard.hz == pytest.approx(1633, abs=1), heard
    # A-law RTP to the A-law B-channel: the level as sent
    assert heard.dbm0 == pytest.approx(sent_level, abs=0.3), heard
    # the stream runs from the 183 to the 200: all the time the call rang, less its first
    # packet's way and the two edge frames
    assert connected - alerted > 2.0, connected - alerted  # SIPp answers 3 s after its 183
    assert heard.seconds >= gateway.kept * (connected - alerted - 0.3), \
        (heard, connected - alerted)
    [record] = records
    assert (record.return_code, record.cause) == (0, "NORMAL"), record
    [extra] = json.loads(record.extra_calls)
    assert extra["answered"] is True and extra["cause"] == "NORMAL", extra
    assert gateway.settled() == ""
