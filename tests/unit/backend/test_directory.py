"""The metadata service's directory (dataclay_backend.directory.Directory) on a real SQLite file:
backends, objects, aliases, the commit points of moves and consolidations, and their typed
refusals. Every refusal must leave the directory as it was."""
import uuid
from uuid import UUID

import pytest

from dataclay.exceptions import (
    AliasAlreadyExistError,
    AliasDoesNotExistError,
    AlreadyExistError,
    BackendDrainingError,
    BackendNotDrainedError,
    BackendNotFoundError,
    BackendRetiredError,
    ClusterMismatchError,
    InvalidRequestError,
    ObjectMovingError,
    ObjectNotRegisteredError,
    VersionConflictError,
    VersionConsolidatedError,
    VersionRetiredError,
)
from dataclay_backend.directory import BackendInfo, Directory, ObjectEntry, Refusal

PATH = "hr.Employee"


@pytest.fixture
def directory(tmp_path):
    opened = Directory(tmp_path)
    yield opened
    opened.close()


def backend(directory: Directory, name: str, port: int = 1) -> UUID:
    backend_id = uuid.uuid4()
    directory.register_backend(BackendInfo(backend_id, name, "127.0.0.1", port))
    return backend_id


def objects_on(directory: Directory, backend_id: UUID, count: int, **lineage) -> list[UUID]:
    ids = [uuid.uuid4() for _ in range(count)]
    directory.register_objects([ObjectEntry(i, PATH, backend_id, **lineage) for i in ids])
    return ids


def owners(directory: Directory, ids: list[UUID]) -> set[UUID]:
    return {directory.locate(object_id).backend_id for object_id in ids}


# ---------------------------------------------------------------------------------------- backends

def test_backends_are_listed_in_registration_order_and_reregistering_updates_the_address(directory):
    first, second = backend(directory, "backend-0", 1), backend(directory, "backend-1", 2)
    directory.register_backend(BackendInfo(first, "backend-0", "10.0.0.9", 7))  # restarted elsewhere
    assert [(b.id, b.name, b.host, b.port) for b in directory.backends()] == [
        (first, "backend-0", "10.0.0.9", 7), (second, "backend-1", "127.0.0.1", 2)]


def test_a_draining_backend_that_registers_again_stays_draining_until_the_mark_is_lifted(directory):
    backend_id = backend(directory, "backend-0")
    directory.set_draining(backend_id, True)
    assert directory.backends()[0].draining
    with pytest.raises(BackendDrainingError) as refused:
        objects_on(directory, backend_id, 1)
    assert refused.value.backend_id == backend_id
    directory.register_backend(BackendInfo(backend_id, "backend-0", "127.0.0.1", 1))  # its pod restarted
    assert directory.backends()[0].draining
    directory.set_draining(backend_id, False)  # the admin (operator: the spec wants it) lifts the mark
    assert owners(directory, objects_on(directory, backend_id, 1)) == {backend_id}


def test_a_new_id_takes_a_name_only_from_a_backend_that_owns_nothing(directory):
    old = backend(directory, "backend-0")
    objects_on(directory, old, 2)
    newcomer = uuid.uuid4()
    with pytest.raises(ClusterMismatchError) as refused:
        directory.register_backend(BackendInfo(newcomer, "backend-0", "127.0.0.1", 2))
    assert refused.value.backend_id == newcomer and refused.value.name == "backend-0"
    assert [b.id for b in directory.backends()] == [old]  # unchanged

    empty = backend(directory, "backend-1")
    replacement = uuid.uuid4()
    directory.register_backend(BackendInfo(replacement, "backend-1", "127.0.0.1", 3))  # e.g. a wiped volume
    assert [b.id for b in directory.backends()] == [old, replacement] and empty != replacement


def test_draining_an_unknown_backend_is_refused(directory):
    unknown = uuid.uuid4()
    with pytest.raises(BackendNotFoundError) as refused:
        directory.set_draining(unknown, True)
    assert refused.value.backend_id == unknown


