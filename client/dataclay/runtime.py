"""The process's runtime: what a client (or a backend acting as a client) knows and decides.

It holds the one instance per object id of this process (so every reference the user holds is
the same proxy, and a fix to its location reaches all of them), the cache of backend
addresses, and the transports. A backend extends it (dataclay_backend.backend_runtime) to run
objects it owns in place. An object's states and transitions are dataclay.lifecycle's.

It knows nothing of operations or of the object model (dataclay.operations and
dataclay.dataclay_object import it, not the other way round), so the client's imports have no
cycle.
"""
from __future__ import annotations

import asyncio
import functools
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Iterable
from uuid import UUID

from dataclay import lifecycle
from dataclay.exceptions import ClassNotFoundError, DataClayException
from dataclay.lifecycle import ID, LOCAL
from dataclay.serialization import Ref, import_class, loads
from dataclay.transport import AsyncTransport, BackendInfo, BlockingTransport, run_blocking

if TYPE_CHECKING:
    from dataclay.security import Credentials
    from dataclay.dataclay_object import DataClayObject

_current: "Runtime | None" = None


class NotStartedError(DataClayException):
    """No client is started in this process."""


def current_runtime() -> "Runtime":
    if _current is None:
        raise NotStartedError("no dataClay client is started in this process: call Client(...).start() first")
    return _current


def set_runtime(runtime: "Runtime | None") -> None:
    global _current
    _current = runtime
    lifecycle.on_create = runtime.created if runtime is not None else None


def twins(op: Callable[..., Coroutine]) -> tuple[Callable, Callable]:
    """The blocking and the async form of one operation `op(runtime, transport, *args)`."""

    @functools.wraps(op)
    def blocking(*args: Any, **kwargs: Any) -> Any:
        rt = current_runtime()
        return run_blocking(op(rt, rt.blocking, *args, **kwargs))

    @functools.wraps(op)
    async def asynchronous(*args: Any, **kwargs: Any) -> Any:
        rt = current_runtime()
        return await op(rt, rt.async_transport(), *args, **kwargs)

    asynchronous.__name__ = f"a_{op.__name__}"
    return blocking, asynchronous


