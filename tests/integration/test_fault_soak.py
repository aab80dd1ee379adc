"""A randomized fault test (issue 9): client threads do every kind of operation while a chaos
thread kills (SIGKILL) and restarts backends and the metadata service and pauses (SIGSTOP) them;
then invariants are checked on the recorded history and on the stored state, once on the running
cluster, again after kill -9 and a restart of every process, and on the SQLite files at rest.

Seeded and bounded:

    DC_SOAK_SEED=7 DC_SOAK_SECONDS=300 ~/.cache/dataclay/venv/bin/python -m pytest \\
        tests/integration/test_fault_soak.py -s          # the long run, by hand

The default (DC_SOAK_SECONDS=25) is the CI run. The seed fixes each thread's sequence of
operations and the chaos schedule; the interleaving of threads and processes is not
reproducible, so a failure names the seed (rerun it a few times) and keeps the data directory,
its logs (DATA_DIR/logs/*.log) and the whole history (DATA_DIR/soak-history.json: every operation
with its start, end and outcome, the chaos schedule, in seconds since the module was imported).
Other knobs: DC_SOAK_CLIENTS (4).

What counts as an outcome: an acknowledged result, or a typed error (`DataClayException`). A typed
error is "outcome unknown" (CallOutcomeUnknownError and its DeadlineExceededError,
OutcomeUnknownError: the operation may or may not have happened) or definite (nothing happened,
README: "a failed request leaves memory exactly as stored"). An untyped exception, an operation
that does not end, and a broken invariant are failures.

The invariants, and why each is sound:
 1. Objects. Every object whose make_persistent was acknowledged is known to the directory, its
    alias names it, and the backend the directory names serves it (`where()` runs there). A
    make_persistent that failed with a definite error left nothing in the directory (it is one
    non-idempotent StoreObjects request, never re-sent); one of unknown outcome is all or
    nothing (if the directory has it, it is served).
 2. Counters (shared by all threads; `increment` is not idempotent, so never re-sent: a
    definite error means not applied). With the initial value 0, final - 0 counts the applied
    increments: at least the acknowledged ones, at most those plus the unknown ones. Each
    acknowledged increment returns how many increments are linearized up to it: values are
    unique, at least 1 + the acknowledged increments that ended before it started, at most the
    (not definitely failed) increments started before it ended; real-time order is kept (one
    that ended before another started returned less). Reads are bounded the same way.
 3. Registers (SoakBox written by attribute assignment from every thread). SetAttribute is
    idempotent and re-sent by the client, so a failed write may still have been applied: every
    write that was not acknowledged is a candidate for the final value. An acknowledged write
    is a candidate unless an acknowledged write started after it ended (that one is linearized
    after it). The initial value is a candidate only if no write was acknowledged. The final
    value must be a candidate: never a value nobody wrote, never an overwritten one.
    Versions (SoakBox "docs", versioned by their owner thread: new_version, a write on the
    version, consolidate_version or discard_version): the same rule over consolidations (not
    idempotent: a definite error wrote nothing), so a discarded version's value never shows; an
    acknowledged consolidated or discarded version is not live (directory, stored rows).
 4. References. Every child in every counter's list resolves (`ping()` answers its tag), and
    every child an acknowledged `spawn` returned is in its parent's list. Every reference inside
    every stored state (files, at rest) names an object the directory has as live.
 5. No orphan rows (files, after a final restart and a graceful stop): each backend stores
    exactly the live (not staged) objects the directory assigns to it, no object is stored live
    twice, retired versions are stored nowhere, no staged move or prepared consolidation is left,
    every alias names a live object.
 6. Moves (each object is moved only by the thread that created it; children only along with
    their parent, by the same thread): right after an acknowledged move the directory names the
    target and `where()` runs on the target, for the object and every id the move reported.
"""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import sys
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import grpc
import pytest

from dataclay import Client
from dataclay.exceptions import (
    BackendUnavailableError,
    CallOutcomeUnknownError,
    DataClayException,
    ObjectBusyError,
    ObjectMovingError,
    OutcomeUnknownError,
)
from dataclay.protocol import UNLIMITED_MESSAGES
from dataclay.protocol import dataclay_pb2 as pb
from dataclay.protocol import dataclay_pb2_grpc as rpc
from dataclay.serialization import loads
from dataclay_backend.cluster import LocalCluster
from dataclay.security import client_credentials, open_channel

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "models")]
from soak import SoakBox, SoakChild, SoakCounter  # noqa: E402  (tests/models)

SEED = int(os.environ.get("DC_SOAK_SEED", "9"))
SECONDS = float(os.environ.get("DC_SOAK_SECONDS", "25"))
CLIENTS = int(os.environ.get("DC_SOAK_CLIENTS", "4"))
BACKENDS = 3
CALL_TIMEOUT, METHOD_TIMEOUT, CONNECT_TIMEOUT = 2.0, 4.0, 1.0  # small: a paused server stalls nobody long
FINISH_GRACE = 45.0  # after the end, every operation in progress must have ended within this
SETTLE = 20.0  # how long the final checks wait for the cluster (or an object) to answer
RERUN = (f"DC_SOAK_SEED={SEED} DC_SOAK_SECONDS={SECONDS:g} ~/.cache/dataclay/venv/bin/python -m pytest "
         "tests/integration/test_fault_soak.py -s")

