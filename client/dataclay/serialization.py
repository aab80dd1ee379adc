"""Payload encoding: pickle, with every DataClayObject written as a reference.

A reference is a `Ref` (object id bytes, class path, owner backend id bytes or b""); on the wire
it is pickle's persistent id, a plain tuple of those three (a NamedTuple would be pickled as a
reference to its class). What a reference to a not-yet-persistent object means is the caller's
decision (`on_object`): the client persists it first, a backend adopts it as its own. The
reader turns references back into the one instance per object id of its process (`resolve`).
"""
from __future__ import annotations

import functools
import importlib
import io
import pickle
from functools import lru_cache
from typing import IO, Any, Callable, NamedTuple

from dataclay.exceptions import ClassNotFoundError

PROTOCOL = 5


class Ref(NamedTuple):
    """A reference to a persistent object, as it travels in a payload."""

    object_id: bytes  # UUID bytes
    class_path: str  # "package.module.Class", imported by the reader
    backend_id: bytes  # the owner as far as the writer knows (UUID bytes), or b"": ask the directory


# _tuple_new(Ref, (object_id, class_path, backend_id)) skips Ref.__new__'s Python frame: the
# fastest way to build one (timeit: about 125 ns more than a plain tuple; Ref._make 155 ns,
# Ref(...) 230 ns).
_tuple_new = tuple.__new__
new_ref = functools.partial(_tuple_new, Ref)  # new_ref((object_id, class_path, backend_id))


def class_path(cls: type) -> str:
    # A new string each time, on purpose: a cached one would be memoized by pickle after its
    # first reference, which changes the bytes written.
    return f"{cls.__module__}.{cls.__qualname__}"


@lru_cache(maxsize=None)
def import_class(path: str) -> type:
    """Import "package.module.Class" (nested classes allowed); ClassNotFoundError if absent."""
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            target: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            for name in parts[split:]:
                target = getattr(target, name)
        except AttributeError:
            break
        if isinstance(target, type):
            return target
        break
    raise ClassNotFoundError(
        f"class {path} cannot be imported here: put its module on the model path "
        "(dataclay up --model-path, or DC_MODEL_PATH)",
        class_path=path,
    )


class _Pickler(pickle.Pickler):
    def __init__(self, file: IO[bytes], on_object: Callable[[Any], Ref]) -> None:
        super().__init__(file, protocol=PROTOCOL)

        # Asked for every object pickled. A closure rather than a method: no attribute lookup
        # per reference written.
        def persistent_id(obj: Any) -> tuple[bytes, str, bytes] | None:
            if getattr(obj, "_dc_is_dataclay_object", False) and not isinstance(obj, type):
                return on_object(obj)[:]  # a plain tuple (slicing a Ref makes one): the wire format
            return None

        self.persistent_id = persistent_id


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, resolve: Callable[[Ref], Any]) -> None:
        super().__init__(file)
        # The plain tuple read becomes a Ref. A closure rather than a method: one attribute
        # lookup less per reference read.
        self.persistent_load = lambda pid: resolve(_tuple_new(Ref, pid))


def dumps(value: Any, on_object: Callable[[Any], Ref]) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, on_object).dump(value)
    return buffer.getvalue()


def dump(value: Any, file: IO[bytes], on_object: Callable[[Any], Ref]) -> None:
    """dumps() straight into a file: a large bytes value goes to the file without a copy."""
    _Pickler(file, on_object).dump(value)


def loads(data: bytes, resolve: Callable[[Ref], Any]) -> Any:
    return _Unpickler(io.BytesIO(data), resolve).load()


def may_reference(data: bytes) -> bool:
    """False only if `data` (from dumps) certainly holds no reference: every reference is
    written with the BINPERSID opcode, so a state without that byte has none. Lets a walk
    over many states skip unpickling most of them."""
    return pickle.BINPERSID in data


def make_ref(obj: Any) -> Ref:
    """The reference to a registered object, naming the owner this process knows."""
    backend = obj._dc_backend_id  # lifecycle.BACKEND and ID read as attributes: faster than via __dict__
    return _tuple_new(Ref, (obj._dc_id.bytes, class_path(type(obj)), backend.bytes if backend else b""))
