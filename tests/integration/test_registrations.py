"""make_persistent in one round trip: a new object is registered in the directory after its store
is acknowledged (dataclay_backend/registrations.py), and nobody can tell. Most tests hold the
backend's background sender for good (fault point "registrations.background", action "hold"),
so that every registration these objects get comes from the paths that must make it happen."""
from __future__ import annotations

import os
import signal
import time

import grpc
import pytest

from dataclay import Client
from dataclay.admin import drain_backends, set_draining
from dataclay.exceptions import (AliasDoesNotExistError, AlreadyExistError, BackendDrainingError, BackendUnavailableError,
                                 ObjectNotRegisteredError, VersionConsolidatedError, VersionRetiredError)
from dataclay.protocol import UNLIMITED_MESSAGES
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.protocol import dataclay_pb2_grpc as rpc
from dataclay.protocol import codec
from dataclay.security import client_credentials, open_channel
from dataclay.serialization import dumps
from dataclay.transport import translate
from hr import Company, Employee
from shapes import Node

HELD = {"DC_FAULT_POINT": "registrations.background", "DC_FAULT_ACTION": "hold"}


def _held_cluster(make_cluster, backends: int = 2):
    """A cluster whose backend-0 never registers new objects by itself."""
    cluster = make_cluster(backends=backends)
    cluster.stop_process(cluster.backends["backend-0"])
    cluster.start_backend(0, env=HELD)
    return cluster


def _backend_0(client: Client):
    return next(b for b, info in client.get_backends().items() if info.name == "backend-0")


def _stored(backend, prefix: str, count: int) -> list:
    """Ids of `count` new Employees made persistent on backend, one by one."""
    employees = [Employee(f"{prefix}{i}", float(i)) for i in range(count)]
    for employee in employees:
        employee.make_persistent(backend_id=backend)
    return [employee._dc_id for employee in employees]


def _directory_knows(cluster, object_id) -> bool:
    """Ask the metadata service itself (no client-side help): is the id registered?"""
    with open_channel(f"127.0.0.1:{cluster.port}", client_credentials(), options=UNLIMITED_MESSAGES) as channel:
        try:
            rpc.MetadataStub(channel).LocateObject(pb.ObjectRequest(object_id=object_id.bytes), timeout=10)
        except grpc.RpcError as error:
            if isinstance(translate(error, "metadata"), ObjectNotRegisteredError):
                return False
            raise
    return True


def test_another_client_finds_by_id_an_object_its_backend_has_not_registered_yet(make_cluster):
    cluster = _held_cluster(make_cluster)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        backend = _backend_0(client)
        ids = _stored(backend, "N", 20)
    assert not any(_directory_knows(cluster, object_id) for object_id in ids)  # really acknowledged before
    with Client(host="127.0.0.1", port=cluster.port):
        found = [Employee.get_by_id(object_id) for object_id in ids]
        assert [employee.salary for employee in found] == [float(i) for i in range(20)]
        assert all(next(iter(employee.backends)) == backend for employee in found)
    assert all(_directory_knows(cluster, object_id) for object_id in ids)


def test_aliases_moves_versions_and_references_of_objects_not_registered_yet(make_cluster):
    cluster = _held_cluster(make_cluster)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        by_name = {info.name: backend for backend, info in client.get_backends().items()}
        first, second = by_name["backend-0"], by_name["backend-1"]

        named = Employee("Named", 1.0)
        named.make_persistent(backend_id=first)
        named.add_alias("named-later")
        assert Employee.get_by_alias("named-later").salary == 1.0

        moved = Employee("Moved", 2.0)
        moved.make_persistent(backend_id=first)
        moved.move(second)
        assert next(iter(moved.backends)) == second and moved.salary == 2.0

        versioned = Employee("Versioned", 3.0)
        versioned.make_persistent(backend_id=first)
        version = versioned.new_version()
        version.raise_salary(10.0)
        version.consolidate_version()
        assert versioned.salary == 13.0

        # a reference held on another backend to an object its owner has not registered
        worker = Employee("Worker", 4.0)
        worker.make_persistent(backend_id=first)
        company = Company("Elsewhere", worker)
        company.make_persistent(backend_id=second)
        assert company.employee.raise_salary(1.0) == 5.0


def test_a_drain_moves_every_acknowledged_object_including_unregistered_ones(make_cluster):
    cluster = _held_cluster(make_cluster, backends=3)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        by_name = {info.name: backend for backend, info in client.get_backends().items()}
        employees = [Employee(f"D{i}", float(i)) for i in range(40)]
        for employee in employees:
            employee.make_persistent(backend_id=by_name["backend-0"])
        assert drain_backends("127.0.0.1", cluster.port, ["backend-0"]) == 40
        for index, employee in enumerate(employees):
            employee.sync()
            assert next(iter(employee.backends)) != by_name["backend-0"]
            assert employee.salary == float(index)