UNKNOWN = (CallOutcomeUnknownError, OutcomeUnknownError)  # DeadlineExceededError is a CallOutcomeUnknownError
TRANSIENT = (BackendUnavailableError, ObjectBusyError, ObjectMovingError, OutcomeUnknownError)  # "try again"

pytestmark = pytest.mark.timeout(2 * SECONDS + FINISH_GRACE + 300)
T0 = time.monotonic()  # times in the history and the chaos log are seconds since T0


# ====================================================================== the history


@dataclass
class Op:
    start: float
    end: float = float("inf")
    outcome: str = "pending"  # "ack", "unknown" (or still "pending": never ended), "failed" (definite)
    value: Any = None  # what an acknowledged call returned, or what a write wrote
    error: str = ""


@dataclass
class Tracked:
    kind: str  # "counter", "register" (attribute writes), "doc" (versions)
    obj: Any
    object_id: uuid.UUID
    owner: int  # the client thread that created it: the only one that moves (or versions) it
    alias: str | None
    initial: Any
    created: str = "pending"
    ops: list[Op] = field(default_factory=list)  # increments / writes / consolidations
    reads: list[Op] = field(default_factory=list)  # counters: value reads
    versions: list = field(default_factory=list)  # docs: [version id, token, steps...] per cycle

    @property
    def cls(self) -> type:
        return SoakCounter if self.kind == "counter" else SoakBox


