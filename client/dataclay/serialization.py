"""Payload encoding: pickle, with every DataClayObject written as a reference, and nothing
received is executed.

A reference is a `Ref` (object id bytes, class path, owner backend id bytes or b""); on the wire
it is pickle's persistent id, a plain tuple of those three (a NamedTuple would be pickled as a
reference to its class). What a reference to a not-yet-persistent object means is the caller's
decision (`on_object`): the client persists it first, a backend adopts it as its own. The
reader turns references back into the one instance per object id of its process (`resolve`).

Reading is restricted (backends, clients and the operator alike: every payload a peer sends,
states, arguments, results, staged writes, moved objects, goes through `loads`). A pickle can
only name globals from this allow-list; anything else raises `ClassNotAllowedError` (an
`InvalidRequestError`, so a server answers INVALID_ARGUMENT) naming the global and how to allow
it, and nothing is called:

- plain values: `int float complex str bytes bytearray bool None list tuple dict set frozenset
  slice range` (and `Ellipsis`, `NotImplemented`); every builtin exception class;
  `uuid.UUID` (`uuid.SafeUUID`), `datetime.date/time/datetime/timedelta/timezone`,
  `decimal.Decimal`, `fractions.Fraction`, `collections.OrderedDict/deque/defaultdict/Counter`
  (`STATIC_GLOBALS`). Protocol 5 needs no copyreg helper for these: objects are built with the
  NEWOBJ opcode from their class, which must itself be allowed.
- model classes: a class that is a `DataClayObject` subclass, an `enum.Enum` subclass or an
  exception class, looked up by its own `module.QualName` (the name it was pickled under). The
  rule is by kind, not by folder: whatever the process can import as a model is a model, and
  only those three kinds of class are ever called (a DataClayObject travels as a reference
  anyway; an Enum is looked up by value; an exception is built from its args). A standard
  library module is never imported because a peer named it (some have effects on import); one
  that is already imported can be looked up.
- configured extras, for user types such as numpy arrays: `DC_PICKLE_ALLOW`, comma-separated
  `module.QualName` entries, or `module.*` for everything in a module and its submodules (e.g.
  `DC_PICKLE_ALLOW="numpy.ndarray,numpy.dtype,numpy.core.multiarray._reconstruct"`). Read once,
  here, by every process (`dataclay up` passes its environment to the servers); a client can
  also call `allow_globals(...)`. Set it the same on clients and servers.

Class paths in requests and references (`import_class`) resolve only to DataClayObject
subclasses. Exceptions never travel pickled: see `dataclay.exceptions.to_detail`.
"""
from __future__ import annotations

import builtins
import contextvars
import functools
import importlib
import io
import os
import pickle
import re
import sys
import uuid
from functools import lru_cache
from typing import IO, Any, Callable, Iterable, NamedTuple

from dataclay.exceptions import ClassNotAllowedError, ClassNotFoundError, InvalidRequestError

PROTOCOL = 5
ALLOW_ENV = "DC_PICKLE_ALLOW"
# Values that cannot change without an assignment (references to objects count as such).
IMMUTABLE_TYPES = frozenset({int, float, complex, str, bytes, bool, type(None), uuid.UUID})


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


_CLASS_PATH = "_dc_class_path"  # in a class's own __dict__: (__module__, __qualname__, path)


def class_path(cls: type) -> str:
    """"package.module.Class". One string per class: a state that references many objects of a
    class writes the path once and then pickle's memo of it (2 bytes), and reading it back makes
    one string, not one per reference (a root of 100,000 employees: about 20% fewer bytes).
    Kept in the class itself, not in a table keyed by classes: no class is kept alive or hashed
    (a metaclass may define __eq__), and a class renamed since (__module__ or __qualname__
    assigned, as a decorator may) gets its new path."""
    module, qualname = cls.__module__, cls.__qualname__
    known = cls.__dict__.get(_CLASS_PATH)
    if known is not None and known[0] is module and known[1] is qualname:
        return known[2]
    path = sys.intern(f"{module}.{qualname}")
    try:
        type.__setattr__(cls, _CLASS_PATH, (module, qualname, path))
    except (TypeError, AttributeError):  # a built-in type (an exception's class): not kept
        pass
    return path


