"""Backups of the metadata service through the operator, against the real API server and
controller manager: the schema of spec.metadata.backup / restoreFrom, the metadata StatefulSet
the operator builds from them, status.backup read from a real metadata service, and a DataClay
deleted and created again from its backup with every object (the data plane runs as local
processes, with the flags and volumes the pod would get: there is no kubelet here)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from dataclay_operator import api, children

from .conftest import KubeCluster, wait_until
from .test_operator import (ADMIN, Cluster, cluster, credentials_from_the_ca_secret, crd,  # noqa: F401
                            pod_named_cluster, running_operator)

BACKUP = {"claimName": "keep-backups", "interval": "1h", "keep": 3}


@pytest.mark.parametrize("name, metadata, expected", [
    ("interval", {"backup": {"claimName": "b", "interval": "soon"}}, "spec.metadata.backup.interval"),
    ("keep", {"backup": {"claimName": "b", "keep": 0}}, "spec.metadata.backup.keep"),
    ("claim", {"backup": {"interval": "1h"}}, "spec.metadata.backup.claimName"),
    ("file", {"restoreFrom": {"claimName": "b", "file": "../metadata.sqlite"}}, "spec.metadata.restoreFrom.file"),
    ("nofile", {"restoreFrom": {"claimName": "b"}}, "spec.metadata.restoreFrom.file"),
])
def test_invalid_backup_settings_are_rejected_by_the_server(cluster: Cluster, name: str, metadata: dict[str, Any],
                                                            expected: str) -> None:
    with pytest.raises(ApiException) as info:
        cluster.create(name, {"metadata": metadata})
    assert info.value.status == 422 and expected in json.loads(info.value.body)["message"]


def test_restore_from_is_set_at_creation_only(cluster: Cluster) -> None:
    created = cluster.create("later", {"metadata": {"backup": {"claimName": "b"}}})
    assert created["spec"]["metadata"]["backup"] == {"claimName": "b", "interval": "24h", "keep": 7}  # defaults
    restore = {"claimName": "b", "file": "metadata-1.sqlite"}
    with pytest.raises(ApiException) as info:
        cluster.patch_spec("later", {"metadata": {"restoreFrom": restore}})
    assert info.value.status == 422 and "restoreFrom is set when the DataClay is created" in info.value.body
    cluster.create("restored", {"metadata": {"restoreFrom": restore}})
    assert cluster.dc("restored")["spec"]["metadata"]["restoreFrom"]["overwrite"] is False
    for change in ({"restoreFrom": {**restore, "file": "metadata-2.sqlite"}}, {"restoreFrom": None}):
        with pytest.raises(ApiException) as info:
            cluster.patch_spec("restored", {"metadata": change})
        assert info.value.status == 422, change
    cluster.patch_spec("restored", {"metadata": {"backup": {"claimName": "b"}}})  # the rest may change


def metadata_flags(sts: dict[str, Any], volumes: dict[str, Path]) -> list[str]:
    """The metadata service's backup and restore flags from the env the operator gives its pod,
    with the pod's mount paths (claim name -> local folder) mapped to local folders."""
    pod = sts["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    mounts = {m["mountPath"]: volumes[claims[m["name"]]] for m in container["volumeMounts"] if m["name"] in claims}

    def local(path: str) -> str:
        mount = next(m for m in mounts if path.startswith(m + "/") or path == m)
        return str(mounts[mount]) + path[len(mount):]

    flags = []
    if "DC_METADATA_BACKUP_DIR" in env:
        flags += ["--backup-dir", local(env["DC_METADATA_BACKUP_DIR"]), "--backup-interval",
                  env["DC_METADATA_BACKUP_INTERVAL"], "--backup-keep", env["DC_METADATA_BACKUP_KEEP"]]
    if "DC_METADATA_RESTORE_FROM" in env:
        flags += ["--restore-from", local(env["DC_METADATA_RESTORE_FROM"])]
    if env.get("DC_METADATA_RESTORE_OVERWRITE") == "1":
        flags.append("--restore-overwrite")
    return flags


def test_a_backup_shows_in_status_and_a_dataclay_created_again_from_it_has_every_object(
        kube_cluster: KubeCluster, cluster: Cluster, tmp_path: Path) -> None:
    from dataclay import Client
    from dataclay.admin import backup
    from dataclay.protocol import dataclay_pb2 as pb
    from dataclay.protocol import dataclay_pb2_grpc as rpc
    from dataclay.security import open_channel
    from hr import Employee  # tests/models, on the path via tests/k8s/conftest.py

    volumes = {BACKUP["claimName"]: tmp_path / "pvc-keep-backups"}  # the backup PVC, as the pod would mount it
    cluster.create("keep", {"replicas": 2, "metadata": {"backup": BACKUP}})
    with running_operator(kube_cluster, cluster.ns, tmp_path) as first:  # makes the CA and the StatefulSets
        sts = first.until(lambda: cluster.sts("keep-metadata"), "the metadata StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    assert {"name": children.BACKUP_VOLUME, "persistentVolumeClaim": {"claimName": "keep-backups"}} in pod["volumes"]
    credentials_from_the_ca_secret(cluster, "keep", tmp_path / "credentials")
    dataplane = pod_named_cluster(tmp_path / "dataplane", "keep", backends=2, credentials=tmp_path / "credentials")
    dataplane.metadata_args = metadata_flags(sts, volumes)
    assert dataplane.metadata_args[:2] == ["--backup-dir", str(volumes["keep-backups"])]
    with dataplane:
        ADMIN[dataplane.port] = admin = dataplane.client_credentials("admin")
        port = dataplane.port
        with Client(host="127.0.0.1", port=port, credentials=dataplane.client_credentials()) as writer:
            ids = list(writer.get_backends())
            before = {}
            for index in range(20):
                employee = Employee(f"before-{index}", float(index))
                employee.make_persistent(backend_id=ids[index % 2], alias=f"keep-{index}")
                before[employee.id] = employee.name
            taken = backup("127.0.0.1", port, credentials=admin)  # what `dataclay backup` does
            env = {"DC_OPERATOR_DATAPLANE_HOST": "127.0.0.1", "DC_OPERATOR_DATAPLANE_PORT": str(port)}
            with running_operator(kube_cluster, cluster.ns, tmp_path, **env) as op:
                wait_until(lambda: cluster.ready("keep", api.COMPONENT_METADATA), 60, "the metadata pod, to mark ready")
                shown = op.until(lambda: ((cluster.dc("keep") or {}).get("status") or {}).get("backup"),
                                 "status.backup")
                assert shown["lastFile"] == Path(taken.path).name and shown["objects"] == 20
                assert shown["aliases"] == 20 and shown["sizeBytes"] == taken.size and shown["lastTime"]
            after = {}
            for index in range(10):  # created after the backup; some moved too
                employee = Employee(f"after-{index}", 100.0 + index)
                employee.make_persistent(backend_id=ids[index % 2])
                after[employee.id] = employee.name
                if index < 3:
                    employee.move(ids[(index + 1) % 2])
            for object_id in list(before)[:4]:  # moved after the backup
                employee = Employee.get_by_id(object_id)
                employee.move(ids[(ids.index(next(iter(employee.backends))) + 1) % 2])
        dataplane.stop_process(dataplane.metadata, kill=True)  # the metadata service and its volume are lost
        shutil.rmtree(dataplane.data_dir / "metadata")

    # The DataClay is deleted and created again under the same name, from the backup: its backends'
    # volumes are kept (whenDeleted: Retain, the default), the metadata service starts from the file.
    cluster.delete("keep")
    wait_until(lambda: cluster.sts("keep-metadata") is None and cluster.dc("keep") is None, 60, "the cascade")
    restore = {"claimName": BACKUP["claimName"], "file": shown["lastFile"]}
    cluster.create("keep", {"replicas": 2, "metadata": {"backup": BACKUP, "restoreFrom": restore}})
    with running_operator(kube_cluster, cluster.ns, tmp_path) as op:
        sts = op.until(lambda: cluster.sts("keep-metadata"), "the new metadata StatefulSet")
    credentials_from_the_ca_secret(cluster, "keep", tmp_path / "credentials-2")  # a new DataClay, a new CA
    flags = metadata_flags(sts, volumes)
    assert flags[-2:] == ["--restore-from", str(volumes["keep-backups"] / shown["lastFile"])]
    again = pod_named_cluster(tmp_path / "dataplane", "keep", backends=2, credentials=tmp_path / "credentials-2")
    again.metadata_args, again.port = flags, port  # the Service's address does not change
    with again:
        with open_channel(f"127.0.0.1:{port}", again.client_credentials("admin")) as channel:
            assert not rpc.MetadataStub(channel).ListBackends(pb.Empty(), timeout=10).restored  # reconciled
        with Client(host="127.0.0.1", port=port, credentials=again.client_credentials()):
            for object_id, name in {**before, **after}.items():
                assert Employee.get_by_id(object_id).name == name
            for index in range(20):
                assert Employee.get_by_alias(f"keep-{index}").name == f"before-{index}"
        ADMIN[port] = again.client_credentials("admin")
        env = {"DC_OPERATOR_DATAPLANE_HOST": "127.0.0.1", "DC_OPERATOR_DATAPLANE_PORT": str(port)}
        with running_operator(kube_cluster, cluster.ns, tmp_path, **env) as op:
            wait_until(lambda: cluster.ready("keep", api.COMPONENT_METADATA), 60, "the metadata pod, to mark ready")
            shown = op.until(lambda: ((cluster.dc("keep") or {}).get("status") or {}).get("backup"), "status.backup")
            assert shown["lastFile"] == restore["file"]  # the volume's newest backup: the one restored from
