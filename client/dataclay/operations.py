"""Every client-side operation, written once, as a coroutine.

Each takes the process runtime `rt` and a transport `t` (blocking or async; see
dataclay.transport). The public API gets both forms from one definition with
`dataclay.runtime.twins`. Calls to an object's owner follow "moved" redirects a bounded number
of times, fixing the location of the one instance this process has of the object.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable
from uuid import UUID

from dataclay import lifecycle
from dataclay.exceptions import (
    BackendNotFoundError,
    DataClayException,
    BackendUnavailableError,
    InvalidAliasError,
    InvalidRequestError,
    NoBackendAvailableError,
    ObjectMovingError,
    ObjectNotRegisteredError,
    ObjectWithWrongBackendIdError,
    ReplicaNotFoundError,
    ResourceExhaustedError,
    VersionConsolidatedError,
)
from dataclay.lifecycle import BACKEND, CREATED_BY, ID, LOADED, LOCAL, REGISTERED
from dataclay.protocol import IDEMPOTENT, codec
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.serialization import IMMUTABLE_TYPES, Ref, class_path, dumps, import_class, loads, make_ref, new_ref
from dataclay.transport import BackendInfo

if TYPE_CHECKING:
    from dataclay.dataclay_object import DataClayObject
    from dataclay.runtime import Runtime

MAX_REDIRECTS = 8


# ------------------------------------------------------------------ backends and locations


async def get_backends(rt: "Runtime", t: Any, refresh: bool = True) -> dict[UUID, BackendInfo]:
    """Registered backends, id -> info, in registration order."""
    if refresh or not rt.backends:
        reply = await t.metadata("ListBackends", pb.Empty())
        rt.backends = {info.id: info for info in map(BackendInfo.from_pb, reply.backends)}
    return rt.backends


async def backend_info(rt: "Runtime", t: Any, backend_id: UUID) -> BackendInfo:
    info = rt.backends.get(backend_id)
    if info is None:
        info = (await get_backends(rt, t)).get(backend_id)
    if info is None:
        known = ", ".join(f"{b.name}={b.id}" for b in rt.backends.values()) or "none"
        raise BackendNotFoundError(f"no backend {backend_id} is registered (known: {known})", backend_id=backend_id)
    return info


def _as_uuid(value: UUID | str, what: str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise InvalidRequestError(f"{what} {value!r} is not a UUID") from None


def _check_alias(alias: str | None) -> None:
    """An alias given as "" is refused, as in dataClay (rather than taken as no alias)."""
    if alias is not None and not alias:
        raise InvalidAliasError("Alias cannot be None or empty string")


def _require_registered(obj: "DataClayObject") -> None:
    if not obj.__dict__[REGISTERED]:
        raise ObjectNotRegisteredError(
            f"Object {obj.__dict__[ID]} is not registered! Call make_persistent() on this "
            f"{type(obj).__name__} first", object_id=obj.__dict__[ID]
        )


async def ask_directory(t: Any, method: str, request: Any) -> Any:
    """A directory question about an object id (LocateObject, AddAlias, GetAliases). A new
    object is registered just after its store is acknowledged (dataclay_backend/registrations.py):
    if the directory does not know the id, every backend is asked to register what it still
    has on its way, and the question is asked once more. If a backend did not answer, the
    object may be there: BackendUnavailableError names it (not "does not exist")."""
    try:
        return await t.metadata(method, request)
    except ObjectNotRegisteredError:
        pass
    reply = await t.metadata("ListBackends", pb.Empty())
    silent: list[str] = []  # did not answer: may hold it
    refused: list[str] = []  # answered, but the directory refuses what it registers
    for info in (BackendInfo.from_pb(info) for info in reply.backends):  # one by one: a blocking transport never suspends
        try:
            await t.backend(info, "FlushRegistrations", pb.FlushRegistrationsRequest())
        except (BackendUnavailableError, ResourceExhaustedError) as exc:
            silent.append(f"{info.describe()} ({type(exc).__name__})")
        except DataClayException as exc:
            refused.append(f"{info.describe()} ({type(exc).__name__}: {exc})")
    try:
        return await t.metadata(method, request)
    except ObjectNotRegisteredError as missing:
        if silent:
            raise BackendUnavailableError(
                f"{missing}, and {', '.join(silent)} did not answer: an object stored there is registered just after "
                "its store, so it may be there; retry once it answers") from None
        if refused:
            raise ObjectNotRegisteredError(
                f"{missing} ({', '.join(refused)}: an object stored there is found once that backend restarts)",
                **missing.fields) from None
        raise


async def locate(rt: "Runtime", t: Any, obj: "DataClayObject") -> UUID:
    """Ask the directory who owns obj, and remember it. A consolidated version is its
    original from then on (dataClay's version proxy takes the original's identity)."""
    for _ in range(MAX_REDIRECTS):
        try:
            entry = await ask_directory(t, "LocateObject", pb.ObjectRequest(object_id=obj.__dict__[ID].bytes))
        except VersionConsolidatedError as consolidated:
            _follow_consolidation(rt, obj, consolidated)
            continue
        owner = UUID(bytes=entry.backend_id)
        lifecycle.relocated(obj, owner)
        _replicas_known(obj, entry)
        return owner
    raise ObjectMovingError(f"{obj!r} kept being forwarded during {MAX_REDIRECTS} attempts", object_id=obj.__dict__[ID])


def _replicas_known(obj: "DataClayObject", entry: pb.ObjectEntry) -> None:
    if not obj.__dict__[LOCAL]:
        lifecycle.replicas_known(obj, frozenset(UUID(bytes=raw) for raw in entry.replica_backend_ids))


def _entry_instance(rt: "Runtime", entry: pb.ObjectEntry) -> "DataClayObject":
    """The instance of a directory entry, knowing its owner and replicas."""
    obj = rt.instance(UUID(bytes=entry.object_id), entry.class_path, UUID(bytes=entry.backend_id))
    _replicas_known(obj, entry)
    return obj


def _follow_consolidation(rt: "Runtime", obj: "DataClayObject", consolidated: VersionConsolidatedError) -> None:
    """obj (a proxy) is a version that was consolidated: it acts as its original now. An
    answer about another object (raised by a method obj ran) is not ours to follow."""
    if consolidated.fields.get("object_id") != str(obj.__dict__[ID]):
        raise consolidated
    rt.forward(obj, consolidated.original_id, None)


async def at_owner(
    rt: "Runtime", t: Any, obj: "DataClayObject", method: str,
    request: Any | Callable[[BackendInfo], Awaitable[Any]],
) -> Any:
    """Call `method` on the backend that owns obj, following redirects (bounded). `request` is
    the message, or a coroutine function that makes it for the backend it goes to; its
    `object_id` names obj, and follows obj to its original if obj is a consolidated version."""

    async def call(info: BackendInfo) -> Any:
        message = await request(info) if callable(request) else request
        object_id = obj.__dict__[ID].bytes
        if message.object_id != object_id:  # obj was forwarded meanwhile (_follow_consolidation)
            message.object_id = object_id
        return await t.backend(info, method, message)

    return await with_owner(rt, t, obj, call, idempotent=method in IDEMPOTENT)


async def with_owner(
    rt: "Runtime", t: Any, obj: "DataClayObject", perform: Callable[[BackendInfo], Awaitable[Any]],
    idempotent: bool = False,
) -> Any:
    """Run `perform(owner's info)`; on a "not here" answer, fix the location and run it again
    (bounded). After BackendUnavailableError it runs again only if the directory now names
    another owner or address, and only if that cannot apply it twice: the call is idempotent
    (dataclay.protocol.IDEMPOTENT) or was certainly not sent (its channel never connected).
    Otherwise the error is raised: a CallOutcomeUnknownError says the outcome is unknown."""
    _require_registered(obj)
    if lifecycle.IN_STATE_HOOK.get() is not None:
        lifecycle.refuse_in_state_hook(f"{obj!r}")
    await rt.settle_created(t, [obj])  # the owner may be this backend, serving a call that created obj
    state = obj.__dict__
    for _ in range(MAX_REDIRECTS):
        known = state[BACKEND]
        owner = known or await locate(rt, t, obj)
        try:
            info = await backend_info(rt, t, owner)
        except BackendNotFoundError:
            if known is None:
                raise
            lifecycle.relocated(obj, None)  # the backend we knew was retired: ask the directory
            continue
        try:
            return await perform(info)
        except ObjectWithWrongBackendIdError as moved:
            new_owner = moved.fields.get("backend_id")
            lifecycle.relocated(obj, UUID(new_owner) if new_owner else None)
        except VersionConsolidatedError as consolidated:
            _follow_consolidation(rt, obj, consolidated)
        except BackendUnavailableError as unavailable:
            if not (idempotent or unavailable.not_sent):
                raise  # it may have been applied: never sent again on our own
            # A restarted backend may listen elsewhere, or the object may have moved off it:
            # retry only if the directory now says something different.
            await get_backends(rt, t)
            try:
                where = await locate(rt, t, obj)
            except (ObjectNotRegisteredError, BackendUnavailableError):
                raise unavailable from None  # its registration may wait on that very backend
            if (where, rt.backends.get(owner)) == (owner, info):
                raise
    raise ObjectMovingError(
        f"{obj!r} kept changing owner during {MAX_REDIRECTS} attempts; try again", object_id=state[ID]
    )


# ------------------------------------------------------------------ encoding


def serialize_graph(
    roots: list["DataClayObject"], backend_id: UUID, leaving: list["DataClayObject"] | None = None,
) -> tuple[list["DataClayObject"], list[pb.ObjectRecord]]:
    """The not-yet-persistent objects reachable from roots, each with its pickled state; the
    walk stops at persistent objects, which are written as references (those an active method
    created and has not stored yet are added to `leaving`)."""
    hint = backend_id.bytes
    pending = {root.__dict__[ID]: root for root in roots}
    queue = list(pending.values())
    objects: list[DataClayObject] = []
    records: list[pb.ObjectRecord] = []

    def on_object(obj: "DataClayObject") -> Ref:
        state = obj.__dict__
        if state[REGISTERED]:
            if leaving is not None and CREATED_BY in state:
                leaving.append(obj)
            return make_ref(obj)
        object_id = state[ID]
        if object_id not in pending:
            pending[object_id] = obj
            queue.append(obj)
        return new_ref((object_id.bytes, class_path(type(obj)), hint))

    while queue:
        obj = queue.pop()
        cls = type(obj)
        if cls.__module__ == "__main__":
            raise InvalidRequestError(
                f"class {cls.__qualname__} is defined in __main__; backends import model classes by "
                "module path: move it to a module on the model path",
                class_path=class_path(cls),
            )
        objects.append(obj)
        records.append(
            pb.ObjectRecord(object_id=obj.__dict__[ID].bytes, class_path=class_path(cls),
                            state=dumps(lifecycle.persisted_state(obj), on_object))
        )
    return objects, records


async def store_graph(
    rt: "Runtime", t: Any, roots: list["DataClayObject"], backend_id: UUID, alias: str | None = None
) -> None:
    """Persist roots and every new object they reach on one backend, in one request."""
    leaving: list[DataClayObject] = []
    objects, records = serialize_graph(roots, backend_id, leaving)
    if backend_id != rt.local_backend_id:
        await rt.settle_created(t, leaving)  # their states refer to objects an active method created here
    if backend_id == rt.local_backend_id:
        rt.store_local(objects, [record.state for record in records], alias)
        return
    info = await backend_info(rt, t, backend_id)
    await t.store_objects(info, records, alias or "")
    rt.became_remote(objects, backend_id)


async def encode_for(rt: "Runtime", t: Any, value: Any, backend_id: UUID) -> bytes:
    """Pickle a value for a call to backend_id; new objects in it are first made persistent
    there, so they travel as references and stay the same objects."""
    pending: dict[UUID, DataClayObject] = {}
    leaving: list[DataClayObject] = []

    def on_object(obj: "DataClayObject") -> Ref:
        state = obj.__dict__
        if state[REGISTERED]:
            if CREATED_BY in state:  # an active method created it: stored before its reference leaves
                leaving.append(obj)
            return make_ref(obj)
        object_id = state[ID]
        pending[object_id] = obj
        return new_ref((object_id.bytes, class_path(type(obj)), backend_id.bytes))

    data = dumps(value, on_object)
    await rt.settle_created(t, leaving)  # also what this request created: the callee may find it
    if pending:
        await store_graph(rt, t, list(pending.values()), backend_id)
    return data


# ------------------------------------------------------------------ object operations


async def _any_backend(rt: "Runtime", t: Any) -> UUID:
    """A backend that takes new objects, at random (as dataClay picks one)."""
    candidates = [b.id for b in (await get_backends(rt, t, refresh=False)).values() if not b.draining]
    if not candidates:
        candidates = [b.id for b in (await get_backends(rt, t)).values() if not b.draining]
    if not candidates:
        raise NoBackendAvailableError("no backend is available to store new objects (none registered, or all draining)")
    return random.choice(candidates)


async def class_info(rt: "Runtime", t: Any, path: str) -> tuple[list[str], list[str]]:
    """A model class's persistent properties and active methods, asked of a backend (which has
    the model): for stubs on a client that has not."""
    info = await backend_info(rt, t, await _any_backend(rt, t))
    reply = await t.backend(info, "GetClassInfo", pb.ClassInfoRequest(class_path=path))
    return list(reply.properties), list(reply.active_methods)


async def create_object(rt: "Runtime", t: Any, path: str, args: tuple, kwargs: dict) -> "DataClayObject":
    """A new object of a model class this process may not have, made on a backend by its
    __init__ in one request (nothing is stored if __init__ fails); its proxy."""
    backend_id = await _any_backend(rt, t)
    info = await backend_info(rt, t, backend_id)
    payload = await encode_for(rt, t, (args, kwargs), backend_id) if args or kwargs else b""  # b"": none
    request = pb.CreateObjectRequest(class_path=path, payload=payload)
    entry = await t.backend(info, "CreateObject", request)
    return rt.instance(UUID(bytes=entry.object_id), entry.class_path, UUID(bytes=entry.backend_id))


async def make_persistent(
    rt: "Runtime", t: Any, obj: "DataClayObject", alias: str | None = None, backend_id: UUID | str | None = None
) -> None:
    """Store obj (and the new objects it reaches) on a backend; obj becomes a proxy. An object
    already persistent is moved to backend_id (if given), then given the alias (if given)."""
    _check_alias(alias)
    if obj.__dict__[REGISTERED]:  # as dataClay: to backend_id first (a no-op if it is there), then the alias
        if backend_id is not None:
            await move(rt, t, obj, backend_id)
        if alias:
            await add_alias(rt, t, obj, alias)
        return
    if backend_id is None:
        backend_id = rt.local_backend_id or await _any_backend(rt, t)
    target = _as_uuid(backend_id, "backend id")
    info = await backend_info(rt, t, target)
    raw = _raw_store(obj, alias) if target != rt.local_backend_id else None
    if raw is None:
        await store_graph(rt, t, [obj], target, alias)
        return
    await t.backend(info, "StoreObjects", raw)  # codec: sent as StoreRawObject
    rt.became_remote([obj], target)


RAW_STORE_MIN = 256 * 1024  # a bytes property this large makes make_persistent send it as the message


def _raw_store(obj: "DataClayObject", alias: str | None) -> codec.RawStore | None:
    """make_persistent of an object whose largest property is a `bytes` value of RAW_STORE_MIN
    or more and whose others are plain values (no references, no own __getstate__): the value
    travels as the whole message (StoreRawObject), without the copies a pickled state in a
    protobuf message costs. None: the general path (StoreObjects)."""
    cls = type(obj)
    if cls._dc_getstate is not None or cls.__module__ == "__main__":
        return None
    meta = obj.__dict__
    big_name, big = "", b""
    others: dict[str, Any] = {}
    for name in cls._dc_properties:
        if name not in meta:
            continue
        value = meta[name]
        if type(value) not in IMMUTABLE_TYPES:
            return None
        if type(value) is bytes and len(value) > len(big):
            if big_name:
                others[big_name] = big
            big_name, big = name, value
        else:
            others[name] = value
    if len(big) < RAW_STORE_MIN:
        return None
    state = dumps(others, make_ref) if others else b""
    if len(state) > codec.RAW_STATE_LIMIT:
        return None
    return codec.RawStore(meta[ID].bytes, class_path(cls), alias or "", big_name, state, big)


async def get_attribute(rt: "Runtime", t: Any, obj: "DataClayObject", name: str) -> Any:
    request = pb.GetAttributeRequest(object_id=obj.__dict__[ID].bytes, name=name)
    try:
        reply = await at_owner(rt, t, obj, "GetAttribute", request)
    except BackendUnavailableError as unavailable:
        return rt.decode((await from_replica(rt, t, obj, name, unavailable)).state)
    return reply if isinstance(reply, bytes) else rt.decode(reply.payload)  # bytes: a raw value


async def from_replica(
    rt: "Runtime", t: Any, obj: "DataClayObject", name: str, unavailable: BackendUnavailableError
) -> pb.ObjectRecord:
    """The fallback of a read whose master is unavailable: a property's value (pickled), or with
    name "" the whole state, from a replica the directory lists (each holder checks that it still
    is one before answering). Raises `unavailable` if there is no replica, or none answers."""
    holders = list(obj.__dict__.get(lifecycle.REPLICAS, ()))
    random.shuffle(holders)
    for holder in holders:
        try:
            info = await backend_info(rt, t, holder)
            return await t.backend(info, "ReadReplica", pb.ReplicaReadRequest(object_id=obj.__dict__[ID].bytes,
                                                                              name=name))
        except (BackendUnavailableError, BackendNotFoundError, ReplicaNotFoundError):
            continue
    raise unavailable


async def set_attribute(rt: "Runtime", t: Any, obj: "DataClayObject", name: str, value: Any) -> None:
    object_id = obj.__dict__[ID].bytes

    async def request(info: BackendInfo) -> pb.SetAttributeRequest | codec.RawSet:
        if type(value) is bytes:
            return codec.RawSet(object_id, name, value)
        return pb.SetAttributeRequest(object_id=object_id, name=name, payload=await encode_for(rt, t, value, info.id))

    await at_owner(rt, t, obj, "SetAttribute", request)


async def call_method(rt: "Runtime", t: Any, obj: "DataClayObject", name: str, args: tuple, kwargs: dict) -> Any:
    object_id = obj.__dict__[ID].bytes

    async def request(info: BackendInfo) -> pb.CallRequest:
        payload = await encode_for(rt, t, (args, kwargs), info.id) if args or kwargs else b""  # b"": none
        return pb.CallRequest(object_id=object_id, method=name, payload=payload)

    reply = await at_owner(rt, t, obj, "CallActiveMethod", request)
    return rt.decode(reply.payload)


async def get_by_id(rt: "Runtime", t: Any, cls: type, object_id: UUID | str) -> "DataClayObject":
    """The object with this id; for a consolidated version, its original (which it acts as)."""
    wanted = _as_uuid(object_id, "object id")
    await rt.settle_created(t)  # it may be one the active method asking created
    for _ in range(MAX_REDIRECTS):
        try:
            entry = await ask_directory(t, "LocateObject", pb.ObjectRequest(object_id=wanted.bytes))
        except VersionConsolidatedError as consolidated:
            wanted = consolidated.original_id
            continue
        return _entry_instance(rt, entry)
    raise ObjectMovingError(f"object {object_id} kept being forwarded during {MAX_REDIRECTS} attempts",
                            object_id=object_id)


async def get_by_alias(rt: "Runtime", t: Any, cls: type, alias: str) -> "DataClayObject":
    entry = await t.metadata("LookupAlias", pb.AliasRequest(alias=alias))
    return _entry_instance(rt, entry)


async def add_alias(rt: "Runtime", t: Any, obj: "DataClayObject", alias: str) -> None:
    _check_alias(alias)
    _require_registered(obj)
    await rt.settle_created(t, [obj])  # the directory knows what an active method created only once it is stored
    await ask_directory(t, "AddAlias", pb.AliasRequest(alias=alias, object_id=obj.__dict__[ID].bytes))


async def delete_alias(rt: "Runtime", t: Any, alias: str) -> None:
    await t.metadata("DeleteAlias", pb.AliasRequest(alias=alias))


async def get_aliases(rt: "Runtime", t: Any, obj: "DataClayObject") -> set[str]:
    _require_registered(obj)
    await rt.settle_created(t, [obj])
    reply = await ask_directory(t, "GetAliases", pb.ObjectRequest(object_id=obj.__dict__[ID].bytes))
    return set(reply.aliases)


async def sync(rt: "Runtime", t: Any, obj: "DataClayObject") -> None:
    """Refresh what this process knows of a proxy's object from the directory: its master and
    its replicas (and check that it still exists). Replicas need no refresh of their state:
    their master keeps them in sync."""
    if obj.__dict__[REGISTERED] and not obj.__dict__[LOCAL]:
        await locate(rt, t, obj)


async def _fetch_state(rt: "Runtime", t: Any, obj: "DataClayObject") -> pb.ObjectRecord:
    try:
        return await at_owner(rt, t, obj, "GetObjectState", pb.ObjectRequest(object_id=obj.__dict__[ID].bytes))
    except BackendUnavailableError as unavailable:
        return await from_replica(rt, t, obj, "", unavailable)


async def dc_clone(rt: "Runtime", t: Any, obj: "DataClayObject", recursive: bool = False) -> "DataClayObject":
    """A new, not persistent copy of obj's current state; with recursive=True the persistent
    objects it reaches are copied too (cycles and sharing kept), else they stay references."""
    records: dict[UUID, pb.ObjectRecord] = {}
    queue = [obj]
    while queue:
        current = queue.pop()
        object_id = current.__dict__[ID]
        if object_id in records:
            continue
        if not current.__dict__[REGISTERED] or current.__dict__[LOCAL]:
            records[object_id] = pb.ObjectRecord(
                object_id=object_id.bytes, class_path=class_path(type(current)),
                state=dumps(lifecycle.persisted_state(current), make_ref),
            )
        else:
            records[object_id] = await _fetch_state(rt, t, current)
        if recursive:
            loads(records[object_id].state, lambda ref: queue.append(rt.resolve(ref)))
    clones: dict[bytes, DataClayObject] = {}
    for object_id, record in records.items():
        cls = import_class(record.class_path)
        clones[object_id.bytes] = cls.__new__(cls)

    def resolve(ref: Ref) -> "DataClayObject":
        return clones.get(ref.object_id) or rt.resolve(ref)

    for object_id, record in records.items():
        state = lifecycle.properties(loads(record.state, resolve))  # a clone is a new object, not a version
        lifecycle.assign(clones[object_id.bytes], state)
    return clones[obj.__dict__[ID].bytes]


async def dc_update(rt: "Runtime", t: Any, obj: "DataClayObject", other: "DataClayObject") -> None:
    """Overwrite obj's properties with other's (a local object or another persistent one)."""
    if other.__dict__[LOCAL]:
        state = lifecycle.persisted_state(other)
    else:
        state = loads((await _fetch_state(rt, t, other)).state, rt.resolve)
    state = lifecycle.properties(state)  # the properties only, never the lineage
    if lifecycle.OWN_STATE in state:  # what other's own __getstate__ returned: only its __setstate__ reads it
        if obj.__dict__[REGISTERED] or type(obj) is not type(other):
            raise InvalidRequestError(
                f"dc_update from a {type(other).__qualname__}, whose state is what its own __getstate__ returns, "
                "works only into a new (not persistent) object of the same class; call an active method that "
                "copies what you need instead", class_path=class_path(type(other)))
        lifecycle.assign(obj, state)
        return
    await dc_update_properties(rt, t, obj, state)


async def dc_update_properties(rt: "Runtime", t: Any, obj: "DataClayObject", new_properties: dict[str, Any]) -> None:
    """Assign the given properties of obj (dataClay's dc_update_properties), in one request
    where obj lives; a name that is not a property of its class is refused (AttributeError)."""
    if not isinstance(new_properties, dict) or not all(isinstance(name, str) for name in new_properties):
        raise InvalidRequestError("dc_update_properties needs a dict of property names to values")
    if obj.__dict__[LOCAL]:
        for name in new_properties:
            if name not in type(obj)._dc_properties:
                raise AttributeError(f"{type(obj).__qualname__!r} has no persistent property {name!r}")
        for name, value in new_properties.items():
            setattr(obj, name, value)
        return
    object_id = obj.__dict__[ID].bytes

    async def request(info: BackendInfo) -> pb.UpdateObjectRequest:
        return pb.UpdateObjectRequest(object_id=object_id, state=await encode_for(rt, t, new_properties, info.id))

    await at_owner(rt, t, obj, "UpdateObject", request)


async def get_properties(rt: "Runtime", t: Any, obj: "DataClayObject") -> dict[str, Any]:
    """A copy of obj's persistent properties by name (dataClay's get_properties), read where
    obj lives; references stay references. Creates no object (not even inside an active
    method): the state is read into a plain instance used only here."""
    local: dict[bytes, DataClayObject] = {}  # the objects a local state refers to: themselves, not proxies

    def remember(referred: "DataClayObject") -> Ref:
        local[referred.__dict__[ID].bytes] = referred
        return make_ref(referred)

    if obj.__dict__[LOCAL]:
        if not obj.__dict__[LOADED]:
            rt.load_local(obj)  # owned by this backend, not in memory now
        data = dumps(lifecycle.persisted_state(obj), remember)
    else:
        data = (await _fetch_state(rt, t, obj)).state
    cls = type(obj)
    holder = object.__new__(cls)  # not cls(): never persistent, never registered
    lifecycle.new(holder)
    values = loads(data, lambda ref: local.get(ref.object_id) or rt.resolve(ref))
    lifecycle.assign(holder, lifecycle.properties(values))
    return {name: holder.__dict__[name] for name in cls._dc_properties if name in holder.__dict__}


async def dc_put(rt: "Runtime", t: Any, obj: "DataClayObject", alias: str, backend_id: UUID | str | None = None) -> None:
    """dataClay's dc_put: make_persistent with an alias, which is required."""
    if not alias:
        _check_alias("")  # InvalidAliasError, an AttributeError as in dataClay
    await make_persistent(rt, t, obj, alias, backend_id)


