"""The metadata service's gRPC face: decode, check who asks (identity binding), call the
Directory, encode. No other decisions here.

Identity binding (with authentication on; the role table already let only backends make the
internal calls): the servicer passes the calling backend's name to the directory, which checks it
inside the transaction of the change (directory.py says what it checks and why there)."""
from __future__ import annotations

import contextlib
from typing import Iterator


from dataclay.exceptions import InvalidRequestError
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.protocol import dataclay_pb2_grpc as rpc
from dataclay.transport import BackendInfo
from dataclay_backend.wire import optional_uuid, parse_keys, parse_uuid
from dataclay_backend.backup import BackupReport, BackupScheduler
from dataclay_backend.directory import Directory, ObjectEntry, Refusal
from dataclay_backend.restore_epoch import Refused, RestoreEpoch
from dataclay_backend.authz import backend_caller, denied
from dataclay_backend.grpc_server import handler
from dataclay_backend.validation import IDS_PER_PART, check_class_path, check_ids
from dataclay.security import BACKEND, peer_identity


def _entry(entry: ObjectEntry) -> pb.ObjectEntry:
    return pb.ObjectEntry(
        object_id=entry.object_id.bytes, class_path=entry.class_path, backend_id=entry.backend_id.bytes,
        version_parent=entry.version_parent.bytes if entry.version_parent else b"",
        version_original=entry.version_original.bytes if entry.version_original else b"",
        replica_backend_ids=[backend_id.bytes for backend_id in entry.replicas],
    )


def _backup(report: BackupReport) -> pb.BackupInfo:
    return pb.BackupInfo(path=str(report.path or ""), time=report.time, size=report.size, backends=report.backends,
                         objects=report.objects, aliases=report.aliases, error=report.error)


