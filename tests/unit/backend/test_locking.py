"""Taking a backend's objects (dataclay_backend.locking.ObjectLocks) and storing a request's
changes (dataclay_backend.request.Requests.store_changes), on a real store and runtime without
a network: the metadata address is never used here (no object becomes new in these requests)."""
import threading
import time
import uuid

import pytest

from dataclay import lifecycle as lc
from dataclay.exceptions import ObjectBusyError
from dataclay.runtime import set_runtime
from dataclay.serialization import dumps, loads, make_ref
from dataclay_backend.backend_runtime import BackendRuntime
from dataclay_backend.locking import is_settled
from dataclay_backend.object_store import ObjectStore, StoredObject
from dataclay_backend.scope import SCOPE, RequestScope

EMPLOYEE = "hr.Employee"
NODE = "shapes.Node"
BOUND = 5.0  # the longest any wait here may take


@pytest.fixture
def rt(tmp_path):
    store = ObjectStore(tmp_path)
    runtime = BackendRuntime("127.0.0.1:1", store, "backend-t", 1 << 30, lock_timeout=BOUND)
    yield runtime
    runtime.close()
    store.close()


@pytest.fixture
def in_process(rt):
    """rt as the process's runtime, as on a running backend: property reads of its objects
    go through the object model's hooks."""
    set_runtime(rt)
    yield rt
    set_runtime(None)


def stored(rt: BackendRuntime, path: str, state: dict, revision: int = 3):
    """An object owned by rt and stored at `revision`; its instance (UNLOADED)."""
    object_id = uuid.uuid4()
    rt.store.write([StoredObject(object_id, path, revision, dumps(state, make_ref))])
    rt.owned[object_id] = path
    return rt.objects.instance(object_id, path)


def employee(rt: BackendRuntime, salary: float = 1.0):
    return stored(rt, EMPLOYEE, {"name": "x", "salary": salary})


def pending(obj) -> int:
    return obj.__dict__.get(lc.PENDING, 0)


def stored_state(store: ObjectStore, obj) -> tuple[int, dict]:
    row = store.load(lc.object_id(obj))
    return row.revision, loads(row.state, lambda ref: ref)


# ------------------------------------------------------------------ object locks
def test_acquire_fails_with_object_busy_after_the_timeout(rt):
    rt.locks.timeout = 0.1
    obj = employee(rt)
    assert rt.locks.lock_of(obj).acquire("another-chain")
    with pytest.raises(ObjectBusyError) as raised:
        rt.locks.acquire(obj, "my-chain")
    assert raised.value.object_id == lc.object_id(obj)
    assert rt.locks.lock_of(obj).owner == "another-chain"  # the holder keeps it


def test_acquire_re_enters_for_the_same_chain_and_is_free_after_release(rt):
    rt.locks.timeout = 0.1
    obj = employee(rt)
    rt.locks.acquire(obj, "my-chain")
    rt.locks.acquire(obj, "my-chain")  # nested call of the same chain
    rt.locks.release(obj)
    assert rt.locks.lock_of(obj).owner == "my-chain"
    rt.locks.release(obj)
    rt.locks.acquire(obj, "another-chain")
    rt.locks.release(obj)


def test_acquire_settled_fails_while_another_requests_change_is_pending(rt):
    rt.locks.timeout = 0.1
    obj = employee(rt)
    other = RequestScope("other-request")
    assert rt.locks.hold(obj, other)
    rt.locks.release(obj)
    with pytest.raises(ObjectBusyError):
        rt.locks.acquire(obj, "move-1", settled=True)
    assert rt.locks.lock_of(obj).owner == "other-request"  # kept until its change is stored
    rt.locks.unpend(obj, other)
    assert rt.locks.lock_of(obj).owner is None


def test_hold_loads_the_object_and_counts_one_pending_change_per_request(rt):
    obj = employee(rt)
    assert lc.state_of(obj) is lc.State.UNLOADED
    first, second = RequestScope("r1"), RequestScope("r1")  # two requests of one call chain
    for _ in range(3):  # a request touching the object again counts once
        assert rt.locks.hold(obj, first)
        rt.locks.release(obj)
    assert lc.state_of(obj) is lc.State.LOADED and obj.salary == 1.0
    assert pending(obj) == 1 and first.pending == {lc.object_id(obj)} and first.touched == {lc.object_id(obj): obj}
    assert rt.locks.hold(obj, second)
    rt.locks.release(obj)
    assert pending(obj) == 2
    rt.locks.unpend(obj, first)
    rt.locks.unpend(obj, first)  # already counted down: no effect
    assert pending(obj) == 1 and first.pending == set()
    rt.locks.unpend(obj, second)
    assert pending(obj) == 0
    assert rt.locks.lock_of(obj).owner is None


