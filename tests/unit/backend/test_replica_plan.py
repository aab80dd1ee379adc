"""The decisions of replication (dataclay_backend.replica_plan), without a network: where a new
replica goes, what needs one, where a committed change is sent, and which replicas are dropped
because they did not confirm it."""
import random
import uuid

import pytest

from dataclay.exceptions import BackendDrainingError, BackendUnavailableError, NoBackendAvailableError
from dataclay.transport import BackendInfo
from dataclay_backend import replica_plan


def infos(count: int, draining: set[int] = frozenset()) -> list[BackendInfo]:
    return [BackendInfo(uuid.uuid4(), f"backend-{i}", "127.0.0.1", 1000 + i, i in draining) for i in range(count)]


def test_without_a_backend_a_replica_goes_to_a_backend_that_holds_no_copy_and_is_not_draining():
    backends = infos(5, draining={3})
    master, holder = backends[0].id, backends[1].id
    chosen = {replica_plan.choose_destination(backends, master, {holder}, random.Random(seed)) for seed in range(50)}
    assert chosen == {backends[2].id, backends[4].id}  # at random among them, as dataClay picks


def test_no_backend_left_for_a_replica_is_a_typed_error_that_is_also_a_runtime_error():
    backends = infos(3, draining={2})
    with pytest.raises(NoBackendAvailableError) as refused:
        replica_plan.choose_destination(backends, backends[0].id, {backends[1].id})
    assert isinstance(refused.value, RuntimeError)


def test_a_named_draining_destination_is_refused():
    with pytest.raises(BackendDrainingError):
        replica_plan.check_destination(infos(1, draining={0})[0])
    replica_plan.check_destination(infos(1)[0])


def test_replicating_onto_the_master_or_an_existing_holder_adds_nothing():
    master, holder, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    object_id = uuid.uuid4()
    holders = {object_id: {holder}}
    assert not replica_plan.needs_replica(object_id, master, master, holders)
    assert not replica_plan.needs_replica(object_id, holder, master, holders)
    assert replica_plan.needs_replica(object_id, other, master, holders)
    assert replica_plan.needs_replica(uuid.uuid4(), holder, master, holders)


def test_a_change_of_objects_without_replicas_is_sent_nowhere():
    assert replica_plan.fan_out([uuid.uuid4(), uuid.uuid4()], {}) == {}
    assert replica_plan.fan_out([uuid.uuid4()], {uuid.uuid4(): {uuid.uuid4()}}) == {}


def test_a_change_goes_to_every_holder_of_each_changed_object():
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    h1, h2 = uuid.uuid4(), uuid.uuid4()
    plan = replica_plan.fan_out([a, b, c], {a: {h1, h2}, b: {h2}})
    assert {holder: sorted(ids) for holder, ids in plan.items()} == {h1: [a], h2: sorted([a, b])}


def test_every_holder_that_did_not_confirm_loses_every_replica_it_was_sent_and_the_others_keep_theirs():
    a, b = uuid.uuid4(), uuid.uuid4()
    h1, h2, h3 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    plan = {h1: [a], h2: [a, b], h3: [b]}
    failures = {h2: BackendUnavailableError("gone"), h3: OSError("disk full")}
    assert replica_plan.unconfirmed(plan, failures) == {h2: [a, b], h3: [b]}
    assert replica_plan.unconfirmed(plan, {}) == {}
