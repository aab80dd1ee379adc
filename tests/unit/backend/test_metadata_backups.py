"""Backups and restores of the metadata database (dataclay_backend.backup) and the restored
epoch's rule (dataclay_backend.restore_epoch), on real SQLite files, scenario by scenario: what a
backend reports after a restore is adopted, reassigned or refused, and nothing held is dropped."""
import os
import uuid
from uuid import UUID

import pytest

from dataclay.exceptions import AliasDoesNotExistError, BackupError, RestoreError
from dataclay_backend.backup import (BackupScheduler, backups, describe, parse_interval, restore, take_backup)
from dataclay_backend.directory import BackendInfo, Directory, ObjectEntry
from dataclay_backend.restore_epoch import Refused, RestoreEpoch

PATH = "hr.Employee"


def backend(directory: Directory, name: str) -> UUID:
    backend_id = uuid.uuid4()
    directory.register_backend(BackendInfo(backend_id, name, "127.0.0.1", 1))
    return backend_id


def store(directory: Directory, owner: UUID, alias: str = "") -> UUID:
    object_id = uuid.uuid4()
    directory.register_objects([ObjectEntry(object_id, PATH, owner)], alias)
    return object_id


def restored(tmp_path, source: Directory, name: str = "restored") -> tuple[Directory, RestoreEpoch]:
    """A backup of `source`, restored into a fresh data directory and opened."""
    report = take_backup(source.db.path, tmp_path / "backups", keep=10)
    assert restore(report.path, tmp_path / name)
    directory = Directory(tmp_path / name)
    return directory, RestoreEpoch(directory.db)


def test_intervals():
    assert [parse_interval(text) for text in ("0", "90", "90s", "30m", "6h", "1d")] == [0, 90, 90, 1800, 21600, 86400]
    with pytest.raises(ValueError, match="not an interval"):
        parse_interval("soon")


def test_a_backup_is_a_complete_file_and_the_oldest_go(tmp_path):
    source = Directory(tmp_path / "live")
    b0 = backend(source, "b0")
    store(source, b0, "one")
    folder = tmp_path / "backups"
    (folder).mkdir()
    crashed = folder / ".metadata-20260101T000000.000000Z.sqlite.tmp"  # a backup that crashed midway
    crashed.write_bytes(b"half a file")
    reports = [take_backup(source.db.path, folder, keep=2) for _ in range(3)]
    assert backups(folder) == [report.path for report in reports[1:]]
    assert sorted(os.listdir(folder)) == [report.path.name for report in reports[1:]]  # the temp file is gone
    assert (reports[-1].backends, reports[-1].objects, reports[-1].aliases) == (1, 1, 1)
    assert describe(reports[-1].path) == reports[-1]
    source.close()


def test_a_failed_backup_leaves_no_file_under_a_backups_name(tmp_path):
    not_a_database = tmp_path / "metadata.sqlite"
    not_a_database.write_bytes(b"garbage" * 1000)
    with pytest.raises(BackupError, match="the database is unchanged"):
        take_backup(not_a_database, tmp_path / "backups", keep=3)
    assert os.listdir(tmp_path / "backups") == []
    with pytest.raises(BackupError, match="no backup directory"):
        BackupScheduler(not_a_database, None, 3, 0).take()


def test_a_restore_refuses_another_database_and_a_restart_keeps_what_it_did(tmp_path):
    source = Directory(tmp_path / "live")
    b0 = backend(source, "b0")
    report = take_backup(source.db.path, tmp_path / "backups", keep=3)
    store(source, b0, "later")  # the live database is not empty and not this backup's restore
    source.close()
    with pytest.raises(RestoreError, match="already holds a metadata database"):
        restore(report.path, tmp_path / "live")
    assert Directory(tmp_path / "live").lookup_alias("later")  # nothing was changed
    assert restore(report.path, tmp_path / "live", overwrite=True)
    directory = Directory(tmp_path / "live")
    with pytest.raises(AliasDoesNotExistError):
        directory.lookup_alias("later")
    store(directory, b0, "after-restore")
    directory.close()
    assert not restore(report.path, tmp_path / "live")  # a restart naming the same backup: kept as it is
    assert Directory(tmp_path / "live").lookup_alias("after-restore")
    report.path.unlink()  # removed by the retention of newer backups: a restart still starts
    assert not restore(report.path, tmp_path / "live")
    with pytest.raises(RestoreError, match="no backup file"):
        restore(tmp_path / "missing.sqlite", tmp_path / "other")
    with pytest.raises(RestoreError, match="not written by a backup"):
        restore(tmp_path / "live" / "metadata.sqlite", tmp_path / "other")


