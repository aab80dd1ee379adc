"""StubDataClayObject (dataClay 4's API): persistent objects of a model class this process does
not have, used by class name.

    PersonStub = StubDataClayObject["family.Person"]
    alice = PersonStub(name="Alice", age=30)   # created on a backend, its @activemethod __init__ run there
    alice.age = 31; alice.add_year()           # properties and active methods, on the backend
    PersonStub.get_by_alias("alice")

A stub class is made once per class path; what it has (persistent properties, active methods) is
asked of a backend the first time it is needed (GetClassInfo), and installed as the same
descriptors and methods model classes use, so a stub is an ordinary proxy. A reference this client
receives to a class it cannot import is a stub too (Runtime.instance), so stubs reference each
other. Nothing is executed here: the class's code runs on the backends only.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, ClassVar

from dataclay import operations as ops
from dataclay.dataclay_object import DataClayObject, PersistentProperty
from dataclay.exceptions import InvalidRequestError, ResourceExhaustedError
from dataclay.runtime import current_runtime
from dataclay.transport import run_blocking

_STUBS: dict[str, type["StubDataClayObject"]] = {}
_LOCK = threading.Lock()
# Bounds on what the network can make this process keep: a class path as long as a backend takes
# (validation.MAX_CLASS_PATH), and as many stub classes as a client plausibly uses.
MAX_CLASS_PATH = 512
MAX_STUB_CLASSES = 10_000


class _StubClass(type):
    def __getitem__(cls, class_path: str) -> type["StubDataClayObject"]:
        return stub_class(class_path)


def stub_class(class_path: str) -> type["StubDataClayObject"]:
    """The stub class of "package.module.Class" (one per class path in this process)."""
    parts = class_path.split(".") if isinstance(class_path, str) and len(class_path) <= MAX_CLASS_PATH else []
    if len(parts) < 2 or not all(part.isidentifier() for part in parts):
        raise InvalidRequestError(f"a stub needs a class path package.module.Class of at most {MAX_CLASS_PATH} "
                                  f"characters, not {str(class_path)[:200]!r}")
    with _LOCK:
        found = _STUBS.get(class_path)
        if found is None:
            if len(_STUBS) >= MAX_STUB_CLASSES:
                raise ResourceExhaustedError(
                    f"this process already has {MAX_STUB_CLASSES} stub classes (one per class it cannot import); "
                    f"refusing a stub of {class_path[:200]!r}: put the model on the client's path instead")
            module, qualname = class_path.rsplit(".", 1)
            # __module__ and __qualname__ make class_path(stub) the model's: references and
            # requests name the real class, which the backends import.
            found = _STUBS[class_path] = _StubClass(qualname, (StubDataClayObject,), {
                "__module__": module, "__qualname__": qualname, "_dc_stub_path": class_path})
    return found


#: Not installable even though StubDataClayObject lacks it: the garbage collector would call a backend.
_NEVER_INSTALLED = frozenset({"__del__"})


def _check_class_info(class_path: str, properties: list[str], methods: list[str]) -> None:
    """A backend's answer is data from the network: every name it puts on a stub class must be an
    identifier that replaces nothing the stub is made of (its attribute access, its API, dataClay's
    own `_dc_` names); properties are never dunders. Otherwise nothing is installed."""
    def refused(name: str, is_property: bool) -> bool:
        if not name.isidentifier() or name.startswith("_dc_") or name in _NEVER_INSTALLED:
            return True
        if is_property:
            return name.startswith("__") or hasattr(StubDataClayObject, name)
        return name != "__init__" and hasattr(StubDataClayObject, name)

    bad = [name for name in properties if refused(name, True)] + [name for name in methods if refused(name, False)]
    if bad:
        shown = ", ".join(repr(name[:60]) for name in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise InvalidRequestError(
            f"the class info of {class_path} from a backend names {shown}, which a stub cannot have (not an "
            "identifier, or it would replace the stub's own attributes): nothing was installed; check the "
            "model's names, or the backends of this cluster")


def _remote_method(name: str) -> Callable[..., Any]:
    def method(self: DataClayObject, *args: Any, **kwargs: Any) -> Any:
        rt = current_runtime()
        return run_blocking(ops.call_method(rt, rt.blocking, self, name, args, kwargs))

    method.__name__ = name
    return method


class StubDataClayObject(DataClayObject, metaclass=_StubClass):
    """Base of stub classes; use `StubDataClayObject["package.module.Class"]`."""

    _dc_stub_path: ClassVar[str | None] = None
    _dc_stub_methods: ClassVar[frozenset[str] | None] = None  # None: not asked yet

    @classmethod
    def _dc_stub_learn(cls) -> None:
        """Ask a backend what the class has, once, and install it."""
        if cls._dc_stub_path is None:
            raise TypeError('name the class first: StubDataClayObject["package.module.Class"]')
        if cls._dc_stub_methods is not None:
            return
        rt = current_runtime()
        properties, methods = run_blocking(ops.class_info(rt, rt.blocking, cls._dc_stub_path))
        _check_class_info(cls._dc_stub_path, properties, methods)
        with _LOCK:
            if cls._dc_stub_methods is not None:
                return
            for name in properties:
                setattr(cls, name, PersistentProperty(name))
            for name in methods:
                if name != "__init__":
                    setattr(cls, name, _remote_method(name))
            cls._dc_properties = tuple(properties)
            cls._dc_stub_methods = frozenset(methods)

    def __new__(cls, *args: Any, **kwargs: Any) -> "StubDataClayObject":
        """A new object made on a backend by its class's __init__ (an @activemethod), in one
        request there: if __init__ fails, nothing is stored. Returns its proxy."""
        cls._dc_stub_learn()
        rt = current_runtime()
        return run_blocking(ops.create_object(rt, rt.blocking, cls._dc_stub_path, args, kwargs))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The object was made by __new__, on the backend."""

    def __getattr__(self, name: str) -> Any:  # only for names not found otherwise
        cls = type(self)
        if name.startswith("_") or cls._dc_stub_path is None:
            raise AttributeError(name)
        if cls._dc_stub_methods is None:
            cls._dc_stub_learn()
            return getattr(self, name)
        raise AttributeError(f"{cls._dc_stub_path} has no persistent property or active method {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        cls = type(self)
        if not name.startswith("_") and cls._dc_stub_path is not None:
            cls._dc_stub_learn()
            if name not in cls._dc_properties:
                raise AttributeError(f"{cls._dc_stub_path} has no persistent property {name!r}")
        object.__setattr__(self, name, value)
