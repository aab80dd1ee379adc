"""The operator, its CRD and its Helm chart against a real API server and controller manager.

Each test gets a fresh namespace and its own operator process (`python -m dataclay_operator`,
watching only that namespace), so tests do not see each other's objects. There is no kubelet:
`mark_pods_ready` plays it where a test needs ready pods. The scale-down drain runs against a
local cluster of real metadata and backend processes named like the pods (the operator's
data-plane address points at it); a drain that cannot run keeps the replicas and reports Degraded.
"""
from __future__ import annotations

import json
import re
import os
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from dataclay_operator import api
from dataclay_operator.children import MODEL_CHECKSUM, model_checksum

from .conftest import KubeCluster, mark_pods_ready, wait_until

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "dataclay"
CRD_FILE = CHART / "crds" / "dataclays.yaml"
IMAGE = "dataclay-k8s:test"
TIMEOUT = 60.0
T = TypeVar("T")


# -- helpers ------------------------------------------------------------------------------------------


def as_dict(kube_api: Any, model: Any) -> dict[str, Any]:
    """A typed client model as the API's own (camelCase) JSON."""
    return kube_api.sanitize_for_serialization(model)


def raw_get(kube_api: Any, path: str, accept: str = "application/json") -> Any:
    """GET with a custom Accept header (e.g. server-side printing as a Table)."""
    method, url, headers, body, _ = kube_api.param_serialize(
        method="GET", resource_path=path, header_params={"Accept": accept}, auth_settings=["BearerToken"])
    response = kube_api.call_api(method, url, header_params=headers, body=body)
    response.read()
    assert response.status == 200, response.data
    return json.loads(response.data)


