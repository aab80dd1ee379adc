"""spec.metadata.backup and spec.metadata.restoreFrom: parsed, built into the metadata
StatefulSet as data (volumes, mounts, env the metadata service reads), and status.backup as the
metadata service reports it (the data-plane call injected; a fake API server, no network)."""
from datetime import datetime, timezone
from typing import Any

import pytest

from dataclay_operator import api, children
from dataclay_operator.config import OperatorConfig
from dataclay_operator.events import EventRecorder
from dataclay_operator.reconcile import Reconciler, dataclay_path
from dataclay_operator.spec import BackupSpec, RestoreSpec, SpecError, parse_spec
from dataclay_operator.status import BackupState, backup_entry
from fake_kube import FakeKube

DC: dict[str, Any] = {"apiVersion": api.API_VERSION, "kind": api.KIND,
                      "metadata": {"name": "store", "namespace": "apps", "uid": "0000-uid", "generation": 1},
                      "spec": {}}


def metadata_pod(**metadata: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The metadata StatefulSet's pod spec, its container and that container's env."""
    sts = children.metadata_statefulset(DC, parse_spec({"metadata": metadata}, default_image="dataclay:test"))
    pod = sts["spec"]["template"]["spec"]
    [container] = pod["containers"]
    return pod, container, {e["name"]: e.get("value") for e in container["env"]}


def test_backup_and_restore_parse_with_defaults_and_refuse_nonsense():
    parsed = parse_spec({"metadata": {"backup": {"claimName": "store-backups"},
                                      "restoreFrom": {"claimName": "old", "file": "metadata-x.sqlite"}}}, "img")
    assert parsed.metadata.backup == BackupSpec("store-backups", "24h", 7)
    assert parsed.metadata.restore_from == RestoreSpec("old", "metadata-x.sqlite", False)
    assert parse_spec({}, "img").metadata.backup is None
    for metadata, where in [({"backup": {"claimName": "x", "interval": "soon"}}, "interval"),
                            ({"backup": {"claimName": "x", "keep": 0}}, "keep"),
                            ({"backup": {"interval": "1h"}}, "backup.claimName"),
                            ({"restoreFrom": {"claimName": "x", "file": "../etc/passwd"}}, "restoreFrom.file"),
                            ({"restoreFrom": {"claimName": "x", "file": "a/b.sqlite"}}, "restoreFrom.file"),
                            ({"restoreFrom": {"file": "b.sqlite"}}, "restoreFrom.claimName")]:
        with pytest.raises(SpecError, match=where):
            parse_spec({"metadata": metadata}, "img")


def test_without_backup_the_metadata_pod_has_no_backup_volume_or_settings():
    pod, container, env = metadata_pod()
    assert not any(key.startswith("DC_METADATA_BACKUP") or key.startswith("DC_METADATA_RESTORE") for key in env)
    assert {v["name"] for v in pod["volumes"]} == {children.TMP_VOLUME, children.CREDENTIALS_VOLUME}


def test_backups_mount_their_claim_and_tell_the_metadata_service_where_and_how_often():
    pod, container, env = metadata_pod(backup={"claimName": "store-backups", "interval": "6h", "keep": 3})
    assert (env["DC_METADATA_BACKUP_DIR"], env["DC_METADATA_BACKUP_INTERVAL"], env["DC_METADATA_BACKUP_KEEP"]) == (
        api.BACKUP_DIR, "6h", "3")
    assert {"name": children.BACKUP_VOLUME, "persistentVolumeClaim": {"claimName": "store-backups"}} in pod["volumes"]
    assert {"name": children.BACKUP_VOLUME, "mountPath": api.BACKUP_DIR} in container["volumeMounts"]
    assert "DC_METADATA_RESTORE_FROM" not in env


def test_a_restore_reads_its_claim_read_only_or_the_backup_volume_when_it_is_the_same():
    pod, container, env = metadata_pod(restoreFrom={"claimName": "old-backups", "file": "metadata-1.sqlite"})
    assert env["DC_METADATA_RESTORE_FROM"] == f"{api.RESTORE_DIR}/metadata-1.sqlite"
    assert "DC_METADATA_RESTORE_OVERWRITE" not in env
    assert {"name": children.RESTORE_VOLUME,
            "persistentVolumeClaim": {"claimName": "old-backups", "readOnly": True}} in pod["volumes"]
    assert {"name": children.RESTORE_VOLUME, "mountPath": api.RESTORE_DIR, "readOnly": True} in container["volumeMounts"]

    pod, container, env = metadata_pod(backup={"claimName": "backups"},
                                       restoreFrom={"claimName": "backups", "file": "metadata-1.sqlite",
                                                    "overwrite": True})
    assert env["DC_METADATA_RESTORE_FROM"] == f"{api.BACKUP_DIR}/metadata-1.sqlite"
    assert env["DC_METADATA_RESTORE_OVERWRITE"] == "1"
    assert [v["name"] for v in pod["volumes"]].count(children.BACKUP_VOLUME) == 1
    assert children.RESTORE_VOLUME not in [v["name"] for v in pod["volumes"]]


def test_status_backup_says_the_newest_backup_or_why_the_last_failed():
    assert backup_entry(BackupState()) == {}
    assert backup_entry(BackupState(error="disk full")) == {"error": "disk full"}
    assert backup_entry(BackupState("metadata-1.sqlite", "2026-01-01T00:00:00Z", 4096, 10, 2)) == {
        "lastFile": "metadata-1.sqlite", "lastTime": "2026-01-01T00:00:00Z", "sizeBytes": 4096, "objects": 10,
        "aliases": 2}


def test_the_reconciler_reports_the_last_backup_only_with_backups_and_a_ready_metadata_service():
    kube = FakeKube()
    asked: list[tuple[str, int]] = []
    answer = BackupState("metadata-2.sqlite", "2026-01-01T00:00:00Z", 8192, 5, 1)

    def last_backup(host: str, port: int, credentials: Any = None) -> BackupState:
        asked.append((host, port))
        return answer

    reconciler = Reconciler(kube=kube, config=OperatorConfig(default_image="img", resync_seconds=60.0),
                            events=EventRecorder(kube), last_backup=last_backup,
                            now=lambda: datetime(2026, 1, 1, tzinfo=timezone.utc))
    kube.create(dataclay_path("ns"), {"apiVersion": api.API_VERSION, "kind": api.KIND,
                                      "metadata": {"name": "store", "namespace": "ns"},
                                      "spec": {"metadata": {"backup": {"claimName": "b"}}}})
    reconciler.reconcile("ns", "store")
    assert asked == [] and "backup" not in kube.get_object(dataclay_path("ns", "store"))["status"]  # not ready yet
    kube.add_pod("ns", f"{api.metadata_name('store')}-0", api.selector_labels("store", api.COMPONENT_METADATA))
    reconciler.reconcile("ns", "store")
    assert asked == [(api.metadata_host("store", "ns"), api.METADATA_PORT)]
    assert kube.get_object(dataclay_path("ns", "store"))["status"]["backup"] == backup_entry(answer)
    reconciler.reconcile("ns", "store")
    assert len(asked) == 1  # asked at most every BACKUP_STATUS_INTERVAL; the last answer is kept meanwhile
    assert kube.get_object(dataclay_path("ns", "store"))["status"]["backup"]["lastFile"] == "metadata-2.sqlite"
    kube.merge_patch(dataclay_path("ns", "store"), {"spec": {"metadata": {"backup": None}}})
    reconciler.reconcile("ns", "store")
    assert "backup" not in kube.get_object(dataclay_path("ns", "store"))["status"]
