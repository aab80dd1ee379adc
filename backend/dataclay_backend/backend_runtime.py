"""A backend's runtime: runs the objects it owns in place and makes every change durable.

Each incoming request runs in a RequestScope. Active methods and property writes on owned
objects take the object's ChainLock and mark the object touched; before the reply goes out,
`commit` pickles each touched object (under its lock, so the snapshot is never half a method),
skips those whose bytes did not change, registers objects that became persistent during the
request, and writes all of it in one SQLite transaction. So when a call returns, its effects
survive `kill -9` of the backend.
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Coroutine, Iterator
from uuid import UUID

from dataclay.dataclay_object import IMMUTABLE_TYPES, DataClayObject
from dataclay.exceptions import (
    InvalidRequestError,
    ObjectBusyError,
    ObjectNotRegisteredError,
    ObjectWithWrongBackendIdError,
)
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.runtime import Runtime
from dataclay.serialization import Ref, class_path, dump, dumps, import_class, loads, make_ref
from dataclay.transport import CURRENT_CHAIN, run_blocking
from dataclay_backend.heap import LOCK_TIMEOUT, ChainLock, LoadedSet, lock_of
from dataclay_backend.object_store import INLINE_LIMIT, ObjectStore, StoredObject
from dataclay_backend.wire import parse_uuid


@dataclass
class RequestScope:
    chain: str
    touched: dict[UUID, DataClayObject] = field(default_factory=dict)  # may have changed
    dirty: set[UUID] = field(default_factory=set)  # did change: a property was assigned
    new: dict[UUID, DataClayObject] = field(default_factory=dict)  # became persistent here
    pending: set[UUID] = field(default_factory=set)  # touched objects not yet committed (no eviction)


SCOPE: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar("dataclay_scope", default=None)


def is_settled(obj: DataClayObject, scope: RequestScope | None) -> bool:
    """No request but `scope`'s own has a change of obj on its way to SQLite: what is stored
    (and its revision) is what is in memory, apart from that request's own change."""
    own = 1 if scope is not None and obj.__dict__["_dc_id"] in scope.pending else 0
    return obj.__dict__.get("_dc_pending", 0) <= own


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _can_change_in_place(obj: DataClayObject) -> bool:
    """Whether a property value could change without an assignment (a list, a dict, ...).
    If not, only assignments (which mark the object dirty) can change the object, and an
    active method that assigned nothing needs no write at all."""
    state = obj.__dict__
    for name in obj._dc_properties:
        value = state.get(name)
        if type(value) not in IMMUTABLE_TYPES and not getattr(value, "_dc_is_dataclay_object", False):
            return True
    return False


class _ImmutableState:
    """A large state whose values are all immutable (bytes, str, numbers): the store pickles
    it straight into its file, after the object's lock is released (the values cannot change
    meanwhile), with no copy of it in memory: a 64 MiB write saves copying 64 MiB."""

    __slots__ = ("values", "size")

    def __init__(self, values: dict[str, Any], size: int) -> None:
        self.values, self.size = values, size

    def __len__(self) -> int:
        return self.size

    def write_to(self, file: BinaryIO) -> None:
        dump(self.values, file, _no_reference)


def _no_reference(obj: Any) -> Ref:
    raise AssertionError("an immutable state holds no persistent object")


def _large_immutable_size(values: dict[str, Any]) -> int:
    """The size of a state that _ImmutableState can write, or 0."""
    size = 0
    for value in values.values():
        if type(value) not in IMMUTABLE_TYPES:
            return 0
        if type(value) in (bytes, str):
            size += len(value)
    return size if size > INLINE_LIMIT else 0


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _hint_free_ref(obj: DataClayObject) -> Ref:
    return (obj.__dict__["_dc_id"].bytes, class_path(type(obj)), b"")


def _state_digest(obj: DataClayObject) -> bytes:
    """What commits compare to tell whether an object changed in place: its state with
    references written without their owner hints (a referenced object that moved elsewhere
    is no change of this one)."""
    return _digest(dumps(obj._dc_state(), _hint_free_ref))


