"""The CRD shipped in the chart is exactly what the code generates, and agrees with the code.

Defaults and enums have one source (spec.py, status.py); these tests fail when the YAML is stale
or when a field the operator writes would be pruned by the schema.
"""
import copy
from pathlib import Path
from typing import Any

import yaml

from dataclay_operator import api, crd, spec as specmod
from dataclay_operator.scaling import Bypass
from dataclay_operator.status import ConditionType, DrainProgress, Observed, Phase, Reason, compute_status

CRD_FILE = Path(__file__).resolve().parents[3] / "charts" / "dataclay" / "crds" / "dataclays.yaml"


def schema() -> dict[str, Any]:
    return crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def apply_defaults(value: Any, node: dict[str, Any]) -> Any:
    """What the API server's defaulting does (structural schemas: defaults of absent properties)."""
    if node.get("type") == "object" and isinstance(value, dict):
        out = dict(value)
        for key, sub in (node.get("properties") or {}).items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = apply_defaults(out[key], sub)
        return out
    return value


def undeclared_fields(value: Any, node: dict[str, Any], path: str = "") -> list[str]:
    """Fields of `value` the schema does not declare (the server would prune them), and type errors."""
    problems: list[str] = []
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return problems
    kind = node.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        props = node.get("properties")
        for key, sub in value.items():
            if props is not None and key not in props:
                problems.append(f"{path}.{key}: not in the schema")
            elif props is not None:
                problems += undeclared_fields(sub, props[key], f"{path}.{key}")
        problems += [f"{path}.{key}: required" for key in node.get("required", []) if key not in value]
    elif kind == "array":
        if not isinstance(value, list):
            return [f"{path}: not an array"]
        for i, item in enumerate(value):
            problems += undeclared_fields(item, node["items"], f"{path}[{i}]")
    elif kind == "string":
        if not isinstance(value, str):
            problems.append(f"{path}: not a string")
        elif "enum" in node and value not in node["enum"]:
            problems.append(f"{path}: {value!r} not in enum")
    elif kind == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        problems.append(f"{path}: not an integer")
    elif kind == "boolean" and not isinstance(value, bool):
        problems.append(f"{path}: not a boolean")
    return problems


def test_chart_crd_file_is_generated_from_code():
    assert yaml.safe_load(CRD_FILE.read_text()) == crd.build_crd(), \
        "regenerate: python -m dataclay_operator.crd > charts/dataclay/crds/dataclays.yaml"


def test_identity():
    doc = crd.build_crd()
    assert doc["metadata"]["name"] == f"{api.PLURAL}.{api.GROUP}"
    assert doc["spec"]["group"] == api.GROUP
    assert doc["spec"]["names"]["kind"] == api.KIND
    version = doc["spec"]["versions"][0]
    assert version["name"] == api.VERSION and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}, "scale": {
        "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector"}}


def test_the_scale_subresource_points_at_fields_the_schema_declares_and_the_operator_writes():
    """`kubectl scale dataclay` sets spec.replicas (so it drains); its status is what compute_status writes."""
    scale = crd.build_crd()["spec"]["versions"][0]["subresources"]["scale"]
    props = schema()["properties"]
    spec_field = scale["specReplicasPath"].removeprefix(".spec.")
    assert props["spec"]["properties"][spec_field]["type"] == "integer"
    for path, kind in (("statusReplicasPath", "integer"), ("labelSelectorPath", "string")):
        assert props["status"]["properties"][scale[path].removeprefix(".status.")]["type"] == kind
    sts = {"metadata": {"generation": 1}, "spec": {"replicas": 2}, "status": {"replicas": 2}}
    status = compute_status(Observed(generation=1, desired_backends=2, endpoint="e", backend_sts=sts,
                                     selector="app=x"), None, "2024-01-01T00:00:00Z")
    assert (status["replicas"], status["selector"]) == (2, "app=x")


