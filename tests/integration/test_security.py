"""Secure by default (issue 10): mutual TLS on every channel, a role per caller, internal calls
bound to the caller's identity. Raw gRPC requests, as an attacker would send them."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid

import grpc
import pytest

from dataclay import Client
from dataclay.exceptions import BackendUnavailableError, InvalidRequestError
from dataclay.protocol import UNLIMITED_MESSAGES
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.protocol import dataclay_pb2_grpc as rpc
from dataclay.security import Credentials, PermissionDeniedError, create, open_channel
from dataclay.transport import translate
from shapes import Node


def refusal(call):
    """The typed exception our client makes of a refused raw call."""
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return translate(raised.value, "test")


def stubs(address: str, credentials: Credentials | None):
    channel = open_channel(address, credentials, options=UNLIMITED_MESSAGES)
    return channel, rpc.MetadataStub(channel), rpc.BackendStub(channel)


def test_the_credentials_are_only_the_users(cluster):
    directory = cluster.credentials_dir
    assert directory is not None and stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_no_credentials_plain_text_or_another_ca_are_refused(cluster, tmp_path, monkeypatch):
    address = f"127.0.0.1:{cluster.port}"
    with grpc.insecure_channel(address) as plain:  # plain text to a TLS server
        with pytest.raises(grpc.RpcError) as raised:
            rpc.MetadataStub(plain).ListBackends(pb.Empty(), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    other = create(tmp_path / "other", ["client"])  # a valid certificate of another CA
    with open_channel(address, Credentials.load(other), options=UNLIMITED_MESSAGES) as foreign:
        with pytest.raises(grpc.RpcError) as raised:
            rpc.MetadataStub(foreign).ListBackends(pb.Empty(), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails
    # Our client, typed: nothing reaches the server
    for credentials in (Credentials.load(other),):
        with Client(host="127.0.0.1", port=cluster.port, credentials=credentials, connect_timeout=1.0) as client:
            with pytest.raises(BackendUnavailableError):
                client.get_backends()
    monkeypatch.setenv("DC_INSECURE", "1")  # a client that finds no credentials speaks plain text
    with Client(host="127.0.0.1", port=cluster.port, connect_timeout=1.0) as client:
        with pytest.raises(BackendUnavailableError):
            client.get_backends()


def test_a_client_may_not_make_internal_calls(cluster, client):
    node = Node(1)
    node.make_persistent()
    backends = client.get_backends()
    backend = backends[node._dc_backend_id]
    other_id = next(backend_id for backend_id in backends if backend_id != node._dc_backend_id)
    oid = node._dc_id.bytes
    _, metadata, _ = stubs(f"127.0.0.1:{cluster.port}", cluster.client_credentials())
    channel, _, backend_stub = stubs(backend.address, cluster.client_credentials())
    calls = {
        "RegisterObjects": lambda: metadata.RegisterObjects(pb.RegisterObjectsRequest(objects=[pb.ObjectEntry(
            object_id=uuid.uuid4().bytes, class_path="shapes.Node", backend_id=backend.id.bytes)])),
        "CommitMove": lambda: metadata.CommitMove(pb.CommitMoveRequest(
            object_ids=[oid], source_backend_id=backend.id.bytes, destination_backend_id=other_id.bytes)),
        "DropObjects": lambda: metadata.DropObjects(pb.ObjectIdList(object_ids=[oid])),
        "SetDraining": lambda: metadata.SetDraining(pb.BackendRequest(backend_id=backend.id.bytes, draining=True)),
        "RegisterBackend": lambda: metadata.RegisterBackend(pb.BackendInfo(
            backend_id=uuid.uuid4().bytes, name=backend.name, host="127.0.0.1", port=1)),
        "CommitTransaction": lambda: metadata.CommitTransaction(pb.TransactionRequest(
            txn_id=uuid.uuid4().bytes, retire=[oid])),
        "ReceiveObjects": lambda: backend_stub.ReceiveObjects(iter([pb.TransferChunk(
            move_id=uuid.uuid4().bytes, source_backend_id=other_id.bytes, objects=[pb.ObjectRecord(
                object_id=oid, class_path="shapes.Node", state=b"\x80\x05}\x94.")])])),
        "StageWrite": lambda: backend_stub.StageWrite(pb.StageWriteRequest(txn_id=uuid.uuid4().bytes)),
        "ApplyWrites": lambda: backend_stub.ApplyWrites(pb.ApplyWritesRequest(txn_id=uuid.uuid4().bytes)),
        "ActivateMove": lambda: backend_stub.ActivateMove(pb.MoveId(move_id=uuid.uuid4().bytes)),
        "StoreReplicas": lambda: backend_stub.StoreReplicas(pb.ReplicaStates(
            master_backend_id=other_id.bytes, destination_backend_id=backend.id.bytes, objects=[pb.ObjectRecord(
                object_id=oid, class_path="shapes.Node", state=b"\x80\x05}\x94.", revision=99)])),
        "ForgetReplicas": lambda: backend_stub.ForgetReplicas(pb.ObjectIdList(object_ids=[oid])),
        "ReleaseReplicas": lambda: backend_stub.ReleaseReplicas(pb.ReleaseReplicasRequest(
            backend_id=other_id.bytes, object_ids=[oid])),
        "AddReplicas": lambda: metadata.AddReplicas(pb.ReplicaChange(object_ids=[oid], backend_id=other_id.bytes)),
        "DropReplicas": lambda: metadata.DropReplicas(pb.ReplicaChange(backend_id=other_id.bytes)),
        "ListReplicas": lambda: metadata.ListReplicas(pb.ReplicasRequest()),
    }
    for name, call in calls.items():
        error = refusal(call)
        assert isinstance(error, PermissionDeniedError), (name, error)
        assert "client" in str(error) and name in str(error), str(error)
    channel.close()
    assert node.bump() == 2  # nothing was dropped, moved or drained
    assert not client.get_backends()[node._dc_backend_id].draining
    log = cluster.metadata.log.read_text()
    assert "denied call SetDraining to client" in log and "denied call DropObjects to client" in log


def test_a_backend_is_bound_to_its_own_name_id_and_objects(cluster, client):
    backends = {info.name: info for info in client.get_backends().values()}
    b0, b1 = backends["backend-0"], backends["backend-1"]
    node = Node(1)
    node.make_persistent(backend_id=b1.id)
    as_b0 = cluster.client_credentials("backend:backend-0")
    _, metadata, _ = stubs(f"127.0.0.1:{cluster.port}", as_b0)
    calls = {
        "another's name": lambda: metadata.RegisterBackend(pb.BackendInfo(
            backend_id=uuid.uuid4().bytes, name="backend-1", host="127.0.0.1", port=1)),
        "another's id": lambda: metadata.RegisterBackend(pb.BackendInfo(
            backend_id=b1.id.bytes, name="backend-0", host="127.0.0.1", port=1)),
        "objects of another": lambda: metadata.RegisterObjects(pb.RegisterObjectsRequest(objects=[pb.ObjectEntry(
            object_id=uuid.uuid4().bytes, class_path="shapes.Node", backend_id=b1.id.bytes)])),
        "a move it is not the source of": lambda: metadata.CommitMove(pb.CommitMoveRequest(
            object_ids=[node._dc_id.bytes], source_backend_id=b1.id.bytes, destination_backend_id=b0.id.bytes)),
        "drop another's object": lambda: metadata.DropObjects(pb.ObjectIdList(object_ids=[node._dc_id.bytes])),
        "retire another's object": lambda: metadata.CommitTransaction(pb.TransactionRequest(
            txn_id=uuid.uuid4().bytes, retire=[node._dc_id.bytes])),
        "list another's objects": lambda: metadata.ListOwnedObjects(pb.OwnedObjectsRequest(backend_id=b1.id.bytes)),
        "drain": lambda: metadata.SetDraining(pb.BackendRequest(backend_id=b1.id.bytes, draining=True)),
        "record a replica of another's object": lambda: metadata.AddReplicas(pb.ReplicaChange(
            object_ids=[node._dc_id.bytes], backend_id=b0.id.bytes)),
        "drop a replica of another's object": lambda: metadata.DropReplicas(pb.ReplicaChange(
            object_ids=[node._dc_id.bytes], backend_id=b0.id.bytes)),
        "drop every replica a backend holds": lambda: metadata.DropReplicas(pb.ReplicaChange(backend_id=b0.id.bytes)),
        "list replicas it neither holds nor masters": lambda: metadata.ListReplicas(pb.ReplicasRequest(
            holder=b1.id.bytes)),
    }
    for what, call in calls.items():
        assert isinstance(refusal(call), PermissionDeniedError), what
    assert node.bump() == 2 and node._dc_backend_id == b1.id  # still b1's, still served
    assert {info.name: info.id for info in client.get_backends().values()}["backend-1"] == b1.id
    assert "denied register backend 'backend-1' to backend:backend-0" in cluster.metadata.log.read_text()


def test_a_backend_retires_through_registrations_only_its_own_versions(cluster, client):
    """RegisterObjects may carry a version its backend consolidated (pb.Retired): never another
    backend's version, never outside a stored registration, never a non-version."""
    backends = {info.name: info for info in client.get_backends().values()}
    b0, b1 = backends["backend-0"], backends["backend-1"]
    node = Node(1)
    node.make_persistent(backend_id=b1.id)
    version = node.new_version()  # b1's
    version.add_alias("b1-version")  # the directory lists it now (not only b1, which registers later)
    version_id = version._dc_id.bytes
    _, metadata, _ = stubs(f"127.0.0.1:{cluster.port}", cluster.client_credentials("backend:backend-0"))

    def register(stored: bool, **fields):
        entry = pb.ObjectEntry(class_path="shapes.Node", backend_id=b0.id.bytes, retired=pb.CONSOLIDATED, **fields)
        return metadata.RegisterObjects(pb.RegisterObjectsRequest(objects=[entry], stored=stored))

    lineage = {"version_parent": node._dc_id.bytes, "version_original": node._dc_id.bytes}
    assert list(register(True, object_id=version_id, **lineage).refused) == [version_id]  # b1's: not taken
    not_stored = refusal(lambda: register(False, object_id=uuid.uuid4().bytes, **lineage))
    assert isinstance(not_stored, InvalidRequestError) and "stored" in str(not_stored)
    not_version = refusal(lambda: register(True, object_id=uuid.uuid4().bytes))
    assert isinstance(not_version, InvalidRequestError) and "not a version" in str(not_version)
    assert version.bump() == 2 and version._dc_backend_id == b1.id  # still live, still b1's
    assert Node.get_by_alias("b1-version")._dc_id.bytes == version_id


