"""A text to say as a ringtone or a prompt: signalled with its first words, heard as it is
rendered, errors where they can be known, the rendering stopped with the call
(issue 12, 9).

A rendering that takes for ever is made by stopping the real espeak-ng (SIGSTOP) as
soon as it starts: the signal must still go out, in the same real time as ever. Those
tests run on an engine in real time, since virtual time waits for a rendering (the
render thread is an actor) and would wait for a stopped one until it times out; the
bounds they wait with are for failures only. What is heard and how long ring() blocks
are checked in virtual time, exactly.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from tests import audio
from uascall import PlayableMedia
from uascall.channel import MediaStarted, State
from uascall.errors import Error
from uascall.media import tts

from .helpers import T, World, start_world
from .sip_peer import incoming


def long_text(tag: str, sentences: int = 150) -> str:
    """About 5.5 s of speech a sentence (150: fourteen minutes), unlike any other test's
    (``tag``), so that no cache has it."""
    return " ".join(f"Thank you for calling {tag}. Your call is number {n} in the queue, "
                    "please hold." for n in range(sentences))


@pytest.fixture(autouse=True)
def _no_cached_speech(monkeypatch, tmp_path):
    monkeypatch.setenv("UASCALL_CACHE", str(tmp_path / "cache"))
    tts.clear_memory_cache()
    yield
    tts.clear_memory_cache()


@pytest.fixture
def live_world(rig):
    """The ``world`` of the other scenarios (E1), on an engine in real time."""
    with rig.engine(virtual=False) as engine:
        yield start_world(engine, rig, "E1")
        for pid in espeak_children():  # a failed test's stopped espeak-ng
            os.kill(pid, signal.SIGKILL)


# -- what a rendering leaves behind ----------------------------------------------------------


def espeak_children(*, rendering: bool = False) -> list[int]:
    """espeak-ng processes whose parent is this process, zombies (not reaped) included;
    ``rendering``: only those given a text to speak (not ``espeak-ng --version``)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:]
        if name != "espeak-ng" or int(rest.split()[1]) != os.getpid():
            continue
        if rendering:
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if b"--stdin" not in f.read().split(b"\0"):
                        continue
            except OSError:
                continue
        found.append(int(entry))
    return found


