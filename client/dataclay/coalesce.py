"""Concurrent stores of new objects, sent together.

`await asyncio.gather(*(obj.a_make_persistent(...) for obj in objects))` from one event loop
would send one StoreObjects per object, each a gRPC request, a registration in the metadata
service and a SQLite transaction on the backend. A StoreObjects takes any number of objects, so
the stores that are ready at the same moment for the same backend (without an alias: an alias
belongs to one request) go as one request; it registers and stores them in one transaction each.
Nothing waits on purpose: the first store yields once to the event loop, and whatever other
stores are ready by then join it, up to MAX_OBJECTS objects or MAX_BYTES of state.

What each caller is told stays true for its own objects:
- success: the request that carried them stored and registered them (all of it, or nothing);
- the server refused the combined request (one object's state, a full disk, a limit): it did
  nothing, so each store is sent again on its own and each caller gets its own answer;
- the outcome is unknown (the request was sent, then no reply): every caller of that request
  gets that, as it would for a request of its own; never sent (not connected): every caller
  gets that.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable
from uuid import UUID

from dataclay.exceptions import BackendUnavailableError, DataClayException
from dataclay.protocol import dataclay_pb2 as pb

MAX_OBJECTS = 1024
MAX_BYTES = 4 * 2**20


class _Batch:
    __slots__ = ("records", "futures", "size")

    def __init__(self) -> None:
        self.records: list[list[pb.ObjectRecord]] = []  # one list per store
        self.futures: list[asyncio.Future] = []
        self.size = 0

    def fits(self, records: list[pb.ObjectRecord], size: int) -> bool:
        return (sum(map(len, self.records)) + len(records) <= MAX_OBJECTS and self.size + size <= MAX_BYTES)


class StoreCoalescer:
    """The stores of one event loop's transport (dataclay.transport.AsyncTransport). `send`
    performs one StoreObjects on a backend (by id, with its request) and raises the typed error."""

    def __init__(self, send: Callable[[Any, pb.StoreObjectsRequest], Awaitable[Any]]) -> None:
        self._send = send
        self._open: dict[UUID, _Batch] = {}
        self._flushing: set[asyncio.Future] = set()

    async def store(self, info: Any, records: list[pb.ObjectRecord]) -> None:
        """Store these new objects on backend `info` (no alias), with whatever other stores are
        ready for it now; returns when they are stored, or raises what their request got."""
        size = sum(len(record.state) for record in records)
        batch = self._open.get(info.id)
        leader = batch is None or not batch.fits(records, size)
        if leader:
            batch = self._open[info.id] = _Batch()
        future = asyncio.get_running_loop().create_future()
        batch.records.append(records)
        batch.futures.append(future)
        batch.size += size
        if leader:
            try:
                await asyncio.sleep(0)  # the stores that are ready now join this batch
            finally:  # even if this caller is cancelled here: the others' stores go
                if self._open.get(info.id) is batch:
                    del self._open[info.id]
                # a task of its own: a caller cancelled while waiting does not cancel the others' request
                flush = asyncio.ensure_future(self._flush(info, batch))
                self._flushing.add(flush)  # a strong reference until it is done
                flush.add_done_callback(self._flushing.discard)
        await future

    async def _flush(self, info: Any, batch: _Batch) -> None:
        if len(batch.records) == 1:
            await self._settle(batch.futures[0], self._send(info, pb.StoreObjectsRequest(objects=batch.records[0])))
            return
        request = pb.StoreObjectsRequest(objects=[record for records in batch.records for record in records])
        try:
            await self._send(info, request)
        except DataClayException as error:
            if isinstance(error, BackendUnavailableError):  # never sent, or sent with its outcome unknown
                for future in batch.futures:
                    _set(future, error=error)
                return
            # refused as a whole, nothing done: each store on its own, each caller its own answer
            await asyncio.gather(*(self._settle(future, self._send(info, pb.StoreObjectsRequest(objects=records)))
                                   for records, future in zip(batch.records, batch.futures)))
            return
        except BaseException as error:  # not a typed answer (cancelled, a bug): everyone hears it
            for future in batch.futures:
                _set(future, error=error)
            raise
        for future in batch.futures:
            _set(future)

    @staticmethod
    async def _settle(future: asyncio.Future, call: Awaitable[Any]) -> None:
        try:
            await call
        except BaseException as error:  # the caller's own answer
            _set(future, error=error)
        else:
            _set(future)


def _set(future: asyncio.Future, error: BaseException | None = None) -> None:
    if future.done():  # its caller was cancelled
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
