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
    _each_pod_its_own_dns(kube)


def _dns(n: int, token: str) -> dict:
    """A pod's own DNS settings (``dnsPolicy: None``): what the kubelet writes into its sandbox's
    resolv.conf, and nothing of the node's (TEST-NET addresses: nothing is asked of them)."""
    return {"dnsPolicy": "None", "dnsConfig": {"nameservers": [f"192.0.2.{53 + n}"],
                                               "searches": [f"s25-{n}-{token}.example"],
                                               "options": [{"name": "ndots", "value": str(n + 2)}]}}


def _each_pod_its_own_dns(kube) -> None:
    """Two pods alive at once on one node, each with its own dnsConfig: each sees exactly its own
    resolv.conf (the kubelet's file for its sandbox), not the node's and not the other pod's; a
    runtime that gives pods the node's file, or one shared file the last pod wrote, fails here."""
    pods = []
    node = None
    for n in (1, 2):
        name, pod, _ = kube.sleeping_pod(f"dns{n}", spec_extra=_dns(n, kube.token), node_name=node)
        node = node or kube.node_of(pod)
        pods.append((n, name))
    for n, name in pods:
        want = [f"search s25-{n}-{kube.token}.example", f"nameserver 192.0.2.{53 + n}", f"options ndots:{n + 2}"]
        res = kube.exec(name, ["cat", "/etc/resolv.conf"])
        got = [ln.strip() for ln in res.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
        assert res.exit_code == 0 and sorted(got) == sorted(want), (
            f"pod {n} of 2 (dnsConfig nameserver 192.0.2.{53 + n}, both running on node {node}): its /etc/resolv.conf "
            f"holds {got!r}, expected exactly {want!r} ({res.describe()})")


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


# Where a workload writes (the image's folders, and the ones a runtime may share with the node):
# nothing written there inside a pod may appear on the node's own filesystem.
S27_FOLDERS = ("/tmp", "/var/tmp", "/etc", "/opt", "/root", "/usr/local", "/var/log", "/run", "/dev/shm")


def test_s27_host_protection(kube):
    leaf = f"reaper-ci-{kube.token}-{kube.sid}-written-in-pod"
    paths = [f"{d}/{leaf}" for d in S27_FOLDERS]
    content = f"must-not-reach-host-{kube.token}"
    name = kube.name("writer")
    script = "; ".join(f"mkdir -p {d} && echo {content} > {d}/{leaf} && cat {d}/{leaf}" for d in S27_FOLDERS)
    kube.create(kube.pod("writer", sh(script)))
    pod = kube.wait_exited(name)
    assert kube.log_lines(name) == [content] * len(paths), f"the pod could not write and read back {paths}"
    node = kube.node_of(pod)
    kube.node_paths.extend((node, p) for p in paths)  # whatever reached the node goes at teardown
    # positive control: node access sees files in /tmp (a file we put there ourselves)
    control = kube.node_path("control")
    kube.write_node_file(node, control, "x\n")
    tests = " ".join(f"test -e {p}; echo $?;" for p in [control, *paths])
    probe = kube.ctx.node_sh(node, tests, ok=(0,)).stdout.split()
    assert probe[:1] == ["0"], f"node access cannot see its own control file {control}: {probe!r}"
    reached = [p for p, seen in zip(paths, probe[1:]) if seen == "0"]
    assert not reached, (f"written inside the pod, on node {node}'s real filesystem: {', '.join(reached)} "
                         f"({len(reached)} of the {len(paths)} folders written)")
    # S26's file (reaper's shared overlay) must not be on any node's filesystem either, when S26 ran
    other = naming.node_path(kube.token, "s26", "overlay")
    for n in kube.info.nodes:
        leaked = kube.ctx.node_sh(n, f"test -e {other}; echo $?").stdout.strip()
        assert leaked != "0", f"{other}, written by S26 inside reaper's overlay, exists on node {n}'s real filesystem"