def render_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("uascall-tts")]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def eventually(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + T
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def nothing_left(fds: int) -> bool:
    """No espeak-ng process (not even a zombie), no render thread, no fd more than
    ``fds``: a rendering that was stopped has let everything go."""
    return eventually(lambda: not espeak_children() and not render_threads()
                      and open_fds() <= fds)


class Stall(threading.Thread):
    """Stops (SIGSTOP) the first espeak-ng this process starts, the moment it appears: a
    rendering that takes for ever."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.pid: int | None = None
        self.start()

    def run(self) -> None:
        deadline = time.monotonic() + T
        while self.pid is None and time.monotonic() < deadline:
            for pid in espeak_children(rendering=True):
                os.kill(pid, signal.SIGSTOP)
                self.pid = pid
                break

    def stopped(self) -> bool:
        """Whether it stopped one (a signal takes effect when the process next runs)."""
        self.join(T)
        return self.pid is not None and eventually(lambda: _state(self.pid) == "T")


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return "gone"
    return stat[stat.rindex(")") + 2]


class InThread(threading.Thread):
    """``fn()`` on an application thread of its own; :meth:`outcome` is what it returned
    or raised."""

    def __init__(self, fn: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self._fn = fn
        self.result: object = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:
            self.error = exc

    def outcome(self) -> object:
        self.join(T)
        assert not self.is_alive(), "still blocked"
        if self.error is not None:
            raise self.error
        return self.result


# -- signalled at once --------------------------------------------------------------------------


def test_a_long_announcement_is_signalled_with_its_first_words(live_world):
    """Ten minutes of text whose rendering never ends: ALERTING with PI #8 goes out while
    espeak-ng has not finished (it rendered the whole text first: 11 to 22 s on a PRI line,
    where the caller's network gives up), and hanging up stops the rendering: espeak-ng
    killed and reaped, its thread ended, its pipes closed."""
    channel, _far = live_world.incoming()
    fds = open_fds()
    greeting = PlayableMedia(text_to_say=long_text("first words"), channel=channel)
    stall = Stall()
    ringing = InThread(lambda: channel.ring(None, negotiate_early_media=True,
                                            custom_ringtone=greeting))
    try:
        assert stall.stopped()  # espeak-ng started, and stopped at once
        assert eventually(lambda: live_world.alertings() != []), \
            "no ALERTING while the text was being rendered"
        assert live_world.alertings()[0].progress_descriptions == [8]
        assert _state(stall.pid) == "T"  # signalled before the rendering finished
        assert ringing.is_alive() and channel.state() is State.RING_INCOMING
        assert channel.hang_up() is State.IDLE
        assert ringing.outcome() is State.IDLE
        assert nothing_left(fds)
    finally:
        if stall.pid is not None and _state(stall.pid) != "gone":
            os.kill(stall.pid, signal.SIGKILL)  # the old code waited for it


def test_the_first_words_are_heard_while_the_rest_is_rendered(live_world):
    """Whatever espeak-ng had written when it stalled is heard at once: the words come as
    they are rendered, not after the whole text."""
    channel, far = live_world.incoming()
    greeting = PlayableMedia(text_to_say=long_text("heard early"), channel=channel)
    first_words = []

    def stall_after_first_words() -> None:
        deadline = time.monotonic() + T
        while not first_words and time.monotonic() < deadline:
            with tts._guard:  # the rendering under way, once it has some audio
                rendering = next(iter(tts._inflight.values()), None)
            if rendering is not None and rendering.length > 0:
                for pid in espeak_children(rendering=True):
                    os.kill(pid, signal.SIGSTOP)
                first_words.append(rendering.length)

    staller = threading.Thread(target=stall_after_first_words, daemon=True)
    staller.start()
    ringing = InThread(lambda: channel.ring(None, negotiate_early_media=True,
                                            custom_ringtone=greeting))
    staller.join(T)
    assert first_words, "no audio from espeak-ng"
    # a second of speech reaches the caller while espeak-ng is stopped
    assert eventually(lambda: audio.rms(far.heard_pcm()[-8000:] or [0]) > 300)
    assert eventually(lambda: any(_state(pid) == "T" for pid in espeak_children()))
    assert ringing.is_alive()
    far_hangup(live_world, far)
    assert ringing.outcome() is State.IDLE
    assert eventually(lambda: not espeak_children() and not render_threads())


def test_ring_none_blocks_for_the_whole_text_when_its_rendering_ends_as_it_starts(
        live_world, monkeypatch):
    """The rendering ends just after the ringtone starts: ring(None) still blocks until
    the whole text is heard. It took the length played so far when the ringtone started
    for the whole one as soon as the rendering was complete (a race seen in CI: an FXS
    greeting of 1.05 s cut to 0.44 s)."""
    channel, far = live_world.incoming()
    greeting = PlayableMedia(text_to_say="Please hold the line.", channel=channel)
    stall = Stall()
    play_ringtone = channel._engine_play_ringtone

    def rendering_ends_as_it_starts(source, ended=None):
        length = play_ringtone(source, ended)
        os.kill(stall.pid, signal.SIGCONT)
        deadline = time.monotonic() + T
        while not source.complete and time.monotonic() < deadline:
            time.sleep(0.002)  # on the engine thread: nothing else moves meanwhile
        return length

    monkeypatch.setattr(channel, "_engine_play_ringtone", rendering_ends_as_it_starts)
    mark = len(far.heard)
    ringing = InThread(lambda: channel.ring(None, negotiate_early_media=True,
                                            custom_ringtone=greeting))
    assert stall.stopped()
    assert ringing.outcome() is State.RING_INCOMING
    heard = far.heard_pcm()[mark:]
    assert greeting.duration > 1.0
    assert len(heard) >= 0.9 * greeting.duration * 8000
    channel.hang_up()


def far_hangup(world: World, far) -> None:
    world.engine.run(far.hangup)


def test_a_rendering_that_fails_after_the_signal_raises_from_ring_none(live_world):
    """espeak-ng dies half-way (killed): the ringtone stops, and ring(None), which blocks
    for it, raises Error with espeak-ng's exit status; the call still rings."""
    channel, _far = live_world.incoming()
    fds = open_fds()
    greeting = PlayableMedia(text_to_say=long_text("dies half-way"), channel=channel)
    stall = Stall()
    ringing = InThread(lambda: channel.ring(None, negotiate_early_media=True,
                                            custom_ringtone=greeting))
    assert stall.stopped()
    assert eventually(lambda: live_world.alertings() != [])
    os.kill(stall.pid, signal.SIGKILL)
    with pytest.raises(Error, match=r"ring\(\): the ringtone PlayableMedia\(text 'Thank you "
                                    r".*\) stopped: espeak-ng failed \(exit status -9\)"):
        ringing.outcome()
    assert channel.state() is State.RING_INCOMING
    assert channel.answer() is State.ANSWERED  # the call goes on
    channel.hang_up()
    assert nothing_left(fds)


def test_a_prompt_plays_as_it_is_rendered_and_stop_ends_the_rendering(live_world):
    """FilePlayer.play() of a long text starts with its first words, not after the
    whole; stop() from another thread ends the play (ABORTED) and the rendering."""
    channel, _far = live_world.incoming()
    channel.answer()
    fds = open_fds()
    started = []
    channel.listeners.append(lambda _c, event: started.append(event)
                             if isinstance(event, MediaStarted) else None)
    prompt = PlayableMedia(text_to_say=long_text("a prompt"), channel=channel)
    stall = Stall()
    playing = InThread(lambda: channel.FilePlayer.play(prompt))
    assert stall.stopped()
    assert eventually(lambda: started != []), "the play waited for the whole text"
    assert _state(stall.pid) == "T"
    channel.FilePlayer.stop()
    assert playing.outcome() is channel.FilePlayer.Cause.ABORTED
    assert nothing_left(fds)
    channel.hang_up()


def test_sip_sends_183_while_the_text_is_rendered(uas, peer):
    """The same on SIP: 183 with SDP goes out while espeak-ng has not finished, and
    rejecting the call while it rings stops the rendering."""
    channel = incoming(uas, peer)
    greeting = PlayableMedia(text_to_say=long_text("session progress"), channel=channel)
    stall = Stall()
    ringing = InThread(lambda: channel.ring(None, negotiate_early_media=True,
                                            custom_ringtone=greeting))
    try:
        assert stall.stopped()
        progress = peer.expect(183, T)
        assert progress.body and _state(stall.pid) == "T"
        channel.reject()
        assert ringing.outcome() is State.IDLE
        assert eventually(lambda: not espeak_children() and not render_threads())
    finally:
        if stall.pid is not None and _state(stall.pid) != "gone":
            os.kill(stall.pid, signal.SIGKILL)


# -- virtual time: what is heard, how long ring() blocks, errors before the signal -------------
# These hold exactly only in virtual time, where the rendering thread is an actor that time
# waits for: on the real driver's rig time is real, and its emulated guest renders speech
# more slowly than it plays (silence fills in, ring(None) ends later; an unknown voice is
# found out after FIRST_WORDS_WAIT, so after the signal). Nothing here is the driver's.


@pytest.mark.sim_only
def test_a_streamed_announcement_is_heard_whole_and_ring_none_blocks_for_it(world):
    """A minute of speech, played as it is rendered: every sample in order, nothing lost
    or added, and ring(None) returns when its last sample is heard."""
    channel, far = world.incoming()
    text = long_text("heard whole", sentences=15)
    greeting = PlayableMedia(text_to_say=text, channel=channel)
    state, elapsed = world.elapsed(channel.ring, seconds_ringtime=None,
                                   negotiate_early_media=True, custom_ringtone=greeting)
    assert state is State.RING_INCOMING
    rendered = greeting.encoded(world.law)  # the same rendering, from the memory cache
    assert greeting.duration > 50
    assert elapsed == world.approx(greeting.duration)
    world.engine.sleep(0.1)
    assert rendered in bytes(far.heard)
    assert len(world.alertings()) == 1
    assert world.alertings()[0].progress_descriptions == [8]


@pytest.mark.sim_only
def test_text_that_cannot_be_spoken_raises_before_anything_is_signalled(world, monkeypatch):
    channel, _far = world.incoming()
    unknown_voice = PlayableMedia(text_to_say="hello there", tts_voice="xx-nonesuch",
                                  channel=channel)
    with pytest.raises(Error, match=r"espeak-ng failed \(exit status 1\): .*voice does not "
                                    "exist"):
        channel.ring(None, negotiate_early_media=True, custom_ringtone=unknown_voice)
    monkeypatch.setattr(tts, "ESPEAK", "uascall-test-no-such-espeak")
    with pytest.raises(Error, match="text to speech needs espeak-ng"):
        channel.ring(None, negotiate_early_media=True,
                     custom_ringtone=PlayableMedia(text_to_say="hello", channel=channel))
    assert world.alertings() == [] and channel.state() is State.CALL_INCOMING
    assert eventually(lambda: not espeak_children() and not render_threads())
    channel.hang_up()
