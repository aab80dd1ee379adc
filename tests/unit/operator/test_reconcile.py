"""One reconcile pass (dataclay_operator.reconcile.Reconciler) against an in-memory Kubernetes
API (fake_kube.FakeKube): the real children builders, status computation and event recorder;
only the API server and the data plane's network calls (drain, backend ids) are replaced."""
from datetime import datetime, timezone

import pytest

from dataclay_operator import api
from dataclay_operator.config import OperatorConfig
from dataclay_operator.events import EventRecorder
from dataclay_operator.kube import APPLY, resource_path
from dataclay_operator.reconcile import ChildConflict, Outcome, Reconciler, dataclay_path
from dataclay_operator.scaling import drain_retry_delay
from dataclay_operator.status import ConditionType, Phase, Reason, get_condition
from fake_kube import FakeKube

NS, NAME = "ns", "store"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
CONFIG = OperatorConfig(default_image="dataclay-k8s:test", resync_seconds=60.0)

DC = dataclay_path(NS, NAME)
BACKEND_STS = resource_path("apps/v1", "statefulsets", NS, api.backend_name(NAME))
METADATA_STS = resource_path("apps/v1", "statefulsets", NS, api.metadata_name(NAME))
CLIENT_CM = resource_path("v1", "configmaps", NS, api.client_config_name(NAME))
CHILDREN = {
    CLIENT_CM: "ConfigMap",
    resource_path("v1", "services", NS, api.metadata_name(NAME)): "Service",
    METADATA_STS: "StatefulSet",
    resource_path("v1", "services", NS, api.backend_name(NAME)): "Service",
    BACKEND_STS: "StatefulSet",
    resource_path("networking.k8s.io/v1", "networkpolicies", NS, api.network_policy_name(NAME)): "NetworkPolicy",
    resource_path("policy/v1", "poddisruptionbudgets", NS, api.disruption_budget_name(NAME)): "PodDisruptionBudget",
}


