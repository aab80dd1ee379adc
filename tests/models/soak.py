"""The model of the randomized fault test (tests/integration/test_fault_soak.py).

`SoakCounter`: increments that return the new value (checked for linearizability), children
created inside a call (by assignment or appended in place), each of which must stay resolvable.
`SoakBox`: a plain register, written by attribute assignment (and versioned and consolidated).
`where()` answers which backend runs the call: the owner that serves the object.
"""
from __future__ import annotations

from dataclay import DataClayObject, activemethod


def _here() -> str:
    from dataclay.runtime import current_runtime

    return str(current_runtime().local_backend_id)


class SoakChild(DataClayObject):
    tag: int

    @activemethod
    def __init__(self, tag: int) -> None:
        self.tag = tag

    @activemethod
    def ping(self) -> int:
        return self.tag

    @activemethod
    def where(self) -> str:
        return _here()


class SoakCounter(DataClayObject):
    value: int
    children: list = []

    @activemethod
    def __init__(self, value: int = 0) -> None:
        self.value = value
        self.children = []

    @activemethod
    def increment(self) -> int:
        self.value += 1
        return self.value

    @activemethod
    def spawn(self, tag: int) -> SoakChild:
        """A child created inside the call (registered on this backend), kept by assignment."""
        child = SoakChild(tag)
        self.children = self.children + [child]
        return child

    @activemethod
    def spawn_in_place(self, tag: int) -> int:
        """A child created inside the call, appended in place (no assignment)."""
        self.children.append(SoakChild(tag))
        return len(self.children)

    @activemethod
    def where(self) -> str:
        return _here()


class SoakBox(DataClayObject):
    value: str

    @activemethod
    def __init__(self, value: str) -> None:
        self.value = value

    @activemethod
    def where(self) -> str:
        return _here()
