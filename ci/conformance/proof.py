"""Proof that every e2e pod ran on the handler under test, from two records kept while e2e runs:
the API's (each pod's ``runtimeClassName`` in e2e's namespaces) and containerd's (each container's
runtime type, and the pod it belongs to, from ``ctr containers info``). The API's record also keeps
which pods started a workload of the pause image (:mod:`ci.conformance.unjudged`)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

from ci.cluster.base import ClusterInfo, NodeAccess
from ci.cluster.verify import Verifier, _read
from ci.conformance.policy import NAMESPACE_LABEL

POLL = 3.0  # seconds between looks (e2e's pods live seconds to minutes)


@dataclass
class Records:
    pods: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # uid -> (ns/name, runtimeClassName)
    containers: dict[str, tuple[str, str]] = field(default_factory=dict)  # container id -> (pod uid, runtime type)
    pause_pods: dict[str, set[str]] = field(default_factory=dict)  # namespace -> pods that started a pause workload
    errors: list[str] = field(default_factory=list)

    def see(self, ns: str, pod: dict, pause_ref: str | None) -> None:
        """One look at an e2e pod: its RuntimeClass (first look) and whether a workload container of
        the pause image has been created in the runtime (a container id in its status)."""
        m, spec = pod["metadata"], pod.get("spec") or {}
        self.pods.setdefault(m["uid"], (f"{ns}/{m['name']}", spec.get("runtimeClassName")))
        if not pause_ref:
            return
        images = {c["name"]: c.get("image") for key in ("containers", "initContainers") for c in spec.get(key) or []}
        status = pod.get("status") or {}
        for st in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
            if st.get("containerID") and pause_ref in (images.get(st.get("name")), st.get("image")):
                self.pause_pods.setdefault(ns, set()).add(m["name"])

    def verdict(self, runtime_class: str, runtime_type: str) -> tuple[bool, str]:
        """(all on the handler, one line): every e2e pod seen names the RuntimeClass (or one of its
        own a spec chose: counted apart) and every container of theirs ran on the handler's runtime."""
        ours = {uid for uid, (_, rc) in self.pods.items() if rc == runtime_class}
        own = {uid for uid, (_, rc) in self.pods.items() if rc not in (None, runtime_class)}
        unset = [self.pods[uid][0] for uid, (_, rc) in self.pods.items() if rc is None]
        cont = [(cid, uid, rt) for cid, (uid, rt) in self.containers.items() if uid in ours]
        wrong = [f"{self.pods[uid][0]} ({rt})" for _, uid, rt in cont if rt != runtime_type]
        ok = bool(ours) and not unset and not wrong and bool(cont)
        line = (f"{len(ours)} e2e pod(s) with RuntimeClass {runtime_class} (API), {len(cont)} of their containers on "
                f"{runtime_type} (containerd)" + (f"; {len(own)} pod(s) of specs that name their own RuntimeClass" if own else "")
                + (f"; WITHOUT RuntimeClass: {', '.join(unset[:5])}" if unset else "")
                + (f"; on another runtime: {', '.join(wrong[:5])}" if wrong else ""))
        return ok, line


class Watcher:
    """Polls both records in a thread until :meth:`stop`."""

    def __init__(self, info: ClusterInfo, node: NodeAccess, pause_ref: str | None = None):
        self.info, self.node, self.pause_ref = info, node, pause_ref
        self.api = Verifier(info.kubeconfig, info.context)
        self.records = Records()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="e2e-proof")

    def start(self) -> "Watcher":
        self._thread.start()
        return self

    def stop(self) -> Records:
        self._stop.set()
        self._thread.join(timeout=60)
        self.look()
        return self.records

    def _loop(self) -> None:
        while not self._stop.wait(POLL):
            self.look()

    def look(self) -> None:
        try:
            self._pods()
            for node in self.info.nodes:
                self._containers(node)
        except Exception as e:  # noqa: BLE001 - a missed look is recorded, the next one goes on
            if len(self.records.errors) < 20:
                self.records.errors.append(f"{type(e).__name__}: {str(e)[:200]}")

    def _pods(self) -> None:
        core = self.api.core
        spaces = _read(core.list_namespace(label_selector=NAMESPACE_LABEL, _preload_content=False, _request_timeout=10))
        for ns in spaces.get("items", []):
            name = ns["metadata"]["name"]
            for p in _read(core.list_namespaced_pod(name, _preload_content=False, _request_timeout=10)).get("items", []):
                self.records.see(name, p, self.pause_ref)

    def _containers(self, node: str) -> None:
        ctr = [self.info.ctr, "--address", self.info.containerd_address, "-n", "k8s.io", "containers"]
        r = self.node.run(node, [*ctr, "ls", "-q"], timeout=30)
        for cid in r.stdout.split():
            if cid in self.records.containers:
                continue
            i = self.node.run(node, [*ctr, "info", cid], timeout=30)
            if i.returncode != 0:
                continue  # gone between the listing and the look
            doc = json.loads(i.stdout)
            uid = (doc.get("Labels") or {}).get("io.kubernetes.pod.uid", "")
            self.records.containers[cid] = (uid, (doc.get("Runtime") or {}).get("Name", "?"))
