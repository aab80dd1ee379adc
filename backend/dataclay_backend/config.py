"""Server configuration: each setting is a flag with an environment fallback, so the same
command runs as a local process and as a pod."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataclay.cli import port_number  # noqa: F401  (one definition, shared with the servers' flags)
from dataclay.security import insecure_requested
from dataclay_backend.server_limits import (DEFAULT_MAX_CONCURRENT_RPCS, DEFAULT_MAX_CONNECTION_IDLE, DEFAULT_MAX_STREAMS,
                                            ServerLimits, env_number)

if TYPE_CHECKING:
    from dataclay.security import Credentials, Identity

log = logging.getLogger("dataclay.config")


def env_default(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name, default)


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(env_default("DC_DATA_DIR", "./dataclay-data")),
                        help="where the SQLite state lives (DC_DATA_DIR)")
    parser.add_argument("--durability", choices=["process", "machine"], default=env_default("DC_DURABILITY", "process"),
                        help="process: a reply means the change survives kill -9; machine: it also survives a "
                             "power cut (fsync per commit) (DC_DURABILITY)")
    parser.add_argument("--listen", default=env_default("DC_LISTEN", "0.0.0.0"), help="address to bind (DC_LISTEN)")
    parser.add_argument("--log-level", default=env_default("DC_LOG_LEVEL", "INFO"), help="(DC_LOG_LEVEL)")
    parser.add_argument("--ready-fd", type=int, default=None,
                        help="write the serving port and a newline to this inherited file descriptor once ready "
                             "('error: WHY' and a newline if it cannot start)")
    parser.add_argument("--credentials", type=Path, default=env_default("DC_CREDENTIALS") or None,
                        help="the credentials directory (made by `dataclay up`: CA, this server's certificate "
                             "and key); every call must then present a certificate of the same CA (DC_CREDENTIALS)")
    parser.add_argument("--insecure", action="store_true", default=insecure_requested(),
                        help="serve plain text and accept every call without credentials: only on a network "
                             "nobody else can reach (DC_INSECURE=1)")
    parser.add_argument("--health-port", type=port_number, default=env_default("DC_HEALTH_PORT") or None,
                        help="also answer the health check (and nothing else) in plain text on this port, for "
                             "probes without a certificate, e.g. the kubelet's (DC_HEALTH_PORT; default: none)")
    limits = parser.add_argument_group("limits", "past each, a typed RESOURCE_EXHAUSTED; the server keeps serving. "
                                       "The message size is DC_MAX_MESSAGE, read by clients and servers alike")
    limits.add_argument("--max-concurrent-rpcs", type=positive(int), metavar="N",
                        default=env_number("DC_MAX_CONCURRENT_RPCS", DEFAULT_MAX_CONCURRENT_RPCS, 1),
                        help="calls served at once; more are refused at once (DC_MAX_CONCURRENT_RPCS)")
    limits.add_argument("--max-streams", type=positive(int), metavar="N",
                        default=env_number("DC_MAX_STREAMS", DEFAULT_MAX_STREAMS, 1),
                        help="concurrent calls per connection; more wait on the caller's side (DC_MAX_STREAMS)")
    limits.add_argument("--max-connection-idle", type=positive(float), metavar="SECONDS",
                        default=env_number("DC_MAX_CONNECTION_IDLE", DEFAULT_MAX_CONNECTION_IDLE, 0.1),
                        help="a connection with no call for this long is closed (DC_MAX_CONNECTION_IDLE)")
    parser.add_argument("--parent-fd", type=int, default=None,
                        help="the read end of a pipe the supervising process (the local cluster) holds open: "
                             "when it closes, that process died, and this one stops at once, as kill -9 would")
    return parser


def positive(kind: type) -> Any:
    """An argparse type: a number of `kind` above zero (a one-line error otherwise)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text[:40]}")
        return value

    return parse


def server_limits(args: argparse.Namespace) -> ServerLimits:
    """The limits a server's flags (or their environment variables) ask for."""
    return ServerLimits(int(args.max_concurrent_rpcs), max_streams=int(args.max_streams),
                        max_connection_idle=float(args.max_connection_idle))


