"""A class's own __getstate__ / __setstate__ in dataclay.lifecycle: what is stored of it, how a
stored state comes back (on a loaded persistent object, with plain attribute access: no
runtime is started here, so any lock or "changed" mark would fail), and that classes without
them keep their properties as the state."""
import uuid

import pytest

from dataclay import DataClayObject
from dataclay import lifecycle as lc
from hr import Employee

BACKEND = uuid.uuid4()


class Cached(DataClayObject):
    items: list

    def __getstate__(self):
        return {"items": self.items, "_dc_id": "never stored", **self.__dict__}

    def __setstate__(self, state):
        self.items = state["items"]
        self.total = sum(self.items)


class OnlyGetstate(DataClayObject):
    label: str

    def __getstate__(self):
        return {"label": self.label.upper(), "note": "kept"}


class OnlySetstate(DataClayObject):
    label: str

    def __setstate__(self, state):
        self.label = state["label"] + "!"


class OpaqueState(DataClayObject):
    label: str

    def __getstate__(self):
        return (self.label,)


def _loaded(obj):
    lc.registered_here(obj, BACKEND, 1)
    return obj


def test_classes_without_hooks_store_their_properties_at_no_extra_cost():
    assert (Employee._dc_getstate, Employee._dc_restore) == (None, None)
    obj = _loaded(Employee("ann", 1.0))
    assert lc.persisted_state(obj) == {"name": "ann", "salary": 1.0}


def test_what_getstate_returns_is_stored_without_the_lifecycle_keys():
    obj = _loaded(Cached())
    obj.__dict__["items"] = [1, 2]
    stored = lc.persisted_state(obj)[lc.OWN_STATE]
    assert stored["items"] == [1, 2] and not any(name.startswith("_dc_") for name in stored)


def test_setstate_runs_when_a_persistent_object_loads_with_plain_attribute_access():
    obj = _loaded(Cached())
    lc.unload(obj)
    lc.load(obj, {lc.OWN_STATE: {"items": [3, 4]}}, 7)
    assert obj.__dict__["items"] == [3, 4] and obj.total == 7
    assert (obj.__dict__[lc.LOADED], obj.__dict__[lc.REVISION]) == (True, 7)


def test_only_getstate_restores_a_dict_as_attributes_as_pickle_does():
    obj = _loaded(OnlyGetstate())
    lc.load(obj, {lc.OWN_STATE: {"label": "A", "note": "kept", "_dc_id": "ignored"}}, 2)
    assert obj.__dict__["label"] == "A" and obj.note == "kept" and isinstance(obj.__dict__[lc.ID], uuid.UUID)


def test_only_setstate_gets_the_properties():
    obj = _loaded(OnlySetstate())
    obj.__dict__["label"] = "x"
    stored = lc.persisted_state(obj)
    assert stored == {"label": "x"}
    lc.load(obj, stored, 2)
    assert obj.__dict__["label"] == "x!"


def test_a_state_that_is_not_a_dict_needs_setstate():
    obj = _loaded(OpaqueState())
    obj.__dict__["label"] = "x"
    stored = lc.persisted_state(obj)
    assert stored == {lc.OWN_STATE: ("x",)}
    with pytest.raises(TypeError, match="define __setstate__ too"):
        lc.load(obj, stored, 2)


def test_a_clone_is_restored_through_setstate():
    clone = Cached()
    lc.assign(clone, {lc.OWN_STATE: {"items": [5]}})
    assert clone.items == [5] and clone.total == 5
