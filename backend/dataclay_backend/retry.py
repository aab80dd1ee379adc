"""Settling later: the one way a backend keeps trying something that needs the metadata service
(an in-doubt move, an undecided consolidation, telling the directory about retired versions).

`keep_trying(attempt, what)` calls `attempt()` on a timer thread until it returns True, waiting
longer each time (capped), and gives up after a bounded number of tries with an error that says
what to do: every one of these is also settled by the backend's recovery when it restarts.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)

FIRST_DELAY = 0.5
MAX_DELAY = 30.0
ATTEMPTS = 60  # about half an hour at the capped delay


def keep_trying(attempt: Callable[[], bool], what: str, delay: float = FIRST_DELAY, attempts: int = ATTEMPTS) -> None:
    def run() -> None:
        try:
            done = attempt()
        except Exception as exc:  # the metadata service (or a backend) is not answering yet
            log.warning("%s: not yet (%s); trying again in %.1fs", what, exc, delay)
            done = False
        if done:
            return
        if attempts <= 1:
            log.error("%s: gave up; restarting this backend settles it from the metadata service", what)
            return
        keep_trying(attempt, what, min(delay * 2, MAX_DELAY), attempts - 1)

    timer = threading.Timer(delay, run)
    timer.daemon = True
    timer.start()
