"""dataclay.lifecycle: every transition moves `state_of(obj)` as the module's diagram says, and
what a persistent object's state looks like when stored and pickled (wire format unchanged)."""
import io
import pickle
import uuid

import pytest

from dataclay import lifecycle as lc
from dataclay.lifecycle import Lineage, State, state_of
from dataclay.serialization import PROTOCOL, Ref, dumps, loads, make_ref
from hr import Company, Employee

BACKEND = uuid.uuid4()
OTHER = uuid.uuid4()


def employee(name: str = "ann", salary: float = 10.0) -> Employee:
    return Employee(name, salary)


def loaded_employee(revision: int = 3) -> Employee:
    obj = employee()
    lc.registered_here(obj, BACKEND, revision)
    return obj


def properties_in_memory(obj) -> dict:
    return {name: obj.__dict__[name] for name in type(obj)._dc_properties if name in obj.__dict__}


# ------------------------------------------------------------------ states and transitions
def test_a_new_object_is_new_with_its_properties_and_a_fresh_id():
    first, second = employee(), employee()
    assert state_of(first) is State.NEW
    assert properties_in_memory(first) == {"name": "ann", "salary": 10.0}
    assert isinstance(lc.object_id(first), uuid.UUID) and lc.object_id(first) != lc.object_id(second)
    assert lc.lineage(first) is None


def test_new_gives_a_fresh_identity_and_the_given_state():
    obj = object.__new__(Employee)
    lc.new(obj, {"name": "bob", "salary": 2.0})
    assert state_of(obj) is State.NEW
    assert properties_in_memory(obj) == {"name": "bob", "salary": 2.0}
    assert obj.__dict__[lc.BACKEND] is None


def test_registered_here_makes_a_new_object_loaded_with_its_revision():
    obj = employee()
    lc.registered_here(obj, BACKEND, revision=4)
    assert state_of(obj) is State.LOADED
    assert obj.__dict__[lc.BACKEND] == BACKEND and obj.__dict__[lc.REVISION] == 4
    assert properties_in_memory(obj) == {"name": "ann", "salary": 10.0}


def test_registered_here_without_a_revision_leaves_it_to_the_commit():
    obj = employee()
    lc.registered_here(obj, BACKEND)
    assert state_of(obj) is State.LOADED and lc.REVISION not in obj.__dict__


def test_registration_failed_makes_it_new_again_keeping_its_properties():
    obj = employee()
    object_id = lc.object_id(obj)
    lc.registered_here(obj, BACKEND)
    lc.registration_failed(obj)
    assert state_of(obj) is State.NEW
    assert obj.__dict__[lc.BACKEND] is None and lc.object_id(obj) == object_id
    assert properties_in_memory(obj) == {"name": "ann", "salary": 10.0}


def test_registered_elsewhere_makes_a_new_object_a_proxy_without_properties():
    obj = employee()
    object_id = lc.object_id(obj)
    lc.registered_elsewhere(obj, OTHER)
    assert state_of(obj) is State.PROXY
    assert obj.__dict__[lc.BACKEND] == OTHER and lc.object_id(obj) == object_id
    assert properties_in_memory(obj) == {}


def test_proxy_makes_an_empty_instance_a_proxy_of_the_given_object():
    object_id = uuid.uuid4()
    obj = object.__new__(Employee)
    lc.proxy(obj, object_id, OTHER)
    assert state_of(obj) is State.PROXY
    assert lc.object_id(obj) == object_id and obj.__dict__[lc.BACKEND] == OTHER


def test_proxy_without_an_owner_is_retired():
    obj = object.__new__(Employee)
    lc.proxy(obj, uuid.uuid4(), None)
    assert state_of(obj) is State.RETIRED


def test_owned_here_makes_a_new_instance_unloaded():
    object_id = uuid.uuid4()
    obj = object.__new__(Employee)
    lc.owned_here(obj, object_id, BACKEND)
    assert state_of(obj) is State.UNLOADED
    assert lc.object_id(obj) == object_id and obj.__dict__[lc.BACKEND] == BACKEND


def test_owned_here_makes_a_proxy_this_process_held_unloaded():
    obj = employee()
    object_id = lc.object_id(obj)
    lc.registered_elsewhere(obj, OTHER)
    lc.owned_here(obj, object_id, BACKEND)
    assert state_of(obj) is State.UNLOADED and obj.__dict__[lc.BACKEND] == BACKEND


def test_unload_drops_the_properties_and_load_restores_them():
    obj = loaded_employee(revision=3)
    lc.unload(obj)
    assert state_of(obj) is State.UNLOADED
    assert properties_in_memory(obj) == {}
    lc.load(obj, {"name": "ann", "salary": 11.0}, revision=5)
    assert state_of(obj) is State.LOADED
    assert properties_in_memory(obj) == {"name": "ann", "salary": 11.0}
    assert obj.__dict__[lc.REVISION] == 5