def test_a_backend_is_deregistered_only_once_drained_and_empty(directory):
    backend_id = backend(directory, "backend-0")
    [kept] = objects_on(directory, backend_id, 1)
    with pytest.raises(BackendNotDrainedError, match="drain"):  # active: not drained
        directory.deregister_backend(backend_id)
    directory.set_draining(backend_id, True)
    with pytest.raises(BackendNotDrainedError, match="1 object"):  # draining, still owning one
        directory.deregister_backend(backend_id)
    assert [b.id for b in directory.backends()] == [backend_id] and owners(directory, [kept]) == {backend_id}
    directory.drop_objects([kept])
    directory.deregister_backend(backend_id)
    assert directory.backends() == []
    directory.deregister_backend(backend_id)  # again (a retry after a lost reply): still retired
    with pytest.raises(BackendNotFoundError):
        directory.deregister_backend(uuid.uuid4())


def test_a_retired_backend_never_registers_again_but_its_name_is_free(directory):
    retired = backend(directory, "backend-2")
    directory.set_draining(retired, True)
    directory.deregister_backend(retired)
    with pytest.raises(BackendRetiredError) as refused:
        directory.register_backend(BackendInfo(retired, "backend-2", "127.0.0.1", 1))
    assert refused.value.backend_id == retired and "empty data directory" in str(refused.value)
    with pytest.raises(BackendNotFoundError):  # it takes no objects either
        objects_on(directory, retired, 1)
    newcomer = backend(directory, "backend-2")
    assert [b.id for b in directory.backends()] == [newcomer]


def test_a_retired_backend_stays_retired_after_reopening(tmp_path):
    first = Directory(tmp_path)
    retired = backend(first, "backend-0")
    first.set_draining(retired, True)
    first.deregister_backend(retired)
    first.close()
    again = Directory(tmp_path)
    try:
        with pytest.raises(BackendRetiredError):
            again.register_backend(BackendInfo(retired, "backend-0", "127.0.0.1", 1))
    finally:
        again.close()


# ---------------------------------------------------------------------------------------- objects

def test_registered_objects_are_located_with_their_lineage(directory):
    backend_id = backend(directory, "backend-0")
    [original] = objects_on(directory, backend_id, 1)
    [version] = objects_on(directory, backend_id, 1, version_parent=original, version_original=original)
    assert directory.locate(original) == ObjectEntry(original, PATH, backend_id)
    assert directory.locate(version) == ObjectEntry(version, PATH, backend_id, original, original)
    assert set(directory.owned_by(backend_id)) == {original, version}


def test_registering_is_all_or_nothing(directory):
    backend_id = backend(directory, "backend-0")
    [existing] = objects_on(directory, backend_id, 1)
    fresh = uuid.uuid4()
    with pytest.raises(AlreadyExistError):
        directory.register_objects([ObjectEntry(fresh, PATH, backend_id), ObjectEntry(existing, PATH, backend_id)],
                                   alias="fresh")
    with pytest.raises(ObjectNotRegisteredError):
        directory.locate(fresh)
    with pytest.raises(AliasDoesNotExistError):
        directory.lookup_alias("fresh")


def test_a_registration_replayed_after_a_lost_reply_succeeds(directory):
    backend_id = backend(directory, "backend-0")
    entries = [ObjectEntry(uuid.uuid4(), PATH, backend_id), ObjectEntry(uuid.uuid4(), PATH, backend_id)]
    directory.register_objects(entries, alias="replayed")
    directory.register_objects(entries, alias="replayed")  # the same request again: no error, no change
    assert set(directory.owned_by(backend_id)) == {e.object_id for e in entries}
    assert directory.lookup_alias("replayed").object_id == entries[0].object_id
    other = backend(directory, "backend-1")
    with pytest.raises(AlreadyExistError):  # the same ids from another backend are not a replay
        directory.register_objects([ObjectEntry(entries[0].object_id, PATH, other)])
    with pytest.raises(AlreadyExistError):  # nor with another alias
        directory.register_objects(entries, alias="another")
    directory.set_draining(backend_id, True)  # a drain began before the replay arrived
    directory.register_objects(entries, alias="replayed")  # still acknowledged: it had committed
    with pytest.raises(BackendDrainingError):
        directory.register_objects([ObjectEntry(uuid.uuid4(), PATH, backend_id)])


