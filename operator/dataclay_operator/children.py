"""Every Kubernetes object a DataClay owns, as pure functions of the DataClay and its spec.

Deterministic names (api.py), labels and a controller owner reference on each, so reconciling is
"apply these objects" and deleting the DataClay lets the garbage collector remove them. Field
values here are exactly the fields the operator owns (server-side apply field manager).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dataclay_operator import api
from dataclay_operator.spec import (DEFAULT_BACKEND_RESOURCES, DEFAULT_METADATA_RESOURCES, DataClaySpec, PodOverlay,
                                    StorageSpec)

RUN_AS: int = 10001  # the image's unprivileged user; also fsGroup so the PVC is writable
TMP_VOLUME = "tmp"
DATA_VOLUME = "data"
MODEL_VOLUME = "model"
CREDENTIALS_VOLUME = "credentials"  # the container's credentials directory (DC_CREDENTIALS)
BACKUP_VOLUME = "backups"  # spec.metadata.backup's PVC
RESTORE_VOLUME = "restore"  # spec.metadata.restoreFrom's PVC, when not the backup volume
BACKEND_TLS_VOLUME = "backend-tls"  # every ordinal's files: mounted by the init container only
MODEL_CHECKSUM = f"{api.GROUP}/model-checksum"  # pod template annotation: the model ConfigMap's digest
SECRET_MODE = 0o440  # owner root, group fsGroup (RUN_AS): readable by the server, by nobody else


@dataclass(frozen=True)
class OperatorPeer:
    """Where the operator's pods run (from the chart's downward API), so a DataClay's
    NetworkPolicy admits its drains; None when it runs outside the cluster."""

    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)


def owner_reference(dc: Mapping[str, Any]) -> dict[str, Any]:
    """Controller reference to the DataClay: cascades deletion and tells whose child this is."""
    meta = dc["metadata"]
    return {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def object_meta(dc: Mapping[str, Any], name: str, component: str | None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": dc["metadata"]["namespace"],
        "labels": api.common_labels(dc["metadata"]["name"], component),
        "ownerReferences": [owner_reference(dc)],
    }


def client_configmap(dc: Mapping[str, Any], spec: DataClaySpec) -> dict[str, Any]:
    """DC_HOST/DC_PORT of the metadata service, for client pods (`envFrom: configMapRef`)."""
    name, namespace = dc["metadata"]["name"], dc["metadata"]["namespace"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(dc, api.client_config_name(name), None),
        "data": {"DC_HOST": api.metadata_host(name, namespace), "DC_PORT": str(api.METADATA_PORT)},
    }


def metadata_service(dc: Mapping[str, Any], spec: DataClaySpec) -> dict[str, Any]:
    """Stable virtual IP and DNS name of the metadata service (what DC_HOST points at)."""
    name = dc["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(dc, api.metadata_name(name), api.COMPONENT_METADATA),
        "spec": {
            "type": "ClusterIP",
            "selector": api.selector_labels(name, api.COMPONENT_METADATA),
            "ports": [{"name": "grpc", "port": api.METADATA_PORT, "targetPort": "grpc", "protocol": "TCP"}],
        },
    }


def backend_service(dc: Mapping[str, Any], spec: DataClaySpec) -> dict[str, Any]:
    """Headless governing Service: gives each backend pod the stable DNS name it advertises.

    Not-ready addresses are published so a starting backend can register under its name before
    its readiness probe passes.
    """
    name = dc["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(dc, api.backend_name(name), api.COMPONENT_BACKEND),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": api.selector_labels(name, api.COMPONENT_BACKEND),
            "ports": [{"name": "grpc", "port": api.BACKEND_PORT, "targetPort": "grpc", "protocol": "TCP"}],
        },
    }


def _probes() -> dict[str, Any]:
    """gRPC health (grpc.health.v1) probes on the plain-text health port (the kubelet cannot
    present a client certificate to the TLS-only data port); the startup probe allows a slow
    recovery of the data dir."""
    grpc = {"port": api.HEALTH_PORT}
    return {
        "startupProbe": {"grpc": grpc, "periodSeconds": 2, "failureThreshold": 150, "timeoutSeconds": 2},
        "readinessProbe": {"grpc": grpc, "periodSeconds": 5, "failureThreshold": 3, "timeoutSeconds": 2},
        "livenessProbe": {"grpc": grpc, "periodSeconds": 10, "failureThreshold": 6, "timeoutSeconds": 5},
    }


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}}


def _pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _claim_template(name: str, component: str, storage: StorageSpec) -> dict[str, Any]:
    claim_spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage.size}}}
    if storage.storage_class_name:
        claim_spec["storageClassName"] = storage.storage_class_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": DATA_VOLUME, "labels": api.selector_labels(name, component)},
            "spec": claim_spec}


def _retention(spec: DataClaySpec) -> dict[str, str]:
    return {"whenDeleted": spec.pvc_retention.when_deleted.value, "whenScaled": spec.pvc_retention.when_scaled.value}


def _statefulset(dc: Mapping[str, Any], spec: DataClaySpec, *, component: str, sts_name: str, service: str,
                 replicas: int, container: dict[str, Any], storage: StorageSpec,
                 extra_volumes: list[dict[str, Any]], pod_extra: dict[str, Any]) -> dict[str, Any]:
    name = dc["metadata"]["name"]
    pod_spec: dict[str, Any] = {
        "enableServiceLinks": False,  # Service env vars like <NAME>_METADATA_PORT would shadow DC_* settings
        "automountServiceAccountToken": False,  # the servers never call the Kubernetes API
        "terminationGracePeriodSeconds": 30,
        "securityContext": _pod_security(),
        "containers": [container],
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {}}, *extra_volumes],
        **pod_extra,
        **_scheduling(spec.pod),
    }
    template_meta: dict[str, Any] = {"labels": {**spec.pod.labels, **api.common_labels(name, component)}}
    if spec.pod.annotations:
        template_meta["annotations"] = dict(spec.pod.annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": object_meta(dc, sts_name, component),
        "spec": {
            "serviceName": service,
            "replicas": replicas,
            "selector": {"matchLabels": api.selector_labels(name, component)},
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            "persistentVolumeClaimRetentionPolicy": _retention(spec),
            "template": {"metadata": template_meta, "spec": pod_spec},
            "volumeClaimTemplates": [_claim_template(name, component, storage)],
        },
    }


def _scheduling(overlay: PodOverlay) -> dict[str, Any]:
    """The pod spec fields of spec.pod that are set (unset ones stay the server's)."""
    fields: dict[str, Any] = {}
    if overlay.node_selector:
        fields["nodeSelector"] = dict(overlay.node_selector)
    if overlay.affinity:
        fields["affinity"] = dict(overlay.affinity)
    if overlay.tolerations:
        fields["tolerations"] = [dict(t) for t in overlay.tolerations]
    if overlay.priority_class_name:
        fields["priorityClassName"] = overlay.priority_class_name
    if overlay.image_pull_secrets:
        fields["imagePullSecrets"] = [{"name": secret} for secret in overlay.image_pull_secrets]
    return fields


def _env(pairs: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in pairs.items()]


def _base_mounts() -> list[dict[str, Any]]:
    return [{"name": DATA_VOLUME, "mountPath": api.DATA_DIR}, {"name": TMP_VOLUME, "mountPath": "/tmp"}]


def _ports(port: int) -> list[dict[str, Any]]:
    return [{"name": "grpc", "containerPort": port, "protocol": "TCP"},
            {"name": "health", "containerPort": api.HEALTH_PORT, "protocol": "TCP"}]


#: Every server serves mutual TLS with the credentials the operator keeps in Secrets
#: (dataclay_operator.credentials), and its health service in plain text on the health port.
SECURE = {"DC_CREDENTIALS": api.CREDENTIALS_DIR, "DC_HEALTH_PORT": str(api.HEALTH_PORT)}
_POD_NAME = {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}

#: The backends' init container: copy this pod's own identity (ca.pem, backend.POD.pem/.key) from
#: the Secret of every ordinal ($1) to the in-memory credentials volume ($2); $3 is the pod name.
#: Fails, saying why, if the Secret does not have them yet (the kubelet retries it).
COPY_OWN_CREDENTIALS = """set -eu
src=$1 dst=$2 stem=backend.$3
for f in ca.pem "$stem.pem" "$stem.key"; do
  if [ ! -s "$src/$f" ]; then
    echo "no $f in the backend Secret: the operator adds it before it creates the pod; retrying" >&2
    exit 1
  fi
done
rm -f "$dst/ca.pem" "$dst/$stem.pem" "$dst/$stem.key"
cp "$src/ca.pem" "$src/$stem.pem" "$src/$stem.key" "$dst/"
chmod 0400 "$dst/ca.pem" "$dst/$stem.pem" "$dst/$stem.key"
"""
TLS_SOURCE = "/var/run/dataclay/backend-tls"


def metadata_statefulset(dc: Mapping[str, Any], spec: DataClaySpec) -> dict[str, Any]:
    """The metadata service: one replica with its own volume (backends and clients depend on it)."""
    name = dc["metadata"]["name"]
    container: dict[str, Any] = {
        "name": "metadata",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["python", "-m", "dataclay_backend.metadata"],
        "env": _env({"DC_METADATA_PORT": str(api.METADATA_PORT), "DC_DATA_DIR": api.DATA_DIR,
                     "DC_DURABILITY": spec.durability.value, **SECURE}),
        "ports": _ports(api.METADATA_PORT),
        **_probes(),
        "volumeMounts": [*_base_mounts(),
                         {"name": CREDENTIALS_VOLUME, "mountPath": api.CREDENTIALS_DIR, "readOnly": True}],
        "securityContext": _container_security(),
    }
    container["resources"] = dict(spec.metadata.resources or DEFAULT_METADATA_RESOURCES)
    volumes = [{"name": CREDENTIALS_VOLUME, "secret": {"secretName": api.metadata_tls_name(name),
                                                       "defaultMode": SECRET_MODE}}]
    env, mounts, more = _backup_and_restore(spec)
    container["env"] += _env(env)
    container["volumeMounts"] += mounts
    return _statefulset(dc, spec, component=api.COMPONENT_METADATA, sts_name=api.metadata_name(name),
                        service=api.metadata_name(name), replicas=1, container=container,
                        storage=spec.metadata.storage, extra_volumes=volumes + more, pod_extra={})


def _backup_and_restore(spec: DataClaySpec) -> tuple[dict[str, str], list[dict[str, Any]], list[dict[str, Any]]]:
    """The metadata container's env and mounts, and the pod's volumes, of spec.metadata.backup
    (its PVC, read-write) and spec.metadata.restoreFrom (its PVC, read only; the backup volume
    itself when it is the same claim)."""
    env: dict[str, str] = {}
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    backup, restore = spec.metadata.backup, spec.metadata.restore_from
    if backup is not None:
        env.update({"DC_METADATA_BACKUP_DIR": api.BACKUP_DIR, "DC_METADATA_BACKUP_INTERVAL": backup.interval,
                    "DC_METADATA_BACKUP_KEEP": str(backup.keep)})
        mounts.append({"name": BACKUP_VOLUME, "mountPath": api.BACKUP_DIR})
        volumes.append({"name": BACKUP_VOLUME, "persistentVolumeClaim": {"claimName": backup.claim_name}})
    if restore is not None:
        if backup is not None and backup.claim_name == restore.claim_name:
            folder = api.BACKUP_DIR
        else:
            folder = api.RESTORE_DIR
            mounts.append({"name": RESTORE_VOLUME, "mountPath": api.RESTORE_DIR, "readOnly": True})
            volumes.append({"name": RESTORE_VOLUME, "persistentVolumeClaim": {"claimName": restore.claim_name,
                                                                              "readOnly": True}})
        env["DC_METADATA_RESTORE_FROM"] = f"{folder}/{restore.file}"
        if restore.overwrite:
            env["DC_METADATA_RESTORE_OVERWRITE"] = "1"
    return env, mounts, volumes


def model_checksum(config_map: Mapping[str, Any] | None) -> str:
    """A digest of a model ConfigMap's content ("absent" if it does not exist): in the backends'
    pod template, so a change of the modules rolls the backends (one at a time, each Ready first)."""
    if config_map is None:
        return "absent"
    content = {"data": config_map.get("data") or {}, "binaryData": config_map.get("binaryData") or {}}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:32]


