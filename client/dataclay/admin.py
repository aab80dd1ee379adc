"""Operations on the cluster itself, for people (the CLI) and for the operator.

`drain_backends` empties backends before they go away (a StatefulSet scale-down): it marks them
as draining, moves every object they own in batches of plain (non-recursive) moves spread
round-robin over the remaining backends, and repeats (at most MAX_PASSES times) until they own
nothing (objects created meanwhile are caught by the next pass). Then it takes every replica
they hold off them: each master re-homes its replicas on a backend that holds no copy yet (if
there is one), and whatever is left is dropped from the directory, so a drained backend holds
no replica the cluster relies on (a replica is never the last copy: its master has one).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from uuid import UUID

import grpc

from dataclay import operations as ops
from dataclay.exceptions import BackendNotFoundError, BackendUnavailableError, DataClayException
from dataclay.protocol import UNLIMITED_MESSAGES
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.protocol import dataclay_pb2_grpc as rpc
from dataclay.protocol.pages import a_owned_objects
from dataclay.runtime import Runtime
from dataclay.security import ADMIN, client_credentials, open_channel
from dataclay.transport import BackendInfo, run_blocking, translate

BATCH = 2000
MAX_PASSES = 5

Progress = Callable[[int, int], None]  # (objects moved so far, objects to move)


@dataclass(frozen=True)
class Backup:
    """A backup of the metadata database (path on the metadata service's file system; None: none yet)."""

    path: str | None
    time: float
    size: int
    backends: int
    objects: int
    aliases: int
    error: str = ""  # why the last scheduled backup failed ("" if it did not)

    @classmethod
    def from_pb(cls, info: pb.BackupInfo) -> "Backup":
        return cls(info.path or None, info.time, info.size, info.backends, info.objects, info.aliases, info.error)


class DrainError(DataClayException):
    """A drain could not empty the backends (the message says which and why)."""


async def drain(
    rt: Runtime, t: Any, backend_names: list[str], on_progress: Progress | None = None, missing_ok: bool = False
) -> int:
    backends = await ops.get_backends(rt, t)
    by_name = {info.name: info for info in backends.values()}
    unknown = sorted(set(backend_names) - set(by_name))
    if unknown and not missing_ok:
        raise BackendNotFoundError(f"no backend named {', '.join(unknown)} (known: {', '.join(by_name)})")
    names = [name for name in backend_names if name in by_name]  # never registered: nothing to move
    remaining = [info for info in backends.values() if info.name not in backend_names and not info.draining]
    if not remaining:
        raise DrainError("cannot drain every backend: at least one must remain to take the objects")
    try:
        return await _drain_passes(rt, t, names, by_name, remaining, on_progress)
    except BaseException:
        for name in names:  # the drain is off: they take objects again
            try:
                await t.metadata("SetDraining", pb.BackendRequest(backend_id=by_name[name].id.bytes, draining=False))
            except DataClayException:
                pass
        raise


async def _registrations_sent(t: Any, info: Any) -> None:
    try:
        await t.backend(info, "FlushRegistrations", pb.FlushRegistrationsRequest(before_drain=True))
    except BackendUnavailableError as exc:
        raise DrainError(f"{info.describe()} could not register the new objects it may hold ({exc}), which a drain "
                         "must not leave behind; drain it again once it and the metadata service answer") from None


async def _drain_passes(rt: Runtime, t: Any, backend_names: list[str], by_name: dict, remaining: list,
                        on_progress: Progress | None) -> int:
    moved, total = 0, 0
    for _ in range(MAX_PASSES):
        owned = {}
        for name in backend_names:
            # every pass (a backend that restarted meanwhile took the mark up again when it
            # re-registered): first it registers what it stored and has not registered yet, and
            # from then on registers before it replies (else the listing could miss objects it
            # acknowledged)
            await _registrations_sent(t, by_name[name])
            await t.metadata("SetDraining", pb.BackendRequest(backend_id=by_name[name].id.bytes, draining=True))
            ids = await a_owned_objects(lambda request: t.metadata("ListOwnedObjects", request),
                                        by_name[name].id.bytes)
            if ids:
                owned[name] = ids
        if not owned:
            for name in backend_names:
                await _release_replicas(rt, t, by_name[name])
            return moved
        total = max(total, moved + sum(len(ids) for ids in owned.values()))
        turn = 0
        for name, ids in owned.items():
            for start in range(0, len(ids), BATCH):
                destination = remaining[turn % len(remaining)]
                turn += 1
                request = pb.MoveRequest(object_ids=ids[start:start + BATCH], destination=destination.id.bytes,
                                         only_owned=True)
                async for progress in t.backend_stream(by_name[name], "Move", request):
                    if progress.done:
                        moved += len(progress.moved_ids)
                        rt.relocated([UUID(bytes=raw) for raw in progress.moved_ids], destination.id)
                if on_progress is not None:
                    on_progress(moved, total)
    left = {name: len(ids) for name, ids in owned.items()}
    raise DrainError(f"after {MAX_PASSES} passes these backends still own objects: {left}; are active methods "
                     "still creating objects there? Drain again")


async def _release_replicas(rt: Runtime, t: Any, holder: BackendInfo) -> None:
    """Take every replica off a draining backend (see the module docstring). The draining mark
    keeps new replicas off it meanwhile (the directory refuses them)."""
    listing = await t.metadata("ListReplicas", pb.ReplicasRequest(holder=holder.id.bytes))
    by_master: dict[bytes, list[bytes]] = {}
    for entry in listing.replicas:
        by_master.setdefault(entry.master_backend_id, []).append(entry.object_id)
    for master, object_ids in by_master.items():
        try:
            info = await ops.backend_info(rt, t, UUID(bytes=master))
            await t.backend(info, "ReleaseReplicas", pb.ReleaseReplicasRequest(
                backend_id=holder.id.bytes, object_ids=object_ids, rehome=True))
        except DataClayException:
            pass  # its master is not answering: dropped below all the same (never a last copy)
    await t.metadata("DropReplicas", pb.ReplicaChange(backend_id=holder.id.bytes))


@contextlib.contextmanager
def _metadata(host: str, port: int, credentials: Any) -> Iterator[rpc.MetadataStub]:
    """The metadata service, called as the admin; its refusals arrive typed."""
    with open_channel(f"{host}:{port}", client_credentials(credentials, ADMIN), options=UNLIMITED_MESSAGES) as channel:
        try:
            yield rpc.MetadataStub(channel)
        except grpc.RpcError as error:
            raise translate(error, f"the metadata service at {host}:{port}") from None


def _registered(stub: rpc.MetadataStub, names: list[str], missing_ok: bool,
                timeout: float | None) -> dict[str, pb.BackendInfo]:
    """Backend name -> what the directory lists of it, for the named backends; unknown names
    refused unless missing_ok."""
    by_name = {info.name: info for info in stub.ListBackends(pb.Empty(), timeout=timeout).backends}
    unknown = sorted(set(names) - set(by_name))
    if unknown and not missing_ok:
        raise BackendNotFoundError(f"no backend named {', '.join(unknown)} (known: {', '.join(by_name)})")
    return {name: by_name[name] for name in names if name in by_name}


def registered_backends(host: str, port: int, timeout: float | None = None,
                        credentials: Any = None) -> dict[str, BackendInfo]:
    """Backend name -> what the directory lists of it (id, address, draining mark)."""
    with _metadata(host, port, credentials) as stub:
        reply = stub.ListBackends(pb.Empty(), timeout=timeout)
    return {info.name: BackendInfo.from_pb(info) for info in reply.backends}


def backend_ids(host: str, port: int, timeout: float | None = None, credentials: Any = None) -> dict[str, UUID]:
    """Backend name -> backend id, as registered (the operator puts them in its status)."""
    return {name: info.id for name, info in registered_backends(host, port, timeout, credentials).items()}


def set_draining(host: str, port: int, backend_names: list[str], draining: bool, credentials: Any = None,
                 timeout: float | None = None) -> None:
    """Mark the named backends as draining (no new objects), or lift the mark. A mark outlives
    restarts of the backend: only this (or a drain that fails) lifts it. Before the mark is set,
    each backend registers the new objects it stored and registers before it replies from then
    on (a DrainError if it does not answer: the mark would not stop it taking new objects)."""
    rt = Runtime(f"{host}:{port}", client_credentials(credentials, ADMIN)) if draining else None
    try:
        with _metadata(host, port, credentials) as stub:
            for info in _registered(stub, backend_names, False, timeout).values():
                if rt is not None:
                    run_blocking(_registrations_sent(rt.blocking, BackendInfo.from_pb(info)))
                stub.SetDraining(pb.BackendRequest(backend_id=info.backend_id, draining=draining), timeout=timeout)
    finally:
        if rt is not None:
            rt.close()


def deregister_backends(host: str, port: int, backend_names: list[str], credentials: Any = None,
                        missing_ok: bool = False, timeout: float | None = None) -> list[str]:
    """Retire drained backends that own nothing: they leave the list of backends, and their
    ids never register again (a backend started again with an empty data directory registers
    under a new id). Refused (BackendNotDrainedError) for a backend that still owns objects or
    is not draining. Returns the names deregistered; with missing_ok, unknown names are skipped."""
    with _metadata(host, port, credentials) as stub:
        registered = _registered(stub, backend_names, missing_ok, timeout)
        for info in registered.values():
            stub.DeregisterBackend(pb.BackendRequest(backend_id=info.backend_id), timeout=timeout)
    return list(registered)


def drain_backends(
    host: str, port: int, backend_names: list[str], on_progress: Progress | None = None, missing_ok: bool = False,
    credentials: Any = None,
) -> int:
    """Move every object off the named backends onto the others; returns how many moved.
    The backends are marked as draining (no new objects) and stay so once empty, also when they
    restart (set_draining lifts the mark; deregister_backends retires them). With missing_ok, names that never registered are
    taken as already empty (a pod that never came up). It calls as the admin: `credentials` (a
    directory with admin.pem and admin.key, or Credentials), else found as a client's are."""
    rt = Runtime(f"{host}:{port}", client_credentials(credentials, ADMIN))
    try:
        return run_blocking(drain(rt, rt.blocking, backend_names, on_progress, missing_ok))
    finally:
        rt.close()


def backup(host: str, port: int, credentials: Any = None, timeout: float | None = None) -> Backup:
    """Take a backup of the metadata database now (online: it keeps serving), into its backup
    directory; the admin only (PermissionDeniedError for anyone else)."""
    with _metadata(host, port, credentials) as stub:
        return Backup.from_pb(stub.Backup(pb.Empty(), timeout=timeout))


def last_backup(host: str, port: int, credentials: Any = None, timeout: float | None = None) -> Backup:
    """The newest backup in the metadata service's backup directory (path None if there is
    none), with the last scheduled backup's failure if it failed; the admin only."""
    with _metadata(host, port, credentials) as stub:
        return Backup.from_pb(stub.LastBackup(pb.Empty(), timeout=timeout))
