"""Where the local cluster lives: folders and files (:class:`Layout`), ports, CIDRs, names, deadlines."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from ci.cluster.base import info_path


RUN_DIR = Path("/run/reaper-ci")


ETCD_CLIENT_PORT = 23790


ETCD_PEER_PORT = 23800


APISERVER_PORT = 6443


KUBELET_PORT = 10250


KUBELET_HEALTHZ_PORT = 10248


CONTROLLER_MANAGER_PORT = 10257


SCHEDULER_PORT = 10259


SERVICE_CIDR = "10.0.0.0/24"


POD_CIDR = "10.244.0.0/24"


BRIDGE = "rci0"


CNI_NETWORK = "reaper-ci"




CNI_BIN_DIR = "/usr/lib/cni"


CNI_CACHE = Path("/var/lib/cni/results")  # libcni's result cache: containerd 1.6 has no setting for it


REAPER_MERGED = Path("/run/reaper/merged")  # reaper's overlay mount point: fixed, not under REAPER_OVERLAY_BASE


# reaper runs with its deployed defaults (its users' overlay layout: node-wide at d8d19fe, per
# Kubernetes namespace at later commits), so its overlay state lives in reaper's own folder:
REAPER_HOME = Path("/run/reaper")


REAPER_OVERLAY_STATE = ("overlay", "ns", "shared-mnt-ns", "merged", "overlay-filters")  # + overlay*.lock


OWNS_REAPER_HOME = "owns-run-reaper"  # in the state folder: this cluster's reaper made /run/reaper's overlay state


class Timeouts:
    """Named deadlines (seconds) for every wait in ``up``."""

    LOCK = 1800  # another up/down of the same cluster in progress (a cold build takes minutes)

    ETCD = 60
    CONTAINERD = 60
    APISERVER = 120
    CONTROLLERS = 60
    NODE_READY = 180
    SERVICE_ACCOUNT = 120
    SMOKE_POD = 180
    STOP = 20


COMPONENTS = ("etcd", "containerd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")


@dataclass(frozen=True)
class Layout:
    """Every path the local cluster uses."""

    state: Path
    run: Path = RUN_DIR

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def etc(self) -> Path:
        return self.state / "etc"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def pids(self) -> Path:
        return self.state / "pids"

    @property
    def bin(self) -> Path:
        """Runtime binaries under test; first on containerd's PATH."""
        return self.state / "bin"

    @property
    def images(self) -> Path:
        return self.state / "images"

    @property
    def etcd_data(self) -> Path:
        return self.state / "etcd"

    @property
    def kubelet_root(self) -> Path:
        return self.state / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.state / "pod-logs"

    @property
    def containerd_root(self) -> Path:
        return self.state / "containerd"

    @property
    def containerd_state(self) -> Path:
        return self.run / "containerd"

    @property
    def containerd_sock(self) -> Path:
        return self.run / "containerd" / "containerd.sock"

    @property
    def runc_root(self) -> Path:
        return self.run / "runc"

    @property
    def reaper_run(self) -> Path:
        return self.run / "reaper"

    @property
    def cni_conf(self) -> Path:
        return self.state / "cni" / "net.d"

    @property
    def cni_ipam(self) -> Path:
        return self.state / "cni" / "ipam"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def info(self) -> Path:
        return info_path(self.state)

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def pidfile(self, component: str) -> Path:
        return self.pids / f"{component}.pid"

    def component_kubeconfig(self, component: str) -> Path:
        return self.etc / f"{component}.kubeconfig"


def node_name() -> str:
    """The node's name: the host name, lower-case, as DNS-1123 wants it."""
    return socket.gethostname().split(".")[0].lower()


def node_ip() -> str:
    """The IPv4 address of the default-route interface (no packet is sent), else loopback."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.254", 9))
        ip = s.getsockname()[0]
    except OSError:
        ip = "127.0.0.1"
    finally:
        s.close()
    return ip

