"""Deadlines, reconnects after a restart, and no blind re-sends of non-idempotent calls
(issue 9). Real processes, real gRPC on loopback.

`Tally` is defined here (this folder is on the backends' model path in these tests): its method
increments, moves the object away from within the call and then kills its own backend, so the
increment is stored on the new owner while the caller's reply is lost.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from dataclay import Client, DataClayObject, activemethod
from dataclay.exceptions import BackendUnavailableError, CallOutcomeUnknownError, DeadlineExceededError
from dataclay_backend.cluster import LocalCluster, Process

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent / "models"
sys.path[:0] = [str(MODELS)]

from hr import Employee  # noqa: E402  (tests/models)


class Tally(DataClayObject):
    value: int

    @activemethod
    def __init__(self, value: int) -> None:
        self.value = value

    @activemethod
    def bump(self) -> int:
        self.value += 1
        return self.value

    @activemethod
    def bump_move_and_die(self, destination: str, victim_pid: int) -> int:
        """Increment; on the victim backend, move (the increment goes along) and die there
        before replying: the change is stored on the new owner, the reply is lost."""
        self.value += 1
        if os.getpid() == victim_pid:
            self.move(destination)
            os.kill(victim_pid, signal.SIGKILL)
        return self.value


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    running = LocalCluster(tmp_path / "cluster", backends=2, port=0, model_paths=[MODELS, HERE]).start()
    try:
        yield running
    finally:
        for process in [running.metadata, *running.backends.values()]:
            if process is not None and process.popen.poll() is None:
                os.kill(process.popen.pid, signal.SIGCONT)  # a test that failed midway
        running.stop()


def restart_on_same_port(cluster: LocalCluster, name: str) -> Process:
    """kill -9, then start the backend again on the port it had (as a pod restarted in place)."""
    old = cluster.backends[name]
    cluster.kill_backend(name)
    args = ["--port", str(old.port), "--name", name, "--data-dir", str(cluster.data_dir / name),
            "--advertise-host", cluster.host, "--metadata-host", cluster.host, "--metadata-port", str(cluster.port)]
    for path in cluster.model_paths:
        args += ["--model-path", str(path)]
    cluster.backends[name] = cluster._spawn(name, "dataclay_backend.backend", args)
    assert cluster.backends[name].port == old.port
    return cluster.backends[name]


def fail_for(seconds: float, call) -> int:
    """Call `call` (which must fail with BackendUnavailableError) for `seconds`: the client's
    channel keeps failing to connect meanwhile, as while a server is being restarted."""
    failures = 0
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        with pytest.raises(BackendUnavailableError):
            call()
        failures += 1
    return failures


def test_a_stopped_backend_fails_calls_within_the_deadline(cluster: LocalCluster):
    with Client(host="127.0.0.1", port=cluster.port, timeout=1.0, method_timeout=1.0) as client:
        backend = list(client.get_backends())[0]
        tally = Tally(1)
        tally.make_persistent(backend_id=backend)
        pid = cluster.backends["backend-0"].popen.pid
        pool = ThreadPoolExecutor(2)
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            read = pool.submit(lambda: tally.value)
            bump = pool.submit(tally.bump)
            with pytest.raises(DeadlineExceededError, match="backend-0"):
                read.result(timeout=10)  # before: blocked until SIGCONT
            with pytest.raises(DeadlineExceededError, match="backend-0") as unknown:
                bump.result(timeout=10)
            assert time.monotonic() - started < 3.0
            assert isinstance(unknown.value, CallOutcomeUnknownError)  # the bump may still happen
        finally:
            os.kill(pid, signal.SIGCONT)
            pool.shutdown()
        assert tally.value in (1, 2)  # the stopped backend serves again; the bump was not re-sent
        assert tally.bump() == tally.value


def test_a_backend_restarted_on_its_port_answers_the_next_call_at_once(cluster: LocalCluster):
    with Client(host="127.0.0.1", port=cluster.port) as client:
        tally = Tally(1)
        tally.make_persistent(backend_id=list(client.get_backends())[0])
        cluster.kill_backend("backend-0")
        assert fail_for(3.0, lambda: tally.value) > 0  # gRPC's default backoff grows meanwhile
        restart_on_same_port(cluster, "backend-0")
        started = time.monotonic()
        assert tally.value == 1  # before: UNAVAILABLE until the channel's backoff expired
        assert tally.bump() == 2
        assert time.monotonic() - started < 2.0


def test_the_metadata_service_restarted_answers_the_next_call_at_once(cluster: LocalCluster):
    with Client(host="127.0.0.1", port=cluster.port) as client:
        Employee("Ann", 1.0).make_persistent(alias="ann", backend_id=list(client.get_backends())[0])
        cluster.stop_process(cluster.metadata, kill=True)
        assert fail_for(3.0, lambda: Employee.get_by_alias("ann")) > 0
        cluster.start_metadata()  # on the same port
        started = time.monotonic()
        assert Employee.get_by_alias("ann").salary == 1.0
        assert time.monotonic() - started < 2.0


def test_a_call_whose_reply_was_lost_is_not_sent_again_to_the_new_owner(cluster: LocalCluster):
    with Client(host="127.0.0.1", port=cluster.port) as client:
        first, second = list(client.get_backends())
        tally = Tally(1)
        tally.make_persistent(backend_id=first)
        victim = cluster.backends["backend-0"].popen.pid
        # The increment is stored on `second` (moved there within the call), then backend-0
        # dies before replying. The directory now names `second`: before, the call was sent
        # there again and applied twice (it returned 3).
        with pytest.raises(CallOutcomeUnknownError, match="backend-0"):
            tally.bump_move_and_die(str(second), victim)
        assert tally.value == 2
        assert tally._dc_backend_id == second
        assert tally.bump() == 3  # idempotent or not, a call that reaches its owner works


def test_the_idempotent_calls_are_those_the_wire_contract_marks_idempotent():
    import re

    from dataclay.protocol import IDEMPOTENT

    proto = (Path(__import__("dataclay.protocol").protocol.__file__).with_name("dataclay.proto")).read_text()
    marked = {name: mark for mark, name in re.findall(r"// \[((?:not )?idempotent)[^\]]*\]\n\s*rpc (\w+)\(", proto)}
    assert len(marked) == proto.count("  rpc ")  # every rpc is classified
    assert {name for name, mark in marked.items() if mark == "idempotent"} == IDEMPOTENT
