"""The engine: the one I/O thread that owns every fd and timer of the process.

Theory of operation
-------------------
All protocol code (libpri, the simulated kernel, SIP later) runs on this thread, so none
of it needs locks, and libpri, which is not thread-safe, is only ever called from here.
Application threads never touch an fd: they post work with :meth:`Engine.submit` (a
``concurrent.futures.Future`` comes back) or :meth:`Engine.run` (post and wait), and
they wait with :meth:`Engine.wait` / :meth:`Engine.sleep`, which know about virtual time.

The loop is ``epoll`` plus a timer heap. Descriptors are registered with their own event
masks: DAHDI channels ask for ``EPOLLPRI`` as well as ``EPOLLIN``, because the kernel
reports a queued signalling event as POLLPRI (and as errno 500, ELAST, from read and
write). An ``eventfd`` wakes the loop when another thread posts work.

A simulator that runs on this thread (the simulated DAHDI kernel) says when one of its
descriptors is ready with :meth:`Engine.set_readiness` instead of making the descriptor
itself readable: the loop then dispatches it exactly as epoll would (level-triggered,
with the events it is watched for), without the system calls that would otherwise cost a
quarter of the thread at a thousand channels.

Clocks
------
Every timer is set on the engine's :class:`Clock`. With :class:`MonotonicClock` that is
real time. With :class:`VirtualClock` (the simulator's), time stands still while there is
work to do and jumps to the next timer when the engine is idle **and** no *actor* thread
is running. An actor is an application or test thread that declared itself with
``with engine.actor():``; it counts as running except while it waits in
:meth:`Engine.wait`, :meth:`Engine.sleep` or :meth:`Engine.run`. So a test thread that
calls ``ring(seconds_ringtime=10)`` blocks, the engine finds nothing else to do, and ten
virtual seconds pass in a few milliseconds, with every 20 ms media tick in between run
in order. Threads that are not actors do not hold virtual time back.

Some timers belong to the outside world and cannot be virtual: libpri reads the wall
clock itself (``gettimeofday``), so its deadlines are kept with :meth:`Engine.call_later_real`
on the real monotonic clock in either mode.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import heapq
import itertools
import logging
import math
import os
import queue
import resource
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from uascall.errors import ArgumentError, Error, Hangup
from uascall.faultlog import FaultLog, describe_callable
from uascall.trace.taps import Taps

log = logging.getLogger(__name__)

T = TypeVar("T")
FdCallback = Callable[[int], None]
ErrorCallback = Callable[[BaseException], None]

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
EPOLLPRI = select.EPOLLPRI
EPOLLERR = select.EPOLLERR

#: failures in a row after which a descriptor's handler is given up on: the fd is
#: unregistered and its owner told (a level-triggered fd whose handler fails before it
#: reads would otherwise be dispatched again at once, for ever: a hot loop)
MAX_FD_FAILURES = 5
#: the engine thread's SCHED_FIFO priority with :meth:`Engine.run_realtime`: Asterisk's
#: for its own (``-p``), below the kernel's threaded interrupts (50), so a card's
#: interrupt still comes first
REALTIME_PRIORITY = 10


def realtime_priority(priority: object) -> int:
    """``priority`` if SCHED_FIFO takes it (1-99 on Linux), else ArgumentError."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 99:
        raise ArgumentError(f"realtime priority {priority!r}: expected 1 to 99 "
                            "(SCHED_FIFO's range on Linux)")
    return priority


def _go_realtime(priority: int) -> None:
    """The calling thread at SCHED_FIFO ``priority``, the threads it starts ordinary;
    ArgumentError or Error (saying how to allow it) when that cannot be."""
    realtime_priority(priority)
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK,
                              os.sched_param(priority))
    except OSError as exc:
        limit = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
        raise Error(f"the engine thread cannot run at SCHED_FIFO priority {priority}: "
                    f"{exc.strerror or exc} (expected root, CAP_SYS_NICE or an "
                    f"RLIMIT_RTPRIO of {priority} or more, which is {limit} here: ulimit "
                    "-r, or LimitRTPRIO= in a systemd unit; in a container, a real-time "
                    "budget too: cpu.rt_runtime_us)") from exc


def check_realtime(priority: int = REALTIME_PRIORITY) -> None:
    """Raise what :meth:`Engine.run_realtime` would, from a thread that tries it and
    ends: for a supervisor to learn before it starts workers that would each fail."""
    failure: list[BaseException] = []

    def attempt() -> None:
        try:
            _go_realtime(priority)
        except (ArgumentError, Error) as exc:
            failure.append(exc)
    thread = threading.Thread(target=attempt, name="uascall-realtime-check")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


class DescriptorDropped(Error):
    """Passed to an fd's ``on_error`` when the engine unregistered the fd because its
    handler kept failing; the handler's last exception is the ``__cause__``."""
