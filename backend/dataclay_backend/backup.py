"""Backups of the metadata database, and starting from one.

A backup is one self-contained SQLite file, `metadata-<UTC time>.sqlite`, in a backup directory.
It is taken online with SQLite's backup API over a connection of its own, in one step: one read
transaction, so the copy is the database as of one commit, while the metadata service keeps
serving (in WAL mode writers do not wait for readers). It is written as a hidden temporary file,
checked (`PRAGMA quick_check`), fsynced, then renamed into place and the directory fsynced: a
crash leaves either no new backup or a complete one, never a partial file under a backup's name.
The oldest beyond `keep` are removed after each new one.

A restore copies a backup into the data directory the same way (temporary file, fsync, rename)
and opens the restored epoch (restore_epoch.py): the directory is then reconciled with what the
backends hold. It refuses to replace a database that is not empty unless told to, and a restart
after a restore (the same backup named again, as a pod's arguments are) keeps what the service
has done since instead of restoring again.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from dataclay.exceptions import BackupError, RestoreError
from dataclay_backend.restore_epoch import begin_epoch

log = logging.getLogger("dataclay.backup")

PREFIX, SUFFIX = "metadata-", ".sqlite"
_NAME = re.compile(r"^metadata-\d{8}T\d{6}\.\d{6}Z\.sqlite$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str) -> float:
    """'90', '90s', '30m', '6h', '1d' -> seconds; '0' means no schedule (only on demand)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not match:
        raise ValueError(f"not an interval: {text!r} (use e.g. 3600, 90s, 30m, 6h, 1d; 0 for none)")
    return float(match[1]) * _UNITS[match[2] or "s"]


@dataclass(frozen=True)
class BackupReport:
    """What a backup holds and where it is (path None: no backup yet)."""

    path: Path | None
    time: float = 0.0
    size: int = 0
    backends: int = 0
    objects: int = 0
    aliases: int = 0
    error: str = ""  # the last scheduled backup's failure, if it failed


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _name(when: float) -> str:
    return PREFIX + time.strftime("%Y%m%dT%H%M%S", time.gmtime(when)) + f".{int(when % 1 * 1e6):06d}Z" + SUFFIX


def _counts(conn: sqlite3.Connection) -> tuple[int, int, int]:
    return tuple(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[return-value]
                 for table in ("backends", "objects", "aliases"))


def backups(backup_dir: Path) -> list[Path]:
    """The backups in a directory, oldest first (their names sort by time)."""
    if not backup_dir.is_dir():
        return []
    return sorted(path for path in backup_dir.iterdir() if _NAME.match(path.name))


def take_backup(database: Path, backup_dir: Path, keep: int) -> BackupReport:
    """A new backup of `database` (the live metadata database) in `backup_dir`; keeps the newest
    `keep`. Callers serialise calls (BackupScheduler does)."""
    try:
        return _take(database, backup_dir, keep)
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(f"the backup of the metadata database into {backup_dir} failed: {exc}; the database "
                          "is unchanged (check the backup volume: space, permissions)") from None


