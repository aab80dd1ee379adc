"""Nothing a peer sends is executed (issue 10): raw gRPC requests carrying crafted pickles and
class paths are refused with a typed error naming what was refused, the marker file the pickle
would create never appears, and the backend keeps serving."""
from __future__ import annotations

import os
import pickle
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import grpc
import pytest

from dataclay.exceptions import ClassNotAllowedError, ClusterMismatchError, InvalidRequestError, from_detail
from dataclay.protocol import CHAIN_METADATA_KEY, ERROR_METADATA_KEY, UNLIMITED_MESSAGES
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.protocol import dataclay_pb2_grpc as rpc
from dataclay.serialization import allow_globals
from dataclay.security import client_credentials, open_channel
from shapes import Node


class _Calls:
    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


class _Ref:
    """Pickles as a reference (persistent id) naming any class path."""


def _with_reference(value, class_path: str) -> bytes:
    import io

    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=5)
    pickler.persistent_id = lambda obj: (uuid.uuid4().bytes, class_path, b"") if isinstance(obj, _Ref) else None
    pickler.dump(value)
    return buffer.getvalue()


def _error(error: grpc.RpcError) -> BaseException:
    for key, value in error.trailing_metadata():
        if key == ERROR_METADATA_KEY:
            return from_detail(pb.ErrorDetail.FromString(value))
    raise AssertionError(f"no error detail in {error}")


@pytest.fixture
def target(client, tmp_path: Path):
    node = Node(1)
    node.make_persistent()
    backend = client.get_backends()[node._dc_backend_id]
    with open_channel(backend.address, client_credentials(identity="backend:backend-0"), options=UNLIMITED_MESSAGES) as channel:
        yield node, rpc.BackendStub(channel), tmp_path / "marker"
    assert node.bump() == node.value  # still serving, the object unharmed


def _evil(marker: Path) -> list[bytes]:
    return [
        pickle.dumps(_Calls(os.system, f"touch {marker}"), protocol=5),
        pickle.dumps(_Calls(subprocess.Popen, ["touch", str(marker)]), protocol=5),
        pickle.dumps(_Calls(eval, f"open({str(marker)!r}, 'w')"), protocol=5),
        f"cos\nsystem\n(S'touch {marker}'\ntR.".encode(),  # protocol 0, GLOBAL
    ]


def _refused(call, marker: Path, name: str = "is not allowed") -> BaseException:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value
    error = _error(raised.value)
    assert isinstance(error, InvalidRequestError) and name in str(error), error
    time.sleep(0.2)  # a forked `touch` would have had time
    assert not marker.exists()
    return error


def test_crafted_states_arguments_and_values_are_refused(target):
    node, stub, marker = target
    oid = node._dc_id.bytes
    for data in _evil(marker):
        _refused(lambda: stub.StoreObjects(pb.StoreObjectsRequest(objects=[
            pb.ObjectRecord(object_id=uuid.uuid4().bytes, class_path="shapes.Node", state=data)])), marker)
        _refused(lambda: stub.SetAttribute(pb.SetAttributeRequest(object_id=oid, name="value", payload=data)), marker)
        _refused(lambda: stub.CallActiveMethod(pb.CallRequest(object_id=oid, method="bump", payload=data)), marker)
        _refused(lambda: stub.UpdateObject(pb.UpdateObjectRequest(object_id=oid, state=data)), marker)
    wrapped = pickle.dumps(((_Calls(os.system, f"touch {marker}"),), {}), protocol=5)  # inside real arguments
    _refused(lambda: stub.CallActiveMethod(pb.CallRequest(object_id=oid, method="bump", payload=wrapped)), marker,
             "posix.system")
    assert node.value == 1


