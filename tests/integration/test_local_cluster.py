"""`dataclay up` as a new user runs it: one cluster per port and per data directory, no servers
left behind whatever kills it, a smaller --backends does not offer the missing backends, and
bad arguments get one-line errors. Real processes; every wait is bounded by a deadline."""
from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataclay import Client
from hr import Employee

MODELS = Path(__file__).parents[1] / "models"  # the backends' model path (cwd of the CLI runs)
DEADLINE = 60.0


class Up:
    """A `dataclay up` process; `ready()` reads its output until it serves or exits."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "dataclay.cli", "up", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=MODELS)
        self.stdout = b""
        self.stderr = b""

    def ready(self) -> bool:
        """True once it prints "Press Ctrl-C", False if it exits first. What `up` wrote to
        stderr before that line (flushed first) is read too."""
        deadline = time.monotonic() + DEADLINE
        streams = {self.process.stdout.fileno(): "stdout", self.process.stderr.fileno(): "stderr"}
        while b"Press Ctrl-C" not in self.stdout:
            readable, _, _ = select.select(list(streams), [], [], max(deadline - time.monotonic(), 0))
            assert readable, f"neither ready nor exited in {DEADLINE}s: {self.stdout!r} {self.stderr!r}"
            for fd in readable:
                chunk = os.read(fd, 4096)
                if chunk:
                    setattr(self, streams[fd], getattr(self, streams[fd]) + chunk)
                    continue
                del streams[fd]
                if not streams:
                    self.process.wait(DEADLINE)
                    return False
        while (readable := select.select(list(streams), [], [], 0)[0]):  # already in the pipes: no wait
            for fd in readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    del streams[fd]
                    continue
                setattr(self, streams[fd], getattr(self, streams[fd]) + chunk)
        return True

    @property
    def port(self) -> int:
        return int(self.stdout.decode().split("127.0.0.1:")[1].split(",")[0])

    def server_pids(self) -> list[int]:
        """The processes `up` started (its children)."""
        children = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                    children.append(int(entry))
        return children

    def stop(self) -> tuple[bytes, bytes]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        out, err = self.process.communicate(timeout=DEADLINE)
        self.stdout += out
        self.stderr += err
        return self.stdout, self.stderr


@pytest.fixture
def up():
    started: list[Up] = []

    def start(*args: str) -> Up:
        started.append(Up(*args))
        return started[-1]

    yield start
    for process in started:  # never leave servers behind, also when a test fails
        pids = process.server_pids() if process.process.poll() is None else []
        process.stop()
        for pid in pids:
            _kill_quietly(pid)


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_dead(pids: list[int], timeout: float = 30.0) -> list[int]:
    """Poll until every pid is gone (or a zombie); returns those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _alive(pid)]
        if alive:
            time.sleep(0.05)
    return alive


def _one_line(stderr: bytes) -> str:
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], stderr.decode()
    return lines[0]


def test_a_second_up_on_a_port_in_use_fails_clearly(up, tmp_path):
    first = up("--backends", "1", "--port", "0", "--data-dir", str(tmp_path / "one"))
    assert first.ready(), first.stderr
    second = up("--backends", "1", "--port", str(first.port), "--data-dir", str(tmp_path / "two"))
    assert not second.ready(), "a second cluster serves on the same port"
    assert second.process.returncode == 1
    line = _one_line(second.stderr)
    assert f"port {first.port}" in line and "in use" in line
    with Client(host="127.0.0.1", port=first.port) as client:  # the first one is untouched
        assert [info.name for info in client.get_backends().values()] == ["backend-0"]


def test_a_server_refuses_a_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for module in ("dataclay_backend.metadata", "dataclay_backend.backend"):
            done = subprocess.run([sys.executable, "-m", module, "--listen", "127.0.0.1", "--port", str(port),
                                   "--data-dir", str(tmp_path / module), "--insecure"],
                                  capture_output=True, timeout=DEADLINE)
            assert done.returncode == 2, done.stderr
            assert f"cannot listen on 127.0.0.1:{port}" in done.stderr.decode()
            assert "Traceback" not in done.stderr.decode()


