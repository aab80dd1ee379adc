"""DataClayObject, persistent properties and @activemethod.

One class serves as both the real object and its proxy. Which one an instance is now is its
lifecycle state, kept in its __dict__: the states, the diagram and the only functions that
change them are in dataclay.lifecycle. This module only routes on the state: a NEW object is
plain Python; a local persistent one (LOADED/UNLOADED, only on its owning backend) is handed to
the process's runtime (dataclay.runtime), which runs it in place; a PROXY sends property reads,
writes and active methods to the owner (dataclay.operations).
"""
from __future__ import annotations

import functools
import inspect
import json
import uuid
from typing import Any, Callable, ClassVar, TypeVar

from dataclay import lifecycle
from dataclay import operations as ops
from dataclay.lifecycle import ID, LOADED, LOCAL, REGISTERED
from dataclay.runtime import current_runtime, twins
from dataclay.serialization import IMMUTABLE_TYPES
from dataclay.transport import run_blocking

T = TypeVar("T", bound="DataClayObject")
_MISSING = object()
_get_by_id, _a_get_by_id = twins(ops.get_by_id)
_get_by_alias, _a_get_by_alias = twins(ops.get_by_alias)
_delete_alias, _a_delete_alias = twins(ops.delete_alias)
_dc_clone_by_alias, _a_dc_clone_by_alias = twins(ops.dc_clone_by_alias)
_dc_update_by_alias, _a_dc_update_by_alias = twins(ops.dc_update_by_alias)


class PersistentProperty:
    """Data descriptor for an annotated attribute: local value or a call to the owner."""

    __slots__ = ("name", "default")

    def __init__(self, name: str, default: Any = _MISSING) -> None:
        self.name = name
        self.default = default

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        state = obj.__dict__
        if state[LOCAL]:
            try:
                value = state[self.name]
            except KeyError:
                return self._missing(obj)
            if (state[REGISTERED] and type(value) not in IMMUTABLE_TYPES and not hasattr(value, ID)
                    and lifecycle.IN_STATE_HOOK.get() is not obj):
                current_runtime().touch_local(obj)  # a list, dict, ... handed out may change in place
            return value
        rt = current_runtime()
        return run_blocking(ops.get_attribute(rt, rt.blocking, obj, self.name))

    def __set__(self, obj: Any, value: Any) -> None:
        state = obj.__dict__
        if not state[LOCAL]:
            rt = current_runtime()
            run_blocking(ops.set_attribute(rt, rt.blocking, obj, self.name, value))
        elif state[REGISTERED] and lifecycle.IN_STATE_HOOK.get() is not obj:
            current_runtime().write_local(obj, self.name, value)
        else:  # a plain object, or its own __setstate__ restoring a stored state
            state[self.name] = value

    def __delete__(self, obj: Any) -> None:
        raise AttributeError(f"persistent property {self.name!r} cannot be deleted; assign None")

    def _missing(self, obj: Any) -> Any:
        state = obj.__dict__
        if not state[LOADED]:
            current_runtime().load_local(obj)
            if self.name in state:
                return self.__get__(obj)  # as a loaded read: a mutable value handed out touches obj
        if self.default is not _MISSING:
            return self.default
        raise AttributeError(f"{type(obj).__name__!r} object has no attribute {self.name!r} (never set)")


def class_info(cls: type) -> tuple[list[str], list[str]]:
    """A model class's persistent properties and active methods (by name), as stubs see them."""
    methods = sorted(name for name in dir(cls) if getattr(getattr(cls, name, None), "_dc_activemethod", None))
    return list(cls._dc_properties), methods


