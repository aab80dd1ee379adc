"""An owned object's state as the store keeps it: whether it can have changed without an
assignment, the digest that tells, and large immutable states written straight to a file."""
from __future__ import annotations

import hashlib
from typing import Any, BinaryIO

from dataclay import lifecycle as lc
from dataclay.serialization import IMMUTABLE_TYPES, Ref, class_path, dump, dumps
from dataclay_backend.object_store import INLINE_LIMIT


def can_change_in_place(obj: Any) -> bool:
    """Whether a property value could change without an assignment (a list, a dict, ...).
    If not, only assignments (which mark the object dirty) can change the object, and an
    active method that assigned nothing needs no write at all. A class with its own
    __getstate__ may store anything (attributes that are not properties too): always."""
    if type(obj)._dc_getstate is not None:
        return True
    meta = obj.__dict__
    for name in obj._dc_properties:
        value = meta.get(name)
        if type(value) not in IMMUTABLE_TYPES and not getattr(value, "_dc_is_dataclay_object", False):
            return True
    return False


def _hint_free_ref(obj: Any) -> Ref:
    return Ref(obj.__dict__[lc.ID].bytes, class_path(type(obj)), b"")


def state_digest(obj: Any) -> bytes:
    """What commits compare to tell whether an object changed in place: its state with
    references written without their owner hints (a referenced object that moved elsewhere
    is no change of this one)."""
    return hashlib.blake2b(dumps(lc.persisted_state(obj), _hint_free_ref), digest_size=16).digest()


def digest_if_needed(obj: Any) -> bytes | None:
    """The digest that later commits compare against, for objects that need one."""
    return state_digest(obj) if can_change_in_place(obj) else None


class ImmutableState:
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


def large_immutable_size(values: dict[str, Any]) -> int:
    """The size of a state that ImmutableState can write, or 0."""
    size = 0
    for value in values.values():
        if type(value) not in IMMUTABLE_TYPES:
            return 0
        if type(value) in (bytes, str):
            size += len(value)
    return size if size > INLINE_LIMIT else 0