class History:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: list[Tracked] = []
        self.violations: list[str] = []
        self.outcomes: Counter = Counter()  # (operation, outcome or error type) -> count
        self.spawned: list[tuple[Tracked, uuid.UUID, int]] = []  # acknowledged spawn: parent, child id, tag
        self.retired: list[uuid.UUID] = []  # versions whose consolidation/discard was acknowledged
        self.notes: Counter = Counter()

    def violate(self, message: str) -> None:
        with self.lock:
            self.violations.append(message)
        print(f"VIOLATION: {message}", flush=True)

    def usable(self, kind: str | None = None, owner: int | None = None) -> list[Tracked]:
        with self.lock:
            return [t for t in self.objects if t.created == "ack" and (kind is None or t.kind == kind)
                    and (owner is None or t.owner == owner)]

    def run(self, name: str, fn: Callable[[], Any], into: list[Op] | None = None, value: Any = None) -> Op:
        """Run one operation and record its outcome (appended to `into` before it starts, so an
        operation that never ends counts as pending: its outcome unknown)."""
        op = Op(time.monotonic(), value=value)
        if into is not None:
            into.append(op)
        try:
            result = fn()
        except UNKNOWN as exc:
            op.outcome, op.error = "unknown", type(exc).__name__
        except DataClayException as exc:
            op.outcome, op.error = "failed", type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - an untyped exception is a failure of its own
            op.outcome, op.error = "unknown", type(exc).__name__
            self.violate(f"{name}: untyped exception {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        else:
            op.outcome = "ack"
            if value is None:
                op.value = result
        op.end = time.monotonic()
        with self.lock:
            self.outcomes[(name, op.error or "ack")] += 1
        return op


# ====================================================================== client threads


class Worker(threading.Thread):
    def __init__(self, index: int, history: History, backends: list[uuid.UUID], stop: threading.Event) -> None:
        super().__init__(name=f"soak-client-{index}", daemon=True)  # daemon: a hung one cannot block pytest
        self.index, self.history, self.backends, self.stop = index, history, backends, stop
        self.rng = random.Random(f"{SEED}-client-{index}")
        self.serial = 0
        self.current = "starting"
        self.ops = 0

    def next_token(self) -> str:
        self.serial += 1
        return f"c{self.index}-{self.serial}"

    def run(self) -> None:
        actions = [(self.create, 3), (self.increment, 6), (self.spawn, 3), (self.write, 5), (self.read, 4),
                   (self.move, 3), (self.version, 3)]
        functions, weights = zip(*actions)
        try:
            for _ in range(3):
                self.create()
            while not self.stop.is_set():
                action = self.rng.choices(functions, weights)[0]
                self.current = action.__name__
                action()
                self.ops += 1
            self.current = "done"
        except BaseException:  # noqa: BLE001 - a bug of the test or the client library
            self.history.violate(f"client {self.index} crashed in {self.current}:\n{traceback.format_exc()}")
            self.current = "crashed"

    def pick(self, kind: str | None = None, own: bool = False) -> Tracked | None:
        candidates = self.history.usable(kind, self.index if own else None)
        return self.rng.choice(candidates) if candidates else None

    # ------------------------------------------------------------------ operations
    def create(self) -> None:
        kind = self.rng.choice(["counter", "register", "doc"])
        token = self.next_token()
        alias = f"soak-{token}" if self.rng.random() < 0.5 else None
        backend = self.rng.choice([*self.backends, None])
        obj = SoakCounter(0) if kind == "counter" else SoakBox(f"init-{token}")
        tracked = Tracked(kind, obj, obj.id, self.index, alias, 0 if kind == "counter" else f"init-{token}")
        op = self.history.run(f"make_persistent({kind})", lambda: obj.make_persistent(alias=alias, backend_id=backend))
        tracked.created = op.outcome
        with self.history.lock:
            self.history.objects.append(tracked)

    def increment(self) -> None:
        counter = self.pick("counter")
        if counter is not None:
            self.history.run("increment", counter.obj.increment, into=counter.ops)

    def spawn(self) -> None:
        counter = self.pick("counter")
        if counter is None:
            return
        tag = self.index * 10_000_000 + self.serial
        self.serial += 1
        if self.rng.random() < 0.5:
            op = self.history.run("spawn", lambda: counter.obj.spawn(tag))
            if op.outcome == "ack":
                with self.history.lock:
                    self.history.spawned.append((counter, op.value.id, tag))
        else:
            self.history.run("spawn_in_place", lambda: counter.obj.spawn_in_place(tag))

    def write(self) -> None:
        register = self.pick("register")
        if register is not None:
            token = self.next_token()
            self.history.run("write", lambda: setattr(register.obj, "value", token), into=register.ops, value=token)

    def read(self) -> None:
        tracked = self.pick()
        if tracked is None:
            return
        how = self.rng.choice(["by_id", "by_alias", "attribute", "where"])
        if how == "by_alias" and tracked.alias:
            op = self.history.run("get_by_alias", lambda: tracked.cls.get_by_alias(tracked.alias))
            if op.outcome == "ack" and op.value.id != tracked.object_id:
                self.history.violate(f"get_by_alias({tracked.alias!r}) returned {op.value.id}, not {tracked.object_id}")
        elif how in ("by_id", "by_alias"):
            op = self.history.run("get_by_id", lambda: tracked.cls.get_by_id(tracked.object_id))
            if op.outcome == "ack" and op.value.id != tracked.object_id:
                self.history.violate(f"get_by_id({tracked.object_id}) returned {op.value.id}")
        elif how == "attribute":
            self.history.run(f"read({tracked.kind})", lambda: tracked.obj.value,
                             into=tracked.reads if tracked.kind == "counter" else None)
        else:
            self.history.run("where", tracked.obj.where)

    def move(self) -> None:
        tracked = self.pick(own=True)
        if tracked is None:
            return
        here = tracked.obj._dc_backend_id
        target = self.rng.choice([b for b in self.backends if b != here] or self.backends)
        recursive = tracked.kind == "counter" and self.rng.random() < 0.6
        op = self.history.run("move", lambda: tracked.obj.move(target, recursive=recursive))
        if op.outcome != "ack":
            return
        result = op.value
        if result.objects == 0:
            self.history.notes["move acknowledged with objects=0"] += 1
        if tracked.object_id not in result.object_ids:
            self.history.notes["move acknowledged without the object in object_ids"] += 1
        # Invariant 6, at acknowledgement: nobody else moves these objects meanwhile.
        for object_id in [tracked.object_id, *[i for i in result.object_ids if i != tracked.object_id][:3]]:
            owner = locate_raw(self.history.metadata_address, object_id)
            if isinstance(owner, uuid.UUID) and owner != target:
                self.history.violate(f"move of {tracked.kind} {tracked.object_id} to {target} (recursive={recursive}) "
                                     f"acknowledged ({result!r}), but the directory names {owner} for {object_id}")
        where = self.history.run("where(after move)", tracked.obj.where)
        if where.outcome == "ack" and where.value != str(target):
            self.history.violate(f"move of {tracked.kind} {tracked.object_id} to {target} acknowledged ({result!r}), "
                                 f"but it is served by {where.value}")

    def version(self) -> None:
        doc = self.pick("doc", own=True)
        if doc is None:
            return
        destination = self.rng.choice([*self.backends, None])
        made = self.history.run("new_version", lambda: doc.obj.new_version(backend_id=destination))
        if made.outcome != "ack":
            return
        version = made.value
        version_id = version.id  # a consolidated version takes its original's id: remember its own
        token = self.next_token()
        written = self.history.run("write(version)", lambda: setattr(version, "value", token))
        if written.outcome == "ack" and self.rng.random() < 0.75:
            step = "consolidate"
            op = self.history.run("consolidate_version", version.consolidate_version, into=doc.ops, value=token)
        else:
            step = "discard"
            op = self.history.run("discard_version", version.discard_version)
        doc.versions.append([str(version_id), token, str(destination), round(made.start - T0, 3),
                             f"write:{written.error or 'ack'}", f"{step}:{op.error or 'ack'}",
                             round(op.start - T0, 3), round(op.end - T0, 3)])
        if op.outcome == "ack":
            with self.history.lock:
                self.history.retired.append(version_id)


# ====================================================================== chaos


class Chaos(threading.Thread):
    """Every 1-3 s: SIGKILL a backend and start it again (on its port or a new one), SIGKILL the
    metadata service and start it again on its port, or SIGSTOP a process for 0.5-2 s."""

    def __init__(self, cluster: LocalCluster, history: History, stop: threading.Event) -> None:
        super().__init__(name="soak-chaos", daemon=True)
        self.cluster, self.history, self.stop = cluster, history, stop
        self.rng = random.Random(f"{SEED}-chaos")
        self.events: list[str] = []
        self.started = time.monotonic()

    def log(self, text: str) -> None:
        self.events.append(f"{time.monotonic() - T0:7.2f}s {text}")

    def processes(self) -> dict[str, Any]:
        return {"metadata": self.cluster.metadata, **self.cluster.backends}

    def run(self) -> None:
        try:
            while not self.stop.wait(self.rng.uniform(1.0, 3.0)):
                self.check_alive()
                action = self.rng.choices(["kill_backend", "kill_metadata", "pause"], [3, 2, 4])[0]
                getattr(self, action)()
        except BaseException:  # noqa: BLE001 - e.g. a server that cannot start again
            self.history.violate(f"chaos failed:\n{traceback.format_exc()}")

    def check_alive(self) -> None:
        """A server that exited without being killed crashed: a failure (started again)."""
        for name, process in self.processes().items():
            if process.popen.poll() is not None:
                self.history.violate(f"{name} exited by itself (code {process.popen.returncode}); log "
                                     f"{process.log}:\n{process.log_tail(30)}")
                self.restart(name)

    def restart(self, name: str, same_port: bool = False) -> None:
        if name == "metadata":
            self.cluster.start_metadata()  # always on its port: cluster.port
        elif same_port:
            restart_on_same_port(self.cluster, name)
        else:
            self.cluster.start_backend(int(name.rsplit("-", 1)[1]))

    def kill_backend(self) -> None:
        name = self.rng.choice(sorted(self.cluster.backends))
        same_port = self.rng.random() < 0.5
        self.cluster.kill_backend(name)
        time.sleep(self.rng.uniform(0.0, 1.0))
        self.log(f"kill -9 {name}, restart {'on its port' if same_port else 'on a new port'}")
        self.restart(name, same_port)

    def kill_metadata(self) -> None:
        self.cluster.stop_process(self.cluster.metadata, kill=True)
        time.sleep(self.rng.uniform(0.0, 1.0))
        self.log("kill -9 metadata, restart on its port")
        self.restart("metadata")

    def pause(self) -> None:
        name = self.rng.choice(sorted(self.processes()))
        seconds = self.rng.uniform(0.5, 2.0)
        pid = self.processes()[name].popen.pid
        self.log(f"SIGSTOP {name} for {seconds:.1f}s")
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)


