"""Node access through the Kubernetes API, for any cluster: a host-exec pod per node.

Each node gets one short-lived privileged pod in the namespace :data:`NAMESPACE` (hostPID,
hostNetwork, hostIPC, on the cluster's default runtime: never the RuntimeClass under test, so a
broken runtime cannot take its own inspection down). A command runs as ``kubectl exec`` into that
pod, then ``nsenter`` into the namespaces of the node's kubelet: the node's own mount table,
processes, network and binaries, as a shell on the node would see them. The image is the suite's
own busybox image (``--image``), so an air-gapped cluster needs nothing pulled.

The pods are created on first use (and found again by name by every other process of the run:
the pytest workers) and removed, with their namespace, by :meth:`PodNode.close` at the end.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from typing import Callable, Sequence

from ci import console
from ci.cluster.base import NodeAccess
from ci.errors import SetupError
from ci.tools import Runner
from ci.wait import until

NAMESPACE = "reaper-ci-node-access"
LABELS = {"app.kubernetes.io/component": "node-access"}
READY_TIMEOUT = 120  # seconds for a host-exec pod to run (image present: a few seconds)
GONE_TIMEOUT = 90  # seconds for the namespace to be gone at the end
# into the kubelet's namespaces: on a kind node that is the node container, elsewhere the host
ENTER = ('k=$(pidof kubelet); k=${k%% *}; '
         '[ -n "$k" ] || { echo "reaper-ci node access: no kubelet process on this node" >&2; exit 125; }; '
         'exec nsenter -t "$k" -m -u -i -n -p -- /bin/sh -c \'exec "$@"\' sh "$@"')
# (the node's own /bin/sh runs the command: busybox would run its own applet for a bare name like `ps`)


def pod_name(node: str) -> str:
    """A DNS label per node: readable prefix plus a digest (node names may be long FQDNs)."""
    short = re.sub(r"[^a-z0-9-]", "-", node.lower())[:40].strip("-")
    return f"node-{short}-{hashlib.sha256(node.encode()).hexdigest()[:8]}"


def manifest(node: str, image: str) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name(node), "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/managed-by": "reaper-ci", **LABELS}},
        "spec": {
            "nodeName": node, "hostPID": True, "hostNetwork": True, "hostIPC": True,
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 0, "automountServiceAccountToken": False,
            "tolerations": [{"operator": "Exists"}],  # every node the run uses, tainted or not
            "containers": [{
                "name": "node", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"],
                "securityContext": {"privileged": True},
            }],
        },
    }


def running(status: dict | None) -> bool | str:
    """True when the pod's container runs, else what is seen (for the timeout message)."""
    if status is None:
        return "not created"
    phase = status.get("phase")
    for c in status.get("containerStatuses") or []:
        st = c.get("state") or {}
        if "running" in st and phase == "Running":
            return True
        waiting = st.get("waiting") or {}
        if waiting.get("reason") in ("ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                                     "CreateContainerConfigError", "CreateContainerError", "RunContainerError"):
            raise SetupError(f"host-exec pod cannot start: {waiting.get('reason')}: {str(waiting.get('message'))[:200]}")
    return f"phase {phase}"


class PodNode(NodeAccess):
    """:class:`NodeAccess` through host-exec pods (``ClusterInfo.node_access == "pods"``)."""

    def __init__(self, kubeconfig: str, image: str, context: str | None = None, runner: Runner | None = None,
                 api=None, kubectl: str = "kubectl", sleep: Callable[[float], None] = time.sleep):
        super().__init__(runner)
        self.kubeconfig, self.image, self.context, self.kubectl = kubeconfig, image, context, kubectl
        self._api = api
        self._ready: set[str] = set()
        self._lock = threading.Lock()
        self._sleep = sleep

    @property
    def api(self):
        if self._api is None:
            from ci.cluster.verify import Verifier

            self._api = Verifier(self.kubeconfig, self.context)
        return self._api

    def _kubectl(self) -> list[str]:
        return [self.kubectl, "--kubeconfig", self.kubeconfig, *(["--context", self.context] if self.context else [])]

    def argv(self, node: str, argv: Sequence[str]) -> list[str]:
        self.ensure(node)
        return [*self._kubectl(), "exec", "-i", "-n", NAMESPACE, pod_name(node), "--",
                "/bin/sh", "-c", ENTER, "sh", *argv]

    def ensure(self, node: str, timeout: float = READY_TIMEOUT) -> None:
        """The node's host-exec pod runs (created when missing; one that ended is made anew)."""
        with self._lock:
            if node in self._ready:
                return
            name = pod_name(node)
            status = self.api.pod_status(NAMESPACE, name)
            if status is not None and status.get("phase") in ("Failed", "Succeeded"):
                self.api.delete_pod(NAMESPACE, name, now=True)
                status = None
            if status is None:
                self.api.ensure_namespace(NAMESPACE, LABELS)
                try:
                    self.api.create_pod(manifest(node, self.image))
                except SetupError as e:
                    if "HTTP 409" not in str(e):  # another process of this run made it meanwhile
                        raise
            until(f"host-exec pod {NAMESPACE}/{name} on node {node} (node access goes through it)",
                  lambda: running(self.api.pod_status(NAMESPACE, name)), timeout, poll=0.25, definite=(SetupError,),
                  sleep=self._sleep)
            self._ready.add(node)

    def close(self, timeout: float = GONE_TIMEOUT) -> None:
        """Remove every host-exec pod with their namespace, and wait until it is gone; unless another
        run of the suite on this cluster is still going (it uses the same pods: its own end removes them)."""
        self._ready.clear()
        if self.api.namespace_phase(NAMESPACE) is None:
            return
        others = self.api.live_runs()
        if others:
            console.info(f"host-exec pods in {NAMESPACE} kept: run(s) {', '.join(others)} of the suite still use them")
            return
        self.api.delete_namespace(NAMESPACE)
        until(f"namespace {NAMESPACE} (the host-exec pods) gone", lambda: self.api.namespace_phase(NAMESPACE) is None
              or f"namespace {self.api.namespace_phase(NAMESPACE)}", timeout, sleep=self._sleep)
