"""S25-S27: the node filesystem (resolv.conf; reaper's shared overlay; the host stays untouched)."""

from __future__ import annotations

import re

import pytest

from k8s_suite import naming
from k8s_suite.kube import InfrastructureError
from k8s_suite.manifests import sh

NAMESERVER = re.compile(r"^nameserver\s+\S+")


def test_s25_resolv_conf(kube):
    name = kube.name("dns")
    kube.create(kube.pod("dns", sh("if [ -f /etc/resolv.conf ]; then echo \"--- $(wc -c < /etc/resolv.conf) bytes\"; "
                                   "cat /etc/resolv.conf; else echo '--- missing'; fi")))
    pod = kube.wait_exited(name)
    lines = kube.log_lines(name)
    assert lines and lines[0] != "--- missing", f"/etc/resolv.conf does not exist in the pod; log {lines!r}"
    m = re.match(r"^--- (\d+) bytes$", lines[0] if lines else "")
    assert m, f"unexpected output: {lines!r}"
    size = int(m.group(1))
    assert size > 0, "/etc/resolv.conf is empty in the pod"
    if not any(NAMESERVER.match(ln) for ln in lines[1:]):
        node = kube.node_of(pod)
        host = kube.ctx.node.read_file(node, "/etc/resolv.conf") or ""
        if not any(NAMESERVER.match(ln) for ln in host.splitlines()):
            raise InfrastructureError(
                f"the pod's /etc/resolv.conf has no nameserver line, and neither has node {node}'s /etc/resolv.conf "
                f"(without clusterDNS the kubelet gives pods the node's): fix the node's DNS configuration; "
                f"pod's file: {lines[1:]!r}")
        pytest.fail(f"the pod's /etc/resolv.conf has no nameserver line (the node's has): {lines[1:]!r}", pytrace=False)


@pytest.mark.reaper_only
def test_s26_overlay_sharing(kube):
    path = kube.node_path("overlay")  # /tmp/reaper-ci-<token>-s26-overlay, inside reaper's shared overlay
    content = f"overlay-works-{kube.token}"
    writer = kube.name("writer")
    pod = kube.create(kube.pod("writer", sh(f"echo {content} > {path} && cat {path}")))
    pod = kube.wait_exited(writer)
    assert kube.log_lines(writer) == [content], f"writer could not write and read back {path}"
    node = kube.node_of(pod)
    reader = kube.name("reader")
    kube.create(kube.pod("reader", ["cat", path], node_name=node))
    kube.wait_exited(reader)
    lines = kube.log_lines(reader)
    assert lines == [content], f"reader (same namespace, node {node}): expected [{content!r}], got {lines!r}"


def test_s27_host_protection(kube):
    path = naming.node_path(kube.token, kube.sid, "written-in-pod")
    content = f"must-not-reach-host-{kube.token}"
    name = kube.name("writer")
    kube.create(kube.pod("writer", sh(f"echo {content} > {path} && cat {path}")))
    pod = kube.wait_exited(name)
    assert kube.log_lines(name) == [content], f"the pod could not write and read back {path}"
    node = kube.node_of(pod)
    # positive control: node access sees files in /tmp (a file we put there ourselves)
    control = kube.node_path("control")
    kube.write_node_file(node, control, "x\n")
    probe = kube.ctx.node_sh(node, f"test -e {control}; echo $?; test -e {path}; echo $?", ok=(0,)).stdout.split()
    assert probe[:1] == ["0"], f"node access cannot see its own control file {control}: {probe!r}"
    assert probe[1:2] == ["1"], f"{path}, written inside the pod, exists on node {node}'s real filesystem"
    # S26's file (reaper's shared overlay) must not be on any node's filesystem either, when S26 ran
    other = naming.node_path(kube.token, "s26", "overlay")
    for n in kube.info.nodes:
        leaked = kube.ctx.node_sh(n, f"test -e {other}; echo $?").stdout.strip()
        assert leaked != "0", f"{other}, written by S26 inside reaper's overlay, exists on node {n}'s real filesystem"
