"""move(recursive=True, remotes=True) as dataClay 4 does it: the walk goes through every reachable
object, also those already on the destination; without remotes only what the source backend
owns moves. Separate backend processes."""
from shapes import Node


def _chain(owners: list) -> list[Node]:
    """Nodes 1..n, each referencing the next, node i stored on owners[i]."""
    nodes: list[Node] = []
    for value, owner in reversed(list(enumerate(owners, start=1))):
        node = Node(value, nodes[0] if nodes else None)
        node.make_persistent(backend_id=owner)
        nodes.insert(0, node)
    return nodes


def test_remotes_moves_objects_reachable_only_through_objects_already_on_the_destination(client):
    ids = list(client.get_backends())
    person, person2, person3 = _chain([ids[0], ids[1], ids[0]])  # person2 is already on the destination
    result = person.move(ids[1], recursive=True, remotes=True)
    assert [n._dc_backend_id for n in (person, person2, person3)] == [ids[1]] * 3
    assert result.objects == 2 and person.chain_sum() == 6
    person3.sync()  # the directory says so too, not only this client's cache
    assert person3._dc_backend_id == ids[1] and person3.where() == str(ids[1])


def test_remotes_walks_through_several_destination_objects_to_a_third_backend(client):
    ids = list(client.get_backends())
    nodes = _chain([ids[0], ids[1], ids[1], ids[2], ids[1], ids[0]])
    result = nodes[0].move(ids[1], recursive=True, remotes=True)
    assert [n._dc_backend_id for n in nodes] == [ids[1]] * 6
    assert result.objects == 3 and nodes[0].chain_sum() == 21


def test_without_remotes_objects_behind_the_destination_stay(client):
    ids = list(client.get_backends())
    person, person2, person3 = _chain([ids[0], ids[1], ids[0]])
    result = person.move(ids[1], recursive=True)
    assert [n._dc_backend_id for n in (person, person2, person3)] == [ids[1], ids[1], ids[0]]
    assert result.objects == 1 and person.chain_sum() == 6


def test_remotes_terminates_on_a_cycle_through_the_destination(client):
    ids = list(client.get_backends())
    a, b, c = _chain([ids[0], ids[1], ids[2]])
    c.next = a  # a(0) -> b(1, destination) -> c(2) -> a
    result = b.move(ids[1], recursive=True, remotes=True)  # the root itself is already there
    assert [n._dc_backend_id for n in (a, b, c)] == [ids[1]] * 3
    assert result.objects == 2
