"""The in-memory side of a backend (dataclay_backend.heap): ChainLock, the lock an object is
held with by a call chain, and LoadedSet, which unloads least recently used objects past the
memory limit. Threads are synchronised with events and barriers only."""
import threading
import uuid

from dataclay_backend.heap import EVICTION_CHAIN, MOVE_CHAIN_PREFIX, ChainLock, LoadedSet, lock_of
from hr import Employee  # tests/models: a real DataClayObject subclass (properties name, salary)

WAIT = 10.0  # bound on every wait for another thread; never reached when the code is right


# ---------------------------------------------------------------------------------------- ChainLock

def test_the_same_chain_reenters_and_the_lock_is_free_after_as_many_releases():
    lock = ChainLock()
    assert lock.acquire("chain-1") and lock.acquire("chain-1", timeout=0)
    lock.release()
    assert lock.owner == "chain-1" and not lock.acquire("chain-2", timeout=0)
    lock.release()
    assert lock.owner is None and lock.acquire("chain-2", timeout=0)


def test_a_timed_out_acquire_returns_false_and_changes_nothing():
    lock = ChainLock()
    assert lock.acquire("holder")
    assert lock.acquire("waiter", timeout=0.05) is False
    assert lock.owner == "holder"
    lock.release()  # one release frees it: the failed acquire took no depth
    assert lock.owner is None


def test_another_chain_waits_until_the_holder_releases():
    lock = ChainLock()
    assert lock.acquire("holder")
    tried, got = threading.Event(), threading.Event()
    result: dict[str, object] = {}

    def waiter() -> None:
        result["while_held"] = lock.acquire("waiter", timeout=0)
        tried.set()
        result["after"] = lock.acquire("waiter", timeout=WAIT)
        result["owner"] = lock.owner
        got.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    assert tried.wait(WAIT)
    assert result["while_held"] is False and not got.is_set() and lock.owner == "holder"
    lock.release()
    assert got.wait(WAIT)
    thread.join(WAIT)
    assert result["after"] is True and result["owner"] == "waiter"


def test_a_chain_coming_back_on_another_thread_reenters():
    """A nested call of the same chain can arrive on another server thread (e.g. through
    another backend): it must not wait for itself."""
    lock = ChainLock()
    assert lock.acquire("chain-1")
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(lock.acquire("chain-1", timeout=WAIT)))
    thread.start()
    thread.join(WAIT)
    assert result == [True]
    lock.release()
    assert lock.owner == "chain-1"
    lock.release()
    assert lock.owner is None


def test_waiting_chains_each_get_the_lock_in_turn():
    lock = ChainLock()
    assert lock.acquire("holder")
    ready = threading.Barrier(3)
    owners: list[str] = []
    failed: list[str] = []
    turn = threading.Lock()

    def waiter(chain: str) -> None:
        ready.wait(WAIT)
        if not lock.acquire(chain, timeout=WAIT):
            failed.append(chain)
            return
        with turn:
            owners.append(lock.owner)
        lock.release()

    threads = [threading.Thread(target=waiter, args=(chain,)) for chain in ("w1", "w2")]
    for thread in threads:
        thread.start()
    ready.wait(WAIT)
    lock.release()
    for thread in threads:
        thread.join(WAIT)
    assert not failed and sorted(owners) == ["w1", "w2"] and lock.owner is None


def test_take_free_takes_only_locks_no_other_chain_holds():
    free, mine, theirs = ChainLock(), ChainLock(), ChainLock()
    assert mine.acquire("move-1") and theirs.acquire("call-7")
    assert ChainLock.take_free([free, mine, theirs], "move-1") == [True, True, False]
    assert (free.owner, mine.owner, theirs.owner) == ("move-1", "move-1", "call-7")
    ChainLock.release_all([free, mine])
    assert (free.owner, mine.owner) == (None, "move-1")  # mine: still held once, as before
    mine.release()
    assert mine.owner is None


def test_release_all_wakes_a_waiter():
    lock = ChainLock()
    assert ChainLock.take_free([lock], "move-1") == [True]
    got = threading.Event()
    thread = threading.Thread(target=lambda: lock.acquire("call-1", timeout=WAIT) and got.set())
    thread.start()
    ChainLock.release_all([lock])
    assert got.wait(WAIT)
    thread.join(WAIT)
    assert lock.owner == "call-1"