def test_hold_of_an_object_that_moved_away_is_false_and_holds_nothing(rt):
    obj = employee(rt)
    lc.to_proxy(obj, uuid.uuid4())
    scope = RequestScope("r1")
    assert rt.locks.hold(obj, scope) is False
    assert rt.locks.lock_of(obj).owner is None and pending(obj) == 0 and scope.pending == set()


def test_hold_settled_waits_until_another_requests_change_is_stored(rt):
    obj = employee(rt)
    request = RequestScope("request")
    assert rt.locks.hold(obj, request)
    rt.locks.release(obj)  # its change is on its way to storage: pending, not locked
    events: list[str] = []
    calling, returned = threading.Event(), threading.Event()

    def store_the_change() -> None:
        assert calling.wait(BOUND)
        # give the mover time to start waiting (if it does not wait, `returned` is set first)
        if returned.wait(0.3):
            events.append("mover returned before the change was stored")
        events.append("stored")
        rt.locks.unpend(obj, request)

    storer = threading.Thread(target=store_the_change)
    storer.start()
    calling.set()
    started = time.monotonic()
    held = rt.locks.hold_settled(obj, "move-1", BOUND)
    returned.set()
    events.append("mover returned")
    storer.join(BOUND)
    try:
        assert held and rt.locks.lock_of(obj).owner == "move-1"
        assert events == ["stored", "mover returned"]
        assert is_settled(obj, None)
        assert time.monotonic() - started < BOUND - 1  # woken by the unpend, not by its deadline
    finally:
        rt.locks.release(obj)


def test_hold_settled_times_out_when_the_change_is_never_stored(rt):
    obj = employee(rt)
    request = RequestScope("request")
    assert rt.locks.hold(obj, request)
    rt.locks.release(obj)
    assert rt.locks.hold_settled(obj, "move-1", 0.1) is False
    assert rt.locks.lock_of(obj).owner == "request" and pending(obj) == 1  # kept until stored


def test_hold_settled_times_out_while_another_chain_holds_the_lock(rt):
    obj = employee(rt)
    assert rt.locks.lock_of(obj).acquire("a-call")
    assert rt.locks.hold_settled(obj, "move-1", 0.1) is False
    assert rt.locks.lock_of(obj).owner == "a-call"


def test_a_scopes_own_pending_change_counts_as_settled_for_it(rt):
    obj = employee(rt)
    mine, other = RequestScope("mine"), RequestScope("mine")  # e.g. a nested request of the same chain
    assert rt.locks.hold(obj, mine)
    rt.locks.release(obj)
    assert is_settled(obj, mine)
    assert not is_settled(obj, other) and not is_settled(obj, None)
    token = SCOPE.set(mine)  # a move inside that same request (moving its own object)
    try:
        assert rt.locks.hold_settled(obj, "mine", 0.1)
        rt.locks.release(obj)
    finally:
        SCOPE.reset(token)
    assert rt.locks.hold(obj, other)
    rt.locks.release(obj)
    assert not is_settled(obj, mine)  # two requests' changes: not settled for either
    assert not is_settled(obj, other)


# ------------------------------------------------------------------ storing a request's changes
def test_a_requests_change_is_stored_at_a_higher_revision(rt, tmp_path):
    obj = employee(rt, salary=1.0)
    with rt.request():
        rt.write_local(obj, "salary", 99.0)
    assert pending(obj) == 0 and rt.locks.lock_of(obj).owner is None
    assert stored_state(rt.store, obj) == (4, {"name": "x", "salary": 99.0})
    reopened = ObjectStore(tmp_path)  # what a restart would find
    try:
        assert stored_state(reopened, obj) == (4, {"name": "x", "salary": 99.0})
    finally:
        reopened.close()
    with rt.request():
        rt.write_local(obj, "salary", 100.0)
    assert stored_state(rt.store, obj) == (5, {"name": "x", "salary": 100.0})


def test_an_unchanged_object_is_not_rewritten(rt, in_process):
    node = stored(rt, NODE, {"value": 1, "next": None, "children": [1, 2]})
    rt.objects.load(node)
    employee_ = employee(rt)
    with rt.request():
        assert rt.locks.hold(employee_, SCOPE.get())  # touched, nothing assigned, cannot change in place
        rt.locks.release(employee_)
        assert node.children == [1, 2]  # a mutable value handed out: the node may change in place
        assert lc.object_id(node) in SCOPE.get().touched
    assert stored_state(rt.store, employee_)[0] == 3
    assert stored_state(rt.store, node)[0] == 3  # same digest: no write
    assert pending(node) == 0 and pending(employee_) == 0


def test_a_change_in_place_is_stored(rt, in_process):
    node = stored(rt, NODE, {"value": 1, "next": None, "children": [1, 2]})
    rt.objects.load(node)
    with rt.request():
        node.children.append(3)  # no assignment: found by the digest
    assert stored_state(rt.store, node) == (4, {"value": 1, "next": None, "children": [1, 2, 3]})
    assert pending(node) == 0


