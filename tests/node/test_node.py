"""What a user does after `helm install`, on a real node: nothing faked.

The chart's operator runs as a pod from the project's image with the chart's RBAC; the README's
examples (examples/dataclay.yaml, examples/client-pod.yaml) are applied as they are, but for the
image name; pods start on the kubelet, bind local volumes, pass their real gRPC probes and talk
through cluster DNS names and Service addresses (CoreDNS, kube-proxy).

The tests share one DataClay and run in file order, each leaving it Ready for the next: install,
the example client, a backend pod deleted, a scale-down, an image change.
"""
from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from k8s.conftest import wait_until

from .conftest import KubeNode

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "dataclay"
EXAMPLES = REPO_ROOT / "examples"
OPERATOR_NS = "dataclay-system"
NS = "default"  # the examples' namespace (the client pod names demo-metadata.default.svc)
NAME = "demo"
TIMEOUT = 300.0
GROUP_PATH = "/apis/dataclay.bsc.es/v1alpha1"
T = TypeVar("T")


class Api:
    """Thin JSON access to the API server (server-side apply, reads, deletes)."""

    def __init__(self, node: KubeNode) -> None:
        self.client = node.api_client()

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
             query: list[tuple[str, str]] | None = None, accept: str = "application/json", raw: bool = False) -> Any:
        """The decoded JSON answer (text if `raw` or not JSON); None for a GET of something absent."""
        method, url, headers, body, _ = self.client.param_serialize(
            method=method, resource_path=path, query_params=query or [], body=body,
            header_params={"Content-Type": content_type, "Accept": accept}, auth_settings=["BearerToken"])
        response = self.client.call_api(method, url, header_params=headers, body=body)
        response.read()
        if response.status == 404 and method == "GET":
            return None
        assert response.status < 300, f"{method} {path}: HTTP {response.status}: {response.data[:2000]!r}"
        if raw:
            return response.data.decode(errors="replace")
        try:
            return json.loads(response.data) if response.data else None
        except ValueError:
            return response.data.decode(errors="replace")

    def text(self, path: str) -> str:
        return str(self.call("GET", path, accept="*/*", raw=True) or "")

    @staticmethod
    def path_of(doc: dict[str, Any], namespace: str) -> str:
        kind, name = doc["kind"], doc["metadata"]["name"]
        plural = {"ConfigMap": "configmaps", "Pod": "pods", "DataClay": "dataclays"}[kind]
        base = GROUP_PATH if kind == "DataClay" else "/api/v1"
        return f"{base}/namespaces/{namespace}/{plural}/{name}"

    def apply(self, doc: dict[str, Any], namespace: str = NS) -> Any:
        """`kubectl apply --server-side` of one document."""
        return self.call("PATCH", self.path_of(doc, namespace), body=yaml.safe_dump(doc),
                         content_type="application/apply-patch+yaml",
                         query=[("fieldManager", "node-tests"), ("force", "true")])

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def items(self, path: str, selector: str = "") -> list[dict[str, Any]]:
        query = [("labelSelector", selector)] if selector else []
        return (self.call("GET", path, query=query) or {}).get("items", [])

    def dataclay(self) -> dict[str, Any]:
        return self.get(f"{GROUP_PATH}/namespaces/{NS}/dataclays/{NAME}") or {}

    def backend_pods(self) -> list[dict[str, Any]]:
        return self.items(f"/api/v1/namespaces/{NS}/pods",
                          f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=backend")


def ready(pod: dict[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return pod["metadata"].get("deletionTimestamp") is None and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conds)


def until(check: Callable[[], T | None], what: str, node: KubeNode, timeout: float = TIMEOUT) -> T:
    """wait_until with the node's logs in the failure (what the kubelet and operator said)."""
    try:
        return wait_until(check, timeout, what, interval=1.0)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{node.log_tails(20)}") from exc


def example(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def operator_logs(api: Api) -> str:
    pods = api.items(f"/api/v1/namespaces/{OPERATOR_NS}/pods", "app.kubernetes.io/name=dataclay-operator")
    return "\n".join(api.text(f"/api/v1/namespaces/{OPERATOR_NS}/pods/{p['metadata']['name']}/log") for p in pods)


def run_client(api: Api, node: KubeNode, script: str, timeout: float = TIMEOUT) -> str:
    """Run `script` in a pod made from examples/client-pod.yaml (its credentials, model, DNS name)
    with the test's image; return its log. Fails with the log unless the pod succeeds."""
    suffix = uuid.uuid4().hex[:6]
    config, pod = example("client-pod.yaml")
    config["metadata"]["name"] = f"client-script-{suffix}"
    config["data"] = {"client.py": script}
    pod["metadata"]["name"] = f"client-{suffix}"
    pod["spec"]["containers"][0]["image"] = node.image
    next(v for v in pod["spec"]["volumes"] if v["name"] == "script")["configMap"]["name"] = config["metadata"]["name"]
    api.apply(config)
    api.apply(pod)
    path = f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}"

    def finished() -> str | None:
        phase = ((api.get(path) or {}).get("status") or {}).get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = until(finished, f"client pod {pod['metadata']['name']} to finish", node, timeout)
    log = api.text(f"{path}/log")
    assert phase == "Succeeded", f"client pod {phase}:\n{log}"
    api.call("DELETE", path)
    api.call("DELETE", f"/api/v1/namespaces/{NS}/configmaps/{config['metadata']['name']}")
    return log


def wait_dataclay_ready(api: Api, node: KubeNode, replicas: int) -> dict[str, Any]:
    def is_ready() -> dict[str, Any] | None:
        dc = api.dataclay()
        st = dc.get("status") or {}
        ok = (st.get("phase") == "Ready" and st.get("ready") == f"{replicas}/{replicas}"
              and st.get("observedGeneration") == dc["metadata"]["generation"])
        return dc if ok else None

    return until(is_ready, f"DataClay {NAME} Ready {replicas}/{replicas}", node)


@pytest.fixture(scope="module")
def api(kube_node: KubeNode) -> Iterator[Api]:
    api = Api(kube_node)
    yield api
    api.client.close()


@pytest.fixture(scope="module")
def operator(kube_node: KubeNode, api: Api) -> Iterator[str]:
    """`helm install` of the chart with the test's image: the operator as a pod, with its RBAC."""
    repository, tag = kube_node.image.rsplit(":", 1)
    helm = [str(kube_node.cluster.bin_dir / "helm")]
    res = subprocess.run([*helm, "install", "dc", str(CHART), "--namespace", OPERATOR_NS, "--create-namespace",
                          "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
                          "--set", "image.pullPolicy=Never", "--wait", "--timeout", "5m"],
                         env=kube_node.env(), capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, f"helm install:\n{res.stdout}\n{res.stderr}\n{kube_node.log_tails(20)}"
    yield "dc-dataclay-operator"  # the release's full name: Deployment, ServiceAccount, Lease
    subprocess.run([*helm, "uninstall", "dc", "--namespace", OPERATOR_NS], env=kube_node.env(),
                   capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def demo(kube_node: KubeNode, api: Api, operator: str) -> dict[str, Any]:
    """examples/dataclay.yaml applied as it is; Ready 3/3."""
    for doc in example("dataclay.yaml"):
        api.apply(doc)
    return wait_dataclay_ready(api, kube_node, 3)


def test_helm_install_runs_the_operator_as_a_pod_of_the_image(kube_node: KubeNode, api: Api, operator: str) -> None:
    pods = api.items(f"/api/v1/namespaces/{OPERATOR_NS}/pods", "app.kubernetes.io/name=dataclay-operator")
    assert len(pods) == 1 and ready(pods[0]), pods
    pod = pods[0]
    assert pod["spec"]["serviceAccountName"] == operator
    assert pod["spec"]["containers"][0]["image"] == kube_node.image
    status = pod["status"]["containerStatuses"][0]
    assert status["restartCount"] == 0, operator_logs(api)
    # it holds the leader Lease: it talked to the API server through the "kubernetes" Service
    lease = until(lambda: api.get(f"/apis/coordination.k8s.io/v1/namespaces/{OPERATOR_NS}/leases/{operator}"),
                  "the operator's Lease", kube_node)
    assert lease["spec"]["holderIdentity"].startswith(pod["metadata"]["name"]), (lease, operator_logs(api))


def test_the_example_dataclay_becomes_ready_on_real_pods(kube_node: KubeNode, api: Api, demo: dict[str, Any]) -> None:
    st = demo["status"]
    assert st["ready"] == "3/3" and st["metadataReady"] is True
    # `kubectl get dataclays`: the server prints the CRD's columns
    table = api.call("GET", f"{GROUP_PATH}/namespaces/{NS}/dataclays",
                     accept="application/json;as=Table;v=v1;g=meta.k8s.io")
    columns = [c["name"] for c in table["columnDefinitions"]]
    row = dict(zip(columns, table["rows"][0]["cells"]))
    assert (row["Name"], row["Ready"], row["Phase"]) == (NAME, "3/3", "Ready"), row
    pods = api.backend_pods()
    assert sorted(p["metadata"]["name"] for p in pods) == [f"{NAME}-backend-{i}" for i in range(3)]
    assert all(ready(p) for p in pods)
    for pod in pods:  # Ready through the kubelet's gRPC probes, not restarted by them
        container = pod["spec"]["containers"][0]
        assert container["readinessProbe"]["grpc"] and container["image"] == kube_node.image
        assert all(s["restartCount"] == 0 for s in pod["status"]["containerStatuses"]), pod["status"]
    claims = api.items(f"/api/v1/namespaces/{NS}/persistentvolumeclaims", f"app.kubernetes.io/instance={NAME}")
    assert len(claims) == 4 and all(c["status"]["phase"] == "Bound" for c in claims), claims
    # the operator learns the backend ids from the metadata service, after Ready (status never waits)
    def ids_known() -> dict[str, str] | None:
        ids = {b["pod"]: b.get("backendId") for b in api.dataclay()["status"]["backends"]}
        return ids if len(ids) == 3 and all(ids.values()) else None

    ids = until(ids_known, "every backend's id in the DataClay's status", kube_node)
    assert len(set(ids.values())) == 3, ids


def test_the_example_client_pod_persists_moves_and_versions_through_cluster_dns(
        kube_node: KubeNode, api: Api, demo: dict[str, Any]) -> None:
    script = example("client-pod.yaml")[0]["data"]["client.py"]
    log = run_client(api, kube_node, script)
    lines = log.splitlines()
    assert f"connected to {NAME}-metadata.{NS}.svc:16587; backends:" in lines[0], log
    placed = next(line for line in lines if line.startswith("company on")).split()
    assert placed[2] == placed[5], log  # the employee was made persistent with the company
    moved = next(line for line in lines if line.startswith("after move:")).split()
    assert moved[4] == moved[7] != placed[2], log  # the whole graph moved to another backend pod
    assert "raise runs on the owning backend: 1010.0" in lines, log
    assert "after consolidate: 1110.0" in lines, log


PERSIST = """
import json
from dataclay import Client
from company import Employee

client = Client()
client.start()
placed = {{}}
for backend_id, info in client.get_backends().items():
    for i in range({per_backend}):
        alias = f"{tag}-{{info.name}}-{{i}}"
        Employee(alias, float(i)).make_persistent(alias=alias, backend_id=backend_id)
        placed[alias] = info.name
print(json.dumps(placed))
client.stop()
"""

CHECK = """
import json
from dataclay import Client
from company import Employee

client = Client()
client.start()
found = {{}}
for alias in {aliases!r}:
    employee = Employee.get_by_alias(alias)
    found[alias] = [employee.name, employee.raise_salary(0.0)]
backends = {{str(b): info.name for b, info in client.get_backends().items()}}
print(json.dumps({{"found": found, "backends": backends}}))
client.stop()
"""


def persist(api: Api, node: KubeNode, tag: str, per_backend: int = 3) -> dict[str, str]:
    """Objects on every backend, by alias: {alias: backend name (the pod's)}."""
    return json.loads(run_client(api, node, PERSIST.format(tag=tag, per_backend=per_backend)).splitlines()[-1])


def check(api: Api, node: KubeNode, aliases: list[str]) -> dict[str, Any]:
    """Every alias readable and callable; also the backends the metadata service lists."""
    result = json.loads(run_client(api, node, CHECK.format(aliases=sorted(aliases))).splitlines()[-1])
    assert sorted(result["found"]) == sorted(aliases)
    assert all(name == alias for alias, (name, _) in result["found"].items())
    return result


def test_a_deleted_backend_pod_comes_back_with_its_id_and_objects(kube_node: KubeNode, api: Api,
                                                                 demo: dict[str, Any]) -> None:
    placed = persist(api, kube_node, "deleted")
    victim = f"{NAME}-backend-1"
    assert victim in placed.values(), placed
    ids_before = {b["pod"]: b["backendId"] for b in api.dataclay()["status"]["backends"]}
    old = api.get(f"/api/v1/namespaces/{NS}/pods/{victim}")
    old_uid, grace = old["metadata"]["uid"], old["spec"]["terminationGracePeriodSeconds"]
    deleted_at = time.monotonic()
    api.call("DELETE", f"/api/v1/namespaces/{NS}/pods/{victim}")

    def old_gone() -> bool:
        pod = api.get(f"/api/v1/namespaces/{NS}/pods/{victim}")
        return pod is None or pod["metadata"]["uid"] != old_uid

    until(old_gone, f"the deleted {victim} gone", kube_node)
    # the backend (PID 1 of its container) stops on the kubelet's SIGTERM, not at the grace period's SIGKILL
    assert time.monotonic() - deleted_at < grace - 5, f"{victim} took its whole grace period ({grace}s) to stop"

    def back() -> bool:
        pod = api.get(f"/api/v1/namespaces/{NS}/pods/{victim}")
        return bool(pod and pod["metadata"]["uid"] != old_uid and ready(pod))

    until(back, f"{victim} recreated and Ready", kube_node)
    dc = wait_dataclay_ready(api, kube_node, 3)
    assert {b["pod"]: b["backendId"] for b in dc["status"]["backends"]} == ids_before
    result = check(api, kube_node, list(placed))
    assert {pod: backend_id for backend_id, pod in result["backends"].items()} == ids_before


def test_scaling_down_drains_through_the_service_name_and_loses_nothing(kube_node: KubeNode, api: Api,
                                                                      demo: dict[str, Any]) -> None:
    placed = persist(api, kube_node, "scaled")
    leaving = f"{NAME}-backend-2"
    assert leaving in placed.values()
    api.call("PATCH", f"{GROUP_PATH}/namespaces/{NS}/dataclays/{NAME}", body={"spec": {"replicas": 2}},
             content_type="application/merge-patch+json")
    wait_dataclay_ready(api, kube_node, 2)
    until(lambda: all(p["metadata"]["name"] != leaving for p in api.backend_pods()), f"{leaving} gone", kube_node)
    until(lambda: sorted(b["pod"] for b in api.dataclay()["status"]["backends"]) == [f"{NAME}-backend-0",
                                                                                   f"{NAME}-backend-1"],
          f"{leaving} out of the status", kube_node)
    # the operator pod drained through the DataClay's metadata Service (no dataplane override)
    operator_env = {e["name"] for e in api.items(f"/api/v1/namespaces/{OPERATOR_NS}/pods",
                                                   "app.kubernetes.io/name=dataclay-operator")[0]["spec"]["containers"][0]["env"]}
    assert "DC_OPERATOR_DATAPLANE_HOST" not in operator_env
    reasons = [e["reason"] for e in api.items(f"/api/v1/namespaces/{NS}/events")
               if e["involvedObject"].get("name") == NAME]
    assert "DrainSucceeded" in reasons and "ScaledDown" in reasons, reasons
    result = check(api, kube_node, list(placed))
    assert leaving not in result["backends"].values()


def test_changing_the_image_rolls_backends_one_at_a_time_keeping_every_object(kube_node: KubeNode, api: Api,
                                                                            demo: dict[str, Any]) -> None:
    placed = persist(api, kube_node, "rolled", per_backend=2)
    new_image = f"{kube_node.image.rsplit(':', 1)[0]}:rolled-{uuid.uuid4().hex[:6]}"
    podman = ("podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs")
    subprocess.run([*podman, "tag", kube_node.image, new_image], check=True, capture_output=True)
    try:
        kube_node.load_images(new_image)
    finally:
        subprocess.run([*podman, "untag", new_image, new_image], capture_output=True)  # only that name
    replicas = len(api.backend_pods())
    api.call("PATCH", f"{GROUP_PATH}/namespaces/{NS}/dataclays/{NAME}", body={"spec": {"image": new_image}},
             content_type="application/merge-patch+json")
    fewest_ready = replicas

    def rolled() -> bool:
        nonlocal fewest_ready
        pods = api.backend_pods()
        fewest_ready = min(fewest_ready, sum(1 for p in pods if ready(p)))
        return len(pods) == replicas and all(
            ready(p) and p["spec"]["containers"][0]["image"] == new_image for p in pods)

    until(rolled, "every backend on the new image and Ready", kube_node)
    assert fewest_ready >= replicas - 1, "more than one backend was down at once"
    wait_dataclay_ready(api, kube_node, replicas)
    check(api, kube_node, list(placed))
