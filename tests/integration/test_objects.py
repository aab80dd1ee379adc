"""Object model: properties, aliases, references across backends, objects created remotely."""
import uuid

import pytest

from dataclay import DataClayObject
from dataclay.exceptions import AliasAlreadyExistError, AliasDoesNotExistError, ObjectNotRegisteredError
from hr import Employee
from shapes import Bild, Blob, Node, Photo


def test_attribute_write_and_read_through_proxy(client):
    employee = Employee("Eve", 1.0)
    employee.make_persistent()
    employee.salary = 42.5
    employee.name = "Eve Smith"
    assert (employee.name, employee.salary) == ("Eve Smith", 42.5)
    again = Employee.get_by_id(employee._dc_id)
    assert again is employee
    assert again.salary == 42.5


def test_aliases(client):
    employee = Employee("Al", 1.0)
    employee.make_persistent(alias="al-1")
    employee.add_alias("al-2")
    assert employee.get_aliases() == {"al-1", "al-2"}
    assert Employee.get_by_alias("al-2") is employee
    Employee.delete_alias("al-1")
    assert employee.get_aliases() == {"al-2"}
    with pytest.raises(AliasDoesNotExistError):
        Employee.get_by_alias("al-1")
    with pytest.raises(AliasDoesNotExistError):
        Employee.delete_alias("al-1")
    other = Employee("Other", 2.0)
    with pytest.raises(AliasAlreadyExistError):
        other.make_persistent(alias="al-2")
    assert not other._dc_is_registered  # the failed call stored nothing
    assert Employee.get_by_alias("al-2").name == "Al"


def test_make_persistent_twice_only_adds_the_alias(client):
    employee = Employee("Twice", 1.0)
    employee.make_persistent()
    backend = employee._dc_backend_id
    employee.make_persistent(alias="twice")
    assert employee._dc_backend_id == backend
    assert Employee.get_by_alias("twice") is employee


def test_get_by_id_accepts_strings_and_returns_the_right_class(client):
    employee = Employee("Id", 3.0)
    employee.make_persistent()
    found = DataClayObject.get_by_id(str(employee._dc_id))
    assert isinstance(found, Employee) and found.salary == 3.0


def test_chain_across_three_backends(client):
    ids = list(client.get_backends())
    tail = Node(3)
    tail.make_persistent(backend_id=ids[2])
    middle = Node(2, tail)
    middle.make_persistent(backend_id=ids[1])
    head = Node(1, middle)
    head.make_persistent(backend_id=ids[0])
    assert head.chain_sum() == 6  # each hop runs on its own backend
    assert head.next.next is tail
    assert [head.where(), middle.where(), tail.where()] == [str(i) for i in ids]


def test_persistent_objects_as_arguments_and_results(client):
    ids = list(client.get_backends())
    parent = Node(10)
    parent.make_persistent(backend_id=ids[0])
    remote_child = Node(20)
    remote_child.make_persistent(backend_id=ids[1])
    assert parent.add_child(remote_child) == 1
    assert parent.children[0] is remote_child  # a reference, not a copy
    assert parent.children[0]._dc_backend_id == ids[1]
    new_child = Node(30)  # not persistent: becomes persistent on the callee's backend
    assert parent.add_child(new_child) == 2
    assert new_child._dc_is_registered and new_child._dc_backend_id == ids[0]
    assert new_child.value == 30


def test_object_created_inside_active_method_lives_on_that_backend(client):
    ids = list(client.get_backends())
    parent = Node(1)
    parent.make_persistent(backend_id=ids[2])
    child = parent.spawn(7)
    assert child._dc_is_registered and child._dc_backend_id == ids[2]
    assert child.value == 7
    assert parent.children == [child]
    orphan = parent.make_orphan(8)  # only returned, never stored in a property
    assert orphan._dc_backend_id == ids[2] and orphan.value == 8


def test_in_place_mutation_inside_active_method_is_persisted(client):
    parent = Node(1)
    parent.make_persistent()
    parent.append_in_place(Node(2))
    parent.append_in_place(Node(3))
    assert [child.value for child in parent.children] == [2, 3]


