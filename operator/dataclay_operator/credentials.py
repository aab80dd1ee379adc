"""A DataClay's TLS material as Secrets: what each holds, as data, and how to complete it.

The servers of a DataClay serve mutual TLS only (dataclay.security): every caller presents a
certificate of the DataClay's own CA whose common name is its identity. The operator makes that
CA and every identity when it first reconciles the DataClay, and keeps them in Secrets it
controls (owner reference: they go with the DataClay):

- `<name>-ca`: ca.pem and ca.key. No pod mounts it; only the operator reads it, to sign.
- `<name>-metadata-tls`: ca.pem, metadata.pem, metadata.key (the metadata service; its
  certificate names the metadata Service: `S`, `S.NS`, `S.NS.svc`, `S.NS.svc.cluster.local`).
- `<name>-backend-tls`: ca.pem, and `backend.<pod>.pem` / `.key` for every backend ordinal
  (identity `backend:<pod>`, the name DC_BACKEND_NAME=$(POD_NAME) registers under; the
  certificate names the pod under the headless Service, including its DC_ADVERTISE_HOST).
- `<name>-client-credentials`: a client's credentials directory (ca.pem, client.pem,
  client.key): client pods mount it and set DC_CREDENTIALS to it.
- `<name>-admin-credentials`: ca.pem, admin.pem, admin.key: the operator's own drains.

How a backend pod gets its own identity: a StatefulSet has one pod template, so every backend
pod mounts the same `<name>-backend-tls` Secret. Only an init container mounts it; it copies the
pod's own three files (chosen by POD_NAME) into an in-memory volume, and the backend container
mounts only that: the server process never sees its siblings' keys. The Secret itself holds
every ordinal's key, so whoever can read Secrets in the namespace, or create pods that mount it,
can act as any backend (as with CockroachDB's shared node certificate); the CA key is in no pod.

Never regenerated while present: a restarted operator reads the Secrets and only adds what is
missing (the first time, or a new ordinal: before the StatefulSet's replicas are raised). A
Secret whose ca.pem is not the CA's (the CA Secret was deleted to rotate) is reissued whole.
The pure functions here take the CA and what a Secret holds and return what it must hold; the
reconciler reads and writes them (create if missing, patch to complete).
"""
from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dataclay import security
from dataclay.security import ADMIN, CA_FILE, CA_KEY_FILE, CLIENT, METADATA, Identity
from dataclay_operator import api
from dataclay_operator.children import object_meta

#: issue(ca_cert, ca_key, identity, hosts) -> (cert, key), PEM bytes (dataclay.security.issue).
Issuer = Callable[[bytes, bytes, Identity, Sequence[str]], "tuple[bytes, bytes]"]
CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class Authority:
    """The DataClay's CA, as PEM bytes."""

    cert: bytes
    key: bytes


@dataclass(frozen=True)
class SecretPlan:
    """One Secret: its name, the component label, and the identities it holds (with the names
    each server certificate must carry)."""

    name: str
    component: str | None
    identities: tuple[tuple[Identity, tuple[str, ...]], ...]


