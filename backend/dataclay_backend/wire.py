"""Reading ids off the wire: the few checks every servicer makes before anything else."""
from __future__ import annotations

from uuid import UUID

from dataclay.exceptions import InvalidRequestError


def parse_uuid(raw: bytes, what: str) -> UUID:
    if len(raw) != 16:
        raise InvalidRequestError(f"{what} must be 16 bytes, got {len(raw)}")
    return UUID(bytes=raw)


def parse_keys(raws, what: str) -> list[bytes]:
    """Many ids, checked and kept as their 16 bytes (a move names up to millions of objects:
    building a UUID for each would cost more than storing them)."""
    keys = list(raws)
    for raw in keys:
        if len(raw) != 16:
            raise InvalidRequestError(f"{what} must be 16 bytes, got {len(raw)}")
    return keys


def optional_uuid(raw: bytes, what: str) -> UUID | None:
    return parse_uuid(raw, what) if raw else None
