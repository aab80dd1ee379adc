"""Walking a version's lineage (dataclay_backend.lineage.walk_lineage) with plain objects in
memory: what each level's visit gets (ancestor, the revision it must still have, the state
with references between members rewritten to that level's objects), in which order, and the
new base revisions of intermediate versions."""
import uuid
from dataclasses import dataclass
from uuid import UUID

from dataclay import lifecycle as lc
from dataclay.lifecycle import Lineage
from dataclay.serialization import Ref, loads
from dataclay_backend.lineage import walk_lineage
from hr import Company, Employee

BACKEND = uuid.uuid4()


def version_of(obj, parent: UUID, original: UUID, revision: int):
    """obj as a LOADED version on this backend, taken from `parent` at `revision`."""
    lc.registered_here(obj, BACKEND, revision=1)
    lc.with_lineage(obj, Lineage(parent, original, revision))
    return obj


@dataclass
class Visit:
    member: UUID
    ancestor: UUID
    expected_revision: int
    state: dict


class Ancestors:
    """The visit a consolidation would do, over an in-memory table of the ancestors:
    {id: (revision, own lineage or None)}. Each write bumps the ancestor's revision."""

    def __init__(self, table: dict[UUID, tuple[int, Lineage | None]]) -> None:
        self.table = table
        self.visits: list[Visit] = []

    def __call__(self, member, ancestor: UUID, revision: int, state: bytes) -> tuple[int, Lineage | None]:
        self.visits.append(Visit(lc.object_id(member), ancestor, revision, loads(state, lambda ref: ref)))
        current, own_lineage = self.table[ancestor]
        self.table[ancestor] = (current + 1, own_lineage)
        return current + 1, own_lineage


def test_a_version_of_the_original_is_one_level():
    original = uuid.uuid4()
    version = version_of(Employee("ann", 20.0), original, original, 4)
    ancestors = Ancestors({original: (4, None)})

    base = walk_lineage([version], ancestors)

    assert base == {}  # no intermediate version
    assert [(v.member, v.ancestor, v.expected_revision) for v in ancestors.visits] == [
        (lc.object_id(version), original, 4)]
    assert ancestors.visits[0].state == {"name": "ann", "salary": 20.0}  # no lineage in it
    assert ancestors.table[original] == (5, None)


def test_a_version_of_a_version_walks_two_levels_and_moves_the_intermediate_base_on():
    original, intermediate = uuid.uuid4(), uuid.uuid4()
    version = version_of(Employee("ann", 30.0), intermediate, original, 2)
    ancestors = Ancestors({
        intermediate: (2, Lineage(original, original, 7)),  # the intermediate was taken at revision 7
        original: (7, None),
    })

    base = walk_lineage([version], ancestors)

    member = lc.object_id(version)
    assert [(v.member, v.ancestor, v.expected_revision) for v in ancestors.visits] == [
        (member, intermediate, 2), (member, original, 7)]
    assert all(v.state == {"name": "ann", "salary": 30.0} for v in ancestors.visits)
    # the original is at revision 8 now: the intermediate's base moves on to it
    assert base == {intermediate: 8}


def test_three_levels_return_both_intermediates_base_revisions():
    original, middle, top = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    version = version_of(Employee("ann", 1.0), top, original, 11)
    ancestors = Ancestors({
        top: (11, Lineage(middle, original, 21)),
        middle: (21, Lineage(original, original, 31)),
        original: (31, None),
    })

    base = walk_lineage([version], ancestors)

    assert [(v.ancestor, v.expected_revision) for v in ancestors.visits] == [(top, 11), (middle, 21), (original, 31)]
    assert base == {top: 22, middle: 32}


def test_references_between_members_point_at_each_levels_objects():
    """A recursive version (a company and its employee, two levels each): at each level, the
    company's state refers to the employee's ancestor of that same level; a reference to an
    object outside the version is left as it is."""
    company_original, company_middle = uuid.uuid4(), uuid.uuid4()
    employee_original, employee_middle = uuid.uuid4(), uuid.uuid4()
    employee = version_of(Employee("ann", 5.0), employee_middle, employee_original, 3)
    company = version_of(Company("acme", employee), company_middle, company_original, 6)
    outsider = Employee("bob", 1.0)
    other_backend = uuid.uuid4()
    lc.registered_elsewhere(outsider, other_backend)
    company.__dict__["name"] = outsider  # a reference that is no member (any property will do)
    ancestors = Ancestors({
        company_middle: (6, Lineage(company_original, company_original, 60)),
        employee_middle: (3, Lineage(employee_original, employee_original, 30)),
        company_original: (60, None),
        employee_original: (30, None),
    })

    base = walk_lineage([company, employee], ancestors)

    company_id, employee_id = lc.object_id(company), lc.object_id(employee)
    # visit order: level by level, members in the order given
    assert [(v.member, v.ancestor, v.expected_revision) for v in ancestors.visits] == [
        (company_id, company_middle, 6), (employee_id, employee_middle, 3),
        (company_id, company_original, 60), (employee_id, employee_original, 30),
    ]
    first, _, second, _ = ancestors.visits
    for visit, employee_there in ((first, employee_middle), (second, employee_original)):
        ref = visit.state["employee"]
        assert type(ref) is Ref
        assert UUID(bytes=ref.object_id) == employee_there and ref.class_path == "hr.Employee"
        assert ref.backend_id == b""  # where that level's object lives: the directory says
        kept = visit.state["name"]
        assert (UUID(bytes=kept.object_id), kept.backend_id) == (lc.object_id(outsider), other_backend.bytes)
    assert all(v.state["salary"] == 5.0 and v.state["name"] == "ann" for v in ancestors.visits[1::2])
    assert base == {company_middle: 61, employee_middle: 31}


def test_a_shorter_lineage_is_referred_to_by_its_topmost_ancestor():
    """The employee is a version of its original (one level), the company a version of a
    version (two): at the second level the company refers to the employee's original."""
    company_original, company_middle, employee_original = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    employee = version_of(Employee("ann", 5.0), employee_original, employee_original, 3)
    company = version_of(Company("acme", employee), company_middle, company_original, 6)
    ancestors = Ancestors({
        company_middle: (6, Lineage(company_original, company_original, 60)),
        employee_original: (3, None),
        company_original: (60, None),
    })

    base = walk_lineage([company, employee], ancestors)

    assert [(v.member, v.ancestor) for v in ancestors.visits] == [
        (lc.object_id(company), company_middle), (lc.object_id(employee), employee_original),
        (lc.object_id(company), company_original)]
    refs = [UUID(bytes=v.state["employee"].object_id) for v in ancestors.visits if "employee" in v.state]
    assert refs == [employee_original, employee_original]
    assert base == {company_middle: 61}
