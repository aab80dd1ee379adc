"""Operator settings from the environment (the chart sets them on the Deployment)."""
from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_IMAGE = "dataclay-k8s:0.1.0"


@dataclass(frozen=True)
class OperatorConfig:
    """
    namespaces: watched namespaces; empty means cluster-wide (DC_OPERATOR_NAMESPACES, comma-separated).
    default_image: image for DataClays without spec.image, normally the operator's own image.
    dataplane_host/port: where the operator reaches the metadata service for drains; by default
        the DataClay's metadata Service DNS name (override to reach a cluster from outside it).
    resync_seconds: every DataClay is reconciled at least this often, even without events.
    workers: DataClays reconciled in parallel (one DataClay is never reconciled twice at once).
    liveness: kopf liveness endpoint URL (e.g. http://0.0.0.0:8080/healthz), or None.
    lease: "namespace/name" of the Lease replicas elect a leader with (DC_OPERATOR_LEASE); None:
        this replica leads alone (one replica, or a test).
    identity: this replica's name in the Lease (POD_NAME, else host name and pid).
    pod_namespace, pod_labels: where the operator's own pods run and their labels (the chart sets
        them), admitted by every DataClay's NetworkPolicy; unset when it runs outside the cluster.
    """

    namespaces: tuple[str, ...] = ()
    default_image: str = DEFAULT_IMAGE
    dataplane_host: str | None = None
    dataplane_port: int | None = None
    resync_seconds: float = 60.0
    workers: int = 4
    liveness: str | None = None
    pod_namespace: str | None = None
    pod_labels: tuple[tuple[str, str], ...] = ()
    lease: tuple[str, str] | None = None
    identity: str = ""

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def load_config(environ: Mapping[str, str]) -> OperatorConfig:
    """Parse DC_OPERATOR_* variables; a malformed value is an error at startup, not later."""
    def number(key: str, default: float, kind: type = float, minimum: float = 0) -> float:
        raw = environ.get(key, "").strip()
        if not raw:
            return default
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"{key}={raw!r} is not a number") from None
        if value < minimum:
            raise ValueError(f"{key}={raw!r} must be >= {minimum}")
        return value

    namespaces = tuple(ns.strip() for ns in environ.get("DC_OPERATOR_NAMESPACES", "").split(",") if ns.strip())
    port = environ.get("DC_OPERATOR_DATAPLANE_PORT", "").strip()
    labels = []
    for pair in environ.get("DC_OPERATOR_POD_LABELS", "").split(","):
        if pair.strip():
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"DC_OPERATOR_POD_LABELS: {pair!r} is not key=value")
            labels.append((key.strip(), value.strip()))
    lease = environ.get("DC_OPERATOR_LEASE", "").strip()
    if lease and (lease.count("/") != 1 or not all(lease.split("/"))):
        raise ValueError(f"DC_OPERATOR_LEASE={lease!r} is not namespace/name")
    return OperatorConfig(
        namespaces=namespaces,
        default_image=environ.get("DC_OPERATOR_IMAGE", "").strip() or DEFAULT_IMAGE,
        dataplane_host=environ.get("DC_OPERATOR_DATAPLANE_HOST", "").strip() or None,
        dataplane_port=int(number("DC_OPERATOR_DATAPLANE_PORT", 0, int, 1)) if port else None,
        resync_seconds=number("DC_OPERATOR_RESYNC_SECONDS", 60.0, float, 0.1),
        workers=int(number("DC_OPERATOR_WORKERS", 4, int, 1)),
        liveness=environ.get("DC_OPERATOR_LIVENESS", "").strip() or None,
        pod_namespace=environ.get("DC_OPERATOR_POD_NAMESPACE", "").strip() or None,
        pod_labels=tuple(labels),
        lease=tuple(lease.split("/")) if lease else None,  # type: ignore[arg-type]
        identity=environ.get("POD_NAME", "").strip() or f"{socket.gethostname()}-{os.getpid()}",
    )
