"""Drain (the operator's scale-down step) and the `dataclay` command, as people use it."""
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataclay import Client
from dataclay.admin import DrainError, deregister_backends, drain_backends, set_draining
from dataclay.exceptions import BackendDrainingError, BackendNotDrainedError, BackendNotFoundError
from directory_view import owned
from hr import Company, Employee

MODELS = Path(__file__).parents[1] / "models"  # the backends' model path (cwd of the CLI runs)


def test_drain_moves_everything_off_and_balances(make_cluster):
    cluster = make_cluster(backends=3)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        ids = list(client.get_backends())
        companies = []
        for index in range(1500):  # 3,000 objects on backend-2
            company = Company(f"C{index}", Employee(f"E{index}", float(index)))
            company.make_persistent(backend_id=ids[2])
            companies.append(company)
        seen = []
        moved = drain_backends("127.0.0.1", cluster.port, ["backend-2"], on_progress=lambda d, t: seen.append((d, t)))
        assert moved == 3000 and seen[-1] == (3000, 3000)
        assert owned(client, ids[2]) == 0
        assert owned(client, ids[0]) > 0 and owned(client, ids[1]) > 0
        for index in (0, 777, 1499):
            companies[index].sync()
            assert companies[index].employee.raise_salary(1.0) == index + 1.0


def test_a_drained_backend_stays_draining_through_a_restart_until_the_mark_is_lifted(make_cluster):
    cluster = make_cluster(backends=2)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        ids = list(client.get_backends())
        Employee("Old", 1.0).make_persistent(backend_id=ids[1])
        assert drain_backends("127.0.0.1", cluster.port, ["backend-1"]) == 1
        assert list(client.get_backends()) == [ids[0]]  # not offered any more
        with pytest.raises(BackendDrainingError, match="backend-1"):
            Employee("New", 1.0).make_persistent(backend_id=ids[1])
        for _ in range(10):
            Employee("Anywhere", 1.0).make_persistent()  # random placement avoids it
        assert owned(client, ids[1]) == 0
        cluster.restart_backend("backend-1")  # its pod restarted between the drain and its removal
        assert list(client.get_backends()) == [ids[0]]
        with pytest.raises(BackendDrainingError, match="backend-1"):
            Employee("New", 1.0).make_persistent(backend_id=ids[1])
        set_draining("127.0.0.1", cluster.port, ["backend-1"], False)  # e.g. the StatefulSet scaled up again
        assert list(client.get_backends()) == ids
        Employee("Back", 1.0).make_persistent(backend_id=ids[1])
        assert owned(client, ids[1]) == 1
        set_draining("127.0.0.1", cluster.port, ["backend-1"], True)  # on a running backend
        with pytest.raises(BackendDrainingError, match="backend-1"):
            Employee("New", 1.0).make_persistent(backend_id=ids[1])


def test_a_retired_backend_leaves_for_good_and_comes_back_empty_under_a_new_id(make_cluster):
    cluster = make_cluster(backends=2)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        ids = list(client.get_backends())
        kept = Employee("Kept", 1.0)
        kept.make_persistent(backend_id=ids[1])
        with pytest.raises(BackendNotDrainedError, match="dataclay drain backend-1"):
            deregister_backends("127.0.0.1", cluster.port, ["backend-1"])
        done = _dataclay("retire", "backend-1", "--port", str(cluster.port))
        assert done.returncode == 0, done.stderr
        assert "retired backend-1: 1 object moved" in done.stdout
        assert list(client.get_backends()) == [ids[0]]
        assert kept.raise_salary(1.0) == 2.0  # it moved before its backend left
        assert deregister_backends("127.0.0.1", cluster.port, ["backend-1"], missing_ok=True) == []
        cluster.restart_backend("backend-1")  # the same (now empty) data directory comes back
        backends = {info.name: backend_id for backend_id, info in client.get_backends().items()}
        assert backends["backend-0"] == ids[0] and backends["backend-1"] not in ids  # a new id, active
        Employee("New", 1.0).make_persistent(backend_id=backends["backend-1"])
        assert owned(client, backends["backend-1"]) == 1


def test_drain_of_a_backend_that_never_registered(make_cluster):
    cluster = make_cluster(backends=2)
    assert drain_backends("127.0.0.1", cluster.port, ["backend-7"], missing_ok=True) == 0
    with pytest.raises(BackendNotFoundError):
        drain_backends("127.0.0.1", cluster.port, ["backend-7"])


def test_drain_refuses_bad_requests(client, cluster):
    with pytest.raises(BackendNotFoundError, match="backend-9"):
        drain_backends("127.0.0.1", cluster.port, ["backend-9"])
    with pytest.raises(DrainError, match="at least one must remain"):
        drain_backends("127.0.0.1", cluster.port, ["backend-0", "backend-1", "backend-2"])


def _dataclay(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dataclay.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=MODELS, **kwargs)


def test_cli_move_and_drain(make_cluster):
    cluster = make_cluster(backends=2)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        ids = list(client.get_backends())
        company = Company("CLI", Employee("E", 1.0))
        company.make_persistent(alias="cli-company", backend_id=ids[0])
        done = _dataclay("move", "cli-company", "backend-1", "--recursive", "--port", str(cluster.port))
        assert done.returncode == 0, done.stderr
        assert "moved 2 objects" in done.stdout and "2/2 objects (100%)" in done.stderr
        company.sync()
        assert company._dc_backend_id == ids[1]
        failed = _dataclay("move", "no-such-alias", "backend-1", "--port", str(cluster.port))
        assert failed.returncode == 1 and "Alias no-such-alias does not exist" in failed.stderr
        done = _dataclay("drain", "backend-1", "--port", str(cluster.port))
        assert done.returncode == 0 and "2 objects moved" in done.stdout
        refused = _dataclay("move", "cli-company", "backend-1", "--port", str(cluster.port))
        assert refused.returncode == 1 and "is being drained" in refused.stderr


def test_cli_demo():
    done = _dataclay("demo", "--backends", "2")
    assert done.returncode == 0, done.stderr
    assert "Demo finished: every step behaved as expected." in done.stdout


def test_cli_up_runs_in_the_foreground_until_ctrl_c(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "dataclay.cli", "up", "--backends", "2", "--port", "0", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=MODELS,
    )
    try:
        printed = b""
        deadline = time.monotonic() + 60
        while b"Press Ctrl-C" not in printed:
            assert select.select([process.stdout], [], [], max(deadline - time.monotonic(), 0))[0], printed
            chunk = os.read(process.stdout.fileno(), 4096)
            assert chunk, printed
            printed += chunk
        port = int(printed.decode().split("127.0.0.1:")[1].split(",")[0])
        with Client(host="127.0.0.1", port=port) as client:
            assert [info.name for info in client.get_backends().values()] == ["backend-0", "backend-1"]
            Employee("Up", 1.0).make_persistent(alias="up")
    finally:
        process.send_signal(signal.SIGINT)  # also when the test fails: never leave servers behind
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0 and b"stopped." in output
    assert (tmp_path / "metadata" / "metadata.sqlite").exists()