def _is_classvar(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


def activemethod(func: Callable) -> Callable:
    """Run the method where the object lives: in place for local objects, on the owning
    backend for proxies. Works on `def` and `async def` methods."""
    name = func.__name__
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(self, *args, **kwargs):
            state = self.__dict__
            if not state[LOCAL]:
                rt = current_runtime()
                return await ops.call_method(rt, rt.async_transport(), self, name, args, kwargs)
            if not state[REGISTERED]:
                return await func(self, *args, **kwargs)
            return await current_runtime().call_local_async(self, func, args, kwargs)

        wrapper: Callable = async_wrapper
    else:

        @functools.wraps(func)
        def sync_wrapper(self, *args, **kwargs):
            state = self.__dict__
            if not state[LOCAL]:
                rt = current_runtime()
                return run_blocking(ops.call_method(rt, rt.blocking, self, name, args, kwargs))
            if not state[REGISTERED]:
                return func(self, *args, **kwargs)
            return current_runtime().call_local(self, func, args, kwargs)

        wrapper = sync_wrapper
    wrapper._dc_activemethod = func  # type: ignore[attr-defined]
    return wrapper


class DataClayObject:
    """Base class of persistent active objects. Annotated attributes are persistent
    properties; other attributes stay in the local Python object."""

    _dc_is_dataclay_object: ClassVar[bool] = True
    _dc_properties: ClassVar[tuple[str, ...]] = ()
    # The class's own __getstate__ / __setstate__ (lifecycle.state_hooks); None: it has none.
    _dc_getstate: ClassVar[Callable[[Any], Any] | None] = None
    _dc_restore: ClassVar[Callable[[Any, Any], None] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = [
            name
            for name, annotation in inspect.get_annotations(cls).items()
            if not name.startswith("_dc_") and not _is_classvar(annotation)
        ]
        for name in own:
            setattr(cls, name, PersistentProperty(name, cls.__dict__.get(name, _MISSING)))
        inherited = [name for name in cls._dc_properties if name not in own]
        cls._dc_properties = tuple(inherited + own)
        cls._dc_getstate, cls._dc_restore = lifecycle.state_hooks(
            cls, DataClayObject.__getstate__, DataClayObject.__setstate__)

    def __new__(cls, *args: Any, **kwargs: Any):
        obj = super().__new__(cls)
        lifecycle.new(obj)
        if lifecycle.on_create is not None:  # a backend: inside an active method it is persistent at once
            lifecycle.on_create(obj)
        return obj

    def __repr__(self) -> str:
        state = self.__dict__
        if state[LOCAL] and not state[REGISTERED]:
            return f"<{type(self).__name__} (not persistent) {state[ID]}>"
        return f"<{type(self).__name__} {state[ID]} on backend {state[lifecycle.BACKEND]}>"

    # Persistent objects pickle by reference through dataclay.serialization; a plain pickle
    # (dc_clone, by-value copies) carries the properties and a fresh identity.
    def __getstate__(self) -> dict[str, Any]:
        return lifecycle.properties(lifecycle.persisted_state(self))

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = lifecycle.without_bookkeeping(state)  # a by-value copy never brings an identity of its own
        if self.__dict__.get(REGISTERED):  # made persistent by __new__ (a copy taken inside an active method)
            self.__dict__.update(state)
        else:
            lifecycle.new(self, state)

    # ------------------------------------------------------------ dataClay's public API
    @property
    def _dc_meta(self) -> "DataClayObject":  # dataClay 4 code reads obj._dc_meta.id
        return self

    @property
    def id(self) -> uuid.UUID:
        return self.__dict__[ID]

    @property
    def is_persistent(self) -> bool:
        """Whether the object is registered (dataClay 4's name): True on a proxy, on the owning
        backend and inside its active methods; False for a plain local object."""
        return self.__dict__[REGISTERED]

    @property
    def backends(self) -> set[uuid.UUID]:
        """The backends holding the object (dataClay 4's name): its owner and its replicas as
        this process last learnt them (sync() asks the directory again); empty while it is not
        persistent (or a retired version)."""
        owner = self.__dict__[lifecycle.BACKEND]
        if not self.__dict__[REGISTERED] or owner is None:
            return set()
        return {owner, *self.__dict__.get(lifecycle.REPLICAS, ())}

    @property
    def replica_backend_ids(self) -> set[uuid.UUID]:  # dataClay 4 code reads obj._dc_meta.replica_backend_ids
        """The backends holding a replica (not the master), as this process last learnt them."""
        return set(self.__dict__.get(lifecycle.REPLICAS, ()))

    @property
    def master_backend_id(self) -> uuid.UUID | None:  # dataClay 4 code reads obj._dc_meta.master_backend_id
        return self.__dict__[lifecycle.BACKEND]

    make_persistent, a_make_persistent = twins(ops.make_persistent)
    add_alias, a_add_alias = twins(ops.add_alias)
    get_aliases, a_get_aliases = twins(ops.get_aliases)
    sync, a_sync = twins(ops.sync)
    dc_clone, a_dc_clone = twins(ops.dc_clone)
    dc_update, a_dc_update = twins(ops.dc_update)
    dc_update_properties, a_dc_update_properties = twins(ops.dc_update_properties)
    get_properties, a_get_properties = twins(ops.get_properties)
    dc_put, a_dc_put = twins(ops.dc_put)
    move, a_move = twins(ops.move)
    new_version, a_new_version = twins(ops.new_version)
    consolidate_version, a_consolidate_version = twins(ops.consolidate_version)
    discard_version, a_discard_version = twins(ops.discard_version)
    new_replica, a_new_replica = twins(ops.new_replica)

    @classmethod
    def get_by_id(cls: type[T], object_id: uuid.UUID | str) -> T:
        return _get_by_id(cls, object_id)

    @classmethod
    async def a_get_by_id(cls: type[T], object_id: uuid.UUID | str) -> T:
        return await _a_get_by_id(cls, object_id)

    @classmethod
    def get_by_alias(cls: type[T], alias: str) -> T:
        return _get_by_alias(cls, alias)

    @classmethod
    async def a_get_by_alias(cls: type[T], alias: str) -> T:
        return await _a_get_by_alias(cls, alias)

    def getID(self) -> str | None:
        """dataClay's getID (for COMPSs): the object's metadata as JSON (its id, class and
        master backend), or None if it is not persistent."""
        if not self.__dict__[REGISTERED]:
            return None
        if lifecycle.CREATED_BY in self.__dict__:  # created by an active method here: stored before it is named
            rt = current_runtime()
            run_blocking(rt.settle_created(rt.blocking, [self]))
        owner = self.__dict__[lifecycle.BACKEND]
        return json.dumps({"id": str(self.__dict__[ID]), "class_name": f"{type(self).__module__}.{type(self).__qualname__}",
                           "master_backend_id": str(owner) if owner is not None else None})

    @classmethod
    def dc_clone_by_alias(cls: type[T], alias: str, recursive: bool = False) -> T:
        return _dc_clone_by_alias(cls, alias, recursive)

    @classmethod
    async def a_dc_clone_by_alias(cls: type[T], alias: str, recursive: bool = False) -> T:
        return await _a_dc_clone_by_alias(cls, alias, recursive)

    @classmethod
    def dc_update_by_alias(cls, alias: str, from_object: "DataClayObject") -> None:
        return _dc_update_by_alias(cls, alias, from_object)

    @classmethod
    async def a_dc_update_by_alias(cls, alias: str, from_object: "DataClayObject") -> None:
        return await _a_dc_update_by_alias(cls, alias, from_object)

    @classmethod
    def delete_alias(cls, alias: str) -> None:
        return _delete_alias(alias)

    @classmethod
    async def a_delete_alias(cls, alias: str) -> None:
        return await _a_delete_alias(alias)
