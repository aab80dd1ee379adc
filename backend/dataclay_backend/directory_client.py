"""What a backend asks the metadata service (the directory), each call named for what it means.
Blocking, from the calling thread; errors arrive typed (dataclay.exceptions)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable
from uuid import UUID

from dataclay import lifecycle as lc
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.operations import ask_directory
from dataclay.protocol.pages import owned_objects
from dataclay.serialization import class_path
from dataclay.transport import BlockingTransport, run_blocking
from dataclay_backend.validation import IDS_PER_PART

if TYPE_CHECKING:
    from dataclay_backend.registrations import Registrations

RECONCILE_PART = 2000  # entries with their class paths (up to 512 characters each) per message


def new_entries(objects: list[Any], backend_id: UUID) -> list[pb.ObjectEntry]:
    """The directory entries of new objects (no versions) owned by backend_id."""
    return [pb.ObjectEntry(object_id=o.__dict__[lc.ID].bytes, class_path=class_path(type(o)), backend_id=backend_id.bytes)
            for o in objects]


class DirectoryClient:
    def __init__(self, transport: BlockingTransport) -> None:
        self._transport = transport
        self.registrations: "Registrations | None" = None  # set once the backend's store is open

    def _call(self, method: str, request):
        """Every question and change goes after the registrations still pending here
        (registrations.py): the directory never answers about this backend's objects without them."""
        self._pending_sent()
        return run_blocking(self._transport.metadata(method, request))

    def _pending_sent(self) -> None:
        if self.registrations is not None:
            self.registrations.flush()

    def send_registrations(self, entries: list[pb.ObjectEntry]) -> list[UUID]:
        """Registrations.send: entries of objects stored here already (accepted while draining);
        returns the ids refused (the directory has them for another object)."""
        reply = run_blocking(self._transport.metadata(
            "RegisterObjects", pb.RegisterObjectsRequest(objects=entries, stored=True)))
        return [UUID(bytes=raw) for raw in reply.refused]

    def register(self, entries: list[pb.ObjectEntry], alias: str = "") -> None:
        """New objects of this backend, before they are stored here: a crash in between leaves
        entries that recovery removes, never stored objects the directory does not list."""
        self._call("RegisterObjects", pb.RegisterObjectsRequest(objects=entries, alias=alias))

    def register_objects(self, objects: list[Any], backend_id: UUID, alias: str = "") -> None:
        """register() of these instances, owned by backend_id."""
        self.register(new_entries(objects, backend_id), alias)

    def owner_of(self, object_id: UUID) -> UUID:
        return UUID(bytes=self.entry_of(object_id).backend_id)

    def entry_of(self, object_id: UUID) -> pb.ObjectEntry:
        """The directory's entry of an object: its owner and its replica holders (another
        backend's new object may be on its way to the directory: ask_directory)."""
        self._pending_sent()
        return run_blocking(ask_directory(self._transport, "LocateObject", pb.ObjectRequest(object_id=object_id.bytes)))

    def add_replicas(self, object_ids: list[UUID], holder: UUID) -> None:
        self._call("AddReplicas", pb.ReplicaChange(object_ids=[i.bytes for i in object_ids], backend_id=holder.bytes))

    def drop_replicas(self, object_ids: list[UUID], holder: UUID) -> None:
        self._call("DropReplicas", pb.ReplicaChange(object_ids=[i.bytes for i in object_ids], backend_id=holder.bytes))

    def list_replicas(self, holder: UUID | None = None, master: UUID | None = None) -> list[pb.ReplicaEntry]:
        request = pb.ReplicasRequest(holder=holder.bytes if holder else b"", master=master.bytes if master else b"")
        return list(self._call("ListReplicas", request).replicas)

    def owned_by(self, backend_id: UUID) -> set[UUID]:
        owned = owned_objects(lambda request: self._call("ListOwnedObjects", request), backend_id.bytes)
        return {UUID(bytes=raw) for raw in owned}

    def reconcile(self, backend_id: UUID, held: dict[UUID, str], not_held: Iterable[UUID], done: bool) -> pb.ReconcileReply:
        """After a restore: report what this backend holds and which of the entries listed under
        it it does not store, in parts (restore_epoch.py has the rule); with `done`, the last
        part says this backend has reported everything.
        Returns the totals (refused: the held objects that are not ours to serve)."""
        entries = [pb.ObjectEntry(object_id=o.bytes, class_path=path) for o, path in held.items()]
        missing = [o.bytes for o in not_held]
        total = pb.ReconcileReply()
        while True:
            part = pb.ReconcileRequest(backend_id=backend_id.bytes, held=entries[:RECONCILE_PART],
                                       not_held=missing[:IDS_PER_PART])
            entries, missing = entries[RECONCILE_PART:], missing[IDS_PER_PART:]
            last = not entries and not missing
            part.done = done and last
            reply = self._call("ReconcileObjects", part)
            total.refused.extend(reply.refused)
            total.adopted += reply.adopted
            total.reassigned += reply.reassigned
            total.restore_ended = reply.restore_ended
            if last:
                return total

    def drop(self, object_ids: Iterable[UUID]) -> None:
        """Forget these objects in the directory, in parts that fit a message and the ids-per-call cap."""
        keys = [o.bytes for o in object_ids]
        for start in range(0, len(keys), IDS_PER_PART):
            self._call("DropObjects", pb.ObjectIdList(object_ids=keys[start:start + IDS_PER_PART]))

    def commit_move(self, keys: list[bytes], source: UUID, destination: UUID, move_id: UUID) -> None:
        """The move's commit point (idempotent: asking again after a lost reply is safe; fenced
        by move_id: once resolve_transaction(move_id) said "not committed", it is refused)."""
        self._call("CommitMove", pb.CommitMoveRequest(
            object_ids=keys, source_backend_id=source.bytes, destination_backend_id=destination.bytes,
            move_id=move_id.bytes))

    def commit_transaction(
        self, txn: UUID, retire: list[bytes], base_revisions: dict[str, int] | None = None, discarded: bool = False,
    ) -> None:
        """A consolidation's commit point (or, with a fresh txn, just retiring versions)."""
        self._call("CommitTransaction", pb.TransactionRequest(
            txn_id=txn.bytes, retire=retire, base_revisions=base_revisions or {}, discarded=discarded))

    def resolve_transaction(self, txn: UUID) -> pb.TransactionState:
        """Whether txn (a consolidation, or a move by its id) committed; asking makes "not
        committed" final (presumed abort)."""
        return self._call("ResolveTransaction", pb.TransactionRequest(txn_id=txn.bytes))
