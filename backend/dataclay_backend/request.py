"""Serving one request on a backend, and storing what it changed before it replies.

Each incoming request runs in a RequestScope (dataclay_backend.scope). Active methods and
property writes on owned objects take the object's lock and count the request's change as
pending (dataclay_backend.locking); before the reply goes out, `store_changes` pickles each
touched object (under its lock, so the snapshot is never half a method), skips those whose
bytes did not change, and writes all of it in one SQLite transaction, with the directory
entries of objects that became persistent during the request: those are registered after the
reply, as make_persistent's (dataclay_backend.registrations; before the write while the backend
registers first, a drain having begun). So when a call returns, its effects survive `kill -9` of
the backend. Changed objects that have replicas send the change to them before the locks are
let go (dataclay_backend.replicas: the guarantee); objects without replicas skip that at once.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
from typing import Any, Iterator
from uuid import UUID

from dataclay import lifecycle as lc
from dataclay.exceptions import (
    CallOutcomeUnknownError,
    ObjectBusyError,
    ObjectRolledBackError,
    ObjectWithWrongBackendIdError,
)
from dataclay.serialization import Ref, class_path, dumps, make_ref
from dataclay.transport import CURRENT_CHAIN
from dataclay_backend.directory_client import DirectoryClient, new_entries
from dataclay_backend.locking import ObjectLocks
from dataclay_backend.object_store import StoredObject
from dataclay_backend.objects import LocalObjects
from dataclay_backend.registrations import Registrations, Unsent, stored_rows
from dataclay_backend.replicas import Replicas
from dataclay_backend.scope import SCOPE, RequestScope
from dataclay_backend.state import ImmutableState, can_change_in_place, large_immutable_size, state_digest

log = logging.getLogger(__name__)


def _may_have_registered(registered: bool, error: BaseException) -> bool:
    """Whether a registration may be in the directory after `error`: it returned before the
    error, or its outcome is unknown (a refusal, or a call never sent, registered nothing)."""
    return registered or isinstance(error, CallOutcomeUnknownError)


def current_scope() -> RequestScope:
    scope = SCOPE.get()
    if scope is None:
        raise RuntimeError("a persistent object was changed outside of a request")
    return scope


class Requests:
    def __init__(self, objects: LocalObjects, locks: ObjectLocks, directory: DirectoryClient,
                 replicas: Replicas, registrations: Registrations) -> None:
        self.objects = objects
        self.locks = locks
        self.directory = directory
        self.replicas = replicas
        self.registrations = registrations
        self._chains = itertools.count()
        self._chain_prefix = objects.backend_id.hex[:8]

    def new_chain(self) -> str:
        return f"{self._chain_prefix}-{next(self._chains)}"

    @contextlib.contextmanager
    def request(self, chain: str | None = None) -> Iterator[RequestScope]:
        """Serve one request: a scope for what it touches, stored before it ends."""
        scope = RequestScope(chain or self.new_chain())
        scope_token = SCOPE.set(scope)
        chain_token = CURRENT_CHAIN.set(scope.chain)
        try:
            yield scope
        finally:
            try:
                self.store_changes(scope)
            finally:
                CURRENT_CHAIN.reset(chain_token)
                SCOPE.reset(scope_token)

    # ------------------------------------------------------------------ encoding
    def encode_reply(self, value: Any) -> bytes:
        """Pickle a result; objects created here that it reaches become persistent here."""
        scope = current_scope()
        return dumps(value, lambda obj: self.reference(obj, scope))

    def reference(self, obj: Any, scope: RequestScope) -> Ref:
        """How a request writes a reference: a NEW object it reaches becomes persistent here,
        stored with the request; one another request created and has not stored yet is stored
        now (its reference may leave this backend in what this request writes)."""
        meta = obj.__dict__
        if not meta[lc.REGISTERED]:
            self.created(obj, scope)
        else:
            creator = meta.get(lc.CREATED_BY)
            if creator is not None and creator is not scope:
                self.store_created(creator)
        return make_ref(obj)

    def created(self, obj: Any, scope: RequestScope) -> None:
        """obj (NEW) is persistent here from now on, made so by this request, which stores it."""
        meta = obj.__dict__
        object_id = meta[lc.ID]
        with scope.lock:
            lc.registered_here(obj, self.objects.backend_id)
            meta[lc.CREATED_BY] = scope
            scope.new[object_id] = obj
            scope.touched[object_id] = obj
            scope.dirty.add(object_id)

    def snapshot(self, obj: Any) -> bytes:
        """The object's current state, pickled consistently (under its lock)."""
        scope = current_scope()
        if not self.locks.hold(obj, scope):
            meta = obj.__dict__
            raise ObjectWithWrongBackendIdError(
                f"object {meta[lc.ID]} moved to backend {meta[lc.BACKEND]}",
                object_id=meta[lc.ID], backend_id=meta[lc.BACKEND],
            )
        try:
            return dumps(lc.persisted_state(obj), lambda ref_obj: self.reference(ref_obj, scope))
        finally:
            self.locks.release(obj)

    # ------------------------------------------------------------------ storing
    def store_changes(self, scope: RequestScope) -> None:
        """Make what the request changed durable, in one transaction (see module docstring)."""
        if not scope.touched:
            return
        rows: list[tuple[Any, StoredObject]] = []
        registered = False
        unconfirmed: BaseException | None = None  # stored here, but a replica may lack it (raised last)
        try:
            with scope.lock:
                later: list[Unsent] | None = None  # entries of new objects, registered after the reply
                try:
                    rows = self._snapshots(scope, scope.touched)
                    if scope.new:
                        entries = new_entries(list(scope.new.values()), self.objects.backend_id)
                        later = self.registrations.defer(entries)
                        if later is None:  # this backend registers before replying now (a drain began)
                            self.directory.register(entries)
                            registered = True
                    self.objects.store.write((row for _, row in rows), unregistered=stored_rows(later) if later else None)
                except BaseException as exc:
                    if later is not None:
                        self.registrations.deferred([])
                    self._roll_back(scope, _may_have_registered(registered, exc))
                    raise
                if later is not None:
                    self.registrations.deferred(later)
                stored_new = dict(scope.new)
                self._stored(scope, stored_new)
            if self.replicas.holders and rows:  # stored: now every replica, before the locks go
                try:
                    self.replicas.propagate([row for _, row in rows])
                except Exception as exc:
                    unconfirmed = exc
        finally:
            for object_id in list(scope.pending):
                self.locks.unpend(scope.touched[object_id], scope)
        loaded = self.objects.loaded
        for obj, row in rows:
            loaded.touch(row.object_id, obj, len(row.state))
        if stored_new:
            self.objects.remember(stored_new.values())
        loaded.evict()
        if unconfirmed is not None:
            raise unconfirmed

    def store_created(self, scope: RequestScope) -> None:
        """Store and register, now, the objects `scope`'s request made persistent so far
        (created in its active method): a reference to one is about to leave this backend (an
        argument of a call to another backend, a reply of another request that read it) or the
        directory is about to be asked about one (an alias, a move, a version, get_by_id). They
        stay touched (and held) by the request, so its later changes of them are stored with it
        as any owned object's. If this fails they are plain objects again (as a failed request
        leaves them) and the error goes to whoever needed them. Another thread (a worker of the
        method, another request) may do it: waits for the request's lock at most lock_timeout."""
        if not scope.lock.acquire(timeout=self.locks.timeout):
            raise ObjectBusyError(
                f"objects created by a call on backend {self.objects.name} stayed busy for {self.locks.timeout:.0f}s "
                "(that call is storing them); nothing was changed, try again")
        try:
            if not scope.new:
                return
            registered = False
            created = dict(scope.new)
            try:
                rows = self._snapshots(scope, scope.new)  # may make more persistent: scope.new grows
                created = dict(scope.new)
                self.directory.register_objects(list(created.values()), self.objects.backend_id)
                registered = True
                self.objects.store.write(row for _, row in rows)
            except BaseException as exc:
                self._discard(scope, created, _may_have_registered(registered, exc))
                raise
            self._stored(scope, created)
            for obj, row in rows:
                self.objects.loaded.touch(row.object_id, obj, len(row.state))
            self.objects.remember(created.values())
        finally:
            scope.lock.release()

    def discard_created(self, scope: RequestScope, obj: Any | None = None) -> None:
        """The objects the request made persistent and has not stored yet (or only `obj`, if
        it is one of them) are plain objects again: a creation whose __init__ failed leaves
        nothing behind that it did not store on the way."""
        with scope.lock:
            if obj is None:
                self._discard(scope, dict(scope.new), False)
            elif scope.new.get(obj.__dict__[lc.ID]) is obj:
                self._discard(scope, {obj.__dict__[lc.ID]: obj}, False)

    def _stored(self, scope: RequestScope, created: dict[UUID, Any]) -> None:
        """Under scope.lock: these created objects are stored and registered: owned objects
        like any other from now on (their later changes in the request are stored with it)."""
        for object_id, obj in created.items():
            scope.new.pop(object_id, None)
            scope.dirty.discard(object_id)
            obj.__dict__.pop(lc.CREATED_BY, None)

    def _discard(self, scope: RequestScope, created: dict[UUID, Any], registered: bool) -> None:
        """Under scope.lock: these created objects were not stored: plain objects again, no
        longer the request's, and their registrations dropped if they may have been made."""
        for object_id, obj in created.items():
            if object_id in scope.pending:
                self.locks.unpend(obj, scope)
            scope.new.pop(object_id, None)
            scope.touched.pop(object_id, None)
            scope.dirty.discard(object_id)
            obj.__dict__.pop(lc.CREATED_BY, None)
            lc.registration_failed(obj)
        if registered and created:
            try:
                self.directory.drop(list(created))
            except Exception as exc:  # the directory is down: recovery removes the entries
                log.warning("could not drop %d registrations of objects created by a call: %s", len(created), exc)

    def _snapshots(self, scope: RequestScope, source: dict[UUID, Any]) -> list[tuple[Any, StoredObject]]:
        """The new rows of source's objects (see _row); snapshots may make more objects
        persistent, which join source (scope.touched, scope.new) and are taken too."""
        rows: list[tuple[Any, StoredObject]] = []
        done: set[UUID] = set()
        while len(done) < len(source):
            for object_id, obj in list(source.items()):
                if object_id not in done:
                    done.add(object_id)
                    row = self._row(obj, scope)
                    if row is not None:
                        rows.append(row)
        return rows

    def _roll_back(self, scope: RequestScope, registered: bool) -> None:
        """The request's changes could not be stored: memory goes back to what is stored.
        Objects it made persistent are plain objects again (and their registrations, if any
        reached the directory, are dropped: else recovery drops them); objects it touched are
        unloaded under their locks, and marked STALE first, so that another request holding
        one now fails instead of storing this request's change as its own."""
        for obj in scope.new.values():
            obj.__dict__.pop(lc.CREATED_BY, None)
            lc.registration_failed(obj)
        if registered:
            try:
                self.directory.drop(list(scope.new))
            except Exception as exc:  # the directory is down: recovery removes the entries
                log.warning("could not drop %d registrations of a failed request: %s", len(scope.new), exc)
        for object_id, obj in scope.touched.items():
            meta = obj.__dict__
            if object_id in scope.new or not meta[lc.LOCAL]:
                continue
            meta[lc.STALE] = True
            try:
                self.locks.acquire(obj, scope.chain)
            except ObjectBusyError:
                continue  # the next request that takes it reloads it (LocalObjects.ready)
            try:
                self.objects.unload(obj)
            finally:
                self.locks.release(obj)

    def _row(self, obj: Any, scope: RequestScope) -> tuple[Any, StoredObject] | None:
        """Under obj's lock: its new row, or None if it cannot have changed (or moved away).
        The revision is taken here, under the lock, so two stores of one object get
        increasing revisions in the order of their snapshots; the store keeps the higher."""
        meta = obj.__dict__
        object_id = meta[lc.ID]
        self.locks.acquire(obj, scope.chain)  # bounded: ObjectBusyError (nothing stored)
        try:
            if not meta[lc.LOCAL]:
                return None  # moved away meanwhile: the move carried the in-memory state
            if meta.get(lc.STALE) or not meta[lc.LOADED]:  # only a rollback unloads a pending object
                raise ObjectRolledBackError(
                    f"object {object_id} was changed by another call that failed before its change was stored, "
                    "and this call saw that change: nothing of this call was stored; try again", object_id=object_id)
            assigned = object_id in scope.dirty
            in_place = can_change_in_place(obj)
            if not assigned and not in_place:
                return None  # nothing was assigned and nothing can change in place
            digest = state_digest(obj) if in_place else None
            if not assigned and digest == meta.get(lc.DIGEST):
                return None
            values = lc.persisted_state(obj)
            size = large_immutable_size(values)
            data = ImmutableState(values, size) if size else dumps(values, lambda ref: self.reference(ref, scope))
            revision = meta[lc.REVISION] = meta.get(lc.REVISION, 0) + 1
            meta[lc.DIGEST] = digest
        finally:
            self.locks.release(obj)
        return obj, StoredObject(object_id, class_path(type(obj)), revision, data)
