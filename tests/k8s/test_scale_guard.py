"""Only the operator lowers a backend StatefulSet's replicas, after the drain (issue 11, drain bypass).

`kubectl scale sts`, an HPA or a GitOps tool lowering the StatefulSet directly would remove
backends without draining them (and with `pvcRetentionPolicy.whenScaled: Delete`, their volumes).
The chart ships a ValidatingAdmissionPolicy that refuses it to anyone but the operator's
ServiceAccount (and deleting the StatefulSet when its volumes would go with it to anyone but the
garbage collector and namespace controller); `kubectl scale dataclay` (the CRD's scale subresource)
is the way to scale, and goes through the drain. Where the policy is not installed, the operator
notices and reports Degraded. Each test installs the chart as users do (`helm install`), so the
policy tested is the one shipped.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from dataclay_operator import api

from .conftest import KubeCluster, wait_until
from .test_operator import (ADMIN, CHART, Cluster, closed_port, condition, cluster, crd,  # noqa: F401
                            credentials_from_the_ca_secret, helm, owned_count, pod_named_cluster, running_operator,
                            service_account_kubeconfig)

MERGE = "application/merge-patch+json"
NAME = "store"
BACKEND_STS = api.backend_name(NAME)
HPA = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"  # the HPA controller's identity
SOMEONE = "someone@example.com"  # a user with the default admin role in the namespace only


@contextmanager
def chart_installed(kube_cluster: KubeCluster, cluster: Cluster, *values: str, manages: str | None = None
                    ) -> Iterator[str]:
    """`helm install` of the chart managing only the test's namespace (or `manages`); yields the release name."""
    release = f"dc{uuid.uuid4().hex[:6]}"
    helm(kube_cluster, "install", release, str(CHART), "--namespace", cluster.ns,
         "--set", f"watchNamespaces={{{manages or cluster.ns}}}", *values)
    try:
        yield release
    finally:
        helm(kube_cluster, "uninstall", release, "--namespace", cluster.ns)


def operator_kubeconfig(kube_cluster: KubeCluster, cluster: Cluster, release: str, tmp_path: Path) -> Path:
    """Authenticate as the chart's ServiceAccount, as the operator pod does."""
    return service_account_kubeconfig(kube_cluster, cluster.api, cluster.ns, f"{release}-dataclay-operator",
                                      tmp_path / "operator.kubeconfig")


def as_user(kube_cluster: KubeCluster, user: str | None) -> Any:
    """An ApiClient as the cluster admin, or impersonating `user` (what `kubectl --as` does)."""
    api_client = kube_cluster.api_client()
    if user is not None:
        api_client.set_default_header("Impersonate-User", user)
    return api_client


def scale_statefulset(api_client: Any, namespace: str, how: str, replicas: int, dry_run: bool = False) -> Any:
    """Lower the backend StatefulSet the ways people and tools do."""
    apps = client.AppsV1Api(api_client)
    extra = {"dry_run": "All"} if dry_run else {}
    if how == "kubectl scale sts":  # a merge patch of the scale subresource
        return apps.patch_namespaced_stateful_set_scale(BACKEND_STS, namespace, {"spec": {"replicas": replicas}},
                                                        _content_type=MERGE, **extra)
    if how == "an HPA":  # read the Scale, write it back (PUT of the scale subresource)
        for _ in range(10):  # a status change in between is a 409: read again, as an HPA does
            scale = apps.read_namespaced_stateful_set_scale(BACKEND_STS, namespace)
            scale.spec.replicas = replicas
            try:
                return apps.replace_namespaced_stateful_set_scale(BACKEND_STS, namespace, scale, **extra)
            except ApiException as exc:
                if exc.status != 409:
                    raise
        raise AssertionError("10 conflicts in a row writing the Scale")
    if how == "kubectl edit / GitOps":  # the StatefulSet itself
        return apps.patch_namespaced_stateful_set(BACKEND_STS, namespace, {"spec": {"replicas": replicas}},
                                                  _content_type=MERGE, **extra)
    raise ValueError(how)


def refusal(call: Callable[[], Any]) -> str | None:
    """The policy's message if `call` is refused by it, else None (it went through)."""
    try:
        call()
    except ApiException as exc:
        message = json.loads(exc.body)["message"]
        assert exc.status == 403 and "ValidatingAdmissionPolicy" in message, (exc.status, message)
        return message
    return None


