"""Registrations after the reply (dataclay_backend.registrations) driven without a network: a real
ObjectStore and the metadata service's real Directory, each on its own files; between them, the
function a backend sends RegisterObjects(stored=True) through, which can also fail as the
network or a refusing metadata service would."""
from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from dataclay.exceptions import (
    AlreadyExistError,
    BackendUnavailableError,
    ClusterMismatchError,
    InvalidRequestError,
    VersionConsolidatedError,
    VersionRetiredError,
)
from dataclay.protocol import dataclay_pb2 as pb
from dataclay_backend import registrations as registrations_module
from dataclay_backend.directory import BackendInfo, ObjectEntry
from dataclay_backend.directory import Directory as MetadataDirectory
from dataclay_backend.object_store import INLINE_LIMIT, ObjectStore, StoredObject
from dataclay_backend.registrations import Registrations, stored_rows, unsent

PATH = "hr.Employee"
HERE = uuid.UUID(int=1)  # this backend
OTHER = uuid.UUID(int=2)


class Directory:
    """The metadata service's directory, as RegisterObjects(stored=True) from this backend reaches it."""

    def __init__(self, path: Path) -> None:
        path.mkdir(exist_ok=True)
        self.real = MetadataDirectory(path)
        self.real.register_backend(BackendInfo(HERE, "backend-0", "127.0.0.1", 1))
        self.real.register_backend(BackendInfo(OTHER, "backend-1", "127.0.0.1", 2))
        self.requests: list[list[uuid.UUID]] = []
        self.failure: Exception | None = None

    def send(self, entries: list[pb.ObjectEntry]) -> list[uuid.UUID]:
        ids = [uuid.UUID(bytes=entry.object_id) for entry in entries]
        self.requests.append(ids)
        if self.failure is not None:
            raise self.failure
        return self.real.register_stored([ObjectEntry(
            uuid.UUID(bytes=e.object_id), e.class_path, uuid.UUID(bytes=e.backend_id),
            uuid.UUID(bytes=e.version_parent) if e.version_parent else None,
            uuid.UUID(bytes=e.version_original) if e.version_original else None, retired=e.retired) for e in entries],
            caller="backend-0")

    @property
    def registered(self) -> dict[uuid.UUID, str]:
        return {uuid.UUID(bytes=key): path for key, path in self.real.db.query(
            "SELECT id, class_path FROM objects WHERE backend_id=?", (HERE.bytes,))}

    def take(self, object_id: uuid.UUID) -> None:
        """Another backend's object with this id (a client that made the id up)."""
        self.real.register_objects([ObjectEntry(object_id, PATH, OTHER)])


@pytest.fixture
def store(tmp_path):
    opened = ObjectStore(tmp_path / "backend")
    yield opened
    opened.close()


@pytest.fixture
def directory(tmp_path):
    made = Directory(tmp_path / "metadata")
    yield made
    made.real.close()


def _new(count: int, size: int = 10, path: str = PATH) -> tuple[list[StoredObject], list[pb.ObjectEntry]]:
    rows = [StoredObject(uuid.uuid4(), path, 1, b"s" * size) for _ in range(count)]
    entries = [pb.ObjectEntry(object_id=row.object_id.bytes, class_path=path, backend_id=HERE.bytes) for row in rows]
    return rows, entries


def test_stored_with_their_entries_and_registered_on_flush(store, directory):
    dropped = []
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


def test_pending_entries_survive_a_restart_and_are_sent_by_the_next_process(tmp_path, directory):
    first = ObjectStore(tmp_path / "backend")
    rows, entries = _new(2, size=INLINE_LIMIT + 10)  # large states: their files, then the entries
    Registrations(first, directory.send, list).store_new(rows, entries)
    first.close()
    reopened = ObjectStore(tmp_path / "backend")
    registrations = Registrations(reopened, directory.send, list)
    assert registrations.pending() == 2
    registrations.flush()
    assert set(directory.registered) == {row.object_id for row in rows}
    assert reopened.load(rows[0].object_id).state == rows[0].state
    reopened.close()


def _failing_flush(store, directory, count: int, failure: Exception) -> Registrations:
    """Registrations holding `count` new objects, after a flush that failed with `failure`."""
    registrations = Registrations(store, directory.send, list)
    registrations.store_new(*_new(count))
    directory.failure = failure
    with pytest.raises(type(failure)):
        registrations.flush()
    return registrations


def test_an_unreachable_directory_keeps_them_pending_and_raises_to_whoever_flushes(store, directory):
    registrations = _failing_flush(store, directory, 2, BackendUnavailableError("the metadata service is unreachable"))
    assert registrations.pending() == 2 and len(store.unregistered()) == 2
    assert registrations.store_new(*_new(1))  # still one round trip: it is not a refusal
    directory.failure = None
    registrations.flush()
    assert len(directory.registered) == 3 and store.unregistered() == {}


