"""A small dict-in, dict-out Kubernetes REST client for the reconciler.

The operator works on plain dicts (children are built as data), so it talks REST through the
official client's ApiClient (auth, TLS, kubeconfig/in-cluster config) without its typed models.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from dataclay_operator.api import MANAGER

logger = logging.getLogger(__name__)

APPLY = "application/apply-patch+yaml"  # JSON is YAML, so the body is sent as JSON
MERGE = "application/merge-patch+json"


class KubeError(Exception):
    """A non-2xx answer from the API server; `status` is the HTTP code, `reason` the Status reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


def resource_path(api_version: str, plural: str, namespace: str | None = None, name: str | None = None,
                  subresource: str | None = None) -> str:
    """/api/v1/... or /apis/<group>/<version>/... for a collection, an object or a subresource."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    parts = [base]
    if namespace is not None:
        parts += ["namespaces", quote(namespace, safe="")]
    parts.append(plural)
    if name is not None:
        parts.append(quote(name, safe=""))
    if subresource is not None:
        parts.append(subresource)
    return "/".join(parts)


#: Plural of each kind the operator manages (no discovery round trip needed).
PLURALS = {("v1", "ConfigMap"): "configmaps", ("v1", "Service"): "services", ("v1", "Pod"): "pods",
           ("v1", "Event"): "events", ("v1", "Secret"): "secrets", ("apps/v1", "StatefulSet"): "statefulsets",
           ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
           ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets"}


def object_path(obj: Mapping[str, Any], subresource: str | None = None) -> str:
    """Path of a built-in object the operator manages, from its apiVersion, kind and metadata."""
    plural = PLURALS[(obj["apiVersion"], obj["kind"])]
    meta = obj["metadata"]
    return resource_path(obj["apiVersion"], plural, meta.get("namespace"), meta["name"], subresource)


class Kube:
    """Synchronous REST calls; thread-safe like the underlying urllib3 pool."""

    def __init__(self, api_client: Any, request_timeout: float = 30.0) -> None:
        self.api_client = api_client
        self.request_timeout = request_timeout

    @classmethod
    def from_environment(cls) -> "Kube":
        """In-cluster service account when running in a pod, else $KUBECONFIG / ~/.kube/config."""
        from kubernetes import client, config

        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
        api_client = client.ApiClient(configuration)
        api_client.user_agent = MANAGER
        return cls(api_client)

    def request(self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None,
                content_type: str = "application/json") -> Any:
        """One call; returns the decoded JSON answer, raises KubeError for a non-2xx status."""
        from kubernetes.client.exceptions import ApiException

        if query:
            path = f"{path}?{urlencode({k: v for k, v in query.items() if v is not None})}"
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        _, url, headers, body, _ = self.api_client.param_serialize(
            method=method, resource_path=path, header_params=headers, body=body, auth_settings=["BearerToken"])
        try:
            response = self.api_client.call_api(method, url, header_params=headers, body=body,
                                                _request_timeout=self.request_timeout)
            response.read()
        except ApiException as exc:  # urllib3/transport errors surface as ApiException too
            raise KubeError(exc.status or 0, exc.reason or "", str(exc.body or exc)) from exc
        data = response.data.decode() if response.data else ""
        if not 200 <= response.status < 300:
            reason, message = "", data
            try:
                decoded = json.loads(data)
                reason, message = decoded.get("reason", ""), decoded.get("message", data)
            except ValueError:
                pass
            raise KubeError(response.status, reason, message)
        return json.loads(data) if data else None

    def get(self, path: str) -> dict[str, Any] | None:
        """The object, or None if it does not exist."""
        try:
            return self.request("GET", path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Items of a collection (one page: the operator lists a handful of pods per DataClay)."""
        return self.request("GET", path, query={"labelSelector": label_selector}).get("items") or []

    def apply(self, obj: Mapping[str, Any], path: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply as the operator's field manager (creates the object if missing).

        `force` takes over fields another manager changed: the operator owns these fields. A
        dry run answers with the object as the server would store it, storing nothing: with
        defaults, normalised quantities, other managers' fields, and without fields the operator
        applied before and applies no more.
        """
        query = {"fieldManager": MANAGER, "force": "true", "dryRun": "All" if dry_run else None}
        return self.request("PATCH", path or object_path(obj), body=dict(obj), query=query, content_type=APPLY)

    def replace(self, path: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        """PUT: the whole object, refused (409) if its resourceVersion is not the current one."""
        return self.request("PUT", path, body=dict(obj), query={"fieldManager": MANAGER})

    def create(self, path: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, body=dict(obj), query={"fieldManager": MANAGER})

    def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", path, body=dict(patch), query={"fieldManager": MANAGER}, content_type=MERGE)
