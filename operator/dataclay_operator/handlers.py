"""Thin kopf handlers: watch events in, reconcile requests out.

kopf watches DataClays, every kind of child, and ConfigMaps (a DataClay's model ConfigMap is
not its child; an in-memory index maps it to the DataClays that mount it); every handler only puts a (namespace, name) key on
the controller's work queue. No change handlers, timers or daemons: those make kopf add a
finalizer and annotations to every DataClay, and nothing here lives outside Kubernetes, so owner
references and the garbage collector do all the cleanup. Resync comes from the work queue.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Mapping
from typing import Any

import kopf

from dataclay_operator import api
from dataclay_operator.config import OperatorConfig, load_config
from dataclay_operator.controller import Controller
from dataclay_operator.events import EventRecorder
from dataclay_operator.kube import Kube
from dataclay_operator.leader import LeaderElector
from dataclay_operator.reconcile import Reconciler


def needs_reconcile(event_type: str | None, body: Mapping[str, Any]) -> bool:
    """Whether a DataClay watch event asks for a pass.

    Initial listing and ADDED: yes (this is how the operator resumes after a restart). MODIFIED:
    only when the spec generation is newer than the one status reports, so the operator's own
    status writes do not trigger passes (status changes do not bump metadata.generation).
    """
    if event_type == "DELETED":
        return False
    if event_type != "MODIFIED":
        return True
    generation = (body.get("metadata") or {}).get("generation")
    observed = (body.get("status") or {}).get("observedGeneration")
    return generation is None or observed is None or generation != observed


def owner_key(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(namespace, name) of the DataClay controlling this child, if any."""
    meta = body.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == api.KIND and ref.get("apiVersion", "").startswith(f"{api.GROUP}/"):
            return meta.get("namespace"), ref.get("name")
    return None


@kopf.on.startup()
def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: OperatorConfig = getattr(memo, "config", None) or load_config(os.environ)
    settings.posting.level = logging.WARNING  # our own Events come from the reconciler
    settings.watching.server_timeout = 300  # recycle watches so a silently dead connection heals
    settings.watching.client_timeout = 330
    kube = Kube.from_environment()
    reconciler = Reconciler(kube=kube, config=config, events=EventRecorder(kube))
    controller = Controller(reconciler.reconcile, workers=config.workers)
    memo.controller, memo.reconciler = controller, reconciler
    if config.lease is None:
        controller.start()
        return
    # Watches run in every replica and fill the queue; only the leader's workers take from it.
    memo.stop_campaign = threading.Event()
    elector = LeaderElector(kube, *config.lease, identity=config.identity)
    threading.Thread(target=elector.run, name="dataclay-leader-election", daemon=True,
                     args=(controller.start, lambda: _lost_the_lead(reconciler), memo.stop_campaign)).start()


def _lost_the_lead(reconciler: Reconciler) -> None:
    """Another replica leads now (or the Lease could not be renewed): drains in flight stop at
    their next progress report, and the process exits, gracefully, so that this replica's passes
    stop; the Deployment starts it again as a candidate."""
    reconciler.stopping.set()
    os.kill(os.getpid(), signal.SIGTERM)


@kopf.on.cleanup()
def stop(memo: kopf.Memo, **_: Any) -> None:
    """Passes in flight end first (bounded), then the campaign: a leader keeps its Lease while its
    workers may still act, so a standby cannot lead before they have stopped."""
    reconciler: Reconciler | None = getattr(memo, "reconciler", None)
    if reconciler is not None:  # a drain in flight stops at its next progress report, lifting its marks
        reconciler.stopping.set()
    controller: Controller | None = getattr(memo, "controller", None)
    if controller is not None:
        controller.stop()
    campaign: threading.Event | None = getattr(memo, "stop_campaign", None)
    if campaign is not None:
        campaign.set()


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def dataclay_event(event: Mapping[str, Any], body: Mapping[str, Any], namespace: str, name: str,
                         memo: kopf.Memo, **_: Any) -> None:
    if event.get("type") == "DELETED":
        memo.controller.forget((namespace, name))
    elif needs_reconcile(event.get("type"), body):
        memo.controller.enqueue((namespace, name))


#: Every kind of child the operator owns, watched by its managed-by label: a StatefulSet's status
#: change (pods ready, a rollout progressed) refreshes the owner's status; a change or deletion
#: of any child by someone else is repaired at once, not at the next resync.
CHILD_KINDS = (("apps", "v1", "statefulsets"), ("", "v1", "services"), ("", "v1", "configmaps"),
               ("", "v1", "secrets"), ("networking.k8s.io", "v1", "networkpolicies"),
               ("policy", "v1", "poddisruptionbudgets"))


async def child_event(body: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    key = owner_key(body)
    if key is not None:
        memo.controller.enqueue(key)


for _group, _version, _plural in CHILD_KINDS:
    kopf.on.event(_group, _version, _plural, labels={api.LABEL_MANAGED_BY: api.MANAGER},
                  id=f"child-{_plural}")(child_event)


@kopf.index(api.GROUP, api.VERSION, api.PLURAL)
def dataclays_by_model(namespace: str, name: str, spec: Mapping[str, Any], **_: Any) -> dict[Any, str] | None:
    """DataClays by the model ConfigMap they mount: (namespace, ConfigMap name) -> DataClay names."""
    config_map = ((spec or {}).get("model") or {}).get("configMap")
    return {(namespace, config_map): name} if config_map else None


@kopf.on.event("", "v1", "configmaps")
async def model_event(namespace: str, name: str, dataclays_by_model: kopf.Index, memo: kopf.Memo,
                      **_: Any) -> None:
    """A model ConfigMap changed: its DataClays roll their backends (the digest in the template)."""
    for dataclay in dataclays_by_model.get((namespace, name), []):
        memo.controller.enqueue((namespace, dataclay))