def test_an_id_another_backend_has_is_dropped_here_alone_in_the_same_request(store, directory):
    dropped = []
    registrations = Registrations(store, directory.send, dropped.extend)
    rows, entries = _new(4)
    directory.take(rows[2].object_id)
    registrations.store_new(rows, entries)
    registrations.flush()
    assert dropped == [rows[2].object_id] and len(directory.requests) == 1
    assert set(directory.registered) == {row.object_id for i, row in enumerate(rows) if i != 2}
    assert store.unregistered() == {}


def test_a_refusal_keeps_them_and_makes_later_stores_register_before_the_reply(store, directory):
    registrations = _failing_flush(store, directory, 1, ClusterMismatchError("restored directory: restart that backend"))
    assert registrations.pending() == 1  # kept: reported after the restart
    assert not registrations.store_new(*_new(1))  # the caller registers first and gets the refusal


def test_a_store_sent_again_is_stored_once_and_another_class_is_refused(store, directory):
    registrations = Registrations(store, directory.send, list)
    rows, entries = _new(1)
    assert registrations.store_new(rows, entries)
    registrations.flush()
    assert registrations.store_new(rows, entries)  # a replay: nothing written, nothing pending
    assert registrations.pending() == 0
    other = StoredObject(rows[0].object_id, "hr.Company", 1, b"x")
    with pytest.raises(AlreadyExistError):
        registrations.store_new([other], [pb.ObjectEntry(object_id=other.object_id.bytes, class_path="hr.Company")])
    assert store.load(rows[0].object_id).class_path == PATH


def test_before_a_drain_stores_already_deciding_are_waited_for_and_later_ones_register_first(store, directory):
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


def test_entries_stored_in_the_callers_transaction_are_registered_after_it_and_a_drain_waits(store, directory):
    """defer / deferred (a request whose active method created objects): the caller stores the
    entries with its own changes; a drain beginning meanwhile waits for it, then lists them;
    a caller whose write failed leaves nothing pending; after the drain began, callers register
    first."""
    registrations = Registrations(store, directory.send, list)
    failed = registrations.defer(_new(1)[1])
    registrations.deferred([])  # its write failed: nothing stored, nothing to send
    assert failed is not None and registrations.pending() == 0
    rows, entries = _new(2)
    items = registrations.defer(entries)
    flushing = threading.Thread(target=registrations.flush, kwargs={"before_drain": True})
    flushing.start()
    flushing.join(0.2)
    assert flushing.is_alive()  # waits for that caller: its objects must be listed by the drain
    store.write(rows, unregistered=stored_rows(items))
    registrations.deferred(items)
    flushing.join()
    assert set(directory.registered) == {row.object_id for row in rows}
    assert store.unregistered() == {} and directory.requests == [[row.object_id for row in rows]]
    assert registrations.defer(_new(1)[1]) is None  # the caller registers, then stores


def test_a_backend_that_starts_draining_registers_before_the_reply(store, directory):
    registrations = Registrations(store, directory.send, list)
    registrations.register_first("this backend is draining")
    rows, entries = _new(1)
    assert not registrations.store_new(rows, entries)  # the caller registers, then stores
    assert not store.classes() and not store.unregistered()


def test_a_send_whose_reply_was_lost_is_sent_again_with_what_came_after_in_one_request(store, directory):
    """The metadata service committed a registration but its reply was lost: the next request
    holds those entries again with newer ones; the directory skips the ones it has."""
    registrations = Registrations(store, directory.send, list)
    rows, entries = _new(3)
    registrations.store_new(rows, entries)
    directory.send(entries)  # committed there; this backend never heard back
    later_rows, later_entries = _new(2)
    registrations.store_new(later_rows, later_entries)
    directory.requests.clear()
    registrations.flush()
    assert len(directory.requests) == 1 and len(directory.requests[0]) == 5
    assert set(directory.registered) == {row.object_id for row in rows + later_rows}
    assert store.unregistered() == {}


def test_entries_go_in_parts_that_fit_a_message_whatever_the_class_paths(store, directory, monkeypatch):
    monkeypatch.setattr(registrations_module, "PART_BYTES", 4096)
    registrations = Registrations(store, directory.send, list)
    long_path = "models." + "a" * 300 + ".Employee"
    rows, entries = _new(40, path=long_path)  # about 340 bytes each: 12 fit in 4 KiB
    registrations.store_new(rows, entries)
    registrations.flush()
    assert [len(ids) for ids in directory.requests] == [11, 11, 11, 7]
    assert all(sum(e.ByteSize() + 4 for e in entries if uuid.UUID(bytes=e.object_id) in set(ids)) <= 4096
               for ids in directory.requests)
    assert len(directory.registered) == 40


def _versions(count: int, original: uuid.UUID) -> tuple[list[StoredObject], list[pb.ObjectEntry]]:
    rows, entries = _new(count)
    for entry in entries:
        entry.version_parent = entry.version_original = original.bytes
    return rows, entries


