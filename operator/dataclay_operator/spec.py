"""The DataClay spec as typed data: defaults, enums and parsing.

The CRD (crd.py) is generated from the constants here, and the API server applies the same
defaults, so `parse_spec` only has to fill gaps for objects stored before a default existed.
"""
from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final


class Durability(str, enum.Enum):
    """When an acknowledged write is safe: `process` survives kill -9, `machine` also fsyncs."""

    PROCESS = "process"
    MACHINE = "machine"


class RetentionPolicy(str, enum.Enum):
    """StatefulSet persistentVolumeClaimRetentionPolicy values."""

    RETAIN = "Retain"
    DELETE = "Delete"


class UpgradePolicy(str, enum.Enum):
    """What a DataClay without spec.image runs when the operator is upgraded: `Pinned` keeps the
    image it runs (status.image) until spec.image is set; `FollowOperator` rolls to the
    operator's new image (one backend at a time)."""

    PINNED = "Pinned"
    FOLLOW_OPERATOR = "FollowOperator"


PULL_POLICIES: Final = ("Always", "IfNotPresent", "Never")

DEFAULT_REPLICAS: Final = 1
DEFAULT_DURABILITY: Final = Durability.PROCESS
DEFAULT_STORAGE_SIZE: Final = "1Gi"
DEFAULT_METADATA_STORAGE_SIZE: Final = "1Gi"
DEFAULT_MODEL_PATH: Final = "/opt/dataclay/models"
DEFAULT_PULL_POLICY: Final = "IfNotPresent"
DEFAULT_WHEN_DELETED: Final = RetentionPolicy.RETAIN
DEFAULT_WHEN_SCALED: Final = RetentionPolicy.RETAIN
DEFAULT_UPGRADE_POLICY: Final = UpgradePolicy.PINNED
DEFAULT_BACKUP_INTERVAL: Final = "24h"
DEFAULT_BACKUP_KEEP: Final = 7
#: What the metadata service takes as --backup-interval: seconds, or a number with s, m, h or d.
INTERVAL_PATTERN: Final = r"^[0-9]+(\.[0-9]+)?[smhd]?$"
#: A backup file: a plain name in the backup volume (no directories, no "..").
BACKUP_FILE_PATTERN: Final = r"^[A-Za-z0-9][-A-Za-z0-9_.]*$"

#: Kubernetes resource.Quantity, unsigned (sizes and limits are never negative).
QUANTITY_PATTERN: Final = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)))?$"
#: DNS-1123 subdomain (ConfigMap names).
DNS_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

_SUFFIXES: Final = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}


class SpecError(ValueError):
    """A spec value the schema should have rejected (e.g. stored before the schema existed)."""


@dataclass(frozen=True)
class StorageSpec:
    size: str
    storage_class_name: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """Where backends import user classes from: the image itself, or a ConfigMap mounted at path."""

    path: str = DEFAULT_MODEL_PATH
    config_map: str | None = None


@dataclass(frozen=True)
class RetentionSpec:
    when_deleted: RetentionPolicy = DEFAULT_WHEN_DELETED
    when_scaled: RetentionPolicy = DEFAULT_WHEN_SCALED


@dataclass(frozen=True)
class BackupSpec:
    """Online backups of the metadata database into an existing PVC (yours: it outlives the
    DataClay), every `interval`, the newest `keep` kept."""

    claim_name: str
    interval: str = DEFAULT_BACKUP_INTERVAL
    keep: int = DEFAULT_BACKUP_KEEP


@dataclass(frozen=True)
class RestoreSpec:
    """Start the metadata service from backup `file` of PVC `claim_name` (set when the DataClay
    is created); `overwrite` lets it replace a metadata database its volume already holds."""

    claim_name: str
    file: str
    overwrite: bool = False


@dataclass(frozen=True)
class MetadataSpec:
    storage: StorageSpec = StorageSpec(DEFAULT_METADATA_STORAGE_SIZE)
    resources: Mapping[str, Any] = field(default_factory=dict)
    backup: BackupSpec | None = None
    restore_from: RestoreSpec | None = None


