"""A backend's durable states (dataclay_backend.object_store.ObjectStore) on real files: the
higher revision wins, large states live in two file slots, incoming moves are staged until
activated, consolidations' prepared writes, and everything is there again after reopening."""
import threading
import time
import uuid

import pytest

from dataclay.exceptions import BackendRetiredError
from dataclay_backend.object_store import INLINE_LIMIT, ObjectStore, StoredObject

PATH = "hr.Employee"
LARGE = INLINE_LIMIT + 4096


@pytest.fixture
def store(tmp_path):
    opened = ObjectStore(tmp_path)
    yield opened
    opened.close()


def large(fill: int) -> bytes:
    return bytes([fill]) * LARGE


def files(store: ObjectStore) -> set[str]:
    return {path.name for path in store.blobs.iterdir()}


class Streamed:
    """A large state that writes itself into its file (a StateWriter), in pieces."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def write_to(self, file) -> None:
        for start in range(0, len(self.data), 65536):
            file.write(self.data[start:start + 65536])


# ---------------------------------------------------------------------------------------- revisions

def test_a_written_state_loads_back_and_an_unknown_object_is_none(store):
    object_id = uuid.uuid4()
    store.write([StoredObject(object_id, PATH, 1, b"state-1")])
    assert store.load(object_id) == StoredObject(object_id, PATH, 1, b"state-1")
    assert store.load(uuid.uuid4()) is None


@pytest.mark.parametrize("size", ["inline", "large"])
def test_the_store_keeps_the_higher_revision(store, size):
    """Two commits of one object can reach the store out of order: the newer one stays."""
    state = (lambda n: large(n)) if size == "large" else (lambda n: b"state-%d" % n)
    object_id = uuid.uuid4()
    store.write([StoredObject(object_id, PATH, 5, state(5))])
    store.write([StoredObject(object_id, PATH, 4, state(4))])  # late
    store.write([StoredObject(object_id, PATH, 5, state(9))])  # same revision: not newer either
    assert (store.load(object_id).revision, store.load(object_id).state) == (5, state(5))
    store.write([StoredObject(object_id, PATH, 6, state(6))])
    assert (store.load(object_id).revision, store.load(object_id).state) == (6, state(6))


def test_a_batch_keeps_the_higher_revision_of_each_object(store):
    newer, older, fresh = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    store.write([StoredObject(newer, PATH, 1, b"n1"), StoredObject(older, PATH, 7, b"o7")])
    store.write([StoredObject(newer, PATH, 2, b"n2"), StoredObject(older, PATH, 3, b"o3"),
                 StoredObject(fresh, PATH, 1, b"f1")])
    assert {i: (s.revision, s.state) for i, s in store.load_many([newer, older, fresh]).items()} == {
        newer: (2, b"n2"), older: (7, b"o7"), fresh: (1, b"f1")}


def test_concurrent_writers_of_one_large_object_leave_the_highest_revision(store):
    object_id = uuid.uuid4()
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def writer(revision: int) -> None:
        try:
            start.wait(10)
            store.write([StoredObject(object_id, PATH, revision, large(revision))])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(revision,)) for revision in (3, 4, 5, 6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    loaded = store.load(object_id)
    assert (loaded.revision, loaded.state) == (6, large(6))


# ---------------------------------------------------------------------------------------- large states

def test_a_large_state_lives_in_a_file_and_a_rewrite_uses_the_other_slot(store):
    object_id = uuid.uuid4()
    store.write([StoredObject(object_id, PATH, 1, large(1))])
    assert files(store) == {f"{object_id.hex}.a"}
    store.write([StoredObject(object_id, PATH, 2, Streamed(large(2)))])
    assert files(store) == {f"{object_id.hex}.a", f"{object_id.hex}.b"}
    assert (store.blobs / f"{object_id.hex}.a").read_bytes() == large(1)  # the old state was never touched
    assert store.load(object_id).state == large(2)
    store.write([StoredObject(object_id, PATH, 3, large(3))])  # back to the first slot
    assert store.load(object_id).state == large(3) and (store.blobs / f"{object_id.hex}.b").read_bytes() == large(2)


def test_a_late_large_write_never_touches_the_file_of_the_newer_state(store):
    object_id = uuid.uuid4()
    store.write([StoredObject(object_id, PATH, 2, large(2))])
    store.write([StoredObject(object_id, PATH, 1, large(1))])
    assert store.load(object_id) == StoredObject(object_id, PATH, 2, large(2))


def test_a_state_that_becomes_small_leaves_no_file_behind(tmp_path):
    store = ObjectStore(tmp_path)
    object_id = uuid.uuid4()
    store.write([StoredObject(object_id, PATH, 1, large(1))])
    store.write([StoredObject(object_id, PATH, 2, large(2))])
    store.write([StoredObject(object_id, PATH, 3, b"small")])
    assert store.load(object_id).state == b"small"
    store.close()
    reopened = ObjectStore(tmp_path)  # the start removes what no row points at
    try:
        assert files(reopened) == set() and reopened.load(object_id).state == b"small"
    finally:
        reopened.close()


def test_deleting_a_large_object_removes_both_slots(store):
    kept, gone = uuid.uuid4(), uuid.uuid4()
    for revision in (1, 2):
        store.write([StoredObject(kept, PATH, revision, large(revision)),
                     StoredObject(gone, PATH, revision, large(revision))])
    store.delete([gone])
    assert store.load(gone) is None
    assert files(store) == {f"{kept.hex}.a", f"{kept.hex}.b"}


def test_a_write_can_delete_in_the_same_transaction(store):
    replaced, replacement = uuid.uuid4(), uuid.uuid4()
    store.write([StoredObject(replaced, PATH, 1, large(1))])
    store.write([StoredObject(replacement, PATH, 1, b"new")], delete=[replaced])
    assert store.load(replaced) is None and store.load(replacement).state == b"new"
    assert files(store) == set()
    assert store.classes() == {replacement: PATH}


def test_load_many_reads_live_states_in_batches(store):
    ids = [uuid.uuid4() for _ in range(1201)]  # more than two IN (...) batches
    store.write([StoredObject(object_id, PATH, 1, object_id.bytes) for object_id in ids])
    store.write([StoredObject(ids[0], PATH, 2, large(7))])
    staged = uuid.uuid4()
    store.write([StoredObject(staged, PATH, 1, b"incoming")], staged=uuid.uuid4())
    found = store.load_many([*ids, uuid.uuid4(), staged])
    assert set(found) == set(ids)  # neither the unknown nor the staged one
    assert found[ids[0]].state == large(7) and all(found[i].state == i.bytes for i in ids[1:])


# ---------------------------------------------------------------------------------------- staged moves

def test_an_incoming_move_is_invisible_until_activated(store):
    move_id, object_id = uuid.uuid4(), uuid.uuid4()
    store.write([StoredObject(object_id, PATH, 3, b"moved"), StoredObject(uuid.uuid4(), PATH, 1, large(1))],
                staged=move_id)
    assert store.load(object_id) is None and object_id not in store.classes()
    assert set(store.staged()) == {move_id} and store.staged()[move_id][object_id] == PATH
    store.activate(move_id)
    assert store.load(object_id) == StoredObject(object_id, PATH, 3, b"moved")
    assert store.staged() == {} and len(store.classes()) == 2


def test_a_discarded_move_leaves_nothing(store):
    move_id, kept = uuid.uuid4(), uuid.uuid4()
    store.write([StoredObject(kept, PATH, 1, b"kept")])
    store.write([StoredObject(uuid.uuid4(), PATH, 1, b"a"), StoredObject(uuid.uuid4(), PATH, 1, large(2))],
                staged=move_id)
    store.discard(move_id)
    assert store.staged() == {} and store.classes() == {kept: PATH} and files(store) == set()


def test_a_staged_move_replaces_a_stored_copy_whatever_its_revision(store):
    """An object that comes back to a backend that still has an old copy: the move's state is
    the one that counts (the copy here is not owned any more)."""
    object_id, move_id = uuid.uuid4(), uuid.uuid4()
    store.write([StoredObject(object_id, PATH, 9, b"old copy")])
    store.write([StoredObject(object_id, PATH, 4, b"moved")], staged=move_id)
    store.activate(move_id)
    assert store.load(object_id) == StoredObject(object_id, PATH, 4, b"moved")


@pytest.fixture
def deleter_held(monkeypatch):
    """The store's thread that deletes given-up rows holds for good before deleting (fault point,
    action "hold"): only the fence, or closing the store, deletes them."""
    from dataclay_backend import faults

    monkeypatch.setattr(faults, "_POINT", "store.before_deleting_given_up")
    monkeypatch.setattr(faults, "_HOLD", True)


def test_rows_given_up_are_deleted_before_a_listing_or_an_activation(store, deleter_held):
    """delete_later (a committed move's source): the rows go before the next listing of the
    objects table or activation of a move; a staged copy of one (a move back) is made live and stays."""
    gone, back, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    store.write([StoredObject(gone, PATH, 5, b"gone"), StoredObject(back, PATH, 5, b"old copy"),
                 StoredObject(other, PATH, 1, large(3))])
    store.delete_later([gone, back, other])
    assert store.classes() == {}  # listing: the fence deleted them first
    assert store.load(gone) is None and files(store) == set()
    store.write([StoredObject(back, PATH, 2, b"old copy again")])  # owned again, as a move back would make it
    store.delete_later([back])  # given up again: queued
    move_id = uuid.uuid4()
    store.write([StoredObject(back, PATH, 4, b"came back")], staged=move_id)  # over the queued row
    store.activate(move_id)  # the fence deletes the queued live row first: none now (the staged one replaced it)
    assert store.load(back) == StoredObject(back, PATH, 4, b"came back")


def test_a_copy_that_came_back_survives_the_rows_queued_before_it(tmp_path, deleter_held):
    """The order that would lose data without the fence: queued, then a staged copy of the same
    object activated, then the queue's turn (here: closing the store). The copy stays."""
    object_id, move_id = uuid.uuid4(), uuid.uuid4()
    store = ObjectStore(tmp_path)
    store.write([StoredObject(object_id, PATH, 5, b"left")])
    store.delete_later([object_id])
    store.write([StoredObject(object_id, PATH, 6, b"came back")], staged=move_id)
    store.activate(move_id)
    store.close()
    reopened = ObjectStore(tmp_path)
    try:
        assert reopened.load(object_id) == StoredObject(object_id, PATH, 6, b"came back")
    finally:
        reopened.close()


def test_rows_given_up_are_deleted_by_the_stores_own_thread(store):
    """Without anything else happening, the queued rows go (the thread wakes for them): polled
    on the condition, with a deadline."""
    object_id = uuid.uuid4()
    store.write([StoredObject(object_id, PATH, 1, b"x")])
    store.delete_later([object_id])
    deadline = time.monotonic() + 30
    while store.db.query("SELECT 1 FROM objects WHERE id=?", (object_id.bytes,)):
        assert time.monotonic() < deadline, "the given-up row was not deleted within 30 s"
        time.sleep(0.005)


def test_two_staged_moves_are_activated_and_discarded_separately(store):
    first, second = uuid.uuid4(), uuid.uuid4()
    a, b = uuid.uuid4(), uuid.uuid4()
    store.write([StoredObject(a, PATH, 1, b"a")], staged=first)
    store.write([StoredObject(b, PATH, 1, b"b")], staged=second)
    store.discard(second)
    store.activate(first)
    assert store.classes() == {a: PATH} and store.staged() == {}


# ---------------------------------------------------------------------------------------- staged writes

def test_prepared_consolidation_writes_are_kept_by_transaction_until_forgotten(store):
    txn, other = uuid.uuid4(), uuid.uuid4()
    target = uuid.uuid4()
    store.prepare_write(txn, StoredObject(target, PATH, 5, b"prepared"))
    store.prepare_write(txn, StoredObject(target, PATH, 6, b"prepared again"))  # a retried prepare replaces
    store.prepare_write(other, StoredObject(uuid.uuid4(), PATH, 2, b"other"))
    assert store.prepared_writes(txn) == {txn: [StoredObject(target, PATH, 6, b"prepared again")]}
    assert set(store.prepared_writes()) == {txn, other}
    assert store.load(target) is None  # prepared is not applied
    store.forget_prepared(txn)
    assert set(store.prepared_writes()) == {other}


# ---------------------------------------------------------------------------------------- reopening

@pytest.mark.parametrize("durability", ["process", "machine"])
def test_after_reopening_the_higher_revision_is_what_loads(tmp_path, durability):
    store = ObjectStore(tmp_path, durability)
    backend_id = store.backend_id()
    small, big, moving, txn = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    store.write([StoredObject(small, PATH, 2, b"two"), StoredObject(big, PATH, 2, large(2))])
    store.write([StoredObject(small, PATH, 1, b"one"), StoredObject(big, PATH, 1, large(1))])
    store.write([StoredObject(big, PATH, 3, large(3))])
    store.write([StoredObject(moving, PATH, 1, b"staged")], staged=txn)
    store.prepare_write(txn, StoredObject(small, PATH, 3, b"three"))
    store.close()

    reopened = ObjectStore(tmp_path, durability)
    try:
        assert reopened.backend_id() == backend_id
        assert reopened.load(small) == StoredObject(small, PATH, 2, b"two")
        assert reopened.load(big) == StoredObject(big, PATH, 3, large(3))
        assert files(reopened) == {f"{big.hex}.b"}  # the unreferenced slot was removed at the start
        assert reopened.staged() == {txn: {moving: PATH}}
        assert reopened.prepared_writes(txn)[txn][0].state == b"three"
    finally:
        reopened.close()


def test_each_store_has_its_own_lasting_backend_id(tmp_path):
    one, other = ObjectStore(tmp_path / "one"), ObjectStore(tmp_path / "other")
    try:
        assert one.backend_id() == one.backend_id() != other.backend_id()
        one.set_meta("cluster", b"c1")
        assert one.get_meta("cluster") == b"c1" and other.get_meta("cluster") is None
    finally:
        one.close()
        other.close()


# ---------------------------------------------------------------------------------------- identity

def test_an_empty_store_takes_a_new_id_and_a_store_holding_objects_never_does(store, tmp_path):
    retired = store.backend_id()
    renewed = store.renew_backend_id()
    assert renewed != retired and store.backend_id() == renewed
    store.write([StoredObject(uuid.uuid4(), PATH, 1, b"state")])
    with pytest.raises(BackendRetiredError, match="holds 1 object"):
        store.renew_backend_id()
    assert store.backend_id() == renewed


def test_a_replica_update_never_replaces_a_newer_revision_and_replicas_stay_apart_from_owned_objects(store):
    object_id = uuid.uuid4()
    store.store_replicas([StoredObject(object_id, "hr.Employee", 3, b"three")])
    store.store_replicas([StoredObject(object_id, "hr.Employee", 2, b"two")])  # arrived late
    assert store.load_replica(object_id).state == b"three"
    store.store_replicas([StoredObject(object_id, "hr.Employee", 4, b"four")])
    assert (store.load_replica(object_id).revision, store.load_replica(object_id).state) == (4, b"four")
    assert store.load(object_id) is None and store.classes() == {}  # never an owned object
    assert store.replica_ids() == {object_id}
    store.forget_replicas([object_id])
    assert store.load_replica(object_id) is None and store.replica_ids() == set()


def test_the_ids_listed_with_their_classes_share_one_string_per_class(store):
    """What a backend's owned map starts from (and the staged moves it recovers): one class-path
    string per class, not one per row."""
    live, staged, move = [uuid.uuid4() for _ in range(3)], [uuid.uuid4() for _ in range(3)], uuid.uuid4()
    store.write([StoredObject(i, PATH, 1, b"live") for i in live])
    store.write([StoredObject(i, PATH, 1, b"incoming") for i in staged], staged=move)
    classes, moves = store.classes(), store.staged()
    assert [classes[i] for i in live] == [PATH] * 3 and [moves[move][i] for i in staged] == [PATH] * 3
    assert len({id(classes[i]) for i in live} | {id(moves[move][i]) for i in staged}) == 1
