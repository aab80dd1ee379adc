"""The one backoff of a backend: how long to wait before asking a peer (the metadata service,
another backend) again. Doubling from a first delay, capped."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class Backoff:
    first: float
    cap: float

    def after(self, delay: float) -> float:
        """The delay that follows `delay`: double it, at least `first`, at most `cap`."""
        return min(max(delay * 2, self.first), self.cap)

    def delays(self, count: int) -> Iterator[float]:
        """`count` delays: first, 2*first, ... capped."""
        delay = self.first
        for _ in range(count):
            yield delay
            delay = self.after(delay)


# Commit points: the caller is waiting for a reply, and the objects stay locked meanwhile, so a
# few seconds at most before the outcome is reported as unknown: 5 retries 0.1 ... 1.6 s apart
# (3.1 s in all), and none started after COMMIT_POINT_BUDGET (each try may wait for the
# connection: dataclay.transport.Deadlines.connect).
COMMIT_POINT = Backoff(first=0.1, cap=2.0)
COMMIT_POINT_RETRIES = 5
COMMIT_POINT_BUDGET = 10.0
# Resolving an outcome later, in the background: at most 5 s apart, so that what waits for the
# metadata service is resolved within seconds of its return (a call for an in-doubt object
# also asks at once).
RESOLVE_LATER = Backoff(first=0.5, cap=5.0)
