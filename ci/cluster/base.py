"""The provisioner interface, the cluster description the suite reads, and node access.

A provisioner (``local`` or ``kind``) brings a cluster up, installs the runtime under test
behind the RuntimeClass handler, and writes a :class:`ClusterInfo` JSON file. The scenario
suite (``tests/k8s``) reads only that file: it never needs to know which provisioner made
the cluster. Node-side checks go through :class:`NodeAccess` (direct for local, ``docker
exec`` for kind).
"""

from __future__ import annotations

import abc
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from ci.contract import CLUSTER_INFO_ENV  # noqa: E402  (re-exported: the provisioners' side)
from ci.errors import SetupError
from ci.tools import Result, Runner, ShRunner


@dataclass(frozen=True)
class ClusterInfo:
    provisioner: str  # local | kind | existing
    name: str
    kubeconfig: str
    runtime: str  # reaper | runc: what is behind the handler
    runtime_class: str  # RuntimeClass name == containerd handler name
    shim_process: str  # process name of the handler's shim (containerd-shim-reaper-v2 / containerd-shim-runc-v2)
    nodes: tuple[str, ...]
    image: str  # test image, imported on every node (imagePullPolicy: Never/IfNotPresent)
    node_access: str  # local (this host) | docker (kind: docker exec) | pods (host-exec pods through the API)
    runtime_log: str | None = None  # node path of the runtime's own log (reaper: /run/reaper/runtime.log)
    runtime_state_dir: str | None = None  # node path of the runtime's state entries, if it has any
    component_logs: dict = field(default_factory=dict)  # name -> host path (local) or node path (kind)
    source: str | None = None  # Cargo workspace the runtime was built from
    source_commit: str | None = None
    runtime_build: str | None = None  # sha256 over the installed shim + runtime binaries (reaper), None for runc
    # Where the node keeps what the suite inspects (defaults: a stock kubelet and containerd, as on kind nodes)
    kubelet_root: str = "/var/lib/kubelet"  # pods/<uid>/volumes/... (emptyDir proof)
    pod_logs_dir: str = "/var/log/pods"  # <ns>_<pod>_<uid>/<container>/N.log (CRI log files, stream tags)
    containerd_address: str = "/run/containerd/containerd.sock"
    ctr: str = "ctr"  # containerd's client on the node (runtime identity from containerd's records)
    containerd_root: str = "/var/lib/containerd"  # containerd's root on the node (the CRI's container records)
    runtime_type: str | None = None  # containerd runtime type behind the handler (io.containerd.reaper.v2, ...)
    runtime_binary: str | None = None  # process name of the runtime the shim runs (reaper-runtime, runc)
    containerd_restart: str | None = None  # node shell command restarting containerd in place (S41); None: cannot
    context: str | None = None  # the kubeconfig's context to use (None: its current context)
    handler: str | None = None  # the containerd handler the RuntimeClass names (None: the RuntimeClass's own name)
    versions: dict = field(default_factory=dict)  # what the cluster runs: kubernetes, containerd, etcd, node image

    @property
    def runtime_handler(self) -> str:
        return self.handler or self.runtime_class

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> "ClusterInfo":
        data = json.loads(Path(path).read_text())
        data["nodes"] = tuple(data.get("nodes", ()))
        return cls(**data)

    def node_access_impl(self, runner: Runner | None = None) -> "NodeAccess":
        if self.node_access == "local":
            return LocalNode(runner)
        if self.node_access == "docker":
            return DockerNode(runner)
        if self.node_access == "pods":
            from ci.cluster.podnode import PodNode

            return PodNode(self.kubeconfig, self.image, self.context, runner)
        raise ValueError(f"unknown node access {self.node_access!r}")


class NodeAccess(abc.ABC):
    """Run a command on a node, read and write files there, through the one runner
    (:class:`ci.tools.ShRunner` unless one is given). Results never raise on non-zero exit;
    ``Result.stdout``/``.stderr`` are kept apart."""

    def __init__(self, runner: Runner | None = None):
        self.runner: Runner = runner if runner is not None else ShRunner()

    @abc.abstractmethod
    def argv(self, node: str, argv: Sequence[str]) -> list[str]:
        """The host command line that runs ``argv`` on ``node``."""

    def run(self, node: str, argv: Sequence[str], timeout: float = 30, input: str | bytes | None = None) -> Result:
        return self.runner(self.argv(node, argv), check=False, input=input, timeout=timeout, stderr=False)

    def sh(self, node: str, script: str, timeout: float = 30) -> Result:
        return self.run(node, ["/bin/sh", "-c", script], timeout=timeout)

    def read_file(self, node: str, path: str, timeout: float = 30) -> str | None:
        """File content, or None if it does not exist."""
        r = self.run(node, ["cat", path], timeout=timeout)
        return r.stdout if r.returncode == 0 else None

    def write_file(self, node: str, path: str, content: str, timeout: float = 30) -> None:
        r = self.run(node, ["/bin/sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "sh", path], timeout=timeout, input=content)
        if r.returncode != 0:
            raise SetupError(f"writing {path} on {node} failed: {(r.stderr or r.stdout).strip()[-300:]}")

    def put(self, node: str, src: Path, dest: str, mode: str = "0755", timeout: float = 120) -> None:
        """Copy a (binary) file onto ``node`` atomically: a temporary beside ``dest``, then a rename,
        so a running shim never sees a half-written binary."""
        tmp = f"{dest}.reaper-ci-tmp"
        script = f'mkdir -p "$(dirname "$1")" && cat > "$2" && chmod {mode} "$2" && mv -f "$2" "$1"'
        r = self.run(node, ["/bin/sh", "-c", script, "sh", dest, tmp], timeout=timeout, input=Path(src).read_bytes())
        if r.returncode != 0:
            raise SetupError(f"installing {Path(src).name} to {node}:{dest} failed: {(r.stderr or r.stdout).strip()[:300]}")


class LocalNode(NodeAccess):
    """The node is this host (local provisioner)."""

    def argv(self, node: str, argv: Sequence[str]) -> list[str]:
        return list(argv)


class DockerNode(NodeAccess):
    """kind nodes are Docker containers named after the node."""

    def argv(self, node: str, argv: Sequence[str]) -> list[str]:
        return ["docker", "exec", "-i", node, *argv]


def info_path(state_dir: Path) -> Path:
    return Path(state_dir) / "cluster.json"


def find_cluster_info(default_state_dir: Path | None = None) -> Path | None:
    env = os.environ.get(CLUSTER_INFO_ENV)
    if env:
        return Path(env)
    if default_state_dir is None:
        from ci.config import DEFAULT_STATE_DIR

        default_state_dir = DEFAULT_STATE_DIR
    p = info_path(default_state_dir)
    return p if p.is_file() else None


class Provisioner(abc.ABC):
    """One way to get a cluster with the runtime under test installed."""

    name: str

    @abc.abstractmethod
    def check_prerequisites(self) -> None:
        """Raise ToolMissing/SetupError with one line if this provisioner cannot run here."""

    @abc.abstractmethod
    def up(self) -> ClusterInfo:
        """Create or reuse (repair) the cluster and install the runtime; idempotent."""

    @abc.abstractmethod
    def down(self) -> None:
        """Remove everything ``up`` created; safe to call on a half-made or absent cluster."""

    @abc.abstractmethod
    def status(self) -> str:
        """One short human-readable paragraph."""

    @abc.abstractmethod
    def collect_logs(self, dest: Path) -> list[Path]:
        """Copy every component's log and the runtime's log into ``dest``."""
