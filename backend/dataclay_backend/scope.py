"""A request's scope on a backend: what one incoming request touched, changed and made
persistent, until its changes are stored (dataclay_backend.request). The current scope is a
context variable, so the object model's hooks find it without passing it around."""
from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID


@dataclass
class RequestScope:
    chain: str  # the call chain: nested calls of one chain re-enter its object locks
    touched: dict[UUID, Any] = field(default_factory=dict)  # may have changed
    dirty: set[UUID] = field(default_factory=set)  # did change: a property was assigned
    new: dict[UUID, Any] = field(default_factory=dict)  # became persistent in this request
    pending: set[UUID] = field(default_factory=set)  # touched, change not yet stored (counted in PENDING)
    # Guards `new` and storing it: objects the request created may be stored by another thread
    # (a worker thread of the method, a request that read a reference to one) before it ends.
    lock: threading.RLock = field(default_factory=threading.RLock)


SCOPE: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar("dataclay_scope", default=None)
