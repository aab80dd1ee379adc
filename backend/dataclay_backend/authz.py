"""Authorization on every RPC: a server interceptor that checks the caller's role
(dataclay.protocol.roles) before any handler runs, and the identity binding helpers the
metadata service uses. A refusal is a typed PermissionDeniedError / UnauthenticatedError
(status code plus ErrorDetail) and a log line naming who called what."""
from __future__ import annotations

import logging
from typing import Any, Callable

import grpc

from dataclay.exceptions import to_detail
from dataclay.protocol import ERROR_METADATA_KEY
from dataclay.protocol.roles import BY_METHOD
from dataclay.security import BACKEND, Identity, PermissionDeniedError, UnauthenticatedError, peer_identity

log = logging.getLogger("dataclay.authz")


def refuse(context: grpc.ServicerContext, exc: Exception) -> None:
    code, detail = to_detail(exc)
    context.set_trailing_metadata(((ERROR_METADATA_KEY, detail.SerializeToString()),))
    context.abort(code, detail.message[:1000])


def denied(who: Identity | None, what: str, why: str) -> PermissionDeniedError:
    """A refusal of `what` to `who`, logged (who and what) as it is made."""
    log.warning("denied %s to %s: %s", what, who or "an anonymous caller", why)
    return PermissionDeniedError(f"{who or 'an anonymous caller'} may not {what}: {why}", caller=str(who))


class RoleInterceptor(grpc.ServerInterceptor):
    """Lets a call through only if its caller's role is in the table for its method.

    The check runs on every call, in the handler's thread, from that call's own verified
    certificate (peer_identity); what is built once per method is only the guarded handler (the
    table's roles for the method, its short name): gRPC hands the interceptor the same handler
    object for a method on every call, so wrapping it anew per call was pure overhead."""

    def __init__(self, table: dict[str, frozenset[str]] | None = None) -> None:
        self.table = BY_METHOD if table is None else table
        self._guarded: dict[str, tuple[Any, Any]] = {}  # method -> (its handler, that handler guarded)

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        known = self._guarded.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        guarded = self._guard(method, handler)
        self._guarded[method] = (handler, guarded)  # only methods the server has: a bounded table
        return guarded

    def _guard(self, method: str, handler: Any) -> Any:
        """`handler` with its behaviour run only for callers whose role the table allows."""
        allowed = self.table.get(method, frozenset())
        short = method.rsplit("/", 1)[-1]
        who_may = f"only {', '.join(sorted(allowed)) or 'nobody'} may"

        def guard(behavior: Callable) -> Callable:
            def guarded(request: Any, context: grpc.ServicerContext) -> Any:
                identity = peer_identity(context)
                if identity is None:
                    log.warning("refused %s: the caller has no identity (no client certificate)", short)
                    refuse(context, UnauthenticatedError(f"{short} needs credentials (a client certificate)"))
                if identity.role not in allowed:
                    refuse(context, denied(identity, f"call {short}", who_may))
                return behavior(request, context)

            return guarded

        kind = ("stream" if handler.request_streaming else "unary") + "_" + (
            "stream" if handler.response_streaming else "unary")
        return handler._replace(**{kind: guard(getattr(handler, kind))})


def backend_caller(context: grpc.ServicerContext, what: str) -> Identity | None:
    """The calling backend's identity, or None on a server without authentication (--insecure).
    A caller of another role never gets here (the role table lets only backends in)."""
    identity = peer_identity(context)
    if identity is not None and identity.role != BACKEND:
        raise denied(identity, what, "only a backend may")
    return identity
