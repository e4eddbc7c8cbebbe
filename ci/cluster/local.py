"""The ``local`` provisioner: a real single-node Kubernetes on this Linux host, offline.

Components (etcd, a dedicated containerd, kube-apiserver, kube-controller-manager,
kube-scheduler, kubelet) run as supervised processes, each with its own log and pid file,
everything under ``cfg.state_dir`` (default /var/lib/reaper-ci) and ``/run/reaper-ci``. The
host's own containerd, /var/lib/kubelet and /etc are never touched.

``up`` reuses a healthy cluster, otherwise tears down whatever is left (a crash mid-``up``
included) and builds a fresh one, waiting on every component's readiness with a deadline.
``down`` removes processes, mounts, the CNI bridge and network namespaces, cgroups, and the
state folders.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ci import console
from ci.cluster import images, pki as pki_mod, restart_local, runtime as rt
from ci.cluster.base import ClusterInfo, LocalNode, Provisioner, info_path
from ci.config import Config
from ci.errors import RuntimeFailure, SetupError, SmokeFailed, ToolMissing

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
SMOKE_TEXT = "reaper-ci-smoke-ok"
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
    SMOKE_PHASE = 10  # after the smoke container's clean exit, for the pod to turn Succeeded
    STOP = 20


# Debian packages that provide what the local cluster needs on the host.
HOST_PACKAGES = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "ip": "iproute2",
    "conntrack": "conntrack",
    "socat": "socat",
    "openssl": "openssl",
}
CNI_PACKAGE = "containernetworking-plugins"
BUSYBOX = Path("/bin/busybox")
BUSYBOX_PACKAGE = "busybox-static"

COMPONENTS = ("etcd", "containerd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")


# ---------------------------------------------------------------------------- layout


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


# ---------------------------------------------------------------------------- rendering (pure)


def containerd_config(lay: Layout, cfg: Config, runtime: str) -> str:
    """containerd config (version 2) for our dedicated instance."""
    handler = rt.handler_toml(cfg.runtime_class, runtime, cfg.runtime_type, str(lay.runc_root))
    return f"""version = 2
root = "{lay.containerd_root}"
state = "{lay.containerd_state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{lay.containerd_sock}"

[ttrpc]
  address = "{lay.containerd_sock}.ttrpc"

[debug]
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{lay.containerd_root}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{cfg.pause_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  max_container_log_line_size = 16384
  # Clamp containers' oom_score_adj to containerd's own: a host without CAP_SYS_RESOURCE in the
  # bounding set (seen on the project's VMs) refuses the sandbox's -998 and runc init dies.
  restrict_oom_score_adj = true

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
  discard_unpacked_layers = false

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "{rt.RUNC_RUNTIME_TYPE}"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{lay.runc_root}"

{handler}
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{lay.cni_conf}"
  max_conf_num = 1
"""


def cni_conflist(lay: Layout) -> str:
    """bridge + host-local (+ loopback): a private pod subnet on bridge ``rci0``; no masquerade rules."""
    return json.dumps(
        {
            "cniVersion": "0.4.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(lay.cni_ipam),
                    },
                }
            ],
        },
        indent=2,
    ) + "\n"


def kubelet_config(lay: Layout, node_ip: str) -> str:
    """KubeletConfiguration (JSON, which kubelet reads as YAML)."""
    return json.dumps(
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": node_ip,
            "port": KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": KUBELET_HEALTHZ_PORT,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(lay.pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(lay.pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(lay.pki / "kubelet-serving.key"),
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{lay.containerd_sock}",
            "failSwapOn": False,
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            # No eviction thresholds and no local-storage isolation: the eviction manager then never
            # polls container stats (CRI ListContainerStats). containerd 1.6 panics (nil Any in
            # containerMetrics) on the empty Stats reply of a shim that reports no metrics, which
            # reaper's does; one poll would kill the node's containerd. A test cluster needs no
            # eviction; the stats path stays reachable for a scenario that wants to test it.
            "evictionHard": {},
            "localStorageCapacityIsolation": False,
            "resolvConf": "/etc/resolv.conf",
            "podCIDR": POD_CIDR,
            "podLogsDir": str(lay.pod_logs),
            "serializeImagePulls": False,
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "registerNode": True,
            "maxPods": 110,
            "containerLogMaxSize": "10Mi",
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
        },
        indent=2,
    ) + "\n"


def etcd_argv(k8s_bin: Path, lay: Layout) -> list[str]:
    return [
        str(k8s_bin / "etcd"),
        "--name=reaper-ci",
        f"--data-dir={lay.etcd_data}",
        f"--listen-client-urls=http://127.0.0.1:{ETCD_CLIENT_PORT}",
        f"--advertise-client-urls=http://127.0.0.1:{ETCD_CLIENT_PORT}",
        f"--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
        f"--initial-cluster=reaper-ci=http://127.0.0.1:{ETCD_PEER_PORT}",
        "--listen-metrics-urls=",
        "--log-level=warn",
        "--quota-backend-bytes=2147483648",
    ]


def apiserver_argv(k8s_bin: Path, lay: Layout, node_ip: str) -> list[str]:
    p = lay.pki
    return [
        str(k8s_bin / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{ETCD_CLIENT_PORT}",
        "--bind-address=127.0.0.1",
        f"--advertise-address={node_ip}",
        f"--secure-port={APISERVER_PORT}",
        f"--tls-cert-file={p / 'apiserver.crt'}",
        f"--tls-private-key-file={p / 'apiserver.key'}",
        f"--client-ca-file={p / 'ca.crt'}",
        "--anonymous-auth=false",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={p / 'sa.pub'}",
        f"--service-account-signing-key-file={p / 'sa.key'}",
        f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={p / 'ca.crt'}",
        "--kubelet-preferred-address-types=InternalIP",
        f"--cert-dir={lay.state / 'apiserver-certs'}",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager_argv(k8s_bin: Path, lay: Layout) -> list[str]:
    p = lay.pki
    kc = lay.component_kubeconfig("kube-controller-manager")
    return [
        str(k8s_bin / "kube-controller-manager"),
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        f"--secure-port={CONTROLLER_MANAGER_PORT}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={p / 'sa.key'}",
        f"--root-ca-file={p / 'ca.crt'}",
        f"--cluster-signing-cert-file={p / 'ca.crt'}",
        f"--cluster-signing-key-file={p / 'ca.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--cert-dir={lay.state / 'controller-manager-certs'}",
        "--profiling=false",
        "--v=1",
    ]


def scheduler_argv(k8s_bin: Path, lay: Layout) -> list[str]:
    kc = lay.component_kubeconfig("kube-scheduler")
    return [
        str(k8s_bin / "kube-scheduler"),
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        f"--secure-port={SCHEDULER_PORT}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def kubelet_argv(k8s_bin: Path, lay: Layout, node_name: str, node_ip: str) -> list[str]:
    return [
        str(k8s_bin / "kubelet"),
        f"--config={lay.etc / 'kubelet.json'}",
        f"--kubeconfig={lay.component_kubeconfig('kubelet')}",
        f"--root-dir={lay.kubelet_root}",
        f"--hostname-override={node_name}",
        f"--node-ip={node_ip}",
        "--v=1",
    ]


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


# ---------------------------------------------------------------------------- processes


def _read_pidfile(path: Path) -> tuple[int, str] | None:
    try:
        pid_s, start = path.read_text().split()
        return int(pid_s), start
    except (OSError, ValueError):
        return None


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (start time in ticks); None if gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2:].split()
    if rest[0] in ("Z", "X"):
        return None
    return rest[19]


def pid_alive(path: Path) -> int | None:
    """The pid recorded in ``path`` if that very process (same start time) still runs."""
    rec = _read_pidfile(path)
    if rec is None:
        return None
    pid, start = rec
    return pid if _start_time(pid) == start else None


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    rows = [r for r in text.splitlines() if r.strip()]
    return "\n".join(rows[-lines:]) or "(empty log)"


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            raw = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(raw[raw.rfind(")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(d.name))
    return tree


def descendants(pid: int, tree: dict[int, list[int]] | None = None) -> list[int]:
    tree = tree if tree is not None else _children()
    out, todo = [], [pid]
    while todo:
        for c in tree.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _kill_wait(pids: Iterable[int], deadline: float) -> list[int]:
    """SIGTERM, wait until ``deadline``, then SIGKILL; returns pids that had to be killed."""
    pids = [p for p in pids if _start_time(p)]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.monotonic() + deadline
    while time.monotonic() < end and any(_start_time(p) for p in pids):
        time.sleep(0.1)
    killed = [p for p in pids if _start_time(p)]
    for p in killed:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    end = time.monotonic() + 5
    while time.monotonic() < end and any(_start_time(p) for p in killed):
        time.sleep(0.05)
    return killed


def _mnt_ns_inode(path: Path) -> int | None:
    """Inode of a mount namespace file (a bind-mounted nsfs file, or /proc/<pid>/ns/mnt)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino


def _is_nsfs(path: Path) -> bool:
    """A namespace file bind-mounted at ``path`` (reaper keeps its overlay namespaces so): a regular
    file whose device differs from its folder's (a mount point) is what nsfs mounts look like."""
    try:
        return path.is_file() and path.stat().st_dev != path.parent.stat().st_dev
    except OSError:
        return False


def reaper_home_entries() -> list[Path]:
    """reaper's overlay state in its own folder (what a reaper with default paths creates)."""
    if not REAPER_HOME.is_dir():
        return []
    return sorted([REAPER_HOME / n for n in REAPER_OVERLAY_STATE if (REAPER_HOME / n).exists()]
                  + list(REAPER_HOME.glob("overlay*.lock")))


COMPONENT_BINARIES = ("etcd", "containerd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")


def our_processes(lay: Layout) -> list[int]:
    """Live processes that belong to the cluster in ``lay``, with their descendants: our components
    and shims (by binary name, with our state or run folder on their command line), anything
    executing a binary from our bin folder (the runtime under test, e.g. reaper's monitor
    daemons, which re-parent to PID 1), and anything in the runtime's shared mount namespace
    (reaper's overlay namespace, bind-mounted under our run folder). A user's ``tail -f`` of one
    of our logs is not ours."""
    me = {os.getpid(), os.getppid()}
    state, run, bindir = str(lay.state) + "/", str(lay.run) + "/", str(lay.bin) + "/"
    # reaper's overlay namespaces, bind-mounted (nsfs) under its folder: ours when this cluster made them
    tops = [lay.reaper_run] + ([REAPER_HOME] if (lay.state / OWNS_REAPER_HOME).exists() else [])
    shared_inos = {i for i in (_mnt_ns_inode(Path(m)) for m in mounts_under(tops) if _is_nsfs(Path(m))) if i}
    roots = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) in me or not _start_time(int(d.name)):
            continue
        pid = int(d.name)
        argv = _cmdline(pid)
        name = Path(argv[0]).name if argv and argv[0] else ""
        joined = " ".join(argv)
        try:
            exe = os.readlink(d / "exe")
        except OSError:
            exe = ""
        if exe.startswith(bindir):
            roots.append(pid)
        elif (name in COMPONENT_BINARIES or name.startswith("containerd-shim")) and (state in joined or run in joined):
            roots.append(pid)
        elif shared_inos and _mnt_ns_inode(d / "ns" / "mnt") in shared_inos:
            roots.append(pid)
    tree = _children()
    found = set(roots)
    for r in roots:
        found.update(descendants(r, tree))
    return sorted(p for p in found if p not in me and _start_time(p))


