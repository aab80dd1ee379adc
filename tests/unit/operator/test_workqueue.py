"""The work queue's guarantees: dedup, one worker per key, no lost events, delayed adds."""
import threading

import pytest

from dataclay_operator.controller import Controller, error_backoff
from dataclay_operator.reconcile import Outcome
from dataclay_operator.workqueue import ShutDown, WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_adds_are_deduplicated_in_order():
    q: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "c", "b"):
        q.add(key)
    assert [q.get(0), q.get(0), q.get(0), q.get(0)] == ["a", "b", "c", None]


def test_a_key_being_processed_is_not_handed_out_again_but_not_lost():
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert q.get(0) == "a"
    q.add("a")  # event during the pass
    assert q.get(0) is None  # not concurrently
    q.done("a")
    assert q.get(0) == "a"  # processed again afterwards
    q.done("a")
    assert q.get(0) is None


def test_delayed_adds_keep_the_earliest_time():
    clock = Clock()
    q: WorkQueue[str] = WorkQueue(clock)
    q.add_after("a", 30)
    q.add_after("a", 10)
    q.add_after("a", 60)
    assert q.get(0) is None
    clock.now += 10
    assert q.get(0) == "a"
    q.done("a")
    clock.now += 100
    assert q.get(0) is None  # the superseded entries do not fire again


def test_forget_drops_pending_delayed_adds():
    clock = Clock()
    q: WorkQueue[str] = WorkQueue(clock)
    q.add_after("a", 5)
    q.forget("a")
    clock.now += 10
    assert q.get(0) is None


def test_shutdown_wakes_waiting_workers():
    q: WorkQueue[str] = WorkQueue()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            q.get()
        except ShutDown as exc:
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    q.shutdown()
    thread.join(5)
    assert not thread.is_alive() and len(errors) == 1


def test_controller_never_runs_one_key_twice_at_once_and_requeues_events():
    """Two workers; an event arrives for the key while its pass runs: a second pass follows it."""
    inside, release, done = threading.Event(), threading.Event(), threading.Event()
    calls: list[tuple[str, str]] = []
    concurrent = []
    active = set()
    lock = threading.Lock()

    def reconcile(namespace: str, name: str) -> Outcome:
        with lock:
            if (namespace, name) in active:
                concurrent.append(name)
            active.add((namespace, name))
            calls.append((namespace, name))
            count = len(calls)
        if count == 1:
            inside.set()
            release.wait(10)
        with lock:
            active.discard((namespace, name))
        if count == 2:
            done.set()
        return Outcome(None)

    controller = Controller(reconcile, workers=2)
    controller.start()
    try:
        controller.enqueue(("ns", "dc"))
        assert inside.wait(10)
        controller.enqueue(("ns", "dc"))
        controller.enqueue(("ns", "dc"))
        release.set()
        assert done.wait(10)
    finally:
        controller.stop(10)
    assert calls == [("ns", "dc"), ("ns", "dc")] and concurrent == []


def test_controller_retries_a_failing_pass():
    second = threading.Event()
    attempts = []

    def reconcile(namespace: str, name: str) -> Outcome:
        attempts.append(name)
        if len(attempts) == 1:
            raise RuntimeError("API server away")
        second.set()
        return Outcome(None)

    controller = Controller(reconcile, workers=1)
    controller.start()
    try:
        controller.enqueue(("ns", "dc"))
        assert second.wait(10)  # retried after error_backoff(1) == 1s
    finally:
        controller.stop(10)
    assert attempts == ["dc", "dc"]


@pytest.mark.parametrize("failures, delay", [(1, 1), (2, 2), (5, 16), (50, 120)])
def test_error_backoff(failures, delay):
    assert error_backoff(failures) == delay
