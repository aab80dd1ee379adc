"""Spec parsing: defaults, enums, quantities."""
from decimal import Decimal

import pytest

from dataclay_operator.spec import (DEFAULT_MODEL_PATH, Durability, RetentionPolicy, SpecError, parse_quantity,
                                    parse_spec, quantity_bytes)


def test_empty_spec_gets_every_default_and_the_operator_image():
    spec = parse_spec({}, default_image="registry/dataclay:1")
    assert spec.image == "registry/dataclay:1"
    assert spec.replicas == 1
    assert spec.durability is Durability.PROCESS
    assert spec.storage.size == "1Gi" and spec.storage.storage_class_name is None
    assert spec.metadata.storage.size == "1Gi"
    assert spec.model.path == DEFAULT_MODEL_PATH and spec.model.config_map is None
    assert spec.pvc_retention.when_deleted is RetentionPolicy.RETAIN
    assert spec.pvc_retention.when_scaled is RetentionPolicy.RETAIN
    assert spec.memory_limit is None


def test_full_spec_is_parsed():
    spec = parse_spec({
        "replicas": 3, "image": "me/models:2", "imagePullPolicy": "Always", "durability": "machine",
        "storage": {"size": "10Gi", "storageClassName": "fast"}, "memoryLimit": "256Mi",
        "resources": {"limits": {"memory": "1Gi"}},
        "model": {"configMap": "my-models", "path": "/models"},
        "metadata": {"storage": {"size": "2Gi"}, "resources": {"requests": {"cpu": "100m"}}},
        "pvcRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"},
    }, default_image="unused")
    assert (spec.replicas, spec.image, spec.image_pull_policy) == (3, "me/models:2", "Always")
    assert spec.durability is Durability.MACHINE
    assert spec.storage.storage_class_name == "fast"
    assert spec.memory_limit == 256 * 2**20
    assert spec.model.config_map == "my-models" and spec.model.path == "/models"
    assert spec.metadata.storage.size == "2Gi" and spec.metadata.resources == {"requests": {"cpu": "100m"}}
    assert spec.pvc_retention.when_deleted is RetentionPolicy.DELETE


@pytest.mark.parametrize("raw, message", [
    ({"replicas": 0}, "spec.replicas"),
    ({"replicas": "3"}, "spec.replicas"),
    ({"replicas": True}, "spec.replicas"),
    ({"durability": "eventually"}, "spec.durability"),
    ({"imagePullPolicy": "Sometimes"}, "spec.imagePullPolicy"),
    ({"pvcRetentionPolicy": {"whenScaled": "Keep"}}, "whenScaled"),
    ({"storage": {"size": "lots"}}, "quantity"),
    ({"memoryLimit": "-1Gi"}, "quantity"),
])
def test_values_the_schema_rejects_are_rejected_here_too(raw, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(raw, default_image="x")


@pytest.mark.parametrize("text, value", [
    ("1Gi", 2**30), ("512Mi", 512 * 2**20), ("1G", 10**9), ("1.5Ki", 1536), ("100", 100), (100, 100),
    ("1e3", 1000), ("500m", Decimal("0.5")),
])
def test_quantities(text, value):
    assert parse_quantity(text) == value


def test_quantity_bytes_rounds_up():
    assert quantity_bytes("1k") == 1000
    assert quantity_bytes("1500m") == 2
