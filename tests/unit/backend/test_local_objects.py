"""The objects a backend owns (dataclay_backend.objects.LocalObjects), through a real runtime and
store without a network: one instance per object id, loading, giving objects up, adopting them."""
import threading
import uuid

import pytest

from dataclay import lifecycle as lc
from dataclay.exceptions import ClassNotFoundError, ObjectNotRegisteredError
from dataclay.serialization import dumps, make_ref
from dataclay_backend.backend_runtime import BackendRuntime
from dataclay_backend.object_store import StoredObject
from hr import Employee
from local_runtime import local_runtime

PATH = "hr.Employee"
BOUND = 5.0


@pytest.fixture
def rt(tmp_path):
    with local_runtime(tmp_path, lock_timeout=BOUND) as runtime:
        yield runtime


def store_rows(rt: BackendRuntime, count: int, revision: int = 3) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(count)]
    rt.store.write([StoredObject(i, PATH, revision, dumps({"name": f"e{n}", "salary": float(n)}, make_ref))
                    for n, i in enumerate(ids)])
    return ids


def owned(rt: BackendRuntime, count: int) -> list:
    ids = store_rows(rt, count)
    for object_id in ids:
        rt.owned[object_id] = PATH
    return [rt.objects.instance(object_id, PATH) for object_id in ids]


def test_instance_gives_one_unloaded_instance_per_id(rt):
    (object_id,) = store_rows(rt, 1)
    rt.owned[object_id] = PATH
    first = rt.objects.instance(object_id, PATH)
    assert rt.objects.instance(object_id, PATH) is first
    assert rt.instance(object_id, PATH, None) is first  # the runtime's view: the same instance
    assert rt.objects.instances([(object_id, PATH)]) == [first]
    assert lc.state_of(first) is lc.State.UNLOADED
    assert lc.object_id(first) == object_id and first.__dict__[lc.BACKEND] == rt.local_backend_id


def test_threads_asking_at_once_get_the_same_instance(rt):
    threads_count = 8
    ids = store_rows(rt, 20)
    barrier = threading.Barrier(threads_count)
    found: list[list] = [[] for _ in range(threads_count)]

    def ask(slot: int) -> None:
        barrier.wait(BOUND)
        for object_id in ids:
            found[slot].append(rt.objects.instance(object_id, PATH))

    threads = [threading.Thread(target=ask, args=(slot,)) for slot in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND)
    assert all(len(instances) == len(ids) for instances in found)
    for position in range(len(ids)):
        assert len({id(instances[position]) for instances in found}) == 1
    assert [lc.object_id(obj) for obj in found[0]] == ids


def test_load_brings_the_stored_state_in(rt):
    (obj,) = owned(rt, 1)
    rt.objects.load(obj)
    assert lc.state_of(obj) is lc.State.LOADED
    assert (obj.__dict__["name"], obj.__dict__["salary"], obj.__dict__[lc.REVISION]) == ("e0", 0.0, 3)
    assert len(rt.loaded) == 1


def test_load_of_an_object_not_in_the_store_raises_not_registered(rt):
    object_id = uuid.uuid4()
    rt.owned[object_id] = PATH  # owned, but its row is missing
    obj = rt.objects.instance(object_id, PATH)
    with pytest.raises(ObjectNotRegisteredError) as raised:
        rt.objects.load(obj)
    assert raised.value.object_id == object_id
    assert lc.state_of(obj) is lc.State.UNLOADED and len(rt.loaded) == 0


def test_give_up_makes_instances_proxies_and_removes_their_rows(rt):
    objects = owned(rt, 3)
    for obj in objects:
        rt.objects.load(obj)
    gone, kept = objects[:2], objects[2]
    elsewhere = uuid.uuid4()
    rt.objects.give_up(gone, elsewhere)
    for obj in gone:
        object_id = lc.object_id(obj)
        assert lc.state_of(obj) is lc.State.PROXY and obj.__dict__[lc.BACKEND] == elsewhere
        assert "name" not in obj.__dict__
        assert rt.store.load(object_id) is None and object_id not in rt.owned
        assert rt.heap.get(object_id) is obj  # still the one instance of that id here
    assert len(rt.loaded) == 1
    assert lc.state_of(kept) is lc.State.LOADED and rt.store.load(lc.object_id(kept)).revision == 3


