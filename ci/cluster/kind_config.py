"""What the kind path puts on a node, as pure functions: the kind config (containerd handler entry),
reaper's environment, where logs and state live, and readers of the node's answers.

reaper is installed the way its own kind/Helm/Ansible install does it (read at reaper a8a0d28 and
d8d19fe, see :func:`reaper_node_env`): binaries in ``/usr/local/bin``, state and logs under
``/run/reaper``, and only the settings that install gives; its isolation defaults (per-namespace
overlays at a8a0d28, one node-wide overlay at d8d19fe) are left alone, since they are what is tested.
"""

from __future__ import annotations

import hashlib
import json
import re

from ci.cluster import runtime as rt
from ci.config import REPO_ROOT, Config
from ci.errors import SetupError

KIND_CONFIG_FILE = REPO_ROOT / "kind" / "cluster.yaml"
KIND_VERSION = "v0.29.0"  # the kind release whose kindest/node:v1.33.1 digest is the default image
NODE_BIN = "/usr/local/bin"
NODE_KUBECTL = "/usr/bin/kubectl"  # kindest/node ships kubeadm, kubelet and kubectl there
# reaper's own folder: its default REAPER_RUNTIME_ROOT (state entries, overlays, namespaces) and where
# its install puts the runtime log. /run is the node container's own tmpfs; /var is a volume kind
# mounts into the node, outside what reaper's overlay shows, so no reaper file goes there.
REAPER_RUN = "/run/reaper"
REAPER_LOG = f"{REAPER_RUN}/runtime.log"  # REAPER_RUNTIME_LOG of reaper's install
REAPER_SHIM_LOG = f"{REAPER_RUN}/shim.log"  # REAPER_SHIM_LOG: reaper's default is none (no shim log)
REAPER_DNS_MODE = "kubernetes"  # REAPER_DNS_MODE of reaper's install (Ansible/Helm default)
# containerd forwards pod annotations matching these to the runtime (reaper's scripts/kind-config.yaml
# and install-reaper.yml at a8a0d28; reaper.runtime/* annotations select DNS mode or a named overlay)
POD_ANNOTATIONS = ("reaper.runtime/*",)
CI_LOG_DIR = "/var/log/reaper-ci"  # our journal copies of containerd and kubelet (not reaper's files)
CRI_BASE_SPEC = "/etc/containerd/cri-base.json"  # base OCI spec of the node image's own runc handler
CRI_PLUGINS = ("io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime")  # containerd config v2 / v3
CONTAINERD_DROPIN = "/etc/systemd/system/containerd.service.d/reaper-ci.conf"
JOURNAL_UNIT = "reaper-ci-journal@"  # instance per unit: copies its journal into a file the suite can tail
JOURNAL_UNIT_FILE = f"/etc/systemd/system/{JOURNAL_UNIT}.service"
JOURNALED = ("containerd", "kubelet")  # kind runs these as systemd units (journal only, no log file)
CONFIG_MARKER = "/etc/reaper-ci/kind-config.sha256"  # on each node: digest of the config it was made from
RUNC_STATE = "/run/containerd/runc/k8s.io"
API_SAVE_PLATFORM = (1, 48)  # Docker API that has `docker save --platform` (Docker 28.0)

TRIPLES = {
    "x86_64": "x86_64-unknown-linux-musl",
    "amd64": "x86_64-unknown-linux-musl",
    "aarch64": "aarch64-unknown-linux-musl",
    "arm64": "aarch64-unknown-linux-musl",
}


def target_triple(machine: str) -> str:
    """``uname -m`` of a node -> the static musl target to build for."""
    triple = TRIPLES.get(machine.strip().lower())
    if triple is None:
        raise SetupError(f"kind node architecture {machine.strip()!r} is not supported (x86_64 or aarch64)")
    return triple


def handler_entry(cfg: Config, runtime: str) -> str:
    """containerd (config version 2, as in kindest/node) entry for handler ``cfg.runtime_class``.

    reaper: the local path's entry (:func:`ci.cluster.runtime.handler_toml`) plus the pod
    annotations reaper's own kind config passes through. runc: like the node image's own ``runc``
    handler (base spec, ``SystemdCgroup = true``): kind's kubelet uses the systemd cgroup driver.
    """
    if runtime == "reaper":
        # handler_toml's entry already passes POD_ANNOTATIONS through (the same entry as the local path)
        return rt.handler_toml(cfg.runtime_class, "reaper", cfg.runtime_type, None, config_version=2)
    base = f'[plugins."{CRI_PLUGINS[0]}".containerd.runtimes.{rt._toml_key(cfg.runtime_class)}]'
    return (f'{base}\n  runtime_type = "{rt.RUNC_RUNTIME_TYPE}"\n  base_runtime_spec = "{CRI_BASE_SPEC}"\n'
            f'{base[:-1]}.options]\n  SystemdCgroup = true\n')


def render_config(cfg: Config, runtime: str) -> str:
    """The kind cluster config: a control-plane node and ``--nodes`` - 1 workers, whose containerd
    gets the handler entry (:func:`handler_entry`) through ``containerdConfigPatches`` (kind applies
    the patches to every node at creation)."""
    lines = [
        "# rendered by ci/cluster/kind.py (source: kind/cluster.yaml)",
        "kind: Cluster",
        "apiVersion: kind.x-k8s.io/v1alpha4",
        "nodes:",
        "  - role: control-plane",
        *("  - role: worker" for _ in range(cfg.nodes - 1)),
        "containerdConfigPatches:",
        "  - |-",
        *(f"    {ln}" for ln in handler_entry(cfg, runtime).rstrip("\n").splitlines()),
    ]
    api = admission_policy_api(cfg.kind_node_image)
    if api:  # nox -s conformance puts e2e's pods on the handler with a MutatingAdmissionPolicy
        lines += ["featureGates:", "  MutatingAdmissionPolicy: true", "runtimeConfig:", f'  "admissionregistration.k8s.io/{api}": "true"']
    return "\n".join(lines) + "\n"


