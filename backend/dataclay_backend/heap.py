"""The objects a backend owns, in memory: identity, per-object locks, bounded memory.

Every owned object has at most one instance in the process. An instance is "loaded" when its
properties are in its __dict__; loaded instances are kept in least-recently-used order with the
size of their stored state, and the least recently used ones are unloaded when the total passes
the memory limit. Their state is always already durable (written when the request that changed
it was stored), so unloading is just dropping the properties; the next access loads them again.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any
from uuid import UUID

from dataclay import lifecycle as lc

# The chain eviction holds an object's lock with while it unloads it: not printable ASCII, so
# no request can name it in its dataclay-chain metadata.
EVICTION_CHAIN = "\x00evict"
# Chains of moves: they hold objects only to keep writers out, so those objects may be unloaded
# (the walk reads a loaded state holding the load lock, as eviction unloads one).
MOVE_CHAIN_PREFIX = "move-"


_GUARD = threading.Lock()  # guards every ChainLock's few fields; held for microseconds


class ChainLock:
    """A lock held by a call chain, not a thread: nested calls of the same chain (even ones
    that come back through another backend) re-enter; other chains wait their turn. Cheap to
    create and to take when free (a backend has one per object it touches); a condition to
    wait on is made only when a second chain has to wait."""

    __slots__ = ("owner", "_depth", "_waiting")

    def __init__(self) -> None:
        self.owner: str | None = None
        self._depth = 0
        self._waiting: threading.Condition | None = None

    @classmethod
    def held_by(cls, chain: str) -> "ChainLock":
        """A new lock, already held once by `chain` (a move's fence: LocalObjects)."""
        lock = cls()
        lock.owner = chain
        lock._depth = 1
        return lock

    def acquire(self, chain: str, timeout: float | None = None) -> bool:
        with _GUARD:
            if self.owner is not None and self.owner != chain:
                if self._waiting is None:
                    self._waiting = threading.Condition(_GUARD)
                if not self._waiting.wait_for(lambda: self.owner is None or self.owner == chain, timeout):
                    return False
            self.owner = chain
            self._depth += 1
            return True

    def release(self) -> None:
        with _GUARD:
            self._release()

    def _release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.owner = None
            if self._waiting is not None:
                self._waiting.notify()

    @staticmethod
    def take_free(locks: list["ChainLock"], chain: str) -> list[bool]:
        """Take, for `chain`, each of these locks that no other chain holds, without waiting:
        whether each was taken. One pass under the guard (moves take thousands at a time)."""
        taken = []
        with _GUARD:
            for lock in locks:
                free = lock.owner is None or lock.owner == chain
                if free:
                    lock.owner = chain
                    lock._depth += 1
                taken.append(free)
        return taken

    @staticmethod
    def release_all(locks: list["ChainLock"]) -> None:
        with _GUARD:
            for lock in locks:
                lock._release()


def lock_of(obj: Any) -> ChainLock:
    """obj's ChainLock, made on first use (dict.setdefault is atomic: one lock per object)."""
    lock = obj.__dict__.get(lc.LOCK)
    return lock if lock is not None else obj.__dict__.setdefault(lc.LOCK, ChainLock())


class LoadedSet:
    """Loaded instances in LRU order with their sizes; picks what to unload past a limit.
    `load_lock` is the lock loads happen under: an object is unloaded holding it too, so a
    read that reloads the object (reads take no object lock) never interleaves with it."""

    def __init__(self, memory_limit: int, load_lock: threading.Lock) -> None:
        self.memory_limit = memory_limit
        self.load_lock = load_lock
        self._sizes: "OrderedDict[UUID, tuple[Any, int]]" = OrderedDict()
        self.total = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sizes)

    def touch(self, object_id: UUID, obj: Any, size: int) -> None:
        with self._lock:
            old = self._sizes.pop(object_id, None)
            if old is not None:
                self.total -= old[1]
            self._sizes[object_id] = (obj, size)
            self.total += size

    def discard(self, *object_ids: UUID) -> None:
        with self._lock:
            for object_id in object_ids:
                old = self._sizes.pop(object_id, None)
                if old is not None:
                    self.total -= old[1]

    def evict(self) -> None:
        """Unload least recently used objects that no call holds (a move may), until under the
        limit. Each is unloaded holding its lock (taken only if free: never waits) or held by
        a move, and holding the load lock: no call, read, move or version sees it half unloaded."""
        if self.total <= self.memory_limit:
            return  # the common case: no need to wait for a load in progress
        with self._lock, self.load_lock:
            skipped = []
            while self.total > self.memory_limit and self._sizes:
                object_id, (obj, size) = self._sizes.popitem(last=False)
                state = obj.__dict__
                lock = lock_of(obj)
                taken = ChainLock.take_free([lock], EVICTION_CHAIN)[0]
                try:
                    owner = lock.owner
                    if not (taken or (owner is not None and owner.startswith(MOVE_CHAIN_PREFIX))) \
                            or state.get(lc.PENDING):  # in use, or a change not yet stored
                        skipped.append((object_id, (obj, size)))
                        continue
                    self.total -= size
                    lc.unload(obj)
                finally:
                    if taken:
                        lock.release()
            for object_id, entry in reversed(skipped):
                self._sizes[object_id] = entry
                self._sizes.move_to_end(object_id, last=False)
