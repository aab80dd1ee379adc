"""Moves, both sides, on one backend. The protocol is described in dataclay.proto ("moves").

Source: lock the closure (calls on those objects wait; a move of its own chain re-enters), stream
the states in chunks of about CHUNK_BYTES to the destination, commit in the directory, have the
destination activate, drop the local copies, release the locks. Held calls then find a proxy and
are forwarded to the new owner. Any failure before the commit aborts the staged copy and changes
nothing. Destination: stage what arrives, activate on request, or when a call for a staged object
arrives and the directory already names us (the source may have died right after the commit).
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Callable, Iterable, Iterator
from uuid import UUID

from dataclay import operations as ops
from dataclay.dataclay_object import DataClayObject
from dataclay.exceptions import (
    BackendDrainingError,
    BackendNotFoundError,
    InvalidRequestError,
    ObjectMovingError,
    OutcomeUnknownError,
)
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.serialization import Ref, class_path, dumps, import_class, loads, make_ref, may_reference
from dataclay.transport import run_blocking
from dataclay_backend import faults
from dataclay_backend.backend_runtime import SCOPE, is_settled
from dataclay_backend.wire import parse_uuid
from dataclay_backend.heap import MOVE_CHAIN_PREFIX, ChainLock
from dataclay_backend.object_store import StoredObject
from dataclay_backend.retry import keep_trying

if TYPE_CHECKING:
    from dataclay_backend.backend_runtime import BackendRuntime

log = logging.getLogger(__name__)

CHUNK_BYTES = 4 * 1024 * 1024
BATCH = 512  # objects locked, read and sent per step
FIRST_BATCH = 32
EARLY_OBJECTS = 2048


def _references(state: bytes) -> list[Ref]:
    """The references in a pickled state, without building the objects they point at."""
    refs: list[Ref] = []
    if not may_reference(state):
        return refs

    def collect(ref: Ref) -> None:
        refs.append(ref)

    loads(state, collect)
    return refs


class Mover:
    def __init__(self, rt: "BackendRuntime") -> None:
        self.rt = rt
        self._lock = threading.Lock()
        self.staged_moves: dict[UUID, dict[UUID, str]] = {}  # move id -> {object id: class path}
        self.staged_objects: dict[UUID, UUID] = {}  # object id -> move id

    # ================================================================== source side
    def move(
        self, roots: list[UUID], destination: UUID, recursive: bool, only_owned: bool,
        progress: Callable[[pb.MoveProgress], None],
    ) -> pb.MoveProgress:
        rt = self.rt
        started = time.perf_counter()
        if destination == rt.local_backend_id:
            for root in roots:
                if root not in rt.owned and not only_owned:
                    rt.local_object(root)  # raises where it is, or that it does not exist
            return pb.MoveProgress(done=True, seconds=time.perf_counter() - started)
        target = run_blocking(ops.backend_info(rt, rt.blocking, destination))
        scope = SCOPE.get()
        chain = scope.chain if scope else f"{MOVE_CHAIN_PREFIX}{uuid.uuid4().hex[:12]}"
        walk = _Walk(self, roots, recursive, only_owned, chain)
        move_id = uuid.uuid4()
        try:
            sent = {"objects": 0, "bytes": 0}
            # gRPC's request-consumer thread pulls all but the first chunk, in a copy of this
            # thread's context: the walk sees the request scope (test_a_call_moves_what_it_just_changed)
            chunks = self._chunks(move_id, walk, sent, progress)
            try:
                first = next(chunks, None)
                if first is None:  # nothing to move (all roots gone meanwhile)
                    return pb.MoveProgress(done=True, seconds=time.perf_counter() - started)
                rt.blocking.send_stream(target, "ReceiveObjects", itertools.chain([first], chunks))
                faults.hit("move.after_stream")
                keys = [obj.__dict__["_dc_id"].bytes for obj in walk.locked]
                self._commit(keys, destination)
            except OutcomeUnknownError:
                self._in_doubt(walk.locked, destination, target, move_id)
                raise
            except BaseException:
                self._abort_remote(target, move_id)
                raise
            faults.hit("move.after_commit")
            # Past the commit the directory decides: the destination also activates on the first
            # call for one of these objects (or on restart), so we need not wait for it here.
            activated = rt.blocking.start(target, "ActivateMove", pb.MoveId(move_id=move_id.bytes))
            faults.hit("move.after_activate")
            rt.became_remote(walk.locked, destination)
            walk.release()  # held calls go to the new owner now
            try:
                activated()
            except Exception as exc:
                log.warning("move %s committed; %s will activate it when it is back: %s", move_id, target.describe(), exc)
            log.info("moved %d objects (%d bytes) to %s in %.3fs", len(keys), sent["bytes"], target.describe(),
                     time.perf_counter() - started)
            return pb.MoveProgress(
                objects_total=len(keys), objects_sent=len(keys), bytes_sent=sent["bytes"], done=True,
                moved_ids=keys, frontier=walk.frontier_entries(), seconds=time.perf_counter() - started,
            )
        finally:
            walk.release()

    def _commit(self, keys: list[bytes], destination: UUID) -> None:
        """The commit point. CommitMove is idempotent, so a failure that may have come after
        the metadata service committed (a lost reply) is retried a few times."""
        rt = self.rt
        request = pb.CommitMoveRequest(object_ids=keys, source_backend_id=rt.local_backend_id.bytes,
                                       destination_backend_id=destination.bytes)
        error: Exception | None = None
        for delay in (0.0, 0.1, 0.5, 1.0, 2.0):
            time.sleep(delay)  # bounded backoff before asking again
            try:
                run_blocking(rt.blocking.metadata("CommitMove", request))
                return
            except (ObjectMovingError, BackendDrainingError, BackendNotFoundError, InvalidRequestError):
                raise  # refused: definitely not committed
            except Exception as exc:
                error = exc
        raise OutcomeUnknownError(
            f"moving {len(keys)} objects from backend {rt.name} may or may not have committed (the metadata service "
            f"did not answer: {error}); they are not served until it answers again", backend_id=rt.local_backend_id)

    def _in_doubt(self, objects: list[DataClayObject], destination: UUID, target, move_id: UUID) -> None:
        """The commit's outcome is unknown: serve none of these objects (never two owners)
        until the directory says who owns them, then finish or undo the move."""
        rt = self.rt
        classes = {obj.__dict__["_dc_id"]: class_path(type(obj)) for obj in objects}
        rt.became_remote(objects, destination, delete_rows=False)

        def settle() -> bool:
            first = next(iter(classes))
            entry = run_blocking(rt.blocking.metadata("LocateObject", pb.ObjectRequest(object_id=first.bytes)))
            if UUID(bytes=entry.backend_id) == destination:
                rt.store.delete(classes)
                log.info("move %s turned out committed: %d objects now live on %s", move_id, len(classes), target.describe())
            else:
                rt.owned.update(classes)
                for object_id, path in classes.items():
                    rt.local_instance(object_id, path)
                self._abort_remote(target, move_id)
                log.info("move %s turned out not committed: %d objects served here again", move_id, len(classes))
            return True

        keep_trying(settle, f"settling move {move_id} of {len(classes)} objects from backend {rt.name}")

    def _abort_remote(self, target, move_id: UUID) -> None:
        try:
            run_blocking(self.rt.blocking.backend(target, "AbortMove", pb.MoveId(move_id=move_id.bytes)))
        except Exception as exc:  # it discards the staged copy on restart anyway
            log.warning("could not abort move %s on %s: %s", move_id, target.describe(), exc)

    def lock_closure(
        self, roots: list[UUID], recursive: bool, only_owned: bool, chain: str
    ) -> tuple[list[DataClayObject], list[pb.ObjectEntry]]:
        """Lock the roots and, if recursive, what they reach through objects owned here."""
        walk = _Walk(self, roots, recursive, only_owned, chain, with_states=recursive)
        try:
            for _ in walk.batches():
                pass
        except BaseException:
            walk.release()
            raise
        return walk.locked, walk.frontier_entries()

    def _chunks(
        self, move_id: UUID, walk: "_Walk", sent: dict[str, int], progress: Callable[[pb.MoveProgress], None]
    ) -> Iterator[pb.TransferChunk]:
        """The transfer, generated lazily from the walk, so the destination stores one chunk
        while the source locks and reads the next: memory holds about one chunk at a time."""
        records: list[pb.ObjectRecord] = []
        size = 0
        header = {"move_id": move_id.bytes, "source_backend_id": self.rt.local_backend_id.bytes}
        paths: dict[type, str] = {}
        for batch in walk.batches():
            for obj, data, revision in batch:
                cls = type(obj)
                path = paths.get(cls) or paths.setdefault(cls, class_path(cls))
                object_id = obj.__dict__["_dc_id"].bytes
                for offset in range(0, max(len(data), 1), CHUNK_BYTES):
                    piece = data[offset:offset + CHUNK_BYTES]
                    records.append(pb.ObjectRecord(object_id=object_id, class_path=path, state=piece,
                                                   continues=offset + CHUNK_BYTES < len(data), revision=revision))
                    size += len(piece)
                    if size >= CHUNK_BYTES:
                        yield pb.TransferChunk(objects=records, **header)
                        sent["bytes"] += size
                        records, size = [], 0
            sent["objects"] = len(walk.locked)
            progress(pb.MoveProgress(objects_total=len(walk.locked), objects_sent=sent["objects"], bytes_sent=sent["bytes"]))
            # Early on, after every batch: the destination starts storing while we walk the next.
            # Then in chunks of an eighth of CHUNK_BYTES: each is one transaction there.
            if records and (size >= CHUNK_BYTES // 8 or sent["objects"] <= EARLY_OBJECTS):
                yield pb.TransferChunk(objects=records, **header)
                sent["bytes"] += size
                records, size = [], 0
        if records:
            yield pb.TransferChunk(objects=records, **header)
            sent["bytes"] += size

    # ================================================================== destination side
    def receive(self, chunks: Iterable[pb.TransferChunk]) -> None:
        """Stage an incoming transfer: stored, not live, until activated."""
        rt = self.rt
        moves: set[UUID] = set()
        partial: dict[bytes, list[bytes]] = {}  # objects larger than a chunk, in pieces
        classes: set[str] = set()  # class paths checked importable here
        try:
            for chunk in chunks:
                move_id = parse_uuid(chunk.move_id, "move id")
                moves.add(move_id)
                rows = []
                for record in chunk.objects:
                    key, state = record.object_id, record.state
                    if record.continues or key in partial:
                        partial.setdefault(key, []).append(state)
                        if record.continues:
                            continue
                        state = b"".join(partial.pop(key))
                    object_id = parse_uuid(key, "object id")
                    if object_id in rt.owned:
                        raise InvalidRequestError(
                            f"object {object_id} is already live on backend {rt.name}; a transfer cannot replace it",
                            object_id=object_id)
                    if record.class_path not in classes:
                        import_class(record.class_path)
                        classes.add(record.class_path)
                    rows.append(StoredObject(object_id, record.class_path, record.revision or 1, state))
                rt.store.write(rows, staged=move_id)
                with self._lock:
                    staged = self.staged_moves.setdefault(move_id, {})
                    for row in rows:
                        staged[row.object_id] = row.class_path
                        self.staged_objects[row.object_id] = move_id
                faults.hit("receive.after_chunk")
            if partial:
                raise InvalidRequestError("the transfer ended in the middle of an object")
        except BaseException:
            for move_id in moves:
                self.abort(move_id)
            raise

    def activate(self, move_id: UUID) -> None:
        """The directory committed the move to us: the staged objects become live."""
        rt = self.rt
        faults.hit("activate.before")
        with self._lock:
            objects = self.staged_moves.get(move_id)
            if objects is None:
                return  # already active (a call for one of them activated it first)
            rt.store.activate(move_id)
            rt.owned.update(objects)  # owned before no longer staged: never neither
            del self.staged_moves[move_id]
            for object_id in objects:
                self.staged_objects.pop(object_id, None)
        for object_id, path in objects.items():
            if object_id in rt.heap:  # a proxy this backend already held becomes the local object
                rt.local_instance(object_id, path)

    def abort(self, move_id: UUID) -> None:
        with self._lock:
            objects = self.staged_moves.pop(move_id, {})
            for object_id in objects:
                self.staged_objects.pop(object_id, None)
            self.rt.store.discard(move_id)

    def activate_if_committed(self, object_id: UUID, owner: UUID) -> bool:
        """A call for a staged object, and the directory says it is ours: activate now."""
        move_id = self.staged_objects.get(object_id)
        if move_id is None or owner != self.rt.local_backend_id:
            return False
        self.activate(move_id)
        return True

    # ================================================================== recovery
    def recover(self, assigned: set[UUID]) -> None:
        """At start: staged moves the directory gave us are activated, the others discarded."""
        for move_id, objects in self.rt.store.staged().items():
            if any(object_id in assigned for object_id in objects):
                self.rt.store.activate(move_id)
                log.info("recovery: activated committed incoming move %s (%d objects)", move_id, len(objects))
            else:
                self.rt.store.discard(move_id)
                log.info("recovery: discarded uncommitted incoming move %s (%d objects)", move_id, len(objects))


class _WalkClosed(Exception):
    """The walk was released while it was still running."""


class _Walk:
    """The objects a move (or a version) takes: the roots and, if recursive, what they reach
    through objects owned here, locked and read a batch at a time. `batches()` yields lists
    of (object, current state bytes, revision); `locked` and the frontier (reachable objects owned
    elsewhere) grow as it goes; `release()` lets every locked object go."""

    def __init__(
        self, mover: Mover, roots: list[UUID], recursive: bool, only_owned: bool, chain: str, with_states: bool = True
    ) -> None:
        self.rt = mover.rt
        self.recursive = recursive
        self.with_states = with_states or recursive
        self.chain = chain
        self.locked: list[DataClayObject] = []
        self._guard = threading.Lock()  # `locked` and `_closed`: a failed stream may still be walking
        self._closed = False
        self._seen: set[UUID] = set()
        self._frontier: dict[UUID, pb.ObjectEntry] = {}
        self._queue: deque[UUID] = deque()
        for root in roots:
            if root in self.rt.owned:
                self._queue.append(root)
            elif not only_owned:
                self.rt.local_object(root)  # raises the redirect, or "not registered"

    def frontier_entries(self) -> list[pb.ObjectEntry]:
        return list(self._frontier.values())

    def release(self) -> None:
        """Let every locked object go; a walk still running (in gRPC's thread, after the
        transfer failed) stops and lets go of anything it locks afterwards."""
        with self._guard:
            self._closed = True
            locked, self.locked = self.locked, []
        ChainLock.release_all([self.rt.lock_of(obj) for obj in locked])

    def _keep(self, objects: list[DataClayObject]) -> None:
        """Record objects just locked (so release() lets them go), unless the walk is over."""
        with self._guard:
            if not self._closed:
                self.locked.extend(objects)
                return
        ChainLock.release_all([self.rt.lock_of(obj) for obj in objects])
        raise _WalkClosed

    def batches(self) -> Iterator[list[tuple[DataClayObject, bytes, int]]]:
        """Batches of (object, state, revision); settled, so memory, store and revision agree."""
        try:
            yield from self._batches()
        except _WalkClosed:
            return

    def _batches(self) -> Iterator[list[tuple[DataClayObject, bytes, int]]]:
        rt = self.rt
        size = FIRST_BATCH  # small at first, so the destination starts storing at once
        while self._queue:
            ids: list[UUID] = []
            while self._queue and len(ids) < size:
                object_id = self._queue.popleft()
                if object_id not in self._seen:
                    self._seen.add(object_id)
                    ids.append(object_id)
            size = min(size * 2, BATCH)
            batch = self._lock_many(ids)
            states = self._states(batch) if self.with_states else {}
            if self.recursive:
                for data, _ in states.values():
                    for ref in _references(data):
                        ref_id = UUID(bytes=ref[0])
                        if ref_id in rt.owned:
                            if ref_id not in self._seen:
                                self._queue.append(ref_id)
                        elif ref_id not in self._frontier:
                            self._frontier[ref_id] = pb.ObjectEntry(object_id=ref[0], class_path=ref[1], backend_id=ref[2])
            yield [(obj, *states.get(obj.__dict__["_dc_id"], (b"", 1))) for obj in batch]

    def _lock_many(self, ids: list[UUID]) -> list[DataClayObject]:
        """Lock the owned objects among `ids`, in order, as one by one would (the others moved
        away meanwhile): the leading ones that are free and settled in one pass; from the first
        that is not, one at a time, waiting. Never holds a later object while waiting for an
        earlier one (a call holding the earlier one may need the later one)."""
        rt = self.rt
        owned = [(object_id, path) for object_id in ids if (path := rt.owned.get(object_id)) is not None]
        objects = rt.local_instances(owned)
        locks = [rt.lock_of(obj) for obj in objects]
        scope = SCOPE.get()
        taken = ChainLock.take_free(locks, self.chain)
        ready = 0
        for obj, was_taken in zip(objects, taken):
            if not (was_taken and obj.__dict__["_dc_is_local"] and is_settled(obj, scope)):
                break
            ready += 1
        ChainLock.release_all([lock for lock, was_taken in zip(locks[ready:], taken[ready:]) if was_taken])
        locked = objects[:ready]
        self._keep(locked)
        for obj in objects[ready:]:
            one = self._lock_one(obj.__dict__["_dc_id"])
            if one is not None:
                self._keep([one])
                locked.append(one)
        return locked

    def _lock_one(self, object_id: UUID) -> DataClayObject | None:
        """Lock one owned object; None if it moved away meanwhile."""
        rt = self.rt
        class_path_ = rt.owned.get(object_id)
        if class_path_ is None:
            return None
        obj = rt.local_instance(object_id, class_path_)
        rt.acquire(obj, self.chain, settled=True)
        if not obj.__dict__["_dc_is_local"]:
            rt.lock_of(obj).release()
            return None
        return obj

    def _states(self, objects: list[DataClayObject]) -> dict[UUID, tuple[bytes, int]]:
        """Current states and revisions of settled, locked objects: loaded ones from memory,
        the others as stored, read in batches."""
        states = {}
        unloaded = []
        scope = SCOPE.get()
        pending = scope.pending if scope is not None else ()  # changed by the call that moves them
        with self.rt.loaded.load_lock:  # eviction may unload objects a move holds, but not meanwhile
            for obj in objects:
                meta = obj.__dict__
                if meta["_dc_is_loaded"]:
                    revision = meta.get("_dc_revision", 1)
                    if meta["_dc_id"] in pending:  # the move stores this change: a new revision
                        revision = meta["_dc_revision"] = revision + 1
                    states[meta["_dc_id"]] = (dumps(obj._dc_state(), make_ref), revision)
                else:
                    unloaded.append(meta["_dc_id"])
        for object_id, stored in self.rt.store.load_many(unloaded).items():
            states[object_id] = (stored.state, stored.revision)
        return states
