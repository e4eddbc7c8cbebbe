"""The soak's long-lived workloads: what users run for hours, on the handler under test.

- ``counter``: a Deployment (one replica, ``restartPolicy: Always``) whose container prints 1, 2,
  3... one a second to stdout: the container log must never gap or start again;
- ``probe``: a pod with an exec liveness probe every 10 s that reads a file its main process wrote
  on an emptyDir: exec must keep answering for the whole run (a failed probe is an Unhealthy event);
- ``hostlog``: a pod that appends the same counter to a file on a hostPath folder: the node's copy
  must never gap or start again.

Every main process carries the run's token in its command line (``sh -c SCRIPT soak-<token>-<name>``),
so the node's process table tells which processes are the pod's: exactly one tree each.
"""

from __future__ import annotations

from dataclasses import dataclass

from ci.cluster.verify import MANAGED

NAMES = ("counter", "probe", "hostlog")
PROBE_PERIOD = 10  # seconds between the probe pod's liveness execs
HOST_DIR = "/var/tmp/reaper-ci-soak"  # node folder: <HOST_DIR>/<token>/count.log (hostlog)
LABEL_RUN = "reaper-ci/soak-run"
LABEL_CLASS = "reaper-ci/soak-runtime-class"
COUNT = 'i=0; while :; do i=$((i+1)); echo "$i"{redirect}; sleep 1; done'


@dataclass(frozen=True)
class Run:
    token: str
    runtime_class: str
    image: str
    node: str

    @property
    def namespace(self) -> str:
        return f"reaper-ci-soak-{self.token}"

    def tag(self, name: str) -> str:
        """The marker in the command line of ``name``'s main process."""
        return f"soak-{self.token}-{name}"

    @property
    def host_dir(self) -> str:
        return f"{HOST_DIR}/{self.token}"

    @property
    def host_log(self) -> str:
        return f"{self.host_dir}/count.log"


def namespace(run: Run) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": run.namespace, "labels": {**MANAGED, LABEL_RUN: run.token,
                                                           LABEL_CLASS: run.runtime_class}}}


def _container(run: Run, name: str, script: str, **extra) -> dict:
    return {"name": name, "image": run.image, "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sh", "-c", script, run.tag(name)], **extra}


def _pod_spec(run: Run, container: dict, volumes: list[dict] | None = None) -> dict:
    # Kubernetes' default pod otherwise (token mounted, service links): only the handler and the node are set
    spec = {"runtimeClassName": run.runtime_class, "nodeSelector": {"kubernetes.io/hostname": run.node},
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 5, "containers": [container]}
    if volumes:
        spec["volumes"] = volumes
    return spec


def _meta(run: Run, name: str) -> dict:
    return {"name": name, "namespace": run.namespace, "labels": {**MANAGED, LABEL_RUN: run.token, "app": name}}


def counter(run: Run) -> dict:
    template = {"metadata": {"labels": _meta(run, "counter")["labels"]},
                "spec": _pod_spec(run, _container(run, "counter", COUNT.format(redirect="")))}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(run, "counter"),
            "spec": {"replicas": 1, "selector": {"matchLabels": {LABEL_RUN: run.token, "app": "counter"}},
                     "template": template}}


def probe(run: Run) -> dict:
    script = "date +%s > /soak/alive && " + COUNT.format(redirect="")
    liveness = {"exec": {"command": ["/bin/sh", "-c", "test -s /soak/alive"]}, "periodSeconds": PROBE_PERIOD,
                "timeoutSeconds": 5, "failureThreshold": 3, "initialDelaySeconds": 2}
    c = _container(run, "probe", script, livenessProbe=liveness,
                   volumeMounts=[{"name": "soak", "mountPath": "/soak"}])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(run, "probe"),
            "spec": _pod_spec(run, c, [{"name": "soak", "emptyDir": {}}])}


def hostlog(run: Run) -> dict:
    c = _container(run, "hostlog", COUNT.format(redirect=" >> /soak-log/count.log"),
                   volumeMounts=[{"name": "log", "mountPath": "/soak-log"}])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(run, "hostlog"),
            "spec": _pod_spec(run, c, [{"name": "log", "hostPath": {"path": run.host_dir, "type": "DirectoryOrCreate"}}])}


def manifests(run: Run) -> list[dict]:
    return [counter(run), probe(run), hostlog(run)]
