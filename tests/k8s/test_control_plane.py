"""The kube_cluster fixture runs a working control plane: API server, RBAC/auth, and the
controller manager's StatefulSet and garbage-collector controllers, which the operator relies on."""

from __future__ import annotations

import json
import subprocess
import ssl
import urllib.request
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .conftest import KubeCluster, mark_pods_ready, wait_until

TIMEOUT = 60.0


def _statefulset(name: str, replicas: int, policy: str) -> client.V1StatefulSet:
    labels = {"app": name}
    return client.V1StatefulSet.from_dict({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "podManagementPolicy": policy,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "registry.invalid/none:1"}]},
            },
        },
    })


def test_version_matches_binary(kube_cluster: KubeCluster, kube_api: Any) -> None:
    """/version answers over mutual TLS and reports the version the binary was built as."""
    info = client.VersionApi(kube_api).get_code()
    out = subprocess.run([str(kube_cluster.bin_dir / "kube-apiserver"), "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert info.major == "1" and info.git_version.startswith("v1.")
    assert out.split()[-1] == info.git_version

    anonymous = ssl.create_default_context()  # /version is public: plain HTTPS, no client cert
    anonymous.check_hostname, anonymous.verify_mode = False, ssl.CERT_NONE
    with urllib.request.urlopen(f"{kube_cluster.server}/version", context=anonymous, timeout=10) as resp:
        assert json.load(resp)["gitVersion"] == info.git_version


def test_create_namespace(kube_api: Any) -> None:
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="dc-ns-create")))
    try:
        assert core.read_namespace("dc-ns-create").status.phase == "Active"
    finally:
        core.delete_namespace("dc-ns-create")


def test_statefulset_controller_creates_pods(kube_api: Any, namespace: str) -> None:
    """The controller manager (not the test) creates the Pods, owned by the StatefulSet."""
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    sts = apps.create_namespaced_stateful_set(namespace, _statefulset("web", 2, "Parallel"))

    def two_pods() -> list[client.V1Pod] | None:
        items = core.list_namespaced_pod(namespace, label_selector="app=web").items
        return items if len(items) == 2 else None

    pods = wait_until(two_pods, TIMEOUT, "2 StatefulSet pods")
    assert sorted(p.metadata.name for p in pods) == ["web-0", "web-1"]
    assert all(p.metadata.owner_references[0].uid == sts.metadata.uid for p in pods)
    assert all(p.status.phase == "Pending" for p in pods)  # no kubelet


def test_mark_pods_ready_drives_ordered_rollout(kube_api: Any, namespace: str) -> None:
    """With OrderedReady, web-1 only appears once web-0 is Ready: mark_pods_ready plays kubelet."""
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    apps.create_namespaced_stateful_set(namespace, _statefulset("db", 2, "OrderedReady"))

    def all_ready() -> bool:
        mark_pods_ready(core, namespace, "app=db", pod_ip="127.0.0.1")
        return apps.read_namespaced_stateful_set_status("db", namespace).status.ready_replicas == 2

    wait_until(all_ready, TIMEOUT, "StatefulSet db readyReplicas == 2")
    pod = core.read_namespaced_pod("db-1", namespace)
    assert pod.status.phase == "Running" and pod.status.pod_ip == "127.0.0.1"


def test_garbage_collector_cascades(kube_api: Any, namespace: str) -> None:
    """Deleting an owner removes its dependents (the operator relies on this for cleanup)."""
    core = client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")))
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="child", owner_references=[ref])))

    core.delete_namespaced_config_map("owner", namespace)

    def child_gone() -> bool:
        try:
            core.read_namespaced_config_map("child", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_until(child_gone, TIMEOUT, "garbage collection of the owned ConfigMap")
