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

    # --- core/v1 -----------------------------------------------------------------------------------
    @staticmethod
    def _ns(namespace: str, rest: str = "") -> str:
        return f"/api/v1/namespaces/{segment(namespace)}{rest}"

    def create_namespace(self, body: dict, **kw):
        return self.call("POST", "/api/v1/namespaces", body, **kw)

    def delete_namespace(self, name: str, **kw):
        return self.call("DELETE", self._ns(name), **kw)

    def read_namespaced_service_account(self, name: str, namespace: str, **kw):
        return self.call("GET", self._ns(namespace, f"/serviceaccounts/{segment(name)}"), **kw)

    def list_node(self, **kw):
        return self.call("GET", "/api/v1/nodes", **kw)

    def list_pod_for_all_namespaces(self, **kw):
        return self.call("GET", "/api/v1/pods", **kw)

    def list_namespaced_pod(self, namespace: str, **kw):
        return self.call("GET", self._ns(namespace, "/pods"), **kw)

    def create_namespaced_pod(self, namespace: str, body: dict, **kw):
        return self.call("POST", self._ns(namespace, "/pods"), body, **kw)

    def read_namespaced_pod(self, name: str, namespace: str, **kw):
        return self.call("GET", self._ns(namespace, f"/pods/{segment(name)}"), **kw)

    def patch_namespaced_pod(self, name: str, namespace: str, body: Any, **kw):
        return self.call("PATCH", self._ns(namespace, f"/pods/{segment(name)}"), body, **kw)

    def delete_namespaced_pod(self, name: str, namespace: str, **kw):
        return self.call("DELETE", self._ns(namespace, f"/pods/{segment(name)}"), **kw)

    def delete_collection_namespaced_pod(self, namespace: str, **kw):
        return self.call("DELETE", self._ns(namespace, "/pods"), **kw)

    def read_namespaced_pod_log(self, name: str, namespace: str, **kw):
        return self.call("GET", self._ns(namespace, f"/pods/{segment(name)}/log"), accept="*/*", **kw)

    def connect_get_namespaced_pod_exec(self, name: str, namespace: str, **kw):
        return self.call("GET", self._ns(namespace, f"/pods/{segment(name)}/exec"), accept="*/*", **kw)

    def connect_get_namespaced_pod_attach(self, name: str, namespace: str, **kw):
        return self.call("GET", self._ns(namespace, f"/pods/{segment(name)}/attach"), accept="*/*", **kw)

    def list_namespaced_event(self, namespace: str, **kw):
        return self.call("GET", self._ns(namespace, "/events"), **kw)

    def create_namespaced_config_map(self, namespace: str, body: dict, **kw):
        return self.call("POST", self._ns(namespace, "/configmaps"), body, **kw)

    def read_namespaced_config_map(self, name: str, namespace: str, **kw):
        return self.call("GET", self._ns(namespace, f"/configmaps/{segment(name)}"), **kw)

    def patch_namespaced_config_map(self, name: str, namespace: str, body: Any, **kw):
        return self.call("PATCH", self._ns(namespace, f"/configmaps/{segment(name)}"), body, **kw)

    def create_namespaced_secret(self, namespace: str, body: dict, **kw):
        return self.call("POST", self._ns(namespace, "/secrets"), body, **kw)

    def patch_namespaced_secret(self, name: str, namespace: str, body: Any, **kw):
        return self.call("PATCH", self._ns(namespace, f"/secrets/{segment(name)}"), body, **kw)

    # --- batch/v1, node.k8s.io/v1, version ---------------------------------------------------------
    @staticmethod
    def _jobs(namespace: str, name: str | None = None) -> str:
        return f"/apis/batch/v1/namespaces/{segment(namespace)}/jobs" + (f"/{segment(name)}" if name else "")

    def create_namespaced_job(self, namespace: str, body: dict, **kw):
        return self.call("POST", self._jobs(namespace), body, **kw)

    def read_namespaced_job(self, name: str, namespace: str, **kw):
        return self.call("GET", self._jobs(namespace, name), **kw)

    def delete_namespaced_job(self, name: str, namespace: str, **kw):
        return self.call("DELETE", self._jobs(namespace, name), **kw)

    def list_runtime_class(self, **kw):
        return self.call("GET", "/apis/node.k8s.io/v1/runtimeclasses", **kw)

    def get_code(self, **kw):
        return self.call("GET", "/version/", **kw)