class MetadataService(rpc.MetadataServicer):
    def __init__(self, directory: Directory, backups: BackupScheduler | None = None) -> None:
        self.directory = directory
        self.epoch = RestoreEpoch(directory.db)
        self.backups = backups or BackupScheduler(directory.db.path, None, 1, 0)

    @staticmethod
    @contextlib.contextmanager
    def _bound(context, what: str) -> Iterator[str | None]:
        """The calling backend's name for the directory's identity checks (None without
        authentication), its refusals turned into logged PermissionDeniedErrors."""
        identity = backend_caller(context, what)
        try:
            yield identity.name if identity is not None else None
        except Refusal as refusal:
            raise denied(identity, refusal.what, refusal.why) from None

    def _backend_list(self) -> pb.BackendList:
        return pb.BackendList(
            backends=[pb.BackendInfo(backend_id=b.id.bytes, name=b.name, host=b.host, port=b.port, draining=b.draining)
                      for b in self.directory.backends()],
            cluster_id=self.directory.cluster_id.bytes,
            restored=self.epoch.active(),
        )

    @handler
    def RegisterBackend(self, request: pb.BackendInfo, context) -> pb.BackendList:
        backend_id = parse_uuid(request.backend_id, "backend id")
        with self._bound(context, "register a backend") as caller:
            self.directory.register_backend(BackendInfo(backend_id, request.name, request.host, request.port), caller)
        return self._backend_list()

    @handler
    def ListBackends(self, request: pb.Empty, context) -> pb.BackendList:
        return self._backend_list()

    @handler
    def RegisterObjects(self, request: pb.RegisterObjectsRequest, context) -> pb.RegisterObjectsReply:
        if not request.stored and any(e.retired for e in request.objects):
            raise InvalidRequestError("only entries of stored objects (RegisterObjects with stored) may be retired")
        entries = [
            ObjectEntry(parse_uuid(e.object_id, "object id"), e.class_path, parse_uuid(e.backend_id, "backend id"),
                        optional_uuid(e.version_parent, "version parent"),
                        optional_uuid(e.version_original, "version original"), retired=e.retired)
            for e in request.objects
        ]
        self.epoch.require_reconciled({entry.backend_id for entry in entries})
        with self._bound(context, "register objects") as caller:
            if request.stored:
                refused = self.directory.register_stored(entries, caller)
                return pb.RegisterObjectsReply(refused=[object_id.bytes for object_id in refused])
            self.directory.register_objects(entries, request.alias, caller)
        return pb.RegisterObjectsReply()

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
    def ListOwnedObjects(self, request: pb.OwnedObjectsRequest, context) -> pb.OwnedObjectsPage:
        backend_id = parse_uuid(request.backend_id, "backend id")
        page = dict(backend_id=backend_id, after=request.after[:16], limit=IDS_PER_PART)
        identity = peer_identity(context)
        if identity is not None and identity.role == BACKEND:
            with self._bound(context, "list objects") as caller:
                owned, more = self.directory.owned_page(**page, caller=caller)
        else:
            owned, more = self.directory.owned_page(**page)
        return pb.OwnedObjectsPage(object_ids=[object_id.bytes for object_id in owned], more=more)

    @handler
    def DropObjects(self, request: pb.ObjectIdList, context) -> pb.Empty:
        object_ids = [parse_uuid(raw, "object id") for raw in request.object_ids]
        with self._bound(context, "drop objects") as caller:
            self.directory.drop_objects(object_ids, caller)
        return pb.Empty()

    @handler
    def CommitMove(self, request: pb.CommitMoveRequest, context) -> pb.Empty:
        source = parse_uuid(request.source_backend_id, "source backend id")
        self.epoch.require_reconciled({source})
        with self._bound(context, "commit a move") as caller:
            self.directory.commit_move(
                parse_keys(request.object_ids, "object id"),
                source,
                parse_uuid(request.destination_backend_id, "destination backend id"),
                optional_uuid(request.move_id, "move id"),
                caller,
            )
        return pb.Empty()

    @handler
    def CommitTransaction(self, request: pb.TransactionRequest, context) -> pb.Empty:
        retire = [parse_uuid(raw, "object id") for raw in request.retire]
        with self._bound(context, "retire versions") as caller:
            self.directory.commit_transaction(parse_uuid(request.txn_id, "transaction id"), retire,
                                              dict(request.base_revisions), caller, request.discarded)
        return pb.Empty()

    @handler
    def ResolveTransaction(self, request: pb.TransactionRequest, context) -> pb.TransactionState:
        apply = self.directory.resolve_transaction(parse_uuid(request.txn_id, "transaction id"))
        return pb.TransactionState(committed=apply is not None, base_revisions=apply or {})

    @handler
    def SetDraining(self, request: pb.BackendRequest, context) -> pb.Empty:
        self.directory.set_draining(parse_uuid(request.backend_id, "backend id"), request.draining)
        return pb.Empty()

    @handler
    def DeregisterBackend(self, request: pb.BackendRequest, context) -> pb.Empty:
        self.directory.deregister_backend(parse_uuid(request.backend_id, "backend id"))
        return pb.Empty()

    @handler
    def Backup(self, request: pb.Empty, context) -> pb.BackupInfo:
        return _backup(self.backups.take())

    @handler
    def LastBackup(self, request: pb.Empty, context) -> pb.BackupInfo:
        return _backup(self.backups.last())

    @handler
    def ReconcileObjects(self, request: pb.ReconcileRequest, context) -> pb.ReconcileReply:
        backend_id = parse_uuid(request.backend_id, "backend id")
        held = [(parse_uuid(e.object_id, "object id"), e.class_path) for e in request.held]
        not_held = [parse_uuid(raw, "object id") for raw in request.not_held]
        check_ids(len(held) + len(not_held))
        for _, class_path in held:
            check_class_path(class_path)
        what = f"reconcile the objects of backend {backend_id}"
        with self._bound(context, what) as caller:
            try:
                done = self.epoch.reconcile(backend_id, held, not_held, request.done, caller)
            except Refused as refused:
                raise Refusal(what, str(refused)) from None
        return pb.ReconcileReply(refused=[object_id.bytes for object_id in done.refused], adopted=done.adopted,
                                 reassigned=done.reassigned, restore_ended=done.ended)

    # ------------------------------------------------------------------ replicas
    def _by_role(self, context, what: str, call):
        """call(caller): bound to the calling backend's name, or unbound for the admin."""
        identity = peer_identity(context)
        if identity is not None and identity.role == BACKEND:
            with self._bound(context, what) as caller:
                return call(caller)
        return call(None)

    @handler
    def AddReplicas(self, request: pb.ReplicaChange, context) -> pb.Empty:
        object_ids = [parse_uuid(raw, "object id") for raw in request.object_ids]
        holder = parse_uuid(request.backend_id, "backend id")
        with self._bound(context, "record replicas") as caller:
            self.directory.add_replicas(object_ids, holder, caller)
        return pb.Empty()

    @handler
    def DropReplicas(self, request: pb.ReplicaChange, context) -> pb.Empty:
        object_ids = [parse_uuid(raw, "object id") for raw in request.object_ids]
        holder = parse_uuid(request.backend_id, "backend id")
        self._by_role(context, "drop replicas", lambda caller: self.directory.drop_replicas(object_ids, holder, caller))
        return pb.Empty()

    @handler
    def ListReplicas(self, request: pb.ReplicasRequest, context) -> pb.ReplicaList:
        holder = optional_uuid(request.holder, "holder backend id")
        master = optional_uuid(request.master, "master backend id")
        entries = self._by_role(context, "list replicas",
                                lambda caller: self.directory.list_replicas(holder, master, caller))
        return pb.ReplicaList(replicas=[
            pb.ReplicaEntry(object_id=e.object_id.bytes, backend_id=e.backend_id.bytes,
                            master_backend_id=e.master_backend_id.bytes) for e in entries])