def dataclay(name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": name}, "spec": spec or {}}


class Cluster:
    """Typed API handles plus small getters returning plain dicts (None when absent)."""

    def __init__(self, kube_api: Any, namespace: str) -> None:
        self.api, self.ns = kube_api, namespace
        self.custom = client.CustomObjectsApi(kube_api)
        self.apps = client.AppsV1Api(kube_api)
        self.core = client.CoreV1Api(kube_api)
        self.networking = client.NetworkingV1Api(kube_api)
        self.policy = client.PolicyV1Api(kube_api)

    def create(self, name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(api.GROUP, api.VERSION, self.ns, api.PLURAL,
                                                          dataclay(name, spec))

    def dc(self, name: str) -> dict[str, Any] | None:
        return self._absent_is_none(lambda: self.custom.get_namespaced_custom_object(
            api.GROUP, api.VERSION, self.ns, api.PLURAL, name))

    def patch_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(api.GROUP, api.VERSION, self.ns, api.PLURAL, name,
                                                          {"spec": spec}, _content_type="application/merge-patch+json")

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(api.GROUP, api.VERSION, self.ns, api.PLURAL, name)

    def sts(self, name: str) -> dict[str, Any] | None:
        return self._absent_is_none(lambda: as_dict(self.api, self.apps.read_namespaced_stateful_set(name, self.ns)))

    def service(self, name: str) -> dict[str, Any] | None:
        return self._absent_is_none(lambda: as_dict(self.api, self.core.read_namespaced_service(name, self.ns)))

    def configmap(self, name: str) -> dict[str, Any] | None:
        return self._absent_is_none(lambda: as_dict(self.api, self.core.read_namespaced_config_map(name, self.ns)))

    def pods(self, selector: str) -> list[dict[str, Any]]:
        return [as_dict(self.api, p) for p in self.core.list_namespaced_pod(self.ns, label_selector=selector).items]

    def pvcs(self) -> list[dict[str, Any]]:
        return [as_dict(self.api, p) for p in self.core.list_namespaced_persistent_volume_claim(self.ns).items]

    def events(self, reason: str) -> list[str]:
        return [e.message for e in self.core.list_namespaced_event(self.ns).items if e.reason == reason]

    def ready(self, name: str, component: str) -> list[str]:
        """Play the kubelet for one component's pods."""
        return mark_pods_ready(self.core, self.ns, api.label_selector(api.selector_labels(name, component)))

    @staticmethod
    def _absent_is_none(read: Callable[[], T]) -> T | None:
        try:
            return read()
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


def condition(dc: dict[str, Any] | None, ctype: str) -> dict[str, Any]:
    for cond in ((dc or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == ctype:
            return cond
    return {}


class Operator:
    """`python -m dataclay_operator` as a subprocess, its output in a log file."""

    def __init__(self, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.popen, self.log = popen, log

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 60) -> str:
        return "--- operator log ---\n" + "\n".join(self.output().splitlines()[-lines:])

    def until(self, check: Callable[[], T | None], what: str, timeout: float = TIMEOUT) -> T:
        """Poll `check` (bounded); fail with the operator's log if it times out or the operator dies."""
        def probe() -> T | None:
            if self.popen.poll() is not None:
                raise AssertionError(f"operator exited with {self.popen.returncode}\n{self.tail()}")
            return check()
        try:
            return wait_until(probe, timeout, what)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.tail()}") from None

    def stop(self) -> int:
        """SIGTERM (what the kubelet sends); kopf stops cleanly. SIGKILL only if it hangs."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        return self.popen.returncode


@contextmanager
def running_operator(kube_cluster: KubeCluster, namespace: str, log_dir: Path, *, kubeconfig: Path | None = None,
                     **env: str) -> Iterator[Operator]:
    environ = kube_cluster.env()
    if kubeconfig is not None:
        environ["KUBECONFIG"] = str(kubeconfig)
    paths = [str(REPO / d) for d in ("operator", "client", "backend")]
    environ["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [environ.get("PYTHONPATH")] if p])
    environ.update({"DC_OPERATOR_NAMESPACES": namespace, "DC_OPERATOR_RESYNC_SECONDS": "5",
                    "DC_OPERATOR_IMAGE": IMAGE, **env})
    log = log_dir / f"operator-{uuid.uuid4().hex[:6]}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen([sys.executable, "-m", "dataclay_operator"], env=environ, stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    operator = Operator(popen, log)
    try:
        yield operator
    finally:
        operator.stop()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


# -- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crd(kube_api: Any) -> dict[str, Any]:
    """The chart's CRD file, installed and Established."""
    ext = client.ApiextensionsV1Api(kube_api)
    body = yaml.safe_load(CRD_FILE.read_text())
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:  # already installed by another module (same file)
            raise

    def established() -> dict[str, Any] | None:
        live = as_dict(kube_api, ext.read_custom_resource_definition(api.CRD_NAME))
        conditions = (live.get("status") or {}).get("conditions") or []
        return live if any(c["type"] == "Established" and c["status"] == "True" for c in conditions) else None

    return wait_until(established, TIMEOUT, "the DataClay CRD to be established")


@pytest.fixture
def cluster(kube_api: Any, namespace: str, crd: dict[str, Any]) -> Cluster:
    return Cluster(kube_api, namespace)


# -- the CRD and server-side validation -----------------------------------------------------------------


def test_crd_installs_with_status_subresource_and_printer_columns(crd: dict[str, Any], cluster: Cluster) -> None:
    version = crd["spec"]["versions"][0]
    assert version["name"] == api.VERSION and set(version["subresources"]) == {"status", "scale"}
    cluster.create("demo", {"replicas": 2})
    table = raw_get(cluster.api, f"/apis/{api.API_VERSION}/namespaces/{cluster.ns}/{api.PLURAL}",
                    accept="application/json;as=Table;v=v1;g=meta.k8s.io")
    names = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert names == ["Name", "Ready", "Phase", "Age"]  # what `kubectl get dataclays` shows


def test_server_applies_the_schema_defaults(cluster: Cluster) -> None:
    created = cluster.create("defaults")
    assert created["spec"] == {
        "replicas": 1, "durability": "process", "imagePullPolicy": "IfNotPresent", "upgradePolicy": "Pinned",
        "storage": {"size": "1Gi"}, "metadata": {"storage": {"size": "1Gi"}},
        "model": {"path": "/opt/dataclay/models"},
        "pvcRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
    }


@pytest.mark.parametrize("name, spec, expected", [
    ("zero", {"replicas": 0}, "spec.replicas"),
    ("negative", {"replicas": -2}, "spec.replicas"),
    ("text", {"replicas": "three"}, "spec.replicas"),
    ("fraction", {"replicas": 1.5}, "spec.replicas"),
    ("durability", {"durability": "eventually"}, "spec.durability"),
    ("size", {"storage": {"size": "lots"}}, "spec.storage.size"),
    ("size-type", {"storage": {"size": 10}}, "spec.storage.size"),
    ("limit", {"memoryLimit": "12 apples"}, "spec.memoryLimit"),
    ("resources", {"resources": {"limits": {"memory": "x"}}}, "spec.resources.limits.memory"),
    ("configmap", {"model": {"configMap": "Not_A_Name"}}, "spec.model.configMap"),
    ("model-path", {"model": {"path": "relative/dir"}}, "spec.model.path"),
    ("retention", {"pvcRetentionPolicy": {"whenDeleted": "Keep"}}, "spec.pvcRetentionPolicy.whenDeleted"),
    ("upgrade", {"upgradePolicy": "Whenever"}, "spec.upgradePolicy"),
    ("pull", {"imagePullPolicy": "Sometimes"}, "spec.imagePullPolicy"),
    ("image", {"image": ""}, "spec.image"),
    ("a" * 41, {}, "at most 40 characters"),
    ("9lives", {}, "starting with a letter"),
])
def test_invalid_dataclays_are_rejected_by_the_server(cluster: Cluster, name: str, spec: dict[str, Any],
                                                      expected: str) -> None:
    with pytest.raises(ApiException) as info:
        cluster.create(name, spec)
    assert info.value.status == 422
    assert expected in json.loads(info.value.body)["message"]


def test_storage_cannot_change_after_creation(cluster: Cluster) -> None:
    cluster.create("fixed", {"storage": {"size": "1Gi"}})
    with pytest.raises(ApiException) as info:
        cluster.patch_spec("fixed", {"storage": {"size": "5Gi"}})
    assert info.value.status == 422 and "storage cannot be changed" in info.value.body


# -- the operator ----------------------------------------------------------------------------------------


def test_operator_creates_children_with_owner_references(kube_cluster: KubeCluster, cluster: Cluster,
                                                         tmp_path: Path) -> None:
    created = cluster.create("store", {"replicas": 2, "model": {"configMap": "models"}})
    owner = {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": "store", "uid": created["metadata"]["uid"],
             "controller": True, "blockOwnerDeletion": True}
    health = closed_port()
    with running_operator(kube_cluster, cluster.ns, tmp_path,
                          DC_OPERATOR_LIVENESS=f"http://127.0.0.1:{health}/healthz") as op:
        backend = op.until(lambda: cluster.sts("store-backend"), "the backend StatefulSet")
        op.until(lambda: healthy(f"http://127.0.0.1:{health}/healthz"), "the liveness endpoint (chart probe)")
        children = {
            "metadata StatefulSet": op.until(lambda: cluster.sts("store-metadata"), "the metadata StatefulSet"),
            "backend StatefulSet": backend,
            "metadata Service": cluster.service("store-metadata"),
            "backend Service": cluster.service("store-backend"),
            "client ConfigMap": cluster.configmap("store-client"),
            "NetworkPolicy": as_dict(cluster.api, cluster.networking.read_namespaced_network_policy(
                "store-dataplane", cluster.ns)),
            "PodDisruptionBudget": as_dict(cluster.api, cluster.policy.read_namespaced_pod_disruption_budget(
                "store-backend", cluster.ns)),
        }
        for what, child in children.items():
            assert child is not None, what
            assert child["metadata"]["ownerReferences"] == [owner], what
            assert child["metadata"]["labels"][api.LABEL_MANAGED_BY] == api.MANAGER, what

        assert backend["spec"]["replicas"] == 2 and backend["spec"]["serviceName"] == "store-backend"
        (container,) = backend["spec"]["template"]["spec"]["containers"]
        assert container["image"] == IMAGE
        env = {e["name"]: e for e in container["env"]}
        assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert env["DC_ADVERTISE_HOST"]["value"] == f"$(POD_NAME).store-backend.{cluster.ns}.svc"
        assert container["readinessProbe"]["grpc"]["port"] == api.HEALTH_PORT  # plain-text health-only port
        assert "DC_INSECURE" not in env and env["DC_CREDENTIALS"]["value"] == api.CREDENTIALS_DIR
        # the TLS material: Secrets controlled by the DataClay, the CA key in the CA Secret alone
        secrets = {n: cluster.core.read_namespaced_secret(n, cluster.ns) for n in (
            "store-ca", "store-metadata-tls", "store-backend-tls", "store-client-credentials",
            "store-admin-credentials")}
        for secret_name, secret in secrets.items():
            assert as_dict(cluster.api, secret.metadata)["ownerReferences"] == [owner], secret_name
            assert ("ca.key" in secret.data) == (secret_name == "store-ca"), secret_name
        assert {"backend.store-backend-0.pem", "backend.store-backend-1.key"} <= set(secrets["store-backend-tls"].data)
        assert children["backend Service"]["spec"]["clusterIP"] == "None"
        assert children["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
        ingress = children["NetworkPolicy"]["spec"]["ingress"]
        assert {p["port"] for p in ingress[0]["ports"]} == {api.METADATA_PORT, api.BACKEND_PORT}
        assert container["resources"]["requests"]["cpu"]  # never BestEffort
        assert children["metadata StatefulSet"]["spec"]["replicas"] == 1
        assert children["client ConfigMap"]["data"] == {"DC_HOST": f"store-metadata.{cluster.ns}.svc",
                                                        "DC_PORT": str(api.METADATA_PORT)}

        # the controller manager's StatefulSet controller takes it from here: pods named for identity
        pods = op.until(lambda: sorted(p["metadata"]["name"] for p in cluster.pods("app.kubernetes.io/instance=store"))
                        if len(cluster.pods("app.kubernetes.io/instance=store")) == 3 else None, "three pods")
        assert pods == ["store-backend-0", "store-backend-1", "store-metadata-0"]
        for pod in cluster.pods("app.kubernetes.io/instance=store"):  # each server mounts its credentials
            mounts = {m["mountPath"] for c in pod["spec"]["containers"] for m in c["volumeMounts"]}
            assert api.CREDENTIALS_DIR in mounts, pod["metadata"]["name"]
            assert any(v.get("secret") for v in pod["spec"]["volumes"]), pod["metadata"]["name"]
        claims = op.until(lambda: sorted(c["metadata"]["name"] for c in cluster.pvcs()) if len(cluster.pvcs()) == 3
                          else None, "one PVC per pod")
        assert claims == ["data-store-backend-0", "data-store-backend-1", "data-store-metadata-0"]
        assert any("StatefulSet store-backend" in m for m in cluster.events("Created"))

    # kopf added nothing to the DataClay: no finalizer (deletion never waits for the operator)
    live = cluster.dc("store")
    assert not live["metadata"].get("finalizers")
    assert not [k for k in (live["metadata"].get("annotations") or {}) if "kopf" in k]


def test_status_and_conditions_follow_the_pods(kube_cluster: KubeCluster, cluster: Cluster, tmp_path: Path) -> None:
    cluster.create("store", {"replicas": 2})
    with running_operator(kube_cluster, cluster.ns, tmp_path) as op:
        pending = op.until(lambda: (d := cluster.dc("store")) and d.get("status", {}).get("observedGeneration") == 1
                           and d, "the first status")
        assert pending["status"]["phase"] == "Provisioning"
        assert condition(pending, "Ready")["status"] == "False"
        assert pending["status"]["desiredBackends"] == 2
        op.until(lambda: len(cluster.pods("app.kubernetes.io/instance=store")) == 3, "pods")

        cluster.ready("store", api.COMPONENT_METADATA)
        cluster.ready("store", api.COMPONENT_BACKEND)
        ready = op.until(lambda: (d := cluster.dc("store")) and d["status"].get("phase") == "Ready" and d,
                         "phase Ready after the pods are ready")
        status = ready["status"]
        assert (status["ready"], status["readyBackends"], status["metadataReady"]) == ("2/2", 2, True)
        assert status["endpoint"] == f"store-metadata.{cluster.ns}.svc:{api.METADATA_PORT}"
        assert [b["pod"] for b in status["backends"]] == ["store-backend-0", "store-backend-1"]
        assert all(b["ready"] for b in status["backends"])
        assert (condition(ready, "Ready")["status"], condition(ready, "Ready")["reason"]) == ("True", "AllReady")
        assert condition(ready, "Degraded")["status"] == "False"

        table = raw_get(cluster.api, f"/apis/{api.API_VERSION}/namespaces/{cluster.ns}/{api.PLURAL}/store",
                        accept="application/json;as=Table;v=v1;g=meta.k8s.io")
        assert table["rows"][0]["cells"][:3] == ["store", "2/2", "Ready"]


def test_replicas_and_image_changes_roll_out(kube_cluster: KubeCluster, cluster: Cluster, tmp_path: Path) -> None:
    cluster.create("store", {"replicas": 1, "image": "dataclay:1"})
    with running_operator(kube_cluster, cluster.ns, tmp_path) as op:
        op.until(lambda: (d := cluster.dc("store")) and d.get("status", {}).get("observedGeneration") == 1,
                 "the first pass")
        cluster.patch_spec("store", {"replicas": 3, "image": "dataclay:2", "resources": {"limits": {"memory": "1Gi"}}})

        def rolled() -> dict[str, Any] | None:
            sts = cluster.sts("store-backend")
            (container,) = sts["spec"]["template"]["spec"]["containers"]
            ok = sts["spec"]["replicas"] == 3 and container["image"] == "dataclay:2"
            return sts if ok else None

        sts = op.until(rolled, "the backend StatefulSet at 3 replicas of dataclay:2")
        assert sts["spec"]["template"]["spec"]["containers"][0]["resources"] == {"limits": {"memory": "1Gi"}}
        meta = cluster.sts("store-metadata")
        assert meta["spec"]["template"]["spec"]["containers"][0]["image"] == "dataclay:2"
        op.until(lambda: sorted(p["metadata"]["name"] for p in cluster.pods("app.kubernetes.io/component=backend"))
                 == ["store-backend-0", "store-backend-1", "store-backend-2"], "three backend pods")
        op.until(lambda: (d := cluster.dc("store"))["status"].get("observedGeneration") == 2 and
                 d["status"]["desiredBackends"] == 3, "status of generation 2")
        assert any("StatefulSet store-backend" in m for m in cluster.events("Updated"))


def test_scale_down_that_cannot_drain_keeps_replicas_and_is_degraded(kube_cluster: KubeCluster, cluster: Cluster,
                                                                     tmp_path: Path) -> None:
    """No data plane answers: the drain fails, replicas stay, Degraded says why; scaling back clears it."""
    cluster.create("store", {"replicas": 3})
    env = {"DC_OPERATOR_DATAPLANE_HOST": "127.0.0.1", "DC_OPERATOR_DATAPLANE_PORT": str(closed_port())}
    with running_operator(kube_cluster, cluster.ns, tmp_path, **env) as op:
        op.until(lambda: (s := cluster.sts("store-backend")) and s["spec"]["replicas"] == 3, "3 backends")
        cluster.patch_spec("store", {"replicas": 2})
        degraded = op.until(lambda: (d := cluster.dc("store")) and condition(d, "Degraded").get("status") == "True"
                            and d, "Degraded after the failed drain", timeout=120)
        cond = condition(degraded, "Degraded")
        assert cond["reason"] == "DrainFailed"
        assert "store-backend-2" in cond["message"] and "nothing removed" in cond["message"]
        assert degraded["status"]["phase"] == "Degraded"
        assert degraded["status"]["drain"]["state"] == "Failed"
        assert degraded["status"]["drain"]["backends"] == ["store-backend-2"]
        assert cluster.sts("store-backend")["spec"]["replicas"] == 3  # nothing was removed
        assert cluster.events("DrainStarted") and cluster.events("DrainFailed")
        assert not cluster.events("ScaledDown")

        cluster.patch_spec("store", {"replicas": 3})
        healed = op.until(lambda: (d := cluster.dc("store")) and condition(d, "Degraded").get("status") == "False"
                          and d, "Degraded cleared after scaling back")
        assert "drain" not in healed["status"]
        assert cluster.sts("store-backend")["spec"]["replicas"] == 3


def test_operator_restart_heals_drift_without_duplicates(kube_cluster: KubeCluster, cluster: Cluster,
                                                         tmp_path: Path) -> None:
    cluster.create("store", {"replicas": 2, "image": "dataclay:1"})
    with running_operator(kube_cluster, cluster.ns, tmp_path) as op:
        op.until(lambda: cluster.sts("store-backend"), "the backend StatefulSet")
        op.until(lambda: cluster.service("store-backend"), "the backend Service")
    # while no operator runs: a child is deleted, another is edited by hand
    cluster.core.delete_namespaced_service("store-backend", cluster.ns)
    cluster.apps.patch_namespaced_stateful_set("store-backend", cluster.ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "backend", "image": "tampered:0"}]}}}})
    with running_operator(kube_cluster, cluster.ns, tmp_path) as op:
        op.until(lambda: cluster.service("store-backend"), "the Service recreated")
        op.until(lambda: cluster.sts("store-backend")["spec"]["template"]["spec"]["containers"][0]["image"]
                 == "dataclay:1", "the image restored")
    statefulsets = [s.metadata.name for s in cluster.apps.list_namespaced_stateful_set(cluster.ns).items]
    assert sorted(statefulsets) == ["store-backend", "store-metadata"]


