"""The `dataclay` command: `up` (a local cluster), `demo`, `move`, `drain` and `retire` (with progress).

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


class Parser(argparse.ArgumentParser):
    """Errors in one line on stderr (exit code 2), defaults in --help."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 (pick a free one) to 65535 (also the servers' flags)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535; 0 picks a free port)")
    return port


def usable_dir(text: str) -> str:
    """A directory we can write to, created if missing."""
    path = Path(text)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot create {text}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write to {text}")
    return text


def _cluster(args: argparse.Namespace):
    from dataclay_backend.cluster import LocalCluster

    return LocalCluster(Path(args.data_dir), backends=args.backends, port=args.port,
                        model_paths=[Path.cwd(), *args.model_path], durability=args.durability,
                        insecure=args.insecure or None)


def _say_security(cluster) -> None:
    """Where the credentials are, or loudly that there are none."""
    if cluster.credentials_dir is None:
        print("WARNING: INSECURE (--insecure / DC_INSECURE=1): the servers accept every call without credentials, "
              "in plain text; anyone who can reach these ports can read and change every object and run active "
              "methods.", file=sys.stderr, flush=True)
    else:
        print(f"Credentials (mutual TLS; only you can read them): {cluster.credentials_dir}\n"
              f"  clients and the dataclay command run here find them; elsewhere: "
              f"export DC_CREDENTIALS={cluster.credentials_dir}")


def cmd_up(args: argparse.Namespace) -> int:
    """Run a local cluster in the foreground until Ctrl-C or SIGTERM."""
    # Handlers, not a blocked signal mask: a mask would be inherited by the servers we start,
    # and they must still stop on SIGTERM. exec() resets handlers in the children.
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: its terminal closed
        signal.signal(signum, on_signal)
    # The servers die with this process whatever kills it (kill -9 too): see LocalCluster.
    cluster = _cluster(args).start()
    try:
        print(f"dataClay local cluster up: metadata service on 127.0.0.1:{cluster.port}, data in {cluster.data_dir}")
        for name, process in cluster.backends.items():
            print(f"  {name}: 127.0.0.1:{process.port} (log {process.log})")
        if cluster.absent:
            names = ", ".join(backend.name for backend in cluster.absent)
            objects = sum(backend.objects for backend in cluster.absent)
            print(f"Not started: {names}, registered in this data directory (--backends {args.backends}). They own "
                  f"{objects:,} object{'' if objects == 1 else 's'}, unreachable until they start again "
                  f"(dataclay up --backends {len(cluster.backends) + len(cluster.absent)}), and are marked "
                  "draining meanwhile: nothing new is stored there. To retire them, start them and "
                  f"`dataclay retire {' '.join(backend.name for backend in cluster.absent)}`.",
                  file=sys.stderr, flush=True)
        _say_security(cluster)
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
        with Client(host=args.host, port=args.port, credentials=_credentials(args)) as client:
            demo.run(client)
        return 0
    with tempfile.TemporaryDirectory(prefix="dataclay-demo-") as tmp:
        args.data_dir = args.data_dir or tmp
        args.port = 0
        print(f"Starting a local cluster ({args.backends} backends, data in {args.data_dir})...", flush=True)
        with _cluster(args) as cluster:
            _say_security(cluster)
            with Client(host="127.0.0.1", port=cluster.port, credentials=cluster.client_credentials()) as client:
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


def _credentials(args: argparse.Namespace) -> Path | None:
    """--credentials, else --data-dir's credentials, else None (found as a client finds them)."""
    if getattr(args, "credentials", None):
        return args.credentials
    if getattr(args, "data_dir_of", None):
        return Path(args.data_dir_of) / "credentials"
    return None


def cmd_move(args: argparse.Namespace) -> int:
    """Move an object (by alias or id) to a backend (by name or id), with progress."""
    import uuid

    from dataclay import Client, DataClayObject

    sys.path[:0] = [str(Path.cwd()), *map(str, args.model_path)]
    with Client(host=args.host, port=args.port, credentials=_credentials(args)) as client:
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


def _drain(args: argparse.Namespace, retire: bool) -> int:
    """Move every object off the named backends (with a progress line); with `retire`, then
    deregister them. Returns how many objects moved."""
    from dataclay.admin import deregister_backends, drain_backends
    from dataclay.client import Client

    client = Client(host=args.host, port=args.port)
    progress = ProgressLine(f"draining {', '.join(args.backends)}")
    try:
        moved = drain_backends(client.host, client.port, args.backends, on_progress=progress,
                               credentials=_credentials(args))
    finally:
        progress.close()
    if retire:
        deregister_backends(client.host, client.port, args.backends, credentials=_credentials(args))
    return moved


def cmd_drain(args: argparse.Namespace) -> int:
    """Move every object off the named backends onto the others."""
    moved = _drain(args, retire=False)
    print(f"drained {', '.join(args.backends)}: {moved:,} objects moved")
    return 0