def backend_statefulset(dc: Mapping[str, Any], spec: DataClaySpec, replicas: int,
                        model_digest: str | None = None) -> dict[str, Any]:
    """The backends. `replicas` comes from the scale plan, not straight from the spec: a scale-down
    keeps the current count until the drain has emptied the backends that go away. `model_digest`
    (model_checksum of spec.model.configMap) goes in the pod template's annotations."""
    name, namespace = dc["metadata"]["name"], dc["metadata"]["namespace"]
    settings = {
        "DC_BACKEND_NAME": "$(POD_NAME)",  # stable identity per pod; the id lives in its data dir
        "DC_ADVERTISE_HOST": f"$(POD_NAME).{api.backend_name(name)}.{namespace}.svc",
        "DC_HOST": api.metadata_host(name, namespace),
        "DC_PORT": str(api.METADATA_PORT),
        "DC_BACKEND_PORT": str(api.BACKEND_PORT),
        "DC_DATA_DIR": api.DATA_DIR,
        "DC_DURABILITY": spec.durability.value,
        "DC_MODEL_PATH": spec.model.path,
        **SECURE,
    }
    if spec.memory_limit is not None:
        settings["DC_MEMORY_LIMIT"] = str(spec.memory_limit)
    mounts = [*_base_mounts(), {"name": CREDENTIALS_VOLUME, "mountPath": api.CREDENTIALS_DIR, "readOnly": True}]
    volumes: list[dict[str, Any]] = [
        {"name": BACKEND_TLS_VOLUME, "secret": {"secretName": api.backend_tls_name(name), "defaultMode": SECRET_MODE}},
        {"name": CREDENTIALS_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},  # never on disk
    ]
    if spec.model.config_map:
        mounts.append({"name": MODEL_VOLUME, "mountPath": spec.model.path, "readOnly": True})
        volumes.append({"name": MODEL_VOLUME, "configMap": {"name": spec.model.config_map}})
    container: dict[str, Any] = {
        "name": "backend",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["python", "-m", "dataclay_backend.backend"],
        "env": [_POD_NAME, *_env(settings)],
        "ports": _ports(api.BACKEND_PORT),
        **_probes(),
        "volumeMounts": mounts,
        "securityContext": _container_security(),
    }
    container["resources"] = dict(spec.resources or DEFAULT_BACKEND_RESOURCES)
    spread = [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
               "labelSelector": {"matchLabels": api.selector_labels(name, api.COMPONENT_BACKEND)}}]
    sts = _statefulset(dc, spec, component=api.COMPONENT_BACKEND, sts_name=api.backend_name(name),
                       service=api.backend_name(name), replicas=replicas, container=container,
                       storage=spec.storage, extra_volumes=volumes,
                       pod_extra={"topologySpreadConstraints": spread,
                                  "initContainers": [_copy_credentials_container(spec)]})
    if spec.model.config_map and model_digest is not None:
        template_meta = sts["spec"]["template"]["metadata"]
        template_meta["annotations"] = {**template_meta.get("annotations", {}), MODEL_CHECKSUM: model_digest}
    # applied together with replicas, so replicas below it were lowered by someone else
    sts["metadata"]["annotations"] = {api.ANNOTATION_APPLIED_REPLICAS: str(replicas)}
    return sts