def test_a_child_deleted_or_edited_by_hand_is_repaired_at_once_not_at_the_resync(
        kube_cluster: KubeCluster, cluster: Cluster, tmp_path: Path) -> None:
    """Every child kind is watched: with a resync of 10 minutes, a deleted Service, an edited
    ConfigMap, a deleted NetworkPolicy, PodDisruptionBudget and client Secret are back within
    seconds."""
    cluster.create("store", {"replicas": 1})
    with running_operator(kube_cluster, cluster.ns, tmp_path, DC_OPERATOR_RESYNC_SECONDS="600") as op:
        op.until(lambda: cluster.sts("store-backend"), "the backend StatefulSet")
        op.until(lambda: cluster.service("store-backend") and cluster.configmap("store-client"), "children")
        data = cluster.configmap("store-client")["data"]
        cluster.core.delete_namespaced_service("store-backend", cluster.ns)
        cluster.core.patch_namespaced_config_map("store-client", cluster.ns, {"data": {"DC_PORT": "1"}})
        cluster.networking.delete_namespaced_network_policy("store-dataplane", cluster.ns)
        cluster.policy.delete_namespaced_pod_disruption_budget("store-backend", cluster.ns)
        cluster.core.delete_namespaced_secret("store-client-credentials", cluster.ns)
        op.until(lambda: cluster.service("store-backend"), "the Service recreated", timeout=30)
        op.until(lambda: cluster.configmap("store-client")["data"] == data, "the ConfigMap restored", timeout=30)
        op.until(lambda: cluster.networking.list_namespaced_network_policy(cluster.ns).items,
                 "the NetworkPolicy recreated", timeout=30)
        op.until(lambda: cluster.policy.list_namespaced_pod_disruption_budget(cluster.ns).items,
                 "the PodDisruptionBudget recreated", timeout=30)
        op.until(lambda: [s for s in cluster.core.list_namespaced_secret(cluster.ns).items
                          if s.metadata.name == "store-client-credentials"], "the client Secret reissued", timeout=30)


