"""A commit point's retry loop (dataclay_backend.commit_point.reach) and the backoff it waits by
(dataclay_backend.backoff). Real delays: only the exhausted-retries test waits them all (3.1 s)."""
import pytest

from dataclay.exceptions import ObjectBusyError, OutcomeUnknownError, VersionConflictError
from dataclay_backend.backoff import COMMIT_POINT, COMMIT_POINT_RETRIES, RESOLVE_LATER, Backoff
from dataclay_backend.commit_point import NotCommitted, reach


class Transient(Exception):
    """The metadata service did not answer (or its reply was lost)."""


class Attempts:
    """An attempt that fails with the given outcomes (exceptions) in turn, then succeeds."""

    def __init__(self, *outcomes: BaseException) -> None:
        self.outcomes = list(outcomes)
        self.tries: list[int] = []

    def __call__(self, tries: int) -> None:
        self.tries.append(tries)
        if self.outcomes:
            raise self.outcomes.pop(0)


def unknown(error: Exception) -> OutcomeUnknownError:
    made = OutcomeUnknownError(f"outcome unknown: {error}")
    made.last = error
    return made


REFUSED = (VersionConflictError, ObjectBusyError)


def test_returns_on_the_first_success():
    attempt = Attempts()
    assert reach(attempt, REFUSED, unknown) is None
    assert attempt.tries == [0]


@pytest.mark.parametrize("refusal", [VersionConflictError("conflict"), ObjectBusyError("busy")])
def test_a_refusal_is_raised_at_once(refusal):
    attempt = Attempts(refusal, refusal)
    with pytest.raises(type(refusal)) as raised:
        reach(attempt, REFUSED, unknown)
    assert raised.value is refusal and attempt.tries == [0]


def test_a_refusal_after_transient_errors_is_raised_as_is():
    refusal = VersionConflictError("conflict")
    attempt = Attempts(Transient("lost"), refusal)
    with pytest.raises(VersionConflictError) as raised:
        reach(attempt, REFUSED, unknown)
    assert raised.value is refusal and attempt.tries == [0, 1]


def test_transient_errors_are_retried_and_tries_count_up():
    attempt = Attempts(Transient("no answer"), Transient("reply lost"))
    reach(attempt, REFUSED, unknown)
    assert attempt.tries == [0, 1, 2]


def test_not_committed_raises_the_last_transient_error():
    last = Transient("reply lost")
    attempt = Attempts(last, NotCommitted())
    with pytest.raises(Transient) as raised:
        reach(attempt, REFUSED, unknown)
    assert raised.value is last and attempt.tries == [0, 1]


def test_exhausted_retries_raise_the_unknown_error_with_the_last_error():
    """The one test that waits the whole backoff (0.1 + 0.2 + 0.4 + 0.8 + 1.6 s)."""
    errors = [Transient(f"no answer {n}") for n in range(COMMIT_POINT_RETRIES + 1)]
    attempt = Attempts(*errors, *[Transient("never reached")] * 3)
    with pytest.raises(OutcomeUnknownError) as raised:
        reach(attempt, REFUSED, unknown)
    assert attempt.tries == list(range(COMMIT_POINT_RETRIES + 1))
    assert raised.value.last is errors[-1]


# ------------------------------------------------------------------ backoff
def test_delays_double_from_the_first_and_stop_at_the_cap():
    assert list(Backoff(first=1.0, cap=5.0).delays(6)) == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_delays_gives_exactly_count_delays():
    assert list(Backoff(first=0.5, cap=1.0).delays(0)) == []
    assert len(list(Backoff(first=0.5, cap=1.0).delays(3))) == 3


def test_after_doubles_at_least_first_at_most_cap():
    backoff = Backoff(first=0.5, cap=30.0)
    assert backoff.after(0.0) == 0.5  # at least first
    assert backoff.after(0.1) == 0.5
    assert backoff.after(2.0) == 4.0
    assert backoff.after(20.0) == 30.0  # at most cap


def test_the_commit_point_waits_a_few_seconds_in_all():
    delays = list(COMMIT_POINT.delays(COMMIT_POINT_RETRIES))
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6]
    assert sum(delays) == pytest.approx(3.1)


def test_resolving_later_is_capped_at_five_seconds():
    delays = list(RESOLVE_LATER.delays(100))
    assert delays[0] == 0.5 and max(delays) == 5.0 and delays[-1] == 5.0
    assert delays == sorted(delays)
