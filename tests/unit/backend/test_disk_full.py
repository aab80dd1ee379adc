"""A full disk is a typed StorageFullError naming the backend, and leaves the stored states as
they were (real SQLite and real files: SQLite's page limit is a real SQLITE_FULL, and a state
file slot that is /dev/full is a real ENOSPC from the kernel)."""
import os
import uuid

import pytest

from dataclay.exceptions import StorageFullError
from dataclay_backend.object_store import INLINE_LIMIT, ObjectStore, StoredObject
from dataclay_backend.sqlite_db import Database

PATH = "hr.Employee"
LARGE = INLINE_LIMIT + 4096


@pytest.fixture
def store(tmp_path):
    opened = ObjectStore(tmp_path)
    yield opened
    opened.close()


def _limit_pages(db: Database, extra: int) -> int:
    """Let the database grow by at most `extra` pages; returns the limit before."""
    before = db.query("PRAGMA max_page_count")[0][0]
    pages = db.query("PRAGMA page_count")[0][0]
    db.query(f"PRAGMA max_page_count={pages + extra}")
    return before


def test_sqlite_full_is_typed_names_the_backend_and_changes_nothing(store):
    backend_id = store.backend_id()
    object_id = uuid.uuid4()
    store.write([StoredObject(object_id, PATH, 1, b"old")])
    unlimited = _limit_pages(store.db, 2)
    with pytest.raises(StorageFullError) as raised:
        store.write([StoredObject(object_id, PATH, 2, os.urandom(200_000)),
                     StoredObject(uuid.uuid4(), PATH, 1, os.urandom(200_000))])
    assert raised.value.backend_id == backend_id
    assert str(backend_id) in str(raised.value) and "free space" in str(raised.value)
    assert not store.db.conn.in_transaction  # rolled back: the next transaction can start
    assert store.load(object_id).state == b"old" and len(store.classes()) == 1
    with pytest.raises(StorageFullError):  # a one-row commit (its own statement) too
        store.write([StoredObject(object_id, PATH, 2, os.urandom(200_000))])
    assert store.load(object_id).state == b"old"
    store.db.query(f"PRAGMA max_page_count={unlimited}")  # space again: the same write works
    store.write([StoredObject(object_id, PATH, 2, b"new")])
    assert store.load(object_id).state == b"new"


def test_a_full_disk_writing_a_large_state_keeps_the_old_one(store):
    backend_id = store.backend_id()
    object_id = uuid.uuid4()
    old = bytes([1]) * LARGE
    store.write([StoredObject(object_id, PATH, 1, old)])
    stored_in = store.db.query("SELECT file FROM objects")[0][0]
    free_slot = store.blobs / (f"{object_id.hex}.b" if stored_in.endswith(".a") else f"{object_id.hex}.a")
    free_slot.unlink(missing_ok=True)
    free_slot.symlink_to("/dev/full")  # the next state goes into this slot: ENOSPC from the kernel
    with pytest.raises(StorageFullError) as raised:
        store.write([StoredObject(object_id, PATH, 2, bytes([2]) * LARGE)])
    assert raised.value.backend_id == backend_id
    assert not free_slot.exists() and not free_slot.is_symlink()  # the failed write is removed at once
    assert store.load(object_id).state == old and store.load(object_id).revision == 1
    store.write([StoredObject(object_id, PATH, 2, bytes([2]) * LARGE)])  # space again
    assert store.load(object_id).state == bytes([2]) * LARGE


def test_files_of_a_write_whose_transaction_fails_are_removed(store):
    store.backend_id()
    object_id = uuid.uuid4()
    _limit_pages(store.db, 0)
    with pytest.raises(StorageFullError):
        store.write([StoredObject(object_id, PATH, 1, bytes([3]) * LARGE),
                     StoredObject(uuid.uuid4(), PATH, 1, os.urandom(100_000))])
    assert list(store.blobs.iterdir()) == []
    assert store.load(object_id) is None


def test_the_metadata_database_is_named(tmp_path):
    db = Database(tmp_path / "metadata.sqlite")
    db.execute("CREATE TABLE t (value BLOB)")
    _limit_pages(db, 0)
    with pytest.raises(StorageFullError, match="the metadata service"):
        with db.transaction() as conn:
            conn.execute("INSERT INTO t VALUES (?)", (os.urandom(100_000),))
    assert not db.conn.in_transaction
    db.close()
