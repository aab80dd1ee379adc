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
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator
from uuid import UUID

from dataclay import operations as ops
from dataclay.exceptions import (
    BackendDrainingError,
    ClusterMismatchError,
    BackendUnavailableError,
    BackendNotFoundError,
    InvalidRequestError,
    ObjectInDoubtError,
    ObjectMovingError,
    OutcomeUnknownError,
)
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.runtime import Runtime
from dataclay.serialization import check, import_class
from dataclay.transport import BackendInfo, run_blocking
from dataclay_backend import commit_point, faults
from dataclay_backend.directory_client import DirectoryClient
from dataclay_backend.heap import MOVE_CHAIN_PREFIX
from dataclay_backend.locking import ObjectLocks
from dataclay_backend.object_store import StoredObject
from dataclay_backend.objects import LocalObjects
from dataclay_backend.replicas import Replicas
from dataclay_backend.resolve_later import resolve_later
from dataclay_backend.scope import SCOPE
from dataclay_backend.walk import Walk
from dataclay_backend.wire import optional_uuid, parse_uuid

log = logging.getLogger(__name__)

CHUNK_BYTES = 4 * 1024 * 1024
EARLY_OBJECTS = 2048
# Objects: a move of fewer deletes its rows at the source before it replies, as deleting them
# (about 2.5 us each) costs less than handing them to the store's thread (a wake-up, and a
# thread competing with the reply); a larger one after (a move of 100,000 replies 0.3-0.5 s sooner).
DELETE_LATER_FROM = 256
EARLY_CHUNK = 32  # objects
FOLLOW_ATTEMPTS = 3  # a root that keeps leaving and coming back: give up with ObjectMovingError


@dataclass
class _InDoubt:
    """An outgoing move whose commit point did not answer: what it moved, and where to."""

    classes: dict[UUID, str]
    destination: UUID
    target: BackendInfo


def _check_state(state: bytes, object_id: UUID) -> None:
    """A moved state must read under the allow-list here (serialization.check), or the object
    would arrive and never load: the move is refused instead."""
    try:
        check(state)
    except InvalidRequestError as exc:
        fields = {**exc.fields, "object_id": object_id}
        raise type(exc)(f"object {object_id} cannot be moved here: {exc.message}", **fields) from None


