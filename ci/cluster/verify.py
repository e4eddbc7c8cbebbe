"""Provider-agnostic checks of a cluster, through the Kubernetes API (the kubeconfig a provisioner
wrote): API ready, nodes Ready, the default ServiceAccount, the RuntimeClass, and the smoke pod.

Both provisioners use these (and only these talk to the API server outside the suite). A
:class:`Verifier` is a thin reader/writer; :func:`smoke` is the smoke pod's logic on top of it, so
a fake Verifier tests it without a cluster.
"""

from __future__ import annotations

import json
import time
from typing import Callable, Protocol

import kubernetes
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from ci import console
from ci.cluster.base import ClusterInfo
from ci.errors import ClientMismatch, RuntimeFailure, SetupError, SmokeFailed

SMOKE_POD = "reaper-ci-smoke"
SMOKE_TEXT = "reaper-ci-smoke-ok"
MANAGED = {"app.kubernetes.io/managed-by": "reaper-ci"}
REQUEST = 10  # seconds per API request
SMOKE_PHASE = 10  # seconds after the smoke container's clean exit for the pod to turn Succeeded


class Api(Protocol):
    """What the provisioners and :func:`smoke` need of the API (:class:`Verifier`, or a fake)."""

    def readyz(self) -> bool | str: ...
    def nodes_ready(self, names: tuple[str, ...] = ()) -> bool | str: ...
    def default_service_account(self) -> bool | str: ...
    def apply_runtime_class(self, name: str) -> None: ...
    def runtime_class(self, name: str) -> bool | str: ...
    def runtime_class_handler(self, name: str) -> str | None: ...
    def nodes(self, selector: str | None = None) -> list[dict]: ...
    def ensure_namespace(self, name: str, labels: dict[str, str]) -> None: ...
    def namespace_phase(self, name: str) -> str | None: ...
    def delete_namespace(self, name: str) -> None: ...
    def pod_status(self, ns: str, name: str) -> dict | None: ...
    def create_pod(self, manifest: dict) -> None: ...
    def delete_pod(self, ns: str, name: str, *, now: bool = False) -> None: ...
    def pod_log(self, ns: str, name: str) -> str: ...
    def events(self, ns: str, name: str) -> list[str]: ...
    def dump(self) -> str: ...
    def live_runs(self) -> list[str]: ...


