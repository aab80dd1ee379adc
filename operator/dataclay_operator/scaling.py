"""Scale decisions as pure functions: which backends to drain, and when replicas may drop.

A StatefulSet always removes its highest ordinals first, so shrinking from `current` to `desired`
removes pods `desired .. current-1`; those, and only those, are drained before replicas change.
Replicas lowered by anyone else (`detect_bypass`) are planned from what the operator applied.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dataclay_operator.api import ANNOTATION_APPLIED_REPLICAS, backend_pod_name


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


@dataclass(frozen=True)
class Bypass:
    """The backend StatefulSet's replicas were lowered by someone other than the operator (`kubectl
    scale sts`, an HPA, a GitOps tool): `removed` went without a drain."""

    applied: int
    live: int
    removed: tuple[str, ...]


def applied_replicas(sts: Mapping[str, Any] | None) -> int | None:
    """What the operator last applied to the StatefulSet (its annotation); None if unknown."""
    annotations = ((sts or {}).get("metadata") or {}).get("annotations") or {}
    value = str(annotations.get(ANNOTATION_APPLIED_REPLICAS, ""))
    return int(value) if value.isdigit() else None


def live_replicas(sts: Mapping[str, Any] | None) -> int | None:
    """The StatefulSet's spec.replicas (None: it does not exist yet)."""
    return None if sts is None else int((sts.get("spec") or {}).get("replicas", 1))


def detect_bypass(name: str, sts: Mapping[str, Any] | None) -> Bypass | None:
    """A Bypass if the live replicas are below what the operator applied."""
    applied, live = applied_replicas(sts), live_replicas(sts)
    if applied is None or live is None or live >= applied:
        return None
    return Bypass(applied, live, backends_to_remove(name, applied, live))


def current_replicas(sts: Mapping[str, Any] | None) -> int | None:
    """The replicas a scale plan starts from: what the operator applied when someone lowered them
    behind its back, so the backends they removed come back and are drained before they go."""
    live = live_replicas(sts)
    applied = applied_replicas(sts)
    return live if live is None or applied is None else max(live, applied)


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