def cmd_retire(args: argparse.Namespace) -> int:
    """Drain the named backends, then deregister them: they leave the cluster for good."""
    moved = _drain(args, retire=True)
    print(f"retired {', '.join(args.backends)}: {moved:,} object{'' if moved == 1 else 's'} moved; they are "
          "deregistered (started again with an empty data directory, a backend registers under a new id)")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    """Take a backup of the metadata database now (or, with --last, show the newest)."""
    import time

    from dataclay.admin import backup, last_backup
    from dataclay.client import Client

    client = Client(host=args.host, port=args.port)
    taken = (last_backup if args.last else backup)(client.host, client.port, credentials=_credentials(args))
    if taken.path is None:
        print("no backup yet")
    else:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(taken.time))
        print(f"{'last backup' if args.last else 'backup'} {taken.path} ({when}, {taken.size:,} bytes): "
              f"{taken.backends} backends, {taken.objects:,} objects, {taken.aliases:,} aliases")
    if taken.error:
        print(f"the last scheduled backup failed: {taken.error}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="dataclay", description="dataClay-compatible active object store")
    commands = parser.add_subparsers(dest="command", required=True)
    model_path_help = "a folder with model modules for the backends (repeatable; the working directory is always included)"
    durability_help = "process: a reply means the change survives kill -9; machine: also a power cut (fsync per commit)"

    up = commands.add_parser("up", help="run a local cluster in the foreground",
                             description="Run a local cluster (a metadata service and backends) in the foreground "
                                         "until Ctrl-C, SIGTERM or SIGHUP; its servers stop with it.")
    up.add_argument("--backends", type=positive_int, default=3,
                    help="how many backends (backend-0, backend-1, ...); backends of this data directory beyond "
                         "them are not offered for new objects")
    up.add_argument("--data-dir", type=usable_dir, default="./dataclay-data",
                    help="where the cluster keeps its state (created if missing; one cluster at a time)")
    up.add_argument("--port", type=port_number, default=16587, help="the metadata service's port (0 picks a free one)")
    up.add_argument("--model-path", type=Path, action="append", default=[], help=model_path_help)
    up.add_argument("--durability", choices=["process", "machine"], default="process", help=durability_help)
    up.set_defaults(func=cmd_up)
    insecure_help = ("start the servers without authentication or encryption (DC_INSECURE=1): anyone who can "
                     "reach the ports can do anything; without it, credentials are made in DATA_DIR/credentials "
                     "(or DC_CREDENTIALS) and every call needs them")

    demo = commands.add_parser("demo", help="run the seed scenario and narrate it")
    demo.add_argument("--backends", type=positive_int, default=3, help="backends of the cluster it starts")
    demo.add_argument("--data-dir", type=usable_dir, default=None,
                      help="data directory of the cluster it starts (None: a temporary one)")
    demo.add_argument("--host", default=None, help="use a running cluster's metadata service instead of starting one")
    demo.add_argument("--port", type=port_number, default=os.environ.get("DC_PORT", "16587"),
                      help="with --host: the metadata service's port (DC_PORT)")
    demo.add_argument("--model-path", type=Path, action="append", default=[], help=model_path_help)
    demo.add_argument("--durability", choices=["process", "machine"], default="process", help=durability_help)
    demo.set_defaults(func=cmd_demo)
    for command in (up, demo):
        command.add_argument("--insecure", action="store_true", help=insecure_help)

    move = commands.add_parser("move", help="move an object to another backend, with progress")
    move.add_argument("object", help="alias or object id")
    move.add_argument("backend", help="backend name (e.g. backend-1) or id")
    move.add_argument("--recursive", action="store_true", help="also what it reaches through objects of the same backend")
    move.add_argument("--remotes", action="store_true", help="with --recursive: also reachable objects of other backends")
    move.add_argument("--model-path", type=Path, action="append", default=[],
                      help="a folder with the model modules (repeatable; the working directory is always included)")
    move.set_defaults(func=cmd_move)

    drain = commands.add_parser("drain", help="move every object off some backends (before removing them)")
    drain.add_argument("backends", nargs="+", help="backend names")
    drain.set_defaults(func=cmd_drain)

    retire = commands.add_parser("retire", help="drain some backends, then deregister them (they leave for good)")
    retire.add_argument("backends", nargs="+", help="backend names")
    retire.set_defaults(func=cmd_retire)

    backup = commands.add_parser("backup", help="back up the metadata database now (online), or show the last backup",
                                 description="Back up the metadata database now, into the backup directory of the "
                                             "metadata service (--backup-dir); the admin's credentials are needed.")
    backup.add_argument("--last", action="store_true", help="only show the newest backup")
    backup.set_defaults(func=cmd_backup)

    for command in (move, drain, retire, demo, backup):
        command.add_argument("--credentials", type=Path, default=None,
                             help="the credentials directory (None: --data-dir's, else DC_CREDENTIALS, else "
                                  "./dataclay-data/credentials if it exists)")
    for command in (move, drain, retire, backup):
        command.add_argument("--data-dir", dest="data_dir_of", type=Path, default=None,
                             help="the data directory of the `dataclay up` to use: its credentials")
        command.add_argument("--host", default=None, help="metadata service host (None: DC_HOST, else 127.0.0.1)")
        command.add_argument("--port", type=port_number, default=None,
                             help="metadata service port (None: DC_PORT, else 16587)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