def restart_on_same_port(cluster: LocalCluster, name: str) -> None:
    """Start a killed backend again on the port it had (as a pod restarted in place)."""
    old = cluster.backends[name]
    args = ["--port", str(old.port), "--name", name, "--data-dir", str(cluster.data_dir / name),
            "--advertise-host", cluster.host, "--metadata-host", cluster.host, "--metadata-port", str(cluster.port)]
    for path in cluster.model_paths:
        args += ["--model-path", str(path)]
    cluster.backends[name] = cluster._spawn(name, "dataclay_backend.backend", args)


# ====================================================================== helpers for the checks


_channels: dict[str, grpc.Channel] = {}
_channels_lock = threading.Lock()


def locate_raw(address: str, object_id: uuid.UUID) -> uuid.UUID | str:
    """The directory's owner of object_id, asked directly (no client cache); else the status
    code's name ("NOT_FOUND": not registered or retired; "UNAVAILABLE": not answering)."""
    for _ in range(3):
        with _channels_lock:
            channel = _channels.get(address) or _channels.setdefault(
                address, open_channel(address, client_credentials(identity="backend:backend-0"), options=UNLIMITED_MESSAGES))
        try:
            entry = rpc.MetadataStub(channel).LocateObject(pb.ObjectRequest(object_id=object_id.bytes),
                                                           timeout=CALL_TIMEOUT)
        except ValueError:  # another client thread closed this shared channel just now (below): a fresh one
            continue
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                with _channels_lock:  # a fresh channel: no reconnect backoff after a restart
                    if _channels.get(address) is channel:
                        del _channels[address]
                        channel.close()
                return "UNAVAILABLE"
            return exc.code().name
        return uuid.UUID(bytes=entry.backend_id)
    return "UNAVAILABLE"


