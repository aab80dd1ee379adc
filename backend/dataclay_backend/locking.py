"""Taking a backend's objects, and the backend's concurrency contract.

Concurrency contract
====================
Every lock and condition of a backend, what it guards, and in which order a thread that holds
several takes them (never the reverse). A newcomer adding a lock adds it here.

Object locks, outermost. Each owned object has a ChainLock (dataclay_backend.heap), held by a
call chain (nested calls of one chain, even through other backends, re-enter it), not a thread.
It guards the object's properties against other calls' changes and its REVISION, DIGEST and
the start of its PENDING count (see "settled" below). A chain may hold many (a call that calls
another object, a move's walk, a consolidation); there is no global order between objects
(calls nest as user code says), so every wait for one is bounded by ``lock_timeout`` (flag
``--lock-timeout``, DC_LOCK_TIMEOUT) and fails with ObjectBusyError, which breaks any cycle.
A walk never holds a later object while it waits for an earlier one (dataclay_backend.walk).
A move's walk takes objects with no instance in memory by fencing their ids instead
(LocalObjects.take, guarded by the identity map's lock): an instance made of a fenced id starts
with its ChainLock held by the move's chain, so it is waited for as any object the move holds.

Then, in this order:
  1. LoadedSet's lock (heap.LoadedSet): the LRU list of loaded objects and their sizes.
  2. The load lock (LocalObjects.load_lock): an object's properties coming into or leaving
     memory. Loads and unloads (eviction) happen under it, so a read (which takes no object
     lock) never sees an object half loaded or half unloaded; a move's walk reads loaded
     states under it, which is why eviction may unload objects a move holds.
  3. The ChainLock guard (heap._GUARD): the fields of every ChainLock; held for microseconds.
     Eviction takes object locks only if free, under 1 and 2: it never waits.
The mover's resolve lock (one in-doubt move resolved at a time) is held while it asks the
directory (a call with a deadline) and comes before the mover's lock. The mover's lock (staged
incoming moves, in-doubt outgoing ones) comes before the identity map's lock (activating a
move makes instances of what it brings) and the store's locks (activating or discarding a
staged move writes the store).

The store's locks (dataclay_backend.object_store, sqlite_db), taken under any of the above:
an object's file lock (a large state's two file slots; ObjectStore.write holds it while it
writes the file and the row) comes before the SQLite connection's lock (one transaction at a
time), which is innermost. The file-lock table's guard is held only to find a file lock.

Innermost, held for microseconds with nothing taken inside: the identity map's lock
(Runtime._heap_lock: every write of the map), the settled condition's lock (ObjectLocks), a
walk's guard, the versioning lock (prepared transactions), the resolve-later scheduler's
condition and the event loop's creation lock.

Two-phase locking: a request keeps every object it touched (ObjectLocks.hold) locked, for its
chain, until its changes are stored or rolled back (ObjectLocks.unpend): another call never
sees, and never stores as its own, a change that may still fail (a registration the metadata
service refuses, a full disk). Calls on one object are serialized with its stores; two chains
that take two objects in opposite orders wait for each other until ``lock_timeout``, and one
fails with ObjectBusyError (nothing of it is stored).

Settled: PENDING counts the requests whose change of an object is on its way to storage. It
goes up under the object's lock and the settled lock (ObjectLocks.hold), and down under the
settled lock alone when the change is stored (ObjectLocks.unpend), which notifies waiters.
With two-phase locking a pending change of another chain also holds the object's lock; the
count matters for a chain's own nested requests and for moves made within a call.
Holding the object's lock, a count of zero stays zero: so an object that is locked and settled
is stored exactly as it is in memory (moves, versions and consolidations take objects so).
A request whose changes cannot be stored marks what it touched STALE and unloads it under its
lock (request.Requests._roll_back): memory goes back to what is stored, and another request
that saw the change fails (ObjectRolledBackError) instead of storing it as its own.

Bounded waits: every wait for an object lock or for an object to settle ends after
``lock_timeout`` with ObjectBusyError. Eviction never waits. Every call to another process has
a deadline (dataclay.transport.Deadlines: ``--call-timeout`` for calls and for each message of
a stream, ``--method-timeout`` for active methods), so a move's transfer and commit point, a
consolidation's prepare, commit and apply, and the directory lookups of an in-doubt move all
end, even while they hold object locks. A prepared consolidation waits for its coordinator
``consolidation_timeout`` (``--consolidation-timeout``), then asks the metadata service, and
keeps its objects locked until the outcome is known (resolve_later keeps asking for about half
an hour; a restart resolves it too). Unbounded by design: a call's own user code (an active
method runs as long as it runs; `async def` methods are awaited on the backend's event loop).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from dataclay import lifecycle as lc
from dataclay.exceptions import ObjectBusyError
from dataclay_backend.heap import ChainLock, lock_of
from dataclay_backend.scope import SCOPE, RequestScope


def is_settled(obj: Any, scope: RequestScope | None) -> bool:
    """No request but `scope`'s own has a change of obj on its way to storage: what is stored
    (and its revision) is what is in memory, apart from that request's own change."""
    own = 1 if scope is not None and obj.__dict__[lc.ID] in scope.pending else 0
    return obj.__dict__.get(lc.PENDING, 0) <= own


