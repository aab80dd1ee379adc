"""The restored epoch: after the metadata database was restored from a backup, the directory is
reconciled with what the backends actually hold, and nothing any backend holds is lost.

Why: the backup is older than the backends' stores. Objects created after it are not listed;
objects moved after it are listed under their old owner, which no longer stores them. A
backend's ordinary recovery (recovery.py) trusts the directory: it would delete the first and
drop the second from the directory (and then their new owner would delete them too).

So while the epoch lasts, a backend that registers is told so (BackendList.restored) and, instead
of its ordinary recovery, reports what it holds (ReconcileObjects) and deletes nothing. The rule,
for each live object a backend B reports (in one transaction per part):

- not listed: it was created after the backup -> listed under B ("adopted", no version lineage);
- listed under B: confirmed (B holds it);
- listed under A != B, and its holder is not confirmed yet (A did not report it, or has not
  reported yet): it moved to B after the backup -> listed under B ("reassigned"), confirmed;
- listed under A != B and confirmed held by A, or a retired version: B's copy is a leftover (a
  move's source that crashed between the commit and dropping its rows: the first holder to
  report keeps the object) -> refused: B does not serve it, and keeps the rows until its first
  start after the epoch, which drops them as every start drops rows it is not given.

B also reports what the directory lists under it that it does not store; those entries stay
(their aliases with them) until some backend claims them or the epoch ends. The epoch ends when
every registered backend has reconciled: entries nobody claimed are then held by no backend and
are dropped, as ordinary recovery would, and backends start ordinarily again.

Limits, which the README repeats: aliases, version lineage and consolidations made after the
backup are not in it; a move that committed after the backup and that its destination had not
activated yet is not known to have committed (its source dropped the objects; the destination
keeps them staged, not served); every backend must start again after a restore (one that kept
running has not reported what it holds: require_reconciled refuses its changes until it does).
"""
from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from uuid import UUID

from dataclay.exceptions import BackendNotFoundError, ClusterMismatchError
from dataclay_backend.sqlite_db import Database

log = logging.getLogger("dataclay.restore")

SCHEMA = """
CREATE TABLE IF NOT EXISTS restore_reconciled (backend_id BLOB PRIMARY KEY);  -- reported everything
CREATE TABLE IF NOT EXISTS restore_held (id BLOB PRIMARY KEY);    -- confirmed held by the backend it is listed under
CREATE TABLE IF NOT EXISTS restore_unheld (id BLOB PRIMARY KEY)   -- reported not held by the backend it is listed under
"""


def begin_epoch(conn: sqlite3.Connection, source: str) -> None:
    """Open a new restored epoch in a database just restored (a backup taken during an epoch
    carries that epoch's tables: they start over)."""
    for statement in filter(str.strip, SCHEMA.split(";")):
        conn.execute(statement)
    for table in ("restore_reconciled", "restore_held", "restore_unheld"):
        conn.execute(f"DELETE FROM {table}")
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('restore_epoch', ?)",
                 (json.dumps({"backup": source, "restored_at": time.time()}),))


@dataclass(frozen=True)
class Reconciled:
    refused: list[UUID]
    adopted: int
    reassigned: int
    ended: bool


class Refused(Exception):
    """A backend reconciling under another backend's id (the servicer makes it a PermissionDeniedError)."""