def test_give_up_gives_the_objects_up_even_if_their_rows_cannot_be_deleted(rt):
    """Giving up follows a commit (a move, retired versions): the objects are no longer ours
    whatever the store says. Rows it cannot delete now are not ours either; the next start's
    recovery drops them (they are not assigned here)."""
    objects = owned(rt, 2)
    rt.store.db.query("PRAGMA query_only=1")  # every write fails: a real SQLite error
    try:
        rt.objects.give_up(objects, uuid.uuid4())
    finally:
        rt.store.db.query("PRAGMA query_only=0")
    for obj in objects:
        assert lc.state_of(obj) is lc.State.PROXY and lc.object_id(obj) not in rt.owned
        assert rt.store.load(lc.object_id(obj)) is not None  # left for recovery


def test_give_up_without_a_backend_retires_and_can_keep_rows(rt):
    (obj,) = owned(rt, 1)
    rt.objects.give_up([obj], None, delete_rows=False)  # the caller deleted (or keeps) the rows
    assert lc.state_of(obj) is lc.State.RETIRED
    assert lc.object_id(obj) not in rt.owned and rt.store.load(lc.object_id(obj)) is not None


def test_adopt_turns_a_proxy_this_process_held_into_the_owned_object(rt):
    object_id = uuid.uuid4()
    elsewhere = uuid.uuid4()
    proxy = rt.instance(object_id, PATH, elsewhere)  # not owned: the process holds a proxy
    assert lc.state_of(proxy) is lc.State.PROXY
    row = StoredObject(object_id, PATH, 7, dumps({"name": "moved", "salary": 5.0}, make_ref))
    rt.store.write([row])  # e.g. a move to this backend, activated

    rt.objects.adopt({object_id: PATH})

    assert rt.owned[object_id] == PATH
    assert rt.objects.instance(object_id, PATH) is proxy  # the same instance: references held stay valid
    assert lc.state_of(proxy) is lc.State.UNLOADED and proxy.__dict__[lc.BACKEND] == rt.local_backend_id
    rt.objects.load(proxy)
    assert (proxy.__dict__["name"], proxy.__dict__[lc.REVISION]) == ("moved", 7)


def test_adopt_of_an_object_not_held_makes_no_instance(rt):
    (object_id,) = store_rows(rt, 1)
    rt.objects.adopt({object_id: PATH})
    assert rt.owned[object_id] == PATH and object_id not in rt.heap
    assert lc.state_of(rt.instance(object_id, PATH, None)) is lc.State.UNLOADED


def test_remember_makes_new_objects_owned_and_the_one_instance(rt):
    obj = Employee("new", 1.0)
    lc.registered_here(obj, rt.local_backend_id, revision=1)
    rt.objects.remember([obj])
    object_id = lc.object_id(obj)
    assert rt.owned[object_id] == PATH
    assert rt.objects.instance(object_id, PATH) is obj and lc.state_of(obj) is lc.State.LOADED


def test_an_id_given_up_is_never_served_again_by_a_caller_that_found_it_owned(rt):
    """A call looks up `owned`, then asks for the instance; a move may give the object up in
    between: the instance it gets is then a proxy (it forwards), never the object served here."""
    objects = owned(rt, 1)
    object_id = lc.object_id(objects[0])
    path = rt.owned[object_id]  # what a call found a moment ago
    rt.objects.give_up(objects, uuid.uuid4())
    assert lc.state_of(rt.objects.instance(object_id, path)) is lc.State.PROXY  # the instance held
    del objects
    gone = store_rows(rt, 1)[0]  # and with no instance held: made as a proxy
    rt.owned[gone] = PATH
    fence = rt.objects.fence("move-t")
    assert rt.objects.take([(gone, PATH)], fence) == [None]
    rt.objects.give_up([], uuid.uuid4(), fence=fence)
    made = rt.objects.instance(gone, PATH)
    assert not made.__dict__[lc.LOCAL] and lc.object_id(made) == gone
    assert made.__dict__[lc.BACKEND] is None  # a call through it asks the directory where it is


def test_a_fenced_id_gets_an_instance_whose_lock_the_move_holds_until_unfenced(rt):
    ids = store_rows(rt, 2)
    for object_id in ids:
        rt.owned[object_id] = PATH
    fence = rt.objects.fence("move-t")
    assert rt.objects.take([(i, PATH) for i in ids], fence) == [None, None]  # no instance made
    assert not any(object_id in rt.heap for object_id in ids)

    obj = rt.objects.instance(ids[0], PATH)  # a call for it arrives during the move
    assert lc.state_of(obj) is lc.State.UNLOADED and rt.locks.lock_of(obj).owner == "move-t"
    assert not rt.locks.lock_of(obj).acquire("a-call", timeout=0.05)  # the call waits for the move
    assert rt.locks.lock_of(obj).acquire("move-t", timeout=0)  # the move's own chain re-enters
    rt.locks.lock_of(obj).release()

    rt.objects.unfence(fence)
    assert rt.locks.lock_of(obj).acquire("a-call", timeout=0)
    rt.locks.lock_of(obj).release()
    later = rt.objects.instance(ids[1], PATH)  # unfenced before any instance: a free lock
    assert rt.locks.lock_of(later).owner is None


