"""Forward loopback ports of this machine to loopback ports inside a network namespace.

    python forward.py /run/netns/NAME PORT [PORT ...]

The node's control plane listens only inside the namespace the fixture made for it; the tests
(kubernetes client, helm) run outside it. This process binds one listening socket per PORT on
127.0.0.1 of the namespace it starts in, prints {"PORT": local_port, ...} as one JSON line, then
enters the node's namespace (setns), so every connection it opens from then on goes to
127.0.0.1:PORT there. Sockets keep the namespace they were made in, which is what makes one
process able to join the two. Stdlib only; exits when its stdin closes (the fixture's end).
"""
from __future__ import annotations

import ctypes
import json
import os
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000


def pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def serve(listener: socket.socket, port: int) -> None:
    while True:
        client, _ = listener.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()  # the server is not up (yet): the caller sees a reset and retries
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pump, args=(a, b), daemon=True).start()


def main() -> None:
    netns, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
    listeners = {}
    for port in ports:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        listeners[port] = s
    libc = ctypes.CDLL(None, use_errno=True)
    with open(netns) as ns:  # before any thread exists: every later thread inherits the namespace
        if libc.setns(ns.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({netns})")
    print(json.dumps({str(p): s.getsockname()[1] for p, s in listeners.items()}), flush=True)
    for port, s in listeners.items():
        threading.Thread(target=serve, args=(s, port), daemon=True).start()
    sys.stdin.read()  # until the fixture closes our stdin or dies


if __name__ == "__main__":
    main()