def settle(fn: Callable[[], Any], seconds: float = SETTLE) -> Any:
    """fn(), tried again on "try again" errors (the cluster is settling) until `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return fn()
        except TRANSIENT:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def settled_locate(address: str, object_id: uuid.UUID, seconds: float = SETTLE) -> uuid.UUID | str:
    deadline = time.monotonic() + seconds
    while True:
        answer = locate_raw(address, object_id)
        if isinstance(answer, uuid.UUID) or answer == "NOT_FOUND" or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def wait_until_answering(client: Client, cluster: LocalCluster, seconds: float = SETTLE) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if len(client.get_backends()) == BACKENDS and all(
                _stats_ok(f"{cluster.host}:{p.port}") for p in cluster.backends.values()
            ):
                return
        except DataClayException:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the cluster did not answer within {seconds:.0f}s after the chaos")
        time.sleep(0.2)


def _stats_ok(address: str) -> bool:
    """The backend answers, and has registered every new object it acknowledged (it does so
    just after replying; the checks below ask the directory directly)."""
    with open_channel(address, client_credentials(identity="backend:backend-0"), options=UNLIMITED_MESSAGES) as channel:
        try:
            rpc.BackendStub(channel).Stats(pb.Empty(), timeout=CALL_TIMEOUT)
            rpc.BackendStub(channel).FlushRegistrations(pb.FlushRegistrationsRequest(), timeout=CALL_TIMEOUT)
            return True
        except grpc.RpcError:
            return False


def _count_before(times: list[float], moment: float) -> int:
    import bisect

    return bisect.bisect_left(times, moment)


# ====================================================================== the invariants on the live cluster


def check_live(history: History, label: str) -> dict[Any, Any]:
    """Invariants 1-4 on the running cluster; returns what was observed (values, children)."""
    from concurrent.futures import ThreadPoolExecutor

    violate = lambda text: history.violate(f"[{label}] {text}")  # noqa: E731
    observed: dict[Any, Any] = {}
    with ThreadPoolExecutor(8) as pool:
        for result in pool.map(lambda tracked: check_object(history, tracked, violate), list(history.objects)):
            observed.update(result)
    address = history.metadata_address
    for version_id in history.retired:  # acknowledged consolidated/discarded versions are not live
        deadline = time.monotonic() + SETTLE  # a local consolidation tells the directory just after replying
        while isinstance(answer := settled_locate(address, version_id), uuid.UUID) and time.monotonic() < deadline:
            time.sleep(0.5)
        if isinstance(answer, uuid.UUID):
            violate(f"version {version_id} was consolidated or discarded (acknowledged), but the directory "
                    f"still has it live on {answer}")
    return observed


def check_object(history: History, tracked: Tracked, violate: Callable[[str], None]) -> dict[Any, Any]:
    what = f"{tracked.kind} {tracked.object_id} (created: {tracked.created}, alias {tracked.alias})"
    owner = settled_locate(history.metadata_address, tracked.object_id)
    if tracked.created == "failed":  # invariant 1: a definite failure stored nothing
        if isinstance(owner, uuid.UUID):
            violate(f"{what}: make_persistent failed with a definite error, yet the directory has it on {owner}")
        return {}
    if not isinstance(owner, uuid.UUID):
        if tracked.created == "ack":
            violate(f"{what}: acknowledged but not in the directory ({owner})")
        return {}
    try:  # invariant 1: the backend the directory names serves it
        served = settle(tracked.obj.where)
    except DataClayException as exc:
        violate(f"{what}: the directory names {owner}, but a call fails: {exc!r}")
        return {}
    if served != str(owner):  # a late server-side move (its client gave up) may have landed meanwhile
        again = settled_locate(history.metadata_address, tracked.object_id)
        if served != str(again):
            violate(f"{what}: the directory names {owner} (then {again}), but {served} serves it")
    if tracked.alias and tracked.created == "ack":
        try:
            found = settle(lambda: tracked.cls.get_by_alias(tracked.alias))
            if found.id != tracked.object_id:
                violate(f"{what}: its alias names {found.id}")
        except DataClayException as exc:
            violate(f"{what}: its alias does not resolve: {exc!r}")
    try:
        value = settle(lambda: tracked.obj.value)
    except DataClayException as exc:
        violate(f"{what}: its value cannot be read: {exc!r}")
        return {}
    observed: dict[Any, Any] = {tracked.object_id: value}
    if tracked.created != "ack":
        return observed
    if tracked.kind == "counter":
        check_counter(tracked, value, violate)
        observed[("children", tracked.object_id)] = check_children(history, tracked, violate)
    else:
        check_register(tracked, value, violate)
    return observed


def check_counter(tracked: Tracked, value: int, violate: Callable[[str], None]) -> None:
    """Invariant 2 (see the module docstring)."""
    acked = [op for op in tracked.ops if op.outcome == "ack"]
    maybe = [op for op in tracked.ops if op.outcome in ("unknown", "pending")]
    what = f"counter {tracked.object_id}"
    if not len(acked) <= value <= len(acked) + len(maybe):
        violate(f"{what}: final value {value}, but {len(acked)} increments were acknowledged and {len(maybe)} "
                f"have an unknown outcome (allowed {len(acked)}..{len(acked) + len(maybe)})")
    returned = Counter(op.value for op in acked)
    twice = sorted(v for v, n in returned.items() if n > 1)
    if twice:
        violate(f"{what}: values returned by more than one acknowledged increment: {twice[:10]}")
    if acked and not 1 <= min(returned) <= max(returned) <= value:
        violate(f"{what}: acknowledged increments returned {min(returned)}..{max(returned)}, final value {value}")
    acked_ends = sorted(op.end for op in acked)
    possible_starts = sorted(op.start for op in tracked.ops if op.outcome != "failed")
    for op in acked:  # bounded by what surely came before and what may have
        low = _count_before(acked_ends, op.start) + 1
        high = _count_before(possible_starts, op.end)
        if not low <= op.value <= high:
            violate(f"{what}: an increment returned {op.value}, but {low - 1} increments had been acknowledged "
                    f"before it started and only {high} (itself included) had started when it ended")
            break
    for op in tracked.reads:
        if op.outcome != "ack":
            continue
        low, high = _count_before(acked_ends, op.start), _count_before(possible_starts, op.end)
        if not low <= op.value <= high:
            violate(f"{what}: a read returned {op.value}, outside {low}..{high} (increments acknowledged before "
                    f"it started .. started before it ended)")
            break


def check_register(tracked: Tracked, value: str, violate: Callable[[str], None]) -> None:
    """Invariant 3 (registers: attribute writes; docs: consolidations)."""
    acked = [op for op in tracked.ops if op.outcome == "ack"]
    # A consolidation that failed definitely wrote nothing; a failed attribute write may have
    # been applied before a re-send failed (SetAttribute is idempotent, re-sent by the client).
    maybe_failed = tracked.kind == "register"
    candidates = set() if acked else {tracked.initial}
    for op in tracked.ops:
        if op.outcome == "ack":
            if not any(other.start > op.end for other in acked):
                candidates.add(op.value)
        elif op.outcome != "failed" or maybe_failed:
            candidates.add(op.value)
    if value not in candidates:
        written = {op.value: op.outcome for op in tracked.ops}
        history = "; ".join(f"{op.value}:{op.outcome}@{op.start:.2f}-{op.end:.2f}" for op in tracked.ops[-6:])
        violate(f"{tracked.kind} {tracked.object_id}: final value {value!r} is not a possible last write "
                f"(was it written? {written.get(value, 'never' if value != tracked.initial else 'initial')}); "
                f"candidates {sorted(candidates)[:8]}; last operations {history}")


def check_children(history: History, tracked: Tracked, violate: Callable[[str], None]) -> list[uuid.UUID]:
    """Invariant 4: every reference resolves; acknowledged spawns are kept."""
    what = f"counter {tracked.object_id}"
    try:
        children = settle(lambda: tracked.obj.children)
    except DataClayException as exc:
        violate(f"{what}: its children cannot be read: {exc!r}")
        return []
    ids = [child.id for child in children]
    for child in children:
        try:
            settle(child.ping)
        except DataClayException as exc:
            violate(f"{what}: child {child.id} does not resolve (dangling reference): {exc!r}")
    for parent, child_id, tag in history.spawned:
        if parent is tracked:
            if child_id not in ids:
                violate(f"{what}: the child {child_id} (tag {tag}) of an acknowledged spawn is not in its list")
            else:
                try:
                    got = settle(SoakChild.get_by_id(child_id).ping)
                    if got != tag:
                        violate(f"{what}: child {child_id} answers tag {got}, spawned with {tag}")
                except DataClayException as exc:
                    violate(f"{what}: the child {child_id} of an acknowledged spawn does not resolve: {exc!r}")
    return ids


# ====================================================================== the invariants on the files at rest


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def check_files(cluster: LocalCluster, history: History) -> dict[str, int]:
    """Invariants 4 (stored references) and 5 (no orphan rows), on the stopped cluster."""
    violate = lambda text: history.violate(f"[files] {text}")  # noqa: E731
    with _ro(cluster.data_dir / "metadata" / "metadata.sqlite") as db:
        names = {bytes(key): name for key, name in db.execute("SELECT id, name FROM backends")}
        live: dict[bytes, bytes] = {}
        retired: set[bytes] = set()
        for key, backend, is_retired in db.execute("SELECT id, backend_id, retired FROM objects"):
            if is_retired:
                retired.add(bytes(key))
            else:
                live[bytes(key)] = bytes(backend)
        aliases = list(db.execute("SELECT alias, object_id FROM aliases"))
    for alias, key in aliases:
        if bytes(key) not in live:
            violate(f"alias {alias!r} names {uuid.UUID(bytes=bytes(key))}, which is not a live object")
    for key, backend in live.items():
        if backend not in names:
            violate(f"object {uuid.UUID(bytes=key)} is assigned to an unknown backend {uuid.UUID(bytes=backend)}")
    stored_on: dict[bytes, list[str]] = defaultdict(list)
    dangling = 0
    for backend, name in names.items():
        path = cluster.data_dir / name / "objects.sqlite"
        if not path.exists():
            violate(f"{name} has no store at {path}")
            continue
        with _ro(path) as db:
            rows = list(db.execute("SELECT id, staged, state, file FROM objects"))
            prepared = db.execute("SELECT COUNT(*) FROM staged_writes").fetchone()[0]
        if prepared:
            violate(f"{name}: {prepared} prepared consolidation writes left after a restart and a clean stop")
        staged = [r for r in rows if r[1] is not None]
        if staged:
            violate(f"{name}: {len(staged)} staged (incoming move) rows left after a restart and a clean stop")
        stored = {bytes(r[0]) for r in rows if r[1] is None}
        assigned = {key for key, owner in live.items() if owner == backend}
        for key in sorted(stored - assigned):
            state = ("retired version" if key in retired else
                     f"assigned to {names.get(live[key], '?')}" if key in live else "not in the directory")
            violate(f"{name} stores {uuid.UUID(bytes=key)}, which the directory does not assign to it ({state}): "
                    "an orphan row")
        for key in sorted(assigned - stored):
            violate(f"the directory assigns {uuid.UUID(bytes=key)} to {name}, which does not store it")
        for key in stored:
            stored_on[key].append(name)
        for key, staged_move, state, file in rows:  # every stored reference names a live object
            if staged_move is not None:
                continue
            if file is not None:
                state = (cluster.data_dir / name / "blobs" / file).read_bytes()
            refs: list[bytes] = []
            loads(bytes(state), lambda ref: refs.append(ref.object_id))
            for ref in refs:
                if ref not in live:
                    dangling += 1
                    violate(f"{name}: the stored state of {uuid.UUID(bytes=bytes(key))} references "
                            f"{uuid.UUID(bytes=ref)}, which is {'retired' if ref in retired else 'not registered'}: "
                            "a dangling reference")
    for key, where in stored_on.items():
        if len(where) > 1:
            violate(f"{uuid.UUID(bytes=key)} is stored live on {where}")
    for version_id in history.retired:
        if version_id.bytes in live:
            violate(f"version {version_id} was consolidated or discarded (acknowledged) but is live in the directory")
    for tracked in history.objects:
        if tracked.created == "ack" and tracked.object_id.bytes not in live:
            violate(f"acknowledged {tracked.kind} {tracked.object_id} is not live in the directory")
    return {"live objects": len(live), "retired versions": len(retired), "aliases": len(aliases)}


def dump_history(history: History, chaos_events: list[str], path: Path) -> None:
    """The whole history, for a post-mortem (times in seconds since T0, as in the chaos log)."""
    import json

    def op(o: Op) -> list:
        return [round(o.start - T0, 3), None if o.end == float("inf") else round(o.end - T0, 3), o.outcome,
                o.value if isinstance(o.value, (int, str)) else repr(o.value), o.error]

    data = {
        "seed": SEED, "seconds": SECONDS, "chaos": chaos_events, "violations": history.violations,
        "objects": [{"kind": t.kind, "id": str(t.object_id), "owner": t.owner, "alias": t.alias, "initial": t.initial,
                     "created": t.created, "ops": [op(o) for o in t.ops], "reads": [op(o) for o in t.reads],
                     "versions": t.versions} for t in history.objects],
        "spawned": [[str(p.object_id), str(c), tag] for p, c, tag in history.spawned],
        "retired": [str(v) for v in history.retired],
    }
    path.write_text(json.dumps(data, indent=1))


# ====================================================================== the test


def test_fault_soak(make_cluster, monkeypatch):
    print(f"\nfault soak: seed {SEED}, {SECONDS:g}s, {CLIENTS} clients, {BACKENDS} backends; rerun: {RERUN}")
    started = time.monotonic()
    # The servers' own bounded waits, shorter than SETTLE (defaults 60 s): a lock held by a
    # request of the run, a prepared consolidation whose coordinator was killed.
    monkeypatch.setenv("DC_LOCK_TIMEOUT", "5")
    monkeypatch.setenv("DC_CONSOLIDATION_TIMEOUT", "5")
    cluster = make_cluster(backends=BACKENDS)
    history = History()
    history.metadata_address = f"{cluster.host}:{cluster.port}"
    report: list[str] = []
    phases: list[str] = []
    chaos: Chaos | None = None

    def phase(name: str) -> None:
        phases.append(f"{name} {time.monotonic() - T0:.1f}s")

    try:
        with Client(host="127.0.0.1", port=cluster.port, timeout=CALL_TIMEOUT, method_timeout=METHOD_TIMEOUT,
                    connect_timeout=CONNECT_TIMEOUT) as client:
            backends = list(client.get_backends())
            stop_clients, stop_chaos = threading.Event(), threading.Event()
            workers = [Worker(i, history, backends, stop_clients) for i in range(CLIENTS)]
            chaos = Chaos(cluster, history, stop_chaos)
            phase("clients")
            for worker in workers:
                worker.start()
            time.sleep(1.0)  # a few objects before the first fault
            chaos.start()
            time.sleep(SECONDS)

            stop_chaos.set()
            chaos.join(90)
            assert not chaos.is_alive(), "the chaos thread did not end (a server did not start in time)"
            for process in chaos.processes().values():
                if process.popen.poll() is None:
                    os.kill(process.popen.pid, signal.SIGCONT)
            chaos.check_alive()
            phase("chaos stopped")
            stop_clients.set()
            finish_by = time.monotonic() + FINISH_GRACE
            for worker in workers:
                worker.join(max(finish_by - time.monotonic(), 0))
            frames = sys._current_frames()
            for worker in workers:
                if worker.is_alive():
                    stack = "".join(traceback.format_stack(frames.get(worker.ident)))
                    history.violate(f"client {worker.index} did not finish its operation ({worker.current}) within "
                                    f"{FINISH_GRACE:.0f}s of the end:\n{stack}")
            phase("clients stopped")
            report.append(f"chaos: {len(chaos.events)} faults: " + "; ".join(e.split('s ', 1)[1] for e in chaos.events))
            report.append(f"client operations: {sum(w.ops for w in workers)}")

            wait_until_answering(client, cluster)
            phase("answering")
            before = check_live(history, "after chaos")
            phase("checked")

            # Every process killed (-9) and started again: what survived?
            for process in [*cluster.backends.values(), cluster.metadata]:
                cluster.stop_process(process, kill=True)
            cluster.start_metadata()
            for index in range(BACKENDS):
                cluster.start_backend(index)
            wait_until_answering(client, cluster)
            phase("restarted")
            after = check_live(history, "after kill -9 of everything")
            phase("checked again")
            compare_across_restart(history, before, after)
        cluster.stop()
        stats = check_files(cluster, history)
        phase("files checked")
        report.append(f"stored: {stats}")
    finally:
        with _channels_lock:
            for channel in _channels.values():
                channel.close()
            _channels.clear()
        for process in [cluster.metadata, *cluster.backends.values()]:
            if process is not None and process.popen.poll() is None:
                os.kill(process.popen.pid, signal.SIGCONT)
        outcomes = defaultdict(list)
        for (name, outcome), count in sorted(history.outcomes.items()):
            outcomes[name].append(f"{outcome}={count}")
        report += [f"  {name}: {', '.join(values)}" for name, values in outcomes.items()]
        if history.notes:
            report.append(f"notes: {dict(history.notes)}")
        report.append(f"phases (since T0): {', '.join(phases)}; total {time.monotonic() - started:.1f}s")
        report.append(f"history: {cluster.data_dir / 'soak-history.json'}")
        dump_history(history, chaos.events if chaos else [], cluster.data_dir / "soak-history.json")
        print("\n".join(report))
    assert not history.violations, (
        f"{len(history.violations)} violations (seed {SEED}; rerun: {RERUN}; data and logs: {cluster.data_dir}):\n"
        + "\n".join(history.violations[:30])
    )


def compare_across_restart(history: History, before: dict[Any, Any], after: dict[Any, Any]) -> None:
    """What was read just before kill -9 of every process is read after it. Only for objects
    with no operation of unknown outcome (such an operation may still take effect late, e.g. a
    call that waited out the client's deadline); the others were checked against their
    candidates on both sides."""
    by_id = {t.object_id: t for t in history.objects}
    for key, value in before.items():
        object_id = key[1] if isinstance(key, tuple) else key
        tracked = by_id[object_id]
        if key not in after or after[key] == value:
            continue
        unknown = [o for o in tracked.ops if o.outcome in ("unknown", "pending")]
        if unknown and not isinstance(key, tuple):
            history.notes["value changed across the final restart (an operation of unknown outcome)"] += 1
            continue
        last = "; ".join(f"{o.value}:{o.outcome}{'/' + o.error if o.error else ''}@{o.start - T0:.2f}-{o.end - T0:.2f}"
                         for o in tracked.ops[-4:])
        history.violate(f"{tracked.kind} {object_id}: read {value!r} before the final kill -9 of every process and "
                        f"{after[key]!r} after (last operations: {last})")


def test_the_checkers_find_what_they_look_for():
    """The history checks themselves (no cluster): they accept linearizable histories and
    reject the violations they are there for."""
    found: list[str] = []

    def counter(*ops: tuple[float, float, str, Any], reads: tuple = ()) -> Tracked:
        tracked = Tracked("counter", None, uuid.uuid4(), 0, None, 0, "ack")
        tracked.ops = [Op(start, end, outcome, value) for start, end, outcome, value in ops]
        tracked.reads = [Op(start, end, "ack", value) for start, end, value in reads]
        return tracked

    def register(*ops: tuple[float, float, str, Any], kind: str = "register") -> Tracked:
        tracked = Tracked(kind, None, uuid.uuid4(), 0, None, "init", "ack")
        tracked.ops = [Op(start, end, outcome, value) for start, end, outcome, value in ops]
        return tracked

    def flags(check: Callable, tracked: Tracked, value: Any) -> bool:
        found.clear()
        check(tracked, value, found.append)
        return bool(found)

    concurrent = counter((0, 2, "ack", 2), (1, 3, "ack", 1), (4, 5, "unknown", None))
    assert not flags(check_counter, concurrent, 2) and not flags(check_counter, concurrent, 3)
    assert flags(check_counter, concurrent, 1)  # an acknowledged increment lost
    assert flags(check_counter, concurrent, 4)  # more than acknowledged + unknown
    assert flags(check_counter, counter((0, 1, "ack", 1), (2, 3, "ack", 1)), 2)  # one value returned twice
    assert flags(check_counter, counter((0, 1, "ack", 2), (2, 3, "ack", 1)), 2)  # real-time order broken
    assert flags(check_counter, counter((0, 1, "ack", 1), (2, 3, "failed", None)), 2)  # a failed one applied
    assert flags(check_counter, counter((0, 1, "ack", 1), (2, 3, "ack", 2), reads=((1.5, 1.7, 0),)), 2)  # stale read

    writes = register((0, 1, "ack", "a"), (2, 3, "ack", "b"), (2.5, 4, "ack", "c"))
    assert not flags(check_register, writes, "b") and not flags(check_register, writes, "c")
    assert flags(check_register, writes, "a")  # overwritten by a write that started after it ended
    assert flags(check_register, writes, "init") and flags(check_register, writes, "z")
    assert not flags(check_register, register((0, 1, "ack", "a"), (2, 3, "failed", "b")), "b")  # re-sent: maybe
    docs = register((0, 1, "ack", "a"), (2, 3, "failed", "b"), (4, 5, "unknown", "c"), kind="doc")
    assert not flags(check_register, docs, "a") and not flags(check_register, docs, "c")
    assert flags(check_register, docs, "b")  # a consolidation that failed definitely wrote nothing
    assert not flags(check_register, register(kind="doc"), "init")


def test_a_call_never_stores_the_unregistered_child_of_another_call(make_cluster, monkeypatch):
    """Found by the soak (seed 2): R1 = parent.spawn() creates a child and waits to register it
    (the metadata service is stopped); R2 = parent.increment() meanwhile stores the parent, whose
    list already holds R1's child; R1 then fails. The stored parent references a child that was
    never registered (nor stored): a dangling reference, on disk, that survives restarts."""
    monkeypatch.setenv("DC_LOCK_TIMEOUT", "3")  # R2 waits for R1 (two-phase locking) this long
    cluster = make_cluster(backends=1)
    with Client(host="127.0.0.1", port=cluster.port, timeout=30, method_timeout=30):
        parent = SoakCounter(0)
        parent.make_persistent()
        assert parent.increment() == 1  # warm: the backend knows the metadata service
        outcome: dict[str, Any] = {}

        def spawn() -> None:
            try:
                outcome["child"] = parent.spawn(7)
            except DataClayException as exc:
                outcome["error"] = exc

        os.kill(cluster.metadata.popen.pid, signal.SIGSTOP)  # R1's registration hangs
        first = threading.Thread(target=spawn)
        first.start()
        time.sleep(0.5)  # lets R1 reach its registration first; if R2 went first the test only passes trivially
        try:
            parent.increment()  # R2, acknowledged or not
        except DataClayException:
            pass
        cluster.stop_process(cluster.metadata, kill=True)  # R1 fails
        first.join(60)
        cluster.start_metadata()
        for child in parent.children:
            assert child.ping() in (7,), f"dangling child {child.id} (R1: {outcome})"
        cluster.restart_backend("backend-0")
        for child in parent.children:
            assert child.ping() == 7
