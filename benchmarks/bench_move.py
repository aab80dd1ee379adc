"""Recursive move of Company graphs (10 to 100,000 employees) against the floor measured in the
same run: a bare grpcio round trip, pickling the same states, one fsync. Each graph's moves
start once its registration in the directory (done in the background after make_persistent)
is complete, so they time the move alone. Also the peak memory of source and destination
during each graph's first move (backends run with a 64 MiB object-memory limit, so what a
move holds is bounded by its chunks, not the graph), and a drain of 10,000 objects. Prints JSON.

    python benchmarks/bench_move.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE), str(HERE / "models")]

from bench_model import Company, Employee  # noqa: E402
from common import (  # noqa: E402
    fsync_seconds, latency, peak_rss_mib, pickle_seconds, reset_peak_rss, rss_mib, settle_registrations, timed,
)
from floor import Floor  # noqa: E402

from dataclay import Client  # noqa: E402
from dataclay.admin import drain_backends  # noqa: E402
from dataclay_backend.cluster import LocalCluster  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="skip the 100,000-employee graph")
    args = parser.parse_args()
    sizes = [10, 100, 1000] if args.quick else [10, 100, 1000, 100_000]
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp, Floor() as floor, \
            LocalCluster(Path(tmp), backends=3, port=0, model_paths=[HERE / "models"], memory_limit="64Mi") as cluster, \
            Client(host="127.0.0.1", port=cluster.port, credentials=cluster.client_credentials()) as client:
        ids = list(client.get_backends())
        results["floor"] = {
            "round_trip_p50_ms": latency(floor.round_trip, 2000)["p50_ms"],
            "fsync_ms": round(fsync_seconds() * 1e3, 3),
        }
        pids = {name: process.popen.pid for name, process in cluster.backends.items()}
        for size in sizes:
            employees = [Employee(f"E{i}", float(i)) for i in range(size)]
            states = [{"name": e.name, "salary": e.salary} for e in employees]
            company = Company("Big", employees)
            company.make_persistent(backend_id=ids[0])
            registered_s = settle_registrations(client)  # the moves below are timed alone
            rss_before = {name: rss_mib(pid) for name, pid in pids.items()}
            for pid in pids.values():
                reset_peak_rss(pid)  # the peak below is the first move's, not the make_persistent's before it
            repeats = 1 if size >= 100_000 else 5
            seconds = []
            for run in range(repeats * 2):  # back and forth between two backends
                target = ids[1] if run % 2 == 0 else ids[0]
                result = company.move(target, recursive=True)
                assert result.objects == size + 1
                seconds.append(result.seconds)
                if run == 0:  # source backend-0, destination backend-1
                    peak = {name: peak_rss_mib(pid) for name, pid in pids.items()}
            median = statistics.median(seconds)
            results[f"move_{size}"] = {
                "objects": size + 1,
                "ms_per_move": round(median * 1e3, 2),
                "objects_per_s": round((size + 1) / median),
                "floor_pickle_ms": round(pickle_seconds(states) * 1e3, 2),
                "move_vs_floor_round_trips": round(median * 1e3 / results["floor"]["round_trip_p50_ms"], 1),
                "registration_after_make_persistent_s": round(registered_s, 3),
                "rss_before_mib": rss_before,
                "first_move_peak_rss_mib": peak,
                "first_move_peak_growth_mib": {"source": round(peak["backend-0"] - rss_before["backend-0"], 1),
                                               "destination": round(peak["backend-1"] - rss_before["backend-1"], 1)},
            }
        drain_objects = [Company(f"D{i}", [Employee(f"DE{i}", 1.0)]) for i in range(5000)]
        for company in drain_objects:
            company.make_persistent(backend_id=ids[2])
        seconds = timed(lambda: drain_backends("127.0.0.1", cluster.port, ["backend-2"], credentials=cluster.credentials_dir))
        results["drain_10000"] = {"objects": 10_000, "seconds": round(seconds, 2), "objects_per_s": round(10_000 / seconds)}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
