"""A full disk: a backend whose data directory is a small tmpfs, filled up. Every call that
needs to store something fails with a typed StorageFullError naming that backend; what is
stored stays as it was (and is what readers see, also after a restart); a make_persistent that
fails leaves no directory entry and no alias; once there is space again the same calls work.

Needs to mount a tmpfs (root, or CAP_SYS_ADMIN): skipped only where mounting is not permitted."""
from __future__ import annotations

import contextlib
import errno
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from dataclay import Client
from dataclay.exceptions import (AliasDoesNotExistError, BackendUnavailableError, ObjectNotRegisteredError,
                                 StorageFullError)
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.operations import ask_directory
from dataclay.transport import run_blocking
from directory_view import owned
from shapes import Blob, Node

SMALL = 600_000  # an inline state (SQLite row): the WAL must grow
LARGE = 1_200_000  # a state in a file of its own (object_store.INLINE_LIMIT is 1 MiB)
NOT_PERMITTED = re.compile(r"permission denied|not permitted|must be superuser|only root", re.IGNORECASE)


@contextlib.contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        why = (mounted.stderr or mounted.stdout).strip()
        if NOT_PERMITTED.search(why):
            print(f"cannot mount a tmpfs on {directory}: {why}")
            pytest.skip(f"mounting a tmpfs is not permitted here: {why}")
        pytest.fail(f"mount -t tmpfs failed: {why}")
    try:
        yield directory
    finally:
        if subprocess.run(["umount", str(directory)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], check=True)  # still busy: detach it


