"""The metadata service: `python -m dataclay_backend.metadata`."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dataclay.protocol import dataclay_pb2_grpc as rpc
from dataclay.security import METADATA, Identity
from dataclay.exceptions import RestoreError
from dataclay_backend.config import (base_parser, cannot_start, env_default, port_number, positive, report_ready,
                                     server_credentials, server_limits, setup_logging, watch_parent)
from dataclay_backend.backup import BackupScheduler, parse_interval, restore
from dataclay_backend.directory import Directory
from dataclay_backend.grpc_server import Server
from dataclay_backend.metadata_service import MetadataService

log = logging.getLogger("dataclay.metadata")


def interval(text: str) -> float:
    try:
        return parse_interval(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> None:
    parser = base_parser("dataClay metadata service: backend registry, object directory, aliases")
    parser.add_argument("--port", type=port_number, default=env_default("DC_METADATA_PORT", "16587"),
                        help="0 picks a free port (DC_METADATA_PORT)")
    backups = parser.add_argument_group("backups", "online backups of the metadata database, and starting from one")
    backups.add_argument("--backup-dir", type=Path, default=env_default("DC_METADATA_BACKUP_DIR") or None,
                         help="where backups are written (DC_METADATA_BACKUP_DIR; default: none, no backups)")
    backups.add_argument("--backup-interval", type=interval, default=env_default("DC_METADATA_BACKUP_INTERVAL", "0"),
                         help="take a backup this often: seconds, or 30m, 6h, 1d; 0: only on demand "
                              "(`dataclay backup`) (DC_METADATA_BACKUP_INTERVAL)")
    backups.add_argument("--backup-keep", type=positive(int), default=env_default("DC_METADATA_BACKUP_KEEP", "7"),
                         help="keep the newest N backups (DC_METADATA_BACKUP_KEEP)")
    backups.add_argument("--restore-from", type=Path, default=env_default("DC_METADATA_RESTORE_FROM") or None,
                         help="start from this backup file; then every backend must start again, and the directory "
                              "is reconciled with what they hold (DC_METADATA_RESTORE_FROM)")
    backups.add_argument("--restore-overwrite", action="store_true",
                         default=env_default("DC_METADATA_RESTORE_OVERWRITE", "") in ("1", "true", "yes"),
                         help="let --restore-from replace a database already in the data directory "
                              "(DC_METADATA_RESTORE_OVERWRITE=1)")
    args = parser.parse_args(argv)
    setup_logging(args.log_level, "metadata")
    watch_parent(args.parent_fd)
    try:  # bind first: a port in use must not touch the data directory
        server = Server(args.listen, args.port, credentials=server_credentials(args, Identity(METADATA)),
                        health_port=args.health_port, limits=server_limits(args))
        if args.restore_from is not None:
            restore(args.restore_from, args.data_dir, args.restore_overwrite)
        directory = Directory(args.data_dir, args.durability)
    except (OSError, RestoreError) as exc:
        raise cannot_start(args.ready_fd, str(exc)) from None
    scheduler = BackupScheduler(directory.db.path, args.backup_dir, args.backup_keep, args.backup_interval)
    rpc.add_MetadataServicer_to_server(MetadataService(directory, scheduler), server.grpc)
    scheduler.start()
    server.start()
    server.set_serving()
    report_ready(args.ready_fd, server.port)
    log.info("metadata service %s serving on %s:%d, data in %s", directory.cluster_id, args.listen, server.port, args.data_dir)
    server.wait_for_signal()
    scheduler.stop()
    directory.close()
    log.info("metadata service stopped")


if __name__ == "__main__":
    main()
