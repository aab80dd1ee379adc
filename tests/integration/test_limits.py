"""Limits (issue 10): past each, a typed RESOURCE_EXHAUSTED and a server that goes on serving;
held connections and streams cannot starve the health check or a normal client."""
from __future__ import annotations

import asyncio
import inspect
import socket
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dataclay import Client
from dataclay.exceptions import InvalidRequestError, ResourceExhaustedError
from dataclay.protocol import ERROR_METADATA_KEY
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.protocol import dataclay_pb2_grpc as rpc
from dataclay_backend.cluster import LocalCluster
from shapes import Blob, Node

OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def _start(make_cluster, monkeypatch, backends: int = 1, **env: str) -> LocalCluster:
    for key, value in {"DC_INSECURE": "1", **env}.items():  # limits hold with or without TLS; plain text here
        monkeypatch.setenv(key, value)
    options = {"insecure": True} if "insecure" in inspect.signature(LocalCluster).parameters else {}
    return make_cluster(backends=backends, **options)


def _backend_address(cluster: LocalCluster) -> str:
    return f"127.0.0.1:{next(iter(cluster.backends.values())).port}"


def _healthy(address: str, timeout: float = 3.0) -> bool:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def test_an_oversized_message_is_refused_typed_and_the_server_serves_on(make_cluster, monkeypatch):
    cluster = _start(make_cluster, monkeypatch, DC_MAX_MESSAGE="1Mi")
    monkeypatch.delenv("DC_MAX_MESSAGE")
    with Client(host="127.0.0.1", port=cluster.port):  # this client's own limit is the default
        blob = Blob(b"small")
        blob.make_persistent()
        with pytest.raises(ResourceExhaustedError):
            blob.data = b"x" * (2 * 2**20)
        assert blob.data == b"small"
        blob.data = b"y" * (2**20 - 4096)  # below the limit
        assert blob.size() == 2**20 - 4096
        with grpc.insecure_channel(f"127.0.0.1:{cluster.port}", options=OPTIONS) as channel:
            with pytest.raises(grpc.RpcError) as info:
                rpc.MetadataStub(channel).LookupAlias(pb.AliasRequest(alias="a" * (3 * 2**20)), timeout=10)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert _healthy(_backend_address(cluster)) and _healthy(f"127.0.0.1:{cluster.port}")


def test_too_many_concurrent_calls_get_resource_exhausted_then_service_is_normal(make_cluster, monkeypatch):
    cluster = _start(make_cluster, monkeypatch, DC_MAX_CONCURRENT_RPCS="4")
    with Client(host="127.0.0.1", port=cluster.port):
        nodes = [Node(i) for i in range(6)]
        for node in nodes:
            node.make_persistent()
        results: list[object] = []

        def slow(node: Node) -> None:
            try:
                results.append(asyncio.run(node.slow_double(3.0)))
            except Exception as exc:  # noqa: BLE001
                results.append(exc)

        threads = [threading.Thread(target=slow, args=(node,)) for node in nodes[:4]]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        with pytest.raises(ResourceExhaustedError):
            nodes[4].peek()
        assert _healthy(_backend_address(cluster))  # the liveness probe is not one of the 4
        for thread in threads:
            thread.join()
        assert sorted(results) == [0, 2, 4, 6]
        nodes[4].peek()
        assert nodes[4].value == 4 and asyncio.run(nodes[5].slow_double(0.0)) == 10