def test_insecure_is_explicit_and_loud(make_cluster, monkeypatch, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DC_CREDENTIALS", "DC_INSECURE")}
    refused = subprocess.run([sys.executable, "-m", "dataclay_backend.metadata", "--port", "0", "--data-dir",
                              str(tmp_path / "m")], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "no credentials" in refused.stderr and "--insecure" in refused.stderr
    running = make_cluster(backends=1, insecure=True)
    assert running.credentials_dir is None
    assert "INSECURE" in running.metadata.log.read_text()
    assert "INSECURE" in running.backends["backend-0"].log.read_text()
    monkeypatch.setenv("DC_INSECURE", "1")
    with Client(host="127.0.0.1", port=running.port) as client:
        node = Node(1)
        node.make_persistent()
        assert node.bump() == 2 and len(client.get_backends()) == 1


def test_callers_of_one_process_on_interleaved_and_fresh_connections_each_get_their_own_role(cluster, client):
    """The role check reuses a guarded handler per method and the parse of each common name:
    still each call is judged by its own connection's certificate, calls of three identities
    interleaved on three connections, and on a fresh connection per call."""
    b1 = {info.name: info for info in client.get_backends().values()}["backend-1"]
    metadata_address = f"127.0.0.1:{cluster.port}"
    identities = ("client", "admin", "backend:backend-0")
    may_drain = {"client": False, "admin": True, "backend:backend-0": False}
    may_list_b1 = {"client": True, "admin": True, "backend:backend-0": False}  # a backend lists only its own

    def judged(metadata: rpc.MetadataStub, identity: str) -> None:
        drain = lambda: metadata.SetDraining(pb.BackendRequest(backend_id=b1.id.bytes, draining=False))  # noqa: E731
        listing = lambda: metadata.ListOwnedObjects(pb.OwnedObjectsRequest(backend_id=b1.id.bytes))  # noqa: E731
        for allowed, call in ((may_drain[identity], drain), (may_list_b1[identity], listing)):
            if allowed:
                call()
            else:
                error = refusal(call)
                assert isinstance(error, PermissionDeniedError) and identity in str(error), (identity, error)

    opened = {identity: stubs(metadata_address, cluster.client_credentials(identity)) for identity in identities}
    try:
        for _ in range(5):
            for identity in identities:
                judged(opened[identity][1], identity)
    finally:
        for channel, _, _ in opened.values():
            channel.close()
    for _ in range(3):
        for identity in identities:
            channel, metadata, _ = stubs(metadata_address, cluster.client_credentials(identity))
            with channel:
                judged(metadata, identity)
    assert not client.get_backends()[b1.id].draining


HOSTILE_NAMES = ["p" * 100_000, "p" * 3000, "__class__", "__dict__", "_dc_id", "_dc_backend_id", "bump", "not a name",
                 "a\x00b\x1b[2J", "", "1abc", "value.__class__"]


def test_hostile_property_names_are_refused_typed_without_echo(cluster, client):
    """Every path where a property name arrives (GetAttribute, SetAttribute, SetRawAttribute's
    metadata, UpdateObject's keys, StoreObjects' state keys, StoreRawObject's metadata) and a method name (CallActiveMethod)
    refuses a malformed, private, dunder, method or unbounded name with InvalidRequestError
    (AttributeNotFoundError for a well-formed name that is not a property), quoting at most a
    bounded part of it; nothing changes."""
    import pickle

    from dataclay.exceptions import DoesNotExistError, InvalidRequestError
    from dataclay.protocol import (ALIAS_METADATA_KEY, CLASS_METADATA_KEY, OBJECT_ID_METADATA_KEY,
                                   PROPERTY_METADATA_KEY, STATE_METADATA_KEY)

    node = Node(1)
    node.make_persistent()
    backend = client.get_backends()[node._dc_backend_id]
    oid = node._dc_id.bytes
    channel, _, stub = stubs(backend.address, cluster.client_credentials("client"))
    raw_set = channel.unary_unary("/dataclay.v1.Backend/SetRawAttribute")
    raw_store = channel.unary_unary("/dataclay.v1.Backend/StoreRawObject")
    value = pickle.dumps(5, protocol=5)
    with channel:
        for name in HOSTILE_NAMES + ["missing"]:
            calls = {
                "GetAttribute": lambda: stub.GetAttribute(pb.GetAttributeRequest(object_id=oid, name=name)),
                "SetAttribute": lambda: stub.SetAttribute(pb.SetAttributeRequest(object_id=oid, name=name, payload=value)),
                "UpdateObject": lambda: stub.UpdateObject(pb.UpdateObjectRequest(
                    object_id=oid, state=pickle.dumps({name: 5}, protocol=5))),
                "StoreObjects": lambda: stub.StoreObjects(pb.StoreObjectsRequest(objects=[pb.ObjectRecord(
                    object_id=uuid.uuid4().bytes, class_path="shapes.Node", state=pickle.dumps({name: 5}, protocol=5))])),
                "CallActiveMethod": lambda: stub.CallActiveMethod(pb.CallRequest(
                    object_id=oid, method=name, payload=pickle.dumps(((), {}), protocol=5))),
            }
            if len(name.encode()) < 4000:  # gRPC's own metadata limit (8 KiB) refuses longer ones first
                calls["SetRawAttribute"] = lambda: raw_set(b"raw", metadata=(
                    (OBJECT_ID_METADATA_KEY, oid), (PROPERTY_METADATA_KEY, name.encode())))
                calls["StoreRawObject"] = lambda: raw_store(b"raw", metadata=(
                    (OBJECT_ID_METADATA_KEY, uuid.uuid4().bytes), (CLASS_METADATA_KEY, b"shapes.Node"),
                    (PROPERTY_METADATA_KEY, name.encode()), (STATE_METADATA_KEY, b""), (ALIAS_METADATA_KEY, b"")))
            for path, call in calls.items():
                if name == "bump" and path == "CallActiveMethod":
                    continue  # a method, rightly called
                with pytest.raises(grpc.RpcError) as raised:
                    call()
                error = translate(raised.value, "test")
                where = (path, name[:20])
                if name == "missing" or (path == "CallActiveMethod" and name.isidentifier() and len(name) < 256):
                    # well-formed: not there (ActiveMethodNotFoundError, AttributeNotFoundError), or refused
                    assert isinstance(error, (DoesNotExistError, InvalidRequestError)), (where, error)
                else:
                    assert isinstance(error, InvalidRequestError), (where, error)
                details = raised.value.details() or ""
                assert len(details) < 400 and len(str(error)) < 400, where
                assert "p" * 150 not in details and "\x00" not in details, where
                assert sum(len(k) + len(v) for k, v in raised.value.trailing_metadata() or ()) < 2000, where
    assert node.value == 1 and node.bump() == 2
