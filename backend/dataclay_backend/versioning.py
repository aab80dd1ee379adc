"""Versions, on one backend: creating them, and both sides of consolidation.

The protocol is described in dataclay.proto ("versions"). A version carries its lineage
(dataclay.lifecycle.Lineage: parent, original, parent's revision when derived) in its
persisted state. Consolidation locks the version (and its versioned sub-objects, for recursive
versions), then walks up the lineage one level at a time (dataclay_backend.lineage): at each
level every member's state is prepared on the owner of its ancestor at that level. The
preparing owner checks the ancestor's revision against the one recorded when its child was
derived (VersionConflictError otherwise, unless forced) and keeps it locked. Then one metadata
transaction (the commit point) commits and retires the members, and every owner applies. A
lineage that lives on this backend alone consolidates in one local SQLite transaction instead.
"""
from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from uuid import UUID

from dataclay import lifecycle as lc
from dataclay import operations as ops
from dataclay.exceptions import (
    ObjectIsNotVersionError,
    ObjectMovingError,
    ObjectWithWrongBackendIdError,
    OutcomeUnknownError,
    VersionConflictError,
    retired_error,
)
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.runtime import Runtime
from dataclay.serialization import Ref, class_path, dumps, make_ref
from dataclay.transport import CURRENT_CHAIN, BackendInfo, run_blocking
from dataclay_backend import commit_point, faults
from dataclay_backend.directory_client import DirectoryClient
from dataclay_backend.incoming import Incoming
from dataclay_backend.lineage import properties_state, walk_lineage
from dataclay_backend.locking import ObjectLocks
from dataclay_backend.mover import FOLLOW_ATTEMPTS
from dataclay_backend.object_store import StoredObject
from dataclay_backend.objects import LocalObjects
from dataclay_backend.registrations import Registrations, stored_rows, unsent
from dataclay_backend.replicas import Replicas
from dataclay_backend.resolve_later import resolve_later
from dataclay_backend.scope import SCOPE
from dataclay_backend.state import digest_if_needed
from dataclay_backend.walk import lock_closure

log = logging.getLogger(__name__)


@dataclass
class _Prepared:
    """A transaction prepared here: the objects it holds locked, and its timeout."""

    objects: list[Any] = field(default_factory=list)
    timer: threading.Timer | None = None


