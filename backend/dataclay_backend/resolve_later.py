"""Resolving later: the one way a backend keeps trying something that needs the metadata service
(the outcome of an in-doubt move, of an undecided consolidation, telling the directory about
retired versions).

`resolve_later(attempt, what)` calls `attempt()` in the background until it returns True, waiting
longer each time (the RESOLVE_LATER backoff), and gives up after a bounded number of tries with an error that says
what to do: every one of these is also resolved by the backend's recovery when it restarts.
Attempts run on a few long-lived daemon threads (starting a thread per attempt cost a
consolidation a third of its time; daemons, so that an attempt stuck on a peer never holds up a
backend's exit); one timer thread hands them over when they are due.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from typing import Callable

from dataclay_backend.backoff import RESOLVE_LATER

log = logging.getLogger(__name__)

ATTEMPTS = 360  # about half an hour at the capped delay
WORKERS = 4  # attempts that may wait on the metadata service at once


class _Scheduler:
    """Runs callables on WORKERS daemon threads, now or after a delay."""

    def __init__(self) -> None:
        self._ready: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._started = False

    def call_later(self, delay: float, function: Callable[[], None]) -> None:
        with self._changed:
            if not self._started:
                self._started = True
                threading.Thread(target=self._hand_over, name="dataclay-resolve-timer", daemon=True).start()
                for number in range(WORKERS):
                    threading.Thread(target=self._work, name=f"dataclay-resolve-{number}", daemon=True).start()
            if delay > 0:
                heapq.heappush(self._due, (time.monotonic() + delay, next(self._order), function))
                self._changed.notify()
                return
        self._ready.put(function)

    def _hand_over(self) -> None:
        while True:
            with self._changed:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._changed.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, function = heapq.heappop(self._due)
            self._ready.put(function)

    def _work(self) -> None:
        while True:
            function = self._ready.get()
            try:
                function()
            except Exception:  # never lose a worker
                log.exception("resolving in the background failed")


_SCHEDULER = _Scheduler()


def resolve_later(
    attempt: Callable[[], bool], what: str, delay: float = RESOLVE_LATER.first, attempts: int = ATTEMPTS
) -> None:
    def run() -> None:
        following = RESOLVE_LATER.after(delay)
        try:
            done = attempt()
        except Exception as exc:  # the metadata service (or a backend) is not answering yet
            log.warning("%s: not yet (%s); trying again in %.1fs", what, exc, following)
            done = False
        if done:
            return
        if attempts <= 1:
            log.error("%s: gave up; restarting this backend resolves it from the metadata service", what)
            return
        resolve_later(attempt, what, following, attempts - 1)

    _SCHEDULER.call_later(delay, run)
