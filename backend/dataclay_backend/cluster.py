"""The embedded default: a metadata service and N backends as local processes on loopback.

Used by `dataclay up`, `dataclay demo` and the tests. Each process reports readiness (its port,
or one line saying why it cannot start) on an inherited pipe, so starting waits for exactly that,
with no polling. Every process logs to DATA_DIR/logs/NAME.log; an unexpected start failure quotes
the end of that log.

One cluster per data directory: a running cluster holds an exclusive lock on
DATA_DIR/cluster.lock (flock: the kernel lets go of it when the process dies, however it dies).
No server outlives the cluster's process: each holds the read end of a pipe whose write end only
this process has, and kills itself (SIGKILL, which it is built to survive) when the pipe ends.
Backends registered in the data directory that this cluster does not start are marked draining
(not offered to `make_persistent`, no new objects), which clears when one starts again.

Secure by default: the cluster makes (or completes) a credentials directory (DATA_DIR/credentials,
or `credentials`, or DC_CREDENTIALS; dataclay.security) and its servers serve mutual TLS only;
`insecure=True` (DC_INSECURE=1) starts them with --insecure instead.
"""
from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dataclay.security import Credentials

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class ClusterStartError(RuntimeError):
    pass


@dataclass
class AbsentBackend:
    """A backend registered in the data directory that this cluster did not start."""
    name: str
    objects: int  # how many objects it owns (unreachable until it starts again)


