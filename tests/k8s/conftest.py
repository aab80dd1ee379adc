"""A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) for tests.

The test machines have no docker/kind and no release downloads, so scripts/build-k8s-tools.sh
builds the binaries from Go modules and this fixture runs them as plain processes on loopback
ports. There is no scheduler and no kubelet: Pods stay Pending unbound, and tests that need
running Pods call mark_pods_ready() to play the kubelet.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS = REPO_ROOT / "tests" / "models"  # the test model, imported by the drain test
if str(MODELS) not in sys.path:
    sys.path.insert(0, str(MODELS))
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-k8s-tools.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "helm")
START_TIMEOUT = float(os.environ.get("DC_K8S_START_TIMEOUT", "120"))
STOP_TIMEOUT = 15.0
SERVICE_CIDR = "10.0.0.0/24"  # first IP 10.0.0.1 is the in-cluster "kubernetes" Service
T = TypeVar("T")


@dataclass(frozen=True)
class KubeCluster:
    """Handle to the running control plane, as tests and subprocesses (helm, operator) need it."""

    kubeconfig: Path
    server: str
    bin_dir: Path

    def env(self) -> dict[str, str]:
        """os.environ copy with KUBECONFIG set and bin_dir first on PATH (so `helm` resolves)."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def api_client(self) -> Any:
        """A new kubernetes.client.ApiClient authenticated as the cluster admin."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))


class ControlPlaneError(RuntimeError):
    """A control-plane process failed to start; the message carries its log tail."""


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- last {lines} lines of {self.log.name} ---\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it outlives STOP_TIMEOUT."""
        if self.popen.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.popen.wait(timeout=STOP_TIMEOUT)
                return
            except subprocess.TimeoutExpired:
                continue


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll check() until it returns a truthy value; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)  # polling interval of a deadline-bounded loop, not synchronisation


def mark_pods_ready(core_v1_api: Any, namespace: str, label_selector: str, pod_ip: str | None = None) -> list[str]:
    """Play the (absent) kubelet: set matching Pods Running and Ready through the status subresource.

    Controllers (StatefulSet OrderedReady, readyReplicas, endpoints) only look at Pod status, so
    this lets tests drive them without containers. Returns the names of the Pods patched.
    """
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    patched: list[str] = []
    for pod in core_v1_api.list_namespaced_pod(namespace, label_selector=label_selector).items:
        if pod.metadata.deletion_timestamp is not None:
            continue
        status: dict[str, Any] = {
            "phase": "Running",
            "startTime": now,
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": now}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "containerStatuses": [
                {"name": c.name, "image": c.image, "imageID": "", "ready": True, "started": True,
                 "restartCount": 0, "state": {"running": {"startedAt": now}}}
                for c in pod.spec.containers
            ],
        }
        if pod_ip is not None:
            status.update(podIP=pod_ip, podIPs=[{"ip": pod_ip}])
        core_v1_api.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": status})
        patched.append(pod.metadata.name)
    return patched


def _find_bin_dir() -> tuple[Path | None, str]:
    """The binaries' directory (env DC_K8S_BIN, else the build script's cache), or why not."""
    if os.environ.get("DC_K8S_BIN"):
        bin_dir = Path(os.environ["DC_K8S_BIN"])
    else:
        res = subprocess.run([str(BUILD_SCRIPT), "--print-bin-dir"], capture_output=True, text=True)
        if res.returncode != 0 or not res.stdout.strip():
            return None, res.stderr.strip() or f"{BUILD_SCRIPT} --print-bin-dir failed"
        bin_dir = Path(res.stdout.strip().splitlines()[-1])
    missing = [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]
    return (None, f"missing {', '.join(missing)} in {bin_dir}") if missing else (bin_dir, "")


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together so they differ)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


