"""Compare children (pure functions).

Drift is decided by `changed_paths` between the live object and what a dry-run apply of the
desired one says the server would store (defaults, normalised quantities, other managers' fields
and fields no longer applied are all the server's business). `is_subset` (every field set in
`desired` has the same value in `live`; lists element-wise with equal length) serves
`keep_immutable` and tests.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any


def is_subset(desired: Any, live: Any) -> bool:
    """True if every field set in `desired` has the same value in `live`."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(is_subset(v, live.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return (isinstance(live, list) and len(live) == len(desired)
                and all(is_subset(d, x) for d, x in zip(desired, live)))
    return desired == live


#: Metadata the server changes on every write (or keeps for itself): never drift.
VOLATILE_METADATA = ("resourceVersion", "generation", "managedFields", "creationTimestamp", "uid")


def changed_paths(live: Mapping[str, Any], stored: Mapping[str, Any]) -> list[str]:
    """Dotted paths where what the server would store (a dry-run apply) differs from what it
    has: the only real drift. Status and volatile metadata are not compared."""
    def strip(obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in VOLATILE_METADATA}
        return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}

    def walk(a: Any, b: Any, prefix: str) -> list[str]:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            paths: list[str] = []
            for key in sorted(set(a) | set(b)):
                paths += walk(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
            return paths
        return [] if a == b else [prefix or "."]

    return walk(strip(live), strip(stored), "")


def keep_immutable(desired: Mapping[str, Any], live: Mapping[str, Any], fields: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    """`desired` with spec fields the server will not change taken from `live` where they differ.

    Returns the adjusted object and the fields it kept, so the caller can report the drift
    instead of failing every pass with 422 Unprocessable Entity.
    """
    result = copy.deepcopy(dict(desired))
    kept = []
    live_spec = live.get("spec") or {}
    for name in fields:
        if name in result.get("spec", {}) and name in live_spec and not is_subset(result["spec"][name], live_spec[name]):
            value = copy.deepcopy(live_spec[name])
            if name == "volumeClaimTemplates":  # live templates carry a status stub; never apply it
                value = [{k: v for k, v in item.items() if k != "status"} for item in value]
            result["spec"][name] = value
            kept.append(name)
    return result, kept