def test_slow_loris_connections_and_held_streams_do_not_starve_health_or_clients(make_cluster, monkeypatch):
    cluster = _start(make_cluster, monkeypatch, DC_MAX_CONNECTION_IDLE="2", DC_CALL_TIMEOUT="6")
    address = _backend_address(cluster)
    host, port = address.split(":")
    raw_sockets = [socket.create_connection((host, int(port))) for _ in range(50)]  # no handshake, ever
    release = threading.Event()

    def nothing():  # a client stream that never sends
        release.wait(60)
        return
        yield

    channels = [grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(3)]
    held = []
    for channel in channels:  # 3 connections x 40 streams: more than the old pool of 64 threads
        method = channel.stream_unary("/dataclay.v1.Backend/ReceiveObjects",
                                      request_serializer=pb.TransferChunk.SerializeToString,
                                      response_deserializer=pb.Empty.FromString)
        held += [method.future(nothing()) for _ in range(40)]
    try:
        time.sleep(1.0)
        started = time.monotonic()
        assert _healthy(address)
        with Client(host="127.0.0.1", port=cluster.port):
            node = Node(7)
            node.make_persistent()
            assert node.value == 7
        assert time.monotonic() - started < 5
        # bounded in time: held streams are cancelled after the call deadline (6 s) of silence...
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(call.done() for call in held):
            time.sleep(0.2)
        assert all(call.done() for call in held)
        # ...and connections that never finished a handshake are closed (10 s)
        for raw in raw_sockets:
            raw.settimeout(15)  # a timeout here fails the test: the connection was kept open
            while raw.recv(4096):  # the server's frames, if any, then the end: closed
                pass
        assert _healthy(address)
    finally:
        release.set()
        for channel in channels:
            channel.close()
        for raw in raw_sockets:
            raw.close()


def test_an_idle_connection_is_closed_after_the_idle_time(make_cluster, monkeypatch):
    cluster = _start(make_cluster, monkeypatch, DC_MAX_CONNECTION_IDLE="1")
    states: list[grpc.ChannelConnectivity] = []
    with grpc.insecure_channel(f"127.0.0.1:{cluster.port}") as channel:
        rpc.MetadataStub(channel).ListBackends(pb.Empty(), timeout=5)
        channel.subscribe(states.append)
        time.sleep(4)
        assert grpc.ChannelConnectivity.IDLE in states  # the server closed it (GOAWAY), the channel went idle
        rpc.MetadataStub(channel).ListBackends(pb.Empty(), timeout=5)  # and reconnects on its next call


def _refusal(call) -> tuple[grpc.StatusCode, str, bytes]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    detail = dict(info.value.trailing_metadata() or ()).get(ERROR_METADATA_KEY, b"")
    return info.value.code(), info.value.details(), detail


def test_bad_aliases_and_backend_registrations_are_refused_without_echo(make_cluster, monkeypatch):
    import uuid

    cluster = _start(make_cluster, monkeypatch)
    long_alias = "z" * 100_000
    with grpc.insecure_channel(f"127.0.0.1:{cluster.port}", options=OPTIONS) as channel:
        stub = rpc.MetadataStub(channel)
        before = stub.ListBackends(pb.Empty(), timeout=10)
        for call in (lambda: stub.LookupAlias(pb.AliasRequest(alias=long_alias), timeout=10),
                     lambda: stub.AddAlias(pb.AliasRequest(alias="a\x00b\x1b[2J", object_id=uuid.uuid4().bytes),
                                           timeout=10)):
            code, details, detail = _refusal(call)
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            assert long_alias not in details and len(details) < 400 and len(detail) < 1000 and b"\x00" not in detail
        for name, host, port in (("Evil_Name!", "127.0.0.1", 7), ("backend-x", "127.0.0.1", 70000),
                                 ("backend-x", "127.0.0.1", 0), ("backend-x", "a host; rm", 7)):
            code, details, _ = _refusal(lambda: stub.RegisterBackend(
                pb.BackendInfo(backend_id=uuid.uuid4().bytes, name=name, host=host, port=port), timeout=10))
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (name, port, details)
        assert stub.ListBackends(pb.Empty(), timeout=10) == before
    with Client(host="127.0.0.1", port=cluster.port):
        node = Node(1)
        node.make_persistent()
        with pytest.raises(InvalidRequestError) as info:
            node.add_alias("q" * 10_000)
        assert "q" * 200 not in str(info.value)
        node.add_alias("ok")
        assert Node.get_by_alias("ok").value == 1


def test_a_backend_owning_more_ids_than_one_message_holds_restarts_with_every_object(make_cluster, monkeypatch):
    """The message limit bounds messages, not how many objects a backend owns: the directory
    lists a backend's objects in pages that fit (recovery at start reads them all)."""
    cluster = _start(make_cluster, monkeypatch, DC_MAX_MESSAGE="8Ki")
    with Client(host="127.0.0.1", port=cluster.port):
        nodes = [Node(i) for i in range(1000)]  # their ids alone: 18 KB, over two 8 KiB messages
        for node in nodes:
            node.make_persistent()
        cluster.restart_backend("backend-0")
        assert [node.value for node in nodes] == list(range(1000))
