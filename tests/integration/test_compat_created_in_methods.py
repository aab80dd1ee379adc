"""Objects created inside an active method are persistent at once on the backend running it,
as in dataClay 4: `is_persistent` is True inside the method, a reference handed to another
backend is a reference to that object (not a copy, not an object stored over there), and
dataClay's `obj = Cls(...); obj.make_persistent(alias=...)` inside a method works. Each on
separate backend processes."""
import os
import signal
import threading
import time

from dataclay import Client
from shapes import Node


def test_an_object_created_inside_a_method_is_persistent_there_at_once(client):
    backend_ids = list(client.get_backends())
    parent = Node(1)
    parent.make_persistent(backend_id=backend_ids[1])
    persistent, where, backends, child = parent.create_and_look(5)
    assert persistent is True
    assert where == backend_ids[1] and backends == {backend_ids[1]}
    assert child.value == 5 and child._dc_backend_id == backend_ids[1]
    assert Node.get_by_id(child._dc_meta.id).value == 5


def test_an_object_created_inside_a_method_and_handed_to_another_backend_stays_one_object(client):
    backend_ids = list(client.get_backends())
    creator, holder = Node(1), Node(2)
    creator.make_persistent(backend_id=backend_ids[0])
    holder.make_persistent(backend_id=backend_ids[2])
    child = creator.create_and_give(holder, 7)
    held = holder.children[0]
    assert held._dc_meta.id == child._dc_meta.id
    assert held.value == 107  # the change made after handing it over is seen through the reference
    assert child._dc_backend_id == backend_ids[0]  # it lives where it was created
    held.bump()
    assert child.value == 108


def test_dataclay_alias_pattern_inside_a_method(client):
    backend_ids = list(client.get_backends())
    parent = Node(1)
    parent.make_persistent(backend_id=backend_ids[2])
    assert parent.create_with_alias(9, "created-in-a-method") is True
    found = Node.get_by_alias("created-in-a-method")
    assert found.value == 9 and found._dc_backend_id == backend_ids[2]
    assert "created-in-a-method" in found.get_aliases()


def test_an_object_created_inside_a_method_can_be_moved_there_at_once(client):
    backend_ids = list(client.get_backends())
    parent = Node(1)
    parent.make_persistent(backend_id=backend_ids[0])
    child = parent.create_and_move(6, str(backend_ids[1]))
    assert child._dc_backend_id == backend_ids[1] and child.value == 6
    assert child.where() == str(backend_ids[1])


def test_a_reference_handed_out_survives_kill_9_of_its_creator_before_the_method_ends(make_cluster):
    """The creator hands its new node to a holder on another backend, then waits on a third,
    paused backend; it is killed (SIGKILL) while the method is still running. The holder's
    reference must still resolve after the creator restarts: the node was stored and
    registered before the reference left."""
    cluster = make_cluster(backends=3)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        backend_ids = list(client.get_backends())
        creator, holder, blocker = Node(1), Node(2), Node(3)
        creator.make_persistent(backend_id=backend_ids[0])
        holder.make_persistent(backend_id=backend_ids[1])
        blocker.make_persistent(backend_id=backend_ids[2])
        paused = cluster.backends["backend-2"].popen
        os.kill(paused.pid, signal.SIGSTOP)
        outcome: list[BaseException | None] = []

        def call() -> None:
            try:
                creator.create_and_give(holder, 4, then=blocker)
                outcome.append(None)
            except BaseException as error:  # noqa: BLE001 - the creator is killed under it
                outcome.append(error)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        try:
            deadline = time.monotonic() + 60
            while holder.peek() == 0:  # the reference arrived: the creator now waits on the paused one
                assert time.monotonic() < deadline, "the holder never received the node"
            cluster.kill_backend("backend-0")
        finally:
            os.kill(paused.pid, signal.SIGCONT)
        caller.join(60)
        assert outcome and outcome[0] is not None  # the call itself was not acknowledged
        cluster.start_backend(0)
        held = holder.children[0]
        assert held._dc_backend_id == backend_ids[0]
        assert held.value == 4  # stored when the reference left; the later change died with the call
