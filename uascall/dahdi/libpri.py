"""ctypes binding to libpri 1.6 (Debian ``libpri1.4``): ISDN PRI Q.921/Q.931 signalling.

Importing this module loads nothing; :func:`load` (called by :class:`Pri` and
:func:`cause_text`) loads ``libpri.so.1.4`` on first use, maps every function once under
its C prototype and refuses any version but those in :data:`SUPPORTED_VERSIONS`, because
the ``pri_event`` union layout in :mod:`uascall.dahdi.libpri_abi` (re-exported here with
every constant and event class) is hard-coded for libpri 1.6.0's ``libpri.h``
(``tests/sim/test_libpri_layout.py`` compiles a probe against that header and compares
every offset, size and constant).

How libpri is driven (theory of operation):

* One :class:`Pri` per D-channel. libpri does no I/O of its own here: it calls ``read`` to
  fetch one HDLC frame and ``write`` to send one, frames *with* the 2 FCS bytes, which is
  what a DAHDI channel in HDLCFCS mode reads and expects (see :class:`Pri`).
* :meth:`Pri.check_event` reads exactly one frame and returns at most one event. To drain
  a readable descriptor, call it until :attr:`Pri.drained` is true.
* libpri's timers (Q.921 T200/T203 retransmission and keepalive, Q.931 T303, T305, T308,
  T309...) only fire when :meth:`Pri.schedule_run` is called. :meth:`Pri.schedule_next`
  gives the earliest deadline as *wall-clock* epoch seconds (libpri uses gettimeofday), so
  compare it with ``time.time()``, never ``time.monotonic()``. ``schedule_run`` returns one
  event per call: call it until it returns None.
* Events live in a static buffer inside ``struct pri`` that the next libpri call
  overwrites, and fields an event does not use hold stale data. Each event is therefore
  copied at once into a frozen dataclass holding only the fields that event fills.
* Clearing: the side that clears calls :meth:`Pri.hangup` (DISCONNECT); the peer gets
  :class:`HangupReq` and calls ``hangup`` (RELEASE); the first side gets :class:`Hangup`
  and must call ``hangup`` once more (RELEASE COMPLETE, call freed); the peer then gets
  :class:`HangupAck`, after which the call value is dead. Every :class:`Hangup` needs
  that final ``hangup``, also when it comes from a timer (T303: cause 18; D-channel loss:
  cause 27). To refuse an incoming SETUP before answering it at all, use a cause libpri
  sends as RELEASE COMPLETE (1, 34, 44, 82, 88); any other cause sends nothing until
  proceeding()/acknowledge() has been sent (see :meth:`Pri.hangup`).
* D-channel loss: :class:`DchanDown` comes when Q.921 gives up (T203 + (N200+1) x T200
  after the peer went silent). Q.931 is told only when re-establishment fails too, another
  (N200+1) x T200 later: unanswered calls then get :class:`Hangup` cause 27, answered calls
  get it after T309 (6 s) unless the link comes back first, in which case they survive.
* libpri is not thread-safe and ``struct pri`` cannot be freed. Make one :class:`Pri` per
  span for the life of the process and make every call on it from one thread (uascall's
  engine thread). The read/write callbacks run inside those calls, on that thread.
* libpri's message and error output is process-global; the loader routes it to this
  module's logger (errors at WARNING, messages at DEBUG) with the instance name.
* Without service-message support (its default, and ours), libpri 1.6 answers every
  message with a maintenance protocol discriminator (0x03, 0x43) by sending it straight
  back with its message type less 8: a stand-in meant to turn SERVICE (0x0F) into SERVICE
  ACKNOWLEDGE (0x07). The echo carries the same discriminator, so two libpri ends (the
  simulator's loop, or a span facing an Asterisk box) echo each other's echoes for ever,
  as fast as the line goes, from a single such frame. The read callback therefore lets
  libpri see SERVICE only and takes the message out of every other maintenance frame
  (:func:`defuse_maintenance_echo`): Q.931 ignores an empty message, Q.921 still counts
  and acknowledges the frame. A switch that really sends SERVICE is still answered.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

from uascall import faultlog
from uascall.dahdi import libpri_abi
from uascall.dahdi.libpri_abi import *  # noqa: F403 - the ABI is part of this module's API
from uascall.dahdi.libpri_abi import (  # the names this module uses itself
    PRES_ALLOWED_USER_NUMBER_NOT_SCREENED,
    PRI_TRANS_CAP_SPEECH,
    Event,
    Node,
    Plan,
    PriEvent,
    Switch,
    Timeval,
    c_text,
    copy_event,
)
from uascall.errors import ArgumentError, Error, LibpriUnavailable

log = logging.getLogger(__name__)

SONAME = "libpri.so.1.4"
SUPPORTED_VERSIONS = {"1.6.0"}
ENV_LIBRARY = "UASCALL_LIBPRI"
_INSTALL_HINT = "apt-get install libpri1.4"


class LibpriError(Error):
    """A libpri call failed (it returned -1 or NULL); ``function`` names it."""

    def __init__(self, message: str, *, function: str = "") -> None:
        super().__init__(message)
        self.function = function


# --- the loader ---------------------------------------------------------------------------

# int (*pri_io_cb)(struct pri *pri, void *buf, int buflen);
IO_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
# void (*func)(struct pri *pri, char *stuff);  -- pri_set_message / pri_set_error
MESSAGE_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)


def _status(result: int, func: Any, _args: tuple[Any, ...]) -> int:
    # libpri's int calls return 0 on success and -1 on failure (never an errno).
    if result == -1:
        raise LibpriError(f"{func.__name__}() returned -1", function=func.__name__)
    return result


class _Library:
    """libpri loaded once: every function used is mapped here, once, under its prototype."""

    def __init__(self, cdll: ctypes.CDLL, path: str) -> None:
        self.path = path
        self._cdll = cdll
        v, i, p, s = None, ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
        m = self._map
        # const char *pri_get_version(void);
        self.pri_get_version = m("pri_get_version", s, [])
        self.version = (self.pri_get_version() or b"").decode("ascii", "replace")
        if self.version not in SUPPORTED_VERSIONS:
            raise LibpriUnavailable(
                f"libpri {self.version} found at {path}, but uascall supports only "
                f"{', '.join(sorted(SUPPORTED_VERSIONS))}: its pri_event struct layout is "
                "hard-coded and was checked against that version's libpri.h by "
                f"tests/sim/test_libpri_layout.py; install libpri {min(SUPPORTED_VERSIONS)} "
                f"({_INSTALL_HINT}) or point {ENV_LIBRARY} at it")
        # struct pri *pri_new_cb(int fd, int nodetype, int switchtype,
        #                        pri_io_cb io_read, pri_io_cb io_write, void *userdata);
        self.pri_new_cb = m("pri_new_cb", p, [i, i, i, IO_CALLBACK, IO_CALLBACK, p])
        # void pri_set_message(void (*func)(struct pri *pri, char *stuff));
        self.pri_set_message = m("pri_set_message", v, [MESSAGE_CALLBACK])
        # void pri_set_error(void (*func)(struct pri *pri, char *stuff));
        self.pri_set_error = m("pri_set_error", v, [MESSAGE_CALLBACK])
        # void pri_set_debug(struct pri *pri, int debug);
        self.pri_set_debug = m("pri_set_debug", v, [p, i])
        # int pri_set_timer(struct pri *pri, int timer, int value);
        self.pri_set_timer = m("pri_set_timer", i, [p, i, i], _status)
        # int pri_get_timer(struct pri *pri, int timer);
        self.pri_get_timer = m("pri_get_timer", i, [p, i])
        # void pri_set_overlapdial(struct pri *pri, int state);
        self.pri_set_overlapdial = m("pri_set_overlapdial", v, [p, i])
        # void pri_connect_ack_enable(struct pri *ctrl, int enable);
        self.pri_connect_ack_enable = m("pri_connect_ack_enable", v, [p, i])
        # void pri_hangup_fix_enable(struct pri *ctrl, int enable);
        self.pri_hangup_fix_enable = m("pri_hangup_fix_enable", v, [p, i])
        # pri_event *pri_check_event(struct pri *pri);
        self.pri_check_event = m("pri_check_event", ctypes.POINTER(PriEvent), [p])
        # struct timeval *pri_schedule_next(struct pri *pri);
        self.pri_schedule_next = m("pri_schedule_next", ctypes.POINTER(Timeval), [p])
        # pri_event *pri_schedule_run(struct pri *pri);
        self.pri_schedule_run = m("pri_schedule_run", ctypes.POINTER(PriEvent), [p])
        # char *pri_cause2str(int cause);
        self.pri_cause2str = m("pri_cause2str", s, [i])
        # q931_call *pri_new_call(struct pri *pri);
        self.pri_new_call = m("pri_new_call", p, [p])
        # void pri_destroycall(struct pri *pri, q931_call *call);
        self.pri_destroycall = m("pri_destroycall", v, [p, p])
        # int pri_get_crv(struct pri *pri, q931_call *call, int *callmode);
        self.pri_get_crv = m("pri_get_crv", i, [p, p, ctypes.POINTER(ctypes.c_int)])
        # struct pri_sr *pri_sr_new(void);
        self.pri_sr_new = m("pri_sr_new", p, [])
        # void pri_sr_free(struct pri_sr *sr);
        self.pri_sr_free = m("pri_sr_free", v, [p])
        # int pri_sr_set_channel(struct pri_sr *sr, int channel, int exclusive, int nonisdn);
        self.pri_sr_set_channel = m("pri_sr_set_channel", i, [p, i, i, i], _status)
        # int pri_sr_set_bearer(struct pri_sr *sr, int transmode, int userl1);
        self.pri_sr_set_bearer = m("pri_sr_set_bearer", i, [p, i, i], _status)
        # int pri_sr_set_called(struct pri_sr *sr, char *called, int calledplan, int complete);
        self.pri_sr_set_called = m("pri_sr_set_called", i, [p, s, i, i], _status)
        # int pri_sr_set_caller(struct pri_sr *sr, char *caller, char *callername,
        #                       int callerplan, int callerpres);
        self.pri_sr_set_caller = m("pri_sr_set_caller", i, [p, s, s, i, i], _status)
        # int pri_setup(struct pri *pri, q931_call *call, struct pri_sr *req);
        self.pri_setup = m("pri_setup", i, [p, p, p], _status)
        # int pri_proceeding(struct pri *pri, q931_call *call, int channel, int info);
        self.pri_proceeding = m("pri_proceeding", i, [p, p, i, i], _status)
        # int pri_progress(struct pri *pri, q931_call *call, int channel, int info);
        self.pri_progress = m("pri_progress", i, [p, p, i, i], _status)
        # int pri_progress_with_cause(struct pri *pri, q931_call *call, int channel,
        #                             int info, int cause);
        self.pri_progress_with_cause = m("pri_progress_with_cause", i, [p, p, i, i, i], _status)
        # int pri_acknowledge(struct pri *pri, q931_call *call, int channel, int info);
        self.pri_acknowledge = m("pri_acknowledge", i, [p, p, i, i], _status)
        # int pri_setup_ack(struct pri *ctrl, q931_call *call, int channel, int nonisdn,
        #                   int inband);
        self.pri_setup_ack = m("pri_setup_ack", i, [p, p, i, i, i], _status)
        # int pri_information(struct pri *pri, q931_call *call, char digit);
        self.pri_information = m("pri_information", i, [p, p, ctypes.c_char], _status)
        # int pri_answer(struct pri *pri, q931_call *call, int channel, int nonisdn);
        self.pri_answer = m("pri_answer", i, [p, p, i, i], _status)
        # int pri_connect_ack(struct pri *ctrl, q931_call *call, int channel);
        self.pri_connect_ack = m("pri_connect_ack", i, [p, p, i], _status)
        # int pri_hangup(struct pri *pri, q931_call *call, int cause);
        self.pri_hangup = m("pri_hangup", i, [p, p, i], _status)
        # int pri_reset(struct pri *pri, int channel);
        self.pri_reset = m("pri_reset", i, [p, i], _status)

    def _map(self, name: str, restype: Any, argtypes: list[Any],
             errcheck: Callable[..., Any] | None = None) -> Any:
        try:
            func = getattr(self._cdll, name)
        except AttributeError:
            raise LibpriUnavailable(f"{self.path} has no function {name}(); "
                                    f"it is not libpri 1.6 ({_INSTALL_HINT})") from None
        func.restype, func.argtypes = restype, argtypes
        if errcheck is not None:
            func.errcheck = errcheck
        return func


_library: _Library | None = None
_load_lock = threading.Lock()
# Created once and never freed: libpri keeps the pointers in globals for the process's life.
_message_callbacks: tuple[Any, Any] | None = None
_instances: weakref.WeakValueDictionary[int, Pri] = weakref.WeakValueDictionary()
_partial_lines: dict[int, str] = {}


def _candidates() -> list[str]:
    explicit = os.environ.get(ENV_LIBRARY)
    if explicit:  # an explicit choice is not silently replaced by another copy
        return [explicit]
    return [SONAME, f"/usr/lib/{SONAME}", f"/usr/lib/x86_64-linux-gnu/{SONAME}"]


def _loaded_path(cdll: ctypes.CDLL, fallback: str) -> str:
    class DlInfo(ctypes.Structure):
        _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                    ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]

    try:
        dladdr = ctypes.CDLL(None).dladdr
        dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(DlInfo)]
        info = DlInfo()
        if dladdr(ctypes.cast(cdll.pri_get_version, ctypes.c_void_p), ctypes.byref(info)):
            return (info.dli_fname or fallback.encode()).decode(errors="replace")
    except (AttributeError, OSError):
        pass
    return fallback


def load() -> _Library:
    """Load and check libpri once (later calls return the same object).

    Raises LibpriUnavailable if the library cannot be loaded, lacks a function, or is not a
    version in SUPPORTED_VERSIONS.
    """
    global _library
    with _load_lock:
        if _library is not None:
            return _library
        tried = []
        for name in _candidates():
            try:
                cdll = ctypes.CDLL(name)
            except OSError as exc:
                tried.append(f"{name}: {exc}")
                continue
            lib = _Library(cdll, _loaded_path(cdll, name))
            _install_message_callbacks(lib)
            log.debug("loaded libpri %s from %s", lib.version, lib.path)
            _library = lib
            return lib
        raise LibpriUnavailable(
            "libpri cannot be loaded (tried " + "; ".join(tried) + f"); {_INSTALL_HINT}, "
            f"or set {ENV_LIBRARY} to the path of {SONAME}")


def _install_message_callbacks(lib: _Library) -> None:
    global _message_callbacks
    if _message_callbacks is None:
        _message_callbacks = (MESSAGE_CALLBACK(lambda pri, text: _on_message(pri, text, False)),
                              MESSAGE_CALLBACK(lambda pri, text: _on_message(pri, text, True)))
    lib.pri_set_message(_message_callbacks[0])
    lib.pri_set_error(_message_callbacks[1])


def _on_message(pri: int | None, text: bytes | None, error: bool) -> None:
    # Runs inside libpri: must never raise. pri_error() passes one whole message per call;
    # pri_message() text may come in fragments (libpri line-buffers only per struct pri),
    # so messages are logged by whole lines.
    try:
        key = pri or 0
        joined = c_text(text or b"")
        if error:
            lines = joined.split("\n")
        else:
            *lines, rest = (_partial_lines.pop(key, "") + joined).split("\n")
            if rest:
                _partial_lines[key] = rest
        owner = _instances.get(pri or 0)
        name = owner.name if owner is not None else "libpri"
        for line in lines:
            line = line.strip()
            if line:
                log.log(logging.WARNING if error else logging.DEBUG, "%s: %s", name, line)
    except Exception:  # an exception here would only be printed by ctypes
        pass


def cause_text(cause: int) -> str:
    """Q.850 cause as libpri words it (``pri_cause2str``): 17 -> "User busy"."""
    return (load().pri_cause2str(cause) or b"Unknown").decode("latin-1")


# --- a guard against libpri's echo of maintenance messages -------------------------------

#: the protocol discriminators libpri 1.6 echoes back without service-message support
#: (MAINTENANCE_PROTOCOL_DISCRIMINATOR_1 and _2 in pri_q931.h)
MAINTENANCE_DISCRIMINATORS = frozenset({0x03, 0x43})
#: ATT_SERVICE: the one maintenance message whose echo (type less 8) is a correct answer
_SERVICE = (0x03, 0x0F)
_SAPI_CALL_CONTROL = 0


def defuse_maintenance_echo(frame: bytes) -> bytes:
    """``frame`` (a LAPD frame with its 2 FCS bytes, as read from the D-channel) as
    libpri may see it: an I or UI frame on SAPI 0 carrying a maintenance message other
    than SERVICE comes back with its information field removed; any other frame is
    returned as it is (the same object). See the module docstring for why."""
    if len(frame) < 5 or frame[0] >> 2 != _SAPI_CALL_CONTROL:
        return frame
    control = frame[2]
    if not control & 0x01:
        start = 4  # I frame: two control octets
    elif control & 0xEF == 0x03:
        start = 3  # UI frame, P bit either way
    else:
        return frame
    info = frame[start:-2]
    if len(info) < 3 or info[0] not in MAINTENANCE_DISCRIMINATORS:
        return frame
    type_at = 2 + (info[1] & 0x0F)
    if type_at >= len(info):  # libpri drops a message too short for its call reference
        return frame
    if (info[0], info[type_at]) == _SERVICE:
        return frame
    return frame[:start] + frame[-2:]


# --- an instance: one D-channel -----------------------------------------------------------

_HINT_INVALID = ("libpri returns -1 when the call is not a live call of this instance "
                 "(freed after HANGUP_ACK or the final hangup(), or from another span) "
                 "or when the message cannot be sent")


class Pri:
    """One libpri D-channel instance (``pri_new_cb``), PRI point-to-point, TEI 0.

    Callback contract (what a DAHDI channel in HDLCFCS mode does by itself):

    * ``read()`` returns ONE received HDLC frame INCLUDING its 2 trailing FCS bytes (libpri
      drops the last 2 bytes), or None when nothing is waiting (EAGAIN; also DAHDI's ELAST
      while an event is queued). It must not block. libpri has no error code for reads:
      None and an exception both mean "no frame".
    * ``write(data)`` receives the frame PLUS 2 spare bytes where the driver puts the FCS,
      and must send all of it (raise if it cannot), or return False when the frame was
      lost because the line is full (every transmit buffer busy: not a fault, no
      exception). The wrapper returns the full length to libpri either way: libpri
      ignores a failed write beyond logging "Short write" for it, and keeps its I frames
      until they are acknowledged, so a lost one is sent again after T200.

    An exception raised in a callback is logged with the instance name and reported to
    libpri as an empty read or a failed write; KeyboardInterrupt and SystemExit are
    re-raised once the libpri call returns. ``fd`` is only stored (libpri's ``pri_fd``).

    libpri is not thread-safe: make every call on an instance from one thread (uascall's
    engine thread). ``struct pri`` has no destructor, so an instance lives as long as the
    process; create one per span.

    Raises ArgumentError for an unknown node or switch type, LibpriUnavailable if libpri
    cannot be loaded, LibpriError if ``pri_new_cb`` fails.
    """

    def __init__(self, node: int, switch: int, *, read: Callable[[], bytes | None],
                 write: Callable[[bytes], bool | None], fd: int = -1, name: str = "") -> None:
        try:
            self.node = Node(node)
        except ValueError:
            raise ArgumentError(f"node {node!r} is neither Node.NETWORK (1) nor Node.CPE (2)"
                                ) from None
        try:
            self.switch = Switch(switch)
        except ValueError:
            known = ", ".join(f"{s.name} ({s.value})" for s in Switch)
            raise ArgumentError(f"switch type {switch!r} is not one of {known}") from None
        if not (callable(read) and callable(write)):
            raise ArgumentError("read and write must be callables")
        self._lib = load()
        self._read, self._write = read, write
        self._interrupt: BaseException | None = None
        self._drained = True
        #: frames the read callback kept from libpri, by reason ("too long", "too short",
        #: "maintenance"); the first of each reason is logged at WARNING, the rest at DEBUG
        self.frames_dropped: dict[str, int] = {}
        # Named before pri_new_cb: libpri already writes (SABME) from inside it.
        self._name = name or f"pri-{self.node.name.lower()}"
        # Kept referenced for the instance's life: libpri calls them through raw pointers.
        self._read_cb, self._write_cb = IO_CALLBACK(self._on_read), IO_CALLBACK(self._on_write)
        self._pri: int = self._lib.pri_new_cb(fd, node, switch, self._read_cb,
                                              self._write_cb, None) or 0
        if not name:
            self._name += f"-{self._pri:x}"
        if not self._pri:
            raise LibpriError(f"{self._name}: pri_new_cb() returned NULL (out of memory?)",
                              function="pri_new_cb")
        _instances[self._pri] = self
        if self._interrupt is not None:
            raise self._interrupt

    def __repr__(self) -> str:
        return f"<Pri {self._name} {self.node.name} {self.switch.name}>"

    @property
    def name(self) -> str:
        """The name log lines and errors use for this instance (settable)."""
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = str(value)

    @property
    def drained(self) -> bool:
        """True when the last check_event() found no frame (read() gave None or raised)."""
        return self._drained

    # -- callbacks (run inside libpri calls) --

    def _on_read(self, _pri: int, buf: int, buflen: int) -> int:
        try:
            data = self._read()
        except BaseException as exc:
            # Re-raised when the libpri call returns: the caller decides. Swallowed here, a
            # read that keeps failing on a ready descriptor would be a silent hot loop.
            self._interrupt, data = exc, None
        if not data:
            self._drained = True
            return 0
        self._drained = False
        size = len(data)
        if size > buflen:
            self._dropped("too long", "dropped a %d-byte frame: libpri reads at most %d",
                          size, buflen)
            return 0
        if size < 5:  # libpri would parse header bytes it was not given
            self._dropped("too short", "dropped a %d-byte frame: a LAPD frame is at least 3 "
                          "bytes plus the 2 FCS bytes read() must include", size)
            return 0
        defused = defuse_maintenance_echo(data)
        if defused is not data:
            info = data[len(defused) - 2:-2]
            self._dropped("maintenance", "ignored a maintenance message (protocol "
                          "discriminator 0x%02x, %d octets): libpri would echo it back, and "
                          "two libpri ends echo each other for ever; only SERVICE is "
                          "answered", info[0], len(info))
            data, size = defused, len(defused)
        ctypes.memmove(buf, bytes(data), size)
        return size

    def _dropped(self, reason: str, message: str, *args: object) -> None:
        # Garbage on a line comes by the thousand: the first of a kind is news, the rest
        # are counted (frames_dropped) and logged at DEBUG.
        count = self.frames_dropped.get(reason, 0) + 1
        self.frames_dropped[reason] = count
        level = logging.WARNING if count == 1 else logging.DEBUG
        log.log(level, "%s: " + message + ("" if count > 1 else
                                           "; more of these are logged at DEBUG only"),
                self._name, *args)

    def _on_write(self, _pri: int, buf: int, buflen: int) -> int:
        try:
            self._write(ctypes.string_at(buf, buflen))
        except Exception as exc:
            faultlog.record(f"{self._name}: libpri's write callback (libpri sees a failed "
                            "write)", exc)
            return -1
        except BaseException as exc:  # re-raised after the libpri call returns
            self._interrupt = exc
            return -1
        return buflen

    # -- plumbing --

    def _invoke(self, func: Any, *args: Any) -> Any:
        try:
            return func(self._pri, *args)
        except LibpriError as exc:
            raise LibpriError(f"{self._name}: {exc}; {_HINT_INVALID}",
                              function=exc.function) from None
        finally:
            if self._interrupt is not None:
                exc, self._interrupt = self._interrupt, None
                raise exc

    def _event(self, ptr: Any) -> Event | None:
        if not ptr:
            return None
        event = copy_event(ptr.contents)
        log.debug("%s: << %s", self._name, event)
        return event

    # -- driving --

    def check_event(self) -> Event | None:
        """Read one frame through ``read()`` and process it (``pri_check_event``).

        Returns the event it produced, or None when no frame was waiting or the frame
        produced no event; :attr:`drained` tells the two apart.
        """
        return self._event(self._invoke(self._lib.pri_check_event))

    def schedule_next(self) -> float | None:
        """Deadline of the earliest libpri timer as ``time.time()`` epoch seconds, or None.

        libpri's timers are wall-clock (gettimeofday): compare with ``time.time()``.
        """
        tv = self._invoke(self._lib.pri_schedule_next)
        return tv.contents.tv_sec + tv.contents.tv_usec / 1e6 if tv else None

    def schedule_run(self) -> Event | None:
        """Run expired timers until one produces an event, and return it; None when all
        expired timers have run. Call it until it returns None."""
        return self._event(self._invoke(self._lib.pri_schedule_run))

    # -- configuration --

    def set_debug(self, mask: int) -> None:
        """Enable libpri's debug output (:class:`Debug` flags), logged at DEBUG level."""
        self._invoke(self._lib.pri_set_debug, int(mask))

    def set_timer(self, index: int, ms: int) -> None:
        """Set a timer (milliseconds) or counter (:class:`Timer` index); affects timers
        started afterwards. Raises ArgumentError for a bad index or negative value."""
        if not 0 <= index < 64 or ms < 0:
            raise ArgumentError(f"set_timer({index}, {ms}): expected a Timer index and ms >= 0")
        self._invoke(self._lib.pri_set_timer, int(index), int(ms))

    def get_timer(self, index: int) -> int:
        """Current value of a timer or counter; -1 when disabled or not used."""
        return int(self._invoke(self._lib.pri_get_timer, int(index)))

    def set_overlap_dial(self, enabled: bool) -> None:
        """Overlap dialling (``pri_set_overlapdial``): Sending Complete then follows
        setup(complete=...) instead of the switch type's default."""
        self._invoke(self._lib.pri_set_overlapdial, int(enabled))

    def connect_ack_enable(self, enabled: bool) -> None:
        """With True, a received CONNECT is not acknowledged automatically (call
        :meth:`connect_ack`), and a received CONNECT ACK is reported as ConnectAck."""
        self._invoke(self._lib.pri_connect_ack_enable, int(enabled))

    def hangup_fix_enable(self, enabled: bool) -> None:
        """With True, causes 1, 34, 44 and 82 clear as Q.931 5.3.2 says (RELEASE COMPLETE
        only before any other message was sent, DISCONNECT after) instead of always with
        RELEASE COMPLETE, which frees the call at once without any event."""
        self._invoke(self._lib.pri_hangup_fix_enable, int(enabled))

    # -- call control (each raises LibpriError when libpri returns -1) --

    def new_call(self) -> int:
        """A new call record for :meth:`setup`."""
        call = self._invoke(self._lib.pri_new_call)
        if not call:
            raise LibpriError(f"{self._name}: pri_new_call() returned NULL "
                              "(no call reference free?)", function="pri_new_call")
        return int(call)

    def setup(self, call: int, *, called: str, calling: str = "", calling_name: str = "",
              channel: int | None, exclusive: bool, layer1: int,
              transfer_capability: int = PRI_TRANS_CAP_SPEECH,
              called_plan: int = Plan.UNKNOWN, calling_plan: int = Plan.UNKNOWN,
              calling_pres: int = PRES_ALLOWED_USER_NUMBER_NOT_SCREENED,
              complete: bool = True, nonisdn: bool = False) -> None:
        """Send SETUP for ``call`` (from :meth:`new_call`); ``channel`` None means any.

        ``calling`` "" sends no Calling Party Number (and then no name). ``complete``
        only matters after set_overlap_dial(True). Raises ArgumentError for an empty or
        non-ASCII number, LibpriError if libpri refuses.
        """
        if not called:
            raise ArgumentError("setup(): called number is empty; libpri needs one")
        numbers = []
        for what, value in (("called", called), ("calling", calling)):
            try:
                numbers.append(value.encode("ascii"))
            except UnicodeEncodeError:
                raise ArgumentError(f"setup(): {what} number {value!r} is not ASCII") from None
        lib = self._lib
        sr = lib.pri_sr_new()
        if not sr:
            raise LibpriError(f"{self._name}: pri_sr_new() returned NULL", function="pri_sr_new")
        try:
            lib.pri_sr_set_channel(sr, -1 if channel is None else channel, int(exclusive),
                                   int(nonisdn))
            lib.pri_sr_set_bearer(sr, transfer_capability, layer1)
            lib.pri_sr_set_called(sr, numbers[0], called_plan, int(complete))
            if calling or calling_name:
                lib.pri_sr_set_caller(sr, numbers[1],
                                      calling_name.encode("latin-1", "replace") or None,
                                      calling_plan, calling_pres)
            self._invoke(lib.pri_setup, call, sr)
        finally:
            lib.pri_sr_free(sr)

    def proceeding(self, call: int, channel: int, inband: bool) -> None:
        """CALL PROCEEDING (sent at most once per call); PI #8 if ``inband``."""
        self._invoke(self._lib.pri_proceeding, call, channel, int(inband))

    def progress(self, call: int, channel: int, inband: bool = True,
                 cause: int | None = None) -> None:
        """PROGRESS with PI #8, and a Cause IE when ``cause`` is given (e.g. 17 with busy
        tone in band). The PI is mandatory: with inband=False libpri logs an error."""
        if cause is None:
            self._invoke(self._lib.pri_progress, call, channel, int(inband))
        else:
            self._invoke(self._lib.pri_progress_with_cause, call, channel, int(inband), cause)

    def acknowledge(self, call: int, channel: int, inband: bool) -> None:
        """ALERTING, with PI #8 if ``inband`` (we play ringback on the B-channel). libpri
        sends CALL PROCEEDING first if none was sent."""
        self._invoke(self._lib.pri_acknowledge, call, channel, int(inband))

    def setup_ack(self, call: int, channel: int, *, inband: bool = False,
                  nonisdn: bool = False) -> None:
        """SETUP ACKNOWLEDGE (overlap receiving), PI #8 if we play dial tone in band."""
        self._invoke(self._lib.pri_setup_ack, call, channel, int(nonisdn), int(inband))

    def information(self, call: int, digits: str) -> None:
        """Send more called-number digits (overlap sending), one INFORMATION per digit."""
        for digit in digits:
            self._invoke(self._lib.pri_information, call, digit.encode("ascii"))

    def answer(self, call: int, channel: int, nonisdn: bool = False) -> None:
        """CONNECT."""
        self._invoke(self._lib.pri_answer, call, channel, int(nonisdn))

    def connect_ack(self, call: int, channel: int) -> None:
        """CONNECT ACKNOWLEDGE, when connect_ack_enable(True) made it ours to send."""
        self._invoke(self._lib.pri_connect_ack, call, channel)

    def hangup(self, call: int, cause: int) -> None:
        """Clear or continue clearing (see the module docstring for the sequence).

        libpri picks the message from the cause and state. Causes 1, 34, 44, 82 send
        RELEASE COMPLETE (and free the call at once, with no event) in every state before
        the call is active, or, after :meth:`hangup_fix_enable`, only before any other
        message was sent, as Q.931 5.3.2 says; 81 always does, 88 before any response;
        6, 7 and 26 send RELEASE; the rest DISCONNECT, which libpri suppresses for an
        incoming call we have not yet answered with proceeding()/acknowledge()/setup_ack():
        nothing goes out and the caller times out on T303. Raises ArgumentError for a cause
        outside 1-127, LibpriError for a call that is not live.
        """
        if not 1 <= cause <= 127:
            raise ArgumentError(f"hangup(): cause {cause} is not a Q.850 cause (1-127)")
        self._invoke(self._lib.pri_hangup, call, cause)

    def destroy_call(self, call: int) -> None:
        """Free a call record without signalling (e.g. to ignore a SETUP)."""
        self._invoke(self._lib.pri_destroycall, call)

    def call_reference(self, call: int) -> int | None:
        """The Q.931 call reference value (15 bits, without the flag) of the record
        ``call`` points to, or None when this instance holds no such record
        (``pri_get_crv``, which checks the pointer against libpri's call pool first).

        libpri frees some calls without any event (a SETUP or RESTART with a mandatory
        IE missing on a live call's reference, a RELEASE COMPLETE before any answer), and
        malloc gives the freed address to the next call: a pointer alone does not say
        the record is still the same call, its pointer and call reference together do.
        An invalid pointer makes libpri log "Called with invalid call ptr" (DEBUG here).
        """
        mode = ctypes.c_int(0)
        value = self._invoke(self._lib.pri_get_crv, call, ctypes.byref(mode))
        if value < 0:
            return None
        return (value << 3 | mode.value & 0x7) & 0x7FFF

    def restart(self, channel: int) -> None:
        """Send RESTART for one B-channel (``pri_reset``); RestartAck follows."""
        if channel <= 0:
            raise ArgumentError(f"restart(): channel {channel} is not a B-channel")
        self._invoke(self._lib.pri_reset, channel)


__all__ = [
    "ENV_LIBRARY", "MAINTENANCE_DISCRIMINATORS", "SONAME", "SUPPORTED_VERSIONS", "LibpriError",
    "Pri", "cause_text", "defuse_maintenance_echo", "load", *libpri_abi.__all__,
]
