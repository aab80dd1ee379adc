"""AlienDataClayObject (dataClay 4's API): an object of a class that is not a DataClayObject
(a dict, a list, a configured value type such as a numpy array) made persistent, its methods
run where it lives.

    prices = AlienDataClayObject({"apple": 1})
    prices.make_persistent(alias="prices")
    prices.update({"pear": 2}); prices["fig"] = 3; len(prices)   # on the backend

`AlienDataClayObject(obj)` is an instance of the alien class of `type(obj)`: a DataClayObject
subclass, made once per wrapped class, whose one persistent property is the wrapped object and
whose active methods forward to its public methods (and to the container protocol: [], len,
in); the DataClayObject API (make_persistent, move, ...) wins over a method of the same name.
Its other public attributes are read through `__getattr__`. Only types the allow-list lets
peers send can be wrapped (`dataclay.serialization.value_class`; DC_PICKLE_ALLOW adds yours),
since the backends unpickle the object; backends import the alien class by its class path,
which names the wrapped class (`Alien_<module>_c<QualName>`, escaped).
"""
from __future__ import annotations

import threading
from typing import Any, Callable, ClassVar

from dataclay.dataclay_object import DataClayObject, PersistentProperty, activemethod
from dataclay.serialization import value_class

ALIEN_PREFIX = "Alien_"
BASE = "_dc_alien_base"  # the one persistent property: the wrapped object
CONTAINER_METHODS = frozenset({"__getitem__", "__setitem__", "__delitem__", "__len__", "__contains__"})
# Methods never forwarded: numpy.ndarray's write files on the backend's disk.
DENIED_METHODS = frozenset({"tofile", "dump"})

_CLASSES: dict[type, type["AlienDataClayObject"]] = {}
_LOCK = threading.Lock()


def _escape(text: str) -> str:
    return text.replace("_", "_u").replace(".", "_d")


def _unescape(text: str) -> str:
    out, index = [], 0
    while index < len(text):
        if text[index] == "_" and index + 1 < len(text):
            out.append({"u": "_", "d": "."}.get(text[index + 1], "\0"))
            index += 2
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


def _forward(name: str) -> Callable[..., Any]:
    def method(self: "AlienDataClayObject", *args: Any, **kwargs: Any) -> Any:
        return getattr(getattr(self, BASE), name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return activemethod(method)


class AlienDataClayObject(DataClayObject):
    """Base of alien classes; `AlienDataClayObject(obj)` wraps obj."""

    _dc_alien_class: ClassVar[type | None] = None

    def __new__(cls, obj: Any = None, *args: Any, **kwargs: Any) -> "AlienDataClayObject":
        target = cls if cls._dc_alien_class is not None else alien_class(type(obj))
        instance = DataClayObject.__new__(target)
        instance.__dict__[BASE] = obj  # a new object's properties are its __dict__'s
        return instance

    def __init__(self, obj: Any = None, *args: Any, **kwargs: Any) -> None:
        """The wrapped object is set by __new__."""

    @activemethod
    def _dc_alien_attribute(self, name: str) -> Any:
        """A public attribute of the wrapped object that is not a method (e.g. an array's shape)."""
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(getattr(self, BASE), name)
        if callable(value):
            raise AttributeError(f"{name!r} of {type(getattr(self, BASE)).__qualname__} is a method not forwarded")
        return value

    def __getattr__(self, name: str) -> Any:  # only for names the class does not have
        if name.startswith("_") or type(self)._dc_alien_class is None:
            raise AttributeError(name)
        return self._dc_alien_attribute(name)


setattr(AlienDataClayObject, BASE, PersistentProperty(BASE))
AlienDataClayObject._dc_properties = (BASE,)


def alien_class(wrapped: type) -> type[AlienDataClayObject]:
    """The alien class of `wrapped` (one per class in this process); ClassNotAllowedError if
    peers may not send instances of it."""
    value_class(wrapped.__module__, wrapped.__qualname__)
    with _LOCK:
        found = _CLASSES.get(wrapped)
        if found is None:
            name = f"{ALIEN_PREFIX}{_escape(wrapped.__module__)}_c{_escape(wrapped.__qualname__)}"
            namespace: dict[str, Any] = {"__module__": __name__, "__qualname__": name, "_dc_alien_class": wrapped}
            for attr in dir(wrapped):
                public = not attr.startswith("_") or attr in CONTAINER_METHODS
                if (public and attr not in DENIED_METHODS and not hasattr(DataClayObject, attr)
                        and callable(getattr(wrapped, attr, None))):
                    namespace[attr] = _forward(attr)
            found = _CLASSES[wrapped] = type(name, (AlienDataClayObject,), namespace)
    return found


def __getattr__(name: str) -> type[AlienDataClayObject]:
    """`dataclay.alien.Alien_...`: how a backend (or a client) imports an alien class by the
    class path in a request or a reference (dataclay.serialization.import_class)."""
    if name.startswith(ALIEN_PREFIX) and "_c" in name:
        module, _, qualname = name[len(ALIEN_PREFIX):].partition("_c")
        return alien_class(value_class(_unescape(module), _unescape(qualname)))
    raise AttributeError(name)
