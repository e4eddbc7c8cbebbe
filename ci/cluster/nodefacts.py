"""What a node someone else set up keeps where, read from the node itself (the existing-cluster path).

Nothing is assumed about how the node was installed (package, Helm, Ansible, kind): the running
containerd and kubelet processes say which binary and config they use; ``containerd config dump``
(that binary, that config) says what runs behind the RuntimeClass handler; containerd's
environment says where reaper keeps its state and log. Every command goes through
:class:`ci.cluster.base.NodeAccess`, so it works through host-exec pods as through a shell.
"""

from __future__ import annotations

import posixpath
import shlex
import tomllib
from dataclasses import dataclass, field

from ci.cluster.base import NodeAccess
from ci.cluster.kind_config import effective_handler
from ci.errors import SetupError

PS_ARGV = ["ps", "-ww", "-eo", "pid,ppid,args"]
DEFAULT_ADDRESS = "/run/containerd/containerd.sock"
DEFAULT_ROOT = "/var/lib/containerd"
DEFAULT_KUBELET_ROOT = "/var/lib/kubelet"
DEFAULT_POD_LOGS = "/var/log/pods"
RUNC_DEFAULT_ROOT = "/run/containerd/runc"
SYSTEMD_RESTART = "systemctl restart containerd"


@dataclass
class NodeFacts:
    node: str
    runtime_type: str  # behind the handler: io.containerd.runc.v2, io.containerd.reaper.v2, ...
    containerd_address: str
    ctr: str
    kubelet_root: str
    pod_logs_dir: str
    runtime_state_dir: str | None
    runtime_log: str | None
    containerd_restart: str | None
    env: dict[str, str] = field(default_factory=dict)  # containerd's environment (reaper's settings live there)
    containerd_root: str = DEFAULT_ROOT  # containerd's root (the CRI's container records)


def processes(ps_out: str) -> list[tuple[int, list[str]]]:
    """(pid, argv) per line of ``ps -eo pid,ppid,args``."""
    out = []
    for line in ps_out.splitlines()[1:]:
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0].isdigit():
            out.append((int(parts[0]), parts[2].split()))
    return out


def find(procs: list[tuple[int, list[str]]], name: str) -> tuple[int, list[str]] | None:
    """The process whose program is ``name`` (by base name), the oldest (lowest pid) first."""
    hits = [(pid, argv) for pid, argv in procs if argv and posixpath.basename(argv[0]) == name]
    return min(hits) if hits else None


def flag(argv: list[str], *names: str) -> str | None:
    """The value of ``--name VALUE`` / ``--name=VALUE`` (any of ``names``) in ``argv``."""
    for i, a in enumerate(argv):
        for n in names:
            if a == n and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return None


def _run(access: NodeAccess, node: str, argv: list[str], what: str, timeout: float = 30) -> str:
    r = access.run(node, argv, timeout=timeout)
    if r.returncode != 0:
        raise SetupError(f"node {node}: {what} failed (exit {r.returncode}): {last_line(r.stderr or r.stdout)}")
    return r.stdout


def last_line(text: str) -> str:
    """The last meaningful line of a command's error output (not kubectl's own exit line)."""
    rows = [r.strip() for r in text.splitlines() if r.strip() and not r.startswith("command terminated with exit code")]
    return rows[-1][:300] if rows else "(no output)"


def discover(access: NodeAccess, node: str, handler: str) -> NodeFacts:
    procs = processes(_run(access, node, PS_ARGV, "listing processes (ps)"))
    containerd, kubelet = find(procs, "containerd"), find(procs, "kubelet")
    if containerd is None:
        raise SetupError(f"node {node}: no containerd process (the pipeline tests containerd runtimes)")
    if kubelet is None:
        raise SetupError(f"node {node}: no kubelet process")
    pid, argv = containerd
    exe = _run(access, node, ["readlink", f"/proc/{pid}/exe"], "finding containerd's binary").strip() or argv[0]
    config = flag(argv, "--config", "-c")
    dump = _run(access, node, [exe, *(["--config", config] if config else []), "config", "dump"],
                "`containerd config dump`")
    entry = effective_handler(dump, handler)
    if isinstance(entry, str):
        raise SetupError(f"node {node}: containerd serves no RuntimeClass handler {handler!r}: {entry}")
    parsed = tomllib.loads(dump)
    address = (parsed.get("grpc") or {}).get("address") or flag(argv, "--address", "-a") or DEFAULT_ADDRESS
    cd_root = flag(argv, "--root") or parsed.get("root") or DEFAULT_ROOT
    ctr = posixpath.join(posixpath.dirname(exe), "ctr")
    if access.run(node, ["test", "-x", ctr]).returncode != 0:
        ctr = "ctr"
    env = _environ(access.read_file(node, f"/proc/{pid}/environ") or "")
    _, kargv = kubelet
    kubelet_root = flag(kargv, "--root-dir") or DEFAULT_KUBELET_ROOT
    pod_logs = _pod_logs_dir(access, node, flag(kargv, "--config"))
    runtime_type = entry.get("runtime_type", "")
    if runtime_type == "io.containerd.runc.v2":
        root = (entry.get("options") or {}).get("Root") or RUNC_DEFAULT_ROOT
        state, log = posixpath.join(root, "k8s.io"), None
    else:  # reaper's knobs, as its install sets them in containerd's environment (its defaults otherwise)
        state, log = env.get("REAPER_RUNTIME_ROOT", "/run/reaper"), env.get("REAPER_RUNTIME_LOG")
    return NodeFacts(node=node, runtime_type=runtime_type, containerd_address=address, ctr=ctr,
                     kubelet_root=kubelet_root, pod_logs_dir=pod_logs, runtime_state_dir=state, runtime_log=log,
                     containerd_restart=_restart(access, node), env=env, containerd_root=cd_root)


def _environ(raw: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in raw.split("\0") if "=" in kv)


def _pod_logs_dir(access: NodeAccess, node: str, config: str | None) -> str:
    if not config:
        return DEFAULT_POD_LOGS
    text = access.read_file(node, config) or ""
    import yaml

    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return DEFAULT_POD_LOGS
    return (doc.get("podLogsDir") if isinstance(doc, dict) else None) or DEFAULT_POD_LOGS


def _restart(access: NodeAccess, node: str) -> str | None:
    """How to restart this node's containerd in place: a systemd unit's restart when containerd is
    an active unit; otherwise unknown (S41 is then skipped unless ``--containerd-restart`` says)."""
    r = access.run(node, ["systemctl", "is-active", "containerd"])
    return SYSTEMD_RESTART if r.returncode == 0 and r.stdout.strip() == "active" else None


def same_setup(facts: list[NodeFacts]) -> str | None:
    """None when every node serves the handler the same way, else what differs (one line)."""
    kinds = {f.runtime_type for f in facts}
    if len(kinds) > 1:
        return "nodes run different runtimes behind the handler: " + ", ".join(
            f"{f.node}={f.runtime_type}" for f in facts)
    for attr in ("containerd_address", "kubelet_root", "pod_logs_dir", "runtime_state_dir"):
        values = {getattr(f, attr) for f in facts}
        if len(values) > 1:
            return f"nodes differ in {attr}: " + ", ".join(f"{f.node}={shlex.quote(str(getattr(f, attr)))}" for f in facts)
    return None
