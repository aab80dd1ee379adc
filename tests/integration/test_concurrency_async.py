"""Several client threads on one object; the async API."""
import asyncio
import threading

import pytest

from dataclay import Client
from hr import Employee
from shapes import Node


def test_concurrent_active_method_calls_lose_no_update(client):
    employee = Employee("Busy", 0.0)
    employee.make_persistent()
    threads, calls = 8, 40
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(calls):
                employee.raise_salary(1.0)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors
    assert employee.salary == threads * calls


def test_async_api(cluster):
    async def scenario() -> None:
        client = Client(host="127.0.0.1", port=cluster.port).start()
        try:
            backends = await client.a_get_backends()
            node = Node(21)
            await node.a_make_persistent(alias="async-node", backend_id=list(backends)[1])
            found = await Node.a_get_by_alias("async-node")
            assert found is node
            results = await asyncio.gather(node.slow_double(0.01), Node.a_get_by_id(node._dc_id))
            assert results[0] == 42
            assert await node.a_get_aliases() == {"async-node"}
            await Node.a_delete_alias("async-node")
            assert await node.a_get_aliases() == set()
        finally:
            client.stop()

    asyncio.run(scenario())


def test_two_async_methods_on_one_object_do_not_deadlock(client):
    node = Node(1)
    node.make_persistent()

    async def both() -> list[int]:
        return sorted(await asyncio.gather(node.slow_double(0.2), node.slow_double(0.2)))

    async def run() -> list[int]:
        return await asyncio.wait_for(both(), timeout=30)

    assert asyncio.run(run()) == [2, 4]


def test_async_transports_of_finished_loops_are_released(client):
    node = Node(1)
    node.make_persistent()

    async def read() -> int:
        return await node.a_sync() or node.value

    for _ in range(5):
        asyncio.run(read())
    assert len(client.runtime._async) == 1


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # no "Channel closed!" either
def test_a_burst_of_concurrent_calls_beyond_a_connections_stream_limit_all_succeed(make_cluster, monkeypatch):
    """More calls at once than a server admits streams per connection (DC_MAX_STREAMS, 32 here)
    wait on the caller's side; none is refused (a refused stream used to surface as
    CallOutcomeUnknownError), from coroutines and from threads alike."""
    monkeypatch.setenv("DC_MAX_STREAMS", "32")
    cluster = make_cluster(backends=1)

    async def burst() -> list[Employee]:
        async with Client(host="127.0.0.1", port=cluster.port) as client:
            [backend] = await client.a_get_backends()
            made = [Employee(f"A{i}", float(i)) for i in range(200)]
            await asyncio.gather(*(e.a_make_persistent(backend_id=backend) for e in made))  # one or a few requests
            await asyncio.gather(*(e.a_sync() for e in made))  # 200 calls at once on one channel
            assert await asyncio.gather(*(e.a_get_by_id(e.id) for e in made[:5])) == made[:5]
            return made

    made = asyncio.run(burst())
    with Client(host="127.0.0.1", port=cluster.port):
        errors: list[BaseException] = []

        def call(employee: Employee) -> None:
            try:
                employee.raise_salary(1.0)
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=call, args=(e,)) for e in made[:100]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert [e.salary for e in made[:3]] == [1.0, 2.0, 3.0]


def test_concurrent_stores_sent_together_each_get_their_own_answer(client):
    """a_make_persistent of many objects at once goes as one StoreObjects per backend
    (dataclay.coalesce); if the backend refuses that request because of one object (here a class
    it cannot import), every other object is still stored and only that store fails, typed."""
    from dataclay.exceptions import ClassNotFoundError
    from secret_model import Unknown

    backend_ids = list(client.get_backends())
    good = [Employee(f"C{i}", float(i)) for i in range(50)]
    bad = Unknown()
    bad.value = 1

    async def burst() -> list:
        return await asyncio.gather(*(e.a_make_persistent(backend_id=backend_ids[0]) for e in [*good[:25], bad, *good[25:]]),
                                    return_exceptions=True)

    outcomes = asyncio.run(burst())
    assert isinstance(outcomes[25], ClassNotFoundError), outcomes[25]
    assert [o for i, o in enumerate(outcomes) if i != 25] == [None] * 50
    assert not bad.is_persistent
    assert all(e.is_persistent and e._dc_backend_id == backend_ids[0] for e in good)
    assert [Employee.get_by_id(e.id).name for e in good] == [f"C{i}" for i in range(50)]
