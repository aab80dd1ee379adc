"""Backups of the metadata database and restores from them, with real processes: a backup taken
while writes go on is one consistent snapshot; after kill -9 of the metadata service and the loss
of its database, a restore from the backup (and a restart of every backend) reaches every object,
those stored before the backup and those created or moved after it; only admins take backups."""
from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path

import grpc
import pytest

from dataclay import Client
from dataclay.admin import backup, last_backup
from dataclay.exceptions import AliasDoesNotExistError, BackupError, VersionConsolidatedError
from dataclay.security import PermissionDeniedError
from dataclay.protocol import UNLIMITED_MESSAGES
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.protocol import dataclay_pb2_grpc as rpc
from dataclay.security import open_channel
from dataclay.transport import translate
from dataclay_backend.cluster import ClusterStartError, LocalCluster
from hr import Employee

from conftest import CREDENTIALS, MODELS


def refusal(call):
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return translate(raised.value, "test")


def _aliases_and_objects(path: Path) -> tuple[set[str], set[bytes], set[bytes]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        aliases = dict(conn.execute("SELECT alias, object_id FROM aliases").fetchall())
        objects = {row[0] for row in conn.execute("SELECT id FROM objects")}
        return set(aliases), set(aliases.values()), objects
    finally:
        conn.close()


def test_a_backup_taken_while_writes_go_on_is_one_consistent_snapshot(make_cluster, tmp_path):
    backups = tmp_path / "backups"
    cluster = make_cluster(backends=2, metadata_args=["--backup-dir", str(backups), "--backup-keep", "3"])
    stop = threading.Event()
    written: list[int] = []
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            index = 0
            while not stop.is_set():
                Employee(f"w{index}", float(index)).make_persistent(alias=f"w{index}")
                written.append(index)  # acknowledged: in the directory from now on
                index += 1
        except BaseException as exc:  # reported below
            failures.append(exc)

    with Client(host="127.0.0.1", port=cluster.port):
        thread = threading.Thread(target=writer)
        thread.start()
        taken = []
        try:
            deadline = time.monotonic() + 60
            while len(taken) < 5:
                assert time.monotonic() < deadline, "the writer made no progress"
                if len(written) >= 20 * (len(taken) + 1):  # backups spread over the writes
                    acknowledged = len(written)
                    report = backup("127.0.0.1", cluster.port)
                    taken.append(report)
                    path = Path(report.path)  # checked at once: the oldest are removed (--backup-keep 3)
                    aliases, aliased, objects = _aliases_and_objects(path)
                    count = len(aliases)
                    # one snapshot: the aliases are a prefix of the sequential writes, with every
                    # object they name, and at least what was acknowledged before the backup began
                    assert aliases == {f"w{index}" for index in range(count)}, path
                    assert aliased <= objects and count >= acknowledged
                    assert (report.objects, report.aliases, report.backends) == (len(objects), count, 2)
                    assert report.size == path.stat().st_size > 0
                    assert not Path(str(path) + "-wal").exists()  # one self-contained file
        finally:
            stop.set()
            thread.join()
    assert not failures, failures
    assert len({report.path for report in taken}) == 5
    kept = sorted(backups.iterdir())
    assert [p.name for p in kept] == sorted(Path(r.path).name for r in taken[-3:])  # the newest 3, no temp files
    assert last_backup("127.0.0.1", cluster.port).path == taken[-1].path


def test_kill_9_lose_the_database_restore_and_every_object_is_reachable(make_cluster, tmp_path):
    backups = tmp_path / "backups"
    cluster = make_cluster(backends=3, metadata_args=["--backup-dir", str(backups)])
    with Client(host="127.0.0.1", port=cluster.port) as client:
        ids = list(client.get_backends())
        before = {}
        for index in range(30):
            employee = Employee(f"before-{index}", float(index))
            employee.make_persistent(backend_id=ids[index % 3], alias=f"before-{index}")
            before[employee.id] = (f"before-{index}", float(index))
        moved_after = [Employee.get_by_id(object_id) for object_id in list(before)[:6]]

        taken = backup("127.0.0.1", cluster.port)
        assert taken.objects == 30 and taken.aliases == 30

        after = {}
        for index in range(20):  # created after the backup, some with aliases the backup lacks
            employee = Employee(f"after-{index}", 100.0 + index)
            employee.make_persistent(backend_id=ids[index % 3], alias=f"after-{index}" if index < 3 else None)
            after[employee.id] = (f"after-{index}", 100.0 + index)
        for employee in moved_after:  # moved after the backup: the backup lists them under the old owner
            employee.move(ids[(ids.index(next(iter(employee.backends))) + 1) % 3])
        created_then_moved = [Employee.get_by_id(object_id) for object_id in list(after)[:4]]
        for employee in created_then_moved:
            employee.move(ids[(ids.index(next(iter(employee.backends))) + 2) % 3])
        for object_id in list(before)[6:10]:  # changed after the backup: the backends hold the new state
            Employee.get_by_id(object_id).raise_salary(1000.0)
            name, salary = before[object_id]
            before[object_id] = (name, salary + 1000.0)
        owners = {object_id: next(iter(Employee.get_by_id(object_id).backends)) for object_id in [*before, *after]}

    cluster.stop_process(cluster.metadata, kill=True)  # kill -9, then the database is lost
    shutil.rmtree(cluster.data_dir / "metadata")
    cluster.metadata_args += ["--restore-from", taken.path]
    cluster.start_metadata()
    for name in list(cluster.backends):  # every backend starts again after a restore
        cluster.restart_backend(name)

    with open_channel(f"127.0.0.1:{cluster.port}", cluster.client_credentials("admin"),
                      options=UNLIMITED_MESSAGES) as channel:
        listing = rpc.MetadataStub(channel).ListBackends(pb.Empty(), timeout=10)
    assert not listing.restored  # every backend reconciled: the restore is over
    with Client(host="127.0.0.1", port=cluster.port) as client:
        assert list(client.get_backends()) == ids
        for object_id, (name, salary) in {**before, **after}.items():
            employee = Employee.get_by_id(object_id)
            assert (employee.name, employee.salary) == (name, salary), object_id
            assert next(iter(employee.backends)) == owners[object_id]
        for index in range(30):  # aliases from before the backup
            assert Employee.get_by_alias(f"before-{index}").name == f"before-{index}"
        with pytest.raises(AliasDoesNotExistError):  # documented: aliases made after the backup are lost
            Employee.get_by_alias("after-0")
        fresh = Employee("fresh", 1.0)  # and it serves as before
        fresh.make_persistent(alias="after-0")
        assert Employee.get_by_alias("after-0").name == "fresh"

    # a restart names the same backup again (as a pod's arguments do): nothing is restored again
    cluster.stop_process(cluster.metadata)
    cluster.start_metadata()
    with Client(host="127.0.0.1", port=cluster.port):
        assert Employee.get_by_alias("after-0").name == "fresh"
        assert Employee.get_by_id(next(iter(after))).name == "after-0"


def test_a_restore_refuses_to_replace_a_database_unless_told(make_cluster, tmp_path):
    backups = tmp_path / "backups"
    cluster = make_cluster(backends=1, metadata_args=["--backup-dir", str(backups)])
    with Client(host="127.0.0.1", port=cluster.port):
        Employee("kept", 1.0).make_persistent(alias="kept")
        taken = backup("127.0.0.1", cluster.port)
        later = Employee("later", 2.0)
        later.make_persistent(alias="later")
        later_id = later.id
    cluster.stop()
    other = LocalCluster(cluster.data_dir, backends=1, port=0, model_paths=[MODELS], credentials=CREDENTIALS,
                         metadata_args=["--restore-from", taken.path])
    try:
        with pytest.raises(ClusterStartError, match="already holds a metadata database"):
            other.start()
        other.metadata_args = ["--restore-from", str(tmp_path / "nothing.sqlite")]
        with pytest.raises(ClusterStartError, match="no backup file"):
            other.start()
        not_a_backup = tmp_path / "not-a-backup.sqlite"
        not_a_backup.write_bytes(b"not sqlite at all" * 100)
        other.metadata_args = ["--restore-from", str(not_a_backup), "--restore-overwrite"]
        with pytest.raises(ClusterStartError, match="not a backup"):
            other.start()
        other.metadata_args = ["--restore-from", taken.path, "--restore-overwrite"]
        other.start()
        with Client(host="127.0.0.1", port=other.port):
            assert Employee.get_by_alias("kept").name == "kept"
            assert Employee.get_by_id(later_id).name == "later"  # its backend held it: adopted
            with pytest.raises(AliasDoesNotExistError):  # its alias was made after the backup
                Employee.get_by_alias("later")
    finally:
        other.stop()


def test_only_the_admin_takes_backups_and_only_a_backend_reconciles_its_own(cluster):
    address = f"127.0.0.1:{cluster.port}"
    with open_channel(address, cluster.client_credentials("client"), options=UNLIMITED_MESSAGES) as channel:
        stub = rpc.MetadataStub(channel)
        assert isinstance(refusal(lambda: stub.Backup(pb.Empty(), timeout=10)), PermissionDeniedError)
        assert isinstance(refusal(lambda: stub.LastBackup(pb.Empty(), timeout=10)), PermissionDeniedError)
        assert isinstance(refusal(lambda: stub.ReconcileObjects(pb.ReconcileRequest(), timeout=10)),
                          PermissionDeniedError)
    with pytest.raises(PermissionDeniedError):  # the admin function, with a client's credentials
        backup("127.0.0.1", cluster.port, credentials=cluster.client_credentials("client"))
    backends = {info.name: info.backend_id for info in
                rpc.MetadataStub(open_channel(address, cluster.client_credentials("admin"))).ListBackends(
                    pb.Empty(), timeout=10).backends}
    with open_channel(address, cluster.client_credentials("backend:backend-1"), options=UNLIMITED_MESSAGES) as channel:
        stub = rpc.MetadataStub(channel)
        assert isinstance(refusal(lambda: stub.Backup(pb.Empty(), timeout=10)), PermissionDeniedError)
        claim = pb.ReconcileRequest(backend_id=backends["backend-0"], held=[pb.ObjectEntry(
            object_id=b"\x01" * 16, class_path="hr.Employee")], done=True)
        error = refusal(lambda: stub.ReconcileObjects(claim, timeout=10))
        assert isinstance(error, PermissionDeniedError) and "backend-1" in str(error)
    with pytest.raises(BackupError, match="no backup directory"):  # the admin, on a service without one
        backup("127.0.0.1", cluster.port)


def test_scheduled_backups_and_the_backup_command(make_cluster, tmp_path):
    import subprocess
    import sys

    backups = tmp_path / "backups"
    cluster = make_cluster(backends=1, metadata_args=["--backup-dir", str(backups), "--backup-interval", "0.5",
                                                      "--backup-keep", "2"])
    with Client(host="127.0.0.1", port=cluster.port):
        Employee("scheduled", 1.0).make_persistent(alias="scheduled")
    deadline = time.monotonic() + 30
    while (last := last_backup("127.0.0.1", cluster.port)).aliases < 1:  # a scheduled backup after the write
        assert time.monotonic() < deadline, f"no scheduled backup in 30 s: {last}"
        time.sleep(0.1)
    assert last.error == "" and Path(last.path).parent == backups
    command = [sys.executable, "-m", "dataclay.cli", "backup", "--port", str(cluster.port)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"backup {backups}/metadata-") and "1 backends, 1 objects, 1 aliases" in done.stdout
    shown = subprocess.run([*command, "--last"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and shown.stdout.startswith("last backup ")
    assert len(list(backups.iterdir())) <= 2


def test_a_backend_that_kept_running_through_a_restore_keeps_what_it_acknowledged_and_refuses_more(
        make_cluster, tmp_path):
    from dataclay.exceptions import ClusterMismatchError, ObjectNotRegisteredError

    cluster = make_cluster(backends=2, metadata_args=["--backup-dir", str(tmp_path / "backups")])
    with Client(host="127.0.0.1", port=cluster.port) as client:
        ids = list(client.get_backends())
        first = Employee("first", 1.0)
        first.make_persistent(backend_id=ids[1])
        taken = backup("127.0.0.1", cluster.port)
    cluster.stop_process(cluster.metadata, kill=True)
    shutil.rmtree(cluster.data_dir / "metadata")
    cluster.metadata_args += ["--restore-from", taken.path]
    cluster.start_metadata()
    cluster.restart_backend("backend-0")  # backend-1 keeps running: it has not reported what it holds
    with Client(host="127.0.0.1", port=cluster.port):
        # stored and acknowledged (registered after the reply); the directory refuses to register it
        early = Employee("early", 3.0)
        early.make_persistent(backend_id=ids[1])
        with pytest.raises(ObjectNotRegisteredError, match="ClusterMismatchError"):
            Employee.get_by_id(early.id)
        # from then on backend-1 registers before it replies: refused, typed
        with pytest.raises(ClusterMismatchError, match="restart that backend"):
            Employee("refused", 2.0).make_persistent(backend_id=ids[1])
    cluster.restart_backend("backend-1")  # on another port: a new client finds it; it reports what it holds
    with Client(host="127.0.0.1", port=cluster.port):
        second = Employee("second", 2.0)
        second.make_persistent(backend_id=ids[1])
        assert Employee.get_by_id(first.id).name == "first" and Employee.get_by_id(second.id).name == "second"
        assert Employee.get_by_id(early.id).name == "early"  # what it acknowledged is kept


def _restored(cluster, taken) -> None:
    """The metadata database lost and restored from `taken`; every backend started again."""
    cluster.stop_process(cluster.metadata, kill=True)
    shutil.rmtree(cluster.data_dir / "metadata")
    cluster.metadata_args += ["--restore-from", taken.path]
    cluster.start_metadata()
    for name in list(cluster.backends):
        cluster.restart_backend(name)


def _directory_says(cluster, object_id) -> BaseException | None:
    """The metadata service's own answer for the id: None if it lists it live."""
    with open_channel(f"127.0.0.1:{cluster.port}", cluster.client_credentials(), options=UNLIMITED_MESSAGES) as channel:
        try:
            rpc.MetadataStub(channel).LocateObject(pb.ObjectRequest(object_id=object_id.bytes), timeout=10)
        except grpc.RpcError as error:
            return translate(error, "metadata")
    return None


def test_a_version_consolidated_while_the_metadata_service_was_lost_is_retired_after_the_restore(
        make_cluster, tmp_path):
    """The consolidation is local (it needs no directory) and its retirement waits, stored; the
    restored directory refuses a backend's registrations until it has reported what it holds, so
    the retirement goes after that report, and the backend starts (found by a review: it did not)."""
    cluster = make_cluster(backends=2, metadata_args=["--backup-dir", str(tmp_path / "backups")])
    with Client(host="127.0.0.1", port=cluster.port) as client:
        original = Employee("original", 1.0)
        original.make_persistent(backend_id=list(client.get_backends())[0])
        version = original.new_version()
        version_id = version._dc_id
        version.salary = 2.0
        taken = backup("127.0.0.1", cluster.port)  # lists both (the backup flushed registrations)
        cluster.stop_process(cluster.metadata, kill=True)
        version.consolidate_version()
        assert original.salary == 2.0
    _restored(cluster, taken)
    with open_channel(f"127.0.0.1:{cluster.port}", cluster.client_credentials("admin"),
                      options=UNLIMITED_MESSAGES) as channel:
        assert not rpc.MetadataStub(channel).ListBackends(pb.Empty(), timeout=10).restored
    with Client(host="127.0.0.1", port=cluster.port):
        assert Employee.get_by_id(original.id).salary == 2.0
    deadline = time.monotonic() + 10  # the batch goes right after the report
    while not isinstance(_directory_says(cluster, version_id), VersionConsolidatedError):
        assert time.monotonic() < deadline, f"still {_directory_says(cluster, version_id)!r}"


def test_a_version_adopted_after_a_restore_and_then_consolidated_is_retired_there(make_cluster, tmp_path):
    """Adoption after a restore keeps no lineage; the retirement carries it (found by a review:
    the directory kept listing the deleted version live, and nobody was told)."""
    cluster = make_cluster(backends=2, metadata_args=["--backup-dir", str(tmp_path / "backups")])
    with Client(host="127.0.0.1", port=cluster.port) as client:
        taken = backup("127.0.0.1", cluster.port)
        original = Employee("original", 1.0)  # both made after the backup: adopted without lineage
        original.make_persistent(backend_id=list(client.get_backends())[0])
        version_id = original.new_version()._dc_id
    _restored(cluster, taken)
    with Client(host="127.0.0.1", port=cluster.port):
        version = Employee.get_by_id(version_id)
        version.salary = 2.0
        version.consolidate_version()
        assert Employee.get_by_id(original.id).salary == 2.0
    deadline = time.monotonic() + 10
    while not isinstance(said := _directory_says(cluster, version_id), VersionConsolidatedError):
        assert time.monotonic() < deadline, f"still {said!r}"
    assert said.original_id == original.id
