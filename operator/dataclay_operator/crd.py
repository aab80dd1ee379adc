"""The DataClay CustomResourceDefinition, built from the same constants the operator uses.

The chart ships the rendered YAML (charts/dataclay/crds/dataclays.yaml); regenerate it with
`python -m dataclay_operator.crd > charts/dataclay/crds/dataclays.yaml`. A test fails if the
file and `build_crd()` disagree, so defaults and enums have a single source.
"""
from __future__ import annotations

import sys
from typing import Any

from dataclay_operator import api, spec
from dataclay_operator.status import ConditionType, Phase, Reason

#: Names become Service names and pod names + hashes, both capped at 63 characters.
MAX_NAME_LENGTH = 40


def _quantity(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": spec.QUANTITY_PATTERN,
        "x-kubernetes-int-or-string": True,
    }


def _resources(what: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"Container resources (requests/limits) of {what}.",
        "properties": {
            key: {"type": "object", "additionalProperties": _quantity(f"{key} of one resource")}
            for key in ("requests", "limits")
        },
    }


def _storage(what: str, default_size: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"PersistentVolumeClaim of {what}. Immutable: StatefulSet claim templates cannot change.",
        "default": {},
        "properties": {
            "size": {"type": "string", "default": default_size, "pattern": spec.QUANTITY_PATTERN,
                     "description": "Requested capacity, a Kubernetes quantity such as 1Gi."},
            "storageClassName": {"type": "string", "description": "StorageClass; the cluster default if unset."},
        },
        "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "storage cannot be changed after creation"}],
    }


def _pod_overlay() -> dict[str, Any]:
    strings = {"type": "object", "additionalProperties": {"type": "string"}}
    return {
        "type": "object",
        "description": "Added to every pod of this DataClay (metadata service and backends).",
        "properties": {
            "labels": {**strings, "description": "Extra pod labels (the operator's own labels win)."},
            "annotations": {**strings, "description": "Extra pod annotations."},
            "nodeSelector": {**strings, "description": "Pod nodeSelector."},
            "affinity": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                         "description": "Pod affinity (core/v1 Affinity)."},
            "tolerations": {
                "type": "array", "description": "Pod tolerations (core/v1 Toleration).",
                "items": {"type": "object", "properties": {
                    "key": {"type": "string"}, "operator": {"type": "string", "enum": ["Exists", "Equal"]},
                    "value": {"type": "string"}, "effect": {"type": "string"},
                    "tolerationSeconds": {"type": "integer", "format": "int64"}}},
            },
            "priorityClassName": {"type": "string", "description": "Pod priorityClassName."},
            "imagePullSecrets": {
                "type": "array", "description": "Secrets to pull spec.image with.",
                "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
            },
        },
    }


def _claim(what: str) -> dict[str, Any]:
    return {"type": "string", "pattern": spec.DNS_SUBDOMAIN_PATTERN, "maxLength": 253,
            "description": f"An existing PersistentVolumeClaim in the DataClay's namespace: {what}."}


def _backup() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Online backups of the metadata database (consistent while it serves) into a volume.",
        "required": ["claimName"],
        "properties": {
            "claimName": _claim("where backups are written (create it yourself: it outlives the DataClay)"),
            "interval": {"type": "string", "pattern": spec.INTERVAL_PATTERN, "default": spec.DEFAULT_BACKUP_INTERVAL,
                         "description": "How often: seconds, or e.g. 30m, 6h, 1d."},
            "keep": {"type": "integer", "minimum": 1, "default": spec.DEFAULT_BACKUP_KEEP,
                     "description": "How many of the newest backups are kept."},
        },
    }


def _restore_from() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Start the metadata service from a backup (only when the DataClay is created). Backends "
                       "keep their volumes (recreate the DataClay under the same name) and report what they "
                       "hold: objects created or moved after the backup are kept.",
        "required": ["claimName", "file"],
        "properties": {
            "claimName": _claim("the backup volume (mounted read only)"),
            "file": {"type": "string", "pattern": spec.BACKUP_FILE_PATTERN, "maxLength": 253,
                     "description": "The backup file in that volume, e.g. metadata-20260101T000000.000000Z.sqlite "
                                    "(status.backup.lastFile of the DataClay it was taken from)."},
            "overwrite": {"type": "boolean", "default": False,
                          "description": "Replace a metadata database the metadata volume still holds."},
        },
    }