def test_load_turns_a_stored_lineage_tuple_into_a_lineage():
    obj = object.__new__(Employee)
    lc.owned_here(obj, uuid.uuid4(), BACKEND)
    parent, original = uuid.uuid4(), uuid.uuid4()
    values = {"name": "v", "salary": 1.0, lc.VERSION: (parent, original, 7)}
    lc.load(obj, values, revision=1)
    assert state_of(obj) is State.LOADED
    version = lc.lineage(obj)
    assert type(version) is Lineage
    assert (version.parent, version.original, version.revision) == (parent, original, 7)
    assert properties_in_memory(obj) == {"name": "v", "salary": 1.0}


def test_load_replaces_the_whole_state():
    """Properties and a lineage the stored state does not have are gone after a load."""
    obj = loaded_employee()
    lc.with_lineage(obj, Lineage(uuid.uuid4(), uuid.uuid4(), 2))
    lc.load(obj, {"name": "only-name"}, revision=9)
    assert state_of(obj) is State.LOADED
    assert properties_in_memory(obj) == {"name": "only-name"}
    assert lc.lineage(obj) is None and lc.VERSION not in obj.__dict__
    assert obj.__dict__[lc.REVISION] == 9


def test_with_lineage_makes_a_loaded_object_a_version():
    obj = loaded_employee()
    version = Lineage(uuid.uuid4(), uuid.uuid4(), 3)
    lc.with_lineage(obj, version)
    assert state_of(obj) is State.LOADED and lc.lineage(obj) == version


@pytest.mark.parametrize("unloaded", [False, True])
def test_to_proxy_drops_properties_and_lineage(unloaded):
    obj = loaded_employee()
    lc.with_lineage(obj, Lineage(uuid.uuid4(), uuid.uuid4(), 3))
    if unloaded:
        lc.unload(obj)
        assert state_of(obj) is State.UNLOADED
    lc.to_proxy(obj, OTHER)
    assert state_of(obj) is State.PROXY and obj.__dict__[lc.BACKEND] == OTHER
    assert properties_in_memory(obj) == {}
    assert lc.lineage(obj) is None and lc.VERSION not in obj.__dict__


def test_to_proxy_without_a_backend_retires_it():
    obj = loaded_employee()
    lc.with_lineage(obj, Lineage(uuid.uuid4(), uuid.uuid4(), 3))
    lc.to_proxy(obj, None)
    assert state_of(obj) is State.RETIRED
    assert properties_in_memory(obj) == {} and lc.lineage(obj) is None


def test_relocated_keeps_a_proxy_a_proxy_and_none_retires_it():
    obj = employee()
    lc.registered_elsewhere(obj, OTHER)
    moved_to = uuid.uuid4()
    lc.relocated(obj, moved_to)
    assert state_of(obj) is State.PROXY and obj.__dict__[lc.BACKEND] == moved_to
    lc.relocated(obj, None)
    assert state_of(obj) is State.RETIRED


# ------------------------------------------------------------------ the stored state
def test_persisted_state_writes_the_lineage_as_a_plain_tuple():
    obj = loaded_employee()
    parent, original = uuid.uuid4(), uuid.uuid4()
    lc.with_lineage(obj, Lineage(parent, original, 4))
    persisted = lc.persisted_state(obj)
    assert type(persisted[lc.VERSION]) is tuple
    assert persisted[lc.VERSION] == (parent, original, 4)
    assert {k: v for k, v in persisted.items() if k != lc.VERSION} == {"name": "ann", "salary": 10.0}
    assert type(lc.lineage(obj)) is Lineage  # in memory it stays a Lineage


def test_persisted_state_has_only_the_properties_that_are_set():
    obj = object.__new__(Employee)
    lc.new(obj, {"name": "no-salary"})
    assert lc.persisted_state(obj) == {"name": "no-salary"}


def test_properties_drops_the_lineage():
    obj = loaded_employee()
    lc.with_lineage(obj, Lineage(uuid.uuid4(), uuid.uuid4(), 4))
    assert lc.properties(lc.persisted_state(obj)) == {"name": "ann", "salary": 10.0}


def test_a_stored_version_state_loads_back_into_the_same_lineage():
    version = loaded_employee()
    lineage = Lineage(uuid.uuid4(), uuid.uuid4(), 6)
    lc.with_lineage(version, lineage)
    data = dumps(lc.persisted_state(version), make_ref)
    copy = object.__new__(Employee)
    lc.owned_here(copy, lc.object_id(version), BACKEND)
    lc.load(copy, loads(data, lambda ref: ref), revision=2)
    assert lc.lineage(copy) == lineage and type(lc.lineage(copy)) is Lineage
    assert properties_in_memory(copy) == {"name": "ann", "salary": 10.0}


