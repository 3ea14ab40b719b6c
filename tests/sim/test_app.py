"""The application host: loading, one thread per call, return codes, call records."""

from __future__ import annotations

import re
import sys
import textwrap
import time
from pathlib import Path

import pytest

from uascall.app import (
    AppHost,
    Application,
    ApplicationError,
    CallRecords,
    FileManager,
    new_run_id,
)
from uascall.engine import Engine, VirtualClock
from uascall.errors import ArgumentError, Error
from uascall.sim.backend import SimBackend

from .helpers import drop_message

T = 5.0


def write_app(tmp_path: Path, body: str, name: str = "app", future: bool = False) -> Path:
    """The application file; with ``future``, one that starts with ``from __future__ import
    annotations`` (which makes dataclasses resolve annotations through sys.modules)."""
    path = tmp_path / f"{name}.py"
    path.write_text(("from __future__ import annotations\n" if future else "")
                    + '__uas_identify__ = "application"\n__uas_version__ = "9.9"\n'
                    + textwrap.dedent(body))
    return path


def serve(tmp_path: Path, body: str, calls: int = 1, records: Path | None = None,
          future: bool = False):
    """Run the application for ``calls`` calls from the simulated exchange."""
    app = Application.load(write_app(tmp_path, body, future=future))
    with Engine(VirtualClock()) as engine, engine.actor():
        backend = SimBackend(engine)
        host = AppHost(engine, backend, app, application_parameters="p=1",
                       media_dir=tmp_path, records=records)
        engine.run(host.start)
        assert engine.wait_until(lambda: backend.up, T)
        far = [engine.run(backend.far_end.dial, "5551000") for _ in range(calls)]
        assert engine.wait_until(lambda: all(c.cleared for c in far), 60)
        assert host.join(10)
    return host, far


@pytest.mark.parametrize("body, rc", [
    ("def main(channel, iid, file_man, my_log, params):\n    channel.reject()\n    return 7\n",
     7),
    ("def main(channel, iid, file_man, my_log, params):\n    channel.reject()\n"
     "    raise RuntimeError('boom')\n", -1),
    ("def main(channel, iid, file_man, my_log, params):\n    channel.reject()\n"
     "    return 'yes'\n", -1),
    ("def main(channel, iid, file_man, my_log, params):\n    channel.reject()\n"
     "    return -42\n", -5),
    ("def main(channel, iid, file_man, my_log, params):\n    channel.reject()\n"
     "    return -150\n", -150),
    # sys.exit() in main() ends that instance, not the host; it did not return an int
    ("import sys\ndef main(channel, iid, file_man, my_log, params):\n    channel.reject()\n"
     "    sys.exit(3)\n", -1),
    # an int a call record cannot hold counts as no int
    ("def main(channel, iid, file_man, my_log, params):\n    channel.reject()\n"
     "    return 2**70\n", -1),
    ("def main(channel, iid, file_man, my_log, params):\n    channel.reject()\n"
     "    return 2**63 - 1\n", 2**63 - 1),
])
def test_return_codes_follow_uas(tmp_path, body, rc):
    records = tmp_path / "records" / "calls.sqlite3"  # its folder is created
    host, _far = serve(tmp_path, body, records=records)
    assert [r.return_code for r in host.results] == [rc]
    assert [r.return_code for r in CallRecords(records).all()] == [rc]


def test_an_application_module_is_importable_while_it_loads(tmp_path):
    """dataclasses (and pickle, typing) look the module up in sys.modules by name."""
    body = """
    from dataclasses import dataclass

    @dataclass
    class Menu:
        greeting: str = "hello"

    def main(channel, application_instance_id, file_man, my_log, application_parameters):
        channel.reject()
        return len(Menu().greeting)
    """
    host, _far = serve(tmp_path, body, future=True)
    assert [r.return_code for r in host.results] == [5]


def test_an_application_that_exits_while_loading_is_invalid(tmp_path):
    path = write_app(tmp_path, "import sys\nsys.exit(2)\n", name="quitter")
    with pytest.raises(ApplicationError, match="does not load: SystemExit") as info:
        Application.load(path)
    assert info.value.rc == -4 and "uascall_app_quitter" not in sys.modules


