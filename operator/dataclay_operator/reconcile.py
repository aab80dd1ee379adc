"""One reconcile pass for one DataClay: children, scale-down drain, status.

Level-based and idempotent: every pass reads the DataClay and its children, creates what is
missing, patches what differs on the fields we own (server-side apply), and recomputes status
from what it observed. A pass can be cut at any point (operator restart) and the next one simply
continues: a scale-down whose drain did not finish still has spec.replicas below the StatefulSet's,
so it drains again (moving nothing twice) before lowering replicas.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from dataclay_operator import api, children, credentials
from dataclay_operator.compare import changed_paths, keep_immutable
from dataclay_operator.config import OperatorConfig
from dataclay_operator.events import NORMAL, WARNING, EventRecorder
from dataclay_operator.kube import Kube, KubeError, object_path, resource_path
from dataclay_operator.scaling import (Bypass, LifecyclePlan, ScalePlan, current_replicas, detect_bypass,
                                       drain_retry_delay, live_replicas, plan_lifecycle, plan_scale,
                                       replicas_after_drain)
from dataclay_operator.spec import DataClaySpec, SpecError, parse_spec
from dataclay_operator.status import (BackupState, DrainProgress, Observed, Reason, compute_status, pod_ready,
                                      status_patch)

if TYPE_CHECKING:
    from dataclay.security import Credentials

logger = logging.getLogger(__name__)

#: drain(host, port, backend_names, on_progress, credentials=admin) -> objects moved; raises if it
#: cannot drain.
DrainFn = Callable[..., int]


def dataplane_drain(host: str, port: int, backend_names: list[str],
                    on_progress: Callable[[int, int], None] | None = None, *,
                    credentials: "Credentials | None" = None) -> int:
    """The one data-plane call the operator makes (imported lazily: only a scale-down needs it),
    as the DataClay's admin identity. A pod that never registered its backend has nothing to
    drain (missing_ok)."""
    from dataclay.admin import drain_backends

    return drain_backends(host, port, backend_names, on_progress=on_progress, missing_ok=True,
                          credentials=_required(credentials))


def dataplane_last_backup(host: str, port: int, *, credentials: "Credentials | None" = None) -> BackupState:
    """The newest backup of the metadata database, from the metadata service (1 s at most), as the admin."""
    from dataclay.admin import last_backup

    backup = last_backup(host, port, timeout=1.0, credentials=_required(credentials))
    if backup.path is None:
        return BackupState(error=backup.error)
    return BackupState(file=PurePosixPath(backup.path).name,
                       time=rfc3339(datetime.fromtimestamp(backup.time, timezone.utc)), size=backup.size,
                       objects=backup.objects, aliases=backup.aliases, error=backup.error)


def dataplane_backend_ids(host: str, port: int, *, credentials: "Credentials | None" = None) -> dict[str, str]:
    """Backend pod name -> backend id, from the metadata service (1 s at most), as the admin."""
    from dataclay.admin import backend_ids

    return {name: str(backend_id)
            for name, backend_id in backend_ids(host, port, timeout=1.0, credentials=_required(credentials)).items()}


def dataplane_follow_lifecycle(host: str, port: int, name: str, desired: int, pods: set[str], *,
                               credentials: "Credentials | None" = None) -> LifecyclePlan:
    """Make the directory's backend marks follow the spec (scaling.plan_lifecycle), as the
    admin: lift the draining marks of wanted backends, retire drained backends whose pod is
    gone. Returns what was done (a backend that turns out to own objects is not retired)."""
    from dataclay.admin import deregister_backends, registered_backends, set_draining
    from dataclay.exceptions import BackendNotDrainedError

    admin = _required(credentials)
    listed = registered_backends(host, port, timeout=1.0, credentials=admin)
    plan = plan_lifecycle(name, desired, {backend: info.draining for backend, info in listed.items()}, pods)
    if plan.lift:
        set_draining(host, port, list(plan.lift), False, credentials=admin, timeout=5.0)
    retired = []
    for backend in plan.deregister:
        try:
            retired += deregister_backends(host, port, [backend], credentials=admin, missing_ok=True, timeout=5.0)
        except BackendNotDrainedError as exc:  # objects arrived after its drain: the next scale-down drains it
            logger.warning("%s: not retired: %s", backend, exc)
    return LifecyclePlan(plan.lift, tuple(retired))


def _required(credentials: "Credentials | None") -> "Credentials":
    """The servers accept no call without credentials: never fall back to a plain-text channel."""
    if credentials is None:
        raise MissingCredentials("the operator has no admin credentials for this DataClay yet "
                                 "(its admin Secret is missing or incomplete)")
    return credentials


def _asked_now_and_then(cache: dict, key: tuple[str, str], interval: float, wanted: bool, default: Any, what: str,
                        ask: Callable[[], Any]) -> Any:
    """What the data plane last answered for `key` (default: never asked), asked again when
    `wanted` at most every `interval` seconds; an unanswered ask keeps the last answer. Status
    never waits on the data plane, and a data plane that is starting is not asked in a loop."""
    asked_at, known = cache.get(key, (float("-inf"), default))
    if wanted and time.monotonic() - asked_at >= interval:
        try:
            known = ask()
        except Exception as exc:  # the data plane may be starting, or unreachable from here
            logger.debug("%s/%s: %s not available: %s", *key, what, exc)
        cache[key] = (time.monotonic(), known)
    return known


class MissingCredentials(Exception):
    """The admin Secret the operator's data-plane calls need is not (yet) there."""


