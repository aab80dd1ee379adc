"""A backend's durable object states, under its data directory.

Each object is one SQLite row (class, revision, state). A state larger than INLINE_LIMIT is kept
in a file under blobs/ instead (SQLite writes big values slowly and caps one value at about
1 GB, and a 1 GiB attribute must work). Such an object has two file slots: a new state is
written (and fsynced, with durability "machine") into the slot its row does not point at, then
one transaction points the row at it, so a crash leaves either the old or the new state; the
next new state reuses the other slot's disk pages. The next start removes unreferenced files. The backend's identity (backend id, and the
cluster it belongs to) is kept here too.

The rows of objects a committed move took away are deleted after the move has replied
(`delete_later`), by a thread of the store. Only their live rows are deleted, so a copy that
comes back (a move back stages its rows over them) stays; and whatever could make such a copy
live, or find the old rows, deletes them first (the fence): activating a move, storing new
objects (which looks for replays by id), listing or deleting rows, closing. Writes of owned
objects need no fence: an object given up is owned here again only after an activation. A
`kill -9` before the deletion leaves the rows: the next start's recovery drops rows the
directory does not assign here, as it did when a deletion failed.

A full disk (SQLite's, or ENOSPC/EDQUOT writing a file) is a StorageFullError naming this backend
(sqlite_db.storage_full); the stored states stay as they were, and the files of the failed write
are removed at once, so that the space is there again for the next one.
"""
from __future__ import annotations

import errno
import logging
import os
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Protocol
from uuid import UUID

from dataclay.exceptions import AlreadyExistError, BackendRetiredError
from dataclay_backend import faults
from dataclay_backend.sqlite_db import Database, storage_full

log = logging.getLogger(__name__)

# A live row is only ever replaced by a higher revision; staged rows (incoming moves) replace.
_UPSERT = (
    "INSERT INTO objects VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET class_path=excluded.class_path, "
    "revision=excluded.revision, state=excluded.state, file=excluded.file, staged=excluded.staged "
    "WHERE excluded.revision > objects.revision"
)
_STAGE = "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?)"
_FULL = (errno.ENOSPC, errno.EDQUOT)

