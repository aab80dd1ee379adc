"""Registrations after the reply (dataclay_backend.registrations) driven without a network: a real
ObjectStore on real files, and the directory's side played by a function that records what it is
sent and answers as the metadata service would (accepts, is unreachable, refuses)."""
from __future__ import annotations

import threading
import uuid

import pytest

from dataclay.exceptions import AlreadyExistError, BackendUnavailableError, ClusterMismatchError
from dataclay.protocol import dataclay_pb2 as pb
from dataclay_backend.object_store import INLINE_LIMIT, ObjectStore, StoredObject
from dataclay_backend.registrations import Registrations

PATH = "hr.Employee"


class Directory:
    """What the metadata service answers to RegisterObjects(stored=True)."""

    def __init__(self) -> None:
        self.registered: dict[uuid.UUID, str] = {}
        self.requests: list[list[uuid.UUID]] = []
        self.failure: Exception | None = None
        self.taken: set[uuid.UUID] = set()  # ids another backend's objects have

    def send(self, entries: list[pb.ObjectEntry]) -> None:
        ids = [uuid.UUID(bytes=entry.object_id) for entry in entries]
        self.requests.append(ids)
        if self.failure is not None:
            raise self.failure
        if self.taken & set(ids):
            raise AlreadyExistError("one of the objects is already registered")
        self.registered.update((uuid.UUID(bytes=e.object_id), e.class_path) for e in entries)


@pytest.fixture
def store(tmp_path):
    opened = ObjectStore(tmp_path)
    yield opened
    opened.close()


def _new(count: int, size: int = 10) -> tuple[list[StoredObject], list[pb.ObjectEntry]]:
    rows = [StoredObject(uuid.uuid4(), PATH, 1, b"s" * size) for _ in range(count)]
    entries = [pb.ObjectEntry(object_id=row.object_id.bytes, class_path=PATH, backend_id=b"b" * 16) for row in rows]
    return rows, entries


def test_stored_with_their_entries_and_registered_on_flush(store):
    directory, dropped = Directory(), []
    registrations = Registrations(store, directory.send, dropped.extend)
    rows, entries = _new(3)
    assert registrations.store_new(rows, entries)
    assert set(store.classes()) == {row.object_id for row in rows}  # stored before any registration
    assert set(store.unregistered()) == {row.object_id for row in rows} and not directory.requests
    registrations.flush()
    assert set(directory.registered) == {row.object_id for row in rows}
    assert directory.requests == [[row.object_id for row in rows]]  # one request for all
    assert store.unregistered() == {} and registrations.pending() == 0
    registrations.flush()
    assert len(directory.requests) == 1  # nothing pending: no request


def test_pending_entries_survive_a_restart_and_are_sent_by_the_next_process(tmp_path):
    first = ObjectStore(tmp_path)
    rows, entries = _new(2, size=INLINE_LIMIT + 10)  # large states: their files, then the entries
    Registrations(first, Directory().send, list).store_new(rows, entries)
    first.close()
    reopened = ObjectStore(tmp_path)
    directory = Directory()
    registrations = Registrations(reopened, directory.send, list)
    assert registrations.pending() == 2
    registrations.flush()
    assert set(directory.registered) == {row.object_id for row in rows}
    assert reopened.load(rows[0].object_id).state == rows[0].state
    reopened.close()


def test_an_unreachable_directory_keeps_them_pending_and_raises_to_whoever_flushes(store):
    directory = Directory()
    registrations = Registrations(store, directory.send, list)
    rows, entries = _new(2)
    registrations.store_new(rows, entries)
    directory.failure = BackendUnavailableError("the metadata service at x is unreachable")
    with pytest.raises(BackendUnavailableError):
        registrations.flush()
    assert registrations.pending() == 2 and len(store.unregistered()) == 2
    assert registrations.store_new(*_new(1))  # still one round trip: it is not a refusal
    directory.failure = None
    registrations.flush()
    assert len(directory.registered) == 3 and store.unregistered() == {}


def test_an_id_another_backend_has_is_dropped_here_alone(store):
    directory, dropped = Directory(), []
    registrations = Registrations(store, directory.send, dropped.extend)
    rows, entries = _new(4)
    directory.taken.add(rows[2].object_id)
    registrations.store_new(rows, entries)
    registrations.flush()
    assert dropped == [rows[2].object_id]
    assert set(directory.registered) == {row.object_id for i, row in enumerate(rows) if i != 2}
    assert store.unregistered() == {}


def test_a_refusal_keeps_them_and_makes_later_stores_register_before_the_reply(store):
    directory = Directory()
    registrations = Registrations(store, directory.send, list)
    rows, entries = _new(1)
    registrations.store_new(rows, entries)
    directory.failure = ClusterMismatchError("restored directory: restart that backend")
    with pytest.raises(ClusterMismatchError):
        registrations.flush()
    assert registrations.pending() == 1  # kept: reported after the restart
    assert not registrations.store_new(*_new(1))  # the caller registers first and gets the refusal


def test_a_store_sent_again_is_stored_once_and_another_class_is_refused(store):
    registrations = Registrations(store, Directory().send, list)
    rows, entries = _new(1)
    assert registrations.store_new(rows, entries)
    registrations.flush()
    assert registrations.store_new(rows, entries)  # a replay: nothing written, nothing pending
    assert registrations.pending() == 0
    other = StoredObject(rows[0].object_id, "hr.Company", 1, b"x")
    with pytest.raises(AlreadyExistError):
        registrations.store_new([other], [pb.ObjectEntry(object_id=other.object_id.bytes, class_path="hr.Company")])
    assert store.load(rows[0].object_id).class_path == PATH


def test_before_a_drain_stores_already_deciding_are_waited_for_and_later_ones_register_first(store):
    directory = Directory()
    registrations = Registrations(store, directory.send, list)
    inside, release = threading.Event(), threading.Event()
    real = store.store_new

    def slow_store_new(*args):  # a store that decided to register later, still writing
        inside.set()
        release.wait()
        return real(*args)

    store.store_new = slow_store_new
    rows, entries = _new(1)
    storing = threading.Thread(target=registrations.store_new, args=(rows, entries))
    storing.start()
    inside.wait()
    flushing = threading.Thread(target=registrations.flush, kwargs={"before_drain": True})
    flushing.start()
    flushing.join(0.2)
    assert flushing.is_alive()  # waits for that store: it must be listed by the drain
    release.set()
    storing.join()
    flushing.join()
    assert rows[0].object_id in directory.registered
    store.store_new = real
    assert not registrations.store_new(*_new(1))


def test_a_backend_that_starts_draining_registers_before_the_reply(store):
    directory, dropped = Directory(), []
    registrations = Registrations(store, directory.send, dropped.extend)
    registrations.register_first("this backend is draining")
    rows, entries = _new(1)
    assert not registrations.store_new(rows, entries)  # the caller registers, then stores
    assert not store.classes() and not store.unregistered()
