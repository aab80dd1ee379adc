"""A server's limits (README, Configuration): past each, a RESOURCE_EXHAUSTED the server survives.

- a message's size, sent or received: DC_MAX_MESSAGE (dataclay.protocol.MAX_MESSAGE);
- concurrent calls: DC_MAX_CONCURRENT_RPCS (default 256). A call beyond it is refused at once with
  a ResourceExhaustedError, in gRPC's polling thread, before it takes a thread or its request is
  read; every admitted call has a thread of its own (the pool is as large as the bound, its threads
  are made when needed), so no admitted call waits behind held ones;
- streams per connection: DC_MAX_STREAMS (default 128: one caller's share, below the server's
  bound; more wait on the caller's side); a connection with no call for DC_MAX_CONNECTION_IDLE
  seconds (default 300) is closed (channels reconnect on their next call); a connection that does
  not finish its handshake in 10 s is closed; keepalive pings find dead peers (their calls end);
- a client stream (ReceiveObjects) whose caller sends nothing for the call deadline
  (DC_CALL_TIMEOUT, 90 s) is cancelled, so a held stream does not hold its thread for ever.

The health service's Check runs on a small pool of its own (grpcio's per-behaviour thread pool),
so a saturated data pool, or a flood of refused calls, never fails a liveness probe on the port.
"""
from __future__ import annotations

import collections
import functools
import os
from concurrent import futures
from typing import Any, Callable, Iterator

import grpc

from dataclay.exceptions import ResourceExhaustedError, to_detail
from dataclay import protocol
from dataclay.protocol import ERROR_METADATA_KEY

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
DEFAULT_MAX_CONCURRENT_RPCS = 256
DEFAULT_MAX_STREAMS = protocol.DEFAULT_MAX_STREAMS  # callers keep to it too (dataclay.protocol.max_streams)
DEFAULT_MAX_CONNECTION_IDLE = 300.0  # seconds
HANDSHAKE_TIMEOUT_MS = 10_000
HEALTH_WORKERS = 4
KEEPALIVE = [("grpc.keepalive_time_ms", 60_000), ("grpc.keepalive_timeout_ms", 20_000)]


def env_number(name: str, default: float, minimum: float, environ: Any = None) -> float:
    text = (os.environ if environ is None else environ).get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text[:40]!r}") from None
    return max(minimum, value)


class CountingPool(futures.ThreadPoolExecutor):
    """The data pool: counts the calls submitted and not finished (queued or running).

    Counted in a deque, one item per call: append and pop are atomic without a lock, and the
    count is its length. Each call is counted out by its own thread as it ends (no done
    callback): submitting costs little more than the pool's own submit, on gRPC's polling thread."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="dc-rpc")
        self._calls: collections.deque[None] = collections.deque()

    @property
    def active(self) -> int:
        return len(self._calls)

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        self._calls.append(None)
        try:
            return super().submit(self._counted, fn, args, kwargs)
        except BaseException:
            self._calls.pop()
            raise

    def _counted(self, fn: Callable, args: tuple, kwargs: dict) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            self._calls.pop()


def _on_pool(function: Callable, pool: futures.ThreadPoolExecutor) -> Callable:
    """Run a handler's behaviour on `pool` (grpcio's `experimental_thread_pool` of a behaviour)."""

    @functools.wraps(function)
    def run(*args: Any) -> Any:
        return function(*args)

    run.experimental_thread_pool = pool  # type: ignore[attr-defined]
    return run


def _refuse(limit: int) -> Callable:
    detail = to_detail(ResourceExhaustedError(
        f"this server is running its maximum of {limit} concurrent calls (DC_MAX_CONCURRENT_RPCS); "
        "nothing was done: retry later"))[1]

    def refuse(_requests: Any, context: grpc.ServicerContext) -> None:  # never reads the request
        context.set_trailing_metadata(((ERROR_METADATA_KEY, detail.SerializeToString()),))
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, detail.message)

    return refuse


def _watch_requests(behavior: Callable) -> Callable:
    """A client stream's behaviour, cancelled when its caller sends nothing for the call deadline."""
    from dataclay.transport import _IdleWatch, deadlines

    @functools.wraps(behavior)
    def watched(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        watch = _IdleWatch(context.cancel, deadlines().call)

        def messages() -> Iterator[Any]:
            try:
                for message in requests:
                    watch.touch()
                    yield message
                    watch.touch()
            finally:
                watch.stop()

        try:
            return behavior(messages(), context)
        finally:
            watch.stop()

    return watched


class Admission(grpc.ServerInterceptor):
    """Runs in gRPC's polling thread, before a call takes a thread: health checks go to their own
    pool; a data call beyond the bound is refused there too (on that pool), its request unread."""

    def __init__(self, data: CountingPool, fast: futures.ThreadPoolExecutor, limit: int) -> None:
        self.data, self.fast, self.limit = data, fast, limit
        self.refuse = grpc.stream_unary_rpc_method_handler(_on_pool(_refuse(limit), fast))

    def intercept_service(self, continuation, handler_call_details):
        if handler_call_details.method == HEALTH_CHECK:
            found = continuation(handler_call_details)
            if found is None or found.unary_unary is None:
                return found
            return grpc.unary_unary_rpc_method_handler(
                _on_pool(found.unary_unary, self.fast), found.request_deserializer, found.response_serializer)
        found = continuation(handler_call_details)
        if found is None:
            return None
        if self.data.active >= self.limit:
            return self.refuse
        if found.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _watch_requests(found.stream_unary), found.request_deserializer, found.response_serializer)
        return found


class ServerLimits:
    """What a grpc.server needs for the limits: its pool, its options, the admission interceptor."""

    def __init__(self, max_concurrent_rpcs: int | None = None, environ: Any = None, *,
                 max_streams: int | None = None, max_connection_idle: float | None = None) -> None:
        """Each limit as given (a server's flag), else from its environment variable, else the default."""
        self.max_concurrent_rpcs = int(max_concurrent_rpcs or env_number(
            "DC_MAX_CONCURRENT_RPCS", DEFAULT_MAX_CONCURRENT_RPCS, 1, environ))
        self.max_streams = int(max_streams or env_number("DC_MAX_STREAMS", DEFAULT_MAX_STREAMS, 1, environ))
        self.idle_ms = int(1000 * (max_connection_idle or env_number(
            "DC_MAX_CONNECTION_IDLE", DEFAULT_MAX_CONNECTION_IDLE, 0.1, environ)))
        self.pool = CountingPool(self.max_concurrent_rpcs)
        self.health_pool = futures.ThreadPoolExecutor(max_workers=HEALTH_WORKERS, thread_name_prefix="dc-health")
        self.admission = Admission(self.pool, self.health_pool, self.max_concurrent_rpcs)

    def options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.max_concurrent_streams", self.max_streams),
            ("grpc.max_connection_idle_ms", self.idle_ms),
            ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_MS),
            *KEEPALIVE,
        ]