class RestoreEpoch:
    """The epoch's state lives in the metadata database (tables restore_*, meta.restore_epoch),
    so it survives restarts of the metadata service."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure_schema(SCHEMA)
        # only a restore (before this process opened the database) begins an epoch, and only
        # reconcile() here ends it: a flag in memory spares every call outside an epoch a query
        self._active = bool(self.db.query("SELECT 1 FROM meta WHERE key='restore_epoch'"))

    def active(self) -> bool:
        return self._active

    def require_reconciled(self, backend_ids: set[UUID]) -> None:
        """During the epoch, a backend that has not reported what it holds since the restore
        kept running through it: it must start again (ClusterMismatchError) before it changes
        the directory, or what it holds could be given to another backend while it serves it."""
        if not self._active:
            return
        for backend_id in backend_ids:
            if not self.db.query("SELECT 1 FROM restore_reconciled WHERE backend_id=?", (backend_id.bytes,)):
                raise ClusterMismatchError(
                    f"the metadata database was restored from a backup since backend {backend_id} started: restart "
                    "that backend (it then reports what it holds); nothing was changed", backend_id=backend_id)

    def reconcile(self, backend_id: UUID, held: list[tuple[UUID, str]], not_held: list[UUID], done: bool,
                  caller: str | None = None) -> Reconciled:
        """One part of backend_id's report (the rule is the module docstring). `caller`: the
        calling backend's authenticated name (None without authentication), checked in the
        transaction as the directory checks its internal calls."""
        key = backend_id.bytes
        refused: list[UUID] = []
        adopted = reassigned = 0
        with self.db.transaction() as conn:
            if not conn.execute("SELECT 1 FROM backends WHERE id=?", (key,)).fetchone():
                raise BackendNotFoundError(f"no backend {backend_id} is registered: register first", backend_id=backend_id)
            if caller is not None and conn.execute("SELECT id FROM backends WHERE name=?", (caller,)).fetchone() != (key,):
                raise Refused("a backend reports only what it holds itself")
            if not self._active:
                return Reconciled([], 0, 0, True)  # over (or never begun): nothing to reconcile
            for object_id, class_path in held:
                oid = object_id.bytes
                row = conn.execute("SELECT backend_id, retired FROM objects WHERE id=?", (oid,)).fetchone()
                if row is None:
                    conn.execute("INSERT INTO objects VALUES (?, ?, ?, NULL, NULL, 0)", (oid, class_path, key))
                    adopted += 1
                elif row[1] or (row[0] != key and conn.execute("SELECT 1 FROM restore_held WHERE id=?", (oid,)).fetchone()):
                    refused.append(object_id)
                    continue
                elif row[0] != key:
                    conn.execute("UPDATE objects SET backend_id=? WHERE id=?", (key, oid))
                    reassigned += 1
                conn.execute("INSERT OR IGNORE INTO restore_held VALUES (?)", (oid,))
                conn.execute("DELETE FROM restore_unheld WHERE id=?", (oid,))
            for object_id in not_held:
                conn.execute("INSERT OR IGNORE INTO restore_unheld SELECT id FROM objects WHERE id=? AND backend_id=? "
                             "AND NOT retired AND id NOT IN (SELECT id FROM restore_held)", (object_id.bytes, key))
            ended = False
            if done:
                conn.execute("INSERT OR IGNORE INTO restore_reconciled VALUES (?)", (key,))
                ended = self._end_if_complete(conn)
        if ended:
            self._active = False
        return Reconciled(refused, adopted, reassigned, ended)

    @staticmethod
    def _end_if_complete(conn: sqlite3.Connection) -> bool:
        """Every registered backend has reconciled: what nobody claimed is held nowhere."""
        waiting = conn.execute("SELECT count(*) FROM backends WHERE id NOT IN "
                               "(SELECT backend_id FROM restore_reconciled)").fetchone()[0]
        if waiting:
            return False
        # (a version its backend retired since it reported is no longer held, nor to drop: its
        # entry forwards to its original now)
        conn.execute("DELETE FROM restore_unheld WHERE id IN (SELECT id FROM objects WHERE retired)")
        gone = conn.execute("SELECT count(*) FROM restore_unheld").fetchone()[0]
        conn.execute("DELETE FROM aliases WHERE object_id IN (SELECT id FROM restore_unheld)")
        conn.execute("DELETE FROM objects WHERE id IN (SELECT id FROM restore_unheld)")
        for table in ("restore_reconciled", "restore_held", "restore_unheld"):
            conn.execute(f"DELETE FROM {table}")
        conn.execute("DELETE FROM meta WHERE key='restore_epoch'")
        log.warning("restore complete: every backend has reconciled; %d entries no backend holds were dropped", gone)
        return True
