"""Children as data: names, labels, owner references, pod settings, volumes."""
from typing import Any

import pytest

from dataclay_operator import api, children
from dataclay_operator.compare import is_subset
from dataclay_operator.spec import DEFAULT_BACKEND_RESOURCES, DEFAULT_METADATA_RESOURCES, parse_spec

DC: dict[str, Any] = {
    "apiVersion": api.API_VERSION, "kind": api.KIND,
    "metadata": {"name": "store", "namespace": "apps", "uid": "0000-uid", "generation": 1},
    "spec": {"replicas": 3},
}


def spec(**raw: Any):
    return parse_spec({"replicas": 3, **raw}, default_image="dataclay:test")


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def all_children(**raw: Any) -> list[dict[str, Any]]:
    s = spec(**raw)
    return [*children.static_children(DC, s), children.backend_statefulset(DC, s, s.replicas)]


def test_deterministic_names_and_kinds():
    got = [(c["kind"], c["metadata"]["name"]) for c in all_children()]
    assert got == [("NetworkPolicy", "store-dataplane"), ("ConfigMap", "store-client"),
                   ("Service", "store-metadata"), ("StatefulSet", "store-metadata"), ("Service", "store-backend"),
                   ("PodDisruptionBudget", "store-backend"), ("StatefulSet", "store-backend")]
    assert all_children() == all_children()  # pure: same input, same objects


def test_every_child_is_controlled_by_the_dataclay():
    for child in all_children():
        assert child["metadata"]["namespace"] == "apps"
        assert child["metadata"]["ownerReferences"] == [{
            "apiVersion": "dataclay.bsc.es/v1alpha1", "kind": "DataClay", "name": "store", "uid": "0000-uid",
            "controller": True, "blockOwnerDeletion": True}]
        labels = child["metadata"]["labels"]
        assert labels[api.LABEL_INSTANCE] == "store" and labels[api.LABEL_MANAGED_BY] == api.MANAGER


@pytest.mark.parametrize("builder, component", [
    (children.metadata_statefulset, api.COMPONENT_METADATA),
    (lambda dc, s: children.backend_statefulset(dc, s, 3), api.COMPONENT_BACKEND),
])
def test_statefulset_selectors_match_template_and_service(builder, component):
    sts = builder(DC, spec())
    selector = sts["spec"]["selector"]["matchLabels"]
    assert selector == api.selector_labels("store", component)
    assert is_subset(selector, sts["spec"]["template"]["metadata"]["labels"])
    service = {c["metadata"]["name"]: c for c in all_children() if c["kind"] == "Service"}[sts["spec"]["serviceName"]]
    assert service["spec"]["selector"] == selector


def test_metadata_statefulset():
    sts = children.metadata_statefulset(DC, spec(durability="machine"))
    assert sts["spec"]["replicas"] == 1
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "dataclay_backend.metadata"]
    assert env_of(container) == {"DC_METADATA_PORT": "16587", "DC_DATA_DIR": "/data", "DC_DURABILITY": "machine",
                                 "DC_CREDENTIALS": api.CREDENTIALS_DIR, "DC_HEALTH_PORT": "8090"}
    assert container["readinessProbe"]["grpc"] == {"port": 8090}  # plain-text health port: probes have no certificate
    assert container["livenessProbe"]["grpc"] == {"port": 8090}
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]


