"""A finished call is freed by reference counting alone, not left for the cyclic GC.

At hundreds of calls a second, every object of a finished call that sits in a reference
cycle waits for the collector's passes, and a full pass over tens of thousands of them
holds the engine for 100-300 ms: long enough for overload control to answer 503 (issue
15's benchmark, BENCHMARKS.md). So the collector must find (nearly) nothing after calls.
"""

from __future__ import annotations

import collections
import gc
import logging
from collections.abc import Callable

from uascall.channel import State

from .helpers import T, World
from .sip_peer import SipPeer, Uas, answered

CALLS = 10


def cycles_after(make_calls: Callable[[int], None], count: int = CALLS
                 ) -> tuple[int, collections.Counter]:
    """The objects the collector finds in reference cycles after ``make_calls(count)``
    (one call made first: what is made once per process, caches and the DTMF bank, is
    not a call's), and their kinds."""
    make_calls(1)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    # the log records pytest keeps would hold the calls' objects alive
    logger = logging.getLogger("uascall")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        make_calls(count)
        found = gc.collect()
        kinds = collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}"
                                    for o in gc.garbage)
    finally:
        logger.setLevel(level)
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    return found, kinds


# (a few objects a call may die in a cycle outside uascall's making, e.g. an exception's
# traceback; a call's own cycles were 76-100 objects on SIP, 4 on PRI)
def test_finished_sip_calls_leave_no_reference_cycles():
    uas = Uas()
    try:
        found, kinds = cycles_after(lambda count: sip_calls(uas, count))
        assert found <= 2 * CALLS, (f"{found} objects in reference cycles after {CALLS} "
                                    f"calls: {kinds.most_common(12)}")
    finally:
        uas.close()


def test_finished_pri_calls_leave_no_reference_cycles(world: World):
    """A PRI call that played DTMF and was cleared by the far end (a PriCall held its
    leg through a listener, the leg the call: 4 objects a call before)."""
    def pri_calls(count: int) -> None:
        for _ in range(count):
            channel, far = world.incoming()
            assert channel.answer() is State.ANSWERED
            channel.DTMFPlayer.play("1")
            world.engine.run(far.hangup)
            assert channel.wait_for_idle(T) is State.IDLE
            del channel, far
        world.channels.clear()
        world.engine.sleep(0.3)

    found, kinds = cycles_after(pri_calls)
    assert found == 0, (f"{found} objects in reference cycles after {CALLS} calls: "
                        f"{kinds.most_common(12)}")


def sip_calls(uas: Uas, count: int, *, keys: str = "") -> None:
    """``count`` SIP calls to ``uas``, each answered, playing ``keys`` if any, and hung up
    by the caller."""
    for _ in range(count):
        peer = SipPeer(uas.address)
        try:
            channel = answered(uas, peer)
            if keys:
                assert channel.DTMFPlayer.play(keys) is channel.DTMFPlayer.Cause.NORMAL
            peer.bye()
            peer.expect(200, method="BYE")
            channel.wait_for_idle()
        finally:
            peer.close()
        del channel
    uas.engine.sleep(0.3)