def test_objects_stored_already_are_registered_each_on_its_own(directory):
    """RegisterObjects(stored=True): a backend registers what it stored after replying."""
    mine, other = backend(directory, "backend-0"), backend(directory, "backend-1")
    theirs, before = objects_on(directory, other, 1)[0], ObjectEntry(uuid.uuid4(), PATH, mine)
    assert directory.register_stored([before], caller="backend-0") == []
    directory.set_draining(mine, True)  # stored already: taken while draining (the drain lists them)
    fresh = ObjectEntry(uuid.uuid4(), PATH, mine)
    other_class = ObjectEntry(before.object_id, "hr.Company", mine)
    refused = directory.register_stored(
        [before, fresh, ObjectEntry(theirs, PATH, mine)], caller="backend-0")  # `before`: a replay, skipped
    assert refused == [theirs]
    assert directory.register_stored([other_class], caller="backend-0") == [before.object_id]
    assert set(directory.owned_by(mine)) == {before.object_id, fresh.object_id}
    assert directory.locate(theirs).backend_id == other and directory.locate(before.object_id).class_path == PATH
    with pytest.raises(Refusal):  # only its own objects
        directory.register_stored([ObjectEntry(uuid.uuid4(), PATH, other)], caller="backend-0")


def test_objects_go_only_to_registered_backends(directory):
    unknown = uuid.uuid4()
    with pytest.raises(BackendNotFoundError):
        objects_on(directory, unknown, 1)
    assert directory.owned_by(unknown) == []


def test_an_unknown_object_is_a_typed_error_naming_it(directory):
    unknown = uuid.uuid4()
    with pytest.raises(ObjectNotRegisteredError) as refused:
        directory.locate(unknown)
    assert refused.value.object_id == unknown


def test_dropped_objects_lose_their_aliases(directory):
    backend_id = backend(directory, "backend-0")
    kept, dropped = objects_on(directory, backend_id, 2)
    directory.add_alias("dropped", dropped)
    directory.drop_objects([dropped])
    with pytest.raises(ObjectNotRegisteredError):
        directory.locate(dropped)
    with pytest.raises(AliasDoesNotExistError):
        directory.lookup_alias("dropped")
    assert directory.owned_by(backend_id) == [kept]


# ---------------------------------------------------------------------------------------- moves

def test_a_move_commits_every_object_at_once(directory):
    source, destination = backend(directory, "backend-0"), backend(directory, "backend-1")
    ids = objects_on(directory, source, 1234)  # more than one batch of the IN (...) update
    directory.commit_move([i.bytes for i in ids], source, destination)
    assert owners(directory, ids) == {destination}
    assert directory.owned_by(source) == [] and len(directory.owned_by(destination)) == 1234


def test_a_move_commits_only_if_the_source_still_owns_every_object(directory):
    source, destination, third = (backend(directory, f"backend-{i}") for i in range(3))
    ids = objects_on(directory, source, 600)
    directory.commit_move([ids[-1].bytes], source, third)  # a concurrent move took the last one
    with pytest.raises(ObjectMovingError) as refused:
        directory.commit_move([i.bytes for i in ids], source, destination)
    assert refused.value.backend_id == source
    assert owners(directory, ids[:-1]) == {source} and owners(directory, ids[-1:]) == {third}


def test_a_move_of_an_unregistered_object_moves_nothing(directory):
    source, destination = backend(directory, "backend-0"), backend(directory, "backend-1")
    ids = objects_on(directory, source, 2)
    with pytest.raises(ObjectMovingError):
        directory.commit_move([ids[0].bytes, uuid.uuid4().bytes, ids[1].bytes], source, destination)
    assert owners(directory, ids) == {source}


def test_a_retried_move_commit_is_accepted_once_it_committed(directory):
    """The reply to a commit can be lost; the mover asks again and must not be told it failed."""
    source, destination = backend(directory, "backend-0"), backend(directory, "backend-1")
    keys = [i.bytes for i in objects_on(directory, source, 3)]
    directory.commit_move(keys, source, destination)
    directory.commit_move(keys, source, destination)
    assert len(directory.owned_by(destination)) == 3