def service_names(service: str, namespace: str) -> tuple[str, ...]:
    """Every DNS name a pod may use for a Service (or a pod under a headless one)."""
    return (service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.{CLUSTER_DOMAIN}")


def metadata_hosts(name: str, namespace: str) -> tuple[str, ...]:
    return service_names(api.metadata_name(name), namespace)


def backend_hosts(name: str, namespace: str, pod: str) -> tuple[str, ...]:
    """The pod's names under the headless Service; `POD.<name>-backend.NS.svc` is the one it
    advertises (children.backend_statefulset: DC_ADVERTISE_HOST)."""
    return service_names(f"{pod}.{api.backend_name(name)}", namespace)


def plans(dc: Mapping[str, Any]) -> list[SecretPlan]:
    """The Secrets of fixed content (every one but the backends'), in the order they are made."""
    name, namespace = dc["metadata"]["name"], dc["metadata"]["namespace"]
    return [
        SecretPlan(api.metadata_tls_name(name), api.COMPONENT_METADATA,
                   ((Identity(METADATA), metadata_hosts(name, namespace)),)),
        SecretPlan(api.client_credentials_name(name), None, ((Identity(CLIENT), ()),)),
        SecretPlan(api.admin_credentials_name(name), None, ((Identity(ADMIN), ()),)),
    ]


def backend_plan(dc: Mapping[str, Any], ordinals: int) -> SecretPlan:
    """The backends' Secret with an identity for ordinals 0..ordinals-1."""
    name, namespace = dc["metadata"]["name"], dc["metadata"]["namespace"]
    pods = [api.backend_pod_name(name, ordinal) for ordinal in range(ordinals)]
    return SecretPlan(api.backend_tls_name(name), api.COMPONENT_BACKEND,
                      tuple((Identity.backend(pod), backend_hosts(name, namespace, pod)) for pod in pods))


def ca_data(current: Mapping[str, bytes] | None) -> dict[str, bytes] | None:
    """What the CA Secret must hold: None if it holds a CA already (never replaced), else a new one."""
    if current and current.get(CA_FILE) and current.get(CA_KEY_FILE):
        return None
    cert, key = security.new_ca()
    return {CA_FILE: cert, CA_KEY_FILE: key}


def complete(current: Mapping[str, bytes] | None, ca: Authority, plan: SecretPlan,
             issuer: Issuer = security.issue) -> dict[str, bytes] | None:
    """What a leaf Secret must hold: None if `current` already has ca.pem (this CA's) and every
    identity of the plan. Entries present are kept as they are; only missing ones are issued.
    If `current` was signed by another CA, everything is issued again."""
    data = dict(current or {})
    if data.get(CA_FILE) != ca.cert:
        data = {CA_FILE: ca.cert}
    changed = data != dict(current or {})
    for identity, hosts in plan.identities:
        cert_file, key_file = f"{identity.stem}.pem", f"{identity.stem}.key"
        if data.get(cert_file) and data.get(key_file):
            continue
        data[cert_file], data[key_file] = issuer(ca.cert, ca.key, identity, list(hosts))
        changed = True
    return data if changed else None


def secret(dc: Mapping[str, Any], name: str, component: str | None, data: Mapping[str, bytes]) -> dict[str, Any]:
    """The Secret object (Opaque; keys are file names, so a volume of it is a credentials directory)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": object_meta(dc, name, component),
            "data": {key: base64.b64encode(value).decode() for key, value in sorted(data.items())}}


def decode(obj: Mapping[str, Any] | None) -> dict[str, bytes] | None:
    """A Secret's data as bytes (None for no Secret)."""
    if obj is None:
        return None
    return {key: base64.b64decode(value) for key, value in (obj.get("data") or {}).items()}


def data_patch(current: Mapping[str, bytes] | None, data: Mapping[str, bytes]) -> dict[str, Any]:
    """JSON merge patch turning `current` into `data` (null removes what a reissue drops)."""
    patch: dict[str, Any] = {key: None for key in (current or {}) if key not in data}
    patch.update({key: base64.b64encode(value).decode() for key, value in data.items()
                  if (current or {}).get(key) != value})
    return {"data": patch}


def identities_added(current: Mapping[str, bytes] | None, data: Mapping[str, bytes]) -> list[str]:
    """The certificates in `data` that `current` did not have, by file stem (for events)."""
    return sorted(key[: -len(".pem")] for key in data
                  if key.endswith(".pem") and key != CA_FILE and (current or {}).get(key) != data[key])


def admin_credentials(data: Mapping[str, bytes] | None) -> security.Credentials | None:
    """The operator's own admin identity from its Secret's data (None if incomplete)."""
    identity = Identity(ADMIN)
    files = [CA_FILE, f"{identity.stem}.pem", f"{identity.stem}.key"]
    if data is None or not all(data.get(f) for f in files):
        return None
    ca, cert, key = (data[f] for f in files)
    return security.Credentials(identity, ca, cert, key)


def names(dc: Mapping[str, Any]) -> Iterable[str]:
    """Every Secret the operator makes for this DataClay."""
    name = dc["metadata"]["name"]
    return (api.ca_secret_name(name), *(plan.name for plan in plans(dc)), api.backend_tls_name(name))