async def dc_clone_by_alias(rt: "Runtime", t: Any, cls: type, alias: str, recursive: bool = False) -> "DataClayObject":
    return await dc_clone(rt, t, await get_by_alias(rt, t, cls, alias), recursive)


async def dc_update_by_alias(rt: "Runtime", t: Any, cls: type, alias: str, from_object: "DataClayObject") -> None:
    if type(from_object) is not cls:
        raise TypeError(f"Objects must be of the same type: {cls.__qualname__}, not {type(from_object).__qualname__}")
    await dc_update(rt, t, await get_by_alias(rt, t, cls, alias), from_object)


# ------------------------------------------------------------------ moves


@dataclass
class MoveResult:
    """What a move did: how many objects, how many bytes of state, how long it took."""

    objects: int = 0
    bytes: int = 0
    seconds: float = 0.0
    object_ids: list[UUID] = field(default_factory=list, repr=False)


ProgressCallback = Callable[[int, int], None]  # (objects sent, objects total)


async def _move_from_owner(
    rt: "Runtime", t: Any, obj: "DataClayObject", target: UUID, recursive: bool, remotes: bool,
    on_progress: ProgressCallback | None,
) -> pb.MoveProgress:
    here = rt.move_here(obj, target, recursive, remotes, on_progress)
    if here is not None:
        return here

    async def perform(info: BackendInfo) -> pb.MoveProgress:
        request = pb.MoveRequest(object_ids=[obj.__dict__[ID].bytes], destination=target.bytes, recursive=recursive,
                                 remotes=remotes)
        final = pb.MoveProgress()
        async for progress in t.backend_stream(info, "Move", request):
            if on_progress is not None and progress.objects_total:
                on_progress(progress.objects_sent, progress.objects_total)
            final = progress
        return final

    return await with_owner(rt, t, obj, perform)


