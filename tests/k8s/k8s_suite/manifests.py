"""Manifests as plain dicts from small factories with keyword overrides.

Every pod is Kubernetes' default pod (what ``kubectl run`` or a Deployment makes): the
service-account token projected at /var/run/secrets/kubernetes.io/serviceaccount, service links,
the default termination message path. On top: the RuntimeClass under test, the suite's image with
``imagePullPolicy: IfNotPresent`` (the image is imported on the node; nothing can be pulled),
``restartPolicy: Never`` and the run/scenario labels. A scenario departs from the defaults only
through ``spec_extra`` (``automountServiceAccountToken: False``...) and says why.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from k8s_suite.naming import FINALIZER, RUN_LABEL, SCENARIO_LABEL


def labels(token: str, sid: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {RUN_LABEL: token, SCENARIO_LABEL: sid, **(extra or {})}


def namespace(name: str, token: str, sid: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels(token, sid)}}


def container(
    name: str,
    command: Sequence[str],
    *,
    image: str,
    args: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    working_dir: str | None = None,
    mounts: Sequence[Mapping[str, Any]] = (),
    security: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent", "command": list(command)}
    if args is not None:
        c["args"] = list(args)
    if env:
        c["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if working_dir is not None:
        c["workingDir"] = working_dir
    if mounts:
        c["volumeMounts"] = [dict(m) for m in mounts]
    if security:
        c["securityContext"] = dict(security)
    return c


def pod(
    name: str,
    command: Sequence[str] | None = None,
    *,
    token: str,
    sid: str,
    runtime_class: str | None,
    image: str,
    containers: Sequence[Mapping[str, Any]] | None = None,
    env: Mapping[str, str] | None = None,
    working_dir: str | None = None,
    volumes: Sequence[Mapping[str, Any]] = (),
    mounts: Sequence[Mapping[str, Any]] = (),
    pod_security: Mapping[str, Any] | None = None,
    grace: int | None = None,
    finalizers: Sequence[str] = (),
    node_name: str | None = None,
    restart: str = "Never",
    extra_labels: Mapping[str, str] | None = None,
    spec_extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One pod. Either ``command`` (one container named ``main``) or ``containers``; ``spec_extra``
    adds pod spec fields as they are (``shareProcessNamespace``, ``initContainers``, ...)."""
    if (command is None) == (containers is None):
        raise ValueError("give either command or containers")
    if containers is None:
        containers = [container("main", command, image=image, env=env, working_dir=working_dir, mounts=mounts)]
    spec: dict[str, Any] = {
        "restartPolicy": restart,
        "containers": [dict(c) for c in containers],
    }
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    if volumes:
        spec["volumes"] = [dict(v) for v in volumes]
    if pod_security:
        spec["securityContext"] = dict(pod_security)
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = int(grace)
    if node_name:
        spec["nodeName"] = node_name
    if spec_extra:
        spec.update(spec_extra)
    meta: dict[str, Any] = {"name": name, "labels": labels(token, sid, extra_labels)}
    if finalizers:
        meta["finalizers"] = list(finalizers)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def hold_finalizers() -> list[str]:
    """The suite's own finalizer: the pod object survives its deletion until the test removes it."""
    return [FINALIZER]


def configmap(name: str, data: Mapping[str, str], *, token: str, sid: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels(token, sid)},
            "data": dict(data)}


def secret(name: str, string_data: Mapping[str, str], *, token: str, sid: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "labels": labels(token, sid)}, "stringData": dict(string_data)}


def configmap_volume(name: str, configmap_name: str, mode: int | None = None) -> dict[str, Any]:
    src: dict[str, Any] = {"name": configmap_name}
    if mode is not None:
        src["defaultMode"] = mode
    return {"name": name, "configMap": src}


def secret_volume(name: str, secret_name: str) -> dict[str, Any]:
    return {"name": name, "secret": {"secretName": secret_name}}


def emptydir_volume(name: str) -> dict[str, Any]:
    return {"name": name, "emptyDir": {}}


def hostpath_volume(name: str, path: str, kind: str = "Directory") -> dict[str, Any]:
    return {"name": name, "hostPath": {"path": path, "type": kind}}


def mount(volume: str, path: str, read_only: bool = False) -> dict[str, Any]:
    m: dict[str, Any] = {"name": volume, "mountPath": path}
    if read_only:
        m["readOnly"] = True
    return m


def sh(script: str) -> list[str]:
    """``/bin/sh -c script`` (busybox and every Linux node have it)."""
    return ["/bin/sh", "-c", script]