class Verifier:
    """The API, for one kubeconfig (never ~/.kube/config) and optionally one of its contexts."""

    def __init__(self, kubeconfig: str, context: str | None = None):
        self.api = config.new_client_from_config(config_file=str(kubeconfig), context=context, persist_config=False)
        self.core = client.CoreV1Api(self.api)
        self.node_api = client.NodeV1Api(self.api)

    def _get(self, path: str) -> tuple[int, str]:
        try:
            method, url, headers, body, post = self.api.param_serialize("GET", path)
        except (AttributeError, TypeError) as e:
            raise ClientMismatch(f"the kubernetes Python client {kubernetes.__version__} cannot build a request "
                                 f"({type(e).__name__}: {e}); install the version requirements.txt pins") from None
        try:
            r = self.api.call_api(method, url, headers, _request_timeout=REQUEST)
            r.read()
            return r.status, (r.data or b"").decode(errors="replace")
        except ApiException as e:
            return e.status or 0, str(e.body or e.reason)

    def readyz(self) -> bool | str:
        code, body = self._get("/readyz")
        return True if code == 200 else f"HTTP {code}: {body[-200:]}"

    def nodes_ready(self, names: tuple[str, ...] = ()) -> bool | str:
        items = _read(self.core.list_node(_preload_content=False, _request_timeout=REQUEST)).get("items", [])
        return nodes_verdict(items, names)

    def default_service_account(self) -> bool | str:
        for read, what in ((self.core.read_namespaced_service_account, "ServiceAccount default"),
                           (self.core.read_namespaced_config_map, "ConfigMap kube-root-ca.crt")):
            try:
                read("default" if what.startswith("Service") else "kube-root-ca.crt", "default",
                     _preload_content=False, _request_timeout=REQUEST)
            except ApiException as e:
                return f"{what} in namespace default: HTTP {e.status}"
        return True

    def apply_runtime_class(self, name: str) -> None:
        body = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": name, "labels": MANAGED},
                "handler": name}
        try:
            self.node_api.create_runtime_class(body, _preload_content=False, _request_timeout=REQUEST)
        except ApiException as e:
            if e.status != 409:
                raise SetupError(f"creating RuntimeClass {name} failed: HTTP {e.status} {_message(e)}") from None
            self.node_api.replace_runtime_class(name, body, _preload_content=False, _request_timeout=REQUEST)

    def runtime_class(self, name: str) -> bool | str:
        """True when RuntimeClass ``name`` exists and names the handler of the same name."""
        handler = self.runtime_class_handler(name)
        if handler is None:
            return "HTTP 404"
        return True if handler == name else f"handler is {handler!r}"

    def runtime_class_handler(self, name: str) -> str | None:
        """The handler RuntimeClass ``name`` names, or None when there is no such RuntimeClass."""
        try:
            return _read(self.node_api.read_runtime_class(name, _preload_content=False, _request_timeout=REQUEST)).get("handler")
        except ApiException as e:
            if e.status == 404:
                return None
            raise SetupError(f"reading RuntimeClass {name} failed: HTTP {e.status} {_message(e)}") from None

    def nodes(self, selector: str | None = None) -> list[dict]:
        """The nodes (matching the label ``selector``, if given), as JSON objects."""
        kw = {"label_selector": selector} if selector else {}
        return _read(self.core.list_node(_preload_content=False, _request_timeout=REQUEST, **kw)).get("items", [])

    def ensure_namespace(self, name: str, labels: dict[str, str]) -> None:
        try:
            self.core.create_namespace({"metadata": {"name": name, "labels": {**MANAGED, **labels}}},
                                       _preload_content=False, _request_timeout=REQUEST)
        except ApiException as e:
            if e.status != 409:
                raise SetupError(f"creating namespace {name} failed: HTTP {e.status} {_message(e)}") from None

    def live_runs(self) -> list[str]:
        """Tokens of the suite runs on this cluster still going (:mod:`ci.runleases`)."""
        from datetime import datetime, timezone

        from ci import runleases

        try:
            r = _read(client.CoordinationV1Api(self.api).list_namespaced_lease(
                runleases.NAMESPACE, label_selector=runleases.SELECTOR, _preload_content=False, _request_timeout=REQUEST))
        except ApiException as e:
            raise SetupError(f"listing the suite's run Leases failed: HTTP {e.status} {_message(e)}") from None
        return runleases.live_runs(r.get("items", []), datetime.now(timezone.utc))

    def namespace_phase(self, name: str) -> str | None:
        """Active/Terminating, or None when the namespace does not exist."""
        try:
            ns = _read(self.core.read_namespace(name, _preload_content=False, _request_timeout=REQUEST))
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return ns.get("status", {}).get("phase")

    def delete_namespace(self, name: str) -> None:
        try:
            self.core.delete_namespace(name, grace_period_seconds=0, _preload_content=False, _request_timeout=REQUEST)
        except ApiException as e:
            if e.status != 404:
                raise SetupError(f"deleting namespace {name} failed: HTTP {e.status} {_message(e)}") from None

    def pod_status(self, ns: str, name: str) -> dict | None:
        try:
            return _read(self.core.read_namespaced_pod(name, ns, _preload_content=False,
                                                       _request_timeout=REQUEST)).get("status", {})
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def create_pod(self, manifest: dict) -> None:
        try:
            self.core.create_namespaced_pod(manifest["metadata"]["namespace"], manifest, _preload_content=False,
                                            _request_timeout=REQUEST)
        except ApiException as e:
            raise SetupError(f"creating pod {manifest['metadata']['name']} failed: HTTP {e.status} {_message(e)}") from None

    def delete_pod(self, ns: str, name: str, *, now: bool = False) -> None:
        try:
            self.core.delete_namespaced_pod(name, ns, grace_period_seconds=0 if now else None, _preload_content=False,
                                            _request_timeout=REQUEST)
        except ApiException as e:
            if e.status != 404:
                raise

    def pod_log(self, ns: str, name: str) -> str:
        return self.core.read_namespaced_pod_log(name, ns, _preload_content=False,
                                                 _request_timeout=REQUEST).data.decode(errors="replace")

    def dump(self) -> str:
        """Nodes, RuntimeClasses, every pod and every event, one line each (for the log bundle)."""
        out = ["# nodes"]
        for n in _read(self.core.list_node(_preload_content=False, _request_timeout=REQUEST)).get("items", []):
            ready = {c.get("type"): c.get("status") for c in n.get("status", {}).get("conditions", [])}.get("Ready")
            out.append(f"{n['metadata']['name']} Ready={ready}")
        out.append("# runtimeclasses")
        for rc in _read(self.node_api.list_runtime_class(_preload_content=False, _request_timeout=REQUEST)).get("items", []):
            out.append(f"{rc['metadata']['name']} handler={rc.get('handler')}")
        out.append("# pods")
        for p in _read(self.core.list_pod_for_all_namespaces(_preload_content=False, _request_timeout=REQUEST)).get("items", []):
            m, sp, st = p["metadata"], p.get("spec", {}), p.get("status", {})
            out.append(f"{m['namespace']}/{m['name']} phase={st.get('phase')} node={sp.get('nodeName')} "
                       f"runtimeClass={sp.get('runtimeClassName')} deleting={bool(m.get('deletionTimestamp'))}")
        out.append("# events")
        events = _read(self.core.list_event_for_all_namespaces(_preload_content=False, _request_timeout=REQUEST)).get("items", [])
        for e in sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or ""):
            o = e.get("involvedObject", {})
            out.append(f"{e.get('lastTimestamp') or e.get('eventTime')} {o.get('namespace')}/{o.get('name')} "
                       f"{e.get('type')} {e.get('reason')}: {e.get('message')}")
        return "\n".join(out) + "\n"

    def events(self, ns: str, name: str) -> list[str]:
        items = _read(self.core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}",
                                                      _preload_content=False, _request_timeout=REQUEST)).get("items", [])
        return [f"{e.get('reason')}: {e.get('message')}" for e in items]