class ObjectLocks:
    """Object locks with bounded waits, and the settled protocol (see the contract above)."""

    lock_of = staticmethod(lock_of)

    def __init__(self, backend_name: str, lock_timeout: float, load: Callable[[Any], None]) -> None:
        self.backend_name = backend_name
        self.timeout = lock_timeout
        self._load = load
        self._settled = threading.Condition(threading.Lock())  # PENDING decrements; notified at zero

    def acquire(self, obj: Any, chain: str, settled: bool = False) -> None:
        """Lock obj for `chain` (once its changes are stored, if `settled`), or fail with
        ObjectBusyError after the lock timeout: no call waits forever."""
        if settled:
            held = self.hold_settled(obj, chain, self.timeout)
        else:
            held = lock_of(obj).acquire(chain, self.timeout)
        if not held:
            object_id = obj.__dict__[lc.ID]
            raise ObjectBusyError(
                f"object {object_id} on backend {self.backend_name} stayed busy for {self.timeout:.0f}s (another call "
                "holds it); nothing was changed, try again", object_id=object_id)

    def hold(self, obj: Any, scope: RequestScope) -> bool:
        """Take obj's lock for this request, load it, and count the request's change as pending
        until it is stored. The first hold of a request takes the lock once more, released only
        when its changes are stored (two-phase locking: no other call sees, and stores as its
        own, a change that may still fail). False (lock not held) if obj moved away while we
        waited: the caller then forwards to the new owner."""
        lock = lock_of(obj)
        self.acquire(obj, scope.chain)
        meta = obj.__dict__
        try:
            if not meta[lc.LOCAL]:
                lock.release()
                return False
            if not meta[lc.LOADED] or meta.get(lc.STALE):
                self._load(obj)  # LocalObjects.ready: reloads a stale object
        except BaseException:
            lock.release()
            raise
        object_id = meta[lc.ID]
        if object_id not in scope.pending:
            scope.pending.add(object_id)
            lock.acquire(scope.chain)  # ours already: re-entry; released by `unpend`
            with self._settled:
                meta[lc.PENDING] = meta.get(lc.PENDING, 0) + 1
        scope.touched[object_id] = obj
        return True

    def unpend(self, obj: Any, scope: RequestScope) -> None:
        """This request's change of obj is stored (or was nothing, or rolled back): one fewer
        pending, and the hold `hold` kept for the request is released."""
        object_id = obj.__dict__[lc.ID]
        if object_id in scope.pending:
            scope.pending.discard(object_id)
            with self._settled:
                obj.__dict__[lc.PENDING] -= 1
                if obj.__dict__[lc.PENDING] <= 1:  # 1: settled for a request waiting on its own change
                    self._settled.notify_all()
            lock_of(obj).release()

    def hold_settled(self, obj: Any, chain: str, timeout: float) -> bool:
        """Lock obj for `chain` once no other request has a change of it on its way to storage,
        so that what is stored (and its revision) is what is in memory. Moves, consolidations
        and new versions take objects this way. False on timeout (lock not held)."""
        deadline = time.monotonic() + timeout
        lock = lock_of(obj)
        scope = SCOPE.get()
        while True:
            if not lock.acquire(chain, max(deadline - time.monotonic(), 0)):
                return False
            if is_settled(obj, scope):
                return True
            lock.release()
            with self._settled:
                if not self._settled.wait_for(lambda: is_settled(obj, scope), max(deadline - time.monotonic(), 0)):
                    return False

    @staticmethod
    def release(obj: Any) -> None:
        lock_of(obj).release()

    @staticmethod
    def release_all(objects: list[Any]) -> None:
        ChainLock.release_all([lock_of(obj) for obj in objects])
