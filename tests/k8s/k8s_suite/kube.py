"""One test's handle on the cluster and the node: namespace, pods, waits, logs, exec, proof, cleanup.

Everything read from the API is the raw JSON (dicts with camelCase keys, as ``kubectl get -o
json`` shows them). The run's shared context (API reads, the one pod wait helper, node commands)
is :mod:`k8s_suite.context`; container streams (logs, exec status) are :mod:`k8s_suite.streams`;
both are re-exported here for the scenarios.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from ci.cluster.base import ClusterInfo

from k8s_suite import attach, execwatch, manifests, naming, nodecheck, nodeproc, podstate
from k8s_suite import timeouts as T
from k8s_suite.context import InfrastructureError, NodeCommandError, RunContext, _json, failing_with
from k8s_suite.podstate import Pod
from k8s_suite.streams import (TRANSIENT, ExecResult, LogFollower, WaitError, _short, log_lines, parse_exec_status,
                               without_stream_end_error)

__all__ = ["ExecResult", "InfrastructureError", "Kube", "LogFollower", "NodeCommandError", "RunContext", "WaitError",
           "connect", "failing_with", "log_lines", "parse_exec_status", "without_stream_end_error"]


def connect(info: ClusterInfo) -> client.ApiClient:
    """An API client for ``info.kubeconfig`` (and its ``info.context``) only (never ~/.kube/config,
    never the global default)."""
    return config.new_client_from_config(config_file=info.kubeconfig, context=info.context, persist_config=False)


# --- one test ------------------------------------------------------------------------------------

class Kube:
    """One scenario's namespace (labelled with the run token) and what it creates in it."""

    def __init__(self, ctx: RunContext, sid: str, test: str):
        self.ctx, self.sid, self.test = ctx, sid, test
        self.info = ctx.info
        self.token = ctx.token
        self.ns = naming.namespace(ctx.token, sid)
        self.seen_ids: set[str] = set()
        self.sandbox_ids: set[str] = set()
        self.node_paths: list[tuple[str, str]] = []
        self.created_ns = False
        self.pod_uids: set[str] = set()  # every pod created in the namespace (a re-created name has a new uid)
        self.pod_names: set[str] = set()
        self.controls: set[str] = set()  # pods on the cluster's default runtime (not the one under test)
        self.control_ids: set[str] = set()
        self.markers: list[tuple[str, ...]] = []  # command lines unique to this scenario's processes
        self.proofs: set[str] = set()
        self.proof_problems: list[str] = []
        self.jobs: set[str] = set()  # Jobs created here (deleted before the pods at teardown)
        self.exec_where: dict[str, tuple[str, str | None]] = {}  # pod -> (hostname, node), for execwatch
        self.leak_summary: list[str] = []  # teardown: what was left, in short (the failure's first line)

    # namespace ---------------------------------------------------------------------------------
    def create_namespace(self) -> None:
        try:
            self.ctx.core.create_namespace(manifests.namespace(self.ns, self.token, self.sid), _preload_content=False,
                                           _request_timeout=T.LOG_REQUEST)
        except ApiException as e:
            raise RuntimeError(f"creating namespace {self.ns}: HTTP {e.status} {e.reason}: {_body(e)}") from None
        self.created_ns = True
        deadline = time.monotonic() + T.NAMESPACE_READY
        last = None
        while time.monotonic() < deadline:
            try:
                self.ctx.core.read_namespaced_service_account("default", self.ns, _preload_content=False,
                                                              _request_timeout=T.LOG_REQUEST)
                return
            except ApiException as e:
                if e.status != 404:
                    raise
                last = "ServiceAccount default not found"
            except TRANSIENT as e:
                last = _short(e)
            time.sleep(0.1)  # poll interval until the ServiceAccount exists or the deadline
        raise WaitError(f"namespace {self.ns}: no default ServiceAccount within {T.NAMESPACE_READY}s ({last}); "
                        "is kube-controller-manager running?")

    # names and manifests -----------------------------------------------------------------------
    def name(self, what: str) -> str:
        return naming.pod_name(self.token, self.sid, what)

    def pod(self, what: str, command: Sequence[str] | None = None, *, control: bool = False, **kw) -> dict:
        """A pod manifest named ``<sid>-<what>-<token>`` for the runtime under test (``control``:
        for the cluster's default runtime, no RuntimeClass: a reference to compare with)."""
        return manifests.pod(self.name(what), command, token=self.token, sid=self.sid,
                             runtime_class=None if control else self.info.runtime_class, image=self.info.image, **kw)

    def container(self, name: str, command: Sequence[str], **kw) -> dict:
        return manifests.container(name, command, image=self.info.image, **kw)

    def node_path(self, leaf: str = "") -> str:
        return naming.node_path(self.token, self.sid, leaf)

    # create ------------------------------------------------------------------------------------
    def create(self, manifest: Mapping[str, Any]) -> Pod:
        """Create a pod; the API must echo the RuntimeClass under test (else nothing is proven)."""
        try:
            pod = _json(self.ctx.core.create_namespaced_pod(self.ns, dict(manifest), _preload_content=False,
                                                            _request_timeout=T.LOG_REQUEST))
        except ApiException as e:
            raise AssertionError(f"creating pod {manifest['metadata']['name']}: HTTP {e.status}: {_body(e)}") from None
        name = pod["metadata"]["name"]
        self.pod_uids.add(pod["metadata"]["uid"])
        self.pod_names.add(name)
        got = pod.get("spec", {}).get("runtimeClassName")
        if "runtimeClassName" not in manifest.get("spec", {}):
            self.controls.add(name)
            assert got in (None, ""), f"control pod {name}: spec.runtimeClassName is {got!r}, expected none"
            return pod
        assert got == self.info.runtime_class, (
            f"pod {name}: spec.runtimeClassName is {got!r}, expected {self.info.runtime_class!r}")
        return pod

    def marker(self, argv: Sequence[str]) -> list[str]:
        """Register a command line unique to this scenario (``sleep N``): a process with it left on
        the node after the scenario is a leak of this scenario."""
        self.markers.append(tuple(argv))
        return list(argv)

    def node_dir(self, node: str, leaf: str) -> str:
        """A folder of this test on the node's real filesystem (removed at teardown)."""
        path = self.node_path(leaf)
        self.node_paths.append((node, path))
        return path

    def create_configmap(self, manifest: Mapping[str, Any]) -> None:
        self.ctx.core.create_namespaced_config_map(self.ns, dict(manifest), _preload_content=False,
                                                   _request_timeout=T.LOG_REQUEST)

    def create_secret(self, manifest: Mapping[str, Any]) -> None:
        self.ctx.core.create_namespaced_secret(self.ns, dict(manifest), _preload_content=False,
                                               _request_timeout=T.LOG_REQUEST)

    # waits -------------------------------------------------------------------------------------
    def _observe(self, pod: Pod) -> None:
        """Remember the pod's container ids (and, for pods a controller created, its name and uid)."""
        ids = podstate.container_ids(pod)
        meta = pod.get("metadata", {})
        if meta.get("name") in self.controls:
            self.control_ids.update(ids)
        else:
            self.seen_ids.update(ids)
            if meta.get("uid") and meta.get("name"):
                self.pod_uids.add(meta["uid"])
                self.pod_names.add(meta["name"])

    def _explained(self, e: AssertionError, name: str) -> AssertionError:
        """``e`` with the one-line diagnosis of an unreadable runtime state in front, when it applies."""
        try:
            hint = nodecheck.unreadable_state(self, self.get(name))
        except Exception:  # noqa: BLE001 - the hint must never replace the failure
            hint = ""
        return type(e)(f"{hint}\n{e}") if hint else e

    def wait(self, name: str, done: podstate.Condition, what: str, timeout: float,
             stop: podstate.Stop = podstate.never_stop) -> Pod | None:
        return self.ctx.wait_pod(self.ns, name, done, f"{self.ns}/{name}: {what}", timeout, stop=stop,
                                 observe=self._observe)

    def wait_phase(self, name: str, *phases: str, timeout: float = T.POD_FINISH) -> Pod:
        """Wait for one of ``phases``; stops early on another terminal phase or a hopeless waiting reason."""
        try:
            return self.wait(name, podstate.phase_in(*phases), f"phase {'/'.join(phases)}", timeout,
                             stop=podstate.stop_unless(phases))
        except WaitError as e:
            hint = podstate.stuck_after_exit(self.get(name))
            raise self._explained(WaitError(f"{e}\n{hint}") if hint else e, name) from None

    def wait_exited(self, name: str, timeout: float = T.POD_FINISH, *, require_zero: bool = True) -> Pod:
        """Wait until every container of the pod has exited, and (``require_zero``) require exit code 0 of each.

        For scenarios whose check is the containers' output, not the pod's phase: the phase
        (Succeeded/Failed) is what S01-S03 and S15 assert; a runtime whose sandbox never stops
        keeps a pod out of its terminal phase after its containers exited, and that must not hide
        what an output scenario checks. Stops early when the pod turns Failed.
        """
        try:
            pod = self.wait(name, podstate.all_exited, "every container exited", timeout,
                            stop=podstate.stop_unless(("Succeeded",) if require_zero else podstate.TERMINAL))
        except WaitError as e:
            raise self._explained(e, name) from None
        if not require_zero:
            return pod
        bad = podstate.nonzero_exits(pod)
        if bad:
            raise self._explained(AssertionError(
                f"{self.ns}/{name}: container(s) did not exit 0: {'; '.join(bad)}: {podstate.describe(pod)}"), name)
        return pod

    def wait_running(self, name: str, container: str | None = None, timeout: float = T.POD_START) -> Pod:
        try:
            return self.wait(name, podstate.container_running(container), "container running", timeout,
                             stop=podstate.stop_unless(("Running",)))
        except WaitError as e:
            raise self._explained(e, name) from None

    def wait_terminated(self, name: str, container: str | None = None, timeout: float = T.POD_TERMINATE) -> Pod:
        # a deleted pod's container that outlives its kill will not end by waiting (stuck.Judge)
        return self.wait(name, podstate.container_terminated(container), "container terminated", timeout,
                         stop=lambda pod, seen: podstate.stop_if_deleted(pod, seen) or self.ctx.stuck(pod))

    def wait_gone(self, name: str, timeout: float = T.POD_DELETE) -> None:
        """Until the pod is gone; ends early when a container outlives its kill (it will not go)."""
        self.wait(name, podstate.gone, "pod gone", timeout, stop=lambda pod, seen: self.ctx.stuck(pod))

    def note_gone(self) -> None:
        """Record that this namespace's pods are gone, now (S14 gives a shim of theirs SHIM_CONFIRM
        seconds from then)."""
        self.ctx.run.record({"ns": self.ns, "gone_at": time.time()})

    def wait_no_pods(self, timeout: float, *, record: bool = False) -> list[Pod]:
        """Poll until the namespace has no pod (observing their ids; ``record``: also writing this
        namespace's shim ids to the run folder, as a sandbox can appear after a delete was asked);
        the pods still there at the deadline, or as soon as each of them outlives its kill
        (:class:`k8s_suite.stuck.Judge`: waiting will not make them go)."""
        deadline = time.monotonic() + timeout
        while True:
            if record:
                self.record_ids()
            left = self.ctx.list_pods(self.ns).get("items", [])
            for p in left:
                self._observe(p)
            if not left or time.monotonic() > deadline or self.ctx.stuck.all(left):
                return left
            time.sleep(0.25)  # poll interval until the deadline

    def sleeping_pod(self, what: str, **kw) -> tuple[str, Pod, int]:
        """A running pod whose only process is ``sleep N`` (N unique to this run, scenario and
        ``what``, registered as the scenario's marker): (name, pod, N)."""
        seconds = naming.sleep_seconds(self.token, f"{self.sid}-{what}")
        name = self.name(what)
        self.create(self.pod(what, self.marker(["sleep", str(seconds)]), grace=2, **kw))
        return name, self.wait_running(name), seconds

    def get(self, name: str) -> Pod | None:
        pod = self.ctx.get_pod(self.ns, name)
        if pod:
            self._observe(pod)
        return pod

    # output ------------------------------------------------------------------------------------
    def logs(self, name: str, container: str | None = None) -> str:
        return self.ctx.logs(self.ns, name, container)

    def log_lines(self, name: str, container: str | None = None) -> list[str]:
        return log_lines(self.logs(name, container))

    def follow_logs(self, name: str, container: str | None = None, timeout: float = 120) -> LogFollower:
        return LogFollower(self.ctx, self.ns, name, container, timeout).start()

    def exec(self, name: str, argv: Sequence[str], container: str | None = None, timeout: float = T.EXEC, *,
             stdin: str | bytes | None = None, tty: bool = False, typed: bool = False) -> ExecResult:
        """Run ``argv`` in the container and wait for it to end. ``stdin``: written, then the stdin
        channel is closed (the v5 stream protocol's half-close, as ``kubectl exec -i`` does), unless
        ``typed`` (what a user types: the stream stays open until the process ends); ``tty``: a
        terminal (stderr is merged into it). Bytes on stdin: the streams are bytes too (binary frames)."""
        kw: dict[str, Any] = dict(command=list(argv), stderr=not tty, stdin=stdin is not None or tty, stdout=True,
                                  tty=tty, binary=isinstance(stdin, bytes))
        what = f"exec {list(argv)} in {self.ns}/{name}"
        watch = execwatch.for_pod(self, name, argv)  # its baseline: the pod's processes before the exec
        ws = attach.open_stream(self, "connect_get_namespaced_pod_exec", name, container, timeout, what, **kw)
        try:
            attach.feed_and_wait(ws, stdin, timeout, what, close=not typed, ended=watch.check)
            out, err, raw = ws.read_channel(1), ws.read_channel(2), ws.read_channel(3)
        finally:
            ws.close()
        status, code, message = parse_exec_status(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw)
        return ExecResult(tuple(argv), out, err, status, code, message)

    # delete ------------------------------------------------------------------------------------
    def delete_pod(self, name: str, grace: int | None = None) -> dict:
        """Request deletion (after recording the pod's ids and reading containerd's proof of its
        runtime while the records exist); returns the API's answer."""
        self.record_ids()
        pod = self.ctx.get_pod(self.ns, name)
        if pod is not None and name not in self.controls:
            self._observe(pod)
            nodecheck.prove(self, podstate.container_ids(pod))
        kw: dict[str, Any] = dict(_preload_content=False, _request_timeout=T.LOG_REQUEST)
        if grace is not None:
            kw["grace_period_seconds"] = grace
        return _json(self.ctx.core.delete_namespaced_pod(name, self.ns, **kw))

    def release(self, name: str) -> None:
        """Remove the suite's finalizer from a pod (no-op when it has none or is gone)."""
        pod = self.ctx.get_pod(self.ns, name)
        fins = (pod or {}).get("metadata", {}).get("finalizers") or []
        if naming.FINALIZER not in fins:
            return
        idx = fins.index(naming.FINALIZER)
        patch = [{"op": "test", "path": f"/metadata/finalizers/{idx}", "value": naming.FINALIZER},
                 {"op": "remove", "path": f"/metadata/finalizers/{idx}"}]
        try:
            self.ctx.core.patch_namespaced_pod(name, self.ns, patch, _preload_content=False,
                                               _request_timeout=T.LOG_REQUEST)
        except ApiException as e:
            if e.status != 404:
                raise

    # node --------------------------------------------------------------------------------------
    def node_of(self, pod: Pod) -> str:
        node = pod.get("spec", {}).get("nodeName")
        assert node, f"pod {pod['metadata']['name']} has no node yet: {podstate.describe(pod)}"
        assert node in self.info.nodes, f"pod scheduled on {node!r}, not one of the cluster's nodes {self.info.nodes}"
        return node

    def write_node_file(self, node: str, path: str, content: str) -> None:
        own = naming.node_path(self.token, self.sid)
        assert path.startswith(own), f"{path} is not this test's node path"
        # the whole entry under /tmp is this test's (the folder the file is written into included)
        self.node_paths.append((node, own + path[len(own):].split("/", 1)[0]))
        self.ctx.node.write_file(node, path, content)

    def wait_processes(self, node: str, argv: Sequence[str], what: str, ok: Callable[[int], bool],
                       timeout: float = T.NODE_PROCESS) -> list[nodeproc.Proc]:
        """Poll the node's process table until the count of ``argv`` processes satisfies ``ok``."""
        deadline = time.monotonic() + timeout
        while True:
            procs = self.ctx.ps(node)
            found = nodeproc.with_args(procs, argv)
            if ok(len(found)):
                return found
            if time.monotonic() > deadline:
                shown = "\n".join(p.line() for p in found) or "(none)"
                raise WaitError(f"node {node}: {what}: {len(found)} `{' '.join(argv)}` process(es) after "
                                f"{timeout:.0f}s:\n{shown}")
            time.sleep(0.25)  # poll interval until the deadline

    def runtime_evidence(self, pod: Pod, pids: Iterable[int]) -> str:
        """Prove the pod ran on the runtime under test: its RuntimeClass, and on the node either a
        workload process descending from the runtime's shim or the runtime's own log naming the
        container. Returns the evidence; fails (AssertionError) without it."""
        name = pod["metadata"]["name"]
        rc = pod.get("spec", {}).get("runtimeClassName")
        assert rc == self.info.runtime_class, f"pod {name}: runtimeClassName {rc!r}, expected {self.info.runtime_class!r}"
        node = self.node_of(pod)
        procs = self.ctx.ps(node)
        pids = list(pids)
        assert pids, f"pod {name}: no workload process to trace on node {node}"
        chains = []
        for pid in pids:
            shim = nodeproc.ancestor_named(procs, pid, self.info.shim_process)
            chain = nodeproc.describe_chain(procs, pid)
            if shim is not None:
                return (f"RuntimeClass {rc}; workload pid {pid} descends from {self.info.shim_process} "
                        f"pid {shim.pid} (-id {nodeproc.shim_id(shim.args)}): {chain}")
            chains.append(chain)
        cids = podstate.container_ids(pod)
        for cid in cids:
            n = self.ctx.runtime_log_mentions(node, cid)
            if n > 0:
                return (f"RuntimeClass {rc}; runtime log {self.info.runtime_log} names container {cid} "
                        f"({n} lines); workload chain (the runtime daemonizes it): {chains[0]}")
        raise AssertionError(
            f"pod {name}: no proof it ran on runtime {self.info.runtime!r}: no workload process descends from "
            f"{self.info.shim_process} and the runtime log ({self.info.runtime_log or 'none'}) does not name "
            f"container(s) {cids}; chains: " + " | ".join(chains))

    # ids and cleanup ---------------------------------------------------------------------------
    def record_ids(self) -> dict:
        """Write this namespace's container, sandbox and shim ids to the run folder (S14/S16 use them)."""
        cids = set(self.seen_ids)
        try:
            for p in self.ctx.list_pods(self.ns).get("items", []):
                cids.update(podstate.container_ids(p))
        except (ApiException, *TRANSIENT):
            pass
        shims = []
        for node in self.info.nodes:
            shims += [s for s in self.ctx.scan_shims(node) if s.namespace == self.ns]
        entry = {"ns": self.ns, "test": self.test, "container_ids": sorted(i for i in cids if i),
                 "shims": [{"pid": s.pid, "id": s.id, "sandbox_id": s.sandbox_id, "pod": s.pod} for s in shims]}
        self.ctx.run.record(entry)
        return entry

    def cleanup(self, keep: bool = False) -> tuple[list[str], list[str]]:
        """The scenario's teardown (:func:`k8s_suite.nodecheck.teardown`): (problems, leaks)."""
        return nodecheck.teardown(self, keep)


def _body(e: ApiException) -> str:
    try:
        return json.loads(e.body).get("message", e.body)
    except Exception:  # noqa: BLE001
        return str(e.body)[:300]
