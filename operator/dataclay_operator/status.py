"""The DataClay status schema and its computation from observed objects (pure functions).

Status is an explicit schema, not a bag of handler results: `phase`, `observedGeneration`,
`ready` ("ready/desired", the printer column), `readyBackends`/`desiredBackends`, `metadataReady`,
`endpoint`, `image` (and `operatorImage` when a pinned DataClay runs another than the operator's),
`conditions` (Ready, Progressing, Degraded) with the typed reasons below, `backends`
(pod, backendId, ready), `backup` (the newest backup of the metadata database, with
spec.metadata.backup), `replicas` and `selector` (the scale subresource's status: backend pods
and their label selector, for `kubectl scale` and HPAs) and, while a scale-down drains or after it
failed, `drain`.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dataclay_operator.scaling import Bypass


class Phase(str, enum.Enum):
    PROVISIONING = "Provisioning"  # not every desired backend (or the metadata service) is ready
    READY = "Ready"
    DRAINING = "Draining"  # a scale-down is moving objects off the backends that will go away
    DEGRADED = "Degraded"  # see the Degraded condition's reason and message


class ConditionType(str, enum.Enum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


class Reason(str, enum.Enum):
    """Machine-readable condition reasons (CamelCase, as metav1.Condition requires)."""

    # Ready
    ALL_READY = "AllReady"
    METADATA_NOT_READY = "MetadataNotReady"
    BACKENDS_NOT_READY = "BackendsNotReady"
    # Progressing
    CREATING = "Creating"
    ROLLING_OUT = "RollingOut"
    PODS_STARTING = "PodsStarting"
    DRAINING = "Draining"
    RECONCILED = "Reconciled"
    # Degraded
    DRAIN_FAILED = "DrainFailed"
    BACKENDS_REMOVED_WITHOUT_DRAIN = "BackendsRemovedWithoutDrain"  # StatefulSet lowered behind our back
    RECONCILE_FAILED = "ReconcileFailed"
    INVALID_SPEC = "InvalidSpec"
    AS_EXPECTED = "AsExpected"


#: Which reasons each condition type may carry (the CRD test checks the schema against these).
REASONS_BY_TYPE: dict[ConditionType, frozenset[Reason]] = {
    ConditionType.READY: frozenset({Reason.ALL_READY, Reason.METADATA_NOT_READY, Reason.BACKENDS_NOT_READY}),
    ConditionType.PROGRESSING: frozenset({Reason.CREATING, Reason.ROLLING_OUT, Reason.PODS_STARTING,
                                          Reason.DRAINING, Reason.RECONCILED}),
    ConditionType.DEGRADED: frozenset({Reason.DRAIN_FAILED, Reason.BACKENDS_REMOVED_WITHOUT_DRAIN,
                                       Reason.RECONCILE_FAILED, Reason.INVALID_SPEC, Reason.AS_EXPECTED}),
}


@dataclass(frozen=True)
class DrainProgress:
    """A scale-down drain in flight (`error` None) or stopped by an error (the replicas stayed)."""

    backends: tuple[str, ...]
    moved: int = 0
    total: int = 0
    error: str | None = None


@dataclass(frozen=True)
class BackupState:
    """The newest backup of the metadata database, as its metadata service reports it (`file`
    None: none yet), and why the last scheduled one failed ("" if it did not)."""

    file: str | None = None
    time: str | None = None  # RFC 3339
    size: int = 0
    objects: int = 0
    aliases: int = 0
    error: str = ""


def backup_entry(backup: BackupState) -> dict[str, Any]:
    """status.backup."""
    entry: dict[str, Any] = {}
    if backup.file is not None:
        entry.update({"lastFile": backup.file, "lastTime": backup.time, "sizeBytes": backup.size,
                      "objects": backup.objects, "aliases": backup.aliases})
    if backup.error:
        entry["error"] = backup.error
    return entry


@dataclass(frozen=True)
class Observed:
    """Everything status is computed from, as read from the API server in one reconcile pass."""

    generation: int
    desired_backends: int
    endpoint: str
    metadata_sts: Mapping[str, Any] | None = None
    backend_sts: Mapping[str, Any] | None = None
    metadata_pods: Sequence[Mapping[str, Any]] = ()
    backend_pods: Sequence[Mapping[str, Any]] = ()
    drain: DrainProgress | None = None
    error: tuple[Reason, str] | None = None  # ReconcileFailed / InvalidSpec and its message
    backend_ids: Mapping[str, str] = field(default_factory=dict)  # pod name -> backend id (data plane)
    image: str | None = None  # the image applied to the pods
    operator_image: str | None = None  # the operator's, when a pinned DataClay runs another
    name: str = ""  # of the DataClay, for messages that say what to run
    selector: str = ""  # label selector of the backend pods (scale subresource)
    bypass: Bypass | None = None  # the backend StatefulSet was lowered by someone else in this pass
    backup: BackupState | None = None  # spec.metadata.backup is set and the metadata service answered


def pod_ready(pod: Mapping[str, Any]) -> bool:
    """Ready condition True and not terminating."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_ordinal(pod: Mapping[str, Any]) -> int:
    """StatefulSet ordinal from the pod name suffix (`<sts>-<ordinal>`); -1 if it has none."""
    suffix = (pod.get("metadata") or {}).get("name", "").rsplit("-", 1)[-1]
    return int(suffix) if suffix.isdigit() else -1