# ------------------------------------------------------------------ the allow-list

STATIC_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [("builtins", name) for name in (
        "int", "float", "complex", "str", "bytes", "bytearray", "bool", "list", "tuple", "dict",
        "set", "frozenset", "slice", "range", "Ellipsis", "NotImplemented")]
    + [("builtins", name) for name, value in vars(builtins).items()
       if isinstance(value, type) and issubclass(value, BaseException)]
    + [("uuid", "UUID"), ("uuid", "SafeUUID")]
    + [("datetime", name) for name in ("date", "time", "datetime", "timedelta", "timezone")]
    + [("decimal", "Decimal"), ("fractions", "Fraction")]
    + [("collections", name) for name in ("OrderedDict", "deque", "defaultdict", "Counter")]
    + [("dataclay.exceptions", "_rebuild")]  # a DataClayException by value: only our classes, text fields
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_SHOWN = 200  # characters of a refused name shown in an error: never echo unbounded input


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


class _Extras:
    """The configured extra globals: exact `module.QualName` entries and `module.*` prefixes."""

    def __init__(self) -> None:
        self.exact: set[str] = set()
        self.prefixes: tuple[str, ...] = ()

    def add(self, entries: Iterable[str]) -> None:
        prefixes = list(self.prefixes)
        for entry in entries:
            entry = entry.strip()
            if not entry:
                continue
            if entry.endswith(".*") and _NAME.match(entry[:-2]):
                prefixes.append(entry[:-2])
            elif _NAME.match(entry) and "." in entry:
                self.exact.add(entry)
            else:
                raise ValueError(f"{ALLOW_ENV}: {entry!r} is neither module.QualName nor module.*")
        self.prefixes = tuple(prefixes)

    def allows(self, module: str, name: str) -> bool:
        if f"{module}.{name}" in self.exact:
            return True
        return self.prefix_of(module) is not None

    def prefix_of(self, module: str) -> str | None:
        for prefix in self.prefixes:
            if module == prefix or module.startswith(prefix + "."):
                return prefix
        return None


_extras = _Extras()
_extras.add(os.environ.get(ALLOW_ENV, "").split(","))
# Globals found allowed, by (module, name): find_class is asked once per global per pickle
# (pickle memoizes them), and answered from here after the first time in this process.
_allowed: dict[tuple[str, str], Any] = {}


def allow_globals(*entries: str) -> None:
    """Allow more globals in this process, as DC_PICKLE_ALLOW does (`module.QualName` or
    `module.*`). Servers read DC_PICKLE_ALLOW only: set it where they run too."""
    _extras.add(entries)


def _not_allowed(what: str, path: str) -> ClassNotAllowedError:
    path = _shown(path)
    return ClassNotAllowedError(
        f"{what} {path} is not allowed in data received from a peer (it is not a DataClayObject "
        f"subclass, an Enum, an exception or a plain value type); if it is a plain value type of "
        f"yours, allow it on clients and servers with {ALLOW_ENV}={path} (comma-separated; "
        f"module.* allows a whole module)",
        class_path=path,
    )


def _lookup(module: str, qualname: str) -> Any:
    """module.qualname, importing the module if it is not imported yet, unless it belongs to the
    standard library. LookupError if it is not there."""
    if not (_NAME.match(module) and _NAME.match(qualname)):
        raise LookupError(module)
    target = sys.modules.get(module)
    if target is None or getattr(getattr(target, "__spec__", None), "_initializing", False):
        # Not imported, or another thread is still running its body: import_module waits for
        # that thread's import (its module lock) instead of reading a half-initialised module.
        if target is None and module.partition(".")[0] in sys.stdlib_module_names:
            raise LookupError(module)
        try:
            target = importlib.import_module(module)
        except ImportError:
            raise LookupError(module) from None
    for name in qualname.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise LookupError(qualname) from None
    return target


def _is_own(cls: Any, module: str, qualname: str) -> bool:
    """cls is a class named by its own module and qualname (not reached through another
    module's attributes)."""
    return isinstance(cls, type) and cls.__module__ == module and cls.__qualname__ == qualname


