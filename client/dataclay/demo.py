"""The seed scenario, as users write it; `dataclay demo` runs it and narrates.

The model classes live here (an importable module), because backends import model classes by
module path, exactly as they would import yours.
"""
from __future__ import annotations

from typing import Callable

from dataclay import Client, DataClayObject, activemethod


class Employee(DataClayObject):
    name: str
    salary: float

    @activemethod
    def __init__(self, name, salary):
        self.name = name
        self.salary = salary

    @activemethod
    def raise_salary(self, amount: float) -> float:
        self.salary += amount
        return self.salary


class Company(DataClayObject):
    name: str
    employee: Employee

    @activemethod
    def __init__(self, name, employee):
        self.name = name
        self.employee = employee


def run(client: Client, say: Callable[[str], None] = print) -> None:
    backend_ids = list(client.get_backends())
    say(f"1. {len(backend_ids)} backends: " + ", ".join(f"{b.name}={b.id}" for b in client.get_backends().values()))
    employee = Employee("John", 1000.0)
    employee.make_persistent(alias="john", backend_id=backend_ids[0])
    say(f"2. Employee John stored on backend {employee._dc_backend_id} with alias 'john'")
    company = Company("ABC", employee)
    company.make_persistent(backend_id=backend_ids[-1])
    say(f"3. Company ABC stored on backend {company._dc_backend_id}; it references John on {employee._dc_backend_id}")
    assert employee._dc_backend_id == backend_ids[0]
    salary = Employee.get_by_alias("john").salary
    say(f"4. Employee.get_by_alias('john').salary -> {salary}")
    assert salary == 1000.0
    new_salary = company.employee.raise_salary(10.0)
    say(f"5. company.employee.raise_salary(10.0) ran on backend {employee._dc_backend_id} -> {new_salary}")
    assert new_salary == 1010.0
    result = company.move(backend_ids[0], recursive=True)
    say(f"6. company.move(backend 0, recursive=True) moved {result.objects} object(s) in {result.seconds * 1000:.1f} ms; "
        f"John stays on {employee._dc_backend_id}: he was already there")
    assert company._dc_backend_id == employee._dc_backend_id == backend_ids[0]
    version = employee.new_version(backend_id=backend_ids[-1])
    version.salary = 2000.0
    say(f"7. a version of John on backend {version._dc_backend_id} earns {version.salary}; John still earns {employee.salary}")
    assert employee.salary == 1010.0
    version.consolidate_version()
    say(f"8. version.consolidate_version(): John now earns {employee.salary}")
    assert employee.salary == 2000.0
    say("Demo finished: every step behaved as expected.")