def test_a_change_in_place_through_the_first_read_of_an_unloaded_object_is_stored(rt, in_process):
    """As shapes.Node.push_into does to another local object: if that object was not loaded
    (never read since the start, or evicted), the read that loads it hands out the list too,
    and the change must be stored with the request like any other in-place change."""
    node = stored(rt, NODE, {"value": 1, "next": None, "children": [1, 2]})
    assert lc.state_of(node) is lc.State.UNLOADED
    with rt.request():
        node.children.append(3)
    assert stored_state(rt.store, node) == (4, {"value": 1, "next": None, "children": [1, 2, 3]})
    assert pending(node) == 0


def test_pending_is_back_to_zero_when_the_state_cannot_be_pickled(rt):
    obj = employee(rt)
    with pytest.raises(Exception):
        with rt.request():
            rt.write_local(obj, "salary", lambda: 1)  # not picklable: the commit fails
    assert pending(obj) == 0 and rt.locks.lock_of(obj).owner is None
    assert stored_state(rt.store, obj) == (3, {"name": "x", "salary": 1.0})  # nothing stored
    assert rt.locks.hold_settled(obj, "move-1", 0.1)  # a move is not kept waiting
    rt.locks.release(obj)


def test_pending_is_back_to_zero_when_the_store_write_fails(rt):
    obj = employee(rt)
    rt.objects.load(obj)
    rt.store.db.close()  # every write fails now (sqlite3.ProgrammingError)
    with pytest.raises(Exception):
        with rt.request():
            rt.write_local(obj, "salary", 2.0)
    assert pending(obj) == 0 and rt.locks.lock_of(obj).owner is None
    assert rt.locks.hold_settled(obj, "move-1", 0.1)
    rt.locks.release(obj)


def test_a_waiter_with_its_own_change_pending_is_woken_when_the_other_change_is_stored(rt):
    """A call moving its own object waits for another request's change: PENDING goes 2 -> 1,
    which is settled for the waiter, so the unpend must wake it (not only 1 -> 0)."""
    obj = employee(rt)
    mine, other = RequestScope("mine"), RequestScope("mine")  # another request of the same chain
    assert rt.locks.hold(obj, other)
    rt.locks.release(obj)
    assert rt.locks.hold(obj, mine)
    rt.locks.release(obj)
    waiting = threading.Event()
    storer = threading.Thread(target=lambda: (waiting.wait(BOUND), rt.locks.unpend(obj, other)))
    storer.start()
    token = SCOPE.set(mine)
    try:
        started = time.monotonic()
        waiting.set()
        assert rt.locks.hold_settled(obj, "mine", BOUND)
        assert time.monotonic() - started < BOUND - 1  # woken by the unpend, not by its deadline
        rt.locks.release(obj)
    finally:
        SCOPE.reset(token)
        storer.join(BOUND)


def test_a_request_whose_changes_cannot_be_stored_leaves_memory_as_stored(rt, in_process):
    obj = employee(rt, salary=1.0)
    rt.objects.load(obj)
    with pytest.raises(Exception):
        with rt.request():
            rt.write_local(obj, "salary", 2.0)
            rt.write_local(obj, "name", lambda: 1)  # not picklable: storing the request fails
    assert lc.state_of(obj) is lc.State.UNLOADED  # rolled back: the next use loads what is stored
    assert (obj.salary, obj.name) == (1.0, "x")
    assert obj.__dict__[lc.REVISION] == 3 and pending(obj) == 0


def test_a_call_waiting_for_an_object_never_sees_a_change_that_failed_to_store(rt, in_process):
    """Two-phase locking: request B of another chain waits for obj until A's changes are stored
    or rolled back, so it never sees (nor stores as its own) A's change that then fails."""
    obj = employee(rt, salary=1.0)
    a_changed, b_done = threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def request_b() -> None:
        assert a_changed.wait(BOUND)
        with rt.request(chain="b"):
            assert rt.locks.hold(obj, SCOPE.get())
            try:
                seen["salary"] = obj.salary
            finally:
                rt.locks.release(obj)
        b_done.set()

    thread = threading.Thread(target=request_b)
    thread.start()
    with pytest.raises(Exception):
        with rt.request(chain="a"):
            rt.write_local(obj, "salary", 2.0)
            rt.write_local(obj, "name", lambda: 1)  # not picklable: storing A's changes fails
            a_changed.set()
            assert not b_done.wait(0.5)  # B cannot take obj while A's changes are not stored
    thread.join(BOUND)
    assert b_done.is_set() and seen == {"salary": 1.0}
    assert stored_state(rt.store, obj) == (3, {"name": "x", "salary": 1.0})
