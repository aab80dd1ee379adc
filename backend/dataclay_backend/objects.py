"""The objects a backend owns: which ones (`owned`), their one instance each in the process's
identity map, loading their state from the store, and bounded memory (heap.LoadedSet).

Only this module adds to or removes from `owned`; moves, versions and recovery say what
happened (`adopt`, `remember`, `give_up`) and it keeps `owned`, the identity map and the loaded
set in agreement. States and transitions of an instance: dataclay.lifecycle.

The fence: a move takes objects that have no instance in memory without making one (`take`):
their ids go into the move's Fence instead. An instance made for a fenced id while the move
runs (a call for it arrives) starts with its lock held by the move's chain, so the call waits
for the move as it would for a locked instance; `unfence` lets those locks go. A move of
100,000 stored objects so makes no 100,000 instances only to lock them and turn them into
proxies, and keeps one entry per object (in its own Fence, which is the walk's record of them
too). An instance is made only of an owned id (else it is a proxy, BACKEND unknown): an id
given up is never served here again by a call that found it owned a moment before.

The class paths in `owned` (and in staged moves and fences) are one string per class, not one
per object: each place a path enters from a message or a row interns it (sys.intern, as
serialization.class_path does), which keeps about 70 bytes per object off a backend that owns many.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable
from uuid import UUID
from weakref import WeakValueDictionary

from dataclay import lifecycle as lc
from dataclay.exceptions import ObjectNotRegisteredError
from dataclay.serialization import class_path, import_class, loads
from dataclay_backend.heap import ChainLock, LoadedSet
from dataclay_backend.object_store import ObjectStore
from dataclay_backend.state import digest_if_needed

log = logging.getLogger(__name__)

GIVE_UP_STEP = 4096  # fenced ids given up per hold of the identity map's lock (held briefly)


class Fence:
    """The ids one move's walk took without making instances (module docstring), with their
    class paths, and the locks of instances made of them meanwhile (held by `chain`). Changed
    under the identity map's lock."""

    __slots__ = ("chain", "ids", "locks")

    def __init__(self, chain: str) -> None:
        self.chain = chain
        self.ids: dict[UUID, str] = {}
        self.locks: dict[UUID, ChainLock] = {}