async def move(
    rt: "Runtime", t: Any, obj: "DataClayObject", backend_id: UUID | str, recursive: bool = False,
    remotes: bool = False, on_progress: ProgressCallback | None = None,
) -> MoveResult:
    """Move obj to another backend, atomically. recursive=True also moves what obj reaches
    through objects owned by the same backend; remotes=True (with recursive) walks through
    every reachable object, wherever it is (also on the destination, whose owner walks it for
    what lies beyond), and moves each from its owner: one atomic move per object taken from
    another backend, with what it reaches there."""
    _require_registered(obj)
    await rt.settle_created(t, [obj])  # a move made within an active method takes what it created too
    target = _as_uuid(backend_id, "backend id")
    await backend_info(rt, t, target)
    started = time.perf_counter()
    result = MoveResult()
    pending = [obj]
    visited: set[UUID] = set()
    while pending:
        current = pending.pop()
        visited.add(current.__dict__[ID])
        final = await _move_from_owner(rt, t, current, target, recursive, remotes, on_progress)
        moved = [UUID(bytes=raw) for raw in final.moved_ids]
        rt.relocated(moved, target)
        result.object_ids += moved
        result.bytes += final.bytes_sent
        if remotes and recursive:
            visited.update(moved)  # walked by that move: what they reach is in its frontier
            for entry in final.frontier:
                entry_id = UUID(bytes=entry.object_id)
                if entry_id not in visited:
                    visited.add(entry_id)
                    pending.append(rt.instance(entry_id, entry.class_path, UUID(bytes=entry.backend_id) if entry.backend_id else None))
    result.objects = len(result.object_ids)
    result.seconds = time.perf_counter() - started
    return result


