"""make_persistent() on an object already persistent, as dataClay 4 does it: with backend_id it
moves the object there (then adds the alias); on its own backend it only adds the alias."""
import uuid

from hr import Employee


def test_make_persistent_with_another_backend_moves_the_object_then_adds_the_alias(client):
    backend_ids = list(client.get_backends())
    employee = Employee("Ann", 1.0)
    employee.make_persistent(backend_id=backend_ids[0])
    alias = f"moved-{uuid.uuid4().hex[:8]}"
    employee.make_persistent(alias=alias, backend_id=backend_ids[2])
    assert employee._dc_backend_id == backend_ids[2]
    found = Employee.get_by_alias(alias)
    assert found is employee and found.salary == 1.0
    employee.sync()  # the directory says so too
    assert employee._dc_backend_id == backend_ids[2]


def test_make_persistent_on_its_own_backend_only_adds_the_alias(client):
    backend_ids = list(client.get_backends())
    employee = Employee("Bob", 2.0)
    employee.make_persistent(backend_id=backend_ids[1])
    alias = f"same-{uuid.uuid4().hex[:8]}"
    employee.make_persistent(alias=alias, backend_id=backend_ids[1])
    employee.sync()
    assert employee._dc_backend_id == backend_ids[1] and employee.get_aliases() == {alias}
