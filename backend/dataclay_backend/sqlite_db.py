"""SQLite, opened the one way every server here uses it.

WAL mode: a committed transaction has reached the operating system before commit() returns, so
it survives `kill -9` of the process. With durability "machine" each commit is also fsynced
(synchronous=FULL), so it survives a power cut or kernel crash, at the price of one fsync per
commit.

A full disk (SQLITE_FULL) is a StorageFullError naming the server (`server`, `fields`); the
transaction is rolled back, so nothing of it is stored and the next one works once there is
space again.
"""
from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Iterator

from dataclay.exceptions import StorageFullError

DURABILITY_LEVELS = {"process": "NORMAL", "machine": "FULL"}
SQLITE_FULL = 13


def storage_full(server: str, fields: dict[str, object], what: str) -> StorageFullError:
    return StorageFullError(
        f"the disk of {server} is full ({what}): nothing of this change was stored; free space in its data "
        "directory (or give it a larger volume), then try again", **fields)


class Database:
    """One connection shared by the server's threads; writes are serialized by a lock."""

    def __init__(self, path: Path, durability: str = "process", server: str | None = None) -> None:
        # who a StorageFullError names (ObjectStore sets it to its backend once it knows its id)
        self.server = server or ("the metadata service" if path.stem == "metadata" else f"the server of {path.name}")
        self.fields: dict[str, object] = {}
        if durability not in DURABILITY_LEVELS:
            raise ValueError(f"durability must be one of {sorted(DURABILITY_LEVELS)}, not {durability!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={DURABILITY_LEVELS[durability]}")
        self.conn.execute("PRAGMA busy_timeout=10000")
        # 64 MiB of pages (the default is 2 MiB): moves and drains touch 100,000s of rows at random
        self.conn.execute("PRAGMA cache_size=-65536")
        self.lock = threading.RLock()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        with self.lock, self._full_is_typed():
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:  # SQLITE_FULL may already have rolled it back
                    with contextlib.suppress(sqlite3.Error):  # the first error is the one to report
                        self.conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _full_is_typed(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) != SQLITE_FULL:
                raise
            raise storage_full(self.server, self.fields, "SQLite: database or disk is full") from None

    def ensure_schema(self, schema: str) -> None:
        """Create the tables and indexes of `schema` (statements separated by ';', so no ';'
        inside its comments)."""
        with self.transaction() as conn:
            for statement in filter(str.strip, schema.split(";")):
                conn.execute(statement)

    def execute(self, sql: str, params: tuple = ()) -> None:
        """One statement as its own transaction (the connection is in autocommit mode)."""
        with self.lock, self._full_is_typed():
            self.conn.execute(sql, params)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self.lock:
            self.conn.close()