def lock_data_dir(data_dir: Path) -> int:
    """Take DATA_DIR/cluster.lock for this process (exclusive, not inherited by the servers);
    ClusterStartError naming the holder's pid if another cluster has it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "cluster.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ClusterStartError(f"data directory {data_dir} is in use by another cluster (process {holder}); "
                                "stop it first, or use another --data-dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path
    port: int = 0

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class LocalCluster:
    def __init__(
        self,
        data_dir: Path,
        backends: int = 3,
        port: int = 16587,
        model_paths: list[Path] | None = None,
        durability: str = "process",
        memory_limit: str | None = None,
        host: str = "127.0.0.1",
        credentials: Path | None = None,
        insecure: bool | None = None,
        metadata_args: list[str] | None = None,
    ) -> None:
        if backends < 1:
            raise ValueError("a cluster needs at least one backend")
        self.data_dir = Path(data_dir).resolve()
        self.backend_count = backends
        self.port = port
        self.model_paths = [Path(p).resolve() for p in (model_paths or [])]
        self.durability = durability
        self.memory_limit = memory_limit
        self.host = host
        from dataclay.security import insecure_requested

        self.insecure = insecure_requested() if insecure is None else insecure
        self.credentials_dir: Path | None = None if self.insecure else Path(
            credentials or os.environ.get("DC_CREDENTIALS") or self.data_dir / "credentials").resolve()
        self.metadata_args = list(metadata_args or [])  # more flags for the metadata service (backups, restore)
        self.metadata: Process | None = None
        self.backends: dict[str, Process] = {}
        self.absent: list[AbsentBackend] = []  # set by start()
        self._lock_fd: int | None = None
        self._parent_pipe: tuple[int, int] | None = None  # (read end for the servers, write end kept here)

    # ------------------------------------------------------------------ processes
    def _spawn(self, name: str, module: str, args: list[str], extra_env: dict[str, str] | None = None) -> Process:
        log_path = self.data_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._parent_pipe is None:
            self._parent_pipe = os.pipe()  # both ends close-on-exec: only the servers get the read end
        parent_fd = self._parent_pipe[0]
        read_end, write_end = os.pipe()
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(extra_env or {}))
        for variable in ("DC_CREDENTIALS", "DC_INSECURE"):  # the flags below say it
            env.pop(variable, None)
        security = ["--insecure"] if self.credentials_dir is None else ["--credentials", str(self.credentials_dir)]
        command = [sys.executable, "-m", module, *args, "--ready-fd", str(write_end), "--parent-fd", str(parent_fd),
                   "--durability", self.durability, "--listen", self.host, *security]
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     pass_fds=(write_end, parent_fd), env=env, start_new_session=True)
        os.close(write_end)
        process = Process(name, popen, log_path)
        process.port = self._await_ready(process, read_end)
        return process

    def _await_ready(self, process: Process, read_end: int) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        data = b""
        try:
            while not data.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                ready, _, _ = select.select([read_end], [], [], max(remaining, 0))
                if not ready:
                    raise ClusterStartError(f"{process.name} did not become ready in {START_TIMEOUT:.0f}s; "
                                            f"log {process.log}:\n{process.log_tail()}")
                chunk = os.read(read_end, 64)
                if not chunk:
                    process.popen.wait(STOP_TIMEOUT)
                    raise ClusterStartError(f"{process.name} exited with code {process.popen.returncode} before "
                                            f"it was ready; log {process.log}:\n{process.log_tail()}")
                data += chunk
        finally:
            os.close(read_end)
        text = data.decode(errors="replace").strip()
        if text.startswith("error: "):  # it cannot start, and says why in one line
            process.popen.wait(STOP_TIMEOUT)
            raise ClusterStartError(f"{process.name} cannot start: {text[len('error: '):]} (log {process.log})")
        return int(text)

    def _ensure_credentials(self, *identities: str) -> None:
        if self.credentials_dir is not None:
            from dataclay.security import create

            create(self.credentials_dir, ["metadata", "admin", "client", *identities], hosts=[self.host])

    def client_credentials(self, identity: str = "client") -> "Credentials | None":
        """Credentials of a client (or of `identity`: 'admin', 'backend:NAME') of this cluster;
        None if it runs --insecure."""
        if self.credentials_dir is None:
            return None
        from dataclay.security import Credentials

        self._ensure_credentials(identity)
        return Credentials.load(self.credentials_dir, identity)

    def start_metadata(self) -> None:
        self._ensure_credentials()
        self.metadata = self._spawn(
            "metadata", "dataclay_backend.metadata",
            ["--port", str(self.port), "--data-dir", str(self.data_dir / "metadata"), *self.metadata_args],
        )
        self.port = self.metadata.port

    def start_backend(self, index: int, env: dict[str, str] | None = None) -> Process:
        """Start backend-INDEX (again); `env` adds variables, e.g. a test fault point."""
        name = f"backend-{index}"
        self._ensure_credentials(f"backend:{name}")
        args = ["--port", "0", "--name", name, "--data-dir", str(self.data_dir / name),
                "--advertise-host", self.host, "--metadata-host", self.host, "--metadata-port", str(self.port)]
        for path in self.model_paths:
            args += ["--model-path", str(path)]
        if self.memory_limit:
            args += ["--memory-limit", self.memory_limit]
        self.backends[name] = self._spawn(name, "dataclay_backend.backend", args, env)
        return self.backends[name]

    def start(self) -> "LocalCluster":
        if self._lock_fd is None:
            self._lock_fd = lock_data_dir(self.data_dir)
        try:
            self.start_metadata()
            for index in range(self.backend_count):
                self.start_backend(index)
            self.absent = self._retire_absent()
        except BaseException:
            self.stop()
            raise
        return self

    def _retire_absent(self) -> list[AbsentBackend]:
        """Draining marks follow the backends we start: the others registered in this data
        directory are marked draining (`get_backends()` and `make_persistent` skip them, their
        objects stay theirs, unreachable until they start again), the started ones are not (a
        mark outlives a restart; starting them with `up` is asking for them). Returns the others."""
        from dataclay.protocol import UNLIMITED_MESSAGES
        from dataclay.protocol import dataclay_pb2 as pb
        from dataclay.protocol import dataclay_pb2_grpc as rpc
        from dataclay.protocol.pages import owned_objects
        from dataclay.security import open_channel

        absent = []

        with open_channel(f"{self.host}:{self.port}", self.client_credentials("admin"),
                          options=UNLIMITED_MESSAGES) as channel:
            stub = rpc.MetadataStub(channel)
            for info in stub.ListBackends(pb.Empty(), timeout=START_TIMEOUT).backends:
                started = info.name in self.backends
                if info.draining == started:
                    stub.SetDraining(pb.BackendRequest(backend_id=info.backend_id, draining=not started),
                                     timeout=START_TIMEOUT)
                if started:
                    continue
                owned = owned_objects(lambda page: stub.ListOwnedObjects(page, timeout=START_TIMEOUT),
                                      info.backend_id)
                absent.append(AbsentBackend(info.name, len(owned)))
        return absent

    # ------------------------------------------------------------------ stopping
    def stop_process(self, process: Process, kill: bool = False) -> None:
        """SIGTERM (graceful) or SIGKILL, then wait; SIGKILL if it does not stop in time."""
        if process.popen.poll() is None:
            process.popen.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self._wait(process)

    @staticmethod
    def _wait(process: Process) -> None:
        try:
            process.popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait()

    def kill_backend(self, name: str) -> None:
        self.stop_process(self.backends[name], kill=True)

    def restart_backend(self, name: str) -> Process:
        self.stop_process(self.backends[name])
        return self.start_backend(int(name.rsplit("-", 1)[1]))

    def stop(self) -> None:
        for process in self.backends.values():  # all at once, then wait: one SIGTERM each
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
        for process in self.backends.values():
            self._wait(process)
        if self.metadata is not None:
            self.stop_process(self.metadata)
        if self._parent_pipe is not None:  # every server has stopped: nobody reads it any more
            for fd in self._parent_pipe:
                os.close(fd)
            self._parent_pipe = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # lets go of the lock
            self._lock_fd = None

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