def _copy_credentials_container(spec: DataClaySpec) -> dict[str, Any]:
    """Init container of a backend pod: its own identity out of the Secret of every ordinal."""
    return {
        "name": "credentials",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["sh", "-c", COPY_OWN_CREDENTIALS, "copy-credentials", TLS_SOURCE, api.CREDENTIALS_DIR,
                    "$(POD_NAME)"],
        "env": [_POD_NAME],
        "volumeMounts": [{"name": BACKEND_TLS_VOLUME, "mountPath": TLS_SOURCE, "readOnly": True},
                         {"name": CREDENTIALS_VOLUME, "mountPath": api.CREDENTIALS_DIR}],
        "securityContext": _container_security(),
    }


def dataplane_network_policy(dc: Mapping[str, Any], spec: DataClaySpec,
                             operator: OperatorPeer | None = None) -> dict[str, Any]:
    """Who may open a connection to the DataClay's pods: on the data ports, its own pods
    (backends call the metadata service and each other), pods of its namespace labelled as its
    clients (api.LABEL_CLIENT_OF) and the operator's pods (drains); the health port from anywhere
    (the kubelet's probes). Defence in depth: every data-plane call also needs a certificate."""
    name = dc["metadata"]["name"]
    peers: list[dict[str, Any]] = [{"podSelector": {"matchLabels": api.instance_labels(name)}},
                                   {"podSelector": {"matchLabels": {api.LABEL_CLIENT_OF: name}}}]
    if operator is not None:
        peers.append({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": operator.namespace}},
                      "podSelector": {"matchLabels": dict(operator.labels)}})
    data_ports = [{"protocol": "TCP", "port": port} for port in (api.METADATA_PORT, api.BACKEND_PORT)]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(dc, api.network_policy_name(name), None),
        "spec": {
            "podSelector": {"matchLabels": api.instance_labels(name)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": data_ports},
                        {"ports": [{"protocol": "TCP", "port": api.HEALTH_PORT}]}],
        },
    }


def backend_disruption_budget(dc: Mapping[str, Any], spec: DataClaySpec) -> dict[str, Any]:
    """Voluntary evictions (node drains, cluster upgrades) take one backend at a time: each
    backend's objects are unreachable while its pod is away, never more than one's at once."""
    name = dc["metadata"]["name"]
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(dc, api.disruption_budget_name(name), api.COMPONENT_BACKEND),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": api.selector_labels(name, api.COMPONENT_BACKEND)}},
    }


def static_children(dc: Mapping[str, Any], spec: DataClaySpec,
                    operator: OperatorPeer | None = None) -> list[dict[str, Any]]:
    """Children whose desired state depends on the spec alone (the backend StatefulSet also
    depends on the scale plan), in creation order: the metadata service before anything uses it,
    the NetworkPolicy before any pod it admits to."""
    return [dataplane_network_policy(dc, spec, operator), client_configmap(dc, spec), metadata_service(dc, spec),
            metadata_statefulset(dc, spec), backend_service(dc, spec), backend_disruption_budget(dc, spec)]


#: StatefulSet fields the API server refuses to change; existing values are kept (see reconcile).
STATEFULSET_IMMUTABLE = ("selector", "serviceName", "podManagementPolicy", "volumeClaimTemplates")
