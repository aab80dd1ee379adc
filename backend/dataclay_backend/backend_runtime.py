"""A backend's runtime: the process runtime (dataclay.runtime) of a backend, which runs the
objects it owns in place. It composes the backend's parts and answers the object model's hooks
(call_local, write_local, ...); each decision lives in the part named for it:

- objects.LocalObjects: which objects are owned here, their instances, loading, memory;
- locking.ObjectLocks: taking objects (the concurrency contract is its docstring);
- request.Requests: serving a request and storing its changes before the reply;
- incoming.Incoming: new objects arriving (StoreObjects, versions, make_persistent here);
- registrations.Registrations: new objects registered in the directory after the reply;
- mover.Mover / walk.Walk: moves; versioning.Versioning / lineage: versions, consolidation;
- replicas.Replicas / replica_plan: replicas, kept in sync by their master;
- recovery.recover: agreeing with the directory at start; event_loop: `async def` methods.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Coroutine, Iterable
from uuid import UUID

from dataclay import lifecycle as lc
from dataclay import operations as ops
from dataclay.exceptions import ObjectNotRegisteredError, ObjectWithWrongBackendIdError
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.runtime import Runtime
from dataclay.serialization import DECODING
from dataclay.transport import run_blocking
from dataclay_backend import config
from dataclay_backend.directory_client import DirectoryClient
from dataclay_backend.event_loop import EventLoop, in_event_loop
from dataclay_backend.incoming import Incoming
from dataclay_backend.locking import ObjectLocks
from dataclay_backend.mover import Mover
from dataclay_backend.object_store import ObjectStore
from dataclay_backend.objects import LocalObjects
from dataclay_backend.recovery import reconcile, recover
from dataclay_backend.registrations import Registrations
from dataclay_backend.replicas import Replicas
from dataclay_backend.request import Requests, current_scope
from dataclay_backend.scope import SCOPE
from dataclay_backend.versioning import Versioning



class BackendRuntime(Runtime):
    stubs_for_missing_classes = False  # a backend runs its objects: it must have their classes
    def __init__(
        self, metadata_address: str, store: ObjectStore, name: str, memory_limit: int,
        lock_timeout: float = config.LOCK_TIMEOUT, consolidation_timeout: float = config.CONSOLIDATION_TIMEOUT,
        credentials: Any = None,
    ) -> None:
        super().__init__(metadata_address, credentials)
        self.store = store
        self.name = name
        self.objects = LocalObjects(store, name, memory_limit, self.heap, self._heap_lock, self.resolve,
                                    super().became_remote)
        self.local_backend_id = self.objects.backend_id
        self.locks = ObjectLocks(name, lock_timeout, self.objects.ready)
        self.directory = DirectoryClient(self.blocking)
        self.registrations = Registrations(store, self.directory.send_registrations, self._drop_refused)
        self.directory.registrations = self.registrations
        self.replicas = Replicas(self.objects, self.locks, self.directory, self, self.local_object)
        self.requests = Requests(self.objects, self.locks, self.directory, self.replicas, self.registrations)
        self.incoming = Incoming(self.objects, self.directory, self.registrations)
        self.mover = Mover(self.objects, self.locks, self.directory, self, self.local_object, self.replicas)
        self.versioning = Versioning(self.objects, self.locks, self.directory, self, self.local_object,
                                     self.incoming, self.requests.new_chain, consolidation_timeout, self.replicas,
                                     self.registrations)
        self.event_loop = EventLoop()
        self.request = self.requests.request

    def _drop_refused(self, object_ids: list[UUID]) -> None:
        """New objects whose registration the directory refused (their ids are another
        backend's objects): no longer ours (registrations.py)."""
        mine = [object_id for object_id in object_ids if object_id in self.objects.owned]
        self.objects.give_up([self.objects.instance(i, self.objects.owned[i]) for i in mine], None)

    @property
    def owned(self) -> dict[UUID, str]:
        return self.objects.owned

    @property
    def loaded(self):
        return self.objects.loaded

    # ------------------------------------------------------------------ identity
    def instance(self, object_id: UUID, class_path_: str, backend_id: UUID | None) -> Any:
        if object_id in self.objects.owned:
            return self.objects.instance(object_id, self.objects.owned[object_id])
        return super().instance(object_id, class_path_, backend_id)

    def became_remote(self, objects: list[Any], backend_id: UUID | None) -> None:
        """New objects stored on another backend (or owned ones that left): proxies now."""
        self.objects.give_up(objects, backend_id, delete_rows=any(o.__dict__[lc.ID] in self.owned for o in objects))

    def local_object(self, object_id: UUID) -> Any:
        """The owned object with this id, or the typed error that tells the caller where it is."""
        class_path_ = self.objects.owned.get(object_id)
        if class_path_ is not None:
            return self.objects.instance(object_id, class_path_)
        self.versioning.check_not_retired(object_id)
        self.mover.resolve_in_doubt(object_id)  # ObjectInDoubtError while the directory is down
        if object_id in self.objects.owned:  # the move it was in did not commit
            return self.objects.instance(object_id, self.objects.owned[object_id])
        owner = self.directory.owner_of(object_id)
        if self.mover.activate_if_committed(object_id, owner) or object_id in self.objects.owned:
            return self.objects.instance(object_id, self.objects.owned[object_id])  # arrived while we asked
        if owner == self.local_backend_id:
            raise ObjectNotRegisteredError(
                f"object {object_id} is assigned to backend {self.name} but not stored there", object_id=object_id
            )
        raise ObjectWithWrongBackendIdError(
            f"object {object_id} is owned by backend {owner}, not {self.name}", object_id=object_id, backend_id=owner
        )

    # ------------------------------------------------ objects created in active methods
    def created(self, obj: Any) -> None:
        """lifecycle.on_create: an object created while a request is served here (inside an
        active method, its __init__, a copy it takes) is persistent here at once, as in
        dataClay: is_persistent is True and it is stored with the request. Not inside a class's
        own __setstate__ (a backend loading a state builds plain helpers there)."""
        scope = SCOPE.get()
        if scope is not None and lc.IN_STATE_HOOK.get() is None and not DECODING.get():
            self.requests.created(obj, scope)

    async def settle_created(self, t: Any, objects: Iterable[Any] = ()) -> None:
        """Store what this request created so far, and what other requests created among
        `objects` (references about to leave: a worker thread of a method has no request of
        its own). For an async transport (an `async def` method) off the event loop: it waits
        for the metadata service and SQLite."""
        scopes = {id(scope): scope for scope in (obj.__dict__.get(lc.CREATED_BY) for obj in objects) if scope is not None}
        own = SCOPE.get()
        if own is not None and own.new:
            scopes[id(own)] = own
        for scope in scopes.values():
            if t is not self.blocking and in_event_loop():
                await asyncio.to_thread(self.requests.store_created, scope)
            else:
                self.requests.store_created(scope)

    def call_local(self, obj: Any, func: Callable, args: tuple, kwargs: dict) -> Any:
        if lc.IN_STATE_HOOK.get() is not None:
            lc.refuse_in_state_hook(f"{obj!r}")
        scope = current_scope()
        if not self.locks.hold(obj, scope):
            return run_blocking(ops.call_method(self, self.blocking, obj, func.__name__, args, kwargs))
        try:
            return func(obj, *args, **kwargs)
        except BaseException:
            if func.__name__ == "__init__":  # a creation that failed leaves no half-built object
                self.requests.discard_created(scope, obj)
            raise
        finally:
            self.locks.release(obj)

    # ------------------------------------------------ object model hooks (local objects)

    async def call_local_async(self, obj: Any, func: Callable, args: tuple, kwargs: dict) -> Any:
        if lc.IN_STATE_HOOK.get() is not None:
            lc.refuse_in_state_hook(f"{obj!r}")
        scope = current_scope()
        lock = self.locks.lock_of(obj)
        if not lock.acquire(scope.chain, timeout=0):  # never block the event loop: wait in a thread
            await asyncio.to_thread(self.locks.acquire, obj, scope.chain)
        try:
            if not self.locks.hold(obj, scope):  # re-enters the lock we hold: does not block
                return await ops.call_method(self, self.async_transport(), obj, func.__name__, args, kwargs)
            try:
                return await func(obj, *args, **kwargs)
            finally:
                lock.release()
        finally:
            lock.release()

    def write_local(self, obj: Any, name: str, value: Any) -> None:
        scope = current_scope()
        if not self.locks.hold(obj, scope):
            return run_blocking(ops.set_attribute(self, self.blocking, obj, name, value))
        try:
            obj.__dict__[name] = value
            scope.dirty.add(obj.__dict__[lc.ID])
        finally:
            self.locks.release(obj)

    def touch_local(self, obj: Any) -> None:
        """A mutable property value of obj was read while serving a request: the request may
        change it in place, so obj is stored (if it changed) with the request."""
        scope = SCOPE.get()
        if scope is None or obj.__dict__[lc.ID] in scope.touched:
            return
        if self.locks.hold(obj, scope):
            self.locks.release(obj)

    def load_local(self, obj: Any) -> None:
        self.objects.load(obj)

    def store_local(self, objects: list[Any], states: list[bytes], alias: str | None) -> None:
        self.incoming.store_local(objects, states, alias)

    def move_here(
        self, obj: Any, target: UUID, recursive: bool, remotes: bool, on_progress: Callable[[int, int], None] | None
    ) -> pb.MoveProgress | None:
        """Within a blocking call served here, move objects owned here in the call's own scope
        (a Move request to ourselves would wait for the call's uncommitted changes to be
        stored, which wait for the move). Async methods ask the owner, never blocking the loop."""
        object_id = obj.__dict__[lc.ID]
        if SCOPE.get() is None or object_id not in self.objects.owned or in_event_loop():
            return None

        def progress(update: pb.MoveProgress) -> None:
            if on_progress is not None and update.objects_total:
                on_progress(update.objects_sent, update.objects_total)

        return self.mover.move([object_id], target, recursive, False, progress, remotes)

    # ------------------------------------------------------------------ serving
    def run_coroutine(self, coro: Coroutine) -> Any:
        """Run an `async def` active method on this backend's event loop, in the caller's
        request scope, and wait for it."""
        return self.event_loop.run(coro)

    def encode_reply(self, value: Any) -> bytes:
        return self.requests.encode_reply(value)

    def snapshot(self, obj: Any) -> bytes:
        return self.requests.snapshot(obj)

    def recover(self, restored: bool = False) -> tuple[int, int]:
        """recovery.recover, or recovery.reconcile when the directory was restored from a
        backup; then the replicas this backend holds and masters."""
        dropped = (reconcile if restored else recover)(self.objects, self.directory, self.mover, self.versioning)
        self.replicas.recover()
        self.registrations.start()
        return dropped
