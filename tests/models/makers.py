"""Model classes for tests/integration/test_created_objects_edges.py: objects that create, hold and hand out others."""
from __future__ import annotations

import asyncio

from dataclay import DataClayObject, activemethod


class Decoy(DataClayObject):
    """Any other model class: what a hostile client names in a by-value pickle."""

    value: int = 0


class Maker(DataClayObject):
    value: int = 0
    held: list = []
    child: object = None

    @activemethod
    def __init__(self, value: int = 0) -> None:
        self.value = value
        self.held = []

    @activemethod
    def take(self, item) -> int:
        """Ignores its argument."""
        return self.value

    @activemethod
    def create_keep_and_wait(self, value: int, release: str) -> int:
        """Creates an object, keeps it in a property, then waits (no call out, which would
        store it first) until the file `release` exists (at most 60 s)."""
        import os
        import time

        self.child = Maker(value)
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
        return value

    @activemethod
    def a_value_sync(self) -> int:
        return self.value

    @activemethod
    def create_mutate_after_settle(self, other: "Maker") -> "Maker":
        """Creates an object, takes its list, calls another backend (which stores the new
        object first), then changes the list in place: a change of this call, as any other."""
        child = Maker(1)
        items = child.held
        other.a_value_sync()
        items.append(5)
        return child

    @activemethod
    def create_and_give_from_a_thread(self, other: "Maker", value: int) -> int:
        """Creates an object and hands it to `other` from a worker thread (fan-out)."""
        from concurrent.futures import ThreadPoolExecutor

        child = Maker(value)
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(other.read_value_of, child).result()

    @activemethod
    def read_value_of(self, item: "Maker") -> int:
        return item.value

    @activemethod
    def create_and_find(self, value: int) -> int:
        """Creates an object, then asks the directory for it by id (dataClay: it is registered)."""
        child = Maker(value)
        return Maker.get_by_id(child.id).value

    @activemethod
    async def a_create_and_give(self, other: "Maker", value: int) -> int:
        """An async method: creates an object and hands it to `other` (on another backend)."""
        child = Maker(value)
        return await other.a_hold(child)

    @activemethod
    async def a_hold(self, item) -> int:
        self.held = self.held + [item]
        return len(self.held)

    @activemethod
    async def a_quick(self) -> int:
        await asyncio.sleep(0)
        return self.value


class FailingInit(DataClayObject):
    """An __init__ that makes a sub-object visible (an alias: it is stored and registered
    then), then fails."""

    value: int = 0

    @activemethod
    def __init__(self, alias: str) -> None:
        helper = Decoy()
        helper.value = 41
        helper.add_alias(alias)
        raise ValueError("the constructor fails after making a sub-object visible")


class FailingInitQuietly(DataClayObject):
    """An __init__ that creates a sub-object (not made visible to anyone), then fails."""

    value: int = 0
    helper: Decoy | None = None

    @activemethod
    def __init__(self) -> None:
        self.helper = Decoy()
        self.helper.value = 41
        raise ValueError("the constructor fails")


class BadInit(DataClayObject):
    value: int = 0

    @activemethod
    def __init__(self, value: int) -> None:
        self.value = value
        raise ValueError("half built")


class Builder(DataClayObject):
    value: int = 0

    @activemethod
    def try_build(self) -> bool:
        """dataClay code that tries a constructor and carries on if it fails."""
        try:
            BadInit(1)
        except ValueError:
            return False
        return True
