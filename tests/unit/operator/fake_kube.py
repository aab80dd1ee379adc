"""An in-memory Kubernetes API server behind the operator's REST client.

`FakeKube` is a `dataclay_operator.kube.Kube` whose one network method, `request(method, path,
body, query, content_type)`, is answered from a dict of objects instead of an API server; the
client's own get/list/apply/create/merge_patch run unchanged on top of it. It is a fake of the
Kubernetes API, not of the operator: it knows paths, label selectors, server-side apply (as a
deep merge; lists are replaced; no field ownership, so a field dropped from an apply stays: the
tests/k8s suite checks that against the real server), dry runs, JSON merge patch, PUT fenced by resourceVersion, the status subresource, generation (bumped by
spec changes only), resourceVersion, uid, generateName, a few server defaults, and the
StatefulSet fields the real API server refuses to change (422 Invalid). Every call is recorded
in `calls`, so tests can tell what the operator wrote.

It also plays the controllers that are not there: `settle_statefulsets()` (the StatefulSet
controller catching up) and `add_pod()` (a kubelet reporting a pod).
"""
from __future__ import annotations

import copy
import itertools
import re
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dataclay_operator.kube import APPLY, MERGE, Kube, KubeError

_PATH = re.compile(
    r"^(?P<prefix>/api/v1|/apis/[^/]+/[^/]+)(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+))?(?:/(?P<subresource>[^/]+))?$")
_KINDS = {"configmaps": ("v1", "ConfigMap"), "services": ("v1", "Service"), "pods": ("v1", "Pod"),
          "events": ("v1", "Event"), "secrets": ("v1", "Secret"), "statefulsets": ("apps/v1", "StatefulSet")}
#: What the real API server answers 422 to when it would change (apps/v1 StatefulSet validation).
STATEFULSET_IMMUTABLE = ("selector", "serviceName", "podManagementPolicy", "volumeClaimTemplates")


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    content_type: str | None = None
    body: Any = None
    dry_run: bool = False  # dryRun=All: answered as if done, nothing stored


def _merge(live: Any, applied: Any) -> Any:
    """Server-side apply, simplified: maps merge key by key, anything else is replaced."""
    if isinstance(live, dict) and isinstance(applied, Mapping):
        merged = dict(live)
        for key, value in applied.items():
            merged[key] = _merge(live.get(key), value)
        return merged
    return copy.deepcopy(applied)