def test_a_changed_model_configmap_rolls_the_backends(kube_cluster: KubeCluster, cluster: Cluster,
                                                      tmp_path: Path) -> None:
    """The model ConfigMap is not the DataClay's child, yet a change of its modules reaches the
    backends' pod template (a rolling update) within seconds, not at the resync (10 minutes)."""
    from kubernetes import client

    cluster.core.create_namespaced_config_map(cluster.ns, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="models"), data={"company.py": "VERSION = 1\n"}))
    cluster.create("store", {"replicas": 1, "model": {"configMap": "models"}})

    def digest() -> str | None:
        sts = cluster.sts("store-backend")
        return sts and (sts["spec"]["template"]["metadata"].get("annotations") or {}).get(MODEL_CHECKSUM)

    with running_operator(kube_cluster, cluster.ns, tmp_path, DC_OPERATOR_RESYNC_SECONDS="600") as op:
        first = op.until(digest, "the model digest in the backends' template")
        cluster.core.patch_namespaced_config_map("models", cluster.ns, {"data": {"company.py": "VERSION = 2\n"}})
        second = op.until(lambda: (d := digest()) != first and d, "a new digest: the backends roll", timeout=30)
    assert second == model_checksum({"data": {"company.py": "VERSION = 2\n"}})


def test_drift_is_what_the_server_would_store_not_what_the_operator_last_wrote(kube_api: Any,
                                                                            cluster: Cluster) -> None:
    """Passes run in this process (each one synchronous): quantities the server normalises and an
    env var another tool added are no drift (no patch, no Updated event, the env var stays);
    removing spec.resources removes the limits the operator had applied."""
    from dataclay_operator.config import OperatorConfig
    from dataclay_operator.events import EventRecorder
    from dataclay_operator.kube import Kube
    from dataclay_operator.reconcile import Reconciler
    from dataclay_operator.spec import DEFAULT_BACKEND_RESOURCES

    kube = Kube(kube_api)
    reconciler = Reconciler(kube=kube, config=OperatorConfig(namespaces=(cluster.ns,)), events=EventRecorder(kube))
    cluster.create("store", {"replicas": 1, "resources": {"requests": {"memory": "1024Mi", "cpu": "1000m"},
                                                          "limits": {"memory": "2048Mi"}}})
    reconciler.reconcile(cluster.ns, "store")

    def backend_container() -> dict[str, Any]:
        return cluster.sts("store-backend")["spec"]["template"]["spec"]["containers"][0]

    assert backend_container()["resources"] == {"requests": {"memory": "1Gi", "cpu": "1"}, "limits": {"memory": "2Gi"}}
    cluster.apps.patch_namespaced_stateful_set("store-backend", cluster.ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "backend", "env": [{"name": "INJECTED_BY_ANOTHER_TOOL", "value": "1"}]}]}}}})
    for _ in range(3):
        reconciler.reconcile(cluster.ns, "store")
    assert cluster.events("Updated") == []
    assert "INJECTED_BY_ANOTHER_TOOL" in {e["name"] for e in backend_container()["env"]}

    cluster.patch_spec("store", {"resources": None})
    reconciler.reconcile(cluster.ns, "store")
    assert backend_container()["resources"] == DEFAULT_BACKEND_RESOURCES  # the old limits are gone
    (updated,) = cluster.events("Updated")
    assert "StatefulSet store-backend" in updated
    reconciler.reconcile(cluster.ns, "store")
    assert len(cluster.events("Updated")) == 1


