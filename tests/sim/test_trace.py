"""Call traces in pcapng (issue 14), checked with Wireshark's own decoding (tshark).

A PRI call with early media on the rig (the simulator, or the real driver in the vm rig:
our spans' devices go through the tap either way) and a SIP call with a 183 are traced;
tshark reads the file and says what is in it: the Q.931 messages with their progress
indicator and causes, the SIP responses and SDP, the RTP streams without loss, and the
B-channel's in-band audio, whose decoded payload is the ringback's 425 Hz. Malformed
input shows in the trace as tshark marks it; the file rotates at its size limit; a full
queue drops and counts, a full disk stops the trace and never the call.
"""

from __future__ import annotations

import argparse
import array
import errno
import io
import logging
import os
import shutil
import struct
import subprocess
import threading

import pytest

from tests.audio import decode, dominant_frequency
from tests.sim.helpers import T, start_world, with_tones
from tests.sim.sip_peer import SipPeer, Uas, answer_through, incoming, sdp_address
from uascall.backend import Cause
from uascall.channel import State
from uascall.dahdi import abi, q931
from uascall.dahdi.backend import DahdiBackend
from uascall.dahdi.config import SystemConf
from uascall.dahdi.device import Channel
from uascall.engine import Engine, VirtualClock
from uascall.media import g711
from uascall.sim.farend import pri_loop_conf
from uascall.sim.kernel import SimKernel
from uascall.sip.rtp import RtpPacket
from uascall.trace import pcapng
from uascall.trace.command import add_trace_options, tracing
from uascall.trace.device import TapDeviceIO
from uascall.trace.taps import Taps
from uascall.trace.tracer import Tracer, rotated_name

EU = "RINGBACK_EU"  # 425 Hz, 1 s on / 4 s off


