"""The decisions of replication, as pure functions (no network, no storage): where a new replica
goes, which objects need one there, where a committed change must be sent, and what to do with
the replicas that did not confirm it. dataclay_backend.replicas carries them out."""
from __future__ import annotations

import random
from typing import Iterable, Mapping
from uuid import UUID

from dataclay.exceptions import BackendDrainingError, NoBackendAvailableError
from dataclay.transport import BackendInfo


def choose_destination(backends: Iterable[BackendInfo], master: UUID, holders: Iterable[UUID],
                       rng: random.Random | None = None) -> UUID:
    """dataClay's choice for new_replica(backend_id=None): a random backend that holds no copy
    yet (neither the master nor a replica holder) and takes new objects (not draining)."""
    taken = {master, *holders}
    candidates = sorted((b.id for b in backends if b.id not in taken and not b.draining), key=str)
    if not candidates:
        raise NoBackendAvailableError(
            "no backend can take a new replica: every backend that is not draining already holds a copy of the object")
    return (rng or random).choice(candidates)


def check_destination(info: BackendInfo) -> None:
    """A named destination must take new objects."""
    if info.draining:
        raise BackendDrainingError(
            f"backend {info.name} ({info.id}) is being drained and takes no new replicas; use another backend",
            backend_id=info.id)


def needs_replica(object_id: UUID, destination: UUID, master: UUID, holders: Mapping[UUID, set[UUID]]) -> bool:
    """Whether replicating object_id onto destination adds a copy: replicating onto the master's
    own backend or onto a backend that already holds a replica is a no-op (so a recursive
    replica skips what is there already)."""
    return destination != master and destination not in holders.get(object_id, ())


def fan_out(object_ids: Iterable[UUID], holders: Mapping[UUID, set[UUID]]) -> dict[UUID, list[UUID]]:
    """Where committed changes go: holder backend -> the changed objects it holds a replica of.
    Empty (and no work at all) for objects without replicas."""
    plan: dict[UUID, list[UUID]] = {}
    if not holders:
        return plan
    for object_id in object_ids:
        for holder in holders.get(object_id, ()):
            plan.setdefault(holder, []).append(object_id)
    return plan


def unconfirmed(plan: Mapping[UUID, list[UUID]], failures: Mapping[UUID, BaseException]) -> dict[UUID, list[UUID]]:
    """The replicas to drop from the directory before the reply: every object sent to a holder
    that did not confirm (whatever the reason: unreachable, timed out, refused, disk full), since
    it may lack the change and must never be served again."""
    return {holder: list(plan[holder]) for holder in plan if holder in failures}
