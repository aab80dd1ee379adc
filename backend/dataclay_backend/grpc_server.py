"""What every server here shares: the handler wrapper that sends typed errors, the gRPC server
with health checking, and a clean stop on SIGTERM or SIGINT."""
from __future__ import annotations

import errno
import functools
import logging
import signal
import socket
import threading
from concurrent import futures
from typing import Any, Callable, Iterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from dataclay.exceptions import DataClayException, to_detail
from dataclay.protocol import ERROR_METADATA_KEY, UNLIMITED_MESSAGES

log = logging.getLogger(__name__)


def _abort(context: grpc.ServicerContext, exc: Exception, method: str) -> None:
    if not isinstance(exc, DataClayException):
        log.info("%s failed: %s: %s", method, type(exc).__name__, exc)
    code, detail = to_detail(exc)
    context.set_trailing_metadata(((ERROR_METADATA_KEY, detail.SerializeToString()),))
    context.abort(code, detail.message[:1000])


def handler(method: Callable) -> Callable:
    """Wrap a servicer method: any exception becomes a status code plus an ErrorDetail."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:
            _abort(context, exc, method.__name__)

    return wrapper


def stream_handler(method: Callable) -> Callable:
    """Like `handler`, for server-streaming methods (generators)."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from method(self, request, context)
        except Exception as exc:
            _abort(context, exc, method.__name__)

    return wrapper


def _bind_failure(host: str, port: int) -> str:
    """Why gRPC could not bind host:port (it does not say): try a plain socket the same way."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does
            probe.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"port {port} is in use (another server listens there)"
        return exc.strerror or str(exc)
    return "gRPC could not bind it"


class Server:
    """A gRPC server on host:port (port 0 picks a free one) with the standard health service.

    The port is ours alone: gRPC's default `grpc.so_reuseport` would let a second server bind
    the same port and the kernel would spread connections over both, so it is off, and a port
    in use is an OSError ("cannot listen on host:port: port N is in use ...")."""

    def __init__(self, host: str, port: int, max_workers: int = 64) -> None:
        options = [*UNLIMITED_MESSAGES, ("grpc.so_reuseport", 0)]
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=options)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        try:
            self.port = self.grpc.add_insecure_port(f"{host}:{port}")
        except RuntimeError:  # grpcio >= 1.5x raises instead of returning 0
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot listen on {host}:{port}: {_bind_failure(host, port)}")
        self._stopped = threading.Event()

    def start(self) -> None:
        """Start serving; from now on SIGTERM or SIGINT stop the server gracefully."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: threading.Thread(target=self.stop, daemon=True).start())
        self.grpc.start()

    def set_serving(self) -> None:
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float = 5.0) -> None:
        self.health.enter_graceful_shutdown()
        self.grpc.stop(grace).wait()
        self._stopped.set()

    def wait_for_signal(self) -> None:
        """Block until SIGTERM or SIGINT has stopped the server."""
        self._stopped.wait()