@dataclass(frozen=True)
class PodOverlay:
    """What a cluster admin adds to every pod of the DataClay (metadata service and backends):
    scheduling (affinity, tolerations, nodeSelector, priorityClassName), imagePullSecrets, and
    extra labels and annotations (the operator's own labels win over extra ones)."""

    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    affinity: Mapping[str, Any] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    priority_class_name: str | None = None
    image_pull_secrets: tuple[str, ...] = ()


#: Requests of pods whose spec sets no resources (so they are not BestEffort: first evicted).
DEFAULT_BACKEND_RESOURCES: Final = {"requests": {"cpu": "100m", "memory": "256Mi"}}
DEFAULT_METADATA_RESOURCES: Final = {"requests": {"cpu": "50m", "memory": "128Mi"}}


@dataclass(frozen=True)
class DataClaySpec:
    image: str
    replicas: int = DEFAULT_REPLICAS
    image_pull_policy: str = DEFAULT_PULL_POLICY
    durability: Durability = DEFAULT_DURABILITY
    storage: StorageSpec = StorageSpec(DEFAULT_STORAGE_SIZE)
    resources: Mapping[str, Any] = field(default_factory=dict)
    memory_limit: int | None = None
    model: ModelSpec = ModelSpec()
    metadata: MetadataSpec = MetadataSpec()
    pvc_retention: RetentionSpec = RetentionSpec()
    pod: PodOverlay = PodOverlay()
    upgrade_policy: UpgradePolicy = DEFAULT_UPGRADE_POLICY


def parse_quantity(value: str | int) -> Decimal:
    """A Kubernetes quantity ("512Mi", "1G", "1e3", 100) as a number."""
    text = str(value).strip()
    if not re.match(QUANTITY_PATTERN, text):
        raise SpecError(f"not a quantity: {value!r}")
    match = re.match(r"^([0-9.]+)(.*)$", text)
    assert match is not None
    number, suffix = Decimal(match.group(1)), match.group(2)
    if suffix in _SUFFIXES:
        return number * Decimal(_SUFFIXES[suffix])
    return number * Decimal(10) ** int(suffix[1:])  # exponent form: 1e3


def quantity_bytes(value: str | int) -> int:
    """A byte quantity rounded up to whole bytes (what DC_MEMORY_LIMIT takes)."""
    amount = parse_quantity(value)
    whole = int(amount)
    return whole if whole == amount else whole + 1


def _enum(cls: type[enum.Enum], raw: Any, default: enum.Enum, where: str) -> Any:
    if raw is None:
        return default
    try:
        return cls(raw)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in cls)  # type: ignore[attr-defined]
        raise SpecError(f"{where}: {raw!r} is not one of {allowed}") from None


def _storage(raw: Mapping[str, Any] | None, default_size: str, where: str) -> StorageSpec:
    raw = raw or {}
    size = str(raw.get("size") or default_size)
    parse_quantity(size)
    return StorageSpec(size=size, storage_class_name=raw.get("storageClassName") or None)


