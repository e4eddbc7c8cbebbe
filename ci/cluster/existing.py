"""``--provisioner existing``: a cluster someone else made and runs (kubeconfig given).

Nothing is created, installed or torn down: the runtime under test is whatever the RuntimeClass's
handler runs on the nodes (installed by Helm, Ansible, a package...). ``up`` checks, in this order,
each failure one line (exit 3): the kubeconfig loads, the API server answers, the RuntimeClass
exists and names a handler, there are schedulable Ready nodes (``--node-selector``), each node's
containerd serves the handler (read through a host-exec pod: :mod:`ci.cluster.nodefacts`), and a
smoke pod runs on the handler on every node the run will use. Node access is always through the
API (:class:`ci.cluster.podnode.PodNode`). ``down`` removes only what the run made there: the
host-exec pods' namespace and the smoke pods.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Callable

from ci import console, tools
from ci.cluster import nodefacts, runtime as rt, verify
from ci.cluster.base import ClusterInfo, Provisioner
from ci.cluster.podnode import NAMESPACE, PodNode
from ci.config import Config
from ci.errors import SetupError, ToolMissing
from ci.wait import until

SMOKE_TIMEOUT = 120
API_TIMEOUT = 20


class ExistingProvisioner(Provisioner):
    name = "existing"

    def __init__(self, cfg: Config, *, api: Callable[[str, str | None], verify.Api] = verify.Verifier,
                 access: Callable[..., PodNode] = PodNode, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.cfg = cfg
        self.sleep, self.clock = sleep, clock
        self.kubeconfig = str(cfg.kubeconfig)
        key = hashlib.sha256(f"{self.kubeconfig}\0{cfg.context or ''}".encode()).hexdigest()[:12]
        self.dir = Path(cfg.state_dir) / "existing" / key  # what a run made on this cluster, for `down`
        self._api_factory, self._access_factory = api, access
        self._api: verify.Api | None = None
        self._access: PodNode | None = None

    # ---------------------------------------------------------------- checks

    def check_prerequisites(self) -> None:
        if not tools.which("kubectl"):
            raise ToolMissing("--provisioner existing: `kubectl` not found on PATH (node access runs `kubectl exec`): "
                              "install kubectl")
        path = Path(self.kubeconfig)
        if not path.is_file():
            raise SetupError(f"--kubeconfig {path}: no such file")
        try:
            self._api = self._api_factory(self.kubeconfig, self.cfg.context)
        except Exception as e:  # noqa: BLE001 - any loading problem (YAML, context, certificates) is one line
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            raise SetupError(f"--kubeconfig {path}{' --context ' + self.cfg.context if self.cfg.context else ''} "
                             f"is unusable: {type(e).__name__}: {first}") from None

    @property
    def api(self) -> verify.Api:
        if self._api is None:
            self.check_prerequisites()
        return self._api  # type: ignore[return-value]

    @property
    def access(self) -> PodNode:
        if self._access is None:
            self._access = self._access_factory(self.kubeconfig, self.cfg.image, self.cfg.context, api=self.api)
        return self._access

    def _nodes(self) -> list[str]:
        items = self.api.nodes(self.cfg.node_selector)
        picked, why = [], []
        for n in items:
            name = n["metadata"]["name"]
            ready = {c.get("type"): c.get("status") for c in n.get("status", {}).get("conditions", [])}.get("Ready")
            blocked = [t["key"] for t in n.get("spec", {}).get("taints", []) or [] if t.get("effect") in ("NoSchedule", "NoExecute")]
            if n.get("spec", {}).get("unschedulable"):
                why.append(f"{name} cordoned")
            elif ready != "True":
                why.append(f"{name} not Ready")
            elif blocked:
                why.append(f"{name} tainted {','.join(blocked)}")
            else:
                picked.append(name)
        if not picked:
            where = f" matching --node-selector {self.cfg.node_selector!r}" if self.cfg.node_selector else ""
            raise SetupError(f"no schedulable Ready node{where}" + (f" ({'; '.join(why)})" if why else " (none listed)"))
        return sorted(picked)

    # ---------------------------------------------------------------- life cycle

    def up(self) -> ClusterInfo:
        cfg, api = self.cfg, self.api
        try:
            until("the API server", api.readyz, API_TIMEOUT, poll=1, sleep=self.sleep, clock=self.clock)
        except SetupError as e:
            host = getattr(getattr(getattr(api, "api", None), "configuration", None), "host", None)
            raise SetupError(f"the API server{' at ' + host if host else ''} (--kubeconfig {self.kubeconfig}) does not "
                             f"answer within {API_TIMEOUT}s: {short_reason(str(e))}") from None
        handler = api.runtime_class_handler(cfg.runtime_class)
        if handler is None:
            raise SetupError(f"RuntimeClass {cfg.runtime_class} does not exist on this cluster (the runtime under test "
                             "is found through it: install the runtime with its RuntimeClass, or pass --runtime-class)")
        nodes = self._nodes()
        facts = [self._facts(node, handler) for node in nodes]
        differ = nodefacts.same_setup(facts)
        if differ:
            raise SetupError(f"RuntimeClass {cfg.runtime_class}: {differ}; limit the run with --node-selector")
        runtime = self._runtime(facts[0])
        f = facts[0]
        info = rt.cluster_info(
            cfg, runtime, provisioner="existing", kubeconfig=self.kubeconfig, context=cfg.context, nodes=tuple(nodes),
            node_access="pods", runtime_class=cfg.runtime_class, handler=handler, runtime_type=f.runtime_type,
            runtime_log=f.runtime_log, runtime_state_dir=f.runtime_state_dir, kubelet_root=f.kubelet_root,
            pod_logs_dir=f.pod_logs_dir, containerd_address=f.containerd_address, ctr=f.ctr,
            containerd_root=f.containerd_root,
            containerd_restart=cfg.containerd_restart or f.containerd_restart,
            source=None, source_commit=None,
        )
        wait = lambda what, probe, timeout: until(what, probe, timeout, poll=0.5, sleep=self.sleep, clock=self.clock)  # noqa: E731
        for node in nodes:  # the handler must run a pod on every node the run uses
            verify.smoke(api, info, wait, timeout=SMOKE_TIMEOUT, node=node)
        info.save(self.dir / "cluster.json")
        console.info(f"existing cluster: RuntimeClass {cfg.runtime_class} -> {f.runtime_type} ({runtime}) on "
                     f"{', '.join(nodes)}; node access through host-exec pods in namespace {NAMESPACE}")
        return info

    def _facts(self, node: str, handler: str) -> nodefacts.NodeFacts:
        try:
            return nodefacts.discover(self.access, node, handler)
        except SetupError as e:
            raise SetupError(f"RuntimeClass {self.cfg.runtime_class} (handler {handler!r}) is not served on node {node}: "
                             f"{e}") from None

    def _runtime(self, f: nodefacts.NodeFacts) -> str:
        """reaper or runc, from the runtime type behind the handler; ``--runtime`` must agree."""
        seen = {self.cfg.runtime_type: "reaper", rt.RUNC_RUNTIME_TYPE: "runc"}.get(f.runtime_type)
        if seen is None:
            raise SetupError(f"RuntimeClass {self.cfg.runtime_class} runs {f.runtime_type!r} on node {f.node}: neither "
                             f"reaper ({self.cfg.runtime_type}, --runtime-type) nor runc")
        asked = self.cfg.runtime_requested
        if asked != "auto" and asked != seen:
            raise SetupError(f"--runtime {asked}, but RuntimeClass {self.cfg.runtime_class} runs {f.runtime_type} "
                             f"({seen}) on node {f.node}")
        return seen

    def down(self) -> None:
        """Only what the run made: the host-exec pods (their namespace) and any smoke pod left."""
        if not Path(self.kubeconfig).is_file():
            return
        if self._access is None and not (self.dir / "cluster.json").is_file():
            return  # this process made nothing there, and no earlier run recorded that it did
        try:
            self.access.close()
            for node in self._recorded_nodes():
                self.api.delete_pod("default", verify.smoke_name(node), now=True)
            (self.dir / "cluster.json").unlink(missing_ok=True)
        except SetupError:
            raise
        except Exception as e:  # noqa: BLE001 - an API gone away: one line, the run's verdict stands
            raise SetupError(f"removing the run's host-exec pods: {type(e).__name__}: {short_reason(str(e))}") from None

    def _recorded_nodes(self) -> tuple[str, ...]:
        path = self.dir / "cluster.json"
        try:
            return ClusterInfo.load(path).nodes if path.is_file() else ()
        except (OSError, ValueError, TypeError):
            return ()

    def status(self) -> str:
        try:
            ready = self.api.readyz()
        except Exception as e:  # noqa: BLE001
            return f"existing cluster ({self.kubeconfig}): API unreachable ({type(e).__name__})"
        handler = self.api.runtime_class_handler(self.cfg.runtime_class) if ready is True else None
        host_exec = self.api.namespace_phase(NAMESPACE) if ready is True else None
        return (f"existing cluster ({self.kubeconfig}): API {'ready' if ready is True else ready}; RuntimeClass "
                f"{self.cfg.runtime_class}: {'handler ' + repr(handler) if handler else 'missing'}; host-exec pods: "
                f"{'namespace ' + host_exec if host_exec else 'none'}")

    def collect_logs(self, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        try:
            text = self.api.dump()
        except Exception as e:  # noqa: BLE001 - best effort
            text = f"unavailable: {type(e).__name__}: {e}"
        out = dest / "api-state.txt"
        out.write_text(text)
        return [out]


def short_reason(text: str) -> str:
    """The cause inside a client library's long connection error (``[Errno 111] Connection refused``)."""
    import re

    m = re.search(r"\[Errno -?\d+\] [^\"')(]+", text) or re.search(r"(timed out|certificate verify failed[^\"')]*)", text)
    return m.group(0).strip() if m else text.strip().splitlines()[0][:200] if text.strip() else "no answer"