def test_a_second_up_on_a_data_directory_in_use_fails_clearly(up, tmp_path):
    first = up("--backends", "1", "--port", "0", "--data-dir", str(tmp_path))
    assert first.ready(), first.stderr
    second = up("--backends", "1", "--port", "0", "--data-dir", str(tmp_path))
    assert not second.ready(), "two clusters serve one data directory"
    assert second.process.returncode == 1
    line = _one_line(second.stderr)
    assert "in use" in line and f"process {first.process.pid}" in line


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGHUP])
def test_no_server_outlives_up(up, tmp_path, how):
    """kill -9 of `up`, or its terminal closed (SIGHUP): its servers go too."""
    cluster = up("--backends", "2", "--port", "0", "--data-dir", str(tmp_path))
    assert cluster.ready(), cluster.stderr
    with Client(host="127.0.0.1", port=cluster.port) as client:
        Employee("Kept", 1.0).make_persistent(alias="kept")
    pids = cluster.server_pids()
    assert len(pids) == 3
    cluster.process.send_signal(how)
    cluster.process.wait(DEADLINE)
    assert _wait_dead(pids) == [], "servers outlived `up`"
    again = up("--backends", "2", "--port", "0", "--data-dir", str(tmp_path))  # the lock went with it
    assert again.ready(), again.stderr
    with Client(host="127.0.0.1", port=again.port) as client:  # killed servers lost nothing acknowledged
        assert Employee.get_by_alias("kept").salary == 1.0


def test_a_smaller_up_does_not_offer_the_backends_it_did_not_start(up, tmp_path):
    three = up("--backends", "3", "--port", "0", "--data-dir", str(tmp_path))
    assert three.ready(), three.stderr
    with Client(host="127.0.0.1", port=three.port) as client:
        ids = list(client.get_backends())
        Employee("On two", 2.0).make_persistent(alias="on-two", backend_id=ids[2])
    three.stop()
    one = up("--backends", "1", "--port", "0", "--data-dir", str(tmp_path))
    assert one.ready(), one.stderr
    message = one.stdout.decode() + one.stderr.decode()
    assert "backend-1, backend-2" in message and "1 object" in message, message
    with Client(host="127.0.0.1", port=one.port) as client:
        assert [info.name for info in client.get_backends().values()] == ["backend-0"]
        for index in range(20):  # random placement only picks the running backend
            employee = Employee(f"E{index}", 1.0)
            employee.make_persistent()
            assert employee._dc_backend_id == ids[0]
    one.stop()
    again = up("--backends", "3", "--port", "0", "--data-dir", str(tmp_path))  # they come back, objects too
    assert again.ready(), again.stderr
    with Client(host="127.0.0.1", port=again.port) as client:
        assert list(client.get_backends()) == ids
        assert Employee.get_by_alias("on-two").salary == 2.0


@pytest.mark.parametrize("args, says", [
    (["--backends", "0"], "--backends"),
    (["--backends", "many"], "--backends"),
    (["--port", "99999"], "--port"),
    (["--port", "-1"], "--port"),
    (["--data-dir", "{file}/data"], "--data-dir"),
])
def test_bad_arguments_get_a_one_line_error(up, tmp_path, args, says):
    (tmp_path / "file").write_text("not a directory")
    args = [arg.replace("{file}", str(tmp_path / "file")) for arg in args]
    refused = up("--port", "0", "--data-dir", str(tmp_path / "data"), *args)  # the last of a repeated flag counts
    assert not refused.ready(), "served despite a bad argument"
    assert refused.process.returncode == 2, refused.stderr
    line = _one_line(refused.stderr)
    assert line.startswith("dataclay up: error: ") and says in line
    assert refused.stdout == b""


def test_help_documents_every_option_with_its_default():
    from dataclay.cli import build_parser

    parser = build_parser()
    commands = next(action for action in parser._actions if action.choices and action.dest == "command")
    for name, command in commands.choices.items():
        text = command.format_help().split("options:", 1)[1]
        for action in command._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"dataclay {name} {action.option_strings[0]} has no help"
                block = text.split(action.option_strings[-1], 1)[1].split("\n  -", 1)[0]
                assert "default" in block, f"dataclay {name} {action.option_strings[0]}: no default in {block!r}"
    assert "(default: 3)" in commands.choices["up"].format_help()
