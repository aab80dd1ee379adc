"""The seed scenario of the object store, exactly as users write it, across backend processes."""
from dataclay import Client
from hr import Company, Employee


def test_seed_scenario(cluster, monkeypatch):
    monkeypatch.setenv("DC_HOST", "127.0.0.1")
    monkeypatch.setenv("DC_PORT", str(cluster.port))
    client = Client()  # from DC_HOST / DC_PORT
    client.start()
    backend_ids = list(client.get_backends())
    employee = Employee("John", 1000.0)
    employee.make_persistent(alias="john", backend_id=backend_ids[0])
    company = Company("ABC", employee)
    company.make_persistent(backend_id=backend_ids[0])
    assert employee._dc_backend_id == backend_ids[0]
    assert Employee.get_by_alias("john").salary == 1000.0
    assert company.employee.raise_salary(10.0) == 1010.0  # runs on the backend
    client.stop()


def test_get_backends_is_ordered_mapping_with_addresses(client, cluster):
    backends = client.get_backends()
    assert [info.name for info in backends.values()] == ["backend-0", "backend-1", "backend-2"]
    for backend_id, info in backends.items():
        assert info.id == backend_id
        assert info.host == "127.0.0.1"
        assert info.port == cluster.backends[info.name].port


def test_company_and_employee_on_different_backends(client):
    first, second, third = client.get_backends()
    employee = Employee("Ann", 10.0)
    employee.make_persistent(backend_id=third)
    company = Company("XYZ", employee)
    company.make_persistent(backend_id=first)
    assert company._dc_backend_id == first and employee._dc_backend_id == third
    assert company.employee is employee  # one proxy per object in this process
    assert company.employee.raise_salary(5.0) == 15.0
    assert employee.salary == 15.0


def test_make_persistent_is_recursive_over_new_objects(client):
    first = list(client.get_backends())[1]
    company = Company("Graph", Employee("Bob", 1.0))
    company.make_persistent(backend_id=first)
    assert company.employee._dc_is_registered
    assert company.employee._dc_backend_id == first
    assert company.employee.name == "Bob"


def test_make_persistent_without_backend_picks_a_registered_one(client):
    employee = Employee("Random", 1.0)
    employee.make_persistent()
    assert employee._dc_backend_id in client.get_backends()
    assert employee.salary == 1.0
