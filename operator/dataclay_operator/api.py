"""Identity of the DataClay API and the names and labels shared by every child object.

Kept in one module so the CRD builder, the children and the kopf handlers cannot drift apart.
"""
from __future__ import annotations

from typing import Final

GROUP: Final = "dataclay.bsc.es"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "DataClay"
PLURAL: Final = "dataclays"
SINGULAR: Final = "dataclay"
SHORT_NAMES: Final = ("dc",)
CATEGORIES: Final = ("dataclay",)
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

#: Field manager for server-side apply, and the value of the managed-by label.
MANAGER: Final = "dataclay-operator"

#: On the backend StatefulSet: the replicas the operator last applied. Replicas below it were
#: lowered by someone else, without a drain (scaling.detect_bypass).
ANNOTATION_APPLIED_REPLICAS: Final = f"{GROUP}/applied-replicas"

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
APP_NAME: Final = "dataclay"
#: Pods labelled `dataclay.bsc.es/client-of: <DataClay name>` (in its namespace) may reach its
#: data plane through its NetworkPolicy; they still need the client credentials (mutual TLS).
LABEL_CLIENT_OF: Final = f"{GROUP}/client-of"

COMPONENT_METADATA: Final = "metadata"
COMPONENT_BACKEND: Final = "backend"

METADATA_PORT: Final = 16587
BACKEND_PORT: Final = 6867
DATA_DIR: Final = "/data"
#: Plain-text port serving only grpc.health.v1 Check, for the kubelet's gRPC probes (they cannot
#: present a client certificate to the TLS-only data port).
HEALTH_PORT: Final = 8090
#: Where a server container finds its credentials directory (DC_CREDENTIALS).
CREDENTIALS_DIR: Final = "/var/run/dataclay/credentials"
BACKUP_DIR: Final = "/var/lib/dataclay-backups"  # spec.metadata.backup's volume, on the metadata pod
RESTORE_DIR: Final = "/var/run/dataclay/restore"  # spec.metadata.restoreFrom's volume (read only)


def metadata_name(name: str) -> str:
    """Metadata StatefulSet and its (ClusterIP) Service: clients connect to this Service."""
    return f"{name}-metadata"


def backend_name(name: str) -> str:
    """Backend StatefulSet and its governing headless Service (same name, different kinds)."""
    return f"{name}-backend"


def client_config_name(name: str) -> str:
    """ConfigMap with DC_HOST/DC_PORT, for client pods to `envFrom`."""
    return f"{name}-client"


def ca_secret_name(name: str) -> str:
    """Secret with the DataClay's CA certificate and key: only the operator reads it."""
    return f"{name}-ca"


def metadata_tls_name(name: str) -> str:
    """Secret with the metadata service's certificate and key (and ca.pem)."""
    return f"{name}-metadata-tls"


def backend_tls_name(name: str) -> str:
    """Secret with every backend ordinal's certificate and key (and ca.pem)."""
    return f"{name}-backend-tls"


def client_credentials_name(name: str) -> str:
    """Secret that is a client's credentials directory (ca.pem, client.pem, client.key): client
    pods mount it and set DC_CREDENTIALS to where they mount it."""
    return f"{name}-client-credentials"


def admin_credentials_name(name: str) -> str:
    """Secret with the admin identity the operator drains with (ca.pem, admin.pem, admin.key)."""
    return f"{name}-admin-credentials"


def network_policy_name(name: str) -> str:
    """NetworkPolicy admitting only the DataClay's own pods, its clients and the operator."""
    return f"{name}-dataplane"


def disruption_budget_name(name: str) -> str:
    """PodDisruptionBudget of the backends (voluntary evictions one at a time)."""
    return f"{name}-backend"


def backend_pod_name(name: str, ordinal: int) -> str:
    """Pod name of backend `ordinal`; it is also the backend's dataClay name (DC_BACKEND_NAME)."""
    return f"{backend_name(name)}-{ordinal}"


def metadata_host(name: str, namespace: str) -> str:
    """In-cluster DNS name of the metadata Service."""
    return f"{metadata_name(name)}.{namespace}.svc"


def selector_labels(name: str, component: str) -> dict[str, str]:
    """Labels that select one component's pods; immutable in a StatefulSet, so never extended."""
    return {LABEL_NAME: APP_NAME, LABEL_INSTANCE: name, LABEL_COMPONENT: component}


def instance_labels(name: str) -> dict[str, str]:
    """Labels every pod of one DataClay has, whatever its component."""
    return {LABEL_NAME: APP_NAME, LABEL_INSTANCE: name}


def common_labels(name: str, component: str | None = None) -> dict[str, str]:
    """Labels on every child: selector labels plus the ones the operator watches children by."""
    labels = {LABEL_NAME: APP_NAME, LABEL_INSTANCE: name, LABEL_MANAGED_BY: MANAGER, LABEL_PART_OF: APP_NAME}
    if component is not None:
        labels[LABEL_COMPONENT] = component
    return labels


def label_selector(labels: dict[str, str]) -> str:
    """`k=v,k=v` form for list calls."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