def _digest_if_needed(obj: DataClayObject) -> bytes | None:
    """The digest that later commits compare against, for objects that need one."""
    return _state_digest(obj) if _can_change_in_place(obj) else None


class BackendRuntime(Runtime):
    def __init__(self, metadata_address: str, store: ObjectStore, name: str, memory_limit: int) -> None:
        super().__init__(metadata_address)
        self.store = store
        self.name = name
        self.local_backend_id = store.backend_id()
        self.owned: dict[UUID, str] = {}  # object id -> class path, for every object stored here
        self._load_lock = threading.Lock()
        self.loaded = LoadedSet(memory_limit, self._load_lock)
        self._loop_creation = threading.Lock()
        self._settled = threading.Condition()  # notified when an object has no commit on its way
        self._chains = itertools.count()
        self._chain_prefix = self.local_backend_id.hex[:8]
        self._loop: asyncio.AbstractEventLoop | None = None
        from dataclay_backend.mover import Mover  # these need this module loaded
        from dataclay_backend.versioning import Versioning

        self.mover = Mover(self)
        self.versioning = Versioning(self)

    # ------------------------------------------------------------------ identity
    def instance(self, object_id: UUID, class_path_: str, backend_id: UUID | None) -> DataClayObject:
        if object_id in self.owned:
            return self.local_instance(object_id, self.owned[object_id])
        return super().instance(object_id, class_path_, backend_id)

    def local_instance(self, object_id: UUID, class_path_: str) -> DataClayObject:
        obj = self.heap.get(object_id)
        if obj is not None and obj.__dict__["_dc_is_local"]:
            return obj
        with self._heap_lock:
            return self._local_instance_locked(object_id, class_path_)

    def local_instances(self, pairs: list[tuple[UUID, str]]) -> list[DataClayObject]:
        """local_instance of many (object id, class path) pairs, taking the heap lock once."""
        with self._heap_lock:
            return [self._local_instance_locked(object_id, path) for object_id, path in pairs]

    def _local_instance_locked(self, object_id: UUID, class_path_: str) -> DataClayObject:
        obj = self.heap.get(object_id)
        if obj is None:
            obj = object.__new__(import_class(class_path_))  # no __init__, no fresh id
            obj.__dict__.update(  # complete before another thread can find it in the heap
                _dc_id=object_id, _dc_is_registered=True, _dc_is_local=True,
                _dc_is_loaded=False, _dc_backend_id=self.local_backend_id, _dc_lock=ChainLock(),
            )
            self.heap[object_id] = obj
        elif not obj.__dict__.get("_dc_is_local") or obj.__dict__["_dc_id"] != object_id:
            obj.__dict__.update(
                _dc_id=object_id, _dc_is_registered=True, _dc_is_local=True,
                _dc_is_loaded=False, _dc_backend_id=self.local_backend_id,
            )
        return obj

    def became_remote(self, objects: list[DataClayObject], backend_id: UUID | None, delete_rows: bool = True) -> None:
        """These objects are no longer ours (moved, or retired versions): forget the stored
        copies (unless the caller already did) and keep the instances as proxies."""
        if delete_rows:
            self.store.delete(obj.__dict__["_dc_id"] for obj in objects)
        ids = [obj.__dict__["_dc_id"] for obj in objects]
        for object_id in ids:
            self.owned.pop(object_id, None)
        self.loaded.discard(*ids)
        super().became_remote(objects, backend_id)

    def move_here(
        self, obj: DataClayObject, target: UUID, recursive: bool, on_progress: Callable[[int, int], None] | None
    ) -> pb.MoveProgress | None:
        """Within a blocking call served here, move objects owned here in the call's own scope
        (a Move request to ourselves would wait for the call's uncommitted changes to commit,
        which wait for the move). Async methods ask the owner, never blocking the event loop."""
        object_id = obj.__dict__["_dc_id"]
        if SCOPE.get() is None or object_id not in self.owned or _in_event_loop():
            return None

        def progress(update: pb.MoveProgress) -> None:
            if on_progress is not None and update.objects_total:
                on_progress(update.objects_sent, update.objects_total)

        return self.mover.move([object_id], target, recursive, False, progress)

    def local_object(self, object_id: UUID) -> DataClayObject:
        """The owned object with this id, or the typed error that tells the caller where it is."""
        class_path_ = self.owned.get(object_id)
        if class_path_ is not None:
            return self.local_instance(object_id, class_path_)
        self.versioning.check_not_retired(object_id)
        entry = run_blocking(self.blocking.metadata("LocateObject", pb.ObjectRequest(object_id=object_id.bytes)))
        owner = UUID(bytes=entry.backend_id)
        if self.mover.activate_if_committed(object_id, owner) or object_id in self.owned:
            return self.local_instance(object_id, self.owned[object_id])  # arrived while we asked
        if owner == self.local_backend_id:
            raise ObjectNotRegisteredError(
                f"object {object_id} is assigned to backend {self.name} but not stored there", object_id=object_id
            )
        raise ObjectWithWrongBackendIdError(
            f"object {object_id} is owned by backend {owner}, not {self.name}", object_id=object_id, backend_id=owner
        )

    # ------------------------------------------------------------------ requests
    def new_chain(self) -> str:
        return f"{self._chain_prefix}-{next(self._chains)}"

    @contextlib.contextmanager
    def request(self, chain: str | None = None) -> Iterator[RequestScope]:
        """Serve one request: a scope for what it touches, committed before it ends."""
        scope = RequestScope(chain or self.new_chain())
        scope_token = SCOPE.set(scope)
        chain_token = CURRENT_CHAIN.set(scope.chain)
        try:
            yield scope
        finally:
            try:
                self.commit(scope)
            finally:
                CURRENT_CHAIN.reset(chain_token)
                SCOPE.reset(scope_token)

    def _scope(self) -> RequestScope:
        scope = SCOPE.get()
        if scope is None:
            raise RuntimeError("a persistent object was changed outside of a request")
        return scope

    lock_of = staticmethod(lock_of)

    # ------------------------------------------------ object model hooks (local objects)
    def acquire(self, obj: DataClayObject, chain: str, settled: bool = False) -> None:
        """Lock obj for `chain` (once its commits have landed, if `settled`), or fail with
        ObjectBusyError after LOCK_TIMEOUT: no call waits forever."""
        if settled:
            held = self.hold_settled(obj, chain, LOCK_TIMEOUT)
        else:
            held = self.lock_of(obj).acquire(chain, LOCK_TIMEOUT)
        if not held:
            object_id = obj.__dict__["_dc_id"]
            raise ObjectBusyError(
                f"object {object_id} on backend {self.name} stayed busy for {LOCK_TIMEOUT:.0f}s (another call holds "
                "it); nothing was changed, try again", object_id=object_id)

    def _hold(self, obj: DataClayObject, scope: RequestScope) -> bool:
        """Take obj's lock for this chain and load it. False (lock not held) if obj moved
        away while we waited: the caller then forwards to the new owner."""
        lock = self.lock_of(obj)
        self.acquire(obj, scope.chain)
        try:
            if not obj.__dict__["_dc_is_local"]:
                lock.release()
                return False
            if not obj.__dict__["_dc_is_loaded"]:
                self.load_local(obj)
        except BaseException:
            lock.release()
            raise
        object_id = obj.__dict__["_dc_id"]
        if object_id not in scope.pending:  # under the object's lock, like the decrement in commit
            scope.pending.add(object_id)
            obj.__dict__["_dc_pending"] = obj.__dict__.get("_dc_pending", 0) + 1
        scope.touched[object_id] = obj
        return True

    def _unpend(self, obj: DataClayObject, scope: RequestScope) -> None:
        """Under obj's lock: this request's change of obj is in SQLite (or was nothing)."""
        object_id = obj.__dict__["_dc_id"]
        if object_id in scope.pending:
            scope.pending.discard(object_id)
            obj.__dict__["_dc_pending"] -= 1
            if not obj.__dict__["_dc_pending"]:
                with self._settled:
                    self._settled.notify_all()

    def hold_settled(self, obj: DataClayObject, chain: str, timeout: float) -> bool:
        """Lock obj for `chain` once no other request has a change of it on its way to SQLite,
        so that what is stored (and its revision) is what is in memory. Moves, consolidations
        and new versions take objects this way. False on timeout (lock not held)."""
        deadline = time.monotonic() + timeout
        lock = self.lock_of(obj)
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

    def touch_local(self, obj: DataClayObject) -> None:
        """A mutable property value of obj was read while serving a request: the request may
        change it in place, so obj is committed (if it changed) with the request."""
        scope = SCOPE.get()
        if scope is None or obj.__dict__["_dc_id"] in scope.touched:
            return
        if self._hold(obj, scope):
            self.lock_of(obj).release()

    def call_local(self, obj: DataClayObject, func: Callable, args: tuple, kwargs: dict) -> Any:
        scope = self._scope()
        if not self._hold(obj, scope):
            return self.call_method(obj, func.__name__, args, kwargs)
        try:
            return func(obj, *args, **kwargs)
        finally:
            self.lock_of(obj).release()

    async def call_local_async(self, obj: DataClayObject, func: Callable, args: tuple, kwargs: dict) -> Any:
        scope = self._scope()
        lock = self.lock_of(obj)
        if not lock.acquire(scope.chain, timeout=0):  # never block the event loop: wait in a thread
            await asyncio.to_thread(self.acquire, obj, scope.chain)
        try:
            if not self._hold(obj, scope):  # re-enters the lock we hold: does not block
                from dataclay import operations as ops

                return await ops.call_method(self, self.async_transport(), obj, func.__name__, args, kwargs)
            try:
                return await func(obj, *args, **kwargs)
            finally:
                lock.release()
        finally:
            lock.release()

    def write_local(self, obj: DataClayObject, name: str, value: Any) -> None:
        scope = self._scope()
        if not self._hold(obj, scope):
            return self.set_attribute(obj, name, value)
        try:
            obj.__dict__[name] = value
            scope.dirty.add(obj.__dict__["_dc_id"])
        finally:
            self.lock_of(obj).release()

    def load_local(self, obj: DataClayObject) -> None:
        state = obj.__dict__
        with self._load_lock:
            if state["_dc_is_loaded"]:
                return
            stored = self.store.load(state["_dc_id"])
            if stored is None:
                raise ObjectNotRegisteredError(
                    f"object {state['_dc_id']} is not stored on backend {self.name}", object_id=state["_dc_id"]
                )
            state.update(self.decode(stored.state))
            state.update(_dc_is_loaded=True, _dc_revision=stored.revision)
            state["_dc_digest"] = _digest_if_needed(obj)
        self.loaded.touch(state["_dc_id"], obj, len(stored.state))

    # ------------------------------------------------------------------ async methods
    def run_coroutine(self, coro: Coroutine) -> Any:
        """Run an `async def` active method on this backend's event loop thread, in the
        caller's request scope, and wait for it."""
        if self._loop is None:
            with self._loop_creation:
                if self._loop is None:
                    loop = asyncio.new_event_loop()
                    threading.Thread(target=loop.run_forever, name="dataclay-async", daemon=True).start()
                    self._loop = loop
        context = contextvars.copy_context()
        done = threading.Event()
        outcome: list[Any] = []

        def start() -> None:
            task = self._loop.create_task(coro, context=context)  # type: ignore[union-attr]
            task.add_done_callback(lambda t: (outcome.append(t), done.set()))

        self._loop.call_soon_threadsafe(start)
        done.wait()
        return outcome[0].result()

    # ------------------------------------------------------------------ storing
    def encode_reply(self, value: Any) -> bytes:
        """Pickle a result; objects created here that it reaches become persistent here."""
        scope = self._scope()
        return dumps(value, lambda obj: self._reference(obj, scope))

    def _reference(self, obj: DataClayObject, scope: RequestScope) -> Ref:
        state = obj.__dict__
        if not state["_dc_is_registered"]:
            state.update(_dc_is_registered=True, _dc_backend_id=self.local_backend_id)
            scope.new[state["_dc_id"]] = obj
            scope.touched[state["_dc_id"]] = obj
            scope.dirty.add(state["_dc_id"])
        return make_ref(obj)

    def commit(self, scope: RequestScope) -> None:
        """Make what the request changed durable, in one transaction (see module docstring)."""
        if not scope.touched:
            return
        rows: list[tuple[DataClayObject, StoredObject]] = []
        done: set[UUID] = set()
        try:
            while len(done) < len(scope.touched):
                for object_id, obj in list(scope.touched.items()):
                    if object_id not in done:
                        done.add(object_id)
                        row = self._snapshot_for_commit(obj, scope)
                        if row is not None:
                            rows.append(row)
            try:
                if scope.new:
                    self._register(list(scope.new.values()))
                self.store.write(row for _, row in rows)
            except BaseException:
                for obj in scope.new.values():
                    obj.__dict__.update(_dc_is_registered=False, _dc_backend_id=None)
                raise
        finally:
            for object_id in list(scope.pending):
                obj = scope.touched[object_id]
                lock = self.lock_of(obj)
                lock.acquire(scope.chain)
                try:
                    self._unpend(obj, scope)
                finally:
                    lock.release()
        for obj, row in rows:
            self.loaded.touch(row.object_id, obj, len(row.state))
        for object_id, obj in scope.new.items():
            self.owned[object_id] = class_path(type(obj))
            self.heap[object_id] = obj
        self.loaded.evict()

    def _snapshot_for_commit(self, obj: DataClayObject, scope: RequestScope) -> tuple[DataClayObject, StoredObject] | None:
        """Under obj's lock: its new row, or None if it cannot have changed (or moved away).
        The revision is taken here, under the lock, so two commits of one object get
        increasing revisions in the order of their snapshots; the store keeps the higher."""
        state = obj.__dict__
        object_id = state["_dc_id"]
        lock = self.lock_of(obj)
        lock.acquire(scope.chain)
        try:
            if not state["_dc_is_loaded"] or not state["_dc_is_local"]:
                return None  # moved away meanwhile: the move carried the in-memory state
            assigned = object_id in scope.dirty
            in_place = _can_change_in_place(obj)
            if not assigned and not in_place:
                return None  # nothing was assigned and nothing can change in place
            digest = _state_digest(obj) if in_place else None
            if not assigned and digest == state.get("_dc_digest"):
                return None
            values = obj._dc_state()
            size = _large_immutable_size(values)
            data = _ImmutableState(values, size) if size else dumps(values, lambda ref: self._reference(ref, scope))
            revision = state["_dc_revision"] = state.get("_dc_revision", 0) + 1
            state["_dc_digest"] = digest
        finally:
            lock.release()
        return obj, StoredObject(object_id, class_path(type(obj)), revision, data)

    def _register(self, objects: list[DataClayObject], alias: str = "") -> None:
        self._register_entries([
            pb.ObjectEntry(object_id=o.__dict__["_dc_id"].bytes, class_path=class_path(type(o)),
                           backend_id=self.local_backend_id.bytes)
            for o in objects
        ], alias)

    def _register_entries(self, entries: list[pb.ObjectEntry], alias: str = "") -> None:
        """New objects of this backend into the directory (before they are stored here: a
        crash in between leaves entries that recovery removes, never unlisted objects)."""
        run_blocking(self.blocking.metadata("RegisterObjects", pb.RegisterObjectsRequest(objects=entries, alias=alias)))

    def store_records(
        self, records: list[pb.ObjectRecord], alias: str, lineages: dict[UUID, tuple[UUID, UUID]] | None = None
    ) -> None:
        """StoreObjects: new objects sent by a client, checked, registered, then stored.
        Versions made here pass their `lineages` (id -> parent, original) and skip the checks."""
        rows = []
        entries = []
        for record in records:
            object_id = parse_uuid(record.object_id, "object id")
            if lineages is not None:
                parent, original = lineages[object_id]
            else:
                import_class(record.class_path)
                try:
                    state = loads(record.state, lambda ref: None)
                    parent, original, _ = state.get("_dc_version") or (None, None, None)
                except Exception as exc:
                    raise InvalidRequestError(
                        f"the state of object {object_id} cannot be decoded: {exc}", object_id=object_id) from None
                unknown = set(state) - set(import_class(record.class_path)._dc_properties) - {"_dc_version"}
                if unknown:
                    raise InvalidRequestError(
                        f"the state of object {object_id} has names that are not persistent properties of "
                        f"{record.class_path}: {sorted(unknown)}", object_id=object_id)
            rows.append(StoredObject(object_id, record.class_path, 1, record.state))
            entries.append(pb.ObjectEntry(
                object_id=object_id.bytes, class_path=record.class_path, backend_id=self.local_backend_id.bytes,
                version_parent=parent.bytes if parent else b"", version_original=original.bytes if original else b""))
        if not rows:
            raise InvalidRequestError("StoreObjects needs at least one object")
        self._register_entries(entries, alias)
        self.store.write(rows)
        for row in rows:
            self.owned[row.object_id] = row.class_path

    def store_local(self, objects: list[DataClayObject], states: list[bytes], alias: str | None) -> None:
        """make_persistent() called on this backend for this backend: the instances stay."""
        self._register(objects, alias or "")
        rows = [StoredObject(o.__dict__["_dc_id"], class_path(type(o)), 1, s) for o, s in zip(objects, states)]
        self.store.write(rows)
        for obj, row in zip(objects, rows):
            obj.__dict__.update(
                _dc_is_registered=True, _dc_is_local=True, _dc_is_loaded=True,
                _dc_backend_id=self.local_backend_id, _dc_revision=1,
            )
            obj.__dict__["_dc_digest"] = _digest_if_needed(obj)
            self.owned[row.object_id] = row.class_path
            self.heap[row.object_id] = obj
            self.loaded.touch(row.object_id, obj, len(row.state))

    def snapshot(self, obj: DataClayObject) -> bytes:
        """The object's current state, pickled consistently (under its lock)."""
        scope = self._scope()
        if not self._hold(obj, scope):
            raise ObjectWithWrongBackendIdError(
                f"object {obj.__dict__['_dc_id']} moved to backend {obj.__dict__['_dc_backend_id']}",
                object_id=obj.__dict__["_dc_id"], backend_id=obj.__dict__["_dc_backend_id"],
            )
        try:
            return dumps(obj._dc_state(), lambda ref_obj: self._reference(ref_obj, scope))
        finally:
            self.lock_of(obj).release()

    # ------------------------------------------------------------------ recovery
    def recover(self) -> tuple[int, int]:
        """Agree with the directory on what this backend owns: it is the authority. Incoming
        moves it committed are activated, others discarded; objects stored here that it does
        not give us are dropped (moved away, or never acknowledged); entries it gives us that
        are not stored here are removed from it (never acknowledged either)."""
        reply = run_blocking(self.blocking.metadata("ListOwnedObjects", pb.BackendRequest(backend_id=self.local_backend_id.bytes)))
        assigned = {UUID(bytes=raw) for raw in reply.object_ids}
        self.mover.recover(assigned)
        stored = self.store.classes()
        stale_local = [object_id for object_id in stored if object_id not in assigned]
        stale_directory = [object_id for object_id in assigned if object_id not in stored]
        if stale_local:
            self.store.delete(stale_local)
        if stale_directory:
            run_blocking(self.blocking.metadata("DropObjects", pb.ObjectIdList(object_ids=[o.bytes for o in stale_directory])))
        self.owned = {object_id: path for object_id, path in stored.items() if object_id in assigned}
        self.versioning.recover()
        return len(stale_local), len(stale_directory)

