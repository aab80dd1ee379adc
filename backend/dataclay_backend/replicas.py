"""Replicas, both sides, on one backend. The protocol is described in dataclay.proto ("replicas");
the decisions are in dataclay_backend.replica_plan.

Master side (the backend that owns the object). `holders` maps each object owned here that has
replicas to the backends holding one; it always includes every holder the directory lists (it
may list more: a holder is added here before the directory records it, and removed only after
the directory forgot it), so every listed replica receives every committed change. Objects
without replicas are not in it, and cost nothing: `propagate` returns at once.

The guarantee, for every change the master commits to an object with replicas (an attribute
write, an active method, a consolidation into it): before the call that made it replies, each
listed replica holds the new state, or has been removed from the directory. A holder that does
not confirm the update (dead, stopped past the call deadline, disk full) is dropped from the
directory first; only then does the call reply. If the directory cannot be told either (the
metadata service is down too), the call fails with OutcomeUnknownError (the master has the
change) and the master keeps trying to drop that replica in the background (resolve_later).
So a replica the directory lists never lacks an acknowledged change, and a holder checks the
directory before it serves a read (`read`): a dropped replica is never read.

Where the guarantee stops: a consolidation across backends replies once the original's backend
applied it (then its replicas have it) or could not be reached (it applies, and propagates, when
it resolves the transaction, before serving the original again); meanwhile a fallback read may
return the state before the consolidation. And a drop the directory could not record (above)
leaves a replica that missed a change listed until the master's background retry succeeds.

Holder side: replicas are kept apart from owned objects (object_store's replica_states), are
never run (no active method, no write), and are read only through ReadReplica, the fallback of
clients whose master is unavailable.
"""
from __future__ import annotations

import io
import logging
import threading
import uuid
from typing import Any, Callable
from uuid import UUID

from dataclay import lifecycle as lc
from dataclay import operations as ops
from dataclay.exceptions import (
    BackendDrainingError,
    BackendNotFoundError,
    BackendUnavailableError,
    ClusterMismatchError,
    InvalidRequestError,
    NoBackendAvailableError,
    ObjectNotRegisteredError,
    OutcomeUnknownError,
    ReplicaNotFoundError,
)
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.runtime import Runtime
from dataclay.security import PermissionDeniedError
from dataclay.serialization import check, dumps, import_class, loads, make_ref
from dataclay.transport import run_blocking
from dataclay_backend import faults, replica_plan
from dataclay_backend.directory_client import DirectoryClient
from dataclay_backend.heap import MOVE_CHAIN_PREFIX, lock_of
from dataclay_backend.locking import ObjectLocks
from dataclay_backend.object_store import StoredObject
from dataclay_backend.objects import LocalObjects
from dataclay_backend.resolve_later import resolve_later
from dataclay_backend.validation import property_of
from dataclay_backend.walk import Walk

log = logging.getLogger(__name__)

SEND_BYTES = 4 * 1024 * 1024  # states per StoreReplicas message when a replica is made
# The directory said "not committed" for sure: the replica was not recorded.
_REFUSED = (BackendDrainingError, BackendNotFoundError, InvalidRequestError, ObjectNotRegisteredError,
            PermissionDeniedError)


def _as_bytes(state: Any) -> bytes:
    if isinstance(state, bytes):
        return state
    buffer = io.BytesIO()  # a large immutable state (state.ImmutableState) writes itself
    state.write_to(buffer)
    return buffer.getvalue()