def test_a_move_resolved_as_not_committed_cannot_commit_later(directory):
    """Presumed abort: a source that could not learn the outcome asks; "not committed" is then
    final, so a CommitMove of that move arriving late (it sat in a stopped server) is refused."""
    source, destination = backend(directory, "backend-0"), backend(directory, "backend-1")
    ids = objects_on(directory, source, 3)
    move_id = uuid.uuid4()
    assert directory.resolve_transaction(move_id) is None
    with pytest.raises(ObjectMovingError):
        directory.commit_move([i.bytes for i in ids], source, destination, move_id)
    assert owners(directory, ids) == {source}


def test_a_fenced_move_that_committed_resolves_as_committed_and_accepts_its_retry(directory):
    source, destination = backend(directory, "backend-0"), backend(directory, "backend-1")
    ids = objects_on(directory, source, 3)
    move_id = uuid.uuid4()
    directory.commit_move([i.bytes for i in ids], source, destination, move_id)
    directory.commit_move([i.bytes for i in ids], source, destination, move_id)  # a retry after a lost reply
    assert owners(directory, ids) == {destination}
    assert directory.resolve_transaction(move_id) == {}  # committed (nothing to apply)


def test_a_refused_fenced_move_records_nothing(directory):
    source, destination, third = (backend(directory, f"backend-{n}") for n in range(3))
    ids = objects_on(directory, source, 2)
    directory.commit_move([ids[0].bytes], source, third)  # a concurrent move took one
    move_id = uuid.uuid4()
    with pytest.raises(ObjectMovingError):
        directory.commit_move([i.bytes for i in ids], source, destination, move_id)
    assert directory.resolve_transaction(move_id) is None  # not committed (and now fenced)


def test_no_move_commits_to_a_draining_or_unknown_backend(directory):
    source, destination = backend(directory, "backend-0"), backend(directory, "backend-1")
    ids = objects_on(directory, source, 2)
    directory.set_draining(destination, True)
    with pytest.raises(BackendDrainingError):
        directory.commit_move([i.bytes for i in ids], source, destination)
    with pytest.raises(BackendNotFoundError):
        directory.commit_move([i.bytes for i in ids], source, uuid.uuid4())
    assert owners(directory, ids) == {source}


# ---------------------------------------------------------------------------------------- aliases

def test_aliases_name_one_object_each(directory):
    backend_id = backend(directory, "backend-0")
    first, second = objects_on(directory, backend_id, 2)
    directory.add_alias("b", first)
    directory.add_alias("a", first)
    assert directory.lookup_alias("a").object_id == first and directory.aliases_of(first) == ["a", "b"]
    with pytest.raises(AliasAlreadyExistError) as refused:
        directory.add_alias("a", second)
    assert refused.value.alias == "a" and directory.lookup_alias("a").object_id == first
    directory.delete_alias("a")
    assert directory.aliases_of(first) == ["b"]
    with pytest.raises(AliasDoesNotExistError) as missing:
        directory.delete_alias("a")
    assert missing.value.alias == "a"


def test_alias_refusals(directory):
    [object_id] = objects_on(directory, backend(directory, "backend-0"), 1)
    with pytest.raises(InvalidRequestError):
        directory.add_alias("", object_id)
    with pytest.raises(ObjectNotRegisteredError):
        directory.add_alias("nobody", uuid.uuid4())
    with pytest.raises(AliasDoesNotExistError):
        directory.lookup_alias("nobody")
    assert directory.aliases_of(object_id) == []


def test_an_alias_given_at_registration_names_the_first_object(directory):
    backend_id = backend(directory, "backend-0")
    first, second = uuid.uuid4(), uuid.uuid4()
    directory.register_objects([ObjectEntry(first, PATH, backend_id), ObjectEntry(second, PATH, backend_id)],
                               alias="company")
    assert directory.lookup_alias("company").object_id == first


# ---------------------------------------------------------------------------------------- consolidations