def test_kill_9_after_the_reply_and_before_the_registration_loses_nothing(make_cluster):
    cluster = _held_cluster(make_cluster)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        ids = _stored(_backend_0(client), "K", 50)
    cluster.kill_backend("backend-0")
    assert not any(_directory_knows(cluster, object_id) for object_id in ids)
    cluster.start_backend(0)  # registers them at start, before recovery compares store and directory
    assert all(_directory_knows(cluster, object_id) for object_id in ids)
    with Client(host="127.0.0.1", port=cluster.port):
        assert [Employee.get_by_id(object_id).name for object_id in ids] == [f"K{i}" for i in range(50)]


def test_objects_created_in_an_active_method_are_registered_after_the_reply_even_after_kill_9(make_cluster):
    """spawn() creates a node inside an active method: its entry is stored with the call's
    changes and registered after the reply, as make_persistent's. The directory does not know
    the nodes when the calls return (the sender is held); a kill -9 of their backend then loses
    nothing: they are registered when it starts again, and found by id."""
    cluster = _held_cluster(make_cluster)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        parent = Node(-1)
        parent.make_persistent(backend_id=_backend_0(client))
        ids = [parent.spawn(i)._dc_id for i in range(5)]
    assert not any(_directory_knows(cluster, object_id) for object_id in ids)
    cluster.kill_backend("backend-0")
    cluster.start_backend(0)  # registers them at start (the entries were stored with the calls)
    assert all(_directory_knows(cluster, object_id) for object_id in ids)
    with Client(host="127.0.0.1", port=cluster.port):
        assert [Node.get_by_id(object_id).value for object_id in ids] == list(range(5))
        assert [child.value for child in Node.get_by_id(parent._dc_id).children] == list(range(5))


def _directory_says(cluster, object_id) -> BaseException | None:
    """What the metadata service itself answers for the id: None if it lists it live."""
    with open_channel(f"127.0.0.1:{cluster.port}", client_credentials(), options=UNLIMITED_MESSAGES) as channel:
        try:
            rpc.MetadataStub(channel).LocateObject(pb.ObjectRequest(object_id=object_id.bytes), timeout=10)
        except grpc.RpcError as error:
            return translate(error, "metadata")
    return None


def test_versions_retired_before_they_were_registered_are_registered_retired_even_after_kill_9(make_cluster):
    """new_version + consolidate_version (and discard_version) before the backend registered the
    version: it goes to the directory already retired (one call for both), from the stored entry
    after a kill -9. The directory then forwards the consolidated one to its original and refuses
    the discarded one, as after a consolidation of a registered version."""
    cluster = _held_cluster(make_cluster)

    def retire(original, discard: bool, salary: float, alias: str = ""):
        version = original.new_version()
        version_id = version._dc_id  # a consolidated version takes its original's identity
        if alias:
            version.add_alias(alias)  # which has it registered first
        version.salary = salary
        version.discard_version() if discard else version.consolidate_version()
        return version_id

    with Client(host="127.0.0.1", port=cluster.port) as client:
        original = Employee("Original", 1.0)
        original.make_persistent(backend_id=_backend_0(client))
        original_id = original._dc_id
        consolidated, discarded = retire(original, False, 2.0), retire(original, True, 9.0)
    assert not _directory_knows(cluster, consolidated)
    with Client(host="127.0.0.1", port=cluster.port):  # another client: its lookup has them sent, retired
        assert Employee.get_by_id(consolidated).salary == 2.0  # followed to the original
        forwarded = _directory_says(cluster, consolidated)
        assert isinstance(forwarded, VersionConsolidatedError) and forwarded.original_id == original_id
        assert isinstance(_directory_says(cluster, discarded), VersionRetiredError)
        original = Employee.get_by_id(original_id)
        registered = retire(original, False, 2.5, alias="draft")
        assert _directory_says(cluster, registered) is None  # listed live until the batch goes
        kept, dropped = retire(original, False, 3.0), retire(original, True, 9.0)
    cluster.kill_backend("backend-0")
    assert not _directory_knows(cluster, kept) and not _directory_knows(cluster, dropped)
    cluster.start_backend(0)  # sends the stored entries, retired, before recovery
    assert isinstance(_directory_says(cluster, registered), VersionConsolidatedError)
    with open_channel(f"127.0.0.1:{cluster.port}", client_credentials(), options=UNLIMITED_MESSAGES) as channel:
        with pytest.raises(grpc.RpcError) as gone:  # a retired version's aliases go with it
            rpc.MetadataStub(channel).LookupAlias(pb.AliasRequest(alias="draft"), timeout=10)
    assert isinstance(translate(gone.value, "metadata"), AliasDoesNotExistError)
    forwarded = _directory_says(cluster, kept)
    assert isinstance(forwarded, VersionConsolidatedError) and forwarded.original_id == original_id
    refused = _directory_says(cluster, dropped)
    assert isinstance(refused, VersionRetiredError) and not isinstance(refused, VersionConsolidatedError)
    with Client(host="127.0.0.1", port=cluster.port):
        assert Employee.get_by_id(kept).salary == 3.0
        assert Employee.get_by_id(original_id).salary == 3.0