def _strings(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(isinstance(v, str) for v in raw.values()):
        raise SpecError(f"{where}: a map of strings")
    return dict(raw)


def _pod_overlay(raw: Mapping[str, Any] | None) -> PodOverlay:
    raw = raw or {}
    tolerations = raw.get("tolerations") or []
    secrets = raw.get("imagePullSecrets") or []
    if not isinstance(tolerations, list) or not all(isinstance(t, Mapping) for t in tolerations):
        raise SpecError("spec.pod.tolerations: a list of tolerations")
    if not isinstance(secrets, list) or not all(isinstance(s, Mapping) and s.get("name") for s in secrets):
        raise SpecError("spec.pod.imagePullSecrets: a list of {name: ...}")
    return PodOverlay(
        labels=_strings(raw.get("labels"), "spec.pod.labels"),
        annotations=_strings(raw.get("annotations"), "spec.pod.annotations"),
        node_selector=_strings(raw.get("nodeSelector"), "spec.pod.nodeSelector"),
        affinity=dict(raw.get("affinity") or {}),
        tolerations=tuple(dict(t) for t in tolerations),
        priority_class_name=raw.get("priorityClassName") or None,
        image_pull_secrets=tuple(str(s["name"]) for s in secrets),
    )


def _backup(raw: Mapping[str, Any] | None) -> BackupSpec | None:
    if not raw:
        return None
    claim, interval = raw.get("claimName"), str(raw.get("interval") or DEFAULT_BACKUP_INTERVAL)
    keep = raw.get("keep", DEFAULT_BACKUP_KEEP)
    if not claim or not re.match(DNS_SUBDOMAIN_PATTERN, str(claim)):
        raise SpecError(f"spec.metadata.backup.claimName: {claim!r} is not the name of a PVC")
    if not re.match(INTERVAL_PATTERN, interval):
        raise SpecError(f"spec.metadata.backup.interval: {interval!r} is not an interval (e.g. 30m, 6h, 1d)")
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
        raise SpecError(f"spec.metadata.backup.keep: {keep!r} is not an integer >= 1")
    return BackupSpec(str(claim), interval, keep)


def _restore(raw: Mapping[str, Any] | None) -> RestoreSpec | None:
    if not raw:
        return None
    claim, file = raw.get("claimName"), raw.get("file")
    if not claim or not re.match(DNS_SUBDOMAIN_PATTERN, str(claim)):
        raise SpecError(f"spec.metadata.restoreFrom.claimName: {claim!r} is not the name of a PVC")
    if not file or not re.match(BACKUP_FILE_PATTERN, str(file)) or ".." in str(file):
        raise SpecError(f"spec.metadata.restoreFrom.file: {file!r} is not a file name in the volume "
                        "(e.g. metadata-20260101T000000.000000Z.sqlite)")
    return RestoreSpec(str(claim), str(file), bool(raw.get("overwrite", False)))


def parse_spec(raw: Mapping[str, Any] | None, default_image: str, running_image: str | None = None) -> DataClaySpec:
    """Typed spec with defaults. Without spec.image the image is `running_image` (status.image:
    what the DataClay runs) under the Pinned upgrade policy, else `default_image` (the
    operator's own image): an operator upgrade rolls only the DataClays that follow it."""
    raw = raw or {}
    upgrade_policy = _enum(UpgradePolicy, raw.get("upgradePolicy"), DEFAULT_UPGRADE_POLICY, "spec.upgradePolicy")
    if upgrade_policy is UpgradePolicy.PINNED and running_image:
        default_image = running_image
    replicas = raw.get("replicas", DEFAULT_REPLICAS)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
        raise SpecError(f"spec.replicas: {replicas!r} is not an integer >= 1")
    pull_policy = raw.get("imagePullPolicy") or DEFAULT_PULL_POLICY
    if pull_policy not in PULL_POLICIES:
        raise SpecError(f"spec.imagePullPolicy: {pull_policy!r} is not one of {', '.join(PULL_POLICIES)}")
    memory_limit = raw.get("memoryLimit")
    model = raw.get("model") or {}
    metadata = raw.get("metadata") or {}
    retention = raw.get("pvcRetentionPolicy") or {}
    return DataClaySpec(
        image=raw.get("image") or default_image,
        replicas=replicas,
        image_pull_policy=pull_policy,
        durability=_enum(Durability, raw.get("durability"), DEFAULT_DURABILITY, "spec.durability"),
        storage=_storage(raw.get("storage"), DEFAULT_STORAGE_SIZE, "spec.storage"),
        resources=dict(raw.get("resources") or {}),
        memory_limit=None if memory_limit is None else quantity_bytes(memory_limit),
        model=ModelSpec(path=model.get("path") or DEFAULT_MODEL_PATH, config_map=model.get("configMap") or None),
        metadata=MetadataSpec(
            storage=_storage(metadata.get("storage"), DEFAULT_METADATA_STORAGE_SIZE, "spec.metadata.storage"),
            resources=dict(metadata.get("resources") or {}),
            backup=_backup(metadata.get("backup")),
            restore_from=_restore(metadata.get("restoreFrom")),
        ),
        pvc_retention=RetentionSpec(
            when_deleted=_enum(RetentionPolicy, retention.get("whenDeleted"), DEFAULT_WHEN_DELETED,
                               "spec.pvcRetentionPolicy.whenDeleted"),
            when_scaled=_enum(RetentionPolicy, retention.get("whenScaled"), DEFAULT_WHEN_SCALED,
                              "spec.pvcRetentionPolicy.whenScaled"),
        ),
        pod=_pod_overlay(raw.get("pod")),
        upgrade_policy=upgrade_policy,
    )