class Replicas:
    """Collaborators: the owned objects and their locks, the directory, `peers` (the transport
    to other backends and their addresses) and `locate` (an id not owned here -> the typed
    error saying where it is)."""

    def __init__(self, objects: LocalObjects, locks: ObjectLocks, directory: DirectoryClient, peers: Runtime,
                 locate: Callable[[UUID], Any]) -> None:
        self.objects = objects
        self.locks = locks
        self.directory = directory
        self.peers = peers
        self.locate = locate
        self.holders: dict[UUID, set[UUID]] = {}  # master side: object id -> replica holders (see docstring)
        self._lock = threading.Lock()

    # ================================================================== master side
    def of(self, object_id: UUID) -> set[UUID]:
        return self.holders.get(object_id, set())

    def _add(self, object_ids: list[UUID], holder: UUID) -> None:
        with self._lock:
            for object_id in object_ids:
                self.holders.setdefault(object_id, set()).add(holder)

    def _remove(self, object_ids: list[UUID], holder: UUID) -> None:
        with self._lock:
            for object_id in object_ids:
                holders = self.holders.get(object_id)
                if holders is not None:
                    holders.discard(holder)
                    if not holders:
                        del self.holders[object_id]

    def new_replica(self, roots: list[UUID], destination: UUID | None, recursive: bool,
                    caller_chain: str | None = None) -> pb.NewReplicaReply:
        """Replicate the roots (and, if recursive, what they reach through objects owned here)
        onto destination, or onto a backend picked as dataClay does (replica_plan). Objects the
        destination already holds (or owns) are skipped: a no-op, not an error. A call chain
        that holds a root (an active method of it asking for its replica) is refused at once:
        the replica would copy a change not stored yet, and waiting would wait for itself."""
        me = self.objects.backend_id
        for root in roots:
            if root not in self.objects.owned:
                self.locate(root)  # raises where it is (the caller follows), or that it does not exist
            elif caller_chain is not None and self._held_by(root, caller_chain):
                raise InvalidRequestError(
                    f"new_replica() of object {root} from a call that holds it (its own active method, or one that "
                    "changed it): its change is not stored yet; call new_replica() after that call returns",
                    object_id=root)
        backends = run_blocking(ops.get_backends(self.peers, self.peers.blocking))
        if destination is None:
            destination = replica_plan.choose_destination(backends.values(), me, self.of(roots[0]))
        elif destination != me:
            info = backends.get(destination)
            if info is None:
                raise BackendNotFoundError(f"no backend {destination} is registered", backend_id=destination)
            replica_plan.check_destination(info)
        walk = Walk(self.objects, self.locks, self.locate, roots, recursive, False,
                    f"{MOVE_CHAIN_PREFIX}replica-{uuid.uuid4().hex[:12]}")
        try:
            records: list[pb.ObjectRecord] = []
            for batch in walk.batches():
                for object_id, path, data, revision in batch:
                    if replica_plan.needs_replica(object_id, destination, me, self.holders):
                        records.append(pb.ObjectRecord(object_id=object_id.bytes, class_path=path,
                                                       state=data, revision=revision))
            replicated = [UUID(bytes=record.object_id) for record in records]
            if records:
                self._create(records, replicated, destination)
            return pb.NewReplicaReply(destination=destination.bytes, replicated_ids=[i.bytes for i in replicated],
                                      frontier=walk.frontier_entries())
        finally:
            walk.release()  # held while the replica is made: no change can slip between copy and record

    def _held_by(self, object_id: UUID, chain: str) -> bool:
        return lock_of(self.objects.instance(object_id, self.objects.owned[object_id])).owner == chain

    def _create(self, records: list[pb.ObjectRecord], replicated: list[UUID], destination: UUID) -> None:
        """Send the states, then record the replicas (in memory first: see the docstring)."""
        target = run_blocking(ops.backend_info(self.peers, self.peers.blocking, destination))
        part: list[pb.ObjectRecord] = []
        size = 0
        for record in records:
            part.append(record)
            size += len(record.state)
            if size >= SEND_BYTES:
                self._send(target, part, destination)
                part, size = [], 0
        if part:
            self._send(target, part, destination)
        self._add(replicated, destination)
        try:
            self.directory.add_replicas(replicated, destination)
        except _REFUSED:
            self._remove(replicated, destination)
            self._forget_at(destination, replicated)
            raise
        except Exception as exc:  # it may have been recorded: keep sending it changes (a superset is safe)
            raise OutcomeUnknownError(
                f"{len(replicated)} replica(s) were sent to backend {destination}, but the metadata service did not "
                f"confirm recording them ({exc}); they are kept in sync either way: call new_replica again to be sure",
                backend_id=destination) from None

    def _send(self, target: Any, records: list[pb.ObjectRecord], destination: UUID) -> None:
        request = pb.ReplicaStates(master_backend_id=self.objects.backend_id.bytes,
                                   destination_backend_id=destination.bytes, objects=records)
        run_blocking(self.peers.blocking.backend(target, "StoreReplicas", request))

    def propagate(self, rows: list[StoredObject]) -> None:
        """A change just committed here (the writers still hold the objects' locks): send it to
        every holder of a replica of them, in parallel; drop from the directory, before
        returning, each holder that did not confirm. Nothing at all for objects without replicas."""
        plan = replica_plan.fan_out([row.object_id for row in rows], self.holders)
        if not plan:
            return
        by_id = {row.object_id: row for row in rows}
        me = self.objects.backend_id.bytes
        requests = {holder: pb.ReplicaStates(master_backend_id=me, destination_backend_id=holder.bytes, objects=[
            pb.ObjectRecord(object_id=i.bytes, class_path=by_id[i].class_path, state=_as_bytes(by_id[i].state),
                            revision=by_id[i].revision) for i in object_ids]) for holder, object_ids in plan.items()}
        failures = self._send_all(requests)
        known = {holder: self.peers.backends.get(holder) for holder in failures}
        if any(type(exc) is BackendUnavailableError for exc in failures.values()):  # never sent: a holder that
            try:                                                                   # restarted elsewhere?
                current = run_blocking(ops.get_backends(self.peers, self.peers.blocking))
            except Exception:  # the directory is down too: _drop says the outcome is unknown
                current = {}
            again = {h: requests[h] for h in failures if current.get(h) is not None and current.get(h) != known[h]}
            if again:
                for holder in again:
                    del failures[holder]
                failures.update(self._send_all(again))
        faults.hit("replicas.after_propagate")
        for holder, object_ids in replica_plan.unconfirmed(plan, failures).items():
            log.warning("replica holder %s did not confirm a change of %d object(s) (%s): dropping its replicas",
                        holder, len(object_ids), failures[holder])
            self._drop(object_ids, holder, failures[holder])

    def _send_all(self, requests: dict[UUID, pb.ReplicaStates]) -> dict[UUID, BaseException]:
        """StoreReplicas to every holder at once; the holders that did not confirm, with why."""
        failures: dict[UUID, BaseException] = {}
        waits: dict[UUID, Callable[[], Any]] = {}
        if len(requests) == 1:  # the common case: a plain call from this thread is cheaper than a future
            ((holder, request),) = requests.items()
            try:
                info = run_blocking(ops.backend_info(self.peers, self.peers.blocking, holder))
                run_blocking(self.peers.blocking.backend(info, "StoreReplicas", request))
            except Exception as exc:
                failures[holder] = exc
            return failures
        for holder, request in requests.items():
            try:
                info = run_blocking(ops.backend_info(self.peers, self.peers.blocking, holder))
                waits[holder] = self.peers.blocking.start(info, "StoreReplicas", request)
            except Exception as exc:
                failures[holder] = exc
        for holder, wait in waits.items():
            try:
                wait()
            except Exception as exc:
                failures[holder] = exc
        return failures

    def _drop(self, object_ids: list[UUID], holder: UUID, why: BaseException) -> None:
        """Remove replicas from the directory (then from `holders`); OutcomeUnknownError if the
        directory cannot be told now (it is retried in the background)."""
        try:
            self._drop_listed(object_ids, holder)
        except Exception as exc:
            resolve_later(lambda: self._drop_listed(object_ids, holder) or True,
                          f"dropping {len(object_ids)} replica(s) on backend {holder} that missed a change")
            raise OutcomeUnknownError(
                f"the change is stored on backend {self.objects.name}, but replica holder {holder} did not confirm it "
                f"({why}) and the metadata service could not be told to drop that replica ({exc}); read the object "
                "from its master before relying on the change", backend_id=holder) from None

    def _drop_listed(self, object_ids: list[UUID], holder: UUID) -> None:
        try:
            self.directory.drop_replicas(object_ids, holder)
        except PermissionDeniedError:  # not ours any more (moved away): its new master keeps them
            pass
        self._remove(object_ids, holder)

    def release(self, object_ids: list[UUID], holder: UUID, rehome: bool) -> list[pb.ReplicaEntry]:
        """(drain) Take replicas of objects owned here off `holder`: first, if asked, make one on
        another backend that holds no copy (when there is one), then drop it from the directory
        and tell the holder. Returns the new placements."""
        owned = [object_id for object_id in object_ids if object_id in self.objects.owned]
        placed: list[pb.ReplicaEntry] = []
        if rehome:
            for object_id in owned:
                try:
                    reply = self.new_replica([object_id], None, False)
                except NoBackendAvailableError:
                    continue  # every other backend holds a copy already
                placed += [pb.ReplicaEntry(object_id=raw, backend_id=reply.destination,
                                           master_backend_id=self.objects.backend_id.bytes) for raw in reply.replicated_ids]
        if owned:
            self._drop_listed(owned, holder)
            self._forget_at(holder, owned)
        return placed

    def _forget_at(self, holder: UUID, object_ids: list[UUID]) -> None:
        """Best effort: a holder that keeps rows the directory does not list never serves them
        (`read` checks) and deletes them at its next start."""
        try:
            info = run_blocking(ops.backend_info(self.peers, self.peers.blocking, holder))
            run_blocking(self.peers.blocking.backend(
                info, "ForgetReplicas", pb.ObjectIdList(object_ids=[i.bytes for i in object_ids])))
        except Exception as exc:
            log.info("could not tell backend %s to delete %d replica(s) (it does at its next start): %s",
                     holder, len(object_ids), exc)

    # ------------------------------------------------------------------ moves of masters
    def moved_away(self, walk: Walk) -> None:
        """A committed move took the walk's objects: their new master keeps their replicas now.
        (Nothing to do, and nothing read from the walk, when no object here has replicas.)"""
        if self.holders:
            with self._lock:
                for object_id in walk.ids():
                    self.holders.pop(object_id, None)

    def arrived(self, holders: dict[UUID, set[UUID]]) -> None:
        """A move made this backend the master of these objects, with these holders (from the
        transfer); a replica this backend held of one is its own copy now."""
        me = self.objects.backend_id
        held_here = [object_id for object_id, backends in holders.items() if me in backends]
        with self._lock:
            for object_id, backends in holders.items():
                others = backends - {me}
                if others:
                    self.holders.setdefault(object_id, set()).update(others)
        if held_here:
            self.objects.store.forget_replicas(held_here)

    # ================================================================== holder side
    def store(self, request: pb.ReplicaStates) -> None:
        """Create or update replicas sent by their master; every class path and state is checked
        before anything is stored (as a move's destination does)."""
        me = self.objects.backend_id
        if request.destination_backend_id != me.bytes:
            raise ClusterMismatchError(
                f"replicas meant for another backend reached backend {self.objects.name} ({me}): nothing was stored",
                backend_id=me)
        if request.master_backend_id == me.bytes:
            raise InvalidRequestError(f"backend {self.objects.name} owns these objects: it holds no replica of them")
        rows = []
        classes: set[str] = set()
        for record in request.objects:
            object_id = UUID(bytes=record.object_id) if len(record.object_id) == 16 else None
            if object_id is None:
                raise InvalidRequestError("a replica's object id must be 16 bytes")
            if record.class_path not in classes:
                import_class(record.class_path)
                classes.add(record.class_path)
            check(record.state)
            if object_id not in self.objects.owned:  # a master that moved here keeps its own state
                rows.append(StoredObject(object_id, record.class_path, record.revision or 1, record.state))
        faults.hit("replicas.before_store")
        self.objects.store.store_replicas(rows)

    def read(self, object_id: UUID, name: str) -> pb.ObjectRecord:
        """A fallback read: the replica's state (read first), served only if the directory
        still lists this backend as a holder after that (see the module docstring); with a
        name, that property's value."""
        stored = self.objects.store.load_replica(object_id)
        if stored is None:
            raise ReplicaNotFoundError(f"backend {self.objects.name} holds no replica of object {object_id}",
                                       object_id=object_id, backend_id=self.objects.backend_id)
        entry = self.directory.entry_of(object_id)
        if self.objects.backend_id.bytes not in entry.replica_backend_ids:
            self.objects.store.forget_replicas([object_id])
            raise ReplicaNotFoundError(
                f"backend {self.objects.name} no longer holds a replica of object {object_id} (it was dropped, e.g. "
                "after missing a change): read it from its master", object_id=object_id,
                backend_id=self.objects.backend_id)
        if not name:
            return pb.ObjectRecord(object_id=object_id.bytes, class_path=stored.class_path, state=stored.state,
                                   revision=stored.revision)
        cls = import_class(stored.class_path)
        property_of(cls, name, object_id)
        copy = cls.__new__(cls)  # a plain, detached object: never persistent, never run
        lc.assign(copy, lc.properties(loads(stored.state, self.peers.resolve)))
        return pb.ObjectRecord(object_id=object_id.bytes, class_path=stored.class_path,
                               state=dumps(getattr(copy, name), make_ref), revision=stored.revision)

    def forget(self, object_ids: list[UUID]) -> None:
        self.objects.store.forget_replicas(object_ids)

    # ================================================================== start
    def recover(self) -> None:
        """At start, after the owned objects agree with the directory: the holders of replicas
        of objects owned here, and the replicas held here that the directory still lists (the
        others are deleted)."""
        me = self.objects.backend_id
        mastered = self.directory.list_replicas(master=me)
        with self._lock:
            self.holders.clear()
            for entry in mastered:
                self.holders.setdefault(UUID(bytes=entry.object_id), set()).add(UUID(bytes=entry.backend_id))
        listed = {UUID(bytes=entry.object_id) for entry in self.directory.list_replicas(holder=me)}
        stale = [object_id for object_id in self.objects.store.replica_ids() if object_id not in listed]
        if stale:
            self.objects.store.forget_replicas(stale)
            log.info("recovery: deleted %d replica(s) the directory no longer lists here", len(stale))