BACKEND_IDS_INTERVAL = 10.0  # ask the metadata service for backend ids at most this often
BACKUP_STATUS_INTERVAL = 10.0  # ask it for its newest backup at most this often
LIFECYCLE_INTERVAL = 5.0  # check the directory's backend marks against the spec at most this often


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def dataclay_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    return resource_path(api.API_VERSION, api.PLURAL, namespace, name, subresource)


def describe_error(exc: BaseException) -> str:
    """`Type: message`, one line, for conditions and events."""
    text = " ".join(str(exc).split()) or repr(exc)
    return f"{type(exc).__name__}: {text}"


class ChildConflict(Exception):
    """An object with a child's name exists but another controller (or nobody) owns it."""


@dataclass(frozen=True)
class Outcome:
    """When to reconcile this DataClay again: None means never (it is gone), else seconds."""

    requeue_after: float | None


class DrainCancelled(Exception):
    """Raised from a drain's progress callback: the drain stops (its marks are lifted)."""


@dataclass
class _DrainFailure:
    backends: tuple[str, ...]
    failures: int
    retry_at: float
    progress: DrainProgress


@dataclass
class Reconciler:
    kube: Kube
    config: OperatorConfig
    events: EventRecorder
    drain: DrainFn = dataplane_drain
    backend_ids: Callable[..., dict[str, str]] = dataplane_backend_ids  # (host, port, credentials=) -> pod -> id
    last_backup: Callable[..., BackupState] = dataplane_last_backup  # (host, port, credentials=)
    follow_lifecycle: Callable[..., LifecyclePlan] = dataplane_follow_lifecycle
    now: Callable[[], datetime] = utc_now
    progress_interval: float = 1.0  # at most one status write per interval while draining
    _failed_drains: dict[tuple[str, str], _DrainFailure] = field(default_factory=dict)
    _backend_ids: dict[tuple[str, str], tuple[float, dict[str, str]]] = field(default_factory=dict)
    _backups: dict[tuple[str, str], tuple[float, BackupState | None]] = field(default_factory=dict)
    _lifecycle_at: dict[tuple[str, str], float] = field(default_factory=dict)  # last data-plane attempt
    stopping: threading.Event = field(default_factory=threading.Event)  # set: drains in flight stop
    _admin: dict[tuple[str, str], "Credentials"] = field(default_factory=dict)  # read from its Secret
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the pass ---------------------------------------------------------------------------------

    def reconcile(self, namespace: str, name: str) -> Outcome:
        dc = self.kube.get(dataclay_path(namespace, name))
        if dc is None or dc["metadata"].get("deletionTimestamp"):
            self._forget(namespace, name)
            self._forget_credentials(namespace, name)
            with self._lock:
                self._lifecycle_at.pop((namespace, name), None)
            return Outcome(None)  # owner references cascade; nothing of ours outlives it
        try:
            spec = self.spec_of(dc)
        except SpecError as exc:
            self.write_status(dc, None, error=(Reason.INVALID_SPEC, str(exc)))
            return Outcome(self.config.resync_seconds)
        try:
            return self._reconcile(dc, spec)
        except (KubeError, ChildConflict) as exc:
            message = describe_error(exc)
            logger.warning("%s/%s: reconcile failed: %s", namespace, name, message)
            try:
                self.write_status(dc, spec, error=(Reason.RECONCILE_FAILED, message))
            except KubeError as status_exc:
                logger.warning("%s/%s: status not written: %s", namespace, name, status_exc)
            raise

    def _reconcile(self, dc: dict[str, Any], spec: DataClaySpec) -> Outcome:
        name = dc["metadata"]["name"]
        authority = self.ensure_credentials(dc)
        for child in children.static_children(dc, spec, self.operator_peer()):
            self.ensure(dc, child)
        live = self.kube.get(resource_path("apps/v1", "statefulsets", dc["metadata"]["namespace"], api.backend_name(name)))
        # lowered behind our back: plan from what we applied, so the removed backends come back
        # (and are drained first if the spec wants fewer)
        bypass = detect_bypass(name, live)
        plan = plan_scale(name, spec.replicas, current_replicas(live))
        if bypass is not None:
            self.events.record(dc, WARNING, Reason.BACKENDS_REMOVED_WITHOUT_DRAIN.value,
                               f"backend StatefulSet scaled {bypass.applied} -> {bypass.live} outside the operator, "
                               f"removing {', '.join(bypass.removed)} without a drain; restoring {plan.replicas}. "
                               f"Scale the DataClay instead: kubectl scale dataclay {name} --replicas=N")
        elif live is not None and not plan.scale_down and live_replicas(live) != plan.replicas:
            self.events.record(dc, NORMAL, "Scaling", f"backends {live_replicas(live)} -> {plan.replicas}")
        # every ordinal's certificate exists before the StatefulSet may create its pod
        ordinals = max(spec.replicas, plan.replicas, live_replicas(live) or 0)
        self.ensure_secret(dc, authority, credentials.backend_plan(dc, ordinals))
        backends = children.backend_statefulset(dc, spec, plan.replicas, self.model_digest(dc, spec))
        self.ensure(dc, backends, live=live)
        if not plan.scale_down:
            self._forget(dc["metadata"]["namespace"], name)
            self._follow_lifecycle(dc, spec)
            status = self.write_status(dc, spec, bypass=bypass)
            missing_ids = any(b["ready"] and "backendId" not in b for b in status.get("backends", []))
            return Outcome(min(self.config.resync_seconds, BACKEND_IDS_INTERVAL) if missing_ids
                           else self.config.resync_seconds)
        if bypass is not None:  # reported now; later writes keep it until the backends are back
            self.write_status(dc, spec, bypass=bypass)
        return self._scale_down(dc, spec, plan)

    def _follow_lifecycle(self, dc: Mapping[str, Any], spec: DataClaySpec) -> None:
        """Draining marks follow the spec, drained backends whose pod is gone are retired (outside
        a scale-down, at most every LIFECYCLE_INTERVAL; a data plane that does not answer is
        asked again later: status never waits on it)."""
        meta = dc["metadata"]
        key = (meta["namespace"], meta["name"])
        with self._lock:
            if time.monotonic() - self._lifecycle_at.get(key, float("-inf")) < LIFECYCLE_INTERVAL:
                return
            self._lifecycle_at[key] = time.monotonic()
        pods = self.kube.list(resource_path("v1", "pods", meta["namespace"]),
                              api.label_selector(api.selector_labels(meta["name"], api.COMPONENT_BACKEND)))
        try:
            done = self.follow_lifecycle(*self.dataplane_address(dc), meta["name"], spec.replicas,
                                         {pod["metadata"]["name"] for pod in pods},
                                         credentials=self.admin_credentials(dc))
        except Exception as exc:  # the data plane may be starting, or unreachable from here
            logger.debug("%s/%s: backend marks not checked: %s", *key, exc)
            return
        for backend in done.lift:
            self.events.record(dc, NORMAL, "DrainMarkLifted",
                               f"{backend} is wanted by spec.replicas: it takes new objects again")
        for backend in done.deregister:
            self.events.record(dc, NORMAL, "BackendRetired",
                               f"{backend} was drained and its pod is gone: deregistered for good")

    def spec_of(self, dc: Mapping[str, Any]) -> DataClaySpec:
        """The typed spec; without spec.image, the image it runs (status.image) unless it follows
        the operator's image (spec.upgradePolicy)."""
        return parse_spec(dc.get("spec"), self.config.default_image,
                          (dc.get("status") or {}).get("image") or self.running_image(dc))

    def running_image(self, dc: Mapping[str, Any]) -> str | None:
        """The image the backends' StatefulSet runs, for a DataClay whose status does not say (made
        by an operator that did not record status.image, or its status lost): without it, such a
        DataClay would follow the operator's image at its first upgrade, pinned or not."""
        if (dc.get("spec") or {}).get("image"):
            return None
        meta = dc["metadata"]
        live = self.kube.get(resource_path("apps/v1", "statefulsets", meta["namespace"], api.backend_name(meta["name"])))
        containers = (((live or {}).get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
        return containers[0].get("image") if containers else None

    def model_digest(self, dc: Mapping[str, Any], spec: DataClaySpec) -> str | None:
        """The model ConfigMap's digest (None without one): a change of it rolls the backends."""
        if not spec.model.config_map:
            return None
        namespace = dc["metadata"]["namespace"]
        found = self.kube.get(resource_path("v1", "configmaps", namespace, spec.model.config_map))
        if found is None:  # deleted: the running backends keep what they mounted, and a pod rolled
            # now could not start (its volume is not optional): keep the digest they run with
            live = self.kube.get(resource_path("apps/v1", "statefulsets", namespace, api.backend_name(dc["metadata"]["name"])))
            template = (((live or {}).get("spec") or {}).get("template") or {}).get("metadata") or {}
            return (template.get("annotations") or {}).get(children.MODEL_CHECKSUM) or children.model_checksum(None)
        return children.model_checksum(found)

    def operator_peer(self) -> children.OperatorPeer | None:
        """The operator's pods, for NetworkPolicies (None: it runs outside the cluster)."""
        if self.config.pod_namespace is None:
            return None
        return children.OperatorPeer(self.config.pod_namespace, dict(self.config.pod_labels))

    # -- scale-down ---------------------------------------------------------------------------------

    def dataplane_address(self, dc: Mapping[str, Any]) -> tuple[str, int]:
        """The metadata Service in the cluster, unless the operator is told otherwise."""
        meta = dc["metadata"]
        host = self.config.dataplane_host or api.metadata_host(meta["name"], meta["namespace"])
        return host, self.config.dataplane_port or api.METADATA_PORT

    def _scale_down(self, dc: dict[str, Any], spec: DataClaySpec, plan: ScalePlan) -> Outcome:
        """Drain the backends that will go away, then (and only then) lower replicas."""
        key = (dc["metadata"]["namespace"], dc["metadata"]["name"])
        with self._lock:
            failed = self._failed_drains.get(key)
        if failed is not None and failed.backends == plan.drain and time.monotonic() < failed.retry_at:
            self.write_status(dc, spec, drain=failed.progress)  # still failed; wait for the retry
            return Outcome(failed.retry_at - time.monotonic())

        progress = self._run_drain(dc, spec, plan)
        if progress is None:  # cancelled: plan again from the spec as it is now
            self._forget(*key)
            return Outcome(0)
        if progress.error is not None:
            failures = 1 if failed is None or failed.backends != plan.drain else failed.failures + 1
            delay = drain_retry_delay(failures)
            with self._lock:
                self._failed_drains[key] = _DrainFailure(plan.drain, failures, time.monotonic() + delay, progress)
            self.write_status(dc, spec, drain=progress)
            return Outcome(delay)
        self._forget(*key)

        # The spec may have moved on while the drain ran: read it again before removing anything.
        fresh = self.kube.get(dataclay_path(*key))
        if fresh is None or fresh["metadata"]["uid"] != dc["metadata"]["uid"] or fresh["metadata"].get("deletionTimestamp"):
            return Outcome(None)
        fresh_spec = self.spec_of(fresh)
        replicas = replicas_after_drain(plan.target, fresh_spec.replicas)
        if replicas is None:  # asked for even fewer backends meanwhile: drain those first
            self.write_status(fresh, fresh_spec)
            return Outcome(0)
        self.ensure(fresh, children.backend_statefulset(fresh, fresh_spec, replicas,
                                                        self.model_digest(fresh, fresh_spec)))
        self.events.record(fresh, NORMAL, "ScaledDown",
                           f"backends {plan.replicas} -> {replicas} after draining {', '.join(plan.drain)}")
        self.write_status(fresh, fresh_spec)
        return Outcome(self.config.resync_seconds)

    def _drain_unwanted(self, dc: Mapping[str, Any], plan: ScalePlan) -> str | None:
        """Why the drain in flight is no longer wanted (None: it is), from the DataClay as stored
        now: deleted, or its spec asks for more backends than the drain leaves."""
        try:
            fresh = self.kube.get(dataclay_path(dc["metadata"]["namespace"], dc["metadata"]["name"]))
            if fresh is None or fresh["metadata"]["uid"] != dc["metadata"]["uid"] or fresh["metadata"].get(
                    "deletionTimestamp"):
                return "the DataClay is being deleted"
            replicas = self.spec_of(fresh).replicas
        except (KubeError, SpecError) as exc:  # cannot tell: keep draining
            logger.warning("drain: the spec could not be read again: %s", exc)
            return None
        if replicas > plan.target:
            return f"spec.replicas is {replicas} now, the drain was for {plan.target}"
        return None

    def _run_drain(self, dc: dict[str, Any], spec: DataClaySpec, plan: ScalePlan) -> DrainProgress | None:
        """Call the data plane's drain, reporting progress in status (throttled) and events. None:
        cancelled, because the spec no longer wants it or the operator is stopping."""
        names = ", ".join(plan.drain)
        host, port = self.dataplane_address(dc)
        self.events.record(dc, NORMAL, "DrainStarted",
                           f"scaling backends {plan.replicas} -> {plan.target}: moving every object off {names} "
                           f"(via {host}:{port})")
        state = {"progress": DrainProgress(plan.drain), "written": 0.0}
        self.write_status(dc, spec, drain=state["progress"])

        def on_progress(moved: int, total: int) -> None:
            if self.stopping.is_set():
                raise DrainCancelled("the operator is stopping (the next leader drains again if still wanted)")
            state["progress"] = DrainProgress(plan.drain, moved, total)
            now = time.monotonic()
            if now - state["written"] >= self.progress_interval or moved >= total:
                state["written"] = now
                why = self._drain_unwanted(dc, plan) if moved < total else None  # done is done
                if why is not None:
                    raise DrainCancelled(why)
                try:
                    self.write_status(dc, spec, drain=state["progress"])
                except KubeError as exc:  # progress is informative; never abort a drain for it
                    logger.warning("drain progress not written: %s", exc)

        started = time.monotonic()
        try:
            moved = self.drain(host, port, list(plan.drain), on_progress, credentials=self.admin_credentials(dc))
        except DrainCancelled as cancelled:  # the drain lifted its marks on its way out
            last = state["progress"]
            self.events.record(dc, NORMAL, "DrainCancelled",
                               f"stopped draining {names} after {last.moved}/{last.total} objects: {cancelled}")
            return None
        except Exception as exc:  # noqa: BLE001 - any failure (typed DataClayException, transport,
            # missing data plane) means the same thing here: keep the replicas and say why.
            message = describe_error(exc)
            last = state["progress"]
            self.events.record(dc, WARNING, "DrainFailed",
                               f"cannot drain {names}; replicas stay at {plan.replicas}, nothing removed: {message}")
            return DrainProgress(plan.drain, last.moved, last.total, error=message)
        self.events.record(dc, NORMAL, "DrainSucceeded",
                           f"moved {moved} objects off {names} in {time.monotonic() - started:.1f}s")
        return DrainProgress(plan.drain, moved, moved)

    def _forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._failed_drains.pop((namespace, name), None)

    def _forget_credentials(self, namespace: str, name: str) -> None:
        with self._lock:
            self._admin.pop((namespace, name), None)

    # -- credentials (dataclay_operator.credentials) ----------------------------------------------------

    def ensure_credentials(self, dc: Mapping[str, Any]) -> credentials.Authority:
        """The CA and every Secret of fixed content (metadata, client, admin), made if missing,
        completed if incomplete, never regenerated while present; remembers the admin identity."""
        meta = dc["metadata"]
        ca_name = api.ca_secret_name(meta["name"])
        live = self._owned_secret(dc, ca_name)
        current = credentials.decode(live)
        data = credentials.ca_data(current)
        if data is not None:
            data = self._write_secret(dc, ca_name, None, live, current, data)
        else:
            data = dict(current or {})
        authority = credentials.Authority(data[credentials.CA_FILE], data[credentials.CA_KEY_FILE])
        for plan in credentials.plans(dc):
            held = self.ensure_secret(dc, authority, plan)
            if plan.name == api.admin_credentials_name(meta["name"]):
                admin = credentials.admin_credentials(held)
                if admin is not None:
                    with self._lock:
                        self._admin[(meta["namespace"], meta["name"])] = admin
        return authority

    def ensure_secret(self, dc: Mapping[str, Any], authority: credentials.Authority,
                      plan: credentials.SecretPlan) -> dict[str, bytes]:
        """One leaf Secret holding every identity of `plan`, signed by `authority`; its data."""
        live = self._owned_secret(dc, plan.name)
        current = credentials.decode(live)
        data = credentials.complete(current, authority, plan)
        if data is None:
            return dict(current or {})
        return self._write_secret(dc, plan.name, plan.component, live, current, data)

    def _owned_secret(self, dc: Mapping[str, Any], name: str) -> dict[str, Any] | None:
        live = self.kube.get(resource_path("v1", "secrets", dc["metadata"]["namespace"], name))
        if live is not None:
            owner = next((r for r in live["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
            if owner is None or owner.get("uid") != dc["metadata"]["uid"]:
                raise ChildConflict(f"Secret {name} exists and is not controlled by this DataClay; "
                                    f"delete or rename it")
        return live

    def _write_secret(self, dc: Mapping[str, Any], name: str, component: str | None, live: dict[str, Any] | None,
                      current: dict[str, bytes] | None, data: dict[str, bytes]) -> dict[str, bytes]:
        """Create the Secret if missing (never over one made meanwhile: 409 means use that one), else patch it to `data`. Returns what it holds. Never logs its content."""
        namespace = dc["metadata"]["namespace"]
        if live is None:
            try:
                self.kube.create(resource_path("v1", "secrets", namespace),
                                 credentials.secret(dc, name, component, data))
            except KubeError as exc:
                if exc.status != 409:
                    raise
                # made meanwhile (another operator): it wins; what it lacks, the next pass adds
                return credentials.decode(self._owned_secret(dc, name)) or {}
            self.events.record(dc, NORMAL, "Created", f"created Secret {name}")
            return data
        reissued = current is not None and current.get(credentials.CA_FILE) != data.get(credentials.CA_FILE)
        added = credentials.identities_added(current, data)
        self.kube.merge_patch(resource_path("v1", "secrets", namespace, name), credentials.data_patch(current, data))
        if reissued:
            self.events.record(dc, WARNING, "CredentialsReissued",
                               f"Secret {name} was signed by another CA: issued {', '.join(added)} again; "
                               "restart the pods that mount it")
        else:
            self.events.record(dc, NORMAL, "Updated", f"updated Secret {name}: added {', '.join(added)}")
        return data

    def admin_credentials(self, dc: Mapping[str, Any]) -> "Credentials | None":
        with self._lock:
            return self._admin.get((dc["metadata"]["namespace"], dc["metadata"]["name"]))

    # -- children -------------------------------------------------------------------------------------

    def ensure(self, dc: Mapping[str, Any], desired: dict[str, Any], live: Any = ...) -> dict[str, Any]:
        """Get, create if missing, apply if the server would store something else."""
        path = object_path(desired)
        if live is ...:
            live = self.kube.get(path)
        kind, child = desired["kind"], desired["metadata"]["name"]
        if live is None:
            created = self.kube.apply(desired, path)
            self.events.record(dc, NORMAL, "Created", f"created {kind} {child}")
            return created
        owner = next((r for r in live["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
        if owner is None or owner.get("uid") != dc["metadata"]["uid"]:
            raise ChildConflict(f"{kind} {child} exists and is not controlled by this DataClay; "
                                f"delete or rename it")
        if kind == "StatefulSet":
            desired, kept = keep_immutable(desired, live, children.STATEFULSET_IMMUTABLE)
            if kept:
                logger.warning("%s %s: cannot change immutable %s; keeping the live values", kind, child,
                               ", ".join(kept))
        # Drift is what the server would store differing from what it has (not `desired` against
        # `live`: the server normalises quantities, keeps other managers' fields, and drops the
        # fields we applied before and apply no more).
        paths = changed_paths(live, self.kube.apply(desired, path, dry_run=True))
        if not paths:
            return live
        logger.info("%s %s differs at %s; patching", kind, child, ", ".join(paths))
        patched = self.kube.apply(desired, path)
        self.events.record(dc, NORMAL, "Updated", f"updated {kind} {child}: {', '.join(paths)}")
        return patched

    # -- status ---------------------------------------------------------------------------------------

    def observe(self, dc: Mapping[str, Any], spec: DataClaySpec | None, drain: DrainProgress | None = None,
                error: tuple[Reason, str] | None = None, bypass: Bypass | None = None) -> Observed:
        meta = dc["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        pods = resource_path("v1", "pods", namespace)
        sts = lambda n: self.kube.get(resource_path("apps/v1", "statefulsets", namespace, n))  # noqa: E731
        desired = spec.replicas if spec is not None else int((dc.get("spec") or {}).get("replicas") or 0)
        selector = api.label_selector(api.selector_labels(name, api.COMPONENT_BACKEND))
        backend_pods = self.kube.list(pods, selector)
        metadata_pods = self.kube.list(pods, api.label_selector(api.selector_labels(name, api.COMPONENT_METADATA)))
        return Observed(
            generation=int(meta.get("generation", 0)),
            desired_backends=desired,
            endpoint=f"{api.metadata_host(name, namespace)}:{api.METADATA_PORT}",
            metadata_sts=sts(api.metadata_name(name)),
            backend_sts=sts(api.backend_name(name)),
            metadata_pods=metadata_pods,
            backend_pods=backend_pods,
            drain=drain,
            error=error,
            backend_ids=self.known_backend_ids(dc, backend_pods),
            image=spec.image if spec is not None else (dc.get("status") or {}).get("image"),  # kept if invalid
            operator_image=None if (dc.get("spec") or {}).get("image") else self.config.default_image,
            name=name,
            selector=selector,
            bypass=bypass,
            backup=self.known_backup(dc, spec, metadata_pods),
        )

    def known_backup(self, dc: Mapping[str, Any], spec: DataClaySpec | None,
                     metadata_pods: list[dict[str, Any]]) -> BackupState | None:
        """The newest backup, asked of a ready metadata service at most every BACKUP_STATUS_INTERVAL
        (the last answer is kept meanwhile, and while it does not answer); None without
        spec.metadata.backup."""
        key = (dc["metadata"]["namespace"], dc["metadata"]["name"])
        if spec is None or spec.metadata.backup is None:
            self._backups.pop(key, None)
            return None
        return _asked_now_and_then(
            self._backups, key, BACKUP_STATUS_INTERVAL, any(pod_ready(p) for p in metadata_pods), None, "last backup",
            lambda: self.last_backup(*self.dataplane_address(dc), credentials=self.admin_credentials(dc)))

    def known_backend_ids(self, dc: Mapping[str, Any], backend_pods: list[dict[str, Any]]) -> dict[str, str]:
        """Backend ids of the pods, asked of the metadata service only when a ready pod's id is
        unknown and at most every BACKEND_IDS_INTERVAL (status never waits on the data plane)."""
        key = (dc["metadata"]["namespace"], dc["metadata"]["name"])
        ids = self._backend_ids.get(key, (None, {}))[1]
        unknown = any(pod_ready(p) and p["metadata"]["name"] not in ids for p in backend_pods)
        return _asked_now_and_then(
            self._backend_ids, key, BACKEND_IDS_INTERVAL, unknown, {}, "backend ids",
            lambda: self.backend_ids(*self.dataplane_address(dc), credentials=self.admin_credentials(dc)))

    def write_status(self, dc: dict[str, Any], spec: DataClaySpec | None, drain: DrainProgress | None = None,
                     error: tuple[Reason, str] | None = None, bypass: Bypass | None = None) -> dict[str, Any]:
        """Compute status from a fresh observation; patch it only if it changed."""
        previous = dc.get("status") or {}
        status = compute_status(self.observe(dc, spec, drain, error, bypass), previous, rfc3339(self.now()))
        patch = status_patch(previous, status)
        if patch is not None:
            meta = dc["metadata"]
            self.kube.merge_patch(dataclay_path(meta["namespace"], meta["name"], "status"), {"status": patch})
            dc["status"] = status
        return status