class Drains:
    """The data plane's drain, as the reconciler calls it; records what it saw when called."""

    def __init__(self, kube: FakeKube, moved: int = 0, error: Exception | None = None, during=None,
                 before=None) -> None:
        self.kube, self.moved, self.error, self.during, self.before = kube, moved, error, during, before
        self.calls: list[dict] = []

    def __call__(self, host, port, backend_names, on_progress=None, credentials=None) -> int:
        assert credentials is not None and str(credentials.identity) == "admin"  # drains as the admin
        if self.before is not None:
            self.before()
        seen = {"host": host, "port": port, "backends": list(backend_names), "at_call": len(self.kube.calls),
                "replicas": self.kube.get_object(BACKEND_STS)["spec"]["replicas"]}
        if on_progress is not None and self.moved:
            on_progress(self.moved // 2, self.moved)
            seen["status_midway"] = self.kube.get_object(DC)["status"]
        self.calls.append(seen)
        if self.during is not None:
            self.during()
        if self.error is not None:
            raise self.error
        if on_progress is not None:
            on_progress(self.moved, self.moved)
        return self.moved


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


def make_reconciler(kube: FakeKube, drain=None, config: OperatorConfig = CONFIG) -> Reconciler:
    def no_drain(*args, **kwargs):
        raise AssertionError("nothing should be drained here")

    return Reconciler(kube=kube, config=config, events=EventRecorder(kube), drain=drain or no_drain,
                      now=lambda: NOW, progress_interval=0.0)


def create_dataclay(kube: FakeKube, **spec) -> dict:
    return kube.create(dataclay_path(NS), {"apiVersion": api.API_VERSION, "kind": api.KIND,
                                           "metadata": {"name": NAME, "namespace": NS}, "spec": spec})


def set_spec(kube: FakeKube, **spec) -> None:
    kube.merge_patch(DC, {"spec": spec})


def child_writes(kube: FakeKube, since: int) -> list:
    return [call for call in kube.writes(since) if call.path in CHILDREN]


def status(kube: FakeKube) -> dict:
    return kube.get_object(DC)["status"]


def condition(kube: FakeKube, ctype: ConditionType) -> tuple[str, str]:
    found = get_condition(status(kube), ctype)
    return found["status"], found["reason"]


# ---------------------------------------------------------------------------------------- children

def test_the_first_pass_creates_every_child_controlled_by_the_dataclay(kube):
    dc = create_dataclay(kube, replicas=3)
    outcome = make_reconciler(kube).reconcile(NS, NAME)
    assert outcome == Outcome(CONFIG.resync_seconds)
    for path, kind in CHILDREN.items():
        child = kube.get_object(path)
        assert child is not None and child["kind"] == kind, path
        [owner] = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (api.KIND, NAME,
                                                                                    dc["metadata"]["uid"], True)
        assert child["metadata"]["labels"][api.LABEL_MANAGED_BY] == api.MANAGER
    assert kube.get_object(BACKEND_STS)["spec"]["replicas"] == 3
    assert all(call.content_type == APPLY for call in child_writes(kube, 0))  # server-side apply
    assert kube.event_reasons() == ["Created"] * 12  # 5 Secrets (CA, metadata, client, admin, backends) + 7 children
    assert status(kube)["observedGeneration"] == 1 and status(kube)["phase"] == Phase.PROVISIONING.value
    assert condition(kube, ConditionType.PROGRESSING) == ("True", Reason.ROLLING_OUT.value)
    assert condition(kube, ConditionType.DEGRADED) == ("False", Reason.AS_EXPECTED.value)


def test_a_second_pass_with_nothing_changed_writes_nothing(kube):
    create_dataclay(kube, replicas=2)
    reconciler = make_reconciler(kube)
    reconciler.reconcile(NS, NAME)
    before = len(kube.calls)
    assert reconciler.reconcile(NS, NAME) == Outcome(CONFIG.resync_seconds)
    assert kube.writes(before) == []  # no child patched, no event, no status write
    assert len(kube.calls) > before  # it did read everything again


def test_drift_in_a_child_is_patched_back_and_other_managers_fields_are_left_alone(kube):
    create_dataclay(kube, replicas=2)
    reconciler = make_reconciler(kube)
    reconciler.reconcile(NS, NAME)
    desired_template = kube.get_object(BACKEND_STS)["spec"]["template"]
    # Someone edits the children by hand: our fields drift, and they add one of their own.
    drifted = kube.get_object(BACKEND_STS)["spec"]["template"]
    drifted["spec"]["containers"][0]["image"] = "someone/else:1"
    kube.merge_patch(BACKEND_STS, {"spec": {"template": drifted}})
    kube.merge_patch(CLIENT_CM, {"data": {"DC_PORT": "1"}, "metadata": {"annotations": {"note": "mine"}}})
    before = len(kube.calls)

    reconciler.reconcile(NS, NAME)
    assert kube.get_object(BACKEND_STS)["spec"]["template"] == desired_template
    client = kube.get_object(CLIENT_CM)
    assert client["data"]["DC_PORT"] == str(api.METADATA_PORT) and client["metadata"]["annotations"] == {"note": "mine"}
    assert sorted(call.path for call in child_writes(kube, before)) == sorted([BACKEND_STS, CLIENT_CM])
    assert kube.event_reasons(before) == ["Updated", "Updated"]
    before = len(kube.calls)
    reconciler.reconcile(NS, NAME)
    assert kube.writes(before) == []  # patched back for good


def images(kube: FakeKube) -> set[str]:
    return {kube.get_object(path)["spec"]["template"]["spec"]["containers"][0]["image"]
            for path in (METADATA_STS, BACKEND_STS)}


def test_an_operator_upgrade_rolls_only_the_dataclays_that_follow_it(kube):
    create_dataclay(kube, replicas=2)
    make_reconciler(kube).reconcile(NS, NAME)
    assert images(kube) == {"dataclay-k8s:test"} and status(kube)["image"] == "dataclay-k8s:test"
    assert "operatorImage" not in status(kube)

    upgraded = make_reconciler(kube, config=OperatorConfig(default_image="dataclay-k8s:next", resync_seconds=60.0))
    before = len(kube.calls)
    upgraded.reconcile(NS, NAME)
    assert images(kube) == {"dataclay-k8s:test"}  # pinned: nothing rolls
    assert "Updated" not in kube.event_reasons(before)
    assert status(kube)["image"] == "dataclay-k8s:test" and status(kube)["operatorImage"] == "dataclay-k8s:next"

    set_spec(kube, upgradePolicy="FollowOperator")  # opting in
    upgraded.reconcile(NS, NAME)
    assert images(kube) == {"dataclay-k8s:next"} and status(kube)["image"] == "dataclay-k8s:next"
    assert "operatorImage" not in status(kube)

    set_spec(kube, image="mine:1")  # an explicit image wins over any policy
    upgraded.reconcile(NS, NAME)
    assert images(kube) == {"mine:1"} and status(kube)["image"] == "mine:1" and "operatorImage" not in status(kube)


def test_an_operator_upgrade_rolls_nothing_for_a_dataclay_whose_status_does_not_record_its_image(kube):
    """A DataClay made by an operator that did not record status.image yet (or whose status was
    lost) runs the image its StatefulSets have: pinned, an upgrade must not roll it."""
    create_dataclay(kube, replicas=2)
    make_reconciler(kube).reconcile(NS, NAME)
    kube.merge_patch(DC + "/status", {"status": {"image": None}})  # as the previous operator left it
    assert "image" not in status(kube) and images(kube) == {"dataclay-k8s:test"}

    upgraded = make_reconciler(kube, config=OperatorConfig(default_image="dataclay-k8s:next", resync_seconds=60.0))
    before = len(kube.calls)
    upgraded.reconcile(NS, NAME)
    assert images(kube) == {"dataclay-k8s:test"}, "pinned (the default): the upgrade rolled the backends"
    assert "Updated" not in kube.event_reasons(before)
    assert status(kube)["image"] == "dataclay-k8s:test" and status(kube)["operatorImage"] == "dataclay-k8s:next"


def test_a_deleted_model_configmap_rolls_no_backend_into_a_pod_that_cannot_mount_it(kube):
    """The running backends keep the modules they mounted; a rollout to the digest of a missing
    ConfigMap would replace a backend with a pod that cannot start (its volume is not optional).
    Deleted and created again (kubectl replace --force) with the same modules: nothing rolls."""
    models = resource_path("v1", "configmaps", NS, "models")
    kube.create(resource_path("v1", "configmaps", NS), {"apiVersion": "v1", "kind": "ConfigMap",
                                                        "metadata": {"name": "models"}, "data": {"m.py": "V = 1\n"}})
    create_dataclay(kube, replicas=2, model={"configMap": "models"})
    reconciler = make_reconciler(kube)
    reconciler.reconcile(NS, NAME)

    def template() -> dict:
        return kube.get_object(BACKEND_STS)["spec"]["template"]

    rolled_out = template()
    kube.request("DELETE", models)
    before = len(kube.calls)
    reconciler.reconcile(NS, NAME)
    assert template() == rolled_out, "the backends rolled to a model ConfigMap that does not exist"
    assert not [call for call in kube.writes(before) if call.path == BACKEND_STS]
    kube.create(resource_path("v1", "configmaps", NS), {"apiVersion": "v1", "kind": "ConfigMap",
                                                        "metadata": {"name": "models"}, "data": {"m.py": "V = 1\n"}})
    reconciler.reconcile(NS, NAME)
    assert template() == rolled_out


def test_a_spec_change_rolls_out_to_the_children_it_concerns(kube):
    create_dataclay(kube, replicas=2)
    reconciler = make_reconciler(kube)
    reconciler.reconcile(NS, NAME)
    set_spec(kube, image="me/models:2", replicas=4)
    before = len(kube.calls)
    reconciler.reconcile(NS, NAME)
    assert {call.path for call in child_writes(kube, before)} == {METADATA_STS, BACKEND_STS}
    backend = kube.get_object(BACKEND_STS)["spec"]
    assert backend["replicas"] == 4 and backend["template"]["spec"]["containers"][0]["image"] == "me/models:2"
    # the new ordinals' certificates are added before the StatefulSet is raised
    assert kube.event_reasons(before) == ["Updated", "Scaling", "Updated", "Updated"]
    writes = [call.path for call in kube.writes(before)]
    secret = resource_path("v1", "secrets", NS, api.backend_tls_name(NAME))
    assert writes.index(secret) < writes.index(BACKEND_STS)
    data = kube.get_object(secret)["data"]
    assert {f"backend.store-backend-{i}.pem" for i in range(4)} <= set(data)
    assert status(kube)["observedGeneration"] == 2


def test_fields_the_api_server_cannot_change_are_kept_not_patched(kube):
    create_dataclay(kube, replicas=2, storage={"size": "1Gi"})
    reconciler = make_reconciler(kube)
    reconciler.reconcile(NS, NAME)
    claims = kube.get_object(BACKEND_STS)["spec"]["volumeClaimTemplates"]
    set_spec(kube, storage={"size": "5Gi"})  # a StatefulSet's claim templates are immutable
    before = len(kube.calls)
    reconciler.reconcile(NS, NAME)  # no 422 from the API server: the live value is kept
    assert kube.get_object(BACKEND_STS)["spec"]["volumeClaimTemplates"] == claims
    assert condition(kube, ConditionType.DEGRADED) == ("False", Reason.AS_EXPECTED.value)
    assert child_writes(kube, before) == []


def test_a_child_name_taken_by_an_object_we_do_not_control_is_a_conflict(kube):
    create_dataclay(kube, replicas=1)
    kube.create(resource_path("v1", "configmaps", NS), {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": api.client_config_name(NAME)},
        "data": {"owner": "someone else"}})
    with pytest.raises(ChildConflict):
        make_reconciler(kube).reconcile(NS, NAME)
    assert kube.get_object(CLIENT_CM)["data"] == {"owner": "someone else"}
    assert status(kube)["phase"] == Phase.DEGRADED.value
    assert condition(kube, ConditionType.DEGRADED) == ("True", Reason.RECONCILE_FAILED.value)
    assert "ChildConflict" in get_condition(status(kube), ConditionType.DEGRADED)["message"]


def test_an_invalid_spec_is_reported_and_creates_nothing(kube):
    create_dataclay(kube, replicas=0)
    assert make_reconciler(kube).reconcile(NS, NAME) == Outcome(CONFIG.resync_seconds)
    assert all(kube.get_object(path) is None for path in CHILDREN)
    assert status(kube)["phase"] == Phase.DEGRADED.value
    assert condition(kube, ConditionType.DEGRADED) == ("True", Reason.INVALID_SPEC.value)
    assert "spec.replicas" in get_condition(status(kube), ConditionType.DEGRADED)["message"]


def test_a_dataclay_that_is_gone_is_never_reconciled_again(kube):
    assert make_reconciler(kube).reconcile(NS, NAME) == Outcome(None)
    assert kube.writes() == []


# ---------------------------------------------------------------------------------------- status

def test_status_reports_ready_backends_with_their_ids(kube):
    asked: list[tuple[str, int]] = []

    def backend_ids(host: str, port: int, credentials=None) -> dict[str, str]:  # the metadata service's answer
        asked.append((host, port))
        return {api.backend_pod_name(NAME, 0): "id-0", api.backend_pod_name(NAME, 1): "id-1"}

    create_dataclay(kube, replicas=2)
    reconciler = make_reconciler(kube)
    reconciler.backend_ids = backend_ids
    reconciler.reconcile(NS, NAME)
    kube.settle_statefulsets()
    kube.add_pod(NS, f"{api.metadata_name(NAME)}-0", api.selector_labels(NAME, api.COMPONENT_METADATA))
    for ordinal in (1, 0):
        kube.add_pod(NS, api.backend_pod_name(NAME, ordinal), api.selector_labels(NAME, api.COMPONENT_BACKEND))
    reconciler.reconcile(NS, NAME)
    st = status(kube)
    assert (st["phase"], st["ready"], st["metadataReady"]) == (Phase.READY.value, "2/2", True)
    assert st["backends"] == [{"pod": api.backend_pod_name(NAME, 0), "ready": True, "backendId": "id-0"},
                              {"pod": api.backend_pod_name(NAME, 1), "ready": True, "backendId": "id-1"}]
    assert condition(kube, ConditionType.READY) == ("True", Reason.ALL_READY.value)
    assert condition(kube, ConditionType.PROGRESSING) == ("False", Reason.RECONCILED.value)
    assert asked == [(api.metadata_host(NAME, NS), api.METADATA_PORT)]
    assert get_condition(st, ConditionType.READY)["lastTransitionTime"] == "2024-05-01T12:00:00Z"


# ---------------------------------------------------------------------------------------- scale-down

def scaled_to_three(kube: FakeKube, drains: Drains, config: OperatorConfig = CONFIG) -> Reconciler:
    create_dataclay(kube, replicas=3)
    reconciler = make_reconciler(kube, drains, config)
    reconciler.reconcile(NS, NAME)
    assert drains.calls == []  # creating drains nothing
    set_spec(kube, replicas=1)
    return reconciler


def test_a_scale_down_drains_first_and_only_then_lowers_replicas(kube):
    drains = Drains(kube, moved=40)
    reconciler = scaled_to_three(kube, drains)
    before = len(kube.calls)
    assert reconciler.reconcile(NS, NAME) == Outcome(CONFIG.resync_seconds)

    [drain] = drains.calls
    assert drain["backends"] == [api.backend_pod_name(NAME, 1), api.backend_pod_name(NAME, 2)]
    assert (drain["host"], drain["port"]) == (api.metadata_host(NAME, NS), api.METADATA_PORT)
    assert drain["replicas"] == 3  # nothing removed while objects are still there
    midway = drain["status_midway"]
    assert midway["phase"] == Phase.DRAINING.value and midway["drain"]["objectsMoved"] == 20
    lowered = [i for i, call in enumerate(kube.calls) if i >= before and call.path == BACKEND_STS
               and call.method == "PATCH" and not call.dry_run and call.body["spec"]["replicas"] == 1]
    assert lowered and lowered[0] > drain["at_call"] and not any(
        call.path == BACKEND_STS and call.method == "PATCH" and not call.dry_run for call in kube.calls[before:drain["at_call"]])
    assert kube.get_object(BACKEND_STS)["spec"]["replicas"] == 1
    assert kube.event_reasons(before) == ["DrainStarted", "DrainSucceeded", "Updated", "ScaledDown"]
    assert "drain" not in status(kube) and status(kube)["desiredBackends"] == 1


def test_a_drain_goes_where_the_operator_is_told_the_data_plane_is(kube):
    drains = Drains(kube, moved=1)
    config = OperatorConfig(default_image="dataclay-k8s:test", dataplane_host="127.0.0.1", dataplane_port=16000)
    reconciler = scaled_to_three(kube, drains, config)
    reconciler.reconcile(NS, NAME)
    assert (drains.calls[0]["host"], drains.calls[0]["port"]) == ("127.0.0.1", 16000)


def test_a_failed_drain_keeps_the_replicas_and_says_why(kube):
    drains = Drains(kube, error=RuntimeError("backend store-backend-2 is unreachable"))
    reconciler = scaled_to_three(kube, drains)
    before = len(kube.calls)
    outcome = reconciler.reconcile(NS, NAME)
    assert outcome == Outcome(drain_retry_delay(1))
    assert kube.get_object(BACKEND_STS)["spec"]["replicas"] == 3
    assert not any(call.path == BACKEND_STS and call.method == "PATCH" and not call.dry_run for call in kube.calls[before:])
    st = status(kube)
    assert st["phase"] == Phase.DEGRADED.value
    assert condition(kube, ConditionType.DEGRADED) == ("True", Reason.DRAIN_FAILED.value)
    assert st["drain"]["state"] == "Failed" and "unreachable" in st["drain"]["message"]
    assert kube.event_reasons(before) == ["DrainStarted", "DrainFailed"]

    again = reconciler.reconcile(NS, NAME)  # before the retry time: no second drain, same report
    assert len(drains.calls) == 1 and 0 < again.requeue_after <= drain_retry_delay(1)
    assert kube.get_object(BACKEND_STS)["spec"]["replicas"] == 3 and status(kube)["drain"]["state"] == "Failed"


def test_a_scale_down_cancelled_by_a_scale_up_stops_failing(kube):
    drains = Drains(kube, error=RuntimeError("no data plane"))
    reconciler = scaled_to_three(kube, drains)
    reconciler.reconcile(NS, NAME)
    set_spec(kube, replicas=3)
    reconciler.reconcile(NS, NAME)
    assert len(drains.calls) == 1 and kube.get_object(BACKEND_STS)["spec"]["replicas"] == 3
    assert "drain" not in status(kube)
    assert condition(kube, ConditionType.DEGRADED) == ("False", Reason.AS_EXPECTED.value)


@pytest.mark.parametrize("change, why", [
    (lambda kube, reconciler: set_spec(kube, replicas=3), "spec.replicas is 3 now, the drain was for 1"),
    (lambda kube, reconciler: reconciler.stopping.set(), "the operator is stopping"),
])
def test_a_drain_no_longer_wanted_stops_at_its_next_progress_report(kube, change, why):
    holder = {}
    drains = Drains(kube, moved=4, before=lambda: change(kube, holder["reconciler"]))
    reconciler = holder["reconciler"] = scaled_to_three(kube, drains)
    before = len(kube.calls)
    assert reconciler.reconcile(NS, NAME) == Outcome(0)  # plan again from the spec as it is
    assert drains.calls == []  # it never got past its first progress report
    assert kube.get_object(BACKEND_STS)["spec"]["replicas"] == 3
    assert "DrainFailed" not in kube.event_reasons(before)
    (cancelled,) = [c.body["message"] for c in kube.writes(before) if c.path.endswith("/events")
                    and c.body["reason"] == "DrainCancelled"]
    assert why in cancelled


def test_replicas_follow_the_spec_as_it_is_after_the_drain(kube):
    """The spec is read again after draining: raised to 2 meanwhile, replicas become 2, not 1."""
    drains = Drains(kube, moved=3, during=lambda: set_spec(kube, replicas=2))
    reconciler = scaled_to_three(kube, drains)
    reconciler.reconcile(NS, NAME)
    assert len(drains.calls) == 1 and kube.get_object(BACKEND_STS)["spec"]["replicas"] == 2
    assert status(kube)["desiredBackends"] == 2 and status(kube)["observedGeneration"] == 3


# ---------------------------------------------------------------------------------------- scaled behind our back

def test_a_statefulset_lowered_behind_the_operators_back_is_restored_and_reported(kube):
    """`kubectl scale sts --replicas=1` where the chart's policy is not installed."""
    create_dataclay(kube, replicas=3)
    reconciler = make_reconciler(kube)
    reconciler.reconcile(NS, NAME)
    assert kube.get_object(BACKEND_STS)["metadata"]["annotations"] == {api.ANNOTATION_APPLIED_REPLICAS: "3"}
    kube.merge_patch(BACKEND_STS, {"spec": {"replicas": 1}})
    before = len(kube.calls)

    reconciler.reconcile(NS, NAME)
    assert kube.get_object(BACKEND_STS)["spec"]["replicas"] == 3
    assert kube.event_reasons(before) == [Reason.BACKENDS_REMOVED_WITHOUT_DRAIN.value, "Updated"]
    assert condition(kube, ConditionType.DEGRADED) == ("True", Reason.BACKENDS_REMOVED_WITHOUT_DRAIN.value)
    message = get_condition(status(kube), ConditionType.DEGRADED)["message"]
    assert "store-backend-1, store-backend-2" in message and f"kubectl scale dataclay {NAME}" in message
    again = len(kube.calls)
    reconciler.reconcile(NS, NAME)  # restored, pods not back yet: still reported, no second warning
    assert condition(kube, ConditionType.DEGRADED)[1] == Reason.BACKENDS_REMOVED_WITHOUT_DRAIN.value
    assert kube.writes(again) == []


def test_backends_removed_behind_the_operators_back_are_drained_before_a_scale_down_accepts_it(kube):
    """Spec and StatefulSet lowered together (3 -> 2 and 3 -> 1): store-backend-1 and -2 come back,
    store-backend-2 is drained, and only then do replicas drop to 2."""
    drains = Drains(kube, moved=5)
    create_dataclay(kube, replicas=3)
    reconciler = make_reconciler(kube, drains)
    reconciler.reconcile(NS, NAME)
    set_spec(kube, replicas=2)
    kube.merge_patch(BACKEND_STS, {"spec": {"replicas": 1}})

    reconciler.reconcile(NS, NAME)
    [drain] = drains.calls
    assert drain["backends"] == [api.backend_pod_name(NAME, 2)] and drain["replicas"] == 3
    assert kube.get_object(BACKEND_STS)["spec"]["replicas"] == 2
    assert kube.get_object(BACKEND_STS)["metadata"]["annotations"] == {api.ANNOTATION_APPLIED_REPLICAS: "2"}
