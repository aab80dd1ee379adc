"""Reading a paged answer of the wire contract to its end: a backend's objects come in pages
(ListOwnedObjects), so any number of them fits the message limit. The loop is written once for
both call styles; callers pass the bound call (a stub method, or a transport's coroutine)."""
from __future__ import annotations

from typing import Awaitable, Callable

from dataclay.protocol import dataclay_pb2 as pb

Page = pb.OwnedObjectsPage
Request = pb.OwnedObjectsRequest


def _next(request: Request, page: Page) -> Request | None:
    if not page.more or not page.object_ids:
        return None
    return Request(backend_id=request.backend_id, after=page.object_ids[-1])


def owned_objects(call: Callable[[Request], Page], backend_id: bytes) -> list[bytes]:
    """Every object id a backend owns (16 bytes each), in id order."""
    ids: list[bytes] = []
    request: Request | None = Request(backend_id=backend_id)
    while request is not None:
        page = call(request)
        ids.extend(page.object_ids)
        request = _next(request, page)
    return ids


async def a_owned_objects(call: Callable[[Request], Awaitable[Page]], backend_id: bytes) -> list[bytes]:
    """owned_objects, for an asynchronous call."""
    ids: list[bytes] = []
    request: Request | None = Request(backend_id=backend_id)
    while request is not None:
        page = await call(request)
        ids.extend(page.object_ids)
        request = _next(request, page)
    return ids
