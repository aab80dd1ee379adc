"""Leader election on a coordination.k8s.io/v1 Lease, so that two operator replicas are safe:
only the leader's workers reconcile; the others watch (their queues fill) and wait.

client-go's rules: the holder renews the Lease every `retry_period`; another replica takes it
over only once it has seen the same record unchanged for `lease_duration` on its own clock (so
clocks of different machines never have to agree); every write carries the resourceVersion it
read, so two candidates cannot both win (the loser gets 409 Conflict). A leader that cannot
renew within `renew_deadline` stops leading, and the process exits (the Deployment restarts it as
a candidate): never two leaders acting at once for longer than a renewal round. As client-go's
context does, the deadline bounds the calls themselves: an API server that does not answer would
otherwise hold a round for the client's request timeout (30 s), past the Lease's expiry.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from dataclay_operator.kube import Kube, KubeError, resource_path

logger = logging.getLogger(__name__)

LEASE_DURATION = 15.0
RENEW_DEADLINE = 10.0
RETRY_PERIOD = 2.0
MIN_CALL_TIMEOUT = 0.1  # seconds: a call is never sent with no time to answer


def _micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """One candidate. `try_acquire_or_renew()` is one round (tests call it with their own clock);
    `run()` loops rounds in a thread and calls `on_started` / `on_stopped`."""

    def __init__(self, kube: Kube, namespace: str, name: str, identity: str,
                 lease_duration: float = LEASE_DURATION, renew_deadline: float = RENEW_DEADLINE,
                 retry_period: float = RETRY_PERIOD, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.kube = copy.copy(kube)  # our own request timeout (set per round), the same connection pool
        self.identity = identity
        self.path = resource_path("coordination.k8s.io/v1", "leases", namespace, name)
        self.collection = resource_path("coordination.k8s.io/v1", "leases", namespace)
        self.name, self.namespace = name, namespace
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.clock, self.now = clock, now
        self._observed: tuple[Any, ...] | None = None  # the holder's record as last seen ...
        self._observed_at = 0.0  # ... and when (our clock) it last changed
        self._round_ends: float | None = None  # (our clock) no call of this round may last past it
        self.leading = False

    def _call(self, call: Callable[[], Any]) -> Any:
        """One API call, given only the time left in this round."""
        if self._round_ends is not None:
            self.kube.request_timeout = max(self._round_ends - self.clock(), MIN_CALL_TIMEOUT)
        return call()

    def _spec(self, transitions: int, acquired: str | None = None) -> dict[str, Any]:
        stamp = _micro_time(self.now())
        return {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": acquired or stamp, "renewTime": stamp, "leaseTransitions": transitions}

    def try_acquire_or_renew(self) -> bool:
        """One round: create the Lease, renew it, or take it over once expired. True if we lead."""
        lease = self._call(lambda: self.kube.get(self.path))
        if lease is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace}, "spec": self._spec(0)}
            return self._write(lambda: self.kube.create(self.collection, body))
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        holder = spec.get("holderIdentity")
        if holder == self.identity:
            body = dict(lease, spec=self._spec(spec.get("leaseTransitions") or 0, spec.get("acquireTime")))
        elif holder and self.clock() - self._observed_at < self.lease_duration:
            self.leading = False
            return False  # held by another, renewed within the lease duration (as we saw it)
        else:
            body = dict(lease, spec=self._spec((spec.get("leaseTransitions") or 0) + 1))
        return self._write(lambda: self.kube.replace(self.path, body))  # carries the resourceVersion read

    def _write(self, write: Callable[[], Any]) -> bool:
        try:
            written = self._call(write)
        except KubeError as exc:
            if exc.status in (409, 422):  # another candidate wrote first: it won this round
                self.leading = False
                return False
            raise
        spec = written.get("spec") or {}
        self._observed = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
        self._observed_at = self.clock()
        self.leading = True
        return True

    def run(self, on_started: Callable[[], None], on_stopped: Callable[[], None], stop: threading.Event) -> None:
        """Campaign until leading, then renew; call on_stopped if leadership is lost (not on `stop`)."""
        last_renewal = None
        while not stop.is_set():
            # a leader's calls end by its renew deadline, a candidate's within one
            self._round_ends = (self.clock() if last_renewal is None else last_renewal) + self.renew_deadline
            try:
                leading = self.try_acquire_or_renew()
            except Exception as exc:  # noqa: BLE001 - the API server may be away for a moment
                logger.warning("lease %s/%s: %s", self.namespace, self.name, exc)
                leading = False
            if leading:
                if last_renewal is None:
                    logger.info("lease %s/%s: %s leads", self.namespace, self.name, self.identity)
                    on_started()
                last_renewal = self.clock()
            elif last_renewal is not None and (self.clock() - last_renewal >= self.renew_deadline
                                               or self._observed and self._observed[0] != self.identity):
                logger.error("lease %s/%s: %s lost the lead; stopping", self.namespace, self.name, self.identity)
                on_stopped()
                return
            stop.wait(self.retry_period)
