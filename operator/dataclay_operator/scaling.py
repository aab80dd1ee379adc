"""Scale decisions as pure functions: which backends to drain, and when replicas may drop.

A StatefulSet always removes its highest ordinals first, so shrinking from `current` to `desired`
removes pods `desired .. current-1`; those, and only those, are drained before replicas change.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from dataclay_operator.api import backend_pod_name


@dataclass(frozen=True)
class ScalePlan:
    """What to do to the backend StatefulSet in this pass.

    `replicas` is written now; when `drain` is non-empty it equals the current replicas, and
    `target` is what replicas may become once every backend in `drain` is empty.
    """

    replicas: int
    target: int
    drain: tuple[str, ...] = ()

    @property
    def scale_down(self) -> bool:
        return bool(self.drain)


def backends_to_remove(name: str, current: int, desired: int) -> tuple[str, ...]:
    """Backend (pod) names a scale from `current` to `desired` removes, lowest ordinal first."""
    return tuple(backend_pod_name(name, ordinal) for ordinal in range(desired, current))


def plan_scale(name: str, desired: int, current: int | None) -> ScalePlan:
    """Plan one pass. `current` is the StatefulSet's spec.replicas (None: it does not exist yet)."""
    if current is None or desired >= current:
        return ScalePlan(replicas=desired, target=desired)
    return ScalePlan(replicas=current, target=desired, drain=backends_to_remove(name, current, desired))


def replicas_after_drain(drained_from: int, desired_now: int) -> int | None:
    """Replicas that are safe to set after draining every ordinal >= `drained_from`.

    The spec may have changed while the drain ran: any `desired_now >= drained_from` is safe
    (nothing un-drained is removed); a lower value needs another drain first (None).
    """
    return desired_now if desired_now >= drained_from else None


#: Retry delays after a failed drain: 10 s doubling up to 5 minutes.
DRAIN_RETRY_FIRST = 10.0
DRAIN_RETRY_MAX = 300.0


def drain_retry_delay(failures: int) -> float:
    """Seconds to wait before draining again after `failures` consecutive failures (>= 1)."""
    return min(DRAIN_RETRY_FIRST * 2 ** max(failures - 1, 0), DRAIN_RETRY_MAX)


@dataclass(frozen=True)
class LifecyclePlan:
    """What the directory's backend marks need after a pass that is not scaling down.

    `lift`: backends the spec wants (ordinal below replicas) that are still marked draining
    (a scale-down cancelled or interrupted mid-drain, or a scale-up of drained ordinals).
    `deregister`: drained backends the spec does not want whose pod is gone: retired for good.
    A backend gone without being drained (replicas lowered behind the operator's back) is not
    retired: it still owns objects, which only its pod coming back can serve."""

    lift: tuple[str, ...] = ()
    deregister: tuple[str, ...] = ()


def plan_lifecycle(name: str, desired: int, registered: Mapping[str, bool], pods: set[str]) -> LifecyclePlan:
    """`registered`: backend name -> draining, as the directory lists them; `pods`: backend pod
    names that exist."""
    wanted = {backend_pod_name(name, ordinal) for ordinal in range(desired)}
    return LifecyclePlan(
        lift=tuple(sorted(b for b, draining in registered.items() if draining and b in wanted)),
        deregister=tuple(sorted(b for b, draining in registered.items()
                                if draining and b not in wanted and b not in pods)),
    )
