"""A graph walk over the objects a backend owns: the objects a move (or a version, or a
consolidation) takes, locked and read a batch at a time.

From the roots and, if recursive, what they reach through objects owned here: each object is
locked for the walk's chain once settled (dataclay_backend.locking), so memory, store and
revision agree, and read (loaded ones from memory, the others as stored). Reachable objects
owned elsewhere form the frontier. The lock-taking rule that keeps walks from deadlocking with
calls: never hold a later object while waiting for an earlier one.

A move's walk (`fence`) takes objects that have no instance in memory by fencing their ids
instead of making one to lock (dataclay_backend.objects: a call for one waits for the move as
for a locked object); their states are read as stored.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable, Iterator
from uuid import UUID

from dataclay import lifecycle as lc
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.serialization import Ref, class_path, dumps, loads, make_ref, may_reference
from dataclay_backend.heap import ChainLock, lock_of
from dataclay_backend.locking import ObjectLocks, is_settled
from dataclay_backend.objects import Fence, LocalObjects
from dataclay_backend.scope import SCOPE

BATCH = 512  # objects locked, read and sent per step
FIRST_BATCH = 32


def _references(state: bytes) -> list[Ref]:
    """The references in a pickled state, without building the objects they point at."""
    refs: list[Ref] = []
    if not may_reference(state):
        return refs

    def collect(ref: Ref) -> None:
        refs.append(ref)

    loads(state, collect)
    return refs

class WalkClosed(Exception):
    """The walk was released while it was still running."""


class Walk:
    """The objects a move (or a version) takes: the roots and, if recursive, what they reach
    through objects owned here, locked and read a batch at a time. `batches()` yields lists
    of (object id, class path, current state bytes, revision); the objects taken (`locked`
    instances, and with `fence` the ids in the walk's Fence, `fenced`: module docstring) and
    the frontier (reachable objects owned elsewhere) grow as it goes; `release()` lets every
    one go."""

    def __init__(
        self, objects: LocalObjects, locks: ObjectLocks, locate: Callable[[UUID], Any],
        roots: list[UUID], recursive: bool, only_owned: bool, chain: str, with_states: bool = True,
        fence: bool = False,
    ) -> None:
        self.objects = objects
        self.locks = locks
        self.recursive = recursive
        self.with_states = with_states or recursive
        self.chain = chain
        self.locked: list[Any] = []
        # A move's objects taken without instances: their ids and class paths are in fenced.ids
        self.fenced: Fence | None = None
        self._guard = threading.Lock()  # `locked` and `_closed`: a failed stream may still be walking
        self._closed = False
        self._seen: set[UUID] = set()
        self._frontier: dict[UUID, pb.ObjectEntry] = {}
        # To take, in order: the roots' ids, then references as read (Ref tuples: an id is made,
        # and its owner looked up, only when it comes out, so a state with many references
        # does not hold the walk up before its next batch goes out).
        self._queue: deque[UUID | Ref] = deque()
        for root in roots:
            if root in objects.owned:
                self._queue.append(root)
            elif not only_owned:
                locate(root)  # raises the redirect, or "not registered"
        if fence:  # last: a walk that raised above is never released
            self.fenced = objects.fence(chain)

    def frontier_entries(self) -> list[pb.ObjectEntry]:
        return list(self._frontier.values())

    @property
    def _fenced_ids(self) -> dict[UUID, str]:
        return self.fenced.ids if self.fenced is not None else {}

    @property
    def count(self) -> int:
        """How many objects the walk holds."""
        return len(self.locked) + len(self._fenced_ids)

    def ids(self) -> list[UUID]:
        """The ids of the objects the walk holds."""
        return [obj.__dict__[lc.ID] for obj in self.locked] + list(self._fenced_ids)

    def classes(self) -> dict[UUID, str]:
        """The objects the walk holds: id -> class path."""
        return {obj.__dict__[lc.ID]: class_path(type(obj)) for obj in self.locked} | self._fenced_ids

    def release(self) -> None:
        """Let every locked object go; a walk still running (in gRPC's thread, after the
        transfer failed) stops and lets go of anything it locks afterwards (its fence is
        lifted: what it fences afterwards holds nothing)."""
        with self._guard:
            self._closed = True
            locked, self.locked = self.locked, []
        self.locks.release_all(locked)
        if self.fenced is not None:
            self.objects.unfence(self.fenced)

    def _keep(self, objects: list[Any]) -> None:
        """Record objects just locked (so release() lets them go), unless the walk is over."""
        with self._guard:
            if not self._closed:
                self.locked.extend(objects)
                return
        self.locks.release_all(objects)
        raise WalkClosed

    def batches(self) -> Iterator[list[tuple[UUID, str, bytes, int]]]:
        """Batches of (object id, class path, state, revision); settled, so memory, store and
        revision agree."""
        try:
            yield from self._batches()
        except WalkClosed:
            return

    def _batches(self) -> Iterator[list[tuple[UUID, str, bytes, int]]]:
        owned = self.objects.owned
        size = FIRST_BATCH  # small at first, so the destination starts storing at once
        queue, seen, frontier = self._queue, self._seen, self._frontier
        while queue:
            ids: list[UUID] = []
            while queue and len(ids) < size:
                item = queue.popleft()
                if type(item) is UUID:
                    object_id = item
                else:  # a reference: taken if owned here, else on the frontier
                    object_id = UUID(bytes=item.object_id)
                    if object_id not in owned:
                        if object_id not in frontier:
                            frontier[object_id] = pb.ObjectEntry(
                                object_id=item.object_id, class_path=item.class_path, backend_id=item.backend_id)
                        continue
                if object_id not in seen:
                    seen.add(object_id)
                    ids.append(object_id)
            if not ids:
                continue  # all on the frontier, or taken already
            size = min(size * 2, BATCH)
            batch = self._lock_many(ids)
            states = self._states(batch) if self.with_states else {}
            if self.recursive:
                for data, _ in states.values():
                    queue.extend(_references(data))
            yield [(object_id, path, *states.get(object_id, (b"", 1))) for object_id, path, _ in batch]

    def _lock_many(self, ids: list[UUID]) -> list[tuple[UUID, str, Any]]:
        """Lock the owned objects among `ids`, in order, as one by one would (the others moved
        away meanwhile): the leading ones that are free and settled (or fenced) in one pass;
        from the first that is not, one at a time, waiting. Never holds a later object while
        waiting for an earlier one (a call holding the earlier one may need the later one).
        (object id, class path, instance or None if fenced) of each."""
        owned_map = self.objects.owned
        owned = [(object_id, path) for object_id in ids if (path := owned_map.get(object_id)) is not None]
        fence = self.fenced
        objects = self.objects.take(owned, fence) if fence is not None else self.objects.instances(owned)
        instances = [obj for obj in objects if obj is not None]
        locks = [lock_of(obj) for obj in instances]
        scope = SCOPE.get()
        taken = ChainLock.take_free(locks, self.chain)
        ready = held = 0  # objects ready, instances among them
        for obj in objects:
            if obj is not None:
                if not (taken[held] and obj.__dict__[lc.LOCAL] and is_settled(obj, scope)):
                    break
                held += 1
            ready += 1
        ChainLock.release_all([lock for lock, was_taken in zip(locks[held:], taken[held:]) if was_taken])
        if ready < len(objects) and fence is not None:
            self.objects.unfence(fence, [owned[i][0] for i in range(ready, len(objects)) if objects[i] is None])
        self._keep(instances[:held])
        batch = [(object_id, path, obj) for (object_id, path), obj in zip(owned[:ready], objects)]
        for object_id, path in owned[ready:]:
            one = self._lock_one(object_id)
            if one is not None:
                self._keep([one])
                batch.append((object_id, path, one))
        return batch

    def _lock_one(self, object_id: UUID) -> Any | None:
        """Lock one owned object; None if it moved away meanwhile."""
        class_path_ = self.objects.owned.get(object_id)
        if class_path_ is None:
            return None
        obj = self.objects.instance(object_id, class_path_)
        self.locks.acquire(obj, self.chain, settled=True)
        if not obj.__dict__[lc.LOCAL]:
            self.locks.release(obj)
            return None
        return obj

    def _states(self, batch: list[tuple[UUID, str, Any]]) -> dict[UUID, tuple[bytes, int]]:
        """Current states and revisions of settled, locked objects: loaded ones from memory,
        the others (and fenced ids) as stored, read in batches."""
        states = {}
        unloaded = []
        stale: list[UUID] = []
        scope = SCOPE.get()
        pending = scope.pending if scope is not None else ()  # changed by the call that moves them
        with self.objects.load_lock:  # eviction may unload objects a move holds, but not meanwhile
            for object_id, _, obj in batch:
                if obj is None:
                    unloaded.append(object_id)
                    continue
                meta = obj.__dict__
                if meta.get(lc.STALE):  # a failed request's change is in memory: what is stored counts
                    lc.unload(obj)
                    stale.append(meta[lc.ID])
                if meta[lc.LOADED]:
                    revision = meta.get(lc.REVISION, 1)
                    if meta[lc.ID] in pending:  # the move stores this change: a new revision
                        revision = meta[lc.REVISION] = revision + 1
                    states[meta[lc.ID]] = (dumps(lc.persisted_state(obj), make_ref), revision)
                else:
                    unloaded.append(meta[lc.ID])
        self.objects.loaded.discard(*stale)  # after the load lock: LoadedSet's lock comes first
        for object_id, stored in self.objects.store.load_many(unloaded).items():
            states[object_id] = (stored.state, stored.revision)
        return states


def lock_closure(
    objects: LocalObjects, locks: ObjectLocks, locate: Callable[[UUID], Any],
    roots: list[UUID], recursive: bool, chain: str,
) -> list[Any]:
    """Lock the roots and, if recursive, what they reach through objects owned here (a
    version or a consolidation takes its objects so); the caller releases them."""
    walk = Walk(objects, locks, locate, roots, recursive, False, chain, with_states=recursive)
    try:
        for _ in walk.batches():
            pass
    except BaseException:
        walk.release()
        raise
    return walk.locked