def _enum(values: Any, default: Any, description: str) -> dict[str, Any]:
    return {"type": "string", "enum": [v.value for v in values], "default": default.value, "description": description}


def spec_schema() -> dict[str, Any]:
    """openAPIV3Schema of .spec."""
    retention = {"Retain": "keep the PVCs", "Delete": "delete the PVCs"}
    return {
        "type": "object",
        "description": "Desired state of one dataClay deployment: a metadata service and N backends.",
        "properties": {
            "replicas": {"type": "integer", "format": "int32", "minimum": 1, "default": spec.DEFAULT_REPLICAS,
                         "description": "Number of backends. Scaling down first drains the removed backends."},
            "image": {"type": "string", "minLength": 1,
                      "description": "Image for the metadata service and backends (may add the user's model "
                                     "modules); the operator's own image if unset."},
            "imagePullPolicy": {"type": "string", "enum": list(spec.PULL_POLICIES), "default": spec.DEFAULT_PULL_POLICY},
            "upgradePolicy": _enum(spec.UpgradePolicy, spec.DEFAULT_UPGRADE_POLICY,
                                   "Without spec.image: Pinned keeps the image the DataClay runs (status.image) "
                                   "when the operator is upgraded; FollowOperator rolls to the operator's "
                                   "image, one backend at a time."),
            "durability": _enum(spec.Durability, spec.DEFAULT_DURABILITY,
                                "process: acknowledged writes survive kill -9; machine: they also survive a "
                                "machine crash (fsync per write)."),
            "storage": _storage("each backend", spec.DEFAULT_STORAGE_SIZE),
            "resources": _resources("each backend (default: requests of "
                                    f"{spec.DEFAULT_BACKEND_RESOURCES['requests']})"),
            "memoryLimit": _quantity("Bytes of object state a backend keeps in memory before evicting to "
                                     "storage (DC_MEMORY_LIMIT); backend default if unset."),
            "model": {
                "type": "object",
                "default": {},
                "description": "Where backends import model classes from: the image (path on it) or a "
                               "ConfigMap of modules mounted at path.",
                "properties": {
                    "path": {"type": "string", "default": spec.DEFAULT_MODEL_PATH, "pattern": "^/",
                             "description": "Extra import path on the backends (DC_MODEL_PATH)."},
                    "configMap": {"type": "string", "pattern": spec.DNS_SUBDOMAIN_PATTERN, "maxLength": 253,
                                  "description": "ConfigMap whose keys are module files (e.g. model.py)."},
                },
            },
            "metadata": {
                "type": "object",
                "default": {},
                "description": "The metadata service.",
                "properties": {
                    "storage": _storage("the metadata service", spec.DEFAULT_METADATA_STORAGE_SIZE),
                    "resources": _resources("the metadata service (default: requests of "
                                            f"{spec.DEFAULT_METADATA_RESOURCES['requests']})"),
                    "backup": _backup(),
                    "restoreFrom": _restore_from(),
                },
                "x-kubernetes-validations": [{
                    "rule": "has(self.restoreFrom) == has(oldSelf.restoreFrom) && "
                            "(!has(self.restoreFrom) || self.restoreFrom == oldSelf.restoreFrom)",
                    "message": "restoreFrom is set when the DataClay is created, and never changed: to restore, "
                               "create a DataClay with it",
                }],
            },
            "pod": _pod_overlay(),
            "pvcRetentionPolicy": {
                "type": "object",
                "default": {},
                "description": "What happens to data volumes when the DataClay is deleted or scaled down "
                               "(StatefulSet persistentVolumeClaimRetentionPolicy).",
                "properties": {
                    "whenDeleted": _enum(spec.RetentionPolicy, spec.DEFAULT_WHEN_DELETED,
                                         f"On deletion of the DataClay: {retention}."),
                    "whenScaled": _enum(spec.RetentionPolicy, spec.DEFAULT_WHEN_SCALED,
                                        f"For backends removed by a scale-down (after their drain): {retention}."),
                },
            },
        },
    }


def _condition_schema() -> dict[str, Any]:
    reasons = sorted(r.value for r in Reason)
    return {
        "type": "object",
        "required": ["type", "status", "reason", "lastTransitionTime"],
        "properties": {
            "type": {"type": "string", "enum": [t.value for t in ConditionType]},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string", "enum": reasons},
            "message": {"type": "string"},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "observedGeneration": {"type": "integer", "format": "int64"},
        },
    }


