"""A model the stub tests' client does not have: only the backends import it."""
from __future__ import annotations

from dataclay import DataClayObject, activemethod


class Person(DataClayObject):
    name: str
    age: int
    spouse: Person | None

    @activemethod
    def __init__(self, name: str, age: int) -> None:
        self.name = name
        self.age = age
        self.spouse = None

    @activemethod
    def add_year(self) -> int:
        self.age += 1
        return self.age

    @activemethod
    def marry(self, other: Person) -> None:
        self.spouse = other
        other.spouse = self
