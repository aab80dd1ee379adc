"""The seed model, exactly as users write it."""
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


class Company(DataClayObject):
    name: str
    employee: Employee

    @activemethod
    def __init__(self, name, employee):
        self.name = name
        self.employee = employee
