"""Versioning: new_version / consolidate_version, nested, for parallel work, across processes."""
import threading
import uuid

import pytest

from dataclay import Client
from dataclay.exceptions import (
    BackendNotFoundError,
    DataClayException,
    ObjectIsNotVersionError,
    ObjectNotRegisteredError,
    VersionConflictError,
    VersionRetiredError,
)
from hr import Company, Employee
from shapes import Node


def test_seed_cases(client):
    employee = Employee("John", 1000.0)
    employee.make_persistent()
    employee_v1 = employee.new_version()
    employee_v1.salary = 2000.0
    assert employee.salary == 1000.0          # versions are independent until consolidated
    employee_v1.consolidate_version()
    assert employee.salary == 2000.0

    employee = Employee("John", 1000.0)
    employee.make_persistent()
    employee_v1 = employee.new_version()
    employee_v2 = employee_v1.new_version()
    employee_v2.salary = 2000.0
    employee_v2.consolidate_version()
    assert employee.salary == 2000.0
    assert employee_v1.salary == 2000.0       # every ancestor sees the consolidated state


def test_version_is_its_own_object_and_the_original_keeps_id_and_aliases(client):
    employee = Employee("Ann", 1.0)
    alias = f"ann-{uuid.uuid4()}"
    employee.make_persistent(alias=alias)
    version = employee.new_version()
    assert version._dc_id != employee._dc_id and isinstance(version, Employee)
    assert version._dc_backend_id == employee._dc_backend_id
    assert version.raise_salary(1.0) == 2.0 and employee.salary == 1.0
    version.consolidate_version()
    assert Employee.get_by_alias(alias) is employee and employee.salary == 2.0
    assert version._dc_id == employee._dc_id and version.salary == 2.0  # it acts as the original now


def test_versions_on_other_backends(client):
    ids = list(client.get_backends())
    employee = Employee("Far", 10.0)
    employee.make_persistent(backend_id=ids[0])
    v1 = employee.new_version(backend_id=ids[1])
    v2 = v1.new_version(backend_id=ids[2])
    assert (v1._dc_backend_id, v2._dc_backend_id) == (ids[1], ids[2])
    v2.salary = 30.0
    v2.consolidate_version()
    assert employee.salary == v1.salary == 30.0
    v1.salary = 40.0  # the intermediate version is still usable, and consolidates cleanly
    v1.consolidate_version()
    assert employee.salary == 40.0


def test_recursive_and_shared_versions_of_a_company(client):
    ids = list(client.get_backends())
    employee = Employee("Deep", 100.0)
    company = Company("Graph", employee)
    company.make_persistent(backend_id=ids[0])

    shared = company.new_version()
    assert shared.employee is employee  # without recursive=True, references are shared

    deep = company.new_version(recursive=True)
    versioned_employee = deep.employee
    assert versioned_employee is not employee and versioned_employee._dc_backend_id == ids[0]
    versioned_employee.salary = 999.0
    deep.name = "Graph v2"
    assert employee.salary == 100.0 and company.name == "Graph"
    deep.consolidate_version()
    assert company.name == "Graph v2" and employee.salary == 999.0
    assert company.employee is employee  # references point at the originals again
    assert versioned_employee.salary == 999.0  # each member acts as its own original (from its first use)
    assert versioned_employee._dc_id == employee._dc_id


def test_sibling_conflict_and_force(client):
    employee = Employee("Sib", 1.0)
    employee.make_persistent()
    first, second = employee.new_version(), employee.new_version()
    first.salary, second.salary = 2.0, 3.0
    first.consolidate_version()
    with pytest.raises(VersionConflictError) as raised:
        second.consolidate_version()
    assert raised.value.object_id == employee._dc_id
    assert employee.salary == 2.0 and second.salary == 3.0  # the failed call changed nothing
    second.consolidate_version(force=True)
    assert employee.salary == 3.0


def test_change_to_the_original_is_a_conflict(client):
    employee = Employee("Orig", 1.0)
    employee.make_persistent()
    version = employee.new_version()
    employee.raise_salary(5.0)
    version.salary = 100.0
    with pytest.raises(VersionConflictError, match="changed since the version was taken"):
        version.consolidate_version()
    assert employee.salary == 6.0


