"""A commit point: the one metadata transaction that decides a move or a consolidation.

`reach(attempt, refused, unknown)` asks until it gets an answer. A refusal (one of `refused`)
means definitely not committed and is raised as is. Any other failure (the metadata service did
not answer, or its reply was lost after it committed) is asked again after the COMMIT_POINT
backoff; `attempt(n)` is told how many tries came before, so it can ask "did it commit?"
instead of committing again. When the tries run out the outcome is unknown: `unknown(last
error)` is raised (an OutcomeUnknownError), and the caller resolves it later
(dataclay_backend.resolve_later) without serving the objects meanwhile.
"""
from __future__ import annotations

import time
from typing import Callable

from dataclay.exceptions import OutcomeUnknownError
from dataclay_backend.backoff import COMMIT_POINT, COMMIT_POINT_BUDGET, COMMIT_POINT_RETRIES


class NotCommitted(Exception):
    """Raised by an attempt that learnt the transaction did not (and now cannot) commit:
    `reach` then raises the failure that made it ask."""


def reach(
    attempt: Callable[[int], None],
    refused: tuple[type[BaseException], ...],
    unknown: Callable[[Exception], OutcomeUnknownError],
) -> None:
    """Return once `attempt` committed; raise if it was refused, or the outcome is unknown."""
    error: Exception | None = None
    delays = COMMIT_POINT.delays(COMMIT_POINT_RETRIES)
    give_up_at = time.monotonic() + COMMIT_POINT_BUDGET
    tries = 0
    while True:
        try:
            attempt(tries)
            return
        except refused:
            raise
        except NotCommitted:
            assert error is not None
            raise error from None
        except Exception as exc:
            error = exc
        tries += 1
        delay = next(delays, None)
        if delay is None or time.monotonic() + delay > give_up_at:
            raise unknown(error)
        time.sleep(delay)  # bounded: COMMIT_POINT_RETRIES delays, a few seconds in all