EPOLLHUP = select.EPOLLHUP


class Clock:
    """The engine's notion of now, in seconds on a monotonic scale."""

    virtual = False

    def now(self) -> float:
        raise NotImplementedError


class MonotonicClock(Clock):
    """Real time: ``time.monotonic()``."""

    def now(self) -> float:
        return time.monotonic()


class VirtualClock(Clock):
    """Simulated time that only the engine moves forward (see the module docstring)."""

    virtual = True

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance_to(self, when: float) -> None:
        if when > self._now:
            self._now = when


class TimerHandle:
    """A scheduled callback; :meth:`cancel` it to stop it from running."""

    __slots__ = ("_args", "_callback", "_owner", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple) -> None:
        self.when = when
        self._callback = callback
        self._args = args
        self._owner: _Timers | None = None
        self.cancelled = False

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        self._callback = _noop
        self._args = ()
        if self._owner is not None:
            self._owner.cancelled_one()

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<TimerHandle when={self.when:.6f}{state} {self._callback!r}>"


def _noop(*_args: Any) -> None:
    pass


class _Waiter:
    """One application thread blocked in Engine.wait()."""

    __slots__ = ("actor", "done", "event", "timer")

    def __init__(self, actor: bool) -> None:
        self.actor = actor
        self.event = threading.Event()
        self.done = False
        self.timer: TimerHandle | None = None


