"""Status computed from observed objects: phase, counts, conditions with typed reasons."""
from typing import Any

from dataclay_operator.scaling import Bypass
from dataclay_operator.status import (ConditionType, DrainProgress, Observed, Phase, Reason, backend_entries,
                                      compute_status, get_condition, status_patch)

T0, T1 = "2024-01-01T00:00:00Z", "2024-01-01T00:05:00Z"


def pod(name: str, ready: bool = True, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, **meta},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def sts(replicas: int, generation: int = 1, observed: int = 1, updated: int | None = None,
        current_rev: str = "r1", update_rev: str = "r1") -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "replicas": replicas,
                       "updatedReplicas": replicas if updated is None else updated,
                       "currentRevision": current_rev, "updateRevision": update_rev}}


def observed(desired: int = 2, backends: int | None = None, ready: int | None = None, metadata_ready: bool = True,
             **kw: Any) -> Observed:
    backends = desired if backends is None else backends
    ready = backends if ready is None else ready
    defaults: dict[str, Any] = dict(
        generation=3, desired_backends=desired, endpoint="dc-metadata.ns.svc:16587",
        metadata_sts=sts(1), backend_sts=sts(backends),
        metadata_pods=[pod("dc-metadata-0", metadata_ready)],
        backend_pods=[pod(f"dc-backend-{i}", i < ready) for i in range(backends)],
    )
    defaults.update(kw)
    return Observed(**defaults)


def cond(status: dict[str, Any], ctype: ConditionType) -> tuple[str, str]:
    c = get_condition(status, ctype)
    assert c is not None
    return c["status"], c["reason"]


def test_all_ready():
    status = compute_status(observed(), None, T0)
    assert status["phase"] == Phase.READY.value
    assert (status["ready"], status["readyBackends"], status["desiredBackends"]) == ("2/2", 2, 2)
    assert status["observedGeneration"] == 3 and status["metadataReady"] is True
    assert status["endpoint"] == "dc-metadata.ns.svc:16587"
    assert cond(status, ConditionType.READY) == ("True", Reason.ALL_READY.value)
    assert cond(status, ConditionType.PROGRESSING) == ("False", Reason.RECONCILED.value)
    assert cond(status, ConditionType.DEGRADED) == ("False", Reason.AS_EXPECTED.value)
    assert status["backends"] == [{"pod": "dc-backend-0", "ready": True}, {"pod": "dc-backend-1", "ready": True}]
    assert "drain" not in status
    assert all(c["lastTransitionTime"] == T0 and c["observedGeneration"] == 3 for c in status["conditions"])


def test_just_created():
    status = compute_status(observed(metadata_sts=None, backend_sts=None, metadata_pods=[], backend_pods=[]), None, T0)
    assert status["phase"] == Phase.PROVISIONING.value
    assert status["ready"] == "0/2" and status["metadataReady"] is False
    assert cond(status, ConditionType.READY) == ("False", Reason.METADATA_NOT_READY.value)
    assert cond(status, ConditionType.PROGRESSING) == ("True", Reason.CREATING.value)


def test_backends_starting():
    status = compute_status(observed(desired=3, ready=1), None, T0)
    assert status["phase"] == Phase.PROVISIONING.value and status["ready"] == "1/3"
    assert cond(status, ConditionType.READY) == ("False", Reason.BACKENDS_NOT_READY.value)
    assert cond(status, ConditionType.PROGRESSING) == ("True", Reason.PODS_STARTING.value)
    assert "1/3 backends ready" in get_condition(status, ConditionType.READY)["message"]


def test_rolling_out_a_new_template():
    for backend_sts in (sts(2, generation=2, observed=1), sts(2, updated=1),
                        sts(2, current_rev="r1", update_rev="r2")):
        status = compute_status(observed(backend_sts=backend_sts), None, T0)
        assert cond(status, ConditionType.PROGRESSING) == ("True", Reason.ROLLING_OUT.value)


def test_draining_counts_only_backends_that_stay():
    drain = DrainProgress(("dc-backend-2",), moved=40, total=100)
    status = compute_status(observed(desired=2, backends=3, drain=drain), None, T0)
    assert status["phase"] == Phase.DRAINING.value
    assert status["ready"] == "2/2"  # dc-backend-2 is going away
    assert len(status["backends"]) == 3
    assert status["drain"] == {"backends": ["dc-backend-2"], "objectsMoved": 40, "objectsTotal": 100,
                               "state": "Running"}
    assert cond(status, ConditionType.PROGRESSING) == ("True", Reason.DRAINING.value)
    assert "40/100" in get_condition(status, ConditionType.PROGRESSING)["message"]
    assert cond(status, ConditionType.READY) == ("True", Reason.ALL_READY.value)  # still serving


