"""TLS + authentication against --insecure and against both floors, side by side in one run.
Prints JSON.

    python benchmarks/bench_security.py [--quick]

Two local clusters of 2 backends (separate processes, loopback), one secure (mutual TLS, the
role check on every call) and one --insecure, and two bare grpcio echo servers: plain text and
mutual TLS with the secure cluster's certificates (benchmarks/floor.py). In alternating rounds
(the order of the four flips every round): the floors' round trip, attribute read, read-only and
mutating active method p50 on each cluster, and a recursive move of a Company of 1,000 employees
back and forth between the backends. Each figure is the median of its rounds' values; the ratios
are of those medians, beside the targets of issue 10 (Speed).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE), str(HERE / "models")]

from bench_model import Company, Employee  # noqa: E402
from common import latency  # noqa: E402
from floor import Floor  # noqa: E402

from dataclay import Client  # noqa: E402
from dataclay_backend.cluster import LocalCluster  # noqa: E402

CALLS = ("attribute_read", "active_method_read", "active_method_mutating")
MOVE_SIZE = 1000  # employees (the Company too: 1,001 objects)
TARGETS = {"tls_vs_insecure_calls": 1.15, "tls_vs_tls_floor_calls": 1.3, "tls_vs_insecure_move": 1.2}


def cluster_round(cluster: LocalCluster, repeat: int, moves: int) -> dict[str, Any]:
    """p50 of each call, and the median move of the 1,000-employee graph, on one cluster."""
    figures: dict[str, Any] = {}
    # the insecure cluster's client_credentials() is None: plain text (DC_INSECURE=1, set in main)
    with Client(host="127.0.0.1", port=cluster.port, credentials=cluster.client_credentials()) as client:
        first, second = list(client.get_backends())[:2]
        employee = Employee("Bench", 1.0)
        employee.make_persistent(backend_id=first)
        calls: dict[str, Callable[[], object]] = {
            "attribute_read": lambda: employee.salary,
            "active_method_read": employee.get_salary,
            "active_method_mutating": lambda: employee.raise_salary(1.0),
        }
        for name, call in calls.items():
            figures[name] = latency(call, repeat)["p50_ms"]
        company = Company("Big", [Employee(f"E{i}", float(i)) for i in range(MOVE_SIZE)])
        company.make_persistent(backend_id=first)
        seconds = []
        for run in range(moves * 2):  # back and forth
            result = company.move(second if run % 2 == 0 else first, recursive=True)
            assert result.objects == MOVE_SIZE + 1, result
            seconds.append(result.seconds)
        figures["move_1000_ms"] = round(statistics.median(seconds) * 1e3, 2)
    return figures


def ratio(a: float, b: float) -> float:
    return round(a / b, 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer samples and rounds (about 30 s)")
    args = parser.parse_args()
    repeat, rounds, moves = (400, 3, 2) if args.quick else (2000, 7, 5)
    runs: dict[str, dict[str, list[float]]] = {"tls": {}, "insecure": {}, "floor_plain": {}, "floor_tls": {}}
    os.environ["DC_INSECURE"] = "1"  # a client given no credentials speaks plain text (the servers get flags)
    with tempfile.TemporaryDirectory() as tmp:
        clusters = {
            "tls": LocalCluster(Path(tmp) / "tls", backends=2, port=0, model_paths=[HERE / "models"], insecure=False),
            "insecure": LocalCluster(Path(tmp) / "insecure", backends=2, port=0, model_paths=[HERE / "models"],
                                     insecure=True),
        }
        try:
            for cluster in clusters.values():
                cluster.start()
            with Floor() as plain, Floor(clusters["tls"].credentials_dir) as tls:
                floors = {"floor_plain": plain, "floor_tls": tls}
                for number in range(rounds):
                    order = ["tls", "insecure", "floor_plain", "floor_tls"]
                    for mode in order if number % 2 == 0 else order[::-1]:
                        if mode in floors:
                            figures = {"round_trip": latency(floors[mode].round_trip, repeat)["p50_ms"]}
                        else:
                            figures = cluster_round(clusters[mode], repeat, moves)
                        for name, value in figures.items():
                            runs[mode].setdefault(name, []).append(value)
        finally:
            for cluster in clusters.values():
                cluster.stop()
    median = {mode: {name: round(statistics.median(values), 4) for name, values in by_name.items()}
              for mode, by_name in runs.items()}
    tls, insecure = median["tls"], median["insecure"]
    tls_floor, plain_floor = median["floor_tls"]["round_trip"], median["floor_plain"]["round_trip"]
    results: dict[str, Any] = {
        "load_average_1m": round(os.getloadavg()[0], 2),
        "rounds": rounds, "samples_per_round": repeat,
        "p50_ms": median,
        "tls_vs_insecure": {name: ratio(tls[name], insecure[name]) for name in (*CALLS, "move_1000_ms")},
        "tls_vs_tls_floor": {name: ratio(tls[name], tls_floor) for name in CALLS},
        "insecure_vs_plain_floor": {name: ratio(insecure[name], plain_floor) for name in CALLS},
        "tls_floor_vs_plain_floor": ratio(tls_floor, plain_floor),
        "per_round": runs,
    }
    results["targets"] = {
        "calls_within_1.15x_of_insecure": all(results["tls_vs_insecure"][n] <= 1.15 for n in CALLS),
        "calls_within_1.3x_of_tls_floor": all(results["tls_vs_tls_floor"][n] <= 1.3 for n in CALLS),
        "move_1000_within_1.2x_of_insecure": results["tls_vs_insecure"]["move_1000_ms"] <= 1.2,
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
