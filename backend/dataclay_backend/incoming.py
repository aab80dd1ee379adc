"""New objects arriving at a backend: states a client sends (StoreObjects), checked before
anything is stored; versions made for this backend; and make_persistent() called here for here."""
from __future__ import annotations

import logging
import sys
from typing import Any
from uuid import UUID

from dataclay import lifecycle as lc
from dataclay.exceptions import InvalidRequestError
from dataclay.protocol import codec
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.serialization import IMMUTABLE_TYPES, class_path, dumps, import_class, loads
from dataclay_backend.directory_client import DirectoryClient
from dataclay_backend.object_store import StoredObject
from dataclay_backend.objects import LocalObjects
from dataclay_backend.registrations import Registrations
from dataclay_backend.state import ImmutableState, digest_if_needed, large_immutable_size
from dataclay_backend.validation import check_class_path, property_of
from dataclay_backend.wire import parse_uuid

log = logging.getLogger(__name__)


def _checked_lineage(record: pb.ObjectRecord, object_id: UUID) -> lc.Lineage | None:
    """The lineage a client's record carries (a version sent back), after checking that the
    state decodes and names only persistent properties of its class."""
    cls = import_class(record.class_path)
    try:
        state = loads(record.state, lambda ref: None)
        stored_lineage = state.get(lc.VERSION)
        lineage = lc.Lineage(*stored_lineage) if stored_lineage else None
        if lineage is not None and not (isinstance(lineage.parent, UUID) and isinstance(lineage.original, UUID)
                                        and isinstance(lineage.revision, int)):
            raise TypeError(f"a lineage is (parent UUID, original UUID, revision int), not {stored_lineage!r}")
    except Exception as exc:
        raise InvalidRequestError(
            f"the state of object {object_id} cannot be decoded: {exc}", object_id=object_id) from None
    _check_names(cls, state, object_id, record.class_path)
    return lineage


def _check_names(cls: type, state: Any, object_id: UUID, path: str) -> None:
    """A new object's state names only persistent properties of its class (besides the lineage
    and what the class's own __getstate__ returned)."""
    if not isinstance(state, dict):
        raise InvalidRequestError(f"the state of object {object_id} is not a mapping of property names", object_id=object_id)
    for name in state:
        if name == lc.VERSION or (name == lc.OWN_STATE and cls._dc_getstate is not None):
            continue  # the lineage; what the class's own __getstate__ returned
        if not isinstance(name, str):
            raise InvalidRequestError(f"the state of object {object_id} has a name that is not a string", object_id=object_id)
        try:
            property_of(cls, name, object_id)
        except InvalidRequestError:
            raise
        except Exception:  # well-formed, and not a property: refused as the request it is part of
            raise InvalidRequestError(
                f"the state of object {object_id} has a name that is not a persistent property of "
                f"{path}: {name!r}", object_id=object_id) from None


def _no_reference(ref: Any) -> None:
    raise TypeError("a StoreRawObject state holds plain values only, not references")


