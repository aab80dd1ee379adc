"""dataClay 4's object-store API on separate backend processes: get_properties, getID,
dc_put, dc_clone_by_alias, dc_update_by_alias, dc_update_properties (and their a_ twins)."""
import asyncio
import json

import pytest

from dataclay.exceptions import AliasDoesNotExistError, InvalidAliasError
from hr import Company, Employee
from shapes import Node


def test_get_properties_returns_a_copy_of_the_properties_by_name(client):
    backend_ids = list(client.get_backends())
    boss = Employee("Ann", 10.0)
    company = Company("ACME", boss)
    company.make_persistent(backend_id=backend_ids[1])
    properties = company.get_properties()
    assert properties["name"] == "ACME"
    assert properties["employee"] is boss  # a reference stays a reference
    properties["name"] = "changed"
    assert company.name == "ACME"  # a copy
    assert Employee("Local", 1.0).get_properties() == {"name": "Local", "salary": 1.0}
    assert asyncio.run(boss.a_get_properties()) == {"name": "Ann", "salary": 10.0}


def test_get_id_is_the_metadata_as_json_or_none(client):
    backend_ids = list(client.get_backends())
    employee = Employee("Bo", 2.0)
    assert employee.getID() is None
    employee.make_persistent(backend_id=backend_ids[0])
    meta = json.loads(employee.getID())
    assert meta["id"] == str(employee._dc_meta.id)
    assert meta["master_backend_id"] == str(backend_ids[0])
    assert meta["class_name"] == "hr.Employee"


def test_dc_put_makes_persistent_with_a_required_alias(client):
    backend_ids = list(client.get_backends())
    employee = Employee("Cy", 3.0)
    with pytest.raises(AttributeError):  # dataClay: AttributeError for a missing alias
        employee.dc_put("")
    assert not employee.is_persistent
    employee.dc_put("put-cy", backend_id=backend_ids[2])
    assert employee.is_persistent and employee._dc_meta.master_backend_id == backend_ids[2]
    assert Employee.get_by_alias("put-cy").name == "Cy"
    other = Employee("Di", 4.0)
    asyncio.run(other.a_dc_put("put-di"))
    assert Employee.get_by_alias("put-di").salary == 4.0
    with pytest.raises(InvalidAliasError):
        Employee("Ed", 5.0).dc_put(None)


def test_dc_clone_by_alias_and_dc_update_by_alias(client):
    backend_ids = list(client.get_backends())
    Employee("Flo", 6.0).make_persistent(alias="clone-flo", backend_id=backend_ids[1])
    clone = Employee.dc_clone_by_alias("clone-flo")
    assert not clone.is_persistent and (clone.name, clone.salary) == ("Flo", 6.0)
    Employee.dc_update_by_alias("clone-flo", Employee("Flo", 60.0))
    assert Employee.get_by_alias("clone-flo").salary == 60.0
    assert asyncio.run(Employee.a_dc_clone_by_alias("clone-flo")).salary == 60.0
    with pytest.raises(TypeError):
        Employee.dc_update_by_alias("clone-flo", Node(1))
    with pytest.raises(AliasDoesNotExistError):
        Employee.dc_clone_by_alias("no-such-alias")


def test_dc_update_properties_assigns_only_properties(client):
    backend_ids = list(client.get_backends())
    employee = Employee("Gus", 7.0)
    employee.make_persistent(backend_id=backend_ids[0])
    employee.dc_update_properties({"salary": 70.0})
    assert (employee.name, employee.salary) == ("Gus", 70.0)
    with pytest.raises(AttributeError):
        employee.dc_update_properties({"not_a_property": 1})
    assert employee.salary == 70.0
    local = Employee("Hal", 8.0)
    local.dc_update_properties({"name": "Hally"})
    assert local.name == "Hally"