def test_call_records_say_where_they_cannot_be_written(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(Error, match=r"call records .*file/calls\.sqlite3: .*expected a "
                                    "writable SQLite file"):
        CallRecords(tmp_path / "file" / "calls.sqlite3")


def test_shutdown_hangs_up_the_calls_and_records_every_instance(tmp_path):
    """What ``uascall run`` does on Ctrl-C: the network is told, no record is lost."""
    body = """
    import threading
    release = threading.Event()
    def main(channel, application_instance_id, file_man, my_log, application_parameters):
        channel.answer()
        if application_parameters == "stuck" and application_instance_id.endswith("-2"):
            release.wait()        # ignores the hang-up: the host must not wait for ever
            return 1
        return 7 if channel.wait_for_idle() is channel.State.IDLE else 8
    """
    app = Application.load(write_app(tmp_path, body))
    records = tmp_path / "calls.sqlite3"
    # real time: an application blocked outside the engine would stall virtual time
    with Engine() as engine:
        backend = SimBackend(engine)
        host = AppHost(engine, backend, app, application_parameters="stuck",
                       media_dir=tmp_path, records=records)
        engine.run(host.start)
        assert engine.wait_until(lambda: backend.up, T)
        far = [engine.run(backend.far_end.dial, "5551000") for _ in range(2)]
        assert engine.wait_until(lambda: all(c.call.state.name == "CONNECTED" for c in far), T)
        assert host.shutdown(timeout=0.5) is False
        assert all(c.cleared and c.call.cleared_by == "remote" and c.call.cause == 16
                   for c in far)
        sys.modules["uascall_app_app"].release.set()
        assert host.join(T)
    run = host.run_id
    assert sorted((r.instance_id, r.return_code) for r in host.results) == [
        (f"app-{run}-1", 7), (f"app-{run}-2", -9)]
    assert sorted((r.instance_id, r.return_code) for r in CallRecords(records).all()) == [
        (f"app-{run}-1", 7), (f"app-{run}-2", -9)]


def test_a_call_left_up_is_hung_up_and_recorded(tmp_path):
    body = """
    def main(channel, application_instance_id, file_man, my_log, application_parameters):
        assert application_parameters == "p=1" and file_man.exists("app.py")
        my_log.info("answering %s", application_instance_id)
        channel.answer()
        return 3
    """
    records = tmp_path / "calls.sqlite3"
    host, far = serve(tmp_path, body, calls=3, records=records)
    ids = [f"app-{host.run_id}-{n}" for n in (1, 2, 3)]
    assert sorted(r.instance_id for r in host.results) == ids
    assert {r.cause for r in host.results} == {"NORMAL"}
    assert all(c.call.cleared_by == "remote" and c.call.cause == 16 for c in far)
    stored = CallRecords(records).all()
    assert sorted(r.instance_id for r in stored) == ids
    assert {(r.caller, r.called, r.return_code, r.raw_cause) for r in stored} == {
        ("5552000", "5551000", 3, "16")}


def test_instance_ids_do_not_come_again_in_another_run(tmp_path):
    """A restarted server, or another worker of --workers, must not give an instance an
    id used before: applications name their files by it (examples/ivr.py its
    recordings), and one run's would overwrite another's."""
    body = """
    def main(channel, application_instance_id, file_man, my_log, application_parameters):
        channel.answer()
        return 0
    """
    first, _ = serve(tmp_path, body)
    second, _ = serve(tmp_path, body)
    [one], [two] = first.results, second.results
    assert re.fullmatch(r"app-[a-z2-7]{6}-1", one.instance_id)
    assert re.fullmatch(r"app-[a-z2-7]{6}-1", two.instance_id)
    assert one.instance_id != two.instance_id
    assert len({new_run_id() for _ in range(1000)}) == 1000


def test_instances_run_in_parallel_threads(tmp_path):
    body = """
    import threading
    seen = set()
    def main(channel, application_instance_id, file_man, my_log, application_parameters):
        seen.add(threading.current_thread().name)
        channel.ring(seconds_ringtime=30)   # all three ring at the same time
        channel.reject()
        return len(seen)
    """
    host, _far = serve(tmp_path, body, calls=3)
    assert max(r.return_code for r in host.results) == 3
    assert all(r.duration == pytest.approx(30, abs=0.1) for r in host.results)


@pytest.mark.parametrize("source, message", [
    ('__uas_identify__ = "common"\n', "__uas_identify__ is 'common'"),
    ('__uas_identify__ = "application"\n', "has no main()"),
    ('__uas_identify__ = "application"\ndef main(channel):\n    return 0\n',
     r"cannot take \(channel, application_instance_id"),
    ('__uas_identify__ = "application"\ndef main(:\n', "does not load: SyntaxError"),
])
def test_invalid_applications_are_refused_with_rc_minus_4(tmp_path, source, message):
    path = tmp_path / "bad.py"
    path.write_text(source)
    with pytest.raises(ApplicationError, match=message) as info:
        Application.load(path)
    assert info.value.rc == -4
    with pytest.raises(ApplicationError, match="no such file"):
        Application.load(tmp_path / "missing.py")


def test_file_manager_stays_inside_its_folder(tmp_path):
    files = FileManager(tmp_path)
    (tmp_path / "a.wav").write_bytes(b"")
    assert files.exists("a.wav") and files.list() == ["a.wav"]
    for escape in ("../x.wav", "/etc/passwd"):
        with pytest.raises(ArgumentError, match="outside the media directory"):
            files.path(escape)


def test_results_keep_the_last_records_and_totals_count_them_all(tmp_path):
    body = """
    import itertools
    numbers = itertools.count(1)
    def main(channel, iid, file_man, my_log, params):
        channel.reject()
        n = next(numbers)
        return -101 if n == 1 else n
    """
    app = Application.load(write_app(tmp_path, body))
    with Engine(VirtualClock()) as engine, engine.actor():
        backend = SimBackend(engine)
        host = AppHost(engine, backend, app, media_dir=tmp_path, keep_results=2)
        engine.run(host.start)
        assert engine.wait_until(lambda: backend.up, T)
        for _ in range(4):  # one after the other, so that the records come in order
            far = engine.run(backend.far_end.dial, "5551000")
            assert engine.wait_until(lambda far=far: far.cleared, 60)
            assert host.join(10)
    assert [r.return_code for r in host.results] == [3, 4]
    assert (host.total_calls, host.total_failures) == (4, 1)  # the failure was dropped
    records, calls, failures = host.result_totals()
    assert [r.instance_id for r in records] == [f"app-{host.run_id}-{n}" for n in (3, 4)]
    assert (calls, failures) == (4, 1)


@pytest.mark.parametrize("keep", [-1, 2.5, True])
def test_keep_results_must_be_a_count(tmp_path, keep):
    app = Application.load(write_app(tmp_path, "def main(c, i, f, l, p):\n    return 0\n"))
    with Engine(VirtualClock()) as engine:
        with pytest.raises(ArgumentError, match="keep_results"):
            AppHost(engine, SimBackend(engine), app, keep_results=keep)


def test_shutdown_clears_every_call_at_once_and_keeps_to_its_timeout(tmp_path):
    """Clearing a call can take long (here the far end's RELEASE is lost, so libpri waits
    for its T305, 30 s): shutdown() starts clearing every call at once and keeps to its
    timeout, rather than waiting for each call's clearing in turn (two calls: a minute)."""
    body = """
    def main(channel, application_instance_id, file_man, my_log, application_parameters):
        channel.answer()
        channel.wait_for_idle()
        return 7
    """
    app = Application.load(write_app(tmp_path, body))
    with Engine() as engine:  # real time: libpri's timers run on the wall clock
        backend = SimBackend(engine)
        host = AppHost(engine, backend, app, media_dir=tmp_path)
        engine.run(host.start)
        assert engine.wait_until(lambda: backend.up, T)
        far = [engine.run(backend.far_end.dial, "5551000") for _ in range(2)]
        assert engine.wait_until(lambda: all(c.call.state.name == "CONNECTED" for c in far), T)
        backend.loop.tap.frame_filter = drop_message("RELEASE")
        started = time.monotonic()
        assert host.shutdown(timeout=2.0) is False
        took = time.monotonic() - started
        assert took < 2.0 + T, f"shutdown(timeout=2.0) took {took:.1f} s"
        # both far ends were told at once: each got our DISCONNECT
        assert all(c.call.cause == 16 for c in far)
        assert host.join(T)
    assert sorted(r.return_code for r in host.results) == [-9, -9]
