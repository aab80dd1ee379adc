"""An object's lifecycle: the states one DataClayObject instance can be in, in one process, and
the only functions that move it between them.

The metadata lives in the instance's own ``__dict__`` under the ``_dc_*`` keys below (a dict
lookup is the cheapest check on the hot path, and dataClay code reads ``obj._dc_backend_id``
and ``obj._dc_is_registered``). Code outside this module reads these keys (through the
constants) but changes the ``LOCAL``/``REGISTERED``/``LOADED``/``BACKEND`` flags only by calling
a transition below, so every state change has one name and one place.

States (``state_of``)::

    NEW        local, not registered: a plain Python object (created by user code in a client,
               or on a backend outside any request; inside an active method `created` makes it
               LOADED at once, as in dataClay)
    PROXY      registered, not local: reads, writes and calls go to the owner (BACKEND); a
               RETIRED proxy (a consolidated or discarded version) has no owner
    LOADED     registered and local (only on the backend that owns it): properties in __dict__
    UNLOADED   registered and local, properties not in memory (never read yet, or evicted)
    A version is a LOADED object with a lineage (``lineage(obj)`` is a Lineage, not None).

Transitions::

               registered_here            load
      NEW ─────────────────────────► LOADED ◄──────── UNLOADED
       │ ▲                            │  └─── unload ───► ▲  │
       │ └── registration_failed ─────┘                  │  │
       │                                      owned_here │  │
       │ registered_elsewhere        to_proxy        (proxy)│ to_proxy (moved away,
       ▼                          (moved away, retired)     │           retired)
     PROXY ◄────────────────────────────────────────────────┴──┘
       │ relocated (the owner changed; None: retired)
       ├──► PROXY
       │ forwarded (a consolidated version takes its original's identity, as in dataClay)
       └──► PROXY of the original

On a backend an owned object also carries the bookkeeping of its stored state: REVISION (bumped
by every stored change), DIGEST (to detect in-place changes), LOCK (its ChainLock), PENDING
(requests whose change of it is on its way to storage) and STALE (a request that changed it
failed: its properties are dropped, ``unload``, before anyone uses them again). Those are the backend's business
(dataclay_backend.locking and dataclay_backend.request); only their key names are defined here.
"""
from __future__ import annotations

import enum
import uuid
from contextvars import ContextVar
from typing import Any, Callable, NamedTuple
from uuid import UUID

from dataclay.exceptions import StateHookError

ID = "_dc_id"  # uuid.UUID, for the object's whole life
REGISTERED = "_dc_is_registered"  # the directory knows it (it is persistent)
LOCAL = "_dc_is_local"  # the properties live in this process (NEW, LOADED, UNLOADED)
LOADED = "_dc_is_loaded"  # the properties are in __dict__ now
BACKEND = "_dc_backend_id"  # the owner's id as far as this process knows (None: not known, or retired)
REVISION = "_dc_revision"  # backend: the revision of the stored state in memory
DIGEST = "_dc_digest"  # backend: digest of the state as last stored, for in-place changes
LOCK = "_dc_lock"  # backend: the object's ChainLock
PENDING = "_dc_pending"  # backend: requests whose change of the object is not yet stored
STALE = "_dc_stale"  # backend: a failed request's change may be in memory: reload before use
CREATED_BY = "_dc_created_by"  # backend: the request that created it (inside an active method), until it is stored
VERSION = "_dc_version"  # a version's lineage; persisted with the state, as a plain tuple
OWN_STATE = "_dc_own_state"  # persisted: what the class's own __getstate__ returned
REPLICAS = "_dc_replicas"  # frozenset of backends holding a replica, as this process last learnt (absent: none known)

# The object whose own __getstate__ / __setstate__ is running in this thread: its property
# reads and writes are plain ones then (no lock, no "changed" mark): the hook builds or reads
# the state as stored, under whatever lock its caller holds.
IN_STATE_HOOK: ContextVar[Any] = ContextVar("dataclay_in_state_hook", default=None)

# What a DataClayObject() created in this process becomes: set with the process's runtime
# (dataclay.runtime.set_runtime). None in clients (a new object is NEW, plain Python); a
# backend makes an object created while it serves a request (inside an active method)
# persistent there at once, as dataClay does. One test of a module global per creation.
on_create: Callable[[Any], None] | None = None


class State(enum.Enum):
    NEW = "new"
    PROXY = "proxy"
    LOADED = "loaded"
    UNLOADED = "unloaded"
    RETIRED = "retired"


class Lineage(NamedTuple):
    """Where a version came from: its parent, the original it descends from, and the parent's
    revision when the version was taken (consolidation checks it is still that)."""

    parent: UUID
    original: UUID
    revision: int