INLINE_LIMIT = 1024 * 1024
BATCH = 500  # ids per "IN (...)" query (SQLite allows 32766 parameters)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    id BLOB PRIMARY KEY,
    class_path TEXT NOT NULL,
    revision INTEGER NOT NULL,
    state BLOB,
    file TEXT,
    staged BLOB             -- the move id while an incoming move is staged, NULL when live
);
CREATE INDEX IF NOT EXISTS objects_staged ON objects (staged) WHERE staged IS NOT NULL;
CREATE TABLE IF NOT EXISTS staged_writes (  -- consolidations prepared here, not yet applied
    txn BLOB NOT NULL,
    id BLOB NOT NULL,
    class_path TEXT NOT NULL,
    revision INTEGER NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (txn, id)
);
CREATE TABLE IF NOT EXISTS unregistered (  -- new objects stored here, their directory entry not yet confirmed
    id BLOB PRIMARY KEY,
    entry BLOB NOT NULL     -- the pb.ObjectEntry to register (registrations.py)
);
CREATE TABLE IF NOT EXISTS replica_states (  -- replicas held here of objects other backends own
    id BLOB PRIMARY KEY,
    class_path TEXT NOT NULL,
    revision INTEGER NOT NULL,
    state BLOB NOT NULL
);
"""
_REPLICA_UPSERT = (
    "INSERT INTO replica_states VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET class_path=excluded.class_path, "
    "revision=excluded.revision, state=excluded.state WHERE excluded.revision >= replica_states.revision"
)


class StateWriter(Protocol):
    """A large state that writes itself into its file (no copy of it in memory first)."""

    def __len__(self) -> int: ...  # about its size; more than INLINE_LIMIT

    def write_to(self, file: BinaryIO) -> None: ...


@dataclass(frozen=True)
class StoredObject:
    object_id: UUID
    class_path: str
    revision: int
    state: bytes | StateWriter


class ObjectStore:
    def __init__(self, data_dir: Path, durability: str = "process") -> None:
        self.db = Database(data_dir / "objects.sqlite", durability)
        self.db.ensure_schema(SCHEMA)
        self.data_dir = data_dir
        self.blobs = data_dir / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self._fsync = durability == "machine"
        self._file_locks: dict[bytes, threading.Lock] = {}  # large states: one writer per object
        self._file_locks_guard = threading.Lock()
        # Every object whose state may live in a file (a superset: an id joins before its first
        # file is written, and leaves when its row is deleted). Rows of other objects need no
        # look for files to remove when they are replaced or deleted: the hot path of commits and moves.
        self._file_ids: set[bytes] = set()
        self._given_up: list[bytes] = []  # keys whose live rows are deleted later (module docstring)
        self._given_up_guard = threading.Lock()  # guards the list
        self._deleting = threading.Lock()  # held while given-up rows are deleted: the fence waits for it
        self._wake = threading.Event()
        self._deleter: threading.Thread | None = None
        self._closed = False
        self._remove_unreferenced_files()

    def close(self) -> None:
        self._deleted_given_up()
        self._closed = True
        self._wake.set()
        self.db.close()

    # ------------------------------------------------------------------ rows given up (module docstring)
    def delete_later(self, object_ids: Iterable[UUID]) -> None:
        """Delete the live rows of these objects soon, from the store's thread (the caller is
        about to reply), and before anything could make a copy of them live (module docstring)."""
        with self._given_up_guard:
            self._given_up.extend(object_id.bytes for object_id in object_ids)
            if self._deleter is None:
                self._deleter = threading.Thread(target=self._delete_given_up_soon, name="dataclay-forget", daemon=True)
                self._deleter.start()
        self._wake.set()

    def _delete_given_up_soon(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            faults.hit("store.before_deleting_given_up")
            try:
                self._deleted_given_up()
            except Exception as exc:  # e.g. a full disk: the next change tries again, else the next start
                log.warning("could not delete the rows of objects this backend gave up (the next change of the "
                            "store, or the next start, does): %s", exc)

    def _deleted_given_up(self) -> None:
        """The fence: the rows given up so far are deleted when this returns (by this thread,
        or by another that was deleting them). Costs one look at a list when there are none."""
        if not self._given_up and not self._deleting.locked():
            return
        with self._deleting:
            with self._given_up_guard:
                keys, self._given_up = self._given_up, []
            if keys:
                try:
                    self._delete_keys(keys, live_only=True)
                except BaseException:
                    with self._given_up_guard:
                        self._given_up[:0] = keys  # deleted by the next attempt
                    raise

    def _remove_unreferenced_files(self) -> None:
        rows = self.db.query("SELECT id, file FROM objects WHERE file IS NOT NULL")
        self._file_ids = {key for key, _ in rows}
        referenced = {name for _, name in rows}
        for path in self.blobs.iterdir():
            if path.name not in referenced:
                path.unlink()

    def _write_file(self, name: str, data: bytes | StateWriter) -> None:
        """Write a free slot (no stored row points at it); a full disk removes it again."""
        try:
            self._write_slot(name, data)
        except OSError as exc:
            if exc.errno not in _FULL:
                raise
            self._unlink([name])
            raise storage_full(self.db.server, self.db.fields, f"writing a large state: {exc.strerror}") from None

    def _write_slot(self, name: str, data: bytes | StateWriter) -> None:
        path = self.blobs / name
        with open(path, "r+b" if path.exists() else "wb") as file:
            if isinstance(data, bytes):
                file.write(data)
            else:
                data.write_to(file)
            file.truncate()
            if self._fsync:
                file.flush()
                os.fsync(file.fileno())
        if self._fsync:  # the new name too must survive a power cut before the row points at it
            folder = os.open(self.blobs, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)

    # ------------------------------------------------------------------ identity
    def get_meta(self, key: str) -> bytes | None:
        rows = self.db.query("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: bytes) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def backend_id(self) -> UUID:
        """This backend's id: created on first start, the same ever after."""
        stored = self.get_meta("backend_id")
        if stored is None:
            stored = uuid.uuid4().bytes
            self.set_meta("backend_id", stored)
        backend_id = UUID(bytes=stored)
        self.db.server, self.db.fields = f"backend {backend_id}", {"backend_id": backend_id}
        return backend_id

    def renew_backend_id(self) -> UUID:
        """A new id, for a backend whose id was retired (drained and deregistered): only a store
        that holds nothing (no object, staged or not) may take one, since nothing in it can be
        needed; a store that holds objects keeps its id and the backend refuses to start."""
        with self.db.transaction() as conn:
            held = conn.execute("SELECT count(*) FROM objects").fetchone()[0]
            if held:
                backend_id = self.backend_id()
                raise BackendRetiredError(
                    f"backend {backend_id} was drained and deregistered, but its data directory {self.data_dir} "
                    f"holds {held} object(s) the cluster does not list: nothing was changed; move the directory "
                    "aside to start this backend empty under a new id", backend_id=backend_id)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('backend_id', ?)", (uuid.uuid4().bytes,))
        return self.backend_id()

    # ------------------------------------------------------------------ new objects, registered later
    def store_new(self, objects: list[StoredObject], entries: list[bytes]) -> list[UUID]:
        """Store new objects with their directory entries to register (registrations.py), in one
        transaction. An id stored here already is a replay of the same store (its reply was lost)
        when the class is the same: nothing is written for it; under another class it is refused
        (AlreadyExistError), and nothing at all is written. Returns the ids written."""
        self._deleted_given_up()
        if any(len(obj.state) > INLINE_LIMIT for obj in objects):
            fresh = self._not_stored_yet(objects, entries)
            # large states go to their files first (the general write); the entries follow at once:
            # a crash in between leaves stored objects no entry names, which recovery removes
            self.write([obj for obj, _ in fresh])
            with self.db.transaction() as conn:
                conn.executemany("INSERT OR REPLACE INTO unregistered VALUES (?, ?)",
                                 [(obj.object_id.bytes, entry) for obj, entry in fresh])
            return [obj.object_id for obj, _ in fresh]
        with self.db.transaction() as conn:
            fresh = self._not_stored_yet(objects, entries, conn)
            conn.executemany(_UPSERT, [(obj.object_id.bytes, obj.class_path, obj.revision, obj.state, None, None)
                                       for obj, _ in fresh])
            conn.executemany("INSERT OR REPLACE INTO unregistered VALUES (?, ?)",
                             [(obj.object_id.bytes, entry) for obj, entry in fresh])
        return [obj.object_id for obj, _ in fresh]

    def _not_stored_yet(self, objects: list[StoredObject], entries: list[bytes],
                        conn=None) -> list[tuple[StoredObject, bytes]]:
        """(object, entry) of those not stored here yet; AlreadyExistError if one is stored here
        under another class (a replay has the same class)."""
        known = self._classes_of([obj.object_id.bytes for obj in objects], conn)
        self._refuse_other_classes(objects, known)
        return [(obj, entry) for obj, entry in zip(objects, entries) if obj.object_id.bytes not in known]

    def _classes_of(self, keys: list[bytes], conn=None) -> dict[bytes, str]:
        found: dict[bytes, str] = {}
        for start in range(0, len(keys), BATCH):
            batch = keys[start:start + BATCH]
            sql = f"SELECT id, class_path FROM objects WHERE id IN ({','.join('?' * len(batch))})"
            found.update(conn.execute(sql, batch).fetchall() if conn is not None else self.db.query(sql, tuple(batch)))
        return found

    @staticmethod
    def _refuse_other_classes(objects: list[StoredObject], known: dict[bytes, str]) -> None:
        for obj in objects:
            stored = known.get(obj.object_id.bytes)
            if stored is not None and stored != obj.class_path:
                raise AlreadyExistError(f"object {obj.object_id} is stored already, as a {stored}",
                                        object_id=obj.object_id)

    def unregistered(self) -> dict[UUID, bytes]:
        """New objects whose directory entry is not confirmed yet: id -> entry."""
        return {UUID(bytes=key): entry for key, entry in self.db.query("SELECT id, entry FROM unregistered")}

    def registered(self, rows: list[tuple[bytes, bytes]]) -> None:
        """The directory confirmed these entries (object id, entry as stored): an entry replaced
        since (write(unregistered=...)) stays."""
        if rows:
            with self.db.transaction() as conn:
                conn.executemany("DELETE FROM unregistered WHERE id=? AND entry=?", rows)

    # ------------------------------------------------------------------ objects
    def write(self, objects: Iterable[StoredObject], staged: UUID | None = None, delete: Iterable[UUID] = (),
              unregistered: list[tuple[bytes, bytes]] | None = None) -> None:
        """Insert or replace states (as staged for move `staged`), and delete objects, all in
        one transaction. A live row is only ever replaced by a higher revision: two commits
        of one object that reach SQLite out of order leave the newer state. `unregistered`:
        (object id, entry) rows for the directory to store with it, replacing those of the same
        ids (the retirement of versions deleted here, registrations.py)."""
        move = staged.bytes if staged else None
        objects = list(objects)
        deleted = [object_id.bytes for object_id in delete]
        upsert = _STAGE if staged is not None else _UPSERT
        if not objects and not deleted:
            return  # a request that changed nothing: no transaction at all
        large = sorted({obj.object_id.bytes for obj in objects if len(obj.state) > INLINE_LIMIT})
        if (not large and len(objects) == 1 and not deleted and not unregistered
                and objects[0].object_id.bytes not in self._file_ids):
            obj = objects[0]  # the common commit: one small row, one statement
            self.db.execute(upsert, (obj.object_id.bytes, obj.class_path, obj.revision, obj.state, None, move))
            return
        self._file_ids.update(large)
        locks = [self._file_lock(key) for key in large]  # sorted: no two writers wait on each other
        for lock in locks:
            lock.acquire()
        try:
            rows = []
            written: list[str] = []  # free slots: no stored row points at them until the transaction
            try:
                for obj in objects:
                    key = obj.object_id.bytes
                    if key in large:
                        name = self._free_slot(obj.object_id)
                        self._write_file(name, obj.state)
                        written.append(name)
                        rows.append((key, obj.class_path, obj.revision, None, name, move))
                    else:
                        rows.append((key, obj.class_path, obj.revision, obj.state, None, move))
                rows.sort(key=lambda row: row[0])  # in key order SQLite touches each B-tree page once, not at random (2-3x)
                with self.db.transaction() as conn:
                    before = self._files_of(conn, [row[0] for row in rows])
                    gone = self._files_of(conn, deleted)
                    conn.executemany(upsert, rows)
                    self._delete_rows(conn, deleted)
                    if unregistered:
                        conn.executemany("INSERT OR REPLACE INTO unregistered VALUES (?, ?)", unregistered)
                    after = self._files_of(conn, [row[0] for row in rows])
            except BaseException:
                self._unlink(written)  # the stored rows still point at the other slots
                raise
            # a state that became small leaves its files behind; the other slot of a large one stays
            self._unlink([name for key, name in before.items() if key not in after])
            self._unlink_slots(gone)
            self._file_ids.difference_update(deleted)
        finally:
            for lock in locks:
                lock.release()

    def _file_lock(self, key: bytes) -> threading.Lock:
        with self._file_locks_guard:
            return self._file_locks.setdefault(key, threading.Lock())

    def _free_slot(self, object_id: UUID) -> str:
        """The one of the object's two state files that its stored row does not use: writing
        it never touches the committed state, and rewriting reuses its disk pages (much faster
        than a new file, for a large state rewritten again and again)."""
        rows = self.db.query("SELECT file FROM objects WHERE id=?", (object_id.bytes,))
        current = rows[0][0] if rows else None
        first, second = f"{object_id.hex}.a", f"{object_id.hex}.b"
        return second if current == first else first

    def _files_of(self, conn, keys: list[bytes], live_only: bool = False) -> dict[bytes, str]:
        """The files behind these objects' states (only live rows': `live_only`), by object id."""
        files: dict[bytes, str] = {}
        keys = [key for key in keys if key in self._file_ids]
        live = "staged IS NULL AND " if live_only else ""
        for start in range(0, len(keys), BATCH):
            batch = keys[start:start + BATCH]
            marks = ",".join("?" * len(batch))
            files.update(conn.execute(
                f"SELECT id, file FROM objects WHERE {live}file IS NOT NULL AND id IN ({marks})", batch).fetchall())
        return files

    def _unlink(self, names: list[str]) -> None:
        for name in names:
            (self.blobs / name).unlink(missing_ok=True)

    def load(self, object_id: UUID) -> StoredObject | None:
        rows = self.db.query(
            "SELECT class_path, revision, state, file FROM objects WHERE id=? AND staged IS NULL", (object_id.bytes,)
        )
        if not rows:
            return None
        class_path, revision, state, file = rows[0]
        if file is not None:
            state = (self.blobs / file).read_bytes()
        return StoredObject(object_id, class_path, revision, state)

    def load_many(self, object_ids: list[UUID]) -> dict[UUID, StoredObject]:
        """Live states of many objects, a few queries in all."""
        found = {}
        for start in range(0, len(object_ids), BATCH):
            by_key = {object_id.bytes: object_id for object_id in object_ids[start:start + BATCH]}
            marks = ",".join("?" * len(by_key))
            for key, class_path, revision, state, file in self.db.query(
                f"SELECT id, class_path, revision, state, file FROM objects WHERE staged IS NULL AND id IN ({marks})",
                tuple(by_key),
            ):
                object_id = by_key[key]
                if file is not None:
                    state = (self.blobs / file).read_bytes()
                found[object_id] = StoredObject(object_id, class_path, revision, state)
        return found

    def delete(self, object_ids: Iterable[UUID], live_only: bool = False) -> None:
        """Delete these objects' rows and state files. `live_only`: not a staged row (a copy a
        later move brought back while this one was being forgotten), nor its file. Holds the
        file locks of those with files, so no write of a later copy interleaves."""
        self._deleted_given_up()
        self._delete_keys([object_id.bytes for object_id in object_ids], live_only)

    def _delete_keys(self, keys: list[bytes], live_only: bool) -> None:
        locks = [self._file_lock(key) for key in sorted(key for key in keys if key in self._file_ids)]
        for lock in locks:
            lock.acquire()
        try:
            with self.db.transaction() as conn:
                files = self._files_of(conn, keys, live_only)
                self._delete_rows(conn, keys, live_only)
            self._unlink_slots(files)
            self._file_ids.difference_update(files if live_only else keys)
        finally:
            for lock in locks:
                lock.release()

    @staticmethod
    def _delete_rows(conn, keys: list[bytes], live_only: bool = False) -> None:
        """In key order and a few statements, the fast way to delete many rows."""
        keys = sorted(keys)
        live = "staged IS NULL AND " if live_only else ""
        for start in range(0, len(keys), BATCH):
            batch = keys[start:start + BATCH]
            conn.execute(f"DELETE FROM objects WHERE {live}id IN ({','.join('?' * len(batch))})", batch)
            conn.execute(f"DELETE FROM unregistered WHERE id IN ({','.join('?' * len(batch))})", batch)

    def _unlink_slots(self, files: dict[bytes, str]) -> None:
        """Both state files of each deleted object that had one (the referenced one and the other slot)."""
        self._unlink([f"{UUID(bytes=key).hex}.{slot}" for key in files for slot in "ab"])

    def classes(self) -> dict[UUID, str]:
        """Every live object id with its class path."""
        self._deleted_given_up()
        intern = sys.intern  # one string per class, not per object (objects.py)
        return {UUID(bytes=r[0]): intern(r[1]) for r in self.db.query("SELECT id, class_path FROM objects WHERE staged IS NULL")}

    # ------------------------------------------------------------------ staged moves
    def staged(self) -> dict[UUID, dict[UUID, str]]:
        """Incoming moves not yet activated: move id -> {object id: class path}."""
        self._deleted_given_up()
        moves: dict[UUID, dict[UUID, str]] = {}
        for move, key, class_path in self.db.query("SELECT staged, id, class_path FROM objects WHERE staged IS NOT NULL"):
            moves.setdefault(UUID(bytes=move), {})[UUID(bytes=key)] = sys.intern(class_path)
        return moves

    def activate(self, move_id: UUID) -> None:
        self._deleted_given_up()  # a copy of objects given up may be among those made live here
        with self.db.transaction() as conn:
            conn.execute("UPDATE objects SET staged=NULL WHERE staged=?", (move_id.bytes,))

    def discard(self, move_id: UUID) -> None:
        self._deleted_given_up()
        with self.db.transaction() as conn:
            files = [r[0] for r in conn.execute("SELECT file FROM objects WHERE staged=? AND file IS NOT NULL", (move_id.bytes,))]
            conn.execute("DELETE FROM objects WHERE staged=?", (move_id.bytes,))
        self._unlink(files)

    # ------------------------------------------------------------------ prepared writes (consolidation; table staged_writes)
    def prepare_write(self, txn_id: UUID, obj: StoredObject) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO staged_writes VALUES (?, ?, ?, ?, ?)",
                         (txn_id.bytes, obj.object_id.bytes, obj.class_path, obj.revision, obj.state))

    def prepared_writes(self, txn_id: UUID | None = None) -> dict[UUID, list[StoredObject]]:
        """Prepared writes by transaction (of one transaction, if given)."""
        sql = "SELECT txn, id, class_path, revision, state FROM staged_writes"
        rows = self.db.query(sql + " WHERE txn=?", (txn_id.bytes,)) if txn_id else self.db.query(sql)
        writes: dict[UUID, list[StoredObject]] = {}
        for txn, key, class_path, revision, state in rows:
            writes.setdefault(UUID(bytes=txn), []).append(StoredObject(UUID(bytes=key), class_path, revision, state))
        return writes

    def forget_prepared(self, txn_id: UUID) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM staged_writes WHERE txn=?", (txn_id.bytes,))

    # ------------------------------------------------------------------ replicas held here (table replica_states)
    def store_replicas(self, objects: list[StoredObject]) -> None:
        """Create or update replicas in one transaction; an older revision never replaces a newer
        one (two updates that arrive out of order leave the newer state)."""
        rows = [(o.object_id.bytes, o.class_path, o.revision, o.state) for o in objects]
        with self.db.transaction() as conn:
            conn.executemany(_REPLICA_UPSERT, rows)

    def load_replica(self, object_id: UUID) -> StoredObject | None:
        rows = self.db.query("SELECT class_path, revision, state FROM replica_states WHERE id=?", (object_id.bytes,))
        return StoredObject(object_id, *rows[0]) if rows else None

    def forget_replicas(self, object_ids: Iterable[UUID]) -> None:
        keys = [(object_id.bytes,) for object_id in object_ids]
        if keys:
            with self.db.transaction() as conn:
                conn.executemany("DELETE FROM replica_states WHERE id=?", keys)

    def replica_ids(self) -> set[UUID]:
        return {UUID(bytes=r[0]) for r in self.db.query("SELECT id FROM replica_states")}