def test_backend_statefulset_identity_and_settings():
    sts = children.backend_statefulset(DC, spec(memoryLimit="64Mi"), replicas=5)
    assert sts["spec"]["replicas"] == 5  # from the scale plan, not from spec.replicas
    # applied with replicas in one request: replicas below it were lowered by someone else
    assert sts["metadata"]["annotations"] == {api.ANNOTATION_APPLIED_REPLICAS: "5"}
    assert sts["spec"]["serviceName"] == "store-backend"
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "dataclay_backend.backend"]
    assert container["image"] == "dataclay:test"
    env = env_of(container)
    assert container["env"][0]["name"] == "POD_NAME"  # must precede the $(POD_NAME) references
    assert env["POD_NAME"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}
    assert env["DC_BACKEND_NAME"] == "$(POD_NAME)"
    assert env["DC_ADVERTISE_HOST"] == "$(POD_NAME).store-backend.apps.svc"
    assert (env["DC_HOST"], env["DC_PORT"]) == ("store-metadata.apps.svc", "16587")
    assert env["DC_BACKEND_PORT"] == "6867" and env["DC_DATA_DIR"] == "/data"
    assert env["DC_MEMORY_LIMIT"] == str(64 * 2**20)
    assert env["DC_MODEL_PATH"] == "/opt/dataclay/models"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": 8090}
    assert env["DC_HEALTH_PORT"] == "8090" and {"name": "health", "containerPort": 8090, "protocol": "TCP"} in container["ports"]
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_backend_service_is_headless_and_publishes_starting_pods():
    service = children.backend_service(DC, spec())
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["ports"][0]["port"] == 6867


def test_client_configmap_points_at_the_metadata_service():
    cm = children.client_configmap(DC, spec())
    assert cm["data"] == {"DC_HOST": "store-metadata.apps.svc", "DC_PORT": "16587"}
    meta_service = children.metadata_service(DC, spec())
    assert meta_service["spec"]["ports"][0]["port"] == 16587 and meta_service["spec"]["type"] == "ClusterIP"


def test_model_from_configmap_is_mounted_at_the_model_path():
    sts = children.backend_statefulset(DC, spec(model={"configMap": "my-models", "path": "/models"}), 3)
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {"name": "model", "configMap": {"name": "my-models"}} in pod["volumes"]
    assert {"name": "model", "mountPath": "/models", "readOnly": True} in container["volumeMounts"]
    assert env_of(container)["DC_MODEL_PATH"] == "/models"


def test_model_from_image_mounts_nothing():
    sts = children.backend_statefulset(DC, spec(image="me/with-models:1"), 3)
    pod = sts["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp", "backend-tls", "credentials"]
    assert pod["containers"][0]["image"] == "me/with-models:1"


