"""Jobs (S36): a Job manifest around the suite's pod, create it, wait for its terminal condition.

The Job's pod template is the suite's pod manifest (RuntimeClass under test, run labels); the
pods the Job controller creates are observed by the scenario's :class:`~k8s_suite.kube.Kube` like
its own, so teardown proves their runtime and checks what they left on the node.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from kubernetes.client.exceptions import ApiException

from k8s_suite import podstate
from k8s_suite import timeouts as T
from k8s_suite.context import _json
from k8s_suite.streams import WaitError

if TYPE_CHECKING:  # pragma: no cover
    from k8s_suite.kube import Kube

TERMINAL_CONDITIONS = ("Complete", "Failed")


def manifest(kube: "Kube", what: str, command: Sequence[str], *, backoff_limit: int = 0,
             pod_failure_policy: Mapping[str, Any] | None = None) -> dict[str, Any]:
    pod = kube.pod(what, command)
    spec: dict[str, Any] = {"backoffLimit": backoff_limit,
                            "template": {"metadata": {"labels": pod["metadata"]["labels"]}, "spec": pod["spec"]}}
    if pod_failure_policy:
        spec["podFailurePolicy"] = dict(pod_failure_policy)
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": kube.name(what), "labels": pod["metadata"]["labels"]}, "spec": spec}


def create(kube: "Kube", job: Mapping[str, Any]) -> str:
    name = job["metadata"]["name"]
    try:
        kube.ctx.batch.create_namespaced_job(kube.ns, dict(job), _preload_content=False, _request_timeout=T.LOG_REQUEST)
    except ApiException as e:
        raise AssertionError(f"creating Job {name}: HTTP {e.status} {e.reason}") from None
    kube.jobs.add(name)
    return name


def get(kube: "Kube", name: str) -> dict:
    return _json(kube.ctx.batch.read_namespaced_job(name, kube.ns, _preload_content=False,
                                                    _request_timeout=T.LOG_REQUEST))


def pods(kube: "Kube", name: str) -> list[dict]:
    """The Job's pods (observed: their ids and uids belong to the scenario)."""
    items = kube.ctx.list_pods(kube.ns, label_selector=f"job-name={name}").get("items", [])
    for p in items:
        kube._observe(p)
    return sorted(items, key=lambda p: p["metadata"].get("creationTimestamp", ""))


def condition(job: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return c
    return None


def describe(job: Mapping[str, Any]) -> str:
    st = job.get("status") or {}
    conds = ", ".join(f"{c.get('type')}={c.get('status')}({c.get('reason') or ''})" for c in st.get("conditions") or [])
    return (f"Job {job['metadata']['name']}: active={st.get('active', 0)} succeeded={st.get('succeeded', 0)} "
            f"failed={st.get('failed', 0)} conditions: {conds or 'none'}")


def wait_finished(kube: "Kube", name: str, timeout: float = T.POD_FINISH, *, max_pods: int | None = None) -> dict:
    """Wait for the Job's Complete or Failed condition. ``max_pods``: fail as soon as the
    controller has created more pods than that (a retry the scenario says must not happen)."""
    deadline = time.monotonic() + timeout
    while True:
        job = get(kube, name)
        if any(condition(job, k) for k in TERMINAL_CONDITIONS):
            pods(kube, name)
            return job
        if max_pods is not None:
            made = pods(kube, name)
            if len(made) > max_pods:
                raise AssertionError(f"{describe(job)}: the controller created {len(made)} pods, at most {max_pods} "
                                     "expected: " + "; ".join(podstate.describe(p) for p in made))
        if time.monotonic() > deadline:
            raise WaitError(f"{describe(job)}: no Complete/Failed condition within {timeout:.0f}s; pods: "
                            + "; ".join(podstate.describe(p) for p in pods(kube, name)))
        time.sleep(0.25)  # poll interval until the deadline
