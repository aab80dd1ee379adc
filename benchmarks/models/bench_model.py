"""Model classes for the benchmarks (on the backends' model path)."""
from dataclay import DataClayObject, activemethod


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

    @activemethod
    def get_salary(self) -> float:
        return self.salary

    @activemethod
    def hire(self, name: str) -> "Employee":
        """Creates an employee where this one lives (persistent there at once) and returns it."""
        return Employee(name, self.salary)


class Company(DataClayObject):
    name: str
    employees: list

    @activemethod
    def __init__(self, name, employees):
        self.name = name
        self.employees = employees


class Blob(DataClayObject):
    data: bytes