def _merge_patch(live: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: null removes a key."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    merged = dict(live) if isinstance(live, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge_patch(merged.get(key), value)
    return merged


def _matches(labels: Mapping[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    wanted = dict(term.split("=", 1) for term in selector.split(","))
    return all(labels.get(key) == value for key, value in wanted.items())


class FakeKube(Kube):
    def __init__(self) -> None:
        super().__init__(api_client=None)
        self.objects: dict[str, dict[str, Any]] = {}  # object path -> object
        self.calls: list[Call] = []
        self._versions = itertools.count(1)
        self._ips = itertools.count(10)
        self._lock = threading.Lock()

    # -- the REST interface the operator's client uses ---------------------------------------------

    def request(self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None,
                content_type: str = "application/json") -> Any:
        with self._lock:
            dry_run = (query or {}).get("dryRun") == "All"
            self.calls.append(Call(method, path, content_type if body is not None else None, copy.deepcopy(body),
                                   dry_run))
            parsed = _PATH.match(path)
            if parsed is None:
                raise KubeError(404, "NotFound", f"no such path {path}")
            parts = parsed.groupdict()
            if parts["name"] is None:
                return self._collection(method, path, parts, body, query or {})
            key = path[: -len(parts["subresource"]) - 1] if parts["subresource"] else path
            if method == "GET":
                return copy.deepcopy(self._get(key))
            if method == "DELETE":
                self._get(key)
                del self.objects[key]
                return {"kind": "Status", "status": "Success"}
            if method == "PATCH" and content_type == APPLY:
                if dry_run:
                    saved, versions = copy.deepcopy(self.objects), self._versions
                    self._versions = itertools.count(next(copy.deepcopy(versions)))
                    try:
                        return copy.deepcopy(self._apply(key, parts, body))
                    finally:
                        self.objects, self._versions = saved, versions
                return copy.deepcopy(self._apply(key, parts, body))
            if method == "PATCH" and content_type == MERGE:
                return copy.deepcopy(self._patch(key, body, parts["subresource"]))
            if method == "PUT" and not parts["subresource"]:
                return copy.deepcopy(self._replace(key, body))
            raise KubeError(405, "MethodNotAllowed", f"{method} {path} ({content_type})")

    # -- what tests use to arrange and inspect ------------------------------------------------------

    def get_object(self, path: str) -> dict[str, Any] | None:
        with self._lock:
            found = self.objects.get(path)
            return copy.deepcopy(found)

    def writes(self, since: int = 0) -> list[Call]:
        """Calls that changed something (everything but GET and dry runs), from index `since` of `calls`."""
        return [call for call in self.calls[since:] if call.method != "GET" and not call.dry_run]

    def event_reasons(self, since: int = 0) -> list[str]:
        return [call.body["reason"] for call in self.writes(since) if call.path.endswith("/events")]

    def settle_statefulsets(self) -> None:
        """Play the StatefulSet controller: every StatefulSet has caught up with its spec."""
        with self._lock:
            for obj in self.objects.values():
                if obj["kind"] == "StatefulSet":
                    replicas = obj["spec"].get("replicas", 1)
                    obj["status"] = {"observedGeneration": obj["metadata"]["generation"], "replicas": replicas,
                                     "updatedReplicas": replicas, "readyReplicas": replicas,
                                     "currentRevision": "r1", "updateRevision": "r1"}

    def add_pod(self, namespace: str, name: str, labels: Mapping[str, str], ready: bool = True) -> None:
        """Play the kubelet: a pod with these labels, Ready or not."""
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace,
                                                              "labels": dict(labels)},
               "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
        self.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod)

    # -- the server -----------------------------------------------------------------------------

    def _get(self, key: str) -> dict[str, Any]:
        found = self.objects.get(key)
        if found is None:
            raise KubeError(404, "NotFound", f"{key} not found")
        return found

    def _collection(self, method: str, path: str, parts: dict[str, str | None], body: Any,
                    query: Mapping[str, Any]) -> Any:
        if method == "GET":
            items = [obj for key, obj in sorted(self.objects.items())
                     if key.rsplit("/", 1)[0] == path and _matches(obj["metadata"].get("labels") or {},
                                                                  query.get("labelSelector"))]
            return {"kind": "List", "items": copy.deepcopy(items)}
        if method == "POST":
            meta = body.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
            key = f"{path}/{meta['name']}"
            if key in self.objects:
                raise KubeError(409, "AlreadyExists", f"{key} already exists")
            return copy.deepcopy(self._create(key, parts, body))
        raise KubeError(405, "MethodNotAllowed", f"{method} {path}")

    def _create(self, key: str, parts: dict[str, str | None], body: Mapping[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", parts["namespace"])
        meta.update(uid=str(uuid.uuid4()), resourceVersion=str(next(self._versions)), generation=1,
                    creationTimestamp="2024-01-01T00:00:00Z")
        if parts["plural"] in _KINDS:
            obj.setdefault("apiVersion", _KINDS[parts["plural"]][0])
            obj.setdefault("kind", _KINDS[parts["plural"]][1])
        self._default(obj)
        self.objects[key] = obj
        return obj

    def _replace(self, key: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT: the whole object, refused (409) unless it carries the current resourceVersion."""
        live = self._get(key)
        version = (body.get("metadata") or {}).get("resourceVersion")
        if version != live["metadata"]["resourceVersion"]:
            raise KubeError(409, "Conflict", f"{key}: the object has been modified (resourceVersion {version})")
        obj = copy.deepcopy(dict(body))
        obj["metadata"] = {**live["metadata"], **obj.get("metadata", {}),
                           "resourceVersion": str(next(self._versions))}
        self.objects[key] = obj
        return obj

    def _default(self, obj: dict[str, Any]) -> None:
        """A few fields the real API server fills in: the operator must not see them as drift."""
        spec = obj.get("spec")
        if obj.get("kind") == "Service" and isinstance(spec, dict):
            spec.setdefault("clusterIP", f"10.0.0.{next(self._ips)}")
            spec.setdefault("sessionAffinity", "None")
        if obj.get("kind") == "StatefulSet" and isinstance(spec, dict):
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("updateStrategy", {"type": "RollingUpdate"})

    def _apply(self, key: str, parts: dict[str, str | None], body: Mapping[str, Any]) -> dict[str, Any]:
        live = self.objects.get(key)
        if live is None:
            return self._create(key, parts, body)
        merged = _merge(live, {k: v for k, v in body.items() if k != "status"})
        if merged["kind"] == "StatefulSet":
            changed = [f for f in STATEFULSET_IMMUTABLE if merged["spec"].get(f) != live["spec"].get(f)]
            if changed:
                raise KubeError(422, "Invalid", f"StatefulSet.apps {live['metadata']['name']} is invalid: "
                                f"spec: Forbidden: updates to {', '.join(changed)} are forbidden")
        return self._store(key, live, merged)

    def _patch(self, key: str, patch: Mapping[str, Any], subresource: str | None) -> dict[str, Any]:
        live = self._get(key)
        if subresource == "status":  # the status subresource changes status only
            merged = dict(live, status=_merge_patch(live.get("status"), patch.get("status") or {}))
        elif subresource is None:  # the main resource ignores status (CRDs with a status subresource)
            merged = _merge_patch(live, {k: v for k, v in patch.items() if k != "status"})
        else:
            raise KubeError(404, "NotFound", f"no subresource {subresource}")
        return self._store(key, live, merged)

    def _store(self, key: str, live: dict[str, Any], merged: dict[str, Any]) -> dict[str, Any]:
        if merged == live:
            return live  # a no-op write changes nothing, not even resourceVersion
        meta = merged["metadata"] = dict(merged["metadata"])
        meta["resourceVersion"] = str(next(self._versions))
        if merged.get("spec") != live.get("spec"):
            meta["generation"] = live["metadata"]["generation"] + 1
        self.objects[key] = merged
        return merged
