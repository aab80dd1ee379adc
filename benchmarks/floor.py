"""The floor every benchmark is compared with: a bare grpcio unary round trip on loopback,
to a server in another process (as our backends are), with no work in the handler."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent import futures

import grpc

from dataclay.protocol import UNLIMITED_MESSAGES

METHOD = "/floor.Echo/Echo"
SIZED = "/floor.Echo/Sized"  # request: 8-byte size; reply: that many bytes


def serve(ready_fd: int) -> None:
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
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    os.write(ready_fd, f"{port}\n".encode())
    os.close(ready_fd)
    server.wait_for_termination()


class Floor:
    """Starts the echo server in a child process; measures round trips and bulk transfers."""

    def __enter__(self) -> "Floor":
        read_end, write_end = os.pipe()
        self.process = subprocess.Popen([sys.executable, __file__, str(write_end)], pass_fds=(write_end,))
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            port = int(pipe.readline())
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=UNLIMITED_MESSAGES)
        self.echo = self.channel.unary_unary(METHOD)
        self.sized = self.channel.unary_unary(SIZED)
        return self

    def __exit__(self, *exc: object) -> None:
        self.channel.close()
        self.process.terminate()
        self.process.wait()

    def round_trip(self) -> None:
        self.echo(b"0123456789abcdef")

    def upload_seconds(self, payload: bytes) -> float:
        start = time.perf_counter()
        self.echo(payload)
        return time.perf_counter() - start

    def download_seconds(self, size: int) -> float:
        start = time.perf_counter()
        self.sized(size.to_bytes(8, "little"))
        return time.perf_counter() - start


if __name__ == "__main__":
    serve(int(sys.argv[1]))
