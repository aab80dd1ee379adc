"""Client: connects this process to a dataClay cluster (the metadata service)."""
from __future__ import annotations

import os
from pathlib import Path
from uuid import UUID

from dataclay import operations as ops
from dataclay.runtime import Runtime, set_runtime, current_runtime
from dataclay import transport
from dataclay.security import Credentials, client_credentials
from dataclay.transport import BackendInfo, Deadlines, run_blocking

DEFAULT_PORT = 16587


class Client:
    """`Client(host, port).start()` makes this process a client of the cluster whose metadata
    service is at host:port (defaults from DC_HOST / DATACLAY_METADATA_HOST and DC_PORT /
    DATACLAY_METADATA_PORT, then 127.0.0.1:16587). username, password and dataset are
    accepted for compatibility with dataClay 4 code and not used.

    `credentials`: the credentials directory (with ca.pem, client.pem, client.key) or a
    dataclay.security.Credentials; None: DC_CREDENTIALS, else ./dataclay-data/credentials of a
    `dataclay up` run here, else (or with DC_INSECURE=1) plain text, which only an --insecure
    cluster accepts.

    Deadlines (seconds; None: no deadline), for this process's calls (dataclay.transport.Deadlines):
    `timeout` for each call but active methods and for each message of a stream (DC_CALL_TIMEOUT,
    default 90), `method_timeout` for active methods (DC_METHOD_TIMEOUT, default 3600),
    `connect_timeout` for a server that is not connected, e.g. being restarted (DC_CONNECT_TIMEOUT,
    default 5). An expired deadline raises DeadlineExceededError."""

    _UNSET: object = object()

    def __init__(
        self,
        host: str | None = None,
        port: int | str | None = None,
        username: str | None = None,
        password: str | None = None,
        dataset: str | None = None,
        local_backend: str | None = None,
        timeout: float | None | object = _UNSET,
        method_timeout: float | None | object = _UNSET,
        connect_timeout: float | object = _UNSET,
        credentials: "str | Path | Credentials | None" = None,
    ) -> None:
        self.host = host or os.environ.get("DC_HOST") or os.environ.get("DATACLAY_METADATA_HOST") or "127.0.0.1"
        self.port = int(port or os.environ.get("DC_PORT") or os.environ.get("DATACLAY_METADATA_PORT") or DEFAULT_PORT)
        self.runtime: Runtime | None = None
        self.credentials = credentials
        chosen = {name: value for name, value in
                  (("call", timeout), ("method", method_timeout), ("connect", connect_timeout)) if value is not self._UNSET}
        self.deadlines = Deadlines(**{**Deadlines.from_env().__dict__, **chosen})

    @property
    def is_active(self) -> bool:
        return self.runtime is not None

    def start(self) -> "Client":
        if self.runtime is None:
            transport.configure(self.deadlines)  # process-wide, like the runtime itself
            self.runtime = Runtime(f"{self.host}:{self.port}", client_credentials(self.credentials))
            set_runtime(self.runtime)
        return self

    def stop(self) -> None:
        if self.runtime is not None:
            if current_runtime() is self.runtime:
                set_runtime(None)
            self.runtime.close()
            self.runtime = None

    def __enter__(self) -> "Client":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> "Client":  # `async with Client(...)`, as dataClay 4 code writes it
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def get_backends(self) -> dict[UUID, BackendInfo]:
        """Backend id -> BackendInfo(id, name, host, port), in registration order; backends
        being drained (about to go away) are left out."""
        rt = self._runtime()
        return _usable(run_blocking(ops.get_backends(rt, rt.blocking)))

    async def a_get_backends(self) -> dict[UUID, BackendInfo]:
        rt = self._runtime()
        return _usable(await ops.get_backends(rt, rt.async_transport()))

    def _runtime(self) -> Runtime:
        if self.runtime is None:
            self.start()
        assert self.runtime is not None
        return self.runtime


def _usable(backends: dict[UUID, BackendInfo]) -> dict[UUID, BackendInfo]:
    return {backend_id: info for backend_id, info in backends.items() if not info.draining}