def _take(database: Path, backup_dir: Path, keep: int) -> BackupReport:
    backup_dir.mkdir(parents=True, exist_ok=True)
    for leftover in backup_dir.glob(f".{PREFIX}*.tmp"):  # of a backup that crashed: never a backup
        leftover.unlink(missing_ok=True)
    when = time.time()
    final = backup_dir / _name(when)
    temporary = backup_dir / f".{final.name}.tmp"
    source = sqlite3.connect(database)
    try:
        target = sqlite3.connect(temporary)
        try:
            source.backup(target)  # pages=-1: one step, one read transaction: one consistent snapshot
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            with target:
                target.execute("INSERT OR REPLACE INTO meta VALUES ('backup_id', ?)", (uuid.uuid4().bytes,))
                target.execute("INSERT OR REPLACE INTO meta VALUES ('backup_time', ?)", (repr(when),))
            check = target.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"the copy does not pass quick_check: {check}")
            counts = _counts(target)
        finally:
            target.close()
        _fsync_path(temporary)
        os.replace(temporary, final)
        _fsync_path(backup_dir, directory=True)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    for old in backups(backup_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return BackupReport(final, when, final.stat().st_size, *counts)


def describe(path: Path) -> BackupReport:
    """What a backup file holds (read only: the file is not changed)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='backup_time'").fetchone()
        return BackupReport(path, float(row[0]) if row else path.stat().st_mtime, path.stat().st_size, *_counts(conn))
    finally:
        conn.close()


class BackupScheduler:
    """Backups every `interval` seconds (0: none) and on demand, one at a time; remembers the
    last scheduled failure for LastBackup (and the operator's status)."""

    def __init__(self, database: Path, backup_dir: Path | None, keep: int, interval: float) -> None:
        self.database, self.backup_dir, self.keep, self.interval = database, backup_dir, keep, interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._error = ""
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.backup_dir is not None and self.interval > 0:
            self._thread = threading.Thread(target=self._run, name="metadata-backups", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                report = self.take()
                log.info("scheduled backup %s: %d bytes, %d backends, %d objects, %d aliases",
                         report.path, report.size, report.backends, report.objects, report.aliases)
            except BackupError as exc:
                log.error("%s", exc)

    def take(self) -> BackupReport:
        if self.backup_dir is None:
            raise BackupError("this metadata service has no backup directory: start it with --backup-dir "
                              "(DC_METADATA_BACKUP_DIR), or set spec.metadata.backup on the DataClay")
        with self._lock:
            try:
                report = take_backup(self.database, self.backup_dir, self.keep)
            except BackupError as exc:
                self._error = exc.message
                raise
            self._error = ""
            return report

    def last(self) -> BackupReport:
        """The newest backup in the directory (also one taken before a restart), with the last
        scheduled failure. Waits for a backup being taken (whose retention may remove the newest)."""
        with self._lock:
            found = backups(self.backup_dir) if self.backup_dir is not None else []
            report = describe(found[-1]) if found else BackupReport(None)
        return BackupReport(report.path, report.time, report.size, report.backends, report.objects,
                            report.aliases, self._error)


# ------------------------------------------------------------------ restore
def _meta(path: Path, key: str) -> bytes | None:
    """A value of a metadata database's (or a backup's) meta table, or None."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None
    finally:
        conn.close()


def _check_backup(path: Path) -> bytes:
    if not path.is_file():
        raise RestoreError(f"no backup file {path}: name one of the metadata-*.sqlite files of the backup directory")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            has_cluster = conn.execute("SELECT 1 FROM meta WHERE key='cluster_id'").fetchone()
            _counts(conn)
        finally:
            conn.close()
        backup_id = _meta(path, "backup_id")
    except sqlite3.Error as exc:
        raise RestoreError(f"{path} is not a backup of a metadata database ({exc}); nothing was changed") from None
    if check != "ok" or not has_cluster or backup_id is None:
        why = f"quick_check says {check}" if check != "ok" else "it was not written by a backup"
        raise RestoreError(f"{path} is not a usable backup of a metadata database ({why}); nothing was changed")
    return backup_id


def restore(backup: Path, data_dir: Path, overwrite: bool = False) -> bool:
    """Put `backup` in place as the metadata database of `data_dir`, in the restored epoch.
    Returns False if the database there was already restored from this very backup (a restart:
    nothing is done). Refuses (RestoreError) to replace another database that is not empty
    unless `overwrite`."""
    target = data_dir / "metadata.sqlite"
    exists = target.exists() and target.stat().st_size > 0
    if exists:
        try:
            restored_from = _meta(target, "restored_from")
        except sqlite3.Error:
            restored_from = None
        if restored_from == backup.name.encode():  # names are unique; the file may be gone (retention)
            log.info("the metadata database was restored from %s before: starting with it as it is now", backup)
            return False
    _check_backup(backup)
    if exists:
        if not overwrite:
            raise RestoreError(
                f"the data directory {data_dir} already holds a metadata database: nothing was changed; to replace "
                "it with the backup, add --restore-overwrite (DC_METADATA_RESTORE_OVERWRITE=1), or move it aside")
    data_dir.mkdir(parents=True, exist_ok=True)
    temporary = data_dir / ".metadata.sqlite.restoring"
    try:
        shutil.copyfile(backup, temporary)
        conn = sqlite3.connect(temporary)
        try:
            with conn:
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('restored_from', ?)", (backup.name.encode(),))
                conn.execute("DELETE FROM meta WHERE key IN ('backup_id', 'backup_time')")  # a database, not a backup
                begin_epoch(conn, backup.name)
        finally:
            conn.close()
        _fsync_path(temporary)
        for stale in ("metadata.sqlite-wal", "metadata.sqlite-shm"):  # never to be applied to the backup
            (data_dir / stale).unlink(missing_ok=True)
        os.replace(temporary, target)
        _fsync_path(data_dir, directory=True)
    except (OSError, sqlite3.Error) as exc:
        temporary.unlink(missing_ok=True)
        raise RestoreError(f"restoring {backup} into {data_dir} failed: {exc}") from None
    log.warning("restored the metadata database from %s: the directory is reconciled with each backend as it "
                "starts (every backend must start again)", backup)
    return True
