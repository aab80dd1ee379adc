"""The metadata service's state: backends, the object directory, aliases.

A plain object over one SQLite database; every change is one transaction. The servicer
(metadata_service.py) only translates the wire to calls on this class, and tests drive it
directly.

Identity binding lives here too: the internal calls take `caller`, the authenticated name of
the calling backend (None without authentication), and check it inside the transaction that
makes the change. Checked before it, a move committed in between could hand a backend rows it no
longer owns (to drop or retire), or a name could change hands between the check and the insert.
"""
from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from dataclay.exceptions import (
    AliasAlreadyExistError,
    BackendDrainingError,
    BackendNotDrainedError,
    BackendRetiredError,
    AliasDoesNotExistError,
    AlreadyExistError,
    BackendNotFoundError,
    ClusterMismatchError,
    InvalidRequestError,
    ObjectMovingError,
    ObjectNotRegisteredError,
    VersionConflictError,
    retired_error,
)
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.transport import BackendInfo
from dataclay_backend.sqlite_db import Database
from dataclay_backend.validation import check_alias, check_backend, check_class_path, check_ids

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS backends (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id BLOB NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    draining INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS retired_backends (  -- drained and deregistered: never registered again
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    id BLOB PRIMARY KEY,
    class_path TEXT NOT NULL,
    backend_id BLOB NOT NULL,
    version_parent BLOB,            -- versions: lineage, for people and tools
    version_original BLOB,
    retired INTEGER NOT NULL DEFAULT 0  -- versions: 1 discarded, 2 consolidated (forwards to its original)
);  -- no index by backend (every move would update it): listing a backend's objects (at its start,
    -- or to drain it) scans instead, 5 ms per 100,000 objects
