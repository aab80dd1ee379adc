"""The Kubernetes example's model and client script, run as they are against real backend
processes (what the pods would run, minus the pods)."""
import subprocess
import sys
from pathlib import Path

import yaml

from dataclay_backend.cluster import LocalCluster

EXAMPLES = Path(__file__).parents[2] / "examples"


def _config_map(path: Path, name: str) -> dict[str, str]:
    for document in yaml.safe_load_all(path.read_text()):
        if document and document.get("kind") == "ConfigMap" and document["metadata"]["name"] == name:
            return document["data"]
    raise AssertionError(f"no ConfigMap {name} in {path}")


def test_example_client_script_runs_against_a_cluster(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for filename, source in _config_map(EXAMPLES / "dataclay.yaml", "company-model").items():
        (models / filename).write_text(source)
    script = tmp_path / "client.py"
    script.write_text(_config_map(EXAMPLES / "client-pod.yaml", "dataclay-client-script")["client.py"])
    with LocalCluster(tmp_path / "data", backends=3, port=0, model_paths=[models]) as cluster:
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=120,
            env={"DC_HOST": "127.0.0.1", "DC_PORT": str(cluster.port), "PYTHONPATH": str(models),
                 "PATH": "/usr/bin:/bin",
                 **({"DC_CREDENTIALS": str(cluster.credentials_dir)} if cluster.credentials_dir else {})},
        )
    assert done.returncode == 0, done.stderr
    assert "after consolidate: 1110.0" in done.stdout
