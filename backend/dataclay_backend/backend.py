"""A backend: `python -m dataclay_backend.backend`."""
from __future__ import annotations

import gc
import logging
import sys
from typing import Any
from uuid import UUID

import grpc

from dataclay.exceptions import BackendRetiredError, ClusterMismatchError
from dataclay.protocol import UNLIMITED_MESSAGES
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.protocol import codec
from dataclay.protocol import dataclay_pb2_grpc as rpc
from dataclay.runtime import set_runtime
from dataclay.security import Identity, open_channel
from dataclay.transport import translate
from dataclay_backend.backend_runtime import BackendRuntime
from dataclay_backend.backend_service import BackendService
from dataclay_backend.config import (add_backend_flags, base_parser, cannot_start, env_default, port_number, report_ready,
                                     setup_logging, watch_parent)
from dataclay_backend.config import configure_call_timeouts, server_credentials, server_limits
from dataclay_backend.grpc_server import Server
from dataclay_backend.object_store import ObjectStore

log = logging.getLogger("dataclay.backend")
UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


def parse_size(text: str) -> int:
    """'512Mi', '2G', '1000000' -> bytes (the units Kubernetes uses)."""
    number = text.rstrip("KMGkmgi")
    unit = text[len(number):].lower()
    if unit not in UNITS or not number:
        raise ValueError(f"not a size: {text!r} (use e.g. 512Mi, 2Gi, 1000000)")
    return int(float(number) * UNITS[unit])


def register(metadata_address: str, credentials: Any, name: str, store: ObjectStore, host: str, port: int,
             timeout: float) -> pb.BackendList:
    """Register under our persistent id (waiting up to `timeout` for the metadata service),
    and refuse to serve data that belongs to another metadata database. If our id was retired
    (drained and deregistered), an empty data directory registers under a new one. Returns
    the directory's reply: whether the metadata database was restored from a backup (then we
    reconcile, not recover), and the backends with their draining marks (ours included)."""
    channel = open_channel(metadata_address, credentials, options=UNLIMITED_MESSAGES)
    try:
        stub = rpc.MetadataStub(channel)
        info = pb.BackendInfo(backend_id=store.backend_id().bytes, name=name, host=host, port=port)
        try:
            reply = stub.RegisterBackend(info, wait_for_ready=True, timeout=timeout)
        except grpc.RpcError as error:
            retired = translate(error, f"the metadata service at {metadata_address}")
            if not isinstance(retired, BackendRetiredError):
                raise retired from None
            info.backend_id = store.renew_backend_id().bytes  # refused if it holds objects
            log.warning("backend %s: id %s was retired (drained and deregistered); this empty data directory "
                        "registers under the new id %s", name, retired.backend_id, UUID(bytes=info.backend_id))
            reply = stub.RegisterBackend(info, wait_for_ready=True, timeout=timeout)
    except grpc.RpcError as error:
        raise translate(error, f"the metadata service at {metadata_address}") from None
    finally:
        channel.close()
    known = store.get_meta("cluster_id")
    if known is None:
        store.set_meta("cluster_id", reply.cluster_id)
    elif known != reply.cluster_id:
        raise ClusterMismatchError(
            f"data directory of backend {name} belongs to cluster {UUID(bytes=known)}, but the metadata "
            f"service at {metadata_address} is cluster {UUID(bytes=reply.cluster_id)}; refusing to start "
            "(nothing was changed)"
        )
    return reply


def tune_gc() -> None:
    """A backend keeps many long-lived objects (instances, states, locks); with the default
    thresholds a move or a large graph allocating 100,000 small objects sets off full
    collections that walk all of them again and again. Collect young objects 50x less often."""
    gc.set_threshold(35_000, 20, 20)


def main(argv: list[str] | None = None) -> None:
    tune_gc()
    parser = base_parser("dataClay backend: stores objects and runs their active methods")
    parser.add_argument("--port", type=port_number, default=env_default("DC_BACKEND_PORT", "6867"),
                        help="0 picks a free port (DC_BACKEND_PORT)")
    parser.add_argument("--name", default=env_default("DC_BACKEND_NAME") or env_default("HOSTNAME", "backend"),
                        help="this backend's stable name (DC_BACKEND_NAME, else HOSTNAME)")
    parser.add_argument("--advertise-host", default=env_default("DC_ADVERTISE_HOST", "127.0.0.1"),
                        help="the host clients use to reach this backend (DC_ADVERTISE_HOST)")
    parser.add_argument("--metadata-host", default=env_default("DC_HOST", "127.0.0.1"),
                        help="the metadata service's host (DC_HOST)")
    parser.add_argument("--metadata-port", type=port_number, default=env_default("DC_PORT", "16587"),
                        help="the metadata service's port (DC_PORT)")
    parser.add_argument("--model-path", action="append", default=[p for p in (env_default("DC_MODEL_PATH") or "").split(":") if p],
                        help="a folder to import model classes from (repeatable; DC_MODEL_PATH, ':'-separated)")
    parser.add_argument("--memory-limit", type=parse_size, default=parse_size(env_default("DC_MEMORY_LIMIT", "1Gi")),
                        help="bytes of object state kept in memory before the least recently used are unloaded")
    parser.add_argument("--metadata-timeout", type=float, default=60.0,
                        help="seconds to wait for the metadata service when registering at start")
    add_backend_flags(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level, f"backend {args.name}")
    configure_call_timeouts(args)
    watch_parent(args.parent_fd)
    sys.path[:0] = [str(path) for path in args.model_path]

    credentials = server_credentials(args, Identity.backend(args.name))
    try:  # bind first: a port in use must not touch the data directory
        server = Server(args.listen, args.port, credentials=credentials, health_port=args.health_port,
                        limits=server_limits(args))
        store = ObjectStore(args.data_dir, args.durability)
    except OSError as exc:
        raise cannot_start(args.ready_fd, str(exc)) from None
    metadata_address = f"{args.metadata_host}:{args.metadata_port}"
    try:  # the port is bound but nothing is served until recovery is done
        registered = register(metadata_address, credentials, args.name, store, args.advertise_host, server.port,
                              args.metadata_timeout)
        rt = BackendRuntime(metadata_address, store, args.name, args.memory_limit, lock_timeout=args.lock_timeout,
                            consolidation_timeout=args.consolidation_timeout, credentials=credentials)
        set_runtime(rt)
        codec.add_backend_servicer(BackendService(rt), server.grpc)
        if any(info.draining for info in registered.backends if info.backend_id == store.backend_id().bytes):
            rt.registrations.register_first("this backend is draining")  # a restart keeps the mark
        dropped_local, dropped_directory = rt.recover(registered.restored)
    except Exception as exc:
        raise cannot_start(args.ready_fd, str(exc)) from None
    gc.freeze()  # what recovery loaded lives as long as the process: never scan it again
    server.start()
    server.set_serving()
    report_ready(args.ready_fd, server.port)
    log.info(
        "backend %s (%s) serving on %s:%d with %d objects (recovery dropped %d unacknowledged here, %d in the directory)",
        args.name, rt.local_backend_id, args.advertise_host, server.port, len(rt.owned), dropped_local, dropped_directory,
    )
    server.wait_for_signal()
    rt.registrations.close()
    rt.close()
    store.close()
    log.info("backend %s stopped", args.name)


if __name__ == "__main__":
    main()