CREATE TABLE IF NOT EXISTS aliases (
    alias TEXT PRIMARY KEY,
    object_id BLOB NOT NULL REFERENCES objects (id)
);
CREATE INDEX IF NOT EXISTS aliases_by_object ON aliases (object_id);
CREATE TABLE IF NOT EXISTS replicas (  -- backends holding a replica of an object (never its owner)
    object_id BLOB NOT NULL,
    backend_id BLOB NOT NULL,
    PRIMARY KEY (object_id, backend_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS transactions (
    id BLOB PRIMARY KEY,
    committed INTEGER NOT NULL,     -- 1 committed, 0 aborted, no row: undecided
    apply TEXT                      -- JSON: what participants need to apply (base revisions)
);
"""


DISCARDED, CONSOLIDATED = pb.DISCARDED, pb.CONSOLIDATED  # objects.retired (the wire's values)


class Refusal(Exception):
    """An internal call that is not this caller's to make; the servicer turns it into a logged
    PermissionDeniedError (authz.denied) naming who, what and why."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"may not {what}: {why}")
        self.what, self.why = what, why


@dataclass(frozen=True)
class ObjectEntry:
    object_id: UUID
    class_path: str
    backend_id: UUID
    version_parent: UUID | None = None
    version_original: UUID | None = None
    replicas: tuple[UUID, ...] = ()  # backends holding a replica, besides the owner
    retired: int = 0  # register_stored: a version its backend consolidated or discarded (DISCARDED, CONSOLIDATED)


@dataclass(frozen=True)
class ReplicaEntry:
    object_id: UUID
    backend_id: UUID  # the holder
    master_backend_id: UUID  # the object's owner



def _row(e: ObjectEntry) -> tuple:
    """An entry as a row of the objects table (not retired)."""
    return (e.object_id.bytes, e.class_path, e.backend_id.bytes,
            e.version_parent.bytes if e.version_parent else None,
            e.version_original.bytes if e.version_original else None)

class Directory:
    def __init__(self, data_dir: Path, durability: str = "process") -> None:
        self.db = Database(data_dir / "metadata.sqlite", durability)
        self.db.ensure_schema(SCHEMA)
        with self.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('cluster_id', ?)", (uuid.uuid4().bytes,))
        self.cluster_id = UUID(bytes=self.db.query("SELECT value FROM meta WHERE key='cluster_id'")[0][0])

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ backends
    def register_backend(self, info: BackendInfo, caller: str | None = None) -> None:
        """Insert, or update the address of, a backend (its draining mark stays: a pod that
        restarts between its drain and its removal must not take objects again). A new id may
        take over a name only if the old holder of that name owns no objects (e.g. a pod whose
        volume was wiped); a retired id is refused. A
        calling backend registers only under its own name, and an id never changes hands."""
        check_backend(info.name, info.host, info.port)
        what = f"register backend {info.name!r}"
        if caller is not None and info.name != caller:
            raise Refusal(what, "a backend registers only under its own name")
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM retired_backends WHERE id=?", (info.id.bytes,)).fetchone():
                raise BackendRetiredError(
                    f"backend {info.name} ({info.id}) was drained and deregistered, and its id never serves again: "
                    "start it with an empty data directory (it then registers under a new id)",
                    name=info.name, backend_id=info.id)
            if caller is not None:
                row = conn.execute("SELECT name FROM backends WHERE id=?", (info.id.bytes,)).fetchone()
                if row is not None and row[0] != caller:
                    raise Refusal(f"register under id {info.id}",
                                  f"that id is backend {row[0]}'s (an id never changes hands)")
            row = conn.execute("SELECT id FROM backends WHERE name=?", (info.name,)).fetchone()
            if row and row[0] != info.id.bytes:
                owned = conn.execute("SELECT count(*) FROM objects WHERE backend_id=?", (row[0],)).fetchone()[0]
                if owned:
                    raise ClusterMismatchError(
                        f"backend name {info.name!r} belongs to backend {UUID(bytes=row[0])}, which still "
                        f"owns {owned} objects; backend {info.id} cannot take it (is its data directory "
                        "the right one?)",
                        name=info.name, backend_id=info.id,
                    )
                conn.execute("DELETE FROM backends WHERE id=?", (row[0],))
            updated = conn.execute(  # a draining backend that restarts stays draining: the admin lifts it
                "UPDATE backends SET name=?, host=?, port=? WHERE id=?",
                (info.name, info.host, info.port, info.id.bytes),
            ).rowcount
            if not updated:
                conn.execute(
                    "INSERT INTO backends (id, name, host, port, draining) VALUES (?, ?, ?, ?, 0)",
                    (info.id.bytes, info.name, info.host, info.port),
                )

    def backends(self) -> list[BackendInfo]:
        rows = self.db.query("SELECT id, name, host, port, draining FROM backends ORDER BY seq")
        return [BackendInfo(UUID(bytes=r[0]), r[1], r[2], r[3], bool(r[4])) for r in rows]

    def set_draining(self, backend_id: UUID, draining: bool) -> None:
        with self.db.transaction() as conn:
            if not conn.execute("UPDATE backends SET draining=? WHERE id=?", (int(draining), backend_id.bytes)).rowcount:
                raise BackendNotFoundError(f"no backend {backend_id} is registered", backend_id=backend_id)

    def deregister_backend(self, backend_id: UUID) -> None:
        """The end of a backend's lifecycle (active -> draining -> retired): a drained backend
        that owns nothing leaves the list of backends for good, and its id is never registered
        again (a pod that comes back with it cannot revive it). Deregistering a retired backend
        again changes nothing."""
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM retired_backends WHERE id=?", (backend_id.bytes,)).fetchone():
                return
            row = conn.execute("SELECT name, draining FROM backends WHERE id=?", (backend_id.bytes,)).fetchone()
            if row is None:
                raise BackendNotFoundError(f"no backend {backend_id} is registered", backend_id=backend_id)
            name, draining = row
            owned = conn.execute("SELECT count(*) FROM objects WHERE backend_id=? AND NOT retired",
                                 (backend_id.bytes,)).fetchone()[0]
            if not draining or owned:
                why = f"still owns {owned} object(s)" if owned else "is not being drained"
                raise BackendNotDrainedError(
                    f"backend {name} ({backend_id}) {why}: drain it first (dataclay drain {name}), then deregister it",
                    name=name, backend_id=backend_id)
            conn.execute("DELETE FROM replicas WHERE backend_id=?", (backend_id.bytes,))  # never a last copy
            conn.execute("DELETE FROM backends WHERE id=?", (backend_id.bytes,))
            conn.execute("INSERT INTO retired_backends VALUES (?, ?)", (backend_id.bytes, name))

    @staticmethod
    def _caller_id(conn: sqlite3.Connection, caller: str | None, what: str) -> bytes | None:
        """The id under which the calling backend is registered (None without authentication)."""
        if caller is None:
            return None
        row = conn.execute("SELECT id FROM backends WHERE name=?", (caller,)).fetchone()
        if row is None:
            raise Refusal(what, "it is not registered")
        return row[0]

    @staticmethod
    def _require_owned(conn: sqlite3.Connection, caller_id: bytes | None, object_ids: list[UUID], what: str,
                       versions_only: bool = False) -> None:
        """Every registered object of `object_ids` is the caller's (and a version)."""
        if caller_id is None:
            return
        for object_id in object_ids:
            row = conn.execute("SELECT backend_id, version_original FROM objects WHERE id=?",
                               (object_id.bytes,)).fetchone()
            if row is None:
                continue
            if row[0] != caller_id:
                raise Refusal(what, f"object {object_id} is not its own")
            if versions_only and not row[1]:
                raise Refusal(what, f"object {object_id} is not a version")

    @staticmethod
    def _require_not_draining(conn: sqlite3.Connection, backend_id: UUID) -> None:
        row = conn.execute("SELECT name, draining FROM backends WHERE id=?", (backend_id.bytes,)).fetchone()
        if row is None:
            raise BackendNotFoundError(f"no backend {backend_id} is registered", backend_id=backend_id)
        if row[1]:
            raise BackendDrainingError(
                f"backend {row[0]} ({backend_id}) is being drained and takes no new objects; use another backend",
                backend_id=backend_id,
            )

    # ------------------------------------------------------------------ objects
    def register_objects(self, entries: list[ObjectEntry], alias: str = "", caller: str | None = None) -> None:
        """Add new objects (and optionally an alias of the first) in one transaction, before
        their backend stores them; a calling backend registers only objects it owns."""
        self._check_entries(entries, alias)
        if not entries:
            return
        with self.db.transaction() as conn:
            self._require_own(conn, entries, caller)
            for backend_id in {entry.backend_id for entry in entries}:
                try:
                    self._require_not_draining(conn, backend_id)
                except BackendDrainingError:
                    if self._registered_already(conn, entries, alias):
                        return  # a replay of a registration that committed before the drain began
                    raise
            try:
                conn.executemany("INSERT INTO objects VALUES (?, ?, ?, ?, ?, 0)", [_row(e) for e in entries])
            except sqlite3.IntegrityError:
                if self._registered_already(conn, entries, alias):
                    return  # a replay of a registration that committed (its reply was lost)
                raise AlreadyExistError("one of the objects is already registered") from None
            if alias:
                self._insert_alias(conn, alias, entries[0].object_id)

    def register_stored(self, entries: list[ObjectEntry], caller: str | None = None) -> list[UUID]:
        """Objects their backend stores already (it registers after acknowledging the store:
        registrations.py), each on its own, also while it is draining (the drain lists them
        next): one registered alike is skipped (a replay after a lost reply); returns the ids
        the directory has for another object (another owner or class), which are not taken.
        An entry marked retired (a version its backend consolidated or discarded) retires the
        version listed live for that backend (taking the entry's lineage if a restore's adoption
        lost it), or registers it retired if its live entry never came."""
        self._check_entries(entries, "")
        for entry in entries:
            if entry.retired not in (0, DISCARDED, CONSOLIDATED):
                raise InvalidRequestError(f"object {entry.object_id}: unknown retired state {entry.retired}")
            if entry.retired and entry.version_original is None:
                raise InvalidRequestError(f"object {entry.object_id} is not a version: only versions are retired")
        if not entries:
            return []
        with self.db.transaction() as conn:
            self._require_own(conn, entries, caller)
            known = {}
            for start in range(0, len(entries), 500):  # SQLite's bound on parameters
                keys = [e.object_id.bytes for e in entries[start:start + 500]]
                known.update((row[0], row[1:]) for row in conn.execute(
                    "SELECT id, class_path, backend_id, retired, version_original FROM objects "
                    f"WHERE id IN ({','.join('?' * len(keys))})", keys))
            refused = [e.object_id for e in entries
                       if e.object_id.bytes in known and known[e.object_id.bytes][:2] != (e.class_path, e.backend_id.bytes)]
            conn.executemany("INSERT INTO objects VALUES (?, ?, ?, ?, ?, ?)",
                             [(*_row(e), e.retired) for e in entries if e.object_id.bytes not in known])
            taken = set(refused)
            retiring = [e for e in entries  # versions listed live, now retired by their owner
                        if e.retired and e.object_id not in taken and (row := known.get(e.object_id.bytes)) and not row[2]]
            conn.executemany(  # adopted after a restore, which kept no lineage: their owner's
                "UPDATE objects SET version_parent=?, version_original=? WHERE id=? AND version_original IS NULL",
                [(*_row(e)[3:], e.object_id.bytes) for e in retiring])
            self._retire(conn, [(e.retired, e.object_id.bytes) for e in retiring])
        return refused

    @staticmethod
    def _check_entries(entries: list[ObjectEntry], alias: str) -> None:
        check_ids(len(entries))
        for entry in entries:
            check_class_path(entry.class_path)
        if alias:
            check_alias(alias)

    def _require_own(self, conn: sqlite3.Connection, entries: list[ObjectEntry], caller: str | None) -> None:
        caller_id = self._caller_id(conn, caller, "register objects")
        if caller_id is not None and {entry.backend_id for entry in entries} != {UUID(bytes=caller_id)}:
            raise Refusal("register objects", "a backend registers only objects it owns")

    @staticmethod
    def _registered_already(conn: sqlite3.Connection, entries: list[ObjectEntry], alias: str) -> bool:
        """Whether this exact registration committed before: every entry is there with the same
        class and owner, and the alias (if any) names the first."""
        for e in entries:
            row = conn.execute("SELECT class_path, backend_id FROM objects WHERE id=?", (e.object_id.bytes,)).fetchone()
            if row is None or (row[0], row[1]) != (e.class_path, e.backend_id.bytes):
                return False
        if alias:
            row = conn.execute("SELECT object_id FROM aliases WHERE alias=?", (alias,)).fetchone()
            return row is not None and row[0] == entries[0].object_id.bytes
        return True

    def locate(self, object_id: UUID) -> ObjectEntry:
        rows = self.db.query(  # one query: the replicas (usually none) as comma-separated hex ids
            "SELECT class_path, backend_id, version_parent, version_original, retired, "
            "(SELECT group_concat(hex(backend_id)) FROM replicas WHERE object_id=objects.id) FROM objects WHERE id=?",
            (object_id.bytes,),
        )
        if not rows:
            raise ObjectNotRegisteredError(f"Object {object_id} is not registered!", object_id=object_id)
        class_path, backend, parent, original, retired, replicas_hex = rows[0]
        if retired:
            raise retired_error(object_id, UUID(bytes=original), retired == CONSOLIDATED)
        replicas = tuple(sorted(UUID(hex=h) for h in replicas_hex.split(","))) if replicas_hex else ()
        return ObjectEntry(object_id, class_path, UUID(bytes=backend),
                           UUID(bytes=parent) if parent else None, UUID(bytes=original) if original else None,
                           replicas)

    def owned_by(self, backend_id: UUID, caller: str | None = None) -> list[UUID]:
        """The live objects of a backend, all at once (owned_page for the wire)."""
        return self.owned_page(backend_id, caller=caller)[0]

    def owned_page(self, backend_id: UUID, after: bytes = b"", limit: int | None = None,
                   caller: str | None = None) -> tuple[list[UUID], bool]:
        """Up to `limit` live objects of a backend with ids above `after`, in id order, and
        whether more follow. A calling backend lists only its own."""
        what = f"list the objects of backend {backend_id}"
        with self.db.transaction() as conn:
            caller_id = self._caller_id(conn, caller, what)
            if caller_id is not None and caller_id != backend_id.bytes:
                raise Refusal(what, "a backend lists only its own")
            rows = conn.execute(
                "SELECT id FROM objects WHERE id>? AND backend_id=? AND NOT retired ORDER BY id LIMIT ?",
                (after, backend_id.bytes, -1 if limit is None else limit + 1),
            ).fetchall()
        more = limit is not None and len(rows) > limit
        return [UUID(bytes=r[0]) for r in rows[:limit]], more

    def commit_move(self, object_keys: list[bytes], source: UUID, destination: UUID, move_id: UUID | None = None,
                    caller: str | None = None) -> None:
        """The commit point of a move: every object (by its id's 16 bytes) goes from source to
        destination, or none does (if any is not owned by source any more, e.g. a concurrent
        move took it). With a move id the outcome is recorded like a transaction's: a move
        already resolved as not committed (resolve_transaction) is refused. A calling backend
        commits only moves it is the source of."""
        check_ids(len(object_keys))
        with self.db.transaction() as conn:
            caller_id = self._caller_id(conn, caller, f"commit a move from backend {source}")
            if caller_id is not None and caller_id != source.bytes:
                raise Refusal(f"commit a move from backend {source}",
                              "a backend commits only moves it is the source of")
            if move_id is not None:
                row = conn.execute("SELECT committed FROM transactions WHERE id=?", (move_id.bytes,)).fetchone()
                if row is not None:
                    if row[0]:
                        return  # committed already: this is a retry after a lost reply
                    raise ObjectMovingError(
                        f"move {move_id} was resolved as not committed (its source gave up waiting); nothing moved",
                        backend_id=source)
                conn.execute("INSERT INTO transactions VALUES (?, 1, ?)", (move_id.bytes, json.dumps({})))
            self._require_not_draining(conn, destination)
            moved = 0
            for start in range(0, len(object_keys), 500):
                batch = object_keys[start:start + 500]
                moved += conn.execute(
                    f"UPDATE objects SET backend_id=? WHERE backend_id=? AND id IN ({','.join('?' * len(batch))})",
                    (destination.bytes, source.bytes, *batch),
                ).rowcount
            if moved == 0 and object_keys and all(
                self.locate_in(conn, UUID(bytes=key)) == destination for key in object_keys
            ):
                return  # committed already: this is a retry after a lost reply
            if moved != len(object_keys):
                raise ObjectMovingError(
                    f"{len(object_keys) - moved} of {len(object_keys)} objects are no longer owned by backend "
                    f"{source}; nothing was moved",
                    backend_id=source,
                )
            if conn.execute("SELECT 1 FROM replicas LIMIT 1").fetchone():  # a replica on the destination is
                for start in range(0, len(object_keys), 500):           # its copy now, not a replica
                    batch = object_keys[start:start + 500]
                    conn.execute(f"DELETE FROM replicas WHERE backend_id=? AND object_id IN ({','.join('?' * len(batch))})",
                                 (destination.bytes, *batch))

    # ------------------------------------------------------------------ transactions
    def commit_transaction(self, txn_id: UUID, retire: list[UUID], apply: dict[str, int],
                           caller: str | None = None, discarded: bool = False) -> None:
        """The commit point of a consolidation (or the retirement of discarded versions); fails
        if a participant already aborted it. A calling backend retires only versions it owns. A
        consolidated version forwards to its original from now on (locate), a discarded one does not."""
        check_ids(len(retire))
        with self.db.transaction() as conn:
            self._require_owned(conn, self._caller_id(conn, caller, "retire versions"), retire, "retire objects",
                                versions_only=True)
            row = conn.execute("SELECT committed FROM transactions WHERE id=?", (txn_id.bytes,)).fetchone()
            if row is not None and not row[0]:
                raise VersionConflictError(f"transaction {txn_id} was aborted (a participant timed out); nothing changed")
            conn.execute("INSERT OR REPLACE INTO transactions VALUES (?, 1, ?)", (txn_id.bytes, json.dumps(apply)))
            how = DISCARDED if discarded else CONSOLIDATED
            self._retire(conn, [(how, object_id.bytes) for object_id in retire])

    @staticmethod
    def _retire(conn: sqlite3.Connection, rows: list[tuple[int, bytes]]) -> None:
        """Versions (how, id) retired: listed so from now on, without their aliases."""
        conn.executemany("UPDATE objects SET retired=? WHERE id=?", rows)
        conn.executemany("DELETE FROM aliases WHERE object_id=?", [(key,) for _, key in rows])

    def resolve_transaction(self, txn_id: UUID) -> dict[str, int] | None:
        """What to apply if committed, None if aborted. An undecided transaction is aborted
        here and now (presumed abort), so a late commit of it fails."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT committed, apply FROM transactions WHERE id=?", (txn_id.bytes,)).fetchone()
            if row is None:
                conn.execute("INSERT INTO transactions VALUES (?, 0, NULL)", (txn_id.bytes,))
                return None
            return json.loads(row[1]) if row[0] else None

    @staticmethod
    def locate_in(conn: sqlite3.Connection, object_id: UUID) -> UUID | None:
        row = conn.execute("SELECT backend_id FROM objects WHERE id=?", (object_id.bytes,)).fetchone()
        return UUID(bytes=row[0]) if row else None

    def drop_objects(self, object_ids: list[UUID], caller: str | None = None) -> None:
        """Forget objects and their aliases; a calling backend drops only objects it owns."""
        check_ids(len(object_ids))
        with self.db.transaction() as conn:
            self._require_owned(conn, self._caller_id(conn, caller, "drop objects"), object_ids, "drop objects")
            for object_id in object_ids:
                conn.execute("DELETE FROM aliases WHERE object_id=?", (object_id.bytes,))
                conn.execute("DELETE FROM replicas WHERE object_id=?", (object_id.bytes,))
                conn.execute("DELETE FROM objects WHERE id=?", (object_id.bytes,))

    # ------------------------------------------------------------------ replicas
    def add_replicas(self, object_ids: list[UUID], holder: UUID, caller: str | None = None) -> None:
        """Record replicas on `holder`. A calling backend records them only for objects it owns
        (their master keeps them in sync); never on an object's owner (InvalidRequestError) nor
        on a draining or unknown backend."""
        check_ids(len(object_ids))
        with self.db.transaction() as conn:
            caller_id = self._caller_id(conn, caller, "record replicas")
            self._require_not_draining(conn, holder)
            for object_id in object_ids:
                row = conn.execute("SELECT backend_id, retired FROM objects WHERE id=?", (object_id.bytes,)).fetchone()
                if row is None or row[1]:
                    raise ObjectNotRegisteredError(f"Object {object_id} is not registered!", object_id=object_id)
                if caller_id is not None and row[0] != caller_id:
                    raise Refusal("record replicas", f"object {object_id} is not its own")
                if row[0] == holder.bytes:
                    raise InvalidRequestError(f"backend {holder} owns object {object_id}: it holds no replica of it",
                                              object_id=object_id, backend_id=holder)
            conn.executemany("INSERT OR IGNORE INTO replicas VALUES (?, ?)",
                             [(object_id.bytes, holder.bytes) for object_id in object_ids])

    def drop_replicas(self, object_ids: list[UUID], holder: UUID, caller: str | None = None) -> None:
        """Forget replicas on `holder` (an empty list: every replica it holds). A calling backend
        drops only replicas of objects it owns; the admin (caller None) any."""
        check_ids(len(object_ids))
        with self.db.transaction() as conn:
            caller_id = self._caller_id(conn, caller, "drop replicas")
            if caller_id is not None:
                if not object_ids:
                    raise Refusal("drop replicas", "a backend names the objects it owns")
                self._require_owned(conn, caller_id, object_ids, "drop replicas")
            if not object_ids:
                conn.execute("DELETE FROM replicas WHERE backend_id=?", (holder.bytes,))
                return
            conn.executemany("DELETE FROM replicas WHERE object_id=? AND backend_id=?",
                             [(object_id.bytes, holder.bytes) for object_id in object_ids])

    def list_replicas(self, holder: UUID | None = None, master: UUID | None = None,
                      caller: str | None = None) -> list[ReplicaEntry]:
        """Replicas held by `holder` and/or of objects `master` owns; a calling backend lists
        only those it holds or masters."""
        with self.db.transaction() as conn:
            caller_id = self._caller_id(conn, caller, "list replicas")
            if caller_id is not None and caller_id not in {getattr(holder, "bytes", None), getattr(master, "bytes", None)}:
                raise Refusal("list replicas", "a backend lists only the replicas it holds or masters")
            sql = "SELECT r.object_id, r.backend_id, o.backend_id FROM replicas r JOIN objects o ON o.id = r.object_id"
            where, args = [], []
            if holder is not None:
                where.append("r.backend_id=?")
                args.append(holder.bytes)
            if master is not None:
                where.append("o.backend_id=?")
                args.append(master.bytes)
            rows = conn.execute(sql + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY r.object_id",
                                args).fetchall()
        return [ReplicaEntry(UUID(bytes=a), UUID(bytes=b), UUID(bytes=c)) for a, b, c in rows]

    # ------------------------------------------------------------------ aliases
    @staticmethod
    def _insert_alias(conn: sqlite3.Connection, alias: str, object_id: UUID) -> None:
        check_alias(alias)
        try:
            conn.execute("INSERT INTO aliases VALUES (?, ?)", (alias, object_id.bytes))
        except sqlite3.IntegrityError:
            raise AliasAlreadyExistError(f"Alias {alias} already exists", alias=alias) from None

    def add_alias(self, alias: str, object_id: UUID) -> None:
        check_alias(alias)
        with self.db.transaction() as conn:
            if not conn.execute("SELECT 1 FROM objects WHERE id=?", (object_id.bytes,)).fetchone():
                raise ObjectNotRegisteredError(f"Object {object_id} is not registered!", object_id=object_id)
            self._insert_alias(conn, alias, object_id)

    def lookup_alias(self, alias: str) -> ObjectEntry:
        check_alias(alias)
        rows = self.db.query("SELECT object_id FROM aliases WHERE alias=?", (alias,))
        if not rows:
            raise AliasDoesNotExistError(f"Alias {alias} does not exist", alias=alias)
        return self.locate(UUID(bytes=rows[0][0]))

    def delete_alias(self, alias: str) -> None:
        check_alias(alias)
        with self.db.transaction() as conn:
            if not conn.execute("DELETE FROM aliases WHERE alias=?", (alias,)).rowcount:
                raise AliasDoesNotExistError(f"Alias {alias} does not exist", alias=alias)

    def aliases_of(self, object_id: UUID) -> list[str]:
        return [r[0] for r in self.db.query("SELECT alias FROM aliases WHERE object_id=? ORDER BY alias", (object_id.bytes,))]