class LocalObjects:
    def __init__(
        self, store: ObjectStore, name: str, memory_limit: int,
        heap: "WeakValueDictionary[UUID, Any]", heap_lock: threading.Lock,
        resolve: Callable[[Any], Any], to_proxies: Callable[[list[Any], UUID | None], None],
    ) -> None:
        self.store = store
        self.name = name
        self.backend_id = store.backend_id()
        self.owned: dict[UUID, str] = {}  # object id -> class path, for every object stored here
        self.heap = heap  # the process's identity map: one instance per object id
        self._heap_lock = heap_lock  # every write of the map takes it
        self._resolve = resolve  # a reference -> the one instance of its object here
        self._to_proxies = to_proxies
        self.load_lock = threading.Lock()
        self.loaded = LoadedSet(memory_limit, self.load_lock)
        self._fences: list[Fence] = []  # of the moves running (module docstring); under the map's lock

    # ------------------------------------------------------------------ instances
    def instance(self, object_id: UUID, class_path_: str) -> Any:
        """The one instance of an owned object (UNLOADED if it was not here yet)."""
        obj = self.heap.get(object_id)
        if obj is not None and obj.__dict__[lc.LOCAL]:
            return obj
        with self._heap_lock:
            return self._instance_locked(object_id, class_path_)

    def instances(self, pairs: list[tuple[UUID, str]]) -> list[Any]:
        """instance() of many (object id, class path) pairs, taking the map's lock once."""
        with self._heap_lock:
            return [self._instance_locked(object_id, path) for object_id, path in pairs]

    def _instance_locked(self, object_id: UUID, class_path_: str) -> Any:
        obj = self.heap.get(object_id)
        if object_id not in self.owned:  # given up since the caller looked: not ours to serve
            if obj is None:
                obj = object.__new__(import_class(class_path_))
                lc.proxy(obj, object_id, None)  # a call through it asks the directory where it is
                self.heap[object_id] = obj
            return obj
        if obj is None:
            obj = object.__new__(import_class(class_path_))  # no __init__, no fresh id
            lc.owned_here(obj, object_id, self.backend_id)  # complete before another thread finds it
        elif not obj.__dict__.get(lc.LOCAL) or obj.__dict__[lc.ID] != object_id:
            lc.owned_here(obj, object_id, self.backend_id)  # a proxy we held becomes the object
        else:
            return obj
        fence = self._fence_of(object_id) if self._fences else None
        if fence is not None:  # a move holds this id: the instance gets the move's lock before anyone sees it
            lock = fence.locks.get(object_id)
            if lock is None:
                lock = fence.locks[object_id] = ChainLock.held_by(fence.chain)
            obj.__dict__[lc.LOCK] = lock
        self.heap[object_id] = obj
        return obj

    def _fence_of(self, object_id: UUID) -> Fence | None:
        """Under the map's lock: the fence holding object_id, if one does (few moves run at once)."""
        for fence in self._fences:
            if object_id in fence.ids:
                return fence
        return None

    def fence(self, chain: str) -> Fence:
        """A new fence for a move's walk of chain `chain` (module docstring)."""
        fence = Fence(chain)
        with self._heap_lock:
            self._fences.append(fence)
        return fence

    def take(self, pairs: list[tuple[UUID, str]], fence: Fence) -> list[Any | None]:
        """For a move's walk, of (object id, class path) pairs it found owned: the instance of
        each that has one in memory (to lock as usual), None for each that has none, which goes
        into the walk's `fence` instead (module docstring) until `unfence`. One another move
        fenced gets an instance, whose lock that move holds: waited for as usual; one given up
        since the walk looked gets a proxy (which the walk skips, as it skips any that left)."""
        taken: list[Any | None] = []
        heap, owned, ids = self.heap, self.owned, fence.ids
        with self._heap_lock:
            others = [other.ids for other in self._fences if other is not fence]  # most often none
            try:
                for object_id, path in pairs:
                    if object_id not in heap and object_id in owned and \
                            not (others and any(object_id in i for i in others)):
                        ids[object_id] = path
                        taken.append(None)
                    else:
                        taken.append(self._instance_locked(object_id, path))
            except BaseException:  # e.g. a class that cannot be imported: nothing stays fenced
                for (object_id, _), obj in zip(pairs, taken):
                    if obj is None:
                        del ids[object_id]
                raise
        return taken

    def unfence(self, fence: Fence, object_ids: Iterable[UUID] | None = None) -> None:
        """The move of `fence` is over (given up, or failed: then its objects are still ours),
        or no longer holds `object_ids`: calls waiting for instances made meanwhile go on."""
        with self._heap_lock:
            if object_ids is None:
                if fence in self._fences:
                    self._fences.remove(fence)
                locks = list(fence.locks.values())
                fence.locks.clear()
            else:
                locks = []
                for object_id in object_ids:
                    del fence.ids[object_id]
                    lock = fence.locks.pop(object_id, None)
                    if lock is not None:
                        locks.append(lock)
        ChainLock.release_all(locks)

    def load(self, obj: Any) -> None:
        """UNLOADED -> LOADED, from the store (under the load lock: see dataclay_backend.locking)."""
        meta = obj.__dict__
        if lc.IN_STATE_HOOK.get() is not None and lc.IN_STATE_HOOK.get() is not obj:
            lc.refuse_in_state_hook(f"{obj!r}")  # the load lock is held: it would wait for itself
        with self.load_lock:
            if meta[lc.LOADED]:
                return
            stored = self.store.load(meta[lc.ID])
            if stored is None:
                raise ObjectNotRegisteredError(
                    f"Object {meta[lc.ID]} is not registered! (not stored on backend {self.name})", object_id=meta[lc.ID])
            lc.load(obj, loads(stored.state, self._resolve), stored.revision)
            meta[lc.DIGEST] = digest_if_needed(obj)
        self.loaded.touch(meta[lc.ID], obj, len(stored.state))

    def ensure_loaded(self, obj: Any) -> Any:
        if not obj.__dict__[lc.LOADED]:
            self.load(obj)
        return obj

    def ready(self, obj: Any) -> Any:
        """Holding obj's lock: its stored state in memory (reloaded if a failed request left
        a change there, lifecycle.STALE), loaded if it was not."""
        if obj.__dict__.get(lc.STALE):
            self.unload(obj)
        return self.ensure_loaded(obj)

    def unload(self, obj: Any) -> None:
        """Holding obj's lock: drop its properties; the next use loads what is stored."""
        with self.load_lock:
            lc.unload(obj)
        self.loaded.discard(obj.__dict__[lc.ID])

    # ------------------------------------------------------------------ ownership
    def remember(self, objects: Iterable[Any]) -> None:
        """Objects that became persistent here (their state is stored): owned, in the map."""
        with self._heap_lock:
            for obj in objects:
                object_id = obj.__dict__[lc.ID]
                self.owned[object_id] = class_path(type(obj))  # interned already
                self.heap[object_id] = obj

    def adopt(self, classes: dict[UUID, str]) -> None:
        """Objects stored here (an activated move, versions, an in-doubt move that did not
        commit) are owned here now; proxies this process held of them become the objects."""
        self.owned.update(classes)  # owned before the instances change: never neither
        heap = self.heap
        if len(classes) > len(heap):  # e.g. a large move: look at what is in memory instead
            held = [object_id for object_id in list(heap.keys()) if object_id in classes]
        else:
            held = [object_id for object_id in classes if object_id in heap]
        for object_id in held:
            self.instance(object_id, classes[object_id])

    def give_up(self, objects: list[Any], backend_id: UUID | None, delete_rows: bool = True,
                later: bool = False, fence: Fence | None = None) -> None:
        """These objects (and the ids in a move's `fence`, module docstring) are no longer ours
        (a committed move, retired versions): keep the instances as proxies, then forget the
        stored copies (unless the caller already did; `later`: after the caller's reply,
        ObjectStore.delete_later). Never fails: the caller is past its commit point, and
        serving them here after it would make two owners; rows that cannot be deleted now are
        dropped by the next start's recovery (the directory does not assign them here)."""
        ids = [obj.__dict__[lc.ID] for obj in objects]
        owned = self.owned
        for object_id in ids:
            owned.pop(object_id, None)
        fenced = list(fence.ids) if fence is not None else []
        for start in range(0, len(fenced), GIVE_UP_STEP):
            with self._heap_lock:  # no instance is made of these after this: they are not owned
                for object_id in fenced[start:start + GIVE_UP_STEP]:
                    owned.pop(object_id, None)
        made: list[Any] = []  # instances made of fenced ids meanwhile (they hold the fence's locks)
        if fence is not None:
            with self._heap_lock:
                made = [obj for obj in map(self.heap.get, list(fence.locks))
                        if obj is not None and obj.__dict__[lc.LOCAL]]
        if made:
            objects = objects + made
        self.loaded.discard(*ids, *(obj.__dict__[lc.ID] for obj in made))  # fenced ones without an instance never loaded
        self._to_proxies(objects, backend_id)
        ids += fenced
        if delete_rows and later:
            self.store.delete_later(ids)
        elif delete_rows:
            try:
                self.store.delete(ids)
            except Exception as exc:
                log.warning("backend %s could not delete the rows of %d objects it gave up (its next start "
                            "drops them): %s", self.name, len(ids), exc)

    def forget_stored(self, object_ids: list[UUID]) -> None:
        """Live rows of objects that are not ours (recovery, a move found committed after all);
        a staged copy a later move brought back here stays (the mover decides about it)."""
        self.store.delete(object_ids, live_only=True)
