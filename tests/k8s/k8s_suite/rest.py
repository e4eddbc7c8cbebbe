"""The API calls the suite makes, as raw HTTP through the kubernetes client's ``ApiClient``.

The client's generated API classes (``CoreV1Api``, ``BatchV1Api``, ...) build pydantic models and
validators for every method of their group when first imported: ~0.4 CPU-s in each of the suite's
processes (a dozen workers and the controller, all at the start, on two cores), while the suite
reads every answer as raw JSON anyway. :class:`Api` keeps the generated methods' names and
arguments the suite uses, so the client's ``stream()`` (exec, attach) and ``Watch.stream`` take its
methods as they take the generated ones, and returns what those return with
``_preload_content=False``: the urllib3 response (``json.loads(r.data)``), raising ``ApiException``
on a non-2xx answer.

Query arguments are the generated ones (snake_case, turned into the API's camelCase); a list is
repeated (``command=a&command=b``); ``None`` is left out.
"""

from __future__ import annotations

import re
from typing import Any

from kubernetes.client.exceptions import ApiException

JSON = "application/json"
MERGE_PATCH = "application/strategic-merge-patch+json"  # a dict body (the generated client's choice)
JSON_PATCH = "application/json-patch+json"  # a list of operations


def camel(name: str) -> str:
    """``grace_period_seconds`` -> ``gracePeriodSeconds``."""
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def query(params: dict[str, Any]) -> list[tuple[str, Any]]:
    """The query of a call: generated argument names in camelCase, lists repeated, None left out."""
    out: list[tuple[str, Any]] = []
    for k, v in params.items():
        if v is None:
            continue
        if isinstance(v, (list, tuple)):
            out += [(camel(k), x) for x in v]
        else:
            out.append((camel(k), v))
    return out


def content_type(body: Any, method: str) -> str | None:
    """A patch's type (its body says which); None for the rest (the client sends JSON, no header,
    as the generated methods do)."""
    if method == "PATCH":
        return JSON_PATCH if isinstance(body, list) else MERGE_PATCH
    return None


_SEGMENT = re.compile(r"^[A-Za-z0-9._:-]+$")


def segment(value: str) -> str:
    """One path segment (a name or namespace): refused unless it is one (no '/', '?', '..')."""
    if not _SEGMENT.match(value or "") or value in (".", ".."):
        raise ValueError(f"not an API object name: {value!r}")
    return value


class Api:
    """The suite's calls, on one ``ApiClient`` (``self.api_client``, where ``stream()`` looks)."""

    def __init__(self, api_client: Any):
        self.api_client = api_client

    def call(self, method: str, path: str, body: Any = None, *, accept: str = JSON,
             _preload_content: bool = False, _request_timeout: Any = None, **params: Any):
        """One request; the urllib3 response of a 2xx answer (``_preload_content`` is accepted for
        the generated signature and always means raw), ``ApiException`` otherwise."""
        headers = {"Accept": accept}
        kind = content_type(body, method)
        if kind:
            headers["Content-Type"] = kind
        m, url, hdrs, data, post = self.api_client.param_serialize(
            method, path, query_params=query(params), header_params=headers, body=body,
            auth_settings=["BearerToken"])
        r = self.api_client.call_api(m, url, hdrs, data, post, _request_timeout=_request_timeout)
        status = getattr(r, "status", 200)
        if isinstance(status, int) and not 200 <= status <= 299:
            if hasattr(r, "read"):
                r.read()
            raise ApiException.from_response(http_resp=r, body=None, data=None)
        return r.response


def _op(verb: str, template: str, *args: str, accept: str = JSON):
    """A method of :class:`Api`: ``args`` are the generated method's positional arguments in order
    (path parameters by their name in ``template``, and ``body``); the rest are query arguments."""
    def method(self: Api, *values: Any, **kw: Any):
        given = dict(zip(args, values))
        path = template.format(**{k: segment(v) for k, v in given.items() if k != "body"})
        return self.call(verb, path, given.get("body"), accept=accept, **kw)
    return method


NS = "/api/v1/namespaces/{namespace}"
JOBS = "/apis/batch/v1/namespaces/{namespace}/jobs"
RAW = "*/*"  # logs and the exec/attach streams
CALLS = {  # the generated method's name: its verb, path and positional arguments
    "create_namespace": ("POST", "/api/v1/namespaces", "body"),
    "delete_namespace": ("DELETE", "/api/v1/namespaces/{name}", "name"),
    "read_namespaced_service_account": ("GET", NS + "/serviceaccounts/{name}", "name", "namespace"),
    "list_node": ("GET", "/api/v1/nodes"),
    "list_pod_for_all_namespaces": ("GET", "/api/v1/pods"),
    "list_namespaced_pod": ("GET", NS + "/pods", "namespace"),
    "create_namespaced_pod": ("POST", NS + "/pods", "namespace", "body"),
    "read_namespaced_pod": ("GET", NS + "/pods/{name}", "name", "namespace"),
    "patch_namespaced_pod": ("PATCH", NS + "/pods/{name}", "name", "namespace", "body"),
    "delete_namespaced_pod": ("DELETE", NS + "/pods/{name}", "name", "namespace"),
    "delete_collection_namespaced_pod": ("DELETE", NS + "/pods", "namespace"),
    "list_namespaced_event": ("GET", NS + "/events", "namespace"),
    "create_namespaced_config_map": ("POST", NS + "/configmaps", "namespace", "body"),
    "read_namespaced_config_map": ("GET", NS + "/configmaps/{name}", "name", "namespace"),
    "patch_namespaced_config_map": ("PATCH", NS + "/configmaps/{name}", "name", "namespace", "body"),
    "create_namespaced_secret": ("POST", NS + "/secrets", "namespace", "body"),
    "patch_namespaced_secret": ("PATCH", NS + "/secrets/{name}", "name", "namespace", "body"),
    "create_namespaced_job": ("POST", JOBS, "namespace", "body"),
    "read_namespaced_job": ("GET", JOBS + "/{name}", "name", "namespace"),
    "delete_namespaced_job": ("DELETE", JOBS + "/{name}", "name", "namespace"),
    "list_runtime_class": ("GET", "/apis/node.k8s.io/v1/runtimeclasses"),
    "get_code": ("GET", "/version/"),
}
STREAMS = {  # GET, raw answers
    "read_namespaced_pod_log": NS + "/pods/{name}/log",
    "connect_get_namespaced_pod_exec": NS + "/pods/{name}/exec",
    "connect_get_namespaced_pod_attach": NS + "/pods/{name}/attach",
}
for _name, (_verb, _template, *_args) in CALLS.items():
    setattr(Api, _name, _op(_verb, _template, *_args))
for _name, _template in STREAMS.items():
    setattr(Api, _name, _op("GET", _template, "name", "namespace", accept=RAW))