_OPENSSL_CNF = """
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = IP:127.0.0.1, IP:10.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def _make_pki(pki: Path) -> None:
    """CA, apiserver serving cert, admin (system:masters) and controller-manager client certs,
    and the service-account signing key pair, via the openssl CLI (no Python crypto dependency)."""
    pki.mkdir()
    cnf = pki / "openssl.cnf"
    cnf.write_text(_OPENSSL_CNF)

    def openssl(*args: str) -> None:
        res = subprocess.run(["openssl", *args], cwd=pki, capture_output=True, text=True)
        if res.returncode != 0:
            raise ControlPlaneError(f"openssl {' '.join(args)} failed:\n{res.stderr}")

    def cert(name: str, subj: str, ext: str, *signer: str) -> None:
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", subj,
                "-config", str(cnf), "-extensions", ext, *signer)

    cert("ca", "/CN=dataclay-test-ca", "ca")
    ca = ("-CA", "ca.crt", "-CAkey", "ca.key")
    cert("apiserver", "/CN=kube-apiserver", "server", *ca)
    cert("admin", "/O=system:masters/CN=dataclay-test-admin", "client", *ca)
    cert("kcm", "/CN=system:kube-controller-manager", "client", *ca)
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key")
    openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub")


def _write_kubeconfig(path: Path, server: str, pki: Path, user: str) -> None:
    """Self-contained kubeconfig (JSON is valid YAML) with embedded CA and client cert."""
    b64 = lambda name: base64.b64encode((pki / name).read_bytes()).decode()  # noqa: E731
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "dataclay-test", "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(f"{user}.crt"), "client-key-data": b64(f"{user}.key")}}],
        "contexts": [{"name": "dataclay-test", "context": {"cluster": "dataclay-test", "user": user}}],
        "current-context": "dataclay-test",
    }
    path.write_text(json.dumps(doc, indent=2))
    path.chmod(0o600)


def _die_with_parent() -> None:
    """Runs in the child: on Linux, get SIGKILLed if pytest dies without teardown (e.g. `timeout`)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _start(name: str, argv: list[str], logs: Path, procs: list[_Proc]) -> _Proc:
    """Start argv in its own process group (so teardown reaches any children), logging to a file."""
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, preexec_fn=_die_with_parent)
    proc = _Proc(name, popen, log)
    procs.append(proc)
    return proc


def _wait_healthy(proc: _Proc, url: str, ctx: ssl.SSLContext | None, deadline: float) -> None:
    """Poll a health endpoint until 200; fail fast with the log tail if the process exits."""
    last = "no answer yet"
    while True:
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read().decode(errors='replace')[-2000:]}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise ControlPlaneError(f"{proc.name} not healthy at {url} within {START_TIMEOUT:.0f}s: {last}\n{proc.tail()}")
        try:  # the poll interval doubles as exit detection
            rc = proc.popen.wait(timeout=0.25)
            raise ControlPlaneError(f"{proc.name} exited with code {rc} during startup\n{proc.tail()}")
        except subprocess.TimeoutExpired:
            pass


@dataclass(frozen=True)
class Placement:
    """Where the control plane runs. Defaults: plain processes on free loopback ports, no
    in-cluster endpoint. tests/node runs the same processes inside a network namespace: `wrap`
    prefixes each command (nsenter), `ports` are fixed inside it, `reach` maps such a port to one
    this process can connect to (a forwarder), `advertise` is an address pods can reach."""

    wrap: tuple[str, ...] = ()
    ports: tuple[int, int, int, int] | None = None  # etcd client, etcd peer, API server, kcm
    reach: Callable[[int], int] = lambda port: port
    advertise: str | None = None  # None: loopback, and no "kubernetes" Service endpoint
    apiserver_args: tuple[str, ...] = ()
    kcm_args: tuple[str, ...] = ()