def test_storage_resources_and_pvc_retention():
    s = spec(storage={"size": "20Gi", "storageClassName": "ssd"}, resources={"limits": {"memory": "2Gi"}},
             pvcRetentionPolicy={"whenDeleted": "Delete", "whenScaled": "Retain"})
    sts = children.backend_statefulset(DC, s, 3)
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}},
                     "storageClassName": "ssd"}
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Delete", "whenScaled": "Retain"}
    assert sts["spec"]["template"]["spec"]["containers"][0]["resources"] == {"limits": {"memory": "2Gi"}}
    meta = children.metadata_statefulset(DC, s)
    assert meta["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
    assert meta["spec"]["template"]["spec"]["containers"][0]["resources"] == DEFAULT_METADATA_RESOURCES


def test_pods_without_resources_get_default_requests_and_are_not_best_effort():
    s = spec()
    for sts, default in ((children.backend_statefulset(DC, s, 3), DEFAULT_BACKEND_RESOURCES),
                         (children.metadata_statefulset(DC, s), DEFAULT_METADATA_RESOURCES)):
        resources = sts["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert resources == default and resources["requests"]["cpu"] and resources["requests"]["memory"]


def test_the_pod_overlay_reaches_every_pod_and_never_replaces_the_operators_labels():
    overlay = {"labels": {"team": "hpc", api.LABEL_INSTANCE: "hijack"}, "annotations": {"a": "b"},
               "nodeSelector": {"disk": "ssd"}, "priorityClassName": "high",
               "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                   "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
               "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "dc", "effect": "NoSchedule"}],
               "imagePullSecrets": [{"name": "registry"}]}
    s = spec(pod=overlay)
    for sts in (children.backend_statefulset(DC, s, 3), children.metadata_statefulset(DC, s)):
        template = sts["spec"]["template"]
        assert template["metadata"]["labels"]["team"] == "hpc"
        assert template["metadata"]["labels"][api.LABEL_INSTANCE] == "store"  # selectors keep matching
        assert template["metadata"]["annotations"] == {"a": "b"}
        pod = template["spec"]
        assert pod["nodeSelector"] == {"disk": "ssd"} and pod["priorityClassName"] == "high"
        assert pod["affinity"] == overlay["affinity"] and pod["tolerations"] == overlay["tolerations"]
        assert pod["imagePullSecrets"] == [{"name": "registry"}]
    plain = children.backend_statefulset(DC, spec(), 3)["spec"]["template"]
    assert "annotations" not in plain["metadata"] and "nodeSelector" not in plain["spec"]


def test_the_network_policy_admits_own_pods_labelled_clients_and_the_operator_on_data_ports_only():
    operator = children.OperatorPeer("dataclay-system", {"app.kubernetes.io/name": "dataclay-operator"})
    policy = children.dataplane_network_policy(DC, spec(), operator)
    assert policy["spec"]["podSelector"]["matchLabels"] == api.instance_labels("store")
    for sts in (children.backend_statefulset(DC, spec(), 3), children.metadata_statefulset(DC, spec())):
        assert is_subset(policy["spec"]["podSelector"]["matchLabels"], sts["spec"]["template"]["metadata"]["labels"])
    data, health = policy["spec"]["ingress"]
    assert {p["port"] for p in data["ports"]} == {api.METADATA_PORT, api.BACKEND_PORT}
    assert data["from"] == [
        {"podSelector": {"matchLabels": api.instance_labels("store")}},
        {"podSelector": {"matchLabels": {api.LABEL_CLIENT_OF: "store"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "dataclay-system"}},
         "podSelector": {"matchLabels": {"app.kubernetes.io/name": "dataclay-operator"}}}]
    assert health == {"ports": [{"protocol": "TCP", "port": api.HEALTH_PORT}]}  # the kubelet, from anywhere
    assert len(children.dataplane_network_policy(DC, spec())["spec"]["ingress"][0]["from"]) == 2


def test_backends_are_evicted_one_at_a_time():
    budget = children.backend_disruption_budget(DC, spec())
    assert budget["spec"] == {"maxUnavailable": 1,
                              "selector": {"matchLabels": api.selector_labels("store", api.COMPONENT_BACKEND)}}


def test_image_change_only_touches_the_pod_template():
    before = children.backend_statefulset(DC, spec(image="a:1"), 3)
    after = children.backend_statefulset(DC, spec(image="a:2"), 3)
    for key in children.STATEFULSET_IMMUTABLE:
        assert before["spec"][key] == after["spec"][key]
    assert before["spec"]["template"] != after["spec"]["template"]


# -- credentials: every server serves mutual TLS with the operator's Secrets ------------------------------

def containers_of(child: dict[str, Any]) -> list[dict[str, Any]]:
    pod = child.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def test_no_child_runs_insecure():
    for child in all_children(model={"configMap": "m"}):
        for container in containers_of(child):
            assert "DC_INSECURE" not in env_of(container), (child["metadata"]["name"], container["name"])
            assert "--insecure" not in container.get("command", []) + container.get("args", [])


@pytest.mark.parametrize("builder, secret", [
    (children.metadata_statefulset, "store-metadata-tls"),
    (lambda dc, s: children.backend_statefulset(dc, s, 3), "store-backend-tls"),
])
def test_every_server_mounts_its_credentials_where_dc_credentials_points(builder, secret):
    sts = builder(DC, spec())
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert env_of(container)["DC_CREDENTIALS"] == api.CREDENTIALS_DIR
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == api.CREDENTIALS_DIR)
    assert mount["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    secrets = [v["secret"] for v in volumes.values() if "secret" in v]
    assert [s["secretName"] for s in secrets] == [secret]
    # 0440, owner root and group fsGroup: the server's (non-root) group reads them, nobody else
    assert secrets[0]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"] == children.RUN_AS


def test_a_backend_container_sees_only_its_own_key():
    """The Secret with every ordinal's key is mounted by the init container only; the backend
    container mounts the in-memory volume the init container copied its own files into."""
    pod = children.backend_statefulset(DC, spec(), 3)["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["credentials"]["emptyDir"]["medium"] == "Memory"
    assert "backend-tls" not in {m["name"] for m in container["volumeMounts"]}
    assert {m["name"]: m["mountPath"] for m in init["volumeMounts"]} == {
        "backend-tls": children.TLS_SOURCE, "credentials": api.CREDENTIALS_DIR}
    assert init["securityContext"] == container["securityContext"] and init["image"] == container["image"]
    assert env_of(init)["POD_NAME"] == env_of(container)["POD_NAME"]


def run_init(command: list[str], source: Any, target: Any, pod: str) -> Any:
    """The init container's command as the kubelet would run it, with its paths moved to temporary folders."""
    import subprocess

    moved = {children.TLS_SOURCE: str(source), api.CREDENTIALS_DIR: str(target), "$(POD_NAME)": pod}
    return subprocess.run([moved.get(arg, arg) for arg in command], capture_output=True, text=True, timeout=10)


def test_the_init_container_copies_exactly_the_pods_own_credentials(tmp_path):
    import stat

    source, target = tmp_path / "secret", tmp_path / "credentials"
    source.mkdir()
    target.mkdir()
    for stem in ("backend.store-backend-0", "backend.store-backend-1", "backend.store-backend-10"):
        (source / f"{stem}.pem").write_text(f"cert {stem}")
        (source / f"{stem}.key").write_text(f"key {stem}")
    (source / "ca.pem").write_text("ca")
    (init,) = children.backend_statefulset(DC, spec(), 3)["spec"]["template"]["spec"]["initContainers"]
    for _ in range(2):  # a restarted pod runs it again over its own read-only copies
        result = run_init(init["command"], source, target, "store-backend-1")
        assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in target.iterdir()) == ["backend.store-backend-1.key", "backend.store-backend-1.pem",
                                                      "ca.pem"]
    assert (target / "backend.store-backend-1.key").read_text() == "key backend.store-backend-1"
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o400 for p in target.iterdir())


def test_the_init_container_fails_saying_why_without_the_pods_certificate(tmp_path):
    source, target = tmp_path / "secret", tmp_path / "credentials"
    source.mkdir()
    target.mkdir()
    (source / "ca.pem").write_text("ca")
    (init,) = children.backend_statefulset(DC, spec(), 3)["spec"]["template"]["spec"]["initContainers"]
    result = run_init(init["command"], source, target, "store-backend-7")
    assert result.returncode != 0 and "backend.store-backend-7.pem" in result.stderr
    assert list(target.iterdir()) == []


def test_the_model_configmaps_content_is_in_the_backends_template_so_a_change_rolls_them():
    models = {"data": {"company.py": "class Company: ..."}}
    s = spec(model={"configMap": "my-models"})
    first = children.backend_statefulset(DC, s, 3, children.model_checksum(models))
    again = children.backend_statefulset(DC, s, 3, children.model_checksum({"data": dict(models["data"])}))
    changed = children.backend_statefulset(DC, s, 3, children.model_checksum({"data": {"company.py": "v2"}}))
    annotation = lambda sts: sts["spec"]["template"]["metadata"]["annotations"][children.MODEL_CHECKSUM]  # noqa: E731
    assert annotation(first) == annotation(again) != annotation(changed)
    assert children.model_checksum(None) == "absent"
    no_model = children.backend_statefulset(DC, spec(), 3, None)["spec"]["template"]["metadata"]
    assert "annotations" not in no_model