def server_credentials(args: argparse.Namespace, identity: "Identity") -> "Credentials | None":
    """This server's credentials (--credentials), or None with --insecure (said loudly); a
    server given neither refuses to start, in one line."""
    from dataclay.security import Credentials

    if args.insecure:
        log.warning("INSECURE: serving plain text without authentication (--insecure / DC_INSECURE=1): anyone "
                    "who can reach this port can read and change every object and run active methods")
        return None
    if args.credentials is not None:
        try:
            return Credentials.load(args.credentials, identity)
        except Exception as exc:
            raise cannot_start(args.ready_fd, str(exc)) from None
    raise cannot_start(args.ready_fd, "no credentials: pass --credentials DIR (DC_CREDENTIALS; `dataclay up` "
                                      "makes them) or --insecure (DC_INSECURE=1) to serve without authentication")


def report_ready(fd: int | None, port: int) -> None:
    """Tell a supervising process (the local cluster) that we serve, and on which port."""
    if fd is not None:
        os.write(fd, f"{port}\n".encode())
        os.close(fd)


def cannot_start(fd: int | None, reason: str) -> SystemExit:
    """Log why we cannot start, tell a supervising process in one line; raise the result."""
    log.error("cannot start: %s", reason)
    if fd is not None:
        try:
            os.write(fd, f"error: {' '.join(reason.split())}\n".encode())
            os.close(fd)
        except OSError:
            pass
    return SystemExit(2)


def watch_parent(fd: int | None) -> None:
    """Die with the supervising process, whatever killed it: a thread waits for the end of
    the pipe it holds (only its death, or its closing the pipe, ends it) and then kills this
    process with SIGKILL. Servers are built to lose nothing acknowledged on kill -9."""
    if fd is None:
        return

    def wait() -> None:
        while True:
            try:
                if not os.read(fd, 64):
                    break
            except InterruptedError:
                continue
            except OSError:
                break
        log.warning("the supervising process is gone: stopping now (SIGKILL)")
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=wait, name="parent-watch", daemon=True).start()


def setup_logging(level: str, role: str) -> None:
    logging.basicConfig(level=level.upper(), format=f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s")


LOCK_TIMEOUT = 60.0  # seconds; the defaults of a backend's timeouts, whoever starts it
CONSOLIDATION_TIMEOUT = 60.0


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    """A backend's timeouts (the concurrency contract in dataclay_backend.locking names them)."""
    parser.add_argument("--lock-timeout", type=float, default=float(env_default("DC_LOCK_TIMEOUT", str(LOCK_TIMEOUT))),
                        help="seconds a call waits for an object another call holds before it fails with "
                             "ObjectBusyError (DC_LOCK_TIMEOUT)")
    parser.add_argument("--consolidation-timeout", type=float,
                        default=float(env_default("DC_CONSOLIDATION_TIMEOUT", str(CONSOLIDATION_TIMEOUT))),
                        help="seconds a prepared consolidation waits for its coordinator before it asks the "
                             "metadata service for the outcome (DC_CONSOLIDATION_TIMEOUT)")
    add_call_timeout_flags(parser)


def add_call_timeout_flags(parser: argparse.ArgumentParser) -> None:
    """Deadlines of this server's outgoing calls (dataclay.transport.Deadlines); apply them with
    configure_call_timeouts(args). 'none' or 0: no deadline."""
    from dataclay.transport import Deadlines, parse_seconds

    def seconds(text: str) -> float | None:
        try:
            return parse_seconds(text, None)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None

    defaults = Deadlines.from_env()
    parser.add_argument("--call-timeout", type=seconds, default=defaults.call,
                        help="seconds each call to another server (and each message of a stream) may take "
                             "before it fails with DeadlineExceededError (DC_CALL_TIMEOUT)")
    parser.add_argument("--method-timeout", type=seconds, default=defaults.method,
                        help="seconds an active method called on another backend may run (DC_METHOD_TIMEOUT)")
    parser.add_argument("--connect-timeout", type=seconds, default=defaults.connect,
                        help="seconds a call waits for a server that is not connected, e.g. restarting "
                             "(DC_CONNECT_TIMEOUT)")


def configure_call_timeouts(args: argparse.Namespace) -> None:
    from dataclay.transport import Deadlines, configure

    configure(Deadlines(call=args.call_timeout, method=args.method_timeout, connect=args.connect_timeout or 0.0))
