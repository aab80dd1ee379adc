"""A real one-node Kubernetes cluster: pods of the project's image run on a kubelet.

Everything runs inside one network namespace this fixture creates (and deletes): etcd, the API
server and controller manager (tests/k8s's start_control_plane), kube-scheduler, containerd with
its own root, state and socket under a temporary directory, the kubelet, kube-proxy (iptables)
and CoreDNS (a process answering for cluster.local from the API server). Pods get addresses from
a bridge CNI network (10.244.0.0/24) that exists only in that namespace; the node's own address
is 10.200.0.1 on a port-less bridge there. The tests reach the API server through a forwarder
(forward.py) from loopback ports of this machine.

Parts: scripts/build-k8s-tools.sh (control plane, helm), scripts/build-node.sh (kubelet,
scheduler, kube-proxy, CoreDNS; containerd, runc and CNI plugins from Debian), the image from
scripts/build-image.sh ($DC_IMAGE), loaded into containerd with a pause image made from its base.
Root is required (namespaces, mounts, iptables, containers).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from k8s.conftest import (KubeCluster, Placement, _Proc, _start, _wait_healthy, _write_kubeconfig,
                                require_bin_dir, start_control_plane, wait_until)

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_SCRIPT = REPO_ROOT / "scripts" / "build-node.sh"
NODE_BINARIES = ("kubelet", "kube-scheduler", "kube-proxy", "coredns")
NODE_NAME = "dc-node"
NODE_IP = "10.200.0.1"  # on an interface of its own in the namespace: the API server's advertise address
POD_CIDR = "10.244.0.0/24"
CLUSTER_DNS = NODE_IP  # CoreDNS runs as a process of the node, listening on :53
START_TIMEOUT = float(os.environ.get("DC_NODE_START_TIMEOUT", "240"))
#: fixed ports inside the namespace (nothing else listens there)
ETCD, ETCD_PEER, APISERVER, KCM, SCHEDULER, KUBELET_HEALTH, PROXY_HEALTH, DNS_READY = (
    2379, 2380, 6443, 10257, 10259, 10248, 10256, 8181)
PAUSE_IMAGE = "localhost/dataclay-pause:1"
VOLUMES = 10  # pre-created local PersistentVolumes (metadata + backends, with room for replacements)


class NodeError(RuntimeError):
    """The node could not be assembled; the message says which part and carries its log."""


def _run(*argv: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def _node_bin_dir() -> Path:
    """kubelet & co. from DC_NODE_BIN or the build script's cache; skip (fail under CI) without."""
    if os.environ.get("DC_NODE_BIN"):
        bin_dir = Path(os.environ["DC_NODE_BIN"])
    else:
        res = subprocess.run([str(NODE_SCRIPT), "--print-bin-dir"], capture_output=True, text=True)
        bin_dir = Path(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 and res.stdout.strip() else Path("/nonexistent")
    missing = [b for b in NODE_BINARIES if not os.access(bin_dir / b, os.X_OK)]
    missing += [t for t in ("containerd", "ctr", "runc", "nsenter", "iptables", "podman") if shutil.which(t) is None]
    why = ""
    if missing:
        why = f"node parts missing ({', '.join(missing)}); run scripts/build-node.sh and scripts/build-image.sh"
    elif os.geteuid() != 0:
        why = "a node needs root (network namespaces, mounts, containers)"
    elif not os.environ.get("DC_IMAGE"):
        why = "DC_IMAGE is not set (export DC_IMAGE=$(scripts/build-image.sh | tail -1))"
    if why:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(why + " (CI must provide them)", pytrace=False)
        pytest.skip(why)
    return bin_dir


class Forwarder:
    """forward.py: loopback ports here -> the same ports on 127.0.0.1 inside the namespace."""

    def __init__(self, netns_path: str, ports: list[int], log: Path) -> None:
        self.popen = subprocess.Popen([sys.executable, str(Path(__file__).with_name("forward.py")), netns_path,
                                       *map(str, ports)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=log.open("wb"), text=True)
        line = self.popen.stdout.readline() if self.popen.stdout else ""
        if not line:
            raise NodeError(f"port forwarder did not start: {log.read_text(errors='replace')}")
        self.ports = {int(k): v for k, v in json.loads(line).items()}

    def reach(self, port: int) -> int:
        return self.ports[port]

    def stop(self) -> None:
        if self.popen.stdin:
            self.popen.stdin.close()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


@dataclass
class KubeNode:
    """Handle to the running node: the API (as KubeCluster), images and where things are."""

    cluster: KubeCluster
    root: Path
    netns: str
    image: str
    containerd_socket: Path
    logs: Path
    procs: list[_Proc] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return self.cluster.env()

    def api_client(self) -> Any:
        return self.cluster.api_client()

    def ctr(self, *args: str, timeout: float = 300) -> str:
        return _run("ctr", "--address", str(self.containerd_socket), "--namespace", "k8s.io", *args,
                    timeout=timeout).stdout

    def load_images(self, *images: str) -> None:
        """podman's images -> the node's containerd (no registry: pods use what is local); one
        archive, so layers they share are written once."""
        tar = self.root / "images.tar"
        _run("podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "save", "--format", "docker-archive",
             "--multi-image-archive", "-o", str(tar), *images, timeout=600)
        try:
            self.ctr("images", "import", str(tar), timeout=600)
        finally:
            tar.unlink(missing_ok=True)

    def log_tails(self, lines: int = 30) -> str:
        return "\n".join(p.tail(lines) for p in self.procs)


def _netns_setup(name: str) -> str:
    """The node's namespace: loopback, a port-less bridge with the node's address and a default
    route through it (kube-proxy and the kubelet want one; nothing leaves through it). A bridge,
    not a dummy interface: machines like this one may lack the dummy module."""
    _run("ip", "netns", "add", name)
    path = f"/run/netns/{name}"
    inside = ("nsenter", f"--net={path}")
    for cmd in (("ip", "link", "set", "lo", "up"),
                ("ip", "link", "add", "node0", "type", "bridge"),
                ("ip", "addr", "add", f"{NODE_IP}/24", "dev", "node0"),
                ("ip", "link", "set", "node0", "up"),
                ("ip", "route", "add", "default", "dev", "node0"),
                ("sysctl", "-qw", "net.ipv4.ip_forward=1")):
        _run(*inside, *cmd)
    # Pod-to-pod traffic through a Service crosses the bridge: let iptables see it (per namespace).
    _run(*inside, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1", check=False)
    return path


def _client_cert(pki: Path, name: str, subject: str) -> None:
    """Another client certificate from the control plane's CA (its openssl.cnf has [client])."""
    _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(pki / f"{name}.key"), "-out", str(pki / f"{name}.crt"), "-days", "2", "-subj", subject,
         "-config", str(pki / "openssl.cnf"), "-extensions", "client",
         "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"))


CONTAINERD_CONFIG = """version = 2
root = "{root}/containerd/root"
state = "{root}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{root}/containerd/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # a negative oom_score_adj (the kubelet's for some pods) needs CAP_SYS_RESOURCE, absent here
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{root}/cni/net.d"
"""


def _cni_config(root: Path) -> dict[str, Any]:
    return {"cniVersion": "0.4.0", "name": "dc-pods", "plugins": [
        {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
         "ipam": {"type": "host-local", "dataDir": str(root / "cni" / "ipam"),
                  "ranges": [[{"subnet": POD_CIDR, "gateway": "10.244.0.1"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    ]}


def _kubelet_config(root: Path, pki: Path, socket: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "containerRuntimeEndpoint": f"unix://{socket}",
        "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False,
        "enforceNodeAllocatable": [], "localStorageCapacityIsolation": False,
        "address": NODE_IP, "port": 10250, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": KUBELET_HEALTH,
        # the API server (logs, exec) authenticates with its CA's certificates; anything inside may
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(pki / "ca.crt")}},
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDomain": "cluster.local", "clusterDNS": [CLUSTER_DNS], "resolvConf": str(root / "resolv.conf"),
        "serializeImagePulls": False, "rotateCertificates": False,
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "syncFrequency": "5s", "nodeStatusUpdateFrequency": "5s",
    }


def _proxy_config(kubeconfig: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)}, "mode": "iptables", "clusterCIDR": POD_CIDR,
        "hostnameOverride": NODE_NAME, "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{PROXY_HEALTH}", "metricsBindAddress": "127.0.0.1:10249",
        # conntrack sysctls belong to the machine, not the namespace: leave them
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }


COREFILE = """.:53 {{
    errors
    health 127.0.0.1:8180
    ready 127.0.0.1:{ready}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
}}
"""


def _local_volume(index: int, path: Path) -> dict[str, Any]:
    """A pre-created local PersistentVolume on the node (no class: binds the StatefulSets' claims)."""
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": f"dc-node-pv-{index}", "labels": {"dataclay-test/node": NODE_NAME}},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "local": {"path": str(path)},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}]}]}}},
    }


def pause_image(image: str) -> str:
    """A pause image from the project image's own layers: it only has to sleep (no registry)."""
    podman = ("podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs")
    if subprocess.run([*podman, "image", "exists", PAUSE_IMAGE]).returncode != 0:
        build = Path(tempfile.mkdtemp(prefix="dc-pause-"))
        try:
            (build / "Containerfile").write_text(
                f'FROM {image}\nUSER 65535:65535\nENTRYPOINT ["sleep", "infinity"]\nCMD []\n')
            _run(*podman, "build", "--quiet", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                 "-t", PAUSE_IMAGE, str(build), timeout=300)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return PAUSE_IMAGE


def _mounts_under(*prefixes: str) -> list[str]:
    """Mount points at or below any prefix, deepest (latest) first."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
                points.append(point)
    return points[::-1]


def _pod_netns_paths(node_ctr: KubeNode) -> list[str]:
    """The network namespaces containerd made for pod sandboxes (bind mounts in /run/netns)."""
    paths = []
    try:
        for cid in node_ctr.ctr("containers", "list", "--quiet", timeout=30).split():
            info = json.loads(node_ctr.ctr("containers", "info", cid, timeout=30))
            for ns in info.get("Spec", {}).get("linux", {}).get("namespaces", []):
                path = os.path.realpath(ns.get("path", ""))  # /var/run/netns/... is /run/netns/... in mountinfo
                if ns.get("type") == "network" and path.startswith("/run/netns/"):
                    paths.append(path)
    except (NodeError, subprocess.TimeoutExpired, ValueError):
        pass
    return sorted(set(paths))


def _netns_peered_with(node_netns: str) -> list[str]:
    """Pod namespaces (containerd's /run/netns/cni-*) with a link into the node's namespace: the
    kernel names it in their `netns list-id`. Finds the ones of pods containerd no longer lists,
    and never another tool's (podman's have a link into the machine's own namespace)."""
    name = Path(node_netns).name
    paths = []
    for entry in Path("/run/netns").glob("cni-*"):
        res = subprocess.run(["ip", "-n", entry.name, "netns", "list-id"], capture_output=True, text=True)
        if f"iproute2 netns name: {name})" in res.stdout:
            paths.append(str(entry))
    return paths


def _kill_containers(node: KubeNode) -> None:
    """SIGKILL every container task (pods outlive the kubelet and containerd: their shims do)."""
    try:
        tasks = [line.split()[0] for line in node.ctr("tasks", "list", timeout=30).splitlines()[1:] if line.strip()]
        for task in tasks:
            node.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", task, timeout=30)
    except (NodeError, subprocess.TimeoutExpired):
        pass


def _remove_pod_cgroups(kubelet_root: Path) -> None:
    """The kubelet's cgroups of this node's pods (kubepods/<qos>/pod<uid> in every cgroup v1
    hierarchy), now empty: the pod uids are the kubelet's pods/ directories."""
    uids = {p.name for p in (kubelet_root / "pods").glob("*")} if (kubelet_root / "pods").is_dir() else set()
    if not uids:
        return
    for hierarchy in Path("/sys/fs/cgroup").glob("*"):
        for pod in sorted(hierarchy.glob("kubepods/**/pod*"), key=lambda p: -len(p.parts)):
            if pod.is_dir() and pod.name.removeprefix("pod") in uids:
                for child in sorted(pod.glob("**/"), key=lambda p: -len(p.parts)):
                    try:
                        child.rmdir()  # only empty cgroups go; a live one refuses (EBUSY)
                    except OSError:
                        pass


def _kill_netns_processes(path: str) -> None:
    """Whatever still runs in the node's namespace (containerd's shims): killed by pid."""
    name = Path(path).name
    res = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    for pid in res.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


@pytest.fixture(scope="package")
def kube_node() -> Iterator[KubeNode]:
    """The one-node cluster, ready: node Ready, DNS answering, default ServiceAccount there,
    the project's image and the pause image in containerd, local volumes waiting for claims.
    Package scope: it goes when tests/node is done, not at the end of a whole-suite run."""
    bin_dir = require_bin_dir()
    node_bin = _node_bin_dir()
    image = os.environ["DC_IMAGE"]
    pause = pause_image(image)

    root = Path(tempfile.mkdtemp(prefix="dc-node-"))
    root.chmod(0o755)  # pods' volumes live below; the containers' users must traverse it
    logs = root / "logs"
    logs.mkdir()
    name = f"dc-node-{uuid.uuid4().hex[:8]}"
    netns = f"/run/netns/{name}"
    wrap = ("nsenter", f"--net={netns}")
    procs: list[_Proc] = []
    forwarder: Forwarder | None = None
    node: KubeNode | None = None
    pod_netns: list[str] = []
    try:
        _netns_setup(name)
        forwarder = Forwarder(netns, [ETCD, APISERVER, KCM, SCHEDULER, KUBELET_HEALTH, PROXY_HEALTH, DNS_READY],
                              logs / "forwarder.log")
        cluster = start_control_plane(bin_dir, root, procs, Placement(
            wrap=wrap, ports=(ETCD, ETCD_PEER, APISERVER, KCM), reach=forwarder.reach, advertise=NODE_IP,
            apiserver_args=("--kubelet-preferred-address-types=InternalIP", "--allow-privileged=true",
                            # logs and exec: the API server is the kubelet's client
                            f"--kubelet-client-certificate={root / 'pki' / 'admin.crt'}",
                            f"--kubelet-client-key={root / 'pki' / 'admin.key'}")))
        pki = root / "pki"
        inside = f"https://127.0.0.1:{APISERVER}"
        for user, subject in (("kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}"),
                              ("scheduler", "/CN=system:kube-scheduler"), ("proxy", "/CN=system:kube-proxy")):
            _client_cert(pki, user, subject)
            _write_kubeconfig(root / f"{user}.kubeconfig", inside, pki, user)
        _write_kubeconfig(root / "coredns.kubeconfig", inside, pki, "admin")
        deadline = time.monotonic() + START_TIMEOUT

        scheduler = _start("kube-scheduler", [
            *wrap, str(node_bin / "kube-scheduler"), f"--kubeconfig={root / 'scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={root / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={root / 'scheduler.kubeconfig'}", "--bind-address=127.0.0.1",
            f"--secure-port={SCHEDULER}", "--leader-elect=false", "--v=1"], logs, procs)

        # containerd, its CNI network and the images
        (root / "cni" / "net.d").mkdir(parents=True)
        (root / "cni" / "net.d" / "10-dc-pods.conflist").write_text(json.dumps(_cni_config(root), indent=1))
        (root / "containerd").mkdir()
        config = root / "containerd" / "config.toml"
        config.write_text(CONTAINERD_CONFIG.format(root=root, pause=pause))
        socket_path = root / "containerd" / "containerd.sock"
        containerd = _start("containerd", [*wrap, "containerd", "--config", str(config)], logs, procs)
        node = KubeNode(cluster=cluster, root=root, netns=netns, image=image, containerd_socket=socket_path,
                        logs=logs, procs=procs)
        wait_until(lambda: containerd.popen.poll() is not None or
                   subprocess.run(["ctr", "--address", str(socket_path), "version"], capture_output=True).returncode == 0,
                   START_TIMEOUT, "containerd's socket")
        if containerd.popen.poll() is not None:
            raise NodeError(f"containerd exited\n{containerd.tail()}")
        node.load_images(image, pause)

        # the kubelet
        (root / "resolv.conf").write_text("")
        kubelet_config = root / "kubelet.json"
        kubelet_config.write_text(json.dumps(_kubelet_config(root, pki, socket_path), indent=1))
        kubelet = _start("kubelet", [
            *wrap, str(node_bin / "kubelet"), f"--config={kubelet_config}",
            f"--kubeconfig={root / 'kubelet.kubeconfig'}", f"--root-dir={root / 'kubelet'}",
            f"--cert-dir={root / 'kubelet-pki'}", f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}",
            "--v=1"], logs, procs)
        _wait_healthy(kubelet, f"http://127.0.0.1:{forwarder.reach(KUBELET_HEALTH)}/healthz", None, deadline)

        proxy_config = root / "kube-proxy.json"
        proxy_config.write_text(json.dumps(_proxy_config(root / "proxy.kubeconfig"), indent=1))
        proxy = _start("kube-proxy", [*wrap, str(node_bin / "kube-proxy"), f"--config={proxy_config}", "--v=1"],
                       logs, procs)
        _wait_healthy(proxy, f"http://127.0.0.1:{forwarder.reach(PROXY_HEALTH)}/healthz", None, deadline)

        corefile = root / "Corefile"
        corefile.write_text(COREFILE.format(ready=DNS_READY, kubeconfig=root / "coredns.kubeconfig"))
        coredns = _start("coredns", [*wrap, str(node_bin / "coredns"), "-conf", str(corefile)], logs, procs)
        _wait_healthy(coredns, f"http://127.0.0.1:{forwarder.reach(DNS_READY)}/ready", None, deadline)

        from kubernetes import client

        api = cluster.api_client()
        try:
            core = client.CoreV1Api(api)

            def node_ready() -> bool:
                try:
                    conds = core.read_node(NODE_NAME).status.conditions or []
                except client.ApiException:
                    return False
                return any(c.type == "Ready" and c.status == "True" for c in conds)

            try:
                wait_until(node_ready, max(deadline - time.monotonic(), 1), f"node {NODE_NAME} Ready")
            except TimeoutError as exc:
                raise NodeError(f"{exc}\n{kubelet.tail(60)}\n{containerd.tail()}") from exc
            wait_until(lambda: _exists(lambda: core.read_namespaced_service_account("default", "default")),
                       60, "the default ServiceAccount")
            for i in range(VOLUMES):
                path = root / "volumes" / f"pv-{i}"
                path.mkdir(parents=True)
                core.create_persistent_volume(_local_volume(i, path))
        finally:
            api.close()
        yield node
    finally:
        if node is not None:
            pod_netns = sorted(set(_pod_netns_paths(node)) | set(_netns_peered_with(netns)))
            kubelet_procs = [p for p in procs if p.name == "kubelet"]
            for p in kubelet_procs:
                p.stop()
            _kill_containers(node)
        for proc in reversed(procs):
            proc.stop()
        _kill_netns_processes(netns)
        _remove_pod_cgroups(root / "kubelet")
        if forwarder is not None:
            forwarder.stop()
        for point in _mounts_under(str(root), *pod_netns):
            subprocess.run(["umount", "-l", point], capture_output=True)
        for path in pod_netns:
            try:
                Path(path).unlink(missing_ok=True)
            except OSError:
                pass  # still mounted (another mount namespace holds it): `ip netns` lists it
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _exists(read: Any) -> bool:
    from kubernetes import client

    try:
        read()
        return True
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
