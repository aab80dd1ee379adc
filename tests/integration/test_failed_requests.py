"""A failed request leaves memory exactly as stored, and an operation racing a move follows the
object or fails with a typed error: nothing is acknowledged that did not happen.

The metadata service is stopped (SIGKILL) at the moment it matters and started again on the
same port, so each fault lands deterministically."""
import os
import signal
import threading

import pytest

from dataclay import Client
from dataclay.admin import set_draining
from dataclay.exceptions import BackendUnavailableError, DataClayException, InvalidRequestError, OutcomeUnknownError
from shapes import Node
from waiting import poll, stopped


def _stop_metadata(cluster) -> None:
    cluster.stop_process(cluster.metadata, kill=True)


def test_a_call_that_creates_objects_while_the_directory_is_down_is_stored_and_registers_them_later(make_cluster):
    """spawn() creates a child and appends it. Its entry goes to the directory after the reply
    (as make_persistent's): with the metadata service down the call is stored and acknowledged,
    and once the service is back the child is found by id, also after a restart."""
    cluster = make_cluster(backends=1)
    with Client(host="127.0.0.1", port=cluster.port):
        parent = Node(1)
        parent.make_persistent()
        first = parent.spawn(2)
        _stop_metadata(cluster)
        second = parent.spawn(3)
        assert [child.value for child in parent.children] == [2, 3]
        cluster.start_metadata()
        assert Node.get_by_id(second._dc_id).value == 3
        assert parent.children[0] is first
        cluster.restart_backend("backend-0")
        assert [child.value for child in parent.children] == [2, 3]
    with Client(host="127.0.0.1", port=cluster.port):
        assert Node.get_by_id(second._dc_id).value == 3  # another process: the directory lists it


def test_a_call_whose_new_objects_cannot_be_registered_first_changes_nothing(make_cluster):
    """While a backend registers before it replies (draining), a call whose new objects cannot
    be registered fails, and leaves memory as stored: the parent keeps no reference to a child
    never stored (a dangling reference a later move or restart would keep), and an in-place
    change of the failed call is not seen by the next call."""
    cluster = make_cluster(backends=1)
    with Client(host="127.0.0.1", port=cluster.port):
        parent = Node(1)
        parent.make_persistent()
        first = parent.spawn(2)
        set_draining("127.0.0.1", cluster.port, ["backend-0"], True)  # registers first from now on
        _stop_metadata(cluster)
        with pytest.raises(BackendUnavailableError):
            parent.spawn(3)
        assert parent.peek() == 1  # the failed call's child is not in memory either
        with pytest.raises(BackendUnavailableError):
            parent.spawn_in_place(8)  # appends in place, then registering the new node fails
        assert parent.peek() == 1
        assert parent.bump() == 2  # later calls work and store
        cluster.start_metadata()
        set_draining("127.0.0.1", cluster.port, ["backend-0"], False)
        assert [child.value for child in parent.children] == [2]
        assert parent.children[0] is first
        cluster.restart_backend("backend-0")
        assert [child.value for child in parent.children] == [2] and parent.value == 2


def _in_doubt_move(cluster, node, target):
    """Start a move of node (on backend-0) to target whose commit point cannot be reached:
    backend-0 stops itself between the transfer and the commit (a fault point), the metadata
    service is killed meanwhile. Returns the move's thread, its outcome and backend-0, stopped:
    the caller lets it go on (SIGCONT)."""
    cluster.stop_process(cluster.backends["backend-0"])
    source = cluster.start_backend(0, env={"DC_FAULT_POINT": "move.after_stream", "DC_FAULT_ACTION": "stop"})
    thread, outcome = _in_thread(lambda: node.move(target))
    poll(lambda: stopped(source.popen.pid))  # the move holds node; nothing is committed
    _stop_metadata(cluster)
    return thread, outcome, source


def _in_thread(call) -> tuple[threading.Thread, dict[str, object]]:
    """Run call() in a thread; the outcome dict gets its "result" or its "error"."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - recorded for the test
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _warm_node(client) -> tuple[Node, list]:
    """A node on the first backend, moved there and back: every backend involved knows every
    address (no directory lookups needed later). Returns it and the backend ids."""
    ids = list(client.get_backends())
    node = Node(1)
    node.make_persistent(backend_id=ids[0])
    node.move(ids[1])
    node.move(ids[0])
    return node, ids


def _behind_an_in_doubt_move(cluster, node, target, call) -> tuple[dict[str, object], dict[str, object]]:
    """Run call() while a move of node to target holds it and cannot reach its commit point;
    returns the move's outcome and the call's."""
    first, first_outcome, source = _in_doubt_move(cluster, node, target)
    waiting, outcome = _in_thread(call)  # sent to the stopped source: served next to the move's commit
    os.kill(source.popen.pid, signal.SIGCONT)
    first.join(60)
    waiting.join(60)
    return first_outcome, outcome


def test_a_move_waiting_behind_an_in_doubt_move_is_not_acknowledged(make_cluster):
    cluster = make_cluster(backends=2)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        node, ids = _warm_node(client)
        first_outcome, second = _behind_an_in_doubt_move(cluster, node, ids[1], lambda: node.move(ids[1]))
        assert isinstance(first_outcome.get("error"), OutcomeUnknownError)
        if "result" in second:  # acknowledged: then it happened
            assert second["result"].objects == 1
        else:
            assert isinstance(second["error"], DataClayException)
        cluster.start_metadata()
        if "result" in second:
            assert node.where() == str(ids[1])


def test_new_version_behind_an_in_doubt_move_follows_or_fails_typed(make_cluster):
    cluster = make_cluster(backends=2)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        node, ids = _warm_node(client)
        _, outcome = _behind_an_in_doubt_move(cluster, node, ids[1], node.new_version)
        error = outcome.get("error")
        assert not isinstance(error, InvalidRequestError), error
        cluster.start_metadata()
        if "result" in outcome:
            assert outcome["result"].value == 1


def test_a_move_that_lost_the_object_to_another_move_follows_it(make_cluster):
    """Two moves of one object to different backends, the second waiting for the first: the
    second finds the object gone and moves it from where the first put it."""
    cluster = make_cluster(backends=3)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        ids = list(client.get_backends())
        node = Node(1)
        node.make_persistent(backend_id=ids[0])
        results: dict[str, object] = {}
        started = threading.Event()

        def move_to(name: str, target) -> None:
            try:
                results[name] = node.move(target, on_progress=lambda done, total: started.set())
            except BaseException as exc:  # noqa: BLE001
                results[name] = exc

        threads = [threading.Thread(target=move_to, args=(f"to-{i}", ids[i])) for i in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for name, result in results.items():
            assert not isinstance(result, BaseException), (name, result)
            assert result.objects == 1, (name, result)
        assert node.where() in {str(ids[1]), str(ids[2])}