class _Timers:
    """A heap of TimerHandles with lazy deletion of cancelled ones.

    Protocol timers are restarted all the time (libpri moves its T203 deadline with every
    frame), so cancelled entries are swept out once they are half the heap instead of
    waiting for their deadlines.
    """

    __slots__ = ("_cancelled", "_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._cancelled = 0

    def push(self, handle: TimerHandle) -> None:
        handle._owner = self
        heapq.heappush(self._heap, (handle.when, next(self._seq), handle))

    def cancelled_one(self) -> None:
        self._cancelled += 1
        if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if not entry[2].cancelled]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def next_when(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
            self._cancelled -= 1
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[TimerHandle]:
        due = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            handle = heapq.heappop(heap)[2]
            handle._owner = None  # cancelling it from now on changes nothing here
            if handle.cancelled:
                self._cancelled -= 1
            else:
                due.append(handle)
        return due

    def __len__(self) -> int:
        return len(self._heap)


class Engine:
    """One I/O thread with epoll, timers and thread-safe submission.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. Methods marked
    *engine thread* must only be called from callbacks running on the engine; the others
    are safe from any thread.
    """

    def __init__(self, clock: Clock | None = None, *, name: str = "uascall-engine") -> None:
        self.clock = clock or MonotonicClock()
        self.name = name
        self._real_clock = MonotonicClock()
        self._epoll: select.epoll | None = None
        self._wakeup_fd = -1
        self._thread: threading.Thread | None = None
        self._fds: dict[int, tuple[FdCallback, ErrorCallback | None]] = {}
        self._fd_failures: dict[int, int] = {}  # fd -> its handler's failures in a row
        # simulated readiness: fd -> events watched (every registered fd), fd -> events a
        # simulator says are ready, and fd -> the two together where they meet (due now)
        self._watched: dict[int, int] = {}
        self._asserted: dict[int, int] = {}
        self._due: dict[int, int] = {}
        #: failures of callbacks and handlers, by cause (logged once per cause)
        self.faults = FaultLog(f"engine {name}")
        #: what crosses the I/O seams, for whoever listens (a trace, a ladder)
        self.taps = Taps()
        self._timers = _Timers()
        # In virtual mode wall-clock-bound timers (libpri) live on their own real-time heap.
        self._real_timers = _Timers() if self.clock.virtual else self._timers
        self._ready: collections.deque[tuple[Callable[..., Any], tuple]] = collections.deque()
        self._posted: collections.deque[tuple[Callable[..., Any], tuple]] = collections.deque()
        self._watchers: list[tuple[Callable[[], bool], concurrent.futures.Future]] = []
        self._shutdown_callbacks: list[Callable[[], None]] = []
        self._stopping = False
        self._stopped = threading.Event()
        self._post_lock = threading.Lock()
        # Real time: whether the loop may be blocked in epoll, so that a post from another
        # thread must write the eventfd (under _post_lock; see _iterate). While the loop
        # runs, posts need no system call: it takes them on its next iteration.
        self._sleeping = True
        self._accepting = False
        self._waiters: set[_Waiter] = set()
        # futures application threads wait for in real time (woken if the engine stops)
        self._real_waits: set[concurrent.futures.Future] = set()
        self._runnable_actors = 0
        self._actor_lock = threading.Lock()
        self._local = threading.local()
        self._actors = _ActorPool(self)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Engine:
        if self._thread is not None:
            raise Error(f"engine {self.name!r} was already started; expected a new Engine")
        self._epoll = select.epoll()
        self._wakeup_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wakeup_fd, EPOLLIN)
        self._accepting = True
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Run the shutdown callbacks on the engine thread, then end the thread and close
        the engine's own descriptors. Safe to call twice and from any thread but the engine."""
        thread = self._thread
        if thread is None or self._stopped.is_set():
            return
        if threading.current_thread() is thread:
            raise Error("Engine.stop() called on the engine thread; expected another thread")
        with contextlib.suppress(Error):  # already stopping: joining is all that is left
            self.call_soon_threadsafe(self._begin_stop)
        thread.join(timeout)
        if thread.is_alive():
            raise Error(f"engine {self.name!r} did not stop within {timeout} s")

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stopped.is_set()

    @property
    def accepting(self) -> bool:
        """Whether work can still be posted (False from the start of :meth:`stop` on)."""
        return self._accepting

    @property
    def in_engine_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def add_shutdown_callback(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the engine thread when the engine stops (last added, first run)."""
        self._shutdown_callbacks.append(callback)

    def remove_shutdown_callback(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._shutdown_callbacks.remove(callback)

    # ------------------------------------------------------------------ scheduling
    def run_realtime(self, priority: int = REALTIME_PRIORITY) -> None:
        """Run the engine thread at SCHED_FIFO ``priority`` (1-99, Linux): ahead of every
        ordinary process on the machine, so that none of them makes a 20 ms tick late,
        as telephony servers run their media threads (``asterisk -p``). The threads it
        starts (application threads, the pool's) stay ordinary (SCHED_RESET_ON_FORK):
        an application busy in a loop must not hold a core from everything else.

        Raises ArgumentError for a priority outside 1-99 and Error when the system
        refuses (the thread needs root, CAP_SYS_NICE or ``ulimit -r`` of ``priority``).
        """
        self.run(_go_realtime, priority)
        log.info("engine %s runs at SCHED_FIFO priority %d", self.name, priority)

    # ------------------------------------------------------------------ time
    def time(self) -> float:
        """Now on the engine's clock."""
        return self.clock.now()

    def next_on_grid(self, period: float, phase: float = 0.0) -> float:
        """The first moment after now on the engine's grid of ``period`` seconds, shifted by
        ``phase``. Periodic work that starts on the grid keeps a fixed order with the other
        work on it: the 20 ms clocks of players and of RTP would otherwise start at
        whatever moment their first user came, and one's pass over every call, falling due
        in the middle of the other's, would make that one late by a random amount."""
        if not (period > 0 and math.isfinite(period)) or not 0.0 <= phase < period:
            raise ArgumentError(f"next_on_grid({period!r}, {phase!r}): expected a period "
                                "above 0 and a phase from 0 to below the period")
        now = self.clock.now()
        return (math.floor((now - phase) / period) + 1) * period + phase

    def next_tick(self, previous: float, now: float, period: float,
                  phase: float = 0.0) -> float:
        """The tick after ``previous`` of a periodic job on the grid, whose tick began at
        ``now``: a period later, so a late tick does not push the next ones back; after
        a stall of more than a period, the grid's moment just passed (it runs at once,
        and the ticks missed are skipped, not burst)."""
        due = previous + period
        if due < now - period:
            due = self.next_on_grid(period, phase) - period
        return due

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """*Engine thread*: run ``callback(*args)`` on the next loop iteration."""
        self._ready.append((callback, args))

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """*Engine thread*: run ``callback(*args)`` at ``when`` on the engine clock."""
        if not math.isfinite(when):
            raise ArgumentError(f"timer at {when!r}: expected a finite time")
        handle = TimerHandle(when, callback, args)
        self._timers.push(handle)
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """*Engine thread*: run ``callback(*args)`` after ``delay`` seconds of engine time."""
        return self.call_at(self.clock.now() + delay, callback, *args)

    def call_later_real(self, delay: float, callback: Callable[..., Any],
                        *args: Any) -> TimerHandle:
        """*Engine thread*: like :meth:`call_later`, but always in real time.

        For deadlines that an outside party keeps on the wall clock (libpri's Q.921/Q.931
        timers); in real mode it is the same as :meth:`call_later`.
        """
        if not math.isfinite(delay):
            raise ArgumentError(f"timer in {delay!r} s: expected a finite delay")
        handle = TimerHandle(self._real_clock.now() + delay, callback, args)
        self._real_timers.push(handle)
        return handle

    # ------------------------------------------------------------------ descriptors
    def add_fd(self, fd: int, events: int, callback: Callable[[int], None], *,
               on_error: Callable[[BaseException], None] | None = None) -> None:
        """*Engine thread*: call ``callback(revents)`` whenever ``fd`` is ready for ``events``.

        If the callback raises, the exception is counted in :attr:`faults` (logged once
        per cause) and passed to ``on_error`` (which should clear whatever the descriptor
        belongs to); the engine goes on. After :data:`MAX_FD_FAILURES` failures in a row
        the fd is unregistered and ``on_error`` gets a :class:`DescriptorDropped`: the
        owner must close it or register it again.
        """
        if fd in self._fds:
            raise Error(f"fd {fd} is already registered with the engine; expected a new fd")
        assert self._epoll is not None, "engine not started"
        self._epoll.register(fd, events)
        self._fds[fd] = (callback, on_error)
        self._watched[fd] = events
        self._update_due(fd)

    def modify_fd(self, fd: int, events: int) -> None:
        """*Engine thread*: change the events ``fd`` is watched for."""
        assert self._epoll is not None
        self._epoll.modify(fd, events)
        if fd in self._watched:
            self._watched[fd] = events
            self._update_due(fd)

    def remove_fd(self, fd: int) -> None:
        """*Engine thread*: stop watching ``fd`` (before closing it). Unknown fds are ignored."""
        self._fd_failures.pop(fd, None)
        self._watched.pop(fd, None)
        self._due.pop(fd, None)
        if self._fds.pop(fd, None) is not None and self._epoll is not None:
            try:
                self._epoll.unregister(fd)
            except OSError as exc:  # already closed by its owner: epoll forgot it then
                log.debug("epoll unregister of fd %d: %s", fd, exc)

    def set_readiness(self, fd: int, events: int) -> None:
        """*Engine thread*: a simulator says ``fd`` is ready for ``events`` (0: for nothing)
        until it says otherwise. Whoever watches ``fd`` (:meth:`add_fd`) is called as if
        epoll had reported it: every iteration while the events it watches are ready. The
        simulator calls it with 0 before it closes ``fd``."""
        if events:
            self._asserted[fd] = events
        else:
            self._asserted.pop(fd, None)
        self._update_due(fd)

    def _update_due(self, fd: int) -> None:
        due = self._asserted.get(fd, 0) & self._watched.get(fd, 0)
        if due:
            self._due[fd] = due
        else:
            self._due.pop(fd, None)

    # ------------------------------------------------------------------ any thread
    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the engine thread soon; safe from any thread.

        Raises :class:`~uascall.errors.Error` once the engine has stopped, so that work is
        never accepted and then silently dropped.
        """
        with self._post_lock:
            if not self._accepting:
                raise Error(f"engine {self.name!r} is not running; expected a started engine")
            self._posted.append((callback, args))
            if (self._wakeup_fd >= 0 and (self._sleeping or self.clock.virtual)
                    and not self.in_engine_thread):
                self._sleeping = False  # one write wakes it; the next posts need none
                with contextlib.suppress(BlockingIOError):  # the counter is saturated
                    os.eventfd_write(self._wakeup_fd, 1)

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """Run ``fn(*args, **kwargs)`` on the engine thread; the Future gets its result."""
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # delivered to the waiting thread, not lost
                future.set_exception(exc)

        self.call_soon_threadsafe(run)
        return future

    def run(self, fn: Callable[..., T], *args: Any, timeout: float | None = None,
            **kwargs: Any) -> T:
        """Run ``fn`` on the engine thread and return its result (re-raising its exception).

        Called on the engine thread itself, ``fn`` runs at once.
        """
        if self.in_engine_thread:
            return fn(*args, **kwargs)
        return self.wait(self.submit(fn, *args, **kwargs), timeout)

    def wait(self, future: concurrent.futures.Future, timeout: float | None = None) -> Any:
        """Wait for ``future`` for at most ``timeout`` seconds of engine time.

        Raises ``TimeoutError`` when the time runs out; re-raises the future's exception.
        """
        if self.in_engine_thread:
            raise Error("Engine.wait() called on the engine thread, which would deadlock; "
                        "expected an application thread")
        if timeout is not None and not math.isfinite(timeout):
            raise ArgumentError(f"wait(timeout={timeout!r}): expected a finite number or None")
        if not self.clock.virtual:
            if timeout is not None and timeout > threading.TIMEOUT_MAX:
                timeout = None  # centuries: the same as no limit, which threading can take
            with self._post_lock:
                if self._stopped.is_set() or (self._thread is not None
                                              and not self._accepting):
                    if not future.done():
                        raise Hangup(f"engine {self.name!r} has stopped; nothing it would "
                                     "have done will happen")
                self._real_waits.add(future)
            try:
                return future.result(timeout)
            except concurrent.futures.TimeoutError:
                raise TimeoutError(f"no result within {timeout} s") from None
            finally:
                with self._post_lock:
                    self._real_waits.discard(future)
        if future.done():
            return future.result()
        if self._stopped.is_set():
            raise Hangup(f"engine {self.name!r} has stopped; nothing it would have done "
                         "will happen")
        waiter = _Waiter(actor=self._is_actor())
        # Every way of waking up must be in place before the actor is parked: from then on
        # virtual time may run, and a future completed in that window would wake nobody.
        future.add_done_callback(lambda _f: self._post_wake(waiter))
        try:
            self.call_soon_threadsafe(self._arm_waiter, waiter, timeout)
        except Error:  # the engine stopped a moment ago
            raise Hangup(f"engine {self.name!r} has stopped") from None
        self._park_actor(waiter)
        try:
            waiter.event.wait()
        except BaseException:
            self._unpark(waiter)  # e.g. KeyboardInterrupt: the actor runs again, now
            raise
        if future.done():
            return future.result()
        if self._stopped.is_set() or (self._thread is not None and not self._accepting):
            raise Hangup(f"engine {self.name!r} stopped")
        raise TimeoutError(f"no result within {timeout} s of engine time")

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds`` of engine time (virtual or real)."""
        if not self.clock.virtual:
            time.sleep(max(0.0, seconds))
            return
        with contextlib.suppress(TimeoutError):
            self.wait(concurrent.futures.Future(), seconds)

    def wait_until(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Block until ``predicate()`` is true, evaluated on the engine thread after each
        loop iteration; return False if ``timeout`` seconds of engine time pass first."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self.call_soon_threadsafe(self._add_watcher, predicate, future)
        try:
            self.wait(future, timeout)
            return True
        except concurrent.futures.CancelledError:  # the engine stopped first
            return False
        except TimeoutError:
            with contextlib.suppress(Error):
                self.call_soon_threadsafe(self._remove_watcher, future)
            return False

    def start_actor_thread(self, target: Callable[..., Any], *args: Any,
                           name: str | None = None) -> threading.Thread:
        """Start a thread that is an actor from its first instruction.

        Counted as running before it is even scheduled, so that virtual time cannot slip
        past the moment it was started (``with engine.actor()`` inside the thread would
        leave that window open).
        """
        with self._actor_lock:
            self._runnable_actors += 1

        def body() -> None:
            self._local.actor = True
            try:
                target(*args)
            finally:
                self._local.actor = False
                with self._actor_lock:
                    self._runnable_actors -= 1
                self._wake()

        thread = threading.Thread(target=body, name=name, daemon=True)
        try:
            thread.start()
        except BaseException:
            with self._actor_lock:
                self._runnable_actors -= 1
            raise
        return thread

    def run_actor(self, target: Callable[..., Any], *args: Any,
                  name: str | None = None) -> ActorTask:
        """Run ``target(*args)`` on a thread of the engine's actor pool; any thread.

        Like :meth:`start_actor_thread` (an actor from the first instruction, one task per
        thread while it runs), but the thread is a reused one when one is idle: starting a
        thread costs the engine a wait for the new thread to be scheduled (the GIL passes
        to it and back), which at hundreds of calls a second was a quarter of the engine
        thread's time. The task's thread takes ``name`` while it runs. What the target
        leaves in ``threading.local`` storage stays with the thread for its next task.
        """
        return self._actors.run(target, args, name)

    @contextlib.contextmanager
    def actor(self) -> Iterator[None]:
        """Declare the calling thread an actor: virtual time waits for it (module docstring)."""
        if self._is_actor():
            yield
            return
        self._local.actor = True
        with self._actor_lock:
            self._runnable_actors += 1
        try:
            yield
        finally:
            self._local.actor = False
            with self._actor_lock:
                self._runnable_actors -= 1
            self._wake()

    # ------------------------------------------------------------------ internals
    def _is_actor(self) -> bool:
        return getattr(self._local, "actor", False)

    def _park_actor(self, waiter: _Waiter) -> None:
        if waiter.actor:
            with self._actor_lock:
                self._runnable_actors -= 1
            self._wake()

    def _post_wake(self, waiter: _Waiter) -> None:
        with contextlib.suppress(Error):  # engine gone: _close() has woken every waiter
            self.call_soon_threadsafe(self._wake_waiter, waiter)

    def _wake_waiter(self, waiter: _Waiter) -> None:
        # Runs on the engine thread: the actor counts as running again before the engine
        # can look at the clock, so no virtual time passes between its wake-up and its
        # next request.
        self._waiters.discard(waiter)
        if waiter.timer is not None:
            waiter.timer.cancel()
        if self._unpark(waiter):
            waiter.event.set()

    def _unpark(self, waiter: _Waiter) -> bool:
        """Count a parked actor as running again; False if that was done already."""
        with self._actor_lock:
            if waiter.done:
                return False
            waiter.done = True
            if waiter.actor:
                self._runnable_actors += 1
        return True

    def _arm_waiter(self, waiter: _Waiter, timeout: float | None) -> None:
        if waiter.done:
            return
        self._waiters.add(waiter)
        if timeout is not None:
            waiter.timer = self.call_later(timeout, self._wake_waiter, waiter)

    def _add_watcher(self, predicate: Callable[[], bool],
                     future: concurrent.futures.Future) -> None:
        if self._check_watcher(predicate, future):
            return
        self._watchers.append((predicate, future))

    def _remove_watcher(self, future: concurrent.futures.Future) -> None:
        self._watchers = [w for w in self._watchers if w[1] is not future]

    def _check_watcher(self, predicate: Callable[[], bool],
                       future: concurrent.futures.Future) -> bool:
        try:
            if not predicate():
                return False
            future.set_result(True)
        except Exception as exc:
            future.set_exception(exc)
        return True

    def _wake(self) -> None:
        # Under the lock, so that _close() cannot close the eventfd (and the number be
        # reused by someone else's open) between the check and the write.
        with self._post_lock:
            if self._wakeup_fd >= 0:
                with contextlib.suppress(BlockingIOError):  # the counter is saturated
                    os.eventfd_write(self._wakeup_fd, 1)

    def _begin_stop(self) -> None:
        self._stopping = True

    def _run(self) -> None:
        log.debug("engine %s started (%s clock)", self.name, type(self.clock).__name__)
        try:
            while not self._stopping:
                try:
                    self._iterate()
                except Exception as exc:
                    # The loop machinery itself must survive anything a callback left behind.
                    self.faults.record("the loop itself", exc)
            self._run_shutdown_callbacks()
        finally:
            self._close()

    def _iterate(self) -> None:
        ready = self._ready
        posted = self._posted
        while posted:
            ready.append(posted.popleft())
        # Only what is ready now: a callback that schedules itself again waits for the next
        # iteration, so it cannot starve the descriptors and timers.
        for _ in range(len(ready)):
            callback, args = ready.popleft()
            self._guard(callback, args)
            if self._stopping:
                return
        may_advance = False
        timeout: float | None
        if ready or posted or self._due:
            timeout = 0.0
        elif self.clock.virtual:
            next_virtual = self._timers.next_when()
            timeout = self._real_timeout()
            if timeout == 0.0 or (next_virtual is not None
                                  and next_virtual <= self.clock.now()):
                timeout = 0.0  # something is due now: run it before time moves on
            elif next_virtual is not None and self._runnable_actors <= 0:
                may_advance = True
                timeout = 0.0
        else:
            next_when = self._timers.next_when()
            timeout = None if next_when is None else max(0.0, next_when - self.clock.now())
            if timeout != 0.0:
                # About to block: from here posts must wake us (checked under the lock the
                # posters take, so that none slips in between unseen).
                with self._post_lock:
                    if self._posted:
                        timeout = 0.0
                    else:
                        self._sleeping = True
        assert self._epoll is not None
        # epoll waits at most 2**31 - 1 ms (24.8 days): a farther timer (an application's
        # wait of a billion seconds) is waited for an hour at a time
        events = self._epoll.poll(-1 if timeout is None else min(timeout, MAX_POLL_WAIT))
        self._sleeping = False
        if self._due:
            events += self._due.items()
        if events:
            self._dispatch(events)
        elif may_advance and not self._posted and self._runnable_actors <= 0:
            when = self._timers.next_when()
            if when is not None:
                self.clock.advance_to(when)
        self._run_timers()
        if self._watchers:
            self._watchers = [w for w in self._watchers if not self._check_watcher(*w)]

    def _real_timeout(self) -> float | None:
        when = self._real_timers.next_when()
        if when is None:
            return None
        return max(0.0, when - self._real_clock.now())

    def _dispatch(self, events: list[tuple[int, int]]) -> None:
        fds = self._fds
        for fd, revents in events:
            if fd == self._wakeup_fd:
                try:
                    os.eventfd_read(self._wakeup_fd)
                except BlockingIOError:
                    pass
                continue
            entry = fds.get(fd)
            if entry is None:  # removed by an earlier callback in this batch
                continue
            callback, on_error = entry
            try:
                callback(revents)
            except BaseException as exc:  # nothing may end the I/O thread
                self._fd_failed(fd, callback, on_error, exc)
            else:
                if self._fd_failures:
                    self._fd_failures.pop(fd, None)

    def _fd_failed(self, fd: int, callback: FdCallback, on_error: ErrorCallback | None,
                   exc: BaseException) -> None:
        handler = describe_callable(callback)
        self.faults.record(f"the handler of an fd ({handler})", exc)
        failures = self._fd_failures.get(fd, 0) + 1
        self._fd_failures[fd] = failures
        if failures >= MAX_FD_FAILURES:
            self.remove_fd(fd)
            dropped = DescriptorDropped(
                f"engine {self.name!r}: fd {fd} unregistered: its handler {handler} failed "
                f"{failures} times in a row (last: {type(exc).__name__}: {exc}); expected "
                "its owner to close it or register it again")
            dropped.__cause__ = exc
            if on_error is None:
                log.error("%s (it has no on_error: nothing more will be read from it)",
                          dropped)
            else:  # the owner says what it does about it
                log.info("%s", dropped)
            exc = dropped
        if on_error is not None:
            self._guard(on_error, (exc,))

    def _run_timers(self) -> None:
        for handle in self._timers.pop_due(self.clock.now()):
            self._guard(handle._callback, handle._args)
        if self._real_timers is not self._timers:
            for handle in self._real_timers.pop_due(self._real_clock.now()):
                self._guard(handle._callback, handle._args)

    def _guard(self, callback: Callable[..., Any], args: tuple) -> None:
        try:
            callback(*args)
        except BaseException as exc:  # a SystemExit in a callback would strand every waiter
            self.faults.record(f"callback {describe_callable(callback)}", exc)

    def _run_shutdown_callbacks(self) -> None:
        while self._shutdown_callbacks:
            self._guard(self._shutdown_callbacks.pop(), ())
        # From here on nothing new is accepted (submit() raises); what was posted before
        # still runs, so that no submitted work is lost without a word.
        with self._post_lock:
            self._accepting = False
        while self._posted or self._ready:
            while self._posted:
                self._ready.append(self._posted.popleft())
            callback, args = self._ready.popleft()
            self._guard(callback, args)
        for _predicate, future in self._watchers:
            future.cancel()
        self._watchers.clear()

    def _close(self) -> None:
        with self._post_lock:
            self._accepting = False
        for waiter in list(self._waiters):  # nobody is left to time them out
            self._wake_waiter(waiter)
        with self._post_lock:
            waits, self._real_waits = self._real_waits, set()
        for future in waits:  # nothing will complete them now: their waiters wake
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                future.set_exception(Hangup(f"engine {self.name!r} stopped"))
        if self._fds:
            log.warning("engine %s stopped with fds still registered: %s (their owners did "
                        "not close them)", self.name, sorted(self._fds))
            self._fds.clear()
        self._watched.clear()
        self._asserted.clear()
        self._due.clear()
        self.faults.close()
        if self._epoll is not None:
            self._epoll.close()
        with self._post_lock:
            if self._wakeup_fd >= 0:
                os.close(self._wakeup_fd)
                self._wakeup_fd = -1
        self._stopped.set()
        self._actors.close()
        log.debug("engine %s stopped", self.name)


#: the longest the engine blocks in one epoll wait for a timer (seconds)
MAX_POLL_WAIT = 3600.0
#: how long an idle thread of the actor pool waits for a task before it ends (seconds)
ACTOR_IDLE = 30.0
#: how long the actor pool waits to try again when a thread could not be started (seconds)
SPAWN_RETRY = 0.1


class ActorTask:
    """One task of the actor pool (:meth:`Engine.run_actor`): joined like a thread."""

    __slots__ = ("_done", "args", "name", "target")

    def __init__(self, target: Callable[..., Any], args: tuple, name: str | None) -> None:
        self.target = target
        self.args = args
        self.name = name
        self._done = threading.Event()

    def join(self, timeout: float | None = None) -> None:
        """Block until the task has returned, or ``timeout`` seconds have passed."""
        self._done.wait(timeout)

    def is_alive(self) -> bool:
        """Whether the task has not returned yet."""
        return not self._done.is_set()

    def __repr__(self) -> str:
        return f"<ActorTask {self.name or self.target!r}{'' if self.is_alive() else ' done'}>"


class _ActorPool:
    """Threads that run actor tasks one at a time and wait, idle, for the next.

    Every task goes to one queue. ``_idle`` counts the threads waiting for a task minus
    the tasks queued for them: when it is positive a task is queued for one of them (the
    count taken down under the lock as the task is queued); else a new thread is started
    for it, which takes the next task from the queue. So at every moment the threads
    waiting or being started match the idle count plus the tasks queued, and a task never
    waits for a thread that will not come. A thread idle for :data:`ACTOR_IDLE` seconds
    ends, unless a task was queued for it meanwhile.

    A thread needed by the engine thread is started by a spawner thread of the pool, not
    by the engine: ``Thread.start`` waits until the new thread has run (it needs the GIL
    and a core), 0.2 ms on average and 4 ms at worst at 200 calls a second, time in
    which no packet would go out. A thread that cannot be started (the system's limit) is
    retried every :data:`SPAWN_RETRY` seconds, the failure recorded; its task waits.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._queue: queue.SimpleQueue[ActorTask | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0
        self._closed = False
        self._spawns: queue.SimpleQueue[bool] = queue.SimpleQueue()  # False: end
        self._spawner: threading.Thread | None = None
        self._spawner_lock = threading.Lock()

    def run(self, target: Callable[..., Any], args: tuple, name: str | None) -> ActorTask:
        task = ActorTask(target, args, name)
        engine = self._engine
        with engine._actor_lock:  # runnable before it is even picked up (see actor())
            engine._runnable_actors += 1
        on_engine = engine.in_engine_thread
        with self._lock:
            self._queue.put(task)
            if self._idle > 0:
                self._idle -= 1
                return task
            self._threads += 1
        if not on_engine:
            try:  # an application's thread may wait for the start itself, as it always did
                self._start_thread()
                return task
            except Exception as exc:
                engine.faults.record("starting a thread for an actor task", exc)
        self._spawns.put(True)
        self._ensure_spawner()
        return task

    def _ensure_spawner(self) -> None:
        """The spawner thread, started once. If even it cannot be started, the requests
        wait in their queue and it is tried again SPAWN_RETRY seconds later (real time:
        virtual time stands still while a task waits for its thread)."""
        with self._spawner_lock:
            if self._spawner is not None:
                return
            spawner = threading.Thread(target=self._spawn_loop, daemon=True,
                                       name=f"{self._engine.name}-spawner")
            try:
                spawner.start()
            except Exception as exc:
                failure = exc
            else:
                self._spawner = spawner
                return
        engine = self._engine
        engine.faults.record("starting the actor pool's spawner thread", failure)
        with contextlib.suppress(Error):  # a stopped engine: its tasks are settled by close
            engine.call_soon_threadsafe(engine.call_later_real, SPAWN_RETRY,
                                        self._ensure_spawner)

    def _start_thread(self) -> None:
        threading.Thread(target=self._work, daemon=True, name="uascall-actor").start()

    def _spawn_loop(self) -> None:
        while self._spawns.get():
            while True:
                try:
                    self._start_thread()
                    break
                except Exception as exc:
                    self._engine.faults.record("starting a thread for an actor task", exc)
                    if self._closed:  # no thread will come for what is queued now
                        self._settle_queued()
                        return
                    time.sleep(SPAWN_RETRY)

    def _settle_queued(self) -> None:
        """The engine has stopped and no thread could be started: the tasks still queued
        end unrun (recorded), so that nobody waits for them and a later task is not run
        in their place."""
        engine = self._engine
        sentinels = 0
        while True:
            try:
                task = self._queue.get_nowait()
            except queue.Empty:
                break
            if task is None:  # an idle thread's signal to end: it stays theirs
                sentinels += 1
                continue
            engine.faults.record(
                f"actor task {describe_callable(task.target)}",
                Error("not run: the engine stopped before a thread could be started "
                      "for it"))
            with self._lock:
                self._threads -= 1
            self._over(task)
        for _ in range(sentinels):
            self._queue.put(None)

    def _work(self) -> None:
        engine = self._engine
        me = threading.current_thread()
        # A new thread's first task: the one queued when it was asked for or, when a thread
        # that came idle meanwhile took that one, the next; if none comes within
        # ACTOR_IDLE it ends as an idle thread would, in the place of the idle count.
        task = self._take()
        while task is not None:
            me.name = task.name or "uascall-actor"
            engine._local.actor = True
            try:
                task.target(*task.args)
            except BaseException as exc:  # a thread's end would have printed it
                engine.faults.record(f"actor task {describe_callable(task.target)}", exc)
            finally:
                engine._local.actor = False
                self._over(task)
            task = self._next()
        with self._lock:
            self._threads -= 1

    def _over(self, task: ActorTask) -> None:
        """A task has ended (run, or given up unrun): no longer an actor; its joiners wake."""
        engine = self._engine
        with engine._actor_lock:
            engine._runnable_actors -= 1
        task.target = task.args = None  # type: ignore[assignment]
        task._done.set()
        if engine.clock.virtual:  # the engine may now let virtual time run
            engine._wake()

    def _next(self) -> ActorTask | None:
        """The next task for this idle thread, or None: the thread is to end."""
        with self._lock:
            if self._closed:
                return None
            self._idle += 1
        return self._take()

    def _take(self) -> ActorTask | None:
        try:
            return self._queue.get(timeout=ACTOR_IDLE)
        except queue.Empty:
            with self._lock:
                try:  # queued for us between the timeout and the lock
                    return self._queue.get_nowait()
                except queue.Empty:
                    self._idle -= 1
                    return None

    def close(self) -> None:
        """The engine has stopped: idle threads end (busy ones after their task)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, 0
        with self._spawner_lock:  # threads asked for that no spawner could ever start
            stranded = self._spawner is None and not self._spawns.empty()
        self._spawns.put(False)  # the spawner starts what was asked for, then ends
        for _ in range(idle):
            self._queue.put(None)
        if stranded:
            self._settle_queued()
