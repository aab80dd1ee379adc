"""A backend's durable object states, in SQLite under its data directory.

Each object is one row (class, revision, state). States larger than CHUNK bytes are split over
rows of `chunks`, because SQLite caps one value at about 1 GB and a 1 GiB attribute must work.
The backend's identity (backend id, and the cluster it belongs to) is kept here too.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from uuid import UUID

from dataclay_backend.sqlite_db import Database

CHUNK = 64 * 1024 * 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    id BLOB PRIMARY KEY,
    class_path TEXT NOT NULL,
    revision INTEGER NOT NULL,
    size INTEGER NOT NULL,
    state BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (id, seq)
);
"""


@dataclass(frozen=True)
class StoredObject:
    object_id: UUID
    class_path: str
    revision: int
    state: bytes


class ObjectStore:
    def __init__(self, data_dir: Path, durability: str = "process") -> None:
        self.db = Database(data_dir / "objects.sqlite", durability)
        self.db.ensure_schema(SCHEMA)

    def close(self) -> None:
        self.db.close()

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
        return UUID(bytes=stored)

    # ------------------------------------------------------------------ objects
    def write(self, objects: Iterable[StoredObject]) -> None:
        """Insert or replace states, all in one transaction."""
        with self.db.transaction() as conn:
            for obj in objects:
                key = obj.object_id.bytes
                state = obj.state
                conn.execute("DELETE FROM chunks WHERE id=?", (key,))
                conn.execute(
                    "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)",
                    (key, obj.class_path, obj.revision, len(state), state[:CHUNK]),
                )
                for seq, start in enumerate(range(CHUNK, len(state), CHUNK), start=1):
                    conn.execute("INSERT INTO chunks VALUES (?, ?, ?)", (key, seq, state[start : start + CHUNK]))

    def load(self, object_id: UUID) -> StoredObject | None:
        rows = self.db.query("SELECT class_path, revision, size, state FROM objects WHERE id=?", (object_id.bytes,))
        if not rows:
            return None
        class_path, revision, size, state = rows[0]
        if size > len(state):
            parts = self.db.query("SELECT data FROM chunks WHERE id=? ORDER BY seq", (object_id.bytes,))
            state = b"".join([state, *(part[0] for part in parts)])
        return StoredObject(object_id, class_path, revision, state)

    def delete(self, object_ids: Iterable[UUID]) -> None:
        with self.db.transaction() as conn:
            for object_id in object_ids:
                conn.execute("DELETE FROM objects WHERE id=?", (object_id.bytes,))
                conn.execute("DELETE FROM chunks WHERE id=?", (object_id.bytes,))

    def classes(self) -> dict[UUID, str]:
        """Every stored object id with its class path."""
        return {UUID(bytes=r[0]): r[1] for r in self.db.query("SELECT id, class_path FROM objects")}
