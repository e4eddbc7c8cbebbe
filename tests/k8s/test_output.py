"""S06-S07: output relay (stderr next to stdout, stderr alone, large output without loss)."""

from __future__ import annotations

import pytest

from k8s_suite import podstate
from k8s_suite.kube import InfrastructureError
from k8s_suite.manifests import sh


def test_s06_stderr(kube):
    name = kube.name("stderr")
    kube.create(kube.pod("stderr", containers=[
        kube.container("both", sh("echo stdout-ok; echo stderr-ok >&2")),
        kube.container("erronly", sh("echo stderr-only >&2")),
    ]))
    kube.wait_exited(name)
    both = kube.log_lines(name, "both")
    # two pipes: their relative order in the log is not defined, their content is
    assert sorted(both) == ["stderr-ok", "stdout-ok"], f"container 'both': expected stdout-ok and stderr-ok, got {both!r}"
    only = kube.log_lines(name, "erronly")
    assert only == ["stderr-only"], f"container 'erronly' (empty stdout): expected ['stderr-only'], got {only!r}"


@pytest.mark.slow
def test_s07_large_output(kube):
    name = kube.name("seq")
    n = 20000
    kube.create(kube.pod("seq", ["seq", "1", str(n)]))
    pod = kube.wait_exited(name)
    text = kube.logs(name)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    expected = [str(i) for i in range(1, n + 1)]
    size = len(text.encode())
    if lines != expected:
        relay = _containerd_relay_errors(kube, pod)
        first_bad = next((i for i, (a, b) in enumerate(zip(lines, expected)) if a != b), min(len(lines), n))
        got = lines[first_bad] if first_bad < len(lines) else "<end of log>"
        want = expected[first_bad] if first_bad < n else "<end of log>"
        seen = (f"{len(lines)} lines, {size} bytes (expected {n} lines); first {lines[:1]}, last {lines[-1:]}; "
                f"first difference at line {first_bad + 1}: expected {want!r}, got {got!r}")
        if relay:
            # the runtime delivered the output; containerd's CRI log relay (FIFO -> log file) lost it
            raise InfrastructureError(f"containerd lost this container's output: {seen}; containerd logged: {relay}")
        pytest.fail(seen, pytrace=False)
    assert size > 64 * 1024, f"only {size} bytes: not more than a 64 KiB pipe buffer"


def _containerd_relay_errors(kube, pod) -> str:
    """containerd's own 'Failed to pipe stdout/stderr of container <id>' lines for this pod."""
    path = kube.info.component_logs.get("containerd")
    cid = next(iter(podstate.container_ids(pod)), None)
    if not path or not cid:
        return ""
    r = kube.ctx.node_run(kube.node_of(pod), ["grep", "-F", "--", cid, path], ok=(0, 1, 2))
    return " | ".join([ln for ln in r.stdout.splitlines() if "Failed to pipe" in ln][:3])