def test_a_crafted_raw_store_is_refused_and_stores_nothing(target, client):
    """StoreRawObject (make_persistent of a large bytes value): a crafted pickle as the other
    properties, a reference in them, a class that is not a DataClayObject, a class with its own
    __getstate__, a name that is not a property: refused, typed; nothing registered or stored."""
    from dataclay.exceptions import ObjectNotRegisteredError
    from dataclay.protocol import (ALIAS_METADATA_KEY, CLASS_METADATA_KEY, OBJECT_ID_METADATA_KEY,
                                   PROPERTY_METADATA_KEY, STATE_METADATA_KEY)

    node, _, marker = target
    backend = client.get_backends()[node._dc_backend_id]
    channel = open_channel(backend.address, client_credentials(identity="client"), options=UNLIMITED_MESSAGES)
    _raw_store = channel.unary_unary("/dataclay.v1.Backend/StoreRawObject")

    def store(class_path: str, name: str, state: bytes):
        object_id = uuid.uuid4()
        metadata = ((OBJECT_ID_METADATA_KEY, object_id.bytes), (CLASS_METADATA_KEY, class_path.encode()),
                    (PROPERTY_METADATA_KEY, name.encode()), (STATE_METADATA_KEY, state),
                    (ALIAS_METADATA_KEY, b""))
        return object_id, lambda: _raw_store(b"x" * 300_000, metadata=metadata)

    plain = pickle.dumps({"title": "t", "taken": 1}, protocol=5)
    cases = [*[("shapes.Photo", "pixels", data, "is not allowed") for data in _evil(marker)],
             ("shapes.Photo", "pixels", _with_reference({"title": _Ref()}, "shapes.Node"), "references"),
             ("subprocess.Popen", "pixels", plain, "subprocess.Popen"),
             ("stateful.Catalogue", "items", b"", "__getstate__"),
             ("shapes.Photo", "not_a_property", plain, "not_a_property"),
             ("shapes.Photo", "pixels", pickle.dumps({"_dc_version": 7}, protocol=5), "_dc_version"),
             ("shapes.Photo", "pixels", pickle.dumps({"title": ["a list"]}, protocol=5), "plain values only")]
    for class_path, name, state, refused in cases:
        object_id, call = store(class_path, name, state)
        error = _refused(call, marker, refused)
        assert isinstance(error, InvalidRequestError), error
        with pytest.raises(ObjectNotRegisteredError):
            Node.get_by_id(object_id)
    channel.close()


def test_class_paths_name_only_dataclay_objects(target):
    node, stub, marker = target
    oid = node._dc_id.bytes
    plain = pickle.dumps({}, protocol=5)
    for path in ("subprocess.Popen", "os.system", "builtins.eval", "shapes.PayrollError"):
        _refused(lambda: stub.StoreObjects(pb.StoreObjectsRequest(objects=[
            pb.ObjectRecord(object_id=uuid.uuid4().bytes, class_path=path, state=plain)])), marker, path)
        # a reference (persistent id) inside arguments names its class too
        arguments = _with_reference(((_Ref(),), {}), path)
        error = _refused(lambda: stub.CallActiveMethod(pb.CallRequest(object_id=oid, method="bump", payload=arguments)),
                         marker, path)
        assert "not allowed" in str(error)


def _staged_rows(cluster, name: str) -> int:
    with sqlite3.connect(Path(cluster.data_dir) / name / "objects.sqlite") as db:
        return db.execute("SELECT count(*) FROM objects WHERE staged IS NOT NULL").fetchone()[0]


def test_a_crafted_transfer_is_refused_on_arrival(target, cluster):
    """ReceiveObjects (a move's destination side): a class path that is not a DataClayObject, a
    state naming a global outside the allow-list, or a reference naming a class that is not a
    DataClayObject is refused when it arrives, typed, even after good chunks of the same move:
    nothing stays staged, nothing can be activated."""
    node, stub, marker = target
    source = node._dc_backend_id.bytes
    good = pickle.dumps({"value": 7}, protocol=5)
    crafted = [("subprocess.Popen", good, "subprocess.Popen"),
               *[("shapes.Node", state, "is not allowed") for state in _evil(marker)],
               ("shapes.Node", _with_reference({"value": _Ref()}, "os.system"), "os.system")]
    for class_path, state, refused in crafted:
        move_id = uuid.uuid4().bytes
        staged_id = uuid.uuid4().bytes
        chunks = [pb.TransferChunk(move_id=move_id, source_backend_id=source, destination_backend_id=source, objects=[
                      pb.ObjectRecord(object_id=staged_id, class_path="shapes.Node", state=good, revision=1)]),
                  pb.TransferChunk(move_id=move_id, source_backend_id=source, destination_backend_id=source, objects=[
                      pb.ObjectRecord(object_id=uuid.uuid4().bytes, class_path=class_path, state=state, revision=1)])]
        error = _refused(lambda: stub.ReceiveObjects(iter(chunks)), marker, refused)
        assert isinstance(error, ClassNotAllowedError), error
        with pytest.raises(grpc.RpcError):  # nothing staged under that move to activate
            stub.GetAttribute(pb.GetAttributeRequest(object_id=staged_id, name="value"))
    assert _staged_rows(cluster, "backend-0") == _staged_rows(cluster, "backend-1") == _staged_rows(cluster, "backend-2") == 0


