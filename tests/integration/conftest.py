"""Fixtures for tests against real local clusters (real processes, real gRPC on loopback)."""
from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

from dataclay import Client
from dataclay_backend.cluster import LocalCluster

TESTS = Path(__file__).resolve().parents[1]
MODELS = TESTS / "models"  # on the backends' model path and the client's import path
CLIENT_ONLY = Path(__file__).resolve().parent / "client_only"  # importable by the client only
sys.path[:0] = [str(MODELS), str(CLIENT_ONLY)]

# Secure by default, as `dataclay up`: one credentials directory for every cluster of this run
# (LocalCluster makes it), found by clients, servers and `dataclay` commands through
# DC_CREDENTIALS, which each integration test sees (and only they: tests/k8s runs its data plane
# --insecure, as the chart does until the operator hands out credentials).
CREDENTIALS = Path(tempfile.mkdtemp(prefix="dataclay-test-credentials-"))
atexit.register(shutil.rmtree, CREDENTIALS, True)


@pytest.fixture(autouse=True)
def credentials_for_this_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DC_CREDENTIALS", str(CREDENTIALS))
    monkeypatch.delenv("DC_INSECURE", raising=False)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One shared cluster of 3 backends for tests that do not kill or restart anything."""
    with LocalCluster(tmp_path_factory.mktemp("cluster"), backends=3, port=0, model_paths=[MODELS],
                      credentials=CREDENTIALS) as running:
        yield running


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(host="127.0.0.1", port=cluster.port) as connected:
        yield connected


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., LocalCluster]]:
    """A private cluster per test, for tests that kill, restart or reconfigure processes."""
    started: list[LocalCluster] = []

    def make(backends: int = 2, data_dir: Path | None = None, **options) -> LocalCluster:
        options.setdefault("credentials", CREDENTIALS)
        running = LocalCluster(data_dir or tmp_path / f"cluster{len(started)}", backends=backends, port=0,
                               model_paths=[MODELS], **options).start()
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()
