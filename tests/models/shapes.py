"""Model classes that exercise references, graphs, errors and async methods."""
from __future__ import annotations

import asyncio

from dataclay import DataClayObject, activemethod


class PayrollError(Exception):
    """A user exception: must arrive on the client as itself."""

    def __init__(self, message: str, amount: float) -> None:
        super().__init__(message, amount)
        self.amount = amount


class Node(DataClayObject):
    value: int
    next: Node | None = None
    children: list = []

    @activemethod
    def __init__(self, value: int, next: Node | None = None) -> None:
        self.value = value
        self.next = next
        self.children = []

    @activemethod
    def add_child(self, child: Node) -> int:
        self.children = self.children + [child]
        return len(self.children)

    @activemethod
    def append_in_place(self, child: Node) -> int:
        self.children.append(child)  # mutation without assignment must be persisted too
        return len(self.children)

    @activemethod
    def push_into(self, other: Node, value: int) -> int:
        """Changes another (local) object in place, through a property read."""
        other.children.append(value)
        return len(other.children)

    @activemethod
    def ask_about_me(self, other: Node) -> int:
        """other, on another backend, reads a list property of self while self's call runs."""
        return other.count_children_of(self)

    @activemethod
    def count_children_of(self, other: Node) -> int:
        return len(other.children)

    @activemethod
    def peek(self) -> int:
        return len(self.children)

    @activemethod
    def chain_sum(self) -> int:
        """Walks the chain: each hop runs where that node lives."""
        return self.value + (self.next.chain_sum() if self.next is not None else 0)

    @activemethod
    def spawn(self, value: int) -> Node:
        """Creates a node on this backend and returns it."""
        child = Node(value)
        self.children = self.children + [child]
        return child

    @activemethod
    def spawn_in_place(self, value: int) -> int:
        """Creates a node and appends it in place (no assignment)."""
        self.children.append(Node(value))
        return len(self.children)

    @activemethod
    def make_orphan(self, value: int) -> Node:
        return Node(value)

    @activemethod
    def create_and_look(self, value: int) -> tuple:
        """Creates a node and says, inside the method, whether it is persistent and where."""
        child = Node(value)
        return child.is_persistent, child._dc_backend_id, set(child.backends), child

    @activemethod
    def create_and_give(self, other: Node, value: int, then: Node | None = None) -> Node:
        """Creates a node, hands it to `other`, changes it afterwards, then (if given) reads
        `then`: other must hold the node itself, not a copy."""
        child = Node(value)
        other.add_child(child)
        child.value = value + 100
        if then is not None:
            then.peek()
        return child

    @activemethod
    def create_and_move(self, value: int, backend_id: str) -> Node:
        """Creates a node and moves it away from within the method."""
        child = Node(value)
        child.move(backend_id)
        return child

    @activemethod
    def create_with_alias(self, value: int, alias: str) -> bool:
        """dataClay's pattern: create, then make_persistent(alias=...) inside the method."""
        child = Node(value)
        was_persistent = child.is_persistent
        child.make_persistent(alias=alias)
        return was_persistent

    @activemethod
    def where(self) -> str:
        from dataclay.runtime import current_runtime

        return str(current_runtime().local_backend_id)

    @activemethod
    def fail(self, amount: float) -> None:
        raise PayrollError("budget exceeded", amount)

    @activemethod
    def fail_builtin(self) -> None:
        raise ValueError("bad value inside active method")

    @activemethod
    def poke_back(self, other: Node) -> int:
        """Calls `other`, which calls back into self: a chain crossing backends twice."""
        return other.read_value_of(self)

    @activemethod
    def read_value_of(self, other: Node) -> int:
        return other.bump()

    @activemethod
    def bump(self) -> int:
        self.value += 1
        return self.value

    @activemethod
    def bump_and_replicate(self, backend_id: str) -> None:
        """Changes itself, then asks for its own replica within the same call."""
        self.value += 1
        self.new_replica(backend_id=backend_id)

    @activemethod
    def bump_all_and_move(self, backend_id: str) -> int:
        """Changes itself and every child, then moves them all from within this call."""
        for child in self.children:
            child.bump()
        self.value += 1
        return self.move(backend_id, recursive=True).objects

    @activemethod
    async def slow_double(self, delay: float) -> int:
        await asyncio.sleep(delay)
        self.value *= 2
        return self.value


class Blob(DataClayObject):
    data: bytes

    @activemethod
    def __init__(self, data: bytes) -> None:
        self.data = data

    @activemethod
    def size(self) -> int:
        return len(self.data)


class Photo(DataClayObject):
    """A large value with plain companions (make_persistent sends the largest as the message)."""

    title: str
    taken: int
    pixels: bytes
    thumbnail: bytes = b""
    owner: Node | None = None

    @activemethod
    def __init__(self, title: str, taken: int, pixels: bytes, thumbnail: bytes = b"", owner: Node | None = None) -> None:
        self.title, self.taken, self.pixels, self.thumbnail, self.owner = title, taken, pixels, thumbnail, owner

    @activemethod
    def describe(self) -> tuple:
        return self.title, self.taken, len(self.pixels), len(self.thumbnail)


class Bild(DataClayObject):
    """A property whose name is not ASCII (it travels in call metadata when raw)."""

    größe: bytes
