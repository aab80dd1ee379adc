"""dataClay 4's public read-only properties of objects (`is_persistent`, `backends`,
`_dc_meta.master_backend_id`) on a local object and on a client proxy of an object stored on
a separate backend process."""
from hr import Employee


def test_is_persistent_and_backends_on_a_local_object_and_on_a_proxy(client):
    backend_ids = list(client.get_backends())
    employee = Employee("Ann", 1.0)
    assert employee.is_persistent is False and employee.backends == set()
    assert employee._dc_meta.master_backend_id is None
    employee.make_persistent(backend_id=backend_ids[1])
    assert employee.is_persistent is True
    assert employee.backends == {backend_ids[1]}
    assert employee._dc_meta.master_backend_id == backend_ids[1]
    employee.move(backend_ids[2])
    assert employee.backends == {backend_ids[2]} and employee._dc_meta.master_backend_id == backend_ids[2]
    assert Employee.get_by_id(employee._dc_meta.id).is_persistent is True
