"""One test's handle on the cluster and the node: namespace, pods, waits, logs, exec, proof, cleanup.

Everything read from the API is the raw JSON (dicts with camelCase keys, as ``kubectl get -o
json`` shows them). One wait helper (:meth:`RunContext.wait_pod`) serves every pod wait: a list
for the current state and resourceVersion, then a watch with both ``timeout_seconds`` and
``_request_timeout`` (an outage cannot hang it), re-listed on errors, stopped early when the
target can no longer be reached, and failing with the last pod it saw.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from ci.cluster.base import ClusterInfo, NodeAccess

from k8s_suite import manifests, naming, nodecheck, nodeproc, podstate
from k8s_suite import timeouts as T
from k8s_suite.podstate import Pod
from k8s_suite.runstate import RunDir

# Errors of one request that a wait loop retries (the deadline still bounds the whole wait).
TRANSIENT = (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError, OSError)


class WaitError(AssertionError):
    """A wait ran out of time, or its target became unreachable; the message has the last state."""


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


def connect(info: ClusterInfo) -> client.ApiClient:
    """An API client for ``info.kubeconfig`` only (never ~/.kube/config, never the global default)."""
    return config.new_client_from_config(config_file=info.kubeconfig, persist_config=False)


def _json(resp) -> Any:
    return json.loads(resp.data)


def log_lines(text: str) -> list[str]:
    """Lines of a log as the container wrote them (a final newline does not add an empty line)."""
    if text == "":
        return []
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def without_stream_end_error(lines: list[str], container_ids: Sequence[str]) -> tuple[list[str], str | None]:
    """A followed log stream whose container is removed while it is read can end with the kubelet's
    own error text (``rpc error: code = NotFound desc = ... container "<id>": not found``), written
    into the stream as if the container had printed it. Drop that last line when it names one of
    ``container_ids``; return the lines and the dropped text (None when there was none)."""
    if lines and lines[-1].startswith("rpc error: code = NotFound desc = ") and lines[-1].endswith("not found") \
            and any(f'"{cid}"' in lines[-1] for cid in container_ids if cid):
        return lines[:-1], lines[-1]
    return lines, None


# --- exec status ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExecResult:
    argv: tuple[str, ...]
    stdout: str
    stderr: str
    status: str | None  # Success | Failure | None (no status frame)
    exit_code: int | None  # the command's exit code, when the API reported one
    message: str

    def describe(self) -> str:
        return (f"exec {list(self.argv)}: status={self.status} exit_code={self.exit_code} "
                f"message={self.message!r} stdout={self.stdout!r} stderr={self.stderr!r}")


def parse_exec_status(raw: str) -> tuple[str | None, int | None, str]:
    """The exec error channel (a v1 Status) -> (status, exit code, message).

    ``Success`` is exit code 0; a ``Failure`` carries the code as the ``ExitCode`` cause when the
    command ran and exited non-zero, and no code when the command could not be started.
    """
    if not raw or not raw.strip():
        return None, None, "no status frame received"
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError:
        return None, None, f"unparseable status frame: {raw!r}"
    status = doc.get("status")
    if status == "Success":
        return "Success", 0, doc.get("message", "")
    code = None
    for cause in (doc.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                code = int(cause.get("message"))
            except (TypeError, ValueError):
                code = None
    return status, code, doc.get("message", "")


# --- the run's shared context ----------------------------------------------------------------------

@dataclass
class RunContext:
    info: ClusterInfo
    api: client.ApiClient
    node: NodeAccess
    token: str
    run: RunDir
    artifacts: Path
    core: client.CoreV1Api = field(init=False)

    def __post_init__(self):
        self.core = client.CoreV1Api(self.api)

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
             timeout: float = T.LOG_REQUEST) -> str:
        """The container's log, exactly as stored (stdout and stderr interleaved)."""
        kw: dict[str, Any] = dict(_preload_content=False, _request_timeout=timeout)
        if container:
            kw["container"] = container
        if tail is not None:
            kw["tail_lines"] = tail
        resp = self.core.read_namespaced_pod_log(name, ns, **kw)
        return resp.data.decode("utf-8", "replace")

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
                time.sleep(0.2 * attempt)
        raise AssertionError("unreachable")

    def scan_shims(self, node: str, procs: Sequence[nodeproc.Proc] | None = None) -> list[nodeproc.Shim]:
        """The runtime's shim processes on ``node`` with the pod namespace their bundle names."""
        procs = self.ps(node) if procs is None else procs
        found = nodeproc.shims(procs, self.info.shim_process)
        if not found:
            return []
        r = self.node_sh(node, nodeproc.bundle_script([s.pid for s in found]), ok=None)
        return nodeproc.annotate(found, nodeproc.parse_bundles(r.stdout))

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


