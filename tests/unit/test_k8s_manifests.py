"""Scenario suite: manifest factories (pods for the runtime under test, ConfigMaps, Secrets, volumes)."""

from __future__ import annotations

import _k8s_path  # noqa: F401
import pytest

from k8s_suite import manifests as m
from k8s_suite.naming import FINALIZER, RUN_LABEL, SCENARIO_LABEL

BASE = dict(token="k3f9x2", sid="s01", runtime_class="reaper-v2", image="docker.io/library/busybox:reaper-ci")


def test_pod_defaults():
    pod = m.pod("s01-echo-k3f9x2", ["/bin/echo", "hi"], **BASE)
    spec = pod["spec"]
    assert pod["metadata"] == {"name": "s01-echo-k3f9x2", "labels": {RUN_LABEL: "k3f9x2", SCENARIO_LABEL: "s01"}}
    assert spec["runtimeClassName"] == "reaper-v2"
    assert spec["restartPolicy"] == "Never"
    # Kubernetes' default pod: token mounted, service links on (neither is turned off)
    assert "automountServiceAccountToken" not in spec and "enableServiceLinks" not in spec
    (c,) = spec["containers"]
    assert c == {"name": "main", "image": BASE["image"], "imagePullPolicy": "IfNotPresent", "command": ["/bin/echo", "hi"]}
    assert "terminationGracePeriodSeconds" not in spec and "finalizers" not in pod["metadata"]


def test_pod_overrides():
    pod = m.pod("p", m.sh("pwd"), **BASE, env={"A": "a=b=c"}, working_dir="/tmp", grace=30,
                finalizers=m.hold_finalizers(), node_name="vm", pod_security={"runAsUser": 1000},
                volumes=[m.secret_volume("creds", "sec")], mounts=[m.mount("creds", "/creds", read_only=True)])
    spec, c = pod["spec"], pod["spec"]["containers"][0]
    assert c["command"] == ["/bin/sh", "-c", "pwd"]
    assert c["env"] == [{"name": "A", "value": "a=b=c"}]
    assert c["workingDir"] == "/tmp"
    assert c["volumeMounts"] == [{"name": "creds", "mountPath": "/creds", "readOnly": True}]
    assert spec["terminationGracePeriodSeconds"] == 30 and spec["nodeName"] == "vm"
    assert spec["securityContext"] == {"runAsUser": 1000}
    assert spec["volumes"] == [{"name": "creds", "secret": {"secretName": "sec"}}]
    assert pod["metadata"]["finalizers"] == [FINALIZER]


def test_pod_with_several_containers():
    cs = [m.container("a", ["true"], image="i"), m.container("b", ["false"], image="i")]
    pod = m.pod("p", containers=cs, **BASE)
    assert [c["name"] for c in pod["spec"]["containers"]] == ["a", "b"]
    with pytest.raises(ValueError):
        m.pod("p", ["true"], containers=cs, **BASE)
    with pytest.raises(ValueError):
        m.pod("p", **BASE)


def test_configmap_secret_and_volumes():
    cm = m.configmap("scripts", {"hello.sh": "#!/bin/sh\n"}, token="k3f9x2", sid="s17")
    assert cm["data"] == {"hello.sh": "#!/bin/sh\n"} and cm["metadata"]["labels"][RUN_LABEL] == "k3f9x2"
    sec = m.secret("creds", {"username": "u"}, token="k3f9x2", sid="s18")
    assert sec["stringData"] == {"username": "u"} and sec["type"] == "Opaque"
    assert m.configmap_volume("v", "scripts", mode=0o755) == {"name": "v", "configMap": {"name": "scripts", "defaultMode": 493}}
    assert m.hostpath_volume("h", "/tmp/x") == {"name": "h", "hostPath": {"path": "/tmp/x", "type": "Directory"}}
    assert m.emptydir_volume("d") == {"name": "d", "emptyDir": {}}
    assert m.namespace("reaper-ci-k3f9x2-s01", "k3f9x2", "s01")["metadata"]["labels"] == {RUN_LABEL: "k3f9x2",
                                                                                         SCENARIO_LABEL: "s01"}
