"""What every server here shares: the handler wrapper that sends typed errors, the gRPC server
with health checking, and a clean stop on SIGTERM or SIGINT."""
from __future__ import annotations

import errno
import functools
import logging
import os
import signal
import socket
import sysconfig
import threading
import uuid
from concurrent import futures
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from dataclay.exceptions import DataClayException, to_detail
from dataclay_backend.server_limits import ServerLimits
from dataclay.protocol import ERROR_METADATA_KEY, UNLIMITED_MESSAGES

log = logging.getLogger(__name__)


MAX_ECHO = 1000  # characters of an error's message sent back (input it quotes is cut here at the latest)
MAX_FIELD = 256  # characters of each of its fields


def _code_paths() -> tuple[str, ...]:
    """Where this system's code lives, and the standard library's, grpc's, protobuf's."""
    import google.protobuf

    import dataclay
    import dataclay_backend

    paths = {str(Path(module.__file__).resolve().parent) for module in (dataclay, dataclay_backend, grpc, google.protobuf)}
    for key in ("stdlib", "platstdlib"):
        if sysconfig.get_paths().get(key):
            paths.add(str(Path(sysconfig.get_paths()[key]).resolve()))
    return tuple(path + os.sep for path in paths)


_SYSTEM_CODE: tuple[str, ...] = ()


def raised_by_user_code(exc: BaseException) -> bool:
    """Whether the exception passed through a frame of code that is not this system's, the
    standard library's or grpc's: a model module's active method. It is then the user's, and
    travels with its traceback; otherwise it is a defect of ours."""
    global _SYSTEM_CODE
    if not _SYSTEM_CODE:
        _SYSTEM_CODE = _code_paths()
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith("<"):
            try:
                filename = str(Path(filename).resolve())
            except OSError:
                pass
            if not filename.startswith(_SYSTEM_CODE):
                return True
        tb = tb.tb_next
    return False


def bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


def error_detail(exc: Exception, method: str):
    """(code, ErrorDetail) sent for an exception: ours typed, with a bounded message and fields;
    a user exception from an active method with its traceback; anything else (a defect of ours)
    a generic internal error naming an id that is logged here with the traceback: no server
    traceback, path or unbounded input reaches the caller."""
    if isinstance(exc, DataClayException) or raised_by_user_code(exc):
        if not isinstance(exc, DataClayException):
            log.info("%s failed: %s: %s", method, type(exc).__name__, bounded(str(exc), MAX_ECHO))
        code, detail = to_detail(exc)
    elif type(exc) is AttributeError:  # a property never set reads as AttributeError, as in Python
        code, detail = to_detail(exc)
        detail.remote_traceback = ""
    else:
        error_id = uuid.uuid4().hex[:12]
        log.error("%s failed with an internal error (error id %s)", method, error_id, exc_info=exc)
        code, detail = to_detail(DataClayException(
            f"internal error in {method} (error id {error_id}; the server's log has the details)", error_id=error_id))
    detail.message = bounded(detail.message, MAX_ECHO)
    for key in list(detail.fields):
        detail.fields[key] = bounded(detail.fields[key], MAX_FIELD)
    return code, detail


def _abort(context: grpc.ServicerContext, exc: Exception, method: str) -> None:
    code, detail = error_detail(exc, method)
    context.set_trailing_metadata(((ERROR_METADATA_KEY, detail.SerializeToString()),))
    context.abort(code, detail.message[:MAX_ECHO])


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
    """A gRPC server on host:port (port 0 picks a free one) with the standard health service,
    within the limits of dataclay_backend.server_limits (`max_workers`: the bound of concurrent
    calls, else DC_MAX_CONCURRENT_RPCS).

    The port is ours alone: gRPC's default `grpc.so_reuseport` would let a second server bind
    the same port and the kernel would spread connections over both, so it is off, and a port
    in use is an OSError ("cannot listen on host:port: port N is in use ...")."""

    def __init__(self, host: str, port: int, max_workers: int | None = None, credentials: Any = None,
                 health_port: int | None = None, limits: ServerLimits | None = None) -> None:
        """`credentials` (dataclay.security.Credentials): serve mutual TLS only, and let each
        call through only if its caller's role may make it (dataclay.protocol.roles); None
        (--insecure): plain text, no authentication. `health_port`: also answer the health
        service's Check (and nothing else) in plain text there, for probes that cannot present a
        certificate (the kubelet's gRPC probes). `limits`: the server's flags (config.server_limits);
        by default from the environment."""
        from dataclay_backend.authz import RoleInterceptor

        self.limits = limits or ServerLimits(max_workers)
        options = [*UNLIMITED_MESSAGES, ("grpc.so_reuseport", 0), *self.limits.options()]
        interceptors = [self.limits.admission, *([RoleInterceptor()] if credentials is not None else [])]
        self.grpc = grpc.server(self.limits.pool, options=options,
                                interceptors=interceptors)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        try:
            address = f"{host}:{port}"
            self.port = (self.grpc.add_insecure_port(address) if credentials is None
                         else self.grpc.add_secure_port(address, credentials.server_credentials()))
        except RuntimeError:  # grpcio >= 1.5x raises instead of returning 0
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot listen on {host}:{port}: {_bind_failure(host, port)}")
        self.health_server = None if health_port is None else self._health_server(host, health_port)
        self._stopped = threading.Event()

    def _health_server(self, host: str, port: int) -> grpc.Server:
        """A plain-text server of the health service's Check alone (no Watch: no stream to hold),
        on two threads of its own; it tells only SERVING or not."""
        check = grpc.unary_unary_rpc_method_handler(
            self.health.Check, request_deserializer=health_pb2.HealthCheckRequest.FromString,
            response_serializer=health_pb2.HealthCheckResponse.SerializeToString)
        server = grpc.server(futures.ThreadPoolExecutor(2, thread_name_prefix="dc-health"),
                             handlers=[grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": check})],
                             options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 4096)])
        try:
            bound = server.add_insecure_port(f"{host}:{port}")
        except RuntimeError:
            bound = 0
        if bound == 0:
            raise OSError(f"cannot listen on {host}:{port} (health): {_bind_failure(host, port)}")
        self.health_port = bound
        return server

    def start(self) -> None:
        """Start serving; from now on SIGTERM or SIGINT stop the server gracefully."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: threading.Thread(target=self.stop, daemon=True).start())
        self.grpc.start()
        if self.health_server is not None:
            self.health_server.start()

    def set_serving(self) -> None:
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float = 5.0) -> None:
        self.health.enter_graceful_shutdown()
        self.grpc.stop(grace).wait()
        if self.health_server is not None:
            self.health_server.stop(0)
        self._stopped.set()

    def wait_for_signal(self) -> None:
        """Block until SIGTERM or SIGINT has stopped the server."""
        self._stopped.wait()