def test_callback_chain_does_not_deadlock(client):
    ids = list(client.get_backends())
    a = Node(1)
    a.make_persistent(backend_id=ids[0])
    b = Node(5)
    b.make_persistent(backend_id=ids[1])
    # a.poke_back(b) holds a's lock, b calls a.bump() on ids[0] again in the same chain.
    assert a.poke_back(b) == 2
    assert a.value == 2


def test_missing_property_is_attribute_error(client):
    node = Node.__new__(Node)  # bypasses __init__: value never set
    node.make_persistent()
    with pytest.raises(AttributeError):
        node.value
    assert getattr(node, "value", "default") == "default"
    assert node.next is None  # class default


def test_dc_clone_and_dc_update(client):
    ids = list(client.get_backends())
    tail = Node(2)
    head = Node(1, tail)
    head.make_persistent(backend_id=ids[0])
    shallow = head.dc_clone()
    assert not shallow._dc_is_registered and shallow.value == 1 and shallow.next is tail
    deep = head.dc_clone(recursive=True)
    assert deep.next is not tail and not deep.next._dc_is_registered and deep.next.value == 2
    other = Node(99)
    other.make_persistent(backend_id=ids[1])
    head.dc_update(other)
    assert head.value == 99 and head.next is None
    head.dc_update(Node(5, tail))  # from a local object
    assert head.value == 5 and head.next is tail


def test_sync_refreshes_location(client):
    employee = Employee("Sync", 1.0)
    employee.make_persistent()
    backend = employee._dc_backend_id
    employee.__dict__["_dc_backend_id"] = None
    employee.sync()
    assert employee._dc_backend_id == backend


def test_large_bytes_attribute_round_trip(client):
    data = bytes(range(256)) * (40 * 4096)  # 40 MiB: larger than a default gRPC message
    blob = Blob(b"")
    blob.make_persistent()
    blob.data = data
    assert blob.size() == len(data)
    assert blob.data == data


@pytest.mark.parametrize("size", [1024 * 1024, 64 * 1024 * 1024])
def test_make_persistent_of_a_large_bytes_value_and_its_companions(client, size):
    """The value travels as the whole message (StoreRawObject); the other properties, the alias,
    reads, active methods and a later write all behave as with any object."""
    backend_ids = list(client.get_backends())
    pixels = bytes(range(256)) * (size // 256)
    photo = Photo(title="Ça", taken=2026, pixels=pixels, thumbnail=b"t" * 300_000)
    photo.make_persistent(alias=f"photo-{size}", backend_id=backend_ids[2])
    assert photo.is_persistent and photo._dc_backend_id == backend_ids[2]
    again = Photo.get_by_alias(f"photo-{size}")
    assert again.describe() == ("Ça", 2026, size, 300_000)
    assert again.pixels == pixels and again.thumbnail == b"t" * 300_000
    photo.taken = 2027
    assert again.taken == 2027 and again.pixels == pixels
    with_reference = Photo(title="ref", taken=1, pixels=pixels[:400_000], owner=Node(5))  # the general path
    with_reference.make_persistent(backend_id=backend_ids[1])
    assert with_reference.owner.value == 5 and len(with_reference.pixels) == 400_000


def test_bytes_property_with_a_non_ascii_name(client):
    bild = Bild()
    bild.make_persistent()
    bild.größe = b"\x00\xff" * 1000
    assert bild.größe == b"\x00\xff" * 1000


def test_get_by_id_of_unknown_object(client):
    with pytest.raises(ObjectNotRegisteredError):
        Employee.get_by_id(uuid.uuid4())


def test_callback_reading_a_list_of_the_calling_object_does_not_deadlock(client):
    ids = list(client.get_backends())
    caller = Node(1)
    caller.children = [1, 2, 3]
    caller.make_persistent(backend_id=ids[0])
    other = Node(2)
    other.make_persistent(backend_id=ids[1])
    assert caller.ask_about_me(other) == 3
