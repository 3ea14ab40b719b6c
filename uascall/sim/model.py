"""The simulated kernel's state: spans, channels and open files, as dahdi-base keeps them.

Plain data with the few rules that belong to one channel (what an open resets, its idle
pattern, its codec); :mod:`uascall.sim.kernel` moves the data and :mod:`uascall.sim.ioctls`
answers the ioctls.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from uascall.dahdi import abi
from uascall.media import g711
from uascall.sim.readiness import ReadinessFd

if TYPE_CHECKING:
    from uascall.engine import TimerHandle
    from uascall.sim.cas import CasState

SAMPLE_RATE = 8000
#: what a D-channel carries: one E1/T1 timeslot, flags, FCS and stuffed bits included
DCHANNEL_BITS_PER_SECOND = 64_000
MAX_QUEUED_EVENTS = abi.DAHDI_MAX_EVENTSIZE - 1  # one slot stays empty in the ring
SIGNALLING = {
    "bchan": abi.DAHDI_SIG_CLEAR, "inclear": abi.DAHDI_SIG_CLEAR,
    "clear": abi.DAHDI_SIG_CLEAR, "dchan": abi.DAHDI_SIG_HDLCFCS,
    "fcshdlc": abi.DAHDI_SIG_HDLCFCS, "hardhdlc": abi.DAHDI_SIG_HARDHDLC,
    "fxoks": abi.DAHDI_SIG_FXOKS, "fxsks": abi.DAHDI_SIG_FXSKS,
    "unused": 0,
}
SPAN_KINDS = {
    # kind: (channels, default law, line configuration, description)
    "E1": (31, abi.DAHDI_LAW_ALAW,
           abi.DAHDI_CONFIG_CCS | abi.DAHDI_CONFIG_HDB3 | abi.DAHDI_CONFIG_CRC4, "E1"),
    "T1": (24, abi.DAHDI_LAW_MULAW, abi.DAHDI_CONFIG_ESF | abi.DAHDI_CONFIG_B8ZS, "T1"),
    # an FXS card's ports wired to an FXO card's, pair by pair (uascall.sim.cas)
    "ANALOG": (24, abi.DAHDI_LAW_MULAW, 0, "analog"),
}
#: the span type dahdi_dynamic reports (``spantype`` is "DYNAM", five characters at most)
DYNAMIC = "DYNAMIC"
LINE_DOWN = abi.DAHDI_ALARM_RED | abi.DAHDI_ALARM_BLUE | abi.DAHDI_ALARM_LOS


@dataclass
class ChannelStats:
    """Counters a test or benchmark can read (the kernel keeps none of these for users)."""

    tx_bytes: int = 0
    rx_bytes: int = 0
    tx_underruns: int = 0
    rx_overruns: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    frames_dropped: int = 0


@dataclass(frozen=True)
class FrameRecord:
    """One HDLC frame crossing a looped pair, for taps (the FCS is not included)."""

    time: float
    from_channel: int
    to_channel: int
    frame: bytes
    delivered: bool


@dataclass(eq=False)
class SimChannel:
    channo: int
    span: SimSpan
    chanpos: int
    sig: int = 0
    deflaw: int = 0
    file: OpenFile | None = None
    # what an open resets (initialize_channel)
    law: int = 0
    linear: bool = False
    audio: bool = False
    blocksize: int = abi.DAHDI_DEFAULT_BLOCKSIZE
    numbufs: int = abi.DAHDI_DEFAULT_NUM_BUFS
    txpolicy: int = abi.DAHDI_POLICY_IMMEDIATE
    buffer_events: bool = False
    txdisable: bool = False
    underrun_flag: bool = False
    overrun_flag: bool = False
    #: D-channel: when the frames written so far will have left at 64 kbit/s
    hdlc_tx_free_at: float = 0.0
    #: D-channel: frames written and not yet across, each (when its last bit arrives,
    #: frame + FCS, written while another was still on the line); each holds a buffer
    hdlc_tx: deque[tuple[float, bytes, bool]] = field(default_factory=deque)
    #: D-channel: delivers the first of hdlc_tx when its last bit has crossed
    hdlc_timer: TimerHandle | None = None
    #: D-channel: an overrun left the receiver hunting for a flag mid-stream
    hdlc_rx_hunting: bool = False
    flowing: bool = False
    #: when the data written to an idle transmitter starts on the line: at a millisecond
    #: chunk, not at the next tick, so that a writer's frames fall anywhere in a reader's
    #: blocks, as they do on the real driver
    tx_starts_at: float | None = None
    tx: deque[bytes] = field(default_factory=deque)
    tx_offset: int = 0
    #: B-channel: the phase of the line's tick at which it is served (set when opened)
    line_phase: int = 0
    #: B-channel: the line clock's byte count up to which its transmit side has been sent
    line_moved: int = 0
    rx: deque[bytes] = field(default_factory=deque)
    rx_partial: bytearray = field(default_factory=bytearray)
    events: deque[int] = field(default_factory=deque)
    gains: bytes = b""
    chan_alarms: int = 0
    stats: ChannelStats = field(default_factory=ChannelStats)
    #: hook signalling state of an analog (fxoks/fxsks) channel
    cas: CasState | None = None

    def __repr__(self) -> str:
        return f"<SimChannel {self.channo} {self.name} {abi.sig_name(self.sig)}>"

    @property
    def name(self) -> str:
        return f"{self.span.name}/{self.chanpos}"

    @property
    def is_clear(self) -> bool:
        return self.sig == abi.DAHDI_SIG_CLEAR

    @property
    def is_analog(self) -> bool:
        return self.sig in (abi.DAHDI_SIG_FXOKS, abi.DAHDI_SIG_FXSKS)

    @property
    def carries_audio(self) -> bool:
        """Moved at 8000 bytes/s while open: clear channels and analog ports."""
        return self.is_clear or self.is_analog

    @property
    def is_hdlc(self) -> bool:
        return self.sig in (abi.DAHDI_SIG_HDLCFCS, abi.DAHDI_SIG_HARDHDLC)

    def reset(self) -> None:
        self.law = self.deflaw or self.span.deflaw
        self.linear = False
        self.audio = self.is_analog  # CHANCONFIG gives telephony channels FLAG_AUDIO
        self.blocksize = abi.DAHDI_DEFAULT_BLOCKSIZE
        self.numbufs = abi.DAHDI_DEFAULT_NUM_BUFS
        self.txpolicy = abi.DAHDI_POLICY_IMMEDIATE
        self.txdisable = False
        self.underrun_flag = False
        self.overrun_flag = False
        self.flowing = False
        self.flush(read=True, write=True)
        self.events.clear()

    def flush(self, *, read: bool, write: bool) -> None:
        if read:
            self.rx.clear()
            self.rx_partial.clear()
        if write:
            self.tx.clear()
            self.tx_offset = 0
            self.tx_starts_at = None
            # a frame on the line is aborted and the line idles with flags at once
            self.hdlc_tx.clear()
            self.hdlc_tx_free_at = 0.0
            if self.hdlc_timer is not None:
                self.hdlc_timer.cancel()
                self.hdlc_timer = None

    def codec(self) -> g711.Codec:
        return g711.ALAW if self.law == abi.DAHDI_LAW_ALAW else g711.ULAW

    def idle_byte(self) -> int:
        return self.codec().silence if self.audio or self.is_analog else 0xFF


@dataclass(eq=False)
class SimSpan:
    spanno: int
    name: str
    kind: str
    deflaw: int
    lineconfig: int
    channels: list[SimChannel] = field(default_factory=list)
    peer: SimSpan | None = None
    #: what the span reports: its own alarms, plus YELLOW while its peer's line is down
    alarms: int = 0
    #: the alarms a test raised on this span itself
    raised: int = 0
    dchannel_cut: bool = False

    def __repr__(self) -> str:
        return f"<SimSpan {self.spanno} {self.name} {len(self.channels)} channels>"

    def line_up(self) -> bool:
        peer = self.peer
        return (peer is not None and not (self.alarms & LINE_DOWN)
                and not (peer.alarms & LINE_DOWN))


@dataclass(eq=False)
class OpenFile:
    readiness: ReadinessFd
    kind: str  # "ctl", "unspecified" or "channel"
    nonblocking: bool
    chan: SimChannel | None = None

    @property
    def fd(self) -> int:
        return self.readiness.fileno()


def oserror(err: int, where: str) -> OSError:
    strerror = "Unknown error 500 (ELAST)" if err == abi.ELAST else os.strerror(err)
    return OSError(err, strerror, where)