def test_a_committed_consolidation_retires_its_versions_and_tells_what_to_apply(directory):
    backend_id = backend(directory, "backend-0")
    [original] = objects_on(directory, backend_id, 1)
    [version] = objects_on(directory, backend_id, 1, version_parent=original, version_original=original)
    directory.add_alias("v", version)
    txn = uuid.uuid4()
    directory.commit_transaction(txn, retire=[version], apply={original.hex: 4})
    with pytest.raises(VersionConsolidatedError) as retired:  # callers follow it to the original
        directory.locate(version)
    assert retired.value.object_id == version and retired.value.original_id == original
    with pytest.raises(AliasDoesNotExistError):
        directory.lookup_alias("v")
    assert directory.owned_by(backend_id) == [original]
    assert directory.resolve_transaction(txn) == {original.hex: 4}
    directory.commit_transaction(txn, retire=[version], apply={original.hex: 4})  # a retry after a lost reply
    assert directory.resolve_transaction(txn) == {original.hex: 4}


def test_a_discarded_version_does_not_forward_to_its_original(directory):
    backend_id = backend(directory, "backend-0")
    [original] = objects_on(directory, backend_id, 1)
    [version] = objects_on(directory, backend_id, 1, version_parent=original, version_original=original)
    directory.commit_transaction(uuid.uuid4(), retire=[version], apply={}, discarded=True)
    with pytest.raises(VersionRetiredError) as retired:
        directory.locate(version)
    assert type(retired.value) is VersionRetiredError and retired.value.original_id == original


def test_an_undecided_consolidation_is_presumed_aborted_and_cannot_commit_later(directory):
    txn = uuid.uuid4()
    assert directory.resolve_transaction(txn) is None  # a participant gave up waiting: aborted now
    with pytest.raises(VersionConflictError):
        directory.commit_transaction(txn, retire=[], apply={})
    assert directory.resolve_transaction(txn) is None


def test_a_failed_commit_retires_nothing(directory):
    backend_id = backend(directory, "backend-0")
    [original] = objects_on(directory, backend_id, 1)
    [version] = objects_on(directory, backend_id, 1, version_parent=original, version_original=original)
    txn = uuid.uuid4()
    directory.resolve_transaction(txn)
    with pytest.raises(VersionConflictError):
        directory.commit_transaction(txn, retire=[version], apply={original.hex: 2})
    assert directory.locate(version).version_original == original


def test_a_backends_objects_are_listed_in_pages_in_id_order_to_the_last(directory):
    backend_id, other = backend(directory, "backend-0", 1), backend(directory, "backend-1", 2)
    ids = objects_on(directory, backend_id, 7)
    objects_on(directory, other, 5)  # interleaved in id order with the first's: not listed
    pages, after, more = [], b"", True
    while more:
        page, more = directory.owned_page(backend_id, after=after, limit=3)
        pages.append(page)
        after = page[-1].bytes if page else after
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [i for page in pages for i in page] == sorted(ids, key=lambda i: i.bytes)
    assert directory.owned_page(backend_id, limit=7) == (sorted(ids, key=lambda i: i.bytes), False)


# ---------------------------------------------------------------------------------------- identity binding
# With authentication on, the servicer passes the calling backend's name (`caller`); the checks run
# inside the same transaction as the change, so nothing committed between a check and its change
# (a move taking the objects, a name changing hands) can make a refused change slip through.

def test_a_backend_drops_only_what_it_owns_when_the_drop_commits(directory):
    source, destination = backend(directory, "backend-0", 1), backend(directory, "backend-1", 2)
    ids = objects_on(directory, source, 3)
    directory.commit_move([i.bytes for i in ids], source, destination)  # commits before the drop runs
    with pytest.raises(Refusal) as refused:
        directory.drop_objects(ids, caller="backend-0")
    assert "not its own" in refused.value.why
    assert owners(directory, ids) == {destination}  # the rows the move took are still there
    directory.drop_objects(ids, caller="backend-1")
    with pytest.raises(ObjectNotRegisteredError):
        directory.locate(ids[0])