# ---------------------------------------------------------------------------- mounts, links, cgroups


def mounts_under(prefixes: Sequence[Path]) -> list[str]:
    """Mount points (deepest first) at or under any of ``prefixes``, from /proc/self/mountinfo."""
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        mp = line.split()[4].replace("\\040", " ")
        for pre in prefixes:
            p = str(pre).rstrip("/")
            if mp == p or mp.startswith(p + "/"):
                found.append(mp)
                break
    return sorted(set(found), key=lambda m: (-m.count("/"), m))


def unmount_all(prefixes: Sequence[Path]) -> list[str]:
    """Unmount everything under ``prefixes`` (lazily when busy); returns what is still mounted."""
    for _ in range(5):
        mps = mounts_under(prefixes)
        if not mps:
            return []
        for mp in mps:
            if subprocess.run(["umount", mp], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", mp], capture_output=True)
    return mounts_under(prefixes)


def our_netns() -> list[str]:
    """CNI network namespaces (/run/netns/cni-*) holding an address of our pod subnet."""
    prefix = POD_CIDR.rsplit(".", 1)[0] + "."
    out = []
    ns_dir = Path("/run/netns")
    if not ns_dir.is_dir():
        return out
    for ns in sorted(ns_dir.iterdir()):
        if not ns.name.startswith("cni-"):
            continue
        r = subprocess.run(["ip", "-n", ns.name, "-4", "-o", "addr"], capture_output=True, text=True)
        if r.returncode != 0:  # stale: the file exists but no namespace is mounted on it
            if not any(m == str(ns) for m in mounts_under([ns])):
                out.append(ns.name)
            continue
        if f"inet {prefix}" in r.stdout:
            out.append(ns.name)
    return out


def cni_cache_files(sandbox_ids: Iterable[str] = ()) -> list[Path]:
    """libcni result files of our network (``reaper-ci-<id>-eth0``) and of our sandboxes' loopback."""
    if not CNI_CACHE.is_dir():
        return []
    ids = set(sandbox_ids)
    prefix = f"{CNI_NETWORK}-"
    ids.update(f.name[len(prefix):].rsplit("-", 1)[0] for f in CNI_CACHE.iterdir() if f.name.startswith(prefix))
    return sorted(f for f in CNI_CACHE.iterdir()
                  if f.name.startswith(f"{CNI_NETWORK}-") or (f.name.startswith("cni-loopback-") and f.name[len("cni-loopback-"):].rsplit("-", 1)[0] in ids))


def remove_empty_dirs(top: Path, stop_at: Path) -> None:
    """rmdir ``top``'s empty sub-folders bottom-up, then ``top`` and its parents up to ``stop_at``."""
    if not top.is_dir():
        return
    for d in sorted((p for p in top.rglob("*") if p.is_dir() and not p.is_symlink()), key=lambda p: -len(p.parts)):
        try:
            d.rmdir()
        except OSError:
            pass
    d = top
    while d != stop_at and d != d.parent:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent


SHIM_SOCKETS = Path("/run/containerd/s")


def stale_shim_sockets() -> list[Path]:
    """Sockets in /run/containerd/s that no process listens on any more."""
    if not SHIM_SOCKETS.is_dir():
        return []
    stale = []
    for f in sorted(SHIM_SOCKETS.iterdir()):
        if not f.is_socket():
            continue
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.connect(str(f))
        except (ConnectionRefusedError, FileNotFoundError):
            stale.append(f)
        except OSError:
            pass  # busy or slow: someone is there
        finally:
            s.close()
    return stale


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def kubepods_cgroups() -> list[Path]:
    """kubelet's cgroupfs hierarchy (``kubepods``) in every v1 controller, or at the root of a
    cgroup v2 (unified) mount, deepest first."""
    root = Path("/sys/fs/cgroup")
    found: list[Path] = []
    if not root.is_dir():
        return found
    tops = [root / "kubepods"] + [ctrl / "kubepods" for ctrl in root.iterdir() if ctrl.is_dir() and ctrl.name != "kubepods"]
    for top in tops:
        if top.is_dir():
            found.extend(p for p in top.rglob("*") if p.is_dir())
            found.append(top)
    return sorted(found, key=lambda p: -len(p.parts))


def cgroup_pids(groups: Iterable[Path]) -> set[int]:
    pids: set[int] = set()
    for g in groups:
        try:
            pids.update(int(x) for x in (g / "cgroup.procs").read_text().split())
        except (OSError, ValueError):
            pass
    return pids


def cni_iptables_chains() -> list[tuple[str, str]]:
    """(table, chain) of CNI-* chains whose rules mention our network name or pod subnet."""
    found = []
    for table in ("nat", "filter"):
        r = subprocess.run(["iptables-save", "-t", table], capture_output=True, text=True)
        if r.returncode != 0:
            continue
        for line in r.stdout.splitlines():
            if line.startswith("-A ") and (f'name: \\"{CNI_NETWORK}\\"' in line or f'"name: \\"{CNI_NETWORK}\\"' in line or POD_CIDR.rsplit(".", 1)[0] + "." in line):
                for tok in line.split():
                    if tok.startswith("CNI-") and (table, tok) not in found:
                        found.append((table, tok))
    return found


def remove_iptables_chains(chains: Sequence[tuple[str, str]], cmd: str = "iptables") -> None:
    """Delete the rules jumping to each (table, chain), then flush and delete the chain."""
    import shlex

    for table, chain in chains:
        r = subprocess.run([f"{cmd}-save", "-t", table], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            if not line.startswith("-A "):
                continue
            tokens = shlex.split(line)
            targets = {tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t in ("-j", "-g")}
            if chain in targets and tokens[1] != chain:
                subprocess.run([cmd, "-t", table, "-D", *tokens[1:]], capture_output=True)
        subprocess.run([cmd, "-t", table, "-F", chain], capture_output=True)
        subprocess.run([cmd, "-t", table, "-X", chain], capture_output=True)


IPTABLES_CMDS = ("iptables", "ip6tables")

# Kernel settings the kubelet changes at start-up (protectKernelDefaults: false); down puts back
# what was there before our kubelet first started.
KUBELET_SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
                   "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")


def read_sysctls(names: Sequence[str] = KUBELET_SYSCTLS) -> dict[str, str]:
    out = {}
    for n in names:
        try:
            out[n] = Path("/proc/sys", n).read_text().strip()
        except OSError:
            pass
    return out


def restore_sysctls(saved: dict[str, str]) -> list[str]:
    """Write back ``saved``; returns the names that could not be restored."""
    failed = []
    for n, v in saved.items():
        try:
            if Path("/proc/sys", n).read_text().strip() != v:
                Path("/proc/sys", n).write_text(v + "\n")
        except OSError:
            failed.append(n)
    return failed


def kube_chains() -> dict[str, list[tuple[str, str]]]:
    """KUBE-* chains (the kubelet makes KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT)
    per command (iptables, ip6tables) as (table, chain)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for cmd in IPTABLES_CMDS:
        if not shutil.which(f"{cmd}-save"):
            continue
        r = subprocess.run([f"{cmd}-save"], capture_output=True, text=True)
        table = ""
        for line in r.stdout.splitlines():
            if line.startswith("*"):
                table = line[1:].strip()
            elif line.startswith(":KUBE-"):
                found.setdefault(cmd, []).append((table, line[1:].split()[0]))
    return found


def smoke_verdict(status: dict, handler: str, runtime: str = "runc") -> bool | str:
    """Has the smoke pod (restartPolicy Never, one container) run to a clean exit?

    True on phase Succeeded, or when every container is terminated with exit code 0 (the kubelet
    keeps the phase non-terminal until the pod sandbox is stopped, and stopping the sandbox is the
    runtime under test's job: a hang there is a product bug the suite reports, not a cluster that
    failed to come up). On phase Failed or a non-zero exit: :class:`RuntimeFailure` when the runtime
    under test is the product (its container ran, or failed to start, on it: exit 1), else
    :class:`SmokeFailed` (the reference runtime failing means the cluster is broken: a setup error).
    Otherwise returns the state seen, for the timeout message.
    """
    failure = RuntimeFailure if runtime != "runc" else SmokeFailed
    what = f"the runtime under test ({runtime}) failed the smoke pod" if runtime != "runc" else "smoke pod"
    phase = status.get("phase")
    statuses = status.get("containerStatuses") or []
    if phase == "Failed":
        raise failure(f"{what} on RuntimeClass {handler}: pod Failed: {json.dumps(statuses)[:400]}")
    if phase == "Succeeded":
        return True
    terminated = [(c.get("state") or {}).get("terminated") for c in statuses]
    if terminated and all(terminated):
        bad = [t for t in terminated if t.get("exitCode") != 0]
        if bad:
            raise failure(f"{what}: its container on RuntimeClass {handler} exited {bad[0].get('exitCode')} "
                          f"({bad[0].get('reason')}: {str(bad[0].get('message', ''))[:200]})")
        return True
    states = [c.get("state") for c in statuses]
    return f"phase {phase} {json.dumps(states)[:200]}; conditions {json.dumps(status.get('conditions'))[:200]}"


# ---------------------------------------------------------------------------- the provisioner


class LocalProvisioner(Provisioner):
    name = "local"

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.lay = Layout(Path(cfg.state_dir))
        self.node = node_name()
        self.node_ip = node_ip()
        self._procs: dict[str, subprocess.Popen] = {}

    # ---------------------------------------------------------------- prerequisites

    def check_prerequisites(self) -> None:
        if platform.system() != "Linux":
            raise ToolMissing(f"the local provisioner needs Linux (this is {platform.system()}); use --provisioner kind")
        if os.geteuid() != 0:
            raise ToolMissing("the local provisioner must run as root (it starts containerd and a kubelet); run with sudo or use --provisioner kind")
        missing = self._missing_packages()
        if missing and not shutil.which("apt-get"):
            raise ToolMissing(f"missing host packages ({', '.join(missing)}) and no apt-get to install them")

    def _missing_packages(self) -> list[str]:
        pkgs = [pkg for tool, pkg in HOST_PACKAGES.items() if not shutil.which(tool)]
        if not (Path(CNI_BIN_DIR) / "bridge").is_file() or not (Path(CNI_BIN_DIR) / "host-local").is_file():
            pkgs.append(CNI_PACKAGE)
        if not BUSYBOX.is_file() or not images.is_static(BUSYBOX):
            pkgs.append(BUSYBOX_PACKAGE)
        return sorted(set(pkgs))

    def _ensure_packages(self) -> None:
        missing = self._missing_packages()
        if not missing:
            return
        log = self.lay.log("apt-get")
        console.info(f"installing host packages: {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        with open(log, "a") as fh:
            r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], stdout=fh, stderr=subprocess.STDOUT, env=env)
            if r.returncode != 0:
                subprocess.run(["apt-get", "update"], stdout=fh, stderr=subprocess.STDOUT, env=env)
                r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], stdout=fh, stderr=subprocess.STDOUT, env=env)
        if r.returncode != 0:
            raise SetupError(f"apt-get install {' '.join(missing)} failed (log: {log}): {tail(log, 1)}")
        still = self._missing_packages()
        if still:
            raise SetupError(f"after apt-get install, still missing: {', '.join(still)}")

    def _ensure_k8s_binaries(self) -> Path:
        from ci.cluster import k8s_build

        bindir = self.cfg.k8s_bin
        if k8s_build.is_complete(bindir):
            return bindir
        if self.cfg.k8s_bin_dir is not None:
            missing = [b for b in k8s_build.ALL_BINARIES if not (bindir / b).is_file()]
            raise SetupError(f"--k8s-bin-dir {bindir} lacks: {', '.join(missing)}")
        log = self.cfg.artifacts / "k8s-build.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        console.info(f"building Kubernetes {self.cfg.k8s_version} + etcd {self.cfg.etcd_version} from source into {bindir} (log: {log}; minutes when cold)")
        with open(log, "a") as fh:
            try:
                k8s_build.build(bindir, k8s_build.Versions(self.cfg.k8s_version, self.cfg.etcd_version), fh)
            except k8s_build.BuildError as e:
                raise SetupError(f"Kubernetes build failed: {e} (log: {log})") from None
        return bindir

    def _ensure_containerd(self) -> Path:
        """containerd + its runc shim + ctr (built once per version into the cache, or from --k8s-bin-dir)."""
        from ci.cluster import k8s_build

        bindir = self.cfg.containerd_bin
        if k8s_build.has_containerd(bindir):
            return bindir
        log = self.cfg.artifacts / "containerd-build.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        console.info(f"building containerd {self.cfg.containerd_version} from source into {bindir} (log: {log})")
        with open(log, "a") as fh:
            try:
                k8s_build.build_containerd(bindir, self.cfg.containerd_version, fh)
            except k8s_build.BuildError as e:
                raise SetupError(f"containerd build failed: {e} (log: {log})") from None
        return bindir

    # ---------------------------------------------------------------- serialisation

    @contextlib.contextmanager
    def _locked(self, what: str):
        """One ``up``/``down`` at a time per host: several sessions (self tests, the suite, a user)
        share one cluster, and two concurrent ``up`` would kill each other's components."""
        path = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/tmp")
        path = path / "reaper-ci-local-cluster.lock"
        fh = open(path, "a+")
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                console.info(f"waiting for another local cluster up/down to finish ({fh.read().strip() or 'unknown'})")
                end = time.monotonic() + Timeouts.LOCK
                while True:
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > end:
                            raise SetupError(f"another local cluster up/down held {path} for {Timeouts.LOCK}s") from None
                        time.sleep(1)
            fh.seek(0)
            fh.truncate()
            fh.write(f"{what} by pid {os.getpid()}\n")
            fh.flush()
            yield
        finally:
            fh.close()

    # ---------------------------------------------------------------- up

    def up(self) -> ClusterInfo:
        with self._locked("up"):
            return self._up()

    def _up(self) -> ClusterInfo:
        self.check_prerequisites()
        runtime = rt.resolve(self.cfg)
        self.lay.logs.mkdir(parents=True, exist_ok=True)
        self._ensure_packages()
        k8s_bin = self._ensure_k8s_binaries()
        self.ctrd_bin = self._ensure_containerd()
        built = None
        if runtime == "reaper":
            console.info(f"building {self.cfg.shim_binary} + {self.cfg.runtime_binary} in {self.cfg.source}")
            built = rt.build(self.cfg, self.cfg.artifacts / "runtime-build.log")
        reused = self._reuse(runtime, built)
        if reused is not None:
            console.info(f"local cluster healthy: reused ({reused.runtime} behind RuntimeClass {reused.runtime_class})")
            return reused
        if self.lay.info.exists() or any(pid_alive(self.lay.pidfile(c)) for c in COMPONENTS) or link_exists(BRIDGE) or mounts_under([self.lay.state, self.lay.run]):
            console.info("local cluster absent or unhealthy: removing what is left, then creating it afresh")
            self._down()
        return self._create(runtime, built, k8s_bin)

    def _reuse(self, runtime: str, built: rt.Built | None) -> ClusterInfo | None:
        """The recorded cluster, when every component runs, the API and node are Ready and the
        runtime matches, down to the build of its binaries (a changed build gets a fresh cluster)."""
        if not self.lay.info.is_file():
            return None
        try:
            info = ClusterInfo.load(self.lay.info)
        except (ValueError, TypeError, OSError):
            return None
        if info.runtime != runtime or info.runtime_class != self.cfg.runtime_class or info.image != self.cfg.image:
            console.info(f"recorded cluster serves {info.runtime}/{info.runtime_class}; {runtime}/{self.cfg.runtime_class} wanted")
            return None
        if built is not None and info.runtime_build != built.digest():
            # reaper keeps node-wide state across pods (its shared mount namespace and overlay); a
            # different build must not inherit the old build's (a newer reaper refuses to adopt it)
            console.info(f"the runtime build changed ({(info.runtime_build or 'unknown')[:12]} -> {built.digest()[:12]}): "
                         "recreating the cluster so the new build starts from a clean node")
            return None
        dead = [c for c in COMPONENTS if not pid_alive(self.lay.pidfile(c))]
        if dead:
            console.info(f"recorded cluster has stopped components: {', '.join(dead)}")
            return None
        try:
            self._wait("kube-apiserver /readyz", lambda: self._readyz(), 10)
            self._wait(f"node {self.node} Ready", self._node_ready, 20)
        except SetupError as e:
            console.info(f"recorded cluster is not healthy: {e}")
            return None
        info = info.__class__(**{**json.loads(info.to_json()), "nodes": tuple(info.nodes),
                                 "source": str(self.cfg.source) if self.cfg.source else None,
                                 "source_commit": rt.source_commit(self.cfg.source), **self._node_fields(runtime)})
        info.save(self.lay.info)
        return info

    def _create(self, runtime: str, built: rt.Built | None, k8s_bin: Path) -> ClusterInfo:
        lay, cfg = self.lay, self.cfg
        started = time.monotonic()
        for d in (lay.etc, lay.logs, lay.pids, lay.bin, lay.images, lay.kubelet_root, lay.pod_logs, lay.containerd_root,
                  lay.containerd_state, lay.cni_conf, lay.cni_ipam, lay.runc_root, lay.reaper_run):
            d.mkdir(parents=True, exist_ok=True)
        console.info(f"node {self.node} ({self.node_ip}); state in {lay.state}, {lay.run}")
        pki = pki_mod.ensure(lay.pki, self.node, self.node_ip, lay.log("pki"))
        server = f"https://127.0.0.1:{APISERVER_PORT}"
        lay.kubeconfig.write_text(pki_mod.kubeconfig(server, pki.ca_crt, pki.crt("admin"), pki.key("admin"), "admin"))
        lay.kubeconfig.chmod(0o600)
        for comp, cert, user in (("kube-controller-manager", "kube-controller-manager", "system:kube-controller-manager"),
                                 ("kube-scheduler", "kube-scheduler", "system:kube-scheduler"),
                                 ("kubelet", "kubelet", f"system:node:{self.node}")):
            lay.component_kubeconfig(comp).write_text(pki_mod.kubeconfig(server, pki.ca_crt, pki.crt(cert), pki.key(cert), user))
        (lay.etc / "containerd.toml").write_text(containerd_config(lay, cfg, runtime))
        (lay.cni_conf / "10-reaper-ci.conflist").write_text(cni_conflist(lay))
        (lay.etc / "kubelet.json").write_text(kubelet_config(lay, self.node_ip))

        # etcd
        self._start("etcd", etcd_argv(k8s_bin, lay))
        self._wait("etcd /health", self._etcd_healthy, Timeouts.ETCD, watch=("etcd",))

        # containerd (+ the runtime under test on its PATH)
        if built is not None:
            self._install_runtime(built)
        # our bin (the runtime under test), then containerd's own folder (its runc shim), then the host's
        env = {"PATH": f"{lay.bin}:{self.ctrd_bin}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}
        if runtime == "reaper":
            self._claim_reaper_home()
            env.update(self._reaper_env())
        self._start("containerd", [str(self.ctrd_bin / "containerd"), "--config", str(lay.etc / "containerd.toml")], env=env)
        self._wait("containerd socket", self._containerd_ready, Timeouts.CONTAINERD, watch=("containerd",))
        self._import_images(k8s_bin)

        # control plane
        self._start("kube-apiserver", apiserver_argv(k8s_bin, lay, self.node_ip))
        self._wait("kube-apiserver /readyz", self._readyz, Timeouts.APISERVER, watch=("etcd", "kube-apiserver"))
        self._apply_runtime_class()
        self._start("kube-controller-manager", controller_manager_argv(k8s_bin, lay))
        self._start("kube-scheduler", scheduler_argv(k8s_bin, lay))
        (lay.state / "preexisting-kube-chains.json").write_text(json.dumps(kube_chains()))
        (lay.state / "sysctls-before-kubelet.json").write_text(json.dumps(read_sysctls()))
        self._start("kubelet", kubelet_argv(k8s_bin, lay, self.node, self.node_ip))
        all_watch = tuple(COMPONENTS)
        self._wait(f"node {self.node} Ready", self._node_ready, Timeouts.NODE_READY, watch=all_watch)
        self._wait("ServiceAccount default/default", self._default_sa, Timeouts.SERVICE_ACCOUNT, watch=all_watch)
        self._wait(f"RuntimeClass {cfg.runtime_class}", self._runtime_class_present, 10, watch=all_watch)

        info = ClusterInfo(
            provisioner="local",
            name=cfg.cluster_name,
            kubeconfig=str(lay.kubeconfig),
            runtime=runtime,
            runtime_class=cfg.runtime_class,
            shim_process=rt.shim_process(cfg, runtime),
            nodes=(self.node,),
            image=cfg.image,
            node_access="local",
            runtime_log=str(lay.log("reaper-runtime")) if runtime == "reaper" else None,
            runtime_state_dir=str(lay.reaper_run) if runtime == "reaper" else str(lay.runc_root / "k8s.io"),
            component_logs=self._component_logs(runtime),
            source=str(cfg.source) if cfg.source else None,
            source_commit=rt.source_commit(cfg.source),
            runtime_build=built.digest() if built is not None else None,
            **self._node_fields(runtime),
        )
        self._smoke(info)
        info.save(lay.info)
        console.info(f"local cluster up in {time.monotonic() - started:.1f}s: kubeconfig {lay.kubeconfig}")
        return info

    def _node_fields(self, runtime: str) -> dict[str, str]:
        """Where this node keeps what the suite inspects (ClusterInfo fields; refreshed on reuse)."""
        ctr = self.cfg.containerd_bin / "ctr"
        return {"kubelet_root": str(self.lay.kubelet_root), "pod_logs_dir": str(self.lay.pod_logs),
                "containerd_address": str(self.lay.containerd_sock), "ctr": str(ctr) if ctr.is_file() else "ctr",
                "runtime_type": self.cfg.runtime_type if runtime == "reaper" else rt.RUNC_RUNTIME_TYPE,
                "runtime_binary": self.cfg.runtime_binary if runtime == "reaper" else "runc",
                "containerd_restart": shlex.join([sys.executable, str(Path(restart_local.__file__).resolve()),
                                                  str(self.lay.pidfile("containerd")), str(self.lay.containerd_sock),
                                                  str(self.lay.log("containerd"))])}

    def _component_logs(self, runtime: str) -> dict[str, str]:
        logs = {c: str(self.lay.log(c)) for c in COMPONENTS}
        if runtime == "reaper":
            logs["reaper-shim"] = str(self.lay.log("reaper-shim"))
            logs["reaper-runtime"] = str(self.lay.log("reaper-runtime"))
        return logs

    def _reaper_env(self) -> dict[str, str]:
        return rt.reaper_env(str(self.lay.bin), str(self.lay.reaper_run), str(self.lay.logs), str(self.lay.etc / "reaper.conf"),
                             runtime_binary=self.cfg.runtime_binary)

    def _claim_reaper_home(self) -> None:
        """reaper runs with its default overlay paths under /run/reaper (as its users deploy it); refuse
        to share them with a reaper this cluster did not start (``down`` has removed our own)."""
        found = reaper_home_entries()
        if found:
            raise SetupError(f"{REAPER_HOME} holds reaper overlay state this cluster did not make "
                             f"({', '.join(str(p) for p in found[:4])}): is reaper installed on this host? The local "
                             f"cluster's reaper would share it; remove it (or stop that reaper) first")
        (self.lay.state / OWNS_REAPER_HOME).write_text("reaper's overlay state in /run/reaper is this cluster's\n")

    def _install_runtime(self, built: rt.Built) -> None:
        rt.install_reaper(LocalNode(), self.node, built, str(self.lay.bin), self.cfg)
        self.lay.reaper_run.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- processes

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = self.lay.log(name)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n")
            fh.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True, env={**os.environ, **(env or {})}, cwd=str(self.lay.state))
        start = None
        for _ in range(50):
            start = _start_time(proc.pid)
            if start or proc.poll() is not None:
                break
            time.sleep(0.01)
        self._procs[name] = proc
        self.lay.pidfile(name).write_text(f"{proc.pid} {start or 0}\n")

    def _dead(self, names: Sequence[str]) -> str | None:
        for n in names:
            proc = self._procs.get(n)
            if proc is not None and proc.poll() is not None:
                return n
            if proc is None and not pid_alive(self.lay.pidfile(n)):
                return n
        return None

    def _wait(self, what: str, probe: Callable[[], object], timeout: float, watch: Sequence[str] = ()) -> None:
        """Poll ``probe`` (truthy = ready) until ``timeout``; a watched component dying ends it early."""
        end = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                last = probe()
                if last is True or (last and not isinstance(last, str)):
                    return
            except (RuntimeFailure, SmokeFailed):
                raise  # a definite verdict: waiting cannot change it
            except Exception as e:  # noqa: BLE001 - any probe failure is "not ready yet"; kept as the last state
                last = f"{type(e).__name__}: {e}"
            died = self._dead(watch)
            if died:
                raise SetupError(f"{died} exited while waiting for {what}; last lines of {self.lay.log(died)}:\n{tail(self.lay.log(died))}")
            if time.monotonic() > end:
                comp = watch[-1] if watch else None
                logs = f"; last lines of {self.lay.log(comp)}:\n{tail(self.lay.log(comp))}" if comp else ""
                raise SetupError(f"{what} not ready after {timeout:.0f}s (last seen: {str(last)[:300]}){logs}")
            time.sleep(0.5)

    # ---------------------------------------------------------------- probes

    def _etcd_healthy(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{ETCD_CLIENT_PORT}/health", timeout=3) as r:
            return json.loads(r.read()).get("health") == "true"

    def _containerd_ready(self) -> bool:
        if not self.lay.containerd_sock.exists():
            return False
        r = self._ctr("version", timeout=10)
        return r.returncode == 0

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.lay.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.lay.pki / "admin.crt"), str(self.lay.pki / "admin.key"))
        return ctx

    def _api_get(self, path: str, timeout: float = 5) -> tuple[int, str]:
        req = urllib.request.Request(f"https://127.0.0.1:{APISERVER_PORT}{path}")
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl()) as r:
                return r.status, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def _readyz(self) -> bool | str:
        code, body = self._api_get("/readyz")
        return True if code == 200 else f"HTTP {code}: {body[-200:]}"

    def _node_ready(self) -> bool | str:
        code, body = self._api_get(f"/api/v1/nodes/{self.node}")
        if code != 200:
            return f"node {self.node}: HTTP {code}"
        conds = {c["type"]: c for c in json.loads(body).get("status", {}).get("conditions", [])}
        ready = conds.get("Ready", {})
        return True if ready.get("status") == "True" else f"Ready={ready.get('status')} ({ready.get('reason')}: {ready.get('message', '')[:200]})"

    def _default_sa(self) -> bool | str:
        code, _ = self._api_get("/api/v1/namespaces/default/serviceaccounts/default")
        if code != 200:
            return f"HTTP {code}"
        code, _ = self._api_get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt")
        return True if code == 200 else f"configmap kube-root-ca.crt: HTTP {code}"

    def _runtime_class_present(self) -> bool | str:
        code, body = self._api_get(f"/apis/node.k8s.io/v1/runtimeclasses/{self.cfg.runtime_class}")
        if code != 200:
            return f"HTTP {code}"
        return True if json.loads(body).get("handler") == self.cfg.runtime_class else f"handler is {json.loads(body).get('handler')}"

    # ---------------------------------------------------------------- tools

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.cfg.k8s_bin / "kubectl"), f"--kubeconfig={self.lay.kubeconfig}", *args],
                              capture_output=True, text=True, input=input, timeout=timeout)

    def _ctr(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        ctr = self.cfg.containerd_bin / "ctr"
        return subprocess.run([str(ctr) if ctr.is_file() else "ctr", "--address", str(self.lay.containerd_sock), *args],
                              capture_output=True, text=True, timeout=timeout)

    def _import_images(self, k8s_bin: Path) -> None:
        arch = images.go_arch()
        pause = images.docker_archive(self.lay.images / "pause.tar", self.cfg.pause_image, images.pause_layer(k8s_bin / "pause"),
                                      entrypoint=["/pause"], arch=arch)
        busybox = images.docker_archive(self.lay.images / "busybox.tar", self.cfg.image,
                                        images.busybox_layer(BUSYBOX, images.busybox_applets(BUSYBOX)), cmd=["sh"], arch=arch)
        for ref, tar in ((self.cfg.pause_image, pause), (self.cfg.image, busybox)):
            r = self._ctr("-n", "k8s.io", "images", "import", "--all-platforms", str(tar), timeout=300)
            with open(self.lay.log("images"), "a") as fh:
                fh.write(f"$ ctr images import {tar}\n{r.stdout}{r.stderr}")
            if r.returncode != 0:
                raise SetupError(f"importing {ref} ({tar}) into containerd failed: {(r.stderr or r.stdout).strip()[-300:]}")
        r = self._ctr("-n", "k8s.io", "images", "ls", "-q")
        have = set(r.stdout.split())
        missing = [ref for ref in (self.cfg.pause_image, self.cfg.image) if ref not in have]
        if missing:
            raise SetupError(f"images not in containerd after import: {', '.join(missing)} (have: {', '.join(sorted(have)) or 'none'})")

    def _apply_runtime_class(self) -> None:
        manifest = json.dumps({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                               "metadata": {"name": self.cfg.runtime_class, "labels": {"app.kubernetes.io/managed-by": "reaper-ci"}},
                               "handler": self.cfg.runtime_class})
        r = self.kubectl("apply", "-f", "-", input=manifest)
        if r.returncode != 0:
            raise SetupError(f"creating RuntimeClass {self.cfg.runtime_class} failed: {r.stderr.strip()[:300]}")

    def _smoke(self, info: ClusterInfo) -> None:
        """A pod on the handler must run its container to a clean exit (Succeeded, or its container
        terminated with exit code 0) and its output must read back. See :func:`smoke_verdict`."""
        name = "reaper-ci-smoke"
        self.kubectl("delete", "pod", name, "-n", "default", "--ignore-not-found", "--wait=true", "--grace-period=0", "--force", timeout=60)
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app.kubernetes.io/managed-by": "reaper-ci"}},
            "spec": {
                "runtimeClassName": info.runtime_class, "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                "automountServiceAccountToken": False,
                "containers": [{"name": "smoke", "image": info.image, "imagePullPolicy": "Never",
                                "command": ["/bin/sh", "-c", f"echo {SMOKE_TEXT}"]}],
            },
        }
        r = self.kubectl("apply", "-f", "-", input=json.dumps(pod))
        if r.returncode != 0:
            raise SetupError(f"creating smoke pod failed: {r.stderr.strip()[:300]}")
        created = time.monotonic()
        seen: dict = {}

        def probe() -> bool | str:
            code, body = self._api_get(f"/api/v1/namespaces/default/pods/{name}")
            if code != 200:
                return f"HTTP {code}"
            seen["status"] = json.loads(body).get("status", {})
            return smoke_verdict(seen["status"], info.runtime_class, info.runtime)

        try:
            self._wait(f"smoke pod on RuntimeClass {info.runtime_class} to run to completion", probe, Timeouts.SMOKE_POD, watch=COMPONENTS)
        except (SetupError, RuntimeFailure) as e:
            ev = self.kubectl("get", "events", "-n", "default", "--field-selector", f"involvedObject.name={name}", "-o",
                              "custom-columns=REASON:.reason,MESSAGE:.message", "--no-headers")
            raise type(e)(f"{e}\nevents: {ev.stdout.strip()[-600:]}") from None
        took = time.monotonic() - created
        logs = self.kubectl("logs", "-n", "default", name)
        if SMOKE_TEXT not in logs.stdout:
            raise SetupError(f"smoke pod's container exited 0 but its log reads {logs.stdout.strip()[:200]!r} (want {SMOKE_TEXT!r}); {logs.stderr.strip()[:200]}")
        phase = seen.get("status", {}).get("phase")
        if phase != "Succeeded":  # the exit is seen; a healthy handler's sandbox stops within moments
            end = time.monotonic() + Timeouts.SMOKE_PHASE
            while phase != "Succeeded" and time.monotonic() < end:
                time.sleep(0.5)
                code, body = self._api_get(f"/api/v1/namespaces/default/pods/{name}")
                phase = json.loads(body).get("status", {}).get("phase") if code == 200 else f"unknown (HTTP {code})"
        if phase == "Succeeded":
            console.info(f"smoke pod on RuntimeClass {info.runtime_class} ({info.runtime}): container exited 0 in {took:.1f}s, "
                         f"pod Succeeded in {time.monotonic() - created:.1f}s, output read back")
        else:
            # The kubelet turns the phase terminal only once the pod sandbox is stopped; a handler
            # whose StopPodSandbox hangs is the runtime's bug, for the scenario suite to report.
            console.info(f"smoke pod on RuntimeClass {info.runtime_class} ({info.runtime}): container exited 0 in {took:.1f}s, "
                         f"output read back; but the pod is still {phase} {Timeouts.SMOKE_PHASE}s later: the handler has not "
                         f"stopped the pod sandbox (StopPodSandbox; see the kubelet and containerd logs)")
        self.kubectl("delete", "pod", name, "-n", "default", "--wait=false")

    # ---------------------------------------------------------------- down

    def down(self) -> None:
        with self._locked("down"):
            self._down()

    def _down(self) -> None:
        lay = self.lay
        try:
            ran_reaper = ClusterInfo.load(lay.info).runtime == "reaper"
        except (OSError, ValueError, TypeError):
            ran_reaper = (lay.bin / self.cfg.shim_binary).exists()
        started = time.monotonic()
        leftovers: list[str] = []
        # 1. the control plane and kubelet first, so nothing restarts pods while we clean
        for comp in ("kubelet", "kube-scheduler", "kube-controller-manager", "kube-apiserver"):
            self._stop(comp)
        # 2. containers and shims started by our containerd
        sock = str(lay.containerd_sock)
        shims = [p for p in self._all_pids() if self._is_our_shim(p, sock)]
        tree = _children()
        victims = set(shims)
        for s in shims:
            victims.update(descendants(s, tree))
        victims |= cgroup_pids(kubepods_cgroups())
        victims.discard(os.getpid())
        if victims:
            _kill_wait(sorted(victims), 2)
        self._stop("containerd")
        self._stop("etcd")
        # stray processes of ours: components whose pid files were lost (crash mid-up), and what
        # the runtime under test left that escaped its shim (reaper's monitor daemons re-parent to
        # PID 1 and can outlive their container)
        strays = our_processes(lay)
        if strays:
            _kill_wait(strays, 3)
        # shim sockets: containerd 1.6 puts them in /run/containerd/s whatever its state dir; a
        # killed shim leaves its socket behind, and reaper's shim leaves it even on a clean exit.
        # With every shim of ours gone, a socket nobody listens on is garbage.
        for sock_file in stale_shim_sockets():
            sock_file.unlink(missing_ok=True)
        # 3. network namespaces, mounts, bridge, iptables, cgroups
        for ns in our_netns():
            nspath = Path("/run/netns") / ns
            unmount_all([nspath])
            try:
                nspath.unlink()
            except OSError:
                pass
        still = unmount_all([lay.state, lay.run])
        if still:
            leftovers.append(f"mounts: {', '.join(still)}")
        if link_exists(BRIDGE):
            r = subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True, text=True)
            if r.returncode != 0:
                leftovers.append(f"bridge {BRIDGE}: {r.stderr.strip()}")
        remove_iptables_chains(cni_iptables_chains())
        self._remove_kubelet_chains()
        try:
            saved = json.loads((lay.state / "sysctls-before-kubelet.json").read_text())
        except (OSError, ValueError):
            saved = {}
        failed = restore_sysctls(saved)
        if failed:
            leftovers.append(f"could not restore sysctls {', '.join(failed)}")
        for g in kubepods_cgroups():
            try:
                g.rmdir()
            except OSError:
                pass
        # /run/containerd/s was made for our shims when no host containerd uses /run/containerd
        if not Path("/run/containerd/containerd.sock").exists():
            for d in (Path("/run/containerd/s"), Path("/run/containerd")):
                try:
                    d.rmdir()
                except OSError:
                    break
        # libcni's result cache for our sandboxes; reaper's fixed overlay mount point
        sandbox_dir = lay.containerd_root / "io.containerd.grpc.v1.cri" / "sandboxes"
        sandbox_ids = [d.name for d in sandbox_dir.iterdir()] if sandbox_dir.is_dir() else []
        for f in cni_cache_files(sandbox_ids):
            f.unlink(missing_ok=True)
        remove_empty_dirs(CNI_CACHE, Path("/var/lib"))
        if ran_reaper:
            remove_empty_dirs(REAPER_MERGED, Path("/run"))
            if (lay.state / OWNS_REAPER_HOME).exists():
                still = unmount_all([REAPER_HOME])
                if still:
                    leftovers.append(f"reaper's mounts: {', '.join(still)}")
                for entry in reaper_home_entries():
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
                remove_empty_dirs(REAPER_HOME, Path("/run"))
        # 4. files
        for d in (lay.run, lay.state):
            if d.exists():
                shutil.rmtree(d, ignore_errors=True)
            if d.exists():
                leftovers.append(f"could not remove {d}")
        if leftovers:
            raise SetupError("down left things behind: " + "; ".join(leftovers))
        console.info(f"local cluster down in {time.monotonic() - started:.1f}s")

    def _remove_kubelet_chains(self) -> None:
        """The kubelet's KUBE-* chains, unless they were there before our kubelet started or another
        kubelet runs on this host."""
        other_kubelet = any(Path(a[0]).name == "kubelet" for a in (_cmdline(p) for p in self._all_pids()) if a and a[0])
        if other_kubelet:
            return
        try:
            before = json.loads((self.lay.state / "preexisting-kube-chains.json").read_text())
        except (OSError, ValueError):
            before = {}
        for cmd, chains in kube_chains().items():
            keep = {tuple(c) for c in before.get(cmd, [])}
            # jumps first (INPUT/OUTPUT -> KUBE-FIREWALL), then the chains themselves
            remove_iptables_chains([c for c in chains if c not in keep], cmd)

    def _stop(self, comp: str) -> None:
        pid = pid_alive(self.lay.pidfile(comp))
        if pid:
            _kill_wait([pid], Timeouts.STOP)
        proc = self._procs.pop(comp, None)
        if proc is not None:
            proc.poll()

    @staticmethod
    def _all_pids() -> list[int]:
        return [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and int(d.name) != os.getpid()]

    @staticmethod
    def _is_our_shim(pid: int, sock: str) -> bool:
        argv = _cmdline(pid)
        return bool(argv) and Path(argv[0]).name.startswith("containerd-shim") and sock in argv

    # ---------------------------------------------------------------- status, logs

    def status(self) -> str:
        lines = []
        for c in COMPONENTS:
            pid = pid_alive(self.lay.pidfile(c))
            lines.append(f"  {c:24} {'running (pid ' + str(pid) + ')' if pid else 'not running'}")
        head = f"local cluster in {self.lay.state}:"
        if self.lay.info.is_file():
            info = ClusterInfo.load(self.lay.info)
            head += f" runtime {info.runtime} behind RuntimeClass {info.runtime_class} on node {', '.join(info.nodes)}; kubeconfig {info.kubeconfig}"
            try:
                ready = self._node_ready()
                head += f"; node Ready: {'yes' if ready is True else ready}"
            except Exception as e:  # noqa: BLE001 - status reports, never fails
                head += f"; API unreachable ({type(e).__name__})"
        else:
            head += " no cluster recorded (cluster.json absent)"
        return "\n".join([head, *lines, *footprint_lines(describe_leftovers(self.lay.state, self.lay.run))])

    def collect_logs(self, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        out = []
        if self.lay.logs.is_dir():
            for f in sorted(self.lay.logs.glob("*.log")):
                shutil.copy2(f, dest / f.name)
                out.append(dest / f.name)
        if self.lay.pod_logs.is_dir():
            for f in sorted(self.lay.pod_logs.rglob("*.log")):
                rel = f.relative_to(self.lay.pod_logs)
                target = dest / "pods" / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target)
                out.append(target)
        if self.lay.info.is_file():
            shutil.copy2(self.lay.info, dest / "cluster.json")
            out.append(dest / "cluster.json")
        out += self._dump_state(dest)
        return out

    def _dump_state(self, dest: Path) -> list[Path]:
        """What the API and containerd say right now (best effort: a dead cluster has no answers)."""
        dumps = {
            "kubectl-get-all.txt": lambda: self.kubectl("get", "nodes,runtimeclasses,pods", "-A", "-o", "wide", timeout=20),
            "kubectl-events.txt": lambda: self.kubectl("get", "events", "-A", "--sort-by=.lastTimestamp", timeout=20),
            "ctr-containers.txt": lambda: self._ctr("-n", "k8s.io", "containers", "ls", timeout=20),
            "ctr-tasks.txt": lambda: self._ctr("-n", "k8s.io", "tasks", "ls", timeout=20),
        }
        out = []
        for name, call in dumps.items():
            try:
                r = call()
                text = r.stdout + (f"\n(exit {r.returncode}) {r.stderr}" if r.returncode else "")
            except (OSError, subprocess.SubprocessError) as e:
                text = f"unavailable: {e}"
            (dest / name).write_text(text)
            out.append(dest / name)
        return out


