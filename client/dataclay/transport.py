"""gRPC at the edge: two transports with one interface, and error translation.

Operations (dataclay.operations) are written once as coroutines that await `transport.metadata`
and `transport.backend`. The blocking transport makes the call right there, in the calling
thread, and never suspends, so `run_blocking` can drive the coroutine without an event loop or a
thread hop. The async transport awaits grpc.aio calls in the running loop.
"""
from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Coroutine, Iterator, TypeVar
from uuid import UUID

import grpc
from grpc import _common  # the connectivity states of a blocking channel (see _connected)

from dataclay.exceptions import (BackendError, BackendUnavailableError, CallOutcomeUnknownError, DeadlineExceededError,
                                 ResourceExhaustedError, from_detail)
from dataclay.protocol import CHAIN_METADATA_KEY, CHANNEL_OPTIONS, ERROR_METADATA_KEY, max_streams
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.coalesce import StoreCoalescer
from dataclay.protocol import codec
from dataclay.protocol import dataclay_pb2_grpc as rpc
from dataclay.security import Credentials, open_channel

R = TypeVar("R")

# The call chain this thread or task is serving (set by a backend while it runs a request).
CURRENT_CHAIN: contextvars.ContextVar[str | None] = contextvars.ContextVar("dataclay_chain", default=None)


@dataclass(frozen=True)
class BackendInfo:
    id: UUID
    name: str
    host: str
    port: int
    draining: bool = False  # being emptied before it goes away: takes no new objects

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def describe(self) -> str:
        return self._description

    @functools.cached_property
    def _description(self) -> str:  # asked on every call (for the error it may raise): made once
        return f"backend {self.name} ({self.id}) at {self.address}"

    @classmethod
    def from_pb(cls, info: pb.BackendInfo) -> "BackendInfo":
        return cls(UUID(bytes=info.backend_id), info.name, info.host, info.port, info.draining)