class Runtime:
    """A client's runtime. Objects it holds that are persistent are always proxies."""

    local_backend_id: UUID | None = None
    # What a DataClayObject() created in this process becomes (lifecycle.on_create): in a
    # client, nothing (a plain object until make_persistent).
    created: "Callable[[DataClayObject], None] | None" = None
    stubs_for_missing_classes = True  # a reference to a class this client lacks is a stub (a backend: an error)

    def __init__(self, metadata_address: str, credentials: "Credentials | None" = None) -> None:
        self.metadata_address = metadata_address
        self.credentials = credentials  # this process's identity on every channel (None: plain text)
        self.blocking = BlockingTransport(metadata_address, credentials)
        self._async: dict[asyncio.AbstractEventLoop, AsyncTransport] = {}
        self.heap: "weakref.WeakValueDictionary[UUID, DataClayObject]" = weakref.WeakValueDictionary()
        self.backends: dict[UUID, BackendInfo] = {}
        self._heap_lock = threading.Lock()

    def async_transport(self) -> AsyncTransport:
        """The async transport of the running loop (grpc.aio channels belong to one loop)."""
        loop = asyncio.get_running_loop()
        transport = self._async.get(loop)
        if transport is None:
            for closed in [other for other in self._async if other.is_closed()]:
                del self._async[closed]  # e.g. earlier asyncio.run() calls: their channels are gone
            transport = self._async[loop] = AsyncTransport(self.metadata_address, self.credentials)
        return transport

    def close(self) -> None:
        self.blocking.close()
        self._async.clear()

    # ---------------------------------------- local persistent objects (backends only)
    def call_local(self, obj: "DataClayObject", func: Callable, args: tuple, kwargs: dict) -> Any:
        raise DataClayException(f"{obj!r} is local and persistent, which only a backend can hold")

    async def call_local_async(self, obj: "DataClayObject", func: Callable, args: tuple, kwargs: dict) -> Any:
        raise DataClayException(f"{obj!r} is local and persistent, which only a backend can hold")

    def write_local(self, obj: "DataClayObject", name: str, value: Any) -> None:
        raise DataClayException(f"{obj!r} is local and persistent, which only a backend can hold")

    def load_local(self, obj: "DataClayObject") -> None:
        raise DataClayException(f"{obj!r} is local and persistent, which only a backend can hold")

    def touch_local(self, obj: "DataClayObject") -> None:
        raise DataClayException(f"{obj!r} is local and persistent, which only a backend can hold")

    def store_local(self, objects: list["DataClayObject"], states: list[bytes], alias: str | None) -> None:
        raise DataClayException("only a backend stores objects")

    async def settle_created(self, t: Any, objects: Iterable["DataClayObject"] = ()) -> None:
        """Before a reference leaves this process or the directory is asked about an object:
        store what this process made persistent and has not stored yet (a backend serving an
        active method that created objects; `objects`: references about to leave). Nothing in
        a client."""

    # ------------------------------------------------------------ references
    def instance(self, object_id: UUID, class_path: str, backend_id: UUID | None) -> "DataClayObject":
        """The one instance of this object in this process (a proxy, on a client)."""
        obj = self.heap.get(object_id)
        if obj is not None:
            return obj
        try:
            cls = import_class(class_path)
        except ClassNotFoundError:
            if not self.stubs_for_missing_classes:
                raise
            from dataclay.stub import stub_class  # a client without the model: work through a stub

            cls = stub_class(class_path)
        with self._heap_lock:
            obj = self.heap.get(object_id)
            if obj is None:
                obj = object.__new__(cls)  # no __init__, no fresh id: it is filled in below
                lifecycle.proxy(obj, object_id, backend_id)
                self.heap[object_id] = obj
        return obj

    def forward(self, obj: "DataClayObject", original_id: UUID, backend_id: UUID | None) -> None:
        """A consolidated version (a proxy here) acts as its original from now on; references
        to the version's id in this process resolve to it, and so do the original's if this
        process held no instance of it."""
        with self._heap_lock:
            lifecycle.forwarded(obj, original_id, backend_id)
            if self.heap.get(original_id) is None:
                self.heap[original_id] = obj

    def resolve(self, ref: Ref) -> "DataClayObject":
        object_id, class_path, backend = ref
        return self.instance(UUID(bytes=object_id), class_path, UUID(bytes=backend) if backend else None)

    def decode(self, data: bytes) -> Any:
        return loads(data, self.resolve)

    def became_remote(self, objects: list["DataClayObject"], backend_id: UUID | None) -> None:
        """These objects now live on `backend_id` (None: nowhere, a retired version): from now
        on they are proxies here."""
        with self._heap_lock:
            for obj in objects:
                lifecycle.to_proxy(obj, backend_id)
                object_id = obj.__dict__[ID]
                if self.heap.get(object_id) is not obj:
                    self.heap[object_id] = obj

    def move_here(
        self, obj: "DataClayObject", target: UUID, recursive: bool, remotes: bool,
        on_progress: Callable[[int, int], None] | None,
    ) -> Any:
        """A backend moves an object it owns itself (returning the final MoveProgress) when a
        call it is serving asks, so that the call's own changes, not yet committed, go along;
        None: ask the owner. A client always asks the owner."""
        return None

    def relocated(self, object_ids: list[UUID], backend_id: UUID) -> None:
        """These objects now live on backend_id: fix the proxies this process holds."""
        for object_id in object_ids:
            obj = self.heap.get(object_id)
            if obj is not None and not obj.__dict__[LOCAL]:
                lifecycle.relocated(obj, backend_id)