# ------------------------------------------------------------------ wire format
class _PlainPickler(pickle.Pickler):
    """The wire format as it was: a persistent id is a plain tuple of three."""

    def __init__(self, file, ids: dict[int, tuple[bytes, str, bytes]]) -> None:
        super().__init__(file, protocol=PROTOCOL)
        self._ids = ids

    def persistent_id(self, obj):
        return self._ids.get(id(obj))


def plain_pickle(value, ids: dict[int, tuple[bytes, str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    _PlainPickler(buffer, ids).dump(value)
    return buffer.getvalue()


def test_a_persistent_objects_state_pickles_as_with_plain_tuples():
    worker = employee("bob", 2.0)
    lc.registered_elsewhere(worker, OTHER)
    company = Company("acme", worker)
    lc.registered_here(company, BACKEND, 1)
    lc.with_lineage(company, Lineage(uuid.uuid4(), uuid.uuid4(), 5))

    state = lc.persisted_state(company)
    ours = dumps(state, make_ref)

    expected_state = {"name": "acme", "employee": worker, lc.VERSION: tuple(lc.lineage(company))}
    plain_id = (lc.object_id(worker).bytes, "hr.Employee", OTHER.bytes)
    assert ours == plain_pickle(expected_state, {id(worker): plain_id})
    assert b"Lineage" not in ours and b"Ref" not in ours

    # and it reads back as a Ref with the same fields
    read = loads(ours, lambda ref: ref)
    assert type(read["employee"]) is Ref and tuple(read["employee"]) == plain_id


def test_a_reference_without_a_known_owner_pickles_as_with_plain_tuples():
    worker = employee()
    lc.registered_elsewhere(worker, OTHER)
    lc.relocated(worker, None)  # retired: no owner hint
    ours = dumps([worker], make_ref)
    assert ours == plain_pickle([worker], {id(worker): (lc.object_id(worker).bytes, "hr.Employee", b"")})


def test_a_state_referencing_many_objects_writes_their_class_path_and_owner_once():
    """pickle's memo writes a repeated string once: the class path and owner of each reference
    are one object per class and per backend, so a Company of many employees does not repeat
    them per employee, and reading it back makes one string and one owner, not one per reference."""
    staff = [employee(f"e{i}") for i in range(50)]
    for member in staff:
        lc.registered_elsewhere(member, OTHER)
    data = dumps({"name": "c", "employees": staff}, make_ref)
    assert data.count(b"hr.Employee") == 1 and data.count(OTHER.bytes) == 1
    refs: list[Ref] = []
    assert len(loads(data, lambda ref: refs.append(ref) or ref)["employees"]) == 50
    assert len({id(ref.class_path) for ref in refs}) == 1 and len({id(ref.backend_id) for ref in refs}) == 1
    assert [uuid.UUID(bytes=ref.object_id) for ref in refs] == [lc.object_id(member) for member in staff]


def test_owners_named_by_references_are_kept_for_few_backends_only():
    """A reference's owner may come from anyone's payload: the bytes kept per owner stay bounded,
    and an owner seen after the table filled up is still written once per state."""
    from dataclay import serialization

    for _ in range(serialization._BACKEND_BYTES_KEPT + 100):
        obj = employee()
        lc.registered_elsewhere(obj, uuid.uuid4())
        assert make_ref(obj).backend_id == obj.__dict__[lc.BACKEND].bytes
    assert len(serialization._BACKEND_BYTES) <= serialization._BACKEND_BYTES_KEPT
    owner, staff = uuid.uuid4(), [employee() for _ in range(5)]
    for member in staff:
        lc.registered_elsewhere(member, owner)
    assert dumps(staff, make_ref).count(owner.bytes) == 1


def test_a_class_path_is_kept_in_the_class_itself_and_follows_a_rename():
    """class_path keeps no table keyed by classes: a class whose metaclass defines __eq__ (and
    so no __hash__) works, a class renamed after its first path gets the new one, and nothing
    keeps a class made at run time alive."""
    import gc
    import weakref

    from dataclay.serialization import class_path

    class Equal(type):
        def __eq__(cls, other):
            return cls.__name__ == getattr(other, "__name__", None)

    unhashable = Equal("Thing", (), {"__module__": "pkg_a"})
    same_name = Equal("Thing", (), {"__module__": "pkg_b"})
    assert class_path(unhashable) == "pkg_a.Thing" and class_path(same_name) == "pkg_b.Thing"
    assert class_path(unhashable) is class_path(unhashable)
    unhashable.__module__ = "pkg_c"
    assert class_path(unhashable) == "pkg_c.Thing"
    assert class_path(ValueError) == "builtins.ValueError"  # a built-in type keeps nothing
    made = type("Made", (), {"__module__": "pkg"})
    class_path(made)
    gone = weakref.ref(made)
    del made
    gc.collect()
    assert gone() is None