def test_server_defaults_equal_parse_spec_defaults():
    """An empty spec defaulted by the server parses to the same spec as an empty one here."""
    defaulted = apply_defaults({}, schema())["spec"]
    assert defaulted["replicas"] == specmod.DEFAULT_REPLICAS
    assert specmod.parse_spec(defaulted, "img") == specmod.parse_spec({}, "img")
    # and every nested default is reached
    assert defaulted["storage"] == {"size": specmod.DEFAULT_STORAGE_SIZE}
    assert defaulted["model"] == {"path": specmod.DEFAULT_MODEL_PATH}
    assert defaulted["pvcRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}


def test_enums_match_the_code():
    props = schema()["properties"]["spec"]["properties"]
    assert props["durability"]["enum"] == [d.value for d in specmod.Durability]
    assert props["imagePullPolicy"]["enum"] == list(specmod.PULL_POLICIES)
    for key in ("whenDeleted", "whenScaled"):
        assert props["pvcRetentionPolicy"]["properties"][key]["enum"] == [r.value for r in specmod.RetentionPolicy]
    status = schema()["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == [p.value for p in Phase]
    cond = status["conditions"]["items"]["properties"]
    assert set(cond["type"]["enum"]) == {t.value for t in ConditionType}
    assert set(cond["reason"]["enum"]) == {r.value for r in Reason}


def test_validation_rules():
    props = schema()["properties"]["spec"]["properties"]
    assert props["replicas"]["minimum"] == 1 and props["replicas"]["type"] == "integer"
    assert props["storage"]["properties"]["size"]["pattern"] == specmod.QUANTITY_PATTERN
    assert props["storage"]["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"
    assert "size(self.metadata.name)" in schema()["x-kubernetes-validations"][0]["rule"]


def test_printer_columns_point_at_status_fields():
    columns = {c["name"]: c for c in crd.build_crd()["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert [c for c in columns][:3] == ["Ready", "Phase", "Age"]
    status_props = schema()["properties"]["status"]["properties"]
    for column in ("Ready", "Phase"):
        field = columns[column]["jsonPath"].removeprefix(".status.")
        assert field in status_props


def test_every_status_the_operator_writes_fits_the_schema():
    """Nothing compute_status produces would be pruned or rejected by the status schema."""
    pods = [{"metadata": {"name": f"dc-backend-{i}"},
             "status": {"conditions": [{"type": "Ready", "status": "True"}]}} for i in range(3)]
    sts = {"metadata": {"generation": 1}, "spec": {"replicas": 3},
           "status": {"observedGeneration": 1, "updatedReplicas": 3, "readyReplicas": 3}}
    status_schema = schema()["properties"]["status"]
    for drain in (None, DrainProgress(("dc-backend-2",), 5, 10), DrainProgress(("dc-backend-2",), 5, 10, "no room")):
        for error, bypass in ((None, None), ((Reason.RECONCILE_FAILED, "boom"), None),
                              (None, Bypass(3, 1, ("dc-backend-1", "dc-backend-2")))):
            observed = Observed(generation=2, desired_backends=2, endpoint="dc-metadata.ns.svc:16587",
                                metadata_sts=sts, backend_sts=sts, metadata_pods=pods[:1], backend_pods=pods,
                                drain=drain, error=error, backend_ids={f"dc-backend-{i}": f"id-{i}" for i in range(3)},
                                name="dc", selector="app.kubernetes.io/instance=dc", bypass=bypass)
            status = compute_status(observed, None, "2024-01-01T00:00:00Z")
            assert undeclared_fields(status, status_schema, "status") == []


def test_the_example_manifests_fit_the_schema():
    root = Path(__file__).resolve().parents[3]
    for path in [root / "examples" / "dataclay.yaml"]:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == api.KIND:
                assert doc["apiVersion"] == api.API_VERSION
                assert undeclared_fields(doc["spec"], schema()["properties"]["spec"], "spec") == []
                specmod.parse_spec(doc["spec"], "img")
