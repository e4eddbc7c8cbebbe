"""The run's shared context: the cluster info, the API client, node access, the token and the run
folder; API reads as raw JSON, the one pod wait helper, and node commands.

One wait helper (:meth:`RunContext.wait_pod`) serves every pod wait: a list for the current state
and resourceVersion, then a watch with both ``timeout_seconds`` and ``_request_timeout`` (an outage
cannot hang it), re-listed on errors, stopped early when the target can no longer be reached, and
failing with the last pod it saw.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from ci.cluster.base import ClusterInfo, NodeAccess

from k8s_suite import naming, nodeproc, podstate, stuck
from k8s_suite import timeouts as T
from k8s_suite.podstate import Pod
from k8s_suite.rest import Api
from k8s_suite.runstate import RunDir
from k8s_suite.streams import TRANSIENT, WaitError, _short


class InfrastructureError(Exception):
    """The scenario could not be judged because the cluster or the node failed, not the runtime
    under test (reported as an infrastructure error, separately from scenario failures)."""


class NodeCommandError(InfrastructureError, RuntimeError):
    """A command on the node failed (node access itself is broken, not the scenario)."""


@contextlib.contextmanager
def failing_with(problems: list[str]):
    """Inside node-side polls of a scenario that collects ``problems``: node access failing (after
    its retries) ends the scenario with the problems already seen, the node error as a note; with
    none seen yet, it is an infrastructure error as before."""
    try:
        yield
    except NodeCommandError as e:
        if problems:
            raise AssertionError("\n".join(problems + [f"(note: node access then failed: {e})"])) from None
        raise


def _json(resp) -> Any:
    return json.loads(resp.data)


# --- the run's shared context ----------------------------------------------------------------------

@dataclass
class RunContext:
    info: ClusterInfo
    api: client.ApiClient
    node: NodeAccess
    token: str
    run: RunDir
    artifacts: Path
    core: Api = field(init=False)  # the suite's API calls, raw JSON (k8s_suite.rest: no generated API class)
    batch: Api = field(init=False)

    def __post_init__(self):
        self.core = self.batch = Api(self.api)
        self._streams = threading.local()
        self._bundles: dict[tuple[str, int, str], dict] = {}  # (node, shim pid, its command line) -> annotations
        # why a deleted pod will not go by waiting (the API's view, confirmed by containerd's)
        self.stuck = stuck.Judge(T.KILL_SETTLE, self.cri_status, self.tasks)

    def stream_api(self) -> Api:
        """The calls on an API client of this thread's own, for exec streams: the client library's
        ``stream()`` swaps the transport of the client it is given while the stream opens, so a
        shared client would send other threads' requests over a websocket."""
        api = getattr(self._streams, "api", None)
        if api is None:
            api = self._streams.api = Api(config.new_client_from_config(
                config_file=self.info.kubeconfig, persist_config=False))
        return api

    # API reads (raw JSON) ----------------------------------------------------------------------
    def get_pod(self, ns: str, name: str) -> Pod | None:
        try:
            return _json(self.core.read_namespaced_pod(name, ns, _preload_content=False,
                                                       _request_timeout=T.LOG_REQUEST))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def list_pods(self, ns: str | None = None, label_selector: str | None = None,
                  field_selector: str | None = None, timeout: float = T.LOG_REQUEST) -> dict:
        kw = dict(_preload_content=False, _request_timeout=timeout)
        if label_selector:
            kw["label_selector"] = label_selector
        if field_selector:
            kw["field_selector"] = field_selector
        if ns is None:
            return _json(self.core.list_pod_for_all_namespaces(**kw))
        return _json(self.core.list_namespaced_pod(ns, **kw))

    def events(self, ns: str) -> list[dict]:
        return _json(self.core.list_namespaced_event(ns, _preload_content=False,
                                                     _request_timeout=T.LOG_REQUEST)).get("items", [])

    def logs(self, ns: str, name: str, container: str | None = None, *, tail: int | None = None,
             previous: bool = False, timeout: float = T.LOG_REQUEST, raw: bool = False) -> str | bytes:
        """The container's log, exactly as stored (stdout and stderr interleaved); ``previous``: the
        log of its run before the last restart; ``raw``: its bytes, not decoded."""
        kw: dict[str, Any] = dict(_preload_content=False, _request_timeout=timeout)
        if previous:
            kw["previous"] = True
        if container:
            kw["container"] = container
        if tail is not None:
            kw["tail_lines"] = tail
        resp = self.core.read_namespaced_pod_log(name, ns, **kw)
        return resp.data if raw else resp.data.decode("utf-8", "replace")

    # the one wait helper -----------------------------------------------------------------------
    def wait_pod(self, ns: str, name: str, done: podstate.Condition, what: str, timeout: float,
                 stop: podstate.Stop = podstate.never_stop,
                 observe: Callable[[Pod], None] | None = None) -> Pod | None:
        """Wait until ``done(pod)`` (pod is None once it does not exist); return that pod.

        NotFound is a state like any other (``done`` decides), so waiting for a pod that is not
        created yet, or for one to be gone, needs nothing special.
        """
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {"last": None, "seen": False, "error": None}

        def check(pod: Pod | None) -> bool:
            if pod is not None:
                state["last"], state["seen"] = pod, True
                if observe:
                    observe(pod)
            if done(pod):
                return True
            why = stop(pod, state["seen"])
            if why:
                raise WaitError(f"{what}: {why}; last seen: {podstate.describe(pod or state['last'])}")
            return False

        selector = f"metadata.name={name}"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                last = podstate.describe(state["last"]) if state["seen"] else "the pod was never seen"
                err = f"; last API error: {state['error']}" if state["error"] else ""
                raise WaitError(f"{what}: not reached within {timeout:.0f}s; last seen: {last}{err}")
            try:
                listing = self.list_pods(ns, field_selector=selector, timeout=max(1.0, min(remaining, T.LOG_REQUEST)))
            except (ApiException, *TRANSIENT) as e:
                state["error"] = _short(e)
                time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
                continue
            items = listing.get("items") or []
            pod = items[0] if items else None
            if check(pod):
                return pod
            chunk = max(1, int(min(deadline - time.monotonic(), T.WATCH_CHUNK)))
            w = watch.Watch()
            try:
                for ev in w.stream(self.core.list_namespaced_pod, ns, field_selector=selector,
                                   resource_version=listing["metadata"]["resourceVersion"],
                                   timeout_seconds=chunk, _request_timeout=chunk + T.WATCH_SLACK,
                                   deserialize=False):
                    typ = ev.get("type")
                    if typ == "BOOKMARK":
                        continue
                    obj = ev.get("object")
                    if check(None if typ == "DELETED" else obj):
                        return None if typ == "DELETED" else obj
                    if time.monotonic() > deadline:
                        break
            except (ApiException, *TRANSIENT) as e:
                state["error"] = _short(e)
            finally:
                w.stop()

    # node --------------------------------------------------------------------------------------
    def node_run(self, node: str, argv: Sequence[str], timeout: float = T.NODE_COMMAND, ok=(0,)):
        try:
            r = self.node.run(node, list(argv), timeout=timeout)
        except (OSError, Exception) as e:  # subprocess.TimeoutExpired, docker missing, ...
            raise NodeCommandError(f"node {node}: {' '.join(argv)}: {e}") from None
        if ok is not None and r.returncode not in ok:
            raise NodeCommandError(f"node {node}: {' '.join(argv)} exited {r.returncode}: {r.stderr.strip()[:300]}")
        return r

    def node_sh(self, node: str, script: str, timeout: float = T.NODE_COMMAND, ok=(0,)):
        return self.node_run(node, ["/bin/sh", "-c", script], timeout=timeout, ok=ok)

    def ps(self, node: str, attempts: int = 3) -> list[nodeproc.Proc]:
        """The node's process table. A failed listing is retried (``attempts`` in all): a poll must
        not end on one transient failure of node access."""
        for attempt in range(1, attempts + 1):
            try:
                r = self.node_run(node, nodeproc.PS_ARGV)
                try:
                    procs = nodeproc.parse_ps(r.stdout)
                except nodeproc.PsError as e:
                    raise NodeCommandError(f"node {node}: {e}") from None
                if len(procs) < 3:
                    raise NodeCommandError(f"node {node}: ps listed only {len(procs)} process(es): not a process table")
                return procs
            except NodeCommandError:
                if attempt == attempts:
                    raise
                time.sleep(0.2 * attempt)  # back-off between retries of a failed listing
        raise AssertionError("unreachable")

    def cri_status(self, node: str, ids: Sequence[str]) -> dict[str, bool | str]:
        """containerd's CRI record of each container id on ``node``: True once it recorded the end."""
        r = self.node_sh(node, stuck.status_script(self.info.containerd_root, ids), ok=None)
        return stuck.parse_status(r.stdout)

    def tasks(self, node: str) -> dict[str, str]:
        """containerd's tasks on ``node`` (``ctr tasks ls``): {container id: status}."""
        r = self.node_run(node, stuck.tasks_argv(self.info.ctr, self.info.containerd_address))
        return stuck.parse_tasks(r.stdout)

    def scan_shims(self, node: str, procs: Sequence[nodeproc.Proc] | None = None) -> list[nodeproc.Shim]:
        """The runtime's shim processes on ``node`` with the pod namespace their bundle names."""
        procs = self.ps(node) if procs is None else procs
        found = nodeproc.shims(procs, self.info.shim_process)
        if not found:
            return []
        # a shim's bundle (its cwd) is fixed for its life: each one is read once (a bundle not read
        # yet, or unreadable, is asked again), not on every scan of a poll
        key = lambda s: (node, s.pid, s.args)  # noqa: E731
        new = [s.pid for s in found if key(s) not in self._bundles]
        if new:
            r = self.node_sh(node, nodeproc.bundle_script(new), ok=None)
            read = nodeproc.parse_bundles(r.stdout)
            for s in found:
                if s.pid in read:
                    self._bundles[key(s)] = read[s.pid]
        return nodeproc.annotate(found, {s.pid: self._bundles[key(s)] for s in found if key(s) in self._bundles})

    def state_entries(self, node: str, *, required: bool = True) -> set[str] | None:
        """Names in the runtime's state folder (None when the runtime declares none). A declared
        folder that does not exist is a failure (``required``: a check that lists it would see
        nothing and prove nothing), else the empty set."""
        d = self.info.runtime_state_dir
        if not d:
            return None
        r = self.node_run(node, ["ls", "-1A", d], ok=(0, 1, 2))
        if r.returncode != 0:
            if "No such file" in r.stderr:
                if required:
                    raise AssertionError(f"node {node}: the runtime's state folder {d} does not exist: state-entry "
                                         f"checks would prove nothing (does the runtime keep its state elsewhere?)")
                return set()
            raise NodeCommandError(f"node {node}: ls {d}: {r.stderr.strip()}")
        return {ln.strip() for ln in r.stdout.splitlines() if ln.strip()}

    def runtime_log_mentions(self, node: str, text: str) -> int:
        """How many lines of the runtime's own log name ``text`` (0 when it has no log)."""
        if not self.info.runtime_log:
            return 0
        r = self.node_run(node, ["grep", "-c", "-F", "--", text, self.info.runtime_log], ok=(0, 1, 2))
        if r.returncode == 2:
            # a runtime that does not log what it ran is not proven: a failure, not the node's fault
            raise AssertionError(f"node {node}: the runtime's log {self.info.runtime_log} cannot be read "
                                 f"({r.stderr.strip()[:200]}): the runtime is not proven to have run anything")
        return int((r.stdout.strip() or "0").splitlines()[0])

    def run_pods(self) -> list[Pod]:
        return self.list_pods(None, label_selector=f"{naming.RUN_LABEL}={self.token}").get("items", [])
