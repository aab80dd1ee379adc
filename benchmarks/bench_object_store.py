"""Object store speed against the floor measured in the same run. Prints JSON.

    python benchmarks/bench_object_store.py [--quick]

Runs a local cluster of 3 backends (separate processes, loopback), like `dataclay up`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE), str(HERE / "models")]

from bench_model import Blob, Company, Employee  # noqa: E402
from common import best_seconds, latency, new_file_seconds, timed  # noqa: E402
from floor import Floor  # noqa: E402

from dataclay import Client  # noqa: E402
from dataclay_backend.cluster import LocalCluster  # noqa: E402

MiB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer samples, no 1 GiB check")
    args = parser.parse_args()
    repeat = 1000 if args.quick else 5000
    results: dict[str, object] = {}

    with tempfile.TemporaryDirectory() as tmp, Floor() as floor, \
            LocalCluster(Path(tmp), backends=3, port=0, model_paths=[HERE / "models"]) as cluster, \
            Floor(cluster.credentials_dir) as tls_floor, \
            Client(host="127.0.0.1", port=cluster.port, credentials=cluster.client_credentials()) as client:
        backend_ids = list(client.get_backends())
        target = backend_ids[0]
        results["floor_round_trip"] = floor_rt = latency(floor.round_trip, repeat)

        employee = Employee("Bench", 1.0)
        employee.make_persistent(alias="bench", backend_id=target)
        results["attribute_read"] = latency(lambda: employee.salary, repeat)
        results["attribute_write"] = latency(lambda: setattr(employee, "salary", 2.0), repeat)
        results["active_method_read_only"] = latency(employee.get_salary, repeat)
        results["active_method_mutating"] = latency(lambda: employee.raise_salary(1.0), repeat)
        results["active_method_creating_an_object"] = latency(lambda: employee.hire("New"), repeat)
        results["get_by_alias"] = latency(lambda: Employee.get_by_alias("bench"), repeat)

        singles = [Employee(f"S{i}", float(i)) for i in range(2000)]
        seconds = timed(lambda: [e.make_persistent(backend_id=target) for e in singles])
        results["make_persistent_single"] = {"objects": 2000, "seconds": round(seconds, 3),
                                             "objects_per_s": round(2000 / seconds)}
        fresh_ones = iter([Employee(f"L{i}", float(i)) for i in range(repeat + 100)])
        results["make_persistent_latency"] = latency(lambda: next(fresh_ones).make_persistent(backend_id=target),
                                                     repeat)

        async def concurrent(objects: list) -> None:
            await asyncio.gather(*(e.a_make_persistent(backend_id=target) for e in objects))

        many = [Employee(f"A{i}", float(i)) for i in range(2000)]
        seconds = timed(lambda: asyncio.run(concurrent(many)))
        results["a_make_persistent_concurrent"] = {
            "objects": 2000, "seconds": round(seconds, 3), "objects_per_s": round(2000 / seconds),
            "vs_sequential": round(2000 / seconds / results["make_persistent_single"]["objects_per_s"], 2)}

        def graph_once() -> float:
            company = Company("Big", [Employee(f"G{i}", float(i)) for i in range(1000)])
            return timed(lambda: company.make_persistent(backend_id=target))

        seconds = best_seconds(graph_once, 5)
        results["make_persistent_graph_1001"] = {"objects": 1001, "seconds": round(seconds, 4),
                                                 "objects_per_s": round(1001 / seconds),
                                                 "round_trips": "1 client->backend + 1 backend->metadata"}

        payload = bytes(64 * MiB)
        blob = Blob()
        blob.make_persistent(backend_id=target)
        write_s = best_seconds(lambda: timed(lambda: setattr(blob, "data", payload)), 3)
        read_s = best_seconds(lambda: timed(lambda: blob.data), 3)
        floor_up = best_seconds(lambda: floor.upload_seconds(payload), 3)
        floor_down = best_seconds(lambda: floor.download_seconds(64 * MiB), 3)
        results["bytes_64MiB"] = {
            "write_MBps": round(64 * MiB / write_s / 1e6), "read_MBps": round(64 * MiB / read_s / 1e6),
            "floor_upload_MBps": round(64 * MiB / floor_up / 1e6), "floor_download_MBps": round(64 * MiB / floor_down / 1e6),
            "write_vs_floor": round(floor_up / write_s, 2), "read_vs_floor": round(floor_down / read_s, 2),
        }
        for size, samples in ((1 * MiB, 10), (64 * MiB, 3)):
            value = bytes(size)

            def make_persistent_once() -> float:
                fresh = Blob()
                fresh.data = value  # not persistent yet: a plain assignment
                return timed(lambda: fresh.make_persistent(backend_id=target))

            seconds = best_seconds(make_persistent_once, samples)
            floor_s = best_seconds(lambda: floor.upload_seconds(value), samples)
            tls_s = best_seconds(lambda: tls_floor.upload_seconds(value), samples)
            new_file_s = best_seconds(lambda: new_file_seconds(Path(tmp), value), samples)
            results[f"make_persistent_bytes_{size // MiB}MiB"] = {
                "MBps": round(size / seconds / 1e6), "floor_upload_MBps": round(size / floor_s / 1e6),
                "vs_floor": round(floor_s / seconds, 2),
                "floor_tls_upload_MBps": round(size / tls_s / 1e6), "vs_tls_floor": round(tls_s / seconds, 2),
                # a new object's state is a new file: the same bytes written to a new file beside
                # the backend's, measured here (on a VM the kernel's first touch of page-cache
                # memory can cost more than the transfer)
                "new_file_MBps": round(size / new_file_s / 1e6),
                "vs_tls_floor_plus_new_file": round((tls_s + new_file_s) / seconds, 2)}
        if not args.quick:
            big = bytes(1024 * MiB)
            seconds = timed(lambda: setattr(blob, "data", big))
            ok = len(blob.data) == len(big)
            results["bytes_1GiB"] = {"write_s": round(seconds, 2), "read_back_ok": ok}
            del big

    base = floor_rt["p50_ms"]
    results["ratios_vs_floor_p50"] = {
        name: round(results[name]["p50_ms"] / base, 2)  # type: ignore[index]
        for name in ("attribute_read", "attribute_write", "active_method_read_only", "active_method_mutating",
                     "active_method_creating_an_object", "get_by_alias",
                     "make_persistent_latency")
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
