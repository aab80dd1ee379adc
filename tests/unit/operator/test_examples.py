"""The files a cluster user touches agree with the operator: examples, kind config, Dockerfile."""
from pathlib import Path

import yaml

from dataclay_operator import api, children

ROOT = Path(__file__).resolve().parents[3]


def docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((ROOT / name).read_text()) if d]


def test_client_pod_finds_the_metadata_service_of_the_example():
    (dataclay,) = [d for d in docs("examples/dataclay.yaml") if d["kind"] == api.KIND]
    model_cms = {d["metadata"]["name"] for d in docs("examples/dataclay.yaml") if d["kind"] == "ConfigMap"}
    assert dataclay["spec"]["model"]["configMap"] in model_cms
    manifests = docs("examples/client-pod.yaml")
    (pod,) = [d for d in manifests if d["kind"] == "Pod"]
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    name, namespace = dataclay["metadata"]["name"], dataclay["metadata"].get("namespace", "default")
    assert env["DC_HOST"] == api.metadata_host(name, namespace)  # what the metadata certificate names
    assert env["DC_PORT"] == str(api.METADATA_PORT)
    secret = next(v["secret"] for v in pod["spec"]["volumes"] if "secret" in v)
    assert secret["secretName"] == api.client_credentials_name(name)  # mounted as its credentials directory
    mount = next(m for m in container["volumeMounts"] if m["name"] == "credentials")
    assert env["DC_CREDENTIALS"] == mount["mountPath"] and secret["defaultMode"] == 0o440
    assert pod["spec"]["securityContext"]["fsGroup"] == pod["spec"]["securityContext"]["runAsUser"]
    scripts = {d["metadata"]["name"]: d for d in manifests if d["kind"] == "ConfigMap"}
    volumes = {v["name"]: v["configMap"]["name"] for v in pod["spec"]["volumes"] if "configMap" in v}
    assert volumes["script"] in scripts and "client.py" in scripts[volumes["script"]]["data"]
    assert volumes["model"] in model_cms  # the client imports the same model modules
    compile(scripts[volumes["script"]]["data"]["client.py"], "client.py", "exec")


def test_kind_cluster_has_several_workers():
    (config,) = docs("kind-config.yaml")
    roles = [node["role"] for node in config["nodes"]]
    assert roles.count("control-plane") == 1 and roles.count("worker") >= 2


def test_dockerfile_runs_the_operator_as_the_user_the_pods_expect():
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "ARG BASE=python:3.11-slim" in text and "FROM ${BASE}" in text
    assert 'pip install ".[operator]"' in text  # tests/image builds and runs it for real
    assert f"USER {children.RUN_AS}:{children.RUN_AS}" in text
    assert 'CMD ["python", "-m", "dataclay_operator"]' in text


def test_the_charts_scale_guard_recognises_backends_by_the_labels_the_operator_selects_them_by():
    """The ValidatingAdmissionPolicy is YAML + CEL: its label strings must be api.py's."""
    text = (ROOT / "charts/dataclay/templates/scale-guard.yaml").read_text()
    selector = api.selector_labels("x", api.COMPONENT_BACKEND)
    for key in (api.LABEL_NAME, api.LABEL_COMPONENT):
        assert f"'{key}={selector[key]}'" in text  # in a Scale's status.selector string
        assert f"k == '{key}'" in text and f"matchLabels[k] == '{selector[key]}'" in text  # in spec.selector
    assert f"'{api.LABEL_INSTANCE}='" in text  # the DataClay's name, for the message
    assert "statefulsets/scale" in text and "kubectl scale dataclay" in text and "kubectl delete dataclay" in text
