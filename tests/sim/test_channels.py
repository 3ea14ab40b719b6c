"""`uascall channels`: the spans and channels of a running `uascall run`, through its
control socket (uascall.control), and what the kernel shows (sysfs, /proc/dahdi) when no
uascall runs; the socket refuses a user outside its group."""

from __future__ import annotations

import grp
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from uascall.cli import main
from uascall.control import ControlClient, ControlServer
from uascall.dahdi import sysfs
from uascall.errors import UascallError
from uascall.status import render

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data" / "dahdi"
PYTHON = sys.executable
NOBODY = 65534
#: the first call's instance: the application "rings", a run of its host, call 1
FIRST_CALL = re.compile(r"rings-[a-z2-7]{6}-1\b")


@pytest.fixture
def shared_dir():
    """A directory others may enter (pytest's tmp_path is root's alone), so that only the
    socket's own mode and group decide who connects."""
    folder = Path(tempfile.mkdtemp(prefix="uascall-control-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def uascall(*args: str, user: tuple[int, int] | None = None, timeout: float = 30
            ) -> subprocess.CompletedProcess:
    """The uascall command in a process of its own, as ``user`` (uid, gid) if given."""
    def become() -> None:
        assert user is not None
        os.setgroups([])
        os.setgid(user[1])
        os.setuid(user[0])
    return subprocess.run([PYTHON, "-m", "uascall", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=become if user else None,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


# ------------------------------------------------------------------ a running uascall


APP = """\
    __uas_identify__ = "application"

    def main(channel, application_instance_id, file_man, my_log, params):
        channel.ring(seconds_ringtime=2)
        channel.answer()
        channel.wait_for_idle(seconds_timeout=2)
        channel.hang_up()
        return 0
    """


def test_a_call_rings_is_answered_and_is_gone(shared_dir, tmp_path):
    app = tmp_path / "rings.py"
    app.write_text(textwrap.dedent(APP))
    control = shared_dir / "control.sock"
    # a second call 8 s after the first keeps uascall running once the first is gone
    run = subprocess.Popen([PYTHON, "-m", "uascall", "run", str(app), "--calls", "2",
                            "--interval", "8", "--control", str(control)], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []   # the call's state on its B-channel, each change
    listings: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run.poll() is None:
            done = uascall("channels", "--control", str(control), "--json")
            if done.returncode != 0:
                assert "no uascall runs" in done.stderr or "DAHDI" in done.stderr, done.stderr
                time.sleep(0.2)
                continue
            snap = json.loads(done.stdout)
            assert snap["source"].startswith("uascall run (pid ")
            if not snap["spans"]:
                continue  # asked before the backend started
            [span] = snap["spans"]
            assert (span["span"], span["kind"], span["law"], span["switch"],
                    span["alarms"]) == (1, "E1", "alaw", "euroisdn_e1", [])
            if span["dchannel"] != "up":
                continue
            # the first call's channel, until it is gone (the second may be up by then)
            busy = [c for c in snap["channels"] if FIRST_CALL.fullmatch(c["call"] or "")]
            state = busy[0]["state"] if busy else ("gone" if seen else "not yet")
            if state != "not yet" and (not seen or seen[-1] != state):
                if busy:
                    [channel] = busy
                    assert (channel["signalling"], channel["far_end"], channel["codec"],
                            channel["direction"]) == ("PRI B", "5552000", "alaw", "inbound")
                    assert [FIRST_CALL.fullmatch(c["call"]) is not None
                            for c in snap["calls"]] == [True]
                seen.append(state)
                listings[state] = render(snap)  # the text `uascall channels` prints
            if state == "gone" and "answered" in seen:
                break
            time.sleep(0.1)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, err
    assert out.count("return code 0, cause NORMAL (16)") == 2
    assert [s for s in seen if s in ("ring_incoming", "answered", "gone")] == \
        ["ring_incoming", "answered", "gone"], seen
    for state in ("ring_incoming", "answered"):
        [row] = [line for line in listings[state].splitlines() if FIRST_CALL.search(line)]
        assert row.split()[:4] == ["1", "1", "sim", "PRI"] and state in row
        assert "5552000" in row and "alaw" in row
    assert not FIRST_CALL.search(listings["gone"])
    assert not control.exists()  # removed when uascall ended


# ------------------------------------------------------------------ who may connect


@pytest.fixture
def server(shared_dir):
    """A control socket for the group nogroup (nobody's own group), with one command."""
    path = shared_dir / "control.sock"
    with ControlServer(path, {"channels": lambda request: {"spans": [], "channels": [],
                                                           "calls": []}},
                       group="nogroup").start() as served:
        yield served


def test_the_socket_is_for_its_group_only(server):
    info = os.stat(server.path)
    assert oct(info.st_mode & 0o777) == "0o660"
    assert info.st_gid == grp.getgrnam("nogroup").gr_gid
    # nobody in group nogroup may read it
    member = uascall("channels", "--control", str(server.path), user=(NOBODY, NOBODY))
    assert member.returncode == 0, member.stderr
    assert "no spans" in member.stdout
    # nobody in group daemon may not
    outsider = uascall("channels", "--control", str(server.path), user=(NOBODY, 1))
    assert outsider.returncode == 1
    assert "permission denied; expected root or a member of group dahdi" in outsider.stderr


def test_the_server_checks_the_peer_when_the_mode_lets_everyone_in(server):
    server.path.chmod(0o666)  # a mode loosened by hand: the credentials still count
    outsider = uascall("channels", "--control", str(server.path), user=(NOBODY, 1))
    assert outsider.returncode == 1
    assert ("permission denied: uid 65534 is not root, not uascall's user and not in group "
            "nogroup") in outsider.stderr


def test_the_protocol_answers_errors_in_kind(server):
    with ControlClient(server.path) as client:
        assert client.request("ping")["pid"] == os.getpid()
        with pytest.raises(UascallError, match="unknown cmd 'reboot'; expected one of "
                           "channels, ping"):
            client.request("reboot")
        assert client.request("channels")["spans"] == []  # the connection goes on
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(server.path))
        raw.sendall(b"not json\n[1]\n")
        reader = raw.makefile()
        answers = [json.loads(reader.readline()) for _ in range(2)]
    assert answers[0]["ok"] is False and answers[0]["error"].startswith("not JSON")
    assert answers[1] == {"ok": False, "error": 'expected an object with "cmd", such as '
                          '{"cmd": "channels"}'}


def test_a_second_uascall_cannot_take_a_live_socket(server):
    with pytest.raises(UascallError, match="another uascall serves this control socket"):
        ControlServer(server.path, {}).start()


def test_a_socket_left_behind_is_replaced(shared_dir):
    path = shared_dir / "control.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nothing listens
    with ControlServer(path, {}).start():
        with ControlClient(path) as client:
            assert client.request("ping")["ok"]


# ------------------------------------------------------------------ no uascall runs


def write_sysfs(root: Path) -> None:
    """A sysfs tree as DAHDI's drivers make it (dahdi-sysfs.c, dahdi-sysfs-chan.c): an
    E1 span in red alarm and an analog card's span."""
    spans = root / sysfs.SPANS_DIR
    chans = root / sysfs.CHANNELS_DIR
    for number, values in {1: {"name": "TE4/0/1", "desc": "T4XXP (PCI) Card 0 Span 1",
                               "spantype": "E1", "alarms": "0x8", "basechan": "1",
                               "channels": "31", "lineconfig": "HDB3/CCS/CRC4"},
                           2: {"name": "WCTDM/0", "desc": "Wildcard TDM410P",
                               "spantype": "FXO", "alarms": "0x0", "basechan": "32",
                               "channels": "4", "lineconfig": ""}}.items():
        folder = spans / f"span-{number}"
        folder.mkdir(parents=True)
        for key, value in values.items():
            (folder / key).write_text(value + "\n")
    for span, pos, channo, sig, in_use, alarms in [
            (1, 1, 1, "Clear", 1, "RED "), (1, 16, 16, "HDLCFCS", 1, "RED "),
            (1, 2, 2, "Clear", 0, "RED "), (2, 1, 32, "FXOKS", 1, ""),
            (2, 2, 33, "FXSKS", 0, "")]:
        folder = chans / f"dahdi!channels!{span}!{pos}"
        folder.mkdir(parents=True)
        for key, value in {"channo": channo, "chanpos": pos, "sig": sig, "in_use": in_use,
                           "alarms": alarms, "name": f"X/{span}/{pos}"}.items():
            (folder / key).write_text(f"{value}\n")


def test_channels_from_sysfs_when_no_uascall_runs(tmp_path, capsys):
    write_sysfs(tmp_path / "sys")
    assert main(["channels", "--control", str(tmp_path / "none.sock"), "--sysfs",
                 str(tmp_path / "sys"), "--proc", str(tmp_path / "noproc")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "from sysfs"
    spans = [line.split() for line in out if line.startswith(("1 ", "2 "))][:2]
    assert spans[0] == ["1", "dahdi", "TE4/0/1", "E1", "alaw", "-", "-", "RED"]
    assert spans[1] == ["2", "dahdi", "WCTDM/0", "FXO", "-", "-", "OK"]
    chans = {line.split()[0]: line.split() for line in out[out.index(next(
        line for line in out if line.startswith("Chan"))) + 1:]}
    assert chans["16"] == ["16", "1", "dahdi", "HDLCFCS", "in", "use", "RED"]
    assert chans["2"] == ["2", "1", "dahdi", "Clear", "RED"]
    assert chans["32"] == ["32", "2", "dahdi", "FXOKS", "in", "use"]
    # the same as JSON
    assert main(["channels", "--offline", "--json", "--sysfs", str(tmp_path / "sys")]) == 0
    snap = json.loads(capsys.readouterr().out)
    assert snap["spans"][0]["alarms"] == ["RED"]
    assert snap["spans"][0]["dchannel_channel"] == 16
    assert [c["channel"] for c in snap["channels"]] == [1, 2, 16, 32, 33]


def test_channels_from_proc_dahdi_when_sysfs_has_none(tmp_path, capsys):
    proc = tmp_path / "proc" / "dahdi"
    proc.mkdir(parents=True)
    shutil.copy(DATA / "proc-dahdi-1.txt", proc / "1")
    shutil.copy(DATA / "proc-dahdi-2.txt", proc / "2")
    (proc / "dynamic-loc").write_text("not a span\n")
    assert main(["channels", "--offline", "--json", "--sysfs", str(tmp_path / "nosys"),
                 "--proc", str(tmp_path / "proc")]) == 0
    snap = json.loads(capsys.readouterr().out)
    assert snap["source"] == str(proc)
    first, second = snap["spans"]
    assert (first["span"], first["name"], first["description"], first["kind"],
            first["law"], first["alarms"], first["sync_master"], first["lineconfig"]) == (
        1, "TE4/0/1", "T4XXP (PCI) Card 0 Span 1", "E1", "alaw", ["RED"], True,
        "HDB3/CCS/CRC4")
    assert (second["name"], second["alarms"], second["sync_master"]) == (
        "WCTDM/0", [], False)
    rows = {c["channel"]: (c["signalling"], c["in_use"], c["alarms"])
            for c in snap["channels"]}
    assert rows == {1: ("Clear", True, ["RED"]), 2: ("Clear", False, ["RED"]),
                    3: ("Clear", False, ["RED"]), 16: ("HDLCFCS", True, ["RED"]),
                    32: ("FXOKS", True, []), 33: ("FXSKS", False, []),
                    34: ("Reserved", False, []), 35: ("FXOKS", False, [])}
    assert first["dchannel_channel"] == 16


def test_a_proc_file_in_another_format_is_refused_by_name():
    with pytest.raises(ValueError, match="expected 'Span N: NAME"):
        sysfs.parse_proc_span("DAHDI Version: 3.1.0\n")


def test_nothing_to_show(tmp_path, capsys):
    assert main(["channels", "--control", str(tmp_path / "none.sock"), "--sysfs",
                 str(tmp_path), "--proc", str(tmp_path)]) == 1
    assert "no uascall runs (nothing serves" in capsys.readouterr().err


def test_a_user_outside_the_group_keeps_the_socket_to_itself(shared_dir):
    """uascall run by a user who is not in the group: the socket stays the user's own,
    still mode 0660, and still serves that user."""
    own = shared_dir / "nobody"
    own.mkdir()
    os.chown(own, NOBODY, NOBODY)
    path = own / "control.sock"
    script = textwrap.dedent(f"""\
        import os
        from uascall.control import ControlClient, ControlServer
        with ControlServer({str(path)!r}, {{}}, group="daemon").start():
            info = os.stat({str(path)!r})
            print(oct(info.st_mode & 0o777), info.st_uid, info.st_gid)
            with ControlClient({str(path)!r}) as client:
                print(client.request("ping")["ok"])
        """)
    done = subprocess.run([PYTHON, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          preexec_fn=lambda: (os.setgroups([]), os.setgid(NOBODY),
                                              os.setuid(NOBODY)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0o660", str(NOBODY), str(NOBODY), "True"]
    assert "cannot give it to group daemon (not a member)" in done.stderr