class Versioning:
    """Collaborators: the owned objects and their locks, the directory (the commit point),
    `peers` (other backends), `locate` (an id -> the owned object, or the typed error saying
    where it is), `incoming` (storing new versions here), `new_chain`, how long a prepared
    transaction waits for its coordinator, and `registrations` (which tell the directory of
    versions retired here)."""

    def __init__(
        self, objects: LocalObjects, locks: ObjectLocks, directory: DirectoryClient, peers: Runtime,
        locate: Callable[[UUID], Any], incoming: Incoming, new_chain: Callable[[], str], participant_timeout: float,
        replicas: Replicas, registrations: Registrations,
    ) -> None:
        self.replicas = replicas
        self.registrations = registrations
        self.objects = objects
        self.locks = locks
        self.directory = directory
        self.peers = peers
        self.locate = locate
        self.incoming = incoming
        self.new_chain = new_chain
        self.participant_timeout = participant_timeout
        self._lock = threading.Lock()
        self._prepared: dict[UUID, _Prepared] = {}
        self.retired: dict[UUID, tuple[UUID, bool]] = {}  # version id -> (original id, consolidated), since start

    def _lock_closure(self, root: UUID, recursive: bool, chain: str) -> list[Any]:
        """Lock root (and what it reaches, if recursive). A root that left while we waited for
        it is followed: `locate` raises where it went, or that its owner is in doubt."""
        for _ in range(FOLLOW_ATTEMPTS):
            locked = lock_closure(self.objects, self.locks, self.locate, [root], recursive, chain)
            if locked and locked[0].__dict__[lc.ID] == root:
                return locked
            self.locks.release_all(locked)
            self.locate(root)  # raises where it went; returns if it is ours again: try again
        raise ObjectMovingError(f"object {root} kept changing owner during {FOLLOW_ATTEMPTS} attempts; try again",
                                object_id=root)

    # ================================================================== new_version
    def new_version(self, object_id: UUID, destination: UUID | None, recursive: bool) -> pb.ObjectEntry:
        """Copy the object (and, if recursive, what it reaches through objects owned here) into
        new objects that record where they came from."""
        objects = self.objects
        self.locate(object_id)  # raises where it is, or that it does not exist
        target = destination or objects.backend_id
        scope = SCOPE.get()
        chain = scope.chain if scope else self.new_chain()
        locked = self._lock_closure(object_id, recursive, chain)
        try:
            copies = {obj.__dict__[lc.ID]: uuid.uuid4() for obj in locked}

            def remap(ref_obj: Any) -> Ref:
                ref = make_ref(ref_obj)
                copy = copies.get(ref_obj.__dict__[lc.ID])
                return Ref(copy.bytes, ref.class_path, target.bytes) if copy else ref

            records = []
            lineages: dict[UUID, lc.Lineage] = {}
            for obj in locked:
                objects.ready(obj)
                meta = obj.__dict__
                parent = lc.lineage(obj)
                lineage = lc.Lineage(meta[lc.ID], parent.original if parent else meta[lc.ID], meta.get(lc.REVISION, 1))
                state = properties_state(obj)
                state[lc.VERSION] = tuple(lineage)
                lineages[copies[meta[lc.ID]]] = lineage
                records.append(pb.ObjectRecord(object_id=copies[meta[lc.ID]].bytes, class_path=class_path(type(obj)),
                                               state=dumps(state, remap)))
        finally:
            self.locks.release_all(locked)
        if target == objects.backend_id:
            self.incoming.store_records(records, "", lineages)
        else:
            info = run_blocking(ops.backend_info(self.peers, self.peers.blocking, target))
            run_blocking(self.peers.blocking.backend(info, "StoreObjects", pb.StoreObjectsRequest(objects=records)))
        root = records[0]
        return pb.ObjectEntry(object_id=root.object_id, class_path=root.class_path, backend_id=target.bytes)

    # ================================================================== coordinator
    def consolidate(self, version_id: UUID, force: bool, discard: bool) -> pb.ObjectEntry:
        """Consolidate (or discard) the version; the original's entry (with its owner, as the
        consolidation found it), which the version forwards to from now on (empty for a discard)."""
        version = self.objects.ensure_loaded(self.locate(version_id))
        lineage = lc.lineage(version)
        if lineage is None:
            raise ObjectIsNotVersionError(f"Object {version_id} is not a version!", object_id=version_id)
        txn = uuid.uuid4()
        chain = f"txn-{txn.hex[:12]}"
        chain_token = CURRENT_CHAIN.set(chain)
        locked = self._lock_closure(version_id, True, chain)
        owners: dict[UUID, UUID] = {}  # ancestor id -> its owner, for a lineage across backends
        try:
            for obj in locked:
                self.objects.ready(obj)
            members = [obj for obj in locked if lc.lineage(obj) is not None]  # the versioned objects
            if discard or self._lineage_is_here(members):
                self._consolidate_here(members, chain, force, discard)
            else:
                owners = self._consolidate_across(txn, chain, members, force)
        finally:
            self.locks.release_all(locked)
            CURRENT_CHAIN.reset(chain_token)
        if discard:
            return pb.ObjectEntry()
        owner = self.objects.backend_id if lineage.original in self.objects.owned else owners.get(lineage.original)
        return pb.ObjectEntry(object_id=lineage.original.bytes, class_path=class_path(type(version)),
                              backend_id=owner.bytes if owner else b"")

    def _consolidate_across(self, txn: UUID, chain: str, members: list[Any], force: bool) -> dict[UUID, UUID]:
        """The two-phase commit, for lineages that span backends (see module docstring).
        Returns the owner of each ancestor written."""
        participants: dict[UUID, BackendInfo | None] = {}  # backend id -> info (None: here)
        owners: dict[UUID, UUID] = {}
        try:
            base_revisions = self._prepare_all(txn, chain, members, force, participants, owners)
            faults.hit("consolidate.after_prepare")
            self._commit(txn, members, base_revisions)
        except OutcomeUnknownError:
            self._resolve_later(txn, members)  # participants resolve their own part, in the same way
            raise
        except BaseException:
            self._abort_all(txn, participants)
            raise
        faults.hit("consolidate.after_commit")
        for info in participants.values():
            if info is None:
                self.apply(txn, base_revisions)
                continue
            request = pb.ApplyWritesRequest(txn_id=txn.bytes, base_revisions=base_revisions)
            try:
                run_blocking(self.peers.blocking.backend(info, "ApplyWrites", request))
            except Exception as exc:  # it applies when it resolves the transaction
                log.warning("consolidation %s committed; %s will apply it later: %s", txn, info.describe(), exc)
        self._retire(members)
        return owners

    # ------------------------------------------------------- everything on this backend
    def _lineage_is_here(self, members: list[Any]) -> bool:
        """Whether every ancestor of every member lives here (then one local transaction is
        atomic, and no two-phase commit is needed)."""
        owned = self.objects.owned
        for member in members:
            parent: UUID | None = lc.lineage(member).parent
            while parent is not None:
                if parent not in owned:
                    return False
                ancestor = self.objects.ensure_loaded(self.objects.instance(parent, owned[parent]))
                lineage = lc.lineage(ancestor)
                parent = lineage.parent if lineage else None
        return True

    def _consolidate_here(self, members: list[Any], chain: str, force: bool, discard: bool) -> None:
        """Check every ancestor under its lock, then write them all and delete the members in
        one SQLite transaction, with their retired entries; the directory learns of the
        retirement right after the reply (_retired_entries)."""
        objects = self.objects
        held: list[Any] = []
        updates: list[tuple[Any, bytes, int]] = []

        def check(member: Any, parent_id: UUID, expected: int, state: bytes) -> tuple[int, lc.Lineage | None]:
            ancestor = self._hold_ancestor(parent_id, chain, held)
            revision = ancestor.__dict__.get(lc.REVISION, 1)
            if not force and revision != expected:
                raise self._conflict(ancestor, expected, revision)
            updates.append((ancestor, state, revision + 1))
            return revision + 1, lc.lineage(ancestor)

        retired = unsent(self._retired_entries(members, discard))
        try:
            base = {} if discard else walk_lineage(members, check)
            rows = []
            for ancestor, state, revision in updates:
                self._write_state(ancestor, state, revision, base)
                rows.append(StoredObject(ancestor.__dict__[lc.ID], class_path(type(ancestor)), revision,
                                         dumps(lc.persisted_state(ancestor), make_ref)))
            try:
                objects.store.write(rows, delete=[m.__dict__[lc.ID] for m in members], unregistered=stored_rows(retired))
            except BaseException:  # e.g. a full disk: the ancestors go back to what is stored
                for ancestor, _, _ in updates:
                    objects.unload(ancestor)
                raise
            for ancestor, row in zip((u[0] for u in updates), rows):
                objects.loaded.touch(row.object_id, ancestor, len(row.state))
        finally:
            self.locks.release_all(held)
        self.registrations.retired(retired)  # the directory learns it with the next batch
        self._retire(members, stored=False, consolidated=not discard)
        # The ancestors' replicas, before the reply (after the locks: a later change that reaches
        # a replica first keeps its newer revision there).
        self.replicas.propagate(rows)

    def _write_state(self, obj: Any, state: bytes, revision: int, base_revisions: dict[UUID, int]) -> None:
        """An ancestor takes the consolidated state (keeping its own lineage, whose base
        revision moves on if it is an intermediate version)."""
        own_lineage = lc.lineage(obj)
        lc.load(obj, self.peers.decode(state), revision)
        object_id = obj.__dict__[lc.ID]
        if own_lineage is not None:
            if object_id in base_revisions:
                own_lineage = own_lineage._replace(revision=base_revisions[object_id])
            lc.with_lineage(obj, own_lineage)
        obj.__dict__[lc.DIGEST] = digest_if_needed(obj)

    def _hold_ancestor(self, object_id: UUID, chain: str, held: list[Any]) -> Any:
        ancestor = self.objects.instance(object_id, self.objects.owned[object_id])
        self.locks.acquire(ancestor, chain, settled=True)
        held.append(ancestor)
        if not ancestor.__dict__[lc.LOCAL]:
            raise ObjectMovingError(f"object {object_id} moved away during the consolidation; try again",
                                    object_id=object_id)
        return self.objects.ready(ancestor)

    @staticmethod
    def _conflict(obj: Any, expected: int, revision: int) -> VersionConflictError:
        object_id = obj.__dict__[lc.ID]
        return VersionConflictError(
            f"object {object_id} ({type(obj).__name__}) changed since the version was taken (revision "
            f"{expected}, now {revision}); nothing was written. Consolidate with force=True to overwrite it.",
            object_id=object_id,
        )

    # ------------------------------------------------------- retired versions
    def check_not_retired(self, object_id: UUID) -> None:
        """A version retired here answers so (a consolidated one forwards to its original)."""
        retired = self.retired.get(object_id)
        if retired is not None:
            raise retired_error(object_id, *retired)

    def _retired_entries(self, members: list[Any], discarded: bool) -> list[pb.ObjectEntry]:
        """The members' directory entries, retired: stored with the consolidation and sent after
        the reply, with the next batch of registrations (registrations.py). If the directory
        lists the version live, the batch retires it; if its entry had not gone yet, it is
        registered retired (one call for both)."""
        how = pb.DISCARDED if discarded else pb.CONSOLIDATED
        entries = []
        for member in members:
            lineage = lc.lineage(member)
            entries.append(pb.ObjectEntry(
                object_id=member.__dict__[lc.ID].bytes, class_path=class_path(type(member)),
                backend_id=self.objects.backend_id.bytes, version_parent=lineage.parent.bytes,
                version_original=lineage.original.bytes, retired=how))
        return entries

    def _prepare_all(
        self, txn: UUID, chain: str, members: list[Any], force: bool, participants: dict[UUID, BackendInfo | None],
        owners: dict[UUID, UUID],
    ) -> dict[str, int]:
        """Prepare every ancestor on its owner (noted in `owners`); returns what the commit
        record must carry."""

        def prepare(member: Any, parent_id: UUID, expected: int, state: bytes) -> tuple[int, lc.Lineage | None]:
            reply, backend_id, info = self._prepare_one(txn, chain, member, parent_id, state, expected, force)
            participants[backend_id] = info
            owners[parent_id] = backend_id
            lineage = (lc.Lineage(UUID(bytes=reply.version_parent), None, reply.base_revision)  # type: ignore[arg-type]
                       if reply.version_parent else None)
            return reply.new_revision, lineage

        return {object_id.hex: revision for object_id, revision in walk_lineage(members, prepare).items()}

    def _commit(self, txn: UUID, members: list[Any], base_revisions: dict[str, int]) -> None:
        """The commit point. A failure that may have happened after the metadata service
        committed (a lost reply) is resolved by asking it: presumed abort makes that answer
        final. Returns only if committed; raises if not, or if it cannot be known yet."""
        retire = [m.__dict__[lc.ID].bytes for m in members]
        first = members[0].__dict__[lc.ID]

        def attempt(tries: int) -> None:
            if tries == 0:
                self.directory.commit_transaction(txn, retire, base_revisions)
            elif not self.directory.resolve_transaction(txn).committed:
                raise commit_point.NotCommitted

        def unknown(error: Exception) -> OutcomeUnknownError:
            return OutcomeUnknownError(
                f"the outcome of consolidating {first} is unknown (the metadata service did not answer: {error}); "
                "every backend involved resolves it with the metadata service once it is back", object_id=first)

        commit_point.reach(attempt, (VersionConflictError,), unknown)

    def _resolve_later(self, txn: UUID, members: list[Any]) -> None:
        """Retire the members once the metadata service says the consolidation committed."""

        def resolve() -> bool:
            if self.directory.resolve_transaction(txn).committed:
                self._retire(members)
            return True

        resolve_later(resolve, f"resolving consolidation {txn}")

    def _prepare_one(
        self, txn: UUID, chain: str, member: Any, ancestor_id: UUID, state: bytes, expected: int, force: bool
    ) -> tuple[pb.StageWriteReply, UUID, BackendInfo | None]:
        if ancestor_id in self.objects.owned:
            return self.prepare(txn, chain, ancestor_id, state, expected, force), self.objects.backend_id, None
        peers = self.peers
        ancestor = peers.instance(ancestor_id, class_path(type(member)), None)
        request = pb.StageWriteRequest(txn_id=txn.bytes, object_id=ancestor_id.bytes, state=state,
                                       expected_revision=expected, force=force)
        used: list[BackendInfo] = []

        async def perform(info: BackendInfo) -> pb.StageWriteReply:
            used.append(info)
            return await peers.blocking.backend(info, "StageWrite", request)

        reply = run_blocking(ops.with_owner(peers, peers.blocking, ancestor, perform))
        return reply, used[-1].id, used[-1]

    def _abort_all(self, txn: UUID, participants: dict[UUID, BackendInfo | None]) -> None:
        for info in participants.values():
            if info is None:
                self.abort(txn)
                continue
            try:
                run_blocking(self.peers.blocking.backend(info, "AbortWrites", pb.TransactionRequest(txn_id=txn.bytes)))
            except Exception as exc:  # it resolves the transaction (aborted) by itself
                log.warning("could not abort consolidation %s on %s: %s", txn, info.describe(), exc)

    def _retire(self, members: list[Any], stored: bool = True, consolidated: bool = True) -> None:
        """The versions were consolidated (or discarded): they are gone from here."""
        for member in members:
            self.retired[member.__dict__[lc.ID]] = (lc.lineage(member).original, consolidated)
        self.objects.give_up(members, None, delete_rows=stored)

    # ================================================================== participant
    def prepare(self, txn: UUID, chain: str, object_id: UUID, state: bytes, expected: int, force: bool) -> pb.StageWriteReply:
        """StageWrite: lock the ancestor, check it did not change, keep the new state durably
        as a prepared write of txn."""
        obj = self.locate(object_id)
        self.locks.acquire(obj, chain, settled=True)
        try:
            meta = obj.__dict__
            if not meta[lc.LOCAL]:
                raise ObjectWithWrongBackendIdError(f"object {object_id} moved", object_id=object_id,
                                                    backend_id=meta[lc.BACKEND])
            self.objects.ready(obj)
            revision = meta.get(lc.REVISION, 1)
            if not force and revision != expected:
                raise self._conflict(obj, expected, revision)
            self.objects.store.prepare_write(txn, StoredObject(object_id, class_path(type(obj)), revision + 1, state))
            faults.hit("prepare.after_write")
        except BaseException:
            self.locks.release(obj)
            raise
        with self._lock:
            prepared = self._prepared.setdefault(txn, _Prepared())
            prepared.objects.append(obj)
            if prepared.timer is None:
                prepared.timer = threading.Timer(self.participant_timeout, self.resolve, args=(txn,))
                prepared.timer.daemon = True
                prepared.timer.start()
        lineage = lc.lineage(obj)
        return pb.StageWriteReply(new_revision=revision + 1, version_parent=lineage.parent.bytes if lineage else b"",
                                  base_revision=lineage.revision if lineage else 0)

    def _release(self, txn: UUID) -> None:
        with self._lock:
            prepared = self._prepared.pop(txn, None)
        if prepared is not None:
            if prepared.timer is not None:
                prepared.timer.cancel()
            self.locks.release_all(prepared.objects)

    def apply(self, txn: UUID, base_revisions: dict[str, int]) -> None:
        """Commit: the prepared states become the objects' states (idempotent)."""
        faults.hit("apply.before")
        objects = self.objects
        rows = []
        bases = {UUID(hex=key): revision for key, revision in base_revisions.items()}
        for write in objects.store.prepared_writes(txn).get(txn, []):
            obj = objects.ready(objects.instance(write.object_id, write.class_path))
            self._write_state(obj, write.state, write.revision, bases)
            rows.append(StoredObject(write.object_id, write.class_path, write.revision,
                                     dumps(lc.persisted_state(obj), make_ref)))
        objects.store.write(rows)
        try:
            self.replicas.propagate(rows)  # before the prepared locks go
        finally:
            objects.store.forget_prepared(txn)
            self._release(txn)

    def abort(self, txn: UUID) -> None:
        self.objects.store.forget_prepared(txn)
        self._release(txn)

    def resolve(self, txn: UUID) -> None:
        """The coordinator went quiet (or we restarted): ask the metadata service."""
        try:
            self._resolve_once(txn)
        except Exception as exc:
            log.warning("cannot resolve consolidation %s yet: %s", txn, exc)
            resolve_later(lambda: self._resolve_once(txn) or True, f"resolving consolidation {txn}")

    def _resolve_once(self, txn: UUID) -> None:
        state = self.directory.resolve_transaction(txn)
        if state.committed:
            log.info("consolidation %s was committed: applying", txn)
            self.apply(txn, dict(state.base_revisions))
        else:
            log.info("consolidation %s was not committed: discarding", txn)
            self.abort(txn)

    def recover(self) -> None:
        for txn in self.objects.store.prepared_writes():
            self.resolve(txn)
