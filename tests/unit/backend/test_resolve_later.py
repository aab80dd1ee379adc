"""Resolving later (dataclay_backend.resolve_later): an attempt is called in the background
until it returns True, at most `attempts` times, and an attempt that raises is tried again.

Retries follow the RESOLVE_LATER backoff (0.5 s, then 1 s, ...; only the first delay is a
parameter), so the scenarios below start together, once for the module, and the tests check
what each one did: the module waits one backoff, not one per test. Every wait is on an
Event/Condition with a bound. To see that nothing more is called, the fixture waits (through
the same scheduler) until well after the next retry would have been due.
"""
import threading
import time

import pytest

from dataclay_backend.resolve_later import resolve_later

BOUND = 5.0  # no wait in this file lasts longer
NEXT_RETRY = 1.0  # RESOLVE_LATER.after(0.5): when a third try would come after the second


class Attempt:
    """Returns (or raises) the given outcomes in turn, then False; records when it was called."""

    def __init__(self, *outcomes) -> None:
        self.outcomes = list(outcomes)
        self.times: list[float] = []
        self._changed = threading.Condition()

    def __call__(self) -> bool:
        with self._changed:
            self.times.append(time.monotonic())
            self._changed.notify_all()
            outcome = self.outcomes.pop(0) if self.outcomes else False
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def wait_calls(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.times) >= count, timeout)

    @property
    def calls(self) -> int:
        with self._changed:
            return len(self.times)


@pytest.fixture(scope="module")
def scenarios():
    start = time.monotonic()
    runs = {
        "until_true": (Attempt(False, True), 2),
        "gives_up": (Attempt(), 2),  # always False, attempts=2
        "only_once": (Attempt(), 1),  # always False, attempts=1
        "survives_raise": (Attempt(ConnectionError("metadata service down"), True), 2),
        "first_delay": (Attempt(True), 1),
    }
    resolve_later(runs["until_true"][0], "until true", delay=0.0)
    resolve_later(runs["gives_up"][0], "gives up", delay=0.0, attempts=2)
    resolve_later(runs["only_once"][0], "only once", delay=0.0, attempts=1)
    resolve_later(runs["survives_raise"][0], "survives a raise", delay=0.0)
    resolve_later(runs["first_delay"][0], "first delay", delay=0.2)
    finished = {name: attempt.wait_calls(expected, BOUND) for name, (attempt, expected) in runs.items()}
    # A try beyond the expected ones would be due at most NEXT_RETRY after the last one: wait
    # (on the same scheduler) a little longer than that, then count.
    past_next_retry = threading.Event()
    resolve_later(lambda: past_next_retry.set() or True, "sentinel", delay=NEXT_RETRY + 0.1)
    waited = past_next_retry.wait(BOUND)
    return {"start": start, "finished": finished, "waited": waited,
            **{name: attempt for name, (attempt, _) in runs.items()}}


def test_keeps_calling_until_the_attempt_returns_true(scenarios):
    assert scenarios["finished"]["until_true"] and scenarios["waited"]
    assert scenarios["until_true"].calls == 2  # and no more after True


def test_stops_after_the_given_number_of_attempts(scenarios):
    assert scenarios["finished"]["gives_up"] and scenarios["waited"]
    assert scenarios["gives_up"].calls == 2
    assert scenarios["only_once"].calls == 1


def test_an_attempt_that_raises_is_tried_again(scenarios):
    assert scenarios["finished"]["survives_raise"] and scenarios["waited"]
    assert scenarios["survives_raise"].calls == 2


def test_a_retry_waits_the_backoff(scenarios):
    first, second = scenarios["gives_up"].times
    assert second - first >= 0.5 - 0.01  # RESOLVE_LATER.first: retries are never immediate


def test_the_first_try_waits_the_given_delay(scenarios):
    assert scenarios["finished"]["first_delay"]
    (called,) = scenarios["first_delay"].times
    assert called - scenarios["start"] >= 0.2 - 0.01
    assert scenarios["only_once"].times[0] < called  # delay 0.0 ran first


def test_workers_keep_working_after_an_attempt_raised(scenarios):
    """The scheduler's daemon threads outlive a failing attempt: a new attempt still runs."""
    assert scenarios["survives_raise"].calls == 2
    ran = threading.Event()
    resolve_later(lambda: ran.set() or True, "after a failure", delay=0.0)
    assert ran.wait(BOUND)