# ------------------------------------------------------------------ replicas


async def new_replica(
    rt: "Runtime", t: Any, obj: "DataClayObject", backend_id: UUID | str | None = None, recursive: bool = False,
    remotes: bool = True,
) -> UUID:
    """A replica of obj on backend_id (None: a random backend that holds no copy yet, as in
    dataClay), kept in sync by obj's master from then on. On the master's own backend, or one
    that already holds a replica, it is a no-op. recursive=True also replicates what obj reaches
    through objects of its master's backend; with remotes=True (dataClay's default) the walk goes
    on through objects of other backends, each replicated by its own master. Returns the backend
    that holds the replicas."""
    _require_registered(obj)
    destination = _as_uuid(backend_id, "backend id") if backend_id is not None else None
    if destination is not None:
        await backend_info(rt, t, destination)
    pending = [obj]
    visited: set[UUID] = set()
    while pending:
        current = pending.pop()
        visited.add(current.__dict__[ID])

        async def perform(info: BackendInfo, current: "DataClayObject" = current) -> pb.NewReplicaReply:
            request = pb.NewReplicaRequest(object_ids=[current.__dict__[ID].bytes], recursive=recursive,
                                           destination=destination.bytes if destination else b"")
            return await t.backend(info, "NewReplica", request)

        reply = await with_owner(rt, t, current, perform)
        destination = UUID(bytes=reply.destination)
        for raw in reply.replicated_ids:
            replicated = rt.heap.get(UUID(bytes=raw))
            if replicated is not None and not replicated.__dict__[LOCAL]:
                lifecycle.replicas_known(replicated, replicated.__dict__.get(lifecycle.REPLICAS, frozenset()) | {destination})
        if recursive and remotes:
            for entry in reply.frontier:
                entry_id = UUID(bytes=entry.object_id)
                if entry_id not in visited:
                    visited.add(entry_id)
                    pending.append(rt.instance(entry_id, entry.class_path,
                                               UUID(bytes=entry.backend_id) if entry.backend_id else None))
    assert destination is not None
    return destination


