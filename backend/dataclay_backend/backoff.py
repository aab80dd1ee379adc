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


# Commit points: the caller is waiting for a reply, so a few seconds at most (0.1 ... 1.6 s,
# 3.1 s in all) before the outcome is reported as unknown.
COMMIT_POINT = Backoff(first=0.1, cap=2.0)
COMMIT_POINT_RETRIES = 5
# Resolving an outcome later, in the background: nobody waits, so up to half a minute apart.
RESOLVE_LATER = Backoff(first=0.5, cap=30.0)