class Mover:
    """Both sides of moves on one backend. Collaborators: the owned objects, their locks, the
    directory (the commit point), `peers` (the transport to other backends and their
    addresses) and `locate` (an id not owned here -> the typed error saying where it is)."""

    def __init__(
        self, objects: LocalObjects, locks: ObjectLocks, directory: DirectoryClient, peers: Runtime,
        locate: Callable[[UUID], Any], replicas: Replicas,
    ) -> None:
        self.replicas = replicas  # a moved object's replica holders travel with it
        self.staged_replicas: dict[UUID, dict[UUID, set[UUID]]] = {}  # move id -> {object id: holders}
        self.objects = objects
        self.locks = locks
        self.directory = directory
        self.peers = peers
        self.locate = locate
        self._lock = threading.Lock()
        # move id -> {object id: class path}, in the order the moves began staging here
        self.staged_moves: dict[UUID, dict[UUID, str]] = {}
        self._doubtful: dict[UUID, _InDoubt] = {}  # outgoing moves whose commit is in doubt, by move id
        self._doubtful_objects: dict[UUID, UUID] = {}  # object id -> its in-doubt move
        self._resolving = threading.Lock()  # one resolution at a time (see dataclay_backend.locking)

    # ================================================================== source side
    def move(
        self, roots: list[UUID], destination: UUID, recursive: bool, only_owned: bool,
        progress: Callable[[pb.MoveProgress], None], remotes: bool = False,
    ) -> pb.MoveProgress:
        """Move the roots (and, if recursive, what they reach through objects owned here).
        A root that left while the move waited for it is followed: `locate` raises where it
        went (the caller moves it from there) or that its owner is in doubt. With
        `only_owned` (a drain) roots not owned here are skipped. A destination that could not
        be reached at the address we knew is looked up again (it may have restarted elsewhere).
        With `remotes` (and recursive), roots already here, the destination, are walked for
        their frontier, so the caller's walk goes on through them (dataClay's remotes=True)."""
        started = time.perf_counter()
        for _ in range(FOLLOW_ATTEMPTS):
            try:
                if destination == self.objects.backend_id and recursive and remotes and not only_owned:
                    result = self._frontier_here(roots, started)
                else:
                    result = self._move_once(roots, destination, recursive, only_owned, progress, started)
            except BackendUnavailableError as unreachable:
                if type(unreachable) is not BackendUnavailableError or not self._readdressed(destination):
                    raise  # sent (outcome unknown: the move aborted), or no new address to try
                continue
            if result is not None or only_owned:
                return result or pb.MoveProgress(done=True, seconds=time.perf_counter() - started)
            for root in roots:
                self.locate(root)  # raises where it went; returns if it is ours again: try again
        raise ObjectMovingError(
            f"the objects to move kept changing owner during {FOLLOW_ATTEMPTS} attempts; try again",
            backend_id=self.objects.backend_id)

    def _readdressed(self, backend_id: UUID) -> bool:
        """Whether the directory now gives backend_id another address than the one we used."""
        known = self.peers.backends.get(backend_id)
        current = run_blocking(ops.get_backends(self.peers, self.peers.blocking)).get(backend_id)
        return current is not None and current != known

    def _frontier_here(self, roots: list[UUID], started: float) -> pb.MoveProgress | None:
        """The roots are already here, the destination: nothing moves, but what they reach
        through objects owned here is walked (locked and read, as a move would) for the
        reachable objects owned elsewhere. None if no root was here when the walk took it."""
        scope = SCOPE.get()
        chain = scope.chain if scope else f"{MOVE_CHAIN_PREFIX}{uuid.uuid4().hex[:12]}"
        walk = Walk(self.objects, self.locks, self.locate, roots, True, False, chain)
        try:
            for _ in walk.batches():
                pass
            if not walk.count:
                return None
            return pb.MoveProgress(done=True, frontier=walk.frontier_entries(), seconds=time.perf_counter() - started)
        finally:
            walk.release()

    def _move_once(
        self, roots: list[UUID], destination: UUID, recursive: bool, only_owned: bool,
        progress: Callable[[pb.MoveProgress], None], started: float,
    ) -> pb.MoveProgress | None:
        """One attempt; None if none of the roots was here to move when the walk took them."""
        objects, peers = self.objects, self.peers
        if destination == objects.backend_id:
            for root in roots:
                if root not in objects.owned and not only_owned:
                    self.locate(root)  # raises where it is, or that it does not exist
            return pb.MoveProgress(done=True, seconds=time.perf_counter() - started)
        target = run_blocking(ops.backend_info(peers, peers.blocking, destination))
        scope = SCOPE.get()
        chain = scope.chain if scope else f"{MOVE_CHAIN_PREFIX}{uuid.uuid4().hex[:12]}"
        walk = Walk(objects, self.locks, self.locate, roots, recursive, only_owned, chain, fence=True)
        move_id = uuid.uuid4()
        try:
            sent = {"objects": 0, "bytes": 0}
            # gRPC's request-consumer thread pulls all but the first chunk, in a copy of this
            # thread's context: the walk sees the request scope (test_a_call_moves_what_it_just_changed)
            chunks = self._chunks(move_id, destination, walk, sent, progress)
            try:
                first = next(chunks, None)
                if first is None:  # nothing to move: every root left while we waited for it
                    return None
                peers.blocking.send_stream(target, "ReceiveObjects", itertools.chain([first], chunks))
                faults.hit("move.after_stream")
                keys = [object_id.bytes for object_id in walk.ids()]
                self._commit(keys, destination, move_id)
            except OutcomeUnknownError:
                self._in_doubt(walk, destination, target, move_id)
                raise
            except BaseException:
                self._abort_remote(target, move_id)
                raise
            faults.hit("move.after_commit")
            # Past the commit the directory decides, and nothing may keep the objects here (or
            # two backends serve them): the destination also activates on the first call for
            # one of them (or on restart), so a destination we cannot reach only delays that.
            activated = self._start_activation(target, move_id)
            faults.hit("move.after_activate")
            # The rows of a large move are deleted after the reply (ObjectStore.delete_later).
            # Given up under the lock activations take, so a move back activated here finds them
            # queued already, and the activation's fence deletes these rows first, never the
            # copy it makes live.
            with self._lock:
                objects.give_up(walk.locked, destination, later=len(keys) >= DELETE_LATER_FROM, fence=walk.fenced)
            self.replicas.moved_away(walk)
            walk.release()  # held calls go to the new owner now
            activated()
            log.info("moved %d objects (%d bytes) to %s in %.3fs", len(keys), sent["bytes"], target.describe(),
                     time.perf_counter() - started)
            return pb.MoveProgress(
                objects_total=len(keys), objects_sent=len(keys), bytes_sent=sent["bytes"], done=True,
                moved_ids=keys, frontier=walk.frontier_entries(), seconds=time.perf_counter() - started,
            )
        finally:
            walk.release()

    def _start_activation(self, target: BackendInfo, move_id: UUID) -> Callable[[], None]:
        """Ask the destination to activate a committed move, without waiting; the function
        returned waits for it. Neither raises: a destination that cannot be reached (it may
        have died right after the transfer, or moved to another address) activates the move
        on the first call for one of its objects, or when it starts again."""

        def unreachable(exc: Exception) -> None:
            log.warning("move %s committed; %s will activate it when it is back: %s", move_id, target.describe(), exc)

        try:
            reply = self.peers.blocking.start(target, "ActivateMove", pb.MoveId(move_id=move_id.bytes))
        except Exception as exc:  # not connected: the call was never sent
            unreachable(exc)
            return lambda: None

        def wait() -> None:
            try:
                reply()
            except Exception as exc:
                unreachable(exc)

        return wait

    def _commit(self, keys: list[bytes], destination: UUID, move_id: UUID) -> None:
        """The commit point. CommitMove is idempotent, so a failure that may have come after
        the metadata service committed (a lost reply) is simply asked again."""
        source = self.objects.backend_id

        def unknown(error: Exception) -> OutcomeUnknownError:
            return OutcomeUnknownError(
                f"moving {len(keys)} objects from backend {self.objects.name} may or may not have committed (the "
                f"metadata service did not answer: {error}); they are not served until it answers again",
                backend_id=source)

        commit_point.reach(
            lambda tries: self.directory.commit_move(keys, source, destination, move_id),
            (ObjectMovingError, BackendDrainingError, BackendNotFoundError, InvalidRequestError),  # not committed
            unknown,
        )

    def _in_doubt(self, walk: Walk, destination: UUID, target: BackendInfo, move_id: UUID) -> None:
        """The commit's outcome is unknown: serve none of the walk's objects (never two owners)
        until the directory says who owns them, then finish or undo the move. Resolved in the
        background, and at once when a call for one of them arrives (`resolve_in_doubt`)."""
        classes = walk.classes()
        with self._lock:
            self._doubtful[move_id] = _InDoubt(classes, destination, target)
            for object_id in classes:
                self._doubtful_objects[object_id] = move_id
        self.objects.give_up(walk.locked, destination, delete_rows=False, fence=walk.fenced)
        resolve_later(lambda: self._resolve(move_id),
                      f"resolving move {move_id} of {len(classes)} objects from backend {self.objects.name}")

    def resolve_in_doubt(self, object_id: UUID) -> None:
        """A call for an object whose move is in doubt here: ask the directory now. Returns
        once it is resolved (the object is here again, or elsewhere); ObjectInDoubtError if the
        directory cannot answer yet."""
        move_id = self._doubtful_objects.get(object_id)
        if move_id is None:
            return
        try:
            self._resolve(move_id)
        except Exception as exc:
            raise ObjectInDoubtError(
                f"object {object_id} was being moved from backend {self.objects.name} when the metadata service "
                f"stopped answering ({exc}); it is served again as soon as the service answers: try again shortly",
                object_id=object_id) from None

    def _resolve(self, move_id: UUID) -> bool:
        """Ask the directory whether an in-doubt move committed (asking fences it: a late commit
        is refused), and finish or undo it (once)."""
        with self._resolving:
            doubt = self._doubtful.get(move_id)
            if doubt is None:
                return True  # resolved meanwhile
            if self.directory.resolve_transaction(move_id).committed:
                with self._lock:  # activating a later move takes it: an object that came back here stays
                    self.objects.forget_stored([oid for oid in doubt.classes if oid not in self.objects.owned])
                log.info("move %s turned out committed: %d objects now live on %s", move_id, len(doubt.classes),
                         doubt.target.describe())
            else:
                self.objects.adopt(doubt.classes)
                self._abort_remote(doubt.target, move_id)
                log.info("move %s turned out not committed: %d objects served here again", move_id, len(doubt.classes))
            with self._lock:
                del self._doubtful[move_id]
                for object_id in doubt.classes:
                    self._doubtful_objects.pop(object_id, None)
        return True

    def _abort_remote(self, target: BackendInfo, move_id: UUID) -> None:
        try:
            run_blocking(self.peers.blocking.backend(target, "AbortMove", pb.MoveId(move_id=move_id.bytes)))
        except Exception as exc:  # it discards the staged copy on restart anyway
            log.warning("could not abort move %s on %s: %s", move_id, target.describe(), exc)

    def _chunks(
        self, move_id: UUID, destination: UUID, walk: Walk, sent: dict[str, int],
        progress: Callable[[pb.MoveProgress], None],
    ) -> Iterator[pb.TransferChunk]:
        """The transfer, generated lazily from the walk, so the destination stores one chunk
        while the source locks and reads the next: memory holds about one chunk at a time."""
        records: list[pb.ObjectRecord] = []
        size = 0
        header = {"move_id": move_id.bytes, "source_backend_id": self.objects.backend_id.bytes,
                  "destination_backend_id": destination.bytes}
        holders = self.replicas.holders
        for batch in walk.batches():
            for uid, path, data, revision in batch:
                object_id = uid.bytes
                replicas = [h.bytes for h in holders.get(uid, ())] if holders else None
                for offset in range(0, max(len(data), 1), CHUNK_BYTES):
                    piece = data[offset:offset + CHUNK_BYTES]
                    records.append(pb.ObjectRecord(object_id=object_id, class_path=path, state=piece,
                                                   continues=offset + CHUNK_BYTES < len(data), revision=revision))
                    if replicas and offset == 0:
                        records[-1].replica_backend_ids.extend(replicas)
                    size += len(piece)
                    if size >= CHUNK_BYTES:
                        yield pb.TransferChunk(objects=records, **header)
                        sent["bytes"] += size
                        records, size = [], 0
            sent["objects"] = walk.count
            progress(pb.MoveProgress(objects_total=sent["objects"], objects_sent=sent["objects"], bytes_sent=sent["bytes"]))
            # Early on, after every batch of at least EARLY_CHUNK objects: the destination starts
            # storing while we walk the next (a smaller one, such as the root alone, waits for
            # the next batch: each chunk is one transaction there, and a small move goes in one).
            # Then in chunks of an eighth of CHUNK_BYTES.
            early = sent["objects"] <= EARLY_OBJECTS and len(records) >= EARLY_CHUNK
            if records and (size >= CHUNK_BYTES // 8 or early):
                yield pb.TransferChunk(objects=records, **header)
                sent["bytes"] += size
                records, size = [], 0
        if records:
            yield pb.TransferChunk(objects=records, **header)
            sent["bytes"] += size

    # ================================================================== destination side
    def receive(self, chunks: Iterable[pb.TransferChunk]) -> None:
        """Stage an incoming transfer: stored, not live, until activated. Every class path and
        state is checked before its chunk is stored; a refusal discards what this transfer
        staged and fails the stream typed, so the source aborts and keeps its objects."""
        objects = self.objects
        moves: set[UUID] = set()
        partial: dict[bytes, list[bytes]] = {}  # objects larger than a chunk, in pieces
        classes: dict[str, str] = {}  # class paths checked importable here -> the interned one (objects.py)
        replicated: dict[bytes, set[UUID]] = {}  # replica holders of objects still arriving
        try:
            for chunk in chunks:
                move_id = parse_uuid(chunk.move_id, "move id")
                if chunk.destination_backend_id != objects.backend_id.bytes:
                    raise ClusterMismatchError(
                        f"a transfer for backend {optional_uuid(chunk.destination_backend_id, 'destination') or '(none)'} "
                        f"reached backend {objects.name} ({objects.backend_id}): nothing was staged; the source "
                        "keeps its objects (is a backend listening on another's former address?)",
                        backend_id=objects.backend_id)
                moves.add(move_id)
                rows = []
                for record in chunk.objects:
                    key, state = record.object_id, record.state
                    if record.replica_backend_ids:  # on the first piece of a state
                        replicated[key] = {parse_uuid(raw, "replica backend id") for raw in record.replica_backend_ids}
                    if record.continues or key in partial:
                        partial.setdefault(key, []).append(state)
                        if record.continues:
                            continue
                        state = b"".join(partial.pop(key))
                    object_id = parse_uuid(key, "object id")
                    if object_id in objects.owned:
                        raise InvalidRequestError(
                            f"object {object_id} is already live on backend {objects.name}; a transfer cannot replace it",
                            object_id=object_id)
                    path = classes.get(record.class_path)
                    if path is None:  # interned once importable: a refused path is not kept
                        path = record.class_path
                        import_class(path)
                        path = classes[path] = sys.intern(path)
                    _check_state(state, object_id)  # refused on arrival, not when first loaded
                    rows.append(StoredObject(object_id, path, record.revision or 1, state))
                    if key in replicated:
                        with self._lock:
                            self.staged_replicas.setdefault(move_id, {})[object_id] = replicated.pop(key)
                objects.store.write(rows, staged=move_id)
                with self._lock:
                    staged = self.staged_moves.setdefault(move_id, {})
                    for row in rows:
                        staged[row.object_id] = row.class_path
                faults.hit("receive.after_chunk")
            if partial:
                raise InvalidRequestError("the transfer ended in the middle of an object")
        except BaseException:
            for move_id in moves:
                try:
                    self.abort(move_id)
                except Exception as exc:  # e.g. a full disk: the first error is the one to report
                    log.warning("could not discard the staged objects of move %s (the next start does): %s",
                                move_id, exc)
            raise

    def activate(self, move_id: UUID) -> None:
        """The directory committed the move to us: the staged objects become live."""
        faults.hit("activate.before")
        with self._lock:
            classes = self.staged_moves.get(move_id)
            if classes is None:
                return  # already active (a call for one of them activated it first)
            self.objects.store.activate(move_id)
            self.objects.adopt(classes)  # owned before no longer staged: never neither
            holders = self.staged_replicas.pop(move_id, None)
            if holders:
                self.replicas.arrived(holders)  # before any call for them: they are locked until now
            del self.staged_moves[move_id]

    def abort(self, move_id: UUID) -> None:
        with self._lock:
            self.staged_replicas.pop(move_id, None)
            self.staged_moves.pop(move_id, None)
            self.objects.store.discard(move_id)

    def staging_move(self, object_id: UUID) -> UUID | None:
        """The move that staged object_id here last, if any staged it. Several may have: a move
        that failed before its commit whose abort has not arrived yet, then a later one (whose
        rows replaced its rows). A backend stages few moves at a time: they are searched, so
        that staging and activating keep no entry per object."""
        with self._lock:
            found = None
            for move_id, classes in self.staged_moves.items():
                if object_id in classes:
                    found = move_id
            return found

    def activate_if_committed(self, object_id: UUID, owner: UUID) -> bool:
        """A call for a staged object, and the directory says it is ours: activate now."""
        if owner != self.objects.backend_id:
            return False
        move_id = self.staging_move(object_id)
        if move_id is None:
            return False
        self.activate(move_id)
        return True

    # ================================================================== recovery
    def recover(self, assigned: set[UUID], discard: bool = True) -> set[UUID]:
        """At start: staged moves the directory gave us are activated, the others discarded
        once the directory says they did not commit (which fences them: a late commit of
        one is refused, so nothing staged is discarded that could still become ours). Without
        `discard` (a restored directory, which may not know a move that committed after its
        backup) the others stay staged, for the next start to decide.
        Returns what was activated: `assigned` (listed before) may lack a move committed since."""
        store = self.objects.store
        activated: set[UUID] = set()
        for move_id, staged in store.staged().items():
            if any(object_id in assigned for object_id in staged):
                committed = True
            elif not discard:
                log.warning("recovery: kept incoming move %s (%d objects) staged: the restored directory does not "
                            "give them to us", move_id, len(staged))
                continue
            else:
                committed = self.directory.resolve_transaction(move_id).committed
            if committed:
                store.activate(move_id)
                activated.update(staged)
                log.info("recovery: activated committed incoming move %s (%d objects)", move_id, len(staged))
            else:
                store.discard(move_id)
                log.info("recovery: discarded uncommitted incoming move %s (%d objects)", move_id, len(staged))
        return activated
