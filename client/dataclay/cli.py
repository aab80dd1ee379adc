"""The `dataclay` command: run a local cluster, run the demo."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path


def _cluster(args: argparse.Namespace):
    from dataclay_backend.cluster import LocalCluster

    return LocalCluster(Path(args.data_dir), backends=args.backends, port=args.port,
                        model_paths=[Path.cwd(), *args.model_path], durability=args.durability)


def cmd_up(args: argparse.Namespace) -> int:
    """Run a local cluster in the foreground until Ctrl-C or SIGTERM."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    cluster = _cluster(args).start()
    try:
        print(f"dataClay local cluster up: metadata service on 127.0.0.1:{cluster.port}, data in {cluster.data_dir}")
        for name, process in cluster.backends.items():
            print(f"  {name}: 127.0.0.1:{process.port} (log {process.log})")
        print(f"Connect with Client(host='127.0.0.1', port={cluster.port}), or DC_HOST=127.0.0.1 DC_PORT={cluster.port}.")
        print("Press Ctrl-C to stop.", flush=True)
        received = signal.sigwait({signal.SIGINT, signal.SIGTERM})
        print(f"\n{signal.Signals(received).name}: stopping...", flush=True)
    finally:
        cluster.stop()
    print("stopped.")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the seed scenario against a fresh local cluster (or --host/--port)."""
    from dataclay import Client, demo

    if args.host:
        with Client(host=args.host, port=args.port) as client:
            demo.run(client)
        return 0
    with tempfile.TemporaryDirectory(prefix="dataclay-demo-") as tmp:
        args.data_dir = args.data_dir or tmp
        args.port = 0
        print(f"Starting a local cluster ({args.backends} backends, data in {args.data_dir})...", flush=True)
        with _cluster(args) as cluster:
            with Client(host="127.0.0.1", port=cluster.port) as client:
                demo.run(client)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dataclay", description="dataClay-compatible active object store")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run a local cluster in the foreground")
    up.add_argument("--backends", type=int, default=3)
    up.add_argument("--data-dir", default="./dataclay-data")
    up.add_argument("--port", type=int, default=16587)
    up.add_argument("--model-path", type=Path, action="append", default=[],
                    help="folder with model modules for the backends (the working directory is always included)")
    up.add_argument("--durability", choices=["process", "machine"], default="process")
    up.set_defaults(func=cmd_up)

    demo = commands.add_parser("demo", help="run the seed scenario and narrate it")
    demo.add_argument("--backends", type=int, default=3)
    demo.add_argument("--data-dir", default=None)
    demo.add_argument("--host", default=None, help="use a running cluster instead of starting one")
    demo.add_argument("--port", type=int, default=int(os.environ.get("DC_PORT", "16587")))
    demo.add_argument("--model-path", type=Path, action="append", default=[])
    demo.add_argument("--durability", choices=["process", "machine"], default="process")
    demo.set_defaults(func=cmd_demo)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:
        from dataclay.exceptions import DataClayException
        from dataclay_backend.cluster import ClusterStartError

        if isinstance(exc, (DataClayException, ClusterStartError)):
            print(f"dataclay {args.command}: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