def _dataclay_object() -> type:
    from dataclay.dataclay_object import DataClayObject  # deferred: that module imports this one

    return DataClayObject


def _allowed_global(module: str, name: str) -> Any:
    """What find_class returns for an allowed global (and remembers); ClassNotAllowedError
    otherwise, having called nothing."""
    if (module, name) in STATIC_GLOBALS or _extras.allows(module, name):
        if not _NAME.match(name) or any(part.startswith("__") for part in name.split(".")):
            raise _not_allowed("global", f"{module}.{name}")
        try:  # named by us or by the configuration: import as pickle does
            found = importlib.import_module(module)
            for part in name.split("."):
                found = getattr(found, part)
        except (ImportError, AttributeError):
            raise ClassNotFoundError(f"global {_shown(module)}.{_shown(name)} (allowed) cannot be imported here",
                                     class_path=_shown(f"{module}.{name}")) from None
        prefix = None if (module, name) in STATIC_GLOBALS or f"{module}.{name}" in _extras.exact else _extras.prefix_of(module)
        owner = getattr(found, "__module__", None)
        if prefix is not None and not (isinstance(owner, str) and (owner == prefix or owner.startswith(prefix + "."))):
            raise _not_allowed("global", f"{module}.{name}")  # module.* allows what is defined there, not its imports
    else:
        import enum

        try:
            found = _lookup(module, name)
        except LookupError:
            raise _not_allowed("global", f"{module}.{name}") from None
        if not (_is_own(found, module, name)
                and (issubclass(found, (_dataclay_object(), BaseException))
                     or (issubclass(found, enum.Enum) and len(found.__members__) > 0))):  # no functional API
            raise _not_allowed("global", f"{module}.{name}")
    _allowed[(module, name)] = found
    return found


def value_class(module: str, qualname: str) -> type:
    """A plain value type peers may send (the builtin scalars and containers, the standard types
    above, DC_PICKLE_ALLOW's): what an AlienDataClayObject may wrap. ClassNotAllowedError for
    anything else (model classes, exceptions, functions)."""
    found = _allowed_global(module, qualname)
    if (not isinstance(found, type) or issubclass(found, (BaseException, _dataclay_object()))
            or (module, qualname) == ("dataclay.exceptions", "_rebuild")):
        raise _not_allowed("value type", f"{module}.{qualname}")
    return found


def exception_class(module: str, qualname: str) -> type[BaseException]:
    """The exception class module.qualname for rebuilding an error a peer reported: a builtin
    one, or one looked up as model classes are; ClassNotAllowedError otherwise."""
    try:
        found = _lookup(module, qualname)
    except LookupError:
        raise _not_allowed("exception class", f"{module}.{qualname}") from None
    if not (_is_own(found, module, qualname) and issubclass(found, BaseException)):
        raise _not_allowed("exception class", f"{module}.{qualname}")
    return found