def run_blocking(coro: Coroutine[Any, Any, R]) -> R:
    """Drive an operation to completion in this thread (blocking transport: never suspends)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("a blocking dataClay operation tried to suspend on an event loop")


def translate(error: grpc.RpcError, where: str, timeout: float | None = None, expired: bool = False) -> BaseException:
    """The exception a failed call stands for: ours from the allow-list, else by status code.
    The call had been sent: an UNAVAILABLE or a deadline leaves its outcome unknown."""
    for key, value in error.trailing_metadata() or ():
        if key == ERROR_METADATA_KEY:
            return from_detail(pb.ErrorDetail.FromString(value))
    code = error.code()
    if expired or code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceededError(
            f"{where} did not answer within {timeout} s: it may be stopped or overloaded, and the call may "
            "still take effect there; check the object before repeating a change (the deadline is "
            "Client(timeout=..., method_timeout=...), DC_CALL_TIMEOUT, DC_METHOD_TIMEOUT)", where=where)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:  # gRPC's own limits: message size, concurrent calls
        return ResourceExhaustedError(
            f"{where} refused the call: {(error.details() or '')[:200]} (a limit: DC_MAX_MESSAGE bounds a "
            "message, DC_MAX_CONCURRENT_RPCS a server's concurrent calls); nothing was done", where=where)
    if code == grpc.StatusCode.UNAVAILABLE:
        return CallOutcomeUnknownError(
            f"{where} stopped answering after the call was sent ({code.name}: {error.details()}); it may or may "
            "not have taken effect: check the object before repeating a change", where=where)
    return BackendError(f"{where} failed: {code.name}: {error.details()}", where=where)


def not_reached(where: str, seconds: float) -> BackendUnavailableError:
    """The channel did not connect within the connect timeout: nothing was sent."""
    error = BackendUnavailableError(
        f"{where} is unreachable (no connection within {seconds} s; nothing was sent); is it running, and does this "
        "process have its cluster's credentials (a secure cluster refuses plain text and other CAs' certificates: "
        "Client(credentials=...), DC_CREDENTIALS)?", where=where)
    error.not_sent = True
    return error


def _call_metadata() -> tuple[tuple[str, str], ...] | None:
    chain = CURRENT_CHAIN.get()
    return ((CHAIN_METADATA_KEY, chain),) if chain else None


def parse_seconds(text: str | None, default: float | None) -> float | None:
    """A timeout from the environment: seconds; 'none' or 0 for no deadline."""
    if text is None or not text.strip():
        return default
    if text.strip().lower() in ("none", "off", "0"):
        return None
    value = float(text)
    if value < 0:
        raise ValueError(f"a timeout cannot be negative: {text!r}")
    return value


FLUSH_SECONDS = 10.0


@dataclass(frozen=True)
class Deadlines:
    """Every deadline of this process's outgoing calls, defined here only (README, Configuration).

    - `call`: each unary call but active methods (attributes, stores, the metadata service,
      backends among themselves), and each message of a stream (a Move's progress, a transfer's
      chunk): a long move is never cut while it makes progress. 90 s: above a backend's lock wait
      (DC_LOCK_TIMEOUT, 60 s, after which it answers ObjectBusyError) plus its commit-point retries,
      so an honest call gets its answer rather than a deadline; a stopped server is reported.
    - `method`: CallActiveMethod. dataClay has no deadline on methods and they may legitimately
      run long: 1 hour stops a stopped backend from holding a caller forever without cutting
      honest methods; None (DC_METHOD_TIMEOUT=none) waits as long as the method runs.
    - `connect`: how long a call waits for a channel that is not connected (a server being
      restarted) before it fails with BackendUnavailableError, having sent nothing.
    - FlushRegistrations, which a lookup that misses asks of every backend, waits at most
      FLUSH_SECONDS (10 s, or `call` if shorter): a stopped backend holds such a lookup that
      long (after `connect`, for a channel not connected yet), not the whole call deadline.
    """

    call: float | None = 90.0
    method: float | None = 3600.0
    connect: float = 5.0

    @classmethod
    def from_env(cls, environ: Any = None) -> "Deadlines":
        env = os.environ if environ is None else environ
        return cls(
            call=parse_seconds(env.get("DC_CALL_TIMEOUT"), cls.call),
            method=parse_seconds(env.get("DC_METHOD_TIMEOUT"), cls.method),
            connect=parse_seconds(env.get("DC_CONNECT_TIMEOUT"), cls.connect) or 0.0,
        )

    def of(self, method: str) -> float | None:
        if method == "CallActiveMethod":
            return self.method
        if method == "FlushRegistrations":
            return FLUSH_SECONDS if self.call is None else min(self.call, FLUSH_SECONDS)
        return self.call


_deadlines = Deadlines.from_env()


def configure(deadlines: Deadlines) -> None:
    """Set this process's deadlines (Client(...) and the servers' flags do)."""
    global _deadlines
    _deadlines = deadlines


def deadlines() -> Deadlines:
    return _deadlines


def _connected(channel: grpc.Channel) -> bool:
    """Whether a blocking channel is connected now (without trying to connect)."""
    try:
        state = channel._channel.check_connectivity_state(False)  # no public accessor on grpc.Channel
        return _common.CYGRPC_CONNECTIVITY_STATE_TO_CHANNEL_CONNECTIVITY[state] is grpc.ChannelConnectivity.READY
    except (AttributeError, KeyError):
        return True  # unknown: send, and treat a failure as an unknown outcome


def _connect(channel: grpc.Channel, where: str) -> None:
    """Wait (bounded) until the channel is connected: a restarted server is reached as soon as
    it listens (the channels reconnect fast: dataclay.protocol.FAST_RECONNECT)."""
    if _connected(channel):
        return
    seconds = _deadlines.connect
    deadline = time.monotonic() + seconds
    # Watched from this thread, not with grpc.channel_ready_future: that one's polling thread
    # outlives it by up to 0.2 s and dies with "Channel closed!" if the channel closes meanwhile.
    raw = channel._channel  # no public blocking accessor on grpc.Channel
    try:
        state = raw.check_connectivity_state(True)
        while _common.CYGRPC_CONNECTIVITY_STATE_TO_CHANNEL_CONNECTIVITY[state] is not grpc.ChannelConnectivity.READY:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise not_reached(where, seconds)
            raw.watch_connectivity_state(state, time.time() + min(remaining, 0.5))
            state = raw.check_connectivity_state(True)
    except ValueError:  # the channel was closed (the client stopped): nothing was sent
        raise not_reached(where, seconds) from None


class _IdleWatch:
    """Cancels a streaming call when no message passes for `seconds` (a per-message deadline)."""

    def __init__(self, cancel: Callable[[], Any], seconds: float | None) -> None:
        self.fired = False
        self.seconds = seconds
        self._cancel = cancel
        self._done = False
        self._condition = threading.Condition()
        self._until = time.monotonic() + (seconds or 0)
        if seconds is not None:
            threading.Thread(target=self._run, name="dataclay-deadline", daemon=True).start()

    def touch(self) -> None:
        if self.seconds is not None:
            self._until = time.monotonic() + self.seconds

    def _run(self) -> None:
        with self._condition:
            while not self._done:
                remaining = self._until - time.monotonic()
                if remaining <= 0:
                    self.fired = True
                    break
                self._condition.wait(remaining)
        if self.fired:
            self._cancel()

    def stop(self) -> None:
        with self._condition:
            self._done = True
            self._condition.notify()


class _Stubs:
    """Channels and stubs by address, for one kind of channel (blocking or grpc.aio). Each
    channel has its permits: at most half of max_streams() unary calls in flight on it
    (dataclay.protocol says why), the others wait for one on the caller's side. Streams (moves,
    transfers: a few at a time) take none, so an abandoned stream can never keep one."""

    def __init__(self, metadata_address: str, open_channel: Callable[..., Any],
                 new_permits: Callable[[int], Any]) -> None:
        self._metadata_address = metadata_address
        self._metadata_where = f"the metadata service at {metadata_address}"
        self._open_channel = open_channel
        self._new_permits = new_permits
        # Half the server's per-connection count: a stream this side has seen finish may still
        # count at the server for a moment (its end not processed there yet), and a burst at the
        # full count is refused in part (measured: 24 of 32 refused some, 16 of 32 none).
        self._streams = max(1, max_streams() // 2)
        self._channels: list[Any] = []
        self._permits: dict[int, Any] = {}  # id(channel) -> its permits
        self._metadata_channel = self._channel(metadata_address)
        self._metadata_stub = rpc.MetadataStub(self._metadata_channel)
        self._backend_stubs: dict[str, tuple[Any, Any]] = {}

    def _channel(self, address: str) -> Any:
        channel = self._open_channel(address, options=CHANNEL_OPTIONS)
        self._channels.append(channel)
        self._permits[id(channel)] = self._new_permits(self._streams)
        return channel

    def _permit(self, channel: Any) -> Any:
        """The permits of a channel (a context manager: `with` / `async with`)."""
        return self._permits[id(channel)]

    def _peer(self, info: BackendInfo) -> tuple[Any, Any]:
        """(channel, stub) of a backend."""
        peer = self._backend_stubs.get(info.address)
        if peer is None:
            channel = self._channel(info.address)
            peer = self._backend_stubs[info.address] = (channel, codec.backend_stub(channel))
        return peer


class Permits:
    """At most `count` holders at a time, the others wait: a queue of `count` tokens. Taken and
    given back on every unary call; the queue's get and put are C calls (a threading.Semaphore
    runs a Condition in Python each way)."""

    __slots__ = ("_tokens",)

    def __init__(self, count: int) -> None:
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(count):
            self._tokens.put(None)

    def acquire(self) -> None:
        self._tokens.get()

    def release(self) -> None:
        self._tokens.put(None)

    def __enter__(self) -> None:
        self._tokens.get()

    def __exit__(self, *exc: object) -> None:
        self._tokens.put(None)


class BlockingTransport(_Stubs):
    """Calls straight from the calling thread on shared grpc channels."""

    def __init__(self, metadata_address: str, credentials: Credentials | None = None) -> None:
        super().__init__(metadata_address, functools.partial(open_channel, credentials=credentials),
                         Permits)

    def _unary(self, channel: Any, stub: Any, where: str, method: str, request: Any) -> Any:
        _connect(channel, where)
        timeout = _deadlines.of(method)
        with self._permit(channel):
            try:
                return getattr(stub, method)(request, metadata=_call_metadata(), timeout=timeout)
            except grpc.RpcError as error:
                raise translate(error, where, timeout) from None

    async def metadata(self, method: str, request: Any) -> Any:
        return self._unary(self._metadata_channel, self._metadata_stub, self._metadata_where, method, request)

    async def backend(self, info: BackendInfo, method: str, request: Any) -> Any:
        channel, stub = self._peer(info)
        return self._unary(channel, stub, info.describe(), method, request)

    async def store_objects(self, info: BackendInfo, records: list[pb.ObjectRecord], alias: str) -> None:
        self._unary(*self._peer(info), info.describe(), "StoreObjects",
                    pb.StoreObjectsRequest(objects=records, alias=alias))

    async def backend_stream(self, info: BackendInfo, method: str, request: Any) -> AsyncIterator[Any]:
        """A server-streaming call, as an async iterator (that never suspends); the deadline
        applies to each message."""
        channel, stub = self._peer(info)
        where = info.describe()
        _connect(channel, where)
        call = getattr(stub, method)(request, metadata=_call_metadata())
        watch = _IdleWatch(call.cancel, _deadlines.call)
        try:
            for message in call:
                watch.touch()
                yield message
                watch.touch()
        except grpc.RpcError as error:
            raise translate(error, where, watch.seconds, watch.fired) from None
        finally:
            watch.stop()

    def start(self, info: BackendInfo, method: str, request: Any) -> Callable[[], Any]:
        """Start a call without waiting for it; the function returned waits for its result."""
        channel, stub = self._peer(info)
        where = info.describe()
        _connect(channel, where)
        timeout = _deadlines.of(method)
        permit = self._permit(channel)
        permit.acquire()
        try:
            future = getattr(stub, method).future(request, metadata=_call_metadata(), timeout=timeout)
        except BaseException:
            permit.release()
            raise
        future.add_done_callback(lambda _: permit.release())

        def result() -> Any:
            try:
                return future.result()
            except grpc.RpcError as error:
                raise translate(error, where, timeout) from None

        return result

    def send_stream(self, info: BackendInfo, method: str, requests: Iterator[Any]) -> Any:
        """A client-streaming call (backends use it to transfer objects); the deadline applies
        to each message sent, and to the reply after the last."""
        channel, stub = self._peer(info)
        where = info.describe()
        _connect(channel, where)
        calls: list[Any] = []
        watch = _IdleWatch(lambda: calls and calls[0].cancel(), _deadlines.call)

        def watched() -> Iterator[Any]:
            for message in requests:
                watch.touch()
                yield message
                watch.touch()

        future = getattr(stub, method).future(watched(), metadata=_call_metadata())
        calls.append(future)
        if watch.fired:  # expired before the call existed
            future.cancel()
        try:
            return future.result()
        except grpc.RpcError as error:
            raise translate(error, where, watch.seconds, watch.fired) from None
        except grpc.FutureCancelledError:
            raise translate_cancelled(where, watch.seconds) from None
        finally:
            watch.stop()

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        self._permits.clear()
        self._backend_stubs.clear()


def translate_cancelled(where: str, seconds: float | None) -> BaseException:
    return DeadlineExceededError(
        f"{where} received nothing for {seconds} s of a stream (DC_CALL_TIMEOUT): it may be stopped or "
        "overloaded, and the call may still take effect there", where=where)


class AsyncTransport(_Stubs):
    """The same calls on grpc.aio channels, bound to one event loop."""

    def __init__(self, metadata_address: str, credentials: Credentials | None = None) -> None:
        super().__init__(metadata_address, functools.partial(open_channel, credentials=credentials, aio=True),
                         asyncio.Semaphore)
        self._stores = StoreCoalescer(lambda info, request: self.backend(info, "StoreObjects", request))

    @staticmethod
    async def _connect(channel: grpc.aio.Channel, where: str) -> None:
        if channel.get_state(try_to_connect=False) is grpc.ChannelConnectivity.READY:
            return
        seconds = _deadlines.connect
        try:
            await asyncio.wait_for(channel.channel_ready(), seconds)
        except asyncio.TimeoutError:
            raise not_reached(where, seconds) from None

    async def _unary(self, channel: Any, stub: Any, where: str, method: str, request: Any) -> Any:
        await self._connect(channel, where)
        timeout = _deadlines.of(method)
        async with self._permit(channel):
            try:
                return await getattr(stub, method)(request, metadata=_call_metadata(), timeout=timeout)
            except grpc.RpcError as error:
                raise translate(error, where, timeout) from None

    async def metadata(self, method: str, request: Any) -> Any:
        return await self._unary(self._metadata_channel, self._metadata_stub, self._metadata_where, method, request)

    async def backend(self, info: BackendInfo, method: str, request: Any) -> Any:
        channel, stub = self._peer(info)
        return await self._unary(channel, stub, info.describe(), method, request)

    async def store_objects(self, info: BackendInfo, records: list[pb.ObjectRecord], alias: str) -> None:
        """StoreObjects; without an alias, together with the other stores for that backend that
        are ready at the same moment (dataclay.coalesce: what each caller is told stays true)."""
        if alias:
            await self.backend(info, "StoreObjects", pb.StoreObjectsRequest(objects=records, alias=alias))
        else:
            await self._stores.store(info, records)

    async def backend_stream(self, info: BackendInfo, method: str, request: Any) -> AsyncIterator[Any]:
        """A server-streaming call; the deadline applies to each message."""
        channel, stub = self._peer(info)
        where = info.describe()
        await self._connect(channel, where)
        call = getattr(stub, method)(request, metadata=_call_metadata())
        seconds = _deadlines.call
        try:
            while True:
                try:
                    message = await asyncio.wait_for(call.read(), seconds)
                except asyncio.TimeoutError:
                    call.cancel()
                    raise translate_cancelled(where, seconds) from None
                if message is grpc.aio.EOF:
                    return
                yield message
        except grpc.RpcError as error:
            raise translate(error, where, seconds) from None
