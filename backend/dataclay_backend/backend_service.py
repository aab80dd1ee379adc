"""The backend's gRPC face: decode the request, run it in a request scope of the runtime,
encode the reply. Decisions live in BackendRuntime."""
from __future__ import annotations

import inspect
import queue
import threading
from typing import Any, Callable

import grpc

from dataclay import lifecycle as lc
from dataclay.exceptions import InvalidRequestError
from dataclay.protocol import CHAIN_METADATA_KEY, codec
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.protocol import dataclay_pb2_grpc as rpc
from dataclay.dataclay_object import class_info
from dataclay.serialization import class_path, import_class
from dataclay_backend.backend_runtime import BackendRuntime
from dataclay_backend.scope import SCOPE, RequestScope
from dataclay_backend.validation import check_class_path, check_method, property_of
from dataclay_backend.wire import parse_uuid
from dataclay_backend.grpc_server import handler, raised_by_user_code, stream_handler

EMPTY = pb.Empty()


def _chain(context: grpc.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata():
        if key == CHAIN_METADATA_KEY:
            return value
    return None


def _check_property(obj: object, name: str) -> None:
    property_of(type(obj), name, obj.__dict__[lc.ID])


def _check_arguments(cls: type, name: str, method: Callable, obj: Any, args: tuple, kwargs: dict) -> None:
    """After a TypeError no model code raised: arguments that do not fit the method are the
    caller's mistake (common through stubs, which have no signature), said as such, typed, rather
    than an internal error. Asked only then: a call that works pays nothing for it."""
    try:
        inspect.signature(method).bind(obj, *args, **kwargs)
    except TypeError as exc:
        raise InvalidRequestError(f"{cls.__module__}.{cls.__qualname__}.{name}() called with arguments that do not "
                                  f"fit it: {exc}; nothing ran") from None
    except ValueError:  # no signature to compare with: the TypeError stands
        pass


class BackendService(rpc.BackendServicer):
    def __init__(self, runtime: BackendRuntime) -> None:
        self.rt = runtime

    def _decode(self, payload: bytes, what: str):
        try:
            return self.rt.decode(payload)
        except Exception as exc:
            raise InvalidRequestError(f"the {what} cannot be decoded here: {type(exc).__name__}: {exc}") from None

    @handler
    def StoreObjects(self, request: pb.StoreObjectsRequest, context) -> pb.Empty:
        self.rt.incoming.store_records(list(request.objects), request.alias)
        return EMPTY

    @handler
    def StoreRawObject(self, request: bytes, context) -> pb.Empty:
        self.rt.incoming.store_raw(codec.raw_store_target(context.invocation_metadata(), request))
        return EMPTY

    @handler
    def GetAttribute(self, request: pb.GetAttributeRequest, context) -> pb.Payload | bytes:
        rt = self.rt
        with rt.request(_chain(context)):
            obj = rt.local_object(parse_uuid(request.object_id, "object id"))
            _check_property(obj, request.name)
            value = getattr(obj, request.name)
            if type(value) is bytes:
                return value  # the whole reply (dataclay.protocol.codec)
            return pb.Payload(payload=rt.encode_reply(value))

    @handler
    def SetAttribute(self, request: pb.SetAttributeRequest, context) -> pb.Empty:
        return self._set_attribute(request.object_id, request.name, lambda: self._decode(request.payload, "value"), context)

    @handler
    def SetRawAttribute(self, request: bytes, context) -> pb.Empty:
        object_id, name = codec.raw_set_target(context.invocation_metadata())
        return self._set_attribute(object_id, name, lambda: request, context)

    def _set_attribute(self, object_id: bytes, name: str, value: Callable[[], Any], context) -> pb.Empty:
        rt = self.rt
        with rt.request(_chain(context)):
            obj = rt.local_object(parse_uuid(object_id, "object id"))
            _check_property(obj, name)
            setattr(obj, name, value())
        return EMPTY

    def _arguments(self, payload: bytes) -> tuple[tuple, dict]:
        if not payload:
            return (), {}  # a call without arguments (dataclay.proto, CallRequest)
        arguments = self._decode(payload, "arguments")
        if not (isinstance(arguments, tuple) and len(arguments) == 2
                and isinstance(arguments[0], tuple) and isinstance(arguments[1], dict)):
            raise InvalidRequestError("the arguments of a call must be a pickled (args tuple, kwargs dict)")
        return arguments

    @handler
    def CreateObject(self, request: pb.CreateObjectRequest, context) -> pb.ObjectEntry:
        rt = self.rt
        cls = import_class(check_class_path(request.class_path))
        init = check_method(cls, "__init__")  # only a model's active __init__ runs for a peer
        with rt.request(_chain(context)) as scope:
            args, kwargs = self._arguments(request.payload)
            obj = object.__new__(cls)  # plain until its __init__ succeeds: a failing one stores nothing
            lc.new(obj)
            try:
                init(obj, *args, **kwargs)
            except BaseException as exc:
                rt.requests.discard_created(scope)  # nor what it created before it failed
                if isinstance(exc, TypeError) and not raised_by_user_code(exc):
                    _check_arguments(cls, "__init__", init, obj, args, kwargs)
                raise
            rt.requests.reference(obj, scope)  # persistent here, stored with this request (or not at all)
            object_id = obj.__dict__[lc.ID]
        return pb.ObjectEntry(object_id=object_id.bytes, class_path=request.class_path,
                              backend_id=rt.local_backend_id.bytes)

    @handler
    def CallActiveMethod(self, request: pb.CallRequest, context) -> pb.Payload:
        rt = self.rt
        with rt.request(_chain(context)):
            obj = rt.local_object(parse_uuid(request.object_id, "object id"))
            method = check_method(type(obj), request.method, obj.__dict__[lc.ID])
            args, kwargs = self._arguments(request.payload)
            try:
                if inspect.iscoroutinefunction(method):
                    result = rt.run_coroutine(method(obj, *args, **kwargs))
                else:
                    result = method(obj, *args, **kwargs)
            except TypeError as exc:
                if not raised_by_user_code(exc):
                    _check_arguments(type(obj), request.method, method, obj, args, kwargs)
                raise
            return pb.Payload(payload=rt.encode_reply(result))

    @handler
    def GetObjectState(self, request: pb.ObjectRequest, context) -> pb.ObjectRecord:
        rt = self.rt
        with rt.request(_chain(context)):
            obj = rt.local_object(parse_uuid(request.object_id, "object id"))
            return pb.ObjectRecord(object_id=request.object_id, class_path=class_path(type(obj)), state=rt.snapshot(obj))

    @handler
    def UpdateObject(self, request: pb.UpdateObjectRequest, context) -> pb.Empty:
        rt = self.rt
        with rt.request(_chain(context)):
            obj = rt.local_object(parse_uuid(request.object_id, "object id"))
            state = self._decode(request.state, "state")
            if not isinstance(state, dict):
                raise InvalidRequestError("UpdateObject needs a mapping of property names to values")
            for name in state:
                if not isinstance(name, str):
                    raise InvalidRequestError("UpdateObject needs a mapping of property names to values")
                _check_property(obj, name)
            for name, value in state.items():
                setattr(obj, name, value)
        return EMPTY

    @handler
    def GetClassInfo(self, request: pb.ClassInfoRequest, context) -> pb.ClassInfo:
        properties, methods = class_info(import_class(check_class_path(request.class_path)))
        return pb.ClassInfo(properties=properties, active_methods=methods)

    @handler
    def Stats(self, request: pb.Empty, context) -> pb.BackendStats:
        rt = self.rt
        return pb.BackendStats(
            backend_id=rt.local_backend_id.bytes, name=rt.name, owned_objects=len(rt.owned),
            loaded_objects=len(rt.loaded), loaded_bytes=rt.loaded.total, memory_limit=rt.loaded.memory_limit,
        )

    @stream_handler
    def Move(self, request: pb.MoveRequest, context):
        """Runs the move in its own thread (it finishes even if the caller goes away) and
        streams its progress; the last message is the result."""
        roots = [parse_uuid(raw, "object id") for raw in request.object_ids]
        destination = parse_uuid(request.destination, "destination backend id")
        chain = _chain(context)
        events: queue.Queue = queue.Queue()
        outcome: dict[str, object] = {}

        def run() -> None:
            token = SCOPE.set(RequestScope(chain)) if chain else None
            try:
                outcome["result"] = self.rt.mover.move(roots, destination, request.recursive, request.only_owned, events.put,
                                                        request.remotes)
            except BaseException as exc:
                outcome["error"] = exc
            finally:
                if token is not None:
                    SCOPE.reset(token)
                events.put(None)

        threading.Thread(target=run, name="dataclay-move", daemon=True).start()
        while (event := events.get()) is not None:
            yield event
        if "error" in outcome:
            raise outcome["error"]  # type: ignore[misc]
        yield outcome["result"]

    @handler
    def ReceiveObjects(self, request_iterator, context) -> pb.Empty:
        self.rt.mover.receive(request_iterator)
        return EMPTY

    @handler
    def ActivateMove(self, request: pb.MoveId, context) -> pb.Empty:
        self.rt.mover.activate(parse_uuid(request.move_id, "move id"))
        return EMPTY

    @handler
    def AbortMove(self, request: pb.MoveId, context) -> pb.Empty:
        self.rt.mover.abort(parse_uuid(request.move_id, "move id"))
        return EMPTY

    @handler
    def NewVersion(self, request: pb.NewVersionRequest, context) -> pb.ObjectEntry:
        rt = self.rt
        destination = parse_uuid(request.destination, "destination backend id") if request.destination else None
        with rt.request(_chain(context)):
            return rt.versioning.new_version(parse_uuid(request.object_id, "object id"), destination, request.recursive)

    @handler
    def ConsolidateVersion(self, request: pb.ConsolidateRequest, context) -> pb.ObjectEntry:
        rt = self.rt
        with rt.request(_chain(context)):
            return rt.versioning.consolidate(parse_uuid(request.object_id, "object id"), request.force, request.discard)

    @handler
    def StageWrite(self, request: pb.StageWriteRequest, context) -> pb.StageWriteReply:
        chain = _chain(context)
        if not chain:
            raise InvalidRequestError("StageWrite must carry the transaction's call chain")
        return self.rt.versioning.prepare(
            parse_uuid(request.txn_id, "transaction id"), chain, parse_uuid(request.object_id, "object id"),
            request.state, request.expected_revision, request.force,
        )

    @handler
    def ApplyWrites(self, request: pb.ApplyWritesRequest, context) -> pb.Empty:
        self.rt.versioning.apply(parse_uuid(request.txn_id, "transaction id"), dict(request.base_revisions))
        return EMPTY

    @handler
    def AbortWrites(self, request: pb.TransactionRequest, context) -> pb.Empty:
        self.rt.versioning.abort(parse_uuid(request.txn_id, "transaction id"))
        return EMPTY

    # ------------------------------------------------------------------ replicas (dataclay_backend.replicas)
    @handler
    def NewReplica(self, request: pb.NewReplicaRequest, context) -> pb.NewReplicaReply:
        roots = [parse_uuid(raw, "object id") for raw in request.object_ids]
        if not roots:
            raise InvalidRequestError("NewReplica needs at least one object id")
        destination = parse_uuid(request.destination, "destination backend id") if request.destination else None
        return self.rt.replicas.new_replica(roots, destination, request.recursive, _chain(context))

    @handler
    def StoreReplicas(self, request: pb.ReplicaStates, context) -> pb.Empty:
        self.rt.replicas.store(request)
        return EMPTY

    @handler
    def ReadReplica(self, request: pb.ReplicaReadRequest, context) -> pb.ObjectRecord:
        return self.rt.replicas.read(parse_uuid(request.object_id, "object id"), request.name)

    @handler
    def ForgetReplicas(self, request: pb.ObjectIdList, context) -> pb.Empty:
        self.rt.replicas.forget([parse_uuid(raw, "object id") for raw in request.object_ids])
        return EMPTY

    @handler
    def ReleaseReplicas(self, request: pb.ReleaseReplicasRequest, context) -> pb.ReplicaList:
        placed = self.rt.replicas.release([parse_uuid(raw, "object id") for raw in request.object_ids],
                                          parse_uuid(request.backend_id, "backend id"), request.rehome)
        return pb.ReplicaList(replicas=placed)

    @handler
    def FlushRegistrations(self, request: pb.FlushRegistrationsRequest, context) -> pb.Empty:
        self.rt.registrations.flush(before_drain=request.before_drain)
        return EMPTY