def state_of(obj: Any) -> State:
    meta = obj.__dict__
    if not meta[REGISTERED]:
        return State.NEW
    if not meta[LOCAL]:
        return State.PROXY if meta[BACKEND] is not None else State.RETIRED
    return State.LOADED if meta[LOADED] else State.UNLOADED


def object_id(obj: Any) -> UUID:
    return obj.__dict__[ID]


def lineage(obj: Any) -> Lineage | None:
    """A version's lineage (kept while the object is unloaded), or None: an original, or an
    object whose state was never loaded here."""
    return obj.__dict__.get(VERSION)


# ------------------------------------------------------------------ transitions
def new(obj: Any, state: dict[str, Any] | None = None) -> None:
    """-> NEW: a fresh identity (DataClayObject() and unpickled by-value copies)."""
    obj.__dict__.update({ID: uuid.uuid4(), REGISTERED: False, LOCAL: True, LOADED: True, BACKEND: None})
    if state:
        obj.__dict__.update(without_bookkeeping(state))


def without_bookkeeping(state: Any) -> dict[str, Any]:
    """A by-value state without the _dc_* keys of this module (an identity, a revision, ...):
    those are never taken from a copy (or from a peer)."""
    if not isinstance(state, dict):
        raise TypeError(f"a DataClayObject's state is a dict of its properties, not a {type(state).__name__}")
    return {key: value for key, value in state.items() if not (isinstance(key, str) and key.startswith("_dc_"))}


def proxy(obj: Any, object_id_: UUID, backend_id: UUID | None) -> None:
    """A new, empty instance -> PROXY of a persistent object owned by backend_id."""
    obj.__dict__.update({ID: object_id_, REGISTERED: True, LOCAL: False, LOADED: False, BACKEND: backend_id})


def owned_here(obj: Any, object_id_: UUID, backend_id: UUID) -> None:
    """A new instance (or a proxy this process held) -> UNLOADED: this backend owns the object
    now; its properties load from storage on first use."""
    obj.__dict__.update({ID: object_id_, REGISTERED: True, LOCAL: True, LOADED: False, BACKEND: backend_id})


def registered_here(obj: Any, backend_id: UUID, revision: int | None = None) -> None:
    """NEW -> LOADED: the object became persistent on this backend (its state is in memory).
    `revision` when its first state is already stored (else storing the request sets it)."""
    meta = obj.__dict__
    meta.update({REGISTERED: True, LOCAL: True, LOADED: True, BACKEND: backend_id})
    if revision is not None:
        meta[REVISION] = revision


def registration_failed(obj: Any) -> None:
    """LOADED -> NEW: storing the request that was to make it persistent failed; it stays plain Python."""
    obj.__dict__.update({REGISTERED: False, BACKEND: None})


def registered_elsewhere(obj: Any, backend_id: UUID) -> None:
    """NEW -> PROXY: stored on another backend (make_persistent from a client)."""
    to_proxy(obj, backend_id)


def load(obj: Any, values: dict[str, Any], revision: int) -> None:
    """UNLOADED -> LOADED (or LOADED with new contents): `values` are a stored state, decoded.
    Properties not in it are dropped (a state replaces the whole object); a stored lineage
    becomes a Lineage. A class with its own __setstate__ (or __getstate__) gets the state
    through it, once the object is LOADED (`restore`)."""
    meta = obj.__dict__
    for name in obj._dc_properties:
        meta.pop(name, None)
    meta.pop(VERSION, None)
    stored_lineage = values.pop(VERSION, None)
    own = type(obj)._dc_restore
    if own is None:
        meta.update(values)
    if stored_lineage is not None:
        meta[VERSION] = Lineage(*stored_lineage)
    meta[LOADED] = True
    meta[REVISION] = revision
    if own is not None:
        try:
            restore(obj, values)
        except BaseException:
            unload(obj)  # never half restored: the next use loads it again
            raise


def assign(obj: Any, values: dict[str, Any]) -> None:
    """A stored state without lineage (`properties`) into a NEW object (a clone)."""
    if type(obj)._dc_restore is None:
        obj.__dict__.update(values)
    else:
        restore(obj, values)


def restore(obj: Any, values: dict[str, Any]) -> None:
    """Give a state to a class with its own hooks: what its __getstate__ returned if that is
    what was stored (else the properties, stored before the class had one), to its own
    __setstate__, or, without one, a dict of attributes set as they are (pickle's default)."""
    state = values[OWN_STATE] if OWN_STATE in values else values
    setstate = type(obj)._dc_restore
    if setstate is _set_attributes:
        if not isinstance(state, dict):
            raise TypeError(f"{type(obj).__qualname__}.__getstate__ returned a {type(state).__name__}, not a dict: "
                            "define __setstate__ too, to restore it")
    _in_hook(obj, setstate, state)


