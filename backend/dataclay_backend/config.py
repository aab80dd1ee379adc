"""Server configuration: each setting is a flag with an environment fallback, so the same
command runs as a local process and as a pod."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path


def env_default(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir", type=Path, default=Path(env_default("DC_DATA_DIR", "./dataclay-data")),
                        help="where the SQLite state lives (DC_DATA_DIR)")
    parser.add_argument("--durability", choices=["process", "machine"], default=env_default("DC_DURABILITY", "process"),
                        help="process: a reply means the change survives kill -9; machine: it also survives a "
                             "power cut (fsync per commit) (DC_DURABILITY)")
    parser.add_argument("--listen", default=env_default("DC_LISTEN", "0.0.0.0"), help="address to bind (DC_LISTEN)")
    parser.add_argument("--log-level", default=env_default("DC_LOG_LEVEL", "INFO"))
    parser.add_argument("--ready-fd", type=int, default=None,
                        help="write the serving port and a newline to this inherited file descriptor once ready")
    return parser


def report_ready(fd: int | None, port: int) -> None:
    """Tell a supervising process (the local cluster) that we serve, and on which port."""
    if fd is not None:
        os.write(fd, f"{port}\n".encode())
        os.close(fd)


def setup_logging(level: str, role: str) -> None:
    logging.basicConfig(level=level.upper(), format=f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s")


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    """A backend's timeouts (the concurrency contract in dataclay_backend.locking names them)."""
    parser.add_argument("--lock-timeout", type=float, default=float(env_default("DC_LOCK_TIMEOUT", "60")),
                        help="seconds a call waits for an object another call holds before it fails with "
                             "ObjectBusyError (DC_LOCK_TIMEOUT)")
    parser.add_argument("--consolidation-timeout", type=float,
                        default=float(env_default("DC_CONSOLIDATION_TIMEOUT", "60")),
                        help="seconds a prepared consolidation waits for its coordinator before it asks the "
                             "metadata service for the outcome (DC_CONSOLIDATION_TIMEOUT)")