def footprint_lines(left: dict[str, list[str]], most: int = 8) -> list[str]:
    """``status``'s account of what the cluster has on the host (after ``down``: "nothing")."""
    if not any(left.values()):
        return ["  on this host: nothing (no process, mount, link, netns, iptables chain, cgroup or folder of ours)"]
    out = ["  on this host: " + ", ".join(f"{len(v)} {k}" for k, v in left.items() if v)]
    for kind, items in left.items():
        out += [f"    {kind}: {item}" for item in items[:most]]
        if len(items) > most:
            out.append(f"    {kind}: ... and {len(items) - most} more")
    return out


def describe_leftovers(state: Path, run: Path = RUN_DIR) -> dict[str, list[str]]:
    """What of a local cluster exists right now: processes, mounts, links, netns, cgroups, folders."""
    lay = Layout(state, run)
    procs = [f"{pid} {' '.join(_cmdline(pid))[:160]}" for pid in our_processes(lay)]
    return {
        "processes": procs,
        "mounts": mounts_under([lay.state, lay.run] + ([REAPER_HOME] if (lay.state / OWNS_REAPER_HOME).exists() else [])),
        "links": [BRIDGE] if link_exists(BRIDGE) else [],
        "iptables": [f"{cmd} {t} {c}" for cmd, chains in kube_chains().items() for t, c in chains]
        + [f"iptables {t} {c}" for t, c in cni_iptables_chains()],
        "netns": our_netns(),
        "cni-cache": [str(f) for f in cni_cache_files()],
        "shim-sockets": [str(f) for f in stale_shim_sockets()],
        "cgroups": [str(g) for g in kubepods_cgroups()],
        "dirs": [str(d) for d in (lay.state, lay.run) if d.exists()],
    }

