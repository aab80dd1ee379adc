"""new_version + modify + consolidate_version cycles against the floor measured in the same run
(a bare grpcio round trip), for one Employee and for a Company of 100 employees, recursive and
not. Prints JSON.

    python benchmarks/bench_versions.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE), str(HERE / "models")]

from bench_model import Company, Employee  # noqa: E402
from common import latency  # noqa: E402
from floor import Floor  # noqa: E402

from dataclay import Client  # noqa: E402
from dataclay_backend.cluster import LocalCluster  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeat = 100 if args.quick else 500
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp, Floor() as floor, \
            LocalCluster(Path(tmp), backends=2, port=0, model_paths=[HERE / "models"]) as cluster, \
            Client(host="127.0.0.1", port=cluster.port, credentials=cluster.client_credentials()) as client:
        ids = list(client.get_backends())
        floor_p50 = latency(floor.round_trip, 2000)["p50_ms"]
        results["floor_round_trip_p50_ms"] = floor_p50

        employee = Employee("V", 1.0)
        employee.make_persistent(backend_id=ids[0])

        def employee_cycle() -> None:
            version = employee.new_version()
            version.salary = 2.0
            version.consolidate_version()

        def employee_cycle_no_modify() -> None:
            employee.new_version().consolidate_version()

        company = Company("C", [Employee(f"E{i}", float(i)) for i in range(100)])
        company.make_persistent(backend_id=ids[0])

        def company_cycle(recursive: bool):
            def cycle() -> None:
                version = company.new_version(recursive=recursive)
                version.name = "C2"
                version.consolidate_version()
            return cycle

        def remote_cycle() -> None:
            version = employee.new_version(backend_id=ids[1])
            version.salary = 3.0
            version.consolidate_version()

        for name, cycle, count in [
            ("employee_new_modify_consolidate", employee_cycle, repeat),
            ("employee_new_consolidate", employee_cycle_no_modify, repeat),
            ("employee_version_on_other_backend", remote_cycle, repeat // 2),
            ("company_100_shared", company_cycle(False), repeat // 2),
            ("company_100_recursive", company_cycle(True), max(repeat // 10, 10)),
        ]:
            figures = latency(cycle, count, warmup=10)
            figures["p50_in_floor_round_trips"] = round(figures["p50_ms"] / floor_p50, 1)
            results[name] = figures
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
