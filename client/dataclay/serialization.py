"""Payload encoding: pickle, with every DataClayObject written as a reference.

A reference is the tuple (object id bytes, class path, owner backend id bytes or b""). What a
reference to a not-yet-persistent object means is the caller's decision (`on_object`): the
client persists it first, a backend adopts it as its own. The reader turns references back into
the one instance per object id of its process (`resolve`).
"""
from __future__ import annotations

import importlib
import io
import pickle
from functools import lru_cache
from typing import IO, Any, Callable

from dataclay.exceptions import ClassNotFoundError

Ref = tuple[bytes, str, bytes]
PROTOCOL = 5


def class_path(cls: type) -> str:
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
        self._on_object = on_object

    def persistent_id(self, obj: Any) -> Ref | None:
        if getattr(obj, "_dc_is_dataclay_object", False) and not isinstance(obj, type):
            return self._on_object(obj)
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, resolve: Callable[[Ref], Any]) -> None:
        super().__init__(file)
        self._resolve = resolve

    def persistent_load(self, ref: Ref) -> Any:
        return self._resolve(ref)


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
    backend = obj._dc_backend_id
    return (obj._dc_id.bytes, class_path(type(obj)), backend.bytes if backend else b"")
