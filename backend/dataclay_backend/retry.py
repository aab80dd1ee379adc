"""Settling later: the one way a backend keeps trying something that needs the metadata service
(an in-doubt move, an undecided consolidation, telling the directory about retired versions).

`keep_trying(attempt, what)` calls `attempt()` in the background until it returns True, waiting
longer each time (capped), and gives up after a bounded number of tries with an error that says
what to do: every one of these is also settled by the backend's recovery when it restarts.
Attempts run on a few long-lived threads (starting a thread per attempt cost a consolidation a
third of its time); one timer thread hands them over when they are due.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

log = logging.getLogger(__name__)

FIRST_DELAY = 0.5
MAX_DELAY = 30.0
ATTEMPTS = 60  # about half an hour at the capped delay
WORKERS = 4  # attempts that may wait on the metadata service at once


class _Scheduler:
    """Runs callables on the worker pool, now or after a delay."""

    def __init__(self) -> None:
        self._workers = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="dataclay-settle")
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._timer: threading.Thread | None = None

    def call_later(self, delay: float, function: Callable[[], None]) -> None:
        if delay <= 0:
            self._workers.submit(function)
            return
        with self._changed:
            heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), function))
            if self._timer is None:
                self._timer = threading.Thread(target=self._hand_over, name="dataclay-settle-timer", daemon=True)
                self._timer.start()
            self._changed.notify()

    def _hand_over(self) -> None:
        while True:
            with self._changed:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._changed.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, function = heapq.heappop(self._due)
            self._workers.submit(function)


_SCHEDULER = _Scheduler()


def keep_trying(attempt: Callable[[], bool], what: str, delay: float = FIRST_DELAY, attempts: int = ATTEMPTS) -> None:
    def run() -> None:
        try:
            done = attempt()
        except Exception as exc:  # the metadata service (or a backend) is not answering yet
            log.warning("%s: not yet (%s); trying again in %.1fs", what, exc, max(delay * 2, FIRST_DELAY))
            done = False
        if done:
            return
        if attempts <= 1:
            log.error("%s: gave up; restarting this backend settles it from the metadata service", what)
            return
        keep_trying(attempt, what, min(max(delay * 2, FIRST_DELAY), MAX_DELAY), attempts - 1)

    _SCHEDULER.call_later(delay, run)
