"""A model whose class info (GetClassInfo) names the machinery of a client's stub class: what a
rogue backend could answer. Only its class info is used; it is never instantiated."""
from __future__ import annotations

from dataclay import DataClayObject, activemethod


class Shapeshifter(DataClayObject):
    value: int

    @activemethod
    def __getattribute__(self, name: str):  # installed on a stub: every attribute read goes remote
        return object.__getattribute__(self, name)

    @activemethod
    def make_persistent(self):  # installed on a stub: creating one calls the backend instead
        return None

    @activemethod
    def __del__(self):  # installed on a stub: the garbage collector calls the backend
        return None