def _short(e: BaseException) -> str:
    if isinstance(e, ApiException):
        return f"HTTP {e.status} {e.reason}"
    return f"{type(e).__name__}: {str(e)[:200]}"


# --- one test ------------------------------------------------------------------------------------

class LogFollower:
    """Streams a container's log (``follow=true``) in a thread, started before an action whose
    output must not be lost (S11 deletes the pod; the follow stream ends when the container does)."""

    def __init__(self, ctx: RunContext, ns: str, name: str, container: str | None, timeout: float):
        self.ctx, self.ns, self.name, self.container, self.timeout = ctx, ns, name, container, timeout
        self.buf = bytearray()
        self.error: str | None = None
        self.ended = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"logs-{name}")

    def start(self) -> "LogFollower":
        self._thread.start()
        return self

    def _run(self) -> None:
        resp = None
        try:
            kw: dict[str, Any] = dict(follow=True, _preload_content=False, _request_timeout=(10, self.timeout))
            if self.container:
                kw["container"] = self.container
            resp = self.ctx.core.read_namespaced_pod_log(self.name, self.ns, **kw)
            for chunk in resp.stream(1024, decode_content=True):
                with self._changed:
                    self.buf.extend(chunk)
                    self._changed.notify_all()
        except (ApiException, *TRANSIENT) as e:
            self.error = _short(e)
        finally:
            if resp is not None:
                resp.release_conn()
            with self._changed:
                self.ended.set()
                self._changed.notify_all()

    @property
    def text(self) -> str:
        with self._changed:
            return bytes(self.buf).decode("utf-8", "replace")

    def wait_for_line(self, line: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while line not in log_lines(bytes(self.buf).decode("utf-8", "replace")):
                left = deadline - time.monotonic()
                if left <= 0 or self.ended.is_set():
                    why = f"stream ended ({self.error or 'EOF'})" if self.ended.is_set() else f"not within {timeout:.0f}s"
                    raise WaitError(f"log line {line!r} of {self.ns}/{self.name}: {why}; log so far: "
                                    f"{bytes(self.buf).decode('utf-8', 'replace')!r}")
                self._changed.wait(left)

    def wait_ended(self, timeout: float) -> None:
        if not self.ended.wait(timeout):
            raise WaitError(f"log stream of {self.ns}/{self.name} still open after {timeout:.0f}s "
                            f"(container still writing?); log so far: {self.text!r}")


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
            time.sleep(0.1)
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
        ids = podstate.container_ids(pod)
        if pod.get("metadata", {}).get("name") in self.controls:
            self.control_ids.update(ids)
        else:
            self.seen_ids.update(ids)

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
        return self.wait(name, podstate.container_terminated(container), "container terminated", timeout,
                         stop=podstate.stop_if_deleted)

    def wait_gone(self, name: str, timeout: float = T.POD_DELETE) -> None:
        self.wait(name, podstate.gone, "pod gone", timeout)

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

    def exec(self, name: str, argv: Sequence[str], container: str | None = None, timeout: float = T.EXEC) -> ExecResult:
        kw: dict[str, Any] = dict(command=list(argv), stderr=True, stdin=False, stdout=True, tty=False,
                                  _preload_content=False, _request_timeout=timeout)
        if container:
            kw["container"] = container
        try:
            ws = stream(self.ctx.core.connect_get_namespaced_pod_exec, name, self.ns, **kw)
        except ApiException as e:
            raise AssertionError(f"exec {list(argv)} in {self.ns}/{name}: could not connect: {_short(e)}") from None
        try:
            ws.run_forever(timeout=timeout)
            if ws.is_open():
                raise WaitError(f"exec {list(argv)} in {self.ns}/{name}: still running after {timeout:.0f}s")
            out, err, raw = ws.read_channel(1), ws.read_channel(2), ws.read_channel(3)
        finally:
            ws.close()
        status, code, message = parse_exec_status(raw)
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
        assert path.startswith(naming.node_path(self.token, self.sid)), f"{path} is not this test's node path"
        self.node_paths.append((node, path))
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
            time.sleep(0.25)

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
        """Prove the runtime, check for zombies under the scenario's shims, record ids, release held
        pods, delete the namespace and this test's node paths, then check that the pods left nothing
        on the node. Returns (problems, leaks): the caller fails the teardown with them (not
        swallowed); leaks and an unproven runtime are product failures of this scenario."""
        problems: list[str] = []
        leaks: list[str] = []
        if not self.created_ns:
            return problems, leaks
        t0 = time.monotonic()
        marks: list[str] = []
        try:
            self.record_ids()
        except Exception as e:  # noqa: BLE001 - reported below
            problems.append(f"recording ids of {self.ns}: {e}")
        if not keep:
            try:
                pods = self.ctx.list_pods(self.ns).get("items", [])
                for p in pods:
                    self._observe(p)
                leaks += [f"runtime not proven: {x}" for x in nodecheck.require_proof(self, pods)]
                marks.append(f"proof {time.monotonic() - t0:.1f}s")
                zombies = nodecheck.live_zombies(self)
                marks.append(f"zombies {time.monotonic() - t0:.1f}s")
                if zombies:
                    leaks.append(f"zombie(s) under this scenario's shims/runtime processes, not reaped within "
                                 f"{T.ZOMBIE_SETTLE}s while its pods existed:\n{zombies}")
            except (NodeCommandError, ApiException, *TRANSIENT) as e:
                problems.append(f"node checks of {self.ns} before its deletion: {e}")
        try:
            for p in self.ctx.list_pods(self.ns).get("items", []):
                if naming.FINALIZER in (p["metadata"].get("finalizers") or []):
                    self.release(p["metadata"]["name"])
        except (ApiException, *TRANSIENT) as e:
            problems.append(f"releasing held pods in {self.ns}: {_short(e)}")
        for node, path in self.node_paths:
            try:
                self.ctx.node_run(node, ["rm", "-rf", "--", path])
            except NodeCommandError as e:
                problems.append(str(e))
        if keep:
            return problems, leaks
        try:
            # the pods first, directly: the namespace controller gets to them only after it has
            # enumerated every resource type (seconds), and the node checks below wait for them
            self.ctx.core.delete_collection_namespaced_pod(self.ns, _preload_content=False,
                                                           _request_timeout=T.LOG_REQUEST)
            self.ctx.core.delete_namespace(self.ns, propagation_policy="Background", _preload_content=False,
                                           _request_timeout=T.LOG_REQUEST)
        except ApiException as e:
            if e.status != 404:
                problems.append(f"deleting namespace {self.ns}: HTTP {e.status} {e.reason}")
                return problems, leaks
        except TRANSIENT as e:
            problems.append(f"deleting namespace {self.ns}: {_short(e)}")
            return problems, leaks
        marks.append(f"deleted {time.monotonic() - t0:.1f}s")
        try:
            report = nodecheck.after_delete(self, marks)
            if report:
                leaks.append(f"left on the node after its pods were gone ({T.LEAK_SETTLE}s settle):\n  {report}")
        except (NodeCommandError, ApiException, *TRANSIENT) as e:
            problems.append(f"node checks of {self.ns} after its deletion: {e}")
        print(f"teardown of {self.ns}: {time.monotonic() - t0:.1f}s ({', '.join(marks)})")
        return problems, leaks


def _body(e: ApiException) -> str:
    try:
        return json.loads(e.body).get("message", e.body)
    except Exception:  # noqa: BLE001
        return str(e.body)[:300]
