"""Walking a lineage: a version's states, level by level, up to the original.

Pure (no locks, no store, no network): consolidation drives it with a `visit` that checks and
writes each ancestor, locally or on another backend, and fast tests drive it with plain objects.
"""
from __future__ import annotations

from typing import Any, Callable
from uuid import UUID

from dataclay import lifecycle as lc
from dataclay.serialization import Ref, dumps, make_ref

# visit(member, ancestor id, revision the ancestor must still have, state for it)
#   -> (the ancestor's new revision, the ancestor's own lineage, or None for an original)
Visit = Callable[[Any, UUID, int, bytes], "tuple[int, lc.Lineage | None]"]


def properties_state(obj: Any) -> dict[str, Any]:
    """A version's state without its lineage: what is written into an ancestor."""
    return lc.properties(lc.persisted_state(obj))


def walk_lineage(members: list[Any], visit: Visit) -> dict[UUID, int]:
    """Walk up the lineage of `members` (the versioned objects of one consolidation) one level
    at a time. At each level, every member's state, with references between members rewritten
    to that level's objects, goes to `visit`. Returns the new base revision of each
    intermediate version (its parent changed under it, so its recorded revision moves on)."""
    base: dict[UUID, int] = {}
    lineages: dict[UUID, lc.Lineage] = {m.__dict__[lc.ID]: m.__dict__[lc.VERSION] for m in members}
    current = {m.__dict__[lc.ID]: m.__dict__[lc.ID] for m in members}  # member -> object at this level
    while lineages:
        level = {member: lineage.parent for member, lineage in lineages.items()}

        def remap(ref_obj: Any) -> Ref:
            ref = make_ref(ref_obj)
            object_id = ref_obj.__dict__[lc.ID]
            ancestor = level.get(object_id) or (current[object_id] if current.get(object_id, object_id) != object_id else None)
            return Ref(ancestor.bytes, ref.class_path, b"") if ancestor else ref

        next_lineages: dict[UUID, lc.Lineage] = {}
        for member in members:
            member_id = member.__dict__[lc.ID]
            if member_id not in lineages:
                continue
            lineage = lineages[member_id]
            new_revision, parent_lineage = visit(member, lineage.parent, lineage.revision,
                                                 dumps(properties_state(member), remap))
            if current[member_id] != member_id:  # an intermediate version: its base moves on
                base[current[member_id]] = new_revision
            current[member_id] = lineage.parent
            if parent_lineage:
                next_lineages[member_id] = parent_lineage
        lineages = next_lineages
    return base
