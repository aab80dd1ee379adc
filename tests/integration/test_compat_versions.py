"""A consolidated version acts as the object it was consolidated into, as dataClay 4's version
proxy takes its original's identity (`v = e.new_version(); ...; v.consolidate_version(); e = v`):
the proxy itself, references to it stored in other objects (followed on other backends, also
after a restart), and get_by_id. A discarded version still raises. Separate backend processes."""
import time

import pytest

from dataclay.exceptions import ObjectNotRegisteredError, VersionConsolidatedError, VersionRetiredError
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.runtime import current_runtime
from dataclay.transport import run_blocking
from hr import Employee
from shapes import Node


def test_a_consolidated_version_acts_as_its_original(client):
    employee = Employee("Ann", 1.0)
    employee.make_persistent(backend_id=list(client.get_backends())[0])
    version = employee.new_version()
    version.salary = 2.0
    version.consolidate_version()
    assert version._dc_meta.id == employee._dc_meta.id and version.is_persistent
    assert version.salary == 2.0 and version.raise_salary(1.0) == 3.0
    assert employee.salary == 3.0  # one object: the original


def test_a_version_consolidated_across_backends_knows_where_its_original_lives(client):
    ids = list(client.get_backends())
    employee = Employee("Far", 1.0)
    employee.make_persistent(backend_id=ids[0])
    version = employee.new_version(backend_id=ids[1])
    version.consolidate_version()
    assert (version._dc_meta.id, version._dc_backend_id) == (employee._dc_meta.id, ids[0])  # before any use


def test_the_dataclay_loop_of_versions_keeps_working(client):
    ids = list(client.get_backends())
    employee = Employee("Loop", 0.0)
    employee.make_persistent(backend_id=ids[1])
    original_id = employee._dc_meta.id
    current = employee
    for _ in range(3):
        version = current.new_version(backend_id=ids[2])
        version.raise_salary(1.0)
        version.consolidate_version()
        current = version
    assert current._dc_meta.id == original_id and current.salary == 3.0
    assert Employee.get_by_id(original_id).salary == 3.0


def _version_held_elsewhere(ids) -> tuple[Node, Node, Node]:
    """A node on ids[0], a version of it, and a holder on ids[1] that references the version."""
    node = Node(1)
    node.make_persistent(backend_id=ids[0])
    version = node.new_version()
    holder = Node(10, version)
    holder.make_persistent(backend_id=ids[1])
    return node, version, holder


def test_a_stored_reference_to_a_consolidated_version_reaches_its_original(client):
    node, version, holder = _version_held_elsewhere(list(client.get_backends()))
    version.value = 5
    version.consolidate_version()
    assert holder.chain_sum() == 15  # the holder's backend follows its reference to the original
    assert node.value == 5


def _directory_forwards(version_id, original_id) -> bool:
    rt = current_runtime()
    try:
        run_blocking(rt.blocking.metadata("LocateObject", pb.ObjectRequest(object_id=version_id.bytes)))
    except VersionConsolidatedError as consolidated:
        return consolidated.original_id == original_id
    except ObjectNotRegisteredError:
        return False  # a new version is registered after its reply, and retired after that
    return False


def _until_the_directory_forwards(version_id, original_id, seconds: float = 10.0) -> None:
    """The directory learns of a local consolidation right after the reply: wait for it."""
    deadline = time.monotonic() + seconds
    while not _directory_forwards(version_id, original_id):
        assert time.monotonic() < deadline, "the directory never forwarded the consolidated version"


def test_a_stored_reference_is_forwarded_by_the_directory_after_a_restart(make_cluster):
    from dataclay import Client

    cluster = make_cluster(backends=2)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        node, version, holder = _version_held_elsewhere(list(client.get_backends()))
        version_id = version._dc_meta.id
        version.value = 7
        version.consolidate_version()
        _until_the_directory_forwards(version_id, node._dc_meta.id)
        cluster.restart_backend("backend-0")  # forgets what it retired; the directory remembers
        assert holder.chain_sum() == 17


def test_get_by_id_of_a_consolidated_version_is_its_original(client):
    node = Node(3)
    node.make_persistent(backend_id=list(client.get_backends())[2])
    version = node.new_version()
    version_id = version._dc_meta.id
    version.consolidate_version()
    _until_the_directory_forwards(version_id, node._dc_meta.id)
    assert Node.get_by_id(version_id) is node


def test_a_discarded_version_still_raises(client):
    node, version, holder = _version_held_elsewhere(list(client.get_backends()))
    version.discard_version()
    with pytest.raises(VersionRetiredError) as retired:
        version.value
    assert not isinstance(retired.value, VersionConsolidatedError) and retired.value.original_id == node._dc_meta.id
    with pytest.raises(VersionRetiredError):
        holder.chain_sum()