def tshark(path, *args: str) -> str:
    result = subprocess.run(["tshark", "-r", str(path), *args], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def fields(path, display_filter: str, *names: str, heuristic: bool = False
           ) -> list[list[str]]:
    """One row of ``names`` per packet tshark selects with ``display_filter``."""
    extra = ["--enable-heuristic", "rtp_udp"] if heuristic else []
    args = [*extra, "-Y", display_filter, "-T", "fields", "-E", "occurrence=a",
            "-E", "aggregator=,"]
    for name in names:
        args += ["-e", name]
    return [line.split("\t") for line in tshark(path, *args).splitlines()]


# --------------------------------------------------------------------------- pcapng itself
def test_blocks_and_packets_round_trip():
    interfaces = [pcapng.Interface(pcapng.LINKTYPE_LINUX_LAPD, "span1-dchan", "D"),
                  pcapng.Interface(pcapng.LINKTYPE_RAW, "udp")]
    frame = bytes.fromhex("000103080105050418038381")
    lapd = pcapng.lapd_packet(frame, sent=True, network=True)
    v4 = pcapng.udp_packet(b"hello", ("192.0.2.1", 5060), ("192.0.2.2", 5070))
    v6 = pcapng.udp_packet(b"odd", ("::1", 5060), ("2001:db8::2", 40000))
    blocks = [pcapng.SectionHeader("uascall test").serialize(),
              *(i.serialize() for i in interfaces),
              pcapng.EnhancedPacket(0, 1_700_000_000_123_456, lapd).serialize(),
              pcapng.EnhancedPacket(1, 1_700_000_000_200_000, v4, pcapng.FLAG_INBOUND,
                                    "a comment").serialize(),
              pcapng.EnhancedPacket(1, 1_700_000_000_300_000, v6,
                                    pcapng.FLAG_OUTBOUND).serialize()]
    trace = pcapng.parse(b"".join(blocks))
    assert trace.applications == ["uascall test"]
    first, second, third = trace.packets
    assert first.interface == interfaces[0] and first.timestamp == 1_700_000_000.123456
    assert pcapng.parse_lapd(first.data) == (True, True, frame) and first.sent is True
    assert pcapng.parse_udp(second.data) == (("192.0.2.1", 5060), ("192.0.2.2", 5070),
                                             b"hello")
    assert second.sent is False and second.comment == "a comment"
    assert pcapng.parse_udp(third.data) == (("::1", 5060), ("2001:db8::2", 40000), b"odd")
    assert third.sent is True
    with pytest.raises(pcapng.PcapngError, match=r"runs past|does not fit"):
        pcapng.parse(b"".join(blocks)[:-3])


def test_tshark_decodes_the_ip_headers_and_checksums(tmp_path):
    path = tmp_path / "ip.pcapng"
    packets = [pcapng.udp_packet(b"x" * 11, ("192.0.2.1", 1234), ("192.0.2.2", 4321)),
               pcapng.udp_packet(b"y" * 7, ("2001:db8::1", 1234), ("::1", 4321))]
    path.write_bytes(pcapng.SectionHeader().serialize()
                     + pcapng.Interface(pcapng.LINKTYPE_RAW).serialize()
                     + b"".join(pcapng.EnhancedPacket(0, n, p).serialize()
                                for n, p in enumerate(packets)))
    rows = tshark(path, "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
                  "-T", "fields", "-e", "ip.src", "-e", "ipv6.src", "-e", "udp.length",
                  "-e", "ip.checksum.status", "-e", "udp.checksum.status").splitlines()
    # checksum status 1 is "good" (0 "bad"); a UDP checksum of 0 on IPv4 is 3, "not present"
    assert rows == ["192.0.2.1\t\t19\t1\t3", "\t2001:db8::1\t15\t\t1"]


# --------------------------------------------------------------------------- a PRI call
@pytest.fixture(params=["E1", "T1"])
def traced_world(request, rig, tmp_path):
    """A looped pair on the rig, our span's devices tapped, traced with audio."""
    kind = request.param
    path = tmp_path / "pri.pcapng"
    with rig.engine() as engine:
        tracer = Tracer(engine, str(path), audio=True).start()
        world = start_world(engine, rig, kind)
        backend = world.backend
        try:
            yield engine, backend, world.channels, tracer, path, kind
        finally:
            engine.run(backend.stop)
            tracer.stop()


def test_pri_call_with_early_media_in_the_trace(traced_world):
    engine, backend, channels, tracer, path, kind = traced_world
    law = "alaw" if kind == "E1" else "ulaw"
    engine.run(backend.far_end.dial, "5551000", calling="5552000")
    assert engine.wait_until(lambda: channels, T)
    channel = with_tones(channels[0])
    channel.ring(2, negotiate_early_media=True, custom_ringtone=EU, loop_ringtone=True)
    assert channel.answer() is State.ANSWERED
    engine.sleep(0.5)
    assert channel.hang_up() is State.IDLE
    engine.sleep(0.5)  # RELEASE and RELEASE COMPLETE cross
    engine.run(backend.stop)
    stats = tracer.stop()
    assert stats.dropped == 0 and not stats.failure

    # Q.931 as Wireshark reads it: who sent what (the pseudo-header's direction), the
    # progress indicator, the causes
    rows = fields(path, "q931", "lapd.direction", "q931.message_type",
                  "q931.progress_indicator.description", "q931.cause_value",
                  "q931.called_party_number.digits", "lapd.control.n_s")
    # an I frame Q.921 sent again (a late acknowledgement, real time) counts once
    rows = list(dict.fromkeys(tuple(row) for row in rows))
    messages = [(int(direction), int(kind_, 16) if kind_.startswith("0x") else int(kind_),
                 pi, cause, called) for direction, kind_, pi, cause, called, _ns in rows]
    names = [(d, q931.MessageType(m).name) for d, m, *_ in messages]
    # lapd.direction: 0 user -> network, 1 network -> user; we are the user side
    assert names[:4] == [(1, "SETUP"), (0, "CALL_PROCEEDING"), (0, "ALERTING"),
                         (0, "CONNECT")], names
    assert names[-3:] == [(0, "DISCONNECT"), (1, "RELEASE"), (0, "RELEASE_COMPLETE")]
    by_name = {q931.MessageType(m).name: (pi, cause, called)
               for _d, m, pi, cause, called in messages}
    assert by_name["SETUP"][2] == "5551000"
    assert by_name["ALERTING"][0] == "0x08"  # in-band information is now available
    assert by_name["DISCONNECT"][1] == "16"  # normal clearing, from us
    assert by_name["RELEASE"][1] in ("", "16")
    # our own reading of the file agrees on the link type and the sides
    trace = pcapng.read(str(path))
    lapd = [p for p in trace.packets if p.interface.linktype == pcapng.LINKTYPE_LINUX_LAPD]
    assert lapd and all(not pcapng.parse_lapd(p.data)[1] for p in lapd)  # user side

    # the B-channel's audio as RTP: no loss in either stream, and what we sent the caller
    # before the answer is the ringback
    streams = rtp_streams(path)
    ours = [s for s in streams if s["src"].startswith("198.19.")]
    assert ours and all(s["lost"] == 0 for s in streams), streams
    payload_type = "8" if law == "alaw" else "0"
    rows = fields(path, f"rtp && ip.src == {ours[0]['src']}", "rtp.p_type", "rtp.payload",
                  heuristic=True)
    assert {pt for pt, _ in rows} == {payload_type}
    audio = b"".join(bytes.fromhex(payload.replace(":", "")) for _, payload in rows[:40])
    assert len(audio) == 40 * 160
    assert abs(dominant_frequency(decode(audio, law)) - 425) < 3


def rtp_streams(path, heuristic: bool = True) -> list[dict]:
    """``tshark -z rtp,streams``: each stream's addresses, SSRC, packets and loss."""
    extra = ["--enable-heuristic", "rtp_udp"] if heuristic else []
    out = tshark(path, *extra, "-q", "-z", "rtp,streams")
    streams = []
    for line in out.splitlines():
        words = line.split()
        if len(words) > 10 and words[6].startswith("0x"):
            streams.append({"src": words[2], "dst": words[4], "ssrc": words[6],
                            "payload": words[7], "packets": int(words[8]),
                            "lost": int(words[9])})
    return streams


def test_malformed_d_channel_frame_is_shown_and_the_span_goes_on(traced_world):
    engine, backend, channels, tracer, path, _kind = traced_world
    # a SETUP whose channel identification runs past the end of the frame, in a UI frame
    broken = bytes.fromhex("000103" "08010505" "181001")
    engine.run(backend.loop.tap.inject_frame, backend.loop.cpe.layout.dchannel, broken)
    engine.sleep(0.2)
    far = engine.run(backend.far_end.dial, "5551000")
    assert engine.wait_until(lambda: channels, T)  # the span still takes calls
    assert channels[0].hang_up() is State.IDLE
    assert engine.wait_until(lambda: far.cleared, T)
    engine.run(backend.stop)
    tracer.stop()
    rows = fields(path, "q931", "q931.message_type", "_ws.malformed")
    assert rows[0][0] == "0x05" and "_ws.malformed" in rows[0][1]  # the broken SETUP
    assert ["0x05", ""] in rows[1:]  # the good one after it


def test_b_channel_audio_follows_the_channels_law_and_linear_mode(tmp_path):
    """Each opening of a channel is a stream of its own; the payload type follows
    DAHDI_SETLAW, a linear channel's samples are written A-law, a gap in the audio is a
    jump of the RTP timestamp, and a block that is not a whole frame is carried over to
    the next (the last part at the end)."""
    conf = pri_loop_conf("E1", dynamic=True)
    path = tmp_path / "audio.pcapng"
    tone = [int(8000 * ((n % 20) - 10) / 10) for n in range(160)]
    with Engine(VirtualClock()) as engine, engine.actor():
        kernel = SimKernel(engine)
        engine.run(kernel.configure, conf)
        channo = SystemConf.parse(conf).pri_spans()[0].bchannels[0]
        tracer = Tracer(engine, str(path), audio=True).start()
        io = TapDeviceIO(kernel, engine, network=False)

        def one_call(law: int | None, blocks: list[bytes], pause: float = 0.0) -> None:
            channel = engine.run(Channel.open, channo, io=io)
            engine.run(setup, channel, law)
            for n, block in enumerate(blocks):
                if n and pause:
                    engine.sleep(pause)
                assert engine.run(channel.write_frame, block) == len(block)
            engine.run(channel.close)

        def setup(channel: Channel, law: int | None) -> None:
            channel.set_blocksize(160)
            channel.set_buffers(numbufs=8)
            channel.set_audio_mode(True)
            if law is None:
                channel.set_linear(True)
            else:
                channel.set_law(law)

        # two frames a second apart: the line carried 49 frames of nothing between them
        one_call(abi.DAHDI_LAW_MULAW, [g711.codec("ulaw").encode(tone)] * 2, pause=1.0)
        one_call(None, [array_bytes(tone)])
        one_call(abi.DAHDI_LAW_ALAW, [bytes(100), bytes(100), bytes(130)])
        tracer.stop()
    rows = fields(path, "rtp", "rtp.ssrc", "rtp.p_type", "rtp.seq", "rtp.timestamp",
                  "rtp.marker", "udp.length", heuristic=True)
    by_ssrc: dict[str, list[list[str]]] = {}
    for ssrc, *rest in rows:
        by_ssrc.setdefault(ssrc, []).append(rest)
    ulaw, linear, pieces = by_ssrc.values()
    assert [row[:4] for row in ulaw] == [["0", "0", "0", "1"], ["0", "1", "8000", "1"]]
    assert [row[0] for row in linear] == ["8"]
    payload = bytes.fromhex(fields(path, "rtp.ssrc == " + list(by_ssrc)[1], "rtp.payload",
                                   heuristic=True)[0][0].replace(":", ""))
    assert payload == g711.codec("alaw").encode(tone)
    # 100 + 100 + 130 bytes: a 160-byte frame, 160 more, which the last block made, and
    # what was left, 10 bytes, when the trace stopped
    assert [(row[1], row[2], row[4]) for row in pieces] == [
        ("0", "0", "180"), ("1", "160", "180"), ("2", "320", "30")]


def array_bytes(samples: list[int]) -> bytes:
    return array.array("h", samples).tobytes()


# --------------------------------------------------------------------------- a SIP call
@pytest.fixture
def traced_uas(tmp_path):
    server = Uas()
    tracer = Tracer(server.engine, str(tmp_path / "sip.pcapng")).start()
    yield server, tracer, tmp_path / "sip.pcapng"
    tracer.stop()
    server.close()


def test_sip_call_with_a_183_in_the_trace(traced_uas, peer_factory):
    uas, tracer, path = traced_uas
    peer = peer_factory(uas.address)
    channel = incoming(uas, peer)
    channel.ring(negotiate_early_media=True, custom_ringtone=EU, loop_ringtone=True)
    progress = peer.expect(183)
    early = peer.rtp_packets(1.0)
    answer_through(channel, peer)
    peer.send_rtp([RtpPacket(8, n, 160 * n, 0x1234, bytes(160)).serialize()
                   for n in range(25)], interval=0.02)
    peer.bye()
    peer.expect(200, method="BYE")
    assert channel.wait_for_idle(5) is State.IDLE and channel.cause() is Cause.NORMAL
    tracer.stop()

    rows = fields(path, "sip", "sip.Method", "sip.Status-Code", "sip.CSeq.method",
                  "sdp.media.format", "sdp.media.port")
    # each message once, in the order first sent (a loaded machine may delay the ACK
    # past the shrunk T1, and the 200 is then sent again, as it should be)
    messages = list(dict.fromkeys(tuple(row) for row in rows))
    assert [tuple(row[:3]) for row in messages] == [
        ("INVITE", "", "INVITE"), ("", "100", "INVITE"), ("", "183", "INVITE"),
        ("", "200", "INVITE"), ("ACK", "", "ACK"), ("BYE", "", "BYE"), ("", "200", "BYE")]
    # the 183's SDP, as Wireshark reads it: A-law first (we chose), telephone-event kept;
    # the 200 repeats it
    port = str(sdp_address(progress.body)[1])
    assert list(messages[2][3:]) == ["ITU-T G.711 PCMA,DynamicRTP-Type-101,8,101,101", port]
    assert messages[3][3:] == messages[2][3:]
    # RTP found by Wireshark through the SDP (no heuristic): ours from the 183 on, the
    # peer's after the answer, none lost
    streams = rtp_streams(path, heuristic=False)
    assert len(streams) == 2 and all(s["lost"] == 0 for s in streams), streams
    theirs, = [s for s in streams if s["ssrc"] == "0x00001234"]
    ours, = [s for s in streams if s["ssrc"] != "0x00001234"]
    assert theirs["packets"] == 25 and theirs["dst"] == "127.0.0.1"
    assert ours["packets"] >= len(early) >= 40 and ours["payload"] == "g711A"


@pytest.fixture
def peer_factory():
    made = []

    def make(address):
        made.append(SipPeer(address))
        return made[-1]
    yield make
    for peer in made:
        peer.close()


def test_malformed_sip_datagram_is_shown_and_answered(traced_uas, peer_factory):
    uas, tracer, path = traced_uas
    peer = peer_factory(uas.address)
    peer.send("INVITE sip:service@127.0.0.1 SIP/2.0\r\n"
              f"Via: SIP/2.0/UDP {peer.hostport};branch=z9hG4bK-broken\r\n"
              "From: <sip:peer@127.0.0.1>;tag=1\r\nTo: <sip:service@127.0.0.1>\r\n"
              "Call-ID: broken@127.0.0.1\r\nCSeq: 1 INVITE\r\nContent-Length: abc\r\n\r\n")
    peer.expect(400)
    tracer.stop()
    rows = fields(path, "sip", "sip.Method", "sip.Status-Code", "_ws.malformed")
    assert rows == [["INVITE", "", "_ws.malformed"], ["", "400", ""]]


# --------------------------------------------------------------------------- size and failures
def sip_traffic(uas, peer_factory, calls: int) -> None:
    """``calls`` SIP calls rejected at once: a few kB of datagrams each."""
    for _ in range(calls):
        peer = peer_factory(uas.address)
        channel = incoming(uas, peer)
        channel.reject(Cause.BUSY)
        peer.ack(peer.expect(486))


def test_rotation_keeps_complete_files(tmp_path, peer_factory, caplog):
    uas = Uas()
    path = tmp_path / "rot.pcapng"
    try:
        tracer = Tracer(uas.engine, str(path), max_bytes=4096, files=3).start()
        sip_traffic(uas, peer_factory, 8)
        stats = tracer.stop()
    finally:
        uas.close()
    names = [rotated_name(str(path), n) for n in range(4)]
    assert names[1] == str(tmp_path / "rot.1.pcapng")
    assert stats.files > 3  # it rotated past the three it keeps
    kept = [tmp_path / name for name in names[:3]]
    assert all(p.exists() for p in kept) and not (tmp_path / names[3]).exists()
    total = 0
    times = []
    for each in kept:
        assert each.stat().st_size <= 4096
        trace = pcapng.read(str(each))  # complete: its own section header and interfaces
        assert trace.applications[0].startswith("uascall") and trace.packets
        total += len(trace.packets)
        times.append([packet.timestamp for packet in trace.packets])
        # and tshark reads every one without complaint
        assert tshark(each, "-Y", "sip", "-T", "fields", "-e", "sip.CSeq.method").strip()
    # the plain name is the newest file, .1 the one before it, ...: each file's records
    # come after the older file's (a retransmission under load may be the very last)
    newest, older, oldest = times
    assert min(newest) >= max(older) and min(older) >= max(oldest)
    assert total < stats.records


def test_a_full_queue_drops_and_counts_and_the_engine_never_waits(tmp_path, peer_factory):
    uas = Uas()
    released = threading.Event()

    class SlowDisk(io.BytesIO):
        """Takes the section header at once, then blocks the writer until released."""

        def write(self, data):
            if self.tell() > 0:
                released.wait(30)
            return super().write(data)

        def close(self):
            (tmp_path / "slow.pcapng").write_bytes(self.getvalue())
            super().close()

    tapped = []

    def count(*record):
        tapped.append(record)

    try:
        uas.engine.run(uas.engine.taps.listen, "datagram", count)
        tracer = Tracer(uas.engine, "slow.pcapng", queue_limit=5,
                        opener=lambda _name: SlowDisk()).start()
        sip_traffic(uas, peer_factory, 3)  # the calls go on while the writer is stuck
    finally:
        uas.close()  # nothing more is tapped
    dropped = tracer.stats.dropped
    released.set()
    stats = tracer.stop()
    assert dropped > 0 and stats.dropped == dropped and not stats.failure
    trace = pcapng.read(str(tmp_path / "slow.pcapng"))
    # what was not dropped was written: what the writer had taken and the queue's 5
    assert 5 <= len(trace.packets) == stats.records == len(tapped) - dropped


def whole_blocks(path) -> list[int]:
    """The type of each block of the pcapng file at ``path``, walked by hand (not by the
    module under test): every block whole, its total length the same at both ends."""
    data = path.read_bytes()
    kinds = []
    offset = 0
    while offset < len(data):
        assert offset + 12 <= len(data), f"{len(data) - offset} bytes at {offset}: a cut block"
        kind, total = struct.unpack_from("<II", data, offset)
        assert total >= 12 and total % 4 == 0, f"block at {offset}: length {total}"
        assert offset + total <= len(data), (
            f"block at {offset} declares {total} bytes; the file ends {len(data) - offset} "
            "bytes after its start")
        assert struct.unpack_from("<I", data, offset + total - 4)[0] == total
        kinds.append(kind)
        offset += total
    assert kinds and kinds[0] == pcapng.BLOCK_SHB
    if shutil.which("tshark"):
        done = subprocess.run(["tshark", "-r", str(path)], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
    return kinds


class SmallDisk:
    """Files on a disk with room for ``room`` bytes in all, as write(2) on a full disk
    does it: a write larger than the room left writes what fits and says how much (a
    short write), the next one fails with ENOSPC. ``memory``: files in memory, written
    to ``folder`` at close; else real files, cut back with a real ftruncate."""

    def __init__(self, folder, room: int, memory: bool) -> None:
        self.folder, self.room, self.memory = folder, room, memory

    def used(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir())

    def open(self, name: str):
        disk = self
        path = self.folder / os.path.basename(name)
        base = io.BytesIO if self.memory else io.FileIO

        class File(base):
            def write(self, data):
                left = disk.room - disk.used() - (self.tell() if disk.memory else 0)
                if left <= 0:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return super().write(bytes(data[:left]))

            def close(self):
                if disk.memory and not self.closed:
                    path.write_bytes(self.getvalue())
                super().close()

        return File() if self.memory else File(str(path), "wb")


@pytest.mark.parametrize("memory", [True, False], ids=["in-memory", "real-file"])
def test_a_full_disk_stops_the_trace_with_one_warning_and_the_calls_go_on(
        tmp_path, peer_factory, caplog, memory):
    uas = Uas()
    disk = SmallDisk(tmp_path, 3001, memory)  # not at a block's end: a block is cut short
    try:
        tracer = Tracer(uas.engine, "full.pcapng", opener=disk.open).start()
        with caplog.at_level(logging.WARNING, logger="uascall.trace.tracer"):
            sip_traffic(uas, peer_factory, 4)  # more than 3000 bytes of SIP
            assert uas.engine.wait_until(lambda: bool(tracer.stats.failure), T)
            sip_traffic(uas, peer_factory, 2)  # calls after the trace stopped
        stats = tracer.stop()
        assert uas.engine.taps.datagram is None  # nobody listens any more
    finally:
        uas.close()
    assert "No space left on device" in stats.failure
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "tracing stopped (the calls go on)" in warnings[0].message
    # the write the disk took part of was taken back: the file ends at its last whole
    # block, as the stats say, and holds the packets they count
    path = tmp_path / "full.pcapng"
    kinds = whole_blocks(path)
    assert 2000 < path.stat().st_size == stats.bytes < 3001
    assert kinds.count(pcapng.BLOCK_EPB) == stats.records > 0
    assert len(pcapng.read(str(path)).packets) == stats.records


def test_a_full_disk_while_rotating_leaves_every_file_whole(tmp_path, peer_factory):
    uas = Uas()
    disk = SmallDisk(tmp_path, 10_001, memory=False)
    path = tmp_path / "rot.pcapng"
    try:
        tracer = Tracer(uas.engine, str(path), max_bytes=4096, files=3,
                        opener=disk.open).start()
        sip_traffic(uas, peer_factory, 8)
        assert uas.engine.wait_until(lambda: bool(tracer.stats.failure), T)
        stats = tracer.stop()
    finally:
        uas.close()
    assert "No space left on device" in stats.failure and stats.files >= 3
    kept = sorted(tmp_path.iterdir())
    assert len(kept) == 3
    for each in kept:
        whole_blocks(each)
    assert path.stat().st_size == stats.bytes


def test_a_failing_listener_is_removed_after_one_log_and_the_call_goes_on(
        traced_uas, peer_factory, caplog):
    uas, tracer, path = traced_uas
    seen = []

    def broken(*record):
        seen.append(record)
        raise RuntimeError("a bug in a tap listener")

    uas.engine.run(uas.engine.taps.listen, "datagram", broken)
    peer = peer_factory(uas.address)
    with caplog.at_level(logging.ERROR, logger="uascall.trace.taps"):
        channel = incoming(uas, peer)
        channel.reject(Cause.BUSY)
        peer.ack(peer.expect(486))
    assert len(seen) == 1 and len(caplog.records) == 1
    tracer.stop()
    # the trace, another listener, saw everything (the 486 maybe more than once: it is
    # sent again until the ACK comes)
    statuses = [row[0] for row in fields(path, "sip", "sip.Status-Code") if row[0]]
    assert list(dict.fromkeys(statuses)) == ["100", "486"]


def test_taps_cost_a_none_test_when_nobody_listens():
    taps = Taps()
    assert (taps.frame, taps.audio, taps.datagram, taps.devices) == (None, None, None, False)
    got = []
    taps.listen("frame", got.append)
    assert taps.frame is not None
    taps.frame(1)
    taps.unlisten("frame", got.append)
    assert taps.frame is None and got == [1]
    with pytest.raises(ValueError, match="expected one of frame, audio, datagram"):
        taps.listen("q931", got.append)


def test_a_signalling_trace_leaves_the_b_channels_data_path_alone(tmp_path):
    """Tracing the D-channels only: a B-channel's reads and writes go straight to the
    device below the tap (no call of the tap's between, 50 blocks a second each way);
    the D-channel's frames pass the tap; with audio traced, so do the B-channel's."""
    conf = pri_loop_conf("E1", dynamic=True)
    span = SystemConf.parse(conf).pri_spans()[0]
    bchannel, dchannel = span.bchannels[0], span.dchannel

    class Counting(TapDeviceIO):
        calls = 0

        def read(self, fd: int, size: int) -> bytes:
            Counting.calls += 1
            return super().read(fd, size)

        def write(self, fd: int, data: bytes) -> int:
            Counting.calls += 1
            return super().write(fd, data)

    for audio, expected in ((False, 0), (True, 2)):
        with Engine(VirtualClock()) as engine, engine.actor():
            kernel = SimKernel(engine)
            engine.run(kernel.configure, conf)
            tracer = Tracer(engine, str(tmp_path / f"{audio}.pcapng"), audio=audio).start()
            io = Counting(kernel, engine, network=False)
            Counting.calls = 0
            b = engine.run(Channel.open, bchannel, io=io)
            engine.run(b.set_blocksize, 160)
            assert engine.run(b.write_frame, bytes(160)) == 160
            engine.sleep(0.1)
            assert engine.run(b.read_frame) is not None  # what the line brought back
            assert Counting.calls == expected, f"audio={audio}"
            d = engine.run(Channel.open, dchannel, io=io)
            engine.run(d.write_frame, b"\x02\x01\x7f" + bytes(2))  # SABME, FCS to fill
            assert Counting.calls == expected + 1
            engine.run(b.close)
            engine.run(d.close)
            tracer.stop()


def test_a_trace_leaves_the_device_taps_as_it_found_them(tmp_path):
    with Engine(VirtualClock()) as engine:
        Tracer(engine, str(tmp_path / "a.pcapng")).start().stop()
        assert engine.taps.devices is False
        engine.taps.devices = True  # asked for by another listener (uascall run --levels)
        tracer = Tracer(engine, str(tmp_path / "b.pcapng")).start()
        tracer.stop()
        assert engine.taps.devices is True
        assert (engine.taps.frame, engine.taps.datagram) == (None, None)


# --------------------------------------------------------------------------- the command line
def test_trace_options_and_the_dahdi_backends_devices(tmp_path):
    parser = argparse.ArgumentParser()
    add_trace_options(parser)
    args = parser.parse_args(["--trace", str(tmp_path / "cli.pcapng"), "--trace-max-mb",
                              "0.5", "--trace-files", "3", "--trace-audio"])
    conf = pri_loop_conf("E1", dynamic=True)
    with Engine(VirtualClock()) as engine, engine.actor():
        kernel = SimKernel(engine)
        engine.run(kernel.configure, conf)
        backend = DahdiBackend(engine, system_conf=SystemConf.parse(conf), io=kernel,
                               node="net")
        with tracing(engine, args) as trace:
            assert trace.tracer.max_bytes == 500_000 and trace.tracer.files == 3
            assert trace.tracer.audio
            trace.attach(backend)
            assert isinstance(backend.io, TapDeviceIO) and backend.io.io is kernel
            assert backend.io.network  # --node net: the network side in the pseudo-header
            engine.run(backend.start)
            engine.sleep(1.0)
            engine.run(backend.stop)
    # both spans of the loop are ours here, each the network side: what each sent and
    # received is in the trace, on an interface per span, and Wireshark reads what we
    # sent as going from the network to the user, what we received the other way
    rows = fields(tmp_path / "cli.pcapng", "lapd", "frame.interface_name", "lapd.direction")
    assert {row[0] for row in rows} == {"span1-dchan", "span2-dchan"}
    packets = pcapng.read(str(tmp_path / "cli.pcapng")).packets
    assert [pcapng.parse_lapd(p.data)[1] for p in packets] == [True] * len(rows)
    assert [row[1] for row in rows] == ["1" if p.sent else "0" for p in packets]
    assert {p.sent for p in packets} == {True, False}


def test_no_trace_option_no_tracer(tmp_path):
    parser = argparse.ArgumentParser()
    add_trace_options(parser)
    with Engine(VirtualClock()) as engine, tracing(engine, parser.parse_args([])) as trace:
        assert trace.tracer is None and not engine.taps.devices
        trace.attach(object())


def test_a_path_that_cannot_be_written_fails_at_once(tmp_path):
    parser = argparse.ArgumentParser()
    add_trace_options(parser)
    args = parser.parse_args(["--trace", str(tmp_path / "no" / "such" / "dir.pcapng")])
    with Engine(VirtualClock()) as engine:
        with pytest.raises(Exception, match="cannot write there: No such file"):
            with tracing(engine, args):
                pass
        assert engine.taps.frame is None
