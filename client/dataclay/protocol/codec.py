"""A faster codec for the two messages that carry large raw values, wire-identical to
dataclay.proto: `Payload` with its `raw` field set, and `SetAttributeRequest` with `raw`.

protobuf copies a bytes field when a message is built and again when it is serialized (and
twice more when parsed and read). For a 64 MiB attribute those copies cost more than the network
transfer, so these messages are encoded and decoded by hand, with one copy each way; every other
case goes through the generated code. Both sides register these (de)serializers through
`backend_stub` and `add_backend_servicer`.
"""
from __future__ import annotations

from typing import Any

import grpc

from dataclay.protocol import dataclay_pb2 as pb
from dataclay.protocol import dataclay_pb2_grpc as rpc

SERVICE = "dataclay.v1.Backend"
# tag = field number << 3 | wire type 2 (length-delimited)
_PAYLOAD_RAW = b"\x12"  # Payload.raw = 2
_SET_OBJECT_ID, _SET_NAME, _SET_RAW = 0x0A, 0x12, 0x22  # SetAttributeRequest fields 1, 2, 4


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError("truncated varint")


class RawSet:
    """A SetAttributeRequest whose value is raw bytes (reads like the generated message)."""

    __slots__ = ("object_id", "name", "raw")

    def __init__(self, object_id: bytes, name: str, raw: bytes) -> None:
        self.object_id, self.name, self.raw = object_id, name, raw

    def WhichOneof(self, group: str) -> str:  # noqa: N802 (protobuf's spelling)
        return "raw"


def encode_payload(message: pb.Payload | bytes) -> bytes:
    if isinstance(message, bytes):
        return _PAYLOAD_RAW + _varint(len(message)) + message
    return message.SerializeToString()


def decode_payload(data: bytes) -> pb.Payload | bytes:
    """Raw bytes when the message is just `raw`; the generated message otherwise."""
    if data[:1] == _PAYLOAD_RAW:
        length, pos = _read_varint(data, 1)
        if pos + length == len(data):
            return data[pos:]
    return pb.Payload.FromString(data)


def encode_set_attribute(message: pb.SetAttributeRequest | RawSet) -> bytes:
    if isinstance(message, RawSet):
        name = message.name.encode()
        return b"".join((
            bytes((_SET_OBJECT_ID,)), _varint(len(message.object_id)), message.object_id,
            bytes((_SET_NAME,)), _varint(len(name)), name,
            bytes((_SET_RAW,)), _varint(len(message.raw)), message.raw,
        ))
    return message.SerializeToString()


def decode_set_attribute(data: bytes) -> pb.SetAttributeRequest | RawSet:
    """A RawSet for the exact layout encode_set_attribute writes; the generated message (which
    validates everything) for anything else."""
    try:
        fields: dict[int, bytes] = {}
        pos = 0
        for tag in (_SET_OBJECT_ID, _SET_NAME, _SET_RAW):
            if pos >= len(data) or data[pos] != tag:
                raise ValueError
            length, pos = _read_varint(data, pos + 1)
            if tag == _SET_RAW:
                if pos + length != len(data):
                    raise ValueError
                return RawSet(fields[_SET_OBJECT_ID], fields[_SET_NAME].decode(), data[pos:])
            fields[tag] = data[pos:pos + length]
            pos += length
    except (ValueError, UnicodeDecodeError):
        pass
    return pb.SetAttributeRequest.FromString(data)


def backend_stub(channel: grpc.Channel | grpc.aio.Channel) -> Any:
    """The generated Backend stub, with the large-value calls on this codec."""
    stub = rpc.BackendStub(channel)
    stub.GetAttribute = channel.unary_unary(
        f"/{SERVICE}/GetAttribute", request_serializer=pb.GetAttributeRequest.SerializeToString,
        response_deserializer=decode_payload)
    stub.SetAttribute = channel.unary_unary(
        f"/{SERVICE}/SetAttribute", request_serializer=encode_set_attribute,
        response_deserializer=pb.Empty.FromString)
    return stub


class _Capture:
    """Receives the generated handler table instead of a server."""

    handlers: dict[str, grpc.RpcMethodHandler]

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.handlers = handlers


def add_backend_servicer(servicer: rpc.BackendServicer, server: grpc.Server) -> None:
    """Like the generated add_BackendServicer_to_server, with the large-value calls on this codec."""
    capture = _Capture()
    rpc.add_BackendServicer_to_server(servicer, capture)
    handlers = dict(capture.handlers)
    handlers["GetAttribute"] = grpc.unary_unary_rpc_method_handler(
        servicer.GetAttribute, request_deserializer=pb.GetAttributeRequest.FromString, response_serializer=encode_payload)
    handlers["SetAttribute"] = grpc.unary_unary_rpc_method_handler(
        servicer.SetAttribute, request_deserializer=decode_set_attribute, response_serializer=pb.Empty.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