def _retire(store: ObjectStore, registrations: Registrations, entry: pb.ObjectEntry, consolidated: bool = True) -> None:
    """What a consolidation (or discard) here does: one transaction deletes the version and
    stores its retired entry; then the registrations hold it for the next batch."""
    retired = pb.ObjectEntry(object_id=entry.object_id, class_path=entry.class_path, backend_id=entry.backend_id,
                             version_parent=entry.version_parent, version_original=entry.version_original,
                             retired=pb.CONSOLIDATED if consolidated else pb.DISCARDED)
    items = unsent([retired])
    store.write([], delete=[uuid.UUID(bytes=entry.object_id)], unregistered=stored_rows(items))
    registrations.retired(items)


@pytest.mark.parametrize("consolidated", [True, False])
def test_a_version_retired_before_its_entry_was_sent_is_registered_retired_in_the_same_request(
        tmp_path, store, directory, consolidated):
    """new_version + consolidate_version (or discard) quicker than the batch: one request registers
    the version and says it retired; the directory forwards (or refuses) it as after CommitTransaction.
    The retired entry is stored, so a process killed before sending it sends the same at its next start."""
    original = uuid.uuid4()
    directory.real.register_objects([ObjectEntry(original, PATH, HERE)])
    registrations = Registrations(store, directory.send, list)
    rows, entries = _versions(2, original)
    registrations.store_new(rows, entries)
    version = rows[0].object_id
    _retire(store, registrations, entries[0], consolidated)
    store.close()
    reopened = ObjectStore(tmp_path / "backend")  # the next process, as after kill -9
    try:
        Registrations(reopened, directory.send, list).flush()
        assert reopened.unregistered() == {}
    finally:
        reopened.close()
    assert len(directory.requests) == 1 and len(directory.requests[0]) == 2
    with pytest.raises(VersionConsolidatedError if consolidated else VersionRetiredError) as raised:
        directory.real.locate(version)
    if consolidated:
        assert raised.value.original_id == original
    assert directory.real.locate(rows[1].object_id).backend_id == HERE  # the other version stays live
    assert set(directory.real.owned_by(HERE)) == {original, rows[1].object_id}


def test_a_version_registered_already_is_retired_by_the_next_batch_without_a_call_of_its_own(store, directory):
    """Its live entry went before; the retired one goes with the objects stored next (the
    directory retires the version, and removes its aliases, as CommitTransaction does)."""
    original = uuid.uuid4()
    registrations = Registrations(store, directory.send, list)
    rows, entries = _versions(1, original)
    registrations.store_new(rows, entries)
    registrations.flush()
    directory.real.add_alias("draft", rows[0].object_id)
    _retire(store, registrations, entries[0])
    later_rows, later_entries = _new(2)
    registrations.store_new(later_rows, later_entries)
    directory.requests.clear()
    registrations.flush()
    assert len(directory.requests) == 1 and len(directory.requests[0]) == 3
    with pytest.raises(VersionConsolidatedError):
        directory.real.locate(rows[0].object_id)
    assert directory.real.aliases_of(rows[0].object_id) == []
    assert store.unregistered() == {}


def test_a_version_retired_while_its_live_entry_is_being_sent_stays_pending_retired(store, directory):
    """The send under way confirms the live entry it carried, not the retired one that replaced
    it meanwhile: that one goes next (in memory and as stored)."""
    original = uuid.uuid4()
    rows, entries = _versions(1, original)

    def send_while_retiring(sent: list[pb.ObjectEntry]) -> list[uuid.UUID]:
        refused = directory.send(sent)  # committed live there; the reply is on its way back
        if len(directory.requests) == 1:
            _retire(store, registrations, entries[0], consolidated=False)
        return refused

    registrations = Registrations(store, send_while_retiring, list)
    registrations.store_new(rows, entries)
    registrations.flush()
    assert registrations.pending() == 1 and len(store.unregistered()) == 1
    assert directory.real.locate(rows[0].object_id).backend_id == HERE  # live, for now
    registrations.flush()
    with pytest.raises(VersionRetiredError):
        directory.real.locate(rows[0].object_id)
    assert registrations.pending() == 0 and store.unregistered() == {}


def test_only_versions_are_registered_retired(directory):
    entry = ObjectEntry(uuid.uuid4(), PATH, HERE, retired=pb.CONSOLIDATED)  # no lineage: not a version
    with pytest.raises(InvalidRequestError, match="not a version"):
        directory.real.register_stored([entry], caller="backend-0")
    strange = ObjectEntry(uuid.uuid4(), PATH, HERE, uuid.uuid4(), uuid.uuid4(), retired=7)
    with pytest.raises(InvalidRequestError, match="unknown retired state"):
        directory.real.register_stored([strange], caller="backend-0")
    assert directory.registered == {}


def test_a_backend_cannot_retire_another_backends_version(directory):
    original, version = uuid.uuid4(), uuid.uuid4()
    directory.real.register_objects([ObjectEntry(original, PATH, OTHER), ObjectEntry(version, PATH, OTHER, original, original)])
    forged = ObjectEntry(version, PATH, HERE, original, original, retired=pb.DISCARDED)  # backend-0 names itself
    assert directory.real.register_stored([forged], caller="backend-0") == [version]
    assert directory.real.locate(version).backend_id == OTHER  # still live, still backend-1's
