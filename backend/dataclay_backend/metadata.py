"""The metadata service: `python -m dataclay_backend.metadata`."""
from __future__ import annotations

import logging

from dataclay.protocol import dataclay_pb2_grpc as rpc
from dataclay.security import METADATA, Identity
from dataclay_backend.config import (base_parser, cannot_start, env_default, port_number, report_ready,
                                     server_credentials, server_limits, setup_logging, watch_parent)
from dataclay_backend.directory import Directory
from dataclay_backend.grpc_server import Server
from dataclay_backend.metadata_service import MetadataService

log = logging.getLogger("dataclay.metadata")


def main(argv: list[str] | None = None) -> None:
    parser = base_parser("dataClay metadata service: backend registry, object directory, aliases")
    parser.add_argument("--port", type=port_number, default=env_default("DC_METADATA_PORT", "16587"),
                        help="0 picks a free port (DC_METADATA_PORT)")
    args = parser.parse_args(argv)
    setup_logging(args.log_level, "metadata")
    watch_parent(args.parent_fd)
    try:  # bind first: a port in use must not touch the data directory
        server = Server(args.listen, args.port, credentials=server_credentials(args, Identity(METADATA)),
                        health_port=args.health_port, limits=server_limits(args))
        directory = Directory(args.data_dir, args.durability)
    except OSError as exc:
        raise cannot_start(args.ready_fd, str(exc)) from None
    rpc.add_MetadataServicer_to_server(MetadataService(directory), server.grpc)
    server.start()
    server.set_serving()
    report_ready(args.ready_fd, server.port)
    log.info("metadata service %s serving on %s:%d, data in %s", directory.cluster_id, args.listen, server.port, args.data_dir)
    server.wait_for_signal()
    directory.close()
    log.info("metadata service stopped")


if __name__ == "__main__":
    main()
