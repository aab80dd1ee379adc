"""The `dataclay` command: `up` (a local cluster), `demo`, `move` and `drain` (with progress).

Each command imports what it needs when it runs (not because of import cycles: so that
`dataclay --help` starts at once and a command loads only what it uses).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path


def _cluster(args: argparse.Namespace):
    from dataclay_backend.cluster import LocalCluster

    return LocalCluster(Path(args.data_dir), backends=args.backends, port=args.port,
                        model_paths=[Path.cwd(), *args.model_path], durability=args.durability)


def cmd_up(args: argparse.Namespace) -> int:
    """Run a local cluster in the foreground until Ctrl-C or SIGTERM."""
    # Handlers, not a blocked signal mask: a mask would be inherited by the servers we start,
    # and they must still stop on SIGTERM. exec() resets handlers in the children.
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    cluster = _cluster(args).start()
    try:
        print(f"dataClay local cluster up: metadata service on 127.0.0.1:{cluster.port}, data in {cluster.data_dir}")
        for name, process in cluster.backends.items():
            print(f"  {name}: 127.0.0.1:{process.port} (log {process.log})")
        print(f"Connect with Client(host='127.0.0.1', port={cluster.port}), or DC_HOST=127.0.0.1 DC_PORT={cluster.port}.")
        print("Press Ctrl-C to stop.", flush=True)
        reported: set[str] = set()
        while not stop.wait(1.0):  # wake once a second to notice servers that died
            for process in [cluster.metadata, *cluster.backends.values()]:
                if process is not None and process.popen.poll() is not None and process.name not in reported:
                    reported.add(process.name)
                    print(f"{process.name} exited with code {process.popen.returncode}; its log is {process.log}. "
                          "Restart with `dataclay up` on the same data directory.", file=sys.stderr, flush=True)
        print(f"\n{signal.Signals(received[0]).name}: stopping...", flush=True)
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


class ProgressLine:
    """One line on stderr, rewritten in place: `label: 4,000/10,001 objects (40%)`."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        percent = 100 * done // total if total else 100
        print(f"\r{self.label}: {done:,}/{total:,} objects ({percent}%)", end="", file=sys.stderr, flush=True)
        self.shown = True

    def close(self) -> None:
        if self.shown:
            print(file=sys.stderr)


def _resolve_backend(client, name_or_id: str):
    from dataclay import operations as ops
    from dataclay.transport import run_blocking

    rt = client.runtime  # every registered backend, draining ones too: the move says why it cannot
    for backend_id, info in run_blocking(ops.get_backends(rt, rt.blocking)).items():
        if name_or_id in (info.name, str(backend_id)):
            return backend_id
    from dataclay.exceptions import BackendNotFoundError

    raise BackendNotFoundError(f"no backend named or with id {name_or_id!r}")


def cmd_move(args: argparse.Namespace) -> int:
    """Move an object (by alias or id) to a backend (by name or id), with progress."""
    import uuid

    from dataclay import Client, DataClayObject

    sys.path[:0] = [str(Path.cwd()), *map(str, args.model_path)]
    with Client(host=args.host, port=args.port) as client:
        target = _resolve_backend(client, args.backend)
        try:
            obj = DataClayObject.get_by_id(uuid.UUID(args.object))
        except ValueError:
            obj = DataClayObject.get_by_alias(args.object)
        progress = ProgressLine(f"moving {args.object}")
        try:
            result = obj.move(target, recursive=args.recursive, remotes=args.remotes, on_progress=progress)
        finally:
            progress.close()
        print(f"moved {result.objects:,} objects ({result.bytes:,} bytes) to {args.backend} in {result.seconds:.3f}s")
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    """Move every object off the named backends onto the others."""
    from dataclay.admin import drain_backends
    from dataclay.client import Client

    client = Client(host=args.host, port=args.port)
    progress = ProgressLine(f"draining {', '.join(args.backends)}")
    try:
        moved = drain_backends(client.host, client.port, args.backends, on_progress=progress)
    finally:
        progress.close()
    print(f"drained {', '.join(args.backends)}: {moved:,} objects moved")
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

    move = commands.add_parser("move", help="move an object to another backend, with progress")
    move.add_argument("object", help="alias or object id")
    move.add_argument("backend", help="backend name (e.g. backend-1) or id")
    move.add_argument("--recursive", action="store_true", help="also what it reaches through objects of the same backend")
    move.add_argument("--remotes", action="store_true", help="with --recursive: also reachable objects of other backends")
    move.add_argument("--model-path", type=Path, action="append", default=[])
    move.set_defaults(func=cmd_move)

    drain = commands.add_parser("drain", help="move every object off some backends (before removing them)")
    drain.add_argument("backends", nargs="+", help="backend names")
    drain.set_defaults(func=cmd_drain)

    for command in (move, drain):
        command.add_argument("--host", default=None, help="metadata service host (DC_HOST, default 127.0.0.1)")
        command.add_argument("--port", type=int, default=None, help="metadata service port (DC_PORT, default 16587)")

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