def test_failed_drain_is_degraded_with_a_clear_message():
    drain = DrainProgress(("dc-backend-2",), 3, 10, error="BackendUnavailableError: dc-backend-1 is down")
    status = compute_status(observed(desired=2, backends=3, drain=drain), None, T0)
    assert status["phase"] == Phase.DEGRADED.value
    assert cond(status, ConditionType.DEGRADED) == ("True", Reason.DRAIN_FAILED.value)
    message = get_condition(status, ConditionType.DEGRADED)["message"]
    assert "dc-backend-2" in message and "dc-backend-1 is down" in message and "nothing removed" in message
    assert status["drain"]["state"] == "Failed" and status["drain"]["message"].startswith("BackendUnavailableError")


BYPASS = Bypass(applied=3, live=1, removed=("dc-backend-1", "dc-backend-2"))


def test_a_statefulset_lowered_behind_the_operators_back_is_degraded_with_what_to_do():
    status = compute_status(observed(desired=3, backends=1, name="dc", bypass=BYPASS), None, T0)
    assert status["phase"] == Phase.DEGRADED.value
    assert cond(status, ConditionType.DEGRADED) == ("True", Reason.BACKENDS_REMOVED_WITHOUT_DRAIN.value)
    message = get_condition(status, ConditionType.DEGRADED)["message"]
    assert "3 -> 1" in message and "dc-backend-1, dc-backend-2 went without a drain" in message
    assert "whenScaled=Delete" in message and "kubectl scale dataclay dc --replicas=N" in message
    assert cond(status, ConditionType.READY) == ("False", Reason.BACKENDS_NOT_READY.value)


def test_the_bypass_stays_reported_until_the_removed_backends_are_back_and_ready():
    seen = compute_status(observed(desired=3, backends=1, name="dc", bypass=BYPASS), None, T0)
    restoring = compute_status(observed(desired=3, backends=3, ready=1), seen, T1)  # pods recreated, not ready
    assert cond(restoring, ConditionType.DEGRADED) == ("True", Reason.BACKENDS_REMOVED_WITHOUT_DRAIN.value)
    assert get_condition(restoring, ConditionType.DEGRADED) == get_condition(seen, ConditionType.DEGRADED)
    back = compute_status(observed(desired=3, backends=3), restoring, T1)
    assert cond(back, ConditionType.DEGRADED) == ("False", Reason.AS_EXPECTED.value)
    assert back["phase"] == Phase.READY.value


def test_a_bypass_outranks_a_failed_drain_and_other_degradations_do_not_linger():
    drain = DrainProgress(("dc-backend-2",), error="no data plane")
    status = compute_status(observed(desired=2, backends=1, name="dc", bypass=BYPASS, drain=drain), None, T0)
    assert cond(status, ConditionType.DEGRADED)[1] == Reason.BACKENDS_REMOVED_WITHOUT_DRAIN.value
    failed = compute_status(observed(desired=3, backends=3, ready=1, drain=drain), None, T0)
    later = compute_status(observed(desired=3, backends=3, ready=1), failed, T1)  # only a bypass is sticky
    assert cond(later, ConditionType.DEGRADED) == ("False", Reason.AS_EXPECTED.value)


def test_status_carries_the_scale_subresources_replicas_and_selector():
    status = compute_status(observed(desired=2, backends=3, selector="app.kubernetes.io/instance=dc"), None, T0)
    assert (status["replicas"], status["selector"]) == (3, "app.kubernetes.io/instance=dc")
    assert compute_status(observed(backend_sts=None), None, T0)["replicas"] == 0


def test_reconcile_error_is_degraded():
    status = compute_status(observed(error=(Reason.RECONCILE_FAILED, "403 Forbidden")), None, T0)
    assert status["phase"] == Phase.DEGRADED.value
    assert cond(status, ConditionType.DEGRADED) == ("True", Reason.RECONCILE_FAILED.value)


def test_transition_times_change_only_with_the_status():
    first = compute_status(observed(ready=1), None, T0)
    same = compute_status(observed(ready=1), first, T1)
    assert same["conditions"] == first["conditions"]
    assert status_patch(first, same) is None  # nothing to write
    ready = compute_status(observed(), first, T1)
    times = {c["type"]: c["lastTransitionTime"] for c in ready["conditions"]}
    assert times == {"Ready": T1, "Progressing": T1, "Degraded": T0}


def test_status_patch_removes_stale_keys():
    drain = DrainProgress(("dc-backend-2",), 1, 2)
    during = compute_status(observed(backends=3, drain=drain), None, T0)
    after = compute_status(observed(), during, T1)
    patch = status_patch({**during, "kopf": {"progress": {}}}, after)
    assert patch is not None and patch["drain"] is None and patch["kopf"] is None
    assert patch["phase"] == Phase.READY.value


def test_backend_entries_by_ordinal_with_ids_when_known():
    pods = [pod("dc-backend-10"), pod("dc-backend-2", ready=False),
            pod("dc-backend-1"),
            pod("dc-backend-0", deletionTimestamp="2024-01-01T00:00:00Z")]
    assert backend_entries(pods, {"dc-backend-1": "b1", "dc-backend-7": "gone"}) == [
        {"pod": "dc-backend-0", "ready": False},  # terminating
        {"pod": "dc-backend-1", "ready": True, "backendId": "b1"},
        {"pod": "dc-backend-2", "ready": False},
        {"pod": "dc-backend-10", "ready": True},
    ]
