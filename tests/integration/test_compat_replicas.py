"""Replicas as dataClay 4 names them (`new_replica`, `a_new_replica`, `_dc_meta.replica_backend_ids`,
`backends`), kept in sync by their master (which dataClay 4 does not do): every committed change
reaches every replica before the call returns, reads fall back to a replica when the master's
backend is unavailable, a replica that misses a change is dropped from the directory and never
read again, and drains take replicas off the backends they empty. Separate backend processes."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

import pytest

from dataclay import Client
from dataclay.admin import deregister_backends, drain_backends
from dataclay.exceptions import (
    BackendDrainingError,
    BackendUnavailableError,
    InvalidRequestError,
    NoBackendAvailableError,
    OutcomeUnknownError,
    ReplicaNotFoundError,
)
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.runtime import Runtime
from dataclay.operations import ask_directory
from dataclay.transport import run_blocking
from shapes import Node


def _read_replica(client: Client, holder: UUID, obj: Node, name: str = "value"):
    """What `holder` serves for obj from its replica (ReadReplica), decoded."""
    rt = client.runtime
    info = client.get_backends()[holder]  # asked again: a restarted backend listens elsewhere
    record = run_blocking(rt.blocking.backend(info, "ReadReplica",
                                              pb.ReplicaReadRequest(object_id=obj.id.bytes, name=name)))
    return rt.decode(record.state)


def _listed(client: Client, obj: Node) -> set[UUID]:
    """The replica holders the directory lists now."""
    entry = run_blocking(ask_directory(client.runtime.blocking, "LocateObject", pb.ObjectRequest(object_id=obj.id.bytes)))
    return {UUID(bytes=raw) for raw in entry.replica_backend_ids}


def _until(condition, seconds: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------------------------------ the API


def test_new_replica_puts_a_copy_on_the_named_backend_and_the_object_lists_it(client):
    ids = list(client.get_backends())
    node = Node(7)
    node.make_persistent(backend_id=ids[0])
    assert node.new_replica(backend_id=ids[1]) == ids[1]
    assert node._dc_meta.replica_backend_ids == {ids[1]}
    assert node.backends == {ids[0], ids[1]}
    assert node._dc_meta.master_backend_id == ids[0]
    assert _listed(client, node) == {ids[1]}
    assert _read_replica(client, ids[1], node) == 7
    other = Node.get_by_id(node.id)  # what another process learns from the directory
    assert other is node
    node.sync()
    assert node.backends == {ids[0], ids[1]}


def test_new_replica_without_a_backend_picks_one_that_holds_no_copy_until_none_is_left(client):
    ids = list(client.get_backends())
    node = Node(1)
    node.make_persistent(backend_id=ids[0])
    first = node.new_replica()
    second = node.new_replica()
    assert {first, second} == {ids[1], ids[2]}
    assert node.backends == set(ids)
    with pytest.raises(NoBackendAvailableError):  # also a RuntimeError, as dataClay's
        node.new_replica()


def test_replicating_onto_the_master_or_an_existing_replica_is_a_no_op(client):
    ids = list(client.get_backends())
    node = Node(3)
    node.make_persistent(backend_id=ids[0])
    assert node.new_replica(backend_id=ids[0]) == ids[0]
    assert _listed(client, node) == set()
    node.new_replica(backend_id=ids[1])
    node.new_replica(backend_id=ids[1])
    assert _listed(client, node) == {ids[1]}


def test_a_new_replica_is_the_async_twin(client):
    ids = list(client.get_backends())
    node = Node(5)
    node.make_persistent(backend_id=ids[0])

    async def replicate():
        return await node.a_new_replica(backend_id=ids[2])

    assert asyncio.run(replicate()) == ids[2]
    assert node.replica_backend_ids == {ids[2]}
    assert _read_replica(client, ids[2], node) == 5


def test_recursive_replica_with_remotes_walks_through_objects_of_other_backends(client):
    ids = list(client.get_backends())
    tail = Node(3)
    tail.make_persistent(backend_id=ids[0])
    middle = Node(2, tail)
    middle.make_persistent(backend_id=ids[1])
    head = Node(1, middle)
    head.make_persistent(backend_id=ids[0])
    head.new_replica(backend_id=ids[2], recursive=True)  # remotes=True is the default, as in dataClay
    assert [_listed(client, n) for n in (head, middle, tail)] == [{ids[2]}] * 3
    lone = Node(9, Node(8))
    lone.make_persistent(backend_id=ids[0])
    lone.next.move(ids[1])
    lone.new_replica(backend_id=ids[2], recursive=True, remotes=False)
    assert _listed(client, lone) == {ids[2]} and _listed(client, lone.next) == set()


def test_new_replica_from_a_call_that_holds_the_object_is_refused_at_once_and_nothing_is_replicated(client):
    ids = list(client.get_backends())
    node = Node(1)
    node.make_persistent(backend_id=ids[0])
    started = time.monotonic()
    with pytest.raises(InvalidRequestError, match="after that call returns"):
        node.bump_and_replicate(str(ids[1]))
    assert time.monotonic() - started < 5.0  # not a lock timeout
    assert _listed(client, node) == set() and node.value in (1, 2)


# ------------------------------------------------------------------ in sync


def test_every_committed_change_reaches_the_replicas_before_the_call_returns(client):
    ids = list(client.get_backends())
    node = Node(10)
    node.make_persistent(backend_id=ids[0])
    node.new_replica(backend_id=ids[1])
    node.new_replica(backend_id=ids[2])
    node.value = 11  # an attribute write
    assert _read_replica(client, ids[1], node) == 11 and _read_replica(client, ids[2], node) == 11
    assert node.bump() == 12  # an active method
    assert _read_replica(client, ids[1], node) == 12 and _read_replica(client, ids[2], node) == 12
    node.append_in_place(4)  # an in-place change inside a method
    assert _read_replica(client, ids[2], node, "children") == [4]


def test_a_consolidated_version_reaches_the_originals_replicas(client):
    ids = list(client.get_backends())
    node = Node(1)
    node.make_persistent(backend_id=ids[0])
    node.new_replica(backend_id=ids[1])
    version = node.new_version()
    version.value = 42
    version.consolidate_version()
    assert _read_replica(client, ids[1], node) == 42
    across = node.new_version(backend_id=ids[2])  # a lineage across backends: the two-phase commit
    across.value = 43
    across.consolidate_version()
    assert node.value == 43 and _read_replica(client, ids[1], node) == 43


def test_a_moved_master_keeps_its_replicas_in_sync_and_a_replica_on_the_destination_becomes_the_master(client):
    ids = list(client.get_backends())
    node = Node(1)
    node.make_persistent(backend_id=ids[0])
    node.new_replica(backend_id=ids[1])
    node.new_replica(backend_id=ids[2])
    node.move(ids[1])
    node.sync()
    assert node._dc_backend_id == ids[1] and node.replica_backend_ids == {ids[2]}
    node.value = 2  # the new master keeps the remaining replica in sync
    assert _read_replica(client, ids[2], node) == 2
    with pytest.raises(ReplicaNotFoundError):  # the destination's replica became its own copy
        _read_replica(client, ids[1], node)
    node.move(ids[0])
    node.value = 3
    assert _read_replica(client, ids[2], node) == 3


# ------------------------------------------------------------------ faults


def test_master_killed_reads_fall_back_to_a_replica_and_writes_fail_typed(make_cluster):
    cluster = make_cluster(backends=2)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        ids = list(client.get_backends())
        node = Node(5, None)
        node.make_persistent(backend_id=ids[0])
        node.value = 6
        node.new_replica(backend_id=ids[1])
        clone_before = node.dc_clone()
        cluster.kill_backend("backend-0")
        assert node.value == 6  # served by the replica
        assert node.dc_clone().value == clone_before.value == 6  # GetObjectState falls back too
        assert node.get_properties()["value"] == 6
        with pytest.raises(BackendUnavailableError):
            node.value = 7
        with pytest.raises(BackendUnavailableError):
            node.bump()
        cluster.start_backend(0)
        _until(lambda: _serves(node), what="the master to serve again")
        assert node.bump() == 7 and _read_replica(client, ids[1], node) == 7


def _serves(node: Node) -> bool:
    try:
        node.peek()
        return True
    except BackendUnavailableError:
        return False


def test_master_stopped_reads_fall_back_to_a_replica_within_the_deadline(make_cluster):
    cluster = make_cluster(backends=2)
    with Client(host="127.0.0.1", port=cluster.port, timeout=1.0, method_timeout=1.0) as client:
        ids = list(client.get_backends())
        node = Node(8)
        node.make_persistent(backend_id=ids[0])
        node.new_replica(backend_id=ids[1])
        pid = cluster.backends["backend-0"].popen.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            assert node.value == 8
            assert time.monotonic() - started < 5.0
        finally:
            os.kill(pid, signal.SIGCONT)
        assert node.bump() == 9


def test_a_replica_killed_during_a_write_is_dropped_before_the_write_returns_and_never_read_stale(make_cluster):
    cluster = make_cluster(backends=3)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        ids = list(client.get_backends())
        node = Node(1)
        node.make_persistent(backend_id=ids[0])
        node.new_replica(backend_id=ids[1])
        node.new_replica(backend_id=ids[2])
        cluster.stop_process(cluster.backends["backend-2"])  # restarted below with a fault point
        cluster.start_backend(2, env={"DC_FAULT_POINT": "replicas.before_store"})
        _until(lambda: cluster.backends["backend-2"].popen.poll() is None, what="backend-2")
        node.value = 2  # backend-2 kills itself (kill -9) while storing the change
        assert cluster.backends["backend-2"].popen.wait(10) == -signal.SIGKILL
        assert _listed(client, node) == {ids[1]}  # dropped before the write returned
        assert _read_replica(client, ids[1], node) == 2
        cluster.start_backend(2)  # back, with its old state on disk
        _until(lambda: _answers(client, ids[2], node), what="backend-2 to answer")
        with pytest.raises(ReplicaNotFoundError):
            _read_replica(client, ids[2], node)
        cluster.kill_backend("backend-0")
        node.sync()
        assert node.value == 2  # from backend-1: never the stale copy of backend-2
        assert node.replica_backend_ids == {ids[1]}


def _answers(client: Client, holder: UUID, node: Node) -> bool:
    try:
        _read_replica(client, holder, node)
    except BackendUnavailableError:
        return False
    except ReplicaNotFoundError:
        return True
    return True


def test_a_replica_stopped_past_the_call_deadline_is_dropped_and_the_write_returns(make_cluster):
    cluster = make_cluster(backends=3)
    cluster.stop_process(cluster.backends["backend-0"])
    cluster.start_backend(0, env={"DC_CALL_TIMEOUT": "1"})  # the master's deadline for its holders
    with Client(host="127.0.0.1", port=cluster.port) as client:
        ids = list(client.get_backends())
        master = next(i for i, info in client.get_backends().items() if info.name == "backend-0")
        stopped = next(i for i, info in client.get_backends().items() if info.name == "backend-2")
        kept = next(i for i in ids if i not in (master, stopped))
        node = Node(1)
        node.make_persistent(backend_id=master)
        node.new_replica(backend_id=stopped)
        node.new_replica(backend_id=kept)
        pid = cluster.backends["backend-2"].popen.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            node.value = 2
            assert time.monotonic() - started < 10.0
            assert _listed(client, node) == {kept}
        finally:
            os.kill(pid, signal.SIGCONT)
        with pytest.raises(ReplicaNotFoundError):  # it may have stored the change, or not: never read
            _read_replica(client, stopped, node)
        assert _read_replica(client, kept, node) == 2


def test_a_replica_lost_while_the_metadata_service_is_stopped_fails_the_write_typed_and_is_dropped_later(make_cluster):
    cluster = make_cluster(backends=2)
    cluster.stop_process(cluster.backends["backend-0"])
    cluster.start_backend(0, env={"DC_CALL_TIMEOUT": "1"})
    with Client(host="127.0.0.1", port=cluster.port) as client:
        by_name = {info.name: i for i, info in client.get_backends().items()}
        node = Node(1)
        node.make_persistent(backend_id=by_name["backend-0"])
        node.new_replica(backend_id=by_name["backend-1"])
        assert node.peek() == 0  # the client knows where the master is: the write below asks nobody else
        cluster.kill_backend("backend-1")
        pid = cluster.metadata.popen.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(OutcomeUnknownError, match="could not be told"):
                node.value = 2  # stored on the master; the replica could neither get it nor be dropped
        finally:
            os.kill(pid, signal.SIGCONT)
        _until(lambda: _listed(client, node) == set(), what="the master to drop the replica in the background")
        assert node.value == 2


def test_concurrent_changes_leave_every_replica_with_the_masters_last_state(client):
    ids = list(client.get_backends())
    node = Node(0)
    node.make_persistent(backend_id=ids[0])
    node.new_replica(backend_id=ids[1])
    node.new_replica(backend_id=ids[2])
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: [node.bump() for _ in range(15)], range(4)))
    assert node.value == 60
    assert _read_replica(client, ids[1], node) == 60 and _read_replica(client, ids[2], node) == 60


def test_a_restarted_master_keeps_its_replicas_in_sync(make_cluster):
    cluster = make_cluster(backends=2)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        ids = list(client.get_backends())
        node = Node(1)
        node.make_persistent(backend_id=ids[0])
        node.new_replica(backend_id=ids[1])
        cluster.restart_backend("backend-0")  # it learns its objects' replicas from the directory again
        _until(lambda: _serves(node), what="the master to serve again")
        node.value = 2
        assert _read_replica(client, ids[1], node) == 2


def test_a_drain_takes_every_replica_off_the_drained_backend_and_rehomes_it(make_cluster):
    cluster = make_cluster(backends=3)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        ids = list(client.get_backends())
        nodes = []
        for value in range(4):
            node = Node(value)
            node.make_persistent(backend_id=ids[0])
            node.new_replica(backend_id=ids[2])
            nodes.append(node)
        mastered_there = Node(100)
        mastered_there.make_persistent(backend_id=ids[2])
        mastered_there.new_replica(backend_id=ids[1])
        drain_backends("127.0.0.1", cluster.port, ["backend-2"], credentials=cluster.client_credentials("admin"))
        for node in nodes:
            assert _listed(client, node) == {ids[1]}  # re-homed on the one backend without a copy
            assert _read_replica(client, ids[1], node) == node.value
        mastered_there.sync()
        assert mastered_there._dc_backend_id != ids[2] and ids[2] not in _listed(client, mastered_there)
        admin = Runtime(f"127.0.0.1:{cluster.port}", cluster.client_credentials("admin"))
        try:
            listing = run_blocking(admin.blocking.metadata("ListReplicas", pb.ReplicasRequest(holder=ids[2].bytes)))
        finally:
            admin.close()
        assert list(listing.replicas) == []
        with pytest.raises(BackendDrainingError):
            nodes[0].new_replica(backend_id=ids[2])
        nodes[0].value = 50  # the master no longer counts on backend-2
        assert _read_replica(client, ids[1], nodes[0]) == 50
        # Retiring it and deleting its data loses no copy: its masters moved, its replicas were never the last
        assert deregister_backends("127.0.0.1", cluster.port, ["backend-2"],
                                   credentials=cluster.client_credentials("admin")) == ["backend-2"]
        cluster.kill_backend("backend-2")
        shutil.rmtree(cluster.data_dir / "backend-2")
        assert [n.value for n in nodes] == [50, 1, 2, 3] and mastered_there.value == 100
        cluster.kill_backend("backend-0")  # and the re-homed replicas serve when the masters are gone
        assert [n.value for n in nodes] == [50, 1, 2, 3]