def test_a_foreign_object_with_a_childs_name_is_reported_not_taken_over(kube_cluster: KubeCluster, cluster: Cluster,
                                                                        tmp_path: Path) -> None:
    cluster.core.create_namespaced_config_map(cluster.ns, {"metadata": {"name": "store-client"}, "data": {"x": "1"}})
    cluster.create("store")
    with running_operator(kube_cluster, cluster.ns, tmp_path) as op:
        degraded = op.until(lambda: (d := cluster.dc("store")) and condition(d, "Degraded").get("status") == "True"
                            and d, "Degraded")
        assert condition(degraded, "Degraded")["reason"] == "ReconcileFailed"
        assert "ConfigMap store-client exists and is not controlled by this DataClay" in \
            condition(degraded, "Degraded")["message"]
        assert cluster.configmap("store-client")["data"] == {"x": "1"}  # untouched
        cluster.core.delete_namespaced_config_map("store-client", cluster.ns)
        op.until(lambda: condition(cluster.dc("store"), "Degraded").get("status") == "False",
                 "recovery once the name is free", timeout=90)
        assert cluster.configmap("store-client")["data"]["DC_PORT"] == str(api.METADATA_PORT)


@pytest.mark.parametrize("when_deleted", ["Delete", "Retain"])
def test_deleting_the_dataclay_cascades(kube_cluster: KubeCluster, cluster: Cluster, tmp_path: Path,
                                        when_deleted: str) -> None:
    cluster.create("store", {"replicas": 2, "pvcRetentionPolicy": {"whenDeleted": when_deleted}})
    with running_operator(kube_cluster, cluster.ns, tmp_path) as op:
        op.until(lambda: len(cluster.pvcs()) == 3, "the PVCs of 3 pods")
        cluster.delete("store")
        # the controller manager's garbage collector removes the children (no finalizer to wait for)
        op.until(lambda: cluster.dc("store") is None, "the DataClay gone")
        op.until(lambda: not any((cluster.sts("store-backend"), cluster.sts("store-metadata"),
                                  cluster.service("store-backend"), cluster.service("store-metadata"),
                                  cluster.configmap("store-client"))), "the children garbage-collected")
        op.until(lambda: not cluster.pods("app.kubernetes.io/instance=store"), "the pods gone")
        if when_deleted == "Delete":
            op.until(lambda: not cluster.pvcs(), "the PVCs deleted")
        else:
            assert sorted(c["metadata"]["name"] for c in cluster.pvcs()) == [
                "data-store-backend-0", "data-store-backend-1", "data-store-metadata-0"]


# -- the Helm chart ---------------------------------------------------------------------------------------


def helm(kube_cluster: KubeCluster, *args: str) -> str:
    result = subprocess.run([str(kube_cluster.bin_dir / "helm"), *args], env=kube_cluster.env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("values", [[], ["--set", "watchNamespaces={apps,batch}", "--set", "example.enabled=true"]])
def test_chart_renders_and_lints(kube_cluster: KubeCluster, values: list[str]) -> None:
    out = helm(kube_cluster, "lint", "--strict", str(CHART), *values)
    assert "0 chart(s) failed" in out
    docs = [d for d in yaml.safe_load_all(helm(kube_cluster, "template", "rel", str(CHART), "--namespace", "ops",
                                                 "--include-crds", *values)) if d]
    kinds = sorted({d["kind"] for d in docs})
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
            "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} <= set(kinds)
    crd = next(d for d in docs if d["kind"] == "CustomResourceDefinition")
    assert crd == yaml.safe_load(CRD_FILE.read_text())
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "dataclay_operator"]
    policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"}
    bindings = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert sorted(policies) == ["rel-dataclay-operator-backends", "rel-dataclay-operator-volumes"]  # replicas, volumes
    assert sorted(b["spec"]["policyName"] for b in bindings) == sorted(policies)
    operator_user = f"system:serviceaccount:ops:{deployment['spec']['template']['spec']['serviceAccountName']}"
    for policy in policies.values():  # the operator is let through
        assert operator_user in json.dumps(policy["spec"]["matchConditions"])
    env = {e["name"]: e.get("value") for e in container["env"]}
    if values:
        assert env["DC_OPERATOR_NAMESPACES"] == "apps,batch"
        for binding in bindings:  # the guards apply where the operator manages DataClays
            assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0]["values"] == [
                "apps", "batch"]
        assert sorted(d["metadata"]["namespace"] for d in docs if d["kind"] == "Role") == ["apps", "batch", "ops"]
        assert [d["metadata"]["name"] for d in docs if d["kind"] == api.KIND] == ["example"]
    else:
        assert env["DC_OPERATOR_NAMESPACES"] == ""
        assert all("matchResources" not in binding["spec"] for binding in bindings)  # everywhere
        assert not [d for d in docs if d["kind"] == api.KIND]
        assert [d["metadata"]["name"] for d in docs if d["kind"] == "Role"] == ["rel-dataclay-operator-leader-election"]
    assert env["DC_OPERATOR_LEASE"] == "ops/rel-dataclay-operator"  # replicas elect a leader