def test_a_transfer_meant_for_another_backend_is_refused_and_nothing_is_staged(target, cluster, client):
    """A transfer names its destination: a backend it reaches by mistake (one listening where
    another used to) refuses it, typed, before staging anything, so two backends never hold it."""
    node, stub, _ = target
    here = node._dc_backend_id
    other = next(backend_id for backend_id in client.get_backends() if backend_id != here)
    record = pb.ObjectRecord(object_id=uuid.uuid4().bytes, class_path="shapes.Node",
                             state=pickle.dumps({"value": 3}, protocol=5), revision=1)
    for destination in (other.bytes, b""):
        chunk = pb.TransferChunk(move_id=uuid.uuid4().bytes, source_backend_id=other.bytes,
                                 destination_backend_id=destination, objects=[record])
        with pytest.raises(grpc.RpcError) as raised:
            stub.ReceiveObjects(iter([chunk]))
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert isinstance(_error(raised.value), ClusterMismatchError)
    assert _staged_rows(cluster, "backend-0") == _staged_rows(cluster, "backend-1") == _staged_rows(cluster, "backend-2") == 0


def test_a_move_of_a_state_the_destination_refuses_changes_nothing(make_cluster, monkeypatch):
    """A source that allows a type (DC_PICKLE_ALLOW) moving it to a destination that does not:
    the destination refuses the state on arrival (before, it staged it and the object could
    never be loaded again), the move fails typed, nothing is staged there, the source still
    owns and serves the object."""
    import ipaddress

    from dataclay import Client

    allow_globals("ipaddress.IPv4Address")  # this client
    monkeypatch.setenv("DC_PICKLE_ALLOW", "ipaddress.IPv4Address")
    cluster = make_cluster(backends=1)  # backend-0 allows it
    monkeypatch.delenv("DC_PICKLE_ALLOW")
    cluster.start_backend(1)  # backend-1 does not
    with Client(host="127.0.0.1", port=cluster.port) as client:
        ids = {info.name: backend_id for backend_id, info in client.get_backends().items()}
        root = Node(-1)
        root.children = [Node(i) for i in range(50)] + [Node(ipaddress.IPv4Address("10.1.2.3"))]
        root.make_persistent(backend_id=ids["backend-0"])
        with pytest.raises(ClassNotAllowedError, match="ipaddress.IPv4Address"):
            root.move(ids["backend-1"], recursive=True)
        assert _staged_rows(cluster, "backend-1") == 0
        for node in [root, *root.children]:
            node.sync()
            assert node._dc_backend_id == ids["backend-0"]
        assert root.children[-1].value == ipaddress.IPv4Address("10.1.2.3")
        assert root.bump() == 0 and root.children[0].bump() == 1


def test_a_crafted_prepared_write_is_never_run(target):
    """StageWrite keeps a consolidation's state as bytes (it locks its object until the
    transaction ends); ApplyWrites decodes it, restricted."""
    node, stub, marker = target
    victim = Node(5)
    victim.make_persistent(backend_id=node._dc_backend_id)
    txn = uuid.uuid4().bytes
    metadata = ((CHAIN_METADATA_KEY, uuid.uuid4().hex),)
    outcomes = []
    for call in (
        lambda: stub.StageWrite(pb.StageWriteRequest(txn_id=txn, object_id=victim._dc_id.bytes, state=_evil(marker)[0],
                                                     expected_revision=0, force=True), metadata=metadata),
        lambda: stub.ApplyWrites(pb.ApplyWritesRequest(txn_id=txn)),
        lambda: stub.AbortWrites(pb.TransactionRequest(txn_id=txn)),
    ):
        try:
            call()
            outcomes.append("ok")
        except grpc.RpcError as error:
            outcomes.append(type(_error(error)).__name__)
    assert outcomes[1] == "ClassNotAllowedError", outcomes  # the state is refused where it is unpickled
    time.sleep(0.2)
    assert not marker.exists()
    assert victim.value == 5 and victim.bump() == 6  # aborted: the object as stored, free again


def test_a_configured_extra_type_is_accepted_and_unconfigured_refused(cluster, make_cluster, monkeypatch):
    import ipaddress

    from dataclay import Client

    address = ipaddress.IPv4Address("10.1.2.3")
    allow_globals("ipaddress.IPv4Address")  # this client; the shared cluster's servers do not allow it
    with Client(host="127.0.0.1", port=cluster.port):
        node = Node(1)
        node.make_persistent()
        with pytest.raises(InvalidRequestError, match="ipaddress.IPv4Address"):
            node.value = address
        assert node.value == 1
    monkeypatch.setenv("DC_PICKLE_ALLOW", "ipaddress.IPv4Address")  # the servers started now allow it
    configured = make_cluster(backends=1)
    with Client(host="127.0.0.1", port=configured.port):
        node = Node(address)
        node.make_persistent()
        assert node.value == address
        node.value = ipaddress.IPv4Address("10.9.9.9")
        assert Node.get_by_id(node._dc_id).value == ipaddress.IPv4Address("10.9.9.9")