def test_after_a_restore_backends_adopt_reassign_and_refuse_by_the_rule(tmp_path):
    source = Directory(tmp_path / "live")
    a, b, c = backend(source, "a"), backend(source, "b"), backend(source, "c")
    kept = store(source, a, "kept")        # at a before and after the backup
    moved = store(source, a, "moved")      # moved a -> b after the backup
    moved_again = store(source, a)         # moved a -> c after the backup; c reports before a
    gone = store(source, b, "gone")        # deleted after the backup: nobody holds it
    leftover = store(source, c)            # c holds it; b holds a leftover copy and reports later
    directory, epoch = restored(tmp_path, source)
    source.close()
    assert epoch.active()
    created = uuid.uuid4()                 # created at b after the backup

    done = epoch.reconcile(c, [(moved_again, PATH), (leftover, PATH)], [], done=True)
    assert (done.adopted, done.reassigned, done.refused, done.ended) == (0, 1, [], False)
    done = epoch.reconcile(a, [(kept, PATH)], [moved], done=True)  # a lists moved as not held
    assert (done.adopted, done.reassigned, done.refused) == (0, 0, [])
    assert directory.locate(moved).backend_id == a  # kept for its holder, with its alias
    done = epoch.reconcile(b, [(moved, PATH), (created, PATH), (leftover, PATH)], [], done=False)
    assert (done.adopted, done.reassigned, done.refused) == (1, 1, [leftover])
    assert not done.ended
    done = epoch.reconcile(b, [], [gone], done=True)
    assert done.ended and not epoch.active()
    owners = {object_id: directory.locate(object_id).backend_id for object_id in (kept, moved, moved_again, leftover, created)}
    assert owners == {kept: a, moved: b, moved_again: c, leftover: c, created: b}
    assert directory.lookup_alias("moved").object_id == moved
    with pytest.raises(AliasDoesNotExistError):  # held by nobody once everyone reported: dropped
        directory.lookup_alias("gone")
    directory.close()


def test_objects_registered_during_the_epoch_survive_its_end_and_only_a_backend_reports_its_own(tmp_path):
    source = Directory(tmp_path / "live")
    a, b = backend(source, "a"), backend(source, "b")
    directory, epoch = restored(tmp_path, source)
    source.close()
    epoch.reconcile(a, [], [], done=True)
    new = store(directory, a, "new")  # served while b has not reported yet
    with pytest.raises(Refused):
        epoch.reconcile(b, [], [], done=True, caller="a")
    assert epoch.active()
    assert epoch.reconcile(b, [], [], done=True, caller="b").ended
    assert directory.lookup_alias("new").object_id == new
    assert epoch.reconcile(a, [(uuid.uuid4(), PATH)], [], done=True).adopted == 0  # over: nothing changes
    directory.close()


def test_a_backup_taken_during_an_epoch_restores_into_a_new_one(tmp_path):
    source = Directory(tmp_path / "live")
    a, b = backend(source, "a"), backend(source, "b")
    first, epoch = restored(tmp_path, source, "first")
    epoch.reconcile(a, [], [], done=True)
    second, again = restored(tmp_path, first, "second")
    assert again.active()
    assert not again.reconcile(a, [], [], done=True).ended  # a's report of the first epoch does not count
    assert again.reconcile(b, [], [], done=True).ended
    for opened in (source, first, second):
        opened.close()


def test_during_the_epoch_only_backends_that_reported_change_the_directory(tmp_path):
    from dataclay.exceptions import ClusterMismatchError

    source = Directory(tmp_path / "live")
    a, b = backend(source, "a"), backend(source, "b")
    directory, epoch = restored(tmp_path, source)
    source.close()
    epoch.reconcile(a, [], [], done=True)
    epoch.require_reconciled({a})
    with pytest.raises(ClusterMismatchError, match="restart that backend"):
        epoch.require_reconciled({a, b})
    epoch.reconcile(b, [], [], done=True)
    assert not epoch.active()
    epoch.require_reconciled({uuid.uuid4()})  # outside an epoch: nothing to check
    assert not RestoreEpoch(directory.db).active()  # and it stays over when the service starts again
    directory.close()
