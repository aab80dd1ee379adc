"""Reading ids off the wire: the few checks every servicer makes before anything else."""
from __future__ import annotations

from uuid import UUID

from dataclay.exceptions import InvalidRequestError


def parse_uuid(raw: bytes, what: str) -> UUID:
    if len(raw) != 16:
        raise InvalidRequestError(f"{what} must be 16 bytes, got {len(raw)}")
    return UUID(bytes=raw)


def optional_uuid(raw: bytes, what: str) -> UUID | None:
    return parse_uuid(raw, what) if raw else None
