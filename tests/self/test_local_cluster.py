"""The local provisioner end to end: a real single-node cluster on this host, then nothing left.

``python -m ci cluster up --provisioner local --runtime runc`` as a user runs it; a pod on the
RuntimeClass runs, its logs and an exec read back through the kubernetes Python client; a
second ``up`` reuses the healthy cluster; a killed component is repaired by ``up``; ``down``
leaves no process, mount, link, network namespace, cgroup or folder behind.

Needs Linux and root. Skipped (with the reason) otherwise, except under CI=true where a
skip would hide a broken pipeline, so it fails instead. It takes over /var/lib/reaper-ci and
/run/reaper-ci; outside CI it refuses to tear down a cluster somebody else left running
unless REAPER_CI_SELFTEST_TAKEOVER=1.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ci.cluster import local
from ci.cluster.base import ClusterInfo

REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("REAPER_CI_STATE_DIR") or "/var/lib/reaper-ci")
IN_CI = os.environ.get("CI") in ("1", "true", "True")

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(7200)]


def _why_not() -> str | None:
    if platform.system() != "Linux":
        return f"the local provisioner needs Linux (this is {platform.system()})"
    if os.geteuid() != 0:
        return "the local provisioner needs root"
    if (STATE / "cluster.json").exists() and os.environ.get("REAPER_CI_SELFTEST_TAKEOVER") != "1" and not IN_CI:
        return f"a local cluster is recorded in {STATE} (others may use it); REAPER_CI_SELFTEST_TAKEOVER=1 lets this test replace it"
    return None


@pytest.fixture(scope="module", autouse=True)
def _requirements():
    why = _why_not()
    if why:
        if IN_CI:
            pytest.fail(f"CI=true but the local cluster test cannot run: {why}")
        pytest.skip(why)


def ci(*args: str, timeout: float = 3600) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "ci", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    return proc, time.monotonic() - started


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc.stdout


def wait_for(what: str, probe, timeout: float):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = probe()
        if last is True:
            return
        time.sleep(0.5)
    pytest.fail(f"{what} not reached after {timeout:.0f}s; last seen: {last}")


def leftovers() -> dict[str, list[str]]:
    return local.describe_leftovers(STATE)


SYSCTLS_BEFORE: dict[str, str] = {}


@pytest.fixture(scope="module")
def cluster():
    if not (STATE / "cluster.json").exists():  # no kubelet of ours has touched the kernel settings yet
        SYSCTLS_BEFORE.update(local.read_sysctls())
    proc, took = ci("cluster", "up", "--provisioner", "local", "--runtime", "runc", "--state-dir", str(STATE))
    ok(proc)
    info = ClusterInfo.load(STATE / "cluster.json")
    print(f"cold up: {took:.1f}s")
    yield info
    ci("cluster", "down", "--provisioner", "local", "--state-dir", str(STATE), timeout=300)


@pytest.fixture(scope="module")
def api(cluster):
    from kubernetes import client, config as kconfig

    api_client = kconfig.new_client_from_config(config_file=cluster.kubeconfig)
    return client.CoreV1Api(api_client)


def test_cluster_info_describes_runc_behind_the_handler(cluster):
    assert cluster.provisioner == "local" and cluster.node_access == "local"
    assert cluster.runtime == "runc" and cluster.shim_process == "containerd-shim-runc-v2"
    assert cluster.runtime_class == "reaper-v2"
    assert cluster.nodes == (local.node_name(),)
    for name, path in cluster.component_logs.items():
        assert Path(path).is_file(), f"log of {name} missing: {path}"


def test_pod_runs_on_the_runtime_class_with_logs_and_exec(cluster, api):
    from kubernetes import client
    from kubernetes.stream import stream

    ns = f"rci-self-{uuid.uuid4().hex[:6]}"
    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns, labels={"reaper-ci/test": "self"})))
    try:
        wait_for(f"ServiceAccount {ns}/default", lambda: bool(api.list_namespaced_service_account(ns, field_selector="metadata.name=default").items) or "absent", 60)
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(name="proof"),
            spec=client.V1PodSpec(
                runtime_class_name=cluster.runtime_class, restart_policy="Never", termination_grace_period_seconds=0,
                containers=[client.V1Container(name="c", image=cluster.image, image_pull_policy="Never",
                                               command=["/bin/sh", "-c", "echo proof-log-line; exec sleep 600"])],
            ),
        )
        api.create_namespaced_pod(ns, pod)

        def running():
            p = api.read_namespaced_pod("proof", ns, _request_timeout=10)
            if p.status.phase == "Failed":
                pytest.fail(f"pod Failed: {p.status}")
            return True if p.status.phase == "Running" else f"phase {p.status.phase}: {p.status.container_statuses}"

        wait_for("pod Running", running, 120)
        wait_for("log line", lambda: "proof-log-line" in api.read_namespaced_pod_log("proof", ns, _request_timeout=10) or "not yet", 30)
        out = stream(api.connect_get_namespaced_pod_exec, "proof", ns, command=["/bin/sh", "-c", "echo exec-$((6*7))"],
                     stderr=True, stdin=False, stdout=True, tty=False, _request_timeout=30)
        assert out.strip() == "exec-42"
        node = api.read_namespaced_pod("proof", ns).spec.node_name
        assert node == cluster.nodes[0]
    finally:
        api.delete_namespace(ns, grace_period_seconds=0)


def test_second_up_reuses_the_healthy_cluster_quickly(cluster):
    before = (STATE / "pids" / "kube-apiserver.pid").read_text()
    proc, took = ci("cluster", "up", "--provisioner", "local", "--runtime", "runc", "--state-dir", str(STATE))
    out = ok(proc)
    assert "reused" in out, out
    assert took < 30, f"warm up took {took:.1f}s (goal < 30 s)"
    assert (STATE / "pids" / "kube-apiserver.pid").read_text() == before, "a healthy cluster must not be restarted"


def test_up_repairs_a_cluster_whose_kubelet_died(cluster):
    pid = local.pid_alive(STATE / "pids" / "kubelet.pid")
    assert pid, "kubelet is not running before the test"
    os.kill(pid, signal.SIGKILL)
    wait_for("kubelet gone", lambda: local.pid_alive(STATE / "pids" / "kubelet.pid") is None or "still alive", 10)
    proc, took = ci("cluster", "up", "--provisioner", "local", "--runtime", "runc", "--state-dir", str(STATE))
    out = ok(proc)
    assert "reused" not in out, out
    assert local.pid_alive(STATE / "pids" / "kubelet.pid"), "kubelet not running after repair"
    status = ok(ci("cluster", "status", "--provisioner", "local", "--state-dir", str(STATE))[0])
    assert "node Ready: yes" in status, status


def test_logs_are_collected(cluster, tmp_path):
    proc, _ = ci("cluster", "logs", "--provisioner", "local", "--state-dir", str(STATE), "--artifacts", str(tmp_path))
    ok(proc)
    got = {p.name for p in (tmp_path / "cluster-logs").iterdir()}
    for comp in local.COMPONENTS:
        assert f"{comp}.log" in got, sorted(got)


def test_down_leaves_nothing_behind(cluster):
    # the last test of the module: the fixture's own down then finds nothing to do
    assert any(leftovers().values()), "nothing of the cluster exists before down?"
    # a user reading one of our logs is not part of the cluster: down must leave it alone
    reader = subprocess.Popen(["tail", "-f", str(STATE / "logs" / "kubelet.log")], stdout=subprocess.DEVNULL)
    try:
        proc, took = ci("cluster", "down", "--provisioner", "local", "--state-dir", str(STATE), timeout=300)
        ok(proc)
        print(f"down: {took:.1f}s")
        assert reader.poll() is None, "down killed a `tail -f` of one of our logs"
    finally:
        reader.kill()
        reader.wait()
    left = leftovers()
    assert not any(left.values()), json.dumps(left, indent=2)
    if SYSCTLS_BEFORE:
        assert local.read_sysctls() == SYSCTLS_BEFORE, "kernel settings the kubelet changed were not restored"
    ps = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True).stdout
    ours = [l for l in ps.splitlines() if not l.startswith("Z") and ("/run/reaper-ci/" in l or f"{STATE}/" in l)]
    assert not ours, ours
