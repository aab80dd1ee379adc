"""How a move's walk takes the locks of the objects it moves (dataclay_backend.walk), on a real store and
runtime without a network: the decisions are local."""
import threading
import uuid

import pytest

from dataclay.exceptions import ObjectBusyError
from dataclay.serialization import dumps, make_ref
from dataclay_backend.backend_runtime import BackendRuntime
from dataclay_backend.walk import Walk
from dataclay_backend.object_store import StoredObject
from local_runtime import local_runtime

PATH = "hr.Employee"


@pytest.fixture
def rt(tmp_path):
    with local_runtime(tmp_path, lock_timeout=10.0) as runtime:
        yield runtime


def walk_of(rt: BackendRuntime, roots: list, **options) -> Walk:
    return Walk(rt.objects, rt.locks, rt.local_object, roots, **options)


def employees(rt: BackendRuntime, count: int) -> list:
    ids = [uuid.uuid4() for _ in range(count)]
    rt.store.write([StoredObject(i, PATH, 3, dumps({"name": "x", "salary": 1.0}, make_ref)) for i in ids])
    for object_id in ids:
        rt.owned[object_id] = PATH
    return [rt.objects.instance(object_id, PATH) for object_id in ids]


def test_a_walk_that_fails_lets_every_object_go(rt):
    rt.locks.timeout = 0.2
    first, busy, last = employees(rt, 3)
    assert rt.locks.lock_of(busy).acquire("a-call")
    walk = walk_of(rt, [o._dc_id for o in (first, busy, last)], recursive=False, only_owned=True, chain="move-t")
    with pytest.raises(ObjectBusyError):
        for _ in walk.batches():
            pass
    walk.release()  # what a failed move does
    assert rt.locks.lock_of(first).owner is None and rt.locks.lock_of(last).owner is None


def test_a_walk_waiting_for_an_object_holds_none_after_it(rt):
    """A call holding X may need Y, the next object of the walk: while the walk waits for X,
    Y must be free (else both wait until the walk times out)."""
    x, y = employees(rt, 2)
    assert rt.locks.lock_of(x).acquire("a-call")
    outcome: dict[str, object] = {}
    walk = walk_of(rt, [x._dc_id, y._dc_id], recursive=False, only_owned=True, chain="move-t")

    def run_walk() -> None:
        try:
            outcome["batches"] = [len(batch) for batch in walk.batches()]
        finally:
            walk.release()

    thread = threading.Thread(target=run_walk)
    thread.start()
    got_y = rt.locks.lock_of(y).acquire("a-call", timeout=5.0)  # the walk waits up to 10 s for X
    if got_y:
        rt.locks.lock_of(y).release()
    rt.locks.lock_of(x).release()
    thread.join()
    assert got_y and outcome["batches"] == [2]


def test_a_released_walk_still_running_keeps_nothing(rt):
    """After a failed transfer, gRPC's thread may still be inside the walk: what it locks
    after release() must go at once."""
    objects = employees(rt, 100)
    walk = walk_of(rt, [o._dc_id for o in objects], recursive=False, only_owned=True, chain="move-t")
    batches = walk.batches()
    first = next(batches)
    walk.release()
    assert list(batches) == []  # the walk stops
    assert all(rt.locks.lock_of(o).owner is None for o in objects) and first


def stored(rt: BackendRuntime, count: int) -> list:
    """Owned objects with no instance in memory (as after a restart or an incoming move)."""
    ids = [uuid.uuid4() for _ in range(count)]
    rt.store.write([StoredObject(i, PATH, 3, dumps({"name": "x", "salary": float(n)}, make_ref)) for n, i in enumerate(ids)])
    for object_id in ids:
        rt.owned[object_id] = PATH
    return ids


def test_a_moves_walk_fences_objects_not_in_memory_instead_of_making_them(rt):
    ids = stored(rt, 40)
    walk = walk_of(rt, ids, recursive=False, only_owned=True, chain="move-t", fence=True)
    try:
        batches = list(walk.batches())
        assert [(object_id, path, revision) for batch in batches for object_id, path, _, revision in batch] == \
            [(object_id, PATH, 3) for object_id in ids]
        assert walk.count == 40 and walk.ids() == ids and walk.locked == []
        assert list(walk.fenced.ids) == ids
        assert not any(object_id in rt.heap for object_id in ids)  # no instance was made to lock
        obj = rt.objects.instance(ids[5], PATH)  # a call for one arrives: it waits for the move
        assert not rt.locks.lock_of(obj).acquire("a-call", timeout=0.05)
    finally:
        walk.release()
    assert rt.locks.lock_of(obj).acquire("a-call", timeout=0)  # released with the walk
    rt.locks.lock_of(obj).release()
    assert rt.locks.lock_of(rt.objects.instance(ids[6], PATH)).owner is None
    assert rt.objects._fences == []  # nothing of the walk is left for later instances to look at


def test_a_moves_walk_waiting_for_an_object_fences_none_after_it(rt):
    """As with instances: while the walk waits for X (held by a call), Y, after it and not in
    memory, is not fenced: the call holding X may need Y."""
    (x,) = employees(rt, 1)
    (y,) = stored(rt, 1)
    assert rt.locks.lock_of(x).acquire("a-call")
    outcome: dict[str, object] = {}
    walk = walk_of(rt, [x._dc_id, y], recursive=False, only_owned=True, chain="move-t", fence=True)

    def run_walk() -> None:
        try:
            outcome["batches"] = [len(batch) for batch in walk.batches()]
            outcome["count"] = walk.count
        finally:
            walk.release()

    thread = threading.Thread(target=run_walk)
    thread.start()
    y_lock = rt.locks.lock_of(rt.objects.instance(y, PATH))
    got_y = y_lock.acquire("a-call", timeout=5.0)  # the walk waits up to 10 s for X
    if got_y:
        y_lock.release()
    rt.locks.lock_of(x).release()
    thread.join()
    assert got_y and outcome == {"batches": [2], "count": 2}


def test_a_moves_walk_skips_an_object_given_up_since_it_looked(rt):
    """Another move gives X up (its commit in doubt: rows kept) between this walk's look at
    `owned` and its take: X is not carried."""
    (x,) = stored(rt, 1)
    objects = rt.objects
    real_take = objects.take

    def take(pairs, fence):
        other = objects.fence("move-other")  # the other move
        real_take([(x, PATH)], other)
        objects.give_up([], uuid.uuid4(), delete_rows=False, fence=other)
        objects.unfence(other)
        return real_take(pairs, fence)

    objects.take = take
    walk = walk_of(rt, [x], recursive=False, only_owned=True, chain="move-t", fence=True)
    try:
        assert [item for batch in walk.batches() for item in batch] == []
        assert walk.count == 0
    finally:
        walk.release()
