"""The calls that carry large raw values, done with fewer copies than protobuf makes.

protobuf copies a bytes field when a message is built and again when it is serialized (and
twice more when parsed and read). For a 64 MiB attribute those copies cost more than the network
transfer. So, as dataclay.proto says, a property value that is a `bytes` object travels as the
whole gRPC message: the reply of GetAttribute (flagged by the response metadata), and the
request of SetRawAttribute (naming the object and property in the request metadata), and the
request of StoreRawObject (a new object holding such a value; the metadata names the rest). Every
other case goes through the generated code. Both sides register these through `backend_stub`
and `add_backend_servicer`.
"""
from __future__ import annotations

from typing import Any, Callable

import grpc

from dataclay.protocol import (ALIAS_METADATA_KEY, CLASS_METADATA_KEY, OBJECT_ID_METADATA_KEY, PROPERTY_METADATA_KEY,
                               RAW_METADATA_KEY, STATE_METADATA_KEY)
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.protocol import dataclay_pb2_grpc as rpc

SERVICE = "dataclay.v1.Backend"
_RAW_REPLY = ((RAW_METADATA_KEY, "1"),)


class RawSet:
    """What a client passes to stub.SetAttribute to set a property to a `bytes` value."""

    __slots__ = ("object_id", "name", "raw")

    def __init__(self, object_id: bytes, name: str, raw: bytes) -> None:
        self.object_id, self.name, self.raw = object_id, name, raw

    def metadata(self) -> tuple[tuple[str, bytes], ...]:
        return (OBJECT_ID_METADATA_KEY, self.object_id), (PROPERTY_METADATA_KEY, self.name.encode())


RAW_STATE_LIMIT = 2048  # bytes of a StoreRawObject's other properties (request metadata is small)


class RawStore:
    """What a client passes to stub.StoreObjects to store one new object whose property `name`
    is a large `bytes` value (the message) and whose other properties are `state` (a pickled
    dict of plain values, at most RAW_STATE_LIMIT bytes)."""

    __slots__ = ("object_id", "class_path", "alias", "name", "state", "raw")

    def __init__(self, object_id: bytes, class_path: str, alias: str, name: str, state: bytes, raw: bytes) -> None:
        self.object_id, self.class_path, self.alias, self.name, self.state, self.raw = (
            object_id, class_path, alias, name, state, raw)

    def metadata(self) -> tuple[tuple[str, bytes], ...]:
        return ((OBJECT_ID_METADATA_KEY, self.object_id), (CLASS_METADATA_KEY, self.class_path.encode()),
                (PROPERTY_METADATA_KEY, self.name.encode()), (STATE_METADATA_KEY, self.state),
                (ALIAS_METADATA_KEY, self.alias.encode()))


class _RawOrMessage:
    """stub.<method>: a raw request (RawSet, RawStore) goes as <raw method>, its value as the
    whole message and the rest in the request metadata; anything else as <method>."""

    def __init__(self, channel: grpc.Channel | grpc.aio.Channel, method: str, raw_method: str,
                 message_type: Any, raw_type: type) -> None:
        self._message = channel.unary_unary(
            f"/{SERVICE}/{method}", request_serializer=message_type.SerializeToString,
            response_deserializer=pb.Empty.FromString)
        self._raw = channel.unary_unary(f"/{SERVICE}/{raw_method}", response_deserializer=pb.Empty.FromString)
        self._raw_type = raw_type

    def __call__(self, request: Any, metadata: Any = None, **options: Any) -> Any:
        if isinstance(request, self._raw_type):
            return self._raw(request.raw, metadata=(*(metadata or ()), *request.metadata()), **options)
        return self._message(request, metadata=metadata, **options)


def raw_store_target(metadata: Any, raw: bytes) -> RawStore:
    """What a StoreRawObject call names (empty fields where it names nothing; text that is not
    UTF-8 is replaced, and then names no class, property or valid alias)."""
    found = dict(metadata or ())

    def text(key: str) -> str:
        return found.get(key, b"").decode(errors="replace")

    return RawStore(found.get(OBJECT_ID_METADATA_KEY, b""), text(CLASS_METADATA_KEY), text(ALIAS_METADATA_KEY),
                    text(PROPERTY_METADATA_KEY), found.get(STATE_METADATA_KEY, b""), raw)


def raw_set_target(metadata: Any) -> tuple[bytes, str]:
    """The object id and property a SetRawAttribute call names (empty if it names none, or
    a name that is not UTF-8, which matches no property)."""
    found = dict(metadata or ())
    return found.get(OBJECT_ID_METADATA_KEY, b""), found.get(PROPERTY_METADATA_KEY, b"").decode(errors="replace")


class _GetAttribute:
    """stub.GetAttribute: returns the value's bytes for a raw reply, else the Payload."""

    def __init__(self, channel: grpc.Channel | grpc.aio.Channel) -> None:
        self._call = channel.unary_unary(  # the reply is decoded below, once its metadata is known
            f"/{SERVICE}/GetAttribute", request_serializer=pb.GetAttributeRequest.SerializeToString)
        self._aio = isinstance(channel, grpc.aio.Channel)

    def __call__(self, request: pb.GetAttributeRequest, metadata: Any = None, **options: Any) -> Any:
        if self._aio:
            return self._async(request, metadata, options)
        reply, call = self._call.with_call(request, metadata=metadata, **options)
        return _reply(reply, call.trailing_metadata())

    async def _async(self, request: pb.GetAttributeRequest, metadata: Any, options: dict[str, Any]) -> Any:
        call = self._call(request, metadata=metadata, **options)
        reply = await call
        return _reply(reply, await call.trailing_metadata())


def _reply(data: bytes, metadata: Any) -> pb.Payload | bytes:
    if any(key == RAW_METADATA_KEY for key, _ in metadata or ()):
        return data
    return pb.Payload.FromString(data)


def _flag_raw_replies(method: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
    def serve(request: Any, context: grpc.ServicerContext) -> Any:
        reply = method(request, context)
        if isinstance(reply, bytes):
            context.set_trailing_metadata(_RAW_REPLY)
        return reply

    return serve


def _encode_reply(reply: pb.Payload | bytes) -> bytes:
    return reply if isinstance(reply, bytes) else reply.SerializeToString()


def backend_stub(channel: grpc.Channel | grpc.aio.Channel) -> Any:
    """The generated Backend stub, with the large-value calls on this codec."""
    stub = rpc.BackendStub(channel)
    stub.GetAttribute = _GetAttribute(channel)
    stub.SetAttribute = _RawOrMessage(channel, "SetAttribute", "SetRawAttribute", pb.SetAttributeRequest, RawSet)
    stub.StoreObjects = _RawOrMessage(channel, "StoreObjects", "StoreRawObject", pb.StoreObjectsRequest, RawStore)
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
    handlers["GetAttribute"] = grpc.unary_unary_rpc_method_handler(  # a bytes value is the whole reply
        _flag_raw_replies(servicer.GetAttribute), request_deserializer=pb.GetAttributeRequest.FromString,
        response_serializer=_encode_reply)
    handlers["SetRawAttribute"] = grpc.unary_unary_rpc_method_handler(  # the message is the value
        servicer.SetRawAttribute, response_serializer=pb.Empty.SerializeToString)
    handlers["StoreRawObject"] = grpc.unary_unary_rpc_method_handler(  # the message is the value
        servicer.StoreRawObject, response_serializer=pb.Empty.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
