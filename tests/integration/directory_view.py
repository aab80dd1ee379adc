"""What the directory lists, asked directly by a test. A backend registers the new objects it
stores just after acknowledging them (dataclay_backend/registrations.py): these helpers first
have it send what it still has on its way, as every caller that relies on the listing does."""
from __future__ import annotations

from uuid import UUID

from dataclay import Client
from dataclay.operations import backend_info
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.transport import run_blocking


def owned(client: Client, backend_id: UUID) -> int:
    """How many objects the directory lists for the backend (draining or not)."""
    rt = client.runtime
    info = run_blocking(backend_info(rt, rt.blocking, backend_id))
    run_blocking(rt.blocking.backend(info, "FlushRegistrations", pb.FlushRegistrationsRequest()))
    reply = run_blocking(rt.blocking.metadata("ListOwnedObjects", pb.OwnedObjectsRequest(backend_id=backend_id.bytes)))
    return len(reply.object_ids)