def backend_entries(pods: Sequence[Mapping[str, Any]], backend_ids: Mapping[str, str] | None = None
                    ) -> list[dict[str, Any]]:
    """status.backends: one entry per backend pod, by ordinal.

    The backend id is created by the backend in its data directory and registered under the pod's
    name; the operator learns it from the metadata service (`backend_ids`, pod name -> id) and
    omits it while it does not know it.
    """
    entries = []
    for pod in sorted(pods, key=pod_ordinal):
        meta = pod.get("metadata") or {}
        entry: dict[str, Any] = {"pod": meta.get("name", ""), "ready": pod_ready(pod)}
        backend_id = (backend_ids or {}).get(entry["pod"])
        if backend_id:
            entry["backendId"] = backend_id
        entries.append(entry)
    return entries


def statefulset_rolling_out(sts: Mapping[str, Any]) -> bool:
    """The StatefulSet controller has not yet brought every pod to the current template."""
    meta, spec, st = sts.get("metadata") or {}, sts.get("spec") or {}, sts.get("status") or {}
    if st.get("observedGeneration", 0) < meta.get("generation", 1):
        return True
    if st.get("updateRevision") and st.get("currentRevision") != st.get("updateRevision"):
        return True
    return st.get("updatedReplicas", 0) < spec.get("replicas", 1)


def _condition(ctype: ConditionType, ok: bool, reason: Reason, message: str) -> dict[str, Any]:
    assert reason in REASONS_BY_TYPE[ctype], (ctype, reason)
    return {"type": ctype.value, "status": "True" if ok else "False", "reason": reason.value, "message": message}


def bypass_message(name: str, bypass: Bypass) -> str:
    """What happened, what it means for the data, and what to do instead."""
    return (f"the backend StatefulSet was scaled {bypass.applied} -> {bypass.live} outside the operator: "
            f"{', '.join(bypass.removed)} went without a drain; the operator brings them back (their objects are "
            f"unreachable until they are ready; with pvcRetentionPolicy.whenScaled=Delete their volumes, and the "
            f"objects on them, are lost). Scale the DataClay instead: kubectl scale dataclay {name} --replicas=N "
            f"(the chart's ValidatingAdmissionPolicy refuses direct scale-downs)")


def bypass_still_reported(observed: Observed, previous: Sequence[Mapping[str, Any]], ready_backends: int
                          ) -> str | None:
    """The Degraded message for a StatefulSet lowered behind the operator's back: seen in this pass,
    or seen before and the backends it removed are not all back and ready (None: nothing to report).
    The previous condition is the memory: the operator restores replicas in the same pass."""
    if observed.bypass is not None:
        return bypass_message(observed.name, observed.bypass)
    before = next((c for c in previous if c.get("type") == ConditionType.DEGRADED.value), None)
    if (before is not None and before.get("status") == "True"
            and before.get("reason") == Reason.BACKENDS_REMOVED_WITHOUT_DRAIN.value
            and ready_backends < observed.desired_backends):
        return str(before.get("message", ""))
    return None


