"""The destination side of moves (dataclay_backend.mover.Mover.receive/abort/activate) through a
real runtime and store, without a network: what a late message about an older move may touch."""
import uuid

import pytest

from dataclay.protocol import dataclay_pb2 as pb
from dataclay.serialization import dumps, make_ref
from dataclay_backend.backend_runtime import BackendRuntime
from dataclay_backend.object_store import StoredObject
from local_runtime import local_runtime

PATH = "hr.Employee"


@pytest.fixture
def rt(tmp_path):
    with local_runtime(tmp_path, lock_timeout=5.0) as runtime:
        yield runtime


def transfer(rt: BackendRuntime, move_id: uuid.UUID, object_id: uuid.UUID, salary: float) -> None:
    state = dumps({"name": "moved", "salary": salary}, make_ref)
    rt.mover.receive([pb.TransferChunk(
        move_id=move_id.bytes, source_backend_id=uuid.uuid4().bytes, destination_backend_id=rt.local_backend_id.bytes,
        objects=[pb.ObjectRecord(object_id=object_id.bytes, class_path=PATH, state=state, revision=1)])])


def test_a_late_abort_of_an_older_move_leaves_the_newer_staging_of_the_same_object(rt):
    """X was staged by move M1, whose source then staged it again by M2 (M1 failed before its
    commit and its AbortMove arrived late): aborting M1 must not forget that X is staged by M2,
    or a call for X after M2's commit (the source died before ActivateMove) cannot activate it."""
    object_id, first, second = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    transfer(rt, first, object_id, 1.0)
    transfer(rt, second, object_id, 2.0)
    rt.mover.abort(first)  # late
    assert rt.mover.staging_move(object_id) == second
    assert rt.mover.activate_if_committed(object_id, rt.local_backend_id)
    assert object_id in rt.owned
    employee = rt.objects.instance(object_id, PATH)
    rt.objects.load(employee)
    assert employee.__dict__["salary"] == 2.0


def test_a_call_for_an_object_two_moves_staged_activates_the_later(rt):
    """As above, before the late abort arrives: the later staging's rows replaced the older
    one's, so only the later move can make X live."""
    object_id, first, second = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    transfer(rt, first, object_id, 1.0)
    transfer(rt, second, object_id, 2.0)
    assert rt.mover.staging_move(object_id) == second
    assert rt.mover.activate_if_committed(object_id, rt.local_backend_id)
    employee = rt.objects.instance(object_id, PATH)
    rt.objects.load(employee)
    assert employee.__dict__["salary"] == 2.0
    assert not rt.mover.activate_if_committed(uuid.uuid4(), rt.local_backend_id)  # staged by none


def test_forgetting_a_stale_copy_keeps_a_later_moves_staged_copy_and_its_file(rt):
    """A move of X away was in doubt here (its row kept), and X came back by a later move (staged,
    its state in a file) before the first was found committed: forgetting the stale copy must
    not delete the later copy or its file."""
    object_id, later = uuid.uuid4(), uuid.uuid4()
    big = "x" * (2 * 1024 * 1024)  # a state file of its own
    rt.store.write([StoredObject(object_id, PATH, 4, dumps({"name": "stale", "salary": 1.0}, make_ref))])
    state = dumps({"name": big, "salary": 3.0}, make_ref)
    rt.mover.receive([pb.TransferChunk(
        move_id=later.bytes, source_backend_id=uuid.uuid4().bytes, destination_backend_id=rt.local_backend_id.bytes,
        objects=[pb.ObjectRecord(object_id=object_id.bytes, class_path=PATH, state=state, revision=5)])])
    rt.objects.forget_stored([object_id])
    rt.mover.activate(later)
    employee = rt.objects.instance(object_id, PATH)
    rt.objects.load(employee)
    assert employee.__dict__["salary"] == 3.0 and employee.__dict__["name"] == big


def test_the_objects_a_transfer_brings_share_one_class_path_string(rt):
    """Each record's class path arrives as a string of its own; the owned map keeps one per
    class, not one per object (about 70 bytes each, for every object a move brings)."""
    move_id, ids = uuid.uuid4(), [uuid.uuid4() for _ in range(3)]
    state = dumps({"name": "moved", "salary": 1.0}, make_ref)
    rt.mover.receive([pb.TransferChunk(
        move_id=move_id.bytes, source_backend_id=uuid.uuid4().bytes, destination_backend_id=rt.local_backend_id.bytes,
        objects=[pb.ObjectRecord(object_id=i.bytes, class_path="".join(PATH), state=state, revision=1) for i in ids])])
    rt.mover.activate(move_id)
    assert [rt.owned[i] for i in ids] == [PATH] * 3
    assert len({id(rt.owned[i]) for i in ids}) == 1


def test_the_objects_a_client_stores_share_one_class_path_string(rt):
    """As above, for StoreObjects (a client's make_persistent): registered after the reply, so
    this needs no directory."""
    ids = [uuid.uuid4() for _ in range(3)]
    state = dumps({"name": "new", "salary": 1.0}, make_ref)
    rt.incoming.store_records([pb.ObjectRecord(object_id=i.bytes, class_path="".join(PATH), state=state) for i in ids], "")
    assert [rt.owned[i] for i in ids] == [PATH] * 3
    assert len({id(rt.owned[i]) for i in ids}) == 1
