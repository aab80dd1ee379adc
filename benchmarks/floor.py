"""The floor every benchmark is compared with: a bare grpcio unary round trip on loopback,
to a server in another process (as our backends are), with no work in the handler.

`Floor()` speaks plain text; `Floor(credentials_dir)` the same over mutual TLS with the
cluster's own certificates (the server presents a backend's, the client a client's, each side
verifies the other against the cluster's CA), so the TLS floor differs from the plain one only
by what grpcio's TLS costs."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

import grpc

from dataclay.protocol import UNLIMITED_MESSAGES

METHOD = "/floor.Echo/Echo"
SIZED = "/floor.Echo/Sized"  # request: 8-byte size; reply: that many bytes
MESSAGE = b"0123456789abcdef"  # a round trip's request, and reply: 16 bytes
SERVER_IDENTITY, CLIENT_IDENTITY = "backend:backend-0", "client"


def serve(ready_fd: int, credentials_dir: str | None) -> None:
    def echo(request: bytes, context) -> bytes:
        return request[:16]

    def sized(request: bytes, context) -> bytes:
        return bytes(int.from_bytes(request[:8], "little"))

    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Sized": grpc.unary_unary_rpc_method_handler(sized),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=UNLIMITED_MESSAGES)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("floor.Echo", handlers),))
    if credentials_dir is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        from dataclay.security import Credentials

        credentials = Credentials.load(credentials_dir, SERVER_IDENTITY)
        port = server.add_secure_port("127.0.0.1:0", credentials.server_credentials())
    server.start()
    os.write(ready_fd, f"{port}\n".encode())
    os.close(ready_fd)
    server.wait_for_termination()


class Floor:
    """Starts the echo server in a child process; measures round trips and bulk transfers.
    With `credentials_dir` (a cluster's credentials directory): mutual TLS."""

    def __init__(self, credentials_dir: str | Path | None = None) -> None:
        self.credentials_dir = None if credentials_dir is None else str(credentials_dir)

    def __enter__(self) -> "Floor":
        read_end, write_end = os.pipe()
        tls = [] if self.credentials_dir is None else [self.credentials_dir]
        self.process = subprocess.Popen([sys.executable, __file__, str(write_end), *tls], pass_fds=(write_end,))
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            port = int(pipe.readline())
        if self.credentials_dir is None:
            self.channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=UNLIMITED_MESSAGES)
        else:
            from dataclay.security import Credentials

            credentials = Credentials.load(self.credentials_dir, CLIENT_IDENTITY)
            self.channel = grpc.secure_channel(f"127.0.0.1:{port}", credentials.channel_credentials(),
                                               options=UNLIMITED_MESSAGES)
        self.echo = self.channel.unary_unary(METHOD)
        self.sized = self.channel.unary_unary(SIZED)
        self.round_trip()  # connected (and, over TLS, the handshake done) before anything is timed
        return self

    def __exit__(self, *exc: object) -> None:
        self.channel.close()
        self.process.terminate()
        self.process.wait()

    def round_trip(self) -> None:
        self.echo(MESSAGE)

    def upload_seconds(self, payload: bytes) -> float:
        start = time.perf_counter()
        self.echo(payload)
        return time.perf_counter() - start

    def download_seconds(self, size: int) -> float:
        start = time.perf_counter()
        self.sized(size.to_bytes(8, "little"))
        return time.perf_counter() - start


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