def compute_conditions(observed: Observed, ready_backends: int, metadata_ready: bool,
                       previous: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """Ready, Progressing and Degraded (without timestamps; see `compute_status`); `previous` are
    the conditions status reports now."""
    desired = observed.desired_backends
    summary = f"{ready_backends}/{desired} backends ready, metadata service {'ready' if metadata_ready else 'not ready'}"
    if not metadata_ready:
        ready = _condition(ConditionType.READY, False, Reason.METADATA_NOT_READY, summary)
    elif ready_backends < desired:
        ready = _condition(ConditionType.READY, False, Reason.BACKENDS_NOT_READY, summary)
    else:
        ready = _condition(ConditionType.READY, True, Reason.ALL_READY, summary)

    drain = observed.drain
    if drain is not None and drain.error is None:
        progressing = _condition(ConditionType.PROGRESSING, True, Reason.DRAINING,
                                 f"draining {', '.join(drain.backends)}: {drain.moved}/{drain.total} objects moved")
    elif observed.metadata_sts is None or observed.backend_sts is None:
        progressing = _condition(ConditionType.PROGRESSING, True, Reason.CREATING, "creating the StatefulSets")
    elif any(statefulset_rolling_out(s) for s in (observed.metadata_sts, observed.backend_sts)):
        progressing = _condition(ConditionType.PROGRESSING, True, Reason.ROLLING_OUT,
                                 "the StatefulSets are rolling out a new pod template or replica count")
    elif ready["status"] != "True":
        progressing = _condition(ConditionType.PROGRESSING, True, Reason.PODS_STARTING, summary)
    else:
        progressing = _condition(ConditionType.PROGRESSING, False, Reason.RECONCILED, "up to date")

    bypass = bypass_still_reported(observed, previous, ready_backends)
    if bypass is not None:
        degraded = _condition(ConditionType.DEGRADED, True, Reason.BACKENDS_REMOVED_WITHOUT_DRAIN, bypass)
    elif drain is not None and drain.error is not None:
        degraded = _condition(ConditionType.DEGRADED, True, Reason.DRAIN_FAILED,
                              f"scale-down stopped, replicas unchanged and nothing removed: cannot drain "
                              f"{', '.join(drain.backends)}: {drain.error}")
    elif observed.error is not None:
        degraded = _condition(ConditionType.DEGRADED, True, observed.error[0], observed.error[1])
    else:
        degraded = _condition(ConditionType.DEGRADED, False, Reason.AS_EXPECTED, "no problems detected")
    return [ready, progressing, degraded]


def with_transition_times(conditions: list[dict[str, Any]], previous: Sequence[Mapping[str, Any]],
                          generation: int, now: str) -> list[dict[str, Any]]:
    """Keep lastTransitionTime from `previous` when a condition's status did not change."""
    before = {c.get("type"): c for c in previous}
    result = []
    for cond in conditions:
        old = before.get(cond["type"])
        changed = old is None or old.get("status") != cond["status"] or not old.get("lastTransitionTime")
        result.append({**cond, "lastTransitionTime": now if changed else old["lastTransitionTime"],
                       "observedGeneration": generation})
    return result


def compute_status(observed: Observed, previous: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    """The full status for `observed`; `now` (RFC 3339) stamps conditions that changed."""
    previous = previous or {}
    desired = observed.desired_backends
    ready_backends = sum(1 for p in observed.backend_pods if pod_ready(p) and 0 <= pod_ordinal(p) < desired)
    metadata_ready = any(pod_ready(p) for p in observed.metadata_pods)
    conditions = compute_conditions(observed, ready_backends, metadata_ready, previous.get("conditions") or [])
    by_type = {c["type"]: c for c in conditions}
    if by_type[ConditionType.DEGRADED.value]["status"] == "True":
        phase = Phase.DEGRADED
    elif by_type[ConditionType.PROGRESSING.value]["reason"] == Reason.DRAINING.value:
        phase = Phase.DRAINING
    elif by_type[ConditionType.READY.value]["status"] == "True":
        phase = Phase.READY
    else:
        phase = Phase.PROVISIONING
    status: dict[str, Any] = {
        "observedGeneration": observed.generation,
        "phase": phase.value,
        "ready": f"{ready_backends}/{desired}",
        "readyBackends": ready_backends,
        "desiredBackends": desired,
        "metadataReady": metadata_ready,
        "endpoint": observed.endpoint,
        "conditions": with_transition_times(conditions, previous.get("conditions") or [], observed.generation, now),
        "backends": backend_entries(observed.backend_pods, observed.backend_ids),
        "replicas": int(((observed.backend_sts or {}).get("status") or {}).get("replicas") or 0),
        "selector": observed.selector,
    }
    if observed.image:
        status["image"] = observed.image
    if observed.operator_image and observed.operator_image != observed.image:
        status["operatorImage"] = observed.operator_image
    if observed.backup is not None:
        status["backup"] = backup_entry(observed.backup)
    if observed.drain is not None:
        drain = observed.drain
        status["drain"] = {
            "backends": list(drain.backends),
            "objectsMoved": drain.moved,
            "objectsTotal": drain.total,
            "state": "Failed" if drain.error else "Running",
            **({"message": drain.error} if drain.error else {}),
        }
    return status


def status_patch(previous: Mapping[str, Any] | None, status: Mapping[str, Any]) -> dict[str, Any] | None:
    """JSON merge patch turning `previous` into `status` (None if equal).

    Keys absent from `status` are nulled, which removes them, including kopf leftovers.
    """
    previous = previous or {}
    if dict(previous) == dict(status):
        return None
    patch: dict[str, Any] = {key: None for key in previous if key not in status}
    patch.update(status)
    return patch


def get_condition(status: Mapping[str, Any], ctype: ConditionType) -> Mapping[str, Any] | None:
    """The condition of that type, if reported."""
    return next((c for c in status.get("conditions") or [] if c.get("type") == ctype.value), None)

