"""The metadata service's gRPC face: decode, check who asks (identity binding), call the
Directory, encode. No other decisions here.

Identity binding (with authentication on; the role table already let only backends make the
internal calls): a backend registers only under its own name, and an id registered under one name
never goes to another; it registers, drops and retires only objects it owns (it retires only
versions), commits only moves it is the source of, and lists only its own objects."""
from __future__ import annotations

from typing import Iterable
from uuid import UUID


from dataclay.protocol import dataclay_pb2 as pb
from dataclay.protocol import dataclay_pb2_grpc as rpc
from dataclay.transport import BackendInfo
from dataclay_backend.wire import optional_uuid, parse_keys, parse_uuid
from dataclay_backend.directory import Directory, ObjectEntry
from dataclay_backend.authz import backend_caller, denied
from dataclay_backend.grpc_server import handler
from dataclay.security import BACKEND, peer_identity


def _entry(entry: ObjectEntry) -> pb.ObjectEntry:
    return pb.ObjectEntry(
        object_id=entry.object_id.bytes, class_path=entry.class_path, backend_id=entry.backend_id.bytes,
        version_parent=entry.version_parent.bytes if entry.version_parent else b"",
        version_original=entry.version_original.bytes if entry.version_original else b"",
    )



class MetadataService(rpc.MetadataServicer):
    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def _caller_id(self, context, what: str) -> UUID | None:
        """The id under which the calling backend is registered (None without authentication)."""
        identity = backend_caller(context, what)
        if identity is None:
            return None
        for backend in self.directory.backends():
            if backend.name == identity.name:
                return backend.id
        raise denied(identity, what, "it is not registered")

    def _require_owned(self, context, caller: UUID | None, object_ids: Iterable[UUID], what: str,
                       versions_only: bool = False) -> None:
        """Every object that is registered is owned by the caller (and is a version)."""
        if caller is None:
            return
        for object_id in object_ids:
            rows = self.directory.db.query("SELECT backend_id, version_original FROM objects WHERE id=?",
                                           (object_id.bytes,))
            if not rows:
                continue
            if rows[0][0] != caller.bytes:
                raise denied(peer_identity(context), what, f"object {object_id} is not its own")
            if versions_only and not rows[0][1]:
                raise denied(peer_identity(context), what, f"object {object_id} is not a version")

    def _backend_list(self) -> pb.BackendList:
        return pb.BackendList(
            backends=[pb.BackendInfo(backend_id=b.id.bytes, name=b.name, host=b.host, port=b.port, draining=b.draining)
                      for b in self.directory.backends()],
            cluster_id=self.directory.cluster_id.bytes,
        )

    @handler
    def RegisterBackend(self, request: pb.BackendInfo, context) -> pb.BackendList:
        backend_id = parse_uuid(request.backend_id, "backend id")
        identity = backend_caller(context, f"register backend {request.name[:100]!r}")
        if identity is not None:
            if request.name != identity.name:
                raise denied(identity, f"register backend {request.name[:100]!r}",
                             "a backend registers only under its own name")
            for backend in self.directory.backends():
                if backend.id == backend_id and backend.name != identity.name:
                    raise denied(identity, f"register under id {backend_id}",
                                 f"that id is backend {backend.name}'s (an id never changes hands)")
        self.directory.register_backend(BackendInfo(backend_id, request.name, request.host, request.port))
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
        caller = self._caller_id(context, "register objects")
        if caller is not None and any(entry.backend_id != caller for entry in entries):
            raise denied(peer_identity(context), "register objects", "a backend registers only objects it owns")
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
        backend_id = parse_uuid(request.backend_id, "backend id")
        identity = peer_identity(context)
        if identity is not None and identity.role == BACKEND:
            if backend_id != self._caller_id(context, "list objects"):
                raise denied(identity, f"list the objects of backend {backend_id}", "a backend lists only its own")
        owned = self.directory.owned_by(backend_id)
        return pb.ObjectIdList(object_ids=[object_id.bytes for object_id in owned])

    @handler
    def DropObjects(self, request: pb.ObjectIdList, context) -> pb.Empty:
        object_ids = [parse_uuid(raw, "object id") for raw in request.object_ids]
        self._require_owned(context, self._caller_id(context, "drop objects"), object_ids, "drop objects")
        self.directory.drop_objects(object_ids)
        return pb.Empty()

    @handler
    def CommitMove(self, request: pb.CommitMoveRequest, context) -> pb.Empty:
        source = parse_uuid(request.source_backend_id, "source backend id")
        caller = self._caller_id(context, "commit a move")
        if caller is not None and caller != source:
            raise denied(peer_identity(context), f"commit a move from backend {source}",
                         "a backend commits only moves it is the source of")
        self.directory.commit_move(
            parse_keys(request.object_ids, "object id"),
            source,
            parse_uuid(request.destination_backend_id, "destination backend id"),
            optional_uuid(request.move_id, "move id"),
        )
        return pb.Empty()

    @handler
    def CommitTransaction(self, request: pb.TransactionRequest, context) -> pb.Empty:
        retire = [parse_uuid(raw, "object id") for raw in request.retire]
        self._require_owned(context, self._caller_id(context, "retire versions"), retire, "retire objects",
                            versions_only=True)
        self.directory.commit_transaction(parse_uuid(request.txn_id, "transaction id"), retire,
                                          dict(request.base_revisions), request.discarded)
        return pb.Empty()

    @handler
    def ResolveTransaction(self, request: pb.TransactionRequest, context) -> pb.TransactionState:
        apply = self.directory.resolve_transaction(parse_uuid(request.txn_id, "transaction id"))
        return pb.TransactionState(committed=apply is not None, base_revisions=apply or {})

    @handler
    def SetDraining(self, request: pb.BackendRequest, context) -> pb.Empty:
        self.directory.set_draining(parse_uuid(request.backend_id, "backend id"), request.draining)
        return pb.Empty()