class Incoming:
    def __init__(self, objects: LocalObjects, directory: DirectoryClient, registrations: Registrations) -> None:
        self.objects = objects
        self.directory = directory
        self.registrations = registrations

    def _store_new(self, rows: list[StoredObject], entries: list[pb.ObjectEntry], alias: str) -> None:
        """Store new objects: without an alias registered in the directory after the reply
        (registrations.py), else (or while a drain begins) registered first, then stored."""
        if alias or not self.registrations.store_new(rows, entries):
            self.directory.register(entries, alias)
            self._write_registered(rows)
        self.objects.adopt({row.object_id: row.class_path for row in rows})

    def store_records(
        self, records: list[pb.ObjectRecord], alias: str, lineages: dict[UUID, lc.Lineage] | None = None
    ) -> None:
        """StoreObjects: new objects sent by a client, checked, registered, then stored.
        Versions made here pass their `lineages` (id -> lineage) and skip the checks."""
        rows = []
        entries = []
        backend = self.objects.backend_id.bytes
        for record in records:
            object_id = parse_uuid(record.object_id, "object id")
            lineage = lineages[object_id] if lineages is not None else _checked_lineage(record, object_id)
            rows.append(StoredObject(object_id, sys.intern(record.class_path), 1, record.state))  # objects.py
            entries.append(pb.ObjectEntry(
                object_id=object_id.bytes, class_path=record.class_path, backend_id=backend,
                version_parent=lineage.parent.bytes if lineage else b"",
                version_original=lineage.original.bytes if lineage else b""))
        if not rows:
            raise InvalidRequestError("StoreObjects needs at least one object")
        self._store_new(rows, entries, alias)

    def store_raw(self, request: codec.RawStore) -> None:
        """StoreRawObject: one new object whose property `request.name` is the message's bytes
        and whose other properties are plain values, checked as StoreObjects checks, then
        registered and stored; a large state goes to its file straight from the received value
        (ImmutableState: no pickled copy of it in memory)."""
        object_id = parse_uuid(request.object_id, "object id")
        path = check_class_path(request.class_path)
        cls = import_class(path)
        if cls._dc_getstate is not None:
            raise InvalidRequestError(f"{path} has its own __getstate__: store it with StoreObjects", class_path=path)
        if len(request.state) > codec.RAW_STATE_LIMIT:
            raise InvalidRequestError(f"the other properties of a StoreRawObject take at most {codec.RAW_STATE_LIMIT} "
                                      "bytes: use StoreObjects", object_id=object_id)
        try:
            values = loads(request.state, _no_reference) if request.state else {}
        except Exception as exc:
            raise InvalidRequestError(f"the state of object {object_id} cannot be decoded: {exc}",
                                      object_id=object_id) from None
        if isinstance(values, dict):
            if any(type(value) not in IMMUTABLE_TYPES for value in values.values()):
                raise InvalidRequestError(f"the other properties of object {object_id} in a StoreRawObject are plain "
                                          "values only (no objects, no containers): use StoreObjects", object_id=object_id)
            values[request.name] = request.raw
        _check_names(cls, values, object_id, path)
        if lc.VERSION in values or lc.OWN_STATE in values:
            raise InvalidRequestError(f"the state of object {object_id} names {lc.VERSION} or {lc.OWN_STATE}",
                                      object_id=object_id)
        size = large_immutable_size(values)
        state = ImmutableState(values, size) if size else dumps(values, _no_reference)
        self._store_new([StoredObject(object_id, path, 1, state)],
                        [pb.ObjectEntry(object_id=object_id.bytes, class_path=path,
                                        backend_id=self.objects.backend_id.bytes)], request.alias)

    def _write_registered(self, rows: list[StoredObject]) -> None:
        """Store objects just registered; if that fails (a full disk: StorageFullError), their
        registrations (and alias) are dropped, so the directory lists nothing that is not stored."""
        try:
            self.objects.store.write(rows)
        except BaseException:
            ids = [row.object_id for row in rows]
            try:
                self.directory.drop(ids)
            except Exception as exc:  # recovery drops them at the next start (not stored here)
                log.warning("could not drop the registrations of %d objects whose store failed (the next start "
                            "drops them): %s", len(ids), exc)
            raise

    def store_local(self, objects: list[Any], states: list[bytes], alias: str | None) -> None:
        """make_persistent() called on this backend for this backend: the instances stay."""
        rows = [StoredObject(o.__dict__[lc.ID], class_path(type(o)), 1, s) for o, s in zip(objects, states)]
        self.directory.register_objects(objects, self.objects.backend_id, alias or "")
        self._write_registered(rows)
        for obj in objects:
            lc.registered_here(obj, self.objects.backend_id, revision=1)
            obj.__dict__[lc.DIGEST] = digest_if_needed(obj)
        self.objects.remember(objects)
        for obj, row in zip(objects, rows):
            self.objects.loaded.touch(row.object_id, obj, len(row.state))