def service_account_kubeconfig(kube_cluster: KubeCluster, kube_api: Any, namespace: str, name: str,
                               path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount (TokenRequest), as the operator pod would."""
    token = client.CoreV1Api(kube_api).create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 3600}}).status.token
    admin = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    doc = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": admin["clusters"][0]["name"], "user": name}}],
        "current-context": name,
    }
    path.write_text(json.dumps(doc))
    return path


def test_helm_install_is_accepted_and_its_rbac_is_enough(kube_cluster: KubeCluster, cluster: Cluster,
                                                         tmp_path: Path) -> None:
    """Install the chart for real, then run the operator with the chart's ServiceAccount and
    least-privilege Role: it must manage the chart's example DataClay without a single 403."""
    release = f"dc{uuid.uuid4().hex[:6]}"
    helm(kube_cluster, "install", release, str(CHART), "--namespace", cluster.ns,
         "--set", f"watchNamespaces={{{cluster.ns}}}", "--set", "example.enabled=true", "--set", "example.replicas=2")
    try:
        deployment = cluster.apps.read_namespaced_deployment(f"{release}-dataclay-operator", cluster.ns)
        assert deployment.spec.template.spec.service_account_name == f"{release}-dataclay-operator"
        assert cluster.dc("example") is not None
        assert cluster.api is not None and client.RbacAuthorizationV1Api(cluster.api).read_namespaced_role(
            f"{release}-dataclay-operator", cluster.ns)

        kubeconfig = service_account_kubeconfig(kube_cluster, cluster.api, cluster.ns,
                                                f"{release}-dataclay-operator", tmp_path / "sa.kubeconfig")
        (container,) = deployment.spec.template.spec.containers
        chart_env = {e.name: e.value for e in container.env if e.value is not None and e.name.startswith("DC_OPERATOR_")
                     and e.name not in ("DC_OPERATOR_IMAGE", "DC_OPERATOR_LIVENESS", "DC_OPERATOR_RESYNC_SECONDS")}
        assert chart_env["DC_OPERATOR_LEASE"] == f"{cluster.ns}/{release}-dataclay-operator"
        with running_operator(kube_cluster, cluster.ns, tmp_path, kubeconfig=kubeconfig, POD_NAME="chart-op",
                              DC_OPERATOR_POD_NAMESPACE=cluster.ns, **chart_env) as op:
            op.until(lambda: cluster.sts("example-backend"), "the example's backend StatefulSet")
            lease = client.CoordinationV1Api(cluster.api).read_namespaced_lease(f"{release}-dataclay-operator",
                                                                                 cluster.ns)
            assert lease.spec.holder_identity == "chart-op"  # the chart's Role lets it lead
            op.until(lambda: len(cluster.pods("app.kubernetes.io/instance=example")) == 3, "its pods")
            cluster.ready("example", api.COMPONENT_METADATA)
            cluster.ready("example", api.COMPONENT_BACKEND)
            op.until(lambda: (d := cluster.dc("example")) and d.get("status", {}).get("phase") == "Ready",
                     "the example Ready")
            assert cluster.events("Created")  # Events are allowed too
            log = op.output()
        # a status code, not a digit run inside a random release name (dc804033 failed once)
        assert not re.search(r"\b403\b", log) and "Forbidden" not in log and "forbidden" not in log, log
    finally:
        helm(kube_cluster, "uninstall", release, "--namespace", cluster.ns)


# -- the scale-down drain, against real backend processes -------------------------------------------------


def owned_count(metadata_port: int, backend_id: Any) -> int:
    """Objects the metadata directory says a backend owns (the authority a drain empties), once
    that backend registered what it stored (it does just after replying); plain gRPC, so it can
    run on any thread next to a started Client."""
    import grpc

    from dataclay.protocol import dataclay_pb2 as pb
    from dataclay.protocol import dataclay_pb2_grpc as rpc

    from dataclay.security import open_channel

    with open_channel(f"127.0.0.1:{metadata_port}", ADMIN[metadata_port]) as channel:
        listed = rpc.MetadataStub(channel).ListBackends(pb.Empty(), timeout=30).backends
        for info in (info for info in listed if info.backend_id == backend_id.bytes):  # not listed: retired
            with open_channel(f"{info.host}:{info.port}", ADMIN[metadata_port]) as to_backend:
                try:
                    rpc.BackendStub(to_backend).FlushRegistrations(pb.FlushRegistrationsRequest(), timeout=30)
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.UNAVAILABLE:
                        raise  # not answering (its pod was deleted): what it holds is registered at its start
        reply = rpc.MetadataStub(channel).ListOwnedObjects(pb.OwnedObjectsRequest(backend_id=backend_id.bytes), timeout=30)
    return len(reply.object_ids)


ADMIN: dict[int, Any] = {}  # metadata port -> admin credentials of that local data plane


def credentials_from_the_ca_secret(cluster: "Cluster", dataclay_name: str, directory: Path) -> bytes:
    """Write the CA the operator made (Secret <name>-ca) where a local cluster makes its
    credentials: its servers and the operator's admin Secret then share one CA."""
    import base64

    from dataclay.security import _write_private

    secret = cluster.core.read_namespaced_secret(api.ca_secret_name(dataclay_name), cluster.ns)
    directory.mkdir(parents=True, mode=0o700)
    for key in ("ca.pem", "ca.key"):
        _write_private(directory / key, base64.b64decode(secret.data[key]))
    return base64.b64decode(secret.data["ca.pem"])


def pod_named_cluster(data_dir: Path, dataclay_name: str, backends: int, credentials: Path | None = None) -> Any:
    """A local cluster (real metadata + backend processes) whose backends are named like the pods
    of DataClay `dataclay_name` (`<name>-backend-<ordinal>`), as DC_BACKEND_NAME=$(POD_NAME) names them."""
    from dataclay_backend.cluster import LocalCluster

    class PodNamedCluster(LocalCluster):
        def start_backend(self, index: int, env: dict[str, str] | None = None) -> Any:
            name = api.backend_pod_name(dataclay_name, index)
            self._ensure_credentials(f"backend:{name}")
            args = ["--port", "0", "--name", name, "--data-dir", str(self.data_dir / name),
                    "--advertise-host", self.host, "--metadata-host", self.host, "--metadata-port", str(self.port)]
            for path in self.model_paths:
                args += ["--model-path", str(path)]
            self.backends[name] = self._spawn(name, "dataclay_backend.backend", args, env)
            return self.backends[name]

    # secure, with the CA of the operator's Secret (credentials_from_the_ca_secret)
    return PodNamedCluster(data_dir, backends=backends, port=0, model_paths=[REPO / "tests" / "models"],
                           credentials=credentials, insecure=False)


@contextmanager
def grpc_plain_refused(port: int) -> Iterator[None]:
    """A call without credentials to the local data plane is refused (the TLS handshake fails)."""
    import grpc

    from dataclay.protocol import dataclay_pb2 as pb
    from dataclay.protocol import dataclay_pb2_grpc as rpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.RpcError) as raised:
            rpc.MetadataStub(channel).ListBackends(pb.Empty(), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    yield


DRAIN_OBJECTS = int(os.environ.get("DC_TEST_DRAIN_OBJECTS", "2000"))


def test_scale_down_drains_the_removed_backend_before_replicas_drop(kube_cluster: KubeCluster, cluster: Cluster,
                                                                    tmp_path: Path) -> None:
    """3 -> 2 backends: every object on store-backend-2 moves to the others, then replicas drop;
    afterwards (store-backend-2 stopped, as its pod would be) every object is still there."""
    import threading

    from dataclay import Client
    from hr import Company, Employee  # tests/models, on the path via tests/k8s/conftest.py

    cluster.create("store", {"replicas": 3})
    with running_operator(kube_cluster, cluster.ns, tmp_path) as first:  # makes the CA and identities
        first.until(lambda: cluster.sts("store-backend"), "the backend StatefulSet")
    ca = credentials_from_the_ca_secret(cluster, "store", tmp_path / "credentials")
    with pod_named_cluster(tmp_path / "dataplane", "store", backends=3, credentials=tmp_path / "credentials") as dataplane:
        ADMIN[dataplane.port] = dataplane.client_credentials("admin")
        with grpc_plain_refused(dataplane.port):
            pass
        with Client(host="127.0.0.1", port=dataplane.port, credentials=dataplane.client_credentials()) as writer:
            by_name = {info.name: backend_id for backend_id, info in writer.get_backends().items()}
            companies = []
            for index in range(DRAIN_OBJECTS // 2):  # a Company and its Employee each
                company = Company(f"C{index}", Employee(f"E{index}", float(index)))
                company.make_persistent(backend_id=by_name["store-backend-2"])
                companies.append(company.id)
            kept = Company("stays", Employee("on backend 0", 1.0))
            kept.make_persistent(backend_id=by_name["store-backend-0"])
        assert owned_count(dataplane.port, by_name["store-backend-2"]) == DRAIN_OBJECTS

        env = {"DC_OPERATOR_DATAPLANE_HOST": "127.0.0.1", "DC_OPERATOR_DATAPLANE_PORT": str(dataplane.port)}
        with running_operator(kube_cluster, cluster.ns, tmp_path, **env) as op:
            op.until(lambda: (s := cluster.sts("store-backend")) and s["spec"]["replicas"] == 3, "3 backends")
            op.until(lambda: len(cluster.pods("app.kubernetes.io/instance=store")) == 4, "pods")
            # Ready backend pods are listed with the id each registered under its pod name.
            cluster.ready("store", api.COMPONENT_BACKEND)
            listed = op.until(lambda: (d := cluster.dc("store")) and len(d["status"].get("backends", [])) == 3
                              and all("backendId" in b for b in d["status"]["backends"]) and d["status"]["backends"],
                              "backend ids in status")
            assert {b["pod"]: b["backendId"] for b in listed} == {name: str(by_name[name]) for name in by_name}

            # Watch replicas: the moment they drop, store-backend-2 must already own nothing.
            at_drop: list[int] = []
            watching = threading.Event()

            def watch_replicas() -> None:
                from kubernetes import watch

                w = watch.Watch()
                watching.set()
                for event in w.stream(cluster.apps.list_namespaced_stateful_set, cluster.ns,
                                      field_selector="metadata.name=store-backend", timeout_seconds=240):
                    if event["object"].spec.replicas == 2:
                        at_drop.append(owned_count(dataplane.port, by_name["store-backend-2"]))
                        w.stop()

            watcher = threading.Thread(target=watch_replicas, daemon=True)
            watcher.start()
            assert watching.wait(10)
            cluster.patch_spec("store", {"replicas": 2})
            op.until(lambda: cluster.sts("store-backend")["spec"]["replicas"] == 2, "replicas lowered to 2",
                     timeout=240)
            watcher.join(30)
            assert at_drop == [0], at_drop

            done = op.until(lambda: (d := cluster.dc("store")) and d["status"].get("observedGeneration") == 2
                            and "drain" not in d["status"] and d, "status after the scale-down")
            assert condition(done, "Degraded")["status"] == "False"
            (started,), (succeeded,), (scaled,) = (cluster.events(r) for r in ("DrainStarted", "DrainSucceeded",
                                                                                 "ScaledDown"))
            assert "store-backend-2" in started and f"moved {DRAIN_OBJECTS} objects" in succeeded
            assert "3 -> 2" in scaled
            print(f"\ndrain of {DRAIN_OBJECTS} objects through the operator: {succeeded}")

            # Its pod gone, the drained backend is retired for good; a mark the spec does not
            # want (a drain interrupted after marking) is lifted on the next pass.
            from dataclay.admin import registered_backends, set_draining

            admin = {"credentials": dataplane.client_credentials("admin")}
            op.until(lambda: not cluster.pods("statefulset.kubernetes.io/pod-name=store-backend-2"),
                     "store-backend-2's pod deleted")
            op.until(lambda: "store-backend-2" not in registered_backends("127.0.0.1", dataplane.port, **admin),
                     "store-backend-2 deregistered", timeout=60)
            assert "store-backend-2" in cluster.events("BackendRetired")[0]
            set_draining("127.0.0.1", dataplane.port, ["store-backend-1"], True, **admin)
            op.until(lambda: not registered_backends("127.0.0.1", dataplane.port, **admin)["store-backend-1"].draining,
                     "store-backend-1's stray draining mark lifted", timeout=60)
            assert "store-backend-1" in cluster.events("DrainMarkLifted")[0]

        assert owned_count(dataplane.port, by_name["store-backend-2"]) == 0
        dataplane.stop_process(dataplane.backends["store-backend-2"])  # its pod is gone
        import base64

        # the restarted operator drained with the admin Secret of the same CA: it never made another
        assert base64.b64decode(cluster.core.read_namespaced_secret("store-ca", cluster.ns).data["ca.pem"]) == ca
        with Client(host="127.0.0.1", port=dataplane.port, credentials=dataplane.client_credentials()):
            for index, company_id in enumerate(companies):
                company = Company.get_by_id(company_id)
                assert company.name == f"C{index}" and company.employee.salary == float(index)
            assert Company.get_by_id(kept.id).employee.raise_salary(1.0) == 2.0


# -- leader election ------------------------------------------------------------------------------------


def test_one_leader_at_a_time_and_a_takeover_only_after_the_lease_expires(kube_api: Any, namespace: str) -> None:
    """Two candidates on the real API server, each with its own clock (driven by the test)."""
    from dataclay_operator.kube import Kube
    from dataclay_operator.leader import LeaderElector

    kube = Kube(kube_api)
    clocks = {"a": 0.0, "b": 0.0}
    a = LeaderElector(kube, namespace, "dataclay-operator", "a", clock=lambda: clocks["a"])
    b = LeaderElector(kube, namespace, "dataclay-operator", "b", clock=lambda: clocks["b"])
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    clocks["b"] += 14
    assert not b.try_acquire_or_renew()  # b saw a's record 14 s ago (its clock): not expired yet
    clocks["a"] += 14
    assert a.try_acquire_or_renew()  # a renews: a new record
    clocks["b"] += 14
    assert not b.try_acquire_or_renew()  # b's wait starts again from the renewal it saw
    clocks["b"] += 16
    assert b.try_acquire_or_renew()  # a stopped renewing: 16 s unchanged, b takes over
    assert not a.try_acquire_or_renew() and not a.leading  # a sees b's record
    lease = kube.get(a.path)["spec"]
    assert lease["holderIdentity"] == "b" and lease["leaseTransitions"] == 1


def test_two_candidates_racing_for_an_expired_lease_elect_one(kube_api: Any, namespace: str) -> None:
    """Both read the expired Lease, both write: the API server's resourceVersion check lets one win."""
    from dataclay_operator.kube import Kube
    from dataclay_operator.leader import LeaderElector

    kube = Kube(kube_api)
    old = LeaderElector(kube, namespace, "dataclay-operator", "old")
    assert old.try_acquire_or_renew()
    stale = kube.get(old.path)  # what both candidates read before either writes

    class ReadsBeforeTheOtherWrites(Kube):
        def get(self, path: str) -> dict[str, Any] | None:
            return stale

    clock = {"t": 0.0}
    c = LeaderElector(ReadsBeforeTheOtherWrites(kube_api), namespace, "dataclay-operator", "c", clock=lambda: clock["t"])
    d = LeaderElector(ReadsBeforeTheOtherWrites(kube_api), namespace, "dataclay-operator", "d", clock=lambda: clock["t"])
    assert not c.try_acquire_or_renew() and not d.try_acquire_or_renew()  # both see it held
    clock["t"] = 20.0
    assert [c.try_acquire_or_renew(), d.try_acquire_or_renew()] == [True, False]
    assert kube.get(old.path)["spec"]["holderIdentity"] == "c"


def test_a_leader_cut_off_from_the_api_server_stops_leading_before_the_lease_expires(kube_api: Any,
                                                                                    namespace: str) -> None:
    """client-go's guarantee: a leader that cannot renew gives up (renew deadline) before a standby
    may take the Lease (lease duration). A call the API server never answers lasts the client's
    request timeout (30 s), so the rounds must be bounded by the renew deadline, not by that."""
    import threading
    import time

    from dataclay_operator.kube import Kube, KubeError
    from dataclay_operator.leader import LeaderElector

    cut_off = threading.Event()
    renewals: list[float] = []

    class Partitioned(Kube):
        """The real API server until cut off; then no call is answered (the client times out)."""

        def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            if cut_off.is_set():
                threading.Event().wait(self.request_timeout)  # the transport's own timeout
                raise KubeError(0, "", f"no answer within {self.request_timeout} s")
            answer = super().request(method, path, *args, **kwargs)
            if method in ("POST", "PUT"):
                renewals.append(time.monotonic())
            return answer

    elector = LeaderElector(Partitioned(kube_api), namespace, "dataclay-operator", "a",
                            lease_duration=3.0, renew_deadline=2.0, retry_period=0.2)
    started, stopped_at, stop = threading.Event(), [], threading.Event()
    thread = threading.Thread(target=elector.run, daemon=True,
                              args=(started.set, lambda: stopped_at.append(time.monotonic()), stop))
    thread.start()
    try:
        assert started.wait(TIMEOUT), "a lone candidate leads"
        wait_until(lambda: len(renewals) >= 3, TIMEOUT, "the leader renews")
        cut_off.set()
        wait_until(lambda: stopped_at, TIMEOUT, "the cut-off leader stops leading")
        led_for = stopped_at[0] - renewals[-1]
        assert led_for < elector.lease_duration, (
            f"the leader stopped {led_for:.1f} s after its last renewal: a standby takes over after "
            f"{elector.lease_duration} s, so both led at once")
    finally:
        stop.set()
        thread.join(TIMEOUT)


def test_two_operator_replicas_reconcile_through_one_leader_and_the_other_takes_over(
        kube_cluster: KubeCluster, cluster: Cluster, tmp_path: Path) -> None:
    """Two replicas on one Lease: the standby reconciles nothing; killed (kill -9, no goodbye),
    the leader's Lease expires and the standby leads, picking up a DataClay created meanwhile."""
    from dataclay_operator.kube import Kube
    from dataclay_operator.leader import LeaderElector

    lease = {"DC_OPERATOR_LEASE": f"{cluster.ns}/dataclay-operator"}
    path = LeaderElector(Kube(cluster.api), cluster.ns, "dataclay-operator", "-").path

    def holder() -> str | None:
        found = Kube(cluster.api).get(path)
        return found and found["spec"].get("holderIdentity")

    with running_operator(kube_cluster, cluster.ns, tmp_path, POD_NAME="op-1", **lease) as first:
        first.until(lambda: holder() == "op-1", "op-1 leads")
        with running_operator(kube_cluster, cluster.ns, tmp_path, POD_NAME="op-2", **lease) as second:
            cluster.create("store", {"replicas": 1})
            first.until(lambda: cluster.sts("store-backend"), "the leader reconciles")
            assert holder() == "op-1" and "leads" not in second.output()
            os.killpg(first.popen.pid, signal.SIGKILL)
            first.popen.wait(10)
            cluster.create("later", {"replicas": 1})
            second.until(lambda: holder() == "op-2", "op-2 takes the expired Lease", timeout=60)
            second.until(lambda: cluster.sts("later-backend"), "the new leader reconciles", timeout=30)