def test_a_backend_retires_only_its_own_versions(directory):
    mine, other = backend(directory, "backend-0", 1), backend(directory, "backend-1", 2)
    [original] = objects_on(directory, mine, 1)
    [version] = objects_on(directory, mine, 1, version_parent=original, version_original=original)
    [foreign] = objects_on(directory, other, 1, version_parent=original, version_original=original)
    for retire, why in (([original], "not a version"), ([version, foreign], "not its own")):
        with pytest.raises(Refusal) as refused:
            directory.commit_transaction(uuid.uuid4(), retire=retire, apply={}, caller="backend-0")
        assert why in refused.value.why
    assert directory.locate(version).version_original == original  # nothing retired
    assert directory.locate(foreign).backend_id == other
    directory.commit_transaction(uuid.uuid4(), retire=[version], apply={}, caller="backend-0")
    with pytest.raises(VersionRetiredError):
        directory.locate(version)


def test_a_backend_commits_only_moves_it_is_the_source_of(directory):
    source, destination = backend(directory, "backend-0", 1), backend(directory, "backend-1", 2)
    ids = objects_on(directory, source, 2)
    with pytest.raises(Refusal) as refused:
        directory.commit_move([i.bytes for i in ids], source, destination, caller="backend-1")
    assert "source" in refused.value.why
    assert owners(directory, ids) == {source}
    directory.commit_move([i.bytes for i in ids], source, destination, caller="backend-0")
    assert owners(directory, ids) == {destination}


def test_a_backend_registers_only_objects_it_owns(directory):
    mine, other = backend(directory, "backend-0", 1), backend(directory, "backend-1", 2)
    theirs = uuid.uuid4()
    with pytest.raises(Refusal):
        directory.register_objects([ObjectEntry(uuid.uuid4(), PATH, mine), ObjectEntry(theirs, PATH, other)],
                                   caller="backend-0")
    with pytest.raises(ObjectNotRegisteredError):
        directory.locate(theirs)
    created = uuid.uuid4()
    directory.register_objects([ObjectEntry(created, PATH, mine)], caller="backend-0")
    assert directory.locate(created).backend_id == mine


def test_a_backend_registers_only_its_own_name_and_an_id_never_changes_hands(directory):
    taken = backend(directory, "backend-0", 1)
    with pytest.raises(Refusal) as refused:
        directory.register_backend(BackendInfo(uuid.uuid4(), "backend-0", "127.0.0.1", 9), caller="backend-1")
    assert "own name" in refused.value.why
    with pytest.raises(Refusal) as refused:  # backend-1 presenting backend-0's id
        directory.register_backend(BackendInfo(taken, "backend-1", "127.0.0.1", 9), caller="backend-1")
    assert "never changes hands" in refused.value.why
    assert [(b.id, b.name, b.port) for b in directory.backends()] == [(taken, "backend-0", 1)]
    directory.register_backend(BackendInfo(taken, "backend-0", "10.0.0.2", 5), caller="backend-0")
    assert [(b.id, b.host, b.port) for b in directory.backends()] == [(taken, "10.0.0.2", 5)]


def test_a_backend_lists_only_its_own_objects_and_an_unregistered_caller_nothing(directory):
    mine, other = backend(directory, "backend-0", 1), backend(directory, "backend-1", 2)
    ids = objects_on(directory, mine, 2)
    assert sorted(directory.owned_by(mine, caller="backend-0")) == sorted(ids)
    with pytest.raises(Refusal):
        directory.owned_by(mine, caller="backend-1")
    with pytest.raises(Refusal) as refused:
        directory.drop_objects(ids, caller="backend-9")
    assert "not registered" in refused.value.why
    assert owners(directory, ids) == {mine}


# ---------------------------------------------------------------------------------------- durability

def test_everything_is_there_after_reopening(tmp_path):
    first = Directory(tmp_path)
    cluster_id = first.cluster_id
    source, destination = backend(first, "backend-0"), backend(first, "backend-1")
    ids = objects_on(first, source, 3)
    first.add_alias("kept", ids[0])
    first.commit_move([ids[1].bytes], source, destination)
    txn = uuid.uuid4()
    first.commit_transaction(txn, retire=[], apply={ids[2].hex: 7})
    first.close()

    again = Directory(tmp_path)
    try:
        assert again.cluster_id == cluster_id
        assert [b.id for b in again.backends()] == [source, destination]
        assert again.lookup_alias("kept").object_id == ids[0]
        assert again.locate(ids[1]).backend_id == destination and again.locate(ids[2]).backend_id == source
        assert again.resolve_transaction(txn) == {ids[2].hex: 7}
    finally:
        again.close()


