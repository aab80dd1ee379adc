"""Root conftest: only marks each test with its level, by directory. It imports nothing from
grpc, dataclay or dataclay_backend, so `pytest tests/unit` loads only what the tests need.

    tests/unit/...         -> unit         no processes, no network: seconds
    tests/integration/...  -> integration  real local clusters (processes, gRPC on loopback)
    tests/k8s/...          -> k8s          a real kube-apiserver (binaries from scripts/build-k8s-tools.sh)
    tests/image/...        -> image        the project's image, built and run in containers (podman)
    tests/node/...         -> node         a real one-node cluster running that image (scripts/build-node.sh)

The fixtures of each level live in its own conftest.py; tests/models is the test model shared
by all three (each level's conftest puts it on sys.path).
"""
from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
LEVELS = ("unit", "integration", "k8s", "image", "node")


def level_of(path: Path) -> str | None:
    try:
        top = Path(path).resolve().relative_to(TESTS).parts[0]
    except (ValueError, IndexError):
        return None
    return top if top in LEVELS else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        level = level_of(item.path)
        if level is not None:
            item.add_marker(getattr(pytest.mark, level))
