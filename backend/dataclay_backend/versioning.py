"""Versions, on one backend: creating them, and both sides of consolidation.

The protocol is described in dataclay.proto ("versions"). A version carries its lineage in its
persisted state under VERSION_KEY: (parent id, original id, parent's revision when derived).
Consolidation locks the version (and its versioned sub-objects, for recursive versions), then
walks up the lineage one level at a time: at each level every member's state is staged on the
owner of its ancestor at that level, with references between members rewritten to that level's
objects. The staging owner checks the ancestor's revision against the one recorded when its
child was derived (VersionConflictError otherwise, unless forced) and keeps it locked. Then one
metadata transaction commits and retires the members, and every owner applies.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable
from uuid import UUID

from dataclay import operations as ops
from dataclay.dataclay_object import DataClayObject
from dataclay.exceptions import (
    ObjectIsNotVersionError,
    ObjectMovingError,
    ObjectWithWrongBackendIdError,
    OutcomeUnknownError,
    VersionConflictError,
    VersionRetiredError,
)
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.serialization import Ref, class_path, dumps, make_ref
from dataclay.transport import CURRENT_CHAIN, BackendInfo, run_blocking
from dataclay_backend import faults
from dataclay_backend.backend_runtime import SCOPE, _digest_if_needed
from dataclay_backend.object_store import StoredObject
from dataclay_backend.retry import keep_trying

if TYPE_CHECKING:
    from dataclay_backend.backend_runtime import BackendRuntime

log = logging.getLogger(__name__)

VERSION_KEY = "_dc_version"
# A prepared write waits this long for the coordinator's decision, then asks the metadata service.
PARTICIPANT_TIMEOUT = float(os.environ.get("DC_CONSOLIDATION_TIMEOUT", "60"))


@dataclass
class _Prepared:
    """A transaction prepared here: the objects it holds locked, and its timeout."""

    objects: list[DataClayObject] = field(default_factory=list)
    timer: threading.Timer | None = None


def _properties(obj: DataClayObject) -> dict[str, Any]:
    state = obj._dc_state()
    state.pop(VERSION_KEY, None)
    return state


class Versioning:
    def __init__(self, rt: "BackendRuntime") -> None:
        self.rt = rt
        self._lock = threading.Lock()
        self._prepared: dict[UUID, _Prepared] = {}
        self.retired: dict[UUID, UUID] = {}  # version id -> original id, retired since start

    # ================================================================== new_version
    def new_version(self, object_id: UUID, destination: UUID | None, recursive: bool) -> pb.ObjectEntry:
        """Copy the object (and, if recursive, what it reaches through objects owned here) into
        new objects that record where they came from."""
        rt = self.rt
        rt.local_object(object_id)  # raises where it is, or that it does not exist
        target = destination or rt.local_backend_id
        scope = SCOPE.get()
        chain = scope.chain if scope else rt.new_chain()
        locked, _ = rt.mover.lock_closure([object_id], recursive, False, chain)
        try:
            copies = {obj.__dict__["_dc_id"]: uuid.uuid4() for obj in locked}

            def remap(ref_obj: DataClayObject) -> Ref:
                ref = make_ref(ref_obj)
                copy = copies.get(ref_obj.__dict__["_dc_id"])
                return (copy.bytes, ref[1], target.bytes) if copy else ref

            records = []
            lineages: dict[UUID, tuple[UUID, UUID]] = {}
            for obj in locked:
                meta = obj.__dict__
                if not meta["_dc_is_loaded"]:
                    rt.load_local(obj)
                lineage = meta.get(VERSION_KEY)
                state = _properties(obj)
                state[VERSION_KEY] = (meta["_dc_id"], lineage[1] if lineage else meta["_dc_id"], meta.get("_dc_revision", 1))
                lineages[copies[meta["_dc_id"]]] = state[VERSION_KEY][:2]
                records.append(pb.ObjectRecord(object_id=copies[meta["_dc_id"]].bytes, class_path=class_path(type(obj)),
                                               state=dumps(state, remap)))
        finally:
            for obj in locked:
                rt.lock_of(obj).release()
        if target == rt.local_backend_id:
            rt.store_records(records, "", lineages)
        else:
            info = run_blocking(ops.backend_info(rt, rt.blocking, target))
            run_blocking(rt.blocking.backend(info, "StoreObjects", pb.StoreObjectsRequest(objects=records)))
        root = records[0]
        return pb.ObjectEntry(object_id=root.object_id, class_path=root.class_path, backend_id=target.bytes)

    # ================================================================== coordinator
    def consolidate(self, version_id: UUID, force: bool, discard: bool) -> None:
        rt = self.rt
        version = rt.local_object(version_id)
        if not version.__dict__["_dc_is_loaded"]:
            rt.load_local(version)
        if VERSION_KEY not in version.__dict__:
            raise ObjectIsNotVersionError(f"object {version_id} is not a version", object_id=version_id)
        txn = uuid.uuid4()
        chain = f"txn-{txn.hex[:12]}"
        chain_token = CURRENT_CHAIN.set(chain)
        locked, _ = rt.mover.lock_closure([version_id], True, False, chain)
        try:
            for obj in locked:
                if not obj.__dict__["_dc_is_loaded"]:
                    rt.load_local(obj)
            members = [obj for obj in locked if VERSION_KEY in obj.__dict__]  # the versioned objects
            if discard or self._lineage_is_here(members):
                self._consolidate_here(members, chain, force, discard)
            else:
                self._consolidate_across(txn, chain, members, force)
        finally:
            for obj in locked:
                rt.lock_of(obj).release()
            CURRENT_CHAIN.reset(chain_token)

    def _consolidate_across(self, txn: UUID, chain: str, members: list[DataClayObject], force: bool) -> None:
        """The two-phase commit, for lineages that span backends (see module docstring)."""
        rt = self.rt
        participants: dict[UUID, BackendInfo | None] = {}  # backend id -> info (None: here)
        try:
            base_revisions = self._stage_all(txn, chain, members, force, participants)
            faults.hit("consolidate.after_stage")
            self._commit(txn, members, base_revisions)
        except OutcomeUnknownError:
            self._settle_later(txn, members)  # participants settle their own part, in the same way
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
                run_blocking(rt.blocking.backend(info, "ApplyWrites", request))
            except Exception as exc:  # it applies when it resolves the transaction
                log.warning("consolidation %s committed; %s will apply it later: %s", txn, info.describe(), exc)
        self._retire(members)

    # ------------------------------------------------------- everything on this backend
    def _lineage_is_here(self, members: list[DataClayObject]) -> bool:
        """Whether every ancestor of every member lives here (then one local transaction is
        atomic, and no two-phase commit is needed)."""
        rt = self.rt
        for member in members:
            parent = member.__dict__[VERSION_KEY][0]
            while parent is not None:
                if parent not in rt.owned:
                    return False
                ancestor = rt.local_instance(parent, rt.owned[parent])
                if not ancestor.__dict__["_dc_is_loaded"]:
                    rt.load_local(ancestor)
                lineage = ancestor.__dict__.get(VERSION_KEY)
                parent = lineage[0] if lineage else None
        return True

    def _consolidate_here(self, members: list[DataClayObject], chain: str, force: bool, discard: bool) -> None:
        """Check every ancestor under its lock, then write them all and delete the members in
        one SQLite transaction; the directory learns of the retirement right after."""
        rt = self.rt
        held: list[DataClayObject] = []
        updates: list[tuple[DataClayObject, bytes, int]] = []

        def check(member: DataClayObject, parent_id: UUID, expected: int, state: bytes) -> tuple[int, tuple | None]:
            ancestor = self._hold_ancestor(parent_id, chain, held)
            revision = ancestor.__dict__.get("_dc_revision", 1)
            if not force and revision != expected:
                raise self._conflict(ancestor, expected, revision)
            updates.append((ancestor, state, revision + 1))
            return revision + 1, ancestor.__dict__.get(VERSION_KEY)

        try:
            base = {} if discard else self._walk_lineage(members, check)
            rows = []
            for ancestor, state, revision in updates:
                meta = ancestor.__dict__
                for name in ancestor._dc_properties:
                    meta.pop(name, None)
                meta.update(rt.decode(state))
                if meta["_dc_id"] in base:
                    meta[VERSION_KEY] = (*meta[VERSION_KEY][:2], base[meta["_dc_id"]])
                meta.update(_dc_revision=revision, _dc_digest=_digest_if_needed(ancestor))
                rows.append(StoredObject(meta["_dc_id"], class_path(type(ancestor)), revision,
                                         dumps(ancestor._dc_state(), make_ref)))
            rt.store.write(rows, delete=[m.__dict__["_dc_id"] for m in members])
            for row in rows:
                rt.loaded.touch(row.object_id, rt.heap[row.object_id], len(row.state))
        finally:
            for ancestor in held:
                rt.lock_of(ancestor).release()
        self._retire(members, stored=False)
        self._announce_retired(members)

    @staticmethod
    def _walk_lineage(
        members: list[DataClayObject], visit: Callable[[DataClayObject, UUID, int, bytes], tuple[int, tuple | None]]
    ) -> dict[UUID, int]:
        """Walk up the lineage one level at a time. At each level, every member's state, with
        references between members rewritten to that level's objects, goes to
        `visit(member, ancestor id, revision the ancestor must still have, state)`, which
        returns the ancestor's new revision and its own lineage (None for an original).
        Returns the new base revision of each intermediate version."""
        base: dict[UUID, int] = {}
        lineage = {m.__dict__["_dc_id"]: m.__dict__[VERSION_KEY] for m in members}
        current = {m.__dict__["_dc_id"]: m.__dict__["_dc_id"] for m in members}  # member -> object at this level
        while lineage:
            level = {member: parent for member, (parent, _, _) in lineage.items()}

            def remap(ref_obj: DataClayObject) -> Ref:
                ref = make_ref(ref_obj)
                object_id = ref_obj.__dict__["_dc_id"]
                ancestor = level.get(object_id) or (current[object_id] if current.get(object_id, object_id) != object_id else None)
                return (ancestor.bytes, ref[1], b"") if ancestor else ref

            next_lineage = {}
            for member in members:
                member_id = member.__dict__["_dc_id"]
                if member_id not in lineage:
                    continue
                parent_id, _, expected = lineage[member_id]
                new_revision, parent_lineage = visit(member, parent_id, expected, dumps(_properties(member), remap))
                if current[member_id] != member_id:  # an intermediate version: its base moves on
                    base[current[member_id]] = new_revision
                current[member_id] = parent_id
                if parent_lineage:
                    next_lineage[member_id] = parent_lineage
            lineage = next_lineage
        return base

    def _hold_ancestor(self, object_id: UUID, chain: str, held: list[DataClayObject]) -> DataClayObject:
        rt = self.rt
        ancestor = rt.local_instance(object_id, rt.owned[object_id])
        rt.acquire(ancestor, chain, settled=True)
        held.append(ancestor)
        if not ancestor.__dict__["_dc_is_local"]:
            raise ObjectMovingError(f"object {object_id} moved away during the consolidation; try again",
                                    object_id=object_id)
        if not ancestor.__dict__["_dc_is_loaded"]:
            rt.load_local(ancestor)
        return ancestor

    @staticmethod
    def _conflict(obj: DataClayObject, expected: int, revision: int) -> VersionConflictError:
        object_id = obj.__dict__["_dc_id"]
        return VersionConflictError(
            f"object {object_id} ({type(obj).__name__}) changed since the version was taken (revision "
            f"{expected}, now {revision}); nothing was written. Consolidate with force=True to overwrite it.",
            object_id=object_id,
        )

    # ------------------------------------------------------- retired versions
    def check_not_retired(self, object_id: UUID) -> None:
        original = self.retired.get(object_id)
        if original is not None:
            raise VersionRetiredError(
                f"version {object_id} was consolidated or discarded; use its original {original}",
                object_id=object_id, original_id=original,
            )

    def _announce_retired(self, members: list[DataClayObject]) -> None:
        """Tell the directory after replying (this backend answers for them meanwhile). If we
        crash first, recovery removes their entries: the directory never lists them as live."""
        ids = [m.__dict__["_dc_id"].bytes for m in members]

        def announce() -> bool:
            run_blocking(self.rt.blocking.metadata("CommitTransaction", pb.TransactionRequest(
                txn_id=uuid.uuid4().bytes, retire=ids)))
            return True

        keep_trying(announce, f"telling the directory that {len(ids)} versions retired", delay=0.0)

    def _stage_all(
        self, txn: UUID, chain: str, members: list[DataClayObject], force: bool,
        participants: dict[UUID, BackendInfo | None],
    ) -> dict[str, int]:
        """Prepare every ancestor on its owner; returns what the commit record must carry."""

        def stage(member: DataClayObject, parent_id: UUID, expected: int, state: bytes) -> tuple[int, tuple | None]:
            reply, backend_id, info = self._stage_one(txn, chain, member, parent_id, state, expected, force)
            participants[backend_id] = info
            lineage = (UUID(bytes=reply.version_parent), None, reply.base_revision) if reply.version_parent else None
            return reply.new_revision, lineage

        return {object_id.hex: revision for object_id, revision in self._walk_lineage(members, stage).items()}

    def _commit(self, txn: UUID, members: list[DataClayObject], base_revisions: dict[str, int]) -> None:
        """The commit point. A failure that may have happened after the metadata service
        committed (a lost reply) is settled by asking it: presumed abort makes that answer
        final. Returns only if committed; raises if not, or if it cannot be known yet."""
        rt = self.rt
        request = pb.TransactionRequest(txn_id=txn.bytes, retire=[m.__dict__["_dc_id"].bytes for m in members],
                                        base_revisions=base_revisions)
        try:
            run_blocking(rt.blocking.metadata("CommitTransaction", request))
            return
        except VersionConflictError:
            raise  # definitely not committed
        except Exception as failure:
            error: Exception = failure
        for delay in (0.1, 0.5, 1.0, 2.0):
            time.sleep(delay)  # bounded backoff before asking again
            try:
                state = run_blocking(rt.blocking.metadata("ResolveTransaction", pb.TransactionRequest(txn_id=txn.bytes)))
            except Exception as exc:
                error = exc
                continue
            if state.committed:
                return
            raise error
        raise OutcomeUnknownError(
            f"the outcome of consolidating {members[0].__dict__['_dc_id']} is unknown (the metadata service did not "
            f"answer: {error}); every backend involved settles it with the metadata service once it is back",
            object_id=members[0].__dict__["_dc_id"],
        )

    def _settle_later(self, txn: UUID, members: list[DataClayObject]) -> None:
        """Retire the members once the metadata service says the consolidation committed."""

        def settle() -> bool:
            state = run_blocking(self.rt.blocking.metadata("ResolveTransaction", pb.TransactionRequest(txn_id=txn.bytes)))
            if state.committed:
                self._retire(members)
            return True

        keep_trying(settle, f"settling consolidation {txn}")

    def _stage_one(
        self, txn: UUID, chain: str, member: DataClayObject, ancestor_id: UUID, state: bytes, expected: int, force: bool
    ) -> tuple[pb.StageWriteReply, UUID, BackendInfo | None]:
        rt = self.rt
        if ancestor_id in rt.owned:
            return self.stage(txn, chain, ancestor_id, state, expected, force), rt.local_backend_id, None
        ancestor = rt.instance(ancestor_id, class_path(type(member)), None)
        request = pb.StageWriteRequest(txn_id=txn.bytes, object_id=ancestor_id.bytes, state=state,
                                       expected_revision=expected, force=force)
        used: list[BackendInfo] = []

        async def perform(info: BackendInfo) -> pb.StageWriteReply:
            used.append(info)
            return await rt.blocking.backend(info, "StageWrite", request)

        reply = run_blocking(ops.with_owner(rt, rt.blocking, ancestor, perform))
        return reply, used[-1].id, used[-1]

    def _abort_all(self, txn: UUID, participants: dict[UUID, BackendInfo | None]) -> None:
        for info in participants.values():
            if info is None:
                self.abort(txn)
                continue
            try:
                run_blocking(self.rt.blocking.backend(info, "AbortWrites", pb.TransactionRequest(txn_id=txn.bytes)))
            except Exception as exc:  # it resolves the transaction (aborted) by itself
                log.warning("could not abort consolidation %s on %s: %s", txn, info.describe(), exc)

    def _retire(self, members: list[DataClayObject], stored: bool = True) -> None:
        """The versions were consolidated (or discarded): they are gone from here."""
        for member in members:
            self.retired[member.__dict__["_dc_id"]] = member.__dict__[VERSION_KEY][1]
        self.rt.became_remote(members, None, delete_rows=stored)

    # ================================================================== participant
    def stage(self, txn: UUID, chain: str, object_id: UUID, state: bytes, expected: int, force: bool) -> pb.StageWriteReply:
        """Prepare: lock the ancestor, check it did not change, keep the new state durably."""
        rt = self.rt
        obj = rt.local_object(object_id)
        lock = rt.lock_of(obj)
        rt.acquire(obj, chain, settled=True)
        try:
            meta = obj.__dict__
            if not meta["_dc_is_local"]:
                raise ObjectWithWrongBackendIdError(f"object {object_id} moved", object_id=object_id,
                                                    backend_id=meta["_dc_backend_id"])
            if not meta["_dc_is_loaded"]:
                rt.load_local(obj)
            revision = meta.get("_dc_revision", 1)
            if not force and revision != expected:
                raise self._conflict(obj, expected, revision)
            rt.store.stage_write(txn, StoredObject(object_id, class_path(type(obj)), revision + 1, state))
            faults.hit("stage.after_write")
        except BaseException:
            lock.release()
            raise
        with self._lock:
            prepared = self._prepared.setdefault(txn, _Prepared())
            prepared.objects.append(obj)
            if prepared.timer is None:
                prepared.timer = threading.Timer(PARTICIPANT_TIMEOUT, self.resolve, args=(txn,))
                prepared.timer.daemon = True
                prepared.timer.start()
        lineage = meta.get(VERSION_KEY)
        return pb.StageWriteReply(new_revision=revision + 1, version_parent=lineage[0].bytes if lineage else b"",
                                  base_revision=lineage[2] if lineage else 0)

    def _release(self, txn: UUID) -> None:
        with self._lock:
            prepared = self._prepared.pop(txn, None)
        if prepared is not None:
            if prepared.timer is not None:
                prepared.timer.cancel()
            for obj in prepared.objects:
                self.rt.lock_of(obj).release()

    def apply(self, txn: UUID, base_revisions: dict[str, int]) -> None:
        """Commit: the prepared states become the objects' states (idempotent)."""
        faults.hit("apply.before")
        rt = self.rt
        rows = []
        for write in rt.store.staged_writes(txn).get(txn, []):
            obj = rt.local_instance(write.object_id, write.class_path)
            meta = obj.__dict__
            if not meta["_dc_is_loaded"]:
                rt.load_local(obj)
            for name in obj._dc_properties:
                meta.pop(name, None)
            meta.update(rt.decode(write.state))
            lineage = meta.get(VERSION_KEY)
            if lineage and write.object_id.hex in base_revisions:
                meta[VERSION_KEY] = (lineage[0], lineage[1], base_revisions[write.object_id.hex])
            data = dumps(obj._dc_state(), make_ref)
            meta.update(_dc_revision=write.revision, _dc_digest=_digest_if_needed(obj))
            rows.append(StoredObject(write.object_id, write.class_path, write.revision, data))
        rt.store.write(rows)
        rt.store.forget_writes(txn)
        self._release(txn)

    def abort(self, txn: UUID) -> None:
        self.rt.store.forget_writes(txn)
        self._release(txn)

    def resolve(self, txn: UUID) -> None:
        """The coordinator went quiet (or we restarted): ask the metadata service."""
        try:
            self._resolve_once(txn)
        except Exception as exc:
            log.warning("cannot resolve consolidation %s yet: %s", txn, exc)
            keep_trying(lambda: self._resolve_once(txn) or True, f"resolving consolidation {txn}")

    def _resolve_once(self, txn: UUID) -> None:
        state = run_blocking(self.rt.blocking.metadata("ResolveTransaction", pb.TransactionRequest(txn_id=txn.bytes)))
        if state.committed:
            log.info("consolidation %s was committed: applying", txn)
            self.apply(txn, dict(state.base_revisions))
        else:
            log.info("consolidation %s was not committed: discarding", txn)
            self.abort(txn)

    def recover(self) -> None:
        for txn in self.rt.store.staged_writes():
            self.resolve(txn)