def start_control_plane(bin_dir: Path, root: Path, procs: list[_Proc], where: Placement = Placement()) -> KubeCluster:
    """etcd + kube-apiserver (RBAC, service accounts) + kube-controller-manager (all controllers),
    started into `procs` (the caller stops them); PKI, data and logs under `root`."""
    pki, logs = root / "pki", root / "logs"
    logs.mkdir(exist_ok=True)
    _make_pki(pki)
    etcd_port, peer_port, api_port, kcm_port = where.ports or _free_ports(4)
    deadline = time.monotonic() + START_TIMEOUT
    wrap = list(where.wrap)

    etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
    etcd = _start("etcd", [
        *wrap, str(bin_dir / "etcd"), "--name=dc-test", f"--data-dir={root / 'etcd'}",
        f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=dc-test={peer_url}", "--unsafe-no-fsync", "--log-level=warn",
    ], logs, procs)
    _wait_healthy(etcd, f"http://127.0.0.1:{where.reach(etcd_port)}/readyz", None, deadline)

    if where.advertise is None:
        # The reconciler publishes the advertise address as the "kubernetes" Service endpoint
        # and refuses loopback; nothing in-cluster needs that endpoint here.
        address = ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"]
    else:
        address = ["--bind-address=0.0.0.0", f"--advertise-address={where.advertise}"]
    apiserver = _start("kube-apiserver", [
        *wrap, str(bin_dir / "kube-apiserver"), f"--etcd-servers={etcd_url}", *address, f"--secure-port={api_port}",
        f"--cert-dir={pki}", f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}", f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=Node,RBAC", f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--profiling=false", "--v=1", *where.apiserver_args,
    ], logs, procs)
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    _wait_healthy(apiserver, f"https://127.0.0.1:{where.reach(api_port)}/readyz", ctx, deadline)

    kubeconfig, kcm_kubeconfig = root / "admin.kubeconfig", root / "kcm.kubeconfig"
    _write_kubeconfig(kubeconfig, f"https://127.0.0.1:{where.reach(api_port)}", pki, "admin")
    _write_kubeconfig(kcm_kubeconfig, f"https://127.0.0.1:{api_port}", pki, "kcm")
    kcm = _start("kube-controller-manager", [
        *wrap, str(bin_dir / "kube-controller-manager"), f"--kubeconfig={kcm_kubeconfig}",
        f"--authentication-kubeconfig={kcm_kubeconfig}", f"--authorization-kubeconfig={kcm_kubeconfig}",
        "--bind-address=127.0.0.1", f"--secure-port={kcm_port}", f"--cert-dir={root / 'kcm-certs'}",
        "--leader-elect=false", "--controllers=*", "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}", "--profiling=false", "--v=1", *where.kcm_args,
    ], logs, procs)
    self_signed = ssl.create_default_context()  # kcm serves a self-signed cert from --cert-dir
    self_signed.check_hostname, self_signed.verify_mode = False, ssl.CERT_NONE
    _wait_healthy(kcm, f"https://127.0.0.1:{where.reach(kcm_port)}/healthz", self_signed, deadline)
    return KubeCluster(kubeconfig=kubeconfig, server=f"https://127.0.0.1:{where.reach(api_port)}", bin_dir=bin_dir)


def require_bin_dir() -> Path:
    """The binaries' directory; skip without them (fail under CI, which must build them)."""
    bin_dir, why = _find_bin_dir()
    if bin_dir is None:
        msg = f"Kubernetes test binaries not available ({why}); run scripts/build-k8s-tools.sh"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(msg + " (CI must build them before the tests)", pytrace=False)
        pytest.skip(msg)
    return bin_dir


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeCluster]:
    """etcd + kube-apiserver (RBAC, service accounts) + kube-controller-manager (all controllers)."""
    bin_dir = require_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="dc-kube-"))
    procs: list[_Proc] = []
    try:
        yield start_control_plane(bin_dir, root, procs)
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def kube_api(kube_cluster: KubeCluster) -> Iterator[Any]:
    """Session-wide admin kubernetes.client.ApiClient."""
    api = kube_cluster.api_client()
    yield api
    api.close()


@pytest.fixture
def namespace(kube_api: Any) -> Iterator[str]:
    """A fresh Namespace per test, deleted afterwards (not awaited: nothing reuses the name)."""
    from kubernetes import client

    name = f"dc-test-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)
