"""Worker threads that run reconcile passes off the work queue.

kopf delivers watch events; this turns them into at most one concurrent reconcile per DataClay
(client-go's workqueue discipline), with a periodic resync and exponential backoff on errors.
It needs no finalizer: nothing outside Kubernetes has to be cleaned up when a DataClay goes.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from dataclay_operator.reconcile import Outcome, describe_error
from dataclay_operator.workqueue import ShutDown, WorkQueue

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)

ERROR_BACKOFF_FIRST = 1.0
ERROR_BACKOFF_MAX = 120.0


def error_backoff(failures: int) -> float:
    """Delay before retrying a pass that raised, after `failures` consecutive failures."""
    return min(ERROR_BACKOFF_FIRST * 2 ** max(failures - 1, 0), ERROR_BACKOFF_MAX)


class Controller:
    def __init__(self, reconcile: Callable[[str, str], Outcome], workers: int) -> None:
        self.queue: WorkQueue[Key] = WorkQueue()
        self._reconcile = reconcile
        self._failures: dict[Key, int] = {}
        self._threads = [threading.Thread(target=self._work, name=f"dataclay-reconcile-{i}", daemon=True)
                         for i in range(workers)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking work; wait (bounded) for passes in flight, e.g. a drain, to finish."""
        self.queue.shutdown()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.ident is not None:  # a replica that never led started none
                thread.join(max(deadline - time.monotonic(), 0))

    def enqueue(self, key: Key) -> None:
        self.queue.add(key)

    def forget(self, key: Key) -> None:
        self.queue.forget(key)

    def _work(self) -> None:
        while True:
            try:
                key = self.queue.get()
            except ShutDown:
                return
            assert key is not None  # get() without a timeout waits for a key
            try:
                self._process(key)
            finally:
                self.queue.done(key)

    def _process(self, key: Key) -> None:
        try:
            outcome = self._reconcile(*key)
        except Exception as exc:  # noqa: BLE001 - a worker must survive any failed pass
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            delay = error_backoff(failures)
            logger.error("%s/%s: reconcile failed (%d in a row), retrying in %.0fs: %s",
                         *key, failures, delay, describe_error(exc), exc_info=failures == 1)
            self.queue.add_after(key, delay)
            return
        self._failures.pop(key, None)
        if outcome.requeue_after is None:
            self.queue.forget(key)
        else:
            self.queue.add_after(key, outcome.requeue_after)
