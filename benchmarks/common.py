"""Timing helpers shared by the benchmarks, and the floors they are compared with."""
from __future__ import annotations

import os
import pickle
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


def latency(call: Callable[[], object], repeat: int, warmup: int = 100) -> dict[str, float]:
    """p50 / p99 of one call, in milliseconds."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples) * 1e3, 4),
        "p99_ms": round(samples[max(int(len(samples) * 0.99) - 1, 0)] * 1e3, 4),
    }


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def best_seconds(run: Callable[[], float], repeat: int) -> float:
    return min(run() for _ in range(repeat))


def pickle_seconds(states: list[dict[str, Any]]) -> float:
    """Floor for moving objects: pickling their states, nothing else."""
    return best_seconds(lambda: timed(lambda: [pickle.dumps(s, protocol=5) for s in states]), 3)


def new_file_seconds(folder: Path, data: bytes) -> float:
    """Floor for storing a large new state: writing it to a new file (not fsynced) in `folder`,
    which keeps it (as a backend keeps a new object's state file: deleting it would free page
    cache for the next one, which is faster to write than memory the kernel touches first)."""
    handle, _ = tempfile.mkstemp(dir=folder, prefix="new-file-floor-")
    with os.fdopen(handle, "wb") as file:
        return timed(lambda: (file.write(data), file.flush()))


def fsync_seconds() -> float:
    """Floor for a durable commit: one small write and one fsync."""
    with tempfile.NamedTemporaryFile() as file:
        def once() -> float:
            file.write(b"x" * 4096)
            file.flush()
            return timed(lambda: os.fsync(file.fileno()))
        return statistics.median(once() for _ in range(20))


def _status_mib(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MiB."""
    return _status_mib(pid, "VmHWM")


def rss_mib(pid: int) -> float:
    return _status_mib(pid, "VmRSS")


def reset_peak_rss(pid: int) -> None:
    """Start the process's peak resident memory (VmHWM) again from its current size (Linux:
    clear_refs "5"), so that a peak read later is the peak of what ran in between."""
    with open(f"/proc/{pid}/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def settle_registrations(client: Any) -> float:
    """Wait until every backend has registered in the directory the objects it stored (a backend
    registers them in the background just after each store's reply), so that what is timed next
    is not racing a graph's own registration; the seconds it took."""
    from dataclay.protocol import dataclay_pb2 as pb
    from dataclay.transport import run_blocking

    started = time.perf_counter()
    for info in client.get_backends().values():
        run_blocking(client.runtime.blocking.backend(info, "FlushRegistrations", pb.FlushRegistrationsRequest()))
    return time.perf_counter() - started
