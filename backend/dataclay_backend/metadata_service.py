"""The metadata service's gRPC face: decode, call the Directory, encode. No decisions here."""
from __future__ import annotations


from dataclay.protocol import dataclay_pb2 as pb
from dataclay.protocol import dataclay_pb2_grpc as rpc
from dataclay.transport import BackendInfo
from dataclay_backend.wire import optional_uuid, parse_keys, parse_uuid
from dataclay_backend.directory import Directory, ObjectEntry
from dataclay_backend.grpc_server import handler


def _entry(entry: ObjectEntry) -> pb.ObjectEntry:
    return pb.ObjectEntry(
        object_id=entry.object_id.bytes, class_path=entry.class_path, backend_id=entry.backend_id.bytes,
        version_parent=entry.version_parent.bytes if entry.version_parent else b"",
        version_original=entry.version_original.bytes if entry.version_original else b"",
    )



class MetadataService(rpc.MetadataServicer):
    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def _backend_list(self) -> pb.BackendList:
        return pb.BackendList(
            backends=[pb.BackendInfo(backend_id=b.id.bytes, name=b.name, host=b.host, port=b.port, draining=b.draining)
                      for b in self.directory.backends()],
            cluster_id=self.directory.cluster_id.bytes,
        )

    @handler
    def RegisterBackend(self, request: pb.BackendInfo, context) -> pb.BackendList:
        self.directory.register_backend(
            BackendInfo(parse_uuid(request.backend_id, "backend id"), request.name, request.host, request.port)
        )
        return self._backend_list()

    @handler
    def ListBackends(self, request: pb.Empty, context) -> pb.BackendList:
        return self._backend_list()

    @handler
    def RegisterObjects(self, request: pb.RegisterObjectsRequest, context) -> pb.Empty:
        entries = [
            ObjectEntry(parse_uuid(e.object_id, "object id"), e.class_path, parse_uuid(e.backend_id, "backend id"),
                        optional_uuid(e.version_parent, "version parent"),
                        optional_uuid(e.version_original, "version original"))
            for e in request.objects
        ]
        self.directory.register_objects(entries, request.alias)
        return pb.Empty()

    @handler
    def LocateObject(self, request: pb.ObjectRequest, context) -> pb.ObjectEntry:
        return _entry(self.directory.locate(parse_uuid(request.object_id, "object id")))

    @handler
    def LookupAlias(self, request: pb.AliasRequest, context) -> pb.ObjectEntry:
        return _entry(self.directory.lookup_alias(request.alias))

    @handler
    def AddAlias(self, request: pb.AliasRequest, context) -> pb.Empty:
        self.directory.add_alias(request.alias, parse_uuid(request.object_id, "object id"))
        return pb.Empty()

    @handler
    def DeleteAlias(self, request: pb.AliasRequest, context) -> pb.Empty:
        self.directory.delete_alias(request.alias)
        return pb.Empty()

    @handler
    def GetAliases(self, request: pb.ObjectRequest, context) -> pb.AliasList:
        return pb.AliasList(aliases=self.directory.aliases_of(parse_uuid(request.object_id, "object id")))

    @handler
    def ListOwnedObjects(self, request: pb.BackendRequest, context) -> pb.ObjectIdList:
        owned = self.directory.owned_by(parse_uuid(request.backend_id, "backend id"))
        return pb.ObjectIdList(object_ids=[object_id.bytes for object_id in owned])

    @handler
    def DropObjects(self, request: pb.ObjectIdList, context) -> pb.Empty:
        self.directory.drop_objects([parse_uuid(raw, "object id") for raw in request.object_ids])
        return pb.Empty()

    @handler
    def CommitMove(self, request: pb.CommitMoveRequest, context) -> pb.Empty:
        self.directory.commit_move(
            parse_keys(request.object_ids, "object id"),
            parse_uuid(request.source_backend_id, "source backend id"),
            parse_uuid(request.destination_backend_id, "destination backend id"),
            optional_uuid(request.move_id, "move id"),
        )
        return pb.Empty()

    @handler
    def CommitTransaction(self, request: pb.TransactionRequest, context) -> pb.Empty:
        self.directory.commit_transaction(
            parse_uuid(request.txn_id, "transaction id"), [parse_uuid(raw, "object id") for raw in request.retire],
            dict(request.base_revisions),
        )
        return pb.Empty()

    @handler
    def ResolveTransaction(self, request: pb.TransactionRequest, context) -> pb.TransactionState:
        apply = self.directory.resolve_transaction(parse_uuid(request.txn_id, "transaction id"))
        return pb.TransactionState(committed=apply is not None, base_revisions=apply or {})

    @handler
    def SetDraining(self, request: pb.BackendRequest, context) -> pb.Empty:
        self.directory.set_draining(parse_uuid(request.backend_id, "backend id"), request.draining)
        return pb.Empty()
