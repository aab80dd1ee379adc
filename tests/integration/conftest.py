"""Fixtures for tests against real local clusters (real processes, real gRPC on loopback)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from dataclay import Client
from dataclay_backend.cluster import LocalCluster

TESTS = Path(__file__).resolve().parents[1]
MODELS = TESTS / "models"  # on the backends' model path and the client's import path
CLIENT_ONLY = Path(__file__).resolve().parent / "client_only"  # importable by the client only
sys.path[:0] = [str(MODELS), str(CLIENT_ONLY)]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One shared cluster of 3 backends for tests that do not kill or restart anything."""
    with LocalCluster(tmp_path_factory.mktemp("cluster"), backends=3, port=0, model_paths=[MODELS]) as running:
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
        running = LocalCluster(data_dir or tmp_path / f"cluster{len(started)}", backends=backends, port=0,
                               model_paths=[MODELS], **options).start()
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()
