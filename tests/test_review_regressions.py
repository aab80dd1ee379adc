"""Defects found in review, each kept from coming back by a test that failed before the fix."""
import asyncio
import threading
import uuid

import grpc
import pytest

from dataclay import Client
from dataclay.exceptions import VersionConflictError
from dataclay.protocol import UNLIMITED_MESSAGES
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.protocol import dataclay_pb2_grpc as rpc
from shapes import Node


def test_in_place_change_of_another_local_object_survives_kill_9(make_cluster):
    cluster = make_cluster(backends=1)
    with Client(host="127.0.0.1", port=cluster.port):
        box, holder = Node(0), Node(1)
        box.make_persistent()
        holder.make_persistent()
        assert holder.push_into(box, 42) == 1
        cluster.kill_backend("backend-0")
        cluster.start_backend(0)
        assert box.children == [42]


def test_concurrent_increments_under_eviction_survive_kill_9(make_cluster):
    cluster = make_cluster(backends=1, memory_limit="2Ki")  # constant eviction
    with Client(host="127.0.0.1", port=cluster.port):
        counters = [Node(0) for _ in range(4)]
        for counter in counters:
            counter.make_persistent()
        acknowledged: list[list[int]] = [[] for _ in range(4)]
        errors: list[BaseException] = []

        def work(slot: int) -> None:
            try:
                for _ in range(60):
                    acknowledged[slot].append(counters[slot].bump())
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(slot,)) for slot in range(4) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        # Every increment saw the one before it: each counter answered 1..120 exactly once.
        assert [sorted(answers) for answers in acknowledged] == [list(range(1, 121))] * 4
        cluster.kill_backend("backend-0")
        cluster.start_backend(0)
        assert [counter.value for counter in counters] == [120] * 4


def test_two_async_methods_on_one_object_do_not_deadlock(client):
    node = Node(1)
    node.make_persistent()

    async def both() -> list[int]:
        return sorted(await asyncio.gather(node.slow_double(0.2), node.slow_double(0.2)))

    async def run() -> list[int]:
        return await asyncio.wait_for(both(), timeout=30)

    assert asyncio.run(run()) == [2, 4]


def test_recursive_version_of_a_version_points_back_at_originals(client):
    part = Node(1)
    doc = Node(0, part)
    doc.make_persistent()
    v1 = doc.new_version(recursive=True)
    v2 = v1.new_version(recursive=True)
    v2.next.value = 5
    v2.consolidate_version()
    assert doc.next is part and part.value == 5 and v1.next.value == 5


def test_a_referenced_object_moving_is_no_change(client):
    ids = list(client.get_backends())
    referenced = Node(1)
    referenced.make_persistent(backend_id=ids[1])
    bag = Node(0)
    bag.children = [referenced]
    bag.make_persistent(backend_id=ids[0])
    version = bag.new_version()
    referenced.move(ids[2])
    assert bag.peek() == 1  # a read: must not count as a change of bag
    version.value = 9
    version.consolidate_version()  # no false VersionConflictError
    assert bag.value == 9


def test_a_transfer_cannot_replace_a_live_object(client):
    node = Node(1)
    node.make_persistent()
    backend = client.get_backends()[node._dc_backend_id]
    with grpc.insecure_channel(backend.address, options=UNLIMITED_MESSAGES) as channel:
        chunk = pb.TransferChunk(move_id=uuid.uuid4().bytes, source_backend_id=uuid.uuid4().bytes, objects=[
            pb.ObjectRecord(object_id=node._dc_id.bytes, class_path="shapes.Node", state=b"\x80\x05}\x94.")])
        with pytest.raises(grpc.RpcError) as raised:
            rpc.BackendStub(channel).ReceiveObjects(iter([chunk]))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert node.value == 1


def test_malformed_call_arguments_and_states(client):
    node = Node(1)
    node.make_persistent()
    backend = client.get_backends()[node._dc_backend_id]
    with grpc.insecure_channel(backend.address, options=UNLIMITED_MESSAGES) as channel:
        stub = rpc.BackendStub(channel)
        import pickle

        with pytest.raises(grpc.RpcError) as raised:
            stub.CallActiveMethod(pb.CallRequest(object_id=node._dc_id.bytes, method="bump", payload=pickle.dumps(7)))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        sneaky = pickle.dumps({"value": 1, "_dc_lock": None})
        with pytest.raises(grpc.RpcError) as raised:
            stub.StoreObjects(pb.StoreObjectsRequest(objects=[
                pb.ObjectRecord(object_id=uuid.uuid4().bytes, class_path="shapes.Node", state=sneaky)]))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert node.bump() == 2


def test_callback_reading_a_list_of_the_calling_object_does_not_deadlock(client):
    ids = list(client.get_backends())
    caller = Node(1)
    caller.children = [1, 2, 3]
    caller.make_persistent(backend_id=ids[0])
    other = Node(2)
    other.make_persistent(backend_id=ids[1])
    assert caller.ask_about_me(other) == 3


def test_async_transports_of_finished_loops_are_released(client):
    node = Node(1)
    node.make_persistent()

    async def read() -> int:
        return await node.a_sync() or node.value

    for _ in range(5):
        asyncio.run(read())
    assert len(client.runtime._async) == 1


def test_a_move_keeps_the_revision_of_an_object_not_in_memory(make_cluster):
    """A move read unloaded objects' states from the store but sent them as revision 1, so a
    later change could bring the revision back to what a version recorded, and consolidating
    that version overwrote the change without a conflict."""
    cluster = make_cluster(backends=2)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        first, second = list(client.get_backends())
        counter = Node(0)
        counter.make_persistent(backend_id=first)
        for _ in range(3):
            counter.bump()
        version = counter.new_version()
        cluster.restart_backend("backend-0")  # the counter is now only in the store
        counter.move(second)
        for _ in range(3):
            counter.bump()
        version.value = -1
        with pytest.raises(VersionConflictError):
            version.consolidate_version()
        assert counter.value == 6
