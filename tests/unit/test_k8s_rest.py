"""k8s_suite.rest: each call the suite makes sends exactly the request the client library's generated
method sends (method, path, query, content type, body), through a real ApiClient to a local HTTP
server; errors raise ApiException as the generated methods do; exec/attach and watches take its
methods as they take the generated ones."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import _k8s_path  # noqa: F401
import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream as k8s_stream

from k8s_suite import rest


class _Server:
    """Records every request; answers 200 with ``{"items": []}`` (or ``status`` when set)."""

    def __init__(self):
        self.seen: list[dict] = []
        self.status = 200
        self.body = b'{"kind": "List", "items": [], "metadata": {"resourceVersion": "1"}}'
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(n) if n else b""
                u = urlsplit(self.path)
                outer.seen.append({"method": self.command, "path": u.path, "query": sorted(parse_qsl(u.query)),
                                   "content_type": self.headers.get("Content-Type"),
                                   "body": json.loads(data) if data else None})
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _any

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.host = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def last(self) -> dict:
        return self.seen[-1]


@pytest.fixture(scope="module")
def server():
    s = _Server()
    yield s
    s.httpd.shutdown()


def _api_client(server) -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = server.host
    cfg.api_key = {"authorization": "Bearer t"}
    return client.ApiClient(cfg)


POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
       "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}}}

# (generated API class, method, args, kwargs): every call the suite makes, with the arguments it passes
CALLS = [
    ("CoreV1Api", "create_namespace", ({"metadata": {"name": "n"}},), {}),
    ("CoreV1Api", "delete_namespace", ("n",), {"propagation_policy": "Background"}),
    ("CoreV1Api", "read_namespaced_service_account", ("default", "n"), {}),
    ("CoreV1Api", "list_node", (), {}),
    ("CoreV1Api", "list_pod_for_all_namespaces", (), {"label_selector": "a=b", "field_selector": "metadata.name=x"}),
    ("CoreV1Api", "list_namespaced_pod", ("n",), {"field_selector": "metadata.name=x"}),
    ("CoreV1Api", "list_namespaced_pod", ("n",), {"field_selector": "metadata.name=x", "resource_version": "5",
                                                  "timeout_seconds": 3, "watch": True}),
    ("CoreV1Api", "create_namespaced_pod", ("n", POD), {}),
    ("CoreV1Api", "read_namespaced_pod", ("p", "n"), {}),
    ("CoreV1Api", "patch_namespaced_pod", ("p", "n", {"spec": {"activeDeadlineSeconds": 7}}), {}),
    ("CoreV1Api", "patch_namespaced_pod", ("p", "n", [{"op": "remove", "path": "/metadata/finalizers/0"}]), {}),
    ("CoreV1Api", "delete_namespaced_pod", ("p", "n"), {"grace_period_seconds": 0}),
    ("CoreV1Api", "delete_collection_namespaced_pod", ("n",), {"grace_period_seconds": 1}),
    ("CoreV1Api", "read_namespaced_pod_log", ("p", "n"), {"container": "c", "previous": True, "tail_lines": 1}),
    ("CoreV1Api", "read_namespaced_pod_log", ("p", "n"), {"follow": True}),
    ("CoreV1Api", "list_namespaced_event", ("n",), {}),
    ("CoreV1Api", "create_namespaced_config_map", ("n", {"metadata": {"name": "c"}, "data": {"k": "v"}}), {}),
    ("CoreV1Api", "read_namespaced_config_map", ("kube-root-ca.crt", "n"), {}),
    ("CoreV1Api", "patch_namespaced_config_map", ("c", "n", {"data": {"k": "w"}}), {}),
    ("CoreV1Api", "create_namespaced_secret", ("n", {"metadata": {"name": "s"}, "data": {"k": "dg=="}}), {}),
    ("CoreV1Api", "patch_namespaced_secret", ("s", "n", {"data": {"k": "dw=="}}), {}),
    ("BatchV1Api", "create_namespaced_job", ("n", JOB), {}),
    ("BatchV1Api", "read_namespaced_job", ("j", "n"), {}),
    ("BatchV1Api", "delete_namespaced_job", ("j", "n"), {"propagation_policy": "Orphan"}),
    ("NodeV1Api", "list_runtime_class", (), {}),
    ("VersionApi", "get_code", (), {}),
]


@pytest.mark.parametrize("group,method,args,kw", CALLS, ids=[f"{c[1]}-{i}" for i, c in enumerate(CALLS)])
def test_each_call_sends_what_the_generated_method_sends(server, group, method, args, kw):
    api_client = _api_client(server)
    getattr(getattr(client, group)(api_client), method)(*args, _preload_content=False, **kw)
    generated = server.last()
    resp = getattr(rest.Api(api_client), method)(*args, _preload_content=False, _request_timeout=5, **kw)
    ours = server.last()
    assert ours == generated
    assert json.loads(resp.data) == json.loads(server.body)


def test_every_call_of_the_suite_is_compared_with_the_generated_one():
    streams = {"connect_get_namespaced_pod_exec", "connect_get_namespaced_pod_attach"}  # the websocket test below
    assert {c[1] for c in CALLS} | streams == set(rest.CALLS) | set(rest.STREAMS)


def test_a_non_2xx_answer_raises_api_exception_with_its_status(server):
    api = rest.Api(_api_client(server))
    server.status = 404
    try:
        with pytest.raises(ApiException) as e:
            api.read_namespaced_pod("p", "n")
    finally:
        server.status = 200
    assert e.value.status == 404


def test_names_that_are_not_one_path_segment_are_refused():
    api = rest.Api(object())
    for bad in ("a/b", "..", "x?y=1", ""):
        with pytest.raises(ValueError, match="not an API object name"):
            api.read_namespaced_pod(bad, "n")


def test_query_names_and_lists():
    assert rest.camel("grace_period_seconds") == "gracePeriodSeconds" and rest.camel("watch") == "watch"
    assert rest.query({"command": ["sh", "-c", "x"], "stdin": False, "container": None, "tail_lines": 2}) == [
        ("command", "sh"), ("command", "-c"), ("command", "x"), ("stdin", False), ("tailLines", 2)]


@pytest.mark.parametrize("method", ["connect_get_namespaced_pod_exec", "connect_get_namespaced_pod_attach"])
def test_stream_opens_the_same_websocket_url_as_the_generated_method(server, method):
    """The client's ``stream()`` swaps the ApiClient's transport and calls the method: the URL and
    headers it then opens are the generated method's."""
    opened = []

    def websocket_request(configuration, method_, url, **kw):
        opened.append((method_, sorted(parse_qsl(urlsplit(url).query)), urlsplit(url).path))
        return "ws"

    kw = dict(container="c", stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
    if method.endswith("exec"):
        kw["command"] = ["/bin/sh", "-c", "echo a b"]
    api_client = _api_client(server)
    plain = len(server.seen)
    k8s_stream.func(websocket_request, None, getattr(client.CoreV1Api(api_client), method), "p", "n", **kw)
    k8s_stream.func(websocket_request, None, getattr(rest.Api(api_client), method), "p", "n", **kw)
    assert len(opened) == 2 and opened[0] == opened[1], opened
    assert opened[1][2] == f"/api/v1/namespaces/n/pods/p/{method.rsplit('_', 1)[1]}"
    assert len(server.seen) == plain  # nothing went over plain HTTP: the websocket transport took the call


def test_a_watch_of_its_list_reads_raw_events(server):
    """``Watch.stream`` adds ``watch=true`` to its list call and, with no model to build, gives the
    raw objects."""
    events = b"".join(json.dumps({"type": t, "object": {"metadata": {"name": "p", "resourceVersion": v}}}).encode() + b"\n"
                      for t, v in (("ADDED", "2"), ("MODIFIED", "3")))
    old, server.body = server.body, events
    try:
        got = list(watch.Watch().stream(rest.Api(_api_client(server)).list_namespaced_pod, "n",
                                        field_selector="metadata.name=p", timeout_seconds=1, deserialize=False))
    finally:
        server.body = old
    assert [(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in got] == [("ADDED", "2"), ("MODIFIED", "3")]
    q = dict(server.last()["query"])
    assert server.last()["path"] == "/api/v1/namespaces/n/pods" and q["watch"] == "true" and q["timeoutSeconds"] == "1"
