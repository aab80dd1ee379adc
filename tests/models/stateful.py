"""Model classes with their own __getstate__ / __setstate__, as dataClay 4 users write them: a
cache and a file handle that are not stored, rebuilt by __setstate__ wherever the state lands."""
from __future__ import annotations

import os
import pathlib

from dataclay import DataClayObject, activemethod


class Catalogue(DataClayObject):
    """`entries` is stored; `_index` (value -> key) is a cache rebuilt by __setstate__;
    `scratch` is a property __getstate__ leaves out, so it is never stored."""

    entries: dict
    scratch: str | None = None

    @activemethod
    def __init__(self, entries: dict) -> None:
        self.entries = dict(entries)
        self._index = {value: key for key, value in self.entries.items()}

    def __getstate__(self) -> dict:
        return {"entries": self.entries, "format": 2}

    def __setstate__(self, state: dict) -> None:
        assert state["format"] == 2
        self.entries = state["entries"]
        self._index = {value: key for key, value in self.entries.items()}
        self.restored = getattr(self, "restored", 0) + 1

    @activemethod
    def key_of(self, value: str) -> str:
        return self._index[value]  # AttributeError if __setstate__ did not run here

    @activemethod
    def add(self, key: str, value: str) -> None:
        self.entries[key] = value
        self._index[value] = key

    @activemethod
    def times_restored(self) -> int:
        return self.__dict__.get("restored", 0)


class Journal(DataClayObject):
    """Holds an open file (never picklable): __getstate__ stores the path and what was
    written, __setstate__ opens the file again where the object lands."""

    path: str
    lines: list

    @activemethod
    def __init__(self, path: str) -> None:
        self.path = path
        self.lines = []
        self._file = open(path, "a")

    def __getstate__(self) -> tuple:
        return (self.path, list(self.lines))

    def __setstate__(self, state: tuple) -> None:
        self.path, self.lines = state[0], list(state[1])
        self._file = open(self.path, "a")

    @activemethod
    def write(self, line: str) -> int:
        self._file.write(line + "\n")
        self._file.flush()
        self.lines = self.lines + [line]
        return os.getpid()

    @activemethod
    def count(self) -> int:
        return len(self.lines)


class LeaksAPath(DataClayObject):
    """__getstate__ returns a value outside the allow-list: it must be refused, not stored."""

    name: str

    @activemethod
    def __init__(self, name: str) -> None:
        self.name = name

    def __getstate__(self) -> dict:
        return {"where": pathlib.PurePosixPath("/tmp") / self.name}

    def __setstate__(self, state: dict) -> None:
        self.name = state["where"].name


class Gossip(DataClayObject):
    """__setstate__ calls another persistent object, which a state hook may not do (it runs
    while the backend loads the object): refused, typed, rather than risking a deadlock."""

    friend: DataClayObject

    @activemethod
    def __init__(self, friend: DataClayObject) -> None:
        self.friend = friend

    def __setstate__(self, state: dict) -> None:
        self.friend = state["friend"]
        self.friend_is_at = self.friend.where()

    @activemethod
    def ping(self) -> str:
        return "pong"