@lru_cache(maxsize=None)
def import_class(path: str) -> type:
    """The DataClayObject subclass named "package.module.Class" (nested classes allowed), imported
    if needed: ClassNotFoundError if it is not there, ClassNotAllowedError if it is not a
    DataClayObject subclass (a class path from a peer never names anything else)."""
    parts = path.split(".") if _NAME.match(path) else []
    for split in range(len(parts) - 1, 0, -1):
        module_name, qualname = ".".join(parts[:split]), ".".join(parts[split:])
        try:
            target = _lookup(module_name, qualname)
        except LookupError:
            continue
        if _is_own(target, module_name, qualname) and issubclass(target, _dataclay_object()):
            return target
        raise _not_allowed("class", path)
    raise ClassNotFoundError(
        f"class {_shown(path)} cannot be imported here: put its module on the model path "
        "(dataclay up --model-path, or DC_MODEL_PATH)",
        class_path=_shown(path),
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
        # lookup less per reference read. (A malformed one fails in resolve: its class path goes
        # through import_class, its ids through UUID.)
        self.persistent_load = lambda pid: resolve(_tuple_new(Ref, pid))

    def find_class(self, module: str, name: str) -> Any:
        """Only globals of the allow-list (module docstring); asked once per global per pickle."""
        found = _allowed.get((module, name))
        if found is None:
            found = _allowed_global(module, name)
        return found


# Values that pickle to the same bytes with or without our Pickler (they hold no object): a
# call's result is most often one of these, and pickle.dumps skips making a Pickler for it.
_PLAIN_SCALARS = frozenset((type(None), bool, int, float, str))


def dumps(value: Any, on_object: Callable[[Any], Ref]) -> bytes:
    if type(value) in _PLAIN_SCALARS:
        return pickle.dumps(value, PROTOCOL)
    buffer = io.BytesIO()
    _Pickler(buffer, on_object).dump(value)
    return buffer.getvalue()


def dump(value: Any, file: IO[bytes], on_object: Callable[[Any], Ref]) -> None:
    """dumps() straight into a file: a large bytes value goes to the file without a copy."""
    _Pickler(file, on_object).dump(value)


# True while loads() reads a payload: what it builds is a value that arrived, never an object
# created by user code (a backend makes those persistent at once; dataclay.lifecycle.on_create).
DECODING: contextvars.ContextVar[bool] = contextvars.ContextVar("dataclay_decoding", default=False)


def loads(data: bytes, resolve: Callable[[Ref], Any]) -> Any:
    """Read what dumps() wrote, restricted to the allow-list (module docstring):
    ClassNotAllowedError for anything else, before anything it names is called."""
    token = DECODING.set(True)
    try:
        return _Unpickler(io.BytesIO(data), resolve).load()
    finally:
        DECODING.reset(token)


def _checked_ref(ref: Ref) -> None:
    """A reference read by check(): its class path must name a DataClayObject subclass."""
    if len(ref) != 3 or not isinstance(ref[1], str):
        raise pickle.UnpicklingError("a reference is (object id, class path, backend id)")
    import_class(ref[1])


def check(data: bytes) -> None:
    """Refuse `data` (from dumps, sent by a peer) unless it reads under the allow-list, its
    references naming DataClayObject classes only: ClassNotAllowedError or ClassNotFoundError
    naming what is refused, InvalidRequestError if it is not a pickle. Lets a receiver that
    keeps bytes for later (a move's destination) refuse them on arrival rather than when
    they are first loaded; nothing outside the allow-list is called (it is the same restricted
    unpickler), and it costs one C unpickle (about 1 us per small state)."""
    try:
        loads(data, _checked_ref)
    except (ClassNotAllowedError, ClassNotFoundError):
        raise
    except Exception as exc:
        raise InvalidRequestError(f"not a valid state: {type(exc).__name__}: {_shown(str(exc))}") from None



def may_reference(data: bytes) -> bool:
    """False only if `data` (from dumps) certainly holds no reference: every reference is
    written with the BINPERSID opcode, so a state without that byte has none. Lets a walk
    over many states skip unpickling most of them."""
    return pickle.BINPERSID in data


# The bytes of each backend id references name, one object each (as class_path's strings, so
# pickle writes them once per state). Bounded, since a hint may come from anyone's payload: when
# full it starts again (a payload full of made-up owners costs only the memo, never memory).
_BACKEND_BYTES: dict[uuid.UUID, bytes] = {}
_BACKEND_BYTES_KEPT = 1024


def _backend_bytes(backend: uuid.UUID) -> bytes:
    raw = _BACKEND_BYTES.get(backend)
    if raw is None:
        raw = backend.bytes
        if len(_BACKEND_BYTES) >= _BACKEND_BYTES_KEPT:
            _BACKEND_BYTES.clear()
        _BACKEND_BYTES[backend] = raw
    return raw


def make_ref(obj: Any) -> Ref:
    """The reference to a registered object, naming the owner this process knows."""
    backend = obj._dc_backend_id  # lifecycle.BACKEND and ID read as attributes: faster than via __dict__
    return _tuple_new(Ref, (obj._dc_id.bytes, class_path(type(obj)), _backend_bytes(backend) if backend else b""))