def refuse_in_state_hook(what: str) -> None:
    """Called (when IN_STATE_HOOK is set) where a state hook would use another persistent
    object: loading one, calling one. Refused, as it could wait for what the hook's caller
    holds (the backend's load lock)."""
    hooked = IN_STATE_HOOK.get()
    name = type(hooked).__qualname__
    raise StateHookError(
        f"{name}.__getstate__/__setstate__ may use only its own object and the state it is given, not {what}: "
        f"they run while the backend loads or stores the {name}; do that in an active method instead",
        object_id=hooked.__dict__[ID])


def _in_hook(obj: Any, hook: Callable[[Any, Any], Any], *args: Any) -> Any:
    token = IN_STATE_HOOK.set(obj)
    try:
        return hook(obj, *args)
    finally:
        IN_STATE_HOOK.reset(token)


def _set_attributes(obj: Any, state: dict[str, Any]) -> None:
    """Pickle's default __setstate__, without the lifecycle's own keys."""
    obj.__dict__.update(_public(state))


def _public(state: dict[Any, Any]) -> dict[Any, Any]:
    """A state dict of a class's own hooks without the lifecycle's keys (`_dc_...`, such as
    an object's id and lock): a hook's state never stores or sets them."""
    return {name: value for name, value in state.items() if not (type(name) is str and name.startswith("_dc_"))}


def state_hooks(cls: type, base_getstate: Any, base_setstate: Any) -> tuple[Any, Any]:
    """A class's own hooks, for its `_dc_getstate` / `_dc_restore` (None: it has none, and
    its state is its properties, at no extra cost). A class with only __getstate__ is restored
    as pickle does (a dict's items set as attributes); one with only __setstate__ gets the
    properties."""
    getstate = cls.__getstate__ if cls.__getstate__ is not base_getstate else None
    setstate = cls.__setstate__ if cls.__setstate__ is not base_setstate else None
    if getstate is None and setstate is None:
        return None, None
    return getstate, setstate or _set_attributes


def unload(obj: Any) -> None:
    """LOADED -> UNLOADED (eviction, or a failed request's rollback): what is stored is what
    counts; drop what is in memory."""
    meta = obj.__dict__
    meta[LOADED] = False
    meta.pop(STALE, None)
    for name in obj._dc_properties:
        meta.pop(name, None)


def to_proxy(obj: Any, backend_id: UUID | None) -> None:
    """LOADED/UNLOADED/NEW -> PROXY: the object now lives on backend_id (None: nowhere, a
    retired version). Its properties and lineage leave this process."""
    meta = obj.__dict__
    for name in obj._dc_properties:
        meta.pop(name, None)
    meta.pop(VERSION, None)
    meta.update({REGISTERED: True, LOCAL: False, LOADED: False, BACKEND: backend_id})


def relocated(obj: Any, backend_id: UUID | None) -> None:
    """PROXY -> PROXY: the owner is (or is believed to be) backend_id now; None: ask the
    directory next time (or retired)."""
    obj.__dict__[BACKEND] = backend_id


def replicas_known(obj: Any, backend_ids: frozenset[UUID]) -> None:
    """PROXY -> PROXY: the backends holding a replica, as the directory just said (a cache, like
    BACKEND: the directory stays the authority); reads fall back to them (dataclay.operations)."""
    if backend_ids:
        obj.__dict__[REPLICAS] = backend_ids
    else:
        obj.__dict__.pop(REPLICAS, None)


def forwarded(obj: Any, original_id: UUID, backend_id: UUID | None) -> None:
    """PROXY -> PROXY of another object: a consolidated version acts as its original from now
    on (dataClay's `v.consolidate_version(); e = v`); backend_id None: ask the directory."""
    obj.__dict__.update({ID: original_id, BACKEND: backend_id})


def with_lineage(obj: Any, value: Lineage) -> None:
    """Set a loaded object's lineage (a version being made, or its base revision moving on)."""
    obj.__dict__[VERSION] = value


def persisted_state(obj: Any) -> dict[str, Any]:
    """What is stored of obj: the properties that are set (or what its class's own
    __getstate__ returns, dataClay's rule) and, for a version, its lineage as a plain tuple
    (the stored format)."""
    meta = obj.__dict__
    getstate = type(obj)._dc_getstate
    if getstate is None:
        persisted = {name: meta[name] for name in obj._dc_properties if name in meta}
    else:
        state = _in_hook(obj, getstate)
        persisted = {OWN_STATE: _public(state) if type(state) is dict else state}
    version = meta.get(VERSION)
    if version is not None:
        persisted[VERSION] = tuple(version)
    return persisted


def properties(state: dict[str, Any]) -> dict[str, Any]:
    """A persisted state without its lineage: what a copy or a consolidation carries."""
    state.pop(VERSION, None)
    return state