def _read(resp) -> dict:
    return json.loads(resp.data)


def _message(e: ApiException) -> str:
    try:
        return json.loads(e.body).get("message", "")[:300]
    except (TypeError, ValueError):
        return str(e.body)[:300]


def nodes_verdict(items: list[dict], names: tuple[str, ...] = ()) -> bool | str:
    """True when every node (of ``names``, if given) is registered and Ready, else the state seen."""
    if not items:
        return "no nodes registered yet"
    seen = {n["metadata"]["name"]: n for n in items}
    missing = [n for n in names if n not in seen]
    if missing:
        return f"node(s) {', '.join(missing)} not registered yet"
    not_ready = []
    for name, n in seen.items():
        if names and name not in names:
            continue
        ready = {c.get("type"): c for c in n.get("status", {}).get("conditions", [])}.get("Ready", {})
        if ready.get("status") != "True":
            not_ready.append(f"{name} Ready={ready.get('status')} ({ready.get('reason')}: {str(ready.get('message', ''))[:150]})")
    return True if not not_ready else "; ".join(not_ready)


Wait = Callable[[str, Callable[[], object], float], None]  # (what, probe, timeout): a provisioner's wait


def smoke_name(node: str | None = None) -> str:
    """The smoke pod's name: one per node when pinned to one (a node name is a DNS subdomain)."""
    if node is None:
        return SMOKE_POD
    import hashlib

    return f"{SMOKE_POD}-{hashlib.sha256(node.encode()).hexdigest()[:10]}"


def smoke_manifest(info: ClusterInfo, node: str | None = None) -> dict:
    spec = {
        "runtimeClassName": info.runtime_class, "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
        "automountServiceAccountToken": False,
        "containers": [{"name": "smoke", "image": info.image, "imagePullPolicy": "Never" if node is None else "IfNotPresent",
                        "command": ["/bin/sh", "-c", f"echo {SMOKE_TEXT}"]}],
    }
    if node is not None:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": smoke_name(node), "namespace": "default", "labels": dict(MANAGED)}, "spec": spec}


def smoke(api: Api, info: ClusterInfo, wait: Wait, *, timeout: float, phase_timeout: float = SMOKE_PHASE,
          clock: Callable[[], float] = time.monotonic, node: str | None = None) -> None:
    """A pod on the handler must run its container to a clean exit (Succeeded, or its container
    terminated with exit code 0: :func:`smoke_verdict`) and its output must read back. A pod
    still not Succeeded ``phase_timeout`` after that is reported (the handler's StopPodSandbox is
    the suite's to judge), not failed. ``node``: pinned to that node (a pod name of its own)."""
    pod = smoke_name(node)
    api.delete_pod("default", pod, now=True)
    wait(f"an earlier {pod} pod gone", lambda: api.pod_status("default", pod) is None or "still there", 60)
    api.create_pod(smoke_manifest(info, node))
    created = clock()
    seen: dict = {}

    def probe() -> bool | str:
        status = api.pod_status("default", pod)
        if status is None:
            return "pod not found"
        seen["status"] = status
        return smoke_verdict(status, info.runtime_class, info.runtime)

    try:
        wait(f"smoke pod on RuntimeClass {info.runtime_class} to run to completion", probe, timeout)
    except (SetupError, RuntimeFailure) as e:
        try:
            events = " | ".join(api.events("default", pod))
        except Exception as ev:  # noqa: BLE001 - the events only explain; the failure stands
            events = f"unavailable ({type(ev).__name__})"
        raise type(e)(f"{e}\nevents: {events[-600:]}") from None
    took = clock() - created
    log = api.pod_log("default", pod)
    if SMOKE_TEXT not in log:
        raise SetupError(f"smoke pod's container exited 0 but its log reads {log.strip()[:200]!r} (want {SMOKE_TEXT!r})")
    phase = seen.get("status", {}).get("phase")
    if phase != "Succeeded":  # the exit is seen; a healthy handler's sandbox stops within moments
        try:
            wait("smoke pod Succeeded", lambda: (api.pod_status("default", pod) or {}).get("phase") == "Succeeded",
                 phase_timeout)
            phase = "Succeeded"
        except SetupError:
            pass
    head = f"smoke pod on RuntimeClass {info.runtime_class} ({info.runtime}){' on node ' + node if node else ''}: container exited 0 in {took:.1f}s"
    if phase == "Succeeded":
        console.info(f"{head}, pod Succeeded in {clock() - created:.1f}s, output read back")
    else:
        # The kubelet turns the phase terminal only once the pod sandbox is stopped; a handler
        # whose StopPodSandbox hangs is the runtime's bug, for the scenario suite to report.
        console.info(f"{head}, output read back; but the pod is still {phase} {phase_timeout:.0f}s later: the handler "
                     "has not stopped the pod sandbox (StopPodSandbox; see the kubelet and containerd logs)")
    api.delete_pod("default", pod)


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
