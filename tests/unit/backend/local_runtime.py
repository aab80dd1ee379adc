"""A backend runtime for unit tests: a real store and runtime in-process, no network."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from dataclay_backend.backend_runtime import BackendRuntime
from dataclay_backend.object_store import ObjectStore


@contextlib.contextmanager
def local_runtime(data_dir: Path, lock_timeout: float) -> Iterator[BackendRuntime]:
    """A backend runtime on a real store in data_dir that never asks the metadata service
    (its address is a closed port): for the decisions a backend takes locally."""
    store = ObjectStore(data_dir)
    runtime = BackendRuntime("127.0.0.1:1", store, "backend-t", 1 << 30, lock_timeout=lock_timeout)
    try:
        yield runtime
    finally:
        runtime.close()
        store.close()
