"""dataClay 4's asyncio surface, as dataClay code writes it: `async with Client(...)` and the
a_ twin of every public operation, across backend processes."""
from __future__ import annotations

import asyncio

from dataclay import Client, DataClayObject
from hr import Employee


def test_async_with_a_client_and_the_a_twins_of_every_object_operation(cluster):
    async def main() -> None:
        async with Client(host="127.0.0.1", port=cluster.port) as client:
            first, second = list(await client.a_get_backends())[:2]
            employee = Employee("Async", 1.0)
            await employee.a_make_persistent(alias="async-employee", backend_id=first)
            assert (await Employee.a_get_by_alias("async-employee")) is employee
            assert (await Employee.a_get_by_id(employee.id)) is employee
            await employee.a_add_alias("async-employee-2")
            assert sorted(await employee.a_get_aliases()) == ["async-employee", "async-employee-2"]
            await employee.a_move(second)
            assert employee.backends == {second}
            version = await employee.a_new_version()
            version.salary = 5.0
            await version.a_consolidate_version()
            await employee.a_sync()
            assert employee.salary == 5.0
            throwaway = await employee.a_new_version()
            await throwaway.a_discard_version()
            copy = await employee.a_dc_clone()
            assert copy.salary == 5.0 and not copy.is_persistent
            await DataClayObject.a_delete_alias("async-employee-2")
            assert await employee.a_get_aliases() == {"async-employee"}
        assert not client.is_active

    asyncio.run(main())
