"""TLS + authentication against --insecure, side by side in one run. Prints JSON.

    python benchmarks/bench_security.py [--quick]

Two local clusters of 1 backend (separate processes, loopback), one secure (mutual TLS, the
role check on every call) and one --insecure; attribute read and active method p50 measured in
alternating rounds (the median of the rounds' p50s), and the ratio secure / insecure.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE), str(HERE / "models")]

from bench_model import Employee  # noqa: E402
from common import latency  # noqa: E402

from dataclay import Client  # noqa: E402
from dataclay_backend.cluster import LocalCluster  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    args = parser.parse_args()
    repeat, rounds = (500, 3) if args.quick else (2000, 5)
    runs: dict[str, dict[str, list[float]]] = {"tls": {}, "insecure": {}}
    os.environ["DC_INSECURE"] = "1"  # a client given no credentials speaks plain text (the servers get flags)
    with tempfile.TemporaryDirectory() as tmp:
        secure = LocalCluster(Path(tmp) / "tls", backends=1, port=0, model_paths=[HERE / "models"],
                              insecure=False).start()
        insecure = LocalCluster(Path(tmp) / "insecure", backends=1, port=0, model_paths=[HERE / "models"],
                                insecure=True).start()
        try:
            for _ in range(rounds):
                for mode, cluster in (("tls", secure), ("insecure", insecure)):
                    # the insecure cluster's client_credentials() is None: plain text (DC_INSECURE=1 above)
                    with Client(host="127.0.0.1", port=cluster.port,
                                credentials=cluster.client_credentials()) as client:
                        employee = Employee("Bench", 1.0)
                        employee.make_persistent(backend_id=next(iter(client.get_backends())))
                        for name, call in (("attribute_read", lambda: employee.salary),
                                           ("active_method", employee.get_salary)):
                            runs[mode].setdefault(name, []).append(latency(call, repeat)["p50_ms"])
        finally:
            secure.stop()
            insecure.stop()
    results: dict[str, object] = {mode: {name: round(statistics.median(values), 4) for name, values in by_name.items()}
                                  for mode, by_name in runs.items()}
    results["tls_vs_insecure_p50"] = {name: round(results["tls"][name] / results["insecure"][name], 3)  # type: ignore
                                      for name in runs["tls"]}
    print(json.dumps(results, indent=2))

if __name__ == "__main__":
    main()