def test_give_up_of_fenced_ids_turns_instances_made_meanwhile_into_proxies(rt):
    ids = store_rows(rt, 3)
    for object_id in ids:
        rt.owned[object_id] = PATH
    fence = rt.objects.fence("move-t")
    rt.objects.take([(i, PATH) for i in ids], fence)
    made = rt.objects.instance(ids[0], PATH)
    rt.objects.load(made)  # a read loaded it (reads take no lock)
    elsewhere = uuid.uuid4()

    rt.objects.give_up([], elsewhere, fence=fence)

    assert lc.state_of(made) is lc.State.PROXY and made.__dict__[lc.BACKEND] == elsewhere
    assert len(rt.loaded) == 0
    for object_id in ids:
        assert object_id not in rt.owned and rt.store.load(object_id) is None
    rt.objects.unfence(fence)
    assert rt.locks.lock_of(made).acquire("a-call", timeout=0)  # the waiting call goes on, and forwards


def test_an_id_another_move_fenced_is_taken_as_an_instance_that_move_holds(rt):
    """Two moves of one object: the second waits for the first, as for a locked object."""
    (object_id,) = store_rows(rt, 1)
    rt.owned[object_id] = PATH
    first = rt.objects.fence("move-a")
    assert rt.objects.take([(object_id, PATH)], first) == [None]
    (second,) = rt.objects.take([(object_id, PATH)], rt.objects.fence("move-b"))
    assert second is not None and rt.locks.lock_of(second).owner == "move-a"
    rt.objects.unfence(first)
    assert rt.locks.lock_of(second).owner is None


def test_take_of_an_id_given_up_since_the_walk_looked_fences_nothing(rt):
    """A move's walk looks at `owned`, then takes; another move may give the object up (and
    lift its fence) in between: the walk must not carry an object that is no longer ours."""
    (object_id,) = store_rows(rt, 1)
    rt.owned[object_id] = PATH
    other = rt.objects.fence("move-other")
    rt.objects.take([(object_id, PATH)], other)
    rt.objects.give_up([], uuid.uuid4(), delete_rows=False, fence=other)  # rows kept: in doubt
    rt.objects.unfence(other)
    (taken,) = rt.objects.take([(object_id, PATH)], rt.objects.fence("move-t"))
    assert taken is not None and not taken.__dict__[lc.LOCAL]  # a proxy: the walk skips it
    assert rt.locks.lock_of(taken).owner is None


def test_take_that_fails_leaves_nothing_fenced(rt):
    """An id another move fenced, whose class cannot be imported here, fails the take: what
    the take fenced before it must not stay fenced, with no walk to lift it."""
    first, bad = store_rows(rt, 2)
    rt.owned[first], rt.owned[bad] = PATH, "hr.NoSuchClass"
    rt.objects.take([(bad, "hr.NoSuchClass")], rt.objects.fence("move-a"))
    second = rt.objects.fence("move-b")
    with pytest.raises(ClassNotFoundError):
        rt.objects.take([(first, PATH), (bad, "hr.NoSuchClass")], second)
    assert first not in second.ids
    assert rt.locks.lock_of(rt.objects.instance(first, PATH)).owner is None


def test_adopt_of_more_objects_than_are_in_memory_still_turns_the_proxies_held(rt):
    """A large move arriving: adopt looks at the instances in memory rather than at each id."""
    ids = store_rows(rt, 5)
    proxy = rt.instance(ids[2], PATH, uuid.uuid4())  # the only instance of them in this process
    assert len(rt.heap) < len(ids)
    rt.objects.adopt({object_id: PATH for object_id in ids})
    assert lc.state_of(proxy) is lc.State.UNLOADED and proxy.__dict__[lc.BACKEND] == rt.local_backend_id
    assert all(rt.owned[object_id] == PATH for object_id in ids)
    assert [object_id for object_id in ids if object_id in rt.heap] == [ids[2]]