def test_parallel_tasks_each_consolidate_without_losing_work(client):
    employee = Employee("Counter", 0.0)
    employee.make_persistent()
    per_task, tasks = 5, 4
    errors: list[BaseException] = []

    def task() -> None:
        try:
            for _ in range(per_task):
                for _attempt in range(100):
                    version = employee.new_version()
                    version.raise_salary(1.0)
                    try:
                        version.consolidate_version()
                        break
                    except VersionConflictError:
                        version.discard_version()  # someone else got there first: redo on fresh state
                else:
                    raise AssertionError("100 conflicts in a row: optimistic retry never got through")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=task) for _ in range(tasks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert employee.salary == per_task * tasks


def test_references_to_original_and_intermediate_see_the_result(client):
    ids = list(client.get_backends())
    original = Node(1)
    original.make_persistent(backend_id=ids[0])
    v1 = original.new_version()
    holder_of_original = Node(0, original)
    holder_of_original.make_persistent(backend_id=ids[1])
    holder_of_v1 = Node(0, v1)
    holder_of_v1.make_persistent(backend_id=ids[2])
    v2 = v1.new_version(backend_id=ids[2])
    v2.value = 42
    v2.consolidate_version()
    assert holder_of_original.chain_sum() == 42 and holder_of_v1.chain_sum() == 42


def test_discard_version(client):
    employee = Employee("Discard", 1.0)
    employee.make_persistent()
    version = employee.new_version()
    version.salary = 50.0
    version.discard_version()
    assert employee.salary == 1.0
    with pytest.raises(VersionRetiredError):
        version.raise_salary(1.0)


def test_versions_and_moves_compose(client):
    ids = list(client.get_backends())
    employee = Employee("Mover", 1.0)
    employee.make_persistent(backend_id=ids[0])
    version = employee.new_version()
    version.move(ids[1])  # a version can be moved
    employee.move(ids[2])  # and so can the original
    version.salary = 7.0
    version.consolidate_version()
    assert employee.salary == 7.0 and employee._dc_backend_id == ids[2]


def test_bad_input_changes_nothing(client):
    employee = Employee("Bad", 1.0)
    employee.make_persistent()
    with pytest.raises(ObjectIsNotVersionError):
        employee.consolidate_version()
    with pytest.raises(ObjectNotRegisteredError):
        Employee("Loose", 1.0).new_version()
    with pytest.raises(ObjectNotRegisteredError):
        Employee("Loose", 1.0).consolidate_version()
    with pytest.raises(BackendNotFoundError):
        employee.new_version(backend_id=uuid.uuid4())
    assert employee.salary == 1.0 and employee.raise_salary(1.0) == 2.0


FAULTS = [
    # (which backend dies, at which point, does the consolidation take effect)
    ("backend-1", "consolidate.after_prepare", False),  # coordinator dies before the commit
    ("backend-1", "consolidate.after_commit", True),  # coordinator dies right after it
    ("backend-0", "prepare.after_write", False),       # participant dies after preparing
    ("backend-0", "apply.before", True),              # participant dies when told to apply
]


@pytest.mark.parametrize("victim,point,applied", FAULTS)
def test_kill_9_during_consolidation(make_cluster, victim, point, applied):
    cluster = make_cluster(backends=2)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        ids = list(client.get_backends())
        employee = Employee("Crash", 1.0)
        employee.make_persistent(backend_id=ids[0])  # the original on backend-0
        version = employee.new_version(backend_id=ids[1])  # its version (the coordinator) on backend-1
        version.salary = 2.0
        index = int(victim.rsplit("-", 1)[1])
        cluster.stop_process(cluster.backends[victim])
        cluster.start_backend(index, env={"DC_FAULT_POINT": point})
        # the surviving participant resolves an orphaned prepare quickly
        survivor = 1 - index
        cluster.stop_process(cluster.backends[f"backend-{survivor}"])
        cluster.start_backend(survivor, env={"DC_CONSOLIDATION_TIMEOUT": "1"})
        try:
            version.consolidate_version()
            succeeded = True
        except DataClayException:
            succeeded = False
        assert applied or not succeeded  # it cannot report success for what did not happen
        assert cluster.backends[victim].popen.wait(30) == -9
        cluster.start_backend(index, env={"DC_CONSOLIDATION_TIMEOUT": "1"})
        employee.sync()
        assert employee.raise_salary(0.5) == (2.5 if applied else 1.5)  # writable, one state or the other
        if applied:
            assert version.salary == 2.5  # consolidated: it acts as the original
        else:
            version.sync()
            assert version.salary == 2.0
            with pytest.raises(VersionConflictError):  # the original changed just now
                version.consolidate_version()


def test_recursive_version_of_a_version_points_back_at_originals(client):
    part = Node(1)
    doc = Node(0, part)
    doc.make_persistent()
    v1 = doc.new_version(recursive=True)
    v2 = v1.new_version(recursive=True)
    v2.next.value = 5
    v2.consolidate_version()
    assert doc.next is part and part.value == 5 and v1.next.value == 5


def test_a_referenced_object_moving_is_no_change(client):
    ids = list(client.get_backends())
    referenced = Node(1)
    referenced.make_persistent(backend_id=ids[1])
    bag = Node(0)
    bag.children = [referenced]
    bag.make_persistent(backend_id=ids[0])
    version = bag.new_version()
    referenced.move(ids[2])
    assert bag.peek() == 1  # a read: must not count as a change of bag
    version.value = 9
    version.consolidate_version()  # no false VersionConflictError
    assert bag.value == 9