def test_unregistered_objects_of_a_backend_marked_draining_while_it_was_down_are_kept(make_cluster):
    cluster = _held_cluster(make_cluster)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        backend = _backend_0(client)
        kept = Employee("Kept", 7.0)
        kept.make_persistent(backend_id=backend)
    cluster.kill_backend("backend-0")
    with open_channel(f"127.0.0.1:{cluster.port}", client_credentials(identity="admin"),
                      options=UNLIMITED_MESSAGES) as channel:
        rpc.MetadataStub(channel).SetDraining(pb.BackendRequest(backend_id=backend.bytes, draining=True), timeout=10)
    cluster.start_backend(0)
    assert _directory_knows(cluster, kept._dc_id)
    with Client(host="127.0.0.1", port=cluster.port):
        assert Employee.get_by_id(kept._dc_id).salary == 7.0
        with pytest.raises(BackendDrainingError, match="backend-0"):  # it learnt the mark when it registered
            Employee("New", 1.0).make_persistent(backend_id=backend)


def test_marking_a_running_backend_draining_first_has_it_register_what_it_stored(make_cluster):
    cluster = _held_cluster(make_cluster)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        backend = _backend_0(client)
        early = Employee("Early", 1.0)
        early.make_persistent(backend_id=backend)
        set_draining("127.0.0.1", cluster.port, ["backend-0"], True)
        assert _directory_knows(cluster, early._dc_id)  # listed for the drain that follows
        with pytest.raises(BackendDrainingError, match="backend-0"):  # registered before any reply now
            Employee("New", 1.0).make_persistent(backend_id=backend)
        assert early.raise_salary(1.0) == 2.0


def test_with_the_metadata_service_stopped_a_store_is_acknowledged_and_registered_once_it_is_back(make_cluster):
    cluster = make_cluster(backends=1)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        backend = next(iter(client.get_backends()))
        os.kill(cluster.metadata.popen.pid, signal.SIGSTOP)
        try:
            stored = Employee("WhileStopped", 5.0)
            stored.make_persistent(backend_id=backend)  # one round trip: the backend alone
            assert stored.salary == 5.0
        finally:
            os.kill(cluster.metadata.popen.pid, signal.SIGCONT)
    with Client(host="127.0.0.1", port=cluster.port):
        assert Employee.get_by_id(stored._dc_id).name == "WhileStopped"


def _store(cluster, backend_info, object_id, class_path: str, state: dict) -> None:
    record = pb.ObjectRecord(object_id=object_id.bytes, class_path=class_path, state=dumps(state, lambda ref: None))
    with open_channel(backend_info.address, client_credentials(), options=UNLIMITED_MESSAGES) as channel:
        try:
            codec.backend_stub(channel).StoreObjects(pb.StoreObjectsRequest(objects=[record]), timeout=10)
        except grpc.RpcError as error:
            raise translate(error, "backend") from None


def test_a_store_sent_again_stores_once_and_an_id_under_another_class_is_refused(make_cluster):
    import uuid

    cluster = _held_cluster(make_cluster)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        by_name = {info.name: info for info in client.get_backends().values()}
        object_id = uuid.uuid4()
        for _ in range(2):  # a store whose reply was lost, sent again
            _store(cluster, by_name["backend-1"], object_id, "hr.Employee", {"name": "Once", "salary": 1.0})
        with pytest.raises(AlreadyExistError):
            _store(cluster, by_name["backend-1"], object_id, "hr.Company", {"name": "Other"})
        assert Employee.get_by_id(object_id).name == "Once"
        # the same id sent to another backend (whose sender is held: nothing registers it before
        # the flush below): acknowledged there, refused by the directory, and dropped there
        # (logged); the first backend's object is untouched
        _store(cluster, by_name["backend-0"], object_id, "hr.Employee", {"name": "Twice", "salary": 2.0})
        with open_channel(by_name["backend-0"].address, client_credentials(), options=UNLIMITED_MESSAGES) as channel:
            stub = codec.backend_stub(channel)
            assert stub.Stats(pb.Empty(), timeout=10).owned_objects == 1
            stub.FlushRegistrations(pb.FlushRegistrationsRequest(), timeout=10)
            assert stub.Stats(pb.Empty(), timeout=10).owned_objects == 0
        assert Employee.get_by_id(object_id).name == "Once"


def test_a_lookup_that_misses_while_a_backend_is_stopped_says_unavailable_not_missing(make_cluster):
    """The object may be on the stopped backend, not registered yet: "does not exist" would be
    untrue (a caller could create it twice). The lookup waits the connect and flush deadlines,
    not the call deadline."""
    cluster = _held_cluster(make_cluster)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        backend = _backend_0(client)
        kept = Employee("Kept", 3.0)
        kept.make_persistent(backend_id=backend)
    pid = cluster.backends["backend-0"].popen.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        with Client(host="127.0.0.1", port=cluster.port, timeout=1.0):
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError, match="backend-0") as raised:
                Employee.get_by_id(kept._dc_id)
            assert not isinstance(raised.value, ObjectNotRegisteredError)
            assert time.monotonic() - started < 8.0  # connecting (5 s), then the flush's deadline (1 s here)
    finally:
        os.kill(pid, signal.SIGCONT)
    with Client(host="127.0.0.1", port=cluster.port):
        assert Employee.get_by_id(kept._dc_id).salary == 3.0
