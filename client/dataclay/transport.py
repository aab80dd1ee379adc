"""gRPC at the edge: two transports with one interface, and error translation.

Operations (dataclay.operations) are written once as coroutines that await `transport.metadata`
and `transport.backend`. The blocking transport makes the call right there, in the calling
thread, and never suspends, so `run_blocking` can drive the coroutine without an event loop or a
thread hop. The async transport awaits grpc.aio calls in the running loop.
"""
from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Coroutine, Iterator, TypeVar
from uuid import UUID

import grpc

from dataclay.exceptions import BackendError, BackendUnavailableError, from_detail
from dataclay.protocol import CHAIN_METADATA_KEY, ERROR_METADATA_KEY, UNLIMITED_MESSAGES
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.protocol import codec
from dataclay.protocol import dataclay_pb2_grpc as rpc

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


def translate(error: grpc.RpcError, where: str) -> BaseException:
    """The exception a failed call stands for: ours from the allow-list, else by status code."""
    for key, value in error.trailing_metadata() or ():
        if key == ERROR_METADATA_KEY:
            return from_detail(pb.ErrorDetail.FromString(value))
    code = error.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return BackendUnavailableError(
            f"{where} is unreachable ({code.name}: {error.details()}); is it running?", where=where
        )
    return BackendError(f"{where} failed: {code.name}: {error.details()}", where=where)


def _call_metadata() -> tuple[tuple[str, str], ...] | None:
    chain = CURRENT_CHAIN.get()
    return ((CHAIN_METADATA_KEY, chain),) if chain else None


class _Stubs:
    """Channels and stubs by address, for one kind of channel (blocking or grpc.aio)."""

    def __init__(self, metadata_address: str, open_channel: Callable[..., Any]) -> None:
        self._metadata_address = metadata_address
        self._open_channel = open_channel
        self._channels: list[Any] = []
        self._metadata_stub = rpc.MetadataStub(self._channel(metadata_address))
        self._backend_stubs: dict[str, Any] = {}

    def _channel(self, address: str) -> Any:
        channel = self._open_channel(address, options=UNLIMITED_MESSAGES)
        self._channels.append(channel)
        return channel

    def _stub(self, info: BackendInfo) -> Any:
        stub = self._backend_stubs.get(info.address)
        if stub is None:
            stub = self._backend_stubs[info.address] = codec.backend_stub(self._channel(info.address))
        return stub

    def _metadata_failed(self, error: grpc.RpcError) -> BaseException:
        return translate(error, f"the metadata service at {self._metadata_address}")


class BlockingTransport(_Stubs):
    """Calls straight from the calling thread on shared grpc channels."""

    def __init__(self, metadata_address: str) -> None:
        super().__init__(metadata_address, grpc.insecure_channel)

    async def metadata(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._metadata_stub, method)(request, metadata=_call_metadata())
        except grpc.RpcError as error:
            raise self._metadata_failed(error) from None

    async def backend(self, info: BackendInfo, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub(info), method)(request, metadata=_call_metadata())
        except grpc.RpcError as error:
            raise translate(error, info.describe()) from None

    async def backend_stream(self, info: BackendInfo, method: str, request: Any) -> AsyncIterator[Any]:
        """A server-streaming call, as an async iterator (that never suspends)."""
        try:
            for message in getattr(self._stub(info), method)(request, metadata=_call_metadata()):
                yield message
        except grpc.RpcError as error:
            raise translate(error, info.describe()) from None

    def start(self, info: BackendInfo, method: str, request: Any) -> Callable[[], Any]:
        """Start a call without waiting for it; the function returned waits for its result."""
        future = getattr(self._stub(info), method).future(request, metadata=_call_metadata())

        def result() -> Any:
            try:
                return future.result()
            except grpc.RpcError as error:
                raise translate(error, info.describe()) from None

        return result

    def send_stream(self, info: BackendInfo, method: str, requests: Iterator[Any]) -> Any:
        """A client-streaming call (backends use it to transfer objects)."""
        try:
            return getattr(self._stub(info), method)(requests, metadata=_call_metadata())
        except grpc.RpcError as error:
            raise translate(error, info.describe()) from None

    def close(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        self._backend_stubs.clear()


class AsyncTransport(_Stubs):
    """The same calls on grpc.aio channels, bound to one event loop."""

    def __init__(self, metadata_address: str) -> None:
        super().__init__(metadata_address, grpc.aio.insecure_channel)

    async def metadata(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self._metadata_stub, method)(request, metadata=_call_metadata())
        except grpc.RpcError as error:
            raise self._metadata_failed(error) from None

    async def backend(self, info: BackendInfo, method: str, request: Any) -> Any:
        try:
            return await getattr(self._stub(info), method)(request, metadata=_call_metadata())
        except grpc.RpcError as error:
            raise translate(error, info.describe()) from None

    async def backend_stream(self, info: BackendInfo, method: str, request: Any) -> AsyncIterator[Any]:
        try:
            async for message in getattr(self._stub(info), method)(request, metadata=_call_metadata()):
                yield message
        except grpc.RpcError as error:
            raise translate(error, info.describe()) from None