def test_every_thread_gets_the_same_lock_of_an_object():
    employee = Employee("x", 1.0)
    start = threading.Barrier(8)
    seen: list[ChainLock] = []

    def get() -> None:
        start.wait(WAIT)
        seen.append(lock_of(employee))

    threads = [threading.Thread(target=get) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert len(seen) == 8 and all(lock is seen[0] for lock in seen)
    assert lock_of(employee) is seen[0] and lock_of(Employee("y", 2.0)) is not seen[0]


def test_no_request_can_name_the_eviction_chain():
    assert not EVICTION_CHAIN.isprintable() and not EVICTION_CHAIN.startswith(MOVE_CHAIN_PREFIX)


# ---------------------------------------------------------------------------------------- LoadedSet

def loaded(count: int) -> list[tuple[uuid.UUID, Employee]]:
    return [(uuid.uuid4(), Employee(f"E{index}", float(index))) for index in range(count)]


def is_loaded(employee: Employee) -> bool:
    state = employee.__dict__
    has_properties = "name" in state and "salary" in state
    assert has_properties == (state["_dc_is_loaded"] is not False), state  # never half unloaded
    return has_properties


def test_touch_and_discard_keep_the_total():
    heap = LoadedSet(1000, threading.Lock())
    (a, ea), (b, eb) = loaded(2)
    heap.touch(a, ea, 10)
    heap.touch(b, eb, 20)
    heap.touch(a, ea, 30)  # reloaded, bigger now: replaces its size
    assert (heap.total, len(heap)) == (50, 2)
    heap.discard(a, uuid.uuid4())  # unknown ids are ignored
    assert (heap.total, len(heap)) == (20, 1)


def test_under_the_limit_nothing_is_unloaded():
    heap = LoadedSet(30, threading.Lock())
    entries = loaded(3)
    for object_id, employee in entries:
        heap.touch(object_id, employee, 10)
    heap.evict()
    assert heap.total == 30 and all(is_loaded(employee) for _, employee in entries)


def test_the_least_recently_used_are_unloaded_until_under_the_limit():
    heap = LoadedSet(25, threading.Lock())
    (a, ea), (b, eb), (c, ec), (d, ed) = loaded(4)
    for object_id, employee in ((a, ea), (b, eb), (c, ec)):
        heap.touch(object_id, employee, 10)
    heap.touch(a, ea, 10)  # a is now the most recently used
    heap.touch(d, ed, 10)
    heap.evict()
    assert [is_loaded(e) for e in (ea, eb, ec, ed)] == [True, False, False, True]
    assert (heap.total, len(heap)) == (20, 2)
    assert ed.__dict__["_dc_id"] and eb.__dict__["_dc_id"]  # identity stays: only properties go


def test_objects_a_call_holds_are_skipped_and_keep_their_place():
    heap = LoadedSet(25, threading.Lock())
    (a, ea), (b, eb), (c, ec) = loaded(3)
    for object_id, employee in ((a, ea), (b, eb), (c, ec)):
        heap.touch(object_id, employee, 10)
    assert lock_of(ea).acquire("call-1")
    heap.evict()
    assert [is_loaded(e) for e in (ea, eb, ec)] == [True, False, True]
    assert lock_of(ea).owner == "call-1" and (heap.total, len(heap)) == (20, 2)

    lock_of(ea).release()
    (d, ed), = loaded(1)
    heap.touch(d, ed, 10)
    heap.evict()  # a is still the least recently used: it goes first now that it is free
    assert [is_loaded(e) for e in (ea, ec, ed)] == [False, True, True]
    assert lock_of(ea).owner is None  # eviction let go of the lock it took


def test_objects_with_uncommitted_changes_are_skipped():
    heap = LoadedSet(15, threading.Lock())
    (a, ea), (b, eb) = loaded(2)
    heap.touch(a, ea, 10)
    heap.touch(b, eb, 10)
    ea.__dict__["_dc_pending"] = 1  # a request changed it and has not stored the change yet
    heap.evict()
    assert [is_loaded(e) for e in (ea, eb)] == [True, False] and heap.total == 10


def test_objects_a_move_holds_are_unloaded_and_stay_held():
    heap = LoadedSet(5, threading.Lock())
    (a, ea), (b, eb) = loaded(2)
    heap.touch(a, ea, 10)
    heap.touch(b, eb, 10)
    assert lock_of(ea).acquire(MOVE_CHAIN_PREFIX + "42")
    assert lock_of(eb).acquire("moving-but-not-a-move")  # only the prefix makes a move
    heap.evict()
    assert [is_loaded(e) for e in (ea, eb)] == [False, True]
    assert lock_of(ea).owner == MOVE_CHAIN_PREFIX + "42" and lock_of(eb).owner == "moving-but-not-a-move"
    assert (heap.total, len(heap)) == (10, 1)


def test_when_everything_is_held_eviction_gives_up_without_waiting():
    heap = LoadedSet(5, threading.Lock())
    entries = loaded(3)
    for object_id, employee in entries:
        heap.touch(object_id, employee, 10)
        assert lock_of(employee).acquire("call-1")
    heap.evict()  # would hang here if eviction waited for a lock
    assert all(is_loaded(employee) for _, employee in entries) and (heap.total, len(heap)) == (30, 3)
    for _, employee in entries:
        lock_of(employee).release()
    heap.evict()
    assert not any(is_loaded(employee) for _, employee in entries) and (heap.total, len(heap)) == (0, 0)


class RecordingLock:
    """The load lock, recording what was loaded when it was taken and when it was let go."""

    def __init__(self, employees: list[Employee]) -> None:
        self._lock = threading.Lock()
        self.employees = employees
        self.at_enter: list[bool] = []
        self.at_exit: list[bool] = []

    def __enter__(self) -> "RecordingLock":
        self._lock.acquire()
        self.at_enter = [is_loaded(e) for e in self.employees]
        return self

    def __exit__(self, *exc: object) -> None:
        self.at_exit = [is_loaded(e) for e in self.employees]
        self._lock.release()


def test_unloading_happens_holding_the_load_lock():
    """A read reloads an object under the load lock: it must never interleave with an unload."""
    entries = loaded(2)
    load_lock = RecordingLock([employee for _, employee in entries])
    heap = LoadedSet(5, load_lock)
    for object_id, employee in entries:
        heap.touch(object_id, employee, 10)
    heap.evict()
    assert load_lock.at_enter == [True, True] and load_lock.at_exit == [False, False]
