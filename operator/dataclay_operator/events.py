"""Kubernetes Events on the DataClay (what `kubectl describe dataclay` shows).

Posted with the operator's own REST client rather than kopf's event poster, because reconciling
runs in the operator's worker threads, outside kopf's handler context.
"""
from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from dataclay_operator.api import MANAGER
from dataclay_operator.kube import Kube, KubeError, resource_path

logger = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"
_MAX_MESSAGE = 1024


def build_event(dc: Mapping[str, Any], event_type: str, reason: str, message: str, now: datetime,
                instance: str) -> dict[str, Any]:
    """A core/v1 Event about `dc` (pure: the tests check its shape)."""
    meta = dc["metadata"]
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": dc["apiVersion"], "kind": dc["kind"], "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta["uid"]},
        "type": event_type,
        "reason": reason,
        "message": message[:_MAX_MESSAGE],
        "source": {"component": MANAGER},
        "reportingComponent": MANAGER,
        "reportingInstance": instance,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventRecorder:
    """Best-effort: a failed Event is logged, never fails a reconcile."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.instance = os.environ.get("POD_NAME") or socket.gethostname()

    def record(self, dc: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        log = logger.warning if event_type == WARNING else logger.info
        log("%s/%s %s: %s", dc["metadata"]["namespace"], dc["metadata"]["name"], reason, message)
        event = build_event(dc, event_type, reason, message, datetime.now(timezone.utc), self.instance)
        try:
            self.kube.create(resource_path("v1", "events", dc["metadata"]["namespace"]), event)
        except KubeError as exc:
            logger.warning("could not post event %s: %s", reason, exc)
