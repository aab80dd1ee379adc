"""Compare desired children with live objects on the fields the operator owns (pure functions).

Live objects carry server defaults and other managers' fields; a child needs patching only when a
field we set differs, which is what `is_subset` checks. Lists compare element-wise with equal
length, so removing an item (an env var, a volume) counts as a difference.
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


def differing_paths(desired: Any, live: Any, prefix: str = "") -> list[str]:
    """Dotted paths where `desired` is not a subset of `live` (for logs and events)."""
    if isinstance(desired, Mapping) and isinstance(live, Mapping):
        paths: list[str] = []
        for key, value in desired.items():
            paths += differing_paths(value, live.get(key), f"{prefix}.{key}" if prefix else str(key))
        return paths
    return [] if is_subset(desired, live) else [prefix or "."]


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