def test_two_data_directories_are_two_clusters(tmp_path):
    one, other = Directory(tmp_path / "one"), Directory(tmp_path / "other")
    try:
        assert one.cluster_id != other.cluster_id
    finally:
        one.close()
        other.close()


def test_an_unknown_durability_level_is_refused(tmp_path):
    with pytest.raises(ValueError):
        Directory(tmp_path, durability="sometimes")


# ---------------------------------------------------------------------------------------- replicas

def test_replicas_are_recorded_per_object_and_located_with_it(directory):
    master, holder, other = backend(directory, "backend-0"), backend(directory, "backend-1"), backend(directory, "backend-2")
    first, second = objects_on(directory, master, 2)
    directory.add_replicas([first, second], holder, caller="backend-0")
    directory.add_replicas([first], other)
    directory.add_replicas([first], other)  # recorded twice is recorded once
    assert set(directory.locate(first).replicas) == {holder, other}
    assert directory.locate(second).replicas == (holder,)
    assert {(e.object_id, e.backend_id, e.master_backend_id) for e in directory.list_replicas(holder=holder)} == {
        (first, holder, master), (second, holder, master)}
    assert len(directory.list_replicas(master=master, caller="backend-0")) == 3


def test_only_the_master_records_or_drops_replicas_and_never_on_itself_or_a_draining_backend(directory):
    master, holder, draining = backend(directory, "backend-0"), backend(directory, "backend-1"), backend(directory, "backend-2")
    directory.set_draining(draining, True)
    (object_id,) = objects_on(directory, master, 1)
    with pytest.raises(Refusal):
        directory.add_replicas([object_id], holder, caller="backend-1")
    with pytest.raises(InvalidRequestError):
        directory.add_replicas([object_id], master, caller="backend-0")
    with pytest.raises(BackendDrainingError):
        directory.add_replicas([object_id], draining, caller="backend-0")
    directory.add_replicas([object_id], holder, caller="backend-0")
    with pytest.raises(Refusal):
        directory.drop_replicas([object_id], holder, caller="backend-1")
    with pytest.raises(Refusal):
        directory.list_replicas(holder=master, caller="backend-1")
    assert directory.locate(object_id).replicas == (holder,)
    directory.drop_replicas([object_id], holder, caller="backend-0")
    assert directory.locate(object_id).replicas == ()


def test_a_move_onto_a_holder_makes_its_replica_the_masters_copy_and_keeps_the_others(directory):
    source, holder, other = backend(directory, "backend-0"), backend(directory, "backend-1"), backend(directory, "backend-2")
    (object_id,) = objects_on(directory, source, 1)
    directory.add_replicas([object_id], holder)
    directory.add_replicas([object_id], other)
    directory.commit_move([object_id.bytes], source, holder, uuid.uuid4())
    entry = directory.locate(object_id)
    assert entry.backend_id == holder and entry.replicas == (other,)


def test_the_admin_drops_every_replica_a_backend_holds_and_retiring_a_backend_drops_its_replicas(directory):
    master, holder = backend(directory, "backend-0"), backend(directory, "backend-1")
    ids = objects_on(directory, master, 3)
    directory.add_replicas(ids, holder)
    directory.drop_replicas([], holder)
    assert directory.list_replicas(holder=holder) == []
    directory.add_replicas(ids, holder)
    directory.set_draining(holder, True)
    directory.deregister_backend(holder)  # it owns nothing: its replicas are never a last copy
    assert all(directory.locate(i).replicas == () for i in ids)


def test_dropping_an_object_drops_its_replicas(directory):
    master, holder = backend(directory, "backend-0"), backend(directory, "backend-1")
    (object_id,) = objects_on(directory, master, 1)
    directory.add_replicas([object_id], holder)
    directory.drop_objects([object_id])
    assert directory.list_replicas(holder=holder) == []