# ------------------------------------------------------------------ versions


async def new_version(
    rt: "Runtime", t: Any, obj: "DataClayObject", backend_id: UUID | str | None = None, recursive: bool = False
) -> "DataClayObject":
    """A new persistent copy of obj that remembers where it came from, on obj's backend unless
    backend_id says otherwise. recursive=True also versions what obj reaches through objects
    owned by the same backend (the version then references those copies)."""
    destination = _as_uuid(backend_id, "backend id") if backend_id is not None else None
    if destination is not None:
        await backend_info(rt, t, destination)
    request = pb.NewVersionRequest(object_id=obj.__dict__[ID].bytes,
                                   destination=destination.bytes if destination else b"", recursive=recursive)
    entry = await at_owner(rt, t, obj, "NewVersion", request)
    return rt.instance(UUID(bytes=entry.object_id), entry.class_path, UUID(bytes=entry.backend_id))


async def consolidate_version(rt: "Runtime", t: Any, obj: "DataClayObject", force: bool = False) -> None:
    """Write this version into every ancestor and the original, atomically, then retire it.
    VersionConflictError if any of them changed since (unless force=True). From then on obj,
    and every reference to the version, acts as the original (as in dataClay)."""
    await _retire_version(rt, t, obj, pb.ConsolidateRequest(object_id=obj.__dict__[ID].bytes, force=force))


async def discard_version(rt: "Runtime", t: Any, obj: "DataClayObject") -> None:
    """Retire this version without writing it anywhere."""
    await _retire_version(rt, t, obj, pb.ConsolidateRequest(object_id=obj.__dict__[ID].bytes, discard=True))


async def _retire_version(rt: "Runtime", t: Any, obj: "DataClayObject", request: pb.ConsolidateRequest) -> None:
    original = await at_owner(rt, t, obj, "ConsolidateVersion", request)
    if original.object_id:  # consolidated: obj is its original now
        rt.forward(obj, UUID(bytes=original.object_id), UUID(bytes=original.backend_id) if original.backend_id else None)
    else:
        lifecycle.relocated(obj, None)  # discarded: the next use asks the directory, which says so


__all__ = [
    "new_replica",
    "new_version",
    "consolidate_version",
    "discard_version",
    "MoveResult",
    "move",
    "get_backends",
    "make_persistent",
    "get_attribute",
    "set_attribute",
    "call_method",
    "get_by_id",
    "get_by_alias",
    "add_alias",
    "delete_alias",
    "get_aliases",
    "sync",
    "dc_clone",
    "dc_update",
]