def admission_policy_api(node_image: str) -> str | None:
    """The MutatingAdmissionPolicy API version the node image's Kubernetes has (v1alpha1 in 1.32-1.33,
    v1beta1 from 1.34), None before 1.32 (the feature gate does not exist there: naming it would
    stop the apiserver)."""
    m = re.search(r":v1\.(\d+)\.\d+", node_image)
    if not m or int(m.group(1)) < 32:
        return None
    return "v1alpha1" if int(m.group(1)) < 34 else "v1beta1"


def reaper_node_env(cfg: Config) -> dict[str, str]:
    """reaper's environment on a kind node: what reaper's own install gives it, no more.

    reaper's install (a8a0d28: deploy/ansible/install-reaper.yml and the Helm chart's
    scripts/install-node.sh write /etc/reaper/reaper.conf; d8d19fe: ansible/install-reaper.yml puts
    it in /etc/default/containerd) sets ``REAPER_DNS_MODE=kubernetes`` (a8a0d28 only reads it) and
    ``REAPER_RUNTIME_LOG=/run/reaper/runtime.log``. Given to containerd here (the environment wins
    over reaper.conf; the node has none). Two more, neither changes behaviour: ``REAPER_RUNTIME_PATH``
    spells out the shim's default ``/usr/local/bin/reaper-runtime`` (needed for --runtime-binary),
    and ``REAPER_SHIM_LOG`` turns on the shim's file log for diagnostics (reaper's default: none).
    Nothing about state or overlays (``REAPER_RUNTIME_ROOT``, ``REAPER_OVERLAY_*``): their defaults
    are the layout under test.
    """
    return {
        "REAPER_DNS_MODE": REAPER_DNS_MODE,
        "REAPER_RUNTIME_LOG": REAPER_LOG,
        "REAPER_RUNTIME_PATH": f"{NODE_BIN}/{cfg.runtime_binary}",
        "REAPER_SHIM_LOG": REAPER_SHIM_LOG,
    }


def effective_handler(dump: str, handler: str) -> dict | str:
    """The handler's entry in ``containerd config dump`` output (config v2 or v3), or what is wrong."""
    import tomllib

    try:
        plugins = tomllib.loads(dump).get("plugins", {})
    except tomllib.TOMLDecodeError as e:
        return f"unreadable `containerd config dump` ({e}): {dump.strip()[:200]!r}"
    seen = []
    for plugin in CRI_PLUGINS:
        runtimes = plugins.get(plugin, {}).get("containerd", {}).get("runtimes", {})
        if handler in runtimes:
            return runtimes[handler]
        seen += sorted(runtimes)
    return f"no handler {handler!r} (handlers: {', '.join(seen) or 'none'})"


def journal_unit() -> str:
    """systemd template unit: ``reaper-ci-journal@containerd`` appends containerd's journal (from its
    start, then following) to ``/var/log/reaper-ci/containerd.log``, so the suite can grep and tail the
    component logs by path on kind nodes as on the local node."""
    return ("[Unit]\nDescription=reaper-ci: copy the journal of %i into " + CI_LOG_DIR + "/%i.log\n\n"
            "[Service]\nExecStart=/bin/sh -c 'exec journalctl --unit %i.service --follow --lines all --output short-iso "
            ">> " + CI_LOG_DIR + "/%i.log'\n")


def component_logs(runtime: str) -> dict[str, str]:
    """Node paths of the component logs (ClusterInfo.component_logs; same names as the local path)."""
    logs = {c: f"{CI_LOG_DIR}/{c}.log" for c in JOURNALED}
    if runtime == "reaper":
        logs.update({"reaper-runtime": REAPER_LOG, "reaper-shim": REAPER_SHIM_LOG})
    return logs


def config_digest(config_text: str, node_image: str) -> str:
    return hashlib.sha256(f"{node_image}\n{config_text}".encode()).hexdigest()


def containerd_dropin(env: dict[str, str]) -> str:
    """systemd drop-in giving containerd (and so every shim it starts) the runtime's environment."""
    return "[Service]\n" + "".join(f'Environment="{k}={v}"\n' for k, v in sorted(env.items()))


def cri_ready(info_json: str) -> bool | str:
    """True when ``crictl info`` says RuntimeReady and NetworkReady (containerd's CRI plugin is up
    again after a restart), else the state seen."""
    try:
        conds = json.loads(info_json).get("status", {}).get("conditions", [])
    except (json.JSONDecodeError, AttributeError):
        return f"unreadable `crictl info`: {info_json.strip()[:200]!r}"
    state = {c.get("type"): c for c in conds if isinstance(c, dict)}
    down = [f"{t}={state.get(t, {}).get('status')} ({state.get(t, {}).get('reason') or ''})"
            for t in ("RuntimeReady", "NetworkReady") if state.get(t, {}).get("status") is not True]
    return True if not down else "; ".join(down)


def api_version(text: str) -> tuple[int, int] | None:
    """The lowest ``major.minor`` in ``docker version`` output (client and server API), or None."""
    found = []
    for word in text.split():
        parts = word.split(".")
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            found.append((int(parts[0]), int(parts[1])))
    return min(found) if found else None
