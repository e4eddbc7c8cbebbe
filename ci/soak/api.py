"""What the soak needs of the Kubernetes API (one kubeconfig), as plain dicts: create its
namespace and workloads, list and watch their pods, read logs and events, exec, clean up."""

from __future__ import annotations

from typing import Iterator

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from ci.cluster.verify import Verifier, _message, _read
from ci.errors import SetupError

REQUEST = 15  # seconds per API request


class SoakApi(Verifier):
    """:class:`ci.cluster.verify.Verifier` (the client, ``delete_namespace``) plus the Deployment API."""

    def __init__(self, kubeconfig: str, context: str | None = None):
        super().__init__(kubeconfig, context)
        self.apps = client.AppsV1Api(self.api)

    def create(self, manifest: dict) -> None:
        kind, ns = manifest["kind"], manifest["metadata"].get("namespace")
        try:
            if kind == "Namespace":
                self.core.create_namespace(manifest, _request_timeout=REQUEST)
            elif kind == "Deployment":
                self.apps.create_namespaced_deployment(ns, manifest, _request_timeout=REQUEST)
            else:
                self.core.create_namespaced_pod(ns, manifest, _request_timeout=REQUEST)
        except ApiException as e:
            raise SetupError(f"creating {kind} {manifest['metadata']['name']}: HTTP {e.status} {_message(e)}") from None

    def namespaces(self, selector: str) -> list[str]:
        items = _read(self.core.list_namespace(label_selector=selector, _preload_content=False,
                                                    _request_timeout=REQUEST))["items"]
        return [n["metadata"]["name"] for n in items if not n["metadata"].get("deletionTimestamp")]

    def pods(self, ns: str) -> tuple[list[dict], str]:
        """The namespace's pods and the list's resourceVersion (where a watch starts)."""
        data = _read(self.core.list_namespaced_pod(ns, _preload_content=False, _request_timeout=REQUEST))
        return data["items"], data["metadata"].get("resourceVersion", "")

    def watch_pods(self, ns: str, since: str, timeout: float) -> Iterator[dict]:
        """Each change of a pod in ``ns`` after ``since``, until ``timeout`` seconds pass."""
        w = watch.Watch()
        seconds = max(1, int(timeout))
        try:
            for event in w.stream(self.core.list_namespaced_pod, ns, resource_version=since, timeout_seconds=seconds,
                                  _request_timeout=seconds + REQUEST):
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    pod = self.api.sanitize_for_serialization(event["object"])
                    pod["_event"] = event["type"]
                    yield pod
        finally:
            w.stop()

    def log(self, ns: str, pod: str, container: str) -> str:
        return self.core.read_namespaced_pod_log(pod, ns, container=container, _preload_content=False,
                                                 _request_timeout=REQUEST).data.decode(errors="replace")

    def namespace_events(self, ns: str) -> list[dict]:
        return _read(self.core.list_namespaced_event(ns, _preload_content=False, _request_timeout=REQUEST))["items"]

    def exec(self, ns: str, pod: str, container: str, argv: list[str], timeout: float = 30) -> tuple[int | None, str]:
        """``argv`` in the container: its exit status (None: unknown) and its stdout + stderr."""
        resp = stream(self.core.connect_get_namespaced_pod_exec, pod, ns, container=container, command=argv,
                      stdin=False, stdout=True, stderr=True, tty=False, _preload_content=False)
        try:
            resp.run_forever(timeout=timeout)
            out = resp.read_stdout(timeout=0) + resp.read_stderr(timeout=0)
            return resp.returncode, out
        finally:
            resp.close()
