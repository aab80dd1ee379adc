"""A server's plain-text health port (DC_HEALTH_PORT, for the kubelet's gRPC probes, which cannot
present a certificate): it answers Check and nothing else; the data port stays TLS-only."""
from __future__ import annotations

import socket

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dataclay.protocol import dataclay_pb2 as pb
from dataclay.protocol import dataclay_pb2_grpc as rpc
from dataclay_backend.cluster import LocalCluster


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_health_port_answers_check_in_plain_text_and_nothing_else(tmp_path, monkeypatch):
    metadata_health, backend_health = free_port(), free_port()
    monkeypatch.setenv("DC_HEALTH_PORT", str(metadata_health))
    cluster = LocalCluster(tmp_path, backends=1, port=0)
    try:
        cluster.start_metadata()
        cluster.start_backend(0, env={"DC_HEALTH_PORT": str(backend_health)})
        for port in (metadata_health, backend_health):
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
                with pytest.raises(grpc.RpcError) as raised:  # no stream to hold open
                    next(iter(health.Watch(health_pb2.HealthCheckRequest(), timeout=5)))
                assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
                with pytest.raises(grpc.RpcError) as raised:  # no data-plane call on it
                    rpc.MetadataStub(channel).ListBackends(pb.Empty(), timeout=5)
                assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with grpc.insecure_channel(f"127.0.0.1:{cluster.port}") as plain:  # the data port: TLS only
            with pytest.raises(grpc.RpcError) as raised:
                rpc.MetadataStub(plain).ListBackends(pb.Empty(), timeout=5)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        cluster.stop()
