"""kill -9, restarts and eviction: what was acknowledged is never lost."""
import threading

from dataclay import Client
from dataclay_backend.cluster import LocalCluster
from dataclay.protocol import UNLIMITED_MESSAGES
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.protocol import dataclay_pb2_grpc as rpc
from hr import Company, Employee
from shapes import Blob, Node, Photo

from dataclay.security import client_credentials, open_channel


def _stats(address: str) -> pb.BackendStats:
    with open_channel(address, client_credentials(identity="backend:backend-0"), options=UNLIMITED_MESSAGES) as channel:
        return rpc.BackendStub(channel).Stats(pb.Empty())


def test_kill_9_then_restart_loses_nothing_acknowledged(make_cluster):
    cluster = make_cluster(backends=2)
    with Client(host="127.0.0.1", port=cluster.port) as client:
        ids = list(client.get_backends())
        employees = []
        for index in range(50):
            employee = Employee(f"E{index}", float(index))
            employee.make_persistent(backend_id=ids[1], alias=f"e{index}")
            employees.append(employee)
        company = Company("K9", employees[0])
        company.make_persistent(backend_id=ids[1])
        for index, employee in enumerate(employees):
            if index % 2:
                employee.raise_salary(1000.0)      # mutating active method
            else:
                employee.name = f"renamed-{index}"  # attribute write
        created = Node(1)
        created.make_persistent(backend_id=ids[1])
        child = created.spawn(2)                    # created inside an active method

        cluster.kill_backend("backend-1")           # SIGKILL: no clean shutdown
        cluster.start_backend(1)

        assert list(client.get_backends()) == ids   # same backend id after restart
        for index in range(50):
            employee = Employee.get_by_alias(f"e{index}")
            if index % 2:
                assert employee.salary == index + 1000.0
            else:
                assert employee.name == f"renamed-{index}"
        assert company.employee.name == "renamed-0"
        assert child.value == 2 and created.children == [child]


def test_whole_cluster_restart_on_same_data_dir(tmp_path):
    from conftest import MODELS

    with LocalCluster(tmp_path / "data", backends=2, port=0, model_paths=[MODELS]) as first:
        with Client(host="127.0.0.1", port=first.port) as client:
            ids = list(client.get_backends())
            employee = Employee("Kept", 7.0)
            employee.make_persistent(alias="kept", backend_id=ids[1])
            kept_id = employee._dc_id
    with LocalCluster(tmp_path / "data", backends=2, port=0, model_paths=[MODELS]) as second:
        with Client(host="127.0.0.1", port=second.port) as client:
            assert list(client.get_backends()) == ids
            found = Employee.get_by_alias("kept")
            assert found._dc_id == kept_id and found.salary == 7.0 and found._dc_backend_id == ids[1]
    codes = {p.name: p.popen.returncode for p in [second.metadata, *second.backends.values()]}
    assert codes == {"metadata": 0, "backend-0": 0, "backend-1": 0}  # a clean stop on SIGTERM


def test_eviction_bounds_memory_and_reloads_on_demand(make_cluster):
    cluster = make_cluster(backends=1, memory_limit="64Ki")
    with Client(host="127.0.0.1", port=cluster.port) as client:
        backend = next(iter(client.get_backends().values()))
        blobs = []
        for index in range(40):
            blob = Blob(bytes([index]) * 8192)
            blob.make_persistent()
            blobs.append(blob)
        for blob in blobs:
            assert blob.size() == 8192  # loads each one
        stats = _stats(backend.address)
        assert stats.owned_objects == 40
        assert stats.loaded_bytes <= stats.memory_limit == 64 * 1024
        assert stats.loaded_objects < 40  # some were evicted
        for index, blob in enumerate(blobs):
            assert blob.data == bytes([index]) * 8192  # evicted ones come back intact


def test_large_states_rewritten_and_killed_keep_the_last_acknowledged_one(make_cluster):
    cluster = make_cluster(backends=1)
    with Client(host="127.0.0.1", port=cluster.port):
        blob = Blob(b"")
        blob.make_persistent()
        for round_ in range(4):  # alternates between the object's two state files
            blob.data = bytes([round_]) * (3 * 1024 * 1024)
        cluster.kill_backend("backend-0")
        cluster.start_backend(0)
        assert blob.data == bytes([3]) * (3 * 1024 * 1024)
        blobs_dir = cluster.data_dir / "backend-0" / "blobs"
        assert len(list(blobs_dir.iterdir())) == 1  # the other slot was unreferenced: removed at start
        blob.data = b"small again"
        assert blob.size() == len(b"small again")


def test_a_large_value_made_persistent_survives_kill_9(make_cluster):
    """make_persistent of a large bytes value (sent as the message, written straight to its file)
    is stored before it is acknowledged."""
    cluster = make_cluster(backends=1)
    with Client(host="127.0.0.1", port=cluster.port):
        pixels = bytes(range(256)) * 12_288  # 3 MiB: a state file of its own
        photo = Photo("kept", 1, pixels)
        photo.make_persistent(alias="kept-photo")
        cluster.kill_backend("backend-0")
        cluster.start_backend(0)
        again = Photo.get_by_alias("kept-photo")
        assert again.describe() == ("kept", 1, len(pixels), 0) and again.pixels == pixels


def test_in_place_change_of_another_local_object_survives_kill_9(make_cluster):
    cluster = make_cluster(backends=1)
    with Client(host="127.0.0.1", port=cluster.port):
        box, holder = Node(0), Node(1)
        box.make_persistent()
        holder.make_persistent()
        assert holder.push_into(box, 42) == 1
        cluster.kill_backend("backend-0")
        cluster.start_backend(0)
        assert box.children == [42]


def test_concurrent_increments_under_eviction_survive_kill_9(make_cluster):
    cluster = make_cluster(backends=1, memory_limit="2Ki")  # constant eviction
    with Client(host="127.0.0.1", port=cluster.port):
        counters = [Node(0) for _ in range(4)]
        for counter in counters:
            counter.make_persistent()
        acknowledged: list[list[int]] = [[] for _ in range(4)]
        errors: list[BaseException] = []

        def work(slot: int) -> None:
            try:
                for _ in range(60):
                    acknowledged[slot].append(counters[slot].bump())
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(slot,)) for slot in range(4) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        # Every increment saw the one before it: each counter answered 1..120 exactly once.
        assert [sorted(answers) for answers in acknowledged] == [list(range(1, 121))] * 4
        cluster.kill_backend("backend-0")
        cluster.start_backend(0)
        assert [counter.value for counter in counters] == [120] * 4