def fill(path: Path) -> None:
    """Write `path` until the filesystem has no space left (not one block more)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (1 << 20, 1 << 16, 4096, 512):
            block = b"\xff" * size
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, block)
    finally:
        os.close(fd)
    assert os.statvfs(path.parent).f_bavail == 0


def full_error(raised: pytest.ExceptionInfo, backend_id) -> None:
    error = raised.value
    assert type(error) is StorageFullError
    assert error.backend_id == backend_id and str(backend_id) in str(error)
    assert "free space" in str(error)


@contextlib.contextmanager
def full_backend_cluster(make_cluster, tmp_path: Path) -> Iterator[tuple[Any, Client, Path, Any, Any]]:
    """Two backends, backend-1's data directory on a 16 MiB tmpfs: (cluster, client, that disk,
    backend-1's id, backend-0's id)."""
    data_dir = tmp_path / "cluster"
    with tmpfs(data_dir / "backend-1", "16m") as disk:
        cluster = make_cluster(backends=2, data_dir=data_dir)
        try:
            with Client(host="127.0.0.1", port=cluster.port) as client:
                ids = {info.name: backend_id for backend_id, info in client.get_backends().items()}
                yield cluster, client, disk, ids["backend-1"], ids["backend-0"]
        finally:
            cluster.stop()


def test_a_full_disk_stores_nothing_leaves_no_entry_and_recovers_when_freed(make_cluster, tmp_path):
    with full_backend_cluster(make_cluster, tmp_path) as (cluster, client, disk, full, other):
        small = Blob(b"small, stored")
        small.make_persistent(backend_id=full)
        large = Blob(b"L" * LARGE)
        large.make_persistent(backend_id=full)
        travelling = Blob(b"T" * SMALL)
        travelling.make_persistent(backend_id=other)

        filler = disk / "filler"
        fill(filler)
        listed = owned(client, full)
        with pytest.raises(StorageFullError) as raised:  # an inline state: SQLITE_FULL
            small.data = os.urandom(SMALL)
        full_error(raised, full)
        assert small.data == b"small, stored"
        with pytest.raises(StorageFullError) as raised:  # a state file: ENOSPC
            large.data = b"N" * LARGE
        full_error(raised, full)
        assert large.data == b"L" * LARGE

        fresh = Blob(os.urandom(SMALL))
        with pytest.raises(StorageFullError) as raised:
            fresh.make_persistent(alias="on-a-full-disk", backend_id=full)
        full_error(raised, full)
        with pytest.raises(ObjectNotRegisteredError):
            Blob.get_by_id(fresh.id)
        with pytest.raises(AliasDoesNotExistError):
            Blob.get_by_alias("on-a-full-disk")
        fresh_large = Blob(b"F" * LARGE)
        with pytest.raises(StorageFullError):
            fresh_large.make_persistent(backend_id=full)
        with pytest.raises(ObjectNotRegisteredError):
            Blob.get_by_id(fresh_large.id)

        with pytest.raises(StorageFullError):  # versions: made here, and sent here from elsewhere
            large.new_version()
        with pytest.raises(StorageFullError):
            travelling.new_version(full)
        assert owned(client, full) == listed  # no entry of any failed new object

        with pytest.raises(StorageFullError) as raised:  # a move's destination
            travelling.move(full)
        full_error(raised, full)
        assert travelling.size() == SMALL
        assert small.data == b"small, stored"
        assert owned(client, full) == listed

        cluster.restart_backend("backend-1")  # what is stored is what readers saw
        # backend-0 keeps the address it knew of backend-1 (a new port now) for moves: restart it too
        cluster.restart_backend("backend-0")
        assert small.data == b"small, stored"
        assert large.data == b"L" * LARGE
        with pytest.raises(ObjectNotRegisteredError):
            Blob.get_by_id(fresh.id)

        filler.unlink()  # space again: the same calls work, nothing was half-written
        small.data = b"small, changed"
        large.data = b"N" * LARGE
        fresh.make_persistent(alias="on-a-full-disk", backend_id=full)
        fresh_large.make_persistent(backend_id=full)
        travelling.move(full)
        assert large.new_version().data == b"N" * LARGE
        assert owned(client, full) == listed + 4
        assert Blob.get_by_alias("on-a-full-disk").size() == SMALL
        cluster.restart_backend("backend-1")
        assert small.data == b"small, changed"
        assert large.data == b"N" * LARGE
        assert Blob.get_by_id(fresh.id).size() == SMALL
        assert Blob.get_by_id(fresh_large.id).data == b"F" * LARGE
        assert travelling.size() == SMALL


def test_a_full_disk_of_the_metadata_service_registers_nothing(make_cluster, tmp_path):
    """The directory's own writes: registering new objects fails typed, naming the metadata
    service; nothing is stored on the backend; with space again the same call works."""
    data_dir = tmp_path / "cluster"
    with tmpfs(data_dir / "metadata", "16m") as disk:
        cluster = make_cluster(backends=1, data_dir=data_dir)
        try:
            with Client(host="127.0.0.1", port=cluster.port) as client:
                backend = list(client.get_backends())[0]
                kept = Node(1)
                kept.make_persistent(alias="kept")
                filler = disk / "filler"
                fill(filler)
                root = Node(0)
                root.children = [Node(i) for i in range(3000)]
                with pytest.raises(StorageFullError, match="the metadata service") as raised:
                    root.make_persistent(alias="root")
                assert type(raised.value) is StorageFullError
                with pytest.raises(ObjectNotRegisteredError):
                    Node.get_by_id(root.id)
                assert Node.get_by_alias("kept").value == 1
                assert owned(client, backend) == 1

                filler.unlink()
                root.make_persistent(alias="root")
                assert Node.get_by_alias("root").peek() == 3000
                cluster.restart_backend("backend-0")
                assert Node.get_by_alias("root").peek() == 3000
                assert owned(client, backend) == 3002
        finally:
            cluster.stop()


def test_a_consolidation_into_a_full_disk_is_typed_and_changes_nothing(make_cluster, tmp_path):
    """The original's backend cannot store the consolidated state: StorageFullError naming it,
    the original keeps its value (also after a restart), the version stays usable, and with space
    again the same consolidation commits."""
    with full_backend_cluster(make_cluster, tmp_path) as (cluster, client, disk, full, other):
        original = Blob(b"original")
        original.make_persistent(backend_id=full)
        version = original.new_version(other)  # the version lives where there is space
        version.data = os.urandom(SMALL)
        changed = version.data
        filler = disk / "filler"
        fill(filler)
        with pytest.raises(StorageFullError) as raised:
            version.consolidate_version()
        full_error(raised, full)
        assert original.data == b"original"
        assert version.data == changed  # not retired: the user can retry
        cluster.restart_backend("backend-1")
        cluster.restart_backend("backend-0")
        assert original.data == b"original"

        filler.unlink()
        version.consolidate_version()
        assert original.data == changed
        cluster.restart_backend("backend-1")
        assert original.data == changed


def test_a_replica_holder_whose_disk_is_full_is_dropped_and_the_masters_write_succeeds(make_cluster, tmp_path):
    with full_backend_cluster(make_cluster, tmp_path) as (cluster, client, disk, full, other):
        blob = Blob(b"before")
        blob.make_persistent(backend_id=other)
        blob.new_replica(backend_id=full)
        fill(disk / "filler")
        blob.data = os.urandom(SMALL)  # stored on the master; the holder cannot store it
        entry = run_blocking(ask_directory(client.runtime.blocking, "LocateObject", pb.ObjectRequest(object_id=blob.id.bytes)))
        assert list(entry.replica_backend_ids) == []  # dropped before the write returned
        cluster.kill_backend("backend-0")  # the master: no replica left to fall back to
        with pytest.raises(BackendUnavailableError):
            blob.data