def status_schema() -> dict[str, Any]:
    """openAPIV3Schema of .status (written only by the operator, through the status subresource)."""
    return {
        "type": "object",
        "description": "Observed state, written by the operator.",
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64"},
            "phase": {"type": "string", "enum": [p.value for p in Phase]},
            "ready": {"type": "string", "description": "readyBackends/desiredBackends."},
            "readyBackends": {"type": "integer"},
            "desiredBackends": {"type": "integer"},
            "metadataReady": {"type": "boolean"},
            "endpoint": {"type": "string", "description": "host:port of the metadata service for clients in the cluster."},
            "image": {"type": "string", "description": "The image the DataClay runs (applied to its pods)."},
            "operatorImage": {"type": "string",
                              "description": "The operator's image, when it differs from a pinned status.image: "
                                             "set spec.image (or spec.upgradePolicy: FollowOperator) to roll to it."},
            "replicas": {"type": "integer", "format": "int32",
                         "description": "Backend pods the StatefulSet has (the scale subresource's status.replicas)."},
            "selector": {"type": "string",
                         "description": "Label selector of the backend pods (the scale subresource's, for HPAs)."},
            "conditions": {
                "type": "array",
                "items": _condition_schema(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "backends": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["pod", "ready"],
                    "properties": {
                        "pod": {"type": "string"},
                        "backendId": {"type": "string"},
                        "ready": {"type": "boolean"},
                    },
                },
            },
            "backup": {
                "type": "object",
                "description": "The newest backup of the metadata database (spec.metadata.backup), as its "
                               "metadata service reports it.",
                "properties": {
                    "lastTime": {"type": "string", "format": "date-time"},
                    "lastFile": {"type": "string", "description": "File name in the backup volume."},
                    "sizeBytes": {"type": "integer", "format": "int64"},
                    "objects": {"type": "integer", "format": "int64"},
                    "aliases": {"type": "integer", "format": "int64"},
                    "error": {"type": "string", "description": "Why the last scheduled backup failed."},
                },
            },
            "drain": {
                "type": "object",
                "description": "The scale-down drain in progress, or the one that failed.",
                "properties": {
                    "backends": {"type": "array", "items": {"type": "string"}},
                    "objectsMoved": {"type": "integer"},
                    "objectsTotal": {"type": "integer"},
                    "state": {"type": "string", "enum": ["Running", "Failed"]},
                    "message": {"type": "string"},
                },
            },
        },
    }


#: `kubectl scale dataclay` and HorizontalPodAutoscalers set spec.replicas, so a scale-down drains.
SCALE: dict[str, str] = {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
                         "labelSelectorPath": ".status.selector"}


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    name_rule = (f"self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && "
                 f"size(self.metadata.name) <= {MAX_NAME_LENGTH}")
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": api.CRD_NAME, "labels": {api.LABEL_PART_OF: api.APP_NAME}},
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": list(api.SHORT_NAMES),
                "categories": list(api.CATEGORIES),
            },
            "versions": [{
                "name": api.VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}, "scale": SCALE},
                "additionalPrinterColumns": [
                    {"name": "Ready", "type": "string", "jsonPath": ".status.ready",
                     "description": "Ready backends / desired backends"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    {"name": "Image", "type": "string", "jsonPath": ".status.image", "priority": 1},
                    {"name": "Durability", "type": "string", "jsonPath": ".spec.durability", "priority": 1},
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A dataClay object store: metadata service plus backends, run by the operator.",
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": {**spec_schema(), "default": {}},
                        "status": status_schema(),
                    },
                    "x-kubernetes-validations": [{
                        "rule": name_rule,
                        "message": f"name must be a DNS label of at most {MAX_NAME_LENGTH} characters "
                                   f"starting with a letter (it prefixes Service and pod names)",
                    }],
                }},
            }],
        },
    }


def render_yaml() -> str:
    """The CRD as the YAML file the chart ships."""
    import yaml  # installed with the kubernetes client; only needed to render

    header = ("# Generated by `python -m dataclay_operator.crd`; do not edit by hand\n"
              "# (tests/operator/test_crd.py fails when this file and the code disagree).\n")
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120)


if __name__ == "__main__":
    sys.stdout.write(render_yaml())