def policy_in_force(kube_cluster: KubeCluster, cluster: Cluster) -> str:
    """The API server loads policies asynchronously: wait until a dry-run scale-down is refused."""
    admin = kube_cluster.api_client()
    try:
        return wait_until(lambda: refusal(lambda: scale_statefulset(admin, cluster.ns, "kubectl scale sts", 1,
                                                                    dry_run=True)),
                          60, "the chart's ValidatingAdmissionPolicy to be in force")
    finally:
        admin.close()


def namespace_admin(cluster: Cluster, user: str) -> None:
    """Give `user` Kubernetes' default `admin` role in the test's namespace, and nothing else."""
    client.RbacAuthorizationV1Api(cluster.api).create_namespaced_role_binding(cluster.ns, {
        "metadata": {"name": "admin"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                   "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})


def wait_allowed(api_client: Any, namespace: str, group: str, resource: str, subresource: str = "") -> None:
    """Until RBAC lets the client's user patch that resource (the controller manager fills the default
    roles by ClusterRole aggregation, a few seconds after it starts and after the chart adds to them)."""
    review = {"spec": {"resourceAttributes": {"group": group, "resource": resource, "subresource": subresource,
                                              "verb": "patch", "namespace": namespace}}}
    authz = client.AuthorizationV1Api(api_client)
    wait_until(lambda: authz.create_self_subject_access_review(review).status.allowed, 60,
               f"RBAC to allow patching {resource}/{subresource}")


def backend_replicas(cluster: Cluster) -> int:
    return cluster.sts(BACKEND_STS)["spec"]["replicas"]


@pytest.mark.parametrize("how, user", [("kubectl scale sts", None), ("an HPA", HPA),
                                       ("kubectl edit / GitOps", SOMEONE)])
def test_lowering_the_backend_statefulset_directly_is_refused_with_the_way_to_scale(
        kube_cluster: KubeCluster, cluster: Cluster, tmp_path: Path, how: str, user: str | None) -> None:
    """Nobody but the operator (not even a cluster admin) lowers the replicas; raising them is left alone."""
    with chart_installed(kube_cluster, cluster) as release:
        if user == SOMEONE:
            namespace_admin(cluster, user)
        cluster.create(NAME, {"replicas": 3, "pvcRetentionPolicy": {"whenScaled": "Delete"}})
        kubeconfig = operator_kubeconfig(kube_cluster, cluster, release, tmp_path)
        with running_operator(kube_cluster, cluster.ns, tmp_path, kubeconfig=kubeconfig) as op:
            op.until(lambda: (s := cluster.sts(BACKEND_STS)) and s["spec"]["replicas"] == 3, "3 backends")
            op.until(lambda: len(cluster.pvcs()) == 4, "a PVC per pod (3 backends, the metadata service)")
            policy_in_force(kube_cluster, cluster)
            someone = as_user(kube_cluster, user)
            try:
                if user == SOMEONE:
                    wait_allowed(someone, cluster.ns, "apps", "statefulsets")
                message = refusal(lambda: scale_statefulset(someone, cluster.ns, how, 1))
                assert message is not None, f"{how} lowered the backends without a drain"
                assert f"kubectl scale dataclay {NAME} --replicas=" in message, message
                assert "drain" in message, message
                assert refusal(lambda: scale_statefulset(someone, cluster.ns, how, 0)) is not None
                assert backend_replicas(cluster) == 3
                assert len(cluster.pvcs()) == 4  # nothing deleted (3 backends + metadata)
                # raising replicas is not what the policy is about (the operator brings them back)
                assert refusal(lambda: scale_statefulset(someone, cluster.ns, how, 4, dry_run=True)) is None
            finally:
                someone.close()
            assert not cluster.events("DrainStarted")


def test_a_namespace_admin_refused_the_statefulset_may_scale_the_dataclay_which_drains(
        kube_cluster: KubeCluster, cluster: Cluster, tmp_path: Path) -> None:
    """The refusal says what to run, and the chart lets whoever edits StatefulSets run it: the
    default admin/edit roles include DataClays and their scale subresource (ClusterRole aggregation)."""
    namespace_admin(cluster, SOMEONE)
    with chart_installed(kube_cluster, cluster) as release:
        cluster.create(NAME, {"replicas": 3})
        kubeconfig = operator_kubeconfig(kube_cluster, cluster, release, tmp_path)
        unreachable = {"DC_OPERATOR_DATAPLANE_HOST": "127.0.0.1", "DC_OPERATOR_DATAPLANE_PORT": str(closed_port())}
        with running_operator(kube_cluster, cluster.ns, tmp_path, kubeconfig=kubeconfig, **unreachable) as op:
            op.until(lambda: (s := cluster.sts(BACKEND_STS)) and s["spec"]["replicas"] == 3, "3 backends")
            policy_in_force(kube_cluster, cluster)
            someone = as_user(kube_cluster, SOMEONE)
            try:
                wait_allowed(someone, cluster.ns, "apps", "statefulsets", "scale")
                message = refusal(lambda: scale_statefulset(someone, cluster.ns, "kubectl scale sts", 2))
                assert message is not None and f"kubectl scale dataclay {NAME} --replicas=2 -n {cluster.ns}" in message

                wait_allowed(someone, cluster.ns, api.GROUP, api.PLURAL, "scale")  # the chart's aggregated role
                client.CustomObjectsApi(someone).patch_namespaced_custom_object_scale(
                    api.GROUP, api.VERSION, cluster.ns, api.PLURAL, NAME, {"spec": {"replicas": 2}})
            finally:
                someone.close()
            # the scale-down goes through the drain: here the data plane does not answer, so nothing goes
            degraded = op.until(lambda: (d := cluster.dc(NAME)) and condition(d, "Degraded").get("status") == "True"
                                and d, "the drain tried and failed", timeout=120)
            assert condition(degraded, "Degraded")["reason"] == "DrainFailed"
            assert any(api.backend_pod_name(NAME, 2) in m for m in cluster.events("DrainStarted"))
            assert backend_replicas(cluster) == 3


def test_statefulsets_that_are_not_dataclay_backends_scale_freely(kube_cluster: KubeCluster, cluster: Cluster,
                                                                  tmp_path: Path) -> None:
    with chart_installed(kube_cluster, cluster) as release:
        # the API server type-checks the policy's CEL against the StatefulSet and Scale schemas
        admission = client.AdmissionregistrationV1Api(cluster.api)
        policy = f"{release}-dataclay-operator-backends"
        checked = wait_until(lambda: (s := admission.read_validating_admission_policy(policy).status)
                             and s.type_checking is not None and s, 60, "the policy type-checked")
        assert not checked.type_checking.expression_warnings, checked.type_checking.expression_warnings
        cluster.create(NAME, {"replicas": 2})
        kubeconfig = operator_kubeconfig(kube_cluster, cluster, release, tmp_path)
        with running_operator(kube_cluster, cluster.ns, tmp_path, kubeconfig=kubeconfig) as op:
            op.until(lambda: cluster.sts(api.metadata_name(NAME)), "the metadata StatefulSet")
            op.until(lambda: cluster.sts(BACKEND_STS), "the backend StatefulSet")
            policy_in_force(kube_cluster, cluster)
            labels = {"app": "other"}
            cluster.apps.create_namespaced_stateful_set(cluster.ns, {
                "metadata": {"name": "other-backend", "labels": {api.LABEL_COMPONENT: api.COMPONENT_BACKEND}},
                "spec": {"replicas": 2, "serviceName": "other", "selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels},
                                      "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
            cluster.apps.patch_namespaced_stateful_set_scale("other-backend", cluster.ns, {"spec": {"replicas": 1}},
                                                             _content_type=MERGE)
            assert cluster.sts("other-backend")["spec"]["replicas"] == 1


def test_kubectl_scale_dataclay_drains_and_only_then_the_operator_lowers_the_statefulset(
        kube_cluster: KubeCluster, cluster: Cluster, tmp_path: Path) -> None:
    """The scale subresource of the DataClay: 3 -> 2 drains store-backend-2 into the others, then the
    operator (as its ServiceAccount, under the chart's policy) lowers the StatefulSet; nothing lost."""
    from dataclay import Client
    from hr import Company, Employee  # tests/models, on the path via tests/k8s/conftest.py

    with chart_installed(kube_cluster, cluster) as release:
        kubeconfig = operator_kubeconfig(kube_cluster, cluster, release, tmp_path)
        cluster.create(NAME, {"replicas": 3, "pvcRetentionPolicy": {"whenScaled": "Delete"}})
        with running_operator(kube_cluster, cluster.ns, tmp_path, kubeconfig=kubeconfig) as first:
            first.until(lambda: cluster.sts(BACKEND_STS), "the backend StatefulSet")  # and the CA Secret
        credentials_from_the_ca_secret(cluster, NAME, tmp_path / "credentials")
        with pod_named_cluster(tmp_path / "dataplane", NAME, backends=3,
                               credentials=tmp_path / "credentials") as dataplane:
            ADMIN[dataplane.port] = dataplane.client_credentials("admin")
            with Client(host="127.0.0.1", port=dataplane.port, credentials=dataplane.client_credentials()) as writer:
                by_name = {info.name: backend_id for backend_id, info in writer.get_backends().items()}
                companies = []
                for index in range(20):
                    company = Company(f"C{index}", Employee(f"E{index}", float(index)))
                    company.make_persistent(backend_id=by_name[api.backend_pod_name(NAME, 2)])
                    companies.append(company.id)
            assert owned_count(dataplane.port, by_name[api.backend_pod_name(NAME, 2)]) == 40

            env = {"DC_OPERATOR_DATAPLANE_HOST": "127.0.0.1", "DC_OPERATOR_DATAPLANE_PORT": str(dataplane.port)}
            with running_operator(kube_cluster, cluster.ns, tmp_path, kubeconfig=kubeconfig, **env) as op:
                op.until(lambda: (d := cluster.dc(NAME)) and (d.get("status") or {}).get("replicas") == 3,
                         "status.replicas of the scale subresource")
                policy_in_force(kube_cluster, cluster)
                scale = cluster.custom.get_namespaced_custom_object_scale(api.GROUP, api.VERSION, cluster.ns,
                                                                          api.PLURAL, NAME)
                assert (scale["spec"]["replicas"], scale["status"]["replicas"]) == (3, 3)
                assert scale["status"]["selector"] == api.label_selector(
                    api.selector_labels(NAME, api.COMPONENT_BACKEND))  # what an HPA counts pods by

                # kubectl scale dataclay store --replicas=2
                cluster.custom.patch_namespaced_custom_object_scale(api.GROUP, api.VERSION, cluster.ns, api.PLURAL,
                                                                    NAME, {"spec": {"replicas": 2}})
                assert cluster.dc(NAME)["spec"]["replicas"] == 2
                op.until(lambda: backend_replicas(cluster) == 2, "the operator lowering replicas to 2", timeout=240)
                assert owned_count(dataplane.port, by_name[api.backend_pod_name(NAME, 2)]) == 0
                (succeeded,), (scaled,) = cluster.events("DrainSucceeded"), cluster.events("ScaledDown")
                assert "moved 40 objects" in succeeded and "3 -> 2" in scaled
                # whenScaled: Delete: the drained backend's volume goes (the volume policy lets the
                # StatefulSet controller and the garbage collector through), the others stay
                op.until(lambda: f"data-{api.backend_pod_name(NAME, 2)}" not in [c["metadata"]["name"]
                                                                                 for c in cluster.pvcs()],
                         "the drained backend's volume deleted")
                assert len(cluster.pvcs()) == 3
                with pytest.raises(ApiException) as refused:  # the schema still guards the scale subresource
                    cluster.custom.patch_namespaced_custom_object_scale(api.GROUP, api.VERSION, cluster.ns,
                                                                        api.PLURAL, NAME, {"spec": {"replicas": 0}})
                assert refused.value.status == 422 and "spec.replicas" in refused.value.body

            dataplane.stop_process(dataplane.backends[api.backend_pod_name(NAME, 2)])  # its pod is gone
            with Client(host="127.0.0.1", port=dataplane.port, credentials=dataplane.client_credentials()):
                for index, company_id in enumerate(companies):
                    assert Company.get_by_id(company_id).employee.salary == float(index)


def test_without_the_policy_a_statefulset_lowered_behind_the_operators_back_is_degraded_and_restored(
        kube_cluster: KubeCluster, cluster: Cluster, tmp_path: Path) -> None:
    """Where the chart's policy is off (or cannot run), the operator notices the replicas below what
    it applied, says which backends went without a drain, and brings them back. Lowered while the
    operator is away (a restart), so the StatefulSet controller has surely removed the pods."""
    backends = f"{api.LABEL_COMPONENT}={api.COMPONENT_BACKEND}"
    with chart_installed(kube_cluster, cluster, "--set", "scaleGuard.enabled=false") as release:
        kubeconfig = operator_kubeconfig(kube_cluster, cluster, release, tmp_path)
        cluster.create(NAME, {"replicas": 3})
        with running_operator(kube_cluster, cluster.ns, tmp_path, kubeconfig=kubeconfig) as op:
            op.until(lambda: len(cluster.pods(f"{api.LABEL_INSTANCE}={NAME}")) == 4, "4 pods")
            cluster.ready(NAME, api.COMPONENT_METADATA)
            cluster.ready(NAME, api.COMPONENT_BACKEND)
            op.until(lambda: (d := cluster.dc(NAME)) and d["status"].get("phase") == "Ready", "Ready")

        scale_statefulset(cluster.api, cluster.ns, "kubectl scale sts", 1)  # no policy: it goes through
        wait_until(lambda: [p["metadata"]["name"] for p in cluster.pods(backends)] == [api.backend_pod_name(NAME, 0)],
                   60, "the StatefulSet controller removing store-backend-1 and -2")

        with running_operator(kube_cluster, cluster.ns, tmp_path, kubeconfig=kubeconfig) as op:
            degraded = op.until(lambda: (d := cluster.dc(NAME)) and condition(d, "Degraded").get("status") == "True"
                                and d, "Degraded after the bypass")
            cond = condition(degraded, "Degraded")
            assert cond["reason"] == "BackendsRemovedWithoutDrain"
            assert "store-backend-1, store-backend-2" in cond["message"]
            assert f"kubectl scale dataclay {NAME} --replicas=" in cond["message"]
            assert degraded["status"]["phase"] == "Degraded"
            (warning,) = cluster.events("BackendsRemovedWithoutDrain")
            assert "3 -> 1" in warning
            op.until(lambda: backend_replicas(cluster) == 3, "replicas restored to 3")

            # the condition stays until the backends that went are back and ready
            op.until(lambda: len(cluster.pods(backends)) == 3, "store-backend-1 and -2 back")
            assert condition(cluster.dc(NAME), "Degraded")["reason"] == "BackendsRemovedWithoutDrain"
            cluster.ready(NAME, api.COMPONENT_BACKEND)
            op.until(lambda: condition(cluster.dc(NAME), "Degraded").get("status") == "False",
                     "Degraded cleared once the backends are back")


def test_deleting_a_backend_statefulset_that_takes_its_volumes_is_refused_deleting_the_dataclay_is_not(
        kube_cluster: KubeCluster, cluster: Cluster, tmp_path: Path) -> None:
    """With pvcRetentionPolicy.whenDeleted=Delete, `kubectl delete sts <name>-backend` would delete every
    backend's volume (the operator would recreate the StatefulSet empty): refused. Deleting the DataClay,
    or its namespace, is meant to remove it all: the garbage collector and the namespace controller may."""
    victim = f"dc-victim-{uuid.uuid4().hex[:6]}"
    cluster.core.create_namespace({"metadata": {"name": victim}})
    there = Cluster(cluster.api, victim)
    with chart_installed(kube_cluster, cluster, manages=victim) as release:
        kubeconfig = operator_kubeconfig(kube_cluster, cluster, release, tmp_path)
        with running_operator(kube_cluster, victim, tmp_path, kubeconfig=kubeconfig) as op:
            there.create(NAME, {"replicas": 2, "pvcRetentionPolicy": {"whenDeleted": "Delete"}})
            there.create("kept", {"replicas": 1, "pvcRetentionPolicy": {"whenDeleted": "Retain"}})
            op.until(lambda: len(there.pvcs()) == 5, "a PVC per pod (store: 2 + 1, kept: 1 + 1)")
            delete = lambda name, **kw: there.apps.delete_namespaced_stateful_set(name, victim, **kw)  # noqa: E731
            message = wait_until(lambda: refusal(lambda: delete(BACKEND_STS, dry_run="All")), 60,
                                 "the policy refusing the deletion")
            assert refusal(lambda: delete(BACKEND_STS)) == message
            assert "whenDeleted=Delete" in message and f"kubectl delete dataclay {NAME} -n {victim}" in message
            assert there.sts(BACKEND_STS) is not None and len(there.pvcs()) == 5
            assert refusal(lambda: delete(api.backend_name("kept"), dry_run="All")) is None  # Retain: volumes stay

            # the StatefulSet controller marks the volumes as the StatefulSets' own (whenDeleted:
            # Delete) after it made them; deleting before that would orphan them, as in any cluster
            op.until(lambda: all(any(ref["kind"] == "StatefulSet" for ref in c["metadata"].get("ownerReferences") or [])
                                 for c in there.pvcs() if f"-{NAME}-" in c["metadata"]["name"]),
                     "store's volumes owned by its StatefulSets")
            there.delete(NAME)  # the garbage collector removes the StatefulSet, then the volumes
            op.until(lambda: there.sts(BACKEND_STS) is None, "the backend StatefulSet garbage-collected")
            op.until(lambda: sorted(c["metadata"]["name"] for c in there.pvcs()) == [
                "data-kept-backend-0", "data-kept-metadata-0"], "store's volumes deleted with it")

        there.create("again", {"replicas": 1, "pvcRetentionPolicy": {"whenDeleted": "Delete"}})
        with running_operator(kube_cluster, victim, tmp_path, kubeconfig=kubeconfig) as op:
            op.until(lambda: there.sts(api.backend_name("again")), "a backend StatefulSet to delete with the namespace")
        cluster.core.delete_namespace(victim)  # the namespace controller removes everything in it

        def gone() -> bool:
            try:
                cluster.core.read_namespace(victim)
            except ApiException as exc:
                return exc.status == 404
            return False

        wait_until(gone, 120, f"namespace {victim} deleted")


def test_deleting_a_dataclay_volume_by_hand_is_refused_unless_marked_first(
        kube_cluster: KubeCluster, cluster: Cluster, tmp_path: Path) -> None:
    """`kubectl delete pvc data-store-backend-1` (as a cluster admin or a namespace admin) would bring
    that backend back on an empty volume once its pod restarts: refused, saying how to scale and how
    to delete on purpose. Annotated dataclay.bsc.es/delete-volume=true it goes; other PVCs are not
    the policy's business."""
    namespace_admin(cluster, SOMEONE)
    with chart_installed(kube_cluster, cluster) as release:
        cluster.create(NAME, {"replicas": 2})
        kubeconfig = operator_kubeconfig(kube_cluster, cluster, release, tmp_path)
        with running_operator(kube_cluster, cluster.ns, tmp_path, kubeconfig=kubeconfig) as op:
            op.until(lambda: len(cluster.pvcs()) == 3, "a PVC per pod (2 backends, the metadata service)")
        backend_volume = f"data-{api.backend_pod_name(NAME, 1)}"
        metadata_volume = next(c["metadata"]["name"] for c in cluster.pvcs() if "metadata" in c["metadata"]["name"])

        def delete(api_client: Any, name: str, **kw: Any) -> Any:
            return client.CoreV1Api(api_client).delete_namespaced_persistent_volume_claim(name, cluster.ns, **kw)

        admin = kube_cluster.api_client()
        someone = as_user(kube_cluster, SOMEONE)
        try:
            message = wait_until(lambda: refusal(lambda: delete(admin, backend_volume, dry_run="All")), 60,
                                 "the volume policy in force")
            assert refusal(lambda: delete(admin, backend_volume)) == message
            assert f"holds the objects of a backend of DataClay {NAME}" in message, message
            assert f"kubectl scale dataclay {NAME} --replicas=N -n {cluster.ns}" in message, message
            assert (f"kubectl annotate pvc {backend_volume} dataclay.bsc.es/delete-volume=true -n {cluster.ns}"
                    in message), message
            assert "the directory" in (refusal(lambda: delete(admin, metadata_volume)) or "")
            wait_until(lambda: client.AuthorizationV1Api(someone).create_self_subject_access_review(
                {"spec": {"resourceAttributes": {"resource": "persistentvolumeclaims", "verb": "delete",
                                                 "namespace": cluster.ns}}}).status.allowed, 60,
                       "RBAC to allow deleting PVCs")
            assert refusal(lambda: delete(someone, backend_volume)) is not None
            relabel = {"metadata": {"labels": {"app.kubernetes.io/name": None}}}  # lifting the guard first
            assert "labels" in (refusal(lambda: client.CoreV1Api(someone).patch_namespaced_persistent_volume_claim(
                backend_volume, cluster.ns, relabel)) or "")
            assert len(cluster.pvcs()) == 3

            cluster.core.create_namespaced_persistent_volume_claim(cluster.ns, {
                "metadata": {"name": "scratch"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
            assert refusal(lambda: delete(someone, "scratch")) is None  # not a DataClay volume

            cluster.core.patch_namespaced_persistent_volume_claim(
                backend_volume, cluster.ns, {"metadata": {"annotations": {"dataclay.bsc.es/delete-volume": "true"}}})
            assert refusal(lambda: delete(someone, backend_volume)) is None  # meant: it goes
        finally:
            someone.close()
            admin.close()
