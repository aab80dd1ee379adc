"""The project's image, built from its own Dockerfile (scripts/build-image.sh: only the base is
swapped, for one made from Debian packages), run the way the operator's pods run it: uid 10001, a
read-only root filesystem, every capability dropped, credentials mounted read-only, the data
directory a volume, the entry points the operator's StatefulSets use. A metadata service and a
backend container on the host's network serve a client in this process over mutual TLS; the
backend container killed (kill -9) and started again on its volume keeps every object."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dataclay import Client
from dataclay.security import create

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "tests" / "models"
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
RUN_AS = "10001"  # the Dockerfile's USER, the pods' runAsUser (dataclay_operator.children.RUN_AS)
TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serving(port: int) -> bool:
    """The plain-text health port answers SERVING (what the kubelet's probe asks)."""
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


@pytest.fixture(scope="module")
def image() -> str:
    """DC_IMAGE (scripts/test.sh builds it first), else built here."""
    if os.environ.get("DC_IMAGE"):
        return os.environ["DC_IMAGE"]
    done = subprocess.run([str(ROOT / "scripts" / "build-image.sh")], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


class Containers:
    def __init__(self, image: str, root: Path) -> None:
        self.image, self.root, self.names = image, root, []
        self.credentials = root / "credentials"  # what a pod mounts: its own files, no CA key
        made = create(root / "made", ["metadata", "backend:backend-0", "client"], hosts=["127.0.0.1"])
        self.credentials.mkdir()
        for path in made.iterdir():
            if path.suffix in (".pem", ".key") and path.name != "ca.key":
                shutil.copy(path, self.credentials / path.name)
        self.client_credentials = made

    def volume(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(exist_ok=True)
        return path

    def run(self, name: str, health_port: int, *command: str) -> str:
        for path in (self.credentials, *self.credentials.iterdir(), self.volume(name)):
            os.chown(path, int(RUN_AS), int(RUN_AS))
        container = f"dc-test-{name}-{uuid.uuid4().hex[:6]}"
        subprocess.run([
            *PODMAN, "run", "-d", "--name", container, "--network", "host", "--user", f"{RUN_AS}:{RUN_AS}",
            "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
            "-v", f"{self.credentials}:/var/run/dataclay/credentials:ro", "-v", f"{self.volume(name)}:/data",
            "-v", f"{MODELS}:/opt/dataclay/models:ro",
            "-e", "DC_CREDENTIALS=/var/run/dataclay/credentials", "-e", f"DC_HEALTH_PORT={health_port}",
            self.image, *command], check=True, capture_output=True, timeout=120)
        self.names.append(container)
        deadline = time.monotonic() + TIMEOUT
        while not serving(health_port):
            state = subprocess.run([*PODMAN, "inspect", "-f", "{{.State.Running}}", container],
                                   capture_output=True, text=True).stdout.strip()
            if state != "true" or time.monotonic() > deadline:
                logs = subprocess.run([*PODMAN, "logs", container], capture_output=True, text=True)
                raise AssertionError(f"{name} is not serving (running: {state}):\n{logs.stdout}{logs.stderr}")
            time.sleep(0.2)  # polling the probe with a deadline, as the kubelet does
        return container

    def kill(self, container: str) -> None:
        subprocess.run([*PODMAN, "kill", "--signal", "KILL", container], check=True, capture_output=True)
        subprocess.run([*PODMAN, "rm", "-f", container], check=True, capture_output=True)

    def close(self) -> None:
        for container in self.names:
            subprocess.run([*PODMAN, "rm", "-f", "-t", "0", container], capture_output=True)


@pytest.fixture
def containers(image: str, tmp_path: Path) -> Iterator[Containers]:
    running = Containers(image, tmp_path)
    try:
        yield running
    finally:
        running.close()


@pytest.mark.timeout(1800)  # a cold build (packages, the Debian base, the image) takes minutes
def test_the_image_serves_as_the_pods_run_it_and_a_killed_backend_keeps_its_objects(containers):
    from hr import Company, Employee

    metadata_port, backend_port = free_port(), free_port()
    containers.run("metadata", free_port(), "python", "-m", "dataclay_backend.metadata",
                   "--port", str(metadata_port), "--data-dir", "/data")
    backend = ["python", "-m", "dataclay_backend.backend", "--name", "backend-0", "--port", str(backend_port),
               "--data-dir", "/data", "--advertise-host", "127.0.0.1", "--metadata-host", "127.0.0.1",
               "--metadata-port", str(metadata_port)]
    backend_health = free_port()
    first = containers.run("backend-0", backend_health, *backend)
    with Client(host="127.0.0.1", port=metadata_port, credentials=containers.client_credentials) as client:
        [backend_id] = client.get_backends()
        company = Company("Contained", Employee("E", 10.0))
        company.make_persistent(alias="contained")
        assert company.employee.raise_salary(5.0) == 15.0
        containers.kill(first)  # no goodbye: the volume holds what was acknowledged
        containers.run("backend-0", backend_health, *backend)
        assert list(client.get_backends()) == [backend_id]  # the same id, from its volume
        again = Company.get_by_alias("contained")
        assert again.name == "Contained" and again.employee.raise_salary(1.0) == 16.0
    with pytest.raises(grpc.RpcError) as refused:  # and nothing is served without credentials
        with grpc.insecure_channel(f"127.0.0.1:{metadata_port}") as channel:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # no TLS handshake, no call
